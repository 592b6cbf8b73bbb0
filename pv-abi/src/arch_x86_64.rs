//! The x86_64 part of the PV interface (`xen/arch-x86/xen.h` and
//! `xen/arch-x86/xen-x86_64.h`): the flat segment selectors, the hypervisor's reserved
//! virtual range, the `iret` frame, trap-table entries, the register file and the
//! VCPU context used by `VCPUOP_initialise`.
//!
//! A 64-bit PV guest kernel runs in ring 3, like its processes. It uses the flat
//! selectors below (which live in the hypervisor-owned tail of every GDT) and enters the
//! hypervisor with `syscall`: number in `rax`, arguments in `rdi`, `rsi`, `rdx`, `r10`,
//! `r8`, result in `rax`; `rcx` and `r11` are clobbered by the instruction.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// 32-bit ring 3 code selector (GDT entry 260).
pub const FLAT_RING3_CS32: u16 = 0xe023;
/// 64-bit ring 3 code selector (GDT entry 262).
pub const FLAT_RING3_CS64: u16 = 0xe033;
/// 32-bit ring 3 data selector (GDT entry 261).
pub const FLAT_RING3_DS32: u16 = 0xe02b;
/// 64-bit ring 3 data selector: the null selector.
pub const FLAT_RING3_DS64: u16 = 0x0000;
/// 32-bit ring 3 stack selector (GDT entry 261).
pub const FLAT_RING3_SS32: u16 = 0xe02b;
/// 64-bit ring 3 stack selector (GDT entry 261).
pub const FLAT_RING3_SS64: u16 = 0xe02b;

/// Guest kernel 64-bit data selector.
pub const FLAT_KERNEL_DS64: u16 = FLAT_RING3_DS64;
/// Guest kernel 32-bit data selector.
pub const FLAT_KERNEL_DS32: u16 = FLAT_RING3_DS32;
/// Guest kernel data selector.
pub const FLAT_KERNEL_DS: u16 = FLAT_KERNEL_DS64;
/// Guest kernel 64-bit code selector.
pub const FLAT_KERNEL_CS64: u16 = FLAT_RING3_CS64;
/// Guest kernel 32-bit code selector.
pub const FLAT_KERNEL_CS32: u16 = FLAT_RING3_CS32;
/// Guest kernel code selector.
pub const FLAT_KERNEL_CS: u16 = FLAT_KERNEL_CS64;
/// Guest kernel 64-bit stack selector.
pub const FLAT_KERNEL_SS64: u16 = FLAT_RING3_SS64;
/// Guest kernel 32-bit stack selector.
pub const FLAT_KERNEL_SS32: u16 = FLAT_RING3_SS32;
/// Guest kernel stack selector.
pub const FLAT_KERNEL_SS: u16 = FLAT_KERNEL_SS64;

/// Guest user 64-bit data selector.
pub const FLAT_USER_DS64: u16 = FLAT_RING3_DS64;
/// Guest user 32-bit data selector.
pub const FLAT_USER_DS32: u16 = FLAT_RING3_DS32;
/// Guest user data selector.
pub const FLAT_USER_DS: u16 = FLAT_USER_DS64;
/// Guest user 64-bit code selector.
pub const FLAT_USER_CS64: u16 = FLAT_RING3_CS64;
/// Guest user 32-bit code selector.
pub const FLAT_USER_CS32: u16 = FLAT_RING3_CS32;
/// Guest user code selector.
pub const FLAT_USER_CS: u16 = FLAT_USER_CS64;
/// Guest user 64-bit stack selector.
pub const FLAT_USER_SS64: u16 = FLAT_RING3_SS64;
/// Guest user 32-bit stack selector.
pub const FLAT_USER_SS32: u16 = FLAT_RING3_SS32;
/// Guest user stack selector.
pub const FLAT_USER_SS: u16 = FLAT_USER_SS64;

/// Start of the virtual range reserved for the hypervisor (L4 slot 256).
pub const HYPERVISOR_VIRT_START: u64 = 0xFFFF_8000_0000_0000;
/// End (exclusive) of the hypervisor's reserved range (L4 slot 272).
pub const HYPERVISOR_VIRT_END: u64 = 0xFFFF_8800_0000_0000;
/// Start of the read-only machine-to-phys table mapped into every PV guest.
pub const MACH2PHYS_VIRT_START: u64 = 0xFFFF_8000_0000_0000;
/// End (exclusive) of the machine-to-phys table.
pub const MACH2PHYS_VIRT_END: u64 = 0xFFFF_8040_0000_0000;
/// Number of 8-byte entries in the machine-to-phys table.
pub const MACH2PHYS_NR_ENTRIES: u64 = (MACH2PHYS_VIRT_END - MACH2PHYS_VIRT_START) >> 3;

/// First GDT frame owned by the hypervisor; a guest GDT may use frames below it.
pub const FIRST_RESERVED_GDT_PAGE: u32 = 14;
/// Byte offset of the hypervisor-owned part of the GDT.
pub const FIRST_RESERVED_GDT_BYTE: u32 = FIRST_RESERVED_GDT_PAGE * 4096;
/// First GDT entry owned by the hypervisor.
pub const FIRST_RESERVED_GDT_ENTRY: u32 = FIRST_RESERVED_GDT_BYTE / 8;

/// VCPUs whose [`crate::xen::VcpuInfo`] lives in the shared-info page.
pub const XEN_LEGACY_MAX_VCPUS: usize = 32;

/// `set_segment_base`: set the FS base.
pub const SEGBASE_FS: u32 = 0;
/// `set_segment_base`: set the user-mode GS base.
pub const SEGBASE_GS_USER: u32 = 1;
/// `set_segment_base`: set the kernel-mode GS base.
pub const SEGBASE_GS_KERNEL: u32 = 2;
/// `set_segment_base`: load the user GS selector from `base[15:0]`.
pub const SEGBASE_GS_USER_SEL: u32 = 3;

/// [`VcpuGuestContext::flags`]: the FPU context is valid.
pub const VGCF_I387_VALID: u64 = 1 << 0;
/// [`VcpuGuestContext::flags`]: the VCPU is in kernel mode.
pub const VGCF_IN_KERNEL: u64 = 1 << 2;
/// [`VcpuGuestContext::flags`]: delivering the failsafe callback masks events.
pub const VGCF_FAILSAFE_DISABLES_EVENTS: u64 = 1 << 3;
/// [`VcpuGuestContext::flags`]: delivering the syscall callback masks events.
pub const VGCF_SYSCALL_DISABLES_EVENTS: u64 = 1 << 4;
/// [`VcpuGuestContext::flags`]: the VCPU is online.
pub const VGCF_ONLINE: u64 = 1 << 5;
/// [`IretContext::flags`]: the frame came from `syscall`; return like `sysret`
/// (restore `rax`, `rip`, `rflags`, `rsp`; discard `r11`, `rcx`, `cs`, `ss`).
pub const VGCF_IN_SYSCALL: u64 = 1 << 8;

/// [`TrapInfo::flags`]: mask of the privilege level allowed to raise the vector with a
/// software interrupt (0: nobody, 1 or 2: the kernel, 3: everyone).
pub const TI_DPL_MASK: u8 = 3;
/// [`TrapInfo::flags`]: mask events (clear the virtual interrupt flag) on entry.
pub const TI_IF: u8 = 4;

/// One entry of the virtual IDT (`struct trap_info`), as passed to `set_trap_table`.
///
/// The array ends with an entry whose `address` is zero.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct TrapInfo {
    /// Exception or interrupt vector.
    pub vector: u8,
    /// DPL in bits 1:0, [`TI_IF`] in bit 2.
    pub flags: u8,
    /// Code selector of the handler.
    pub cs: u16,
    /// Padding.
    pub pad0: u32,
    /// Handler address; zero terminates a table.
    pub address: u64,
}
const _: () = assert!(size_of::<TrapInfo>() == 16);

impl TrapInfo {
    /// An entry for `vector` at `address` in segment `cs`, callable by software at
    /// privilege `dpl` (only bits 1:0 are used), masking events on entry if
    /// `mask_events`.
    pub const fn new(vector: u8, dpl: u8, mask_events: bool, cs: u16, address: u64) -> Self {
        let flags = (dpl & TI_DPL_MASK) | if mask_events { TI_IF } else { 0 };
        TrapInfo {
            vector,
            flags,
            cs,
            pad0: 0,
            address,
        }
    }
    /// The all-zero terminating entry.
    pub const TERMINATOR: TrapInfo = TrapInfo {
        vector: 0,
        flags: 0,
        cs: 0,
        pad0: 0,
        address: 0,
    };
    /// The privilege level allowed to raise this vector in software (`TI_GET_DPL`).
    pub const fn dpl(&self) -> u8 {
        self.flags & TI_DPL_MASK
    }
    /// Whether delivery masks events (`TI_GET_IF`).
    pub const fn masks_events(&self) -> bool {
        self.flags & TI_IF != 0
    }
    /// Whether this is a terminating entry (`address == 0`).
    pub const fn is_terminator(&self) -> bool {
        self.address == 0
    }
}

/// The frame the `iret` hypercall pops from the guest kernel stack
/// (`struct iret_context`), lowest address first: `rsp` at the hypercall points at
/// `rax`.
///
/// The saved `cs` selects the mode to return to: an RPL of 0..2 returns to guest kernel
/// mode, 3 to guest user mode. With [`VGCF_IN_SYSCALL`] in `flags` the return behaves
/// like `sysret`: `rcx` comes back holding the return address and `r11` the returned
/// RFLAGS (Xen returns by `sysretq` then), not the frame's `rcx` and `r11`.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct IretContext {
    /// Restored `rax`.
    pub rax: u64,
    /// Restored `r11`.
    pub r11: u64,
    /// Restored `rcx`.
    pub rcx: u64,
    /// `VGCF_*` flags (only [`VGCF_IN_SYSCALL`] is meaningful).
    pub flags: u64,
    /// Return address.
    pub rip: u64,
    /// Return code selector.
    pub cs: u64,
    /// Return flags.
    pub rflags: u64,
    /// Return stack pointer.
    pub rsp: u64,
    /// Return stack selector.
    pub ss: u64,
}
const _: () = assert!(size_of::<IretContext>() == 72);

/// The guest register file (`struct cpu_user_regs`), in the order Xen saves it.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct CpuUserRegs {
    /// r15.
    pub r15: u64,
    /// r14.
    pub r14: u64,
    /// r13.
    pub r13: u64,
    /// r12.
    pub r12: u64,
    /// rbp.
    pub rbp: u64,
    /// rbx.
    pub rbx: u64,
    /// r11.
    pub r11: u64,
    /// r10.
    pub r10: u64,
    /// r9.
    pub r9: u64,
    /// r8.
    pub r8: u64,
    /// rax.
    pub rax: u64,
    /// rcx.
    pub rcx: u64,
    /// rdx.
    pub rdx: u64,
    /// rsi.
    pub rsi: u64,
    /// rdi.
    pub rdi: u64,
    /// Exception error code (hypervisor-private).
    pub error_code: u32,
    /// Exception vector (hypervisor-private).
    pub entry_vector: u32,
    /// rip.
    pub rip: u64,
    /// Code selector.
    pub cs: u16,
    /// Padding.
    pub pad0: [u16; 1],
    /// Event mask saved on delivery of a bounce frame.
    pub saved_upcall_mask: u8,
    /// Padding.
    pub pad1: [u8; 3],
    /// rflags (`IF` reflects the inverse of `saved_upcall_mask`).
    pub rflags: u64,
    /// rsp.
    pub rsp: u64,
    /// Stack selector.
    pub ss: u16,
    /// Padding.
    pub pad2: [u16; 3],
    /// es.
    pub es: u16,
    /// Padding.
    pub pad3: [u16; 3],
    /// ds.
    pub ds: u16,
    /// Padding.
    pub pad4: [u16; 3],
    /// fs.
    pub fs: u16,
    /// Padding.
    pub pad5: [u16; 3],
    /// gs.
    pub gs: u16,
    /// Padding.
    pub pad6: [u16; 3],
}
const _: () = assert!(size_of::<CpuUserRegs>() == 200);

/// Number of [`TrapInfo`] slots in a [`VcpuGuestContext`].
pub const VGC_TRAP_CTXT_ENTRIES: usize = 256;

/// A complete PV VCPU state (`struct vcpu_guest_context`), passed to
/// `VCPUOP_initialise` to start a secondary VCPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct VcpuGuestContext {
    /// FXSAVE image of the FPU state.
    pub fpu_ctxt: [u8; 512],
    /// `VGCF_*` flags.
    pub flags: u64,
    /// General registers.
    pub user_regs: CpuUserRegs,
    /// Virtual IDT.
    pub trap_ctxt: [TrapInfo; VGC_TRAP_CTXT_ENTRIES],
    /// LDT linear base.
    pub ldt_base: u64,
    /// LDT entry count.
    pub ldt_ents: u64,
    /// GDT machine frames.
    pub gdt_frames: [u64; 16],
    /// GDT entry count.
    pub gdt_ents: u64,
    /// Kernel stack selector (virtual TSS).
    pub kernel_ss: u64,
    /// Kernel stack pointer (virtual TSS).
    pub kernel_sp: u64,
    /// CR0..CR7; `ctrlreg[3]` is the kernel L4 and `ctrlreg[1]` the user L4, both as
    /// [`xen_pfn_to_cr3`] values.
    pub ctrlreg: [u64; 8],
    /// DR0..DR7.
    pub debugreg: [u64; 8],
    /// Event callback entry point.
    pub event_callback_eip: u64,
    /// Failsafe callback entry point.
    pub failsafe_callback_eip: u64,
    /// Syscall callback entry point.
    pub syscall_callback_eip: u64,
    /// Bitmap of enabled `VMASST_TYPE_*`.
    pub vm_assist: u64,
    /// FS base.
    pub fs_base: u64,
    /// Kernel GS base.
    pub gs_base_kernel: u64,
    /// User GS base.
    pub gs_base_user: u64,
}
const _: () = assert!(size_of::<VcpuGuestContext>() == 5168);

/// The folded CR3 value for a page-table frame number (`xen_pfn_to_cr3`).
pub const fn xen_pfn_to_cr3(pfn: u64) -> u64 {
    pfn << 12
}

/// The frame number in a folded CR3 value (`xen_cr3_to_pfn`).
pub const fn xen_cr3_to_pfn(cr3: u64) -> u64 {
    cr3 >> 12
}

/// Architecture part of [`crate::xen::VcpuInfo`] (`struct arch_vcpu_info`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct ArchVcpuInfo {
    /// Virtual CR2: the faulting address of the last page fault delivered.
    pub cr2: u64,
    /// Padding (keeps `VcpuInfo` at 64 bytes).
    pub pad: u64,
}
const _: () = assert!(size_of::<ArchVcpuInfo>() == 16);

/// Architecture part of [`crate::xen::SharedInfo`] (`struct arch_shared_info`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct ArchSharedInfo {
    /// Number of valid entries in the P2M.
    pub max_pfn: u64,
    /// Frame of the list of frames listing the P2M frames (0: not set up, all ones:
    /// unusable, use `p2m_vaddr`).
    pub pfn_to_mfn_frame_list_list: u64,
    /// Reason bits of the last NMI.
    pub nmi_reason: u64,
    /// Folded CR3 of the address space in which `p2m_vaddr` is valid (0: unused).
    pub p2m_cr3: u64,
    /// Virtual address of the linear P2M list.
    pub p2m_vaddr: u64,
    /// Incremented around every change of the P2M mappings (odd while changing).
    pub p2m_generation: u64,
}
const _: () = assert!(size_of::<ArchSharedInfo>() == 48);

/// A callback address (`xen_callback_t`): on x86_64 a plain 64-bit address.
pub type XenCallback = u64;

/// Sentinel for "no sub-leaf" in [`XenCpuidLeaf::subleaf`].
pub const XEN_CPUID_NO_SUBLEAF: u32 = 0xffff_ffff;

/// One CPUID leaf in serialised CPU policies (`struct xen_cpuid_leaf`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenCpuidLeaf {
    /// Leaf (eax input).
    pub leaf: u32,
    /// Sub-leaf (ecx input) or [`XEN_CPUID_NO_SUBLEAF`].
    pub subleaf: u32,
    /// eax output.
    pub a: u32,
    /// ebx output.
    pub b: u32,
    /// ecx output.
    pub c: u32,
    /// edx output.
    pub d: u32,
}
const _: () = assert!(size_of::<XenCpuidLeaf>() == 24);

/// One MSR in serialised CPU policies (`struct xen_msr_entry`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenMsrEntry {
    /// MSR index.
    pub idx: u32,
    /// Reserved; zero.
    pub flags: u32,
    /// MSR value.
    pub val: u64,
}
const _: () = assert!(size_of::<XenMsrEntry>() == 16);

/// The byte sequence that makes the hypervisor emulate the following instruction
/// (`XEN_EMULATE_PREFIX`; only `cpuid` is supported): `ud2` followed by `"xen"`.
pub const XEN_EMULATE_PREFIX: [u8; 5] = [0x0f, 0x0b, 0x78, 0x65, 0x6e];

/// The debug console I/O port (the "port E9 hack").
pub const XEN_HVM_DEBUGCONS_IOPORT: u16 = 0xe9;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trap_info_flags() {
        let t = TrapInfo::new(0x80, 3, true, FLAT_KERNEL_CS, 0xffff_ffff_8000_1000);
        assert_eq!(t.dpl(), 3);
        assert!(t.masks_events());
        assert!(!t.is_terminator());
        assert!(TrapInfo::TERMINATOR.is_terminator());
        assert_eq!(TrapInfo::new(14, 7, false, 0, 1).flags, 3);
    }

    #[test]
    fn reserved_range_is_l4_slots_256_to_271() {
        assert_eq!((HYPERVISOR_VIRT_START >> 39) & 511, 256);
        assert_eq!(((HYPERVISOR_VIRT_END - 1) >> 39) & 511, 271);
        assert_eq!(xen_cr3_to_pfn(xen_pfn_to_cr3(0x1234)), 0x1234);
    }
}
