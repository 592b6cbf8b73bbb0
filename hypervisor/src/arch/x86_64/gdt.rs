//! The GDT, laid out the way Xen's x86_64 PV guests expect: the hypervisor's and the
//! flat ring-3 selectors sit in the last pages (0xe008.., `FLAT_RING3_CS64` = 0xe033),
//! leaving the first 14 pages for guest descriptors (set_gdt comes later: it must refuse
//! 32-bit code descriptors while compatibility-mode `syscall` is a #UD, and descriptors
//! with a base other than 0, or load the GS base back on every mode switch; see
//! `RING3_CS32`).

use core::cell::UnsafeCell;
use x86_64::structures::tss::TaskStateSegment;

/// Ring-0 64-bit code selector (Xen's `__HYPERVISOR_CS`).
pub const HYPERVISOR_CS: u16 = 0xe008;
/// Ring-0 data selector (Xen's `__HYPERVISOR_DS`).
pub const HYPERVISOR_DS: u16 = 0xe010;
/// Xen's 32-bit guest code selector (`FLAT_RING3_CS32`): here only the base STAR gives
/// `sysretq` (which loads CS = base + 16 and SS = base + 8 without reading the GDT). Its
/// descriptor is left empty: guests run 64-bit code only (`HYPERVISOR_iret` refuses any
/// other CS), and a usable 32-bit code segment would let any ring-3 code reach
/// compatibility mode and its `syscall` (CSTAR), with nothing gained. A far transfer to
/// it raises #GP, reflected to the guest like any other. (The other flat descriptors all
/// have base 0, which the GS-base shortcut in `machine::load_hardware` relies on.)
pub const RING3_CS32: u16 = 0xe023;
/// Guest data/stack selector (`FLAT_RING3_SS64`).
pub const RING3_SS: u16 = 0xe02b;
/// Guest 64-bit code selector (`FLAT_RING3_CS64`).
pub const RING3_CS64: u16 = 0xe033;
/// This CPU's TSS.
pub const TSS_SELECTOR: u16 = 0xe040;

const ENTRIES: usize = 8192;

const CODE64_RING0: u64 = 0x00af_9a00_0000_ffff;
const DATA_RING0: u64 = 0x00cf_9200_0000_ffff;
const DATA_RING3: u64 = 0x00cf_f200_0000_ffff;
const CODE64_RING3: u64 = 0x00af_fa00_0000_ffff;

#[repr(C, align(4096))]
struct Gdt([u64; ENTRIES]);

struct Tables {
    gdt: UnsafeCell<Gdt>,
    tss: UnsafeCell<TaskStateSegment>,
}

// SAFETY: written once on CPU 0 during boot, before any other use.
unsafe impl Sync for Tables {}

/// All zero until `init` fills them in, so that the 68 KB are `.bss`, not in the image
/// (`TaskStateSegment::new` sets the I/O map base, which `init` sets anyway).
// Second in `.bss`, after the per-CPU block (link.ld).
#[unsafe(link_section = ".bss.hv_hot.tables")]
static TABLES: Tables = Tables {
    gdt: UnsafeCell::new(Gdt([0; ENTRIES])),
    // SAFETY: a TSS is plain integers (stack pointers, the I/O map base, reserved
    // words), for which all zero is a valid value.
    tss: UnsafeCell::new(unsafe { core::mem::zeroed() }),
};

/// Builds the GDT and TSS, loads them and reloads every segment register.
pub fn init(stacks: super::percpu::CpuStacks) {
    // SAFETY: boot-time, single CPU, nothing else references the tables yet.
    let (gdt, tss) = unsafe { (&mut (*TABLES.gdt.get()).0, &mut *TABLES.tss.get()) };
    tss.privilege_stack_table[0] = x86_64::VirtAddr::new(stacks.stack_top);
    for (slot, top) in stacks.ist_tops.iter().enumerate() {
        tss.interrupt_stack_table[slot] = x86_64::VirtAddr::new(*top);
    }
    // No I/O bitmap: every port access from ring 3 faults.
    tss.iomap_base = core::mem::size_of::<TaskStateSegment>() as u16;

    let index = |selector: u16| usize::from(selector >> 3);
    gdt[index(HYPERVISOR_CS)] = CODE64_RING0;
    gdt[index(HYPERVISOR_DS)] = DATA_RING0;
    gdt[index(RING3_SS)] = DATA_RING3;
    gdt[index(RING3_CS64)] = CODE64_RING3;
    let base = tss as *const TaskStateSegment as u64;
    let limit = (core::mem::size_of::<TaskStateSegment>() - 1) as u64;
    gdt[index(TSS_SELECTOR)] = limit
        | ((base & 0xff_ffff) << 16)
        | (0x89 << 40) // present, 64-bit available TSS
        | ((base >> 24) & 0xff) << 56;
    gdt[index(TSS_SELECTOR) + 1] = base >> 32;

    let pointer = x86_64::structures::DescriptorTablePointer {
        limit: (ENTRIES * 8 - 1) as u16,
        base: x86_64::VirtAddr::new(gdt.as_ptr() as u64),
    };
    // SAFETY: the GDT is static and holds the selectors loaded right after; the far
    // return reloads CS with the new 64-bit ring-0 code segment.
    unsafe {
        x86_64::instructions::tables::lgdt(&pointer);
        core::arch::asm!(
            "push {cs}",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "retfq",
            "2:",
            "mov ss, {ds:x}",
            cs = in(reg) u64::from(HYPERVISOR_CS),
            ds = in(reg) HYPERVISOR_DS,
            tmp = out(reg) _,
        );
        core::arch::asm!("ltr {0:x}", in(reg) TSS_SELECTOR, options(nostack));
    }
}
