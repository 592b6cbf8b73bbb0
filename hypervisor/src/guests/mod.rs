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
use crate::evtchn::EventTable;
use crate::frames::{DomId, FrameTable};
use crate::mm::PhysMem;
use crate::sched::{MAX_VCPUS, SchedError, Scheduler, VcpuRef};
use crate::time::{Nanos, VcpuTimers};
use crate::vcpu_info::shared_slot;
use pv_abi::event_channel::EvtchnPort;
use pv_abi::xen::DOMID_SELF;

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
    /// For that one: how late the timer fired (the rest is the wait for the CPU).
    pub worst_fired: Nanos,
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
    /// Bit `v` is set while vCPU `v` waits in SCHEDOP_poll ([`Runtime::start_poll`] to
    /// [`Runtime::end_poll`]): a send looks at the poll sets only if some bit is.
    pollers: u8,
    /// How promptly its timers woke it.
    pub timer_latency: TimerLatency,
}

/// `entry.S` tests `pollers` with one byte compare: it must stay a `u8`.
const _: fn(&Runtime) -> &u8 = |runtime| &runtime.pollers;

impl Runtime {
    /// Where `pollers` is (one byte: nonzero while some vCPU polls), for the express send
    /// of `entry.S`.
    pub const POLLERS_OFFSET: usize = core::mem::offset_of!(Runtime, pollers);

    /// An empty entry.
    pub const NEW: Runtime = Runtime {
        events: EventTable::new(0),
        vcpus: [VcpuRuntime::NEW; MAX_VCPUS],
        parked: [const { None }; MAX_VCPUS],
        nr_vcpus: 0,
        pollers: 0,
        timer_latency: TimerLatency {
            wakes: 0,
            worst: 0,
            worst_fired: 0,
        },
    };

    fn reset(&mut self, nr_vcpus: u32) {
        self.events.reset(nr_vcpus);
        for (vcpu, parked) in self.vcpus.iter_mut().zip(&mut self.parked) {
            *vcpu = VcpuRuntime::NEW;
            *parked = None;
        }
        self.nr_vcpus = nr_vcpus;
        self.pollers = 0;
    }

    /// vCPU `vcpu` waits on `ports` (SCHEDOP_poll): at most `MAX_POLL_PORTS` of them
    /// (the caller checked), the rest ignored.
    pub fn start_poll(&mut self, vcpu: usize, ports: &[EvtchnPort]) {
        let polling = &mut self.vcpus[vcpu].polling;
        polling.clear();
        let _ = polling.extend_from_slice(&ports[..ports.len().min(MAX_POLL_PORTS)]);
        self.pollers |= 1 << vcpu;
    }

    /// vCPU `vcpu` no longer polls.
    #[inline]
    pub fn end_poll(&mut self, vcpu: usize) {
        self.vcpus[vcpu].polling.clear();
        self.pollers &= !(1 << vcpu);
    }

    /// Whether some vCPU polls `port`.
    #[inline(always)]
    pub fn polled(&self, port: EvtchnPort) -> bool {
        self.polling() && self.polls(port)
    }

    /// Whether any vCPU polls (one test, for the paths that look no further when none
    /// does).
    #[inline(always)]
    pub fn polling(&self) -> bool {
        self.pollers != 0
    }

    /// Whether some vCPU polls `port` (the look through their lists).
    fn polls(&self, port: EvtchnPort) -> bool {
        self.vcpus[..self.nr_vcpus as usize]
            .iter()
            .any(|v| v.polling.contains(&port))
    }
}

// `Runtime::pollers` has a bit per vCPU.
const _: () = assert!(MAX_VCPUS <= 8);

/// The slot of the live (running) domain `id` in `domains`.
#[inline]
pub fn live_slot_of(domains: &[Option<Domain>], id: DomId) -> Option<usize> {
    domains
        .iter()
        .position(|d| d.as_ref().is_some_and(|d| d.id == id && d.is_running()))
}

/// Machine address of the `vcpu_info` of vCPU `vcpu` of `domain` (whose runtime is
/// `runtime`): the active vCPU's or a parked one's registered area, else its slot in
/// the shared-info page.
#[inline(always)]
pub fn vcpu_info_addr(domain: &Domain, runtime: &Runtime, vcpu: u32) -> Option<u64> {
    if vcpu >= runtime.nr_vcpus {
        return None;
    }
    Some(existing_vcpu_info_addr(domain, runtime, vcpu))
}

/// [`vcpu_info_addr`] of a vCPU the caller knows the domain has (`vcpu < nr_vcpus`).
#[inline(always)]
pub fn existing_vcpu_info_addr(domain: &Domain, runtime: &Runtime, vcpu: u32) -> u64 {
    if domain.vcpu.id == vcpu {
        domain.vcpu.vcpu_info_addr(domain.shared_info)
    } else {
        match runtime.parked.get(vcpu as usize) {
            Some(Some(parked)) => parked.vcpu_info_addr(domain.shared_info),
            _ => shared_slot(domain.shared_info, vcpu),
        }
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
        live_slot_of(self.domains, id)
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
        vcpu_info_addr(self.domain(slot)?, &self.runtime[slot], vcpu)
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
}

mod dump;
pub mod events;
mod waiting;

#[cfg(test)]
pub(crate) mod tests;
