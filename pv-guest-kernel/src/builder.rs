//! A domain builder for when this kernel is Xen's dom0: starts a second domain from the
//! PV kernel image in dom0's initial module (for the benchmark's ping-pong partner, this
//! kernel's own ELF, which xtask passes as Xen's second multiboot module), the way a
//! toolstack builds a PV domain, with `domctl`, `memory_op` and foreign mappings. The
//! image is read and checked by [`pv_abi::elf`] and laid out as [`pv_abi::boot`] says,
//! as our hypervisor's builder does. Xen keeps its own L4 slots in the new tables (filled
//! in when the root is pinned) and its M2P (set by `populate_physmap`).
//!
//! Every frame of the new domain is written through one scratch page of our boot region,
//! mapped to the frame, filled, and given back its own mapping before the next one: no
//! writable mapping of the new domain's page tables is left when they are pinned.

use crate::Boot;
use crate::vm::{self, ACCESSED, DIRTY, PRESENT, RW, USER, WRITABLE};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};
use pv_abi::Errno;
use pv_abi::arch_x86_64::{
    FLAT_KERNEL_CS64, FLAT_KERNEL_SS64, VGCF_IN_KERNEL, VGCF_ONLINE, VcpuGuestContext,
    xen_pfn_to_cr3,
};
use pv_abi::boot::BootLayout;
use pv_abi::domctl::{
    XEN_DOMCTL_CREATEDOMAIN, XEN_DOMCTL_DESTROYDOMAIN, XEN_DOMCTL_GETDOMAININFO,
    XEN_DOMCTL_HYPERCALL_INIT, XEN_DOMCTL_MAX_MEM, XEN_DOMCTL_MAX_VCPUS, XEN_DOMCTL_SETVCPUCONTEXT,
    XEN_DOMCTL_UNPAUSEDOMAIN, XenDomctl, XenDomctlCreatedomain, XenDomctlGetdomaininfo,
    XenDomctlHypercallInit, XenDomctlMaxMem, XenDomctlMaxVcpus, XenDomctlVcpucontext,
};
use pv_abi::elf::PvKernel;
use pv_abi::guest;
use pv_abi::xen::{MmuextOp, SIF_MOD_START_PFN, StartInfo, UVMF_INVLPG, UVMF_LOCAL};
use zerocopy::{FromZeros, IntoBytes};

/// Most pages the new domain may have (the P2M staging buffer's size): 16 MiB.
pub const MAX_PAGES: usize = 4096;
/// Most bootstrap page-table pages (a boot region of up to 1 GiB needs far fewer).
const MAX_TABLES: usize = 8;
/// The scratch page of our boot region the new domain's frames pass through.
const SCRATCH: u64 = 63;
const PAGE: u64 = 4096;
/// Flags of the bootstrap tables' entries (as our hypervisor's builder and Xen's set
/// them; leaves add DIRTY, and WRITABLE except for the tables themselves).
const TABLE_FLAGS: u64 = PRESENT | WRITABLE | USER | ACCESSED;

/// Why a domain could not be built (where it stopped, and Xen's answer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildError {
    /// No initial module.
    NoModule,
    /// The module is not a PV kernel image.
    Image(pv_abi::elf::ElfError),
    /// More pages than [`MAX_PAGES`], or too few for the boot region.
    Size,
    /// Another build is under way.
    Busy,
    /// A hypercall failed: which step, and its errno.
    Xen(&'static str, Errno),
}

impl core::fmt::Display for BuildError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BuildError::NoModule => f.write_str(
                "no initial module (pass a PV kernel's ELF as dom0's module, as xtask does)",
            ),
            BuildError::Image(e) => write!(f, "kernel image: {e}"),
            BuildError::Size => f.write_str("memory size out of range"),
            BuildError::Busy => f.write_str("another build is under way"),
            BuildError::Xen(step, errno) => write!(f, "{step}: {errno:?}"),
        }
    }
}

/// Fills `page` with the kernel's bytes for the page at `va` (zero where no segment
/// has file bytes).
fn fill_from(kernel: &PvKernel<'_>, va: u64, page: &mut [u8; PAGE as usize]) {
    for segment in &kernel.segments {
        let bytes = kernel.segment_bytes(segment);
        let start = va.max(segment.vaddr);
        let end = (va + PAGE).min(segment.vaddr + bytes.len() as u64);
        if start < end {
            let from = (start - segment.vaddr) as usize;
            let to = (start - va) as usize;
            let len = (end - start) as usize;
            page[to..to + len].copy_from_slice(&bytes[from..from + len]);
        }
    }
}

/// Staging memory: the new domain's P2M and its bootstrap tables, built here before they
/// are copied into its frames.
struct Staging {
    p2m: [u64; MAX_PAGES],
    tables: [[u64; 512]; MAX_TABLES],
    page: [u8; PAGE as usize],
}
struct StagingCell(UnsafeCell<Staging>);
// SAFETY: `build_copy` takes `BUILDING` before it makes the one reference, and gives it
// back after: at most one build uses the staging memory at a time.
unsafe impl Sync for StagingCell {}
/// Set while a build uses [`STAGING`].
static BUILDING: AtomicBool = AtomicBool::new(false);
static STAGING: StagingCell = StagingCell(UnsafeCell::new(Staging {
    p2m: [0; MAX_PAGES],
    tables: [[0; 512]; MAX_TABLES],
    page: [0; PAGE as usize],
}));

/// Issues one domctl.
fn domctl(request: &mut XenDomctl, step: &'static str) -> Result<(), BuildError> {
    // SAFETY: the request lives across the call; it names only the domain being built.
    unsafe { guest::domctl(request as *mut XenDomctl as u64) }
        .map(|_| ())
        .map_err(|errno| BuildError::Xen(step, errno))
}

/// Builds and starts a domain of `nr_pages` pages running a copy of this kernel with
/// `cmdline`; returns its id. On failure after the domain was created, it is destroyed.
pub fn build_copy(boot: &Boot, nr_pages: u64, cmdline: &str) -> Result<u16, BuildError> {
    let info = boot.info;
    if info.mod_start == 0 || info.mod_len == 0 || info.flags & SIF_MOD_START_PFN != 0 {
        return Err(BuildError::NoModule);
    }
    // SAFETY: Xen maps the initial module in our boot region, read-only to us from here
    // on; nothing writes it.
    let bytes =
        unsafe { core::slice::from_raw_parts(info.mod_start as *const u8, info.mod_len as usize) };
    let kernel = PvKernel::parse(bytes).map_err(BuildError::Image)?;
    if nr_pages as usize > MAX_PAGES {
        return Err(BuildError::Size);
    }
    let layout = BootLayout::compute(kernel.virt_base, kernel.kernel_end, nr_pages);
    if layout.pages() > nr_pages || layout.nr_page_tables as usize > MAX_TABLES {
        return Err(BuildError::Size);
    }

    if BUILDING.swap(true, Ordering::Acquire) {
        return Err(BuildError::Busy);
    }
    let result = create_and_fill(boot, &kernel, &layout, nr_pages, cmdline);
    BUILDING.store(false, Ordering::Release);
    result
}

/// [`build_copy`] once the image and the layout are checked (and [`BUILDING`] held).
fn create_and_fill(
    boot: &Boot,
    kernel: &PvKernel<'_>,
    layout: &BootLayout,
    nr_pages: u64,
    cmdline: &str,
) -> Result<u16, BuildError> {
    let mut create = XenDomctl::new(
        XEN_DOMCTL_CREATEDOMAIN,
        0,
        &XenDomctlCreatedomain {
            max_vcpus: 1,
            max_evtchn_port: 1023,
            max_grant_frames: -1,
            max_maptrack_frames: -1,
            grant_opts: 1,
            ..XenDomctlCreatedomain::new_zeroed()
        },
    );
    domctl(&mut create, "createdomain")?;
    let domid = create.domain;
    let built = fill_domain(boot, kernel, layout, domid, nr_pages, cmdline);
    if built.is_err() {
        let _ = domctl(
            &mut XenDomctl::bare(XEN_DOMCTL_DESTROYDOMAIN, domid),
            "destroydomain",
        );
    }
    built.map(|()| domid)
}

/// Everything after `createdomain`: memory, contents, tables, vCPU, unpause.
fn fill_domain(
    boot: &Boot,
    kernel: &PvKernel<'_>,
    layout: &BootLayout,
    domid: u16,
    nr_pages: u64,
    cmdline: &str,
) -> Result<(), BuildError> {
    // SAFETY: see `StagingCell`: the caller holds `BUILDING`; this is the one reference.
    let staging = unsafe { &mut *STAGING.0.get() };
    staging.tables.iter_mut().for_each(|table| table.fill(0));
    domctl(
        &mut XenDomctl::new(XEN_DOMCTL_MAX_VCPUS, domid, &XenDomctlMaxVcpus { max: 1 }),
        "max_vcpus",
    )?;
    let max_mem = XenDomctlMaxMem {
        max_memkb: nr_pages * 4,
    };
    domctl(
        &mut XenDomctl::new(XEN_DOMCTL_MAX_MEM, domid, &max_mem),
        "max_mem",
    )?;
    let p2m = &mut staging.p2m[..nr_pages as usize];
    for (pfn, slot) in p2m.iter_mut().enumerate() {
        *slot = pfn as u64;
    }
    // SAFETY: the frames go to the new domain; for a PV domain Xen returns their machine
    // numbers in the list.
    let populated = unsafe { guest::populate_physmap(p2m, 0, domid) }
        .map_err(|errno| BuildError::Xen("populate_physmap", errno))?;
    if populated != nr_pages {
        return Err(BuildError::Xen("populate_physmap", Errno::ENOMEM));
    }
    let mut info_request = XenDomctl::bare(XEN_DOMCTL_GETDOMAININFO, domid);
    domctl(&mut info_request, "getdomaininfo")?;
    let shared_info = info_request
        .result::<XenDomctlGetdomaininfo>()
        .shared_info_frame;
    let mfn = |va: u64| staging.p2m[layout.pfn(va) as usize];

    // The bootstrap tables: the whole region in 4 KiB pages, the tables read-only.
    // `child[t][i]` is the staging index of the table entry `i` of table `t` points to.
    let mut child = [[0u8; 512]; MAX_TABLES];
    let mut used = 1;
    for page in 0..layout.pages() {
        let va = layout.v_start + page * PAGE;
        let mut table = 0;
        for level in (2..=4u32).rev() {
            let index = ((va >> (12 + 9 * (level - 1))) & 511) as usize;
            if staging.tables[table][index] & PRESENT == 0 {
                if used == layout.nr_page_tables as usize {
                    return Err(BuildError::Size);
                }
                staging.tables[table][index] =
                    (mfn(layout.page_tables + used as u64 * PAGE) << 12) | TABLE_FLAGS;
                child[table][index] = used as u8;
                used += 1;
            }
            table = usize::from(child[table][index]);
        }
        let writable = if layout.is_page_table(va) {
            0
        } else {
            WRITABLE
        };
        staging.tables[table][((va >> 12) & 511) as usize] =
            (mfn(va) << 12) | PRESENT | USER | ACCESSED | DIRTY | writable;
    }

    let mut start_info = StartInfo::new_zeroed();
    start_info.set_magic();
    start_info.nr_pages = nr_pages;
    start_info.shared_info = shared_info << 12;
    start_info.store_mfn = mfn(layout.xenstore);
    start_info.console.mfn = mfn(layout.console);
    start_info.pt_base = layout.page_tables;
    start_info.nr_pt_frames = layout.nr_page_tables;
    start_info.mfn_list = layout.p2m;
    start_info.set_cmd_line(cmdline.as_bytes());

    // Every page of the region, through the scratch page.
    let scratch = vm::scratch(boot, SCRATCH);
    let own = vm::peek(vm::va_of(vm::walk(boot, scratch)[3]) + ((scratch >> 12) & 511) * 8);
    for page in 0..layout.pages() {
        let va = layout.v_start + page * PAGE;
        let bytes = &mut staging.page;
        bytes.fill(0);
        if va < kernel.kernel_end {
            fill_from(kernel, va, bytes);
        } else if (layout.p2m..layout.start_info).contains(&va) {
            let first = ((va - layout.p2m) / 8) as usize;
            let words = &staging.p2m[first.min(nr_pages as usize)..];
            let words = &words[..words.len().min(512)];
            bytes[..words.len() * 8].copy_from_slice(words.as_bytes());
        } else if va == layout.start_info {
            bytes[..size_of::<StartInfo>()].copy_from_slice(start_info.as_bytes());
        } else if layout.is_page_table(va) {
            let table = ((va - layout.page_tables) / PAGE) as usize;
            bytes.copy_from_slice(staging.tables[table].as_bytes());
        }
        // SAFETY: the scratch page is ours and nothing refers to it; Xen checks that the
        // frame belongs to `domid`.
        unsafe {
            guest::update_va_mapping_otherdomain(
                scratch,
                (mfn(va) << 12) | RW,
                UVMF_INVLPG | UVMF_LOCAL,
                domid,
            )
        }
        .map_err(|errno| BuildError::Xen("map a frame of the new domain", errno))?;
        // SAFETY: the scratch page now maps that frame, writable.
        unsafe {
            core::ptr::copy_nonoverlapping(bytes.as_ptr(), scratch as *mut u8, PAGE as usize)
        };
        // SAFETY: gives the scratch page its own frame back.
        unsafe { guest::update_va_mapping(scratch, own, UVMF_INVLPG | UVMF_LOCAL) }
            .map_err(|errno| BuildError::Xen("restore the scratch page", errno))?;
    }

    let l4 = mfn(layout.page_tables);
    // SAFETY: pins the new domain's root on its behalf; Xen validates the whole tree.
    unsafe {
        guest::mmuext_op(
            &[MmuextOp::pin_table(4, l4).ok_or(BuildError::Size)?],
            domid,
        )
    }
    .map_err(|error| BuildError::Xen("pin the new root", error.errno))?;
    if let Some(page) = kernel.hypercall_page {
        let init = XenDomctlHypercallInit { gmfn: mfn(page) };
        domctl(
            &mut XenDomctl::new(XEN_DOMCTL_HYPERCALL_INIT, domid, &init),
            "hypercall_init",
        )?;
    }

    let mut context = VcpuGuestContext::new_zeroed();
    context.flags = VGCF_IN_KERNEL | VGCF_ONLINE;
    context.user_regs.rip = kernel.entry;
    context.user_regs.rsp = layout.stack + PAGE;
    context.user_regs.rsi = layout.start_info;
    context.user_regs.rflags = 0x202;
    context.user_regs.cs = FLAT_KERNEL_CS64;
    context.user_regs.ss = FLAT_KERNEL_SS64;
    context.kernel_ss = u64::from(FLAT_KERNEL_SS64);
    context.kernel_sp = layout.stack + PAGE;
    context.ctrlreg[3] = xen_pfn_to_cr3(l4);
    let vcpu = XenDomctlVcpucontext {
        vcpu: 0,
        pad0: 0,
        ctxt: &context as *const VcpuGuestContext as u64,
    };
    domctl(
        &mut XenDomctl::new(XEN_DOMCTL_SETVCPUCONTEXT, domid, &vcpu),
        "setvcpucontext",
    )?;
    domctl(
        &mut XenDomctl::bare(XEN_DOMCTL_UNPAUSEDOMAIN, domid),
        "unpausedomain",
    )
}
