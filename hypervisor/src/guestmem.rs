//! The one checked accessor for guest memory.
//!
//! A pointer a guest passes is an allegation. The hypervisor reaches it in one of two
//! ways, both here:
//!
//! - **By the MMU**, when the address space is the one loaded on the CPU (a hypercall
//!   from a guest kernel: its own tables): the range must lie wholly in the guest's part
//!   of the address space ([`mmu_may_copy`]: below the canonical hole, or above the
//!   hypervisor's L4 slots), and the copy runs through the guest's tables with a fix-up
//!   for page faults (`hv_guest_copy` in `entry.S`). That is safe because every entry of
//!   those tables was validated (they map only frames the guest may map, its page tables
//!   read-only), CR0.WP makes the hypervisor honour read-only mappings, and the TLB is
//!   flushed whenever a frame leaves the domain or becomes a page table. A write is
//!   taken this way only within one page, so that a fault stops it before any byte.
//! - **In software** otherwise (another root, a multi-page write, host tests): walk the
//!   tables, require every level present and user-accessible (and writable, for a
//!   write), every table and the final frame the guest's, then copy through the machine
//!   address.
//!
//! The hypervisor's own slots are excluded by range in the first and are
//! supervisor-only in the second, so no guest pointer can reach them.

use crate::frames::{DomId, FrameTable, Owner};
use crate::mm::{self, Mfn, PAGE_SIZE, PhysMem, pte};
use core::cell::Cell;
use core::mem::MaybeUninit;
use pv_abi::errno::Errno;
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// Longest buffer one accessor call copies (bounds hypervisor time per call).
pub const MAX_COPY: usize = 64 * 1024;

/// A domain's address space as seen through its page tables.
pub struct GuestMem<'a, M: PhysMem> {
    mem: &'a M,
    frames: &'a FrameTable<'a>,
    domain: DomId,
    root: Mfn,
    /// Where the last successful walk is remembered, to skip the next walk of the same
    /// page (none: every access walks).
    memo: Option<&'a WalkMemo>,
}

/// One walk of the page tables: which page, where it is, and whether every level
/// allowed writes.
#[derive(Clone, Copy)]
struct Walk {
    page: u64,
    /// The machine address of each level's entry, and the value it held.
    entries: [(u64, u64); 4],
    frame: Mfn,
    writable: bool,
}

/// The last walk of some address space, kept by its owner (the machine keeps one per CPU)
/// across accessors and hypercalls, since a guest reuses the same few buffers for its
/// requests. It is reused only for the same domain, root and page, and only if the page
/// is still the domain's and either the frame table's [generation](FrameTable::generation)
/// is unchanged (no page-table entry and no frame's bookkeeping changed since) or each of
/// the four entries walked still holds the value it was walked with (the tables changed,
/// but not on this path: a batch of `mmu_update`s reads its requests from one page while
/// it rewrites other entries).
pub struct WalkMemo {
    /// Direct-mapped by page number: an instruction fetch and the data it touches (a
    /// trap), or a request list and its `done` counter, rarely share a slot.
    slots: [MemoSlot; MEMO_SLOTS],
}

/// Pages a [`WalkMemo`] remembers.
const MEMO_SLOTS: usize = 8;

/// One remembered walk.
struct MemoSlot {
    domain: Cell<DomId>,
    root: Cell<Mfn>,
    page: Cell<u64>,
    generation: Cell<u64>,
    entries: [Cell<(u64, u64)>; 4],
    frame: Cell<Mfn>,
    writable: Cell<bool>,
}

impl WalkMemo {
    /// Remembers nothing yet: every slot holds frame 0, which no domain owns (it is in
    /// the low memory the hypervisor reserves), so no slot can answer before a walk
    /// fills it. All zero in memory, as the machine state it starts in (see `Present`
    /// in `domain.rs`).
    pub const fn new() -> WalkMemo {
        WalkMemo {
            slots: [const {
                MemoSlot {
                    domain: Cell::new(0),
                    root: Cell::new(Mfn(0)),
                    page: Cell::new(0),
                    generation: Cell::new(0),
                    entries: [const { Cell::new((0, 0)) }; 4],
                    frame: Cell::new(Mfn(0)),
                    writable: Cell::new(false),
                }
            }; MEMO_SLOTS],
        }
    }
}

impl Default for WalkMemo {
    fn default() -> Self {
        WalkMemo::new()
    }
}

/// First address above the lower canonical half.
pub const LOWER_HALF_END: u64 = 1 << 47;
/// First address of the guest's part of the upper half (L4 slot 272, above the
/// hypervisor's slots 256..272).
pub const GUEST_UPPER_START: u64 = 0xffff_8800_0000_0000;

/// Whether the MMU may copy `va..va+len` for a guest: the range lies wholly below the
/// canonical hole or wholly above the hypervisor's L4 slots, so the copy can neither
/// reach the hypervisor's mappings nor take any fault but a page fault.
#[inline]
pub fn mmu_may_copy(va: u64, len: usize) -> bool {
    // The last byte is `va + span`; written as bounds on `va` alone, so that for a
    // structure (constant `len`) each half is one compare. The guest's upper part comes
    // first: PV kernels keep their requests there (stacks, static data). Its test is
    // `GUEST_UPPER_START <= va <= u64::MAX - span` as one unsigned compare: below
    // `GUEST_UPPER_START`, the difference wraps to at least `2^64 - GUEST_UPPER_START`,
    // above any bound it is compared with.
    let span = (len as u64).saturating_sub(1);
    if span >= LOWER_HALF_END {
        return false;
    }
    if va.wrapping_sub(GUEST_UPPER_START) <= u64::MAX - GUEST_UPPER_START - span {
        return true;
    }
    // Without the hint the compiler tests the lower half first.
    core::hint::cold_path();
    va < LOWER_HALF_END - span
}

/// Most pages one accessor call can span ([`MAX_COPY`] bytes, not page-aligned).
const MAX_PAGES: usize = MAX_COPY / PAGE_SIZE as usize + 1;

impl<'a, M: PhysMem> GuestMem<'a, M> {
    /// The address space rooted at `root` (the vCPU's current L4) of `domain`.
    pub fn new(mem: &'a M, frames: &'a FrameTable<'a>, domain: DomId, root: Mfn) -> Self {
        GuestMem {
            mem,
            frames,
            domain,
            root,
            memo: None,
        }
    }

    /// The same, remembering its last walk in `memo` (which may hold a walk of another
    /// address space: it is used only for the same domain, root and page, and checked).
    pub fn with_memo(
        mem: &'a M,
        frames: &'a FrameTable<'a>,
        domain: DomId,
        root: Mfn,
        memo: &'a WalkMemo,
    ) -> Self {
        GuestMem {
            mem,
            frames,
            domain,
            root,
            memo: Some(memo),
        }
    }

    /// The memo this accessor uses, if any.
    pub fn memo(&self) -> Option<&'a WalkMemo> {
        self.memo
    }

    /// The same domain's address space rooted at `root`, sharing the memo.
    pub fn for_root(&self, root: Mfn) -> GuestMem<'a, M> {
        GuestMem {
            mem: self.mem,
            frames: self.frames,
            domain: self.domain,
            root,
            memo: self.memo,
        }
    }

    /// Whether the root is a live top-level table of the domain (owned, typed L4,
    /// validated, referenced): then every table below it is one too, validated and
    /// held, and a walk cannot be led through a page the guest writes.
    fn live_root(&self) -> bool {
        let info = self.frames.info(self.root);
        info.owner == Owner::Domain(self.domain)
            && info.page_type == crate::frames::PageType::L4Table
            && info.validated
            && info.type_count > 0
    }

    fn owned(&self, mfn: Mfn) -> bool {
        self.frames.owner(mfn) == Owner::Domain(self.domain)
    }

    /// Machine address of guest virtual address `va`, if the guest may access it.
    ///
    /// With a memo, the last walk is reused for the same page only when it is certain to
    /// answer what a new walk would (see [`WalkMemo`]); even a stale memo could only ever
    /// reach a page the domain owns, which is checked on every use.
    pub fn translate(&self, va: u64, write: bool) -> Result<u64, Errno> {
        let Some(memo) = self.memo else {
            return self
                .walk(va, write)
                .map(|walk| walk.frame.addr() + va % PAGE_SIZE);
        };
        let generation = self.frames.generation();
        let page = va / PAGE_SIZE;
        let memo = &memo.slots[page as usize % MEMO_SLOTS];
        if memo.page.get() == page
            && memo.root.get() == self.root
            && memo.domain.get() == self.domain
            && (memo.writable.get() || !write)
            && (memo.generation.get() == generation
                || memo.entries.iter().all(|entry| {
                    let (at, value) = entry.get();
                    self.mem.read_u64(at) == value
                }))
            && self.owned(memo.frame.get())
            && self.live_root()
        {
            memo.generation.set(generation);
            return Ok(memo.frame.get().addr() + va % PAGE_SIZE);
        }
        let walk = self.walk(va, write)?;
        memo.domain.set(self.domain);
        memo.root.set(self.root);
        memo.page.set(walk.page);
        memo.generation.set(generation);
        for (cell, entry) in memo.entries.iter().zip(walk.entries) {
            cell.set(entry);
        }
        memo.frame.set(walk.frame);
        memo.writable.set(walk.writable);
        Ok(walk.frame.addr() + va % PAGE_SIZE)
    }

    /// Walks the tables for `va`: every level present and user-accessible (and writable,
    /// for a write), every table and the page the domain's own.
    fn walk(&self, va: u64, write: bool) -> Result<Walk, Errno> {
        if !mm::is_canonical(va) {
            return Err(Errno::EFAULT);
        }
        let mut table = self.root;
        if !self.live_root() {
            return Err(Errno::EFAULT);
        }
        let mut required = pte::PRESENT | pte::USER;
        if write {
            required |= pte::WRITABLE;
        }
        let mut entries = [(0, 0); 4];
        let mut writable = true;
        for level in (1..=4).rev() {
            let at = table.addr() + mm::table_index(va, level) as u64 * 8;
            let entry = self.mem.read_u64(at);
            if entry & required != required || (level > 1 && entry & pte::PAGE_SIZE != 0) {
                // Superpages are never granted to PV guests, so never followed here.
                return Err(Errno::EFAULT);
            }
            writable &= entry & pte::WRITABLE != 0;
            entries[(4 - level) as usize] = (at, entry);
            table = Mfn::containing(entry & pte::ADDRESS_MASK);
            if !self.owned(table) {
                return Err(Errno::EFAULT);
            }
        }
        Ok(Walk {
            page: va / PAGE_SIZE,
            entries,
            frame: table,
            writable,
        })
    }

    /// Translates every page of `va..va+len` first (a failed copy changes nothing), then
    /// hands `f` each piece: machine address, offset in the buffer, length.
    fn for_each_page(
        &self,
        va: u64,
        len: usize,
        write: bool,
        mut f: impl FnMut(u64, usize, usize),
    ) -> Result<(), Errno> {
        if len > MAX_COPY || va.checked_add(len as u64).is_none() {
            return Err(Errno::EFAULT);
        }
        let first = ((PAGE_SIZE - va % PAGE_SIZE) as usize).min(len);
        if first == len {
            // The common case: one page.
            f(self.translate(va, write)?, 0, len);
            return Ok(());
        }
        let mut pieces = heapless::Vec::<(u64, usize, usize), MAX_PAGES>::new();
        let mut done = 0usize;
        while done < len {
            let at = va + done as u64;
            let n = ((PAGE_SIZE - at % PAGE_SIZE) as usize).min(len - done);
            pieces
                .push((self.translate(at, write)?, done, n))
                .map_err(|_| Errno::EFAULT)?;
            done += n;
        }
        for (addr, at, n) in pieces {
            f(addr, at, n);
        }
        Ok(())
    }

    /// Copies `buf.len()` bytes from guest address `va`.
    #[inline]
    pub fn read(&self, va: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let len = buf.len();
        if len <= MAX_COPY
            && mmu_may_copy(va, len)
            // SAFETY: `buf` is writable for `len` bytes.
            && let Some(copied) = unsafe { self.mem.read_virtual(self.root, va, buf.as_mut_ptr(), len) }
        {
            return if copied { Ok(()) } else { Err(Errno::EFAULT) };
        }
        self.read_by_walk(va, buf)
    }

    /// [`read`](Self::read) when the MMU cannot copy: by software walks, with the
    /// vector registers claimed first (a walk records its four entries in the memo by
    /// SSE moves).
    #[inline(never)]
    fn read_by_walk(&self, va: u64, buf: &mut [u8]) -> Result<(), Errno> {
        M::claim_vector_registers();
        let len = buf.len();
        if Self::in_one_page(va, len) {
            // The common case (a request structure): one translation, one copy.
            self.mem.read(self.translate(va, false)?, buf);
            return Ok(());
        }
        self.for_each_page(va, len, false, |addr, at, n| {
            self.mem.read(addr, &mut buf[at..at + n])
        })
    }

    /// Copies `data` to guest address `va`.
    #[inline]
    pub fn write(&self, va: u64, data: &[u8]) -> Result<(), Errno> {
        if let Some(result) = self.mmu_write(va, data) {
            return result;
        }
        self.write_by_walk(va, data)
    }

    /// [`write`](Self::write) when the MMU cannot copy (see
    /// [`read_by_walk`](Self::read_by_walk)).
    #[inline(never)]
    fn write_by_walk(&self, va: u64, data: &[u8]) -> Result<(), Errno> {
        M::claim_vector_registers();
        if Self::in_one_page(va, data.len()) {
            self.mem.write(self.translate(va, true)?, data);
            return Ok(());
        }
        self.for_each_page(va, data.len(), true, |addr, at, n| {
            self.mem.write(addr, &data[at..at + n])
        })
    }

    /// The MMU copy of `data` to `va`, if the MMU can make it (see [`write`](Self::write)):
    /// only within one page, so that a fault stops it before any byte, and only in the
    /// guest's slots of the loaded address space. `None` if it cannot (nothing written).
    #[inline(always)]
    fn mmu_write(&self, va: u64, data: &[u8]) -> Option<Result<(), Errno>> {
        if !Self::in_one_page(va, data.len()) || !mmu_may_copy(va, data.len()) {
            return None;
        }
        let copied = self.mem.write_virtual(self.root, va, data)?;
        Some(if copied { Ok(()) } else { Err(Errno::EFAULT) })
    }

    /// Whether `va..va+len` lies within one page (and is not empty).
    fn in_one_page(va: u64, len: usize) -> bool {
        len != 0 && (va % PAGE_SIZE) + (len as u64) <= PAGE_SIZE
    }

    /// Copies `slots.len()` wire structures from guest address `va` into uninitialised
    /// memory and returns them: by the MMU when it can (no zeroing first, which for an
    /// array of requests would be SSE stores, and with them a save of the guest's XMM
    /// registers), otherwise zeroed and read by [`read`](Self::read).
    #[inline]
    pub fn read_slice<'s, T: FromBytes + IntoBytes>(
        &self,
        va: u64,
        slots: &'s mut [MaybeUninit<T>],
    ) -> Result<&'s [T], Errno> {
        let len = size_of_val(slots);
        if len <= MAX_COPY
            && mmu_may_copy(va, len)
            // SAFETY: `slots` is writable for `len` bytes.
            && let Some(copied) = unsafe {
                self.mem
                    .read_virtual(self.root, va, slots.as_mut_ptr().cast(), len)
            }
        {
            if !copied {
                return Err(Errno::EFAULT);
            }
            // SAFETY: the MMU copy wrote all `len` bytes, and `T` is `FromBytes`: every
            // slot holds a valid `T`.
            return Ok(unsafe { &*(core::ptr::from_mut(slots) as *const [T]) });
        }
        for slot in slots.iter_mut() {
            slot.write(T::new_zeroed());
        }
        // SAFETY: every slot was just initialised.
        let values = unsafe { &mut *(core::ptr::from_mut(slots) as *mut [T]) };
        self.read(va, values.as_mut_bytes())?;
        Ok(values)
    }

    /// Reads one wire structure from guest address `va`.
    #[inline(always)]
    pub fn read_obj<T: FromBytes + IntoBytes>(&self, va: u64) -> Result<T, Errno> {
        let mut slot = MaybeUninit::<T>::uninit();
        match self.mmu_read_into(va, &mut slot) {
            // SAFETY: the MMU copy initialised `slot` (see `mmu_read_into`).
            Some(Ok(())) => Ok(unsafe { slot.assume_init() }),
            Some(Err(errno)) => Err(errno),
            None => {
                Self::read_obj_walked(self.mem, self.frames, self.domain, self.root, self.memo, va)
            }
        }
    }

    /// [`read_obj`](Self::read_obj) by the MMU alone, for a caller that hands whatever
    /// this cannot do to a path that can (the send lane): `None`, having read nothing
    /// it keeps, when the MMU cannot make the copy (another address space loaded, a
    /// range outside the guest's slots) or a fault stopped it.
    #[inline(always)]
    pub fn read_obj_mapped<T: FromBytes + IntoBytes>(&self, va: u64) -> Option<T> {
        let mut slot = MaybeUninit::<T>::uninit();
        match self.mmu_read_into(va, &mut slot)? {
            // SAFETY: the MMU copy initialised `slot` (see `mmu_read_into`).
            Ok(()) => Some(unsafe { slot.assume_init() }),
            Err(_) => None,
        }
    }

    /// [`read_obj`](Self::read_obj) when the MMU cannot copy: the software walk. Out of
    /// line and with the accessor's parts as arguments, so that the MMU path (the hot
    /// one) never has to build the accessor in memory for it.
    #[cold]
    #[inline(never)]
    fn read_obj_walked<T: FromBytes + IntoBytes>(
        mem: &'a M,
        frames: &'a FrameTable<'a>,
        domain: DomId,
        root: Mfn,
        memo: Option<&'a WalkMemo>,
        va: u64,
    ) -> Result<T, Errno> {
        M::claim_vector_registers();
        let guest = GuestMem {
            mem,
            frames,
            domain,
            root,
            memo,
        };
        let mut value = T::new_zeroed();
        guest.read(va, value.as_mut_bytes())?;
        Ok(value)
    }

    /// Reads one wire structure from guest address `va` and hands `f` a reference to it:
    /// for structures too large to move around cheaply (a move of more than 16 bytes is
    /// an SSE copy, and with it a save of the guest's XMM registers on paths that
    /// otherwise never touch them). The copy is read straight into `f`'s argument.
    #[inline(always)]
    pub fn with_obj<T: FromBytes + IntoBytes, R>(
        &self,
        va: u64,
        f: impl FnOnce(&T) -> R,
    ) -> Result<R, Errno> {
        let mut slot = MaybeUninit::<T>::uninit();
        match self.mmu_read_into(va, &mut slot) {
            // SAFETY: the MMU copy initialised `slot` (see `mmu_read_into`).
            Some(Ok(())) => Ok(f(unsafe { slot.assume_init_ref() })),
            Some(Err(errno)) => Err(errno),
            None => Self::with_obj_walked(
                self.mem,
                self.frames,
                self.domain,
                self.root,
                self.memo,
                va,
                f,
            ),
        }
    }

    /// [`with_obj`](Self::with_obj) when the MMU cannot copy: the software walk, out of
    /// line with the accessor's parts as arguments (as `read_obj_walked`), so that the
    /// MMU path never builds the accessor in memory for it; with the vector registers
    /// claimed first, since handing the copy on may move it by SSE.
    #[cold]
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn with_obj_walked<T: FromBytes + IntoBytes, R>(
        mem: &'a M,
        frames: &'a FrameTable<'a>,
        domain: DomId,
        root: Mfn,
        memo: Option<&'a WalkMemo>,
        va: u64,
        f: impl FnOnce(&T) -> R,
    ) -> Result<R, Errno> {
        M::claim_vector_registers();
        let value = Self::read_obj_walked::<T>(mem, frames, domain, root, memo, va)?;
        Ok(f(&value))
    }

    /// The MMU copy of a `T` from `va` straight into uninitialised `slot`, if the MMU
    /// can make it (see [`read`](Self::read)): `None` if it cannot (nothing written),
    /// `Some(Ok(()))` when all of `T` arrived, so `slot` is initialised (and, `T` being
    /// `FromBytes`, a valid `T`), `Some(Err(EFAULT))` when a fault stopped it. Not
    /// zeroing first matters: zeroing a request of 16 bytes or more takes an SSE store,
    /// and with it a save of the guest's XMM registers on paths that otherwise never
    /// touch them.
    #[inline(always)]
    fn mmu_read_into<T: FromBytes + IntoBytes>(
        &self,
        va: u64,
        slot: &mut MaybeUninit<T>,
    ) -> Option<Result<(), Errno>> {
        let len = size_of::<T>();
        if len > MAX_COPY || !mmu_may_copy(va, len) {
            return None;
        }
        // SAFETY: `slot` is writable for one `T`.
        let copied = unsafe { self.mem.read_virtual_obj(self.root, va, slot.as_mut_ptr()) }?;
        Some(if copied { Ok(()) } else { Err(Errno::EFAULT) })
    }

    /// Writes one wire structure to guest address `va`: by the MMU when it can (inline),
    /// otherwise by [`write`](Self::write), out of line with the accessor's parts as
    /// arguments so that a caller on the MMU path (the hot one) never builds the
    /// accessor in memory for it.
    #[inline(always)]
    pub fn write_obj<T: IntoBytes + Immutable>(&self, va: u64, value: &T) -> Result<(), Errno> {
        let data = value.as_bytes();
        if Self::in_one_page(va, data.len())
            && mmu_may_copy(va, data.len())
            && let Some(copied) = self.mem.write_virtual_obj(self.root, va, value)
        {
            return if copied { Ok(()) } else { Err(Errno::EFAULT) };
        }
        Self::write_walked(
            self.mem,
            self.frames,
            self.domain,
            self.root,
            self.memo,
            va,
            data,
        )
    }

    /// [`write_obj`](Self::write_obj) when the MMU cannot copy: [`write`](Self::write).
    #[cold]
    #[inline(never)]
    fn write_walked(
        mem: &'a M,
        frames: &'a FrameTable<'a>,
        domain: DomId,
        root: Mfn,
        memo: Option<&'a WalkMemo>,
        va: u64,
        data: &[u8],
    ) -> Result<(), Errno> {
        M::claim_vector_registers();
        let guest = GuestMem {
            mem,
            frames,
            domain,
            root,
            memo,
        };
        guest.write(va, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::FrameInfo;
    use crate::mm::fake::FakeMem;

    const ALL: u64 = pte::PRESENT | pte::WRITABLE | pte::USER;

    /// Domain 1 owns frames 0..=8 (frame 1 is its L4, held as a live root), domain 2
    /// owns frame 9.
    fn table(storage: &mut [FrameInfo]) -> FrameTable<'_> {
        let mut table = FrameTable::new(storage);
        table.add_ram(Mfn(0), Mfn(16));
        let scratch = FakeMem::new(16);
        for _ in 0..9 {
            table.alloc(Owner::Domain(1), &scratch).unwrap();
        }
        table.alloc(Owner::Domain(2), &scratch).unwrap();
        table.assume_live_root(Mfn(1));
        table
    }

    /// Maps `va` -> frame `leaf` through L3/L2/L1 in frames 2/3/4.
    fn map(mem: &FakeMem, va: u64, leaf: u64, flags: u64, leaf_flags: u64) {
        for (table, level, next) in [(1u64, 4, 2u64), (2, 3, 3), (3, 2, 4)] {
            mem.write_u64(
                table * 4096 + mm::table_index(va, level) as u64 * 8,
                (next * 4096) | flags,
            );
        }
        mem.write_u64(
            4 * 4096 + mm::table_index(va, 1) as u64 * 8,
            (leaf * 4096) | leaf_flags,
        );
    }

    #[test]
    fn reads_and_writes_across_pages() {
        let mem = FakeMem::new(16);
        map(&mem, 0x40_0000, 5, ALL, ALL);
        map(&mem, 0x40_1000, 6, ALL, ALL);
        let mut storage = vec![FrameInfo::default(); 16];
        let frames = table(&mut storage);
        let guest = GuestMem::new(&mem, &frames, 1, Mfn(1));
        guest.write(0x40_0ffc, b"abcdefgh").unwrap();
        let mut back = [0u8; 8];
        guest.read(0x40_0ffc, &mut back).unwrap();
        assert_eq!(&back, b"abcdefgh");
        let mut split = [0u8; 4];
        mem.read(6 * 4096, &mut split);
        assert_eq!(
            &split, b"efgh",
            "the second half landed in the second frame"
        );
        let value: u64 = guest.read_obj(0x40_0ffc).unwrap();
        assert_eq!(value, u64::from_le_bytes(*b"abcdefgh"));
    }

    #[test]
    fn refuses_what_the_guest_may_not_touch() {
        let mem = FakeMem::new(16);
        let mut storage = vec![FrameInfo::default(); 16];
        let frames = table(&mut storage);
        let guest = GuestMem::new(&mem, &frames, 1, Mfn(1));
        map(&mem, 0x40_0000, 5, ALL, pte::PRESENT | pte::USER);
        assert!(guest.translate(0x40_0000, false).is_ok());
        assert_eq!(
            guest.translate(0x40_0000, true),
            Err(Errno::EFAULT),
            "read-only page"
        );
        assert_eq!(
            guest.translate(0x40_1000, false),
            Err(Errno::EFAULT),
            "not present"
        );
        assert_eq!(
            guest.translate(0x8000_0000_0000, false),
            Err(Errno::EFAULT),
            "non-canonical"
        );
        map(&mem, 0x40_2000, 5, pte::PRESENT | pte::WRITABLE, ALL);
        assert_eq!(
            guest.translate(0x40_2000, false),
            Err(Errno::EFAULT),
            "supervisor table"
        );
        map(&mem, 0x40_3000, 9, ALL, ALL);
        assert_eq!(
            guest.translate(0x40_3000, false),
            Err(Errno::EFAULT),
            "another domain's frame"
        );
        map(&mem, 0x40_4000, 12, ALL, ALL);
        assert_eq!(
            guest.translate(0x40_4000, false),
            Err(Errno::EFAULT),
            "a free frame"
        );
        map(&mem, 0x40_5000, 5, ALL, ALL | pte::PAGE_SIZE);
        assert!(
            guest.translate(0x40_5000, false).is_ok(),
            "PAT bit on an L1 entry is fine"
        );
        mem.write_u64(
            3 * 4096 + mm::table_index(0x40_5000, 2) as u64 * 8,
            (5 * 4096) | ALL | pte::PAGE_SIZE,
        );
        assert_eq!(
            guest.translate(0x40_5000, false),
            Err(Errno::EFAULT),
            "superpage"
        );
        let other = GuestMem::new(&mem, &frames, 1, Mfn(9));
        assert_eq!(
            other.translate(0x40_0000, false),
            Err(Errno::EFAULT),
            "foreign root"
        );
    }

    /// Only a live root is walked (found by review: a root a batch had dropped, then
    /// rewritten by the guest as a plain page, led the walk into its live page tables):
    /// a root that is untyped, typed otherwise or no longer referenced is refused, by a
    /// new walk and by the remembered one alike.
    #[test]
    fn only_a_live_root_is_walked() {
        let mem = FakeMem::new(16);
        map(&mem, 0x40_0000, 5, ALL, ALL);
        let mut storage = vec![FrameInfo::default(); 16];
        let frames = table(&mut storage);
        let memo = WalkMemo::default();
        let guest = GuestMem::with_memo(&mem, &frames, 1, Mfn(1), &memo);
        assert_eq!(guest.translate(0x40_0000, true), Ok(5 * 4096));
        let live = frames.info(Mfn(1));
        let dropped = FrameInfo {
            type_count: 0,
            validated: false,
            ..live
        };
        let writable = FrameInfo {
            page_type: crate::frames::PageType::Writable,
            ..dropped
        };
        for info in [dropped, writable, FrameInfo::owned_by(Owner::Domain(1))] {
            frames.set_info(Mfn(1), info);
            assert_eq!(
                guest.translate(0x40_0000, true),
                Err(Errno::EFAULT),
                "{info:?}"
            );
            let fresh = GuestMem::new(&mem, &frames, 1, Mfn(1));
            assert_eq!(
                fresh.translate(0x40_0000, false),
                Err(Errno::EFAULT),
                "{info:?}"
            );
        }
        frames.set_info(Mfn(1), live);
        assert_eq!(guest.translate(0x40_0000, true), Ok(5 * 4096));
    }

    /// The remembered walk answers exactly what a new walk would after the paging code
    /// changes the tables or the page's owner changes.
    #[test]
    fn the_last_walk_is_never_stale() {
        let mem = FakeMem::new(16);
        map(&mem, 0x40_0000, 5, ALL, ALL);
        let mut storage = vec![FrameInfo::default(); 16];
        let frames = table(&mut storage);
        let memo = WalkMemo::new();
        let guest = GuestMem::with_memo(&mem, &frames, 1, Mfn(1), &memo);
        assert_eq!(guest.translate(0x40_0010, true), Ok(5 * 4096 + 0x10));
        assert_eq!(guest.translate(0x40_0020, true), Ok(5 * 4096 + 0x20));
        map(&mem, 0x40_0000, 6, ALL, ALL);
        frames.note_table_write(); // as the paging code does after a write
        assert_eq!(
            guest.translate(0x40_0010, true),
            Ok(6 * 4096 + 0x10),
            "remapped"
        );
        map(&mem, 0x40_0000, 6, ALL, pte::PRESENT | pte::USER);
        frames.note_table_write(); // as the paging code does after a write
        assert_eq!(guest.translate(0x40_0010, false), Ok(6 * 4096 + 0x10));
        assert_eq!(
            guest.translate(0x40_0010, true),
            Err(Errno::EFAULT),
            "made read-only"
        );
        map(&mem, 0x40_0000, 6, pte::PRESENT | pte::USER, ALL);
        frames.note_table_write(); // as the paging code does after a write
        assert_eq!(guest.translate(0x40_0010, false), Ok(6 * 4096 + 0x10));
        assert_eq!(
            guest.translate(0x40_0010, true),
            Err(Errno::EFAULT),
            "an upper level made read-only"
        );
        map(&mem, 0x40_0000, 6, ALL, ALL);
        frames.note_table_write(); // as the paging code does after a write
        assert_eq!(guest.translate(0x40_0010, true), Ok(6 * 4096 + 0x10));
        // Another accessor over the same memo: another root or domain never uses it.
        let foreign = GuestMem::with_memo(&mem, &frames, 2, Mfn(1), &memo);
        assert_eq!(
            foreign.translate(0x40_0010, false),
            Err(Errno::EFAULT),
            "domain 2 does not own domain 1's tables"
        );
        let other_root = GuestMem::with_memo(&mem, &frames, 1, Mfn(9), &memo);
        assert_eq!(
            other_root.translate(0x40_0010, false),
            Err(Errno::EFAULT),
            "another root is walked"
        );
        assert_eq!(guest.translate(0x40_0010, true), Ok(6 * 4096 + 0x10));
        assert!(frames.free(Mfn(6), Owner::Domain(1)));
        assert_eq!(
            guest.translate(0x40_0010, false),
            Err(Errno::EFAULT),
            "the page left the domain"
        );
    }

    #[test]
    fn a_failed_copy_changes_nothing() {
        let mem = FakeMem::new(16);
        map(&mem, 0x40_0000, 5, ALL, ALL);
        let mut storage = vec![FrameInfo::default(); 16];
        let frames = table(&mut storage);
        let guest = GuestMem::new(&mem, &frames, 1, Mfn(1));
        assert_eq!(guest.write(0x40_0ff0, &[0xaa; 32]), Err(Errno::EFAULT));
        assert_eq!(mem.read_u64(5 * 4096 + 0xff0), 0);
        assert_eq!(
            guest.read(0x40_0000, &mut vec![0; MAX_COPY + 1]),
            Err(Errno::EFAULT)
        );
        assert_eq!(guest.read(u64::MAX - 3, &mut [0; 8]), Err(Errno::EFAULT));
    }

    #[test]
    fn the_mmu_may_copy_only_guest_ranges() {
        assert!(mmu_may_copy(0, 8));
        assert!(mmu_may_copy((1 << 47) - 8, 8));
        assert!(
            !mmu_may_copy((1 << 47) - 8, 9),
            "runs into the canonical hole"
        );
        assert!(!mmu_may_copy(1 << 47, 1));
        assert!(
            !mmu_may_copy(0xffff_8000_0000_0000, 8),
            "the hypervisor's slots"
        );
        assert!(
            !mmu_may_copy(0xffff_87ff_ffff_fff8, 8),
            "the last hypervisor slot"
        );
        assert!(mmu_may_copy(0xffff_8800_0000_0000, 8));
        assert!(mmu_may_copy(u64::MAX - 7, 8));
        assert!(!mmu_may_copy(u64::MAX - 7, 9), "wraps around");
    }

    /// The bounds on `va` alone agree with the plain statement (every byte from `va` to
    /// `va + len - 1` below the hole or above the hypervisor's slots, without wrapping)
    /// around every edge, for every length up to two pages.
    #[test]
    fn mmu_may_copy_agrees_with_its_definition() {
        let plain = |va: u64, len: usize| match va.checked_add((len as u64).saturating_sub(1)) {
            Some(last) => last < LOWER_HALF_END || va >= GUEST_UPPER_START,
            None => false,
        };
        let edges = [0, LOWER_HALF_END, GUEST_UPPER_START, u64::MAX];
        for edge in edges {
            for delta in 0..=2 * PAGE_SIZE + 2 {
                for va in [edge.wrapping_sub(delta), edge.wrapping_add(delta)] {
                    for len in [0, 1, 2, 4, 7, 8, 16, 24, 4096, 8192] {
                        assert_eq!(mmu_may_copy(va, len), plain(va, len), "{va:#x} + {len}");
                    }
                }
            }
        }
    }

    /// Memory whose "MMU" has `loaded` in CR3: records what it was asked to copy and
    /// answers with `fault`.
    struct MmuMem {
        inner: FakeMem,
        loaded: Mfn,
        fault: Cell<bool>,
        asked: std::cell::RefCell<Vec<(u64, usize)>>,
    }

    impl PhysMem for MmuMem {
        fn read(&self, addr: u64, buf: &mut [u8]) {
            self.inner.read(addr, buf);
        }
        fn write(&self, addr: u64, data: &[u8]) {
            self.inner.write(addr, data);
        }
        unsafe fn read_virtual(
            &self,
            root: Mfn,
            va: u64,
            dst: *mut u8,
            len: usize,
        ) -> Option<bool> {
            if root != self.loaded {
                return None;
            }
            self.asked.borrow_mut().push((va, len));
            // SAFETY: the caller promises `dst` is writable for `len` bytes.
            unsafe { dst.write_bytes(0x5a, len) };
            Some(!self.fault.get())
        }
        fn write_virtual(&self, root: Mfn, va: u64, data: &[u8]) -> Option<bool> {
            if root != self.loaded {
                return None;
            }
            self.asked.borrow_mut().push((va, data.len()));
            Some(!self.fault.get())
        }
    }

    #[test]
    fn the_loaded_root_is_copied_by_the_mmu_and_the_rest_walked() {
        let mem = MmuMem {
            inner: FakeMem::new(16),
            loaded: Mfn(1),
            fault: Cell::new(false),
            asked: Default::default(),
        };
        map(&mem.inner, 0x40_0000, 5, ALL, ALL);
        map(&mem.inner, 0x40_1000, 6, ALL, ALL);
        mem.inner.write_u64(5 * 4096, 7);
        let mut storage = vec![FrameInfo::default(); 16];
        let frames = table(&mut storage);
        let guest = GuestMem::new(&mem, &frames, 1, Mfn(1));
        // The loaded root, a guest range: the MMU copies (and its fault is EFAULT).
        assert_eq!(guest.read_obj::<u64>(0x40_0000), Ok(0x5a5a_5a5a_5a5a_5a5a));
        assert_eq!(guest.write_obj(0x40_0000, &1u64), Ok(()));
        mem.fault.set(true);
        assert_eq!(guest.read_obj::<u64>(0x40_0000), Err(Errno::EFAULT));
        assert_eq!(guest.write_obj(0x40_0000, &1u64), Err(Errno::EFAULT));
        assert_eq!(mem.asked.borrow().len(), 4);
        mem.fault.set(false);
        // Never the hypervisor's range, never a write across pages, never another root:
        // those are walked in software.
        mem.asked.borrow_mut().clear();
        assert_eq!(
            guest.read_obj::<u64>(0xffff_8300_0000_0000),
            Err(Errno::EFAULT)
        );
        guest.write(0x40_0ffc, b"abcdefgh").unwrap();
        assert_eq!(
            mem.inner.read_u64(6 * 4096) as u32,
            u32::from_le_bytes(*b"efgh")
        );
        let other = guest.for_root(Mfn(2));
        assert_eq!(other.read_obj::<u64>(0x40_0000), Err(Errno::EFAULT));
        assert!(mem.asked.borrow().is_empty(), "{:?}", mem.asked.borrow());
        assert_eq!(
            mem.inner.read_u64(5 * 4096),
            7,
            "the MMU's writes are its own"
        );
    }
}
