//! Typed wrappers, one per hypercall and sub-operation.

use zerocopy::FromZeros;

use super::raw::{hypercall1, hypercall2, hypercall3};
use crate::arch_x86_64::TrapInfo;
use crate::callback::{
    CALLBACKOP_REGISTER, CALLBACKOP_UNREGISTER, CallbackRegister, CallbackUnregister,
};
use crate::errno::Errno;
use crate::sched::{
    SCHEDOP_BLOCK, SCHEDOP_SHUTDOWN, SCHEDOP_SHUTDOWN_CODE, SCHEDOP_YIELD, SHUTDOWN_CRASH,
    SHUTDOWN_POWEROFF, SHUTDOWN_REBOOT, SHUTDOWN_SUSPEND, SchedShutdown,
};
use crate::version::{
    XENVER_CAPABILITIES, XENVER_CHANGESET, XENVER_COMMANDLINE, XENVER_COMPILE_INFO,
    XENVER_EXTRAVERSION, XENVER_GET_FEATURES, XENVER_GUEST_HANDLE, XENVER_PAGESIZE,
    XENVER_PLATFORM_PARAMETERS, XENVER_VERSION, XenCapabilitiesInfo, XenChangeset, XenCommandline,
    XenCompileInfo, XenExtraversion, XenFeatureInfo, XenPlatformParameters, decode_version,
};
use crate::xen::{CONSOLEIO_READ, CONSOLEIO_WRITE, Hypercall, XenDomainHandle};

/// The guest virtual address of a shared reference, as a hypercall argument.
#[inline]
pub(crate) fn addr_of<T: ?Sized>(r: &T) -> u64 {
    r as *const T as *const u8 as u64
}

/// The guest virtual address of an exclusive reference, as a hypercall argument.
#[inline]
pub(crate) fn addr_of_mut<T: ?Sized>(r: &mut T) -> u64 {
    r as *mut T as *mut u8 as u64
}

#[inline]
pub(crate) fn ret(r: i64) -> Result<u64, Errno> {
    Errno::from_ret(r)
}

// ----- console_io --------------------------------------------------------------------

/// Writes `buf` to the hypervisor console (`console_io(CONSOLEIO_write)`).
///
/// Buffers longer than `i32::MAX` bytes are written in pieces.
pub fn console_io_write(buf: &[u8]) -> Result<u64, Errno> {
    for chunk in buf.chunks(i32::MAX as usize) {
        // SAFETY: the hypervisor only reads `chunk.len()` bytes at `chunk`, which is a
        // live shared borrow.
        ret(unsafe {
            hypercall3(
                Hypercall::ConsoleIo,
                CONSOLEIO_WRITE.into(),
                chunk.len() as u64,
                addr_of(chunk),
            )
        })?;
    }
    Ok(0)
}

/// Reads pending console input into `buf` (`console_io(CONSOLEIO_read)`); returns the
/// number of bytes read.
pub fn console_io_read(buf: &mut [u8]) -> Result<u64, Errno> {
    let len = buf.len().min(i32::MAX as usize) as u64;
    // SAFETY: the hypervisor writes at most `len` bytes into `buf`, an exclusive borrow
    // of at least that size; any byte pattern is a valid `u8`.
    ret(unsafe {
        hypercall3(
            Hypercall::ConsoleIo,
            CONSOLEIO_READ.into(),
            len,
            addr_of_mut(buf),
        )
    })
}

// ----- xen_version -------------------------------------------------------------------

/// Issues `xen_version(cmd, arg)` with a raw argument pointer. Inlined: `version()` is
/// the null hypercall a kernel makes to have a pending upcall delivered (Linux's
/// `xen_force_evtchn_callback`), and a call through a function pointer and a result in
/// memory would cost it a third again.
///
/// # Safety
/// `arg` must be null or point to a writable buffer of the type `cmd` expects.
#[inline]
pub unsafe fn xen_version_raw(cmd: u32, arg: u64) -> Result<u64, Errno> {
    // SAFETY: forwarded from the caller.
    ret(unsafe { hypercall2(Hypercall::XenVersion, cmd.into(), arg) })
}

/// Fills `out` with the answer to `cmd`.
fn xen_version_into<T: zerocopy::FromBytes + zerocopy::IntoBytes>(
    cmd: u32,
    out: &mut T,
) -> Result<u64, Errno> {
    // SAFETY: `out` is an exclusive borrow of the type `cmd` fills (the callers pair
    // them); it accepts any byte pattern (`FromBytes`).
    unsafe { xen_version_raw(cmd, addr_of_mut(out)) }
}

/// The hypervisor version as `(major, minor)` (`XENVER_version`).
#[inline]
pub fn version() -> Result<(u16, u16), Errno> {
    // SAFETY: `XENVER_version` takes no argument.
    let v = unsafe { xen_version_raw(XENVER_VERSION, 0) }?;
    Ok(decode_version(v))
}

/// The extra version string, e.g. `".3"` (`XENVER_extraversion`).
pub fn extraversion() -> Result<XenExtraversion, Errno> {
    let mut out: XenExtraversion = [0; 16];
    xen_version_into(XENVER_EXTRAVERSION, &mut out)?;
    Ok(out)
}

/// Compiler and build host information (`XENVER_compile_info`).
pub fn compile_info() -> Result<XenCompileInfo, Errno> {
    let mut out = XenCompileInfo::new_zeroed();
    xen_version_into(XENVER_COMPILE_INFO, &mut out)?;
    Ok(out)
}

/// The capabilities string, e.g. `"xen-3.0-x86_64"` (`XENVER_capabilities`).
pub fn capabilities() -> Result<XenCapabilitiesInfo, Errno> {
    let mut out: XenCapabilitiesInfo = [0; 1024];
    xen_version_into(XENVER_CAPABILITIES, &mut out)?;
    Ok(out)
}

/// The source changeset string (`XENVER_changeset`).
pub fn changeset() -> Result<XenChangeset, Errno> {
    let mut out: XenChangeset = [0; 64];
    xen_version_into(XENVER_CHANGESET, &mut out)?;
    Ok(out)
}

/// Platform parameters: the start of the hypervisor's virtual range
/// (`XENVER_platform_parameters`).
pub fn platform_parameters() -> Result<XenPlatformParameters, Errno> {
    let mut out = XenPlatformParameters::default();
    xen_version_into(XENVER_PLATFORM_PARAMETERS, &mut out)?;
    Ok(out)
}

/// Submap `submap_idx` of the feature bitmap (`XENVER_get_features`).
pub fn get_features(submap_idx: u32) -> Result<u32, Errno> {
    let mut out = XenFeatureInfo {
        submap_idx,
        submap: 0,
    };
    xen_version_into(XENVER_GET_FEATURES, &mut out)?;
    Ok(out.submap)
}

/// The host page size (`XENVER_pagesize`).
pub fn pagesize() -> Result<u64, Errno> {
    // SAFETY: `XENVER_pagesize` takes no argument.
    unsafe { xen_version_raw(XENVER_PAGESIZE, 0) }
}

/// The caller's domain handle (`XENVER_guest_handle`).
pub fn guest_handle() -> Result<XenDomainHandle, Errno> {
    let mut out: XenDomainHandle = [0; 16];
    xen_version_into(XENVER_GUEST_HANDLE, &mut out)?;
    Ok(out)
}

/// The hypervisor's command line (`XENVER_commandline`; privileged).
pub fn commandline() -> Result<XenCommandline, Errno> {
    let mut out: XenCommandline = [0; 1024];
    xen_version_into(XENVER_COMMANDLINE, &mut out)?;
    Ok(out)
}

// ----- vm_assist ---------------------------------------------------------------------

/// Enables or disables a VM assist (`vm_assist(cmd, type)`), with `cmd` one of
/// `VMASST_CMD_*` and `assist` one of `VMASST_TYPE_*`.
pub fn vm_assist(cmd: u32, assist: u32) -> Result<u64, Errno> {
    // SAFETY: no pointer argument; assists change how the hypervisor emulates guest
    // actions, not the guest's memory.
    ret(unsafe { hypercall2(Hypercall::VmAssist, cmd.into(), assist.into()) })
}

// ----- sched_op ----------------------------------------------------------------------

/// Yields the CPU (`SCHEDOP_yield`).
pub fn sched_yield() -> Result<u64, Errno> {
    // SAFETY: no argument.
    ret(unsafe { hypercall2(Hypercall::SchedOp, SCHEDOP_YIELD.into(), 0) })
}

/// Blocks until an event is pending (`SCHEDOP_block`); event upcalls are unmasked.
pub fn sched_block() -> Result<u64, Errno> {
    // SAFETY: no argument.
    ret(unsafe { hypercall2(Hypercall::SchedOp, SCHEDOP_BLOCK.into(), 0) })
}

/// Shuts the domain down for `reason` (`SCHEDOP_shutdown`, `SHUTDOWN_*`); returns only
/// on error.
///
/// Not for `SHUTDOWN_SUSPEND`, which is `EINVAL` here without a call: a suspend returns,
/// possibly on other machine frames, and needs the start-info frame in rdx; that is
/// [`suspend`], which is `unsafe`.
pub fn sched_shutdown(reason: u32) -> Result<u64, Errno> {
    if reason == SHUTDOWN_SUSPEND {
        return Err(Errno::EINVAL);
    }
    let arg = SchedShutdown { reason };
    // SAFETY: `arg` is live for the call; the hypervisor only reads it.
    ret(unsafe { hypercall2(Hypercall::SchedOp, SCHEDOP_SHUTDOWN.into(), addr_of(&arg)) })
}

/// Suspends the domain (`SCHEDOP_shutdown` with `SHUTDOWN_SUSPEND`) and returns when it
/// runs again: 0 after a suspend and a resume, 1 if the suspend was cancelled (the
/// domain goes on where it was, on the same frames).
///
/// # Safety
/// `start_info_mfn` must be the machine frame of this domain's start-info page (an x86
/// PV guest passes it in rdx, `xen/sched.h`; the toolstack rewrites that page for the
/// resumed domain). After a resume (0) the domain may run on other machine frames and
/// a new hypervisor: before the call the caller must stop using everything that names a
/// machine frame or hypervisor state (its shared-info and grant-table mappings, foreign
/// mappings, event channels), and rebuild it after a return of 0.
pub unsafe fn suspend(start_info_mfn: u64) -> Result<u64, Errno> {
    let arg = SchedShutdown {
        reason: SHUTDOWN_SUSPEND,
    };
    // SAFETY: `arg` is live for the call and only read; rdx is the start-info frame, as
    // the ABI asks; the caller has dealt with what a resume changes.
    ret(unsafe {
        hypercall3(
            Hypercall::SchedOp,
            SCHEDOP_SHUTDOWN.into(),
            addr_of(&arg),
            start_info_mfn,
        )
    })
}

/// Records the reason a later shutdown will report (`SCHEDOP_shutdown_code`).
pub fn sched_shutdown_code(reason: u32) -> Result<u64, Errno> {
    let arg = SchedShutdown { reason };
    // SAFETY: `arg` is live for the call; the hypervisor only reads it.
    ret(unsafe {
        hypercall2(
            Hypercall::SchedOp,
            SCHEDOP_SHUTDOWN_CODE.into(),
            addr_of(&arg),
        )
    })
}

/// Powers the domain off; returns only if the hypervisor refused.
pub fn poweroff() -> Errno {
    final_shutdown(SHUTDOWN_POWEROFF)
}

/// Reboots the domain; returns only if the hypervisor refused.
pub fn reboot() -> Errno {
    final_shutdown(SHUTDOWN_REBOOT)
}

/// Reports a crash and stops the domain; returns only if the hypervisor refused.
pub fn crash() -> Errno {
    final_shutdown(SHUTDOWN_CRASH)
}

fn final_shutdown(reason: u32) -> Errno {
    match sched_shutdown(reason) {
        Err(e) => e,
        // The hypervisor must not return from a final shutdown; treat it as a failure.
        Ok(_) => Errno::EINVAL,
    }
}

// ----- traps and callbacks -----------------------------------------------------------

/// Installs the virtual IDT (`set_trap_table`).
///
/// `table` must end with an entry whose `address` is zero ([`TrapInfo::TERMINATOR`]);
/// otherwise nothing is called and `EINVAL` is returned.
///
/// # Safety
/// Every handler address must be the entry point of code that handles the vector's
/// PV exception frame correctly; the hypervisor will transfer control there.
pub unsafe fn set_trap_table(table: &[TrapInfo]) -> Result<u64, Errno> {
    match table.last() {
        Some(last) if last.is_terminator() => {}
        _ => return Err(Errno::EINVAL),
    }
    // SAFETY: the table is a live, terminated borrow that the hypervisor only reads;
    // the handler addresses are the caller's responsibility.
    ret(unsafe { hypercall1(Hypercall::SetTrapTable, addr_of(table)) })
}

/// Clears the virtual IDT (`set_trap_table(NULL)`).
pub fn clear_trap_table() -> Result<u64, Errno> {
    // SAFETY: a null table removes handlers and installs none.
    ret(unsafe { hypercall1(Hypercall::SetTrapTable, 0) })
}

/// Registers the event, failsafe and syscall entry points (`set_callbacks`).
///
/// # Safety
/// Each address must be an entry point written for the corresponding PV callback frame.
pub unsafe fn set_callbacks(event: u64, failsafe: u64, syscall: u64) -> Result<u64, Errno> {
    // SAFETY: no pointer is read; the entry points are the caller's responsibility.
    ret(unsafe { hypercall3(Hypercall::SetCallbacks, event, failsafe, syscall) })
}

/// Registers one callback (`callback_op(CALLBACKOP_register)`).
///
/// # Safety
/// `reg.address` must be an entry point written for the callback type's frame.
pub unsafe fn callback_register(reg: &CallbackRegister) -> Result<u64, Errno> {
    // SAFETY: `reg` is live and only read; the entry point is the caller's
    // responsibility.
    ret(unsafe {
        hypercall2(
            Hypercall::CallbackOp,
            CALLBACKOP_REGISTER.into(),
            addr_of(reg),
        )
    })
}

/// Unregisters one callback (`callback_op(CALLBACKOP_unregister)`).
pub fn callback_unregister(callback_type: u16) -> Result<u64, Errno> {
    let arg = CallbackUnregister {
        r#type: callback_type,
        unused: 0,
    };
    // SAFETY: `arg` is live and only read; removing a callback cannot make the hypervisor
    // jump into the guest.
    ret(unsafe {
        hypercall2(
            Hypercall::CallbackOp,
            CALLBACKOP_UNREGISTER.into(),
            addr_of(&arg),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::super::raw::mock;
    use super::*;
    use crate::arch_x86_64::FLAT_KERNEL_CS;

    /// A suspend is not a safe call: `sched_shutdown` refuses it without a hypercall,
    /// and `suspend` passes the start-info frame in rdx (the third argument).
    #[test]
    fn suspend_only_by_the_unsafe_call_with_start_info_in_rdx() {
        mock::install(|_, _| 0);
        assert_eq!(sched_shutdown(SHUTDOWN_SUSPEND), Err(Errno::EINVAL));
        assert!(mock::calls().is_empty());
        // SAFETY: the mock makes no call; nothing is torn down or resumed.
        assert_eq!(unsafe { suspend(0x1234) }, Ok(0));
        let (nr, args) = mock::calls()[0];
        assert_eq!(
            (nr, args[0], args[2]),
            (29, u64::from(SCHEDOP_SHUTDOWN), 0x1234)
        );
    }

    #[test]
    fn console_write_passes_buffer() {
        mock::install(|_, _| 0);
        let msg = b"hello";
        assert_eq!(console_io_write(msg), Ok(0));
        let calls = mock::calls();
        assert_eq!(calls.len(), 1);
        let (nr, args) = calls[0];
        assert_eq!(nr, 18);
        assert_eq!(args[0], 0);
        assert_eq!(args[1], 5);
        assert_eq!(args[2], msg.as_ptr() as u64);
    }

    #[test]
    fn errors_are_decoded() {
        mock::install(|_, _| -38);
        assert_eq!(sched_yield(), Err(Errno::ENOSYS));
        assert_eq!(poweroff(), Errno::ENOSYS);
        mock::install(|_, _| 0);
        assert_eq!(poweroff(), Errno::EINVAL);
    }

    #[test]
    fn version_and_features() {
        mock::install(|nr, args| {
            assert_eq!(nr, Hypercall::XenVersion.number());
            match args[0] as u32 {
                XENVER_VERSION => 0x0004_0011,
                XENVER_GET_FEATURES => {
                    // SAFETY: the wrapper passed a live `XenFeatureInfo`.
                    let fi = unsafe { &mut *(args[1] as *mut XenFeatureInfo) };
                    fi.submap = 0xA0 | fi.submap_idx;
                    0
                }
                _ => -22,
            }
        });
        assert_eq!(version(), Ok((4, 17)));
        assert_eq!(get_features(0), Ok(0xA0));
        assert_eq!(capabilities().err(), Some(Errno::EINVAL));
    }

    #[test]
    fn trap_table_must_be_terminated() {
        mock::install(|_, _| 0);
        let entry = TrapInfo::new(3, 3, false, FLAT_KERNEL_CS, 0x1000);
        // SAFETY: the mock hypervisor never jumps to the handler.
        assert_eq!(unsafe { set_trap_table(&[entry]) }, Err(Errno::EINVAL));
        // SAFETY: as above.
        assert_eq!(unsafe { set_trap_table(&[]) }, Err(Errno::EINVAL));
        assert!(mock::calls().is_empty());
        // SAFETY: as above.
        let installed = unsafe { set_trap_table(&[entry, TrapInfo::TERMINATOR]) };
        assert_eq!(installed, Ok(0));
        assert_eq!(mock::calls()[0].0, 0);
    }
}
