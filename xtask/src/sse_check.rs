//! A check on the hypervisor's binary: the code its SSE-free entries run touches no
//! SSE, AVX, x87 or MMX register.
//!
//! The hypervisor's Rust code may use the XMM registers (the compiler copies and zeroes
//! through them), which hold the guest's values on entry. Most entries protect them
//! lazily: they set CR0.TS, so that the first SSE instruction takes a #NM that saves the
//! guest's registers (`entry.S`). A CR0 write is not free (on a CPU it serialises; under
//! QEMU it ends the translation block and returns to the main loop), so the hypercall
//! fast path (`hv_hypercall_fast`: the null hypercall's kin, the one-request page-table
//! calls, port I/O, ...) sets none in release builds: it relies on this check instead.
//!
//! Starting from the entry functions, the check decodes every piece of code they can
//! reach and fails, naming the instruction and where it is, on
//! - an instruction that reads or writes SSE/AVX/x87/MMX state (a vector or x87
//!   register operand, or an instruction of those extensions, `stmxcsr` included), or
//!   bytes that decode as no instruction;
//! - a call or jump whose target it cannot know (through a register, or through a word
//!   the code could change: a function pointer, a trait object), since the code behind
//!   it is unchecked; likewise `sti`, `popf` and `int n`, after which the interrupt
//!   handlers would run, and a jump into the middle of an instruction.
//!
//! A compiled function (a symbol with a size) is decoded whole, every branch target in
//! it an instruction start, its jump tables (`lea`, `movsxd`, `add`, `jmp` in one
//! straight run of code, nothing in between rewriting their registers; every entry
//! inside the function) staying inside it; assembly (a label without a size) is
//! followed the way the CPU runs it,
//! through its branches and on past the next label. Calls and jumps into other code are
//! followed, directly or through the global offset table (read-only words fixed at link
//! time: `link.ld`), and so are code that runs off a function's end and, for every guest
//! access that may fault, its fix-up (out of line, where `ring0_pf` resumes: the
//! exception table). Functions that never return (a panic: the hypervisor then stops the
//! machine, and the guest's registers no longer matter) end the search: their names are
//! in [`ENDS`]; so do functions that save the guest's registers before anything else
//! ([`SAVE`]).
//!
//! Every release build of the hypervisor is checked (`build.rs`), so `run` and `bench`
//! never start one that fails; `cargo xtask test` reports the check as a step of its own.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::demangle::demangle;
use iced_x86::{
    CpuidFeature, Decoder, DecoderOptions, FlowControl, Instruction, InstructionInfoFactory,
    Mnemonic, OpAccess, OpKind, Register,
};
use object::{Object, ObjectSection, ObjectSymbol, SectionFlags, SymbolKind};

/// Instructions named in an error, at most.
const SHOWN: usize = 12;

/// The (demangled) names of functions that never return, where the search ends: the
/// panic machinery of `core` (every function of `core::panicking` and its few siblings
/// elsewhere, whose names begin so) and the hypervisor's own fatal paths, which stop
/// the machine. A name must begin with one of these, so that, say, the `Debug` impl of a
/// type of `core::panicking` (`<core::panicking::... as ...>::fmt`) is not one.
const ENDS: &[&str] = &[
    "core::panicking::",
    "core::slice::index::slice_",
    "core::option::unwrap_failed",
    "core::option::expect_failed",
    "core::result::unwrap_failed",
    "__rustc::rust_begin_unwind",
    "rust_begin_unwind",
    "hv_hypervisor_fault",
];

/// Whether the search ends at `function` ([`ENDS`]).
fn is_end(function: &Function) -> bool {
    let name = demangle(&function.name);
    ENDS.iter().any(|end| name.starts_with(end))
}

/// A function of the binary: where it is and what it is called.
#[derive(Clone, Debug)]
struct Function {
    start: u64,
    end: u64,
    name: String,
    /// Whether its symbol has a size (a compiled function, decoded whole); an assembly
    /// label has none, and its code is followed from where control enters it.
    sized: bool,
}

/// What the check found: the functions it decoded and the instructions that break the
/// rule, each with its function's name.
#[derive(Debug, Default)]
pub struct Findings {
    /// The names of every function decoded, entries first.
    pub reached: Vec<String>,
    /// (address, instruction, function, why).
    pub offending: Vec<(u64, String, String, &'static str)>,
    /// The functions reached that save the guest's registers first ([`SAVE`]).
    pub saving: Vec<String>,
    /// How many fix-ups of faulting guest accesses were decoded.
    pub fixups: usize,
}

/// The routine that saves the guest's XMM registers and MXCSR (`entry.S`): a function
/// that calls it before anything else may use them.
const SAVE: &str = "hv_save_fpu_xmm";

/// How far into a function the call to [`SAVE`] may be (its prologue).
const SAVE_REACH: usize = 32;

/// Whether `function` calls [`SAVE`] before anything else it does could touch vector
/// state or go anywhere: in the straight line of instructions from its start, the
/// first that transfers control is that call, and none before it is a vector one.
fn saves_first(binary: Binary<'_>, function: &Function) -> bool {
    let Some(mut decoder) = decoder_of(function, binary.code) else {
        return false;
    };
    let mut instruction = Instruction::default();
    for _ in 0..SAVE_REACH {
        if !decoder.can_decode() {
            return false;
        }
        decoder.decode_out(&mut instruction);
        // (A guarded access before the save could resume at a fix-up, elsewhere.)
        if touches_vector_state(&instruction)
            || enables_interrupts(&instruction)
            || binary.fixups.contains_key(&instruction.ip())
        {
            return false;
        }
        if instruction.flow_control() == FlowControl::Next {
            continue;
        }
        let callee = match follow(&instruction, function, binary.data) {
            Flow::To(target) if instruction.flow_control() != FlowControl::ConditionalBranch => {
                binary.functions.get(&target)
            }
            _ => None,
        };
        return matches!(
            instruction.flow_control(),
            FlowControl::Call | FlowControl::IndirectCall
        ) && callee.is_some_and(|callee| callee.name == SAVE);
    }
    false
}

/// Where a binary's SSE-free code starts, and what guards it.
pub struct Target<'a> {
    /// Where the search starts.
    entries: Entries<'a>,
    /// The bounds of its exception table (linker symbols), if it has one.
    extable: Option<(&'a str, &'a str)>,
    /// Whose registers are live there, for the message.
    live: &'a str,
}

/// Where the search starts.
enum Entries<'a> {
    /// A table of code addresses between two linker symbols.
    Table(&'a str, &'a str),
    /// Functions by name.
    Named(&'a [&'a str]),
}

/// The hypervisor: the Rust functions its entry stubs call with the guest's SSE
/// registers live and CR0.TS as the guest left it (`SSE_FREE_CALL`, `.hv_sse_free`).
pub const HYPERVISOR: Target<'static> = Target {
    entries: Entries::Table(SSE_FREE_CALLS.0, SSE_FREE_CALLS.1),
    extable: Some(EXTABLE),
    live: "the guest's SSE registers, which these entries leave live (CR0.TS clear; see \
           the hypervisor's entry.S)",
};

/// The guest kernel: its handler of exceptions in kernel mode, which its trap stub calls
/// with the interrupted code's x87/SSE state unsaved (`pv-guest-kernel/src/arch/traps.S`).
pub const GUEST_KERNEL: Target<'static> = Target {
    entries: Entries::Named(&["guest_kernel_trap"]),
    extable: None,
    live: "the interrupted kernel code's SSE registers, which the trap stub leaves live for \
           an exception in kernel mode (pv-guest-kernel/src/arch/traps.S)",
};

/// Fails, naming them, if any code reachable from `target`'s entries in the ELF binary
/// at `path` touches vector or x87 state or calls where it cannot be followed; else says
/// what it covered.
pub fn check_binary(path: &Path, target: &Target<'_>) -> Result<String> {
    let (entries, findings) = find(path, target)?;
    if findings.offending.is_empty() {
        let mut saving: Vec<String> = findings.saving.iter().map(|name| demangle(name)).collect();
        saving.sort();
        saving.dedup();
        let mut summary = format!(
            "xtask: sse check: {} functions reached from {} entries and {} fix-ups, none \
             touches SSE state",
            findings.reached.len(),
            entries.len(),
            findings.fixups,
        );
        if !saving.is_empty() {
            summary.push_str(&format!(
                "; the search ended at {} that save the live registers first: {}",
                saving.len(),
                saving.join(", ")
            ));
        }
        return Ok(summary);
    }
    let mut message = format!(
        "{} instruction(s) reachable from {} may touch {}:",
        findings.offending.len(),
        entries
            .iter()
            .map(|entry| demangle(entry))
            .collect::<Vec<_>>()
            .join(", "),
        target.live
    );
    for (address, text, function, why) in findings.offending.iter().take(SHOWN) {
        message.push_str(&format!(
            "\n    {address:#x} {text} ({why}, in {})",
            demangle(function)
        ));
    }
    bail!(message)
}

/// `target`'s entries in the binary at `path`, and what they reach (see the module's
/// comment).
fn find(path: &Path, target: &Target<'_>) -> Result<(Vec<String>, Findings)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let file =
        object::File::parse(&*bytes).with_context(|| format!("parsing {}", path.display()))?;
    let mut code: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut data: Vec<(u64, Vec<u8>)> = Vec::new();
    for section in file.sections() {
        let Ok(bytes) = section.data() else {
            continue;
        };
        let flag = |bit: u32| {
            matches!(section.flags(),
                SectionFlags::Elf { sh_flags } if sh_flags & u64::from(bit) != 0)
        };
        // Words the check may read: the read-only ones (jump tables, the exception
        // table) and the global offset table, fixed at link time (`link.ld`); a call
        // through any other word is one through a pointer the code may change.
        let fixed = !flag(object::elf::SHF_WRITE) || section.name() == Ok(".got");
        if flag(object::elf::SHF_EXECINSTR) {
            code.push((section.address(), bytes.to_vec()));
        } else if fixed && section.address() != 0 && !bytes.is_empty() {
            data.push((section.address(), bytes.to_vec()));
        }
    }
    let mut symbols: Vec<(u64, u64, String)> = file
        .symbols()
        // Functions, and the labels of assembly code (which have no type).
        .filter(|symbol| {
            matches!(
                symbol.kind(),
                SymbolKind::Text | SymbolKind::Unknown | SymbolKind::Label
            )
        })
        .filter(|symbol| {
            !symbol
                .name()
                .is_ok_and(|name| name.starts_with(".L") || name.is_empty())
        })
        .filter_map(|symbol| {
            Some((
                symbol.address(),
                symbol.size(),
                symbol.name().ok()?.to_owned(),
            ))
        })
        .collect();
    symbols.sort();
    // Two tables between their linker script's symbols: the exception table and the
    // stubs' SSE-free calls.
    let table = |(start, end): (&str, &str)| -> Result<(u64, &[u8])> {
        let bound = |name: &str| {
            file.symbols()
                .find(|symbol| symbol.name() == Ok(name))
                .map(|symbol| symbol.address())
                .with_context(|| format!("no symbol {name} in the binary"))
        };
        let (start, end) = (bound(start)?, bound(end)?);
        let words = data
            .iter()
            .find_map(|(base, bytes)| {
                let from = usize::try_from(start.checked_sub(*base)?).ok()?;
                let to = usize::try_from(end.checked_sub(*base)?).ok()?;
                bytes.get(from..to)
            })
            .with_context(|| format!("the table at {start:#x} is in no read-only section"))?;
        Ok((start, words))
    };
    let fixups = match target.extable {
        Some(bounds) => {
            let (at, words) = table(bounds)?;
            extable(at, words)
        }
        None => BTreeMap::new(),
    };
    let functions = functions(&symbols, &code);
    let addresses: Vec<u64> = match target.entries {
        Entries::Table(start, end) => {
            let (_, words) = table((start, end))?;
            words
                .chunks_exact(8)
                .map(|word| u64::from_le_bytes(word.try_into().expect("eight bytes")))
                .collect()
        }
        Entries::Named(names) => names
            .iter()
            .map(|name| {
                let mut found = functions.values().filter(|function| function.name == *name);
                match (found.next(), found.next()) {
                    (Some(function), None) => Ok(function.start),
                    (None, _) => bail!("no function {name} in the binary"),
                    (Some(_), Some(_)) => bail!("two functions named {name} in the binary"),
                }
            })
            .collect::<Result<_>>()?,
    };
    let mut starts: Vec<u64> = Vec::new();
    let mut entries: Vec<String> = Vec::new();
    for address in addresses {
        let Some(function) = functions.get(&address) else {
            bail!("the entry at {address:#x} names no function");
        };
        if !starts.contains(&address) {
            starts.push(address);
            entries.push(function.name.clone());
        }
    }
    if entries.is_empty() {
        bail!("no entry (entry.S's SSE_FREE_CALL declares none): nothing to check");
    }
    let findings = search(&functions, &code, &data, &fixups, &starts)?;
    Ok((entries, findings))
}

/// The bounds of the table of the Rust functions the entry stubs call with the guest's
/// SSE registers live and CR0.TS as the guest left it (`entry.S`'s `SSE_FREE_CALL`,
/// `link.ld`): where the search starts.
const SSE_FREE_CALLS: (&str, &str) = ("__hv_sse_free_start", "__hv_sse_free_end");

/// Every function symbol with its extent: its size, or up to the next symbol (or its
/// section's end) for an assembly label that has none.
fn functions(symbols: &[(u64, u64, String)], code: &[(u64, Vec<u8>)]) -> BTreeMap<u64, Function> {
    let mut functions = BTreeMap::new();
    for (index, (start, size, name)) in symbols.iter().enumerate() {
        let Some((base, bytes)) = code
            .iter()
            .find(|(base, bytes)| (*base..*base + bytes.len() as u64).contains(start))
        else {
            continue;
        };
        let section_end = base + bytes.len() as u64;
        let end = if *size > 0 {
            start + size
        } else {
            symbols[index + 1..]
                .iter()
                .map(|(next, ..)| *next)
                .find(|next| next > start)
                .unwrap_or(section_end)
                .min(section_end)
        };
        // Aliases (two names, one address): a sized one wins over a label.
        let function = Function {
            start: *start,
            end,
            name: name.clone(),
            sized: *size > 0,
        };
        match functions.entry(*start) {
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(function);
            }
            std::collections::btree_map::Entry::Occupied(mut slot) => {
                if function.sized && !slot.get().sized {
                    slot.insert(function);
                }
            }
        }
    }
    functions
}

/// The bounds of the hypervisor's exception table (its linker script's symbols): for each
/// instruction that may fault on a guest address, where `ring0_pf` resumes
/// (`guest_access.rs`, `entry.S`).
const EXTABLE: (&str, &str) = ("__hv_extable_start", "__hv_extable_end");

/// The exception table at `address` (`bytes`): pairs of 32-bit offsets, each from its own
/// place, of a faulting instruction and its fix-up; as a map from the first to the second.
fn extable(address: u64, bytes: &[u8]) -> BTreeMap<u64, u64> {
    bytes
        .chunks_exact(8)
        .enumerate()
        .map(|(index, entry)| {
            let at = address + 8 * index as u64;
            let offset = |word: &[u8], from: u64| {
                from.wrapping_add_signed(i64::from(i32::from_le_bytes(word.try_into().unwrap())))
            };
            (offset(&entry[..4], at), offset(&entry[4..], at + 4))
        })
        .collect()
}

fn search(
    functions: &BTreeMap<u64, Function>,
    code: &[(u64, Vec<u8>)],
    data: &[(u64, Vec<u8>)],
    fixups: &BTreeMap<u64, u64>,
    entries: &[u64],
) -> Result<Findings> {
    // (Entries by address: names can repeat.)
    let mut queue = entries.to_vec();
    let mut whole = BTreeSet::new();
    let mut followed = BTreeSet::new();
    let mut findings = Findings::default();
    let mut search = Search {
        binary: Binary {
            functions,
            code,
            data,
            fixups,
        },
        queue: &mut queue,
        findings: &mut findings,
    };
    while let Some(at) = search.queue.pop() {
        let owner = functions
            .range(..=at)
            .next_back()
            .map(|(_, function)| function)
            .filter(|function| at < function.end);
        match owner {
            Some(function) if function.sized => {
                if whole.insert(function.start) {
                    search.whole(function);
                }
            }
            _ => search.follow_from(at, owner, &mut followed),
        }
    }
    Ok(findings)
}

/// The parts of the binary the check reads.
#[derive(Clone, Copy)]
struct Binary<'a> {
    /// Every function and label, by address.
    functions: &'a BTreeMap<u64, Function>,
    /// The code sections, with their addresses.
    code: &'a [(u64, Vec<u8>)],
    /// The words it may read: read-only sections and the global offset table.
    data: &'a [(u64, Vec<u8>)],
    /// The exception table: each guarded instruction's fix-up.
    fixups: &'a BTreeMap<u64, u64>,
}

/// The state of one search: what it reads and what it found so far.
struct Search<'a> {
    binary: Binary<'a>,
    /// Addresses control reaches that are still to be decoded.
    queue: &'a mut Vec<u64>,
    findings: &'a mut Findings,
}

/// A decoder over `function`'s bytes, if they lie in a code section.
fn decoder_of<'c>(function: &Function, code: &'c [(u64, Vec<u8>)]) -> Option<Decoder<'c>> {
    let bytes = code_at(code, function.start)?;
    let length = usize::try_from(function.end - function.start)
        .ok()?
        .min(bytes.len());
    Some(Decoder::with_ip(
        64,
        &bytes[..length],
        function.start,
        DecoderOptions::NONE,
    ))
}

/// The code at `at` and after, if it lies in a code section.
fn code_at(code: &[(u64, Vec<u8>)], at: u64) -> Option<&[u8]> {
    code.iter().find_map(|(base, bytes)| {
        let offset = usize::try_from(at.checked_sub(*base)?).ok()?;
        bytes.get(offset..)
    })
}

impl Search<'_> {
    fn offend(&mut self, instruction: &Instruction, place: &str, why: &'static str) {
        self.findings.offending.push((
            instruction.ip(),
            instruction.to_string(),
            place.to_owned(),
            why,
        ));
    }

    /// A compiled function, decoded from its first byte to its last (a superset of what
    /// can run: its branches stay inside it). What it calls or jumps to elsewhere, the
    /// fix-ups of its guest accesses and, should it run off its end, what follows are
    /// queued.
    fn whole(&mut self, function: &Function) {
        self.findings.reached.push(function.name.clone());
        let Some(mut decoder) = decoder_of(function, self.binary.code) else {
            return;
        };
        let instructions: Vec<Instruction> = decoder.iter().collect();
        let starts: BTreeSet<u64> = instructions.iter().map(Instruction::ip).collect();
        let inside = function.start..function.end;
        // Where the function's own branches and jump tables go: each must be the start of
        // an instruction decoded here (a jump into the middle of one would run bytes this
        // decoding never saw).
        let mut targets: Vec<(u64, usize)> = Vec::new();
        for (index, instruction) in instructions.iter().enumerate() {
            if matches!(
                instruction.flow_control(),
                FlowControl::UnconditionalBranch
                    | FlowControl::ConditionalBranch
                    | FlowControl::Call
            ) && inside.contains(&instruction.near_branch_target())
            {
                targets.push((instruction.near_branch_target(), index));
            }
        }
        let branched_to: BTreeSet<u64> = targets.iter().map(|&(target, _)| target).collect();
        // The last instruction that is not padding (the nops an assembler aligns with).
        let mut last = Instruction::default();
        for (index, instruction) in instructions.iter().enumerate() {
            if instruction.mnemonic() != Mnemonic::Nop {
                last = *instruction;
            }
            let why = if instruction.flow_control() == FlowControl::IndirectBranch
                && instruction.op0_kind() == OpKind::Register
            {
                match jump_table(&instructions, index, &branched_to, self.binary.data) {
                    Some(entries) if entries.iter().all(|entry| inside.contains(entry)) => {
                        targets.extend(entries.into_iter().map(|entry| (entry, index)));
                        None
                    }
                    _ => Some("a target the check cannot follow"),
                }
            } else {
                self.visit(instruction, function)
            };
            if let Some(why) = why {
                self.offend(instruction, &function.name, why);
            }
            if let Some(&fixup) = self.binary.fixups.get(&instruction.ip()) {
                self.findings.fixups += 1;
                self.queue.push(fixup);
            }
        }
        for (target, index) in targets {
            if !starts.contains(&target) {
                self.offend(
                    &instructions[index],
                    &function.name,
                    "a jump into the middle of an instruction",
                );
            }
        }
        if falls_through(self.binary, &last, function) {
            self.queue.push(function.end);
        }
    }

    /// Assembly (code under a label without a size, or in no symbol: a fix-up), followed
    /// from `at` the way the CPU would run it: on to the next instruction until one that
    /// does not continue (a return, a jump, a trap, a call that never returns), with
    /// every branch target queued.
    fn follow_from(&mut self, at: u64, owner: Option<&Function>, followed: &mut BTreeSet<u64>) {
        let mut place =
            owner.map_or_else(|| format!("code at {at:#x}"), |owner| owner.name.clone());
        let Some(bytes) = code_at(self.binary.code, at) else {
            self.findings
                .offending
                .push((at, String::new(), place, "a target outside the code"));
            return;
        };
        // Branch targets are queued, not judged against an extent: no range.
        let nowhere = Function {
            start: at,
            end: at,
            name: place.clone(),
            sized: false,
        };
        let mut decoder = Decoder::with_ip(64, bytes, at, DecoderOptions::NONE);
        let mut instruction = Instruction::default();
        while decoder.can_decode() {
            decoder.decode_out(&mut instruction);
            if !followed.insert(instruction.ip()) {
                return;
            }
            // Into the code of a label (where it starts, or by a jump): named after it.
            if let Some(label) = self
                .binary
                .functions
                .range(..=instruction.ip())
                .next_back()
                .map(|(_, label)| label)
                .filter(|label| instruction.ip() < label.end)
                && (label.name != place || label.start == instruction.ip())
            {
                place.clone_from(&label.name);
                if !self.findings.reached.contains(&place) {
                    self.findings.reached.push(place.clone());
                }
            }
            if let Some(why) = self.visit(&instruction, &nowhere) {
                self.offend(&instruction, &place, why);
            }
            if let Some(&fixup) = self.binary.fixups.get(&instruction.ip()) {
                self.findings.fixups += 1;
                self.queue.push(fixup);
            }
            if !falls_through(self.binary, &instruction, &nowhere) {
                return;
            }
        }
        // Off the end of its section: code the check cannot see.
        self.findings.offending.push((
            decoder.ip(),
            String::new(),
            place,
            "code that runs off its section",
        ));
    }

    /// Checks one instruction of `function`: why it breaks the rule, if it does; a call or
    /// jump elsewhere queues its target (or notes a function that saves first).
    fn visit(&mut self, instruction: &Instruction, function: &Function) -> Option<&'static str> {
        if touches_vector_state(instruction) {
            return Some("vector or x87 state");
        }
        if enables_interrupts(instruction) {
            return Some("interrupts enabled or raised (their handlers are not checked)");
        }
        match follow(instruction, function, self.binary.data) {
            Flow::Stay => None,
            Flow::Unknown => Some("a target the check cannot follow"),
            Flow::To(target) => {
                match self.binary.functions.get(&target) {
                    Some(callee) if is_end(callee) => {}
                    Some(callee) if saves_first(self.binary, callee) => {
                        if !self.findings.saving.contains(&callee.name) {
                            self.findings.saving.push(callee.name.clone());
                        }
                    }
                    _ => self.queue.push(target),
                }
                None
            }
        }
    }
}

/// Whether control may go on past `last`, a function's last instruction: anything but
/// a return, a jump, a trap (`ud2`, `int3`) or a call that never returns ([`ENDS`]).
fn falls_through(binary: Binary<'_>, last: &Instruction, function: &Function) -> bool {
    if matches!(
        last.mnemonic(),
        Mnemonic::Iretq | Mnemonic::Iretd | Mnemonic::Sysretq | Mnemonic::Sysret
    ) {
        return false;
    }
    match last.flow_control() {
        FlowControl::Return
        | FlowControl::UnconditionalBranch
        | FlowControl::IndirectBranch
        | FlowControl::Interrupt
        | FlowControl::Exception => false,
        FlowControl::Call | FlowControl::IndirectCall => {
            match follow(last, function, binary.data) {
                Flow::To(target) => !binary
                    .functions
                    .get(&target)
                    .is_some_and(|callee| never_returns(binary, callee)),
                _ => true,
            }
        }
        _ => true,
    }
}

/// Whether `function` never returns: one of [`ENDS`], or a compiled function with no
/// return, no jump out of itself, no guarded access (whose fix-up could return) and a
/// last instruction that does not run on (such as `-> !` functions that end in a panic).
/// A label without a size is never taken for one: its code may run on past the next.
fn never_returns(binary: Binary<'_>, function: &Function) -> bool {
    if is_end(function) {
        return true;
    }
    if !function.sized {
        return false;
    }
    let Some(mut decoder) = decoder_of(function, binary.code) else {
        return false;
    };
    let mut instruction = Instruction::default();
    let inside = function.start..function.end;
    let mut last = Instruction::default();
    while decoder.can_decode() {
        decoder.decode_out(&mut instruction);
        let leaves = match instruction.flow_control() {
            FlowControl::Return | FlowControl::IndirectBranch => true,
            FlowControl::UnconditionalBranch | FlowControl::ConditionalBranch => {
                !inside.contains(&instruction.near_branch_target())
            }
            _ => matches!(instruction.mnemonic(), Mnemonic::Iretq | Mnemonic::Sysretq),
        };
        if leaves || binary.fixups.contains_key(&instruction.ip()) {
            return false;
        }
        if instruction.mnemonic() != Mnemonic::Nop {
            last = instruction;
        }
    }
    // Its last instruction a call (into what never returns) or a trap, not code that
    // runs on into the next function.
    matches!(
        last.flow_control(),
        FlowControl::Call
            | FlowControl::IndirectCall
            | FlowControl::Interrupt
            | FlowControl::Exception
    )
}

/// Where control may go after an instruction, besides the next one.
enum Flow {
    /// Nowhere else, or somewhere inside the same function (decoded whole).
    Stay,
    /// Into another function, at this address.
    To(u64),
    /// Somewhere the check cannot know.
    Unknown,
}

fn follow(instruction: &Instruction, function: &Function, data: &[(u64, Vec<u8>)]) -> Flow {
    // A call or jump through a fixed word (`call [rip + x]`: the global offset table
    // the compiler calls other crates' functions through) goes where the word says.
    let through_word = instruction.op0_kind() == OpKind::Memory
        && instruction.memory_base() == Register::RIP
        && instruction.memory_index() == Register::None
        && instruction.segment_prefix() == Register::None;
    if matches!(
        instruction.flow_control(),
        FlowControl::IndirectCall | FlowControl::IndirectBranch
    ) {
        if !through_word {
            // (A jump table is `whole`'s to recognise: see `jump_table`.)
            return Flow::Unknown;
        }
        let at = instruction.memory_displacement64();
        return data
            .iter()
            .find_map(|(base, bytes)| {
                let offset = usize::try_from(at.checked_sub(*base)?).ok()?;
                let word = bytes.get(offset..offset + 8)?;
                Some(Flow::To(u64::from_le_bytes(word.try_into().ok()?)))
            })
            .unwrap_or(Flow::Unknown);
    }
    match instruction.flow_control() {
        FlowControl::Call | FlowControl::UnconditionalBranch | FlowControl::ConditionalBranch => {
            let target = instruction.near_branch_target();
            if (function.start..function.end).contains(&target) {
                Flow::Stay
            } else {
                Flow::To(target)
            }
        }
        _ => Flow::Stay,
    }
}

/// If `instructions[jump]` (`jmp reg`) ends a jump table as the compiler builds one, the
/// table's entries (their targets): `lea base, [rip + table]`, `movsxd reg, dword
/// [base + index*4]` and `add reg, base`, `base` another register than `reg`, with no segment
/// and no displacement, all in the same straight run of code as the jump: nothing
/// between them transfers control or is a branch target (`branched_to`), and nothing
/// rewrites their registers. The entries are read from the table's start while they
/// land inside the function's code (the caller checks each is an instruction's start).
fn jump_table(
    instructions: &[Instruction],
    jump: usize,
    branched_to: &BTreeSet<u64>,
    data: &[(u64, Vec<u8>)],
) -> Option<Vec<u64>> {
    let target = instructions[jump].op0_register();
    // The straight run of code that ends at the jump: back to a branch target or an
    // instruction that transfers control.
    let mut first = jump;
    while first > 0 {
        let before = &instructions[first - 1];
        if before.flow_control() != FlowControl::Next
            || branched_to.contains(&instructions[first].ip())
        {
            break;
        }
        first -= 1;
    }
    let run = &instructions[first..jump];
    let mut steps = run.iter().rev();
    let add = last_write(&mut steps, &[target])?;
    let plain = |i: &Instruction| {
        i.op_count() == 2
            && i.op0_kind() == OpKind::Register
            && i.segment_prefix() == Register::None
    };
    if add.mnemonic() != Mnemonic::Add || !plain(add) || add.op1_kind() != OpKind::Register {
        return None;
    }
    let base = add.op1_register();
    if base.full_register() == target.full_register() {
        return None;
    }
    let load = last_write(&mut steps, &[target, base])?;
    if load.mnemonic() != Mnemonic::Movsxd
        || !plain(load)
        || load.op0_register() != target
        || load.op1_kind() != OpKind::Memory
        || load.memory_base() != base
        || load.memory_index_scale() != 4
        || load.memory_displacement64() != 0
    {
        return None;
    }
    let lea = last_write(&mut steps, &[base])?;
    if lea.mnemonic() != Mnemonic::Lea
        || lea.op0_register() != base
        || lea.memory_base() != Register::RIP
    {
        return None;
    }
    let table = lea.memory_displacement64();
    let code = (
        instructions[0].ip(),
        instructions[instructions.len() - 1].next_ip(),
    );
    let words = data.iter().find_map(|(start, bytes)| {
        let offset = usize::try_from(table.checked_sub(*start)?).ok()?;
        bytes.get(offset..)
    })?;
    let entries: Vec<u64> = words
        .chunks_exact(4)
        .map(|word| {
            table.wrapping_add_signed(i64::from(i32::from_le_bytes(word.try_into().unwrap())))
        })
        .take_while(|entry| (code.0..code.1).contains(entry))
        .collect();
    (!entries.is_empty()).then_some(entries)
}

/// The next instruction from `steps` (walking backwards) that writes any of `registers`
/// (any part of them).
fn last_write<'i>(
    steps: &mut impl Iterator<Item = &'i Instruction>,
    registers: &[Register],
) -> Option<&'i Instruction> {
    let mut info = InstructionInfoFactory::new();
    let registers: Vec<Register> = registers.iter().map(|r| r.full_register()).collect();
    steps.find(|instruction| {
        info.info(instruction).used_registers().iter().any(|used| {
            registers.contains(&used.register().full_register())
                && !matches!(
                    used.access(),
                    OpAccess::Read | OpAccess::CondRead | OpAccess::NoMemAccess
                )
        })
    })
}

/// Whether the instruction enables interrupts or raises one that returns (`sti`,
/// `popf`, `int n`): the interrupt path runs the hypervisor's interrupt handlers, which
/// this check does not follow. (`int3`, `int1` and `ud2` in ring 0 stop the machine.)
fn enables_interrupts(instruction: &Instruction) -> bool {
    matches!(
        instruction.mnemonic(),
        Mnemonic::Sti | Mnemonic::Popf | Mnemonic::Popfq | Mnemonic::Int | Mnemonic::Into
    )
}

/// Whether the instruction reads or writes SSE, AVX, x87 or MMX state.
fn touches_vector_state(instruction: &Instruction) -> bool {
    // (Bytes that decode as no instruction are treated as touching it: past them the
    // decoding may have lost its place.)
    if instruction.is_invalid() {
        return true;
    }
    let register_operand = (0..instruction.op_count()).any(|operand| {
        instruction.op_kind(operand) == OpKind::Register
            && vector_register(instruction.op_register(operand))
    });
    let feature = instruction.cpuid_features().iter().any(|feature| {
        let name = format!("{feature:?}");
        matches!(
            feature,
            CpuidFeature::FPU
                | CpuidFeature::FPU287
                | CpuidFeature::FPU387
                | CpuidFeature::MMX
                | CpuidFeature::FXSR
        ) || ["SSE", "AVX", "XSAVE", "AMX", "AESKLE", "KL"]
            .iter()
            .any(|prefix| name.starts_with(prefix))
    });
    let special = matches!(
        instruction.mnemonic(),
        Mnemonic::Wait | Mnemonic::Femms | Mnemonic::Emms | Mnemonic::Ldmxcsr | Mnemonic::Stmxcsr
    );
    register_operand || feature || special
}

fn vector_register(register: Register) -> bool {
    register.is_xmm()
        || register.is_ymm()
        || register.is_zmm()
        || register.is_st()
        || register.is_mm()
        || register.is_k()
        || register.is_tmm()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(code: &[u8], names: &[(u64, u64, &str)]) -> Findings {
        let sections = vec![(0x1000, code.to_vec())];
        let symbols: Vec<_> = names
            .iter()
            .map(|&(start, size, name)| (start, size, name.to_owned()))
            .collect();
        let data = vec![];
        let functions = functions(&symbols, &sections);
        search(&functions, &sections, &data, &BTreeMap::new(), &[0x1000]).unwrap()
    }

    #[test]
    fn integer_code_and_jump_tables_pass() {
        // entry: lea rcx,[rip+0xff9] (the table at 0x2000, whose entry is 0x1000 - 0x2000);
        // movsxd rax,dword [rcx+rax*4]; add rax,rcx; jmp rax; ret
        let code = [
            0x48, 0x8d, 0x0d, 0xf9, 0x0f, 0, 0, 0x48, 0x63, 0x04, 0x81, 0x48, 0x01, 0xc8, 0xff,
            0xe0, 0xc3,
        ];
        let findings = with_table(&code);
        assert!(findings.offending.is_empty(), "{findings:?}");
    }

    /// `code` as the function `entry` at 0x1000, with a jump table at 0x2000 whose one
    /// entry points at 0x1000.
    fn with_table(code: &[u8]) -> Findings {
        let table = (-0x1000i32).to_le_bytes().to_vec();
        let sections = vec![(0x1000, code.to_vec())];
        let functions = functions(
            &[(0x1000, code.len() as u64, "entry".to_owned())],
            &sections,
        );
        search(
            &functions,
            &sections,
            &[(0x2000, table)],
            &BTreeMap::new(),
            &[0x1000],
        )
        .unwrap()
    }

    #[test]
    fn fix_ups_are_checked() {
        // entry (0x1000): mov rax,[rdi]; ret      (its fix-up, out of line, at 0x1010)
        // fix-up: mov al,1; jmp 0x1003   or   pxor xmm0,xmm0; jmp 0x1003
        for (fixup, offending) in [
            (&[0xb0, 0x01, 0xeb, 0xef][..], 0),
            (&[0x66, 0x0f, 0xef, 0xc0, 0xeb, 0xed], 1),
        ] {
            let mut code = vec![0x48, 0x8b, 0x07, 0xc3];
            code.resize(0x10, 0xcc);
            code.extend_from_slice(fixup);
            let sections = vec![(0x1000, code)];
            let functions = functions(&[(0x1000, 4, "entry".to_owned())], &sections);
            let fixups = BTreeMap::from([(0x1000, 0x1010)]);
            let findings = search(&functions, &sections, &[], &fixups, &[0x1000]).unwrap();
            assert_eq!(findings.offending.len(), offending, "{findings:?}");
        }
    }

    #[test]
    fn the_exception_table_is_read() {
        // At 0x3000: the instruction at 0x3000 - 0x2000, its fix-up at 0x3004 + 0x10.
        let mut table = (-0x2000i32).to_le_bytes().to_vec();
        table.extend_from_slice(&0x10i32.to_le_bytes());
        assert_eq!(extable(0x3000, &table), BTreeMap::from([(0x1000, 0x3014)]));
    }

    #[test]
    fn a_table_whose_register_is_overwritten_is_no_table() {
        // lea rcx,[rip+0xff9]; movsxd rax,[rcx+rax*4]; add rax,rcx; mov rax,[rdi+8];
        // jmp rax: the jump goes where the pointer at rdi+8 says
        let code = [
            0x48, 0x8d, 0x0d, 0xf9, 0x0f, 0, 0, 0x48, 0x63, 0x04, 0x81, 0x48, 0x01, 0xc8, 0x48,
            0x8b, 0x47, 0x08, 0xff, 0xe0, 0xc3,
        ];
        let findings = with_table(&code);
        assert_eq!(findings.offending.len(), 1, "{findings:?}");
    }

    #[test]
    fn a_jump_through_a_register_is_a_call_through_a_pointer() {
        // entry: mov rax,[rdi+0x20]; jmp rax (a trait object's method, as a tail call)
        let code = [0x48, 0x8b, 0x47, 0x20, 0xff, 0xe0];
        let findings = run(&code, &[(0x1000, 6, "entry")]);
        assert_eq!(findings.offending.len(), 1, "{findings:?}");
    }

    #[test]
    fn calls_through_the_offset_table_are_followed() {
        // entry: call [rip+0xffa] (the word at 0x2000 names 0x1006); ret
        // callee (0x1006): pxor xmm0,xmm0; ret
        let code = [0xff, 0x15, 0xfa, 0x0f, 0, 0, 0x66, 0x0f, 0xef, 0xc0, 0xc3];
        let sections = vec![(0x1000, code.to_vec())];
        let symbols = [
            (0x1000, 6, "entry".to_owned()),
            (0x1006, 5, "callee".to_owned()),
        ];
        let functions = functions(&symbols, &sections);
        let data = [(0x2000, 0x1006u64.to_le_bytes().to_vec())];
        let findings = search(&functions, &sections, &data, &BTreeMap::new(), &[0x1000]).unwrap();
        assert_eq!(findings.reached, ["entry", "callee"]);
        assert_eq!(findings.offending.len(), 1, "{findings:?}");
    }

    #[test]
    fn sse_in_a_callee_is_found() {
        // entry: call 0x1006; ret; nop     callee (0x1006): pxor xmm0,xmm0; ret
        let code = [0xe8, 0x01, 0, 0, 0, 0xc3, 0x66, 0x0f, 0xef, 0xc0, 0xc3];
        let findings = run(&code, &[(0x1000, 6, "entry"), (0x1006, 5, "callee")]);
        assert_eq!(findings.reached, ["entry", "callee"]);
        assert_eq!(findings.offending.len(), 1, "{findings:?}");
        assert_eq!(findings.offending[0].0, 0x1006);
        assert_eq!(findings.offending[0].2, "callee");
    }

    #[test]
    fn a_panic_ends_the_search() {
        // entry: call 0x1006; ret; nop     core::panicking::panic: movups xmm0,[rax]; ret
        let code = [0xe8, 0x01, 0, 0, 0, 0xc3, 0x0f, 0x10, 0x00, 0xc3];
        let findings = run(
            &code,
            &[
                (0x1000, 6, "entry"),
                (0x1006, 4, "_ZN4core9panicking5panic17h0123456789abcdefE"),
            ],
        );
        assert!(findings.offending.is_empty(), "{findings:?}");
    }

    #[test]
    fn calls_through_pointers_are_found() {
        // call rax; call [rbx+8]; jmp [rcx]; call gs:[rip+0xffa] (each then ret)
        for code in [
            &[0xff, 0xd0, 0xc3][..],
            &[0xff, 0x53, 0x08, 0xc3],
            &[0xff, 0x21, 0xc3],
            &[0x65, 0xff, 0x15, 0xf9, 0x0f, 0, 0, 0xc3],
        ] {
            let findings = run(code, &[(0x1000, code.len() as u64, "entry")]);
            assert_eq!(findings.offending.len(), 1, "{code:x?}");
        }
    }

    #[test]
    fn mxcsr_x87_and_avx_are_found() {
        // stmxcsr [rsp]; fld1; vpxor ymm0,ymm0,ymm0; emms (each then ret)
        for code in [
            &[0x0f, 0xae, 0x1c, 0x24, 0xc3][..],
            &[0xd9, 0xe8, 0xc3],
            &[0xc5, 0xfd, 0xef, 0xc0, 0xc3],
            &[0x0f, 0x77, 0xc3],
        ] {
            let findings = run(code, &[(0x1000, code.len() as u64, "entry")]);
            assert_eq!(findings.offending.len(), 1, "{code:x?}");
        }
    }

    #[test]
    fn interrupts_enabled_or_raised_are_found() {
        // sti; ret   int 0x20; ret   popfq; ret
        for code in [&[0xfb, 0xc3][..], &[0xcd, 0x20, 0xc3], &[0x9d, 0xc3]] {
            let findings = run(code, &[(0x1000, code.len() as u64, "entry")]);
            assert_eq!(findings.offending.len(), 1, "{code:x?}");
        }
    }

    #[test]
    fn a_jump_into_an_instruction_is_found() {
        // jmp +2; mov rax,imm64 whose immediate hides pxor xmm0,xmm0; ret
        let code = [
            0xeb, 0x02, 0x48, 0xb8, 0x66, 0x0f, 0xef, 0xc0, 0xc3, 0xcc, 0xcc, 0xcc,
        ];
        let findings = run(&code, &[(0x1000, 12, "entry")]);
        assert!(!findings.offending.is_empty(), "{findings:?}");
    }

    #[test]
    fn a_label_is_never_taken_for_a_function_that_never_returns() {
        // entry (sized): jmp A     A: call B; pxor xmm0,xmm0; ret     B: nop (runs on)
        // C: ret
        let code = [
            0xeb, 0x00, 0xe8, 0x05, 0, 0, 0, 0x66, 0x0f, 0xef, 0xc0, 0xc3, 0x90, 0xc3,
        ];
        let findings = run(
            &code,
            &[
                (0x1000, 2, "entry"),
                (0x1002, 0, "A"),
                (0x100c, 0, "B"),
                (0x100d, 0, "C"),
            ],
        );
        assert_eq!(findings.offending.len(), 1, "{findings:?}");
    }

    #[test]
    fn labels_without_a_size_end_at_the_next() {
        // entry (no size): ret     next: pxor xmm0,xmm0 (never reached)
        let code = [0xc3, 0x66, 0x0f, 0xef, 0xc0];
        let findings = run(&code, &[(0x1000, 0, "entry"), (0x1001, 0, "next")]);
        assert!(findings.offending.is_empty(), "{findings:?}");
    }

    #[test]
    fn code_that_runs_off_its_end_is_followed() {
        // entry (no size): mov eax,ebx     next: pxor xmm0,xmm0; ret (reached by falling
        // through)
        let code = [0x89, 0xd8, 0x66, 0x0f, 0xef, 0xc0, 0xc3];
        let findings = run(&code, &[(0x1000, 0, "entry"), (0x1002, 0, "next")]);
        assert_eq!(findings.reached, ["entry", "next"]);
        assert_eq!(findings.offending.len(), 1, "{findings:?}");
    }
}
