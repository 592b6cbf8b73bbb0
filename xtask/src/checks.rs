//! The checks of one scenario run, computed from its serial output and outcome.
//!
//! Every guest self-test line is a check (`selftest <name>: ok` passes,
//! `selftest <name>: FAILED <reason>` fails), as is every `expect` and `reject` entry of
//! the manifest, and the run's exit status against `expect_exit`.

use serde::Serialize;

use crate::manifest::{ExpectExit, TestConfig};
use crate::outcome::RunOutcome;

/// One named pass/fail result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked, e.g. `selftest event_channel` or `expect "hello"`.
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
}

impl Check {
    fn new(name: impl Into<String>, passed: bool) -> Self {
        Self {
            name: name.into(),
            passed,
        }
    }
}

/// All checks of a run: self-tests in output order, then expect, reject, exit.
pub fn evaluate(test: &TestConfig, output: &str, outcome: &RunOutcome) -> Vec<Check> {
    let mut checks: Vec<Check> = output.lines().filter_map(selftest_line).collect();
    for needle in &test.expect {
        checks.push(Check::new(
            format!("expect {needle:?}"),
            output.contains(needle.as_str()),
        ));
    }
    for needle in &test.reject {
        checks.push(Check::new(
            format!("reject {needle:?}"),
            !output.contains(needle.as_str()),
        ));
    }
    let exit_ok = match test.expect_exit {
        ExpectExit::Clean => *outcome == RunOutcome::Clean,
        ExpectExit::Crashed => matches!(outcome, RunOutcome::DomainFailed(_)),
    };
    checks.push(Check::new(format!("exit {}", test.expect_exit), exit_ok));
    checks
}

/// The rest of the last line of our hypervisor's own that holds `marker`, after it (a
/// guest's console output is prefixed with its domain's name instead of `(hv)`).
fn hypervisor_line<'a>(output: &'a str, marker: &str) -> Option<&'a str> {
    output.lines().rev().find_map(|line| {
        let (prefix, rest) = line.split_once(marker)?;
        prefix.starts_with("(hv)").then_some(rest.trim_end())
    })
}

/// Our hypervisor's stack kept a margin: the run's report of its deepest use
/// (`hypervisor stack: deepest use <n> of <size> bytes`, at the end of every run) is
/// there and at most three quarters of the stack (an overflow faults in the guard page
/// below it and panics, which the exit check sees; this one sees a path growing towards
/// it).
pub fn stack_margin(output: &str) -> Check {
    let used = hypervisor_line(output, "hypervisor stack: deepest use ").and_then(|rest| {
        let (used, size) = rest.split_once(" of ")?;
        let size = size.strip_suffix(" bytes")?;
        Some((used.parse::<u64>().ok()?, size.parse::<u64>().ok()?))
    });
    let passed = matches!(used, Some((used, size)) if size > 0 && used * 4 <= size * 3);
    Check::new("hypervisor stack used at most 3/4", passed)
}

/// Every frame the domains had came back: the free count at the end of the run (`frames
/// free: <n> at start, <m> now`, every domain torn down) equals the one before the first
/// domain was built. A teardown takes back every frame a domain owns whatever its
/// counts; a frame the hypervisor took for a domain and never gave back, or one left
/// owned by nobody, would be lost to the machine for good.
pub fn frames_returned(output: &str) -> Check {
    let counts = hypervisor_line(output, "frames free: ").and_then(|rest| {
        let (start, now) = rest.split_once(" at start, ")?;
        let now = now.strip_suffix(" now")?;
        Some((start.parse::<u64>().ok()?, now.parse::<u64>().ok()?))
    });
    let passed = matches!(counts, Some((start, now)) if start == now);
    Check::new("every frame back when every domain is gone", passed)
}

const SELFTEST: &str = "selftest ";

/// Reads `[prefix] selftest <name>: ok|FAILED <reason>` into a check named
/// `[prefix] selftest <name>` (the prefix tells domains apart, e.g. `(d2 honest)`).
fn selftest_line(line: &str) -> Option<Check> {
    let line = line.trim_end_matches('\r');
    let at = line.find(SELFTEST)?;
    let (name, result) = line[at + SELFTEST.len()..].split_once(": ")?;
    if name.is_empty() || name.contains(char::is_whitespace) {
        return None;
    }
    let passed = match result.trim_end() {
        "ok" => true,
        failed if failed.starts_with("FAILED") => false,
        _ => return None,
    };
    let prefix = line[..at].trim().trim_start_matches("(XEN)").trim();
    let name = if prefix.is_empty() {
        format!("selftest {name}")
    } else {
        format!("{prefix} selftest {name}")
    };
    Some(Check::new(name, passed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Hypervisor;

    fn test_config(expect_exit: ExpectExit) -> TestConfig {
        TestConfig {
            hypervisors: vec![Hypervisor::Ours],
            timeout_secs: 10,
            expect_exit,
            expect: vec!["hello".into(), "missing".into()],
            reject: vec!["PANIC".into()],
        }
    }

    #[test]
    fn counts_selftests_expectations_and_exit() {
        let output = "\
(d1 demo) pv-guest: hello\r
(d1 demo) selftest console: ok\r
(d1 demo) selftest events: FAILED no upcall\r
(XEN) selftest grants: ok
selftests: 2 passed, 1 failed
selftest not a test line
";
        let checks = evaluate(&test_config(ExpectExit::Clean), output, &RunOutcome::Clean);
        let expected = [
            ("(d1 demo) selftest console", true),
            ("(d1 demo) selftest events", false),
            ("selftest grants", true),
            ("expect \"hello\"", true),
            ("expect \"missing\"", false),
            ("reject \"PANIC\"", true),
            ("exit clean", true),
        ];
        let got: Vec<_> = checks.iter().map(|c| (c.name.as_str(), c.passed)).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn frames_returned_needs_the_report_and_equal_counts() {
        let line = |start: u64, now: u64| {
            format!("(hv) [INFO ] frames free: {start} at start, {now} now\r\n")
        };
        assert!(frames_returned(&line(24362, 24362)).passed);
        assert!(!frames_returned(&line(24362, 24361)).passed);
        assert!(!frames_returned(&line(24362, 24363)).passed);
        assert!(!frames_returned("(hv) [INFO ] hypervisor: run finished: clean\n").passed);
        assert!(!frames_returned("(d1 demo) frames free: 1 at start, 1 now\n").passed);
    }

    #[test]
    fn stack_margin_needs_the_report_and_a_quarter_left() {
        let line = |used: u64| {
            format!("(hv) [INFO ] hypervisor stack: deepest use {used} of 65536 bytes\r\n")
        };
        assert!(stack_margin(&line(16352)).passed);
        assert!(stack_margin(&line(49152)).passed);
        assert!(!stack_margin(&line(49160)).passed);
        assert!(!stack_margin("(hv) [INFO ] hypervisor: run finished: clean\n").passed);
        assert!(
            !stack_margin("(hv) [INFO ] hypervisor stack: deepest use lots of 65536 bytes\n")
                .passed
        );
        // A guest's console line does not count.
        assert!(!stack_margin("(d1 demo) hypervisor stack: deepest use 1 of 65536 bytes\n").passed);
    }

    #[test]
    fn exit_expectations() {
        let crashed = RunOutcome::DomainFailed("x".into());
        let clean = test_config(ExpectExit::Clean);
        let crash = test_config(ExpectExit::Crashed);
        let exit = |config, outcome| evaluate(config, "", outcome).last().unwrap().passed;
        assert!(!exit(&clean, &crashed));
        assert!(exit(&crash, &crashed));
        assert!(!exit(&crash, &RunOutcome::Clean));
        assert!(!exit(&crash, &RunOutcome::HypervisorPanic));
        assert!(!exit(&clean, &RunOutcome::Failed("timeout".into())));
    }
}
