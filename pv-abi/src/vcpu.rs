//! Per-VCPU operations of the `vcpu_op(cmd, vcpuid, arg)` hypercall (`xen/vcpu.h`):
//! bring-up, runstate, timers and relocation of the per-VCPU areas.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Initialise a VCPU's context; argument [`crate::arch_x86_64::VcpuGuestContext`].
pub const VCPUOP_INITIALISE: u32 = 0;
/// Start an initialised VCPU; no argument.
pub const VCPUOP_UP: u32 = 1;
/// Stop a VCPU; no argument.
pub const VCPUOP_DOWN: u32 = 2;
/// Returns 1 if the VCPU is up, 0 otherwise; no argument.
pub const VCPUOP_IS_UP: u32 = 3;
/// Fill a [`VcpuRunstateInfo`].
pub const VCPUOP_GET_RUNSTATE_INFO: u32 = 4;
/// Have the hypervisor keep a [`VcpuRunstateInfo`] up to date in guest memory;
/// argument [`VcpuRegisterRunstateMemoryArea`].
pub const VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA: u32 = 5;
/// Start a periodic timer; argument [`VcpuSetPeriodicTimer`].
pub const VCPUOP_SET_PERIODIC_TIMER: u32 = 6;
/// Stop the periodic timer; no argument.
pub const VCPUOP_STOP_PERIODIC_TIMER: u32 = 7;
/// Arm the one-shot timer; argument [`VcpuSetSingleshotTimer`].
pub const VCPUOP_SET_SINGLESHOT_TIMER: u32 = 8;
/// Disarm the one-shot timer; no argument.
pub const VCPUOP_STOP_SINGLESHOT_TIMER: u32 = 9;
/// Move the VCPU's [`crate::xen::VcpuInfo`]; argument [`VcpuRegisterVcpuInfo`].
pub const VCPUOP_REGISTER_VCPU_INFO: u32 = 10;
/// Send an NMI to the VCPU; no argument.
pub const VCPUOP_SEND_NMI: u32 = 11;
/// Physical CPU identity (hardware domain); argument [`VcpuGetPhysid`].
pub const VCPUOP_GET_PHYSID: u32 = 12;
/// Have the hypervisor keep a copy of the VCPU's time info in guest memory; argument
/// [`VcpuRegisterTimeMemoryArea`].
pub const VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA: u32 = 13;

/// Runstate: running on a physical CPU.
pub const RUNSTATE_RUNNING: i32 = 0;
/// Runstate: runnable, waiting for a physical CPU.
pub const RUNSTATE_RUNNABLE: i32 = 1;
/// Runstate: blocked.
pub const RUNSTATE_BLOCKED: i32 = 2;
/// Runstate: offline or preempted for another reason.
pub const RUNSTATE_OFFLINE: i32 = 3;
/// Bit of [`VcpuRunstateInfo::state_entry_time`] set while the hypervisor updates a
/// registered area (with `VMASST_TYPE_runstate_update_flag`).
pub const XEN_RUNSTATE_UPDATE: u64 = 1 << 63;

/// Time accounting of a VCPU (`struct vcpu_runstate_info`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VcpuRunstateInfo {
    /// `RUNSTATE_*`.
    pub state: i32,
    /// Padding.
    pub pad0: u32,
    /// System time (ns) at which `state` was entered.
    pub state_entry_time: u64,
    /// Nanoseconds spent in each `RUNSTATE_*`.
    pub time: [u64; 4],
}
const _: () = assert!(size_of::<VcpuRunstateInfo>() == 48);

/// Argument of [`VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA`]: the guest virtual address
/// of a [`VcpuRunstateInfo`].
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VcpuRegisterRunstateMemoryArea {
    /// Guest virtual address (the C union `addr`).
    pub addr: u64,
}
const _: () = assert!(size_of::<VcpuRegisterRunstateMemoryArea>() == 8);

/// Argument of [`VCPUOP_SET_PERIODIC_TIMER`].
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VcpuSetPeriodicTimer {
    /// Period in nanoseconds.
    pub period_ns: u64,
}
const _: () = assert!(size_of::<VcpuSetPeriodicTimer>() == 8);

/// [`VcpuSetSingleshotTimer::flags`]: fail with `ETIME` if the deadline has passed.
pub const VCPU_SSHOTTMR_FUTURE: u32 = 1 << 0;

/// Argument of [`VCPUOP_SET_SINGLESHOT_TIMER`].
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VcpuSetSingleshotTimer {
    /// Absolute system time of the deadline, in nanoseconds.
    pub timeout_abs_ns: u64,
    /// `VCPU_SSHOTTMR_*`.
    pub flags: u32,
    /// Padding.
    pub pad0: u32,
}
const _: () = assert!(size_of::<VcpuSetSingleshotTimer>() == 16);

/// Argument of [`VCPUOP_REGISTER_VCPU_INFO`].
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VcpuRegisterVcpuInfo {
    /// Frame that will hold the [`crate::xen::VcpuInfo`].
    pub mfn: u64,
    /// Offset in that frame (the structure must not cross the page end).
    pub offset: u32,
    /// Unused; zero.
    pub rsvd: u32,
}
const _: () = assert!(size_of::<VcpuRegisterVcpuInfo>() == 16);

/// Argument of [`VCPUOP_GET_PHYSID`].
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VcpuGetPhysid {
    /// Out: APIC id in bits 31:0, ACPI id in bits 63:32.
    pub phys_id: u64,
}
const _: () = assert!(size_of::<VcpuGetPhysid>() == 8);

impl VcpuGetPhysid {
    /// The x86 APIC id.
    pub const fn apic_id(&self) -> u32 {
        self.phys_id as u32
    }
    /// The ACPI processor id.
    pub const fn acpi_id(&self) -> u32 {
        (self.phys_id >> 32) as u32
    }
}

/// Argument of [`VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA`]: the guest virtual address of a
/// [`crate::xen::VcpuTimeInfo`].
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VcpuRegisterTimeMemoryArea {
    /// Guest virtual address (the C union `addr`).
    pub addr: u64,
}
const _: () = assert!(size_of::<VcpuRegisterTimeMemoryArea>() == 8);
