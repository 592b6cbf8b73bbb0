//! User processes: each with its own address space (a user page table that maps only user
//! memory, and a kernel page table that maps the kernel plus the same user memory), entered
//! and left through the hypervisor (`HYPERVISOR_iret` out, the syscall callback and the
//! trap table in), scheduled round robin, with demand-paged anonymous memory.
//!
//! Every page-table change is a batched hypercall: empty tables are pinned, entries are
//! written with `mmu_update`, both roots are switched with one `mmuext_op`, and a process
//! is torn down by unpinning its roots (the hypervisor drops the references the whole tree
//! held) and returning its frames, which are scrubbed (`MMUEXT_CLEAR_PAGE`) before reuse.
//!
//! The kernel is not preemptive: the process table is touched only from kmain (before and
//! after the user world runs) and from the user-event path, which never nests.

use crate::Boot;
use crate::paravirt;
use crate::traps::GuestFrame;
use core::cell::RefCell;
use core::fmt::Write;
use pv_abi::arch_x86_64::{FLAT_KERNEL_SS64, FLAT_USER_CS64, FLAT_USER_SS64};
use pv_abi::callback::{CALLBACKF_MASK_EVENTS, CALLBACKTYPE_SYSCALL, CallbackRegister};
use pv_abi::guest;
use pv_abi::xen::{DOMID_SELF, MmuUpdate, MmuextOp, SharedInfo, UVMF_INVLPG, UVMF_LOCAL, VcpuInfo};
use pv_guest_kernel::pfn_alloc::PfnAllocator;

/// The `vector` the syscall entry stub records.
pub const SYSCALL_MARKER: u64 = 0x100;

use crate::vm::{KERNEL_BASE, PRESENT, USER, WRITABLE};
const PAGE: u64 = 4096;
const NO_EXECUTE: u64 = 1 << 63;

/// Where user programs are loaded.
pub const USER_CODE: u64 = 0x40_0000;
/// Top of the user stack (it grows down, demand-paged, up to `STACK_PAGES` pages).
pub const USER_STACK_TOP: u64 = 0x8000_0000;
const STACK_PAGES: u64 = 16;
/// The heap (brk) area.
pub const HEAP_BASE: u64 = 0x1000_0000;
const HEAP_LIMIT: u64 = HEAP_BASE + (16 << 20);
/// The anonymous-mapping (mmap) area.
pub const MMAP_BASE: u64 = 0x2000_0000;
const MMAP_LIMIT: u64 = MMAP_BASE + (64 << 20);

const MAX_PROCESSES: usize = 8;
const MAX_FRAMES_PER_PROCESS: usize = 128;

/// The page-fault vector.
const PAGE_FAULT: u64 = 14;
/// Page-fault error-code bit: the page was present (a protection fault, not a miss).
const PFEC_PRESENT: u64 = 1;

/// System-call numbers of this kernel's user ABI.
pub mod sys {
    /// write(fd, buf, len) -> len.
    pub const WRITE: u64 = 0;
    /// exit(code).
    pub const EXIT: u64 = 1;
    /// getpid() -> pid.
    pub const GETPID: u64 = 2;
    /// yield().
    pub const YIELD: u64 = 3;
    /// sleep(ms).
    pub const SLEEP_MS: u64 = 4;
    /// brk(new_end or 0) -> current end.
    pub const BRK: u64 = 5;
    /// mmap(len) -> address of fresh zeroed anonymous memory.
    pub const MMAP: u64 = 6;
    /// gs_word() -> the word at the kernel's GS base (a self-test's probe: the
    /// hypervisor must load the kernel's base whatever a process did to its own).
    pub const GS_WORD: u64 = 7;
}

/// Errors returned to user space (negative, Linux style).
const EFAULT: u64 = (-14i64) as u64;
const EINVAL: u64 = (-22i64) as u64;
const ENOMEM: u64 = (-12i64) as u64;
const ENOSYS: u64 = (-38i64) as u64;

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// exit(code).
    Exited(u64),
    /// Killed by the kernel for an exception it could not handle.
    Killed {
        /// The exception vector.
        vector: u64,
    },
    /// Stopped by the kernel after using up its CPU budget without finishing.
    OutOfTime,
}

/// Timer ticks of CPU a process may use before the kernel stops it.
const CPU_BUDGET_TICKS: u64 = 20;
/// The scheduler tick while processes run.
const TICK_NS: u64 = 10_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Ready,
    Sleeping { until_ns: u64 },
    Done(Ending),
}

/// A process's x87/SSE state (an FXSAVE image).
#[repr(C, align(16))]
#[derive(Clone, Copy)]
struct FpuState([u8; 512]);

impl FpuState {
    /// The state after `fninit` with SSE defaults: FCW 0x37f, MXCSR 0x1f80.
    fn initial() -> FpuState {
        let mut area = [0u8; 512];
        area[0..2].copy_from_slice(&0x037fu16.to_le_bytes());
        area[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
        FpuState(area)
    }

    /// Puts the live x87 state (control, status and tag words, last-instruction
    /// pointers, the eight registers) into this image, keeping its MXCSR and XMM
    /// registers. The event entry saves only MXCSR and the XMM registers (arch/
    /// events.S); the x87 registers, which no code of this kernel touches, still hold
    /// the interrupted process's state until a process switch moves them.
    fn take_live_x87(&mut self) {
        let mut live = FpuState([0; 512]);
        // SAFETY: FXSAVE writes the 512-byte, 16-byte-aligned image it is given and
        // changes no register.
        unsafe {
            core::arch::asm!(
                "fxsave64 [{}]",
                in(reg) &raw mut live.0,
                options(nostack, preserves_flags)
            );
        }
        self.0[..FX_MXCSR].copy_from_slice(&live.0[..FX_MXCSR]);
        self.0[FX_MXCSR_MASK..FX_XMM].copy_from_slice(&live.0[FX_MXCSR_MASK..FX_XMM]);
    }

    /// Loads this image's x87 state into the x87 registers, for the process about to
    /// run; its MXCSR and XMM registers are loaded by the way out of the entry stub.
    fn load_x87(&self) {
        // SAFETY: FXRSTOR reads the aligned image, whose MXCSR is a valid one (from
        // FXSAVE or `initial`), so it cannot fault. It loads the XMM registers too,
        // declared clobbered; MXCSR is put back as it was before the block ends, as
        // Rust code requires. The x87 registers it loads are not declared: on x86_64
        // the compiler keeps nothing in them, and no code of this kernel uses them
        // (the check `cargo xtask test` makes on its binary).
        unsafe {
            core::arch::asm!(
                "sub rsp, 8",
                "stmxcsr [rsp]",
                "fxrstor64 [{image}]",
                "ldmxcsr [rsp]",
                "add rsp, 8",
                image = in(reg) &raw const self.0,
                out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _,
                out("xmm4") _, out("xmm5") _, out("xmm6") _, out("xmm7") _,
                out("xmm8") _, out("xmm9") _, out("xmm10") _, out("xmm11") _,
                out("xmm12") _, out("xmm13") _, out("xmm14") _, out("xmm15") _,
                options(readonly)
            );
        }
    }
}

/// Offsets in an FXSAVE image: MXCSR, the mask of its valid bits (followed by the x87
/// registers), the XMM registers.
const FX_MXCSR: usize = 24;
const FX_MXCSR_MASK: usize = 28;
const FX_XMM: usize = 160;

/// Where the trap stub saved the interrupted x87/SSE state for `frame` (see
/// arch/traps.S: 512 bytes below the frame, rounded down to 16).
fn saved_fpu(frame: &GuestFrame) -> *mut FpuState {
    (((frame as *const GuestFrame as usize) - 512) & !0xf) as *mut FpuState
}

struct Process {
    pid: u64,
    state: State,
    context: GuestFrame,
    fpu: FpuState,
    /// Timer ticks that found this process running.
    ticks: u64,
    user_root: u64,
    kernel_root: u64,
    l3: u64,
    /// (va >> 30, L2 frame) and (va >> 21, L1 frame) of this process's tables.
    l2: heapless::Vec<(u64, u64), 4>,
    l1: heapless::Vec<(u64, u64), 16>,
    /// Every pseudo-physical frame the process holds (tables and memory).
    frames: heapless::Vec<u64, MAX_FRAMES_PER_PROCESS>,
    /// User pages mapped so far.
    mapped: heapless::Vec<u64, MAX_FRAMES_PER_PROCESS>,
    brk: u64,
    mmap_next: u64,
}

struct World {
    processes: [Option<Process>; MAX_PROCESSES],
    current: usize,
    frames: PfnAllocator,
    mfn_list: u64,
    boot_root: u64,
    kernel_l4_entry: u64,
    scratch: u64,
    shared_info: u64,
    next_pid: u64,
    /// Process switches the timer made (`preempt`), since the world began.
    preempt_switches: u64,
}

struct Cell(RefCell<Option<World>>);
// SAFETY: one vCPU, a non-preemptive kernel and no nesting of the user-event path: the
// RefCell is never borrowed from two places at once (a second borrow would panic, not
// race).
unsafe impl Sync for Cell {}
static WORLD: Cell = Cell(RefCell::new(None));

unsafe extern "C" {
    fn user_syscall_entry();
    fn enter_user_world(frame: *mut GuestFrame, fpu: *const FpuState);
    fn leave_user_world() -> !;
    static user_hello_start: u8;
    static user_hello_end: u8;
    static user_divzero_start: u8;
    static user_divzero_end: u8;
    static user_badaccess_start: u8;
    static user_badaccess_end: u8;
    static user_gsload_start: u8;
    static user_gsload_end: u8;
    static user_hostileargs_start: u8;
    static user_hostileargs_end: u8;
    static user_compat_start: u8;
    static user_compat_end: u8;
    static user_sleeper_start: u8;
    static user_sleeper_end: u8;
    static user_spin_start: u8;
    static user_spin_end: u8;
    static user_fpuspin_start: u8;
    static user_fpuspin_end: u8;
    static user_regkeep_start: u8;
    static user_regkeep_end: u8;
}

/// The kernel stack the hypervisor switches to on entry from user mode.
#[repr(C, align(16))]
struct TrapStack([u8; 32 * 1024]);
static mut TRAP_STACK: TrapStack = TrapStack([0; 32 * 1024]);

fn trap_stack_top() -> u64 {
    (&raw const TRAP_STACK) as u64 + core::mem::size_of::<TrapStack>() as u64
}

/// A user program's bytes.
fn program(start: &u8, end: &u8) -> &'static [u8] {
    let (start, end) = (start as *const u8, end as *const u8);
    // SAFETY: the start/end symbols bracket one program in .rodata (arch/user.S).
    unsafe { core::slice::from_raw_parts(start, end as usize - start as usize) }
}

/// Whether the kernel has a GS base of its own (the `gs_base_per_mode` self-test sets
/// one around its run): `sys::GS_WORD` reads at the kernel's GS base only then, and is
/// `ENOSYS` otherwise, so no process can make the kernel read at address 0 (found by
/// review: that crashed the domain).
pub static KERNEL_GS_SET: core::sync::atomic::AtomicBool =
    core::sync::atomic::AtomicBool::new(false);

/// A process that loads %gs itself (its base becomes 0), then asks its kernel for the
/// word at the kernel's GS base (`sys::GS_WORD`): exits 0 if it is `magic`, else 94.
pub fn gsload_program() -> &'static [u8] {
    // SAFETY: taking addresses of symbols defined in arch/user.S.
    unsafe { program(&user_gsload_start, &user_gsload_end) }
}

/// A process that makes system calls with arguments a careless kernel trips on (the GS
/// word with no kernel GS base, an mmap of nearly 2^64 bytes): exits 0 if the kernel
/// refuses both (ENOSYS, ENOMEM), else 96 or 97.
pub fn hostileargs_program() -> &'static [u8] {
    // SAFETY: taking addresses of symbols defined in arch/user.S.
    unsafe { program(&user_hostileargs_start, &user_hostileargs_end) }
}

/// A process that takes an x87/SSE state of its own, spins (without a system call) long
/// enough for the timer to preempt it, and exits 0 if its state survived, else 93.
pub fn fpuspin_program() -> &'static [u8] {
    // SAFETY: taking addresses of symbols defined in arch/user.S.
    unsafe { program(&user_fpuspin_start, &user_fpuspin_end) }
}

/// A process that checks its general registers across a demand-paging fault, a timer
/// preemption and two system calls (arch/user.S, `regkeep`): exits 0, or 41..46 naming
/// the check that failed.
pub fn regkeep_program() -> &'static [u8] {
    // SAFETY: taking addresses of symbols defined in arch/user.S.
    unsafe { program(&user_regkeep_start, &user_regkeep_end) }
}

/// The word `gsload_program` expects at the kernel's GS base.
pub const GS_MAGIC: u64 = 0x6773_6261_7365_6b72;

/// The programs the self-test runs.
pub fn programs() -> [(&'static str, &'static [u8]); 6] {
    // SAFETY: taking addresses of symbols defined in arch/user.S.
    unsafe {
        [
            ("hello", program(&user_hello_start, &user_hello_end)),
            ("divzero", program(&user_divzero_start, &user_divzero_end)),
            (
                "badaccess",
                program(&user_badaccess_start, &user_badaccess_end),
            ),
            ("sleeper", program(&user_sleeper_start, &user_sleeper_end)),
            ("spin", program(&user_spin_start, &user_spin_end)),
            ("compat", program(&user_compat_start, &user_compat_end)),
        ]
    }
}

fn peek(va: u64) -> u64 {
    // SAFETY: callers read the boot region (P2M, boot L4) or the mapped shared_info.
    unsafe { (va as *const u64).read_volatile() }
}

/// Why a process-management step failed.
type Error = &'static str;

fn update(reqs: &[MmuUpdate]) -> Result<(), Error> {
    // SAFETY: every request targets tables of a process being built or torn down, never
    // a mapping Rust code relies on.
    unsafe { guest::mmu_update(reqs, DOMID_SELF) }
        .map(|_| ())
        .map_err(|_| "mmu_update refused")
}

fn mmuext(ops: &[MmuextOp]) -> Result<(), Error> {
    // SAFETY: root switches always go to roots that map the kernel (slot 511) like boot.
    unsafe { guest::mmuext_op(ops, DOMID_SELF) }
        .map(|_| ())
        .map_err(|_| "mmuext_op refused")
}

impl World {
    fn mfn(&self, pfn: u64) -> u64 {
        peek(self.mfn_list + pfn * 8)
    }

    /// A frame for `process`, scrubbed if it was used before.
    fn take_frame(&mut self, process: usize) -> Result<u64, Error> {
        let got = self.frames.alloc().ok_or("out of guest frames")?;
        let mfn = self.mfn(got.pfn);
        let proc = self.processes[process].as_mut().ok_or("no such process")?;
        if proc.frames.push(got.pfn).is_err() {
            self.frames.free(got.pfn);
            return Err("process frame limit");
        }
        if got.dirty {
            mmuext(&[MmuextOp::clear_page(mfn)])?;
        }
        Ok(mfn)
    }

    /// Copies `bytes` into machine frame `mfn` through the scratch mapping.
    fn fill(&self, mfn: u64, bytes: &[u8]) -> Result<(), Error> {
        let map = |pte: u64| {
            // SAFETY: the scratch page is a padding page of the boot region that nothing
            // else uses.
            unsafe { guest::update_va_mapping(self.scratch, pte, UVMF_INVLPG | UVMF_LOCAL) }
                .map_err(|_| "scratch mapping refused")
        };
        map((mfn << 12) | PRESENT | WRITABLE | USER)?;
        // SAFETY: the scratch page now maps `mfn` writable; bytes.len() <= one page.
        unsafe {
            core::ptr::copy_nonoverlapping(bytes.as_ptr(), self.scratch as *mut u8, bytes.len())
        };
        map(0)?;
        Ok(())
    }

    /// Maps user page `va` of `process` to `mfn`, creating its L2 and L1 tables as needed;
    /// all in one mmu_update batch.
    fn map(&mut self, process: usize, va: u64, mfn: u64, flags: u64) -> Result<(), Error> {
        let mut batch: heapless::Vec<MmuUpdate, 3> = heapless::Vec::new();
        let table_flags = PRESENT | WRITABLE | USER;
        let l2 = match self.processes[process]
            .as_ref()
            .and_then(|p| find(&p.l2, va >> 30))
        {
            Some(l2) => l2,
            None => {
                let l2 = self.take_frame(process)?;
                let proc = self.processes[process].as_mut().ok_or("no such process")?;
                proc.l2
                    .push((va >> 30, l2))
                    .map_err(|_| "too many L2 tables")?;
                let slot = (proc.l3 << 12) + ((va >> 30) & 511) * 8;
                let _ = batch.push(MmuUpdate::normal(slot, (l2 << 12) | table_flags));
                l2
            }
        };
        let l1 = match self.processes[process]
            .as_ref()
            .and_then(|p| find(&p.l1, va >> 21))
        {
            Some(l1) => l1,
            None => {
                let l1 = self.take_frame(process)?;
                let proc = self.processes[process].as_mut().ok_or("no such process")?;
                proc.l1
                    .push((va >> 21, l1))
                    .map_err(|_| "too many L1 tables")?;
                let slot = (l2 << 12) + ((va >> 21) & 511) * 8;
                let _ = batch.push(MmuUpdate::normal(slot, (l1 << 12) | table_flags));
                l1
            }
        };
        let index = (va >> 12) & 511;
        if paravirt::mode() == paravirt::Mode::Paravirt {
            // One batch for the whole walk.
            let _ = batch.push(MmuUpdate::normal(
                (l1 << 12) + index * 8,
                (mfn << 12) | flags,
            ));
            return update(&batch);
        }
        if !batch.is_empty() {
            update(&batch)?;
        }
        paravirt::write_l1(l1, index, (mfn << 12) | flags)
    }

    fn spawn(&mut self, code: &[u8]) -> Result<u64, Error> {
        if code.len() as u64 > PAGE {
            return Err("program larger than a page");
        }
        let slot = self
            .processes
            .iter()
            .position(Option::is_none)
            .ok_or("process table full")?;
        let pid = self.next_pid;
        self.next_pid += 1;
        let context = GuestFrame {
            rip: USER_CODE,
            cs: u64::from(FLAT_USER_CS64),
            rflags: 0x202,
            rsp: USER_STACK_TOP,
            ss: u64::from(FLAT_USER_SS64),
            ..GuestFrame::default()
        };
        self.processes[slot] = Some(Process {
            pid,
            state: State::Ready,
            context,
            fpu: FpuState::initial(),
            ticks: 0,
            user_root: 0,
            kernel_root: 0,
            l3: 0,
            l2: heapless::Vec::new(),
            l1: heapless::Vec::new(),
            frames: heapless::Vec::new(),
            mapped: heapless::Vec::new(),
            brk: HEAP_BASE,
            mmap_next: MMAP_BASE,
        });
        let built = self.build(slot, code);
        if let Err(why) = built {
            // Its frames back, and its slot free: a slot left `Ready` with no roots
            // would be picked and fail to switch (found by review).
            self.reap(slot);
            self.processes[slot] = None;
            return Err(why);
        }
        Ok(pid)
    }

    fn build(&mut self, slot: usize, code: &[u8]) -> Result<(), Error> {
        let user_root = self.take_frame(slot)?;
        let kernel_root = self.take_frame(slot)?;
        let l3 = self.take_frame(slot)?;
        let code_frame = self.take_frame(slot)?;
        self.fill(code_frame, code)?;
        // Empty roots validate trivially; the hypervisor installs its own slots.
        let pins = [
            MmuextOp::pin_table(4, user_root),
            MmuextOp::pin_table(4, kernel_root),
        ];
        mmuext(&pins.map(|op| op.expect("level 4 is a valid pin level")))?;
        {
            let proc = self.processes[slot].as_mut().ok_or("no such process")?;
            proc.user_root = user_root;
            proc.kernel_root = kernel_root;
            proc.l3 = l3;
        }
        let table_flags = PRESENT | WRITABLE | USER;
        update(&[
            MmuUpdate::normal(user_root << 12, (l3 << 12) | table_flags),
            MmuUpdate::normal(kernel_root << 12, (l3 << 12) | table_flags),
            MmuUpdate::normal((kernel_root << 12) + 511 * 8, self.kernel_l4_entry),
        ])?;
        self.map(slot, USER_CODE, code_frame, PRESENT | USER)?;
        let proc = self.processes[slot].as_mut().ok_or("no such process")?;
        proc.mapped
            .push(USER_CODE)
            .map_err(|_| "too many mapped pages")
    }

    /// Switches both roots to those of process `slot` (or back to boot with `None`).
    fn activate(&self, slot: Option<usize>) -> Result<(), Error> {
        let (kernel, user) = match slot.and_then(|s| self.processes[s].as_ref()) {
            Some(p) => (p.kernel_root, p.user_root),
            None => (self.boot_root, 0),
        };
        paravirt::set_roots(kernel, user)
    }

    /// Unpins a finished process's roots and returns its frames.
    fn reap(&mut self, slot: usize) {
        let Some(proc) = self.processes[slot].as_mut() else {
            return;
        };
        for &(_, l1) in proc.l1.iter() {
            paravirt::forget_table(l1);
        }
        for root in [proc.user_root, proc.kernel_root] {
            if root != 0 {
                let _ = mmuext(&[MmuextOp::unpin_table(root)]);
            }
        }
        proc.user_root = 0;
        proc.kernel_root = 0;
        for &pfn in proc.frames.iter() {
            self.frames.free(pfn);
        }
        proc.frames.clear();
    }

    /// Whether `va` may be demand-paged for `proc`, and if so with which flags.
    fn demand_flags(proc: &Process, va: u64) -> Option<u64> {
        let data = PRESENT | WRITABLE | USER | NO_EXECUTE;
        let stack = USER_STACK_TOP - STACK_PAGES * PAGE..USER_STACK_TOP;
        let in_heap = (HEAP_BASE..proc.brk).contains(&va);
        let in_mmap = (MMAP_BASE..proc.mmap_next).contains(&va);
        (stack.contains(&va) || in_heap || in_mmap).then_some(data)
    }

    /// Makes sure every page of `[va, va + len)` is mapped in process `slot`, demand-
    /// paging those in its anonymous areas. False if any page is outside them.
    fn ensure_mapped(&mut self, slot: usize, va: u64, len: u64) -> bool {
        let Some(end) = va.checked_add(len) else {
            return false;
        };
        let mut page = va & !(PAGE - 1);
        while page < end {
            let Some(proc) = self.processes[slot].as_ref() else {
                return false;
            };
            if !proc.mapped.contains(&page) {
                let Some(flags) = Self::demand_flags(proc, page) else {
                    return false;
                };
                if self.demand_page(slot, page, flags).is_err() {
                    return false;
                }
            }
            page += PAGE;
        }
        true
    }

    /// Backs user page `page` of process `slot` with a fresh (zeroed) frame.
    fn demand_page(&mut self, slot: usize, page: u64, flags: u64) -> Result<(), Error> {
        let mfn = self.take_frame(slot)?;
        self.map(slot, page, mfn, flags)?;
        let proc = self.processes[slot].as_mut().ok_or("no such process")?;
        proc.mapped.push(page).map_err(|_| "too many mapped pages")
    }
}

fn find(list: &[(u64, u64)], key: u64) -> Option<u64> {
    list.iter().find(|(k, _)| *k == key).map(|&(_, v)| v)
}

// ----- time ---------------------------------------------------------------------------

/// Xen system time in nanoseconds from vCPU 0's `vcpu_time_info` (version seqlock, TSC
/// scaled by mul/shift), or `None` if the hypervisor publishes no time.
fn system_time_ns(shared_info: u64) -> Option<u64> {
    use core::mem::offset_of;
    let base =
        shared_info + (offset_of!(SharedInfo, vcpu_info) + offset_of!(VcpuInfo, time)) as u64;
    loop {
        // SAFETY: shared_info is mapped (read-write) for the kernel's life; the fields are
        // read with volatile loads inside the version seqlock.
        let (version, stamp, system, mul, shift, again) = unsafe {
            let version = (base as *const u32).read_volatile();
            core::sync::atomic::fence(core::sync::atomic::Ordering::Acquire);
            let stamp = ((base + 8) as *const u64).read_volatile();
            let system = ((base + 16) as *const u64).read_volatile();
            let mul = ((base + 24) as *const u32).read_volatile();
            let shift = ((base + 28) as *const i8).read_volatile();
            core::sync::atomic::fence(core::sync::atomic::Ordering::Acquire);
            (
                version,
                stamp,
                system,
                mul,
                shift,
                (base as *const u32).read_volatile(),
            )
        };
        if version & 1 != 0 || version != again {
            continue;
        }
        if mul == 0 {
            return None;
        }
        // SAFETY: rdtsc is unprivileged.
        let tsc = unsafe { core::arch::x86_64::_rdtsc() };
        let mut delta = tsc.wrapping_sub(stamp);
        delta = if shift >= 0 {
            delta << shift
        } else {
            delta >> -shift
        };
        return Some(system + ((u128::from(delta) * u128::from(mul)) >> 32) as u64);
    }
}

// ----- the user-event path ------------------------------------------------------------

fn say(args: core::fmt::Arguments<'_>) {
    let _ = crate::console::Console.write_fmt(args);
}

/// A system call or an exception from user mode.
pub fn user_event(frame: &mut GuestFrame) {
    let mut guard = WORLD.0.borrow_mut();
    let Some(world) = guard.as_mut() else {
        panic!("user event with no process world")
    };
    let slot = world.current;
    if world.processes[slot].is_none() {
        panic!("user event with no current process")
    }
    // The frame is the process's live context: it is saved into the process table only
    // if another process runs next (`switch_to`).
    let switch = if frame.vector == SYSCALL_MARKER {
        let (result, switch) = syscall(world, slot, frame);
        frame.rax = result;
        switch
    } else {
        exception(world, slot, frame)
    };
    let next = if switch {
        pick(world, slot)
    } else {
        Some(slot)
    };
    match next {
        Some(next) => {
            switch_to(world, slot, next, frame, Saved::Whole);
        }
        None => {
            if world.activate(None).is_err() {
                panic!("cannot switch back to the boot address space");
            }
            drop(guard);
            // SAFETY: kmain entered the user world through enter_user_world and waits in
            // it; its saved stack and registers are intact (the user world ran only on
            // the trap stack).
            unsafe { leave_user_world() }
        }
    }
}

/// Resumes process `next` through `frame`, the live context of the interrupted process
/// `slot`: if it is another process, saves that context (registers, x87/SSE state) in
/// `slot`'s entry unless it ended, switches address spaces and loads `next`'s; if it is
/// the same process, nothing moves. The state area below the frame (arch/traps.S,
/// arch/events.S), which holds what `saved` says, is touched only on a switch.
#[inline(always)]
fn switch_to(world: &mut World, slot: usize, next: usize, frame: &mut GuestFrame, saved: Saved) {
    // The common case (the same process goes on) without a call.
    if next != slot {
        switch_process(world, slot, next, frame, saved);
    }
}

/// What the entry stub saved in the state area below a frame.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Saved {
    /// The whole x87/SSE image (the trap and system-call stubs, arch/traps.S: FXSAVE,
    /// and FXRSTOR on the way out).
    Whole,
    /// MXCSR and the XMM registers only (the event stub, arch/events.S): the x87
    /// registers are still live, and a switch moves them itself.
    SseOnly,
}

/// [`switch_to`] another process, out of line.
#[inline(never)]
fn switch_process(
    world: &mut World,
    slot: usize,
    next: usize,
    frame: &mut GuestFrame,
    saved: Saved,
) {
    let fpu = saved_fpu(frame);
    if let Some(old) = world.processes[slot].as_mut()
        && !matches!(old.state, State::Done(_))
    {
        old.context = *frame;
        // SAFETY: the entry stub saved the interrupted process's state there and
        // restores from there; nothing else uses the area meanwhile.
        old.fpu = unsafe { fpu.read() };
        if saved == Saved::SseOnly {
            old.fpu.take_live_x87();
        }
    }
    world.current = next;
    if world.activate(Some(next)).is_err() {
        panic!("cannot switch to process {next}");
    }
    let Some(proc) = world.processes[next].as_ref() else {
        panic!("resuming a process that does not exist")
    };
    // SAFETY: as above; the stub restores this state into the resumed process.
    unsafe { fpu.write(proc.fpu) };
    if saved == Saved::SseOnly {
        proc.fpu.load_x87();
    }
    *frame = proc.context;
}

/// Handles the system call in process `slot`'s live context `regs`. Returns the result
/// for its rax and whether another process should run.
fn syscall(world: &mut World, slot: usize, regs: &GuestFrame) -> (u64, bool) {
    let Some(proc) = world.processes[slot].as_mut() else {
        return (ENOSYS, true);
    };
    let pid = proc.pid;
    let (result, switch) = match regs.rax {
        sys::WRITE => (write(world, slot, regs.rdi, regs.rsi, regs.rdx), false),
        sys::EXIT => {
            finish(world, slot, Ending::Exited(regs.rdi));
            (0, true)
        }
        sys::GETPID => (pid, false),
        sys::GS_WORD if !KERNEL_GS_SET.load(core::sync::atomic::Ordering::Relaxed) => {
            (ENOSYS, false)
        }
        sys::GS_WORD => {
            let word: u64;
            // SAFETY: reads one word at the GS base, which the kernel set (the
            // gs_base_per_mode self-test) to a static word. A hypervisor that handed the
            // kernel a process's GS base instead makes it fault: the bug that test finds.
            unsafe {
                core::arch::asm!("mov {}, qword ptr gs:[0]", out(reg) word, options(nostack, readonly))
            };
            (word, false)
        }
        sys::YIELD => (0, true),
        sys::SLEEP_MS => {
            let now = system_time_ns(world.shared_info);
            let until_ns = now.map_or(0, |n| n.saturating_add(regs.rdi.saturating_mul(1_000_000)));
            if let Some(proc) = world.processes[slot].as_mut() {
                proc.state = State::Sleeping { until_ns };
            }
            (0, true)
        }
        sys::BRK => {
            let Some(proc) = world.processes[slot].as_mut() else {
                return (ENOSYS, true);
            };
            if (HEAP_BASE..=HEAP_LIMIT).contains(&regs.rdi) && regs.rdi >= proc.brk {
                proc.brk = regs.rdi;
            }
            (proc.brk, false)
        }
        sys::MMAP => {
            let Some(proc) = world.processes[slot].as_mut() else {
                return (ENOSYS, true);
            };
            // A length from the process: no arithmetic on it may wrap (found by review: a
            // length near 2^64 wrapped below the limit and moved `mmap_next` back).
            let len = regs.rdi.div_ceil(PAGE).checked_mul(PAGE);
            let end = len.and_then(|len| proc.mmap_next.checked_add(len));
            match (len, end) {
                (Some(0), _) => (EINVAL, false),
                (Some(len), Some(end)) if end <= MMAP_LIMIT => {
                    let at = proc.mmap_next;
                    proc.mmap_next += len;
                    (at, false)
                }
                _ => (ENOMEM, false),
            }
        }
        _ => (ENOSYS, false),
    };
    (result, switch)
}

fn write(world: &mut World, slot: usize, fd: u64, buf: u64, len: u64) -> u64 {
    if fd != 1 && fd != 2 {
        return EINVAL;
    }
    if len > PAGE || buf.checked_add(len).is_none_or(|end| end > USER_STACK_TOP) {
        return EFAULT;
    }
    if !world.ensure_mapped(slot, buf, len) {
        return EFAULT;
    }
    // SAFETY: every page of the buffer is mapped in the user half of the current kernel
    // root (slot 0 of each process's kernel L4 is its user L3), checked just above.
    let bytes = unsafe { core::slice::from_raw_parts(buf as *const u8, len as usize) };
    let pid = world.processes[slot].as_ref().map_or(0, |p| p.pid);
    let text = core::str::from_utf8(bytes).unwrap_or("<not UTF-8>");
    say(format_args!(
        "pv-guest: [pid {pid}] {}\n",
        text.trim_end_matches('\n')
    ));
    len
}

/// An exception in user mode (process `slot`'s live context `regs`): demand-page a
/// fault in an anonymous area, or kill.
fn exception(world: &mut World, slot: usize, regs: &GuestFrame) -> bool {
    let (vector, error_code) = (regs.vector, regs.error_code);
    if vector == PAGE_FAULT && error_code & PFEC_PRESENT == 0 {
        let cr2 = cr2(world.shared_info);
        let page = cr2 & !(PAGE - 1);
        let flags = world.processes[slot]
            .as_ref()
            .and_then(|p| World::demand_flags(p, page));
        if let Some(flags) = flags
            && world.demand_page(slot, page, flags).is_ok()
        {
            return false;
        }
    }
    let (pid, rip) = (
        world.processes[slot].as_ref().map_or(0, |p| p.pid),
        regs.rip,
    );
    say(format_args!(
        "pv-guest: process {pid} killed: exception {vector} at {rip:#x}\n"
    ));
    finish(world, slot, Ending::Killed { vector });
    true
}

/// The faulting address of the last page fault, from vcpu_info.
fn cr2(shared_info: u64) -> u64 {
    use core::mem::offset_of;
    let at = offset_of!(SharedInfo, vcpu_info) + offset_of!(VcpuInfo, arch);
    peek(shared_info + at as u64)
}

fn finish(world: &mut World, slot: usize, ending: Ending) {
    if let Some(proc) = world.processes[slot].as_mut() {
        proc.state = State::Done(ending);
    }
    // Leave its address space before taking it apart.
    let _ = world.activate(None);
    world.reap(slot);
}

/// The next process to run after `slot`, round robin; waits (yielding the CPU to other
/// domains) while only sleepers are left; `None` when every process is done.
fn pick(world: &mut World, slot: usize) -> Option<usize> {
    loop {
        let now = system_time_ns(world.shared_info);
        let mut sleepers = false;
        for step in 1..=MAX_PROCESSES {
            let index = (slot + step) % MAX_PROCESSES;
            let Some(proc) = world.processes[index].as_mut() else {
                continue;
            };
            match proc.state {
                State::Ready => return Some(index),
                State::Sleeping { until_ns } => {
                    // Without a time source (now == None) a sleep lasts one round.
                    if now.is_none_or(|now| now >= until_ns) {
                        proc.state = State::Ready;
                        return Some(index);
                    }
                    sleepers = true;
                }
                State::Done(_) => {}
            }
        }
        if !sleepers {
            return None;
        }
        let _ = guest::sched_yield();
    }
}

// ----- running processes from the kernel ----------------------------------------------

/// How each program ended, and what the run cost in frames.
pub struct RunReport {
    /// (program name, pid, ending) in spawn order.
    pub endings: heapless::Vec<(&'static str, u64, Ending), MAX_PROCESSES>,
    /// Free guest frames before and after.
    pub free_before: usize,
    /// Free guest frames after every process was reaped.
    pub free_after: usize,
    /// How often the timer took the CPU from one process for another.
    pub preempt_switches: u64,
}

/// Prepares the process world: the guest frames after the boot region, shared_info
/// mapped (for CR2 and time), the syscall callback and the kernel stack for user entries.
pub fn init(boot: &Boot, mode: paravirt::Mode) -> Result<(), Error> {
    let info = boot.info;
    // Xen's layout: the boot region ends at the 4 MiB boundary at least 512 KiB after
    // the boot stack.
    let stack_end = boot.initial_rsp;
    let mut v_end = stack_end.div_ceil(4 << 20) * (4 << 20);
    if v_end - stack_end < 512 * 1024 {
        v_end += 4 << 20;
    }
    let first_free = (v_end - KERNEL_BASE) / PAGE;
    let count = info.nr_pages.saturating_sub(first_free) as usize;
    let boot_root = peek(info.mfn_list + (info.pt_base - KERNEL_BASE) / PAGE * 8);
    let shared_info = boot.initial_rsp + 33 * PAGE;
    let scratch = boot.initial_rsp + 32 * PAGE;
    // SAFETY: two padding pages of the boot region, used by nothing else, become the
    // shared_info mapping and the scratch window.
    unsafe {
        guest::update_va_mapping(
            shared_info,
            info.shared_info | PRESENT | WRITABLE | USER,
            UVMF_INVLPG | UVMF_LOCAL,
        )
    }
    .map_err(|_| "cannot map shared_info")?;
    paravirt::init(mode, shared_info, boot.initial_rsp + 34 * PAGE)?;
    let syscall = CallbackRegister::new(
        CALLBACKTYPE_SYSCALL,
        CALLBACKF_MASK_EVENTS,
        user_syscall_entry as *const () as u64,
    );
    // SAFETY: the syscall entry stub is written for the PV syscall frame; the trap stack
    // is reserved for entries from user mode.
    unsafe {
        guest::callback_register(&syscall).map_err(|_| "cannot register the syscall callback")?;
        guest::stack_switch(u64::from(FLAT_KERNEL_SS64), trap_stack_top())
            .map_err(|_| "stack_switch refused")?;
    }
    *WORLD.0.borrow_mut() = Some(World {
        processes: [const { None }; MAX_PROCESSES],
        current: 0,
        frames: PfnAllocator::new(first_free, count),
        mfn_list: info.mfn_list,
        boot_root,
        kernel_l4_entry: peek(info.pt_base + 511 * 8),
        scratch,
        shared_info,
        next_pid: 1,
        preempt_switches: 0,
    });
    Ok(())
}

/// Spawns `programs`, runs them until every one has ended, and reports.
pub fn run(programs: &[(&'static str, &'static [u8])]) -> Result<RunReport, Error> {
    let mut report = RunReport {
        endings: heapless::Vec::new(),
        free_before: 0,
        free_after: 0,
        preempt_switches: 0,
    };
    let mut names: heapless::Vec<(&'static str, u64, usize), MAX_PROCESSES> = heapless::Vec::new();
    let first = {
        let mut guard = WORLD.0.borrow_mut();
        let world = guard.as_mut().ok_or("process world not initialised")?;
        report.free_before = world.frames.free_count();
        report.preempt_switches = world.preempt_switches;
        for &(name, code) in programs {
            let pid = match world.spawn(code) {
                Ok(pid) => pid,
                Err(why) => {
                    // The ones spawned already go back, frames and slots, so that a
                    // later run finds the table as this one did (found by review).
                    for &(_, _, slot) in &names {
                        world.reap(slot);
                        world.processes[slot] = None;
                    }
                    return Err(why);
                }
            };
            let slot = world
                .processes
                .iter()
                .position(|p| p.as_ref().is_some_and(|p| p.pid == pid));
            let _ = names.push((name, pid, slot.unwrap_or(0)));
        }
        let first = names.first().map(|n| n.2).ok_or("no programs")?;
        world.current = first;
        world.activate(Some(first))?;
        world.processes[first]
            .as_ref()
            .map(|p| (p.context, p.fpu))
            .ok_or("no first process")?
    };
    let (first, first_fpu) = first;
    let top = trap_stack_top() - core::mem::size_of::<GuestFrame>() as u64;
    let frame = top as *mut GuestFrame;
    let was_masked = paravirt::irqs_masked();
    // Ticks let the kernel take the CPU from a process that never makes a system call
    // (they reach `preempt` through the event upcall once the thread world runs).
    let ticking = crate::threads::started() && guest::vcpu_set_periodic_timer(0, TICK_NS).is_ok();
    // SAFETY: the frame slot at the top of the trap stack is what the trap-return path
    // pops; enter_user_world loads the first process's x87/SSE state from `first_fpu`, an
    // FXSAVE image (none of the kernel's is left to it), and returns once the last
    // process has ended.
    unsafe {
        frame.write(first);
        enter_user_world(frame, &raw const first_fpu);
    }
    if ticking {
        let _ = guest::vcpu_stop_periodic_timer(0);
    }
    // Entries from user mode mask events (the syscall callback asks for it); give the
    // kernel back the event mask it had.
    // Restoring state, not the kernel's "interrupts on": always the paravirtual write
    // (a trapped `sti` is a no-op on Xen).
    crate::events::restore(was_masked);
    let mut guard = WORLD.0.borrow_mut();
    let world = guard.as_mut().ok_or("process world lost")?;
    for (name, pid, slot) in names {
        if let Some(State::Done(ending)) = world.processes[slot].as_ref().map(|p| p.state) {
            let _ = report.endings.push((name, pid, ending));
        }
        world.processes[slot] = None;
    }
    report.free_after = world.frames.free_count();
    report.preempt_switches = world.preempt_switches - report.preempt_switches;
    Ok(report)
}

// ----- the balloon ----------------------------------------------------------------------

/// What a balloon round trip observed.
#[derive(Debug)]
pub struct BalloonReport {
    /// Pages the domain held before, after giving `n` back, and after taking them again.
    pub reservation: [u64; 3],
}

/// Gives `N` free frames back to the hypervisor (`XENMEM_decrease_reservation`), then
/// takes memory for the same pseudo-physical frames again (`XENMEM_populate_physmap`),
/// keeping the P2M list up to date and checking the M2P and that the new memory is zero.
pub fn balloon_round_trip<const N: usize>() -> Result<BalloonReport, Error> {
    let mut guard = WORLD.0.borrow_mut();
    let world = guard.as_mut().ok_or("process world not initialised")?;
    let mut pfns = [0u64; N];
    for i in 0..N {
        let Some(frame) = world.frames.alloc() else {
            for &pfn in &pfns[..i] {
                world.frames.free(pfn);
            }
            return Err("no free frames to give back");
        };
        pfns[i] = frame.pfn;
    }
    let result = balloon(world, &pfns);
    // Back to the allocator go only the frames with memory behind them: one given to
    // the hypervisor and not repopulated (a call that stopped half-way) has no machine
    // frame in its P2M entry, and would give whoever took it nothing (found by review).
    for &pfn in &pfns {
        if world.mfn(pfn) != u64::MAX {
            world.frames.free(pfn);
        }
    }
    result
}

fn balloon<const N: usize>(world: &mut World, pfns: &[u64; N]) -> Result<BalloonReport, Error> {
    let reservation =
        || guest::current_reservation(DOMID_SELF).map_err(|_| "current_reservation failed");
    let before = reservation()?;
    let p2m = |pfn: u64| (world.mfn_list + pfn * 8) as *mut u64;
    let mut extents = pfns.map(|pfn| world.mfn(pfn));
    // SAFETY: the frames were free in our allocator: nothing maps or uses them.
    let freed = unsafe { guest::decrease_reservation(&mut extents, 0, DOMID_SELF) }
        .map_err(|_| "decrease_reservation failed")?;
    // The frames given back (the first `freed`) have no machine frame behind them now.
    for &pfn in &pfns[..(freed as usize).min(N)] {
        // SAFETY: the P2M list is ours and mapped writable in the boot region.
        unsafe { p2m(pfn).write_volatile(u64::MAX) };
    }
    if freed != N as u64 {
        return Err("decrease_reservation gave back fewer frames");
    }
    let deflated = reservation()?;
    let mut extents = *pfns;
    // SAFETY: the listed pseudo-physical frames back nothing now.
    let populated = unsafe { guest::populate_physmap(&mut extents, 0, DOMID_SELF) }
        .map_err(|_| "populate_physmap failed")?;
    let populated_now = (populated as usize).min(N);
    for (&pfn, &mfn) in pfns.iter().zip(extents.iter()).take(populated_now) {
        // SAFETY: as above.
        unsafe { p2m(pfn).write_volatile(mfn) };
    }
    if populated != N as u64 {
        return Err("populate_physmap returned fewer frames");
    }
    for (&pfn, &mfn) in pfns.iter().zip(extents.iter()) {
        if peek(0xffff_8000_0000_0000 + mfn * 8) != pfn {
            return Err("the M2P does not name the repopulated frame");
        }
    }
    // The new memory must not carry anyone's data.
    world.fill_check_zero(extents[0])?;
    let after = reservation()?;
    Ok(BalloonReport {
        reservation: [before, deflated, after],
    })
}

impl World {
    /// Maps `mfn` at the scratch page and checks it reads as zeroes.
    fn fill_check_zero(&self, mfn: u64) -> Result<(), Error> {
        let map = |pte: u64| {
            // SAFETY: the scratch page is reserved for this module.
            unsafe { guest::update_va_mapping(self.scratch, pte, UVMF_INVLPG | UVMF_LOCAL) }
                .map_err(|_| "scratch mapping refused")
        };
        map((mfn << 12) | PRESENT | USER)?;
        // SAFETY: the scratch page maps `mfn` read-only for this check.
        let zero = unsafe { core::slice::from_raw_parts(self.scratch as *const u64, 512) }
            .iter()
            .all(|&w| w == 0);
        map(0)?;
        if zero {
            Ok(())
        } else {
            Err("repopulated memory is not zeroed")
        }
    }
}

// ----- preemption ---------------------------------------------------------------------

/// A timer tick arrived while a user process ran (the event upcall came from user mode):
/// charge the tick to it, stop it if its budget is gone, and give the CPU to the next
/// ready process, if any. `frame` is the upcall's frame; the x87/SSE state sits below it.
pub fn preempt(frame: &mut GuestFrame) {
    let Ok(mut guard) = WORLD.0.try_borrow_mut() else {
        return;
    };
    let Some(world) = guard.as_mut() else { return };
    let slot = world.current;
    let Some(proc) = world.processes[slot].as_mut() else {
        return;
    };
    if proc.state != State::Ready {
        return;
    }
    proc.ticks += 1;
    if proc.ticks > CPU_BUDGET_TICKS {
        let pid = proc.pid;
        say(format_args!(
            "pv-guest: process {pid} stopped: CPU budget used up\n"
        ));
        finish(world, slot, Ending::OutOfTime);
    }
    let ready = (1..=MAX_PROCESSES)
        .map(|step| (slot + step) % MAX_PROCESSES)
        .find(|&i| {
            world.processes[i]
                .as_ref()
                .is_some_and(|p| p.state == State::Ready)
        });
    // With nobody ready but sleepers left, wait for one the ordinary way.
    match ready.or_else(|| pick(world, slot)) {
        Some(next) => {
            if next != slot {
                world.preempt_switches += 1;
            }
            switch_to(world, slot, next, frame, Saved::SseOnly)
        }
        None => {
            let _ = world.activate(None);
            drop(guard);
            // SAFETY: as in user_event: kmain waits in enter_user_world.
            unsafe { leave_user_world() }
        }
    }
}
