//! The domain builder: turns a PV kernel image and a domain spec into a ready-to-run
//! domain with Xen's x86_64 PV start-of-day layout.
//!
//! The boot region is laid out as [`pv_abi::boot`] describes; the shared-info page is a
//! separate frame, announced by machine address in start_info.

use crate::bootimage::DomainSpec;
use crate::domain::{Domain, DomainState, Vcpu};
use crate::elf::{ElfError, PvKernel};
use crate::frames::{DomId, FrameTable, Owner, PageType};
use crate::mm::{self, Mfn, PAGE_SIZE, PhysMem, pte};
use crate::paging::{Mmu, Paging};
use crate::regs::TrapFrame;
use pv_abi::arch_x86_64::{FLAT_KERNEL_CS64, FLAT_KERNEL_SS64};
pub use pv_abi::boot::BootLayout;
use pv_abi::errno::Errno;
use pv_abi::xen::{Hypercall, SIF_INITDOMAIN, SIF_PRIVILEGED, StartInfo};
use zerocopy::{FromZeros, IntoBytes};

/// Most P2M pages the builder handles (each describes 512 frames): 1 GiB per domain.
pub const MAX_P2M_PAGES: usize = 512;
/// Most memory a domain may have, in pages.
pub const MAX_DOMAIN_PAGES: u64 = (MAX_P2M_PAGES * 512) as u64;
/// RFLAGS a vCPU starts with: interrupts enabled, reserved bit 1.
pub const INITIAL_RFLAGS: u64 = 0x202;

/// Why a domain could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildError {
    /// The kernel image is not a loadable PV kernel.
    Elf(ElfError),
    /// The domain's memory cannot hold its boot region.
    TooLittleMemory,
    /// More memory than a domain may have ([`MAX_DOMAIN_PAGES`]).
    TooMuchMemory,
    /// The machine ran out of free frames.
    OutOfFrames,
    /// Validating the bootstrap page tables failed (a builder bug).
    PageTables(Errno),
}

impl From<ElfError> for BuildError {
    fn from(error: ElfError) -> Self {
        BuildError::Elf(error)
    }
}

impl core::fmt::Display for BuildError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BuildError::Elf(e) => write!(f, "kernel image: {e}"),
            BuildError::TooLittleMemory => f.write_str("memory too small for the boot region"),
            BuildError::TooMuchMemory => f.write_str("memory above the per-domain limit"),
            BuildError::OutOfFrames => f.write_str("machine out of free frames"),
            BuildError::PageTables(errno) => write!(f, "bootstrap page tables rejected: {errno:?}"),
        }
    }
}

/// Writes Xen's hypercall stubs: `push %rcx; push %r11; mov $nr,%eax; syscall;
/// pop %r11; pop %rcx; ret` at `nr * 32`, and for `iret` a stub that also pushes %rax and
/// does not return.
pub fn hypercall_page() -> [u8; 4096] {
    let mut page = [0xcc_u8; 4096]; // int3 between stubs
    for nr in 0..128u32 {
        let stub = &mut page[nr as usize * 32..][..32];
        let number = nr.to_le_bytes();
        if u64::from(nr) == Hypercall::Iret as u64 {
            let code = [
                0x51, 0x41, 0x53, 0x50, 0xb8, number[0], number[1], number[2], number[3], 0x0f,
                0x05,
            ];
            stub[..code.len()].copy_from_slice(&code);
        } else {
            let code = [
                0x51, 0x41, 0x53, 0xb8, number[0], number[1], number[2], number[3], 0x0f, 0x05,
                0x41, 0x5b, 0x59, 0xc3,
            ];
            stub[..code.len()].copy_from_slice(&code);
        }
    }
    page
}

/// The pseudo-physical to machine map of a domain under construction, kept in the
/// guest's own P2M pages.
struct P2m<'m, M: PhysMem> {
    mem: &'m M,
    pages: heapless::Vec<Mfn, MAX_P2M_PAGES>,
}

impl<M: PhysMem> P2m<'_, M> {
    fn slot(&self, pfn: u64) -> u64 {
        self.pages[(pfn / 512) as usize].addr() + (pfn % 512) * 8
    }
    fn set(&self, pfn: u64, mfn: Mfn) {
        self.mem.write_u64(self.slot(pfn), mfn.0);
    }
    fn get(&self, pfn: u64) -> Mfn {
        Mfn(self.mem.read_u64(self.slot(pfn)))
    }
}

/// The builder's stand-in for the CPU: the domain is not running, so there is nothing to
/// flush or load (and it says so: no flush is counted on the TLB clock for it); its own
/// entries name real frames, so every address width is fine.
struct BuilderMmu<'a>(&'a [(usize, u64)]);

impl Mmu for BuilderMmu<'_> {
    fn flush_all(&mut self) -> bool {
        false
    }
    fn flush_va(&mut self, _va: u64) {}
    fn load_root(&mut self, _root: Mfn) -> bool {
        false
    }
    fn hypervisor_l4(&self) -> &[(usize, u64)] {
        self.0
    }
    fn undecodable_bits(&self) -> u64 {
        0
    }
}

/// Everything the builder needs from the machine.
pub struct Machine<'a, 'f, M: PhysMem> {
    /// Machine memory.
    pub mem: &'a M,
    /// The frame table to allocate from.
    pub frames: &'a mut FrameTable<'f>,
    /// L4 slots (index, entry) every address space carries for the hypervisor.
    pub hypervisor_l4: &'a [(usize, u64)],
}

/// Builds domain `id` from `spec`. On failure every frame taken is given back.
pub fn build<M: PhysMem>(
    machine: &mut Machine<'_, '_, M>,
    id: DomId,
    spec: &DomainSpec<'_>,
) -> Result<Domain, BuildError> {
    let result = build_inner(machine, id, spec);
    if result.is_err() {
        machine.frames.release_domain(id);
    }
    result
}

fn build_inner<M: PhysMem>(
    machine: &mut Machine<'_, '_, M>,
    id: DomId,
    spec: &DomainSpec<'_>,
) -> Result<Domain, BuildError> {
    let kernel = PvKernel::parse(spec.kernel)?;
    let nr_pages = spec.memory_kib / 4;
    if nr_pages > MAX_DOMAIN_PAGES {
        return Err(BuildError::TooMuchMemory);
    }
    let layout = BootLayout::compute(kernel.virt_base, kernel.kernel_end, nr_pages);
    if layout.pages() > nr_pages {
        return Err(BuildError::TooLittleMemory);
    }
    let owner = Owner::Domain(id);
    let mem = machine.mem;
    let alloc = || {
        machine
            .frames
            .alloc(owner, mem)
            .ok_or(BuildError::OutOfFrames)
    };

    // P2M pages first, so every later frame can be recorded as it is taken.
    let mut p2m = P2m {
        mem,
        pages: heapless::Vec::new(),
    };
    let p2m_first = layout.pfn(layout.p2m);
    let p2m_count = (nr_pages * 8).div_ceil(PAGE_SIZE);
    for _ in 0..p2m_count {
        let frame = alloc()?;
        // Capacity holds MAX_DOMAIN_PAGES entries, checked above.
        p2m.pages
            .push(frame)
            .map_err(|_| BuildError::TooMuchMemory)?;
    }
    for pfn in 0..nr_pages {
        let mfn = if (p2m_first..p2m_first + p2m_count).contains(&pfn) {
            p2m.pages[(pfn - p2m_first) as usize]
        } else {
            alloc()?
        };
        p2m.set(pfn, mfn);
        machine.frames.set_m2p(mfn, pfn);
    }
    let shared_info = alloc()?;
    let frame_of = |va: u64| p2m.get(layout.pfn(va));

    // The kernel image.
    for segment in &kernel.segments {
        let bytes = kernel.segment_bytes(segment);
        let mut done = 0usize;
        while done < bytes.len() {
            let va = segment.vaddr + done as u64;
            let in_page = (PAGE_SIZE - va % PAGE_SIZE) as usize;
            let n = in_page.min(bytes.len() - done);
            mem.write(frame_of(va).addr() + va % PAGE_SIZE, &bytes[done..done + n]);
            done += n;
        }
    }
    if let Some(page) = kernel.hypercall_page {
        mem.write(frame_of(page).addr(), &hypercall_page());
    }

    // Bootstrap page tables: map the whole region, page tables read-only.
    let l4 = frame_of(layout.page_tables);
    let mut next_table = 1;
    let table_flags = pte::PRESENT | pte::WRITABLE | pte::USER | pte::ACCESSED;
    let mut va = layout.v_start;
    while va < layout.v_end {
        let mut table = l4;
        for level in (2..=4).rev() {
            let slot = table.addr() + mm::table_index(va, level) as u64 * 8;
            let entry = mem.read_u64(slot);
            table = if entry & pte::PRESENT != 0 {
                Mfn::containing(entry & pte::ADDRESS_MASK)
            } else {
                let fresh = frame_of(layout.page_tables + next_table * PAGE_SIZE);
                next_table += 1;
                mem.write_u64(slot, fresh.addr() | table_flags);
                fresh
            };
        }
        let writable = if layout.is_page_table(va) {
            0
        } else {
            pte::WRITABLE
        };
        let leaf =
            frame_of(va).addr() | pte::PRESENT | pte::USER | pte::ACCESSED | pte::DIRTY | writable;
        mem.write_u64(table.addr() + mm::table_index(va, 1) as u64 * 8, leaf);
        va += PAGE_SIZE;
    }
    for &(slot, entry) in machine.hypervisor_l4 {
        mem.write_u64(l4.addr() + slot as u64 * 8, entry);
    }

    // Type the tables the Xen way: pinning the root validates the whole tree, which takes
    // a reference on every mapped frame (the writable ones become `Writable`, the tables
    // stay read-only); the vCPU's base pointer holds a second reference on the root.
    let mut mmu = BuilderMmu(machine.hypervisor_l4);
    let mut paging = Paging::new(mem, &*machine.frames, id, &mut mmu);
    paging.pin(l4, 4).map_err(BuildError::PageTables)?;
    paging
        .get_page_and_type(l4, PageType::L4Table)
        .map_err(BuildError::PageTables)?;
    // The shared-info page is the domain's, but the hypervisor writes it by machine
    // address for the domain's whole life (event bits, time, each vCPU's CR2 and masks):
    // it holds a writable-page reference of its own on it, as Xen's
    // `share_xen_page_with_guest` does, so the page can never take a page-table type.
    // (Untyped, it could be pinned as a table whose entries the hypervisor's own stores
    // then forge: found by review.)
    paging
        .get_page_and_type(shared_info, PageType::Writable)
        .map_err(BuildError::PageTables)?;

    // start_info.
    let mut info = StartInfo::new_zeroed();
    info.set_magic();
    info.nr_pages = nr_pages;
    info.shared_info = shared_info.addr();
    info.flags = if spec.privileged {
        SIF_PRIVILEGED | SIF_INITDOMAIN
    } else {
        0
    };
    info.store_mfn = frame_of(layout.xenstore).0;
    info.console.mfn = frame_of(layout.console).0;
    info.pt_base = layout.page_tables;
    info.nr_pt_frames = layout.nr_page_tables;
    info.mfn_list = layout.p2m;
    info.set_cmd_line(spec.cmdline.as_bytes());
    mem.write(frame_of(layout.start_info).addr(), info.as_bytes());

    let regs = TrapFrame {
        rip: kernel.entry,
        cs: u64::from(FLAT_KERNEL_CS64),
        rflags: INITIAL_RFLAGS,
        rsp: layout.stack + PAGE_SIZE,
        ss: u64::from(FLAT_KERNEL_SS64),
        rsi: layout.start_info,
        ..TrapFrame::default()
    };
    let mut name = heapless::String::new();
    for c in spec.name.chars() {
        if name.push(c).is_err() {
            break;
        }
    }
    Ok(Domain {
        id,
        name,
        state: DomainState::Running,
        privileged: spec.privileged,
        nr_pages,
        max_pages: nr_pages,
        shared_info,
        vm_assist: 0,
        exit_code: None,
        console_line: heapless::Vec::new(),
        vcpu: Vcpu::new(regs, l4),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::testing::{BASE, tiny_kernel};
    use crate::frames::FrameInfo;
    use crate::mm::fake::FakeMem;
    use zerocopy::FromBytes;

    const FRAMES: usize = 4096;

    fn spec<'a>(kernel: &'a [u8], memory_kib: u64) -> DomainSpec<'a> {
        DomainSpec {
            name: "t",
            memory_kib,
            vcpus: 1,
            weight: 256,
            cap: 0,
            privileged: false,
            cmdline: "hello=1",
            kernel,
        }
    }

    /// Walks the guest tables the way the MMU would.
    fn translate(mem: &FakeMem, root: Mfn, va: u64) -> Option<(u64, u64)> {
        let mut table = root;
        for level in (1..=4).rev() {
            let entry = mem.read_u64(table.addr() + mm::table_index(va, level) as u64 * 8);
            if entry & pte::PRESENT == 0 {
                return None;
            }
            if level == 1 {
                return Some(((entry & pte::ADDRESS_MASK) + va % PAGE_SIZE, entry));
            }
            table = Mfn::containing(entry & pte::ADDRESS_MASK);
        }
        None
    }

    #[test]
    fn builds_xen_start_of_day_layout() {
        let mem = FakeMem::new(FRAMES);
        let mut storage = vec![FrameInfo::default(); FRAMES];
        let mut m2p = vec![0u64; FRAMES];
        let mut frames = FrameTable::new(&mut storage);
        frames.attach_m2p(&mut m2p);
        frames.add_ram(Mfn(16), Mfn(FRAMES as u64));
        let before = frames.free_count();
        let image = tiny_kernel(&[]);
        let hv = [(262usize, 0x1234_5003u64)];
        let mut machine = Machine {
            mem: &mem,
            frames: &mut frames,
            hypervisor_l4: &hv,
        };
        let domain = build(&mut machine, 1, &spec(&image, 8 * 1024)).unwrap();
        assert_eq!(domain.nr_pages, 2048);
        assert_eq!(frames.count_owned(1), 2048 + 1, "memory plus shared_info");
        assert_eq!(frames.free_count(), before - 2049);

        let root = domain.vcpu.kernel_root;
        let si_va = domain.vcpu.regs.rsi;
        let (si_addr, si_pte) = translate(&mem, root, si_va).unwrap();
        assert_ne!(si_pte & pte::USER, 0);
        let mut bytes = vec![0u8; core::mem::size_of::<StartInfo>()];
        mem.read(si_addr, &mut bytes);
        let info = StartInfo::read_from_bytes(&bytes).unwrap();
        assert!(info.has_valid_magic());
        assert_eq!(info.nr_pages, 2048);
        assert_eq!(info.cmd_line_bytes(), b"hello=1");
        assert_eq!(Mfn::containing(info.shared_info), domain.shared_info);
        // The L4 is mapped read-only at pt_base and is the vCPU's root.
        let (l4_addr, l4_pte) = translate(&mem, root, info.pt_base).unwrap();
        assert_eq!(Mfn::containing(l4_addr), root);
        assert_eq!(l4_pte & pte::WRITABLE, 0);
        // Every P2M entry names a frame of this domain, and the P2M agrees with the tables.
        for pfn in 0..info.nr_pages {
            let (addr, _) = translate(&mem, root, info.mfn_list + pfn * 8).unwrap();
            let mfn = Mfn(mem.read_u64(addr));
            assert_eq!(frames.owner(mfn), Owner::Domain(1));
            if pfn < 1024 {
                let (at, _) = translate(&mem, root, BASE + pfn * PAGE_SIZE).unwrap();
                assert_eq!(Mfn::containing(at), mfn);
            }
        }
        // The kernel bytes and the hypercall page are in place.
        let (code, _) = translate(&mem, root, BASE + 0x1000).unwrap();
        assert_eq!(mem.read_u64(code) & 0xff_ffff, 0xf4_9090);
        let (page, _) = translate(&mem, root, BASE + 0x2000 + 17 * 32).unwrap();
        let mut stub = [0u8; 14];
        mem.read(page, &mut stub);
        assert_eq!(
            stub,
            [
                0x51, 0x41, 0x53, 0xb8, 17, 0, 0, 0, 0x0f, 0x05, 0x41, 0x5b, 0x59, 0xc3
            ]
        );
        // The hypervisor slot is installed; the stack is mapped; 512 KiB padding follows.
        assert_eq!(mem.read_u64(root.addr() + 262 * 8), 0x1234_5003);
        assert!(translate(&mem, root, domain.vcpu.regs.rsp - 8).is_some());
        let layout_end = domain.vcpu.regs.rsp; // stack top
        assert!(translate(&mem, root, layout_end + pv_abi::boot::MIN_PADDING - 1).is_some());
        // The tables are typed the Xen way: the root pinned and held by the vCPU, every
        // table validated and mapped read-only, every other mapped page writable.
        let root_info = frames.info(root);
        assert_eq!(
            (root_info.page_type, root_info.type_count, root_info.pinned),
            (PageType::L4Table, 2, true)
        );
        let table_of = |va: u64| Mfn::containing(translate(&mem, root, va).unwrap().0);
        assert_eq!(table_of(info.pt_base), root);
        for table in 1..info.nr_pt_frames {
            let frame = table_of(info.pt_base + table * PAGE_SIZE);
            assert!(frames.info(frame).page_type.table_level().is_some());
            assert!(frames.info(frame).validated);
        }
        for va in [si_va, domain.vcpu.regs.rsp - 8, BASE + 0x1000] {
            let page = table_of(va);
            assert_eq!(frames.info(page).page_type, PageType::Writable, "{va:#x}");
            assert_eq!(frames.info(page).type_count, 1);
        }
        // Not mapped; held by the hypervisor as a writable page, so no table type fits.
        let shared = frames.info(domain.shared_info);
        assert_eq!(
            (shared.page_type, shared.ref_count, shared.type_count),
            (PageType::Writable, 1, 1)
        );
        for pfn in [0u64, 1, 2047] {
            let (addr, _) = translate(&mem, root, info.mfn_list + pfn * 8).unwrap();
            assert_eq!(frames.m2p(Mfn(mem.read_u64(addr))), pfn);
        }
        crate::paging::audit::audit(&mem, &frames, 1, &[root], &[domain.shared_info]).unwrap();
        // Tear-down returns every frame.
        assert_eq!(frames.release_domain(1), 2049);
        assert_eq!(frames.free_count(), before);
        // Again and again: nothing leaks.
        for _ in 0..3 {
            let mut machine = Machine {
                mem: &mem,
                frames: &mut frames,
                hypervisor_l4: &hv,
            };
            build(&mut machine, 2, &spec(&image, 8 * 1024)).unwrap();
            assert_eq!(frames.release_domain(2), 2049);
            assert_eq!(frames.free_count(), before);
        }
    }

    #[test]
    fn failures_give_every_frame_back() {
        let mem = FakeMem::new(FRAMES);
        let mut storage = vec![FrameInfo::default(); FRAMES];
        let mut frames = FrameTable::new(&mut storage);
        frames.add_ram(Mfn(16), Mfn(1000));
        let before = frames.free_count();
        let image = tiny_kernel(&[]);
        let mut machine = Machine {
            mem: &mem,
            frames: &mut frames,
            hypervisor_l4: &[],
        };
        // More memory than the machine has.
        assert_eq!(
            build(&mut machine, 1, &spec(&image, 8 * 1024)).unwrap_err(),
            BuildError::OutOfFrames
        );
        // Too little for the boot region.
        assert_eq!(
            build(&mut machine, 1, &spec(&image, 1024)).unwrap_err(),
            BuildError::TooLittleMemory
        );
        assert_eq!(
            build(&mut machine, 1, &spec(&image, 1 << 30)).unwrap_err(),
            BuildError::TooMuchMemory
        );
        assert!(matches!(
            build(&mut machine, 1, &spec(&image[..100], 4096)),
            Err(BuildError::Elf(_))
        ));
        assert_eq!(frames.free_count(), before);
    }
}
