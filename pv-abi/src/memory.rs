//! Memory reservation and physmap operations of the `memory_op(cmd, arg)` hypercall
//! (`xen/memory.h`): growing and shrinking a domain, populating its physmap, reading the
//! memory map and the M2P location.
//!
//! Toolstack-only operations (paging, sharing, access) are not mirrored.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::xen::DomId;

/// Allocate extents; [`XenMemoryReservation`], returns the number done.
pub const XENMEM_INCREASE_RESERVATION: u32 = 0;
/// Free extents; [`XenMemoryReservation`], returns the number done.
pub const XENMEM_DECREASE_RESERVATION: u32 = 1;
/// Highest machine frame number; no argument.
pub const XENMEM_MAXIMUM_RAM_PAGE: u32 = 2;
/// Pages currently allocated to a domain; [`XenMemoryDomain`].
pub const XENMEM_CURRENT_RESERVATION: u32 = 3;
/// Page limit of a domain; [`XenMemoryDomain`].
pub const XENMEM_MAXIMUM_RESERVATION: u32 = 4;
/// Frames of the M2P table; [`XenMachphysMfnList`].
pub const XENMEM_MACHPHYS_MFN_LIST: u32 = 5;
/// Allocate and map extents at given guest frames; [`XenMemoryReservation`].
pub const XENMEM_POPULATE_PHYSMAP: u32 = 6;
/// Map a special page (shared info, grant frame, ...) into the physmap;
/// [`XenAddToPhysmap`].
pub const XENMEM_ADD_TO_PHYSMAP: u32 = 7;
/// The domain's memory map (E820 format); [`XenMemoryMap`].
pub const XENMEM_MEMORY_MAP: u32 = 9;
/// The host's memory map (privileged); [`XenMemoryMap`].
pub const XENMEM_MACHINE_MEMORY_MAP: u32 = 10;
/// Exchange extents for others with different constraints; [`XenMemoryExchange`].
pub const XENMEM_EXCHANGE: u32 = 11;
/// Where the M2P is mapped; [`XenMachphysMapping`].
pub const XENMEM_MACHPHYS_MAPPING: u32 = 12;
/// Set a domain's memory map (toolstack); [`XenForeignMemoryMap`].
pub const XENMEM_SET_MEMORY_MAP: u32 = 13;
/// Highest guest frame number of a domain; [`XenMemoryDomain`].
pub const XENMEM_MAXIMUM_GPFN: u32 = 14;
/// Remove a page from the physmap; [`XenRemoveFromPhysmap`].
pub const XENMEM_REMOVE_FROM_PHYSMAP: u32 = 15;
/// Set the populate-on-demand target; [`XenPodTarget`].
pub const XENMEM_SET_POD_TARGET: u32 = 16;
/// Get the populate-on-demand target; [`XenPodTarget`].
pub const XENMEM_GET_POD_TARGET: u32 = 17;
/// Batched [`XENMEM_ADD_TO_PHYSMAP`]; [`XenAddToPhysmapBatch`].
pub const XENMEM_ADD_TO_PHYSMAP_BATCH: u32 = 23;
/// Claim pages for a domain being built; [`XenMemoryReservation`].
pub const XENMEM_CLAIM_PAGES: u32 = 24;
/// M2P frames of the 32-bit compat table; [`XenMachphysMfnList`].
pub const XENMEM_MACHPHYS_COMPAT_MFN_LIST: u32 = 25;
/// Virtual NUMA topology; [`XenVnumaTopologyInfo`].
pub const XENMEM_GET_VNUMAINFO: u32 = 26;
/// Map a resource of another domain; [`XenMemAcquireResource`].
pub const XENMEM_ACQUIRE_RESOURCE: u32 = 28;

/// [`XenMemoryReservation::mem_flags`]: NUMA node flag base (`XENMEMF_node(n)` is
/// `(n + 1) << 8`).
pub const fn xenmemf_node(node: u32) -> u32 {
    (node + 1) << 8
}
/// [`XenMemoryReservation::mem_flags`]: fill the physmap with populate-on-demand
/// entries.
pub const XENMEMF_POPULATE_ON_DEMAND: u32 = 1 << 16;
/// [`XenMemoryReservation::mem_flags`]: allocate only from the given node.
pub const XENMEMF_EXACT_NODE_REQUEST: u32 = 1 << 17;
/// [`XenMemoryReservation::mem_flags`]: the node is a virtual node.
pub const XENMEMF_VNODE: u32 = 1 << 18;

/// Argument of the reservation operations (`struct xen_memory_reservation`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenMemoryReservation {
    /// Guest pointer to an array of `nr_extents` frame numbers (in or out by operation).
    pub extent_start: u64,
    /// Number of extents.
    pub nr_extents: u64,
    /// Each extent is `2^extent_order` pages.
    pub extent_order: u32,
    /// `XENMEMF_*` flags; the low 8 bits limit the machine address width.
    pub mem_flags: u32,
    /// The domain (`DOMID_SELF` unless privileged).
    pub domid: DomId,
    /// Padding.
    pub pad0: [u16; 3],
}
const _: () = assert!(size_of::<XenMemoryReservation>() == 32);

/// Argument of [`XENMEM_EXCHANGE`] (`struct xen_memory_exchange`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenMemoryExchange {
    /// Extents given up.
    pub r#in: XenMemoryReservation,
    /// Extents wanted in exchange.
    pub out: XenMemoryReservation,
    /// Out: number of input extents exchanged; must be zero on entry.
    pub nr_exchanged: u64,
}
const _: () = assert!(size_of::<XenMemoryExchange>() == 72);

/// Argument naming a domain (`struct xen_memory_domain`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenMemoryDomain {
    /// The domain queried.
    pub domid: DomId,
}
const _: () = assert!(size_of::<XenMemoryDomain>() == 2);

/// Argument of [`XENMEM_MACHPHYS_MFN_LIST`] (`struct xen_machphys_mfn_list`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenMachphysMfnList {
    /// In: size of the array.
    pub max_extents: u32,
    /// Padding.
    pub pad0: u32,
    /// Guest pointer to the array of 2 MiB extent bases, filled on return.
    pub extent_start: u64,
    /// Out: entries written.
    pub nr_extents: u32,
    /// Padding.
    pub pad1: u32,
}
const _: () = assert!(size_of::<XenMachphysMfnList>() == 24);

/// Argument of [`XENMEM_MACHPHYS_MAPPING`] (`struct xen_machphys_mapping`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenMachphysMapping {
    /// Start of the M2P's virtual range.
    pub v_start: u64,
    /// End of the M2P's virtual range.
    pub v_end: u64,
    /// Largest machine frame number that can be looked up.
    pub max_mfn: u64,
}
const _: () = assert!(size_of::<XenMachphysMapping>() == 24);

/// Map space: the shared-info page.
pub const XENMAPSPACE_SHARED_INFO: u32 = 0;
/// Map space: a grant-table frame (`idx`; OR [`XENMAPIDX_GRANT_TABLE_STATUS`] for status
/// frames).
pub const XENMAPSPACE_GRANT_TABLE: u32 = 1;
/// Map space: a guest frame (moved).
pub const XENMAPSPACE_GMFN: u32 = 2;
/// Map space: a range of guest frames (`size` pages).
pub const XENMAPSPACE_GMFN_RANGE: u32 = 3;
/// Map space: a frame of another domain (batch only).
pub const XENMAPSPACE_GMFN_FOREIGN: u32 = 4;
/// Map space: device MMIO (ARM).
pub const XENMAPSPACE_DEV_MMIO: u32 = 5;
/// [`XenAddToPhysmap::idx`] flag: a grant status frame.
pub const XENMAPIDX_GRANT_TABLE_STATUS: u64 = 0x8000_0000;

/// Argument of [`XENMEM_ADD_TO_PHYSMAP`] (`struct xen_add_to_physmap`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenAddToPhysmap {
    /// The domain whose physmap changes.
    pub domid: DomId,
    /// Pages in a [`XENMAPSPACE_GMFN_RANGE`].
    pub size: u16,
    /// `XENMAPSPACE_*`.
    pub space: u32,
    /// Index in the space.
    pub idx: u64,
    /// Guest frame where the page appears.
    pub gpfn: u64,
}
const _: () = assert!(size_of::<XenAddToPhysmap>() == 24);

/// Argument of [`XENMEM_ADD_TO_PHYSMAP_BATCH`] (`struct xen_add_to_physmap_batch`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenAddToPhysmapBatch {
    /// The domain whose physmap changes.
    pub domid: DomId,
    /// `XENMAPSPACE_*`.
    pub space: u16,
    /// Number of entries.
    pub size: u16,
    /// The foreign domain for [`XENMAPSPACE_GMFN_FOREIGN`], else zero (C union `u`).
    pub foreign_domid: DomId,
    /// Guest pointer to `size` indexes.
    pub idxs: u64,
    /// Guest pointer to `size` guest frames.
    pub gpfns: u64,
    /// Guest pointer to `size` `i32` error codes, written on return.
    pub errs: u64,
}
const _: () = assert!(size_of::<XenAddToPhysmapBatch>() == 32);

/// Argument of [`XENMEM_REMOVE_FROM_PHYSMAP`] (`struct xen_remove_from_physmap`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenRemoveFromPhysmap {
    /// The domain whose physmap changes.
    pub domid: DomId,
    /// Padding.
    pub pad0: [u16; 3],
    /// The guest frame to unmap.
    pub gpfn: u64,
}
const _: () = assert!(size_of::<XenRemoveFromPhysmap>() == 16);

/// Argument of [`XENMEM_MEMORY_MAP`] and [`XENMEM_MACHINE_MEMORY_MAP`]
/// (`struct xen_memory_map`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenMemoryMap {
    /// In: capacity of `buffer` in entries. Out: entries written.
    pub nr_entries: u32,
    /// Padding.
    pub pad0: u32,
    /// Guest pointer to an array of [`E820Entry`].
    pub buffer: u64,
}
const _: () = assert!(size_of::<XenMemoryMap>() == 16);

/// Argument of [`XENMEM_SET_MEMORY_MAP`] (`struct xen_foreign_memory_map`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenForeignMemoryMap {
    /// The domain.
    pub domid: DomId,
    /// Padding.
    pub pad0: [u16; 3],
    /// The map.
    pub map: XenMemoryMap,
}
const _: () = assert!(size_of::<XenForeignMemoryMap>() == 24);

/// Argument of the populate-on-demand target operations (`struct xen_pod_target`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenPodTarget {
    /// In: target in pages.
    pub target_pages: u64,
    /// Out: total pages.
    pub tot_pages: u64,
    /// Out: pages in the PoD cache.
    pub pod_cache_pages: u64,
    /// Out: outstanding PoD entries.
    pub pod_entries: u64,
    /// In: the domain.
    pub domid: DomId,
    /// Padding.
    pub pad0: [u16; 3],
}
const _: () = assert!(size_of::<XenPodTarget>() == 40);

/// Resource type: an ioreq server's pages.
pub const XENMEM_RESOURCE_IOREQ_SERVER: u16 = 0;
/// Resource type: grant-table frames.
pub const XENMEM_RESOURCE_GRANT_TABLE: u16 = 1;
/// Resource type: processor trace buffers.
pub const XENMEM_RESOURCE_VMTRACE_BUF: u16 = 2;
/// Grant-table resource id: shared frames.
pub const XENMEM_RESOURCE_GRANT_TABLE_ID_SHARED: u32 = 0;
/// Grant-table resource id: status frames.
pub const XENMEM_RESOURCE_GRANT_TABLE_ID_STATUS: u32 = 1;

/// Argument of [`XENMEM_ACQUIRE_RESOURCE`] (`struct xen_mem_acquire_resource`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenMemAcquireResource {
    /// The domain owning the resource.
    pub domid: DomId,
    /// `XENMEM_RESOURCE_*`.
    pub r#type: u16,
    /// Type-specific id.
    pub id: u32,
    /// In/out: number of frames (0 with a null list queries the size).
    pub nr_frames: u32,
    /// Zero.
    pub pad: u32,
    /// Index of the first frame.
    pub frame: u64,
    /// Guest pointer to the frame list.
    pub frame_list: u64,
}
const _: () = assert!(size_of::<XenMemAcquireResource>() == 32);

/// One virtual NUMA memory range (`struct xen_vmemrange`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenVmemrange {
    /// Start address.
    pub start: u64,
    /// End address.
    pub end: u64,
    /// Flags.
    pub flags: u32,
    /// Virtual node id.
    pub nid: u32,
}
const _: () = assert!(size_of::<XenVmemrange>() == 24);

/// Argument of [`XENMEM_GET_VNUMAINFO`] (`struct xen_vnuma_topology_info`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenVnumaTopologyInfo {
    /// In: the domain.
    pub domid: DomId,
    /// Padding.
    pub pad: u16,
    /// In/out: number of virtual nodes.
    pub nr_vnodes: u32,
    /// In/out: number of VCPUs.
    pub nr_vcpus: u32,
    /// In/out: number of memory ranges.
    pub nr_vmemranges: u32,
    /// Guest pointer to the `nr_vnodes^2` distance table.
    pub vdistance: u64,
    /// Guest pointer to the VCPU-to-node table.
    pub vcpu_to_vnode: u64,
    /// Guest pointer to the [`XenVmemrange`] array.
    pub vmemrange: u64,
}
const _: () = assert!(size_of::<XenVnumaTopologyInfo>() == 40);

/// E820 type: usable RAM.
pub const E820_RAM: u32 = 1;
/// E820 type: reserved.
pub const E820_RESERVED: u32 = 2;
/// E820 type: ACPI tables.
pub const E820_ACPI: u32 = 3;
/// E820 type: ACPI NVS.
pub const E820_NVS: u32 = 4;
/// E820 type: unusable.
pub const E820_UNUSABLE: u32 = 5;

/// One entry of a memory map as [`XENMEM_MEMORY_MAP`] returns it: the BIOS
/// `INT 15h, EAX=E820h` format, packed to 20 bytes.
///
/// Xen's public headers do not declare this structure (they refer to the BIOS format),
/// so the conformance test cannot check it against C; the `E820_*` type numbers are the
/// BIOS/ACPI ones.
#[repr(C, packed)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct E820Entry {
    /// Start address.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// `E820_*`.
    pub r#type: u32,
}
const _: () = assert!(size_of::<E820Entry>() == 20);
