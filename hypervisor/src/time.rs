//! Time: system time from the TSC, what guests read in `vcpu_time_info` and the
//! wallclock, and the per-vCPU timers (set_timer_op, VCPUOP single-shot and periodic).
//!
//! System time is nanoseconds since the hypervisor calibrated its TSC at boot. The
//! conversion is Xen's: `ns = ((tsc_delta << shift) * mul_frac) >> 32`, with `shift`
//! and the 32.32 fixed-point `mul_frac` chosen so that the scaled rate lies in
//! (0.5 GHz, 2 GHz] (see [`TscScale::from_hz`]). Guests get exactly these parameters in
//! their `vcpu_time_info`, so their clock and the hypervisor's agree to the nanosecond.

use crate::mm::{Mfn, PhysMem};
use core::mem::offset_of;
use pv_abi::xen::{SharedInfo, VcpuTimeInfo, XEN_PVCLOCK_TSC_STABLE_BIT};

/// System time in nanoseconds since boot.
pub type Nanos = u64;

/// Nanoseconds per second.
pub const NANOS_PER_SEC: u64 = 1_000_000_000;

/// Shortest period VCPUOP_set_periodic_timer accepts (Xen's limit).
pub const MIN_PERIOD: Nanos = 1_000_000;

/// A TSC-to-nanoseconds conversion: Xen's `tsc_to_system_mul` and `tsc_shift`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TscScale {
    /// 32.32 fixed-point multiplier.
    pub mul_frac: u32,
    /// Power-of-two shift applied to a TSC delta before the multiply.
    pub shift: i8,
}

impl TscScale {
    /// The scale for a TSC running at `hz` ticks per second (`hz` > 0).
    pub fn from_hz(hz: u64) -> TscScale {
        let mut rate = hz.max(1);
        let mut shift: i8 = 0;
        // Bring the rate into (NANOS_PER_SEC / 2, 2 * NANOS_PER_SEC]: then the
        // nanoseconds-per-tick ratio is in [0.5, 2) and fits a 32.32 fraction.
        while rate > 2 * NANOS_PER_SEC {
            rate >>= 1;
            shift -= 1;
        }
        while rate <= NANOS_PER_SEC {
            rate <<= 1;
            shift += 1;
        }
        let mul = ((u128::from(NANOS_PER_SEC) << 32) / u128::from(rate)) as u32;
        TscScale {
            mul_frac: mul,
            shift,
        }
    }

    /// Nanoseconds in `ticks` TSC ticks.
    pub fn ticks_to_ns(&self, ticks: u64) -> Nanos {
        let shifted = if self.shift >= 0 {
            u128::from(ticks) << self.shift
        } else {
            u128::from(ticks) >> -i32::from(self.shift)
        };
        ((shifted * u128::from(self.mul_frac)) >> 32) as u64
    }

    /// The fewest ticks after which [`ticks_to_ns`](Self::ticks_to_ns) reads at least
    /// `ns`: the exact inverse of this scale, rounded up. Not of the TSC's true rate:
    /// `mul_frac` is rounded down, so this clock runs slow by up to 2^-31 of the time
    /// elapsed, and a deadline converted at the true rate would come before this clock
    /// reads it (20 us early after a day at 3 GHz: an interrupt that finds nothing due).
    pub fn ns_to_ticks(&self, ns: Nanos) -> u64 {
        let mul = u128::from(self.mul_frac);
        if mul == 0 {
            return 0;
        }
        // `ticks_to_ns(t) >= ns` exactly when the shifted ticks reach `scaled`.
        let scaled = (u128::from(ns) << 32).div_ceil(mul);
        let ticks = if self.shift >= 0 {
            scaled.div_ceil(1 << self.shift)
        } else {
            scaled << -i32::from(self.shift)
        };
        u64::try_from(ticks).unwrap_or(u64::MAX)
    }

    /// Ticks per nanosecond of this scale in 32.32 fixed point, rounded up (the
    /// inverse of its rate: `2^64 / (mul_frac * 2^shift)`), for [`Clock::deadline_tsc`].
    fn ticks_per_ns(&self) -> u64 {
        let mul = u128::from(self.mul_frac);
        if mul == 0 {
            return u64::MAX;
        }
        let ratio = if self.shift >= 0 {
            (1u128 << 64).div_ceil(mul << self.shift)
        } else {
            (1u128 << (64 - i32::from(self.shift))).div_ceil(mul)
        };
        u64::try_from(ratio).unwrap_or(u64::MAX)
    }

    /// Ticks [`Clock::deadline_tsc`] adds to its product so that it is never before
    /// [`ns_to_ticks`](Self::ns_to_ticks): one for the product's rounding down, one for
    /// the inverse's rounding up, and a whole step of a negative shift.
    fn deadline_slack(&self) -> u64 {
        2 + (1 << (-i32::from(self.shift)).max(0))
    }
}

/// The machine's clock: the TSC's rate and its value at system time 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    /// Calibrated TSC frequency.
    pub tsc_hz: u64,
    /// TSC value at system time 0.
    pub tsc_at_zero: u64,
    /// The conversion.
    pub scale: TscScale,
    /// TSC ticks per nanosecond of [`scale`](Self::scale) in 32.32 fixed point, rounded
    /// up: [`Clock::deadline_tsc`] converts with one multiplication instead of a 128-bit
    /// division.
    pub ticks_per_ns: u64,
    /// The ticks `deadline_tsc` adds to its product (see `TscScale::deadline_slack`),
    /// worked out once.
    pub deadline_slack: u64,
}

impl Clock {
    /// A placeholder until the TSC is calibrated: every reading is time 0. All zero in
    /// memory, as the machine state it starts in (see `Present` in `domain.rs`).
    pub const UNCALIBRATED: Clock = Clock {
        tsc_hz: 0,
        tsc_at_zero: 0,
        scale: TscScale {
            mul_frac: 0,
            shift: 0,
        },
        ticks_per_ns: 0,
        deadline_slack: 0,
    };

    /// A clock for a TSC of `tsc_hz` that reads `tsc_now` at system time 0.
    pub fn new(tsc_hz: u64, tsc_now: u64) -> Clock {
        let tsc_hz = tsc_hz.max(1);
        let scale = TscScale::from_hz(tsc_hz);
        Clock {
            tsc_hz,
            tsc_at_zero: tsc_now,
            scale,
            ticks_per_ns: scale.ticks_per_ns(),
            deadline_slack: scale.deadline_slack(),
        }
    }

    /// System time at TSC value `tsc`.
    pub fn now(&self, tsc: u64) -> Nanos {
        self.scale.ticks_to_ns(tsc.saturating_sub(self.tsc_at_zero))
    }

    /// TSC ticks in `ns` nanoseconds of this clock: the fewest after which [`now`](Self::now)
    /// has advanced by `ns` ([`TscScale::ns_to_ticks`]), so a deadline is never early.
    pub fn ns_to_ticks(&self, ns: Nanos) -> u64 {
        self.scale.ns_to_ticks(ns)
    }

    /// The first TSC value at which [`now`](Self::now) reads `ns` or later.
    pub fn tsc_at(&self, ns: Nanos) -> u64 {
        self.tsc_at_zero.saturating_add(self.ns_to_ticks(ns))
    }

    /// A TSC value at or after system time `ns`: never before [`tsc_at`](Self::tsc_at),
    /// so [`now`](Self::now) reads the deadline there (the APIC timer is armed for it, and
    /// an interrupt that found the deadline not yet due would be taken again at once,
    /// until the clock caught up: found by review). After it by at most
    /// `ns / 2^32 * ticks-per-ns` plus a few ticks (the rounding of the 32.32 rate: 20 us
    /// at 2.5 GHz after a day of uptime). One multiplication, where `tsc_at` divides: it
    /// is computed on every full pass, for the exit path's test and the APIC.
    pub fn deadline_tsc(&self, ns: Nanos) -> u64 {
        let ticks = (u128::from(ns) * u128::from(self.ticks_per_ns)) >> 32;
        let ticks = u64::try_from(ticks).unwrap_or(u64::MAX);
        self.tsc_at_zero
            .saturating_add(ticks)
            .saturating_add(self.deadline_slack)
    }

    /// What a vCPU reads in its `vcpu_time_info` (the version is managed by the writer).
    pub fn time_info(&self, tsc: u64) -> VcpuTimeInfo {
        self.time_info_at(tsc, self.now(tsc))
    }

    /// [`time_info`](Self::time_info) for a TSC value whose system time the caller has
    /// already converted (`now` must be `self.now(tsc)`).
    pub fn time_info_at(&self, tsc: u64, now: Nanos) -> VcpuTimeInfo {
        debug_assert_eq!(now, self.now(tsc));
        VcpuTimeInfo {
            version: 0,
            pad0: 0,
            tsc_timestamp: tsc,
            system_time: now,
            tsc_to_system_mul: self.scale.mul_frac,
            tsc_shift: self.scale.shift,
            flags: XEN_PVCLOCK_TSC_STABLE_BIT,
            pad1: [0; 2],
        }
    }
}

/// A calendar time as the CMOS real-time clock reports it (binary, 24-hour).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtcTime {
    /// Full year, e.g. 2026.
    pub year: u32,
    /// 1..=12.
    pub month: u32,
    /// 1..=31.
    pub day: u32,
    /// 0..=23.
    pub hour: u32,
    /// 0..=59.
    pub minute: u32,
    /// 0..=59.
    pub second: u32,
}

impl RtcTime {
    /// Seconds since the Unix epoch (1970-01-01 00:00:00 UTC), if the fields are sane.
    pub fn unix_seconds(&self) -> Option<u64> {
        let valid = (1970..=9999).contains(&self.year)
            && (1..=12).contains(&self.month)
            && (1..=31).contains(&self.day)
            && self.hour < 24
            && self.minute < 60
            && self.second < 60;
        if !valid {
            return None;
        }
        let days = days_from_civil(self.year, self.month, self.day);
        Some(
            days * 86_400
                + u64::from(self.hour) * 3600
                + u64::from(self.minute) * 60
                + u64::from(self.second),
        )
    }
}

/// Days from 1970-01-01 to the given date of the proleptic Gregorian calendar
/// (year >= 1970), by the usual era arithmetic (eras of 400 years).
fn days_from_civil(year: u32, month: u32, day: u32) -> u64 {
    let y = u64::from(if month <= 2 { year - 1 } else { year });
    let era = y / 400;
    let year_of_era = y - era * 400;
    let m = u64::from(month);
    let day_of_year = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + u64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Decodes a binary-coded-decimal byte (the RTC's default format).
pub fn from_bcd(value: u8) -> u32 {
    u32::from(value >> 4) * 10 + u32::from(value & 0xf)
}

/// The wallclock at system time 0, as a guest reads it from `shared_info`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wallclock {
    /// Seconds since the epoch.
    pub sec: u64,
    /// Nanoseconds.
    pub nsec: u32,
}

impl Wallclock {
    /// The wallclock at system time 0, given that it read `unix_seconds` at system time
    /// `now` (the RTC has one-second resolution; the result is as exact as that).
    pub fn from_reading(unix_seconds: u64, now: Nanos) -> Wallclock {
        // Saturating: an unreadable RTC reads 0 (`run::init_time`), earlier than boot.
        let at_zero =
            (u128::from(unix_seconds) * u128::from(NANOS_PER_SEC)).saturating_sub(u128::from(now));
        Wallclock {
            sec: (at_zero / u128::from(NANOS_PER_SEC)) as u64,
            nsec: (at_zero % u128::from(NANOS_PER_SEC)) as u32,
        }
    }

    /// Writes it into the shared-info page at `shared_info` under `wc_version`.
    pub fn publish<M: PhysMem>(&self, mem: &M, shared_info: Mfn) {
        let base = shared_info.addr();
        let field = |offset: usize| base + offset as u64;
        let version_at = field(offset_of!(SharedInfo, wc_version));
        let mut bytes = [0u8; 4];
        mem.read(version_at, &mut bytes);
        let odd = u32::from_le_bytes(bytes).wrapping_add(1) | 1;
        mem.write(version_at, &odd.to_le_bytes());
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        mem.write(
            field(offset_of!(SharedInfo, wc_sec)),
            &(self.sec as u32).to_le_bytes(),
        );
        mem.write(
            field(offset_of!(SharedInfo, wc_nsec)),
            &self.nsec.to_le_bytes(),
        );
        mem.write(
            field(offset_of!(SharedInfo, wc_sec_hi)),
            &((self.sec >> 32) as u32).to_le_bytes(),
        );
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        mem.write(version_at, &odd.wrapping_add(1).to_le_bytes());
    }
}

/// A vCPU's timers. When the single-shot or the periodic timer fires, the vCPU's
/// VIRQ_TIMER is raised; when the poll timeout fires, a vCPU blocked in SCHEDOP_poll
/// wakes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuTimers {
    /// set_timer_op / VCPUOP_set_singleshot_timer deadline.
    pub singleshot: Option<Nanos>,
    /// VCPUOP_set_periodic_timer: (period, next deadline).
    pub periodic: Option<(Nanos, Nanos)>,
    /// SCHEDOP_poll timeout.
    pub poll_timeout: Option<Nanos>,
}

/// Which timers fired.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fired {
    /// Raise VIRQ_TIMER.
    pub timer_virq: bool,
    /// End the poll.
    pub poll_timeout: bool,
}

impl VcpuTimers {
    /// The earliest deadline of the armed timers, the periodic one only if
    /// `with_periodic` (a blocked vCPU's periodic timer does not fire).
    #[inline]
    pub fn earliest(&self, with_periodic: bool) -> Option<Nanos> {
        let periodic = self
            .periodic
            .filter(|_| with_periodic)
            .map(|(_, next)| next);
        let earlier = |a: Option<Nanos>, b: Option<Nanos>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        earlier(earlier(self.singleshot, periodic), self.poll_timeout)
    }

    /// Starts the periodic timer: first expiry one period from `now`.
    pub fn set_periodic(&mut self, period: Nanos, now: Nanos) {
        self.periodic = Some((period, now.saturating_add(period)));
    }

    /// Fires every timer due at `now`. A periodic timer that missed several periods
    /// fires once and moves to its next future expiry (no storm of catch-up events).
    pub fn expire(&mut self, now: Nanos) -> Fired {
        let mut fired = Fired::default();
        if self.singleshot.is_some_and(|deadline| deadline <= now) {
            self.singleshot = None;
            fired.timer_virq = true;
        }
        if let Some((period, next)) = self.periodic
            && next <= now
        {
            let missed = (now - next) / period;
            self.periodic = Some((period, next + (missed + 1) * period));
            fired.timer_virq = true;
        }
        if self.poll_timeout.is_some_and(|deadline| deadline <= now) {
            self.poll_timeout = None;
            fired.poll_timeout = true;
        }
        fired
    }
}

#[cfg(test)]
mod tests {

    /// Where a deadline goes: `tsc_at` is the first tick at which `now` reads it (one
    /// tick earlier it does not yet), and the cheap conversion the APIC is armed with is
    /// never before it, so an interrupt never comes before the clock reads its deadline
    /// (found by review: converted at the TSC's true rate, the deadline came up to
    /// 20 us early after a day at 3 GHz, and the interrupt was taken again and again
    /// until the clock caught up). Late by no more than its documented bound.
    fn check_deadline(clock: &Clock, ns: Nanos) {
        let exact = clock.tsc_at(ns);
        assert!(
            clock.now(exact) >= ns,
            "{clock:?}, {ns} ns: tsc_at reads it"
        );
        if ns > 0 {
            assert!(
                clock.now(exact - 1) < ns,
                "{clock:?}, {ns} ns: the first such tick"
            );
        }
        let cheap = clock.deadline_tsc(ns);
        let hz = clock.tsc_hz;
        let bound = (ns >> 32) * (hz / NANOS_PER_SEC + 1) + clock.scale.deadline_slack() + 1;
        assert!(
            cheap >= exact && cheap <= exact + bound,
            "{hz} Hz, {ns} ns: {cheap} vs {exact}"
        );
    }

    /// For TSC rates from 1 MHz to 10 GHz and times up to a year.
    #[test]
    fn deadlines_are_never_early() {
        for hz in [
            1_000_000,
            1_000_000_007,
            2_494_193_000,
            3_000_000_000,
            10_000_000_000,
        ] {
            let clock = Clock::new(hz, 12_345);
            for ns in [
                0,
                1,
                999,
                1_000_000,
                1_234_567_891,
                86_400 * NANOS_PER_SEC,
                100 * 86_400 * NANOS_PER_SEC,
                365 * 86_400 * NANOS_PER_SEC,
            ] {
                check_deadline(&clock, ns);
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn deadlines_are_never_early_at_any_rate(
            hz in 1_000_000u64..20_000_000_000,
            ns in 0u64..(1 << 58),
            at_zero in 0u64..(1 << 40),
        ) {
            check_deadline(&Clock::new(hz, at_zero), ns);
        }
    }

    use super::*;
    use crate::mm::fake::FakeMem;
    use zerocopy::FromBytes;

    #[test]
    fn scales_match_the_rate_for_common_frequencies() {
        for hz in [
            1_000_000u64,
            14_318_180,
            1_000_000_000,
            1_000_000_001,
            2_000_000_000,
            2_400_000_000,
            3_999_999_999,
            5_000_000_000,
        ] {
            let scale = TscScale::from_hz(hz);
            let one_second = scale.ticks_to_ns(hz);
            assert!(
                one_second.abs_diff(NANOS_PER_SEC) <= 2,
                "{hz} Hz: a second of ticks is {one_second} ns ({scale:?})"
            );
            // The guest's formula (pv-abi) gives the same answer.
            let info = Clock::new(hz, 1000).time_info(1000);
            assert_eq!(info.system_time_at(1000 + hz), one_second);
        }
    }

    #[test]
    fn clock_conversions_round_trip() {
        let clock = Clock::new(2_500_000_000, 10_000);
        assert_eq!(clock.now(10_000), 0);
        assert_eq!(clock.now(5), 0, "before zero saturates");
        assert!(clock.now(10_000 + 2_500_000_000).abs_diff(NANOS_PER_SEC) <= 1);
        let deadline = 123_456_789;
        let tsc = clock.tsc_at(deadline);
        assert!(clock.now(tsc) >= deadline - 1 && clock.now(tsc) <= deadline + 1);
        // 2.5 ticks at the true rate; with the scale's `mul_frac` rounded down and its
        // shift of -1, the first tick at which the clock reads 1 ns is the fourth.
        assert_eq!(clock.ns_to_ticks(1), 4, "rounded up, by the scale");
        let info = clock.time_info(tsc);
        assert_eq!(info.system_time, clock.now(tsc));
        assert_eq!(info.tsc_timestamp, tsc);
        assert_eq!(info.flags, XEN_PVCLOCK_TSC_STABLE_BIT);
    }

    #[test]
    fn rtc_dates_become_unix_time() {
        let t = |year, month, day, hour, minute, second| RtcTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
        };
        assert_eq!(t(1970, 1, 1, 0, 0, 0).unix_seconds(), Some(0));
        assert_eq!(t(2000, 3, 1, 0, 0, 0).unix_seconds(), Some(951_868_800));
        assert_eq!(
            t(2024, 2, 29, 12, 34, 56).unix_seconds(),
            Some(1_709_210_096)
        );
        assert_eq!(t(2026, 11, 22, 1, 0, 0).unix_seconds(), Some(1_795_309_200));
        assert_eq!(t(2026, 13, 1, 0, 0, 0).unix_seconds(), None);
        assert_eq!(t(1969, 12, 31, 0, 0, 0).unix_seconds(), None);
        assert_eq!(from_bcd(0x59), 59);
        assert_eq!(from_bcd(0x00), 0);
    }

    #[test]
    fn wallclock_is_published_under_its_version() {
        let mem = FakeMem::new(2);
        let clock = Wallclock::from_reading(1_700_000_000, 1_500_000_000);
        assert_eq!(
            clock,
            Wallclock {
                sec: 1_699_999_998,
                nsec: 500_000_000
            }
        );
        clock.publish(&mem, Mfn(1));
        clock.publish(&mem, Mfn(1));
        let mut page = vec![0u8; core::mem::size_of::<SharedInfo>()];
        mem.read(4096, &mut page);
        let info = SharedInfo::read_from_bytes(&page).unwrap();
        assert_eq!(info.wc_version, 4, "even: no update in progress");
        assert_eq!(info.wallclock_sec(), 1_699_999_998);
        assert_eq!(info.wc_nsec, 500_000_000);
    }

    #[test]
    fn timers_fire_once_and_periodic_ones_skip_missed_periods() {
        let mut timers = VcpuTimers {
            singleshot: Some(100),
            ..Default::default()
        };
        timers.set_periodic(MIN_PERIOD, 0);
        timers.poll_timeout = Some(50);
        assert_eq!(timers.earliest(true), Some(50));
        assert_eq!(timers.expire(49), Fired::default());
        assert_eq!(
            timers.expire(60),
            Fired {
                timer_virq: false,
                poll_timeout: true
            }
        );
        assert!(timers.expire(100).timer_virq);
        assert_eq!(timers.singleshot, None);
        assert_eq!(timers.earliest(true), Some(MIN_PERIOD));
        // Late by 3.5 periods: one event, next expiry in the future on the grid.
        assert!(timers.expire(4 * MIN_PERIOD + MIN_PERIOD / 2).timer_virq);
        assert_eq!(timers.periodic, Some((MIN_PERIOD, 5 * MIN_PERIOD)));
        assert!(!timers.expire(4 * MIN_PERIOD + MIN_PERIOD / 2).timer_virq);
    }
}
