//! Simulated runs: fairness by weight, caps, blocking, wake-up latency, no starvation.

use super::*;

const SLICE: Nanos = DEFAULT_SLICE;
const SECOND: Nanos = 1_000_000_000;

fn vcpu(slot: usize, vcpu: usize) -> VcpuRef {
    VcpuRef { slot, vcpu }
}

/// A tiny deterministic PRNG (64-bit LCG, high bits).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

/// Runs CPU-bound vCPUs (they never block) for `duration`; returns CPU time per slot.
fn run_cpu_bound(sched: &mut Scheduler, slots: usize, duration: Nanos) -> Vec<Nanos> {
    let mut now = 0;
    let mut used = vec![0; slots];
    while now < duration {
        match sched.pick(now) {
            Pick::Run { vcpu, until } => {
                assert!(until > now, "a slice has length");
                used[vcpu.slot] += until - now;
                now = until;
            }
            Pick::Idle { until } => now = until.expect("CPU-bound vCPUs never all block"),
        }
    }
    sched.charge(now);
    used
}

fn assert_share(used: Nanos, total: Nanos, want: f64, tolerance: f64, what: &str) {
    let share = used as f64 / total as f64;
    assert!(
        (share - want).abs() <= want * tolerance,
        "{what}: share {share:.4}, want {want:.4} within {:.0}%",
        tolerance * 100.0
    );
}

#[test]
fn shares_follow_weights() {
    let weights = [1u32, 1, 2, 4];
    let mut sched = Scheduler::default();
    for (slot, &w) in weights.iter().enumerate() {
        sched.add_domain(slot, w, 0, 1, 0).unwrap();
    }
    let used = run_cpu_bound(&mut sched, 4, 10 * SECOND);
    let total: Nanos = used.iter().sum();
    for (slot, &w) in weights.iter().enumerate() {
        assert_share(
            used[slot],
            total,
            f64::from(w) / 8.0,
            0.02,
            "weights 1:1:2:4",
        );
        assert_eq!(sched.cpu_time(slot), used[slot], "accounting matches");
    }
}

#[test]
fn shares_hold_over_short_windows() {
    // Within any window of 2 s (the QEMU scenario's), each domain is at most about one
    // slice away from its weighted share.
    let weights = [256u32, 256, 512, 1024];
    let mut sched = Scheduler::default();
    for (slot, &w) in weights.iter().enumerate() {
        sched.add_domain(slot, w, 0, 1, 0).unwrap();
    }
    let before = run_cpu_bound(&mut sched, 4, SECOND / 3);
    let after = {
        let mut now = SECOND / 3;
        // Continue the same scheduler for another 2 s.
        let mut used = vec![0; 4];
        while now < SECOND / 3 + 2 * SECOND {
            let Pick::Run { vcpu, until } = sched.pick(now) else {
                panic!("idle")
            };
            used[vcpu.slot] += until - now;
            now = until;
        }
        used
    };
    let _ = before;
    let total: Nanos = after.iter().sum();
    for (slot, &w) in weights.iter().enumerate() {
        let want = f64::from(w) / 2048.0 * total as f64;
        let error = (after[slot] as f64 - want).abs();
        assert!(
            error <= 2.0 * SLICE as f64,
            "slot {slot}: {} ns vs {want} ns",
            after[slot]
        );
    }
}

#[test]
fn vcpus_of_a_domain_share_its_weight() {
    let mut sched = Scheduler::default();
    sched.add_domain(0, 256, 0, 2, 0).unwrap();
    assert!(sched.up(vcpu(0, 1), 0));
    sched.add_domain(1, 256, 0, 1, 0).unwrap();
    let mut per_vcpu = [0; 2];
    let mut now = 0;
    let mut used = [0; 2];
    while now < 4 * SECOND {
        let Pick::Run { vcpu, until } = sched.pick(now) else {
            panic!("idle")
        };
        used[vcpu.slot] += until - now;
        if vcpu.slot == 0 {
            per_vcpu[vcpu.vcpu] += until - now;
        }
        now = until;
    }
    assert_share(used[0], now, 0.5, 0.02, "two-vCPU domain");
    assert_share(per_vcpu[0], used[0], 0.5, 0.02, "its vCPUs take turns");
}

/// A capped domain whose slices end late (the timer interrupt delayed, or the host
/// preempting the emulator) still gets its cap over time: the overrun is owed to the next
/// period. Alone on the CPU, every slice here ends 4 ms after the deadline `pick` gave.
#[test]
fn a_cap_holds_when_slices_overrun() {
    let mut sched = Scheduler::default();
    sched.add_domain(0, 256, 20, 1, 0).unwrap();
    let late = 4_000_000;
    let (mut now, mut ran) = (0, 0);
    while now < 4 * SECOND {
        match sched.pick(now) {
            Pick::Run { until, .. } => {
                ran += until + late - now;
                now = until + late;
            }
            Pick::Idle { until } => now = until.expect("the next cap period"),
        }
    }
    assert_share(ran, now, 0.2, 0.02, "capped at 20% despite late slice ends");
}

#[test]
fn a_cap_limits_a_domain_even_on_an_idle_cpu() {
    let mut sched = Scheduler::default();
    sched.add_domain(0, 256, 20, 1, 0).unwrap();
    sched.add_domain(1, 256, 0, 1, 0).unwrap();
    let used = run_cpu_bound(&mut sched, 2, 4 * SECOND);
    assert_share(used[0], used.iter().sum(), 0.2, 0.02, "capped at 20%");

    // Alone, the capped domain still gets only its cap; the CPU idles the rest.
    let mut sched = Scheduler::default();
    sched.add_domain(3, 256, 30, 1, 0).unwrap();
    let (mut now, mut ran, mut idled) = (0, 0, 0);
    while now < 2 * SECOND {
        match sched.pick(now) {
            Pick::Run { until, .. } => {
                ran += until - now;
                now = until;
            }
            Pick::Idle { until } => {
                let until = until.expect("the next cap period");
                idled += until - now;
                now = until;
            }
        }
    }
    assert_share(ran, ran + idled, 0.3, 0.01, "alone, capped at 30%");
}

#[test]
fn blocked_vcpus_use_nothing_and_the_cpu_idles() {
    let mut sched = Scheduler::default();
    sched.add_domain(0, 256, 0, 1, 0).unwrap();
    sched.add_domain(1, 256, 0, 1, 0).unwrap();
    let Pick::Run { vcpu: first, .. } = sched.pick(0) else {
        panic!()
    };
    sched.block(first, 100);
    let Pick::Run { vcpu: second, .. } = sched.pick(100) else {
        panic!()
    };
    assert_ne!(first, second);
    sched.block(second, 200);
    assert_eq!(sched.pick(200), Pick::Idle { until: None });
    assert_eq!(sched.running(), None);
    // Idle for a second: nobody is charged.
    assert!(sched.wake(first, SECOND));
    assert!(!sched.wake(first, SECOND), "already runnable");
    assert_eq!(
        sched.pick(SECOND),
        Pick::Run {
            vcpu: first,
            until: SECOND + SLICE
        }
    );
    assert_eq!(sched.cpu_time(0) + sched.cpu_time(1), 200);
    let info = sched.runstate(second, SECOND);
    assert_eq!(info.state, RUNSTATE_BLOCKED);
    assert_eq!(info.time[RUNSTATE_BLOCKED as usize], SECOND - 200);
}

#[test]
fn a_waking_vcpu_preempts_a_spinner() {
    // Domain 0 spins; domain 1 sleeps 3 ms at a time and runs 100 us when woken. Each
    // wake-up must take the CPU at once, and domain 1's share stays tiny.
    let mut sched = Scheduler::default();
    sched.add_domain(0, 256, 0, 1, 0).unwrap();
    sched.add_domain(1, 256, 0, 1, 0).unwrap();
    let sleeper = vcpu(1, 0);
    let mut now = 0;
    let mut next_wake = None;
    let mut wakes = 0;
    while now < SECOND {
        let Pick::Run { vcpu, until } = sched.pick(now) else {
            panic!("the spinner is always runnable")
        };
        if vcpu == sleeper {
            now += 100_000;
            sched.block(sleeper, now);
            next_wake = Some(now + 3_000_000);
            continue;
        }
        // The spinner runs until its slice ends or the sleeper's timer fires.
        match next_wake {
            Some(wake) if wake < until => {
                now = wake;
                assert!(sched.wake(sleeper, now));
                assert!(sched.should_preempt(now, until), "wake-up preempts");
                wakes += 1;
                next_wake = None;
            }
            _ => now = until,
        }
    }
    assert!(wakes > 250, "{wakes} wake-ups");
    assert!(sched.cpu_time(1) < SECOND / 25);
}

#[test]
fn no_runnable_vcpu_starves() {
    // Random blocking and waking over five domains of weights 1..=16: whenever a vCPU is
    // runnable it runs within a bounded number of slices.
    let weights = [1u32, 2, 4, 8, 16];
    let total_weight: u32 = weights.iter().sum();
    let mut sched = Scheduler::default();
    for (slot, &w) in weights.iter().enumerate() {
        sched.add_domain(slot, w, 0, 2, 0).unwrap();
        sched.up(vcpu(slot, 1), 0);
    }
    let mut rng = Lcg(7);
    let mut runnable_since: Vec<[Option<Nanos>; 2]> = vec![[Some(0); 2]; 5];
    let mut worst = 0;
    let mut now = 0;
    let mut blocked: Vec<(Nanos, VcpuRef)> = Vec::new();
    while now < 20 * SECOND {
        blocked.retain(|&(at, v)| {
            if at <= now {
                sched.wake(v, now);
                runnable_since[v.slot][v.vcpu] = Some(now);
                false
            } else {
                true
            }
        });
        match sched.pick(now) {
            Pick::Run { vcpu: v, until } => {
                if let Some(since) = runnable_since[v.slot][v.vcpu].take() {
                    worst = worst.max(now - since);
                }
                let ran = 1 + rng.next(until - now);
                now += ran;
                if rng.next(3) == 0 {
                    sched.block(v, now);
                    blocked.push((now + rng.next(20_000_000), v));
                } else {
                    runnable_since[v.slot][v.vcpu] = Some(now);
                }
            }
            Pick::Idle { .. } => {
                now = blocked.iter().map(|&(at, _)| at).min().unwrap();
            }
        }
    }
    // The lightest domain's vCPU may wait while every heavier one catches up with it:
    // at most a slice of its own time in virtual-time lead, which the others burn at
    // their weights, plus a slice per runnable vCPU for ordering.
    let bound = SLICE * Nanos::from(total_weight / weights[0]) * 2 + 10 * SLICE;
    assert!(worst <= bound, "worst wait {worst} ns > {bound} ns");
}

#[test]
fn yield_lets_others_run_first() {
    let mut sched = Scheduler::default();
    sched.add_domain(0, 256, 0, 1, 0).unwrap();
    sched.add_domain(1, 256, 0, 1, 0).unwrap();
    let Pick::Run { vcpu: a, .. } = sched.pick(0) else {
        panic!()
    };
    sched.yield_now(10);
    let Pick::Run { vcpu: b, .. } = sched.pick(10) else {
        panic!()
    };
    assert_ne!(a, b);
    // Alone, a yielding vCPU simply continues.
    sched.block(a, 20);
    sched.yield_now(20);
    assert!(matches!(sched.pick(20), Pick::Run { vcpu, .. } if vcpu == b));
}

#[test]
fn runstate_times_add_up() {
    let mut sched = Scheduler::default();
    sched.add_domain(0, 256, 0, 2, 0).unwrap();
    sched.add_domain(1, 256, 0, 1, 0).unwrap();
    let used = run_cpu_bound(&mut sched, 2, SECOND);
    let now = SECOND;
    let info = sched.runstate(vcpu(0, 0), now);
    assert_eq!(info.time.iter().sum::<Nanos>(), now);
    assert_eq!(info.time[0], used[0]);
    assert_eq!(info.time[1], now - used[0]);
    let offline = sched.runstate(vcpu(0, 1), now);
    assert_eq!(offline.state, RUNSTATE_OFFLINE);
    assert_eq!(offline.time[RUNSTATE_OFFLINE as usize], now);
    sched.remove_domain(1, now);
    assert_eq!(sched.state(vcpu(1, 0)), RunState::Offline);
    assert_eq!(sched.runstate(vcpu(5, 0), now).state, RUNSTATE_OFFLINE);
}

#[test]
fn bad_requests_are_refused() {
    let mut sched = Scheduler::default();
    assert_eq!(
        sched.add_domain(MAX_DOMAINS, 1, 0, 1, 0),
        Err(SchedError::BadSlot)
    );
    assert_eq!(sched.add_domain(0, 0, 0, 1, 0), Err(SchedError::BadWeight));
    assert_eq!(
        sched.add_domain(0, 1, 0, MAX_VCPUS + 1, 0),
        Err(SchedError::BadVcpuCount)
    );
    sched.add_domain(0, 1, 0, 1, 0).unwrap();
    assert_eq!(sched.add_domain(0, 1, 0, 1, 0), Err(SchedError::BadSlot));
    assert!(!sched.up(vcpu(0, 0), 0), "already up");
    assert!(!sched.up(vcpu(0, 3), 0), "no such vCPU");
    assert!(!sched.wake(vcpu(9, 0), 0));
    let mut text = String::new();
    sched.dump(&mut text, 0).unwrap();
    assert!(text.contains("slot 0: weight 1"));
}

/// Domain 1 sleeps `sleep` ns, then runs `run` ns, over and over, against a spinner of
/// the same weight, for 4 s. Returns domain 1's CPU time, the end time, and the worst
/// wait between a wake-up and running.
fn waker_against_spinner(sleep: Nanos, run: Nanos) -> (Nanos, Nanos, Nanos) {
    let mut sched = Scheduler::default();
    sched.add_domain(0, 256, 0, 1, 0).unwrap();
    sched.add_domain(1, 256, 0, 1, 0).unwrap();
    let waker = vcpu(1, 0);
    let (mut now, mut wake_at, mut ran_since_wake) = (0, None, 0);
    let (mut woke_at, mut worst_latency) = (None, 0);
    while now < 4 * SECOND {
        let Pick::Run { vcpu: v, until } = sched.pick(now) else {
            panic!("the spinner is always runnable")
        };
        if v == waker {
            if let Some(at) = woke_at.take() {
                worst_latency = u64::max(worst_latency, now - at);
            }
            let step = (run - ran_since_wake).min(until - now);
            now += step;
            ran_since_wake += step;
            if ran_since_wake >= run {
                sched.block(waker, now);
                wake_at = Some(now + sleep);
                ran_since_wake = 0;
            }
            continue;
        }
        match wake_at {
            Some(at) if at < until => {
                now = at;
                sched.wake(waker, now);
                woke_at = Some(now);
                wake_at = None;
            }
            _ => now = until,
        }
    }
    sched.charge(now);
    (sched.cpu_time(1), now, worst_latency)
}

#[test]
fn a_woken_vcpu_runs_at_once() {
    // Asleep 3 ms, busy 1 ms: under its share, so every wake-up preempts the spinner.
    let (_, _, worst) = waker_against_spinner(3_000_000, 1_000_000);
    assert_eq!(worst, 0);
}

#[test]
fn waking_often_buys_no_more_than_a_fair_share() {
    // Asleep 1 ms, busy 4 ms: it would take 80% if wake-ups always won; fairness caps
    // it at its half (plus a slice).
    let (used, total, _) = waker_against_spinner(1_000_000, 4_000_000);
    assert!(
        used <= total / 2 + SLICE,
        "the waker got {used} of {total} ns"
    );
    assert!(
        used >= total / 2 - 2 * SLICE,
        "and no less: {used} of {total} ns"
    );
}

#[test]
fn every_woken_domain_runs_before_the_spinners() {
    // Three spinners; two sleepers wake at the same instant: both run before any
    // spinner gets the CPU back.
    let mut sched = Scheduler::default();
    for slot in 0..5 {
        sched.add_domain(slot, 256, 0, 1, 0).unwrap();
    }
    let mut now = 0;
    // Let everyone run a while, then put 3 and 4 to sleep.
    while now < SECOND / 10 {
        let Pick::Run { until, .. } = sched.pick(now) else {
            panic!()
        };
        now = until;
    }
    sched.block(vcpu(3, 0), now);
    sched.block(vcpu(4, 0), now);
    let Pick::Run { vcpu: spinner, .. } = sched.pick(now) else {
        panic!()
    };
    assert!(spinner.slot < 3);
    now += 1_000_000;
    sched.wake(vcpu(3, 0), now);
    sched.wake(vcpu(4, 0), now);
    let mut order = Vec::new();
    for _ in 0..2 {
        let Pick::Run { vcpu: v, .. } = sched.pick(now) else {
            panic!()
        };
        order.push(v.slot);
        now += 100_000;
        sched.block(v, now);
    }
    order.sort();
    assert_eq!(order, [3, 4]);
}

/// The picks' walk over the present slots visits exactly the slots with their bit set,
/// in the round-robin order of the walk over every slot it replaced.
#[test]
fn the_rotation_visits_the_present_slots_in_round_robin_order() {
    for mask in [0u16, 1, 0x8000, 0x8001, 0x00f0, 0xffff, 0xa5a5, 0x1234] {
        for last in 0..MAX_DOMAINS {
            let expected: Vec<usize> = (1..=MAX_DOMAINS)
                .map(|step| (last + step) % MAX_DOMAINS)
                .filter(|&slot| mask & (1 << slot) != 0)
                .collect();
            let got: Vec<usize> = super::rotation(mask, last + 1).collect();
            assert_eq!(got, expected, "mask {mask:#06x}, last {last}");
        }
    }
}
