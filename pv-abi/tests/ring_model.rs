//! Property test: the generic ring against a plain model of `io/ring.h`.
//!
//! The model keeps 64-bit, never-wrapping indices and queues of message values; the
//! ring starts at an arbitrary 32-bit index (often just below the wrap). After every
//! operation the ring's observable state must equal the model's, and every
//! notification decision must equal "the event index lies in (old, new]".

mod common;

use std::collections::VecDeque;

use common::{PeerPage, REQ_EVENT, REQ_PROD, RSP_EVENT, RSP_PROD};
use proptest::prelude::*;
use pv_abi::io::ring::{BackRing, FrontRing, RingError};

#[derive(Clone, Debug)]
enum Op {
    FrontPush(u8),
    FrontPublish,
    FrontTake(u8),
    FrontFinalCheck,
    BackTake(u8),
    BackRespond(u8),
    BackPublish,
    BackFinalCheck,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..10).prop_map(Op::FrontPush),
        Just(Op::FrontPublish),
        (0u8..10).prop_map(Op::FrontTake),
        Just(Op::FrontFinalCheck),
        (0u8..10).prop_map(Op::BackTake),
        (0u8..10).prop_map(Op::BackRespond),
        Just(Op::BackPublish),
        Just(Op::BackFinalCheck),
    ]
}

/// The model: absolute (u64) indices and message queues.
#[derive(Debug, Default)]
struct Model {
    size: u64,
    next_value: u64,
    req_prod_pvt: u64,
    req_prod: u64,
    req_event: u64,
    req_cons: u64,
    rsp_prod_pvt: u64,
    rsp_prod: u64,
    rsp_event: u64,
    rsp_cons: u64,
    /// Requests written, by index.
    requests: VecDeque<u64>,
    /// Requests consumed by the back end and not yet answered.
    awaiting: VecDeque<u64>,
    /// Responses written, by index, not yet consumed.
    responses: VecDeque<u64>,
}

fn response_for(req: u64) -> u64 {
    req ^ 0xdead_beef_0000_0000
}

fn run(start: u32, slots_log2: u32, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let page = PeerPage::new();
    let slots = 1u32 << slots_log2;
    let shared = page.ring::<u64, u64>(64 + 8 * slots as usize).unwrap();
    prop_assert_eq!(shared.nr_ents(), slots);
    shared.init();
    // Re-base the shared header at `start` (the event indices one past, as after init).
    for (offset, value) in [
        (REQ_PROD, start),
        (RSP_PROD, start),
        (REQ_EVENT, start.wrapping_add(1)),
        (RSP_EVENT, start.wrapping_add(1)),
    ] {
        page.store(offset, value);
    }
    let mut front = FrontRing::attach(shared, start);
    let mut back = BackRing::attach(shared, start);
    let mut m = Model {
        size: slots as u64,
        req_event: 1,
        rsp_event: 1,
        ..Default::default()
    };
    let idx = |abs: u64| start.wrapping_add(abs as u32);

    for op in ops {
        match op {
            Op::FrontPush(n) => {
                for _ in 0..n {
                    let full = m.req_prod_pvt - m.rsp_cons == m.size;
                    let value = m.next_value;
                    let result = front.push_request(&value);
                    if full {
                        prop_assert_eq!(result, Err(RingError::Full));
                    } else {
                        prop_assert_eq!(result, Ok(()));
                        m.requests.push_back(value);
                        m.req_prod_pvt += 1;
                        m.next_value += 1;
                    }
                }
            }
            Op::FrontPublish => {
                let notify = front.push_requests_and_check_notify();
                let expected = m.req_prod < m.req_event && m.req_event <= m.req_prod_pvt;
                prop_assert_eq!(notify, expected);
                m.req_prod = m.req_prod_pvt;
            }
            Op::BackTake(n) => {
                for _ in 0..n {
                    let available =
                        (m.req_prod - m.req_cons).min(m.size - (m.req_cons - m.rsp_prod_pvt));
                    prop_assert_eq!(back.unconsumed_requests(), Ok(available as u32));
                    let got = back.take_request().unwrap();
                    if available == 0 {
                        prop_assert_eq!(got, None);
                    } else {
                        let expected = m.requests.pop_front().unwrap();
                        prop_assert_eq!(got, Some(expected));
                        m.awaiting.push_back(expected);
                        m.req_cons += 1;
                    }
                }
            }
            Op::BackRespond(n) => {
                for _ in 0..n {
                    match m.awaiting.pop_front() {
                        None => prop_assert_eq!(
                            back.push_response(&0),
                            Err(RingError::NoRequestToAnswer)
                        ),
                        Some(req) => {
                            prop_assert_eq!(back.push_response(&response_for(req)), Ok(()));
                            m.responses.push_back(response_for(req));
                            m.rsp_prod_pvt += 1;
                        }
                    }
                }
            }
            Op::BackPublish => {
                let notify = back.push_responses_and_check_notify();
                let expected = m.rsp_prod < m.rsp_event && m.rsp_event <= m.rsp_prod_pvt;
                prop_assert_eq!(notify, expected);
                m.rsp_prod = m.rsp_prod_pvt;
            }
            Op::FrontTake(n) => {
                for _ in 0..n {
                    let available = m.rsp_prod - m.rsp_cons;
                    prop_assert_eq!(front.unconsumed_responses(), Ok(available as u32));
                    let got = front.take_response().unwrap();
                    if available == 0 {
                        prop_assert_eq!(got, None);
                    } else {
                        prop_assert_eq!(got, m.responses.pop_front());
                        m.rsp_cons += 1;
                    }
                }
            }
            Op::FrontFinalCheck => {
                let pending = m.rsp_prod > m.rsp_cons;
                prop_assert_eq!(front.final_check_for_responses(), Ok(pending));
                if !pending {
                    m.rsp_event = m.rsp_cons + 1;
                }
            }
            Op::BackFinalCheck => {
                let pending =
                    (m.req_prod - m.req_cons).min(m.size - (m.req_cons - m.rsp_prod_pvt)) > 0;
                prop_assert_eq!(back.final_check_for_requests(), Ok(pending));
                if !pending {
                    m.req_event = m.req_cons + 1;
                }
            }
        }
        // The observable state matches the model after every step.
        prop_assert_eq!(front.req_prod_pvt(), idx(m.req_prod_pvt));
        prop_assert_eq!(front.rsp_cons(), idx(m.rsp_cons));
        prop_assert_eq!(back.req_cons(), idx(m.req_cons));
        prop_assert_eq!(back.rsp_prod_pvt(), idx(m.rsp_prod_pvt));
        prop_assert_eq!(
            front.free_requests() as u64,
            m.size - (m.req_prod_pvt - m.rsp_cons)
        );
        prop_assert_eq!(page.load(REQ_PROD), idx(m.req_prod));
        prop_assert_eq!(page.load(RSP_PROD), idx(m.rsp_prod));
        prop_assert_eq!(page.load(REQ_EVENT), idx(m.req_event));
        prop_assert_eq!(page.load(RSP_EVENT), idx(m.rsp_event));
    }
    Ok(())
}

fn start_index() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0u32), (u32::MAX - 40)..=u32::MAX, any::<u32>()]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn ring_matches_model(start in start_index(), slots_log2 in 0u32..5, ops in prop::collection::vec(op(), 0..200)) {
        run(start, slots_log2, ops)?;
    }
}
