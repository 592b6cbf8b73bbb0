//! Memory-management hypercalls: page-table updates, descriptor tables, segment bases,
//! `iret`, and `memory_op`.
//!
//! Nearly all of these are `unsafe`: they change what the guest's addresses map to or
//! which memory the guest owns, which the hypervisor checks for *its* safety but not for
//! the soundness of the guest kernel's own Rust code.

use super::calls::{addr_of, addr_of_mut, ret};
use super::raw::{hypercall1, hypercall2, hypercall3, hypercall4};
use crate::arch_x86_64::IretContext;
use crate::errno::Errno;
use crate::memory::{
    E820Entry, XENMEM_ADD_TO_PHYSMAP, XENMEM_CURRENT_RESERVATION, XENMEM_DECREASE_RESERVATION,
    XENMEM_EXCHANGE, XENMEM_INCREASE_RESERVATION, XENMEM_MACHPHYS_MAPPING,
    XENMEM_MACHPHYS_MFN_LIST, XENMEM_MAXIMUM_GPFN, XENMEM_MAXIMUM_RAM_PAGE,
    XENMEM_MAXIMUM_RESERVATION, XENMEM_MEMORY_MAP, XENMEM_POPULATE_PHYSMAP,
    XENMEM_REMOVE_FROM_PHYSMAP, XenAddToPhysmap, XenMachphysMapping, XenMachphysMfnList,
    XenMemoryDomain, XenMemoryExchange, XenMemoryMap, XenMemoryReservation, XenRemoveFromPhysmap,
};
use crate::xen::{DomId, Hypercall, MmuUpdate, MmuextOp};

/// A batch hypercall that stopped early: how many entries were done, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartialError {
    /// Entries completed before the failure.
    pub done: u32,
    /// The failure.
    pub errno: Errno,
}

/// Applies page-table and M2P updates (`mmu_update`); returns the number done.
///
/// `foreigndom` is `DOMID_SELF` unless mapping another domain's pages.
///
/// # Safety
/// The updates change the guest's address space: no live Rust reference may be unmapped
/// or remapped by them, and new mappings must not alias memory Rust owns exclusively.
#[inline]
pub unsafe fn mmu_update(reqs: &[MmuUpdate], foreigndom: DomId) -> Result<u32, PartialError> {
    let mut done: u32 = 0;
    let done_arg = done_pointer(reqs.len(), &mut done);
    // SAFETY: `reqs` is read by the hypervisor and `done` written, both live borrows;
    // the effect of the updates is the caller's responsibility.
    let r = unsafe {
        hypercall4(
            Hypercall::MmuUpdate,
            addr_of(reqs),
            reqs.len() as u64,
            done_arg,
            u64::from(foreigndom),
        )
    };
    batch_result(ret(r), reqs.len(), done)
}

/// The `done` argument of a batch of `len` requests: a pointer to `done`, or NULL for a
/// single request, which needs no counter (success means it was done, failure that it
/// was not, and no continuation splits one request). Linux passes NULL for those too;
/// the hypervisor then writes nothing back, one guest copy less per call.
#[inline]
fn done_pointer(len: usize, done: &mut u32) -> u64 {
    if len == 1 { 0 } else { addr_of_mut(done) }
}

/// The result of a batch of `len` requests whose counter (see [`done_pointer`]) holds
/// `done`.
#[inline]
fn batch_result(result: Result<u64, Errno>, len: usize, done: u32) -> Result<u32, PartialError> {
    match result {
        Ok(_) if len == 1 => Ok(1),
        Ok(_) => Ok(done),
        Err(errno) if len == 1 => Err(PartialError { done: 0, errno }),
        Err(errno) => Err(PartialError { done, errno }),
    }
}

/// Runs extended MMU operations (`mmuext_op`); returns the number done.
///
/// # Safety
/// As [`mmu_update`]: pinning, base-pointer switches, LDT changes and page copies alter
/// the address space or memory contents. Pointers in `arg2` (VCPU bitmaps) must be
/// valid.
#[inline]
pub unsafe fn mmuext_op(ops: &[MmuextOp], foreigndom: DomId) -> Result<u32, PartialError> {
    let mut done: u32 = 0;
    let done_arg = done_pointer(ops.len(), &mut done);
    // SAFETY: as in `mmu_update`.
    let r = unsafe {
        hypercall4(
            Hypercall::MmuextOp,
            addr_of(ops),
            ops.len() as u64,
            done_arg,
            u64::from(foreigndom),
        )
    };
    batch_result(ret(r), ops.len(), done)
}

/// Writes the PTE mapping `va` (`update_va_mapping`), with `UVMF_*` flush `flags`.
///
/// # Safety
/// As [`mmu_update`] for the page at `va`.
#[inline]
pub unsafe fn update_va_mapping(va: u64, pte: u64, flags: u64) -> Result<u64, Errno> {
    // SAFETY: the mapping change is the caller's responsibility.
    ret(unsafe { hypercall3(Hypercall::UpdateVaMapping, va, pte, flags) })
}

/// [`update_va_mapping`] with the frame owned by `domid`
/// (`update_va_mapping_otherdomain`).
///
/// # Safety
/// As [`update_va_mapping`].
pub unsafe fn update_va_mapping_otherdomain(
    va: u64,
    pte: u64,
    flags: u64,
    domid: DomId,
) -> Result<u64, Errno> {
    // SAFETY: the mapping change is the caller's responsibility.
    ret(unsafe {
        hypercall4(
            Hypercall::UpdateVaMappingOtherdomain,
            va,
            pte,
            flags,
            u64::from(domid),
        )
    })
}

/// Installs a GDT made of `frames` with `entries` descriptors (`set_gdt`).
///
/// # Safety
/// Segment selectors in use must stay valid under the new table.
pub unsafe fn set_gdt(frames: &[u64], entries: u32) -> Result<u64, Errno> {
    // SAFETY: `frames` is read during the call; the table's effect is the caller's.
    ret(unsafe { hypercall2(Hypercall::SetGdt, addr_of(frames), u64::from(entries)) })
}

/// Writes one GDT or LDT descriptor at machine address `maddr` (`update_descriptor`).
///
/// # Safety
/// As [`set_gdt`].
pub unsafe fn update_descriptor(maddr: u64, desc: u64) -> Result<u64, Errno> {
    // SAFETY: the descriptor's effect is the caller's responsibility.
    ret(unsafe { hypercall2(Hypercall::UpdateDescriptor, maddr, desc) })
}

/// Sets the kernel stack used on entry from guest user mode (`stack_switch`).
///
/// # Safety
/// `ss:sp` must be a stack the kernel entry code may use.
pub unsafe fn stack_switch(ss: u64, sp: u64) -> Result<u64, Errno> {
    // SAFETY: the stack is the caller's responsibility.
    ret(unsafe { hypercall2(Hypercall::StackSwitch, ss, sp) })
}

/// Sets a segment base (`set_segment_base`, `SEGBASE_*`).
///
/// # Safety
/// The kernel GS base (and FS base) may be relied on by code holding per-CPU data.
pub unsafe fn set_segment_base(which: u32, base: u64) -> Result<u64, Errno> {
    // SAFETY: the base's effect is the caller's responsibility.
    ret(unsafe { hypercall2(Hypercall::SetSegmentBase, u64::from(which), base) })
}

/// Sets (`true`) or clears CR0.TS (`fpu_taskswitch`).
pub fn fpu_taskswitch(set: bool) -> Result<u64, Errno> {
    // SAFETY: toggling TS only makes the next FPU use trap to the guest's #NM handler.
    ret(unsafe { hypercall1(Hypercall::FpuTaskswitch, u64::from(set)) })
}

/// Writes virtual debug register `reg` (`set_debugreg`).
pub fn set_debugreg(reg: u32, value: u64) -> Result<u64, Errno> {
    // SAFETY: debug registers only cause #DB exceptions delivered to the guest's handler.
    ret(unsafe { hypercall2(Hypercall::SetDebugreg, u64::from(reg), value) })
}

/// Reads virtual debug register `reg` (`get_debugreg`). Xen's interface cannot tell a
/// register value in `-4095..=-1` from an error.
pub fn get_debugreg(reg: u32) -> Result<u64, Errno> {
    // SAFETY: a read without side effects.
    ret(unsafe { hypercall1(Hypercall::GetDebugreg, u64::from(reg)) })
}

/// Returns to the context in `frame` (`iret`): the frame is copied to the top of the
/// current stack, which the hypercall pops. Does not return.
///
/// # Safety
/// The frame must describe a context that is sound to resume (code, stack, flags); the
/// current Rust frame is abandoned without running destructors.
#[cfg(not(test))]
pub unsafe fn iret(frame: &IretContext) -> ! {
    // SAFETY: the frame is copied below the current stack pointer before the hypercall,
    // which then reads it from `rsp`; control never comes back.
    unsafe {
        core::arch::asm!(
            "sub rsp, 72",
            "mov rcx, 9",
            "mov rdi, rsp",
            "cld",
            "rep movsq",
            "mov eax, {nr}",
            "syscall",
            "ud2",
            nr = const Hypercall::Iret as u32,
            in("rsi") frame as *const IretContext,
            options(noreturn),
        )
    }
}

/// Test stand-in for `iret`: records the frame address and panics.
///
/// # Safety
/// None beyond the real function's; nothing is resumed.
#[cfg(test)]
pub unsafe fn iret(frame: &IretContext) -> ! {
    // SAFETY: the mock only records the call.
    let _ = unsafe { hypercall1(Hypercall::Iret, addr_of(frame)) };
    panic!("iret does not return");
}

// ----- memory_op ---------------------------------------------------------------------

/// Issues `memory_op(cmd, arg)` with a raw argument.
///
/// # Safety
/// `arg` must point to the structure `cmd` expects, and the operation's effect on the
/// guest's memory must be sound.
pub unsafe fn memory_op_raw(cmd: u32, arg: u64) -> Result<u64, Errno> {
    // SAFETY: forwarded from the caller.
    ret(unsafe { hypercall2(Hypercall::MemoryOp, u64::from(cmd), arg) })
}

/// A reservation request over `extents` (in or out by operation).
fn reservation(extents: &mut [u64], order: u32, domid: DomId) -> XenMemoryReservation {
    XenMemoryReservation {
        extent_start: addr_of_mut(extents),
        nr_extents: extents.len() as u64,
        extent_order: order,
        mem_flags: 0,
        domid,
        pad0: [0; 3],
    }
}

/// Allocates `extents.len()` extents of `2^order` pages, writing their machine frames
/// into `extents` (`XENMEM_increase_reservation`); returns the number allocated.
pub fn increase_reservation(extents: &mut [u64], order: u32, domid: DomId) -> Result<u64, Errno> {
    let arg = reservation(extents, order, domid);
    // SAFETY: `arg` and the extent array it points to are live for the call; allocation
    // only adds frames and does not map them.
    unsafe { memory_op_raw(XENMEM_INCREASE_RESERVATION, addr_of(&arg)) }
}

/// Gives back the frames in `extents` (`XENMEM_decrease_reservation`); returns the
/// number freed.
///
/// # Safety
/// Nothing may use the freed frames afterwards (no mapping the guest still relies on).
pub unsafe fn decrease_reservation(
    extents: &mut [u64],
    order: u32,
    domid: DomId,
) -> Result<u64, Errno> {
    let arg = reservation(extents, order, domid);
    // SAFETY: the argument is live; the freed memory is the caller's responsibility.
    unsafe { memory_op_raw(XENMEM_DECREASE_RESERVATION, addr_of(&arg)) }
}

/// Populates the guest frames listed in `extents` with memory
/// (`XENMEM_populate_physmap`); returns the number populated.
///
/// # Safety
/// The listed guest frames must not back memory the guest is using.
pub unsafe fn populate_physmap(
    extents: &mut [u64],
    order: u32,
    domid: DomId,
) -> Result<u64, Errno> {
    let arg = reservation(extents, order, domid);
    // SAFETY: the argument is live; the physmap change is the caller's responsibility.
    unsafe { memory_op_raw(XENMEM_POPULATE_PHYSMAP, addr_of(&arg)) }
}

/// Exchanges extents (`XENMEM_exchange`); `exchange.nr_exchanged` reports progress.
///
/// # Safety
/// As [`decrease_reservation`] for the input extents, and the array pointers in
/// `exchange` must be valid.
pub unsafe fn memory_exchange(exchange: &mut XenMemoryExchange) -> Result<u64, Errno> {
    // SAFETY: forwarded from the caller.
    unsafe { memory_op_raw(XENMEM_EXCHANGE, addr_of_mut(exchange)) }
}

/// The highest machine frame number (`XENMEM_maximum_ram_page`).
pub fn maximum_ram_page() -> Result<u64, Errno> {
    // SAFETY: no argument.
    unsafe { memory_op_raw(XENMEM_MAXIMUM_RAM_PAGE, 0) }
}

fn domain_query(cmd: u32, domid: DomId) -> Result<u64, Errno> {
    let arg = XenMemoryDomain { domid };
    // SAFETY: `arg` is live and only read.
    unsafe { memory_op_raw(cmd, addr_of(&arg)) }
}

/// Pages allocated to `domid` (`XENMEM_current_reservation`).
pub fn current_reservation(domid: DomId) -> Result<u64, Errno> {
    domain_query(XENMEM_CURRENT_RESERVATION, domid)
}

/// Page limit of `domid` (`XENMEM_maximum_reservation`).
pub fn maximum_reservation(domid: DomId) -> Result<u64, Errno> {
    domain_query(XENMEM_MAXIMUM_RESERVATION, domid)
}

/// Highest guest frame of `domid` (`XENMEM_maximum_gpfn`).
pub fn maximum_gpfn(domid: DomId) -> Result<u64, Errno> {
    domain_query(XENMEM_MAXIMUM_GPFN, domid)
}

/// The guest's memory map, written into `entries` (`XENMEM_memory_map`); returns the
/// number of entries.
pub fn memory_map(entries: &mut [E820Entry]) -> Result<usize, Errno> {
    let mut arg = XenMemoryMap {
        nr_entries: u32::try_from(entries.len()).unwrap_or(u32::MAX),
        pad0: 0,
        buffer: addr_of_mut(entries),
    };
    // SAFETY: `arg` and `entries` are live exclusive borrows; E820 entries accept any
    // bytes.
    unsafe { memory_op_raw(XENMEM_MEMORY_MAP, addr_of_mut(&mut arg)) }?;
    Ok((arg.nr_entries as usize).min(entries.len()))
}

/// Where the M2P is mapped (`XENMEM_machphys_mapping`).
pub fn machphys_mapping() -> Result<XenMachphysMapping, Errno> {
    let mut arg = XenMachphysMapping::default();
    // SAFETY: `arg` is a live exclusive borrow of the type the command fills.
    unsafe { memory_op_raw(XENMEM_MACHPHYS_MAPPING, addr_of_mut(&mut arg)) }?;
    Ok(arg)
}

/// The M2P's 2 MiB extents, written into `extents` (`XENMEM_machphys_mfn_list`);
/// returns the count.
pub fn machphys_mfn_list(extents: &mut [u64]) -> Result<usize, Errno> {
    let mut arg = XenMachphysMfnList {
        max_extents: u32::try_from(extents.len()).unwrap_or(u32::MAX),
        extent_start: addr_of_mut(extents),
        ..Default::default()
    };
    // SAFETY: `arg` and `extents` are live exclusive borrows.
    unsafe { memory_op_raw(XENMEM_MACHPHYS_MFN_LIST, addr_of_mut(&mut arg)) }?;
    Ok((arg.nr_extents as usize).min(extents.len()))
}

/// Maps a special page into the physmap (`XENMEM_add_to_physmap`).
///
/// # Safety
/// The guest frame `arg.gpfn` must not back memory in use.
pub unsafe fn add_to_physmap(arg: &XenAddToPhysmap) -> Result<u64, Errno> {
    // SAFETY: `arg` is live; the physmap change is the caller's responsibility.
    unsafe { memory_op_raw(XENMEM_ADD_TO_PHYSMAP, addr_of(arg)) }
}

/// Removes a page from the physmap (`XENMEM_remove_from_physmap`).
///
/// # Safety
/// Nothing may still use the page.
pub unsafe fn remove_from_physmap(domid: DomId, gpfn: u64) -> Result<u64, Errno> {
    let arg = XenRemoveFromPhysmap {
        domid,
        pad0: [0; 3],
        gpfn,
    };
    // SAFETY: `arg` is live; the physmap change is the caller's responsibility.
    unsafe { memory_op_raw(XENMEM_REMOVE_FROM_PHYSMAP, addr_of(&arg)) }
}
