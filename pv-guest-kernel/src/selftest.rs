//! Self-test bookkeeping: a named list of cases, one result line each, and a summary.

use core::fmt::{self, Write};

/// Why a case failed, as a short message.
pub type Failure = heapless::String<100>;

/// The result of one case.
pub type Outcome = Result<(), Failure>;

/// Builds a [`Failure`] from format arguments (truncated if too long).
pub fn failure(args: fmt::Arguments<'_>) -> Failure {
    let mut message = Failure::new();
    let _ = message.write_fmt(args);
    message
}

/// Counts results and formats their lines.
#[derive(Debug, Default)]
pub struct Tally {
    /// Cases that passed.
    pub passed: u32,
    /// Cases that failed.
    pub failed: u32,
}

impl Tally {
    /// Records `outcome` of case `name` and writes its result line to `out`.
    pub fn record(&mut self, out: &mut impl Write, name: &str, outcome: &Outcome) -> fmt::Result {
        match outcome {
            Ok(()) => {
                self.passed += 1;
                writeln!(out, "selftest {name}: ok")
            }
            Err(why) => {
                self.failed += 1;
                writeln!(out, "selftest {name}: FAILED {why}")
            }
        }
    }

    /// Writes the summary line.
    pub fn summary(&self, out: &mut impl Write) -> fmt::Result {
        writeln!(
            out,
            "selftests: {} passed, {} failed",
            self.passed, self.failed
        )
    }

    /// The exit code the kernel reports: 0 if everything passed.
    pub fn exit_code(&self) -> u32 {
        u32::from(self.failed > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_summary() {
        let mut out = String::new();
        let mut tally = Tally::default();
        tally.record(&mut out, "one", &Ok(())).unwrap();
        tally
            .record(&mut out, "two", &Err(failure(format_args!("got {}", 3))))
            .unwrap();
        tally.summary(&mut out).unwrap();
        assert_eq!(
            out,
            "selftest one: ok\nselftest two: FAILED got 3\nselftests: 1 passed, 1 failed\n"
        );
        assert_eq!(tally.exit_code(), 1);
        assert_eq!(Tally::default().exit_code(), 0);
    }
}
