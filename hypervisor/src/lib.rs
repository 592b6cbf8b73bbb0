//! The hypervisor's logic, kept free of hardware access so that it runs in host unit tests.
//!
//! The binary (`src/main.rs` and `src/arch/`) supplies the x86_64 glue: boot, descriptor
//! tables, entry stubs, the serial port and the direct map of physical memory.
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

pub mod bootimage;
pub mod builder;
pub mod console_input;
pub mod domain;
pub use pv_abi::elf;
pub mod emulate;
pub mod evtchn;
pub mod frames;
pub mod guestmem;
pub mod guests;
pub mod hypercall;
pub mod mm;
pub mod paging;
pub mod regs;
pub mod sched;
pub mod time;
pub mod traps;
pub mod vcpu_info;
