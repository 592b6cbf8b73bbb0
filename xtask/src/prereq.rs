//! Host prerequisites: QEMU, Xen's public headers, and installing them with apt.
//!
//! CI runs on a fresh machine as root, so xtask installs what it needs itself (Debian
//! packages); anyone else gets the exact command to run. `apt-get update` runs at most once
//! per xtask invocation, and only when something has to be fetched.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::qemu::QEMU;
use crate::workspace::find_in_path;

/// The Debian package that provides `qemu-system-x86_64`.
pub const QEMU_PACKAGE: &str = "qemu-system-x86";
/// The Debian package with Xen's public headers (pv-abi's conformance test compiles them).
pub const XEN_HEADERS_PACKAGE: &str = "libxen-dev";
/// A header from [`XEN_HEADERS_PACKAGE`] whose presence shows it is installed.
pub const XEN_HEADER: &str = "/usr/include/xen/xen.h";
/// The Debian package that provides `perf` (`cargo xtask bench --profile`).
pub const PERF_PACKAGE: &str = "linux-perf";

/// Runs apt-get on behalf of xtask, refreshing its package lists at most once.
#[derive(Debug, Default)]
pub struct Apt {
    updated: bool,
}

impl Apt {
    /// Whether xtask may install packages itself: root, with apt-get present.
    pub fn can_install() -> bool {
        is_root() && find_in_path("apt-get").is_some()
    }

    /// `apt-get update`, once.
    pub fn update(&mut self) -> Result<()> {
        if !self.updated {
            run_apt(&["update"])?;
            self.updated = true;
        }
        Ok(())
    }

    /// `apt-get install -y <packages>` (after one `apt-get update`).
    pub fn install(&mut self, packages: &[&str]) -> Result<()> {
        self.update()?;
        let mut args = vec!["install", "-y", "--no-install-recommends"];
        args.extend_from_slice(packages);
        run_apt(&args)
    }
}

fn run_apt(args: &[&str]) -> Result<()> {
    println!("xtask: apt-get {}", args.join(" "));
    let status = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get")?;
    if !status.success() {
        bail!("`apt-get {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Whether this process runs as root (the owner of `/proc/self` is the effective user).
pub fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

/// Which host tools a command needs.
#[derive(Debug, Clone, Copy)]
pub struct Needs {
    /// `qemu-system-x86_64`.
    pub qemu: bool,
    /// Xen's public headers.
    pub xen_headers: bool,
    /// `perf`, the host's sampling profiler.
    pub perf: bool,
}

/// Makes sure the tools in `needs` are present, installing them if allowed.
pub fn ensure(needs: Needs, apt: &mut Apt) -> Result<()> {
    let mut missing = Vec::new();
    if needs.qemu && find_in_path(QEMU).is_none() {
        missing.push(QEMU_PACKAGE);
    }
    if needs.xen_headers && !Path::new(XEN_HEADER).is_file() {
        missing.push(XEN_HEADERS_PACKAGE);
    }
    if needs.perf && find_in_path("perf").is_none() {
        missing.push(PERF_PACKAGE);
    }
    if missing.is_empty() {
        return Ok(());
    }
    if !Apt::can_install() {
        bail!(
            "missing packages: {0}. Install them with:\n    sudo apt-get update && sudo apt-get install -y {0}",
            missing.join(" ")
        );
    }
    apt.install(&missing)?;
    if needs.qemu && find_in_path(QEMU).is_none() {
        bail!("{QEMU} is still missing after installing {QEMU_PACKAGE}");
    }
    if needs.xen_headers && !Path::new(XEN_HEADER).is_file() {
        bail!("{XEN_HEADER} is still missing after installing {XEN_HEADERS_PACKAGE}");
    }
    if needs.perf && find_in_path("perf").is_none() {
        bail!("perf is still missing after installing {PERF_PACKAGE}");
    }
    Ok(())
}
