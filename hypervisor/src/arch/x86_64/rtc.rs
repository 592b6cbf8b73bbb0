//! The CMOS real-time clock: the wallclock at boot.

use hypervisor::time::{RtcTime, from_bcd};
use x86_64::instructions::port::Port;

const INDEX: u16 = 0x70;
const DATA: u16 = 0x71;
const SECONDS: u8 = 0x00;
const MINUTES: u8 = 0x02;
const HOURS: u8 = 0x04;
const DAY: u8 = 0x07;
const MONTH: u8 = 0x08;
const YEAR: u8 = 0x09;
const CENTURY: u8 = 0x32;
const STATUS_A: u8 = 0x0a;
const STATUS_B: u8 = 0x0b;
/// Status A: an update is in progress (the registers are not stable).
const UPDATING: u8 = 1 << 7;
/// Status B: values are binary, not BCD.
const BINARY: u8 = 1 << 2;
/// Status B: 24-hour clock.
const HOURS_24: u8 = 1 << 1;
/// The PM flag in the hours register of a 12-hour clock.
const PM: u8 = 1 << 7;

fn cmos(register: u8) -> u8 {
    // SAFETY: the CMOS index/data ports belong to the hypervisor; reading a register
    // has no side effect (the NMI-disable bit stays clear).
    unsafe {
        Port::<u8>::new(INDEX).write(register);
        Port::<u8>::new(DATA).read()
    }
}

fn snapshot() -> [u8; 7] {
    while cmos(STATUS_A) & UPDATING != 0 {
        core::hint::spin_loop();
    }
    [SECONDS, MINUTES, HOURS, DAY, MONTH, YEAR, CENTURY].map(cmos)
}

/// Reads the date and time (UTC, as QEMU and most firmware keep it). Two identical
/// snapshots in a row guard against an update in between.
pub fn read() -> RtcTime {
    let mut raw = snapshot();
    loop {
        let again = snapshot();
        if again == raw {
            break;
        }
        raw = again;
    }
    let status = cmos(STATUS_B);
    let decode = |v: u8| {
        if status & BINARY != 0 {
            u32::from(v)
        } else {
            from_bcd(v)
        }
    };
    let [second, minute, hour_raw, day, month, year, century] = raw;
    let mut hour = decode(hour_raw & !PM);
    if status & HOURS_24 == 0 && hour_raw & PM != 0 {
        hour = (hour % 12) + 12;
    } else if status & HOURS_24 == 0 && hour == 12 {
        hour = 0;
    }
    let century = match decode(century) {
        c @ 19..=99 => c,
        _ => 20,
    };
    RtcTime {
        year: century * 100 + decode(year),
        month: decode(month),
        day: decode(day),
        hour,
        minute: decode(minute),
        second: decode(second),
    }
}
