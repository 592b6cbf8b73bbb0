//! Scenario manifests: one TOML file per scenario in `xtask/scenarios/`.
//!
//! A manifest says which domains to boot (packed into the boot image by [`crate::pack`]),
//! how to start the hypervisor, and what `cargo xtask test` expects to see. Unknown keys
//! are errors, and [`Manifest::validate`] checks every limit the boot image and Xen impose,
//! so a bad manifest fails with a message instead of a confusing boot.
//! The format is documented in docs/xtask.md.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use hypervisor::bootimage::{self, MAX_CMDLINE_LEN, MAX_DOMAINS, MAX_NAME_LEN, MAX_WEIGHT};
use serde::Deserialize;

/// Memory QEMU gives our hypervisor when the manifest does not say.
pub const DEFAULT_HYPERVISOR_MEMORY_MIB: u64 = 256;

/// Scenario timeout when the manifest does not say.
pub const DEFAULT_TIMEOUT_SECS: u64 = 60;

/// One scenario: a manifest and the name of its file.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The file name without `.toml`; names the boot image, logs and report entries.
    pub name: String,
    /// Its validated contents.
    pub manifest: Manifest,
}

impl Scenario {
    /// Reads, parses and validates the manifest at `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let name = path
            .file_stem()
            .and_then(|stem| stem.to_str())
            .filter(|stem| is_simple_name(stem))
            .with_context(|| {
                format!(
                    "{}: file name must be letters, digits, `-`, `_`",
                    path.display()
                )
            })?
            .to_owned();
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let manifest = Manifest::parse(&text).with_context(|| format!("in {}", path.display()))?;
        Ok(Self { name, manifest })
    }

    /// Every `*.toml` file in `dir`, sorted by name.
    pub fn files_in(dir: &Path) -> Result<Vec<PathBuf>> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
            let path = entry?.path();
            if path.extension().is_some_and(|ext| ext == "toml") {
                files.push(path);
            }
        }
        files.sort();
        Ok(files)
    }
}

/// A scenario manifest, as written in TOML.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// One sentence: what the scenario shows.
    pub description: String,
    /// How QEMU starts our hypervisor.
    #[serde(default)]
    pub hypervisor: HypervisorConfig,
    /// The domains, in boot order (domain IDs 1, 2, ... on our hypervisor).
    #[serde(rename = "domain", default)]
    pub domains: Vec<DomainConfig>,
    /// What `cargo xtask test` checks; without it the scenario is only for `run`.
    pub test: Option<TestConfig>,
}

/// The `[hypervisor]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HypervisorConfig {
    /// Command line for our hypervisor (QEMU `-append`).
    #[serde(default)]
    pub cmdline: String,
    /// Machine memory (QEMU `-m`) in MiB.
    #[serde(default = "default_hypervisor_memory")]
    pub memory_mib: u64,
    /// Typed on the serial console when QEMU starts (e.g. debug keys); default none.
    #[serde(default)]
    pub console_input: String,
    /// What the guests' time counts: the host's (default) or guest instructions.
    #[serde(default)]
    pub clock: Clock,
}

/// The machine's clock (`[hypervisor] clock`).
///
/// Scenarios that measure CPU shares or timer lateness take `instructions`: under plain
/// TCG the TSC and timers follow the host, so a host that stalls QEMU for 20 ms charges
/// those 20 ms to whichever domain was running, and a loaded CI machine fails a correct
/// scheduler. Under `-icount` time is the guest's own instruction count: the same run
/// gives the same numbers on any host, only slower.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Clock {
    /// Plain TCG: the TSC and timers follow the host's clock.
    #[default]
    Host,
    /// `-icount shift=0,sleep=off -rtc clock=vm`: one nanosecond per guest instruction.
    Instructions,
}

impl Default for HypervisorConfig {
    fn default() -> Self {
        Self {
            cmdline: String::new(),
            memory_mib: DEFAULT_HYPERVISOR_MEMORY_MIB,
            console_input: String::new(),
            clock: Clock::Host,
        }
    }
}

/// One `[[domain]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainConfig {
    /// Unique, at most 31 bytes of letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// A workspace binary name, or a path relative to the repository root.
    pub kernel: String,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Virtual CPUs.
    #[serde(default = "one")]
    pub vcpus: u32,
    /// Kernel command line (Xen's `start_info.cmd_line`), at most 1023 bytes.
    #[serde(default)]
    pub cmdline: String,
    /// Scheduling weight, 1..=65535.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// CPU cap in percent of one CPU; 0 = none.
    #[serde(default)]
    pub cap: u32,
    /// Whether the domain is privileged.
    #[serde(default)]
    pub privileged: bool,
}

/// The `[test]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestConfig {
    /// The hypervisors `cargo xtask test` runs this scenario on.
    pub hypervisors: Vec<Hypervisor>,
    /// Wall-clock limit for one run.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// How the run must end.
    #[serde(default)]
    pub expect_exit: ExpectExit,
    /// Substrings that must each appear in the serial output.
    #[serde(default)]
    pub expect: Vec<String>,
    /// Substrings that must not appear in the serial output.
    #[serde(default)]
    pub reject: Vec<String>,
}

/// Which hypervisor a run boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Hypervisor {
    /// This project's hypervisor.
    Ours,
    /// Debian's Xen 4.17, as a reference for the guest kernel.
    Xen,
}

impl fmt::Display for Hypervisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ours => "ours",
            Self::Xen => "xen",
        })
    }
}

/// How a run must end for its exit check to pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExpectExit {
    /// Every domain powered off with code 0.
    #[default]
    Clean,
    /// The run finished, and some domain crashed or exited non-zero.
    Crashed,
}

impl fmt::Display for ExpectExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Clean => "clean",
            Self::Crashed => "crashed",
        })
    }
}

fn default_hypervisor_memory() -> u64 {
    DEFAULT_HYPERVISOR_MEMORY_MIB
}

fn default_timeout() -> u64 {
    DEFAULT_TIMEOUT_SECS
}

fn default_weight() -> u32 {
    bootimage::DEFAULT_WEIGHT
}

fn one() -> u32 {
    1
}

impl Manifest {
    /// Parses and validates a manifest.
    pub fn parse(text: &str) -> Result<Self> {
        let manifest: Self = toml::from_str(text)?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// Checks every rule; reports all violations at once.
    pub fn validate(&self) -> Result<()> {
        let mut problems = Vec::new();
        if self.description.trim().is_empty() {
            problems.push("`description` is empty".to_owned());
        }
        if self.hypervisor.memory_mib == 0 {
            problems.push("[hypervisor] memory_mib must be > 0".to_owned());
        }
        if self.domains.is_empty() {
            problems.push("no [[domain]]".to_owned());
        }
        if self.domains.len() > MAX_DOMAINS {
            problems.push(format!(
                "{} domains; at most {MAX_DOMAINS}",
                self.domains.len()
            ));
        }
        for (index, domain) in self.domains.iter().enumerate() {
            let duplicate = self.domains[..index]
                .iter()
                .any(|other| other.name == domain.name);
            if duplicate {
                problems.push(format!("domain name `{}` used twice", domain.name));
            }
            domain.validate(&mut problems);
        }
        let total: u64 = self
            .domains
            .iter()
            .map(|d| d.memory_mib)
            .fold(0, u64::saturating_add);
        if total >= self.hypervisor.memory_mib {
            problems.push(format!(
                "domains need {total} MiB in all; the machine has {} MiB ([hypervisor] memory_mib)",
                self.hypervisor.memory_mib
            ));
        }
        if let Some(test) = &self.test {
            test.validate(&mut problems);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            bail!("invalid manifest:\n  - {}", problems.join("\n  - "))
        }
    }
}

impl DomainConfig {
    fn validate(&self, problems: &mut Vec<String>) {
        let name = &self.name;
        if !is_simple_name(name) || name.len() > MAX_NAME_LEN {
            problems.push(format!(
                "domain name `{name}`: use 1..={MAX_NAME_LEN} letters, digits, `-`, `_`, `.`"
            ));
        }
        if self.kernel.trim().is_empty() {
            problems.push(format!("domain `{name}`: `kernel` is empty"));
        }
        if self.memory_mib == 0 || self.memory_mib.checked_mul(1024).is_none() {
            problems.push(format!(
                "domain `{name}`: memory_mib must be > 0 (and sane)"
            ));
        }
        if self.vcpus == 0 {
            problems.push(format!("domain `{name}`: vcpus must be >= 1"));
        }
        if self.cmdline.len() > MAX_CMDLINE_LEN {
            problems.push(format!(
                "domain `{name}`: cmdline is {} bytes; at most {MAX_CMDLINE_LEN}",
                self.cmdline.len()
            ));
        }
        if self.cmdline.contains('\0') {
            problems.push(format!("domain `{name}`: cmdline contains a NUL byte"));
        }
        if !(1..=MAX_WEIGHT).contains(&self.weight) {
            problems.push(format!("domain `{name}`: weight must be 1..={MAX_WEIGHT}"));
        }
        if u64::from(self.cap) > u64::from(self.vcpus) * 100 {
            problems.push(format!("domain `{name}`: cap above 100% per vCPU"));
        }
    }

    /// Memory in KiB, as the boot image stores it.
    pub fn memory_kib(&self) -> u64 {
        self.memory_mib.saturating_mul(1024)
    }
}

impl TestConfig {
    fn validate(&self, problems: &mut Vec<String>) {
        if self.hypervisors.is_empty() {
            problems.push(
                "[test] hypervisors is empty (drop [test] to make a run-only scenario)".to_owned(),
            );
        }
        if self.timeout_secs == 0 {
            problems.push("[test] timeout_secs must be > 0".to_owned());
        }
        if self.expect.iter().chain(&self.reject).any(|s| s.is_empty()) {
            problems.push("[test] expect/reject entries must not be empty".to_owned());
        }
    }
}

/// Letters, digits, `-`, `_`, `.`; not empty. Used for domain and scenario names, which
/// appear in console prefixes and file names.
fn is_simple_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEMO: &str = r#"
        description = "demo"
        [hypervisor]
        cmdline = "loglvl=info"
        memory_mib = 256
        [[domain]]
        name = "demo"
        kernel = "pv-guest-kernel"
        memory_mib = 32
        [test]
        hypervisors = ["ours", "xen"]
        expect = ["hello"]
    "#;

    #[test]
    fn parses_with_defaults() {
        let manifest = Manifest::parse(DEMO).unwrap();
        let domain = &manifest.domains[0];
        assert_eq!((domain.vcpus, domain.weight, domain.cap), (1, 256, 0));
        assert!(!domain.privileged);
        assert_eq!(domain.cmdline, "");
        assert_eq!(manifest.hypervisor.clock, Clock::Host);
        let test = manifest.test.unwrap();
        assert_eq!(test.hypervisors, [Hypervisor::Ours, Hypervisor::Xen]);
        assert_eq!(test.expect_exit, ExpectExit::Clean);
        assert_eq!(test.timeout_secs, DEFAULT_TIMEOUT_SECS);
    }

    #[test]
    fn unknown_keys_are_errors() {
        let text = DEMO.replace("memory_mib = 32", "memory_mib = 32\nvcpu = 1");
        assert!(
            Manifest::parse(&text)
                .unwrap_err()
                .to_string()
                .contains("vcpu")
        );
        let text = DEMO.replace("[test]", "[test]\nexpected_exit = \"clean\"");
        assert!(Manifest::parse(&text).is_err());
    }

    #[test]
    fn rejects_bad_values() {
        let cases = [
            ("memory_mib = 32", "memory_mib = 0", "memory_mib"),
            (
                "memory_mib = 32",
                "memory_mib = 300",
                "domains need 300 MiB",
            ),
            ("name = \"demo\"", "name = \"a b\"", "domain name"),
            (
                "name = \"demo\"",
                &format!("name = \"{}\"", "x".repeat(32)),
                "domain name",
            ),
            ("cmdline = \"loglvl=info\"", "cmdline = 1", "invalid type"),
            ("[\"ours\", \"xen\"]", "[\"qemu\"]", "unknown variant"),
            (
                "memory_mib = 256",
                "memory_mib = 256\nclock = \"icount\"",
                "unknown variant `icount`",
            ),
            (
                "kernel = \"pv-guest-kernel\"",
                "kernel = \"\"",
                "`kernel` is empty",
            ),
        ];
        for (from, to, message) in cases {
            let text = DEMO.replace(from, to);
            let error = format!("{:#}", Manifest::parse(&text).unwrap_err());
            assert!(error.contains(message), "{to}: {error}");
        }
        let long = format!("{DEMO}\n").replace(
            "memory_mib = 32",
            &format!("memory_mib = 32\ncmdline = \"{}\"", "x".repeat(1024)),
        );
        assert!(format!("{:#}", Manifest::parse(&long).unwrap_err()).contains("1024 bytes"));
        let twice = DEMO.replace(
            "[test]",
            "[[domain]]\nname = \"demo\"\nkernel = \"k\"\nmemory_mib = 4\n[test]",
        );
        assert!(format!("{:#}", Manifest::parse(&twice).unwrap_err()).contains("used twice"));
    }

    #[test]
    fn the_clock_can_count_instructions() {
        let text = DEMO.replace(
            "memory_mib = 256",
            "memory_mib = 256\nclock = \"instructions\"",
        );
        let manifest = Manifest::parse(&text).unwrap();
        assert_eq!(manifest.hypervisor.clock, Clock::Instructions);
    }

    #[test]
    fn shipped_scenarios_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let files = Scenario::files_in(&dir).unwrap();
        assert!(files.iter().any(|f| f.ends_with("demo.toml")));
        for file in files {
            Scenario::load(&file).unwrap();
        }
    }
}
