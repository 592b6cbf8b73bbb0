//! Event channels, grant tables and scheduler polling.

use super::calls::{addr_of, addr_of_mut, ret};
use super::raw::{hypercall2, hypercall3};
use crate::errno::Errno;
use crate::event_channel::{
    EVTCHNOP_ALLOC_UNBOUND, EVTCHNOP_BIND_INTERDOMAIN, EVTCHNOP_BIND_IPI, EVTCHNOP_BIND_PIRQ,
    EVTCHNOP_BIND_VCPU, EVTCHNOP_BIND_VIRQ, EVTCHNOP_CLOSE, EVTCHNOP_EXPAND_ARRAY,
    EVTCHNOP_INIT_CONTROL, EVTCHNOP_RESET, EVTCHNOP_SEND, EVTCHNOP_SET_PRIORITY, EVTCHNOP_STATUS,
    EVTCHNOP_UNMASK, EvtchnAllocUnbound, EvtchnBindInterdomain, EvtchnBindIpi, EvtchnBindPirq,
    EvtchnBindVcpu, EvtchnBindVirq, EvtchnClose, EvtchnExpandArray, EvtchnInitControl, EvtchnOp,
    EvtchnPort, EvtchnReset, EvtchnSend, EvtchnSetPriority, EvtchnStatus, EvtchnUnmask,
};
use crate::grant_table::{
    GNTST_OKAY, GNTTABOP_COPY, GNTTABOP_DUMP_TABLE, GNTTABOP_GET_STATUS_FRAMES,
    GNTTABOP_GET_VERSION, GNTTABOP_MAP_GRANT_REF, GNTTABOP_QUERY_SIZE, GNTTABOP_SET_VERSION,
    GNTTABOP_SETUP_TABLE, GNTTABOP_SWAP_GRANT_REF, GNTTABOP_TRANSFER, GNTTABOP_UNMAP_AND_REPLACE,
    GNTTABOP_UNMAP_GRANT_REF, GnttabCopy, GnttabDumpTable, GnttabGetStatusFrames, GnttabGetVersion,
    GnttabMapGrantRef, GnttabQuerySize, GnttabSetVersion, GnttabSetupTable, GnttabSwapGrantRef,
    GnttabTransfer, GnttabUnmapAndReplace, GnttabUnmapGrantRef, GrantRef,
};
use crate::sched::{
    SCHEDOP_PIN_OVERRIDE, SCHEDOP_POLL, SCHEDOP_REMOTE_SHUTDOWN, SCHEDOP_WATCHDOG,
    SchedPinOverride, SchedPoll, SchedRemoteShutdown, SchedWatchdog,
};
use crate::xen::{DomId, Hypercall};

// ----- event_channel_op --------------------------------------------------------------

/// Issues `event_channel_op(cmd, arg)` on `arg`, which the hypervisor reads and may
/// update ("out" fields).
fn evtchn<T: zerocopy::IntoBytes + zerocopy::FromBytes>(
    cmd: u32,
    arg: &mut T,
) -> Result<u64, Errno> {
    // SAFETY: `arg` is a live exclusive borrow of the structure `cmd` takes (callers pair
    // them) and accepts any bytes written back. None of the commands used through this
    // helper makes the hypervisor retain a pointer.
    ret(unsafe { hypercall2(Hypercall::EventChannelOp, u64::from(cmd), addr_of_mut(arg)) })
}

/// Allocates a port in `dom` that `remote_dom` may bind to (`EVTCHNOP_alloc_unbound`).
pub fn evtchn_alloc_unbound(dom: DomId, remote_dom: DomId) -> Result<EvtchnPort, Errno> {
    let mut arg = EvtchnAllocUnbound {
        dom,
        remote_dom,
        port: 0,
    };
    evtchn(EVTCHNOP_ALLOC_UNBOUND, &mut arg)?;
    Ok(arg.port)
}

/// Connects to `remote_port` of `remote_dom` (`EVTCHNOP_bind_interdomain`); returns the
/// local port.
pub fn evtchn_bind_interdomain(
    remote_dom: DomId,
    remote_port: EvtchnPort,
) -> Result<EvtchnPort, Errno> {
    let mut arg = EvtchnBindInterdomain {
        remote_dom,
        pad0: 0,
        remote_port,
        local_port: 0,
    };
    evtchn(EVTCHNOP_BIND_INTERDOMAIN, &mut arg)?;
    Ok(arg.local_port)
}

/// Binds `virq` on `vcpu` (`EVTCHNOP_bind_virq`); returns the port.
pub fn evtchn_bind_virq(virq: u32, vcpu: u32) -> Result<EvtchnPort, Errno> {
    let mut arg = EvtchnBindVirq {
        virq,
        vcpu,
        port: 0,
    };
    evtchn(EVTCHNOP_BIND_VIRQ, &mut arg)?;
    Ok(arg.port)
}

/// Binds physical IRQ `pirq` (`EVTCHNOP_bind_pirq`, `BIND_PIRQ_*` flags); returns the
/// port.
pub fn evtchn_bind_pirq(pirq: u32, flags: u32) -> Result<EvtchnPort, Errno> {
    let mut arg = EvtchnBindPirq {
        pirq,
        flags,
        port: 0,
    };
    evtchn(EVTCHNOP_BIND_PIRQ, &mut arg)?;
    Ok(arg.port)
}

/// Allocates an IPI port delivered to `vcpu` (`EVTCHNOP_bind_ipi`).
pub fn evtchn_bind_ipi(vcpu: u32) -> Result<EvtchnPort, Errno> {
    let mut arg = EvtchnBindIpi { vcpu, port: 0 };
    evtchn(EVTCHNOP_BIND_IPI, &mut arg)?;
    Ok(arg.port)
}

/// Closes `port` (`EVTCHNOP_close`).
pub fn evtchn_close(port: EvtchnPort) -> Result<u64, Errno> {
    evtchn(EVTCHNOP_CLOSE, &mut EvtchnClose { port })
}

/// Notifies the other end of `port` (`EVTCHNOP_send`).
#[inline]
pub fn evtchn_send(port: EvtchnPort) -> Result<u64, Errno> {
    evtchn(EVTCHNOP_SEND, &mut EvtchnSend { port })
}

/// The state of `port` in `dom` (`EVTCHNOP_status`).
pub fn evtchn_status(dom: DomId, port: EvtchnPort) -> Result<EvtchnStatus, Errno> {
    let mut arg = EvtchnStatus {
        dom,
        port,
        ..Default::default()
    };
    evtchn(EVTCHNOP_STATUS, &mut arg)?;
    Ok(arg)
}

/// Delivers `port`'s events to `vcpu` from now on (`EVTCHNOP_bind_vcpu`).
pub fn evtchn_bind_vcpu(port: EvtchnPort, vcpu: u32) -> Result<u64, Errno> {
    evtchn(EVTCHNOP_BIND_VCPU, &mut EvtchnBindVcpu { port, vcpu })
}

/// Unmasks `port`, redelivering a pending event (`EVTCHNOP_unmask`).
pub fn evtchn_unmask(port: EvtchnPort) -> Result<u64, Errno> {
    evtchn(EVTCHNOP_UNMASK, &mut EvtchnUnmask { port })
}

/// Closes every port of `dom` (`EVTCHNOP_reset`).
pub fn evtchn_reset(dom: DomId) -> Result<u64, Errno> {
    evtchn(EVTCHNOP_RESET, &mut EvtchnReset { dom })
}

/// Sets `port`'s FIFO priority (`EVTCHNOP_set_priority`).
pub fn evtchn_set_priority(port: EvtchnPort, priority: u32) -> Result<u64, Errno> {
    evtchn(
        EVTCHNOP_SET_PRIORITY,
        &mut EvtchnSetPriority { port, priority },
    )
}

/// Switches to the FIFO ABI with a control block (`EVTCHNOP_init_control`); returns the
/// number of link bits.
///
/// # Safety
/// The hypervisor keeps writing the control block in `arg.control_gfn` afterwards; that
/// frame must be dedicated to it.
pub unsafe fn evtchn_init_control(arg: &mut EvtchnInitControl) -> Result<u8, Errno> {
    evtchn(EVTCHNOP_INIT_CONTROL, arg)?;
    Ok(arg.link_bits)
}

/// Adds a frame to the FIFO event array (`EVTCHNOP_expand_array`).
///
/// # Safety
/// As [`evtchn_init_control`] for `array_gfn`.
pub unsafe fn evtchn_expand_array(array_gfn: u64) -> Result<u64, Errno> {
    evtchn(EVTCHNOP_EXPAND_ARRAY, &mut EvtchnExpandArray { array_gfn })
}

/// The old single-argument form (`event_channel_op_compat`).
pub fn event_channel_op_compat(op: &mut EvtchnOp) -> Result<u64, Errno> {
    // SAFETY: `op` is a live exclusive borrow; the compat commands 0..=9 retain no
    // pointer.
    ret(unsafe { hypercall2(Hypercall::EventChannelOpCompat, addr_of_mut(op), 0) })
}

// ----- grant_table_op ----------------------------------------------------------------

/// Issues `grant_table_op(cmd, ops, count)` with a raw argument array.
///
/// # Safety
/// `ops` must point to `count` structures of the type `cmd` takes, and the operation's
/// effect (mappings, copies into local frames) must be sound for the guest.
pub unsafe fn grant_table_op_raw(cmd: u32, ops: u64, count: u32) -> Result<u64, Errno> {
    // SAFETY: forwarded from the caller.
    ret(unsafe {
        hypercall3(
            Hypercall::GrantTableOp,
            u64::from(cmd),
            ops,
            u64::from(count),
        )
    })
}

fn gnttab<T>(cmd: u32, ops: &mut [T]) -> Result<u64, Errno> {
    // SAFETY: `ops` is a live exclusive borrow of the structures `cmd` takes (callers pair
    // them); callers document the effects.
    unsafe {
        grant_table_op_raw(
            cmd,
            addr_of_mut(ops),
            u32::try_from(ops.len()).map_err(|_| Errno::E2BIG)?,
        )
    }
}

/// Maps granted frames (`GNTTABOP_map_grant_ref`); per-entry results are in each
/// entry's `status` and `handle`.
///
/// # Safety
/// The mappings appear at `host_addr` (or in the PTE named there): that range must not
/// hold memory Rust code relies on.
pub unsafe fn gnttab_map_grant_ref(ops: &mut [GnttabMapGrantRef]) -> Result<u64, Errno> {
    gnttab(GNTTABOP_MAP_GRANT_REF, ops)
}

/// Unmaps grant mappings (`GNTTABOP_unmap_grant_ref`).
///
/// # Safety
/// Nothing may still use the unmapped addresses.
pub unsafe fn gnttab_unmap_grant_ref(ops: &mut [GnttabUnmapGrantRef]) -> Result<u64, Errno> {
    gnttab(GNTTABOP_UNMAP_GRANT_REF, ops)
}

/// Unmaps and moves another mapping in place (`GNTTABOP_unmap_and_replace`).
///
/// # Safety
/// As [`gnttab_unmap_grant_ref`].
pub unsafe fn gnttab_unmap_and_replace(ops: &mut [GnttabUnmapAndReplace]) -> Result<u64, Errno> {
    gnttab(GNTTABOP_UNMAP_AND_REPLACE, ops)
}

/// Sizes the caller's grant table to `frames.len()` frames and writes their frame
/// numbers into `frames` (`GNTTABOP_setup_table`); fails with the entry's `GNTST_*`
/// status mapped to `EINVAL` if the hypervisor refused.
pub fn gnttab_setup_table(dom: DomId, frames: &mut [u64]) -> Result<(), Errno> {
    let mut op = [GnttabSetupTable {
        dom,
        nr_frames: u32::try_from(frames.len()).map_err(|_| Errno::E2BIG)?,
        frame_list: addr_of_mut(frames),
        ..Default::default()
    }];
    gnttab(GNTTABOP_SETUP_TABLE, &mut op)?;
    status_ok(op[0].status)
}

fn status_ok(status: i16) -> Result<(), Errno> {
    if status == GNTST_OKAY {
        Ok(())
    } else {
        Err(Errno::EINVAL)
    }
}

/// Current and maximum grant-table size of `dom` (`GNTTABOP_query_size`).
pub fn gnttab_query_size(dom: DomId) -> Result<GnttabQuerySize, Errno> {
    let mut op = [GnttabQuerySize {
        dom,
        ..Default::default()
    }];
    gnttab(GNTTABOP_QUERY_SIZE, &mut op)?;
    status_ok(op[0].status)?;
    Ok(op[0])
}

/// Copies through grants (`GNTTABOP_copy`); per-entry results in `status`.
///
/// # Safety
/// Local destinations named by frame number are overwritten: they must not be memory
/// Rust code holds references into.
pub unsafe fn gnttab_copy(ops: &mut [GnttabCopy]) -> Result<u64, Errno> {
    gnttab(GNTTABOP_COPY, ops)
}

/// Transfers frames (`GNTTABOP_transfer`).
///
/// # Safety
/// The given frames leave the guest: nothing may use them afterwards.
pub unsafe fn gnttab_transfer(ops: &mut [GnttabTransfer]) -> Result<u64, Errno> {
    gnttab(GNTTABOP_TRANSFER, ops)
}

/// Dumps `dom`'s table on the hypervisor console (`GNTTABOP_dump_table`).
pub fn gnttab_dump_table(dom: DomId) -> Result<(), Errno> {
    let mut op = [GnttabDumpTable { dom, status: 0 }];
    gnttab(GNTTABOP_DUMP_TABLE, &mut op)?;
    status_ok(op[0].status)
}

/// Selects grant-table version 1 or 2 (`GNTTABOP_set_version`); returns the version in
/// force.
pub fn gnttab_set_version(version: u32) -> Result<u32, Errno> {
    let mut op = [GnttabSetVersion { version }];
    gnttab(GNTTABOP_SET_VERSION, &mut op)?;
    Ok(op[0].version)
}

/// The grant-table version of `dom` (`GNTTABOP_get_version`).
pub fn gnttab_get_version(dom: DomId) -> Result<u32, Errno> {
    let mut op = [GnttabGetVersion {
        dom,
        ..Default::default()
    }];
    gnttab(GNTTABOP_GET_VERSION, &mut op)?;
    Ok(op[0].version)
}

/// Version 2 status frames, written into `frames` (`GNTTABOP_get_status_frames`).
pub fn gnttab_get_status_frames(dom: DomId, frames: &mut [u64]) -> Result<(), Errno> {
    let mut op = [GnttabGetStatusFrames {
        nr_frames: u32::try_from(frames.len()).map_err(|_| Errno::E2BIG)?,
        dom,
        status: 0,
        frame_list: addr_of_mut(frames),
    }];
    gnttab(GNTTABOP_GET_STATUS_FRAMES, &mut op)?;
    status_ok(op[0].status)
}

/// Swaps two entries of the caller's table (`GNTTABOP_swap_grant_ref`).
pub fn gnttab_swap_grant_ref(ref_a: GrantRef, ref_b: GrantRef) -> Result<(), Errno> {
    let mut op = [GnttabSwapGrantRef {
        ref_a,
        ref_b,
        ..Default::default()
    }];
    gnttab(GNTTABOP_SWAP_GRANT_REF, &mut op)?;
    status_ok(op[0].status)
}

// ----- sched_op extras ---------------------------------------------------------------

fn sched<T>(cmd: u32, arg: &mut T) -> Result<u64, Errno> {
    // SAFETY: `arg` is a live exclusive borrow of the structure `cmd` takes.
    ret(unsafe { hypercall2(Hypercall::SchedOp, u64::from(cmd), addr_of_mut(arg)) })
}

/// Blocks until one of `ports` is pending or system time reaches `timeout_ns` (0: no
/// timeout) (`SCHEDOP_poll`).
pub fn sched_poll(ports: &[EvtchnPort], timeout_ns: u64) -> Result<u64, Errno> {
    let mut arg = SchedPoll {
        ports: addr_of(ports),
        nr_ports: u32::try_from(ports.len()).map_err(|_| Errno::E2BIG)?,
        pad0: 0,
        timeout: timeout_ns,
    };
    sched(SCHEDOP_POLL, &mut arg)
}

/// Shuts down another domain (`SCHEDOP_remote_shutdown`; privileged).
pub fn sched_remote_shutdown(domain_id: DomId, reason: u32) -> Result<u64, Errno> {
    sched(
        SCHEDOP_REMOTE_SHUTDOWN,
        &mut SchedRemoteShutdown {
            domain_id,
            pad0: 0,
            reason,
        },
    )
}

/// Creates (`id == 0`, returns the new id), feeds or (`timeout == 0`) destroys a
/// watchdog (`SCHEDOP_watchdog`).
pub fn sched_watchdog(id: u32, timeout_s: u32) -> Result<u64, Errno> {
    sched(
        SCHEDOP_WATCHDOG,
        &mut SchedWatchdog {
            id,
            timeout: timeout_s,
        },
    )
}

/// Pins the VCPU to `pcpu`, or drops the override if negative (`SCHEDOP_pin_override`).
pub fn sched_pin_override(pcpu: i32) -> Result<u64, Errno> {
    sched(SCHEDOP_PIN_OVERRIDE, &mut SchedPinOverride { pcpu })
}

/// The old scheduler call (`sched_op_compat(cmd, arg)`): `arg` is the shutdown reason
/// for `SCHEDOP_shutdown`, otherwise 0.
pub fn sched_op_compat(cmd: u32, arg: u64) -> Result<u64, Errno> {
    if cmd != crate::sched::SCHEDOP_YIELD
        && cmd != crate::sched::SCHEDOP_BLOCK
        && cmd != crate::sched::SCHEDOP_SHUTDOWN
    {
        return Err(Errno::ENOSYS);
    }
    // A suspend returns on other frames: only `calls::suspend`, which is unsafe.
    if cmd == crate::sched::SCHEDOP_SHUTDOWN && arg == u64::from(crate::sched::SHUTDOWN_SUSPEND) {
        return Err(Errno::EINVAL);
    }
    // SAFETY: the compat commands take integers only.
    ret(unsafe { hypercall2(Hypercall::SchedOpCompat, u64::from(cmd), arg) })
}
