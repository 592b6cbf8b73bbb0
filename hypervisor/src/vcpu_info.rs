//! A vCPU's `vcpu_info` in its domain's shared-info page: the virtual interrupt flag
//! (`evtchn_upcall_mask`), the pending-upcall flag, and the published CR2.

use crate::domain::Domain;
use crate::mm::PhysMem;
use core::mem::offset_of;
use pv_abi::arch_x86_64::ArchVcpuInfo;
use pv_abi::xen::{SharedInfo, VcpuInfo};

/// The `vcpu_info` of vCPU 0 of a domain, reached by machine address.
pub struct VcpuInfoRef<'a, M: PhysMem> {
    mem: &'a M,
    base: u64,
}

impl<'a, M: PhysMem> VcpuInfoRef<'a, M> {
    /// vCPU 0's slot in `domain`'s shared-info page (a frame the domain owns).
    pub fn of(mem: &'a M, domain: &Domain) -> Self {
        VcpuInfoRef {
            mem,
            base: domain.shared_info.addr() + offset_of!(SharedInfo, vcpu_info) as u64,
        }
    }

    fn byte(&self, offset: usize) -> u8 {
        let mut b = [0u8];
        self.mem.read(self.base + offset as u64, &mut b);
        b[0]
    }

    /// Whether event delivery is masked (the guest's virtual "interrupts off").
    pub fn upcall_mask(&self) -> bool {
        self.byte(offset_of!(VcpuInfo, evtchn_upcall_mask)) != 0
    }

    /// Sets or clears the event mask.
    pub fn set_upcall_mask(&self, masked: bool) {
        let offset = offset_of!(VcpuInfo, evtchn_upcall_mask) as u64;
        self.mem.write(self.base + offset, &[u8::from(masked)]);
    }

    /// Whether an upcall is pending.
    pub fn upcall_pending(&self) -> bool {
        self.byte(offset_of!(VcpuInfo, evtchn_upcall_pending)) != 0
    }

    /// Publishes the faulting address of a page fault (`arch.cr2`).
    pub fn set_cr2(&self, cr2: u64) {
        let offset = (offset_of!(VcpuInfo, arch) + offset_of!(ArchVcpuInfo, cr2)) as u64;
        self.mem.write_u64(self.base + offset, cr2);
    }

    /// Reads the published CR2.
    pub fn cr2(&self) -> u64 {
        let offset = (offset_of!(VcpuInfo, arch) + offset_of!(ArchVcpuInfo, cr2)) as u64;
        self.mem.read_u64(self.base + offset)
    }
}
