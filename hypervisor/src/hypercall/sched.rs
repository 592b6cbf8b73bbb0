//! `sched_op`: yielding and shutting down. Blocking and polling need events and arrive
//! with the scheduling work; until then they return -ENOSYS.

use super::{After, Context};
use crate::domain::DomainState;
use crate::mm::PhysMem;
use pv_abi::errno::Errno;
use pv_abi::sched::{SCHEDOP_SHUTDOWN, SCHEDOP_YIELD, SHUTDOWN_MAX, SchedShutdown};

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
            if request.reason > SHUTDOWN_MAX {
                return Err(Errno::EINVAL);
            }
            ctx.domain.state = DomainState::ShutDown {
                reason: request.reason,
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
        world.put(0, &9u32.to_le_bytes());
        assert_eq!(world.call(29, [2, BUF, 0, 0, 0]).0, -22, "no such reason");
        assert!(world.domain.is_running());
        assert_eq!(world.call(29, [2, 0x10, 0, 0, 0]).0, -14);
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
