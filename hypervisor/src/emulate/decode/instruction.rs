//! The typed view of one decoded instruction: everything the emulator may be asked to
//! carry out or refuse, and nothing else.

use super::operands::{Gpr, MemOperand, OperandSize, RegisterOperand, RmOperand, Segment};

/// An instruction the hypervisor may emulate for a PV guest kernel, or must recognise to
/// refuse cleanly.
///
/// Operand sizes are the effective ones (prefixes already applied).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Instruction {
    /// `cli` (fa): clear the interrupt flag.
    Cli,
    /// `sti` (fb): set the interrupt flag.
    Sti,
    /// `hlt` (f4): halt until an interrupt.
    Hlt,
    /// `pushf` (9c): push rflags; `size` is `Qword` (the 64-bit default, or REX.W) or
    /// `Word` (0x66).
    Pushf {
        /// Bytes pushed.
        size: OperandSize,
    },
    /// `popf` (9d): pop rflags; `size` as for [`Instruction::Pushf`].
    Popf {
        /// Bytes popped.
        size: OperandSize,
    },
    /// `clts` (0f 06): clear CR0.TS.
    Clts,
    /// `wbinvd` (0f 09): write back and invalidate caches.
    Wbinvd,
    /// `invd` (0f 08): invalidate caches without writing back.
    Invd,
    /// `rdmsr` (0f 32): edx:eax = MSR\[ecx\].
    Rdmsr,
    /// `wrmsr` (0f 30): MSR\[ecx\] = edx:eax.
    Wrmsr,
    /// `rdtsc` (0f 31): edx:eax = time-stamp counter (faults when CR4.TSD is set).
    Rdtsc,
    /// `rdpmc` (0f 33): edx:eax = performance counter\[ecx\].
    Rdpmc,
    /// `cpuid` (0f a2), executed directly: it faults only under CPUID faulting.
    Cpuid,
    /// `xsetbv` (0f 01 d1): XCR\[ecx\] = edx:eax.
    Xsetbv,
    /// `mov crN, reg` (0f 22 /r).
    MovToCr {
        /// The control register written.
        cr: ControlRegister,
        /// The 64-bit source register.
        src: Gpr,
    },
    /// `mov reg, crN` (0f 20 /r).
    MovFromCr {
        /// The control register read.
        cr: ControlRegister,
        /// The 64-bit destination register.
        dst: Gpr,
    },
    /// `mov drN, reg` (0f 23 /r).
    MovToDr {
        /// The debug register number, 0 to 7.
        dr: u8,
        /// The 64-bit source register.
        src: Gpr,
    },
    /// `mov reg, drN` (0f 21 /r).
    MovFromDr {
        /// The debug register number, 0 to 7.
        dr: u8,
        /// The 64-bit destination register.
        dst: Gpr,
    },
    /// `invlpg m` (0f 01 /7, memory form): flush the TLB entry for `addr`'s address.
    Invlpg {
        /// The operand whose address names the page (it is not accessed).
        addr: MemOperand,
    },
    /// `lgdt m` (0f 01 /2): load the GDT register from a 10-byte pseudo-descriptor.
    Lgdt {
        /// Where the pseudo-descriptor is.
        addr: MemOperand,
    },
    /// `lidt m` (0f 01 /3): load the IDT register from a 10-byte pseudo-descriptor.
    Lidt {
        /// Where the pseudo-descriptor is.
        addr: MemOperand,
    },
    /// `sgdt m` (0f 01 /0): store the GDT register.
    Sgdt {
        /// Where the pseudo-descriptor goes.
        addr: MemOperand,
    },
    /// `sidt m` (0f 01 /1): store the IDT register.
    Sidt {
        /// Where the pseudo-descriptor goes.
        addr: MemOperand,
    },
    /// `lldt r/m16` (0f 00 /2): load the LDT register.
    Lldt {
        /// The selector.
        src: RmOperand,
    },
    /// `ltr r/m16` (0f 00 /3): load the task register.
    Ltr {
        /// The selector.
        src: RmOperand,
    },
    /// `lmsw r/m16` (0f 01 /6): load CR0's low four bits.
    Lmsw {
        /// The source of the machine status word.
        src: RmOperand,
    },
    /// `smsw r/m` (0f 01 /4): store CR0's low bits.
    Smsw {
        /// Where the machine status word goes.
        dst: RmOperand,
        /// `Word` for memory; the operand size (`Dword` or `Qword`) for a register.
        size: OperandSize,
    },
    /// `in al/ax/eax, port` (e4, e5, ec, ed).
    In {
        /// The port number: an immediate or dx.
        port: PortOperand,
        /// `Byte`, `Word` (0x66) or `Dword`.
        size: OperandSize,
    },
    /// `out port, al/ax/eax` (e6, e7, ee, ef).
    Out {
        /// The port number: an immediate or dx.
        port: PortOperand,
        /// `Byte`, `Word` (0x66) or `Dword`.
        size: OperandSize,
    },
    /// `ins` (6c, 6d): read port dx into es:\[rdi\], rcx times with `rep`.
    Ins {
        /// `Byte`, `Word` (0x66) or `Dword`.
        size: OperandSize,
        /// A `rep` (f3) prefix is present.
        rep: bool,
    },
    /// `outs` (6e, 6f): write \[rsi\] (ds, or the override) to port dx, rcx times with
    /// `rep`.
    Outs {
        /// `Byte`, `Word` (0x66) or `Dword`.
        size: OperandSize,
        /// A `rep` (f3) prefix is present.
        rep: bool,
        /// An `fs` or `gs` override of the source.
        segment: Option<Segment>,
    },
    /// `int imm8` (cd ib): a software interrupt.
    Int {
        /// The vector.
        vector: u8,
    },
    /// `int3` (cc): the one-byte breakpoint.
    Int3,
    /// `into` (ce). Not an instruction in 64-bit mode: the CPU raises #UD for it, which
    /// the caller must reflect to the guest, never emulate.
    Into,
    /// `iret` (cf): `Dword` (iretd), `Qword` (REX.W, iretq) or `Word` (0x66).
    Iret {
        /// The size of each frame slot.
        size: OperandSize,
    },
    /// `syscall` (0f 05).
    Syscall,
    /// `sysret` (0f 07): `Qword` (REX.W) returns to 64-bit code, `Dword` to 32-bit code.
    Sysret {
        /// The operand size.
        size: OperandSize,
    },
    /// `swapgs` (0f 01 f8).
    Swapgs,
    /// `ud2` (0f 0b) not followed by Xen's forced-emulation signature.
    Ud2,
    /// Xen's forced-emulation sequence `ud2; .ascii "xen"; cpuid` (0f 0b 78 65 6e 0f a2,
    /// 7 bytes): a PV guest asks for the hypervisor's filtered `cpuid`.
    ForcedCpuid,
    /// A store to memory: what a guest kernel does to one of its (read-only) page tables.
    Store(Store),
}

impl Instruction {
    /// Whether the instruction accesses memory through a decoded address (so a segment
    /// override is meaningful).
    pub fn has_memory_operand(&self) -> bool {
        match self {
            Instruction::Invlpg { .. }
            | Instruction::Lgdt { .. }
            | Instruction::Lidt { .. }
            | Instruction::Sgdt { .. }
            | Instruction::Sidt { .. }
            | Instruction::Outs { .. }
            | Instruction::Store(_) => true,
            Instruction::Lldt { src } | Instruction::Ltr { src } | Instruction::Lmsw { src } => {
                matches!(src, RmOperand::Memory(_))
            }
            Instruction::Smsw { dst, .. } => matches!(dst, RmOperand::Memory(_)),
            _ => false,
        }
    }
}

/// A control register that `mov` to or from may name in 64-bit mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlRegister {
    /// CR0: protection, paging, caching and FPU control.
    Cr0,
    /// CR2: the page-fault linear address.
    Cr2,
    /// CR3: the page-table root.
    Cr3,
    /// CR4: architectural extensions.
    Cr4,
    /// CR8: the task-priority register.
    Cr8,
}

impl ControlRegister {
    /// The register numbered `number` (ModRM.reg extended by REX.R), if it exists.
    pub const fn from_number(number: u8) -> Option<ControlRegister> {
        match number {
            0 => Some(ControlRegister::Cr0),
            2 => Some(ControlRegister::Cr2),
            3 => Some(ControlRegister::Cr3),
            4 => Some(ControlRegister::Cr4),
            8 => Some(ControlRegister::Cr8),
            _ => None,
        }
    }

    /// The register's number.
    pub const fn number(self) -> u8 {
        match self {
            ControlRegister::Cr0 => 0,
            ControlRegister::Cr2 => 2,
            ControlRegister::Cr3 => 3,
            ControlRegister::Cr4 => 4,
            ControlRegister::Cr8 => 8,
        }
    }
}

/// The port of an `in` or `out`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortOperand {
    /// A port number encoded in the instruction (0 to 255).
    Immediate(u8),
    /// The port number in dx.
    Dx,
}

/// A decoded store to memory: `dst = op(dst, src)` of `width` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Store {
    /// The memory written.
    pub dst: MemOperand,
    /// The width of the access.
    pub width: OperandSize,
    /// The value (or second operand) stored.
    pub src: StoreSource,
    /// How the stored value is formed.
    pub op: StoreOp,
    /// The access must be atomic: a LOCK prefix, or implicitly (xchg).
    pub locked: bool,
}

/// The second operand of a [`Store`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreSource {
    /// A register of the store's width.
    Register(RegisterOperand),
    /// An immediate, already sign- or zero-extended to the store's width and masked to it.
    Immediate(u64),
    /// The pair ecx:ebx (high:low), for [`StoreOp::CompareExchange8b`].
    EcxEbx,
}

/// The operation of a [`Store`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreOp {
    /// `mov` (88, 89, c6 /0, c7 /0) and `movnti` (0f c3): `dst = src`.
    Move,
    /// `xchg` (86, 87): swap `dst` and the source register (always atomic).
    Exchange,
    /// `cmpxchg` (0f b0, 0f b1): if `dst` equals the accumulator (al, ax, eax or rax) then
    /// `dst = src` and ZF=1, else the accumulator = `dst` and ZF=0; arithmetic flags as
    /// `cmp accumulator, dst`.
    CompareExchange,
    /// `cmpxchg8b` (0f c7 /1): if the 8 bytes at `dst` equal edx:eax then `dst = ecx:ebx`
    /// and ZF=1, else edx:eax = `dst` and ZF=0. The source is [`StoreSource::EcxEbx`].
    CompareExchange8b,
    /// `or` (08, 09, 80/81/83 /1): `dst |= src`; flags as for `or`.
    Or,
    /// `and` (20, 21, 80/81/83 /4): `dst &= src`; flags as for `and`.
    And,
    /// `xor` (30, 31, 80/81/83 /6): `dst ^= src`; flags as for `xor`.
    Xor,
}
