//! Legacy and REX prefixes: what precedes the opcode, and which combinations we refuse.
//!
//! In 64-bit mode the cs, ds, es and ss overrides are ignored (their bases are 0); fs and
//! gs are recorded. Two different prefixes of one group (f2 with f3, fs with gs, fs or gs
//! with an ignored override) are reserved by the architecture, so they are refused as
//! [`DecodeError::Unsupported`]. A REX prefix counts only immediately before the opcode;
//! one followed by another prefix is [`DecodeError::Invalid`] here (the CPU would
//! silently drop it, which no compiler or assembler relies on).

use super::DecodeError;
use super::cursor::Cursor;
use super::operands::{OperandSize, Segment};

const LOCK: u8 = 0xf0;
const REPNE: u8 = 0xf2;
const REP: u8 = 0xf3;
const OPERAND_SIZE: u8 = 0x66;
const ADDRESS_SIZE: u8 = 0x67;
const FS: u8 = 0x64;
const GS: u8 = 0x65;
/// Segment overrides with no effect in 64-bit mode.
const ES: u8 = 0x26;
const CS: u8 = 0x2e;
const SS: u8 = 0x36;
const DS: u8 = 0x3e;
const REX_FIRST: u8 = 0x40;
const REX_LAST: u8 = 0x4f;

/// Which repeat prefix is present.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Repeat {
    /// f3: `rep` / `repe`.
    Rep,
    /// f2: `repne`.
    Repne,
}

/// The REX prefix's bits (all clear when there is none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Rex {
    /// A REX prefix is present (it changes which byte registers encodings 4-7 name).
    pub(super) present: bool,
    /// REX.W: 64-bit operand size.
    pub(super) w: bool,
    /// REX.R: extends ModRM.reg.
    pub(super) r: bool,
    /// REX.X: extends SIB.index.
    pub(super) x: bool,
    /// REX.B: extends ModRM.rm, SIB.base.
    pub(super) b: bool,
}

impl Rex {
    fn from_byte(byte: u8) -> Rex {
        Rex {
            present: true,
            w: byte & 0b1000 != 0,
            r: byte & 0b0100 != 0,
            x: byte & 0b0010 != 0,
            b: byte & 0b0001 != 0,
        }
    }

    /// `low3` extended by the REX bit `extension` to a 4-bit register number.
    pub(super) fn extend(extension: bool, low3: u8) -> u8 {
        (low3 & 0b111) | (u8::from(extension) << 3)
    }
}

/// Everything before the opcode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Prefixes {
    /// f0.
    pub(super) lock: bool,
    /// f2 or f3.
    pub(super) repeat: Option<Repeat>,
    /// 64 or 65.
    pub(super) segment: Option<Segment>,
    /// 66.
    pub(super) operand_size_override: bool,
    /// The REX prefix.
    pub(super) rex: Rex,
}

/// Whether `byte` is a legacy or REX prefix: one match (most instructions we emulate have
/// no prefix but REX, and this runs on every trapped instruction).
#[inline]
pub(super) fn is_prefix(byte: u8) -> bool {
    matches!(
        byte,
        LOCK | REPNE | REP | OPERAND_SIZE | ADDRESS_SIZE | FS | GS | REX_FIRST
            ..=REX_LAST | ES | CS | SS | DS
    )
}

impl Prefixes {
    /// [`read`](Self::read) with the two commonest cases first: no prefix at all (`cli`,
    /// `sti`, `hlt`, port I/O, the two-byte system instructions) and a lone REX prefix
    /// (64-bit stores into page tables, moves to and from control registers r8-r15).
    #[inline]
    pub(super) fn read_fast(cursor: &mut Cursor<'_>) -> Result<(Prefixes, u8), DecodeError> {
        match cursor.rest() {
            [first, ..] if !is_prefix(*first) => {
                let opcode = cursor.byte()?;
                Ok((Prefixes::default(), opcode))
            }
            [rex @ REX_FIRST..=REX_LAST, second, ..] if !is_prefix(*second) => {
                let rex = Rex::from_byte(*rex);
                cursor.byte()?;
                let opcode = cursor.byte()?;
                Ok((
                    Prefixes {
                        rex,
                        ..Prefixes::default()
                    },
                    opcode,
                ))
            }
            _ => Self::read(cursor),
        }
    }

    /// Consumes the prefixes and the first opcode byte; returns both.
    pub(super) fn read(cursor: &mut Cursor<'_>) -> Result<(Prefixes, u8), DecodeError> {
        let mut prefixes = Prefixes::default();
        let mut ignored_segment = false;
        loop {
            let byte = cursor.byte()?;
            if !is_prefix(byte) {
                if ignored_segment && prefixes.segment.is_some() {
                    return Err(DecodeError::Unsupported);
                }
                return Ok((prefixes, byte));
            }
            if prefixes.rex.present {
                return Err(DecodeError::Invalid);
            }
            match byte {
                LOCK => prefixes.lock = true,
                REPNE => set_once(&mut prefixes.repeat, Repeat::Repne)?,
                REP => set_once(&mut prefixes.repeat, Repeat::Rep)?,
                OPERAND_SIZE => prefixes.operand_size_override = true,
                // 32-bit addressing is never used by the code we emulate.
                ADDRESS_SIZE => return Err(DecodeError::Unsupported),
                FS => set_once(&mut prefixes.segment, Segment::Fs)?,
                GS => set_once(&mut prefixes.segment, Segment::Gs)?,
                REX_FIRST..=REX_LAST => prefixes.rex = Rex::from_byte(byte),
                // ES, CS, SS, DS: no effect in 64-bit mode.
                _ => ignored_segment = true,
            }
        }
    }

    /// The operand size of an instruction whose default is 32 bits.
    pub(super) fn operand_size(&self) -> OperandSize {
        if self.rex.w {
            OperandSize::Qword
        } else if self.operand_size_override {
            OperandSize::Word
        } else {
            OperandSize::Dword
        }
    }

    /// The operand size of a stack instruction (default 64 bits; 32 is not encodable).
    pub(super) fn stack_operand_size(&self) -> OperandSize {
        if self.operand_size_override && !self.rex.w {
            OperandSize::Word
        } else {
            OperandSize::Qword
        }
    }
}

/// Records a prefix of a group that allows one member; repeating the same one is fine.
fn set_once<T: PartialEq>(slot: &mut Option<T>, value: T) -> Result<(), DecodeError> {
    match slot {
        Some(existing) if *existing != value => Err(DecodeError::Unsupported),
        _ => {
            *slot = Some(value);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shortcut decodes every start of an instruction exactly as the loop: the same
    /// prefixes, opcode or error, and the same bytes consumed, for every first two bytes
    /// (followed by a third that ends any prefix run, by a prefix, or by nothing).
    #[test]
    fn read_fast_agrees_with_read() {
        for first in 0..=255u8 {
            for second in 0..=255u8 {
                for tail in [&[0x90u8][..], &[0x66], &[]] {
                    let bytes = [&[first, second][..], tail].concat();
                    let (mut fast, mut slow) = (Cursor::new(&bytes), Cursor::new(&bytes));
                    assert_eq!(
                        (Prefixes::read_fast(&mut fast), fast.position()),
                        (Prefixes::read(&mut slow), slow.position()),
                        "{bytes:02x?}"
                    );
                }
            }
        }
        let (mut fast, mut slow) = (Cursor::new(&[]), Cursor::new(&[]));
        assert_eq!(Prefixes::read_fast(&mut fast), Prefixes::read(&mut slow));
    }
}
