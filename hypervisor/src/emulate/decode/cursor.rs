//! A reader over the fetched instruction bytes that cannot run past them.
//!
//! Every byte the decoder consumes comes through [`Cursor::byte`], which tells apart the
//! two ways of running out: the bytes fetched end (the rest is on a page the fetch could
//! not read: [`DecodeError::Truncated`]) or the instruction would exceed the
//! architectural 15-byte limit ([`DecodeError::Invalid`], as the CPU's #GP).

use super::{DecodeError, MAX_INSTRUCTION_LENGTH};

/// The decoder's position in the instruction bytes.
pub(super) struct Cursor<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at the first of `bytes`.
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Cursor { bytes, position: 0 }
    }

    /// How many bytes have been consumed.
    pub(super) fn position(&self) -> usize {
        self.position
    }

    /// The bytes not consumed yet (for a look ahead; consuming still goes through
    /// [`byte`](Self::byte), which enforces the length limit).
    pub(super) fn rest(&self) -> &'a [u8] {
        self.bytes.get(self.position..).unwrap_or_default()
    }

    /// Consumes one byte.
    pub(super) fn byte(&mut self) -> Result<u8, DecodeError> {
        if self.position >= MAX_INSTRUCTION_LENGTH {
            return Err(DecodeError::Invalid);
        }
        let byte = *self
            .bytes
            .get(self.position)
            .ok_or(DecodeError::Truncated)?;
        self.position += 1;
        Ok(byte)
    }

    /// Consumes a little-endian immediate of `bytes` bytes (at most 8) and returns it
    /// sign-extended to 64 bits.
    pub(super) fn signed(&mut self, bytes: u32) -> Result<i64, DecodeError> {
        let mut value = 0u64;
        for shift in 0..bytes.min(8) {
            value |= u64::from(self.byte()?) << (8 * shift);
        }
        let unused = 64 - 8 * bytes.clamp(1, 8);
        Ok(((value << unused) as i64) >> unused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn immediates_are_little_endian_and_sign_extended() {
        let mut cursor = Cursor::new(&[0x80, 0xfe, 0xff, 0x78, 0x56, 0x34, 0x12]);
        assert_eq!(cursor.signed(1), Ok(-128));
        assert_eq!(cursor.signed(2), Ok(-2));
        assert_eq!(cursor.signed(4), Ok(0x1234_5678));
        assert_eq!(cursor.position(), 7);
        assert_eq!(cursor.signed(1), Err(DecodeError::Truncated));
        let mut cursor = Cursor::new(&[0x00, 0x00, 0x00, 0x80]);
        assert_eq!(cursor.signed(4), Ok(-0x8000_0000));
    }

    #[test]
    fn fifteen_bytes_at_most() {
        let bytes = [0x66u8; 20];
        let mut cursor = Cursor::new(&bytes);
        for _ in 0..MAX_INSTRUCTION_LENGTH {
            assert_eq!(cursor.byte(), Ok(0x66));
        }
        assert_eq!(cursor.byte(), Err(DecodeError::Invalid));
        assert_eq!(Cursor::new(&[]).byte(), Err(DecodeError::Truncated));
    }
}
