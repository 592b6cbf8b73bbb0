//! Time, guest side: system time from `vcpu_time_info`, the wallclock from
//! `shared_info`, and sleeping (`set_timer_op`, then block: never a spin).

use crate::paravirt;
use core::mem::offset_of;
use core::sync::atomic::{Ordering, fence};
use pv_abi::xen::{SharedInfo, VcpuInfo, VcpuTimeInfo};
use zerocopy::FromZeros;

fn read_volatile<T: Copy>(va: u64) -> T {
    // SAFETY: callers pass fields of the shared-info page, mapped for the kernel's life.
    unsafe { (va as *const T).read_volatile() }
}

/// A consistent copy of vCPU 0's `vcpu_time_info` (the version seqlock: retry while an
/// update is in progress or happened during the copy).
pub fn time_info() -> VcpuTimeInfo {
    let base = paravirt::shared_info()
        + (offset_of!(SharedInfo, vcpu_info) + offset_of!(VcpuInfo, time)) as u64;
    loop {
        let version: u32 = read_volatile(base);
        fence(Ordering::Acquire);
        let mut info = VcpuTimeInfo::new_zeroed();
        info.tsc_timestamp = read_volatile(base + offset_of!(VcpuTimeInfo, tsc_timestamp) as u64);
        info.system_time = read_volatile(base + offset_of!(VcpuTimeInfo, system_time) as u64);
        info.tsc_to_system_mul =
            read_volatile(base + offset_of!(VcpuTimeInfo, tsc_to_system_mul) as u64);
        info.tsc_shift = read_volatile(base + offset_of!(VcpuTimeInfo, tsc_shift) as u64);
        fence(Ordering::Acquire);
        let again: u32 = read_volatile(base);
        if version & 1 == 0 && version == again {
            info.version = version;
            return info;
        }
    }
}

/// The TSC.
pub fn rdtsc() -> u64 {
    // SAFETY: rdtsc reads a counter (allowed in ring 3 under both hypervisors).
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// System time in nanoseconds (the hypervisor's clock, the same one timers use).
pub fn now_ns() -> u64 {
    time_info().system_time_at(rdtsc())
}

/// Wallclock time, as nanoseconds since the Unix epoch.
pub fn wallclock_ns() -> u64 {
    let base = paravirt::shared_info();
    let field = |offset: usize| base + offset as u64;
    loop {
        let version: u32 = read_volatile(field(offset_of!(SharedInfo, wc_version)));
        fence(Ordering::Acquire);
        let sec: u32 = read_volatile(field(offset_of!(SharedInfo, wc_sec)));
        let sec_hi: u32 = read_volatile(field(offset_of!(SharedInfo, wc_sec_hi)));
        let nsec: u32 = read_volatile(field(offset_of!(SharedInfo, wc_nsec)));
        fence(Ordering::Acquire);
        let again: u32 = read_volatile(field(offset_of!(SharedInfo, wc_version)));
        if version & 1 == 0 && version == again {
            let boot =
                ((u64::from(sec_hi) << 32) | u64::from(sec)) * 1_000_000_000 + u64::from(nsec);
            return boot + now_ns();
        }
    }
}
