//! Recounts every reference of a domain from scratch and compares with the frame table:
//! the invariants the property test checks after every step.
//!
//! 1. Every present entry of a live (validated, type count > 0) table of the domain names
//!    a frame of the domain.
//! 2. An L1 entry that is writable names a frame of type `Writable`; an entry of a live
//!    L(n) table (n > 1) names a live L(n-1) table. Hence no frame is both mapped
//!    writable and a page table.
//! 3. Each frame's general count equals the entries naming it plus its pin plus the
//!    vCPU roots it is plus the hypervisor's own hold on it (the shared-info page);
//!    its type count equals the same, less read-only L1 mappings.
//! 4. A frame with a type count of zero and a page-table type is not validated.

use super::entry;
use crate::frames::{FrameTable, Owner, PageType};
use crate::mm::{ENTRIES_PER_TABLE, Mfn, PhysMem};

/// Checks the invariants for `domain`, whose vCPU roots are `roots` and whose pages the
/// hypervisor holds as writable pages are `held` (its shared-info page).
pub fn audit<M: PhysMem>(
    mem: &M,
    frames: &FrameTable<'_>,
    domain: u16,
    roots: &[Mfn],
    held: &[Mfn],
) -> Result<(), String> {
    let n = frames.capacity();
    let mut refs = vec![0u64; n];
    let mut types = vec![0u64; n];
    for index in 0..n {
        let mfn = Mfn(index as u64);
        let info = frames.info(mfn);
        if info.owner != Owner::Domain(domain) {
            continue;
        }
        if info.pinned {
            if info.page_type.table_level().is_none() {
                return Err(format!("{mfn:?} pinned as {:?}", info.page_type));
            }
            refs[index] += 1;
            types[index] += 1;
        }
        let Some(level) = info.page_type.table_level() else {
            continue;
        };
        if info.type_count == 0 {
            if info.validated {
                return Err(format!("{mfn:?} validated with no type reference"));
            }
            continue;
        }
        if !info.validated {
            return Err(format!(
                "{mfn:?} typed {:?} but not validated",
                info.page_type
            ));
        }
        for slot in (0..ENTRIES_PER_TABLE).filter(|&s| entry::is_guest_slot(level, s)) {
            let value = mem.read_u64(mfn.addr() + slot as u64 * 8);
            if !entry::is_present(value) {
                continue;
            }
            let target = entry::target(value);
            let target_info = frames.info(target);
            if target_info.owner != Owner::Domain(domain) {
                return Err(format!(
                    "{mfn:?}[{slot}] = {value:#x} names {target:?} held by {:?}",
                    target_info.owner
                ));
            }
            let t = target.0 as usize;
            refs[t] += 1;
            if level == 1 {
                if entry::is_writable(value) {
                    if target_info.page_type != PageType::Writable {
                        return Err(format!(
                            "{target:?} mapped writable by {mfn:?}[{slot}] but is {:?}",
                            target_info.page_type
                        ));
                    }
                    types[t] += 1;
                }
            } else {
                if target_info.page_type != PageType::table(level - 1) {
                    return Err(format!(
                        "{mfn:?}[{slot}] names {target:?} of type {:?}",
                        target_info.page_type
                    ));
                }
                types[t] += 1;
            }
        }
    }
    for root in roots {
        let t = root.0 as usize;
        if frames.info(*root).page_type != PageType::L4Table {
            return Err(format!("root {root:?} is not an L4"));
        }
        refs[t] += 1;
        types[t] += 1;
    }
    for page in held {
        let t = page.0 as usize;
        if frames.info(*page).page_type != PageType::Writable {
            return Err(format!("held page {page:?} is not a writable page"));
        }
        refs[t] += 1;
        types[t] += 1;
    }
    for index in 0..n {
        let mfn = Mfn(index as u64);
        let info = frames.info(mfn);
        if info.owner != Owner::Domain(domain) {
            continue;
        }
        if u64::from(info.ref_count) != refs[index] || u64::from(info.type_count) != types[index] {
            return Err(format!(
                "{mfn:?} ({:?}): counts {}/{} but the tables imply {}/{}",
                info.page_type, info.ref_count, info.type_count, refs[index], types[index]
            ));
        }
    }
    Ok(())
}
