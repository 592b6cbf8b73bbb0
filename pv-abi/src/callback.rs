//! Callback registration through `callback_op` (`xen/callback.h`).
//!
//! A 64-bit PV guest registers its event upcall, its failsafe handler (used when the
//! hypervisor cannot restore guest segment state) and its `syscall` entry point here or
//! with the older `set_callbacks` hypercall.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Event upcall entry.
pub const CALLBACKTYPE_EVENT: u16 = 0;
/// Failsafe entry, used when returning to the guest fails.
pub const CALLBACKTYPE_FAILSAFE: u16 = 1;
/// 64-bit `syscall` from guest user mode.
pub const CALLBACKTYPE_SYSCALL: u16 = 2;
/// Old number of the `sysenter` callback (interface versions before 0x00030207).
pub const CALLBACKTYPE_SYSENTER_DEPRECATED: u16 = 3;
/// NMI entry.
pub const CALLBACKTYPE_NMI: u16 = 4;
/// `sysenter` from 32-bit guest user mode.
pub const CALLBACKTYPE_SYSENTER: u16 = 5;
/// 32-bit `syscall` from guest user mode.
pub const CALLBACKTYPE_SYSCALL32: u16 = 7;

/// Bit number of [`CALLBACKF_MASK_EVENTS`].
pub const CALLBACKF_MASK_EVENTS_BIT: u16 = 0;
/// Mask events while the callback runs.
pub const CALLBACKF_MASK_EVENTS: u16 = 1 << CALLBACKF_MASK_EVENTS_BIT;

/// Register a callback; argument [`CallbackRegister`].
pub const CALLBACKOP_REGISTER: u32 = 0;
/// Unregister a callback; argument [`CallbackUnregister`].
pub const CALLBACKOP_UNREGISTER: u32 = 1;

/// Argument of [`CALLBACKOP_REGISTER`] (`struct callback_register`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct CallbackRegister {
    /// `CALLBACKTYPE_*`.
    pub r#type: u16,
    /// `CALLBACKF_*`.
    pub flags: u16,
    /// Padding.
    pub pad0: u32,
    /// Entry point.
    pub address: u64,
}
const _: () = assert!(size_of::<CallbackRegister>() == 16);

impl CallbackRegister {
    /// Registration of `address` for `callback_type` with `flags`.
    pub const fn new(callback_type: u16, flags: u16, address: u64) -> Self {
        CallbackRegister {
            r#type: callback_type,
            flags,
            pad0: 0,
            address,
        }
    }
}

/// Argument of [`CALLBACKOP_UNREGISTER`] (`struct callback_unregister`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct CallbackUnregister {
    /// `CALLBACKTYPE_*`.
    pub r#type: u16,
    /// Unused; zero.
    pub unused: u16,
}
const _: () = assert!(size_of::<CallbackUnregister>() == 4);
