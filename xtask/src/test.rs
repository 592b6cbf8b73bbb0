//! `cargo xtask test`: everything CI checks, in the order a person would.
//!
//! 1. prerequisites (QEMU, Xen's headers; installed when running as root) and the Xen image,
//! 2. host checks: `cargo fmt --check`, `cargo clippy -D warnings`, `cargo test`,
//!    `cargo doc` (rustdoc warnings denied),
//! 3. the kernel build, and a check that the guest kernel's code touches no x87 state,
//! 4. every scenario on every hypervisor its `[test]` table lists, each a set of checks,
//!    then the benchmark's instruction budgets (`bench::guard`),
//! 5. `target/xtask/test-report.json` and a summary whose last line is
//!    `xtask: N passed, M failed`; the exit status is non-zero if anything failed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::build::{GUEST_KERNEL_BIN, HYPERVISOR_BIN, WorkspaceBinaries};
use crate::checks::{self, Check};
use crate::manifest::{Hypervisor, Scenario};
use crate::prereq::{self, Apt, Needs};
use crate::qemu::Accel;
use crate::report::{self, HostStep, Report, ScenarioRun};
use crate::run::{self, Run};
use crate::workspace::{Profile, Workspace};
use crate::{image_check, sse_check, x87_check, xen};

/// Options of `cargo xtask test`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run only the scenario with this name (repeatable).
    #[arg(long, value_name = "NAME")]
    only: Vec<String>,
    /// Skip the host checks (fmt, clippy, unit tests).
    #[arg(long)]
    skip_host: bool,
    /// Run scenarios only on this hypervisor.
    #[arg(long, value_enum)]
    hypervisor: Option<Hypervisor>,
    /// QEMU accelerator (see `cargo xtask run --help`).
    #[arg(long, value_enum, default_value_t = Accel::Tcg)]
    accel: Accel,
    /// Stream every run's serial console to the terminal.
    #[arg(long, short)]
    verbose: bool,
}

/// Lines of a failed run's log printed after it.
const LOG_TAIL_LINES: usize = 40;

/// Runs the whole suite; the exit code is 0 only if everything passed.
pub fn main(workspace: &Workspace, args: &Args) -> Result<ExitCode> {
    let mut report = Report::default();
    let mut apt = Apt::default();

    let (scenarios, runs) = plan(workspace, args, &mut report);
    let wants_xen = runs
        .iter()
        .any(|&(_, hypervisor)| hypervisor == Hypervisor::Xen);

    let prerequisites_ok = step(&mut report, "prerequisites", || {
        let needs = Needs {
            qemu: !runs.is_empty(),
            xen_headers: !args.skip_host,
            perf: false,
        };
        prereq::ensure(needs, &mut apt)
    });
    // A separate step: without Xen's image only the Xen runs are lost.
    let mut xen_image = None;
    if wants_xen {
        step(&mut report, "Xen 4.17 image", || {
            xen_image = Some(xen::ensure_image(workspace, &mut apt)?);
            Ok(())
        });
    }

    if !args.skip_host {
        for command in [
            &["fmt", "--all", "--check"][..],
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
            &["test", "--workspace"],
            // The ABI crate is what driver writers read: its docs (and everyone's) must
            // build without a broken or private link.
            &["doc", "--workspace", "--no-deps"],
        ] {
            step(&mut report, &format!("cargo {}", command.join(" ")), || {
                let mut cargo = workspace.cargo();
                if command[0] == "doc" {
                    cargo.env("RUSTDOCFLAGS", "-D warnings");
                }
                let status = cargo.args(command).status()?;
                if !status.success() {
                    bail!("{status}");
                }
                Ok(())
            });
        }
    }

    let mut binaries = None;
    if !runs.is_empty() {
        step(&mut report, "build kernels (release)", || {
            let loaded = WorkspaceBinaries::load(workspace)?;
            let plan: Vec<_> = runs
                .iter()
                .map(|&(index, hv)| (&scenarios[index], hv))
                .collect();
            loaded.build(
                workspace,
                Profile::Release,
                &run::binaries_needed(&loaded, &plan),
            )?;
            binaries = Some(loaded);
            Ok(())
        });
    }
    // The guest kernel's event entry leaves the x87 registers to the process switch:
    // sound only while none of its code touches them (x87_check.rs).
    if let Some(loaded) = &binaries {
        step(&mut report, "guest kernel leaves x87 state alone", || {
            let built = loaded.build(workspace, Profile::Release, &[GUEST_KERNEL_BIN])?;
            x87_check::check_binary(&built[0], "the guest kernel's event entry")
        });
        // The hypervisor saves only a guest's MXCSR and XMM registers on entry.
        step(&mut report, "hypervisor leaves x87 state alone", || {
            let built = loaded.build(workspace, Profile::Release, &[HYPERVISOR_BIN])?;
            x87_check::check_binary(&built[0], "the hypervisor's entry (hv_save_fpu_xmm)")
        });
        // Code that runs with another's SSE registers live, unsaved: the hypervisor's
        // fast path and lanes (no lazy-FPU net) and the guest kernel's kernel-mode trap
        // handler (no x87/SSE save). Sound only while nothing they reach touches those
        // registers (sse_check.rs; every release build is checked too: build.rs).
        for (name, binary, target) in [
            (
                "hypercall fast path and lanes touch no SSE state",
                HYPERVISOR_BIN,
                &sse_check::HYPERVISOR,
            ),
            (
                "guest kernel-mode traps touch no SSE state",
                GUEST_KERNEL_BIN,
                &sse_check::GUEST_KERNEL,
            ),
        ] {
            step(&mut report, name, || {
                let built = loaded.build(workspace, Profile::Release, &[binary])?;
                println!("{}", sse_check::check_binary(&built[0], target)?);
                Ok(())
            });
        }
        // The footprint target (<= 1 MiB image) holds only while large statics are
        // `.bss` (image_check.rs).
        step(
            &mut report,
            "hypervisor image loads no stretch of zeros",
            || {
                let built = loaded.build(workspace, Profile::Release, &[HYPERVISOR_BIN])?;
                image_check::check_binary(&built[0])
            },
        );
    }

    for &(index, hypervisor) in &runs {
        let scenario = &scenarios[index];
        let result = match (&binaries, prerequisites_ok) {
            (Some(binaries), true) => run_scenario(
                workspace,
                binaries,
                scenario,
                hypervisor,
                args,
                xen_image.as_deref(),
            ),
            _ => not_run(scenario, hypervisor, "prerequisites or kernel build failed"),
        };
        report.push_run(result);
    }
    // The instruction budgets of the PV cases (deterministic under -icount): whenever
    // our hypervisor's scenarios run unfiltered.
    if args.only.is_empty() && args.hypervisor != Some(Hypervisor::Xen) && prerequisites_ok {
        step(&mut report, "bench budgets (ours, -icount)", || {
            crate::bench::guard(workspace)
        });
    }

    let report_path = workspace.xtask_dir().join("test-report.json");
    match report.write(&report_path) {
        Ok(()) => println!("\nxtask: report in {}", workspace.display(&report_path)),
        Err(error) => println!("\nxtask: could not write the report: {error:#}"),
    }
    println!("{}", report.summary());
    Ok(if report.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Loads the manifests and lists the runs `(scenario index, hypervisor)` to do. Invalid
/// manifests and unknown `--only` names become failed entries of the report.
fn plan(
    workspace: &Workspace,
    args: &Args,
    report: &mut Report,
) -> (Vec<Scenario>, Vec<(usize, Hypervisor)>) {
    let mut scenarios = Vec::new();
    let mut runs = Vec::new();
    let files = match Scenario::files_in(&workspace.scenario_dir()) {
        Ok(files) => files,
        Err(error) => {
            step(report, "list scenarios", || Err(error));
            return (scenarios, runs);
        }
    };
    let stem = |path: &PathBuf| path.file_stem().map(|s| s.to_string_lossy().into_owned());
    for name in &args.only {
        if !files
            .iter()
            .any(|file| stem(file).as_deref() == Some(name.as_str()))
        {
            step(report, &format!("scenario `{name}` (--only)"), || {
                bail!("no such scenario")
            });
        }
    }
    for file in &files {
        let name = stem(file).unwrap_or_default();
        if !args.only.is_empty() && !args.only.contains(&name) {
            continue;
        }
        let scenario = match Scenario::load(file) {
            Ok(scenario) => scenario,
            Err(error) => {
                println!(
                    "xtask: FAIL manifest {}: {error:#}",
                    workspace.display(file)
                );
                report.push_run(not_run_named(&name, "-", &format!("{error:#}")));
                continue;
            }
        };
        let hypervisors = scenario
            .manifest
            .test
            .as_ref()
            .map(|test| test.hypervisors.clone());
        for hypervisor in hypervisors.unwrap_or_default() {
            if args.hypervisor.is_none_or(|only| only == hypervisor) {
                runs.push((scenarios.len(), hypervisor));
            }
        }
        scenarios.push(scenario);
    }
    (scenarios, runs)
}

/// Runs one host step, printing and recording its result.
fn step(report: &mut Report, name: &str, body: impl FnOnce() -> Result<()>) -> bool {
    println!("xtask: step: {name}");
    let start = Instant::now();
    let result = body();
    let seconds = report::seconds(start.elapsed());
    match &result {
        Ok(()) => println!("xtask: PASS {name} ({seconds:.1}s)"),
        Err(error) => println!("xtask: FAIL {name} ({seconds:.1}s): {error:#}"),
    }
    report.push_step(HostStep {
        name: name.to_owned(),
        passed: result.is_ok(),
        seconds,
    });
    result.is_ok()
}

/// Boots one scenario on one hypervisor and evaluates its checks.
fn run_scenario(
    workspace: &Workspace,
    binaries: &WorkspaceBinaries,
    scenario: &Scenario,
    hypervisor: Hypervisor,
    args: &Args,
    xen_image: Option<&std::path::Path>,
) -> ScenarioRun {
    let Some(test) = &scenario.manifest.test else {
        return not_run(scenario, hypervisor, "no [test] table");
    };
    let run = Run {
        scenario,
        hypervisor,
        accel: args.accel,
        timeout: Duration::from_secs(test.timeout_secs),
        echo: args.verbose,
    };
    let (outcome, capture, log) = match run::launch(workspace, binaries, &run, xen_image) {
        Ok(done) => done,
        Err(error) => {
            println!("xtask: FAIL {} on {hypervisor}: {error:#}", scenario.name);
            return not_run(scenario, hypervisor, &format!("{error:#}"));
        }
    };
    let mut checks = checks::evaluate(test, &capture.output, &outcome);
    if hypervisor == Hypervisor::Ours {
        checks.push(checks::stack_margin(&capture.output));
        checks.push(checks::frames_returned(&capture.output));
    }
    let result = ScenarioRun::new(
        &scenario.name,
        &hypervisor.to_string(),
        checks,
        report::seconds(capture.elapsed),
        outcome.describe(),
        Some(workspace.display(&log).to_string()),
    );
    let verdict = if result.passed { "PASS" } else { "FAIL" };
    println!(
        "xtask: {verdict} {} on {hypervisor}: {}/{} checks, {} ({:.1}s)",
        scenario.name,
        result.checks_run - result.checks_failed,
        result.checks_run,
        result.outcome,
        result.seconds,
    );
    if !result.passed {
        for check in result.checks.iter().filter(|check| !check.passed) {
            println!("xtask:   failed check: {}", check.name);
        }
        println!("xtask:   last lines of {}:", workspace.display(&log));
        let lines: Vec<&str> = capture.output.lines().collect();
        for line in &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..] {
            println!("    | {}", line.trim_end_matches('\r'));
        }
    }
    result
}

fn not_run(scenario: &Scenario, hypervisor: Hypervisor, why: &str) -> ScenarioRun {
    not_run_named(&scenario.name, &hypervisor.to_string(), why)
}

/// A run that could not happen: one failed check saying why.
fn not_run_named(name: &str, hypervisor: &str, why: &str) -> ScenarioRun {
    let check = Check {
        name: format!("run: {why}"),
        passed: false,
    };
    ScenarioRun::new(
        name,
        hypervisor,
        vec![check],
        0.0,
        format!("not run: {why}"),
        None,
    )
}
