//! Reading a benchmark run's console: the `bench: ...` lines the guest (and our
//! hypervisor's floor) print, whatever prefix the console put before them.

use std::collections::BTreeMap;

/// One measured case: per-operation TSC ticks (instructions under `-icount`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Measured {
    /// Operations timed.
    pub ops: u64,
    /// Median per operation.
    pub median: f64,
    /// Cheapest batch, per operation.
    pub min: f64,
    /// Dearest batch, per operation.
    pub max: f64,
}

/// Everything one run printed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunLines {
    /// Measured cases.
    pub results: BTreeMap<String, Measured>,
    /// Cases this hypervisor cannot do, and why.
    pub unavailable: BTreeMap<String, String>,
    /// Cases that failed, and why.
    pub errors: BTreeMap<String, String>,
    /// `bench: info key=value` lines.
    pub info: BTreeMap<String, String>,
    /// Whether the closing `bench: end` line was seen.
    pub ended: bool,
}

const MARKER: &str = "bench: ";

/// `key=value` words of `text` (values without spaces).
fn fields(text: &str) -> BTreeMap<&str, &str> {
    text.split_ascii_whitespace()
        .filter_map(|word| word.split_once('='))
        .collect()
}

/// `case=<name> why=<text to the end of the line>`.
fn case_and_reason(text: &str) -> Option<(String, String)> {
    let rest = text.strip_prefix("case=")?;
    let (name, why) = rest.split_once(" why=")?;
    Some((name.to_owned(), why.trim().to_owned()))
}

impl RunLines {
    /// Parses a whole console capture.
    pub fn parse(output: &str) -> RunLines {
        let mut lines = RunLines::default();
        for line in output.lines() {
            if let Some(at) = line.find(MARKER) {
                lines.take(line[at + MARKER.len()..].trim_end());
            }
        }
        lines
    }

    fn take(&mut self, text: &str) {
        let (kind, rest) = text.split_once(' ').unwrap_or((text, ""));
        match kind {
            "result" => {
                let f = fields(rest);
                let number = |key: &str| f.get(key).and_then(|v| v.parse::<f64>().ok());
                if let (Some(name), Some(ops), Some(median), Some(min), Some(max)) = (
                    f.get("case"),
                    f.get("ops").and_then(|v| v.parse().ok()),
                    number("median"),
                    number("min"),
                    number("max"),
                ) {
                    let measured = Measured {
                        ops,
                        median,
                        min,
                        max,
                    };
                    self.results.insert((*name).to_owned(), measured);
                }
            }
            "na" => {
                if let Some((name, why)) = case_and_reason(rest) {
                    self.unavailable.insert(name, why);
                }
            }
            "error" => {
                if let Some((name, why)) = case_and_reason(rest) {
                    self.errors.insert(name, why);
                }
            }
            "info" => {
                if let Some((key, value)) = rest.split_once('=') {
                    self.info.insert(key.to_owned(), value.trim().to_owned());
                }
            }
            "end" => self.ended = true,
            _ => {}
        }
    }

    /// An `info` value as a number.
    pub fn info_number(&self, key: &str) -> Option<u64> {
        self.info.get(key).and_then(|v| v.parse().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_kind_of_line_behind_any_prefix() {
        let output = "\
(hv) [INFO ] bench: result case=floor_syscall ops=21000 median=2.0 min=2.0 max=2.0\r
(d1 bench) bench: info hypervisor=ours\r
(d1 bench) bench: info tsc_at_banner=145345887\r
(d1 bench) bench: result case=null_hypercall ops=200 median=307.8 min=307.8 max=310.0\r
bench: na case=invlpg_trap why=Xen 4.17 does not emulate invlpg (it reflects #GP)
bench: error case=pte512_multicall why=multicall refused
(d1 bench) pv-guest: benchmark (Quick)
bench: result case=broken ops=x median=1 min=1 max=1
bench: end errors=1 tsc=5
";
        let lines = RunLines::parse(output);
        assert_eq!(lines.results.len(), 2);
        assert_eq!(
            lines.results["null_hypercall"],
            Measured {
                ops: 200,
                median: 307.8,
                min: 307.8,
                max: 310.0
            }
        );
        assert_eq!(lines.results["floor_syscall"].median, 2.0);
        assert_eq!(
            lines.unavailable["invlpg_trap"],
            "Xen 4.17 does not emulate invlpg (it reflects #GP)"
        );
        assert_eq!(lines.errors["pte512_multicall"], "multicall refused");
        assert_eq!(lines.info["hypervisor"], "ours");
        assert_eq!(lines.info_number("tsc_at_banner"), Some(145_345_887));
        assert!(lines.ended);
        assert!(!RunLines::parse("bench: result").ended);
    }
}
