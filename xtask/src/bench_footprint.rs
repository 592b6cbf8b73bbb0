//! The footprint part of the benchmark report: the hypervisor image, the hypervisor's
//! memory per domain, and the instructions from QEMU's start to the guest's banner.
//!
//! Per-domain memory is computed from the hypervisor's own types (xtask links the
//! hypervisor library, built for the same target triple, so the sizes are the kernel's):
//! the domain's slot in the machine state (`Option<Domain>`, which holds its vCPU 0),
//! its runtime slot (`Runtime`: event channels, timers, other vCPUs), the shared-info
//! frame the builder allocates beyond the domain's memory, and the per-frame bookkeeping
//! for the domain's pages (a frame-table entry and a machine-to-phys entry each).

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::bench::{Mode, RunResult};
use crate::bench_cases::targets;
use crate::manifest::{Hypervisor, Scenario};

const PAGE: u64 = 4096;
const PT_LOAD: u32 = 1;

/// The hypervisor image: bytes loaded from the file (text, rodata, data), and memory
/// its segments occupy (with .bss: stacks, the frame table, the M2P).
#[derive(Debug, Clone, Serialize)]
pub struct Image {
    /// Sum of the PT_LOAD segments' file sizes: what the loader copies.
    pub loaded_bytes: u64,
    /// Sum of the PT_LOAD segments' memory sizes (with .bss).
    pub memory_bytes: u64,
    /// The target for `loaded_bytes`.
    pub limit_bytes: u64,
}

/// The hypervisor's memory for one domain of a given size.
#[derive(Debug, Clone, Serialize)]
pub struct PerDomain {
    /// The domain's memory.
    pub domain_bytes: u64,
    /// `Option<Domain>` (vCPU 0 included: registers, FPU area, trap table).
    pub domain_slot: u64,
    /// `Runtime` (event-channel table, per-vCPU timers, parked vCPUs).
    pub runtime_slot: u64,
    /// The shared-info frame.
    pub shared_info: u64,
    /// Frame-table entry plus M2P entry, per page of the domain.
    pub per_page: u64,
    /// Everything above for this domain.
    pub total_bytes: u64,
    /// 1% of the domain's memory plus 64 KiB.
    pub limit_bytes: u64,
}

/// The footprint section of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Footprint {
    /// The hypervisor image.
    pub image: Image,
    /// Per domain, for the benchmark's own domain and for a few common sizes.
    pub per_domain: Vec<PerDomain>,
    /// Instructions from QEMU's start to the guest's banner (`-icount` runs), by
    /// hypervisor.
    pub boot_instructions: Vec<(String, u64)>,
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// Sums the PT_LOAD segments of a 64-bit little-endian ELF: (file bytes, memory bytes).
pub fn loaded_sizes(elf: &[u8]) -> Option<(u64, u64)> {
    if elf.get(..4)? != b"\x7fELF" || *elf.get(4)? != 2 || *elf.get(5)? != 1 {
        return None;
    }
    let phoff = usize::try_from(u64_at(elf, 32)?).ok()?;
    let phentsize = usize::from(u16_at(elf, 54)?);
    let phnum = usize::from(u16_at(elf, 56)?);
    let (mut file, mut memory) = (0, 0);
    for i in 0..phnum {
        let at = phoff.checked_add(i.checked_mul(phentsize)?)?;
        if u32_at(elf, at)? == PT_LOAD {
            file += u64_at(elf, at + 32)?;
            memory += u64_at(elf, at + 40)?;
        }
    }
    Some((file, memory))
}

/// The hypervisor's memory for a domain of `domain_bytes`.
pub fn per_domain(domain_bytes: u64) -> PerDomain {
    let domain_slot = size_of::<Option<hypervisor::domain::Domain>>() as u64;
    let runtime_slot = size_of::<hypervisor::guests::Runtime>() as u64;
    let per_page = size_of::<hypervisor::frames::FrameInfo>() as u64 + 8;
    let pages = domain_bytes / PAGE;
    let total_bytes = domain_slot + runtime_slot + PAGE + pages * per_page;
    PerDomain {
        domain_bytes,
        domain_slot,
        runtime_slot,
        shared_info: PAGE,
        per_page,
        total_bytes,
        limit_bytes: domain_bytes / 100 + targets::PER_DOMAIN_FIXED_BYTES,
    }
}

impl Footprint {
    /// Measures the image at `hypervisor` and reads the boot counts of the runs.
    pub fn measure(
        hypervisor: &Path,
        scenario: &Scenario,
        runs: &[RunResult],
    ) -> Result<Footprint> {
        let elf = std::fs::read(hypervisor)
            .with_context(|| format!("reading {}", hypervisor.display()))?;
        let (loaded_bytes, memory_bytes) =
            loaded_sizes(&elf).context("the hypervisor is not a 64-bit ELF")?;
        let mut sizes: Vec<u64> = scenario
            .manifest
            .domains
            .iter()
            .map(|d| d.memory_mib << 20)
            .collect();
        sizes.extend([16 << 20, 256 << 20, 1 << 30]);
        sizes.sort_unstable();
        sizes.dedup();
        let boot_instructions = runs
            .iter()
            .filter(|run| run.mode == Mode::Icount)
            .filter_map(|run| {
                let name = match run.hypervisor {
                    Hypervisor::Ours => "ours",
                    Hypervisor::Xen => "xen",
                };
                Some((name.to_owned(), run.lines.info_number("tsc_at_banner")?))
            })
            .collect();
        Ok(Footprint {
            image: Image {
                loaded_bytes,
                memory_bytes,
                limit_bytes: targets::IMAGE_BYTES,
            },
            per_domain: sizes.into_iter().map(per_domain).collect(),
            boot_instructions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_load_segments() {
        // A minimal ELF64 header with two program headers: PT_LOAD and PT_NOTE.
        let mut elf = vec![0u8; 64 + 2 * 56];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[32..40].copy_from_slice(&64u64.to_le_bytes());
        elf[54..56].copy_from_slice(&56u16.to_le_bytes());
        elf[56..58].copy_from_slice(&2u16.to_le_bytes());
        let ph = 64;
        elf[ph..ph + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
        elf[ph + 32..ph + 40].copy_from_slice(&100u64.to_le_bytes());
        elf[ph + 40..ph + 48].copy_from_slice(&300u64.to_le_bytes());
        let note = ph + 56;
        elf[note..note + 4].copy_from_slice(&4u32.to_le_bytes());
        elf[note + 32..note + 40].copy_from_slice(&7u64.to_le_bytes());
        assert_eq!(loaded_sizes(&elf), Some((100, 300)));
        assert_eq!(loaded_sizes(b"\x7fELF"), None);
        assert_eq!(loaded_sizes(b"not an elf at all"), None);
    }

    #[test]
    fn per_domain_adds_up() {
        let d = per_domain(64 << 20);
        assert_eq!(
            d.total_bytes,
            d.domain_slot + d.runtime_slot + d.shared_info + 16384 * d.per_page
        );
        assert_eq!(d.limit_bytes, (64 << 20) / 100 + (64 << 10));
    }
}
