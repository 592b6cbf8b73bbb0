//! The real machine behind the library's `Mmu` (TLB, CR3) and emulation `Hardware`
//! (ports, CPUID) traits.

use crate::arch::x86_64::{self as x86, cpu};
use hypervisor::emulate::OperandSize;
use hypervisor::mm::Mfn;
use hypervisor::paging::Mmu;
use hypervisor::traps::emulate::{Hardware, Ports};
use x86_64::instructions::port::Port;

/// This CPU, on behalf of the running vCPU.
pub struct Machine {
    /// The root most recently loaded into CR3 through `load_root`, if any.
    pub loaded_root: Option<Mfn>,
}

/// The hypervisor's L4 entries, read once at boot ([`remember_hypervisor_l4`]; they never
/// change after).
static HYPERVISOR_L4: spin::Once<[(usize, u64); 2]> = spin::Once::new();

/// Records the hypervisor's L4 entries, which every validated guest L4 gets: at boot,
/// before any domain is built, so that reading them later is a plain load (the
/// hypercall fast path reaches that read, and must reach no initialisation code: its
/// SSE check follows every call).
pub fn remember_hypervisor_l4() -> &'static [(usize, u64); 2] {
    HYPERVISOR_L4.call_once(x86::hypervisor_l4_entries)
}

impl Machine {
    /// The CPU as it is now (made on every hypercall: nothing to compute).
    pub fn new() -> Machine {
        Machine { loaded_root: None }
    }
}

impl Mmu for Machine {
    fn flush_all(&mut self) -> bool {
        cpu::flush_tlb_all();
        true
    }

    fn flush_va(&mut self, va: u64) {
        cpu::invlpg(va);
    }

    fn load_root(&mut self, root: Mfn) -> bool {
        // SAFETY: the paging engine hands over only validated, pinned L4 tables of the
        // running domain, which carry the hypervisor's slots.
        unsafe { cpu::write_cr3(root.addr()) };
        self.loaded_root = Some(root);
        true
    }

    fn hypervisor_l4(&self) -> &[(usize, u64)] {
        HYPERVISOR_L4
            .get()
            .expect("the hypervisor's L4 entries are recorded at boot")
    }

    fn undecodable_bits(&self) -> u64 {
        cpu::undecodable_address_bits()
    }
}

/// The machine's I/O ports (no state: the hypercall context holds these beside a
/// [`Machine`] lent out as its `Mmu`).
pub struct IoPorts;

impl Ports for IoPorts {
    fn port_in(&mut self, port: u16, size: OperandSize) -> u32 {
        // SAFETY: the caller (trapped `in`/`out`, or the port-I/O extension hypercall)
        // checked `port_allowed`; the hypervisor's own ports are never allowed.
        unsafe {
            match size {
                OperandSize::Byte => u32::from(Port::<u8>::new(port).read()),
                OperandSize::Word => u32::from(Port::<u16>::new(port).read()),
                _ => Port::<u32>::new(port).read(),
            }
        }
    }

    fn port_out(&mut self, port: u16, size: OperandSize, value: u32) {
        // SAFETY: as in `port_in`.
        unsafe {
            match size {
                OperandSize::Byte => Port::<u8>::new(port).write(value as u8),
                OperandSize::Word => Port::<u16>::new(port).write(value as u16),
                _ => Port::<u32>::new(port).write(value),
            }
        }
    }
}

impl Ports for Machine {
    fn port_in(&mut self, port: u16, size: OperandSize) -> u32 {
        IoPorts.port_in(port, size)
    }

    fn port_out(&mut self, port: u16, size: OperandSize, value: u32) {
        IoPorts.port_out(port, size, value);
    }
}

impl Hardware for Machine {
    fn mmu(&mut self) -> &mut dyn Mmu {
        self
    }

    fn cpuid(&mut self, leaf: u32, subleaf: u32) -> [u32; 4] {
        let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
        [r.eax, r.ebx, r.ecx, r.edx]
    }
}
