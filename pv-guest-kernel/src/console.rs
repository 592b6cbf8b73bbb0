//! Console output through the `console_io` hypercall.

/// Writes formatted text to the hypervisor console.
pub struct Console;

impl core::fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        pv_abi::guest::console_io_write(s.as_bytes())
            .map(|_| ())
            .map_err(|_| core::fmt::Error)
    }
}
