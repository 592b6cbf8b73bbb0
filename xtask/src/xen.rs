//! Getting the real Xen 4.17 hypervisor image, the reference the guest kernel is tested on.
//!
//! Debian ships Xen 4.17 in `xen-hypervisor-4.17-amd64` as `boot/xen-4.17-amd64.gz`, a
//! gzip-compressed 32-bit multiboot ELF that QEMU boots with `-kernel`. xtask downloads the
//! package (without installing it), extracts it under `target/xen/`, and keeps the
//! decompressed image as `target/xen/xen-4.17.bin`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};

use crate::prereq::{Apt, is_root};
use crate::workspace::Workspace;

/// The Debian package holding the Xen image.
pub const XEN_PACKAGE: &str = "xen-hypervisor-4.17-amd64";
/// The compressed image's path inside the package.
const IMAGE_IN_PACKAGE: &str = "boot/xen-4.17-amd64.gz";
/// The decompressed image's file name under `target/xen/`.
const IMAGE_NAME: &str = "xen-4.17.bin";

/// Xen's command line for test runs: console on the first serial port, all messages.
pub const XEN_CMDLINE: &str = "console=com1 loglvl=all guest_loglvl=all";

/// Xen needs more memory than our hypervisor; runs get at least this much.
pub const XEN_MIN_MEMORY_MIB: u64 = 512;

/// Where the Xen image lives (whether or not it exists yet).
pub fn image_path(workspace: &Workspace) -> PathBuf {
    workspace.xen_dir().join(IMAGE_NAME)
}

/// Returns the Xen image, downloading and extracting it first if needed.
pub fn ensure_image(workspace: &Workspace, apt: &mut Apt) -> Result<PathBuf> {
    let image = image_path(workspace);
    if image.is_file() {
        return Ok(image);
    }
    let dir = workspace.xen_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    println!(
        "xtask: fetching Xen 4.17 ({XEN_PACKAGE}) into {}",
        workspace.display(&dir)
    );
    if !apt_download(&dir)? {
        if !Apt::can_install() {
            bail!(
                "could not download {XEN_PACKAGE}. As root, run:\n    apt-get update\n    \
                 cd {dir} && apt-get download {XEN_PACKAGE} && dpkg -x {XEN_PACKAGE}_*.deb \
                 extracted && zcat extracted/{IMAGE_IN_PACKAGE} > {IMAGE_NAME}",
                dir = dir.display()
            );
        }
        apt.update()?;
        ensure!(
            apt_download(&dir)?,
            "`apt-get download {XEN_PACKAGE}` failed"
        );
    }
    let package = find_package(&dir)?;
    let extracted = dir.join("extracted");
    let status = Command::new("dpkg")
        .arg("-x")
        .arg(&package)
        .arg(&extracted)
        .status()
        .context("running dpkg -x")?;
    ensure!(
        status.success(),
        "`dpkg -x {}` failed ({status})",
        package.display()
    );
    let compressed = extracted.join(IMAGE_IN_PACKAGE);
    ensure!(
        compressed.is_file(),
        "{XEN_PACKAGE} has no {IMAGE_IN_PACKAGE}"
    );
    decompress(&compressed, &image)?;
    Ok(image)
}

/// `apt-get download` in `dir`; `false` if it failed (typically: no package lists yet).
fn apt_download(dir: &Path) -> Result<bool> {
    let mut command = Command::new("apt-get");
    if is_root() {
        // apt's sandbox user cannot write into target/; root downloads directly instead
        // of warning about it.
        command.args(["-o", "APT::Sandbox::User=root"]);
    }
    let status = command
        .args(["download", XEN_PACKAGE])
        .current_dir(dir)
        .status()
        .context("running apt-get download (is this a Debian system?)")?;
    Ok(status.success())
}

/// The newest downloaded `.deb` of [`XEN_PACKAGE`] in `dir`.
fn find_package(dir: &Path) -> Result<PathBuf> {
    let prefix = format!("{XEN_PACKAGE}_");
    let mut debs: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with(&prefix) && name.ends_with(".deb"))
        })
        .collect();
    debs.sort();
    debs.pop()
        .with_context(|| format!("no {prefix}*.deb in {}", dir.display()))
}

/// `zcat compressed > image`, through a temporary file so a failure leaves no image.
fn decompress(compressed: &Path, image: &Path) -> Result<()> {
    let partial = image.with_extension("partial");
    let output = File::create(&partial)?;
    let status = Command::new("gzip")
        .arg("-dc")
        .arg(compressed)
        .stdout(output)
        .status()
        .context("running gzip")?;
    ensure!(
        status.success(),
        "`gzip -dc {}` failed ({status})",
        compressed.display()
    );
    let head = std::fs::read(&partial)?;
    ensure!(
        head.starts_with(b"\x7fELF"),
        "{} is not an ELF image",
        partial.display()
    );
    std::fs::rename(&partial, image)?;
    Ok(())
}
