//! Waiting and time: blocking, polling, waking, firing timers, and what a vCPU sees of
//! time and of its own accounting.

use super::{Guests, MAX_POLL_PORTS};
use crate::evtchn::shared::SharedEvents;
use crate::guestmem::GuestMem;
use crate::mm::PhysMem;
use crate::sched::{RunState, VcpuRef};
use crate::time::Nanos;
use crate::vcpu_info::VcpuInfoRef;
use pv_abi::errno::Errno;
use pv_abi::event_channel::EvtchnPort;
use pv_abi::xen::{VIRQ_TIMER, VcpuTimeInfo};

impl<M: PhysMem> Guests<'_, M> {
    /// Ends a vCPU's block or poll: it becomes runnable.
    #[inline]
    pub fn unblock(&mut self, vcpu: VcpuRef) {
        if self.sched.state(vcpu) != RunState::Blocked {
            return;
        }
        let runtime = &mut self.runtime[vcpu.slot];
        runtime.end_poll(vcpu.vcpu);
        runtime.vcpus[vcpu.vcpu].timers.poll_timeout = None;
        self.sched.wake(vcpu, self.now);
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
        let runtime = &mut self.runtime[slot];
        // Every port fits: checked against MAX_POLL_PORTS above.
        runtime.start_poll(vcpu, ports);
        runtime.vcpus[vcpu].timers.poll_timeout = (timeout != 0).then_some(timeout);
        self.sched.block(VcpuRef { slot, vcpu }, self.now);
        Ok(true)
    }

    /// Fires every timer that is due: VIRQ_TIMER for single-shot and periodic timers,
    /// the end of a poll for poll timeouts. Returns the earliest timer still armed
    /// afterwards, what [`next_deadline`](Self::next_deadline) would return now: found in
    /// the same walk when nothing fired. A firing can wake another vCPU (one polling the
    /// VIRQ_TIMER port raised), already passed in the walk while blocked, whose periodic
    /// timer then counts again: so after a firing the walk is made again (found by
    /// review: a woken vCPU's overdue tick was left out, and came up to a slice late).
    pub fn fire_timers(&mut self) -> Option<Nanos> {
        let mut next: Option<Nanos> = None;
        let mut fired = false;
        for slot in self.sched.domain_slots() {
            if slot >= self.runtime.len() || self.domain(slot).is_none() {
                continue;
            }
            for vcpu in 0..self.vcpu_count(slot) {
                let v = VcpuRef {
                    slot,
                    vcpu: vcpu as usize,
                };
                let blocked = self.sched.state(v) == RunState::Blocked;
                // As in Xen, a periodic timer ticks only while its vCPU may run: it
                // never wakes a blocked vCPU (it fires once when the vCPU wakes).
                let mut due = self.runtime[slot].vcpus[vcpu as usize]
                    .timers
                    .earliest(!blocked);
                if due.is_some_and(|at| at <= self.now) {
                    due = self.fire_vcpu_timers(v, blocked);
                    fired = true;
                }
                next = match (next, due) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
        }
        if fired { self.next_deadline() } else { next }
    }

    /// [`fire_timers`](Self::fire_timers) for `vcpu`, one of whose timers is due
    /// (`blocked`: its run state before): fires them and returns its earliest timer
    /// left armed. Out of line: most passes fire nothing, and their walk then keeps its
    /// values in registers.
    #[cold]
    #[inline(never)]
    fn fire_vcpu_timers(&mut self, v: VcpuRef, blocked: bool) -> Option<Nanos> {
        let timers = &mut self.runtime[v.slot].vcpus[v.vcpu].timers;
        let periodic = timers.periodic.take_if(|_| blocked);
        let deadline = timers.singleshot;
        let fired = timers.expire(self.now);
        if periodic.is_some() {
            timers.periodic = periodic;
        }
        if fired.timer_virq {
            self.raise_virq(v.slot, v.vcpu as u32, VIRQ_TIMER);
            if blocked && self.sched.state(v) != RunState::Blocked {
                self.runtime[v.slot].vcpus[v.vcpu].woken_by_timer = deadline.map(|d| (d, self.now));
            }
        }
        if fired.poll_timeout {
            self.unblock(v);
        }
        self.vcpu_deadline(v)
    }

    /// The earliest armed timer of `vcpu` (a blocked vCPU's periodic timer does not
    /// count: it would not fire).
    fn vcpu_deadline(&self, vcpu: VcpuRef) -> Option<Nanos> {
        let blocked = self.sched.state(vcpu) == RunState::Blocked;
        self.runtime[vcpu.slot].vcpus[vcpu.vcpu]
            .timers
            .earliest(!blocked)
    }

    /// The earliest armed timer of any live vCPU (blocked vCPUs' periodic timers do
    /// not count: they wake no one).
    pub fn next_deadline(&self) -> Option<Nanos> {
        self.sched
            .domain_slots()
            .filter(|&slot| slot < self.runtime.len() && self.domain(slot).is_some())
            .flat_map(|slot| {
                (0..self.vcpu_count(slot) as usize)
                    .filter_map(move |vcpu| self.vcpu_deadline(VcpuRef { slot, vcpu }))
            })
            .min()
    }

    /// `vcpu` is on the CPU: if a timer woke it, record how late after the deadline.
    pub fn note_running(&mut self, vcpu: VcpuRef) {
        let runtime = &mut self.runtime[vcpu.slot];
        if let Some((deadline, fired)) = runtime.vcpus[vcpu.vcpu].woken_by_timer.take() {
            let record = &mut runtime.timer_latency;
            record.wakes += 1;
            let late = self.now.saturating_sub(deadline);
            if late >= record.worst {
                record.worst = late;
                record.worst_fired = fired.saturating_sub(deadline);
            }
        }
    }

    /// Publishes system time to the active vCPU of `slot`.
    #[inline]
    pub fn publish_time(&self, slot: usize, time: &VcpuTimeInfo) {
        if let Some(domain) = self.domain(slot) {
            VcpuInfoRef::of(self.mem, domain).write_time(time);
        }
    }

    /// Writes the runstate of `vcpu` to its registered area, if any (failures are
    /// ignored, as in Xen: the area is the guest's business).
    #[inline]
    pub fn publish_runstate(&self, vcpu: VcpuRef) {
        // The area first, inline: most vCPUs register none, and every switch asks twice.
        if let Some(area) = self.runtime[vcpu.slot].vcpus[vcpu.vcpu].runstate_area {
            self.write_runstate(vcpu, area);
        }
    }

    /// [`publish_runstate`](Self::publish_runstate) for a vCPU that registered an area.
    #[inline(never)]
    fn write_runstate(&self, vcpu: VcpuRef, area: u64) {
        let Some(domain) = self.domain(vcpu.slot) else {
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
}
