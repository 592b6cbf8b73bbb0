//! The guest's virtual CPU control: its trap table and callbacks (`set_trap_table`,
//! `set_callbacks`, `callback_op`), its kernel stack (`stack_switch`), its virtual CR0.TS
//! (`fpu_taskswitch`) and its segment bases (`set_segment_base`).

use super::Context;
use crate::mm::{PhysMem, is_canonical};
use pv_abi::arch_x86_64::{
    HYPERVISOR_VIRT_END, HYPERVISOR_VIRT_START, SEGBASE_FS, SEGBASE_GS_KERNEL, SEGBASE_GS_USER,
    SEGBASE_GS_USER_SEL, TrapInfo,
};
use pv_abi::callback::{
    CALLBACKF_MASK_EVENTS, CALLBACKOP_REGISTER, CALLBACKOP_UNREGISTER, CALLBACKTYPE_EVENT,
    CALLBACKTYPE_FAILSAFE, CALLBACKTYPE_NMI, CALLBACKTYPE_SYSCALL, CallbackRegister,
    CallbackUnregister,
};
use pv_abi::errno::Errno;

/// A guest entry point must be a canonical address outside the hypervisor's range.
fn valid_entry(address: u64) -> bool {
    is_canonical(address) && !(HYPERVISOR_VIRT_START..HYPERVISOR_VIRT_END).contains(&address)
}

/// Entries `set_trap_table` takes per call before it continues (Xen's preemption
/// check): a whole table's worth.
const TRAP_TABLE_BATCH: u64 = 256;

/// `set_trap_table(table)`, as Xen does it: each entry of the array at `table`, up to
/// the terminator (address 0), replaces the virtual trap table's entry for its vector,
/// and the others stay (Linux sends one entry and the terminator for every IDT write
/// after the first). A null `table` clears the whole table. A bad entry (an address
/// that is not canonical or is in the hypervisor's range: `EINVAL`) or an unreadable
/// one (`EFAULT`) ends the call there, the entries before it applied, as in Xen. A
/// list of more than 256 entries goes on in a continuation.
pub(super) fn set_trap_table<M: PhysMem>(
    ctx: &mut Context<'_, M>,
    table: u64,
) -> Result<u64, Errno> {
    if table == 0 {
        ctx.domain.vcpu.trap_table = [TrapInfo::default(); 256];
        return Ok(0);
    }
    let size = core::mem::size_of::<TrapInfo>() as u64;
    for index in 0..TRAP_TABLE_BATCH {
        let entry: TrapInfo = ctx.guest.read_obj(table.wrapping_add(index * size))?;
        if entry.address == 0 {
            return Ok(0);
        }
        if !valid_entry(entry.address) {
            return Err(Errno::EINVAL);
        }
        ctx.domain.vcpu.trap_table[usize::from(entry.vector)] = entry;
    }
    let rest = table.wrapping_add(TRAP_TABLE_BATCH * size);
    Ok(ctx.continuation(super::Hypercall::SetTrapTable.number(), [rest, 0, 0, 0, 0]))
}

pub(super) fn set_callbacks<M: PhysMem>(
    ctx: &mut Context<'_, M>,
    event: u64,
    failsafe: u64,
    syscall: u64,
) -> Result<u64, Errno> {
    if ![event, failsafe, syscall]
        .into_iter()
        .all(|a| a == 0 || valid_entry(a))
    {
        return Err(Errno::EINVAL);
    }
    let callbacks = &mut ctx.domain.vcpu.callbacks;
    callbacks.event = event;
    callbacks.failsafe = failsafe;
    callbacks.syscall = syscall;
    callbacks.syscall_masks_events = false;
    Ok(0)
}

pub(super) fn callback_op<M: PhysMem>(
    ctx: &mut Context<'_, M>,
    cmd: u64,
    arg: u64,
) -> Result<u64, Errno> {
    match u32::try_from(cmd).map_err(|_| Errno::ENOSYS)? {
        CALLBACKOP_REGISTER => {
            let request: CallbackRegister = ctx.guest.read_obj(arg)?;
            if !valid_entry(request.address) {
                return Err(Errno::EINVAL);
            }
            let callbacks = &mut ctx.domain.vcpu.callbacks;
            match request.r#type {
                CALLBACKTYPE_EVENT => callbacks.event = request.address,
                CALLBACKTYPE_FAILSAFE => callbacks.failsafe = request.address,
                CALLBACKTYPE_SYSCALL => {
                    callbacks.syscall = request.address;
                    callbacks.syscall_masks_events = request.flags & CALLBACKF_MASK_EVENTS != 0;
                }
                // The others (the 32-bit syscall and sysenter entries, NMI) are not
                // supported, and an unknown type is Xen's ENOSYS too.
                _ => return Err(Errno::ENOSYS),
            }
            Ok(0)
        }
        CALLBACKOP_UNREGISTER => {
            let request: CallbackUnregister = ctx.guest.read_obj(arg)?;
            // As in Xen, only the NMI callback can be unregistered (and we have none).
            if request.r#type == CALLBACKTYPE_NMI {
                Ok(0)
            } else {
                Err(Errno::EINVAL)
            }
        }
        _ => Err(Errno::ENOSYS),
    }
}

pub(super) fn stack_switch<M: PhysMem>(
    ctx: &mut Context<'_, M>,
    ss: u64,
    sp: u64,
) -> Result<u64, Errno> {
    // Xen forces the selector to ring 3; a wrong selector only hurts the guest, but the
    // stack pointer is used by the hypervisor itself to push frames: keep it sane.
    if !is_canonical(sp) {
        return Err(Errno::EINVAL);
    }
    ctx.domain.vcpu.kernel_ss = ss | 3;
    ctx.domain.vcpu.set_kernel_sp(sp);
    Ok(0)
}

pub(super) fn fpu_taskswitch<M: PhysMem>(ctx: &mut Context<'_, M>, set: u64) -> Result<u64, Errno> {
    ctx.domain.vcpu.virtual_ts = set != 0;
    Ok(0)
}

pub(super) fn set_segment_base<M: PhysMem>(
    ctx: &mut Context<'_, M>,
    which: u64,
    base: u64,
) -> Result<u64, Errno> {
    let segments = &mut ctx.domain.vcpu.segments;
    match u32::try_from(which).map_err(|_| Errno::EINVAL)? {
        SEGBASE_FS | SEGBASE_GS_USER | SEGBASE_GS_KERNEL if !is_canonical(base) => {
            Err(Errno::EINVAL)
        }
        SEGBASE_FS => {
            segments.fs = base;
            Ok(0)
        }
        SEGBASE_GS_USER => {
            segments.gs_user = base;
            Ok(0)
        }
        SEGBASE_GS_KERNEL => {
            segments.gs_kernel = base;
            Ok(0)
        }
        // Loading a user GS selector (Linux's load_gs_index, on every switch to a
        // process): the base becomes the descriptor's. That is 0 for every selector
        // here: the null one clears it (as on Intel; Xen forces the same on AMD), and
        // every descriptor a guest can load is flat (`gdt.rs`); one it cannot load is
        // replaced by the flat one, as Xen's fix-up does. So the call never fails, as
        // in Xen ("Linux will BUG() if this call fails"). The selector itself is not
        // kept: the hypervisor does not switch selectors between guests.
        SEGBASE_GS_USER_SEL => {
            segments.gs_user = 0;
            Ok(0)
        }
        _ => Err(Errno::EINVAL),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{BUF, World};
    use super::*;
    use zerocopy::IntoBytes;

    #[test]
    fn trap_table_entries_replace_their_vectors_only_as_in_xen() {
        let mut world = World::new();
        let entry = |vector: u8, address: u64| TrapInfo {
            vector,
            flags: 0,
            cs: 0xe033,
            pad0: 0,
            address,
        };
        let entries = [
            entry(14, 0xffff_ffff_8000_1000),
            TrapInfo {
                flags: 3,
                ..entry(3, 0xffff_ffff_8000_2000)
            },
            TrapInfo::default(),
        ];
        world.put(0, entries.as_bytes());
        assert_eq!(world.call(0, [BUF, 0, 0, 0, 0]).0, 0);
        let table = |world: &World, vector: usize| world.domain.vcpu.trap_table[vector].address;
        assert_eq!(table(&world, 14), 0xffff_ffff_8000_1000);
        assert_eq!(world.domain.vcpu.trap_table[3].flags, 3);
        // One entry (Linux's IDT write): that vector changes, the others stay.
        world.put(
            0,
            [entry(6, 0xffff_ffff_8000_3000), TrapInfo::default()].as_bytes(),
        );
        assert_eq!(world.call(0, [BUF, 0, 0, 0, 0]).0, 0);
        assert_eq!(table(&world, 6), 0xffff_ffff_8000_3000);
        assert_eq!(table(&world, 14), 0xffff_ffff_8000_1000, "kept");
        assert_eq!(table(&world, 3), 0xffff_ffff_8000_2000, "kept");
        // A bad entry ends the call there: those before it are applied.
        let bad = [
            entry(14, 0xffff_ffff_8000_4000),
            entry(3, 0xffff_8300_0000_0000),
            entry(6, 0xffff_ffff_8000_5000),
        ];
        world.put(0, bad.as_bytes());
        assert_eq!(world.call(0, [BUF, 0, 0, 0, 0]).0, -22);
        assert_eq!(
            table(&world, 14),
            0xffff_ffff_8000_4000,
            "applied before it"
        );
        assert_eq!(table(&world, 3), 0xffff_ffff_8000_2000, "the bad one not");
        assert_eq!(table(&world, 6), 0xffff_ffff_8000_3000, "nor any after it");
        assert_eq!(world.call(0, [0x5000, 0, 0, 0, 0]).0, -14);
        // More than 256 entries: a continuation at the 257th.
        let full = [entry(3, 0xffff_ffff_8000_6000); 256];
        world.put(0, full.as_bytes());
        world.put(
            4096,
            [entry(7, 0xffff_ffff_8000_7000), TrapInfo::default()].as_bytes(),
        );
        let (rax, _) = world.call(0, [BUF, 0, 0, 0, 0]);
        assert_eq!(rax, 0, "the number again, for the re-issued call");
        assert_eq!(
            (world.last_regs.rip, world.last_regs.rdi),
            (0x1000 - 2, BUF + 4096)
        );
        assert_eq!(world.call(0, [BUF + 4096, 0, 0, 0, 0]).0, 0);
        assert_eq!(table(&world, 3), 0xffff_ffff_8000_6000);
        assert_eq!(table(&world, 7), 0xffff_ffff_8000_7000);
        assert_eq!(world.call(0, [0, 0, 0, 0, 0]).0, 0, "null clears the table");
        assert_eq!(table(&world, 3), 0);
    }

    #[test]
    fn callbacks_register_and_refuse_hypervisor_addresses() {
        let mut world = World::new();
        assert_eq!(
            world
                .call(
                    4,
                    [
                        0xffff_ffff_8000_0100,
                        0xffff_ffff_8000_0200,
                        0x40_0000,
                        0,
                        0
                    ]
                )
                .0,
            0
        );
        assert_eq!(world.domain.vcpu.callbacks.syscall, 0x40_0000);
        assert_eq!(world.call(4, [0xffff_8000_0000_0000, 0, 0, 0, 0]).0, -22);
        assert_eq!(world.call(4, [1 << 47, 0, 0, 0, 0]).0, -22, "non-canonical");
        let request = CallbackRegister {
            r#type: CALLBACKTYPE_SYSCALL,
            flags: CALLBACKF_MASK_EVENTS,
            pad0: 0,
            address: 0xffff_ffff_8000_0300,
        };
        world.put(0, request.as_bytes());
        assert_eq!(world.call(30, [0, BUF, 0, 0, 0]).0, 0);
        assert_eq!(world.domain.vcpu.callbacks.syscall, 0xffff_ffff_8000_0300);
        assert!(world.domain.vcpu.callbacks.syscall_masks_events);
        let bad = CallbackRegister {
            r#type: 99,
            ..request
        };
        world.put(0, bad.as_bytes());
        assert_eq!(
            world.call(30, [0, BUF, 0, 0, 0]).0,
            -38,
            "an unknown type: ENOSYS, as Xen"
        );
        assert_eq!(world.call(30, [5, BUF, 0, 0, 0]).0, -38);
    }

    /// The express paths of `entry.S` test a registered handler only for 0: every way
    /// of registering one must refuse a non-canonical address.
    #[test]
    fn no_registration_takes_a_non_canonical_handler() {
        let mut world = World::new();
        let non_canonical = 1u64 << 47;
        let table = [
            TrapInfo {
                vector: 14,
                flags: 0,
                cs: 0xe033,
                pad0: 0,
                address: non_canonical,
            },
            TrapInfo::default(),
        ];
        world.put(0, table.as_bytes());
        assert_eq!(world.call(0, [BUF, 0, 0, 0, 0]).0, -22, "set_trap_table");
        assert_eq!(world.domain.vcpu.trap_table[14].address, 0);
        for slot in 0..3 {
            let mut args = [0u64; 5];
            args[slot] = non_canonical;
            assert_eq!(world.call(4, args).0, -22, "set_callbacks, slot {slot}");
        }
        for r#type in [
            CALLBACKTYPE_EVENT,
            CALLBACKTYPE_FAILSAFE,
            CALLBACKTYPE_SYSCALL,
        ] {
            let request = CallbackRegister {
                r#type,
                flags: 0,
                pad0: 0,
                address: non_canonical,
            };
            world.put(0, request.as_bytes());
            assert_eq!(
                world.call(30, [0, BUF, 0, 0, 0]).0,
                -22,
                "callback_op {type}"
            );
        }
        let callbacks = &world.domain.vcpu.callbacks;
        assert_eq!(
            (callbacks.event, callbacks.failsafe, callbacks.syscall),
            (0, 0, 0)
        );
    }

    #[test]
    fn stack_fpu_and_segments() {
        let mut world = World::new();
        assert_eq!(world.call(3, [0xe02b, 0xffff_ffff_8010_0000, 0, 0, 0]).0, 0);
        assert_eq!(world.domain.vcpu.kernel_sp(), 0xffff_ffff_8010_0000);
        assert_eq!(world.call(3, [0xe02b, 1 << 47, 0, 0, 0]).0, -22);
        assert_eq!(world.call(5, [1, 0, 0, 0, 0]).0, 0);
        assert!(world.domain.vcpu.virtual_ts);
        assert_eq!(world.call(5, [0, 0, 0, 0, 0]).0, 0);
        assert!(!world.domain.vcpu.virtual_ts);
        assert_eq!(world.call(25, [0, 0x1000, 0, 0, 0]).0, 0);
        assert_eq!(world.call(25, [1, 0x2000, 0, 0, 0]).0, 0);
        assert_eq!(world.call(25, [2, 0xffff_ffff_8000_3000, 0, 0, 0]).0, 0);
        let seg = world.domain.vcpu.segments;
        assert_eq!(
            (seg.fs, seg.gs_user, seg.gs_kernel),
            (0x1000, 0x2000, 0xffff_ffff_8000_3000)
        );
        assert_eq!(
            world.call(25, [1, 1 << 47, 0, 0, 0]).0,
            -22,
            "non-canonical"
        );
        // A user GS selector, null or not, leaves the user GS base at its descriptor's,
        // 0 (the next process must not inherit the last one's), and never fails.
        for selector in [0, 3, 0xe02b, 0xfff8] {
            world.domain.vcpu.segments.gs_user = 0x2000;
            assert_eq!(world.call(25, [3, selector, 0, 0, 0]).0, 0);
            assert_eq!(
                world.domain.vcpu.segments.gs_user, 0,
                "selector {selector:#x}"
            );
        }
        assert_eq!(world.call(25, [9, 0, 0, 0, 0]).0, -22);
    }
}
