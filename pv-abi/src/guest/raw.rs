//! The raw hypercall instruction: the only place in the workspace that issues one.
//!
//! A 64-bit PV guest kernel runs in ring 3 and enters the hypervisor with `syscall`:
//! number in `rax`, arguments in `rdi`, `rsi`, `rdx`, `r10`, `r8`, result in `rax`.
//! The instruction itself overwrites `rcx` and `r11`. Xen may also scribble over the
//! argument registers (debug builds deliberately do), so every function here declares
//! all five as clobbered whatever its arity.
//!
//! In host unit tests (`cfg(test)`) the instruction is replaced by a recorder, so the
//! typed wrappers can be tested without a hypervisor (the `mock` module).

use crate::xen::Hypercall;

#[cfg(not(test))]
#[inline(always)]
unsafe fn raw(nr: u64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> i64 {
    let ret: i64;
    // SAFETY: the caller upholds the contract of the specific hypercall (see the public
    // functions below). The asm block matches the x86_64 PV calling convention and
    // names every register the instruction or the hypervisor may change; it does not
    // touch the stack. Memory is not marked as untouched: hypercalls read and write
    // guest buffers.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") nr as i64 => ret,
            inlateout("rdi") a1 => _,
            inlateout("rsi") a2 => _,
            inlateout("rdx") a3 => _,
            inlateout("r10") a4 => _,
            inlateout("r8") a5 => _,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

#[cfg(test)]
unsafe fn raw(nr: u64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> i64 {
    mock::record(nr, [a1, a2, a3, a4, a5])
}

/// Issues hypercall `nr` with no argument.
///
/// # Safety
/// The caller must meet the contract of the hypercall (valid guest pointers, effects on
/// page tables and control flow that Rust cannot see).
#[inline]
pub unsafe fn hypercall0(nr: Hypercall) -> i64 {
    // SAFETY: forwarded from the caller.
    unsafe { raw(nr.number(), 0, 0, 0, 0, 0) }
}

/// Issues hypercall `nr` with one argument.
///
/// # Safety
/// As [`hypercall0`].
#[inline]
pub unsafe fn hypercall1(nr: Hypercall, a1: u64) -> i64 {
    // SAFETY: forwarded from the caller.
    unsafe { raw(nr.number(), a1, 0, 0, 0, 0) }
}

/// Issues hypercall `nr` with two arguments.
///
/// # Safety
/// As [`hypercall0`].
#[inline]
pub unsafe fn hypercall2(nr: Hypercall, a1: u64, a2: u64) -> i64 {
    // SAFETY: forwarded from the caller.
    unsafe { raw(nr.number(), a1, a2, 0, 0, 0) }
}

/// Issues hypercall `nr` with three arguments.
///
/// # Safety
/// As [`hypercall0`].
#[inline]
pub unsafe fn hypercall3(nr: Hypercall, a1: u64, a2: u64, a3: u64) -> i64 {
    // SAFETY: forwarded from the caller.
    unsafe { raw(nr.number(), a1, a2, a3, 0, 0) }
}

/// Issues hypercall `nr` with four arguments.
///
/// # Safety
/// As [`hypercall0`].
#[inline]
pub unsafe fn hypercall4(nr: Hypercall, a1: u64, a2: u64, a3: u64, a4: u64) -> i64 {
    // SAFETY: forwarded from the caller.
    unsafe { raw(nr.number(), a1, a2, a3, a4, 0) }
}

/// Issues hypercall `nr` with five arguments.
///
/// # Safety
/// As [`hypercall0`].
#[inline]
pub unsafe fn hypercall5(nr: Hypercall, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> i64 {
    // SAFETY: forwarded from the caller.
    unsafe { raw(nr.number(), a1, a2, a3, a4, a5) }
}

/// A stand-in hypervisor for host unit tests: records each call and answers it with a
/// programmable function.
#[cfg(test)]
pub mod mock {
    use std::cell::RefCell;
    use std::vec::Vec;

    /// One recorded hypercall: number and the five argument registers.
    pub type Call = (u64, [u64; 5]);
    type Handler = Box<dyn FnMut(u64, [u64; 5]) -> i64>;

    std::thread_local! {
        static CALLS: RefCell<Vec<Call>> = const { RefCell::new(Vec::new()) };
        static HANDLER: RefCell<Option<Handler>> = const { RefCell::new(None) };
    }

    /// Installs `handler` for this thread and clears the call log.
    pub fn install(handler: impl FnMut(u64, [u64; 5]) -> i64 + 'static) {
        HANDLER.with(|h| *h.borrow_mut() = Some(Box::new(handler)));
        CALLS.with(|c| c.borrow_mut().clear());
    }

    /// The calls made on this thread since [`install`].
    pub fn calls() -> Vec<Call> {
        CALLS.with(|c| c.borrow().clone())
    }

    pub(super) fn record(nr: u64, args: [u64; 5]) -> i64 {
        CALLS.with(|c| c.borrow_mut().push((nr, args)));
        HANDLER.with(|h| match h.borrow_mut().as_mut() {
            Some(f) => f(nr, args),
            None => -38,
        })
    }
}
