//! The frame table: who owns every machine frame, and the allocator over it.
//!
//! Each frame is unusable (not RAM, or not tracked), free, the hypervisor's, or a
//! domain's. Frames are scrubbed (zeroed) when they are handed out, so nothing a domain
//! leaves behind reaches another. The memory-virtualization work extends each entry with
//! a page type and reference counts.

use crate::mm::{Mfn, PhysMem};

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

/// One frame's bookkeeping.
#[derive(Clone, Copy, Debug, Default)]
pub struct FrameInfo {
    /// Who holds the frame.
    pub owner: Owner,
}

/// The frame table over a slice of [`FrameInfo`], one per frame from MFN 0.
#[derive(Debug)]
pub struct FrameTable<'a> {
    frames: &'a mut [FrameInfo],
    free: usize,
    next: usize,
}

impl<'a> FrameTable<'a> {
    /// A table describing no frames at all (a placeholder until boot fills one in).
    pub const fn empty() -> FrameTable<'a> {
        FrameTable {
            frames: &mut [],
            free: 0,
            next: 0,
        }
    }

    /// A table in which every frame is unusable.
    pub fn new(frames: &'a mut [FrameInfo]) -> FrameTable<'a> {
        frames.fill(FrameInfo::default());
        FrameTable {
            frames,
            free: 0,
            next: 0,
        }
    }

    /// A table over bookkeeping that is already filled in (free frames are recounted).
    pub fn adopt(frames: &'a mut [FrameInfo]) -> FrameTable<'a> {
        let free = frames
            .iter()
            .filter(|info| info.owner == Owner::Free)
            .count();
        FrameTable {
            frames,
            free,
            next: 0,
        }
    }

    /// How many frames the table can describe.
    pub fn capacity(&self) -> usize {
        self.frames.len()
    }

    /// Marks `[start, end)` as free RAM (clipped to the table). Only unusable frames
    /// change: RAM reported twice is counted once.
    pub fn add_ram(&mut self, start: Mfn, end: Mfn) {
        let end = (end.0 as usize).min(self.frames.len());
        for info in self.frames.iter_mut().take(end).skip(start.0 as usize) {
            if info.owner == Owner::Unusable {
                info.owner = Owner::Free;
                self.free += 1;
            }
        }
    }

    /// Takes `[start, end)` for the hypervisor (image, boot modules). Frames that are not
    /// free are left alone.
    pub fn reserve(&mut self, start: Mfn, end: Mfn) {
        let end = (end.0 as usize).min(self.frames.len());
        for info in self.frames.iter_mut().take(end).skip(start.0 as usize) {
            if info.owner == Owner::Free {
                info.owner = Owner::Hypervisor;
                self.free -= 1;
            }
        }
    }

    /// Who holds `mfn` (unusable if it is beyond the table).
    pub fn owner(&self, mfn: Mfn) -> Owner {
        self.frames
            .get(mfn.0 as usize)
            .map_or(Owner::Unusable, |info| info.owner)
    }

    /// Free frames left.
    pub fn free_count(&self) -> usize {
        self.free
    }

    /// Allocates a frame for `owner`, zeroed through `mem`.
    pub fn alloc(&mut self, owner: Owner, mem: &impl PhysMem) -> Option<Mfn> {
        debug_assert!(matches!(owner, Owner::Hypervisor | Owner::Domain(_)));
        if self.free == 0 {
            return None;
        }
        let len = self.frames.len();
        for step in 0..len {
            let index = (self.next + step) % len;
            if self.frames[index].owner == Owner::Free {
                self.frames[index].owner = owner;
                self.free -= 1;
                self.next = (index + 1) % len;
                let mfn = Mfn(index as u64);
                mem.zero_frame(mfn);
                return Some(mfn);
            }
        }
        None
    }

    /// Returns a frame to the free pool. Returns false (and changes nothing) if the frame
    /// is not held by `owner`.
    pub fn free(&mut self, mfn: Mfn, owner: Owner) -> bool {
        match self.frames.get_mut(mfn.0 as usize) {
            Some(info) if info.owner == owner && owner != Owner::Free => {
                info.owner = Owner::Free;
                self.free += 1;
                true
            }
            _ => false,
        }
    }

    /// Frees every frame `domain` holds; returns how many there were.
    pub fn release_domain(&mut self, domain: DomId) -> usize {
        let mut released = 0;
        for info in self.frames.iter_mut() {
            if info.owner == Owner::Domain(domain) {
                info.owner = Owner::Free;
                released += 1;
            }
        }
        self.free += released;
        released
    }

    /// Frames held by `domain`.
    pub fn count_owned(&self, domain: DomId) -> usize {
        self.frames
            .iter()
            .filter(|info| info.owner == Owner::Domain(domain))
            .count()
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
