//! Trap-and-emulate support for a PV guest kernel.
//!
//! A PV guest kernel runs in ring 3, so its privileged instructions (`cli`, `mov cr3`,
//! `wrmsr`, port I/O, ...) raise #GP or #UD, and its stores into its own read-only page
//! tables raise #PF. To emulate such an instruction the hypervisor fetches the bytes at the
//! guest's `rip` ([`fetch()`]), decodes them into a typed [`Instruction`] ([`decode()`]) and
//! reads or writes the operands through [`Gpr`] and [`MemOperand`].
//!
//! Every byte fetched from a guest is hostile. The decoder is plain safe Rust: it never
//! panics, never reads past the bytes it was given, and refuses (with a
//! [`DecodeError`]) anything it does not fully understand. It decodes only; carrying out
//! an instruction's effect is the caller's job.
#![forbid(unsafe_code)]

pub mod decode;
pub mod fetch;

pub use decode::{
    Base, ControlRegister, DecodeError, Decoded, Gpr, Index, Instruction, MAX_INSTRUCTION_LENGTH,
    MemOperand, OperandSize, PortOperand, RegisterOperand, RmOperand, Segment, Store, StoreOp,
    StoreSource, decode,
};
pub use fetch::{InstructionBytes, fetch};
