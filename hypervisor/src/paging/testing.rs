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
        true
    }
    fn flush_va(&mut self, va: u64) {
        self.flushed.push(va);
    }
    fn load_root(&mut self, root: Mfn) -> bool {
        self.loaded.push(root);
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
