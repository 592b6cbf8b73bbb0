//! `memory_op`: the domain's reservation (the balloon) and what it may know about memory.
//!
//! The reservation calls follow Xen exactly: they return the number of extents done (never
//! an errno: a bad argument, a foreign domain or a refused extent just stops the count),
//! and a long list is continued with the next extent encoded in the command's high bits
//! (`cmd = op | start << MEMOP_EXTENT_SHIFT`). Only order-0 extents are supported.

use super::Context;
use crate::mm::{Mfn, PAGE_SHIFT, PAGE_SIZE, PhysMem};
use crate::paging::{Paging, reservation};
use pv_abi::arch_x86_64::MACH2PHYS_VIRT_START;
use pv_abi::errno::Errno;
use pv_abi::memory::{
    E820_RAM, E820Entry, XENMEM_CURRENT_RESERVATION, XENMEM_DECREASE_RESERVATION,
    XENMEM_INCREASE_RESERVATION, XENMEM_MACHPHYS_MAPPING, XENMEM_MAXIMUM_RAM_PAGE,
    XENMEM_MAXIMUM_RESERVATION, XENMEM_MEMORY_MAP, XENMEM_POPULATE_PHYSMAP,
    XENMEMF_POPULATE_ON_DEMAND, XenMachphysMapping, XenMemoryDomain, XenMemoryMap,
    XenMemoryReservation,
};
use pv_abi::xen::{DOMID_SELF, Hypercall};

/// Where the continuation's start extent sits in `cmd` (Xen's `MEMOP_EXTENT_SHIFT`).
pub const MEMOP_EXTENT_SHIFT: u32 = 6;
/// The sub-operation bits of `cmd` (Xen's `MEMOP_CMD_MASK`).
pub const MEMOP_CMD_MASK: u64 = (1 << MEMOP_EXTENT_SHIFT) - 1;
/// Extents handled per invocation before the call is continued (a handful in host tests,
/// so that the tests' small machines reach it).
pub const EXTENT_BATCH: u64 = if cfg!(test) { 4 } else { 128 };

pub(super) fn memory_op<M: PhysMem>(
    ctx: &mut Context<'_, M>,
    cmd: u64,
    arg: u64,
) -> Result<u64, Errno> {
    let start = cmd >> MEMOP_EXTENT_SHIFT;
    let op = u32::try_from(cmd & MEMOP_CMD_MASK).map_err(|_| Errno::ENOSYS)?;
    match op {
        XENMEM_INCREASE_RESERVATION | XENMEM_DECREASE_RESERVATION | XENMEM_POPULATE_PHYSMAP => {
            Ok(reservation_op(ctx, op, start, arg))
        }
        _ if start != 0 => Err(Errno::EINVAL),
        XENMEM_MAXIMUM_RAM_PAGE => Ok(ctx.frames.ram_end().0),
        XENMEM_CURRENT_RESERVATION | XENMEM_MAXIMUM_RESERVATION => {
            let query: XenMemoryDomain = ctx.guest.read_obj(arg)?;
            if !is_self(ctx, query.domid) {
                // Reading another domain's reservation is a privileged toolstack call, and
                // the hypercall layer sees only the caller.
                return Err(if ctx.domain.privileged {
                    Errno::ESRCH
                } else {
                    Errno::EPERM
                });
            }
            Ok(if op == XENMEM_CURRENT_RESERVATION {
                ctx.domain.nr_pages
            } else {
                ctx.domain.max_pages
            })
        }
        XENMEM_MEMORY_MAP => {
            let mut map: XenMemoryMap = ctx.guest.read_obj(arg)?;
            // One RAM region: the whole pseudo-physical space the domain may populate.
            let ram = E820Entry {
                addr: 0,
                size: ctx.domain.max_pages * PAGE_SIZE,
                r#type: E820_RAM,
            };
            map.nr_entries = map.nr_entries.min(1);
            if map.nr_entries == 1 {
                ctx.guest.write_obj(map.buffer, &ram)?;
            }
            ctx.guest.write_obj(arg, &map)?;
            Ok(0)
        }
        XENMEM_MACHPHYS_MAPPING => {
            let entries = ctx.frames.capacity() as u64;
            let mapping = XenMachphysMapping {
                v_start: MACH2PHYS_VIRT_START,
                v_end: MACH2PHYS_VIRT_START + entries * 8,
                max_mfn: entries.saturating_sub(1),
            };
            ctx.guest.write_obj(arg, &mapping)?;
            Ok(0)
        }
        _ => Err(Errno::ENOSYS),
    }
}

fn is_self<M: PhysMem>(ctx: &Context<'_, M>, domid: u16) -> bool {
    domid == DOMID_SELF || domid == ctx.domain.id
}

/// XENMEM_increase_reservation, _decrease_reservation and _populate_physmap from extent
/// `start`; returns the extents done (in total), or a continuation.
fn reservation_op<M: PhysMem>(ctx: &mut Context<'_, M>, op: u32, start: u64, arg: u64) -> u64 {
    let Ok(request) = ctx.guest.read_obj::<XenMemoryReservation>(arg) else {
        return start;
    };
    let extents = request.nr_extents;
    // The machine address width the frames must fit (`XENMEMF_address_bits`; 0: any).
    // As in Xen, a width of a page or less cannot be met at all, and populate-on-demand
    // is not for the caller's own physmap: nothing is done.
    let address_bits = request.mem_flags & 0xff;
    let on_demand = request.mem_flags & XENMEMF_POPULATE_ON_DEMAND != 0;
    if extents > u64::from(u32::MAX >> MEMOP_EXTENT_SHIFT)
        || start >= extents
        || !is_self(ctx, request.domid)
        || request.extent_order != 0
        || (1..=PAGE_SHIFT).contains(&address_bits)
        || (on_demand && op == XENMEM_POPULATE_PHYSMAP)
    {
        return start;
    }
    // Whether a new frame is below the width asked for; if not, it goes back and the
    // call stops there (the allocator takes no limit: on this machine every frame is
    // below 4 GiB, so only a narrower width can refuse one).
    let fits =
        |mfn: Mfn| address_bits == 0 || address_bits >= 64 || mfn.addr() >> address_bits == 0;
    let list = request.extent_start;
    let slot = |i: u64| list.wrapping_add(i * 8);
    let mut i = start;
    while i < extents {
        if i - start == EXTENT_BATCH {
            let cmd = u64::from(op) | (i << MEMOP_EXTENT_SHIFT);
            return ctx.continuation(Hypercall::MemoryOp.number(), [cmd, arg, 0, 0, 0]);
        }
        let ok = match op {
            XENMEM_INCREASE_RESERVATION => {
                match allocate_within(ctx, None, fits) {
                    // The frame is the domain's even if it cannot be told (as in Xen).
                    Some(mfn) => list == 0 || ctx.guest.write_obj(slot(i), &mfn.0).is_ok(),
                    None => false,
                }
            }
            XENMEM_POPULATE_PHYSMAP => match ctx.guest.read_obj::<u64>(slot(i)) {
                Ok(pfn) => match allocate_within(ctx, Some(pfn), fits) {
                    Some(mfn) => ctx.guest.write_obj(slot(i), &mfn.0).is_ok(),
                    None => false,
                },
                Err(_) => false,
            },
            _ => match ctx.guest.read_obj::<u64>(slot(i)) {
                Ok(gmfn) => {
                    let mut paging = Paging::new(ctx.mem, ctx.frames, ctx.domain.id, &mut *ctx.mmu);
                    paging.release(ctx.domain, Mfn(gmfn)).is_ok()
                }
                Err(_) => false,
            },
        };
        if !ok {
            break;
        }
        i += 1;
    }
    i
}

/// One new frame for the caller ([`reservation::allocate`]), if one was free and `fits`
/// it; a frame that does not goes back at once.
fn allocate_within<M: PhysMem>(
    ctx: &mut Context<'_, M>,
    pfn: Option<u64>,
    fits: impl Fn(Mfn) -> bool,
) -> Option<Mfn> {
    let mfn = reservation::allocate(ctx.mem, ctx.frames, ctx.domain, pfn).ok()?;
    if fits(mfn) {
        return Some(mfn);
    }
    let mut paging = Paging::new(ctx.mem, ctx.frames, ctx.domain.id, &mut *ctx.mmu);
    // A fresh frame is referenced by nothing: it can always go back.
    let _ = paging.release(ctx.domain, mfn);
    None
}

#[cfg(test)]
mod tests {
    use super::super::mmu::tests::{FOREIGN, L1, SPARE, paging_world};
    use super::super::tests::BUF;
    use super::*;
    use crate::frames::{FrameTable, Owner};
    use zerocopy::IntoBytes;

    const SELF: u16 = DOMID_SELF;

    fn reservation(list: u64, n: u64, domid: u16) -> XenMemoryReservation {
        XenMemoryReservation {
            extent_start: list,
            nr_extents: n,
            extent_order: 0,
            mem_flags: 0,
            domid,
            ..Default::default()
        }
    }

    /// Puts the request at BUF and its extent list at BUF + 0x100.
    fn request(w: &mut super::super::tests::World, r: XenMemoryReservation, list: &[u64]) {
        w.put(0, r.as_bytes());
        w.put(0x100, list.as_bytes());
    }

    fn extent(w: &super::super::tests::World, i: u64) -> u64 {
        u64::from_le_bytes(w.get(0x100 + i * 8, 8).try_into().unwrap())
    }

    #[test]
    fn a_page_given_back_after_its_mapping_went_is_flushed_for_across_calls() {
        // Mapped read-only by one call, unmapped by the next (no flush asked), given
        // back by a third: a CPU may still read it through the cached translation, so
        // the release flushes (each call's frame table continues the last one's TLB
        // clock, as the machine's one table does).
        let mut w = paging_world();
        let slot = L1.addr() + 40 * 8;
        let ro = (SPARE << 12) | crate::mm::pte::PRESENT | crate::mm::pte::USER;
        for value in [ro, 0] {
            w.put(0, pv_abi::xen::MmuUpdate::normal(slot, value).as_bytes());
            assert_eq!(w.call(1, [BUF, 1, 0, u64::from(SELF), 0]).0, 0);
        }
        let flushes = w.mmu.flushes;
        request(&mut w, reservation(BUF + 0x100, 1, SELF), &[SPARE]);
        assert_eq!(w.call(12, [1, BUF, 0, 0, 0]).0, 1);
        assert_eq!(w.mmu.flushes, flushes + 1);
    }

    #[test]
    fn reservation_sizes_and_the_memory_map() {
        let mut w = paging_world();
        w.put(0, &SELF.to_le_bytes());
        assert_eq!(w.call(12, [3, BUF, 0, 0, 0]).0, 16);
        assert_eq!(w.call(12, [4, BUF, 0, 0, 0]).0, 16);
        w.put(0, &2u16.to_le_bytes());
        assert_eq!(w.call(12, [3, BUF, 0, 0, 0]).0, -1, "another domain's");
        assert_eq!(w.call(12, [3, 0x10, 0, 0, 0]).0, -14);
        assert_eq!(
            w.call(12, [2, 0, 0, 0, 0]).0,
            32,
            "one past the last RAM frame"
        );
        let map = XenMemoryMap {
            nr_entries: 4,
            pad0: 0,
            buffer: BUF + 0x100,
        };
        w.put(0, map.as_bytes());
        assert_eq!(w.call(12, [9, BUF, 0, 0, 0]).0, 0);
        assert_eq!(w.get(0, 4), 1u32.to_le_bytes());
        let ram = E820Entry {
            addr: 0,
            size: 16 * 4096,
            r#type: E820_RAM,
        };
        assert_eq!(w.get(0x100, 20), ram.as_bytes());
        assert_eq!(w.call(12, [12, BUF, 0, 0, 0]).0, 0);
        assert_eq!(w.get(0, 8), MACH2PHYS_VIRT_START.to_le_bytes());
        assert_eq!(w.call(12, [40, BUF, 0, 0, 0]).0, -38);
        assert_eq!(w.call(12, [3 | (1 << 6), BUF, 0, 0, 0]).0, -22);
    }

    #[test]
    fn the_balloon_gives_back_only_unused_frames_and_takes_within_the_limit() {
        let mut w = paging_world();
        // Frame 0 and the spares are unused; BUF (5) is mapped; L1 is a table.
        request(
            &mut w,
            reservation(BUF + 0x100, 4, SELF),
            &[0, SPARE, 5, SPARE + 1],
        );
        assert_eq!(
            w.call(12, [1, BUF, 0, 0, 0]).0,
            2,
            "stops at the mapped frame"
        );
        assert_eq!(w.domain.nr_pages, 14);
        request(
            &mut w,
            reservation(BUF + 0x100, 3, SELF),
            &[L1.0, FOREIGN.0, 7],
        );
        assert_eq!(w.call(12, [1, BUF, 0, 0, 0]).0, 0, "a page table");
        request(&mut w, reservation(BUF + 0x100, 1, SELF), &[FOREIGN.0]);
        assert_eq!(w.call(12, [1, BUF, 0, 0, 0]).0, 0, "not ours");
        request(&mut w, reservation(BUF + 0x100, 1, SELF), &[7]);
        assert_eq!(w.call(12, [1, BUF, 0, 0, 0]).0, 0, "the shared-info page");
        assert_eq!(w.mmu.flushes, 0, "nothing ever mapped what went: no flush");
        // Taking back: two frames fit under max_pages, the third does not.
        request(&mut w, reservation(BUF + 0x100, 3, SELF), &[0, 0, 0]);
        assert_eq!(w.call(12, [0, BUF, 0, 0, 0]).0, 2);
        assert_eq!(w.domain.nr_pages, 16);
        let first = Mfn(extent(&w, 0));
        assert_eq!(
            FrameTable::resume(&mut w.storage, w.clock).owner(first),
            Owner::Domain(1)
        );
        // Populate records the pseudo-physical frame in the M2P.
        request(&mut w, reservation(BUF + 0x100, 1, SELF), &[first.0]);
        assert_eq!(w.call(12, [1, BUF, 0, 0, 0]).0, 1);
        request(&mut w, reservation(BUF + 0x100, 1, SELF), &[4321]);
        assert_eq!(w.call(12, [6, BUF, 0, 0, 0]).0, 1);
        let populated = extent(&w, 0);
        assert_eq!(w.m2p[populated as usize], 4321);
        // Refused without an errno, as in Xen: foreign domain, large extents, bad lists.
        request(&mut w, reservation(BUF + 0x100, 1, 2), &[0]);
        assert_eq!(w.call(12, [0, BUF, 0, 0, 0]).0, 0);
        let mut large = reservation(BUF + 0x100, 1, SELF);
        large.extent_order = 9;
        request(&mut w, large, &[0]);
        assert_eq!(w.call(12, [1, BUF, 0, 0, 0]).0, 0);
        request(&mut w, reservation(0x10, 1, SELF), &[]);
        assert_eq!(w.call(12, [1, BUF, 0, 0, 0]).0, 0);
        assert_eq!(w.call(12, [1, 0x10, 0, 0, 0]).0, 0);
        w.check();
    }

    /// `mem_flags` as Xen reads it: an address width of a page or less is refused
    /// outright, a frame above a narrower width goes back and stops the count, and
    /// populate-on-demand of the caller's own physmap does nothing. (Found by review:
    /// the flags were ignored.)
    #[test]
    fn memory_flags_limit_what_is_allocated() {
        use pv_abi::memory::XENMEMF_POPULATE_ON_DEMAND;
        let mut w = paging_world();
        // Give back two frames first, so that there is room under max_pages.
        request(
            &mut w,
            reservation(BUF + 0x100, 2, SELF),
            &[SPARE, SPARE + 1],
        );
        assert_eq!(w.call(12, [1, BUF, 0, 0, 0]).0, 2);
        let pages = w.domain.nr_pages;
        let with_flags = |flags: u32| XenMemoryReservation {
            mem_flags: flags,
            ..reservation(BUF + 0x100, 1, SELF)
        };
        for (flags, why) in [
            (12, "a width of one page"),
            (1, "a width of one bit"),
            (13, "frames 0 and 1 only: the one found is above"),
        ] {
            request(&mut w, with_flags(flags), &[0]);
            assert_eq!(w.call(12, [0, BUF, 0, 0, 0]).0, 0, "{why}");
            assert_eq!(w.domain.nr_pages, pages, "{why}: no frame kept");
        }
        request(&mut w, with_flags(XENMEMF_POPULATE_ON_DEMAND), &[77]);
        assert_eq!(
            w.call(12, [6, BUF, 0, 0, 0]).0,
            0,
            "populate-on-demand of oneself"
        );
        // A width every frame here fits, as 0: allocated.
        request(&mut w, with_flags(32), &[0]);
        assert_eq!(w.call(12, [0, BUF, 0, 0, 0]).0, 1);
        assert_eq!(w.domain.nr_pages, pages + 1);
        w.check();
    }

    #[test]
    fn long_reservations_are_continued() {
        let mut w = paging_world();
        let list: Vec<u64> = (SPARE..SPARE + 6).collect();
        request(&mut w, reservation(BUF + 0x100, 6, SELF), &list);
        assert_eq!(
            w.call(12, [1, BUF, 0, 0, 0]).0,
            12,
            "the hypercall number again"
        );
        let regs = w.last_regs;
        assert_eq!(regs.rdi, 1 | (EXTENT_BATCH << MEMOP_EXTENT_SHIFT));
        w.domain.vcpu.regs = regs;
        assert_eq!(w.call_with_regs(12, [regs.rdi, regs.rsi, 0, 0, 0]).0, 6);
        assert_eq!(w.domain.nr_pages, 10);
        w.check();
    }
}
