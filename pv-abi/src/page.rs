//! The 4 KiB page that every ring, grant and shared structure of the interface is
//! measured in (`XEN_PAGE_SHIFT`), whatever page size a guest uses internally.

/// log2 of the interface page size.
pub const XEN_PAGE_SHIFT: u32 = 12;
/// The interface page size in bytes.
pub const XEN_PAGE_SIZE: usize = 1 << XEN_PAGE_SHIFT;

/// A page-aligned 4 KiB buffer, for instance the memory of a shared ring that a
/// frontend will grant to its backend.
#[repr(C, align(4096))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page(pub [u8; XEN_PAGE_SIZE]);

impl Page {
    /// A zero-filled page.
    pub const fn zeroed() -> Self {
        Page([0; XEN_PAGE_SIZE])
    }
}

impl Default for Page {
    fn default() -> Self {
        Page::zeroed()
    }
}
