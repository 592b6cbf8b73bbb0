//! The local APIC: the hypervisor's own timer interrupt.
//!
//! One timer per CPU, always one-shot, re-armed on every exit to a guest for the
//! earliest of the end of the running vCPU's slice and the next guest timer. Where the
//! CPU has TSC-deadline mode (CPUID.1:ECX[24]) the deadline is written as a TSC value;
//! otherwise the APIC timer counts down from a count computed with its rate, which is
//! calibrated against the TSC at boot. Registers are reached through the xAPIC MMIO
//! window in the direct map.

use super::{DIRECTMAP_BASE, cpu, tsc};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use x86_64::registers::model_specific::Msr;

/// The timer's interrupt vector.
pub const TIMER_VECTOR: u64 = 0xf0;
/// The spurious-interrupt vector (needs no EOI).
pub const SPURIOUS_VECTOR: u64 = 0xff;

const IA32_APIC_BASE: u32 = 0x1b;
const IA32_TSC_DEADLINE: u32 = 0x6e0;
const APIC_BASE_MASK: u64 = 0x000f_ffff_ffff_f000;
const APIC_GLOBAL_ENABLE: u64 = 1 << 11;

const REG_EOI: u64 = 0xb0;
const REG_SPURIOUS: u64 = 0xf0;
const REG_LVT_TIMER: u64 = 0x320;
const REG_INITIAL_COUNT: u64 = 0x380;
const REG_CURRENT_COUNT: u64 = 0x390;
const REG_DIVIDE: u64 = 0x3e0;

const SOFTWARE_ENABLE: u32 = 1 << 8;
const LVT_MASKED: u32 = 1 << 16;
const LVT_TSC_DEADLINE: u32 = 0b10 << 17;
const DIVIDE_BY_1: u32 = 0b1011;

/// CPUID.1:ECX bit for TSC-deadline mode.
const CPUID_TSC_DEADLINE: u32 = 1 << 24;

static BASE: AtomicU64 = AtomicU64::new(0);
static DEADLINE_MODE: AtomicBool = AtomicBool::new(false);
static TSC_HZ: AtomicU64 = AtomicU64::new(1);
static APIC_HZ: AtomicU64 = AtomicU64::new(1);

fn register(offset: u64) -> *mut u32 {
    (BASE.load(Ordering::Relaxed) + offset) as *mut u32
}

fn write(offset: u64, value: u32) {
    // SAFETY: BASE is the direct-map address of this CPU's APIC page (set by `init`);
    // the register offsets are the architectural ones.
    unsafe { register(offset).write_volatile(value) }
}

fn read(offset: u64) -> u32 {
    // SAFETY: as in `write`.
    unsafe { register(offset).read_volatile() }
}

/// How the timer runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerMode {
    /// Deadlines are TSC values.
    TscDeadline,
    /// One-shot countdown at this many APIC timer ticks per second.
    OneShot(u64),
}

/// Enables this CPU's APIC and its timer (masked until armed), given the calibrated
/// TSC rate.
pub fn init(tsc_hz: u64) -> TimerMode {
    // SAFETY: reading and writing IA32_APIC_BASE to keep the APIC globally enabled at
    // its current (firmware-chosen) address.
    let base_msr = unsafe { Msr::new(IA32_APIC_BASE).read() };
    // SAFETY: as above; only the enable bit is (re)set.
    unsafe { Msr::new(IA32_APIC_BASE).write(base_msr | APIC_GLOBAL_ENABLE) };
    BASE.store(
        DIRECTMAP_BASE + (base_msr & APIC_BASE_MASK),
        Ordering::Relaxed,
    );
    TSC_HZ.store(tsc_hz.max(1), Ordering::Relaxed);
    write(REG_SPURIOUS, SOFTWARE_ENABLE | SPURIOUS_VECTOR as u32);
    let deadline = core::arch::x86_64::__cpuid(1).ecx & CPUID_TSC_DEADLINE != 0;
    DEADLINE_MODE.store(deadline, Ordering::Relaxed);
    if deadline {
        write(REG_LVT_TIMER, LVT_TSC_DEADLINE | TIMER_VECTOR as u32);
        return TimerMode::TscDeadline;
    }
    write(REG_DIVIDE, DIVIDE_BY_1);
    write(REG_LVT_TIMER, LVT_MASKED | TIMER_VECTOR as u32);
    // Count down from the top for 10 ms of TSC time.
    write(REG_INITIAL_COUNT, u32::MAX);
    let start = tsc::read();
    let span = tsc_hz / 100;
    while tsc::read() - start < span {
        core::hint::spin_loop();
    }
    let elapsed_tsc = tsc::read() - start;
    let counted = u64::from(u32::MAX - read(REG_CURRENT_COUNT));
    write(REG_INITIAL_COUNT, 0);
    let apic_hz =
        (u128::from(counted) * u128::from(tsc_hz) / u128::from(elapsed_tsc.max(1))) as u64;
    APIC_HZ.store(apic_hz.max(1), Ordering::Relaxed);
    write(REG_LVT_TIMER, TIMER_VECTOR as u32);
    TimerMode::OneShot(apic_hz)
}

/// Arms the timer to fire at TSC value `deadline` (at once if it has passed).
pub fn arm(deadline: u64) {
    if DEADLINE_MODE.load(Ordering::Relaxed) {
        // SAFETY: IA32_TSC_DEADLINE only schedules this CPU's timer interrupt.
        unsafe { cpu::wrmsr(IA32_TSC_DEADLINE, deadline.max(1)) };
        return;
    }
    let ticks = deadline.saturating_sub(tsc::read());
    let count = u128::from(ticks) * u128::from(APIC_HZ.load(Ordering::Relaxed))
        / u128::from(TSC_HZ.load(Ordering::Relaxed));
    write(
        REG_INITIAL_COUNT,
        count.clamp(1, u128::from(u32::MAX)) as u32,
    );
}

/// Acknowledges the interrupt being handled.
pub fn eoi() {
    write(REG_EOI, 0);
}
