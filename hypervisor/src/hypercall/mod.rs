//! Hypercall dispatch: registers decoded in one place (`TrapFrame::hypercall_args`), one
//! `match` on the number, typed handlers that return `Result<u64, Errno>`.
//!
//! Every handler is safe code; guest pointers go only through [`GuestMem`]. An unknown
//! number or sub-operation returns `-ENOSYS`, bad arguments a Xen errno: nothing a guest
//! passes can panic the hypervisor.

mod console;
mod console_read;
mod event_channel;
mod ext;
#[cfg(test)]
mod fuzz_test;
pub mod global;
pub mod iret;
mod memory;
mod mmu;
mod multicall;
mod physdev;
mod sched;
mod sysctl;
mod timer;
mod traps;
mod vcpu_op;
pub mod version;

pub use ext::port_op;
pub use mmu::{
    LightBatch, light_call, light_mmu_update, light_mmu_update_batch, light_mmu_update_continued,
    light_mmuext_op, light_update_va_mapping,
};

use crate::domain::Domain;
use crate::frames::{DomId, FrameTable};
use crate::guestmem::GuestMem;
use crate::mm::PhysMem;
use crate::regs::TrapFrame;
use pv_abi::errno::Errno;
use pv_abi::xen::Hypercall;

pub use console::flush_line as flush_console;

/// Where guest console lines go.
pub trait Console {
    /// Prints one complete line of domain `id`'s console output (already sanitised).
    fn guest_line(&mut self, id: DomId, name: &str, line: &str);
}

/// What a hypercall asks of the scheduler once it returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum After {
    /// Return to the calling vCPU.
    #[default]
    Resume,
    /// Let another vCPU run first (yield, or the domain stopped).
    Reschedule,
    /// The caller broke the ABI in a way that leaves no sane state: destroy it.
    Crash(crate::traps::CrashReason),
}

/// Everything a handler may touch.
pub struct Context<'a, M: PhysMem> {
    /// The calling domain.
    pub domain: &'a mut Domain,
    /// The caller's address space.
    pub guest: GuestMem<'a, M>,
    /// Machine memory (for the caller's own frames, e.g. its shared-info page).
    pub mem: &'a M,
    /// The frame table.
    pub frames: &'a FrameTable<'a>,
    /// TLB and CR3 effects, and the machine facts the paging code checks entries against.
    pub mmu: &'a mut dyn crate::paging::Mmu,
    /// The machine's I/O ports (the port-I/O extension, `ext_op`).
    pub ports: &'a mut dyn crate::traps::emulate::Ports,
    /// The caller's registers (for continuations).
    pub regs: &'a mut TrapFrame,
    /// Console sink.
    pub console: &'a mut dyn Console,
    /// The hypervisor's command line (XENVER_commandline, privileged domains only).
    pub hypervisor_cmdline: &'a str,
    /// Set by handlers that want the scheduler to run.
    pub after: After,
}

impl<M: PhysMem> Context<'_, M> {
    /// The same state seen by the trap path (for hypercalls that deliver events or
    /// switch guest modes).
    pub fn traps(&mut self) -> crate::traps::TrapContext<'_, M> {
        crate::traps::TrapContext {
            domain: self.domain,
            mem: self.mem,
            frames: self.frames,
            regs: self.regs,
            memo: self.guest.memo(),
        }
    }

    /// Points [`guest`](Self::guest) at the caller's kernel address space as it is now.
    /// Every handler that can switch the kernel root (`NEW_BASEPTR` in an `mmuext_op`,
    /// directly or as a `multicall` entry) calls this before the next guest access: the
    /// old root may have lost its last reference with the switch and be a plain page the
    /// guest writes, so an accessor still walking it would reach whatever the guest put
    /// there (a live page table of its own, found by review). Xen's accesses follow CR3
    /// the same way.
    pub fn follow_kernel_root(&mut self) {
        self.guest = self.guest.for_root(self.domain.vcpu.kernel_root);
    }

    /// Arranges for the guest to re-issue the same hypercall with new arguments (Xen's
    /// continuation): `rip` steps back over the 2-byte `syscall`. The returned value is
    /// what the handler must return (the hypercall number, which `rax` must hold again).
    pub fn continuation(&mut self, number: u64, args: [u64; 5]) -> u64 {
        self.regs.rdi = args[0];
        self.regs.rsi = args[1];
        self.regs.rdx = args[2];
        self.regs.r10 = args[3];
        self.regs.r8 = args[4];
        self.regs.rip = self.regs.rip.wrapping_sub(2);
        self.after = After::Reschedule;
        number
    }
}

/// Whether a per-domain hypercall may change what the CPU holds for the calling vCPU:
/// its page-table roots, kernel or user mode, segment bases, virtual CR0.TS or where its
/// `vcpu_info` is. After any other call the machine skips reloading that state (the host
/// test `only_the_listed_calls_change_loaded_vcpu_state` holds every handler to this).
pub fn may_change_loaded_state(decoded: Option<Hypercall>) -> bool {
    matches!(
        decoded,
        Some(
            Hypercall::MmuextOp
                | Hypercall::Iret
                | Hypercall::SetSegmentBase
                | Hypercall::FpuTaskswitch
                | Hypercall::Multicall
        )
    )
}

/// Handles the hypercall in `ctx.regs`, writes the result to `rax`, and says what the
/// scheduler should do next.
pub fn dispatch<M: PhysMem>(ctx: &mut Context<'_, M>) -> After {
    let decoded = Hypercall::try_from(ctx.regs.rax).ok();
    dispatch_decoded(ctx, decoded)
}

/// [`dispatch`] for a caller that decoded the number already (`decoded` is
/// `Hypercall::try_from(ctx.regs.rax).ok()`).
pub fn dispatch_decoded<M: PhysMem>(ctx: &mut Context<'_, M>, decoded: Option<Hypercall>) -> After {
    let call = ctx.regs.hypercall_args();
    let [a1, a2, a3, ..] = call.args;
    let result = match decoded.ok_or(()) {
        Ok(Hypercall::ConsoleIo) => console::console_io(ctx, a1, a2, a3),
        Ok(Hypercall::MmuUpdate) => mmu::mmu_update(ctx, [a1, a2, a3, call.args[3]]),
        Ok(Hypercall::MmuextOp) => mmu::mmuext_op(ctx, [a1, a2, a3, call.args[3]]),
        Ok(Hypercall::UpdateVaMapping) => mmu::update_va_mapping(ctx, a1, a2, a3),
        Ok(Hypercall::MemoryOp) => memory::memory_op(ctx, a1, a2),
        Ok(Hypercall::XenVersion) => version::xen_version(ctx, a1, a2),
        Ok(Hypercall::VmAssist) => ext::vm_assist(ctx, a1, a2),
        Ok(Hypercall::SchedOp) => sched::sched_op(ctx, a1, a2),
        Ok(Hypercall::SetTrapTable) => traps::set_trap_table(ctx, a1),
        Ok(Hypercall::SetCallbacks) => traps::set_callbacks(ctx, a1, a2, a3),
        Ok(Hypercall::CallbackOp) => traps::callback_op(ctx, a1, a2),
        Ok(Hypercall::StackSwitch) => traps::stack_switch(ctx, a1, a2),
        Ok(Hypercall::FpuTaskswitch) => traps::fpu_taskswitch(ctx, a1),
        Ok(Hypercall::SetSegmentBase) => traps::set_segment_base(ctx, a1, a2),
        Ok(Hypercall::Iret) => iret::iret(ctx),
        Ok(Hypercall::PhysdevOp) => physdev::physdev_op(ctx, a1, a2),
        Ok(Hypercall::Arch7) => ext::ext_op(ctx, a1, a2, a3),
        Ok(Hypercall::Multicall) => multicall::multicall(ctx, a1, a2),
        _ => Err(Errno::ENOSYS),
    };
    ctx.regs.rax = match result {
        Ok(value) => value,
        Err(errno) => errno.to_ret() as u64,
    };
    ctx.after
}

#[cfg(test)]
pub(crate) mod tests {
    //! A one-domain world for handler tests: domain 1 with a writable buffer mapped at
    //! [`BUF`] (two pages) and nothing else.
    use super::*;
    use crate::domain::{DomainState, Vcpu};
    use crate::frames::{FrameInfo, Owner};
    use crate::mm::fake::FakeMem;
    use crate::mm::{self, Mfn, pte};

    pub const BUF: u64 = 0x40_0000;

    #[derive(Default)]
    pub struct Lines(pub Vec<String>);

    impl Console for Lines {
        fn guest_line(&mut self, id: DomId, name: &str, line: &str) {
            self.0.push(format!("(d{id} {name}) {line}"));
        }
    }

    /// I/O ports that record writes and answer reads with `port + 1`.
    #[derive(Default)]
    pub struct FakePorts {
        pub outs: Vec<(u16, crate::emulate::OperandSize, u32)>,
        pub ins: Vec<(u16, crate::emulate::OperandSize)>,
    }

    impl crate::traps::emulate::Ports for FakePorts {
        fn port_in(&mut self, port: u16, size: crate::emulate::OperandSize) -> u32 {
            self.ins.push((port, size));
            u32::from(port) + 1
        }
        fn port_out(&mut self, port: u16, size: crate::emulate::OperandSize, value: u32) {
            self.outs.push((port, size, value));
        }
    }

    pub struct World {
        pub mem: FakeMem,
        pub storage: Vec<FrameInfo>,
        pub m2p: Vec<u64>,
        pub mmu: crate::paging::testing::FakeMmu,
        pub ports: FakePorts,
        pub domain: Domain,
        pub lines: Lines,
        pub last_regs: TrapFrame,
        /// The TLB clock the last call's frame table ended with: each call's table
        /// continues it (`FrameTable::resume`), as the machine's one table would.
        pub clock: u8,
    }

    impl World {
        pub fn new() -> World {
            let mem = FakeMem::new(32);
            let mut storage = vec![FrameInfo::default(); 32];
            {
                let mut frames = FrameTable::new(&mut storage);
                frames.add_ram(Mfn(0), Mfn(32));
                for _ in 0..8 {
                    frames.alloc(Owner::Domain(1), &mem).unwrap(); // 0..=7
                }
            }
            // L4 = 1, L3 = 2, L2 = 3, L1 = 4, buffer = 5, 6.
            let flags = pte::PRESENT | pte::WRITABLE | pte::USER;
            for (table, level, next) in [(1u64, 4, 2u64), (2, 3, 3), (3, 2, 4)] {
                mem.write_u64(
                    table * 4096 + mm::table_index(BUF, level) as u64 * 8,
                    (next * 4096) | flags,
                );
            }
            for (i, frame) in [5u64, 6].into_iter().enumerate() {
                let va = BUF + i as u64 * 4096;
                mem.write_u64(
                    4 * 4096 + mm::table_index(va, 1) as u64 * 8,
                    (frame * 4096) | flags,
                );
            }
            let domain = Domain {
                id: 1,
                name: heapless::String::try_from("test").unwrap(),
                state: DomainState::Running,
                privileged: false,
                nr_pages: 8,
                max_pages: 8,
                shared_info: Mfn(7),
                vm_assist: 0,
                exit_code: None,
                console_line: heapless::Vec::new(),
                vcpu: Vcpu::new(TrapFrame::default(), Mfn(1)),
            };
            let mut mmu = crate::paging::testing::FakeMmu::new();
            let clock = {
                // The root pinned (validating the tree) and held as the base pointer, as
                // the builder leaves a domain: the checked accessor walks only live roots.
                let frames = FrameTable::resume(&mut storage, 0);
                let mut paging = crate::paging::Paging::new(&mem, &frames, 1, &mut mmu);
                paging.pin(Mfn(1), 4).unwrap();
                paging
                    .get_page_and_type(Mfn(1), crate::frames::PageType::L4Table)
                    .unwrap();
                frames.tlb_clock()
            };
            World {
                mem,
                storage,
                m2p: vec![crate::frames::INVALID_M2P_ENTRY; 32],
                mmu,
                ports: FakePorts::default(),
                domain,
                lines: Lines::default(),
                last_regs: TrapFrame::default(),
                clock,
            }
        }

        /// Issues hypercall `number` with `args` from a fresh register frame; returns rax
        /// as a signed value. The registers afterwards are in `last_regs`.
        pub fn call(&mut self, number: u64, args: [u64; 5]) -> (i64, After) {
            let regs = TrapFrame {
                rip: 0x1000,
                ..TrapFrame::default()
            };
            self.call_from(regs, number, args)
        }

        /// Like [`World::call`], starting from the vCPU's saved registers.
        pub fn call_with_regs(&mut self, number: u64, args: [u64; 5]) -> (i64, After) {
            let regs = self.domain.vcpu.regs;
            self.call_from(regs, number, args)
        }

        fn call_from(&mut self, mut regs: TrapFrame, number: u64, args: [u64; 5]) -> (i64, After) {
            let mut frames = FrameTable::resume(&mut self.storage, self.clock);
            frames.adopt_m2p(&mut self.m2p);
            regs.rax = number;
            [regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8] = args;
            let mut ctx = Context {
                guest: GuestMem::new(&self.mem, &frames, 1, self.domain.vcpu.kernel_root),
                mem: &self.mem,
                frames: &frames,
                mmu: &mut self.mmu,
                ports: &mut self.ports,
                domain: &mut self.domain,
                regs: &mut regs,
                console: &mut self.lines,
                hypervisor_cmdline: "loglvl=info",
                after: After::Resume,
            };
            let after = dispatch(&mut ctx);
            self.clock = frames.tlb_clock();
            self.last_regs = regs;
            (regs.rax as i64, after)
        }

        /// The paging invariants (`paging::audit`) of domain 1, whose roots are its
        /// vCPU's: what the property tests check after every step.
        pub fn audit(&self) -> Result<(), String> {
            let mut storage = self.storage.clone();
            let frames = FrameTable::resume(&mut storage, self.clock);
            let mut roots = vec![self.domain.vcpu.kernel_root];
            roots.extend(self.domain.vcpu.user_root());
            crate::paging::audit::audit(&self.mem, &frames, 1, &roots, &[])
        }

        pub fn put(&self, offset: u64, bytes: &[u8]) {
            let frame = if offset < 4096 { 5 } else { 6 };
            self.mem.write(frame * 4096 + offset % 4096, bytes);
        }

        pub fn get(&self, offset: u64, len: usize) -> Vec<u8> {
            let mut out = vec![0; len];
            let frame = if offset < 4096 { 5 } else { 6 };
            self.mem.read(frame * 4096 + offset % 4096, &mut out);
            out
        }
    }

    #[test]
    fn unknown_numbers_are_enosys() {
        let mut world = World::new();
        for number in [11, 38, 43, 48, 54, 64, 1000, u64::MAX] {
            assert_eq!(world.call(number, [0; 5]).0, -38, "hypercall {number}");
        }
    }

    /// The hypercall fast path (machine.rs, entry.S) does not save rbx, rbp and r12-r15
    /// before dispatching and does not restore them from the frame: no handler may
    /// read or write them.
    #[test]
    fn handlers_leave_callee_saved_registers_alone() {
        let mut world = World::new();
        let values = [0, 1, 2, 3, 7, BUF, BUF + 0x100, u64::MAX];
        for number in 0..64 {
            for &a in &values {
                for &b in &values {
                    world.domain.state = DomainState::Running;
                    let regs = TrapFrame {
                        rip: 0x1000,
                        rsp: BUF + 0x800,
                        rbx: 0xb0b0,
                        rbp: 0xb1b1,
                        r12: 0x1212,
                        r13: 0x1313,
                        r14: 0x1414,
                        r15: 0x1515,
                        ..TrapFrame::default()
                    };
                    let _ = world.call_from(regs, number, [a, b, a, b, a]);
                    let r = world.last_regs;
                    assert_eq!(
                        [r.rbx, r.rbp, r.r12, r.r13, r.r14, r.r15],
                        [0xb0b0, 0xb1b1, 0x1212, 0x1313, 0x1414, 0x1515],
                        "hypercall {number}({a:#x}, {b:#x}) touched a callee-saved register"
                    );
                }
            }
        }
    }

    /// The machine reloads a vCPU's hardware state after a per-domain call only if
    /// [`may_change_loaded_state`] says the call may change it.
    #[test]
    fn only_the_listed_calls_change_loaded_vcpu_state() {
        fn loaded(domain: &Domain) -> impl PartialEq + core::fmt::Debug + use<> {
            let v = &domain.vcpu;
            (
                v.kernel_root,
                v.user_root(),
                v.kernel_mode,
                (v.segments.fs, v.segments.gs_kernel, v.segments.gs_user),
                v.virtual_ts,
                v.vcpu_info,
            )
        }
        let values = [
            0,
            1,
            2,
            3,
            5,
            7,
            0xffff,
            BUF,
            BUF + 0x100,
            u64::MAX,
            1 << 47,
        ];
        for number in 0..64 {
            if may_change_loaded_state(Hypercall::try_from(number).ok()) {
                continue;
            }
            let mut world = World::new();
            for &a in &values {
                for &b in &values {
                    world.domain.state = DomainState::Running;
                    let before = loaded(&world.domain);
                    let _ = world.call(number, [a, b, a, b, a]);
                    assert_eq!(
                        loaded(&world.domain),
                        before,
                        "hypercall {number}({a:#x}, {b:#x}) changed loaded vCPU state"
                    );
                }
            }
        }
    }

    #[test]
    fn garbage_arguments_never_panic() {
        let mut world = World::new();
        let values = [
            0,
            1,
            2,
            3,
            5,
            10,
            0xffff,
            BUF,
            BUF + 4095,
            u64::MAX,
            1 << 63,
            0xffff_8300_0000_0000,
        ];
        for number in 0..64 {
            for &a in &values {
                for &b in &values {
                    world.domain.state = DomainState::Running;
                    let _ = world.call(number, [a, b, a, b, a]);
                }
            }
        }
    }
}
