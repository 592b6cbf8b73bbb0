//! The time-stamp counter: reading it, and measuring its rate at boot against the
//! legacy PIT (channel 2, whose gate and output are reachable through port 0x61
//! without any interrupt).

use x86_64::instructions::port::Port;

/// The PIT's input clock.
const PIT_HZ: u64 = 1_193_182;
/// One calibration run counts this long (10 ms).
const PIT_TICKS: u64 = PIT_HZ / 100;
/// Calibration runs; the shortest wins (a run can only be stretched, by emulation
/// hiccups or SMIs, never shortened).
const RUNS: usize = 3;

const PIT_CHANNEL2: u16 = 0x42;
const PIT_COMMAND: u16 = 0x43;
const PORT_B: u16 = 0x61;
/// Port B: channel 2 gate (on) and speaker (off); bit 5 reads channel 2's output.
const GATE: u8 = 1 << 0;
const SPEAKER: u8 = 1 << 1;
const OUTPUT: u8 = 1 << 5;
/// Channel 2, low byte then high byte, mode 0 (interrupt on terminal count), binary.
const CHANNEL2_MODE0: u8 = 0b1011_0000;

/// The current TSC value.
pub fn read() -> u64 {
    // SAFETY: rdtsc only reads the counter (CR4.TSD is clear in ring 0 anyway).
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Measures the TSC frequency in Hz.
pub fn calibrate() -> u64 {
    let mut best = u64::MAX;
    for _ in 0..RUNS {
        best = best.min(one_run());
    }
    (best.max(1) as u128 * u128::from(PIT_HZ) / u128::from(PIT_TICKS)) as u64
}

/// TSC ticks while PIT channel 2 counts down `PIT_TICKS`.
fn one_run() -> u64 {
    let mut port_b: Port<u8> = Port::new(PORT_B);
    let mut command: Port<u8> = Port::new(PIT_COMMAND);
    let mut channel2: Port<u8> = Port::new(PIT_CHANNEL2);
    // SAFETY: the PIT and port B belong to the hypervisor; this is the standard
    // one-shot sequence, and the speaker stays off.
    unsafe {
        let b = port_b.read();
        port_b.write((b & !SPEAKER) | GATE);
        command.write(CHANNEL2_MODE0);
        channel2.write((PIT_TICKS & 0xff) as u8);
        channel2.write((PIT_TICKS >> 8) as u8);
        let start = read();
        while port_b.read() & OUTPUT == 0 {
            core::hint::spin_loop();
        }
        read() - start
    }
}
