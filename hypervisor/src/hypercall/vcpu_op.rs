//! `vcpu_op(cmd, vcpu, arg)`: bringing vCPUs up and down, their runstate, their timers
//! and where their `vcpu_info` lives.
//!
//! A domain has the vCPUs its manifest gives it (at most [`crate::sched::MAX_VCPUS`]);
//! vCPU 0 starts at the kernel entry, the others stay offline until the guest gives
//! them a context (VCPUOP_initialise) and starts them (VCPUOP_up).

use super::After;
use super::global::{GlobalCall, command};
use crate::domain::{DomainState, FpuState, SegmentBases, Vcpu};
use crate::frames::PageType;
use crate::mm::{Mfn, PAGE_SIZE, PhysMem, is_canonical};
use crate::paging::Paging;
use crate::regs::TrapFrame;
use crate::sched::{RunState, VcpuRef};
use crate::time::MIN_PERIOD;
use crate::traps::bounce::rflags;
use crate::vcpu_info::VcpuInfoRef;
use pv_abi::arch_x86_64::{
    FLAT_RING3_CS64, FLAT_RING3_SS64, HYPERVISOR_VIRT_END, HYPERVISOR_VIRT_START, VGCF_I387_VALID,
    VGCF_IN_KERNEL, VGCF_SYSCALL_DISABLES_EVENTS, VcpuGuestContext, xen_cr3_to_pfn,
};
use pv_abi::errno::Errno;
use pv_abi::sched::SHUTDOWN_POWEROFF;
use pv_abi::vcpu::{
    VCPUOP_DOWN, VCPUOP_GET_RUNSTATE_INFO, VCPUOP_INITIALISE, VCPUOP_IS_UP,
    VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA, VCPUOP_REGISTER_VCPU_INFO, VCPUOP_SET_PERIODIC_TIMER,
    VCPUOP_SET_SINGLESHOT_TIMER, VCPUOP_STOP_PERIODIC_TIMER, VCPUOP_STOP_SINGLESHOT_TIMER,
    VCPUOP_UP, VcpuRegisterRunstateMemoryArea, VcpuRegisterVcpuInfo, VcpuSetPeriodicTimer,
    VcpuSetSingleshotTimer,
};
use pv_abi::xen::VcpuInfo;

/// Longest period a periodic timer may have: Xen's bound on time deltas,
/// `STIME_DELTA_MAX`, 2^62 - 1 ns (a longer period is EINVAL).
const MAX_PERIOD: u64 = (1 << 62) - 1;
/// Offset of MXCSR in an FXSAVE image, and the bits `fxrstor` accepts there (the
/// others fault, in the hypervisor, on the way back to the guest).
const MXCSR_OFFSET: usize = 24;
const MXCSR_VALID: u32 = 0xffbf;

fn valid_entry(address: u64) -> bool {
    is_canonical(address) && !(HYPERVISOR_VIRT_START..HYPERVISOR_VIRT_END).contains(&address)
}

pub(super) fn vcpu_op<M: PhysMem>(
    call: &mut GlobalCall<'_, M>,
    cmd: u64,
    vcpu: u64,
    arg: u64,
) -> Result<u64, Errno> {
    let cmd = command(cmd)?;
    let slot = call.slot;
    let count = call.guests.runtime[slot].nr_vcpus;
    let id = u32::try_from(vcpu)
        .ok()
        .filter(|&v| v < count)
        .ok_or(Errno::ENOENT)?;
    let target = VcpuRef {
        slot,
        vcpu: id as usize,
    };
    let is_current = id == call.vcpu_id();
    let now = call.guests.now;
    let guest = call.guest();
    match cmd {
        VCPUOP_INITIALISE => initialise(call, id, arg)?,
        VCPUOP_UP => {
            if !call.guests.runtime[slot].vcpus[id as usize].initialised {
                return Err(Errno::EINVAL);
            }
            call.guests.sched.up(target, now);
        }
        VCPUOP_DOWN => {
            let others_up = (0..count as usize).any(|v| {
                v != id as usize
                    && call.guests.sched.state(VcpuRef { slot, vcpu: v }) != RunState::Offline
            });
            if !others_up {
                // The last vCPU going down: the domain powers off, as in Xen's
                // do_vcpu_op ("Last vcpu going down?").
                if let Some(domain) = call.guests.domains[slot].as_mut() {
                    domain.state = DomainState::ShutDown {
                        reason: SHUTDOWN_POWEROFF,
                    };
                }
                call.after = After::Reschedule;
                return Ok(0);
            }
            call.guests.sched.down(target, now);
            // A vCPU that was polling stops: no stale wake-up or poll timeout later.
            let runtime = &mut call.guests.runtime[slot];
            runtime.end_poll(id as usize);
            runtime.vcpus[id as usize].timers.poll_timeout = None;
            if is_current {
                call.after = After::Reschedule;
            }
        }
        VCPUOP_IS_UP => {
            return Ok(u64::from(
                call.guests.sched.state(target) != RunState::Offline,
            ));
        }
        VCPUOP_GET_RUNSTATE_INFO => {
            guest.write_obj(arg, &call.guests.sched.runstate(target, now))?;
        }
        VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA => {
            let area: VcpuRegisterRunstateMemoryArea = guest.read_obj(arg)?;
            call.guests.runtime[slot].vcpus[id as usize].runstate_area =
                (area.addr != 0).then_some(area.addr);
            call.guests.publish_runstate(target);
        }
        VCPUOP_SET_PERIODIC_TIMER => {
            let set: VcpuSetPeriodicTimer = guest.read_obj(arg)?;
            if !(MIN_PERIOD..=MAX_PERIOD).contains(&set.period_ns) {
                return Err(Errno::EINVAL);
            }
            call.guests.runtime[slot].vcpus[id as usize]
                .timers
                .set_periodic(set.period_ns, now);
        }
        VCPUOP_STOP_PERIODIC_TIMER => {
            call.guests.runtime[slot].vcpus[id as usize].timers.periodic = None;
        }
        VCPUOP_SET_SINGLESHOT_TIMER => {
            if !is_current {
                return Err(Errno::EINVAL);
            }
            // VCPU_SSHOTTMR_future is ignored, as Xen 4.17 does (the header allows it):
            // a deadline in the past fires at once.
            let set: VcpuSetSingleshotTimer = guest.read_obj(arg)?;
            call.guests.runtime[slot].vcpus[id as usize]
                .timers
                .singleshot = Some(set.timeout_abs_ns);
        }
        VCPUOP_STOP_SINGLESHOT_TIMER => {
            if !is_current {
                return Err(Errno::EINVAL);
            }
            call.guests.runtime[slot].vcpus[id as usize]
                .timers
                .singleshot = None;
        }
        VCPUOP_REGISTER_VCPU_INFO => {
            let area: VcpuRegisterVcpuInfo = guest.read_obj(arg)?;
            register_vcpu_info(call, id, area)?;
        }
        _ => return Err(Errno::ENOSYS),
    }
    Ok(0)
}

/// VCPUOP_initialise: gives an offline, never-initialised vCPU its first context.
fn initialise<M: PhysMem>(call: &mut GlobalCall<'_, M>, id: u32, arg: u64) -> Result<(), Errno> {
    let slot = call.slot;
    if call.guests.runtime[slot].vcpus[id as usize].initialised {
        return Err(Errno::EEXIST);
    }
    let context: VcpuGuestContext = call.guest().read_obj(arg)?;
    let mut vcpu = vcpu_from_context(&context, id)?;
    let domain_id = call.domain().id;
    let mut paging = Paging::new(call.guests.mem, call.guests.frames, domain_id, call.mmu);
    paging.get_page_and_type(vcpu.kernel_root, PageType::L4Table)?;
    let user = xen_cr3_to_pfn(context.ctrlreg[1]);
    if user != 0 {
        if let Err(errno) = paging.get_page_and_type(Mfn(user), PageType::L4Table) {
            paging.put_page_and_type(vcpu.kernel_root);
            return Err(errno);
        }
        vcpu.set_user_root(Some(Mfn(user)));
    }
    if !vcpu.kernel_mode && vcpu.user_root().is_none() {
        paging.put_page_and_type(vcpu.kernel_root);
        return Err(Errno::EINVAL);
    }
    let runtime = &mut call.guests.runtime[slot];
    runtime.parked[id as usize] = Some(vcpu);
    runtime.vcpus[id as usize].initialised = true;
    Ok(())
}

/// Checks a guest-supplied context and turns it into a vCPU (page references are the
/// caller's business).
fn vcpu_from_context(context: &VcpuGuestContext, id: u32) -> Result<Vcpu, Errno> {
    let r = &context.user_regs;
    let entries = [
        r.rip,
        r.rsp,
        context.kernel_sp,
        context.event_callback_eip,
        context.failsafe_callback_eip,
        context.syscall_callback_eip,
    ];
    let bases = [
        context.fs_base,
        context.gs_base_kernel,
        context.gs_base_user,
    ];
    if !entries.iter().chain(&bases).all(|&a| is_canonical(a))
        || [
            context.event_callback_eip,
            context.failsafe_callback_eip,
            context.syscall_callback_eip,
        ]
        .iter()
        .any(|&a| a != 0 && !valid_entry(a))
    {
        return Err(Errno::EINVAL);
    }
    let mut trap_table = context.trap_ctxt;
    for entry in &mut trap_table {
        if entry.address != 0 && !valid_entry(entry.address) {
            return Err(Errno::EINVAL);
        }
    }
    let regs = TrapFrame {
        r15: r.r15,
        r14: r.r14,
        r13: r.r13,
        r12: r.r12,
        r11: r.r11,
        r10: r.r10,
        r9: r.r9,
        r8: r.r8,
        rbp: r.rbp,
        rdi: r.rdi,
        rsi: r.rsi,
        rdx: r.rdx,
        rcx: r.rcx,
        rbx: r.rbx,
        rax: r.rax,
        vector: 0,
        error_code: 0,
        rip: r.rip,
        cs: u64::from(FLAT_RING3_CS64),
        rflags: (r.rflags & rflags::GUEST_SETTABLE) | rflags::IF | rflags::RESERVED_ONE,
        rsp: r.rsp,
        ss: u64::from(FLAT_RING3_SS64),
    };
    let mut vcpu = Vcpu::new(regs, Mfn(xen_cr3_to_pfn(context.ctrlreg[3])));
    vcpu.id = id;
    // The IOPL the context asks for is the vCPU's virtual IOPL (Xen's
    // arch_set_info_guest: "IOPL privileges are virtualised"); the real one stays 0.
    vcpu.iopl = ((r.rflags & rflags::IOPL) >> 12) as u8;
    vcpu.kernel_mode = context.flags & VGCF_IN_KERNEL != 0;
    vcpu.set_kernel_sp(context.kernel_sp);
    vcpu.kernel_ss = context.kernel_ss | 3;
    vcpu.segments = SegmentBases {
        fs: context.fs_base,
        gs_kernel: context.gs_base_kernel,
        gs_user: context.gs_base_user,
    };
    vcpu.trap_table = trap_table;
    vcpu.callbacks.event = context.event_callback_eip;
    vcpu.callbacks.failsafe = context.failsafe_callback_eip;
    vcpu.callbacks.syscall = context.syscall_callback_eip;
    vcpu.callbacks.syscall_masks_events = context.flags & VGCF_SYSCALL_DISABLES_EVENTS != 0;
    if context.flags & VGCF_I387_VALID != 0 {
        let mut fpu = FpuState(context.fpu_ctxt);
        let at = MXCSR_OFFSET..MXCSR_OFFSET + 4;
        let mxcsr = u32::from_le_bytes(fpu.0[at.clone()].try_into().unwrap_or([0; 4]));
        fpu.0[at].copy_from_slice(&(mxcsr & MXCSR_VALID).to_le_bytes());
        vcpu.fpu = fpu;
    }
    Ok(vcpu)
}

/// VCPUOP_register_vcpu_info: moves a vCPU's `vcpu_info` into a frame of the guest's,
/// once. As in Xen, only for the calling vCPU or an offline one; the frame is held as
/// a writable page from then on (it can never become a page table), the old contents
/// are copied over, and every selector bit is set so the guest rescans.
fn register_vcpu_info<M: PhysMem>(
    call: &mut GlobalCall<'_, M>,
    id: u32,
    area: VcpuRegisterVcpuInfo,
) -> Result<(), Errno> {
    let slot = call.slot;
    let target = VcpuRef {
        slot,
        vcpu: id as usize,
    };
    if id != call.vcpu_id() && call.guests.sched.state(target) != RunState::Offline {
        return Err(Errno::EINVAL);
    }
    let size = core::mem::size_of::<VcpuInfo>() as u64;
    let offset = u64::from(area.offset);
    if offset + size > PAGE_SIZE || !offset.is_multiple_of(8) {
        return Err(Errno::EINVAL);
    }
    let already = call
        .guests
        .vcpu_mut(slot, id)
        .is_none_or(|v| v.vcpu_info.is_some());
    if already {
        return Err(Errno::EINVAL);
    }
    let old = call.guests.vcpu_info_addr(slot, id).ok_or(Errno::EINVAL)?;
    let domain_id = call.domain().id;
    let mfn = Mfn(area.mfn);
    Paging::new(call.guests.mem, call.guests.frames, domain_id, call.mmu)
        .get_page_and_type(mfn, PageType::Writable)?;
    let new = mfn.addr() + offset;
    let mem = call.guests.mem;
    let mut bytes = [0u8; core::mem::size_of::<VcpuInfo>()];
    mem.read(old, &mut bytes);
    mem.write(new, &bytes);
    let info = VcpuInfoRef::at(mem, new);
    for word in 0..64 {
        info.test_and_set_selector(word);
    }
    info.mark_upcall_pending();
    if let Some(vcpu) = call.guests.vcpu_mut(slot, id) {
        vcpu.vcpu_info = Some(new);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::global::tests::call;
    use super::*;
    use crate::guests::tests::{BUF, Multi, frame};
    use pv_abi::vcpu::{
        RUNSTATE_OFFLINE, RUNSTATE_RUNNING, VCPU_SSHOTTMR_FUTURE, VcpuRunstateInfo,
    };
    use pv_abi::xen::Hypercall;
    use zerocopy::{FromBytes, FromZeros, IntoBytes};

    fn op(w: &mut Multi, cmd: u32, vcpu: u64, arg: &[u8]) -> (i64, After) {
        w.put(0, 0, arg);
        call(w, 0, Hypercall::VcpuOp, [u64::from(cmd), vcpu, BUF, 0, 0]).unwrap()
    }

    fn context(root: Mfn) -> VcpuGuestContext {
        let mut context = VcpuGuestContext::new_zeroed();
        context.flags = VGCF_IN_KERNEL;
        context.user_regs.rip = 0xffff_ffff_8000_1000;
        context.user_regs.rsp = 0xffff_ffff_8010_0000;
        context.user_regs.rflags = 0x3202;
        context.ctrlreg[3] = root.addr();
        context.event_callback_eip = 0xffff_ffff_8000_2000;
        context
    }

    #[test]
    fn a_second_vcpu_comes_up_and_goes_down() {
        let mut w = Multi::with_vcpus(&[2]);
        w.runtime[0].vcpus[1].initialised = false;
        w.runtime[0].parked[1] = None;
        w.run(0);
        assert_eq!(op(&mut w, VCPUOP_IS_UP, 1, &[]).0, 0);
        assert_eq!(op(&mut w, VCPUOP_UP, 1, &[]).0, -22, "not initialised");
        assert_eq!(op(&mut w, VCPUOP_IS_UP, 2, &[]).0, -2, "no vCPU 2");
        // The root must be a frame the domain owns and may use as a page table.
        let bad = context(Mfn(0));
        let (ret, _) = op(&mut w, VCPUOP_INITIALISE, 1, bad.as_bytes());
        assert!(ret < 0, "the hypervisor's frame");
        assert!(w.with(|g| g.vcpu_mut(0, 1).is_none()));
        // The test world's L4 is untyped: give it its type the way pinning would.
        let mut info = w.storage[frame(0, 0).0 as usize];
        info.page_type = PageType::L4Table;
        info.type_count = 1;
        info.validated = true;
        w.storage[frame(0, 0).0 as usize] = info;
        let good = context(frame(0, 0));
        let (ret, _) = op(&mut w, VCPUOP_INITIALISE, 1, good.as_bytes());
        assert_eq!(ret, 0);
        assert_eq!(
            op(&mut w, VCPUOP_INITIALISE, 1, good.as_bytes()).0,
            -17,
            "EEXIST"
        );
        let vcpu = w.runtime[0].parked[1].clone().unwrap();
        assert_eq!((vcpu.id, vcpu.regs.rip), (1, 0xffff_ffff_8000_1000));
        assert_eq!(vcpu.regs.rflags & 0x3200, 0x0200, "IOPL dropped, IF set");
        assert_eq!(vcpu.iopl, 3, "the virtual IOPL the context asked for");
        assert_eq!(vcpu.callbacks.event, 0xffff_ffff_8000_2000);
        assert_eq!(op(&mut w, VCPUOP_UP, 1, &[]).0, 0);
        assert_eq!(op(&mut w, VCPUOP_IS_UP, 1, &[]).0, 1);
        // Down: allowed while another is up; the caller going down reschedules.
        assert_eq!(op(&mut w, VCPUOP_DOWN, 1, &[]).0, 0);
        assert_eq!(op(&mut w, VCPUOP_UP, 1, &[]).0, 0);
        // A polling vCPU taken down stops polling: no stale wake-up or poll timeout
        // (found by review).
        w.runtime[0].start_poll(1, &[5]);
        w.runtime[0].vcpus[1].timers.poll_timeout = Some(9_000_000);
        assert_eq!(op(&mut w, VCPUOP_DOWN, 1, &[]).0, 0);
        assert!(!w.runtime[0].polling() && !w.runtime[0].polled(5));
        assert_eq!(w.runtime[0].vcpus[1].timers.poll_timeout, None);
        assert_eq!(op(&mut w, VCPUOP_UP, 1, &[]).0, 0);
        assert_eq!(op(&mut w, VCPUOP_DOWN, 0, &[]), (0, After::Reschedule));
        assert!(w.domains[0].as_ref().unwrap().is_running());
        // The last one up going down powers the domain off, as in Xen.
        assert_eq!(op(&mut w, VCPUOP_DOWN, 1, &[]), (0, After::Reschedule));
        assert_eq!(
            w.domains[0].as_ref().unwrap().state,
            DomainState::ShutDown {
                reason: SHUTDOWN_POWEROFF
            }
        );
    }

    /// The express paths of `entry.S` test a handler only for 0 (see `Callbacks`): a
    /// context must not bring in a non-canonical one.
    #[test]
    fn a_context_with_a_non_canonical_handler_is_refused() {
        let non_canonical = 1u64 << 47;
        assert!(vcpu_from_context(&context(Mfn(5)), 1).is_ok());
        for which in 0..4 {
            let mut bad = context(Mfn(5));
            match which {
                0 => bad.event_callback_eip = non_canonical,
                1 => bad.failsafe_callback_eip = non_canonical,
                2 => bad.syscall_callback_eip = non_canonical,
                _ => bad.trap_ctxt[14].address = non_canonical,
            }
            assert_eq!(
                vcpu_from_context(&bad, 1).err(),
                Some(Errno::EINVAL),
                "handler {which}"
            );
        }
    }

    #[test]
    fn runstate_and_timers() {
        let mut w = Multi::with_vcpus(&[2]);
        w.run(0);
        w.now = 3_000_000;
        let (ret, _) = op(&mut w, VCPUOP_GET_RUNSTATE_INFO, 0, &[0; 48]);
        assert_eq!(ret, 0);
        let info = VcpuRunstateInfo::read_from_bytes(&w.get(0, 0, 48)).unwrap();
        assert_eq!(info.state, RUNSTATE_RUNNING);
        assert_eq!(info.time[0], 3_000_000);
        op(&mut w, VCPUOP_GET_RUNSTATE_INFO, 1, &[0; 48]);
        let info = VcpuRunstateInfo::read_from_bytes(&w.get(0, 0, 48)).unwrap();
        assert_eq!(info.state, RUNSTATE_OFFLINE);

        for period_ns in [1000, 1 << 62] {
            let period = VcpuSetPeriodicTimer { period_ns };
            assert_eq!(
                op(&mut w, VCPUOP_SET_PERIODIC_TIMER, 0, period.as_bytes()).0,
                -22,
                "{period_ns} ns: under 1 ms, or past Xen's STIME_DELTA_MAX"
            );
        }
        let period = VcpuSetPeriodicTimer {
            period_ns: 10_000_000,
        };
        assert_eq!(
            op(&mut w, VCPUOP_SET_PERIODIC_TIMER, 1, period.as_bytes()).0,
            0
        );
        assert_eq!(
            w.runtime[0].vcpus[1].timers.periodic,
            Some((10_000_000, 13_000_000))
        );
        assert_eq!(op(&mut w, VCPUOP_STOP_PERIODIC_TIMER, 1, &[]).0, 0);
        assert_eq!(w.runtime[0].vcpus[1].timers.periodic, None);
        let shot = VcpuSetSingleshotTimer {
            timeout_abs_ns: 1_000,
            flags: VCPU_SSHOTTMR_FUTURE,
            pad0: 0,
        };
        assert_eq!(
            op(&mut w, VCPUOP_SET_SINGLESHOT_TIMER, 0, shot.as_bytes()).0,
            0,
            "FUTURE is ignored, as in Xen 4.17"
        );
        assert_eq!(w.runtime[0].vcpus[0].timers.singleshot, Some(1_000));
        assert_eq!(
            op(&mut w, VCPUOP_SET_SINGLESHOT_TIMER, 1, shot.as_bytes()).0,
            -22,
            "only for the caller"
        );
        let shot = VcpuSetSingleshotTimer {
            timeout_abs_ns: 5_000_000,
            flags: VCPU_SSHOTTMR_FUTURE,
            pad0: 0,
        };
        assert_eq!(
            op(&mut w, VCPUOP_SET_SINGLESHOT_TIMER, 0, shot.as_bytes()).0,
            0
        );
        assert_eq!(w.runtime[0].vcpus[0].timers.singleshot, Some(5_000_000));
        assert_eq!(op(&mut w, VCPUOP_STOP_SINGLESHOT_TIMER, 0, &[]).0, 0);
        assert_eq!(w.runtime[0].vcpus[0].timers.singleshot, None);
        assert_eq!(op(&mut w, 99, 0, &[]).0, -38);
    }

    #[test]
    fn vcpu_info_moves_once_to_a_writable_frame() {
        let mut w = Multi::new(1);
        w.run(0);
        w.info(0, 0).set_upcall_mask(true);
        let area = VcpuRegisterVcpuInfo {
            mfn: frame(0, 0).0,
            offset: 64,
            rsvd: 0,
        };
        w.storage[frame(0, 0).0 as usize].page_type = PageType::L4Table;
        w.storage[frame(0, 0).0 as usize].type_count = 1;
        let (ret, _) = op(&mut w, VCPUOP_REGISTER_VCPU_INFO, 0, area.as_bytes());
        assert!(ret < 0, "not into a page table");
        let area = VcpuRegisterVcpuInfo {
            mfn: frame(0, 7).0,
            offset: 60,
            rsvd: 0,
        };
        assert_eq!(
            op(&mut w, VCPUOP_REGISTER_VCPU_INFO, 0, area.as_bytes()).0,
            -22,
            "misaligned"
        );
        let area = VcpuRegisterVcpuInfo {
            mfn: frame(0, 7).0,
            offset: 128,
            rsvd: 0,
        };
        assert_eq!(
            op(&mut w, VCPUOP_REGISTER_VCPU_INFO, 0, area.as_bytes()).0,
            0
        );
        let moved = VcpuInfoRef::at(&w.mem, frame(0, 7).addr() + 128);
        assert!(moved.upcall_mask(), "contents copied");
        assert!(moved.upcall_pending());
        assert_eq!(moved.selector(), u64::MAX);
        let domain = w.domains[0].as_ref().unwrap();
        assert_eq!(domain.vcpu.vcpu_info, Some(frame(0, 7).addr() + 128));
        assert_eq!(
            op(&mut w, VCPUOP_REGISTER_VCPU_INFO, 0, area.as_bytes()).0,
            -22,
            "once only"
        );
    }
}
