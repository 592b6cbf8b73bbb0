//! Hostile-peer tests: the other end of the ring scribbles the shared indices and slots
//! with arbitrary values, and the well-behaved side must survive: no panic, no
//! out-of-bounds access, every result either a message or `PeerOverflow`, and its own
//! private indices never move past what the protocol allows.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use common::{PeerPage, REQ_EVENT, REQ_PROD, RSP_EVENT, RSP_PROD};
use proptest::prelude::*;
use pv_abi::io::ring::{BackRing, FrontRing, RingError};

const SLOTS: u32 = 4;
const RING_BYTES: usize = 64 + 8 * SLOTS as usize;

#[derive(Clone, Debug)]
enum Step {
    /// The peer writes `value` to the header or slot word at `word` (0..RING_BYTES/4).
    Scribble { word: usize, value: u32 },
    /// The peer writes a plausible-looking but wrong producer index.
    NearMiss { delta: i8 },
    /// The victim does one of its operations.
    Victim(u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0usize..RING_BYTES / 4, any::<u32>())
            .prop_map(|(word, value)| Step::Scribble { word, value }),
        any::<i8>().prop_map(|delta| Step::NearMiss { delta }),
        any::<u8>().prop_map(Step::Victim),
    ]
}

fn ok_or_overflow<T>(r: Result<T, RingError>) -> Result<Option<T>, TestCaseError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(RingError::PeerOverflow { .. }) => Ok(None),
        Err(e) => Err(TestCaseError::fail(format!("unexpected error {e:?}"))),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    /// A hostile back end versus our front end.
    #[test]
    fn front_survives_hostile_back(steps in prop::collection::vec(step(), 0..300)) {
        let page = PeerPage::new();
        let shared = page.ring::<u64, u64>(RING_BYTES).unwrap();
        let mut front = FrontRing::init(shared);
        for s in steps {
            match s {
                Step::Scribble { word, value } => page.store(word * 4, value),
                Step::NearMiss { delta } => {
                    page.store(RSP_PROD, front.req_prod_pvt().wrapping_add(delta as u32))
                }
                Step::Victim(op) => match op % 5 {
                    0 => { let _ = front.push_request(&u64::from(op)); }
                    1 => { front.push_requests_and_check_notify(); }
                    2 => { ok_or_overflow(front.take_response())?; }
                    3 => { ok_or_overflow(front.final_check_for_responses())?; }
                    _ => {
                        if let Some(n) = ok_or_overflow(front.unconsumed_responses())? {
                            prop_assert!(n <= front.req_prod_pvt().wrapping_sub(front.rsp_cons()));
                        }
                    }
                },
            }
            // The front end never consumes a response it did not ask for, and never
            // believes more than a ring's worth of requests is outstanding.
            let outstanding = front.req_prod_pvt().wrapping_sub(front.rsp_cons());
            prop_assert!(outstanding <= SLOTS);
            prop_assert!(front.free_requests() <= SLOTS);
        }
    }

    /// A hostile front end versus our back end.
    #[test]
    fn back_survives_hostile_front(steps in prop::collection::vec(step(), 0..300)) {
        let page = PeerPage::new();
        let shared = page.ring::<u64, u64>(RING_BYTES).unwrap();
        shared.init();
        let mut back = BackRing::new(shared);
        for s in steps {
            match s {
                Step::Scribble { word, value } => page.store(word * 4, value),
                Step::NearMiss { delta } => {
                    page.store(REQ_PROD, back.rsp_prod_pvt().wrapping_add(SLOTS).wrapping_add(delta as u32))
                }
                Step::Victim(op) => match op % 5 {
                    0 => {
                        if let Some(Some(req)) = ok_or_overflow(back.take_request())? {
                            // Whatever the request says, answer it.
                            back.push_response(&!req).unwrap();
                        }
                    }
                    1 => { back.push_responses_and_check_notify(); }
                    2 => { let _ = back.push_response(&0); }
                    3 => { ok_or_overflow(back.final_check_for_requests())?; }
                    _ => {
                        if let Some(n) = ok_or_overflow(back.unconsumed_requests())? {
                            prop_assert!(n <= SLOTS);
                        }
                    }
                },
            }
            // The back end never holds more unanswered requests than the ring has slots,
            // and never answers a request it did not consume.
            let unanswered = back.req_cons().wrapping_sub(back.rsp_prod_pvt());
            prop_assert!(unanswered <= SLOTS);
        }
    }
}

/// A peer thread hammers the shared indices while the victim runs its normal loop: the
/// victim sees only messages or `PeerOverflow` and keeps its invariants.
#[test]
fn concurrent_scribbling_of_indices() {
    let page = PeerPage::new();
    let shared = page.ring::<u64, u64>(RING_BYTES).unwrap();
    let mut front = FrontRing::init(shared);
    let mut back = BackRing::new(shared);
    let stop = AtomicBool::new(false);
    let started = AtomicBool::new(false);
    let (mut overflows, mut messages) = (0u64, 0u64);
    thread::scope(|s| {
        s.spawn(|| {
            let mut x = 0x2545_f491_4f6c_dd1du64;
            started.store(true, Ordering::Relaxed);
            while !stop.load(Ordering::Relaxed) {
                // xorshift: cheap arbitrary values, including near-miss indices.
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Move an index by -8..+24 from its current value: mostly near misses.
                let word = [REQ_PROD, REQ_EVENT, RSP_PROD, RSP_EVENT][(x & 3) as usize];
                let delta = ((x >> 32) % 32) as u32;
                page.store(word, page.load(word).wrapping_add(delta).wrapping_sub(8));
            }
        });
        // The scribbler must be running (on a busy host it may start late), and the run
        // lasts until it has produced an impossible index at least once: at least
        // 200,000 rounds, at most 50 million, yielding now and then so that the two
        // threads interleave even on one free CPU.
        while !started.load(Ordering::Relaxed) {
            thread::yield_now();
        }
        for i in 0..50_000_000u64 {
            if i >= 200_000 && overflows > 0 {
                break;
            }
            if i % 4096 == 0 {
                thread::yield_now();
            }
            let _ = front.push_request(&i);
            front.push_requests_and_check_notify();
            match back.take_request() {
                Ok(Some(req)) => {
                    messages += 1;
                    back.push_response(&req).unwrap();
                }
                Ok(None) => {}
                Err(RingError::PeerOverflow { .. }) => overflows += 1,
                Err(e) => panic!("unexpected {e:?}"),
            }
            back.push_responses_and_check_notify();
            match front.take_response() {
                Ok(_) => {}
                Err(RingError::PeerOverflow { .. }) => overflows += 1,
                Err(e) => panic!("unexpected {e:?}"),
            }
            assert!(front.req_prod_pvt().wrapping_sub(front.rsp_cons()) <= SLOTS);
            assert!(back.req_cons().wrapping_sub(back.rsp_prod_pvt()) <= SLOTS);
        }
        stop.store(true, Ordering::Relaxed);
    });
    println!("concurrent scribbling: {messages} requests taken, {overflows} overflows detected");
    assert!(
        overflows > 0,
        "the scribbler never produced an impossible index"
    );
}
