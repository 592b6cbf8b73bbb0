//! Domain control (`xen/domctl.h`): the control domain's operations on one domain, the
//! calls a toolstack's domain builder makes. Only what building and starting a PV
//! domain takes is mirrored: create it and its vCPUs, give it memory, initialise its
//! hypercall page and first vCPU, read its information, unpause it (and destroy it again).
//!
//! The interface is not stable across Xen releases: a request must carry
//! [`XEN_DOMCTL_INTERFACE_VERSION`] of exactly the running Xen (4.17 here), or it is
//! refused with `EACCES`.

use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

/// The domctl interface version of Xen 4.17.
pub const XEN_DOMCTL_INTERFACE_VERSION: u32 = 0x0000_0015;

/// Create a domain; argument [`XenDomctlCreatedomain`], the new id comes back in
/// [`XenDomctl::domain`] (ask for 0 to have one chosen).
pub const XEN_DOMCTL_CREATEDOMAIN: u32 = 1;
/// Destroy a domain (no argument).
pub const XEN_DOMCTL_DESTROYDOMAIN: u32 = 2;
/// Let a domain run (no argument); a new domain starts paused.
pub const XEN_DOMCTL_UNPAUSEDOMAIN: u32 = 4;
/// Read a domain's information; result [`XenDomctlGetdomaininfo`].
pub const XEN_DOMCTL_GETDOMAININFO: u32 = 5;
/// Set a domain's memory limit; argument [`XenDomctlMaxMem`].
pub const XEN_DOMCTL_MAX_MEM: u32 = 11;
/// Set a vCPU's initial context; argument [`XenDomctlVcpucontext`].
pub const XEN_DOMCTL_SETVCPUCONTEXT: u32 = 12;
/// Create the domain's vCPU structures; argument [`XenDomctlMaxVcpus`], which must
/// repeat `createdomain`'s `max_vcpus` (needed before [`XEN_DOMCTL_SETVCPUCONTEXT`]).
pub const XEN_DOMCTL_MAX_VCPUS: u32 = 15;
/// Fill a frame of the domain with hypercall stubs; argument [`XenDomctlHypercallInit`].
pub const XEN_DOMCTL_HYPERCALL_INIT: u32 = 22;

/// [`XenDomctlCreatedomain::grant_opts`]: the highest grant-table version the domain may
/// use (low four bits).
pub const XEN_DOMCTL_GRANT_VERSION_MASK: u32 = 0xf;

/// Architecture part of a domain's configuration (`struct xen_arch_domainconfig`): for
/// a PV domain both are 0 (no emulated devices, strict MSRs).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenArchDomainconfig {
    /// `XEN_X86_EMU_*`: emulated devices (HVM only).
    pub emulation_flags: u32,
    /// `XEN_X86_MSR_RELAXED`.
    pub misc_flags: u32,
}
const _: () = assert!(size_of::<XenArchDomainconfig>() == 8);

/// Argument of [`XEN_DOMCTL_CREATEDOMAIN`] (`struct xen_domctl_createdomain`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenDomctlCreatedomain {
    /// Security label (XSM; 0 without).
    pub ssidref: u32,
    /// The toolstack's handle (a UUID) for the domain.
    pub handle: [u8; 16],
    /// `XEN_DOMCTL_CDF_*`: 0 for a PV domain.
    pub flags: u32,
    /// `XEN_DOMCTL_IOMMU_*`.
    pub iommu_opts: u32,
    /// Number of vCPUs the domain may have (all created now, the first brought up by
    /// [`XEN_DOMCTL_SETVCPUCONTEXT`]).
    pub max_vcpus: u32,
    /// Highest event-channel port it may use.
    pub max_evtchn_port: u32,
    /// Grant-table frames it may have (< 0: Xen's default).
    pub max_grant_frames: i32,
    /// Maptrack frames it may have (< 0: Xen's default).
    pub max_maptrack_frames: i32,
    /// Highest grant-table version (see [`XEN_DOMCTL_GRANT_VERSION_MASK`]).
    pub grant_opts: u32,
    /// Per-vCPU trace buffer size (0: none).
    pub vmtrace_size: u32,
    /// CPU pool (0: the default one).
    pub cpupool_id: u32,
    /// Architecture part.
    pub arch: XenArchDomainconfig,
}
const _: () = assert!(size_of::<XenDomctlCreatedomain>() == 64);

/// Result of [`XEN_DOMCTL_GETDOMAININFO`] (`struct xen_domctl_getdomaininfo`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenDomctlGetdomaininfo {
    /// The domain.
    pub domain: u16,
    /// Padding.
    pub pad1: u16,
    /// `XEN_DOMINF_*`.
    pub flags: u32,
    /// Pages it holds.
    pub tot_pages: u64,
    /// Pages it may hold.
    pub max_pages: u64,
    /// Pages claimed but not yet allocated.
    pub outstanding_pages: u64,
    /// Pages it shares.
    pub shr_pages: u64,
    /// Pages paged out.
    pub paged_pages: u64,
    /// Machine frame of its shared-info page.
    pub shared_info_frame: u64,
    /// CPU time used, in nanoseconds.
    pub cpu_time: u64,
    /// vCPUs online.
    pub nr_online_vcpus: u32,
    /// Highest vCPU id.
    pub max_vcpu_id: u32,
    /// Security label.
    pub ssidref: u32,
    /// The toolstack's handle.
    pub handle: [u8; 16],
    /// CPU pool.
    pub cpupool: u32,
    /// Guest physical address bits.
    pub gpaddr_bits: u8,
    /// Padding.
    pub pad2: [u8; 7],
    /// Architecture part of its configuration.
    pub arch_config: XenArchDomainconfig,
}
const _: () = assert!(size_of::<XenDomctlGetdomaininfo>() == 112);

/// Argument of [`XEN_DOMCTL_MAX_MEM`] (`struct xen_domctl_max_mem`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenDomctlMaxMem {
    /// The limit in KiB.
    pub max_memkb: u64,
}
const _: () = assert!(size_of::<XenDomctlMaxMem>() == 8);

/// Argument of [`XEN_DOMCTL_MAX_VCPUS`] (`struct xen_domctl_max_vcpus`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenDomctlMaxVcpus {
    /// The domain's `max_vcpus`.
    pub max: u32,
}
const _: () = assert!(size_of::<XenDomctlMaxVcpus>() == 4);

/// Argument of [`XEN_DOMCTL_SETVCPUCONTEXT`] (`struct xen_domctl_vcpucontext`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenDomctlVcpucontext {
    /// The vCPU.
    pub vcpu: u32,
    /// Padding.
    pub pad0: u32,
    /// Guest pointer to its [`crate::arch_x86_64::VcpuGuestContext`].
    pub ctxt: u64,
}
const _: () = assert!(size_of::<XenDomctlVcpucontext>() == 16);

/// Argument of [`XEN_DOMCTL_HYPERCALL_INIT`] (`struct xen_domctl_hypercall_init`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenDomctlHypercallInit {
    /// The frame (a machine frame for a PV domain).
    pub gmfn: u64,
}
const _: () = assert!(size_of::<XenDomctlHypercallInit>() == 8);

/// The `domctl` hypercall's one argument (`struct xen_domctl`): a command, the interface
/// version, the domain, and a 128-byte union of per-command arguments, written and read
/// through the typed constructors and accessors below.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct XenDomctl {
    /// `XEN_DOMCTL_*`.
    pub cmd: u32,
    /// [`XEN_DOMCTL_INTERFACE_VERSION`].
    pub interface_version: u32,
    /// The domain operated on (for create: the id wanted, 0 for any; the new id after).
    pub domain: u16,
    /// Padding.
    pub pad: [u16; 3],
    /// The command's argument or result (a C union).
    pub u: [u64; 16],
}
const _: () = assert!(size_of::<XenDomctl>() == 144);

impl XenDomctl {
    /// A request `cmd` on `domain` whose argument is `arg` (the rest of the union zero).
    pub fn new<T: IntoBytes + Immutable>(cmd: u32, domain: u16, arg: &T) -> XenDomctl {
        let mut request = XenDomctl {
            cmd,
            interface_version: XEN_DOMCTL_INTERFACE_VERSION,
            domain,
            pad: [0; 3],
            u: [0; 16],
        };
        let bytes = arg.as_bytes();
        let len = bytes.len().min(size_of::<[u64; 16]>());
        request.u.as_mut_bytes()[..len].copy_from_slice(&bytes[..len]);
        request
    }

    /// A request `cmd` on `domain` without an argument.
    pub fn bare(cmd: u32, domain: u16) -> XenDomctl {
        XenDomctl::new(cmd, domain, &())
    }

    /// The union read as a `T` (a command's result).
    pub fn result<T: FromBytes + FromZeros>(&self) -> T {
        T::read_from_prefix(self.u.as_bytes())
            .map(|(value, _)| value)
            .unwrap_or_else(|_| T::new_zeroed())
    }
}
