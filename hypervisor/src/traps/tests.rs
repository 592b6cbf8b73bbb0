//! Trap-path tests on the one-domain test world of `hypercall::tests` (a writable buffer
//! at `BUF`, two pages, used here as the guest kernel stack; shared info in frame 7).

use super::*;
use crate::frames::FrameTable;
use crate::hypercall::tests::{BUF, World};
use pv_abi::arch_x86_64::TrapInfo;

const STACK_TOP: u64 = BUF + 0x2000;
const HANDLER: u64 = 0xffff_ffff_8000_1000;

fn run<T>(
    world: &mut World,
    f: impl FnOnce(&mut TrapContext<'_, crate::mm::fake::FakeMem>) -> T,
) -> T {
    let frames = FrameTable::adopt(&mut world.storage);
    let mut regs = world.domain.vcpu.regs;
    let result = {
        let mut ctx = TrapContext {
            domain: &mut world.domain,
            mem: &world.mem,
            frames: &frames,
            regs: &mut regs,
        };
        f(&mut ctx)
    };
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
        guest_exception(ctx, vector::PF, 0xdead_b000)
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
    world.domain.vcpu.kernel_sp = STACK_TOP;
    world.domain.vcpu.regs.rsp = 0x7fff_0000;
    assert_eq!(
        run(&mut world, |ctx| guest_exception(ctx, vector::UD, 0)),
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
    let outcome = run(&mut world, |ctx| guest_exception(ctx, vector::DE, 0));
    assert_eq!(
        outcome,
        Outcome::Crash(CrashReason::NoHandler { vector: 0 })
    );

    let mut world = kernel_world();
    world.domain.vcpu.regs.rsp = 0x1000; // unmapped
    let outcome = run(&mut world, |ctx| guest_exception(ctx, vector::UD, 0));
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
    world.domain.vcpu.kernel_sp = STACK_TOP;
    world.domain.vcpu.callbacks.failsafe = HANDLER + 0x200;
    assert_eq!(
        run(&mut world, |ctx| guest_exception(ctx, vector::UD, 0)),
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
    world.domain.vcpu.kernel_sp = STACK_TOP;
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
    world.domain.vcpu.kernel_sp = STACK_TOP;
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
    world.domain.vcpu.kernel_sp = STACK_TOP;
    world.domain.vcpu.regs.rip = 0x40_1002;
    world.domain.vcpu.trap_table[13] = TrapInfo::new(13, 0, false, 0xe033, HANDLER + 0x400);
    world.domain.vcpu.trap_table[0x80] = TrapInfo::new(0x80, 0, false, 0xe033, HANDLER + 0x500);
    assert_eq!(
        run(&mut world, |ctx| guest_exception(ctx, vector::INT80, 0)),
        Outcome::Resume
    );
    assert_eq!(world.domain.vcpu.regs.rip, HANDLER + 0x400, "vDPL 0: #GP");
    let frame = stack_words(&world, world.domain.vcpu.regs.rsp, 4);
    assert_eq!(frame[2..4], [(0x80 << 3) | 2, 0x40_1000]);

    let mut world = kernel_world();
    world.domain.vcpu.kernel_mode = false;
    world.domain.vcpu.kernel_sp = STACK_TOP;
    world.domain.vcpu.regs.rip = 0x40_1002;
    world.domain.vcpu.trap_table[0x80] = TrapInfo::new(0x80, 3, false, 0xe033, HANDLER + 0x500);
    assert_eq!(
        run(&mut world, |ctx| guest_exception(ctx, vector::INT80, 0)),
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
        run(&mut world, |ctx| guest_exception(ctx, vector::NM, 0)),
        Outcome::Resume
    );
    assert!(!world.domain.vcpu.virtual_ts);
    assert_eq!(world.domain.vcpu.regs.rip, HANDLER + 0x600);
}
