//! Delivering an exception, software interrupt or callback to the guest kernel: Xen's
//! 64-bit "bounce frame".
//!
//! Both guest modes run in ring 3, so the hypervisor does what the CPU would do for a
//! real kernel: switch to guest kernel mode (its page table, its GS base, its stack if
//! coming from user mode), push a frame on the guest kernel stack and jump to the
//! registered handler. The frame, from the new stack pointer upwards:
//!
//! ```text
//! rsp ->  RCX  R11  [DS ES FS GS]  [ERRCODE]  RIP  CS|mask<<32  RFLAGS  RSP  SS
//!                    (failsafe only) (if any)
//! ```
//!
//! CS has RPL 0 if the guest was in kernel mode and 3 if in user mode (that is how the
//! guest tells the two apart); bits 32..39 of the CS slot hold the saved event mask, and
//! RFLAGS.IF shows the virtual interrupt flag (the inverse of that mask).

use super::TrapContext;
use crate::domain::Domain;
use crate::guestmem::GuestMem;
use crate::mm::{PhysMem, is_canonical};
use crate::vcpu_info::VcpuInfoRef;
use pv_abi::arch_x86_64::{FLAT_KERNEL_CS64, FLAT_KERNEL_SS64};

/// RFLAGS bits.
pub mod rflags {
    /// Trap flag.
    pub const TF: u64 = 1 << 8;
    /// Interrupt enable.
    pub const IF: u64 = 1 << 9;
    /// I/O privilege level (two bits).
    pub const IOPL: u64 = 3 << 12;
    /// Nested task.
    pub const NT: u64 = 1 << 14;
    /// Resume flag.
    pub const RF: u64 = 1 << 16;
    /// Virtual-8086 mode.
    pub const VM: u64 = 1 << 17;
    /// Alignment check.
    pub const AC: u64 = 1 << 18;
    /// Always-one bit 1.
    pub const RESERVED_ONE: u64 = 1 << 1;
    /// Bits a guest may set in its saved RFLAGS: arithmetic flags, TF, DF, AC, ID.
    pub const GUEST_SETTABLE: u64 = 0x0000_0000_0024_0dd5;
}

/// What to deliver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounce {
    /// The guest handler's address.
    pub handler: u64,
    /// The error code to push, if the event has one.
    pub error_code: Option<u64>,
    /// Whether delivery masks events (trap-table TI_IF or callback flag).
    pub mask_events: bool,
    /// Whether this is the failsafe callback (which also pushes DS, ES, FS, GS).
    pub failsafe: bool,
}

/// Why a bounce could not be delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BounceError {
    /// No handler registered (address 0).
    NoHandler,
    /// The guest kernel stack could not be written at this address.
    BadStack(u64),
}

/// Switches the vCPU between guest kernel and guest user mode. The binary loads the
/// matching page table and GS base before the vCPU runs again.
pub fn toggle_guest_mode(vcpu: &mut crate::domain::Vcpu) {
    vcpu.kernel_mode = !vcpu.kernel_mode;
}

/// Pushes a bounce frame and points the vCPU at the handler. On error nothing the guest
/// can see has changed. (One shared copy for the trap paths; the #PF lane inlines
/// [`deliver_inline`].)
#[inline(never)]
pub fn deliver<M: PhysMem>(
    ctx: &mut TrapContext<'_, M>,
    bounce: Bounce,
) -> Result<(), BounceError> {
    deliver_inline(ctx, bounce)
}

/// [`deliver`], always inlined: for a lane, where the call's frame and saved registers
/// are a fifth of the work.
#[inline(always)]
pub fn deliver_inline<M: PhysMem>(
    ctx: &mut TrapContext<'_, M>,
    bounce: Bounce,
) -> Result<(), BounceError> {
    let (mem, frames, memo) = (ctx.mem, ctx.frames, ctx.memo);
    let (id, root) = (ctx.domain.id, ctx.domain.vcpu.kernel_root);
    // The accessor is made where the frame is written (made here, it would be kept in
    // memory across the frame's computation).
    let guest = move || match memo {
        Some(memo) => GuestMem::with_memo(mem, frames, id, root, memo),
        None => GuestMem::new(mem, frames, id, root),
    };
    let from = Interrupted::of(ctx.regs);
    let new_rsp = push_bounce(guest, mem, ctx.domain, &from, bounce)?;
    let regs = &mut *ctx.regs;
    regs.rflags = handler_rflags(regs.rflags);
    regs.ss = u64::from(FLAT_KERNEL_SS64);
    regs.cs = u64::from(FLAT_KERNEL_CS64);
    regs.rsp = new_rsp;
    regs.rip = bounce.handler;
    // The guest's rcx and r11 are in the frame, which the handler pops first: the
    // registers carry the handler's address and RFLAGS, as Xen's `sysretq` after a
    // bounce leaves them, and so lets the exit leave by `sysretq` too (entry.S,
    // JUMP_UNLESS_SYSRET_SAME).
    regs.rcx = regs.rip;
    regs.r11 = regs.rflags;
    Ok(())
}

/// What a bounce frame saves of the interrupted context: the registers a `syscall`
/// clobbers and the CPU's interrupt frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interrupted {
    /// rcx as interrupted.
    pub rcx: u64,
    /// r11 as interrupted.
    pub r11: u64,
    /// Where it was interrupted.
    pub rip: u64,
    /// Its code selector.
    pub cs: u64,
    /// Its real RFLAGS.
    pub rflags: u64,
    /// Its stack pointer.
    pub rsp: u64,
    /// Its stack selector.
    pub ss: u64,
}

impl Interrupted {
    /// The interrupted context in `regs`.
    #[inline(always)]
    pub fn of(regs: &crate::regs::TrapFrame) -> Interrupted {
        Interrupted {
            rcx: regs.rcx,
            r11: regs.r11,
            rip: regs.rip,
            cs: regs.cs,
            rflags: regs.rflags,
            rsp: regs.rsp,
            ss: regs.ss,
        }
    }
}

/// The real RFLAGS the guest kernel's handler runs with, from the interrupted context's:
/// single-stepping, nested task, resume, virtual-8086 and alignment checks off, IF on (the
/// virtual flag is the event mask).
#[inline(always)]
pub fn handler_rflags(interrupted: u64) -> u64 {
    (interrupted & HANDLER_RFLAGS_KEEP) | HANDLER_RFLAGS_SET
}

/// The RFLAGS bits [`handler_rflags`] keeps (the user-syscall lane's stub, `entry.S`,
/// applies the same two masks).
pub const HANDLER_RFLAGS_KEEP: u64 =
    !(rflags::AC | rflags::VM | rflags::RF | rflags::NT | rflags::TF);
/// The RFLAGS bits [`handler_rflags`] sets.
pub const HANDLER_RFLAGS_SET: u64 = rflags::IF | rflags::RESERVED_ONE;
// The stub's `and` takes a sign-extended 32-bit immediate.
const _: () = assert!(HANDLER_RFLAGS_KEEP as i32 as i64 as u64 == HANDLER_RFLAGS_KEEP);

/// The part of [`deliver`] that needs no trap frame: pushes the bounce frame for `from`
/// on the guest kernel's stack (through the accessor `guest` makes, of its kernel
/// address space), switches the vCPU to kernel mode if it came from user mode, masks
/// events if the bounce says so, and returns the handler's stack pointer. The caller
/// points the vCPU at `bounce.handler` with that stack and [`handler_rflags`]. On error
/// nothing the guest can see has changed. The lanes that bounce a context right after a
/// `syscall` (a process's system call, an upcall after a send) call this directly.
#[inline(always)]
pub fn push_bounce<'a, M: PhysMem + 'a>(
    guest: impl FnOnce() -> GuestMem<'a, M>,
    mem: &M,
    domain: &mut Domain,
    from: &Interrupted,
    bounce: Bounce,
) -> Result<u64, BounceError> {
    if bounce.handler == 0 || !is_canonical(bounce.handler) {
        return Err(BounceError::NoHandler);
    }
    let info = VcpuInfoRef::of(mem, domain);
    let saved_mask = info.upcall_mask();
    let vcpu = &domain.vcpu;
    let from_user = !vcpu.kernel_mode;
    let (stack, shown_cs) = if from_user {
        (vcpu.kernel_sp(), from.cs | 3)
    } else {
        (from.rsp, from.cs & !3)
    };
    let shown_flags = (from.rflags & !rflags::IF) | if saved_mask { 0 } else { rflags::IF };
    let (rcx, r11, rip, rsp, ss) = (from.rcx, from.r11, from.rip, from.rsp, from.ss);
    let cs = shown_cs | (u64::from(saved_mask) << 32);
    // Each shape is one array of known size, built in place from the values (a move of
    // a built structure would be SSE copies, and with them a save of the guest's XMM
    // registers on a path that otherwise never touches them) and written by the MMU in
    // one copy.
    let new_rsp = if bounce.failsafe {
        failsafe_frame(
            guest,
            stack,
            bounce.error_code,
            [rcx, r11, rip, cs, shown_flags, rsp, ss],
        )?
    } else if let Some(code) = bounce.error_code {
        push_frame(
            guest,
            stack,
            &[rcx, r11, code, rip, cs, shown_flags, rsp, ss],
        )?
    } else {
        push_frame(guest, stack, &[rcx, r11, rip, cs, shown_flags, rsp, ss])?
    };

    // Committed: switch mode and mask.
    if from_user {
        toggle_guest_mode(&mut domain.vcpu);
    }
    if bounce.mask_events {
        info.set_upcall_mask(true);
    }
    Ok(new_rsp)
}

/// Writes `frame` (its words from the new stack pointer up) below the 16-byte aligned
/// `stack` of the guest kernel (its kernel address space): the new stack pointer, or why
/// the stack cannot take it.
#[inline(always)]
fn push_frame<'a, M: PhysMem + 'a, const N: usize>(
    guest: impl FnOnce() -> GuestMem<'a, M>,
    stack: u64,
    frame: &[u64; N],
) -> Result<u64, BounceError> {
    let size = 8 * N as u64;
    let top = stack & !0xf;
    let new_rsp = top.wrapping_sub(size);
    if top < size || guest().write_obj(new_rsp, frame).is_err() {
        return Err(BounceError::BadStack(new_rsp));
    }
    Ok(new_rsp)
}

/// [`push_frame`] for the failsafe callback's frame, which also carries DS, ES, FS and
/// GS after RCX and R11 (flat 64-bit guests have none loaded; Xen pushes the live
/// values, which for our guests are the null selector), then the error code if any,
/// then the rest of `words` (the frame [`deliver`] would push without an error code).
/// Out of line: it is taken only when a bounce could not be delivered.
#[cold]
#[inline(never)]
fn failsafe_frame<'a, M: PhysMem + 'a>(
    guest: impl FnOnce() -> GuestMem<'a, M>,
    stack: u64,
    error_code: Option<u64>,
    words: [u64; 7],
) -> Result<u64, BounceError> {
    // (Building the frame zeroes four words at once: an SSE store.)
    M::claim_vector_registers();
    let [rcx, r11, rip, cs, rflags, rsp, ss] = words;
    match error_code {
        None => push_frame(
            guest,
            stack,
            &[rcx, r11, 0, 0, 0, 0, rip, cs, rflags, rsp, ss],
        ),
        Some(code) => push_frame(
            guest,
            stack,
            &[rcx, r11, 0, 0, 0, 0, code, rip, cs, rflags, rsp, ss],
        ),
    }
}
