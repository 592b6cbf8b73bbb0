//! The IDT: exceptions 0..31, the legacy PIC's vectors 32..47 and the local APIC's
//! timer and spurious vectors, all into the common stubs of `entry.S`. NMI, #DF and
//! #MC run on their own stacks.

use core::cell::UnsafeCell;

unsafe extern "C" {
    static exception_stub_table: [u64; 48];
    fn exception_stub_128();
    fn exception_stub_240();
    fn exception_stub_255();
}

/// Vectors guest user code may raise with `int` directly (as on Xen): `int3`, `into`
/// and the conventional system-call vector. Every other `int $n` faults (#GP) and is
/// checked against the guest's virtual DPL.
const USER_VECTORS: [usize; 3] = [3, 4, 0x80];

const GATE_INTERRUPT: u64 = 0xe; // interrupts stay off in the handler
const PRESENT: u64 = 1 << 47;

#[repr(C, align(4096))]
struct Idt([[u64; 2]; 256]);

struct IdtCell(UnsafeCell<Idt>);
// SAFETY: written once on CPU 0 during boot.
unsafe impl Sync for IdtCell {}

static IDT: IdtCell = IdtCell(UnsafeCell::new(Idt([[0; 2]; 256])));

fn gate(handler: u64, ist: u64, dpl: u64) -> [u64; 2] {
    let low = (handler & 0xffff)
        | (u64::from(super::gdt::HYPERVISOR_CS) << 16)
        | (ist << 32)
        | (GATE_INTERRUPT << 40)
        | (dpl << 45)
        | PRESENT
        | ((handler >> 16) & 0xffff) << 48;
    [low, handler >> 32]
}

/// Fills and loads the IDT.
pub fn init() {
    // SAFETY: the stub table is defined in entry.S with 48 entries.
    let stubs = unsafe { &exception_stub_table };
    // SAFETY: boot-time, single CPU.
    let idt = unsafe { &mut (*IDT.0.get()).0 };
    for (vector, &stub) in stubs.iter().enumerate() {
        let ist = match vector {
            2 => 1,  // NMI
            8 => 2,  // double fault
            18 => 3, // machine check
            _ => 0,
        };
        let dpl = if USER_VECTORS.contains(&vector) { 3 } else { 0 };
        idt[vector] = gate(stub, ist, dpl);
    }
    idt[0x80] = gate(exception_stub_128 as *const () as u64, 0, 3);
    idt[super::lapic::TIMER_VECTOR as usize] = gate(exception_stub_240 as *const () as u64, 0, 0);
    idt[super::lapic::SPURIOUS_VECTOR as usize] =
        gate(exception_stub_255 as *const () as u64, 0, 0);
    let pointer = x86_64::structures::DescriptorTablePointer {
        limit: (core::mem::size_of::<Idt>() - 1) as u16,
        base: x86_64::VirtAddr::new(idt.as_ptr() as u64),
    };
    // SAFETY: the IDT is static and every present gate points at a stub in entry.S.
    unsafe { x86_64::instructions::tables::lidt(&pointer) };
}

/// Remaps the legacy 8259 PICs to vectors 32..47 and masks every line: the hypervisor
/// takes no legacy interrupt (its timer comes with the scheduler).
pub fn quiesce_pic() {
    use x86_64::instructions::port::Port;
    let sequence: [(u16, u8); 10] = [
        (0x20, 0x11),
        (0xa0, 0x11),
        (0x21, 32),
        (0xa1, 40),
        (0x21, 4),
        (0xa1, 2),
        (0x21, 1),
        (0xa1, 1),
        (0x21, 0xff),
        (0xa1, 0xff),
    ];
    for (port, value) in sequence {
        // SAFETY: the PICs belong to the hypervisor; this is the standard init sequence.
        unsafe { Port::<u8>::new(port).write(value) };
    }
}
