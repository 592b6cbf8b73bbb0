//! Events across domains: raising a port (and waking its vCPU), sending, binding and
//! closing interdomain channels, releasing a stopped domain's ports, and the upcall.

use super::{Guests, VECTOR_UPCALL};
use super::{Runtime, existing_vcpu_info_addr, live_slot_of, vcpu_info_addr};
use crate::domain::Domain;
use crate::evtchn::shared::{Raised, SharedEvents};
use crate::evtchn::{Binding, virq_is_global};
use crate::frames::{DomId, FrameTable};
use crate::mm::PhysMem;
use crate::regs::TrapFrame;
use crate::sched::{RunState, Scheduler, VcpuRef};
use crate::traps::bounce::Bounce;
use crate::traps::{self, TrapContext};
use crate::vcpu_info::VcpuInfoRef;
use core::num::NonZeroU64;
use pv_abi::errno::Errno;
use pv_abi::event_channel::EvtchnPort;
use pv_abi::xen::VIRQ_DOM_EXC;

/// The first half of raising `port` of the domain in `slot`: the shared-memory part (the
/// pending bit, then, if that makes an upcall due, the selector bit and the vCPU's
/// upcall flag), which needs neither the scheduler nor the time. Returns the notified
/// vCPU and what changed, or `None` if the domain is not running or the port is closed.
/// [`needs_wake`] says whether the second half ([`Guests::wake_for`]) has work.
#[inline]
pub fn mark_pending<M: PhysMem>(
    mem: &M,
    domains: &[Option<Domain>],
    runtime: &[Runtime],
    slot: usize,
    port: EvtchnPort,
) -> Option<(u32, Raised)> {
    let domain = domains.get(slot)?.as_ref().filter(|d| d.is_running())?;
    let channel = runtime[slot].events.open(port).ok()?;
    let vcpu = channel.vcpu;
    let info = vcpu_info_addr(domain, &runtime[slot], vcpu)?;
    let raised =
        SharedEvents::new(mem, domain.shared_info).raise(&VcpuInfoRef::at(mem, info), port);
    Some((vcpu, raised))
}

/// Whether a raise of `port` in the domain with runtime `runtime` that did `raised` must
/// wake a vCPU: an upcall became due, or the port became pending while some vCPU polls.
#[inline(always)]
pub fn needs_wake(runtime: &Runtime, port: EvtchnPort, raised: Raised) -> bool {
    raised.upcall || (raised.newly_pending && runtime.polled(port))
}

/// Where an `EVTCHNOP_send` on `port` of `slot` lands: the slot and port to raise, or
/// `None` if the notification is dropped (an unbound port, a peer that is gone).
#[inline]
pub fn send_target(
    domains: &[Option<Domain>],
    runtime: &[Runtime],
    slot: usize,
    port: EvtchnPort,
) -> Result<Option<(usize, EvtchnPort)>, Errno> {
    match runtime[slot].events.open(port)?.binding {
        Binding::Interdomain {
            remote,
            remote_port,
        } => Ok(live_slot_of(domains, remote).map(|remote_slot| (remote_slot, remote_port))),
        Binding::Ipi => Ok(Some((slot, port))),
        // As in Xen: nobody listens yet, the notification is dropped.
        Binding::Unbound { .. } => Ok(None),
        _ => Err(Errno::EINVAL),
    }
}

/// The wake-up a send owes ([`send_raise`]): the receiving domain's slot, port and
/// notified vCPU, and what the raise did, packed in one word, so that it comes back from
/// a call in one register (a structure of them went through the stack).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wake(NonZeroU64);

impl Wake {
    const VCPU_SHIFT: u32 = 32;
    const SLOT_SHIFT: u32 = 40;
    const NEWLY_PENDING: u64 = 1 << 48;
    const UPCALL: u64 = 1 << 49;
    /// Set in every value (so none is zero).
    const PRESENT: u64 = 1 << 63;

    /// Port `port` of the domain in `slot`, notifying `vcpu`, raised with `raised`. A
    /// slot is below `MAX_DOMAINS` and a bound channel's vCPU below `MAX_VCPUS`: both fit
    /// in a byte.
    #[inline]
    fn new(slot: usize, port: EvtchnPort, vcpu: u32, raised: Raised) -> Wake {
        debug_assert!(slot <= 0xff && vcpu <= 0xff);
        let mut word = Self::PRESENT
            | u64::from(port)
            | (u64::from(vcpu & 0xff) << Self::VCPU_SHIFT)
            | (((slot & 0xff) as u64) << Self::SLOT_SHIFT);
        if raised.newly_pending {
            word |= Self::NEWLY_PENDING;
        }
        if raised.upcall {
            word |= Self::UPCALL;
        }
        Wake(NonZeroU64::new(word).expect("PRESENT is set"))
    }

    /// The receiving domain's slot.
    pub fn slot(self) -> usize {
        ((self.0.get() >> Self::SLOT_SHIFT) & 0xff) as usize
    }

    /// The receiving port.
    pub fn port(self) -> EvtchnPort {
        self.0.get() as u32
    }

    /// Its notified vCPU.
    pub fn vcpu(self) -> u32 {
        ((self.0.get() >> Self::VCPU_SHIFT) & 0xff) as u32
    }

    /// What the raise did.
    pub fn raised(self) -> Raised {
        Raised {
            newly_pending: self.0.get() & Self::NEWLY_PENDING != 0,
            upcall: self.0.get() & Self::UPCALL != 0,
        }
    }

    /// Whether [`Guests::send_wake`] would change anything: only if the notified vCPU is
    /// blocked or some vCPU of the receiving domain polls (`wake_for` unblocks nothing
    /// else). A send to a busy or runnable vCPU, the common case between two domains
    /// that take turns, owes nothing then, and its sender skips the clock read.
    #[inline]
    pub fn can_wake(self, sched: &Scheduler, runtime: &[Runtime]) -> bool {
        let target = VcpuRef {
            slot: self.slot(),
            vcpu: self.vcpu() as usize,
        };
        sched.state(target) == RunState::Blocked || runtime[self.slot()].polling()
    }
}

/// `EVTCHNOP_send` from `sender`, the domain in `slot`, on `port`, the half that needs
/// neither the clock nor the scheduler (the hypercall fast path's): finds the receiving
/// end, looking each channel and domain up once, and raises it as [`mark_pending`] does.
/// An upcall for the sending vCPU (the sender's active one) needs no wake-up: it is
/// running, and the upcall is delivered on its way out. `Ok(Some(wake))` when a vCPU
/// must still be woken ([`needs_wake`]; [`Guests::send_wake`] does it, at the receiving
/// end found here), `Ok(None)` when nothing is owed
/// (including a notification dropped at an unbound port or a peer that is gone), the
/// errno for a port that cannot send. The same effects as [`send_target`], then
/// [`mark_pending`] and [`needs_wake`] (host test).
#[inline(always)]
pub fn send_raise<M: PhysMem>(
    mem: &M,
    domains: &[Option<Domain>],
    runtime: &[Runtime],
    slot: usize,
    sender: &Domain,
    port: EvtchnPort,
) -> Result<Option<Wake>, Errno> {
    let channel = runtime[slot].events.open(port)?;
    // Each arm raises on its own (the raise inlined into both), so that neither pays
    // for joining the other's registers.
    match channel.binding {
        Binding::Ipi => Ok(raise_sent(
            mem,
            &runtime[slot],
            slot,
            sender,
            port,
            channel.vcpu,
            sender.vcpu.id,
        )),
        Binding::Interdomain {
            remote,
            remote_port,
        } => {
            let Some(remote_slot) = live_slot_of(domains, remote) else {
                return Ok(None);
            };
            let remote_runtime = &runtime[remote_slot];
            let Ok(remote_channel) = remote_runtime.events.open(remote_port) else {
                return Ok(None);
            };
            let Some(domain) = domains[remote_slot].as_ref() else {
                return Ok(None);
            };
            // An upcall for another domain's vCPU is always owed a wake-up check.
            let running = if remote_slot == slot {
                sender.vcpu.id
            } else {
                u32::MAX
            };
            Ok(raise_sent(
                mem,
                remote_runtime,
                remote_slot,
                domain,
                remote_port,
                remote_channel.vcpu,
                running,
            ))
        }
        // As in Xen: nobody listens yet, the notification is dropped.
        Binding::Unbound { .. } => Ok(None),
        _ => Err(Errno::EINVAL),
    }
}

/// [`send_raise`]'s raise of `port` of `domain` (in `slot`, runtime `runtime`),
/// notifying its vCPU `vcpu`, where `running` is the sending vCPU if `domain` is the
/// sender (`u32::MAX` otherwise): the wake-up still owed, if any.
#[inline(always)]
fn raise_sent<M: PhysMem>(
    mem: &M,
    runtime: &Runtime,
    slot: usize,
    domain: &Domain,
    port: EvtchnPort,
    vcpu: u32,
    running: u32,
) -> Option<Wake> {
    if !domain.is_running() {
        return None;
    }
    // `raise`'s steps, with the `vcpu_info` found only when a selector bit is to be set.
    let events = SharedEvents::new(mem, domain.shared_info);
    if !events.set_pending(port) {
        return None;
    }
    if events.is_masked(port) {
        // No upcall: only a vCPU polling the port is owed a wake-up.
        if !runtime.polling() {
            return None;
        }
        return masked_polled(runtime, slot, port, vcpu);
    }
    raise_unmasked(mem, runtime, slot, domain, port, vcpu, running)
}

/// The rest of [`raise_sent`] for a masked port while some vCPU of the domain polls: the
/// wake-up owed if one polls this port. Out of line for the same reason as
/// [`raise_unmasked`].
#[cold]
#[inline(never)]
fn masked_polled(runtime: &Runtime, slot: usize, port: EvtchnPort, vcpu: u32) -> Option<Wake> {
    let raised = Raised {
        newly_pending: true,
        upcall: false,
    };
    needs_wake(runtime, port, raised).then(|| Wake::new(slot, port, vcpu, raised))
}

/// The rest of [`raise_sent`] for a port that is not masked: the selector bit and the
/// upcall flag (`vcpu_info_addr` fails only for a vCPU the domain does not have: tested
/// here; a bound channel's vCPU always is one, so the test drops nothing `raise` would
/// not). Out of line, so that the masked send (a ring's notification while its
/// consumer is busy) keeps its values in scratch registers.
#[inline(never)]
fn raise_unmasked<M: PhysMem>(
    mem: &M,
    runtime: &Runtime,
    slot: usize,
    domain: &Domain,
    port: EvtchnPort,
    vcpu: u32,
    running: u32,
) -> Option<Wake> {
    if vcpu >= runtime.nr_vcpus {
        return None;
    }
    let info = existing_vcpu_info_addr(domain, runtime, vcpu);
    let upcall = SharedEvents::select(&VcpuInfoRef::at(mem, info), port);
    let raised = Raised {
        newly_pending: true,
        upcall: upcall && vcpu != running,
    };
    needs_wake(runtime, port, raised).then(|| Wake::new(slot, port, vcpu, raised))
}

impl<M: PhysMem> Guests<'_, M> {
    /// Raises `port` of the domain in `slot`: sets it pending, and wakes the notified
    /// vCPU if that makes an upcall due or the vCPU polls this port.
    pub fn raise(&mut self, slot: usize, port: EvtchnPort) {
        if let Some((vcpu, raised)) = mark_pending(self.mem, self.domains, self.runtime, slot, port)
        {
            self.wake_for(slot, vcpu, port, raised);
        }
    }

    /// The second half of raising `port` of `slot` (see [`mark_pending`]): wakes the
    /// notified vCPU `vcpu` if an upcall became due, and every vCPU polling the port if it
    /// became pending.
    #[inline]
    pub fn wake_for(&mut self, slot: usize, vcpu: u32, port: EvtchnPort, raised: Raised) {
        if raised.upcall {
            self.unblock(VcpuRef {
                slot,
                vcpu: vcpu as usize,
            });
        }
        if raised.newly_pending && self.runtime[slot].polling() {
            for v in 0..self.vcpu_count(slot) as usize {
                if self.runtime[slot].vcpus[v].polling.contains(&port) {
                    self.unblock(VcpuRef { slot, vcpu: v });
                }
            }
        }
    }

    /// Raises `virq` for vCPU `vcpu` of `slot` (global VIRQs: wherever bound).
    pub fn raise_virq(&mut self, slot: usize, vcpu: u32, virq: u32) {
        let events = &self.runtime[slot].events;
        // A global VIRQ is recorded on vCPU 0 and notifies the vCPU its port is bound
        // to (`EventTable::bind_vcpu`), as in Xen's send_guest_global_virq.
        let port = events.virq_port(virq, if virq_is_global(virq) { 0 } else { vcpu });
        if let Some(port) = port {
            self.raise(slot, port);
        }
    }

    /// The wake-up [`send_raise`] said a send owes: as [`wake_for`](Self::wake_for), at
    /// the receiving end it found.
    pub fn send_wake(&mut self, wake: Wake) {
        self.wake_for(wake.slot(), wake.vcpu(), wake.port(), wake.raised());
    }

    /// EVTCHNOP_send from `slot`.
    pub fn send(&mut self, slot: usize, port: EvtchnPort) -> Result<(), Errno> {
        if let Some((target, target_port)) = send_target(self.domains, self.runtime, slot, port)? {
            self.raise(target, target_port);
        }
        Ok(())
    }

    /// EVTCHNOP_bind_interdomain from `slot`: connects a new local port to
    /// `remote_port` of `remote`, which must be unbound and waiting for the caller.
    pub fn bind_interdomain(
        &mut self,
        slot: usize,
        remote: DomId,
        remote_port: EvtchnPort,
    ) -> Result<EvtchnPort, Errno> {
        let me = self.domain(slot).ok_or(Errno::ESRCH)?.id;
        let remote = self.resolve(slot, remote).ok_or(Errno::ESRCH)?;
        let remote_slot = self.slot_of(remote).ok_or(Errno::ESRCH)?;
        if !self.runtime[remote_slot]
            .events
            .is_unbound_for(remote_port, me)
        {
            return Err(Errno::EINVAL);
        }
        let local = self.runtime[slot].events.connect_new(remote, remote_port)?;
        self.runtime[remote_slot]
            .events
            .connect(remote_port, me, local);
        // As in Xen: sends to the unbound port were dropped, so start with one pending.
        self.raise(slot, local);
        Ok(local)
    }

    /// EVTCHNOP_close from `slot`: frees the port; an interdomain peer's port goes back
    /// to waiting, unbound, for this domain.
    pub fn close(&mut self, slot: usize, port: EvtchnPort) -> Result<(), Errno> {
        let domain = self.domains[slot].as_ref().ok_or(Errno::ESRCH)?;
        let (me, shared) = (domain.id, domain.shared_info);
        let binding = self.runtime[slot].events.close(port)?;
        SharedEvents::new(self.mem, shared).clear_pending(port);
        if let Binding::Interdomain {
            remote,
            remote_port,
        } = binding
            && let Some(remote_slot) = (0..self.domains.len())
                .find(|&s| self.domains[s].as_ref().is_some_and(|d| d.id == remote))
        {
            let back = Binding::Interdomain {
                remote: me,
                remote_port: port,
            };
            let events = &mut self.runtime[remote_slot].events;
            if events.get(remote_port).is_some_and(|c| c.binding == back) {
                events.disconnect(remote_port);
            }
        }
        Ok(())
    }

    /// A domain stopped (shut down, crashed, or shut down by another): close every
    /// port (peers see theirs unbound), stop its timers, take it off the scheduler,
    /// and tell privileged domains through VIRQ_DOM_EXC. Call before its frames go.
    pub fn release(&mut self, slot: usize) {
        let ports: heapless::Vec<EvtchnPort, { crate::evtchn::MAX_PORTS }> = self.runtime[slot]
            .events
            .open_ports()
            .map(|(port, _)| port)
            .collect();
        for port in ports {
            let _ = self.close(slot, port);
        }
        let nr = self.vcpu_count(slot);
        self.runtime[slot].reset(nr);
        self.sched.remove_domain(slot, self.now);
        let privileged: heapless::Vec<usize, 16> = (0..self.domains.len())
            .filter(|&s| s != slot && self.domain(s).is_some_and(|d| d.privileged))
            .collect();
        for other in privileged {
            self.raise_virq(other, 0, VIRQ_DOM_EXC);
        }
    }

    /// Delivers an event upcall to the active vCPU of `slot` if one is due (see
    /// [`deliver_upcall_to`]).
    pub fn deliver_upcall(
        &mut self,
        slot: usize,
        regs: &mut TrapFrame,
        memo: Option<&crate::guestmem::WalkMemo>,
    ) -> traps::Outcome {
        match self.domains.get_mut(slot).and_then(Option::as_mut) {
            Some(domain) => deliver_upcall_to(self.mem, self.frames, domain, regs, memo),
            None => traps::Outcome::Resume,
        }
    }
}

/// Delivers an event upcall to `domain`'s active vCPU, whose registers are `regs`, if one
/// is due (pending, not masked, a callback registered), as Xen does on every return to a
/// guest: a bounce frame to the event callback, with events masked. The bounce reads and
/// writes only rcx, r11 and the iret part of `regs`. `memo` remembers guest-memory walks
/// across calls, if the caller keeps one.
pub fn deliver_upcall_to<M: PhysMem>(
    mem: &M,
    frames: &FrameTable<'_>,
    domain: &mut Domain,
    regs: &mut TrapFrame,
    memo: Option<&crate::guestmem::WalkMemo>,
) -> traps::Outcome {
    let Some(bounce) = upcall_bounce(&domain.vcpu) else {
        return traps::Outcome::Resume;
    };
    if !domain.is_running() || !VcpuInfoRef::of(mem, domain).needs_delivery() {
        return traps::Outcome::Resume;
    }
    let mut ctx = TrapContext {
        domain,
        mem,
        frames,
        regs,
        memo,
    };
    traps::deliver_or_failsafe(&mut ctx, VECTOR_UPCALL, bounce)
}

/// The bounce of an event upcall to `vcpu`'s event callback, with events masked; `None`
/// while it has none.
#[inline(always)]
pub fn upcall_bounce(vcpu: &crate::domain::Vcpu) -> Option<Bounce> {
    let handler = vcpu.callbacks.event;
    (handler != 0).then_some(Bounce {
        handler,
        error_code: None,
        mask_events: true,
        failsafe: false,
    })
}

#[cfg(test)]
mod wake_tests {
    use super::*;
    use crate::bootimage::MAX_DOMAINS;
    use crate::evtchn::MAX_PORTS;
    use crate::sched::MAX_VCPUS;

    /// Every field comes back as it went in, at the edges of each range, and no two
    /// fields share a bit.
    #[test]
    fn a_wake_keeps_every_field() {
        let flags = [(false, false), (true, false), (false, true), (true, true)];
        for slot in [0, 1, MAX_DOMAINS - 1] {
            for port in [1, 2, 63, 64, MAX_PORTS as EvtchnPort - 1] {
                for vcpu in [0, 1, MAX_VCPUS as u32 - 1] {
                    for (newly_pending, upcall) in flags {
                        let raised = Raised {
                            newly_pending,
                            upcall,
                        };
                        let wake = Wake::new(slot, port, vcpu, raised);
                        assert_eq!(
                            (wake.slot(), wake.port(), wake.vcpu(), wake.raised()),
                            (slot, port, vcpu, raised)
                        );
                    }
                }
            }
        }
    }
}
