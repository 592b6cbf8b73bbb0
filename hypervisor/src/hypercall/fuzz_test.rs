//! Property tests: random hypercalls with random arguments and random request
//! structures, as a hostile or broken guest would make them.
//!
//! The guest's buffer (two pages at [`BUF`]) gets values likely to mean something to some
//! handler (page-table entries and `mmu_update` pointers naming every frame, pointers
//! into the buffer and into nothing, small commands, counts, domain ids and ports, the
//! extremes), and lists shaped as the calls read them (`mmu_update` requests, `mmuext_op`
//! operations, multicall entries, event-channel structures); every argument comes from
//! the same values. After every call:
//! - nothing panicked (the tests' debug build also traps every arithmetic overflow);
//! - `rax` is a result or one of Xen's error numbers, never an unknown one;
//! - through the per-domain dispatcher, the frame table still agrees with the page
//!   tables (`paging::audit`: no frame both a page table and writable-mapped, nothing
//!   foreign mapped, every count exact);
//! - through the machine-wide one (two domains), every interdomain event channel's peer
//!   names it back.
//!
//! Each catches a planted bug within its cases: an unpin that does not test the pin
//! (the audit's counts), a close that leaves the peer's port connected (the pairing).

use super::tests::{BUF, World};
use crate::domain::DomainState;
use crate::frames::FrameTable;
use crate::mm::PhysMem;
use proptest::prelude::*;
use pv_abi::Hypercall;
use pv_abi::errno::Errno;

/// Frames of the world (`World::new`: 0..=7 the domain's, the rest free).
const FRAMES: u64 = 32;

/// A value some handler may take for a meaningful one.
fn value() -> impl Strategy<Value = u64> {
    prop_oneof![
        // Small numbers: commands, counts, flags, ports, vCPU and domain ids.
        6 => 0u64..40,
        // Pointers into the buffer (mostly aligned), and next to it.
        4 => (0u64..1024).prop_map(|slot| BUF + slot * 8),
        1 => (0u64..8192).prop_map(|offset| BUF + offset),
        1 => prop::sample::select(vec![BUF - 8, BUF + 8192 - 4, BUF + 4096 - 4]),
        // Page-table entries naming any frame, with any low flags and sometimes NX.
        2 => (0..FRAMES + 2, 0u64..0x1000, any::<bool>())
            .prop_map(|(mfn, flags, nx)| (mfn << 12) | flags | (u64::from(nx) << 63)),
        // `mmu_update` pointers: a slot of any frame, with any command in the low bits.
        2 => (0..FRAMES + 2, 0u64..512, 0u64..4)
            .prop_map(|(mfn, slot, cmd)| (mfn << 12) | (slot * 8) | cmd),
        // Frame numbers.
        1 => 0..FRAMES + 2,
        // `DOMID_SELF`: `mmu_update`, `mmuext_op` and many more act for a domain.
        2 => Just(u64::from(pv_abi::xen::DOMID_SELF)),
        // Addresses that are nothing of the guest's (unmapped, the hypervisor's,
        // non-canonical), and the extremes.
        2 => prop::sample::select(vec![
            0x1000,
            0xffff_8300_0000_0000,
            0xffff_8000_0000_0000,
            1 << 47,
            1 << 63,
            u64::MAX,
            u64::from(u32::MAX),
            0x7fff_ffff,
        ]),
        1 => any::<u64>(),
    ]
}

/// One step: buffer words to write, then a hypercall.
#[derive(Clone, Debug)]
struct Step {
    writes: Vec<(u64, u64)>,
    number: u64,
    args: [u64; 5],
}

/// A fourth argument: `mmu_update` and `mmuext_op` take the domain they act for there,
/// and anything but `DOMID_SELF` from an unprivileged domain fails at once.
fn domain_arg() -> impl Strategy<Value = u64> {
    prop_oneof![3 => Just(u64::from(pv_abi::xen::DOMID_SELF)), 1 => value()]
}

/// A hypercall with random words in the buffer.
fn raw_step() -> impl Strategy<Value = Step> {
    let number = prop_oneof![
        // The calls Xen defines, more often than numbers at random.
        4 => prop::sample::select(Hypercall::ALL.map(Hypercall::number).to_vec()),
        1 => 0u64..70,
    ];
    (
        prop::collection::vec(((0u64..1024).prop_map(|slot| slot * 8), value()), 0..24),
        number,
        (value(), value(), value(), domain_arg(), value()),
    )
        .prop_map(|(writes, number, (a1, a2, a3, a4, a5))| Step {
            writes,
            number,
            args: [a1, a2, a3, a4, a5],
        })
}

/// Words laid out from a random 8-byte slot of the buffer (the list may run off its
/// end), the list's address, and a count that is mostly the list's length.
fn list(
    words: impl Strategy<Value = Vec<u64>>,
    per_item: usize,
) -> impl Strategy<Value = (Vec<(u64, u64)>, u64, u64)> {
    let count = prop_oneof![4 => Just(None), 1 => Just(Some(0)), 1 => value().prop_map(Some)];
    (words, 0u64..1024, count).prop_map(move |(words, slot, count)| {
        let at = slot * 8;
        let items = (words.len() / per_item) as u64;
        let writes = words
            .iter()
            .enumerate()
            .map(|(i, &word)| (at + i as u64 * 8, word))
            .filter(|&(offset, _)| offset < 8192)
            .collect();
        (writes, BUF + at, count.unwrap_or(items))
    })
}

/// A `done` pointer: none, into the buffer, or anything.
fn done_arg() -> impl Strategy<Value = u64> {
    prop_oneof![
        2 => Just(0),
        2 => (0u64..1024).prop_map(|slot| BUF + slot * 8),
        1 => value(),
    ]
}

/// `mmu_update` with a list of requests.
fn mmu_update_step() -> impl Strategy<Value = Step> {
    let request = (value(), value()).prop_map(|(ptr, val)| vec![ptr, val]);
    (
        list(
            prop::collection::vec(request, 1..6).prop_map(|v| v.concat()),
            2,
        ),
        done_arg(),
        domain_arg(),
    )
        .prop_map(|((writes, at, count), done, dom)| Step {
            writes,
            number: Hypercall::MmuUpdate.number(),
            args: [at, count, done, dom, 0],
        })
}

/// `mmuext_op` with a list of operations (every command Xen defines, and others).
fn mmuext_step() -> impl Strategy<Value = Step> {
    let op = (0u64..24, value(), value()).prop_map(|(cmd, arg1, arg2)| vec![cmd, arg1, arg2]);
    (
        list(prop::collection::vec(op, 1..5).prop_map(|v| v.concat()), 3),
        done_arg(),
        domain_arg(),
    )
        .prop_map(|((writes, at, count), done, dom)| Step {
            writes,
            number: Hypercall::MmuextOp.number(),
            args: [at, count, done, dom, 0],
        })
}

/// A multicall of calls Xen defines (the multicall itself among them) with any
/// arguments.
fn multicall_step() -> impl Strategy<Value = Step> {
    let entry = (
        prop::sample::select(Hypercall::ALL.map(Hypercall::number).to_vec()),
        value(),
        (value(), value(), value(), domain_arg(), value(), value()),
    )
        .prop_map(|(op, result, (a1, a2, a3, a4, a5, a6))| {
            vec![op, result, a1, a2, a3, a4, a5, a6]
        });
    list(
        prop::collection::vec(entry, 1..5).prop_map(|v| v.concat()),
        8,
    )
    .prop_map(|(writes, at, count)| Step {
        writes,
        number: Hypercall::Multicall.number(),
        args: [at, count, 0, 0, 0],
    })
}

/// `update_va_mapping` of a page near the buffer, or anywhere.
fn update_va_mapping_step() -> impl Strategy<Value = Step> {
    let va = prop_oneof![
        3 => (0u64..4).prop_map(|page| BUF + page * 4096),
        1 => value(),
    ];
    let flags = prop_oneof![3 => 0u64..4, 1 => value()];
    (va, value(), flags).prop_map(|(va, pte, flags)| Step {
        writes: Vec::new(),
        number: Hypercall::UpdateVaMapping.number(),
        args: [va, pte, flags, 0, 0],
    })
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => raw_step(),
        2 => mmu_update_step(),
        2 => mmuext_step(),
        1 => multicall_step(),
        1 => update_va_mapping_step(),
    ]
}

/// A store the guest makes at `va`: through its page tables, as its CPU would, so that
/// nothing lands in a page it no longer maps writable (an earlier call may have unmapped
/// a buffer page and made it a page table); such a store is dropped, as the guest's
/// would fault.
fn guest_store(world: &mut World, va: u64, value: u64) {
    let mut storage = world.storage.clone();
    let frames = FrameTable::resume(&mut storage, world.clock);
    let root = world.domain.vcpu.kernel_root;
    let guest = crate::guestmem::GuestMem::new(&world.mem, &frames, 1, root);
    if let Ok(at) = guest.translate(va, true) {
        world.mem.write_u64(at, value);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_hypercalls_return_xen_errnos_and_keep_the_frame_table_exact(
        steps in prop::collection::vec(step(), 1..32)
    ) {
        let mut world = World::new();
        for (index, step) in steps.iter().enumerate() {
            for &(offset, value) in &step.writes {
                guest_store(&mut world, BUF + offset, value);
            }
            world.domain.state = DomainState::Running;
            let (ret, _after) = world.call(step.number, step.args);
            if let Err(errno) = Errno::from_ret(ret) {
                prop_assert!(
                    errno.is_known(),
                    "step {}: {:?} returned {}, not a Xen errno", index, step, ret
                );
            }
            if let Err(why) = world.audit() {
                return Err(TestCaseError::fail(format!("step {index} after {step:?}: {why}")));
            }
        }
    }
}

/// Two domains (the first privileged, with two vCPUs): random calls of the machine-wide
/// dispatcher (event channels, vCPU operations, timers, scheduling, sysctl) from
/// either, with random words in the caller's buffer.
#[derive(Clone, Debug)]
struct GlobalStep {
    slot: usize,
    writes: Vec<(u64, u64)>,
    number: Hypercall,
    args: [u64; 5],
}

/// A pointer argument: into the caller's buffer mostly.
fn pointer() -> impl Strategy<Value = u64> {
    prop_oneof![4 => (0u64..1024).prop_map(|slot| BUF + slot * 8), 1 => value()]
}

fn global_step() -> impl Strategy<Value = GlobalStep> {
    // Each call's arguments where its handler looks for them: a command, a vCPU, a
    // pointer to its structure.
    let call = prop_oneof![
        (0u64..16, pointer()).prop_map(|(cmd, at)| (Hypercall::EventChannelOp, [cmd, at, 0])),
        pointer().prop_map(|at| (Hypercall::EventChannelOpCompat, [at, 0, 0])),
        (0u64..16, 0u64..4, pointer())
            .prop_map(|(cmd, vcpu, at)| (Hypercall::VcpuOp, [cmd, vcpu, at])),
        value().prop_map(|deadline| (Hypercall::SetTimerOp, [deadline, 0, 0])),
        (0u64..16, pointer()).prop_map(|(cmd, at)| (Hypercall::SchedOp, [cmd, at, 0])),
        pointer().prop_map(|at| (Hypercall::Sysctl, [at, 0, 0])),
        (
            prop::sample::select(vec![
                Hypercall::EventChannelOp,
                Hypercall::EventChannelOpCompat,
                Hypercall::VcpuOp,
                Hypercall::SetTimerOp,
                Hypercall::SchedOp,
                Hypercall::Sysctl,
            ]),
            value(),
            value(),
            value()
        )
            .prop_map(|(number, a1, a2, a3)| (number, [a1, a2, a3])),
    ];
    // Words of the buffer: small numbers (commands, ports, vCPUs, domain ids, VIRQs)
    // most of all, and the first word of an event-channel structure: two domain ids
    // (1, 2 or `DOMID_SELF`) and a port.
    let domain = prop::sample::select(vec![0u64, 1, 2, 3, u64::from(pv_abi::xen::DOMID_SELF)]);
    let channel = (domain.clone(), domain, 0u64..8)
        .prop_map(|(dom, remote, port)| dom | (remote << 16) | (port << 32));
    let word = prop_oneof![3 => 0u64..8, 2 => channel, 1 => value()];
    (
        0usize..2,
        prop::collection::vec(((0u64..1024).prop_map(|slot| slot * 8), word.clone()), 0..8),
        // The structure at the call's pointer.
        prop::collection::vec(word, 1..6),
        call,
        (value(), value()),
    )
        .prop_map(
            |(slot, mut writes, structure, (number, [a1, a2, a3]), (a4, a5))| {
                // The structure goes where the call's pointer points, if that is the buffer.
                let at = if number == Hypercall::EventChannelOpCompat || number == Hypercall::Sysctl
                {
                    a1
                } else if number == Hypercall::VcpuOp {
                    a3
                } else {
                    a2
                };
                if let Some(offset) = at.checked_sub(BUF).filter(|offset| offset % 8 == 0) {
                    for (i, word) in structure.into_iter().enumerate() {
                        writes.push((offset + i as u64 * 8, word));
                    }
                }
                writes.retain(|&(offset, _)| offset < 8192);
                GlobalStep {
                    slot,
                    writes,
                    number,
                    args: [a1, a2, a3, a4, a5],
                }
            },
        )
}

/// A port allocated by one domain for the other, and the other's bind to it (a guess at
/// the port: the lowest free ones), each at a random place in its buffer.
fn connect_steps() -> impl Strategy<Value = Vec<GlobalStep>> {
    (0usize..2, 1u64..6, 0u64..1024, 0u64..1024).prop_map(|(from, port, at, at2)| {
        let to = 1 - from;
        let self_id = u64::from(pv_abi::xen::DOMID_SELF);
        let alloc = GlobalStep {
            slot: from,
            writes: vec![(at * 8, self_id | ((to as u64 + 1) << 16))],
            number: Hypercall::EventChannelOp,
            args: [6, BUF + at * 8, 0, 0, 0],
        };
        let bind = GlobalStep {
            slot: to,
            writes: vec![(at2 * 8, (from as u64 + 1) | (port << 32))],
            number: Hypercall::EventChannelOp,
            args: [0, BUF + at2 * 8, 0, 0, 0],
        };
        vec![alloc, bind]
    })
}

/// Every interdomain channel's peer names it back.
fn channels_are_symmetric(world: &crate::guests::tests::Multi) -> Result<(), String> {
    use crate::evtchn::Binding;
    for (slot, runtime) in world.runtime.iter().enumerate() {
        let id = slot as u16 + 1;
        for (port, channel) in runtime.events.open_ports() {
            if let Binding::Interdomain {
                remote,
                remote_port,
            } = channel.binding
            {
                let peer = usize::from(remote)
                    .checked_sub(1)
                    .and_then(|peer| world.runtime.get(peer))
                    .and_then(|runtime| runtime.events.get(remote_port));
                let back = peer.map(|channel| channel.binding);
                if back
                    != Some(Binding::Interdomain {
                        remote: id,
                        remote_port: port,
                    })
                {
                    return Err(format!(
                        "d{id} port {port} -> d{remote} port {remote_port}, which is {back:?}"
                    ));
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_machine_wide_calls_return_xen_errnos_and_keep_channels_paired(
        steps in prop::collection::vec(
            prop_oneof![3 => global_step().prop_map(|step| vec![step]), 1 => connect_steps()],
            1..24,
        )
    ) {
        let steps: Vec<GlobalStep> = steps.concat();
        use crate::hypercall::global::tests::call;
        let mut world = crate::guests::tests::Multi::with_vcpus(&[2, 1]);
        for (index, step) in steps.iter().enumerate() {
            for &(offset, value) in &step.writes {
                world.put(step.slot, offset, &value.to_le_bytes());
            }
            let Some((ret, _after)) = call(&mut world, step.slot, step.number, step.args) else {
                continue;
            };
            if let Err(errno) = Errno::from_ret(ret) {
                prop_assert!(
                    errno.is_known(),
                    "step {}: {:?} returned {}, not a Xen errno", index, step, ret
                );
            }
            if let Err(why) = channels_are_symmetric(&world) {
                return Err(TestCaseError::fail(format!("step {index} after {step:?}: {why}")));
            }
        }
    }
}
