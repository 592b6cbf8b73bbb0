//! The regression guard of `cargo xtask test`: the PV cases' instruction counts on our
//! hypervisor under `-icount shift=0` (exactly repeatable) against the budgets in
//! `xtask/bench-budgets.toml`, where every budget carries its reason.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::bench_parse::RunLines;

/// The budgets file, relative to the repository root.
pub const BUDGETS_FILE: &str = "xtask/bench-budgets.toml";

/// One case's budget.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Most instructions per operation (the median) the case may take.
    pub max_instructions: f64,
    /// Why this number: what it was measured at, and what changed it last.
    pub reason: String,
}

/// `xtask/bench-budgets.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budgets {
    /// Budgets by case name.
    pub budget: BTreeMap<String, Budget>,
}

impl Budgets {
    /// Parses the file's text; every budget needs a reason and a known case.
    pub fn parse(text: &str) -> Result<Budgets> {
        let budgets: Budgets = toml::from_str(text).context("parsing the budgets")?;
        for (name, budget) in &budgets.budget {
            if crate::bench_cases::find(name).is_none() {
                bail!("budget for unknown case `{name}`");
            }
            if budget.reason.trim().is_empty() {
                bail!("budget for `{name}` has no reason");
            }
            if budget.max_instructions.is_nan() || budget.max_instructions <= 0.0 {
                bail!("budget for `{name}` must be positive");
            }
        }
        Ok(budgets)
    }

    /// Loads `xtask/bench-budgets.toml` from the repository at `root`.
    pub fn load(root: &Path) -> Result<Budgets> {
        let path = root.join(BUDGETS_FILE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        Budgets::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    /// Checks a run's results; returns one line per budget, and whether all held.
    pub fn check(&self, run: &RunLines) -> (Vec<String>, bool) {
        let mut lines = Vec::new();
        let mut ok = true;
        for (name, budget) in &self.budget {
            let line = match run.results.get(name) {
                Some(m) if m.median <= budget.max_instructions => format!(
                    "ok       {name}: {} instructions (budget {})",
                    m.median, budget.max_instructions
                ),
                Some(m) => {
                    ok = false;
                    format!(
                        "OVER     {name}: {} instructions, budget {} ({})",
                        m.median, budget.max_instructions, budget.reason
                    )
                }
                None => {
                    ok = false;
                    let why = run
                        .errors
                        .get(name)
                        .or_else(|| run.unavailable.get(name))
                        .map_or("no result line", String::as_str);
                    format!("MISSING  {name}: {why}")
                }
            };
            lines.push(line);
        }
        (lines, ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_need_reasons_and_known_cases() {
        let good = "[budget.null_hypercall]\nmax_instructions = 310\nreason = \"measured 308\"\n";
        assert_eq!(Budgets::parse(good).unwrap().budget.len(), 1);
        assert!(Budgets::parse("[budget.nope]\nmax_instructions = 1\nreason = \"x\"\n").is_err());
        assert!(
            Budgets::parse("[budget.null_hypercall]\nmax_instructions = 1\nreason = \" \"\n")
                .is_err()
        );
        assert!(Budgets::parse("[budget.null_hypercall]\nmax_instructions = 1\n").is_err());
        assert!(
            Budgets::parse("[budget.null_hypercall]\nmax_instructions = 0\nreason = \"x\"\n")
                .is_err()
        );
    }

    #[test]
    fn checks_over_missing_and_within() {
        let budgets = Budgets::parse(
            "[budget.null_hypercall]\nmax_instructions = 300\nreason = \"r\"\n\
             [budget.new_baseptr]\nmax_instructions = 200\nreason = \"r\"\n\
             [budget.evtchn_send]\nmax_instructions = 200\nreason = \"r\"\n",
        )
        .unwrap();
        let run = RunLines::parse(
            "bench: result case=null_hypercall ops=1 median=300.0 min=1 max=1\n\
             bench: result case=new_baseptr ops=1 median=200.5 min=1 max=1\n",
        );
        let (lines, ok) = budgets.check(&run);
        assert!(!ok);
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("ok       null_hypercall"))
        );
        assert!(lines.iter().any(|l| l.starts_with("OVER     new_baseptr")));
        assert!(lines.iter().any(|l| l.starts_with("MISSING  evtchn_send")));
    }

    #[test]
    fn the_shipped_budgets_parse() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let budgets = Budgets::load(root).unwrap();
        for name in budgets.budget.keys() {
            let case = crate::bench_cases::find(name).unwrap();
            assert_ne!(
                case.kind,
                crate::bench_cases::Kind::Trap,
                "{name}: PV cases only"
            );
        }
    }
}
