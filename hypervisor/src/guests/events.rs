//! Events across domains: raising a port (and waking its vCPU), sending, binding and
//! closing interdomain channels, releasing a stopped domain's ports, and the upcall.

use super::{Guests, VECTOR_UPCALL};
use crate::evtchn::shared::SharedEvents;
use crate::evtchn::{Binding, virq_is_global};
use crate::frames::DomId;
use crate::mm::PhysMem;
use crate::regs::TrapFrame;
use crate::sched::VcpuRef;
use crate::traps::bounce::Bounce;
use crate::traps::{self, TrapContext};
use crate::vcpu_info::VcpuInfoRef;
use pv_abi::errno::Errno;
use pv_abi::event_channel::EvtchnPort;
use pv_abi::xen::VIRQ_DOM_EXC;

impl<M: PhysMem> Guests<'_, M> {
    /// Raises `port` of the domain in `slot`: sets it pending, and wakes the notified
    /// vCPU if that makes an upcall due or the vCPU polls this port.
    pub fn raise(&mut self, slot: usize, port: EvtchnPort) {
        let Some(domain) = self.domain(slot) else {
            return;
        };
        let shared = domain.shared_info;
        let Ok(channel) = self.runtime[slot].events.open(port) else {
            return;
        };
        let vcpu = channel.vcpu;
        let Some(info) = self.vcpu_info_addr(slot, vcpu) else {
            return;
        };
        let raised =
            SharedEvents::new(self.mem, shared).raise(&VcpuInfoRef::at(self.mem, info), port);
        if raised.upcall {
            self.unblock(VcpuRef {
                slot,
                vcpu: vcpu as usize,
            });
        }
        if raised.newly_pending {
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
        let port = if virq_is_global(virq) {
            (0..self.vcpu_count(slot)).find_map(|v| events.virq_port(virq, v))
        } else {
            events.virq_port(virq, vcpu)
        };
        if let Some(port) = port {
            self.raise(slot, port);
        }
    }

    /// EVTCHNOP_send from `slot`.
    pub fn send(&mut self, slot: usize, port: EvtchnPort) -> Result<(), Errno> {
        let channel = *self.runtime[slot].events.open(port)?;
        match channel.binding {
            Binding::Interdomain {
                remote,
                remote_port,
            } => {
                if let Some(remote_slot) = self.slot_of(remote) {
                    self.raise(remote_slot, remote_port);
                }
                Ok(())
            }
            Binding::Ipi => {
                self.raise(slot, port);
                Ok(())
            }
            // As in Xen: nobody listens yet, the notification is dropped.
            Binding::Unbound { .. } => Ok(()),
            _ => Err(Errno::EINVAL),
        }
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

    /// Delivers an event upcall to the active vCPU of `slot` if one is due (pending,
    /// not masked, a callback registered), as Xen does on every return to a guest: a
    /// bounce frame to the event callback, with events masked.
    /// `memo` remembers guest-memory walks across calls, if the caller keeps one.
    pub fn deliver_upcall(
        &mut self,
        slot: usize,
        regs: &mut TrapFrame,
        memo: Option<&crate::guestmem::WalkMemo>,
    ) -> traps::Outcome {
        let mem = self.mem;
        let frames = self.frames;
        let Some(domain) = self.domains.get_mut(slot).and_then(Option::as_mut) else {
            return traps::Outcome::Resume;
        };
        let handler = domain.vcpu.callbacks.event;
        if !domain.is_running() || handler == 0 || !VcpuInfoRef::of(mem, domain).needs_delivery() {
            return traps::Outcome::Resume;
        }
        let mut ctx = TrapContext {
            domain,
            mem,
            frames,
            regs,
            memo,
        };
        let bounce = Bounce {
            handler,
            error_code: None,
            mask_events: true,
            failsafe: false,
        };
        traps::deliver_or_failsafe(&mut ctx, VECTOR_UPCALL, bounce)
    }
}
