//! Halting while nothing may run, and the interrupts that end the halt.
//!
//! Ring 0 runs with interrupts off and is never preempted. The one exception is the
//! idle wait: `sti; hlt; cli`, during which an interrupt (the APIC timer, normally)
//! enters the IDT from ring 0. The entry stubs send such interrupts to
//! [`hv_ring0_interrupt`], which acknowledges them and returns into the idle wait;
//! the caller then looks at timers and the scheduler again.

use super::lapic;

/// Halts until an interrupt arrives. Interrupts are off again on return.
pub fn wait_for_interrupt() {
    // SAFETY: interrupts are enabled only for the `hlt` (an interrupt pending at `sti`
    // is taken right after `hlt`, so none is lost). The interrupt path runs Rust code
    // on this stack without saving SSE registers, so the asm declares every
    // call-clobbered register (SSE included) as clobbered.
    unsafe { core::arch::asm!("sti", "hlt", "cli", clobber_abi("C")) };
}

/// An interrupt that arrived during [`wait_for_interrupt`] (called by `entry.S` with
/// the interrupted frame; vectors below 32 from ring 0 go to the fault path instead).
#[unsafe(no_mangle)]
extern "C" fn hv_ring0_interrupt(frame: &hypervisor::regs::TrapFrame) {
    // Spurious APIC interrupts and the masked legacy PIC's spurious IRQs need no
    // acknowledgement; the timer does.
    if frame.vector == lapic::TIMER_VECTOR {
        lapic::eoi();
    }
}
