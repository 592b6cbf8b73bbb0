//! What a guest page-table entry may hold, level by level.
//!
//! Only present entries are checked; a non-present entry is the guest's to fill with
//! anything. A present entry must:
//! - set no bit of its level's disallowed mask (Xen's `L?_DISALLOW_MASK` for a domain
//!   without I/O memory): the guest may use present, writable, user, accessed, dirty, the
//!   three available bits 9..11, the available bits 52..62 and no-execute at every level,
//!   and global in L1 entries; it may not use the cache attributes (PWT, PCD, PAT) of an
//!   L1 entry, nor large pages or global at levels 2..4 (no superpages for PV guests);
//! - name a frame below the machine's physical address width.
//!
//! Accepted entries are adjusted the way Xen adjusts a 64-bit PV guest's entries: the user
//! bit is forced on (the guest kernel runs in ring 3). Unlike Xen we also clear the global
//! bit of L1 entries, so that no guest mapping survives the CR3 switch to another domain
//! (Xen instead flushes global mappings on such switches); guests cannot tell, except by
//! reading the entry back.

use crate::mm::{Mfn, pte};
use pv_abi::errno::Errno;

/// The L4 slots the hypervisor keeps for itself (Xen's 0xffff800000000000 to
/// 0xffff880000000000): the guest can never write them, validation skips them, and every
/// validated root gets the hypervisor's own entries there.
pub const HYPERVISOR_L4_SLOTS: core::ops::Range<usize> = 256..272;

/// The three bits (9..11) software may use in any entry.
pub const AVAILABLE_LOW: u64 = 0x0e00;
/// The bits 52..62 software may use in any entry.
pub const AVAILABLE_HIGH: u64 = 0x7ff << 52;

/// Bits a guest may set in any present entry (Xen's `base_disallow_mask`, inverted).
const BASE_ALLOWED: u64 = pte::PRESENT
    | pte::WRITABLE
    | pte::USER
    | pte::ACCESSED
    | pte::DIRTY
    | AVAILABLE_LOW
    | AVAILABLE_HIGH
    | pte::NO_EXECUTE
    | pte::ADDRESS_MASK;

/// Bits a guest may set in a present L1 entry: the base set plus global.
const L1_ALLOWED: u64 = BASE_ALLOWED | pte::GLOBAL;

/// Whether an entry is present.
#[inline]
pub const fn is_present(entry: u64) -> bool {
    entry & pte::PRESENT != 0
}

/// Whether an entry maps (L1) or points to (L2..L4) a page writably.
#[inline]
pub const fn is_writable(entry: u64) -> bool {
    entry & pte::WRITABLE != 0
}

/// The frame an entry names.
#[inline]
pub const fn target(entry: u64) -> Mfn {
    Mfn::containing(entry & pte::ADDRESS_MASK)
}

/// Whether slot `index` of an L4 is the guest's.
#[inline]
pub fn is_guest_slot(level: u32, index: usize) -> bool {
    level != 4 || !HYPERVISOR_L4_SLOTS.contains(&index)
}

/// The bits of a present entry at `level` that the guest may set.
pub const fn allowed_bits(level: u32) -> u64 {
    if level == 1 { L1_ALLOWED } else { BASE_ALLOWED }
}

/// The address bits of an entry that name memory at or above 2^`phys_addr_bits`, which
/// the machine cannot decode (none when it decodes all 52). Computed once per engine, so
/// that [`check`] tests them with the disallowed flags in one mask.
pub const fn undecodable_bits(phys_addr_bits: u32) -> u64 {
    if phys_addr_bits >= 52 {
        0
    } else {
        pte::ADDRESS_MASK & !((1u64 << phys_addr_bits) - 1)
    }
}

/// The bits a present entry at `level` must not have: the disallowed flags and the
/// `undecodable` address bits ([`undecodable_bits`]).
pub const fn rejected_bits(level: u32, undecodable: u64) -> u64 {
    !allowed_bits(level) | undecodable
}

// The address bits are all allowed, so the rejected bits of a level keep the undecodable
// ones apart: `rejected_bits(level, u) & pte::ADDRESS_MASK == u`.
const _: () =
    assert!(!L1_ALLOWED & pte::ADDRESS_MASK == 0 && !BASE_ALLOWED & pte::ADDRESS_MASK == 0);

/// Checks a present entry for `level` (1..=4): no disallowed bit, and an address the
/// machine can decode (none of `undecodable`, from [`undecodable_bits`]). `EINVAL`
/// otherwise.
#[inline]
pub fn check(level: u32, entry: u64, undecodable: u64) -> Result<(), Errno> {
    check_against(entry, rejected_bits(level, undecodable))
}

/// [`check`] with the level's [`rejected_bits`] already computed.
#[inline(always)]
pub fn check_against(entry: u64, rejected: u64) -> Result<(), Errno> {
    if entry & rejected != 0 {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

/// The entry as the hypervisor stores it: user forced on, and global cleared at level 1.
#[inline]
pub const fn adjust(level: u32, entry: u64) -> u64 {
    if !is_present(entry) {
        return entry;
    }
    let entry = entry | pte::USER;
    if level == 1 {
        entry & !pte::GLOBAL
    } else {
        entry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: u64 = 0x5000 | pte::PRESENT | pte::WRITABLE | pte::USER;

    #[test]
    fn allowed_and_disallowed_bits_per_level() {
        for level in 1..=4 {
            assert_eq!(check(level, OK, undecodable_bits(40)), Ok(()));
            assert_eq!(
                check(
                    level,
                    OK | pte::ACCESSED | pte::DIRTY | AVAILABLE_LOW,
                    undecodable_bits(40)
                ),
                Ok(())
            );
            assert_eq!(
                check(
                    level,
                    OK | AVAILABLE_HIGH | pte::NO_EXECUTE,
                    undecodable_bits(40)
                ),
                Ok(())
            );
            for bit in [pte::WRITE_THROUGH, pte::CACHE_DISABLE, pte::PAGE_SIZE] {
                assert_eq!(
                    check(level, OK | bit, undecodable_bits(40)),
                    Err(Errno::EINVAL),
                    "{level} {bit:#x}"
                );
            }
        }
        assert_eq!(
            check(1, OK | pte::GLOBAL, undecodable_bits(40)),
            Ok(()),
            "global allowed in L1"
        );
        assert_eq!(
            check(2, OK | pte::GLOBAL, undecodable_bits(40)),
            Err(Errno::EINVAL)
        );
    }

    #[test]
    fn addresses_beyond_the_physical_width_are_refused() {
        assert_eq!(check(1, (1 << 39) | OK, undecodable_bits(40)), Ok(()));
        assert_eq!(
            check(1, (1 << 40) | OK, undecodable_bits(40)),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            check(3, (1 << 51) | OK, undecodable_bits(46)),
            Err(Errno::EINVAL)
        );
        assert_eq!(check(3, (1 << 51) | OK, undecodable_bits(52)), Ok(()));
        for width in [36, 39, 40, 46, 52] {
            for bit in 12..52 {
                let expected = if bit < width {
                    Ok(())
                } else {
                    Err(Errno::EINVAL)
                };
                let entry = (1 << bit) | OK;
                for level in 1..=4 {
                    assert_eq!(
                        check(level, entry, undecodable_bits(width)),
                        expected,
                        "{width} bits, address bit {bit}, level {level}"
                    );
                }
            }
        }
    }

    #[test]
    fn adjustment_and_slots() {
        assert_eq!(adjust(1, 0x5000 | pte::PRESENT | pte::GLOBAL), 0x5000 | 0x5);
        assert_eq!(adjust(3, 0x5000 | pte::PRESENT), 0x5005);
        assert_eq!(
            adjust(1, 0x5000),
            0x5000,
            "non-present entries are left alone"
        );
        assert!(!is_guest_slot(4, 256) && !is_guest_slot(4, 271));
        assert!(is_guest_slot(4, 255) && is_guest_slot(4, 272) && is_guest_slot(3, 256));
    }
}
