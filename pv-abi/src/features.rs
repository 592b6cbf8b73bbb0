//! Feature bits reported by `XENVER_get_features` (`xen/features.h`).
//!
//! Feature `n` is bit `n % 32` of submap `n / 32`. Xen 4.17 defines one submap.

/// Writes to page tables are allowed without `mmu_update` (auto-translated guests).
pub const XENFEAT_WRITABLE_PAGE_TABLES: u32 = 0;
/// Descriptor tables may be written directly.
pub const XENFEAT_WRITABLE_DESCRIPTOR_TABLES: u32 = 1;
/// The guest sees pseudo-physical addresses in its page tables (HVM/PVH style).
pub const XENFEAT_AUTO_TRANSLATED_PHYSMAP: u32 = 2;
/// The guest kernel runs in supervisor mode (ring 0).
pub const XENFEAT_SUPERVISOR_MODE_KERNEL: u32 = 3;
/// PAE page directories may live above 4 GiB.
pub const XENFEAT_PAE_PGDIR_ABOVE_4GB: u32 = 4;
/// `MMU_PT_UPDATE_PRESERVE_AD` is supported.
pub const XENFEAT_MMU_PT_UPDATE_PRESERVE_AD: u32 = 5;
/// `MMUEXT_CLEAR_PAGE` and `MMUEXT_COPY_PAGE` are supported.
pub const XENFEAT_HIGHMEM_ASSIST: u32 = 6;
/// Grant mappings may set the PTE's available bits (`GNTMAP_guest_avail_mask`).
pub const XENFEAT_GNTTAB_MAP_AVAIL_BITS: u32 = 7;
/// The HVM callback vector is supported.
pub const XENFEAT_HVM_CALLBACK_VECTOR: u32 = 8;
/// The pvclock algorithm is safe on HVM.
pub const XENFEAT_HVM_SAFE_PVCLOCK: u32 = 9;
/// HVM guests may use PIRQs.
pub const XENFEAT_HVM_PIRQS: u32 = 10;
/// The domain may run as dom0.
pub const XENFEAT_DOM0: u32 = 11;
/// Grant mappings also appear at pfn == mfn (ARM).
pub const XENFEAT_GRANT_MAP_IDENTITY: u32 = 12;
/// `XENMEMF_vnode` is supported in memory operations.
pub const XENFEAT_MEMORY_OP_VNODE_SUPPORTED: u32 = 13;
/// The SMC calling convention is supported (ARM).
pub const XENFEAT_ARM_SMCCC_SUPPORTED: u32 = 14;
/// Linux may take the RSDP address from anywhere (PVH dom0).
pub const XENFEAT_LINUX_RSDP_UNRESTRICTED: u32 = 15;
/// The domain's memory is not mapped 1:1 (ARM).
pub const XENFEAT_NOT_DIRECT_MAPPED: u32 = 16;
/// The domain's memory is mapped 1:1 (ARM).
pub const XENFEAT_DIRECT_MAPPED: u32 = 17;
/// Number of 32-bit submaps in the feature bitmap.
pub const XENFEAT_NR_SUBMAPS: u32 = 1;

/// The feature bitmap a hypervisor reports, one `u32` per submap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FeatureSet([u32; XENFEAT_NR_SUBMAPS as usize]);

impl FeatureSet {
    /// The empty set.
    pub const fn empty() -> Self {
        FeatureSet([0; XENFEAT_NR_SUBMAPS as usize])
    }
    /// This set plus feature `bit` (bits beyond the bitmap are ignored).
    pub const fn with(mut self, bit: u32) -> Self {
        if bit < 32 * XENFEAT_NR_SUBMAPS {
            self.0[(bit / 32) as usize] |= 1 << (bit % 32);
        }
        self
    }
    /// Whether feature `bit` is set.
    pub const fn contains(&self, bit: u32) -> bool {
        bit < 32 * XENFEAT_NR_SUBMAPS && self.0[(bit / 32) as usize] & (1 << (bit % 32)) != 0
    }
    /// Submap `idx` as `XENVER_get_features` returns it; `None` past the last submap.
    pub const fn submap(&self, idx: u32) -> Option<u32> {
        if idx < XENFEAT_NR_SUBMAPS {
            Some(self.0[idx as usize])
        } else {
            None
        }
    }
    /// Stores submap `idx` (as read from `XENVER_get_features`); ignored past the end.
    pub fn set_submap(&mut self, idx: u32, bits: u32) {
        if let Some(word) = self.0.get_mut(idx as usize) {
            *word = bits;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_set() {
        let f = FeatureSet::empty().with(XENFEAT_DOM0).with(100);
        assert!(f.contains(XENFEAT_DOM0));
        assert!(!f.contains(XENFEAT_HVM_PIRQS));
        assert!(!f.contains(100));
        assert_eq!(f.submap(0), Some(1 << 11));
        assert_eq!(f.submap(1), None);
        let mut g = FeatureSet::empty();
        g.set_submap(0, 1 << 11);
        g.set_submap(7, 1);
        assert_eq!(f, g);
    }
}
