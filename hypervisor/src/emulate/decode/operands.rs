//! Operands of decoded instructions, and the one place they meet the guest's registers.
//!
//! The decoder names registers and memory operands; an emulator reads and writes them
//! here, with the x86 rules for partial registers (a 32-bit write zero-extends, 8- and
//! 16-bit writes merge) and for effective addresses (wrapping arithmetic, RIP-relative
//! from the next instruction, `fs`/`gs` segment bases).

use crate::regs::TrapFrame;

/// The width of an operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperandSize {
    /// 8 bits.
    Byte,
    /// 16 bits.
    Word,
    /// 32 bits.
    Dword,
    /// 64 bits.
    Qword,
}

impl OperandSize {
    /// The width in bytes: 1, 2, 4 or 8.
    pub const fn bytes(self) -> usize {
        match self {
            OperandSize::Byte => 1,
            OperandSize::Word => 2,
            OperandSize::Dword => 4,
            OperandSize::Qword => 8,
        }
    }

    /// A mask of the operand's low bits.
    pub const fn mask(self) -> u64 {
        match self {
            OperandSize::Byte => 0xff,
            OperandSize::Word => 0xffff,
            OperandSize::Dword => 0xffff_ffff,
            OperandSize::Qword => u64::MAX,
        }
    }
}

/// A 64-bit general-purpose register, numbered as in the instruction encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)] // Register names are their own documentation.
pub enum Gpr {
    Rax,
    Rcx,
    Rdx,
    Rbx,
    Rsp,
    Rbp,
    Rsi,
    Rdi,
    R8,
    R9,
    R10,
    R11,
    R12,
    R13,
    R14,
    R15,
}

impl Gpr {
    /// The register with encoding `number`; only the low four bits are used (the three
    /// ModRM/SIB bits plus the REX extension bit).
    pub const fn from_number(number: u8) -> Gpr {
        match number & 0xf {
            0 => Gpr::Rax,
            1 => Gpr::Rcx,
            2 => Gpr::Rdx,
            3 => Gpr::Rbx,
            4 => Gpr::Rsp,
            5 => Gpr::Rbp,
            6 => Gpr::Rsi,
            7 => Gpr::Rdi,
            8 => Gpr::R8,
            9 => Gpr::R9,
            10 => Gpr::R10,
            11 => Gpr::R11,
            12 => Gpr::R12,
            13 => Gpr::R13,
            14 => Gpr::R14,
            _ => Gpr::R15,
        }
    }

    /// The register's encoding, 0 (rax) to 15 (r15).
    pub const fn number(self) -> u8 {
        self as u8
    }

    /// The full 64-bit value of the register in `regs`.
    pub fn read(self, regs: &TrapFrame) -> u64 {
        match self {
            Gpr::Rax => regs.rax,
            Gpr::Rcx => regs.rcx,
            Gpr::Rdx => regs.rdx,
            Gpr::Rbx => regs.rbx,
            Gpr::Rsp => regs.rsp,
            Gpr::Rbp => regs.rbp,
            Gpr::Rsi => regs.rsi,
            Gpr::Rdi => regs.rdi,
            Gpr::R8 => regs.r8,
            Gpr::R9 => regs.r9,
            Gpr::R10 => regs.r10,
            Gpr::R11 => regs.r11,
            Gpr::R12 => regs.r12,
            Gpr::R13 => regs.r13,
            Gpr::R14 => regs.r14,
            Gpr::R15 => regs.r15,
        }
    }

    /// Sets the full 64-bit register in `regs` to `value`.
    pub fn write(self, regs: &mut TrapFrame, value: u64) {
        *self.slot(regs) = value;
    }

    /// The low `size` bits of the register, zero-extended.
    pub fn read_sized(self, regs: &TrapFrame, size: OperandSize) -> u64 {
        self.read(regs) & size.mask()
    }

    /// Writes the low `size` bits of `value` with x86 semantics: a 32-bit write
    /// zero-extends into the whole register, an 8- or 16-bit write keeps the other bits.
    pub fn write_sized(self, regs: &mut TrapFrame, size: OperandSize, value: u64) {
        let slot = self.slot(regs);
        *slot = match size {
            OperandSize::Byte | OperandSize::Word => (*slot & !size.mask()) | (value & size.mask()),
            OperandSize::Dword => value & size.mask(),
            OperandSize::Qword => value,
        };
    }

    fn slot(self, regs: &mut TrapFrame) -> &mut u64 {
        match self {
            Gpr::Rax => &mut regs.rax,
            Gpr::Rcx => &mut regs.rcx,
            Gpr::Rdx => &mut regs.rdx,
            Gpr::Rbx => &mut regs.rbx,
            Gpr::Rsp => &mut regs.rsp,
            Gpr::Rbp => &mut regs.rbp,
            Gpr::Rsi => &mut regs.rsi,
            Gpr::Rdi => &mut regs.rdi,
            Gpr::R8 => &mut regs.r8,
            Gpr::R9 => &mut regs.r9,
            Gpr::R10 => &mut regs.r10,
            Gpr::R11 => &mut regs.r11,
            Gpr::R12 => &mut regs.r12,
            Gpr::R13 => &mut regs.r13,
            Gpr::R14 => &mut regs.r14,
            Gpr::R15 => &mut regs.r15,
        }
    }
}

/// A register operand of an instruction whose width the instruction fixes.
///
/// Without a REX prefix, byte-register encodings 4 to 7 name `ah`, `ch`, `dh` and `bh`:
/// bits 8..16 of rax, rcx, rdx and rbx. That case is `high_byte` set (and then the
/// operand is always a byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegisterOperand {
    /// The 64-bit register holding the operand.
    pub register: Gpr,
    /// The operand is bits 8..16 of `register` (ah, ch, dh, bh).
    pub high_byte: bool,
}

impl RegisterOperand {
    /// The operand's value, zero-extended (`size` is ignored for a high byte).
    pub fn read(self, regs: &TrapFrame, size: OperandSize) -> u64 {
        if self.high_byte {
            (self.register.read(regs) >> 8) & 0xff
        } else {
            self.register.read_sized(regs, size)
        }
    }

    /// Writes the operand with x86 semantics (see [`Gpr::write_sized`]); a high-byte
    /// write replaces bits 8..16 only.
    pub fn write(self, regs: &mut TrapFrame, size: OperandSize, value: u64) {
        if self.high_byte {
            let old = self.register.read(regs);
            self.register
                .write(regs, (old & !0xff00) | ((value & 0xff) << 8));
        } else {
            self.register.write_sized(regs, size, value);
        }
    }
}

/// A segment override that matters in 64-bit mode (cs, ds, es and ss have base 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Segment {
    /// The `fs` prefix (0x64): the address is relative to the guest's fs base.
    Fs,
    /// The `gs` prefix (0x65): the address is relative to the guest's gs base.
    Gs,
}

/// What a memory operand's address is relative to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Base {
    /// No base register (a SIB byte with base 101 and mod 00: displacement only).
    None,
    /// A base register.
    Register(Gpr),
    /// The address of the next instruction (ModRM mod 00, r/m 101).
    Rip,
}

/// The scaled-index part of a SIB memory operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Index {
    /// The index register (never rsp: that encoding means "no index").
    pub register: Gpr,
    /// The multiplier: 1, 2, 4 or 8.
    pub scale: u8,
}

/// A memory operand: `segment:[base + index * scale + displacement]`, 64-bit addressing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemOperand {
    /// An `fs` or `gs` override, if any.
    pub segment: Option<Segment>,
    /// The base.
    pub base: Base,
    /// The scaled index, if any.
    pub index: Option<Index>,
    /// The displacement, sign-extended to 64 bits when the address is formed.
    pub displacement: i32,
}

impl MemOperand {
    /// The linear address the operand names, given the guest's registers, the address of
    /// the instruction after this one (for RIP-relative operands) and the guest's fs and gs
    /// bases. All arithmetic wraps, as the CPU's does; the result is not checked for being
    /// canonical (the guest-memory accessor refuses non-canonical addresses).
    pub fn effective_address(
        &self,
        regs: &TrapFrame,
        next_rip: u64,
        fs_base: u64,
        gs_base: u64,
    ) -> u64 {
        let segment_base = match self.segment {
            None => 0,
            Some(Segment::Fs) => fs_base,
            Some(Segment::Gs) => gs_base,
        };
        let base = match self.base {
            Base::None => 0,
            Base::Register(register) => register.read(regs),
            Base::Rip => next_rip,
        };
        let index = self.index.map_or(0, |index| {
            index
                .register
                .read(regs)
                .wrapping_mul(u64::from(index.scale))
        });
        segment_base
            .wrapping_add(base)
            .wrapping_add(index)
            .wrapping_add(i64::from(self.displacement) as u64)
    }
}

/// A ModRM r/m operand that may be either a register or memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RmOperand {
    /// A general-purpose register (mod 11).
    Register(Gpr),
    /// Memory (mod 00, 01 or 10).
    Memory(MemOperand),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regs() -> TrapFrame {
        TrapFrame {
            rax: 0x1000,
            rbx: 0x20,
            rcx: 3,
            rsp: 0x7fff_0000,
            r12: 0x100,
            r13: 0x5000,
            ..TrapFrame::default()
        }
    }

    fn operand(base: Base, index: Option<(Gpr, u8)>, displacement: i32) -> MemOperand {
        MemOperand {
            segment: None,
            base,
            index: index.map(|(register, scale)| Index { register, scale }),
            displacement,
        }
    }

    #[test]
    fn effective_addresses() {
        let r = regs();
        let ea = |m: MemOperand| m.effective_address(&r, 0xffff_8000_0000_1234, 0xf000, 0x9000);
        assert_eq!(ea(operand(Base::Register(Gpr::Rax), None, 0)), 0x1000);
        assert_eq!(ea(operand(Base::Register(Gpr::Rax), None, -8)), 0xff8);
        assert_eq!(
            ea(operand(Base::Register(Gpr::Rax), Some((Gpr::Rcx, 8)), 0x10)),
            0x1000 + 24 + 0x10
        );
        assert_eq!(
            ea(operand(Base::Register(Gpr::R13), Some((Gpr::R12, 4)), 0)),
            0x5400
        );
        assert_eq!(ea(operand(Base::None, Some((Gpr::Rbx, 2)), 0x100)), 0x140);
        assert_eq!(ea(operand(Base::None, None, -1)), u64::MAX, "disp32 only");
        assert_eq!(ea(operand(Base::Rip, None, 0x10)), 0xffff_8000_0000_1244);
        assert_eq!(ea(operand(Base::Rip, None, -0x1234)), 0xffff_8000_0000_0000);
        let mut with_gs = operand(Base::Register(Gpr::Rsp), None, 8);
        with_gs.segment = Some(Segment::Gs);
        assert_eq!(ea(with_gs), 0x9000 + 0x7fff_0008);
        with_gs.segment = Some(Segment::Fs);
        assert_eq!(ea(with_gs), 0xf000 + 0x7fff_0008);
    }

    #[test]
    fn effective_addresses_wrap() {
        let r = TrapFrame {
            rax: u64::MAX,
            rcx: 1 << 63,
            ..TrapFrame::default()
        };
        let m = operand(Base::Register(Gpr::Rax), Some((Gpr::Rcx, 8)), 2);
        assert_eq!(m.effective_address(&r, 0, u64::MAX, 0), 1);
        let mut fs = m;
        fs.segment = Some(Segment::Fs);
        assert_eq!(fs.effective_address(&r, 0, u64::MAX, 0), 0);
    }

    #[test]
    fn every_register_round_trips() {
        for number in 0..16u8 {
            let gpr = Gpr::from_number(number);
            assert_eq!(gpr.number(), number);
            let mut r = TrapFrame::default();
            gpr.write(&mut r, 0x1122_3344_5566_7700 | u64::from(number));
            assert_eq!(gpr.read(&r), 0x1122_3344_5566_7700 | u64::from(number));
            for other in (0..16u8).filter(|&other| other != number) {
                assert_eq!(Gpr::from_number(other).read(&r), 0, "only {gpr:?} changed");
            }
        }
        assert_eq!(
            Gpr::from_number(0x13),
            Gpr::Rbx,
            "only the low four bits count"
        );
    }

    #[test]
    fn sized_writes_follow_x86_rules() {
        let mut r = TrapFrame {
            rdx: 0x1111_2222_3333_4444,
            ..TrapFrame::default()
        };
        Gpr::Rdx.write_sized(&mut r, OperandSize::Byte, 0xabcd);
        assert_eq!(r.rdx, 0x1111_2222_3333_44cd);
        Gpr::Rdx.write_sized(&mut r, OperandSize::Word, 0x1_beef);
        assert_eq!(r.rdx, 0x1111_2222_3333_beef);
        Gpr::Rdx.write_sized(&mut r, OperandSize::Dword, 0x9_8765_4321);
        assert_eq!(r.rdx, 0x8765_4321, "32-bit writes zero-extend");
        Gpr::Rdx.write_sized(&mut r, OperandSize::Qword, u64::MAX);
        assert_eq!(r.rdx, u64::MAX);
        assert_eq!(Gpr::Rdx.read_sized(&r, OperandSize::Word), 0xffff);
    }

    #[test]
    fn high_byte_registers() {
        let mut r = TrapFrame {
            rbx: 0x1234_5678,
            ..TrapFrame::default()
        };
        let bh = RegisterOperand {
            register: Gpr::Rbx,
            high_byte: true,
        };
        assert_eq!(bh.read(&r, OperandSize::Byte), 0x56);
        bh.write(&mut r, OperandSize::Byte, 0x1ff);
        assert_eq!(r.rbx, 0x1234_ff78);
        let bl = RegisterOperand {
            register: Gpr::Rbx,
            high_byte: false,
        };
        assert_eq!(bl.read(&r, OperandSize::Byte), 0x78);
        bl.write(&mut r, OperandSize::Dword, 0xdead_beef);
        assert_eq!(r.rbx, 0xdead_beef);
    }
}
