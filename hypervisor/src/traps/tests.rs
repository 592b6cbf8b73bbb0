//! Trap-path tests on the one-domain test world of `hypercall::tests` (a writable buffer
//! at `BUF`, two pages, used here as the guest kernel stack; shared info in frame 7).

use super::emulate::{Hardware, Ports, VIRTUAL_CR0};
use super::*;
use crate::emulate::OperandSize;
use crate::frames::FrameTable;
use crate::hypercall::tests::{BUF, World};
use crate::paging::Mmu;
use crate::paging::testing::FakeMmu;
use pv_abi::arch_x86_64::TrapInfo;

/// Records what emulation asked of the machine.
#[derive(Default)]
struct FakeHardware {
    mmu: FakeMmu,
    outs: Vec<(u16, u32)>,
}

impl Ports for FakeHardware {
    fn port_in(&mut self, port: u16, _: OperandSize) -> u32 {
        u32::from(port) + 1
    }
    fn port_out(&mut self, port: u16, _: OperandSize, value: u32) {
        self.outs.push((port, value));
    }
}

impl Hardware for FakeHardware {
    fn mmu(&mut self) -> &mut dyn Mmu {
        &mut self.mmu
    }
    fn cpuid(&mut self, _: u32, _: u32) -> [u32; 4] {
        [0xffff_ffff; 4]
    }
}

fn exception(world: &mut World, hw: &mut FakeHardware, vector: u64, cr2: u64) -> Outcome {
    run(world, |ctx| guest_exception(ctx, hw, vector, cr2))
}

const STACK_TOP: u64 = BUF + 0x2000;
const HANDLER: u64 = 0xffff_ffff_8000_1000;

fn run<T>(
    world: &mut World,
    f: impl FnOnce(&mut TrapContext<'_, crate::mm::fake::FakeMem>) -> T,
) -> T {
    let frames = FrameTable::resume(&mut world.storage, world.clock);
    let mut regs = world.domain.vcpu.regs;
    let result = {
        let mut ctx = TrapContext {
            domain: &mut world.domain,
            mem: &world.mem,
            frames: &frames,
            regs: &mut regs,
            memo: None,
        };
        f(&mut ctx)
    };
    world.clock = frames.tlb_clock();
    world.domain.vcpu.regs = regs;
    result
}

fn stack_words(world: &World, rsp: u64, n: usize) -> Vec<u64> {
    let bytes = world.get(rsp - BUF, n * 8);
    bytes
        .chunks(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn kernel_world() -> World {
    let mut world = World::new();
    let regs = &mut world.domain.vcpu.regs;
    regs.rip = 0xffff_ffff_8000_5000;
    regs.cs = 0xe033;
    regs.ss = 0xe02b;
    regs.rsp = STACK_TOP - 8;
    regs.rflags = 0x202;
    regs.rcx = 0x1111;
    regs.r11 = 0x2222;
    world.domain.vcpu.trap_table[14] = TrapInfo::new(14, 0, true, 0xe033, HANDLER);
    world.domain.vcpu.trap_table[6] = TrapInfo::new(6, 0, false, 0xe033, HANDLER + 0x100);
    world
}

#[test]
fn exception_in_kernel_mode_pushes_xen_frame() {
    let mut world = kernel_world();
    world.domain.vcpu.regs.error_code = 0x7; // present, write, user (hardware view)
    let outcome = run(&mut world, |ctx| {
        guest_exception(ctx, &mut FakeHardware::default(), vector::PF, 0xdead_b000)
    });
    assert_eq!(outcome, Outcome::Resume);
    let regs = world.domain.vcpu.regs;
    assert_eq!(regs.rip, HANDLER);
    assert_eq!(regs.cs, 0xe033);
    assert_eq!(
        regs.rsp,
        (STACK_TOP - 16) - 8 * 8,
        "16-aligned, then eight words"
    );
    let frame = stack_words(&world, regs.rsp, 8);
    assert_eq!(frame[0..2], [0x1111, 0x2222], "rcx, r11");
    assert_eq!(
        frame[2], 0x3,
        "error code without the user bit in kernel mode"
    );
    assert_eq!(frame[3], 0xffff_ffff_8000_5000, "rip");
    assert_eq!(
        frame[4], 0xe030,
        "CS with RPL 0 tells the guest it was in kernel mode"
    );
    assert_eq!(frame[5] & 0x200, 0x200, "virtual IF was on");
    assert_eq!(frame[6..8], [STACK_TOP - 8, 0xe02b]);
    let info = crate::vcpu_info::VcpuInfoRef::of(&world.mem, &world.domain);
    assert!(info.upcall_mask(), "TI_IF masks events");
    assert_eq!(info.cr2(), 0xdead_b000);
}

#[test]
fn exception_in_user_mode_switches_to_the_kernel_stack() {
    let mut world = kernel_world();
    world.domain.vcpu.kernel_mode = false;
    world.domain.vcpu.set_kernel_sp(STACK_TOP);
    world.domain.vcpu.regs.rsp = 0x7fff_0000;
    assert_eq!(
        run(&mut world, |ctx| guest_exception(
            ctx,
            &mut FakeHardware::default(),
            vector::UD,
            0
        )),
        Outcome::Resume
    );
    assert!(world.domain.vcpu.kernel_mode);
    let regs = world.domain.vcpu.regs;
    assert_eq!(regs.rip, HANDLER + 0x100);
    assert_eq!(regs.rsp, STACK_TOP - 7 * 8);
    let frame = stack_words(&world, regs.rsp, 7);
    assert_eq!(frame[3] & 3, 3, "CS RPL 3: came from user mode");
    assert_eq!(frame[5], 0x7fff_0000, "user rsp");
}

#[test]
fn missing_handler_or_stack_crashes_unless_failsafe() {
    let mut world = kernel_world();
    let outcome = run(&mut world, |ctx| {
        guest_exception(ctx, &mut FakeHardware::default(), vector::DE, 0)
    });
    assert_eq!(
        outcome,
        Outcome::Crash(CrashReason::NoHandler { vector: 0 })
    );

    let mut world = kernel_world();
    world.domain.vcpu.regs.rsp = 0x1000; // unmapped
    let outcome = run(&mut world, |ctx| {
        guest_exception(ctx, &mut FakeHardware::default(), vector::UD, 0)
    });
    assert!(matches!(
        outcome,
        Outcome::Crash(CrashReason::BadKernelStack { vector: 6, .. })
    ));
    assert_eq!(
        world.domain.vcpu.regs.rip, 0xffff_ffff_8000_5000,
        "nothing changed"
    );

    let mut world = kernel_world();
    world.domain.vcpu.regs.rsp = 0x1000;
    world.domain.vcpu.set_kernel_sp(STACK_TOP);
    world.domain.vcpu.callbacks.failsafe = HANDLER + 0x200;
    assert_eq!(
        run(&mut world, |ctx| guest_exception(
            ctx,
            &mut FakeHardware::default(),
            vector::UD,
            0
        )),
        Outcome::Resume
    );
    assert_eq!(world.domain.vcpu.regs.rip, HANDLER + 0x200);
    assert_eq!(
        world.domain.vcpu.regs.rsp,
        STACK_TOP - 11 * 8,
        "failsafe frame has DS..GS"
    );
}

#[test]
fn user_syscall_goes_to_the_callback_or_ud() {
    let mut world = kernel_world();
    world.domain.vcpu.kernel_mode = false;
    world.domain.vcpu.set_kernel_sp(STACK_TOP);
    world.domain.vcpu.regs.rip = 0x40_1002;
    assert_eq!(run(&mut world, user_syscall), Outcome::Resume);
    assert_eq!(
        world.domain.vcpu.regs.rip,
        HANDLER + 0x100,
        "#UD without a callback"
    );
    let frame = stack_words(&world, world.domain.vcpu.regs.rsp, 3);
    assert_eq!(
        frame[2], 0x40_1000,
        "rip rewound to the syscall instruction"
    );

    let mut world = kernel_world();
    world.domain.vcpu.kernel_mode = false;
    world.domain.vcpu.set_kernel_sp(STACK_TOP);
    world.domain.vcpu.callbacks.syscall = HANDLER + 0x300;
    world.domain.vcpu.regs.rip = 0x40_1002;
    assert_eq!(run(&mut world, user_syscall), Outcome::Resume);
    assert_eq!(world.domain.vcpu.regs.rip, HANDLER + 0x300);
    assert!(world.domain.vcpu.kernel_mode);
}

#[test]
fn int80_follows_the_virtual_dpl() {
    let mut world = kernel_world();
    world.domain.vcpu.kernel_mode = false;
    world.domain.vcpu.set_kernel_sp(STACK_TOP);
    world.domain.vcpu.regs.rip = 0x40_1002;
    world.domain.vcpu.trap_table[13] = TrapInfo::new(13, 0, false, 0xe033, HANDLER + 0x400);
    world.domain.vcpu.trap_table[0x80] = TrapInfo::new(0x80, 0, false, 0xe033, HANDLER + 0x500);
    assert_eq!(
        run(&mut world, |ctx| guest_exception(
            ctx,
            &mut FakeHardware::default(),
            vector::INT80,
            0
        )),
        Outcome::Resume
    );
    assert_eq!(world.domain.vcpu.regs.rip, HANDLER + 0x400, "vDPL 0: #GP");
    let frame = stack_words(&world, world.domain.vcpu.regs.rsp, 4);
    assert_eq!(frame[2..4], [(0x80 << 3) | 2, 0x40_1000]);

    let mut world = kernel_world();
    world.domain.vcpu.kernel_mode = false;
    world.domain.vcpu.set_kernel_sp(STACK_TOP);
    world.domain.vcpu.regs.rip = 0x40_1002;
    world.domain.vcpu.trap_table[0x80] = TrapInfo::new(0x80, 3, false, 0xe033, HANDLER + 0x500);
    assert_eq!(
        run(&mut world, |ctx| guest_exception(
            ctx,
            &mut FakeHardware::default(),
            vector::INT80,
            0
        )),
        Outcome::Resume
    );
    assert_eq!(
        world.domain.vcpu.regs.rip,
        HANDLER + 0x500,
        "vDPL 3: delivered"
    );
}

#[test]
fn virtual_ts_turns_nm_into_a_guest_nm_once() {
    let mut world = kernel_world();
    world.domain.vcpu.virtual_ts = true;
    world.domain.vcpu.trap_table[7] = TrapInfo::new(7, 0, false, 0xe033, HANDLER + 0x600);
    assert_eq!(
        run(&mut world, |ctx| guest_exception(
            ctx,
            &mut FakeHardware::default(),
            vector::NM,
            0
        )),
        Outcome::Resume
    );
    assert!(!world.domain.vcpu.virtual_ts);
    assert_eq!(world.domain.vcpu.regs.rip, HANDLER + 0x600);
}

/// Where test code lives (inside the mapped buffer) and where the test stack starts.
const CODE: u64 = BUF + 0x1800;

fn emulating(code: &[u8]) -> World {
    let mut world = kernel_world();
    world.put(CODE - BUF, code);
    world.domain.vcpu.regs.rip = CODE;
    world.domain.vcpu.trap_table[13] = TrapInfo::new(13, 0, false, 0xe033, HANDLER + 0x700);
    world
}

#[test]
fn a_single_stepped_emulated_instruction_traps_right_after_it() {
    // cli with TF set: emulated, then the #DB a single step owes, at the next
    // instruction (not after it has run too, where the resumed TF would raise it).
    let mut world = emulating(&[0xfa, 0x90]);
    world.domain.vcpu.regs.rflags = 0x302; // IF, TF
    world.domain.vcpu.trap_table[1] = TrapInfo::new(1, 0, false, 0xe033, HANDLER + 0x200);
    let mut hw = FakeHardware::default();
    assert_eq!(
        exception(&mut world, &mut hw, vector::GP, 0),
        Outcome::Resume
    );
    assert!(crate::vcpu_info::VcpuInfoRef::of(&world.mem, &world.domain).upcall_mask());
    let regs = world.domain.vcpu.regs;
    assert_eq!(regs.rip, HANDLER + 0x200, "in the #DB handler");
    assert_eq!(regs.rflags & 0x100, 0, "the handler runs without TF");
    let frame = stack_words(&world, regs.rsp, 7);
    assert_eq!(
        frame[2],
        CODE + 1,
        "the trap is after the emulated instruction"
    );
    assert_eq!(frame[4] & 0x100, 0x100, "the interrupted context keeps TF");
    // Single-stepped, hlt delivers the #DB rather than blocking.
    let mut world = emulating(&[0xf4]);
    world.domain.vcpu.regs.rflags = 0x302;
    world.domain.vcpu.trap_table[1] = TrapInfo::new(1, 0, false, 0xe033, HANDLER + 0x200);
    assert_eq!(
        exception(&mut world, &mut hw, vector::GP, 0),
        Outcome::Resume
    );
    assert_eq!(world.domain.vcpu.regs.rip, HANDLER + 0x200);
}

#[test]
fn a_bounce_leaves_rcx_and_r11_as_a_sysret_would() {
    // The guest's rcx and r11 go into the frame; the registers carry the handler's
    // address and RFLAGS, as after Xen's sysretq (so the exit may use one).
    let mut world = kernel_world();
    let outcome = run(&mut world, |ctx| {
        guest_exception(ctx, &mut FakeHardware::default(), vector::UD, 0)
    });
    assert_eq!(outcome, Outcome::Resume);
    let regs = world.domain.vcpu.regs;
    assert_eq!((regs.rcx, regs.r11), (regs.rip, regs.rflags));
    assert_eq!(stack_words(&world, regs.rsp, 2), [0x1111, 0x2222]);
}

#[test]
fn cli_sti_flip_the_virtual_interrupt_flag() {
    let mut world = emulating(&[0xfa, 0xfb]);
    let mut hw = FakeHardware::default();
    assert_eq!(
        exception(&mut world, &mut hw, vector::GP, 0),
        Outcome::Resume
    );
    assert!(crate::vcpu_info::VcpuInfoRef::of(&world.mem, &world.domain).upcall_mask());
    assert_eq!(world.domain.vcpu.regs.rip, CODE + 1);
    assert_eq!(
        exception(&mut world, &mut hw, vector::GP, 0),
        Outcome::Resume
    );
    assert!(!crate::vcpu_info::VcpuInfoRef::of(&world.mem, &world.domain).upcall_mask());
    assert_eq!(world.domain.vcpu.regs.rip, CODE + 2);
}

#[test]
fn control_registers_and_msrs() {
    // mov rax, cr0; mov rbx, cr3; mov cr0, rax (with TS); rdmsr; wrmsr
    let mut world = emulating(&[
        0x0f, 0x20, 0xc0, 0x0f, 0x20, 0xdb, 0x0f, 0x22, 0xc0, 0x0f, 0x32, 0x0f, 0x30,
    ]);
    let mut hw = FakeHardware::default();
    exception(&mut world, &mut hw, vector::GP, 0);
    assert_eq!(world.domain.vcpu.regs.rax, VIRTUAL_CR0);
    exception(&mut world, &mut hw, vector::GP, 0);
    assert_eq!(
        world.domain.vcpu.regs.rbx,
        world.domain.vcpu.kernel_root.addr()
    );
    world.domain.vcpu.regs.rax = VIRTUAL_CR0 | 8;
    exception(&mut world, &mut hw, vector::GP, 0);
    assert!(world.domain.vcpu.virtual_ts, "mov to CR0 may set TS");
    world.domain.vcpu.segments.fs = 0x1234_5678_9abc;
    world.domain.vcpu.regs.rcx = 0xc000_0100;
    exception(&mut world, &mut hw, vector::GP, 0);
    assert_eq!(
        (world.domain.vcpu.regs.rdx, world.domain.vcpu.regs.rax),
        (0x1234, 0x5678_9abc)
    );
    world.domain.vcpu.regs.rcx = 0xc000_0101;
    world.domain.vcpu.regs.rax = 0x4000;
    world.domain.vcpu.regs.rdx = 0;
    exception(&mut world, &mut hw, vector::GP, 0);
    assert_eq!(world.domain.vcpu.segments.gs_kernel, 0x4000);
    assert_eq!(world.domain.vcpu.regs.rip, CODE + 13);
}

#[test]
fn refused_instructions_are_reflected_as_gp() {
    // mov cr0, rax changing PG; wrmsr to an unknown MSR; lgdt [rax]
    for (code, rax, rcx) in [
        (&[0x0f, 0x22, 0xc0][..], 0x33u64, 0u64),
        (&[0x0f, 0x30][..], 0, 0x10),
        (&[0x0f, 0x01, 0x10][..], BUF, 0),
    ] {
        let mut world = emulating(code);
        world.domain.vcpu.regs.rax = rax;
        world.domain.vcpu.regs.rcx = rcx;
        world.domain.vcpu.regs.error_code = 0;
        assert_eq!(
            exception(&mut world, &mut FakeHardware::default(), vector::GP, 0),
            Outcome::Resume
        );
        assert_eq!(
            world.domain.vcpu.regs.rip,
            HANDLER + 0x700,
            "reflected for {code:02x?}"
        );
    }
}

#[test]
fn port_io_needs_privilege_and_iopl_and_spares_our_ports() {
    // out 0x80, al; out dx, al (dx = 0xf4, the debug-exit port); in al, 0x80
    let mut world = emulating(&[0xe6, 0x80, 0xee, 0xe4, 0x80]);
    let mut hw = FakeHardware::default();
    world.domain.vcpu.regs.rax = 0x5a;
    exception(&mut world, &mut hw, vector::GP, 0);
    assert!(hw.outs.is_empty(), "no I/O for an unprivileged domain");
    let mut world = emulating(&[0xe6, 0x80, 0xee, 0xe4, 0x80]);
    world.domain.privileged = true;
    exception(&mut world, &mut hw, vector::GP, 0);
    assert!(hw.outs.is_empty(), "no I/O at virtual IOPL 0");
    let mut world = emulating(&[0xe6, 0x80, 0xee, 0xe4, 0x80]);
    world.domain.privileged = true;
    world.domain.vcpu.iopl = 1;
    world.domain.vcpu.regs.rax = 0x5a;
    world.domain.vcpu.regs.rdx = 0xf4;
    exception(&mut world, &mut hw, vector::GP, 0);
    assert_eq!(hw.outs, [(0x80, 0x5a)]);
    exception(&mut world, &mut hw, vector::GP, 0);
    assert_eq!(
        world.domain.vcpu.regs.rip,
        HANDLER + 0x700,
        "the debug-exit port stays ours"
    );
    assert_eq!(hw.outs.len(), 1);
    let mut world = emulating(&[0xe4, 0x80]);
    world.domain.privileged = true;
    world.domain.vcpu.iopl = 1;
    exception(&mut world, &mut hw, vector::GP, 0);
    assert_eq!(world.domain.vcpu.regs.rax & 0xff, 0x81);
}

#[test]
fn int_n_uses_the_virtual_dpl_and_the_true_error_code() {
    let mut world = emulating(&[0xcd, 0x40]);
    exception(&mut world, &mut FakeHardware::default(), vector::GP, 0);
    assert_eq!(world.domain.vcpu.regs.rip, HANDLER + 0x700);
    let frame = stack_words(&world, world.domain.vcpu.regs.rsp, 4);
    assert_eq!(frame[2..4], [(0x40 << 3) | 2, CODE]);
    let mut world = emulating(&[0xcd, 0x40]);
    world.domain.vcpu.trap_table[0x40] = TrapInfo::new(0x40, 1, false, 0xe033, HANDLER + 0x800);
    exception(&mut world, &mut FakeHardware::default(), vector::GP, 0);
    assert_eq!(world.domain.vcpu.regs.rip, HANDLER + 0x800);
    let frame = stack_words(&world, world.domain.vcpu.regs.rsp, 3);
    assert_eq!(frame[2], CODE + 2, "returns after the int");
}

#[test]
fn forced_cpuid_shows_xen_and_hides_what_we_do_not_virtualize() {
    let forced = [0x0f, 0x0b, 0x78, 0x65, 0x6e, 0x0f, 0xa2];
    let mut world = emulating(&forced);
    world.domain.vcpu.regs.rax = 0x4000_0000;
    exception(&mut world, &mut FakeHardware::default(), vector::UD, 0);
    let r = world.domain.vcpu.regs;
    let signature: Vec<u8> = [r.rbx, r.rcx, r.rdx]
        .iter()
        .flat_map(|v| (*v as u32).to_le_bytes())
        .collect();
    assert_eq!(&signature, b"XenVMMXenVMM");
    assert_eq!(r.rip, CODE + 7);
    let mut world = emulating(&forced);
    world.domain.vcpu.regs.rax = 1;
    world.domain.vcpu.kernel_mode = false; // allowed from user mode too
    exception(&mut world, &mut FakeHardware::default(), vector::UD, 0);
    let ecx = world.domain.vcpu.regs.rcx as u32;
    assert_eq!(ecx & (1 << 31), 1 << 31, "hypervisor bit");
    assert_eq!(
        ecx & ((1 << 5) | (1 << 26) | (1 << 27)),
        0,
        "no VMX, XSAVE, OSXSAVE"
    );
}

#[test]
fn user_mode_privileged_instructions_are_not_emulated() {
    let mut world = emulating(&[0xfa]);
    world.domain.vcpu.kernel_mode = false;
    world.domain.vcpu.set_kernel_sp(STACK_TOP);
    assert_eq!(
        exception(&mut world, &mut FakeHardware::default(), vector::GP, 0),
        Outcome::Resume
    );
    assert_eq!(world.domain.vcpu.regs.rip, HANDLER + 0x700);
    assert!(!crate::vcpu_info::VcpuInfoRef::of(&world.mem, &world.domain).upcall_mask());
}

#[test]
fn garbage_and_truncated_instructions_are_reflected() {
    for code in [&[0x0f][..], &[0x0f, 0xff, 0xff][..], &[0xf0, 0xfa][..]] {
        let mut world = emulating(code);
        // Make the bytes after the code unreadable: put the code at the end of the mapping.
        let at = BUF + 0x2000 - code.len() as u64;
        world.put(at - BUF, code);
        world.domain.vcpu.regs.rip = at;
        assert_eq!(
            exception(&mut world, &mut FakeHardware::default(), vector::GP, 0),
            Outcome::Resume
        );
        assert_eq!(world.domain.vcpu.regs.rip, HANDLER + 0x700, "{code:02x?}");
    }
}

#[test]
fn the_io_bitmap_allows_exactly_its_clear_ports() {
    // out 0x80, al; out 0x81, al -- with a bitmap allowing 0x80 but not 0x81.
    let mut world = emulating(&[0xe6, 0x80, 0xe6, 0x81]);
    world.domain.privileged = true;
    let mut bitmap = [0xffu8; 32];
    bitmap[0x80 / 8] = !1; // port 0x80 clear, 0x81.. set
    world.put(0x400, &bitmap);
    world.domain.vcpu.io_bitmap = (BUF + 0x400, 256);
    let mut hw = FakeHardware::default();
    world.domain.vcpu.regs.rax = 7;
    exception(&mut world, &mut hw, vector::GP, 0);
    assert_eq!(hw.outs, [(0x80, 7)]);
    exception(&mut world, &mut hw, vector::GP, 0);
    assert_eq!(
        world.domain.vcpu.regs.rip,
        HANDLER + 0x700,
        "0x81 is denied"
    );
    assert_eq!(hw.outs.len(), 1);
}

#[test]
fn cr4_writes_may_only_toggle_pge_and_flush() {
    use super::emulate::VIRTUAL_CR4;
    // mov cr4, rax
    let mut world = emulating(&[0x0f, 0x22, 0xe0]);
    let mut hw = FakeHardware::default();
    world.domain.vcpu.regs.rax = VIRTUAL_CR4 & !(1 << 7);
    exception(&mut world, &mut hw, vector::GP, 0);
    assert_eq!(world.domain.vcpu.regs.rip, CODE + 3);
    assert_eq!(hw.mmu.flushes, 1, "toggling PGE flushes the TLB");
    let mut world = emulating(&[0x0f, 0x22, 0xe0]);
    world.domain.vcpu.regs.rax = VIRTUAL_CR4 | (1 << 20); // SMEP
    exception(&mut world, &mut hw, vector::GP, 0);
    assert_eq!(
        world.domain.vcpu.regs.rip,
        HANDLER + 0x700,
        "other bits: #GP"
    );
}

/// Maps the last page of the lower half (0x7fff_ffff_f000) to a fresh frame of the test
/// domain holding `code` at its end, through three fresh tables.
fn map_top_of_lower_half(world: &mut World, code: &[u8]) {
    use crate::mm::{Mfn, table_index};
    const TOP: u64 = 0x7fff_ffff_f000;
    let frames = FrameTable::resume(&mut world.storage, world.clock);
    let [l3, l2, l1, page] = core::array::from_fn(|_| {
        frames
            .alloc(crate::frames::Owner::Domain(1), &world.mem)
            .unwrap()
            .0
    });
    let flags = crate::mm::pte::PRESENT | crate::mm::pte::WRITABLE | crate::mm::pte::USER;
    let l4 = world.domain.vcpu.kernel_root.0;
    for (table, level, next) in [(l4, 4, l3), (l3, 3, l2), (l2, 2, l1), (l1, 1, page)] {
        world.mem.write_u64(
            table * 4096 + table_index(TOP, level) as u64 * 8,
            (next * 4096) | flags,
        );
    }
    world
        .mem
        .write(Mfn(page).addr() + 4096 - code.len() as u64, code);
}

#[test]
fn an_emulated_instruction_at_the_top_of_the_lower_half_raises_gp() {
    // `cli` in the last byte of the lower half: emulated (events masked), but there is
    // no canonical address to go on at, so the guest kernel gets the #GP its next fetch
    // would raise, with that address in the frame; the vCPU never returns there.
    let mut world = emulating(&[]);
    map_top_of_lower_half(&mut world, &[0xfa]);
    world.domain.vcpu.regs.rip = 0x7fff_ffff_ffff;
    world.domain.vcpu.regs.error_code = 0;
    let outcome = exception(&mut world, &mut FakeHardware::default(), vector::GP, 0);
    assert_eq!(outcome, Outcome::Resume);
    let regs = world.domain.vcpu.regs;
    assert_eq!(regs.rip, HANDLER + 0x700, "delivered to the #GP handler");
    // The frame: rcx, r11, error code, then the rip it could not go on at.
    assert_eq!(
        stack_words(&world, regs.rsp, 4),
        [0x1111, 0x2222, 0, 0x8000_0000_0000]
    );
    assert!(crate::vcpu_info::VcpuInfoRef::of(&world.mem, &world.domain).upcall_mask());
}

/// An emulated `hlt` in the last byte of the lower half, with no #GP handler: the #GP
/// its next rip raises cannot be delivered, and the domain is stopped (it used to block,
/// and resume at the non-canonical 0x8000_0000_0000: found by review).
#[test]
fn hlt_at_the_top_of_the_lower_half_without_a_gp_handler_crashes() {
    let mut world = emulating(&[]);
    map_top_of_lower_half(&mut world, &[0xf4]);
    world.domain.vcpu.trap_table[13] = TrapInfo::default();
    world.domain.vcpu.regs.rip = 0x7fff_ffff_ffff;
    world.domain.vcpu.regs.error_code = 0;
    let outcome = exception(&mut world, &mut FakeHardware::default(), vector::GP, 0);
    assert!(matches!(outcome, Outcome::Crash(_)), "{outcome:?}");
}

/// The same `hlt` with a #GP handler: the #GP is delivered and the handler runs (the
/// vCPU does not block first).
#[test]
fn hlt_at_the_top_of_the_lower_half_delivers_the_gp() {
    let mut world = emulating(&[]);
    map_top_of_lower_half(&mut world, &[0xf4]);
    world.domain.vcpu.regs.rip = 0x7fff_ffff_ffff;
    world.domain.vcpu.regs.error_code = 0;
    let outcome = exception(&mut world, &mut FakeHardware::default(), vector::GP, 0);
    assert_eq!(world.domain.vcpu.regs.rip, HANDLER + 0x700);
    assert_eq!(outcome, Outcome::Resume);
}

/// The net on the way out: an outcome that would resume at a non-canonical rip or rsp
/// is a crash; crashes and canonical returns are left alone.
#[test]
fn a_non_canonical_return_is_a_crash() {
    let at = |rip: u64, rsp: u64| TrapFrame {
        rip,
        rsp,
        ..TrapFrame::default()
    };
    for outcome in [Outcome::Resume, Outcome::Yield, Outcome::Block] {
        assert_eq!(outcome.resumable(&at(0x7fff_ffff_f000, 0x1000)), outcome);
        assert_eq!(
            outcome.resumable(&at(0xffff_8000_0000_0000, 0x1000)),
            outcome
        );
        for (rip, rsp) in [(1 << 47, 0x1000), (0x1000, 0x0000_9000_0000_0000)] {
            assert_eq!(
                outcome.resumable(&at(rip, rsp)),
                Outcome::Crash(CrashReason::NonCanonicalReturn { rip, rsp })
            );
        }
    }
    let crash = Outcome::Crash(CrashReason::BadIret);
    assert_eq!(crash.resumable(&at(1 << 47, 0)), crash);
}

/// A process's faulting instruction is fetched through its own page table, as Xen does
/// (it was fetched through its kernel's: found by review): with a user root that maps
/// nothing at rip, the forced CPUID the kernel's table shows there is not emulated but
/// reflected to the #UD handler.
#[test]
fn user_mode_instructions_are_fetched_through_the_user_root() {
    let forced = [0x0f, 0x0b, b'x', b'e', b'n', 0x0f, 0xa2];
    let mut world = emulating(&forced);
    world.domain.vcpu.kernel_mode = false;
    world.domain.vcpu.set_kernel_sp(STACK_TOP);
    let empty = {
        let frames = crate::frames::FrameTable::resume(&mut world.storage, world.clock);
        let mfn = frames
            .alloc(crate::frames::Owner::Domain(1), &world.mem)
            .unwrap();
        crate::paging::Paging::new(&world.mem, &frames, 1, &mut world.mmu)
            .pin(mfn, 4)
            .unwrap();
        mfn
    };
    world.domain.vcpu.set_user_root(Some(empty));
    let outcome = exception(&mut world, &mut FakeHardware::default(), vector::UD, 0);
    assert_eq!(outcome, Outcome::Resume);
    assert_eq!(
        world.domain.vcpu.regs.rip,
        HANDLER + 0x100,
        "reflected, not emulated"
    );
}
