//! The running machine: the frame table, the domains, and which vCPU is on the CPU.
//!
//! All state sits behind one lock, taken on every guest entry. Ring 0 never takes an
//! interrupt, so the lock is only ever contended across CPUs (one CPU today).

use crate::arch::x86_64::percpu::{Express, Loaded, LoadedHere};
use crate::arch::x86_64::{self as x86, cpu, pvh};
use crate::console::GuestConsole;
use core::cell::UnsafeCell;
use hypervisor::bootimage::{BootImage, MAX_DOMAINS};
use hypervisor::builder::{self, Machine};
use hypervisor::domain::{Domain, DomainState};
use hypervisor::frames::{FrameInfo, FrameTable};
use hypervisor::guestmem::{GuestMem, WalkMemo};
use hypervisor::guests::{Runtime, events};
use hypervisor::hypercall::{self, After, Context};
use hypervisor::mm::{Mfn, PAGE_SIZE, PhysMem};
use hypervisor::paging::Paging;
use hypervisor::regs::{TrapFrame, VECTOR_SYSCALL};
use hypervisor::sched::{Scheduler, VcpuRef};
use hypervisor::time::{Clock, Nanos, Wallclock};
use hypervisor::traps::{self, TrapContext};
use pv_abi::ext::{EXTOP_PORT_READ, EXTOP_PORT_WRITE};
use pv_abi::xen::{Hypercall, VcpuInfo};
use spin::Mutex;
use zerocopy::{Immutable, IntoBytes};

mod debugkeys;
mod lanes;
mod run;

pub use lanes::{
    IretLaneFrame, LaneExit, LaneJump, PORT_NOT_READ, iret_lane, page_fault_lane, paging_lane,
    send_lane, send_lane_exit, upcall_lane, user_syscall_lane,
};

/// Debug-exit value: every domain powered off with code 0.
pub const EXIT_CLEAN: u8 = 0;
/// Debug-exit value: the run finished, but some domain crashed or failed.
pub const EXIT_FAILED: u8 = 1;
/// Debug-exit value: the hypervisor itself failed.
pub const EXIT_PANIC: u8 = 2;

/// Frames the frame table covers: all of the direct map (4 GiB).
const MAX_FRAMES: usize = (x86::DIRECTMAP_SIZE / PAGE_SIZE) as usize;
/// Physical memory below this is left to firmware.
const LOW_MEMORY_END: u64 = 1 << 20;

/// Machine memory through the direct map.
pub struct DirectMap;

impl DirectMap {
    /// Whether `root` is the page table loaded on this CPU (so the MMU walks it). CR3
    /// holds a bare frame address (`cpu::write_cr3`), so no mask: a CR3 with flag bits
    /// would only send every copy to the software walk, never a copy to the wrong tables.
    #[inline]
    fn loaded(root: Mfn) -> bool {
        cpu::read_cr3() == root.addr()
    }

    /// Where machine address `addr` is in the direct map, for `len` bytes; a hypervisor
    /// bug (a panic) if any of them lies outside it. Two compares inline, the panic's
    /// formatting out of line (as [`word_pointer`](Self::word_pointer)).
    #[inline(always)]
    fn pointer(addr: u64, len: usize) -> *mut u8 {
        let len = len as u64;
        if len > x86::DIRECTMAP_SIZE || addr > x86::DIRECTMAP_SIZE - len {
            outside_direct_map(addr);
        }
        (x86::DIRECTMAP_BASE + addr) as *mut u8
    }

    /// [`pointer`](Self::pointer) for one aligned-or-not 64-bit word (a page-table entry,
    /// an event word: the paging and event paths' every access): one compare, with the
    /// panic's formatting out of line so that the check leaves nothing in memory.
    #[inline(always)]
    fn word_pointer(addr: u64) -> *mut u64 {
        if addr > x86::DIRECTMAP_SIZE - 8 {
            outside_direct_map(addr);
        }
        (x86::DIRECTMAP_BASE + addr) as *mut u64
    }
}

/// A read-modify-write of a word that is not aligned (no caller passes one: event words
/// are), as two accesses.
#[cold]
#[inline(never)]
fn unaligned_fetch_update(mem: &DirectMap, addr: u64, update: impl FnOnce(u64) -> u64) -> u64 {
    let old = mem.read_u64(addr);
    mem.write_u64(addr, update(old));
    old
}

#[cold]
#[inline(never)]
fn outside_direct_map(addr: u64) -> ! {
    panic!("machine address {addr:#x} outside the direct map")
}

impl PhysMem for DirectMap {
    #[inline(always)]
    fn claim_vector_registers() {
        x86::percpu::save_fpu();
    }

    #[inline]
    fn read(&self, addr: u64, buf: &mut [u8]) {
        let source = Self::pointer(addr, buf.len());
        // SAFETY: the range lies in the direct map (checked), which maps RAM for the
        // hypervisor's whole life; callers pass only frames they have checked. Raw copies,
        // never references, since a guest on another CPU may write the same bytes.
        unsafe { core::ptr::copy_nonoverlapping(source, buf.as_mut_ptr(), buf.len()) };
    }

    #[inline]
    fn write(&self, addr: u64, data: &[u8]) {
        let target = Self::pointer(addr, data.len());
        // SAFETY: as in `read`.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), target, data.len()) };
    }

    // One load or store for the page-table entries the paging code and the guest-memory
    // walk read and write all the time (the defaults copy through a byte buffer).
    #[inline]
    fn read_u64(&self, addr: u64) -> u64 {
        let source = Self::word_pointer(addr);
        if !source.is_aligned() {
            let mut bytes = [0; 8];
            self.read(addr, &mut bytes);
            return u64::from_le_bytes(bytes);
        }
        // SAFETY: as in `read`, and aligned; volatile, since a guest may write the word.
        unsafe { source.read_volatile() }
    }

    #[inline]
    fn write_u64(&self, addr: u64, value: u64) {
        let target = Self::word_pointer(addr);
        if !target.is_aligned() {
            self.write(addr, &value.to_le_bytes());
            return;
        }
        // SAFETY: as in `read`, and aligned.
        unsafe { target.write_volatile(value) }
    }

    // The event paths' read-modify-writes: locked instructions, since the guest (on
    // another CPU, once there are several) writes the same words; inlined (the trait's
    // defaults were compiled as calls). A single bit tested after the update becomes one
    // `lock bts`.
    #[inline(always)]
    fn fetch_or_u64(&self, addr: u64, bits: u64) -> u64 {
        let word = Self::word_pointer(addr);
        if !word.is_aligned() {
            return unaligned_fetch_update(self, addr, |old| old | bits);
        }
        // SAFETY: an aligned word of the direct map (checked), which maps RAM for the
        // hypervisor's whole life; only atomic accesses reach it through this reference.
        unsafe { core::sync::atomic::AtomicU64::from_ptr(word) }
            .fetch_or(bits, core::sync::atomic::Ordering::SeqCst)
    }

    // One `lock bts`, written out: through `fetch_or_u64` the old words of the aligned
    // and the unaligned paths meet before the bit is tested, and LLVM makes the locked
    // OR a `cmpxchg` loop.
    #[inline(always)]
    fn test_and_set_bit(&self, addr: u64, bit: u32) -> bool {
        let bit = bit % 64;
        let word = Self::word_pointer(addr);
        if !word.is_aligned() {
            let mask = 1u64 << bit;
            return unaligned_fetch_update(self, addr, |old| old | mask) & mask != 0;
        }
        let was_set: u8;
        // SAFETY: an aligned word of the direct map (checked), which maps RAM for the
        // hypervisor's whole life, changed by one locked instruction as the atomic
        // accesses of `fetch_or_u64` are; the bit offset is below 64, so `bts` stays in
        // that word.
        unsafe {
            core::arch::asm!(
                "lock bts qword ptr [{word}], {bit}",
                "setc {was_set}",
                word = in(reg) word,
                bit = in(reg) u64::from(bit),
                was_set = out(reg_byte) was_set,
                options(nostack),
            );
        }
        was_set != 0
    }

    #[inline(always)]
    fn fetch_and_u64(&self, addr: u64, mask: u64) -> u64 {
        let word = Self::word_pointer(addr);
        if !word.is_aligned() {
            return unaligned_fetch_update(self, addr, |old| old & mask);
        }
        // SAFETY: as in `fetch_or_u64`.
        unsafe { core::sync::atomic::AtomicU64::from_ptr(word) }
            .fetch_and(mask, core::sync::atomic::Ordering::SeqCst)
    }

    // Guest virtual memory through the MMU, when the guest's tables are the loaded ones:
    // every entry of them was validated, so the walk reaches only what the guest may
    // map, and CR0.WP makes read-only mappings (its page tables) refuse the write.
    #[inline]
    unsafe fn read_virtual(&self, root: Mfn, va: u64, dst: *mut u8, len: usize) -> Option<bool> {
        if !Self::loaded(root) {
            return None;
        }
        // SAFETY: `GuestMem` checked `va..va+len` lies in guest slots (`mmu_may_copy`);
        // the caller promises `dst` is writable for `len` bytes.
        Some(unsafe { x86::guest_access::read(dst, va as *const u8, len) })
    }

    #[inline(always)]
    unsafe fn read_virtual_obj<T>(&self, root: Mfn, va: u64, dst: *mut T) -> Option<bool> {
        if !Self::loaded(root) {
            return None;
        }
        // SAFETY: as in `read_virtual`, for one `T`.
        Some(unsafe { x86::guest_access::read_obj(dst, va as *const T) })
    }

    #[inline]
    fn write_virtual(&self, root: Mfn, va: u64, data: &[u8]) -> Option<bool> {
        if !Self::loaded(root) {
            return None;
        }
        // SAFETY: as in `read_virtual`.
        Some(unsafe { x86::guest_access::write(va as *mut u8, data.as_ptr(), data.len()) })
    }

    #[inline(always)]
    fn write_virtual_obj<T: IntoBytes + Immutable>(
        &self,
        root: Mfn,
        va: u64,
        value: &T,
    ) -> Option<bool> {
        if !Self::loaded(root) {
            return None;
        }
        // SAFETY: as in `read_virtual`, for one `T`.
        Some(unsafe { x86::guest_access::write_obj(va as *mut T, value) })
    }
}

struct FrameStorage(UnsafeCell<[FrameInfo; MAX_FRAMES]>);
// SAFETY: handed out exactly once, in `boot`, as the frame table's backing store.
unsafe impl Sync for FrameStorage {}
// First in `.bss`, at a place that does not move with the code units (link.ld).
#[unsafe(link_section = ".bss.hv_hot.frames")]
static FRAME_STORAGE: FrameStorage =
    FrameStorage(UnsafeCell::new([FrameInfo::UNUSABLE; MAX_FRAMES]));

/// The frame table, outside [`State`] so that the state can start all zero (a table
/// holds references to its storage, never null): reached only through the state's
/// [`FramesHere`] handle.
mod frames_here {
    use core::cell::UnsafeCell;
    use core::marker::PhantomData;
    use hypervisor::frames::FrameTable;

    struct FrameTableCell(UnsafeCell<FrameTable<'static>>);
    // SAFETY: reached only through the one `FramesHere`, which the state owns: borrowed
    // as the state is, under its lock.
    unsafe impl Sync for FrameTableCell {}
    static FRAME_TABLE: FrameTableCell = FrameTableCell(UnsafeCell::new(FrameTable::empty()));

    /// The frame table as a field of the machine state: Rust's one way to it (`Deref`),
    /// so that it is borrowed with the state, under the state's lock (as `LoadedHere` is
    /// for the per-CPU record). It is `Send` and not `Sync`, as the table is: a shared
    /// reference to it cannot reach another CPU, where it would give two CPUs the
    /// table's cells at once.
    pub(super) struct FramesHere(PhantomData<FrameTable<'static>>);

    impl FramesHere {
        /// # Safety
        /// One at most, owned by the machine state: two would hand out aliasing
        /// references to the table.
        pub(super) const unsafe fn new() -> FramesHere {
            FramesHere(PhantomData)
        }
    }

    impl core::ops::Deref for FramesHere {
        type Target = FrameTable<'static>;
        #[inline(always)]
        fn deref(&self) -> &FrameTable<'static> {
            // SAFETY: the only path to the table is this handle (one, in `STATE`),
            // borrowed as the caller borrows the handle.
            unsafe { &*FRAME_TABLE.0.get() }
        }
    }

    impl core::ops::DerefMut for FramesHere {
        #[inline(always)]
        fn deref_mut(&mut self) -> &mut FrameTable<'static> {
            // SAFETY: as in `deref`, borrowed mutably as the handle is.
            unsafe { &mut *FRAME_TABLE.0.get() }
        }
    }
}
use frames_here::FramesHere;

/// Everything the hypervisor knows, in one static (domains are large: never on a stack).
struct State {
    /// The frame table (empty until boot fills it in).
    frames: FramesHere,
    domains: [Option<Domain>; MAX_DOMAINS],
    current: usize,
    /// The hypervisor's command line (set at boot).
    cmdline: Option<&'static str>,
    /// The express paths of `entry.S` are on (the default; `express=off` on the command
    /// line leaves every crossing to the lanes, for comparison and tests).
    express: bool,
    free_at_start: usize,
    /// What this CPU's registers hold for the vCPU on it (its per-CPU record).
    loaded: LoadedHere,
    /// Per-domain event channels, parked vCPUs, timers.
    runtime: [Runtime; MAX_DOMAINS],
    sched: Scheduler,
    clock: Clock,
    /// The wallclock at system time 0 (from the RTC).
    wallclock: Wallclock,
    /// End of the running vCPU's slice.
    slice_end: Nanos,
    /// The vCPU whose registers the entry frame holds (none while idle).
    on_cpu: Option<VcpuRef>,
    /// When the CPU last went idle, and idle time so far.
    idle_since: Option<Nanos>,
    idle_time: Nanos,
    /// The deadline the APIC timer is armed for (none once it fired).
    timer_armed: Option<Nanos>,
    /// This entry is the APIC timer's (the tick: the debug keys are polled).
    ticked: bool,
    /// The latest an APIC timer interrupt arrived after its deadline (emulation or host
    /// delays show up here).
    timer_late_max: Nanos,
    /// Input typed on the console, and where it goes.
    console_input: hypervisor::console_input::ConsoleInput,
    /// The earliest of the slice's end and the next guest timer, as of the last full
    /// pass of the exit path (`run::leave`).
    next_event: Nanos,
    /// The TSC value at `next_event` (rounded up): the fast exit compares the TSC with
    /// it, without converting the TSC to system time.
    next_event_tsc: u64,
    /// A machine-wide change since that pass: the next exit takes the full path.
    machine_dirty: bool,
    /// What a hypercall run by the fast path asked for, when it needs the full exit.
    fast_after: Option<After>,
    /// The last guest page-table walk of the hypercall path (see `GuestMem`).
    walk_memo: WalkMemo,
}

impl Loaded {
    fn wanted(vcpu: &hypervisor::domain::Vcpu) -> Loaded {
        Loaded {
            root: Self::root_for(vcpu),
            fs: vcpu.segments.fs,
            gs: Self::gs_for(vcpu),
            ts: Some(vcpu.virtual_ts),
            kernel_mode: Some(vcpu.kernel_mode),
        }
    }

    /// The page table `vcpu`'s mode runs on: the user root in user mode (the kernel's
    /// if it has none, which `HYPERVISOR_iret` never lets happen), else the kernel root.
    #[inline(always)]
    fn root_for(vcpu: &hypervisor::domain::Vcpu) -> u64 {
        match (vcpu.kernel_mode, vcpu.user_root()) {
            (false, Some(user)) => user,
            _ => vcpu.kernel_root,
        }
        .addr()
    }

    /// The GS base `vcpu`'s mode runs with.
    #[inline(always)]
    fn gs_for(vcpu: &hypervisor::domain::Vcpu) -> u64 {
        if vcpu.kernel_mode {
            vcpu.segments.gs_kernel
        } else {
            vcpu.segments.gs_user
        }
    }
}

/// The machine's state. Every initial value here is zero in memory, so that the
/// compiler puts it in `.bss` (zeroed at boot) and not in the image (`Present` in
/// `domain.rs` says how, and xtask's image check, `image_check.rs`, fails if it ever is
/// not); what
/// cannot start at zero, `boot` sets before anything runs: the frame table, the command
/// line, the express switch, the clock and the scheduler's tick.
// In `.bss` after the frame table, the per-CPU block and the GDT (link.ld).
#[unsafe(link_section = ".bss.hv_hot.state")]
static STATE: Mutex<State> = Mutex::new(State {
    // SAFETY: the one handle on the frame table.
    frames: unsafe { FramesHere::new() },
    domains: [const { None }; MAX_DOMAINS],
    current: 0,
    cmdline: None,
    express: false,
    free_at_start: 0,
    // SAFETY: the one handle on CPU 0's record (the only CPU brought up).
    loaded: unsafe { LoadedHere::new() },
    runtime: [Runtime::NEW; MAX_DOMAINS],
    sched: Scheduler::BEFORE_BOOT,
    clock: Clock::UNCALIBRATED,
    wallclock: Wallclock { sec: 0, nsec: 0 },
    slice_end: 0,
    on_cpu: None,
    idle_since: None,
    idle_time: 0,
    timer_armed: None,
    ticked: false,
    timer_late_max: 0,
    console_input: hypervisor::console_input::ConsoleInput::new(),
    next_event: 0,
    next_event_tsc: 0,
    machine_dirty: false,
    fast_after: None,
    walk_memo: WalkMemo::new(),
});

unsafe extern "C" {
    static __image_start: u8;
    static __image_end: u8;
}

fn reserve_boot_memory(frames: &mut FrameTable<'_>, boot: &pvh::BootInfo) {
    for entry in boot
        .memmap
        .iter()
        .filter(|e| e.kind == pvh::MEMMAP_TYPE_RAM)
    {
        let start = Mfn(entry.addr.div_ceil(PAGE_SIZE));
        let end = Mfn(entry.addr.saturating_add(entry.size) / PAGE_SIZE);
        frames.add_ram(start, end);
    }
    frames.reserve(Mfn(0), Mfn(LOW_MEMORY_END / PAGE_SIZE));
    let image_start = x86::virt_to_phys(&raw const __image_start as u64);
    let image_end = x86::virt_to_phys(&raw const __image_end as u64);
    frames.reserve(
        Mfn::containing(image_start),
        Mfn(image_end.div_ceil(PAGE_SIZE)),
    );
    for module in boot.modules {
        let end = module.paddr.saturating_add(module.size).div_ceil(PAGE_SIZE);
        frames.reserve(Mfn::containing(module.paddr), Mfn(end));
    }
}

/// Builds every domain of the boot image and starts the first. Never returns.
pub fn boot(boot: &pvh::BootInfo) -> ! {
    let mut guard = STATE.lock();
    let state = &mut *guard;
    // SAFETY: the only reference ever made to the frame storage.
    *state.frames = FrameTable::new(unsafe { &mut *FRAME_STORAGE.0.get() });
    state.frames.attach_m2p(x86::m2p::init());
    state.cmdline = Some(boot.cmdline);
    state.express = !boot
        .cmdline
        .split_whitespace()
        .any(|word| word == "express=off");
    // The first exit takes the full path.
    state.machine_dirty = true;
    reserve_boot_memory(&mut state.frames, boot);
    run::init_time(state);
    log::info!(
        "pvhv: Xen 4.17 PV ABI hypervisor; {} MiB free for domains; cmdline '{}'",
        (state.frames.free_count() * PAGE_SIZE as usize) >> 20,
        boot.cmdline
    );
    if !state.express {
        x86::express_off();
        log::info!("express paths off (express=off): every crossing takes the lanes");
    }
    let Some(module) = boot.modules.first() else {
        log::error!("no boot image: pass one with -initrd (cargo xtask run does)");
        cpu::exit_qemu(EXIT_PANIC);
    };
    let image = match BootImage::parse(pvh::module_bytes(module)) {
        Ok(image) => image,
        Err(why) => {
            log::error!("boot image rejected: {why}");
            cpu::exit_qemu(EXIT_PANIC);
        }
    };
    state.free_at_start = state.frames.free_count();
    let hypervisor_l4 = *crate::hardware::remember_hypervisor_l4();
    let mut failures = 0;
    for (index, spec) in image.domains().enumerate() {
        let id = index as u16 + 1;
        let mut machine = Machine {
            mem: &DirectMap,
            frames: &mut state.frames,
            hypervisor_l4: &hypervisor_l4,
        };
        match builder::build(&mut machine, id, &spec) {
            Ok(domain) => {
                log::info!(
                    "domain {id} ({}) built: {} MiB, entry {:#x}, start_info {:#x}, cmdline '{}'",
                    spec.name,
                    domain.nr_pages >> 8,
                    domain.vcpu.regs.rip,
                    domain.vcpu.regs.rsi,
                    spec.cmdline
                );
                state.domains[index] = Some(domain);
                if !run::start_domain(state, index, &spec) {
                    failures += 1;
                }
            }
            Err(why) => {
                log::error!("domain {id} ({}) not built: {why}", spec.name);
                failures += 1;
            }
        }
    }
    if failures > 0 {
        log::error!("{failures} domain(s) could not be built; nothing runs");
        finish(state);
    }
    run::start_console(state);
    let mut frame = TrapFrame::default();
    run::leave(guard, &mut frame, true);
    // SAFETY: `leave` chose a vCPU and loaded its root and FPU area; the frame is its
    // context.
    unsafe { x86::enter_first(&frame) }
}

/// Makes domain slot `index` current: its page tables, segment bases and FPU area;
/// copies its registers into `frame`, the entry frame the exit path returns through.
#[inline(always)]
fn switch_to(state: &mut State, index: usize, frame: &mut TrapFrame) {
    let domain = state.domains[index]
        .as_mut()
        .expect("switching to a live domain");
    // A domain that stops is torn down before any guest runs again; the express paths
    // (the express send's raise in particular, which does not test it) rely on it.
    debug_assert!(domain.is_running(), "switching to a stopped domain");
    state.current = index;
    let express = if state.express {
        Express {
            vcpu: &raw mut domain.vcpu as u64,
            events: &raw const state.runtime[index] as u64,
            shared_info: DirectMap::pointer(
                domain.shared_info.addr(),
                core::mem::size_of::<pv_abi::xen::SharedInfo>(),
            ) as u64,
        }
    } else {
        Express::OFF
    };
    // SAFETY: the FPU area lives in the static domain table, 16-aligned, and holds a
    // valid image (initial or saved by fxsave).
    unsafe { x86::percpu::switch_fpu_area(&raw const domain.vcpu.fpu as u64) };
    frame.clone_from(&domain.vcpu.regs);
    // SAFETY: the vCPU's own selectors, saved from the CPU when it went off (or null);
    // the hypervisor runs with interrupts off.
    unsafe { cpu::load_data_selectors(domain.vcpu.selectors) };
    // Every base is written again below: loading FS and GS changed them.
    *state.loaded = Loaded::NOTHING;
    load_vcpu_state(state);
    // The vCPU, its domain's event state and shared-info page live in the static domain
    // table, the state's lock and the frames the domain holds while it lives; the
    // express paths run only while this vCPU is on the CPU (`teardown` clears them).
    x86::percpu::set_express(express);
    // The express null hypercall and mmuext_op read the vcpu_info and vCPU words
    // without a test while a vCPU is in kernel mode (entry.S): both set here, before
    // any guest runs, and cleared only by `teardown`, which also forgets the mode.
    debug_assert!(x86::percpu::vcpu_info() != 0 && (!state.express || express.vcpu != 0));
}

/// Brings CR3, the segment bases and CR0.TS in line with the current vCPU's state, and
/// notes where its `vcpu_info` is.
fn load_vcpu_state(state: &mut State) {
    load_vcpu_hardware(state);
    if let Some(domain) = state.domains[state.current].as_ref() {
        let vcpu_info = domain.vcpu.vcpu_info_addr(domain.shared_info);
        x86::percpu::set_vcpu_info(
            DirectMap::pointer(vcpu_info, core::mem::size_of::<VcpuInfo>()) as u64,
        );
    }
}

/// The part of [`load_vcpu_state`] a per-domain hypercall can make necessary (none of
/// them moves the `vcpu_info`: only `VCPUOP_register_vcpu_info` does, on the full path).
#[inline]
fn load_vcpu_hardware(state: &mut State) {
    let Some(domain) = state.domains[state.current].as_ref() else {
        return;
    };
    load_hardware(&mut state.loaded, &domain.vcpu);
}

/// Brings the CPU's `loaded` state (CR3, segment bases, CR0.TS, mode) in line
/// with what `vcpu`, the vCPU on this CPU, wants: each register written only if it
/// differs. Inlined into the lanes, which switch modes.
#[inline(always)]
fn load_hardware(loaded: &mut Loaded, vcpu: &hypervisor::domain::Vcpu) {
    let wanted = Loaded::wanted(vcpu);
    if wanted.root != loaded.root {
        // SAFETY: every root a vCPU holds belongs to its domain and carries the
        // hypervisor's L4 slots (the builder and the page-table checks guarantee it).
        unsafe { cpu::write_cr3(wanted.root) };
    }
    if wanted.fs != loaded.fs {
        // SAFETY: a canonical guest FS base (checked by set_segment_base).
        unsafe { cpu::wrmsr(cpu::msr::FS_BASE, wanted.fs) };
    }
    if gs_base_stale(wanted.gs, loaded.gs) {
        // SAFETY: the guest's GS base waits in KERNEL_GS_BASE until the exit path's
        // swapgs; canonical (checked by set_segment_base).
        unsafe { cpu::wrmsr(cpu::msr::KERNEL_GS_BASE, wanted.gs) };
    }
    if wanted.ts != loaded.ts {
        x86::percpu::set_guest_ts(wanted.ts == Some(true));
    }
    *loaded = wanted;
}

/// Whether the guest GS base `wanted` must be written, `loaded` being the one written
/// last. Not only when they differ: `loaded` is no proof of what is live, since ring 3
/// can load %gs, which sets the base to its descriptor's, and that is 0 for every
/// descriptor a guest can load (`gdt.rs`). So only a 0 is sure to be live still. (A
/// process that loaded %gs would otherwise hand the base it got to its kernel, when
/// the kernel's is the same as its own; Xen swaps the live bases instead.) The
/// `LOAD_GUEST_GS` step of the express paths (`entry.S`) decides the same way.
#[inline(always)]
fn gs_base_stale(wanted: u64, loaded: u64) -> bool {
    wanted | loaded != 0
}

/// [`load_hardware`] after a switch between the two modes of the vCPU on this CPU (a
/// bounce from user mode, an iret to it), everything else about it being loaded: only
/// what depends on the mode, its page table, GS base and the mode itself.
#[inline(always)]
fn load_mode(loaded: &mut Loaded, vcpu: &hypervisor::domain::Vcpu) {
    debug_assert!({
        let wanted = Loaded::wanted(vcpu);
        wanted.fs == loaded.fs && wanted.ts == loaded.ts && wanted.kernel_mode != loaded.kernel_mode
    });
    let (root, gs) = (Loaded::root_for(vcpu), Loaded::gs_for(vcpu));
    if root != loaded.root {
        // SAFETY: as in `load_hardware`.
        unsafe { cpu::write_cr3(root) };
    }
    if gs_base_stale(gs, loaded.gs) {
        // SAFETY: as in `load_hardware`.
        unsafe { cpu::wrmsr(cpu::msr::KERNEL_GS_BASE, gs) };
    }
    loaded.root = root;
    loaded.gs = gs;
    loaded.kernel_mode = Some(vcpu.kernel_mode);
}

/// Whether the on-CPU vCPU has an upcall pending, masked or not.
#[inline(always)]
fn upcall_pending() -> bool {
    debug_assert!(x86::percpu::vcpu_info() != 0);
    // SAFETY: as in `upcall_due`; the pending byte is the first of the vcpu_info.
    unsafe { (x86::percpu::vcpu_info() as *const u8).read_volatile() != 0 }
}

/// Sets or clears the event mask of the on-CPU vCPU, whose `vcpu_info` is at direct-map
/// address `vcpu_info` (`percpu::vcpu_info`, taken before the caller borrowed a domain).
#[inline(always)]
fn set_upcall_mask(vcpu_info: u64, masked: bool) {
    const MASK: usize = core::mem::offset_of!(VcpuInfo, evtchn_upcall_mask);
    debug_assert!(vcpu_info != 0);
    // SAFETY: as in `upcall_due`: the loaded vCPU's vcpu_info in the direct map. A
    // volatile store: the guest reads and writes this byte.
    unsafe {
        (vcpu_info as *mut u8)
            .add(MASK)
            .write_volatile(u8::from(masked))
    }
}

/// Publishes a page fault's address (`arch.cr2`) in the `vcpu_info` of the on-CPU vCPU,
/// at direct-map address `vcpu_info` (as [`set_upcall_mask`]).
#[inline(always)]
fn set_cr2(vcpu_info: u64, cr2: u64) {
    const CR2: usize = core::mem::offset_of!(VcpuInfo, arch)
        + core::mem::offset_of!(pv_abi::arch_x86_64::ArchVcpuInfo, cr2);
    const _: () = assert!(CR2.is_multiple_of(8));
    debug_assert!(vcpu_info != 0);
    // SAFETY: as in `set_upcall_mask`; the word is aligned (a vcpu_info is 8-byte
    // aligned, see `upcall_due`).
    unsafe {
        (vcpu_info as *mut u8)
            .add(CR2)
            .cast::<u64>()
            .write_volatile(cr2)
    }
}

/// Whether the on-CPU vCPU has an upcall to take (pending and not masked), read from
/// its `vcpu_info` in one load.
#[inline]
fn upcall_due() -> bool {
    const PENDING: usize = core::mem::offset_of!(VcpuInfo, evtchn_upcall_pending);
    const MASK: usize = core::mem::offset_of!(VcpuInfo, evtchn_upcall_mask);
    const _: () = assert!(PENDING == 0 && MASK == 1);
    debug_assert!(x86::percpu::vcpu_info() != 0);
    // SAFETY: `load_vcpu_state` set the pointer from the loaded vCPU's vcpu_info (its
    // slot in the shared-info page, or a registered area the domain owns), checked to
    // lie in the direct map; the frame stays the domain's while the vCPU is loaded. A
    // volatile read: the guest writes these bytes.
    // One aligned 16-bit load (a vcpu_info is 8-byte aligned: its shared-info slot, or a
    // registered area, whose offset `register_vcpu_info` requires to be).
    let flags = unsafe { (x86::percpu::vcpu_info() as *const u16).read_volatile() };
    // Little-endian: mask byte (high) clear and pending byte (low) set, which is exactly
    // `flags` in 1..=0xff: one subtraction and one compare (in 32 bits, so that the
    // difference needs no second zero-extension).
    u32::from(flags).wrapping_sub(1) < 0xff
}

/// Handles one guest entry.
pub fn trap(frame: &mut TrapFrame) {
    let mut guard = STATE.lock();
    let state = &mut *guard;
    let after = match frame.vector {
        VECTOR_SYSCALL if state.loaded.kernel_mode == Some(true) => hypercall(state, frame),
        VECTOR_SYSCALL => on_trap(state, frame, traps::user_syscall),
        // The hypervisor's tick: timers and the slice are looked at on the way out.
        x86::lapic::TIMER_VECTOR => {
            run::timer_interrupt(state);
            After::Resume
        }
        // A spurious APIC or legacy-PIC interrupt (every PIC line is masked).
        x86::lapic::SPURIOUS_VECTOR | 32..=47 => After::Resume,
        2 | 8 | 18 => panic!("platform exception {} while a guest ran", frame.vector),
        // A not-present page fault, the commonest exception, has nothing to emulate: it
        // goes straight to its bounce (what `guest_exception` would do with it).
        traps::vector::PF if !traps::pf_present(frame.error_code) => {
            let cr2 = cpu::read_cr2();
            let after = on_trap(state, frame, |ctx| traps::reflect_page_fault(ctx, cr2));
            // A bounce that faulted on the guest's stack overwrote CR2: the guest's own
            // fault address goes back for the crash report, should there be one.
            cpu::write_cr2(cr2);
            after
        }
        vector => {
            let cr2 = if vector == traps::vector::PF {
                cpu::read_cr2()
            } else {
                0
            };
            let mut hw = crate::hardware::Machine::new();
            let after = on_trap(state, frame, |ctx| {
                traps::guest_exception(ctx, &mut hw, vector, cr2)
            });
            if let Some(root) = hw.loaded_root {
                state.loaded.root = root.addr();
            }
            after
        }
    };
    leave_after(guard, frame, after);
}

/// Ends an entry as its handler asked: a crash is reported and its domain torn down;
/// then the exit path runs, with a scheduling decision unless the vCPU simply resumes.
fn leave_after(mut guard: spin::MutexGuard<'static, State>, frame: &mut TrapFrame, after: After) {
    let state = &mut *guard;
    let resched = match after {
        After::Resume => false,
        After::Reschedule => true,
        After::Crash(reason) => {
            crash_current(state, frame, &reason);
            true
        }
    };
    run::leave(guard, frame, resched);
}

/// Runs a trap-path handler on the current vCPU.
fn on_trap(
    state: &mut State,
    frame: &mut TrapFrame,
    handler: impl FnOnce(&mut TrapContext<'_, DirectMap>) -> traps::Outcome,
) -> After {
    let mut ctx = trap_context(state, frame).expect("the current domain exists");
    let outcome = handler(&mut ctx).resumable(ctx.regs);
    match outcome {
        traps::Outcome::Resume => After::Resume,
        traps::Outcome::Yield => {
            state.machine_dirty = true;
            After::Reschedule
        }
        traps::Outcome::Block => {
            state.machine_dirty = true;
            let now = state.now();
            let slot = state.current;
            if state.guests(now).block(slot) {
                After::Reschedule
            } else {
                After::Resume
            }
        }
        traps::Outcome::Crash(reason) => After::Crash(reason),
    }
}

fn hypercall(state: &mut State, frame: &mut TrapFrame) -> After {
    let decoded = Hypercall::try_from(frame.rax).ok();
    if hypervisor::hypercall::global::may_handle_decoded(decoded, frame.rdi)
        && let Some(after) = run::global_hypercall(state, frame, decoded)
    {
        return after;
    }
    domain_hypercall(state, frame, decoded)
}

/// What [`hypercall_fast`] tells the entry stub (`entry.S` knows these numbers).
#[repr(u64)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FastEntry {
    /// Not taken: nothing happened; the stub completes the frame and takes the full
    /// path ([`trap`]).
    Declined = 0,
    /// Done: the same vCPU resumes with the frame's caller-saved registers and iret
    /// frame (the stub never saved the callee-saved ones: Rust preserved them).
    Resume = 1,
    /// The call ran, but the way out needs the full exit path (a reschedule, a crash,
    /// an upcall to deliver): the stub completes the frame and calls
    /// [`finish_hypercall`].
    Finish = 2,
    /// Done, and the call changed nothing but `rax`: the guest continues after its
    /// `syscall`, so the stub leaves by `sysretq` (which takes rip from rcx and rflags
    /// from r11, as the `syscall` left them) instead of `iretq`, much cheaper on real
    /// CPUs and under TCG. The stub checked on entry that rcx is canonical (a `syscall`
    /// in the last two bytes of the lower half is turned into a #GP there, never made).
    /// Only paths that never write the frame's iret part or rcx/r11 return this
    /// ([`return_fast`]).
    Return = 3,
    /// The send lane's only: the send ran and an upcall is due; [`upcall_lane`] delivers
    /// it, or, should that decline, the stub builds the general frame and
    /// [`send_lane_exit`] does.
    Deliver = 4,
    /// [`hypercall_fast`]'s only: not a context-free call, nothing happened. The stub
    /// saves the guest's XMM registers (the general handlers use SSE) and calls
    /// [`hypercall_domain`], which answers with one of the others.
    General = 5,
}

/// The hypercall fast path, tried first on every `syscall` from a guest. It takes the
/// per-domain hypercalls of a guest kernel (everything but the machine-wide handlers of
/// `hypercall::global`) and, when the call leaves nothing for the scheduler, returns
/// straight to the caller: no timers, no scheduling decision, no vCPU switch, which is
/// right because nothing machine-wide changed and a timer that is due has its APIC
/// interrupt pending, taken as soon as the guest runs again.
///
/// The commonest calls skip even the hypercall context: the null hypercall,
/// `HYPERVISOR_iret`, a process's `syscall` bounce and the one-request page-table calls
/// (`hypercall::light_call`); an event send does not come here at all unless the send
/// lane declined it ([`send_lane`]). Each runs the same code as its general handler (host
/// tests compare them) or declines having done nothing; an upcall that becomes due is
/// delivered on the way out ([`resume_fast`]).
///
/// These context-free paths do not save the guest's FPU state, and in release builds
/// the stub sets no CR0.TS either: the guest's XMM registers are live throughout. They
/// are written not to touch SSE registers (no zeroed or moved structures over 16 bytes,
/// no SLP vectorisation, no calls through trait objects; their rare branches that would
/// claim the registers first: [`PhysMem::claim_vector_registers`]), and `cargo xtask
/// test` checks the built binary: every function this reaches is decoded, and any SSE
/// instruction or call it cannot follow fails it (`xtask/src/sse_check.rs`;
/// docs/architecture.md, "Guest x87/SSE state across hypervisor entries").
///
/// The frame's callee-saved registers (rbx, rbp, r12-r15) are not filled in yet (see
/// `entry.S`): per-domain handlers read only the argument registers and write only
/// rax, the iret frame and rcx/r11 (`iret`), which the host test
/// `hypercall::tests::handlers_leave_callee_saved_registers_alone` checks.
#[inline]
pub fn hypercall_fast(frame: &mut TrapFrame) -> FastEntry {
    let Some(mut guard) = STATE.try_lock() else {
        return FastEntry::Declined;
    };
    let state = &mut *guard;
    // Every exit leaves these so (`run::leave` clears the flags and puts the scheduled
    // vCPU on the CPU), and nothing runs between an exit and the next entry.
    debug_assert!(!state.machine_dirty && !state.ticked && state.on_cpu.is_some());
    // The loaded state says the mode: every change of mode loads it before the vCPU
    // runs again. A guest process's system call is bounced to its kernel's callback.
    if state.loaded.kernel_mode != Some(true) {
        return fast_user_syscall(state, frame);
    }
    // The null hypercall (and its like) needs no context at all; tested first, as the
    // cheapest call should be.
    if frame.rax == Hypercall::XenVersion.number()
        && let Some(value) = hypercall::version::register_only(frame.rdi)
    {
        frame.rax = value;
        return return_fast(state, frame);
    }
    // One dispatch on the number (a jump table) for the other calls that need no
    // context.
    const EXT_OP: u64 = pv_abi::ext::EXT_OP.number();
    const IRET: u64 = Hypercall::Iret.number();
    const MMU_UPDATE: u64 = Hypercall::MmuUpdate.number();
    const MMUEXT_OP: u64 = Hypercall::MmuextOp.number();
    const UPDATE_VA_MAPPING: u64 = Hypercall::UpdateVaMapping.number();
    const SCHED_OP: u64 = Hypercall::SchedOp.number();
    match frame.rax {
        // A vCPU waiting for its next event (a ring's consumer with nothing to do).
        SCHED_OP if frame.rdi == u64::from(pv_abi::sched::SCHEDOP_BLOCK) => {
            return fast_block(state, frame);
        }
        // Port I/O through our extension (a driver domain's device registers).
        EXT_OP => {
            if let Ok(cmd @ (EXTOP_PORT_WRITE | EXTOP_PORT_READ)) = u32::try_from(frame.rdi) {
                return fast_port_op(state, frame, cmd);
            }
        }
        // The guest kernel's return to a process or from an event.
        IRET => return fast_iret(state, frame),
        // One page-table update, a TLB flush, an INVLPG or a reload of the current root.
        MMUEXT_OP => {
            if let Some(entry) = fast_mmuext_one(state, frame) {
                return entry;
            }
        }
        MMU_UPDATE => {
            if let Some(entry) = fast_mmu_update_one(state, frame) {
                return entry;
            }
        }
        UPDATE_VA_MAPPING => {
            if let Some(entry) = fast_update_va_mapping(state, frame) {
                return entry;
            }
        }
        _ => {}
    }
    // Everything past here may use SSE: the stub saves the guest's FPU state first.
    FastEntry::General
}

/// The fast path's general case ([`FastEntry::General`]): a per-domain hypercall with
/// its full context, called by the stub once the guest's XMM registers are saved.
#[inline]
pub fn hypercall_domain(frame: &mut TrapFrame) -> FastEntry {
    let Some(mut guard) = STATE.try_lock() else {
        return FastEntry::Declined;
    };
    fast_domain_hypercall(&mut guard, frame)
}

/// `ext_op(EXTOP_PORT_WRITE or EXTOP_PORT_READ)` on the fast path: the dispatcher's
/// `hypercall::port_op`, with the caller's kernel address space for its I/O bitmap.
#[inline(never)]
fn fast_port_op(state: &mut State, frame: &mut TrapFrame, cmd: u32) -> FastEntry {
    let Some(domain) = state.domains[state.current].as_ref() else {
        return FastEntry::Declined;
    };
    let root = domain.vcpu.kernel_root;
    let guest = GuestMem::with_memo(&DirectMap, &state.frames, domain.id, root, &state.walk_memo);
    let result = hypercall::port_op(
        domain,
        &guest,
        &mut crate::hardware::IoPorts,
        cmd,
        frame.rsi,
        frame.rdx,
    );
    frame.rax = result.unwrap_or_else(|errno| errno.to_ret() as u64);
    return_fast(state, frame)
}

/// `mmuext_op` of one request on the fast path: `light_call`'s `light_mmuext_op`, called
/// directly, without the paging engine it does not need.
#[inline(never)]
fn fast_mmuext_one(state: &mut State, frame: &mut TrapFrame) -> Option<FastEntry> {
    let domain = state.domains[state.current].as_ref()?;
    let root = domain.vcpu.kernel_root;
    let guest = GuestMem::with_memo(&DirectMap, &state.frames, domain.id, root, &state.walk_memo);
    let mut hw = crate::hardware::Machine::new();
    let args = [frame.rdi, frame.rsi, frame.rdx, frame.r10];
    let rax = hypercall::light_mmuext_op(&guest, &mut hw, root, args)?;
    if let Some(root) = hw.loaded_root {
        state.loaded.root = root.addr();
    }
    frame.rax = rax;
    Some(return_fast(state, frame))
}

/// `mmu_update` of one request on the fast path (`light_call`'s `light_mmu_update`); a
/// batch goes to [`fast_mmu_update_batch`], so that this, the commonest call's path,
/// carries none of the batch's code.
#[inline(never)]
fn fast_mmu_update_one(state: &mut State, frame: &mut TrapFrame) -> Option<FastEntry> {
    if frame.rsi as u32 != 1 {
        return fast_mmu_update_batch(state, frame);
    }
    let args = [frame.rdi, 1, frame.rdx, frame.r10];
    frame.rax = light_paging_call(state, Hypercall::MmuUpdate.number(), args)?;
    Some(return_fast(state, frame))
}

/// `mmu_update` of a batch on the fast path (`light_mmu_update_continued`): 128
/// requests per call, then a continuation, as on the general path, arranged here: the
/// new arguments in the frame and `rip` back on the `syscall`, which the guest then
/// executes again (a timer interrupt due meanwhile is taken before it, so a long batch
/// stays preemptible).
#[inline(never)]
fn fast_mmu_update_batch(state: &mut State, frame: &mut TrapFrame) -> Option<FastEntry> {
    let domain = state.domains[state.current].as_ref()?;
    let root = domain.vcpu.kernel_root;
    let guest = GuestMem::with_memo(&DirectMap, &state.frames, domain.id, root, &state.walk_memo);
    let mut hw = crate::hardware::Machine::new();
    let mut paging = Paging::new(&DirectMap, &state.frames, domain.id, &mut hw);
    let args = [frame.rdi, frame.rsi, frame.rdx, frame.r10];
    match hypercall::light_mmu_update_continued(&guest, &mut paging, args)? {
        hypercall::LightBatch::Done(result) => {
            frame.rax = result.unwrap_or_else(|errno| errno.to_ret() as u64);
            Some(return_fast(state, frame))
        }
        hypercall::LightBatch::Continue(next) => {
            // As `Context::continuation`: rax holds the number again, r8 (the fifth
            // argument) is cleared.
            [frame.rdi, frame.rsi, frame.rdx, frame.r10] = next;
            frame.r8 = 0;
            frame.rax = Hypercall::MmuUpdate.number();
            frame.rip = frame.rip.wrapping_sub(2);
            Some(resume_fast(state, frame))
        }
    }
}

/// `update_va_mapping` on the fast path (`light_call`'s `light_update_va_mapping`,
/// which needs no guest memory).
#[inline(never)]
fn fast_update_va_mapping(state: &mut State, frame: &mut TrapFrame) -> Option<FastEntry> {
    let args = [frame.rdi, frame.rsi, frame.rdx, frame.r10];
    frame.rax = light_paging_call(state, Hypercall::UpdateVaMapping.number(), args)?;
    Some(return_fast(state, frame))
}

/// `update_va_mapping`, or `mmu_update` of one request (the count's low 32 bits 1), on
/// the current vCPU's kernel root by the light paths' checked code: the one body of
/// [`fast_update_va_mapping`], [`fast_mmu_update_one`] and the paging lane
/// (`lanes::paging_lane`). `args` are the call's first four (rdi, rsi, rdx, r10). The
/// value for the guest's rax (an errno included), or `None`: declined, nothing done
/// (any other call, or what the light paths leave to the general path).
#[inline(always)]
fn light_paging_call(state: &State, number: u64, args: [u64; 4]) -> Option<u64> {
    let domain = state.domains[state.current].as_ref()?;
    let root = domain.vcpu.kernel_root;
    let mut hw = crate::hardware::Machine::new();
    let mut paging = Paging::new(&DirectMap, &state.frames, domain.id, &mut hw);
    let result = if number == Hypercall::UpdateVaMapping.number() {
        hypercall::light_update_va_mapping(&mut paging, root, [args[0], args[1], args[2]])
    } else if number == Hypercall::MmuUpdate.number() && args[1] as u32 == 1 {
        let guest =
            GuestMem::with_memo(&DirectMap, &state.frames, domain.id, root, &state.walk_memo);
        hypercall::light_mmu_update(&guest, &mut paging, args)
    } else {
        None
    }?;
    Some(result.unwrap_or_else(|errno| errno.to_ret() as u64))
}

/// `HYPERVISOR_iret` on the fast path: the same `iret::return_from` as the dispatcher's,
/// then the vCPU's hardware state for the mode it returns to (user page table and GS
/// base), as the general fast path does after any call that may change it.
#[inline(never)]
fn fast_iret(state: &mut State, frame: &mut TrapFrame) -> FastEntry {
    let Some(domain) = state.domains[state.current].as_mut() else {
        return FastEntry::Declined;
    };
    let root = domain.vcpu.kernel_root;
    let guest = GuestMem::with_memo(&DirectMap, &state.frames, domain.id, root, &state.walk_memo);
    match hypercall::iret::return_from(&guest, &DirectMap, domain, frame) {
        Ok(rax) => frame.rax = rax,
        Err(reason) => return finish_later(state, After::Crash(reason)),
    }
    load_vcpu_hardware(state);
    resume_fast(state, frame)
}

/// A guest process's `syscall` on the fast path: the bounce to the guest kernel's
/// syscall callback (`traps::user_syscall`, which reads only the iret part of the frame
/// and rcx/r11), then straight back unless the bounce failed or an upcall is due.
#[inline(never)]
fn fast_user_syscall(state: &mut State, frame: &mut TrapFrame) -> FastEntry {
    let Some(domain) = state.domains[state.current].as_ref() else {
        return FastEntry::Declined;
    };
    // The bounce frame goes on the guest kernel's stack, which only the kernel's page
    // table maps: load that first (as Xen's toggle_guest_mode does), so the frame is
    // written through the MMU instead of a software walk. The mode switch itself follows.
    let kernel_root = domain.vcpu.kernel_root.addr();
    if state.loaded.root != kernel_root {
        // SAFETY: the vCPU's own validated kernel root, which carries the hypervisor's
        // slots (as in `load_vcpu_hardware`).
        unsafe { cpu::write_cr3(kernel_root) };
        state.loaded.root = kernel_root;
    }
    // The common case, a callback registered and its stack writable, straight to the
    // bounce; anything else (no callback: #UD; a bad stack: the failsafe callback) by
    // the general handler, `deliver` having changed nothing when it failed.
    if !fast_syscall_bounce(state, frame) {
        let after = on_trap(state, frame, traps::user_syscall);
        if after != After::Resume || state.machine_dirty {
            return finish_later(state, after);
        }
    }
    // Now in guest kernel mode: its root and GS base.
    load_vcpu_hardware(state);
    resume_fast(state, frame)
}

/// [`fast_user_syscall`]'s bounce to the syscall callback (`traps::user_syscall`'s,
/// without its trap context): whether it was delivered; when not, nothing changed.
#[inline(always)]
fn fast_syscall_bounce(state: &mut State, frame: &mut TrapFrame) -> bool {
    let Some(mut ctx) = trap_context(state, frame) else {
        return false;
    };
    let Some(bounce) = traps::syscall_bounce(&ctx.domain.vcpu.callbacks) else {
        return false;
    };
    traps::bounce::deliver(&mut ctx, bounce).is_ok()
}

/// The trap context of the running vCPU, whose registers are `frame`: its domain (if
/// the current slot has one) and the parts of the checked guest accessor.
#[inline(always)]
fn trap_context<'a>(
    state: &'a mut State,
    frame: &'a mut TrapFrame,
) -> Option<TrapContext<'a, DirectMap>> {
    Some(TrapContext {
        domain: state.domains[state.current].as_mut()?,
        mem: &DirectMap,
        frames: &state.frames,
        regs: frame,
        memo: Some(&state.walk_memo),
    })
}

/// The fast path's general case: a per-domain hypercall with its full context.
#[inline(never)]
fn fast_domain_hypercall(state: &mut State, frame: &mut TrapFrame) -> FastEntry {
    let decoded = Hypercall::try_from(frame.rax).ok();
    let after = if hypervisor::hypercall::global::may_handle_decoded(decoded, frame.rdi)
        && let Some(after) = run::global_hypercall(state, frame, decoded)
    {
        // A machine-wide call (an event sent, say) that changed nothing the scheduler
        // or the timers must look at returns here too.
        if state.machine_dirty {
            state.fast_after = Some(after);
            return FastEntry::Finish;
        }
        after
    } else {
        let after = domain_hypercall(state, frame, decoded);
        // Only while the domain still runs: a call that shut it down (a `multicall` with
        // `SCHEDOP_shutdown`) has torn it down, its page tables back in the pool, and
        // loading its root again would point CR3 at freed frames (found by review; the
        // full exit then switches to another vCPU).
        if hypercall::may_change_loaded_state(decoded)
            && state.domains[state.current]
                .as_ref()
                .is_some_and(Domain::is_running)
        {
            load_vcpu_hardware(state);
        }
        after
    };
    let resume = after == After::Resume
        && state.on_cpu.is_some()
        && state.domains[state.current]
            .as_ref()
            .is_some_and(Domain::is_running);
    if !resume {
        state.fast_after = Some(after);
        return FastEntry::Finish;
    }
    resume_fast(state, frame)
}

/// `SCHEDOP_block` on the fast path: the dispatcher's `Guests::block` (which enables
/// event delivery and blocks unless an upcall is due already), without the call context
/// the general dispatcher builds. A vCPU that blocked leaves by the full exit path, for
/// the scheduler, as the dispatcher's `After::Reschedule` does; one with an upcall due
/// takes it on the way out.
#[inline(never)]
fn fast_block(state: &mut State, frame: &mut TrapFrame) -> FastEntry {
    let slot = state.current;
    if !state.domains[slot].as_ref().is_some_and(Domain::is_running) {
        return FastEntry::Declined;
    }
    let now = state.now();
    frame.rax = 0;
    if state.guests(now).block(slot) {
        state.machine_dirty = true;
        // (A one-byte store: no need to claim the vector registers, as `finish_later`
        // does; the full exit path then uses them behind the lazy-FPU net.)
        state.fast_after = Some(After::Reschedule);
        return FastEntry::Finish;
    }
    return_fast(state, frame)
}

/// How a fast-path call that keeps the same vCPU running leaves: straight back to it,
/// or, if an upcall became due, into its event callback, delivered here as the exit path
/// would (the bounce reads and writes only rcx, r11 and the iret part of the frame,
/// which the fast path's frame holds). Only a delivery that fails takes the full path,
/// which stops the domain.
#[inline]
fn resume_fast(state: &mut State, frame: &mut TrapFrame) -> FastEntry {
    if upcall_due() {
        return upcall_fast(state, frame);
    }
    FastEntry::Resume
}

/// [`resume_fast`] for a call that wrote only `rax` (the null hypercall, a send, port
/// I/O, a one-request page-table call): without an upcall the guest continues after its
/// `syscall`, by `sysretq` ([`FastEntry::Return`]).
#[inline]
fn return_fast(state: &mut State, frame: &mut TrapFrame) -> FastEntry {
    if upcall_due() {
        return upcall_fast(state, frame);
    }
    FastEntry::Return
}

#[inline(never)]
fn upcall_fast(state: &mut State, frame: &mut TrapFrame) -> FastEntry {
    let Some(domain) = state.domains[state.current].as_mut() else {
        return finish_later(state, After::Resume);
    };
    let memo = Some(&state.walk_memo);
    match events::deliver_upcall_to(&DirectMap, &state.frames, domain, frame, memo) {
        traps::Outcome::Resume => {
            // A delivery from user mode switched the vCPU to kernel mode.
            load_vcpu_hardware(state);
            FastEntry::Resume
        }
        traps::Outcome::Crash(reason) => finish_later(state, After::Crash(reason)),
        _ => finish_later(state, After::Resume),
    }
}

/// A fast-path call the full exit path must finish ([`FastEntry::Finish`]), with what
/// it says after. Out of line, with the vector registers claimed first: what comes next
/// uses them, and the `After` may be stored by an SSE move.
#[cold]
#[inline(never)]
fn finish_later(state: &mut State, after: After) -> FastEntry {
    DirectMap::claim_vector_registers();
    state.fast_after = Some(after);
    FastEntry::Finish
}

/// The rest of a hypercall the fast path ran but could not finish (see [`FastEntry`]).
pub fn finish_hypercall(frame: &mut TrapFrame) {
    let mut guard = STATE.lock();
    let after = guard.fast_after.take().unwrap_or(After::Reschedule);
    leave_after(guard, frame, after);
}

/// A hypercall of the per-domain dispatcher (`hypercall::dispatch`).
fn domain_hypercall(state: &mut State, frame: &mut TrapFrame, decoded: Option<Hypercall>) -> After {
    let domain = state.domains[state.current]
        .as_mut()
        .expect("the current domain exists");
    let root = domain.vcpu.kernel_root;
    let id = domain.id;
    let number = frame.rax;
    let mut hw = crate::hardware::Machine::new();
    let mut ctx = Context {
        guest: GuestMem::with_memo(&DirectMap, &state.frames, id, root, &state.walk_memo),
        mem: &DirectMap,
        frames: &state.frames,
        mmu: &mut hw,
        ports: &mut crate::hardware::IoPorts,
        domain,
        regs: frame,
        console: &mut GuestConsole,
        hypervisor_cmdline: state.cmdline.unwrap_or_default(),
        after: After::Resume,
    };
    let after = hypercall::dispatch_decoded(&mut ctx, decoded);
    if let Some(root) = hw.loaded_root {
        state.loaded.root = root.addr();
    }
    log::trace!("d{id} hypercall {number} -> {:#x}", frame.rax);
    if let Some(domain) = state.domains[state.current].as_mut()
        && let DomainState::ShutDown { reason } = domain.state
    {
        log::info!(
            "domain {} ({}) shut down: reason {}, exit code {}",
            domain.id,
            domain.name,
            shutdown_reason(reason),
            domain.exit_code.unwrap_or(0)
        );
        teardown(state, state.current);
    }
    after
}

fn shutdown_reason(reason: u32) -> &'static str {
    match reason {
        0 => "poweroff",
        1 => "reboot",
        2 => "suspend",
        3 => "crash",
        4 => "watchdog",
        5 => "soft_reset",
        _ => "unknown",
    }
}

fn exception_name(vector: u64) -> &'static str {
    const NAMES: [&str; 32] = [
        "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "CSO", "#TS", "#NP", "#SS",
        "#GP", "#PF", "reserved", "#MF", "#AC", "#MC", "#XM", "#VE", "#CP", "reserved", "reserved",
        "reserved", "reserved", "reserved", "reserved", "#HV", "#VC", "#SX", "reserved",
    ];
    NAMES.get(vector as usize).copied().unwrap_or("interrupt")
}

/// A guest fault it has no handler for: report it and destroy the domain.
fn crash_current(state: &mut State, frame: &TrapFrame, reason: &dyn core::fmt::Display) {
    let index = state.current;
    let domain = state.domains[index]
        .as_mut()
        .expect("the current domain exists");
    domain.state = DomainState::Crashed;
    if !domain.console_line.is_empty() {
        hypercall::flush_console(domain, &mut GuestConsole);
    }
    log::error!(
        "domain {} ({}) crashed: {reason}; vCPU {} in {} mode, vector {} ({}), error code {:#x}, rip {:#x}, cr2 {:#x}",
        domain.id,
        domain.name,
        domain.vcpu.id,
        if domain.vcpu.kernel_mode {
            "kernel"
        } else {
            "user"
        },
        frame.vector,
        exception_name(frame.vector),
        frame.error_code,
        frame.rip,
        cpu::read_cr2()
    );
    let f = frame;
    log::error!(
        "  rax {:016x} rbx {:016x} rcx {:016x} rdx {:016x}",
        f.rax,
        f.rbx,
        f.rcx,
        f.rdx
    );
    log::error!(
        "  rsi {:016x} rdi {:016x} rbp {:016x} rsp {:016x}",
        f.rsi,
        f.rdi,
        f.rbp,
        f.rsp
    );
    log::error!(
        "  r8  {:016x} r9  {:016x} r10 {:016x} r11 {:016x}",
        f.r8,
        f.r9,
        f.r10,
        f.r11
    );
    log::error!(
        "  r12 {:016x} r13 {:016x} r14 {:016x} r15 {:016x}",
        f.r12,
        f.r13,
        f.r14,
        f.r15
    );
    log::error!(
        "  cs {:04x} ss {:04x} rflags {:08x}; no usable guest handler",
        f.cs,
        f.ss,
        f.rflags
    );
    teardown(state, index);
}

/// Returns every frame of a domain that stopped.
fn teardown(state: &mut State, index: usize) {
    run::release(state, index);
    let Some(domain) = state.domains[index].as_mut() else {
        return;
    };
    if !domain.console_line.is_empty() {
        hypercall::flush_console(domain, &mut GuestConsole);
    }
    // Leave the domain's address space before its page tables go back to the pool.
    // SAFETY: the boot tables map the hypervisor and nothing of any guest.
    unsafe { cpu::write_cr3(x86::idle_root()) };
    *state.loaded = Loaded::NOTHING;
    // The express paths and the per-CPU `vcpu_info` serve the vCPU on the CPU: off only
    // if it is this domain's (a domain reaped while another runs leaves them to it; the
    // exit reloads the CPU's state before that one runs again).
    if index == state.current {
        x86::percpu::set_express(Express::OFF);
        x86::percpu::set_vcpu_info(0);
    }
    let released = state.frames.release_domain(domain.id);
    log::debug!("domain {} released {released} frames", domain.id);
}

/// Every domain has stopped: report and end the run with a status that says how.
fn finish(state: &mut State) -> ! {
    run::report(state);
    let mut clean = true;
    for domain in state.domains.iter().flatten() {
        let outcome = match domain.state {
            DomainState::Running => "still running",
            DomainState::Crashed => "crashed",
            DomainState::ShutDown { reason } => shutdown_reason(reason),
        };
        clean &= domain.ended_cleanly();
        log::info!(
            "  domain {} ({}): {outcome}, exit code {}",
            domain.id,
            domain.name,
            domain.exit_code.unwrap_or(0)
        );
    }
    let free = state.frames.free_count();
    log::info!("frames free: {} at start, {free} now", state.free_at_start);
    // The deepest the hypervisor stack went in this run, which `cargo xtask test` holds
    // to three quarters of it (an overflow itself faults in the guard page below).
    log::info!(
        "hypervisor stack: deepest use {} of {} bytes",
        x86::percpu::stack_high_water(),
        x86::percpu::STACK_SIZE
    );
    if free != state.free_at_start {
        log::error!(
            "frame leak: {} frames not returned",
            state.free_at_start - free
        );
        clean = false;
    }
    if clean && state.domains.iter().any(Option::is_some) {
        log::info!("hypervisor: run finished: clean");
        cpu::exit_qemu(EXIT_CLEAN)
    } else {
        log::info!("hypervisor: run finished: some domains failed");
        cpu::exit_qemu(EXIT_FAILED)
    }
}
