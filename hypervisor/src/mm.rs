//! Machine memory vocabulary: frame numbers, page-table entry bits, and the one trait
//! through which the hypervisor's logic touches physical memory.

use zerocopy::{Immutable, IntoBytes};
/// Bytes in a page.
pub const PAGE_SIZE: u64 = 4096;
/// log2 of [`PAGE_SIZE`].
pub const PAGE_SHIFT: u32 = 12;
/// Entries in one page-table page.
pub const ENTRIES_PER_TABLE: usize = 512;

/// A machine frame number: a real physical page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct Mfn(pub u64);

impl Mfn {
    /// The machine address of the frame's first byte.
    pub const fn addr(self) -> u64 {
        self.0 << PAGE_SHIFT
    }

    /// The frame holding machine address `addr`.
    pub const fn containing(addr: u64) -> Mfn {
        Mfn(addr >> PAGE_SHIFT)
    }
}

/// Page-table entry bits (the same at every level unless noted).
pub mod pte {
    /// Present.
    pub const PRESENT: u64 = 1 << 0;
    /// Writable.
    pub const WRITABLE: u64 = 1 << 1;
    /// Reachable from ring 3.
    pub const USER: u64 = 1 << 2;
    /// Write-through caching.
    pub const WRITE_THROUGH: u64 = 1 << 3;
    /// Caching disabled.
    pub const CACHE_DISABLE: u64 = 1 << 4;
    /// Accessed.
    pub const ACCESSED: u64 = 1 << 5;
    /// Dirty (leaf entries).
    pub const DIRTY: u64 = 1 << 6;
    /// Large page (L2/L3), PAT (L1).
    pub const PAGE_SIZE: u64 = 1 << 7;
    /// Global (leaf entries).
    pub const GLOBAL: u64 = 1 << 8;
    /// No-execute.
    pub const NO_EXECUTE: u64 = 1 << 63;
    /// The frame-address field (bits 12..51).
    pub const ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;
}

/// Index into the table at `level` (1 = L1 .. 4 = L4) for virtual address `va`.
pub const fn table_index(va: u64, level: u32) -> usize {
    ((va >> (PAGE_SHIFT + 9 * (level - 1))) & 0x1ff) as usize
}

/// Whether `va` is canonical for 48-bit virtual addresses.
pub const fn is_canonical(va: u64) -> bool {
    let top = va >> 47;
    top == 0 || top == 0x1_ffff
}

/// Access to machine memory by machine address.
///
/// The hypervisor reaches physical memory only through this trait: the binary implements
/// it over the direct map, host tests over a vector. Callers pass only addresses of frames
/// they have checked (owned by the domain in question, or the hypervisor's own).
pub trait PhysMem {
    /// Copies `buf.len()` bytes from machine address `addr`.
    fn read(&self, addr: u64, buf: &mut [u8]);
    /// Copies `data` to machine address `addr`.
    fn write(&self, addr: u64, data: &[u8]);

    /// Makes the vector (XMM) registers the hypervisor's to use, saving the guest's if
    /// they are still live: called first thing by the rare, out-of-line paths that the
    /// compiler builds with SSE copies (the software walk, the failsafe frame, a
    /// refusal's log line) and that the hypervisor's SSE-free fast path can reach, which
    /// runs with the guest's registers live (`entry.S`; `cargo xtask test` checks that
    /// nothing else it reaches touches them). Memory in a host test has nothing to save.
    fn claim_vector_registers()
    where
        Self: Sized,
    {
    }

    /// Reads one 64-bit word (e.g. a page-table entry).
    fn read_u64(&self, addr: u64) -> u64 {
        let mut bytes = [0; 8];
        self.read(addr, &mut bytes);
        u64::from_le_bytes(bytes)
    }

    /// Writes one 64-bit word.
    fn write_u64(&self, addr: u64, value: u64) {
        self.write(addr, &value.to_le_bytes());
    }

    /// Sets `bits` in the 64-bit word at `addr` (8-byte aligned) and returns its old
    /// value, atomically with respect to other CPUs and the guest (event bitmaps live in
    /// memory the guest writes too). The default suits memory only this CPU sees.
    #[inline]
    fn fetch_or_u64(&self, addr: u64, bits: u64) -> u64 {
        let old = self.read_u64(addr);
        self.write_u64(addr, old | bits);
        old
    }

    /// Sets bit `bit` (0..64) of the 64-bit word at `addr`, atomically (see
    /// [`PhysMem::fetch_or_u64`]); returns whether it was set already.
    #[inline]
    fn test_and_set_bit(&self, addr: u64, bit: u32) -> bool {
        let mask = 1u64 << (bit % 64);
        self.fetch_or_u64(addr, mask) & mask != 0
    }

    /// Clears the bits not in `mask` in the word at `addr`, atomically; returns the old
    /// value (see [`PhysMem::fetch_or_u64`]).
    #[inline]
    fn fetch_and_u64(&self, addr: u64, mask: u64) -> u64 {
        let old = self.read_u64(addr);
        self.write_u64(addr, old & mask);
        old
    }

    /// Copies `len` bytes from guest virtual address `va` to `dst` with the MMU, through
    /// the page tables loaded on this CPU, if they are `root` and this memory can (the
    /// real machine can; host fakes cannot, and say `None`): `Some(true)` copied all
    /// `len`, `Some(false)` a page fault stopped it (`dst` then holds part of the bytes).
    /// Only [`GuestMem`](crate::guestmem::GuestMem) calls it, for a range it checked with
    /// [`mmu_may_copy`](crate::guestmem::mmu_may_copy). `dst` is a raw pointer so that a
    /// structure can be read into uninitialised memory: zeroing it first would take an
    /// SSE store, which the fast paths avoid (see `GuestMem::read_obj`).
    ///
    /// # Safety
    /// `dst` must be valid for writes of `len` bytes.
    unsafe fn read_virtual(&self, root: Mfn, va: u64, dst: *mut u8, len: usize) -> Option<bool> {
        let _ = (root, va, dst, len);
        None
    }

    /// Copies one `T` from guest virtual address `va` to `dst` with the MMU, as
    /// [`read_virtual`](PhysMem::read_virtual) with the size of `T`: the size is known
    /// when compiling, so the real machine's copy is a few inline loads instead of a call.
    ///
    /// # Safety
    /// `dst` must be valid for writes of one `T`.
    #[inline]
    unsafe fn read_virtual_obj<T>(&self, root: Mfn, va: u64, dst: *mut T) -> Option<bool> {
        // SAFETY: forwarded to the caller.
        unsafe { self.read_virtual(root, va, dst.cast(), size_of::<T>()) }
    }

    /// Copies `data` to guest virtual address `va` with the MMU (see
    /// [`PhysMem::read_virtual`]). The caller passes a range within one page, so a fault
    /// stops it before any byte is written.
    fn write_virtual(&self, root: Mfn, va: u64, data: &[u8]) -> Option<bool> {
        let _ = (root, va, data);
        None
    }

    /// Copies one `T` to guest virtual address `va` with the MMU, as
    /// [`write_virtual`](PhysMem::write_virtual) with its bytes: the size is known when
    /// compiling, so the real machine's copy of a word is one inline store.
    #[inline]
    fn write_virtual_obj<T: IntoBytes + Immutable>(
        &self,
        root: Mfn,
        va: u64,
        value: &T,
    ) -> Option<bool> {
        self.write_virtual(root, va, value.as_bytes())
    }

    /// Fills a whole frame with zeroes.
    fn zero_frame(&self, mfn: Mfn) {
        let zeros = [0u8; 512];
        for chunk in 0..(PAGE_SIZE / 512) {
            self.write(mfn.addr() + chunk * 512, &zeros);
        }
    }
}

#[cfg(test)]
pub mod fake {
    //! A vector standing in for machine memory in host tests.
    use super::*;
    use std::cell::RefCell;

    /// `frames` pages of zeroed "machine memory" starting at machine address 0.
    pub struct FakeMem {
        bytes: RefCell<Vec<u8>>,
    }

    impl FakeMem {
        /// Memory of `frames` pages.
        pub fn new(frames: usize) -> FakeMem {
            FakeMem {
                bytes: RefCell::new(vec![0; frames * PAGE_SIZE as usize]),
            }
        }
    }

    impl PhysMem for FakeMem {
        fn read(&self, addr: u64, buf: &mut [u8]) {
            let start = addr as usize;
            buf.copy_from_slice(&self.bytes.borrow()[start..start + buf.len()]);
        }
        fn write(&self, addr: u64, data: &[u8]) {
            let start = addr as usize;
            self.bytes.borrow_mut()[start..start + data.len()].copy_from_slice(data);
        }
    }
}
