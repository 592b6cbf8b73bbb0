//! The hypercall fuzzer (`workload=fuzz`, `rounds=N` calls, `seed=S`): a domain that
//! makes `N` random hypercalls and privileged instructions (one in eight), as a broken
//! or hostile kernel would, against the real hypervisor (its assembly entry stubs,
//! express paths and lanes included, which the host's property tests do not reach).
//!
//! The privileged instructions (control registers, MSRs, port I/O, `invlpg`, descriptor
//! tables, `int n`, the forced `cpuid`, ...) take random operands; each must be
//! emulated or refused with a #GP, which the fault harness catches (any other exception
//! panics this kernel).
//!
//! The calls are random but aimed: page-table requests name a sandbox of frames of its
//! own (tables pinned but linked nowhere, data pages, the frames it gives back and takes
//! again) besides the hypervisor's, MMIO and other domains' frames and frames beyond
//! RAM; structures are written, with their fields' widths, where the call reads them;
//! pointers the hypervisor writes through point at the sandbox, at a page mapped
//! read-only, at the hypervisor, at nothing. Calls that must be refused are aimed at
//! what it runs from too: its live root is among the frames `clear_page`, `copy_page`,
//! pins and unpins name (it must be refused, or hold: the base pointer keeps its own
//! reference), and its own frames are among those page-table entries name (in tables
//! linked nowhere and at the slots, which nothing reads). Nothing the hypervisor may
//! accept changes the memory it runs from, so it must run to the end whatever the
//! answers. The calls that would end or stop it by design are left out (shutdown,
//! block, `iret`, a new trap table or callbacks, bringing a vCPU up with a random
//! context, a base pointer other than its own, `fpu_taskswitch`, which its SSE code
//! would trip over, and closing or resetting the two event channels its threads run on).
//!
//! It reports four self-tests:
//! - `fuzz_errnos`: every error is one of Xen's errno values;
//! - `fuzz_xmm`: every call came back with the vector registers and MXCSR it was made
//!   with (`xmm_probe`: each call is made with a pattern in them);
//! - `fuzz_read_only`: the page mapped read-only, which calls were pointed at, is
//!   unchanged;
//! - `fuzz_reach`: every kind of call that can succeed did, at least once (a generator
//!   that only ever made refused calls would test nothing but the refusal), and some
//!   reservation extents went out and came back in.
//!
//! The scenario (`xtask/scenarios/fuzz.toml`) runs it next to an honest domain, which
//! must pass all its self-tests; every run of ours also checks that every frame comes
//! back when the domains are gone.

use crate::Boot;
use crate::vm::{self, RO, mfn_of, scratch};
use crate::xmm_probe;
use core::fmt::Write;
use pv_abi::Errno;
use pv_abi::xen::{DOMID_SELF, Hypercall, MmuextOp};
use pv_guest_kernel::scenario::Scenario;
use pv_guest_kernel::selftest::{Outcome, Tally, failure};

/// The hypervisor's image (1 MiB up), an MMIO page (the local APIC), and the first
/// machine frame past any RAM a scenario gives QEMU.
const HYPERVISOR_FRAME: u64 = 0x100;
const MMIO_FRAME: u64 = 0xfee00;
const BEYOND_RAM: u64 = 1 << 20;
/// Addresses of nothing of the guest's.
const HYPERVISOR_VA: u64 = 0xffff_8300_0010_0000;
const NON_CANONICAL: u64 = 1 << 47;
const UNMAPPED_VA: u64 = 0x7100_0000_0000;

/// A small, fast, seeded generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick(&mut self, items: &[u64]) -> u64 {
        items[self.below(items.len() as u64) as usize]
    }

    fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }
}

/// The fuzzer's own frames and addresses (scratch pages 40..64 of the boot padding).
struct Sandbox {
    /// Frames mapped read-only: page tables to be (the first four pinned as L1s).
    tables: [u64; 8],
    /// Frames mapped writable: [0] and [1] hold requests, [2..7] take the hypervisor's
    /// writes; [7] is mapped read-only and must never change.
    data: [u64; 8],
    data_va: [u64; 8],
    /// Addresses whose mappings `update_va_mapping` changes at will (never touched).
    slots: [u64; 8],
    /// The live root.
    base: u64,
    /// Frames the reservation calls may give back (a PV guest names machine frames
    /// there): first those mapped at the slots (once a slot is remapped nothing refers
    /// to its frame), then, in turn, those a call took (written in its list).
    spare: [u64; 8],
    /// Where the next frame taken goes in `spare`.
    next_spare: usize,
}

/// What [`Sandbox::data`]'s read-only page holds.
const CANARY: u64 = 0x6675_7a7a_6361_6e79;

impl Sandbox {
    fn new(boot: &Boot) -> Result<Sandbox, Errno> {
        let va = |n: u64| scratch(boot, n);
        let mut sandbox = Sandbox {
            tables: [0; 8],
            data: [0; 8],
            data_va: [0; 8],
            slots: [0; 8],
            base: mfn_of(boot, boot.info.pt_base),
            spare: [0; 8],
            next_spare: 0,
        };
        for i in 0..8 {
            sandbox.data_va[i] = va(48 + i as u64);
            sandbox.data[i] = mfn_of(boot, sandbox.data_va[i]);
            sandbox.slots[i] = va(56 + i as u64);
            sandbox.spare[i] = mfn_of(boot, sandbox.slots[i]);
            let table_va = va(40 + i as u64);
            sandbox.tables[i] = mfn_of(boot, table_va);
            // Zeroed, then read-only, then (the first four) pinned as empty L1s.
            for word in 0..512 {
                vm::poke(table_va + word * 8, 0);
            }
            vm::map(table_va, sandbox.tables[i], RO)?;
        }
        for &table in &sandbox.tables[..4] {
            let pin = MmuextOp::pin_table(1, table).ok_or(Errno::EINVAL)?;
            vm::ext(&[pin]).map_err(|e| e.errno)?;
        }
        let canary_va = sandbox.data_va[7];
        for word in 0..512 {
            vm::poke(canary_va + word * 8, CANARY ^ word);
        }
        vm::map(canary_va, sandbox.data[7], RO)?;
        Ok(sandbox)
    }

    /// Whether the read-only page still holds what it was given.
    fn canary_intact(&self) -> bool {
        (0..512).all(|word| vm::peek(self.data_va[7] + word * 8) == CANARY ^ word)
    }

    /// A machine frame to name: the sandbox's, the slots' first frames, the live root,
    /// the hypervisor's, MMIO, beyond RAM, or any frame of RAM (its own live ones among
    /// them). Page-table entries name them only in tables linked nowhere and at the
    /// slots, which nothing reads; `mmuext_op` pins and unpins them (its live tables
    /// among them: an unpinned live root is still held by the base pointer).
    fn frame(&self, rng: &mut Rng) -> u64 {
        match rng.below(9) {
            0..=2 => rng.pick(&self.tables),
            3 | 4 => self.data[rng.below(7) as usize],
            8 => rng.pick(&self.spare),
            5 => rng.pick(&[self.base, HYPERVISOR_FRAME, MMIO_FRAME, 0]),
            6 => BEYOND_RAM + rng.below(1 << 30),
            _ => rng.below(1 << 16),
        }
    }

    /// A frame whose contents a call may change (`clear_page`, `copy_page`): the
    /// sandbox's, one that is not its own at all, or its live root (which must be
    /// refused: a page table is never written but through validation).
    fn spare_frame(&self, rng: &mut Rng) -> u64 {
        match rng.below(4) {
            0 => rng.pick(&self.tables),
            1 | 2 => self.data[rng.below(7) as usize],
            _ => rng.pick(&[HYPERVISOR_FRAME, MMIO_FRAME, BEYOND_RAM, self.base]),
        }
    }

    /// A page-table entry.
    fn entry(&self, rng: &mut Rng) -> u64 {
        let nx = if rng.one_in(4) { 1 << 63 } else { 0 };
        (self.frame(rng) << 12) | rng.below(0x1000) | nx
    }

    /// An `mmu_update` pointer: a slot of a sandbox table (any command in the low bits),
    /// or of a frame that is not the guest's.
    fn table_slot(&self, rng: &mut Rng) -> u64 {
        let frame = if rng.one_in(6) {
            rng.pick(&[HYPERVISOR_FRAME, MMIO_FRAME, BEYOND_RAM])
        } else {
            rng.pick(&self.tables)
        };
        (frame << 12) | (rng.below(512) * 8) | rng.below(4)
    }

    /// An address the hypervisor may write through: the sandbox's writable pages, the
    /// read-only one, the hypervisor's, nothing.
    fn out_pointer(&self, rng: &mut Rng) -> u64 {
        match rng.below(8) {
            0..=4 => self.data_va[2 + rng.below(5) as usize] + rng.below(448) * 8,
            5 => self.data_va[7] + rng.below(512) * 8,
            _ => rng.pick(&[0, HYPERVISOR_VA, NON_CANONICAL, UNMAPPED_VA, u64::MAX]),
        }
    }

    /// An address to change the mapping of: a slot, or one that is not the guest's.
    fn slot_address(&self, rng: &mut Rng) -> u64 {
        if rng.one_in(6) {
            rng.pick(&[HYPERVISOR_VA, NON_CANONICAL, UNMAPPED_VA, 0])
        } else {
            rng.pick(&self.slots)
        }
    }

    /// Writes `words` at the start of request page `page` (0 or 1) and fills the rest
    /// of the page with all-ones words, which every list reader refuses (an unknown
    /// command, request or hypercall): a count beyond the list meets them, never what
    /// an earlier call left (a zero there would be `set_trap_table(NULL)` in a
    /// multicall, which takes the trap table away). Returns the page's address.
    fn put(&self, page: usize, words: &[u64]) -> u64 {
        for (i, &word) in words.iter().enumerate() {
            vm::poke(self.data_va[page] + i as u64 * 8, word);
        }
        for i in words.len()..512 {
            vm::poke(self.data_va[page] + i as u64 * 8, u64::MAX);
        }
        self.data_va[page]
    }
}

/// A count: mostly what the list holds, sometimes 0, a few more (the page's all-ones
/// filler), or one above 2^32 (whose low half is the list's), or all ones. Readers that
/// stop at the first refused entry (`mmu_update`, `mmuext_op`, the reservations) stop
/// at the filler.
fn count(rng: &mut Rng, items: u64) -> u64 {
    match rng.below(10) {
        0 => 0,
        1 => items + 1 + rng.below(4),
        2 => (1 << 32) + items,
        3 => u64::MAX,
        _ => items,
    }
}

/// A multicall's count: a multicall runs every entry whatever the earlier ones
/// returned, so it never goes past the filler of its page.
fn multicall_count(rng: &mut Rng, items: u64) -> u64 {
    match rng.below(8) {
        0 => 0,
        1 => items + 1 + rng.below(4),
        _ => items,
    }
}

/// An address, mostly a canonical one: the sandbox's, the kernel half, the top of the
/// lower half; or anything.
fn address(s: &Sandbox, rng: &mut Rng) -> u64 {
    match rng.below(5) {
        0 => s.data_va[rng.below(7) as usize],
        1 => 0xffff_ffff_8000_0000 + rng.below(1 << 31),
        2 => (1 << 47) - 4096 + rng.below(4096),
        3 => rng.below(1 << 47),
        _ => rng.next(),
    }
}

/// A domain argument: mostly `DOMID_SELF`.
fn domain(rng: &mut Rng) -> u64 {
    if rng.one_in(5) {
        rng.below(0x8000)
    } else {
        u64::from(DOMID_SELF)
    }
}

/// One random call, written and made; returns which call (and its name: the
/// reservation calls are named apart) and what it returned.
fn one_call(
    s: &Sandbox,
    rng: &mut Rng,
) -> (Hypercall, &'static str, i64, Option<xmm_probe::Changed>) {
    let (call, args) = match rng.below(20) {
        0..=3 => {
            let n = 1 + rng.below(4);
            let mut words = [0u64; 8];
            for i in 0..n as usize {
                words[2 * i] = s.table_slot(rng);
                words[2 * i + 1] = s.entry(rng);
            }
            let list = s.put(0, &words[..2 * n as usize]);
            let done = if rng.one_in(2) { 0 } else { s.out_pointer(rng) };
            (
                Hypercall::MmuUpdate,
                [list, count(rng, n), done, domain(rng), 0],
            )
        }
        4..=6 => {
            let n = 1 + rng.below(3);
            let mut words = [0u64; 9];
            for i in 0..n as usize {
                let cmd = rng.below(24);
                let (arg1, arg2) = match cmd {
                    // NEW_BASEPTR: only to its own root (anything else would be a
                    // valid switch to a table it cannot run on, or refused).
                    5 => (s.base, 0),
                    // INVLPG (local, multi, all): an address, and a vCPU mask pointer.
                    7 | 9 | 11 => (s.slot_address(rng), s.out_pointer(rng)),
                    // SET_LDT: a base and a count.
                    13 => (s.slot_address(rng), rng.below(9000)),
                    // CLEAR_PAGE, COPY_PAGE: frames whose contents may change.
                    16 | 17 => (s.spare_frame(rng), s.spare_frame(rng)),
                    // TLB_FLUSH_MULTI: a vCPU mask pointer.
                    8 => (s.out_pointer(rng), 0),
                    _ => (s.frame(rng), s.frame(rng)),
                };
                words[3 * i] = cmd;
                words[3 * i + 1] = arg1;
                words[3 * i + 2] = arg2;
            }
            let list = s.put(0, &words[..3 * n as usize]);
            let done = if rng.one_in(2) { 0 } else { s.out_pointer(rng) };
            (
                Hypercall::MmuextOp,
                [list, count(rng, n), done, domain(rng), 0],
            )
        }
        7 | 8 => {
            let flags = if rng.one_in(5) {
                rng.next() & !3
            } else {
                rng.below(4)
            };
            (
                Hypercall::UpdateVaMapping,
                [s.slot_address(rng), s.entry(rng), flags, 0, 0],
            )
        }
        9 => {
            // A multicall of calls that read what request page 0 holds (a list of
            // mmu_update requests, valid or not), the null hypercall, a send, itself.
            let requests = [s.table_slot(rng), s.entry(rng)];
            let list = s.put(0, &requests);
            let n = 1 + rng.below(4);
            let mut words = [0u64; 32];
            for i in 0..n as usize {
                let entry = &mut words[8 * i..8 * i + 8];
                let (op, args) = match rng.below(5) {
                    0 => (
                        Hypercall::MmuUpdate.number(),
                        [list, 1, 0, domain(rng), 0, 0],
                    ),
                    1 => (Hypercall::XenVersion.number(), [0; 6]),
                    2 => (Hypercall::EventChannelOp.number(), [4, list, 0, 0, 0, 0]),
                    3 => (Hypercall::Multicall.number(), [list, 1, 0, 0, 0, 0]),
                    // A harmless call by number, or a number that is none.
                    _ => (
                        rng.pick(&[9, 11, 15, 17, 21, 35, 38, 43, 64]),
                        [rng.below(16); 6],
                    ),
                };
                entry[0] = op;
                entry[1] = rng.next();
                entry[2..].copy_from_slice(&args);
            }
            let entries = s.put(1, &words[..8 * n as usize]);
            (
                Hypercall::Multicall,
                [entries, multicall_count(rng, n), 0, 0, 0],
            )
        }
        10 | 11 => {
            // Event channels: a command and its structure, each field at its width
            // (domain ids 16 bits, ports, VIRQs and vCPUs 32), from small numbers and
            // DOMID_SELF; never a close or reset of the two ports its threads run on.
            let cmd = rng.below(15);
            let any = rng.below(1100);
            let port = rng.pick(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 63, 64, any]);
            let (any_domain, any_word) = (rng.below(0x8000), rng.next() & 0xffff_ffff);
            let domain = rng.pick(&[0, 1, 2, 3, u64::from(DOMID_SELF), any_domain]);
            // Another domain: never 1 (this one), nor DOMID_SELF (0x7ff0).
            let other = rng.pick(&[0, 2, 3, 0x10 + any_domain % 0x7fe0]);
            let small = rng.pick(&[0, 1, 2, 3, 4, 8, 24, any_word]);
            let (timer, ipi) = crate::threads::ports();
            let theirs = |port: u64| port == u64::from(timer) || port == u64::from(ipi);
            let words = match cmd {
                // bind_interdomain: remote domain, remote port.
                0 => [domain | (port << 32), 0],
                // bind_virq: VIRQ, vCPU.
                1 => [rng.below(26) | (rng.below(3) << 32), 0],
                // close, send, unmask: a port (not its threads').
                3 | 4 | 8 | 9 if theirs(port) => [0, 0],
                3 | 4 | 9 => [port, 0],
                // status: domain, port.
                5 => [domain | (port << 32), 0],
                // alloc_unbound: domain, remote domain.
                6 => [domain | (domain << 16), 0],
                // bind_ipi: a vCPU.
                7 => [rng.below(3), 0],
                // bind_vcpu: port, vCPU.
                8 => [port | (rng.below(3) << 32), 0],
                // reset: another domain's (not its own: it would close its threads').
                10 => [other, 0],
                _ => [small | (port << 32), rng.next()],
            };
            let at = if rng.one_in(8) {
                s.out_pointer(rng)
            } else {
                s.put(0, &words)
            };
            (Hypercall::EventChannelOp, [cmd, at, 0, 0, 0])
        }
        12 => {
            // Scheduling: yield, poll with a deadline long past, a remote shutdown it
            // may not make, commands that do not exist.
            let ports = s.put(1, &[rng.below(64) | (rng.below(64) << 32)]);
            let poll = s.put(0, &[ports, rng.below(3), 1]);
            match rng.below(4) {
                0 => (Hypercall::SchedOp, [0, 0, 0, 0, 0]),
                1 => (Hypercall::SchedOp, [3, poll, 0, 0, 0]),
                2 => {
                    // Domain 1 is this one (the scenario's first).
                    let remote = s.put(0, &[rng.pick(&[0, 2, 3, 7]) | (rng.below(6) << 32)]);
                    (Hypercall::SchedOp, [4, remote, 0, 0, 0])
                }
                _ => (Hypercall::SchedOp, [7 + rng.below(40), poll, 0, 0, 0]),
            }
        }
        13 => {
            // vCPU operations other than bringing one up: queries, timers, areas the
            // hypervisor writes, taking down a vCPU it does not run on.
            // VCPUOP_down of vCPU 1 (the scenario gives it two, and never brings the
            // second up) or of none; register_runstate_memory_area (5) and
            // register_vcpu_time_memory_area (13) take a structure holding a pointer.
            let cmd = rng.pick(&[2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 40]);
            let vcpu = if cmd == 2 {
                1 + rng.below(3)
            } else {
                rng.below(3)
            };
            let period = 1_000_000 + rng.below(1_000_000_000);
            let arg = match cmd {
                6 => s.put(0, &[period]),
                8 => s.put(0, &[rng.next(), rng.below(2)]),
                5 | 13 => s.put(0, &[s.out_pointer(rng)]),
                _ => s.out_pointer(rng),
            };
            (Hypercall::VcpuOp, [cmd, vcpu, arg, 0, 0])
        }
        14 => {
            let any = rng.next();
            (Hypercall::SetTimerOp, [rng.pick(&[0, 1, any]), 0, 0, 0, 0])
        }
        15 => (
            Hypercall::XenVersion,
            [rng.below(16), s.out_pointer(rng), 0, 0, 0],
        ),
        16 => {
            // Memory reservations: giving back the slots' first frames (free once a
            // slot is remapped), sandbox frames still mapped, frames not its own; and
            // taking frames again (the hypervisor writes their numbers in the list).
            let mut extents = [0u64; 4];
            for extent in &mut extents {
                *extent = match rng.below(5) {
                    0..=2 => rng.pick(&s.spare),
                    3 => s.spare_frame(rng),
                    _ => rng.next(),
                };
            }
            let list = s.put(1, &extents);
            let start = if rng.one_in(6) {
                s.out_pointer(rng)
            } else {
                list
            };
            let order = if rng.one_in(5) { 1 + rng.below(3) } else { 0 };
            let reservation = s.put(0, &[start, count(rng, 4), order, domain(rng)]);
            // Half of them give back or take (increase or populate), half the rest.
            let cmd = if rng.one_in(2) {
                rng.pick(&[1, 1, 0, 6])
            } else {
                rng.pick(&[2, 3, 4, 5, 9, 12, 14, 40])
            };
            let arg = if cmd == 2 || cmd == 3 || cmd == 4 {
                s.put(0, &[u64::from(DOMID_SELF)])
            } else if rng.one_in(6) {
                s.out_pointer(rng)
            } else {
                reservation
            };
            (Hypercall::MemoryOp, [cmd, arg, 0, 0, 0])
        }
        17 => {
            let words = [rng.below(4), rng.next(), rng.below(0x1_0000)];
            let at = if rng.one_in(4) {
                s.out_pointer(rng)
            } else {
                s.put(0, &words)
            };
            (Hypercall::PhysdevOp, [rng.below(32), at, 0, 0, 0])
        }
        18 => match rng.below(5) {
            0 => (
                Hypercall::ConsoleIo,
                [1, rng.below(64), s.out_pointer(rng), 0, 0],
            ),
            1 => (Hypercall::VmAssist, [rng.below(3), rng.below(10), 0, 0, 0]),
            2 => (
                Hypercall::SetSegmentBase,
                // This kernel uses neither FS nor GS.
                [rng.pick(&[0, 1, 2, 4, 100]), address(s, rng), 0, 0, 0],
            ),
            3 => {
                // Only a bounce from user mode uses the stack, and it has no user mode.
                let any = rng.below(0x1_0000);
                let ss = rng.pick(&[0xe02b, 0xe02b, 0xe033, 0xe010, 0, any]);
                (Hypercall::StackSwitch, [ss, address(s, rng), 0, 0, 0])
            }
            _ => (
                Hypercall::Sysctl,
                [s.put(0, &[rng.below(64) | (0x15 << 32)]), 0, 0, 0, 0],
            ),
        },
        _ => match rng.below(4) {
            0 => (
                Hypercall::GrantTableOp,
                [rng.below(20), s.out_pointer(rng), rng.below(4), 0, 0],
            ),
            1 => (Hypercall::GetDebugreg, [rng.below(10), 0, 0, 0, 0]),
            2 => (
                Hypercall::SetGdt,
                [
                    s.put(0, &[s.frame(rng), s.frame(rng)]),
                    rng.below(8192),
                    0,
                    0,
                    0,
                ],
            ),
            _ => (
                Hypercall::UpdateDescriptor,
                [
                    (s.spare_frame(rng) << 12) | (rng.below(512) * 8),
                    rng.next(),
                    0,
                    0,
                    0,
                ],
            ),
        },
    };
    // Made with the vector registers and MXCSR holding a pattern, which must come back:
    // whatever path the call takes in the hypervisor (an express path, the fast path, a
    // lane, the general handlers), it saves the guest's registers or leaves them alone.
    let [a1, a2, a3, a4, a5] = args;
    // SAFETY: every call above reaches only the sandbox (frames, slots, request and
    // output pages), the read-only page, or what is not the guest's; none changes how
    // this code runs (see the module's list of calls left out). The probe declares
    // every register the `syscall` and the hypercall's ABI may change.
    let (ret, changed) =
        unsafe { xmm_probe::across!("syscall", rng.next(), [call.number(), a1, a2, a3, a4, a5]) };
    let ret = ret as i64;
    let name = match (call, args[0]) {
        (Hypercall::MemoryOp, 1) => GIVE_BACK,
        (Hypercall::MemoryOp, 0 | 6) => TAKE,
        _ => call.name(),
    };
    (call, name, ret, changed)
}

/// The reservation calls, by name: giving frames back, taking them (increase or
/// populate). A positive return is the count of extents done.
const GIVE_BACK: &str = "memory_op give back";
const TAKE: &str = "memory_op take";

/// Kinds of call that must have succeeded at least once in a run of a few thousand:
/// hypercalls (and, for the reservations, done at least one extent) and privileged
/// instructions (emulated, not refused).
const MUST_SUCCEED: &[&str] = &[
    "mmu_update",
    "mmuext_op",
    "update_va_mapping",
    "multicall",
    "event_channel_op",
    "sched_op",
    "vcpu_op",
    "set_timer_op",
    "xen_version",
    "memory_op",
    GIVE_BACK,
    TAKE,
    "physdev_op",
    "vm_assist",
    "set_segment_base",
    "stack_switch",
    "console_io",
    "mov from a control register",
    "mov to cr0",
    "mov to cr2",
    "mov to cr3",
    "mov to cr4",
    "wrmsr",
    "rdmsr",
    "invlpg",
    "cli, sti, clts",
    "wbinvd and invd",
    "forced cpuid",
];

/// One privileged instruction with random operands, run through the real #GP path:
/// emulated or refused (a #GP the harness catches), and nothing else (any other
/// exception panics this kernel, which the scenario sees). Returns its name, and
/// whether it was refused.
fn one_trap(s: &Sandbox, rng: &mut Rng) -> (&'static str, bool) {
    use crate::traps::expect_fault;
    let value = match rng.below(4) {
        0 => rng.next(),
        1 => s.frame(rng) << 12,
        2 => rng.below(0x1_0000),
        _ => u64::MAX,
    };
    // Every bit of CR0 but TS (which this kernel's SSE code relies on being clear).
    let cr0_bit = 1u64 << rng.pick(&[0, 1, 2, 4, 5, 16, 18, 29, 30, 31, 40]);
    let any_msr = rng.next() & 0xffff_ffff;
    let msr = rng.pick(&[
        0x10,
        0x1b,
        0x3a,
        0x8b,
        0x174,
        0x175,
        0x176,
        0x1d9,
        0x277,
        0x2ff,
        0xc000_0080,
        0xc000_0081,
        0xc000_0082,
        0xc000_0084,
        0xc000_0100,
        0xc000_0101,
        0xc000_0102,
        0xc000_0103,
        0x4000_0000,
        any_msr,
    ]);
    let any_port = rng.below(0x1_0000);
    let port = rng.pick(&[
        0x20, 0x21, 0x40, 0x43, 0x60, 0x61, 0x64, 0x70, 0x71, 0x80, 0xcf8, 0xcfc, 0x3f8, 0x3fd,
        0xf4, any_port,
    ]) as u16;
    let buffer = s.data_va[2 + rng.below(5) as usize];
    let count = rng.below(4);
    let (name, seen) = match rng.below(16) {
        0 => (
            "mov from a control register",
            match rng.below(4) {
                0 => expect_fault!(13, "mov {v}, cr0"; v = out(reg) _),
                1 => expect_fault!(13, "mov {v}, cr2"; v = out(reg) _),
                2 => expect_fault!(13, "mov {v}, cr3"; v = out(reg) _),
                _ => expect_fault!(13, "mov {v}, cr4"; v = out(reg) _),
            },
        ),
        1 => ("mov to cr0", {
            let cr0: u64;
            // SAFETY: reading CR0 is emulated.
            unsafe { core::arch::asm!("mov {}, cr0", out(reg) cr0) };
            // The value it holds (accepted), or one other bit flipped (refused).
            let flip = if rng.one_in(3) { 0 } else { cr0_bit };
            expect_fault!(13, "mov cr0, {v}"; v = in(reg) (cr0 ^ flip) & !8)
        }),
        2 => (
            "mov to cr2",
            expect_fault!(13, "mov cr2, {v}"; v = in(reg) value),
        ),
        3 => ("mov to cr3", {
            // Its own root (a switch to itself), or what is no page table of its own.
            let other = rng.pick(&[HYPERVISOR_FRAME, MMIO_FRAME, BEYOND_RAM, 0]) << 12;
            let root = match rng.below(3) {
                0 => s.base << 12,
                1 => other,
                _ => rng.next() | (1 << 63),
            };
            expect_fault!(13, "mov cr3, {v}"; v = in(reg) root)
        }),
        4 => ("mov to cr4", {
            let cr4: u64;
            // SAFETY: reading CR4 is emulated.
            unsafe { core::arch::asm!("mov {}, cr4", out(reg) cr4) };
            // The value it holds or with PGE flipped (a global flush), or any.
            let written = match rng.below(3) {
                0 => cr4,
                1 => cr4 ^ (1 << 7),
                _ => value,
            };
            expect_fault!(13, "mov cr4, {v}"; v = in(reg) written)
        }),
        5 => (
            "wrmsr",
            expect_fault!(13, "wrmsr"; in("ecx") msr as u32, in("eax") value as u32,
                in("edx") (value >> 32) as u32),
        ),
        6 => (
            "rdmsr",
            expect_fault!(13, "rdmsr"; in("ecx") msr as u32, out("eax") _, out("edx") _),
        ),
        7 => (
            "in and out",
            match rng.below(6) {
                0 => expect_fault!(13, "out dx, al"; in("dx") port, in("al") value as u8),
                1 => expect_fault!(13, "out dx, eax"; in("dx") port, in("eax") value as u32),
                2 => expect_fault!(13, "in al, dx"; in("dx") port, out("al") _),
                3 => expect_fault!(13, "in ax, dx"; in("dx") port, out("ax") _),
                4 => expect_fault!(13, "out 0xf4, al"; in("al") value as u8),
                _ => expect_fault!(13, "in eax, 0x80"; out("eax") _),
            },
        ),
        8 => (
            "string port I/O",
            if rng.one_in(2) {
                expect_fault!(13, "rep insb"; in("dx") port, inout("rdi") buffer => _,
                    inout("rcx") count => _)
            } else {
                expect_fault!(13, "rep outsb"; in("dx") port, inout("rsi") buffer => _,
                    inout("rcx") count => _)
            },
        ),
        9 => (
            "invlpg",
            expect_fault!(13, "invlpg [{a}]"; a = in(reg) value),
        ),
        10 => ("descriptor tables", {
            let table = [value, value];
            match rng.below(4) {
                0 => expect_fault!(13, "lgdt [{t}]"; t = in(reg) table.as_ptr()),
                1 => expect_fault!(13, "lidt [{t}]"; t = in(reg) table.as_ptr()),
                2 => expect_fault!(13, "ltr {v:x}"; v = in(reg) value),
                _ => expect_fault!(13, "lldt {v:x}"; v = in(reg) value),
            }
        }),
        11 => ("cli, sti, clts", expect_fault!(13, "cli", "sti", "clts")),
        12 => (
            "wbinvd and invd",
            if rng.one_in(2) {
                expect_fault!(13, "wbinvd")
            } else {
                expect_fault!(13, "invd")
            },
        ),
        13 => (
            "int n",
            match rng.below(3) {
                0 => expect_fault!(13, "int 0x21"),
                1 => expect_fault!(13, "int 0x41"),
                _ => expect_fault!(13, "int 0xfe"),
            },
        ),
        14 => (
            "forced cpuid",
            expect_fault!(13, "mov {t}, rbx", "ud2", ".ascii \"xen\"", "cpuid", "mov rbx, {t}";
                t = out(reg) _, inout("eax") value as u32 => _,
                inout("ecx") (value >> 32) as u32 => _, out("edx") _),
        ),
        _ => ("ud2", expect_fault!(6, "ud2")),
    };
    (name, seen.is_some())
}

/// Calls counted by kind: (made, refused, returned a positive value).
struct Counts([(&'static str, u32, u32, u32); 48], usize);

impl Counts {
    fn add(&mut self, call: &'static str, refused: bool, positive: bool) {
        let known = self.0[..self.1].iter().position(|(c, ..)| *c == call);
        let Some(index) = known.or_else(|| {
            // Every kind has a slot (48 for about 40 kinds); one more is not counted.
            let free = (self.1 < self.0.len()).then_some(self.1)?;
            self.0[free] = (call, 0, 0, 0);
            self.1 += 1;
            Some(free)
        }) else {
            return;
        };
        self.0[index].1 += 1;
        self.0[index].2 += u32::from(refused);
        self.0[index].3 += u32::from(positive);
    }

    /// The kinds of [`MUST_SUCCEED`] that never did (the reservations: never did an
    /// extent).
    fn never_succeeded(&self) -> impl Iterator<Item = &'static str> + '_ {
        MUST_SUCCEED.iter().copied().filter(|name| {
            let Some(&(_, made, refused, positive)) =
                self.0[..self.1].iter().find(|(c, ..)| c == name)
            else {
                return true;
            };
            if *name == GIVE_BACK || *name == TAKE {
                positive == 0
            } else {
                made == refused
            }
        })
    }
}

/// Runs the fuzzer; returns the exit code (0 iff every self-test passed).
pub fn run(boot: &Boot, scenario: &Scenario) -> u32 {
    let mut tally = Tally::default();
    let mut line: heapless::String<512> = heapless::String::new();
    let mut sandbox = match Sandbox::new(boot) {
        Ok(sandbox) => sandbox,
        Err(e) => {
            let _ = tally.record(
                &mut line,
                "fuzz_sandbox",
                &Err(failure(format_args!("{e}"))),
            );
            print(&mut line);
            return 1;
        }
    };
    // The seed spread over the state (splitmix64's finaliser): nearby seeds start far
    // apart. Never zero, which xorshift would keep.
    let mut z = scenario.seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    let mut rng = Rng((z ^ (z >> 31)) | 1);
    let mut counts = Counts([("", 0, 0, 0); 48], 0);
    let mut unknown: Outcome = Ok(());
    let mut xmm: Outcome = Ok(());
    for _ in 0..scenario.rounds {
        // One in eight a privileged instruction, the rest hypercalls.
        if rng.one_in(8) {
            let (name, refused) = one_trap(&sandbox, &mut rng);
            counts.add(name, refused, false);
            continue;
        }
        let (call, name, ret, changed) = one_call(&sandbox, &mut rng);
        if let Some(changed) = changed
            && xmm.is_ok()
        {
            xmm = Err(failure(format_args!("{changed} across {}", call.name())));
        }
        if name == TAKE && ret > 0 {
            // The frames it took, which the list now names: to give back later.
            for i in 0..(ret as u64).min(4) {
                let frame = vm::peek(sandbox.data_va[1] + i * 8);
                sandbox.spare[sandbox.next_spare] = frame;
                sandbox.next_spare = (sandbox.next_spare + 1) % sandbox.spare.len();
            }
        }
        let failed = match Errno::from_ret(ret) {
            Err(errno) => {
                if !errno.is_known() && unknown.is_ok() {
                    unknown = Err(failure(format_args!("{} returned {ret}", call.name())));
                }
                true
            }
            Ok(_) => false,
        };
        counts.add(name, failed, ret > 0);
    }
    // Timers the calls may have left running.
    let _ = pv_abi::guest::vcpu_stop_periodic_timer(0);
    let _ = pv_abi::guest::vcpu_stop_singleshot_timer(0);
    let _ = pv_abi::guest::set_timer_op(0);
    for &(call, made, refused, positive) in &counts.0[..counts.1] {
        let _ = write!(
            line,
            "pv-guest: fuzz {call}: {made} made, {refused} refused"
        );
        if call == GIVE_BACK || call == TAKE {
            let _ = write!(line, ", {positive} did an extent or more");
        }
        let _ = writeln!(line);
        print(&mut line);
    }
    let read_only = if sandbox.canary_intact() {
        Ok(())
    } else {
        Err(failure(format_args!("the page mapped read-only changed")))
    };
    let mut missing: heapless::String<256> = heapless::String::new();
    for name in counts.never_succeeded() {
        let _ = write!(
            missing,
            "{}{name}",
            if missing.is_empty() { "" } else { ", " }
        );
    }
    let reach = if missing.is_empty() {
        Ok(())
    } else {
        Err(failure(format_args!("never succeeded: {missing}")))
    };
    for (name, outcome) in [
        ("fuzz_errnos", unknown),
        ("fuzz_xmm", xmm),
        ("fuzz_read_only", read_only),
        ("fuzz_reach", reach),
    ] {
        let _ = tally.record(&mut line, name, &outcome);
        print(&mut line);
    }
    let _ = tally.summary(&mut line);
    print(&mut line);
    tally.exit_code()
}

/// Writes `line` to the console in one call and empties it.
fn print(line: &mut heapless::String<512>) {
    let _ = pv_abi::guest::console_io_write(line.as_bytes());
    line.clear();
}
