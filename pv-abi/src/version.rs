//! Version and feature queries of the `xen_version` hypercall (`xen/version.h`).
//!
//! Every command returns zero on success, except [`XENVER_VERSION`] (returns
//! `major << 16 | minor`) and [`XENVER_PAGESIZE`] (returns the page size).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Returns the version as `major << 16 | minor`; no argument.
pub const XENVER_VERSION: u32 = 0;
/// Fills a [`XenExtraversion`].
pub const XENVER_EXTRAVERSION: u32 = 1;
/// Fills a [`XenCompileInfo`].
pub const XENVER_COMPILE_INFO: u32 = 2;
/// Fills a [`XenCapabilitiesInfo`] (space-separated, e.g. `"xen-3.0-x86_64"`).
pub const XENVER_CAPABILITIES: u32 = 3;
/// Fills a [`XenChangeset`].
pub const XENVER_CHANGESET: u32 = 4;
/// Fills a [`XenPlatformParameters`].
pub const XENVER_PLATFORM_PARAMETERS: u32 = 5;
/// Fills the `submap` of a [`XenFeatureInfo`] selected by its `submap_idx`.
pub const XENVER_GET_FEATURES: u32 = 6;
/// Returns the host page size; no argument.
pub const XENVER_PAGESIZE: u32 = 7;
/// Fills a [`crate::xen::XenDomainHandle`] with the caller's handle.
pub const XENVER_GUEST_HANDLE: u32 = 8;
/// Fills a [`XenCommandline`] with the hypervisor's command line (privileged).
pub const XENVER_COMMANDLINE: u32 = 9;
/// Fills a [`XenBuildId`] header plus its buffer (privileged).
pub const XENVER_BUILD_ID: u32 = 10;

/// Extra version string, e.g. `".3"` (NUL-terminated).
pub type XenExtraversion = [u8; 16];
/// Length of [`XenExtraversion`].
pub const XEN_EXTRAVERSION_LEN: usize = 16;
/// Capabilities string (NUL-terminated).
pub type XenCapabilitiesInfo = [u8; 1024];
/// Length of [`XenCapabilitiesInfo`].
pub const XEN_CAPABILITIES_INFO_LEN: usize = 1024;
/// Source changeset string (NUL-terminated).
pub type XenChangeset = [u8; 64];
/// Length of [`XenChangeset`].
pub const XEN_CHANGESET_INFO_LEN: usize = 64;
/// Hypervisor command line (NUL-terminated).
pub type XenCommandline = [u8; 1024];

/// Build information (`struct xen_compile_info`); every field NUL-terminated.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct XenCompileInfo {
    /// Compiler name and version.
    pub compiler: [u8; 64],
    /// User who built the hypervisor.
    pub compile_by: [u8; 16],
    /// Domain of the building host.
    pub compile_domain: [u8; 32],
    /// Build date.
    pub compile_date: [u8; 32],
}
const _: () = assert!(size_of::<XenCompileInfo>() == 144);

/// Platform parameters (`struct xen_platform_parameters`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenPlatformParameters {
    /// Lowest virtual address reserved by the hypervisor.
    pub virt_start: u64,
}
const _: () = assert!(size_of::<XenPlatformParameters>() == 8);

/// Argument of [`XENVER_GET_FEATURES`] (`struct xen_feature_info`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenFeatureInfo {
    /// In: which 32-bit word of the feature bitmap to return.
    pub submap_idx: u32,
    /// Out: the word; bit `i` is feature `32 * submap_idx + i` (`XENFEAT_*`).
    pub submap: u32,
}
const _: () = assert!(size_of::<XenFeatureInfo>() == 8);

/// Header of the [`XENVER_BUILD_ID`] argument (`struct xen_build_id`), followed in
/// memory by `len` bytes of buffer.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenBuildId {
    /// In: size of the buffer that follows. Out: length of the build id.
    pub len: u32,
}
const _: () = assert!(size_of::<XenBuildId>() == 4);

/// Encodes a version as [`XENVER_VERSION`] returns it.
pub const fn encode_version(major: u16, minor: u16) -> u64 {
    (major as u64) << 16 | minor as u64
}

/// Splits a [`XENVER_VERSION`] result into `(major, minor)`.
pub const fn decode_version(v: u64) -> (u16, u16) {
    ((v >> 16) as u16, v as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_encoding() {
        assert_eq!(encode_version(4, 17), 0x0004_0011);
        assert_eq!(decode_version(0x0004_0011), (4, 17));
    }
}
