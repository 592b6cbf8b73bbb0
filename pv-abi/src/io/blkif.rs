//! The block device protocol (`io/blkif.h`): requests and responses on a shared ring
//! of [`BlkifRequest`] / [`BlkifResponse`] slots (32 per page).
//!
//! Sectors are 512 bytes whatever the disk's sector size. A read or write names up to
//! [`BLKIF_MAX_SEGMENTS_PER_REQUEST`] granted pages, each with the first and last
//! sector used within it; indirect requests name pages full of segments instead.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::ring::{SharedRing, ring_entries};
use crate::grant_table::GrantRef;

/// Virtual device handle (`blkif_vdev_t`).
pub type BlkifVdev = u16;
/// Sector number, in 512-byte units (`blkif_sector_t`).
pub type BlkifSector = u64;

/// Read into the granted pages.
pub const BLKIF_OP_READ: u8 = 0;
/// Write from the granted pages.
pub const BLKIF_OP_WRITE: u8 = 1;
/// Write with barrier semantics (`feature-barrier`).
pub const BLKIF_OP_WRITE_BARRIER: u8 = 2;
/// Flush the disk's write cache (`feature-flush-cache`).
pub const BLKIF_OP_FLUSH_DISKCACHE: u8 = 3;
/// Reserved (used by an old out-of-tree extension).
pub const BLKIF_OP_RESERVED_1: u8 = 4;
/// Discard sectors; the request is a [`BlkifRequestDiscard`] (`feature-discard`).
pub const BLKIF_OP_DISCARD: u8 = 5;
/// Indirect read or write; the request is a [`BlkifRequestIndirect`]
/// (`feature-max-indirect-segments`).
pub const BLKIF_OP_INDIRECT: u8 = 6;

/// Segments in a direct request.
pub const BLKIF_MAX_SEGMENTS_PER_REQUEST: usize = 11;
/// Pages of segments in an indirect request.
pub const BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST: usize = 8;
/// Segments per indirect page (a page of [`BlkifRequestSegment`]).
pub const BLKIF_SEGS_PER_INDIRECT_FRAME: usize = 4096 / size_of::<BlkifRequestSegment>();
/// Bytes per sector in requests.
pub const BLKIF_SECTOR_SIZE: u64 = 512;

/// One granted page of a request (`struct blkif_request_segment`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct BlkifRequestSegment {
    /// Grant of the data page.
    pub gref: GrantRef,
    /// First 512-byte sector used in the page (0..=7).
    pub first_sect: u8,
    /// Last sector used in the page (inclusive, `first_sect..=7`).
    pub last_sect: u8,
    /// Padding.
    pub pad0: u16,
}
const _: () = assert!(size_of::<BlkifRequestSegment>() == 8);

/// A read/write/flush request (`struct blkif_request`), 112 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct BlkifRequest {
    /// `BLKIF_OP_*`.
    pub operation: u8,
    /// Number of valid entries in `seg`.
    pub nr_segments: u8,
    /// Device handle (read/write only).
    pub handle: BlkifVdev,
    /// Padding.
    pub pad0: u32,
    /// Front-end cookie, echoed in the response.
    pub id: u64,
    /// First sector on the disk.
    pub sector_number: BlkifSector,
    /// The data pages.
    pub seg: [BlkifRequestSegment; BLKIF_MAX_SEGMENTS_PER_REQUEST],
}
const _: () = assert!(size_of::<BlkifRequest>() == 112);

/// [`BlkifRequestDiscard::flag`]: erase securely (if `discard-secure`).
pub const BLKIF_DISCARD_SECURE: u8 = 1 << 0;

/// The [`BLKIF_OP_DISCARD`] view of a request slot (`struct blkif_request_discard`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct BlkifRequestDiscard {
    /// [`BLKIF_OP_DISCARD`].
    pub operation: u8,
    /// `BLKIF_DISCARD_*`.
    pub flag: u8,
    /// Device handle.
    pub handle: BlkifVdev,
    /// Padding.
    pub pad0: u32,
    /// Front-end cookie.
    pub id: u64,
    /// First sector.
    pub sector_number: BlkifSector,
    /// Number of sectors.
    pub nr_sectors: u64,
}
const _: () = assert!(size_of::<BlkifRequestDiscard>() == 32);

/// The [`BLKIF_OP_INDIRECT`] view of a request slot (`struct blkif_request_indirect`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct BlkifRequestIndirect {
    /// [`BLKIF_OP_INDIRECT`].
    pub operation: u8,
    /// [`BLKIF_OP_READ`] or [`BLKIF_OP_WRITE`].
    pub indirect_op: u8,
    /// Number of segments in the indirect pages.
    pub nr_segments: u16,
    /// Padding.
    pub pad0: u32,
    /// Front-end cookie.
    pub id: u64,
    /// First sector.
    pub sector_number: BlkifSector,
    /// Device handle.
    pub handle: BlkifVdev,
    /// Padding.
    pub pad1: u16,
    /// Grants of the pages holding the segments.
    pub indirect_grefs: [GrantRef; BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST],
    /// Padding.
    pub pad2: u32,
}
const _: () = assert!(size_of::<BlkifRequestIndirect>() == 64);

/// A response (`struct blkif_response`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct BlkifResponse {
    /// The request's `id`.
    pub id: u64,
    /// The request's `operation`.
    pub operation: u8,
    /// Padding.
    pub pad0: u8,
    /// `BLKIF_RSP_*`.
    pub status: i16,
    /// Padding.
    pub pad1: u32,
}
const _: () = assert!(size_of::<BlkifResponse>() == 16);

/// Response status: the operation is not supported.
pub const BLKIF_RSP_EOPNOTSUPP: i16 = -2;
/// Response status: error.
pub const BLKIF_RSP_ERROR: i16 = -1;
/// Response status: success.
pub const BLKIF_RSP_OKAY: i16 = 0;

/// `info` bit: CD-ROM.
pub const VDISK_CDROM: u32 = 0x1;
/// `info` bit: removable medium.
pub const VDISK_REMOVABLE: u32 = 0x2;
/// `info` bit: read-only.
pub const VDISK_READONLY: u32 = 0x4;

/// The block ring: [`BlkifRequest`] requests, [`BlkifResponse`] responses
/// (`blkif_sring`). Discard and indirect requests travel as the bytes of a
/// `BlkifRequest` slot; reinterpret them with zerocopy according to `operation`.
pub type BlkifSharedRing<'a> = SharedRing<'a, BlkifRequest, BlkifResponse>;

/// Slots in a one-page block ring.
pub const BLKIF_RING_SIZE: u32 = ring_entries::<BlkifRequest, BlkifResponse>(4096);
const _: () = assert!(BLKIF_RING_SIZE == 32);

impl BlkifRequest {
    /// The slot read as a discard request.
    pub fn as_discard(&self) -> BlkifRequestDiscard {
        BlkifRequestDiscard::read_from_prefix(self.as_bytes())
            .map(|(d, _)| d)
            .unwrap_or_default()
    }
    /// The slot read as an indirect request.
    pub fn as_indirect(&self) -> BlkifRequestIndirect {
        BlkifRequestIndirect::read_from_prefix(self.as_bytes())
            .map(|(d, _)| d)
            .unwrap_or_default()
    }
    /// A request slot holding `view` (a discard or indirect request), rest zero.
    pub fn from_view<T: IntoBytes + Immutable>(view: &T) -> Self {
        let mut req = BlkifRequest::default();
        let bytes = view.as_bytes();
        let n = bytes.len().min(size_of::<BlkifRequest>());
        req.as_mut_bytes()[..n].copy_from_slice(&bytes[..n]);
        req
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_round_trip() {
        let d = BlkifRequestDiscard {
            operation: BLKIF_OP_DISCARD,
            flag: BLKIF_DISCARD_SECURE,
            handle: 3,
            id: 9,
            sector_number: 100,
            nr_sectors: 8,
            ..Default::default()
        };
        assert_eq!(BlkifRequest::from_view(&d).as_discard(), d);
        let i = BlkifRequestIndirect {
            operation: BLKIF_OP_INDIRECT,
            nr_segments: 600,
            ..Default::default()
        };
        assert_eq!(BlkifRequest::from_view(&i).as_indirect(), i);
        assert_eq!(BLKIF_SEGS_PER_INDIRECT_FRAME, 512);
    }
}
