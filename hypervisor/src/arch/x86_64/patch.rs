//! Boot-time patching of the SMAP sites, as Xen's and Linux's "alternatives" do.
//!
//! Every `stac` and `clac` around a ring-0 access to guest memory (`entry.S`'s
//! `SMAP_SITE`, `guest_access.rs`'s `smap_site!`) is written as the bare instruction, and
//! its address is recorded in the section `.hv_smap_sites` (`link.ld`: between
//! `__hv_smap_sites_start` and `__hv_smap_sites_end`; per site one 32-bit offset from
//! the entry itself, as `.hv_extable` records its addresses). Where the CPU has SMAP the
//! sites stay as they are; where it has not, [`nop_smap_sites_once`] overwrites each with a
//! three-byte nop once at boot, before anything runs them. So a site costs one
//! instruction either way, instead of a test of a flag and a branch, and the
//! hypervisor never executes `stac`/`clac` (#UD) on a CPU without SMAP.

/// `stac` (set RFLAGS.AC).
const STAC: [u8; 3] = [0x0f, 0x01, 0xcb];
/// `clac` (clear RFLAGS.AC).
const CLAC: [u8; 3] = [0x0f, 0x01, 0xca];
/// `nopl (%rax)`, the three-byte nop that replaces them.
const NOP3: [u8; 3] = [0x0f, 0x1f, 0x00];

unsafe extern "C" {
    static __hv_smap_sites_start: u8;
    static __hv_smap_sites_end: u8;
}

/// Turns every SMAP site into a three-byte nop, the first time it is called (later calls
/// patch nothing and return 0): for a CPU without SMAP, called by
/// `cpu::enable_smep_smap` once it has found none, at boot before any guest exists.
/// Returns how many sites it patched. Once only, so that a second CPU brought up later
/// (with guests running) cannot write the live text; mixed CPUs, some with SMAP, would
/// need the decision made once for all of them before any starts.
///
/// Nothing runs a site before this: they are the express paths and the exception entry
/// from ring 3 (`entry.S`; only a guest gets there, and none has run yet) and the copies
/// through a guest's loaded page tables (`hv_guest_copy`, the blocks of
/// `guest_access.rs`; only once a guest's root is loaded). The image runs from the direct map, which the boot tables
/// (`boot.S`) map writable, so the text is written where it runs. Each site is executed
/// only after jumps and returns away from here (Intel SDM vol. 3, "Handling
/// Self- and Cross-Modifying Code": a store, then a jump, then the new code).
///
/// # Panics
/// If a site does not hold `stac` or `clac`: a table entry pointing anywhere else is a
/// bug in the hypervisor's build, found at boot.
pub fn nop_smap_sites_once() -> usize {
    static DONE: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
    if DONE.swap(true, core::sync::atomic::Ordering::AcqRel) {
        return 0;
    }
    let start = &raw const __hv_smap_sites_start as usize;
    let end = &raw const __hv_smap_sites_end as usize;
    let mut count = 0;
    for entry in (start..end).step_by(size_of::<i32>()) {
        // SAFETY: `entry` is one of the aligned 32-bit entries between the two linker
        // symbols (link.ld aligns the section to 4 and every entry is `.long`), in
        // .rodata, which nothing writes.
        let offset = unsafe { core::ptr::with_exposed_provenance::<i32>(entry).read() };
        let site = entry.wrapping_add_signed(offset as isize);
        let bytes = core::ptr::with_exposed_provenance_mut::<[u8; 3]>(site);
        // SAFETY: `site` is an address in the image's .text (the assembler computed it
        // from a label there), mapped readable; three bytes are read as data.
        let found = unsafe { bytes.read_volatile() };
        assert!(
            found == STAC || found == CLAC,
            "SMAP site {site:#x} holds the bytes {:06x}, not stac (0f01cb) or clac (0f01ca)",
            u32::from_be_bytes([0, found[0], found[1], found[2]])
        );
        // SAFETY: the three bytes are a whole `stac`/`clac` (checked above) in .text,
        // mapped writable through the direct map (boot.S). Nothing is executing them
        // (no guest has run yet, see above) and the nop has the same length, so every
        // jump into or past the site still lands on an instruction boundary.
        unsafe { bytes.write_volatile(NOP3) };
        count += 1;
    }
    count
}
