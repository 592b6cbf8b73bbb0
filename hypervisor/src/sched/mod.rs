//! The scheduler: proportional share of the CPU by per-domain weight, with an optional
//! cap, over virtual CPUs that run, wait, block or are offline.
//!
//! The algorithm is a weighted virtual-time scheduler (a simple relative of stride
//! scheduling and of Linux's CFS), chosen because it is short and its fairness is easy to
//! argue:
//!
//! - every domain has a *virtual time*; running for `t` nanoseconds advances it by
//!   `t * DEFAULT_WEIGHT / weight`, so a domain of twice the weight ages half as fast;
//! - the next vCPU to run belongs to the domain with the smallest virtual time that has a
//!   runnable vCPU (ties go round robin, starting after the last domain picked); within a
//!   domain its runnable vCPUs take turns;
//! - it runs for at most one slice, then the choice is made again;
//! - a domain that wakes after blocking gets its virtual time raised to at least
//!   `floor - slice`, where `floor` is the smallest virtual time among runnable domains:
//!   sleeping earns no credit to hog the CPU later;
//! - a vCPU that wakes runs at once (it preempts, like the BOOST of Xen's credit
//!   scheduler) unless its domain is more than one slice of virtual time ahead of the
//!   neediest runnable domain: event and timer latency stay below a tick, and a domain
//!   that wakes often still pays for all the CPU it uses;
//! - a cap (percent of one CPU) is a budget per [`CAP_PERIOD`]: a domain that used it
//!   up waits, even if the CPU would otherwise idle, until the next period; what it ran
//!   beyond its budget is owed to the next period.
//!
//! Over any interval in which a set of domains stays runnable, each receives CPU time
//! in proportion to its weight, to within one slice per domain (the host tests check a
//! simulated run against this bound). Blocked and offline vCPUs are never picked, so
//! they use no CPU; when nothing is runnable [`Scheduler::pick`] says "idle" and the
//! machine halts.
//!
//! The scheduler also keeps each vCPU's runstate accounting (Xen's
//! `vcpu_runstate_info`: time spent running, runnable, blocked, offline).
//!
//! It knows nothing about registers or hardware: the machine tells it what happened
//! (charge, block, wake, up, down) and asks it what to run. All times are system time
//! in nanoseconds.

use pv_abi::vcpu::{
    RUNSTATE_BLOCKED, RUNSTATE_OFFLINE, RUNSTATE_RUNNABLE, RUNSTATE_RUNNING, VcpuRunstateInfo,
};

/// System time in nanoseconds since boot.
pub type Nanos = u64;

/// Domain slots the scheduler tracks (the machine's domain table has as many).
pub const MAX_DOMAINS: usize = crate::bootimage::MAX_DOMAINS;
/// vCPUs per domain.
pub const MAX_VCPUS: usize = 4;
/// The weight at which virtual time runs at the speed of real time (Xen's default).
pub const DEFAULT_WEIGHT: u32 = crate::bootimage::DEFAULT_WEIGHT;
/// The default longest run before the scheduler chooses again: the scheduler tick.
pub const DEFAULT_SLICE: Nanos = 5_000_000;
/// The period over which a cap is enforced.
pub const CAP_PERIOD: Nanos = 50_000_000;

/// Which vCPU: a domain slot and a vCPU index within it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VcpuRef {
    /// Index into the machine's domain table.
    pub slot: usize,
    /// vCPU number within the domain.
    pub vcpu: usize,
}

/// Where a vCPU stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Not brought up, taken down, or its domain has stopped. (The first variant, 0 in
    /// memory, as every other initial value of the machine state: see `Present` in
    /// `domain.rs`.)
    Offline,
    /// Waiting for an event or a timer.
    Blocked,
    /// Wants the CPU.
    Runnable,
    /// On the CPU. (Last, after `Runnable`: "wants or has the CPU" is one compare.)
    Running,
}

impl RunState {
    /// Xen's number for it (`RUNSTATE_*`).
    fn runstate_index(self) -> usize {
        (match self {
            RunState::Running => RUNSTATE_RUNNING,
            RunState::Runnable => RUNSTATE_RUNNABLE,
            RunState::Blocked => RUNSTATE_BLOCKED,
            RunState::Offline => RUNSTATE_OFFLINE,
        }) as usize
    }
}

/// One vCPU's scheduling state.
#[derive(Clone, Copy, Debug)]
struct VcpuEntry {
    state: RunState,
    /// When `state` was entered.
    since: Nanos,
    /// Time spent in each state before `since`, indexed by [`RunState`] (not by Xen's
    /// numbers, which [`Scheduler::runstate`] converts to).
    time: [Nanos; 4],
}

impl VcpuEntry {
    const OFFLINE: VcpuEntry = VcpuEntry {
        state: RunState::Offline,
        since: 0,
        time: [0; 4],
    };
}

/// One domain's scheduling state.
#[derive(Clone, Copy, Debug)]
struct DomainEntry {
    present: bool,
    weight: u32,
    /// Percent of one CPU; 0 = no cap.
    cap: u32,
    vtime: u64,
    /// CPU used in the current cap period.
    period_used: Nanos,
    /// CPU used since the domain was added.
    cpu_time: Nanos,
    nr_vcpus: usize,
    /// The vCPU picked last, for round robin within the domain.
    last_vcpu: usize,
    /// A vCPU of it woke and has not run since: it goes before domains that did not.
    boosted: bool,
    vcpus: [VcpuEntry; MAX_VCPUS],
}

impl DomainEntry {
    /// No domain; all zero in memory, as every initial value of the machine state (see
    /// `Present` in `domain.rs`). Its weight is set by [`Scheduler::add_domain`], which
    /// refuses 0, before any vCPU of it is charged.
    const EMPTY: DomainEntry = DomainEntry {
        present: false,
        weight: 0,
        cap: 0,
        vtime: 0,
        period_used: 0,
        cpu_time: 0,
        nr_vcpus: 0,
        last_vcpu: 0,
        boosted: false,
        vcpus: [VcpuEntry::OFFLINE; MAX_VCPUS],
    };

    fn runnable(&self) -> bool {
        self.vcpus[..self.nr_vcpus]
            .iter()
            .any(|v| matches!(v.state, RunState::Runnable | RunState::Running))
    }

    fn budget(&self) -> Option<Nanos> {
        (self.cap != 0).then(|| CAP_PERIOD * Nanos::from(self.cap) / 100)
    }

    fn capped_out(&self) -> bool {
        self.budget()
            .is_some_and(|budget| self.period_used >= budget)
    }
}

/// What to do next on a CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pick {
    /// Run this vCPU until at most `until` (then call [`Scheduler::pick`] again).
    Run {
        /// The vCPU.
        vcpu: VcpuRef,
        /// End of its slice.
        until: Nanos,
    },
    /// Nothing may run now. Halt until an event, or at the latest until `until` (the next
    /// cap period, when a capped domain may run again).
    Idle {
        /// When the scheduler has work again by itself, if ever.
        until: Option<Nanos>,
    },
}

/// Why [`Scheduler::add_domain`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchedError {
    /// No such slot, or it is already taken.
    BadSlot,
    /// Zero vCPUs or more than [`MAX_VCPUS`].
    BadVcpuCount,
    /// Weight 0.
    BadWeight,
}

/// The run queue and accounting of the whole machine (one CPU today; the state is
/// reached under the machine lock, and the running vCPU is recorded per CPU).
#[derive(Debug)]
pub struct Scheduler {
    domains: [DomainEntry; MAX_DOMAINS],
    /// The vCPU on the CPU, and since when it was charged last.
    running: Option<(VcpuRef, Nanos)>,
    /// Where the next pick's round robin among equal virtual times starts: the slot after
    /// the domain picked last (0 at first, so that the first domain goes first).
    next_slot: usize,
    /// Smallest virtual time among runnable domains, as of the last pick; never decreases.
    floor: u64,
    slice: Nanos,
    period_start: Nanos,
    /// Set when a wake-up should take the CPU from the running vCPU.
    preempt: bool,
    /// The domain whose vCPU yielded: the next pick prefers any other.
    yielded: Option<usize>,
    /// Bumped by every change of a vCPU's state (see [`Scheduler::changes`]).
    changes: u64,
    /// Bit `s` set while slot `s` holds a domain (`DomainEntry::present`): the picks go
    /// over the domains there are, not over every slot.
    present_slots: u16,
}

// `Scheduler::present_slots` has a bit per slot.
const _: () = assert!(MAX_DOMAINS == 16);

/// The slots whose bit is set in `mask`, in round-robin order from `start` on.
fn rotation(mask: u16, start: usize) -> impl Iterator<Item = usize> {
    let start = start % MAX_DOMAINS;
    // Bit `i` of `rotated` is slot `(start + i) % MAX_DOMAINS`.
    let mut rotated = mask.rotate_right(start as u32);
    core::iter::from_fn(move || {
        if rotated == 0 {
            return None;
        }
        let i = rotated.trailing_zeros() as usize;
        rotated &= rotated - 1;
        Some((start + i) % MAX_DOMAINS)
    })
}

impl Default for Scheduler {
    fn default() -> Self {
        Scheduler::new(DEFAULT_SLICE)
    }
}

impl Scheduler {
    /// The machine state's scheduler until boot replaces it with [`Scheduler::new`]:
    /// empty, with no tick yet. All zero in memory (see `Present` in `domain.rs`).
    pub const BEFORE_BOOT: Scheduler = Scheduler {
        slice: 0,
        ..Scheduler::new(DEFAULT_SLICE)
    };

    /// An empty scheduler with slices of `slice` nanoseconds (at least 1 µs).
    pub const fn new(slice: Nanos) -> Scheduler {
        Scheduler {
            domains: [DomainEntry::EMPTY; MAX_DOMAINS],
            running: None,
            next_slot: 0,
            floor: 0,
            slice: if slice < 1000 { 1000 } else { slice },
            period_start: 0,
            preempt: false,
            yielded: None,
            changes: 0,
            present_slots: 0,
        }
    }

    /// The slice length: the scheduler tick.
    pub fn slice(&self) -> Nanos {
        self.slice
    }

    /// Adds a domain with `nr_vcpus` vCPUs; vCPU 0 is runnable, the others offline until
    /// brought up. Its virtual time starts at the current floor.
    pub fn add_domain(
        &mut self,
        slot: usize,
        weight: u32,
        cap: u32,
        nr_vcpus: usize,
        now: Nanos,
    ) -> Result<(), SchedError> {
        self.changes = self.changes.wrapping_add(1);
        let entry = self.domains.get_mut(slot).ok_or(SchedError::BadSlot)?;
        if entry.present {
            return Err(SchedError::BadSlot);
        }
        if nr_vcpus == 0 || nr_vcpus > MAX_VCPUS {
            return Err(SchedError::BadVcpuCount);
        }
        if weight == 0 {
            return Err(SchedError::BadWeight);
        }
        *entry = DomainEntry {
            present: true,
            weight,
            cap,
            vtime: self.floor,
            nr_vcpus,
            ..DomainEntry::EMPTY
        };
        for vcpu in &mut entry.vcpus[..nr_vcpus] {
            vcpu.since = now;
        }
        entry.vcpus[0].state = RunState::Runnable;
        self.present_slots |= 1 << slot;
        Ok(())
    }

    /// Takes a domain off the scheduler for good (it stopped): all its vCPUs go offline.
    pub fn remove_domain(&mut self, slot: usize, now: Nanos) {
        self.changes = self.changes.wrapping_add(1);
        if !self.present(slot) {
            return;
        }
        for vcpu in 0..self.domains[slot].nr_vcpus {
            self.set_state(VcpuRef { slot, vcpu }, RunState::Offline, now);
        }
        self.domains[slot].present = false;
        self.present_slots &= !(1 << slot);
    }

    fn present(&self, slot: usize) -> bool {
        self.domains.get(slot).is_some_and(|d| d.present)
    }

    /// Whether the domain in `slot` is on the scheduler (added and not removed).
    pub fn has_domain(&self, slot: usize) -> bool {
        self.present(slot)
    }

    /// The slots of the domains on the scheduler, lowest first: every running domain is
    /// among them (a domain is added before it first runs and removed only after it
    /// stopped), so the exit path's walks over domains go over these slots only.
    pub fn domain_slots(&self) -> impl Iterator<Item = usize> + use<> {
        rotation(self.present_slots, 0)
    }

    #[inline]
    fn entry(&self, vcpu: VcpuRef) -> Option<&VcpuEntry> {
        let domain = self.domains.get(vcpu.slot).filter(|d| d.present)?;
        domain.vcpus[..domain.nr_vcpus].get(vcpu.vcpu)
    }

    /// The state of `vcpu` (offline if it does not exist).
    #[inline]
    pub fn state(&self, vcpu: VcpuRef) -> RunState {
        self.entry(vcpu).map_or(RunState::Offline, |e| e.state)
    }

    /// A count that changes whenever a vCPU changes state (wakes, blocks, runs, goes
    /// offline): the machine compares it around an operation to see whether the
    /// scheduler has anything new to decide.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// The vCPU on the CPU, if any.
    pub fn running(&self) -> Option<VcpuRef> {
        self.running.map(|(vcpu, _)| vcpu)
    }

    /// Moves `vcpu` to `state`, closing its runstate interval at `now`. `#[inline]`:
    /// small, and on every block, wake and pick (twice there).
    #[inline]
    fn set_state(&mut self, vcpu: VcpuRef, state: RunState, now: Nanos) {
        if self.entry(vcpu).is_none() {
            return;
        }
        self.changes = self.changes.wrapping_add(1);
        if self.running() == Some(vcpu) && state != RunState::Running {
            self.charge(now);
            self.running = None;
        }
        let entry = &mut self.domains[vcpu.slot].vcpus[vcpu.vcpu];
        entry.time[entry.state as usize] += now.saturating_sub(entry.since);
        entry.since = now.max(entry.since);
        entry.state = state;
    }

    /// Charges the running vCPU's domain for the CPU it used up to `now`.
    pub fn charge(&mut self, now: Nanos) {
        let Some((vcpu, since)) = self.running else {
            return;
        };
        let used = now.saturating_sub(since);
        let domain = &mut self.domains[vcpu.slot];
        domain.vtime += used * Nanos::from(DEFAULT_WEIGHT) / Nanos::from(domain.weight);
        domain.cpu_time += used;
        domain.period_used += used;
        self.running = Some((vcpu, now.max(since)));
    }

    /// The running vCPU waits for an event: it leaves the CPU.
    pub fn block(&mut self, vcpu: VcpuRef, now: Nanos) {
        if matches!(self.state(vcpu), RunState::Running | RunState::Runnable) {
            self.set_state(vcpu, RunState::Blocked, now);
            if !self.domains[vcpu.slot].runnable() {
                self.domains[vcpu.slot].boosted = false;
            }
        }
    }

    /// A blocked vCPU has an event or timer: it becomes runnable. Returns whether it was
    /// blocked. If it should run before the running vCPU, [`Scheduler::should_preempt`]
    /// says so from now on.
    pub fn wake(&mut self, vcpu: VcpuRef, now: Nanos) -> bool {
        if self.state(vcpu) != RunState::Blocked {
            return false;
        }
        let had_runnable = self.domains[vcpu.slot].runnable();
        self.set_state(vcpu, RunState::Runnable, now);
        self.charge(now);
        let domain = &mut self.domains[vcpu.slot];
        if !had_runnable {
            // No credit for sleeping, but no penalty either: start one slice behind the
            // floor so that a waking domain runs soon.
            domain.vtime = domain.vtime.max(self.floor.saturating_sub(self.slice));
        }
        let woken_vtime = domain.vtime;
        if self.domains[vcpu.slot].capped_out() {
            return true;
        }
        // Boost it unless it is more than a slice ahead of the neediest runnable domain
        // (so that no runnable domain waits long behind a stream of wake-ups).
        let mut neediest: Option<Nanos> = None;
        for s in self.domain_slots() {
            let d = &self.domains[s];
            if s != vcpu.slot && d.present && d.runnable() && !d.capped_out() {
                neediest = Some(neediest.map_or(d.vtime, |v| v.min(d.vtime)));
            }
        }
        if neediest.is_none_or(|v| woken_vtime < v + self.slice) {
            self.domains[vcpu.slot].boosted = true;
            if self
                .running
                .is_some_and(|(running, _)| running.slot != vcpu.slot)
            {
                self.preempt = true;
            }
        }
        true
    }

    /// Brings an offline vCPU up (VCPUOP_up): it becomes runnable.
    pub fn up(&mut self, vcpu: VcpuRef, now: Nanos) -> bool {
        if self
            .entry(vcpu)
            .is_none_or(|e| e.state != RunState::Offline)
        {
            return false;
        }
        let had_runnable = self.domains[vcpu.slot].runnable();
        self.set_state(vcpu, RunState::Runnable, now);
        let floor = self.floor;
        let domain = &mut self.domains[vcpu.slot];
        if !had_runnable {
            domain.vtime = domain.vtime.max(floor);
        }
        true
    }

    /// Takes a vCPU down (VCPUOP_down).
    pub fn down(&mut self, vcpu: VcpuRef, now: Nanos) {
        self.set_state(vcpu, RunState::Offline, now);
    }

    /// The running vCPU gives up the rest of its slice (SCHEDOP_yield): the next pick
    /// takes any other runnable domain first, if there is one.
    pub fn yield_now(&mut self, now: Nanos) {
        self.charge(now);
        if let Some((vcpu, _)) = self.running {
            self.yielded = Some(vcpu.slot);
            self.preempt = true;
        }
    }

    /// Whether the running vCPU should leave the CPU now: its slice is over (`until` as
    /// returned by [`Scheduler::pick`]), a wake-up outranks it, or its cap is used up.
    pub fn should_preempt(&self, now: Nanos, until: Nanos) -> bool {
        match self.running {
            None => true,
            Some((vcpu, since)) => {
                let domain = &self.domains[vcpu.slot];
                let used_now = domain.period_used + now.saturating_sub(since);
                self.preempt
                    || now >= until
                    || domain.budget().is_some_and(|budget| used_now >= budget)
            }
        }
    }

    fn refresh_period(&mut self, now: Nanos) {
        if now >= self.period_start + CAP_PERIOD {
            let periods = (now - self.period_start) / CAP_PERIOD;
            self.period_start += periods * CAP_PERIOD;
            for domain in &mut self.domains {
                // What a capped domain ran beyond its budget (its slice ended late: a
                // timer interrupt delayed, or the host itself preempted the emulator)
                // is owed to the next period, as negative credit is in Xen's credit
                // scheduler; otherwise the overruns add up to more than the cap.
                domain.period_used = match domain.budget() {
                    Some(budget) => domain
                        .period_used
                        .saturating_sub(budget.saturating_mul(periods)),
                    None => 0,
                };
            }
        }
    }

    /// Chooses what runs next at `now`. The running vCPU (if still runnable) competes
    /// like any other; the one chosen becomes the running vCPU.
    pub fn pick(&mut self, now: Nanos) -> Pick {
        self.charge(now);
        self.refresh_period(now);
        self.preempt = false;
        if let Some((vcpu, _)) = self.running.take() {
            self.set_state(vcpu, RunState::Runnable, now);
        }
        let yielded = self.yielded.take();
        // One walk finds both the fairest domain (the smallest virtual time) and the
        // fairest woken one, each the first such in round-robin order.
        let mut best: Option<usize> = None;
        let mut boosted: Option<usize> = None;
        let mut yielder_runnable = false;
        let mut any_capped = false;
        for slot in rotation(self.present_slots, self.next_slot) {
            let domain = &self.domains[slot];
            if !domain.present || !domain.runnable() {
                continue;
            }
            if domain.capped_out() {
                any_capped = true;
                continue;
            }
            if Some(slot) == yielded {
                yielder_runnable = true;
                continue;
            }
            if best.is_none_or(|b| domain.vtime < self.domains[b].vtime) {
                best = Some(slot);
            }
            if domain.boosted && boosted.is_none_or(|b| domain.vtime < self.domains[b].vtime) {
                boosted = Some(slot);
            }
        }
        if best.is_none() && yielder_runnable {
            best = yielded;
        }
        let Some(fairest) = best else {
            let until = any_capped.then_some(self.period_start + CAP_PERIOD);
            return Pick::Idle { until };
        };
        self.floor = self.floor.max(self.domains[fairest].vtime);
        // Woken domains go first (the smallest virtual time among them), then the rest.
        let slot = boosted.unwrap_or(fairest);
        self.domains[slot].boosted = false;
        self.next_slot = (slot + 1) % MAX_DOMAINS;
        let domain = &mut self.domains[slot];
        // Round robin over its vCPUs from the one after the last that ran (counted
        // without a division: most domains have one vCPU).
        let count = domain.nr_vcpus;
        let mut vcpu = domain.last_vcpu;
        let mut tried = 0;
        loop {
            vcpu = if vcpu + 1 < count { vcpu + 1 } else { 0 };
            if domain.vcpus[vcpu].state == RunState::Runnable {
                break;
            }
            tried += 1;
            assert!(tried < count, "a runnable domain has a runnable vCPU");
        }
        domain.last_vcpu = vcpu;
        let mut until = now + self.slice;
        if let Some(budget) = domain.budget() {
            until = until.min(now + budget.saturating_sub(domain.period_used));
        }
        let chosen = VcpuRef { slot, vcpu };
        self.set_state(chosen, RunState::Running, now);
        self.running = Some((chosen, now));
        Pick::Run {
            vcpu: chosen,
            until,
        }
    }

    /// Xen's `vcpu_runstate_info` of `vcpu` as of `now`.
    pub fn runstate(&self, vcpu: VcpuRef, now: Nanos) -> VcpuRunstateInfo {
        let Some(entry) = self.entry(vcpu) else {
            return VcpuRunstateInfo {
                state: RUNSTATE_OFFLINE,
                ..Default::default()
            };
        };
        let mut own = entry.time;
        own[entry.state as usize] += now.saturating_sub(entry.since);
        let mut time = [0; 4];
        for state in [
            RunState::Offline,
            RunState::Running,
            RunState::Runnable,
            RunState::Blocked,
        ] {
            time[state.runstate_index()] = own[state as usize];
        }
        VcpuRunstateInfo {
            state: entry.state.runstate_index() as i32,
            pad0: 0,
            state_entry_time: entry.since,
            time,
        }
    }

    /// CPU time a domain has used since it was added.
    pub fn cpu_time(&self, slot: usize) -> Nanos {
        self.domains.get(slot).map_or(0, |d| d.cpu_time)
    }

    /// Writes the run queue and every domain's accounting (the debug key's dump).
    pub fn dump(&self, out: &mut dyn core::fmt::Write, now: Nanos) -> core::fmt::Result {
        writeln!(
            out,
            "scheduler: slice {} us, floor {}, running {:?}",
            self.slice / 1000,
            self.floor,
            self.running()
        )?;
        for (slot, d) in self.domains.iter().enumerate().filter(|(_, d)| d.present) {
            writeln!(
                out,
                "  slot {slot}: weight {} cap {}% vtime {} cpu {} us{}",
                d.weight,
                d.cap,
                d.vtime,
                d.cpu_time / 1000,
                if d.capped_out() { " (capped)" } else { "" }
            )?;
            for vcpu in 0..d.nr_vcpus {
                let info = self.runstate(VcpuRef { slot, vcpu }, now);
                writeln!(
                    out,
                    "    vcpu {vcpu}: {:?}, running {} us, runnable {} us, blocked {} us",
                    d.vcpus[vcpu].state,
                    info.time[0] / 1000,
                    info.time[1] / 1000,
                    info.time[2] / 1000
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
