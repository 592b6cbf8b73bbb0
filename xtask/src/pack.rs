//! The boot-image writer: packs a scenario's domains into the single PVH module.
//!
//! The format is defined once, in `hypervisor::bootimage`, whose structs this writer
//! fills in and whose parser reads the result back in the tests below.

use std::mem::size_of;
use std::path::Path;

use anyhow::{Context, Result, ensure};
use hypervisor::bootimage::{
    DomainEntry, FLAG_PRIVILEGED, FORMAT_VERSION, ImageHeader, KERNEL_ALIGNMENT, MAGIC,
    MAX_CMDLINE_LEN, MAX_DOMAINS, encode_name,
};
use zerocopy::IntoBytes;

use crate::manifest::DomainConfig;

/// One domain to pack: its manifest entry and its kernel ELF.
#[derive(Debug)]
pub struct DomainImage<'a> {
    /// The manifest's description of the domain.
    pub config: &'a DomainConfig,
    /// The kernel ELF file's contents.
    pub kernel: Vec<u8>,
}

impl<'a> DomainImage<'a> {
    /// Reads the kernel at `path` for `config`, checking that it looks like an ELF file.
    pub fn load(config: &'a DomainConfig, path: &Path) -> Result<Self> {
        let kernel = std::fs::read(path)
            .with_context(|| format!("reading kernel of domain `{}`", config.name))?;
        ensure!(
            kernel.starts_with(b"\x7fELF"),
            "kernel of domain `{}` ({}) is not an ELF file",
            config.name,
            path.display()
        );
        Ok(Self { config, kernel })
    }
}

/// Serializes `domains` into a boot image.
///
/// Layout: header, entry table, then per domain its kernel at the next
/// `KERNEL_ALIGNMENT` boundary followed directly by its command line.
pub fn write(domains: &[DomainImage<'_>]) -> Result<Vec<u8>> {
    ensure!(
        !domains.is_empty(),
        "a boot image needs at least one domain"
    );
    ensure!(
        domains.len() <= MAX_DOMAINS,
        "at most {MAX_DOMAINS} domains fit in a boot image"
    );
    let header_size = size_of::<ImageHeader>();
    let entry_size = size_of::<DomainEntry>();
    let mut image = vec![0u8; header_size + entry_size * domains.len()];

    let mut entries = Vec::with_capacity(domains.len());
    for domain in domains {
        let config = domain.config;
        let name = encode_name(&config.name)
            .with_context(|| format!("domain name `{}` is too long", config.name))?;
        ensure!(
            !domain.kernel.is_empty(),
            "kernel of domain `{}` is empty",
            config.name
        );
        ensure!(
            config.cmdline.len() <= MAX_CMDLINE_LEN,
            "cmdline of domain `{}` is longer than {MAX_CMDLINE_LEN} bytes",
            config.name
        );
        let kernel_offset = append_aligned(&mut image, &domain.kernel, KERNEL_ALIGNMENT);
        let cmdline_offset = append_aligned(&mut image, config.cmdline.as_bytes(), 1);
        entries.push(DomainEntry {
            name,
            memory_kib: config.memory_kib(),
            vcpus: config.vcpus,
            weight: config.weight,
            cap: config.cap,
            flags: if config.privileged {
                FLAG_PRIVILEGED
            } else {
                0
            },
            kernel_offset,
            kernel_length: len_u64(&domain.kernel),
            cmdline_offset,
            cmdline_length: len_u64(config.cmdline.as_bytes()),
        });
    }

    let header = ImageHeader {
        magic: MAGIC,
        version: FORMAT_VERSION,
        header_size: u32::try_from(header_size)?,
        entry_size: u32::try_from(entry_size)?,
        domain_count: u32::try_from(domains.len())?,
        total_length: len_u64(&image),
    };
    image[..header_size].copy_from_slice(header.as_bytes());
    for (index, entry) in entries.iter().enumerate() {
        let at = header_size + index * entry_size;
        image[at..at + entry_size].copy_from_slice(entry.as_bytes());
    }
    Ok(image)
}

/// Pads `image` to a multiple of `alignment`, appends `blob`, returns the blob's offset.
fn append_aligned(image: &mut Vec<u8>, blob: &[u8], alignment: u64) -> u64 {
    let offset = len_u64(image).next_multiple_of(alignment);
    image.resize(usize::try_from(offset).expect("image fits in memory"), 0);
    image.extend_from_slice(blob);
    offset
}

fn len_u64(bytes: &[u8]) -> u64 {
    u64::try_from(bytes.len()).expect("usize fits in u64 on every supported host")
}

#[cfg(test)]
mod tests {
    use hypervisor::bootimage::{BootImage, BootImageError};

    use super::*;

    fn config(name: &str, cmdline: &str) -> DomainConfig {
        DomainConfig {
            name: name.into(),
            kernel: "pv-guest-kernel".into(),
            memory_mib: 32,
            vcpus: 2,
            cmdline: cmdline.into(),
            weight: 512,
            cap: 150,
            privileged: false,
        }
    }

    #[test]
    fn round_trip_through_the_hypervisor_parser() {
        let first = config("crasher", "crash=ud2");
        let mut second = config("honest", "");
        second.privileged = true;
        let domains = [
            DomainImage {
                config: &first,
                kernel: b"\x7fELF first kernel".to_vec(),
            },
            DomainImage {
                config: &second,
                kernel: vec![0xab; 5000],
            },
        ];
        let image = write(&domains).unwrap();
        let parsed = BootImage::parse(&image).unwrap();
        assert_eq!(parsed.domain_count(), 2);
        let specs: Vec<_> = parsed.domains().collect();
        for (spec, domain) in specs.iter().zip(&domains) {
            assert_eq!(spec.name, domain.config.name);
            assert_eq!(spec.cmdline, domain.config.cmdline);
            assert_eq!(spec.kernel, &domain.kernel[..]);
            assert_eq!(spec.memory_kib, 32 * 1024);
            assert_eq!((spec.vcpus, spec.weight, spec.cap), (2, 512, 150));
            let offset = spec.kernel.as_ptr() as usize - image.as_ptr() as usize;
            assert_eq!(offset as u64 % KERNEL_ALIGNMENT, 0);
        }
        assert!(!specs[0].privileged);
        assert!(specs[1].privileged);
    }

    #[test]
    fn truncated_output_is_rejected_by_the_parser() {
        let one = config("demo", "");
        let image = write(&[DomainImage {
            config: &one,
            kernel: vec![1; 10],
        }])
        .unwrap();
        let error = BootImage::parse(&image[..image.len() - 1]).unwrap_err();
        assert_eq!(error, BootImageError::TooShort);
    }

    #[test]
    fn refuses_what_the_format_cannot_hold() {
        let long_name = config(&"n".repeat(32), "");
        assert!(
            write(&[DomainImage {
                config: &long_name,
                kernel: vec![1]
            }])
            .is_err()
        );
        let long_cmdline = config("a", &"c".repeat(MAX_CMDLINE_LEN + 1));
        assert!(
            write(&[DomainImage {
                config: &long_cmdline,
                kernel: vec![1]
            }])
            .is_err()
        );
        let fine = config("a", "");
        assert!(
            write(&[DomainImage {
                config: &fine,
                kernel: vec![]
            }])
            .is_err()
        );
        assert!(write(&[]).is_err());
    }
}
