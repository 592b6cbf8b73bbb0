//! The machine-to-phys table (M2P): one guest frame number per machine frame, written by
//! the hypervisor through the direct map and readable by every guest at Xen's
//! `RO_MPT_VIRT_START` (0xffff800000000000, L4 slot 256), read-only, user-accessible.
//!
//! The table covers every frame of the direct map (4 GiB, 8 MiB of entries). Its mapping
//! is built once at boot from static tables: one L3 (slot 0), one L2 (4 entries), four
//! L1s of 512 read-only, no-execute leaves each.

use super::DIRECTMAP_SIZE;
use core::cell::UnsafeCell;
use hypervisor::mm::{PAGE_SIZE, pte};

/// Entries in the table: one per frame of the direct map.
pub const ENTRIES: usize = (DIRECTMAP_SIZE / PAGE_SIZE) as usize;
/// Where guests see it (Xen's RO_MPT_VIRT_START).
pub const GUEST_VIRT_START: u64 = pv_abi::arch_x86_64::MACH2PHYS_VIRT_START;
/// Its L4 slot.
pub const L4_SLOT: usize = 256;
const _: () = assert!(((GUEST_VIRT_START >> 39) & 511) as usize == L4_SLOT);

const TABLE_PAGES: usize = ENTRIES * 8 / PAGE_SIZE as usize;
const L1_TABLES: usize = TABLE_PAGES / 512;

#[repr(C, align(4096))]
struct Entries(UnsafeCell<[u64; ENTRIES]>);

#[repr(C, align(4096))]
struct Tables(UnsafeCell<[[u64; 512]; 2 + L1_TABLES]>);

// SAFETY: written only by `init`, once, on the boot CPU before any guest runs; afterwards
// the entries are reached only through the frame table (under the machine lock) and the
// tables only by the MMU.
unsafe impl Sync for Entries {}
// SAFETY: as for `Entries`.
unsafe impl Sync for Tables {}

static M2P: Entries = Entries(UnsafeCell::new([0; ENTRIES]));
/// [0] the L3, [1] the L2, [2..] the L1s.
static TABLES: Tables = Tables(UnsafeCell::new([[0; 512]; 2 + L1_TABLES]));

fn phys<T>(item: *const T) -> u64 {
    super::virt_to_phys(item as u64)
}

/// Builds the guest mapping and hands out the table (call once, at boot).
pub fn init() -> &'static mut [u64] {
    let leaf = pte::PRESENT | pte::USER | pte::NO_EXECUTE;
    let table = pte::PRESENT | pte::USER;
    let tables = TABLES.0.get();
    let entries = M2P.0.get();
    // SAFETY: boot runs this once, before any guest exists, on one CPU: nothing else
    // holds a reference to either static. The entries are handed out exactly once.
    unsafe {
        let tables = &mut *tables;
        for (l1, page) in (0..TABLE_PAGES).map(|p| (p / 512, p)) {
            let page_addr = phys(entries) + page as u64 * PAGE_SIZE;
            tables[2 + l1][page % 512] = page_addr | leaf;
        }
        for l1 in 0..L1_TABLES {
            tables[1][l1] = phys(&tables[2 + l1]) | table;
        }
        tables[0][0] = phys(&tables[1]) | table;
        &mut *entries
    }
}

/// The L4 entry that maps the table at [`GUEST_VIRT_START`].
pub fn l4_entry() -> u64 {
    let tables = TABLES.0.get();
    // SAFETY: only the address of the L3 is taken, not a reference to the contents.
    let l3 = unsafe { core::ptr::addr_of!((*tables)[0]) };
    phys(l3) | pte::PRESENT | pte::USER
}
