//! `cargo xtask`: the one driver that builds, runs and tests the workspace.
//!
//! Local work and CI use the same three commands: `build` compiles the kernels, `run` boots
//! one scenario (a TOML manifest in `xtask/scenarios/`) in QEMU on our hypervisor or on
//! real Xen, and `test` runs the host checks and every scenario, then writes a report.
//! docs/xtask.md describes the manifest format, the exit protocol and the report.

mod bench;
mod bench_budget;
mod bench_cases;
mod bench_chart;
mod bench_footprint;
mod bench_parse;
mod bench_profile;
mod bench_report;
mod bench_tlb;
mod build;
mod checks;
mod demangle;
mod image_check;
mod manifest;
mod outcome;
mod pack;
mod prereq;
mod qemu;
mod report;
mod run;
mod sse_check;
mod test;
mod workspace;
mod x87_check;
mod xen;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::outcome::FAILED_RUN_EXIT;
use crate::workspace::Workspace;

/// Build, run and test the paravirtualizing microhypervisor.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build the hypervisor and the guest kernel.
    Build(build::Args),
    /// Boot one scenario in QEMU, streaming its serial console; exit with its status.
    Run(run::Args),
    /// Host checks, then every scenario on every hypervisor it lists; write a report.
    Test(test::Args),
    /// PV vs trap-and-emulate, ours vs Xen 4.17, under -icount and TCG; write a report.
    Bench(bench::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let workspace = Workspace::locate();
    let result = match cli.command {
        Command::Build(args) => build::main(&workspace, &args).map(|()| ExitCode::SUCCESS),
        Command::Run(args) => run::main(&workspace, &args).map(|o| ExitCode::from(o.exit_code())),
        Command::Test(args) => test::main(&workspace, &args),
        Command::Bench(args) => bench::main(&workspace, &args),
    };
    result.unwrap_or_else(|error| {
        eprintln!("xtask: error: {error:#}");
        ExitCode::from(FAILED_RUN_EXIT)
    })
}
