//! Direct paging, Xen's way: a PV guest builds its own page tables out of machine frame
//! numbers, and the hypervisor lets the MMU use them only after checking every entry.
//!
//! The safety model (see `docs/memory.md`):
//! - every frame has one [`PageType`](crate::frames::PageType) at a time, with a type count and a general reference
//!   count ([`crate::frames::FrameInfo`]);
//! - a frame becomes a page table of level N only by validating every present entry, which
//!   takes a reference of type L(N-1) (or, at level 1, a writable-type or general
//!   reference) on the frame it names; when the last type reference goes, those
//!   references are released again, recursively;
//! - a page table is never mapped writable: a writable L1 entry needs the `Writable` type
//!   on its target, which a page-table frame cannot take, and a frame with writable
//!   mappings cannot become a page table;
//! - only frames the domain owns can be referenced at all, and the hypervisor's L4 slots
//!   are never the guest's to write.
//!
//! The modules: [`entry`] (what each level's entries may hold), [`refs`] (the type and
//! reference-count engine), [`update`] (changing one entry, as mmu_update and the
//! writable-page-table emulation do), [`roots`] (pinning, base pointers, page clearing and
//! copying) and [`reservation`] (giving frames back).

pub mod entry;
pub mod refs;
pub mod reservation;
pub mod roots;
pub mod update;

#[cfg(test)]
pub(crate) mod audit;
#[cfg(test)]
mod model_test;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

use crate::frames::{DomId, FrameTable};
use crate::mm::{Mfn, PhysMem};
use core::cell::Cell;

pub use update::{PteWrite, check_pt_write, emulate_pt_write};

/// What the paging code needs from the CPU it runs on: TLB and CR3 effects, and the
/// machine facts that bound a valid entry. The binary implements it with `invlpg`,
/// `mov cr3` and CPUID; host tests record the calls.
pub trait Mmu {
    /// Flushes every TLB entry, global ones included, everywhere the domain may run.
    /// Returns whether it dropped what the CPU has cached (the machine's, and the host
    /// tests' recorder, which stands for it): only then is it counted on the TLB clock
    /// ([`FrameTable::tlb_clock`]). A stand-in that does nothing (the domain builder's)
    /// says no, so that typing frames for a domain never counts a flush nobody made.
    fn flush_all(&mut self) -> bool;
    /// Flushes the TLB entries for guest virtual address `va`.
    fn flush_va(&mut self, va: u64);
    /// Loads `root` as the running vCPU's top-level page table (`mov cr3`, which drops
    /// the guest's translations: they are never global). Returns whether it did, as
    /// [`flush_all`](Mmu::flush_all).
    fn load_root(&mut self, root: Mfn) -> bool;
    /// The L4 slots (index, entry) the hypervisor installs in every guest root.
    fn hypervisor_l4(&self) -> &[(usize, u64)];
    /// The entry address bits beyond the physical address width the machine implements
    /// (CPUID 0x80000008 EAX bits 7..0): [`entry::undecodable_bits`] of that width.
    fn undecodable_bits(&self) -> u64;
}

/// `Paging::live_l1` when no table is remembered: no frame has this number (frame numbers
/// have at most 40 bits).
const NO_LIVE_L1: Mfn = Mfn(u64::MAX);

/// The paging engine's view of one domain: machine memory, the frame table, and the CPU.
pub struct Paging<'a, M: PhysMem, U: Mmu + ?Sized = dyn Mmu> {
    /// Machine memory.
    pub mem: &'a M,
    /// The frame table.
    pub frames: &'a FrameTable<'a>,
    /// The domain whose tables are being changed.
    pub domain: DomId,
    /// TLB and CR3 effects.
    pub mmu: &'a mut U,
    /// The last frame `write_pte` found to be a live L1 table of the domain (owned,
    /// typed L1 with a type reference, validated), so that a batch writing one table
    /// looks its record up once. Only a dropped type reference (`put_page_type`) or a
    /// released frame can end that state, and both forget it; writing L1 entries never
    /// touches any table's type.
    /// [`NO_LIVE_L1`] when none: one word, so that building the engine stores one.
    live_l1: Cell<Mfn>,
    /// The bits a present L1 entry must not have ([`entry::rejected_bits`]): the
    /// disallowed flags and the address bits beyond the CPU's physical address width
    /// ([`Mmu::undecodable_bits`]), asked once here rather than through the `dyn Mmu` for
    /// every entry validated (where the caller builds the engine, the concrete `Mmu` is
    /// known and the question is inlined). The other levels' masks derive from it
    /// ([`Paging::rejected`]).
    rejected_l1: u64,
}

impl<'a, M: PhysMem, U: Mmu + ?Sized> Paging<'a, M, U> {
    /// The engine for `domain`.
    #[inline]
    pub fn new(mem: &'a M, frames: &'a FrameTable<'a>, domain: DomId, mmu: &'a mut U) -> Self {
        Paging {
            mem,
            frames,
            domain,
            rejected_l1: entry::rejected_bits(1, mmu.undecodable_bits()),
            mmu,
            live_l1: Cell::new(NO_LIVE_L1),
        }
    }
}

impl<M: PhysMem, U: Mmu + ?Sized> Paging<'_, M, U> {
    /// The bits a present entry at `level` must not have (see `Paging::rejected_l1`).
    #[inline(always)]
    pub(crate) fn rejected(&self, level: u32) -> u64 {
        if level == 1 {
            self.rejected_l1
        } else {
            entry::rejected_bits(level, self.rejected_l1 & crate::mm::pte::ADDRESS_MASK)
        }
    }

    /// Forgets the remembered live L1 table (see `Paging::live_l1`).
    #[inline]
    pub(crate) fn forget_live_l1(&self) {
        self.live_l1.set(NO_LIVE_L1);
    }

    /// Flushes every translation, and counts it on the TLB clock
    /// ([`FrameTable::tlb_clock`]).
    #[inline]
    pub(crate) fn flush_all(&mut self) {
        if self.mmu.flush_all() {
            self.frames.note_full_flush();
        }
    }

    /// Loads `root` into CR3 (a full flush of the guest's translations, which are never
    /// global), and counts it on the TLB clock.
    #[inline]
    pub(crate) fn load_root(&mut self, root: Mfn) {
        if self.mmu.load_root(root) {
            self.frames.note_full_flush();
        }
    }
}
