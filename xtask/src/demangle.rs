//! Rust's legacy symbol mangling, read back for the checks' messages (`image_check.rs`,
//! `sse_check.rs`).

/// A legacy-mangled Rust name (`_ZN` length-prefixed parts `E`) as `a::b::c`, without
/// its hash; any other name as it is.
pub fn demangle(name: &str) -> String {
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
        .is_some_and(|last| last.len() == 17 && last.starts_with('h'))
    {
        parts.pop();
    }
    if parts.is_empty() {
        return name.to_owned();
    }
    let mut text = parts.join("::");
    for (escape, plain) in [
        ("$LT$", "<"),
        ("$GT$", ">"),
        ("$u20$", " "),
        ("$u7b$", "{"),
        ("$u7d$", "}"),
        ("$C$", ","),
        ("$RF$", "&"),
        ("$BP$", "*"),
        ("..", "::"),
    ] {
        text = text.replace(escape, plain);
    }
    text.trim_start_matches('_').to_owned()
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
