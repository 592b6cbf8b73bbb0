//! The benchmark report: the runs' results side by side, the ratios (ours/Xen and
//! trap/PV), every target of the issue with its verdict, the footprint, and the
//! environment; printed as a table and written as `report.md`, `report.json` and
//! `chart.svg`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::bench::{CPU, Mode, RunResult};
use crate::bench_cases::{CASES, Case, Kind, NULL_CALL, ONE_CR3_WRITE, find, targets};
use crate::bench_footprint::Footprint;
use crate::manifest::Hypervisor;
use crate::workspace::Workspace;

/// Where and how the numbers were taken.
#[derive(Debug, Clone, Serialize)]
pub struct Environment {
    /// `qemu-system-x86_64 --version`, first line.
    pub qemu_version: String,
    /// The guest CPU model and flags (both hypervisors).
    pub cpu: String,
    /// The host CPU (TCG's speed depends on it).
    pub host_cpu: String,
    /// Host CPUs available to QEMU and everything else running.
    pub host_cpus: usize,
    /// The Debian package Xen came from.
    pub xen_package: Option<String>,
    /// The versions the guest read with xen_version, by hypervisor.
    pub versions: Vec<(String, String)>,
    /// The commit measured.
    pub commit: String,
    /// Whether `--quick` was given.
    pub quick: bool,
}

impl Environment {
    /// Asks QEMU, the host and git.
    pub fn collect(workspace: &Workspace, runs: &[RunResult], quick: bool) -> Environment {
        let mut versions: Vec<(String, String)> = runs
            .iter()
            .filter_map(|run| {
                let version = run.lines.info.get("version")?;
                Some((hv_name(run.hypervisor).to_owned(), version.clone()))
            })
            .collect();
        versions.sort();
        versions.dedup();
        let qemu_version = crate::qemu::version();
        let host_cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix("model name"))
                    .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        let xen_package = std::fs::read_dir(workspace.xen_dir()).ok().and_then(|dir| {
            dir.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .find(|n| n.ends_with(".deb"))
        });
        Environment {
            qemu_version,
            cpu: format!("-cpu {CPU} (QEMU TCG)"),
            host_cpu,
            host_cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            xen_package,
            versions,
            commit: crate::bench::commit_id(&workspace.root),
            quick,
        }
    }
}

/// One measured case of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// Case name.
    pub name: String,
    /// `icount` or `tcg`.
    pub mode: String,
    /// `ours` or `xen`.
    pub hypervisor: String,
    /// Median per operation.
    pub median: f64,
    /// Cheapest batch, per operation.
    pub min: f64,
    /// Dearest batch, per operation.
    pub max: f64,
    /// Operations timed.
    pub iterations: u64,
    /// `instructions` or `host TSC ticks`.
    pub unit: String,
    /// PV, trap, round trip or floor.
    pub kind: Kind,
    /// Chart group.
    pub group: String,
    /// For timed runs of several rounds: the median of each round, in round order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub round_medians: Vec<f64>,
}

/// A case a run could not measure.
#[derive(Debug, Clone, Serialize)]
pub struct Missing {
    /// Case name.
    pub name: String,
    /// Mode of the run.
    pub mode: String,
    /// Hypervisor of the run.
    pub hypervisor: String,
    /// `not possible` (the hypervisor cannot do it), `error`, or `no result`.
    pub status: String,
    /// Why.
    pub why: String,
}

/// One case in one mode, both hypervisors.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// Case name.
    pub name: String,
    /// Mode.
    pub mode: String,
    /// Our median.
    pub ours: Option<f64>,
    /// Xen's median.
    pub xen: Option<f64>,
    /// ours / Xen.
    pub ours_over_xen: Option<f64>,
    /// For a trap twin: trap / its PV operation, on ours.
    pub trap_over_pv_ours: Option<f64>,
    /// ... and on Xen.
    pub trap_over_pv_xen: Option<f64>,
}

/// One target of the issue and how it went.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// The target, in words.
    pub target: String,
    /// What was measured, in words.
    pub measured: String,
    /// Met, missed, or (`None`) not measurable here.
    pub met: Option<bool>,
    /// By how much it was met or missed.
    pub margin: String,
    /// For a missed target: why, from the run's own numbers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// A run's summary line in the report.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    /// Hypervisor.
    pub hypervisor: String,
    /// Mode.
    pub mode: String,
    /// How it ended.
    pub outcome: String,
    /// Whether it finished with its closing line.
    pub complete: bool,
    /// Wall-clock seconds (all rounds).
    pub seconds: f64,
    /// Runs merged into the results (timed runs alternate between the hypervisors; per
    /// case the median of the rounds' medians, the lowest minimum, the highest maximum).
    pub rounds: u32,
    /// The QEMU command line.
    pub command: String,
    /// The serial log (the first round's).
    pub log: String,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Where and how.
    pub environment: Environment,
    /// The runs.
    pub runs: Vec<RunSummary>,
    /// Every measured case of every run (the list: name, mode, hypervisor,
    /// median, min, max, iterations).
    pub results: Vec<Entry>,
    /// Cases a run could not measure, with the reason.
    pub missing: Vec<Missing>,
    /// Side by side, with ratios.
    pub comparisons: Vec<Comparison>,
    /// The targets.
    pub targets: Vec<Verdict>,
    /// Image, memory per domain, boot instructions.
    pub footprint: Footprint,
}

fn hv_name(hypervisor: Hypervisor) -> &'static str {
    match hypervisor {
        Hypervisor::Ours => "ours",
        Hypervisor::Xen => "xen",
    }
}

/// A number for tables: integers under -icount, one decimal otherwise when small.
pub fn show(value: f64) -> String {
    if value >= 100.0 || value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

/// The unit of `mode`'s figures, in a sentence.
fn unit_word(mode: &str) -> &'static str {
    if mode == "icount" {
        "instructions"
    } else {
        "ticks"
    }
}

/// "once", "twice", "3 times".
fn times(n: u32) -> String {
    match n {
        1 => "once".into(),
        2 => "twice".into(),
        n => format!("{n} times"),
    }
}

fn ratio(value: Option<f64>) -> String {
    value.map_or_else(|| "-".into(), |r| format!("{r:.2}x"))
}

impl Report {
    /// Puts the runs side by side and judges the targets.
    pub fn build(environment: Environment, runs: &[RunResult], footprint: Footprint) -> Report {
        let mut results = Vec::new();
        let mut missing = Vec::new();
        for run in runs {
            for case in CASES {
                let (hv, mode) = (hv_name(run.hypervisor), run.mode.name());
                if case.kind == Kind::Floor && run.hypervisor == Hypervisor::Xen {
                    missing.push(Missing {
                        name: case.name.into(),
                        mode: mode.into(),
                        hypervisor: hv.into(),
                        status: "not possible".into(),
                        why: "measured by our hypervisor itself from ring 3 at boot; Xen's \
                              entry paths always run its own code"
                            .into(),
                    });
                    continue;
                }
                if let Some(m) = run.lines.results.get(case.name) {
                    results.push(Entry {
                        name: case.name.into(),
                        mode: mode.into(),
                        hypervisor: hv.into(),
                        median: m.median,
                        min: m.min,
                        max: m.max,
                        iterations: m.ops,
                        unit: run.mode.unit().into(),
                        kind: case.kind,
                        group: case.group.into(),
                        round_medians: run
                            .round_medians
                            .get(case.name)
                            .cloned()
                            .unwrap_or_default(),
                    });
                    continue;
                }
                let (status, why) = if let Some(why) = run.lines.unavailable.get(case.name) {
                    ("not possible", why.clone())
                } else if let Some(why) = run.lines.errors.get(case.name) {
                    ("error", why.clone())
                } else {
                    (
                        "no result",
                        format!("the run printed no line ({})", run.outcome),
                    )
                };
                missing.push(Missing {
                    name: case.name.into(),
                    mode: mode.into(),
                    hypervisor: hv.into(),
                    status: status.into(),
                    why,
                });
            }
        }
        let mut report = Report {
            environment,
            runs: runs
                .iter()
                .map(|run| RunSummary {
                    hypervisor: hv_name(run.hypervisor).into(),
                    mode: run.mode.name().into(),
                    outcome: run.outcome.clone(),
                    complete: run.complete,
                    seconds: run.seconds,
                    rounds: run.rounds,
                    command: run.command.clone(),
                    log: run.log.display().to_string(),
                })
                .collect(),
            results,
            missing,
            comparisons: Vec::new(),
            targets: Vec::new(),
            footprint,
        };
        report.compare();
        report.judge();
        report
    }

    /// The median of `case` in `mode` on `hypervisor`.
    pub fn median(&self, case: &str, mode: &str, hypervisor: &str) -> Option<f64> {
        self.results
            .iter()
            .find(|e| e.name == case && e.mode == mode && e.hypervisor == hypervisor)
            .map(|e| e.median)
    }

    /// Modes that have results, in order.
    pub fn modes(&self) -> Vec<&'static str> {
        [Mode::Icount, Mode::Tcg]
            .into_iter()
            .map(Mode::name)
            .filter(|m| self.results.iter().any(|e| e.mode == *m))
            .collect()
    }

    /// Each round's medians of `case` in `mode` on `hypervisor` (empty for one run).
    fn round_medians(&self, case: &str, mode: &str, hypervisor: &str) -> &[f64] {
        self.results
            .iter()
            .find(|e| e.name == case && e.mode == mode && e.hypervisor == hypervisor)
            .map_or(&[], |e| &e.round_medians)
    }

    fn compare(&mut self) {
        let div = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
        for mode in self.modes() {
            for case in CASES {
                let ours = self.median(case.name, mode, "ours");
                let xen = self.median(case.name, mode, "xen");
                let pv = |hv| case.twin_of.and_then(|of| self.median(of, mode, hv));
                let paired = paired_ratio(
                    self.round_medians(case.name, mode, "ours"),
                    self.round_medians(case.name, mode, "xen"),
                );
                let comparison = Comparison {
                    name: case.name.into(),
                    mode: mode.into(),
                    ours,
                    xen,
                    ours_over_xen: paired.or(div(ours, xen)),
                    trap_over_pv_ours: div(ours, pv("ours")),
                    trap_over_pv_xen: div(xen, pv("xen")),
                };
                self.comparisons.push(comparison);
            }
        }
    }

    fn comparison(&self, case: &str, mode: &str) -> Option<&Comparison> {
        self.comparisons
            .iter()
            .find(|c| c.name == case && c.mode == mode)
    }

    fn why_missing(&self, case: &str, mode: &str, hypervisor: &str) -> String {
        self.missing
            .iter()
            .find(|m| m.name == case && m.mode == mode && m.hypervisor == hypervisor)
            .map_or_else(
                || format!("no {hypervisor} {mode} run"),
                |m| format!("{hypervisor}: {} ({})", m.status, m.why),
            )
    }

    fn judge(&mut self) {
        let mut verdicts = Vec::new();
        // Absolute instruction targets.
        for case in CASES {
            let Some(limit) = case.target_instructions else {
                continue;
            };
            let target = format!("{} <= {limit} instructions (ours)", case.name);
            verdicts.push(match self.median(case.name, "icount", "ours") {
                Some(v) => Verdict {
                    target,
                    measured: format!("{} instructions", show(v)),
                    met: Some(v <= limit as f64),
                    margin: margin(v, limit as f64),
                    why: None,
                },
                None => Verdict {
                    target,
                    measured: self.why_missing(case.name, "icount", "ours"),
                    met: None,
                    margin: "-".into(),
                    why: None,
                },
            });
        }
        // Every PV case (and PV round trip) against Xen, in both modes.
        for mode in self.modes() {
            let limit = if mode == "icount" {
                targets::PV_INSTRUCTIONS_VS_XEN
            } else {
                targets::PV_TICKS_VS_XEN
            };
            for case in CASES
                .iter()
                .filter(|c| matches!(c.kind, Kind::Pv | Kind::RoundTrip))
            {
                let target = format!("{} ours/Xen <= {limit}x ({mode})", case.name);
                if !case.enters_hypervisor {
                    let measured = self
                        .comparison(case.name, mode)
                        .and_then(|c| c.ours_over_xen)
                        .map_or_else(|| "-".into(), |r| format!("{r:.2}x"));
                    verdicts.push(Verdict {
                        target,
                        measured,
                        met: None,
                        margin: "not applicable: the operation never enters the hypervisor \
                                 (the same guest stores on both)"
                            .into(),
                        why: None,
                    });
                    continue;
                }
                verdicts.push(self.ratio_verdict(case, mode, target, limit));
            }
        }
        // Every trap twin: >= 20x its PV operation on ours, and no slower than Xen's.
        for mode in self.modes() {
            for case in CASES.iter().filter(|c| c.kind == Kind::Trap) {
                let of = case.twin_of.unwrap_or("?");
                let target = format!(
                    "{} >= {}x {of} on ours ({mode})",
                    case.name,
                    targets::TRAP_OVER_PV
                );
                let c = self.comparison(case.name, mode);
                verdicts.push(match c.and_then(|c| c.trap_over_pv_ours) {
                    Some(r) if r >= targets::TRAP_OVER_PV => Verdict {
                        target,
                        measured: format!("{r:.2}x"),
                        met: Some(true),
                        margin: "met".into(),
                        why: None,
                    },
                    Some(r) => Verdict {
                        target,
                        measured: format!("{r:.2}x"),
                        met: Some(false),
                        margin: format!("short by {:.1}x", targets::TRAP_OVER_PV / r),
                        why: Some(self.why_trap_short(case, of, mode)),
                    },
                    None => {
                        let why = if self.median(case.name, mode, "ours").is_none() {
                            self.why_missing(case.name, mode, "ours")
                        } else {
                            self.why_missing(of, mode, "ours")
                        };
                        Verdict {
                            target,
                            measured: why,
                            met: None,
                            margin: "-".into(),
                            why: None,
                        }
                    }
                });
                let target = format!("{} ours <= Xen ({mode})", case.name);
                verdicts.push(self.ratio_verdict(case, mode, target, 1.0));
            }
        }
        // Footprint.
        let image = &self.footprint.image;
        verdicts.push(Verdict {
            target: "hypervisor image <= 1 MiB".into(),
            measured: format!("{} bytes loaded", image.loaded_bytes),
            met: Some(image.loaded_bytes <= image.limit_bytes),
            margin: margin(image.loaded_bytes as f64, image.limit_bytes as f64),
            why: None,
        });
        for d in &self.footprint.per_domain {
            verdicts.push(Verdict {
                target: format!(
                    "hypervisor memory for a {} MiB domain <= 1% + 64 KiB ({} bytes)",
                    d.domain_bytes >> 20,
                    d.limit_bytes
                ),
                measured: format!("{} bytes", d.total_bytes),
                met: Some(d.total_bytes <= d.limit_bytes),
                margin: margin(d.total_bytes as f64, d.limit_bytes as f64),
                why: None,
            });
        }
        self.targets = verdicts;
    }

    fn ratio_verdict(&self, case: &Case, mode: &str, target: String, limit: f64) -> Verdict {
        match self
            .comparison(case.name, mode)
            .and_then(|c| c.ours_over_xen)
        {
            Some(r) => Verdict {
                target,
                measured: format!("{r:.2}x"),
                met: Some(r <= limit),
                margin: margin(r, limit),
                why: (r > limit).then(|| self.why_over_xen(case, mode, r, limit)),
            },
            None => {
                let hv = if self.median(case.name, mode, "ours").is_none() {
                    "ours"
                } else {
                    "xen"
                };
                Verdict {
                    target,
                    measured: self.why_missing(case.name, mode, hv),
                    met: None,
                    margin: "-".into(),
                    why: None,
                }
            }
        }
    }

    /// Why the trap twin `case` costs less than `TRAP_OVER_PV` times its PV operation
    /// `pv` on ours in `mode`, from the run's own numbers: what the PV operation would
    /// have to cost, next to what a hypercall that does nothing costs, and what the trap
    /// costs next to Xen's.
    fn why_trap_short(&self, case: &Case, pv: &str, mode: &str) -> String {
        let unit = unit_word(mode);
        let (Some(trap), Some(pv_cost)) = (
            self.median(case.name, mode, "ours"),
            self.median(pv, mode, "ours"),
        ) else {
            return "not measured on ours".into();
        };
        let needed = trap / targets::TRAP_OVER_PV;
        let mut why = format!(
            "{}x asks `{pv}` to cost at most {} {unit} (the trap's {} / {}); it costs {}.",
            targets::TRAP_OVER_PV,
            show(needed),
            show(trap),
            targets::TRAP_OVER_PV,
            show(pv_cost)
        );
        // The least a call costs bounds a PV operation that is one call, not an entry of
        // a batch (which shares its call's entry and exit) or a store to shared memory.
        let one_call = find(pv).is_some_and(|pv| pv.enters_hypervisor && !pv.batched);
        match self.median(NULL_CALL, mode, "ours").filter(|_| one_call) {
            Some(null) if pv != NULL_CALL && needed <= null => {
                let _ = write!(
                    why,
                    " That is no more than `{NULL_CALL}` costs ({}): a hypercall that does \
                     nothing, for its whole round trip.",
                    show(null)
                );
            }
            Some(null) if pv != NULL_CALL => {
                let _ = write!(
                    why,
                    " `{NULL_CALL}`, a hypercall that does nothing, costs {} for its whole \
                     round trip, which would leave `{pv}` {} for its own work ({} now).",
                    show(null),
                    show(needed - null),
                    show(pv_cost - null)
                );
            }
            _ => {}
        }
        if mode == "tcg" && case.cr3_writes > 0 {
            let _ = write!(
                why,
                " Both write CR3 {}, and under TCG each write empties QEMU's software TLB \
                 and jump cache: a cost the PV operation pays as fully as the trap.",
                times(case.cr3_writes)
            );
        }
        if let Some(xen) = self.median(case.name, mode, "xen") {
            let _ = write!(
                why,
                " The trap costs ours {:.2}x of Xen's {}.",
                trap / xen,
                show(xen)
            );
        }
        why
    }

    /// Why `case` costs ours more than `limit` times Xen's in `mode` (`ratio`), from the
    /// run's own numbers: its CR3 writes, priced by the case that is one CR3 write, or
    /// else its instructions next to Xen's.
    fn why_over_xen(&self, case: &Case, mode: &str, ratio: f64, limit: f64) -> String {
        let mut why = String::new();
        if mode == "tcg" && case.cr3_writes > 0 {
            let _ = write!(
                why,
                "`{}` writes CR3 {} per operation on both hypervisors, and under TCG each \
                 write empties QEMU's whole software TLB and jump cache: everything touched \
                 after it is refilled.",
                case.name,
                times(case.cr3_writes)
            );
            // Priced by the case that is one CR3 write, unless this is that case.
            let one = self
                .median(ONE_CR3_WRITE, mode, "ours")
                .filter(|_| case.name != ONE_CR3_WRITE);
            let xen = self.median(case.name, mode, "xen");
            if let (Some(one), Some(xen)) = (one, xen) {
                let all = one * f64::from(case.cr3_writes);
                let _ = write!(
                    why,
                    " One `{ONE_CR3_WRITE}`, a hypercall with one CR3 write, costs ours {} \
                     ticks; {} of them cost {}, {:.2}x of Xen's {} for this case, against \
                     the limit of {limit}x.",
                    show(one),
                    case.cr3_writes,
                    show(all),
                    all / xen,
                    show(xen)
                );
            }
        } else if mode == "tcg" {
            let ours = self.median(case.name, "icount", "ours");
            let xen = self.median(case.name, "icount", "xen");
            if let (Some(ours), Some(xen)) = (ours, xen) {
                let _ = write!(
                    why,
                    "`{}` writes no CR3; it executes {} instructions on ours against Xen's {} \
                     ({:.2}x), and the rest of its ticks are QEMU's own work (docs/\
                     benchmarks.md, \"Profiling the ticks\", measures it).",
                    case.name,
                    show(ours),
                    show(xen),
                    ours / xen
                );
            }
        }
        if mode == "tcg" && ratio / limit < 1.1 {
            let _ = write!(
                why,
                "{}Within 10% of the limit, a tick verdict moves with the host's load and \
                 the binary's layout alone (docs/benchmarks.md, \"Limits of the TCG \
                 numbers\").",
                if why.is_empty() { "" } else { " " }
            );
        }
        if why.is_empty() {
            why = "No bound is computed for this case here; docs/benchmarks.md, \"Why they \
                   are missed\", has the analysis."
                .into();
        }
        why
    }

    /// The console table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        for mode in self.modes() {
            let unit = if mode == "icount" {
                "instructions (-icount shift=0)"
            } else {
                "host TSC ticks (TCG), medians"
            };
            let _ = writeln!(out, "\nxtask: bench: {unit}");
            let _ = writeln!(
                out,
                "  {:<22} {:<10} {:>10} {:>10} {:>9} {:>12} {:>12}",
                "case", "kind", "ours", "Xen", "ours/Xen", "trap/PV ours", "trap/PV Xen"
            );
            for c in self.comparisons.iter().filter(|c| c.mode == mode) {
                let kind = find(&c.name).map_or("?", |case| case.kind.word());
                let cell = |v: Option<f64>| v.map_or_else(|| "n/a".into(), show);
                let _ = writeln!(
                    out,
                    "  {:<22} {:<10} {:>10} {:>10} {:>9} {:>12} {:>12}",
                    c.name,
                    kind,
                    cell(c.ours),
                    cell(c.xen),
                    ratio(c.ours_over_xen),
                    ratio(c.trap_over_pv_ours),
                    ratio(c.trap_over_pv_xen)
                );
            }
        }
        let met = self.targets.iter().filter(|v| v.met == Some(true)).count();
        let missed = self.targets.iter().filter(|v| v.met == Some(false)).count();
        let open = self.targets.iter().filter(|v| v.met.is_none()).count();
        let _ = writeln!(
            out,
            "\nxtask: bench: targets: {met} met, {missed} missed, {open} not measurable here (see report.md)"
        );
        out
    }

    /// Writes `report.md`, `report.json` and `chart.svg` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)?;
        let json = serde_json::to_string_pretty(self)?;
        std::fs::write(dir.join("report.json"), json + "\n").context("writing report.json")?;
        std::fs::write(dir.join("report.md"), self.markdown()).context("writing report.md")?;
        std::fs::write(dir.join("chart.svg"), crate::bench_chart::svg(self))
            .context("writing chart.svg")?;
        Ok(())
    }

    /// `report.md`.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let env = &self.environment;
        let _ = writeln!(md, "# Benchmark report\n");
        let _ = writeln!(
            md,
            "`cargo xtask bench{}` at commit `{}`. Method and commentary: docs/benchmarks.md.\n",
            if env.quick { " --quick" } else { "" },
            env.commit
        );
        let _ = writeln!(md, "## Environment\n");
        let _ = writeln!(md, "| | |\n| --- | --- |");
        let _ = writeln!(md, "| QEMU | {} |", env.qemu_version);
        let _ = writeln!(md, "| guest CPU | `{}`, `-smp 1` |", env.cpu);
        let _ = writeln!(
            md,
            "| host CPU | {} ({} CPUs) |",
            env.host_cpu, env.host_cpus
        );
        for (hv, version) in &env.versions {
            let _ = writeln!(md, "| xen_version on {hv} | {version} |");
        }
        if let Some(package) = &env.xen_package {
            let _ = writeln!(md, "| Xen package | {package} |");
        }
        let _ = writeln!(md, "\n### Runs\n");
        let _ = writeln!(
            md,
            "| hypervisor | mode | rounds | outcome | seconds | command |"
        );
        let _ = writeln!(md, "| --- | --- | ---: | --- | --- | --- |");
        for run in &self.runs {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {}{} | {:.1} | `{}` |",
                run.hypervisor,
                run.mode,
                run.rounds,
                run.outcome,
                if run.complete { "" } else { " (incomplete)" },
                run.seconds,
                run.command
            );
        }
        if self.runs.iter().any(|run| run.rounds > 1) {
            let _ = writeln!(
                md,
                "\nTimed runs of several rounds alternate between the hypervisors (ours, Xen, ours, ...); each case's figure is the median of the rounds' medians, with the lowest minimum and the highest maximum, and its ours/Xen ratio is the median of the per-round ratios (each round's two runs ran next to each other), so it need not equal the quotient of the two medians shown."
            );
        }
        for mode in self.modes() {
            let title = if mode == "icount" {
                "Instructions per operation (`-icount shift=0`, exact)"
            } else {
                "Host TSC ticks per operation (plain TCG): median [min .. max]"
            };
            let _ = writeln!(md, "\n## {title}\n");
            let _ = writeln!(
                md,
                "| case | kind | what | ours | Xen 4.17 | ours/Xen | trap/PV ours | trap/PV Xen |"
            );
            let _ = writeln!(md, "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |");
            for c in self.comparisons.iter().filter(|c| c.mode == mode) {
                let Some(case) = find(&c.name) else { continue };
                let cell = |hv: &str| {
                    let entry = self
                        .results
                        .iter()
                        .find(|e| e.name == c.name && e.mode == mode && e.hypervisor == hv);
                    match entry {
                        Some(e) if mode == "icount" => show(e.median),
                        Some(e) => {
                            format!("{} [{} .. {}]", show(e.median), show(e.min), show(e.max))
                        }
                        None => self
                            .missing
                            .iter()
                            .find(|m| m.name == c.name && m.mode == mode && m.hypervisor == hv)
                            .map_or_else(|| "-".into(), |m| m.status.clone()),
                    }
                };
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {} | {} |",
                    c.name,
                    case.kind.word(),
                    case.what,
                    cell("ours"),
                    cell("xen"),
                    ratio(c.ours_over_xen),
                    ratio(c.trap_over_pv_ours),
                    ratio(c.trap_over_pv_xen)
                );
            }
        }
        let _ = writeln!(md, "\n## Targets\n");
        let _ = writeln!(
            md,
            "Instruction counts repeat exactly; tick ratios move with the host's load and with the binary's layout alone (one page of data moved shifts some cases by up to 8%: docs/benchmarks.md, \"Limits of the TCG numbers\"), so a tick verdict within about 10% of its limit can flip from run to run.\n"
        );
        let _ = writeln!(md, "| target | measured | verdict | margin |");
        let _ = writeln!(md, "| --- | --- | --- | --- |");
        for v in &self.targets {
            let verdict = match v.met {
                Some(true) => "met",
                Some(false) => "**missed**",
                None => "not measurable",
            };
            let _ = writeln!(
                md,
                "| {} | {} | {verdict} | {} |",
                v.target, v.measured, v.margin
            );
        }
        let explained: Vec<&Verdict> = self
            .targets
            .iter()
            .filter(|v| v.met == Some(false))
            .collect();
        if !explained.is_empty() {
            let _ = writeln!(md, "\n### Why the missed targets are missed\n");
            let _ = writeln!(
                md,
                "From this run's own numbers; docs/benchmarks.md (\"Why they are missed\") has \
                 the analysis behind them and what would close each.\n"
            );
            for v in explained {
                let why = v.why.as_deref().unwrap_or("not explained here");
                let _ = writeln!(md, "- **{}** ({}): {why}", v.target, v.measured);
            }
        }
        let fp = &self.footprint;
        let _ = writeln!(md, "\n## Footprint\n");
        let _ = writeln!(
            md,
            "- Hypervisor image: {} bytes loaded from the ELF (text, rodata, data; limit {}); \
             {} bytes of memory with .bss (stacks, the frame table for 4 GiB, the M2P).",
            fp.image.loaded_bytes, fp.image.limit_bytes, fp.image.memory_bytes
        );
        let _ = writeln!(
            md,
            "\n| domain memory | domain slot | runtime slot | shared info | per page | total | limit (1% + 64 KiB) |"
        );
        let _ = writeln!(md, "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        for d in &fp.per_domain {
            let _ = writeln!(
                md,
                "| {} MiB | {} | {} | {} | {} | {} | {} |",
                d.domain_bytes >> 20,
                d.domain_slot,
                d.runtime_slot,
                d.shared_info,
                d.per_page,
                d.total_bytes,
                d.limit_bytes
            );
        }
        let _ = writeln!(
            md,
            "\nInstructions from QEMU's start to the guest's banner (`-icount`):\n"
        );
        for (hv, n) in &fp.boot_instructions {
            let _ = writeln!(md, "- {hv}: {n}");
        }
        let _ = writeln!(md, "\n## Cases not measured\n");
        let mut by_reason: BTreeMap<(String, String, String), Vec<String>> = BTreeMap::new();
        for m in &self.missing {
            by_reason
                .entry((m.name.clone(), m.status.clone(), m.why.clone()))
                .or_default()
                .push(format!("{} {}", m.hypervisor, m.mode));
        }
        for ((name, status, why), runs) in by_reason {
            let _ = writeln!(md, "- `{name}` ({}): {status}: {why}", runs.join(", "));
        }
        let _ = writeln!(md, "\n## Chart\n\n![ours vs Xen, PV vs trap](chart.svg)");
        md
    }
}

/// "met", or how far over the limit (`value / limit`).
/// ours / Xen from rounds that ran next to each other (ours, then Xen, in each round):
/// the median of the per-round ratios, which a drift of the host's speed between rounds
/// does not bias. `None` unless both sides have the same number (two or more) of rounds.
pub fn paired_ratio(ours: &[f64], xen: &[f64]) -> Option<f64> {
    if ours.len() < 2 || ours.len() != xen.len() || xen.iter().any(|&x| x <= 0.0) {
        return None;
    }
    let mut ratios: Vec<f64> = ours.iter().zip(xen).map(|(o, x)| o / x).collect();
    Some(crate::bench::median_of(&mut ratios))
}

fn margin(value: f64, limit: f64) -> String {
    if value <= limit {
        format!("met ({:.0}% of the limit)", value / limit * 100.0)
    } else {
        format!("missed by {:.2}x", value / limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench_footprint::Image;

    /// A report of these medians (case, mode, hypervisor, median), compared and judged.
    fn report(medians: &[(&str, &str, &str, f64)]) -> Report {
        let results = medians
            .iter()
            .map(|&(name, mode, hypervisor, median)| Entry {
                name: name.into(),
                mode: mode.into(),
                hypervisor: hypervisor.into(),
                median,
                min: median,
                max: median,
                iterations: 100,
                unit: unit_word(mode).into(),
                kind: find(name).expect("a known case").kind,
                group: find(name).unwrap().group.into(),
                round_medians: Vec::new(),
            })
            .collect();
        let mut report = Report {
            environment: Environment {
                qemu_version: "QEMU".into(),
                cpu: "max".into(),
                host_cpu: "host".into(),
                host_cpus: 2,
                xen_package: None,
                versions: Vec::new(),
                commit: "test".into(),
                quick: false,
            },
            runs: Vec::new(),
            results,
            missing: Vec::new(),
            comparisons: Vec::new(),
            targets: Vec::new(),
            footprint: Footprint {
                image: Image {
                    loaded_bytes: 1,
                    memory_bytes: 1,
                    limit_bytes: 2,
                },
                per_domain: Vec::new(),
                boot_instructions: Vec::new(),
            },
        };
        report.compare();
        report.judge();
        report
    }

    fn verdict<'r>(report: &'r Report, target: &str) -> &'r Verdict {
        report
            .targets
            .iter()
            .find(|v| v.target == target)
            .unwrap_or_else(|| panic!("no verdict {target}"))
    }

    #[test]
    fn a_short_trap_twin_is_explained_by_what_its_pv_operation_would_have_to_cost() {
        // The counts of the run at fd8a46b.
        let report = report(&[
            ("null_hypercall", "icount", "ours", 33.0),
            ("cr0_read_trap", "icount", "ours", 664.0),
            ("new_baseptr", "icount", "ours", 61.0),
            ("mov_cr3_trap", "icount", "ours", 766.0),
            ("mov_cr3_trap", "icount", "xen", 1648.0),
        ]);
        let short = verdict(&report, "mov_cr3_trap >= 20x new_baseptr on ours (icount)");
        assert_eq!(short.met, Some(false));
        let why = short.why.as_deref().expect("a missed target says why");
        assert!(why.contains("at most 38.3 instructions"), "{why}");
        assert!(why.contains("costs 61."), "{why}");
        assert!(why.contains("costs 33 for its whole round trip"), "{why}");
        assert!(
            why.contains("leave `new_baseptr` 5.3 for its own work (28 now)"),
            "{why}"
        );
        assert!(why.contains("0.46x of Xen's 1648"), "{why}");
        assert!(!why.contains("CR3"), "instructions: no TLB to weigh: {why}");
        // Met: nothing to explain, in the JSON either.
        let met = verdict(
            &report,
            "cr0_read_trap >= 20x null_hypercall on ours (icount)",
        );
        assert_eq!((met.met, met.why.as_deref()), (Some(true), None));
        let json = serde_json::to_string(met).unwrap();
        assert!(!json.contains("why"), "{json}");
    }

    #[test]
    fn a_batch_entry_is_not_held_to_the_null_hypercall() {
        let report = report(&[
            ("null_hypercall", "icount", "ours", 33.0),
            ("pte512_mmu_update", "icount", "ours", 110.0),
            ("pte512_store_trap", "icount", "ours", 1183.0),
        ]);
        let why = verdict(
            &report,
            "pte512_store_trap >= 20x pte512_mmu_update on ours (icount)",
        )
        .why
        .clone()
        .unwrap();
        assert!(why.contains("at most 59.1 instructions"), "{why}");
        assert!(!why.contains("null_hypercall"), "its call is shared: {why}");
    }

    #[test]
    fn a_twin_needing_less_than_a_null_hypercall_says_so() {
        let report = report(&[
            ("null_hypercall", "tcg", "ours", 92.0),
            ("port_out_hypercall", "tcg", "ours", 478.0),
            ("port_out_trap", "tcg", "ours", 1800.0),
        ]);
        let why = verdict(
            &report,
            "port_out_trap >= 20x port_out_hypercall on ours (tcg)",
        )
        .why
        .clone()
        .unwrap();
        assert!(why.contains("at most 90 ticks"), "{why}");
        assert!(
            why.contains("no more than `null_hypercall` costs (92)"),
            "{why}"
        );
    }

    #[test]
    fn a_tick_miss_is_priced_by_its_cr3_writes_or_set_beside_its_instructions() {
        // The system-call round trip of the run at ce95861; a #PF round trip made up to
        // miss by a little.
        let report = report(&[
            ("new_baseptr", "tcg", "ours", 6258.0),
            ("new_baseptr", "tcg", "xen", 14379.0),
            ("syscall_roundtrip", "tcg", "ours", 15965.0),
            ("syscall_roundtrip", "tcg", "xen", 23542.0),
            ("pagefault_roundtrip", "icount", "ours", 273.0),
            ("pagefault_roundtrip", "icount", "xen", 807.0),
            ("pagefault_roundtrip", "tcg", "ours", 1300.0),
            ("pagefault_roundtrip", "tcg", "xen", 2520.0),
        ]);
        let syscall = verdict(&report, "syscall_roundtrip ours/Xen <= 0.5x (tcg)");
        assert_eq!(syscall.met, Some(false));
        let why = syscall.why.as_deref().unwrap();
        assert!(why.contains("writes CR3 twice per operation"), "{why}");
        assert!(
            why.contains("costs ours 6258 ticks; 2 of them cost 12516"),
            "{why}"
        );
        assert!(why.contains("0.53x of Xen's 23542"), "{why}");
        assert!(!why.contains("Within 10%"), "1.36x the limit: {why}");
        let fault = verdict(&report, "pagefault_roundtrip ours/Xen <= 0.5x (tcg)");
        assert_eq!(fault.met, Some(false));
        let why = fault.why.as_deref().unwrap();
        assert!(why.contains("writes no CR3"), "{why}");
        assert!(
            why.contains("273 instructions on ours against Xen's 807 (0.34x)"),
            "{why}"
        );
        assert!(why.contains("Within 10% of the limit"), "{why}");
        // Met at 0.44x: no explanation.
        let met = verdict(&report, "new_baseptr ours/Xen <= 0.5x (tcg)");
        assert_eq!((met.met, met.why.as_deref()), (Some(true), None));
        // The report lists each miss with its explanation, and only the misses.
        let md = report.markdown();
        let (_, section) = md
            .split_once("### Why the missed targets are missed")
            .expect("a section for the misses");
        let section = section.split("\n## ").next().unwrap();
        assert!(section.contains("- **syscall_roundtrip ours/Xen <= 0.5x (tcg)** (0.68x):"));
        assert!(section.contains("- **pagefault_roundtrip ours/Xen <= 0.5x (tcg)** (0.52x):"));
        assert!(!section.contains("new_baseptr ours/Xen"), "{section}");
    }

    #[test]
    fn a_report_without_a_miss_has_no_explanations() {
        let report = report(&[
            ("null_hypercall", "icount", "ours", 33.0),
            ("null_hypercall", "icount", "xen", 275.0),
        ]);
        assert!(report.targets.iter().all(|v| v.why.is_none()));
        assert!(!report.markdown().contains("Why the missed"));
    }

    #[test]
    fn paired_ratios_cancel_a_drift_between_rounds() {
        // Measured: our null hypercall in three rounds, and Xen's right after each. The
        // quotient of the two medians (688 / 664) says 1.04x; round by round it was
        // 0.69x, 1.04x and 0.74x.
        let ours = [458.9, 688.2, 740.7];
        let xen = [663.0, 664.0, 1006.9];
        let paired = paired_ratio(&ours, &xen).unwrap();
        assert!((paired - 740.7 / 1006.9).abs() < 1e-12, "{paired}");
        assert_eq!(
            paired_ratio(&[1.0, 3.0], &[2.0, 2.0]),
            Some(1.0),
            "even count: the mean of the middle two"
        );
        // Nothing to pair: one round, unequal rounds, or a zero.
        assert_eq!(paired_ratio(&[1.0], &[2.0]), None);
        assert_eq!(paired_ratio(&[1.0, 2.0], &[2.0, 2.0, 2.0]), None);
        assert_eq!(paired_ratio(&[1.0, 2.0], &[2.0, 0.0]), None);
    }
}
