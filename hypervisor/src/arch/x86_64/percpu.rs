//! Per-CPU data reached through GS in ring 0 (`swapgs` on every entry from a guest).
//!
//! Only CPU 0 is brought up today, but nothing assumes one CPU: each CPU owns one
//! [`PerCpu`] with its own stack, TSS and current-vCPU pointers.

use core::cell::UnsafeCell;

/// Size of each CPU's hypervisor stack.
pub const STACK_SIZE: usize = 64 * 1024;
/// Size of each CPU's interrupt stacks (NMI, #DF, #MC).
pub const IST_SIZE: usize = 16 * 1024;

/// The block GS points at in ring 0. The first fields are read by the entry stubs at
/// fixed offsets (see `entry.S`).
#[repr(C, align(64))]
#[derive(Debug)]
pub struct PerCpu {
    /// Address of this block (for reading it back through GS).
    pub self_ptr: u64,
    /// The guest's stack pointer, parked by the `syscall` stub.
    pub scratch: u64,
    /// Top of this CPU's hypervisor stack (also TSS.RSP0).
    pub stack_top: u64,
    /// Where the current vCPU's FXSAVE area lives.
    pub fpu_area: u64,
    /// This CPU's number.
    pub cpu_id: u64,
    /// Nonzero while the current vCPU has virtual CR0.TS set (the exit path then sets the
    /// real TS so the guest's next FPU use traps).
    pub guest_ts: u64,
    /// Where the current vCPU's FPU/SSE state is (a [`FpuSaved`] value): live in the
    /// CPU, its XMM registers and MXCSR saved in its area (on the hypervisor's first SSE
    /// use since the entry), or its whole image in its area (before a vCPU switch, or a
    /// vCPU just switched in). The exit path reloads what was saved. See `entry.S`.
    pub fpu_saved: u64,
}

const _: () = {
    assert!(core::mem::offset_of!(PerCpu, scratch) == 8);
    assert!(core::mem::offset_of!(PerCpu, stack_top) == 16);
    assert!(core::mem::offset_of!(PerCpu, fpu_area) == 24);
    assert!(core::mem::offset_of!(PerCpu, guest_ts) == 40);
    assert!(core::mem::offset_of!(PerCpu, fpu_saved) == 48);
};

#[repr(C, align(4096))]
struct Stack([u8; STACK_SIZE]);

#[repr(C, align(4096))]
struct IstStacks([[u8; IST_SIZE]; 3]);

struct CpuStorage {
    percpu: UnsafeCell<PerCpu>,
    stack: UnsafeCell<Stack>,
    ist: UnsafeCell<IstStacks>,
}

// SAFETY: each CPU touches only its own storage, with interrupts off in ring 0.
unsafe impl Sync for CpuStorage {}

static CPU0: CpuStorage = CpuStorage {
    percpu: UnsafeCell::new(PerCpu {
        self_ptr: 0,
        scratch: 0,
        stack_top: 0,
        fpu_area: 0,
        cpu_id: 0,
        guest_ts: 0,
        // Set by init_cpu0: a nonzero initialiser would move this whole static (stacks
        // included) from .bss into the loaded image.
        fpu_saved: 0,
    }),
    stack: UnsafeCell::new(Stack([0; STACK_SIZE])),
    ist: UnsafeCell::new(IstStacks([[0; IST_SIZE]; 3])),
};

/// Addresses of one CPU's stacks.
#[derive(Debug, Clone, Copy)]
pub struct CpuStacks {
    /// Top of the main hypervisor stack.
    pub stack_top: u64,
    /// Tops of the NMI, #DF and #MC stacks.
    pub ist_tops: [u64; 3],
}

/// Fills in CPU 0's block and points GS at it.
pub fn init_cpu0() -> CpuStacks {
    let percpu = CPU0.percpu.get();
    let stack_top = CPU0.stack.get() as u64 + STACK_SIZE as u64;
    let ist_base = CPU0.ist.get() as u64;
    let ist_tops = [0, 1, 2].map(|i| ist_base + (i + 1) * IST_SIZE as u64);
    // SAFETY: boot runs once on CPU 0 before anything else uses this block.
    unsafe {
        (*percpu).self_ptr = percpu as u64;
        (*percpu).stack_top = stack_top;
        (*percpu).cpu_id = 0;
        // No vCPU's FPU state is in the registers yet: the first exit loads one.
        (*percpu).fpu_saved = FpuSaved::Full as u64;
        super::cpu::wrmsr(super::cpu::msr::GS_BASE, percpu as u64);
        super::cpu::wrmsr(super::cpu::msr::KERNEL_GS_BASE, 0);
    }
    CpuStacks {
        stack_top,
        ist_tops,
    }
}

/// This CPU's block.
fn current() -> *mut PerCpu {
    let ptr: u64;
    // SAFETY: in ring 0, GS points at this CPU's PerCpu (set by init_cpu0 and kept by
    // the swapgs discipline of the entry stubs).
    unsafe { core::arch::asm!("mov {}, gs:[0]", out(reg) ptr, options(nostack, readonly)) };
    ptr as *mut PerCpu
}

/// Top of this CPU's hypervisor stack.
pub fn stack_top() -> u64 {
    // SAFETY: reading a field of this CPU's own block.
    unsafe { (*current()).stack_top }
}

/// Points the entry stubs at the FXSAVE area of the vCPU about to run (see also
/// [`switch_fpu_area`]).
///
/// # Safety
/// `area` must be a 16-byte aligned, 512-byte area that stays valid while it is current
/// and holds a valid FXSAVE image.
pub unsafe fn set_fpu_area(area: u64) {
    // SAFETY: writing a field of this CPU's own block; validity is the caller's promise.
    unsafe { (*current()).fpu_area = area };
}

/// Where the current vCPU's FPU/SSE state is (`PerCpu::fpu_saved`; `entry.S` knows
/// these numbers).
#[repr(u64)]
pub enum FpuSaved {
    /// In the CPU.
    Live = 0,
    /// The whole FXSAVE image is in the vCPU's area.
    Full = 1,
    /// The XMM registers and MXCSR are in the area's XMM slots; the x87 state is still
    /// in the CPU.
    Xmm = 2,
}

/// Saves the guest's XMM registers and MXCSR into the current vCPU's area if they are
/// still live (the lazy save of `entry.S`, done now): for hypervisor code about to use
/// SSE. The exit path reloads them.
#[inline]
pub fn save_fpu() {
    // SAFETY: ring 0 with GS at this CPU's block; the area pointer is the current vCPU's
    // 16-byte aligned FXSAVE area (set_fpu_area's promise); the stores only read the XMM
    // registers. clts first: the entry path leaves CR0.TS set until the hypervisor's
    // first FPU use.
    unsafe {
        core::arch::asm!(
            "cmp qword ptr gs:[48], {live}",
            "jne 2f",
            "clts",
            "mov {area}, gs:[24]",
            "stmxcsr [{area} + 24]",
            "movaps [{area} + 160], xmm0",
            "movaps [{area} + 176], xmm1",
            "movaps [{area} + 192], xmm2",
            "movaps [{area} + 208], xmm3",
            "movaps [{area} + 224], xmm4",
            "movaps [{area} + 240], xmm5",
            "movaps [{area} + 256], xmm6",
            "movaps [{area} + 272], xmm7",
            "movaps [{area} + 288], xmm8",
            "movaps [{area} + 304], xmm9",
            "movaps [{area} + 320], xmm10",
            "movaps [{area} + 336], xmm11",
            "movaps [{area} + 352], xmm12",
            "movaps [{area} + 368], xmm13",
            "movaps [{area} + 384], xmm14",
            "movaps [{area} + 400], xmm15",
            "mov qword ptr gs:[48], {xmm}",
            "2:",
            area = out(reg) _,
            live = const FpuSaved::Live as u64,
            xmm = const FpuSaved::Xmm as u64,
            options(nostack),
        );
    }
}

/// Saves the current vCPU's whole FPU/SSE image into its area, completing an XMM-only
/// save (the x87 state is still the guest's, the XMM registers are reloaded from the
/// area first): before the current vCPU changes or its area moves.
pub fn save_fpu_full() {
    // SAFETY: as in `save_fpu`; the XMM registers are overwritten (declared clobbered)
    // with the guest's values just saved, and MXCSR with the guest's saved value.
    unsafe {
        core::arch::asm!(
            "cmp qword ptr gs:[48], {full}",
            "je 3f",
            "clts",
            "mov {area}, gs:[24]",
            "cmp qword ptr gs:[48], {live}",
            "je 2f",
            "ldmxcsr [{area} + 24]",
            "movaps xmm0, [{area} + 160]",
            "movaps xmm1, [{area} + 176]",
            "movaps xmm2, [{area} + 192]",
            "movaps xmm3, [{area} + 208]",
            "movaps xmm4, [{area} + 224]",
            "movaps xmm5, [{area} + 240]",
            "movaps xmm6, [{area} + 256]",
            "movaps xmm7, [{area} + 272]",
            "movaps xmm8, [{area} + 288]",
            "movaps xmm9, [{area} + 304]",
            "movaps xmm10, [{area} + 320]",
            "movaps xmm11, [{area} + 336]",
            "movaps xmm12, [{area} + 352]",
            "movaps xmm13, [{area} + 368]",
            "movaps xmm14, [{area} + 384]",
            "movaps xmm15, [{area} + 400]",
            "2:",
            "fxsave64 [{area}]",
            "mov qword ptr gs:[48], {full}",
            "3:",
            area = out(reg) _,
            full = const FpuSaved::Full as u64,
            live = const FpuSaved::Live as u64,
            out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _,
            out("xmm4") _, out("xmm5") _, out("xmm6") _, out("xmm7") _,
            out("xmm8") _, out("xmm9") _, out("xmm10") _, out("xmm11") _,
            out("xmm12") _, out("xmm13") _, out("xmm14") _, out("xmm15") _,
            options(nostack),
        );
    }
}

/// Makes `area` the current vCPU's FXSAVE area, to be loaded at the next exit (after
/// saving the outgoing vCPU's registers into its own area).
///
/// # Safety
/// As for [`set_fpu_area`].
pub unsafe fn switch_fpu_area(area: u64) {
    save_fpu_full();
    // SAFETY: the caller's promise.
    unsafe { set_fpu_area(area) };
}

/// Records whether the current vCPU runs with virtual CR0.TS.
pub fn set_guest_ts(on: bool) {
    // SAFETY: writing a field of this CPU's own block.
    unsafe { (*current()).guest_ts = u64::from(on) };
}
