//! What the precompiled `core` and `alloc` need from a freestanding x86_64 binary built
//! for the host target (docs/architecture.md, "Building freestanding code on the host triple"):
//! the memory primitives, which compiler_builtins provides only with its `mem` feature
//! (not enabled for this target), and the personality routine of an unwinder the
//! kernels never run. The hypervisor and the guest kernel each link this crate with
//! `use freestanding as _;`.
//!
//! The primitives are written with string instructions so that they never compile into
//! calls to themselves.

#![no_std]

/// Required by the precompiled `core`; never called, since the kernels never unwind
/// (`panic = "abort"`).
#[unsafe(no_mangle)]
pub extern "C" fn rust_eh_personality() {}

/// Copies `n` bytes forward.
///
/// # Safety
/// Standard `memcpy` contract: valid, non-overlapping ranges.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // Eight bytes per step, then the tail: a `rep` step is one instruction under QEMU's
    // -icount (and one loop of its emulation), so `rep movsb` alone made a 176-byte copy
    // cost 176 steps.
    // SAFETY: the caller guarantees both ranges are valid for n bytes; the two string
    // instructions together copy exactly n bytes forward.
    unsafe {
        core::arch::asm!("rep movsq", "mov rcx, {tail}", "rep movsb",
            tail = in(reg) n % 8,
            inout("rcx") n / 8 => _, inout("rdi") dest => _,
            inout("rsi") src => _, options(nostack, preserves_flags));
    }
    dest
}

/// Copies `n` bytes, handling overlap.
///
/// # Safety
/// Standard `memmove` contract: valid ranges.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dest as usize) <= (src as usize) || (dest as usize) >= (src as usize).wrapping_add(n) {
        // SAFETY: forward copy is correct when dest does not start inside src.
        return unsafe { memcpy(dest, src, n) };
    }
    // SAFETY: backward copy with DF set, restored right after.
    unsafe {
        core::arch::asm!("std", "rep movsb", "cld",
            inout("rcx") n => _, inout("rdi") dest.add(n - 1) => _,
            inout("rsi") src.add(n - 1) => _, options(nostack));
    }
    dest
}

/// Fills `n` bytes with `c`.
///
/// # Safety
/// Standard `memset` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memset(dest: *mut u8, c: i32, n: usize) -> *mut u8 {
    // Eight bytes per step, then the tail (see memcpy).
    let pattern = u64::from(c as u8) * 0x0101_0101_0101_0101;
    // SAFETY: the caller guarantees the range is valid for n bytes; the two string
    // instructions together fill exactly n bytes.
    unsafe {
        core::arch::asm!("rep stosq", "mov rcx, {tail}", "rep stosb",
            tail = in(reg) n % 8,
            inout("rcx") n / 8 => _, inout("rdi") dest => _,
            in("rax") pattern, options(nostack, preserves_flags));
    }
    dest
}

/// Compares `n` bytes.
///
/// # Safety
/// Standard `memcmp` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i < n {
        // SAFETY: i < n and the caller guarantees both ranges hold n bytes.
        let (x, y) = unsafe { (a.add(i).read(), b.add(i).read()) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
        i += 1;
    }
    0
}

/// Compares `n` bytes for equality only.
///
/// # Safety
/// Standard `bcmp` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract as memcmp.
    unsafe { memcmp(a, b, n) }
}
