//! Guest-side hypercall API (feature `guest`): typed wrappers over the raw `syscall`
//! hypercall instruction, for code running as a 64-bit PV guest kernel.
//!
//! Conventions:
//! - every wrapper returns `Result<_, Errno>`; a wrapper without a richer result returns
//!   the hypercall's non-negative return value as `u64` (usually 0);
//! - buffers are Rust references, converted to guest virtual addresses here, so a safe
//!   wrapper cannot hand the hypervisor a dangling pointer;
//! - wrappers that change what the CPU will execute or map (trap tables, callbacks,
//!   page tables, `iret`) are `unsafe fn`: the hypervisor checks that the guest cannot
//!   harm *it*, but not that the guest kernel's own memory stays sound.
//!
//! The raw instruction lives in [`raw`]; nothing else in the workspace should issue a
//! hypercall.
//!
//! ```no_run
//! use pv_abi::guest;
//! use pv_abi::xen::DOMID_SELF;
//!
//! guest::console_io_write(b"hello from a PV guest\n")?;
//! let (major, minor) = guest::version()?;
//! // A port the backend in domain 0 may bind to, and a notification on it.
//! let port = guest::evtchn_alloc_unbound(DOMID_SELF, 0)?;
//! guest::evtchn_send(port)?;
//! # let _ = (major, minor);
//! # Ok::<(), pv_abi::Errno>(())
//! ```

pub mod raw;

mod batch;
mod calls;
mod events;
mod mm;
mod other;
mod vcpu;

pub use batch::*;
pub use calls::*;
pub use events::*;
pub use mm::*;
pub use other::*;
pub use vcpu::*;
