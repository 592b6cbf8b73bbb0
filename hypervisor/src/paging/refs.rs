//! The type and reference-count engine: Xen's `get_page`/`put_page`,
//! `get_page_type`/`put_page_type`, and the recursive validation of page tables.
//!
//! Rules (each is tested in `paging::tests`):
//! - a general reference can be taken only on a frame the domain owns;
//! - a type reference is taken together with a general one; with a zero type count the
//!   type may change (flushing the TLB if the frame had another use before, since stale
//!   entries may still map it), and a page-table type is then validated: every present
//!   entry is checked and takes its own reference on the frame it names;
//! - with a non-zero type count only the same type can be taken (`EINVAL` otherwise);
//! - when the last type reference of a page table goes, every reference its entries hold
//!   is released (recursively), and the table must be validated again before reuse;
//! - no count ever wraps: a count at its maximum refuses another reference.
//!
//! Validation is not preemptible: one validation visits each frame of the domain at most
//! once per type acquisition, so its cost is bounded by the domain's size.

use super::{Mmu, Paging, entry};
use crate::frames::{FrameInfo, Owner, PageType};
use crate::mm::{ENTRIES_PER_TABLE, Mfn, PhysMem};
use pv_abi::errno::Errno;

/// The largest type or general count (a further reference is refused).
pub const MAX_COUNT: u32 = u32::MAX;

/// A count after dropping one reference. Dropping a reference that was never taken is an
/// accounting bug; in a release build the count then wraps to [`MAX_COUNT`], which fails
/// closed: the frame refuses every further reference and never loses its type or owner
/// (a count held at zero instead would let it be retyped or freed while still mapped).
/// Without the saturation, a drop is one instruction.
#[inline(always)]
fn dropped(count: u32) -> u32 {
    debug_assert!(count > 0, "reference count underflow");
    count.wrapping_sub(1)
}

impl<M: PhysMem, U: Mmu + ?Sized> Paging<'_, M, U> {
    #[inline]
    fn info(&self, mfn: Mfn) -> FrameInfo {
        self.frames.info(mfn)
    }

    /// Whether `mfn` belongs to the domain.
    #[inline]
    pub fn owns(&self, mfn: Mfn) -> bool {
        self.info(mfn).owner == Owner::Domain(self.domain)
    }

    /// Takes a general reference on a frame the domain owns (`EINVAL` if it does not, or
    /// if the count is at its maximum).
    pub fn get_page(&mut self, mfn: Mfn) -> Result<(), Errno> {
        let info = self.info(mfn);
        if info.owner != Owner::Domain(self.domain) || info.ref_count == MAX_COUNT {
            return Err(Errno::EINVAL);
        }
        self.frames
            .set_counts(mfn, info.type_count, info.ref_count + 1);
        Ok(())
    }

    /// Drops a general reference (stamping the frame: see `FrameInfo::stamp`).
    #[inline]
    pub fn put_page(&mut self, mfn: Mfn) {
        let info = self.info(mfn);
        debug_assert!(info.ref_count > 0, "general count underflow on {mfn:?}");
        self.frames
            .drop_counts(mfn, info.type_count, dropped(info.ref_count));
    }

    /// Takes a reference of type `wanted` on `mfn`, on which the caller holds a general
    /// reference. See the module rules.
    pub fn get_page_type(&mut self, mfn: Mfn, wanted: PageType) -> Result<(), Errno> {
        let mut info = self.info(mfn);
        debug_assert_eq!(info.owner, Owner::Domain(self.domain));
        if info.type_count == MAX_COUNT {
            return Err(Errno::EINVAL);
        }
        if info.type_count > 0 {
            // Only the same, fully validated type stacks.
            if info.page_type != wanted || !info.validated {
                return Err(Errno::EINVAL);
            }
            info.type_count += 1;
            self.frames.set_info(mfn, info);
            return Ok(());
        }
        if info.page_type != wanted {
            if info.stamp == self.frames.tlb_clock() {
                // Stale TLB entries may still reach the frame in its old use (writable
                // mappings of a future page table, or cached paging structures of a
                // former one): they must go before the new use is checked. Unless a
                // full flush came after the frame's last use in it (the TLB clock; a
                // fresh frame is stamped as if one had, and a frame a failed validation
                // left untyped keeps the stamp of that drop).
                self.flush_all();
            }
            info.page_type = wanted;
            // A writable page needs no validation; a table does.
            info.validated = wanted == PageType::Writable;
        }
        info.type_count = 1;
        self.frames.set_info(mfn, info);
        if info.validated {
            return Ok(());
        }
        let result = match wanted {
            PageType::Writable => Ok(()),
            PageType::L1Table | PageType::L2Table | PageType::L3Table | PageType::L4Table => {
                self.validate_table(mfn, wanted.table_level().unwrap_or(1))
            }
            // Descriptor pages are checked by the descriptor-table code, which does not
            // exist yet; nothing may take this type before it does.
            PageType::SegmentDescriptors | PageType::None => Err(Errno::EINVAL),
        };
        let mut info = self.info(mfn);
        match result {
            Ok(()) => info.validated = true,
            Err(_) => {
                info.type_count = 0;
                info.page_type = PageType::None;
                info.validated = false;
            }
        }
        self.frames.set_info(mfn, info);
        result
    }

    /// Drops a type reference; the last one of a validated page table releases the
    /// references its entries hold.
    pub fn put_page_type(&mut self, mfn: Mfn) {
        // The frame may be (or contain the references of) the remembered live L1.
        self.forget_live_l1();
        let mut info = self.info(mfn);
        debug_assert!(info.type_count > 0, "type count underflow on {mfn:?}");
        if info.type_count == 0 {
            return;
        }
        info.type_count -= 1;
        let level = info.page_type.table_level();
        let devalidate = info.type_count == 0 && info.validated && level.is_some();
        if devalidate {
            info.validated = false;
        }
        self.frames.set_info(mfn, info);
        if let (true, Some(level)) = (devalidate, level) {
            self.devalidate_table(mfn, level);
        }
    }

    /// A general and a type reference together; nothing is kept on failure.
    pub fn get_page_and_type(&mut self, mfn: Mfn, wanted: PageType) -> Result<(), Errno> {
        self.get_page(mfn)?;
        self.get_page_type(mfn, wanted)
            .inspect_err(|_| self.put_page(mfn))
    }

    /// Drops a type and a general reference.
    pub fn put_page_and_type(&mut self, mfn: Mfn) {
        self.put_page_type(mfn);
        self.put_page(mfn);
    }

    /// Takes the references a present, checked entry at `level` holds (Xen's
    /// `get_page_from_l?e`). Level 1: a general reference, plus the writable type for a
    /// writable mapping; `EPERM` for a frame that is not RAM (MMIO is not for guests),
    /// `EBUSY` for anyone else's frame or a frame that cannot be writable. Levels 2..4: a
    /// reference of the next level's page-table type (`EINVAL`, or whatever validating
    /// that table reported).
    #[inline(always)]
    pub fn get_entry_refs(&mut self, level: u32, entry: u64) -> Result<(), Errno> {
        let target = entry::target(entry);
        if level > 1 {
            return self.get_page_and_type(target, PageType::table(level - 1));
        }
        let mut info = self.info(target);
        match info.owner {
            Owner::Domain(owner) if owner == self.domain => {}
            Owner::Unusable => return Err(Errno::EPERM),
            _ => return Err(Errno::EBUSY),
        }
        // get_page, on the bookkeeping just read.
        if info.ref_count == MAX_COUNT {
            return Err(Errno::EBUSY);
        }
        info.ref_count += 1;
        if entry::is_writable(entry)
            && info.page_type == PageType::Writable
            && info.validated
            && info.type_count > 0
            && info.type_count < MAX_COUNT
        {
            // The common case, a page mapped writable again: get_page_type stacks on the
            // same type, so both counts go up in one update.
            self.frames
                .set_counts(target, info.type_count + 1, info.ref_count);
            return Ok(());
        }
        self.frames
            .set_counts(target, info.type_count, info.ref_count);
        if entry::is_writable(entry) && self.get_page_type(target, PageType::Writable).is_err() {
            self.put_page(target);
            return Err(Errno::EBUSY);
        }
        Ok(())
    }

    /// Releases what [`get_entry_refs`](Self::get_entry_refs) took for `entry` (nothing
    /// for a non-present entry). Always inlined: `update_entry`'s every caller is a hot
    /// path, and the call would cost more than the level-1 work it does.
    #[inline(always)]
    pub fn put_entry_refs(&mut self, level: u32, entry: u64) {
        if !entry::is_present(entry) {
            return;
        }
        let target = entry::target(entry);
        if level > 1 {
            self.put_page_and_type(target);
        } else if entry::is_writable(entry) {
            // put_page_and_type of a writable page in one update (no table to devalidate).
            let info = self.info(target);
            debug_assert!(info.type_count > 0 && info.ref_count > 0);
            debug_assert_eq!(info.page_type, PageType::Writable);
            self.frames
                .drop_counts(target, dropped(info.type_count), dropped(info.ref_count));
        } else {
            self.put_page(target);
        }
    }

    fn entry_addr(table: Mfn, index: usize) -> u64 {
        table.addr() + index as u64 * 8
    }

    /// Checks every present guest entry of `table` as a level-`level` table and takes its
    /// references; on failure releases those already taken.
    fn validate_table(&mut self, table: Mfn, level: u32) -> Result<(), Errno> {
        let rejected = self.rejected(level);
        for index in 0..ENTRIES_PER_TABLE {
            if !entry::is_guest_slot(level, index) {
                continue;
            }
            let at = Self::entry_addr(table, index);
            let value = self.mem.read_u64(at);
            if !entry::is_present(value) {
                continue;
            }
            let adjusted = entry::adjust(level, value);
            let taken = entry::check_against(value, rejected)
                .and_then(|()| self.get_entry_refs(level, adjusted));
            if let Err(errno) = taken {
                for undo in (0..index).filter(|&i| entry::is_guest_slot(level, i)) {
                    let value = self.mem.read_u64(Self::entry_addr(table, undo));
                    self.put_entry_refs(level, value);
                }
                return Err(errno);
            }
            if adjusted != value {
                self.mem.write_u64(at, adjusted);
            }
        }
        if level == 4 {
            self.install_hypervisor_slots(table);
        }
        Ok(())
    }

    /// Writes the hypervisor's L4 entries into a root, clearing whatever the guest left in
    /// the other reserved slots.
    fn install_hypervisor_slots(&mut self, root: Mfn) {
        for slot in entry::HYPERVISOR_L4_SLOTS {
            self.mem.write_u64(Self::entry_addr(root, slot), 0);
        }
        for &(slot, value) in self.mmu.hypervisor_l4() {
            if entry::HYPERVISOR_L4_SLOTS.contains(&slot) {
                self.mem.write_u64(Self::entry_addr(root, slot), value);
            }
        }
    }

    /// Releases the references of every guest entry of a table whose type went away.
    fn devalidate_table(&mut self, table: Mfn, level: u32) {
        for index in 0..ENTRIES_PER_TABLE {
            if entry::is_guest_slot(level, index) {
                let value = self.mem.read_u64(Self::entry_addr(table, index));
                self.put_entry_refs(level, value);
            }
        }
    }
}
