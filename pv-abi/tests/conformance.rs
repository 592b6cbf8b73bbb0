//! ABI conformance: Xen's public headers are the oracle.
//!
//! This test generates a C program from one table of names (below), compiles it with the
//! system C compiler against `/usr/include/xen` (Debian's `libxen-dev`, Xen 4.17), runs it,
//! and compares what it prints with the Rust side:
//! - every constant's value;
//! - every wire structure's size and alignment, and every field's offset and size
//!   (Rust: `size_of`, `align_of`, `offset_of!`, `size_of_val`);
//! - every hypercall number, errno value, xenbus state, xenstore error and ring size.
//!
//! Expected values come only from the compiled program; the table holds names. A second
//! pass reads this crate's sources and fails if a `pub const` or a `#[repr(C)]` struct is
//! neither in the table nor in the short, justified list of items Xen's headers do not
//! define. The test prints one line, `abi-conformance: N items checked, M mismatches`.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use pv_abi::*;
use zerocopy::FromZeros;

/// One thing to check: a key printed by the C program, the C expression that produces
/// the expected value(s), and the Rust value(s).
struct Item {
    /// Rust name, for messages and the completeness check.
    rust: String,
    /// Key in the C program's output.
    key: String,
    kind: Kind,
}

enum Kind {
    /// A constant: C expression, Rust value.
    Const { c: String, rust: i128 },
    /// A type's size and alignment (alignment 0: size only; size `usize::MAX`: skip).
    Type {
        c: String,
        size: usize,
        align: usize,
    },
    /// A field's offset and size.
    Field {
        c_type: String,
        c_field: String,
        offset: usize,
        size: usize,
    },
}

/// `k!(module::NAME)` checks a constant against the C macro of the same name;
/// `k!(module::NAME = "c expression")` against a C expression.
macro_rules! k {
    ($($m:ident)::+ = $c:literal) => {
        konst(stringify!($($m)::+), $c, ($($m)::+) as i128)
    };
    ($($m:ident)::+) => {
        konst(stringify!($($m)::+), last_segment(stringify!($($m)::+)), ($($m)::+) as i128)
    };
}

/// `st!("c type", rust::Type { field, field.sub, field as "c.designator" })` checks
/// the type's size and alignment and each listed field's offset and size.
/// `st!(nosize ...)` skips the size and alignment (C types ending in a flexible array).
macro_rules! st {
    (nosize $c:literal, $t:ty { $($rest:tt)* }) => {{
        let mut v = st!($c, $t { $($rest)* });
        if let Kind::Type { size, .. } = &mut v[0].kind { *size = usize::MAX; }
        v
    }};
    ($c:literal, $t:ty { $( $($f:ident).+ $(as $cf:literal)? ),* $(,)? }) => {{
        let zero = <$t as FromZeros>::new_zeroed();
        let _ = &zero;
        let mut v = vec![ty_item(stringify!($t), $c, size_of::<$t>(), align_of::<$t>())];
        $(
            let rust_field = stringify!($($f).+).replace(' ', "").replace("r#", "");
            #[allow(unused_mut, unused_assignments, reason = "only with an `as` override")]
            let mut c_field = rust_field.clone();
            $( c_field = $cf.to_string(); )?
            v.push(field_item(
                stringify!($t),
                $c,
                &rust_field,
                &c_field,
                core::mem::offset_of!($t, $($f).+),
                size_of_val(&zero.$($f).+),
            ));
        )*
        v
    }};
}

/// `ty!(rust::Alias = "c_type")` checks the size of a type alias.
macro_rules! ty {
    ($($m:ident)::+ = $c:literal) => {
        ty_item(stringify!($($m)::+), $c, size_of::<$($m)::+>(), 0)
    };
}

fn last_segment(path: &str) -> &str {
    path.rsplit("::").next().unwrap().trim()
}

fn konst(rust: &str, c: &str, value: i128) -> Item {
    Item {
        rust: rust.replace(' ', ""),
        key: format!("K\t{c}"),
        kind: Kind::Const {
            c: c.into(),
            rust: value,
        },
    }
}

/// A string constant: the C program reports whether the C string equals Rust's.
fn kstr(rust: &str, c: &str, value: &str) -> Item {
    let expr = format!("strcmp({c}, \"{}\") == 0", value.escape_default());
    konst(rust, &expr, 1)
}

fn ty_item(rust: &str, c: &str, size: usize, align: usize) -> Item {
    Item {
        rust: rust.replace(' ', ""),
        key: format!("T\t{c}"),
        kind: Kind::Type {
            c: c.into(),
            size,
            align,
        },
    }
}

fn field_item(
    rust_type: &str,
    c: &str,
    rust_field: &str,
    c_field: &str,
    offset: usize,
    size: usize,
) -> Item {
    Item {
        rust: format!("{}.{}", rust_type.replace(' ', ""), rust_field),
        key: format!("F\t{c}\t{c_field}"),
        kind: Kind::Field {
            c_type: c.into(),
            c_field: c_field.into(),
            offset,
            size,
        },
    }
}

fn constants() -> Vec<Item> {
    use pv_abi::io;
    vec![
        k!(arch_x86_64::FLAT_RING3_CS32),
        k!(arch_x86_64::FLAT_RING3_CS64),
        k!(arch_x86_64::FLAT_RING3_DS32),
        k!(arch_x86_64::FLAT_RING3_DS64),
        k!(arch_x86_64::FLAT_RING3_SS32),
        k!(arch_x86_64::FLAT_RING3_SS64),
        k!(arch_x86_64::FLAT_KERNEL_DS64),
        k!(arch_x86_64::FLAT_KERNEL_DS32),
        k!(arch_x86_64::FLAT_KERNEL_DS),
        k!(arch_x86_64::FLAT_KERNEL_CS64),
        k!(arch_x86_64::FLAT_KERNEL_CS32),
        k!(arch_x86_64::FLAT_KERNEL_CS),
        k!(arch_x86_64::FLAT_KERNEL_SS64),
        k!(arch_x86_64::FLAT_KERNEL_SS32),
        k!(arch_x86_64::FLAT_KERNEL_SS),
        k!(arch_x86_64::FLAT_USER_DS64),
        k!(arch_x86_64::FLAT_USER_DS32),
        k!(arch_x86_64::FLAT_USER_DS),
        k!(arch_x86_64::FLAT_USER_CS64),
        k!(arch_x86_64::FLAT_USER_CS32),
        k!(arch_x86_64::FLAT_USER_CS),
        k!(arch_x86_64::FLAT_USER_SS64),
        k!(arch_x86_64::FLAT_USER_SS32),
        k!(arch_x86_64::FLAT_USER_SS),
        k!(arch_x86_64::HYPERVISOR_VIRT_START),
        k!(arch_x86_64::HYPERVISOR_VIRT_END),
        k!(arch_x86_64::MACH2PHYS_VIRT_START),
        k!(arch_x86_64::MACH2PHYS_VIRT_END),
        k!(arch_x86_64::MACH2PHYS_NR_ENTRIES),
        k!(arch_x86_64::FIRST_RESERVED_GDT_PAGE),
        k!(arch_x86_64::FIRST_RESERVED_GDT_BYTE),
        k!(arch_x86_64::FIRST_RESERVED_GDT_ENTRY),
        k!(arch_x86_64::XEN_LEGACY_MAX_VCPUS),
        k!(arch_x86_64::SEGBASE_FS),
        k!(arch_x86_64::SEGBASE_GS_USER),
        k!(arch_x86_64::SEGBASE_GS_KERNEL),
        k!(arch_x86_64::SEGBASE_GS_USER_SEL),
        k!(arch_x86_64::VGCF_I387_VALID),
        k!(arch_x86_64::VGCF_I387_VALID = "VGCF_i387_valid"),
        k!(arch_x86_64::VGCF_IN_KERNEL),
        k!(arch_x86_64::VGCF_IN_KERNEL = "VGCF_in_kernel"),
        k!(arch_x86_64::VGCF_FAILSAFE_DISABLES_EVENTS = "VGCF_failsafe_disables_events"),
        k!(arch_x86_64::VGCF_SYSCALL_DISABLES_EVENTS = "VGCF_syscall_disables_events"),
        k!(arch_x86_64::VGCF_ONLINE = "VGCF_online"),
        k!(arch_x86_64::VGCF_IN_SYSCALL),
        k!(arch_x86_64::VGCF_IN_SYSCALL = "VGCF_in_syscall"),
        k!(arch_x86_64::XEN_CPUID_NO_SUBLEAF),
        k!(arch_x86_64::XEN_HVM_DEBUGCONS_IOPORT),
        k!(callback::CALLBACKTYPE_EVENT = "CALLBACKTYPE_event"),
        k!(callback::CALLBACKTYPE_FAILSAFE = "CALLBACKTYPE_failsafe"),
        k!(callback::CALLBACKTYPE_SYSCALL = "CALLBACKTYPE_syscall"),
        k!(callback::CALLBACKTYPE_SYSENTER_DEPRECATED = "CALLBACKTYPE_sysenter_deprecated"),
        k!(callback::CALLBACKTYPE_NMI = "CALLBACKTYPE_nmi"),
        k!(callback::CALLBACKTYPE_SYSENTER = "CALLBACKTYPE_sysenter"),
        k!(callback::CALLBACKTYPE_SYSCALL32 = "CALLBACKTYPE_syscall32"),
        k!(callback::CALLBACKF_MASK_EVENTS = "CALLBACKF_mask_events"),
        k!(callback::CALLBACKOP_REGISTER = "CALLBACKOP_register"),
        k!(callback::CALLBACKOP_UNREGISTER = "CALLBACKOP_unregister"),
        k!(elfnote::XEN_ELFNOTE_INFO),
        k!(elfnote::XEN_ELFNOTE_ENTRY),
        k!(elfnote::XEN_ELFNOTE_HYPERCALL_PAGE),
        k!(elfnote::XEN_ELFNOTE_VIRT_BASE),
        k!(elfnote::XEN_ELFNOTE_PADDR_OFFSET),
        k!(elfnote::XEN_ELFNOTE_XEN_VERSION),
        k!(elfnote::XEN_ELFNOTE_GUEST_OS),
        k!(elfnote::XEN_ELFNOTE_GUEST_VERSION),
        k!(elfnote::XEN_ELFNOTE_LOADER),
        k!(elfnote::XEN_ELFNOTE_PAE_MODE),
        k!(elfnote::XEN_ELFNOTE_FEATURES),
        k!(elfnote::XEN_ELFNOTE_BSD_SYMTAB),
        k!(elfnote::XEN_ELFNOTE_HV_START_LOW),
        k!(elfnote::XEN_ELFNOTE_L1_MFN_VALID),
        k!(elfnote::XEN_ELFNOTE_SUSPEND_CANCEL),
        k!(elfnote::XEN_ELFNOTE_INIT_P2M),
        k!(elfnote::XEN_ELFNOTE_MOD_START_PFN),
        k!(elfnote::XEN_ELFNOTE_SUPPORTED_FEATURES),
        k!(elfnote::XEN_ELFNOTE_PHYS32_ENTRY),
        k!(elfnote::XEN_ELFNOTE_MAX),
        k!(elfnote::XEN_ELFNOTE_CRASH_INFO),
        k!(elfnote::XEN_ELFNOTE_CRASH_REGS),
        k!(elfnote::XEN_ELFNOTE_DUMPCORE_NONE),
        k!(elfnote::XEN_ELFNOTE_DUMPCORE_HEADER),
        k!(elfnote::XEN_ELFNOTE_DUMPCORE_XEN_VERSION),
        k!(elfnote::XEN_ELFNOTE_DUMPCORE_FORMAT_VERSION),
        k!(event_channel::EVTCHNOP_BIND_INTERDOMAIN = "EVTCHNOP_bind_interdomain"),
        k!(event_channel::EVTCHNOP_BIND_VIRQ = "EVTCHNOP_bind_virq"),
        k!(event_channel::EVTCHNOP_BIND_PIRQ = "EVTCHNOP_bind_pirq"),
        k!(event_channel::EVTCHNOP_CLOSE = "EVTCHNOP_close"),
        k!(event_channel::EVTCHNOP_SEND = "EVTCHNOP_send"),
        k!(event_channel::EVTCHNOP_STATUS = "EVTCHNOP_status"),
        k!(event_channel::EVTCHNOP_ALLOC_UNBOUND = "EVTCHNOP_alloc_unbound"),
        k!(event_channel::EVTCHNOP_BIND_IPI = "EVTCHNOP_bind_ipi"),
        k!(event_channel::EVTCHNOP_BIND_VCPU = "EVTCHNOP_bind_vcpu"),
        k!(event_channel::EVTCHNOP_UNMASK = "EVTCHNOP_unmask"),
        k!(event_channel::EVTCHNOP_RESET = "EVTCHNOP_reset"),
        k!(event_channel::EVTCHNOP_INIT_CONTROL = "EVTCHNOP_init_control"),
        k!(event_channel::EVTCHNOP_EXPAND_ARRAY = "EVTCHNOP_expand_array"),
        k!(event_channel::EVTCHNOP_SET_PRIORITY = "EVTCHNOP_set_priority"),
        k!(event_channel::EVTCHNSTAT_CLOSED = "EVTCHNSTAT_closed"),
        k!(event_channel::EVTCHNSTAT_UNBOUND = "EVTCHNSTAT_unbound"),
        k!(event_channel::EVTCHNSTAT_INTERDOMAIN = "EVTCHNSTAT_interdomain"),
        k!(event_channel::EVTCHNSTAT_PIRQ = "EVTCHNSTAT_pirq"),
        k!(event_channel::EVTCHNSTAT_VIRQ = "EVTCHNSTAT_virq"),
        k!(event_channel::EVTCHNSTAT_IPI = "EVTCHNSTAT_ipi"),
        k!(event_channel::EVTCHN_2L_NR_CHANNELS),
        k!(event_channel::EVTCHN_FIFO_PRIORITY_MAX),
        k!(event_channel::EVTCHN_FIFO_PRIORITY_DEFAULT),
        k!(event_channel::EVTCHN_FIFO_PRIORITY_MIN),
        k!(event_channel::EVTCHN_FIFO_MAX_QUEUES),
        k!(event_channel::EVTCHN_FIFO_PENDING),
        k!(event_channel::EVTCHN_FIFO_MASKED),
        k!(event_channel::EVTCHN_FIFO_LINKED),
        k!(event_channel::EVTCHN_FIFO_BUSY),
        k!(event_channel::EVTCHN_FIFO_LINK_BITS),
        k!(event_channel::EVTCHN_FIFO_LINK_MASK),
        k!(event_channel::EVTCHN_FIFO_NR_CHANNELS),
        k!(features::XENFEAT_WRITABLE_PAGE_TABLES = "XENFEAT_writable_page_tables"),
        k!(features::XENFEAT_WRITABLE_DESCRIPTOR_TABLES = "XENFEAT_writable_descriptor_tables"),
        k!(features::XENFEAT_AUTO_TRANSLATED_PHYSMAP = "XENFEAT_auto_translated_physmap"),
        k!(features::XENFEAT_SUPERVISOR_MODE_KERNEL = "XENFEAT_supervisor_mode_kernel"),
        k!(features::XENFEAT_PAE_PGDIR_ABOVE_4GB = "XENFEAT_pae_pgdir_above_4gb"),
        k!(features::XENFEAT_MMU_PT_UPDATE_PRESERVE_AD = "XENFEAT_mmu_pt_update_preserve_ad"),
        k!(features::XENFEAT_HIGHMEM_ASSIST = "XENFEAT_highmem_assist"),
        k!(features::XENFEAT_GNTTAB_MAP_AVAIL_BITS = "XENFEAT_gnttab_map_avail_bits"),
        k!(features::XENFEAT_HVM_CALLBACK_VECTOR = "XENFEAT_hvm_callback_vector"),
        k!(features::XENFEAT_HVM_SAFE_PVCLOCK = "XENFEAT_hvm_safe_pvclock"),
        k!(features::XENFEAT_HVM_PIRQS = "XENFEAT_hvm_pirqs"),
        k!(features::XENFEAT_DOM0 = "XENFEAT_dom0"),
        k!(features::XENFEAT_MEMORY_OP_VNODE_SUPPORTED = "XENFEAT_memory_op_vnode_supported"),
        k!(features::XENFEAT_ARM_SMCCC_SUPPORTED = "XENFEAT_ARM_SMCCC_supported"),
        k!(features::XENFEAT_LINUX_RSDP_UNRESTRICTED = "XENFEAT_linux_rsdp_unrestricted"),
        k!(features::XENFEAT_NOT_DIRECT_MAPPED = "XENFEAT_not_direct_mapped"),
        k!(features::XENFEAT_DIRECT_MAPPED = "XENFEAT_direct_mapped"),
        k!(features::XENFEAT_NR_SUBMAPS),
        k!(grant_table::GNTTAB_NR_RESERVED_ENTRIES),
        k!(grant_table::GNTTAB_RESERVED_CONSOLE),
        k!(grant_table::GNTTAB_RESERVED_XENSTORE),
        k!(grant_table::GTF_INVALID = "GTF_invalid"),
        k!(grant_table::GTF_PERMIT_ACCESS = "GTF_permit_access"),
        k!(grant_table::GTF_ACCEPT_TRANSFER = "GTF_accept_transfer"),
        k!(grant_table::GTF_TRANSITIVE = "GTF_transitive"),
        k!(grant_table::GTF_TYPE_MASK = "GTF_type_mask"),
        k!(grant_table::GTF_READONLY = "GTF_readonly"),
        k!(grant_table::GTF_READING = "GTF_reading"),
        k!(grant_table::GTF_WRITING = "GTF_writing"),
        k!(grant_table::GTF_PWT),
        k!(grant_table::GTF_PCD),
        k!(grant_table::GTF_PAT),
        k!(grant_table::GTF_SUB_PAGE = "GTF_sub_page"),
        k!(grant_table::GTF_TRANSFER_COMMITTED = "GTF_transfer_committed"),
        k!(grant_table::GTF_TRANSFER_COMPLETED = "GTF_transfer_completed"),
        k!(grant_table::GNTTABOP_MAP_GRANT_REF = "GNTTABOP_map_grant_ref"),
        k!(grant_table::GNTTABOP_UNMAP_GRANT_REF = "GNTTABOP_unmap_grant_ref"),
        k!(grant_table::GNTTABOP_SETUP_TABLE = "GNTTABOP_setup_table"),
        k!(grant_table::GNTTABOP_DUMP_TABLE = "GNTTABOP_dump_table"),
        k!(grant_table::GNTTABOP_TRANSFER = "GNTTABOP_transfer"),
        k!(grant_table::GNTTABOP_COPY = "GNTTABOP_copy"),
        k!(grant_table::GNTTABOP_QUERY_SIZE = "GNTTABOP_query_size"),
        k!(grant_table::GNTTABOP_UNMAP_AND_REPLACE = "GNTTABOP_unmap_and_replace"),
        k!(grant_table::GNTTABOP_SET_VERSION = "GNTTABOP_set_version"),
        k!(grant_table::GNTTABOP_GET_STATUS_FRAMES = "GNTTABOP_get_status_frames"),
        k!(grant_table::GNTTABOP_GET_VERSION = "GNTTABOP_get_version"),
        k!(grant_table::GNTTABOP_SWAP_GRANT_REF = "GNTTABOP_swap_grant_ref"),
        k!(grant_table::GNTTABOP_CACHE_FLUSH = "GNTTABOP_cache_flush"),
        k!(grant_table::GNTMAP_DEVICE_MAP = "GNTMAP_device_map"),
        k!(grant_table::GNTMAP_HOST_MAP = "GNTMAP_host_map"),
        k!(grant_table::GNTMAP_READONLY = "GNTMAP_readonly"),
        k!(grant_table::GNTMAP_APPLICATION_MAP = "GNTMAP_application_map"),
        k!(grant_table::GNTMAP_CONTAINS_PTE = "GNTMAP_contains_pte"),
        k!(grant_table::GNTMAP_GUEST_AVAIL0 = "_GNTMAP_guest_avail0"),
        k!(grant_table::GNTMAP_GUEST_AVAIL_MASK = "GNTMAP_guest_avail_mask"),
        k!(grant_table::GNTST_OKAY = "GNTST_okay"),
        k!(grant_table::GNTST_GENERAL_ERROR = "GNTST_general_error"),
        k!(grant_table::GNTST_BAD_DOMAIN = "GNTST_bad_domain"),
        k!(grant_table::GNTST_BAD_GNTREF = "GNTST_bad_gntref"),
        k!(grant_table::GNTST_BAD_HANDLE = "GNTST_bad_handle"),
        k!(grant_table::GNTST_BAD_VIRT_ADDR = "GNTST_bad_virt_addr"),
        k!(grant_table::GNTST_BAD_DEV_ADDR = "GNTST_bad_dev_addr"),
        k!(grant_table::GNTST_NO_DEVICE_SPACE = "GNTST_no_device_space"),
        k!(grant_table::GNTST_PERMISSION_DENIED = "GNTST_permission_denied"),
        k!(grant_table::GNTST_BAD_PAGE = "GNTST_bad_page"),
        k!(grant_table::GNTST_BAD_COPY_ARG = "GNTST_bad_copy_arg"),
        k!(grant_table::GNTST_ADDRESS_TOO_BIG = "GNTST_address_too_big"),
        k!(grant_table::GNTST_EAGAIN = "GNTST_eagain"),
        k!(grant_table::GNTST_NO_SPACE = "GNTST_no_space"),
        k!(grant_table::GNTCOPY_SOURCE_GREF = "GNTCOPY_source_gref"),
        k!(grant_table::GNTCOPY_DEST_GREF = "GNTCOPY_dest_gref"),
        k!(grant_table::GNTTAB_CACHE_CLEAN),
        k!(grant_table::GNTTAB_CACHE_INVAL),
        k!(grant_table::GNTTAB_CACHE_SOURCE_GREF),
        k!(io::blkif::BLKIF_OP_READ),
        k!(io::blkif::BLKIF_OP_WRITE),
        k!(io::blkif::BLKIF_OP_WRITE_BARRIER),
        k!(io::blkif::BLKIF_OP_FLUSH_DISKCACHE),
        k!(io::blkif::BLKIF_OP_RESERVED_1),
        k!(io::blkif::BLKIF_OP_DISCARD),
        k!(io::blkif::BLKIF_OP_INDIRECT),
        k!(io::blkif::BLKIF_MAX_SEGMENTS_PER_REQUEST),
        k!(io::blkif::BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST),
        k!(io::blkif::BLKIF_DISCARD_SECURE),
        k!(io::blkif::BLKIF_RSP_EOPNOTSUPP),
        k!(io::blkif::BLKIF_RSP_ERROR),
        k!(io::blkif::BLKIF_RSP_OKAY),
        k!(io::blkif::VDISK_CDROM),
        k!(io::blkif::VDISK_REMOVABLE),
        k!(io::blkif::VDISK_READONLY),
        k!(io::netif::XEN_NETIF_NR_SLOTS_MIN),
        k!(io::netif::XEN_NETIF_CTRL_HASH_TYPE_IPV4),
        k!(io::netif::XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP),
        k!(io::netif::XEN_NETIF_CTRL_HASH_TYPE_IPV6),
        k!(io::netif::XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP),
        k!(io::netif::XEN_NETIF_CTRL_HASH_ALGORITHM_NONE),
        k!(io::netif::XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ),
        k!(io::netif::XEN_NETIF_CTRL_TYPE_INVALID),
        k!(io::netif::XEN_NETIF_CTRL_TYPE_GET_HASH_FLAGS),
        k!(io::netif::XEN_NETIF_CTRL_TYPE_SET_HASH_FLAGS),
        k!(io::netif::XEN_NETIF_CTRL_TYPE_SET_HASH_KEY),
        k!(io::netif::XEN_NETIF_CTRL_TYPE_GET_HASH_MAPPING_SIZE),
        k!(io::netif::XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING_SIZE),
        k!(io::netif::XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING),
        k!(io::netif::XEN_NETIF_CTRL_TYPE_SET_HASH_ALGORITHM),
        k!(io::netif::XEN_NETIF_CTRL_TYPE_GET_GREF_MAPPING_SIZE),
        k!(io::netif::XEN_NETIF_CTRL_TYPE_ADD_GREF_MAPPING),
        k!(io::netif::XEN_NETIF_CTRL_TYPE_DEL_GREF_MAPPING),
        k!(io::netif::XEN_NETIF_CTRL_STATUS_SUCCESS),
        k!(io::netif::XEN_NETIF_CTRL_STATUS_NOT_SUPPORTED),
        k!(io::netif::XEN_NETIF_CTRL_STATUS_INVALID_PARAMETER),
        k!(io::netif::XEN_NETIF_CTRL_STATUS_BUFFER_OVERFLOW),
        k!(io::netif::XEN_NETIF_CTRLF_GREF_READONLY = "XEN_NETIF_CTRLF_GREF_readonly"),
        k!(io::netif::NETTXF_CSUM_BLANK = "NETTXF_csum_blank"),
        k!(io::netif::NETTXF_DATA_VALIDATED = "NETTXF_data_validated"),
        k!(io::netif::NETTXF_MORE_DATA = "NETTXF_more_data"),
        k!(io::netif::NETTXF_EXTRA_INFO = "NETTXF_extra_info"),
        k!(io::netif::XEN_NETIF_MAX_TX_SIZE),
        k!(io::netif::XEN_NETIF_EXTRA_TYPE_NONE),
        k!(io::netif::XEN_NETIF_EXTRA_TYPE_GSO),
        k!(io::netif::XEN_NETIF_EXTRA_TYPE_MCAST_ADD),
        k!(io::netif::XEN_NETIF_EXTRA_TYPE_MCAST_DEL),
        k!(io::netif::XEN_NETIF_EXTRA_TYPE_HASH),
        k!(io::netif::XEN_NETIF_EXTRA_TYPE_MAX),
        k!(io::netif::XEN_NETIF_EXTRA_FLAG_MORE),
        k!(io::netif::XEN_NETIF_GSO_TYPE_NONE),
        k!(io::netif::XEN_NETIF_GSO_TYPE_TCPV4),
        k!(io::netif::XEN_NETIF_GSO_TYPE_TCPV6),
        k!(io::netif::NETRXF_DATA_VALIDATED = "NETRXF_data_validated"),
        k!(io::netif::NETRXF_CSUM_BLANK = "NETRXF_csum_blank"),
        k!(io::netif::NETRXF_MORE_DATA = "NETRXF_more_data"),
        k!(io::netif::NETRXF_EXTRA_INFO = "NETRXF_extra_info"),
        k!(io::netif::NETRXF_GSO_PREFIX = "NETRXF_gso_prefix"),
        k!(io::netif::NETIF_RSP_DROPPED),
        k!(io::netif::NETIF_RSP_ERROR),
        k!(io::netif::NETIF_RSP_OKAY),
        k!(io::netif::NETIF_RSP_NULL),
        k!(io::xs_wire::XS_CONTROL),
        k!(io::xs_wire::XS_DEBUG),
        k!(io::xs_wire::XS_DIRECTORY),
        k!(io::xs_wire::XS_READ),
        k!(io::xs_wire::XS_GET_PERMS),
        k!(io::xs_wire::XS_WATCH),
        k!(io::xs_wire::XS_UNWATCH),
        k!(io::xs_wire::XS_TRANSACTION_START),
        k!(io::xs_wire::XS_TRANSACTION_END),
        k!(io::xs_wire::XS_INTRODUCE),
        k!(io::xs_wire::XS_RELEASE),
        k!(io::xs_wire::XS_GET_DOMAIN_PATH),
        k!(io::xs_wire::XS_WRITE),
        k!(io::xs_wire::XS_MKDIR),
        k!(io::xs_wire::XS_RM),
        k!(io::xs_wire::XS_SET_PERMS),
        k!(io::xs_wire::XS_WATCH_EVENT),
        k!(io::xs_wire::XS_ERROR),
        k!(io::xs_wire::XS_IS_DOMAIN_INTRODUCED),
        k!(io::xs_wire::XS_RESUME),
        k!(io::xs_wire::XS_SET_TARGET),
        k!(io::xs_wire::XS_RESET_WATCHES),
        k!(io::xs_wire::XS_DIRECTORY_PART),
        k!(io::xs_wire::XS_TYPE_COUNT),
        k!(io::xs_wire::XS_INVALID),
        k!(io::xs_wire::XS_WATCH_PATH),
        k!(io::xs_wire::XS_WATCH_TOKEN),
        k!(io::xs_wire::XENSTORE_RING_SIZE),
        k!(io::xs_wire::XENSTORE_PAYLOAD_MAX),
        k!(io::xs_wire::XENSTORE_ABS_PATH_MAX),
        k!(io::xs_wire::XENSTORE_REL_PATH_MAX),
        k!(io::xs_wire::XENSTORE_SERVER_FEATURE_RECONNECTION),
        k!(io::xs_wire::XENSTORE_SERVER_FEATURE_ERROR),
        k!(io::xs_wire::XENSTORE_CONNECTED),
        k!(io::xs_wire::XENSTORE_RECONNECT),
        k!(io::xs_wire::XENSTORE_ERROR_NONE),
        k!(io::xs_wire::XENSTORE_ERROR_COMM),
        k!(io::xs_wire::XENSTORE_ERROR_RINGIDX),
        k!(io::xs_wire::XENSTORE_ERROR_PROTO),
        k!(memory::XENMEM_INCREASE_RESERVATION = "XENMEM_increase_reservation"),
        k!(memory::XENMEM_DECREASE_RESERVATION = "XENMEM_decrease_reservation"),
        k!(memory::XENMEM_MAXIMUM_RAM_PAGE = "XENMEM_maximum_ram_page"),
        k!(memory::XENMEM_CURRENT_RESERVATION = "XENMEM_current_reservation"),
        k!(memory::XENMEM_MAXIMUM_RESERVATION = "XENMEM_maximum_reservation"),
        k!(memory::XENMEM_MACHPHYS_MFN_LIST = "XENMEM_machphys_mfn_list"),
        k!(memory::XENMEM_POPULATE_PHYSMAP = "XENMEM_populate_physmap"),
        k!(memory::XENMEM_ADD_TO_PHYSMAP = "XENMEM_add_to_physmap"),
        k!(memory::XENMEM_MEMORY_MAP = "XENMEM_memory_map"),
        k!(memory::XENMEM_MACHINE_MEMORY_MAP = "XENMEM_machine_memory_map"),
        k!(memory::XENMEM_EXCHANGE = "XENMEM_exchange"),
        k!(memory::XENMEM_MACHPHYS_MAPPING = "XENMEM_machphys_mapping"),
        k!(memory::XENMEM_SET_MEMORY_MAP = "XENMEM_set_memory_map"),
        k!(memory::XENMEM_MAXIMUM_GPFN = "XENMEM_maximum_gpfn"),
        k!(memory::XENMEM_REMOVE_FROM_PHYSMAP = "XENMEM_remove_from_physmap"),
        k!(memory::XENMEM_SET_POD_TARGET = "XENMEM_set_pod_target"),
        k!(memory::XENMEM_GET_POD_TARGET = "XENMEM_get_pod_target"),
        k!(memory::XENMEM_ADD_TO_PHYSMAP_BATCH = "XENMEM_add_to_physmap_batch"),
        k!(memory::XENMEM_CLAIM_PAGES = "XENMEM_claim_pages"),
        k!(memory::XENMEM_MACHPHYS_COMPAT_MFN_LIST = "XENMEM_machphys_compat_mfn_list"),
        k!(memory::XENMEM_GET_VNUMAINFO = "XENMEM_get_vnumainfo"),
        k!(memory::XENMEM_ACQUIRE_RESOURCE = "XENMEM_acquire_resource"),
        k!(memory::XENMEMF_POPULATE_ON_DEMAND = "XENMEMF_populate_on_demand"),
        k!(memory::XENMEMF_EXACT_NODE_REQUEST = "XENMEMF_exact_node_request"),
        k!(memory::XENMEMF_VNODE = "XENMEMF_vnode"),
        k!(memory::XENMAPSPACE_SHARED_INFO = "XENMAPSPACE_shared_info"),
        k!(memory::XENMAPSPACE_GRANT_TABLE = "XENMAPSPACE_grant_table"),
        k!(memory::XENMAPSPACE_GMFN = "XENMAPSPACE_gmfn"),
        k!(memory::XENMAPSPACE_GMFN_RANGE = "XENMAPSPACE_gmfn_range"),
        k!(memory::XENMAPSPACE_GMFN_FOREIGN = "XENMAPSPACE_gmfn_foreign"),
        k!(memory::XENMAPSPACE_DEV_MMIO = "XENMAPSPACE_dev_mmio"),
        k!(memory::XENMAPIDX_GRANT_TABLE_STATUS = "XENMAPIDX_grant_table_status"),
        k!(memory::XENMEM_RESOURCE_IOREQ_SERVER = "XENMEM_resource_ioreq_server"),
        k!(memory::XENMEM_RESOURCE_GRANT_TABLE = "XENMEM_resource_grant_table"),
        k!(memory::XENMEM_RESOURCE_VMTRACE_BUF = "XENMEM_resource_vmtrace_buf"),
        k!(memory::XENMEM_RESOURCE_GRANT_TABLE_ID_SHARED = "XENMEM_resource_grant_table_id_shared"),
        k!(memory::XENMEM_RESOURCE_GRANT_TABLE_ID_STATUS = "XENMEM_resource_grant_table_id_status"),
        k!(page::XEN_PAGE_SHIFT),
        k!(physdev::PHYSDEVOP_IRQ_UNMASK_NOTIFY),
        k!(physdev::PHYSDEVOP_IRQ_STATUS_QUERY = "PHYSDEVOP_irq_status_query"),
        k!(physdev::PHYSDEVOP_SET_IOPL = "PHYSDEVOP_set_iopl"),
        k!(physdev::PHYSDEVOP_SET_IOBITMAP = "PHYSDEVOP_set_iobitmap"),
        k!(physdev::PHYSDEVOP_APIC_READ = "PHYSDEVOP_apic_read"),
        k!(physdev::PHYSDEVOP_APIC_WRITE = "PHYSDEVOP_apic_write"),
        k!(physdev::PHYSDEVOP_ALLOC_IRQ_VECTOR = "PHYSDEVOP_alloc_irq_vector"),
        k!(physdev::PHYSDEVOP_FREE_IRQ_VECTOR = "PHYSDEVOP_free_irq_vector"),
        k!(physdev::PHYSDEVOP_EOI = "PHYSDEVOP_eoi"),
        k!(physdev::PHYSDEVOP_MAP_PIRQ = "PHYSDEVOP_map_pirq"),
        k!(physdev::PHYSDEVOP_UNMAP_PIRQ = "PHYSDEVOP_unmap_pirq"),
        k!(physdev::PHYSDEVOP_MANAGE_PCI_ADD = "PHYSDEVOP_manage_pci_add"),
        k!(physdev::PHYSDEVOP_MANAGE_PCI_REMOVE = "PHYSDEVOP_manage_pci_remove"),
        k!(physdev::PHYSDEVOP_PIRQ_EOI_GMFN_V1 = "PHYSDEVOP_pirq_eoi_gmfn_v1"),
        k!(physdev::PHYSDEVOP_RESTORE_MSI = "PHYSDEVOP_restore_msi"),
        k!(physdev::PHYSDEVOP_MANAGE_PCI_ADD_EXT = "PHYSDEVOP_manage_pci_add_ext"),
        k!(physdev::PHYSDEVOP_SETUP_GSI = "PHYSDEVOP_setup_gsi"),
        k!(physdev::PHYSDEVOP_GET_FREE_PIRQ = "PHYSDEVOP_get_free_pirq"),
        k!(physdev::PHYSDEVOP_PCI_MMCFG_RESERVED = "PHYSDEVOP_pci_mmcfg_reserved"),
        k!(physdev::PHYSDEVOP_PCI_DEVICE_ADD = "PHYSDEVOP_pci_device_add"),
        k!(physdev::PHYSDEVOP_PCI_DEVICE_REMOVE = "PHYSDEVOP_pci_device_remove"),
        k!(physdev::PHYSDEVOP_RESTORE_MSI_EXT = "PHYSDEVOP_restore_msi_ext"),
        k!(physdev::PHYSDEVOP_PIRQ_EOI_GMFN_V2 = "PHYSDEVOP_pirq_eoi_gmfn_v2"),
        k!(physdev::PHYSDEVOP_DBGP_OP = "PHYSDEVOP_dbgp_op"),
        k!(physdev::PHYSDEVOP_PREPARE_MSIX = "PHYSDEVOP_prepare_msix"),
        k!(physdev::PHYSDEVOP_RELEASE_MSIX = "PHYSDEVOP_release_msix"),
        k!(physdev::XENIRQSTAT_NEEDS_EOI = "XENIRQSTAT_needs_eoi"),
        k!(physdev::XENIRQSTAT_SHARED = "XENIRQSTAT_shared"),
        k!(physdev::MAP_PIRQ_TYPE_MSI),
        k!(physdev::MAP_PIRQ_TYPE_GSI),
        k!(physdev::MAP_PIRQ_TYPE_UNKNOWN),
        k!(physdev::MAP_PIRQ_TYPE_MSI_SEG),
        k!(physdev::MAP_PIRQ_TYPE_MULTI_MSI),
        k!(physdev::XEN_PCI_MMCFG_RESERVED),
        k!(physdev::XEN_PCI_DEV_EXTFN),
        k!(physdev::XEN_PCI_DEV_VIRTFN),
        k!(physdev::XEN_PCI_DEV_PXM),
        k!(physdev::PHYSDEVOP_DBGP_RESET_PREPARE),
        k!(physdev::PHYSDEVOP_DBGP_RESET_DONE),
        k!(physdev::PHYSDEVOP_DBGP_BUS_UNKNOWN),
        k!(physdev::PHYSDEVOP_DBGP_BUS_PCI),
        k!(sysctl::XEN_SYSCTL_INTERFACE_VERSION),
        k!(sysctl::XEN_SYSCTL_DEBUG_KEYS = "XEN_SYSCTL_debug_keys"),
        k!(domctl::XEN_DOMCTL_INTERFACE_VERSION),
        k!(domctl::XEN_DOMCTL_CREATEDOMAIN = "XEN_DOMCTL_createdomain"),
        k!(domctl::XEN_DOMCTL_DESTROYDOMAIN = "XEN_DOMCTL_destroydomain"),
        k!(domctl::XEN_DOMCTL_UNPAUSEDOMAIN = "XEN_DOMCTL_unpausedomain"),
        k!(domctl::XEN_DOMCTL_GETDOMAININFO = "XEN_DOMCTL_getdomaininfo"),
        k!(domctl::XEN_DOMCTL_MAX_MEM = "XEN_DOMCTL_max_mem"),
        k!(domctl::XEN_DOMCTL_SETVCPUCONTEXT = "XEN_DOMCTL_setvcpucontext"),
        k!(domctl::XEN_DOMCTL_HYPERCALL_INIT = "XEN_DOMCTL_hypercall_init"),
        k!(domctl::XEN_DOMCTL_MAX_VCPUS = "XEN_DOMCTL_max_vcpus"),
        k!(domctl::XEN_DOMCTL_GRANT_VERSION_MASK = "XEN_DOMCTL_GRANT_version_mask"),
        k!(sched::SCHEDOP_YIELD = "SCHEDOP_yield"),
        k!(sched::SCHEDOP_BLOCK = "SCHEDOP_block"),
        k!(sched::SCHEDOP_SHUTDOWN = "SCHEDOP_shutdown"),
        k!(sched::SCHEDOP_POLL = "SCHEDOP_poll"),
        k!(sched::SCHEDOP_REMOTE_SHUTDOWN = "SCHEDOP_remote_shutdown"),
        k!(sched::SCHEDOP_SHUTDOWN_CODE = "SCHEDOP_shutdown_code"),
        k!(sched::SCHEDOP_WATCHDOG = "SCHEDOP_watchdog"),
        k!(sched::SCHEDOP_PIN_OVERRIDE = "SCHEDOP_pin_override"),
        k!(sched::SHUTDOWN_POWEROFF = "SHUTDOWN_poweroff"),
        k!(sched::SHUTDOWN_REBOOT = "SHUTDOWN_reboot"),
        k!(sched::SHUTDOWN_SUSPEND = "SHUTDOWN_suspend"),
        k!(sched::SHUTDOWN_CRASH = "SHUTDOWN_crash"),
        k!(sched::SHUTDOWN_WATCHDOG = "SHUTDOWN_watchdog"),
        k!(sched::SHUTDOWN_SOFT_RESET = "SHUTDOWN_soft_reset"),
        k!(sched::SHUTDOWN_MAX),
        k!(vcpu::VCPUOP_INITIALISE = "VCPUOP_initialise"),
        k!(vcpu::VCPUOP_UP = "VCPUOP_up"),
        k!(vcpu::VCPUOP_DOWN = "VCPUOP_down"),
        k!(vcpu::VCPUOP_IS_UP = "VCPUOP_is_up"),
        k!(vcpu::VCPUOP_GET_RUNSTATE_INFO = "VCPUOP_get_runstate_info"),
        k!(vcpu::VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA = "VCPUOP_register_runstate_memory_area"),
        k!(vcpu::VCPUOP_SET_PERIODIC_TIMER = "VCPUOP_set_periodic_timer"),
        k!(vcpu::VCPUOP_STOP_PERIODIC_TIMER = "VCPUOP_stop_periodic_timer"),
        k!(vcpu::VCPUOP_SET_SINGLESHOT_TIMER = "VCPUOP_set_singleshot_timer"),
        k!(vcpu::VCPUOP_STOP_SINGLESHOT_TIMER = "VCPUOP_stop_singleshot_timer"),
        k!(vcpu::VCPUOP_REGISTER_VCPU_INFO = "VCPUOP_register_vcpu_info"),
        k!(vcpu::VCPUOP_SEND_NMI = "VCPUOP_send_nmi"),
        k!(vcpu::VCPUOP_GET_PHYSID = "VCPUOP_get_physid"),
        k!(vcpu::VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA = "VCPUOP_register_vcpu_time_memory_area"),
        k!(vcpu::RUNSTATE_RUNNING = "RUNSTATE_running"),
        k!(vcpu::RUNSTATE_RUNNABLE = "RUNSTATE_runnable"),
        k!(vcpu::RUNSTATE_BLOCKED = "RUNSTATE_blocked"),
        k!(vcpu::RUNSTATE_OFFLINE = "RUNSTATE_offline"),
        k!(vcpu::XEN_RUNSTATE_UPDATE),
        k!(vcpu::VCPU_SSHOTTMR_FUTURE = "VCPU_SSHOTTMR_future"),
        k!(version::XENVER_VERSION = "XENVER_version"),
        k!(version::XENVER_EXTRAVERSION = "XENVER_extraversion"),
        k!(version::XENVER_COMPILE_INFO = "XENVER_compile_info"),
        k!(version::XENVER_CAPABILITIES = "XENVER_capabilities"),
        k!(version::XENVER_CHANGESET = "XENVER_changeset"),
        k!(version::XENVER_PLATFORM_PARAMETERS = "XENVER_platform_parameters"),
        k!(version::XENVER_GET_FEATURES = "XENVER_get_features"),
        k!(version::XENVER_PAGESIZE = "XENVER_pagesize"),
        k!(version::XENVER_GUEST_HANDLE = "XENVER_guest_handle"),
        k!(version::XENVER_COMMANDLINE = "XENVER_commandline"),
        k!(version::XENVER_BUILD_ID = "XENVER_build_id"),
        k!(version::XEN_EXTRAVERSION_LEN),
        k!(version::XEN_CAPABILITIES_INFO_LEN),
        k!(version::XEN_CHANGESET_INFO_LEN),
        k!(xen::VIRQ_TIMER),
        k!(xen::VIRQ_DEBUG),
        k!(xen::VIRQ_CONSOLE),
        k!(xen::VIRQ_DOM_EXC),
        k!(xen::VIRQ_TBUF),
        k!(xen::VIRQ_DEBUGGER),
        k!(xen::VIRQ_XENOPROF),
        k!(xen::VIRQ_CON_RING),
        k!(xen::VIRQ_PCPU_STATE),
        k!(xen::VIRQ_MEM_EVENT),
        k!(xen::VIRQ_ARGO),
        k!(xen::VIRQ_ENOMEM),
        k!(xen::VIRQ_XENPMU),
        k!(xen::VIRQ_ARCH_0),
        k!(xen::VIRQ_ARCH_1),
        k!(xen::VIRQ_ARCH_2),
        k!(xen::VIRQ_ARCH_3),
        k!(xen::VIRQ_ARCH_4),
        k!(xen::VIRQ_ARCH_5),
        k!(xen::VIRQ_ARCH_6),
        k!(xen::VIRQ_ARCH_7),
        k!(xen::NR_VIRQS),
        k!(xen::MMU_NORMAL_PT_UPDATE),
        k!(xen::MMU_MACHPHYS_UPDATE),
        k!(xen::MMU_PT_UPDATE_PRESERVE_AD),
        k!(xen::MMU_PT_UPDATE_NO_TRANSLATE),
        k!(xen::MMUEXT_PIN_L1_TABLE),
        k!(xen::MMUEXT_PIN_L2_TABLE),
        k!(xen::MMUEXT_PIN_L3_TABLE),
        k!(xen::MMUEXT_PIN_L4_TABLE),
        k!(xen::MMUEXT_UNPIN_TABLE),
        k!(xen::MMUEXT_NEW_BASEPTR),
        k!(xen::MMUEXT_TLB_FLUSH_LOCAL),
        k!(xen::MMUEXT_INVLPG_LOCAL),
        k!(xen::MMUEXT_TLB_FLUSH_MULTI),
        k!(xen::MMUEXT_INVLPG_MULTI),
        k!(xen::MMUEXT_TLB_FLUSH_ALL),
        k!(xen::MMUEXT_INVLPG_ALL),
        k!(xen::MMUEXT_FLUSH_CACHE),
        k!(xen::MMUEXT_SET_LDT),
        k!(xen::MMUEXT_NEW_USER_BASEPTR),
        k!(xen::MMUEXT_CLEAR_PAGE),
        k!(xen::MMUEXT_COPY_PAGE),
        k!(xen::MMUEXT_FLUSH_CACHE_GLOBAL),
        k!(xen::MMUEXT_MARK_SUPER),
        k!(xen::MMUEXT_UNMARK_SUPER),
        k!(xen::UVMF_NONE),
        k!(xen::UVMF_TLB_FLUSH),
        k!(xen::UVMF_INVLPG),
        k!(xen::UVMF_FLUSHTYPE_MASK),
        k!(xen::UVMF_MULTI),
        k!(xen::UVMF_LOCAL),
        k!(xen::UVMF_ALL),
        k!(xen::CONSOLEIO_WRITE = "CONSOLEIO_write"),
        k!(xen::CONSOLEIO_READ = "CONSOLEIO_read"),
        k!(xen::VMASST_CMD_ENABLE = "VMASST_CMD_enable"),
        k!(xen::VMASST_CMD_DISABLE = "VMASST_CMD_disable"),
        k!(xen::VMASST_TYPE_4GB_SEGMENTS = "VMASST_TYPE_4gb_segments"),
        k!(xen::VMASST_TYPE_4GB_SEGMENTS_NOTIFY = "VMASST_TYPE_4gb_segments_notify"),
        k!(xen::VMASST_TYPE_WRITABLE_PAGETABLES = "VMASST_TYPE_writable_pagetables"),
        k!(xen::VMASST_TYPE_PAE_EXTENDED_CR3 = "VMASST_TYPE_pae_extended_cr3"),
        k!(xen::VMASST_TYPE_ARCHITECTURAL_IOPL = "VMASST_TYPE_architectural_iopl"),
        k!(xen::VMASST_TYPE_RUNSTATE_UPDATE_FLAG = "VMASST_TYPE_runstate_update_flag"),
        k!(xen::VMASST_TYPE_M2P_STRICT = "VMASST_TYPE_m2p_strict"),
        k!(xen::DOMID_FIRST_RESERVED),
        k!(xen::DOMID_SELF),
        k!(xen::DOMID_IO),
        k!(xen::DOMID_XEN),
        k!(xen::DOMID_COW),
        k!(xen::DOMID_INVALID),
        k!(xen::DOMID_IDLE),
        k!(xen::DOMID_MASK),
        k!(xen::XEN_PVCLOCK_TSC_STABLE_BIT),
        k!(xen::XEN_PVCLOCK_GUEST_STOPPED),
        k!(xen::MAX_GUEST_CMDLINE),
        k!(xen::SIF_PRIVILEGED),
        k!(xen::SIF_INITDOMAIN),
        k!(xen::SIF_MULTIBOOT_MOD),
        k!(xen::SIF_MOD_START_PFN),
        k!(xen::SIF_VIRT_P2M_4TOOLS),
        k!(xen::SIF_PM_MASK),
        k!(xen::XEN_VGATYPE_TEXT_MODE_3),
        k!(xen::XEN_VGATYPE_VESA_LFB),
        k!(xen::XEN_VGATYPE_EFI_LFB),
        // Constants Xen defines as expressions rather than macros of the same name.
        k!(arch_x86_64::TI_DPL_MASK =
            "({ struct trap_info t = { .flags = 0xff }; TI_GET_DPL(&t); })"),
        k!(arch_x86_64::TI_IF =
            "({ struct trap_info t = { .flags = 0 }; TI_SET_IF(&t, 1); t.flags; })"),
        k!(arch_x86_64::VGC_TRAP_CTXT_ENTRIES =
            "sizeof(((struct vcpu_guest_context *)0)->trap_ctxt) / sizeof(struct trap_info)"),
        k!(callback::CALLBACKF_MASK_EVENTS_BIT = "_CALLBACKF_mask_events"),
        k!(event_channel::BIND_PIRQ_WILL_SHARE = "BIND_PIRQ__WILL_SHARE"),
        k!(grant_table::GRANT_ENTRIES_V1_PER_PAGE = "4096 / sizeof(struct grant_entry_v1)"),
        k!(io::blkif::BLKIF_SEGS_PER_INDIRECT_FRAME =
            "4096 / sizeof(struct blkif_request_segment)"),
        k!(io::blkif::BLKIF_RING_SIZE = "__CONST_RING_SIZE(blkif, 4096)"),
        k!(io::console::XENCONS_IN_SIZE = "sizeof(((struct xencons_interface *)0)->in)"),
        k!(io::console::XENCONS_OUT_SIZE = "sizeof(((struct xencons_interface *)0)->out)"),
        k!(io::netif::XEN_NETIF_CTRL_HASH_TYPE_IPV4_BIT = "_XEN_NETIF_CTRL_HASH_TYPE_IPV4"),
        k!(io::netif::XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP_BIT = "_XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP"),
        k!(io::netif::XEN_NETIF_CTRL_HASH_TYPE_IPV6_BIT = "_XEN_NETIF_CTRL_HASH_TYPE_IPV6"),
        k!(io::netif::XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP_BIT = "_XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP"),
        k!(io::netif::NET_TX_RING_SIZE = "__CONST_RING_SIZE(netif_tx, 4096)"),
        k!(io::netif::NET_RX_RING_SIZE = "__CONST_RING_SIZE(netif_rx, 4096)"),
        k!(io::ring::SRING_HEADER_SIZE = "offsetof(struct blkif_sring, ring)"),
        k!(page::XEN_PAGE_SIZE = "(1 << XEN_PAGE_SHIFT)"),
        k!(xen::XEN_LATEST_INTERFACE_VERSION = "__XEN_LATEST_INTERFACE_VERSION__"),
        // The program is compiled as the toolstack (`__XEN_TOOLS__`), which sees the
        // newest interface version, the one this crate mirrors.
        konst(
            "interface version",
            "__XEN_INTERFACE_VERSION__",
            xen::XEN_LATEST_INTERFACE_VERSION as i128,
        ),
        k!(xen::MAX_VIRT_CPUS = "XEN_LEGACY_MAX_VCPUS"),
        k!(xen::NR_EVENT_CHANNELS = "EVTCHN_2L_NR_CHANNELS"),
        k!(xen::EVTCHN_2L_WORDS =
            "sizeof(((struct shared_info *)0)->evtchn_pending) / sizeof(xen_ulong_t)"),
        kstr(
            "io::xs_wire::XS_WRITE_NONE",
            "XS_WRITE_NONE",
            io::xs_wire::XS_WRITE_NONE,
        ),
        kstr(
            "io::xs_wire::XS_WRITE_CREATE",
            "XS_WRITE_CREATE",
            io::xs_wire::XS_WRITE_CREATE,
        ),
        kstr(
            "io::xs_wire::XS_WRITE_CREATE_EXCL",
            "XS_WRITE_CREATE_EXCL",
            io::xs_wire::XS_WRITE_CREATE_EXCL,
        ),
        kstr(
            "arch_x86_64::XEN_EMULATE_PREFIX",
            "XEN_EMULATE_PREFIX",
            &format!(
                ".byte {} ; ",
                arch_x86_64::XEN_EMULATE_PREFIX
                    .map(|b| format!("{b:#04x}"))
                    .join(",")
            ),
        ),
        konst(
            "io::console::XENCONS_OUT_LAYOUT.size",
            "sizeof(((struct xencons_interface *)0)->out)",
            io::console::XENCONS_OUT_LAYOUT.size as i128,
        ),
        konst(
            "io::console::XENCONS_IN_LAYOUT.size",
            "sizeof(((struct xencons_interface *)0)->in)",
            io::console::XENCONS_IN_LAYOUT.size as i128,
        ),
        // Helper functions against the C macros and inline functions they mirror.
        konst(
            "xen_pfn_to_cr3(0x12345)",
            "xen_pfn_to_cr3(0x12345)",
            arch_x86_64::xen_pfn_to_cr3(0x12345) as i128,
        ),
        konst(
            "xen_cr3_to_pfn(0x12345678)",
            "xen_cr3_to_pfn(0x12345678)",
            arch_x86_64::xen_cr3_to_pfn(0x1234_5678) as i128,
        ),
        konst(
            "xenmemf_node(3)",
            "XENMEMF_node(3)",
            memory::xenmemf_node(3) as i128,
        ),
        konst(
            "mask_xencons_idx(5000, out)",
            "MASK_XENCONS_IDX(5000, ((struct xencons_interface *)0)->out)",
            io::console::mask_xencons_idx(5000, 2048) as i128,
        ),
        konst(
            "mask_xenstore_idx(5000)",
            "MASK_XENSTORE_IDX(5000)",
            io::xs_wire::mask_xenstore_idx(5000) as i128,
        ),
        konst(
            "xen_flex_ring_size(2)",
            "XEN_FLEX_RING_SIZE(2)",
            io::ring::xen_flex_ring_size(2) as i128,
        ),
        konst(
            "round_down_pow2(1000)",
            "__RD32(1000)",
            io::ring::round_down_pow2(1000) as i128,
        ),
        konst(
            "round_down_pow2(0x80000001)",
            "__RD32(0x80000001u)",
            io::ring::round_down_pow2(0x8000_0001) as i128,
        ),
        konst(
            "flex_ring_queued(7, 5, 8)",
            "pvabi_queued(7, 5, 8)",
            io::ring::flex_ring_queued(7, 5, 8) as i128,
        ),
        konst(
            "flex_ring_queued(13, 5, 8)",
            "pvabi_queued(13, 5, 8)",
            io::ring::flex_ring_queued(13, 5, 8) as i128,
        ),
        konst(
            "flex_ring_queued(9, 6, 8)",
            "pvabi_queued(9, 6, 8)",
            io::ring::flex_ring_queued(9, 6, 8) as i128,
        ),
        konst(
            "flex_ring_queued(3, u32::MAX, 16)",
            "pvabi_queued(3, 0xffffffffu, 16)",
            io::ring::flex_ring_queued(3, u32::MAX, 16) as i128,
        ),
        konst("ext::EXT_OP", "__HYPERVISOR_arch_7", ext::EXT_OP as i128),
        konst(
            "io::console::XENCONS_OUT_LAYOUT.data",
            "offsetof(struct xencons_interface, out)",
            io::console::XENCONS_OUT_LAYOUT.data as i128,
        ),
        konst(
            "io::console::XENCONS_OUT_LAYOUT.cons",
            "offsetof(struct xencons_interface, out_cons)",
            io::console::XENCONS_OUT_LAYOUT.cons as i128,
        ),
        konst(
            "io::console::XENCONS_OUT_LAYOUT.prod",
            "offsetof(struct xencons_interface, out_prod)",
            io::console::XENCONS_OUT_LAYOUT.prod as i128,
        ),
        konst(
            "io::console::XENCONS_IN_LAYOUT.data",
            "offsetof(struct xencons_interface, in)",
            io::console::XENCONS_IN_LAYOUT.data as i128,
        ),
        konst(
            "io::console::XENCONS_IN_LAYOUT.cons",
            "offsetof(struct xencons_interface, in_cons)",
            io::console::XENCONS_IN_LAYOUT.cons as i128,
        ),
        konst(
            "io::console::XENCONS_IN_LAYOUT.prod",
            "offsetof(struct xencons_interface, in_prod)",
            io::console::XENCONS_IN_LAYOUT.prod as i128,
        ),
        konst(
            "io::xs_wire::XENSTORE_REQ_LAYOUT.data",
            "offsetof(struct xenstore_domain_interface, req)",
            io::xs_wire::XENSTORE_REQ_LAYOUT.data as i128,
        ),
        konst(
            "io::xs_wire::XENSTORE_REQ_LAYOUT.size",
            "XENSTORE_RING_SIZE",
            io::xs_wire::XENSTORE_REQ_LAYOUT.size as i128,
        ),
        konst(
            "io::xs_wire::XENSTORE_REQ_LAYOUT.cons",
            "offsetof(struct xenstore_domain_interface, req_cons)",
            io::xs_wire::XENSTORE_REQ_LAYOUT.cons as i128,
        ),
        konst(
            "io::xs_wire::XENSTORE_REQ_LAYOUT.prod",
            "offsetof(struct xenstore_domain_interface, req_prod)",
            io::xs_wire::XENSTORE_REQ_LAYOUT.prod as i128,
        ),
        konst(
            "io::xs_wire::XENSTORE_RSP_LAYOUT.data",
            "offsetof(struct xenstore_domain_interface, rsp)",
            io::xs_wire::XENSTORE_RSP_LAYOUT.data as i128,
        ),
        konst(
            "io::xs_wire::XENSTORE_RSP_LAYOUT.size",
            "XENSTORE_RING_SIZE",
            io::xs_wire::XENSTORE_RSP_LAYOUT.size as i128,
        ),
        konst(
            "io::xs_wire::XENSTORE_RSP_LAYOUT.cons",
            "offsetof(struct xenstore_domain_interface, rsp_cons)",
            io::xs_wire::XENSTORE_RSP_LAYOUT.cons as i128,
        ),
        konst(
            "io::xs_wire::XENSTORE_RSP_LAYOUT.prod",
            "offsetof(struct xenstore_domain_interface, rsp_prod)",
            io::xs_wire::XENSTORE_RSP_LAYOUT.prod as i128,
        ),
    ]
}

fn structs() -> Vec<Item> {
    use pv_abi::arch_x86_64 as a;
    use pv_abi::io::{blkif as b, console as con, netif as n, ring as r, xs_wire as xs};
    use pv_abi::{
        callback as cb, event_channel as ev, grant_table as g, memory as m, physdev as p,
        sched as s, vcpu as vc, version as ver, xen as x,
    };
    [
        // xen.h
        st!("struct mmu_update", x::MmuUpdate { ptr, val }),
        st!("struct mmuext_op", x::MmuextOp { cmd, arg1 as "arg1.mfn", arg2 as "arg2.src_mfn" }),
        st!(
            "struct multicall_entry",
            x::MulticallEntry { op, result, args }
        ),
        st!(
            "struct vcpu_time_info",
            x::VcpuTimeInfo {
                version,
                pad0,
                tsc_timestamp,
                system_time,
                tsc_to_system_mul,
                tsc_shift,
                flags,
                pad1
            }
        ),
        st!(
            "struct vcpu_info",
            x::VcpuInfo {
                evtchn_upcall_pending,
                evtchn_upcall_mask,
                evtchn_pending_sel,
                arch,
                time
            }
        ),
        st!(
            "struct shared_info",
            x::SharedInfo {
                vcpu_info,
                evtchn_pending,
                evtchn_mask,
                wc_version,
                wc_sec,
                wc_nsec,
                wc_sec_hi,
                arch
            }
        ),
        st!("struct start_info", x::StartInfo {
            magic, nr_pages, shared_info, flags, store_mfn, store_evtchn, console,
            console.mfn as "console.domU.mfn", console.evtchn as "console.domU.evtchn",
            pt_base, nr_pt_frames, mfn_list, mod_start, mod_len, cmd_line, first_p2m_pfn,
            nr_p2m_frames
        }),
        st!(
            "struct xen_multiboot_mod_list",
            x::XenMultibootModList {
                mod_start,
                mod_end,
                cmdline,
                pad
            }
        ),
        st!(
            "struct dom0_vga_console_info",
            x::Dom0VgaConsoleInfo { video_type, u }
        ),
        st!(
            "__typeof__(((struct dom0_vga_console_info *)0)->u.text_mode_3)",
            x::VgaTextMode3 {
                font_height,
                cursor_x,
                cursor_y,
                rows,
                columns
            }
        ),
        st!(
            "__typeof__(((struct dom0_vga_console_info *)0)->u.vesa_lfb)",
            x::VesaLfb {
                width,
                height,
                bytes_per_line,
                bits_per_pixel,
                lfb_base,
                lfb_size,
                red_pos,
                red_size,
                green_pos,
                green_size,
                blue_pos,
                blue_size,
                rsvd_pos,
                rsvd_size,
                gbl_caps,
                mode_attrs,
                pad,
                ext_lfb_base
            }
        ),
        st!("xen_uuid_t", x::XenUuid { a }),
        // arch-x86/xen.h, xen-x86_64.h
        st!(
            "struct trap_info",
            a::TrapInfo {
                vector,
                flags,
                cs,
                address
            }
        ),
        st!(
            "struct iret_context",
            a::IretContext {
                rax,
                r11,
                rcx,
                flags,
                rip,
                cs,
                rflags,
                rsp,
                ss
            }
        ),
        st!("struct cpu_user_regs", a::CpuUserRegs {
            r15, r14, r13, r12, rbp, rbx, r11, r10, r9, r8, rax, rcx, rdx, rsi, rdi, error_code,
            entry_vector, rip, cs, pad0 as "_pad0", saved_upcall_mask, pad1 as "_pad1", rflags,
            rsp, ss, pad2 as "_pad2", es, pad3 as "_pad3", ds, pad4 as "_pad4", fs,
            pad5 as "_pad5", gs, pad6 as "_pad6"
        }),
        st!(
            "struct vcpu_guest_context",
            a::VcpuGuestContext {
                fpu_ctxt,
                flags,
                user_regs,
                trap_ctxt,
                ldt_base,
                ldt_ents,
                gdt_frames,
                gdt_ents,
                kernel_ss,
                kernel_sp,
                ctrlreg,
                debugreg,
                event_callback_eip,
                failsafe_callback_eip,
                syscall_callback_eip,
                vm_assist,
                fs_base,
                gs_base_kernel,
                gs_base_user
            }
        ),
        st!("struct arch_vcpu_info", a::ArchVcpuInfo { cr2, pad }),
        st!(
            "struct arch_shared_info",
            a::ArchSharedInfo {
                max_pfn,
                pfn_to_mfn_frame_list_list,
                nmi_reason,
                p2m_cr3,
                p2m_vaddr,
                p2m_generation
            }
        ),
        st!(
            "struct xen_cpuid_leaf",
            a::XenCpuidLeaf {
                leaf,
                subleaf,
                a,
                b,
                c,
                d
            }
        ),
        st!("struct xen_msr_entry", a::XenMsrEntry { idx, flags, val }),
        // version.h
        st!(
            "struct xen_compile_info",
            ver::XenCompileInfo {
                compiler,
                compile_by,
                compile_domain,
                compile_date
            }
        ),
        st!(
            "struct xen_platform_parameters",
            ver::XenPlatformParameters { virt_start }
        ),
        st!(
            "struct xen_feature_info",
            ver::XenFeatureInfo { submap_idx, submap }
        ),
        st!("struct xen_build_id", ver::XenBuildId { len }),
        st!(
            "struct xen_sysctl_debug_keys",
            sysctl::XenSysctlDebugKeys { keys, nr_keys }
        ),
        st!(
            "struct xen_sysctl",
            sysctl::XenSysctl {
                cmd,
                interface_version
            }
        ),
        st!(
            "struct xen_arch_domainconfig",
            domctl::XenArchDomainconfig {
                emulation_flags,
                misc_flags
            }
        ),
        st!(
            "struct xen_domctl_createdomain",
            domctl::XenDomctlCreatedomain {
                ssidref,
                handle,
                flags,
                iommu_opts,
                max_vcpus,
                max_evtchn_port,
                max_grant_frames,
                max_maptrack_frames,
                grant_opts,
                vmtrace_size,
                cpupool_id,
                arch
            }
        ),
        st!(
            "struct xen_domctl_getdomaininfo",
            domctl::XenDomctlGetdomaininfo {
                domain,
                flags,
                tot_pages,
                max_pages,
                outstanding_pages,
                shr_pages,
                paged_pages,
                shared_info_frame,
                cpu_time,
                nr_online_vcpus,
                max_vcpu_id,
                ssidref,
                handle,
                cpupool,
                gpaddr_bits,
                arch_config
            }
        ),
        st!(
            "struct xen_domctl_max_mem",
            domctl::XenDomctlMaxMem { max_memkb }
        ),
        st!(
            "struct xen_domctl_max_vcpus",
            domctl::XenDomctlMaxVcpus { max }
        ),
        st!(
            "struct xen_domctl_vcpucontext",
            domctl::XenDomctlVcpucontext { vcpu, ctxt }
        ),
        st!(
            "struct xen_domctl_hypercall_init",
            domctl::XenDomctlHypercallInit { gmfn }
        ),
        st!(
            "struct xen_domctl",
            domctl::XenDomctl {
                cmd,
                interface_version,
                domain,
                u
            }
        ),
        // sched.h
        st!("struct sched_shutdown", s::SchedShutdown { reason }),
        st!(
            "struct sched_poll",
            s::SchedPoll {
                ports,
                nr_ports,
                timeout
            }
        ),
        st!(
            "struct sched_remote_shutdown",
            s::SchedRemoteShutdown { domain_id, reason }
        ),
        st!("struct sched_watchdog", s::SchedWatchdog { id, timeout }),
        st!("struct sched_pin_override", s::SchedPinOverride { pcpu }),
        // callback.h
        st!(
            "struct callback_register",
            cb::CallbackRegister {
                r#type,
                flags,
                address
            }
        ),
        st!("struct callback_unregister", cb::CallbackUnregister { r#type, unused as "_unused" }),
        // event_channel.h
        st!(
            "struct evtchn_alloc_unbound",
            ev::EvtchnAllocUnbound {
                dom,
                remote_dom,
                port
            }
        ),
        st!(
            "struct evtchn_bind_interdomain",
            ev::EvtchnBindInterdomain {
                remote_dom,
                remote_port,
                local_port
            }
        ),
        st!(
            "struct evtchn_bind_virq",
            ev::EvtchnBindVirq { virq, vcpu, port }
        ),
        st!(
            "struct evtchn_bind_pirq",
            ev::EvtchnBindPirq { pirq, flags, port }
        ),
        st!("struct evtchn_bind_ipi", ev::EvtchnBindIpi { vcpu, port }),
        st!("struct evtchn_close", ev::EvtchnClose { port }),
        st!("struct evtchn_send", ev::EvtchnSend { port }),
        st!("struct evtchn_status", ev::EvtchnStatus {
            dom, port, status, vcpu, u, u.word0 as "u.pirq", u.word1 as "u.interdomain.port"
        }),
        st!("struct evtchn_bind_vcpu", ev::EvtchnBindVcpu { port, vcpu }),
        st!("struct evtchn_unmask", ev::EvtchnUnmask { port }),
        st!("struct evtchn_reset", ev::EvtchnReset { dom }),
        st!("struct evtchn_init_control", ev::EvtchnInitControl {
            control_gfn, offset, vcpu, link_bits, pad as "_pad"
        }),
        st!(
            "struct evtchn_expand_array",
            ev::EvtchnExpandArray { array_gfn }
        ),
        st!(
            "struct evtchn_set_priority",
            ev::EvtchnSetPriority { port, priority }
        ),
        st!("struct evtchn_op", ev::EvtchnOp { cmd, u }),
        st!("struct evtchn_fifo_control_block", ev::EvtchnFifoControlBlock {
            ready, rsvd as "_rsvd", head
        }),
        // grant_table.h
        st!(
            "struct grant_entry_v1",
            g::GrantEntryV1 {
                flags,
                domid,
                frame
            }
        ),
        st!(
            "struct grant_entry_header",
            g::GrantEntryHeader { flags, domid }
        ),
        st!("union grant_entry_v2", g::GrantEntryV2 {
            hdr, word1 as "full_page.pad0", frame as "full_page.frame"
        }),
        st!(
            "struct gnttab_map_grant_ref",
            g::GnttabMapGrantRef {
                host_addr,
                flags,
                r#ref,
                dom,
                status,
                handle,
                dev_bus_addr
            }
        ),
        st!(
            "struct gnttab_unmap_grant_ref",
            g::GnttabUnmapGrantRef {
                host_addr,
                dev_bus_addr,
                handle,
                status
            }
        ),
        st!(
            "struct gnttab_setup_table",
            g::GnttabSetupTable {
                dom,
                nr_frames,
                status,
                frame_list
            }
        ),
        st!(
            "struct gnttab_dump_table",
            g::GnttabDumpTable { dom, status }
        ),
        st!(
            "struct gnttab_transfer",
            g::GnttabTransfer {
                mfn,
                domid,
                r#ref,
                status
            }
        ),
        st!("struct gnttab_copy_ptr", g::GnttabCopyPtr { u as "u.gmfn", domid, offset }),
        st!(
            "struct gnttab_copy",
            g::GnttabCopy {
                source,
                dest,
                len,
                flags,
                status
            }
        ),
        st!(
            "struct gnttab_query_size",
            g::GnttabQuerySize {
                dom,
                nr_frames,
                max_nr_frames,
                status
            }
        ),
        st!(
            "struct gnttab_unmap_and_replace",
            g::GnttabUnmapAndReplace {
                host_addr,
                new_addr,
                handle,
                status
            }
        ),
        st!("struct gnttab_set_version", g::GnttabSetVersion { version }),
        st!(
            "struct gnttab_get_status_frames",
            g::GnttabGetStatusFrames {
                nr_frames,
                dom,
                status,
                frame_list
            }
        ),
        st!(
            "struct gnttab_get_version",
            g::GnttabGetVersion { dom, pad, version }
        ),
        st!(
            "struct gnttab_swap_grant_ref",
            g::GnttabSwapGrantRef {
                ref_a,
                ref_b,
                status
            }
        ),
        st!("struct gnttab_cache_flush", g::GnttabCacheFlush {
            a as "a.dev_bus_addr", offset, length, op
        }),
        // vcpu.h
        st!(
            "struct vcpu_runstate_info",
            vc::VcpuRunstateInfo {
                state,
                state_entry_time,
                time
            }
        ),
        st!("struct vcpu_register_runstate_memory_area", vc::VcpuRegisterRunstateMemoryArea {
            addr as "addr.p"
        }),
        st!(
            "struct vcpu_set_periodic_timer",
            vc::VcpuSetPeriodicTimer { period_ns }
        ),
        st!(
            "struct vcpu_set_singleshot_timer",
            vc::VcpuSetSingleshotTimer {
                timeout_abs_ns,
                flags
            }
        ),
        st!(
            "struct vcpu_register_vcpu_info",
            vc::VcpuRegisterVcpuInfo { mfn, offset, rsvd }
        ),
        st!("struct vcpu_get_physid", vc::VcpuGetPhysid { phys_id }),
        st!("struct vcpu_register_time_memory_area", vc::VcpuRegisterTimeMemoryArea {
            addr as "addr.p"
        }),
        // memory.h
        st!(
            "struct xen_memory_reservation",
            m::XenMemoryReservation {
                extent_start,
                nr_extents,
                extent_order,
                mem_flags,
                domid
            }
        ),
        st!(
            "struct xen_memory_exchange",
            m::XenMemoryExchange {
                r#in,
                out,
                nr_exchanged
            }
        ),
        st!("struct xen_memory_domain", m::XenMemoryDomain { domid }),
        st!(
            "struct xen_machphys_mfn_list",
            m::XenMachphysMfnList {
                max_extents,
                extent_start,
                nr_extents
            }
        ),
        st!(
            "struct xen_machphys_mapping",
            m::XenMachphysMapping {
                v_start,
                v_end,
                max_mfn
            }
        ),
        st!(
            "struct xen_add_to_physmap",
            m::XenAddToPhysmap {
                domid,
                size,
                space,
                idx,
                gpfn
            }
        ),
        st!("struct xen_add_to_physmap_batch", m::XenAddToPhysmapBatch {
            domid, space, size, foreign_domid as "u.foreign_domid", idxs, gpfns, errs
        }),
        st!(
            "struct xen_remove_from_physmap",
            m::XenRemoveFromPhysmap { domid, gpfn }
        ),
        st!(
            "struct xen_memory_map",
            m::XenMemoryMap { nr_entries, buffer }
        ),
        st!(
            "struct xen_foreign_memory_map",
            m::XenForeignMemoryMap { domid, map }
        ),
        st!(
            "struct xen_pod_target",
            m::XenPodTarget {
                target_pages,
                tot_pages,
                pod_cache_pages,
                pod_entries,
                domid
            }
        ),
        st!(
            "struct xen_mem_acquire_resource",
            m::XenMemAcquireResource {
                domid,
                r#type,
                id,
                nr_frames,
                pad,
                frame,
                frame_list
            }
        ),
        st!(
            "struct xen_vmemrange",
            m::XenVmemrange {
                start,
                end,
                flags,
                nid
            }
        ),
        st!("struct xen_vnuma_topology_info", m::XenVnumaTopologyInfo {
            domid, pad, nr_vnodes, nr_vcpus, nr_vmemranges, vdistance as "vdistance.pad",
            vcpu_to_vnode as "vcpu_to_vnode.pad", vmemrange as "vmemrange.pad"
        }),
        // physdev.h
        st!("struct physdev_eoi", p::PhysdevEoi { irq }),
        st!(
            "struct physdev_pirq_eoi_gmfn",
            p::PhysdevPirqEoiGmfn { gmfn }
        ),
        st!(
            "struct physdev_irq_status_query",
            p::PhysdevIrqStatusQuery { irq, flags }
        ),
        st!("struct physdev_set_iopl", p::PhysdevSetIopl { iopl }),
        st!(
            "struct physdev_set_iobitmap",
            p::PhysdevSetIobitmap { bitmap, nr_ports }
        ),
        st!(
            "struct physdev_apic",
            p::PhysdevApic {
                apic_physbase,
                reg,
                value
            }
        ),
        st!("struct physdev_irq", p::PhysdevIrq { irq, vector }),
        st!(
            "struct physdev_map_pirq",
            p::PhysdevMapPirq {
                domid,
                r#type,
                index,
                pirq,
                bus,
                devfn,
                entry_nr,
                table_base
            }
        ),
        st!(
            "struct physdev_unmap_pirq",
            p::PhysdevUnmapPirq { domid, pirq }
        ),
        st!(
            "struct physdev_manage_pci",
            p::PhysdevManagePci { bus, devfn }
        ),
        st!(
            "struct physdev_restore_msi",
            p::PhysdevRestoreMsi { bus, devfn }
        ),
        st!("struct physdev_manage_pci_ext", p::PhysdevManagePciExt {
            bus, devfn, is_extfn, is_virtfn, physfn_bus as "physfn.bus",
            physfn_devfn as "physfn.devfn"
        }),
        st!("struct physdev_op", p::PhysdevOp { cmd, u }),
        st!(
            "struct physdev_setup_gsi",
            p::PhysdevSetupGsi {
                gsi,
                triggering,
                polarity
            }
        ),
        st!(
            "struct physdev_get_free_pirq",
            p::PhysdevGetFreePirq { r#type, pirq }
        ),
        st!(
            "struct physdev_pci_mmcfg_reserved",
            p::PhysdevPciMmcfgReserved {
                address,
                segment,
                start_bus,
                end_bus,
                flags
            }
        ),
        st!("struct physdev_pci_device_add", p::PhysdevPciDeviceAdd {
            seg, bus, devfn, flags, physfn_bus as "physfn.bus", physfn_devfn as "physfn.devfn"
        }),
        st!(
            "struct physdev_pci_device",
            p::PhysdevPciDevice { seg, bus, devfn }
        ),
        st!("struct physdev_dbgp_op", p::PhysdevDbgpOp { op, bus, pci as "u.pci" }),
        // io/ring.h: the header of every shared ring, here blkif's.
        st!(nosize "struct blkif_sring", r::SringHeader {
            req_prod, req_event, rsp_prod, rsp_event, pvt, pad as "__pad"
        }),
        // io/console.h, io/xs_wire.h
        st!(
            "struct xencons_interface",
            con::XenconsInterface {
                r#in,
                out,
                in_cons,
                in_prod,
                out_cons,
                out_prod
            }
        ),
        st!(
            "struct xsd_sockmsg",
            xs::XsdSockmsg {
                r#type,
                req_id,
                tx_id,
                len
            }
        ),
        st!(
            "struct xenstore_domain_interface",
            xs::XenstoreDomainInterface {
                req,
                rsp,
                req_cons,
                req_prod,
                rsp_cons,
                rsp_prod,
                server_features,
                connection,
                error
            }
        ),
        // io/blkif.h
        st!(
            "struct blkif_request_segment",
            b::BlkifRequestSegment {
                gref,
                first_sect,
                last_sect
            }
        ),
        st!(
            "struct blkif_request",
            b::BlkifRequest {
                operation,
                nr_segments,
                handle,
                id,
                sector_number,
                seg
            }
        ),
        st!(
            "struct blkif_request_discard",
            b::BlkifRequestDiscard {
                operation,
                flag,
                handle,
                id,
                sector_number,
                nr_sectors
            }
        ),
        st!(
            "struct blkif_request_indirect",
            b::BlkifRequestIndirect {
                operation,
                indirect_op,
                nr_segments,
                id,
                sector_number,
                handle,
                indirect_grefs
            }
        ),
        st!(
            "struct blkif_response",
            b::BlkifResponse {
                id,
                operation,
                status
            }
        ),
        // io/netif.h
        st!(
            "struct xen_netif_ctrl_request",
            n::XenNetifCtrlRequest { id, r#type, data }
        ),
        st!(
            "struct xen_netif_ctrl_response",
            n::XenNetifCtrlResponse {
                id,
                r#type,
                status,
                data
            }
        ),
        st!(
            "struct xen_netif_gref",
            n::XenNetifGref {
                r#ref,
                flags,
                status
            }
        ),
        st!(
            "struct netif_tx_request",
            n::NetifTxRequest {
                gref,
                offset,
                flags,
                id,
                size
            }
        ),
        st!(
            "struct netif_extra_info",
            n::NetifExtraInfo { r#type, flags, u }
        ),
        st!(
            "struct netif_tx_response",
            n::NetifTxResponse { id, status }
        ),
        st!(
            "struct netif_rx_request",
            n::NetifRxRequest { id, pad, gref }
        ),
        st!(
            "struct netif_rx_response",
            n::NetifRxResponse {
                id,
                offset,
                flags,
                status
            }
        ),
    ]
    .into_iter()
    .flatten()
    .collect()
}

fn type_aliases() -> Vec<Item> {
    use pv_abi::io;
    vec![
        ty!(xen::XenPfn = "xen_pfn_t"),
        ty!(xen::XenUlong = "xen_ulong_t"),
        ty!(xen::DomId = "domid_t"),
        ty!(xen::XenDomainHandle = "xen_domain_handle_t"),
        ty!(arch_x86_64::XenCallback = "xen_callback_t"),
        ty!(event_channel::EvtchnPort = "evtchn_port_t"),
        ty!(event_channel::EventWord = "event_word_t"),
        ty!(grant_table::GrantRef = "grant_ref_t"),
        ty!(grant_table::GrantHandle = "grant_handle_t"),
        ty!(grant_table::GrantStatus = "grant_status_t"),
        ty!(version::XenExtraversion = "xen_extraversion_t"),
        ty!(version::XenCapabilitiesInfo = "xen_capabilities_info_t"),
        ty!(version::XenChangeset = "xen_changeset_info_t"),
        ty!(version::XenCommandline = "xen_commandline_t"),
        ty!(io::ring::RingIdx = "RING_IDX"),
        ty!(io::console::XenconsRingIdx = "XENCONS_RING_IDX"),
        ty!(io::xs_wire::XenstoreRingIdx = "XENSTORE_RING_IDX"),
        ty!(io::blkif::BlkifVdev = "blkif_vdev_t"),
        ty!(io::blkif::BlkifSector = "blkif_sector_t"),
    ]
}

/// Enumerations the crate exposes as lists: every member is checked.
fn enumerations() -> Vec<Item> {
    use pv_abi::io;
    let mut v = Vec::new();
    for h in Hypercall::ALL {
        let c = format!("__HYPERVISOR_{}", h.name());
        v.push(konst(&format!("Hypercall::{h:?}"), &c, h.number() as i128));
    }
    for e in Errno::ALL {
        v.push(konst(
            &format!("Errno::{}", e.name()),
            &format!("XEN_{}", e.name()),
            e.get() as i128,
        ));
    }
    v.push(konst(
        "Errno::EWOULDBLOCK",
        "XEN_EWOULDBLOCK",
        Errno::EWOULDBLOCK.get() as i128,
    ));
    v.push(konst(
        "Errno::EDEADLOCK",
        "XEN_EDEADLOCK",
        Errno::EDEADLOCK.get() as i128,
    ));
    for s in io::xenbus::XenbusState::ALL {
        v.push(konst(
            &format!("XenbusState::{s:?}"),
            &format!("XenbusState{s:?}"),
            s as i128,
        ));
    }
    for (i, (errno, name)) in io::xs_wire::XSD_ERRORS.iter().enumerate() {
        v.push(konst(
            &format!("XSD_ERRORS[{i}].0"),
            &format!("xsd_errors[{i}].errnum"),
            errno.get() as i128,
        ));
        let same = format!("strcmp(xsd_errors[{i}].errstring, \"{name}\") == 0");
        v.push(konst(&format!("XSD_ERRORS[{i}].1"), &same, 1));
    }
    v.push(konst(
        "XSD_ERRORS.len()",
        "sizeof(xsd_errors) / sizeof(xsd_errors[0])",
        io::xs_wire::XSD_ERRORS.len() as i128,
    ));
    // The generic ring's slot count and slot size against the C macros, for every ring
    // type the headers define.
    ring_items::<io::blkif::BlkifRequest, io::blkif::BlkifResponse>("blkif", &mut v);
    ring_items::<io::netif::NetifTxRequest, io::netif::NetifTxResponse>("netif_tx", &mut v);
    ring_items::<io::netif::NetifRxRequest, io::netif::NetifRxResponse>("netif_rx", &mut v);
    ring_items::<io::netif::XenNetifCtrlRequest, io::netif::XenNetifCtrlResponse>(
        "xen_netif_ctrl",
        &mut v,
    );
    v
}

fn ring_items<Req, Rsp>(tag: &str, v: &mut Vec<Item>) {
    use pv_abi::io::ring::{ring_entries, slot_size};
    for bytes in [4096usize, 8192, 16384, 65536, 1000] {
        let c = format!("__CONST_RING_SIZE({tag}, {bytes})");
        let rust = ring_entries::<Req, Rsp>(bytes);
        v.push(konst(
            &format!("ring_entries::<{tag}>({bytes})"),
            &c,
            rust as i128,
        ));
    }
    let c = format!("sizeof(union {tag}_sring_entry)");
    v.push(konst(
        &format!("slot_size::<{tag}>()"),
        &c,
        slot_size::<Req, Rsp>() as i128,
    ));
}

/// Public constants and `#[repr(C)]` types that Xen's headers do not define, so nothing
/// can check them against C. Each is ours or a fact stated only in prose.
const NO_C_ORACLE: &[(&str, &str)] = &[
    (
        "MAX_SEGMENTS",
        "ours: the most loadable segments the PV kernel reader accepts",
    ),
    (
        "MIN_PADDING",
        "boot-region padding after the stack; prose around start_info in xen.h",
    ),
    (
        "REGION_ALIGN",
        "boot-region end alignment (4 MiB); prose around start_info in xen.h",
    ),
    (
        "NR_HYPERCALL_STUBS",
        "hypercall page capacity (4096 / 32); prose in xen-x86_64.h",
    ),
    (
        "HYPERCALL_STUB_SIZE",
        "32-byte stubs; prose in xen-x86_64.h",
    ),
    (
        "MMU_UPDATE_CMD_MASK",
        "ours: the two command bits of mmu_update.ptr",
    ),
    (
        "START_INFO_MAGIC",
        "prose in xen.h: \"xen-<version>-<platform>\"",
    ),
    ("XEN_ELFNOTE_NAME", "prose in elfnote.h"),
    (
        "XENFEAT_GRANT_MAP_IDENTITY",
        "deprecated: features.h keeps it inside a comment",
    ),
    ("MAX_ERRNO", "ours: Linux/Xen convention for error returns"),
    ("EXTOP_SET_EXIT_CODE", "ours: the ext_op extension"),
    ("EXTOP_PORT_WRITE", "ours: the ext_op extension"),
    ("EXTOP_PORT_READ", "ours: the ext_op extension"),
    ("BLKIF_SECTOR_SIZE", "prose in blkif.h (512-byte sectors)"),
    ("E820_RAM", "BIOS E820 types"),
    ("E820_RESERVED", "BIOS E820 types"),
    ("E820_ACPI", "BIOS E820 types"),
    ("E820_NVS", "BIOS E820 types"),
    ("E820_UNUSABLE", "BIOS E820 types"),
    (
        "E820Entry",
        "BIOS E820 entry; Xen's headers only refer to it",
    ),
    ("Page", "a 4 KiB buffer, not a wire structure"),
    ("StartInfoConsole", "checked as start_info.console"),
    ("EvtchnStatusDetail", "checked as evtchn_status.u"),
];

fn c_program(items: &[Item]) -> String {
    let mut c = String::from(
        "#include <stdint.h>\n#include <stddef.h>\n#include <stdio.h>\n#include <string.h>\n\
         #include <errno.h>\n\
         #include <xen/xen.h>\n#include <xen/event_channel.h>\n#include <xen/grant_table.h>\n\
         #include <xen/sched.h>\n#include <xen/vcpu.h>\n#include <xen/memory.h>\n\
         #include <xen/callback.h>\n#include <xen/physdev.h>\n#include <xen/version.h>\n\
         #include <xen/features.h>\n#include <xen/elfnote.h>\n#include <xen/io/ring.h>\n\
         #include <xen/io/console.h>\n#include <xen/io/xs_wire.h>\n#include <xen/io/xenbus.h>\n\
         #include <xen/io/blkif.h>\n#include <xen/io/netif.h>\n#include <xen/sysctl.h>\n#include <xen/domctl.h>\n\
         DEFINE_XEN_FLEX_RING(pvabi);\n\
         /* The errno list, including the hypervisor-internal numbers. */\n\
         #define __XEN__\n#define XEN_ERRNO(name, value) enum { XEN_##name = value };\n\
         #include <xen/errno.h>\n#undef __XEN__\n\
         #define K(key, expr) do { if ((expr) < 0) printf(\"%s\\t%lld\\n\", key, (long long)(expr)); \
         else printf(\"%s\\t%llu\\n\", key, (unsigned long long)(expr)); } while (0)\n\
         int main(void) {\n",
    );
    for item in items {
        let key = item
            .key
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\t', "\\t");
        match &item.kind {
            Kind::Const { c: expr, .. } => writeln!(c, "    K(\"{key}\", ({expr}));").unwrap(),
            Kind::Type { c: t, .. } => writeln!(
                c,
                "    printf(\"%s\\t%zu\\t%zu\\n\", \"{key}\", sizeof({t}), _Alignof({t}));"
            )
            .unwrap(),
            Kind::Field {
                c_type, c_field, ..
            } => writeln!(
                c,
                "    printf(\"%s\\t%zu\\t%zu\\n\", \"{key}\", offsetof({c_type}, {c_field}), \
                 sizeof((({c_type} *)0)->{c_field}));"
            )
            .unwrap(),
        }
    }
    c.push_str("    return 0;\n}\n");
    c
}

fn run_c(source: &str) -> String {
    let dir = std::env::temp_dir().join(format!("pv-abi-conformance-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("abi.c");
    let exe = dir.join("abi");
    std::fs::write(&src, source).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = Command::new(&cc)
        .args(["-std=gnu11", "-w", "-D__XEN_TOOLS__", "-o"])
        .arg(&exe)
        .arg(&src)
        .output()
        .unwrap_or_else(|e| panic!("cannot run the C compiler `{cc}`: {e}"));
    assert!(
        out.status.success(),
        "the generated C program did not compile (kept at {}):\n{}",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let run = Command::new(&exe)
        .output()
        .expect("run the generated C program");
    assert!(run.status.success());
    let _ = std::fs::remove_dir_all(&dir);
    String::from_utf8(run.stdout).unwrap()
}

/// `pub const` names and `#[repr(C)]` struct names declared in the crate's sources.
fn declared_items() -> (Vec<String>, Vec<String>) {
    fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, files);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    let (mut consts, mut structs) = (Vec::new(), Vec::new());
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (i, line) in text.lines().enumerate() {
            if let Some(rest) = line
                .strip_prefix("pub const ")
                .filter(|r| !r.starts_with("fn "))
            {
                consts.push(rest.split(':').next().unwrap().trim().to_string());
            }
            if let Some(rest) = line.strip_prefix("pub struct ") {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                let before: Vec<&str> = text.lines().take(i).collect();
                let attrs = before.iter().rev().take_while(|l| {
                    let l = l.trim_start();
                    l.starts_with("#[")
                        || l.starts_with("///")
                        || l.starts_with(')')
                        || !l.starts_with("pub")
                            && !l.is_empty()
                            && !l.starts_with('}')
                            && !l.starts_with("const")
                });
                if attrs.clone().any(|l| l.contains("#[repr(C")) {
                    structs.push(name);
                }
            }
        }
    }
    (consts, structs)
}

#[test]
fn abi_matches_xen_headers() {
    assert!(
        Path::new("/usr/include/xen/xen.h").exists(),
        "Xen's public headers are missing: /usr/include/xen/xen.h not found. Install them with \
         `apt-get install libxen-dev` (CI installs it through `cargo xtask`)."
    );
    let mut items = constants();
    items.extend(structs());
    items.extend(type_aliases());
    items.extend(enumerations());

    let output = run_c(&c_program(&items));
    // Each output line is the item's key, then one value (constants) or two (types:
    // size and alignment; fields: offset and size), tab-separated.
    let mut expected: HashMap<&str, Vec<i128>> = HashMap::new();
    for line in output.lines() {
        let values = if line.starts_with("K\t") { 1 } else { 2 };
        let mut fields: Vec<&str> = line.rsplitn(values + 1, '\t').collect();
        let key = fields.pop().unwrap();
        let nums = fields
            .iter()
            .rev()
            .map(|n| n.parse::<i128>().expect("a number"))
            .collect();
        expected.insert(key, nums);
    }

    let mut mismatches = Vec::new();
    for item in &items {
        let Some(c) = expected.get(item.key.as_str()) else {
            mismatches.push(format!("{}: no value from C for {:?}", item.rust, item.key));
            continue;
        };
        let rust: Vec<i128> = match &item.kind {
            Kind::Const { rust, .. } => vec![*rust],
            Kind::Type { size, align, .. } => {
                if *size == usize::MAX {
                    continue;
                }
                if *align == 0 {
                    vec![*size as i128, c[1]]
                } else {
                    vec![*size as i128, *align as i128]
                }
            }
            Kind::Field { offset, size, .. } => vec![*offset as i128, *size as i128],
        };
        if &rust != c {
            mismatches.push(format!(
                "{}: Rust {:?}, C {:?} ({})",
                item.rust,
                rust,
                c,
                item.key.replace('\t', " ")
            ));
        }
    }

    // Completeness: every exported constant and C-layout struct is checked or exempt.
    let checked: HashSet<&str> = items
        .iter()
        .map(|i| last_segment(i.rust.split('.').next().unwrap()))
        .collect();
    let exempt: HashSet<&str> = NO_C_ORACLE.iter().map(|(n, _)| *n).collect();
    let (consts, structs) = declared_items();
    assert!(
        consts.len() > 400 && structs.len() > 100,
        "source scan found too little"
    );
    for name in consts.iter().chain(structs.iter()) {
        if !checked.contains(name.as_str()) && !exempt.contains(name.as_str()) {
            mismatches.push(format!("{name}: exported but not in the conformance table"));
        }
    }

    for m in &mismatches {
        println!("MISMATCH {m}");
    }
    // Written to the real stdout, past the test harness's capture, so that the summary
    // shows in every `cargo test` run.
    let summary = format!(
        "abi-conformance: {} items checked, {} mismatches\n",
        items.len(),
        mismatches.len()
    );
    std::io::stdout().write_all(summary.as_bytes()).unwrap();
    assert!(
        mismatches.is_empty(),
        "{} ABI mismatches (see above)",
        mismatches.len()
    );
}
