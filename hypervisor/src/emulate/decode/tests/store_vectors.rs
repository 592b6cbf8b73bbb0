//! Test vectors for the stores of writable-page-table emulation: every store form, with
//! byte registers (ah..bh without REX, spl and r8b with it), every operand size and
//! immediate extension, and with and without LOCK.

use super::Vector;
use super::vectors::{at, rip, sib, v, with_segment};
use crate::emulate::decode::{
    Base, Gpr, Instruction, MemOperand, OperandSize, RegisterOperand, Segment, Store, StoreOp,
    StoreSource,
};

use Gpr::*;
use Instruction as I;
use OperandSize::{Byte, Dword, Qword, Word};

fn reg(register: Gpr) -> StoreSource {
    StoreSource::Register(RegisterOperand {
        register,
        high_byte: false,
    })
}

fn high(register: Gpr) -> StoreSource {
    StoreSource::Register(RegisterOperand {
        register,
        high_byte: true,
    })
}

fn store(dst: MemOperand, width: OperandSize, src: StoreSource, op: StoreOp) -> Instruction {
    I::Store(Store {
        dst,
        width,
        src,
        op,
        locked: op == StoreOp::Exchange,
    })
}

fn locked(instruction: Instruction) -> Instruction {
    match instruction {
        I::Store(store) => I::Store(Store {
            locked: true,
            ..store
        }),
        other => other,
    }
}

/// The store vectors.
pub(super) fn all() -> Vec<Vector> {
    use StoreOp::{And, CompareExchange, CompareExchange8b, Exchange, Move, Or, Xor};
    let imm = StoreSource::Immediate;
    vec![
        // mov r/m, r
        v(&[0x88, 0x08], store(at(Rax, 0), Byte, reg(Rcx), Move)),
        v(&[0x88, 0x20], store(at(Rax, 0), Byte, high(Rax), Move)),
        v(&[0x88, 0x3b], store(at(Rbx, 0), Byte, high(Rbx), Move)),
        v(&[0x40, 0x88, 0x20], store(at(Rax, 0), Byte, reg(Rsp), Move)),
        v(&[0x44, 0x88, 0x00], store(at(Rax, 0), Byte, reg(R8), Move)),
        v(&[0x89, 0x18], store(at(Rax, 0), Dword, reg(Rbx), Move)),
        v(
            &[0x48, 0x89, 0x18],
            store(at(Rax, 0), Qword, reg(Rbx), Move),
        ),
        v(&[0x66, 0x89, 0x18], store(at(Rax, 0), Word, reg(Rbx), Move)),
        v(
            &[0x66, 0x48, 0x89, 0x18],
            store(at(Rax, 0), Qword, reg(Rbx), Move),
        ),
        v(&[0x4c, 0x89, 0x03], store(at(Rbx, 0), Qword, reg(R8), Move)),
        v(
            &[0x48, 0x89, 0x44, 0x24, 0x08],
            store(at(Rsp, 8), Qword, reg(Rax), Move),
        ),
        v(
            &[0x48, 0x89, 0x04, 0xcd, 0x00, 0x10, 0x00, 0x00],
            store(
                sib(Base::None, Some((Rcx, 8)), 0x1000),
                Qword,
                reg(Rax),
                Move,
            ),
        ),
        v(
            &[0x48, 0x89, 0x05, 0x10, 0x00, 0x00, 0x00],
            store(rip(0x10), Qword, reg(Rax), Move),
        ),
        v(
            &[0x64, 0x48, 0x89, 0x04, 0x25, 0x28, 0x00, 0x00, 0x00],
            store(
                with_segment(Segment::Fs, sib(Base::None, None, 0x28)),
                Qword,
                reg(Rax),
                Move,
            ),
        ),
        v(
            &[0x65, 0x4c, 0x89, 0x3c, 0x25, 0x10, 0x00, 0x00, 0x00],
            store(
                with_segment(Segment::Gs, sib(Base::None, None, 0x10)),
                Qword,
                reg(R15),
                Move,
            ),
        ),
        v(
            &[0x4a, 0x89, 0x04, 0xe0],
            store(
                sib(Base::Register(Rax), Some((R12, 8)), 0),
                Qword,
                reg(Rax),
                Move,
            ),
        ),
        v(
            &[0x49, 0x89, 0x87, 0x00, 0x10, 0x00, 0x00],
            store(at(R15, 0x1000), Qword, reg(Rax), Move),
        ),
        // mov r/m, imm
        v(
            &[0xc6, 0x00, 0xff],
            store(at(Rax, 0), Byte, imm(0xff), Move),
        ),
        v(
            &[0xc6, 0x40, 0x08, 0x7f],
            store(at(Rax, 8), Byte, imm(0x7f), Move),
        ),
        v(
            &[0xc7, 0x00, 0x78, 0x56, 0x34, 0x12],
            store(at(Rax, 0), Dword, imm(0x1234_5678), Move),
        ),
        v(
            &[0xc7, 0x00, 0xff, 0xff, 0xff, 0xff],
            store(at(Rax, 0), Dword, imm(0xffff_ffff), Move),
        ),
        v(
            &[0x66, 0xc7, 0x00, 0x34, 0x12],
            store(at(Rax, 0), Word, imm(0x1234), Move),
        ),
        v(
            &[0x48, 0xc7, 0x00, 0xff, 0xff, 0xff, 0xff],
            store(at(Rax, 0), Qword, imm(u64::MAX), Move),
        ),
        v(
            &[0x48, 0xc7, 0x00, 0x00, 0x00, 0x00, 0x80],
            store(at(Rax, 0), Qword, imm(0xffff_ffff_8000_0000), Move),
        ),
        v(
            &[0x48, 0xc7, 0x00, 0x67, 0x30, 0x00, 0x00],
            store(at(Rax, 0), Qword, imm(0x3067), Move),
        ),
        v(
            // The immediate follows the displacement.
            &[0xc7, 0x05, 0x00, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00],
            store(rip(0x100), Dword, imm(1), Move),
        ),
        // xchg (always locked)
        v(&[0x86, 0x08], store(at(Rax, 0), Byte, reg(Rcx), Exchange)),
        v(&[0x86, 0x26], store(at(Rsi, 0), Byte, high(Rax), Exchange)),
        v(
            &[0x48, 0x87, 0x08],
            store(at(Rax, 0), Qword, reg(Rcx), Exchange),
        ),
        v(
            &[0xf0, 0x48, 0x87, 0x08],
            store(at(Rax, 0), Qword, reg(Rcx), Exchange),
        ),
        v(&[0x87, 0x3e], store(at(Rsi, 0), Dword, reg(Rdi), Exchange)),
        // cmpxchg
        v(
            &[0x0f, 0xb1, 0x0a],
            store(at(Rdx, 0), Dword, reg(Rcx), CompareExchange),
        ),
        v(
            &[0xf0, 0x48, 0x0f, 0xb1, 0x0a],
            locked(store(at(Rdx, 0), Qword, reg(Rcx), CompareExchange)),
        ),
        v(
            &[0xf0, 0x0f, 0xb0, 0x0a],
            locked(store(at(Rdx, 0), Byte, reg(Rcx), CompareExchange)),
        ),
        v(
            &[0x66, 0x0f, 0xb1, 0x0a],
            store(at(Rdx, 0), Word, reg(Rcx), CompareExchange),
        ),
        v(
            &[0xf0, 0x66, 0x0f, 0xb1, 0x0a],
            locked(store(at(Rdx, 0), Word, reg(Rcx), CompareExchange)),
        ),
        v(
            &[0xf0, 0x4d, 0x0f, 0xb1, 0x4d, 0x00],
            locked(store(at(R13, 0), Qword, reg(R9), CompareExchange)),
        ),
        // cmpxchg8b
        v(
            &[0x0f, 0xc7, 0x0e],
            store(at(Rsi, 0), Qword, StoreSource::EcxEbx, CompareExchange8b),
        ),
        v(
            &[0xf0, 0x0f, 0xc7, 0x0e],
            locked(store(
                at(Rsi, 0),
                Qword,
                StoreSource::EcxEbx,
                CompareExchange8b,
            )),
        ),
        // or / and / xor r/m, r
        v(&[0x48, 0x09, 0x08], store(at(Rax, 0), Qword, reg(Rcx), Or)),
        v(
            &[0xf0, 0x48, 0x09, 0x08],
            locked(store(at(Rax, 0), Qword, reg(Rcx), Or)),
        ),
        v(&[0x08, 0x20], store(at(Rax, 0), Byte, high(Rax), Or)),
        v(&[0x21, 0x08], store(at(Rax, 0), Dword, reg(Rcx), And)),
        v(
            &[0xf0, 0x20, 0x08],
            locked(store(at(Rax, 0), Byte, reg(Rcx), And)),
        ),
        v(&[0x30, 0x08], store(at(Rax, 0), Byte, reg(Rcx), Xor)),
        v(
            &[0xf0, 0x48, 0x31, 0x08],
            locked(store(at(Rax, 0), Qword, reg(Rcx), Xor)),
        ),
        // or / and / xor r/m, imm
        v(&[0x80, 0x08, 0x01], store(at(Rax, 0), Byte, imm(1), Or)),
        v(&[0x80, 0x20, 0xfe], store(at(Rax, 0), Byte, imm(0xfe), And)),
        v(&[0x80, 0x30, 0x80], store(at(Rax, 0), Byte, imm(0x80), Xor)),
        v(
            &[0x48, 0x81, 0x08, 0x00, 0x00, 0x00, 0x80],
            store(at(Rax, 0), Qword, imm(0xffff_ffff_8000_0000), Or),
        ),
        v(
            &[0x81, 0x20, 0xff, 0xff, 0xff, 0x7f],
            store(at(Rax, 0), Dword, imm(0x7fff_ffff), And),
        ),
        v(
            &[0x66, 0x81, 0x30, 0x34, 0x12],
            store(at(Rax, 0), Word, imm(0x1234), Xor),
        ),
        v(
            &[0x48, 0x83, 0x20, 0xfe],
            store(at(Rax, 0), Qword, imm(0xffff_ffff_ffff_fffe), And),
        ),
        v(
            &[0x83, 0x08, 0xff],
            store(at(Rax, 0), Dword, imm(0xffff_ffff), Or),
        ),
        v(
            &[0x66, 0x83, 0x08, 0x80],
            store(at(Rax, 0), Word, imm(0xff80), Or),
        ),
        v(
            &[0xf0, 0x48, 0x83, 0x24, 0x24, 0xfe],
            locked(store(at(Rsp, 0), Qword, imm(0xffff_ffff_ffff_fffe), And)),
        ),
        v(
            &[0xf0, 0x80, 0x0c, 0x24, 0x01],
            locked(store(at(Rsp, 0), Byte, imm(1), Or)),
        ),
        // movnti
        v(
            &[0x0f, 0xc3, 0x08],
            store(at(Rax, 0), Dword, reg(Rcx), Move),
        ),
        v(
            &[0x48, 0x0f, 0xc3, 0x08],
            store(at(Rax, 0), Qword, reg(Rcx), Move),
        ),
    ]
}
