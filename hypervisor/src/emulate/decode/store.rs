//! The stores a guest kernel makes to its page tables, which the hypervisor keeps
//! read-only and so must emulate (Xen's writable page tables): `mov`, `xchg`, `cmpxchg`,
//! `cmpxchg8b`, `or`, `and`, `xor` and `movnti` with a memory destination.
//!
//! Register-destination forms (mod 11) are not stores and are refused as
//! [`DecodeError::Unsupported`], or [`DecodeError::Invalid`] under LOCK, which requires a
//! memory destination. Whether LOCK is allowed at all is checked by the caller, once the
//! store's operation is known.

use super::DecodeError;
use super::cursor::Cursor;
use super::instruction::{Instruction, Store, StoreOp, StoreSource};
use super::modrm::{ModRm, memory_operand};
use super::operands::{Gpr, MemOperand, OperandSize, RegisterOperand};
use super::prefixes::Prefixes;

const OR_BYTE: u8 = 0x08;
const OR: u8 = 0x09;
const AND_BYTE: u8 = 0x20;
const AND: u8 = 0x21;
const XOR_BYTE: u8 = 0x30;
const XOR: u8 = 0x31;
const GROUP_1_BYTE: u8 = 0x80;
const GROUP_1: u8 = 0x81;
const GROUP_1_SIGN_EXTENDED_BYTE: u8 = 0x83;
const XCHG_BYTE: u8 = 0x86;
const XCHG: u8 = 0x87;
const MOV_BYTE: u8 = 0x88;
const MOV: u8 = 0x89;
const MOV_IMMEDIATE_BYTE: u8 = 0xc6;
const MOV_IMMEDIATE: u8 = 0xc7;

const CMPXCHG_BYTE: u8 = 0xb0;
const CMPXCHG: u8 = 0xb1;
const MOVNTI: u8 = 0xc3;
const GROUP_9: u8 = 0xc7;

/// The `/digit` of group 1 (80, 81, 83) that each emulated operation has.
const GROUP_1_OR: u8 = 1;
const GROUP_1_AND: u8 = 4;
const GROUP_1_XOR: u8 = 6;
/// The `/digit` of `mov r/m, imm` (c6, c7).
const MOV_IMMEDIATE_DIGIT: u8 = 0;
/// The `/digit` of `cmpxchg8b` in group 9 (0f c7).
const CMPXCHG8B_DIGIT: u8 = 1;

/// Whether `opcode` starts a store in the one-byte map.
pub(super) fn is_one_byte_store(opcode: u8) -> bool {
    matches!(
        opcode,
        OR_BYTE
            | OR
            | AND_BYTE
            | AND
            | XOR_BYTE
            | XOR
            | GROUP_1_BYTE
            | GROUP_1
            | GROUP_1_SIGN_EXTENDED_BYTE
            | XCHG_BYTE
            | XCHG
            | MOV_BYTE
            | MOV
            | MOV_IMMEDIATE_BYTE
            | MOV_IMMEDIATE
    )
}

/// Decodes a one-byte-map store ([`is_one_byte_store`] holds for `opcode`).
pub(super) fn one_byte(
    cursor: &mut Cursor<'_>,
    prefixes: &Prefixes,
    opcode: u8,
) -> Result<Instruction, DecodeError> {
    // Even opcodes of each pair are the byte forms.
    let size = if opcode & 1 == 0 {
        OperandSize::Byte
    } else {
        prefixes.operand_size()
    };
    match opcode {
        OR_BYTE | OR => register_source(cursor, prefixes, StoreOp::Or, size),
        AND_BYTE | AND => register_source(cursor, prefixes, StoreOp::And, size),
        XOR_BYTE | XOR => register_source(cursor, prefixes, StoreOp::Xor, size),
        XCHG_BYTE | XCHG => register_source(cursor, prefixes, StoreOp::Exchange, size),
        MOV_BYTE | MOV => register_source(cursor, prefixes, StoreOp::Move, size),
        MOV_IMMEDIATE_BYTE | MOV_IMMEDIATE => {
            let modrm = ModRm::read(cursor)?;
            if modrm.reg != MOV_IMMEDIATE_DIGIT {
                // c6 f8 / c7 f8 are xabort / xbegin; the rest are undefined.
                return Err(DecodeError::Unsupported);
            }
            immediate_source(
                cursor,
                prefixes,
                modrm,
                StoreOp::Move,
                size,
                immediate_bytes(size),
            )
        }
        GROUP_1_BYTE | GROUP_1 | GROUP_1_SIGN_EXTENDED_BYTE => {
            let modrm = ModRm::read(cursor)?;
            let op = match modrm.reg {
                GROUP_1_OR => StoreOp::Or,
                GROUP_1_AND => StoreOp::And,
                GROUP_1_XOR => StoreOp::Xor,
                // add, adc, sbb, sub, cmp.
                _ => return Err(DecodeError::Unsupported),
            };
            // 81 takes a full immediate; 80 a byte, 83 a byte sign-extended to `size`.
            let bytes = if opcode == GROUP_1 {
                immediate_bytes(size)
            } else {
                1
            };
            immediate_source(cursor, prefixes, modrm, op, size, bytes)
        }
        _ => Err(DecodeError::Unsupported),
    }
}

/// Decodes a two-byte-map store: `cmpxchg`, `movnti` or `cmpxchg8b`.
pub(super) fn two_byte(
    cursor: &mut Cursor<'_>,
    prefixes: &Prefixes,
    opcode: u8,
) -> Result<Instruction, DecodeError> {
    match opcode {
        CMPXCHG_BYTE => register_source(
            cursor,
            prefixes,
            StoreOp::CompareExchange,
            OperandSize::Byte,
        ),
        CMPXCHG => register_source(
            cursor,
            prefixes,
            StoreOp::CompareExchange,
            prefixes.operand_size(),
        ),
        MOVNTI => {
            // Only the 32- and 64-bit memory forms exist.
            let size = if prefixes.rex.w {
                OperandSize::Qword
            } else {
                OperandSize::Dword
            };
            let modrm = ModRm::read(cursor)?;
            if modrm.is_register() {
                return Err(DecodeError::Invalid);
            }
            let src = StoreSource::Register(RegisterOperand {
                register: modrm.reg_gpr(prefixes),
                high_byte: false,
            });
            finish(cursor, prefixes, modrm, StoreOp::Move, size, src)
        }
        GROUP_9 => {
            let modrm = ModRm::read(cursor)?;
            if modrm.reg != CMPXCHG8B_DIGIT || modrm.is_register() || prefixes.rex.w {
                // rdrand, rdseed, vmptrld, ... and cmpxchg16b (REX.W).
                return Err(DecodeError::Unsupported);
            }
            let op = StoreOp::CompareExchange8b;
            finish(
                cursor,
                prefixes,
                modrm,
                op,
                OperandSize::Qword,
                StoreSource::EcxEbx,
            )
        }
        _ => Err(DecodeError::Unsupported),
    }
}

/// `op r/m, reg`: the source is ModRM.reg. Inlined: the trapped page-table store
/// (`mov r/m, reg`) is the hot caller.
#[inline]
fn register_source(
    cursor: &mut Cursor<'_>,
    prefixes: &Prefixes,
    op: StoreOp,
    size: OperandSize,
) -> Result<Instruction, DecodeError> {
    let modrm = ModRm::read(cursor)?;
    let src = StoreSource::Register(register_operand(modrm.reg_number(prefixes), prefixes, size));
    finish(cursor, prefixes, modrm, op, size, src)
}

/// `op r/m, imm`: the immediate (`bytes` long, after the address) is sign-extended to
/// the operand size.
fn immediate_source(
    cursor: &mut Cursor<'_>,
    prefixes: &Prefixes,
    modrm: ModRm,
    op: StoreOp,
    size: OperandSize,
    bytes: u32,
) -> Result<Instruction, DecodeError> {
    let dst = destination(cursor, prefixes, modrm)?;
    let immediate = cursor.signed(bytes)? as u64 & size.mask();
    Ok(store(
        prefixes,
        dst,
        op,
        size,
        StoreSource::Immediate(immediate),
    ))
}

/// Reads the memory destination and builds the store.
fn finish(
    cursor: &mut Cursor<'_>,
    prefixes: &Prefixes,
    modrm: ModRm,
    op: StoreOp,
    size: OperandSize,
    src: StoreSource,
) -> Result<Instruction, DecodeError> {
    let dst = destination(cursor, prefixes, modrm)?;
    Ok(store(prefixes, dst, op, size, src))
}

fn destination(
    cursor: &mut Cursor<'_>,
    prefixes: &Prefixes,
    modrm: ModRm,
) -> Result<MemOperand, DecodeError> {
    if modrm.is_register() {
        return Err(if prefixes.lock {
            DecodeError::Invalid
        } else {
            DecodeError::Unsupported
        });
    }
    memory_operand(cursor, modrm, prefixes)
}

fn store(
    prefixes: &Prefixes,
    dst: MemOperand,
    op: StoreOp,
    width: OperandSize,
    src: StoreSource,
) -> Instruction {
    Instruction::Store(Store {
        dst,
        width,
        src,
        op,
        locked: prefixes.lock || op == StoreOp::Exchange,
    })
}

/// Immediate bytes of an `iz` operand: at most 4 (sign-extended for 64-bit operands).
fn immediate_bytes(size: OperandSize) -> u32 {
    match size {
        OperandSize::Byte => 1,
        OperandSize::Word => 2,
        OperandSize::Dword | OperandSize::Qword => 4,
    }
}

/// The register operand `number` (ModRM.reg with REX.R) of `size`: without a REX prefix,
/// byte registers 4-7 are ah, ch, dh, bh.
fn register_operand(number: u8, prefixes: &Prefixes, size: OperandSize) -> RegisterOperand {
    const FIRST_HIGH_BYTE: u8 = 4;
    const LAST_HIGH_BYTE: u8 = 7;
    if size == OperandSize::Byte
        && !prefixes.rex.present
        && (FIRST_HIGH_BYTE..=LAST_HIGH_BYTE).contains(&number)
    {
        RegisterOperand {
            register: Gpr::from_number(number - FIRST_HIGH_BYTE),
            high_byte: true,
        }
    } else {
        RegisterOperand {
            register: Gpr::from_number(number),
            high_byte: false,
        }
    }
}
