//! Our own extensions to Xen's ABI (not Xen's; ours alone).
//!
//! They live in Xen's architecture-reserved hypercall slot `Arch7` (55), which Xen 4.17
//! leaves unused on x86: on real Xen every call here returns `-ENOSYS`, so a guest can
//! use them opportunistically and carry on without them.

use crate::xen::Hypercall;

/// The extension hypercall: `ext_op(cmd, arg)`.
pub const EXT_OP: Hypercall = Hypercall::Arch7;

/// `ext_op(EXTOP_SET_EXIT_CODE, code)`: records the exit code the domain reports with its
/// next `SCHEDOP_shutdown` (Xen's shutdown carries only a reason). Returns 0.
pub const EXTOP_SET_EXIT_CODE: u32 = 0;

/// Sets the exit code reported with the next shutdown (ours only; `-ENOSYS` on Xen).
#[cfg(feature = "guest")]
pub fn set_exit_code(code: u32) -> Result<u64, crate::errno::Errno> {
    // SAFETY: the call takes two integers and touches no guest memory.
    let ret = unsafe {
        crate::guest::raw::hypercall2(EXT_OP, u64::from(EXTOP_SET_EXIT_CODE), u64::from(code))
    };
    crate::errno::Errno::from_ret(ret)
}
