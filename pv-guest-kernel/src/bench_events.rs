//! The event-channel cases of the benchmark, and the other end of the interdomain one.
//!
//! - `evtchn_send`: `EVTCHNOP_send` on a bound channel (an IPI port to ourselves) whose
//!   port is masked: the hypercall alone (the pending bit is cleared again each time).
//! - `evtchn_send_upcall`: the same port unmasked: send, and the hypervisor's upcall into
//!   the kernel's event entry, its 2-level dispatch and handler, and `HYPERVISOR_iret`
//!   back; the iteration ends when the handler has run.
//! - `evtchn_pingpong`: an interdomain round trip with a second domain running
//!   `bench=pong`: on our hypervisor the benchmark image's second domain, on Xen one this
//!   kernel (dom0 there) builds itself ([`crate::builder`]). The client sends and blocks
//!   (`SCHEDOP_block`) until the pong's upcall; the server does the same the other way
//!   round.
//!
//! No timer is bound while these run, so the only upcalls are the ones measured.

use crate::Boot;
use crate::bench::{Plans, Runner};
use crate::events;
use core::sync::atomic::{AtomicU64, Ordering};
use pv_abi::event_channel::EvtchnPort;
use pv_abi::guest;
use pv_abi::sched::SHUTDOWN_POWEROFF;
use pv_abi::xen::DOMID_SELF;

/// The domain `bench=pong` runs in on our hypervisor (the benchmark manifest's second
/// domain).
const PONG_DOMAIN: u16 = 2;
/// The domain the benchmark itself runs in on our hypervisor (on Xen: dom0).
const BENCH_DOMAIN: u16 = 1;
/// The pong domain's memory when this kernel builds it on Xen: the benchmark manifest's
/// 8 MiB.
const PONG_PAGES: u64 = 2048;
/// Ports of the pong domain probed for the one it offered.
const PROBE_PORTS: u32 = 64;
/// How often to probe before concluding there is no pong domain.
const PROBE_ROUNDS: u32 = 200;
/// Events the handler saw.
static EVENTS: AtomicU64 = AtomicU64::new(0);

fn count(_: EvtchnPort) {
    EVENTS.fetch_add(1, Ordering::SeqCst);
}

/// Blocks until the event counter passes `seen`; false if blocking fails.
fn wait_past(seen: u64) -> bool {
    loop {
        // Masked while the counter is checked, so that an event arriving between the
        // check and the block stays pending and the block returns at once.
        let was = crate::events::save_and_mask();
        if EVENTS.load(Ordering::SeqCst) > seen {
            crate::events::restore(was);
            return true;
        }
        // Unmasks events and returns once one is pending (its upcall runs first).
        if guest::sched_block().is_err() {
            crate::events::restore(was);
            return false;
        }
    }
}

/// The event-channel cases (events unmasked while they run, masked again after).
pub(crate) fn cases(boot: &Boot, runner: &mut Runner, plans: &Plans, xen: bool) {
    if let Err(e) = events::init() {
        for name in ["evtchn_send", "evtchn_send_upcall", "evtchn_pingpong"] {
            runner.error(
                name,
                if e == pv_abi::Errno::ENXIO {
                    "no shared info"
                } else {
                    "cannot register the event callback"
                },
            );
        }
        return;
    }
    let plan = plans.small;
    match guest::evtchn_bind_ipi(0) {
        Ok(port) => {
            events::bind(port, count);
            events::mask(port);
            runner.case("evtchn_send", plan, 1, |_| {
                let sent = guest::evtchn_send(port).map_err(|_| "send refused");
                events::clear(port);
                sent.map(|_| ())
            });
            events::clear(port);
            let _ = events::unmask(port);
            events::unmask_all();
            runner.case("evtchn_send_upcall", plan, 1, |_| {
                let before = EVENTS.load(Ordering::SeqCst);
                guest::evtchn_send(port).map_err(|_| "send refused")?;
                // The upcall is delivered on the way out of the hypercall.
                if EVENTS.load(Ordering::SeqCst) == before {
                    return Err("no upcall after the send");
                }
                Ok(())
            });
            let _ = events::save_and_mask();
            events::unbind(port);
            let _ = guest::evtchn_close(port);
        }
        Err(_) => {
            runner.error("evtchn_send", "bind_ipi refused");
            runner.error("evtchn_send_upcall", "bind_ipi refused");
        }
    }
    let pong = if xen {
        match crate::builder::build_copy(boot, PONG_PAGES, "bench=pong") {
            Ok(domid) => domid,
            Err(e) => {
                let mut why = heapless::String::<96>::new();
                let _ = core::fmt::Write::write_fmt(
                    &mut why,
                    format_args!("building the pong domain: {e}"),
                );
                runner.error("evtchn_pingpong", &why);
                return;
            }
        }
    } else {
        PONG_DOMAIN
    };
    pingpong(runner, plans, pong);
}

/// Binds to the port the pong domain offered us; `None` if there is no pong domain.
fn connect(pong: u16) -> Option<EvtchnPort> {
    for _ in 0..PROBE_ROUNDS {
        for remote in 1..=PROBE_PORTS {
            match guest::evtchn_bind_interdomain(pong, remote) {
                Ok(local) => return Some(local),
                Err(pv_abi::Errno::ESRCH) => return None,
                Err(_) => {}
            }
        }
        // Give the pong domain a chance to run and offer its port.
        let _ = guest::sched_yield();
    }
    None
}

/// One ping and its pong with a domain running `bench=pong` (the domain builder's
/// self-test): connect, send, block until the answer, close, shut the domain down.
pub(crate) fn ping_once(pong: u16) -> Result<(), &'static str> {
    if events::init().is_err() {
        return Err("events cannot be set up");
    }
    let was_masked = events::save_and_mask();
    let Some(port) = connect(pong) else {
        events::restore(was_masked);
        let _ = guest::sched_remote_shutdown(pong, SHUTDOWN_POWEROFF);
        return Err("the domain offered no port");
    };
    events::clear(port);
    events::bind(port, count);
    events::unmask_all();
    let before = EVENTS.load(Ordering::SeqCst);
    let answered = match guest::evtchn_send(port) {
        Ok(_) if wait_past(before) => Ok(()),
        Ok(_) => Err("block refused"),
        Err(_) => Err("ping refused"),
    };
    let _ = events::save_and_mask();
    events::unbind(port);
    let _ = guest::evtchn_close(port);
    let _ = guest::sched_remote_shutdown(pong, SHUTDOWN_POWEROFF);
    events::restore(was_masked);
    answered
}

fn pingpong(runner: &mut Runner, plans: &Plans, pong: u16) {
    let was_masked = events::save_and_mask();
    let Some(port) = connect(pong) else {
        events::restore(was_masked);
        runner.not_available(
            "evtchn_pingpong",
            "no second domain running bench=pong in this run",
        );
        return;
    };
    // A fresh interdomain binding starts pending (as on Xen): drop that event.
    events::clear(port);
    events::bind(port, count);
    events::unmask_all();
    runner.case("evtchn_pingpong", plans.small, 1, |_| {
        let before = EVENTS.load(Ordering::SeqCst);
        guest::evtchn_send(port).map_err(|_| "ping refused")?;
        if !wait_past(before) {
            return Err("block refused");
        }
        Ok(())
    });
    let _ = events::save_and_mask();
    events::unbind(port);
    let _ = guest::evtchn_close(port);
    // The pong domain waits forever otherwise; this domain is privileged.
    let _ = guest::sched_remote_shutdown(pong, SHUTDOWN_POWEROFF);
}

/// `bench=pong`: offers a port to the benchmark domain and answers every event on it
/// with one, until the benchmark domain shuts this domain down. Returns an exit code
/// only if the set-up fails.
pub fn pong() -> u32 {
    if events::init().is_err() {
        return 1;
    }
    let _ = events::save_and_mask();
    let bench = if crate::bench::on_xen() {
        0
    } else {
        BENCH_DOMAIN
    };
    let Ok(port) = guest::evtchn_alloc_unbound(DOMID_SELF, bench) else {
        return 1;
    };
    events::bind(port, count);
    events::unmask_all();
    let mut answered = 0;
    loop {
        if !wait_past(answered) {
            return 1;
        }
        answered = EVENTS.load(Ordering::SeqCst);
        if guest::evtchn_send(port).is_err() {
            // The benchmark domain closed its end: it is done.
            return 0;
        }
    }
}
