//! Where things are: the repository root, the cargo target directory, kernel binaries.
//!
//! Every path xtask reads or writes is derived here, so that `target/xtask/...`,
//! `target/xen/...` and the kernel output directory are spelled once.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The target triple the kernels are built for. No bare-metal target can be installed on
/// the project's machines, so kernels are freestanding binaries for the host triple (see
/// docs/architecture.md); `.cargo/config.toml` names the same triple.
pub const KERNEL_TARGET: &str = "x86_64-unknown-linux-gnu";

/// The cargo profile kernels are built with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// `--release` (the default for kernels: debug builds are slow under TCG).
    Release,
    /// The `dev` profile.
    Debug,
}

impl Profile {
    /// The name of the output directory under `target/<triple>/`.
    fn dir_name(self) -> &'static str {
        match self {
            Self::Release => "release",
            Self::Debug => "debug",
        }
    }
}

/// The workspace xtask is driving.
#[derive(Clone, Debug)]
pub struct Workspace {
    /// The repository root (the directory of the workspace `Cargo.toml`).
    pub root: PathBuf,
    /// cargo's target directory: `$CARGO_TARGET_DIR` if set, else `<root>/target`.
    pub target_dir: PathBuf,
    cargo: OsString,
}

impl Workspace {
    /// Finds the workspace from xtask's own location.
    pub fn locate() -> Self {
        let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf();
        let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
            Some(dir) if !dir.is_empty() => root.join(dir),
            _ => root.join("target"),
        };
        // `cargo xtask` runs us through cargo, which tells us which cargo it is.
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        Self {
            root,
            target_dir,
            cargo,
        }
    }

    /// A `cargo` command running in the repository root.
    pub fn cargo(&self) -> Command {
        let mut command = Command::new(&self.cargo);
        command.current_dir(&self.root);
        command
    }

    /// Where cargo puts kernel binaries of `profile`.
    pub fn kernel_dir(&self, profile: Profile) -> PathBuf {
        self.target_dir.join(KERNEL_TARGET).join(profile.dir_name())
    }

    /// xtask's own output: boot images, logs, the test report.
    pub fn xtask_dir(&self) -> PathBuf {
        self.target_dir.join("xtask")
    }

    /// Serial logs of scenario runs.
    pub fn log_dir(&self) -> PathBuf {
        self.xtask_dir().join("logs")
    }

    /// The directory holding the scenario manifests.
    pub fn scenario_dir(&self) -> PathBuf {
        self.root.join("xtask").join("scenarios")
    }

    /// Where the real Xen image and its package are kept.
    pub fn xen_dir(&self) -> PathBuf {
        self.target_dir.join("xen")
    }

    /// `path` relative to the repository root when it lies inside it (for messages).
    pub fn display<'a>(&self, path: &'a Path) -> std::path::Display<'a> {
        path.strip_prefix(&self.root).unwrap_or(path).display()
    }
}

/// Whether an executable called `name` is on `$PATH`.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}
