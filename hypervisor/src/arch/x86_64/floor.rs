//! The benchmark's floor: what a bare ring-3 -> ring-0 -> ring-3 round trip costs on
//! this CPU (or this QEMU), with no hypervisor logic at all. Asked for with `bench-floor`
//! on the hypervisor's command line; runs once at boot, before any domain exists.
//!
//! For the measurement the hypervisor maps a snippet of its own (`floor.S`) user-
//! readable at [`USER_VA`], points LSTAR at a lone `sysretq`, the #GP gate at a stub that
//! steps over the faulting one-byte `cli` and `iretq`s, and the #UD gate at the way back
//! to Rust; then it enters the snippet in ring 3 with `iretq`. The snippet times, with
//! `rdtsc`, an empty loop, a loop of `syscall`s and a loop of `cli`s; the floors are the
//! two loops minus the empty one, per iteration. Everything is put back afterwards.
//!
//! What this measures is the hardware's (here QEMU's) share of every hypercall and every
//! trap: mode switch, stack switch, the exception frame, and the return. Xen cannot be
//! measured this way (its entry paths always run its own code), so in the report this
//! is the floor line under both hypervisors' bars. Results are printed as the guest's
//! benchmark lines are: `bench: result case=floor_syscall|floor_gp ...`.

use super::{DIRECTMAP_BASE, cpu, virt_to_phys};
use core::cell::UnsafeCell;

core::arch::global_asm!(include_str!("floor.S"), options(att_syntax));

unsafe extern "C" {
    fn floor_enter(user_rip: u64, iterations: u64, results: *mut [u64; 6]);
    fn floor_exit();
    fn floor_sysret();
    fn floor_gp_skip();
    static floor_user_page: u8;
}

/// Where the snippet is mapped while measuring (L4 slot 0: no guest exists yet).
const USER_VA: u64 = 0x40_0000;
/// Iterations per loop of the snippet.
const ITERATIONS: u64 = 1000;
/// Timed runs of the snippet (after one untimed).
const BATCHES: usize = 21;
/// The vectors borrowed during the measurement.
const VECTOR_UD: usize = 6;
const VECTOR_GP: usize = 13;
/// Entry bits.
const PRESENT: u64 = 1;
const WRITABLE: u64 = 2;
const USER: u64 = 4;

#[repr(C, align(4096))]
struct Table([u64; 512]);

struct Tables(UnsafeCell<[Table; 3]>);
// SAFETY: used only by `report`, once, on CPU 0 at boot.
unsafe impl Sync for Tables {}
static TABLES: Tables = Tables(UnsafeCell::new([
    Table([0; 512]),
    Table([0; 512]),
    Table([0; 512]),
]));

/// Measures the floors and logs one result line for each.
pub fn report() {
    let mut syscall = [0u64; BATCHES];
    let mut gp = [0u64; BATCHES];
    // SAFETY: boot, CPU 0, interrupts off, no guest yet; `borrow_machine` maps only the
    // snippet's page and the stubs never touch anything but their own frames; every
    // change is undone by `return_machine` before anything else runs.
    unsafe {
        let saved = borrow_machine();
        let mut results = [0u64; 6];
        floor_enter(USER_VA, ITERATIONS, &mut results);
        for (sys, gp) in syscall.iter_mut().zip(gp.iter_mut()) {
            floor_enter(USER_VA, ITERATIONS, &mut results);
            let [start, after_empty, after_syscalls, after_clis, ..] = results;
            let empty = after_empty.wrapping_sub(start);
            *sys = after_syscalls
                .wrapping_sub(after_empty)
                .saturating_sub(empty);
            *gp = after_clis
                .wrapping_sub(after_syscalls)
                .saturating_sub(empty);
        }
        return_machine(saved);
    }
    for (name, samples) in [("floor_syscall", &mut syscall), ("floor_gp", &mut gp)] {
        samples.sort_unstable();
        let tenths = |total: u64| total * 10 / ITERATIONS;
        let show = |t: u64| (t / 10, t % 10);
        let (median, min, max) = (
            show(tenths(samples[BATCHES / 2])),
            show(tenths(samples[0])),
            show(tenths(samples[BATCHES - 1])),
        );
        log::info!(
            "bench: result case={name} ops={} median={}.{} min={}.{} max={}.{}",
            BATCHES as u64 * ITERATIONS,
            median.0,
            median.1,
            min.0,
            min.1,
            max.0,
            max.1
        );
    }
}

/// What `borrow_machine` changed.
struct Saved {
    lstar: u64,
    gates: [(usize, [u64; 2]); 2],
}

fn idt() -> *mut [u64; 2] {
    let pointer = x86_64::instructions::tables::sidt();
    pointer.base.as_u64() as *mut [u64; 2]
}

/// The gate `old` with its handler changed to `handler`.
fn with_handler(old: [u64; 2], handler: u64) -> [u64; 2] {
    let keep = old[0] & 0x0000_ffff_ffff_0000;
    let low = keep | (handler & 0xffff) | ((handler >> 16) & 0xffff) << 48;
    [low, handler >> 32]
}

/// Maps the snippet, and points LSTAR, #GP and #UD at the floor stubs.
///
/// # Safety
/// Boot only: CPU 0, interrupts off, no guest; undo with `return_machine`.
unsafe fn borrow_machine() -> Saved {
    // SAFETY: the caller guarantees nothing else uses the tables, the IDT or LSTAR now.
    unsafe {
        let tables = &mut *TABLES.0.get();
        let phys = |table: &Table| virt_to_phys(table as *const Table as u64);
        let code = virt_to_phys(&raw const floor_user_page as u64);
        tables[0].0[0] = phys(&tables[1]) | PRESENT | WRITABLE | USER;
        tables[1].0[((USER_VA >> 21) & 511) as usize] =
            phys(&tables[2]) | PRESENT | WRITABLE | USER;
        tables[2].0[((USER_VA >> 12) & 511) as usize] = code | PRESENT | USER;
        let l4 = (DIRECTMAP_BASE + cpu::read_cr3()) as *mut u64;
        l4.add(((USER_VA >> 39) & 511) as usize)
            .write_volatile(phys(&tables[0]) | PRESENT | WRITABLE | USER);
        cpu::write_cr3(cpu::read_cr3());

        let lstar = x86_64::registers::model_specific::Msr::new(cpu::msr::LSTAR).read();
        cpu::wrmsr(cpu::msr::LSTAR, floor_sysret as *const () as u64);
        let idt = idt();
        let mut gates = [(VECTOR_GP, [0; 2]), (VECTOR_UD, [0; 2])];
        let handlers = [
            floor_gp_skip as *const () as u64,
            floor_exit as *const () as u64,
        ];
        for ((vector, old), handler) in gates.iter_mut().zip(handlers) {
            *old = idt.add(*vector).read_volatile();
            idt.add(*vector).write_volatile(with_handler(*old, handler));
        }
        Saved { lstar, gates }
    }
}

/// Undoes `borrow_machine`.
///
/// # Safety
/// As `borrow_machine`, with its result.
unsafe fn return_machine(saved: Saved) {
    // SAFETY: restoring exactly what `borrow_machine` found.
    unsafe {
        let idt = idt();
        for (vector, gate) in saved.gates {
            idt.add(vector).write_volatile(gate);
        }
        cpu::wrmsr(cpu::msr::LSTAR, saved.lstar);
        let l4 = (DIRECTMAP_BASE + cpu::read_cr3()) as *mut u64;
        l4.add(((USER_VA >> 39) & 511) as usize).write_volatile(0);
        cpu::write_cr3(cpu::read_cr3());
    }
}
