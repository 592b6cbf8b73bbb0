//! `multicall(calls, nr_calls)`: several hypercalls for the price of one entry into the
//! hypervisor. Each `multicall_entry` names a hypercall and its arguments; the calls run
//! in order, each writes its own return value into the entry's `result`, and the
//! multicall itself returns 0 (or `-EFAULT` if the list cannot be read or written).
//!
//! Each entry is dispatched exactly like a hypercall, with its arguments in a copy of the
//! caller's registers. As in Xen, a call that wants a continuation (a long `mmu_update`
//! batch) gets its updated arguments written back into its entry, and the multicall
//! continues from that entry; a long list is continued every [`BATCH`] entries, so the
//! hypervisor never holds the CPU for a time the guest chooses.
//!
//! Differences from Xen 4.17: `iret` is refused inside a multicall (`-ENOSYS`; Xen runs
//! it and abandons the rest), and the machine-wide hypercalls (event channels, `vcpu_op`,
//! timers, the waiting `sched_op`s) are not reachable from here yet (`-ENOSYS`): they are
//! dispatched by the machine before the per-domain dispatcher sees a call.

use super::{After, Context, dispatch};
use crate::mm::PhysMem;
use crate::paging::Paging;
use core::mem::{offset_of, size_of};
use pv_abi::errno::Errno;
use pv_abi::xen::{Hypercall, MulticallEntry};

/// Entries handled per invocation before the multicall is continued.
pub const BATCH: u64 = 128;
/// Size of one `multicall_entry`.
const ENTRY_SIZE: u64 = size_of::<MulticallEntry>() as u64;

/// `multicall(calls, nr_calls)`.
pub(super) fn multicall<M: PhysMem>(
    ctx: &mut Context<'_, M>,
    calls: u64,
    nr_calls: u64,
) -> Result<u64, Errno> {
    // Xen's `nr_calls` is an unsigned int.
    let nr_calls = u64::from(nr_calls as u32);
    let mut index = 0;
    while index < nr_calls {
        let at = calls.wrapping_add(index * ENTRY_SIZE);
        if index == BATCH {
            return Ok(ctx.continuation(
                Hypercall::Multicall.number(),
                [at, nr_calls - index, 0, 0, 0],
            ));
        }
        // Page-table calls (what most multicalls are made of) in a row take their light
        // paths with one engine between them; the first entry that has none comes here.
        index = light_run(ctx, calls, index, nr_calls.min(BATCH))?;
        if index == nr_calls.min(BATCH) {
            continue;
        }
        let at = calls.wrapping_add(index * ENTRY_SIZE);
        let entry: MulticallEntry = ctx.guest.read_obj(at)?;
        let outcome = run_one(ctx, &entry);
        // The entry may have switched roots (NEW_BASEPTR): its result, the continuation
        // and the next entries are the new one's.
        ctx.follow_kernel_root();
        let result_at = at.wrapping_add(offset_of!(MulticallEntry, result) as u64);
        ctx.guest.write_obj(result_at, &outcome.result)?;
        match outcome.next {
            Next::Continue => {}
            Next::Stop => return Ok(0),
            Next::Continuation(args) => {
                let args_at = at.wrapping_add(offset_of!(MulticallEntry, args) as u64);
                ctx.guest.write_obj(args_at, &args)?;
                return Ok(ctx.continuation(
                    Hypercall::Multicall.number(),
                    [at, nr_calls - index, 0, 0, 0],
                ));
            }
        }
        index += 1;
    }
    Ok(0)
}

/// Runs entries `index..end` for as long as each takes a light path (`light_call`: the
/// same work and result as a dispatch, without a context per entry), with one guest
/// accessor and one paging engine for them all, each entry's number and first four
/// arguments read (the rest is not copied). Returns the index of the first entry not run (`end` if all were);
/// that entry did nothing, and the general path reads it again. `EFAULT` if an entry
/// cannot be read or its result written, as on the general path.
fn light_run<M: PhysMem>(
    ctx: &mut Context<'_, M>,
    calls: u64,
    mut index: u64,
    end: u64,
) -> Result<u64, Errno> {
    let root = ctx.domain.vcpu.kernel_root;
    let guest = ctx.guest.for_root(root);
    let mut paging = Paging::new(ctx.mem, ctx.frames, ctx.domain.id, &mut *ctx.mmu);
    while index < end {
        let at = calls.wrapping_add(index * ENTRY_SIZE);
        // Only what a light path reads: the number, then the first four arguments (two
        // reads of at most 32 bytes are inline loads; the whole 64-byte entry would be a
        // string copy).
        let op: u64 = guest.read_obj(at)?;
        let args_at = at.wrapping_add(offset_of!(MulticallEntry, args) as u64);
        let args: [u64; 4] = guest.read_obj(args_at)?;
        let result = if op == Hypercall::UpdateVaMapping.number() {
            // The commonest entry, inlined here (`light_call` would route it).
            super::light_update_va_mapping(&mut paging, root, [args[0], args[1], args[2]])
                .map(|result| result.unwrap_or_else(|errno| errno.to_ret() as u64))
        } else {
            super::light_call(&guest, &mut paging, root, op, args)
        };
        let Some(result) = result else {
            break;
        };
        let result_at = at.wrapping_add(offset_of!(MulticallEntry, result) as u64);
        guest.write_obj(result_at, &result)?;
        index += 1;
    }
    Ok(index)
}

/// What one entry did.
struct Outcome {
    result: u64,
    next: Next,
}

enum Next {
    /// Go on with the next entry.
    Continue,
    /// The domain must stop (crash or shutdown): leave the rest.
    Stop,
    /// The call asked to be re-issued with these arguments.
    Continuation([u64; 6]),
}

fn run_one<M: PhysMem>(ctx: &mut Context<'_, M>, entry: &MulticallEntry) -> Outcome {
    let refused = |errno: Errno| Outcome {
        result: errno.to_ret() as u64,
        next: Next::Continue,
    };
    match Hypercall::try_from(entry.op) {
        Ok(Hypercall::Multicall) => return refused(Errno::EINVAL),
        Ok(Hypercall::Iret) => return refused(Errno::ENOSYS),
        _ => {}
    }
    let root = ctx.domain.vcpu.kernel_root;
    let mut regs = *ctx.regs;
    regs.rax = entry.op;
    [regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8] = [
        entry.args[0],
        entry.args[1],
        entry.args[2],
        entry.args[3],
        entry.args[4],
    ];
    let mut call = Context {
        guest: ctx.guest.for_root(root),
        domain: &mut *ctx.domain,
        mem: ctx.mem,
        frames: ctx.frames,
        mmu: &mut *ctx.mmu,
        ports: &mut *ctx.ports,
        regs: &mut regs,
        console: &mut *ctx.console,
        hypervisor_cmdline: ctx.hypervisor_cmdline,
        after: After::Resume,
    };
    let after = dispatch(&mut call);
    let running = call.domain.is_running();
    // Only `Context::continuation` moves an entry's (copied) rip, back over the syscall:
    // the one handler that sets rip itself, `iret`, is refused above. A handler that
    // moved it otherwise would be a bug, caught here in the host tests; in a release
    // build its rip is dropped with the copy and the entry counts as done.
    debug_assert!(
        regs.rip == ctx.regs.rip || regs.rip == ctx.regs.rip.wrapping_sub(2),
        "a multicall entry moved rip other than by a continuation"
    );
    let next = if regs.rip == ctx.regs.rip.wrapping_sub(2) {
        // `Context::continuation` stepped the (copied) rip back over the syscall.
        let mut args = entry.args;
        args[..5].copy_from_slice(&[regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8]);
        Next::Continuation(args)
    } else {
        match after {
            After::Resume => Next::Continue,
            After::Reschedule if running => {
                ctx.after = After::Reschedule;
                Next::Continue
            }
            After::Reschedule => {
                ctx.after = After::Reschedule;
                Next::Stop
            }
            After::Crash(reason) => {
                ctx.after = After::Crash(reason);
                Next::Stop
            }
        }
    };
    Outcome {
        result: regs.rax,
        next,
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{BUF, World};
    use super::*;
    use pv_abi::version::XENVER_VERSION;
    use zerocopy::IntoBytes;

    const MULTICALL: u64 = Hypercall::Multicall as u64;
    const ENOSYS: u64 = (-38i64) as u64;

    fn entry(op: Hypercall, args: [u64; 6]) -> MulticallEntry {
        MulticallEntry {
            result: 0xdead,
            ..MulticallEntry::new(op, args)
        }
    }

    fn results(world: &World, n: usize) -> Vec<u64> {
        (0..n)
            .map(|i| {
                let bytes = world.get(i as u64 * ENTRY_SIZE + 8, 8);
                u64::from_le_bytes(bytes.try_into().unwrap())
            })
            .collect()
    }

    #[test]
    fn each_call_gets_its_own_result() {
        let mut world = World::new();
        let calls = [
            entry(
                Hypercall::XenVersion,
                [u64::from(XENVER_VERSION), 0, 0, 0, 0, 0],
            ),
            entry(Hypercall::Arch5, [0; 6]),
            entry(Hypercall::VmAssist, [0, 2, 0, 0, 0, 0]),
            entry(Hypercall::VmAssist, [0, 6, 0, 0, 0, 0]),
        ];
        world.put(0, calls.as_bytes());
        let (rax, after) = world.call(MULTICALL, [BUF, 4, 0, 0, 0]);
        assert_eq!((rax, after), (0, After::Resume));
        assert_eq!(
            results(&world, 4),
            [0x0004_0011, ENOSYS, 0, (-22i64) as u64]
        );
        assert_eq!(world.domain.vm_assist, 1 << 2, "the calls took effect");
        assert_eq!(world.last_regs.rip, 0x1000, "no continuation");
    }

    #[test]
    fn nesting_and_iret_are_refused() {
        let mut world = World::new();
        let calls = [
            entry(Hypercall::Multicall, [BUF, 1, 0, 0, 0, 0]),
            entry(Hypercall::Iret, [0; 6]),
        ];
        world.put(0, calls.as_bytes());
        assert_eq!(world.call(MULTICALL, [BUF, 2, 0, 0, 0]).0, 0);
        assert_eq!(results(&world, 2), [(-22i64) as u64, ENOSYS]);
    }

    #[test]
    fn unreadable_lists_fault_and_empty_lists_do_nothing() {
        let mut world = World::new();
        assert_eq!(world.call(MULTICALL, [0x10, 1, 0, 0, 0]).0, -14);
        assert_eq!(world.call(MULTICALL, [0x10, 0, 0, 0, 0]).0, 0);
        // A list running off the end of the mapped buffer fails at the first bad entry,
        // after the good ones ran.
        let last = 2 * 4096 - ENTRY_SIZE;
        world.put(
            last,
            entry(Hypercall::VmAssist, [0, 2, 0, 0, 0, 0]).as_bytes(),
        );
        assert_eq!(world.call(MULTICALL, [BUF + last, 2, 0, 0, 0]).0, -14);
        assert_eq!(world.domain.vm_assist, 1 << 2);
    }

    #[test]
    fn long_lists_are_continued() {
        let mut world = World::new();
        let call = entry(
            Hypercall::XenVersion,
            [u64::from(XENVER_VERSION), 0, 0, 0, 0, 0],
        );
        // 128 entries fill the two-page buffer; entries 128 and 129 are never read by
        // this invocation.
        let half = vec![call; 64];
        world.put(0, half.as_bytes());
        world.put(4096, half.as_bytes());
        let (rax, after) = world.call(MULTICALL, [BUF, 130, 0, 0, 0]);
        assert_eq!(rax as u64, MULTICALL, "rax holds the number again");
        assert_eq!(after, After::Reschedule);
        let regs = world.last_regs;
        assert_eq!(regs.rip, 0x1000 - 2, "the syscall is re-executed");
        assert_eq!((regs.rdi, regs.rsi), (BUF + BATCH * ENTRY_SIZE, 2));
        assert!(results(&world, 128).iter().all(|&r| r == 0x0004_0011));
    }

    /// Page-table calls in a multicall (which take their light path) have exactly the
    /// effect and results of the same calls issued one by one.
    #[test]
    fn page_table_calls_do_what_they_do_alone() {
        use super::super::mmu::tests::{FOREIGN, L1, SPARE, paging_world};
        use crate::mm::pte;
        use pv_abi::xen::{MMUEXT_TLB_FLUSH_LOCAL, MmuUpdate, MmuextOp, UVMF_INVLPG};
        let rw = pte::PRESENT | pte::WRITABLE | pte::USER;
        let va = BUF + 0x2000;
        let slot = L1.addr() + crate::mm::table_index(va, 1) as u64 * 8;
        // Requests for the batch calls live at BUF + 0x800 (update) and + 0x900 (op).
        let update = MmuUpdate::normal(slot, (SPARE << 12) | pte::PRESENT | pte::USER);
        let op = MmuextOp::new(MMUEXT_TLB_FLUSH_LOCAL, 0, 0);
        let me = u64::from(pv_abi::xen::DOMID_SELF);
        let calls = [
            (
                Hypercall::UpdateVaMapping,
                [va, (SPARE << 12) | rw, UVMF_INVLPG, 0],
            ),
            (Hypercall::UpdateVaMapping, [va, FOREIGN.addr() | rw, 0, 0]),
            (Hypercall::MmuUpdate, [BUF + 0x800, 1, 0, me]),
            // A call without a light path between page-table calls: the run stops, the
            // general path takes it, a new run starts after it.
            (Hypercall::VmAssist, [0, 2, 0, 0]),
            (Hypercall::MmuextOp, [BUF + 0x900, 1, 0, me]),
            // A vCPU mask in guest memory: the light path declines, the general one runs.
            (
                Hypercall::UpdateVaMapping,
                [va, (SPARE << 12) | rw, BUF + 0xa00, 0],
            ),
            (Hypercall::UpdateVaMapping, [va, 0, UVMF_INVLPG, 0]),
        ];
        let prepare = |world: &mut World| {
            world.put(0x800, update.as_bytes());
            world.put(0x900, op.as_bytes());
            world.put(0xa00, &1u64.to_le_bytes());
        };
        let table = |world: &World| -> Vec<u64> {
            (0..512)
                .map(|i| world.mem.read_u64(L1.addr() + i * 8))
                .collect()
        };
        let mut alone = paging_world();
        prepare(&mut alone);
        let one_by_one: Vec<u64> = calls
            .iter()
            .map(|&(call, [a, b, c, d])| alone.call(call.number(), [a, b, c, d, 0]).0 as u64)
            .collect();
        let mut batched = paging_world();
        prepare(&mut batched);
        let entries: Vec<_> = calls
            .iter()
            .map(|&(call, [a, b, c, d])| entry(call, [a, b, c, d, 0, 0]))
            .collect();
        batched.put(0, entries.as_bytes());
        assert_eq!(batched.call(MULTICALL, [BUF, 7, 0, 0, 0]).0, 0);
        assert_eq!(results(&batched, 7), one_by_one);
        assert_eq!(batched.domain.vm_assist, alone.domain.vm_assist);
        assert_eq!(
            (one_by_one[3], one_by_one[5]),
            (0, 0),
            "the general path's entries succeed"
        );
        assert!(
            one_by_one[1] as i64 <= 0 && one_by_one[1] != 0,
            "the foreign map fails"
        );
        assert_eq!(table(&batched), table(&alone));
        assert_eq!(
            (batched.mmu.flushes, &batched.mmu.flushed),
            (alone.mmu.flushes, &alone.mmu.flushed)
        );
    }
}
