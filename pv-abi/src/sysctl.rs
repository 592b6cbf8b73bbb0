//! System control (`xen/sysctl.h`): operations on the whole machine, for the control
//! domain's toolstack. Only what a privileged PV kernel here uses is mirrored: the
//! request envelope and `XEN_SYSCTL_debug_keys` (what `xl debug-keys` issues).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// The sysctl interface version of Xen 4.17; a request with another is refused.
pub const XEN_SYSCTL_INTERFACE_VERSION: u32 = 0x0000_0015;

/// Press debug keys on the hypervisor console; argument [`XenSysctlDebugKeys`].
pub const XEN_SYSCTL_DEBUG_KEYS: u32 = 7;

/// Argument of [`XEN_SYSCTL_DEBUG_KEYS`] (`struct xen_sysctl_debug_keys`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenSysctlDebugKeys {
    /// Guest pointer to the key characters.
    pub keys: u64,
    /// How many.
    pub nr_keys: u32,
    /// Padding.
    pub pad0: u32,
}
const _: () = assert!(size_of::<XenSysctlDebugKeys>() == 16);

/// The `sysctl` hypercall's one argument (`struct xen_sysctl`): a command, the interface
/// version, and a 128-byte union of per-command arguments.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct XenSysctl {
    /// `XEN_SYSCTL_*`.
    pub cmd: u32,
    /// [`XEN_SYSCTL_INTERFACE_VERSION`].
    pub interface_version: u32,
    /// The command's argument (a C union; see [`XenSysctl::debug_keys`]).
    pub u: [u64; 16],
}
const _: () = assert!(size_of::<XenSysctl>() == 136);

impl XenSysctl {
    /// A [`XEN_SYSCTL_DEBUG_KEYS`] request for `nr_keys` keys at guest address `keys`.
    pub fn debug_keys(keys: u64, nr_keys: u32) -> XenSysctl {
        let mut u = [0u64; 16];
        u[0] = keys;
        u[1] = u64::from(nr_keys);
        XenSysctl {
            cmd: XEN_SYSCTL_DEBUG_KEYS,
            interface_version: XEN_SYSCTL_INTERFACE_VERSION,
            u,
        }
    }

    /// The union read as the debug-keys argument.
    pub fn debug_keys_arg(&self) -> XenSysctlDebugKeys {
        XenSysctlDebugKeys {
            keys: self.u[0],
            nr_keys: self.u[1] as u32,
            pad0: 0,
        }
    }
}
