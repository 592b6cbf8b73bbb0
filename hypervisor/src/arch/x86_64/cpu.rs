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

/// Loads CR3 with a page-table root.
///
/// # Safety
/// `root` must be the machine address of a valid L4 table that maps the hypervisor's
/// slots exactly as the boot tables do.
pub unsafe fn write_cr3(root: u64) {
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

/// Flushes every TLB entry of this CPU, global ones included (by toggling CR4.PGE).
pub fn flush_tlb_all() {
    const PGE: u64 = 1 << 7;
    // SAFETY: clearing and restoring PGE changes no translation, only flushes the TLB.
    unsafe {
        let cr4: u64;
        core::arch::asm!("mov {}, cr4", out(reg) cr4, options(nomem, nostack));
        core::arch::asm!("mov cr4, {}", in(reg) cr4 & !PGE, options(nostack));
        core::arch::asm!("mov cr4, {}", in(reg) cr4, options(nostack));
    }
}

/// Physical-address bits this CPU implements (CPUID 0x80000008).
pub fn phys_addr_bits() -> u32 {
    // Asked for every page-table entry the paging code validates: CPUID once (it is
    // slow on real CPUs, and exits to the host under virtualization), then the copy.
    static BITS: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);
    let known = BITS.load(core::sync::atomic::Ordering::Relaxed);
    if known != 0 {
        return known;
    }
    let max = core::arch::x86_64::__cpuid(0x8000_0000).eax;
    let bits = if max >= 0x8000_0008 {
        core::arch::x86_64::__cpuid(0x8000_0008).eax & 0xff
    } else {
        36
    };
    BITS.store(bits, core::sync::atomic::Ordering::Relaxed);
    bits
}
