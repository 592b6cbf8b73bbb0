//! Rust symbol names read back for the checks' messages and lists (`image_check.rs`,
//! `sse_check.rs`): the legacy mangling (`_ZN...E`, our crates') and v0 (`_R...`, the
//! precompiled `core`'s), by `rustc-demangle`.

/// `name` demangled without its hash (`hypervisor::machine::STATE`), or as it is if it
/// is not a Rust name.
pub fn demangle(name: &str) -> String {
    match rustc_demangle::try_demangle(name) {
        Ok(demangled) => format!("{demangled:#}"),
        Err(_) => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_rust_names_are_demangled() {
        assert_eq!(
            demangle("_ZN10hypervisor7machine5STATE17hc6e587a2c4fe2d7cE"),
            "hypervisor::machine::STATE"
        );
        assert_eq!(demangle("boot_pml4"), "boot_pml4");
    }

    #[test]
    fn v0_names_are_demangled() {
        // core's, as the precompiled library names it.
        assert_eq!(
            demangle("_RNvNtCsgEmfK2I1SDS_4core3fmt5write"),
            "core::fmt::write"
        );
    }

    #[test]
    fn names_are_demangled() {
        assert_eq!(
            demangle("_ZN10hypervisor7machine9fast_iret17hf45ecef93bfbeddeE"),
            "hypervisor::machine::fast_iret"
        );
        assert_eq!(
            demangle("_ZN10hypervisor8guestmem17GuestMem$LT$M$GT$9translate17h0123456789abcdefE"),
            "hypervisor::guestmem::GuestMem<M>::translate"
        );
        assert_eq!(demangle("hv_hypercall_fast"), "hv_hypercall_fast");
    }
}
