//! Debug keys on the hypervisor console, as in Xen: a key typed on COM1 dumps
//! hypervisor state to the console.
//!
//! | key | dumps |
//! | --- | --- |
//! | `h` | this list |
//! | `q` | domains and their vCPUs (and raises VIRQ_DEBUG on every vCPU, as Xen does) |
//! | `r` | the run queue and the scheduler's accounting |
//! | `e` | every domain's event channels |
//!
//! Keys reach the hypervisor when console input is switched to it (Ctrl-A three times,
//! as in Xen; it starts there when no domain is privileged), or through
//! `sysctl(XEN_SYSCTL_debug_keys)` from a privileged domain. The UART raises no
//! interrupt: input is polled on every tick of the APIC timer (at least once per
//! scheduler slice, and every 50 ms while the machine idles).

use super::State;
use crate::arch::x86_64::serial;
use core::fmt::Write;
use hypervisor::console_input::Typed;
use pv_abi::xen::{VIRQ_CONSOLE, VIRQ_DEBUG};

/// Takes every byte waiting on COM1: a debug key, or input for the console-owning
/// domain (VIRQ_CONSOLE), or part of a switch (Ctrl-A three times).
pub(super) fn poll(state: &mut State) {
    while let Some(byte) = serial::try_read() {
        match state.console_input.feed(byte) {
            Typed::DebugKey(key) => handle(state, key),
            Typed::ForDomain(id) => {
                let now = state.now();
                let mut guests = state.guests(now);
                if let Some(slot) = guests.slot_of(id) {
                    guests.raise_virq(slot, 0, VIRQ_CONSOLE);
                }
            }
            Typed::Switched(target) => super::run::announce_input(target),
            Typed::Nothing => {}
        }
    }
}

/// Handles one debug key.
pub(super) fn handle(state: &mut State, key: u8) {
    let now = state.now();
    let mut out = LogLines::default();
    let _ = match key {
        b'h' => writeln!(
            out,
            "debug keys: 'q' domains and vCPUs, 'r' run queues, 'e' event channels"
        ),
        b'q' => {
            let _ = writeln!(out, "'q' pressed -> dumping domain info (now {now} ns)");
            let mut guests = state.guests(now);
            let result = guests.dump_domains(&mut out);
            for slot in 0..guests.domains.len() {
                for vcpu in 0..guests.runtime[slot].nr_vcpus {
                    guests.raise_virq(slot, vcpu, VIRQ_DEBUG);
                }
            }
            result
        }
        b'r' => {
            let _ = writeln!(out, "'r' pressed -> dumping run queues");
            state.sched.dump(&mut out, now)
        }
        b'e' => {
            let _ = writeln!(out, "'e' pressed -> dumping event-channel info");
            state.guests(now).dump_events(&mut out)
        }
        b'\r' | b'\n' => Ok(()),
        other => writeln!(out, "debug key {:?}: unknown ('h' for help)", other as char),
    };
    out.flush();
}

/// Collects formatted text and logs it line by line.
#[derive(Default)]
struct LogLines {
    line: heapless::String<200>,
}

impl LogLines {
    fn flush(&mut self) {
        if !self.line.is_empty() {
            log::info!("{}", self.line);
            self.line.clear();
        }
    }
}

impl Write for LogLines {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for c in s.chars() {
            if c == '\n' {
                self.flush();
            } else if self.line.push(c).is_err() {
                self.flush();
                let _ = self.line.push(c);
            }
        }
        Ok(())
    }
}
