//! The benchmark suite (`bench` or `bench=quick` on the command line): each paravirtual
//! operation next to its trap-and-emulate twin, timed with `rdtsc` in this kernel, one
//! machine-readable line per case, then power off. `cargo xtask bench` runs the same
//! binary on our hypervisor and on Xen 4.17 and builds the report from these lines.
//!
//! The trapping twins are written here as inline assembly (`cli`, `mov cr3`, `out`,
//! `invlpg`, ...): they are the point of the exercise, an unmodified kernel's privileged
//! instructions, and none of them is a hypercall. Hypercalls go through `pv_abi::guest`.
//! Before a twin is timed it is tried once with the fault harness armed: a hypervisor
//! that reflects the fault instead of emulating the instruction gets a `na` line.
//!
//! Lines: `bench: result case=<name> ops=<n> median=<x> min=<y> max=<z>` (per-operation
//! TSC ticks: instructions under `-icount shift=0`), `bench: na case=<name> why=<text>`,
//! `bench: error case=<name> why=<text>`, `bench: info <key>=<value>`, `bench: end ...`.

use crate::Boot;
use crate::bench_mm::{self, Fixture};
use crate::console::Console;
use crate::process;
use core::fmt::Write;
use core::hint::black_box;
use pv_abi::errno::Errno;
use pv_abi::ext::{self, PortWidth};
use pv_abi::guest;
use pv_abi::xen::{
    DOMID_SELF, Hypercall, MmuUpdate, MmuextOp, MulticallEntry, UVMF_INVLPG, UVMF_LOCAL, UVMF_NONE,
    VMASST_CMD_ENABLE, VMASST_TYPE_WRITABLE_PAGETABLES,
};
use pv_guest_kernel::bench_stats::{self as stats, MAX_BATCHES, Plan, Role, Stats, median};

/// Result of one iteration of a case.
type Step = Result<(), &'static str>;

/// The TSC: instructions since QEMU started under `-icount shift=0`, host ticks under TCG.
#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: rdtsc reads a counter; both hypervisors leave CR4.TSD clear for PV guests.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// How many times each kind of case runs at each level.
pub(crate) struct Plans {
    /// Cases that cost one or two hypervisor entries.
    pub small: Plan,
    /// One batch of 64 updates per iteration.
    pub batch64: Plan,
    /// One batch of 512 updates per iteration.
    pub batch512: Plan,
    /// Processes (of `USER_SYSCALLS` system calls each) for the syscall round trip.
    pub processes: usize,
}

impl Plans {
    fn for_role(role: Role) -> Plans {
        match role {
            // >= 10,000 timed operations per case, after warm-up.
            Role::Full | Role::Pong => Plans {
                small: Plan::new(100, 100, 100),
                batch64: Plan::new(4, 100, 2),
                batch512: Plan::new(2, 20, 1),
                processes: 100,
            },
            // A fast look; under -icount the per-operation counts are the same.
            Role::Quick => Plans {
                small: Plan::new(10, 10, 20),
                batch64: Plan::new(2, 10, 1),
                batch512: Plan::new(1, 3, 1),
                processes: 8,
            },
        }
    }
}

/// Runs `op` as `plan` says; returns the batch totals.
fn time(
    plan: Plan,
    mut op: impl FnMut(u32) -> Step,
) -> Result<([u64; MAX_BATCHES], usize), &'static str> {
    let mut pass = 0u32;
    for _ in 0..plan.warmup {
        op(pass)?;
        pass = pass.wrapping_add(1);
    }
    let batches = plan.batches.min(MAX_BATCHES);
    let mut totals = [0u64; MAX_BATCHES];
    for total in totals.iter_mut().take(batches) {
        let start = now();
        for _ in 0..plan.per_batch {
            op(pass)?;
            pass = pass.wrapping_add(1);
        }
        *total = now().wrapping_sub(start);
    }
    Ok((totals, batches))
}

/// Runs the cases and prints their lines.
pub(crate) struct Runner {
    out: Console,
    /// Batch totals of the empty loop, by `per_batch`.
    baselines: heapless::Vec<(u32, u64), 8>,
    errors: u32,
}

impl Runner {
    fn info(&mut self, args: core::fmt::Arguments<'_>) {
        let _ = writeln!(self.out, "bench: info {args}");
    }

    /// The empty loop's median batch total for batches of `per_batch`.
    fn baseline(&mut self, plan: Plan) -> u64 {
        if let Some(&(_, total)) = self.baselines.iter().find(|(n, _)| *n == plan.per_batch) {
            return total;
        }
        let empty = |n: u32| {
            black_box(n);
            Ok(())
        };
        let total = match time(plan, empty) {
            Ok((mut totals, batches)) => median(&mut totals[..batches]),
            Err(_) => 0,
        };
        let _ = self.baselines.push((plan.per_batch, total));
        total
    }

    /// Times `op` (which performs `ops` operations per iteration) and prints its line.
    pub(crate) fn case(&mut self, name: &str, plan: Plan, ops: u64, op: impl FnMut(u32) -> Step) {
        let baseline = self.baseline(plan);
        match time(plan, op) {
            Ok((mut totals, batches)) => {
                let stats = Stats::from_batches(
                    &mut totals[..batches],
                    baseline,
                    u64::from(plan.per_batch) * ops,
                );
                let _ = stats::write_result(&mut self.out, name, &stats);
            }
            Err(why) => self.error(name, why),
        }
    }

    pub(crate) fn not_available(&mut self, name: &str, why: &str) {
        let _ = stats::write_not_available(&mut self.out, name, why);
    }

    pub(crate) fn error(&mut self, name: &str, why: &str) {
        self.errors += 1;
        let _ = stats::write_error(&mut self.out, name, why);
    }

    /// Times a trapping twin if one trial of it shows the hypervisor emulates it.
    fn trap_case(
        &mut self,
        name: &str,
        plan: Plan,
        ops: u64,
        emulated: Option<crate::traps::Seen>,
        op: impl FnMut(u32) -> Step,
    ) {
        match emulated {
            None => self.case(name, plan, ops, op),
            Some(seen) if seen.vector == 13 => self.not_available(
                name,
                "the hypervisor reflects #GP to the guest instead of emulating",
            ),
            Some(_) => self.not_available(name, "the hypervisor reflects the fault to the guest"),
        }
    }
}

/// Whether we run on real Xen (our hypervisor's extraversion starts with ".0-pvhv").
pub(crate) fn on_xen() -> bool {
    guest::extraversion()
        .map(|v| !v.starts_with(b".0-pvhv"))
        .unwrap_or(true)
}

fn hypercall_result<T>(result: Result<T, impl Sized>, what: &'static str) -> Step {
    result.map(|_| ()).map_err(|_| what)
}

/// Runs the suite (or, for `bench=pong`, the ping-pong partner); returns the exit code
/// (0 if no case failed).
pub fn run(boot: &Boot, role: Role, started: u64) -> u32 {
    if role == Role::Pong {
        return crate::bench_events::pong();
    }
    let entered = now();
    let mut runner = Runner {
        out: Console,
        baselines: heapless::Vec::new(),
        errors: 0,
    };
    let xen = on_xen();
    runner.info(format_args!(
        "hypervisor={}",
        if xen { "xen" } else { "ours" }
    ));
    if let (Ok((major, minor)), Ok(extra)) = (guest::version(), guest::extraversion()) {
        let extra = pv_abi::xen::nul_terminated(&extra);
        let extra = core::str::from_utf8(extra).unwrap_or("");
        runner.info(format_args!("version={major}.{minor}{extra}"));
    }
    runner.info(format_args!("role={role:?}"));
    // Under -icount: instructions from QEMU's start to this kernel's first line.
    runner.info(format_args!("tsc_at_banner={started}"));
    runner.info(format_args!("tsc_at_bench={entered}"));

    if guest::vm_assist(VMASST_CMD_ENABLE, VMASST_TYPE_WRITABLE_PAGETABLES).is_err() {
        runner.info(format_args!("writable_pagetables=refused"));
    }
    // Xen emulates cli/sti and port I/O for a PV kernel only at virtual IOPL >= 1; ours
    // needs it for port I/O. Both then let this (privileged) domain reach port 0x80.
    if guest::physdev_set_iopl(1).is_err() {
        runner.info(format_args!("set_iopl=refused"));
    }
    let plans = Plans::for_role(role);
    match bench_mm::setup(boot) {
        Ok(fixture) => {
            cpu_cases(&mut runner, &plans, &fixture);
            page_table_cases(&mut runner, &plans, &fixture, xen);
            if let Err(why) = bench_mm::teardown(&fixture) {
                runner.error("teardown", why);
            }
        }
        Err(why) => runner.error("setup", why),
    }
    io_cases(&mut runner, &plans, xen);
    guest_kernel_cases(&mut runner, &plans);
    crate::bench_events::cases(boot, &mut runner, &plans, xen);
    let _ = writeln!(
        runner.out,
        "bench: end errors={} tsc={}",
        runner.errors,
        now()
    );
    u32::from(runner.errors > 0)
}

// ----- null hypercall, event mask, address-space switch --------------------------------

fn cpu_cases(runner: &mut Runner, plans: &Plans, fixture: &Fixture) {
    let plan = plans.small;
    runner.case("null_hypercall", plan, 1, |_| {
        hypercall_result(guest::version(), "xen_version refused")
    });
    let probe = crate::traps::expect_fault!(13, "mov {r}, cr0"; r = out(reg) _);
    runner.trap_case("cr0_read_trap", plan, 1, probe, |_| {
        // SAFETY: reading CR0 traps and is emulated; it changes nothing.
        unsafe { core::arch::asm!("mov {}, cr0", out(reg) _, options(nostack)) };
        Ok(())
    });

    // What a PV kernel's local_irq_disable / local_irq_enable do: write the mask byte,
    // and after unmasking check for an event that arrived meanwhile.
    let mask = (fixture.vcpu_info + 1) as *mut u8;
    let pending = fixture.vcpu_info as *const u8;
    runner.case("vcpu_mask_unmask", plan, 1, |_| {
        // SAFETY: vcpu_info of vCPU 0 is at the start of the shared-info page, mapped
        // writable by the fixture; evtchn_upcall_pending is byte 0, the mask byte 1.
        unsafe {
            mask.write_volatile(1);
            core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
            mask.write_volatile(0);
            core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
            if pending.read_volatile() != 0 {
                // An event came in while masked: let the hypervisor deliver it.
                let _ = guest::version();
            }
        }
        Ok(())
    });
    let probe = crate::traps::expect_fault!(13, "cli", "sti");
    runner.trap_case("cli_sti_trap", plan, 1, probe, |_| {
        // SAFETY: cli and sti trap and are emulated (ours: the event mask; Xen at IOPL 1:
        // no-ops). No event channel is bound, so nothing is delivered in between.
        unsafe { core::arch::asm!("cli", "sti", options(nostack)) };
        Ok(())
    });

    let root = fixture.root_mfn;
    runner.case("new_baseptr", plan, 1, |_| {
        // SAFETY: switching to the current root changes no mapping (it flushes the TLB).
        let done = unsafe { guest::mmuext_op(&[MmuextOp::new_baseptr(root)], DOMID_SELF) };
        hypercall_result(done, "NEW_BASEPTR refused")
    });
    let cr3 = root << 12;
    let probe = crate::traps::expect_fault!(13, "mov cr3, {r}"; r = in(reg) cr3);
    runner.trap_case("mov_cr3_trap", plan, 1, probe, |_| {
        // SAFETY: loading the current root again traps and is emulated as NEW_BASEPTR.
        unsafe { core::arch::asm!("mov cr3, {}", in(reg) cr3, options(nostack)) };
        Ok(())
    });
}

// ----- page-table updates and TLB ----------------------------------------------------

/// Request and multicall buffers for the batched cases (too big for the stack).
struct Batches {
    mmu: [[MmuUpdate; 512]; 2],
    multicall: [[MulticallEntry; 512]; 2],
}

struct BatchCell(core::cell::UnsafeCell<Batches>);
// SAFETY: one vCPU, and only `page_table_cases` (never reentered) touches the buffers.
unsafe impl Sync for BatchCell {}
static BATCHES: BatchCell = BatchCell(core::cell::UnsafeCell::new(Batches {
    mmu: [[MmuUpdate { ptr: 0, val: 0 }; 512]; 2],
    multicall: [[MulticallEntry::new(Hypercall::UpdateVaMapping, [0; 6]); 512]; 2],
}));

fn page_table_cases(runner: &mut Runner, plans: &Plans, fixture: &Fixture, xen: bool) {
    let plan = plans.small;
    let f = *fixture;
    runner.case("pte_mmu_update", plan, 1, |n| {
        // SAFETY: entry 0 of the scratch table maps a window nothing uses.
        let done = unsafe { guest::mmu_update(&[f.request(0, n)], DOMID_SELF) };
        hypercall_result(done, "mmu_update refused")
    });
    runner.case("pte_update_va_mapping", plan, 1, |n| {
        // SAFETY: as above; the window's first page is flushed from the TLB.
        let done =
            unsafe { guest::update_va_mapping(f.window, f.value(n), UVMF_INVLPG | UVMF_LOCAL) };
        hypercall_result(done, "update_va_mapping refused")
    });
    let store = f.l1_ro_va as *mut u64;
    let first = f.value(0);
    let probe = crate::traps::expect_fault!(14, "mov qword ptr [{p}], {v}"; p = in(reg) store, v = in(reg) first);
    runner.trap_case("pte_store_trap", plan, 1, probe, |n| {
        // SAFETY: the scratch table is mapped read-only: the store faults, and the
        // hypervisor validates and applies it as mmu_update would (writable page tables).
        unsafe { store.write_volatile(f.value(n)) };
        Ok(())
    });

    // SAFETY: the only reference ever made to the buffers (see `BatchCell`).
    let batches = unsafe { &mut *BATCHES.0.get() };
    for (pass, list) in batches.mmu.iter_mut().enumerate() {
        for (index, request) in list.iter_mut().enumerate() {
            *request = f.request(index as u64, pass as u32);
        }
    }
    for (pass, list) in batches.multicall.iter_mut().enumerate() {
        for (index, call) in list.iter_mut().enumerate() {
            let va = f.window + index as u64 * 4096;
            *call = MulticallEntry::new(
                Hypercall::UpdateVaMapping,
                [va, f.value(pass as u32), UVMF_NONE, 0, 0, 0],
            );
        }
    }
    let mmu = &batches.mmu;
    runner.case("pte64_mmu_update", plans.batch64, 64, |n| {
        // SAFETY: entries 0..64 of the scratch table.
        let done = unsafe { guest::mmu_update(&mmu[(n & 1) as usize][..64], DOMID_SELF) };
        match done {
            Ok(64) => Ok(()),
            _ => Err("mmu_update batch refused"),
        }
    });
    runner.case("pte512_mmu_update", plans.batch512, 512, |n| {
        // SAFETY: every entry of the scratch table.
        let done = unsafe { guest::mmu_update(&mmu[(n & 1) as usize], DOMID_SELF) };
        match done {
            Ok(512) => Ok(()),
            _ => Err("mmu_update batch refused"),
        }
    });
    let multicall = &mut batches.multicall;
    runner.case("pte512_multicall", plans.batch512, 512, |n| {
        let list = &mut multicall[(n & 1) as usize];
        // SAFETY: 512 update_va_mapping calls on the scratch window.
        let done = unsafe { guest::multicall(list) };
        match done {
            Ok(_) if list.iter().all(|call| call.result == 0) => Ok(()),
            Ok(_) => Err("a call in the multicall failed"),
            Err(_) => Err("multicall refused"),
        }
    });
    let probe = crate::traps::expect_fault!(14, "mov qword ptr [{p}], {v}"; p = in(reg) store, v = in(reg) first);
    runner.trap_case("pte512_store_trap", plans.batch512, 512, probe, |n| {
        let value = f.value(n);
        for index in 0..512 {
            // SAFETY: as in pte_store_trap, for every entry of the scratch table.
            unsafe { store.add(index).write_volatile(value) };
        }
        Ok(())
    });

    let window = f.window;
    runner.case("invlpg_mmuext", plan, 1, |_| {
        // SAFETY: flushing a TLB entry changes no mapping.
        let done = unsafe { guest::mmuext_op(&[MmuextOp::invlpg_local(window)], DOMID_SELF) };
        hypercall_result(done, "INVLPG_LOCAL refused")
    });
    let probe = crate::traps::expect_fault!(13, "invlpg [{p}]"; p = in(reg) window);
    if xen && probe.is_some() {
        runner.not_available(
            "invlpg_trap",
            "Xen 4.17 does not emulate invlpg for a PV kernel (it reflects #GP)",
        );
    } else {
        runner.trap_case("invlpg_trap", plan, 1, probe, |_| {
            // SAFETY: invlpg traps and is emulated as a TLB flush of one page.
            unsafe { core::arch::asm!("invlpg [{}]", in(reg) window, options(nostack)) };
            Ok(())
        });
    }
}

// ----- port I/O -------------------------------------------------------------------------

/// The POST diagnostic port: harmless to write, owned by neither hypervisor.
const POST_PORT: u16 = 0x80;

fn io_cases(runner: &mut Runner, plans: &Plans, xen: bool) {
    let plan = plans.small;
    // Our extension (`ext_op(EXTOP_PORT_WRITE)`); Xen answers -ENOSYS.
    // SAFETY: a byte to the POST port, which nothing listens to.
    let probe = unsafe { ext::port_write(POST_PORT, PortWidth::Byte, 0) };
    match probe {
        Ok(()) => runner.case("port_out_hypercall", plan, 1, |n| {
            // SAFETY: as above.
            let done = unsafe { ext::port_write(POST_PORT, PortWidth::Byte, n & 0xff) };
            hypercall_result(done, "ext_op port write refused")
        }),
        Err(Errno::ENOSYS) if xen => runner.not_available(
            "port_out_hypercall",
            "Xen's PV ABI has no port-I/O hypercall: a PV kernel's in/out always trap",
        ),
        Err(_) => runner.error("port_out_hypercall", "ext_op port write refused"),
    }
    let probe = crate::traps::expect_fault!(13, "out {p}, al"; p = const POST_PORT, in("al") 0u8);
    runner.trap_case("port_out_trap", plan, 1, probe, |n| {
        // SAFETY: a byte to the POST port: trapped and carried out by the hypervisor for
        // this privileged domain at virtual IOPL 1.
        unsafe {
            core::arch::asm!("out {p}, al", p = const POST_PORT, in("al") n as u8, options(nostack))
        };
        Ok(())
    });
}

// ----- the guest kernel's own round trips ---------------------------------------------

/// System calls each benchmark process makes per timed loop.
const USER_SYSCALLS: u64 = 100;

core::arch::global_asm!(
    r#"
    .section .rodata.bench_user, "a"
    .p2align 4
    .global bench_user_syscalls_start, bench_user_syscalls_end
/* A user program: time {n} getpid() calls with rdtsc, subtract the same loop without
 * the syscall (the least of three timings of it: a timer interrupt, or another process
 * run meanwhile, only adds; saturating at 0), and exit with the difference (the exit
 * code is 64 bits). Position-independent: the kernel copies it to its user code
 * address. */
bench_user_syscalls_start:
    mov $-1, %r14
    mov $3, %ebx
3:  rdtsc
    shl $32, %rdx
    or %rax, %rdx
    mov %rdx, %r13
    mov ${n}, %r12d
1:  mov $2, %eax
    dec %r12d
    jnz 1b
    rdtsc
    shl $32, %rdx
    or %rax, %rdx
    sub %r13, %rdx
    cmp %r14, %rdx
    cmovb %rdx, %r14
    dec %ebx
    jnz 3b
    rdtsc
    shl $32, %rdx
    or %rax, %rdx
    mov %rdx, %r13
    mov ${n}, %r12d
2:  mov $2, %eax
    syscall
    dec %r12d
    jnz 2b
    rdtsc
    shl $32, %rdx
    or %rax, %rdx
    sub %r13, %rdx
    xor %ecx, %ecx
    sub %r14, %rdx
    cmovs %rcx, %rdx             /* an interrupted empty loop must not wrap */
    mov %rdx, %rdi
    mov $1, %eax
    syscall
    ud2
bench_user_syscalls_end:
    .text
"#,
    n = const USER_SYSCALLS,
    options(att_syntax)
);

unsafe extern "C" {
    static bench_user_syscalls_start: u8;
    static bench_user_syscalls_end: u8;
}

fn syscall_program() -> &'static [u8] {
    // SAFETY: the two symbols bracket the program above, in .rodata.
    unsafe {
        let start = &raw const bench_user_syscalls_start;
        let end = &raw const bench_user_syscalls_end;
        core::slice::from_raw_parts(start, end as usize - start as usize)
    }
}

/// Processes run per `process::run` (its process table holds 8).
const PROCESSES_PER_RUN: usize = 8;

fn guest_kernel_cases(runner: &mut Runner, plans: &Plans) {
    // A page fault in the guest kernel, bounced to its handler and back through
    // HYPERVISOR_iret (the handler's fault harness resumes after the access).
    runner.case("pagefault_roundtrip", plans.small, 1, |_| {
        let seen = crate::traps::expect_fault!(14, "mov {v}, qword ptr [{a}]"; a = in(reg) 0x10u64, v = out(reg) _);
        match seen {
            Some(seen) if seen.vector == 14 => Ok(()),
            _ => Err("no page fault was delivered"),
        }
    });

    // The user -> guest kernel -> user round trip of a system call, timed in user mode
    // by the program above (one sample per process).
    let program = ("bench-syscalls", syscall_program());
    let mut totals = [0u64; MAX_BATCHES];
    let wanted = plans.processes.min(MAX_BATCHES);
    let mut got = 0;
    let mut failure = None;
    // The first run warms up (the kernel's process paths, the hypervisor's).
    let mut warm = false;
    while got < wanted && failure.is_none() {
        let count = if warm {
            PROCESSES_PER_RUN.min(wanted - got)
        } else {
            1
        };
        let programs = [program; PROCESSES_PER_RUN];
        match process::run(&programs[..count]) {
            Ok(report) => {
                for &(_, _, ending) in report.endings.iter() {
                    match ending {
                        process::Ending::Exited(total) if warm && got < wanted => {
                            totals[got] = total;
                            got += 1;
                        }
                        process::Ending::Exited(_) => {}
                        process::Ending::Killed { .. } | process::Ending::OutOfTime => {
                            failure = Some("a benchmark process was killed")
                        }
                    }
                }
            }
            Err(why) => failure = Some(why),
        }
        warm = true;
    }
    match failure {
        None => {
            let stats = Stats::from_batches(&mut totals[..got], 0, USER_SYSCALLS);
            let _ = stats::write_result(&mut runner.out, "syscall_roundtrip", &stats);
        }
        Some(why) => runner.error("syscall_roundtrip", why),
    }
}
