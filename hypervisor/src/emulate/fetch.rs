//! Fetching the bytes of a faulting guest instruction.
//!
//! The bytes at the guest's `rip` are read through the checked guest accessor
//! ([`GuestMem`]), one page at a time: an instruction may straddle a page boundary, and
//! the second page may be unmapped (or the guest may have unmapped it from another vCPU
//! since the fault). The fetch stops at the first page it cannot read, so the decoder sees
//! fewer bytes and reports [`DecodeError::Truncated`](super::DecodeError::Truncated); the
//! caller then reflects a page fault at `rip + bytes.len()`.

use super::decode::MAX_INSTRUCTION_LENGTH;
use crate::guestmem::GuestMem;
use crate::mm::{PAGE_SIZE, PhysMem};

/// Up to [`MAX_INSTRUCTION_LENGTH`] bytes fetched at a guest `rip`: a fixed buffer and
/// how much of it was read, read in place (no staging copy); as a slice by `Deref`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InstructionBytes {
    buffer: [u8; MAX_INSTRUCTION_LENGTH],
    len: usize,
}

impl InstructionBytes {
    /// The bytes fetched.
    pub fn as_slice(&self) -> &[u8] {
        &self.buffer[..self.len]
    }
}

impl core::ops::Deref for InstructionBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

/// Reads up to 15 bytes at guest virtual address `rip`, stopping at the first page that
/// the guest may not read, or at the top of the address space. The result may be empty.
pub fn fetch<M: PhysMem>(guest: &GuestMem<'_, M>, rip: u64) -> InstructionBytes {
    let mut bytes = InstructionBytes {
        buffer: [0; MAX_INSTRUCTION_LENGTH],
        len: 0,
    };
    while bytes.len < MAX_INSTRUCTION_LENGTH {
        let Some(at) = rip.checked_add(bytes.len as u64) else {
            break;
        };
        // The accessor needs `at + len` to fit in 64 bits, so the very last byte of the
        // address space is never readable: stop before it.
        let readable = (PAGE_SIZE - at % PAGE_SIZE).min(u64::MAX - at);
        let wanted = MAX_INSTRUCTION_LENGTH - bytes.len;
        let chunk = usize::try_from(readable).map_or(wanted, |readable| readable.min(wanted));
        if chunk == 0 {
            break;
        }
        let Some(buffer) = bytes.buffer.get_mut(bytes.len..bytes.len + chunk) else {
            break;
        };
        // A read within one page either copies all of it or nothing.
        if guest.read(at, buffer).is_err() {
            break;
        }
        bytes.len += chunk;
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulate::{DecodeError, Instruction, decode};
    use crate::frames::{FrameInfo, FrameTable, Owner};
    use crate::mm::fake::FakeMem;
    use crate::mm::{self, Mfn, pte};

    const FLAGS: u64 = pte::PRESENT | pte::WRITABLE | pte::USER;
    const CODE: u64 = 0x40_0000;
    const TOP_PAGE: u64 = 0xffff_ffff_ffff_f000;

    /// Domain 1 owns frames 0..=8: L4 = 1, L3 = 2, L2 = 3, L1 = 4, data in 5..=8.
    struct World {
        mem: FakeMem,
        storage: Vec<FrameInfo>,
    }

    impl World {
        fn new() -> World {
            let mem = FakeMem::new(16);
            let mut storage = vec![FrameInfo::default(); 16];
            {
                let mut frames = FrameTable::new(&mut storage);
                frames.add_ram(Mfn(0), Mfn(16));
                for _ in 0..9 {
                    frames.alloc(Owner::Domain(1), &mem).unwrap();
                }
                frames.assume_live_root(Mfn(1));
            }
            World { mem, storage }
        }

        /// Maps `va` to `frame` through the tables in frames 1..=4 (distinct `va`s used
        /// here have distinct indices at every level, so they share the tables).
        fn map(&self, va: u64, frame: u64) {
            for (table, level, next) in [(1u64, 4, 2u64), (2, 3, 3), (3, 2, 4)] {
                self.mem.write_u64(
                    table * 4096 + mm::table_index(va, level) as u64 * 8,
                    (next * 4096) | FLAGS,
                );
            }
            self.mem.write_u64(
                4 * 4096 + mm::table_index(va, 1) as u64 * 8,
                (frame * 4096) | FLAGS,
            );
        }

        /// Writes `bytes` at `va`, which must lie in frame `frame` and the frames after it.
        fn put(&self, frame: u64, va: u64, bytes: &[u8]) {
            self.mem.write(frame * 4096 + va % PAGE_SIZE, bytes);
        }

        fn fetch(&mut self, rip: u64) -> InstructionBytes {
            let frames = FrameTable::adopt(&mut self.storage);
            let guest = GuestMem::new(&self.mem, &frames, 1, Mfn(1));
            fetch(&guest, rip)
        }
    }

    /// `mov qword [rax + 0x12345678], 0xffffffffdeadbeef`: 11 bytes.
    const STORE: [u8; 11] = [
        0x48, 0xc7, 0x80, 0x78, 0x56, 0x34, 0x12, 0xef, 0xbe, 0xad, 0xde,
    ];

    #[test]
    fn an_instruction_across_into_an_unmapped_page_is_truncated() {
        let mut world = World::new();
        world.map(CODE, 5);
        let rip = CODE + PAGE_SIZE - 8;
        world.put(5, rip, &STORE[..8]);
        let bytes = world.fetch(rip);
        assert_eq!(bytes.as_slice(), &STORE[..8], "stops at the page boundary");
        assert_eq!(decode(&bytes), Err(DecodeError::Truncated));
    }

    #[test]
    fn an_instruction_across_two_mapped_pages_decodes() {
        let mut world = World::new();
        world.map(CODE, 5);
        world.map(CODE + PAGE_SIZE, 6);
        let rip = CODE + PAGE_SIZE - 8;
        world.put(5, rip, &STORE[..8]);
        world.put(6, CODE + PAGE_SIZE, &STORE[8..]);
        world.put(6, CODE + PAGE_SIZE + 3, &[0xfa; 4]);
        let bytes = world.fetch(rip);
        assert_eq!(bytes.len(), MAX_INSTRUCTION_LENGTH);
        assert_eq!(&bytes[..STORE.len()], &STORE);
        let decoded = decode(&bytes).unwrap();
        assert_eq!(decoded.length, STORE.len());
        let Instruction::Store(store) = decoded.instruction else {
            panic!("not a store: {decoded:?}");
        };
        assert_eq!(
            store.src,
            crate::emulate::StoreSource::Immediate(0xffff_ffff_dead_beef)
        );
        assert_eq!(
            decode(&world.fetch(rip + STORE.len() as u64))
                .unwrap()
                .instruction,
            Instruction::Cli
        );
    }

    #[test]
    fn nothing_is_fetched_from_unmapped_or_non_canonical_addresses() {
        let mut world = World::new();
        world.map(CODE, 5);
        assert!(world.fetch(CODE + PAGE_SIZE).is_empty());
        assert!(world.fetch(0x8000_0000_0000).is_empty());
        assert_eq!(decode(&world.fetch(0)), Err(DecodeError::Truncated));
        assert_eq!(world.fetch(CODE).len(), MAX_INSTRUCTION_LENGTH);
    }

    #[test]
    fn the_top_of_the_address_space_ends_the_fetch() {
        let mut world = World::new();
        assert!(world.fetch(u64::MAX).is_empty());
        world.map(TOP_PAGE, 7);
        world.put(7, u64::MAX - 2, &[0x0f, 0x31, 0x90]);
        let bytes = world.fetch(u64::MAX - 2);
        assert_eq!(
            bytes.as_slice(),
            &[0x0f, 0x31],
            "the last byte is never fetched"
        );
        assert_eq!(decode(&bytes).unwrap().instruction, Instruction::Rdtsc);
        assert!(world.fetch(u64::MAX).is_empty());
        assert_eq!(
            decode(&world.fetch(u64::MAX - 1)),
            Err(DecodeError::Truncated),
            "xor needs a ModRM byte from beyond the top"
        );
        assert_eq!(world.fetch(TOP_PAGE).len(), MAX_INSTRUCTION_LENGTH);
        assert_eq!(world.fetch(u64::MAX - 15).len(), MAX_INSTRUCTION_LENGTH);
        assert_eq!(world.fetch(u64::MAX - 14).len(), 14);
    }
}
