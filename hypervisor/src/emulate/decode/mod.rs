//! The x86_64 instruction decoder for trap-and-emulate (64-bit mode only).
//!
//! [`decode`] turns the bytes fetched at a faulting guest `rip` into an [`Instruction`]
//! and its length, or says why not:
//!
//! - [`DecodeError::Truncated`]: the bytes end before the instruction does (the fetch
//!   stopped at a page it could not read); the caller reflects a page fault at the first
//!   byte it could not fetch.
//! - [`DecodeError::Invalid`]: malformed (LOCK where it is not allowed, a REX prefix not
//!   immediately before the opcode, a control register that does not exist, more than 15
//!   bytes, ...): the CPU would raise #UD or #GP.
//! - [`DecodeError::Unsupported`]: well formed, but not an instruction the hypervisor
//!   emulates (or uses a prefix combination we do not take apart, such as 0x67).
//!
//! The decoder reads bytes strictly in order and decides only on bytes already read, so
//! every proper prefix of an instruction it accepts is `Truncated`. The one look-ahead is
//! Xen's forced-emulation signature after a `ud2` at `rip`: like Xen, which reads the
//! signature before deciding, a `ud2` whose next bytes could not all be fetched is
//! `Truncated` while they might still spell the signature.

mod cursor;
mod instruction;
mod modrm;
mod operands;
mod prefixes;
mod store;
mod two_byte;

#[cfg(test)]
mod tests;

pub use instruction::{ControlRegister, Instruction, PortOperand, Store, StoreOp, StoreSource};
pub use operands::{
    Base, Gpr, Index, MemOperand, OperandSize, RegisterOperand, RmOperand, Segment,
};

use cursor::Cursor;
use prefixes::{Prefixes, Repeat};

/// The architectural limit on the length of one instruction, prefixes included.
pub const MAX_INSTRUCTION_LENGTH: usize = 15;

/// Xen's forced-emulation signature: `ud2; .ascii "xen"`.
const FORCED_EMULATION_SIGNATURE: [u8; 5] = [0x0f, 0x0b, b'x', b'e', b'n'];
/// The one instruction Xen (and we) accept after the signature: `cpuid`.
const FORCED_CPUID: [u8; 2] = [0x0f, 0xa2];

const TWO_BYTE_ESCAPE: u8 = 0x0f;
const INS_BYTE: u8 = 0x6c;
const INS: u8 = 0x6d;
const OUTS_BYTE: u8 = 0x6e;
const OUTS: u8 = 0x6f;
const GROUP_1_INVALID_IN_64_BIT_MODE: u8 = 0x82;
const PUSHF: u8 = 0x9c;
const POPF: u8 = 0x9d;
const INT3: u8 = 0xcc;
const INT: u8 = 0xcd;
const INTO: u8 = 0xce;
const IRET: u8 = 0xcf;
const IN_IMMEDIATE_BYTE: u8 = 0xe4;
const IN_IMMEDIATE: u8 = 0xe5;
const OUT_IMMEDIATE_BYTE: u8 = 0xe6;
const OUT_IMMEDIATE: u8 = 0xe7;
const IN_DX_BYTE: u8 = 0xec;
const IN_DX: u8 = 0xed;
const OUT_DX_BYTE: u8 = 0xee;
const OUT_DX: u8 = 0xef;
const HLT: u8 = 0xf4;
const CLI: u8 = 0xfa;
const STI: u8 = 0xfb;

/// Why bytes did not decode to an [`Instruction`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes end before the instruction does.
    Truncated,
    /// The bytes are not a valid instruction (the CPU would fault on them).
    Invalid,
    /// A valid instruction, or prefix combination, that the hypervisor does not emulate.
    Unsupported,
}

/// A decoded instruction and how many bytes it occupies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// What the instruction is.
    pub instruction: Instruction,
    /// Its length in bytes, prefixes included (1 to [`MAX_INSTRUCTION_LENGTH`]).
    pub length: usize,
}

impl Decoded {
    /// The address of the next instruction, given this one's.
    pub fn next_rip(&self, rip: u64) -> u64 {
        rip.wrapping_add(self.length as u64)
    }
}

/// Decodes the instruction at the start of `bytes` (those fetched at the guest's `rip`,
/// normally 15; fewer if the fetch hit an unreadable page; bytes past 15 are never read).
pub fn decode(bytes: &[u8]) -> Result<Decoded, DecodeError> {
    if let Some(forced) = forced_emulation(bytes) {
        return forced;
    }
    let mut cursor = Cursor::new(bytes);
    let (prefixes, opcode) = Prefixes::read_fast(&mut cursor)?;
    let instruction = one_byte(&mut cursor, &prefixes, opcode)?;
    check_prefixes(&instruction, &prefixes)?;
    Ok(Decoded {
        instruction,
        length: cursor.position(),
    })
}

/// Recognises Xen's forced-emulation sequence at the very start of `bytes`; `None` when
/// the bytes do not begin with the signature (decode them normally).
fn forced_emulation(bytes: &[u8]) -> Option<Result<Decoded, DecodeError>> {
    let signature = FORCED_EMULATION_SIGNATURE;
    // The usual answer, without a slice comparison: the signature starts with ud2.
    if bytes.len() < 2 || bytes[..2] != signature[..2] {
        return None;
    }
    let compared = bytes.len().min(signature.len());
    if bytes.get(..compared) != signature.get(..compared) {
        return None;
    }
    let inner = bytes.get(signature.len()..).unwrap_or_default();
    let compared = inner.len().min(FORCED_CPUID.len());
    if inner.get(..compared) != FORCED_CPUID.get(..compared) {
        // The signature, then something Xen does not force-emulate either.
        return Some(Err(DecodeError::Unsupported));
    }
    if inner.len() < FORCED_CPUID.len() {
        return Some(Err(DecodeError::Truncated));
    }
    Some(Ok(Decoded {
        instruction: Instruction::ForcedCpuid,
        length: signature.len() + FORCED_CPUID.len(),
    }))
}

/// Decodes from the first opcode byte on.
fn one_byte(
    cursor: &mut Cursor<'_>,
    prefixes: &Prefixes,
    opcode: u8,
) -> Result<Instruction, DecodeError> {
    let port_size = |byte_form: bool| {
        if byte_form {
            Ok(OperandSize::Byte)
        } else if prefixes.rex.w {
            // No 64-bit port I/O exists; we do not guess what the CPU makes of REX.W.
            Err(DecodeError::Unsupported)
        } else if prefixes.operand_size_override {
            Ok(OperandSize::Word)
        } else {
            Ok(OperandSize::Dword)
        }
    };
    match opcode {
        TWO_BYTE_ESCAPE => two_byte::decode(cursor, prefixes),
        CLI => Ok(Instruction::Cli),
        STI => Ok(Instruction::Sti),
        HLT => Ok(Instruction::Hlt),
        PUSHF => Ok(Instruction::Pushf {
            size: prefixes.stack_operand_size(),
        }),
        POPF => Ok(Instruction::Popf {
            size: prefixes.stack_operand_size(),
        }),
        INT3 => Ok(Instruction::Int3),
        INT => Ok(Instruction::Int {
            vector: cursor.byte()?,
        }),
        INTO => Ok(Instruction::Into),
        IRET => Ok(Instruction::Iret {
            size: prefixes.operand_size(),
        }),
        IN_IMMEDIATE_BYTE | IN_IMMEDIATE => {
            let size = port_size(opcode == IN_IMMEDIATE_BYTE)?;
            let port = PortOperand::Immediate(cursor.byte()?);
            Ok(Instruction::In { port, size })
        }
        OUT_IMMEDIATE_BYTE | OUT_IMMEDIATE => {
            let size = port_size(opcode == OUT_IMMEDIATE_BYTE)?;
            let port = PortOperand::Immediate(cursor.byte()?);
            Ok(Instruction::Out { port, size })
        }
        IN_DX_BYTE | IN_DX => Ok(Instruction::In {
            port: PortOperand::Dx,
            size: port_size(opcode == IN_DX_BYTE)?,
        }),
        OUT_DX_BYTE | OUT_DX => Ok(Instruction::Out {
            port: PortOperand::Dx,
            size: port_size(opcode == OUT_DX_BYTE)?,
        }),
        INS_BYTE | INS | OUTS_BYTE | OUTS => {
            let size = port_size(opcode == INS_BYTE || opcode == OUTS_BYTE)?;
            let rep = match prefixes.repeat {
                None => false,
                Some(Repeat::Rep) => true,
                // The CPU treats f2 as rep here, but no assembler emits it.
                Some(Repeat::Repne) => return Err(DecodeError::Unsupported),
            };
            Ok(if opcode == INS_BYTE || opcode == INS {
                Instruction::Ins { size, rep }
            } else {
                Instruction::Outs {
                    size,
                    rep,
                    segment: prefixes.segment,
                }
            })
        }
        GROUP_1_INVALID_IN_64_BIT_MODE => Err(DecodeError::Invalid),
        _ if store::is_one_byte_store(opcode) => store::one_byte(cursor, prefixes, opcode),
        _ => Err(DecodeError::Unsupported),
    }
}

/// The prefix rules that depend on the whole instruction.
fn check_prefixes(instruction: &Instruction, prefixes: &Prefixes) -> Result<(), DecodeError> {
    let lockable = matches!(instruction, Instruction::Store(store) if store.op != StoreOp::Move);
    if prefixes.lock && !lockable {
        return Err(DecodeError::Invalid);
    }
    let string_io = matches!(
        instruction,
        Instruction::Ins { .. } | Instruction::Outs { .. }
    );
    if prefixes.repeat.is_some() && !string_io {
        // On stores f2/f3 are lock-elision hints, elsewhere reserved or other opcodes.
        return Err(DecodeError::Unsupported);
    }
    if prefixes.segment.is_some() && !instruction.has_memory_operand() {
        return Err(DecodeError::Unsupported);
    }
    Ok(())
}
