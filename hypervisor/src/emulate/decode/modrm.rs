//! The ModRM byte and the memory operand it (with SIB and displacement) encodes.
//!
//! 64-bit addressing only (the 0x67 prefix is refused before we get here): mod 00 with
//! r/m 101 is RIP-relative, r/m 100 brings a SIB byte, SIB index 100 without REX.X is "no
//! index", and SIB base 101 with mod 00 is "no base, disp32". REX.B does not change the
//! two special r/m and base encodings (r12 and r13 take the SIB and disp8 forms).

use super::DecodeError;
use super::cursor::Cursor;
use super::operands::{Base, Gpr, Index, MemOperand, RmOperand};
use super::prefixes::{Prefixes, Rex};

const MOD_REGISTER: u8 = 0b11;
const MOD_NO_DISPLACEMENT: u8 = 0b00;
const MOD_DISP8: u8 = 0b01;
const MOD_DISP32: u8 = 0b10;
const RM_SIB: u8 = 0b100;
const RM_RIP_RELATIVE: u8 = 0b101;
const SIB_NO_INDEX: u8 = 0b100;
const SIB_NO_BASE: u8 = 0b101;

/// The three fields of a ModRM byte, not yet extended by REX.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ModRm {
    /// Bits 7..6: addressing mode (11 = register operand).
    pub(super) mode: u8,
    /// Bits 5..3: a register, or an opcode extension (`/digit`).
    pub(super) reg: u8,
    /// Bits 2..0: the r/m operand.
    pub(super) rm: u8,
}

impl ModRm {
    /// Consumes a ModRM byte. `#[inline]`: small and on every decode of a two-byte
    /// system instruction; without the hint, whether it is inlined changed with the
    /// unrelated code that shares its codegen unit (26 instructions on a trapped CR0
    /// read or `mov cr3` when it was not).
    #[inline]
    pub(super) fn read(cursor: &mut Cursor<'_>) -> Result<ModRm, DecodeError> {
        let byte = cursor.byte()?;
        Ok(ModRm {
            mode: byte >> 6,
            reg: (byte >> 3) & 0b111,
            rm: byte & 0b111,
        })
    }

    /// The r/m operand is a register (mod 11).
    pub(super) fn is_register(self) -> bool {
        self.mode == MOD_REGISTER
    }

    /// ModRM.reg extended by REX.R.
    pub(super) fn reg_number(self, prefixes: &Prefixes) -> u8 {
        Rex::extend(prefixes.rex.r, self.reg)
    }

    /// The register ModRM.reg (with REX.R) names.
    pub(super) fn reg_gpr(self, prefixes: &Prefixes) -> Gpr {
        Gpr::from_number(self.reg_number(prefixes))
    }

    /// The register ModRM.rm (with REX.B) names, for mod 11.
    pub(super) fn rm_gpr(self, prefixes: &Prefixes) -> Gpr {
        Gpr::from_number(Rex::extend(prefixes.rex.b, self.rm))
    }
}

/// Consumes the SIB byte and displacement of a memory-form ModRM (mod != 11).
pub(super) fn memory_operand(
    cursor: &mut Cursor<'_>,
    modrm: ModRm,
    prefixes: &Prefixes,
) -> Result<MemOperand, DecodeError> {
    let rex = prefixes.rex;
    let (base, index) = if modrm.rm == RM_SIB {
        let sib = cursor.byte()?;
        let scale = 1u8 << (sib >> 6);
        let index_number = Rex::extend(rex.x, sib >> 3);
        let index = (index_number != SIB_NO_INDEX).then(|| Index {
            register: Gpr::from_number(index_number),
            scale,
        });
        let base = if sib & 0b111 == SIB_NO_BASE && modrm.mode == MOD_NO_DISPLACEMENT {
            Base::None
        } else {
            Base::Register(Gpr::from_number(Rex::extend(rex.b, sib)))
        };
        (base, index)
    } else if modrm.rm == RM_RIP_RELATIVE && modrm.mode == MOD_NO_DISPLACEMENT {
        (Base::Rip, None)
    } else {
        (
            Base::Register(Gpr::from_number(Rex::extend(rex.b, modrm.rm))),
            None,
        )
    };
    let displacement = match modrm.mode {
        MOD_NO_DISPLACEMENT if matches!(base, Base::None | Base::Rip) => cursor.signed(4)?,
        MOD_NO_DISPLACEMENT => 0,
        MOD_DISP8 => cursor.signed(1)?,
        MOD_DISP32 => cursor.signed(4)?,
        _ => return Err(DecodeError::Invalid),
    };
    Ok(MemOperand {
        segment: prefixes.segment,
        base,
        index,
        // A sign-extended 8- or 32-bit value always fits.
        displacement: i32::try_from(displacement).map_err(|_| DecodeError::Invalid)?,
    })
}

/// Consumes the rest of an r/m operand that may be a register or memory.
pub(super) fn rm_operand(
    cursor: &mut Cursor<'_>,
    modrm: ModRm,
    prefixes: &Prefixes,
) -> Result<RmOperand, DecodeError> {
    if modrm.is_register() {
        Ok(RmOperand::Register(modrm.rm_gpr(prefixes)))
    } else {
        memory_operand(cursor, modrm, prefixes).map(RmOperand::Memory)
    }
}
