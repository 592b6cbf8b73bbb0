//! A small Rust OS built as a Xen x86_64 PV kernel.
//!
//! It runs in ring 3 under our hypervisor or under Xen 4.17 (as dom0 there), prints a
//! banner and its start_info through `console_io`, runs its self-tests, and powers off
//! with an exit code that says whether they all passed.
#![no_std]
#![no_main]

mod bench;
mod bench_events;
mod bench_mm;
mod builder;
mod console;
mod event_tests;
mod events;
mod fuzz;
mod hostile;
mod paravirt;
mod process;
mod secondary;
mod tests;
mod threads;
mod time;
mod traps;
mod vm;
mod workloads;
mod xmm_probe;

use core::fmt::Write;
use core::sync::atomic::{AtomicU32, Ordering};
use pv_abi::arch_x86_64::{FLAT_KERNEL_CS64, FLAT_RING3_SS64, TrapInfo};
use pv_abi::callback::{CALLBACKTYPE_FAILSAFE, CallbackRegister};
use pv_abi::xen::StartInfo;
use pv_guest_kernel::cmdline::{self, CrashMode};
use pv_guest_kernel::selftest::Tally;

core::arch::global_asm!(include_str!("arch/entry.S"), options(att_syntax));
// One block for the trap and event stubs: events.S uses traps.S's frame macro.
core::arch::global_asm!(
    include_str!("arch/traps.S"),
    include_str!("arch/events.S"),
    syscall_marker = const process::SYSCALL_MARKER,
    frame_vector = const core::mem::offset_of!(traps::GuestFrame, vector),
    frame_cs = const core::mem::offset_of!(traps::GuestFrame, cs),
    vgcf_in_syscall = const pv_abi::arch_x86_64::VGCF_IN_SYSCALL,
    options(att_syntax)
);
core::arch::global_asm!(
    include_str!("arch/user.S"),
    syscall_marker = const process::SYSCALL_MARKER,
    options(att_syntax)
);

/// The running kernel's view of how it was started.
pub struct Boot {
    /// The start_info page.
    pub info: &'static StartInfo,
    /// Virtual address of start_info.
    pub info_va: u64,
    /// The stack pointer the hypervisor started us with (top of the boot stack page).
    pub initial_rsp: u64,
}

unsafe extern "C" {
    static boot_rsp: u64;
}

#[unsafe(no_mangle)]
extern "C" fn kmain(start_info: u64) -> ! {
    // SAFETY: the hypervisor passes the address of the start_info page, mapped for us in
    // the boot region for as long as we run; it is never written after boot.
    let info = unsafe { &*(start_info as *const StartInfo) };
    // SAFETY: written once by the entry stub before kmain was called.
    let initial_rsp = unsafe { boot_rsp };
    let boot = Boot {
        info,
        info_va: start_info,
        initial_rsp,
    };
    let mut out = console::Console;

    let banner_tsc = bench::now();
    let _ = writeln!(out, "pv-guest: hello from a Rust PV kernel");
    if !info.has_valid_magic() {
        let _ = writeln!(out, "pv-guest: start_info magic is wrong; stopping");
        power_off(1);
    }
    let line = core::str::from_utf8(info.cmd_line_bytes()).unwrap_or("<not UTF-8>");
    let _ = writeln!(
        out,
        "pv-guest: start_info: {} pages, flags {:#x}, shared_info at {:#x}, pt_base {:#x} ({} frames), mfn_list {:#x}",
        info.nr_pages, info.flags, info.shared_info, info.pt_base, info.nr_pt_frames, info.mfn_list
    );
    let _ = writeln!(out, "pv-guest: command line '{line}'");
    let (options, unknown) = cmdline::parse(line);
    if let Some(word) = unknown {
        let _ = writeln!(
            out,
            "pv-guest: ignoring unknown command-line word '{}'",
            word.0
        );
    }
    if let Some(mode) = options.crash.filter(|m| !m.after_traps()) {
        let _ = writeln!(out, "pv-guest: crashing on purpose ({mode:?})");
        crash(mode, options.bad_address);
    }

    if let Err(error) = traps::install() {
        let _ = writeln!(out, "pv-guest: cannot register the trap table: {error}");
        power_off(1);
    }
    if let Some(mode) = options.crash.filter(|m| !m.after_setup()) {
        let _ = writeln!(
            out,
            "pv-guest: corrupting my own state on purpose ({mode:?})"
        );
        crash(mode, options.bad_address);
    }
    let mode = if options.trap_mode {
        paravirt::Mode::Trap
    } else {
        paravirt::Mode::Paravirt
    };
    let _ = writeln!(out, "pv-guest: privileged operations by {mode:?}");
    if let Err(why) = process::init(&boot, mode) {
        let _ = writeln!(out, "pv-guest: cannot prepare user processes: {why}");
    }
    if let Some(mode) = options.crash {
        let _ = writeln!(
            out,
            "pv-guest: corrupting my own state on purpose ({mode:?})"
        );
        crash(mode, options.bad_address);
    }

    if let Some(role) = options.bench {
        let _ = writeln!(out, "pv-guest: benchmark ({role:?})");
        power_off(bench::run(&boot, role, banner_tsc));
    }

    if options.hostile {
        let _ = writeln!(out, "pv-guest: hostile: attacking the memory model");
        power_off(hostile::run(&boot, &mut out));
    }

    let scenario = pv_guest_kernel::scenario::parse(line);
    if scenario.workload.is_some() {
        power_off(workloads::run(&boot, &scenario));
    }

    let mut tally = Tally::default();
    for (name, case) in tests::CASES.iter().chain(event_tests::CASES) {
        let outcome = case(&boot);
        let _ = tally.record(&mut out, name, &outcome);
    }
    let _ = tally.summary(&mut out);
    power_off(tally.exit_code())
}

/// Reports `code` and shuts down with reason poweroff.
fn power_off(code: u32) -> ! {
    // Our hypervisor records the code; Xen answers -ENOSYS and the console line tells.
    let _ = pv_abi::ext::set_exit_code(code);
    let _ = writeln!(
        console::Console,
        "pv-guest: shutting down: poweroff, code {code}"
    );
    let error = pv_abi::guest::poweroff();
    let _ = writeln!(console::Console, "pv-guest: shutdown failed: {error}");
    loop {
        let _ = pv_abi::guest::sched_yield();
    }
}

/// A stack pointer in the lower half that this kernel never maps, for the crash modes
/// whose frames must fault.
const UNMAPPED_STACK: u64 = 0x7000_0000_1000;
/// Memory of the hypervisor's (36 KiB into Xen's direct map, `DIRECTMAP_VIRT_START`),
/// for `bad-address=hypervisor`: mapped, so a frame written there would not fault.
const HYPERVISOR_STACK: u64 = 0xffff_8300_0000_9000;

/// The bad stack pointer of a crash mode: `unmapped` (the mode's own choice) unless the
/// command line asks for the hypervisor's memory.
fn bad_stack(unmapped: u64, at: cmdline::BadAddress) -> u64 {
    match at {
        cmdline::BadAddress::Unmapped => unmapped,
        cmdline::BadAddress::LowerHalf => UNMAPPED_STACK,
        cmdline::BadAddress::Hypervisor => HYPERVISOR_STACK,
    }
}
/// An address it never maps either, for the access that must fault.
const UNMAPPED_DATA: u64 = 0x7100_0000_0000;

fn crash(mode: CrashMode, at: cmdline::BadAddress) -> ! {
    let unmapped_stack = bad_stack(UNMAPPED_STACK, at);
    let low_stack = bad_stack(0x10, at);
    // SAFETY: each of these faults on purpose, or corrupts this domain's own trap state
    // and then faults; either way the hypervisor must stop this domain, and nothing after
    // the faulting instruction runs.
    unsafe {
        match mode {
            CrashMode::InvalidOpcode => core::arch::asm!("ud2", options(noreturn)),
            CrashMode::PageFault => core::arch::asm!(
                "mov qword ptr [{0}], 1", "ud2", in(reg) 0x10u64, options(noreturn)
            ),
            CrashMode::GeneralProtection => {
                core::arch::asm!("lgdt [rsp]", "ud2", options(noreturn))
            }
            CrashMode::DivideError => core::arch::asm!(
                "xor edx, edx",
                "xor ecx, ecx",
                "div rcx",
                "ud2",
                options(noreturn)
            ),
            CrashMode::BadTrapTable => {
                let bad = TrapInfo::new(6, 0, false, FLAT_KERNEL_CS64, 0x10);
                let table = [bad, TrapInfo { vector: 14, ..bad }, TrapInfo::default()];
                let _ = pv_abi::guest::set_trap_table(&table);
                core::arch::asm!("ud2", options(noreturn))
            }
            CrashMode::BadKernelStack => {
                core::arch::asm!("mov rsp, {}", "ud2", in(reg) low_stack, options(noreturn))
            }
            CrashMode::BadFaultStack => {
                core::arch::asm!(
                    "mov rsp, {stack}",
                    "mov rax, [{fault}]",
                    "ud2",
                    stack = in(reg) unmapped_stack,
                    fault = in(reg) UNMAPPED_DATA,
                    options(noreturn)
                )
            }
            CrashMode::BadIretFrame => {
                // A bare `syscall` (the hypercall page's stub would push rax, r11 and
                // rcx first, and fault on that instead).
                core::arch::asm!(
                    "mov rsp, {stack}",
                    "syscall",
                    "ud2",
                    stack = in(reg) unmapped_stack,
                    in("rax") pv_abi::xen::Hypercall::Iret.number(),
                    options(noreturn)
                )
            }
            CrashMode::BadIretSelector => bad_iret(IretFields {
                cs: HYPERVISOR_CS,
                ..IretFields::plausible()
            }),
            CrashMode::BadIretRip => bad_iret(IretFields {
                rip: 1 << 47,
                ..IretFields::plausible()
            }),
            CrashMode::BadIretSyscallRip => bad_iret(IretFields {
                rip: 1 << 47,
                flags: pv_abi::arch_x86_64::VGCF_IN_SYSCALL,
                ..IretFields::plausible()
            }),
            CrashMode::BadIretStackSelector => bad_iret(IretFields {
                ss: HYPERVISOR_DS,
                ..IretFields::plausible()
            }),
            CrashMode::BadIretRsp => bad_iret(IretFields {
                rsp: Some(1 << 47),
                ..IretFields::plausible()
            }),
            CrashMode::BadSyscallStack | CrashMode::BadUserFaultStack => {
                // `hello` starts with a system call, `compat` with a store to its stack.
                let name = if mode == CrashMode::BadSyscallStack {
                    "hello"
                } else {
                    "compat"
                };
                let _ = pv_abi::guest::stack_switch(FLAT_RING3_SS64.into(), unmapped_stack);
                if let Some(program) = process::programs().into_iter().find(|p| p.0 == name) {
                    let _ = process::run(&[program]);
                }
                core::arch::asm!("ud2", options(noreturn))
            }
            CrashMode::BadCallbacks => {
                let failsafe = CallbackRegister::new(CALLBACKTYPE_FAILSAFE, 0, 0x20);
                let _ = pv_abi::guest::callback_register(&failsafe);
                core::arch::asm!("mov rsp, 0x10", "ud2", options(noreturn))
            }
            CrashMode::BadUpcallStack | CrashMode::BadNullUpcallStack => {
                // An IPI port of ours, unmasked. After a send: the send itself makes the
                // upcall due. After the null hypercall: the event is made due while
                // events are masked, events are unmasked without a hypercall, and
                // xen_version is to deliver it (Linux's xen_force_evtchn_callback).
                // Either call is a bare `syscall` (the hypercall page's stub would push
                // a return address first, and fault on that instead).
                static SEND: AtomicU32 = AtomicU32::new(0);
                let null = mode == CrashMode::BadNullUpcallStack;
                let port = crate::events::init().and_then(|()| pv_abi::guest::evtchn_bind_ipi(0));
                if let Ok(port) = port {
                    SEND.store(port, Ordering::SeqCst);
                    let _ = crate::events::unmask(port);
                    if null {
                        let _ = crate::events::save_and_mask();
                        let _ = pv_abi::guest::evtchn_send(port);
                        crate::events::unmask_quietly();
                    } else {
                        crate::events::unmask_all();
                    }
                }
                let (call, first) = if null {
                    (pv_abi::xen::Hypercall::XenVersion, 0)
                } else {
                    (
                        pv_abi::xen::Hypercall::EventChannelOp,
                        u64::from(pv_abi::event_channel::EVTCHNOP_SEND),
                    )
                };
                core::arch::asm!(
                    "mov rsp, {stack}",
                    "syscall",
                    "ud2",
                    stack = in(reg) low_stack,
                    in("rax") call.number(),
                    in("rdi") first,
                    in("rsi") SEND.as_ptr(),
                    options(noreturn)
                )
            }
        }
    }
}

/// The hypervisor's own ring-0 code selector (Xen's `__HYPERVISOR_CS`, ours too).
const HYPERVISOR_CS: u64 = 0xe008;
/// The hypervisor's own ring-0 data selector (Xen's `__HYPERVISOR_DS`, ours too).
const HYPERVISOR_DS: u64 = 0xe010;

/// What `bad_iret` puts in its `iret_context`.
struct IretFields {
    rip: u64,
    cs: u64,
    /// The stack pointer to return with (`None`: this one).
    rsp: Option<u64>,
    ss: u64,
    /// `iret_context.flags`.
    flags: u64,
}

impl IretFields {
    /// A return within kernel mode (RPL 0, which needs no user page table) to
    /// `power_off`: what each crash mode then spoils one field of.
    fn plausible() -> Self {
        IretFields {
            rip: power_off as fn(u32) -> ! as usize as u64,
            cs: u64::from(FLAT_KERNEL_CS64 & !3),
            rsp: None,
            ss: FLAT_RING3_SS64.into(),
            flags: 0,
        }
    }
}

/// `HYPERVISOR_iret` through a readable `iret_context` (on this stack) with `fields`: a
/// bare `syscall`, whose stack pointer is the context.
fn bad_iret(fields: IretFields) -> ! {
    let stack: u64;
    // SAFETY: reads the stack pointer.
    unsafe { core::arch::asm!("mov {}, rsp", out(reg) stack) };
    let IretFields {
        rip,
        cs,
        rsp,
        ss,
        flags,
    } = fields;
    // rax r11 rcx flags rip cs rflags rsp ss
    let context: [u64; 9] = [0, 0, 0, flags, rip, cs, 0x202, rsp.unwrap_or(stack), ss];
    // SAFETY: the call never returns: the hypervisor must stop this domain.
    unsafe {
        core::arch::asm!(
            "mov rsp, {context}",
            "syscall",
            "ud2",
            context = in(reg) context.as_ptr(),
            in("rax") pv_abi::xen::Hypercall::Iret.number(),
            options(noreturn)
        )
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    let _ = writeln!(console::Console, "pv-guest: PANIC: {info}");
    let _ = pv_abi::guest::crash();
    loop {
        let _ = pv_abi::guest::sched_yield();
    }
}

// The memory primitives and the personality routine the precompiled `core` needs.
use freestanding as _;
