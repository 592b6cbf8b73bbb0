//! Frames entering and leaving a domain (the balloon's `memory_op` calls).
//!
//! A frame is handed out only within the domain's `max_pages`, always zeroed (the
//! allocator scrubs every frame it hands out, whoever held it before), and taken back only
//! when nothing references it: not mapped, not a page table, not pinned, not a base
//! pointer, not the shared-info page. Xen instead drops the allocation reference and frees
//! the frame when its last mapping goes; we refuse, so a frame the guest believes it gave
//! back is really gone, and the hypervisor never has to remember half-freed frames.

use super::{Mmu, Paging};
use crate::domain::Domain;
use crate::frames::{FrameTable, Owner};
use crate::mm::{Mfn, PhysMem};
use pv_abi::errno::Errno;

/// Gives `domain` one more frame (zeroed), within its `max_pages`; records `pfn` in the
/// machine-to-phys table if given. `ENOMEM` over the limit or when the machine is out of
/// frames.
pub fn allocate<M: PhysMem>(
    mem: &M,
    frames: &FrameTable<'_>,
    domain: &mut Domain,
    pfn: Option<u64>,
) -> Result<Mfn, Errno> {
    if domain.nr_pages >= domain.max_pages {
        return Err(Errno::ENOMEM);
    }
    let mfn = frames
        .alloc(Owner::Domain(domain.id), mem)
        .ok_or(Errno::ENOMEM)?;
    if let Some(pfn) = pfn {
        frames.set_m2p(mfn, pfn);
    }
    domain.nr_pages += 1;
    Ok(mfn)
}

impl<M: PhysMem, U: Mmu + ?Sized> Paging<'_, M, U> {
    /// Takes back frame `mfn` of `domain` (XENMEM_decrease_reservation for one page):
    /// `ENXIO` if it is not the domain's, `EINVAL` for the shared-info page, `EBUSY` while
    /// anything references it. The TLB is flushed first if stale entries of mappings the
    /// guest removed without flushing may still reach the frame: unless a full flush
    /// came after its last reference went (the TLB clock: `FrameInfo::stamp`), so that
    /// giving back a batch of pages flushes once.
    pub fn release(&mut self, domain: &mut Domain, mfn: Mfn) -> Result<(), Errno> {
        let info = self.frames.info(mfn);
        if info.owner != Owner::Domain(domain.id) {
            return Err(Errno::ENXIO);
        }
        if mfn == domain.shared_info {
            return Err(Errno::EINVAL);
        }
        if info.ref_count > 0 || info.type_count > 0 || info.pinned {
            return Err(Errno::EBUSY);
        }
        if info.stamp == self.frames.tlb_clock() {
            self.flush_all();
        }
        self.forget_live_l1();
        self.frames.free(mfn, info.owner);
        domain.nr_pages = domain.nr_pages.saturating_sub(1);
        Ok(())
    }
}
