//! Virtual memory the PV way: every page-table change goes through batched hypercalls
//! (`mmu_update`, `mmuext_op`, `update_va_mapping`), never a plain store.
//!
//! The kernel's boot region maps pseudo-physical frame `n` at `KERNEL_BASE + n * 4096`;
//! the P2M list (start_info.mfn_list) and the hypervisor's read-only M2P table translate
//! between pseudo-physical and machine frames. The 512 KiB of padding after the boot stack
//! is mapped but unused: these tests borrow its pages as scratch frames and put every
//! mapping back as they found it.

use crate::Boot;
use pv_abi::Errno;
use pv_abi::guest;
use pv_abi::xen::{DOMID_SELF, MmuUpdate, MmuextOp, UVMF_INVLPG, UVMF_LOCAL};
use pv_guest_kernel::selftest::{Outcome, failure};

/// Where the kernel's boot region starts (its ELF `virt_base`).
pub const KERNEL_BASE: u64 = 0xffff_ffff_8000_0000;
/// Where the hypervisor maps the machine-to-phys table (RO_MPT_VIRT_START).
pub const M2P_BASE: u64 = 0xffff_8000_0000_0000;
/// Entry bits.
pub const PRESENT: u64 = 1;
/// Writable.
pub const WRITABLE: u64 = 2;
/// User (forced on by the hypervisor anyway).
pub const USER: u64 = 4;
/// Read-only mapping bits.
pub const RO: u64 = PRESENT | USER;
/// Writable mapping bits.
pub const RW: u64 = PRESENT | WRITABLE | USER;
/// Accessed (set by the CPU on a walk; set ahead in tables a builder makes).
pub const ACCESSED: u64 = 0x20;
/// Dirty (likewise, for leaf entries).
pub const DIRTY: u64 = 0x40;
const ADDRESS: u64 = 0x000f_ffff_ffff_f000;

macro_rules! fail {
    ($($arg:tt)*) => { return Err(failure(format_args!($($arg)*))) };
}

/// Reads a mapped, aligned word.
pub fn peek(va: u64) -> u64 {
    // SAFETY: callers pass addresses of the boot region or the M2P, both mapped (at least
    // read-only) for the kernel's whole life.
    unsafe { (va as *const u64).read_volatile() }
}

/// Writes a mapped, writable, aligned word of a scratch page.
pub fn poke(va: u64, value: u64) {
    // SAFETY: callers pass addresses of scratch pages they mapped writable.
    unsafe { (va as *mut u64).write_volatile(value) }
}

/// Machine frame of pseudo-physical frame `pfn` (from the P2M list).
pub fn p2m(boot: &Boot, pfn: u64) -> u64 {
    peek(boot.info.mfn_list + pfn * 8)
}

/// Pseudo-physical frame of machine frame `mfn` (from the hypervisor's M2P).
pub fn m2p(mfn: u64) -> u64 {
    peek(M2P_BASE + mfn * 8)
}

/// Machine frame behind a boot-region address.
pub fn mfn_of(boot: &Boot, va: u64) -> u64 {
    p2m(boot, (va - KERNEL_BASE) / 4096)
}

/// Where a boot-region frame is mapped.
pub fn va_of(mfn: u64) -> u64 {
    KERNEL_BASE + m2p(mfn) * 4096
}

/// Scratch page `n` (0..64) of the padding after the boot stack.
pub fn scratch(boot: &Boot, n: u64) -> u64 {
    boot.initial_rsp + (64 + n) * 4096
}

fn index(va: u64, level: u32) -> u64 {
    (va >> (12 + 9 * (level - 1))) & 511
}

/// The tables mapping `va` in the boot address space: (L4, L3, L2, L1) machine frames.
pub fn walk(boot: &Boot, va: u64) -> [u64; 4] {
    let l4 = mfn_of(boot, boot.info.pt_base);
    let mut tables = [l4, 0, 0, 0];
    for level in (2..=4u32).rev() {
        let table = tables[(4 - level) as usize];
        let entry = peek(va_of(table) + index(va, level) * 8);
        tables[(5 - level) as usize] = (entry & ADDRESS) >> 12;
    }
    tables
}

/// Machine address of the L1 entry mapping `va`.
pub fn l1e(boot: &Boot, va: u64) -> u64 {
    (walk(boot, va)[3] << 12) + index(va, 1) * 8
}

/// Maps `va` (in the boot region) to machine frame `mfn` with `flags`, flushing it.
pub fn map(va: u64, mfn: u64, flags: u64) -> Result<u64, Errno> {
    // SAFETY: only scratch pages of the padding are remapped; nothing in Rust refers to
    // them.
    unsafe { guest::update_va_mapping(va, (mfn << 12) | flags, UVMF_INVLPG | UVMF_LOCAL) }
}

/// Runs a batch of page-table updates.
pub fn update(reqs: &[MmuUpdate]) -> Result<u32, guest::PartialError> {
    // SAFETY: the updates touch only scratch pages and tables built from them.
    unsafe { guest::mmu_update(reqs, DOMID_SELF) }
}

/// Runs a batch of extended MMU operations.
pub fn ext(ops: &[MmuextOp]) -> Result<u32, guest::PartialError> {
    // SAFETY: as `update`; base-pointer switches go to copies of the live root.
    unsafe { guest::mmuext_op(ops, DOMID_SELF) }
}

/// The M2P is readable and agrees with the P2M.
pub fn m2p_readable(boot: &Boot) -> Outcome {
    for pfn in [0, 1, boot.info.nr_pages / 2, boot.info.nr_pages - 1] {
        let mfn = p2m(boot, pfn);
        if m2p(mfn) != pfn {
            fail!("M2P[{mfn:#x}] = {:#x}, P2M says pfn {pfn:#x}", m2p(mfn));
        }
    }
    Ok(())
}

/// The shared-info page, mapped twice with update_va_mapping, reads back the same.
pub fn shared_info_mapping(boot: &Boot) -> Outcome {
    let (a, b) = (scratch(boot, 0), scratch(boot, 1));
    let (own_a, own_b) = (mfn_of(boot, a), mfn_of(boot, b));
    let shared = boot.info.shared_info >> 12;
    let result = (|| {
        map(a, shared, RW).map_err(|e| failure(format_args!("map: {e}")))?;
        map(b, shared, RO).map_err(|e| failure(format_args!("map: {e}")))?;
        // The last word of the page is unused by the ABI.
        poke(a + 4088, 0x5eed_1234);
        if peek(b + 4088) != 0x5eed_1234 {
            fail!("the two mappings disagree");
        }
        poke(a + 4088, 0);
        Ok(())
    })();
    map(a, own_a, RW).map_err(|e| failure(format_args!("restore: {e}")))?;
    map(b, own_b, RW).map_err(|e| failure(format_args!("restore: {e}")))?;
    result
}

/// `HYPERVISOR_iret` to kernel mode with a CS of RPL 1 or 2 while a user page table is
/// set: only RPL 3 returns to user mode (Xen's rule), so execution goes on here, in
/// kernel mode. (Taken for user mode, it would load the user page table, an empty one,
/// and fault on the next instruction: the domain would be stopped.)
pub fn iret_rpl_stays_in_kernel(boot: &Boot) -> Outcome {
    let root_va = scratch(boot, 12);
    let root = mfn_of(boot, root_va);
    let step = |what: &str, r: Result<u32, guest::PartialError>| match r {
        Ok(_) => Ok(()),
        Err(e) => Err(failure(format_args!(
            "{what}: {} done, {}",
            e.done, e.errno
        ))),
    };
    // An empty L4 (the hypervisor adds its own slots), read-only, pinned, as the user
    // page table.
    step("clear", ext(&[MmuextOp::clear_page(root)]))?;
    map(root_va, root, RO).map_err(|e| failure(format_args!("root read-only: {e}")))?;
    step("pin", ext(&[MmuextOp::pin_table(4, root).unwrap()]))?;
    step("user root", ext(&[MmuextOp::new_user_baseptr(root)]))?;
    let mut outcome = Ok(());
    for rpl in [1, 2] {
        let seen = crate::traps::iret_to_next_rpl(rpl, 0, 0x5a + rpl, 0);
        if seen.rax != 0x5a + rpl {
            outcome = Err(failure(format_args!(
                "iret with RPL {rpl}: rax {:#x}",
                seen.rax
            )));
        }
    }
    step(
        "no user root",
        ext(&[MmuextOp::new_user_baseptr(0), MmuextOp::unpin_table(root)]),
    )?;
    map(root_va, root, RW).map_err(|e| failure(format_args!("root writable: {e}")))?;
    outcome
}

/// A 2 MiB window of the boot region's L2 that nothing maps: just past its last L2 entry
/// in use. Its address and the machine address of that L2 entry.
fn free_window(boot: &Boot) -> Result<(u64, u64), pv_guest_kernel::selftest::Failure> {
    let [_, _, l2, _] = walk(boot, boot.initial_rsp);
    let mut slot = index(boot.initial_rsp, 2) + 1;
    while slot < 512 && peek(va_of(l2) + slot * 8) & PRESENT != 0 {
        slot += 1;
    }
    if slot == 512 {
        fail!("no free L2 slot");
    }
    let window = (boot.initial_rsp & !((1 << 30) - 1)) + (slot << 21);
    Ok((window, (l2 << 12) + slot * 8))
}

/// The attack the TLB clock must stop (docs/memory.md, rule 1): a page mapped writable
/// through a table of its own, written (so the CPU caches the writable translation), the
/// table unhooked and unpinned with no flush (so the page's last writable mapping is
/// gone), then the page pinned as a page table. Unless the hypervisor flushed when the
/// page changed type, the cached translation still writes it: a store through the old
/// window would then forge an entry of a live page table. `Ok` if that store faults (the
/// window is unmapped) and the table is untouched; everything is put back either way.
pub fn stale_writable_mapping_of_a_new_table(boot: &Boot) -> Outcome {
    let (table_va, page_va) = (scratch(boot, 34), scratch(boot, 35));
    let (table, page) = (mfn_of(boot, table_va), mfn_of(boot, page_va));
    let (window, l2e) = free_window(boot)?;
    let forged = (page << 12) | RW; // any present entry: the page mapping itself, writable
    for i in 0..512 {
        poke(table_va + i * 8, 0);
        poke(page_va + i * 8, 0);
    }
    // The table, read-only and pinned, hooked at the window, mapping the page writable;
    // the page's own boot mapping gone, so the window is its only writable one.
    let built = map(table_va, table, RO)
        .map_err(|e| failure(format_args!("table read-only: {e}")))
        .and_then(|_| map(page_va, 0, 0).map_err(|e| failure(format_args!("page unmapped: {e}"))))
        .and_then(|_| {
            ext(&[MmuextOp::pin_table(1, table).unwrap()])
                .and_then(|_| {
                    update(&[
                        MmuUpdate::normal(table << 12, (page << 12) | RW),
                        MmuUpdate::normal(l2e, (table << 12) | RW),
                    ])
                })
                .map(|_| ())
                .map_err(|e| failure(format_args!("window: {} done, {}", e.done, e.errno)))
        });
    let mut outcome = built.clone();
    if built.is_ok() {
        // Cached: the writable translation of the window.
        poke(window, 0);
        // The table's last use goes (unhooked, unpinned: its entries' references, the
        // page's writable type among them, are dropped), with no flush; the page becomes
        // a page table.
        let retyped = update(&[MmuUpdate::normal(l2e, 0)])
            .and_then(|_| ext(&[MmuextOp::unpin_table(table)]))
            .and_then(|_| ext(&[MmuextOp::pin_table(1, page).unwrap()]));
        match retyped {
            Ok(_) => {
                let seen = crate::traps::expect_fault!(14, "mov qword ptr [{a}], {v}"; a = in(reg) window, v = in(reg) forged);
                // Read back through the hypervisor's view: the M2P-mapped page is not
                // mapped here any more, so map it read-only (a table may be).
                let entry = map(page_va, page, RO).map(|_| peek(page_va));
                outcome = match (seen, entry) {
                    (Some(s), Ok(0)) if s.vector == 14 => Ok(()),
                    (_, Ok(e)) if e != 0 => Err(failure(format_args!(
                        "a stale translation wrote the new page table: entry 0 is {e:#x}"
                    ))),
                    (None, _) => Err(failure(format_args!(
                        "the store through the old window did not fault"
                    ))),
                    (_, Err(e)) => Err(failure(format_args!("reading the table back: {e}"))),
                    (Some(s), _) => Err(failure(format_args!("got vector {}", s.vector))),
                };
                let _ = ext(&[MmuextOp::unpin_table(page)]);
            }
            Err(e) => {
                outcome = Err(failure(format_args!(
                    "retyping: {} done, {}",
                    e.done, e.errno
                )));
                let _ = update(&[MmuUpdate::normal(l2e, 0)]);
                let _ = ext(&[MmuextOp::unpin_table(table)]);
            }
        }
    } else {
        let _ = ext(&[MmuextOp::unpin_table(table)]);
    }
    // Put back: both pages writable at their boot addresses, the TLB flushed. (After a
    // forged entry the page may refuse: the attack's failure is the one reported.)
    let _ = ext(&[MmuextOp::tlb_flush_local()]);
    let back = map(table_va, table, RW).and_then(|_| map(page_va, page, RW));
    let _ = ext(&[MmuextOp::tlb_flush_local()]);
    outcome?;
    if let Err(e) = back {
        fail!("putting the pages back: {e}");
    }
    Ok(())
}

/// Page-table work through batches: build and pin a new L1, hook it into the L2, map,
/// change protections, unmap; then switch to a copy of the address space and back.
pub fn page_table_lifecycle(boot: &Boot) -> Outcome {
    let table_va = scratch(boot, 2);
    let (data_a, data_b) = (scratch(boot, 3), scratch(boot, 4));
    let root_copy_va = scratch(boot, 5);
    let table = mfn_of(boot, table_va);
    let (a, b) = (mfn_of(boot, data_a), mfn_of(boot, data_b));
    let root = mfn_of(boot, boot.info.pt_base);
    let (window, l2e) = free_window(boot)?;
    let step = |what: &str, r: Result<u32, guest::PartialError>| match r {
        Ok(_) => Ok(()),
        Err(e) => Err(failure(format_args!(
            "{what}: {} done, {}",
            e.done, e.errno
        ))),
    };

    // 1. The new table: zeroed while writable, then read-only, pinned, hooked in.
    for i in 0..512 {
        poke(table_va + i * 8, 0);
    }
    map(table_va, table, RO).map_err(|e| failure(format_args!("table read-only: {e}")))?;
    step("pin", ext(&[MmuextOp::pin_table(1, table).unwrap()]))?;
    step(
        "hook",
        update(&[MmuUpdate::normal(l2e, (table << 12) | RW)]),
    )?;
    // 2. Map two pages in one batch; write through the new mapping.
    step(
        "map",
        update(&[
            MmuUpdate::normal(table << 12, (a << 12) | RW),
            MmuUpdate::normal((table << 12) + 8, (b << 12) | RO),
        ]),
    )?;
    poke(window, 0xfeed);
    if peek(data_a) != 0xfeed || peek(window + 4096) != peek(data_b) {
        fail!("new mappings do not reach the pages");
    }
    // 3. Protection change (preserving A/D), then unmap, unhook, unpin.
    step(
        "protect",
        update(&[MmuUpdate::preserve_ad(table << 12, (a << 12) | RO)]),
    )?;
    ext(&[MmuextOp::invlpg_local(window)]).ok();
    if peek(table_va) & WRITABLE != 0 {
        fail!("entry still writable");
    }
    step(
        "unmap",
        update(&[
            MmuUpdate::normal(table << 12, 0),
            MmuUpdate::normal((table << 12) + 8, 0),
            MmuUpdate::normal(l2e, 0),
        ]),
    )?;
    step(
        "unpin",
        ext(&[MmuextOp::unpin_table(table), MmuextOp::tlb_flush_local()]),
    )?;
    map(table_va, table, RW).map_err(|e| failure(format_args!("table writable again: {e}")))?;

    // 4. A copy of the address space: copy the root, pin it, switch, and back. Each
    // switch is a call of its own (a one-request call to another root is checked and
    // counted; one to the root in use is a reload, which a hypervisor may take on a
    // quicker path that must follow the switch before it).
    let copy = mfn_of(boot, root_copy_va);
    step("copy root", ext(&[MmuextOp::copy_page(copy, root)]))?;
    map(root_copy_va, copy, RO).map_err(|e| failure(format_args!("copy read-only: {e}")))?;
    step("pin copy", ext(&[MmuextOp::pin_table(4, copy).unwrap()]))?;
    step("switch", ext(&[MmuextOp::new_baseptr(copy)]))?;
    step("reload", ext(&[MmuextOp::new_baseptr(copy)]))?;
    let still_here = peek(boot.info.pt_base);
    step("switch back", ext(&[MmuextOp::new_baseptr(root)]))?;
    step("reload the first", ext(&[MmuextOp::new_baseptr(root)]))?;
    step("unpin copy", ext(&[MmuextOp::unpin_table(copy)]))?;
    map(root_copy_va, copy, RW).map_err(|e| failure(format_args!("copy writable: {e}")))?;
    if still_here & PRESENT != 0 && peek(boot.info.pt_base) != still_here {
        fail!("the copy did not map the same boot region");
    }
    Ok(())
}

/// A hypercall made by a `syscall` in the last two bytes of the lower half: its return
/// address is past the top, where no return may go (a CPU's `sysretq` and `iretq` fault
/// there in ring 0). Our hypervisor turns it into the #GP it raises at the `syscall`
/// itself, without making the call; Xen makes the call and returns by `iretq`, which a
/// CPU refuses in Xen's ring 0 (Xen then reflects a #GP at the `syscall`) and QEMU's TCG
/// lets through to a #GP on the next fetch (at the top). Either way the kernel gets a #GP
/// from kernel mode; the page is mapped through three fresh tables, taken down after.
pub fn syscall_at_top_of_lower_half(boot: &Boot, on_xen: bool) -> Outcome {
    const PAGE: u64 = 0x7fff_ffff_f000;
    const SYSCALL: u64 = PAGE + 0xffe;
    const L4_SLOT: u64 = 255;
    let vas = [8, 9, 10, 11].map(|n| scratch(boot, n));
    let [l3, l2, l1, code] = vas.map(|va| mfn_of(boot, va));
    let root = mfn_of(boot, boot.info.pt_base);
    let l4e = (root << 12) + L4_SLOT * 8;
    if peek(va_of(root) + L4_SLOT * 8) & PRESENT != 0 {
        fail!("L4 slot {L4_SLOT} is in use");
    }
    // The tables filled while writable, then read-only, pinned through the L3, hooked.
    for va in &vas[..3] {
        for i in 0..512 {
            poke(va + i * 8, 0);
        }
    }
    poke(vas[0] + 511 * 8, (l2 << 12) | RW);
    poke(vas[1] + 511 * 8, (l1 << 12) | RW);
    poke(vas[2] + 511 * 8, (code << 12) | RW);
    // `syscall` (0f 05) in the page's last two bytes.
    poke(vas[3] + 0xff8, (0x05 << 56) | (0x0f << 48));
    for (&va, mfn) in vas[..3].iter().zip([l3, l2, l1]) {
        map(va, mfn, RO).map_err(|e| failure(format_args!("table read-only: {e}")))?;
    }
    let hooked = ext(&[MmuextOp::pin_table(3, l3).unwrap()])
        .and_then(|_| update(&[MmuUpdate::normal(l4e, (l3 << 12) | RW)]));
    // Two calls there: the null hypercall, and one TLB flush by `mmuext_op` (which the
    // hypervisor's quickest path takes, returning by sysretq).
    let flush = MmuextOp::tlb_flush_local();
    let seen = match hooked {
        Ok(_) => [
            crate::traps::expect_fault!(
                13,
                "jmp {t}";
                t = in(reg) SYSCALL,
                inout("rax") pv_abi::xen::Hypercall::XenVersion.number() => _,
                inout("rdi") 0u64 => _,
                out("rcx") _,
                out("r11") _,
            ),
            crate::traps::expect_fault!(
                13,
                "jmp {t}";
                t = in(reg) SYSCALL,
                inout("rax") pv_abi::xen::Hypercall::MmuextOp.number() => _,
                inout("rdi") &raw const flush as u64 => _,
                inout("rsi") 1u64 => _,
                inout("rdx") 0u64 => _,
                inout("r10") u64::from(DOMID_SELF) => _,
                out("rcx") _,
                out("r11") _,
            ),
        ],
        Err(ref e) => {
            let _ = ext(&[MmuextOp::unpin_table(l3)]);
            fail!("mapping the page: {} done, {}", e.done, e.errno);
        }
    };
    // Taken down: unhooked, unpinned, flushed, the scratch pages writable again.
    let down = update(&[MmuUpdate::normal(l4e, 0)])
        .and_then(|_| ext(&[MmuextOp::unpin_table(l3), MmuextOp::tlb_flush_local()]));
    for (&va, mfn) in vas[..3].iter().zip([l3, l2, l1]) {
        map(va, mfn, RW).map_err(|e| failure(format_args!("table writable again: {e}")))?;
    }
    if let Err(e) = down {
        fail!("taking the page down: {} done, {}", e.done, e.errno);
    }
    for (call, seen) in ["xen_version", "mmuext_op"].into_iter().zip(seen) {
        match seen {
            Some(s) if s.vector == 13 && s.cs & 3 == 0 && s.rip == SYSCALL => {}
            Some(s) if on_xen && s.vector == 13 && s.cs & 3 == 0 && s.rip == PAGE + 0x1000 => {}
            Some(s) => fail!("{call}: got {s:x?}"),
            None => fail!("{call}: no #GP"),
        }
    }
    Ok(())
}

/// One TLB operation at a time, as a PV kernel flushes after changing an entry (Linux
/// makes each of these a hypercall of its own): a scratch page mapped to frame A and
/// read, so that the CPU caches the translation; its entry pointed at frame B by
/// `mmu_update`, which flushes nothing (the ABI leaves that to the guest); then one
/// `mmuext_op` of one operation: `INVLPG` of the page or a flush of the whole TLB (each
/// `_LOCAL` and `_ALL`), or `NEW_BASEPTR` to the root in use (a reload). After it the
/// page must read frame B. Without the flush it reads frame A still: QEMU's CPU keeps
/// the old translation, as a real one may. The page is mapped back to its own frame.
pub fn mmuext_tlb_ops(boot: &Boot) -> Outcome {
    let (page, a, b) = (scratch(boot, 40), scratch(boot, 41), scratch(boot, 42));
    let (own, frame_a, frame_b) = (mfn_of(boot, page), mfn_of(boot, a), mfn_of(boot, b));
    let root = mfn_of(boot, boot.info.pt_base);
    let entry = l1e(boot, page);
    poke(a, 0xaaaa_aaaa);
    poke(b, 0xbbbb_bbbb);
    let ops = [
        ("INVLPG_LOCAL", MmuextOp::invlpg_local(page)),
        ("INVLPG_ALL", MmuextOp::invlpg_all(page)),
        ("TLB_FLUSH_LOCAL", MmuextOp::tlb_flush_local()),
        ("TLB_FLUSH_ALL", MmuextOp::tlb_flush_all()),
        (
            "NEW_BASEPTR to the current root",
            MmuextOp::new_baseptr(root),
        ),
    ];
    let result = (|| {
        for (what, op) in ops {
            // The control: the old translation must still be in use before the
            // operation, or this round proves nothing about it. A CPU may drop it on its
            // own (a vCPU switch reloads CR3): such a round is tried again, three times.
            let mut tried = 0;
            loop {
                map(page, frame_a, RW).map_err(|e| failure(format_args!("map A: {e}")))?;
                if peek(page) != 0xaaaa_aaaa {
                    fail!("{what}: frame A does not read back");
                }
                update(&[MmuUpdate::normal(entry, (frame_b << 12) | RW)])
                    .map_err(|e| failure(format_args!("{what}: remap to B: {}", e.errno)))?;
                if peek(page) == 0xaaaa_aaaa {
                    break;
                }
                tried += 1;
                if tried == 3 {
                    fail!("{what}: inconclusive: the remap showed before any flush, 3 times");
                }
            }
            ext(&[op]).map_err(|e| failure(format_args!("{what}: {}", e.errno)))?;
            let seen = peek(page);
            if seen != 0xbbbb_bbbb {
                fail!("{what}: the page reads {seen:#x} after it, not frame B's contents");
            }
        }
        Ok(())
    })();
    map(page, own, RW).map_err(|e| failure(format_args!("restore: {e}")))?;
    poke(a, 0);
    poke(b, 0);
    result
}

/// `mmuext_op` of one TLB operation by a bare `syscall` (what the hypercall page does):
/// every argument register comes back as it went (rax is the result; rcx and r11
/// `syscall` takes; the callee-saved ones the compiler trusts the call with),
/// the count's upper half included (the count is an unsigned int; its upper half is
/// not the call's). The hypervisor's own values, its addresses above all, must never be
/// left in one.
pub fn mmuext_keeps_registers(boot: &Boot) -> Outcome {
    let root = mfn_of(boot, boot.info.pt_base);
    let page = scratch(boot, 40);
    for op in [
        MmuextOp::invlpg_local(page),
        MmuextOp::tlb_flush_local(),
        MmuextOp::new_baseptr(root),
    ] {
        let sent = [
            &op as *const MmuextOp as u64,
            0xdead_beef_0000_0001,
            0,
            u64::from(DOMID_SELF),
            0x8888,
            0x9999,
        ];
        // SAFETY: one TLB operation of our own (a flush, or a reload of the root in
        // use), its request live on this stack.
        let (rax, back) = unsafe {
            crate::traps::bare_hypercall(pv_abi::xen::Hypercall::MmuextOp.number(), sent, false)
        };
        if rax != 0 || back != sent {
            fail!(
                "mmuext_op {}: rax {rax:#x}, rdi rsi rdx r10 r8 r9 {back:#x?}, sent {sent:#x?}",
                op.cmd
            );
        }
    }
    Ok(())
}
