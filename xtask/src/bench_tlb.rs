//! `cargo xtask bench --profile`'s second measurement: how often QEMU empties its jump
//! cache and refills its software TLB, per operation, counted, not sampled.
//!
//! Under TCG a CR3 write costs what QEMU does about it: it empties its software TLB and
//! its jump cache (a full flush), and every page touched afterwards is a TLB fill (a
//! page walk in C, then a new entry). docs/benchmarks.md explains the tick ratios of the
//! cases that switch page tables with these two costs; this counts them. Two uprobes
//! (`perf probe`, root only) go on QEMU's own functions: `tcg_flush_jmp_cache`, which
//! every full flush calls once (and which other events may call: Xen's trapped `out`
//! empties the jump cache three times with no fill after it, so with no TLB flush), and
//! `x86_cpu_tlb_fill`, which every fill calls once, with the fill's MMU index (its fifth
//! argument, `r8`), which tells the guest's fills from the hypervisor's and from the
//! page walker's ([`FillKind`]). One TCG run per hypervisor is recorded under `perf
//! record -k mono` (uprobe events take no other clock here), the console's `bench:`
//! lines stamped with the same clock ([`monotonic_clock`]), and the events of each
//! case's window counted and divided by the operations the case timed. The window also
//! holds the case's warm-up and set-up, so a count per operation is a little above the
//! timed loop's own (1.01 jump-cache flushes for one `NEW_BASEPTR`).

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::bench_profile::{self, Window};

/// The probes' `perf` group.
const GROUP: &str = "xtask_bench";
/// The event on `tcg_flush_jmp_cache`: one per full TLB flush (and per other emptying
/// of the jump cache).
const FLUSH: &str = "jmp_flush";
/// The event on `x86_cpu_tlb_fill`: one per TLB fill.
const FILL: &str = "tlb_fill";

/// What a TLB fill was for, by the MMU index QEMU gives it. Debian's QEMU 7.2 numbers
/// its indexes as upstream QEMU 8 does: six CPU modes (kernel with SMAP, user, kernel
/// without SMAP; each 64 or 32-bit: 0..=5), then `MMU_PHYS_IDX` (6), which the page
/// walker uses for the page-table pages it reads. The fills themselves show it: index 2
/// comes with the guest's addresses (ring 3, where a PV guest runs in both its modes),
/// 4 with the hypervisor's (ring 0, `-cpu max,-smap`), 5 with the 32-bit boot code's,
/// and 6 with the physical addresses of page-table pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FillKind {
    /// An access in ring 3: the guest's own, kernel or process.
    Guest,
    /// An access in ring 0: the hypervisor's.
    Ring0,
    /// A page-table page the walker read.
    Walk,
}

impl FillKind {
    fn of(mmu_index: i64) -> FillKind {
        match mmu_index {
            2 | 3 => FillKind::Guest,
            6 => FillKind::Walk,
            _ => FillKind::Ring0,
        }
    }
}

/// The two probes on QEMU's binary, deleted again when dropped.
pub struct Probes(());

impl Probes {
    /// Adds them to `qemu` (first deleting any left by an interrupted run). Fails
    /// without root or without uprobe support in the host's kernel.
    pub fn add(qemu: &Path) -> Result<Probes> {
        delete();
        for spec in [
            format!("{GROUP}:{FLUSH}=tcg_flush_jmp_cache"),
            format!("{GROUP}:{FILL}=x86_cpu_tlb_fill idx=%r8:s32"),
        ] {
            let output = Command::new("perf")
                .args(["probe", "-q", "-x"])
                .arg(qemu)
                .args(["--add", &spec])
                .output()
                .context("running perf probe")?;
            if !output.status.success() {
                delete();
                bail!(
                    "perf probe --add {spec} failed (root and uprobes needed): {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                );
            }
        }
        Ok(Probes(()))
    }
}

impl Drop for Probes {
    fn drop(&mut self) {
        delete();
    }
}

/// Deletes the group's probes, if any.
fn delete() {
    let _ = Command::new("perf")
        .args(["probe", "-q", "-d", &format!("{GROUP}:*")])
        .output();
}

/// `perf record` of the two events around `qemu` (a complete QEMU command), into `data`.
pub fn wrap(qemu: &Command, data: &Path) -> Command {
    let (flush, fill) = (format!("{GROUP}:{FLUSH}"), format!("{GROUP}:{FILL}"));
    bench_profile::perf_record(&["-k", "mono", "-e", &flush, "-e", &fill], qemu, data)
}

/// Seconds of CLOCK_MONOTONIC, the clock `perf record -k mono` stamps events with.
pub fn monotonic_clock() -> f64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `now` is, and nothing else.
    let result = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    if result != 0 {
        return 0.0;
    }
    now.tv_sec as f64 + now.tv_nsec as f64 * 1e-9
}

/// The events of one window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Emptyings of the jump cache (each full TLB flush is one).
    pub flushes: u64,
    /// TLB fills for the guest's accesses (ring 3).
    pub guest_fills: u64,
    /// TLB fills for the hypervisor's accesses (ring 0).
    pub ring0_fills: u64,
    /// TLB fills the page walker made for the page-table pages it read.
    pub walk_fills: u64,
}

/// Counts per operation: [`Counts`] over the operations a case timed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PerOp {
    /// Emptyings of the jump cache (each full TLB flush is one).
    pub flushes: f64,
    /// TLB fills for the guest's accesses.
    pub guest_fills: f64,
    /// TLB fills for the hypervisor's accesses.
    pub ring0_fills: f64,
    /// TLB fills for page-table pages.
    pub walk_fills: f64,
}

impl Counts {
    /// Per operation, over `ops` (none for 0).
    pub fn per_op(self, ops: u64) -> Option<PerOp> {
        let ops = ops as f64;
        (ops > 0.0).then(|| PerOp {
            flushes: self.flushes as f64 / ops,
            guest_fills: self.guest_fills as f64 / ops,
            ring0_fills: self.ring0_fills as f64 / ops,
            walk_fills: self.walk_fills as f64 / ops,
        })
    }
}

/// `perf script`'s lines of the events in `data`: time, event and arguments.
pub fn script(data: &Path) -> Result<String> {
    let output = Command::new("perf")
        .args(["script", "-F", "time,event,trace", "--ns", "-i"])
        .arg(data)
        .output()
        .context("running perf script")?;
    if !output.status.success() {
        bail!(
            "perf script failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Counts the events of `perf script` output `text` into `windows` (an event belongs to
/// each window whose interval holds its time; the windows of one run do not overlap).
pub fn count(text: &str, windows: &[Window]) -> Vec<Counts> {
    let mut counts = vec![Counts::default(); windows.len()];
    let (flush_event, fill_event) = (format!("{GROUP}:{FLUSH}:"), format!("{GROUP}:{FILL}:"));
    for line in text.lines() {
        let Some((time, rest)) = line.trim_start().split_once(':') else {
            continue;
        };
        let Ok(time) = time.trim().parse::<f64>() else {
            continue;
        };
        let rest = rest.trim_start();
        let flush = rest.starts_with(&flush_event);
        let fill = rest.starts_with(&fill_event);
        if !flush && !fill {
            continue;
        }
        let kind = rest
            .split_ascii_whitespace()
            .find_map(|word| word.strip_prefix("idx=")?.parse::<i64>().ok())
            .map(FillKind::of);
        for (window, counts) in windows.iter().zip(counts.iter_mut()) {
            if window.from <= time && time <= window.to {
                let count = match (flush, kind) {
                    (true, _) => &mut counts.flushes,
                    (false, Some(FillKind::Guest)) => &mut counts.guest_fills,
                    (false, Some(FillKind::Walk)) => &mut counts.walk_fills,
                    (false, Some(FillKind::Ring0) | None) => &mut counts.ring0_fills,
                };
                *count += 1;
            }
        }
    }
    counts
}

/// The markdown table of per-operation counts: one row per case, a column group per run
/// (`runs`: the hypervisor's name and its counts by case; dashes for a case it lacks).
pub fn markdown(cases: &[&str], runs: &[(String, Vec<(String, PerOp)>)]) -> String {
    let mut out = String::new();
    let _ = write!(out, "| case |");
    for (hypervisor, _) in runs {
        let _ = write!(
            out,
            " {hypervisor} jump-cache flushes | {hypervisor} guest fills | {hypervisor} ring-0 \
             fills | {hypervisor} walk fills |"
        );
    }
    let _ = write!(out, "\n| --- |");
    for _ in runs {
        out.push_str(" ---: | ---: | ---: | ---: |");
    }
    out.push('\n');
    for case in cases {
        let _ = write!(out, "| `{case}` |");
        for (_, counted) in runs {
            match counted.iter().find(|(name, _)| name == case) {
                Some((_, per_op)) => {
                    let _ = write!(
                        out,
                        " {:.2} | {:.1} | {:.1} | {:.1} |",
                        per_op.flushes, per_op.guest_fills, per_op.ring0_fills, per_op.walk_fills
                    );
                }
                None => out.push_str(" - | - | - | - |"),
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRIPT: &str = "\
74168.469112111: xtask_bench:jmp_flush: (5596b2a4a3d0)
74168.576676732:  xtask_bench:tlb_fill: (5596b28c2300) idx=4
74168.576811474:  xtask_bench:tlb_fill: (5596b28c2300) idx=6
74168.576843755:  xtask_bench:tlb_fill: (5596b28c2300) idx=2
74169.100000000: xtask_bench:jmp_flush: (5596b2a4a3d0)
74169.200000000:  xtask_bench:tlb_fill: (5596b28c2300) idx=6
74169.300000000:  xtask_bench:tlb_fill: (5596b28c2300) idx=3
74170.000000000:  xtask_bench:tlb_fill: (5596b28c2300) idx=2
74170.000000001:  other:event: (1)
";

    fn window(case: &str, from: f64, to: f64) -> Window {
        Window {
            case: case.into(),
            from,
            to,
        }
    }

    #[test]
    fn events_are_counted_into_their_windows_by_kind() {
        let windows = [window("a", 74168.0, 74168.6), window("b", 74168.6, 74169.5)];
        let counts = count(SCRIPT, &windows);
        assert_eq!(
            counts,
            vec![
                Counts {
                    flushes: 1,
                    guest_fills: 1,
                    ring0_fills: 1,
                    walk_fills: 1
                },
                Counts {
                    flushes: 1,
                    guest_fills: 1,
                    ring0_fills: 0,
                    walk_fills: 1
                },
            ]
        );
        let per_op = counts[0].per_op(2).unwrap();
        assert_eq!(per_op.flushes, 0.5);
        assert_eq!(per_op.guest_fills, 0.5);
        assert_eq!(counts[0].per_op(0), None);
    }

    #[test]
    fn the_table_has_a_row_per_case_and_dashes_where_uncounted() {
        let per_op = PerOp {
            flushes: 2.0,
            guest_fills: 11.5,
            ring0_fills: 10.0,
            walk_fills: 12.34,
        };
        let text = markdown(
            &["syscall_roundtrip", "floor_gp"],
            &[
                ("ours".into(), vec![("syscall_roundtrip".into(), per_op)]),
                ("xen".into(), vec![]),
            ],
        );
        assert!(
            text.contains("| `syscall_roundtrip` | 2.00 | 11.5 | 10.0 | 12.3 | - | - | - | - |")
        );
        assert!(text.contains("| `floor_gp` | - | - | - | - | - | - | - | - |"));
    }

    #[test]
    fn the_monotonic_clock_moves_forward() {
        let first = monotonic_clock();
        let second = monotonic_clock();
        assert!(first > 0.0 && second >= first);
    }
}
