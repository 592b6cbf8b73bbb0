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
use core::mem::MaybeUninit;
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
    let regs = &mut *ctx.regs;
    let vcpu = &mut ctx.domain.vcpu;
    let from_user = !vcpu.kernel_mode;
    let (stack, shown_cs) = if from_user {
        (vcpu.kernel_sp, regs.cs | 3)
    } else {
        (regs.rsp, regs.cs & !3)
    };
    let saved_mask = info.upcall_mask();
    let shown_flags = (regs.rflags & !rflags::IF) | if saved_mask { 0 } else { rflags::IF };

    // Not zeroed first: 104 zero bytes would be SSE stores, and with them a save of the
    // guest's XMM registers on a path that otherwise never touches them.
    let mut words = [const { MaybeUninit::<u64>::uninit() }; 13];
    let mut n = 0;
    let mut push = |value: u64| {
        words[n].write(value);
        n += 1;
    };
    push(regs.rcx);
    push(regs.r11);
    if bounce.failsafe {
        // Segment selectors: flat 64-bit guests have none loaded; Xen pushes the live
        // values, which for our guests are the null selector.
        for _ in 0..4 {
            push(0);
        }
    }
    if let Some(code) = bounce.error_code {
        push(code);
    }
    push(regs.rip);
    push(shown_cs | (u64::from(saved_mask) << 32));
    push(shown_flags);
    push(regs.rsp);
    push(regs.ss);

    let frame_size = 8 * n as u64;
    let top = stack & !0xf;
    let new_rsp = top.wrapping_sub(frame_size);
    let root = vcpu.kernel_root;
    let guest = ctx.guest_mem(root);
    // SAFETY: `push` initialised the first `n` words, `8 * n` bytes.
    let bytes = unsafe { core::slice::from_raw_parts(words.as_ptr().cast::<u8>(), 8 * n) };
    if top < frame_size || guest.write(new_rsp, bytes).is_err() {
        return Err(BounceError::BadStack(new_rsp));
    }

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
