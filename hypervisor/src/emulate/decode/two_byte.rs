//! The two-byte opcode map (0f xx): the system instructions and the 0f-prefixed stores.
//!
//! In this map 66, f2 and f3 are mandatory prefixes that select other instructions (f3 0f
//! 09 is `wbnoinvd`, 66 0f c7 /6 is `vmclear`), so they are refused except where they are
//! a plain operand-size override (66 on `cmpxchg`). The repeat prefixes are refused by
//! the caller for everything but string I/O.

use super::cursor::Cursor;
use super::instruction::{ControlRegister, Instruction};
use super::modrm::{ModRm, memory_operand, rm_operand};
use super::operands::{Gpr, OperandSize, RmOperand};
use super::prefixes::Prefixes;
use super::{DecodeError, store};

const GROUP_6: u8 = 0x00;
const GROUP_7: u8 = 0x01;
const SYSCALL: u8 = 0x05;
const CLTS: u8 = 0x06;
const SYSRET: u8 = 0x07;
const INVD: u8 = 0x08;
const WBINVD: u8 = 0x09;
const UD2: u8 = 0x0b;
const MOV_FROM_CR: u8 = 0x20;
const MOV_FROM_DR: u8 = 0x21;
const MOV_TO_CR: u8 = 0x22;
const MOV_TO_DR: u8 = 0x23;
const WRMSR: u8 = 0x30;
const RDTSC: u8 = 0x31;
const RDMSR: u8 = 0x32;
const RDPMC: u8 = 0x33;
const CPUID: u8 = 0xa2;
const CMPXCHG_BYTE: u8 = 0xb0;
const CMPXCHG: u8 = 0xb1;
const MOVNTI: u8 = 0xc3;
const GROUP_9: u8 = 0xc7;

/// The highest debug register number (REX.R would name DR8-DR15, which do not exist).
const LAST_DEBUG_REGISTER: u8 = 7;

/// Decodes the instruction whose first opcode byte was 0f. Always inlined into
/// `decode`, its one caller, with `move_registers`: most privileged instructions are
/// two-byte ones, and whether LLVM inlined them moved with unrelated changes elsewhere
/// in the crate (its codegen units), costing each trapped `mov cr`/`invlpg` 7-11
/// instructions when it did not (docs/benchmarks-history.md, the fifteenth session).
#[inline(always)]
pub(super) fn decode(
    cursor: &mut Cursor<'_>,
    prefixes: &Prefixes,
) -> Result<Instruction, DecodeError> {
    let opcode = cursor.byte()?;
    if prefixes.operand_size_override && !matches!(opcode, CMPXCHG_BYTE | CMPXCHG) {
        return Err(DecodeError::Unsupported);
    }
    match opcode {
        GROUP_6 => group_6(cursor, prefixes),
        GROUP_7 => group_7(cursor, prefixes),
        SYSCALL => Ok(Instruction::Syscall),
        CLTS => Ok(Instruction::Clts),
        SYSRET => Ok(Instruction::Sysret {
            size: if prefixes.rex.w {
                OperandSize::Qword
            } else {
                OperandSize::Dword
            },
        }),
        INVD => Ok(Instruction::Invd),
        WBINVD => Ok(Instruction::Wbinvd),
        UD2 => Ok(Instruction::Ud2),
        MOV_FROM_CR | MOV_TO_CR => {
            let (number, gpr) = move_registers(cursor, prefixes)?;
            let cr = ControlRegister::from_number(number).ok_or(DecodeError::Invalid)?;
            Ok(if opcode == MOV_TO_CR {
                Instruction::MovToCr { cr, src: gpr }
            } else {
                Instruction::MovFromCr { cr, dst: gpr }
            })
        }
        MOV_FROM_DR | MOV_TO_DR => {
            let (dr, gpr) = move_registers(cursor, prefixes)?;
            if dr > LAST_DEBUG_REGISTER {
                return Err(DecodeError::Invalid);
            }
            Ok(if opcode == MOV_TO_DR {
                Instruction::MovToDr { dr, src: gpr }
            } else {
                Instruction::MovFromDr { dr, dst: gpr }
            })
        }
        WRMSR => Ok(Instruction::Wrmsr),
        RDTSC => Ok(Instruction::Rdtsc),
        RDMSR => Ok(Instruction::Rdmsr),
        RDPMC => Ok(Instruction::Rdpmc),
        CPUID => Ok(Instruction::Cpuid),
        CMPXCHG_BYTE | CMPXCHG | MOVNTI | GROUP_9 => store::two_byte(cursor, prefixes, opcode),
        _ => Err(DecodeError::Unsupported),
    }
}

/// The ModRM of `mov` to or from a control or debug register: the special register's
/// number (reg, with REX.R) and the general register (rm, with REX.B).
///
/// The CPU ignores the mod bits here; we accept only mod 11, the encoding every
/// assembler emits, and refuse the others as invalid.
#[inline(always)]
fn move_registers(cursor: &mut Cursor<'_>, prefixes: &Prefixes) -> Result<(u8, Gpr), DecodeError> {
    let modrm = ModRm::read(cursor)?;
    if !modrm.is_register() {
        return Err(DecodeError::Invalid);
    }
    Ok((modrm.reg_number(prefixes), modrm.rm_gpr(prefixes)))
}

/// 0f 00: the LDT and task-register instructions.
fn group_6(cursor: &mut Cursor<'_>, prefixes: &Prefixes) -> Result<Instruction, DecodeError> {
    let modrm = ModRm::read(cursor)?;
    match modrm.reg {
        2 => Ok(Instruction::Lldt {
            src: rm_operand(cursor, modrm, prefixes)?,
        }),
        3 => Ok(Instruction::Ltr {
            src: rm_operand(cursor, modrm, prefixes)?,
        }),
        // sldt, str, verr, verw and the rest: not privileged, or not ours.
        _ => Err(DecodeError::Unsupported),
    }
}

/// 0f 01: descriptor tables, invlpg, the machine status word, and (mod 11) single
/// instructions encoded in the whole ModRM byte.
fn group_7(cursor: &mut Cursor<'_>, prefixes: &Prefixes) -> Result<Instruction, DecodeError> {
    const SWAPGS: (u8, u8) = (7, 0);
    const XSETBV: (u8, u8) = (2, 1);
    let modrm = ModRm::read(cursor)?;
    if modrm.is_register() {
        return match (modrm.reg, modrm.rm) {
            SWAPGS => Ok(Instruction::Swapgs),
            XSETBV => Ok(Instruction::Xsetbv),
            (4, _) => Ok(Instruction::Smsw {
                dst: RmOperand::Register(modrm.rm_gpr(prefixes)),
                size: prefixes.operand_size(),
            }),
            (6, _) => Ok(Instruction::Lmsw {
                src: RmOperand::Register(modrm.rm_gpr(prefixes)),
            }),
            // vmcall, monitor, clac, rdtscp, ... are well formed but not ours.
            _ => Err(DecodeError::Unsupported),
        };
    }
    let addr = memory_operand(cursor, modrm, prefixes)?;
    match modrm.reg {
        0 => Ok(Instruction::Sgdt { addr }),
        1 => Ok(Instruction::Sidt { addr }),
        2 => Ok(Instruction::Lgdt { addr }),
        3 => Ok(Instruction::Lidt { addr }),
        4 => Ok(Instruction::Smsw {
            dst: RmOperand::Memory(addr),
            size: OperandSize::Word,
        }),
        6 => Ok(Instruction::Lmsw {
            src: RmOperand::Memory(addr),
        }),
        7 => Ok(Instruction::Invlpg { addr }),
        _ => Err(DecodeError::Unsupported),
    }
}
