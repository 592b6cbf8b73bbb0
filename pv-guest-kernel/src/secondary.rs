//! A second vCPU: the context VCPUOP_initialise starts it with, and what it runs (it
//! raises a flag, polls [`POLL_PORT`] if one is set, raises it again, and takes itself
//! down).

use crate::Boot;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use pv_abi::arch_x86_64::{
    FLAT_KERNEL_CS64, FLAT_KERNEL_SS64, VGCF_IN_KERNEL, VcpuGuestContext, xen_pfn_to_cr3,
};
use pv_abi::guest;
use zerocopy::FromZeros;

const KERNEL_BASE: u64 = 0xffff_ffff_8000_0000;
const STACK_SIZE: usize = 16 * 1024;

#[repr(C, align(16))]
struct Stack([u8; STACK_SIZE]);
struct StackCell(UnsafeCell<Stack>);
// SAFETY: only the secondary vCPU runs on this stack.
unsafe impl Sync for StackCell {}
static STACK: StackCell = StackCell(UnsafeCell::new(Stack([0; STACK_SIZE])));

/// vCPU 1's first context: `entry(flag)` on its own stack, in guest kernel mode, on
/// the boot page tables (pinned for the domain's life), with no callbacks.
pub fn context(boot: &Boot, flag: &'static AtomicU64) -> VcpuGuestContext {
    let info = boot.info;
    let l4_pfn = (info.pt_base - KERNEL_BASE) / 4096;
    // SAFETY: the P2M list is mapped in the boot region and has nr_pages entries.
    let l4_mfn = unsafe { ((info.mfn_list + l4_pfn * 8) as *const u64).read_volatile() };
    let top = (STACK.0.get() as u64 + STACK_SIZE as u64) & !0xf;
    let mut context = VcpuGuestContext::new_zeroed();
    context.flags = VGCF_IN_KERNEL;
    context.user_regs.rip = entry as *const () as u64;
    context.user_regs.rsp = top - 8;
    context.user_regs.rflags = 0x202;
    context.user_regs.rdi = flag as *const AtomicU64 as u64;
    context.user_regs.cs = FLAT_KERNEL_CS64;
    context.user_regs.ss = FLAT_KERNEL_SS64;
    context.kernel_ss = u64::from(FLAT_KERNEL_SS64);
    context.kernel_sp = top;
    context.ctrlreg[3] = xen_pfn_to_cr3(l4_mfn);
    context
}

/// A port for vCPU 1 to wait on by SCHEDOP_poll (no timeout) after it raised its flag
/// to 1; it raises the flag to 2 when the poll returns. 0: it does not poll.
pub static POLL_PORT: AtomicU32 = AtomicU32::new(0);

extern "C" fn entry(flag: &'static AtomicU64) -> ! {
    flag.store(1, Ordering::SeqCst);
    let port = POLL_PORT.load(Ordering::SeqCst);
    if port != 0 {
        let _ = guest::sched_poll(&[port], 0);
        flag.store(2, Ordering::SeqCst);
    }
    let _ = guest::vcpu_down(1);
    loop {
        let _ = guest::sched_yield();
    }
}
