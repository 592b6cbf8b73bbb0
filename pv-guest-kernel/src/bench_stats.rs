//! The benchmark's arithmetic: how many times each case runs, and how batch timings
//! become the per-operation median, minimum and maximum the result lines carry.
//!
//! A case runs `warmup` iterations untimed, then `batches` timed batches of `per_batch`
//! iterations each (`rdtsc` around every batch). One batch total, minus the cost of the
//! same loop with an empty body (the baseline, measured the same way), divided by the
//! operations in the batch, is one sample. Under QEMU's `-icount shift=0` a TSC tick is
//! one guest instruction; under plain TCG it is a host TSC tick.

use core::fmt::{self, Write};

/// What a benchmark domain does (`bench`, `bench=quick` or `bench=pong`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Every case, at least 10,000 timed operations each: for TCG timings.
    Full,
    /// Every case, a few hundred operations: a fast look, and enough under `-icount`
    /// (where counts are exact).
    Quick,
    /// The other end of the interdomain ping-pong case.
    Pong,
}

impl Role {
    /// The role a command-line word asks for, if it is a benchmark word.
    pub fn from_word(word: &str) -> Option<Role> {
        match word {
            "bench" => Some(Role::Full),
            "bench=quick" => Some(Role::Quick),
            "bench=pong" => Some(Role::Pong),
            _ => None,
        }
    }
}

/// Most batches one case is timed in.
pub const MAX_BATCHES: usize = 128;

/// How a case is run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Untimed iterations first (caches, TLB, the hypervisor's first-use paths).
    pub warmup: u32,
    /// Timed batches (at most [`MAX_BATCHES`]).
    pub batches: usize,
    /// Iterations per batch.
    pub per_batch: u32,
}

impl Plan {
    /// A plan of `batches` batches of `per_batch` iterations after `warmup`.
    pub const fn new(warmup: u32, batches: usize, per_batch: u32) -> Plan {
        Plan {
            warmup,
            batches,
            per_batch,
        }
    }

    /// Timed iterations in all.
    pub const fn iterations(&self) -> u64 {
        self.batches as u64 * self.per_batch as u64
    }
}

/// Per-operation cost in tenths of a tick (fixed point, so results stay integers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Tenths(pub u64);

impl fmt::Display for Tenths {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0 / 10, self.0 % 10)
    }
}

/// The summary of one case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats {
    /// Median per-operation cost over the batches.
    pub median: Tenths,
    /// Cheapest batch, per operation.
    pub min: Tenths,
    /// Dearest batch, per operation.
    pub max: Tenths,
    /// Operations timed in all.
    pub ops: u64,
}

/// The median of `values` (sorted in place); the lower middle one for an even count.
pub fn median(values: &mut [u64]) -> u64 {
    if values.is_empty() {
        return 0;
    }
    values.sort_unstable();
    values[(values.len() - 1) / 2]
}

impl Stats {
    /// Summarises batch totals: each minus `baseline` (the empty loop's batch total,
    /// saturating at zero), divided by `ops_per_batch`.
    pub fn from_batches(totals: &mut [u64], baseline: u64, ops_per_batch: u64) -> Stats {
        let ops_per_batch = ops_per_batch.max(1);
        for total in totals.iter_mut() {
            *total = total.saturating_sub(baseline).saturating_mul(10) / ops_per_batch;
        }
        let median = median(totals);
        Stats {
            median: Tenths(median),
            min: Tenths(totals.first().copied().unwrap_or(0)),
            max: Tenths(totals.last().copied().unwrap_or(0)),
            ops: totals.len() as u64 * ops_per_batch,
        }
    }
}

/// Writes the machine-readable line of a measured case:
/// `bench: result case=<name> ops=<n> median=<x.y> min=<x.y> max=<x.y>`.
pub fn write_result(out: &mut impl Write, case: &str, stats: &Stats) -> fmt::Result {
    writeln!(
        out,
        "bench: result case={case} ops={} median={} min={} max={}",
        stats.ops, stats.median, stats.min, stats.max
    )
}

/// Writes the line of a case that cannot run here: `bench: na case=<name> why=<text>`.
pub fn write_not_available(out: &mut impl Write, case: &str, why: &str) -> fmt::Result {
    writeln!(out, "bench: na case={case} why={why}")
}

/// Writes the line of a case that failed: `bench: error case=<name> why=<text>`.
pub fn write_error(out: &mut impl Write, case: &str, why: &str) -> fmt::Result {
    writeln!(out, "bench: error case={case} why={why}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&mut []), 0);
        assert_eq!(median(&mut [5]), 5);
        assert_eq!(median(&mut [9, 1, 5]), 5);
        assert_eq!(median(&mut [4, 1, 3, 2]), 2, "lower middle");
    }

    #[test]
    fn batches_become_per_operation_tenths() {
        // Three batches of 100 operations; the empty loop costs 300 per batch.
        let mut totals = [12_300, 12_400, 20_300];
        let stats = Stats::from_batches(&mut totals, 300, 100);
        assert_eq!(stats.median, Tenths(1210));
        assert_eq!(stats.min, Tenths(1200));
        assert_eq!(stats.max, Tenths(2000));
        assert_eq!(stats.ops, 300);
        assert_eq!(stats.median.to_string(), "121.0");
        assert_eq!(Tenths(5).to_string(), "0.5");
    }

    #[test]
    fn a_batch_cheaper_than_the_baseline_counts_as_zero() {
        let mut totals = [100, 250];
        let stats = Stats::from_batches(&mut totals, 200, 10);
        assert_eq!((stats.min, stats.max), (Tenths(0), Tenths(50)));
    }

    #[test]
    fn lines() {
        let mut out = String::new();
        let stats = Stats {
            median: Tenths(1234),
            min: Tenths(1200),
            max: Tenths(1300),
            ops: 10_000,
        };
        write_result(&mut out, "null_hypercall", &stats).unwrap();
        write_not_available(&mut out, "invlpg_trap", "Xen reflects #GP").unwrap();
        write_error(&mut out, "x", "refused").unwrap();
        assert_eq!(
            out,
            "bench: result case=null_hypercall ops=10000 median=123.4 min=120.0 max=130.0\n\
             bench: na case=invlpg_trap why=Xen reflects #GP\n\
             bench: error case=x why=refused\n"
        );
        assert_eq!(Plan::new(10, 100, 100).iterations(), 10_000);
        assert_eq!(Role::from_word("bench"), Some(Role::Full));
        assert_eq!(Role::from_word("bench=pong"), Some(Role::Pong));
        assert_eq!(Role::from_word("benchmark"), None);
    }
}
