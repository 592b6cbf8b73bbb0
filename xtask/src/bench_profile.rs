//! `cargo xtask bench --profile`: where the host's time goes, case by case.
//!
//! The TCG ticks of a case are the time QEMU spends emulating it, and much of that time
//! is QEMU's own bookkeeping rather than the guest's instructions: a CR3 write empties
//! the software TLB and the jump cache, a page walk refills them, an `fxsave` is a
//! helper that stores byte ranges one by one. docs/benchmarks.md explains the tick
//! ratios with those costs; this mode measures them. It runs the benchmark once per
//! hypervisor under plain TCG inside `perf record` (the host's sampling profiler,
//! clocked by the wall clock), notes the wall-clock time at which each `bench: result`
//! line arrives on the console, and asks `perf report` for the functions QEMU ran in
//! each case's window (from the previous `bench:` line to the case's own). QEMU's
//! exported functions are named (its binary is stripped, but it exports most of them);
//! the rest are summed per binary as "unnamed".
//!
//! The runs are slowed by the sampling, so their ticks are not results: `report.md` is
//! left alone; this writes `target/bench/profile.md` and the `perf` data beside it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

use crate::manifest::Hypervisor;
use crate::qemu::{ConsoleWatcher, Verdict};

/// `perf`'s sampling rate (per second of host CPU time): enough samples in a case's
/// window (most last 10-300 ms) without slowing QEMU much.
pub const SAMPLE_HZ: u32 = 40_000;

/// Functions listed per case and hypervisor.
const TOP: usize = 8;

/// One case's stretch of a run, in wall-clock seconds since the Unix epoch (the clock
/// `perf record -k realtime` stamps its samples with).
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// The case whose result line ended it.
    pub case: String,
    /// The previous `bench:` line's arrival.
    pub from: f64,
    /// The case's `bench: result` line's arrival.
    pub to: f64,
}

/// Wraps a run's console watcher and notes when each benchmark line arrives.
pub struct Stamping<'w> {
    inner: &'w mut dyn ConsoleWatcher,
    clock: fn() -> f64,
    last: Option<f64>,
    /// One per `bench: result` line after the first `bench:` line.
    pub windows: Vec<Window>,
}

impl<'w> Stamping<'w> {
    /// Stamps with `clock` (seconds).
    pub fn with_clock(inner: &'w mut dyn ConsoleWatcher, clock: fn() -> f64) -> Stamping<'w> {
        Stamping {
            inner,
            clock,
            last: None,
            windows: Vec::new(),
        }
    }
}

/// Seconds since the Unix epoch (CLOCK_REALTIME, the clock `perf record -k realtime`
/// stamps its samples with).
pub fn wall_clock() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}

const MARKER: &str = "bench: ";

impl ConsoleWatcher for Stamping<'_> {
    fn line(&mut self, line: &str) -> Verdict {
        if let Some(at) = line.find(MARKER) {
            let now = (self.clock)();
            let text = &line[at + MARKER.len()..];
            let case = text
                .strip_prefix("result case=")
                .and_then(|rest| rest.split_ascii_whitespace().next());
            if let (Some(case), Some(from)) = (case, self.last) {
                self.windows.push(Window {
                    case: case.to_owned(),
                    from,
                    to: now,
                });
            }
            self.last = Some(now);
        }
        self.inner.line(line)
    }
}

/// `perf record`'s command line around `qemu` (a complete QEMU command), writing `data`.
pub fn wrap(qemu: &Command, data: &Path) -> Command {
    perf_record(
        &["-k", "realtime", "-F", &SAMPLE_HZ.to_string()],
        qemu,
        data,
    )
}

/// `perf record --quiet` with `options` around `qemu`, writing `data`.
pub fn perf_record(options: &[&str], qemu: &Command, data: &Path) -> Command {
    let mut command = Command::new("perf");
    command
        .args(["record", "--quiet"])
        .args(options)
        .arg("-o")
        .arg(data)
        .arg("--")
        .arg(qemu.get_program())
        .args(qemu.get_args());
    command
}

/// One line of `perf report -n --sort dso,sym`: a share of the window's samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Percent of the window's samples.
    pub percent: f64,
    /// How many samples.
    pub count: u64,
    /// The binary (`qemu-system-x86_64`, `libc.so.6`, `[JIT] tid N` for QEMU's
    /// translated code, `[kernel.kallsyms]`).
    pub dso: String,
    /// The function, or `None` where the binary does not name it.
    pub symbol: Option<String>,
}

/// Parses `perf report --stdio -n --no-children --sort dso,sym -g none` output.
pub fn parse_report(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| {
            let words: Vec<&str> = line.split_ascii_whitespace().collect();
            let percent = words.first()?.strip_suffix('%')?.parse::<f64>().ok()?;
            let count = words.get(1)?.parse::<u64>().ok()?;
            let kind = words.iter().position(|w| *w == "[.]" || *w == "[k]")?;
            let dso = words.get(2..kind)?.join(" ");
            let symbol = words.get(kind + 1..)?.join(" ");
            let named = !symbol.is_empty() && !symbol.starts_with("0x");
            Some(Sample {
                percent,
                count,
                dso,
                symbol: named.then_some(symbol),
            })
        })
        .collect()
}

/// The samples of one window as named entries, largest first: a function by name,
/// QEMU's translated code as one entry, and each binary's unnamed code as one.
pub fn entries(samples: &[Sample]) -> Vec<(String, f64)> {
    let mut sums: BTreeMap<String, f64> = BTreeMap::new();
    for sample in samples {
        let name = if sample.dso.starts_with("[JIT]") {
            "(translated guest code)".to_owned()
        } else {
            match &sample.symbol {
                Some(symbol) => symbol.clone(),
                None => format!("({}, unnamed)", short_dso(&sample.dso)),
            }
        };
        *sums.entry(name).or_default() += sample.percent;
    }
    let mut entries: Vec<(String, f64)> = sums.into_iter().collect();
    entries.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    entries
}

fn short_dso(dso: &str) -> &str {
    dso.rsplit('/').next().unwrap_or(dso)
}

/// The groups the summary adds up: what docs/benchmarks.md's explanations name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// Emptying the jump cache (the table that finds the next translation block after
    /// an indirect branch): every full TLB flush, so every CR3 write.
    JumpCacheFlush,
    /// Refilling the software TLB: the guest page walk and the new entry.
    TlbRefill,
    /// Memory accesses through helpers instead of inline code: a TLB miss, or an
    /// instruction emulated by a helper (`fxsave`, `fxrstor`, an exception frame).
    SlowMemory,
    /// The translated guest code itself.
    Translated,
}

impl Group {
    /// Every group, in the summary's column order.
    pub const ALL: [Group; 4] = [
        Group::JumpCacheFlush,
        Group::TlbRefill,
        Group::SlowMemory,
        Group::Translated,
    ];

    fn title(self) -> &'static str {
        match self {
            Group::JumpCacheFlush => "jump-cache flush",
            Group::TlbRefill => "TLB refill",
            Group::SlowMemory => "memory by helper",
            Group::Translated => "translated code",
        }
    }

    /// The group of an entry of [`entries`], if any.
    fn of(name: &str) -> Option<Group> {
        const REFILL: &[&str] = &[
            "tlb_set_page_full",
            "tlb_set_page_with_attrs",
            "x86_cpu_tlb_fill",
            "probe_access_full",
            "address_space_translate_for_iotlb",
            "get_pg_mode",
        ];
        if name == "tcg_flush_jmp_cache" {
            Some(Group::JumpCacheFlush)
        } else if REFILL.contains(&name) {
            Some(Group::TlbRefill)
        } else if (name.starts_with("helper_le_") || name.starts_with("helper_ret_"))
            && name.ends_with("_mmu")
            || (name.starts_with("cpu_ld") || name.starts_with("cpu_st")) && name.ends_with("_ra")
            || name == "qemu_plugin_vcpu_mem_cb"
        {
            Some(Group::SlowMemory)
        } else if name == "(translated guest code)" {
            Some(Group::Translated)
        } else {
            None
        }
    }

    /// The group's share of a window.
    pub fn share(self, entries: &[(String, f64)]) -> f64 {
        entries
            .iter()
            .filter(|(name, _)| Group::of(name) == Some(self))
            .fold(0.0, |sum, (_, percent)| sum + percent)
    }
}

/// One case of a profiled run.
#[derive(Debug, Clone)]
pub struct CaseProfile {
    /// Its window.
    pub window: Window,
    /// The samples taken in it.
    pub samples: u64,
    /// Its entries (see [`entries`]), largest first.
    pub entries: Vec<(String, f64)>,
}

/// `perf report` of one window of `data`.
pub fn report_window(data: &Path, window: Window) -> Result<CaseProfile> {
    let output = Command::new("perf")
        .arg("report")
        .arg("-i")
        .arg(data)
        .args([
            "--stdio",
            "-n",
            "--no-children",
            "--sort",
            "dso,sym",
            "-g",
            "none",
        ])
        .arg("--time")
        .arg(format!("{:.6},{:.6}", window.from, window.to))
        .output()
        .context("running perf report")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() && !text.contains('%') {
        // No samples in the window is not an error: the case was too short.
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !stderr.contains("no samples") {
            bail!("perf report failed: {}", stderr.trim());
        }
    }
    let samples = parse_report(&text);
    Ok(CaseProfile {
        window,
        samples: samples.iter().map(|sample| sample.count).sum(),
        entries: entries(&samples),
    })
}

/// One profiled run.
#[derive(Debug, Clone)]
pub struct Profiled {
    /// The hypervisor.
    pub hypervisor: Hypervisor,
    /// Per case, in the order the run measured them.
    pub cases: Vec<CaseProfile>,
}

impl Profiled {
    fn case(&self, name: &str) -> Option<&CaseProfile> {
        self.cases.iter().find(|case| case.window.case == name)
    }
}

/// The cases of `runs`, each once, in the order the runs measured them.
pub fn case_names(runs: &[Profiled]) -> Vec<&str> {
    let mut cases: Vec<&str> = Vec::new();
    for run in runs {
        for case in &run.cases {
            if !cases.contains(&case.window.case.as_str()) {
                cases.push(&case.window.case);
            }
        }
    }
    cases
}

/// `profile.md`: the summary table (each group's share per case, both hypervisors),
/// then the top functions of each case.
pub fn markdown(runs: &[Profiled], header: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Where the host's time goes, case by case\n");
    let _ = writeln!(out, "{header}\n");
    let _ = writeln!(
        out,
        "Percent of the host CPU samples `perf` took in each case's window (from the \
         previous `bench:` line to the case's result line: warm-up, timing and printing). \
         Groups: jump-cache flush `tcg_flush_jmp_cache` (every full TLB flush: a CR3 \
         write); TLB refill `tlb_set_page_full`, `x86_cpu_tlb_fill`, `probe_access_full`, \
         `address_space_translate_for_iotlb`, `get_pg_mode` (the page walk itself is \
         unnamed in QEMU's binary and counted in no group); memory by helper \
         `helper_*_mmu`, `cpu_ld*/cpu_st*_ra`, `qemu_plugin_vcpu_mem_cb` (TLB misses and \
         instructions done by helpers, such as `fxsave`); translated code (QEMU's \
         generated code for the guest's instructions).\n"
    );
    let cases = case_names(runs);
    let _ = write!(out, "| case |");
    for run in runs {
        let _ = write!(out, " {} samples |", run.hypervisor);
        for group in Group::ALL {
            let _ = write!(out, " {} {} |", run.hypervisor, group.title());
        }
    }
    let _ = write!(out, "\n| --- |");
    for _ in runs {
        for _ in 0..=Group::ALL.len() {
            let _ = write!(out, " ---: |");
        }
    }
    out.push('\n');
    for name in &cases {
        let _ = write!(out, "| `{name}` |");
        for run in runs {
            match run.case(name) {
                Some(case) => {
                    let _ = write!(out, " {} |", case.samples);
                    for group in Group::ALL {
                        let _ = write!(out, " {:.1}% |", group.share(&case.entries));
                    }
                }
                None => {
                    for _ in 0..=Group::ALL.len() {
                        out.push_str(" - |");
                    }
                }
            }
        }
        out.push('\n');
    }
    let _ = writeln!(out, "\n## The functions of each case\n");
    for name in &cases {
        let _ = writeln!(out, "### `{name}`\n");
        let _ = write!(out, "|");
        for run in runs {
            let _ = write!(out, " {} | % |", run.hypervisor);
        }
        let _ = write!(out, "\n|");
        for _ in runs {
            out.push_str(" --- | ---: |");
        }
        out.push('\n');
        for rank in 0..TOP {
            let _ = write!(out, "|");
            for run in runs {
                match run.case(name).and_then(|case| case.entries.get(rank)) {
                    Some((entry, percent)) => {
                        let _ = write!(out, " `{entry}` | {percent:.1} |");
                    }
                    None => out.push_str(" | |"),
                }
            }
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qemu::UntilExit;

    const REPORT: &str = "\
# Samples: 2K of event 'cpu-clock:ppp'
#
# Overhead  Shared Object       Symbol
# ........  ..................  ......
#
    25.70%   257  qemu-system-x86_64  [.] tcg_flush_jmp_cache
     8.76%    88  qemu-system-x86_64  [.] tlb_set_page_full
     4.46%    45  [kernel.kallsyms]   [k] clear_page_erms
     2.95%    30  [JIT] tid 18085     [.] 0x00007f1e94443943
     1.00%    10  [JIT] tid 18085     [.] 0x00007f1e94443999
     0.77%     8  qemu-system-x86_64  [.] 0x00000000007e3506
     0.50%     5  qemu-system-x86_64  [.] 0x00000000007e3507
     0.40%     4  qemu-system-x86_64  [.] helper_le_stq_mmu
     0.30%     3  qemu-system-x86_64  [.] cpu_ldq_le_data_ra
";

    #[test]
    fn a_report_is_read_line_by_line_and_summed_by_name() {
        let samples = parse_report(REPORT);
        assert_eq!(samples.len(), 9);
        assert_eq!(samples[0].symbol.as_deref(), Some("tcg_flush_jmp_cache"));
        assert_eq!(samples[3].dso, "[JIT] tid 18085");
        assert_eq!(samples.iter().map(|s| s.count).sum::<u64>(), 450);
        assert_eq!(samples[3].symbol, None);
        let entries = entries(&samples);
        let get = |name: &str| {
            entries
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, p)| *p)
                .unwrap_or(f64::NAN)
        };
        assert!((get("(translated guest code)") - 3.95).abs() < 1e-9);
        assert!((get("(qemu-system-x86_64, unnamed)") - 1.27).abs() < 1e-9);
        assert_eq!(entries[0].0, "tcg_flush_jmp_cache");
        assert!((Group::JumpCacheFlush.share(&entries) - 25.70).abs() < 1e-9);
        assert!((Group::TlbRefill.share(&entries) - 8.76).abs() < 1e-9);
        assert!((Group::SlowMemory.share(&entries) - 0.70).abs() < 1e-9);
        assert!((Group::Translated.share(&entries) - 3.95).abs() < 1e-9);
    }

    #[test]
    fn each_result_line_closes_the_window_the_previous_bench_line_opened() {
        use std::sync::atomic::{AtomicU32, Ordering};
        static TICK: AtomicU32 = AtomicU32::new(0);
        fn clock() -> f64 {
            f64::from(TICK.fetch_add(1, Ordering::SeqCst))
        }
        let mut inner = UntilExit;
        let mut stamping = Stamping::with_clock(&mut inner, clock);
        for line in [
            "(d1 bench) bench: info role=Full",      // t0
            "unrelated console line",                // not stamped
            "(d1 bench) bench: result case=a ops=1", // t1
            "(XEN) bench: na case=b why=none",       // t2
            "bench: result case=c ops=1 median=2",   // t3
        ] {
            assert_eq!(stamping.line(line), Verdict::Continue);
        }
        assert_eq!(
            stamping.windows,
            vec![
                Window {
                    case: "a".into(),
                    from: 0.0,
                    to: 1.0
                },
                Window {
                    case: "c".into(),
                    from: 2.0,
                    to: 3.0
                },
            ]
        );
    }

    #[test]
    fn the_markdown_has_a_summary_row_and_a_top_list_per_case() {
        let case = |percent: f64| CaseProfile {
            window: Window {
                case: "new_baseptr".into(),
                from: 0.0,
                to: 1.0,
            },
            samples: 100,
            entries: vec![("tcg_flush_jmp_cache".into(), percent)],
        };
        let runs = [
            Profiled {
                hypervisor: Hypervisor::Ours,
                cases: vec![case(30.9)],
            },
            Profiled {
                hypervisor: Hypervisor::Xen,
                cases: vec![case(20.0)],
            },
        ];
        let text = markdown(&runs, "header");
        assert!(
            text.contains("| `new_baseptr` | 100 | 30.9% | 0.0% | 0.0% | 0.0% | 100 | 20.0% |"),
            "{text}"
        );
        assert!(text.contains("| `tcg_flush_jmp_cache` | 30.9 | `tcg_flush_jmp_cache` | 20.0 |"));
    }
}
