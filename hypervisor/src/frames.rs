//! The frame table: who owns every machine frame, and the allocator over it.
//!
//! Each frame is unusable (not RAM, or not tracked), free, the hypervisor's, or a
//! domain's. Frames are scrubbed (zeroed) when they are handed out, so nothing a domain
//! leaves behind reaches another. Each entry also carries Xen's page type, type count,
//! general reference count and pinned/validated flags; the rules that change them live in
//! [`crate::paging`], which is the only code that writes those fields.
//!
//! The table is reached through shared references (the hypercall and trap contexts both
//! hold `&FrameTable`), so every entry sits in a [`Cell`]: all updates happen under the
//! machine lock, one CPU at a time.

use crate::mm::{Mfn, PhysMem};
use core::cell::Cell;

/// A domain's identifier (Xen's `domid_t`).
pub type DomId = u16;

/// Who holds a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Owner {
    /// Not RAM, or not managed by the allocator.
    #[default]
    Unusable,
    /// Free RAM.
    Free,
    /// Used by the hypervisor itself (its image, the boot modules, its tables).
    Hypervisor,
    /// Belongs to a domain.
    Domain(DomId),
}

/// What a frame is used as (Xen's `PGT_*` type). A frame has one type at a time, and the
/// type can change only while its type count is zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PageType {
    /// Never typed since it was allocated.
    #[default]
    None,
    /// A level-1 page table (its entries map pages).
    L1Table,
    /// A level-2 page table (its entries point to L1 tables).
    L2Table,
    /// A level-3 page table (its entries point to L2 tables).
    L3Table,
    /// A level-4 page table, the root of an address space.
    L4Table,
    /// A GDT/LDT page of segment descriptors.
    SegmentDescriptors,
    /// Mapped writable somewhere (its type count is the number of writable mappings).
    Writable,
}

impl PageType {
    /// The page-table level (1..=4) this type stands for, if it is a page-table type.
    pub const fn table_level(self) -> Option<u32> {
        match self {
            PageType::L1Table => Some(1),
            PageType::L2Table => Some(2),
            PageType::L3Table => Some(3),
            PageType::L4Table => Some(4),
            _ => None,
        }
    }

    /// The page-table type of `level` (1..=4).
    pub const fn table(level: u32) -> PageType {
        match level {
            1 => PageType::L1Table,
            2 => PageType::L2Table,
            3 => PageType::L3Table,
            _ => PageType::L4Table,
        }
    }
}

/// One frame's bookkeeping.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameInfo {
    /// Who holds the frame.
    pub owner: Owner,
    /// Its current (or, with a zero type count, last) type.
    pub page_type: PageType,
    /// References to the type: validated entries pointing at the frame with that type,
    /// writable mappings, pins and base pointers.
    pub type_count: u32,
    /// General references: every mapping, table entry, pin and base pointer.
    pub ref_count: u32,
    /// Pinned as a page table (MMUEXT_PIN_*): holds one general and one type reference.
    pub pinned: bool,
    /// Its contents were validated for its page-table type (cleared when the type count
    /// drops to zero and the entries' references are released).
    pub validated: bool,
    /// The table's TLB clock ([`FrameTable::tlb_clock`]) when a reference to the frame
    /// last went: a translation the CPU caches through the frame needs a reference to
    /// exist (any mapping holds a general one; a writable mapping, or a table linked,
    /// pinned or loaded, a type reference too), so none can have outlived a full flush
    /// counted after its last reference of that kind. Set by the table whatever the
    /// caller passes: when the type count drops to zero through
    /// [`FrameTable::set_info`], on every drop through [`FrameTable::drop_counts`] (a
    /// later stamp only ever costs a flush that was not needed). A change of type reads
    /// it for the type references, a release to the free pool for all of them.
    pub stamp: u8,
}

// Still 16 bytes: the stamp lives in what was padding.
const _: () = assert!(core::mem::size_of::<FrameInfo>() == 16);

impl FrameInfo {
    /// A frame that is not RAM (the initial state of every entry).
    pub const UNUSABLE: FrameInfo = FrameInfo::owned_by(Owner::Unusable);

    /// A frame held by `owner` with no type and no references.
    pub const fn owned_by(owner: Owner) -> FrameInfo {
        FrameInfo {
            owner,
            page_type: PageType::None,
            type_count: 0,
            ref_count: 0,
            pinned: false,
            validated: false,
            stamp: 0,
        }
    }
}

/// The machine-to-phys entry of a frame no domain has described (Xen's
/// `INVALID_M2P_ENTRY`).
pub const INVALID_M2P_ENTRY: u64 = u64::MAX;

/// The frame table over a slice of [`FrameInfo`], one per frame from MFN 0, and the
/// machine-to-phys table (one guest frame number per machine frame) that guests read.
#[derive(Debug)]
pub struct FrameTable<'a> {
    frames: &'a [Cell<FrameInfo>],
    m2p: &'a [Cell<u64>],
    free: Cell<usize>,
    next: Cell<usize>,
    ram_end: Cell<usize>,
    /// Bumped by every change of a frame's bookkeeping and every page-table write (see
    /// [`FrameTable::generation`]).
    generation: Cell<u64>,
    /// Full TLB flushes counted (see [`FrameTable::tlb_clock`]).
    tlb_clock: Cell<u8>,
}

// SAFETY: the cells are reachable only through this table: `new`/`adopt`/`attach_m2p`
// take exclusive borrows of the storage and nothing hands the cell slices out. Moving
// the table to another CPU moves every access with it. The table stays !Sync, so no two
// CPUs can use it at once.
unsafe impl Send for FrameTable<'_> {}

impl<'a> FrameTable<'a> {
    /// A table describing no frames at all (a placeholder until boot fills one in).
    pub const fn empty() -> FrameTable<'a> {
        FrameTable {
            frames: &[],
            m2p: &[],
            free: Cell::new(0),
            next: Cell::new(0),
            ram_end: Cell::new(0),
            generation: Cell::new(0),
            tlb_clock: Cell::new(0),
        }
    }

    /// A table in which every frame is unusable.
    pub fn new(frames: &'a mut [FrameInfo]) -> FrameTable<'a> {
        frames.fill(FrameInfo::UNUSABLE);
        Self::over(frames)
    }

    /// A table over bookkeeping that is already filled in (free frames are recounted),
    /// with no history: every frame is stamped as just used, so its next change of type
    /// or owner flushes. (Only host tests rebuild a table over existing records; the
    /// machine keeps one for its life.)
    pub fn adopt(frames: &'a mut [FrameInfo]) -> FrameTable<'a> {
        for info in frames.iter_mut() {
            info.stamp = 0;
        }
        Self::resume(frames, 0)
    }

    /// A table over records a previous table kept, continuing its TLB clock (`clock`,
    /// that table's [`tlb_clock`](Self::tlb_clock) when it went): host tests that build
    /// a table per call keep the stamps' meaning this way.
    pub fn resume(frames: &'a mut [FrameInfo], clock: u8) -> FrameTable<'a> {
        let table = Self::over(frames);
        table.tlb_clock.set(clock);
        table
    }

    /// The table over `frames` as they are, its TLB clock at 0.
    fn over(frames: &'a mut [FrameInfo]) -> FrameTable<'a> {
        let free = frames
            .iter()
            .filter(|info| info.owner == Owner::Free)
            .count();
        let ram_end = frames
            .iter()
            .rposition(|info| info.owner != Owner::Unusable)
            .map_or(0, |last| last + 1);
        FrameTable {
            frames: Cell::from_mut(frames).as_slice_of_cells(),
            m2p: &[],
            free: Cell::new(free),
            next: Cell::new(0),
            ram_end: Cell::new(ram_end),
            generation: Cell::new(0),
            tlb_clock: Cell::new(0),
        }
    }

    /// Uses `m2p` (one entry per machine frame) as the machine-to-phys table, every entry
    /// invalid.
    pub fn attach_m2p(&mut self, m2p: &'a mut [u64]) {
        m2p.fill(INVALID_M2P_ENTRY);
        self.adopt_m2p(m2p);
    }

    /// Uses `m2p` as the machine-to-phys table, keeping its contents.
    pub fn adopt_m2p(&mut self, m2p: &'a mut [u64]) {
        self.m2p = Cell::from_mut(m2p).as_slice_of_cells();
    }

    /// A count that changes whenever any frame changes hands or type, and whenever the
    /// paging code writes a page-table entry ([`FrameTable::note_table_write`]): a guest's
    /// translations can only have changed if it did. (Guests cannot write their page
    /// tables themselves: every write goes through the paging code. A reference count
    /// alone changes no translation: a table can only lose its last reference, and so
    /// its type or owner, by an entry write, which moves the count.)
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.get()
    }

    /// The paging code wrote a page-table entry.
    #[inline]
    pub fn note_table_write(&self) {
        self.generation.set(self.generation.get().wrapping_add(1));
    }

    /// The TLB clock (Xen's TLB-flush clock, for one CPU): a count, wrapping, of the full
    /// flushes the paging code made (a flush or a CR3 write; [`note_full_flush`] after
    /// each). A frame whose type count drops to zero is stamped with it
    /// ([`FrameInfo::stamp`]); if the clock has moved since, a full flush came after the
    /// frame's last use, and taking another type needs no flush of its own. Flushes made
    /// elsewhere (a vCPU's mode switch, the express paths) are not counted, which only
    /// ever costs a flush that was not needed; a stamp equal to the clock after exactly
    /// 256 of them costs the same.
    ///
    /// [`note_full_flush`]: Self::note_full_flush
    #[inline]
    pub fn tlb_clock(&self) -> u8 {
        self.tlb_clock.get()
    }

    /// The paging code has just flushed every translation (see [`tlb_clock`]).
    ///
    /// [`tlb_clock`]: Self::tlb_clock
    #[inline]
    pub fn note_full_flush(&self) {
        self.tlb_clock.set(self.tlb_clock.get().wrapping_add(1));
    }

    /// How many frames the table can describe.
    pub fn capacity(&self) -> usize {
        self.frames.len()
    }

    /// One past the highest frame that is RAM (Xen's `max_page`).
    pub fn ram_end(&self) -> Mfn {
        Mfn(self.ram_end.get() as u64)
    }

    /// Marks `[start, end)` as free RAM (clipped to the table). Only unusable frames
    /// change: RAM reported twice is counted once.
    pub fn add_ram(&mut self, start: Mfn, end: Mfn) {
        let end = (end.0 as usize).min(self.frames.len());
        for cell in self.frames.iter().take(end).skip(start.0 as usize) {
            if cell.get().owner == Owner::Unusable {
                cell.set(FrameInfo::owned_by(Owner::Free));
                self.note_table_write();
                self.free.set(self.free.get() + 1);
            }
        }
        if end > self.ram_end.get() && end > start.0 as usize {
            self.ram_end.set(end);
        }
    }

    /// Takes `[start, end)` for the hypervisor (image, boot modules). Frames that are not
    /// free are left alone.
    pub fn reserve(&mut self, start: Mfn, end: Mfn) {
        let end = (end.0 as usize).min(self.frames.len());
        for cell in self.frames.iter().take(end).skip(start.0 as usize) {
            if cell.get().owner == Owner::Free {
                cell.set(FrameInfo::owned_by(Owner::Hypervisor));
                self.free.set(self.free.get() - 1);
            }
        }
    }

    /// Who holds `mfn` (unusable if it is beyond the table).
    #[inline]
    pub fn owner(&self, mfn: Mfn) -> Owner {
        self.info(mfn).owner
    }

    /// The bookkeeping of `mfn` (an unusable frame if it is beyond the table).
    #[inline]
    pub fn info(&self, mfn: Mfn) -> FrameInfo {
        // Tested and indexed, not `cell(mfn).map_or(..)`: through the `Option` the
        // compiler builds a record pointer and then tests it for null.
        match usize::try_from(mfn.0) {
            Ok(index) if index < self.frames.len() => self.frames[index].get(),
            _ => FrameInfo::UNUSABLE,
        }
    }

    /// Replaces the bookkeeping of `mfn` (ignored beyond the table). Only the paging code
    /// calls this, and never to change the owner.
    #[inline]
    pub fn set_info(&self, mfn: Mfn, mut info: FrameInfo) {
        if let Some(cell) = self.cell(mfn) {
            debug_assert_eq!(cell.get().owner, info.owner);
            let old = cell.get();
            info.stamp = if info.type_count == 0 && old.type_count != 0 {
                self.tlb_clock()
            } else {
                old.stamp
            };
            cell.set(info);
            self.note_table_write();
            #[cfg(test)]
            self.observe(mfn);
        }
    }

    /// Sets the two reference counts of `mfn` in place, leaving the rest of its
    /// bookkeeping as it is (ignored beyond the table): what taking a reference changes,
    /// in two stores instead of a rewrite of the whole record. Only for a change of
    /// counts alone that lowers neither (a drop goes through
    /// [`drop_counts`](Self::drop_counts), which stamps; debug builds assert it); a
    /// change of type or owner goes through [`set_info`](Self::set_info).
    #[inline]
    pub fn set_counts(&self, mfn: Mfn, type_count: u32, ref_count: u32) {
        if let Some(cell) = self.cell(mfn) {
            debug_assert!(
                type_count >= cell.get().type_count && ref_count >= cell.get().ref_count,
                "a reference dropped without its stamp"
            );
            self.write_counts(cell, type_count, ref_count);
            #[cfg(test)]
            self.observe(mfn);
        }
    }

    /// [`set_counts`](Self::set_counts) for a drop of either count: stamps the record
    /// with the TLB clock, as [`set_info`](Self::set_info) does when the type count
    /// reaches zero. (On every drop, with no test: a later stamp only ever asks for a
    /// flush that was not needed.)
    #[inline]
    pub fn drop_counts(&self, mfn: Mfn, type_count: u32, ref_count: u32) {
        if let Some(cell) = self.cell(mfn) {
            let info = cell.as_ptr();
            // SAFETY: as in `write_counts`.
            unsafe { core::ptr::addr_of_mut!((*info).stamp).write(self.tlb_clock()) };
            self.write_counts(cell, type_count, ref_count);
            #[cfg(test)]
            self.observe(mfn);
        }
    }

    #[inline(always)]
    fn write_counts(&self, cell: &Cell<FrameInfo>, type_count: u32, ref_count: u32) {
        let info = cell.as_ptr();
        // SAFETY: `info` points at the record inside the cell, valid while `self` is
        // borrowed. A `Cell` never lends a reference to its value, and the table is not
        // `Sync`, so no other access to the record can overlap these two stores (the raw
        // field pointers make no reference either).
        unsafe {
            core::ptr::addr_of_mut!((*info).type_count).write(type_count);
            core::ptr::addr_of_mut!((*info).ref_count).write(ref_count);
        }
        // No generation step: counts alone change no translation (see `generation`).
    }

    /// Shows the record of `mfn` to the host tests' TLB oracle
    /// (`paging::testing::oracle_observe`), after every change.
    #[cfg(test)]
    fn observe(&self, mfn: Mfn) {
        if let Some(cell) = self.cell(mfn) {
            crate::paging::testing::oracle_observe(mfn, cell.get());
        }
    }

    #[inline]
    fn cell(&self, mfn: Mfn) -> Option<&Cell<FrameInfo>> {
        usize::try_from(mfn.0)
            .ok()
            .and_then(|index| self.frames.get(index))
    }

    /// The machine-to-phys entry of `mfn` ([`INVALID_M2P_ENTRY`] if none).
    pub fn m2p(&self, mfn: Mfn) -> u64 {
        usize::try_from(mfn.0)
            .ok()
            .and_then(|index| self.m2p.get(index))
            .map_or(INVALID_M2P_ENTRY, Cell::get)
    }

    /// Sets the machine-to-phys entry of `mfn` (ignored without a table or beyond it).
    pub fn set_m2p(&self, mfn: Mfn, pfn: u64) {
        if let Some(entry) = usize::try_from(mfn.0)
            .ok()
            .and_then(|index| self.m2p.get(index))
        {
            entry.set(pfn);
        }
    }

    /// Free frames left.
    pub fn free_count(&self) -> usize {
        self.free.get()
    }

    /// Allocates a frame for `owner`, zeroed through `mem`. Every frame is scrubbed here,
    /// whoever held it before: this is the one place frames change hands.
    pub fn alloc(&self, owner: Owner, mem: &impl PhysMem) -> Option<Mfn> {
        debug_assert!(matches!(owner, Owner::Hypervisor | Owner::Domain(_)));
        if self.free.get() == 0 {
            return None;
        }
        let len = self.frames.len();
        for step in 0..len {
            let index = (self.next.get() + step) % len;
            if self.frames[index].get().owner == Owner::Free {
                // A fresh frame has no use a CPU can have cached (the last owner's were
                // flushed before the frame was freed): stamped one tick back, so that its
                // first type needs no flush (see `FrameInfo::stamp`).
                let fresh = FrameInfo {
                    stamp: self.tlb_clock().wrapping_sub(1),
                    ..FrameInfo::owned_by(owner)
                };
                self.frames[index].set(fresh);
                #[cfg(test)]
                self.observe(Mfn(index as u64));
                self.note_table_write();
                self.free.set(self.free.get() - 1);
                self.next.set((index + 1) % len);
                let mfn = Mfn(index as u64);
                mem.zero_frame(mfn);
                self.set_m2p(mfn, INVALID_M2P_ENTRY);
                return Some(mfn);
            }
        }
        None
    }

    /// Returns a frame to the free pool. Returns false (and changes nothing) if the frame
    /// is not held by `owner`. The frame's type, counts and machine-to-phys entry are
    /// reset; callers free only frames nothing references.
    pub fn free(&self, mfn: Mfn, owner: Owner) -> bool {
        match self.cell(mfn) {
            Some(cell) if cell.get().owner == owner && owner != Owner::Free => {
                cell.set(FrameInfo::owned_by(Owner::Free));
                self.note_table_write();
                #[cfg(test)]
                self.observe(mfn);
                self.free.set(self.free.get() + 1);
                self.set_m2p(mfn, INVALID_M2P_ENTRY);
                true
            }
            _ => false,
        }
    }

    /// Frees every frame `domain` holds, whatever its type, counts or pins (the domain is
    /// gone, and so is every reference it held); returns how many there were.
    pub fn release_domain(&self, domain: DomId) -> usize {
        let mut released = 0;
        for (index, cell) in self.frames.iter().enumerate() {
            if cell.get().owner == Owner::Domain(domain) {
                cell.set(FrameInfo::owned_by(Owner::Free));
                self.set_m2p(Mfn(index as u64), INVALID_M2P_ENTRY);
                #[cfg(test)]
                self.observe(Mfn(index as u64));
                released += 1;
            }
        }
        self.free.set(self.free.get() + released);
        self.note_table_write();
        released
    }

    /// Frames held by `domain`.
    pub fn count_owned(&self, domain: DomId) -> usize {
        self.frames
            .iter()
            .filter(|cell| cell.get().owner == Owner::Domain(domain))
            .count()
    }
}

#[cfg(test)]
impl FrameTable<'_> {
    /// For test fixtures' hand-made address spaces: gives `root` the type and the
    /// references of a held L4 (what the builder's pin and base pointer give it),
    /// without validating the tables below, which those tests write by hand. The checked
    /// accessor walks only live roots.
    pub fn assume_live_root(&self, root: Mfn) {
        let mut info = self.info(root);
        info.page_type = PageType::L4Table;
        info.validated = true;
        info.type_count += 1;
        info.ref_count += 1;
        self.set_info(root, info);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::fake::FakeMem;

    #[test]
    fn alloc_free_and_release_keep_the_count() {
        let mem = FakeMem::new(64);
        let mut storage = vec![FrameInfo::default(); 64];
        let mut table = FrameTable::new(&mut storage);
        table.add_ram(Mfn(0), Mfn(64));
        table.add_ram(Mfn(10), Mfn(20)); // reported twice: counted once
        table.reserve(Mfn(0), Mfn(8));
        assert_eq!(table.free_count(), 56);
        let a = table.alloc(Owner::Domain(1), &mem).unwrap();
        let b = table.alloc(Owner::Domain(1), &mem).unwrap();
        let c = table.alloc(Owner::Domain(2), &mem).unwrap();
        assert!(a.0 >= 8 && b.0 >= 8 && a != b && b != c);
        assert_eq!(table.free_count(), 53);
        assert!(!table.free(a, Owner::Domain(2)), "only the owner frees");
        assert!(table.free(a, Owner::Domain(1)));
        assert!(!table.free(a, Owner::Domain(1)), "no double free");
        assert_eq!(table.release_domain(1), 1);
        assert_eq!(table.count_owned(2), 1);
        assert_eq!(table.release_domain(2), 1);
        assert_eq!(table.free_count(), 56);
    }

    #[test]
    fn allocation_scrubs_and_runs_out_cleanly() {
        let mem = FakeMem::new(4);
        mem.write(2 * 4096 + 100, &[0xaa; 8]);
        let mut storage = vec![FrameInfo::default(); 4];
        let mut table = FrameTable::new(&mut storage);
        table.add_ram(Mfn(2), Mfn(100)); // clipped to the table
        let first = table.alloc(Owner::Domain(1), &mem).unwrap();
        assert_eq!(first, Mfn(2));
        assert_eq!(
            mem.read_u64(2 * 4096 + 100),
            0,
            "a handed-out frame is zeroed"
        );
        assert!(table.alloc(Owner::Domain(1), &mem).is_some());
        assert!(table.alloc(Owner::Domain(1), &mem).is_none());
        assert_eq!(table.owner(Mfn(1000)), Owner::Unusable);
    }
}
