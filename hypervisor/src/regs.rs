//! The register frame saved on every entry from a guest: what the hypervisor reads its
//! hypercall arguments from and writes its results into.

/// Pseudo-vector recorded in [`TrapFrame::vector`] for an entry by `syscall`.
pub const VECTOR_SYSCALL: u64 = 0x100;

/// General-purpose registers and the interrupt-return frame of a guest vCPU.
///
/// The layout is shared with the entry stubs (`arch/x86_64/entry.S`), which push it on
/// the per-CPU stack; do not reorder fields.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)] // Register names are their own documentation.
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    /// Exception vector, or [`VECTOR_SYSCALL`].
    pub vector: u64,
    /// The CPU's error code (0 where the exception has none).
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

const _: () = assert!(core::mem::size_of::<TrapFrame>() == 22 * 8);
// entry.S addresses these fields by offset.
const _: () = {
    use core::mem::offset_of;
    assert!(offset_of!(TrapFrame, r15) == 0);
    assert!(offset_of!(TrapFrame, r11) == 4 * 8);
    assert!(offset_of!(TrapFrame, r8) == 7 * 8);
    assert!(offset_of!(TrapFrame, rbp) == 8 * 8);
    assert!(offset_of!(TrapFrame, rcx) == 12 * 8);
    assert!(offset_of!(TrapFrame, rbx) == 13 * 8);
    assert!(offset_of!(TrapFrame, rax) == 14 * 8);
    assert!(offset_of!(TrapFrame, vector) == 15 * 8);
    assert!(offset_of!(TrapFrame, cs) == 18 * 8);
};

/// A 64-bit hypercall decoded from registers: number in rax, arguments in rdi, rsi, rdx,
/// r10, r8 (Xen's x86_64 PV convention).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HypercallArgs {
    /// The hypercall number.
    pub number: u64,
    /// The five arguments in order.
    pub args: [u64; 5],
}

impl TrapFrame {
    /// The one place registers become hypercall arguments.
    pub fn hypercall_args(&self) -> HypercallArgs {
        HypercallArgs {
            number: self.rax,
            args: [self.rdi, self.rsi, self.rdx, self.r10, self.r8],
        }
    }
}
