//! The test report: `target/xtask/test-report.json` and the closing summary.
//!
//! One entry per host step and per scenario run. The last line `cargo xtask test` prints is
//! `xtask: N passed, M failed`, counting both; CI and people read that line.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::checks::Check;

/// A host step: prerequisites, fmt, clippy, unit tests, kernel build.
#[derive(Debug, Clone, Serialize)]
pub struct HostStep {
    /// What ran, e.g. `cargo fmt --all --check`.
    pub name: String,
    /// Whether it succeeded.
    pub passed: bool,
    /// Wall-clock time.
    pub seconds: f64,
}

/// One scenario on one hypervisor.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioRun {
    /// The scenario (manifest file name without `.toml`).
    pub name: String,
    /// `ours` or `xen`.
    pub hypervisor: String,
    /// Whether every check passed.
    pub passed: bool,
    /// Number of checks.
    pub checks_run: usize,
    /// Number of failed checks.
    pub checks_failed: usize,
    /// Every check, in order.
    pub checks: Vec<Check>,
    /// Wall-clock time of the QEMU run.
    pub seconds: f64,
    /// How the run ended, in words.
    pub outcome: String,
    /// The serial log, relative to the repository root (absent if QEMU never ran).
    pub log: Option<String>,
}

impl ScenarioRun {
    /// A run whose result is its checks.
    pub fn new(
        name: &str,
        hypervisor: &str,
        checks: Vec<Check>,
        seconds: f64,
        outcome: String,
        log: Option<String>,
    ) -> Self {
        let checks_failed = checks.iter().filter(|check| !check.passed).count();
        Self {
            name: name.to_owned(),
            hypervisor: hypervisor.to_owned(),
            passed: checks_failed == 0 && !checks.is_empty(),
            checks_run: checks.len(),
            checks_failed,
            checks,
            seconds,
            outcome,
            log,
        }
    }
}

/// Everything `cargo xtask test` did.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Host steps, in order.
    pub host_steps: Vec<HostStep>,
    /// Scenario runs, in order.
    pub scenarios: Vec<ScenarioRun>,
    /// Passed host steps plus passed scenario runs.
    pub passed: usize,
    /// Failed host steps plus failed scenario runs.
    pub failed: usize,
}

impl Report {
    /// Recomputes the totals.
    fn tally(&mut self) {
        let results = self
            .host_steps
            .iter()
            .map(|step| step.passed)
            .chain(self.scenarios.iter().map(|run| run.passed));
        let (passed, failed) = results.fold(
            (0, 0),
            |(p, f), ok| if ok { (p + 1, f) } else { (p, f + 1) },
        );
        self.passed = passed;
        self.failed = failed;
    }

    /// Adds a host step.
    pub fn push_step(&mut self, step: HostStep) {
        self.host_steps.push(step);
        self.tally();
    }

    /// Adds a scenario run.
    pub fn push_run(&mut self, run: ScenarioRun) {
        self.scenarios.push(run);
        self.tally();
    }

    /// Writes the JSON report.
    pub fn write(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let json = serde_json::to_string_pretty(self)?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))
    }

    /// The summary table, ending with the `xtask: N passed, M failed` line.
    pub fn summary(&self) -> String {
        let mut out = String::from("\nxtask: summary\n");
        for step in &self.host_steps {
            let _ = writeln!(
                out,
                "  {}  {:<48} {:>7.1}s",
                verdict(step.passed),
                step.name,
                step.seconds
            );
        }
        for run in &self.scenarios {
            let what = format!("{} on {}", run.name, run.hypervisor);
            let checks = format!(
                "{}/{} checks",
                run.checks_run - run.checks_failed,
                run.checks_run
            );
            let _ = writeln!(
                out,
                "  {}  {what:<30} {checks:>17} {:>7.1}s",
                verdict(run.passed),
                run.seconds
            );
        }
        let _ = write!(out, "{}", self.closing_line());
        out
    }

    /// `xtask: N passed, M failed`.
    pub fn closing_line(&self) -> String {
        format!("xtask: {} passed, {} failed", self.passed, self.failed)
    }
}

/// Seconds rounded to milliseconds, for a readable report.
pub fn seconds(duration: std::time::Duration) -> f64 {
    (duration.as_secs_f64() * 1000.0).round() / 1000.0
}

fn verdict(passed: bool) -> &'static str {
    if passed { "PASS" } else { "FAIL" }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        let mut report = Report::default();
        report.push_step(HostStep {
            name: "cargo fmt --all --check".into(),
            passed: true,
            seconds: 1.0,
        });
        let checks = vec![
            Check {
                name: "selftest a".into(),
                passed: true,
            },
            Check {
                name: "exit clean".into(),
                passed: false,
            },
        ];
        report.push_run(ScenarioRun::new(
            "demo",
            "ours",
            checks,
            2.5,
            "failed".into(),
            None,
        ));
        report
    }

    #[test]
    fn tallies_steps_and_runs() {
        let report = sample();
        assert_eq!((report.passed, report.failed), (1, 1));
        let run = &report.scenarios[0];
        assert_eq!(
            (run.checks_run, run.checks_failed, run.passed),
            (2, 1, false)
        );
        let summary = report.summary();
        assert!(summary.lines().last().unwrap() == "xtask: 1 passed, 1 failed");
        assert!(summary.contains("FAIL  demo on ours"));
        assert!(summary.contains("1/2 checks"));
    }

    #[test]
    fn a_run_without_checks_does_not_pass() {
        let run = ScenarioRun::new("x", "ours", Vec::new(), 0.0, String::new(), None);
        assert!(!run.passed);
    }

    #[test]
    fn json_shape() {
        let dir = std::env::temp_dir().join(format!("xtask-report-{}", std::process::id()));
        let path = dir.join("test-report.json");
        sample().write(&path).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(json["passed"], 1);
        assert_eq!(json["failed"], 1);
        assert_eq!(json["host_steps"][0]["name"], "cargo fmt --all --check");
        let run = &json["scenarios"][0];
        assert_eq!(run["name"], "demo");
        assert_eq!(run["hypervisor"], "ours");
        assert_eq!(run["passed"], false);
        assert_eq!(run["checks_run"], 2);
        assert_eq!(run["checks_failed"], 1);
        assert_eq!(run["checks"][1]["name"], "exit clean");
        assert_eq!(run["checks"][1]["passed"], false);
        assert_eq!(run["seconds"], 2.5);
    }
}
