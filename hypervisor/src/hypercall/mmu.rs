//! `mmu_update`, `mmuext_op` and `update_va_mapping`: the guest's page-table work, every
//! request copied out of guest memory and validated by [`crate::paging`].
//!
//! Batches follow Xen: requests run in order and stop at the first failure; the number
//! done is added to `*done_out` (if not null) and the errno returned. A batch longer than
//! [`BATCH`] is preempted with a continuation: the guest re-issues the call with the
//! request pointer advanced and `count` = remaining | [`MMU_UPDATE_PREEMPTED`], and the
//! running total in `*done_out` carries over, so the hypervisor never holds the CPU for
//! an unbounded time.

use super::Context;
use crate::guestmem::GuestMem;
use crate::mm::{self, Mfn, PhysMem};
use crate::paging::{Mmu, Paging};
use core::mem::MaybeUninit;
use pv_abi::errno::Errno;
use pv_abi::xen::{
    DOMID_SELF, Hypercall, MMU_MACHPHYS_UPDATE, MMU_NORMAL_PT_UPDATE, MMU_PT_UPDATE_NO_TRANSLATE,
    MMU_PT_UPDATE_PRESERVE_AD, MMUEXT_CLEAR_PAGE, MMUEXT_COPY_PAGE, MMUEXT_FLUSH_CACHE,
    MMUEXT_FLUSH_CACHE_GLOBAL, MMUEXT_INVLPG_ALL, MMUEXT_INVLPG_LOCAL, MMUEXT_INVLPG_MULTI,
    MMUEXT_MARK_SUPER, MMUEXT_NEW_BASEPTR, MMUEXT_NEW_USER_BASEPTR, MMUEXT_PIN_L1_TABLE,
    MMUEXT_PIN_L2_TABLE, MMUEXT_PIN_L3_TABLE, MMUEXT_PIN_L4_TABLE, MMUEXT_SET_LDT,
    MMUEXT_TLB_FLUSH_ALL, MMUEXT_TLB_FLUSH_LOCAL, MMUEXT_TLB_FLUSH_MULTI, MMUEXT_UNMARK_SUPER,
    MMUEXT_UNPIN_TABLE, MmuUpdate, MmuextOp, UVMF_FLUSHTYPE_MASK, UVMF_INVLPG, UVMF_TLB_FLUSH,
};

/// The top bit of a batch's `count`: this call resumes a preempted batch (Xen's
/// `MMU_UPDATE_PREEMPTED`).
pub const MMU_UPDATE_PREEMPTED: u32 = 1 << 31;
/// Requests handled per invocation before the batch is continued.
pub const BATCH: u32 = 128;
/// `mmu_update` requests copied from the guest at a time (before any of them is
/// validated or applied). Xen copies one at a time: the two differ only for a batch that
/// remaps the page holding its own later requests.
const COPY_AHEAD: usize = 16;
/// The low bits of `mmu_update.ptr` that hold the command (Xen decodes three).
const COMMAND_BITS: u64 = 7;
/// `update_va_mapping` flags: the vCPU-mask pointer (or `UVMF_LOCAL`/`UVMF_ALL`).
const UVMF_MASK_BITS: u64 = !UVMF_FLUSHTYPE_MASK;
/// `UVMF_ALL`.
const UVMF_ALL: u64 = pv_abi::xen::UVMF_ALL;

/// Only the caller's own pages for now: `DOMID_SELF`. Its own id named as the foreign
/// domain is `ESRCH`, as Xen's `get_pg_owner` refuses it ("Cannot specify itself as
/// foreign domain"); any other is `EPERM` (foreign mappings are a privileged toolstack's,
/// and come with the grant work).
fn check_foreigndom<M: PhysMem>(ctx: &Context<'_, M>, foreigndom: u64) -> Result<(), Errno> {
    let id = foreigndom as u16;
    if foreigndom >> 16 == 0 && id == ctx.domain.id {
        return Err(Errno::ESRCH);
    }
    if foreigndom >> 16 != 0 || id != DOMID_SELF {
        return Err(Errno::EPERM);
    }
    Ok(())
}

/// Where a batch is: its arguments, and how far this invocation got.
struct Batch {
    items: u64,
    count: u32,
    done_out: u64,
    foreigndom: u64,
    /// The total done before this invocation (from `*done_out` when resuming).
    done_before: u32,
}

impl Batch {
    fn decode<M: PhysMem>(ctx: &Context<'_, M>, args: [u64; 4]) -> Batch {
        let [items, count, done_out, foreigndom] = args;
        let mut count = count as u32;
        let mut done_before = 0;
        if count & MMU_UPDATE_PREEMPTED != 0 {
            count &= !MMU_UPDATE_PREEMPTED;
            if done_out != 0 {
                done_before = ctx.guest.read_obj::<u32>(done_out).unwrap_or(0);
            }
        }
        Batch {
            items,
            count,
            done_out,
            foreigndom,
            done_before,
        }
    }

    /// Reports `done` more items and either returns `result` or, if the budget ran out
    /// first, continues the batch.
    fn finish<M: PhysMem>(
        self,
        ctx: &mut Context<'_, M>,
        call: Hypercall,
        item_size: u64,
        done: u32,
        result: Result<u64, Errno>,
    ) -> Result<u64, Errno> {
        if self.done_out != 0 {
            let total = self.done_before.wrapping_add(done);
            let _ = ctx.guest.write_obj(self.done_out, &total);
        }
        if result.is_ok() && done < self.count {
            let next = self.items.wrapping_add(u64::from(done) * item_size);
            let remaining = u64::from((self.count - done) | MMU_UPDATE_PREEMPTED);
            return Ok(ctx.continuation(
                call.number(),
                [next, remaining, self.done_out, self.foreigndom, 0],
            ));
        }
        result
    }
}

/// `mmu_update(reqs, count, done_out, foreigndom)`.
pub(super) fn mmu_update<M: PhysMem>(
    ctx: &mut Context<'_, M>,
    args: [u64; 4],
) -> Result<u64, Errno> {
    let batch = Batch::decode(ctx, args);
    if let Err(errno) = check_foreigndom(ctx, batch.foreigndom) {
        return batch.finish(ctx, Hypercall::MmuUpdate, 16, 0, Err(errno));
    }
    let mut paging = Paging::new(ctx.mem, ctx.frames, ctx.domain.id, &mut *ctx.mmu);
    let (done, result) =
        apply_requests(&ctx.guest, &mut paging, batch.items, batch.count.min(BATCH));
    batch.finish(ctx, Hypercall::MmuUpdate, 16, done, result)
}

/// Applies the `count` requests at guest address `items` in order, stopping at the first
/// that fails: how many were done, and `Ok(0)` or the failure. Requests are copied
/// [`COPY_AHEAD`] at a time into uninitialised memory; if a copy fails, one request is
/// read alone, so that a bad pointer fails exactly at its request.
#[inline(always)]
fn apply_requests<M: PhysMem, U: Mmu + ?Sized>(
    guest: &GuestMem<'_, M>,
    paging: &mut Paging<'_, M, U>,
    items: u64,
    count: u32,
) -> (u32, Result<u64, Errno>) {
    let mut slots = [const { MaybeUninit::<MmuUpdate>::uninit() }; COPY_AHEAD];
    let mut done = 0;
    while done < count {
        let at = items.wrapping_add(u64::from(done) * 16);
        let want = (count - done).min(COPY_AHEAD as u32) as usize;
        let requests = match guest.read_slice(at, &mut slots[..want]) {
            Ok(requests) => requests,
            Err(_) => match guest.read_obj::<MmuUpdate>(at) {
                Ok(request) => core::slice::from_ref(slots[0].write(request)),
                Err(errno) => return (done, Err(errno)),
            },
        };
        for &request in requests {
            if let Err(errno) = apply_request(paging, request) {
                return (done, Err(errno));
            }
            done += 1;
        }
    }
    (done, Ok(0))
}

/// One `mmu_update` request, for a batch and for the fast path alike. A page-table
/// write (the commonest request by far) is inlined into both; the rest is
/// `apply_other_request`.
#[inline(always)]
fn apply_request<M: PhysMem, U: Mmu + ?Sized>(
    paging: &mut Paging<'_, M, U>,
    request: MmuUpdate,
) -> Result<(), Errno> {
    let cmd = request.ptr & COMMAND_BITS;
    if matches!(
        cmd,
        MMU_NORMAL_PT_UPDATE | MMU_PT_UPDATE_NO_TRANSLATE | MMU_PT_UPDATE_PRESERVE_AD
    ) {
        let preserve_ad = cmd == MMU_PT_UPDATE_PRESERVE_AD;
        return paging.write_pte(request.ptr & !COMMAND_BITS, request.val, preserve_ad);
    }
    apply_other_request(paging, request)
}

/// [`apply_request`] for anything but a page-table write.
#[inline(never)]
fn apply_other_request<M: PhysMem, U: Mmu + ?Sized>(
    paging: &mut Paging<'_, M, U>,
    request: MmuUpdate,
) -> Result<(), Errno> {
    match request.ptr & COMMAND_BITS {
        MMU_MACHPHYS_UPDATE => {
            let mfn = Mfn(request.ptr >> mm::PAGE_SHIFT);
            if paging.owns(mfn) {
                paging.frames.set_m2p(mfn, request.val);
                Ok(())
            } else {
                Err(Errno::EINVAL)
            }
        }
        _ => Err(Errno::ENOSYS),
    }
}

/// `mmu_update` for the hypercall fast path: a batch on the caller's own tables (not a
/// continuation) of at most `BATCH` (128) requests, so that no continuation is needed,
/// without a hypercall context. Does what `mmu_update` would (the same requests applied
/// by the same `apply_request`), with the same result and `done` count; `None` means the
/// call is not such a batch and nothing was done (the general path takes it, and
/// reports a single request it cannot read).
#[inline(always)]
pub fn light_mmu_update<M: PhysMem, U: Mmu + ?Sized>(
    guest: &GuestMem<'_, M>,
    paging: &mut Paging<'_, M, U>,
    args: [u64; 4],
) -> Option<Result<u64, Errno>> {
    let [requests, count, done_out, foreigndom] = args;
    if foreigndom != u64::from(DOMID_SELF) {
        return None;
    }
    if count as u32 != 1 {
        return light_mmu_update_batch(guest, paging, args);
    }
    // One request (the commonest call): read inline, nothing to copy ahead.
    let request = guest.read_obj::<MmuUpdate>(requests).ok()?;
    let applied = apply_request(paging, request);
    if done_out != 0 {
        let _ = guest.write_obj(done_out, &u32::from(applied.is_ok()));
    }
    Some(applied.map(|()| 0))
}

/// [`light_mmu_update`] of more than one request: at most `BATCH`, and not a
/// continuation (`multicall` reaches it through `light_call`, and writes a continuation's
/// arguments back into its entry on the general path).
#[inline(always)]
pub fn light_mmu_update_batch<M: PhysMem, U: Mmu + ?Sized>(
    guest: &GuestMem<'_, M>,
    paging: &mut Paging<'_, M, U>,
    args: [u64; 4],
) -> Option<Result<u64, Errno>> {
    let [requests, count, done_out, foreigndom] = args;
    let count = count as u32;
    if count == 0 || count > BATCH || foreigndom != u64::from(DOMID_SELF) {
        return None;
    }
    let (_, result) = light_requests(guest, paging, requests, count, done_out, 0);
    Some(result)
}

/// What [`light_mmu_update_continued`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LightBatch {
    /// The batch is over: the call's result.
    Done(Result<u64, Errno>),
    /// `BATCH` requests were applied and more remain: the guest must re-issue the call
    /// with these arguments (Xen's continuation, as `mmu_update`'s), the rest of the
    /// batch and the `MMU_UPDATE_PREEMPTED` flag in the count.
    Continue([u64; 4]),
}

/// `mmu_update` of a batch of any length for the hypercall fast path: `BATCH` requests
/// per call, as the general path, then a continuation ([`LightBatch::Continue`]) the
/// caller arranges; a continued call (the `MMU_UPDATE_PREEMPTED` flag) carries on with
/// the `done` count it finds at `done_out`. The same requests, results, `done` counts and
/// continuation arguments as `mmu_update` (host test); `None` (nothing done) for another
/// domain's tables or an empty batch.
#[inline(always)]
pub fn light_mmu_update_continued<M: PhysMem, U: Mmu + ?Sized>(
    guest: &GuestMem<'_, M>,
    paging: &mut Paging<'_, M, U>,
    args: [u64; 4],
) -> Option<LightBatch> {
    let [requests, count, done_out, foreigndom] = args;
    if foreigndom != u64::from(DOMID_SELF) {
        return None;
    }
    let mut count = count as u32;
    let mut done_before = 0;
    if count & MMU_UPDATE_PREEMPTED != 0 {
        count &= !MMU_UPDATE_PREEMPTED;
        if done_out != 0 {
            done_before = guest.read_obj::<u32>(done_out).unwrap_or(0);
        }
    }
    if count == 0 {
        return None;
    }
    let (done, result) = light_requests(guest, paging, requests, count, done_out, done_before);
    if result.is_ok() && done < count {
        let next = requests.wrapping_add(u64::from(done) * 16);
        let remaining = u64::from((count - done) | MMU_UPDATE_PREEMPTED);
        return Some(LightBatch::Continue([
            next, remaining, done_out, foreigndom,
        ]));
    }
    Some(LightBatch::Done(result))
}

/// Applies up to `BATCH` of the `count` requests at `requests` and adds what was done to
/// `done_before` at `done_out` (if not NULL), as `Batch::finish` does.
#[inline(always)]
fn light_requests<M: PhysMem, U: Mmu + ?Sized>(
    guest: &GuestMem<'_, M>,
    paging: &mut Paging<'_, M, U>,
    requests: u64,
    count: u32,
    done_out: u64,
    done_before: u32,
) -> (u32, Result<u64, Errno>) {
    let (done, result) = apply_requests(guest, paging, requests, count.min(BATCH));
    if done_out != 0 {
        let _ = guest.write_obj(done_out, &done_before.wrapping_add(done));
    }
    (done, result)
}

/// `mmuext_op(ops, count, done_out, foreigndom)`.
pub(super) fn mmuext_op<M: PhysMem>(
    ctx: &mut Context<'_, M>,
    args: [u64; 4],
) -> Result<u64, Errno> {
    let batch = Batch::decode(ctx, args);
    if let Err(errno) = check_foreigndom(ctx, batch.foreigndom) {
        return batch.finish(ctx, Hypercall::MmuextOp, 24, 0, Err(errno));
    }
    let mut done = 0;
    let mut result = Ok(0);
    while done < batch.count.min(BATCH) {
        let at = batch.items.wrapping_add(u64::from(done) * 24);
        let applied = match ctx.guest.read_obj::<MmuextOp>(at) {
            Ok(op) => one_mmuext_op(ctx, op),
            Err(errno) => Err(errno),
        };
        // A NEW_BASEPTR switched roots: the next ops and `done_out` are the new one's.
        ctx.follow_kernel_root();
        if let Err(errno) = applied {
            result = Err(errno);
            break;
        }
        done += 1;
    }
    batch.finish(ctx, Hypercall::MmuextOp, 24, done, result)
}

/// Whether a guest-supplied address may be flushed (canonical, outside the hypervisor's
/// range: Xen's `__addr_ok`). That is exactly the one-byte range the MMU may copy for a
/// guest (below the canonical hole, or above the hypervisor's L4 slots): two compares
/// (a host test holds it to the definition).
#[inline]
fn guest_address(va: u64) -> bool {
    crate::guestmem::mmu_may_copy(va, 1)
}

/// Reads (and ignores) the first word of a vCPU bitmap: there is one vCPU, so any mask
/// means "all", but the pointer must still be readable (`EFAULT`).
fn check_vcpu_mask<M: PhysMem>(ctx: &Context<'_, M>, mask: u64) -> Result<(), Errno> {
    ctx.guest.read_obj::<u64>(mask).map(|_| ())
}

// Each TLB command's `_ALL` form is its `_LOCAL` one plus 4 (Xen's numbering), which
// `simple_tlb_op` tests both by at once.
const _: () = assert!(
    MMUEXT_INVLPG_ALL == MMUEXT_INVLPG_LOCAL + 4
        && MMUEXT_TLB_FLUSH_ALL == MMUEXT_TLB_FLUSH_LOCAL + 4
);

/// The TLB operations that need nothing more from the guest: a flush or an INVLPG, on
/// this CPU or on all (the domain's one vCPU runs only here); `None` for any other
/// command (nothing done), else whether every translation was dropped (a full flush the
/// MMU made: the general path counts it on the TLB clock, `FrameTable::tlb_clock`).
/// Not a `match`: LLVM makes a `match` of these few values (with the caller's
/// `NEW_BASEPTR` test) a jump table, and under QEMU an indirect jump after an `invlpg`
/// costs a translation-block lookup of its own (docs/benchmarks-history.md, "Measured
/// on the way"); two tests of `cmd - LOCAL` being 0 or 4 take fewer instructions too.
#[inline]
fn simple_tlb_op(mmu: &mut (impl Mmu + ?Sized), cmd: u32, va: u64) -> Option<bool> {
    let local_or_all = |local: u32| cmd.wrapping_sub(local) & !4 == 0;
    if local_or_all(MMUEXT_INVLPG_LOCAL) {
        if guest_address(va) {
            mmu.flush_va(va);
        }
        Some(false)
    } else if local_or_all(MMUEXT_TLB_FLUSH_LOCAL) {
        Some(mmu.flush_all())
    } else {
        None
    }
}

/// `mmuext_op` for the hypercall fast path: a batch of exactly one operation that needs
/// no hypercall context because it changes no frame's type or count and no vCPU state: a
/// TLB flush or INVLPG, or `MMUEXT_NEW_BASEPTR` to the vCPU's current kernel root (a
/// reload, which is Xen's shortcut in `new_guest_cr3` too). Does what `mmuext_op`
/// would, with the same result and `done` count; `None` means the call is not such a
/// batch and nothing was done (the caller takes the general path, which reads the
/// request again and reports any error). Always inlined: the arguments then stay in
/// registers (an array of them built in memory is copied with SSE).
#[inline(always)]
pub fn light_mmuext_op<M: PhysMem>(
    guest: &GuestMem<'_, M>,
    mmu: &mut (impl Mmu + ?Sized),
    kernel_root: Mfn,
    args: [u64; 4],
) -> Option<u64> {
    let [ops, count, done_out, foreigndom] = args;
    if count as u32 != 1 || foreigndom != u64::from(DOMID_SELF) {
        return None;
    }
    let op = guest.read_obj::<MmuextOp>(ops).ok()?;
    if op.cmd == MMUEXT_NEW_BASEPTR {
        if Mfn(op.arg1) != kernel_root {
            return None;
        }
        mmu.load_root(kernel_root);
    } else {
        simple_tlb_op(mmu, op.cmd, op.arg1)?;
    }
    if done_out != 0 {
        let _ = guest.write_obj(done_out, &1u32);
    }
    Some(0)
}

fn one_mmuext_op<M: PhysMem>(ctx: &mut Context<'_, M>, op: MmuextOp) -> Result<(), Errno> {
    if let Some(flushed_all) = simple_tlb_op(ctx.mmu, op.cmd, op.arg1) {
        if flushed_all {
            ctx.frames.note_full_flush();
        }
        return Ok(());
    }
    match op.cmd {
        MMUEXT_TLB_FLUSH_MULTI | MMUEXT_INVLPG_MULTI => {
            check_vcpu_mask(ctx, op.arg2).map_err(|_| Errno::EINVAL)?;
            if op.cmd == MMUEXT_TLB_FLUSH_MULTI {
                if ctx.mmu.flush_all() {
                    ctx.frames.note_full_flush();
                }
            } else if guest_address(op.arg1) {
                ctx.mmu.flush_va(op.arg1);
            }
            return Ok(());
        }
        _ => {}
    }
    let mut paging = Paging::new(ctx.mem, ctx.frames, ctx.domain.id, &mut *ctx.mmu);
    let mfn = Mfn(op.arg1);
    match op.cmd {
        MMUEXT_PIN_L1_TABLE | MMUEXT_PIN_L2_TABLE | MMUEXT_PIN_L3_TABLE | MMUEXT_PIN_L4_TABLE => {
            paging.pin(mfn, op.cmd - MMUEXT_PIN_L1_TABLE + 1)
        }
        MMUEXT_UNPIN_TABLE => paging.unpin(mfn),
        MMUEXT_NEW_BASEPTR => paging.new_baseptr(&mut ctx.domain.vcpu, mfn),
        MMUEXT_NEW_USER_BASEPTR => paging.new_user_baseptr(&mut ctx.domain.vcpu, op.arg1),
        MMUEXT_CLEAR_PAGE => paging.clear_page(mfn),
        MMUEXT_COPY_PAGE => paging.copy_page(mfn, Mfn(op.arg2)),
        // Cache flushes are for domains with devices; we give none.
        MMUEXT_FLUSH_CACHE => Err(Errno::EACCES),
        MMUEXT_FLUSH_CACHE_GLOBAL => Err(Errno::EINVAL),
        MMUEXT_MARK_SUPER | MMUEXT_UNMARK_SUPER => Err(Errno::EOPNOTSUPP),
        MMUEXT_SET_LDT => set_ldt(op.arg1, op.arg2),
        _ => Err(Errno::ENOSYS),
    }
}

/// `MMUEXT_SET_LDT` of `entries` descriptors at `base`, as far as a domain without an
/// LDT goes: no LDT (0 entries, the base then ignored) is what every vCPU has, so it
/// succeeds, as in Xen (Linux sets it at boot and on every switch to a process without
/// one). Arguments Xen refuses are `EINVAL` here too (a base not page-aligned or not the
/// guest's, more than 8192 entries); an LDT itself is `ENOSYS`: the descriptor pages it
/// would live in are not validated yet (`PageType::SegmentDescriptors`).
fn set_ldt(base: u64, entries: u64) -> Result<(), Errno> {
    let entries = entries as u32;
    if entries == 0 {
        return Ok(());
    }
    if !base.is_multiple_of(crate::mm::PAGE_SIZE) || !guest_address(base) || entries > 8192 {
        return Err(Errno::EINVAL);
    }
    Err(Errno::ENOSYS)
}

/// `update_va_mapping(va, val, flags)`: sets the L1 entry that maps `va` in the current
/// kernel address space, validated like an `mmu_update`, then flushes as `flags` say
/// (`UVMF_NONE`, `UVMF_TLB_FLUSH` or `UVMF_INVLPG`, for `UVMF_LOCAL`, `UVMF_ALL` or a
/// vCPU mask pointer, which must be readable: `EFAULT` after the update otherwise).
pub(super) fn update_va_mapping<M: PhysMem>(
    ctx: &mut Context<'_, M>,
    va: u64,
    val: u64,
    flags: u64,
) -> Result<u64, Errno> {
    let root = ctx.domain.vcpu.kernel_root;
    {
        let mut paging = Paging::new(ctx.mem, ctx.frames, ctx.domain.id, &mut *ctx.mmu);
        set_va_entry(&mut paging, root, va, val)?;
    }
    let flush = flags & UVMF_FLUSHTYPE_MASK;
    if flush != UVMF_TLB_FLUSH && flush != UVMF_INVLPG {
        return Ok(0);
    }
    let mask = flags & UVMF_MASK_BITS;
    let checked = if mask == 0 || mask == UVMF_ALL {
        Ok(())
    } else {
        check_vcpu_mask(ctx, mask)
    };
    flush_for(ctx.mmu, va, flags);
    checked.map(|()| 0)
}

/// `update_va_mapping` for the hypercall fast path, when `flags` name no vCPU mask in
/// guest memory (local or all: the domain's one vCPU runs only here), so that nothing
/// but the paging engine is needed. Does what `update_va_mapping` would; `None` for a
/// mask pointer (nothing done: the general path takes it).
#[inline(always)]
pub fn light_update_va_mapping<M: PhysMem, U: Mmu + ?Sized>(
    paging: &mut Paging<'_, M, U>,
    root: Mfn,
    [va, val, flags]: [u64; 3],
) -> Option<Result<u64, Errno>> {
    let mask = flags & UVMF_MASK_BITS;
    if mask != 0 && mask != UVMF_ALL {
        return None;
    }
    Some(set_va_entry(paging, root, va, val).map(|()| {
        flush_for(paging.mmu, va, flags);
        0
    }))
}

/// The light paths of the batch hypercalls by number (`mmu_update`, `update_va_mapping`,
/// `mmuext_op` with their first four arguments): the value for `rax`, or `None` if the
/// call has no light path or declined (nothing done). The machine's fast path and
/// `multicall` try this before a full dispatch.
pub fn light_call<M: PhysMem, U: Mmu + ?Sized>(
    guest: &GuestMem<'_, M>,
    paging: &mut Paging<'_, M, U>,
    root: Mfn,
    number: u64,
    args: [u64; 4],
) -> Option<u64> {
    let rax = |result: Result<u64, Errno>| result.unwrap_or_else(|errno| errno.to_ret() as u64);
    if number == Hypercall::MmuUpdate.number() {
        light_mmu_update(guest, paging, args).map(rax)
    } else if number == Hypercall::UpdateVaMapping.number() {
        light_update_va_mapping(paging, root, [args[0], args[1], args[2]]).map(rax)
    } else if number == Hypercall::MmuextOp.number() {
        light_mmuext_op(guest, paging.mmu, root, args)
    } else {
        None
    }
}

/// Sets the L1 entry that maps `va` under `root` to `val`.
#[inline]
fn set_va_entry<M: PhysMem, U: Mmu + ?Sized>(
    paging: &mut Paging<'_, M, U>,
    root: Mfn,
    va: u64,
    val: u64,
) -> Result<(), Errno> {
    let (table, index) = paging.l1_slot_for(root, va)?;
    paging.update_entry(table, 1, index, val, false)
}

/// The TLB work `update_va_mapping`'s `flags` ask for after the update.
#[inline]
fn flush_for(mmu: &mut (impl Mmu + ?Sized), va: u64, flags: u64) {
    match flags & UVMF_FLUSHTYPE_MASK {
        UVMF_TLB_FLUSH => {
            mmu.flush_all();
        }
        UVMF_INVLPG => mmu.flush_va(va),
        _ => {}
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::tests::{BUF, World};
    use super::*;

    #[test]
    fn guest_address_is_canonical_outside_the_hypervisor_slots() {
        let definition = |va: u64| {
            mm::is_canonical(va) && crate::paging::entry::is_guest_slot(4, mm::table_index(va, 4))
        };
        for edge in [
            0,
            1 << 47,
            0xffff_8000_0000_0000,
            0xffff_8800_0000_0000,
            u64::MAX,
        ] {
            for delta in 0..4096 {
                for va in [edge.wrapping_sub(delta), edge.wrapping_add(delta)] {
                    assert_eq!(guest_address(va), definition(va), "{va:#x}");
                }
            }
        }
    }
    use crate::frames::{FrameTable, Owner, PageType};
    use crate::mm::fake::FakeMem;
    use crate::mm::pte;
    use crate::paging::audit::audit;
    use zerocopy::IntoBytes;

    const RW: u64 = pte::PRESENT | pte::WRITABLE | pte::USER;
    const RO: u64 = pte::PRESENT | pte::USER;
    /// World frames: L4 1, L3 2, L2 3, L1 4, BUF 5 and 6, shared info 7; 8..16 spare
    /// frames of domain 1; 16 belongs to domain 2.
    pub const L4: Mfn = Mfn(1);
    pub const L1: Mfn = Mfn(4);
    pub const SPARE: u64 = 8;
    pub const FOREIGN: Mfn = Mfn(16);
    const EINVAL: i64 = -22;

    /// The handler-test world with its tables typed as the builder types them (root
    /// pinned and held as the base pointer), eight spare frames and a foreign one.
    pub fn paging_world() -> World {
        let mut world = World::new();
        {
            let mut frames = FrameTable::resume(&mut world.storage, world.clock);
            frames.adopt_m2p(&mut world.m2p);
            for _ in 0..8 {
                frames.alloc(Owner::Domain(1), &world.mem).unwrap();
            }
            assert_eq!(frames.alloc(Owner::Domain(2), &world.mem), Some(FOREIGN));
            // The plain world's root is pinned and held already.
            let mut paging = Paging::new(&world.mem, &frames, 1, &mut world.mmu);
            // The hypervisor's hold on the shared-info page, as the builder takes it.
            paging
                .get_page_and_type(world.domain.shared_info, PageType::Writable)
                .unwrap();
            world.clock = frames.tlb_clock();
        }
        world.domain.nr_pages = 16;
        world.domain.max_pages = 16;
        world.check();
        world
    }

    impl World {
        /// The invariants hold for domain 1.
        pub fn check(&mut self) {
            let mut roots = vec![self.domain.vcpu.kernel_root];
            roots.extend(self.domain.vcpu.user_root());
            let frames = FrameTable::resume(&mut self.storage, self.clock);
            audit(&self.mem, &frames, 1, &roots, &[self.domain.shared_info]).unwrap();
        }

        pub fn info(&mut self, mfn: Mfn) -> crate::frames::FrameInfo {
            FrameTable::resume(&mut self.storage, self.clock).info(mfn)
        }

        pub fn entry(&self, table: Mfn, index: u64) -> u64 {
            self.mem.read_u64(table.addr() + index * 8)
        }

        /// Places `items` at BUF and issues `call` on them; returns (rax, done).
        fn batch<T: IntoBytes + zerocopy::Immutable>(
            &mut self,
            number: u64,
            items: &[T],
            foreigndom: u64,
        ) -> (i64, u32) {
            self.put(0, items.as_bytes());
            self.put(4092, &0u32.to_le_bytes());
            let rax = self
                .call(number, [BUF, items.len() as u64, BUF + 4092, foreigndom, 0])
                .0;
            let done = u32::from_le_bytes(self.get(4092, 4).try_into().unwrap());
            (rax, done)
        }
    }

    fn pte_update(table: Mfn, index: u64, val: u64) -> MmuUpdate {
        MmuUpdate::normal(table.addr() + index * 8, val)
    }

    #[test]
    fn batches_apply_in_order_and_stop_at_the_first_failure() {
        let mut w = paging_world();
        let ok = [
            pte_update(L1, 20, (SPARE << 12) | RW),
            pte_update(L1, 21, ((SPARE + 1) << 12) | RO),
            pte_update(L1, 22, L1.addr() | RO),
        ];
        assert_eq!(w.batch(1, &ok, u64::from(DOMID_SELF)), (0, 3));
        assert_eq!(w.entry(L1, 20), (SPARE << 12) | RW);
        assert_eq!(w.info(Mfn(SPARE)).page_type, PageType::Writable);
        let partial = [
            pte_update(L1, 23, ((SPARE + 2) << 12) | RO),
            pte_update(L1, 24, FOREIGN.addr() | RO),
            pte_update(L1, 25, ((SPARE + 3) << 12) | RO),
        ];
        assert_eq!(w.batch(1, &partial, u64::from(DOMID_SELF)), (-16, 1));
        assert_eq!(w.entry(L1, 24), 0);
        assert_eq!(w.entry(L1, 25), 0, "nothing after the failure");
        w.check();
    }

    /// Requests are copied several at a time; a list that runs into unmapped memory
    /// still applies every request before the bad one and fails exactly there.
    #[test]
    fn a_request_list_running_off_its_mapping_fails_at_the_first_unreadable_request() {
        let mut w = paging_world();
        // The second page of the buffer ends at BUF + 0x2000; nothing is mapped after.
        let ok = [
            pte_update(L1, 30, (SPARE << 12) | RW),
            pte_update(L1, 31, ((SPARE + 1) << 12) | RO),
        ];
        w.put(0x2000 - 32, ok.as_bytes());
        w.put(4092, &0u32.to_le_bytes());
        let rax = w.call(1, [BUF + 0x2000 - 32, 5, BUF + 4092, 0x7ff0, 0]).0;
        let done = u32::from_le_bytes(w.get(4092, 4).try_into().unwrap());
        assert_eq!(
            (rax, done),
            (-14, 2),
            "EFAULT after the two readable requests"
        );
        assert_eq!(w.entry(L1, 31), ((SPARE + 1) << 12) | RO);
        w.check();
    }

    #[test]
    fn every_kind_of_bad_request_is_refused() {
        let mut w = paging_world();
        let cases: [(MmuUpdate, i64); 9] = [
            (pte_update(L1, 30, L1.addr() | RW), -16), // a table, writable
            (pte_update(L1, 30, FOREIGN.addr() | RO), -16), // another domain's frame
            (pte_update(L1, 30, Mfn(31).addr() | RO), -16), // a free frame
            (
                pte_update(L1, 30, (SPARE << 12) | RO | pte::CACHE_DISABLE),
                EINVAL,
            ),
            (pte_update(L1, 30, (1 << 40) | RO), EINVAL), // beyond the physical width
            (
                pte_update(Mfn(3), 1, (SPARE << 12) | RO | pte::PAGE_SIZE),
                EINVAL,
            ),
            (pte_update(L4, 256, 0), EINVAL), // the hypervisor's slot
            (pte_update(FOREIGN, 0, 0), EINVAL), // someone else's table
            (
                MmuUpdate {
                    ptr: L1.addr() + 5,
                    val: 0,
                },
                -38,
            ), // unknown command
        ];
        for (request, errno) in cases {
            assert_eq!(w.batch(1, &[request], 0x7ff0), (errno, 0), "{request:?}");
        }
        assert_eq!(
            w.call(1, [0x10, 1, 0, 0x7ff0, 0]).0,
            -14,
            "unreadable requests"
        );
        let one = [pte_update(L1, 30, 0)];
        assert_eq!(w.batch(1, &one, 2).0, -1, "foreign domain");
        assert_eq!(
            w.batch(1, &one, 1).0,
            -3,
            "its own id named as foreign: ESRCH, as Xen's get_pg_owner"
        );
        assert_eq!(w.batch(1, &one, 0x7ff0).0, 0, "DOMID_SELF");
        w.check();
    }

    /// `count` read-only mappings of four spare frames over eight L1 entries, in turn.
    fn spread_requests(count: usize) -> Vec<MmuUpdate> {
        (0..count)
            .map(|i| {
                pte_update(
                    L1,
                    40 + (i % 8) as u64,
                    ((SPARE + (i % 4) as u64) << 12) | RO,
                )
            })
            .collect()
    }

    #[test]
    fn long_batches_are_continued() {
        let mut w = paging_world();
        let count = BATCH as usize + 5;
        let requests = spread_requests(count);
        let (rax, done) = w.batch(1, &requests, 0x7ff0);
        assert_eq!(
            (rax, done),
            (1, BATCH),
            "continuation: rax holds the number again"
        );
        let regs = w.last_regs;
        assert_eq!(regs.rip, 0x1000 - 2);
        assert_eq!(regs.rdi, BUF + u64::from(BATCH) * 16);
        assert_eq!(regs.rsi, 5 | u64::from(MMU_UPDATE_PREEMPTED));
        w.domain.vcpu.regs = regs;
        assert_eq!(
            w.call_with_regs(1, [regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8])
                .0,
            0
        );
        let total = u32::from_le_bytes(w.get(4092, 4).try_into().unwrap());
        assert_eq!(total as usize, count, "done counts across the continuation");
        w.check();
    }

    /// A batch longer than `BATCH` on the fast path's light batch: the same continuation
    /// arguments call after call, the same `done` count, result, tables and frame table
    /// as on the general path; and one that fails in its second part stops alike.
    #[test]
    fn long_batches_continue_alike_on_the_light_path() {
        const DONE: u64 = BUF + 0x1ff0;
        let me = u64::from(DOMID_SELF);
        let count = 2 * BATCH as usize + 5;
        let good = spread_requests(count);
        let mut failing = good.clone();
        failing[BATCH as usize + 3] = pte_update(L1, 41, FOREIGN.addr() | RO);
        for requests in [&good, &failing] {
            let run = |light: bool| {
                let mut w = paging_world();
                w.put(0, requests.as_bytes());
                let mut args = [BUF, count as u64, DONE, me];
                let mut steps = Vec::new();
                let result = loop {
                    let outcome = if light {
                        let mut frames = FrameTable::resume(&mut w.storage, w.clock);
                        frames.adopt_m2p(&mut w.m2p);
                        let guest = GuestMem::new(&w.mem, &frames, 1, L4);
                        let mut paging = Paging::new(&w.mem, &frames, 1, &mut w.mmu);
                        let outcome = light_mmu_update_continued(&guest, &mut paging, args)
                            .expect("the light path takes it");
                        w.clock = frames.tlb_clock();
                        outcome
                    } else {
                        let [a, b, c, d] = args;
                        let rax = w.call(Hypercall::MmuUpdate.number(), [a, b, c, d, 0]).0;
                        let regs = w.last_regs;
                        if rax as u64 == Hypercall::MmuUpdate.number() {
                            w.domain.vcpu.regs.rip = regs.rip + 2;
                            LightBatch::Continue([regs.rdi, regs.rsi, regs.rdx, regs.r10])
                        } else {
                            LightBatch::Done(Errno::from_ret(rax))
                        }
                    };
                    match outcome {
                        LightBatch::Continue(next) => {
                            steps.push(next);
                            args = next;
                        }
                        LightBatch::Done(result) => break result,
                    }
                };
                let done = u32::from_le_bytes(w.get(0x1ff0, 4).try_into().unwrap());
                let table: Vec<u64> = (0..512).map(|i| w.entry(L1, i)).collect();
                let frames: Vec<_> = (0..17).map(|f| w.info(Mfn(f))).collect();
                (result, steps, done, table, format!("{frames:?}"))
            };
            let (light, general) = (run(true), run(false));
            assert_eq!(light, general);
            assert_eq!(light.1.len(), if requests == &good { 2 } else { 1 });
        }
    }

    #[test]
    fn machphys_updates_only_for_own_frames() {
        let mut w = paging_world();
        let own = [MmuUpdate::machphys(SPARE, 1234)];
        assert_eq!(w.batch(1, &own, 0x7ff0), (0, 1));
        assert_eq!(w.m2p[SPARE as usize], 1234);
        let forged = [MmuUpdate::machphys(FOREIGN.0, 7)];
        assert_eq!(w.batch(1, &forged, 0x7ff0), (EINVAL, 0));
        assert_ne!(w.m2p[FOREIGN.0 as usize], 7);
    }

    #[test]
    fn a_flush_the_guest_asks_for_counts_on_the_tlb_clock() {
        let mut w = paging_world();
        let spare = Mfn(SPARE);
        let l1_and_back = [
            MmuextOp::pin_table(1, spare.0).unwrap(),
            MmuextOp::unpin_table(spare.0),
        ];
        assert_eq!(w.batch(26, &l1_and_back, 0x7ff0), (0, 2));
        let flushes = w.mmu.flushes;
        // The guest's own full flush comes after the L1's last use: becoming an L2 then
        // needs no flush of its own.
        let ops = [
            MmuextOp::tlb_flush_local(),
            MmuextOp::pin_table(2, spare.0).unwrap(),
            MmuextOp::unpin_table(spare.0),
        ];
        assert_eq!(w.batch(26, &ops, 0x7ff0), (0, 3));
        assert_eq!(
            w.mmu.flushes,
            flushes + 1,
            "the guest's flush, and no other"
        );
        // No flush since the L2's last use: becoming an L1 again flushes.
        assert_eq!(w.batch(26, &l1_and_back, 0x7ff0), (0, 2));
        assert_eq!(w.mmu.flushes, flushes + 2);
        w.check();
    }

    #[test]
    fn pins_base_pointers_and_flushes() {
        let mut w = paging_world();
        let spare = Mfn(SPARE);
        let ops = [
            MmuextOp::pin_table(1, spare.0).unwrap(),
            MmuextOp::tlb_flush_local(),
            MmuextOp::invlpg_local(0x1234_5000),
            MmuextOp::invlpg_all(1 << 47), // non-canonical: ignored
            MmuextOp::unpin_table(spare.0),
        ];
        assert_eq!(w.batch(26, &ops, 0x7ff0), (0, 5));
        assert_eq!(w.mmu.flushed, vec![0x1234_5000]);
        assert_eq!(
            w.batch(26, &[MmuextOp::unpin_table(spare.0)], 0x7ff0),
            (EINVAL, 0)
        );
        // A second address space: copy the root, pin it, switch to it and back.
        let copy = Mfn(SPARE + 1);
        let ops = [
            MmuextOp::copy_page(copy.0, L4.0),
            MmuextOp::pin_table(4, copy.0).unwrap(),
            MmuextOp::new_baseptr(copy.0),
            MmuextOp::new_user_baseptr(L4.0),
        ];
        assert_eq!(w.batch(26, &ops, 0x7ff0), (0, 4));
        assert_eq!(w.domain.vcpu.kernel_root, copy);
        assert_eq!(w.domain.vcpu.user_root(), Some(L4));
        assert_eq!(w.mmu.loaded, vec![copy]);
        assert_eq!(
            w.info(Mfn(2)).type_count,
            2,
            "the L3 is shared by both roots"
        );
        w.check();
        let ops = [
            MmuextOp::new_baseptr(L4.0),
            MmuextOp::new_user_baseptr(0),
            MmuextOp::unpin_table(copy.0),
        ];
        assert_eq!(w.batch(26, &ops, 0x7ff0), (0, 3));
        assert_eq!(w.info(copy).type_count, 0);
        w.check();
        let refused = [
            (MmuextOp::pin_table(4, FOREIGN.0).unwrap(), EINVAL),
            (MmuextOp::pin_table(1, 5).unwrap(), EINVAL), // BUF is mapped writable
            (MmuextOp::new_baseptr(5), EINVAL),
            (MmuextOp::clear_page(L1.0), EINVAL),
            (MmuextOp::copy_page(L1.0, SPARE), EINVAL),
            (MmuextOp::new(MMUEXT_TLB_FLUSH_MULTI, 0, 0x10), EINVAL),
            (MmuextOp::new(MMUEXT_FLUSH_CACHE, 0, 0), -13),
            (MmuextOp::new(99, 0, 0), -38),
            // An LDT: Xen's argument checks, then not supported.
            (MmuextOp::set_ldt(0x1001, 1), EINVAL),
            (MmuextOp::set_ldt(0x1000, 8193), EINVAL),
            (MmuextOp::set_ldt(0xffff_8300_0000_0000, 1), EINVAL),
            (MmuextOp::set_ldt(0x1000, 1), -38),
        ];
        for (op, errno) in refused {
            assert_eq!(w.batch(26, &[op], 0x7ff0), (errno, 0), "{op:?}");
        }
        // No LDT, what every vCPU has (Linux's clear_LDT at boot): done, as in Xen.
        assert_eq!(w.batch(26, &[MmuextOp::set_ldt(0x1234, 0)], 0x7ff0), (0, 1));
        w.check();
    }

    #[test]
    fn update_va_mapping_maps_through_the_current_tables() {
        let mut w = paging_world();
        let va = BUF + 0x2000;
        let val = (SPARE << 12) | RW;
        assert_eq!(w.call(14, [va, val, UVMF_INVLPG, 0, 0]).0, 0);
        assert_eq!(w.mmu.flushed, vec![va]);
        assert_eq!(w.entry(L1, 2), val);
        assert_eq!(
            w.call(14, [va, L1.addr() | RW, 0, 0, 0]).0,
            -16,
            "a table, writable"
        );
        assert_eq!(w.call(14, [0xffff_8000_0000_0000, 0, 0, 0, 0]).0, EINVAL);
        assert_eq!(
            w.call(14, [0x8000_0000, 0, 0, 0, 0]).0,
            EINVAL,
            "no L1 there"
        );
        let flushes = w.mmu.flushes;
        assert_eq!(w.call(14, [va, 0, UVMF_TLB_FLUSH | UVMF_ALL, 0, 0]).0, 0);
        assert_eq!(w.mmu.flushes, flushes + 1);
        assert_eq!(w.entry(L1, 2), 0);
        // A vCPU mask must be readable; the update itself has been done.
        assert_eq!(w.call(14, [va, val, UVMF_TLB_FLUSH | 0x10, 0, 0]).0, -14);
        assert_eq!(w.entry(L1, 2), val);
        w.check();
    }

    /// The fast path's `light_mmuext_op` either declines (nothing done) or does exactly
    /// what the general `mmuext_op` does: same result, same `done`, same TLB work, same
    /// frame table.
    #[test]
    fn the_light_mmuext_path_matches_the_general_one_or_declines() {
        use pv_abi::xen::{MMUEXT_INVLPG_LOCAL, MMUEXT_TLB_FLUSH_ALL, MMUEXT_TLB_FLUSH_LOCAL};
        const DONE: u64 = BUF + 0x100;
        let self_id = u64::from(DOMID_SELF);
        let cases: [(MmuextOp, [u64; 4], bool); 10] = [
            (
                MmuextOp::new(MMUEXT_TLB_FLUSH_LOCAL, 0, 0),
                [BUF, 1, DONE, self_id],
                true,
            ),
            (
                MmuextOp::new(MMUEXT_TLB_FLUSH_ALL, 0, 0),
                [BUF, 1, 0, self_id],
                true,
            ),
            (
                MmuextOp::new(MMUEXT_INVLPG_LOCAL, BUF, 0),
                [BUF, 1, DONE, self_id],
                true,
            ),
            // An address the guest may not flush: done, without a flush.
            (
                MmuextOp::new(MMUEXT_INVLPG_LOCAL, 0xffff_8000_0000_0000, 0),
                [BUF, 1, DONE, self_id],
                true,
            ),
            (MmuextOp::new_baseptr(L4.0), [BUF, 1, DONE, self_id], true),
            // Declined: another root, a batch of two, another domain, a bad pointer, a
            // command with frame-table work, a continuation.
            (MmuextOp::new_baseptr(SPARE), [BUF, 1, DONE, self_id], false),
            (
                MmuextOp::new(MMUEXT_TLB_FLUSH_LOCAL, 0, 0),
                [BUF, 2, DONE, self_id],
                false,
            ),
            (
                MmuextOp::new(MMUEXT_TLB_FLUSH_LOCAL, 0, 0),
                [BUF, 1, DONE, 2],
                false,
            ),
            (
                MmuextOp::new(MMUEXT_TLB_FLUSH_LOCAL, 0, 0),
                [0x1000, 1, DONE, self_id],
                false,
            ),
            (
                MmuextOp::pin_table(1, SPARE).unwrap(),
                [BUF, 1, DONE, self_id],
                false,
            ),
        ];
        for (op, args, taken) in cases {
            let run = |light: bool| {
                let mut world = paging_world();
                world.put(0, op.as_bytes());
                world.put(0x100, &[0xee; 4]);
                let result = if light {
                    let frames = FrameTable::resume(&mut world.storage, world.clock);
                    let guest = GuestMem::new(&world.mem, &frames, 1, L4);
                    light_mmuext_op(&guest, &mut world.mmu, L4, args).map(|r| r as i64)
                } else {
                    let [a1, a2, a3, a4] = args;
                    Some(
                        world
                            .call(Hypercall::MmuextOp.number(), [a1, a2, a3, a4, 0])
                            .0,
                    )
                };
                let frames = FrameTable::resume(&mut world.storage, world.clock);
                let table: Vec<_> = (0..17).map(|f| frames.info(Mfn(f))).collect();
                let mmu = (
                    world.mmu.flushes,
                    world.mmu.flushed.clone(),
                    world.mmu.loaded.clone(),
                );
                (result, world.get(0x100, 4), mmu, format!("{table:?}"))
            };
            let light = run(true);
            if !taken {
                assert_eq!(light.0, None, "{op:?} {args:x?} must be declined");
                assert_eq!(light.1, vec![0xee; 4], "declined: done untouched");
                assert_eq!((light.2.0, light.2.1.len(), light.2.2.len()), (0, 0, 0));
                continue;
            }
            assert!(light.0.is_some(), "{op:?} {args:x?} should be taken");
            assert_eq!(light, run(false), "{op:?} {args:x?}");
        }
    }

    /// Everything a light path and the general one could differ in after a call: the
    /// result, `done`, the TLB work, the frame table, the M2P and the L1 table.
    type Trace = (
        Option<i64>,
        Vec<u8>,
        (usize, Vec<u64>, Vec<Mfn>),
        String,
        Vec<u64>,
        Vec<u64>,
    );

    /// Runs one call on a fresh paging world, by `light` (given the guest's memory and
    /// paging engine; `None`: declined) or by the general dispatcher (`number`, `args`).
    /// A light path under test, on the guest's memory and paging engine.
    type Light<'a> = &'a dyn Fn(&GuestMem<'_, FakeMem>, &mut Paging<'_, FakeMem>) -> Option<i64>;

    fn trace(light: Option<Light<'_>>, number: Hypercall, args: [u64; 4], request: &[u8]) -> Trace {
        let mut world = paging_world();
        world.put(0, request);
        world.put(0x100, &[0xee; 4]);
        let result = match light {
            Some(light) => {
                let mut frames = FrameTable::resume(&mut world.storage, world.clock);
                frames.adopt_m2p(&mut world.m2p);
                let guest = GuestMem::new(&world.mem, &frames, 1, L4);
                let mmu: &mut dyn Mmu = &mut world.mmu;
                let mut paging = Paging::new(&world.mem, &frames, 1, mmu);
                light(&guest, &mut paging)
            }
            None => {
                let [a1, a2, a3, a4] = args;
                Some(world.call(number.number(), [a1, a2, a3, a4, 0]).0)
            }
        };
        let mut frames = FrameTable::resume(&mut world.storage, world.clock);
        frames.adopt_m2p(&mut world.m2p);
        let table: Vec<_> = (0..17).map(|f| frames.info(Mfn(f))).collect();
        let m2p = (0..17).map(|f| frames.m2p(Mfn(f))).collect();
        let l1 = (0..512)
            .map(|i| world.mem.read_u64(L1.addr() + i * 8))
            .collect();
        let mmu = (
            world.mmu.flushes,
            world.mmu.flushed.clone(),
            world.mmu.loaded.clone(),
        );
        (
            result,
            world.get(0x100, 4),
            mmu,
            format!("{table:?}"),
            m2p,
            l1,
        )
    }

    fn errno_or_value(result: Result<u64, Errno>) -> i64 {
        result.map_or_else(|e| e.to_ret(), |v| v as i64)
    }

    #[test]
    fn the_light_mmu_update_matches_the_general_one_or_declines() {
        const DONE: u64 = BUF + 0x100;
        let me = u64::from(DOMID_SELF);
        let entry = L1.addr() + mm::table_index(BUF + 0x2000, 1) as u64 * 8;
        let spare = SPARE << 12;
        let cases: [(MmuUpdate, [u64; 4], bool); 13] = [
            (
                MmuUpdate::normal(entry, spare | RW),
                [BUF, 1, DONE, me],
                true,
            ),
            (MmuUpdate::normal(entry, spare | RO), [BUF, 1, 0, me], true),
            (
                MmuUpdate::preserve_ad(entry, spare | RW),
                [BUF, 1, DONE, me],
                true,
            ),
            (
                MmuUpdate::normal(entry, FOREIGN.addr() | RO),
                [BUF, 1, DONE, me],
                true,
            ),
            (
                MmuUpdate::normal(entry, L1.addr() | RW),
                [BUF, 1, DONE, me],
                true,
            ),
            (MmuUpdate::machphys(SPARE, 0x42), [BUF, 1, DONE, me], true),
            (
                MmuUpdate::machphys(FOREIGN.0, 0x42),
                [BUF, 1, DONE, me],
                true,
            ),
            (
                MmuUpdate {
                    ptr: entry | 5,
                    val: 0,
                },
                [BUF, 1, DONE, me],
                true,
            ),
            // A batch: the light path takes up to `BATCH` requests (here the second,
            // whatever follows the first in the buffer, fails alike on both paths).
            (
                MmuUpdate::normal(entry, spare | RW),
                [BUF, 2, DONE, me],
                true,
            ),
            (
                MmuUpdate::normal(entry, spare | RW),
                [BUF, 0, DONE, me],
                false,
            ),
            (
                MmuUpdate::normal(entry, spare | RW),
                [BUF, u64::from(BATCH) + 1, DONE, me],
                false,
            ),
            (
                MmuUpdate::normal(entry, spare | RW),
                [BUF, 1, DONE, 1],
                false,
            ),
            (
                MmuUpdate::normal(entry, spare | RW),
                [0x1000, 1, DONE, me],
                false,
            ),
        ];
        for (request, args, taken) in cases {
            let light = |guest: &GuestMem<'_, FakeMem>, paging: &mut Paging<'_, FakeMem>| {
                light_mmu_update(guest, paging, args).map(errno_or_value)
            };
            let fast = trace(Some(&light), Hypercall::MmuUpdate, args, request.as_bytes());
            if taken {
                let general = trace(None, Hypercall::MmuUpdate, args, request.as_bytes());
                assert!(fast.0.is_some(), "{request:x?} {args:x?} should be taken");
                assert_eq!(fast, general, "{request:x?} {args:x?}");
            } else {
                let untouched = trace(Some(&|_, _| None), Hypercall::MmuUpdate, args, &[]);
                assert_eq!(fast.0, None, "{request:x?} {args:x?} must be declined");
                assert_eq!(
                    (fast.0, &fast.1, &fast.2, &fast.3, &fast.4, &fast.5),
                    (
                        None,
                        &untouched.1,
                        &untouched.2,
                        &untouched.3,
                        &untouched.4,
                        &untouched.5
                    )
                );
            }
        }
        // A continuation (the PREEMPTED flag) is the general path's.
        let args = [BUF, 1 | u64::from(MMU_UPDATE_PREEMPTED), DONE, me];
        let light = |guest: &GuestMem<'_, FakeMem>, paging: &mut Paging<'_, FakeMem>| {
            light_mmu_update(guest, paging, args).map(errno_or_value)
        };
        let request = MmuUpdate::normal(entry, spare | RW);
        assert_eq!(
            trace(Some(&light), Hypercall::MmuUpdate, args, request.as_bytes()).0,
            None
        );
        // Batches: one that stops at its third request (someone else's frame), and one
        // longer than a copy-ahead (20 requests, no `done`: its word would overlap them).
        let stopping = [
            MmuUpdate::normal(entry, spare | RW),
            MmuUpdate::normal(entry, spare | RO),
            MmuUpdate::normal(entry, FOREIGN.addr() | RO),
            MmuUpdate::normal(entry, 0),
        ];
        let long: Vec<MmuUpdate> = (0..20)
            .map(|i| MmuUpdate::normal(entry, spare | if i % 2 == 0 { RW } else { RO }))
            .collect();
        for (requests, args) in [
            (&stopping[..], [BUF, 4, DONE, me]),
            (&long[..], [BUF, 20, 0, me]),
        ] {
            let light = |guest: &GuestMem<'_, FakeMem>, paging: &mut Paging<'_, FakeMem>| {
                light_mmu_update(guest, paging, args).map(errno_or_value)
            };
            let fast = trace(
                Some(&light),
                Hypercall::MmuUpdate,
                args,
                requests.as_bytes(),
            );
            let general = trace(None, Hypercall::MmuUpdate, args, requests.as_bytes());
            assert!(fast.0.is_some(), "{args:x?} should be taken");
            assert_eq!(fast, general, "{args:x?}");
        }
        assert_eq!(
            trace(
                None,
                Hypercall::MmuUpdate,
                [BUF, 4, DONE, me],
                stopping.as_bytes()
            )
            .1,
            2u32.to_le_bytes(),
            "the batch stops after two requests"
        );
    }

    #[test]
    fn the_light_update_va_mapping_matches_the_general_one_or_declines() {
        use pv_abi::xen::{UVMF_ALL, UVMF_INVLPG, UVMF_TLB_FLUSH};
        let spare = SPARE << 12;
        let cases: [([u64; 3], bool); 8] = [
            ([BUF + 0x2000, spare | RW, UVMF_INVLPG], true),
            ([BUF + 0x2000, spare | RO, UVMF_TLB_FLUSH | UVMF_ALL], true),
            ([BUF + 0x2000, 0, 0], true),
            ([BUF + 0x2000, FOREIGN.addr() | RW, UVMF_INVLPG], true),
            ([BUF + 0x2000, L1.addr() | RW, UVMF_INVLPG], true),
            ([0xffff_8000_0000_0000, spare | RW, UVMF_INVLPG], true),
            ([BUF + 0x40_0000, spare | RW, UVMF_INVLPG], true),
            // A vCPU mask in guest memory: the general path's.
            ([BUF + 0x2000, spare | RW, UVMF_INVLPG | BUF], false),
        ];
        for (args, taken) in cases {
            let light = |_: &GuestMem<'_, FakeMem>, paging: &mut Paging<'_, FakeMem>| {
                light_update_va_mapping(paging, L4, args).map(errno_or_value)
            };
            let [va, val, flags] = args;
            let all = [va, val, flags, 0];
            let fast = trace(Some(&light), Hypercall::UpdateVaMapping, all, &[]);
            if taken {
                let general = trace(None, Hypercall::UpdateVaMapping, all, &[]);
                assert!(fast.0.is_some(), "{args:x?} should be taken");
                assert_eq!(fast, general, "{args:x?}");
            } else {
                assert_eq!(fast.0, None, "{args:x?} must be declined");
            }
        }
    }

    /// A copy of the root in the first spare frame, pinned, and the root itself unpinned
    /// (still the base pointer): switching to the copy drops the old root's last type
    /// reference.
    fn pinned_copy_of_the_root(w: &mut World) -> Mfn {
        let copy = Mfn(SPARE);
        let setup = [
            MmuextOp::copy_page(copy.0, L4.0),
            MmuextOp::pin_table(4, copy.0).unwrap(),
            MmuextOp::unpin_table(L4.0),
        ];
        assert_eq!(w.batch(Hypercall::MmuextOp.number(), &setup, 0x7ff0).0, 0);
        copy
    }

    /// `mmuext_op(count | PREEMPTED)` as an escape attempt (found by review): switch to a
    /// copy of the root, so that the old one loses its last type reference, then
    /// overwrite the old root as a plain page with a tree that maps `done_out`'s page onto
    /// a live L1 table. The batch's `done_out` store must go through the root in force,
    /// never the old one: the live L1 stays as it was.
    #[test]
    fn a_batch_follows_its_new_baseptr_and_never_walks_the_old_root() {
        let mut w = paging_world();
        let r1 = pinned_copy_of_the_root(&mut w);
        // Plain pages of the domain: a crafted L4 and its L3/L2/L1, mapping BUF's page
        // writable onto the live L1 table.
        let crafted = [SPARE + 1, SPARE + 2, SPARE + 3, SPARE + 4].map(Mfn);
        for (level, pair) in (2..=4).rev().zip(crafted.windows(2)) {
            let at = pair[0].addr() + mm::table_index(BUF, level) as u64 * 8;
            w.mem.write_u64(at, pair[1].addr() | RW);
        }
        let last = crafted[3].addr() + mm::table_index(BUF, 1) as u64 * 8;
        w.mem.write_u64(last, L1.addr() | RW);
        // done_out holds forged - 2: a continued batch adds its count to it.
        let forged = FOREIGN.addr() | RW;
        let ops = [
            MmuextOp::new_baseptr(r1.0),
            MmuextOp::copy_page(L4.0, crafted[0].0),
        ];
        w.put(0, ops.as_bytes());
        w.put(0x800, &((forged - 2) as u32).to_le_bytes());
        let before = w.entry(L1, 0x800 / 8);
        let preempted = u64::from(MMU_UPDATE_PREEMPTED);
        let (rax, _) = w.call(
            Hypercall::MmuextOp.number(),
            [BUF, 2 | preempted, BUF + 0x800, 0x7ff0, 0],
        );
        assert_eq!(rax, 0);
        assert_eq!(w.domain.vcpu.kernel_root, r1);
        assert_eq!(
            w.entry(L1, 0x800 / 8),
            before,
            "the live L1 table was written"
        );
        // The count went where the new root maps done_out: BUF's own page.
        assert_eq!(w.get(0x800, 4), (forged as u32).to_le_bytes());
        assert_eq!(w.info(FOREIGN).ref_count, 0);
        w.check();
    }

    /// The same through `multicall` (found by review): after an entry switches roots and
    /// the next one rewrites the old root as a plain page, the loop's reads of the next
    /// entries and its result stores go through the root in force.
    #[test]
    fn a_multicall_follows_a_root_switch() {
        use pv_abi::xen::MulticallEntry;
        let mut w = paging_world();
        let r1 = pinned_copy_of_the_root(&mut w);
        // A crafted L3/L2/L1 under BUF's L4 slot: the multicall's third entry and its
        // result would fall on entries 16 and 17 of the live L1.
        let crafted = [SPARE + 2, SPARE + 3, SPARE + 4].map(Mfn);
        for (level, pair) in (2..=3).rev().zip(crafted.windows(2)) {
            let at = pair[0].addr() + mm::table_index(BUF, level) as u64 * 8;
            w.mem.write_u64(at, pair[1].addr() | RW);
        }
        let last = crafted[2].addr() + mm::table_index(BUF, 1) as u64 * 8;
        w.mem.write_u64(last, L1.addr() | RW);
        let live = [
            pte_update(L1, 16, Mfn(SPARE + 5).addr() | RO),
            pte_update(L1, 17, Mfn(SPARE + 6).addr() | RO),
        ];
        assert_eq!(w.batch(Hypercall::MmuUpdate.number(), &live, 0x7ff0).0, 0);
        let before = (w.entry(L1, 16), w.entry(L1, 17));
        let entry = |op: Hypercall, args: [u64; 6]| MulticallEntry {
            op: op.number(),
            result: 0,
            args,
        };
        let calls = [
            entry(Hypercall::MmuextOp, [BUF + 0x800, 1, 0, 0x7ff0, 0, 0]),
            entry(Hypercall::MmuUpdate, [BUF + 0x900, 1, 0, 0x7ff0, 0, 0]),
            entry(Hypercall::XenVersion, [0; 6]),
        ];
        w.put(0, calls.as_bytes());
        w.put(0x800, [MmuextOp::new_baseptr(r1.0)].as_bytes());
        let slot = mm::table_index(BUF, 4) as u64;
        let rewrite = [pte_update(L4, slot, crafted[0].addr() | RW)];
        w.put(0x900, rewrite.as_bytes());
        let (rax, _) = w.call(Hypercall::Multicall.number(), [BUF, 3, 0, 0, 0]);
        assert_eq!(rax, 0);
        assert_eq!(w.domain.vcpu.kernel_root, r1);
        assert_eq!(
            (w.entry(L1, 16), w.entry(L1, 17)),
            before,
            "a live L1 was written"
        );
        w.check();
    }

    /// The shared-info page never becomes a page table (found by review): the hypervisor
    /// writes it by machine address (event bits, time, CR2), so as a table its entries
    /// would be forged. The hypervisor's own writable-page hold makes every table type
    /// fail, as pinning does here.
    #[test]
    fn the_shared_info_page_is_never_a_page_table() {
        let mut w = paging_world();
        let shared = w.domain.shared_info;
        for level in 1..=4 {
            let pin = [MmuextOp::pin_table(level, shared.0).unwrap()];
            let (rax, done) = w.batch(Hypercall::MmuextOp.number(), &pin, 0x7ff0);
            assert_eq!((rax, done), (EINVAL, 0), "pinned as L{level}");
        }
        assert_eq!(w.info(shared).page_type, PageType::Writable);
        w.check();
    }
}
