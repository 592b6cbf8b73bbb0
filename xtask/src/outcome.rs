//! How a run ended, and how that maps to exit statuses.
//!
//! On our hypervisor the hypervisor itself ends QEMU through the isa-debug-exit device:
//! writing `v` to port 0xf4 makes QEMU exit with `(v << 1) | 1`. On Xen the guest cannot
//! end QEMU, so [`XenConsole`] reads Xen's serial console and decides when the run is over
//! and how it went. Both end in a [`RunOutcome`], which `cargo xtask run` turns into its
//! exit status (documented in docs/xtask.md).

use std::time::Duration;

use crate::qemu::{ConsoleWatcher, End, Verdict};

/// `xtask run` exit status for a run that did not finish by the protocol (timeout, triple
/// fault, unexpected QEMU status, Xen panic) and for xtask's own errors.
pub const FAILED_RUN_EXIT: u8 = 3;

/// Value our hypervisor writes to port 0xf4: every domain powered off with code 0.
pub const HYPERVISOR_EXIT_CLEAN: i32 = 0;
/// Value our hypervisor writes to port 0xf4: some domain crashed or exited non-zero.
pub const HYPERVISOR_EXIT_DOMAIN_FAILED: i32 = 1;
/// Value our hypervisor writes to port 0xf4: the hypervisor panicked.
pub const HYPERVISOR_EXIT_PANIC: i32 = 2;

/// QEMU's exit status after the guest wrote `value` to the isa-debug-exit port.
pub const fn qemu_status_for(value: i32) -> i32 {
    (value << 1) | 1
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// Every domain powered off with code 0.
    Clean,
    /// The run finished, but some domain crashed or exited non-zero.
    DomainFailed(String),
    /// Our hypervisor panicked (and said so through the exit port).
    HypervisorPanic,
    /// The run did not finish by the protocol.
    Failed(String),
}

impl RunOutcome {
    /// `cargo xtask run`'s exit status for this outcome.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Clean => 0,
            Self::DomainFailed(_) => 1,
            Self::HypervisorPanic => 2,
            Self::Failed(_) => FAILED_RUN_EXIT,
        }
    }

    /// One line for people.
    pub fn describe(&self) -> String {
        match self {
            Self::Clean => "clean: every domain powered off with code 0".to_owned(),
            Self::DomainFailed(why) => format!("crashed: {why}"),
            Self::HypervisorPanic => "hypervisor panic".to_owned(),
            Self::Failed(why) => format!("failed: {why}"),
        }
    }

    /// The outcome of a run on our hypervisor, from how QEMU ended.
    pub fn from_our_hypervisor(end: &End) -> Self {
        match *end {
            End::Exited(Some(status)) if status == qemu_status_for(HYPERVISOR_EXIT_CLEAN) => {
                Self::Clean
            }
            End::Exited(Some(status))
                if status == qemu_status_for(HYPERVISOR_EXIT_DOMAIN_FAILED) =>
            {
                Self::DomainFailed("the hypervisor reported a crashed or failed domain".into())
            }
            End::Exited(Some(status)) if status == qemu_status_for(HYPERVISOR_EXIT_PANIC) => {
                Self::HypervisorPanic
            }
            End::Exited(Some(0)) => Self::Failed(
                "QEMU exited with status 0: the machine reset (with -no-reboot, most likely a \
                 triple fault) without using the exit port"
                    .into(),
            ),
            End::Exited(Some(status)) => {
                Self::Failed(format!("QEMU exited with unexpected status {status}"))
            }
            End::Exited(None) => Self::Failed("QEMU was killed by a signal".into()),
            End::TimedOut(limit) => Self::Failed(format!("timed out after {}s", limit.as_secs())),
            End::Stopped => Self::Failed("QEMU was stopped before the run finished".into()),
        }
    }
}

/// What the guest kernel prints as its last line: `pv-guest: shutting down: <reason>, code C`.
pub const GUEST_SHUTDOWN_MARKER: &str = "pv-guest: shutting down: ";
/// Xen's line once dom0 has powered off.
const XEN_DOM0_HALTED: &str = "Hardware Dom0 halted";
/// Xen's line when dom0 crashed.
const XEN_DOM0_CRASHED: &str = "Hardware Dom0 crashed";
/// Part of Xen's panic banner.
const XEN_PANIC: &str = "Panic on CPU";
/// How long to wait for Xen's halt line after the guest's shutdown line.
pub const XEN_HALT_GRACE: Duration = Duration::from_secs(5);
/// How long to keep reading after a Xen panic or dom0 crash, to capture the details.
const XEN_DETAIL_GRACE: Duration = Duration::from_secs(2);

/// Reads Xen's console during a run and decides the run's outcome.
#[derive(Debug, Default)]
pub struct XenConsole {
    /// The guest's shutdown reason and code, once its last line was seen.
    shutdown: Option<(String, i64)>,
    halted: bool,
    dom0_crashed: bool,
    panicked: bool,
}

/// Parses `pv-guest: shutting down: <reason>, code <C>` anywhere in `line`.
pub fn parse_guest_shutdown(line: &str) -> Option<(String, i64)> {
    let rest = &line[line.find(GUEST_SHUTDOWN_MARKER)? + GUEST_SHUTDOWN_MARKER.len()..];
    let (reason, code) = rest.split_once(", code ")?;
    let code = code.trim().parse().ok()?;
    Some((reason.trim().to_owned(), code))
}

impl ConsoleWatcher for XenConsole {
    fn line(&mut self, line: &str) -> Verdict {
        if self.shutdown.is_none()
            && let Some(shutdown) = parse_guest_shutdown(line)
        {
            self.shutdown = Some(shutdown);
            return Verdict::StopWithin(XEN_HALT_GRACE);
        }
        if line.contains(XEN_DOM0_HALTED) {
            self.halted = true;
            return Verdict::StopWithin(Duration::ZERO);
        }
        if line.contains(XEN_DOM0_CRASHED) {
            self.dom0_crashed = true;
            return Verdict::StopWithin(XEN_DETAIL_GRACE);
        }
        if line.contains(XEN_PANIC) {
            self.panicked = true;
            return Verdict::StopWithin(XEN_DETAIL_GRACE);
        }
        Verdict::Continue
    }
}

impl XenConsole {
    /// The outcome, given what was seen and how QEMU ended.
    pub fn outcome(&self, end: &End) -> RunOutcome {
        if self.panicked {
            return RunOutcome::Failed("Xen panicked".into());
        }
        if let Some((reason, code)) = &self.shutdown {
            return if reason == "poweroff" && *code == 0 {
                RunOutcome::Clean
            } else {
                RunOutcome::DomainFailed(format!("dom0 shut down: {reason}, code {code}"))
            };
        }
        if self.dom0_crashed {
            return RunOutcome::DomainFailed("Xen reported that dom0 crashed".into());
        }
        if self.halted {
            return RunOutcome::Failed("dom0 halted without the guest's shutdown line".into());
        }
        match end {
            End::TimedOut(limit) => {
                RunOutcome::Failed(format!("timed out after {}s", limit.as_secs()))
            }
            End::Exited(status) => RunOutcome::Failed(format!(
                "QEMU exited (status {}) before the guest's shutdown line",
                status.map_or_else(|| "signal".to_owned(), |s| s.to_string())
            )),
            End::Stopped => RunOutcome::Failed("QEMU was stopped".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_exit_statuses() {
        let from = |code| RunOutcome::from_our_hypervisor(&End::Exited(Some(code)));
        assert_eq!(from(1), RunOutcome::Clean);
        assert_eq!(from(1).exit_code(), 0);
        assert_eq!(from(3).exit_code(), 1);
        assert_eq!(from(5), RunOutcome::HypervisorPanic);
        assert_eq!(from(5).exit_code(), 2);
        // Status 0 is a silent reset (triple fault with -no-reboot): never success.
        assert_eq!(from(0).exit_code(), 3);
        assert!(from(0).describe().contains("triple fault"));
        assert_eq!(from(7).exit_code(), 3);
        assert_eq!(from(2).exit_code(), 3);
        let timed_out = RunOutcome::from_our_hypervisor(&End::TimedOut(Duration::from_secs(9)));
        assert_eq!(timed_out.exit_code(), 3);
        assert!(timed_out.describe().contains("9s"));
        assert_eq!(
            RunOutcome::from_our_hypervisor(&End::Exited(None)).exit_code(),
            3
        );
        assert_eq!(qemu_status_for(HYPERVISOR_EXIT_PANIC), 5);
    }

    #[test]
    fn guest_shutdown_line() {
        let line = "(XEN) pv-guest: shutting down: poweroff, code 0";
        assert_eq!(parse_guest_shutdown(line), Some(("poweroff".into(), 0)));
        let line = "pv-guest: shutting down: poweroff, code 3\r";
        assert_eq!(parse_guest_shutdown(line), Some(("poweroff".into(), 3)));
        assert_eq!(
            parse_guest_shutdown("pv-guest: shutting down: poweroff, code x"),
            None
        );
        assert_eq!(parse_guest_shutdown("selftests: 3 passed, 0 failed"), None);
    }

    fn feed(console: &mut XenConsole, lines: &[&str]) -> Vec<Verdict> {
        lines.iter().map(|line| console.line(line)).collect()
    }

    #[test]
    fn xen_clean_poweroff() {
        let mut console = XenConsole::default();
        let verdicts = feed(
            &mut console,
            &[
                "(XEN) Xen version 4.17",
                "pv-guest: hello from a Rust PV kernel",
                "pv-guest: shutting down: poweroff, code 0",
                "(XEN) Hardware Dom0 halted: halting machine",
            ],
        );
        assert_eq!(verdicts[1], Verdict::Continue);
        assert_eq!(verdicts[2], Verdict::StopWithin(XEN_HALT_GRACE));
        assert_eq!(verdicts[3], Verdict::StopWithin(Duration::ZERO));
        assert_eq!(console.outcome(&End::Stopped), RunOutcome::Clean);
    }

    #[test]
    fn xen_nonzero_code_and_no_halt_line() {
        let mut console = XenConsole::default();
        feed(
            &mut console,
            &["(XEN) pv-guest: shutting down: poweroff, code 2"],
        );
        // Halt line never came: the grace period ended the run; the code still counts.
        assert_eq!(console.outcome(&End::Stopped).exit_code(), 1);
    }

    #[test]
    fn xen_failures() {
        let mut console = XenConsole::default();
        feed(
            &mut console,
            &[
                "(XEN) ****************************************",
                "(XEN) Panic on CPU 0:",
            ],
        );
        assert_eq!(console.outcome(&End::Stopped).exit_code(), 3);

        let mut console = XenConsole::default();
        feed(
            &mut console,
            &["(XEN) Hardware Dom0 crashed: rebooting machine in 5 seconds."],
        );
        assert_eq!(console.outcome(&End::Stopped).exit_code(), 1);

        let console = XenConsole::default();
        let timed_out = console.outcome(&End::TimedOut(Duration::from_secs(60)));
        assert_eq!(timed_out.exit_code(), 3);
        assert_eq!(console.outcome(&End::Exited(Some(0))).exit_code(), 3);

        let mut console = XenConsole::default();
        feed(
            &mut console,
            &["(XEN) Hardware Dom0 halted: halting machine"],
        );
        assert_eq!(console.outcome(&End::Stopped).exit_code(), 3);
    }
}
