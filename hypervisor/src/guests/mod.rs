//! All guests at once: the operations that reach beyond one domain's own state.
//!
//! Sending an event touches the receiver's shared-info page and may wake one of its
//! vCPUs; a timer raises a VIRQ and wakes; a domain that stops must close its ports so
//! that its peers see them unbound; a domain's second vCPU must be swapped in before it
//! runs. [`Guests`] is a borrowed view of everything that takes: the domain table, each
//! domain's [`Runtime`] (event channels, parked vCPUs, timers, poll sets), the
//! scheduler and the current system time. The machine builds one per entry; host tests
//! build one over fake memory.
//!
//! The vCPU that runs is always the domain's `vcpu` field (the trap and hypercall
//! paths only ever see that one); the domain's other vCPUs wait in
//! [`Runtime::parked`] and [`Guests::activate`] swaps them in.

use crate::domain::{Domain, Vcpu};
use crate::evtchn::shared::SharedEvents;
use crate::evtchn::{Binding, EventTable, virq_is_global};
use crate::frames::{DomId, FrameTable};
use crate::guestmem::GuestMem;
use crate::mm::PhysMem;
use crate::regs::TrapFrame;
use crate::sched::{MAX_VCPUS, RunState, SchedError, Scheduler, VcpuRef};
use crate::time::{Nanos, VcpuTimers};
use crate::traps::bounce::Bounce;
use crate::traps::{self, TrapContext};
use crate::vcpu_info::{VcpuInfoRef, shared_slot};
use pv_abi::errno::Errno;
use pv_abi::event_channel::EvtchnPort;
use pv_abi::xen::{DOMID_SELF, VIRQ_DOM_EXC, VIRQ_TIMER, VcpuTimeInfo};

/// Most ports one SCHEDOP_poll may wait on (Xen's limit).
pub const MAX_POLL_PORTS: usize = 128;

/// Pseudo-vector under which a failed upcall delivery is reported.
pub const VECTOR_UPCALL: u64 = 0x101;

/// Per-vCPU state beyond the registers.
#[derive(Clone, Debug)]
pub struct VcpuRuntime {
    /// Has a context: vCPU 0 from the builder, the others after VCPUOP_initialise.
    pub initialised: bool,
    /// Its timers.
    pub timers: VcpuTimers,
    /// The ports it waits on while blocked in SCHEDOP_poll (empty otherwise).
    pub polling: heapless::Vec<EvtchnPort, MAX_POLL_PORTS>,
    /// Guest virtual address of its registered runstate area, if any.
    pub runstate_area: Option<u64>,
    /// The deadline of the timer that woke it and when it fired, until it runs (for the
    /// latency record).
    pub woken_by_timer: Option<(Nanos, Nanos)>,
}

/// How promptly a domain's timers got it running: from a blocked vCPU's timer deadline
/// to the moment that vCPU was on the CPU again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimerLatency {
    /// Wake-ups by a timer.
    pub wakes: u64,
    /// The latest any of them ran, after its deadline.
    pub worst: Nanos,
}

impl VcpuRuntime {
    const NEW: VcpuRuntime = VcpuRuntime {
        initialised: false,
        timers: VcpuTimers {
            singleshot: None,
            periodic: None,
            poll_timeout: None,
        },
        polling: heapless::Vec::new(),
        runstate_area: None,
        woken_by_timer: None,
    };
}

/// What the hypervisor keeps per domain besides [`Domain`]: too large to move around
/// with it, so it lives in its own static table, one entry per domain slot.
#[derive(Clone, Debug)]
pub struct Runtime {
    /// Event channels.
    pub events: EventTable,
    /// Per-vCPU timers and poll sets.
    pub vcpus: [VcpuRuntime; MAX_VCPUS],
    /// The vCPUs that are not the domain's active one.
    pub parked: [Option<Vcpu>; MAX_VCPUS],
    /// vCPUs the domain has.
    pub nr_vcpus: u32,
    /// How promptly its timers woke it.
    pub timer_latency: TimerLatency,
}

impl Runtime {
    /// An empty entry.
    pub const NEW: Runtime = Runtime {
        events: EventTable::new(0),
        vcpus: [VcpuRuntime::NEW; MAX_VCPUS],
        parked: [const { None }; MAX_VCPUS],
        nr_vcpus: 0,
        timer_latency: TimerLatency { wakes: 0, worst: 0 },
    };

    fn reset(&mut self, nr_vcpus: u32) {
        self.events.reset(nr_vcpus);
        for (vcpu, parked) in self.vcpus.iter_mut().zip(&mut self.parked) {
            *vcpu = VcpuRuntime::NEW;
            *parked = None;
        }
        self.nr_vcpus = nr_vcpus;
    }
}

/// Every guest, borrowed for one entry into the hypervisor.
pub struct Guests<'a, M: PhysMem> {
    /// Machine memory.
    pub mem: &'a M,
    /// The frame table.
    pub frames: &'a FrameTable<'a>,
    /// The domain table, by slot.
    pub domains: &'a mut [Option<Domain>],
    /// Each slot's runtime state.
    pub runtime: &'a mut [Runtime],
    /// The scheduler.
    pub sched: &'a mut Scheduler,
    /// System time of this entry.
    pub now: Nanos,
}

impl<'a, M: PhysMem> Guests<'a, M> {
    /// Registers a freshly built domain in `slot`: empty event table, vCPU 0
    /// initialised and runnable, the others offline.
    pub fn start(
        &mut self,
        slot: usize,
        nr_vcpus: u32,
        weight: u32,
        cap: u32,
    ) -> Result<(), SchedError> {
        let count = nr_vcpus as usize;
        if count == 0 || count > MAX_VCPUS {
            return Err(SchedError::BadVcpuCount);
        }
        self.sched.add_domain(slot, weight, cap, count, self.now)?;
        let runtime = &mut self.runtime[slot];
        runtime.reset(nr_vcpus);
        runtime.timer_latency = TimerLatency::default();
        runtime.vcpus[0].initialised = true;
        Ok(())
    }

    /// The live (running) domain in `slot`.
    pub fn domain(&self, slot: usize) -> Option<&Domain> {
        self.domains
            .get(slot)
            .and_then(Option::as_ref)
            .filter(|d| d.is_running())
    }

    /// The slot of the live domain `id`.
    pub fn slot_of(&self, id: DomId) -> Option<usize> {
        (0..self.domains.len()).find(|&slot| self.domain(slot).is_some_and(|d| d.id == id))
    }

    /// Resolves `DOMID_SELF` for the domain in `slot`.
    pub fn resolve(&self, slot: usize, id: DomId) -> Option<DomId> {
        let me = self.domain(slot)?.id;
        Some(if id == DOMID_SELF { me } else { id })
    }

    fn vcpu_count(&self, slot: usize) -> u32 {
        self.runtime.get(slot).map_or(0, |r| r.nr_vcpus)
    }

    /// Machine address of the `vcpu_info` of vCPU `vcpu` in `slot`.
    pub fn vcpu_info_addr(&self, slot: usize, vcpu: u32) -> Option<u64> {
        let domain = self.domain(slot)?;
        if vcpu >= self.vcpu_count(slot) {
            return None;
        }
        Some(if domain.vcpu.id == vcpu {
            domain.vcpu.vcpu_info_addr(domain.shared_info)
        } else {
            match &self.runtime[slot].parked[vcpu as usize] {
                Some(parked) => parked.vcpu_info_addr(domain.shared_info),
                None => shared_slot(domain.shared_info, vcpu),
            }
        })
    }

    /// The vCPU `vcpu` of `slot`, wherever it is (active or parked).
    pub fn vcpu_mut(&mut self, slot: usize, vcpu: u32) -> Option<&mut Vcpu> {
        let domain = self.domains.get_mut(slot)?.as_mut()?;
        if domain.vcpu.id == vcpu {
            Some(&mut domain.vcpu)
        } else {
            self.runtime
                .get_mut(slot)?
                .parked
                .get_mut(vcpu as usize)?
                .as_mut()
        }
    }

    /// Makes `vcpu` its domain's active vCPU (the one in `Domain::vcpu`).
    pub fn activate(&mut self, vcpu: VcpuRef) {
        let Some(domain) = self.domains.get_mut(vcpu.slot).and_then(Option::as_mut) else {
            return;
        };
        let old = domain.vcpu.id as usize;
        if old == vcpu.vcpu {
            return;
        }
        let parked = &mut self.runtime[vcpu.slot].parked;
        let Some(incoming) = parked[vcpu.vcpu].as_mut() else {
            return;
        };
        core::mem::swap(&mut domain.vcpu, incoming);
        parked.swap(vcpu.vcpu, old);
    }

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

    /// Ends a vCPU's block or poll: it becomes runnable.
    pub fn unblock(&mut self, vcpu: VcpuRef) {
        if self.sched.state(vcpu) != RunState::Blocked {
            return;
        }
        let runtime = &mut self.runtime[vcpu.slot].vcpus[vcpu.vcpu];
        runtime.polling.clear();
        runtime.timers.poll_timeout = None;
        self.sched.wake(vcpu, self.now);
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

    /// Fires every timer that is due: VIRQ_TIMER for single-shot and periodic timers,
    /// the end of a poll for poll timeouts.
    pub fn fire_timers(&mut self) {
        for slot in 0..self.domains.len().min(self.runtime.len()) {
            if self.domain(slot).is_none() {
                continue;
            }
            for vcpu in 0..self.vcpu_count(slot) {
                let blocked = self.sched.state(VcpuRef {
                    slot,
                    vcpu: vcpu as usize,
                }) == RunState::Blocked;
                let timers = &mut self.runtime[slot].vcpus[vcpu as usize].timers;
                // As in Xen, a periodic timer ticks only while its vCPU may run: it
                // never wakes a blocked vCPU (it fires once when the vCPU wakes).
                let periodic = timers.periodic.take_if(|_| blocked);
                let deadline = timers.singleshot;
                let fired = timers.expire(self.now);
                if periodic.is_some() {
                    timers.periodic = periodic;
                }
                if fired.timer_virq {
                    self.raise_virq(slot, vcpu, VIRQ_TIMER);
                    let v = VcpuRef {
                        slot,
                        vcpu: vcpu as usize,
                    };
                    if blocked && self.sched.state(v) != RunState::Blocked {
                        self.runtime[slot].vcpus[vcpu as usize].woken_by_timer =
                            deadline.map(|d| (d, self.now));
                    }
                }
                if fired.poll_timeout {
                    self.unblock(VcpuRef {
                        slot,
                        vcpu: vcpu as usize,
                    });
                }
            }
        }
    }

    /// The earliest armed timer of any live vCPU (blocked vCPUs' periodic timers do
    /// not count: they wake no one).
    pub fn next_deadline(&self) -> Option<Nanos> {
        (0..self.domains.len().min(self.runtime.len()))
            .filter(|&slot| self.domain(slot).is_some())
            .flat_map(|slot| {
                self.runtime[slot].vcpus[..self.vcpu_count(slot) as usize]
                    .iter()
                    .enumerate()
                    .filter_map(move |(vcpu, v)| {
                        let mut timers = v.timers;
                        if self.sched.state(VcpuRef { slot, vcpu }) == RunState::Blocked {
                            timers.periodic = None;
                        }
                        timers.next_deadline()
                    })
            })
            .min()
    }

    /// SCHEDOP_block for the active vCPU of `slot`: enables event delivery, and blocks
    /// unless an upcall is due already. Returns whether it blocked.
    pub fn block(&mut self, slot: usize) -> bool {
        let Some(domain) = self.domain(slot) else {
            return false;
        };
        let info = VcpuInfoRef::of(self.mem, domain);
        info.set_upcall_mask(false);
        if info.needs_delivery() {
            return false;
        }
        let vcpu = VcpuRef {
            slot,
            vcpu: domain.vcpu.id as usize,
        };
        self.sched.block(vcpu, self.now);
        true
    }

    /// SCHEDOP_poll for the active vCPU of `slot` on `ports` (already read from the
    /// guest), until one is pending or system time `timeout` (0: none). Returns whether
    /// it blocked.
    pub fn poll(
        &mut self,
        slot: usize,
        ports: &[EvtchnPort],
        timeout: Nanos,
    ) -> Result<bool, Errno> {
        let domain = self.domain(slot).ok_or(Errno::ESRCH)?;
        if ports.len() > MAX_POLL_PORTS {
            return Err(Errno::EINVAL);
        }
        let events = SharedEvents::new(self.mem, domain.shared_info);
        if VcpuInfoRef::of(self.mem, domain).needs_delivery() {
            return Ok(false);
        }
        for &port in ports {
            if port as usize >= crate::evtchn::MAX_PORTS {
                return Err(Errno::EINVAL);
            }
            if events.is_pending(port) {
                return Ok(false);
            }
        }
        let vcpu = domain.vcpu.id as usize;
        if timeout != 0 && timeout <= self.now {
            return Ok(false);
        }
        let runtime = &mut self.runtime[slot].vcpus[vcpu];
        runtime.polling.clear();
        // Cannot overflow: checked against MAX_POLL_PORTS above.
        let _ = runtime.polling.extend_from_slice(ports);
        runtime.timers.poll_timeout = (timeout != 0).then_some(timeout);
        self.sched.block(VcpuRef { slot, vcpu }, self.now);
        Ok(true)
    }

    /// Delivers an event upcall to the active vCPU of `slot` if one is due (pending,
    /// not masked, a callback registered), as Xen does on every return to a guest: a
    /// bounce frame to the event callback, with events masked.
    pub fn deliver_upcall(&mut self, slot: usize, regs: &mut TrapFrame) -> traps::Outcome {
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
        };
        let bounce = Bounce {
            handler,
            error_code: None,
            mask_events: true,
            failsafe: false,
        };
        traps::deliver_or_failsafe(&mut ctx, VECTOR_UPCALL, bounce)
    }

    /// `vcpu` is on the CPU: if a timer woke it, record how late after the deadline.
    pub fn note_running(&mut self, vcpu: VcpuRef) {
        let runtime = &mut self.runtime[vcpu.slot];
        if let Some((deadline, fired)) = runtime.vcpus[vcpu.vcpu].woken_by_timer.take() {
            let record = &mut runtime.timer_latency;
            record.wakes += 1;
            let late = self.now.saturating_sub(deadline);
            record.worst = record.worst.max(late);
            if late > 2_000_000 {
                log::debug!(
                    "slot {} vcpu {}: timer fired {} us after its deadline, ran {} us later",
                    vcpu.slot,
                    vcpu.vcpu,
                    fired.saturating_sub(deadline) / 1000,
                    self.now.saturating_sub(fired) / 1000
                );
            }
        }
    }

    /// Publishes system time to the active vCPU of `slot`.
    pub fn publish_time(&self, slot: usize, time: &VcpuTimeInfo) {
        if let Some(domain) = self.domain(slot) {
            VcpuInfoRef::of(self.mem, domain).write_time(time);
        }
    }

    /// Writes the runstate of `vcpu` to its registered area, if any (failures are
    /// ignored, as in Xen: the area is the guest's business).
    pub fn publish_runstate(&self, vcpu: VcpuRef) {
        let Some(domain) = self.domain(vcpu.slot) else {
            return;
        };
        let Some(area) = self.runtime[vcpu.slot].vcpus[vcpu.vcpu].runstate_area else {
            return;
        };
        let root = if domain.vcpu.id as usize == vcpu.vcpu {
            domain.vcpu.kernel_root
        } else {
            match &self.runtime[vcpu.slot].parked[vcpu.vcpu] {
                Some(parked) => parked.kernel_root,
                None => return,
            }
        };
        let info = self.sched.runstate(vcpu, self.now);
        let _ = GuestMem::new(self.mem, self.frames, domain.id, root).write_obj(area, &info);
    }

    /// Writes every domain and its vCPUs (debug key `q`).
    pub fn dump_domains(&self, out: &mut dyn core::fmt::Write) -> core::fmt::Result {
        self.dump(out, true, false)
    }

    /// Writes every domain's event channels (debug key `e`).
    pub fn dump_events(&self, out: &mut dyn core::fmt::Write) -> core::fmt::Result {
        self.dump(out, false, true)
    }

    fn dump(&self, out: &mut dyn core::fmt::Write, vcpus: bool, ports: bool) -> core::fmt::Result {
        for (slot, domain) in self
            .domains
            .iter()
            .enumerate()
            .filter_map(|(s, d)| d.as_ref().map(|d| (s, d)))
        {
            writeln!(
                out,
                "domain {} ({}): {:?}, {} pages, {} vCPU(s), cpu {} us",
                domain.id,
                domain.name,
                domain.state,
                domain.nr_pages,
                self.vcpu_count(slot),
                self.sched.cpu_time(slot) / 1000
            )?;
            if !domain.is_running() {
                continue;
            }
            for vcpu in 0..self.vcpu_count(slot) * u32::from(vcpus) {
                let v = VcpuRef {
                    slot,
                    vcpu: vcpu as usize,
                };
                let info = self
                    .vcpu_info_addr(slot, vcpu)
                    .map(|a| VcpuInfoRef::at(self.mem, a));
                let (pending, masked, sel) = info.map_or((false, false, 0), |i| {
                    (i.upcall_pending(), i.upcall_mask(), i.selector())
                });
                let runtime = &self.runtime[slot].vcpus[vcpu as usize];
                writeln!(
                    out,
                    "  vcpu {vcpu}: {:?}, upcall pending {} mask {} sel {sel:#x}, timers {:?}{}",
                    self.sched.state(v),
                    u8::from(pending),
                    u8::from(masked),
                    runtime.timers,
                    if runtime.polling.is_empty() {
                        ""
                    } else {
                        " (polling)"
                    }
                )?;
            }
            let events = SharedEvents::new(self.mem, domain.shared_info);
            for (port, channel) in self.runtime[slot].events.open_ports().filter(|_| ports) {
                writeln!(
                    out,
                    "  port {port}: {:?} vcpu {} pending {} masked {}",
                    channel.binding,
                    channel.vcpu,
                    u8::from(events.is_pending(port)),
                    u8::from(events.is_masked(port))
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests;
