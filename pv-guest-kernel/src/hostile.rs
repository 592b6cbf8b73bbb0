//! The hostile guest (`hostile` on the command line): attacks on the memory-safety model,
//! each of which the hypervisor must refuse with the errno Xen gives. One line per
//! attack, `hostile <name>: refused (<errno>)` or `hostile <name>: FAILED ...`; the exit
//! code is 0 iff every attack was refused.
//!
//! Batch calls that return a count instead of an errno (the reservation calls) report
//! `refused (0 of N done)`.

use crate::Boot;
use crate::vm::{self, RO, RW, WRITABLE, l1e, map, mfn_of, peek, poke, scratch, va_of, walk};
use core::fmt::Write;
use pv_abi::Errno;
use pv_abi::ext::{self, PortWidth};
use pv_abi::guest;
use pv_abi::xen::{
    DOMID_SELF, MmuUpdate, MmuextOp, UVMF_INVLPG, UVMF_LOCAL, VMASST_CMD_DISABLE,
    VMASST_TYPE_WRITABLE_PAGETABLES,
};

/// Not RAM on a PC: the local APIC's page.
const MMIO_FRAME: u64 = 0xfee00;
/// The hypervisor's image starts at 1 MiB.
const HYPERVISOR_FRAME: u64 = 0x100;
/// An address in the hypervisor's direct map.
const HYPERVISOR_VA: u64 = 0xffff_8300_0010_0000;
/// Where the hypervisor's direct map of all machine memory starts.
const DIRECT_MAP_BASE: u64 = 0xffff_8300_0000_0000;
const INVALID_M2P: u64 = u64::MAX;

/// What an attack got back.
enum Got {
    Errno(Result<u64, Errno>),
    Batch(Result<u32, guest::PartialError>),
    Count { done: u64, of: u64 },
}

struct Report<'a, W: Write> {
    out: &'a mut W,
    failed: u32,
}

impl<W: Write> Report<'_, W> {
    fn check(&mut self, name: &str, want: Errno, got: Got) {
        let ok = match got {
            Got::Errno(Err(e)) if e == want => true,
            Got::Batch(Err(e)) if e.errno == want && e.done == 0 => true,
            _ => false,
        };
        if ok {
            let _ = writeln!(self.out, "hostile {name}: refused ({})", want.name());
            return;
        }
        self.failed += 1;
        let _ = match got {
            Got::Errno(r) => writeln!(
                self.out,
                "hostile {name}: FAILED expected {want}, got {r:?}"
            ),
            Got::Batch(r) => writeln!(
                self.out,
                "hostile {name}: FAILED expected {want}, got {r:?}"
            ),
            Got::Count { done, of } => {
                writeln!(self.out, "hostile {name}: FAILED {done} of {of} done")
            }
        };
    }

    fn check_count(&mut self, name: &str, done: Result<u64, Errno>, of: u64) {
        match done {
            Ok(0) => {
                let _ = writeln!(self.out, "hostile {name}: refused (0 of {of} done)");
            }
            Ok(done) => self.check(name, Errno::EINVAL, Got::Count { done, of }),
            Err(e) => self.check(name, Errno::EINVAL, Got::Errno(Err(e))),
        }
    }

    fn fail(&mut self, name: &str, why: &str) {
        self.failed += 1;
        let _ = writeln!(self.out, "hostile {name}: FAILED {why}");
    }
}

/// A frame another domain owns: described in the M2P, but not in our P2M and not our
/// shared-info page.
fn foreign_frame(boot: &Boot) -> Option<u64> {
    let ours = |mfn: u64| {
        mfn == boot.info.shared_info >> 12
            || (0..boot.info.nr_pages).any(|p| vm::p2m(boot, p) == mfn)
    };
    let highest = (0..boot.info.nr_pages).map(|p| vm::p2m(boot, p)).max()?;
    let lowest = (0..boot.info.nr_pages).map(|p| vm::p2m(boot, p)).min()?;
    (highest + 1..highest + 64)
        .chain(lowest.saturating_sub(64)..lowest)
        .find(|&mfn| vm::m2p(mfn) != INVALID_M2P && !ours(mfn))
}

fn update_one(ptr: u64, val: u64) -> Got {
    Got::Batch(vm::update(&[MmuUpdate { ptr, val }]))
}

fn ext_one(op: MmuextOp) -> Got {
    Got::Batch(vm::ext(&[op]))
}

/// `EVTCHNOP_send` with `pointer` as its argument, as a raw call.
fn send_at(pointer: u64) -> Got {
    let send = u64::from(pv_abi::event_channel::EVTCHNOP_SEND);
    // SAFETY: a raw call with a pointer the hypervisor must check before it follows it;
    // whatever it points at is not written.
    let ret =
        unsafe { guest::raw::hypercall2(pv_abi::xen::Hypercall::EventChannelOp, send, pointer) };
    Got::Errno(Errno::from_ret(ret))
}

/// `mmuext_op` of one request at `pointer`, on our own domain, as a raw call.
fn mmuext_at(pointer: u64) -> Got {
    // SAFETY: a raw call with a pointer the hypervisor must check before it follows it;
    // a request it does read is at most a TLB flush of ours.
    let ret = unsafe {
        guest::raw::hypercall4(
            pv_abi::xen::Hypercall::MmuextOp,
            pointer,
            1,
            0,
            u64::from(DOMID_SELF),
        )
    };
    Got::Errno(Errno::from_ret(ret))
}

/// `mmuext_op(ops, count, done, domain)` by a bare `syscall`: the result, and whether
/// every argument register came back as it went (a refused call must not leave a
/// hypervisor value in one either).
fn mmuext_keeping(ops: u64, count: u64, done: u64, domain: u64) -> (Result<u64, Errno>, bool) {
    let sent = [ops, count, done, domain, 0x8888, 0x9999];
    // SAFETY: a raw call the hypervisor must check; what it may do is a TLB operation of
    // ours, and a done count it writes goes to memory of ours or faults.
    let (ret, back) = unsafe {
        crate::traps::bare_hypercall(pv_abi::xen::Hypercall::MmuextOp.number(), sent, false)
    };
    (Errno::from_ret(ret as i64), back == sent)
}

fn uvm(va: u64, val: u64) -> Got {
    // SAFETY: every value tried here is one the hypervisor must refuse; if it did not,
    // only a scratch page of the padding changed.
    Got::Errno(unsafe { guest::update_va_mapping(va, val, 0) })
}

/// Runs every attack; returns the exit code (0 iff all were refused).
pub fn run(boot: &Boot, out: &mut impl Write) -> u32 {
    let mut r = Report { out, failed: 0 };
    let s = scratch(boot, 32);
    let own = mfn_of(boot, s);
    let [root, _, l2, l1] = walk(boot, s);
    let entry = l1e(boot, s);

    // Mapping what is not ours.
    match foreign_frame(boot) {
        Some(foreign) => {
            r.check(
                "map_foreign_frame",
                Errno::EBUSY,
                uvm(s, (foreign << 12) | RO),
            );
            r.check(
                "forge_machphys_foreign",
                Errno::EINVAL,
                Got::Batch(vm::update(&[MmuUpdate::machphys(foreign, 0)])),
            );
            r.check(
                "write_foreign_table",
                Errno::EINVAL,
                update_one(foreign << 12, 0),
            );
        }
        None => r.fail("map_foreign_frame", "no foreign frame found"),
    }
    r.check(
        "map_hypervisor_frame",
        Errno::EBUSY,
        uvm(s, (HYPERVISOR_FRAME << 12) | RO),
    );
    r.check(
        "map_mmio_frame",
        Errno::EPERM,
        uvm(s, (MMIO_FRAME << 12) | RW),
    );

    // Page tables are never writable, writable pages never page tables.
    r.check(
        "map_own_page_table_writable",
        Errno::EBUSY,
        uvm(s, (l1 << 12) | RW),
    );
    r.check(
        "map_own_root_writable",
        Errno::EBUSY,
        uvm(s, (root << 12) | RW),
    );
    r.check(
        "pin_writable_page_as_table",
        Errno::EINVAL,
        ext_one(MmuextOp::pin_table(1, own).unwrap()),
    );
    r.check(
        "switch_root_to_data_page",
        Errno::EINVAL,
        ext_one(MmuextOp::new_baseptr(own)),
    );
    r.check(
        "clear_live_page_table",
        Errno::EINVAL,
        ext_one(MmuextOp::clear_page(l1)),
    );
    r.check(
        "copy_into_page_table",
        Errno::EINVAL,
        ext_one(MmuextOp::copy_page(l2, own)),
    );

    // The shared-info page is never a page table, even as a valid one (all entries not
    // present) with the guest's own writable mapping of it gone: the hypervisor writes it
    // by machine address (event bits, time, CR2) and holds it as a writable page. (It
    // once could be pinned as an L1, whose entries an emulated `mov cr2` then forged.)
    // Its contents are saved and put back; events stay masked meanwhile (the mask, byte
    // 1, is the only word left set: not a present entry).
    let si_va = crate::paravirt::shared_info();
    let si_mfn = boot.info.shared_info >> 12;
    crate::paravirt::irq_disable();
    let mut saved = [0u64; 512];
    for (i, word) in saved.iter_mut().enumerate() {
        *word = peek(si_va + i as u64 * 8);
        poke(si_va + i as u64 * 8, if i == 0 { 0x100 } else { 0 });
    }
    // SAFETY: the kernel's own mapping of the shared-info page, put back right after;
    // nothing reads it meanwhile (events masked, no timer work here).
    let unmapped = unsafe { guest::update_va_mapping(si_va, 0, UVMF_INVLPG | UVMF_LOCAL) };
    let pinned = ext_one(MmuextOp::pin_table(1, si_mfn).unwrap());
    // SAFETY: as above: the same mapping back.
    let remapped = unsafe {
        guest::update_va_mapping(si_va, boot.info.shared_info | RW, UVMF_INVLPG | UVMF_LOCAL)
    };
    if remapped.is_ok() {
        for (i, word) in saved.iter().enumerate() {
            poke(si_va + i as u64 * 8, *word);
        }
    }
    crate::paravirt::irq_enable();
    match (unmapped, remapped) {
        (Ok(_), Ok(_)) => r.check("pin_shared_info_as_table", Errno::EINVAL, pinned),
        _ => r.fail(
            "pin_shared_info_as_table",
            "cannot unmap and remap shared info",
        ),
    }

    // A table whose entries are invalid cannot be pinned: fill a scratch frame with an
    // entry naming the hypervisor, make it read-only, try, and put it back.
    let bad = scratch(boot, 33);
    let bad_mfn = mfn_of(boot, bad);
    poke(bad + 8, (HYPERVISOR_FRAME << 12) | RO);
    match map(bad, bad_mfn, RO) {
        Ok(_) => {
            r.check(
                "pin_table_with_invalid_entries",
                Errno::EBUSY,
                ext_one(MmuextOp::pin_table(1, bad_mfn).unwrap()),
            );
            let _ = map(bad, bad_mfn, RW);
            poke(bad + 8, 0);
        }
        Err(_) => r.fail("pin_table_with_invalid_entries", "setup failed"),
    }

    // The live root and its pin.
    r.check(
        "unpin_unpinned_frame",
        Errno::EINVAL,
        ext_one(MmuextOp::unpin_table(own)),
    );
    let mut list = [root];
    // SAFETY: the hypervisor must refuse: the root is in use.
    let done = unsafe { guest::decrease_reservation(&mut list, 0, DOMID_SELF) };
    r.check_count("give_back_live_root", done, 1);

    // Entry contents.
    r.check(
        "write_hypervisor_l4_slot",
        Errno::EINVAL,
        update_one((root << 12) + 256 * 8, 0),
    );
    r.check(
        "write_direct_map_l4_slot",
        Errno::EINVAL,
        update_one((root << 12) + 262 * 8, (l2 << 12) | RO),
    );
    r.check(
        "linear_page_table",
        Errno::EINVAL,
        update_one((root << 12) + 100 * 8, (root << 12) | RO),
    );
    r.check(
        "reserved_bits",
        Errno::EINVAL,
        uvm(s, (own << 12) | RO | 0x10),
    );
    r.check(
        "superpage",
        Errno::EINVAL,
        update_one((l2 << 12) + 511 * 8, (own << 12) | RO | 0x80),
    );
    r.check(
        "address_beyond_physical_width",
        Errno::EINVAL,
        uvm(s, (1 << 51) | RO),
    );
    r.check(
        "non_canonical_address",
        Errno::EINVAL,
        uvm(0x0000_8000_0000_0000, 0),
    );
    r.check(
        "hypervisor_range_address",
        Errno::EINVAL,
        uvm(0xffff_8000_0000_0000, 0),
    );

    // Hypercall argument pointers are checked.
    for (name, pointer) in [
        ("pointer_into_hypervisor", HYPERVISOR_VA),
        ("pointer_into_m2p", vm::M2P_BASE),
        ("pointer_unmapped", 0x1000),
    ] {
        // SAFETY: raw call with a pointer the hypervisor must not follow.
        let ret = unsafe {
            guest::raw::hypercall4(
                pv_abi::xen::Hypercall::MmuUpdate,
                pointer,
                1,
                0,
                u64::from(DOMID_SELF),
            )
        };
        r.check(name, Errno::EFAULT, Got::Errno(Errno::from_ret(ret)));
    }
    // The one-request fast paths read their request with inline loads, each with its
    // own fix-up: an unmapped request must come back as EFAULT from every one of them.
    r.check("mmuext_pointer_unmapped", Errno::EFAULT, mmuext_at(0x1000));
    // The express mmuext_op reads its request itself: never through the hypervisor's
    // part of the address space (EFAULT, as from the general path), even where ring 0
    // could read a valid request there: the M2P (which the guest may read) and the
    // direct map's alias of one of our own frames, holding an INVLPG of ours.
    let op_va = s + 0xfe8;
    let saved = [peek(op_va), peek(op_va + 8), peek(op_va + 16)];
    poke(op_va, u64::from(pv_abi::xen::MMUEXT_INVLPG_LOCAL));
    poke(op_va + 8, s);
    poke(op_va + 16, 0);
    for (name, pointer) in [
        ("mmuext_pointer_in_hypervisor", HYPERVISOR_VA),
        ("mmuext_pointer_into_m2p", vm::M2P_BASE),
        (
            "mmuext_pointer_into_direct_map",
            DIRECT_MAP_BASE + (own << 12) + 0xfe8,
        ),
    ] {
        r.check(name, Errno::EFAULT, mmuext_at(pointer));
    }
    for (i, word) in saved.into_iter().enumerate() {
        poke(op_va + 8 * i as u64, word);
    }
    // The express mmuext_op takes only the plain call: one request, no done count, our
    // own domain. A second request is checked (a data page as the root: EINVAL, after
    // the INVLPG before it), a foreign domain refused (EPERM), a done count written.
    let mmuext_raw = |ops: &[MmuextOp], count: u64, done: u64, domain: u64| {
        // SAFETY: a raw call on requests of ours: an INVLPG, a switch the hypervisor
        // must refuse.
        let ret = unsafe {
            guest::raw::hypercall4(
                pv_abi::xen::Hypercall::MmuextOp,
                ops.as_ptr() as u64,
                count,
                done,
                domain,
            )
        };
        Errno::from_ret(ret)
    };
    let two = [MmuextOp::invlpg_local(s), MmuextOp::new_baseptr(own)];
    r.check(
        "mmuext_second_request_checked",
        Errno::EINVAL,
        Got::Errno(mmuext_raw(&two, 2, 0, u64::from(DOMID_SELF))),
    );
    r.check(
        "mmuext_foreign_domain",
        Errno::EPERM,
        Got::Errno(mmuext_raw(&two[..1], 1, 0, 0x1234)),
    );
    // The same refusals by a bare call, each with every argument register given back;
    // the done pointer and the domain tested as whole words (their low halves alone
    // would pass: a done pointer of 2^32, which the Rust path tries and cannot write,
    // and a domain of 2^32 + DOMID_SELF, EPERM).
    let self_dom = u64::from(DOMID_SELF);
    let one = two.as_ptr() as u64;
    for (name, want, args) in [
        (
            "mmuext_second_request_regs",
            Some(Errno::EINVAL),
            [one, 2, 0, self_dom],
        ),
        (
            "mmuext_data_root_regs",
            Some(Errno::EINVAL),
            [one + 24, 1, 0, self_dom],
        ),
        ("mmuext_done_high_regs", None, [one, 1, 1 << 32, self_dom]),
        (
            "mmuext_domain_high_regs",
            Some(Errno::EPERM),
            [one, 1, 0, (1 << 32) | self_dom],
        ),
    ] {
        let (got, kept) = mmuext_keeping(args[0], args[1], args[2], args[3]);
        let result_ok = want.is_none_or(|errno| got == Err(errno));
        if kept && result_ok {
            let _ = writeln!(r.out, "hostile {name}: registers kept");
        } else {
            r.fail(name, "wrong result or an argument register changed");
        }
    }
    // INVLPG of an address that is not the guest's does nothing and succeeds (Xen's
    // __addr_ok): the lower half's end (non-canonical), the hypervisor, the last byte
    // below the guest's upper part. (This guards against a fault or an error there;
    // under QEMU an `invlpg` of such an address would not show if it were done.)
    for va in [1u64 << 47, HYPERVISOR_VA, 0xffff_87ff_ffff_ffff] {
        let op = [MmuextOp::invlpg_local(va)];
        if mmuext_raw(&op, 1, 0, self_dom) == Ok(0) {
            let _ = writeln!(r.out, "hostile mmuext_invlpg_outside {va:#x}: ignored");
        } else {
            r.fail(
                "mmuext_invlpg_outside",
                "an INVLPG outside the guest's part failed",
            );
        }
    }
    let mut done = 0u32;
    let with_done = mmuext_raw(&two[..1], 1, &raw mut done as u64, u64::from(DOMID_SELF));
    if with_done.is_ok() && done == 1 {
        let _ = writeln!(r.out, "hostile mmuext_done_count: written");
    } else {
        r.fail(
            "mmuext_done_count",
            "one INVLPG with a done count did not write it as 1",
        );
    }
    r.check("send_pointer_unmapped", Errno::EFAULT, send_at(0x1000));
    // The express send reads the port itself: a pointer into the hypervisor's part of
    // the address space must not be followed (EFAULT), a port past the table's end is
    // EINVAL, as from the lane.
    r.check(
        "send_pointer_in_hypervisor",
        Errno::EFAULT,
        send_at(HYPERVISOR_VA),
    );
    // The same through the direct map's alias of one of our own frames, holding the
    // number of an IPI port of ours (masked): ring 0 could read it, and a send would
    // tell the guest whether hypervisor memory holds one of its port numbers.
    match guest::evtchn_bind_ipi(0) {
        Ok(ipi) => {
            crate::events::mask(ipi);
            let word = s + 0xff0;
            let saved = peek(word);
            poke(word, u64::from(ipi));
            let alias = DIRECT_MAP_BASE + (own << 12) + 0xff0;
            r.check(
                "send_pointer_into_direct_map",
                Errno::EFAULT,
                send_at(alias),
            );
            poke(word, saved);
            crate::events::clear(ipi);
            let _ = guest::evtchn_close(ipi);
            let _ = crate::events::unmask(ipi);
        }
        Err(_) => r.fail("send_pointer_into_direct_map", "bind_ipi refused"),
    }
    for port in [1024, 0xffff, u32::MAX] {
        r.check(
            "send_port_out_of_range",
            Errno::EINVAL,
            Got::Errno(guest::evtchn_send(port)),
        );
    }
    // A request whose first word is mapped and the rest not: the copy faults partway.
    let next = s + 4096;
    let next_mfn = mfn_of(boot, next);
    match map(next, 0, 0) {
        Ok(_) => {
            r.check(
                "request_into_unmapped_page",
                Errno::EFAULT,
                mmuext_at(next - 8),
            );
            // By a bare call, the registers as they went: a request at the unmapped
            // page's end whose last word is on the mapped page after it (read first,
            // into a register the fault then leaves holding guest data), and the one
            // above.
            let after = next + 4096;
            let saved = peek(after);
            poke(after, 0x5a5a_5a5a);
            for (name, request) in [
                ("request_from_unmapped_page_regs", after - 16),
                ("request_into_unmapped_page_regs", next - 8),
            ] {
                let (got, kept) = mmuext_keeping(request, 1, 0, u64::from(DOMID_SELF));
                if got == Err(Errno::EFAULT) && kept {
                    let _ = writeln!(r.out, "hostile {name}: refused, registers kept");
                } else {
                    r.fail(name, "wrong result or an argument register changed");
                }
            }
            poke(after, saved);
            // A port whose last two bytes are on the unmapped page.
            r.check(
                "send_port_into_unmapped_page",
                Errno::EFAULT,
                send_at(next - 2),
            );
            if map(next, next_mfn, RW).is_err() {
                r.fail("request_into_unmapped_page", "could not map the page again");
            }
        }
        Err(_) => r.fail("request_into_unmapped_page", "could not unmap the page"),
    }
    // A request list running past the lower canonical half.
    // SAFETY: raw call with a pointer the hypervisor must not follow.
    let ret = unsafe {
        guest::raw::hypercall4(
            pv_abi::xen::Hypercall::MmuUpdate,
            (1 << 47) - 8,
            1,
            0,
            u64::from(DOMID_SELF),
        )
    };
    r.check(
        "pointer_past_lower_half",
        Errno::EFAULT,
        Got::Errno(Errno::from_ret(ret)),
    );
    // An output buffer in our own page table (mapped read-only): the hypervisor's copy
    // must fault like our own store would, and leave the table as it was.
    let table = va_of(l1);
    let before = peek(table);
    // SAFETY: raw call; the hypervisor must refuse to write the read-only page.
    let ret = unsafe {
        guest::raw::hypercall2(
            pv_abi::xen::Hypercall::XenVersion,
            u64::from(pv_abi::version::XENVER_EXTRAVERSION),
            table,
        )
    };
    if peek(table) == before {
        r.check(
            "output_into_page_table",
            Errno::EFAULT,
            Got::Errno(Errno::from_ret(ret)),
        );
    } else {
        r.fail("output_into_page_table", "the table was written");
    }

    // Reservations.
    let mut extents = [0u64; 1];
    let done = guest::increase_reservation(&mut extents, 0, DOMID_SELF);
    r.check_count("exceed_reservation", done, 1);
    let mut list = [own];
    // SAFETY: refused: the frame is mapped.
    let done = unsafe { guest::decrease_reservation(&mut list, 0, DOMID_SELF) };
    r.check_count("give_back_mapped_frame", done, 1);

    // Port I/O through our extension: this domain is not I/O-capable, and no domain may
    // reach the hypervisor's ports (0xf4 would end the whole machine).
    for (name, port, width) in [
        ("port_write_unprivileged", 0x80, PortWidth::Byte),
        ("port_write_debug_exit", 0xf4, PortWidth::Dword),
        ("port_write_serial", 0x3f8, PortWidth::Byte),
    ] {
        // SAFETY: the hypervisor must refuse; had it not, 0x80 is harmless and the other
        // two would show as a failed run.
        let got = unsafe { ext::port_write(port, width, 0) };
        r.check(name, Errno::EPERM, Got::Errno(got.map(|()| 0)));
    }
    // SAFETY: a malformed request: refused before any port is looked at.
    let ret = unsafe {
        guest::raw::hypercall3(
            ext::EXT_OP,
            u64::from(ext::EXTOP_PORT_WRITE),
            0x80 | 3 << 16,
            0,
        )
    };
    r.check(
        "port_write_bad_width",
        Errno::EINVAL,
        Got::Errno(Errno::from_ret(ret)),
    );

    // A batch stops at the first bad request and reports what it did.
    let batch = [
        MmuUpdate::normal(entry, (own << 12) | RW),
        MmuUpdate::normal(entry, (root << 12) | RW),
        MmuUpdate::normal(entry, (own << 12) | RO),
    ];
    match vm::update(&batch) {
        Err(e)
            if e.done == 1
                && e.errno == Errno::EBUSY
                && peek(entry_va(boot, entry)) & WRITABLE != 0 =>
        {
            let _ = writeln!(
                r.out,
                "hostile partial_batch: refused ({}) after 1 of 3",
                e.errno.name()
            );
        }
        other => r.fail(
            "partial_batch",
            if other.is_ok() {
                "all three applied"
            } else {
                "wrong count or errno"
            },
        ),
    }

    // A plain store into a page table, without the writable-pagetables assist, faults.
    let _ = guest::vm_assist(VMASST_CMD_DISABLE, VMASST_TYPE_WRITABLE_PAGETABLES);
    let table = va_of(l1);
    let target = table + 8 * 511;
    let before = peek(target);
    let seen = crate::traps::expect_fault!(14, "mov qword ptr [{a}], {v}"; a = in(reg) target, v = in(reg) (HYPERVISOR_FRAME << 12) | RW);
    match seen {
        Some(seen) if seen.vector == 14 && peek(target) == before => {
            let _ = writeln!(
                r.out,
                "hostile store_into_page_table: refused (#PF, error code {:#x})",
                seen.error_code
            );
        }
        _ => r.fail("store_into_page_table", "the store was not refused"),
    }

    // A cached writable translation of a page that became a page table (the TLB clock).
    match vm::stale_writable_mapping_of_a_new_table(boot) {
        Ok(()) => {
            let _ = writeln!(
                r.out,
                "hostile stale_tlb_write_into_new_table: refused (#PF: flushed at the type change)"
            );
        }
        Err(why) => r.fail("stale_tlb_write_into_new_table", why.as_str()),
    }

    let _ = writeln!(r.out, "hostile: {} attacks failed", r.failed);
    u32::from(r.failed > 0)
}

/// Where the L1 entry at machine address `entry` can be read.
fn entry_va(_boot: &Boot, entry: u64) -> u64 {
    va_of(entry >> 12) + (entry & 0xfff)
}
