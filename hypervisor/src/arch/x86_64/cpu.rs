//! Small, safe wrappers over control registers, MSRs and the debug-exit port.

use x86_64::instructions::port::Port;

/// Model-specific registers the hypervisor programs.
pub mod msr {
    /// `syscall`/`sysret` segment selectors.
    pub const STAR: u32 = 0xc000_0081;
    /// 64-bit `syscall` entry point.
    pub const LSTAR: u32 = 0xc000_0082;
    /// Compatibility-mode `syscall` entry point.
    pub const CSTAR: u32 = 0xc000_0083;
    /// `sysenter`'s code selector (0: `sysenter` raises #GP).
    pub const SYSENTER_CS: u32 = 0x174;
    /// RFLAGS bits cleared on `syscall`.
    pub const FMASK: u32 = 0xc000_0084;
    /// FS base.
    pub const FS_BASE: u32 = 0xc000_0100;
    /// Active GS base.
    pub const GS_BASE: u32 = 0xc000_0101;
    /// GS base swapped in by `swapgs`.
    pub const KERNEL_GS_BASE: u32 = 0xc000_0102;
}

/// Writes an MSR.
///
/// # Safety
/// The caller must know what the MSR controls and that the value keeps the hypervisor's
/// invariants (entry points, segment bases).
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: forwarded to the caller.
    unsafe { x86_64::registers::model_specific::Msr::new(msr).write(value) }
}

/// The data segment selectors in the CPU now: `[ds, es, fs, gs]`.
pub fn data_selectors() -> [u16; 4] {
    let (ds, es, fs, gs): (u16, u16, u16, u16);
    // SAFETY: reading segment registers has no side effects.
    unsafe {
        core::arch::asm!(
            "mov {0:x}, ds",
            "mov {1:x}, es",
            "mov {2:x}, fs",
            "mov {3:x}, gs",
            out(reg) ds, out(reg) es, out(reg) fs, out(reg) gs,
            options(nomem, nostack, preserves_flags),
        );
    }
    [ds, es, fs, gs]
}

/// Loads the data segment selectors `[ds, es, fs, gs]` a guest left (saved by
/// [`data_selectors`] when its vCPU went off the CPU). Loading `%gs` in ring 0 also sets
/// the active GS base, the hypervisor's per-CPU block, to the descriptor's (0): it is put
/// back at once. The FS base and the guest's GS base are the caller's to write after.
///
/// # Safety
/// Each selector must be one the CPU loaded for this guest before (null, or a
/// descriptor of the static GDT with DPL 3: loadable in ring 0 too), with interrupts
/// off: nothing may use the per-CPU block between the `%gs` load and the GS base's
/// restore.
pub unsafe fn load_data_selectors([ds, es, fs, gs]: [u16; 4]) {
    let percpu = x86_64::registers::model_specific::Msr::new(msr::GS_BASE);
    // SAFETY: reading GS_BASE has no side effects.
    let base = unsafe { percpu.read() };
    // SAFETY: the selectors are loadable (the caller's contract); no memory is touched.
    unsafe {
        core::arch::asm!(
            "mov ds, {0:e}",
            "mov es, {1:e}",
            "mov fs, {2:e}",
            "mov gs, {3:e}",
            in(reg) u32::from(ds), in(reg) u32::from(es), in(reg) u32::from(fs),
            in(reg) u32::from(gs),
            options(nomem, nostack, preserves_flags),
        );
    }
    // SAFETY: the per-CPU block's own address, as it was.
    unsafe { wrmsr(msr::GS_BASE, base) };
}

/// Loads CR3 with a page-table root: a bare frame address, without PCID, PWT or PCD
/// bits (PCIDs are never enabled), so that reading CR3 back gives `root` itself
/// (`DirectMap::loaded` compares the two directly).
///
/// # Safety
/// `root` must be the machine address of a valid L4 table that maps the hypervisor's
/// slots exactly as the boot tables do.
pub unsafe fn write_cr3(root: u64) {
    debug_assert!(
        root.trailing_zeros() >= 12,
        "CR3 {root:#x} is not a bare frame address"
    );
    // SAFETY: forwarded to the caller.
    unsafe { core::arch::asm!("mov cr3, {}", in(reg) root, options(nostack, preserves_flags)) };
}

/// Reads CR2 (the faulting linear address of the last page fault).
pub fn read_cr2() -> u64 {
    let value: u64;
    // SAFETY: reading CR2 has no side effects.
    unsafe { core::arch::asm!("mov {}, cr2", out(reg) value, options(nomem, nostack)) };
    value
}

/// Writes CR2 back (a path that read a guest's fault address and then took a ring-0
/// fault of its own puts the guest's back for the path that follows).
pub fn write_cr2(value: u64) {
    // SAFETY: CR2 is only a record of the last fault address; writing it changes no
    // translation or protection.
    unsafe { core::arch::asm!("mov cr2, {}", in(reg) value, options(nomem, nostack)) };
}

/// CR0.TS: FPU/SSE instructions raise #NM (the lazy FPU save, see `entry.S`).
pub const CR0_TS: u64 = 1 << 3;

/// Reads CR0.
pub fn read_cr0() -> u64 {
    let value: u64;
    // SAFETY: reading CR0 has no side effects.
    unsafe { core::arch::asm!("mov {}, cr0", out(reg) value, options(nomem, nostack)) };
    value
}

/// Reads CR3.
pub fn read_cr3() -> u64 {
    let value: u64;
    // SAFETY: reading CR3 has no side effects.
    unsafe { core::arch::asm!("mov {}, cr3", out(reg) value, options(nomem, nostack)) };
    value
}

/// Ends the QEMU run through the isa-debug-exit device (QEMU exits with `(code << 1) | 1`).
/// On a machine without the device, halts forever.
pub fn exit_qemu(code: u8) -> ! {
    // SAFETY: port 0xf4 is the debug-exit device under QEMU, and unused elsewhere.
    unsafe { Port::<u32>::new(0xf4).write(u32::from(code)) };
    halt_forever()
}

/// Stops this CPU for good.
pub fn halt_forever() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}

/// Flushes the TLB entry for `va` (this CPU).
pub fn invlpg(va: u64) {
    // SAFETY: invlpg only drops a cached translation.
    unsafe { core::arch::asm!("invlpg [{}]", in(reg) va, options(nostack, preserves_flags)) };
}

/// CR4.PGE: global pages (toggled to flush them; also by the express `mmuext_op` of
/// `entry.S`).
pub const CR4_PGE: u64 = 1 << 7;

/// Flushes every TLB entry of this CPU, global ones included (by toggling CR4.PGE).
pub fn flush_tlb_all() {
    // SAFETY: clearing and restoring PGE changes no translation, only flushes the TLB.
    unsafe {
        let cr4: u64;
        core::arch::asm!("mov {}, cr4", out(reg) cr4, options(nomem, nostack));
        core::arch::asm!("mov cr4, {}", in(reg) cr4 & !CR4_PGE, options(nostack));
        core::arch::asm!("mov cr4, {}", in(reg) cr4, options(nostack));
    }
}

/// The page-table address bits that name memory beyond what this CPU decodes (its
/// physical-address width, CPUID 0x80000008): `paging::entry::undecodable_bits`.
#[inline]
pub fn undecodable_address_bits() -> u64 {
    // Asked whenever the paging engine is built: CPUID once (it is slow on real CPUs, and
    // exits to the host under virtualization), then the copy, read inline.
    let known = UNDECODABLE.load(core::sync::atomic::Ordering::Relaxed);
    if known != UNKNOWN {
        return known;
    }
    probe_undecodable_address_bits()
}

/// [`undecodable_address_bits`] before the first question (no mask has its low bits).
const UNKNOWN: u64 = u64::MAX;
/// [`undecodable_address_bits`] once known.
static UNDECODABLE: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(UNKNOWN);

#[cold]
#[inline(never)]
fn probe_undecodable_address_bits() -> u64 {
    let max = core::arch::x86_64::__cpuid(0x8000_0000).eax;
    let bits = if max >= 0x8000_0008 {
        core::arch::x86_64::__cpuid(0x8000_0008).eax & 0xff
    } else {
        36
    };
    let mask = hypervisor::paging::entry::undecodable_bits(bits);
    UNDECODABLE.store(mask, core::sync::atomic::Ordering::Relaxed);
    mask
}

/// What [`enable_smep_smap`] turned on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Protections {
    /// Ring 0 cannot execute user pages (CR4.SMEP).
    pub smep: bool,
    /// Ring 0 cannot touch user pages outside `stac`/`clac` (CR4.SMAP).
    pub smap: bool,
    /// Without SMAP: how many `stac`/`clac` sites the boot turned into nops
    /// ([`super::patch::nop_smap_sites_once`]); 0 with SMAP.
    pub smap_sites_patched: usize,
}

/// Turns on SMEP and SMAP where the CPU has them. Every guest page is a user page (a PV
/// guest's kernel runs in ring 3), so with SMAP the hypervisor can reach guest memory
/// through a guest address only between a `stac` and a `clac` (`hv_guest_copy`, the
/// express paths of `entry.S`, the blocks of `guest_access.rs`) and with SMEP it can
/// never run guest code: a stray dereference of a guest pointer faults instead of
/// succeeding. Without SMAP, those `stac`/`clac` sites become nops here
/// ([`super::patch::nop_smap_sites_once`]), before any guest runs.
pub fn enable_smep_smap() -> Protections {
    const SMEP: u64 = 1 << 20;
    const SMAP: u64 = 1 << 21;
    let leaf7 = if core::arch::x86_64::__cpuid(0).eax >= 7 {
        core::arch::x86_64::__cpuid_count(7, 0).ebx
    } else {
        0
    };
    let mut protections = Protections {
        smep: leaf7 & (1 << 7) != 0,
        smap: leaf7 & (1 << 20) != 0,
        smap_sites_patched: 0,
    };
    let mut cr4: u64;
    // SAFETY: reading CR4 has no side effects.
    unsafe { core::arch::asm!("mov {}, cr4", out(reg) cr4, options(nomem, nostack)) };
    if protections.smep {
        cr4 |= SMEP;
    }
    if protections.smap {
        cr4 |= SMAP;
    }
    // SAFETY: setting SMEP/SMAP, which the CPU has (CPUID above); ring 0 runs only from
    // supervisor pages and touches user pages only between its stac/clac sites.
    unsafe { core::arch::asm!("mov cr4, {}", in(reg) cr4, options(nostack)) };
    if !protections.smap {
        protections.smap_sites_patched = super::patch::nop_smap_sites_once();
    }
    protections
}
