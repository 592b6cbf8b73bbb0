//! The Xen x86_64 PV guest ABI (interface of Xen 4.17) as a `no_std` Rust crate.
//!
//! This is the contract between our hypervisor, our guest kernel and PV drivers, and it
//! is Xen's: a guest written against it runs on Xen, and a Xen PV guest runs on our
//! hypervisor. One module mirrors one public Xen header; numbers and layouts are taken
//! from those headers and checked against them by `tests/conformance.rs`.
//!
//! | module | Xen header |
//! | --- | --- |
//! | [`errno`] | `xen/errno.h` |
//! | [`xen`] | `xen/xen.h` |
//! | [`arch_x86_64`] | `xen/arch-x86/xen.h`, `xen/arch-x86/xen-x86_64.h` |
//! | [`version`] | `xen/version.h` |
//! | [`features`] | `xen/features.h` |
//! | [`sched`] | `xen/sched.h` |
//! | [`callback`] | `xen/callback.h` |
//! | [`elfnote`] | `xen/elfnote.h` |
//! | [`event_channel`] | `xen/event_channel.h` |
//! | [`ext`] | none: our own extensions, in Xen's arch-reserved slot |
//! | [`guest`] | typed hypercall wrappers (feature `guest`) |
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

pub mod arch_x86_64;
pub mod callback;
pub mod elfnote;
pub mod errno;
pub mod event_channel;
pub mod ext;
pub mod features;
pub mod grant_table;
pub mod io;
pub mod memory;
pub mod page;
pub mod physdev;
pub mod sched;
pub mod vcpu;
pub mod version;
pub mod xen;

#[cfg(feature = "guest")]
pub mod guest;

pub use errno::Errno;
pub use xen::Hypercall;
