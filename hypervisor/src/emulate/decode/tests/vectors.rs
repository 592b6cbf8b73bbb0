//! The table of encodings and what they must decode to: every non-store instruction form
//! the decoder knows (stores are in `store_vectors`), with REX variants, SIB,
//! disp8/disp32, RIP-relative operands, segment overrides and the operand-size prefix.

use super::Vector;
use crate::emulate::decode::{
    Base, ControlRegister, Gpr, Index, Instruction, MemOperand, OperandSize, PortOperand,
    RmOperand, Segment,
};

use ControlRegister::{Cr0, Cr2, Cr3, Cr4, Cr8};
use Gpr::*;
use Instruction as I;
use OperandSize::{Byte, Dword, Qword, Word};

/// The longest instruction there may be: 14 redundant prefixes and `cli`.
static LONGEST: [u8; 15] = {
    let mut bytes = [0x66; 15];
    bytes[14] = 0xfa;
    bytes
};

/// `[base + displacement]`.
pub(super) fn at(base: Gpr, displacement: i32) -> MemOperand {
    MemOperand {
        segment: None,
        base: Base::Register(base),
        index: None,
        displacement,
    }
}

/// `[base + index * scale + displacement]`, with `Base::None` or `Base::Rip` as asked.
pub(super) fn sib(base: Base, index: Option<(Gpr, u8)>, displacement: i32) -> MemOperand {
    MemOperand {
        segment: None,
        base,
        index: index.map(|(register, scale)| Index { register, scale }),
        displacement,
    }
}

pub(super) fn rip(displacement: i32) -> MemOperand {
    sib(Base::Rip, None, displacement)
}

pub(super) fn with_segment(segment: Segment, operand: MemOperand) -> MemOperand {
    MemOperand {
        segment: Some(segment),
        ..operand
    }
}

pub(super) fn v(bytes: &'static [u8], expected: Instruction) -> Vector {
    Vector { bytes, expected }
}

/// Every vector, stores included.
pub(super) fn all() -> Vec<Vector> {
    let mut all = system();
    all.extend(descriptor_tables());
    all.extend(io_and_control_flow());
    all.extend(super::store_vectors::all());
    all
}

fn system() -> Vec<Vector> {
    vec![
        v(&[0xfa], I::Cli),
        v(&[0xfb], I::Sti),
        v(&[0xf4], I::Hlt),
        v(&[0x41, 0xfa], I::Cli),
        v(&[0x2e, 0x3e, 0xfa], I::Cli),
        v(&LONGEST, I::Cli),
        v(&[0x9c], I::Pushf { size: Qword }),
        v(&[0x66, 0x9c], I::Pushf { size: Word }),
        v(&[0x48, 0x9c], I::Pushf { size: Qword }),
        v(&[0x9d], I::Popf { size: Qword }),
        v(&[0x66, 0x9d], I::Popf { size: Word }),
        v(&[0x66, 0x48, 0x9d], I::Popf { size: Qword }),
        v(&[0x0f, 0x06], I::Clts),
        v(&[0x0f, 0x09], I::Wbinvd),
        v(&[0x0f, 0x08], I::Invd),
        v(&[0x0f, 0x32], I::Rdmsr),
        v(&[0x0f, 0x30], I::Wrmsr),
        v(&[0x0f, 0x31], I::Rdtsc),
        v(&[0x0f, 0x33], I::Rdpmc),
        v(&[0x0f, 0xa2], I::Cpuid),
        v(&[0x0f, 0x01, 0xd1], I::Xsetbv),
        v(&[0x0f, 0x22, 0xd8], I::MovToCr { cr: Cr3, src: Rax }),
        v(&[0x0f, 0x22, 0xe0], I::MovToCr { cr: Cr4, src: Rax }),
        v(&[0x0f, 0x22, 0xc3], I::MovToCr { cr: Cr0, src: Rbx }),
        v(&[0x0f, 0x22, 0xd0], I::MovToCr { cr: Cr2, src: Rax }),
        v(&[0x41, 0x0f, 0x22, 0xdf], I::MovToCr { cr: Cr3, src: R15 }),
        v(&[0x44, 0x0f, 0x22, 0xc0], I::MovToCr { cr: Cr8, src: Rax }),
        v(&[0x0f, 0x20, 0xd8], I::MovFromCr { cr: Cr3, dst: Rax }),
        v(&[0x0f, 0x20, 0xd7], I::MovFromCr { cr: Cr2, dst: Rdi }),
        v(
            &[0x44, 0x0f, 0x20, 0xc1],
            I::MovFromCr { cr: Cr8, dst: Rcx },
        ),
        v(
            &[0x49, 0x0f, 0x20, 0xe4],
            I::MovFromCr { cr: Cr4, dst: R12 },
        ),
        v(&[0x0f, 0x23, 0xf8], I::MovToDr { dr: 7, src: Rax }),
        v(&[0x41, 0x0f, 0x23, 0xc1], I::MovToDr { dr: 0, src: R9 }),
        v(&[0x0f, 0x21, 0xf0], I::MovFromDr { dr: 6, dst: Rax }),
        v(&[0x49, 0x0f, 0x21, 0xda], I::MovFromDr { dr: 3, dst: R10 }),
    ]
}

fn descriptor_tables() -> Vec<Vector> {
    vec![
        v(&[0x0f, 0x01, 0x38], I::Invlpg { addr: at(Rax, 0) }),
        v(&[0x0f, 0x01, 0x3c, 0x24], I::Invlpg { addr: at(Rsp, 0) }),
        v(
            &[0x41, 0x0f, 0x01, 0x3c, 0x24],
            I::Invlpg { addr: at(R12, 0) },
        ),
        v(&[0x0f, 0x01, 0x7d, 0x08], I::Invlpg { addr: at(Rbp, 8) }),
        v(
            &[0x41, 0x0f, 0x01, 0x7d, 0xf8],
            I::Invlpg { addr: at(R13, -8) },
        ),
        v(
            &[0x0f, 0x01, 0x7c, 0x24, 0xf0],
            I::Invlpg { addr: at(Rsp, -16) },
        ),
        v(
            &[0x0f, 0x01, 0xb8, 0x00, 0x00, 0x00, 0x80],
            I::Invlpg {
                addr: at(Rax, i32::MIN),
            },
        ),
        v(
            &[0x0f, 0x01, 0x3d, 0x78, 0x56, 0x34, 0x12],
            I::Invlpg {
                addr: rip(0x1234_5678),
            },
        ),
        v(
            // REX.B does not turn RIP-relative into [r13].
            &[0x41, 0x0f, 0x01, 0x3d, 0xf0, 0xff, 0xff, 0xff],
            I::Invlpg { addr: rip(-16) },
        ),
        v(
            &[0x0f, 0x01, 0x3c, 0x25, 0x00, 0x10, 0x00, 0x00],
            I::Invlpg {
                addr: sib(Base::None, None, 0x1000),
            },
        ),
        v(
            // Nor does it give a SIB with base 101 and mod 00 a base.
            &[0x41, 0x0f, 0x01, 0x3c, 0x25, 0x00, 0x10, 0x00, 0x00],
            I::Invlpg {
                addr: sib(Base::None, None, 0x1000),
            },
        ),
        v(
            &[0x0f, 0x01, 0xbc, 0x88, 0x00, 0x01, 0x00, 0x00],
            I::Invlpg {
                addr: sib(Base::Register(Rax), Some((Rcx, 4)), 0x100),
            },
        ),
        v(
            &[0x42, 0x0f, 0x01, 0x3c, 0x20],
            I::Invlpg {
                addr: sib(Base::Register(Rax), Some((R12, 1)), 0),
            },
        ),
        v(
            &[0x65, 0x0f, 0x01, 0x38],
            I::Invlpg {
                addr: with_segment(Segment::Gs, at(Rax, 0)),
            },
        ),
        v(
            &[0x64, 0x0f, 0x01, 0x3c, 0xc5, 0x10, 0x00, 0x00, 0x00],
            I::Invlpg {
                addr: with_segment(Segment::Fs, sib(Base::None, Some((Rax, 8)), 0x10)),
            },
        ),
        v(&[0x2e, 0x0f, 0x01, 0x38], I::Invlpg { addr: at(Rax, 0) }),
        v(&[0x0f, 0x01, 0x10], I::Lgdt { addr: at(Rax, 0) }),
        v(&[0x0f, 0x01, 0x18], I::Lidt { addr: at(Rax, 0) }),
        v(&[0x0f, 0x01, 0x00], I::Sgdt { addr: at(Rax, 0) }),
        v(&[0x0f, 0x01, 0x4f, 0x02], I::Sidt { addr: at(Rdi, 2) }),
        v(
            &[0x0f, 0x00, 0xd0],
            I::Lldt {
                src: RmOperand::Register(Rax),
            },
        ),
        v(
            &[0x0f, 0x00, 0x10],
            I::Lldt {
                src: RmOperand::Memory(at(Rax, 0)),
            },
        ),
        v(
            &[0x41, 0x0f, 0x00, 0xd8],
            I::Ltr {
                src: RmOperand::Register(R8),
            },
        ),
        v(
            &[0x0f, 0x01, 0xf0],
            I::Lmsw {
                src: RmOperand::Register(Rax),
            },
        ),
        v(
            &[0x0f, 0x01, 0x30],
            I::Lmsw {
                src: RmOperand::Memory(at(Rax, 0)),
            },
        ),
        v(
            &[0x0f, 0x01, 0xe0],
            I::Smsw {
                dst: RmOperand::Register(Rax),
                size: Dword,
            },
        ),
        v(
            &[0x48, 0x0f, 0x01, 0xe0],
            I::Smsw {
                dst: RmOperand::Register(Rax),
                size: Qword,
            },
        ),
        v(
            &[0x0f, 0x01, 0x20],
            I::Smsw {
                dst: RmOperand::Memory(at(Rax, 0)),
                size: Word,
            },
        ),
    ]
}

fn io_and_control_flow() -> Vec<Vector> {
    let imm = PortOperand::Immediate;
    let dx = PortOperand::Dx;
    vec![
        v(
            &[0xe4, 0x60],
            I::In {
                port: imm(0x60),
                size: Byte,
            },
        ),
        v(
            &[0xe5, 0x71],
            I::In {
                port: imm(0x71),
                size: Dword,
            },
        ),
        v(
            &[0x66, 0xe5, 0x71],
            I::In {
                port: imm(0x71),
                size: Word,
            },
        ),
        v(
            &[0xec],
            I::In {
                port: dx,
                size: Byte,
            },
        ),
        v(
            &[0xed],
            I::In {
                port: dx,
                size: Dword,
            },
        ),
        v(
            &[0x66, 0xed],
            I::In {
                port: dx,
                size: Word,
            },
        ),
        v(
            &[0xe6, 0x80],
            I::Out {
                port: imm(0x80),
                size: Byte,
            },
        ),
        v(
            &[0xe7, 0xff],
            I::Out {
                port: imm(0xff),
                size: Dword,
            },
        ),
        v(
            &[0x66, 0xe7, 0x80],
            I::Out {
                port: imm(0x80),
                size: Word,
            },
        ),
        v(
            &[0xee],
            I::Out {
                port: dx,
                size: Byte,
            },
        ),
        v(
            &[0x40, 0xef],
            I::Out {
                port: dx,
                size: Dword,
            },
        ),
        v(
            &[0x66, 0xef],
            I::Out {
                port: dx,
                size: Word,
            },
        ),
        v(
            &[0x6c],
            I::Ins {
                size: Byte,
                rep: false,
            },
        ),
        v(
            &[0xf3, 0x6d],
            I::Ins {
                size: Dword,
                rep: true,
            },
        ),
        v(
            &[0x66, 0xf3, 0x6d],
            I::Ins {
                size: Word,
                rep: true,
            },
        ),
        v(
            &[0x6e],
            I::Outs {
                size: Byte,
                rep: false,
                segment: None,
            },
        ),
        v(
            &[0xf3, 0x6f],
            I::Outs {
                size: Dword,
                rep: true,
                segment: None,
            },
        ),
        v(
            &[0xf3, 0x66, 0x6f],
            I::Outs {
                size: Word,
                rep: true,
                segment: None,
            },
        ),
        v(
            &[0x65, 0xf3, 0x6e],
            I::Outs {
                size: Byte,
                rep: true,
                segment: Some(Segment::Gs),
            },
        ),
        v(&[0xcd, 0x80], I::Int { vector: 0x80 }),
        v(&[0xcc], I::Int3),
        v(&[0xce], I::Into),
        v(&[0xcf], I::Iret { size: Dword }),
        v(&[0x48, 0xcf], I::Iret { size: Qword }),
        v(&[0x66, 0xcf], I::Iret { size: Word }),
        v(&[0x0f, 0x05], I::Syscall),
        v(&[0x0f, 0x07], I::Sysret { size: Dword }),
        v(&[0x48, 0x0f, 0x07], I::Sysret { size: Qword }),
        v(&[0x0f, 0x01, 0xf8], I::Swapgs),
        v(&[0x0f, 0x0b], I::Ud2),
        v(&[0x40, 0x0f, 0x0b], I::Ud2),
        v(&[0x0f, 0x0b, 0x78, 0x65, 0x6e, 0x0f, 0xa2], I::ForcedCpuid),
    ]
}
