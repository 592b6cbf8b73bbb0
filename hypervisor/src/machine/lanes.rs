//! The lanes: entries for what every PV kernel does all the time (an event send and the
//! upcall it leaves due, `HYPERVISOR_iret`, a process's system call, a not-present page
//! fault), each with a stub of its own in `entry.S` that builds no trap frame, and one
//! function here that takes the machine lock, does the work with the general path's own
//! checked code, and says how to leave. Anything unusual is declined before the guest
//! can see a change, and the general path does it all again (docs/architecture.md,
//! "The lanes").

use super::{
    DirectMap, FastEntry, STATE, State, light_paging_call, load_mode, return_fast, set_cr2,
    set_upcall_mask, upcall_due, upcall_pending,
};
use crate::arch::x86_64::{self as x86, cpu};
use hypervisor::domain::Domain;
use hypervisor::frames::FrameTable;
use hypervisor::guestmem::{GuestMem, WalkMemo};
use hypervisor::guests::events;
use hypervisor::hypercall::{self, After};
use hypervisor::regs::TrapFrame;
use hypervisor::traps::{self, TrapContext};
use pv_abi::arch_x86_64::{FLAT_RING3_CS64, FLAT_RING3_SS64, IretContext};

/// The machine state for a lane (`entry.S`): the lock if it is free (a lane never waits
/// for it: it declines, and the general path waits), with the invariants of every entry
/// checked, and only if the vCPU on this CPU is in the guest mode the lane serves
/// (`Some(true)`: kernel, `Some(false)`: user, `None`: either).
#[inline(always)]
fn lane_state(kernel_mode: Option<bool>) -> Option<spin::MutexGuard<'static, State>> {
    let guard = STATE.try_lock()?;
    // As on every entry (see `hypercall_fast`).
    debug_assert!(!guard.machine_dirty && !guard.ticked && guard.on_cpu.is_some());
    if kernel_mode.is_some() && guard.loaded.kernel_mode != kernel_mode {
        return None;
    }
    Some(guard)
}

/// [`send_lane`]'s `read` when the express send did not read the port (any value above
/// `u32::MAX` is one).
pub const PORT_NOT_READ: u64 = u64::MAX;

/// What the send lane tells its stub (`entry.S`, `send_lane`), in two registers: the
/// result for the guest's rax, and how to leave.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LaneExit {
    /// The call's result for the guest's rax (0: a send that fails is declined, and the
    /// general path returns its errno); meaningless when declined.
    pub value: u64,
    /// [`FastEntry::Return`] (back by `sysretq`), [`FastEntry::Declined`] (nothing
    /// happened: the general stub takes the call), [`FastEntry::Finish`] (the call ran
    /// and woke a vCPU: the stub builds the general frame and takes the full exit path)
    /// or [`FastEntry::Deliver`] (the call ran and an upcall is due: the stub asks
    /// [`upcall_lane`], and if it declines builds the general frame and asks
    /// [`send_lane_exit`]).
    pub how: u64,
}

impl LaneExit {
    const DECLINED: LaneExit = LaneExit {
        value: 0,
        how: FastEntry::Declined as u64,
    };
}

/// `EVTCHNOP_send` from a guest kernel, by the send lane (`entry.S`): the notification
/// of every PV ring, with no trap frame, no dispatch and nothing saved but the registers
/// Rust may clobber. `port_ptr` is the guest's `evtchn_send` argument (its rsi).
///
/// The effects are the machine-wide dispatcher's (`Guests::send`), by
/// `events::send_raise` (each channel and domain looked up once, the receiving end's
/// wake-up handed back in one word; a host test holds the two to the same effects),
/// with the scheduler and the clock reached only if a vCPU must wake (`send_wake`). The
/// guest's FPU state is not saved, and in release builds no CR0.TS guards it: nothing
/// here may touch SSE registers, which `cargo xtask test` checks on the built binary for
/// every lane (`xtask/src/sse_check.rs`). Declined, having done nothing, for a
/// process's system call (its kernel's, not ours), when the lock is busy, when the
/// argument cannot be read through the MMU and for a send that fails (the general path
/// does it again and returns the errno). A send that leaves an upcall due has it
/// delivered by [`upcall_lane`] (or [`send_lane_exit`]); one that changed the scheduler
/// takes the full exit path.
///
/// `read` is the port when the express send (`entry.S`) read it already and declined
/// (it is not read again), [`PORT_NOT_READ`] otherwise.
#[inline]
pub fn send_lane(read: u64, port_ptr: u64) -> LaneExit {
    let Some(mut guard) = lane_state(Some(true)) else {
        return LaneExit::DECLINED;
    };
    let state = &mut *guard;
    let slot = state.current;
    let Some(domain) = state.domains[slot].as_ref() else {
        return LaneExit::DECLINED;
    };
    // Through the MMU only: anything else (another address space loaded, a range
    // outside the guest's slots) is left to the general path, which walks.
    let guest = GuestMem::new(
        &DirectMap,
        &state.frames,
        domain.id,
        domain.vcpu.kernel_root,
    );
    // A send that fails (a fault on the pointer, a port that cannot send) fails before
    // it changes anything: it is declined too, and the general path, doing the same
    // again, returns the errno, so the lane carries no error paths.
    let port = match u32::try_from(read) {
        Ok(port) => port,
        Err(_) => match guest.read_obj_mapped::<pv_abi::event_channel::EvtchnSend>(port_ptr) {
            Some(op) => op.port,
            None => return LaneExit::DECLINED,
        },
    };
    let Ok(owed) = events::send_raise(
        &DirectMap,
        &state.domains,
        &state.runtime,
        slot,
        domain,
        port,
    ) else {
        return LaneExit::DECLINED;
    };
    if let Some(wake) = owed {
        send_wake(state, wake);
        // Only a wake-up can have dirtied the machine (it is clean on every entry).
        if state.machine_dirty {
            state.fast_after = Some(After::Resume);
            return LaneExit {
                value: 0,
                how: FastEntry::Finish as u64,
            };
        }
    }
    let how = if upcall_due() {
        // What the upcall's express path (`entry.S`) takes on trust from Deliver.
        debug_assert!(state.fast_after.is_none() && state.loaded.kernel_mode == Some(true));
        FastEntry::Deliver
    } else {
        FastEntry::Return
    };
    LaneExit {
        value: 0,
        how: how as u64,
    }
}

/// `update_va_mapping`, and `mmu_update` of one request, from a guest kernel, by the
/// paging lane (`entry.S`, `paging_lane`): the page-table calls a PV kernel makes one
/// at a time (Linux's `set_pte` on a live table, a copy-on-write fault's new mapping),
/// with no trap frame, no dispatch and nothing saved but the registers Rust may clobber.
/// `number` is the call's, `args` its first four arguments (rdi, rsi, rdx, r10).
///
/// The work and its checks are the fast path's, by the same function
/// ([`light_paging_call`]: `hypercall::light_update_va_mapping` and
/// `hypercall::light_mmu_update`, which validate every entry as the general handlers
/// do): the same result for every request, the errno included. SSE-free, as every lane
/// (checked by `cargo xtask test`). Declined, having done nothing, for a busy lock, an
/// upcall due (the fast path behind the stub delivers it on the way out; a page-table
/// update raises no event, so none becomes due here), any other call or a batch (the
/// stub sends only these), and whatever the light paths leave to the general path (a
/// vCPU mask in guest memory, a request that cannot be read through the MMU, another
/// domain's tables).
#[inline]
pub fn paging_lane(number: u64, args: [u64; 4]) -> LaneExit {
    let Some(guard) = lane_state(Some(true)) else {
        return LaneExit::DECLINED;
    };
    if upcall_due() {
        return LaneExit::DECLINED;
    }
    let state = &*guard;
    let Some(value) = light_paging_call(state, number, args) else {
        return LaneExit::DECLINED;
    };
    debug_assert!(!state.machine_dirty && state.fast_after.is_none());
    LaneExit {
        value,
        how: FastEntry::Return as u64,
    }
}

/// The iret lane's stack (`entry.S`, `iret_lane`), from the address it passes up: the
/// registers it saved (in `LANE_POP`'s order) and the `iretq` frame above them.
#[repr(C)]
#[derive(Debug)]
pub struct IretLaneFrame {
    /// The guest's caller-saved registers but rax, as the stub restores them.
    pub saved: [u64; 6],
    /// r11, as the stub restores it: the guest's at the hypercall, or the frame's.
    pub r11: u64,
    /// rcx, likewise.
    pub rcx: u64,
    /// The `iretq` frame: rip, cs, rflags, rsp, ss.
    pub iret: [u64; 5],
}

/// `HYPERVISOR_iret` from a guest kernel, by the iret lane (`entry.S`): the return to a
/// process, and from every exception and event the kernel handled, with no trap frame
/// and no dispatch. `guest_rsp` is the guest's stack pointer, where its `iret_context`
/// is; `frame` the stub's (see [`IretLaneFrame`]).
///
/// The same checks and effects as the dispatcher's (`iret::checked`, then
/// `IretReturn::commit`), and after a return to user mode the user page table, GS base
/// and mode, as `load_vcpu_hardware` always loads them. Declined, having
/// changed nothing, for a process's system call, a busy lock, a frame that cannot be
/// read through the MMU or is refused (the general path then stops the domain, and
/// says why), and a return that unmasks events with an upcall pending (the general path
/// delivers it on the way out).
#[inline]
pub fn iret_lane(frame: &mut IretLaneFrame, guest_rsp: u64) -> LaneExit {
    let Some(mut guard) = lane_state(Some(true)) else {
        return LaneExit::DECLINED;
    };
    let state = &mut *guard;
    let pending = upcall_pending();
    let vcpu_info = x86::percpu::vcpu_info();
    let Some(domain) = state.domains[state.current].as_mut() else {
        return LaneExit::DECLINED;
    };
    let root = domain.vcpu.kernel_root;
    let guest = GuestMem::with_memo(&DirectMap, &state.frames, domain.id, root, &state.walk_memo);
    // A `move` closure holds `frame` and `vcpu` whole, not a pointer per field.
    let vcpu = &mut domain.vcpu;
    let rax = guest.with_obj(guest_rsp, move |context: &IretContext| {
        let ret = hypercall::iret::checked(context, vcpu)?;
        if pending && !ret.masked {
            return None;
        }
        ret.commit(vcpu, |masked| set_upcall_mask(vcpu_info, masked));
        [frame.rcx, frame.r11] = ret.rcx_r11(context);
        frame.iret = ret.iret_frame();
        Some((ret.rax, ret.to_user))
    });
    let Ok(Some((rax, to_user))) = rax else {
        return LaneExit::DECLINED;
    };
    if to_user {
        load_mode(&mut state.loaded, &domain.vcpu);
    }
    LaneExit {
        value: rax,
        how: FastEntry::Resume as u64,
    }
}

/// Where the user-syscall lane sends the vCPU (`entry.S`, `user_syscall_entry`): the
/// guest kernel's syscall callback and its stack pointer; `rip` 0 when declined.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaneJump {
    /// The callback (0: declined, nothing changed).
    pub rip: u64,
    /// The guest kernel's stack pointer, at the bounce frame.
    pub rsp: u64,
}

impl LaneJump {
    const DECLINED: LaneJump = LaneJump { rip: 0, rsp: 0 };
}

/// A guest process's `syscall`, by the user-syscall lane (`entry.S`): bounced to its
/// kernel's syscall callback with no trap frame. `rip`, `rflags` and `rsp` are the
/// process's (rcx and r11 as the `syscall` left them, and its stack pointer).
///
/// The same bounce as `traps::user_syscall` (`traps::bounce::push_bounce`), after loading
/// the guest kernel's page table to write the frame through the MMU (as Xen's
/// toggle_guest_mode does), then the kernel mode and its GS base.
/// Declined, having changed nothing the guest can see, for a hypercall (never sent
/// here: the `syscall` entry tests the loaded mode), a busy lock, no callback, a stack the frame cannot be
/// written to (the general path then uses the failsafe callback) and an upcall due
/// once the callback runs (the general path delivers it on the way out).
#[inline]
pub fn user_syscall_lane(rip: u64, rflags: u64, rsp: u64) -> LaneJump {
    let Some(mut guard) = lane_state(Some(false)) else {
        return LaneJump::DECLINED;
    };
    let state = &mut *guard;
    let due = upcall_due();
    let Some(domain) = state.domains[state.current].as_mut() else {
        return LaneJump::DECLINED;
    };
    let Some(bounce) = traps::syscall_bounce(&domain.vcpu.callbacks) else {
        return LaneJump::DECLINED;
    };
    // Unmasked before and after the bounce, a pending upcall would be due at once.
    if due && !bounce.mask_events {
        return LaneJump::DECLINED;
    }
    let kernel_root = domain.vcpu.kernel_root;
    if state.loaded.root != kernel_root.addr() {
        // SAFETY: the vCPU's own validated kernel root, which carries the hypervisor's
        // slots (as in `load_vcpu_hardware`).
        unsafe { cpu::write_cr3(kernel_root.addr()) };
        state.loaded.root = kernel_root.addr();
    }
    let after = [rip, rflags, rsp];
    let Some(new_rsp) =
        bounce_after_syscall(&state.frames, &state.walk_memo, domain, bounce, after)
    else {
        return LaneJump::DECLINED;
    };
    // Now in guest kernel mode: its GS base and the hypercall entry.
    load_mode(&mut state.loaded, &domain.vcpu);
    LaneJump {
        rip: bounce.handler,
        rsp: new_rsp,
    }
}

/// The upcall a send by the send lane left due (`LaneExit` with
/// [`FastEntry::Deliver`]), delivered from the lane (`entry.S`) without a trap frame:
/// the bounce of the guest kernel's context after its `syscall` (`rip`, `rflags` as the
/// `syscall` left them in rcx and r11, `rsp` its stack) to its event callback, as
/// `events::deliver_upcall_to` would from the frame. Declined, having changed nothing,
/// for a busy lock, a vCPU not in kernel mode or not running, no upcall due after all,
/// no callback or a stack the frame cannot be written to: `send_lane_exit` then
/// delivers it (or uses the failsafe callback, or stops the domain).
#[inline]
pub fn upcall_lane(rip: u64, rflags: u64, rsp: u64) -> LaneJump {
    let Some(mut guard) = lane_state(Some(true)) else {
        return LaneJump::DECLINED;
    };
    let state = &mut *guard;
    if state.fast_after.is_some() || !upcall_due() {
        return LaneJump::DECLINED;
    }
    let Some(domain) = state.domains[state.current].as_mut() else {
        return LaneJump::DECLINED;
    };
    let Some(bounce) = events::upcall_bounce(&domain.vcpu) else {
        return LaneJump::DECLINED;
    };
    if !domain.is_running() {
        return LaneJump::DECLINED;
    }
    match bounce_after_syscall(
        &state.frames,
        &state.walk_memo,
        domain,
        bounce,
        [rip, rflags, rsp],
    ) {
        Some(new_rsp) => LaneJump {
            rip: bounce.handler,
            rsp: new_rsp,
        },
        None => LaneJump::DECLINED,
    }
}

/// `traps::bounce::push_bounce` for `domain`'s running vCPU, interrupted right after a
/// `syscall`: `[rip, rflags, rsp]` are what the `syscall` left in rcx and r11 and its
/// stack pointer (CS and SS the flat ring-3 selectors). The kernel's address space must
/// be the loaded one. The handler's stack pointer, or `None` if the frame could not be
/// written (nothing changed).
#[inline(always)]
fn bounce_after_syscall(
    frames: &FrameTable<'_>,
    memo: &WalkMemo,
    domain: &mut Domain,
    bounce: traps::bounce::Bounce,
    [rip, rflags, rsp]: [u64; 3],
) -> Option<u64> {
    let from = traps::bounce::Interrupted {
        rcx: rip,
        r11: rflags,
        rip,
        cs: u64::from(FLAT_RING3_CS64),
        rflags,
        rsp,
        ss: u64::from(FLAT_RING3_SS64),
    };
    let (id, root) = (domain.id, domain.vcpu.kernel_root);
    let guest = move || GuestMem::with_memo(&DirectMap, frames, id, root, memo);
    traps::bounce::push_bounce(guest, &DirectMap, domain, &from, bounce).ok()
}

/// A not-present page fault, by the #PF lane (`entry.S`, what `exception_stub_14`'s
/// express path declines): the
/// commonest exception, which has nothing to emulate, bounced to the guest kernel's
/// handler as the trap path's `traps::reflect_page_fault` does (the same
/// `traps::bounce::deliver`, the same error code and CR2), without its dispatch or the
/// exit path's checks. `frame` is the complete trap frame. Returns whether it was
/// bounced; if not (a busy lock, an upcall due once the handler runs, no handler or a
/// bad stack: the general path then delivers it, uses the failsafe callback or stops
/// the domain), nothing changed but, perhaps, the `vcpu_info`'s CR2, written first as
/// every way on writes it (the register CR2 is put back).
#[inline]
pub fn page_fault_lane(frame: &mut TrapFrame) -> bool {
    let cr2 = cpu::read_cr2();
    let Some(mut guard) = lane_state(None) else {
        return false;
    };
    let state = &mut *guard;
    let due = upcall_due();
    let from_user = state.loaded.kernel_mode == Some(false);
    let vcpu_info = x86::percpu::vcpu_info();
    let Some(domain) = state.domains[state.current].as_mut() else {
        return false;
    };
    let code = traps::guest_pf_code(&domain.vcpu, frame.error_code);
    let bounce = traps::exception_bounce(&domain.vcpu, traps::vector::PF, Some(code));
    // Unmasked before and after the bounce, a pending upcall would be due at once.
    if due && !bounce.mask_events {
        return false;
    }
    let kernel_root = domain.vcpu.kernel_root.addr();
    if from_user && state.loaded.root != kernel_root {
        // SAFETY: as in `user_syscall_lane`.
        unsafe { cpu::write_cr3(kernel_root) };
        state.loaded.root = kernel_root;
    }
    let mut ctx = TrapContext {
        domain,
        mem: &DirectMap,
        frames: &state.frames,
        regs: frame,
        memo: Some(&state.walk_memo),
    };
    // The guest's CR2 first, as `reflect_page_fault` and the express path order it.
    set_cr2(vcpu_info, cr2);
    if traps::bounce::deliver_inline(&mut ctx, bounce).is_err() {
        // A fault on the guest's stack overwrote CR2: the general path reads it again.
        cpu::write_cr2(cr2);
        return false;
    }
    if from_user {
        load_mode(&mut state.loaded, &ctx.domain.vcpu);
    }
    true
}

/// The way out of a send the lane ran that left an upcall due (`LaneExit` with
/// [`FastEntry::Deliver`]) when [`upcall_lane`] declined: the stub built the general
/// frame with the result in rax.
/// Delivers the upcall as [`return_fast`] does (or hands over to the full exit path,
/// should the machine have been left dirty).
pub fn send_lane_exit(frame: &mut TrapFrame) -> FastEntry {
    let mut guard = STATE.lock();
    let state = &mut *guard;
    if state.fast_after.is_some() {
        return FastEntry::Finish;
    }
    return_fast(state, frame)
}

/// The wake-up a send owes (`events::send_raise`), out of the send's path: it needs the
/// clock and the scheduler; the machine is marked dirty if the scheduler changed.
#[cold]
#[inline(never)]
fn send_wake(state: &mut State, wake: events::Wake) {
    if !wake.can_wake(&state.sched, &state.runtime) {
        return;
    }
    let changes = state.sched.changes();
    let now = state.now();
    state.guests(now).send_wake(wake);
    if state.sched.changes() != changes {
        state.machine_dirty = true;
    }
}
