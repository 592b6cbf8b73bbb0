//! `cargo xtask run`: boot one scenario in QEMU and exit with its status.
//!
//! Also the launcher `cargo xtask test` uses for each scenario run: [`launch`] packs the
//! boot image (our hypervisor) or picks dom0 (Xen), starts QEMU, watches the console and
//! returns the [`RunOutcome`] with the captured output.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

use crate::build::{HYPERVISOR_BIN, WorkspaceBinaries};
use crate::manifest::{Clock, DEFAULT_TIMEOUT_SECS, Hypervisor, Scenario};
use crate::outcome::{RunOutcome, XenConsole};
use crate::pack::{self, DomainImage};
use crate::prereq::{self, Apt, Needs};
use crate::qemu::{self, Accel, Capture, Sinks, UntilExit};
use crate::workspace::{Profile, Workspace};
use crate::xen;

/// Options of `cargo xtask run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Scenario manifest: a path, or a scenario name from xtask/scenarios/.
    #[arg(long, default_value = "xtask/scenarios/demo.toml")]
    config: PathBuf,
    /// Which hypervisor to boot.
    #[arg(long, value_enum, default_value_t = Hypervisor::Ours)]
    hypervisor: Hypervisor,
    /// QEMU accelerator. TCG is the default; KVM on this project's machines is kvm-pvm,
    /// which cannot run the hypervisor (see docs/xtask.md).
    #[arg(long, value_enum, default_value_t = Accel::Tcg)]
    accel: Accel,
    /// Time limit in seconds (default: the manifest's [test] timeout_secs, else 60).
    #[arg(long)]
    timeout: Option<u64>,
}

/// Builds, packs and boots the scenario; returns how the run ended.
pub fn main(workspace: &Workspace, args: &Args) -> Result<RunOutcome> {
    let path = find_manifest(workspace, &args.config)?;
    let scenario = Scenario::load(&path)?;
    let mut apt = Apt::default();
    prereq::ensure(
        Needs {
            qemu: true,
            xen_headers: false,
            perf: false,
        },
        &mut apt,
    )?;
    let xen_image = match args.hypervisor {
        Hypervisor::Xen => Some(xen::ensure_image(workspace, &mut apt)?),
        Hypervisor::Ours => None,
    };
    let binaries = WorkspaceBinaries::load(workspace)?;
    let needed = binaries_needed(&binaries, &[(&scenario, args.hypervisor)]);
    binaries.build(workspace, Profile::Release, &needed)?;

    let timeout = args.timeout.unwrap_or_else(|| {
        scenario
            .manifest
            .test
            .as_ref()
            .map_or(DEFAULT_TIMEOUT_SECS, |test| test.timeout_secs)
    });
    let run = Run {
        scenario: &scenario,
        hypervisor: args.hypervisor,
        accel: args.accel,
        timeout: Duration::from_secs(timeout),
        echo: true,
    };
    let (outcome, capture, log) = launch(workspace, &binaries, &run, xen_image.as_deref())?;
    println!(
        "\nxtask: {} on {} ended after {:.1}s: {} (exit status {}); log in {}",
        scenario.name,
        args.hypervisor,
        capture.elapsed.as_secs_f64(),
        outcome.describe(),
        outcome.exit_code(),
        workspace.display(&log),
    );
    Ok(outcome)
}

/// Finds a manifest: a path (from the current directory or the repository root), or the
/// name of a scenario in `xtask/scenarios/`.
fn find_manifest(workspace: &Workspace, config: &Path) -> Result<PathBuf> {
    let by_name = workspace.scenario_dir().join(config).with_extension("toml");
    let candidates = [config.to_path_buf(), workspace.root.join(config), by_name];
    if let Some(found) = candidates.iter().find(|path| path.is_file()) {
        return Ok(found.clone());
    }
    let known: Vec<String> = Scenario::files_in(&workspace.scenario_dir())
        .unwrap_or_default()
        .iter()
        .filter_map(|path| {
            path.file_stem()
                .map(|stem| stem.to_string_lossy().into_owned())
        })
        .collect();
    bail!(
        "no manifest `{}` (scenarios: {})",
        config.display(),
        known.join(", ")
    )
}

/// A kernel named in a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelRef {
    /// A workspace binary, built by xtask.
    Binary(String),
    /// A file, relative to the repository root.
    File(PathBuf),
}

impl KernelRef {
    /// A workspace binary if one has that name, else a path relative to the root.
    pub fn resolve(binaries: &WorkspaceBinaries, kernel: &str) -> Self {
        if binaries.contains(kernel) {
            Self::Binary(kernel.to_owned())
        } else {
            Self::File(PathBuf::from(kernel))
        }
    }

    /// Where the kernel file is.
    pub fn path(&self, workspace: &Workspace) -> PathBuf {
        match self {
            Self::Binary(name) => workspace.kernel_dir(Profile::Release).join(name),
            Self::File(path) => workspace.root.join(path),
        }
    }
}

/// Every workspace binary that the given runs need, in a stable order.
pub fn binaries_needed(
    binaries: &WorkspaceBinaries,
    runs: &[(&Scenario, Hypervisor)],
) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (scenario, hypervisor) in runs {
        if *hypervisor == Hypervisor::Ours {
            names.push(HYPERVISOR_BIN.to_owned());
        }
        let domains = match hypervisor {
            Hypervisor::Ours => &scenario.manifest.domains[..],
            Hypervisor::Xen => &scenario.manifest.domains[..1],
        };
        for domain in domains {
            if let KernelRef::Binary(name) = KernelRef::resolve(binaries, &domain.kernel) {
                names.push(name);
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

/// One scenario run to launch.
#[derive(Debug)]
pub struct Run<'a> {
    /// The scenario.
    pub scenario: &'a Scenario,
    /// Where it runs.
    pub hypervisor: Hypervisor,
    /// QEMU's accelerator.
    pub accel: Accel,
    /// Time limit.
    pub timeout: Duration,
    /// Stream the console to the terminal.
    pub echo: bool,
}

/// Boots one run (kernels already built); returns its outcome, output and log path.
pub fn launch(
    workspace: &Workspace,
    binaries: &WorkspaceBinaries,
    run: &Run<'_>,
    xen_image: Option<&Path>,
) -> Result<(RunOutcome, Capture, PathBuf)> {
    let scenario = run.scenario;
    let manifest = &scenario.manifest;
    let log_dir = workspace.log_dir();
    std::fs::create_dir_all(&log_dir).with_context(|| format!("creating {}", log_dir.display()))?;
    let log = log_dir.join(format!("{}-{}.log", scenario.name, run.hypervisor));
    let sinks = Sinks {
        echo: run.echo,
        log: Some(&log),
        // Typed on our hypervisor's console only: Xen's console differs.
        input: match run.hypervisor {
            Hypervisor::Ours => manifest.hypervisor.console_input.as_bytes(),
            Hypervisor::Xen => &[],
        },
    };

    let (capture, outcome) = match run.hypervisor {
        Hypervisor::Ours => {
            let mut domains = Vec::new();
            for config in &manifest.domains {
                let path = KernelRef::resolve(binaries, &config.kernel).path(workspace);
                domains.push(DomainImage::load(config, &path)?);
            }
            let image_path = workspace.xtask_dir().join(format!("{}.img", scenario.name));
            std::fs::write(&image_path, pack::write(&domains)?)
                .with_context(|| format!("writing {}", image_path.display()))?;
            let mut command = qemu::our_hypervisor_command(
                &workspace.kernel_dir(Profile::Release).join(HYPERVISOR_BIN),
                &manifest.hypervisor.cmdline,
                manifest.hypervisor.memory_mib,
                &image_path,
                run.accel,
            );
            apply_clock(&mut command, manifest.hypervisor.clock, run.accel)?;
            announce(workspace, run, &command);
            let capture = qemu::run(command, run.timeout, &sinks, &mut UntilExit)?;
            let outcome = RunOutcome::from_our_hypervisor(&capture.end);
            (capture, outcome)
        }
        Hypervisor::Xen => {
            let xen_image = xen_image.context("the Xen image was not prepared")?;
            let dom0 = &manifest.domains[0];
            if manifest.domains.len() > 1 {
                println!(
                    "xtask: note: Xen runs only the first domain (`{}`) as dom0; the other {} \
                     are not started",
                    dom0.name,
                    manifest.domains.len() - 1
                );
            }
            let kernel = KernelRef::resolve(binaries, &dom0.kernel).path(workspace);
            ensure!(
                kernel.is_file(),
                "kernel {} does not exist",
                kernel.display()
            );
            let xen_cmdline = format!(
                "{} dom0_mem={m}M,max:{m}M",
                xen::XEN_CMDLINE,
                m = dom0.memory_mib
            );
            let memory = manifest.hypervisor.memory_mib.max(xen::XEN_MIN_MEMORY_MIB);
            let mut command = qemu::xen_command(
                xen_image,
                &xen_cmdline,
                memory,
                &kernel,
                &dom0.cmdline,
                run.accel,
            )?;
            apply_clock(&mut command, manifest.hypervisor.clock, run.accel)?;
            announce(workspace, run, &command);
            let mut console = XenConsole::default();
            let capture = qemu::run(command, run.timeout, &sinks, &mut console)?;
            let outcome = console.outcome(&capture.end);
            (capture, outcome)
        }
    };
    Ok((outcome, capture, log))
}

/// Adds the manifest's `clock` to a QEMU command; instruction counting needs TCG.
fn apply_clock(command: &mut std::process::Command, clock: Clock, accel: Accel) -> Result<()> {
    if clock == Clock::Instructions {
        ensure!(
            accel == Accel::Tcg,
            "this scenario's clock counts guest instructions (-icount), which QEMU allows \
             only with `--accel tcg`"
        );
        qemu::count_instructions(command);
    }
    Ok(())
}

fn announce(workspace: &Workspace, run: &Run<'_>, command: &std::process::Command) {
    println!(
        "xtask: {} on {} (timeout {}s): {}",
        run.scenario.name,
        run.hypervisor,
        run.timeout.as_secs(),
        qemu::describe(command, workspace)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(command: &std::process::Command) -> String {
        let args: Vec<_> = command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        args.join(" ")
    }

    #[test]
    fn the_instruction_clock_adds_icount_and_needs_tcg() {
        let mut host = std::process::Command::new("qemu");
        apply_clock(&mut host, Clock::Host, Accel::Kvm).unwrap();
        assert_eq!(args(&host), "");

        let mut counted = std::process::Command::new("qemu");
        apply_clock(&mut counted, Clock::Instructions, Accel::Tcg).unwrap();
        assert_eq!(args(&counted), "-icount shift=0,sleep=off -rtc clock=vm");

        let mut kvm = std::process::Command::new("qemu");
        let error = apply_clock(&mut kvm, Clock::Instructions, Accel::Kvm).unwrap_err();
        assert!(error.to_string().contains("--accel tcg"), "{error}");
    }
}
