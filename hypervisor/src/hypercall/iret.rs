//! `HYPERVISOR_iret`: the guest kernel's return from an exception, callback or system
//! call, to its user mode or within kernel mode.
//!
//! The guest jumps to the iret stub of its hypercall page with an `iret_context` on its
//! stack (`rax, r11, rcx, flags, rip, cs, rflags, rsp, ss`, the stub having pushed the
//! first three). A CS with RPL 3 means "return to user mode": the hypervisor switches to
//! the user page table and GS base. With `VGCF_in_syscall` the return behaves like
//! `sysret`, as Xen's does (it returns by `sysretq` then): rcx holds the return address
//! and r11 the returned RFLAGS.

use super::{After, Context};
use crate::domain::{Domain, Vcpu};
use crate::guestmem::GuestMem;
use crate::mm::{PhysMem, is_canonical};
use crate::regs::TrapFrame;
use crate::traps::CrashReason;
use crate::traps::bounce::{rflags, toggle_guest_mode};
use crate::vcpu_info::VcpuInfoRef;
use pv_abi::arch_x86_64::{FLAT_RING3_CS64, FLAT_RING3_SS64, IretContext, VGCF_IN_SYSCALL};
use pv_abi::errno::Errno;

pub(super) fn iret<M: PhysMem>(ctx: &mut Context<'_, M>) -> Result<u64, Errno> {
    match return_from(&ctx.guest, ctx.mem, ctx.domain, ctx.regs) {
        Ok(rax) => Ok(rax),
        Err(reason) => {
            ctx.after = After::Crash(reason);
            Ok(0)
        }
    }
}

/// The whole of `HYPERVISOR_iret` for the running vCPU of `domain`, whose registers are
/// `regs` and whose kernel address space is `guest`: reads the `iret_context` at the
/// stack pointer, checks it, switches to user mode if it says so, and loads the
/// registers. Returns the `rax` to resume with, or why the domain must be stopped (an
/// unreadable or impossible frame: as in Xen, the domain is crashed). The hypercall
/// dispatcher and the machine's fast path both call this; the iret lane (no trap frame)
/// calls [`checked`] and [`IretReturn::commit`] itself.
pub fn return_from<M: PhysMem>(
    guest: &GuestMem<'_, M>,
    mem: &M,
    domain: &mut Domain,
    regs: &mut TrapFrame,
) -> Result<u64, CrashReason> {
    // The closure says only whether the frame was good: an `Option` comes back in
    // registers, where a `Result` with a crash reason would go through memory. A `move`
    // closure holds `regs` whole, not a pointer per field it writes.
    let rax = guest.with_obj(regs.rsp, move |frame| {
        let Some(ret) = checked(frame, &domain.vcpu) else {
            refused(mem, domain.id, frame);
            return None;
        };
        let info = VcpuInfoRef::of(mem, domain);
        ret.commit(&mut domain.vcpu, |masked| info.set_upcall_mask(masked));
        [regs.rcx, regs.r11] = ret.rcx_r11(frame);
        [regs.rip, regs.cs, regs.rflags, regs.rsp, regs.ss] = ret.iret_frame();
        Some(ret.rax)
    });
    match rax {
        Ok(Some(rax)) => Ok(rax),
        _ => Err(CrashReason::BadIret),
    }
}

/// Reports a refused `iret_context` (the domain is then stopped): out of line, with the
/// vector registers claimed first, since formatting the line may use them (see
/// [`PhysMem::claim_vector_registers`]).
#[cold]
#[inline(never)]
fn refused<M: PhysMem>(_: &M, domain: crate::frames::DomId, frame: &IretContext) {
    M::claim_vector_registers();
    log::warn!("d{domain} HYPERVISOR_iret refused: {frame:x?}");
}

/// Where a checked `iret_context` resumes the vCPU, and what it changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IretReturn {
    /// The `rax` to resume with (the interrupted context's).
    pub rax: u64,
    /// Where it resumes, with CS and SS the flat ring-3 selectors.
    pub rip: u64,
    /// The real RFLAGS: the guest-settable bits of the frame's, IF always on.
    pub rflags: u64,
    /// Its stack pointer.
    pub rsp: u64,
    /// `VGCF_in_syscall`: the return behaves like `sysret` (see
    /// [`rcx_r11`](Self::rcx_r11)).
    pub as_sysret: bool,
    /// It returns to guest user mode (CS with RPL 3).
    pub to_user: bool,
    /// Events masked on return (the frame's RFLAGS.IF clear).
    pub masked: bool,
}

impl IretReturn {
    /// The `iretq` frame it resumes with: rip, cs, rflags, rsp, ss (CS and SS the flat
    /// ring-3 selectors: both guest modes run in ring 3).
    #[inline(always)]
    pub fn iret_frame(&self) -> [u64; 5] {
        [
            self.rip,
            u64::from(FLAT_RING3_CS64),
            self.rflags,
            self.rsp,
            u64::from(FLAT_RING3_SS64),
        ]
    }

    /// The rcx and r11 it resumes with: after a return "in syscall" those a `sysret`
    /// leaves, the return address and the returned RFLAGS (Xen's `restore_all_guest`
    /// returns by `sysretq` then); otherwise the context's.
    #[inline(always)]
    pub fn rcx_r11(&self, context: &IretContext) -> [u64; 2] {
        if self.as_sysret {
            [self.rip, self.rflags]
        } else {
            [context.rcx, context.r11]
        }
    }

    /// The vCPU-side effects of the return: the mode switch of `vcpu`, and the event
    /// mask of its `vcpu_info` set to [`masked`](Self::masked) by `set_upcall_mask`
    /// (`VcpuInfoRef::set_upcall_mask`, or the same store through a pointer the caller
    /// keeps). The caller loads the registers (and, after a switch to user mode, the user
    /// page table and GS base).
    #[inline(always)]
    pub fn commit(&self, vcpu: &mut Vcpu, set_upcall_mask: impl FnOnce(bool)) {
        if self.to_user {
            toggle_guest_mode(vcpu);
        }
        set_upcall_mask(self.masked);
    }
}

/// The checks of `HYPERVISOR_iret` on the frame read from the guest's stack (by
/// reference: the 72-byte frame is never moved): where it returns to, or `None` for a
/// frame that cannot be returned to. Changes nothing (and says nothing: the caller
/// reports a refusal).
#[inline(always)]
pub fn checked(frame: &IretContext, vcpu: &Vcpu) -> Option<IretReturn> {
    // Only the selector bits count: a bounce frame carries the saved event mask in bits
    // 32..39 of its CS slot, and guests hand the slot back unchanged (Xen truncates too).
    let (cs, ss) = (frame.cs as u16, frame.ss as u16);
    let to_user = cs & 3 == 3;
    // Only the flat 64-bit selectors exist for our guests; the stack and instruction
    // pointers must be canonical, or the return itself would fault in the hypervisor.
    let plausible = (cs | 3) == FLAT_RING3_CS64
        && (ss | 3) == FLAT_RING3_SS64
        && is_canonical(frame.rip)
        && is_canonical(frame.rsp);
    // As in Xen, user mode needs its own page table: with the kernel's, user code could
    // reach all of guest kernel memory (both modes run in ring 3).
    if !plausible || (to_user && vcpu.user_root().is_none()) {
        return None;
    }
    Some(IretReturn {
        rax: frame.rax,
        rip: frame.rip,
        rflags: (frame.rflags & rflags::GUEST_SETTABLE) | rflags::IF | rflags::RESERVED_ONE,
        rsp: frame.rsp,
        as_sysret: frame.flags & VGCF_IN_SYSCALL != 0,
        to_user,
        masked: frame.rflags & rflags::IF == 0,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{BUF, World};
    use super::*;
    use crate::mm::Mfn;
    use zerocopy::IntoBytes;

    fn context(cs: u64, flags: u64) -> IretContext {
        IretContext {
            rax: 42,
            r11: 0x246,
            rcx: 0x40_2000,
            flags,
            rip: 0x40_1000,
            cs,
            rflags: 0x202,
            rsp: 0x7fff_f000,
            ss: 0xe02b,
        }
    }

    fn call_iret(world: &mut World, frame: IretContext) -> (i64, After) {
        world.put(0x100, frame.as_bytes());
        world.domain.vcpu.regs.rsp = BUF + 0x100;
        world.call_with_regs(23, [0; 5])
    }

    #[test]
    fn returns_to_user_mode_with_and_without_syscall_semantics() {
        let mut world = World::new();
        world.domain.vcpu.set_user_root(Some(Mfn(1)));
        let (ret, after) = call_iret(&mut world, context(0xe033, 0));
        assert_eq!((ret, after), (42, After::Resume));
        assert!(!world.domain.vcpu.kernel_mode);
        let regs = world.last_regs;
        assert_eq!(
            (regs.rip, regs.rsp, regs.rcx, regs.r11),
            (0x40_1000, 0x7fff_f000, 0x40_2000, 0x246)
        );

        let mut world = World::new();
        world.domain.vcpu.set_user_root(Some(Mfn(1)));
        let (ret, _) = call_iret(&mut world, context(0xe033, VGCF_IN_SYSCALL));
        assert_eq!(ret, 42);
        let regs = world.last_regs;
        assert_eq!(
            (regs.rip, regs.rcx, regs.r11, regs.rflags),
            (0x40_1000, 0x40_1000, 0x202, 0x202),
            "in_syscall returns as sysret: rcx the return address, r11 the RFLAGS"
        );
    }

    #[test]
    fn the_saved_mask_in_the_cs_slot_is_ignored() {
        let mut world = World::new();
        let (ret, after) = call_iret(&mut world, context(0x1_0000_e030, 0));
        assert_eq!((ret, after), (42, After::Resume));
        assert!(world.domain.vcpu.kernel_mode);
    }

    #[test]
    fn kernel_to_kernel_and_event_mask() {
        let mut world = World::new();
        let mut frame = context(0xe030, 0);
        frame.rflags = 0x2; // IF off: events masked on return
        let (ret, _) = call_iret(&mut world, frame);
        assert_eq!(ret, 42);
        assert!(world.domain.vcpu.kernel_mode, "RPL 0 stays in kernel mode");
        assert_eq!(world.last_regs.cs, 0xe033, "hardware CS is always ring 3");
        assert_eq!(world.last_regs.rflags & 0x200, 0x200, "real IF stays on");
        assert!(crate::vcpu_info::VcpuInfoRef::of(&world.mem, &world.domain).upcall_mask());
    }

    #[test]
    fn impossible_frames_crash_the_caller() {
        let crash = After::Crash(CrashReason::BadIret);
        let mut world = World::new();
        assert_eq!(
            call_iret(&mut world, context(0xe033, 0)).1,
            crash,
            "no user page table"
        );
        let mut world = World::new();
        world.domain.vcpu.set_user_root(Some(Mfn(1)));
        assert_eq!(
            call_iret(&mut world, context(0xe008, 0)).1,
            crash,
            "hypervisor CS"
        );
        let mut bad = context(0xe033, 0);
        bad.rip = 1 << 47;
        assert_eq!(call_iret(&mut world, bad).1, crash, "non-canonical rip");
        world.domain.vcpu.regs.rsp = 0x1000;
        assert_eq!(
            world.call_with_regs(23, [0; 5]).1,
            crash,
            "unreadable frame"
        );
    }
}
