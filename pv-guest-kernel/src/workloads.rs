//! The scenario programs (`workload=...`, see `pv_guest_kernel::scenario`): what a
//! domain of a multi-domain scenario does instead of the self-tests. Each reports its
//! findings as `selftest <name>: ok|FAILED ...` lines, which `cargo xtask test` turns
//! into named checks, and returns the exit code.

use crate::Boot;
use crate::{events, threads, time};
use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering};
use pv_abi::errno::Errno;
use pv_abi::event_channel::{EVTCHNSTAT_UNBOUND, EvtchnPort};
use pv_abi::guest;
use pv_abi::sched::SHUTDOWN_POWEROFF;
use pv_abi::sysctl::XenSysctl;
use pv_abi::xen::{DOMID_SELF, VIRQ_CONSOLE, VIRQ_DOM_EXC};
use pv_guest_kernel::scenario::{PROBE_PORTS, Scenario, Workload, share_within_tenth};
use pv_guest_kernel::selftest::{Outcome, Tally, failure};

const MS: u64 = 1_000_000;

/// Prints one line with a single console write (threads may interleave otherwise).
fn say(args: core::fmt::Arguments<'_>) {
    let mut line: heapless::String<256> = heapless::String::new();
    let _ = line.write_fmt(args);
    let _ = line.push('\n');
    let _ = guest::console_io_write(line.as_bytes());
}

struct Report(Tally);

impl Report {
    fn record(&mut self, name: &str, outcome: Outcome) {
        let mut line: heapless::String<256> = heapless::String::new();
        let _ = self.0.record(&mut line, name, &outcome);
        let _ = guest::console_io_write(line.as_bytes());
    }
}

/// Runs the scenario's program; returns the exit code.
pub fn run(boot: &Boot, scenario: &Scenario) -> u32 {
    let Some(workload) = scenario.workload else {
        return 0;
    };
    let mut report = Report(Tally::default());
    say(format_args!("pv-guest: workload {workload:?}"));
    if !matches!(workload, Workload::Spin | Workload::SpinMasked)
        && let Err(e) = threads::init()
    {
        report.record("events_init", Err(failure(format_args!("{e}"))));
        return 1;
    }
    match workload {
        Workload::Spin => spin(scenario, &mut report),
        Workload::Idle => idle(scenario, &mut report),
        Workload::PingServer => ping_server(scenario, &mut report),
        Workload::PingClient => ping_client(scenario, &mut report),
        Workload::SpinMasked => spin_masked(),
        Workload::CrashLater => crash_later(scenario),
        Workload::Flood => flood(scenario, &mut report),
        Workload::Watch => watch(scenario, &mut report),
        Workload::Control => control(scenario, &mut report),
        Workload::Console => console(scenario, &mut report),
        Workload::Fuzz => return crate::fuzz::run(boot, scenario),
    }
    let _ = boot;
    let mut line: heapless::String<64> = heapless::String::new();
    let _ = report.0.summary(&mut line);
    let _ = guest::console_io_write(line.as_bytes());
    report.0.exit_code()
}

fn running_ns() -> u64 {
    guest::vcpu_get_runstate_info(0).map_or(0, |info| info.time[0])
}

/// The measurement window as system times.
fn window(scenario: &Scenario) -> (u64, u64) {
    (scenario.window_ms.0 * MS, scenario.window_ms.1 * MS)
}

/// CPU-bound until the window ends; the share of the CPU it got inside the window must
/// be its weight's share (within 10%).
fn spin(scenario: &Scenario, report: &mut Report) {
    let (start, end) = window(scenario);
    let mut work = 0u64;
    while time::now_ns() < start {
        work = work.wrapping_add(1);
    }
    let (t0, r0) = (time::now_ns(), running_ns());
    while time::now_ns() < end {
        work = work.wrapping_add(1);
    }
    let (t1, r1) = (time::now_ns(), running_ns());
    core::hint::black_box(work);
    let (ran, elapsed) = (r1 - r0, t1 - t0);
    let per_mille_x10 = ran * 10_000 / elapsed.max(1);
    let outcome = match scenario.expect_share {
        Some(want) if share_within_tenth(ran, elapsed, want) => Ok(()),
        Some(want) => Err(failure(format_args!(
            "got {}.{} per mille of the CPU, want {want} within 10%",
            per_mille_x10 / 10,
            per_mille_x10 % 10
        ))),
        None => Ok(()),
    };
    say(format_args!(
        "pv-guest: cpu share {}.{} per mille over {} ms (want {:?})",
        per_mille_x10 / 10,
        per_mille_x10 % 10,
        elapsed / MS,
        scenario.expect_share
    ));
    report.record("cpu_share", outcome);
}

/// Sleeps in steps of 30..60 ms through the window: the timers must fire on time and
/// the domain must use almost no CPU.
fn idle(scenario: &Scenario, report: &mut Report) {
    let (start, end) = window(scenario);
    threads::sleep_until(start);
    let (t0, r0) = (time::now_ns(), running_ns());
    let (worst, sleeps) = sleep_steps(end, || {});
    let (t1, r1) = (time::now_ns(), running_ns());
    let (ran, elapsed) = (r1 - r0, t1 - t0);
    let per_mille_x10 = ran * 10_000 / elapsed.max(1);
    say(format_args!(
        "pv-guest: idle share {}.{} per mille over {} ms; {sleeps} sleeps, latest wake-up {} us late",
        per_mille_x10 / 10,
        per_mille_x10 % 10,
        elapsed / MS,
        worst / 1000
    ));
    let max = scenario.max_share.unwrap_or(10);
    report.record(
        "idle_share",
        if ran * 1000 <= u64::from(max) * elapsed {
            Ok(())
        } else {
            Err(failure(format_args!(
                "{}.{} per mille, more than {max}",
                per_mille_x10 / 10,
                per_mille_x10 % 10
            )))
        },
    );
    report.record("timer_latency", latency_outcome(worst, sleeps, scenario));
}

/// Sleeps of 30..60 ms (what an idle domain does) until `end`; returns the worst
/// lateness and the number of sleeps.
fn sleep_steps(end: u64, mut after_wake: impl FnMut()) -> (u64, u64) {
    let (mut worst, mut sleeps) = (0, 0);
    loop {
        let deadline = time::now_ns() + 30 * MS + (sleeps * 7 % 31) * MS;
        if deadline > end {
            return (worst, sleeps);
        }
        threads::sleep_until(deadline);
        worst = worst.max(time::now_ns().saturating_sub(deadline));
        after_wake();
        sleeps += 1;
    }
}

/// The data segment selectors `[ds, es]` in the registers now.
fn data_selectors() -> [u16; 2] {
    let (ds, es): (u16, u16);
    // SAFETY: reading segment registers has no side effects.
    unsafe {
        core::arch::asm!(
            "mov {0:x}, ds",
            "mov {1:x}, es",
            out(reg) ds,
            out(reg) es,
            options(nomem, nostack, preserves_flags),
        );
    }
    [ds, es]
}

fn latency_outcome(worst: u64, sleeps: u64, scenario: &Scenario) -> Outcome {
    let limit = scenario.max_late_us * 1000;
    if sleeps == 0 {
        Err(failure(format_args!("no sleep completed")))
    } else if worst > limit {
        Err(failure(format_args!(
            "a timer fired {} us late (limit {} us)",
            worst / 1000,
            limit / 1000
        )))
    } else {
        say(format_args!(
            "pv-guest: {sleeps} timers, latest {} us after its deadline (limit {} us)",
            worst / 1000,
            limit / 1000
        ));
        Ok(())
    }
}

// ----- finding a peer's channel ---------------------------------------------------------

/// Offers a port to `peer` (the lower domain id's side of the convention).
fn offer(peer: u16) -> Result<EvtchnPort, Errno> {
    guest::evtchn_alloc_unbound(DOMID_SELF, peer)
}

/// Offers a port to `peer` with `handler` bound to it before any event can arrive: the
/// peer may bind and send the moment the port exists, and an event on a port without a
/// handler is stray (lost), so events stay masked until the handler is in place.
fn offer_handled(peer: u16, handler: events::Handler) -> Result<EvtchnPort, Errno> {
    let was = events::save_and_mask();
    let offered = offer(peer);
    if let Ok(port) = offered {
        events::bind(port, handler);
    }
    events::restore(was);
    offered
}

/// Finds the port `peer` offered us: probes its ports until one binds (only a port
/// offered to us can), for up to `patience` ns. The new local end starts pending (as
/// on Xen); that event is discarded.
fn connect(peer: u16, patience: u64) -> Result<EvtchnPort, Errno> {
    let deadline = time::now_ns() + patience;
    loop {
        for remote in 1..=PROBE_PORTS {
            let was = events::save_and_mask();
            let bound = guest::evtchn_bind_interdomain(peer, remote);
            if let Ok(local) = bound {
                events::clear(local);
                events::restore(was);
                return Ok(local);
            }
            events::restore(was);
        }
        if time::now_ns() > deadline {
            return Err(Errno::ETIMEDOUT);
        }
        threads::sleep_ns(5 * MS);
    }
}

// ----- ping-pong ----------------------------------------------------------------------

static RECEIVED: AtomicU64 = AtomicU64::new(0);

fn count_and_wake(_: EvtchnPort) {
    RECEIVED.fetch_add(1, Ordering::SeqCst);
    threads::notify_all();
}

/// Waits until `RECEIVED` reaches `count`, for at most a second.
fn await_count(count: u64) -> bool {
    let deadline = time::now_ns() + 1000 * MS;
    threads::wait_until_or(deadline, || RECEIVED.load(Ordering::SeqCst) >= count)
}

/// The offering side: answers the client's hello and each ping with one pong.
fn ping_server(scenario: &Scenario, report: &mut Report) {
    let outcome = (|| {
        let peer = scenario
            .peer()
            .ok_or_else(|| failure(format_args!("no peer")))?;
        let port =
            offer_handled(peer, count_and_wake).map_err(|e| failure(format_args!("offer: {e}")))?;
        say(format_args!(
            "pv-guest: ping-pong server: port {port} offered to domain {peer}"
        ));
        // The hello, then `rounds` pings; every one gets a pong.
        if !threads::wait_until_or(time::now_ns() + 5000 * MS, || {
            RECEIVED.load(Ordering::SeqCst) >= 1
        }) {
            return Err(failure(format_args!("no hello from domain {peer}")));
        }
        for round in 0..=u64::from(scenario.rounds) {
            if !await_count(round + 1) {
                return Err(failure(format_args!("ping {round} never arrived")));
            }
            guest::evtchn_send(port).map_err(|e| failure(format_args!("send: {e}")))?;
        }
        // Nothing more may arrive: every ping was answered, none was duplicated.
        threads::sleep_ns(20 * MS);
        let total = RECEIVED.load(Ordering::SeqCst);
        if total != u64::from(scenario.rounds) + 1 {
            return Err(failure(format_args!(
                "{total} events for a hello and {} pings",
                scenario.rounds
            )));
        }
        Ok(())
    })();
    report.record("pingpong_server", outcome);
}

/// The probing side: hello, then `rounds` round trips, each waiting for its pong.
fn ping_client(scenario: &Scenario, report: &mut Report) {
    let outcome = (|| {
        let peer = scenario
            .peer()
            .ok_or_else(|| failure(format_args!("no peer")))?;
        let port = connect(peer, 5000 * MS).map_err(|e| failure(format_args!("connect: {e}")))?;
        events::bind(port, count_and_wake);
        guest::evtchn_send(port).map_err(|e| failure(format_args!("hello: {e}")))?;
        if !await_count(1) {
            return Err(failure(format_args!("no welcome")));
        }
        let start = time::now_ns();
        for round in 1..=u64::from(scenario.rounds) {
            guest::evtchn_send(port).map_err(|e| failure(format_args!("send: {e}")))?;
            if !await_count(round + 1) {
                return Err(failure(format_args!("round trip {round} lost")));
            }
        }
        let each = (time::now_ns() - start) / u64::from(scenario.rounds);
        say(format_args!(
            "pv-guest: ping-pong: {} round trips with domain {peer}, none lost, {} us each",
            scenario.rounds,
            each / 1000
        ));
        Ok(())
    })();
    report.record("pingpong", outcome);
}

// ----- misbehaviour ---------------------------------------------------------------------

/// Spins forever with events masked: only the hypervisor's timer interrupt takes the
/// CPU away, and only another domain's remote_shutdown ends it.
fn spin_masked() -> ! {
    say(format_args!(
        "pv-guest: spinning with events masked, forever"
    ));
    events::save_and_mask();
    let mut work = 0u64;
    loop {
        work = core::hint::black_box(work.wrapping_add(1));
        if !work.is_multiple_of(4096) {
            continue;
        }
        // Selectors of its own in `%ds` and `%es` almost whenever it is preempted (set
        // again every 4096 turns: a segment load is slow under TCG), which no other
        // domain may find in its registers after a switch (the watcher checks:
        // `selectors_kept`). The flat 32-bit data selector: DPL 3, so no `iretq` to
        // ring 3 clears it.
        // SAFETY: a DPL-3 data selector is loadable in ring 3; 64-bit code ignores
        // both segments.
        unsafe {
            core::arch::asm!(
                "mov es, {0:e}",
                "mov ds, {0:e}",
                in(reg) u32::from(pv_abi::arch_x86_64::FLAT_RING3_DS32),
                options(nostack, preserves_flags),
            );
        }
    }
}

/// Offers ports to its peers, runs a while, then faults with no handler: the
/// hypervisor destroys it mid-run.
fn crash_later(scenario: &Scenario) -> ! {
    for peer in scenario.peers.iter().flatten() {
        let _ = offer(*peer);
    }
    threads::sleep_ns(scenario.crash_delay_ms * MS);
    say(format_args!("pv-guest: crashing now, mid-run"));
    let _ = guest::clear_trap_table();
    // SAFETY: faults on purpose with no handler registered; the hypervisor stops us.
    unsafe { core::arch::asm!("ud2", options(noreturn)) }
}

/// Allocates ports until the per-domain limit, then floods its peer with events for a
/// second.
fn flood(scenario: &Scenario, report: &mut Report) {
    let mut allocated: heapless::Vec<EvtchnPort, 1024> = heapless::Vec::new();
    let refused = loop {
        match guest::evtchn_alloc_unbound(DOMID_SELF, DOMID_SELF) {
            Ok(port) => {
                if allocated.push(port).is_err() {
                    break None;
                }
            }
            Err(e) => break Some(e),
        }
    };
    say(format_args!(
        "pv-guest: flood: {} ports allocated, then {refused:?}",
        allocated.len()
    ));
    report.record(
        "port_limit",
        match refused {
            Some(Errno::ENOSPC) => Ok(()),
            other => Err(failure(format_args!(
                "after {} ports: {other:?}",
                allocated.len()
            ))),
        },
    );
    for port in allocated {
        let _ = guest::evtchn_close(port);
    }
    let Some(peer) = scenario.peer() else {
        return;
    };
    let outcome = (|| {
        let port = offer(peer).map_err(|e| failure(format_args!("offer: {e}")))?;
        // Binding does not notify the offering end (as in Xen): look every 5 ms.
        let deadline = time::now_ns() + 3000 * MS;
        while guest::evtchn_status(DOMID_SELF, port).is_ok_and(|s| s.status == EVTCHNSTAT_UNBOUND) {
            if time::now_ns() > deadline {
                return Err(failure(format_args!("domain {peer} never connected")));
            }
            threads::sleep_ns(5 * MS);
        }
        let end = time::now_ns() + 1000 * MS;
        let mut sent = 0u64;
        while time::now_ns() < end {
            guest::evtchn_send(port).map_err(|e| failure(format_args!("send: {e}")))?;
            sent += 1;
        }
        say(format_args!(
            "pv-guest: flood: {sent} events sent to domain {peer} in 1 s"
        ));
        Ok(())
    })();
    report.record("flood", outcome);
}

static PEER_EVENTS: AtomicU64 = AtomicU64::new(0);

/// Connects to its misbehaving peers and masks their ports (a flood into a masked port
/// only sets its pending bit: the flooder pays for it, not us), then measures its own
/// timers while they crash, flood and spin; checks it saw the crash as an unbound port.
fn watch(scenario: &Scenario, report: &mut Report) {
    let mut ports: heapless::Vec<(u16, EvtchnPort), 2> = heapless::Vec::new();
    for &peer in scenario.peers.iter().flatten() {
        match connect(peer, 3000 * MS) {
            Ok(port) => {
                events::mask(port);
                events::bind(port, |_| {
                    PEER_EVENTS.fetch_add(1, Ordering::Relaxed);
                });
                let _ = ports.push((peer, port));
            }
            Err(e) => report.record("connect", Err(failure(format_args!("domain {peer}: {e}")))),
        }
    }
    let (_, end) = window(scenario);
    // After every wake-up its data selectors are still its own, whatever domain ran
    // before it (the spinner leaves others in its registers). Its own are loaded here,
    // null: read back instead, they could already be another domain's.
    // SAFETY: null data selectors are loadable in ring 3; 64-bit code ignores them.
    unsafe {
        core::arch::asm!(
            "mov ds, {0:e}",
            "mov es, {0:e}",
            in(reg) 0u32,
            options(nostack, preserves_flags),
        );
    }
    let own = data_selectors();
    let mut leaked = None;
    let (worst, sleeps) = sleep_steps(end, || {
        let now = data_selectors();
        if now != own {
            leaked.get_or_insert(now);
        }
    });
    report.record("timer_latency", latency_outcome(worst, sleeps, scenario));
    report.record(
        "selectors_kept",
        match leaked {
            None => Ok(()),
            Some([ds, es]) => Err(failure(format_args!(
                "after a switch ds={ds:#x} es={es:#x}, not its own {:#x?}",
                own
            ))),
        },
    );
    let mut unbound = 0;
    for &(peer, port) in &ports {
        let status = guest::evtchn_status(DOMID_SELF, port);
        let gone = status.is_ok_and(|s| s.status == EVTCHNSTAT_UNBOUND);
        let pending = events::is_pending(port);
        say(format_args!(
            "pv-guest: channel to domain {peer}: {}; {}",
            if gone {
                "unbound (peer gone)"
            } else {
                "connected"
            },
            if pending {
                "events pending (coalesced while masked)"
            } else {
                "nothing pending"
            }
        ));
        unbound += usize::from(gone);
        let _ = events::unmask(port);
    }
    say(format_args!(
        "pv-guest: {} peer events handled after unmasking",
        PEER_EVENTS.load(Ordering::Relaxed)
    ));
    report.record(
        "peer_crash_seen",
        if unbound >= 1 {
            Ok(())
        } else {
            Err(failure(format_args!("no channel went unbound")))
        },
    );
}

static DOM_EXC: AtomicU64 = AtomicU64::new(0);

/// Whether domain `id` is gone, as a privileged domain can tell: EVTCHNOP_status on
/// another domain's port answers ESRCH once that domain no longer exists.
fn gone(id: u16) -> bool {
    matches!(guest::evtchn_status(id, 0), Err(Errno::ESRCH))
}

/// Privileged: waits for the hypervisor's reports of stopped domains (VIRQ_DOM_EXC)
/// until the domain named in `peers` has crashed, then at the window's end shuts
/// `shutdown` down remotely and sees it go; finally presses the debug keys.
fn control(scenario: &Scenario, report: &mut Report) {
    let outcome = (|| {
        let port = guest::evtchn_bind_virq(VIRQ_DOM_EXC, 0)
            .map_err(|e| failure(format_args!("bind VIRQ_DOM_EXC: {e}")))?;
        events::bind(port, |_| {
            DOM_EXC.fetch_add(1, Ordering::SeqCst);
            threads::notify_all();
        });
        let Some(victim) = scenario.peer() else {
            return Ok(());
        };
        // Rechecked on every VIRQ_DOM_EXC.
        let seen = threads::wait_until_or(time::now_ns() + 5000 * MS, || gone(victim));
        if !seen {
            return Err(failure(format_args!("domain {victim} never went away")));
        }
        say(format_args!(
            "pv-guest: VIRQ_DOM_EXC: domain {victim} is gone ({} reports so far)",
            DOM_EXC.load(Ordering::SeqCst)
        ));
        Ok(())
    })();
    report.record("dom_exc", outcome);
    let Some(target) = scenario.shutdown else {
        return;
    };
    let (_, end) = window(scenario);
    threads::sleep_until(end);
    let before = DOM_EXC.load(Ordering::SeqCst);
    let outcome = guest::sched_remote_shutdown(target, SHUTDOWN_POWEROFF)
        .map_err(|e| failure(format_args!("remote_shutdown({target}): {e}")))
        .and_then(|_| {
            let stopped = threads::wait_until_or(time::now_ns() + 1000 * MS, || {
                DOM_EXC.load(Ordering::SeqCst) > before && gone(target)
            });
            if stopped {
                say(format_args!("pv-guest: domain {target} shut down remotely"));
                Ok(())
            } else {
                Err(failure(format_args!("domain {target} did not stop")))
            }
        });
    report.record("remote_shutdown", outcome);
    // Press the hypervisor's debug keys, as `xl debug-keys qre` would: its console shows
    // the domains, the run queue and the event channels.
    let keys = *b"qre";
    let request = XenSysctl::debug_keys(keys.as_ptr() as u64, keys.len() as u32);
    // SAFETY: the request and the keys it points to live across the call; the
    // hypervisor only reads them.
    let result = unsafe { guest::sysctl(&request as *const XenSysctl as u64) };
    report.record(
        "debug_keys",
        result
            .map(|_| ())
            .map_err(|e| failure(format_args!("sysctl debug_keys: {e}"))),
    );
}

static CONSOLE_EVENTS: AtomicU64 = AtomicU64::new(0);

/// Privileged: reads what is typed on the hypervisor console (VIRQ_CONSOLE tells when
/// there is some; `CONSOLEIO_read` takes it) until it has `expect_input`.
fn console(scenario: &Scenario, report: &mut Report) {
    let expected = scenario.expected_input();
    let outcome = (|| {
        let port = guest::evtchn_bind_virq(VIRQ_CONSOLE, 0)
            .map_err(|e| failure(format_args!("bind VIRQ_CONSOLE: {e}")))?;
        events::bind(port, |_| {
            CONSOLE_EVENTS.fetch_add(1, Ordering::SeqCst);
            threads::notify_all();
        });
        let mut got: heapless::Vec<u8, 64> = heapless::Vec::new();
        let deadline = time::now_ns() + 3000 * MS;
        // Input typed before the binding raised no event here: read once first.
        loop {
            let mut buffer = [0u8; 32];
            let n = guest::console_io_read(&mut buffer)
                .map_err(|e| failure(format_args!("CONSOLEIO_read: {e}")))?;
            let _ = got.extend_from_slice(&buffer[..n as usize]);
            if got.len() >= expected.len() || time::now_ns() > deadline {
                break;
            }
            let seen = CONSOLE_EVENTS.load(Ordering::SeqCst);
            threads::wait_until_or(deadline, || CONSOLE_EVENTS.load(Ordering::SeqCst) > seen);
        }
        say(format_args!(
            "pv-guest: console input: {:?} ({} VIRQ_CONSOLE events)",
            core::str::from_utf8(&got).unwrap_or("<not UTF-8>"),
            CONSOLE_EVENTS.load(Ordering::SeqCst)
        ));
        if got.as_slice() != expected {
            return Err(failure(format_args!(
                "read {} bytes, not the expected input",
                got.len()
            )));
        }
        Ok(())
    })();
    report.record("console_input", outcome);
}
