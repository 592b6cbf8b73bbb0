//! The guest-visible half of the 2-level event-channel ABI: the pending and mask
//! bitmaps in the shared-info page and each vCPU's selector and upcall flag.
//!
//! Raising port `p` for vCPU `v` (Xen's `evtchn_2l_set_pending`):
//! 1. set bit `p` of `evtchn_pending`; if it was set already, nothing else happens
//!    (events coalesce: a flood of sends costs the receiver nothing);
//! 2. unless bit `p` of `evtchn_mask` is set, set bit `p / 64` of `v`'s
//!    `evtchn_pending_sel`, and if that bit was clear, set `v`'s
//!    `evtchn_upcall_pending`: the vCPU gets an upcall when it next runs with events
//!    unmasked (and wakes if it blocked).
//!
//! The guest clears `evtchn_upcall_pending`, then the selector, then the pending bits it
//! handles; the hypervisor only ever sets them (except when a port closes). All updates
//! are atomic read-modify-writes because the guest writes the same words.

use crate::mm::{Mfn, PhysMem};
use crate::vcpu_info::VcpuInfoRef;
use core::mem::offset_of;
use pv_abi::event_channel::{EvtchnPort, port_word_and_bit};
use pv_abi::xen::SharedInfo;

/// What raising a port did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Raised {
    /// The pending bit was clear before (so pollers of this port should wake).
    pub newly_pending: bool,
    /// The vCPU's `evtchn_upcall_pending` went from clear to set.
    pub upcall: bool,
}

/// One domain's event bitmaps.
pub struct SharedEvents<'a, M: PhysMem> {
    mem: &'a M,
    shared_info: Mfn,
}

impl<'a, M: PhysMem> SharedEvents<'a, M> {
    /// The bitmaps of the domain whose shared-info page is `shared_info`.
    #[inline]
    pub fn new(mem: &'a M, shared_info: Mfn) -> Self {
        SharedEvents { mem, shared_info }
    }

    #[inline]
    fn word_addr(&self, field: usize, port: EvtchnPort) -> (u64, u64) {
        let (word, bit) = port_word_and_bit(port);
        (
            self.shared_info.addr() + field as u64 + word as u64 * 8,
            1u64 << bit,
        )
    }

    fn pending_word(&self, port: EvtchnPort) -> (u64, u64) {
        self.word_addr(offset_of!(SharedInfo, evtchn_pending), port)
    }

    fn mask_word(&self, port: EvtchnPort) -> (u64, u64) {
        self.word_addr(offset_of!(SharedInfo, evtchn_mask), port)
    }

    /// Whether `port` is pending.
    pub fn is_pending(&self, port: EvtchnPort) -> bool {
        let (addr, bit) = self.pending_word(port);
        self.mem.read_u64(addr) & bit != 0
    }

    /// Whether `port` is masked.
    #[inline]
    pub fn is_masked(&self, port: EvtchnPort) -> bool {
        let (addr, bit) = self.mask_word(port);
        self.mem.read_u64(addr) & bit != 0
    }

    /// Clears `port`'s pending bit (the port is closing, so a later binding of the same
    /// number starts clean).
    pub fn clear_pending(&self, port: EvtchnPort) {
        let (addr, bit) = self.pending_word(port);
        self.mem.fetch_and_u64(addr, !bit);
    }

    /// Sets `port`'s mask bit (hypervisor-side only in tests and at domain build).
    pub fn set_mask(&self, port: EvtchnPort) {
        let (addr, bit) = self.mask_word(port);
        self.mem.fetch_or_u64(addr, bit);
    }

    /// Raises `port` for the vCPU whose `vcpu_info` is `info` (see the module docs).
    #[inline(always)]
    pub fn raise(&self, info: &VcpuInfoRef<'_, M>, port: EvtchnPort) -> Raised {
        if !self.set_pending(port) {
            return Raised {
                newly_pending: false,
                upcall: false,
            };
        }
        let upcall = !self.is_masked(port) && Self::select(info, port);
        Raised {
            newly_pending: true,
            upcall,
        }
    }

    /// Step 1 of [`raise`](Self::raise): sets `port`'s pending bit; whether it was clear.
    #[inline(always)]
    pub fn set_pending(&self, port: EvtchnPort) -> bool {
        let (addr, bit) = self.pending_word(port);
        self.mem.fetch_or_u64(addr, bit) & bit == 0
    }

    /// Sets the selector bit for `port` and, if it was clear, the upcall flag; returns
    /// whether the upcall flag went from clear to set.
    #[inline(always)]
    pub fn select(info: &VcpuInfoRef<'_, M>, port: EvtchnPort) -> bool {
        let (word, _) = port_word_and_bit(port);
        !info.test_and_set_selector(word as u32) && !info.mark_upcall_pending()
    }

    /// EVTCHNOP_unmask (Xen's `evtchn_2l_unmask`): clears the mask bit; if the port was
    /// masked and is pending, re-raises the selector and upcall so the event is not
    /// lost. Returns whether the upcall flag went from clear to set.
    pub fn unmask(&self, info: &VcpuInfoRef<'_, M>, port: EvtchnPort) -> bool {
        let (addr, bit) = self.mask_word(port);
        let was_masked = self.mem.fetch_and_u64(addr, !bit) & bit != 0;
        was_masked && self.is_pending(port) && Self::select(info, port)
    }
}
