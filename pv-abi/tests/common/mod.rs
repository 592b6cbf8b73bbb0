//! Shared helpers for the ring tests: a page whose header words the test can scribble
//! like a peer domain would, with atomic accesses.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::sync::atomic::{AtomicU32, Ordering};

use pv_abi::io::ring::{RingError, RingMessage, SharedRing};
use pv_abi::page::Page;

/// Header word offsets (`struct *_sring`).
pub const REQ_PROD: usize = 0;
/// Offset of `req_event`.
pub const REQ_EVENT: usize = 4;
/// Offset of `rsp_prod`.
pub const RSP_PROD: usize = 8;
/// Offset of `rsp_event`.
pub const RSP_EVENT: usize = 12;

/// A heap page shared by the two ring halves and the test acting as a peer.
pub struct PeerPage {
    page: *mut Page,
}

// SAFETY: the page is only accessed through ring handles and the atomic accessors below.
unsafe impl Send for PeerPage {}
// SAFETY: as above.
unsafe impl Sync for PeerPage {}

impl PeerPage {
    pub fn new() -> Self {
        PeerPage {
            page: Box::into_raw(Box::new(Page::zeroed())),
        }
    }

    /// A ring over the first `len` bytes of the page.
    pub fn ring<Req: RingMessage, Rsp: RingMessage>(
        &self,
        len: usize,
    ) -> Result<SharedRing<'_, Req, Rsp>, RingError> {
        assert!(len <= 4096);
        // SAFETY: the page lives as long as `self` (the returned lifetime) and is touched
        // only through ring handles and the atomic accessors of this type.
        unsafe { SharedRing::from_raw(self.page.cast::<u8>(), len) }
    }

    fn word(&self, offset: usize) -> &AtomicU32 {
        assert!(offset.is_multiple_of(4) && offset + 4 <= 4096);
        // SAFETY: in bounds and 4-aligned (the page is 4096-aligned); concurrent access to
        // header words is atomic on every side.
        unsafe { AtomicU32::from_ptr(self.page.cast::<u8>().add(offset).cast()) }
    }

    /// Stores a 32-bit word as the peer would.
    pub fn store(&self, offset: usize, value: u32) {
        self.word(offset).store(value, Ordering::SeqCst);
    }

    /// Loads a 32-bit word.
    pub fn load(&self, offset: usize) -> u32 {
        self.word(offset).load(Ordering::SeqCst)
    }
}

impl Drop for PeerPage {
    fn drop(&mut self) {
        // SAFETY: allocated by `Box::into_raw` in `new`; no handle outlives `self`.
        drop(unsafe { Box::from_raw(self.page) });
    }
}
