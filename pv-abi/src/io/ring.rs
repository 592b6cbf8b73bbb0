//! The shared request/response ring of `xen/io/ring.h`, as one generic type.
//!
//! A ring lives in memory shared by two domains (usually one granted page): a 64-byte
//! header of four indices followed by a power-of-two array of slots, each able to hold a
//! request or a response. The *front end* produces requests and consumes responses; the
//! *back end* consumes requests and produces responses into the same slots. Indices are
//! free-running `u32` counters; a slot is `index & (size - 1)`.
//!
//! This module follows the C macros exactly:
//! - slot count: `(region - 64) / slot_size` rounded down to a power of two
//!   ([`ring_entries`], `__CONST_RING_SIZE`);
//! - publishing: slot contents are written, then the producer index is stored with
//!   release ordering (`xen_wmb`), then a full fence (`xen_mb`) precedes the read of the
//!   peer's event index, and the peer is notified iff
//!   `new - event < new - old` (wrapping; `RING_PUSH_*_AND_CHECK_NOTIFY`);
//! - going idle: `RING_FINAL_CHECK_FOR_*` sets the event index to `cons + 1`, fences,
//!   and looks again;
//! - consuming: the producer index is loaded with acquire ordering and every message is
//!   *copied out* of the shared slot before the caller sees it (`RING_COPY_*`), so a peer
//!   rewriting a slot cannot change a request after it was validated.
//!
//! # The peer is not trusted
//! The other end may write anything into the shared page at any time. Indices are
//! read and written with atomic operations, slots with relaxed atomic copies of types
//! that accept every bit pattern (`FromBytes`), and slot addresses are always masked
//! into the array, so no value the peer writes can cause an out-of-bounds access or
//! undefined behaviour here, even when the peer is another thread of this program with
//! a copy of the handle (atomics make that race defined). A producer index that no
//! well-behaved peer could publish is reported as [`RingError::PeerOverflow`]
//! (`RING_REQUEST_PROD_OVERFLOW` on the back end, or an index moved back behind requests
//! consumed; on the front end, more responses than requests outstanding); the caller
//! should then disconnect. No method panics on peer input.
//!
//! # Example
//! ```
//! use pv_abi::io::ring::{BackRing, FrontRing, SharedRing};
//! use pv_abi::page::Page;
//!
//! let mut page = Page::zeroed();
//! let shared = SharedRing::<u64, u64>::new(&mut page.0).unwrap();
//! let mut front = FrontRing::init(shared);
//! let mut back = BackRing::new(shared);
//!
//! front.push_request(&7).unwrap();
//! assert!(front.push_requests_and_check_notify()); // the back end wants an event
//! let req = back.take_request().unwrap().unwrap();
//! back.push_response(&(req * 6)).unwrap();
//! back.push_responses_and_check_notify();
//! assert_eq!(front.take_response().unwrap(), Some(42));
//! assert!(!front.final_check_for_responses().unwrap());
//! ```

use core::fmt;
use core::marker::PhantomData;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering, fence};

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// A free-running ring index (`RING_IDX`).
pub type RingIdx = u32;

/// The header at the start of every shared ring (`struct *_sring` up to `ring`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct SringHeader {
    /// Requests produced by the front end.
    pub req_prod: RingIdx,
    /// The back end wants an event when `req_prod` passes this value.
    pub req_event: RingIdx,
    /// Responses produced by the back end.
    pub rsp_prod: RingIdx,
    /// The front end wants an event when `rsp_prod` passes this value.
    pub rsp_event: RingIdx,
    /// Protocol-private bytes (netif: `smartpoll_active`); zeroed at init.
    pub pvt: [u8; 4],
    /// Padding up to the slot array; zeroed at init.
    pub pad: [u8; 44],
}
const _: () = assert!(size_of::<SringHeader>() == 64);

/// Offset of the slot array from the start of the ring.
pub const SRING_HEADER_SIZE: usize = size_of::<SringHeader>();

const REQ_PROD: usize = 0;
const REQ_EVENT: usize = 4;
const RSP_PROD: usize = 8;
const RSP_EVENT: usize = 12;

/// Rounds `x` down to a power of two (0 stays 0), like `__RD32`.
pub const fn round_down_pow2(x: u32) -> u32 {
    if x == 0 {
        0
    } else {
        1 << (31 - x.leading_zeros())
    }
}

/// The size of one slot: the C union of `Req` and `Rsp` (largest size rounded up to
/// the strictest alignment).
pub const fn slot_size<Req, Rsp>() -> usize {
    let size = if size_of::<Req>() > size_of::<Rsp>() {
        size_of::<Req>()
    } else {
        size_of::<Rsp>()
    };
    let align = if align_of::<Req>() > align_of::<Rsp>() {
        align_of::<Req>()
    } else {
        align_of::<Rsp>()
    };
    size.div_ceil(align) * align
}

/// The alignment the ring memory needs: that of the slots, and at least 4 for the
/// header's indices.
const fn region_align<Req, Rsp>() -> usize {
    let a = if align_of::<Req>() > align_of::<Rsp>() {
        align_of::<Req>()
    } else {
        align_of::<Rsp>()
    };
    if a > 4 { a } else { 4 }
}

/// The number of slots of a ring of `region_bytes` bytes (`__CONST_RING_SIZE`).
pub const fn ring_entries<Req, Rsp>(region_bytes: usize) -> u32 {
    let slot = slot_size::<Req, Rsp>();
    if slot == 0 || region_bytes < SRING_HEADER_SIZE {
        return 0;
    }
    let n = (region_bytes - SRING_HEADER_SIZE) / slot;
    round_down_pow2(if n > u32::MAX as usize {
        u32::MAX
    } else {
        n as u32
    })
}

/// What can go wrong on a ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// The memory is misaligned, or too small for one slot, or the slot type is empty.
    BadRegion,
    /// Front end: every slot holds an unanswered request or an unread response.
    Full,
    /// Back end: every consumed request already has its response.
    NoRequestToAnswer,
    /// The peer published producer index `prod`, more than `limit` ahead of what
    /// this side has processed; a well-behaved peer never does.
    PeerOverflow {
        /// The index the peer published.
        prod: RingIdx,
        /// The largest distance a correct peer could be ahead.
        limit: u32,
    },
}

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RingError::BadRegion => f.write_str("ring memory misaligned or too small"),
            RingError::Full => f.write_str("ring full"),
            RingError::NoRequestToAnswer => f.write_str("no consumed request awaits a response"),
            RingError::PeerOverflow { prod, limit } => {
                write!(f, "peer producer index {prod} is more than {limit} ahead")
            }
        }
    }
}

impl core::error::Error for RingError {}

/// Message types a ring can carry: plain data of any bit pattern.
pub trait RingMessage: FromBytes + IntoBytes + Immutable + Copy {}
impl<T: FromBytes + IntoBytes + Immutable + Copy> RingMessage for T {}

/// A handle to the shared memory of a ring: where it is and how many slots it has.
///
/// It is `Copy`; the front and back halves each take one (in a real system they live in
/// different domains, in tests often in one process).
pub struct SharedRing<'a, Req, Rsp> {
    base: NonNull<u8>,
    nr_ents: u32,
    _memory: PhantomData<&'a [u8]>,
    _types: PhantomData<fn() -> (Req, Rsp)>,
}

impl<Req, Rsp> Clone for SharedRing<'_, Req, Rsp> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<Req, Rsp> Copy for SharedRing<'_, Req, Rsp> {}

impl<Req, Rsp> fmt::Debug for SharedRing<'_, Req, Rsp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedRing")
            .field("base", &self.base)
            .field("nr_ents", &self.nr_ents)
            .finish()
    }
}

// SAFETY: the handle only performs atomic accesses on the indices and volatile copies of
// `FromBytes` data on the slots; moving it to another thread is as sound as moving a
// pointer to memory shared with another domain, which is the point of the type.
unsafe impl<Req: Send, Rsp: Send> Send for SharedRing<'_, Req, Rsp> {}
// SAFETY: as above; `&SharedRing` offers no more than a copy of the handle does.
unsafe impl<Req: Send, Rsp: Send> Sync for SharedRing<'_, Req, Rsp> {}

impl<'a, Req: RingMessage, Rsp: RingMessage> SharedRing<'a, Req, Rsp> {
    /// A ring over `memory` (usually a whole page).
    ///
    /// From here on the memory is accessed only through ring handles (the borrow keeps
    /// other Rust code away for `'a`). Fails with [`RingError::BadRegion`] if `memory`
    /// is not aligned for the slots or holds no slot.
    pub fn new(memory: &'a mut [u8]) -> Result<Self, RingError> {
        // SAFETY: an exclusive borrow for `'a` is valid, writable memory of this length
        // that nothing else in this program touches meanwhile.
        unsafe { Self::from_raw(memory.as_mut_ptr(), memory.len()) }
    }

    /// A ring over `len` bytes at `base`.
    ///
    /// # Safety
    /// For `'a`, the memory must be valid for reads and writes and must not be accessed
    /// by this program except through ring handles (a peer domain or the hypervisor may
    /// access it concurrently).
    pub unsafe fn from_raw(base: *mut u8, len: usize) -> Result<Self, RingError> {
        let base = NonNull::new(base).ok_or(RingError::BadRegion)?;
        let nr_ents = ring_entries::<Req, Rsp>(len);
        let align = region_align::<Req, Rsp>();
        if nr_ents == 0
            || align > SRING_HEADER_SIZE
            || !(base.as_ptr() as usize).is_multiple_of(align)
        {
            return Err(RingError::BadRegion);
        }
        Ok(SharedRing {
            base,
            nr_ents,
            _memory: PhantomData,
            _types: PhantomData,
        })
    }

    /// Resets the header: both producers 0, both event indices 1, private bytes zero
    /// (`SHARED_RING_INIT`). Only the front end does this, before connecting.
    pub fn init(&self) {
        self.index(REQ_PROD).store(0, Ordering::Relaxed);
        self.index(RSP_PROD).store(0, Ordering::Relaxed);
        self.index(REQ_EVENT).store(1, Ordering::Relaxed);
        self.index(RSP_EVENT).store(1, Ordering::Relaxed);
        for offset in (16..SRING_HEADER_SIZE).step_by(4) {
            self.index(offset).store(0, Ordering::Relaxed);
        }
        fence(Ordering::Release);
    }

    /// The number of slots (`RING_SIZE`), a power of two.
    pub fn nr_ents(&self) -> u32 {
        self.nr_ents
    }

    /// The 4-byte header word at `offset` (a multiple of 4 below 64), as an atomic.
    fn index(&self, offset: usize) -> &AtomicU32 {
        debug_assert!(offset.is_multiple_of(4) && offset < SRING_HEADER_SIZE);
        // SAFETY: the region holds at least the header (`ring_entries` > 0), the base is
        // at least 4-aligned (`region_align` >= 4) and `offset` is a multiple of 4 inside
        // the header; this program accesses header words only atomically (contract of
        // `from_raw`), so treating the word as an `AtomicU32` for `'_` is sound.
        unsafe { AtomicU32::from_ptr(self.base.as_ptr().add(offset).cast()) }
    }

    /// The address of the slot for ring index `idx`, always inside the slot array.
    fn slot(&self, idx: RingIdx) -> *mut u8 {
        let slot = (idx & (self.nr_ents - 1)) as usize;
        // SAFETY: `slot < nr_ents` and the region holds `64 + nr_ents * slot_size` bytes
        // (`ring_entries`), so the offset stays inside it.
        unsafe {
            self.base
                .as_ptr()
                .add(SRING_HEADER_SIZE + slot * slot_size::<Req, Rsp>())
        }
    }

    /// Copies the message in slot `idx` out, by relaxed atomic loads: a peer writing the
    /// slot meanwhile (another domain, or another thread of this program holding a copy
    /// of the handle) is then a race the language defines, not undefined behaviour, and
    /// `T: FromBytes` accepts whatever mix of bytes it leaves.
    fn read_slot<T: RingMessage>(&self, idx: RingIdx) -> T {
        let mut value = T::new_zeroed();
        let bytes = value.as_mut_bytes();
        let slot = self.slot(idx);
        let mut at = 0;
        while at < bytes.len() {
            // SAFETY: `slot + at` is inside the slot, which is inside the region (valid
            // for reads for `'a`: `from_raw`'s contract); a u64 is loaded only where it
            // is 8-byte aligned and whole inside the message.
            let ptr = unsafe { slot.add(at) };
            if ptr.addr().is_multiple_of(8) && bytes.len() - at >= 8 {
                // SAFETY: as above, aligned; only atomic accesses touch shared slots.
                let word = unsafe { AtomicU64::from_ptr(ptr.cast()) }.load(Ordering::Relaxed);
                bytes[at..at + 8].copy_from_slice(&word.to_ne_bytes());
                at += 8;
            } else {
                // SAFETY: as above.
                bytes[at] = unsafe { AtomicU8::from_ptr(ptr) }.load(Ordering::Relaxed);
                at += 1;
            }
        }
        value
    }

    /// Copies `value` into slot `idx`, by relaxed atomic stores (see `read_slot`); the
    /// slot is this side's at this point of the protocol, and `T: IntoBytes` has no
    /// padding that could leak uninitialised bytes.
    fn write_slot<T: RingMessage>(&self, idx: RingIdx, value: &T) {
        let bytes = value.as_bytes();
        let slot = self.slot(idx);
        let mut at = 0;
        while at < bytes.len() {
            // SAFETY: as in `read_slot`, for writes (`from_raw`'s contract).
            let ptr = unsafe { slot.add(at) };
            if ptr.addr().is_multiple_of(8) && bytes.len() - at >= 8 {
                let mut word = [0u8; 8];
                word.copy_from_slice(&bytes[at..at + 8]);
                // SAFETY: as in `read_slot`.
                unsafe { AtomicU64::from_ptr(ptr.cast()) }
                    .store(u64::from_ne_bytes(word), Ordering::Relaxed);
                at += 8;
            } else {
                // SAFETY: as in `read_slot`.
                unsafe { AtomicU8::from_ptr(ptr) }.store(bytes[at], Ordering::Relaxed);
                at += 1;
            }
        }
    }
}

/// `notify = (new - event) < (new - old)` in wrapping arithmetic: did the producer move
/// from `old` to `new` across the consumer's requested `event`?
pub const fn need_notify(old: RingIdx, new: RingIdx, event: RingIdx) -> bool {
    new.wrapping_sub(event) < new.wrapping_sub(old)
}

/// The front end: produces requests, consumes responses (`*_front_ring`).
#[derive(Debug)]
pub struct FrontRing<'a, Req, Rsp> {
    shared: SharedRing<'a, Req, Rsp>,
    req_prod_pvt: RingIdx,
    rsp_cons: RingIdx,
}

impl<'a, Req: RingMessage, Rsp: RingMessage> FrontRing<'a, Req, Rsp> {
    /// Initialises the shared header and attaches at index 0 (`XEN_FRONT_RING_INIT`).
    pub fn init(shared: SharedRing<'a, Req, Rsp>) -> Self {
        shared.init();
        Self::attach(shared, 0)
    }

    /// Attaches to an already initialised ring at index `idx` (`FRONT_RING_ATTACH`),
    /// for instance when reconnecting.
    pub fn attach(shared: SharedRing<'a, Req, Rsp>, idx: RingIdx) -> Self {
        FrontRing {
            shared,
            req_prod_pvt: idx,
            rsp_cons: idx,
        }
    }

    /// The shared memory handle.
    pub fn shared(&self) -> SharedRing<'a, Req, Rsp> {
        self.shared
    }

    /// Number of slots (`RING_SIZE`).
    pub fn size(&self) -> u32 {
        self.shared.nr_ents
    }

    /// Index of the next request to be written (`req_prod_pvt`).
    pub fn req_prod_pvt(&self) -> RingIdx {
        self.req_prod_pvt
    }

    /// Index of the next response to be read (`rsp_cons`).
    pub fn rsp_cons(&self) -> RingIdx {
        self.rsp_cons
    }

    /// Slots free for new requests (`RING_FREE_REQUESTS`).
    pub fn free_requests(&self) -> u32 {
        self.size() - self.req_prod_pvt.wrapping_sub(self.rsp_cons)
    }

    /// Whether no slot is free (`RING_FULL`).
    pub fn is_full(&self) -> bool {
        self.free_requests() == 0
    }

    /// Writes `req` into the next free slot without publishing it.
    pub fn push_request(&mut self, req: &Req) -> Result<(), RingError> {
        if self.is_full() {
            return Err(RingError::Full);
        }
        self.shared.write_slot(self.req_prod_pvt, req);
        self.req_prod_pvt = self.req_prod_pvt.wrapping_add(1);
        Ok(())
    }

    /// Publishes the written requests (`RING_PUSH_REQUESTS`).
    pub fn push_requests(&mut self) {
        self.shared
            .index(REQ_PROD)
            .store(self.req_prod_pvt, Ordering::Release);
    }

    /// Publishes the written requests and says whether the back end asked to be
    /// notified (`RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`).
    pub fn push_requests_and_check_notify(&mut self) -> bool {
        let old = self.shared.index(REQ_PROD).load(Ordering::Relaxed);
        let new = self.req_prod_pvt;
        self.shared.index(REQ_PROD).store(new, Ordering::Release);
        fence(Ordering::SeqCst);
        let event = self.shared.index(REQ_EVENT).load(Ordering::Relaxed);
        need_notify(old, new, event)
    }

    /// Responses published and not yet consumed (`RING_HAS_UNCONSUMED_RESPONSES`),
    /// checked against the requests outstanding.
    pub fn unconsumed_responses(&self) -> Result<u32, RingError> {
        let prod = self.shared.index(RSP_PROD).load(Ordering::Acquire);
        let available = prod.wrapping_sub(self.rsp_cons);
        let outstanding = self.req_prod_pvt.wrapping_sub(self.rsp_cons);
        if available > outstanding {
            return Err(RingError::PeerOverflow {
                prod,
                limit: outstanding,
            });
        }
        Ok(available)
    }

    /// Copies out the next response, if one is published (`RING_COPY_RESPONSE`, then
    /// `rsp_cons++`).
    pub fn take_response(&mut self) -> Result<Option<Rsp>, RingError> {
        if self.unconsumed_responses()? == 0 {
            return Ok(None);
        }
        let rsp = self.shared.read_slot::<Rsp>(self.rsp_cons);
        self.rsp_cons = self.rsp_cons.wrapping_add(1);
        Ok(Some(rsp))
    }

    /// Before going idle: asks for an event on the next response and reports whether
    /// responses arrived meanwhile (`RING_FINAL_CHECK_FOR_RESPONSES`). `true` means do
    /// not sleep.
    pub fn final_check_for_responses(&mut self) -> Result<bool, RingError> {
        if self.unconsumed_responses()? > 0 {
            return Ok(true);
        }
        self.shared
            .index(RSP_EVENT)
            .store(self.rsp_cons.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::SeqCst);
        Ok(self.unconsumed_responses()? > 0)
    }
}

/// The back end: consumes requests, produces responses (`*_back_ring`).
#[derive(Debug)]
pub struct BackRing<'a, Req, Rsp> {
    shared: SharedRing<'a, Req, Rsp>,
    rsp_prod_pvt: RingIdx,
    req_cons: RingIdx,
}

impl<'a, Req: RingMessage, Rsp: RingMessage> BackRing<'a, Req, Rsp> {
    /// Attaches at index 0 to a ring the front end initialised (`BACK_RING_INIT`).
    pub fn new(shared: SharedRing<'a, Req, Rsp>) -> Self {
        Self::attach(shared, 0)
    }

    /// Attaches at index `idx` (`BACK_RING_ATTACH`).
    pub fn attach(shared: SharedRing<'a, Req, Rsp>, idx: RingIdx) -> Self {
        BackRing {
            shared,
            rsp_prod_pvt: idx,
            req_cons: idx,
        }
    }

    /// The shared memory handle.
    pub fn shared(&self) -> SharedRing<'a, Req, Rsp> {
        self.shared
    }

    /// Number of slots (`RING_SIZE`).
    pub fn size(&self) -> u32 {
        self.shared.nr_ents
    }

    /// Index of the next response to be written (`rsp_prod_pvt`).
    pub fn rsp_prod_pvt(&self) -> RingIdx {
        self.rsp_prod_pvt
    }

    /// Index of the next request to be read (`req_cons`).
    pub fn req_cons(&self) -> RingIdx {
        self.req_cons
    }

    /// Requests published and not yet consumed (`RING_HAS_UNCONSUMED_REQUESTS`). Fails
    /// if the front end published more than a ring's worth
    /// (`RING_REQUEST_PROD_OVERFLOW`), or moved its index back behind requests already
    /// consumed (which C's macro would count as a ring's worth of new requests).
    pub fn unconsumed_requests(&self) -> Result<u32, RingError> {
        let prod = self.shared.index(REQ_PROD).load(Ordering::Acquire);
        if prod.wrapping_sub(self.rsp_prod_pvt) > self.size() {
            return Err(RingError::PeerOverflow {
                prod,
                limit: self.size(),
            });
        }
        let published = prod.wrapping_sub(self.req_cons);
        let room = self.size() - self.req_cons.wrapping_sub(self.rsp_prod_pvt);
        // A well-behaved front end never publishes past the slots of unsent responses,
        // so more than `room` means its index went backwards (behind `req_cons`).
        if published > room {
            return Err(RingError::PeerOverflow {
                prod,
                limit: self.size(),
            });
        }
        Ok(published)
    }

    /// Copies out the next request, if one is published (`RING_COPY_REQUEST`, then
    /// `req_cons++`). Validate the returned copy; the shared slot may change under you.
    pub fn take_request(&mut self) -> Result<Option<Req>, RingError> {
        if self.unconsumed_requests()? == 0 {
            return Ok(None);
        }
        let req = self.shared.read_slot::<Req>(self.req_cons);
        self.req_cons = self.req_cons.wrapping_add(1);
        Ok(Some(req))
    }

    /// Writes `rsp` into the slot of the oldest unanswered request, without publishing.
    pub fn push_response(&mut self, rsp: &Rsp) -> Result<(), RingError> {
        if self.rsp_prod_pvt == self.req_cons {
            return Err(RingError::NoRequestToAnswer);
        }
        self.shared.write_slot(self.rsp_prod_pvt, rsp);
        self.rsp_prod_pvt = self.rsp_prod_pvt.wrapping_add(1);
        Ok(())
    }

    /// Publishes the written responses (`RING_PUSH_RESPONSES`).
    pub fn push_responses(&mut self) {
        self.shared
            .index(RSP_PROD)
            .store(self.rsp_prod_pvt, Ordering::Release);
    }

    /// Publishes the written responses and says whether the front end asked to be
    /// notified (`RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`).
    pub fn push_responses_and_check_notify(&mut self) -> bool {
        let old = self.shared.index(RSP_PROD).load(Ordering::Relaxed);
        let new = self.rsp_prod_pvt;
        self.shared.index(RSP_PROD).store(new, Ordering::Release);
        fence(Ordering::SeqCst);
        let event = self.shared.index(RSP_EVENT).load(Ordering::Relaxed);
        need_notify(old, new, event)
    }

    /// Before going idle: asks for an event on the next request and reports whether
    /// requests arrived meanwhile (`RING_FINAL_CHECK_FOR_REQUESTS`). `true` means do
    /// not sleep.
    pub fn final_check_for_requests(&mut self) -> Result<bool, RingError> {
        if self.unconsumed_requests()? > 0 {
            return Ok(true);
        }
        self.shared
            .index(REQ_EVENT)
            .store(self.req_cons.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::SeqCst);
        Ok(self.unconsumed_requests()? > 0)
    }
}

/// Size in bytes of each direction of a flexible byte ring of `2^order` pages
/// (`XEN_FLEX_RING_SIZE`): half the allocation.
pub const fn xen_flex_ring_size(order: u32) -> usize {
    1 << (order + crate::page::XEN_PAGE_SHIFT - 1)
}

/// Bytes queued in a flexible byte ring of `ring_size` (a power of two) between `cons`
/// and `prod` (`*_queued` of `DEFINE_XEN_FLEX_RING`).
pub const fn flex_ring_queued(prod: RingIdx, cons: RingIdx, ring_size: RingIdx) -> RingIdx {
    if prod == cons {
        return 0;
    }
    let prod = prod & (ring_size - 1);
    let cons = cons & (ring_size - 1);
    if prod == cons {
        ring_size
    } else if prod > cons {
        prod - cons
    } else {
        ring_size - (cons - prod)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page::Page;

    #[test]
    fn sizes_follow_the_c_rounding() {
        assert_eq!(round_down_pow2(0), 0);
        assert_eq!(round_down_pow2(1), 1);
        assert_eq!(round_down_pow2(63), 32);
        assert_eq!(round_down_pow2(64), 64);
        assert_eq!(round_down_pow2(u32::MAX), 1 << 31);
        // 8-byte messages: (4096 - 64) / 8 = 504 -> 256.
        assert_eq!(ring_entries::<u64, u64>(4096), 256);
        // Union of 12- and 8-byte types aligned to 8: 16-byte slots.
        assert_eq!(slot_size::<[u32; 3], u64>(), 16);
        assert_eq!(ring_entries::<[u32; 3], u64>(4096), 128);
        assert_eq!(ring_entries::<u64, u64>(63), 0);
        assert_eq!(ring_entries::<u64, u64>(64 + 8), 1);
        // Byte-sized messages keep byte-sized slots, as the C union does.
        assert_eq!(slot_size::<u8, u8>(), 1);
        assert_eq!(ring_entries::<u8, u8>(4096), 2048);
    }

    #[test]
    fn bad_regions_are_rejected() {
        let mut page = Page::zeroed();
        assert_eq!(
            SharedRing::<u64, u64>::new(&mut page.0[..64]).err(),
            Some(RingError::BadRegion)
        );
        assert_eq!(
            SharedRing::<u64, u64>::new(&mut page.0[4..]).err(),
            Some(RingError::BadRegion)
        );
        assert_eq!(
            SharedRing::<(), ()>::new(&mut page.0).err(),
            Some(RingError::BadRegion)
        );
        assert!(SharedRing::<u64, u64>::new(&mut page.0[8..]).is_ok());
    }

    #[test]
    fn init_writes_the_header() {
        let mut page = Page([0xAA; 4096]);
        let shared = SharedRing::<u32, u32>::new(&mut page.0).unwrap();
        let front = FrontRing::init(shared);
        assert_eq!(front.size(), 512);
        let header = SringHeader::read_from_prefix(&page.0).unwrap().0;
        assert_eq!(
            header,
            SringHeader {
                req_prod: 0,
                req_event: 1,
                rsp_prod: 0,
                rsp_event: 1,
                pvt: [0; 4],
                pad: [0; 44],
            }
        );
    }

    #[test]
    fn request_response_round_trip_with_wraparound() {
        let mut page = Page::zeroed();
        let shared = SharedRing::<u64, u64>::new(&mut page.0[..64 + 4 * 8]).unwrap();
        shared.init();
        let start = u32::MAX - 5; // cross the u32 wrap on the way
        let mut front = FrontRing::attach(shared, start);
        let mut back = BackRing::attach(shared, start);
        for (i, idx) in [(REQ_PROD, start), (RSP_PROD, start)] {
            shared.index(i).store(idx, Ordering::Relaxed);
        }
        shared
            .index(REQ_EVENT)
            .store(start.wrapping_add(1), Ordering::Relaxed);
        shared
            .index(RSP_EVENT)
            .store(start.wrapping_add(1), Ordering::Relaxed);
        let mut next = 0u64;
        let mut expect = 0u64;
        for _round in 0..10 {
            while !front.is_full() {
                front.push_request(&next).unwrap();
                next += 1;
            }
            assert_eq!(front.push_request(&0), Err(RingError::Full));
            front.push_requests_and_check_notify();
            assert_eq!(back.unconsumed_requests(), Ok(4));
            while let Some(r) = back.take_request().unwrap() {
                back.push_response(&(r + 1000)).unwrap();
            }
            assert_eq!(back.push_response(&0), Err(RingError::NoRequestToAnswer));
            back.push_responses_and_check_notify();
            while let Some(r) = front.take_response().unwrap() {
                assert_eq!(r, expect + 1000);
                expect += 1;
            }
        }
        assert_eq!(expect, 40);
    }

    /// A front end whose producer index moves back behind requests the back end has
    /// consumed published nothing new: that is the peer's error, not a ring's worth of
    /// requests to take again. (Found by review: the count used to be clipped to the
    /// free slots, and `take_request` handed out slots never published.)
    #[test]
    fn a_producer_index_moving_backwards_is_reported() {
        let mut page = Page::zeroed();
        let shared = SharedRing::<u64, u64>::new(&mut page.0).unwrap();
        let mut front = FrontRing::init(shared);
        let mut back = BackRing::new(shared);
        for r in 0..4 {
            front.push_request(&r).unwrap();
        }
        front.push_requests();
        for _ in 0..4 {
            back.take_request().unwrap().unwrap();
        }
        shared.index(REQ_PROD).store(2, Ordering::Release);
        assert!(matches!(
            back.unconsumed_requests(),
            Err(RingError::PeerOverflow { prod: 2, .. })
        ));
        assert!(back.take_request().is_err(), "nothing handed out");
    }

    /// Slot copies are atomic word by word, so a message of an odd size, or in a slot
    /// that is not 8-aligned, still arrives whole.
    #[test]
    fn odd_sized_messages_arrive_whole() {
        let mut page = Page::zeroed();
        let shared = SharedRing::<[u8; 13], [u8; 13]>::new(&mut page.0[..64 + 13 * 16]).unwrap();
        let mut front = FrontRing::init(shared);
        let mut back = BackRing::new(shared);
        for r in 0..40u8 {
            let message = core::array::from_fn(|i| r.wrapping_mul(31).wrapping_add(i as u8));
            front.push_request(&message).unwrap();
            front.push_requests();
            assert_eq!(back.take_request().unwrap(), Some(message));
            back.push_response(&message).unwrap();
            back.push_responses();
            assert_eq!(front.take_response().unwrap(), Some(message));
        }
    }

    #[test]
    fn notification_hold_off() {
        let mut page = Page::zeroed();
        let shared = SharedRing::<u64, u64>::new(&mut page.0).unwrap();
        let mut front = FrontRing::init(shared);
        let mut back = BackRing::new(shared);
        // req_event = 1: the first request notifies, later ones do not until the back
        // end re-arms with a final check.
        front.push_request(&1).unwrap();
        assert!(front.push_requests_and_check_notify());
        front.push_request(&2).unwrap();
        assert!(!front.push_requests_and_check_notify());
        assert!(back.final_check_for_requests().unwrap());
        back.take_request().unwrap();
        back.take_request().unwrap();
        assert!(!back.final_check_for_requests().unwrap());
        front.push_request(&3).unwrap();
        front.push_request(&4).unwrap();
        assert!(front.push_requests_and_check_notify());
        // Publishing nothing never notifies.
        assert!(!front.push_requests_and_check_notify());
        assert!(need_notify(5, 6, 6));
        assert!(!need_notify(5, 6, 7));
        assert!(need_notify(u32::MAX, 1, 0));
    }

    #[test]
    fn peer_overflow_is_an_error() {
        let mut page = Page::zeroed();
        let shared = SharedRing::<u64, u64>::new(&mut page.0[..64 + 8 * 8]).unwrap();
        let mut front = FrontRing::init(shared);
        let mut back = BackRing::new(shared);
        shared.index(REQ_PROD).store(9, Ordering::Relaxed);
        assert_eq!(
            back.take_request(),
            Err(RingError::PeerOverflow { prod: 9, limit: 8 })
        );
        shared.index(REQ_PROD).store(8, Ordering::Relaxed);
        assert_eq!(back.unconsumed_requests(), Ok(8));
        shared.index(RSP_PROD).store(1, Ordering::Relaxed);
        assert_eq!(
            front.take_response(),
            Err(RingError::PeerOverflow { prod: 1, limit: 0 })
        );
        assert!(front.final_check_for_responses().is_err());
        assert!(
            RingError::PeerOverflow { prod: 1, limit: 0 }
                .to_string()
                .contains("ahead")
        );
    }

    #[test]
    fn flex_ring_helpers() {
        assert_eq!(xen_flex_ring_size(0), 2048);
        assert_eq!(xen_flex_ring_size(1), 4096);
        assert_eq!(flex_ring_queued(5, 5, 8), 0);
        assert_eq!(flex_ring_queued(13, 5, 8), 8);
        assert_eq!(flex_ring_queued(7, 5, 8), 2);
        assert_eq!(flex_ring_queued(9, 6, 8), 3);
    }
}
