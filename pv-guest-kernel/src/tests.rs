//! The self-tests: each case checks one promise of the PV ABI and runs the same way on
//! our hypervisor and on Xen 4.17.

use crate::Boot;
use crate::traps::{IretSeen, iret_to_next};
use pv_abi::arch_x86_64::{FLAT_KERNEL_CS64, HYPERVISOR_VIRT_START, TrapInfo};
use pv_abi::callback::{CALLBACKTYPE_EVENT, CALLBACKTYPE_FAILSAFE, CallbackRegister};
use pv_abi::errno::Errno;
use pv_abi::guest;
use pv_abi::xen::{DOMID_SELF, Hypercall, VMASST_CMD_ENABLE, VMASST_TYPE_WRITABLE_PAGETABLES};
use pv_guest_kernel::selftest::{Outcome, failure};

/// A test case.
pub type Case = fn(&Boot) -> Outcome;

/// Every case, in the order they run.
pub const CASES: &[(&str, Case)] = &[
    ("start_info", start_info),
    ("boot_page_tables", boot_page_tables),
    ("boot_padding", boot_padding),
    ("hypercall_page", hypercall_page_stubs),
    ("xen_version", xen_version),
    ("capabilities", capabilities),
    ("platform_parameters", platform_parameters),
    ("get_features", get_features),
    ("pagesize", pagesize),
    ("unknown_hypercall", unknown_hypercall),
    ("bad_pointer", bad_pointer),
    ("vm_assist", vm_assist),
    ("trap_table", trap_table),
    ("callbacks", callbacks),
    ("sched_yield", sched_yield),
    ("xmm_preserved", xmm_preserved),
    ("vm_m2p_readable", crate::vm::m2p_readable),
    ("vm_shared_info_mapping", crate::vm::shared_info_mapping),
    ("vm_page_table_lifecycle", crate::vm::page_table_lifecycle),
    ("vm_mmuext_tlb_ops", crate::vm::mmuext_tlb_ops),
    (
        "vm_mmuext_keeps_registers",
        crate::vm::mmuext_keeps_registers,
    ),
    ("trap_breakpoint", trap_breakpoint),
    ("trap_invalid_opcode", trap_invalid_opcode),
    ("trap_divide_error", trap_divide_error),
    ("trap_general_protection", trap_general_protection),
    ("trap_page_fault", trap_page_fault),
    ("trap_registers_survive", trap_registers_survive),
    ("emulated_exit_keeps_r11", emulated_exit_keeps_r11),
    ("emulated_single_step", emulated_single_step),
    ("iret_rcx_r11", iret_rcx_r11),
    ("iret_rflags", iret_rflags),
    ("iret_rpl", crate::vm::iret_rpl_stays_in_kernel),
    ("syscall_at_top_of_lower_half", syscall_at_top_of_lower_half),
    ("emulate_cr0_and_clts", emulate_cr0_and_clts),
    ("emulate_device_not_available", emulate_device_not_available),
    ("emulate_cr3_read", emulate_cr3_read),
    ("emulate_fs_base_msr", emulate_fs_base_msr),
    ("emulate_forced_cpuid", emulate_forced_cpuid),
    ("emulate_wbinvd_invlpg", emulate_wbinvd_invlpg),
    ("emulate_int_n", emulate_int_n),
    ("emulate_hlt", emulate_hlt),
    ("user_processes", user_processes),
    ("user_fpu_preempted", user_fpu_preempted),
    ("user_registers_kept", user_registers_kept),
    ("gs_base_per_mode", gs_base_per_mode),
    ("syscall_args_checked", syscall_args_checked),
    ("virtual_interrupt_flag", virtual_interrupt_flag),
    ("balloon", balloon),
    ("emulate_port_io", emulate_port_io),
    ("emulate_cr4", emulate_cr4),
    ("domain_builder", domain_builder),
];

/// Whether we run on real Xen rather than our hypervisor (whose extraversion ends in
/// "-pvhv"): a few emulated instructions differ, and each test says how.
fn on_xen() -> bool {
    guest::extraversion()
        .map(|v| !v.starts_with(b".0-pvhv"))
        .unwrap_or(true)
}

macro_rules! fail {
    ($($arg:tt)*) => { return Err(failure(format_args!($($arg)*))) };
}

fn expect_errno(what: &str, got: Result<u64, Errno>, want: Errno) -> Outcome {
    match got {
        Err(errno) if errno == want => Ok(()),
        other => fail!("{what}: expected {want}, got {other:?}"),
    }
}

fn start_info(boot: &Boot) -> Outcome {
    let info = boot.info;
    if info.nr_pages < 256 {
        fail!("nr_pages {} too small", info.nr_pages);
    }
    if !info.pt_base.is_multiple_of(4096)
        || !info.mfn_list.is_multiple_of(4096)
        || !boot.info_va.is_multiple_of(4096)
    {
        fail!("unaligned pt_base/mfn_list/start_info");
    }
    if info.nr_pt_frames < 4 {
        fail!("only {} page-table frames", info.nr_pt_frames);
    }
    if info.shared_info == 0 || !info.shared_info.is_multiple_of(4096) {
        fail!("shared_info machine address {:#x}", info.shared_info);
    }
    Ok(())
}

/// Reads a mapped, 8-byte aligned word of our own address space.
fn peek(va: u64) -> u64 {
    // SAFETY: callers pass addresses inside the boot region, which the hypervisor maps
    // (read-only at least) for our whole life.
    unsafe { (va as *const u64).read_volatile() }
}

fn boot_page_tables(boot: &Boot) -> Outcome {
    // The top-level table is mapped at pt_base; its entry for the boot region points to
    // the frame the P2M says, and the page-table pages themselves are read-only.
    let info = boot.info;
    let l4_index = (info.pt_base >> 39) & 511;
    let entry = peek(info.pt_base + l4_index * 8);
    if entry & 1 == 0 {
        fail!("L4 entry {l4_index} for the boot region not present");
    }
    let mfn = (entry & 0x000f_ffff_ffff_f000) >> 12;
    let p2m = info.mfn_list as *const u64;
    // SAFETY: the P2M list holds nr_pages entries and is mapped in the boot region.
    let frames = unsafe { core::slice::from_raw_parts(p2m, info.nr_pages as usize) };
    if !frames.contains(&mfn) {
        fail!("L4 entry points at mfn {mfn:#x}, which is not ours per the P2M");
    }
    if entry & 4 == 0 {
        fail!("L4 entry lacks the user bit");
    }
    Ok(())
}

fn boot_padding(boot: &Boot) -> Outcome {
    // Xen's layout promises at least 512 KiB mapped after the boot stack.
    let mut va = boot.initial_rsp;
    while va < boot.initial_rsp + 512 * 1024 {
        let _ = peek(va);
        va += 4096;
    }
    Ok(())
}

unsafe extern "C" {
    static hypercall_page: [u8; 4096];
}

fn hypercall_page_stubs(_: &Boot) -> Outcome {
    // SAFETY: the hypercall page is part of our image and filled in before we start.
    let page = unsafe { &hypercall_page };
    let stub = &page[17 * 32..17 * 32 + 10];
    // push %rcx; push %r11; mov $17,%eax; syscall
    if stub != [0x51, 0x41, 0x53, 0xb8, 17, 0, 0, 0, 0x0f, 0x05] {
        fail!("xen_version stub is {stub:02x?}");
    }
    Ok(())
}

fn xen_version(_: &Boot) -> Outcome {
    match guest::version() {
        Ok((4, 17)) => Ok(()),
        other => fail!("expected 4.17, got {other:?}"),
    }
}

fn capabilities(_: &Boot) -> Outcome {
    let caps = guest::capabilities().map_err(|e| failure(format_args!("{e}")))?;
    if !caps.starts_with(b"xen-3.0-x86_64") {
        fail!("capabilities lack xen-3.0-x86_64");
    }
    Ok(())
}

fn platform_parameters(_: &Boot) -> Outcome {
    match guest::platform_parameters() {
        Ok(p) if p.virt_start == HYPERVISOR_VIRT_START => Ok(()),
        other => fail!("got {other:?}"),
    }
}

fn get_features(_: &Boot) -> Outcome {
    guest::get_features(0).map_err(|e| failure(format_args!("submap 0: {e}")))?;
    expect_errno(
        "submap 99",
        guest::get_features(99).map(u64::from),
        Errno::EINVAL,
    )
}

fn pagesize(_: &Boot) -> Outcome {
    match guest::pagesize() {
        Ok(4096) => Ok(()),
        other => fail!("got {other:?}"),
    }
}

fn unknown_hypercall(_: &Boot) -> Outcome {
    // Slot arch_5 is unused on Xen 4.17 and on our hypervisor.
    // SAFETY: an unimplemented hypercall touches nothing.
    let ret = unsafe { guest::raw::hypercall0(Hypercall::Arch5) };
    expect_errno("arch_5", Errno::from_ret(ret), Errno::ENOSYS)
}

fn bad_pointer(_: &Boot) -> Outcome {
    for address in [0x1000u64, HYPERVISOR_VIRT_START + 0x300_0000_0000] {
        // SAFETY: the hypervisor must refuse to read through these addresses; no memory
        // of ours is involved.
        let ret = unsafe { guest::raw::hypercall3(Hypercall::ConsoleIo, 0, 16, address) };
        expect_errno(
            "console_io from a bad address",
            Errno::from_ret(ret),
            Errno::EFAULT,
        )?;
    }
    Ok(())
}

fn vm_assist(_: &Boot) -> Outcome {
    guest::vm_assist(VMASST_CMD_ENABLE, VMASST_TYPE_WRITABLE_PAGETABLES)
        .map_err(|e| failure(format_args!("writable_pagetables: {e}")))?;
    expect_errno(
        "assist 6",
        guest::vm_assist(VMASST_CMD_ENABLE, 6),
        Errno::EINVAL,
    )
}

extern "C" fn never_called() {}

fn trap_table(_: &Boot) -> Outcome {
    let handler = never_called as *const () as u64;
    let table = [
        TrapInfo::new(3, 3, false, FLAT_KERNEL_CS64, handler),
        TrapInfo::default(),
    ];
    // SAFETY: vector 3 is only raised by int3, which this kernel never executes; the
    // table is cleared again right after.
    unsafe { guest::set_trap_table(&table) }.map_err(|e| failure(format_args!("set: {e}")))?;
    guest::clear_trap_table().map_err(|e| failure(format_args!("clear: {e}")))?;
    crate::traps::install().map_err(|e| failure(format_args!("reinstall: {e}")))?;
    Ok(())
}

fn callbacks(_: &Boot) -> Outcome {
    let handler = never_called as *const () as u64;
    for kind in [CALLBACKTYPE_EVENT, CALLBACKTYPE_FAILSAFE] {
        let request = CallbackRegister::new(kind, 0, handler);
        // SAFETY: no event is ever bound, and the failsafe callback only runs if loading
        // our own state faults, which a kernel that never changes segments cannot cause.
        unsafe { guest::callback_register(&request) }
            .map_err(|e| failure(format_args!("type {kind}: {e}")))?;
    }
    Ok(())
}

fn sched_yield(_: &Boot) -> Outcome {
    guest::sched_yield()
        .map(|_| ())
        .map_err(|e| failure(format_args!("{e}")))
}

/// Fills all 16 XMM registers and MXCSR (from round `round`'s pattern), runs `$insn`
/// (the instruction under test, with rax, rdi and rsi as given), reads them back and
/// fails the case if any changed (`xmm_probe`).
macro_rules! check_xmm_across {
    ($what:expr, $round:expr, $insn:literal, $rax:expr, $rdi:expr, $rsi:expr) => {{
        // SAFETY: the probe reads its pattern and writes its buffer, declares every
        // register it, the hypercall or the trapped instruction changes; what runs
        // writes at most the buffer its caller passed. MXCSR is set back to its default
        // before the asm ends.
        let (_, changed) = unsafe {
            crate::xmm_probe::across!($insn, $round, [$rax, $rdi, $rsi, 0u64, 0u64, 0u64])
        };
        if let Some(changed) = changed {
            fail!("{changed} across {}", $what);
        }
    }};
}

fn xmm_preserved(_: &Boot) -> Outcome {
    // Fill all 16 XMM registers, enter the hypervisor, and read them back: the
    // hypervisor's own (SSE-using) Rust code must not leak into guest state. The calls
    // are issued here, not through pv-abi, because the test is about the instruction's
    // register contract. Hypercalls: one answered before any hypervisor code could touch
    // SSE, one that copies a string out (the hypervisor's SSE use saves the guest's
    // registers lazily), a yield (another domain, if any, runs in between), and event
    // sends by the hypervisor's send lane (one it finishes: an unbound port drops the
    // notification; one it hands to the general path: a closed port). Then a trapped
    // and emulated instruction (a CR0 read: the exception path).
    let mut extraversion = [0u8; 16];
    let calls: [(u64, u64, u64, &str); 3] = [
        (Hypercall::XenVersion as u64, 0, 0, "xen_version(version)"),
        (
            Hypercall::XenVersion as u64,
            1,
            extraversion.as_mut_ptr() as u64,
            "xen_version(extraversion)",
        ),
        (Hypercall::SchedOp as u64, 0, 0, "sched_op(yield)"),
    ];
    for (round, &(number, cmd, arg, what)) in calls.iter().enumerate() {
        check_xmm_across!(what, round as u64, "syscall", number, cmd, arg);
    }
    let unbound = guest::evtchn_alloc_unbound(DOMID_SELF, DOMID_SELF)
        .map_err(|e| failure(format_args!("alloc_unbound: {e}")))?;
    let closed = guest::evtchn_alloc_unbound(DOMID_SELF, DOMID_SELF)
        .map_err(|e| failure(format_args!("alloc_unbound: {e}")))?;
    guest::evtchn_close(closed).map_err(|e| failure(format_args!("close: {e}")))?;
    let sends = [
        (unbound, "send (unbound port)"),
        (closed, "send (closed port)"),
    ];
    for (round, (port, what)) in sends.into_iter().enumerate() {
        let send = pv_abi::event_channel::EvtchnSend { port };
        check_xmm_across!(
            what,
            3 + round as u64,
            "syscall",
            Hypercall::EventChannelOp as u64,
            u64::from(pv_abi::event_channel::EVTCHNOP_SEND),
            &raw const send as u64
        );
    }
    guest::evtchn_close(unbound).map_err(|e| failure(format_args!("close: {e}")))?;
    check_xmm_across!("a trapped CR0 read", 5, "mov r11, cr0", 0u64, 0u64, 0u64);
    // An exception bounced to this kernel's own handler in kernel mode (a stray
    // breakpoint, which it steps over), whose stub saves no x87/SSE state: neither the
    // hypervisor's bounce and iret nor the handler may touch the registers.
    check_xmm_across!("a breakpoint in kernel mode", 6, "int3", 0u64, 0u64, 0u64);
    Ok(())
}

/// Checks a fault was delivered as `vector` from kernel mode (CS RPL 0 in the frame).
fn delivered(seen: Option<crate::traps::Seen>, vector: u64) -> Outcome {
    match seen {
        Some(s) if s.vector == vector && s.cs & 3 == 0 => Ok(()),
        Some(s) => fail!("got {s:?}"),
        None => fail!("no exception delivered"),
    }
}

fn trap_breakpoint(_: &Boot) -> Outcome {
    // int3 is a trap: the handler sees rip after it, so no recovery address is needed.
    crate::traps::expect(3, 0);
    // SAFETY: int3 traps to our handler, which returns right after it.
    unsafe { core::arch::asm!("int3") };
    delivered(crate::traps::seen(), 3)
}

fn trap_invalid_opcode(_: &Boot) -> Outcome {
    delivered(crate::traps::expect_fault!(6, "ud2"), 6)
}

fn trap_divide_error(_: &Boot) -> Outcome {
    let seen = crate::traps::expect_fault!(0, "xor edx, edx", "xor eax, eax", "div {zero}";
        zero = in(reg) 0u64, out("rax") _, out("rdx") _);
    delivered(seen, 0)
}

fn trap_general_protection(_: &Boot) -> Outcome {
    // Loading an IDT is never allowed to a PV guest: both hypervisors reflect #GP.
    let table = [0u64; 2];
    let seen = crate::traps::expect_fault!(13, "lidt [{t}]"; t = in(reg) table.as_ptr());
    delivered(seen, 13)
}

fn trap_page_fault(_: &Boot) -> Outcome {
    let seen = crate::traps::expect_fault!(14, "mov {v}, qword ptr [{a}]"; a = in(reg) 0x10u64, v = out(reg) _);
    delivered(seen, 14)?;
    let code = seen.map_or(0, |s| s.error_code);
    // Not present (bit 0 clear), a read (bit 1 clear), from guest kernel mode (bit 2 clear).
    if code & 0b111 != 0 {
        fail!("page-fault error code {code:#x}");
    }
    Ok(())
}

/// Runs the faulting instruction `$insn` (which must raise `$vector`) with eleven
/// registers holding marks, and fails unless the fault was delivered and every mark came
/// back.
macro_rules! marks_survive {
    ($vector:expr, $insn:literal) => {{
        let want: [u64; 11] =
            core::array::from_fn(|i| 0x5a00_0000_0000_0000 | (i as u64 + 1) * 0x1_0101);
        let mut r = want;
        let seen = crate::traps::expect_fault!($vector, $insn;
            inout("rax") r[0], inout("rcx") r[1], inout("rdx") r[2], inout("rsi") r[3],
            inout("rdi") r[4], inout("r8") r[5], inout("r9") r[6], inout("r10") r[7],
            inout("r11") r[8], inout("r12") r[9], inout("r13") r[10]);
        delivered(seen, $vector)?;
        if r != want {
            fail!("vector {}: registers changed: {r:x?}, want {want:x?}", $vector);
        }
    }};
}

fn trap_registers_survive(_: &Boot) -> Outcome {
    // The registers the asm can name hold their values across a fault bounced to this
    // kernel and its iret: a #UD (the hypervisor's general trap path) and a not-present
    // #PF in kernel mode (its express path, which leaves for the handler by sysretq on
    // ours, with rcx and r11 in the bounce frame).
    marks_survive!(6, "ud2");
    marks_survive!(14, "cmp byte ptr [0x10], 0");
    Ok(())
}

fn emulated_exit_keeps_r11(_: &Boot) -> Outcome {
    // An emulated instruction with rcx holding the address after it but r11 not the
    // RFLAGS: whatever way the hypervisor leaves (ours: by sysretq only when that leaves
    // what iretq would), r11, rcx and the flags (CF set) come back as they were.
    let (rcx, r11, carry, after): (u64, u64, u8, u64);
    // SAFETY: the CR0 read is emulated; the asm names every register it changes.
    unsafe {
        core::arch::asm!(
            "lea rcx, [rip + 3f]",
            "mov r11, 0x2",
            "stc",
            "mov {cr0}, cr0",
            "3: setc {carry}",
            "lea {after}, [rip + 3b]",
            cr0 = out(reg) _,
            carry = out(reg_byte) carry,
            after = out(reg) after,
            out("rcx") rcx,
            out("r11") r11,
        );
    }
    if (rcx, r11, carry) != (after, 0x2, 1) {
        fail!("rcx {rcx:#x} (want {after:#x}), r11 {r11:#x} (want 0x2), CF {carry}");
    }
    Ok(())
}

fn emulated_single_step(_: &Boot) -> Outcome {
    // With TF set, an emulated instruction is single-stepped as the CPU steps one: the
    // #DB comes right after it, before the next instruction runs (Xen injects it so).
    // Twice: with rcx the address after it and r11 the RFLAGS (a frame a sysretq exit
    // could take: its TF raises the #DB at once) and with rcx elsewhere. Events are
    // masked meanwhile, so that no upcall runs under TF.
    let masked = crate::paravirt::irqs_masked();
    crate::paravirt::irq_disable();
    let mut outcome = Ok(());
    for at_next in [1u64, 0] {
        crate::traps::expect(1, 0);
        let want: u64;
        // SAFETY: TF is set for the emulated CR0 read and, were the #DB late, one `nop`;
        // the harness clears TF in the frame of the #DB it catches.
        unsafe {
            core::arch::asm!(
                "lea rcx, [rip + 4f]",
                "test {at_next}, {at_next}",
                "jz 5f",
                "lea rcx, [rip + 3f]",
                "5: pushfq",
                "pop r11",
                "or r11, 0x100",
                "push r11",
                "popfq",
                "mov {cr0}, cr0",
                "3: nop",
                "4: lea {want}, [rip + 3b]",
                at_next = in(reg) at_next,
                cr0 = out(reg) _,
                want = out(reg) want,
                out("rcx") _,
                out("r11") _,
            );
        }
        match crate::traps::seen() {
            Some(seen) if seen.vector == 1 && seen.rip == want => {}
            Some(seen) => {
                outcome = Err(failure(format_args!(
                    "rcx at the next rip: {}: vector {} at {:#x}, want #DB at {want:#x}",
                    at_next == 1,
                    seen.vector,
                    seen.rip
                )));
            }
            None => {
                outcome = Err(failure(format_args!(
                    "no #DB (rcx at the next rip: {})",
                    at_next == 1
                )))
            }
        }
        if outcome.is_err() {
            break;
        }
    }
    if !masked {
        crate::paravirt::irq_enable();
    }
    outcome
}

fn iret_rcx_r11(_: &Boot) -> Outcome {
    // Without VGCF_in_syscall, rcx and r11 come back from the context.
    let IretSeen { rcx, r11, .. } = iret_to_next(0, 0, 0);
    if (rcx, r11) != (0x1c1c, 0x2b2b) {
        fail!("plain iret: rcx {rcx:#x}, r11 {r11:#x} (want the context's 0x1c1c, 0x2b2b)");
    }
    // With it, the return is a sysret's (Xen returns by sysretq): rcx the return
    // address, r11 the RFLAGS the code runs with.
    let IretSeen {
        rcx,
        r11,
        target,
        rflags,
        ..
    } = iret_to_next(pv_abi::arch_x86_64::VGCF_IN_SYSCALL, 0, 0);
    if rcx != target || r11 != rflags {
        fail!(
            "iret in syscall: rcx {rcx:#x}, r11 {r11:#x} (want the return address {target:#x}, the RFLAGS {rflags:#x})"
        );
    }
    Ok(())
}

fn iret_rflags(_: &Boot) -> Outcome {
    // The RFLAGS a context asks for comes back with what a guest may set (the arithmetic
    // flags, DF, AC, ID) and never with what it may not: IOPL stays 0, or a guest
    // kernel could hand itself (and its processes) the I/O ports; IF stays 1 (the
    // virtual flag is the event mask). Both hypervisors agree on these bits.
    const CF: u64 = 1 << 0;
    const ZF: u64 = 1 << 6;
    const SF: u64 = 1 << 7;
    const DF: u64 = 1 << 10;
    const OF: u64 = 1 << 11;
    const IOPL: u64 = 3 << 12;
    const AC: u64 = 1 << 18;
    const ID: u64 = 1 << 21;
    const IF: u64 = 1 << 9;
    const KEPT: u64 = CF | ZF | SF | DF | OF | AC | ID;
    for (asked, flags) in [
        (IOPL, 0),
        (IOPL | CF | OF, 0),
        (ZF | SF | DF, 0),
        (AC | ID, 0),
        (IOPL | KEPT, pv_abi::arch_x86_64::VGCF_IN_SYSCALL),
    ] {
        let seen = iret_to_next(flags, 0, asked);
        let got = seen.rflags & (KEPT | IOPL | IF);
        let want = (asked & KEPT) | IF;
        if got != want {
            fail!("iret asking RFLAGS {asked:#x} (flags {flags:#x}): got {got:#x}, want {want:#x}");
        }
    }
    Ok(())
}

const CR0_PG: u64 = 1 << 31;
const CR0_TS: u64 = 1 << 3;

fn syscall_at_top_of_lower_half(boot: &Boot) -> Outcome {
    crate::vm::syscall_at_top_of_lower_half(boot, on_xen())
}

fn emulate_cr0_and_clts(_: &Boot) -> Outcome {
    guest::fpu_taskswitch(true).map_err(|e| failure(format_args!("fpu_taskswitch: {e}")))?;
    let (with_ts, without_ts): (u64, u64);
    // SAFETY: reading CR0 and clts are emulated (or fault to our handler, which panics);
    // no FPU instruction runs between setting and clearing TS.
    unsafe {
        core::arch::asm!("mov {a}, cr0", "clts", "mov {b}, cr0", a = out(reg) with_ts, b = out(reg) without_ts);
    }
    if with_ts & (CR0_PG | CR0_TS) != CR0_PG | CR0_TS || without_ts & CR0_TS != 0 {
        fail!("cr0 {with_ts:#x} then {without_ts:#x}");
    }
    Ok(())
}

fn emulate_device_not_available(boot: &Boot) -> Outcome {
    // A machine-to-physical update of our first frame to its own number: a call the
    // hypervisor's fast path takes, and which changes nothing.
    let request = pv_abi::xen::MmuUpdate {
        ptr: (peek(boot.info.mfn_list) << 12) | pv_abi::xen::MMU_MACHPHYS_UPDATE,
        val: 0,
    };
    guest::fpu_taskswitch(true).map_err(|e| failure(format_args!("fpu_taskswitch: {e}")))?;
    // With the virtual TS set, a call by the hypervisor's express path (the null
    // hypercall) and one by its fast path (which write no CR0 of their own: see its
    // entry.S) must leave TS set. Raw `syscall`s, so that no SSE instruction of ours runs
    // before the one that must fault.
    let (version, updated): (u64, u64);
    // SAFETY: xen_version(XENVER_version) reads nothing; the mmu_update reads the one
    // request and writes the M2P entry of our own frame with the value it has. Both
    // clobber only rcx and r11 (and rax, the result).
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") Hypercall::XenVersion as u64 => version,
            in("rdi") 0u64,
            out("rcx") _, out("r11") _,
            options(nostack),
        );
        core::arch::asm!(
            "syscall",
            inlateout("rax") Hypercall::MmuUpdate as u64 => updated,
            in("rdi") &raw const request,
            in("rsi") 1u64,
            in("rdx") 0u64,
            in("r10") u64::from(DOMID_SELF),
            out("rcx") _, out("r11") _,
            options(nostack),
        );
    }
    // The first SSE instruction raises #NM; the hypervisor clears the virtual TS as it
    // delivers it, so the handler itself may use the FPU.
    let seen = crate::traps::expect_fault!(7, "movaps xmm0, xmm1"; out("xmm0") _);
    delivered(seen, 7)?;
    if version as i64 <= 0 || updated != 0 {
        fail!("xen_version {version:#x}, mmu_update {updated:#x} with TS set");
    }
    let cr0: u64;
    // SAFETY: reading CR0 is emulated.
    unsafe { core::arch::asm!("mov {}, cr0", out(reg) cr0) };
    if cr0 & CR0_TS != 0 {
        fail!("TS still set after #NM");
    }
    Ok(())
}

fn emulate_cr3_read(boot: &Boot) -> Outcome {
    let cr3: u64;
    // SAFETY: reading CR3 is emulated: the machine address of our current L4.
    unsafe { core::arch::asm!("mov {}, cr3", out(reg) cr3) };
    let info = boot.info;
    let pfn = (info.pt_base - 0xffff_ffff_8000_0000) / 4096;
    let mfn = peek(info.mfn_list + pfn * 8);
    if cr3 != mfn << 12 {
        fail!("cr3 {cr3:#x}, expected {:#x}", mfn << 12);
    }
    Ok(())
}

fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: rdmsr of an FS/GS base is emulated.
    unsafe { core::arch::asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi) };
    (u64::from(hi) << 32) | u64::from(lo)
}

fn emulate_fs_base_msr(_: &Boot) -> Outcome {
    const FS_BASE: u32 = 0xc000_0100;
    // SAFETY: nothing in this kernel uses FS-relative addressing.
    unsafe { guest::set_segment_base(pv_abi::arch_x86_64::SEGBASE_FS, 0x1234_5000) }
        .map_err(|e| failure(format_args!("set_segment_base: {e}")))?;
    let first = rdmsr(FS_BASE);
    let value: u64 = 0x5678_9000;
    // SAFETY: wrmsr of the FS base is emulated; nothing here uses FS.
    unsafe {
        core::arch::asm!("wrmsr", in("ecx") FS_BASE, in("eax") value as u32, in("edx") (value >> 32) as u32)
    };
    let second = rdmsr(FS_BASE);
    // SAFETY: as above.
    unsafe { guest::set_segment_base(pv_abi::arch_x86_64::SEGBASE_FS, 0) }
        .map_err(|e| failure(format_args!("{e}")))?;
    if (first, second) != (0x1234_5000, value) {
        fail!("read {first:#x} then {second:#x}");
    }
    Ok(())
}

fn emulate_forced_cpuid(_: &Boot) -> Outcome {
    let (b, c, d): (u32, u32, u32);
    // SAFETY: Xen's forced-emulation prefix (ud2; "xen") makes cpuid trap and be
    // answered by the hypervisor's CPUID policy.
    unsafe {
        core::arch::asm!(
            "mov {tmp:r}, rbx", "ud2", ".ascii \"xen\"", "cpuid", "xchg {tmp:r}, rbx",
            tmp = out(reg) b, inout("eax") 0x4000_0000u32 => _, inout("ecx") 0u32 => c, out("edx") d,
        );
    }
    let mut signature = [0u8; 12];
    signature[..4].copy_from_slice(&b.to_le_bytes());
    signature[4..8].copy_from_slice(&c.to_le_bytes());
    signature[8..].copy_from_slice(&d.to_le_bytes());
    if &signature != b"XenVMMXenVMM" {
        fail!("signature {signature:02x?}");
    }
    Ok(())
}

fn emulate_wbinvd_invlpg(_: &Boot) -> Outcome {
    let page = 0xffff_ffff_8000_0000u64;
    // On Xen, invlpg by a PV kernel is not emulated and comes back as #GP; ours flushes.
    crate::traps::expect(13, 0);
    // SAFETY: wbinvd is emulated as a no-op; invlpg is emulated (ours) or faults to our
    // handler, which resumes at label 2 (the recovery address set in the asm).
    unsafe {
        core::arch::asm!(
            "lea {tmp}, [rip + 2f]", "mov [{slot}], {tmp}",
            "wbinvd", "invlpg [{page}]", "2:",
            slot = in(reg) crate::traps::recover_slot(), tmp = out(reg) _, page = in(reg) page,
        );
    }
    match (crate::traps::seen(), on_xen()) {
        (None, _) => Ok(()),
        (Some(s), true) if s.vector == 13 => Ok(()),
        (Some(s), _) => fail!("invlpg raised {s:?}"),
    }
}

fn emulate_int_n(_: &Boot) -> Outcome {
    use crate::traps::KERNEL_SOFT_VECTOR;
    // Vector 64 has virtual DPL 1: the kernel may raise it. Vector 65 has no entry: #GP.
    // Xen trusts the #GP error code to name the vector, and QEMU's TCG reports
    // vector*16+2 instead of vector*8+2, so under QEMU Xen reflects #GP for `int 64`
    // too; our hypervisor decodes the instruction instead.
    if on_xen() {
        let seen = crate::traps::expect_fault!(13, "int 64");
        delivered(seen, 13)?;
    } else {
        crate::traps::expect(u64::from(KERNEL_SOFT_VECTOR), 0);
        // SAFETY: int $64 goes to our handler and returns after the instruction.
        unsafe { core::arch::asm!("int 64") };
        match crate::traps::seen() {
            Some(s) if s.vector == 64 => {}
            other => fail!("int 64 gave {other:?}"),
        }
    }
    let seen = crate::traps::expect_fault!(13, "int 65");
    delivered(seen, 13)
}

fn emulate_hlt(_: &Boot) -> Outcome {
    if on_xen() {
        // Not the same instruction on Xen: its PV emulation has no hlt. Skip.
        return Ok(());
    }
    // An unmodified kernel idles with hlt until an interrupt: ours blocks the vCPU until
    // an event (here our own single-shot timer 2 ms ahead), as SCHEDOP_block does. The
    // timer event needs VIRQ_TIMER bound: the thread world binds it.
    // Events are masked first, as a kernel does `cli; check for work; hlt`: otherwise a
    // timer that fires before the hlt (the vCPU preempted in between) is taken by the
    // upcall and the hlt then waits for an event that never comes. The emulated hlt
    // unmasks events as it blocks, and returns at once if the timer is already pending.
    crate::threads::init().map_err(|e| failure(format_args!("thread world: {e}")))?;
    let was_masked = crate::events::save_and_mask();
    let deadline = crate::time::now_ns() + 2_000_000;
    if let Err(e) = guest::set_timer_op(deadline) {
        crate::events::restore(was_masked);
        fail!("set_timer_op: {e}");
    }
    // SAFETY: hlt is emulated: the vCPU waits for the timer event and continues after it.
    unsafe { core::arch::asm!("hlt") };
    let masked_after = crate::events::save_and_mask();
    crate::events::restore(was_masked);
    if masked_after {
        fail!("hlt left events masked (it must enable them, as SCHEDOP_block does)");
    }
    let now = crate::time::now_ns();
    if now < deadline {
        fail!(
            "hlt returned {} us before the timer",
            (deadline - now) / 1000
        );
    }
    Ok(())
}

/// The kernel's GS base is the kernel's on every entry from a process, whatever the
/// process did to its own: here a process loads %gs (which sets its base to 0 without
/// the hypervisor seeing it) and then asks for the word at the kernel's GS base, with
/// the same base set for both modes. A hypervisor that skips writing a base it believes
/// loaded still (ours did) hands the process's 0 to the kernel, whose read then faults.
fn gs_base_per_mode(_: &Boot) -> Outcome {
    use crate::process::{Ending, GS_MAGIC, gsload_program, run};
    use pv_abi::arch_x86_64::{SEGBASE_GS_KERNEL, SEGBASE_GS_USER};
    static GS_PROBE: u64 = GS_MAGIC;
    let base = &raw const GS_PROBE as u64;
    crate::threads::init().map_err(|e| failure(format_args!("thread world: {e}")))?;
    for which in [SEGBASE_GS_KERNEL, SEGBASE_GS_USER] {
        // SAFETY: nothing in this kernel uses GS-relative addressing but the probe.
        unsafe { guest::set_segment_base(which, base) }
            .map_err(|e| failure(format_args!("set_segment_base({which}): {e}")))?;
    }
    let gs_set = &crate::process::KERNEL_GS_SET;
    gs_set.store(true, core::sync::atomic::Ordering::Relaxed);
    let report = run(&[("gsload", gsload_program())]);
    gs_set.store(false, core::sync::atomic::Ordering::Relaxed);
    for which in [SEGBASE_GS_USER, SEGBASE_GS_KERNEL] {
        // SAFETY: as above.
        unsafe { guest::set_segment_base(which, 0) }
            .map_err(|e| failure(format_args!("set_segment_base({which}, 0): {e}")))?;
    }
    let report = report.map_err(|why| failure(format_args!("{why}")))?;
    match report.endings.first() {
        Some(&(_, _, Ending::Exited(0))) => Ok(()),
        other => fail!("gsload ended {other:?}, expected Exited(0)"),
    }
}

/// A process's system-call arguments cannot make the kernel fault or wrap: the GS word
/// with no kernel GS base is ENOSYS (the kernel used to read at address 0 and crash),
/// and an mmap of nearly 2^64 bytes is ENOMEM (the length used to wrap into a success).
/// Both found by review.
fn syscall_args_checked(_: &Boot) -> Outcome {
    use crate::process::{Ending, hostileargs_program, run};
    crate::threads::init().map_err(|e| failure(format_args!("thread world: {e}")))?;
    let report = run(&[("hostileargs", hostileargs_program())])
        .map_err(|why| failure(format_args!("{why}")))?;
    match report.endings.first() {
        Some(&(_, _, Ending::Exited(0))) => Ok(()),
        other => fail!("hostileargs ended {other:?}, expected Exited(0)"),
    }
}

fn user_processes(_: &Boot) -> Outcome {
    use crate::process::{Ending, programs, run};
    let [hello, divzero, badaccess, sleeper, spin, compat] = programs();
    // The spinner never makes a system call: the others finish only because the timer
    // preempts it, and the kernel stops it when its CPU budget is used up.
    crate::threads::init().map_err(|e| failure(format_args!("thread world: {e}")))?;
    let report = run(&[
        hello, spin, hello, hello, divzero, badaccess, sleeper, compat,
    ])
    .map_err(|why| failure(format_args!("{why}")))?;
    // A far jump to the 32-bit code selector, then `syscall`: Xen runs it and makes the
    // system call from compatibility mode a #UD (no syscall32 callback is registered);
    // ours refuses the segment (#GP). Ours used to leave a usable one there with CSTAR
    // 0: ring 0 then ran at address 0 on the process's stack, and the machine stopped.
    let compat_ending = if on_xen() {
        Ending::Killed { vector: 6 }
    } else {
        Ending::Killed { vector: 13 }
    };
    let expected = [
        ("hello", Ending::Exited(0)),
        ("spin", Ending::OutOfTime),
        ("hello", Ending::Exited(0)),
        ("hello", Ending::Exited(0)),
        ("divzero", Ending::Killed { vector: 0 }),
        ("badaccess", Ending::Killed { vector: 14 }),
        ("sleeper", Ending::Exited(3)),
        ("compat", compat_ending),
    ];
    if report.endings.len() != expected.len() {
        fail!(
            "{} of {} processes ended",
            report.endings.len(),
            expected.len()
        );
    }
    for ((name, pid, ending), (want_name, want)) in report.endings.iter().zip(expected) {
        if *name != want_name || *ending != want {
            fail!("pid {pid} ({name}) ended {ending:?}, expected {want:?}");
        }
    }
    if report.free_after != report.free_before {
        fail!(
            "frames leaked: {} free before, {} after",
            report.free_before,
            report.free_after
        );
    }
    Ok(())
}

fn user_fpu_preempted(_: &Boot) -> Outcome {
    // Three processes, each with an x87/SSE state of its own, spinning until the timer
    // has preempted each for the others: the event entry saves only MXCSR and the XMM
    // registers, so each process's x87 state must move with the process switch.
    run_preempted(
        &[("fpuspin", crate::process::fpuspin_program()); 3],
        "93: its x87/SSE state changed",
    )
}

fn user_registers_kept(_: &Boot) -> Outcome {
    // Two processes, each checking its registers across a fault, a preemption for the
    // other and two system calls: the kernel's return must give back rcx and r11 from
    // every frame but a system call's (which it returns "in syscall"), on both
    // hypervisors.
    run_preempted(
        &[("regkeep", crate::process::regkeep_program()); 2],
        "41..46: a register changed; see regkeep in arch/user.S",
    )
}

/// Runs `programs`, processes that spin until the timer preempts them, and requires each
/// to exit 0 (`codes` says what another exit code means) and the timer to have switched
/// processes at least once per process: each was preempted for another, or what the
/// programs check across a preemption was not tested.
fn run_preempted(programs: &[(&'static str, &'static [u8])], codes: &str) -> Outcome {
    use crate::process::{Ending, run};
    crate::threads::init().map_err(|e| failure(format_args!("thread world: {e}")))?;
    let count = programs.len();
    let report = run(programs).map_err(|why| failure(format_args!("{why}")))?;
    if report.endings.len() != count {
        fail!("{} of {count} processes ended", report.endings.len());
    }
    for &(_, pid, ending) in report.endings.iter() {
        if ending != Ending::Exited(0) {
            fail!("pid {pid} ended {ending:?}, expected Exited(0) ({codes})");
        }
    }
    if report.preempt_switches < count as u64 {
        fail!(
            "the timer switched processes {} times, expected {count} or more",
            report.preempt_switches
        );
    }
    Ok(())
}

fn virtual_interrupt_flag(_: &Boot) -> Outcome {
    use crate::paravirt::{Mode, irq_disable, irq_enable, irqs_masked, mode};
    let before = irqs_masked();
    irq_disable();
    let masked = irqs_masked();
    irq_enable();
    let unmasked = !irqs_masked();
    if before {
        irq_disable();
    }
    // Xen treats a PV kernel's cli/sti (at virtual IOPL 1) as no-ops: the mask stays.
    let no_op_expected = on_xen() && mode() == Mode::Trap;
    match (masked, unmasked, no_op_expected) {
        (true, true, false) => Ok(()),
        // No-ops: the mask stays whatever it was (Xen starts vCPUs masked).
        (m, u, true) if m == before && u != before => Ok(()),
        _ => fail!(
            "mask after disable {masked}, cleared after enable {unmasked} ({:?} mode)",
            mode()
        ),
    }
}

fn balloon(_: &Boot) -> Outcome {
    let report =
        crate::process::balloon_round_trip::<64>().map_err(|why| failure(format_args!("{why}")))?;
    let [before, deflated, after] = report.reservation;
    if deflated != before - 64 || after != before {
        fail!("reservation {before} -> {deflated} -> {after}, expected a dip of 64 and back");
    }
    Ok(())
}

fn emulate_port_io(boot: &Boot) -> Outcome {
    // Port 0x80 (the POST diagnostic port) is harmless to write.
    let privileged = boot.info.flags & pv_abi::xen::SIF_PRIVILEGED != 0;
    if !privileged {
        // No I/O for an unprivileged domain, whatever its IOPL.
        let _ = guest::physdev_set_iopl(1);
        let seen = crate::traps::expect_fault!(13, "out 0x80, al"; in("al") 0u8);
        let _ = guest::physdev_set_iopl(0);
        return delivered(seen, 13);
    }
    guest::physdev_set_iopl(1).map_err(|e| failure(format_args!("set_iopl: {e}")))?;
    crate::traps::expect(13, 0);
    // SAFETY: port 0x80 is unused by anything we rely on; `out` is emulated for a
    // privileged domain at virtual IOPL 1 (a #GP would reach our handler, which resumes).
    unsafe {
        core::arch::asm!(
            "lea {tmp}, [rip + 2f]", "mov [{slot}], {tmp}", "out 0x80, al", "in al, 0x80", "2:",
            slot = in(reg) crate::traps::recover_slot(), tmp = out(reg) _, inout("al") 0x5au8 => _,
        );
    }
    let seen = crate::traps::seen();
    let _ = guest::physdev_set_iopl(0);
    match seen {
        None => Ok(()),
        Some(s) => fail!("port I/O raised {s:?}"),
    }
}

fn emulate_cr4(_: &Boot) -> Outcome {
    let (before, after): (u64, u64);
    // SAFETY: reading CR4 and writing back the same value are emulated (the write is how
    // a kernel flushes global TLB entries); nothing changes.
    unsafe {
        core::arch::asm!("mov {b}, cr4", "mov cr4, {b}", "mov {a}, cr4", b = out(reg) before, a = out(reg) after);
    }
    const PAE: u64 = 1 << 5;
    if before & PAE == 0 || after != before {
        fail!("cr4 {before:#x} then {after:#x}");
    }
    Ok(())
}

/// The dom0 domain builder (`builder.rs`). On Xen, with this kernel as dom0's initial
/// module: a copy running `bench=pong` is built and started, answers one event, and is
/// shut down. On our hypervisor, whose domains have no initial module: the builder
/// refuses before creating anything.
fn domain_builder(boot: &Boot) -> Outcome {
    use crate::builder::{BuildError, build_copy};
    let built = build_copy(boot, 2048, "bench=pong");
    if !on_xen() {
        return match built {
            Err(BuildError::NoModule) => Ok(()),
            other => fail!("without an initial module: {other:?}"),
        };
    }
    match built {
        Ok(domid) => crate::bench_events::ping_once(domid)
            .map_err(|why| failure(format_args!("domain {domid}: {why}"))),
        Err(e) => fail!("{e}"),
    }
}
