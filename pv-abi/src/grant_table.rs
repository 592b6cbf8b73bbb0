//! Grant tables (`xen/grant_table.h`): how a domain lets another domain map or copy one
//! of its frames, and the `grant_table_op` sub-operations.
//!
//! The granting domain writes an entry in its grant table (a set of frames shared with
//! the hypervisor) naming the peer domain and the frame; the peer then maps the frame
//! with [`GNTTABOP_MAP_GRANT_REF`] or copies through it with [`GNTTABOP_COPY`], naming
//! it by `(granting domain, grant reference)`. [`GrantTableV1`] implements the granting
//! side's update protocol over shared memory.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU16, Ordering, fence};

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::errno::Errno;
use crate::xen::DomId;

/// Index of an entry in a domain's grant table (`grant_ref_t`).
pub type GrantRef = u32;
/// Handle of a grant mapping, returned by a map and needed to unmap (`grant_handle_t`).
pub type GrantHandle = u32;
/// Version 2 status word (`grant_status_t`).
pub type GrantStatus = u16;

/// A version 1 grant entry (`struct grant_entry_v1`), 8 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GrantEntryV1 {
    /// `GTF_*` type and flags; written by the granter (type) and the hypervisor (use).
    pub flags: u16,
    /// The domain given access.
    pub domid: DomId,
    /// The frame (or, after a transfer, the transferred frame).
    pub frame: u32,
}
const _: () = assert!(size_of::<GrantEntryV1>() == 8);

/// Number of v1 entries in one 4 KiB grant-table frame.
pub const GRANT_ENTRIES_V1_PER_PAGE: usize = 4096 / size_of::<GrantEntryV1>();

/// Entries at the start of the table kept across a table reset.
pub const GNTTAB_NR_RESERVED_ENTRIES: u32 = 8;
/// Reserved entry granting the console ring to the toolstack.
pub const GNTTAB_RESERVED_CONSOLE: u32 = 0;
/// Reserved entry granting the xenstore ring to the toolstack.
pub const GNTTAB_RESERVED_XENSTORE: u32 = 1;

/// Entry type: unused.
pub const GTF_INVALID: u16 = 0;
/// Entry type: `domid` may map or copy `frame`.
pub const GTF_PERMIT_ACCESS: u16 = 1;
/// Entry type: `domid` may transfer a frame into this slot.
pub const GTF_ACCEPT_TRANSFER: u16 = 2;
/// Entry type: transitive grant (version 2 only).
pub const GTF_TRANSITIVE: u16 = 3;
/// Mask of the entry type.
pub const GTF_TYPE_MASK: u16 = 3;
/// Access is read-only.
pub const GTF_READONLY: u16 = 1 << 2;
/// Set by the hypervisor while the frame is mapped or copied for reading.
pub const GTF_READING: u16 = 1 << 3;
/// Set by the hypervisor while the frame is mapped or copied for writing.
pub const GTF_WRITING: u16 = 1 << 4;
/// Map with PWT.
pub const GTF_PWT: u16 = 1 << 5;
/// Map with PCD.
pub const GTF_PCD: u16 = 1 << 6;
/// Map with PAT.
pub const GTF_PAT: u16 = 1 << 7;
/// Sub-page grant (version 2 only).
pub const GTF_SUB_PAGE: u16 = 1 << 8;
/// Transfer entry: the transfer has started; do not touch the entry.
pub const GTF_TRANSFER_COMMITTED: u16 = 1 << 2;
/// Transfer entry: the transfer is done; `frame` holds the new frame.
pub const GTF_TRANSFER_COMPLETED: u16 = 1 << 3;

/// Header common to the version 2 entry views (`struct grant_entry_header`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GrantEntryHeader {
    /// `GTF_*`.
    pub flags: u16,
    /// The domain given access.
    pub domid: DomId,
}
const _: () = assert!(size_of::<GrantEntryHeader>() == 4);

/// A version 2 grant entry (`union grant_entry_v2`), 16 bytes. The C union's views
/// share the header; `word1` is `pad0` (full page), `page_off | length << 16`
/// (sub-page) or `trans_domid | pad << 16` (transitive); `frame` is the frame (full or
/// sub-page) or, in its low half, the transitive grant reference.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GrantEntryV2 {
    /// Flags and domain.
    pub hdr: GrantEntryHeader,
    /// View-dependent (see the type documentation).
    pub word1: u32,
    /// Frame, or transitive grant reference.
    pub frame: u64,
}
const _: () = assert!(size_of::<GrantEntryV2>() == 16);

impl GrantEntryV2 {
    /// Sub-page view: offset in the frame.
    pub const fn page_off(&self) -> u16 {
        self.word1 as u16
    }
    /// Sub-page view: length.
    pub const fn length(&self) -> u16 {
        (self.word1 >> 16) as u16
    }
    /// Transitive view: the domain whose grant is passed on.
    pub const fn trans_domid(&self) -> DomId {
        self.word1 as DomId
    }
    /// Transitive view: that domain's grant reference.
    pub const fn gref(&self) -> GrantRef {
        self.frame as GrantRef
    }
}

/// Map a granted frame; [`GnttabMapGrantRef`] array.
pub const GNTTABOP_MAP_GRANT_REF: u32 = 0;
/// Unmap; [`GnttabUnmapGrantRef`] array.
pub const GNTTABOP_UNMAP_GRANT_REF: u32 = 1;
/// Size the caller's table and get its frames; [`GnttabSetupTable`].
pub const GNTTABOP_SETUP_TABLE: u32 = 2;
/// Dump a table to the hypervisor console (debug); [`GnttabDumpTable`].
pub const GNTTABOP_DUMP_TABLE: u32 = 3;
/// Transfer frame ownership; [`GnttabTransfer`] array.
pub const GNTTABOP_TRANSFER: u32 = 4;
/// Copy between granted and local frames; [`GnttabCopy`] array.
pub const GNTTABOP_COPY: u32 = 5;
/// Current and maximum table size; [`GnttabQuerySize`].
pub const GNTTABOP_QUERY_SIZE: u32 = 6;
/// Unmap and put another mapping in its place; [`GnttabUnmapAndReplace`] array.
pub const GNTTABOP_UNMAP_AND_REPLACE: u32 = 7;
/// Select grant-table version 1 or 2; [`GnttabSetVersion`].
pub const GNTTABOP_SET_VERSION: u32 = 8;
/// Version 2 status frames; [`GnttabGetStatusFrames`].
pub const GNTTABOP_GET_STATUS_FRAMES: u32 = 9;
/// Current version; [`GnttabGetVersion`].
pub const GNTTABOP_GET_VERSION: u32 = 10;
/// Swap two entries; [`GnttabSwapGrantRef`] array.
pub const GNTTABOP_SWAP_GRANT_REF: u32 = 11;
/// Cache maintenance on granted memory (ARM); [`GnttabCacheFlush`] array.
pub const GNTTABOP_CACHE_FLUSH: u32 = 12;

/// [`GnttabMapGrantRef::flags`]: map for device (DMA) access.
pub const GNTMAP_DEVICE_MAP: u32 = 1 << 0;
/// Map for CPU access at `host_addr`.
pub const GNTMAP_HOST_MAP: u32 = 1 << 1;
/// Map read-only.
pub const GNTMAP_READONLY: u32 = 1 << 2;
/// The host mapping is also usable by the current application (user mode).
pub const GNTMAP_APPLICATION_MAP: u32 = 1 << 3;
/// `host_addr` is the machine address of the PTE to write, not a virtual address.
pub const GNTMAP_CONTAINS_PTE: u32 = 1 << 4;
/// First bit passed through to the PTE's available bits.
pub const GNTMAP_GUEST_AVAIL0: u32 = 16;
/// Bits passed through to the PTE's available bits.
pub const GNTMAP_GUEST_AVAIL_MASK: u32 = !0 << GNTMAP_GUEST_AVAIL0;

/// Per-request status: success.
pub const GNTST_OKAY: i16 = 0;
/// Unspecified error.
pub const GNTST_GENERAL_ERROR: i16 = -1;
/// Unknown domain.
pub const GNTST_BAD_DOMAIN: i16 = -2;
/// Unknown or unsuitable grant reference.
pub const GNTST_BAD_GNTREF: i16 = -3;
/// Unknown or unsuitable mapping handle.
pub const GNTST_BAD_HANDLE: i16 = -4;
/// Unsuitable virtual address.
pub const GNTST_BAD_VIRT_ADDR: i16 = -5;
/// Unsuitable device address.
pub const GNTST_BAD_DEV_ADDR: i16 = -6;
/// No room in the I/O MMU.
pub const GNTST_NO_DEVICE_SPACE: i16 = -7;
/// Not permitted.
pub const GNTST_PERMISSION_DENIED: i16 = -8;
/// Unsuitable page.
pub const GNTST_BAD_PAGE: i16 = -9;
/// A copy segment crosses a page boundary.
pub const GNTST_BAD_COPY_ARG: i16 = -10;
/// Transferred frame address too large.
pub const GNTST_ADDRESS_TOO_BIG: i16 = -11;
/// Not done; try again.
pub const GNTST_EAGAIN: i16 = -12;
/// Out of space (handles, ...).
pub const GNTST_NO_SPACE: i16 = -13;

/// A short description of a `GNTST_*` value.
pub const fn gntst_message(status: i16) -> &'static str {
    match status {
        GNTST_OKAY => "okay",
        GNTST_GENERAL_ERROR => "general error",
        GNTST_BAD_DOMAIN => "unknown domain",
        GNTST_BAD_GNTREF => "bad grant reference",
        GNTST_BAD_HANDLE => "bad mapping handle",
        GNTST_BAD_VIRT_ADDR => "bad virtual address",
        GNTST_BAD_DEV_ADDR => "bad device address",
        GNTST_NO_DEVICE_SPACE => "no I/O MMU space",
        GNTST_PERMISSION_DENIED => "permission denied",
        GNTST_BAD_PAGE => "bad page",
        GNTST_BAD_COPY_ARG => "copy crosses a page boundary",
        GNTST_ADDRESS_TOO_BIG => "frame address too large",
        GNTST_EAGAIN => "try again",
        GNTST_NO_SPACE => "out of space",
        _ => "unknown status",
    }
}

/// One request of [`GNTTABOP_MAP_GRANT_REF`] (`struct gnttab_map_grant_ref`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GnttabMapGrantRef {
    /// In: virtual address (or PTE machine address with [`GNTMAP_CONTAINS_PTE`]).
    pub host_addr: u64,
    /// In: `GNTMAP_*`.
    pub flags: u32,
    /// In: the grant reference in `dom`'s table.
    pub r#ref: GrantRef,
    /// In: the granting domain.
    pub dom: DomId,
    /// Out: `GNTST_*`.
    pub status: i16,
    /// Out: handle for the unmap.
    pub handle: GrantHandle,
    /// Out: bus address for device mappings.
    pub dev_bus_addr: u64,
}
const _: () = assert!(size_of::<GnttabMapGrantRef>() == 32);

/// One request of [`GNTTABOP_UNMAP_GRANT_REF`] (`struct gnttab_unmap_grant_ref`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GnttabUnmapGrantRef {
    /// In: the mapped address (0 if no host mapping).
    pub host_addr: u64,
    /// In: the device address (0 if no device mapping).
    pub dev_bus_addr: u64,
    /// In: the handle from the map.
    pub handle: GrantHandle,
    /// Out: `GNTST_*`.
    pub status: i16,
    /// Padding.
    pub pad0: u16,
}
const _: () = assert!(size_of::<GnttabUnmapGrantRef>() == 24);

/// Argument of [`GNTTABOP_SETUP_TABLE`] (`struct gnttab_setup_table`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GnttabSetupTable {
    /// In: the domain (`DOMID_SELF`).
    pub dom: DomId,
    /// Padding.
    pub pad0: u16,
    /// In: number of table frames wanted.
    pub nr_frames: u32,
    /// Out: `GNTST_*`.
    pub status: i16,
    /// Padding.
    pub pad1: [u16; 3],
    /// In: guest pointer to an array of `nr_frames` frame numbers, filled on return.
    pub frame_list: u64,
}
const _: () = assert!(size_of::<GnttabSetupTable>() == 24);

/// Argument of [`GNTTABOP_DUMP_TABLE`] (`struct gnttab_dump_table`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GnttabDumpTable {
    /// In: the domain.
    pub dom: DomId,
    /// Out: `GNTST_*`.
    pub status: i16,
}
const _: () = assert!(size_of::<GnttabDumpTable>() == 4);

/// One request of [`GNTTABOP_TRANSFER`] (`struct gnttab_transfer`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GnttabTransfer {
    /// In: the frame given away.
    pub mfn: u64,
    /// In: the receiving domain.
    pub domid: DomId,
    /// Padding.
    pub pad0: u16,
    /// In: the receiver's accept-transfer grant reference.
    pub r#ref: GrantRef,
    /// Out: `GNTST_*`.
    pub status: i16,
    /// Padding.
    pub pad1: [u16; 3],
}
const _: () = assert!(size_of::<GnttabTransfer>() == 24);

/// [`GnttabCopy::flags`]: the source is a grant reference, not a local frame.
pub const GNTCOPY_SOURCE_GREF: u16 = 1 << 0;
/// [`GnttabCopy::flags`]: the destination is a grant reference, not a local frame.
pub const GNTCOPY_DEST_GREF: u16 = 1 << 1;

/// One end of a [`GnttabCopy`] (`struct gnttab_copy_ptr`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GnttabCopyPtr {
    /// A grant reference (with the matching `GNTCOPY_*_GREF` flag; low 32 bits) or a
    /// local frame number (the C union `u`).
    pub u: u64,
    /// The domain owning the reference or frame.
    pub domid: DomId,
    /// Byte offset in the frame.
    pub offset: u16,
    /// Padding.
    pub pad0: u32,
}
const _: () = assert!(size_of::<GnttabCopyPtr>() == 16);

impl GnttabCopyPtr {
    /// A granted frame: `gref` in `domid`'s table, at `offset`.
    pub const fn gref(domid: DomId, gref: GrantRef, offset: u16) -> Self {
        GnttabCopyPtr {
            u: gref as u64,
            domid,
            offset,
            pad0: 0,
        }
    }
    /// A frame of `domid` (normally `DOMID_SELF`) by number, at `offset`.
    pub const fn frame(domid: DomId, gmfn: u64, offset: u16) -> Self {
        GnttabCopyPtr {
            u: gmfn,
            domid,
            offset,
            pad0: 0,
        }
    }
}

/// One request of [`GNTTABOP_COPY`] (`struct gnttab_copy`); neither end may cross a
/// page boundary.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GnttabCopy {
    /// In: where to copy from.
    pub source: GnttabCopyPtr,
    /// In: where to copy to.
    pub dest: GnttabCopyPtr,
    /// In: number of bytes.
    pub len: u16,
    /// In: `GNTCOPY_*`.
    pub flags: u16,
    /// Out: `GNTST_*`.
    pub status: i16,
    /// Padding.
    pub pad0: u16,
}
const _: () = assert!(size_of::<GnttabCopy>() == 40);

/// Argument of [`GNTTABOP_QUERY_SIZE`] (`struct gnttab_query_size`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GnttabQuerySize {
    /// In: the domain.
    pub dom: DomId,
    /// Padding.
    pub pad0: u16,
    /// Out: current number of table frames.
    pub nr_frames: u32,
    /// Out: maximum number of table frames.
    pub max_nr_frames: u32,
    /// Out: `GNTST_*`.
    pub status: i16,
    /// Padding.
    pub pad1: u16,
}
const _: () = assert!(size_of::<GnttabQuerySize>() == 16);

/// One request of [`GNTTABOP_UNMAP_AND_REPLACE`] (`struct gnttab_unmap_and_replace`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GnttabUnmapAndReplace {
    /// In: the mapped address.
    pub host_addr: u64,
    /// In: the address whose mapping moves to `host_addr`.
    pub new_addr: u64,
    /// In: the handle from the map.
    pub handle: GrantHandle,
    /// Out: `GNTST_*`.
    pub status: i16,
    /// Padding.
    pub pad0: u16,
}
const _: () = assert!(size_of::<GnttabUnmapAndReplace>() == 24);

/// Argument of [`GNTTABOP_SET_VERSION`] (`struct gnttab_set_version`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GnttabSetVersion {
    /// In: the wanted version. Out: the version in force.
    pub version: u32,
}
const _: () = assert!(size_of::<GnttabSetVersion>() == 4);

/// Argument of [`GNTTABOP_GET_STATUS_FRAMES`] (`struct gnttab_get_status_frames`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GnttabGetStatusFrames {
    /// In: number of frames wanted.
    pub nr_frames: u32,
    /// In: the domain.
    pub dom: DomId,
    /// Out: `GNTST_*`.
    pub status: i16,
    /// In: guest pointer to an array of `nr_frames` `u64`, filled on return.
    pub frame_list: u64,
}
const _: () = assert!(size_of::<GnttabGetStatusFrames>() == 16);

/// Argument of [`GNTTABOP_GET_VERSION`] (`struct gnttab_get_version`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GnttabGetVersion {
    /// In: the domain.
    pub dom: DomId,
    /// Padding.
    pub pad: u16,
    /// Out: the version.
    pub version: u32,
}
const _: () = assert!(size_of::<GnttabGetVersion>() == 8);

/// One request of [`GNTTABOP_SWAP_GRANT_REF`] (`struct gnttab_swap_grant_ref`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GnttabSwapGrantRef {
    /// In: first entry.
    pub ref_a: GrantRef,
    /// In: second entry.
    pub ref_b: GrantRef,
    /// Out: `GNTST_*`.
    pub status: i16,
    /// Padding.
    pub pad0: u16,
}
const _: () = assert!(size_of::<GnttabSwapGrantRef>() == 12);

/// [`GnttabCacheFlush::op`]: clean (write back).
pub const GNTTAB_CACHE_CLEAN: u32 = 1 << 0;
/// [`GnttabCacheFlush::op`]: invalidate.
pub const GNTTAB_CACHE_INVAL: u32 = 1 << 1;
/// [`GnttabCacheFlush::op`]: `a` is a grant reference, not a bus address.
pub const GNTTAB_CACHE_SOURCE_GREF: u32 = 1 << 31;

/// One request of [`GNTTABOP_CACHE_FLUSH`] (`struct gnttab_cache_flush`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GnttabCacheFlush {
    /// Bus address, or grant reference (low 32 bits) with
    /// [`GNTTAB_CACHE_SOURCE_GREF`].
    pub a: u64,
    /// Offset in the grant.
    pub offset: u16,
    /// Length in the grant.
    pub length: u16,
    /// `GNTTAB_CACHE_*`.
    pub op: u32,
}
const _: () = assert!(size_of::<GnttabCacheFlush>() == 16);

/// The granting side of a version 1 grant table in shared memory.
///
/// The table's frames are shared with the hypervisor, which sets [`GTF_READING`] and
/// [`GTF_WRITING`] while the peer uses an entry. Updates follow Xen's protocol: to
/// grant, write `domid` and `frame`, then (after a release fence) `flags`; to revoke,
/// compare-and-swap `flags` to 0 only if the entry is not in use.
#[derive(Debug)]
pub struct GrantTableV1 {
    entries: NonNull<GrantEntryV1>,
    len: usize,
}

// SAFETY: the table is shared memory updated only with atomic or volatile accesses;
// sharing the handle between CPUs is what the protocol is designed for.
unsafe impl Send for GrantTableV1 {}
// SAFETY: as above. The methods that take `&self` only load `flags`, swap it by
// compare-and-swap, or read the entry; the one that writes `domid` and `frame`,
// `grant_access`, takes `&mut self`, so no two threads of this domain write an entry at
// once (share the table behind a lock to grant from several).
unsafe impl Sync for GrantTableV1 {}

impl GrantTableV1 {
    /// Wraps `len` entries at `entries`.
    ///
    /// # Safety
    /// `entries` must point to `len` properly aligned [`GrantEntryV1`] that stay valid
    /// for the lifetime of the returned value and are accessed by nothing else in this
    /// domain except through it (the hypervisor may access them concurrently).
    pub unsafe fn from_raw(entries: *mut GrantEntryV1, len: usize) -> Option<Self> {
        Some(GrantTableV1 {
            entries: NonNull::new(entries)?,
            len,
        })
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn entry(&self, gref: GrantRef) -> Result<*mut GrantEntryV1, Errno> {
        let index = gref as usize;
        if index >= self.len {
            return Err(Errno::EINVAL);
        }
        // SAFETY: `index < len`, so the offset stays inside the table (`from_raw`).
        Ok(unsafe { self.entries.as_ptr().add(index) })
    }

    fn flags(&self, entry: *mut GrantEntryV1) -> &AtomicU16 {
        // SAFETY: `entry` is a valid, aligned entry (see `entry`); `flags` is its first
        // field, 2-byte aligned, and is only ever accessed atomically by this domain.
        unsafe { AtomicU16::from_ptr(&raw mut (*entry).flags) }
    }

    /// Lets `domid` map or copy `frame`, read-only if `readonly`.
    ///
    /// Fails with `EBUSY` if the entry is already in use. Takes `&mut self`: the check
    /// that the entry is free and the writes that fill it are separate steps, so two
    /// callers granting one entry at once could both succeed, with each other's fields
    /// (found by review, when this took `&self`).
    pub fn grant_access(
        &mut self,
        gref: GrantRef,
        domid: DomId,
        frame: u32,
        readonly: bool,
    ) -> Result<(), Errno> {
        let entry = self.entry(gref)?;
        if self.flags(entry).load(Ordering::Acquire) != GTF_INVALID {
            return Err(Errno::EBUSY);
        }
        // SAFETY: the entry is valid (see `entry`) and invalid, so the hypervisor does not
        // read these fields now; volatile writes because the memory is shared.
        unsafe {
            (&raw mut (*entry).domid).write_volatile(domid);
            (&raw mut (*entry).frame).write_volatile(frame);
        }
        fence(Ordering::Release);
        let flags = GTF_PERMIT_ACCESS | if readonly { GTF_READONLY } else { 0 };
        self.flags(entry).store(flags, Ordering::Release);
        Ok(())
    }

    /// Revokes the grant in `gref`; fails with `EBUSY` while the peer still has it mapped
    /// or a copy is in progress (retry later).
    pub fn end_access(&self, gref: GrantRef) -> Result<(), Errno> {
        let flags = self.flags(self.entry(gref)?);
        let mut current = flags.load(Ordering::Acquire);
        loop {
            if current & (GTF_READING | GTF_WRITING) != 0 {
                return Err(Errno::EBUSY);
            }
            match flags.compare_exchange(current, 0, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(()),
                Err(now) => current = now,
            }
        }
    }

    /// Whether the peer currently uses the entry (mapped or copying).
    pub fn in_use(&self, gref: GrantRef) -> Result<bool, Errno> {
        let flags = self.flags(self.entry(gref)?).load(Ordering::Acquire);
        Ok(flags & (GTF_READING | GTF_WRITING) != 0)
    }

    /// A snapshot of the entry (volatile read).
    pub fn read(&self, gref: GrantRef) -> Result<GrantEntryV1, Errno> {
        let entry = self.entry(gref)?;
        let flags = self.flags(entry).load(Ordering::Acquire);
        // SAFETY: the entry is valid (see `entry`); volatile because it is shared.
        let (domid, frame) = unsafe {
            (
                (&raw const (*entry).domid).read_volatile(),
                (&raw const (*entry).frame).read_volatile(),
            )
        };
        Ok(GrantEntryV1 {
            flags,
            domid,
            frame,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_and_revoke() {
        let mut page = [GrantEntryV1::default(); GRANT_ENTRIES_V1_PER_PAGE];
        // SAFETY: `page` outlives `table` and is only used through it below.
        let mut table = unsafe { GrantTableV1::from_raw(page.as_mut_ptr(), page.len()) }.unwrap();
        assert_eq!(table.len(), 512);
        table.grant_access(8, 1, 0x1234, true).unwrap();
        assert_eq!(
            table.read(8).unwrap(),
            GrantEntryV1 {
                flags: GTF_PERMIT_ACCESS | GTF_READONLY,
                domid: 1,
                frame: 0x1234
            }
        );
        assert_eq!(table.grant_access(8, 1, 0x1234, true), Err(Errno::EBUSY));
        // The "hypervisor" marks it mapped.
        table
            .flags(table.entry(8).unwrap())
            .fetch_or(GTF_READING, Ordering::SeqCst);
        assert_eq!(table.in_use(8), Ok(true));
        assert_eq!(table.end_access(8), Err(Errno::EBUSY));
        table
            .flags(table.entry(8).unwrap())
            .fetch_and(!GTF_READING, Ordering::SeqCst);
        assert_eq!(table.end_access(8), Ok(()));
        assert_eq!(table.read(8).unwrap().flags, GTF_INVALID);
        assert_eq!(table.grant_access(512, 1, 1, false), Err(Errno::EINVAL));
        assert_eq!(page[8].frame, 0x1234);
    }

    #[test]
    fn messages() {
        assert_eq!(gntst_message(GNTST_BAD_GNTREF), "bad grant reference");
        assert_eq!(gntst_message(-100), "unknown status");
        assert_eq!(GNTMAP_GUEST_AVAIL_MASK, 0xffff_0000);
    }
}
