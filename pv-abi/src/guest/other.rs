//! Hypercalls whose argument structures this crate does not mirror (toolstack,
//! platform, profiling and device-model interfaces): typed by command and raw argument
//! pointer, so that every hypercall has exactly one way to be issued.

use super::calls::ret;
use super::raw::{hypercall1, hypercall2, hypercall3};
use crate::errno::Errno;
use crate::xen::Hypercall;

macro_rules! raw_cmd_arg {
    ($( $(#[$doc:meta])* $name:ident => $hc:ident ),* $(,)?) => {$(
        $(#[$doc])*
        ///
        /// # Safety
        /// `arg` must be null or point to the structure `cmd` takes, as Xen's header for
        /// this hypercall defines it, and the command's effects must be sound for the
        /// guest.
        pub unsafe fn $name(cmd: u32, arg: u64) -> Result<u64, Errno> {
            // SAFETY: forwarded from the caller.
            ret(unsafe { hypercall2(Hypercall::$hc, u64::from(cmd), arg) })
        }
    )*};
}

raw_cmd_arg! {
    /// `xsm_op(cmd, arg)`: security module operations.
    xsm_op => XsmOp,
    /// `nmi_op(cmd, arg)`: NMI callback registration.
    nmi_op => NmiOp,
    /// `xenoprof_op(cmd, arg)`: profiling.
    xenoprof_op => XenoprofOp,
    /// `hvm_op(cmd, arg)`: HVM parameters and operations.
    hvm_op => HvmOp,
    /// `kexec_op(cmd, arg)`: kexec.
    kexec_op => KexecOp,
    /// `xenpmu_op(cmd, arg)`: PMU virtualisation.
    xenpmu_op => XenpmuOp,
    /// `argo_op(cmd, arg)`: Argo messaging (more arguments: use [`argo_op_raw`]).
    argo_op => ArgoOp,
}

/// `platform_op(arg)`: host platform management (privileged); `arg` points to a
/// `struct xen_platform_op`.
///
/// # Safety
/// As for the `raw_cmd_arg` wrappers.
pub unsafe fn platform_op(arg: u64) -> Result<u64, Errno> {
    // SAFETY: forwarded from the caller.
    ret(unsafe { hypercall1(Hypercall::PlatformOp, arg) })
}

/// `sysctl(arg)`: system control (privileged); `arg` points to a `struct xen_sysctl`.
///
/// # Safety
/// As for [`platform_op`].
pub unsafe fn sysctl(arg: u64) -> Result<u64, Errno> {
    // SAFETY: forwarded from the caller.
    ret(unsafe { hypercall1(Hypercall::Sysctl, arg) })
}

/// `domctl(arg)`: domain control (privileged); `arg` points to a `struct xen_domctl`.
///
/// # Safety
/// As for [`platform_op`].
pub unsafe fn domctl(arg: u64) -> Result<u64, Errno> {
    // SAFETY: forwarded from the caller.
    ret(unsafe { hypercall1(Hypercall::Domctl, arg) })
}

/// `tmem_op(arg)`: transcendent memory (removed from Xen; always fails there).
///
/// # Safety
/// As for [`platform_op`].
pub unsafe fn tmem_op(arg: u64) -> Result<u64, Errno> {
    // SAFETY: forwarded from the caller.
    ret(unsafe { hypercall1(Hypercall::TmemOp, arg) })
}

/// `dm_op(domid, nr_bufs, bufs)`: device-model operations on `domid`.
///
/// # Safety
/// `bufs` must point to `nr_bufs` `struct xen_dm_op_buf` describing valid buffers.
pub unsafe fn dm_op(domid: u16, nr_bufs: u32, bufs: u64) -> Result<u64, Errno> {
    // SAFETY: forwarded from the caller.
    ret(unsafe { hypercall3(Hypercall::DmOp, u64::from(domid), u64::from(nr_bufs), bufs) })
}

/// `hypfs_op(cmd, path, path_len, buf, buf_len)`: hypervisor file system.
///
/// # Safety
/// `path` and `buf` must be valid for the given lengths (read and write respectively).
pub unsafe fn hypfs_op(
    cmd: u32,
    path: u64,
    path_len: u64,
    buf: u64,
    buf_len: u64,
) -> Result<u64, Errno> {
    // SAFETY: forwarded from the caller.
    ret(unsafe {
        super::raw::hypercall5(
            Hypercall::HypfsOp,
            u64::from(cmd),
            path,
            path_len,
            buf,
            buf_len,
        )
    })
}

/// `argo_op(cmd, arg1, arg2, arg3, arg4)` with all five arguments.
///
/// # Safety
/// As [`hypfs_op`] for the pointers the command takes.
pub unsafe fn argo_op_raw(
    cmd: u32,
    arg1: u64,
    arg2: u64,
    arg3: u64,
    arg4: u64,
) -> Result<u64, Errno> {
    // SAFETY: forwarded from the caller.
    ret(unsafe {
        super::raw::hypercall5(Hypercall::ArgoOp, u64::from(cmd), arg1, arg2, arg3, arg4)
    })
}

/// A machine-check call (`Arch0`, Xen's `__HYPERVISOR_mca`), `arg` pointing to a
/// `struct xen_mc`.
///
/// # Safety
/// As for [`platform_op`].
pub unsafe fn mca(arg: u64) -> Result<u64, Errno> {
    // SAFETY: forwarded from the caller.
    ret(unsafe { hypercall1(Hypercall::Arch0, arg) })
}
