//! VCPU operations, timers and physical-device operations.

use super::calls::{addr_of, addr_of_mut, ret};
use super::raw::{hypercall1, hypercall2, hypercall3};
use crate::arch_x86_64::VcpuGuestContext;
use crate::errno::Errno;
use crate::physdev::{
    PHYSDEVOP_EOI, PHYSDEVOP_GET_FREE_PIRQ, PHYSDEVOP_IRQ_STATUS_QUERY, PHYSDEVOP_MAP_PIRQ,
    PHYSDEVOP_SET_IOBITMAP, PHYSDEVOP_SET_IOPL, PHYSDEVOP_UNMAP_PIRQ, PhysdevEoi,
    PhysdevGetFreePirq, PhysdevIrqStatusQuery, PhysdevMapPirq, PhysdevOp, PhysdevSetIobitmap,
    PhysdevSetIopl, PhysdevUnmapPirq,
};
use crate::vcpu::{
    VCPU_SSHOTTMR_FUTURE, VCPUOP_DOWN, VCPUOP_GET_PHYSID, VCPUOP_GET_RUNSTATE_INFO,
    VCPUOP_INITIALISE, VCPUOP_IS_UP, VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA,
    VCPUOP_REGISTER_VCPU_INFO, VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA, VCPUOP_SEND_NMI,
    VCPUOP_SET_PERIODIC_TIMER, VCPUOP_SET_SINGLESHOT_TIMER, VCPUOP_STOP_PERIODIC_TIMER,
    VCPUOP_STOP_SINGLESHOT_TIMER, VCPUOP_UP, VcpuGetPhysid, VcpuRegisterRunstateMemoryArea,
    VcpuRegisterTimeMemoryArea, VcpuRegisterVcpuInfo, VcpuRunstateInfo, VcpuSetPeriodicTimer,
    VcpuSetSingleshotTimer,
};
use crate::xen::Hypercall;

// ----- set_timer_op ------------------------------------------------------------------

/// Arms the one-shot timer for absolute system time `deadline_ns`, or disarms it with 0
/// (`set_timer_op`); it fires as `VIRQ_TIMER`.
pub fn set_timer_op(deadline_ns: u64) -> Result<u64, Errno> {
    // SAFETY: an integer argument; the timer raises an event, nothing else.
    ret(unsafe { hypercall1(Hypercall::SetTimerOp, deadline_ns) })
}

// ----- vcpu_op -----------------------------------------------------------------------

/// Issues `vcpu_op(cmd, vcpu, arg)` with a raw argument.
///
/// # Safety
/// `arg` must be null or point to the structure `cmd` takes; registration commands make
/// the hypervisor keep writing the registered memory.
pub unsafe fn vcpu_op_raw(cmd: u32, vcpu: u32, arg: u64) -> Result<u64, Errno> {
    // SAFETY: forwarded from the caller.
    ret(unsafe { hypercall3(Hypercall::VcpuOp, u64::from(cmd), u64::from(vcpu), arg) })
}

fn vcpu_simple(cmd: u32, vcpu: u32) -> Result<u64, Errno> {
    // SAFETY: callers pass commands without an argument or side effects on guest memory.
    unsafe { vcpu_op_raw(cmd, vcpu, 0) }
}

/// Sets the initial context of an offline VCPU (`VCPUOP_initialise`).
///
/// # Safety
/// The context will run once the VCPU is brought up: its code, stack, page tables and
/// callbacks must be sound.
pub unsafe fn vcpu_initialise(vcpu: u32, ctxt: &VcpuGuestContext) -> Result<u64, Errno> {
    // SAFETY: `ctxt` is live and only read; its soundness is the caller's.
    unsafe { vcpu_op_raw(VCPUOP_INITIALISE, vcpu, addr_of(ctxt)) }
}

/// Starts an initialised VCPU (`VCPUOP_up`).
///
/// # Safety
/// As [`vcpu_initialise`]: the VCPU starts running its context.
pub unsafe fn vcpu_up(vcpu: u32) -> Result<u64, Errno> {
    vcpu_simple(VCPUOP_UP, vcpu)
}

/// Stops a VCPU (`VCPUOP_down`).
pub fn vcpu_down(vcpu: u32) -> Result<u64, Errno> {
    vcpu_simple(VCPUOP_DOWN, vcpu)
}

/// Whether a VCPU is up (`VCPUOP_is_up`).
pub fn vcpu_is_up(vcpu: u32) -> Result<bool, Errno> {
    Ok(vcpu_simple(VCPUOP_IS_UP, vcpu)? != 0)
}

/// A VCPU's time accounting (`VCPUOP_get_runstate_info`).
pub fn vcpu_get_runstate_info(vcpu: u32) -> Result<VcpuRunstateInfo, Errno> {
    let mut info = VcpuRunstateInfo::default();
    // SAFETY: `info` is a live exclusive borrow of the structure the command fills.
    unsafe { vcpu_op_raw(VCPUOP_GET_RUNSTATE_INFO, vcpu, addr_of_mut(&mut info)) }?;
    Ok(info)
}

/// Has the hypervisor keep `area` up to date (`VCPUOP_register_runstate_memory_area`).
///
/// # Safety
/// The hypervisor writes `area` (a guest virtual address of a [`VcpuRunstateInfo`])
/// whenever the VCPU is scheduled, until another registration: it must stay mapped
/// and dedicated.
pub unsafe fn vcpu_register_runstate_memory_area(vcpu: u32, area: u64) -> Result<u64, Errno> {
    let arg = VcpuRegisterRunstateMemoryArea { addr: area };
    // SAFETY: `arg` is live; the lasting registration is the caller's responsibility.
    unsafe { vcpu_op_raw(VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA, vcpu, addr_of(&arg)) }
}

/// Starts a periodic timer of `period_ns` (`VCPUOP_set_periodic_timer`).
pub fn vcpu_set_periodic_timer(vcpu: u32, period_ns: u64) -> Result<u64, Errno> {
    let arg = VcpuSetPeriodicTimer { period_ns };
    // SAFETY: `arg` is live and only read.
    unsafe { vcpu_op_raw(VCPUOP_SET_PERIODIC_TIMER, vcpu, addr_of(&arg)) }
}

/// Stops the periodic timer (`VCPUOP_stop_periodic_timer`).
pub fn vcpu_stop_periodic_timer(vcpu: u32) -> Result<u64, Errno> {
    vcpu_simple(VCPUOP_STOP_PERIODIC_TIMER, vcpu)
}

/// Arms the one-shot timer at absolute `timeout_abs_ns`; with `future_only`, fails with
/// `ETIME` if that time has passed (`VCPUOP_set_singleshot_timer`).
pub fn vcpu_set_singleshot_timer(
    vcpu: u32,
    timeout_abs_ns: u64,
    future_only: bool,
) -> Result<u64, Errno> {
    let arg = VcpuSetSingleshotTimer {
        timeout_abs_ns,
        flags: if future_only { VCPU_SSHOTTMR_FUTURE } else { 0 },
        pad0: 0,
    };
    // SAFETY: `arg` is live and only read.
    unsafe { vcpu_op_raw(VCPUOP_SET_SINGLESHOT_TIMER, vcpu, addr_of(&arg)) }
}

/// Disarms the one-shot timer (`VCPUOP_stop_singleshot_timer`).
pub fn vcpu_stop_singleshot_timer(vcpu: u32) -> Result<u64, Errno> {
    vcpu_simple(VCPUOP_STOP_SINGLESHOT_TIMER, vcpu)
}

/// Moves the VCPU's `vcpu_info` to `offset` in frame `mfn`
/// (`VCPUOP_register_vcpu_info`).
///
/// # Safety
/// The hypervisor writes the new location from now on: it must stay dedicated.
pub unsafe fn vcpu_register_vcpu_info(vcpu: u32, mfn: u64, offset: u32) -> Result<u64, Errno> {
    let arg = VcpuRegisterVcpuInfo {
        mfn,
        offset,
        rsvd: 0,
    };
    // SAFETY: `arg` is live; the lasting registration is the caller's responsibility.
    unsafe { vcpu_op_raw(VCPUOP_REGISTER_VCPU_INFO, vcpu, addr_of(&arg)) }
}

/// Sends an NMI to a VCPU (`VCPUOP_send_nmi`).
pub fn vcpu_send_nmi(vcpu: u32) -> Result<u64, Errno> {
    vcpu_simple(VCPUOP_SEND_NMI, vcpu)
}

/// The physical CPU identity behind a VCPU (`VCPUOP_get_physid`).
pub fn vcpu_get_physid(vcpu: u32) -> Result<VcpuGetPhysid, Errno> {
    let mut arg = VcpuGetPhysid::default();
    // SAFETY: `arg` is a live exclusive borrow of the structure the command fills.
    unsafe { vcpu_op_raw(VCPUOP_GET_PHYSID, vcpu, addr_of_mut(&mut arg)) }?;
    Ok(arg)
}

/// Has the hypervisor keep a copy of the VCPU's time info at `area`
/// (`VCPUOP_register_vcpu_time_memory_area`).
///
/// # Safety
/// As [`vcpu_register_runstate_memory_area`].
pub unsafe fn vcpu_register_time_memory_area(vcpu: u32, area: u64) -> Result<u64, Errno> {
    let arg = VcpuRegisterTimeMemoryArea { addr: area };
    // SAFETY: `arg` is live; the lasting registration is the caller's responsibility.
    unsafe { vcpu_op_raw(VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA, vcpu, addr_of(&arg)) }
}

// ----- physdev_op --------------------------------------------------------------------

/// Issues `physdev_op(cmd, arg)` with a raw argument.
///
/// # Safety
/// `arg` must point to the structure `cmd` takes; some commands make the hypervisor
/// keep a pointer (`PHYSDEVOP_set_iobitmap`).
pub unsafe fn physdev_op_raw(cmd: u32, arg: u64) -> Result<u64, Errno> {
    // SAFETY: forwarded from the caller.
    ret(unsafe { hypercall2(Hypercall::PhysdevOp, u64::from(cmd), arg) })
}

fn physdev<T>(cmd: u32, arg: &mut T) -> Result<u64, Errno> {
    // SAFETY: `arg` is a live exclusive borrow of the structure `cmd` takes (callers pair
    // them); none of these commands retains the pointer.
    unsafe { physdev_op_raw(cmd, addr_of_mut(arg)) }
}

/// Sets the virtual I/O privilege level, 0..=3 (`PHYSDEVOP_set_iopl`).
pub fn physdev_set_iopl(iopl: u32) -> Result<u64, Errno> {
    physdev(PHYSDEVOP_SET_IOPL, &mut PhysdevSetIopl { iopl })
}

/// Installs an I/O port bitmap covering `nr_ports` ports (`PHYSDEVOP_set_iobitmap`).
///
/// # Safety
/// The hypervisor keeps reading `bitmap` (a guest virtual address) on port accesses:
/// it must stay mapped and unchanged unless meant to change permissions.
pub unsafe fn physdev_set_iobitmap(bitmap: u64, nr_ports: u32) -> Result<u64, Errno> {
    let mut arg = PhysdevSetIobitmap {
        bitmap,
        nr_ports,
        pad0: 0,
    };
    // SAFETY: `arg` is live; the retained bitmap pointer is the caller's responsibility.
    unsafe { physdev_op_raw(PHYSDEVOP_SET_IOBITMAP, addr_of_mut(&mut arg)) }
}

/// `XENIRQSTAT_*` flags of a physical IRQ (`PHYSDEVOP_irq_status_query`).
pub fn physdev_irq_status_query(irq: u32) -> Result<u32, Errno> {
    let mut arg = PhysdevIrqStatusQuery { irq, flags: 0 };
    physdev(PHYSDEVOP_IRQ_STATUS_QUERY, &mut arg)?;
    Ok(arg.flags)
}

/// Signals end of interrupt for a PIRQ (`PHYSDEVOP_eoi`).
pub fn physdev_eoi(irq: u32) -> Result<u64, Errno> {
    physdev(PHYSDEVOP_EOI, &mut PhysdevEoi { irq })
}

/// Maps a GSI or MSI to a PIRQ (`PHYSDEVOP_map_pirq`); `arg.pirq` holds the result.
pub fn physdev_map_pirq(arg: &mut PhysdevMapPirq) -> Result<u64, Errno> {
    physdev(PHYSDEVOP_MAP_PIRQ, arg)
}

/// Unmaps a PIRQ (`PHYSDEVOP_unmap_pirq`).
pub fn physdev_unmap_pirq(domid: u16, pirq: i32) -> Result<u64, Errno> {
    physdev(
        PHYSDEVOP_UNMAP_PIRQ,
        &mut PhysdevUnmapPirq {
            domid,
            pad0: 0,
            pirq,
        },
    )
}

/// Allocates an unused PIRQ of `MAP_PIRQ_TYPE_*` `kind` (`PHYSDEVOP_get_free_pirq`).
pub fn physdev_get_free_pirq(kind: i32) -> Result<u32, Errno> {
    let mut arg = PhysdevGetFreePirq {
        r#type: kind,
        pirq: 0,
    };
    physdev(PHYSDEVOP_GET_FREE_PIRQ, &mut arg)?;
    Ok(arg.pirq)
}

/// The old single-argument form (`physdev_op_compat`).
///
/// # Safety
/// As [`physdev_op_raw`] for the command in `op`.
pub unsafe fn physdev_op_compat(op: &mut PhysdevOp) -> Result<u64, Errno> {
    // SAFETY: `op` is a live exclusive borrow; the command's effects are the caller's.
    ret(unsafe { hypercall1(Hypercall::PhysdevOpCompat, addr_of_mut(op)) })
}
