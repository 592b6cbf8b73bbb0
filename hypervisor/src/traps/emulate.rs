//! Trap-and-emulate: what an unmodified kernel's privileged instructions mean when a PV
//! guest kernel executes them in ring 3.
//!
//! The instruction faults (#GP, or #UD for Xen's forced-emulation prefix), the hypervisor
//! fetches and decodes it (`crate::emulate`), and if it is one this module understands
//! and the guest may do it, carries out the effect on the *virtual* CPU and steps over
//! it. Everything else is reflected to the guest as the #GP the instruction raised.
//!
//! | instruction | effect |
//! | --- | --- |
//! | `cli` / `sti` | set / clear the vCPU's event mask (its virtual IF) |
//! | `hlt` | wait for an event, as `sched_op(block)` (which also unmasks events) |
//! | `mov` from CR0/CR2/CR3/CR4/CR8 | the virtual value (CR3: the kernel root's machine address) |
//! | `mov` to CR0 (TS only), CR2, CR3, CR4 (PGE only) | `fpu_taskswitch`, CR2, `MMUEXT_NEW_BASEPTR`, TLB flush |
//! | `clts` | clear virtual CR0.TS |
//! | `rdmsr` / `wrmsr` | FS/GS bases (as `set_segment_base`), EFER (read), others #GP |
//! | `in` / `out` | the real port, for a domain allowed it (virtual IOPL >= 1 and an I/O-capable domain) |
//! | `invlpg` | flush that address (`MMUEXT_INVLPG_LOCAL`) |
//! | `wbinvd`, `invd` | nothing (no device caches need it here) |
//! | `int $n` | the guest's handler for n if its virtual DPL allows, else #GP(n*8+2) |
//! | `ud2; .ascii "xen"; cpuid` | CPUID filtered by our policy |
//!
//! `pushf`/`popf` never fault in ring 3 (`popf` silently keeps IF), so a kernel that
//! wants its virtual interrupt flag must use `cli`/`sti` or `vcpu_info` directly.

use super::bounce::rflags;
use super::{Outcome, TrapContext, inject, software_interrupt_allowed, vector};
use crate::domain::Domain;
use crate::emulate::{
    ControlRegister, Decoded, Gpr, Instruction, OperandSize, PortOperand, decode, fetch,
};
use crate::guestmem::GuestMem;
use crate::mm::{Mfn, PhysMem, is_canonical};
use crate::paging::{Mmu, Paging};
use crate::vcpu_info::VcpuInfoRef;

/// The machine's I/O ports, for a trapped `in`/`out` and for the port-I/O extension
/// hypercall (`hypercall::ext`). Callers check [`port_allowed`] first.
pub trait Ports {
    /// Reads an I/O port.
    fn port_in(&mut self, port: u16, size: OperandSize) -> u32;
    /// Writes an I/O port.
    fn port_out(&mut self, port: u16, size: OperandSize, value: u32);
}

/// What emulation needs from the machine besides memory.
pub trait Hardware: Ports {
    /// TLB and CR3 effects (shared with the paging engine).
    fn mmu(&mut self) -> &mut dyn Mmu;
    /// Executes CPUID on the real CPU.
    fn cpuid(&mut self, leaf: u32, subleaf: u32) -> [u32; 4];
}

/// CR0 as a PV guest sees it: PE, MP, ET, NE, WP, AM, PG (+ TS when set virtually).
pub const VIRTUAL_CR0: u64 = 0x8005_0033;
const CR0_TS: u64 = 1 << 3;
/// CR4 as a PV guest sees it: PAE, PGE, OSFXSR, OSXMMEXCPT.
pub const VIRTUAL_CR4: u64 = (1 << 5) | (1 << 7) | (1 << 9) | (1 << 10);
const CR4_PGE: u64 = 1 << 7;
/// EFER as a PV guest sees it: SCE, LME, LMA, NXE.
pub const VIRTUAL_EFER: u64 = (1 << 0) | (1 << 8) | (1 << 10) | (1 << 11);

const MSR_EFER: u32 = 0xc000_0080;
const MSR_FS_BASE: u32 = 0xc000_0100;
const MSR_GS_BASE: u32 = 0xc000_0101;
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;

/// Ports the hypervisor keeps for itself whatever a domain is allowed: the PICs, the PIT
/// and its gate (0x61, also the NMI status), the PCI configuration window (with the reset
/// control at 0xcf9), COM1, QEMU's debug-exit device, the CMOS/RTC (whose index port's
/// bit 7 masks NMIs; the hypervisor reads the clock), the ELCR, and the ways to reset the
/// machine (the keyboard controller's command port, the fast-reset port 0x92). A
/// privileged domain is a driver domain, not the machine's owner: none of these is its
/// to touch (the review of 2026-12-05 found the last four reachable).
const HYPERVISOR_PORTS: [(u16, u16); 11] = [
    (0x20, 0x21),
    (0x40, 0x43),
    (0x61, 0x61),
    (0x64, 0x64),
    (0x70, 0x71),
    (0x92, 0x92),
    (0xa0, 0xa1),
    (0x4d0, 0x4d1),
    (0xcf8, 0xcff),
    (0x3f8, 0x3ff),
    (0xf4, 0xf7),
];

/// [`HYPERVISOR_PORTS`] as a bitmap of the first 4096 ports (all of them lie there), so
/// that a check is a lookup per port however many ranges there are.
const RESERVED_PORTS: [u64; 64] = {
    let mut map = [0u64; 64];
    let mut range = 0;
    while range < HYPERVISOR_PORTS.len() {
        let (lo, hi) = HYPERVISOR_PORTS[range];
        assert!(hi < 4096 && lo <= hi);
        let mut port = lo as usize;
        while port <= hi as usize {
            map[port / 64] |= 1 << (port % 64);
            port += 1;
        }
        range += 1;
    }
    map
};

/// Whether any of the ports `first..=last` is the hypervisor's.
fn reserved_port(first: u32, last: u32) -> bool {
    (first..=last).any(|port| {
        let port = port as usize;
        port < 4096 && RESERVED_PORTS[port / 64] & (1 << (port % 64)) != 0
    })
}

/// Whether `domain`'s current vCPU may touch `size` bytes at `port`, by Xen's rule
/// (`guest_io_okay`): the domain must be I/O-capable (privileged) and the port not the
/// hypervisor's; then the vCPU's virtual IOPL must reach its ring (1 in kernel mode, 3
/// in user mode, a process of a kernel that gave it `iopl(3)`), or every port of the
/// access be clear in its I/O bitmap, in either mode (read through `guest`, the vCPU's
/// kernel address space, as Xen switches to kernel mode to read it: a process given
/// ports by `ioperm`). The trapped `in`/`out` and the port-I/O extension hypercall both
/// ask this.
pub fn port_allowed<M: PhysMem>(
    domain: &Domain,
    guest: &GuestMem<'_, M>,
    port: u16,
    size: OperandSize,
) -> bool {
    let first = u32::from(port);
    let last = first + size.bytes() as u32 - 1;
    let reserved = reserved_port(first, last);
    let vcpu = &domain.vcpu;
    if !domain.privileged || reserved || last > 0xffff {
        return false;
    }
    let ring = if vcpu.kernel_mode { 1 } else { 3 };
    if vcpu.iopl >= ring {
        return true;
    }
    let (bitmap, ports) = vcpu.io_bitmap;
    if last >= ports {
        return false;
    }
    let mut bytes = [0u8; 2];
    let at = bitmap.wrapping_add(u64::from(first / 8));
    let len = if (last / 8) != (first / 8) { 2 } else { 1 };
    if guest.read(at, &mut bytes[..len]).is_err() {
        return false;
    }
    let bits = u16::from_le_bytes(bytes) >> (first % 8);
    let mask = (1u16 << (last - first + 1)) - 1;
    bits & mask == 0
}

/// The CPUID the guest is shown: the real one with what we do not virtualize hidden and
/// the hypervisor bit set, plus Xen's leaves at 0x40000000.
pub fn filtered_cpuid(hw: &mut dyn Hardware, leaf: u32, subleaf: u32) -> [u32; 4] {
    match leaf {
        // "XenVMMXenVMM", leaves up to 0x40000002.
        0x4000_0000 => [0x4000_0002, 0x566e_6558, 0x65584d4d, 0x4d4d566e],
        0x4000_0001 => [(4 << 16) | 17, 0, 0, 0],
        // One hypercall page; no MSR to install it (the ELF note does that).
        0x4000_0002 => [1, 0, 0, 0],
        0x4000_0003..=0x4fff_ffff => [0; 4],
        1 => {
            let [a, b, mut c, mut d] = hw.cpuid(leaf, subleaf);
            // ecx: hide MONITOR, VMX, SMX, EST, TM2, PCID, x2APIC, TSC-deadline, XSAVE,
            // OSXSAVE, AVX; set "running on a hypervisor".
            c &= !((1 << 3) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 17) | (1 << 21));
            c &= !((1 << 24) | (1 << 26) | (1 << 27) | (1 << 28));
            c |= 1 << 31;
            // edx: hide ACPI thermal control, TM, PBE.
            d &= !((1 << 22) | (1 << 29) | (1 << 31));
            [a, b, c, d]
        }
        // Structured features, subleaf 0 only, and of it only instructions that need no
        // OS or hypervisor support: BMI1, BMI2, ERMS, RDSEED, ADX, SHA.
        7 if subleaf != 0 => [0; 4],
        7 => {
            let [_, b, _, _] = hw.cpuid(leaf, subleaf);
            let keep_b = (1 << 3) | (1 << 8) | (1 << 9) | (1 << 18) | (1 << 19) | (1 << 29);
            [0, b & keep_b, 0, 0]
        }
        0xd => [0; 4],
        _ => hw.cpuid(leaf, subleaf),
    }
}

/// Tries to emulate the instruction that raised #GP (or #UD) in the current vCPU.
/// Returns `None` if it is not ours to emulate: the caller reflects the fault.
#[inline]
pub fn privileged_op<M: PhysMem>(
    ctx: &mut TrapContext<'_, M>,
    hw: &mut dyn Hardware,
) -> Option<Outcome> {
    // Fetched through the page table the vCPU ran on, as Xen does: a process's own in
    // user mode (its kernel's may map something else, or nothing, at that address).
    let vcpu = &ctx.domain.vcpu;
    let root = match vcpu.user_root() {
        Some(user) if !vcpu.kernel_mode => user,
        _ => vcpu.kernel_root,
    };
    let bytes = fetch(&ctx.guest_mem(root), ctx.regs.rip);
    let decoded = decode(&bytes).ok()?;
    if !ctx.domain.vcpu.kernel_mode {
        // User mode may only raise software interrupts, ask for filtered CPUID and, where
        // its kernel allowed it (`port_allowed`), use ports.
        return match decoded.instruction {
            Instruction::Int { .. }
            | Instruction::ForcedCpuid
            | Instruction::In { .. }
            | Instruction::Out { .. } => emulate(ctx, hw, decoded),
            _ => None,
        };
    }
    // `sti; hlt`, the idle of an unmodified kernel: the CPU takes no interrupt between
    // the two (STI's one-instruction shadow), so an event that is pending when events
    // come on wakes the `hlt` instead of being taken before it, and the kernel's idle
    // loop sees the work it brought. Emulated as one, in the same trap: the `sti`, then
    // the `hlt` (which blocks unless an event is pending, with events on). Taken apart,
    // the upcall due after the `sti` would run first and the `hlt` then sleep through
    // the wake-up it brought.
    // (Single-stepped, the `sti` is stepped alone: its #DB comes first. The `hlt` was
    // fetched, so its address is canonical.)
    if decoded.instruction == Instruction::Sti
        && ctx.regs.rflags & rflags::TF == 0
        && bytes.get(decoded.length) == Some(&HLT)
        && let Ok(hlt) = decode(&bytes[decoded.length..])
    {
        let at = ctx.regs.rip;
        emulate(ctx, hw, decoded)?;
        debug_assert_eq!(ctx.regs.rip, decoded.next_rip(at), "at the hlt");
        return emulate(ctx, hw, hlt);
    }
    emulate(ctx, hw, decoded)
}

/// The opcode of `hlt`.
const HLT: u8 = 0xf4;

/// Completes an emulated instruction: the vCPU goes on after it. After an instruction
/// that ends at the top of the lower half there is nowhere to go on to: as the CPU's
/// next fetch would, that raises #GP, delivered to the guest kernel with the address in
/// its frame. The hypervisor never returns to a non-canonical address, where `iretq`
/// itself would fault in ring 0 on a real CPU (QEMU's TCG only faults on the fetch).
/// With TF set, the instruction is single-stepped as the CPU steps one: the #DB trap
/// comes right after it, at the next instruction (as Xen's emulation injects it),
/// rather than after the next instruction has run too, which is where the real TF of
/// the resumed context would raise it.
fn step(ctx: &mut TrapContext<'_, impl PhysMem>, decoded: Decoded) -> Option<Outcome> {
    let next = decoded.next_rip(ctx.regs.rip);
    ctx.regs.rip = next;
    if !is_canonical(next) {
        return Some(inject(ctx, vector::GP, Some(0)));
    }
    if ctx.regs.rflags & rflags::TF != 0 {
        return Some(single_step_trap(ctx));
    }
    Some(Outcome::Resume)
}

/// The #DB a single-stepped emulated instruction owes (see [`step`]): out of line, so
/// that the common path of every emulation keeps its registers.
#[cold]
#[inline(never)]
fn single_step_trap(ctx: &mut TrapContext<'_, impl PhysMem>) -> Outcome {
    inject(ctx, vector::DB, None)
}

fn emulate<M: PhysMem>(
    ctx: &mut TrapContext<'_, M>,
    hw: &mut dyn Hardware,
    decoded: Decoded,
) -> Option<Outcome> {
    let info = VcpuInfoRef::of(ctx.mem, ctx.domain);
    match decoded.instruction {
        Instruction::Cli => {
            info.set_upcall_mask(true);
            step(ctx, decoded)
        }
        Instruction::Sti => {
            info.set_upcall_mask(false);
            step(ctx, decoded)
        }
        // Blocks only once past the instruction: a `hlt` in the last byte of the lower
        // half is the #GP `step` raises for its next rip (delivered, or the crash), never
        // a block that resumes at a non-canonical rip (found by review: the exit's
        // `iretq` would fault in ring 0). Single-stepped, it delivers its #DB instead.
        Instruction::Hlt
            if is_canonical(decoded.next_rip(ctx.regs.rip))
                && ctx.regs.rflags & rflags::TF == 0 =>
        {
            step(ctx, decoded);
            Some(Outcome::Block)
        }
        Instruction::Hlt => step(ctx, decoded),
        Instruction::Clts => {
            ctx.domain.vcpu.virtual_ts = false;
            step(ctx, decoded)
        }
        Instruction::Wbinvd | Instruction::Invd => step(ctx, decoded),
        Instruction::MovFromCr { cr, dst } => {
            let vcpu = &ctx.domain.vcpu;
            let value = match cr {
                ControlRegister::Cr0 => VIRTUAL_CR0 | if vcpu.virtual_ts { CR0_TS } else { 0 },
                ControlRegister::Cr2 => info.cr2(),
                ControlRegister::Cr3 => vcpu.kernel_root.addr(),
                ControlRegister::Cr4 if vcpu.virtual_pge_off => VIRTUAL_CR4 & !CR4_PGE,
                ControlRegister::Cr4 => VIRTUAL_CR4,
                ControlRegister::Cr8 => 0,
            };
            dst.write(ctx.regs, value);
            step(ctx, decoded)
        }
        Instruction::MovToCr { cr, src } => {
            let value = src.read(ctx.regs);
            match cr {
                ControlRegister::Cr0 if (value ^ VIRTUAL_CR0) & !CR0_TS == 0 => {
                    ctx.domain.vcpu.virtual_ts = value & CR0_TS != 0;
                }
                ControlRegister::Cr2 => info.set_cr2(value),
                ControlRegister::Cr3 => {
                    let mut paging = Paging::new(ctx.mem, ctx.frames, ctx.domain.id, hw.mmu());
                    paging
                        .new_baseptr(&mut ctx.domain.vcpu, Mfn::containing(value))
                        .ok()?;
                }
                ControlRegister::Cr4 if (value ^ VIRTUAL_CR4) & !CR4_PGE == 0 => {
                    // Toggling PGE is how a kernel flushes global TLB entries: each
                    // write flushes them (and the rest), and reads show what was set.
                    ctx.domain.vcpu.virtual_pge_off = value & CR4_PGE == 0;
                    hw.mmu().flush_all();
                }
                _ => return None,
            }
            step(ctx, decoded)
        }
        Instruction::Rdmsr => {
            let segments = ctx.domain.vcpu.segments;
            let value = match ctx.regs.rcx as u32 {
                MSR_EFER => VIRTUAL_EFER,
                MSR_FS_BASE => segments.fs,
                MSR_GS_BASE => segments.gs_kernel,
                MSR_KERNEL_GS_BASE => segments.gs_user,
                _ => return None,
            };
            ctx.regs.rax = value & 0xffff_ffff;
            ctx.regs.rdx = value >> 32;
            step(ctx, decoded)
        }
        Instruction::Wrmsr => {
            let value = (ctx.regs.rdx << 32) | (ctx.regs.rax & 0xffff_ffff);
            let segments = &mut ctx.domain.vcpu.segments;
            match ctx.regs.rcx as u32 {
                MSR_EFER if value == VIRTUAL_EFER => {}
                MSR_FS_BASE if is_canonical(value) => segments.fs = value,
                MSR_GS_BASE if is_canonical(value) => segments.gs_kernel = value,
                MSR_KERNEL_GS_BASE if is_canonical(value) => segments.gs_user = value,
                _ => return None,
            }
            step(ctx, decoded)
        }
        Instruction::In { port, size } => {
            let port = port_number(port, ctx.regs.rdx);
            let guest = ctx.guest_mem(ctx.domain.vcpu.kernel_root);
            if !port_allowed(ctx.domain, &guest, port, size) {
                return None;
            }
            let value = hw.port_in(port, size);
            Gpr::Rax.write_sized(ctx.regs, size, u64::from(value));
            step(ctx, decoded)
        }
        Instruction::Out { port, size } => {
            let port = port_number(port, ctx.regs.rdx);
            let guest = ctx.guest_mem(ctx.domain.vcpu.kernel_root);
            if !port_allowed(ctx.domain, &guest, port, size) {
                return None;
            }
            hw.port_out(port, size, (ctx.regs.rax & size.mask()) as u32);
            step(ctx, decoded)
        }
        Instruction::Invlpg { addr } => {
            let segments = ctx.domain.vcpu.segments;
            let next = decoded.next_rip(ctx.regs.rip);
            let va = addr.effective_address(ctx.regs, next, segments.fs, segments.gs_kernel);
            hw.mmu().flush_va(va);
            step(ctx, decoded)
        }
        Instruction::Int { vector } => {
            let vector = u64::from(vector);
            ctx.regs.rip = decoded.next_rip(ctx.regs.rip);
            if software_interrupt_allowed(ctx.domain, vector) {
                Some(inject(ctx, vector, None))
            } else {
                // The #GP the CPU should have reported (QEMU's TCG reports vector*16+2).
                ctx.regs.rip = ctx.regs.rip.wrapping_sub(decoded.length as u64);
                Some(inject(ctx, vector::GP, Some((vector << 3) | 2)))
            }
        }
        Instruction::ForcedCpuid => {
            let [a, b, c, d] = filtered_cpuid(hw, ctx.regs.rax as u32, ctx.regs.rcx as u32);
            ctx.regs.rax = u64::from(a);
            ctx.regs.rbx = u64::from(b);
            ctx.regs.rcx = u64::from(c);
            ctx.regs.rdx = u64::from(d);
            step(ctx, decoded)
        }
        _ => None,
    }
}

fn port_number(port: PortOperand, rdx: u64) -> u16 {
    match port {
        PortOperand::Immediate(p) => u16::from(p),
        PortOperand::Dx => rdx as u16,
    }
}

/// The arithmetic flags an emulated store sets: CF, PF, AF, ZF, SF, OF.
const RFLAGS_ARITHMETIC: u64 = 0x8d5;

// The two helpers below are always inlined into `page_table_write`, their one caller:
// as functions of their own they moved the release build's codegen units, and with
// them LLVM's inlining in the decoder, which cost every trapped two-byte instruction
// (`mov cr0`, `mov cr3`, `invlpg`) 7-10 instructions (`cargo xtask bench`).

/// The arithmetic flags of a `width`-sized `result`: PF (of its low byte), ZF and SF,
/// with CF, AF and OF clear, as `or`, `and` and `xor` leave them (AF is undefined after
/// them; clear is one of its values).
#[inline(always)]
fn logic_flags(result: u64, width: OperandSize) -> u64 {
    let result = result & width.mask();
    let sign = 1u64 << (width.bytes() * 8 - 1);
    let mut flags = 0;
    if (result as u8).count_ones().is_multiple_of(2) {
        flags |= 1 << 2; // PF
    }
    if result == 0 {
        flags |= 1 << 6; // ZF
    }
    if result & sign != 0 {
        flags |= 1 << 7; // SF
    }
    flags
}

/// The arithmetic flags of `cmp a, b` at `width` (what `cmpxchg` leaves: it compares
/// the accumulator with the destination).
#[inline(always)]
fn compare_flags(a: u64, b: u64, width: OperandSize) -> u64 {
    let (a, b) = (a & width.mask(), b & width.mask());
    let result = a.wrapping_sub(b) & width.mask();
    let sign = 1u64 << (width.bytes() * 8 - 1);
    let mut flags = logic_flags(result, width);
    if a < b {
        flags |= 1; // CF: a borrow
    }
    if (a ^ b ^ result) & 0x10 != 0 {
        flags |= 1 << 4; // AF: a borrow out of bit 3
    }
    if (a ^ b) & (a ^ result) & sign != 0 {
        flags |= 1 << 11; // OF: the operands' signs differ and the result's is b's
    }
    flags
}

/// The writable page-table assist: a guest kernel stored into one of its own read-only
/// L1 tables (a write fault at `cr2` on a present page). Decode the store, work out the
/// new entry, and apply it exactly as `mmu_update` would. `None` if this was not such a
/// store, or the entry is refused: the caller then delivers the page fault.
pub fn page_table_write<M: PhysMem>(
    ctx: &mut TrapContext<'_, M>,
    hw: &mut dyn Hardware,
    cr2: u64,
) -> Option<Outcome> {
    use crate::emulate::{StoreOp, StoreSource};
    use crate::paging::{PteWrite, check_pt_write, emulate_pt_write};
    if !ctx.domain.vcpu.kernel_mode {
        return None;
    }
    let root = ctx.domain.vcpu.kernel_root;
    let guest = ctx.guest_mem(root);
    let decoded = decode(&fetch(&guest, ctx.regs.rip)).ok()?;
    let Instruction::Store(store) = decoded.instruction else {
        return None;
    };
    let segments = ctx.domain.vcpu.segments;
    let next = decoded.next_rip(ctx.regs.rip);
    if store
        .dst
        .effective_address(ctx.regs, next, segments.fs, segments.gs_kernel)
        != cr2
    {
        return None;
    }
    let width = store.width;
    if !matches!(width, OperandSize::Dword | OperandSize::Qword) {
        return None;
    }
    let mut old_bytes = [0u8; 8];
    guest.read(cr2, &mut old_bytes[..width.bytes()]).ok()?;
    let old = u64::from_le_bytes(old_bytes);
    let source = match store.src {
        StoreSource::Register(reg) => reg.read(ctx.regs, width),
        StoreSource::Immediate(value) => value,
        StoreSource::EcxEbx => return None,
    };
    // The new value, and what the instruction does to registers afterwards: a register
    // written back, the arithmetic flags. Nothing of the guest's changes before the
    // entry is accepted: a refused store is the page fault, with the registers as the
    // instruction found them.
    let (new, writeback, flags): (u64, Option<(Gpr, u64)>, Option<u64>) = match store.op {
        StoreOp::Move => (source, None, None),
        StoreOp::Or => (old | source, None, Some(logic_flags(old | source, width))),
        StoreOp::And => (old & source, None, Some(logic_flags(old & source, width))),
        StoreOp::Xor => (old ^ source, None, Some(logic_flags(old ^ source, width))),
        StoreOp::Exchange => match store.src {
            StoreSource::Register(reg) => (source, Some((reg.register, old)), None),
            _ => return None,
        },
        StoreOp::CompareExchange => {
            let expected = Gpr::Rax.read_sized(ctx.regs, width);
            let flags = compare_flags(expected, old, width);
            if expected != old {
                // No new entry to validate, but still a write (a failing `cmpxchg`
                // writes its destination back, so the CPU faulted on it): emulated only
                // where a store would be, else it is the guest's #PF. The accumulator
                // takes the entry.
                let bytes = width.bytes() as u8;
                check_pt_write(ctx.domain, ctx.mem, ctx.frames, hw.mmu(), cr2, bytes).ok()?;
                Gpr::Rax.write_sized(ctx.regs, width, old);
                ctx.regs.rflags = (ctx.regs.rflags & !RFLAGS_ARITHMETIC) | flags;
                return step(ctx, decoded);
            }
            (source, None, Some(flags))
        }
        _ => return None,
    };
    let write = PteWrite {
        va: cr2,
        value: new,
        width: width.bytes() as u8,
    };
    emulate_pt_write(ctx.domain, ctx.mem, ctx.frames, hw.mmu(), write).ok()?;
    if let Some((reg, value)) = writeback {
        reg.write_sized(ctx.regs, width, value);
    }
    if let Some(flags) = flags {
        ctx.regs.rflags = (ctx.regs.rflags & !RFLAGS_ARITHMETIC) | flags;
    }
    step(ctx, decoded)
}

#[cfg(test)]
mod flag_tests {
    use super::{OperandSize, RFLAGS_ARITHMETIC, compare_flags, logic_flags};
    use core::arch::asm;
    use proptest::prelude::*;

    /// The host CPU's arithmetic flags after `cmp a, b` at `width`: the oracle.
    fn host_cmp(a: u64, b: u64, width: OperandSize) -> u64 {
        let flags: u64;
        // SAFETY: compares two registers and reads RFLAGS through the stack, which the
        // block leaves as it found it; no memory of the program is touched.
        unsafe {
            match width {
                OperandSize::Byte => asm!("cmp {a:l}, {b:l}", "pushfq", "pop {f}",
                    a = in(reg) a, b = in(reg) b, f = out(reg) flags),
                OperandSize::Word => asm!("cmp {a:x}, {b:x}", "pushfq", "pop {f}",
                    a = in(reg) a, b = in(reg) b, f = out(reg) flags),
                OperandSize::Dword => asm!("cmp {a:e}, {b:e}", "pushfq", "pop {f}",
                    a = in(reg) a, b = in(reg) b, f = out(reg) flags),
                OperandSize::Qword => asm!("cmp {a}, {b}", "pushfq", "pop {f}",
                    a = in(reg) a, b = in(reg) b, f = out(reg) flags),
            }
        }
        flags & RFLAGS_ARITHMETIC
    }

    /// The host CPU's arithmetic flags after `or a, b` at `width` (AF, undefined
    /// after it, left out of the comparison).
    fn host_or(a: u64, b: u64, width: OperandSize) -> u64 {
        let flags: u64;
        // SAFETY: as in `host_cmp`; `a` is a copy the block may clobber.
        unsafe {
            match width {
                OperandSize::Byte => asm!("or {a:l}, {b:l}", "pushfq", "pop {f}",
                    a = inout(reg) a => _, b = in(reg) b, f = out(reg) flags),
                OperandSize::Word => asm!("or {a:x}, {b:x}", "pushfq", "pop {f}",
                    a = inout(reg) a => _, b = in(reg) b, f = out(reg) flags),
                OperandSize::Dword => asm!("or {a:e}, {b:e}", "pushfq", "pop {f}",
                    a = inout(reg) a => _, b = in(reg) b, f = out(reg) flags),
                OperandSize::Qword => asm!("or {a}, {b}", "pushfq", "pop {f}",
                    a = inout(reg) a => _, b = in(reg) b, f = out(reg) flags),
            }
        }
        flags & RFLAGS_ARITHMETIC & !(1 << 4)
    }

    fn width() -> impl Strategy<Value = OperandSize> {
        prop::sample::select(vec![
            OperandSize::Byte,
            OperandSize::Word,
            OperandSize::Dword,
            OperandSize::Qword,
        ])
    }

    /// Values with the edges the flags turn on: zero, signs, carries out of each width.
    fn value() -> impl Strategy<Value = u64> {
        prop_oneof![
            any::<u64>(),
            prop::sample::select(vec![
                0u64,
                1,
                0x7f,
                0x80,
                0xff,
                0x7fff,
                0x8000,
                0xffff,
                0x7fff_ffff,
                0x8000_0000,
                0xffff_ffff,
                i64::MAX as u64,
                1 << 63,
                u64::MAX,
            ]),
        ]
    }

    proptest! {
        #[test]
        fn compare_flags_are_the_cpus(a in value(), b in value(), width in width()) {
            prop_assert_eq!(compare_flags(a, b, width), host_cmp(a, b, width));
        }

        #[test]
        fn logic_flags_are_the_cpus(a in value(), b in value(), width in width()) {
            prop_assert_eq!(logic_flags(a | b, width), host_or(a, b, width));
        }
    }
}
