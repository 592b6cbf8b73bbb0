//! A check on the hypervisor's binary: no large stretch of zeros is loaded from the file.
//!
//! A static whose initial value is all zero goes to `.bss`, which the boot zeroes; one
//! non-zero byte anywhere in it (a `None` the compiler encodes as 2, the dangling pointer
//! of an empty slice, a `true` default) puts the whole static in `.data`, in the image.
//! The machine state once put 648 KB of zeros there, two thirds of the image, for 235
//! such bytes (docs/benchmarks.md, "Footprint"). In every loaded section that is not
//! code (data and read-only data: a constant static of zeros goes to `.rodata`), this
//! check names any static larger than [`LARGE`] that is at least [`MOSTLY`] zero bytes,
//! and any run of zeros longer than [`LARGE`], wherever it lies (an assembly label has
//! no size to go by).

use std::path::Path;

use anyhow::{Context, Result, bail};
use object::{Object, ObjectSection, ObjectSymbol, SectionFlags, SectionKind, SymbolKind};

use crate::demangle::demangle;

/// A static, or a run of zeros, larger than this is worth a look.
const LARGE: u64 = 16 * 1024;
/// Percent of zero bytes above which a large static should have been `.bss`.
const MOSTLY: u64 = 90;

/// Fails, naming them, if the ELF binary at `path` loads a large, mostly-zero static
/// or a long run of zeros from the file.
pub fn check_binary(path: &Path) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let file =
        object::File::parse(&*bytes).with_context(|| format!("parsing {}", path.display()))?;
    // (address, name) of every data symbol and label (an assembly label has no type),
    // to name where a run of zeros starts.
    let mut symbols: Vec<(u64, String)> = file
        .symbols()
        .filter(|symbol| matches!(symbol.kind(), SymbolKind::Data | SymbolKind::Unknown))
        .filter_map(|symbol| Some((symbol.address(), demangle(symbol.name().ok()?))))
        .collect();
    if symbols.is_empty() {
        bail!(
            "{} has no data symbols: nothing to check by",
            path.display()
        );
    }
    symbols.sort();
    // Loaded from the file and not code: allocated, with bytes in the file (not
    // `.bss`), not executable (`.data`, `.rodata`, whatever the linker calls them).
    let loaded = |section: &object::Section<'_, '_>| {
        let SectionFlags::Elf { sh_flags } = section.flags() else {
            return false;
        };
        sh_flags & u64::from(object::elf::SHF_ALLOC) != 0
            && sh_flags & u64::from(object::elf::SHF_EXECINSTR) == 0
            && !matches!(
                section.kind(),
                SectionKind::UninitializedData | SectionKind::UninitializedTls
            )
    };
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
        if !loaded(&section) {
            continue;
        }
        let name = demangle(symbol.name()?);
        let data = section
            .data_range(symbol.address(), symbol.size())?
            .with_context(|| format!("{name} lies outside its section"))?;
        statics.push((name, data));
    }
    let mut found = mostly_zero(statics.iter().map(|(name, data)| (name.as_str(), *data)));
    for section in file.sections().filter(|section| loaded(section)) {
        let data = section.data()?;
        for (offset, length) in zero_runs(data) {
            let address = section.address() + offset as u64;
            let place = match symbols.iter().rev().find(|(start, _)| *start <= address) {
                Some((start, name)) => format!("{name}+{:#x}", address - start),
                None => format!("{}+{offset:#x}", section.name().unwrap_or("?")),
            };
            found.push(format!("{length} zero bytes from {address:#x} ({place})"));
        }
    }
    if found.is_empty() {
        return Ok(());
    }
    bail!(
        "zeros loaded from the image instead of zeroed as .bss (make every initial value \
         zero in memory, or put the area in .bss; see `Present` in \
         hypervisor/src/domain.rs):\n    {}",
        found.join("\n    ")
    )
}

/// The runs of zero bytes in `data` longer than [`LARGE`], as (offset, length).
fn zero_runs(data: &[u8]) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut start = None;
    for (offset, &byte) in data.iter().chain([1u8].iter()).enumerate() {
        match (byte, start) {
            (0, None) => start = Some(offset),
            (0, Some(_)) => {}
            (_, Some(first)) => {
                if (offset - first) as u64 > LARGE {
                    runs.push((first, offset - first));
                }
                start = None;
            }
            (_, None) => {}
        }
    }
    runs
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
    fn long_runs_of_zeros_are_found_and_short_ones_are_not() {
        let mut data = vec![1u8; 100_000];
        data[10..10 + 16 * 1024].fill(0);
        data[50_000..50_000 + 16 * 1024 + 1].fill(0);
        data[99_000..].fill(0);
        assert_eq!(zero_runs(&data), [(50_000, 16 * 1024 + 1)]);
        let zeros = vec![0u8; 20_000];
        assert_eq!(zero_runs(&zeros), [(0, 20_000)]);
    }
}
