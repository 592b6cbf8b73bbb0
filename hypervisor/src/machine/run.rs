//! The second half of every guest entry: timers, the scheduler's choice (or halting
//! while nothing may run), the event upcall, and the next timer interrupt.
//!
//! ```text
//! trap() handled the entry ──► leave():
//!     fast path: nothing machine-wide changed and nothing is due before the cached next
//!     event: deliver a due upcall, load the vCPU, done. Otherwise:
//!     loop {
//!         reap domains that stopped; fire due guest timers; poll the debug keys
//!         if a reschedule is due (yield/block/crash, slice over, a wake-up outranks):
//!             save the running vCPU; pick the next one
//!             nothing runnable ──► drop the lock, sti;hlt;cli until the next deadline,
//!                                  take the lock, loop
//!         upcall due for the vCPU about to run? bounce to its event callback
//!     }
//!     arm the APIC timer for min(end of slice, next guest timer); load CR3 etc.
//! ```

use super::{DirectMap, STATE, State, crash_current, finish, load_vcpu_state, switch_to, teardown};
use crate::arch::x86_64::{idle, lapic, rtc, tsc};
use hypervisor::bootimage::DomainSpec;
use hypervisor::console_input::ConsoleInput;
use hypervisor::guestmem::WalkMemo;
use hypervisor::guests::Guests;
use hypervisor::hypercall::After;
use hypervisor::hypercall::global::{self, GlobalCall};
use hypervisor::regs::TrapFrame;
use hypervisor::sched::{DEFAULT_SLICE, Pick, Scheduler, VcpuRef};
use hypervisor::time::{Clock, Nanos, Wallclock};
use hypervisor::traps;
use pv_abi::xen::Hypercall;
use spin::MutexGuard;

/// Longest halt while idle: the debug keys are polled at least this often.
const IDLE_POLL: Nanos = 50_000_000;

impl State {
    /// System time now.
    pub(super) fn now(&self) -> Nanos {
        self.clock.now(tsc::read())
    }

    /// Every guest, for the machine-wide operations.
    pub(super) fn guests(&mut self, now: Nanos) -> Guests<'_, DirectMap> {
        self.guests_and_console(now).0
    }

    /// Every guest, and the console's input.
    fn guests_and_console(&mut self, now: Nanos) -> (Guests<'_, DirectMap>, &mut ConsoleInput) {
        let (guests, console, _) = self.guests_console_memo(now);
        (guests, console)
    }

    /// Every guest, the console's input and the guest-memory walk memo.
    fn guests_console_memo(
        &mut self,
        now: Nanos,
    ) -> (Guests<'_, DirectMap>, &mut ConsoleInput, &WalkMemo) {
        let guests = Guests {
            mem: &DirectMap,
            frames: &self.frames,
            domains: &mut self.domains,
            runtime: &mut self.runtime,
            sched: &mut self.sched,
            now,
        };
        (guests, &mut self.console_input, &self.walk_memo)
    }
}

/// Calibrates the TSC and starts the APIC timer; reads the wallclock. Also takes the
/// scheduler tick from the command line (`sched_credit_tslice_ms=N`, as in Xen).
pub(super) fn init_time(state: &mut State) {
    let tsc_hz = tsc::calibrate();
    state.clock = Clock::new(tsc_hz, tsc::read());
    let mode = lapic::init(tsc_hz);
    let rtc = rtc::read();
    let now = state.now();
    state.wallclock = Wallclock::from_reading(rtc.unix_seconds().unwrap_or(0), now);
    let tick = state
        .cmdline
        .unwrap_or_default()
        .split_ascii_whitespace()
        .filter_map(|word| word.strip_prefix("sched_credit_tslice_ms="))
        .filter_map(|ms| ms.parse::<u64>().ok())
        .next_back()
        .map_or(DEFAULT_SLICE, |ms| ms.clamp(1, 1000) * 1_000_000);
    state.sched = Scheduler::new(tick);
    log::info!(
        "time: TSC {}.{:03} MHz, APIC timer {:?}, wallclock {:?} ({} s since the epoch), tick {} us",
        tsc_hz / 1_000_000,
        tsc_hz / 1000 % 1000,
        mode,
        rtc,
        state.wallclock.sec,
        state.sched.slice() / 1000
    );
}

/// Gives console input to the first privileged domain, if any (Xen gives it to dom0).
pub(super) fn start_console(state: &mut State) {
    let owner = state
        .domains
        .iter()
        .flatten()
        .find(|d| d.privileged)
        .map(|d| d.id);
    state.console_input.set_owner(owner);
    announce_input(owner);
}

/// Says where console input goes, as Xen does.
pub(super) fn announce_input(target: Option<hypervisor::frames::DomId>) {
    match target {
        Some(id) => log::info!(
            "*** Serial input to domain {id} (type 'CTRL-a' three times to switch input)"
        ),
        None => log::info!(
            "*** Serial input to the hypervisor: debug keys, 'h' for help (type 'CTRL-a' three times to switch input)"
        ),
    }
}

/// Puts a freshly built domain on the scheduler and publishes its wallclock.
pub(super) fn start_domain(state: &mut State, slot: usize, spec: &DomainSpec<'_>) -> bool {
    let now = state.now();
    let wallclock = state.wallclock;
    let Some(shared_info) = state.domains[slot].as_ref().map(|d| d.shared_info) else {
        return false;
    };
    wallclock.publish(&DirectMap, shared_info);
    match state
        .guests(now)
        .start(slot, spec.vcpus, spec.weight, spec.cap)
    {
        Ok(()) => true,
        Err(why) => {
            log::error!(
                "domain {} ({}): cannot schedule it: {why:?} (at most {} vCPUs)",
                slot + 1,
                spec.name,
                hypervisor::sched::MAX_VCPUS
            );
            false
        }
    }
}

/// Offers a hypercall to the machine-wide handlers.
pub(super) fn global_hypercall(
    state: &mut State,
    frame: &mut TrapFrame,
    decoded: Option<Hypercall>,
) -> Option<After> {
    let now = state.now();
    let slot = state.current;
    let changes = state.sched.changes();
    let mut hw = crate::hardware::Machine::new();
    let (guests, console_input, memo) = state.guests_console_memo(now);
    let mut call = GlobalCall {
        guests,
        slot,
        regs: frame,
        mmu: &mut hw,
        after: After::Resume,
        debug_keys: heapless::Vec::new(),
        console_input,
        memo: Some(memo),
    };
    let after = global::dispatch_decoded(&mut call, decoded);
    let keys = core::mem::take(&mut call.debug_keys);
    // The exit's full path (timers, the scheduler) only when it has something new.
    if let Some(after) = after
        && (after != After::Resume
            || state.sched.changes() != changes
            || global::may_change_more_than_vcpu_states(decoded)
            || !keys.is_empty())
    {
        state.machine_dirty = true;
    }
    if let Some(root) = hw.loaded_root {
        state.loaded.root = root.addr();
    }
    for key in keys {
        super::debugkeys::handle(state, key);
    }
    after
}

/// A domain stopped: close its event channels, stop its timers, take it off the
/// scheduler (before its frames go back to the pool).
pub(super) fn release(state: &mut State, slot: usize) {
    let now = state.now();
    if state.on_cpu.is_some_and(|v| v.slot == slot) {
        state.on_cpu = None;
    }
    if let Some(domain) = state.domains[slot].as_ref() {
        state.console_input.owner_gone(domain.id);
    }
    state.guests(now).release(slot);
}

/// Tears down domains that stopped without passing through the trap path's teardown
/// (shut down by another domain).
fn reap(state: &mut State) {
    // Only a domain still on the scheduler can need reaping; tearing one down takes only
    // its own slot off, so the walk over the slots taken at the start stays valid.
    for slot in state.sched.domain_slots() {
        let Some(domain) = state.domains.get(slot).and_then(Option::as_ref) else {
            continue;
        };
        if domain.is_running() {
            continue;
        }
        log::info!(
            "domain {} ({}) stopped: {:?}",
            domain.id,
            domain.name,
            domain.state
        );
        teardown(state, slot);
    }
}

/// Saves the registers of the vCPU whose state `frame` holds, if it still exists.
#[inline]
fn save_on_cpu(state: &mut State, frame: &TrapFrame, now: Nanos) {
    let Some(vcpu) = state.on_cpu.take() else {
        return;
    };
    let guests = state.guests(now);
    guests.publish_runstate(vcpu);
    if let Some(domain) = state.domains[vcpu.slot].as_mut()
        && domain.is_running()
        && domain.vcpu.id as usize == vcpu.vcpu
    {
        domain.vcpu.regs = *frame;
        domain.vcpu.selectors = crate::arch::x86_64::cpu::data_selectors();
    }
}

/// Loads `vcpu` onto this CPU: swaps it in as its domain's active vCPU, switches
/// address space and FPU area, publishes its time and runstate. `tsc` and `now` are the
/// exit path's clock reading for this pass and its system time: the pair published (any
/// consistent pair is right: a guest extrapolates from it with the TSC).
fn run_vcpu(state: &mut State, vcpu: VcpuRef, frame: &mut TrapFrame, (tsc, now): (u64, Nanos)) {
    // Activating a vCPU moves vCPU structures (and their FPU areas): the registers of
    // the one that ran last go to its own area first.
    crate::arch::x86_64::percpu::save_fpu_full();
    state.guests(now).activate(vcpu);
    switch_to(state, vcpu.slot, frame);
    state.on_cpu = Some(vcpu);
    let time = state.clock.time_info_at(tsc, now);
    let mut guests = state.guests(now);
    guests.note_running(vcpu);
    guests.publish_time(vcpu.slot, &time);
    guests.publish_runstate(vcpu);
}

/// Finishes a guest entry (see the module docs) and releases the lock; `resched` asks
/// for a new scheduling decision. On return `frame` holds the vCPU to enter.
#[inline]
pub(super) fn leave(mut guard: MutexGuard<'static, State>, frame: &mut TrapFrame, resched: bool) {
    if !resched && fast_path(&mut guard, frame) {
        return;
    }
    leave_full(guard, frame, resched);
}

/// [`leave`] past its fast path: out of line, so that the common exit does not pay for
/// this one's stack frame.
#[inline(never)]
fn leave_full(mut guard: MutexGuard<'static, State>, frame: &mut TrapFrame, resched: bool) {
    let mut resched = resched;
    loop {
        let state = &mut *guard;
        reap(state);
        // The clock is read once per pass: its time is published to the vCPU that runs.
        let tsc = tsc::read();
        let now = state.clock.now(tsc);
        // The earliest timer left armed: nothing below arms or stops one, or blocks or
        // wakes a vCPU, but the debug keys may (a domain destroyed).
        let mut next = state.guests(now).fire_timers();
        if core::mem::take(&mut state.ticked) {
            super::debugkeys::poll(state);
            next = state.guests(now).next_deadline();
        }
        let on_cpu_runs = state
            .on_cpu
            .is_some_and(|v| state.sched.running() == Some(v));
        // Whether this pass switched vCPUs (and so loaded the new one's whole state).
        let mut switched = false;
        if resched || !on_cpu_runs || state.sched.should_preempt(now, state.slice_end) {
            match state.sched.pick(now) {
                Pick::Run { vcpu, until } => {
                    state.slice_end = until;
                    if state.on_cpu != Some(vcpu) {
                        save_on_cpu(state, frame, now);
                        run_vcpu(state, vcpu, frame, (tsc, now));
                        switched = true;
                    }
                }
                Pick::Idle { until } => {
                    save_on_cpu(state, frame, now);
                    if !state.domains.iter().flatten().any(|d| d.is_running()) {
                        finish(state);
                    }
                    let wake = [until, next, Some(now + IDLE_POLL)]
                        .into_iter()
                        .flatten()
                        .min()
                        .unwrap_or(now + IDLE_POLL);
                    arm_timer(state, wake);
                    state.idle_since = Some(now);
                    drop(guard);
                    idle::wait_for_interrupt();
                    guard = STATE.lock();
                    let state = &mut *guard;
                    if let Some(since) = state.idle_since.take() {
                        state.idle_time += state.now().saturating_sub(since);
                    }
                    // Woken by the timer (almost surely): it needs arming again, and
                    // this is a tick for the debug keys.
                    state.timer_armed = None;
                    state.ticked = true;
                    resched = true;
                    continue;
                }
            }
        }
        let slot = state.current;
        if let traps::Outcome::Crash(reason) = deliver_upcall(state, now, slot, frame) {
            crash_current(state, frame, &reason);
            resched = true;
            continue;
        }
        let deadline = next.map_or(state.slice_end, |n| n.min(state.slice_end));
        arm_timer(state, deadline);
        state.next_event = deadline;
        state.next_event_tsc = state.clock.deadline_tsc(deadline);
        state.machine_dirty = false;
        if switched {
            // Its vcpu_info is where the switch found it; the upcall's delivery may have
            // changed its mode, and so its page table and GS base.
            super::load_vcpu_hardware(state);
        } else {
            // The same vCPU after a machine-wide call, which may have moved its vcpu_info.
            load_vcpu_state(state);
        }
        return;
    }
}

/// The common case: an entry that changed nothing machine-wide (a per-domain hypercall,
/// an exception, an emulated instruction) before any timer or the slice is due. Then
/// there is nothing to fire, reap or reschedule: only a due upcall (the call may have
/// unmasked events) and the vCPU's registers to load. Returns false to take the full path.
fn fast_path(state: &mut State, frame: &mut TrapFrame) -> bool {
    let runs = state
        .on_cpu
        .is_some_and(|v| state.sched.running() == Some(v));
    if state.machine_dirty || state.ticked || !runs {
        return false;
    }
    // `next_event` is due (in TSC ticks, so without the conversion to system time).
    if tsc::read() >= state.next_event_tsc {
        return false;
    }
    let slot = state.current;
    if super::upcall_due()
        && let traps::Outcome::Crash(reason) = deliver_upcall(state, state.now(), slot, frame)
    {
        crash_current(state, frame, &reason);
        return false;
    }
    // The same vCPU stays: only its hardware state can have changed (a mode switch),
    // not where its vcpu_info is (that takes a machine-wide call, which dirties).
    super::load_vcpu_hardware(state);
    true
}

/// Delivers a due event upcall to the vCPU in `frame` (see `Guests::deliver_upcall`).
fn deliver_upcall(
    state: &mut State,
    now: Nanos,
    slot: usize,
    frame: &mut TrapFrame,
) -> traps::Outcome {
    let (mut guests, _, memo) = state.guests_console_memo(now);
    guests.deliver_upcall(slot, frame, Some(memo))
}

/// The APIC timer fired (the entry path acknowledges it here).
pub(super) fn timer_interrupt(state: &mut State) {
    lapic::eoi();
    if let Some(deadline) = state.timer_armed.take() {
        let late = state.now().saturating_sub(deadline);
        state.timer_late_max = state.timer_late_max.max(late);
    }
    state.ticked = true;
}

/// Arms the APIC timer for system time `deadline`, unless it is armed for that time or
/// earlier already (as Linux's hrtimers: an earlier interrupt finds nothing due and
/// arms the timer again; most entries leave the deadline unchanged or move it later, a
/// vCPU switch moves the slice's end, and reprogramming costs a conversion, a division
/// for the APIC's count and an MMIO write). The TSC deadline is `Clock::deadline_tsc`'s:
/// never early, and one multiplication where `tsc_at` takes a 128-bit division.
fn arm_timer(state: &mut State, deadline: Nanos) {
    if state.timer_armed.is_none_or(|armed| deadline < armed) {
        lapic::arm(state.clock.deadline_tsc(deadline));
        state.timer_armed = Some(deadline);
    }
}

/// The accounting printed at the end of a run: CPU time per domain and idle time.
pub(super) fn report(state: &mut State) {
    let now = state.now();
    let idle = state.idle_time;
    log::info!(
        "timer interrupts: the latest came {} us after its deadline",
        state.timer_late_max / 1000
    );
    log::info!(
        "cpu accounting over {} ms: idle {} ms ({}.{}%)",
        now / 1_000_000,
        idle / 1_000_000,
        idle * 100 / now.max(1),
        idle * 1000 / now.max(1) % 10
    );
    for (slot, domain) in state.domains.iter().enumerate() {
        if let Some(domain) = domain {
            let cpu = state.sched.cpu_time(slot);
            let timers = state.runtime[slot].timer_latency;
            log::info!(
                "  domain {} ({}): cpu {} ms ({}.{}%); {} timer wake-ups, the latest ran {} us after its deadline (fired {} us late)",
                domain.id,
                domain.name,
                cpu / 1_000_000,
                cpu * 100 / now.max(1),
                cpu * 1000 / now.max(1) % 10,
                timers.wakes,
                timers.worst / 1000,
                timers.worst_fired / 1000
            );
        }
    }
}
