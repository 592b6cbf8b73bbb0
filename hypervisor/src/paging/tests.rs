//! One test per rule of the type and reference-count engine.

use super::audit::audit;
use super::refs::MAX_COUNT;
use super::testing::{FakeMmu, Storage, give, peek, poke};
use super::{Paging, PteWrite, emulate_pt_write};
use crate::domain::{Domain, DomainState, Vcpu};
use crate::frames::{FrameTable, Owner, PageType};
use crate::mm::fake::FakeMem;
use crate::mm::{Mfn, PhysMem, pte};
use crate::regs::TrapFrame;
use pv_abi::errno::Errno;

const RW: u64 = pte::PRESENT | pte::WRITABLE | pte::USER;
const RO: u64 = pte::PRESENT | pte::USER;

fn mem() -> FakeMem {
    FakeMem::new(super::testing::FRAMES)
}

/// A 4-level tree of domain 1: l4[0] -> l3, l3[0] -> l2, l2[0] -> l1, l1[i] -> data[i]
/// (writable). Nothing typed yet.
struct Tree {
    l4: Mfn,
    l3: Mfn,
    l2: Mfn,
    l1: Mfn,
    data: Vec<Mfn>,
}

fn tree(mem: &FakeMem, frames: &FrameTable<'_>) -> Tree {
    let f = give(frames, mem, 1, 8);
    let t = Tree {
        l4: f[0],
        l3: f[1],
        l2: f[2],
        l1: f[3],
        data: f[4..].to_vec(),
    };
    poke(mem, t.l4, 0, t.l3.addr() | RW);
    poke(mem, t.l3, 0, t.l2.addr() | RW);
    poke(mem, t.l2, 0, t.l1.addr() | RW);
    for (i, d) in t.data.iter().enumerate() {
        poke(mem, t.l1, i, d.addr() | RW);
    }
    t
}

fn vcpu(root: Mfn) -> Vcpu {
    Vcpu::new(TrapFrame::default(), root)
}

fn domain(root: Mfn) -> Domain {
    Domain {
        id: 1,
        name: heapless::String::try_from("t").unwrap(),
        state: DomainState::Running,
        privileged: false,
        nr_pages: 16,
        max_pages: 16,
        shared_info: Mfn(0),
        vm_assist: 0,
        exit_code: None,
        console_line: heapless::Vec::new(),
        vcpu: vcpu(root),
    }
}

#[test]
fn general_references_only_on_own_frames_and_never_wrap() {
    let mem = mem();
    let mut storage = Storage::new();
    let frames = storage.table();
    let mine = give(&frames, &mem, 1, 1)[0];
    let theirs = give(&frames, &mem, 2, 1)[0];
    let mut mmu = FakeMmu::new();
    let mut p = Paging::new(&mem, &frames, 1, &mut mmu);
    assert_eq!(p.get_page(mine), Ok(()));
    assert_eq!(p.get_page(theirs), Err(Errno::EINVAL));
    assert_eq!(p.get_page(Mfn(5)), Err(Errno::EINVAL), "hypervisor frame");
    assert_eq!(p.get_page(Mfn(1)), Err(Errno::EINVAL), "not RAM");
    assert_eq!(
        p.get_page(Mfn(1 << 40)),
        Err(Errno::EINVAL),
        "beyond the table"
    );
    let mut info = frames.info(mine);
    info.ref_count = MAX_COUNT;
    frames.set_info(mine, info);
    assert_eq!(p.get_page(mine), Err(Errno::EINVAL), "saturated");
    assert_eq!(frames.info(mine).ref_count, MAX_COUNT);
}

#[test]
fn one_type_at_a_time_and_type_counts_never_wrap() {
    let mem = mem();
    let mut storage = Storage::new();
    let frames = storage.table();
    let page = give(&frames, &mem, 1, 1)[0];
    let mut mmu = FakeMmu::new();
    {
        let mut p = Paging::new(&mem, &frames, 1, &mut mmu);
        p.get_page_and_type(page, PageType::Writable).unwrap();
        assert_eq!(
            p.get_page_and_type(page, PageType::L1Table),
            Err(Errno::EINVAL),
            "a writable page cannot become a page table"
        );
        p.get_page_and_type(page, PageType::Writable).unwrap();
        assert_eq!(frames.info(page).type_count, 2);
        p.put_page_and_type(page);
        p.put_page_and_type(page);
        // Count zero: the type may change, and the TLB is flushed first.
        p.get_page_and_type(page, PageType::L1Table).unwrap();
    }
    assert_eq!(
        mmu.flushes, 1,
        "writable -> L1 flushed stale writable entries"
    );
    let mut p = Paging::new(&mem, &frames, 1, &mut mmu);
    assert_eq!(
        p.get_page_and_type(page, PageType::Writable),
        Err(Errno::EINVAL)
    );
    let mut info = frames.info(page);
    info.type_count = MAX_COUNT;
    frames.set_info(page, info);
    assert_eq!(
        p.get_page_and_type(page, PageType::L1Table),
        Err(Errno::EINVAL)
    );
    assert_eq!(frames.info(page).type_count, MAX_COUNT);
    assert_eq!(
        frames.info(page).ref_count,
        1,
        "the failed attempt kept nothing"
    );
}

#[test]
fn pinning_an_l4_types_the_whole_tree_and_unpinning_releases_it() {
    let mem = mem();
    let mut storage = Storage::new();
    let frames = storage.table();
    let t = tree(&mem, &frames);
    // The L1 also maps the L2 read-only: reading one's own tables is allowed.
    poke(&mem, t.l1, 100, t.l2.addr() | RO);
    let mut mmu = FakeMmu::new();
    let mut p = Paging::new(&mem, &frames, 1, &mut mmu);
    p.pin(t.l4, 4).unwrap();
    for (mfn, ty) in [
        (t.l4, PageType::L4Table),
        (t.l3, PageType::L3Table),
        (t.l2, PageType::L2Table),
        (t.l1, PageType::L1Table),
        (t.data[0], PageType::Writable),
    ] {
        let info = frames.info(mfn);
        assert_eq!((info.page_type, info.type_count), (ty, 1), "{mfn:?}");
        assert!(info.validated);
    }
    assert_eq!(
        frames.info(t.l2).ref_count,
        2,
        "table entry + read-only mapping"
    );
    assert_eq!(
        peek(&mem, t.l4, 256),
        0xa000_0005,
        "hypervisor slot installed"
    );
    assert_eq!(peek(&mem, t.l4, 262), 0xb000_0003);
    audit(&mem, &frames, 1, &[], &[]).unwrap();
    assert_eq!(p.pin(t.l4, 4), Err(Errno::EINVAL), "pinned twice");
    p.unpin(t.l4).unwrap();
    assert_eq!(p.unpin(t.l4), Err(Errno::EINVAL), "not pinned");
    for mfn in [t.l4, t.l3, t.l2, t.l1, t.data[0]] {
        let info = frames.info(mfn);
        assert_eq!((info.type_count, info.ref_count), (0, 0), "{mfn:?}");
    }
    audit(&mem, &frames, 1, &[], &[]).unwrap();
}

#[test]
fn a_failed_validation_undoes_everything() {
    let mem = mem();
    let mut storage = Storage::new();
    let frames = storage.table();
    let t = tree(&mem, &frames);
    let foreign = give(&frames, &mem, 2, 1)[0];
    poke(&mem, t.l1, 200, foreign.addr() | RO);
    let mut mmu = FakeMmu::new();
    let mut p = Paging::new(&mem, &frames, 1, &mut mmu);
    assert_eq!(p.pin(t.l4, 4), Err(Errno::EBUSY), "another domain's frame");
    for mfn in [t.l4, t.l3, t.l2, t.l1, t.data[0], foreign] {
        let info = frames.info(mfn);
        assert_eq!(
            (info.type_count, info.ref_count, info.pinned),
            (0, 0, false)
        );
    }
    // The same for every kind of forbidden target.
    for (target, errno) in [
        (Mfn(5), Errno::EBUSY),    // the hypervisor's
        (Mfn(100), Errno::EBUSY),  // free
        (Mfn(2), Errno::EPERM),    // not RAM (MMIO)
        (Mfn(1000), Errno::EPERM), // beyond the frame table
    ] {
        poke(&mem, t.l1, 200, target.addr() | RO);
        assert_eq!(p.pin(t.l1, 1), Err(errno), "{target:?}");
    }
    poke(&mem, t.l1, 200, (1 << 36) | RO);
    assert_eq!(
        p.pin(t.l1, 1),
        Err(Errno::EINVAL),
        "beyond the physical width"
    );
    poke(&mem, t.l1, 200, t.data[0].addr() | RO | pte::CACHE_DISABLE);
    assert_eq!(p.pin(t.l1, 1), Err(Errno::EINVAL), "cache attributes");
    poke(&mem, t.l1, 200, 0);
    audit(&mem, &frames, 1, &[], &[]).unwrap();
}

#[test]
fn page_tables_are_never_writable() {
    let mem = mem();
    let mut storage = Storage::new();
    let frames = storage.table();
    let t = tree(&mem, &frames);
    let mut mmu = FakeMmu::new();
    let mut p = Paging::new(&mem, &frames, 1, &mut mmu);
    // A table that maps itself writable cannot be validated.
    poke(&mem, t.l1, 300, t.l1.addr() | RW);
    assert_eq!(p.pin(t.l1, 1), Err(Errno::EBUSY));
    poke(&mem, t.l1, 300, t.l1.addr() | RO);
    p.pin(t.l4, 4).unwrap();
    // Mapping any live table writable is refused; read-only is fine.
    for table in [t.l4, t.l3, t.l2, t.l1] {
        assert_eq!(
            p.update_entry(t.l1, 1, 301, table.addr() | RW, false),
            Err(Errno::EBUSY)
        );
        p.update_entry(t.l1, 1, 301, table.addr() | RO, false)
            .unwrap();
    }
    // A writably mapped page cannot become a table.
    assert_eq!(p.pin(t.data[1], 1), Err(Errno::EINVAL));
    // Pinning the data page as L1 works once its writable mapping is gone.
    p.update_entry(t.l1, 1, 1, t.data[1].addr() | RO, false)
        .unwrap();
    p.pin(t.data[1], 1).unwrap();
    audit(&mem, &frames, 1, &[], &[]).unwrap();
}

#[test]
fn upper_levels_need_the_next_table_type_and_refuse_superpages_and_linear_tables() {
    let mem = mem();
    let mut storage = Storage::new();
    let frames = storage.table();
    let t = tree(&mem, &frames);
    let mut mmu = FakeMmu::new();
    let mut p = Paging::new(&mem, &frames, 1, &mut mmu);
    p.pin(t.l4, 4).unwrap();
    let spare = give(&frames, &mem, 1, 1)[0];
    assert_eq!(
        p.update_entry(t.l2, 2, 1, spare.addr() | RW | pte::PAGE_SIZE, false),
        Err(Errno::EINVAL),
        "superpage"
    );
    // Linear (recursive) tables: an L2 naming an L2, an L4 naming itself.
    assert_eq!(
        p.update_entry(t.l2, 2, 1, t.l2.addr() | RO, false),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        p.update_entry(t.l4, 4, 1, t.l4.addr() | RO, false),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        p.update_entry(t.l3, 3, 1, t.l1.addr() | RO, false),
        Err(Errno::EINVAL)
    );
    // A fresh frame becomes an L1 on demand.
    let before = frames.info(spare);
    assert_eq!(before.page_type, PageType::None);
    p.update_entry(t.l2, 2, 1, spare.addr() | RW, false)
        .unwrap();
    assert_eq!(frames.info(spare).page_type, PageType::L1Table);
    // The hypervisor's L4 slots are not the guest's.
    for slot in [256, 262, 271] {
        assert_eq!(p.update_entry(t.l4, 4, slot, 0, false), Err(Errno::EINVAL));
    }
    audit(&mem, &frames, 1, &[], &[]).unwrap();
}

#[test]
fn updates_take_the_new_reference_before_dropping_the_old() {
    let mem = mem();
    let mut storage = Storage::new();
    let frames = storage.table();
    let t = tree(&mem, &frames);
    let mut mmu = FakeMmu::new();
    let mut p = Paging::new(&mem, &frames, 1, &mut mmu);
    p.pin(t.l3, 3).unwrap();
    // Rewriting the only entry naming the L2 with itself never drops it to zero.
    p.update_entry(t.l3, 3, 0, t.l2.addr() | RO, false).unwrap();
    assert!(frames.info(t.l2).validated);
    assert_eq!(frames.info(t.l2).type_count, 1);
    // Preserve-A/D keeps the hardware's bits.
    poke(
        &mem,
        t.l1,
        0,
        peek(&mem, t.l1, 0) | pte::ACCESSED | pte::DIRTY,
    );
    p.update_entry(t.l1, 1, 0, t.data[0].addr() | RO, true)
        .unwrap();
    assert_eq!(
        peek(&mem, t.l1, 0),
        t.data[0].addr() | RO | pte::ACCESSED | pte::DIRTY
    );
    assert_eq!(frames.info(t.data[0]).type_count, 0, "now read-only");
    // Errors change nothing.
    let before = peek(&mem, t.l1, 0);
    assert_eq!(
        p.update_entry(t.l1, 1, 0, Mfn(5).addr() | RO, false),
        Err(Errno::EBUSY)
    );
    assert_eq!(peek(&mem, t.l1, 0), before);
    // Entries gain the user bit, and L1 entries lose global.
    p.update_entry(
        t.l1,
        1,
        7,
        t.data[1].addr() | pte::PRESENT | pte::GLOBAL,
        false,
    )
    .unwrap();
    assert_eq!(peek(&mem, t.l1, 7), t.data[1].addr() | RO);
    audit(&mem, &frames, 1, &[], &[]).unwrap();
}

#[test]
fn mmu_update_writes_tables_with_validation_and_other_pages_plainly() {
    let mem = mem();
    let mut storage = Storage::new();
    let frames = storage.table();
    let t = tree(&mem, &frames);
    let foreign = give(&frames, &mem, 2, 1)[0];
    let mut mmu = FakeMmu::new();
    let mut p = Paging::new(&mem, &frames, 1, &mut mmu);
    p.pin(t.l4, 4).unwrap();
    assert_eq!(
        p.write_pte(t.l1.addr() + 8 * 9, Mfn(5).addr() | RO, false),
        Err(Errno::EBUSY)
    );
    p.write_pte(t.l1.addr() + 8 * 9, t.data[2].addr() | RO, false)
        .unwrap();
    // A page the domain may write: stored as is (here the data page, mapped writable).
    p.write_pte(t.data[0].addr() + 16, 0x1234, false).unwrap();
    assert_eq!(mem.read_u64(t.data[0].addr() + 16), 0x1234);
    assert_eq!(
        p.write_pte(foreign.addr(), 0, false),
        Err(Errno::EINVAL),
        "not ours"
    );
    audit(&mem, &frames, 1, &[], &[]).unwrap();
}

#[test]
fn base_pointers_hold_their_roots() {
    let mem = mem();
    let mut storage = Storage::new();
    let frames = storage.table();
    let t = tree(&mem, &frames);
    let mut mmu = FakeMmu::new();
    let mut d = domain(t.l4);
    {
        let mut p = Paging::new(&mem, &frames, 1, &mut mmu);
        p.get_page_and_type(t.l4, PageType::L4Table).unwrap(); // the builder's reference
        p.pin(t.l4, 4).unwrap();
        // A second address space sharing the L3.
        let l4b = give(&frames, &mem, 1, 1)[0];
        poke(&mem, l4b, 0, t.l3.addr() | RW);
        p.new_baseptr(&mut d.vcpu, l4b).unwrap();
        assert_eq!(d.vcpu.kernel_root, l4b);
        assert_eq!(frames.info(t.l3).type_count, 2);
        audit(&mem, &frames, 1, &[l4b], &[]).unwrap();
        // Unpinning the old root releases it completely.
        p.unpin(t.l4).unwrap();
        assert_eq!(frames.info(t.l4).type_count, 0);
        // The live root cannot be given back, or made anything else.
        assert_eq!(p.release(&mut d, l4b), Err(Errno::EBUSY));
        assert_eq!(p.clear_page(l4b), Err(Errno::EINVAL));
        assert_eq!(p.new_baseptr(&mut d.vcpu, t.data[0]), Err(Errno::EINVAL));
        assert_eq!(
            p.new_baseptr(&mut d.vcpu, give(&frames, &mem, 2, 1)[0]),
            Err(Errno::EINVAL)
        );
        // User root: recorded with a reference, 0 clears it.
        p.new_user_baseptr(&mut d.vcpu, t.l4.0).unwrap();
        assert_eq!(d.vcpu.user_root(), Some(t.l4));
        audit(&mem, &frames, 1, &[l4b, t.l4], &[]).unwrap();
        p.new_user_baseptr(&mut d.vcpu, 0).unwrap();
        assert_eq!(d.vcpu.user_root(), None);
        p.drop_roots(&mut d.vcpu);
        for index in 0..super::testing::FRAMES {
            let info = frames.info(Mfn(index as u64));
            assert_eq!((info.type_count, info.ref_count), (0, 0), "{index}");
        }
    }
    assert_eq!(mmu.loaded.len(), 1, "one switch loaded a new root");
}

#[test]
fn frames_go_back_only_when_nothing_uses_them() {
    let mem = mem();
    let mut storage = Storage::new();
    let frames = storage.table();
    let t = tree(&mem, &frames);
    let foreign = give(&frames, &mem, 2, 1)[0];
    let mut mmu = FakeMmu::new();
    let mut d = domain(t.l4);
    d.shared_info = t.data[3];
    let free_before = frames.free_count();
    {
        let mut p = Paging::new(&mem, &frames, 1, &mut mmu);
        p.pin(t.l4, 4).unwrap();
        assert_eq!(p.release(&mut d, foreign), Err(Errno::ENXIO));
        assert_eq!(p.release(&mut d, t.data[0]), Err(Errno::EBUSY), "mapped");
        assert_eq!(p.release(&mut d, t.l1), Err(Errno::EBUSY), "a page table");
        assert_eq!(
            p.release(&mut d, t.data[3]),
            Err(Errno::EINVAL),
            "shared info"
        );
        p.update_entry(t.l1, 1, 0, 0, false).unwrap();
        frames.set_m2p(t.data[0], 42);
        p.release(&mut d, t.data[0]).unwrap();
    }
    assert_eq!(frames.owner(t.data[0]), Owner::Free);
    assert_eq!(frames.m2p(t.data[0]), u64::MAX);
    assert_eq!(frames.free_count(), free_before + 1);
    assert_eq!(d.nr_pages, 15);
    assert!(mmu.flushes > 0, "stale entries flushed before reuse");
    // Allocation respects the limit and scrubs.
    for index in 0..super::testing::FRAMES {
        if frames.owner(Mfn(index as u64)) == Owner::Free {
            mem.write_u64(index as u64 * 4096, 0xdead);
        }
    }
    let again = super::reservation::allocate(&mem, &frames, &mut d, Some(7)).unwrap();
    assert_eq!(mem.read_u64(again.addr()), 0);
    assert_eq!(frames.m2p(again), 7);
    assert_eq!(
        super::reservation::allocate(&mem, &frames, &mut d, None),
        Err(Errno::ENOMEM)
    );
}

#[test]
fn clear_and_copy_page() {
    let mem = mem();
    let mut storage = Storage::new();
    let frames = storage.table();
    let t = tree(&mem, &frames);
    let mut mmu = FakeMmu::new();
    let mut p = Paging::new(&mem, &frames, 1, &mut mmu);
    p.pin(t.l4, 4).unwrap();
    mem.write_u64(t.data[1].addr() + 4088, 77);
    p.copy_page(t.data[2], t.data[1]).unwrap();
    assert_eq!(mem.read_u64(t.data[2].addr() + 4088), 77);
    p.copy_page(t.data[2], t.l1).unwrap(); // reading a table is fine
    assert_eq!(peek(&mem, t.data[2], 0), peek(&mem, t.l1, 0));
    assert_eq!(
        p.copy_page(t.l1, t.data[1]),
        Err(Errno::EINVAL),
        "into a table"
    );
    p.clear_page(t.data[2]).unwrap();
    assert_eq!(peek(&mem, t.data[2], 0), 0);
    assert_eq!(p.clear_page(t.l2), Err(Errno::EINVAL));
    audit(&mem, &frames, 1, &[], &[]).unwrap();
}

#[test]
fn emulated_stores_into_l1_tables_validate_like_mmu_update() {
    let mem = mem();
    let mut storage = Storage::new();
    let frames = storage.table();
    let t = tree(&mem, &frames);
    // The L1 maps itself read-only at va 0x1ff000 (slot 511).
    poke(&mem, t.l1, 511, t.l1.addr() | RO);
    let mut mmu = FakeMmu::new();
    let mut d = domain(t.l4);
    {
        let mut p = Paging::new(&mem, &frames, 1, &mut mmu);
        p.pin(t.l4, 4).unwrap();
    }
    let table_va = 0x1f_f000;
    let store = |va, value, width| PteWrite { va, value, width };
    assert_eq!(
        emulate_pt_write(&d, &mem, &frames, &mut mmu, store(table_va + 8 * 9, 0, 8)),
        Err(Errno::EPERM),
        "needs the writable-pagetables assist"
    );
    d.vm_assist = 1 << 2;
    let mapping = t.data[2].addr() | RO;
    emulate_pt_write(
        &d,
        &mem,
        &frames,
        &mut mmu,
        store(table_va + 8 * 9, mapping, 8),
    )
    .unwrap();
    assert_eq!(peek(&mem, t.l1, 9), mapping);
    // Two 4-byte halves.
    emulate_pt_write(
        &d,
        &mem,
        &frames,
        &mut mmu,
        store(table_va + 8 * 10, mapping, 4),
    )
    .unwrap();
    assert_eq!(peek(&mem, t.l1, 10), mapping);
    emulate_pt_write(
        &d,
        &mem,
        &frames,
        &mut mmu,
        store(table_va + 8 * 10 + 4, 1 << 31, 4),
    )
    .unwrap();
    assert_eq!(peek(&mem, t.l1, 10), mapping | pte::NO_EXECUTE);
    for (write, errno) in [
        (store(table_va + 8 * 11, t.l1.addr() | RW, 8), Errno::EBUSY),
        (
            store(table_va + 8 * 11, Mfn(5).addr() | RO, 8),
            Errno::EBUSY,
        ),
        (
            store(table_va + 8 * 11, Mfn(2).addr() | RO, 8),
            Errno::EPERM,
        ),
        (store(table_va + 8 * 11 + 2, 0, 4), Errno::EINVAL),
        (store(table_va + 8 * 11, 0, 2), Errno::EINVAL),
        // A data page is not a table: no emulation.
        (store(0x1000, 0, 8), Errno::EINVAL),
        (store(0xffff_8000_0000_0000, 0, 8), Errno::EINVAL),
    ] {
        assert_eq!(
            emulate_pt_write(&d, &mem, &frames, &mut mmu, write),
            Err(errno),
            "{write:?}"
        );
    }
    assert_eq!(peek(&mem, t.l1, 11), 0);
    audit(&mem, &frames, 1, &[], &[]).unwrap();
}

#[test]
fn the_va_walk_finds_l1_slots_only_in_live_guest_tables() {
    let mem = mem();
    let mut storage = Storage::new();
    let frames = storage.table();
    let t = tree(&mem, &frames);
    let mut mmu = FakeMmu::new();
    let mut p = Paging::new(&mem, &frames, 1, &mut mmu);
    assert_eq!(
        p.l1_slot_for(t.l4, 0x3000),
        Err(Errno::EINVAL),
        "not validated"
    );
    p.pin(t.l4, 4).unwrap();
    assert_eq!(p.l1_slot_for(t.l4, 0x3000), Ok((t.l1, 3)));
    assert_eq!(p.l1_slot_for(t.l4, 0x40_0000), Err(Errno::EINVAL), "no L1");
    assert_eq!(
        p.l1_slot_for(t.l4, 1 << 47),
        Err(Errno::EINVAL),
        "non-canonical"
    );
    assert_eq!(
        p.l1_slot_for(t.l4, 0xffff_8000_0000_1000),
        Err(Errno::EINVAL),
        "hypervisor range"
    );
}

/// The engine remembers the last live L1 it wrote (a batch looks the table's record up
/// once); once that table stops being one, the next write to it is a plain store again.
#[test]
fn a_remembered_l1_is_forgotten_when_it_stops_being_a_table() {
    let mem = mem();
    let mut storage = Storage::new();
    let frames = storage.table();
    let t = tree(&mem, &frames);
    let mut mmu = FakeMmu::new();
    let mut p = Paging::new(&mem, &frames, 1, &mut mmu);
    p.pin(t.l4, 4).unwrap();
    // A validated write remembers the L1 ...
    p.write_pte(t.l1.addr() + 8 * 9, t.data[2].addr() | RO, false)
        .unwrap();
    assert_eq!(frames.info(t.data[2]).ref_count, 2);
    // ... which then leaves the tree: its last type reference goes.
    p.write_pte(t.l2.addr(), 0, false).unwrap();
    assert_eq!(frames.info(t.l1).type_count, 0);
    // A plain page of the domain now: the next write is stored as is, taking no
    // reference (as a fresh engine would do), and a value no table could hold is fine.
    let plain = Mfn(5).addr() | RW;
    p.write_pte(t.l1.addr() + 8 * 10, plain, false).unwrap();
    assert_eq!(mem.read_u64(t.l1.addr() + 8 * 10), plain);
    audit(&mem, &frames, 1, &[], &[]).unwrap();
}

#[test]
fn unhooking_a_subtree_flushes_nothing_until_a_frame_of_it_changes_use() {
    let mem = mem();
    let mut storage = Storage::new();
    let frames = storage.table();
    let t = tree(&mem, &frames);
    let mut mmu = FakeMmu::new();
    {
        let mut p = Paging::new(&mem, &frames, 1, &mut mmu);
        p.pin(t.l4, 4).unwrap();
        // The guest unhooks its L2 (and so the L1 and the data pages' writable types)
        // and hooks it back: its own cached view is its own to flush.
        p.update_entry(t.l3, 3, 0, 0, false).unwrap();
        assert!(!frames.info(t.l1).validated, "the subtree was released");
        assert_eq!(frames.info(t.data[0]).type_count, 0);
        p.update_entry(t.l3, 3, 0, t.l2.addr() | RW, false).unwrap();
        p.update_entry(t.l3, 3, 0, 0, false).unwrap();
    }
    assert_eq!(mmu.flushes, 0, "L2..L4 updates flush nothing");
    {
        // Taking the same use again needs no flush either: a cached walk through the
        // old tables reaches what the revalidated tables allow.
        let mut p = Paging::new(&mem, &frames, 1, &mut mmu);
        p.get_page_and_type(t.l2, PageType::L2Table).unwrap();
        assert!(frames.info(t.l1).validated);
        p.put_page_and_type(t.l2);
    }
    assert_eq!(mmu.flushes, 0, "L2 -> L2, L1 -> L1, writable -> writable");
    {
        // A cached translation may still write the old data page: it is flushed for
        // before the frame becomes a table.
        let mut p = Paging::new(&mem, &frames, 1, &mut mmu);
        p.get_page_and_type(t.data[0], PageType::L1Table).unwrap();
    }
    assert_eq!(mmu.flushes, 1, "writable -> L1 flushes");
    {
        // The old L1 lost its last use before that flush (the TLB clock moved since):
        // it becomes writable without another. Its general reference, taken first,
        // does not count as a use.
        let mut p = Paging::new(&mem, &frames, 1, &mut mmu);
        p.get_page_and_type(t.l1, PageType::Writable).unwrap();
    }
    assert_eq!(mmu.flushes, 1, "L1 -> writable after a flush: none needed");
    {
        // A data page mapped writable and dropped after the last flush is flushed
        // for again.
        let mut p = Paging::new(&mem, &frames, 1, &mut mmu);
        p.get_page_and_type(t.data[1], PageType::Writable).unwrap();
        p.put_page_and_type(t.data[1]);
        p.get_page_and_type(t.data[1], PageType::L1Table).unwrap();
    }
    assert_eq!(
        mmu.flushes, 2,
        "writable -> L1 within one clock tick flushes"
    );
}

#[test]
fn the_tlb_clock_is_stamped_when_a_reference_drops_and_wraps_safely() {
    let mem = mem();
    let mut storage = Storage::new();
    let frames = storage.table();
    let page = give(&frames, &mem, 1, 1)[0];
    let mut mmu = FakeMmu::new();
    let mut p = Paging::new(&mem, &frames, 1, &mut mmu);
    p.get_page_and_type(page, PageType::Writable).unwrap();
    p.flush_all();
    p.get_page_and_type(page, PageType::Writable).unwrap();
    assert_eq!(
        frames.info(page).stamp,
        u8::MAX,
        "in use since its allocation: the fresh frame's stamp, one tick before the clock then"
    );
    p.put_page_and_type(page);
    assert_eq!(frames.info(page).stamp, 1, "a dropped reference stamps it");
    p.put_page_and_type(page);
    assert_eq!(frames.info(page).stamp, 1, "and the drop to zero");
    // A stamp equal to the clock after exactly 256 flushes flushes again (the clock
    // wraps; an unneeded flush, never a missed one).
    for _ in 0..256 {
        p.flush_all();
    }
    p.get_page_and_type(page, PageType::L1Table).unwrap();
    let _ = p;
    assert_eq!(
        mmu.flushes, 258,
        "1 + 256 + the one the wrapped clock asked for"
    );
}

#[test]
fn unmapping_the_last_writable_mapping_stamps_the_page() {
    let mem = mem();
    let mut storage = Storage::new();
    let frames = storage.table();
    let t = tree(&mem, &frames);
    let mut mmu = FakeMmu::new();
    {
        let mut p = Paging::new(&mem, &frames, 1, &mut mmu);
        p.pin(t.l4, 4).unwrap();
        p.flush_all();
        // The L1 entry's writable mapping was the page's last use: dropped (in one
        // count update) after the last flush.
        p.update_entry(t.l1, 1, 2, 0, false).unwrap();
        assert_eq!(frames.info(t.data[2]).type_count, 0);
        p.get_page_and_type(t.data[2], PageType::L1Table).unwrap();
    }
    assert_eq!(
        mmu.flushes, 2,
        "a TLB entry may still write it: flushed for"
    );
}

#[test]
fn a_released_frame_is_flushed_for_only_if_a_mapping_may_still_be_cached() {
    let mem = mem();
    let mut storage = Storage::new();
    let frames = storage.table();
    let t = tree(&mem, &frames);
    let mut d = domain(t.l4);
    let spare = give(&frames, &mem, 1, 1)[0];
    let mut mmu = FakeMmu::new();
    {
        let mut p = Paging::new(&mem, &frames, 1, &mut mmu);
        p.pin(t.l4, 4).unwrap();
        // Two pages mapped read-only across a flush, then unmapped with none: a CPU may
        // still read them through the cached translations.
        for i in 0..2 {
            p.update_entry(t.l1, 1, i, t.data[i].addr() | RO, false)
                .unwrap();
        }
        p.flush_all();
        for i in 0..2 {
            p.update_entry(t.l1, 1, i, 0, false).unwrap();
        }
        // Given back together: the first is flushed for, which covers the second.
        p.release(&mut d, t.data[0]).unwrap();
        p.release(&mut d, t.data[1]).unwrap();
        // Nothing ever mapped the spare.
        p.release(&mut d, spare).unwrap();
    }
    assert_eq!(mmu.flushes, 2, "the explicit flush and one for the batch");
    assert_eq!(frames.owner(t.data[1]), Owner::Free);
}
