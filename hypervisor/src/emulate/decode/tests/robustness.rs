//! Hostile input: malformed and unsupported encodings are refused with the right error,
//! and no byte string (random, mutated from the vectors, or every short one) makes the
//! decoder panic, read past the bytes it was given, or disagree with its own truncations.

use super::{PADDINGS, starts_with_ud2, vectors};
use crate::emulate::decode::{
    Base, DecodeError, Decoded, Instruction, MAX_INSTRUCTION_LENGTH, OperandSize, RmOperand,
    StoreSource, decode,
};

use DecodeError::{Invalid, Truncated, Unsupported};

fn expect(cases: &[(&[u8], DecodeError, &str)]) {
    for &(bytes, error, why) in cases {
        for padding in PADDINGS {
            let mut padded = bytes.to_vec();
            padded.resize(MAX_INSTRUCTION_LENGTH, padding);
            assert_eq!(decode(&padded), Err(error), "{bytes:02x?} ({why})");
        }
    }
}

#[test]
fn malformed_encodings_are_invalid() {
    expect(&[
        (&[0xf0, 0xfa], Invalid, "lock cli"),
        (&[0xf0, 0x89, 0x08], Invalid, "lock mov"),
        (&[0xf0, 0xc7, 0x00, 1, 0, 0, 0], Invalid, "lock mov imm"),
        (&[0xf0, 0x0f, 0xc3, 0x08], Invalid, "lock movnti"),
        (&[0xf0, 0x48, 0x09, 0xc8], Invalid, "lock or to a register"),
        (&[0xf0, 0x87, 0xc8], Invalid, "lock xchg of registers"),
        (
            &[0xf0, 0x83, 0xc8, 0x01],
            Invalid,
            "lock or imm to a register",
        ),
        (
            &[0xf0, 0x0f, 0x22, 0xd8],
            Invalid,
            "lock mov cr3 (AMD's alternative cr8)",
        ),
        (&[0xf0, 0x0f, 0x01, 0x38], Invalid, "lock invlpg"),
        (&[0xf0, 0x0f, 0xa2], Invalid, "lock cpuid"),
        (&[0xf0, 0x0f, 0x01, 0xf8], Invalid, "lock swapgs"),
        (&[0x48, 0x66, 0xfa], Invalid, "REX before a legacy prefix"),
        (&[0x48, 0x48, 0xcf], Invalid, "two REX prefixes"),
        (&[0x40, 0xf0, 0x87, 0x08], Invalid, "REX before lock"),
        (&[0x0f, 0x22, 0x18], Invalid, "mov cr3 with mod 00"),
        (
            &[0x0f, 0x20, 0x58, 0x10],
            Invalid,
            "mov from cr3 with mod 01",
        ),
        (&[0x0f, 0x22, 0xc8], Invalid, "cr1"),
        (&[0x0f, 0x22, 0xe8], Invalid, "cr5"),
        (&[0x0f, 0x20, 0xf0], Invalid, "cr6"),
        (&[0x0f, 0x22, 0xf8], Invalid, "cr7"),
        (&[0x44, 0x0f, 0x22, 0xc8], Invalid, "cr9"),
        (&[0x44, 0x0f, 0x20, 0xf8], Invalid, "cr15"),
        (&[0x44, 0x0f, 0x23, 0xc0], Invalid, "dr8"),
        (&[0x0f, 0x21, 0x00], Invalid, "mov from dr with mod 00"),
        (&[0x0f, 0xc3, 0xc8], Invalid, "movnti to a register"),
        (
            &[0x82, 0x08, 0x01],
            Invalid,
            "82 does not exist in 64-bit mode",
        ),
    ]);
}

#[test]
fn more_than_fifteen_bytes_is_invalid() {
    let mut sixteen = [0x66u8; 16];
    sixteen[15] = 0xfa;
    assert_eq!(decode(&sixteen), Err(Invalid));
    assert_eq!(decode(&sixteen[1..]).unwrap().length, 15);
    // 14 prefixes and int: the vector would be byte 16, however few bytes there are.
    let mut int = [0x66u8; 15];
    int[14] = 0xcd;
    assert_eq!(decode(&int), Err(Invalid));
    assert_eq!(decode(&[0x66; 15]), Err(Invalid));
    assert_eq!(decode(&[0x66; 14]), Err(Truncated));
    assert_eq!(
        decode(&[0x2e; 40]),
        Err(Invalid),
        "bytes past 15 are never read"
    );
}

#[test]
fn what_we_do_not_emulate_is_unsupported() {
    expect(&[
        (&[0x67, 0x0f, 0x01, 0x38], Unsupported, "32-bit addressing"),
        (&[0x90], Unsupported, "nop"),
        (&[0xc3], Unsupported, "ret"),
        (&[0x48, 0x01, 0x08], Unsupported, "add [rax], rcx"),
        (&[0x80, 0x00, 0x01], Unsupported, "add byte [rax], 1"),
        (&[0x83, 0x38, 0x00], Unsupported, "cmp dword [rax], 0"),
        (&[0x0f, 0x01, 0xf9], Unsupported, "rdtscp"),
        (&[0x0f, 0x01, 0xc1], Unsupported, "vmcall"),
        (
            &[0x0f, 0x01, 0xff],
            Unsupported,
            "0f 01 /7 with mod 11 is not invlpg",
        ),
        (&[0x0f, 0x01, 0x28], Unsupported, "0f 01 /5 memory"),
        (&[0x0f, 0x00, 0xc0], Unsupported, "sldt"),
        (&[0x0f, 0xc7, 0xf0], Unsupported, "rdrand"),
        (&[0x48, 0x0f, 0xc7, 0x0e], Unsupported, "cmpxchg16b"),
        (&[0x0f, 0xc7, 0x36], Unsupported, "vmptrld"),
        (&[0x0f, 0x0f], Unsupported, "3DNow!"),
        (&[0x0f, 0x38, 0x00], Unsupported, "three-byte map"),
        (&[0x89, 0xc8], Unsupported, "mov eax, ecx: not a store"),
        (
            &[0xc7, 0xc0, 1, 0, 0, 0],
            Unsupported,
            "mov eax, 1: not a store",
        ),
        (
            &[0x48, 0x31, 0xc0],
            Unsupported,
            "xor rax, rax: not a store",
        ),
        (&[0xc6, 0xf8, 0x00], Unsupported, "xabort"),
        (&[0xc7, 0x08, 1, 0, 0, 0], Unsupported, "c7 /1"),
        (&[0xf3, 0xfa], Unsupported, "rep cli"),
        (&[0xf3, 0x48, 0x89, 0x08], Unsupported, "xrelease mov"),
        (
            &[0xf2, 0xf0, 0x48, 0x87, 0x08],
            Unsupported,
            "xacquire xchg",
        ),
        (&[0xf2, 0x6c], Unsupported, "repne ins"),
        (&[0xf3, 0xf2, 0x6c], Unsupported, "rep and repne"),
        (&[0x64, 0xfa], Unsupported, "fs on cli"),
        (&[0x65, 0x0f, 0x22, 0xd8], Unsupported, "gs on mov cr3"),
        (&[0x64, 0x6c], Unsupported, "fs on ins (es:rdi)"),
        (&[0x64, 0x65, 0x0f, 0x01, 0x38], Unsupported, "fs and gs"),
        (&[0x3e, 0x64, 0x0f, 0x01, 0x38], Unsupported, "ds and fs"),
        (&[0x64, 0x2e, 0x89, 0x08], Unsupported, "fs and cs"),
        (
            &[0x66, 0x0f, 0x01, 0x38],
            Unsupported,
            "66 in the two-byte map",
        ),
        (&[0xf3, 0x0f, 0x09], Unsupported, "wbnoinvd"),
        (&[0x66, 0x0f, 0x0b], Unsupported, "66 ud2"),
        (&[0x66, 0x0f, 0xc3, 0x08], Unsupported, "66 movnti"),
        (&[0x48, 0xe5, 0x60], Unsupported, "in with REX.W"),
        (&[0x48, 0x6d], Unsupported, "ins with REX.W"),
        (
            &[0x0f, 0x0b, 0x78, 0x65, 0x6e, 0x0f, 0x31],
            Unsupported,
            "forced rdtsc",
        ),
        (
            &[0x0f, 0x0b, 0x78, 0x65, 0x6e, 0x90],
            Unsupported,
            "forced nop",
        ),
    ]);
}

#[test]
fn ud2_looks_ahead_for_the_forced_emulation_signature() {
    assert_eq!(decode(&[0x0f, 0x0b]), Err(Truncated));
    assert_eq!(decode(&[0x0f, 0x0b, 0x78, 0x65]), Err(Truncated));
    assert_eq!(decode(&[0x0f, 0x0b, 0x78, 0x65, 0x6e]), Err(Truncated));
    assert_eq!(
        decode(&[0x0f, 0x0b, 0x78, 0x65, 0x6e, 0x0f]),
        Err(Truncated)
    );
    for not_xen in [&[0x0f, 0x0b, 0x79][..], &[0x0f, 0x0b, 0x78, 0x65, 0x6f]] {
        assert_eq!(
            decode(not_xen),
            Ok(Decoded {
                instruction: Instruction::Ud2,
                length: 2
            })
        );
    }
    // The signature counts only at rip: after a prefix, ud2 stands alone.
    assert_eq!(
        decode(&[0x40, 0x0f, 0x0b, 0x78, 0x65, 0x6e, 0x0f, 0xa2]).unwrap(),
        Decoded {
            instruction: Instruction::Ud2,
            length: 3
        }
    );
}

/// A deterministic pseudo-random generator (xorshift64*), so failures reproduce.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }

    fn byte(&mut self) -> u8 {
        /// Prefixes, opcodes, ModRM and SIB bytes the decoder treats specially.
        const INTERESTING: &[u8] = &[
            0x66, 0x67, 0xf0, 0xf2, 0xf3, 0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0x40, 0x41, 0x42,
            0x44, 0x48, 0x49, 0x4c, 0x4f, 0x0f, 0x00, 0x01, 0x05, 0x07, 0x0b, 0x20, 0x21, 0x22,
            0x23, 0x30, 0x31, 0x32, 0xa2, 0xb0, 0xb1, 0xc3, 0xc6, 0xc7, 0x80, 0x81, 0x82, 0x83,
            0x86, 0x87, 0x88, 0x89, 0x08, 0x09, 0x78, 0x65, 0x6e, 0xcd, 0xcc, 0xce, 0xcf, 0xe4,
            0xe5, 0xec, 0xed, 0x6c, 0x6d, 0x6f, 0x04, 0x0c, 0x24, 0x25, 0x3c, 0x3d, 0x44, 0x84,
            0xbc, 0xc0, 0xc8, 0xd8, 0xe0, 0xf8, 0xff, 0xfa,
        ];
        if self.next() & 1 == 0 {
            INTERESTING[self.below(INTERESTING.len())]
        } else {
            self.next() as u8
        }
    }
}

/// The decoder's promises for one byte string.
fn check(bytes: &[u8]) {
    match decode(bytes) {
        Ok(decoded) => {
            assert!(decoded.length >= 1, "{bytes:02x?}");
            assert!(decoded.length <= bytes.len(), "{bytes:02x?}");
            assert!(decoded.length <= MAX_INSTRUCTION_LENGTH, "{bytes:02x?}");
            check_operands(&decoded.instruction, bytes);
            for length in 0..decoded.length {
                assert_eq!(
                    decode(&bytes[..length]),
                    Err(Truncated),
                    "{bytes:02x?} cut to {length}"
                );
            }
            if !starts_with_ud2(bytes) {
                assert_eq!(
                    decode(&bytes[..decoded.length]),
                    Ok(decoded),
                    "{bytes:02x?} depends on bytes after the instruction"
                );
            }
        }
        Err(Truncated) => assert!(bytes.len() < MAX_INSTRUCTION_LENGTH, "{bytes:02x?}"),
        Err(Invalid | Unsupported) => {}
    }
}

/// Operand invariants an emulator relies on.
fn check_operands(instruction: &Instruction, bytes: &[u8]) {
    let memory = match instruction {
        Instruction::Store(store) => {
            match store.src {
                StoreSource::Immediate(value) => {
                    assert_eq!(value & !store.width.mask(), 0, "{bytes:02x?}")
                }
                StoreSource::Register(register) if register.high_byte => {
                    assert_eq!(store.width, OperandSize::Byte, "{bytes:02x?}")
                }
                _ => {}
            }
            Some(store.dst)
        }
        Instruction::Invlpg { addr }
        | Instruction::Lgdt { addr }
        | Instruction::Lidt { addr }
        | Instruction::Sgdt { addr }
        | Instruction::Sidt { addr } => Some(*addr),
        Instruction::Lmsw {
            src: RmOperand::Memory(addr),
        } => Some(*addr),
        _ => None,
    };
    if let Some(memory) = memory {
        if let Some(index) = memory.index {
            assert!([1, 2, 4, 8].contains(&index.scale), "{bytes:02x?}");
            assert_ne!(index.register, crate::emulate::Gpr::Rsp, "{bytes:02x?}");
        }
        if memory.base == Base::Rip {
            assert!(memory.index.is_none(), "{bytes:02x?}");
        }
    }
}

#[test]
fn random_bytes_never_panic_or_over_read() {
    let mut random = Random(0x9e37_79b9_7f4a_7c15);
    let mut accepted = 0;
    for _ in 0..200_000 {
        let length = random.below(MAX_INSTRUCTION_LENGTH + 5);
        let bytes: Vec<u8> = (0..length).map(|_| random.byte()).collect();
        check(&bytes);
        accepted += usize::from(decode(&bytes).is_ok());
    }
    assert!(
        accepted > 1000,
        "the generator reaches the decoder's paths ({accepted})"
    );
}

#[test]
fn mutated_vectors_never_panic_or_over_read() {
    let mut random = Random(0x0123_4567_89ab_cdef);
    let vectors = vectors::all();
    for _ in 0..100_000 {
        let mut bytes = vectors[random.below(vectors.len())].bytes.to_vec();
        for _ in 0..=random.below(3) {
            let at = random.below(bytes.len() + 1);
            match random.below(4) {
                0 if at < bytes.len() => bytes[at] ^= 1 << random.below(8),
                1 if at < bytes.len() => bytes[at] = random.byte(),
                2 if at < bytes.len() => {
                    bytes.remove(at);
                }
                _ => bytes.insert(at, random.byte()),
            }
        }
        let tail = random.below(6);
        bytes.extend((0..tail).map(|_| random.byte()));
        check(&bytes);
    }
}

#[test]
fn every_short_byte_string_is_handled() {
    for first in 0..=255u8 {
        check(&[first]);
        for second in 0..=255u8 {
            check(&[first, second]);
            check(&[0x0f, first, second]);
            check(&[0x0f, 0x01, first, second]);
            check(&[0x48, first, second, 0x10, 0x20, 0x30, 0x40, 0x50]);
            check(&[0xf0, first, second, 0x24, 0x01]);
        }
    }
}
