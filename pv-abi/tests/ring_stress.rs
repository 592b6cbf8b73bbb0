//! Two-thread stress test of the shared ring: a front-end thread sends a million
//! requests through a small ring, a back-end thread answers each one, and both sleep
//! whenever the ring protocol says they may, woken only by notifications decided by
//! `push_*_and_check_notify`. A lost wake-up would hang the test (a watchdog turns that
//! into a failure); loss, duplication or reordering fails the sequence checks.
//!
//! Notification bound: a producer notifies only when its new producer index passes the
//! event index the consumer armed, and the consumer arms it once per final check that
//! found nothing (plus the initial arming by `SHARED_RING_INIT`). So the notifications
//! each way can never exceed the consumer's idle final checks + 1, nor the number of
//! publishes.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use common::PeerPage;
use pv_abi::io::ring::{BackRing, FrontRing};

const MESSAGES: u64 = 1_000_000;

/// Request and response: a sequence number and a checksum of it.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable,
)]
#[repr(C)]
struct Msg {
    seq: u64,
    check: u64,
}

fn msg(seq: u64, salt: u64) -> Msg {
    Msg {
        seq,
        check: seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ salt,
    }
}

/// An event channel stand-in: a pending bit and the thread to wake.
struct Event {
    pending: AtomicBool,
    waiter: std::sync::OnceLock<Thread>,
    sent: AtomicU64,
}

impl Event {
    fn new() -> Self {
        Event {
            pending: AtomicBool::new(false),
            waiter: std::sync::OnceLock::new(),
            sent: AtomicU64::new(0),
        }
    }
    fn notify(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        self.pending.store(true, Ordering::SeqCst);
        if let Some(t) = self.waiter.get() {
            t.unpark();
        }
    }
    fn wait(&self, give_up: Instant) {
        while !self.pending.swap(false, Ordering::SeqCst) {
            assert!(
                Instant::now() < give_up,
                "lost wake-up: nobody notified a sleeping side"
            );
            thread::park_timeout(Duration::from_millis(100));
        }
    }
}

#[derive(Debug, Default)]
struct SideStats {
    publishes: u64,
    idle_final_checks: u64,
    sleeps: u64,
}

#[test]
fn million_messages_each_way_through_an_eight_slot_ring() {
    let page = PeerPage::new();
    let shared = page.ring::<Msg, Msg>(64 + 8 * 16).unwrap();
    assert_eq!(shared.nr_ents(), 8);
    let to_back = Event::new();
    let to_front = Event::new();
    let give_up = Instant::now() + Duration::from_secs(120);
    let started = Instant::now();

    let mut front = FrontRing::init(shared);
    let mut back = BackRing::new(shared);

    let (front_stats, back_stats) = thread::scope(|s| {
        let back_thread = s.spawn(|| {
            to_back.waiter.set(thread::current()).unwrap();
            let mut stats = SideStats::default();
            let mut expect = 0u64;
            while expect < MESSAGES {
                let mut progressed = false;
                while let Some(req) = back.take_request().expect("well-behaved front") {
                    assert_eq!(req, msg(expect, 1), "request lost, duplicated or corrupted");
                    back.push_response(&msg(expect, 2)).unwrap();
                    expect += 1;
                    progressed = true;
                }
                if progressed {
                    stats.publishes += 1;
                    if back.push_responses_and_check_notify() {
                        to_front.notify();
                    }
                    continue;
                }
                if back.final_check_for_requests().unwrap() {
                    continue;
                }
                stats.idle_final_checks += 1;
                stats.sleeps += 1;
                to_back.wait(give_up);
            }
            stats
        });
        // Let the back end register before the first notification can happen.
        while to_back.waiter.get().is_none() {
            thread::yield_now();
        }
        to_front.waiter.set(thread::current()).unwrap();
        let mut stats = SideStats::default();
        let (mut sent, mut received) = (0u64, 0u64);
        while received < MESSAGES {
            let mut pushed = false;
            while sent < MESSAGES && !front.is_full() {
                front.push_request(&msg(sent, 1)).unwrap();
                sent += 1;
                pushed = true;
            }
            if pushed {
                stats.publishes += 1;
                if front.push_requests_and_check_notify() {
                    to_back.notify();
                }
            }
            let mut progressed = false;
            while let Some(rsp) = front.take_response().expect("well-behaved back") {
                assert_eq!(
                    rsp,
                    msg(received, 2),
                    "response lost, duplicated or corrupted"
                );
                received += 1;
                progressed = true;
            }
            if progressed || received == MESSAGES || (sent < MESSAGES && !front.is_full()) {
                continue;
            }
            if front.final_check_for_responses().unwrap() {
                continue;
            }
            stats.idle_final_checks += 1;
            stats.sleeps += 1;
            to_front.wait(give_up);
        }
        (stats, back_thread.join().unwrap())
    });

    let requests_notified = to_back.sent.load(Ordering::Relaxed);
    let responses_notified = to_front.sent.load(Ordering::Relaxed);
    let line = format!(
        "ring stress: {MESSAGES} messages each way in {:?}; front {front_stats:?}, back {back_stats:?}, \
         notifications front->back {requests_notified}, back->front {responses_notified}",
        started.elapsed()
    );
    // Past the harness's capture, so the numbers show in every run.
    std::io::Write::write_all(&mut std::io::stdout(), format!("{line}\n").as_bytes()).unwrap();
    assert!(requests_notified <= back_stats.idle_final_checks + 1);
    assert!(requests_notified <= front_stats.publishes);
    assert!(responses_notified <= front_stats.idle_final_checks + 1);
    assert!(responses_notified <= back_stats.publishes);
    // Nobody slept without a notification to wake it (each wait consumed one).
    assert!(back_stats.sleeps <= requests_notified);
    assert!(front_stats.sleeps <= responses_notified);
    assert_eq!(front.rsp_cons(), MESSAGES as u32);
    assert_eq!(back.req_cons(), MESSAGES as u32);
}
