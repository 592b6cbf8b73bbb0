//! Hypercalls that reach beyond the caller's own domain: event channels, vCPU
//! operations, timers, the waiting and remote parts of `sched_op`, `sysctl`, and
//! reading the hypervisor console's input.
//!
//! They need every domain, the scheduler and the clock, so they get a [`GlobalCall`]
//! (built on [`Guests`]) instead of the per-domain [`super::Context`]. The machine
//! offers each hypercall to [`dispatch`] first; what it does not take (`None`) goes on
//! to [`super::dispatch`].

use super::After;
use super::{console_read, event_channel, sysctl, timer, vcpu_op};
use crate::console_input::ConsoleInput;
use crate::domain::Domain;
use crate::guestmem::{GuestMem, WalkMemo};
use crate::guests::Guests;
use crate::mm::PhysMem;
use crate::paging::Mmu;
use crate::regs::TrapFrame;
use pv_abi::errno::Errno;
use pv_abi::xen::{CONSOLEIO_READ, Hypercall};

/// One hypercall with machine-wide reach.
pub struct GlobalCall<'a, M: PhysMem> {
    /// Every guest.
    pub guests: Guests<'a, M>,
    /// The caller's domain slot (its active vCPU made the call).
    pub slot: usize,
    /// The caller's registers.
    pub regs: &'a mut TrapFrame,
    /// TLB and CR3 effects (for the page references some operations take).
    pub mmu: &'a mut dyn Mmu,
    /// What the scheduler should do afterwards.
    pub after: After,
    /// Debug keys a privileged domain pressed (sysctl), for the machine to handle.
    pub debug_keys: heapless::Vec<u8, MAX_DEBUG_KEYS>,
    /// Input typed on the hypervisor console (CONSOLEIO_read).
    pub console_input: &'a mut ConsoleInput,
    /// Where guest-memory walks are remembered (see [`GuestMem::with_memo`]).
    pub memo: Option<&'a WalkMemo>,
}

/// Most debug keys one sysctl may press.
pub const MAX_DEBUG_KEYS: usize = 16;

impl<'a, M: PhysMem> GlobalCall<'a, M> {
    /// The calling domain.
    pub fn domain(&self) -> &Domain {
        self.guests.domains[self.slot]
            .as_ref()
            .expect("the caller's domain exists")
    }

    /// The calling vCPU's number.
    pub fn vcpu_id(&self) -> u32 {
        self.domain().vcpu.id
    }

    /// The caller's address space (guest kernel mode: hypercalls come from there).
    pub fn guest(&self) -> GuestMem<'a, M> {
        let domain = self.domain();
        let (id, root) = (domain.id, domain.vcpu.kernel_root);
        match self.memo {
            Some(memo) => GuestMem::with_memo(self.guests.mem, self.guests.frames, id, root, memo),
            None => GuestMem::new(self.guests.mem, self.guests.frames, id, root),
        }
    }
}

/// Handles the hypercall in `call.regs` if it is one of these; returns what the
/// scheduler should do, or `None` to leave the call to the per-domain dispatcher.
pub fn dispatch<M: PhysMem>(call: &mut GlobalCall<'_, M>) -> Option<After> {
    let decoded = Hypercall::try_from(call.regs.rax).ok();
    dispatch_decoded(call, decoded)
}

/// [`dispatch`] for a caller that decoded the number already (`decoded` is
/// `Hypercall::try_from(call.regs.rax).ok()`).
pub fn dispatch_decoded<M: PhysMem>(
    call: &mut GlobalCall<'_, M>,
    decoded: Option<Hypercall>,
) -> Option<After> {
    let args = call.regs.hypercall_args();
    let [a1, a2, a3, ..] = args.args;
    let result = match decoded.ok_or(()) {
        Ok(Hypercall::ConsoleIo) if a1 == u64::from(CONSOLEIO_READ) => {
            console_read::console_read(call, a2, a3)
        }
        Ok(Hypercall::EventChannelOp) => event_channel::event_channel_op(call, a1, a2),
        Ok(Hypercall::EventChannelOpCompat) => event_channel::compat(call, a1),
        Ok(Hypercall::VcpuOp) => vcpu_op::vcpu_op(call, a1, a2, a3),
        Ok(Hypercall::SetTimerOp) => timer::set_timer_op(call, a1),
        Ok(Hypercall::SchedOp) => timer::sched_op(call, a1, a2)?,
        Ok(Hypercall::Sysctl) => sysctl::sysctl(call, a1),
        _ => return None,
    };
    call.regs.rax = match result {
        Ok(value) => value,
        Err(errno) => errno.to_ret() as u64,
    };
    Some(call.after)
}

/// Whether [`dispatch`] may take hypercall `number` (with first argument `a1`): a cheap
/// check, so that per-domain calls skip building the machine-wide context.
pub fn may_handle(number: u64, a1: u64) -> bool {
    may_handle_decoded(Hypercall::try_from(number).ok(), a1)
}

/// [`may_handle`] for a decoded number.
pub fn may_handle_decoded(decoded: Option<Hypercall>, a1: u64) -> bool {
    match decoded.ok_or(()) {
        Ok(Hypercall::ConsoleIo) => a1 == u64::from(CONSOLEIO_READ),
        Ok(
            Hypercall::EventChannelOp
            | Hypercall::EventChannelOpCompat
            | Hypercall::VcpuOp
            | Hypercall::SetTimerOp
            | Hypercall::SchedOp
            | Hypercall::Sysctl,
        ) => true,
        _ => false,
    }
}

/// Whether a call this dispatcher handled may have changed anything machine-wide other
/// than vCPU states (which [`crate::sched::Scheduler::changes`] shows): a timer, a vCPU
/// brought up or down, a domain stopped, console or debug-key work. Event-channel
/// operations only set events pending and wake vCPUs, so after one the machine needs its
/// full exit path only if the scheduler saw a change.
pub fn may_change_more_than_vcpu_states(decoded: Option<Hypercall>) -> bool {
    !matches!(
        decoded,
        Some(Hypercall::EventChannelOp | Hypercall::EventChannelOpCompat)
    )
}

/// Turns a guest-supplied 64-bit value into a u32 command, or `ENOSYS`.
pub(super) fn command(value: u64) -> Result<u32, Errno> {
    u32::try_from(value).map_err(|_| Errno::ENOSYS)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::guests::tests::Multi;
    use crate::paging::testing::FakeMmu;

    /// Issues hypercall `number` from `slot`'s active vCPU; returns rax (signed), what
    /// the scheduler was asked, and the registers afterwards. `None` if not handled here.
    pub fn call(
        world: &mut Multi,
        slot: usize,
        number: Hypercall,
        args: [u64; 5],
    ) -> Option<(i64, After)> {
        call_full(world, slot, number, args).map(|(ret, after, _)| (ret, after))
    }

    /// A sysctl from `slot` with its argument at `arg`: rax and the keys pressed.
    pub fn call_keys(world: &mut Multi, slot: usize, arg: u64) -> (i64, Vec<u8>) {
        let (ret, _, keys) =
            call_full(world, slot, Hypercall::Sysctl, [arg, 0, 0, 0, 0]).expect("handled here");
        (ret, keys)
    }

    fn call_full(
        world: &mut Multi,
        slot: usize,
        number: Hypercall,
        args: [u64; 5],
    ) -> Option<(i64, After, Vec<u8>)> {
        // The hypercall fast path (machine.rs) runs these handlers before the frame's
        // callee-saved registers are saved: every call here checks they stay untouched.
        let callee_saved = [0xb0b0, 0xb1b1, 0x1212, 0x1313, 0x1414, 0x1515];
        let mut regs = TrapFrame {
            rip: 0x1000,
            rax: number as u64,
            rbx: callee_saved[0],
            rbp: callee_saved[1],
            r12: callee_saved[2],
            r13: callee_saved[3],
            r14: callee_saved[4],
            r15: callee_saved[5],
            ..TrapFrame::default()
        };
        [regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8] = args;
        let mut mmu = FakeMmu::new();
        let mut console = core::mem::take(&mut world.console);
        let after = world.with(|guests| {
            let mut call = GlobalCall {
                guests: Guests {
                    mem: guests.mem,
                    frames: guests.frames,
                    domains: &mut *guests.domains,
                    runtime: &mut *guests.runtime,
                    sched: &mut *guests.sched,
                    now: guests.now,
                },
                slot,
                regs: &mut regs,
                mmu: &mut mmu,
                after: After::Resume,
                debug_keys: heapless::Vec::new(),
                console_input: &mut console,
                memo: None,
            };
            dispatch(&mut call).map(|after| (after, call.debug_keys.to_vec()))
        });
        world.console = console;
        assert_eq!(
            [regs.rbx, regs.rbp, regs.r12, regs.r13, regs.r14, regs.r15],
            callee_saved,
            "{number:?} touched a callee-saved register"
        );
        let after = after?;
        Some((regs.rax as i64, after.0, after.1))
    }

    #[test]
    fn other_hypercalls_pass_through() {
        let mut world = Multi::new(1);
        assert!(call(&mut world, 0, Hypercall::ConsoleIo, [0; 5]).is_none());
        // SCHEDOP_shutdown is the per-domain dispatcher's.
        assert!(call(&mut world, 0, Hypercall::SchedOp, [2, 0, 0, 0, 0]).is_none());
    }

    #[test]
    fn the_pre_check_never_skips_a_call_this_dispatcher_takes() {
        for number in Hypercall::ALL {
            for a1 in 0..8 {
                let mut world = Multi::new(1);
                if call(&mut world, 0, number, [a1, 0, 0x40_0000, 0, 0]).is_some() {
                    assert!(may_handle(number.number(), a1), "{number:?} with a1 = {a1}");
                }
            }
        }
        assert!(!may_handle(Hypercall::XenVersion as u64, 0));
        assert!(
            !may_handle(Hypercall::ConsoleIo as u64, 0),
            "console writes are per-domain"
        );
    }

    #[test]
    fn garbage_never_panics() {
        let values = [0, 1, 2, 3, 4, 5, 9, 13, 0x40_0000, u64::MAX, 1 << 63];
        for number in [
            Hypercall::Sysctl,
            Hypercall::EventChannelOp,
            Hypercall::EventChannelOpCompat,
            Hypercall::VcpuOp,
            Hypercall::SetTimerOp,
            Hypercall::SchedOp,
        ] {
            for &a in &values {
                for &b in &values {
                    let mut world = Multi::new(2);
                    let _ = call(&mut world, 0, number, [a, b, 0x40_0000, a, b]);
                    let _ = call(&mut world, 1, number, [b, a, b, 0, 0]);
                }
            }
        }
    }
}
