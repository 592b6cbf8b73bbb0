//! Exceptions, software interrupts and system calls from a guest: emulate what the
//! hypervisor owns, bounce the rest to the guest kernel's registered handlers, and stop a
//! guest that left itself no handler.
//!
//! This is Xen's x86_64 PV trap model: the guest kernel registers a virtual IDT
//! (set_trap_table) and callbacks; both guest modes run in ring 3; the hypervisor keeps a
//! virtual kernel/user mode per vCPU and switches page tables and GS base on every
//! transition (see `bounce` and `hypercall::iret`).

pub mod bounce;
pub mod emulate;

use crate::domain::Domain;
use crate::frames::FrameTable;
use crate::mm::PhysMem;
use crate::regs::TrapFrame;
use crate::vcpu_info::VcpuInfoRef;
use bounce::{Bounce, BounceError, deliver};
use pv_abi::arch_x86_64::TI_IF;

/// Exception vectors the trap path treats specially.
pub mod vector {
    /// Divide error.
    pub const DE: u64 = 0;
    /// Debug.
    pub const DB: u64 = 1;
    /// Breakpoint (`int3`).
    pub const BP: u64 = 3;
    /// Overflow (`into`).
    pub const OF: u64 = 4;
    /// Invalid opcode.
    pub const UD: u64 = 6;
    /// Device not available (FPU use with CR0.TS).
    pub const NM: u64 = 7;
    /// General protection.
    pub const GP: u64 = 13;
    /// Page fault.
    pub const PF: u64 = 14;
    /// The conventional system-call vector, reachable from guest user mode.
    pub const INT80: u64 = 0x80;
}

/// Page-fault error-code bit: the access came from user mode.
pub const PFEC_USER: u64 = 1 << 2;

/// Whether the CPU pushes an error code for `vector`.
pub fn has_error_code(vector: u64) -> bool {
    matches!(vector, 8 | 10..=14 | 17 | 21 | 29 | 30)
}

/// Everything the trap path may touch.
pub struct TrapContext<'a, M: PhysMem> {
    /// The interrupted domain.
    pub domain: &'a mut Domain,
    /// Machine memory.
    pub mem: &'a M,
    /// The frame table (for the checked guest accessor).
    pub frames: &'a FrameTable<'a>,
    /// The interrupted registers.
    pub regs: &'a mut TrapFrame,
    /// Where guest-memory walks are remembered, if the caller keeps one.
    pub memo: Option<&'a crate::guestmem::WalkMemo>,
}

impl<'a, M: PhysMem> TrapContext<'a, M> {
    /// The interrupted domain's address space rooted at `root` (the checked accessor).
    pub fn guest_mem(&self, root: crate::mm::Mfn) -> crate::guestmem::GuestMem<'a, M> {
        let id = self.domain.id;
        match self.memo {
            Some(memo) => {
                crate::guestmem::GuestMem::with_memo(self.mem, self.frames, id, root, memo)
            }
            None => crate::guestmem::GuestMem::new(self.mem, self.frames, id, root),
        }
    }
}

/// How a trap ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The vCPU continues (in its handler, or after an emulated instruction).
    Resume,
    /// The vCPU gave up the CPU.
    Yield,
    /// The vCPU waits for an event (an emulated `hlt`: SCHEDOP_block semantics).
    Block,
    /// The domain must be destroyed.
    Crash(CrashReason),
}

impl Outcome {
    /// The outcome, unless the vCPU would then resume at a non-canonical rip or rsp
    /// (`regs`): that is a crash instead. Every handler checks what it sets, so this is
    /// the net under them: on hardware the exit's `iretq` to such an address faults in
    /// ring 0 and stops every domain (an emulated `hlt` once got there: found by review).
    pub fn resumable(self, regs: &TrapFrame) -> Outcome {
        match self {
            Outcome::Crash(_) => self,
            _ if crate::mm::is_canonical(regs.rip) && crate::mm::is_canonical(regs.rsp) => self,
            _ => Outcome::Crash(CrashReason::NonCanonicalReturn {
                rip: regs.rip,
                rsp: regs.rsp,
            }),
        }
    }
}

/// Why a domain is destroyed.
///
/// Its tags start at 1, so that 0 is left for `None` of an enclosing `Option` (the
/// compiler then puts it in this tag): the machine state's `Option<After>` starts as
/// `None`, and the whole state is all zero at first, to be `.bss` and not in the image
/// (see `Present` in `domain.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum CrashReason {
    /// A fault for which the guest registered no handler.
    NoHandler {
        /// The vector.
        vector: u64,
    } = 1,
    /// The guest kernel stack could not take a bounce frame (nor a failsafe frame).
    BadKernelStack {
        /// The vector being delivered.
        vector: u64,
        /// Where the frame should have gone.
        address: u64,
        /// Whether a failsafe callback was registered (and could not be delivered either).
        failsafe: bool,
    } = 2,
    /// HYPERVISOR_iret with a frame that cannot be read, or a return to user mode with
    /// no user page table.
    BadIret = 3,
    /// A trap's handling left the vCPU to resume at a non-canonical rip or rsp, where
    /// the exit's `iretq` would fault in ring 0 (a hypervisor bug, caught on the way out:
    /// [`Outcome::resumable`]).
    NonCanonicalReturn {
        /// The rip it would have resumed at.
        rip: u64,
        /// The rsp.
        rsp: u64,
    } = 4,
}

impl core::fmt::Display for CrashReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CrashReason::NoHandler { vector } => write!(f, "no guest handler for vector {vector}"),
            CrashReason::BadKernelStack {
                vector,
                address,
                failsafe,
            } => write!(
                f,
                "cannot push the frame for vector {vector} at {address:#x} ({})",
                if *failsafe {
                    "and the failsafe callback could not be delivered either"
                } else {
                    "kernel stack unusable, no failsafe callback"
                }
            ),
            CrashReason::BadIret => {
                f.write_str("HYPERVISOR_iret with an unreadable or impossible frame")
            }
            CrashReason::NonCanonicalReturn { rip, rsp } => write!(
                f,
                "would resume at a non-canonical address (rip {rip:#x}, rsp {rsp:#x})"
            ),
        }
    }
}

/// Delivers `bounce`; if the guest stack cannot take the frame, tries the failsafe
/// callback on the registered kernel stack, and failing that asks for a crash.
pub fn deliver_or_failsafe<M: PhysMem>(
    ctx: &mut TrapContext<'_, M>,
    vector: u64,
    bounce: Bounce,
) -> Outcome {
    match deliver(ctx, bounce) {
        Ok(()) => Outcome::Resume,
        Err(BounceError::NoHandler) => Outcome::Crash(CrashReason::NoHandler { vector }),
        Err(BounceError::BadStack(address)) => failsafe(ctx, vector, address),
    }
}

#[cold]
#[inline(never)]
fn failsafe<M: PhysMem>(ctx: &mut TrapContext<'_, M>, vector: u64, address: u64) -> Outcome {
    let handler = ctx.domain.vcpu.callbacks.failsafe;
    let failsafe = handler != 0;
    let crash = Outcome::Crash(CrashReason::BadKernelStack {
        vector,
        address,
        failsafe,
    });
    if handler == 0 {
        return crash;
    }
    // Deliver on the registered kernel stack, as if from user mode.
    let was_kernel = ctx.domain.vcpu.kernel_mode;
    ctx.domain.vcpu.kernel_mode = false;
    let bounce = Bounce {
        handler,
        error_code: None,
        mask_events: true,
        failsafe: true,
    };
    match deliver(ctx, bounce) {
        Ok(()) => Outcome::Resume,
        Err(_) => {
            ctx.domain.vcpu.kernel_mode = was_kernel;
            crash
        }
    }
}

/// Delivers exception or software interrupt `vector` through the guest's trap table.
pub fn inject<M: PhysMem>(
    ctx: &mut TrapContext<'_, M>,
    vector: u64,
    error_code: Option<u64>,
) -> Outcome {
    let bounce = exception_bounce(&ctx.domain.vcpu, vector, error_code);
    deliver_or_failsafe(ctx, vector, bounce)
}

/// The bounce of exception or software interrupt `vector` (with `error_code`, if it
/// has one) to the handler `vcpu`'s trap table gives it.
#[inline(always)]
pub fn exception_bounce(
    vcpu: &crate::domain::Vcpu,
    vector: u64,
    error_code: Option<u64>,
) -> Bounce {
    let entry = vcpu.trap_table[(vector & 0xff) as usize];
    Bounce {
        handler: entry.address,
        error_code,
        mask_events: entry.flags & TI_IF != 0,
        failsafe: false,
    }
}

/// Page-fault error-code bits: the page was present; the access was a write.
const PFEC_PRESENT: u64 = 1 << 0;
const PFEC_WRITE: u64 = 1 << 1;

/// Handles exception `vector` raised while the guest ran (hardware error code in the
/// frame): first what the hypervisor emulates (privileged instructions, stores into the
/// guest's own page tables), then delivery to the guest kernel.
pub fn guest_exception<M: PhysMem>(
    ctx: &mut TrapContext<'_, M>,
    hw: &mut dyn emulate::Hardware,
    vector: u64,
    cr2: u64,
) -> Outcome {
    let emulated = match vector {
        vector::GP | vector::UD => emulate::privileged_op(ctx, hw),
        vector::PF
            if ctx.regs.error_code & (PFEC_PRESENT | PFEC_WRITE) == PFEC_PRESENT | PFEC_WRITE =>
        {
            emulate::page_table_write(ctx, hw, cr2)
        }
        _ => None,
    };
    if let Some(outcome) = emulated {
        return outcome;
    }
    reflect(ctx, vector, cr2)
}

/// Whether a page fault's error code says the page was present (a protection fault,
/// which may be a store into the guest's page tables to emulate).
pub fn pf_present(error_code: u64) -> bool {
    error_code & PFEC_PRESENT != 0
}

/// Delivers a page fault at `cr2` to the guest kernel's handler, as
/// [`guest_exception`] does for one it does not emulate (every not-present fault).
pub fn reflect_page_fault<M: PhysMem>(ctx: &mut TrapContext<'_, M>, cr2: u64) -> Outcome {
    VcpuInfoRef::of(ctx.mem, ctx.domain).set_cr2(cr2);
    let code = guest_pf_code(&ctx.domain.vcpu, ctx.regs.error_code);
    inject(ctx, vector::PF, Some(code))
}

/// The error code the guest kernel sees for a page fault the CPU reported with
/// `error_code` while `vcpu` ran: "user" only for faults from its user mode (both of its
/// modes run in ring 3).
#[inline(always)]
pub fn guest_pf_code(vcpu: &crate::domain::Vcpu, error_code: u64) -> u64 {
    let code = error_code & !PFEC_USER;
    if vcpu.kernel_mode {
        code
    } else {
        code | PFEC_USER
    }
}

/// Delivers exception `vector` to the guest kernel's handler.
fn reflect<M: PhysMem>(ctx: &mut TrapContext<'_, M>, vector: u64, cr2: u64) -> Outcome {
    match vector {
        vector::PF => reflect_page_fault(ctx, cr2),
        vector::NM if ctx.domain.vcpu.virtual_ts => {
            ctx.domain.vcpu.virtual_ts = false;
            inject(ctx, vector, None)
        }
        vector::INT80 => {
            // Reached through the DPL-3 gate: deliver only if the guest allows it from
            // the current mode, else it is the #GP an `int $0x80` would raise.
            if software_interrupt_allowed(ctx.domain, vector) {
                inject(ctx, vector, None)
            } else {
                ctx.regs.rip = ctx.regs.rip.wrapping_sub(2);
                inject(ctx, vector::GP, Some((vector << 3) | 2))
            }
        }
        _ => {
            let code = has_error_code(vector).then_some(ctx.regs.error_code);
            inject(ctx, vector, code)
        }
    }
}

/// Whether `int $vector` may be raised from the vCPU's current mode: the virtual DPL must
/// be at least 1 for guest kernel mode and 3 for user mode (Xen's `permit_softint`).
pub fn software_interrupt_allowed(domain: &Domain, vector: u64) -> bool {
    let entry = &domain.vcpu.trap_table[(vector & 0xff) as usize];
    let needed = if domain.vcpu.kernel_mode { 1 } else { 3 };
    entry.address != 0 && entry.dpl() >= needed
}

/// A `syscall` from guest user mode: enter the guest kernel's syscall callback (with no
/// callback registered, the guest gets #UD as from a CPU with syscall disabled).
pub fn user_syscall<M: PhysMem>(ctx: &mut TrapContext<'_, M>) -> Outcome {
    let Some(bounce) = syscall_bounce(&ctx.domain.vcpu.callbacks) else {
        ctx.regs.rip = ctx.regs.rip.wrapping_sub(2);
        return inject(ctx, vector::UD, None);
    };
    deliver_or_failsafe(ctx, crate::regs::VECTOR_SYSCALL, bounce)
}

/// The bounce a process's `syscall` makes to the guest kernel's syscall callback, if
/// one is registered ([`user_syscall`]; the machine's fast path delivers it directly).
#[inline(always)]
pub fn syscall_bounce(callbacks: &crate::domain::Callbacks) -> Option<Bounce> {
    (callbacks.syscall != 0).then_some(Bounce {
        handler: callbacks.syscall,
        error_code: None,
        mask_events: callbacks.syscall_masks_events,
        failsafe: false,
    })
}

#[cfg(test)]
mod tests;
