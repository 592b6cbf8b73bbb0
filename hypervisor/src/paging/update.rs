//! Changing one page-table entry: the heart of `mmu_update`, `update_va_mapping` and the
//! writable-page-table emulation, which all validate exactly the same way.
//!
//! An update takes the references the new entry needs *before* it writes it, and drops the
//! old entry's references only after: an entry rewritten with the same target never lets
//! that target's count touch zero on the way.

use super::{Mmu, Paging, entry};
use crate::domain::Domain;
use crate::frames::{FrameTable, Owner, PageType};
use crate::mm::{self, Mfn, PAGE_SIZE, PhysMem, pte};
use pv_abi::errno::Errno;
use pv_abi::xen::VMASST_TYPE_WRITABLE_PAGETABLES;

/// The accessed and dirty bits MMU_PT_UPDATE_PRESERVE_AD keeps from the old entry.
const ACCESSED_DIRTY: u64 = pte::ACCESSED | pte::DIRTY;

impl<M: PhysMem, U: Mmu + ?Sized> Paging<'_, M, U> {
    /// Sets entry `index` of `table`, a validated level-`level` table of the domain, to
    /// `new` (Xen's `mod_l?_entry`). With `preserve_ad`, the accessed and dirty bits of
    /// the old entry are kept. Errors leave the entry and every count unchanged.
    #[inline(always)]
    pub fn update_entry(
        &mut self,
        table: Mfn,
        level: u32,
        index: usize,
        new: u64,
        preserve_ad: bool,
    ) -> Result<(), Errno> {
        if !entry::is_guest_slot(level, index) || index >= mm::ENTRIES_PER_TABLE {
            return Err(Errno::EINVAL);
        }
        let at = table.addr() + index as u64 * 8;
        let old = self.mem.read_u64(at);
        let mut stored = new;
        if entry::is_present(new) {
            entry::check_against(new, self.rejected(level))?;
            stored = entry::adjust(level, new);
            self.get_entry_refs(level, stored)?;
        }
        if preserve_ad {
            stored |= old & ACCESSED_DIRTY;
        }
        self.mem.write_u64(at, stored);
        self.frames.note_table_write();
        // No flush, at any level: cached translations of the old entry (its subtree's,
        // for L2..L4) are the guest's to flush, as on Xen and on hardware. They can only
        // reach the guest's own frames in the use they had when cached: a frame is
        // flushed for before it takes another type (`get_page_type`) and before it
        // leaves the domain (`release`, teardown).
        self.put_entry_refs(level, old);
        Ok(())
    }

    /// The `MMU_NORMAL_PT_UPDATE` / `MMU_PT_UPDATE_PRESERVE_AD` request: write `new` at
    /// machine address `pte_addr` (8-byte aligned) in a frame the domain owns. In a
    /// validated page table the entry is validated for its level; in any other frame that
    /// can take the writable type the value is simply stored. `EINVAL` otherwise.
    ///
    /// The commonest case, an entry of a live L1 table, is inlined into the caller (the
    /// hypercall's light path, the batch loop); every other one is `write_pte_other`.
    #[inline(always)]
    pub fn write_pte(&mut self, pte_addr: u64, new: u64, preserve_ad: bool) -> Result<(), Errno> {
        let frame = Mfn::containing(pte_addr);
        let index = ((pte_addr % PAGE_SIZE) / 8) as usize;
        if self.live_l1.get() == frame || self.live_table_level(frame) == Some(1) {
            self.live_l1.set(frame);
            return self.update_entry(frame, 1, index, new, preserve_ad);
        }
        self.write_pte_other(frame, pte_addr, new, preserve_ad)
    }

    /// The level of `frame` if it is a live page table of the domain (owned, typed as a
    /// table with a type reference, validated): the tables whose entries `write_pte`
    /// validates.
    #[inline(always)]
    fn live_table_level(&self, frame: Mfn) -> Option<u32> {
        let info = self.frames.info(frame);
        if info.owner != Owner::Domain(self.domain) || info.type_count == 0 || !info.validated {
            return None;
        }
        info.page_type.table_level()
    }

    /// [`write_pte`](Self::write_pte) into anything but a live L1 table: an entry of a
    /// live L2..L4 table, or a plain store into a frame that can take the writable type.
    #[inline(never)]
    fn write_pte_other(
        &mut self,
        frame: Mfn,
        pte_addr: u64,
        new: u64,
        preserve_ad: bool,
    ) -> Result<(), Errno> {
        let index = ((pte_addr % PAGE_SIZE) / 8) as usize;
        if self.frames.info(frame).owner != Owner::Domain(self.domain) {
            return Err(Errno::EINVAL);
        }
        if let Some(level) = self.live_table_level(frame) {
            return self.update_entry(frame, level, index, new, preserve_ad);
        }
        self.get_page_and_type(frame, PageType::Writable)
            .map_err(|_| Errno::EINVAL)?;
        self.mem.write_u64(pte_addr & !7, new);
        self.frames.note_table_write();
        self.put_page_and_type(frame);
        Ok(())
    }

    /// Walks the domain's tables from `root`, which must be a live L4 table of the
    /// domain, to the L1 table mapping `va`; returns it and the entry's index (Xen's
    /// `map_guest_l1e`). `EINVAL` for addresses in the hypervisor's range, non-canonical
    /// addresses, a root that is not a live L4, and missing tables.
    ///
    /// Below a live root only presence is checked, as in Xen: every present entry of a
    /// validated table holds a type reference on a validated table of the next level that
    /// the domain owns (superpages are refused when a table is validated), so the walk
    /// can only reach the domain's live tables. Debug builds (the host tests) assert it
    /// at every level.
    #[inline]
    pub fn l1_slot_for(&self, root: Mfn, va: u64) -> Result<(Mfn, usize), Errno> {
        let l4_index = mm::table_index(va, 4);
        if !mm::is_canonical(va)
            || !entry::is_guest_slot(4, l4_index)
            || self.live_table_level(root) != Some(4)
        {
            return Err(Errno::EINVAL);
        }
        let mut table = root;
        for level in (2..=4).rev() {
            let value = self
                .mem
                .read_u64(table.addr() + mm::table_index(va, level) as u64 * 8);
            if !entry::is_present(value) || value & pte::PAGE_SIZE != 0 {
                return Err(Errno::EINVAL);
            }
            table = entry::target(value);
            debug_assert_eq!(
                self.live_table_level(table),
                Some(level - 1),
                "a validated table's entry reaches a live table"
            );
        }
        Ok((table, mm::table_index(va, 1)))
    }
}

/// A guest store into one of its own read-only page tables, as the trap path decoded it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PteWrite {
    /// The linear address written (CR2 of the write fault).
    pub va: u64,
    /// The value stored (the low `width` bytes count).
    pub value: u64,
    /// Bytes stored: 4 or 8, naturally aligned.
    pub width: u8,
}

/// Emulates a guest kernel's store into one of its L1 page tables (the writable
/// page-table assist): the store is validated exactly as `mmu_update` validates an entry
/// and, if valid, applied. The trap path calls this for a write fault in guest kernel
/// mode on a present, read-only mapping; on `Err` it delivers the page fault to the guest
/// instead.
///
/// Errors: those of [`check_pt_write`] (the store is not one the assist takes), or
/// the errno validation gave (`EBUSY`, `EPERM`, `EINVAL`).
/// Only L1 tables are emulated, as in Xen: stores into L2..L4 tables fault to the guest.
pub fn emulate_pt_write<M: PhysMem>(
    domain: &Domain,
    mem: &M,
    frames: &FrameTable<'_>,
    mmu: &mut dyn Mmu,
    write: PteWrite,
) -> Result<(), Errno> {
    let mut paging = Paging::new(mem, frames, domain.id, mmu);
    let (table, offset) = assisted_l1(&paging, domain, write.va, write.width)?;
    let index = (offset / 8) as usize;
    let new = if write.width == 8 {
        write.value
    } else {
        let old = mem.read_u64(table.addr() + offset - offset % 8);
        let half = write.value & 0xffff_ffff;
        if offset % 8 == 4 {
            (old & 0xffff_ffff) | (half << 32)
        } else {
            (old & !0xffff_ffff) | half
        }
    };
    paging.update_entry(table, 1, index, new, false)
}

/// Whether a store of `width` bytes at `va` is one the writable page-table assist
/// takes, without making it: what [`emulate_pt_write`] checks before it validates the
/// new entry. The trap path asks this for a `cmpxchg` whose comparison fails, which
/// stores nothing but is still a write the CPU faults on: emulated only where a store
/// would be.
///
/// Errors: `EPERM` without `VMASST_TYPE_writable_pagetables`; `EINVAL` for a bad width or
/// alignment, or if `va` is not mapped (through the kernel root) to a validated L1 table
/// of the domain.
pub fn check_pt_write<M: PhysMem>(
    domain: &Domain,
    mem: &M,
    frames: &FrameTable<'_>,
    mmu: &mut dyn Mmu,
    va: u64,
    width: u8,
) -> Result<(), Errno> {
    let paging = Paging::new(mem, frames, domain.id, mmu);
    assisted_l1(&paging, domain, va, width).map(|_| ())
}

/// The validated L1 table of the domain that a store of `width` bytes at `va` writes
/// into, and the store's byte offset in it: the checks of [`check_pt_write`]. Inlined
/// into both callers, so that the store path costs what it did before it was shared.
#[inline(always)]
fn assisted_l1<M: PhysMem>(
    paging: &Paging<'_, M, dyn Mmu + '_>,
    domain: &Domain,
    va: u64,
    width: u8,
) -> Result<(Mfn, u64), Errno> {
    if domain.vm_assist & (1 << VMASST_TYPE_WRITABLE_PAGETABLES) == 0 {
        return Err(Errno::EPERM);
    }
    let width = u64::from(width);
    if !matches!(width, 4 | 8) || !va.is_multiple_of(width) {
        return Err(Errno::EINVAL);
    }
    // The table written is the frame `va` maps; find the leaf entry that maps it.
    let (leaf_table, leaf_index) = paging.l1_slot_for(domain.vcpu.kernel_root, va)?;
    let leaf = paging
        .mem
        .read_u64(leaf_table.addr() + leaf_index as u64 * 8);
    if !entry::is_present(leaf) {
        return Err(Errno::EINVAL);
    }
    let table = entry::target(leaf);
    let info = paging.frames.info(table);
    if info.owner != Owner::Domain(domain.id)
        || info.page_type != PageType::L1Table
        || info.type_count == 0
        || !info.validated
    {
        return Err(Errno::EINVAL);
    }
    Ok((table, va % PAGE_SIZE))
}
