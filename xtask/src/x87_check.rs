//! A check on the guest kernel's binary: none of its code touches the x87 (or MMX)
//! registers.
//!
//! The guest kernel's event entry (`pv-guest-kernel/src/arch/events.S`) saves only
//! MXCSR and the XMM registers, which the kernel's Rust code uses; the x87 registers
//! keep the interrupted process's state until a process switch moves them
//! (`process.rs`). That is sound only while no instruction of the kernel reads or
//! writes x87 state: no x87 instruction (`fld`, `fnstcw`, `fninit`, ...) and no MMX
//! one (the MMX registers are the x87 registers, and MMX instructions rewrite the tag
//! word). The Rust compiler emits neither for this target (floats are SSE), but the
//! precompiled `core` or an `asm!` block could; this check decodes every executable
//! section of the built binary and names any such instruction and its function.
//! `fxsave64`/`fxrstor64` (the process switch's own) are allowed: they save and load
//! the whole image.
//!
//! The hypervisor is held to the same rule: its saves of a guest's registers on entry
//! (`hv_save_fpu_xmm`, and the SSE check's search, which ends at them: `sse_check.rs`)
//! cover MXCSR and the XMM registers only, and the x87 state stays the guest's until a
//! vCPU switch saves it whole.

use std::path::Path;

use anyhow::{Context, Result, bail};
use iced_x86::{CpuidFeature, Decoder, DecoderOptions, Instruction, Mnemonic, OpKind};
use object::{Object, ObjectSection, ObjectSymbol, SectionFlags, SymbolKind};

/// Instructions named in an error, at most.
const SHOWN: usize = 10;

/// Fails, naming them, if the ELF binary at `path` has an instruction that touches x87
/// or MMX state (which `unsaved_by`, named in the message, leaves in the CPU).
pub fn check_binary(path: &Path, unsaved_by: &str) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let file =
        object::File::parse(&*bytes).with_context(|| format!("parsing {}", path.display()))?;
    let mut functions: Vec<(u64, u64, String)> = file
        .symbols()
        .filter(|symbol| symbol.kind() == SymbolKind::Text)
        .filter_map(|symbol| {
            let name = symbol.name().ok()?.to_owned();
            Some((symbol.address(), symbol.size(), name))
        })
        .collect();
    functions.sort();
    let mut found = Vec::new();
    let mut decoded = 0;
    for section in file.sections() {
        let executable = matches!(section.flags(),
            SectionFlags::Elf { sh_flags } if sh_flags & u64::from(object::elf::SHF_EXECINSTR) != 0);
        if !executable {
            continue;
        }
        let code = section
            .data()
            .with_context(|| format!("reading section {:?}", section.name()))?;
        let (count, offending) = x87_instructions(code, section.address());
        decoded += count;
        found.extend(offending);
    }
    if decoded == 0 {
        bail!("{} has no code to check", path.display());
    }
    if found.is_empty() {
        return Ok(());
    }
    let mut message = format!(
        "{} instruction(s) touch x87/MMX state, which {unsaved_by} does not save:",
        found.len()
    );
    for (address, text) in found.iter().take(SHOWN) {
        let place = match functions.iter().rev().find(|(start, ..)| start <= address) {
            Some((start, size, name)) if address - start < *size => format!("in {name}"),
            Some((_, _, name)) => format!("after {name}"),
            None => "before any function".to_owned(),
        };
        message.push_str(&format!("\n    {address:#x} {text} ({place})"));
    }
    bail!(message)
}

/// Decodes `code` (loaded at `address`) from its first byte to its last; returns how many
/// instructions it decoded and those that touch x87 or MMX state, with their addresses.
fn x87_instructions(code: &[u8], address: u64) -> (usize, Vec<(u64, String)>) {
    let mut decoder = Decoder::with_ip(64, code, address, DecoderOptions::NONE);
    let mut instruction = Instruction::default();
    let mut count = 0;
    let mut found = Vec::new();
    while decoder.can_decode() {
        decoder.decode_out(&mut instruction);
        count += 1;
        if touches_x87(&instruction) {
            found.push((instruction.ip(), instruction.to_string()));
        }
    }
    (count, found)
}

/// Whether the instruction reads or writes x87 state: an x87 or MMX instruction, one
/// with an x87/MMX register operand, `fwait` (which raises a pending x87 exception: a
/// process could leave one for the kernel to take), `femms`, or the XSAVE family. FXSAVE/
/// FXRSTOR, which save and load the whole image, are the process switch's own.
fn touches_x87(instruction: &Instruction) -> bool {
    match instruction.mnemonic() {
        Mnemonic::Fxsave64 | Mnemonic::Fxrstor64 | Mnemonic::Fxsave | Mnemonic::Fxrstor => {
            return false;
        }
        Mnemonic::Wait
        | Mnemonic::Femms
        | Mnemonic::Xsave
        | Mnemonic::Xsave64
        | Mnemonic::Xsavec
        | Mnemonic::Xsavec64
        | Mnemonic::Xsaveopt
        | Mnemonic::Xsaveopt64
        | Mnemonic::Xsaves
        | Mnemonic::Xsaves64
        | Mnemonic::Xrstor
        | Mnemonic::Xrstor64
        | Mnemonic::Xrstors
        | Mnemonic::Xrstors64 => return true,
        _ => {}
    }
    let x87_feature = instruction.cpuid_features().iter().any(|feature| {
        matches!(
            feature,
            CpuidFeature::FPU | CpuidFeature::FPU287 | CpuidFeature::FPU387 | CpuidFeature::MMX
        )
    });
    let x87_operand = (0..instruction.op_count()).any(|operand| {
        instruction.op_kind(operand) == OpKind::Register && {
            let register = instruction.op_register(operand);
            register.is_st() || register.is_mm()
        }
    });
    x87_feature || x87_operand
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offending(code: &[u8]) -> Vec<String> {
        x87_instructions(code, 0x1000)
            .1
            .into_iter()
            .map(|(_, text)| text)
            .collect()
    }

    #[test]
    fn sse_and_integer_code_passes() {
        // movaps [rsp+0xa0],xmm0; stmxcsr [rsp+0x18]; fxsave64 [rsp]; fxrstor64 [rax];
        // pxor xmm1,xmm1; mov rax,rbx; ret
        let code = [
            0x0f, 0x29, 0x84, 0x24, 0xa0, 0, 0, 0, 0x0f, 0xae, 0x5c, 0x24, 0x18, 0x48, 0x0f, 0xae,
            0x04, 0x24, 0x48, 0x0f, 0xae, 0x08, 0x66, 0x0f, 0xef, 0xc9, 0x48, 0x89, 0xd8, 0xc3,
        ];
        assert_eq!(x87_instructions(&code, 0).0, 7);
        assert!(offending(&code).is_empty());
    }

    #[test]
    fn x87_instructions_are_found() {
        // fld1; fnstcw [rsp]; fninit; fistp qword [rsp]; fxch st(1)
        for code in [
            &[0xd9, 0xe8][..],
            &[0xd9, 0x3c, 0x24],
            &[0xdb, 0xe3],
            &[0xdf, 0x3c, 0x24],
            &[0xd9, 0xc9],
        ] {
            assert_eq!(offending(code).len(), 1, "{code:x?}");
        }
    }

    #[test]
    fn fwait_femms_and_xsave_are_found() {
        // fwait; femms; xrstor64 [rsp]; xsave64 [rax]; xsaveopt [rax]
        for code in [
            &[0x9b][..],
            &[0x0f, 0x0e],
            &[0x48, 0x0f, 0xae, 0x2c, 0x24],
            &[0x48, 0x0f, 0xae, 0x20],
            &[0x0f, 0xae, 0x30],
        ] {
            assert_eq!(offending(code).len(), 1, "{code:x?}");
        }
    }

    #[test]
    fn mmx_instructions_are_found() {
        // movq mm0,rax; emms; paddb mm1,mm2
        for code in [
            &[0x48, 0x0f, 0x6e, 0xc0][..],
            &[0x0f, 0x77],
            &[0x0f, 0xfc, 0xca],
        ] {
            assert_eq!(offending(code).len(), 1, "{code:x?}");
        }
    }

    #[test]
    fn the_address_is_the_instructions() {
        // nop; fld1
        let (_, found) = x87_instructions(&[0x90, 0xd9, 0xe8], 0x1000);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, 0x1001);
    }
}
