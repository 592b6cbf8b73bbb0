//! The boot image: one PVH module that carries every domain of a scenario.
//!
//! QEMU hands the hypervisor a single `-initrd` file. `cargo xtask` packs into it, for each
//! domain, a fixed-size entry (name, memory, vCPUs, scheduling parameters, flags) plus the
//! domain's kernel ELF and command line. This module defines that wire format once, for
//! both sides: the writer in `xtask` builds it from these structs, and the hypervisor reads
//! it with [`BootImage::parse`].
//!
//! Layout (integers little-endian, offsets from the first byte of the image):
//!
//! ```text
//! +--------------------+  0
//! | ImageHeader        |  header_size bytes (>= size_of::<ImageHeader>())
//! +--------------------+  header_size
//! | DomainEntry[count] |  entry_size bytes each (>= size_of::<DomainEntry>())
//! +--------------------+
//! | blobs              |  kernels at KERNEL_ALIGNMENT-aligned offsets, cmdlines anywhere
//! +--------------------+  total_length
//! ```
//!
//! `header_size` and `entry_size` let a later writer append fields that an older reader
//! skips; a change that an older reader must not ignore bumps [`FORMAT_VERSION`].
//!
//! The image comes from outside the hypervisor, so every field is an allegation:
//! [`BootImage::parse`] checks everything up front (bounds with overflow-checked
//! arithmetic, UTF-8, limits), after which [`BootImage::domains`] cannot fail.

use core::fmt;
use core::mem::size_of;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// The first eight bytes of every boot image.
pub const MAGIC: [u8; 8] = *b"PVHVBOOT";

/// The only format version this reader understands.
pub const FORMAT_VERSION: u32 = 1;

/// The most domains one image may describe.
pub const MAX_DOMAINS: usize = 16;

/// Size of the NUL-padded name field; a name has at most `NAME_FIELD_LEN - 1` bytes.
pub const NAME_FIELD_LEN: usize = 32;

/// Longest domain name in bytes (the field always keeps one terminating NUL).
pub const MAX_NAME_LEN: usize = NAME_FIELD_LEN - 1;

/// Longest command line in bytes: it is copied into Xen's `start_info.cmd_line`, a
/// 1024-byte field (`MAX_GUEST_CMDLINE` in xen.h) that keeps a terminating NUL.
pub const MAX_CMDLINE_LEN: usize = 1023;

/// Every kernel blob starts at a multiple of this, so that it can be mapped in place.
pub const KERNEL_ALIGNMENT: u64 = 4096;

/// Default scheduling weight (the credit scheduler's default in Xen).
pub const DEFAULT_WEIGHT: u32 = 256;

/// Largest scheduling weight (Xen's credit scheduler accepts 1..=65535).
pub const MAX_WEIGHT: u32 = 65535;

/// [`DomainEntry::flags`] bit: the domain is privileged (may manage other domains).
pub const FLAG_PRIVILEGED: u32 = 1 << 0;

/// Every flag bit this version defines; any other bit set is an error.
pub const KNOWN_FLAGS: u32 = FLAG_PRIVILEGED;

/// The fixed header at offset 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct ImageHeader {
    /// Always [`MAGIC`].
    pub magic: [u8; 8],
    /// Always [`FORMAT_VERSION`] for images this module writes.
    pub version: u32,
    /// Bytes from the start of the image to the first [`DomainEntry`].
    pub header_size: u32,
    /// Bytes from one [`DomainEntry`] to the next.
    pub entry_size: u32,
    /// Number of domain entries.
    pub domain_count: u32,
    /// Length of the whole image in bytes, blobs included.
    pub total_length: u64,
}

/// One domain's description; offsets count from the start of the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct DomainEntry {
    /// UTF-8 name, padded with NUL bytes; at most [`MAX_NAME_LEN`] bytes long.
    pub name: [u8; NAME_FIELD_LEN],
    /// Memory given to the domain, in KiB (a whole number of 4 KiB pages).
    pub memory_kib: u64,
    /// Number of virtual CPUs (at least 1).
    pub vcpus: u32,
    /// Scheduling weight, 1..=[`MAX_WEIGHT`]; [`DEFAULT_WEIGHT`] unless configured.
    pub weight: u32,
    /// CPU cap in percent of one physical CPU; 0 means no cap.
    pub cap: u32,
    /// [`FLAG_PRIVILEGED`] and nothing else (so far).
    pub flags: u32,
    /// Offset of the kernel ELF, a multiple of [`KERNEL_ALIGNMENT`].
    pub kernel_offset: u64,
    /// Length of the kernel ELF in bytes (not zero).
    pub kernel_length: u64,
    /// Offset of the command line (UTF-8, no NUL, no terminator).
    pub cmdline_offset: u64,
    /// Length of the command line in bytes, at most [`MAX_CMDLINE_LEN`].
    pub cmdline_length: u64,
}

const _: () = assert!(size_of::<ImageHeader>() == 32);
const _: () = assert!(size_of::<DomainEntry>() == 88);
// Fields are native integers; the format is little-endian, and so are both sides (x86_64).
const _: () = assert!(cfg!(target_endian = "little"));
// The parser borrows names straight from the image at the start of each entry.
const _: () = assert!(core::mem::offset_of!(DomainEntry, name) == 0);

/// Why an image was rejected. `domain` fields are 0-based entry indices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootImageError {
    /// The bytes end before the header, the entry table or the declared total length.
    TooShort,
    /// The image does not start with [`MAGIC`].
    BadMagic,
    /// The format version is not [`FORMAT_VERSION`].
    UnsupportedVersion(u32),
    /// `header_size` or `entry_size` is smaller than this version's structs.
    BadLayout,
    /// The image describes no domain at all.
    NoDomains,
    /// The image describes more than [`MAX_DOMAINS`] domains.
    TooManyDomains(u32),
    /// A blob's offset plus length overflows or lies outside the image.
    OutOfBounds {
        /// The offending entry.
        domain: usize,
    },
    /// A name is empty, too long, not NUL-padded, not UTF-8 or has control characters.
    BadName {
        /// The offending entry.
        domain: usize,
    },
    /// Two entries have the same name.
    DuplicateName {
        /// The second entry with that name.
        domain: usize,
    },
    /// A command line is longer than [`MAX_CMDLINE_LEN`], not UTF-8, or contains NUL.
    BadCmdline {
        /// The offending entry.
        domain: usize,
    },
    /// A kernel is empty or not aligned to [`KERNEL_ALIGNMENT`].
    BadKernel {
        /// The offending entry.
        domain: usize,
    },
    /// Memory is zero or not a whole number of 4 KiB pages.
    BadMemory {
        /// The offending entry.
        domain: usize,
    },
    /// The vCPU count is zero.
    BadVcpus {
        /// The offending entry.
        domain: usize,
    },
    /// The weight is outside 1..=[`MAX_WEIGHT`], or the cap exceeds 100% per vCPU.
    BadScheduling {
        /// The offending entry.
        domain: usize,
    },
    /// A flag bit outside [`KNOWN_FLAGS`] is set.
    UnknownFlags {
        /// The offending entry.
        domain: usize,
    },
}

impl fmt::Display for BootImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::TooShort => write!(f, "boot image is truncated"),
            Self::BadMagic => write!(f, "boot image has a bad magic number"),
            Self::UnsupportedVersion(v) => write!(f, "boot image format version {v} unsupported"),
            Self::BadLayout => write!(f, "boot image header or entry size too small"),
            Self::NoDomains => write!(f, "boot image describes no domain"),
            Self::TooManyDomains(n) => {
                write!(
                    f,
                    "boot image describes {n} domains (at most {MAX_DOMAINS})"
                )
            }
            Self::OutOfBounds { domain } => write!(f, "domain entry {domain}: blob out of bounds"),
            Self::BadName { domain } => write!(f, "domain entry {domain}: bad name"),
            Self::DuplicateName { domain } => write!(f, "domain entry {domain}: duplicate name"),
            Self::BadCmdline { domain } => write!(f, "domain entry {domain}: bad command line"),
            Self::BadKernel { domain } => {
                write!(f, "domain entry {domain}: kernel empty or misaligned")
            }
            Self::BadMemory { domain } => write!(f, "domain entry {domain}: bad memory size"),
            Self::BadVcpus { domain } => write!(f, "domain entry {domain}: no vCPU"),
            Self::BadScheduling { domain } => {
                write!(f, "domain entry {domain}: weight or cap out of range")
            }
            Self::UnknownFlags { domain } => write!(f, "domain entry {domain}: unknown flags"),
        }
    }
}

/// One domain of a validated image. Every field has passed [`BootImage::parse`]'s checks.
#[derive(Clone, Copy, Debug)]
pub struct DomainSpec<'a> {
    /// Non-empty, at most [`MAX_NAME_LEN`] bytes, no control characters, unique.
    pub name: &'a str,
    /// Memory in KiB: non-zero, a multiple of 4.
    pub memory_kib: u64,
    /// Virtual CPUs: at least 1.
    pub vcpus: u32,
    /// Scheduling weight, 1..=[`MAX_WEIGHT`].
    pub weight: u32,
    /// CPU cap in percent; 0 = none; at most `100 * vcpus`.
    pub cap: u32,
    /// Whether the domain is privileged.
    pub privileged: bool,
    /// Command line: at most [`MAX_CMDLINE_LEN`] bytes, no NUL.
    pub cmdline: &'a str,
    /// The kernel ELF image (non-empty; its contents are not checked here).
    pub kernel: &'a [u8],
}

impl DomainSpec<'_> {
    const EMPTY: DomainSpec<'static> = DomainSpec {
        name: "",
        memory_kib: 0,
        vcpus: 0,
        weight: 0,
        cap: 0,
        privileged: false,
        cmdline: "",
        kernel: &[],
    };
}

/// A parsed and fully validated boot image, borrowing the module's bytes.
#[derive(Clone, Debug)]
pub struct BootImage<'a> {
    domains: [DomainSpec<'a>; MAX_DOMAINS],
    count: usize,
}

impl<'a> BootImage<'a> {
    /// Checks the whole image and extracts every domain's description.
    ///
    /// `bytes` may be longer than the image (a loader may round the module up); bytes
    /// past `total_length` are ignored.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, BootImageError> {
        let (header, _) =
            ImageHeader::read_from_prefix(bytes).map_err(|_| BootImageError::TooShort)?;
        if header.magic != MAGIC {
            return Err(BootImageError::BadMagic);
        }
        if header.version != FORMAT_VERSION {
            return Err(BootImageError::UnsupportedVersion(header.version));
        }
        let image = usize::try_from(header.total_length)
            .ok()
            .and_then(|len| bytes.get(..len))
            .ok_or(BootImageError::TooShort)?;
        let header_size = header.header_size as usize;
        let entry_size = header.entry_size as usize;
        if header_size < size_of::<ImageHeader>() || entry_size < size_of::<DomainEntry>() {
            return Err(BootImageError::BadLayout);
        }
        let count = header.domain_count as usize;
        if count == 0 {
            return Err(BootImageError::NoDomains);
        }
        if count > MAX_DOMAINS {
            return Err(BootImageError::TooManyDomains(header.domain_count));
        }
        // count <= MAX_DOMAINS and entry_size < 2^32: no overflow on 64-bit, but stay
        // honest on any width.
        let table_end = entry_size
            .checked_mul(count)
            .and_then(|table| table.checked_add(header_size))
            .ok_or(BootImageError::TooShort)?;
        let table = image
            .get(header_size..table_end)
            .ok_or(BootImageError::TooShort)?;

        let mut domains = [DomainSpec::EMPTY; MAX_DOMAINS];
        for (index, raw) in table.chunks_exact(entry_size).enumerate() {
            let (entry, _) =
                DomainEntry::read_from_prefix(raw).map_err(|_| BootImageError::TooShort)?;
            // The name is borrowed from the image itself, not from the copy in `entry`.
            let name_field = raw.first_chunk().ok_or(BootImageError::TooShort)?;
            let spec = validate_entry(image, index, &entry, name_field)?;
            if domains[..index]
                .iter()
                .any(|earlier| earlier.name == spec.name)
            {
                return Err(BootImageError::DuplicateName { domain: index });
            }
            domains[index] = spec;
        }
        Ok(Self { domains, count })
    }

    /// Number of domains in the image (1..=[`MAX_DOMAINS`]).
    pub fn domain_count(&self) -> usize {
        self.count
    }

    /// The domains in image order (domain IDs are assigned in this order).
    pub fn domains(&self) -> impl Iterator<Item = DomainSpec<'a>> + '_ {
        self.domains[..self.count].iter().copied()
    }

    /// The domain at `index` in image order, if there is one.
    pub fn domain(&self, index: usize) -> Option<DomainSpec<'a>> {
        self.domains[..self.count].get(index).copied()
    }
}

/// Checks one entry against the image and turns it into a [`DomainSpec`].
///
/// `name_field` is the entry's name field inside `image` (`entry.name` is a copy).
fn validate_entry<'a>(
    image: &'a [u8],
    domain: usize,
    entry: &DomainEntry,
    name_field: &'a [u8; NAME_FIELD_LEN],
) -> Result<DomainSpec<'a>, BootImageError> {
    let name = parse_name(name_field).ok_or(BootImageError::BadName { domain })?;
    if entry.memory_kib == 0 || !entry.memory_kib.is_multiple_of(4) {
        return Err(BootImageError::BadMemory { domain });
    }
    if entry.vcpus == 0 {
        return Err(BootImageError::BadVcpus { domain });
    }
    let max_cap = u64::from(entry.vcpus) * 100;
    if !(1..=MAX_WEIGHT).contains(&entry.weight) || u64::from(entry.cap) > max_cap {
        return Err(BootImageError::BadScheduling { domain });
    }
    if entry.flags & !KNOWN_FLAGS != 0 {
        return Err(BootImageError::UnknownFlags { domain });
    }
    let kernel = blob(image, entry.kernel_offset, entry.kernel_length)
        .ok_or(BootImageError::OutOfBounds { domain })?;
    if kernel.is_empty() || !entry.kernel_offset.is_multiple_of(KERNEL_ALIGNMENT) {
        return Err(BootImageError::BadKernel { domain });
    }
    let cmdline = blob(image, entry.cmdline_offset, entry.cmdline_length)
        .ok_or(BootImageError::OutOfBounds { domain })?;
    if cmdline.len() > MAX_CMDLINE_LEN || cmdline.contains(&0) {
        return Err(BootImageError::BadCmdline { domain });
    }
    let cmdline =
        core::str::from_utf8(cmdline).map_err(|_| BootImageError::BadCmdline { domain })?;
    Ok(DomainSpec {
        name,
        memory_kib: entry.memory_kib,
        vcpus: entry.vcpus,
        weight: entry.weight,
        cap: entry.cap,
        privileged: entry.flags & FLAG_PRIVILEGED != 0,
        cmdline,
        kernel,
    })
}

/// `image[offset..offset + length]`, or `None` if that overflows or leaves the image.
fn blob(image: &[u8], offset: u64, length: u64) -> Option<&[u8]> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(length).ok()?)?;
    image.get(start..end)
}

/// A NUL-padded name field: non-empty UTF-8 without control characters, then only NULs.
fn parse_name(field: &[u8; NAME_FIELD_LEN]) -> Option<&str> {
    let len = field.iter().position(|&b| b == 0)?;
    if len == 0 || field[len..].iter().any(|&b| b != 0) {
        return None;
    }
    let name = core::str::from_utf8(&field[..len]).ok()?;
    if name.chars().any(char::is_control) {
        return None;
    }
    Some(name)
}

/// Encodes `name` into a NUL-padded name field, or `None` if it does not fit.
///
/// For writers; it does not check what [`BootImage::parse`] checks beyond the length.
pub fn encode_name(name: &str) -> Option<[u8; NAME_FIELD_LEN]> {
    if name.len() > MAX_NAME_LEN {
        return None;
    }
    let mut field = [0u8; NAME_FIELD_LEN];
    field[..name.len()].copy_from_slice(name.as_bytes());
    Some(field)
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::vec::Vec;

    /// A minimal writer for the parser's own tests (xtask has the real one).
    fn image(domains: &[(&str, &str, &[u8])]) -> Vec<u8> {
        let header_size = size_of::<ImageHeader>();
        let entry_size = size_of::<DomainEntry>();
        let mut blobs = Vec::new();
        let mut entries = Vec::new();
        let mut next = (header_size + entry_size * domains.len()) as u64;
        for &(name, cmdline, kernel) in domains {
            let kernel_offset = next.next_multiple_of(KERNEL_ALIGNMENT);
            let cmdline_offset = kernel_offset + kernel.len() as u64;
            next = cmdline_offset + cmdline.len() as u64;
            entries.push(DomainEntry {
                name: encode_name(name).unwrap(),
                memory_kib: 32 * 1024,
                vcpus: 1,
                weight: DEFAULT_WEIGHT,
                cap: 0,
                flags: 0,
                kernel_offset,
                kernel_length: kernel.len() as u64,
                cmdline_offset,
                cmdline_length: cmdline.len() as u64,
            });
            blobs.push((kernel_offset, kernel, cmdline_offset, cmdline));
        }
        let header = ImageHeader {
            magic: MAGIC,
            version: FORMAT_VERSION,
            header_size: header_size as u32,
            entry_size: entry_size as u32,
            domain_count: domains.len() as u32,
            total_length: next,
        };
        let mut out = std::vec![0u8; next as usize];
        out[..header_size].copy_from_slice(header.as_bytes());
        for (i, entry) in entries.iter().enumerate() {
            let at = header_size + i * entry_size;
            out[at..at + entry_size].copy_from_slice(entry.as_bytes());
        }
        for (ko, k, co, c) in blobs {
            out[ko as usize..ko as usize + k.len()].copy_from_slice(k);
            out[co as usize..co as usize + c.len()].copy_from_slice(c.as_bytes());
        }
        out
    }

    /// Rewrites entry `index` of `bytes` through `change` (copies: no alignment needed).
    fn edit_entry(bytes: &mut [u8], index: usize, change: impl FnOnce(&mut DomainEntry)) {
        let at = size_of::<ImageHeader>() + index * size_of::<DomainEntry>();
        let mut entry = DomainEntry::read_from_prefix(&bytes[at..]).unwrap().0;
        change(&mut entry);
        bytes[at..at + size_of::<DomainEntry>()].copy_from_slice(entry.as_bytes());
    }

    /// Rewrites the header of `bytes` through `change`.
    fn edit_header(bytes: &mut [u8], change: impl FnOnce(&mut ImageHeader)) {
        let mut header = ImageHeader::read_from_prefix(bytes).unwrap().0;
        change(&mut header);
        bytes[..size_of::<ImageHeader>()].copy_from_slice(header.as_bytes());
    }

    #[test]
    fn round_trip() {
        let bytes = image(&[("a", "x=1", b"\x7fELF one"), ("bb", "", b"two")]);
        let parsed = BootImage::parse(&bytes).unwrap();
        assert_eq!(parsed.domain_count(), 2);
        let all: Vec<_> = parsed.domains().collect();
        assert_eq!(all[0].name, "a");
        assert_eq!(all[0].cmdline, "x=1");
        assert_eq!(all[0].kernel, b"\x7fELF one");
        assert_eq!(all[1].name, "bb");
        assert_eq!(all[1].cmdline, "");
        assert_eq!(all[1].kernel, b"two");
        assert!(parsed.domain(2).is_none());
    }

    #[test]
    fn trailing_padding_is_ignored() {
        let mut bytes = image(&[("a", "", b"k")]);
        bytes.extend_from_slice(&[0xff; 100]);
        assert!(BootImage::parse(&bytes).is_ok());
    }

    #[test]
    fn truncated() {
        let bytes = image(&[("a", "", b"kernel")]);
        assert_eq!(
            BootImage::parse(&bytes[..10]).unwrap_err(),
            BootImageError::TooShort
        );
        let cut = &bytes[..bytes.len() - 1];
        assert_eq!(BootImage::parse(cut).unwrap_err(), BootImageError::TooShort);
    }

    #[test]
    fn bad_magic_and_version() {
        let mut bytes = image(&[("a", "", b"k")]);
        bytes[0] = b'X';
        assert_eq!(
            BootImage::parse(&bytes).unwrap_err(),
            BootImageError::BadMagic
        );
        let mut bytes = image(&[("a", "", b"k")]);
        edit_header(&mut bytes, |h| h.version = 2);
        assert_eq!(
            BootImage::parse(&bytes).unwrap_err(),
            BootImageError::UnsupportedVersion(2)
        );
    }

    #[test]
    fn bad_layout() {
        let mut bytes = image(&[("a", "", b"k")]);
        edit_header(&mut bytes, |h| h.entry_size = 8);
        assert_eq!(
            BootImage::parse(&bytes).unwrap_err(),
            BootImageError::BadLayout
        );
    }

    #[test]
    fn domain_count_limits() {
        let mut bytes = image(&[("a", "", b"k")]);
        edit_header(&mut bytes, |h| h.domain_count = 0);
        assert_eq!(
            BootImage::parse(&bytes).unwrap_err(),
            BootImageError::NoDomains
        );
        edit_header(&mut bytes, |h| h.domain_count = 17);
        assert_eq!(
            BootImage::parse(&bytes).unwrap_err(),
            BootImageError::TooManyDomains(17)
        );
        edit_header(&mut bytes, |h| h.domain_count = 2); // table runs into the kernel: entry 1 is junk
        assert!(BootImage::parse(&bytes).is_err());
        let names: Vec<_> = (0..MAX_DOMAINS).map(|i| std::format!("d{i}")).collect();
        let many: Vec<_> = names.iter().map(|n| (n.as_str(), "", &b"k"[..])).collect();
        assert_eq!(
            BootImage::parse(&image(&many)).unwrap().domain_count(),
            MAX_DOMAINS
        );
    }

    #[test]
    fn offsets_out_of_range_or_overflowing() {
        let oob = BootImageError::OutOfBounds { domain: 0 };
        let mut bytes = image(&[("a", "c", b"k")]);
        let len = bytes.len() as u64;
        edit_entry(&mut bytes, 0, |e| {
            e.kernel_offset = len.next_multiple_of(KERNEL_ALIGNMENT)
        });
        assert_eq!(BootImage::parse(&bytes).unwrap_err(), oob);

        let mut bytes = image(&[("a", "c", b"k")]);
        edit_entry(&mut bytes, 0, |e| e.kernel_length = u64::MAX);
        assert_eq!(BootImage::parse(&bytes).unwrap_err(), oob);

        let mut bytes = image(&[("a", "c", b"k")]);
        edit_entry(&mut bytes, 0, |e| e.cmdline_offset = u64::MAX);
        assert_eq!(BootImage::parse(&bytes).unwrap_err(), oob);

        let mut bytes = image(&[("a", "c", b"k")]);
        edit_entry(&mut bytes, 0, |e| e.cmdline_length = 2);
        assert_eq!(BootImage::parse(&bytes).unwrap_err(), oob);

        let mut bytes = image(&[("a", "c", b"k")]);
        edit_header(&mut bytes, |h| h.total_length = u64::MAX);
        assert_eq!(
            BootImage::parse(&bytes).unwrap_err(),
            BootImageError::TooShort
        );
    }

    #[test]
    fn kernel_empty_or_misaligned() {
        let bad = BootImageError::BadKernel { domain: 0 };
        let mut bytes = image(&[("a", "", b"k")]);
        edit_entry(&mut bytes, 0, |e| e.kernel_length = 0);
        assert_eq!(BootImage::parse(&bytes).unwrap_err(), bad);
        let mut bytes = image(&[("a", "", b"kk")]);
        edit_entry(&mut bytes, 0, |e| e.kernel_offset += 1);
        edit_entry(&mut bytes, 0, |e| e.kernel_length = 1);
        assert_eq!(BootImage::parse(&bytes).unwrap_err(), bad);
    }

    #[test]
    fn bad_names() {
        let bad = BootImageError::BadName { domain: 0 };
        for field in [
            [0u8; NAME_FIELD_LEN],                                             // empty
            [b'a'; NAME_FIELD_LEN],                                            // no terminating NUL
            *b"ab\0c\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", // junk after NUL
            *b"\xff\xfe\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", // not UTF-8
            *b"a\nb\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", // control char
        ] {
            let mut bytes = image(&[("a", "", b"k")]);
            edit_entry(&mut bytes, 0, |e| e.name = field);
            assert_eq!(BootImage::parse(&bytes).unwrap_err(), bad);
        }
        let bytes = image(&[("same", "", b"k"), ("same", "", b"k")]);
        let dup = BootImageError::DuplicateName { domain: 1 };
        assert_eq!(BootImage::parse(&bytes).unwrap_err(), dup);
        assert!(encode_name(&"x".repeat(MAX_NAME_LEN + 1)).is_none());
    }

    #[test]
    fn bad_cmdlines() {
        let bad = BootImageError::BadCmdline { domain: 0 };
        let bytes = image(&[("a", "\u{0}", b"k")]);
        assert_eq!(BootImage::parse(&bytes).unwrap_err(), bad);
        let long = "x".repeat(MAX_CMDLINE_LEN + 1);
        assert_eq!(
            BootImage::parse(&image(&[("a", &long, b"k")])).unwrap_err(),
            bad
        );
        let longest = "x".repeat(MAX_CMDLINE_LEN);
        assert!(BootImage::parse(&image(&[("a", &longest, b"k")])).is_ok());
        let mut bytes = image(&[("a", "ab", b"k")]);
        let at = DomainEntry::read_from_prefix(&bytes[size_of::<ImageHeader>()..])
            .unwrap()
            .0;
        let at = at.cmdline_offset as usize;
        bytes[at] = 0xc3; // a UTF-8 lead byte followed by an ASCII byte
        assert_eq!(BootImage::parse(&bytes).unwrap_err(), bad);
    }

    #[test]
    fn bad_numbers_and_flags() {
        let mut bytes = image(&[("a", "", b"k")]);
        edit_entry(&mut bytes, 0, |e| e.memory_kib = 0);
        assert_eq!(
            BootImage::parse(&bytes).unwrap_err(),
            BootImageError::BadMemory { domain: 0 }
        );
        edit_entry(&mut bytes, 0, |e| e.memory_kib = 6);
        assert_eq!(
            BootImage::parse(&bytes).unwrap_err(),
            BootImageError::BadMemory { domain: 0 }
        );
        edit_entry(&mut bytes, 0, |e| e.memory_kib = 4);
        edit_entry(&mut bytes, 0, |e| e.vcpus = 0);
        assert_eq!(
            BootImage::parse(&bytes).unwrap_err(),
            BootImageError::BadVcpus { domain: 0 }
        );
        edit_entry(&mut bytes, 0, |e| e.vcpus = 2);
        edit_entry(&mut bytes, 0, |e| e.weight = 0);
        let sched = BootImageError::BadScheduling { domain: 0 };
        assert_eq!(BootImage::parse(&bytes).unwrap_err(), sched);
        edit_entry(&mut bytes, 0, |e| e.weight = 1);
        edit_entry(&mut bytes, 0, |e| e.cap = 201);
        assert_eq!(BootImage::parse(&bytes).unwrap_err(), sched);
        edit_entry(&mut bytes, 0, |e| e.cap = 200);
        edit_entry(&mut bytes, 0, |e| e.flags = FLAG_PRIVILEGED);
        let spec = BootImage::parse(&bytes).unwrap().domain(0).unwrap();
        assert!(spec.privileged);
        assert_eq!(
            (spec.vcpus, spec.weight, spec.cap, spec.memory_kib),
            (2, 1, 200, 4)
        );
        edit_entry(&mut bytes, 0, |e| e.flags = 2);
        let flags = BootImageError::UnknownFlags { domain: 0 };
        assert_eq!(BootImage::parse(&bytes).unwrap_err(), flags);
    }

    #[test]
    fn larger_header_and_entries_are_skipped() {
        // A future writer with 8 extra header bytes and 8 extra bytes per entry.
        let old = image(&[("a", "c", b"k")]);
        let (hs, es) = (size_of::<ImageHeader>(), size_of::<DomainEntry>());
        let mut new = std::vec![0u8; old.len() + 16];
        let mut header = ImageHeader::read_from_prefix(&old).unwrap().0;
        header.header_size += 8;
        header.entry_size += 8;
        header.total_length += 16;
        new[..hs].copy_from_slice(header.as_bytes());
        let mut entry = DomainEntry::read_from_prefix(&old[hs..]).unwrap().0;
        entry.kernel_offset = (hs + es + 16) as u64;
        entry.kernel_offset = entry.kernel_offset.next_multiple_of(KERNEL_ALIGNMENT);
        entry.cmdline_offset = entry.kernel_offset + 1;
        new[hs + 8..hs + 8 + es].copy_from_slice(entry.as_bytes());
        new[entry.kernel_offset as usize] = b'k';
        new[entry.cmdline_offset as usize] = b'c';
        let spec = BootImage::parse(&new).unwrap().domain(0).unwrap();
        assert_eq!(
            (spec.name, spec.cmdline, spec.kernel),
            ("a", "c", &b"k"[..])
        );
    }

    #[test]
    fn errors_display() {
        let text = std::format!("{}", BootImageError::OutOfBounds { domain: 3 });
        assert!(text.contains("entry 3"));
    }
}
