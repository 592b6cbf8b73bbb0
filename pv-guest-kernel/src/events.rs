//! Event channels, guest side: the upcall entry, dispatch to per-port handlers, and the
//! virtual interrupt flag.
//!
//! The hypervisor raises an upcall (to `guest_event_entry` in `arch/events.S`) whenever
//! the vCPU returns to us with `evtchn_upcall_pending` set and events unmasked, masking
//! events on the way in. [`dispatch`] then does the 2-level scan: clear
//! `evtchn_upcall_pending`, take the selector with an atomic swap, and for each selected
//! word handle the ports that are pending and not masked, clearing each pending bit
//! before its handler runs (so an event raised meanwhile is not lost). The return
//! (`HYPERVISOR_iret`) restores the interrupted event mask from the saved RFLAGS.IF.
//!
//! Handlers run with events masked, on the interrupted kernel stack; they must be short
//! (set a flag, wake a thread).

use crate::paravirt;
use core::mem::offset_of;
use core::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use pv_abi::callback::{CALLBACKTYPE_EVENT, CallbackRegister};
use pv_abi::errno::Errno;
use pv_abi::event_channel::EvtchnPort;
use pv_abi::guest;
use pv_abi::xen::{EVTCHN_2L_WORDS, SharedInfo, VcpuInfo};

/// Ports this kernel keeps handlers for (the hypervisor's per-domain limit is 1024).
pub const MAX_PORTS: usize = 1024;

/// A port's handler.
pub type Handler = fn(EvtchnPort);

static HANDLERS: [AtomicUsize; MAX_PORTS] = [const { AtomicUsize::new(0) }; MAX_PORTS];
/// Events that arrived on ports without a handler.
static STRAY: AtomicU64 = AtomicU64::new(0);
/// Upcalls taken.
static UPCALLS: AtomicU64 = AtomicU64::new(0);

unsafe extern "C" {
    fn guest_event_entry();
}

/// The mapped shared-info page.
fn shared() -> u64 {
    paravirt::shared_info()
}

fn word(offset: usize) -> &'static AtomicU64 {
    // SAFETY: shared_info is mapped writable for the kernel's life and the bitmaps are
    // 8-byte aligned words the hypervisor updates atomically too.
    unsafe { AtomicU64::from_ptr((shared() + offset as u64) as *mut u64) }
}

fn byte(offset: usize) -> &'static AtomicU8 {
    // SAFETY: as in `word`, for the byte-sized flags of vcpu_info.
    unsafe { AtomicU8::from_ptr((shared() + offset as u64) as *mut u8) }
}

fn pending_word(index: usize) -> &'static AtomicU64 {
    word(offset_of!(SharedInfo, evtchn_pending) + index * 8)
}

fn mask_word(index: usize) -> &'static AtomicU64 {
    word(offset_of!(SharedInfo, evtchn_mask) + index * 8)
}

fn vcpu0(field: usize) -> usize {
    offset_of!(SharedInfo, vcpu_info) + field
}

/// Registers the upcall entry with the hypervisor. Needs shared_info mapped.
pub fn init() -> Result<(), Errno> {
    if shared() == 0 {
        return Err(Errno::ENXIO);
    }
    let request =
        CallbackRegister::new(CALLBACKTYPE_EVENT, 0, guest_event_entry as *const () as u64);
    // SAFETY: the entry stub is written for the event-callback frame and returns through
    // HYPERVISOR_iret.
    unsafe { guest::callback_register(&request) }.map(|_| ())
}

/// Calls `handler` for every event on `port` from now on.
pub fn bind(port: EvtchnPort, handler: Handler) {
    if let Some(slot) = HANDLERS.get(port as usize) {
        slot.store(handler as usize, Ordering::SeqCst);
    }
}

/// Forgets `port`'s handler (its events then count as stray).
pub fn unbind(port: EvtchnPort) {
    if let Some(slot) = HANDLERS.get(port as usize) {
        slot.store(0, Ordering::SeqCst);
    }
}

/// Whether `port` is pending.
pub fn is_pending(port: EvtchnPort) -> bool {
    let (w, b) = (port as usize / 64, port % 64);
    w < EVTCHN_2L_WORDS && pending_word(w).load(Ordering::SeqCst) & (1 << b) != 0
}

/// Clears `port`'s pending bit.
pub fn clear(port: EvtchnPort) {
    let (w, b) = (port as usize / 64, port % 64);
    if w < EVTCHN_2L_WORDS {
        pending_word(w).fetch_and(!(1 << b), Ordering::SeqCst);
    }
}

/// Sets `port`'s mask bit.
pub fn mask(port: EvtchnPort) {
    let (w, b) = (port as usize / 64, port % 64);
    if w < EVTCHN_2L_WORDS {
        mask_word(w).fetch_or(1 << b, Ordering::SeqCst);
    }
}

/// Unmasks `port` through the hypervisor, which re-raises it if it is pending.
pub fn unmask(port: EvtchnPort) -> Result<u64, Errno> {
    guest::evtchn_unmask(port)
}

/// Upcalls taken so far, and events that found no handler.
pub fn counters() -> (u64, u64) {
    (
        UPCALLS.load(Ordering::Relaxed),
        STRAY.load(Ordering::Relaxed),
    )
}

/// The 2-level scan (see the module docs). Runs with events masked.
pub fn dispatch() {
    UPCALLS.fetch_add(1, Ordering::Relaxed);
    let pending_flag = byte(vcpu0(offset_of!(VcpuInfo, evtchn_upcall_pending)));
    let selector = word(vcpu0(offset_of!(VcpuInfo, evtchn_pending_sel)));
    loop {
        pending_flag.store(0, Ordering::SeqCst);
        let mut words = selector.swap(0, Ordering::SeqCst);
        if words == 0 {
            break;
        }
        while words != 0 {
            let w = words.trailing_zeros() as usize;
            words &= words - 1;
            let mut ready =
                pending_word(w).load(Ordering::SeqCst) & !mask_word(w).load(Ordering::SeqCst);
            while ready != 0 {
                let b = ready.trailing_zeros();
                ready &= ready - 1;
                pending_word(w).fetch_and(!(1u64 << b), Ordering::SeqCst);
                let port = (w * 64) as u32 + b;
                // A port past the handler table (Xen gives a domain up to 4096) has no
                // handler: stray, not a panic (found by review).
                let handler = HANDLERS
                    .get(port as usize)
                    .map_or(0, |h| h.load(Ordering::SeqCst));
                match handler {
                    0 => {
                        STRAY.fetch_add(1, Ordering::Relaxed);
                    }
                    handler => {
                        // SAFETY: only `bind` stores into HANDLERS, and only `Handler`s.
                        let handler: Handler = unsafe { core::mem::transmute(handler) };
                        handler(port);
                    }
                }
            }
        }
    }
}

/// Whether an upcall is pending for vCPU 0.
pub fn upcall_pending() -> bool {
    byte(vcpu0(offset_of!(VcpuInfo, evtchn_upcall_pending))).load(Ordering::SeqCst) != 0
}

fn mask_flag() -> &'static AtomicU8 {
    byte(vcpu0(offset_of!(VcpuInfo, evtchn_upcall_mask)))
}

/// Masks events (the virtual interrupt flag, always the paravirtual way: a write to
/// `vcpu_info`); returns whether they were masked before (for [`restore`]).
pub fn save_and_mask() -> bool {
    mask_flag().swap(1, Ordering::SeqCst) != 0
}

/// Unmasks events; an upcall that became pending meanwhile is taken at once (any
/// hypercall makes the hypervisor deliver it; `xen_version` is the cheapest).
pub fn unmask_all() {
    mask_flag().store(0, Ordering::SeqCst);
    if upcall_pending() {
        let _ = guest::version();
    }
}

/// Unmasks events without entering the hypervisor: an upcall pending meanwhile stays
/// due until the next entry (a hypercall, an exception, an interrupt) delivers it. For
/// self-tests of that next entry; everything else uses [`unmask_all`].
pub fn unmask_quietly() {
    mask_flag().store(0, Ordering::SeqCst);
}

/// Undoes [`save_and_mask`].
pub fn restore(was_masked: bool) {
    if !was_masked {
        unmask_all();
    }
}
