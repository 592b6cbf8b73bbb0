//! Physical device operations of the `physdev_op(cmd, arg)` hypercall
//! (`xen/physdev.h`): I/O privilege, I/O port bitmaps and physical IRQ basics.
//!
//! `PHYSDEVOP_set_iopl` and `PHYSDEVOP_set_iobitmap` are open to every PV guest; most
//! IRQ and PCI operations need a privileged (hardware) domain.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::xen::DomId;

/// Obsolete number for the IRQ unmask notification (`PHYSDEVOP_IRQ_UNMASK_NOTIFY`).
pub const PHYSDEVOP_IRQ_UNMASK_NOTIFY: u32 = 4;
/// Query an IRQ's status; [`PhysdevIrqStatusQuery`].
pub const PHYSDEVOP_IRQ_STATUS_QUERY: u32 = 5;
/// Set the virtual I/O privilege level; [`PhysdevSetIopl`].
pub const PHYSDEVOP_SET_IOPL: u32 = 6;
/// Set the I/O port permission bitmap; [`PhysdevSetIobitmap`].
pub const PHYSDEVOP_SET_IOBITMAP: u32 = 7;
/// Read an IO-APIC register; [`PhysdevApic`].
pub const PHYSDEVOP_APIC_READ: u32 = 8;
/// Write an IO-APIC register; [`PhysdevApic`].
pub const PHYSDEVOP_APIC_WRITE: u32 = 9;
/// Allocate a vector for an IRQ; [`PhysdevIrq`].
pub const PHYSDEVOP_ALLOC_IRQ_VECTOR: u32 = 10;
/// Free an IRQ's vector; [`PhysdevIrq`].
pub const PHYSDEVOP_FREE_IRQ_VECTOR: u32 = 11;
/// Signal end of interrupt for a PIRQ; [`PhysdevEoi`].
pub const PHYSDEVOP_EOI: u32 = 12;
/// Map a GSI or MSI to a PIRQ; [`PhysdevMapPirq`].
pub const PHYSDEVOP_MAP_PIRQ: u32 = 13;
/// Unmap a PIRQ; [`PhysdevUnmapPirq`].
pub const PHYSDEVOP_UNMAP_PIRQ: u32 = 14;
/// Report a PCI device (old form); [`PhysdevManagePci`].
pub const PHYSDEVOP_MANAGE_PCI_ADD: u32 = 15;
/// Remove a PCI device (old form); [`PhysdevManagePci`].
pub const PHYSDEVOP_MANAGE_PCI_REMOVE: u32 = 16;
/// Register the PIRQ EOI bitmap frame (v1 semantics); [`PhysdevPirqEoiGmfn`].
pub const PHYSDEVOP_PIRQ_EOI_GMFN_V1: u32 = 17;
/// Restore a device's MSI state; [`PhysdevRestoreMsi`].
pub const PHYSDEVOP_RESTORE_MSI: u32 = 19;
/// Report a PCI device with SR-IOV information; [`PhysdevManagePciExt`].
pub const PHYSDEVOP_MANAGE_PCI_ADD_EXT: u32 = 20;
/// Configure a GSI's trigger and polarity; [`PhysdevSetupGsi`].
pub const PHYSDEVOP_SETUP_GSI: u32 = 21;
/// Allocate an unused PIRQ; [`PhysdevGetFreePirq`].
pub const PHYSDEVOP_GET_FREE_PIRQ: u32 = 23;
/// Report a reserved MMCONFIG area; [`PhysdevPciMmcfgReserved`].
pub const PHYSDEVOP_PCI_MMCFG_RESERVED: u32 = 24;
/// Report a PCI device; [`PhysdevPciDeviceAdd`].
pub const PHYSDEVOP_PCI_DEVICE_ADD: u32 = 25;
/// Remove a PCI device; [`PhysdevPciDevice`].
pub const PHYSDEVOP_PCI_DEVICE_REMOVE: u32 = 26;
/// Restore MSI state (with segment); [`PhysdevPciDevice`].
pub const PHYSDEVOP_RESTORE_MSI_EXT: u32 = 27;
/// Register the PIRQ EOI bitmap frame (v2 semantics); [`PhysdevPirqEoiGmfn`].
pub const PHYSDEVOP_PIRQ_EOI_GMFN_V2: u32 = 28;
/// USB debug port coordination; [`PhysdevDbgpOp`].
pub const PHYSDEVOP_DBGP_OP: u32 = 29;
/// Prepare MSI-X; [`PhysdevPciDevice`].
pub const PHYSDEVOP_PREPARE_MSIX: u32 = 30;
/// Release MSI-X; [`PhysdevPciDevice`].
pub const PHYSDEVOP_RELEASE_MSIX: u32 = 31;

/// Argument of [`PHYSDEVOP_EOI`].
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PhysdevEoi {
    /// The PIRQ.
    pub irq: u32,
}
const _: () = assert!(size_of::<PhysdevEoi>() == 4);

/// Argument of the `PHYSDEVOP_pirq_eoi_gmfn_*` operations.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PhysdevPirqEoiGmfn {
    /// Frame holding the bitmap of PIRQs needing EOI.
    pub gmfn: u64,
}
const _: () = assert!(size_of::<PhysdevPirqEoiGmfn>() == 8);

/// [`PhysdevIrqStatusQuery::flags`]: the IRQ needs `PHYSDEVOP_eoi` after service.
pub const XENIRQSTAT_NEEDS_EOI: u32 = 1 << 0;
/// [`PhysdevIrqStatusQuery::flags`]: the IRQ is shared between domains.
pub const XENIRQSTAT_SHARED: u32 = 1 << 1;

/// Argument of [`PHYSDEVOP_IRQ_STATUS_QUERY`].
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PhysdevIrqStatusQuery {
    /// In: the IRQ.
    pub irq: u32,
    /// Out: `XENIRQSTAT_*`.
    pub flags: u32,
}
const _: () = assert!(size_of::<PhysdevIrqStatusQuery>() == 8);

/// Argument of [`PHYSDEVOP_SET_IOPL`].
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PhysdevSetIopl {
    /// The new virtual IOPL, 0..=3.
    pub iopl: u32,
}
const _: () = assert!(size_of::<PhysdevSetIopl>() == 4);

/// Argument of [`PHYSDEVOP_SET_IOBITMAP`].
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PhysdevSetIobitmap {
    /// Guest pointer to the bitmap (a set bit denies the port, as in a TSS).
    pub bitmap: u64,
    /// Number of ports the bitmap covers.
    pub nr_ports: u32,
    /// Padding.
    pub pad0: u32,
}
const _: () = assert!(size_of::<PhysdevSetIobitmap>() == 16);

/// Argument of [`PHYSDEVOP_APIC_READ`] and [`PHYSDEVOP_APIC_WRITE`].
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PhysdevApic {
    /// In: IO-APIC physical base.
    pub apic_physbase: u64,
    /// In: register.
    pub reg: u32,
    /// In (write) or out (read): value.
    pub value: u32,
}
const _: () = assert!(size_of::<PhysdevApic>() == 16);

/// Argument of [`PHYSDEVOP_ALLOC_IRQ_VECTOR`] and [`PHYSDEVOP_FREE_IRQ_VECTOR`].
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PhysdevIrq {
    /// In: the IRQ.
    pub irq: u32,
    /// In or out: the vector.
    pub vector: u32,
}
const _: () = assert!(size_of::<PhysdevIrq>() == 8);

/// [`PhysdevMapPirq::type`]: MSI.
pub const MAP_PIRQ_TYPE_MSI: i32 = 0x0;
/// [`PhysdevMapPirq::type`]: GSI.
pub const MAP_PIRQ_TYPE_GSI: i32 = 0x1;
/// [`PhysdevMapPirq::type`]: unknown.
pub const MAP_PIRQ_TYPE_UNKNOWN: i32 = 0x2;
/// [`PhysdevMapPirq::type`]: MSI with PCI segment in `bus[31:16]`.
pub const MAP_PIRQ_TYPE_MSI_SEG: i32 = 0x3;
/// [`PhysdevMapPirq::type`]: multi-vector MSI.
pub const MAP_PIRQ_TYPE_MULTI_MSI: i32 = 0x4;

/// Argument of [`PHYSDEVOP_MAP_PIRQ`].
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PhysdevMapPirq {
    /// The domain.
    pub domid: DomId,
    /// Padding.
    pub pad0: u16,
    /// `MAP_PIRQ_TYPE_*`.
    pub r#type: i32,
    /// GSI or MSI index.
    pub index: i32,
    /// In (wanted, or -1) / out: the PIRQ.
    pub pirq: i32,
    /// PCI bus (segment in the high 16 bits for the segmented types).
    pub bus: i32,
    /// PCI device/function.
    pub devfn: i32,
    /// MSI entry number (out: count for multi-MSI).
    pub entry_nr: i32,
    /// Padding.
    pub pad1: u32,
    /// MSI-X table base.
    pub table_base: u64,
}
const _: () = assert!(size_of::<PhysdevMapPirq>() == 40);

/// Argument of [`PHYSDEVOP_UNMAP_PIRQ`].
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PhysdevUnmapPirq {
    /// The domain.
    pub domid: DomId,
    /// Padding.
    pub pad0: u16,
    /// The PIRQ.
    pub pirq: i32,
}
const _: () = assert!(size_of::<PhysdevUnmapPirq>() == 8);

/// Argument of the old PCI add/remove operations.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PhysdevManagePci {
    /// PCI bus.
    pub bus: u8,
    /// PCI device/function.
    pub devfn: u8,
}
const _: () = assert!(size_of::<PhysdevManagePci>() == 2);

/// Argument of [`PHYSDEVOP_RESTORE_MSI`].
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PhysdevRestoreMsi {
    /// PCI bus.
    pub bus: u8,
    /// PCI device/function.
    pub devfn: u8,
}
const _: () = assert!(size_of::<PhysdevRestoreMsi>() == 2);

/// Argument of [`PHYSDEVOP_MANAGE_PCI_ADD_EXT`].
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PhysdevManagePciExt {
    /// PCI bus.
    pub bus: u8,
    /// PCI device/function.
    pub devfn: u8,
    /// Padding.
    pub pad0: u16,
    /// Non-zero for an ARI extended function.
    pub is_extfn: u32,
    /// Non-zero for an SR-IOV virtual function.
    pub is_virtfn: u32,
    /// The physical function's bus (virtual functions).
    pub physfn_bus: u8,
    /// The physical function's device/function.
    pub physfn_devfn: u8,
    /// Padding.
    pub pad1: u16,
}
const _: () = assert!(size_of::<PhysdevManagePciExt>() == 16);

/// The argument of the old `physdev_op_compat` hypercall (`struct physdev_op`): a
/// command and the union of the early argument structures, as raw words (the largest
/// member is 16 bytes at offset 8).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PhysdevOp {
    /// `PHYSDEVOP_*`.
    pub cmd: u32,
    /// Padding.
    pub pad0: u32,
    /// The argument structure, as words.
    pub u: [u64; 2],
}
const _: () = assert!(size_of::<PhysdevOp>() == 24);

/// Argument of [`PHYSDEVOP_SETUP_GSI`].
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PhysdevSetupGsi {
    /// The GSI.
    pub gsi: i32,
    /// 0 edge, 1 level.
    pub triggering: u8,
    /// 0 active high, 1 active low.
    pub polarity: u8,
    /// Padding.
    pub pad0: u16,
}
const _: () = assert!(size_of::<PhysdevSetupGsi>() == 8);

/// Argument of [`PHYSDEVOP_GET_FREE_PIRQ`].
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PhysdevGetFreePirq {
    /// In: `MAP_PIRQ_TYPE_GSI` or `MAP_PIRQ_TYPE_MSI`.
    pub r#type: i32,
    /// Out: the PIRQ.
    pub pirq: u32,
}
const _: () = assert!(size_of::<PhysdevGetFreePirq>() == 8);

/// [`PhysdevPciMmcfgReserved::flags`]: the area is reserved in the E820 map.
pub const XEN_PCI_MMCFG_RESERVED: u32 = 0x1;

/// Argument of [`PHYSDEVOP_PCI_MMCFG_RESERVED`].
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PhysdevPciMmcfgReserved {
    /// Base address.
    pub address: u64,
    /// PCI segment.
    pub segment: u16,
    /// First bus.
    pub start_bus: u8,
    /// Last bus.
    pub end_bus: u8,
    /// `XEN_PCI_MMCFG_*`.
    pub flags: u32,
}
const _: () = assert!(size_of::<PhysdevPciMmcfgReserved>() == 16);

/// [`PhysdevPciDeviceAdd::flags`]: ARI extended function.
pub const XEN_PCI_DEV_EXTFN: u32 = 0x1;
/// [`PhysdevPciDeviceAdd::flags`]: SR-IOV virtual function.
pub const XEN_PCI_DEV_VIRTFN: u32 = 0x2;
/// [`PhysdevPciDeviceAdd::flags`]: the first optional word is a proximity domain.
pub const XEN_PCI_DEV_PXM: u32 = 0x4;

/// Fixed part of the [`PHYSDEVOP_PCI_DEVICE_ADD`] argument; C continues it with a
/// flexible array of `u32` optional parameters (`optarr`) at offset 12.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PhysdevPciDeviceAdd {
    /// PCI segment.
    pub seg: u16,
    /// PCI bus.
    pub bus: u8,
    /// PCI device/function.
    pub devfn: u8,
    /// `XEN_PCI_DEV_*`.
    pub flags: u32,
    /// The physical function's bus.
    pub physfn_bus: u8,
    /// The physical function's device/function.
    pub physfn_devfn: u8,
    /// Padding.
    pub pad0: u16,
}
const _: () = assert!(size_of::<PhysdevPciDeviceAdd>() == 12);

/// A PCI device address (`struct physdev_pci_device`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PhysdevPciDevice {
    /// PCI segment.
    pub seg: u16,
    /// PCI bus.
    pub bus: u8,
    /// PCI device/function.
    pub devfn: u8,
}
const _: () = assert!(size_of::<PhysdevPciDevice>() == 4);

/// [`PhysdevDbgpOp::op`]: a debug port reset is about to happen.
pub const PHYSDEVOP_DBGP_RESET_PREPARE: u8 = 1;
/// [`PhysdevDbgpOp::op`]: the reset is done.
pub const PHYSDEVOP_DBGP_RESET_DONE: u8 = 2;
/// [`PhysdevDbgpOp::bus`]: unknown bus.
pub const PHYSDEVOP_DBGP_BUS_UNKNOWN: u8 = 0;
/// [`PhysdevDbgpOp::bus`]: PCI.
pub const PHYSDEVOP_DBGP_BUS_PCI: u8 = 1;

/// Argument of [`PHYSDEVOP_DBGP_OP`].
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PhysdevDbgpOp {
    /// `PHYSDEVOP_DBGP_RESET_*`.
    pub op: u8,
    /// `PHYSDEVOP_DBGP_BUS_*`.
    pub bus: u8,
    /// The device (C union `u` with one member).
    pub pci: PhysdevPciDevice,
}
const _: () = assert!(size_of::<PhysdevDbgpOp>() == 6);
