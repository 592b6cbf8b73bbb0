//! The benchmark's memory fixtures: a scratch L1 page table and the shared-info page,
//! built the same way on our hypervisor and on Xen from four padding pages of the boot
//! region (after the boot stack; nothing else uses pages 100..104 of the padding).
//!
//! ```text
//!   padding page 0, 1   data frames A and B: what the scratch entries map, alternately
//!   padding page 2      frame S: zeroed, remapped read-only, pinned as an L1 table and
//!                       hooked into the boot L2 at a free slot, so it maps a 2 MiB
//!                       window of the kernel half; its read-only mapping here is the
//!                       target of the trapped page-table stores
//!   padding page 3      remapped to the shared-info page (vcpu_info of vCPU 0)
//! ```
//!
//! Every case that writes an entry of S alternates between A and B, so each write
//! really changes the entry (neither hypervisor can take a "same value" shortcut) and
//! moves a writable reference from one frame to the other.

use crate::Boot;
use crate::vm::{self, KERNEL_BASE, RO, RW};
use pv_abi::xen::{MmuUpdate, MmuextOp};

/// The first padding page (after the boot stack) the fixtures borrow.
const FIRST_PADDING_PAGE: u64 = 100;
const PAGE: u64 = 4096;
/// Bytes one L2 entry maps.
const L2_SPAN: u64 = 2 << 20;
/// Entry bit: accessed (set up front so no hardware update is pending).
const ACCESSED: u64 = 1 << 5;
/// Entry bit: dirty.
const DIRTY: u64 = 1 << 6;

/// What the cases work on.
#[derive(Clone, Copy, Debug)]
pub struct Fixture {
    /// The two L1 entry values the cases alternate between (frames A and B, writable).
    pub values: [u64; 2],
    /// Machine frame of the scratch L1 table S.
    pub l1_mfn: u64,
    /// Where S is mapped read-only (stores there trap).
    pub l1_ro_va: u64,
    /// The 2 MiB window S maps: entry i maps `window + i * 4096`.
    pub window: u64,
    /// Machine address of the L2 entry that hooks S in.
    pub l2_entry: u64,
    /// Where vcpu_info of vCPU 0 is (start of the shared-info page).
    pub vcpu_info: u64,
    /// Machine frame of the current (boot) kernel page table.
    pub root_mfn: u64,
    /// Padding page 2 and 3 and their own frames, to put back at the end.
    restore: [(u64, u64); 2],
}

impl Fixture {
    /// Machine address of entry `index` of S.
    pub fn entry(&self, index: u64) -> u64 {
        (self.l1_mfn << 12) + index * 8
    }

    /// The value entry `index` gets on pass `n` (alternating frames).
    pub fn value(&self, n: u32) -> u64 {
        self.values[(n & 1) as usize]
    }

    /// An `mmu_update` request writing entry `index` on pass `n`.
    pub fn request(&self, index: u64, n: u32) -> MmuUpdate {
        MmuUpdate::normal(self.entry(index), self.value(n))
    }
}

/// Builds the fixture (see the module documentation).
pub fn setup(boot: &Boot) -> Result<Fixture, &'static str> {
    let page = |n: u64| boot.initial_rsp + (FIRST_PADDING_PAGE + n) * PAGE;
    let (a, b) = (vm::mfn_of(boot, page(0)), vm::mfn_of(boot, page(1)));
    let (s_va, shared_va) = (page(2), page(3));
    let (s, shared_own) = (vm::mfn_of(boot, s_va), vm::mfn_of(boot, shared_va));
    // SAFETY: padding page 2 is mapped writable and used by nothing else; zeroing it makes
    // a valid, empty page table.
    unsafe { core::ptr::write_bytes(s_va as *mut u8, 0, PAGE as usize) };
    vm::map(s_va, s, RO).map_err(|_| "cannot map the scratch table read-only")?;
    let pin = MmuextOp::pin_table(1, s).ok_or("bad pin level")?;
    vm::ext(&[pin]).map_err(|_| "cannot pin the scratch L1 table")?;
    let [_, _, l2, _] = vm::walk(boot, KERNEL_BASE);
    let free = (256..512)
        .find(|&slot| vm::peek(vm::va_of(l2) + slot * 8) == 0)
        .ok_or("no free slot in the boot L2 table")?;
    let l2_entry = (l2 << 12) + free * 8;
    vm::update(&[MmuUpdate::normal(l2_entry, (s << 12) | RW | ACCESSED)])
        .map_err(|_| "cannot hook the scratch L1 table into the L2")?;
    vm::map(shared_va, boot.info.shared_info >> 12, RW)
        .map_err(|_| "cannot map the shared-info page")?;
    let root_mfn = vm::mfn_of(boot, boot.info.pt_base);
    let flags = RW | ACCESSED | DIRTY;
    Ok(Fixture {
        values: [(a << 12) | flags, (b << 12) | flags],
        l1_mfn: s,
        l1_ro_va: s_va,
        window: KERNEL_BASE + free * L2_SPAN,
        l2_entry,
        vcpu_info: shared_va,
        root_mfn,
        restore: [(s_va, s), (shared_va, shared_own)],
    })
}

/// Takes the fixture apart: unhooks and unpins S (the hypervisor drops the references
/// its entries hold) and maps the padding pages back to their own frames.
pub fn teardown(fixture: &Fixture) -> Result<(), &'static str> {
    vm::update(&[MmuUpdate::normal(fixture.l2_entry, 0)]).map_err(|_| "cannot unhook")?;
    vm::ext(&[MmuextOp::unpin_table(fixture.l1_mfn)]).map_err(|_| "cannot unpin")?;
    for (va, mfn) in fixture.restore {
        vm::map(va, mfn, RW).map_err(|_| "cannot restore a padding page")?;
    }
    Ok(())
}
