//! Per-CPU data reached through GS in ring 0 (`swapgs` on every entry from a guest).
//!
//! Only CPU 0 is brought up today, but nothing assumes one CPU: each CPU owns one
//! [`PerCpu`] with its own stack, TSS and current-vCPU pointers.

use core::cell::UnsafeCell;

/// Size of each CPU's hypervisor stack: 64 KiB, of which the deepest path of any test
/// scenario uses under half (`cargo xtask test` holds every run to three quarters). An
/// unoptimised build keeps a copy of every by-value struct on the way (a
/// `VCPUOP_initialise` context alone is over 5 KiB) and gets four times as much.
pub const STACK_SIZE: usize = if cfg!(debug_assertions) {
    256 * 1024
} else {
    64 * 1024
};
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
    /// Where the current vCPU's FPU/SSE state is (`entry.S`'s `FPU_SAVED_*`): live in the
    /// CPU, its XMM registers and MXCSR saved in its area (on the hypervisor's first SSE
    /// use since the entry), or its whole image in its area (before a vCPU switch, or a
    /// vCPU just switched in). The exit path reloads what was saved. See `entry.S`.
    pub fpu_saved: u8,
    /// Nonzero while the current vCPU has virtual CR0.TS set (the exit path then sets the
    /// real TS so the guest's next FPU use traps). Next to `fpu_saved`, so that the exit
    /// tests both ("nothing to reload, no TS to set": the common case) in one compare.
    pub guest_ts: u8,
    /// CR0 with TS set: the value every entry from a guest loads (`entry.S`'s
    /// `LAZY_FPU_ENTRY`), one load instead of a read, an `or` and the write. CR0 changes
    /// in nothing but TS after boot, so the value taken at boot stays right.
    pub cr0_ts: u64,
    /// The guest's rax while a lane that jumps into the guest kernel runs (`entry.S`'s
    /// `lane_jump` puts it back).
    pub lane_rax: u64,
    /// The vCPU on this CPU for the express paths of `entry.S` (a `Vcpu` in the static
    /// domain table; 0: none, and every express path declines). Set when a vCPU is
    /// switched in, cleared when its domain goes (machine.rs, `switch_to`, `teardown`).
    pub express_vcpu: u64,
    /// Where the `vcpu_info` of the vCPU on this CPU is, in the direct map (0 while none
    /// is loaded): for the express paths, the lanes and the exit path.
    pub vcpu_info: u64,
    /// What this CPU's registers hold for the vCPU on it (see [`Loaded`]).
    pub loaded: Loaded,
    /// For the express send of `entry.S`: the event state (`guests::Runtime`, in the
    /// static machine state) of the domain whose vCPU is [`express_vcpu`](Self::express_vcpu)
    /// (0 exactly when that is 0). Read without the machine lock, as the express paths
    /// read the vCPU: sound on this one CPU only, where no hypervisor code holds the
    /// lock while a guest runs (SMP would need the lock or per-domain event locks, as
    /// Xen's `evtchn_send` takes).
    pub express_events: u64,
    /// For the express send: that domain's shared-info page, in the direct map.
    pub express_shared: u64,
}

/// What the express paths of `entry.S` serve: the vCPU on this CPU and, for the
/// express send, its domain's event state and shared-info page ([`set_express`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Express {
    /// The `Vcpu`, in the static domain table.
    pub vcpu: u64,
    /// Its domain's `guests::Runtime`, in the static machine state.
    pub events: u64,
    /// Its domain's shared-info page, in the direct map.
    pub shared_info: u64,
}

impl Express {
    /// None: every express path declines (`express=off`, or no vCPU on the CPU).
    pub const OFF: Express = Express {
        vcpu: 0,
        events: 0,
        shared_info: 0,
    };
}

/// What a CPU's registers hold for the vCPU running on it: its page table, FS and GS
/// bases, CR0.TS wish and mode, so that the exit path writes a register only when the
/// vCPU's wishes change (a CR3 write also flushes the TLB). Per CPU, since it describes
/// this CPU's registers. Rust reaches it through the machine state's [`LoadedHere`]
/// (under the state's lock, like the state's other fields); the express paths of
/// `entry.S` through GS, while a guest runs and no Rust code holds the state; and the
/// `syscall` entry reads `kernel_mode` to tell a hypercall from a process's system call.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Loaded {
    /// CR3.
    pub root: u64,
    /// The FS base.
    pub fs: u64,
    /// The guest GS base written last (into KERNEL_GS_BASE, where it waits for the
    /// exit's `swapgs`).
    pub gs: u64,
    /// The per-CPU "guest wants CR0.TS" flag (`None`: unknown, as after a switch).
    pub ts: Option<bool>,
    /// The vCPU is in its kernel mode (which picked `root` and `gs`; a `syscall` from
    /// it is a hypercall, from its user mode a system call for its kernel, see
    /// `entry.S`); `None` while no vCPU is loaded.
    pub kernel_mode: Option<bool>,
}

impl Loaded {
    /// Nothing known: every register is written at the next load.
    pub const NOTHING: Loaded = Loaded {
        root: u64::MAX,
        fs: u64::MAX,
        gs: u64::MAX,
        ts: None,
        kernel_mode: None,
    };
}

/// `Some(true)` in [`Loaded::kernel_mode`], as the byte `entry.S` reads and writes.
// SAFETY: `Option<bool>` is one byte (asserted below), every bit of it initialised.
pub const MODE_KERNEL: u8 = unsafe { core::mem::transmute::<Option<bool>, u8>(Some(true)) };
/// `Some(false)`, likewise.
// SAFETY: as above.
pub const MODE_USER: u8 = unsafe { core::mem::transmute::<Option<bool>, u8>(Some(false)) };
const _: () = assert!(size_of::<Option<bool>>() == 1);

/// This CPU's [`Loaded`] record as a field of the machine state: Rust's one way to it
/// (`Deref`), so that it is borrowed with the state, under the state's lock.
pub struct LoadedHere(());

impl LoadedHere {
    /// # Safety
    /// One per CPU at most, owned by the machine state: two would hand out aliasing
    /// references to the same record.
    pub const unsafe fn new() -> LoadedHere {
        LoadedHere(())
    }
}

impl LoadedHere {
    /// The record: CPU 0's, reached at its link-time address, so that a test of it is
    /// one instruction. The machine state that owns this handle runs on CPU 0, the one
    /// CPU brought up; with more, each CPU's handle would reach its own block.
    #[inline(always)]
    fn record() -> *mut Loaded {
        // SAFETY: only the field's address is taken (no reference is made).
        unsafe { &raw mut (*CPU0.percpu.get()).loaded }
    }
}

impl core::ops::Deref for LoadedHere {
    type Target = Loaded;
    #[inline(always)]
    fn deref(&self) -> &Loaded {
        // SAFETY: the only Rust path to the record is this handle, borrowed as the
        // caller borrows the handle (the express paths that also write it run only while
        // a guest runs, with no Rust code in between).
        unsafe { &*Self::record() }
    }
}

impl core::ops::DerefMut for LoadedHere {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut Loaded {
        // SAFETY: as in `deref`, borrowed mutably as the handle is.
        unsafe { &mut *Self::record() }
    }
}

const _: () = {
    assert!(core::mem::offset_of!(PerCpu, scratch) == 8);
    assert!(core::mem::offset_of!(PerCpu, stack_top) == 16);
    assert!(core::mem::offset_of!(PerCpu, fpu_area) == 24);
    assert!(core::mem::offset_of!(PerCpu, fpu_saved) == 40);
    assert!(core::mem::offset_of!(PerCpu, guest_ts) == 41);
    assert!(core::mem::offset_of!(PerCpu, cr0_ts) == 48);
    assert!(core::mem::offset_of!(PerCpu, lane_rax) == 56);
    assert!(core::mem::offset_of!(PerCpu, express_vcpu) == 64);
    assert!(core::mem::offset_of!(PerCpu, vcpu_info) == 72);
    assert!(core::mem::offset_of!(PerCpu, loaded) == 80);
};

/// The size of the page left unmapped below each stack.
pub const GUARD_SIZE: usize = 4096;

/// A stack with its guard page below it: the page is unmapped at boot
/// ([`guard_pages`], `arch::x86_64::unmap_guard_pages`), so that a stack that outgrows
/// its `N` bytes faults there (a #PF that cannot be delivered on that stack: a double
/// fault, on its own interrupt stack, reported as an overflow) instead of writing over
/// whatever lies below it.
#[repr(C, align(4096))]
struct Guarded<const N: usize> {
    guard: [u8; GUARD_SIZE],
    stack: [u8; N],
}

impl<const N: usize> Guarded<N> {
    const ZERO: Guarded<N> = Guarded {
        guard: [0; GUARD_SIZE],
        stack: [0; N],
    };
}

struct CpuStorage {
    percpu: UnsafeCell<PerCpu>,
    stack: UnsafeCell<Guarded<STACK_SIZE>>,
    /// The NMI, #DF and #MC stacks.
    ist: UnsafeCell<[Guarded<IST_SIZE>; 3]>,
}

// SAFETY: each CPU touches only its own storage, with interrupts off in ring 0.
unsafe impl Sync for CpuStorage {}

// In `.bss` right after the frame table, at a place that does not move with the code
// units (link.ld).
#[unsafe(link_section = ".bss.hv_hot.cpu0")]
static CPU0: CpuStorage = CpuStorage {
    percpu: UnsafeCell::new(PerCpu {
        self_ptr: 0,
        scratch: 0,
        stack_top: 0,
        fpu_area: 0,
        cpu_id: 0,
        // Set by init_cpu0: a nonzero initialiser would move this whole static (stacks
        // included) from .bss into the loaded image.
        fpu_saved: 0,
        guest_ts: 0,
        cr0_ts: 0,
        lane_rax: 0,
        express_vcpu: 0,
        vcpu_info: 0,
        express_events: 0,
        express_shared: 0,
        // Set to `Loaded::NOTHING` by init_cpu0, for the reason given at `fpu_saved`
        // (`None` is a nonzero byte; `Some(false)` is zero).
        loaded: Loaded {
            root: 0,
            fs: 0,
            gs: 0,
            ts: Some(false),
            kernel_mode: Some(false),
        },
    }),
    stack: UnsafeCell::new(Guarded::ZERO),
    ist: UnsafeCell::new([Guarded::ZERO; 3]),
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
    let stack_top = stack_bottom() + STACK_SIZE as u64;
    let ist = CPU0.ist.get();
    // SAFETY: only addresses are taken, of fields of the static storage.
    let ist_tops =
        [0, 1, 2].map(|i| unsafe { &raw const (*ist)[i].stack as u64 } + IST_SIZE as u64);
    // SAFETY: boot runs once on CPU 0 before anything else uses this block.
    unsafe {
        (*percpu).self_ptr = percpu as u64;
        (*percpu).stack_top = stack_top;
        (*percpu).cpu_id = 0;
        // No vCPU's FPU state is in the registers yet: the first exit loads one.
        (*percpu).fpu_saved = FPU_SAVED_FULL;
        (*percpu).loaded = Loaded::NOTHING;
        (*percpu).cr0_ts = super::cpu::read_cr0() | super::cpu::CR0_TS;
        super::cpu::wrmsr(super::cpu::msr::GS_BASE, percpu as u64);
        super::cpu::wrmsr(super::cpu::msr::KERNEL_GS_BASE, 0);
    }
    CpuStacks {
        stack_top,
        ist_tops,
    }
}

/// The lowest address of CPU 0's hypervisor stack (its guard page is the page below).
fn stack_bottom() -> u64 {
    // SAFETY: only the address is taken.
    unsafe { &raw const (*CPU0.stack.get()).stack as u64 }
}

/// CPU 0's guard pages, each [`GUARD_SIZE`] bytes at the address given, with the name of
/// the stack above it: for the boot code to unmap.
pub fn guard_pages() -> [(u64, &'static str); 4] {
    let (stack, ist) = (CPU0.stack.get(), CPU0.ist.get());
    // SAFETY: only addresses are taken, of fields of the static storage.
    let main = unsafe { &raw const (*stack).guard as u64 };
    // SAFETY: as above.
    let guard = |i: usize| unsafe { &raw const (*ist)[i].guard as u64 };
    [
        (main, "the hypervisor stack"),
        (guard(0), "the NMI stack"),
        (guard(1), "the double-fault stack"),
        (guard(2), "the machine-check stack"),
    ]
}

/// How many bytes of CPU 0's hypervisor stack have ever been used: the stack starts
/// zeroed (.bss), so its deepest non-zero word marks the deepest use (a frame whose
/// deepest words were all zero would be missed, never counted too deep).
pub fn stack_high_water() -> usize {
    let bottom = stack_bottom() as *const u64;
    let words = STACK_SIZE / 8;
    // SAFETY: the stack's words are mapped and this CPU's own; those below the live
    // stack pointer are no longer anyone's, and reading them changes nothing.
    let unused = (0..words)
        .take_while(|&i| unsafe { bottom.add(i).read_volatile() } == 0)
        .count();
    (words - unused) * 8
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

/// `PerCpu::fpu_saved` when the vCPU's whole FXSAVE image is in its area (`entry.S`'s
/// `FPU_SAVED_FULL`; 0 means live in the CPU, `FPU_SAVED_XMM` the XMM part saved).
const FPU_SAVED_FULL: u8 = 1;

unsafe extern "C" {
    fn hv_save_fpu_xmm();
    fn hv_save_fpu_full();
}

/// Saves the guest's XMM registers and MXCSR into the current vCPU's area if they are
/// still live (the lazy save of `entry.S`, done now): for hypervisor code about to use
/// SSE. The exit path reloads them.
#[inline]
pub fn save_fpu() {
    // SAFETY: ring 0 with GS at this CPU's block, whose area pointer is the current
    // vCPU's 16-byte aligned FXSAVE area (set_fpu_area's promise); the routine only reads
    // the XMM registers and MXCSR and writes that area and the block's flag.
    unsafe { hv_save_fpu_xmm() };
}

/// Saves the current vCPU's whole FPU/SSE image into its area, completing an XMM-only
/// save (the x87 state is still the guest's, the XMM registers are reloaded from the
/// area first): before the current vCPU changes or its area moves.
pub fn save_fpu_full() {
    // SAFETY: as in `save_fpu`; the XMM registers it overwrites with the guest's saved
    // values are caller-saved in the C calling convention, so nothing of ours is lost.
    unsafe { hv_save_fpu_full() };
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

/// Points the express paths of `entry.S` at the vCPU on this CPU and its domain's event
/// state ([`Express::OFF`]: they all decline). The caller keeps all three alive and in
/// place while set, and the three of one domain.
pub fn set_express(express: Express) {
    // SAFETY: writing fields of this CPU's own block.
    unsafe {
        let percpu = current();
        (*percpu).express_vcpu = express.vcpu;
        (*percpu).express_events = express.events;
        (*percpu).express_shared = express.shared_info;
    }
}

/// Where the `vcpu_info` of the vCPU on this CPU is (its direct-map address; 0: none
/// loaded).
#[inline(always)]
pub fn vcpu_info() -> u64 {
    let address: u64;
    // SAFETY: reads a field of this CPU's own block through GS (see `current`).
    unsafe {
        core::arch::asm!(
            "mov {}, gs:[{offset}]",
            out(reg) address,
            offset = const core::mem::offset_of!(PerCpu, vcpu_info),
            options(nostack, readonly, preserves_flags)
        )
    };
    address
}

/// Records where the `vcpu_info` of the vCPU on this CPU is.
pub fn set_vcpu_info(address: u64) {
    // SAFETY: writing a field of this CPU's own block.
    unsafe { (*current()).vcpu_info = address };
}

/// Records whether the current vCPU runs with virtual CR0.TS.
pub fn set_guest_ts(on: bool) {
    // SAFETY: writing a field of this CPU's own block.
    unsafe { (*current()).guest_ts = u8::from(on) };
}
