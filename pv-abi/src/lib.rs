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
//! | [`event_channel`] | `xen/event_channel.h` |
//! | [`grant_table`] | `xen/grant_table.h` (plus [`grant_table::GrantTableV1`], the granting protocol) |
//! | [`sched`] | `xen/sched.h` |
//! | [`vcpu`] | `xen/vcpu.h` |
//! | [`sysctl`] | `xen/sysctl.h` (the envelope and `debug_keys` only) |
//! | [`domctl`] | `xen/domctl.h` (the envelope and what building a PV domain takes) |
//! | [`memory`] | `xen/memory.h` (guest-visible operations) |
//! | [`callback`] | `xen/callback.h` |
//! | [`physdev`] | `xen/physdev.h` |
//! | [`version`] | `xen/version.h` |
//! | [`features`] | `xen/features.h` |
//! | [`elfnote`] | `xen/elfnote.h` |
//! | [`io::ring`] | `xen/io/ring.h`: one generic ring, front and back halves |
//! | [`io::console`], [`io::xs_wire`], [`io::xenbus`], [`io::blkif`], [`io::netif`] | `xen/io/*.h` |
//! | [`io::byte_ring`] | the byte rings of the console and xenstore pages |
//! | [`page`] | the 4 KiB interface page |
//! | [`ext`] | none: our own extensions, in Xen's arch-reserved hypercall slot |
//! | [`boot`] | none: the start-of-day layout of a PV domain (prose around `start_info` in `xen.h`) |
//! | [`elf`] | none: reading a PV kernel image, ELF64 with the notes of [`elfnote`] |
//! | `guest` | typed hypercall wrappers and batching helpers (feature `guest`) |
//!
//! Every wire structure is `#[repr(C)]`, derives zerocopy's `FromBytes`, `IntoBytes`,
//! `Immutable` and `KnownLayout`, names its padding (`pad0`, ...) and asserts its size at
//! compile time. C unions become the widest member plus accessors for the other views.
//! Constants keep Xen's names in upper case (`CONSOLEIO_write` is
//! [`xen::CONSOLEIO_WRITE`]).
//!
//! # Checking the ABI
//! `cargo test -p pv-abi` runs, besides unit and ring tests, `tests/conformance.rs`: it
//! compiles a C program against Xen's headers in `/usr/include/xen` (Debian `libxen-dev`),
//! compares every constant, size and field offset with this crate, and prints
//! `abi-conformance: N items checked, M mismatches`.
//!
//! # Worked example: a frontend connects a block ring
//! A PV frontend shares a ring page with its backend: it initialises the ring, grants the
//! page to the backend domain, queues requests and notifies the backend through an event
//! channel when the ring protocol says it is waiting. Here the memory is ordinary host
//! memory and the notification a closure; in a guest kernel the grant entries are the
//! frames from `guest::gnttab_setup_table`, the port comes from
//! `guest::evtchn_alloc_unbound`, and the notification is `guest::evtchn_send`.
//!
//! ```
//! use pv_abi::event_channel::EvtchnPort;
//! use pv_abi::grant_table::{GrantEntryV1, GrantTableV1, GNTTAB_NR_RESERVED_ENTRIES};
//! use pv_abi::io::blkif::{BlkifRequest, BlkifResponse, BLKIF_OP_READ};
//! use pv_abi::io::ring::{BackRing, FrontRing, SharedRing};
//! use pv_abi::page::Page;
//! use pv_abi::xen::DomId;
//! use pv_abi::Errno;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let backend: DomId = 0;
//! let port: EvtchnPort = 5; // from EVTCHNOP_alloc_unbound
//! let ring_frame: u32 = 0x1234; // the ring page's frame number
//! let mut sent = Vec::new();
//! let mut notify = |port: EvtchnPort| -> Result<(), Errno> {
//!     sent.push(port); // a guest calls pv_abi::guest::evtchn_send(port)
//!     Ok(())
//! };
//!
//! // 1. Set up the ring on a page of our own.
//! let mut page = Box::new(Page::zeroed());
//! let shared = SharedRing::<BlkifRequest, BlkifResponse>::new(&mut page.0)?;
//! let mut front = FrontRing::init(shared);
//! assert_eq!(front.size(), 32);
//!
//! // 2. Grant the page to the backend, read-write, in the first unreserved entry.
//! let mut entries = vec![GrantEntryV1::default(); 512];
//! // SAFETY: `entries` outlives `table` and is used only through it.
//! let mut table = unsafe { GrantTableV1::from_raw(entries.as_mut_ptr(), entries.len()) }.unwrap();
//! let gref = GNTTAB_NR_RESERVED_ENTRIES;
//! table.grant_access(gref, backend, ring_frame, false)?;
//! // (the frontend now writes `ring-ref = gref` and `event-channel = port` to xenstore)
//!
//! // 3. Queue a request and notify the backend if it asked for it.
//! let req = BlkifRequest { operation: BLKIF_OP_READ, id: 1, nr_segments: 0, ..Default::default() };
//! front.push_request(&req)?;
//! if front.push_requests_and_check_notify() {
//!     notify(port)?;
//! }
//! assert_eq!(sent, [port]);
//!
//! // The backend (another domain, here the same process) sees a copy of the request.
//! let mut back = BackRing::new(shared);
//! assert_eq!(back.take_request()?.map(|r| r.id), Some(1));
//! # Ok(())
//! # }
//! ```
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

pub mod arch_x86_64;
pub mod boot;
pub mod callback;
pub mod domctl;
pub mod elf;
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
pub mod sysctl;
pub mod vcpu;
pub mod version;
pub mod xen;

#[cfg(feature = "guest")]
pub mod guest;

pub use errno::Errno;
pub use xen::Hypercall;
