//! A check on the hypervisor's binary: no large static that is mostly zero is loaded
//! from the file.
//!
//! A static whose initial value is all zero goes to `.bss`, which the boot zeroes; one
//! non-zero byte anywhere in it (a `None` the compiler encodes as 2, the dangling pointer
//! of an empty slice, a `true` default) puts the whole static in `.data`, in the image.
//! The machine state once put 648 KB of zeros there, two thirds of the image, for 235
//! such bytes (docs/benchmarks.md, "Footprint"). This check names any static in a
//! loaded data section that is larger than [`LARGE`] and at least [`MOSTLY`] zero bytes.

use std::path::Path;

use anyhow::{Context, Result, bail};
use object::{Object, ObjectSection, ObjectSymbol, SectionKind, SymbolKind};

/// A static larger than this is worth a look (the boot page tables, 4 KiB each and
/// filled by the assembler, stay below it).
const LARGE: u64 = 16 * 1024;
/// Percent of zero bytes above which a large static should have been `.bss`.
const MOSTLY: u64 = 90;

/// Fails, naming them, if the ELF binary at `path` loads a large, mostly-zero static
/// from the file.
pub fn check_binary(path: &Path) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let file =
        object::File::parse(&*bytes).with_context(|| format!("parsing {}", path.display()))?;
    let mut statics = Vec::new();
    for symbol in file.symbols() {
        if symbol.kind() != SymbolKind::Data || symbol.size() <= LARGE {
            continue;
        }
        let Some(index) = symbol.section_index() else {
            continue;
        };
        let section = file.section_by_index(index)?;
        // `.bss` (no bytes in the file) is what such a static should be.
        if section.kind() != SectionKind::Data {
            continue;
        }
        let name = demangle(symbol.name()?);
        let data = section
            .data_range(symbol.address(), symbol.size())?
            .with_context(|| format!("{name} lies outside its section"))?;
        statics.push((name, data));
    }
    let found = mostly_zero(statics.iter().map(|(name, data)| (name.as_str(), *data)));
    if found.is_empty() {
        return Ok(());
    }
    bail!(
        "mostly-zero static(s) loaded from the image instead of zeroed as .bss (make every \
         initial value zero in memory; see `Present` in hypervisor/src/domain.rs):\n    {}",
        found.join("\n    ")
    )
}

/// The statics of `statics` (name, initial bytes) that are larger than [`LARGE`] and at
/// least [`MOSTLY`] percent zero, described.
fn mostly_zero<'a>(statics: impl Iterator<Item = (&'a str, &'a [u8])>) -> Vec<String> {
    statics
        .filter(|(_, data)| data.len() as u64 > LARGE)
        .filter_map(|(name, data)| {
            let zeros = data.iter().filter(|&&byte| byte == 0).count() as u64;
            let size = data.len() as u64;
            (zeros * 100 >= size * MOSTLY)
                .then(|| format!("{name}: {size} bytes, {} not zero", size - zeros))
        })
        .collect()
}

/// `hypervisor::machine::STATE` for Rust's legacy mangling `_ZN10hypervisor7machine5STATE
/// 17h<hash>E` (the hash dropped); any other name unchanged.
fn demangle(name: &str) -> String {
    let Some(mut rest) = name.strip_prefix("_ZN") else {
        return name.to_owned();
    };
    let mut parts = Vec::new();
    while let Some(digits) = rest.find(|c: char| !c.is_ascii_digit()).filter(|&n| n > 0) {
        let Ok(length) = rest[..digits].parse::<usize>() else {
            break;
        };
        let Some(part) = rest.get(digits..digits + length) else {
            break;
        };
        parts.push(part);
        rest = &rest[digits + length..];
    }
    if parts
        .last()
        .is_some_and(|part| part.starts_with('h') && part.len() == 17)
    {
        parts.pop();
    }
    if parts.is_empty() {
        name.to_owned()
    } else {
        parts.join("::")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_mostly_zero_static_is_named_and_others_are_not() {
        let mut state = vec![0u8; 100_000];
        state[4242] = 2;
        let filled = vec![0xe8u8; 100_000];
        let small = vec![0u8; 4096];
        let found = mostly_zero(
            [
                ("STATE", &state[..]),
                ("filled", &filled[..]),
                ("small", &small[..]),
            ]
            .into_iter(),
        );
        assert_eq!(found, ["STATE: 100000 bytes, 1 not zero"]);
    }

    #[test]
    fn a_static_with_enough_non_zero_bytes_passes() {
        let mut table = vec![0u8; 20_000];
        table[..2_001].fill(1);
        assert!(mostly_zero([("table", &table[..])].into_iter()).is_empty());
        table[2_000] = 0;
        assert_eq!(mostly_zero([("table", &table[..])].into_iter()).len(), 1);
    }

    #[test]
    fn legacy_rust_names_are_demangled() {
        assert_eq!(
            demangle("_ZN10hypervisor7machine5STATE17hc6e587a2c4fe2d7cE"),
            "hypervisor::machine::STATE"
        );
        assert_eq!(demangle("boot_pml4"), "boot_pml4");
    }
}
