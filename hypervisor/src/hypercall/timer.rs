//! Waiting and time: `set_timer_op`, and the parts of `sched_op` that involve the
//! scheduler or other domains (yield, block, poll, remote_shutdown). Shutting oneself
//! down stays with the per-domain `sched_op` in `sched.rs`.

use super::After;
use super::global::{GlobalCall, command};
use crate::domain::DomainState;
use crate::guests::MAX_POLL_PORTS;
use crate::mm::PhysMem;
use crate::time::Nanos;
use pv_abi::errno::Errno;
use pv_abi::event_channel::EvtchnPort;
use pv_abi::sched::{
    SCHEDOP_BLOCK, SCHEDOP_POLL, SCHEDOP_REMOTE_SHUTDOWN, SCHEDOP_YIELD, SchedPoll,
    SchedRemoteShutdown,
};

/// A deadline further out than this (about 13 days) is taken for a wrapped value.
const HUGE_TIMEOUT: Nanos = 1 << 50;
/// What a wrapped or huge deadline becomes: an event in 100 ms (Xen's compromise).
const HUGE_TIMEOUT_FALLBACK: Nanos = 100_000_000;

/// `set_timer_op(deadline)`: arms the calling vCPU's single-shot timer for system time
/// `deadline` (0 disarms it). A deadline in the past fires at once; one that is
/// negative or absurdly far away (as old Linux jiffies arithmetic produced) fires in
/// 100 ms, as in Xen.
pub(super) fn set_timer_op<M: PhysMem>(
    call: &mut GlobalCall<'_, M>,
    deadline: u64,
) -> Result<u64, Errno> {
    let now = call.guests.now;
    let vcpu = call.vcpu_id() as usize;
    let timer = &mut call.guests.runtime[call.slot].vcpus[vcpu].timers.singleshot;
    *timer = if deadline == 0 {
        None
    } else if (deadline as i64) < 0 || deadline.saturating_sub(now) >= HUGE_TIMEOUT {
        Some(now + HUGE_TIMEOUT_FALLBACK)
    } else {
        Some(deadline)
    };
    Ok(0)
}

/// The `sched_op` commands handled here, or `None` for the per-domain dispatcher.
pub(super) fn sched_op<M: PhysMem>(
    call: &mut GlobalCall<'_, M>,
    cmd: u64,
    arg: u64,
) -> Option<Result<u64, Errno>> {
    let result = match command(cmd) {
        Ok(SCHEDOP_YIELD) => {
            call.guests.sched.yield_now(call.guests.now);
            call.after = After::Reschedule;
            Ok(0)
        }
        Ok(SCHEDOP_BLOCK) => {
            if call.guests.block(call.slot) {
                call.after = After::Reschedule;
            }
            Ok(0)
        }
        Ok(SCHEDOP_POLL) => poll(call, arg),
        Ok(SCHEDOP_REMOTE_SHUTDOWN) => remote_shutdown(call, arg),
        _ => return None,
    };
    Some(result)
}

/// SCHEDOP_poll: waits until one of the ports is pending, an upcall is due, or the
/// timeout (absolute system time; 0 for none) passes. Returns 0 in every case.
fn poll<M: PhysMem>(call: &mut GlobalCall<'_, M>, arg: u64) -> Result<u64, Errno> {
    let guest = call.guest();
    let request: SchedPoll = guest.read_obj(arg)?;
    let count = request.nr_ports as usize;
    if count > MAX_POLL_PORTS {
        return Err(Errno::EINVAL);
    }
    let mut ports = [0 as EvtchnPort; MAX_POLL_PORTS];
    let bytes = zerocopy::IntoBytes::as_mut_bytes(&mut ports[..count]);
    guest.read(request.ports, bytes)?;
    if call
        .guests
        .poll(call.slot, &ports[..count], request.timeout)?
    {
        call.after = After::Reschedule;
    }
    Ok(0)
}

/// SCHEDOP_remote_shutdown: a privileged domain stops another (or itself). The machine
/// releases the domain's resources on the way out of this hypercall.
fn remote_shutdown<M: PhysMem>(call: &mut GlobalCall<'_, M>, arg: u64) -> Result<u64, Errno> {
    if !call.domain().privileged {
        return Err(Errno::EPERM);
    }
    let request: SchedRemoteShutdown = call.guest().read_obj(arg)?;
    // Any reason, as in Xen (see SCHEDOP_shutdown).
    let reason = u32::from(request.reason as u8);
    let target = call.guests.slot_of(request.domain_id).ok_or(Errno::ESRCH)?;
    if let Some(domain) = call.guests.domains[target].as_mut() {
        domain.state = DomainState::ShutDown { reason };
    }
    if target == call.slot {
        call.after = After::Reschedule;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::super::global::tests::call;
    use super::*;
    use crate::guests::tests::{BUF, Multi};
    use crate::sched::{RunState, VcpuRef};
    use pv_abi::sched::SHUTDOWN_POWEROFF;
    use pv_abi::xen::Hypercall;
    use zerocopy::IntoBytes;

    const ME: VcpuRef = VcpuRef { slot: 0, vcpu: 0 };

    #[test]
    fn set_timer_op_arms_and_disarms() {
        let mut w = Multi::new(1);
        w.now = 1_000;
        let set = |w: &mut Multi, t| call(w, 0, Hypercall::SetTimerOp, [t, 0, 0, 0, 0]).unwrap();
        assert_eq!(set(&mut w, 5_000).0, 0);
        assert_eq!(w.runtime[0].vcpus[0].timers.singleshot, Some(5_000));
        set(&mut w, 0);
        assert_eq!(w.runtime[0].vcpus[0].timers.singleshot, None);
        set(&mut w, u64::MAX);
        assert_eq!(w.runtime[0].vcpus[0].timers.singleshot, Some(100_001_000));
        set(&mut w, 1 << 51);
        assert_eq!(w.runtime[0].vcpus[0].timers.singleshot, Some(100_001_000));
        set(&mut w, 10);
        assert_eq!(
            w.runtime[0].vcpus[0].timers.singleshot,
            Some(10),
            "past: fires at once"
        );
    }

    #[test]
    fn block_and_yield() {
        let mut w = Multi::new(2);
        w.run(0);
        let sched =
            |w: &mut Multi, cmd, arg| call(w, 0, Hypercall::SchedOp, [cmd, arg, 0, 0, 0]).unwrap();
        assert_eq!(sched(&mut w, 0, 0), (0, After::Reschedule));
        w.run(0);
        assert_eq!(sched(&mut w, 1, 0), (0, After::Reschedule));
        assert_eq!(w.sched.state(ME), RunState::Blocked);
        // With an upcall due, block returns at once.
        w.sched.wake(ME, 0);
        w.run(0);
        let ipi = w.runtime[0].events.bind_ipi(0).unwrap();
        w.with(|g| g.send(0, ipi)).unwrap();
        assert_eq!(sched(&mut w, 1, 0), (0, After::Resume));
    }

    #[test]
    fn poll_reads_ports_from_the_guest() {
        let mut w = Multi::new(1);
        w.run(0);
        let port = w.runtime[0].events.bind_ipi(0).unwrap();
        w.put(0, 0x100, &port.to_le_bytes());
        let request = SchedPoll {
            ports: BUF + 0x100,
            nr_ports: 1,
            pad0: 0,
            timeout: 2_000_000,
        };
        w.put(0, 0, request.as_bytes());
        let poll = |w: &mut Multi| call(w, 0, Hypercall::SchedOp, [3, BUF, 0, 0, 0]).unwrap();
        assert_eq!(poll(&mut w), (0, After::Reschedule));
        assert_eq!(w.runtime[0].vcpus[0].timers.poll_timeout, Some(2_000_000));
        w.now = 2_000_000;
        w.with(|g| g.fire_timers());
        assert_eq!(w.sched.state(ME), RunState::Runnable);
        let too_many = SchedPoll {
            nr_ports: 129,
            ..request
        };
        w.put(0, 0, too_many.as_bytes());
        assert_eq!(poll(&mut w).0, -22);
        let unreadable = SchedPoll {
            ports: 0x1000,
            ..request
        };
        w.put(0, 0, unreadable.as_bytes());
        assert_eq!(poll(&mut w).0, -14);
    }

    #[test]
    fn remote_shutdown_is_for_privileged_domains() {
        let mut w = Multi::new(2);
        let request = SchedRemoteShutdown {
            domain_id: 1,
            pad0: 0,
            reason: SHUTDOWN_POWEROFF,
        };
        w.put(1, 0, request.as_bytes());
        let (ret, _) = call(&mut w, 1, Hypercall::SchedOp, [4, BUF, 0, 0, 0]).unwrap();
        assert_eq!(ret, -1, "domain 2 is not privileged");
        let request = SchedRemoteShutdown {
            domain_id: 2,
            ..request
        };
        w.put(0, 0, request.as_bytes());
        let (ret, after) = call(&mut w, 0, Hypercall::SchedOp, [4, BUF, 0, 0, 0]).unwrap();
        assert_eq!((ret, after), (0, After::Resume));
        assert!(!w.domains[1].as_ref().unwrap().is_running());
        let (ret, _) = call(&mut w, 0, Hypercall::SchedOp, [4, BUF, 0, 0, 0]).unwrap();
        assert_eq!(ret, -3, "ESRCH: already stopped");
    }
}
