//! `sched_op`: yielding and shutting down. Blocking and polling need events and arrive
//! with the scheduling work; until then they return -ENOSYS.

use super::{After, Context};
use crate::domain::DomainState;
use crate::mm::PhysMem;
use pv_abi::errno::Errno;
use pv_abi::sched::{SCHEDOP_SHUTDOWN, SCHEDOP_YIELD, SchedShutdown};

pub(super) fn sched_op<M: PhysMem>(
    ctx: &mut Context<'_, M>,
    cmd: u64,
    arg: u64,
) -> Result<u64, Errno> {
    match u32::try_from(cmd).map_err(|_| Errno::ENOSYS)? {
        SCHEDOP_YIELD => {
            ctx.after = After::Reschedule;
            Ok(0)
        }
        SCHEDOP_SHUTDOWN => {
            let request: SchedShutdown = ctx.guest.read_obj(arg)?;
            // Any reason, as in Xen (`domain_shutdown(d, (u8)reason)`): a guest that asks
            // to stop is stopped; one Xen does not define is reported as unknown.
            ctx.domain.state = DomainState::ShutDown {
                reason: u32::from(request.reason as u8),
            };
            ctx.after = After::Reschedule;
            Ok(0)
        }
        _ => Err(Errno::ENOSYS),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{BUF, World};
    use super::*;
    use pv_abi::sched::SHUTDOWN_POWEROFF;

    #[test]
    fn yield_and_shutdown() {
        let mut world = World::new();
        assert_eq!(world.call(29, [0, 0, 0, 0, 0]), (0, After::Reschedule));
        assert_eq!(world.call(29, [2, 0x10, 0, 0, 0]).0, -14);
        assert!(world.domain.is_running());
        // A reason Xen does not define still stops the domain, truncated to 8 bits as
        // Xen's domain_shutdown takes it.
        world.put(0, &0x109u32.to_le_bytes());
        assert_eq!(world.call(29, [2, BUF, 0, 0, 0]), (0, After::Reschedule));
        assert_eq!(world.domain.state, DomainState::ShutDown { reason: 9 });
        world.domain.state = DomainState::Running;
        world.put(0, &SHUTDOWN_POWEROFF.to_le_bytes());
        assert_eq!(world.call(29, [2, BUF, 0, 0, 0]), (0, After::Reschedule));
        assert_eq!(
            world.domain.state,
            DomainState::ShutDown {
                reason: SHUTDOWN_POWEROFF
            }
        );
        assert!(world.domain.ended_cleanly());
        assert_eq!(world.call(29, [77, BUF, 0, 0, 0]).0, -38);
    }
}
