//! The hypervisor console: the `log` crate's backend and the printer of guest console
//! lines, both on COM1.

use crate::arch::x86_64::serial::Serial;
use core::fmt::Write;
use hypervisor::frames::DomId;
use spin::Mutex;

static SERIAL: Mutex<Option<Serial>> = Mutex::new(None);

struct Logger;

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let level = record.level();
            print(format_args!("(hv) [{level:5}] {}\n", record.args()));
        }
    }

    fn flush(&self) {}
}

static LOGGER: Logger = Logger;

/// Brings up the serial port and the logger (level `info` until the command line says).
pub fn init() {
    *SERIAL.lock() = Some(Serial::init());
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
}

/// Applies `loglvl=error|warn|info|debug|trace|all` from the command line.
pub fn set_level_from_cmdline(cmdline: &str) {
    for word in cmdline.split_ascii_whitespace() {
        if let Some(level) = word.strip_prefix("loglvl=") {
            let filter = match level {
                "none" => log::LevelFilter::Off,
                "error" => log::LevelFilter::Error,
                "warn" | "warning" => log::LevelFilter::Warn,
                "info" => log::LevelFilter::Info,
                "debug" => log::LevelFilter::Debug,
                "trace" | "all" => log::LevelFilter::Trace,
                _ => continue,
            };
            log::set_max_level(filter);
        }
    }
}

fn print(args: core::fmt::Arguments<'_>) {
    if let Some(serial) = SERIAL.lock().as_mut() {
        let _ = serial.write_fmt(args);
    }
}

/// Prints without the logger, even if the console lock is held (panic paths).
pub fn early_print(args: core::fmt::Arguments<'_>) {
    let mut serial = Serial::init();
    let _ = serial.write_fmt(args);
}

/// Guest console lines go straight to the serial port, tagged with the domain.
pub struct GuestConsole;

impl hypervisor::hypercall::Console for GuestConsole {
    fn guest_line(&mut self, id: DomId, name: &str, line: &str) {
        print(format_args!("(d{id} {name}) {line}\n"));
    }
}
