//! Kernel threads, scheduled preemptively by the timer.
//!
//! Every switch happens in the event upcall: the upcall saved the interrupted thread's
//! registers as a frame on its own stack, and [`after_upcall`] returns the frame to
//! resume, the same or another thread's (`arch/events.S` then loads that stack and
//! returns through `HYPERVISOR_iret`). What makes an upcall:
//!
//! - the timer (VIRQ_TIMER, one-shot `set_timer_op`), armed after every upcall for the
//!   earliest of the next sleeper's deadline and, if another thread is ready, the end
//!   of the running thread's [`TICK_NS`] slice: preemption;
//! - an IPI to ourselves (an event channel bound with `bind_ipi`), which a thread sends
//!   when it yields, sleeps, waits or exits;
//! - any other event, whose handler may [`notify_all`] waiting threads.
//!
//! When no thread is ready the idle thread blocks the vCPU (`SCHEDOP_block`, which
//! unmasks events and sleeps until one is pending): the domain uses no CPU while it
//! waits. Upcalls that interrupt guest user mode (the process world) never switch
//! threads.
//!
//! The thread table is touched only with events masked, on the one vCPU that runs
//! threads.

use crate::events;
use crate::time::now_ns;
use crate::traps::GuestFrame;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use pv_abi::arch_x86_64::{FLAT_KERNEL_CS64, FLAT_KERNEL_SS64};
use pv_abi::errno::Errno;
use pv_abi::event_channel::EvtchnPort;
use pv_abi::guest;
use pv_abi::xen::VIRQ_TIMER;

/// Threads at most (the boot thread and the idle thread included).
pub const MAX_THREADS: usize = 8;
/// Each spawned thread's stack.
const STACK_SIZE: usize = 32 * 1024;
/// The longest a thread runs while another is ready.
pub const TICK_NS: u64 = 10_000_000;
/// RFLAGS of a new thread: IF (events unmasked) and the always-one bit.
const INITIAL_RFLAGS: u64 = 0x202;
/// The area, in FXSAVE layout, that the upcall path keeps below each saved frame and
/// loads MXCSR and the XMM registers from (`arch/events.S`).
const FXSAVE_SIZE: u64 = 512;

const BOOT_THREAD: usize = 0;
const IDLE_THREAD: usize = 1;

/// Where a thread stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Slot unused.
    Free,
    /// Runnable (or running).
    Ready,
    /// Until this system time.
    Sleeping(u64),
    /// Until [`notify_all`], or at the latest this system time.
    Waiting(u64),
    /// Finished.
    Done,
}

#[derive(Clone, Copy)]
struct Thread {
    state: State,
    /// Its saved frame while it does not run.
    frame: *mut GuestFrame,
    entry: Option<fn(usize)>,
    arg: usize,
}

struct Scheduler {
    threads: [Thread; MAX_THREADS],
    current: usize,
    timer_port: EvtchnPort,
    ipi_port: EvtchnPort,
    switches: u64,
}

struct Global(UnsafeCell<Scheduler>);
// SAFETY: one vCPU runs threads, and the table is reached only with events masked
// (thread context masks them; the upcall runs masked), so accesses never overlap.
unsafe impl Sync for Global {}

static SCHED: Global = Global(UnsafeCell::new(Scheduler {
    threads: [Thread {
        state: State::Free,
        frame: core::ptr::null_mut(),
        entry: None,
        arg: 0,
    }; MAX_THREADS],
    current: BOOT_THREAD,
    timer_port: 0,
    ipi_port: 0,
    switches: 0,
}));

#[repr(C, align(16))]
struct Stacks([[u8; STACK_SIZE]; MAX_THREADS]);
struct StackCell(UnsafeCell<Stacks>);
// SAFETY: each stack belongs to one thread, which alone runs on it.
unsafe impl Sync for StackCell {}
static STACKS: StackCell = StackCell(UnsafeCell::new(Stacks([[0; STACK_SIZE]; MAX_THREADS])));

static STARTED: AtomicBool = AtomicBool::new(false);
/// The deadline the one-shot timer is set for (0: none), to skip needless hypercalls.
static ARMED: AtomicU64 = AtomicU64::new(0);
static RESCHEDULE: AtomicBool = AtomicBool::new(false);
static TICK: AtomicBool = AtomicBool::new(false);

/// Runs `f` on the thread table with events masked.
fn with<R>(f: impl FnOnce(&mut Scheduler) -> R) -> R {
    let was = events::save_and_mask();
    // SAFETY: events are masked, so no upcall (the only other user) runs meanwhile.
    let result = f(unsafe { &mut *SCHED.0.get() });
    events::restore(was);
    result
}

/// Whether the thread world runs.
pub fn started() -> bool {
    STARTED.load(Ordering::SeqCst)
}

/// Starts the thread world: registers the upcall, binds VIRQ_TIMER and a self-IPI,
/// makes the caller thread 0 and creates the idle thread; events end up unmasked.
pub fn init() -> Result<(), Errno> {
    if started() {
        return Ok(());
    }
    events::init()?;
    events::save_and_mask();
    let timer_port = guest::evtchn_bind_virq(VIRQ_TIMER, 0)?;
    let ipi_port = guest::evtchn_bind_ipi(0)?;
    events::bind(timer_port, |_| {
        // The one-shot timer is spent (or a periodic tick came): arm afresh.
        ARMED.store(0, Ordering::SeqCst);
        TICK.store(true, Ordering::SeqCst);
    });
    events::bind(ipi_port, |_| RESCHEDULE.store(true, Ordering::SeqCst));
    // SAFETY: events are masked and the world has not started: nothing else touches it.
    let sched = unsafe { &mut *SCHED.0.get() };
    sched.timer_port = timer_port;
    sched.ipi_port = ipi_port;
    sched.threads[BOOT_THREAD].state = State::Ready;
    sched.current = BOOT_THREAD;
    create(sched, IDLE_THREAD, idle, 0);
    STARTED.store(true, Ordering::SeqCst);
    events::unmask_all();
    Ok(())
}

/// The timer's port (VIRQ_TIMER) and the self-IPI's.
pub fn ports() -> (EvtchnPort, EvtchnPort) {
    with(|s| (s.timer_port, s.ipi_port))
}

/// Thread switches so far.
pub fn switches() -> u64 {
    with(|s| s.switches)
}

/// Builds a new thread's first frame at the top of its stack.
fn create(sched: &mut Scheduler, slot: usize, entry: fn(usize), arg: usize) {
    // SAFETY: the stack of a free slot is used by no one.
    let stack = unsafe { &raw mut (*STACKS.0.get()).0[slot] };
    let top = (stack as u64 + STACK_SIZE as u64) & !0xf;
    let frame = (top - core::mem::size_of::<GuestFrame>() as u64 - 64) & !0xf;
    let frame = frame as *mut GuestFrame;
    // SAFETY: `frame` lies inside the slot's stack, aligned, with room above it.
    unsafe {
        frame.write(GuestFrame {
            r15: 0,
            r14: 0,
            r13: 0,
            r12: 0,
            r11: 0,
            r10: 0,
            r9: 0,
            r8: 0,
            rbp: 0,
            rdi: slot as u64,
            rsi: 0,
            rdx: 0,
            rcx: 0,
            rbx: 0,
            rax: 0,
            vector: 0,
            error_code: 0,
            rip: thread_start as *const () as u64,
            // RPL 0: HYPERVISOR_iret returns within guest kernel mode.
            cs: u64::from(FLAT_KERNEL_CS64 & !3),
            rflags: INITIAL_RFLAGS,
            // As if called: the return-address slot is below the aligned top.
            rsp: top - 8,
            ss: u64::from(FLAT_KERNEL_SS64),
        });
    }
    // The state the upcall path restores from below the frame (MXCSR and the XMM
    // registers; kernel threads leave the x87 registers alone): the reset state
    // (FCW 0x37f, MXCSR 0x1f80, everything else zero).
    let fpu = (frame as u64 - FXSAVE_SIZE) as *mut [u8; FXSAVE_SIZE as usize];
    let mut image = [0u8; FXSAVE_SIZE as usize];
    image[0..2].copy_from_slice(&0x037fu16.to_le_bytes());
    image[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
    // SAFETY: the area lies inside the slot's stack, right below the frame.
    unsafe { fpu.write(image) };
    sched.threads[slot] = Thread {
        state: State::Ready,
        frame,
        entry: Some(entry),
        arg,
    };
}

extern "C" fn thread_start(slot: usize) -> ! {
    let (entry, arg) = with(|s| (s.threads[slot].entry, s.threads[slot].arg));
    if let Some(entry) = entry {
        entry(arg);
    }
    exit()
}

/// Starts `entry(arg)` on a new thread; returns its number.
pub fn spawn(entry: fn(usize), arg: usize) -> Option<usize> {
    with(|s| {
        let slot = (0..MAX_THREADS).find(|&i| s.threads[i].state == State::Free)?;
        create(s, slot, entry, arg);
        Some(slot)
    })
}

/// Moves the running thread to `state` and lets the scheduler run (through a
/// self-IPI, so the switch happens in the upcall with this thread's frame saved).
fn switch_away(state: State) {
    let was = events::save_and_mask();
    switch_away_masked(state, was);
}

/// [`switch_away`] with events already masked by the caller (`was`: whether they were
/// masked before), so that a condition checked under the mask cannot change before the
/// thread is marked.
fn switch_away_masked(state: State, was: bool) {
    // SAFETY: events are masked.
    let sched = unsafe { &mut *SCHED.0.get() };
    let current = sched.current;
    sched.threads[current].state = state;
    RESCHEDULE.store(true, Ordering::SeqCst);
    let _ = guest::evtchn_send(sched.ipi_port);
    // Unmasking delivers the IPI's upcall: the switch happens there.
    events::unmask_all();
    if was {
        events::save_and_mask();
    }
}

/// Gives the CPU to another ready thread, if any.
pub fn yield_now() {
    switch_away(State::Ready);
}

/// Sleeps until system time `deadline` (the timer and a blocked vCPU: no spinning).
pub fn sleep_until(deadline: u64) {
    while now_ns() < deadline {
        let was = events::save_and_mask();
        // SAFETY: events are masked.
        let sched = unsafe { &mut *SCHED.0.get() };
        let current = sched.current;
        let alone = (0..MAX_THREADS)
            .all(|i| i == current || i == IDLE_THREAD || sched.threads[i].state != State::Ready);
        if alone {
            // Nothing else to run: arm the timer and block right here (block unmasks
            // events atomically, so the wake-up cannot be missed). The upcall on wake
            // finds this thread due again, or switches if something else woke first.
            sched.threads[current].state = State::Sleeping(deadline);
            arm_timer(sched, now_ns());
            let _ = guest::sched_block();
            if was {
                events::save_and_mask();
            }
        } else {
            events::restore(was);
            switch_away(State::Sleeping(deadline));
        }
    }
}

/// Sleeps for `ns` nanoseconds.
pub fn sleep_ns(ns: u64) {
    sleep_until(now_ns().saturating_add(ns));
}

/// Waits until `ready()` holds; rechecked after every [`notify_all`].
pub fn wait_until(ready: impl FnMut() -> bool) {
    wait_until_or(u64::MAX, ready);
}

/// Waits until `ready()` holds or system time `deadline` passes; returns whether it
/// holds.
pub fn wait_until_or(deadline: u64, mut ready: impl FnMut() -> bool) -> bool {
    loop {
        // Check and mark under one mask: an event that makes `ready` true after the
        // check is delivered only once the thread is Waiting, so its handler's
        // notify_all wakes it (no lost wake-up).
        let was = events::save_and_mask();
        if ready() {
            events::restore(was);
            return true;
        }
        if now_ns() >= deadline {
            events::restore(was);
            return false;
        }
        switch_away_masked(State::Waiting(deadline), was);
    }
}

/// Wakes every waiting thread (from an event handler or a thread).
pub fn notify_all() {
    // Callers may run in the upcall (events masked) or in a thread.
    let was = events::save_and_mask();
    // SAFETY: events are masked.
    let sched = unsafe { &mut *SCHED.0.get() };
    for thread in &mut sched.threads {
        if matches!(thread.state, State::Waiting(_)) {
            thread.state = State::Ready;
        }
    }
    events::restore(was);
}

/// Ends the running thread (its joiners wake: see [`after_upcall`]).
pub fn exit() -> ! {
    loop {
        switch_away(State::Done);
    }
}

/// Waits for `thread` to finish.
pub fn join(thread: usize) {
    wait_until(|| {
        // SAFETY: called by wait_until with events masked.
        let sched = unsafe { &*SCHED.0.get() };
        matches!(sched.threads[thread].state, State::Done | State::Free)
    });
    with(|s| s.threads[thread].state = State::Free);
}

/// The idle thread: blocks the vCPU whenever no other thread is ready.
fn idle(_: usize) {
    loop {
        events::save_and_mask();
        // SAFETY: events are masked.
        let sched = unsafe { &*SCHED.0.get() };
        let busy =
            (0..MAX_THREADS).any(|i| i != IDLE_THREAD && sched.threads[i].state == State::Ready);
        if busy {
            RESCHEDULE.store(true, Ordering::SeqCst);
            let _ = guest::evtchn_send(sched.ipi_port);
            events::unmask_all();
        } else {
            // Unmasks events and blocks in one step: no wake-up can slip in between.
            let _ = guest::sched_block();
        }
    }
}

/// After the upcall's handlers: wake sleepers, switch threads if due, re-arm the
/// timer. Returns the frame to resume.
fn after_upcall(frame: *mut GuestFrame) -> *mut GuestFrame {
    // SAFETY: the upcall runs with events masked.
    let sched = unsafe { &mut *SCHED.0.get() };
    // SAFETY: the entry stub passes the frame it just built.
    let from_user = unsafe { (*frame).cs & 3 == 3 };
    let now = now_ns();
    for thread in &mut sched.threads {
        if let State::Sleeping(until) | State::Waiting(until) = thread.state
            && until <= now
        {
            thread.state = State::Ready;
        }
    }
    let current = sched.current;
    if sched.threads[current].state == State::Done {
        // A thread ended: whoever waits (to join it) looks again.
        for thread in &mut sched.threads {
            if matches!(thread.state, State::Waiting(_)) {
                thread.state = State::Ready;
            }
        }
    }
    let others_ready = (0..MAX_THREADS)
        .any(|i| i != current && i != IDLE_THREAD && sched.threads[i].state == State::Ready);
    let tick = TICK.swap(false, Ordering::SeqCst);
    if from_user && tick {
        // A user process was running: the process scheduler decides who runs next.
        // SAFETY: the entry stub passes the frame it just built; nothing else holds it.
        crate::process::preempt(unsafe { &mut *frame });
    }
    let asked = RESCHEDULE.swap(false, Ordering::SeqCst);
    let must_leave = sched.threads[current].state != State::Ready;
    let idle_with_work = current == IDLE_THREAD && others_ready;
    let mut resume = frame;
    if !from_user && (must_leave || idle_with_work || ((asked || tick) && others_ready)) {
        sched.threads[current].frame = frame;
        let next = (1..=MAX_THREADS)
            .map(|step| (current + step) % MAX_THREADS)
            .find(|&i| i != IDLE_THREAD && sched.threads[i].state == State::Ready)
            .unwrap_or(IDLE_THREAD);
        if next != current {
            sched.switches += 1;
        }
        sched.current = next;
        resume = sched.threads[next].frame;
    }
    arm_timer(sched, now);
    resume
}

/// Arms the one-shot timer for the next sleeper or the end of the slice.
fn arm_timer(sched: &Scheduler, now: u64) {
    let current = sched.current;
    let contended = (0..MAX_THREADS)
        .any(|i| i != current && i != IDLE_THREAD && sched.threads[i].state == State::Ready);
    let slice_end = contended.then_some(now + TICK_NS);
    let next_sleeper = sched
        .threads
        .iter()
        .filter_map(|t| match t.state {
            State::Sleeping(until) | State::Waiting(until) if until != u64::MAX => Some(until),
            _ => None,
        })
        .min();
    let deadline = [slice_end, next_sleeper]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(0);
    if ARMED.swap(deadline, Ordering::SeqCst) != deadline {
        let _ = guest::set_timer_op(deadline);
    }
}

/// The event upcall's Rust half (called by `arch/events.S` with events masked).
#[unsafe(no_mangle)]
extern "C" fn guest_event(frame: *mut GuestFrame) -> *mut GuestFrame {
    events::dispatch();
    if started() {
        after_upcall(frame)
    } else {
        frame
    }
}
