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

/// `ext_op(EXTOP_PORT_WRITE, port | width << 16, value)`: writes the low `width` bytes of
/// `value` to I/O port `port` (`width` 1, 2 or 4), for a domain allowed the port, exactly
/// as a trapped `out` would: a privileged domain's kernel with virtual IOPL >= 1
/// (`PHYSDEVOP_set_iopl`) or the ports clear in its I/O bitmap, never a port the
/// hypervisor keeps. Returns 0; `-EPERM` for a port not allowed; `-EINVAL` for another
/// width, a range past port 0xffff, bits set above the width in `value`, or any other bit
/// set in the second argument.
///
/// The paravirtual twin of a trapped `out`: one hypercall instead of a #GP, an
/// instruction fetch and a decode. Xen has no such call (its PV kernels' `in`/`out` always
/// trap and are emulated).
pub const EXTOP_PORT_WRITE: u32 = 1;

/// `ext_op(EXTOP_PORT_READ, port | width << 16)`: reads `width` bytes from I/O port
/// `port` and returns them zero-extended (a non-negative value), under the same rules and
/// errors as [`EXTOP_PORT_WRITE`].
pub const EXTOP_PORT_READ: u32 = 2;

/// The width of a port access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PortWidth {
    /// One byte (`outb`).
    Byte = 1,
    /// Two bytes (`outw`).
    Word = 2,
    /// Four bytes (`outl`).
    Dword = 4,
}

/// The second argument of the port calls: `port | width << 16`.
pub const fn port_arg(port: u16, width: PortWidth) -> u64 {
    port as u64 | (width as u64) << 16
}

/// Writes `value` to I/O port `port` (ours only; `-ENOSYS` on Xen, whose PV kernels trap
/// an `out` instead).
///
/// # Safety
/// A port write can do anything the device behind it does (reset the machine, start
/// DMA): the caller must know the device.
#[cfg(feature = "guest")]
#[inline]
pub unsafe fn port_write(
    port: u16,
    width: PortWidth,
    value: u32,
) -> Result<(), crate::errno::Errno> {
    // SAFETY: the call takes integers only; the device effect is the caller's to own.
    let ret = unsafe {
        crate::guest::raw::hypercall3(
            EXT_OP,
            u64::from(EXTOP_PORT_WRITE),
            port_arg(port, width),
            u64::from(value),
        )
    };
    crate::errno::Errno::from_ret(ret).map(|_| ())
}

/// Reads I/O port `port` (ours only; `-ENOSYS` on Xen).
///
/// # Safety
/// As [`port_write`]: reading a device register can have side effects.
#[cfg(feature = "guest")]
#[inline]
pub unsafe fn port_read(port: u16, width: PortWidth) -> Result<u32, crate::errno::Errno> {
    // SAFETY: as in `port_write`.
    let ret = unsafe {
        crate::guest::raw::hypercall2(EXT_OP, u64::from(EXTOP_PORT_READ), port_arg(port, width))
    };
    crate::errno::Errno::from_ret(ret).map(|value| value as u32)
}
