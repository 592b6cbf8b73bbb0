//! `cargo xtask bench`: what a hypercall saves over trap-and-emulate, side by side with
//! Xen 4.17, in one run (docs/benchmarks.md).
//!
//! The benchmark guest is our guest kernel with `bench` on its command line
//! (`xtask/bench/bench.toml`); it prints one `bench: ...` line per case. The same binary
//! runs on our hypervisor and on Debian's Xen 4.17 (as dom0), each under two QEMU modes
//! with otherwise identical flags: `-icount shift=0` (the TSC counts guest instructions:
//! exact and repeatable) and plain TCG (host TSC ticks). The two `-icount` runs go in
//! parallel (they are deterministic whatever the load); the TCG runs go one at a time.
//! Then the table, `target/bench/report.{md,json}` and `target/bench/chart.svg`.
//!
//! [`guard`] is the regression test `cargo xtask test` runs: our hypervisor, `-icount`,
//! the PV cases against `xtask/bench-budgets.toml`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use crate::bench_budget::Budgets;
use crate::bench_footprint::Footprint;
use crate::bench_parse::RunLines;
use crate::bench_profile::{self, Profiled, Stamping};
use crate::bench_report::{Environment, Report};
use crate::bench_tlb;
use crate::build::{GUEST_KERNEL_BIN, HYPERVISOR_BIN, WorkspaceBinaries};
use crate::manifest::{Hypervisor, Scenario};
use crate::outcome::{RunOutcome, XenConsole};
use crate::pack::{self, DomainImage};
use crate::prereq::{self, Apt, Needs};
use crate::qemu::{self, QEMU, Sinks, UntilExit};
use crate::run::KernelRef;
use crate::workspace::{Profile, Workspace, find_in_path};
use crate::xen;

/// The benchmark's manifest, relative to the repository root.
pub const MANIFEST: &str = "xtask/bench/bench.toml";

/// The CPU model both hypervisors get: QEMU's `max` (everything TCG emulates) without
/// SMAP, which Xen runs need (a QEMU 7.2 TCG bug; docs/xtask.md). Same for both, so the
/// comparison is fair.
pub const CPU: &str = "max,-smap";

/// Options of `cargo xtask bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Fewer iterations: a fast look (under -icount the counts are the same).
    #[arg(long)]
    quick: bool,
    /// Only this hypervisor (default: both).
    #[arg(long, value_enum)]
    hypervisor: Option<Hypervisor>,
    /// Only this QEMU mode (default: both).
    #[arg(long, value_enum)]
    mode: Option<Mode>,
    /// Timed (TCG) runs per hypervisor, alternating ours and Xen so that a change in the
    /// host's load weighs on both sides alike (default: 5, or 1 with `--quick`).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=9))]
    tcg_rounds: Option<u32>,
    /// Instead of the report: one TCG run per hypervisor under `perf record`, and where
    /// QEMU spent the host's time in each case (`target/bench/profile.md`; needs `perf`,
    /// Debian's `linux-perf`); then, as root, one more in which uprobes count how often
    /// QEMU empties its jump cache and refills its TLB, per operation. Their ticks are
    /// slowed by the sampling and the probes: not results.
    #[arg(long, conflicts_with_all = ["mode", "tcg_rounds"])]
    profile: bool,
}

/// How QEMU keeps time in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Mode {
    /// `-icount shift=0`: one TSC tick per guest instruction.
    Icount,
    /// Plain TCG: the TSC is the host's.
    Tcg,
}

impl Mode {
    /// The name in file names and the report.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Icount => "icount",
            Mode::Tcg => "tcg",
        }
    }

    /// What a tick is in this mode.
    pub fn unit(self) -> &'static str {
        match self {
            Mode::Icount => "instructions",
            Mode::Tcg => "host TSC ticks",
        }
    }
}

/// One finished run.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// Where it ran.
    pub hypervisor: Hypervisor,
    /// How QEMU kept time.
    pub mode: Mode,
    /// What the benchmark printed.
    pub lines: RunLines,
    /// How the run ended, in words.
    pub outcome: String,
    /// Whether it ended as it should (clean, with the closing line).
    pub complete: bool,
    /// Wall-clock time.
    pub seconds: f64,
    /// The serial log.
    pub log: PathBuf,
    /// The QEMU command line.
    pub command: String,
    /// Runs merged into this result (see [`RunResult::merge`]).
    pub rounds: u32,
    /// For a merged result: each case's median in every round, in round order (empty for
    /// a single run), so that ratios can pair rounds that ran next to each other.
    pub round_medians: BTreeMap<String, Vec<f64>>,
}

impl RunResult {
    /// Several rounds of the same hypervisor and mode as one result: per case the median
    /// of the rounds' medians, the lowest minimum, the highest maximum and every operation
    /// counted; complete only if every round was. `None` for no rounds.
    fn merge(rounds: Vec<RunResult>) -> Option<RunResult> {
        let mut rounds = rounds.into_iter();
        let mut merged = rounds.next()?;
        let rest: Vec<RunResult> = rounds.collect();
        if rest.is_empty() {
            return Some(merged);
        }
        for (name, first) in merged.lines.results.iter_mut() {
            let mut medians = vec![first.median];
            for other in rest.iter().filter_map(|run| run.lines.results.get(name)) {
                medians.push(other.median);
                first.ops += other.ops;
                first.min = first.min.min(other.min);
                first.max = first.max.max(other.max);
            }
            merged.round_medians.insert(name.clone(), medians.clone());
            first.median = median_of(&mut medians);
        }
        for run in &rest {
            merged.complete &= run.complete;
            merged.lines.ended &= run.lines.ended;
            merged.seconds += run.seconds;
            if merged.outcome == RunOutcome::Clean.describe() {
                merged.outcome.clone_from(&run.outcome);
            }
            for (name, why) in &run.lines.errors {
                merged
                    .lines
                    .errors
                    .entry(name.clone())
                    .or_insert_with(|| why.clone());
            }
        }
        merged.rounds = 1 + rest.len() as u32;
        Some(merged)
    }
}

/// The median of `values` (the mean of the middle two for an even count).
pub fn median_of(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// Everything the runs share: paths and command lines.
struct Setup<'a> {
    workspace: &'a Workspace,
    scenario: Scenario,
    hypervisor_bin: PathBuf,
    guest_bin: PathBuf,
    image: PathBuf,
    xen_image: Option<PathBuf>,
    /// The benchmark domain's command line (`bench` or `bench=quick`).
    guest_cmdline: String,
}

impl<'a> Setup<'a> {
    /// Builds what the runs need and packs our hypervisor's boot image.
    fn prepare(
        workspace: &'a Workspace,
        quick: bool,
        with_xen: bool,
        apt: &mut Apt,
    ) -> Result<Setup<'a>> {
        let mut scenario = Scenario::load(&workspace.root.join(MANIFEST))?;
        let xen_image = if with_xen {
            Some(xen::ensure_image(workspace, apt)?)
        } else {
            None
        };
        let binaries = WorkspaceBinaries::load(workspace)?;
        binaries.build(
            workspace,
            Profile::Release,
            &[HYPERVISOR_BIN, GUEST_KERNEL_BIN],
        )?;
        let first = scenario
            .manifest
            .domains
            .first_mut()
            .context("the benchmark manifest has no domain")?;
        if quick {
            first.cmdline = first
                .cmdline
                .split_ascii_whitespace()
                .map(|word| if word == "bench" { "bench=quick" } else { word })
                .collect::<Vec<_>>()
                .join(" ");
        }
        let guest_cmdline = first.cmdline.clone();
        let guest_bin = KernelRef::resolve(&binaries, &first.kernel).path(workspace);
        let dir = out_dir(workspace);
        std::fs::create_dir_all(dir.join("logs"))
            .with_context(|| format!("creating {}", dir.display()))?;
        let mut domains = Vec::new();
        for config in &scenario.manifest.domains {
            let path = KernelRef::resolve(&binaries, &config.kernel).path(workspace);
            domains.push(DomainImage::load(config, &path)?);
        }
        let image = dir.join("bench.img");
        std::fs::write(&image, pack::write(&domains)?)
            .with_context(|| format!("writing {}", image.display()))?;
        Ok(Setup {
            workspace,
            hypervisor_bin: workspace.kernel_dir(Profile::Release).join(HYPERVISOR_BIN),
            guest_bin,
            image,
            xen_image,
            guest_cmdline,
            scenario,
        })
    }

    /// QEMU's arguments for every run: identical for both hypervisors.
    fn base_command(&self, mode: Mode) -> Command {
        let memory = self
            .scenario
            .manifest
            .hypervisor
            .memory_mib
            .max(xen::XEN_MIN_MEMORY_MIB);
        let mut command = Command::new(QEMU);
        command
            .args(["-accel", "tcg", "-cpu", CPU])
            .args(["-m", &memory.to_string(), "-smp", "1"])
            .args(["-display", "none", "-monitor", "none", "-serial", "stdio"])
            .args([
                "-no-reboot",
                "-device",
                "isa-debug-exit,iobase=0xf4,iosize=0x04",
            ]);
        if mode == Mode::Icount {
            qemu::count_instructions(&mut command);
        }
        command
    }

    fn command(&self, hypervisor: Hypervisor, mode: Mode) -> Result<Command> {
        let mut command = self.base_command(mode);
        match hypervisor {
            Hypervisor::Ours => {
                command
                    .arg("-kernel")
                    .arg(&self.hypervisor_bin)
                    .arg("-append")
                    .arg(&self.scenario.manifest.hypervisor.cmdline)
                    .arg("-initrd")
                    .arg(&self.image);
            }
            Hypervisor::Xen => {
                let xen_image = self.xen_image.as_ref().context("no Xen image")?;
                let dom0 = &self.scenario.manifest.domains[0];
                let kernel = self
                    .guest_bin
                    .to_str()
                    .context("kernel path is not UTF-8")?;
                ensure!(
                    !kernel.contains([' ', ',']),
                    "kernel path `{kernel}` contains a space or comma"
                );
                // The second module (dom0's initial module) is the same kernel: the
                // benchmark builds its ping-pong partner from it (bench_events.rs).
                let module = format!(
                    "{kernel} {},{kernel}",
                    self.guest_cmdline.replace(',', ",,")
                );
                command
                    .arg("-kernel")
                    .arg(xen_image)
                    .arg("-append")
                    .arg(format!(
                        "{} dom0_mem={m}M,max:{m}M",
                        xen::XEN_CMDLINE,
                        m = dom0.memory_mib
                    ))
                    .arg("-initrd")
                    .arg(module);
            }
        }
        Ok(command)
    }

    /// Boots one run to its end and reads its lines.
    fn run(&self, hypervisor: Hypervisor, mode: Mode) -> Result<RunResult> {
        self.run_round(hypervisor, mode, None)
    }

    /// [`Setup::run`], for round `round` of several (its own log).
    fn run_round(
        &self,
        hypervisor: Hypervisor,
        mode: Mode,
        round: Option<u32>,
    ) -> Result<RunResult> {
        let command = self.command(hypervisor, mode)?;
        let described = qemu::describe(&command, self.workspace);
        let suffix = round.map_or(String::new(), |round| format!("-{round}"));
        let log = out_dir(self.workspace)
            .join("logs")
            .join(format!("{hypervisor}-{}{suffix}.log", mode.name()));
        let sinks = log_only(&log);
        let timeout = run_timeout(hypervisor);
        let (capture, outcome) = match hypervisor {
            Hypervisor::Ours => {
                let capture = qemu::run(command, timeout, &sinks, &mut UntilExit)?;
                let outcome = RunOutcome::from_our_hypervisor(&capture.end);
                (capture, outcome)
            }
            Hypervisor::Xen => {
                let mut console = XenConsole::default();
                let capture = qemu::run(command, timeout, &sinks, &mut console)?;
                let outcome = console.outcome(&capture.end);
                (capture, outcome)
            }
        };
        let lines = RunLines::parse(&capture.output);
        let complete = outcome == RunOutcome::Clean && lines.ended;
        Ok(RunResult {
            hypervisor,
            mode,
            lines,
            outcome: outcome.describe(),
            complete,
            seconds: crate::report::seconds(capture.elapsed),
            log,
            command: described,
            rounds: 1,
            round_medians: BTreeMap::new(),
        })
    }
}

impl Setup<'_> {
    /// One TCG run inside `perf record` (data in `target/bench/profile-<hv>.data`), and
    /// each case's window of it (see bench_profile.rs).
    fn profile(&self, hypervisor: Hypervisor) -> Result<Profiled> {
        let data = out_dir(self.workspace).join(format!("profile-{hypervisor}.data"));
        let command = bench_profile::wrap(&self.command(hypervisor, Mode::Tcg)?, &data);
        let (_, windows) =
            self.stamped_run(hypervisor, command, "profile", bench_profile::wall_clock)?;
        let cases = windows
            .into_iter()
            .map(|window| bench_profile::report_window(&data, window))
            .collect::<Result<Vec<_>>>()?;
        Ok(Profiled { hypervisor, cases })
    }

    /// One TCG run with QEMU's jump-cache flushes and TLB fills counted by uprobes (the
    /// probes in place; the events go through `target/bench/tlb-<hv>.data`, deleted once
    /// counted), per operation of each case (see bench_tlb.rs).
    fn count_tlb(&self, hypervisor: Hypervisor) -> Result<Vec<(String, bench_tlb::PerOp)>> {
        let data = out_dir(self.workspace).join(format!("tlb-{hypervisor}.data"));
        let command = bench_tlb::wrap(&self.command(hypervisor, Mode::Tcg)?, &data);
        let (lines, windows) =
            self.stamped_run(hypervisor, command, "tlb", bench_tlb::monotonic_clock)?;
        let counts = bench_tlb::count(&bench_tlb::script(&data)?, &windows);
        // Hundreds of megabytes of events, all counted now.
        let _ = std::fs::remove_file(&data);
        Ok(windows
            .into_iter()
            .zip(counts)
            .filter_map(|(window, counts)| {
                let ops = lines.results.get(&window.case)?.ops;
                Some((window.case, counts.per_op(ops)?))
            })
            .collect())
    }

    /// Runs `command` (a TCG run of `hypervisor` wrapped by `perf record`) to its end,
    /// its console into `logs/<hypervisor>-<name>.log`, each case's window stamped with
    /// `clock` (the clock `perf` stamps that run's records with).
    fn stamped_run(
        &self,
        hypervisor: Hypervisor,
        command: Command,
        name: &str,
        clock: fn() -> f64,
    ) -> Result<(RunLines, Vec<bench_profile::Window>)> {
        let log = out_dir(self.workspace)
            .join("logs")
            .join(format!("{hypervisor}-{name}.log"));
        let sinks = log_only(&log);
        let timeout = run_timeout(hypervisor);
        let (capture, windows) = match hypervisor {
            Hypervisor::Ours => {
                let mut inner = UntilExit;
                let mut stamping = Stamping::with_clock(&mut inner, clock);
                let capture = qemu::run(command, timeout, &sinks, &mut stamping)?;
                (capture, stamping.windows)
            }
            Hypervisor::Xen => {
                let mut inner = XenConsole::default();
                let mut stamping = Stamping::with_clock(&mut inner, clock);
                let capture = qemu::run(command, timeout, &sinks, &mut stamping)?;
                (capture, stamping.windows)
            }
        };
        let lines = RunLines::parse(&capture.output);
        ensure!(
            lines.ended && !windows.is_empty(),
            "the {name} run on {hypervisor} did not finish (log {})",
            self.workspace.display(&log)
        );
        Ok((lines, windows))
    }
}

/// `cargo xtask bench --profile`: writes `target/bench/profile.md`.
fn profile(workspace: &Workspace, setup: &Setup<'_>, hypervisors: &[Hypervisor]) -> Result<()> {
    let mut runs = Vec::new();
    for &hypervisor in hypervisors {
        println!("xtask: bench: {hypervisor} / tcg under perf record");
        runs.push(setup.profile(hypervisor)?);
    }
    let qemu_version = qemu::version();
    let header = format!(
        "Commit `{}`, {qemu_version}, `-cpu {CPU}`, `perf record -k realtime -F {}` around \
         each run (written by `cargo xtask bench --profile`; the runs' own ticks are slowed \
         by the sampling and are not results).",
        commit_id(&workspace.root),
        bench_profile::SAMPLE_HZ
    );
    let mut text = bench_profile::markdown(&runs, &header);
    text.push_str(&tlb_section(
        setup,
        hypervisors,
        &bench_profile::case_names(&runs),
    )?);
    let path = out_dir(workspace).join("profile.md");
    std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
    // The summary tables on the terminal too.
    let mut in_table = false;
    for line in text.lines() {
        in_table = line.starts_with("| case") || in_table && line.starts_with('|');
        if in_table {
            println!("{line}");
        }
    }
    println!("xtask: bench: profile in {}", workspace.display(&path));
    Ok(())
}

/// `profile.md`'s section of jump-cache flushes and TLB fills per operation, from one more
/// TCG run per hypervisor with uprobes on QEMU (bench_tlb.rs), or why there is none
/// (`perf probe` needs root).
fn tlb_section(setup: &Setup<'_>, hypervisors: &[Hypervisor], cases: &[&str]) -> Result<String> {
    let mut text = String::from("\n## Jump-cache flushes and TLB fills per operation\n\n");
    let qemu_binary = find_in_path(QEMU).context("qemu-system-x86_64 is not on PATH")?;
    let probes = match bench_tlb::Probes::add(&qemu_binary) {
        Ok(probes) => probes,
        Err(why) => {
            println!("xtask: bench: TLB events not counted: {why:#}");
            let _ = writeln!(text, "Not counted in this run: {why:#}");
            return Ok(text);
        }
    };
    let mut counted = Vec::new();
    for &hypervisor in hypervisors {
        println!("xtask: bench: {hypervisor} / tcg with QEMU's TLB events counted");
        counted.push((hypervisor.to_string(), setup.count_tlb(hypervisor)?));
    }
    drop(probes);
    let _ = writeln!(
        text,
        "Counted by uprobes on QEMU's `tcg_flush_jmp_cache` (once per full TLB flush, \
         such as every CR3 write, and per other emptying of the jump cache) and \
         `x86_cpu_tlb_fill` (once per fill, by what it was for: the guest's accesses in \
         ring 3, the hypervisor's in ring 0, and the page walker's own \"walk\" fills for \
         the page-table pages it reads after a flush), in one more TCG run per \
         hypervisor, per operation timed (the window's warm-up and set-up included). See \
         xtask/src/bench_tlb.rs and docs/benchmarks.md, \"Profiling the ticks\".\n"
    );
    text.push_str(&bench_tlb::markdown(cases, &counted));
    Ok(text)
}

/// A benchmark run's console: into its log only.
fn log_only(log: &Path) -> Sinks<'_> {
    Sinks {
        echo: false,
        log: Some(log),
        input: &[],
    }
}

/// How long one benchmark run may take (Xen boots for longer).
fn run_timeout(hypervisor: Hypervisor) -> Duration {
    Duration::from_secs(match hypervisor {
        Hypervisor::Ours => 300,
        Hypervisor::Xen => 600,
    })
}

/// `target/bench`.
pub fn out_dir(workspace: &Workspace) -> PathBuf {
    workspace.target_dir.join("bench")
}

fn announce(result: &Result<RunResult>, hypervisor: Hypervisor, mode: Mode, workspace: &Workspace) {
    match result {
        Ok(run) => println!(
            "xtask: bench: {hypervisor} / {}: {} cases in {:.1}s, {}{} (log {})",
            mode.name(),
            run.lines.results.len(),
            run.seconds,
            run.outcome,
            if run.lines.ended {
                ""
            } else {
                "; no closing line"
            },
            workspace.display(&run.log)
        ),
        Err(error) => println!(
            "xtask: bench: {hypervisor} / {}: FAILED: {error:#}",
            mode.name()
        ),
    }
}

/// Runs the benchmark and writes the report.
pub fn main(workspace: &Workspace, args: &Args) -> Result<ExitCode> {
    let started = Instant::now();
    let hypervisors = match args.hypervisor {
        Some(one) => vec![one],
        None => vec![Hypervisor::Ours, Hypervisor::Xen],
    };
    let modes = match args.mode {
        Some(one) => vec![one],
        None => vec![Mode::Icount, Mode::Tcg],
    };
    let mut apt = Apt::default();
    prereq::ensure(
        Needs {
            qemu: true,
            xen_headers: false,
            perf: args.profile,
        },
        &mut apt,
    )?;
    let setup = Setup::prepare(
        workspace,
        args.quick,
        hypervisors.contains(&Hypervisor::Xen),
        &mut apt,
    )?;
    if args.profile {
        profile(workspace, &setup, &hypervisors)?;
        return Ok(ExitCode::SUCCESS);
    }

    let mut runs = Vec::new();
    let mut failures = 0;
    // Deterministic runs side by side; timed runs alone.
    if modes.contains(&Mode::Icount) {
        println!(
            "xtask: bench: -icount runs ({}) in parallel",
            hypervisors.len()
        );
        let setup = &setup;
        let results: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = hypervisors
                .iter()
                .map(|&hv| scope.spawn(move || (hv, setup.run(hv, Mode::Icount))))
                .collect();
            handles
                .into_iter()
                .map(|handle| handle.join().expect("a run thread panicked"))
                .collect()
        });
        for (hv, result) in results {
            announce(&result, hv, Mode::Icount, workspace);
            match result {
                Ok(run) => runs.push(run),
                Err(_) => failures += 1,
            }
        }
    }
    if modes.contains(&Mode::Tcg) {
        let rounds = args.tcg_rounds.unwrap_or(if args.quick { 1 } else { 5 });
        let mut timed: Vec<Vec<RunResult>> = hypervisors.iter().map(|_| Vec::new()).collect();
        for round in 1..=rounds {
            for (&hv, done) in hypervisors.iter().zip(&mut timed) {
                println!("xtask: bench: {hv} / tcg, round {round} of {rounds} (alone, for timing)");
                let result = setup.run_round(hv, Mode::Tcg, (rounds > 1).then_some(round));
                announce(&result, hv, Mode::Tcg, workspace);
                match result {
                    Ok(run) => done.push(run),
                    Err(_) => failures += 1,
                }
            }
        }
        runs.extend(timed.into_iter().filter_map(RunResult::merge));
    }
    failures += runs.iter().filter(|run| !run.complete).count();

    let environment = Environment::collect(workspace, &runs, args.quick);
    let footprint = Footprint::measure(&setup.hypervisor_bin, &setup.scenario, &runs)?;
    let report = Report::build(environment, &runs, footprint);
    let dir = out_dir(workspace);
    println!("{}", report.table());
    report.write(&dir)?;
    println!(
        "xtask: bench: report in {}/report.md, report.json, chart.svg ({:.0}s in all)",
        workspace.display(&dir),
        started.elapsed().as_secs_f64()
    );
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        println!("xtask: bench: {failures} run(s) did not finish cleanly");
        ExitCode::FAILURE
    })
}

/// The regression guard (`cargo xtask test`): our hypervisor, `-icount`, quick, the PV
/// cases' instruction counts against `xtask/bench-budgets.toml`.
pub fn guard(workspace: &Workspace) -> Result<()> {
    let budgets = Budgets::load(&workspace.root)?;
    let mut apt = Apt::default();
    let setup = Setup::prepare(workspace, true, false, &mut apt)?;
    let run = setup.run(Hypervisor::Ours, Mode::Icount)?;
    if !run.complete {
        bail!(
            "the benchmark run did not finish cleanly: {} (log {})",
            run.outcome,
            workspace.display(&run.log)
        );
    }
    let (lines, ok) = budgets.check(&run.lines);
    for line in &lines {
        println!("xtask:   {line}");
    }
    if !ok {
        bail!(
            "instruction budgets exceeded (see {}; a budget changes only with a reason in the commit)",
            crate::bench_budget::BUDGETS_FILE
        );
    }
    Ok(())
}

/// The short commit id of the tree measured, with `-dirty` for local changes.
pub fn commit_id(root: &Path) -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(root)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let id = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    if dirty { format!("{id}-dirty") } else { id }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_benchmark_manifest_is_valid() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let scenario = Scenario::load(&root.join(MANIFEST)).unwrap();
        let domains = &scenario.manifest.domains;
        assert!(
            domains[0]
                .cmdline
                .split_ascii_whitespace()
                .any(|w| w == "bench")
        );
        assert!(domains[0].privileged, "port I/O needs a privileged domain");
        assert!(domains.iter().any(|d| d.cmdline.contains("bench=pong")));
        assert!(scenario.manifest.test.is_none(), "not a test scenario");
    }

    fn timed(median: f64, min: f64, max: f64, ended: bool) -> RunResult {
        let mut lines = RunLines::default();
        lines.results.insert(
            "null_hypercall".into(),
            crate::bench_parse::Measured {
                ops: 100,
                median,
                min,
                max,
            },
        );
        lines.ended = ended;
        RunResult {
            hypervisor: Hypervisor::Xen,
            mode: Mode::Tcg,
            lines,
            outcome: RunOutcome::Clean.describe(),
            complete: ended,
            seconds: 2.0,
            log: PathBuf::from("log"),
            command: "qemu".into(),
            rounds: 1,
            round_medians: BTreeMap::new(),
        }
    }

    #[test]
    fn rounds_merge_into_the_median_of_medians() {
        let merged = RunResult::merge(vec![
            timed(900.0, 700.0, 5000.0, true),
            timed(600.0, 550.0, 800.0, true),
            timed(1200.0, 1000.0, 9000.0, true),
        ])
        .unwrap();
        let case = merged.lines.results["null_hypercall"];
        assert_eq!(
            (case.median, case.min, case.max, case.ops),
            (900.0, 550.0, 9000.0, 300)
        );
        assert_eq!(
            merged.round_medians["null_hypercall"],
            [900.0, 600.0, 1200.0]
        );
        assert_eq!((merged.rounds, merged.seconds), (3, 6.0));
        assert!(merged.complete);
        // An incomplete round makes the whole incomplete; one round is itself.
        let merged = RunResult::merge(vec![
            timed(1.0, 1.0, 1.0, true),
            timed(3.0, 3.0, 3.0, false),
        ])
        .unwrap();
        assert_eq!(merged.lines.results["null_hypercall"].median, 2.0);
        assert!(!merged.complete && !merged.lines.ended);
        assert_eq!(
            RunResult::merge(vec![timed(5.0, 4.0, 6.0, true)])
                .unwrap()
                .rounds,
            1
        );
        assert!(RunResult::merge(Vec::new()).is_none());
    }
}
