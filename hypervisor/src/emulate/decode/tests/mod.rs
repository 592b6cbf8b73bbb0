//! Decoder tests: a table of encodings with their expected decodings (`vectors`), and the
//! hostile-input properties (`robustness`): every truncation is `Truncated`, malformed
//! bytes are refused, and random bytes never panic or over-read.

mod robustness;
mod store_vectors;
mod vectors;

use super::*;

/// One test vector: the exact bytes of an instruction and what they decode to.
pub(super) struct Vector {
    pub(super) bytes: &'static [u8],
    pub(super) expected: Instruction,
}

/// Fillers placed after a vector's bytes: decoding must not depend on them.
pub(super) const PADDINGS: [u8; 4] = [0x90, 0x0f, 0xff, 0x00];

/// Whether `bytes` begin with a `ud2` at offset 0, whose decoding looks at the bytes after
/// it (Xen's forced-emulation signature).
pub(super) fn starts_with_ud2(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x0f, 0x0b])
}

#[test]
fn every_vector_decodes_to_its_instruction_and_length() {
    for vector in vectors::all() {
        for padding in PADDINGS {
            let mut padded = vector.bytes.to_vec();
            padded.resize(20, padding);
            assert_eq!(
                decode(&padded),
                Ok(Decoded {
                    instruction: vector.expected,
                    length: vector.bytes.len()
                }),
                "{:02x?} followed by {padding:02x}",
                vector.bytes
            );
        }
        if !starts_with_ud2(vector.bytes) {
            assert_eq!(
                decode(vector.bytes).map(|decoded| decoded.length),
                Ok(vector.bytes.len()),
                "{:02x?} alone",
                vector.bytes
            );
        }
    }
}

#[test]
fn every_truncation_of_every_vector_is_truncated() {
    for vector in vectors::all() {
        for length in 0..vector.bytes.len() {
            assert_eq!(
                decode(&vector.bytes[..length]),
                Err(DecodeError::Truncated),
                "{:02x?} cut to {length}",
                vector.bytes
            );
        }
    }
}

#[test]
fn vectors_cover_every_instruction_variant() {
    let mut seen = std::collections::HashSet::new();
    let mut store_ops = std::collections::HashSet::new();
    for vector in vectors::all() {
        seen.insert(std::mem::discriminant(&vector.expected));
        if let Instruction::Store(store) = vector.expected {
            store_ops.insert(std::mem::discriminant(&store.op));
        }
    }
    // Keep in step with `Instruction` and `StoreOp`: a new variant needs vectors.
    assert_eq!(seen.len(), 41);
    assert_eq!(store_ops.len(), 7);
}

#[test]
fn next_rip_wraps() {
    let decoded = decode(&[0xfa]).unwrap();
    assert_eq!(decoded.next_rip(0x1000), 0x1001);
    assert_eq!(decoded.next_rip(u64::MAX), 0);
}
