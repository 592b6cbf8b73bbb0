//! The start-of-day layout of a 64-bit PV domain (no Xen header: it is what Xen's domain
//! builders produce and what a PV kernel may rely on, as `xen.h` describes around
//! `start_info`). Pure arithmetic, shared by every builder here (the hypervisor's for the
//! domains of its boot image, the guest kernel's when it builds a domain on Xen).
//!
//! The boot region starts at the kernel's `virt_base` and maps pseudo-physical frames
//! 0, 1, 2, ... in order, one 4 KiB page each:
//!
//! ```text
//! virt_base  kernel image (segments placed as Xen's loader places them)
//!            P2M list: one machine frame number (u64) per pseudo-physical frame
//!            start_info page
//!            xenstore ring page, console ring page
//!            bootstrap page tables (L4, L3, L2, L1s) -- mapped read-only
//!            boot stack page (rsp starts at its top)
//!            padding: at least 512 KiB, up to a 4 MiB boundary
//! ```

/// Bytes in a page.
const PAGE: u64 = 4096;
/// The least padding after the boot stack.
pub const MIN_PADDING: u64 = 512 * 1024;
/// The boot region ends on a multiple of this.
pub const REGION_ALIGN: u64 = 4 << 20;

/// Where everything in the boot region goes (virtual addresses, page aligned).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootLayout {
    /// Start of the region (`virt_base`), pseudo-physical frame 0.
    pub v_start: u64,
    /// First page of the P2M list.
    pub p2m: u64,
    /// The start_info page.
    pub start_info: u64,
    /// The xenstore ring page.
    pub xenstore: u64,
    /// The console ring page.
    pub console: u64,
    /// First page-table page (the L4).
    pub page_tables: u64,
    /// Number of page-table pages.
    pub nr_page_tables: u64,
    /// The boot stack page.
    pub stack: u64,
    /// End of the region.
    pub v_end: u64,
}

fn page_up(value: u64) -> u64 {
    value.div_ceil(PAGE) * PAGE
}

/// Page-table pages needed to map `[start, end)` with 4 KiB pages, L4 included.
pub fn tables_needed(start: u64, end: u64) -> u64 {
    let span = |shift: u32| ((end - 1) >> shift) - (start >> shift) + 1;
    1 + span(39) + span(30) + span(21)
}

impl BootLayout {
    /// Lays out the boot region of a domain of `nr_pages` pages whose kernel wants the
    /// region to start at `virt_base` and ends (its last segment's memory) at
    /// `kernel_end`.
    pub fn compute(virt_base: u64, kernel_end: u64, nr_pages: u64) -> BootLayout {
        let v_start = virt_base;
        let p2m = page_up(kernel_end);
        let start_info = p2m + page_up(nr_pages * 8);
        let xenstore = start_info + PAGE;
        let console = xenstore + PAGE;
        let page_tables = console + PAGE;
        let mut nr_page_tables = 1;
        loop {
            let stack = page_tables + nr_page_tables * PAGE;
            let stack_end = stack + PAGE;
            let mut v_end = stack_end.div_ceil(REGION_ALIGN) * REGION_ALIGN;
            if v_end - stack_end < MIN_PADDING {
                v_end += REGION_ALIGN;
            }
            let needed = tables_needed(v_start, v_end);
            if needed <= nr_page_tables {
                return BootLayout {
                    v_start,
                    p2m,
                    start_info,
                    xenstore,
                    console,
                    page_tables,
                    nr_page_tables,
                    stack,
                    v_end,
                };
            }
            nr_page_tables = needed;
        }
    }

    /// Pseudo-physical frame of a boot-region address.
    pub fn pfn(&self, va: u64) -> u64 {
        (va - self.v_start) / PAGE
    }

    /// Pages in the boot region.
    pub fn pages(&self) -> u64 {
        (self.v_end - self.v_start) / PAGE
    }

    /// Whether `va` is one of the bootstrap page-table pages (mapped read-only).
    pub fn is_page_table(&self, va: u64) -> bool {
        (self.page_tables..self.page_tables + self.nr_page_tables * PAGE).contains(&va)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: u64 = 0xffff_ffff_8000_0000;

    #[test]
    fn layout_pads_and_counts_tables() {
        let layout = BootLayout::compute(BASE, BASE + 0x2800, 8192);
        assert_eq!(layout.v_start, BASE);
        assert_eq!(layout.v_end % REGION_ALIGN, 0);
        assert!(layout.v_end - (layout.stack + PAGE) >= MIN_PADDING);
        assert!(layout.nr_page_tables >= tables_needed(layout.v_start, layout.v_end));
        assert_eq!(layout.p2m, BASE + 0x3000);
        assert_eq!(layout.start_info, layout.p2m + 16 * PAGE);
        assert!(layout.is_page_table(layout.page_tables));
        assert!(!layout.is_page_table(layout.stack));
    }

    #[test]
    fn a_region_past_one_l1_takes_a_second() {
        // Kernel and P2M fill most of the first 2 MiB: the 4 MiB region needs 2 L1s.
        let layout = BootLayout::compute(BASE, BASE + 0x1f_0000, 1024);
        assert_eq!(layout.v_end, BASE + REGION_ALIGN);
        assert_eq!(layout.nr_page_tables, 5);
    }
}
