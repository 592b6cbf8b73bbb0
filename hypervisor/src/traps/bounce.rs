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
/// can see has changed.
pub fn deliver<M: PhysMem>(
    ctx: &mut TrapContext<'_, M>,
    bounce: Bounce,
) -> Result<(), BounceError> {
    if bounce.handler == 0 || !is_canonical(bounce.handler) {
        return Err(BounceError::NoHandler);
    }
    let info = VcpuInfoRef::of(ctx.mem, ctx.domain);
    let saved_mask = info.upcall_mask();
    let regs = &*ctx.regs;
    let vcpu = &ctx.domain.vcpu;
    let from_user = !vcpu.kernel_mode;
    let (stack, shown_cs) = if from_user {
        (vcpu.kernel_sp, regs.cs | 3)
    } else {
        (regs.rsp, regs.cs & !3)
    };
    let shown_flags = (regs.rflags & !rflags::IF) | if saved_mask { 0 } else { rflags::IF };
    let (rcx, r11, rip, rsp, ss) = (regs.rcx, regs.r11, regs.rip, regs.rsp, regs.ss);
    let cs = shown_cs | (u64::from(saved_mask) << 32);
    // Each shape is one array of known size, built in place from the values (a move of
    // a built structure would be SSE copies, and with them a save of the guest's XMM
    // registers on a path that otherwise never touches them) and written by the MMU in
    // one copy.
    let new_rsp = if bounce.failsafe {
        failsafe_frame(
            ctx,
            stack,
            bounce.error_code,
            [rcx, r11, rip, cs, shown_flags, rsp, ss],
        )?
    } else if let Some(code) = bounce.error_code {
        push_frame(ctx, stack, &[rcx, r11, code, rip, cs, shown_flags, rsp, ss])?
    } else {
        push_frame(ctx, stack, &[rcx, r11, rip, cs, shown_flags, rsp, ss])?
    };

    // Committed: switch mode and registers.
    let vcpu = &mut ctx.domain.vcpu;
    if from_user {
        toggle_guest_mode(vcpu);
    }
    if bounce.mask_events {
        info.set_upcall_mask(true);
    }
    let regs = &mut *ctx.regs;
    regs.rflags &= !(rflags::AC | rflags::VM | rflags::RF | rflags::NT | rflags::TF);
    regs.rflags |= rflags::IF | rflags::RESERVED_ONE;
    regs.ss = u64::from(FLAT_KERNEL_SS64);
    regs.cs = u64::from(FLAT_KERNEL_CS64);
    regs.rsp = new_rsp;
    regs.rip = bounce.handler;
    Ok(())
}

/// Writes `frame` (its words from the new stack pointer up) below the 16-byte aligned
/// `stack` of the guest kernel (its kernel address space): the new stack pointer, or why
/// the stack cannot take it.
#[inline(always)]
fn push_frame<M: PhysMem, const N: usize>(
    ctx: &TrapContext<'_, M>,
    stack: u64,
    frame: &[u64; N],
) -> Result<u64, BounceError> {
    let size = 8 * N as u64;
    let top = stack & !0xf;
    let new_rsp = top.wrapping_sub(size);
    let guest = ctx.guest_mem(ctx.domain.vcpu.kernel_root);
    if top < size || guest.write_obj(new_rsp, frame).is_err() {
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
fn failsafe_frame<M: PhysMem>(
    ctx: &TrapContext<'_, M>,
    stack: u64,
    error_code: Option<u64>,
    words: [u64; 7],
) -> Result<u64, BounceError> {
    let [rcx, r11, rip, cs, rflags, rsp, ss] = words;
    match error_code {
        None => push_frame(
            ctx,
            stack,
            &[rcx, r11, 0, 0, 0, 0, rip, cs, rflags, rsp, ss],
        ),
        Some(code) => push_frame(
            ctx,
            stack,
            &[rcx, r11, 0, 0, 0, 0, code, rip, cs, rflags, rsp, ss],
        ),
    }
}
