//! Property test: random sequences of page-table operations, valid and hostile, against a
//! simple model of what the guest asked for; after every step the invariants of
//! [`super::audit`] are recounted from scratch.
//!
//! The model is the guest's intent: the entries it wrote successfully (a shadow of the
//! first slots of every frame), the frames it pinned, its roots, and the frames it owns.
//! The checks:
//! - a failed operation changes no entry, a successful write stores what was asked (up to
//!   the bits the hypervisor adjusts);
//! - entries naming another domain's, the hypervisor's, free or non-RAM frames, or with
//!   disallowed bits, are never accepted into a live table, and hypervisor slots never
//!   change;
//! - pins and roots are what the model says;
//! - the recount matches the frame table (so no frame is both writable-mapped and a page
//!   table, and nothing foreign is mapped);
//! - unpinning everything and dropping the roots brings every count back to zero.

use super::Paging;
use super::audit::audit;
use super::testing::{FakeMmu, Storage, give, peek};
use crate::domain::{Domain, DomainState, Vcpu};
use crate::frames::{FrameTable, Owner, PageType};
use crate::mm::fake::FakeMem;
use crate::mm::{Mfn, pte};
use crate::regs::TrapFrame;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

/// Slots of each frame the operations use (and the model shadows).
const SLOTS: usize = 4;
/// A hypervisor slot, which operations sometimes aim at.
const HV_SLOT: usize = 256;
const POOL: usize = 20;

#[derive(Clone, Copy, Debug)]
enum Target {
    Own(usize),
    Foreign,
    Hypervisor,
    NotRam,
    Free,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Bad {
    No,
    LargePage,
    CacheDisable,
    BeyondPhysical,
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Write {
        table: usize,
        slot: usize,
        target: Target,
        writable: bool,
        bad: Bad,
    },
    Clear {
        table: usize,
        slot: usize,
    },
    Pin {
        frame: usize,
        level: u32,
    },
    Unpin {
        frame: usize,
    },
    NewBase {
        frame: usize,
    },
    NewUserBase {
        frame: Option<usize>,
    },
    Release {
        frame: usize,
    },
    Allocate,
    /// Full flushes by the paging code: a few, or about the TLB clock's wrap (256).
    Flushes(u32),
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        8 => (0..POOL * 2).prop_map(Target::Own),
        1 => Just(Target::Foreign),
        1 => Just(Target::Hypervisor),
        1 => Just(Target::NotRam),
        1 => Just(Target::Free),
    ]
}

fn bad() -> impl Strategy<Value = Bad> {
    prop_oneof![
        12 => Just(Bad::No),
        1 => Just(Bad::LargePage),
        1 => Just(Bad::CacheDisable),
        1 => Just(Bad::BeyondPhysical),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let index = 0..POOL * 2;
    prop_oneof![
        10 => (index.clone(), prop_oneof![5 => 0..SLOTS, 1 => Just(HV_SLOT)], target(), any::<bool>(), bad())
            .prop_map(|(table, slot, target, writable, bad)| Op::Write { table, slot, target, writable, bad }),
        3 => (index.clone(), 0..SLOTS).prop_map(|(table, slot)| Op::Clear { table, slot }),
        4 => (index.clone(), 1..=4u32).prop_map(|(frame, level)| Op::Pin { frame, level }),
        3 => index.clone().prop_map(|frame| Op::Unpin { frame }),
        2 => index.clone().prop_map(|frame| Op::NewBase { frame }),
        1 => proptest::option::of(index.clone()).prop_map(|frame| Op::NewUserBase { frame }),
        2 => index.prop_map(|frame| Op::Release { frame }),
        1 => Just(Op::Allocate),
        1 => prop_oneof![1..3u32, 254..259u32].prop_map(Op::Flushes),
    ]
}

/// Bits the hypervisor may change in an entry it accepts.
const ADJUSTED: u64 = pte::USER | pte::GLOBAL | pte::ACCESSED | pte::DIRTY;

struct Model {
    /// Frames the domain owns, in allocation order.
    pool: Vec<Mfn>,
    /// The guest's view of slots 0..SLOTS of every owned frame.
    shadow: BTreeMap<Mfn, [u64; SLOTS]>,
    pinned: BTreeSet<Mfn>,
}

fn vcpu(root: Mfn) -> Vcpu {
    Vcpu::new(TrapFrame::default(), root)
}

fn live_table(frames: &FrameTable<'_>, mfn: Mfn) -> Option<u32> {
    let info = frames.info(mfn);
    info.page_type
        .table_level()
        .filter(|_| info.type_count > 0 && info.validated)
}

/// [`run_checked`] with the TLB oracle watching (see `testing::oracle`): no frame may
/// change use or owner while an old use of it may still be cached.
fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    super::testing::oracle::start();
    let result = run_checked(ops);
    let violations = super::testing::oracle::finish();
    prop_assert!(violations.is_empty(), "TLB oracle: {:?}", violations);
    result
}

fn run_checked(ops: &[Op]) -> Result<(), TestCaseError> {
    let mem = FakeMem::new(super::testing::FRAMES);
    let mut storage = Storage::new();
    let frames = storage.table();
    let mut mmu = FakeMmu::new();
    let foreign = give(&frames, &mem, 2, 1)[0];
    let pool = give(&frames, &mem, 1, POOL);
    // The initial root: an empty L4 with a builder-style base-pointer reference.
    let root = pool[0];
    let mut domain = Domain {
        id: 1,
        name: heapless::String::try_from("model").unwrap(),
        state: DomainState::Running,
        privileged: false,
        nr_pages: POOL as u64,
        max_pages: POOL as u64 + 4,
        shared_info: foreign, // never one of ours: nothing special to skip
        vm_assist: 0,
        exit_code: None,
        console_line: heapless::Vec::new(),
        vcpu: vcpu(root),
    };
    let mut model = Model {
        shadow: pool.iter().map(|&m| (m, [0; SLOTS])).collect(),
        pool,
        pinned: BTreeSet::new(),
    };
    Paging::new(&mem, &frames, 1, &mut mmu)
        .get_page_and_type(root, PageType::L4Table)
        .unwrap();
    let pick = |model: &Model, i: usize| model.pool[i % model.pool.len()];
    // One engine serves several steps, as one for a whole batch does (so what it
    // remembers between requests, the live L1 table, is tested across every kind of
    // step), and a fresh one now and then.
    let mut p = Paging::new(&mem, &frames, 1, &mut mmu);
    for (step, op) in ops.iter().enumerate() {
        if step % 5 == 4 {
            p = Paging::new(&mem, &frames, 1, &mut mmu);
        }
        match *op {
            Op::Write {
                table,
                slot,
                target,
                writable,
                bad,
            } => {
                let table = pick(&model, table);
                let named = match target {
                    Target::Own(i) => pick(&model, i),
                    Target::Foreign => foreign,
                    Target::Hypervisor => Mfn(5),
                    Target::NotRam => Mfn(2),
                    Target::Free => Mfn(super::testing::FRAMES as u64 - 1),
                };
                let mut value = named.addr() | pte::PRESENT | pte::USER;
                if writable {
                    value |= pte::WRITABLE;
                }
                value |= match bad {
                    Bad::No => 0,
                    Bad::LargePage => pte::PAGE_SIZE,
                    Bad::CacheDisable => pte::CACHE_DISABLE,
                    Bad::BeyondPhysical => 1 << super::testing::PHYS_BITS,
                };
                let live = live_table(&frames, table);
                let hv_slot_before = peek(&mem, table, HV_SLOT);
                let result = p.write_pte(table.addr() + slot as u64 * 8, value, false);
                if live.is_some() {
                    let hostile = !matches!(target, Target::Own(_)) || bad != Bad::No;
                    prop_assert!(
                        !(hostile && result.is_ok()),
                        "step {step}: {op:?} accepted into a live table"
                    );
                    if live == Some(4) && slot == HV_SLOT {
                        prop_assert!(result.is_err(), "step {step}: hypervisor slot written");
                    }
                }
                if slot == HV_SLOT && live == Some(4) {
                    prop_assert_eq!(peek(&mem, table, HV_SLOT), hv_slot_before);
                }
                if result.is_ok() && slot < SLOTS {
                    model.shadow.get_mut(&table).unwrap()[slot] = value;
                }
            }
            Op::Clear { table, slot } => {
                let table = pick(&model, table);
                if p.write_pte(table.addr() + slot as u64 * 8, 0, false)
                    .is_ok()
                {
                    model.shadow.get_mut(&table).unwrap()[slot] = 0;
                }
            }
            Op::Pin { frame, level } => {
                let frame = pick(&model, frame);
                let result = p.pin(frame, level);
                if model.pinned.contains(&frame) {
                    prop_assert!(result.is_err(), "step {step}: pinned twice");
                }
                if result.is_ok() {
                    model.pinned.insert(frame);
                }
            }
            Op::Unpin { frame } => {
                let frame = pick(&model, frame);
                let result = p.unpin(frame);
                prop_assert_eq!(result.is_ok(), model.pinned.remove(&frame), "step {}", step);
            }
            Op::NewBase { frame } => {
                let frame = pick(&model, frame);
                let _ = p.new_baseptr(&mut domain.vcpu, frame);
            }
            Op::NewUserBase { frame } => {
                let mfn = frame.map_or(0, |i| pick(&model, i).0);
                let _ = p.new_user_baseptr(&mut domain.vcpu, mfn);
            }
            Op::Release { frame } => {
                let frame = pick(&model, frame);
                let info = frames.info(frame);
                let busy = info.ref_count > 0 || info.type_count > 0 || info.pinned;
                let result = p.release(&mut domain, frame);
                prop_assert_eq!(result.is_ok(), !busy, "step {}: release {:?}", step, info);
                if result.is_ok() {
                    model.pool.retain(|&m| m != frame);
                    model.shadow.remove(&frame);
                    prop_assert_eq!(frames.owner(frame), Owner::Free);
                }
            }
            Op::Allocate => {
                if let Ok(mfn) = super::reservation::allocate(&mem, &frames, &mut domain, None) {
                    model.pool.push(mfn);
                    model.shadow.insert(mfn, [0; SLOTS]);
                }
            }
            Op::Flushes(count) => {
                for _ in 0..count {
                    p.flush_all();
                }
            }
        }
        // The tables hold what the guest asked for, nothing else.
        for (&mfn, slots) in &model.shadow {
            for (slot, &want) in slots.iter().enumerate() {
                let got = peek(&mem, mfn, slot);
                prop_assert_eq!(
                    got & !ADJUSTED,
                    want & !ADJUSTED,
                    "step {}: {:?}[{}] after {:?}",
                    step,
                    mfn,
                    slot,
                    op
                );
            }
        }
        for &mfn in &model.pool {
            prop_assert_eq!(frames.info(mfn).pinned, model.pinned.contains(&mfn));
            if live_table(&frames, mfn) == Some(4) {
                prop_assert_eq!(peek(&mem, mfn, 256), 0xa000_0005);
                prop_assert_eq!(peek(&mem, mfn, 262), 0xb000_0003);
            }
        }
        prop_assert_eq!(frames.count_owned(1), model.pool.len());
        let mut roots = vec![domain.vcpu.kernel_root];
        roots.extend(domain.vcpu.user_root());
        if let Err(why) = audit(&mem, &frames, 1, &roots, &[]) {
            return Err(TestCaseError::fail(format!(
                "step {step} after {op:?}: {why}"
            )));
        }
    }
    // Unpin everything, drop the roots: every count returns to zero.
    let mut p = Paging::new(&mem, &frames, 1, &mut mmu);
    for &mfn in &model.pinned {
        p.unpin(mfn).unwrap();
    }
    p.drop_roots(&mut domain.vcpu);
    for &mfn in &model.pool {
        let info = frames.info(mfn);
        prop_assert_eq!(
            (info.ref_count, info.type_count),
            (0, 0),
            "{:?} {:?}",
            mfn,
            info
        );
        prop_assert!(!info.validated || info.page_type == PageType::Writable);
    }
    let info = frames.info(foreign);
    prop_assert_eq!((info.ref_count, info.type_count), (0, 0));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_keep_every_invariant(ops in prop::collection::vec(op(), 1..120)) {
        run(&ops)?;
    }
}
