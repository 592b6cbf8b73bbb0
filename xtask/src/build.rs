//! `cargo xtask build`: compile the kernel binaries with cargo.
//!
//! Kernels are ordinary binary targets of workspace packages. Which package owns a binary
//! is read from `cargo metadata`, so a manifest can name any workspace kernel binary.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::workspace::{KERNEL_TARGET, Profile, Workspace};

/// The hypervisor's binary (and package) name.
pub const HYPERVISOR_BIN: &str = "hypervisor";

/// The guest kernel's binary (and package) name.
pub const GUEST_KERNEL_BIN: &str = "pv-guest-kernel";

/// Options of `cargo xtask build`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Build with the release profile (the default).
    #[arg(long, conflicts_with = "debug")]
    release: bool,
    /// Build with the dev profile instead (`run` and `test` always use release).
    #[arg(long)]
    debug: bool,
}

/// Builds the hypervisor and the guest kernel.
pub fn main(workspace: &Workspace, args: &Args) -> Result<()> {
    let profile = if args.debug {
        Profile::Debug
    } else {
        Profile::Release
    };
    let binaries = WorkspaceBinaries::load(workspace)?;
    let paths = binaries.build(workspace, profile, &[HYPERVISOR_BIN, GUEST_KERNEL_BIN])?;
    for path in paths {
        println!("xtask: built {}", workspace.display(&path));
    }
    Ok(())
}

/// The binary targets of the workspace, by name, with the package that owns each.
#[derive(Debug)]
pub struct WorkspaceBinaries {
    package_of: BTreeMap<String, String>,
}

impl WorkspaceBinaries {
    /// Asks `cargo metadata` for the workspace's binary targets.
    pub fn load(workspace: &Workspace) -> Result<Self> {
        let output = workspace
            .cargo()
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .output()
            .context("running `cargo metadata`")?;
        if !output.status.success() {
            bail!(
                "`cargo metadata` failed:\n{}",
                String::from_utf8_lossy(&output.stderr).trim_end()
            );
        }
        let metadata: serde_json::Value =
            serde_json::from_slice(&output.stdout).context("parsing `cargo metadata` output")?;
        Ok(Self::from_metadata(&metadata))
    }

    /// Extracts binary targets from `cargo metadata --format-version 1` JSON.
    fn from_metadata(metadata: &serde_json::Value) -> Self {
        let mut package_of = BTreeMap::new();
        let packages = metadata["packages"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        for package in packages {
            let Some(package_name) = package["name"].as_str() else {
                continue;
            };
            let targets = package["targets"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            for target in targets {
                let is_bin = target["kind"]
                    .as_array()
                    .is_some_and(|kinds| kinds.iter().any(|kind| kind == "bin"));
                if let (true, Some(name)) = (is_bin, target["name"].as_str()) {
                    package_of.insert(name.to_owned(), package_name.to_owned());
                }
            }
        }
        Self { package_of }
    }

    /// Whether `name` is a binary target of the workspace.
    pub fn contains(&self, name: &str) -> bool {
        self.package_of.contains_key(name)
    }

    /// Builds `names` in one cargo invocation; returns their paths, in order.
    pub fn build(
        &self,
        workspace: &Workspace,
        profile: Profile,
        names: &[impl AsRef<str>],
    ) -> Result<Vec<PathBuf>> {
        let mut command = workspace.cargo();
        command.args(["build", "--target", KERNEL_TARGET]);
        if profile == Profile::Release {
            command.arg("--release");
        }
        let mut unique: Vec<&str> = Vec::new();
        for name in names.iter().map(AsRef::as_ref) {
            if !unique.contains(&name) {
                unique.push(name);
            }
        }
        let names = unique;
        for name in &names {
            let Some(package) = self.package_of.get(*name) else {
                bail!("no workspace package has a binary called `{name}`");
            };
            command.args(["--package", package, "--bin", name]);
        }
        println!(
            "xtask: cargo build{} {}",
            release_flag(profile),
            names.join(" ")
        );
        let status = command.status().context("running `cargo build`")?;
        if !status.success() {
            bail!("building {} failed ({status})", names.join(", "));
        }
        let paths: Vec<PathBuf> = names
            .iter()
            .map(|name| workspace.kernel_dir(profile).join(name))
            .collect();
        // A release hypervisor runs its fast path and lanes with the guest's SSE
        // registers live, and the guest kernel its kernel-mode trap handler with the
        // interrupted code's: never run one that fails the check of that (sse_check.rs).
        if profile == Profile::Release {
            for (name, target) in [
                (HYPERVISOR_BIN, &crate::sse_check::HYPERVISOR),
                (GUEST_KERNEL_BIN, &crate::sse_check::GUEST_KERNEL),
            ] {
                if let Some(at) = names.iter().position(|built| *built == name) {
                    crate::sse_check::check_binary(&paths[at], target)
                        .with_context(|| format!("the release {name} failed its SSE check"))?;
                }
            }
        }
        Ok(paths)
    }
}

fn release_flag(profile: Profile) -> &'static str {
    match profile {
        Profile::Release => " --release",
        Profile::Debug => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binaries_come_from_metadata() {
        let metadata = serde_json::json!({
            "packages": [
                { "name": "hypervisor", "targets": [
                    { "name": "hypervisor", "kind": ["lib"] },
                    { "name": "hypervisor", "kind": ["bin"] } ] },
                { "name": "pv-abi", "targets": [ { "name": "pv_abi", "kind": ["lib"] } ] },
                { "name": "guests", "targets": [ { "name": "pv-guest-kernel", "kind": ["bin"] } ] }
            ]
        });
        let binaries = WorkspaceBinaries::from_metadata(&metadata);
        assert!(binaries.contains("hypervisor"));
        assert!(binaries.contains("pv-guest-kernel"));
        assert!(!binaries.contains("pv_abi"));
        assert_eq!(binaries.package_of["pv-guest-kernel"], "guests");
    }
}
