//! The core guest interface (`xen/xen.h`): hypercall numbers, the start-of-day and
//! shared-info pages, page-table update requests, multicalls, virtual IRQs and the
//! special domain ids.
//!
//! Structures are `#[repr(C)]` and byte-exact to the C layout of a 64-bit x86 guest.
//! Where C has implicit padding, the Rust struct names it (`pad0`, ...) so that every
//! byte is a field and the zerocopy traits hold; padding must be written as zero.
//! Where C has a union, the Rust struct holds the widest member as plain integers and
//! offers accessors for the other views (see [`StartInfoConsole`], [`MmuextOp`]).

use core::fmt;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub use crate::arch_x86_64::{ArchSharedInfo, ArchVcpuInfo, TrapInfo, XEN_LEGACY_MAX_VCPUS};

/// Guest physical (or, for a PV guest, machine) frame number (`xen_pfn_t`).
pub type XenPfn = u64;
/// A register-sized unsigned value in shared structures (`xen_ulong_t`).
pub type XenUlong = u64;
/// A domain identifier (`domid_t`).
pub type DomId = u16;

/// The newest `__XEN_INTERFACE_VERSION__` that Xen 4.17's public headers support.
///
/// Guests built against these headers (and this crate) speak this interface version.
pub const XEN_LATEST_INTERFACE_VERSION: u32 = 0x0004_0e00;

// ---------------------------------------------------------------------------------------
// Hypercall numbers
// ---------------------------------------------------------------------------------------

/// A hypercall number (`__HYPERVISOR_*`), the value a guest loads into `rax`.
///
/// The list is Xen 4.17's complete list, including the eight architecture-reserved
/// slots `Arch0..Arch7` (48..55). Numbers 11 and 43..47 are unassigned and have no
/// variant. A hypervisor decodes `rax` with [`Hypercall::try_from`] and answers
/// `-ENOSYS` for an `Err`.
///
/// On x86 Xen uses `Arch0` for the machine-check interface (`__HYPERVISOR_mca`). This
/// project's own extensions live in `Arch7` (see [`crate::ext`]) and are documented as
/// ours in `docs/abi.md`; on Xen they return `-ENOSYS`.
#[repr(u32)]
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Hypercall {
    /// Install the virtual IDT (`set_trap_table`).
    SetTrapTable = 0,
    /// Batch of page-table or M2P updates (`mmu_update`).
    MmuUpdate = 1,
    /// Install a new GDT from guest frames (`set_gdt`).
    SetGdt = 2,
    /// Set the kernel stack used on a ring 3 to kernel transition (`stack_switch`).
    StackSwitch = 3,
    /// Register event, failsafe and syscall entry points (`set_callbacks`).
    SetCallbacks = 4,
    /// Set or clear CR0.TS (`fpu_taskswitch`).
    FpuTaskswitch = 5,
    /// Old scheduler call, superseded by [`Hypercall::SchedOp`] (`sched_op_compat`).
    SchedOpCompat = 6,
    /// Platform (host) management, privileged (`platform_op`).
    PlatformOp = 7,
    /// Write a virtual debug register (`set_debugreg`).
    SetDebugreg = 8,
    /// Read a virtual debug register (`get_debugreg`).
    GetDebugreg = 9,
    /// Write one GDT/LDT descriptor (`update_descriptor`).
    UpdateDescriptor = 10,
    /// Memory reservation and physmap operations (`memory_op`).
    MemoryOp = 12,
    /// Run a batch of hypercalls (`multicall`).
    Multicall = 13,
    /// Write the PTE that maps one virtual address (`update_va_mapping`).
    UpdateVaMapping = 14,
    /// Set the one-shot timer (`set_timer_op`).
    SetTimerOp = 15,
    /// Old event-channel call, superseded by [`Hypercall::EventChannelOp`].
    EventChannelOpCompat = 16,
    /// Version and feature queries (`xen_version`).
    XenVersion = 17,
    /// Hypervisor console read/write (`console_io`).
    ConsoleIo = 18,
    /// Old physdev call, superseded by [`Hypercall::PhysdevOp`].
    PhysdevOpCompat = 19,
    /// Grant-table operations (`grant_table_op`).
    GrantTableOp = 20,
    /// Enable or disable a VM assist (`vm_assist`).
    VmAssist = 21,
    /// [`Hypercall::UpdateVaMapping`] with a foreign domain (`update_va_mapping_otherdomain`).
    UpdateVaMappingOtherdomain = 22,
    /// Return from an exception or event frame (`iret`).
    Iret = 23,
    /// Per-VCPU operations (`vcpu_op`).
    VcpuOp = 24,
    /// Set the FS or GS base (`set_segment_base`).
    SetSegmentBase = 25,
    /// Extended MMU operations: pinning, base pointers, TLB flushes (`mmuext_op`).
    MmuextOp = 26,
    /// Security module operations (`xsm_op`).
    XsmOp = 27,
    /// NMI callback management (`nmi_op`).
    NmiOp = 28,
    /// Scheduler operations (`sched_op`).
    SchedOp = 29,
    /// Callback registration (`callback_op`).
    CallbackOp = 30,
    /// Profiling (`xenoprof_op`).
    XenoprofOp = 31,
    /// Event-channel operations (`event_channel_op`).
    EventChannelOp = 32,
    /// Physical device operations (`physdev_op`).
    PhysdevOp = 33,
    /// HVM operations (`hvm_op`).
    HvmOp = 34,
    /// System control, privileged (`sysctl`).
    Sysctl = 35,
    /// Domain control, privileged (`domctl`).
    Domctl = 36,
    /// Kexec (`kexec_op`).
    KexecOp = 37,
    /// Transcendent memory, removed from Xen (`tmem_op`).
    TmemOp = 38,
    /// Argo inter-domain messaging (`argo_op`).
    ArgoOp = 39,
    /// PMU virtualization (`xenpmu_op`).
    XenpmuOp = 40,
    /// Device-model operations (`dm_op`).
    DmOp = 41,
    /// Hypervisor file system (`hypfs_op`).
    HypfsOp = 42,
    /// Architecture slot 0 (x86: machine check, `mca`).
    Arch0 = 48,
    /// Architecture slot 1.
    Arch1 = 49,
    /// Architecture slot 2.
    Arch2 = 50,
    /// Architecture slot 3.
    Arch3 = 51,
    /// Architecture slot 4.
    Arch4 = 52,
    /// Architecture slot 5.
    Arch5 = 53,
    /// Architecture slot 6.
    Arch6 = 54,
    /// Architecture slot 7: this project's `ext_op` extension ([`crate::ext`]).
    Arch7 = 55,
}

/// Number of 32-byte stubs in a hypercall page (one 4 KiB page).
pub const NR_HYPERCALL_STUBS: usize = 128;
/// Size in bytes of one stub in the hypercall page; stub `n` is at offset `n * 32`.
pub const HYPERCALL_STUB_SIZE: usize = 32;

/// A hypercall number that names no hypercall; the hypervisor answers `-ENOSYS`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct UnknownHypercall(pub u64);

impl core::error::Error for UnknownHypercall {}

impl fmt::Display for UnknownHypercall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown hypercall number {}", self.0)
    }
}

impl Hypercall {
    /// Every hypercall, in ascending order of number.
    pub const ALL: [Hypercall; 50] = [
        Hypercall::SetTrapTable,
        Hypercall::MmuUpdate,
        Hypercall::SetGdt,
        Hypercall::StackSwitch,
        Hypercall::SetCallbacks,
        Hypercall::FpuTaskswitch,
        Hypercall::SchedOpCompat,
        Hypercall::PlatformOp,
        Hypercall::SetDebugreg,
        Hypercall::GetDebugreg,
        Hypercall::UpdateDescriptor,
        Hypercall::MemoryOp,
        Hypercall::Multicall,
        Hypercall::UpdateVaMapping,
        Hypercall::SetTimerOp,
        Hypercall::EventChannelOpCompat,
        Hypercall::XenVersion,
        Hypercall::ConsoleIo,
        Hypercall::PhysdevOpCompat,
        Hypercall::GrantTableOp,
        Hypercall::VmAssist,
        Hypercall::UpdateVaMappingOtherdomain,
        Hypercall::Iret,
        Hypercall::VcpuOp,
        Hypercall::SetSegmentBase,
        Hypercall::MmuextOp,
        Hypercall::XsmOp,
        Hypercall::NmiOp,
        Hypercall::SchedOp,
        Hypercall::CallbackOp,
        Hypercall::XenoprofOp,
        Hypercall::EventChannelOp,
        Hypercall::PhysdevOp,
        Hypercall::HvmOp,
        Hypercall::Sysctl,
        Hypercall::Domctl,
        Hypercall::KexecOp,
        Hypercall::TmemOp,
        Hypercall::ArgoOp,
        Hypercall::XenpmuOp,
        Hypercall::DmOp,
        Hypercall::HypfsOp,
        Hypercall::Arch0,
        Hypercall::Arch1,
        Hypercall::Arch2,
        Hypercall::Arch3,
        Hypercall::Arch4,
        Hypercall::Arch5,
        Hypercall::Arch6,
        Hypercall::Arch7,
    ];

    /// The hypercall number, as loaded into `rax`.
    pub const fn number(self) -> u64 {
        self as u32 as u64
    }

    /// Xen's name for the hypercall, without the `__HYPERVISOR_` prefix
    /// (`"set_trap_table"`).
    pub const fn name(self) -> &'static str {
        match self {
            Hypercall::SetTrapTable => "set_trap_table",
            Hypercall::MmuUpdate => "mmu_update",
            Hypercall::SetGdt => "set_gdt",
            Hypercall::StackSwitch => "stack_switch",
            Hypercall::SetCallbacks => "set_callbacks",
            Hypercall::FpuTaskswitch => "fpu_taskswitch",
            Hypercall::SchedOpCompat => "sched_op_compat",
            Hypercall::PlatformOp => "platform_op",
            Hypercall::SetDebugreg => "set_debugreg",
            Hypercall::GetDebugreg => "get_debugreg",
            Hypercall::UpdateDescriptor => "update_descriptor",
            Hypercall::MemoryOp => "memory_op",
            Hypercall::Multicall => "multicall",
            Hypercall::UpdateVaMapping => "update_va_mapping",
            Hypercall::SetTimerOp => "set_timer_op",
            Hypercall::EventChannelOpCompat => "event_channel_op_compat",
            Hypercall::XenVersion => "xen_version",
            Hypercall::ConsoleIo => "console_io",
            Hypercall::PhysdevOpCompat => "physdev_op_compat",
            Hypercall::GrantTableOp => "grant_table_op",
            Hypercall::VmAssist => "vm_assist",
            Hypercall::UpdateVaMappingOtherdomain => "update_va_mapping_otherdomain",
            Hypercall::Iret => "iret",
            Hypercall::VcpuOp => "vcpu_op",
            Hypercall::SetSegmentBase => "set_segment_base",
            Hypercall::MmuextOp => "mmuext_op",
            Hypercall::XsmOp => "xsm_op",
            Hypercall::NmiOp => "nmi_op",
            Hypercall::SchedOp => "sched_op",
            Hypercall::CallbackOp => "callback_op",
            Hypercall::XenoprofOp => "xenoprof_op",
            Hypercall::EventChannelOp => "event_channel_op",
            Hypercall::PhysdevOp => "physdev_op",
            Hypercall::HvmOp => "hvm_op",
            Hypercall::Sysctl => "sysctl",
            Hypercall::Domctl => "domctl",
            Hypercall::KexecOp => "kexec_op",
            Hypercall::TmemOp => "tmem_op",
            Hypercall::ArgoOp => "argo_op",
            Hypercall::XenpmuOp => "xenpmu_op",
            Hypercall::DmOp => "dm_op",
            Hypercall::HypfsOp => "hypfs_op",
            Hypercall::Arch0 => "arch_0",
            Hypercall::Arch1 => "arch_1",
            Hypercall::Arch2 => "arch_2",
            Hypercall::Arch3 => "arch_3",
            Hypercall::Arch4 => "arch_4",
            Hypercall::Arch5 => "arch_5",
            Hypercall::Arch6 => "arch_6",
            Hypercall::Arch7 => "arch_7",
        }
    }
}

impl TryFrom<u64> for Hypercall {
    type Error = UnknownHypercall;

    fn try_from(nr: u64) -> Result<Self, Self::Error> {
        let hypercall = match nr {
            0 => Hypercall::SetTrapTable,
            1 => Hypercall::MmuUpdate,
            2 => Hypercall::SetGdt,
            3 => Hypercall::StackSwitch,
            4 => Hypercall::SetCallbacks,
            5 => Hypercall::FpuTaskswitch,
            6 => Hypercall::SchedOpCompat,
            7 => Hypercall::PlatformOp,
            8 => Hypercall::SetDebugreg,
            9 => Hypercall::GetDebugreg,
            10 => Hypercall::UpdateDescriptor,
            12 => Hypercall::MemoryOp,
            13 => Hypercall::Multicall,
            14 => Hypercall::UpdateVaMapping,
            15 => Hypercall::SetTimerOp,
            16 => Hypercall::EventChannelOpCompat,
            17 => Hypercall::XenVersion,
            18 => Hypercall::ConsoleIo,
            19 => Hypercall::PhysdevOpCompat,
            20 => Hypercall::GrantTableOp,
            21 => Hypercall::VmAssist,
            22 => Hypercall::UpdateVaMappingOtherdomain,
            23 => Hypercall::Iret,
            24 => Hypercall::VcpuOp,
            25 => Hypercall::SetSegmentBase,
            26 => Hypercall::MmuextOp,
            27 => Hypercall::XsmOp,
            28 => Hypercall::NmiOp,
            29 => Hypercall::SchedOp,
            30 => Hypercall::CallbackOp,
            31 => Hypercall::XenoprofOp,
            32 => Hypercall::EventChannelOp,
            33 => Hypercall::PhysdevOp,
            34 => Hypercall::HvmOp,
            35 => Hypercall::Sysctl,
            36 => Hypercall::Domctl,
            37 => Hypercall::KexecOp,
            38 => Hypercall::TmemOp,
            39 => Hypercall::ArgoOp,
            40 => Hypercall::XenpmuOp,
            41 => Hypercall::DmOp,
            42 => Hypercall::HypfsOp,
            48 => Hypercall::Arch0,
            49 => Hypercall::Arch1,
            50 => Hypercall::Arch2,
            51 => Hypercall::Arch3,
            52 => Hypercall::Arch4,
            53 => Hypercall::Arch5,
            54 => Hypercall::Arch6,
            55 => Hypercall::Arch7,
            _ => return Err(UnknownHypercall(nr)),
        };
        Ok(hypercall)
    }
}

impl fmt::Display for Hypercall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// ---------------------------------------------------------------------------------------
// Virtual interrupts
// ---------------------------------------------------------------------------------------

/// Per-VCPU: timer tick or the one-shot timeout requested with `set_timer_op`.
pub const VIRQ_TIMER: u32 = 0;
/// Per-VCPU: asks the guest to dump debug state.
pub const VIRQ_DEBUG: u32 = 1;
/// Global (hardware domain): input arrived on the hypervisor's emergency console.
pub const VIRQ_CONSOLE: u32 = 2;
/// Global (hardware domain): some domain hit an exceptional event (crash, ...).
pub const VIRQ_DOM_EXC: u32 = 3;
/// Global (hardware domain): trace buffers hold records.
pub const VIRQ_TBUF: u32 = 4;
/// Global (hardware domain): a domain paused for a debugger.
pub const VIRQ_DEBUGGER: u32 = 6;
/// Per-VCPU: a profiling sample is available.
pub const VIRQ_XENOPROF: u32 = 7;
/// Global (hardware domain): the hypervisor console ring has new bytes.
pub const VIRQ_CON_RING: u32 = 8;
/// Global (hardware domain): a physical CPU changed state.
pub const VIRQ_PCPU_STATE: u32 = 9;
/// Global (hardware domain): a memory event occurred.
pub const VIRQ_MEM_EVENT: u32 = 10;
/// Global: an Argo message arrived.
pub const VIRQ_ARGO: u32 = 11;
/// Global (hardware domain): the hypervisor is low on heap memory.
pub const VIRQ_ENOMEM: u32 = 12;
/// Per-VCPU: performance counter interrupt.
pub const VIRQ_XENPMU: u32 = 13;
/// Architecture-specific VIRQ 0.
pub const VIRQ_ARCH_0: u32 = 16;
/// Architecture-specific VIRQ 1.
pub const VIRQ_ARCH_1: u32 = 17;
/// Architecture-specific VIRQ 2.
pub const VIRQ_ARCH_2: u32 = 18;
/// Architecture-specific VIRQ 3.
pub const VIRQ_ARCH_3: u32 = 19;
/// Architecture-specific VIRQ 4.
pub const VIRQ_ARCH_4: u32 = 20;
/// Architecture-specific VIRQ 5.
pub const VIRQ_ARCH_5: u32 = 21;
/// Architecture-specific VIRQ 6.
pub const VIRQ_ARCH_6: u32 = 22;
/// Architecture-specific VIRQ 7.
pub const VIRQ_ARCH_7: u32 = 23;
/// Number of VIRQ numbers (valid VIRQs are below this).
pub const NR_VIRQS: u32 = 24;

// ---------------------------------------------------------------------------------------
// mmu_update
// ---------------------------------------------------------------------------------------

/// `mmu_update` command in `ptr[1:0]`: checked write of a page-table entry at machine
/// address `ptr & !3`.
pub const MMU_NORMAL_PT_UPDATE: u64 = 0;
/// `mmu_update` command: set the M2P entry of the frame containing `ptr` to `val`.
pub const MMU_MACHPHYS_UPDATE: u64 = 1;
/// `mmu_update` command: like a normal update, but keep the entry's current
/// accessed/dirty bits.
pub const MMU_PT_UPDATE_PRESERVE_AD: u64 = 2;
/// `mmu_update` command: like a normal update, without translating `val` through the
/// foreign domain's physmap.
pub const MMU_PT_UPDATE_NO_TRANSLATE: u64 = 3;
/// Mask of the command bits in [`MmuUpdate::ptr`].
pub const MMU_UPDATE_CMD_MASK: u64 = 3;

/// One request of the `mmu_update` hypercall (`struct mmu_update`).
///
/// The low two bits of `ptr` select the command (`MMU_*`); the rest is the machine
/// address of the entry to change.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct MmuUpdate {
    /// Machine address of the entry, with the `MMU_*` command in bits 1:0.
    pub ptr: u64,
    /// New contents of the entry.
    pub val: u64,
}
const _: () = assert!(size_of::<MmuUpdate>() == 16);

impl MmuUpdate {
    /// A checked page-table entry write: `*pte_maddr = val`.
    pub const fn normal(pte_maddr: u64, val: u64) -> Self {
        MmuUpdate {
            ptr: (pte_maddr & !MMU_UPDATE_CMD_MASK) | MMU_NORMAL_PT_UPDATE,
            val,
        }
    }

    /// An M2P update: machine frame `mfn` now backs guest frame `pfn`.
    pub const fn machphys(mfn: u64, pfn: u64) -> Self {
        MmuUpdate {
            ptr: (mfn << 12) | MMU_MACHPHYS_UPDATE,
            val: pfn,
        }
    }

    /// A page-table entry write that keeps the entry's accessed and dirty bits.
    pub const fn preserve_ad(pte_maddr: u64, val: u64) -> Self {
        MmuUpdate {
            ptr: (pte_maddr & !MMU_UPDATE_CMD_MASK) | MMU_PT_UPDATE_PRESERVE_AD,
            val,
        }
    }

    /// The command (`MMU_*`) in the low bits of `ptr`.
    pub const fn command(&self) -> u64 {
        self.ptr & MMU_UPDATE_CMD_MASK
    }

    /// The machine address in `ptr`, command bits cleared.
    pub const fn address(&self) -> u64 {
        self.ptr & !MMU_UPDATE_CMD_MASK
    }
}

// ---------------------------------------------------------------------------------------
// mmuext_op
// ---------------------------------------------------------------------------------------

/// Pin a frame as an L1 page table (`arg1` = mfn).
pub const MMUEXT_PIN_L1_TABLE: u32 = 0;
/// Pin a frame as an L2 page table (`arg1` = mfn).
pub const MMUEXT_PIN_L2_TABLE: u32 = 1;
/// Pin a frame as an L3 page table (`arg1` = mfn).
pub const MMUEXT_PIN_L3_TABLE: u32 = 2;
/// Pin a frame as an L4 page table (`arg1` = mfn).
pub const MMUEXT_PIN_L4_TABLE: u32 = 3;
/// Unpin a page table of any level (`arg1` = mfn).
pub const MMUEXT_UNPIN_TABLE: u32 = 4;
/// Switch the kernel page-table base (`arg1` = mfn of the L4).
pub const MMUEXT_NEW_BASEPTR: u32 = 5;
/// Flush this VCPU's TLB.
pub const MMUEXT_TLB_FLUSH_LOCAL: u32 = 6;
/// Invalidate one address in this VCPU's TLB (`arg1` = linear address).
pub const MMUEXT_INVLPG_LOCAL: u32 = 7;
/// Flush the TLBs of the VCPUs in a bitmap (`arg2` = pointer to the bitmap).
pub const MMUEXT_TLB_FLUSH_MULTI: u32 = 8;
/// Invalidate one address on the VCPUs in a bitmap (`arg1` = address, `arg2` = bitmap).
pub const MMUEXT_INVLPG_MULTI: u32 = 9;
/// Flush every VCPU's TLB.
pub const MMUEXT_TLB_FLUSH_ALL: u32 = 10;
/// Invalidate one address on every VCPU (`arg1` = linear address).
pub const MMUEXT_INVLPG_ALL: u32 = 11;
/// Write back and invalidate this CPU's caches.
pub const MMUEXT_FLUSH_CACHE: u32 = 12;
/// Set the LDT (`arg1` = page-aligned linear base, `arg2` = number of entries).
pub const MMUEXT_SET_LDT: u32 = 13;
/// Switch the user-mode page-table base (`arg1` = mfn of the user L4; 64-bit only).
pub const MMUEXT_NEW_USER_BASEPTR: u32 = 15;
/// Zero a frame (`arg1` = mfn).
pub const MMUEXT_CLEAR_PAGE: u32 = 16;
/// Copy a frame (`arg1` = destination mfn, `arg2` = source mfn).
pub const MMUEXT_COPY_PAGE: u32 = 17;
/// Write back and invalidate the caches of every CPU.
pub const MMUEXT_FLUSH_CACHE_GLOBAL: u32 = 18;
/// Mark a superpage-aligned frame range as a superpage (`arg1` = head mfn).
pub const MMUEXT_MARK_SUPER: u32 = 19;
/// Undo [`MMUEXT_MARK_SUPER`] (`arg1` = head mfn).
pub const MMUEXT_UNMARK_SUPER: u32 = 20;

/// One request of the `mmuext_op` hypercall (`struct mmuext_op`).
///
/// C declares `arg1` and `arg2` as unions; on x86_64 every member is read as (or
/// zero-extended to) 64 bits, so they are plain `u64` here:
/// - `arg1`: mfn (pin/unpin, base pointers, clear/copy, superpages) or linear address
///   (invlpg, set_ldt);
/// - `arg2`: number of LDT entries (a 32-bit `unsigned int` in the low half; keep the
///   high half zero), a guest pointer to a VCPU bitmap (the `_MULTI` flushes), or the
///   source mfn of a copy.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct MmuextOp {
    /// The command, one of `MMUEXT_*`.
    pub cmd: u32,
    /// Padding; zero.
    pub pad0: u32,
    /// First argument (mfn or linear address).
    pub arg1: u64,
    /// Second argument (entry count, bitmap pointer or source mfn).
    pub arg2: u64,
}
const _: () = assert!(size_of::<MmuextOp>() == 24);

impl MmuextOp {
    /// A request with both arguments given.
    pub const fn new(cmd: u32, arg1: u64, arg2: u64) -> Self {
        MmuextOp {
            cmd,
            pad0: 0,
            arg1,
            arg2,
        }
    }
    /// Pin `mfn` as a page table of `level` (1..=4); other levels give `None`.
    pub const fn pin_table(level: u8, mfn: u64) -> Option<Self> {
        let cmd = match level {
            1 => MMUEXT_PIN_L1_TABLE,
            2 => MMUEXT_PIN_L2_TABLE,
            3 => MMUEXT_PIN_L3_TABLE,
            4 => MMUEXT_PIN_L4_TABLE,
            _ => return None,
        };
        Some(Self::new(cmd, mfn, 0))
    }
    /// Unpin the page table in `mfn`.
    pub const fn unpin_table(mfn: u64) -> Self {
        Self::new(MMUEXT_UNPIN_TABLE, mfn, 0)
    }
    /// Make the L4 in `mfn` the kernel page-table base.
    pub const fn new_baseptr(mfn: u64) -> Self {
        Self::new(MMUEXT_NEW_BASEPTR, mfn, 0)
    }
    /// Make the L4 in `mfn` the user page-table base.
    pub const fn new_user_baseptr(mfn: u64) -> Self {
        Self::new(MMUEXT_NEW_USER_BASEPTR, mfn, 0)
    }
    /// Flush the local TLB.
    pub const fn tlb_flush_local() -> Self {
        Self::new(MMUEXT_TLB_FLUSH_LOCAL, 0, 0)
    }
    /// Flush all VCPUs' TLBs.
    pub const fn tlb_flush_all() -> Self {
        Self::new(MMUEXT_TLB_FLUSH_ALL, 0, 0)
    }
    /// Invalidate `va` in the local TLB.
    pub const fn invlpg_local(va: u64) -> Self {
        Self::new(MMUEXT_INVLPG_LOCAL, va, 0)
    }
    /// Invalidate `va` in every VCPU's TLB.
    pub const fn invlpg_all(va: u64) -> Self {
        Self::new(MMUEXT_INVLPG_ALL, va, 0)
    }
    /// Set the LDT to `entries` descriptors at linear address `base`.
    pub const fn set_ldt(base: u64, entries: u32) -> Self {
        Self::new(MMUEXT_SET_LDT, base, entries as u64)
    }
    /// Zero the frame `mfn`.
    pub const fn clear_page(mfn: u64) -> Self {
        Self::new(MMUEXT_CLEAR_PAGE, mfn, 0)
    }
    /// Copy frame `src_mfn` to frame `dst_mfn`.
    pub const fn copy_page(dst_mfn: u64, src_mfn: u64) -> Self {
        Self::new(MMUEXT_COPY_PAGE, dst_mfn, src_mfn)
    }
    /// `arg2` read as an LDT entry count (the C `nr_ents` member).
    pub const fn nr_ents(&self) -> u32 {
        self.arg2 as u32
    }
}

// ---------------------------------------------------------------------------------------
// update_va_mapping flags
// ---------------------------------------------------------------------------------------

/// `update_va_mapping` flags: no TLB flush.
pub const UVMF_NONE: u64 = 0;
/// Flush the entire TLB(s) selected below.
pub const UVMF_TLB_FLUSH: u64 = 1;
/// Flush only the updated address from the TLB(s) selected below.
pub const UVMF_INVLPG: u64 = 2;
/// Mask of the flush-type bits.
pub const UVMF_FLUSHTYPE_MASK: u64 = 3;
/// Flush on the VCPUs in a bitmap; OR a pointer to the bitmap into the flags.
pub const UVMF_MULTI: u64 = 0;
/// Flush on this VCPU only (`UVMF_MULTI` with a null bitmap).
pub const UVMF_LOCAL: u64 = 0;
/// Flush on every VCPU.
pub const UVMF_ALL: u64 = 1 << 2;

// ---------------------------------------------------------------------------------------
// console_io, vm_assist
// ---------------------------------------------------------------------------------------

/// `console_io` command: write a buffer to the hypervisor console.
pub const CONSOLEIO_WRITE: u32 = 0;
/// `console_io` command: read from the hypervisor console; returns the byte count.
pub const CONSOLEIO_READ: u32 = 1;

/// `vm_assist` command: enable an assist.
pub const VMASST_CMD_ENABLE: u32 = 0;
/// `vm_assist` command: disable an assist.
pub const VMASST_CMD_DISABLE: u32 = 1;
/// 32-bit guests: emulate 4 GiB segment limits.
pub const VMASST_TYPE_4GB_SEGMENTS: u32 = 0;
/// 32-bit guests: raise vector 15 whenever the 4 GiB segment emulation is used.
pub const VMASST_TYPE_4GB_SEGMENTS_NOTIFY: u32 = 1;
/// Writes to L1 page-table entries trap and are emulated.
pub const VMASST_TYPE_WRITABLE_PAGETABLES: u32 = 2;
/// PAE guests: page directory pointer tables above 4 GiB.
pub const VMASST_TYPE_PAE_EXTENDED_CR3: u32 = 3;
/// Architectural virtual IOPL: kept by `iret`, reported in bounce frames.
pub const VMASST_TYPE_ARCHITECTURAL_IOPL: u32 = 4;
/// Set `XEN_RUNSTATE_UPDATE` in the mapped runstate area while it is updated.
pub const VMASST_TYPE_RUNSTATE_UPDATE_FLAG: u32 = 5;
/// 64-bit guests: keep the M2P out of user page tables.
pub const VMASST_TYPE_M2P_STRICT: u32 = 32;

// ---------------------------------------------------------------------------------------
// Domain ids
// ---------------------------------------------------------------------------------------

/// First domain id not usable by an ordinary domain.
pub const DOMID_FIRST_RESERVED: DomId = 0x7FF0;
/// The calling domain.
pub const DOMID_SELF: DomId = 0x7FF0;
/// Restricts `mmu_update` to I/O mappings.
pub const DOMID_IO: DomId = 0x7FF1;
/// The hypervisor's own pages (privileged mapping of e.g. the M2P).
pub const DOMID_XEN: DomId = 0x7FF2;
/// Owner of sharable (copy-on-write) pages.
pub const DOMID_COW: DomId = 0x7FF3;
/// Owner of pages of unknown ownership.
pub const DOMID_INVALID: DomId = 0x7FF4;
/// The idle domain.
pub const DOMID_IDLE: DomId = 0x7FFF;
/// Mask of the valid bits of a domain id.
pub const DOMID_MASK: DomId = 0x7FFF;

// ---------------------------------------------------------------------------------------
// multicall
// ---------------------------------------------------------------------------------------

/// One entry of a `multicall` batch (`struct multicall_entry`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct MulticallEntry {
    /// Hypercall number.
    pub op: u64,
    /// Written by the hypervisor: the call's return value.
    pub result: u64,
    /// Arguments 1..=6 (x86_64 hypercalls use at most five).
    pub args: [u64; 6],
}
const _: () = assert!(size_of::<MulticallEntry>() == 64);

impl MulticallEntry {
    /// An entry calling `op` with `args` (unused arguments zero).
    pub const fn new(op: Hypercall, args: [u64; 6]) -> Self {
        MulticallEntry {
            op: op.number(),
            result: 0,
            args,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Time and the shared-info page
// ---------------------------------------------------------------------------------------

/// [`VcpuTimeInfo::flags`]: the TSC is stable across VCPUs.
pub const XEN_PVCLOCK_TSC_STABLE_BIT: u8 = 1 << 0;
/// [`VcpuTimeInfo::flags`]: the VCPU was stopped (for instance paused) since the
/// last update.
pub const XEN_PVCLOCK_GUEST_STOPPED: u8 = 1 << 1;

/// Per-VCPU system time (`struct vcpu_time_info`), inside [`VcpuInfo`].
///
/// The hypervisor increments `version` before and after changing the other fields; an
/// odd version means an update is in progress. Read it like a seqlock: read `version`,
/// the fields, then `version` again, and retry if it changed or was odd.
///
/// System time in ns = `system_time + (((tsc - tsc_timestamp) << tsc_shift) *
/// tsc_to_system_mul) >> 32` (a negative `tsc_shift` shifts right).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VcpuTimeInfo {
    /// Update counter; odd while an update is in progress.
    pub version: u32,
    /// Padding.
    pub pad0: u32,
    /// TSC value at the last update.
    pub tsc_timestamp: u64,
    /// Nanoseconds since boot at the last update.
    pub system_time: u64,
    /// TSC-to-nanoseconds multiplier, a 32.32 fixed-point fraction.
    pub tsc_to_system_mul: u32,
    /// Power-of-two shift applied to a TSC delta before the multiply.
    pub tsc_shift: i8,
    /// `XEN_PVCLOCK_*` flags.
    pub flags: u8,
    /// Padding.
    pub pad1: [u8; 2],
}
const _: () = assert!(size_of::<VcpuTimeInfo>() == 32);

impl VcpuTimeInfo {
    /// System time in nanoseconds at TSC value `tsc`, from a consistent snapshot.
    pub const fn system_time_at(&self, tsc: u64) -> u64 {
        let delta = tsc.wrapping_sub(self.tsc_timestamp);
        let shifted = if self.tsc_shift >= 0 {
            delta << (self.tsc_shift as u32)
        } else {
            delta >> ((-(self.tsc_shift as i32)) as u32)
        };
        let scaled = ((shifted as u128 * self.tsc_to_system_mul as u128) >> 32) as u64;
        self.system_time.wrapping_add(scaled)
    }
}

/// Per-VCPU event and time state (`struct vcpu_info`); 64 bytes.
///
/// The first [`XEN_LEGACY_MAX_VCPUS`] live in [`SharedInfo`]; others can be placed
/// anywhere with `VCPUOP_register_vcpu_info`. The hypervisor writes it concurrently, so a
/// guest reads and writes these fields through volatile or atomic accesses.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VcpuInfo {
    /// Set non-zero by the hypervisor when an event is pending for this VCPU; the guest
    /// clears it before scanning for work.
    pub evtchn_upcall_pending: u8,
    /// Non-zero while the guest masks event upcalls (the virtual interrupt flag).
    pub evtchn_upcall_mask: u8,
    /// Padding.
    pub pad0: [u8; 6],
    /// Selector: bit `i` set means word `i` of `evtchn_pending` may hold pending ports.
    pub evtchn_pending_sel: u64,
    /// Architecture-specific state (x86: the virtual CR2).
    pub arch: ArchVcpuInfo,
    /// System time.
    pub time: VcpuTimeInfo,
}
const _: () = assert!(size_of::<VcpuInfo>() == 64);

/// The pre-Xen-4.0 name of [`XEN_LEGACY_MAX_VCPUS`]: the VCPUs whose [`VcpuInfo`] lives in
/// [`SharedInfo`] (Xen 4.17's headers no longer define `MAX_VIRT_CPUS`).
pub const MAX_VIRT_CPUS: usize = XEN_LEGACY_MAX_VCPUS;

/// Event-channel ports of the 2-level ABI on a 64-bit guest (4096); Xen's headers define
/// this name only for old interface versions and call it `EVTCHN_2L_NR_CHANNELS` now.
pub const NR_EVENT_CHANNELS: u32 = crate::event_channel::EVTCHN_2L_NR_CHANNELS;

/// Number of 64-bit words in the 2-level event-channel bitmaps of [`SharedInfo`].
pub const EVTCHN_2L_WORDS: usize = 64;

/// The shared-info page (`struct shared_info`): VCPU state, the 2-level event-channel
/// bitmaps and the wallclock. Its machine address is [`StartInfo::shared_info`].
///
/// Wallclock: `wc_sec` (low 32 bits), `wc_sec_hi` (high 32 bits) and `wc_nsec` give
/// the time since the Unix epoch at system time 0; `wc_version` guards them like
/// [`VcpuTimeInfo::version`]. The structure is smaller than a page.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct SharedInfo {
    /// Event and time state of VCPUs 0..32.
    pub vcpu_info: [VcpuInfo; XEN_LEGACY_MAX_VCPUS],
    /// Pending bit per event-channel port.
    pub evtchn_pending: [u64; EVTCHN_2L_WORDS],
    /// Mask bit per event-channel port.
    pub evtchn_mask: [u64; EVTCHN_2L_WORDS],
    /// Wallclock update counter.
    pub wc_version: u32,
    /// Wallclock seconds, low 32 bits.
    pub wc_sec: u32,
    /// Wallclock nanoseconds.
    pub wc_nsec: u32,
    /// Wallclock seconds, high 32 bits.
    pub wc_sec_hi: u32,
    /// Architecture-specific part (x86: P2M description, NMI reason).
    pub arch: ArchSharedInfo,
}
const _: () = assert!(size_of::<SharedInfo>() == 3136);
const _: () = assert!(size_of::<SharedInfo>() <= 4096);

impl SharedInfo {
    /// The wallclock seconds from a consistent snapshot (`wc_sec_hi:wc_sec`).
    pub const fn wallclock_sec(&self) -> u64 {
        ((self.wc_sec_hi as u64) << 32) | self.wc_sec as u64
    }
}

// ---------------------------------------------------------------------------------------
// start_info
// ---------------------------------------------------------------------------------------

/// The magic prefix of [`StartInfo::magic`] for a 64-bit x86 PV guest.
///
/// The field is `"xen-<version>-<platform>"` NUL-padded to 32 bytes; Xen writes
/// exactly this string.
pub const START_INFO_MAGIC: &[u8; 14] = b"xen-3.0-x86_64";
/// Size of [`StartInfo::cmd_line`] (`MAX_GUEST_CMDLINE`).
pub const MAX_GUEST_CMDLINE: usize = 1024;

/// [`StartInfo::flags`]: the domain is privileged.
pub const SIF_PRIVILEGED: u32 = 1 << 0;
/// [`StartInfo::flags`]: the domain is the initial (control) domain.
pub const SIF_INITDOMAIN: u32 = 1 << 1;
/// [`StartInfo::flags`]: the module is a multiboot module package
/// ([`XenMultibootModList`] at its start).
pub const SIF_MULTIBOOT_MOD: u32 = 1 << 2;
/// [`StartInfo::flags`]: `mod_start` is a frame number, not a virtual address.
pub const SIF_MOD_START_PFN: u32 = 1 << 3;
/// [`StartInfo::flags`]: the toolstack understands a virtually mapped P2M list.
pub const SIF_VIRT_P2M_4TOOLS: u32 = 1 << 4;
/// [`StartInfo::flags`]: bits reserved for power-management options.
pub const SIF_PM_MASK: u32 = 0xFF << 8;

/// The console part of [`StartInfo`], a C union of two views over the same 16 bytes:
///
/// - an unprivileged domain (domU) reads `mfn` (the console ring's frame) and `evtchn`;
/// - the initial domain (dom0) reads two 32-bit values from the first eight bytes:
///   `info_off` (offset of a [`Dom0VgaConsoleInfo`] from the start of the start-info
///   page) and `info_size`. Use [`StartInfoConsole::dom0_info_off`] and
///   [`StartInfoConsole::dom0_info_size`].
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct StartInfoConsole {
    /// domU: machine frame of the console ring. dom0: `info_off | info_size << 32`.
    pub mfn: u64,
    /// domU: event channel of the console ring. dom0: unused.
    pub evtchn: u32,
    /// Padding.
    pub pad0: u32,
}
const _: () = assert!(size_of::<StartInfoConsole>() == 16);

impl StartInfoConsole {
    /// The domU view.
    pub const fn domu(mfn: u64, evtchn: u32) -> Self {
        StartInfoConsole {
            mfn,
            evtchn,
            pad0: 0,
        }
    }
    /// The dom0 view.
    pub const fn dom0(info_off: u32, info_size: u32) -> Self {
        StartInfoConsole {
            mfn: info_off as u64 | (info_size as u64) << 32,
            evtchn: 0,
            pad0: 0,
        }
    }
    /// dom0 view: offset of the VGA console info in the start-info page.
    pub const fn dom0_info_off(&self) -> u32 {
        self.mfn as u32
    }
    /// dom0 view: size of the VGA console info.
    pub const fn dom0_info_size(&self) -> u32 {
        (self.mfn >> 32) as u32
    }
}

/// The start-of-day page (`struct start_info`), whose virtual address a PV guest finds in
/// `rsi` at entry. The first fields (through `console`) are refreshed on resume; the
/// rest describe the initial boot only.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct StartInfo {
    /// `"xen-3.0-x86_64"`, NUL-padded; see [`START_INFO_MAGIC`].
    pub magic: [u8; 32],
    /// Number of pages allocated to the domain.
    pub nr_pages: u64,
    /// Machine address of the [`SharedInfo`] page.
    pub shared_info: u64,
    /// `SIF_*` flags.
    pub flags: u32,
    /// Padding.
    pub pad0: u32,
    /// Machine frame of the xenstore ring page.
    pub store_mfn: u64,
    /// Event channel of the xenstore ring.
    pub store_evtchn: u32,
    /// Padding.
    pub pad1: u32,
    /// Console ring (domU) or VGA console info location (dom0).
    pub console: StartInfoConsole,
    /// Virtual address of the bootstrap top-level page table.
    pub pt_base: u64,
    /// Number of bootstrap page-table frames.
    pub nr_pt_frames: u64,
    /// Virtual address of the P2M list (`nr_pages` machine frame numbers).
    pub mfn_list: u64,
    /// Virtual address (or frame number, with [`SIF_MOD_START_PFN`]) of the initial
    /// module (initrd), 0 if none.
    pub mod_start: u64,
    /// Size in bytes of the initial module.
    pub mod_len: u64,
    /// Kernel command line, NUL-terminated.
    pub cmd_line: [u8; MAX_GUEST_CMDLINE],
    /// First frame of the initial P2M table (with `XEN_ELFNOTE_INIT_P2M`).
    pub first_p2m_pfn: u64,
    /// Number of frames of the initial P2M table.
    pub nr_p2m_frames: u64,
}
const _: () = assert!(size_of::<StartInfo>() == 1168);

impl StartInfo {
    /// Whether `magic` starts with [`START_INFO_MAGIC`].
    pub fn has_valid_magic(&self) -> bool {
        self.magic.starts_with(START_INFO_MAGIC)
    }
    /// Writes [`START_INFO_MAGIC`], NUL-padded, into `magic`.
    pub fn set_magic(&mut self) {
        self.magic = [0; 32];
        self.magic[..START_INFO_MAGIC.len()].copy_from_slice(START_INFO_MAGIC);
    }
    /// The command line up to its first NUL (or the whole field if there is none).
    pub fn cmd_line_bytes(&self) -> &[u8] {
        nul_terminated(&self.cmd_line)
    }
    /// Copies `line` into `cmd_line`, truncating so a terminating NUL always fits.
    pub fn set_cmd_line(&mut self, line: &[u8]) {
        let n = line.len().min(MAX_GUEST_CMDLINE - 1);
        self.cmd_line = [0; MAX_GUEST_CMDLINE];
        self.cmd_line[..n].copy_from_slice(&line[..n]);
    }
}

/// The bytes of `buf` before its first NUL, or all of `buf` if it has none.
pub fn nul_terminated(buf: &[u8]) -> &[u8] {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    &buf[..end]
}

/// One module descriptor of a multiboot module package
/// (`struct xen_multiboot_mod_list`); addresses are relative to the package start and a
/// descriptor with `mod_start == 0` ends the list.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenMultibootModList {
    /// Offset of the module's first byte.
    pub mod_start: u32,
    /// Offset of the module's last byte (inclusive).
    pub mod_end: u32,
    /// Offset of the module's NUL-terminated command line.
    pub cmdline: u32,
    /// Unused; zero.
    pub pad: u32,
}
const _: () = assert!(size_of::<XenMultibootModList>() == 16);

/// [`Dom0VgaConsoleInfo::video_type`]: VGA text mode 3.
pub const XEN_VGATYPE_TEXT_MODE_3: u8 = 0x03;
/// [`Dom0VgaConsoleInfo::video_type`]: VESA linear frame buffer.
pub const XEN_VGATYPE_VESA_LFB: u8 = 0x23;
/// [`Dom0VgaConsoleInfo::video_type`]: EFI linear frame buffer.
pub const XEN_VGATYPE_EFI_LFB: u8 = 0x70;

/// Text-mode view of [`Dom0VgaConsoleInfo::u`].
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VgaTextMode3 {
    /// Font height in pixels.
    pub font_height: u16,
    /// Cursor column.
    pub cursor_x: u16,
    /// Cursor row.
    pub cursor_y: u16,
    /// Number of text rows.
    pub rows: u16,
    /// Number of text columns.
    pub columns: u16,
}
const _: () = assert!(size_of::<VgaTextMode3>() == 10);

/// Linear-frame-buffer view of [`Dom0VgaConsoleInfo::u`].
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VesaLfb {
    /// Width in pixels.
    pub width: u16,
    /// Height in pixels.
    pub height: u16,
    /// Bytes per scan line.
    pub bytes_per_line: u16,
    /// Bits per pixel.
    pub bits_per_pixel: u16,
    /// Frame buffer physical address, low 32 bits.
    pub lfb_base: u32,
    /// Frame buffer size in 64 KiB units.
    pub lfb_size: u32,
    /// Red field position.
    pub red_pos: u8,
    /// Red field size.
    pub red_size: u8,
    /// Green field position.
    pub green_pos: u8,
    /// Green field size.
    pub green_size: u8,
    /// Blue field position.
    pub blue_pos: u8,
    /// Blue field size.
    pub blue_size: u8,
    /// Reserved field position.
    pub rsvd_pos: u8,
    /// Reserved field size.
    pub rsvd_size: u8,
    /// VESA capabilities.
    pub gbl_caps: u32,
    /// VESA mode attributes.
    pub mode_attrs: u16,
    /// Padding.
    pub pad: u16,
    /// Frame buffer physical address, high 32 bits.
    pub ext_lfb_base: u32,
}
const _: () = assert!(size_of::<VesaLfb>() == 36);

/// Dom0's console description (`struct dom0_vga_console_info`), found in the start-info
/// page at [`StartInfoConsole::dom0_info_off`].
///
/// C's union `u` is kept as raw bytes; read it with [`Dom0VgaConsoleInfo::text_mode_3`]
/// or [`Dom0VgaConsoleInfo::vesa_lfb`] according to `video_type`.
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Dom0VgaConsoleInfo {
    /// `XEN_VGATYPE_*`.
    pub video_type: u8,
    /// Padding.
    pub pad0: [u8; 3],
    /// The union of [`VgaTextMode3`] and [`VesaLfb`], as bytes.
    pub u: [u8; 36],
}
const _: () = assert!(size_of::<Dom0VgaConsoleInfo>() == 40);

impl Dom0VgaConsoleInfo {
    /// The text-mode view of `u`.
    pub fn text_mode_3(&self) -> VgaTextMode3 {
        // The prefix is always long enough (10 of 36 bytes): the fallback is unreachable.
        VgaTextMode3::read_from_prefix(&self.u)
            .map(|(v, _)| v)
            .unwrap_or_default()
    }
    /// The frame-buffer view of `u`.
    pub fn vesa_lfb(&self) -> VesaLfb {
        VesaLfb::read_from_bytes(&self.u).unwrap_or_default()
    }
}

/// A 16-byte domain handle (`xen_domain_handle_t`), usually a UUID.
pub type XenDomainHandle = [u8; 16];

/// A UUID in RFC 4122 byte order (`xen_uuid_t`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenUuid {
    /// The 16 bytes, most significant first.
    pub a: [u8; 16],
}
const _: () = assert!(size_of::<XenUuid>() == 16);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypercall_numbers_round_trip() {
        for (i, h) in Hypercall::ALL.iter().enumerate() {
            assert_eq!(Hypercall::try_from(h.number()), Ok(*h));
            if i > 0 {
                assert!(Hypercall::ALL[i - 1].number() < h.number());
            }
        }
        let known = (0..256u64)
            .filter(|n| Hypercall::try_from(*n).is_ok())
            .count();
        assert_eq!(known, Hypercall::ALL.len());
        assert_eq!(Hypercall::try_from(11), Err(UnknownHypercall(11)));
        assert_eq!(
            Hypercall::try_from(u64::MAX),
            Err(UnknownHypercall(u64::MAX))
        );
        assert_eq!(Hypercall::ConsoleIo.number(), 18);
        assert_eq!(Hypercall::Arch7.to_string(), "arch_7");
    }

    #[test]
    fn start_info_helpers() {
        let mut si = StartInfo::new_zeroed();
        assert!(!si.has_valid_magic());
        si.set_magic();
        assert!(si.has_valid_magic());
        si.set_cmd_line(b"console=hvc0");
        assert_eq!(si.cmd_line_bytes(), b"console=hvc0");
        si.set_cmd_line(&[b'x'; 2000]);
        assert_eq!(si.cmd_line_bytes().len(), MAX_GUEST_CMDLINE - 1);
        let c = StartInfoConsole::dom0(0x800, 40);
        assert_eq!((c.dom0_info_off(), c.dom0_info_size()), (0x800, 40));
    }

    #[test]
    fn mmu_helpers() {
        let u = MmuUpdate::preserve_ad(0x1234_5000 | 3, 7);
        assert_eq!(u.command(), MMU_PT_UPDATE_PRESERVE_AD);
        assert_eq!(u.address(), 0x1234_5000);
        assert_eq!(MmuextOp::pin_table(4, 9).unwrap().cmd, MMUEXT_PIN_L4_TABLE);
        assert!(MmuextOp::pin_table(5, 9).is_none());
        assert_eq!(MmuextOp::set_ldt(0x1000, 12).nr_ents(), 12);
    }

    #[test]
    fn time_scaling() {
        let t = VcpuTimeInfo {
            tsc_timestamp: 1000,
            system_time: 5,
            tsc_to_system_mul: 1 << 31, // 0.5 ns per (shifted) tick
            tsc_shift: 1,
            ..Default::default()
        };
        assert_eq!(t.system_time_at(1000 + 100), 5 + 100);
        let t = VcpuTimeInfo { tsc_shift: -1, ..t };
        assert_eq!(t.system_time_at(1000 + 100), 5 + 25);
    }

    use zerocopy::FromZeros;
}
