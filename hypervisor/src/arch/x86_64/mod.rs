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
pub mod patch;
pub mod percpu;
pub mod pvh;
pub mod rtc;
pub mod serial;
pub mod tsc;

use core::cell::UnsafeCell;
use core::mem::offset_of;
use hypervisor::domain::Vcpu;
use hypervisor::evtchn::Channel;
use pv_abi::arch_x86_64::TrapInfo;
use pv_abi::xen::{MmuextOp, SharedInfo, VcpuInfo};

core::arch::global_asm!(include_str!("boot.S"), options(att_syntax));
core::arch::global_asm!(
    include_str!("entry.S"),
    bounce_rflags_keep = const hypervisor::traps::bounce::HANDLER_RFLAGS_KEEP as i32,
    bounce_rflags_set = const hypervisor::traps::bounce::HANDLER_RFLAGS_SET,
    vcpu_kernel_mode = const offset_of!(Vcpu, kernel_mode),
    vcpu_kernel_root = const offset_of!(Vcpu, kernel_root),
    vcpu_user_root = const Vcpu::USER_ROOT_CR3_OFFSET,
    vcpu_kernel_frame_top = const Vcpu::KERNEL_FRAME_TOP_OFFSET,
    vcpu_gs_kernel = const offset_of!(Vcpu, segments.gs_kernel),
    vcpu_gs_user = const offset_of!(Vcpu, segments.gs_user),
    vcpu_syscall = const offset_of!(Vcpu, callbacks.syscall),
    vcpu_syscall_masks = const offset_of!(Vcpu, callbacks.syscall_masks_events),
    vcpu_event_callback = const offset_of!(Vcpu, callbacks.event),
    vcpu_pf_handler = const VCPU_PF_ENTRY + offset_of!(TrapInfo, address),
    vcpu_pf_flags = const VCPU_PF_ENTRY + offset_of!(TrapInfo, flags),
    ti_if = const pv_abi::arch_x86_64::TI_IF,
    vi_cr2 = const offset_of!(VcpuInfo, arch) + offset_of!(pv_abi::arch_x86_64::ArchVcpuInfo, cr2),
    pfec_user = const hypervisor::traps::PFEC_USER,
    percpu_vcpu_info = const offset_of!(percpu::PerCpu, vcpu_info),
    percpu_loaded_root = const offset_of!(percpu::PerCpu, loaded.root),
    percpu_loaded_gs = const offset_of!(percpu::PerCpu, loaded.gs),
    percpu_loaded_mode = const offset_of!(percpu::PerCpu, loaded.kernel_mode),
    mode_kernel = const percpu::MODE_KERNEL,
    mode_user = const percpu::MODE_USER,
    guest_range_bias = const GUEST_RANGE_BIAS,
    guest_range_span = const GUEST_RANGE_SPAN,
    guest_upper_distance = const 0u64.wrapping_sub(hypervisor::guestmem::GUEST_UPPER_START),
    lower_half_end = const hypervisor::guestmem::LOWER_HALF_END,
    guest_rflags_settable = const hypervisor::traps::bounce::rflags::GUEST_SETTABLE,
    vgcf_in_syscall = const pv_abi::arch_x86_64::VGCF_IN_SYSCALL,
    msr_kernel_gs_base = const cpu::msr::KERNEL_GS_BASE,
    percpu_express_events = const offset_of!(percpu::PerCpu, express_events),
    percpu_express_shared = const offset_of!(percpu::PerCpu, express_shared),
    vcpu_id = const offset_of!(Vcpu, id),
    runtime_pollers = const hypervisor::guests::Runtime::POLLERS_OFFSET,
    runtime_channels = const offset_of!(hypervisor::guests::Runtime, events)
        + hypervisor::evtchn::EventTable::CHANNELS_OFFSET,
    channel_tag = const offset_of!(Channel, binding),
    channel_vcpu = const offset_of!(Channel, vcpu),
    binding_ipi = const hypervisor::evtchn::Binding::IPI_TAG,
    max_ports = const hypervisor::evtchn::MAX_PORTS,
    si_pending = const offset_of!(SharedInfo, evtchn_pending),
    si_mask = const offset_of!(SharedInfo, evtchn_mask),
    vi_sel = const offset_of!(VcpuInfo, evtchn_pending_sel),
    hypercall_iret = const pv_abi::xen::Hypercall::Iret.number(),
    hypercall_event_channel_op = const pv_abi::xen::Hypercall::EventChannelOp.number(),
    evtchnop_send = const pv_abi::event_channel::EVTCHNOP_SEND,
    cr4_pge = const cpu::CR4_PGE,
    cr0_ts = const cpu::CR0_TS,
    sse_free_fast_path = const !cfg!(debug_assertions) as u8,
    hypercall_xen_version = const pv_abi::xen::Hypercall::XenVersion.number(),
    xen_version_word = const hypervisor::hypercall::version::VERSION_WORD,
    hypercall_mmu_update = const pv_abi::xen::Hypercall::MmuUpdate.number(),
    hypercall_update_va_mapping = const pv_abi::xen::Hypercall::UpdateVaMapping.number(),
    hypercall_mmuext_op = const pv_abi::xen::Hypercall::MmuextOp.number(),
    mmuext_new_baseptr = const pv_abi::xen::MMUEXT_NEW_BASEPTR,
    mmuext_tlb_flush_local = const pv_abi::xen::MMUEXT_TLB_FLUSH_LOCAL,
    mmuext_invlpg_local = const pv_abi::xen::MMUEXT_INVLPG_LOCAL,
    mmuext_op_cmd = const offset_of!(MmuextOp, cmd),
    mmuext_op_arg1 = const offset_of!(MmuextOp, arg1),
    mmuext_op_arg2 = const offset_of!(MmuextOp, arg2),
    mmuext_op_size = const size_of::<MmuextOp>(),
    domid_self = const pv_abi::xen::DOMID_SELF,
    options(att_syntax)
);

/// The express `mmuext_op` of `entry.S` tests a command's `_ALL` form as its `_LOCAL`
/// one plus 4 (as `simple_tlb_op` does), reads the request by three loads (the second
/// argument, the first, then the command's four bytes), and compares `DOMID_SELF` and
/// the count with immediates; the vCPU's kernel root is a machine frame number,
/// compared with the request's `arg1` as a whole word.
const _: () = {
    use pv_abi::xen::{
        MMUEXT_INVLPG_ALL, MMUEXT_INVLPG_LOCAL, MMUEXT_TLB_FLUSH_ALL, MMUEXT_TLB_FLUSH_LOCAL,
    };
    assert!(MMUEXT_INVLPG_ALL == MMUEXT_INVLPG_LOCAL + 4);
    assert!(MMUEXT_TLB_FLUSH_ALL == MMUEXT_TLB_FLUSH_LOCAL + 4);
    assert!(size_of::<MmuextOp>() == 24);
    assert!(offset_of!(MmuextOp, arg1) == 8 && offset_of!(MmuextOp, arg2) == 16);
    assert!(pv_abi::xen::DOMID_SELF < 0x8000);
    // `syscall_entry` sends every number below HYPERVISOR_iret's to the null
    // hypercall's test on the iret lane's compare: the other express paths' numbers lie
    // above it.
    use pv_abi::xen::Hypercall;
    assert!(Hypercall::MmuextOp.number() > Hypercall::Iret.number());
    // The null hypercall is tested on the lower side; XENVER_version is 0 (`test`),
    // its answer a 32-bit immediate.
    assert!(Hypercall::XenVersion.number() < Hypercall::Iret.number());
    assert!(pv_abi::version::XENVER_VERSION == 0);
    assert!(hypervisor::hypercall::version::VERSION_WORD < 1 << 31);
    assert!(Hypercall::EventChannelOp.number() > Hypercall::Iret.number());
    // The paging lane's calls are tested on the lower side too, after the null
    // hypercall's.
    assert!(Hypercall::MmuUpdate.number() < Hypercall::Iret.number());
    assert!(Hypercall::UpdateVaMapping.number() < Hypercall::Iret.number());
};
const _: fn(&MmuextOp) -> &u32 = |op| &op.cmd;
const _: fn(&MmuextOp) -> &u64 = |op| &op.arg1;
const _: fn(&Vcpu) -> &hypervisor::mm::Mfn = |vcpu| &vcpu.kernel_root;
const _: () = assert!(size_of::<hypervisor::mm::Mfn>() == 8);

/// The express send of `entry.S` finds a port's channel at `port * 12` (`lea` by 3, then
/// by 4); its pending and mask bits by a `bts`/`bt` of the port number on the words'
/// start (the bit string reaches port / 64 words on), inside the 2-level bitmaps for
/// every port below `MAX_PORTS`; its selector bit by the same on the selector word.
const _: () = {
    assert!(size_of::<Channel>() == 12);
    assert!(hypervisor::evtchn::MAX_PORTS <= 64 * pv_abi::xen::EVTCHN_2L_WORDS);
    assert!((hypervisor::evtchn::MAX_PORTS - 1) / 64 < 64);
    // `entry.S` writes it as -1 (an 8-bit immediate).
    assert!(crate::machine::PORT_NOT_READ == u64::MAX);
};
// The express send compares a channel's vCPU with the vCPU's number as 32-bit words.
const _: fn(&Channel) -> &u32 = |channel| &channel.vcpu;
const _: fn(&Vcpu) -> &u32 = |vcpu| &vcpu.id;

/// The page-fault entry of a vCPU's trap table, for the #PF express path of `entry.S`.
const VCPU_PF_ENTRY: usize =
    offset_of!(Vcpu, trap_table) + hypervisor::traps::vector::PF as usize * size_of::<TrapInfo>();

/// The guest's part of the address space for the express paths of `entry.S`, which test
/// an address `va` by its 2^43-byte granule: `(va as i64 >> 43) + GUEST_RANGE_BIAS` is
/// below `GUEST_RANGE_SPAN` exactly when `va` lies in the lower half or at or above the
/// guest's upper part (`hypervisor::guestmem::mmu_may_copy`'s two ranges; both bounds are
/// granule-aligned, so an object inside one page is wholly in or wholly out).
const GUEST_RANGE_SHIFT: u32 = 43;
const GUEST_RANGE_BIAS: i64 =
    -((hypervisor::guestmem::GUEST_UPPER_START as i64) >> GUEST_RANGE_SHIFT);
const GUEST_RANGE_SPAN: i64 =
    (hypervisor::guestmem::LOWER_HALF_END >> GUEST_RANGE_SHIFT) as i64 + GUEST_RANGE_BIAS;
const _: () = {
    let granule = (1u64 << GUEST_RANGE_SHIFT) - 1;
    assert!(hypervisor::guestmem::GUEST_UPPER_START & granule == 0);
    assert!(hypervisor::guestmem::LOWER_HALF_END & granule == 0);
    // The stubs compare with 8-bit immediates.
    assert!(GUEST_RANGE_BIAS > 0 && GUEST_RANGE_SPAN < 128);
};

unsafe extern "C" {
    fn syscall_entry();
    fn syscall_entry_lanes();
    fn compat_syscall_entry();
    fn enter_guest_first(frame: *mut hypervisor::regs::TrapFrame) -> !;
    static boot_pml4: [u64; 512];
    /// The direct map's four page directories (boot.S), 2048 entries of 2 MiB pages.
    static boot_pd_directmap: [u64; 2048];
    /// The page below the boot stack (boot.S).
    static boot_stack_guard: [u8; 4096];
}

/// Every guard page (each [`percpu::GUARD_SIZE`] bytes at the address given) with the
/// name of the stack above it: the boot stack's and this CPU's.
pub fn guard_pages() -> [(u64, &'static str); 5] {
    let [a, b, c, d] = percpu::guard_pages();
    [
        (&raw const boot_stack_guard as u64, "the boot stack"),
        a,
        b,
        c,
        d,
    ]
}

/// The stack whose guard page holds `address`, if one does: a fault there is that
/// stack's overflow.
pub fn guard_hit(address: u64) -> Option<&'static str> {
    guard_pages()
        .into_iter()
        .find(|&(guard, _)| address.wrapping_sub(guard) < percpu::GUARD_SIZE as u64)
        .map(|(_, name)| name)
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

/// Turns the express paths of the `syscall` entry off (`express=off`, which the `lanes`
/// scenario runs): LSTAR points at `syscall_entry_lanes`, whose dispatch has no express
/// null hypercall or `mmuext_op` (so neither tests a switch); the other express paths
/// decline by themselves while the per-CPU express vCPU is 0 (`percpu::set_express`).
/// At boot, before any guest runs.
pub fn express_off() {
    // SAFETY: the other entry has the same contract (entry.S): only its dispatch differs.
    unsafe { cpu::wrmsr(cpu::msr::LSTAR, syscall_entry_lanes as *const () as u64) };
}

/// Brings up CPU 0: per-CPU block, GDT/TSS, IDT, PIC, `syscall`.
pub fn init_cpu0() {
    let stacks = percpu::init_cpu0();
    gdt::init(stacks);
    idt::init();
    idt::quiesce_pic();
    let star = (u64::from(gdt::RING3_CS32) << 48) | (u64::from(gdt::HYPERVISOR_CS) << 32);
    // SAFETY: STAR/LSTAR/CSTAR/FMASK point `syscall` at our stubs with the selectors of
    // the GDT just loaded; FMASK keeps interrupts, traps and alignment checks off on
    // entry. CSTAR (`syscall` from compatibility mode, which AMD CPUs and QEMU take)
    // gets a stub that turns it into #UD: pointing it anywhere else (it was 0) would run
    // ring 0 wherever it points, on the guest's stack and GS.
    unsafe {
        cpu::wrmsr(cpu::msr::STAR, star);
        cpu::wrmsr(cpu::msr::LSTAR, syscall_entry as *const () as u64);
        cpu::wrmsr(cpu::msr::CSTAR, compat_syscall_entry as *const () as u64);
        // No `sysenter` either (its reset value, made explicit): #GP, reflected.
        cpu::wrmsr(cpu::msr::SYSENTER_CS, 0);
        cpu::wrmsr(
            cpu::msr::FMASK,
            RFLAGS_IF | RFLAGS_DF | RFLAGS_TF | RFLAGS_AC | RFLAGS_NT,
        );
    }
    drop_identity_map();
    let protections = cpu::enable_smep_smap();
    // After the stac/clac sites are patched to nops on a CPU without SMAP: the check of
    // the guards reads through them.
    unmap_guard_pages();
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
    if !protections.smap {
        log::info!(
            "cpu: {} stac/clac sites patched to nops",
            protections.smap_sites_patched
        );
    }
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

/// Page tables for the 2 MiB pages of the direct map that hold a guard page, split into
/// 4 KiB pages (the stacks and their guards lie in at most three such pages).
#[repr(C, align(4096))]
struct SplitTables(UnsafeCell<[[u64; 512]; 3]>);
// SAFETY: written once, at boot, on CPU 0.
unsafe impl Sync for SplitTables {}
static SPLIT_TABLES: SplitTables = SplitTables(UnsafeCell::new([[0; 512]; 3]));

/// Unmaps the guard page below each stack ([`guard_pages`]: the boot stack, this
/// CPU's), so that an overflow faults instead of overwriting what lies below (the IDT
/// lay below the hypervisor stack). The stacks live in the direct map's 2 MiB pages: the page holding
/// a guard is split into 4 KiB pages first, each mapping the same frame with the same
/// flags. The direct map is shared by every address space (its L4 entry is copied, its
/// tables are these), so the guards are unmapped everywhere.
fn unmap_guard_pages() {
    use hypervisor::mm::pte::{
        ADDRESS_MASK as FRAME, CACHE_DISABLE, GLOBAL, NO_EXECUTE, PAGE_SIZE as LARGE, PRESENT,
        USER, WRITABLE, WRITE_THROUGH,
    };
    /// What a 4 KiB entry keeps of a 2 MiB one as it is.
    const KEPT: u64 =
        PRESENT | WRITABLE | USER | WRITE_THROUGH | CACHE_DISABLE | GLOBAL | NO_EXECUTE;
    /// PAT: bit 12 of a 2 MiB entry, bit 7 (where a 2 MiB entry has its size bit) of a
    /// 4 KiB one.
    const LARGE_PAT: u64 = 1 << 12;
    const PAT: u64 = LARGE;
    let pd = &raw const boot_pd_directmap as *mut u64;
    let tables = SPLIT_TABLES.0.get();
    let mut split = 0;
    for (guard, _) in guard_pages() {
        let phys = virt_to_phys(guard);
        let slot = (phys >> 21) as usize;
        assert!(slot < 2048, "a stack outside the direct map");
        // SAFETY: boot, CPU 0, nothing else uses the tables; `slot` is in bounds; a split
        // maps the same frames with the same flags before it replaces the 2 MiB entry.
        unsafe {
            let entry = pd.add(slot).read_volatile();
            let table: *mut u64 = if entry & LARGE != 0 {
                assert!(split < 3, "guard pages in more than three 2 MiB pages");
                let table = (*tables)[split].as_mut_ptr();
                split += 1;
                let base = entry & FRAME & !((1 << 21) - 1);
                let flags = (entry & KEPT) | if entry & LARGE_PAT != 0 { PAT } else { 0 };
                for i in 0..512 {
                    table
                        .add(i)
                        .write_volatile((base + ((i as u64) << 12)) | flags);
                }
                pd.add(slot)
                    .write_volatile(virt_to_phys(table as u64) | PRESENT | WRITABLE);
                table
            } else {
                (DIRECTMAP_BASE + (entry & FRAME)) as *mut u64
            };
            table.add(((phys >> 12) & 511) as usize).write_volatile(0);
        }
    }
    cpu::flush_tlb_all();
    // Each guard must now fault: read one byte of it through the fault-tolerant copy.
    for (guard, stack) in guard_pages() {
        let mut byte = 0u8;
        // SAFETY: the one fault the copy can take here is the #PF its fix-up handles (the
        // page is not mapped at all: what the contract's guest range is there to ensure);
        // `byte` is valid for the write.
        let mapped = unsafe { guest_access::read(&mut byte, guard as *const u8, 1) };
        assert!(!mapped, "the guard page below {stack} is still mapped");
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
