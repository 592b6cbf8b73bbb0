//! A vCPU's `vcpu_info` in its domain's shared-info page: the virtual interrupt flag
//! (`evtchn_upcall_mask`), the pending-upcall flag, and the published CR2.

use crate::domain::Domain;
use crate::mm::PhysMem;
use core::mem::offset_of;
use pv_abi::arch_x86_64::ArchVcpuInfo;
use pv_abi::xen::{SharedInfo, VcpuInfo, VcpuTimeInfo};
use zerocopy::{FromZeros, IntoBytes};

/// Machine address of vCPU `vcpu`'s slot in the shared-info page at `shared_info`.
pub fn shared_slot(shared_info: crate::mm::Mfn, vcpu: u32) -> u64 {
    shared_info.addr()
        + offset_of!(SharedInfo, vcpu_info) as u64
        + u64::from(vcpu) * core::mem::size_of::<VcpuInfo>() as u64
}

/// One vCPU's `vcpu_info`, reached by machine address.
pub struct VcpuInfoRef<'a, M: PhysMem> {
    mem: &'a M,
    base: u64,
}

impl<'a, M: PhysMem> VcpuInfoRef<'a, M> {
    /// The `vcpu_info` of `domain`'s active vCPU (`domain.vcpu`): its slot in the
    /// shared-info page, or the area it registered (frames the domain owns).
    pub fn of(mem: &'a M, domain: &Domain) -> Self {
        VcpuInfoRef {
            mem,
            base: domain.vcpu.vcpu_info_addr(domain.shared_info),
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

    /// The `vcpu_info` at machine address `base` (vCPU `n` of the shared-info page, see
    /// [`shared_slot`], or an area registered with VCPUOP_register_vcpu_info).
    #[inline]
    pub fn at(mem: &'a M, base: u64) -> Self {
        VcpuInfoRef { mem, base }
    }

    /// Sets `evtchn_upcall_pending`; returns whether it was set already.
    pub fn mark_upcall_pending(&self) -> bool {
        // The pending byte is the lowest of the first 8-byte word (vcpu_info is aligned).
        let offset = offset_of!(VcpuInfo, evtchn_upcall_pending) as u64;
        self.mem.test_and_set_bit(self.base + offset, 0)
    }

    /// Sets bit `word` of `evtchn_pending_sel`; returns whether it was set already.
    pub fn test_and_set_selector(&self, word: u32) -> bool {
        let offset = offset_of!(VcpuInfo, evtchn_pending_sel) as u64;
        self.mem.test_and_set_bit(self.base + offset, word % 64)
    }

    /// The pending selector.
    pub fn selector(&self) -> u64 {
        self.mem
            .read_u64(self.base + offset_of!(VcpuInfo, evtchn_pending_sel) as u64)
    }

    /// Whether an upcall should be delivered now: one is pending and events are not
    /// masked (Xen's `local_events_need_delivery`).
    pub fn needs_delivery(&self) -> bool {
        self.upcall_pending() && !self.upcall_mask()
    }

    /// Publishes new system-time parameters under the version seqlock: the version turns
    /// odd, the fields change, the version turns even again.
    pub fn write_time(&self, time: &VcpuTimeInfo) {
        let base = self.base + offset_of!(VcpuInfo, time) as u64;
        let version_at = base + offset_of!(VcpuTimeInfo, version) as u64;
        let mut version = [0u8; 4];
        self.mem.read(version_at, &mut version);
        let version = u32::from_le_bytes(version);
        let odd = version.wrapping_add(1) | 1;
        self.mem.write(version_at, &odd.to_le_bytes());
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        let body = &time.as_bytes()[4..];
        self.mem.write(version_at + 4, body);
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        self.mem
            .write(version_at, &odd.wrapping_add(1).to_le_bytes());
    }

    /// Reads the published system-time parameters.
    pub fn time(&self) -> VcpuTimeInfo {
        let mut time = VcpuTimeInfo::new_zeroed();
        self.mem.read(
            self.base + offset_of!(VcpuInfo, time) as u64,
            time.as_mut_bytes(),
        );
        time
    }

    /// Reads the published CR2.
    pub fn cr2(&self) -> u64 {
        let offset = (offset_of!(VcpuInfo, arch) + offset_of!(ArchVcpuInfo, cr2)) as u64;
        self.mem.read_u64(self.base + offset)
    }
}
