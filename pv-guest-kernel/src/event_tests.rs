//! Self-tests of events, time and threads. They run after the other self-tests (which
//! register a dummy event callback of their own), on our hypervisor and on Xen 4.17.

use crate::Boot;
use crate::{events, threads, time};
use core::sync::atomic::{AtomicU64, Ordering};
use pv_abi::errno::Errno;
use pv_abi::event_channel::{EVTCHNSTAT_CLOSED, EVTCHNSTAT_INTERDOMAIN, EVTCHNSTAT_VIRQ};
use pv_abi::guest;
use pv_abi::vcpu::{RUNSTATE_BLOCKED, RUNSTATE_RUNNING};
use pv_abi::xen::{DOMID_SELF, VIRQ_TIMER};
use pv_guest_kernel::selftest::{Outcome, failure};

/// A test case.
pub type Case = fn(&Boot) -> Outcome;

/// Every case, in the order they run.
pub const CASES: &[(&str, Case)] = &[
    ("events_init", events_init),
    ("evtchn_loopback", evtchn_loopback),
    ("iret_delivers_pending_event", iret_delivers_pending_event),
    ("fault_with_event_due", fault_with_event_due),
    ("mmuext_with_event_due", mmuext_with_event_due),
    ("paging_calls_with_event_due", paging_calls_with_event_due),
    (
        "null_hypercall_delivers_due_event",
        null_hypercall_delivers_due_event,
    ),
    ("evtchn_status_and_close", evtchn_status_and_close),
    ("evtchn_mask_unmask", evtchn_mask_unmask),
    ("send_keeps_registers", send_keeps_registers),
    ("system_time_monotonic", system_time_monotonic),
    ("wallclock", wallclock),
    ("runstate_info", runstate_info),
    ("timer_sleep", timer_sleep),
    ("sleep_blocks", sleep_blocks),
    ("singleshot_future", singleshot_future),
    ("periodic_timer", periodic_timer),
    ("poll_timeout", poll_timeout),
    ("threads_preempt", threads_preempt),
    ("threads_yield", threads_yield),
    ("vcpu_up_down", vcpu_up_down),
    ("ipi_to_another_vcpu", ipi_to_another_vcpu),
];

macro_rules! fail {
    ($($arg:tt)*) => { return Err(failure(format_args!($($arg)*))) };
}

fn check<T>(what: &str, result: Result<T, Errno>) -> Result<T, pv_guest_kernel::selftest::Failure> {
    result.map_err(|e| failure(format_args!("{what}: {e}")))
}

fn events_init(_: &Boot) -> Outcome {
    check("thread world", threads::init())?;
    // A yield sends an IPI to ourselves: its upcall must arrive.
    let (upcalls_before, _) = events::counters();
    threads::yield_now();
    let (upcalls, _) = events::counters();
    if upcalls == upcalls_before {
        fail!("no upcall for an IPI to ourselves");
    }
    Ok(())
}

static HITS: AtomicU64 = AtomicU64::new(0);

fn count_hit(_: u32) {
    HITS.fetch_add(1, Ordering::SeqCst);
}

fn evtchn_loopback(_: &Boot) -> Outcome {
    let (local, offered) = loopback(count_hit)?;
    HITS.store(0, Ordering::SeqCst);
    for _ in 0..3 {
        check("send", guest::evtchn_send(local))?;
    }
    // Delivered on the way back from each send (events are unmasked).
    let hits = HITS.load(Ordering::SeqCst);
    let status = check("status", guest::evtchn_status(DOMID_SELF, local))?;
    close_loopback(local, offered);
    if hits != 3 {
        fail!("{hits} events delivered for 3 sends");
    }
    if status.status != EVTCHNSTAT_INTERDOMAIN || status.interdomain().1 != offered {
        fail!("status {status:?}");
    }
    Ok(())
}

/// A loopback channel (an interdomain channel with both ends here) whose `offered` end
/// runs `handler` for its events: `(local, offered)`.
fn loopback(handler: fn(u32)) -> Result<(u32, u32), pv_guest_kernel::selftest::Failure> {
    let offered = check(
        "alloc_unbound",
        guest::evtchn_alloc_unbound(DOMID_SELF, DOMID_SELF),
    )?;
    let was = events::save_and_mask();
    let local = check(
        "bind_interdomain",
        guest::evtchn_bind_interdomain(DOMID_SELF, offered),
    )?;
    // Xen leaves the new local end pending; that event is ours to ignore.
    events::clear(local);
    events::bind(offered, handler);
    events::restore(was);
    Ok((local, offered))
}

fn close_loopback(local: u32, offered: u32) {
    events::unbind(offered);
    let _ = guest::evtchn_close(local);
    let _ = guest::evtchn_close(offered);
}

/// `HYPERVISOR_iret` that unmasks events while one is pending (a kernel returning from a
/// handler that ran masked to a context that was not) takes the upcall on the way: the
/// event's handler runs before the context resumes, with its registers intact.
fn iret_delivers_pending_event(_: &Boot) -> Outcome {
    let (local, offered) = loopback(count_hit)?;
    let was = events::save_and_mask();
    HITS.store(0, Ordering::SeqCst);
    check("send", guest::evtchn_send(local))?;
    let early = HITS.load(Ordering::SeqCst);
    const MAGIC: u64 = 0x1e7_5eed_cafe;
    let rax = crate::traps::iret_to_next(0, MAGIC, 0).rax;
    let hits = HITS.load(Ordering::SeqCst);
    let unmasked = !events::save_and_mask();
    events::restore(was);
    close_loopback(local, offered);
    if early != 0 {
        fail!("the event was delivered while masked ({early})");
    }
    if hits != 1 || rax != MAGIC || !unmasked {
        fail!("after the iret: {hits} events delivered, rax {rax:#x}, unmasked {unmasked}");
    }
    Ok(())
}

/// Events that arrived after the armed fault harness had seen its fault.
static LATE_HITS: AtomicU64 = AtomicU64::new(0);

fn count_hit_noting_fault(port: u32) {
    if crate::traps::fault_seen_yet() {
        LATE_HITS.fetch_add(1, Ordering::SeqCst);
    }
    count_hit(port);
}

/// A page fault taken while an upcall is due (an event pending, events unmasked without
/// a hypercall since): both reach the kernel, each once, the event first (the entry
/// that bounces the fault delivers the due upcall on its way out, above the fault's
/// frame, as Xen does), and the faulting code resumes after the access.
fn fault_with_event_due(_: &Boot) -> Outcome {
    let (local, offered) = loopback(count_hit_noting_fault)?;
    LATE_HITS.store(0, Ordering::SeqCst);
    let was = events::save_and_mask();
    HITS.store(0, Ordering::SeqCst);
    check("send", guest::evtchn_send(local))?;
    events::unmask_quietly();
    let seen = crate::traps::expect_fault!(14, "mov {v}, qword ptr [{a}]"; a = in(reg) 0x10u64, v = out(reg) _);
    let (hits, late) = (
        HITS.load(Ordering::SeqCst),
        LATE_HITS.load(Ordering::SeqCst),
    );
    let _ = events::save_and_mask();
    events::restore(was);
    close_loopback(local, offered);
    match seen {
        Some(seen) if seen.vector == 14 && hits == 1 && late == 0 => Ok(()),
        _ => fail!(
            "vector {:?}, {hits} events, {late} after the fault's handler (want 14, 1, 0)",
            seen.map(|s| s.vector)
        ),
    }
}

/// One TLB flush by `mmuext_op` made while an upcall is due (an event pending, events
/// unmasked without a hypercall since): the event is delivered before the call returns,
/// as on every hypercall's way out (the hypervisors' quickest paths included).
fn mmuext_with_event_due(_: &Boot) -> Outcome {
    let (local, offered) = loopback(count_hit)?;
    let was = events::save_and_mask();
    HITS.store(0, Ordering::SeqCst);
    check("send", guest::evtchn_send(local))?;
    events::unmask_quietly();
    let early = HITS.load(Ordering::SeqCst);
    // SAFETY: flushing the TLB changes no mapping.
    let flushed = unsafe {
        guest::mmuext_op(
            &[pv_abi::xen::MmuextOp::tlb_flush_local()],
            pv_abi::xen::DOMID_SELF,
        )
    };
    let hits = HITS.load(Ordering::SeqCst);
    events::restore(was);
    close_loopback(local, offered);
    if early != 0 {
        fail!("the event was delivered before the call ({early})");
    }
    if flushed.is_err() || hits != 1 {
        fail!("the flush gave {flushed:?}, {hits} events delivered by its return");
    }
    Ok(())
}

/// `update_va_mapping` and a one-request `mmu_update`, each by a bare `syscall` that
/// rewrites the L1 entry of a scratch page with the value it holds, with and without an
/// upcall due (an event pending, events unmasked without a hypercall since): each
/// returns 0, the event is delivered by its return when due and only then, once, and
/// every argument register comes back as it went (the hypervisors' quickest paths for
/// these calls included).
fn paging_calls_with_event_due(boot: &Boot) -> Outcome {
    use pv_abi::xen::{Hypercall, MmuUpdate, UVMF_INVLPG, UVMF_LOCAL};
    let va = crate::vm::scratch(boot, 0);
    let entry = crate::vm::l1e(boot, va);
    let l1 = crate::vm::walk(boot, va)[3];
    let value = crate::vm::peek(crate::vm::va_of(l1) + (entry & 0xfff));
    let request = MmuUpdate::normal(entry, value);
    let request_va = core::ptr::from_ref(&request) as u64;
    let calls = [
        (
            "update_va_mapping",
            Hypercall::UpdateVaMapping,
            [va, value, UVMF_INVLPG | UVMF_LOCAL, 0x3333, 0x4444, 0x5555],
        ),
        (
            "mmu_update",
            Hypercall::MmuUpdate,
            [request_va, 1, 0, u64::from(DOMID_SELF), 0x4444, 0x5555],
        ),
    ];
    for (name, number, sent) in calls {
        for due in [false, true] {
            let (local, offered) = loopback(count_hit)?;
            let was = events::save_and_mask();
            HITS.store(0, Ordering::SeqCst);
            if due {
                check("send", guest::evtchn_send(local))?;
            }
            events::unmask_quietly();
            let early = HITS.load(Ordering::SeqCst);
            // SAFETY: the call rewrites a scratch page's L1 entry with the value it holds
            // (no mapping changes); an upcall it delivers runs the loopback's handler
            // below the stack pointer and returns here.
            let (rax, back) = unsafe { crate::traps::bare_hypercall(number.number(), sent, false) };
            let hits = HITS.load(Ordering::SeqCst);
            events::restore(was);
            close_loopback(local, offered);
            if rax != 0 || back != sent {
                fail!(
                    "{name} (due {due}): rax {rax:#x}, rdi rsi rdx r10 r8 r9 {back:#x?}, sent {sent:#x?}"
                );
            }
            if early != 0 || hits != u64::from(due) {
                fail!("{name} (due {due}): {early} events before the call, {hits} by its return");
            }
        }
    }
    if crate::vm::peek(crate::vm::va_of(l1) + (entry & 0xfff)) != value {
        fail!("the scratch page's entry changed");
    }
    Ok(())
}

/// Upcalls that found events masked, as the callback must find them.
static MASKED_HITS: AtomicU64 = AtomicU64::new(0);

fn count_hit_noting_mask(port: u32) {
    if crate::paravirt::irqs_masked() {
        MASKED_HITS.fetch_add(1, Ordering::SeqCst);
    }
    count_hit(port);
}

/// The null hypercall, `xen_version(XENVER_version)`, as a PV kernel makes it to have an
/// upcall delivered that became due while events were masked (Linux's
/// `xen_force_evtchn_callback`), by a bare `syscall`: with nothing due it answers the
/// version; with an event pending and events unmasked without a hypercall since, the
/// upcall runs before it returns, once, with events masked, and events are unmasked
/// again after it. Each also from a stack pointer 48 bytes above a page boundary (two
/// pages down this kernel stack, unused), so that the upcall's 56-byte frame crosses
/// it (a hypervisor's quickest path may decline such a frame, to a slower one that
/// writes it). Every argument register comes back as it went.
fn null_hypercall_delivers_due_event(_: &Boot) -> Outcome {
    let want = guest::version()
        .map(|(major, minor)| (u64::from(major) << 16) | u64::from(minor))
        .map_err(|e| failure(format_args!("xen_version: {e}")))?;
    for (due, crossing) in [(false, false), (true, false), (false, true), (true, true)] {
        let (local, offered) = loopback(count_hit_noting_mask)?;
        let was = events::save_and_mask();
        HITS.store(0, Ordering::SeqCst);
        MASKED_HITS.store(0, Ordering::SeqCst);
        if due {
            check("send", guest::evtchn_send(local))?;
        }
        events::unmask_quietly();
        let sent = [0, 0x1111, 0x2222, 0x3333, 0x4444, 0x5555];
        // SAFETY: XENVER_version takes no argument and writes no memory; an upcall it
        // delivers runs the loopback's handler below the stack pointer and returns here;
        // when crossing, 8 KiB of this kernel stack below the stack pointer are free.
        let (rax, back) = unsafe {
            crate::traps::bare_hypercall(
                pv_abi::xen::Hypercall::XenVersion.number(),
                sent,
                crossing,
            )
        };
        let (hits, masked_hits) = (
            HITS.load(Ordering::SeqCst),
            MASKED_HITS.load(Ordering::SeqCst),
        );
        let unmasked_after = !crate::paravirt::irqs_masked();
        events::restore(was);
        close_loopback(local, offered);
        if rax != want || back != sent {
            fail!(
                "xen_version (due {due}, crossing {crossing}): rax {rax:#x}, rdi rsi rdx r10 r8 r9 {back:#x?}, sent {sent:#x?}"
            );
        }
        if hits != u64::from(due) || masked_hits != hits || !unmasked_after {
            fail!(
                "xen_version (due {due}, crossing {crossing}): {hits} events delivered by its return, {masked_hits} with events masked, unmasked after: {unmasked_after}"
            );
        }
    }
    Ok(())
}

fn evtchn_status_and_close(_: &Boot) -> Outcome {
    let (timer, _) = threads::ports();
    let status = check("status", guest::evtchn_status(DOMID_SELF, timer))?;
    if status.status != EVTCHNSTAT_VIRQ || status.irq() != VIRQ_TIMER || status.vcpu != 0 {
        fail!("timer port status {status:?}");
    }
    let port = check("bind_ipi", guest::evtchn_bind_ipi(0))?;
    check("close", guest::evtchn_close(port))?;
    let status = check("status", guest::evtchn_status(DOMID_SELF, port))?;
    if status.status != EVTCHNSTAT_CLOSED {
        fail!("closed port status {}", status.status);
    }
    match guest::evtchn_send(port) {
        Err(Errno::EINVAL) => {}
        other => fail!("send on a closed port: {other:?}"),
    }
    match guest::evtchn_bind_virq(VIRQ_TIMER, 0) {
        Err(Errno::EEXIST) => Ok(()),
        other => fail!("second VIRQ_TIMER binding: {other:?}"),
    }
}

fn evtchn_mask_unmask(_: &Boot) -> Outcome {
    let port = check("bind_ipi", guest::evtchn_bind_ipi(0))?;
    events::bind(port, count_hit);
    HITS.store(0, Ordering::SeqCst);
    events::mask(port);
    check("send", guest::evtchn_send(port))?;
    let while_masked = HITS.load(Ordering::SeqCst);
    let pending = events::is_pending(port);
    check("unmask", events::unmask(port))?;
    let after = HITS.load(Ordering::SeqCst);
    events::unbind(port);
    let _ = guest::evtchn_close(port);
    if while_masked != 0 || !pending {
        fail!("masked port: {while_masked} deliveries, pending {pending}");
    }
    if after != 1 {
        fail!("{after} deliveries after unmask");
    }
    Ok(())
}

fn send_keeps_registers(_: &Boot) -> Outcome {
    // EVTCHNOP_send by a bare `syscall` (what the hypercall page does) on IPI ports of
    // our own: masked (no upcall), unmasked (the upcall runs before the call returns),
    // and unmasked from a stack pointer 48 bytes above a page boundary (two pages down
    // this kernel stack, unused), so that the upcall's 56-byte frame crosses it (the
    // hypervisor's express path declines such a frame and its lane writes it). Every register but rax (and rcx, r11, which
    // `syscall` takes) must come back as it went: the hypervisor's own values, its
    // addresses above all, must never be left in one.
    for (masked, crossing) in [(true, false), (false, false), (false, true)] {
        let port = check("bind_ipi", guest::evtchn_bind_ipi(0))?;
        if masked {
            events::mask(port);
        } else {
            events::bind(port, count_hit);
        }
        HITS.store(0, Ordering::SeqCst);
        let arg = pv_abi::event_channel::EvtchnSend { port };
        let arg_ptr = &arg as *const _ as u64;
        let sent = [
            pv_abi::event_channel::EVTCHNOP_SEND.into(),
            arg_ptr,
            0x1111,
            0x2222,
            0x3333,
            0x4444,
        ];
        // SAFETY: EVTCHNOP_send on our own IPI port, its argument live on this stack;
        // when crossing, 8 KiB of this kernel stack below the stack pointer are free.
        let (rax, back) = unsafe {
            crate::traps::bare_hypercall(
                u64::from(pv_abi::xen::Hypercall::EventChannelOp as u32),
                sent,
                crossing,
            )
        };
        let hits = HITS.load(Ordering::SeqCst);
        events::clear(port);
        events::unbind(port);
        let _ = events::unmask(port);
        let _ = guest::evtchn_close(port);
        if rax != 0 || back != sent {
            fail!(
                "send (masked {masked}, crossing {crossing}): rax {rax:#x}, rdi rsi rdx r10 r8 r9 {back:#x?}, sent {sent:#x?}"
            );
        }
        if hits != u64::from(!masked) {
            fail!("send (masked {masked}, crossing {crossing}): {hits} upcalls");
        }
    }
    Ok(())
}

fn system_time_monotonic(_: &Boot) -> Outcome {
    let mut last = time::now_ns();
    for _ in 0..1000 {
        let now = time::now_ns();
        if now < last {
            fail!("system time went back: {last} -> {now}");
        }
        last = now;
    }
    if last == 0 {
        fail!("system time is zero");
    }
    Ok(())
}

fn wallclock(_: &Boot) -> Outcome {
    let seconds = time::wallclock_ns() / 1_000_000_000;
    // 2020-01-01 .. 2100-01-01
    if !(1_577_836_800..4_102_444_800).contains(&seconds) {
        fail!("wallclock {seconds} s since the epoch");
    }
    Ok(())
}

fn runstate_info(_: &Boot) -> Outcome {
    let info = check("get_runstate_info", guest::vcpu_get_runstate_info(0))?;
    if info.state != RUNSTATE_RUNNING {
        fail!("state {}", info.state);
    }
    if info.time[0] == 0 {
        fail!("no running time accounted");
    }
    Ok(())
}

fn timer_sleep(_: &Boot) -> Outcome {
    // Ten sleeps of 2..6 ms: each ends after its deadline, and not absurdly late (a lost
    // timer would wait for some unrelated wake-up). The strict bound, one scheduler
    // tick, is checked by the multi-domain scenarios for latency-sensitive domains;
    // here the domain may share the CPU with busy ones, and QEMU on a loaded host
    // stalls now and then.
    let mut worst = 0;
    for i in 0..10u64 {
        let deadline = time::now_ns() + 2_000_000 + i * 400_000;
        threads::sleep_until(deadline);
        let now = time::now_ns();
        if now < deadline {
            fail!("woke {} ns early", deadline - now);
        }
        worst = worst.max(now - deadline);
    }
    if worst > 50_000_000 {
        fail!("a timer fired {worst} ns late");
    }
    Ok(())
}

fn sleep_blocks(_: &Boot) -> Outcome {
    // While this thread sleeps 50 ms nothing else is ready: the vCPU must block, not
    // spin, so it accrues almost no running time.
    let before = check("runstate", guest::vcpu_get_runstate_info(0))?;
    threads::sleep_ns(50_000_000);
    let after = check("runstate", guest::vcpu_get_runstate_info(0))?;
    let ran = after.time[0] - before.time[0];
    let blocked = after.time[2] - before.time[2];
    if ran > 25_000_000 || blocked < 25_000_000 {
        fail!("during a 50 ms sleep: ran {ran} ns, blocked {blocked} ns");
    }
    Ok(())
}

fn singleshot_future(_: &Boot) -> Outcome {
    // A deadline in the past with VCPU_SSHOTTMR_future: the header lets a hypervisor
    // refuse it (ETIME) or ignore the flag, as Xen 4.17 and ours do; then the timer
    // fires at once.
    let past = time::now_ns().saturating_sub(1_000_000);
    let before = events::counters().0;
    match guest::vcpu_set_singleshot_timer(0, past, true) {
        Err(Errno::ETIME) => return Ok(()),
        Ok(_) => {}
        Err(e) => fail!("a deadline in the past with FUTURE: {e}"),
    }
    let deadline = time::now_ns() + 20_000_000;
    while events::counters().0 == before && time::now_ns() < deadline {
        core::hint::spin_loop();
    }
    if events::counters().0 == before {
        fail!("a timer set in the past did not fire");
    }
    Ok(())
}

fn periodic_timer(_: &Boot) -> Outcome {
    // A 2 ms periodic timer while this vCPU runs for 30 ms of CPU time: about 15
    // VIRQ_TIMER events (fewer if other domains take the CPU meanwhile: ticks that fall
    // due while the vCPU waits for the CPU coalesce). As in Xen, a periodic timer does
    // not wake a blocked vCPU: it ticks while the vCPU runs.
    let running = || guest::vcpu_get_runstate_info(0).map_or(0, |i| i.time[0]);
    let start = events::counters().0;
    check(
        "set_periodic_timer",
        guest::vcpu_set_periodic_timer(0, 2_000_000),
    )?;
    let (ran_from, give_up) = (running(), time::now_ns() + 2_000_000_000);
    while running() - ran_from < 30_000_000 && time::now_ns() < give_up {
        core::hint::spin_loop();
    }
    check("stop_periodic_timer", guest::vcpu_stop_periodic_timer(0))?;
    let upcalls = events::counters().0 - start;
    if !(5..=60).contains(&upcalls) {
        fail!("{upcalls} upcalls in 30 ms of running with a 2 ms periodic timer");
    }
    Ok(())
}

fn poll_timeout(_: &Boot) -> Outcome {
    // Poll a port nobody raises, with events masked: returns at the timeout.
    let port = check(
        "alloc_unbound",
        guest::evtchn_alloc_unbound(DOMID_SELF, DOMID_SELF),
    )?;
    let was = events::save_and_mask();
    let start = time::now_ns();
    let result = guest::sched_poll(&[port], start + 5_000_000);
    let waited = time::now_ns() - start;
    events::restore(was);
    let _ = guest::evtchn_close(port);
    check("poll", result)?;
    if !(4_000_000..=200_000_000).contains(&waited) {
        fail!("poll with a 5 ms timeout returned after {waited} ns");
    }
    Ok(())
}

static SPINS: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];
static SPIN_UNTIL: AtomicU64 = AtomicU64::new(0);

fn spinner(index: usize) {
    while time::now_ns() < SPIN_UNTIL.load(Ordering::SeqCst) {
        SPINS[index].fetch_add(1, Ordering::Relaxed);
    }
}

fn threads_preempt(_: &Boot) -> Outcome {
    // Two threads spin without ever yielding; the timer must share the CPU between them.
    SPIN_UNTIL.store(time::now_ns() + 60_000_000, Ordering::SeqCst);
    SPINS[0].store(0, Ordering::SeqCst);
    SPINS[1].store(0, Ordering::SeqCst);
    let switches = threads::switches();
    let a = threads::spawn(spinner, 0).ok_or_else(|| failure(format_args!("spawn")))?;
    let b = threads::spawn(spinner, 1).ok_or_else(|| failure(format_args!("spawn")))?;
    threads::join(a);
    threads::join(b);
    let (x, y) = (
        SPINS[0].load(Ordering::SeqCst),
        SPINS[1].load(Ordering::SeqCst),
    );
    let switched = threads::switches() - switches;
    if x == 0 || y == 0 || switched < 4 {
        fail!("spins {x} and {y}, {switched} switches");
    }
    Ok(())
}

static TURNS: AtomicU64 = AtomicU64::new(0);

fn taker(_: usize) {
    for _ in 0..3 {
        TURNS.fetch_add(1, Ordering::SeqCst);
        threads::yield_now();
    }
}

fn threads_yield(_: &Boot) -> Outcome {
    // A thread that yields between steps, and this one yielding to it: no timer needed.
    TURNS.store(0, Ordering::SeqCst);
    let t = threads::spawn(taker, 0).ok_or_else(|| failure(format_args!("spawn")))?;
    let mut yields = 0;
    while TURNS.load(Ordering::SeqCst) < 3 && yields < 100 {
        threads::yield_now();
        yields += 1;
    }
    threads::join(t);
    if TURNS.load(Ordering::SeqCst) != 3 {
        fail!(
            "{} turns after {yields} yields",
            TURNS.load(Ordering::SeqCst)
        );
    }
    Ok(())
}

static SECONDARY_RAN: AtomicU64 = AtomicU64::new(0);

fn vcpu_up_down(boot: &Boot) -> Outcome {
    // Needs a second vCPU (the manifest's `vcpus`); with one, there is nothing to test.
    match guest::vcpu_is_up(1) {
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => fail!("is_up(1): {e}"),
        Ok(true) => fail!("vCPU 1 up before it was started"),
        Ok(false) => {}
    }
    // Before it goes down, vCPU 1 polls a masked IPI port of vCPU 0's, which only vCPU
    // 0's send to itself raises: that send must wake the poller (the hypervisor's
    // express send, made for sends to oneself, leaves it to the lane while any vCPU
    // polls).
    let port = check("bind_ipi", guest::evtchn_bind_ipi(0))?;
    events::mask(port);
    crate::secondary::POLL_PORT.store(port, Ordering::SeqCst);
    let context = crate::secondary::context(boot, &SECONDARY_RAN);
    // SAFETY: the context runs `secondary::entry` on a stack of its own, in our kernel
    // address space; it touches nothing but its flag and reads POLL_PORT.
    check("initialise", unsafe { guest::vcpu_initialise(1, &context) })?;
    // SAFETY: vCPU 1 was just initialised with a sound context.
    check("up", unsafe { guest::vcpu_up(1) })?;
    let deadline = time::now_ns() + 500_000_000;
    while SECONDARY_RAN.load(Ordering::SeqCst) == 0 && time::now_ns() < deadline {
        threads::sleep_ns(1_000_000);
    }
    if SECONDARY_RAN.load(Ordering::SeqCst) == 0 {
        fail!("vCPU 1 never ran");
    }
    // In its poll: blocked, its flag still 1.
    while check("runstate", guest::vcpu_get_runstate_info(1))?.state != RUNSTATE_BLOCKED
        && time::now_ns() < deadline
    {
        threads::sleep_ns(1_000_000);
    }
    if SECONDARY_RAN.load(Ordering::SeqCst) != 1 {
        fail!("vCPU 1 left its poll before the port was raised");
    }
    check("send", guest::evtchn_send(port))?;
    let sent = time::now_ns();
    while SECONDARY_RAN.load(Ordering::SeqCst) != 2 && time::now_ns() < sent + 200_000_000 {
        threads::sleep_ns(1_000_000);
    }
    if SECONDARY_RAN.load(Ordering::SeqCst) != 2 {
        fail!("vCPU 1 was not woken from its poll by a send to ourselves on its port");
    }
    // It takes itself down; wait for that.
    while check("is_up", guest::vcpu_is_up(1))? && time::now_ns() < deadline {
        threads::sleep_ns(1_000_000);
    }
    if check("is_up", guest::vcpu_is_up(1))? {
        fail!("vCPU 1 is still up");
    }
    let info = check("runstate", guest::vcpu_get_runstate_info(1))?;
    if info.time[0] == 0 {
        fail!("vCPU 1 never accounted as running");
    }
    events::clear(port);
    let _ = events::unmask(port);
    check("close", guest::evtchn_close(port))?;
    Ok(())
}

fn ipi_to_another_vcpu(_: &Boot) -> Outcome {
    // Needs a second vCPU (down again after vcpu_up_down: its events still land).
    match guest::vcpu_is_up(1) {
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => fail!("is_up(1): {e}"),
        Ok(_) => {}
    }
    // A send on an IPI port bound to vCPU 1 notifies vCPU 1: its selector bit and upcall
    // flag (in its legacy vcpu_info, slot 1 of the shared-info page: it registered none),
    // not those of vCPU 0, the sender (the hypervisor's express send, made for sends to
    // oneself, must leave it to the lane).
    let port = check("bind_ipi", guest::evtchn_bind_ipi(1))?;
    let info1 = crate::paravirt::shared_info() + 64;
    // SAFETY: vcpu_info slot 1 of our shared-info page, mapped for the kernel's life;
    // its upcall flag (byte 0) and selector (word at 8) are the guest's to clear, and
    // vCPU 1 is down, so nothing else reads them meanwhile.
    let (pending1, selector1) = unsafe {
        (
            &*(info1 as *const core::sync::atomic::AtomicU8),
            &*((info1 + 8) as *const AtomicU64),
        )
    };
    pending1.store(0, Ordering::SeqCst);
    selector1.store(0, Ordering::SeqCst);
    let sent = guest::evtchn_send(port);
    let (flag, selector) = (
        pending1.load(Ordering::SeqCst),
        selector1.load(Ordering::SeqCst),
    );
    pending1.store(0, Ordering::SeqCst);
    selector1.store(0, Ordering::SeqCst);
    events::clear(port);
    let _ = guest::evtchn_close(port);
    check("send", sent)?;
    let bit = 1u64 << (port / 64);
    if flag == 0 || selector & bit == 0 {
        fail!("vCPU 1 after a send on its IPI port: upcall flag {flag}, selector {selector:#x}");
    }
    Ok(())
}
