//! Everything that touches x86_64 hardware directly. The rest of the hypervisor is plain
//! Rust in the library crate.

pub mod cpu;
pub mod floor;
pub mod gdt;
pub mod guest_access;
pub mod idle;
pub mod idt;
pub mod lapic;
pub mod m2p;
pub mod mem;
pub mod percpu;
pub mod pvh;
pub mod rtc;
pub mod serial;
pub mod tsc;

core::arch::global_asm!(include_str!("boot.S"), options(att_syntax));
core::arch::global_asm!(
    include_str!("entry.S"),
    bounce_rflags_keep = const hypervisor::traps::bounce::HANDLER_RFLAGS_KEEP as i32,
    bounce_rflags_set = const hypervisor::traps::bounce::HANDLER_RFLAGS_SET,
    options(att_syntax)
);

unsafe extern "C" {
    fn syscall_entry();
    fn user_syscall_entry();
    fn enter_guest_first(frame: *mut hypervisor::regs::TrapFrame) -> !;
    static boot_pml4: [u64; 512];
}

/// The `syscall` entry point (LSTAR) while the vCPU on this CPU is in guest kernel mode
/// (a hypercall) or in guest user mode (a process's system call, bounced to its kernel).
pub fn syscall_entry_for(kernel_mode: bool) -> u64 {
    if kernel_mode {
        syscall_entry as *const () as u64
    } else {
        user_syscall_entry as *const () as u64
    }
}

/// Virtual address of the direct map of physical memory (Xen's DIRECTMAP_VIRT_START).
pub const DIRECTMAP_BASE: u64 = 0xffff_8300_0000_0000;
/// How much physical memory the boot tables map there.
pub const DIRECTMAP_SIZE: u64 = 4 << 30;

const RFLAGS_IF: u64 = 1 << 9;
const RFLAGS_DF: u64 = 1 << 10;
const RFLAGS_TF: u64 = 1 << 8;
const RFLAGS_AC: u64 = 1 << 18;
const RFLAGS_NT: u64 = 1 << 14;

/// Brings up CPU 0: per-CPU block, GDT/TSS, IDT, PIC, `syscall`.
pub fn init_cpu0() {
    let stacks = percpu::init_cpu0();
    gdt::init(stacks);
    idt::init();
    idt::quiesce_pic();
    let star = (u64::from(gdt::RING3_CS32) << 48) | (u64::from(gdt::HYPERVISOR_CS) << 32);
    // SAFETY: STAR/LSTAR/FMASK point `syscall` at our stub with the selectors of the
    // GDT just loaded; FMASK keeps interrupts, traps and alignment checks off on entry.
    unsafe {
        cpu::wrmsr(cpu::msr::STAR, star);
        cpu::wrmsr(cpu::msr::LSTAR, syscall_entry as *const () as u64);
        cpu::wrmsr(cpu::msr::CSTAR, 0);
        cpu::wrmsr(
            cpu::msr::FMASK,
            RFLAGS_IF | RFLAGS_DF | RFLAGS_TF | RFLAGS_AC | RFLAGS_NT,
        );
    }
    drop_identity_map();
    let protections = cpu::enable_smep_smap();
    log::info!(
        "cpu: SMEP {}, SMAP {}",
        if protections.smep {
            "on"
        } else {
            "not available"
        },
        if protections.smap {
            "on"
        } else {
            "not available"
        }
    );
}

/// Removes the boot identity map: from now on the lower half belongs to guests.
fn drop_identity_map() {
    // SAFETY: we run from the direct map; slot 0 was only needed for the mode switch.
    unsafe {
        let pml4 = &raw const boot_pml4 as *mut u64;
        pml4.write_volatile(0);
        cpu::write_cr3(cpu::read_cr3());
    }
}

/// Machine address of the hypervisor's own L4 (the boot tables).
pub fn idle_root() -> u64 {
    virt_to_phys(&raw const boot_pml4 as u64)
}

/// The L4 entries every address space must carry to reach the hypervisor: the direct
/// map (supervisor-only) and the read-only machine-to-phys table guests may read.
pub fn hypervisor_l4_entries() -> [(usize, u64); 2] {
    // SAFETY: reading the boot PML4, which only the boot code writes.
    let direct = unsafe {
        (&raw const boot_pml4 as *const u64)
            .add(262)
            .read_volatile()
    };
    [(262, direct), (m2p::L4_SLOT, m2p::l4_entry())]
}

/// Converts a direct-map (or image) address to its physical address.
pub fn virt_to_phys(virt: u64) -> u64 {
    virt - DIRECTMAP_BASE
}

/// Starts running guests on this CPU with the given frame (never returns).
///
/// # Safety
/// The frame must describe a valid ring-3 context, CR3 must hold that vCPU's root and
/// the per-CPU FPU area must point at its FXSAVE image.
pub unsafe fn enter_first(frame: &hypervisor::regs::TrapFrame) -> ! {
    let top = percpu::stack_top();
    let slot = (top - core::mem::size_of::<hypervisor::regs::TrapFrame>() as u64)
        as *mut hypervisor::regs::TrapFrame;
    // SAFETY: the frame slot at the top of this CPU's stack is where the exit path pops
    // from; the caller vouches for the context.
    unsafe {
        slot.write(*frame);
        enter_guest_first(slot)
    }
}
