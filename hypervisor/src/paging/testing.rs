//! Host-test helpers: a recording MMU and a small machine with two domains.

use super::Mmu;
use crate::frames::{FrameInfo, FrameTable, Owner};
use crate::mm::fake::FakeMem;
use crate::mm::{Mfn, PhysMem};

/// The phys-address width tests assume.
pub const PHYS_BITS: u32 = 36;

/// Records every TLB and CR3 effect.
#[derive(Debug, Default)]
pub struct FakeMmu {
    /// Full flushes.
    pub flushes: usize,
    /// Single-address flushes.
    pub flushed: Vec<u64>,
    /// Roots loaded.
    pub loaded: Vec<Mfn>,
    /// The hypervisor's L4 slots.
    pub slots: Vec<(usize, u64)>,
}

impl FakeMmu {
    /// An MMU whose hypervisor owns slot 256 (the M2P) and 262 (the direct map).
    pub fn new() -> FakeMmu {
        FakeMmu {
            slots: vec![(256, 0xa000_0005), (262, 0xb000_0003)],
            ..FakeMmu::default()
        }
    }
}

impl Mmu for FakeMmu {
    fn flush_all(&mut self) -> bool {
        self.flushes += 1;
        oracle::flushed();
        true
    }
    fn flush_va(&mut self, va: u64) {
        self.flushed.push(va);
    }
    fn load_root(&mut self, root: Mfn) -> bool {
        self.loaded.push(root);
        oracle::flushed();
        true
    }
    fn hypervisor_l4(&self) -> &[(usize, u64)] {
        &self.slots
    }
    fn undecodable_bits(&self) -> u64 {
        super::entry::undecodable_bits(PHYS_BITS)
    }
}

/// Frames in a test machine: 0..4 unusable (MMIO), 4..8 the hypervisor's, then RAM.
pub const FRAMES: usize = 256;

/// Storage for a test machine's frame table and M2P.
pub struct Storage {
    /// Frame infos.
    pub infos: Vec<FrameInfo>,
    /// Machine-to-phys.
    pub m2p: Vec<u64>,
}

impl Storage {
    /// Zeroed storage.
    pub fn new() -> Storage {
        Storage {
            infos: vec![FrameInfo::default(); FRAMES],
            m2p: vec![0; FRAMES],
        }
    }

    /// A frame table: frames 0..4 not RAM, 4..8 the hypervisor's, the rest free.
    pub fn table(&mut self) -> FrameTable<'_> {
        let mut table = FrameTable::new(&mut self.infos);
        table.attach_m2p(&mut self.m2p);
        table.add_ram(Mfn(4), Mfn(FRAMES as u64));
        table.reserve(Mfn(4), Mfn(8));
        table
    }
}

/// Allocates `count` frames for domain `id`.
pub fn give(frames: &FrameTable<'_>, mem: &FakeMem, id: u16, count: usize) -> Vec<Mfn> {
    (0..count)
        .map(|_| {
            frames
                .alloc(Owner::Domain(id), mem)
                .expect("test machine has room")
        })
        .collect()
}

/// Writes entry `index` of `table` directly (as a guest would while the frame is not a
/// page table).
pub fn poke(mem: &FakeMem, table: Mfn, index: usize, value: u64) {
    mem.write_u64(table.addr() + index as u64 * 8, value);
}

/// Reads entry `index` of `table`.
pub fn peek(mem: &FakeMem, table: Mfn, index: usize) -> u64 {
    mem.read_u64(table.addr() + index as u64 * 8)
}

pub use oracle::observe as oracle_observe;

/// The TLB oracle: what a CPU may still have cached, kept beside a test that turns it on,
/// to check that no frame changes use while it may (the TLB clock's promise: docs/
/// memory.md, rule 1). It sees every change of a frame's record (the frame table shows
/// it each one, `FrameTable::observe`) and every flush of the recording MMU. A frame is
/// in use while it is referenced: a CPU can cache a translation through it from then
/// until the next full flush. A type use is its type while it has type references and
/// is validated (a writable page, a linked, pinned or loaded table); any reference (a
/// read-only mapping too) is a mapped use. A frame taking another type while an older
/// type use of it may still be cached, or leaving its owner while any use may, is a
/// violation.
pub mod oracle {
    use crate::frames::{FrameInfo, PageType};
    use crate::mm::Mfn;
    use std::cell::RefCell;
    use std::collections::{BTreeMap, BTreeSet};

    #[derive(Default)]
    struct Oracle {
        /// Every frame's record as last seen.
        records: BTreeMap<u64, FrameInfo>,
        /// (frame, use) pairs that may be cached: held since the last flush.
        cached: BTreeSet<(u64, Use)>,
        violations: Vec<String>,
    }

    /// A type use (the `PageType`'s number) or a mapped use ([`MAPPED`]).
    type Use = u8;
    const MAPPED: Use = u8::MAX;

    thread_local! {
        static ORACLE: RefCell<Option<Oracle>> = const { RefCell::new(None) };
    }

    /// The uses a record shows.
    fn uses(info: &FrameInfo) -> impl Iterator<Item = Use> {
        let typed = info.type_count > 0 && info.validated && info.page_type != PageType::None;
        let mapped = info.ref_count > 0 || info.type_count > 0;
        [
            typed.then_some(info.page_type as Use),
            mapped.then_some(MAPPED),
        ]
        .into_iter()
        .flatten()
    }

    /// Turns the oracle on for this thread (each test runs on its own). It knows a frame
    /// from its first change after this (a frame it has not seen counts as unused), so
    /// a test starts it before building its frame table.
    pub fn start() {
        ORACLE.with(|o| *o.borrow_mut() = Some(Oracle::default()));
    }

    /// Turns it off; the violations it saw.
    pub fn finish() -> Vec<String> {
        ORACLE.with(|o| {
            o.borrow_mut()
                .take()
                .map(|o| o.violations)
                .unwrap_or_default()
        })
    }

    /// A frame's record changed to `new`.
    pub fn observe(mfn: Mfn, new: FrameInfo) {
        ORACLE.with(|o| {
            let mut o = o.borrow_mut();
            let Some(o) = o.as_mut() else { return };
            let old = o.records.get(&mfn.0).copied().unwrap_or(new);
            let cached = |o: &Oracle, stale: &dyn Fn(Use) -> bool| {
                o.cached
                    .iter()
                    .any(|&(frame, use_)| frame == mfn.0 && stale(use_))
            };
            if new.owner != old.owner {
                if cached(o, &|_| true) {
                    let why = format!("{mfn:?} left {:?} while a use may be cached", old.owner);
                    o.violations.push(why);
                }
                o.cached.retain(|&(frame, _)| frame != mfn.0);
            } else if new.page_type != old.page_type
                && new.page_type != PageType::None
                && cached(o, &|use_| use_ != MAPPED && use_ != new.page_type as Use)
            {
                let why = format!(
                    "{mfn:?} became {:?} while a use as {:?} may be cached",
                    new.page_type, old.page_type
                );
                o.violations.push(why);
            }
            for use_ in uses(&new) {
                o.cached.insert((mfn.0, use_));
            }
            o.records.insert(mfn.0, new);
        });
    }

    /// A full flush: only the uses held now may be cached from here on.
    pub fn flushed() {
        ORACLE.with(|o| {
            if let Some(o) = o.borrow_mut().as_mut() {
                o.cached = o
                    .records
                    .iter()
                    .flat_map(|(&frame, info)| uses(info).map(move |use_| (frame, use_)))
                    .collect();
            }
        });
    }
}
