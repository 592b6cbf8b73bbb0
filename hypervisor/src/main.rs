//! The hypervisor binary: x86_64 glue around the library's logic.
//!
//! Boot (`arch/x86_64/boot.S`) enters [`hv_start`] in long mode on the boot stack. From
//! then on the hypervisor runs only in response to guest entries: every `syscall`,
//! exception or interrupt from ring 3 lands in [`hv_trap_entry`] with the guest's
//! registers, and leaves through the exit stub to whichever vCPU is current by then.
//! Ring 0 runs with interrupts off and is never preempted.
#![no_std]
#![no_main]

mod arch;
mod console;
mod hardware;
mod machine;

use arch::x86_64 as x86;
// The memory primitives and the personality routine the precompiled `core` needs.
use freestanding as _;

/// Entered from the boot trampoline with the physical address of `hvm_start_info`.
#[unsafe(no_mangle)]
extern "C" fn hv_start(start_info_paddr: u32) -> ! {
    console::init();
    x86::init_cpu0();
    let boot = match x86::pvh::parse(u64::from(start_info_paddr)) {
        Ok(boot) => boot,
        Err(why) => {
            console::early_print(format_args!("hypervisor: cannot boot: {why}\n"));
            x86::cpu::exit_qemu(machine::EXIT_PANIC);
        }
    };
    console::set_level_from_cmdline(boot.cmdline);
    if boot
        .cmdline
        .split_ascii_whitespace()
        .any(|w| w == "bench-floor")
    {
        x86::floor::report();
    }
    machine::boot(&boot)
}

/// Every entry from a guest: a hypercall, an exception, or an interrupt. The stub saved
/// the guest's XMM registers already unless the entry is a not-present page fault the
/// #PF lane declined (the stub set CR0.TS: it saves through the #NM if it ever uses SSE)
/// or a `syscall` made into a fault (likewise); a `syscall` the fast path declined, saved
/// by its stub, is saved here again, up front, which then costs one compare (see
/// `entry.S`).
#[unsafe(no_mangle)]
extern "C" fn hv_trap_entry(frame: &mut hypervisor::regs::TrapFrame) {
    if frame.vector == hypervisor::regs::VECTOR_SYSCALL {
        // The full path uses SSE: save up front rather than through a #NM.
        x86::percpu::save_fpu();
    }
    machine::trap(frame);
}

/// Every `syscall` from a guest tries the hypercall fast path first (`entry.S`); the
/// frame's callee-saved registers are not saved yet (see [`machine::hypercall_fast`]).
#[unsafe(no_mangle)]
extern "C" fn hv_hypercall_fast(frame: &mut hypervisor::regs::TrapFrame) -> u64 {
    machine::hypercall_fast(frame) as u64
}

/// A per-domain hypercall [`hv_hypercall_fast`] left to the general handlers
/// ([`machine::FastEntry::General`]); the stub saved the guest's XMM registers.
#[unsafe(no_mangle)]
extern "C" fn hv_hypercall_domain(frame: &mut hypervisor::regs::TrapFrame) -> u64 {
    machine::hypercall_domain(frame) as u64
}

/// `EVTCHNOP_send` from a guest, by the send lane (`entry.S`): the port if the express
/// send read it (else `PORT_NOT_READ`) and the guest's port pointer (its rsi) in, the
/// result and how to leave out (rax and rdx).
#[unsafe(no_mangle)]
extern "C" fn hv_send_lane(read: u64, port_ptr: u64) -> machine::LaneExit {
    machine::send_lane(read, port_ptr)
}

/// `update_va_mapping` or a one-request `mmu_update` by the paging lane (`entry.S`):
/// the call's number and first four arguments in, the result and how to leave out (rax
/// and rdx).
#[unsafe(no_mangle)]
extern "C" fn hv_paging_lane(number: u64, a0: u64, a1: u64, a2: u64, a3: u64) -> machine::LaneExit {
    machine::paging_lane(number, [a0, a1, a2, a3])
}

/// `HYPERVISOR_iret` by the iret lane (`entry.S`): result and how to leave.
#[unsafe(no_mangle)]
extern "C" fn hv_iret_lane(
    frame: &mut machine::IretLaneFrame,
    guest_rsp: u64,
) -> machine::LaneExit {
    machine::iret_lane(frame, guest_rsp)
}

/// A guest process's `syscall` by the user-syscall lane (`entry.S`): where its kernel's
/// callback runs, or declined.
#[unsafe(no_mangle)]
extern "C" fn hv_user_syscall_lane(rip: u64, rflags: u64, rsp: u64) -> machine::LaneJump {
    machine::user_syscall_lane(rip, rflags, rsp)
}

/// An upcall due after a send by the send lane (`entry.S`): where the event callback
/// runs, or declined.
#[unsafe(no_mangle)]
extern "C" fn hv_upcall_lane(rip: u64, rflags: u64, rsp: u64) -> machine::LaneJump {
    machine::upcall_lane(rip, rflags, rsp)
}

/// A not-present page fault by the #PF lane (`entry.S`): whether it was bounced
/// (complete frame).
#[unsafe(no_mangle)]
extern "C" fn hv_page_fault_lane(frame: &mut hypervisor::regs::TrapFrame) -> bool {
    machine::page_fault_lane(frame)
}

/// A send the lane ran but could not finish: how to leave (complete caller-saved frame,
/// as for [`hv_hypercall_fast`]).
#[unsafe(no_mangle)]
extern "C" fn hv_send_lane_exit(frame: &mut hypervisor::regs::TrapFrame) -> u64 {
    machine::send_lane_exit(frame) as u64
}

/// A hypercall the fast path ran, finished by the full exit path (complete frame).
#[unsafe(no_mangle)]
extern "C" fn hv_hypercall_finish(frame: &mut hypervisor::regs::TrapFrame) {
    machine::finish_hypercall(frame);
}

/// An exception in ring 0 is a hypervisor bug: report it and stop the machine.
#[unsafe(no_mangle)]
extern "C" fn hv_hypervisor_fault(frame: &hypervisor::regs::TrapFrame) -> ! {
    let cr2 = x86::cpu::read_cr2();
    // A double fault whose page fault was in a guard page (it could not be delivered on
    // the overflowing stack) is a stack overflow. Only then does CR2 say so: after any
    // other exception it may be a guest's old fault address, or the boot check's.
    if frame.vector == 8
        && let Some(stack) = x86::guard_hit(cr2)
    {
        console::early_print(format_args!(
            "hypervisor: PANIC: {stack} overflowed (a fault in its guard page at {cr2:#x})\n"
        ));
    }
    console::early_print(format_args!(
        "hypervisor: PANIC: exception {} in ring 0, error code {:#x}, rip {:#x}, cr2 {:#x}\n",
        frame.vector, frame.error_code, frame.rip, cr2
    ));
    x86::cpu::exit_qemu(machine::EXIT_PANIC)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    console::early_print(format_args!("hypervisor: PANIC: {info}\n"));
    x86::cpu::exit_qemu(machine::EXIT_PANIC)
}
