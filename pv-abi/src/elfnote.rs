//! ELF note types a PV kernel uses to describe itself to the domain builder
//! (`xen/elfnote.h`). Notes have the name [`XEN_ELFNOTE_NAME`].

/// The note name (`"Xen"`, NUL-terminated in the file).
pub const XEN_ELFNOTE_NAME: &[u8] = b"Xen";

/// Free-form information (ignored).
pub const XEN_ELFNOTE_INFO: u32 = 0;
/// Virtual entry point (numeric).
pub const XEN_ELFNOTE_ENTRY: u32 = 1;
/// Virtual address of the page the builder fills with hypercall stubs (numeric).
pub const XEN_ELFNOTE_HYPERCALL_PAGE: u32 = 2;
/// Virtual base of the kernel image (numeric).
pub const XEN_ELFNOTE_VIRT_BASE: u32 = 3;
/// Offset between virtual and physical addresses in the image (numeric).
pub const XEN_ELFNOTE_PADDR_OFFSET: u32 = 4;
/// Required hypervisor version, `"xen-3.0"` (string).
pub const XEN_ELFNOTE_XEN_VERSION: u32 = 5;
/// Guest OS name (string).
pub const XEN_ELFNOTE_GUEST_OS: u32 = 6;
/// Guest OS version (string).
pub const XEN_ELFNOTE_GUEST_VERSION: u32 = 7;
/// Loader type, `"generic"` (string).
pub const XEN_ELFNOTE_LOADER: u32 = 8;
/// PAE support, `"yes"`, `"no"` or `"bimodal"` (string).
pub const XEN_ELFNOTE_PAE_MODE: u32 = 9;
/// Required and supported features, `|`-separated, `!` for required (string).
pub const XEN_ELFNOTE_FEATURES: u32 = 10;
/// Load the symbol table after the kernel, `"yes"` (string).
pub const XEN_ELFNOTE_BSD_SYMTAB: u32 = 11;
/// Lowest address the hypervisor reserves (32-bit guests; numeric).
pub const XEN_ELFNOTE_HV_START_LOW: u32 = 12;
/// Mask and value identifying valid L1 entries for save/restore (numeric pair).
pub const XEN_ELFNOTE_L1_MFN_VALID: u32 = 13;
/// The guest supports suspend cancellation (numeric).
pub const XEN_ELFNOTE_SUSPEND_CANCEL: u32 = 14;
/// Virtual address at which to map the initial P2M list, outside the boot area
/// (numeric).
pub const XEN_ELFNOTE_INIT_P2M: u32 = 15;
/// The kernel accepts `mod_start` as a frame number (numeric).
pub const XEN_ELFNOTE_MOD_START_PFN: u32 = 16;
/// Bitmap of supported `XENFEAT_*` (numeric, 32 bits).
pub const XEN_ELFNOTE_SUPPORTED_FEATURES: u32 = 17;
/// 32-bit physical entry point for PVH (numeric).
pub const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
/// The largest defined guest note type.
pub const XEN_ELFNOTE_MAX: u32 = XEN_ELFNOTE_PHYS32_ENTRY;

/// Crash dump: hypervisor information.
pub const XEN_ELFNOTE_CRASH_INFO: u32 = 0x100_0001;
/// Crash dump: registers.
pub const XEN_ELFNOTE_CRASH_REGS: u32 = 0x100_0002;
/// Core dump: empty note.
pub const XEN_ELFNOTE_DUMPCORE_NONE: u32 = 0x200_0000;
/// Core dump: header.
pub const XEN_ELFNOTE_DUMPCORE_HEADER: u32 = 0x200_0001;
/// Core dump: hypervisor version.
pub const XEN_ELFNOTE_DUMPCORE_XEN_VERSION: u32 = 0x200_0002;
/// Core dump: format version.
pub const XEN_ELFNOTE_DUMPCORE_FORMAT_VERSION: u32 = 0x200_0003;
