//! The guest kernel's exception handling: a virtual IDT registered with
//! `set_trap_table`, entry stubs in `arch/traps.S`, one Rust handler, and a small
//! "expect a fault here" harness the self-tests use.

use core::sync::atomic::{AtomicU64, Ordering};
use pv_abi::arch_x86_64::{FLAT_KERNEL_CS64, TrapInfo};

/// The frame the entry stubs build (lowest address first).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
#[allow(missing_docs)] // Register names are their own documentation.
pub struct GuestFrame {
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
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

macro_rules! stubs {
    ($($v:literal => $name:ident),* $(,)?) => {
        unsafe extern "C" { $(fn $name();)* }
        /// (vector, entry stub) for every exception the kernel handles.
        fn stub_table() -> [(u8, u64); 20] {
            [$(($v, $name as *const () as u64)),*]
        }
    };
}

stubs! {
    0 => guest_trap_0, 1 => guest_trap_1, 3 => guest_trap_3, 4 => guest_trap_4,
    5 => guest_trap_5, 6 => guest_trap_6, 7 => guest_trap_7, 8 => guest_trap_8,
    9 => guest_trap_9, 10 => guest_trap_10, 11 => guest_trap_11, 12 => guest_trap_12,
    13 => guest_trap_13, 14 => guest_trap_14, 16 => guest_trap_16, 17 => guest_trap_17,
    18 => guest_trap_18, 19 => guest_trap_19, 20 => guest_trap_20,
    64 => guest_trap_64,
}

/// A software-interrupt vector the kernel may raise itself (virtual DPL 1), used by the
/// self-tests of `int $n` routing.
pub const KERNEL_SOFT_VECTOR: u8 = 64;

/// Registers the virtual IDT. `int3` is allowed from user mode (DPL 3), the rest only
/// as faults.
pub fn install() -> Result<u64, pv_abi::Errno> {
    let mut table = [TrapInfo::default(); 21];
    for (slot, (vector, stub)) in table.iter_mut().zip(stub_table()) {
        let dpl = match vector {
            3 => 3,
            KERNEL_SOFT_VECTOR => 1,
            _ => 0,
        };
        *slot = TrapInfo::new(vector, dpl, false, FLAT_KERNEL_CS64, stub);
    }
    // SAFETY: every entry points at a stub of arch/traps.S written for the PV frame; the
    // last entry stays zero as the terminator.
    unsafe { pv_abi::guest::set_trap_table(&table) }
}

/// No fault expected.
const NONE: u64 = u64::MAX;

static EXPECT_VECTOR: AtomicU64 = AtomicU64::new(NONE);
static RECOVER_RIP: AtomicU64 = AtomicU64::new(0);
static SEEN_VECTOR: AtomicU64 = AtomicU64::new(NONE);
static SEEN_ERROR: AtomicU64 = AtomicU64::new(0);
static SEEN_CS: AtomicU64 = AtomicU64::new(0);
static SEEN_RFLAGS: AtomicU64 = AtomicU64::new(0);
static SEEN_RIP: AtomicU64 = AtomicU64::new(0);

/// What the handler saw of an expected fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    /// The vector.
    pub vector: u64,
    /// The error code (0 if none).
    pub error_code: u64,
    /// CS as the hypervisor presented it (RPL 0: came from kernel mode).
    pub cs: u64,
    /// RFLAGS as presented (IF = the virtual interrupt flag).
    pub rflags: u64,
    /// Where the fault was reported.
    pub rip: u64,
}

/// Arms the harness: the next fault must be `vector`; the handler resumes at `recover`.
pub fn expect(vector: u64, recover: u64) {
    SEEN_VECTOR.store(NONE, Ordering::SeqCst);
    RECOVER_RIP.store(recover, Ordering::SeqCst);
    EXPECT_VECTOR.store(vector, Ordering::SeqCst);
}

/// Whether the armed harness has seen its fault yet (without disarming it).
pub fn fault_seen_yet() -> bool {
    SEEN_VECTOR.load(Ordering::SeqCst) != NONE
}

/// Disarms the harness and reports what was seen, if anything.
pub fn seen() -> Option<Seen> {
    EXPECT_VECTOR.store(NONE, Ordering::SeqCst);
    let vector = SEEN_VECTOR.swap(NONE, Ordering::SeqCst);
    (vector != NONE).then(|| Seen {
        vector,
        error_code: SEEN_ERROR.load(Ordering::SeqCst),
        cs: SEEN_CS.load(Ordering::SeqCst),
        rflags: SEEN_RFLAGS.load(Ordering::SeqCst),
        rip: SEEN_RIP.load(Ordering::SeqCst),
    })
}

/// Every exception from user mode, and every system call, lands here, with the
/// interrupted x87/SSE state saved below the frame (`arch/traps.S`).
#[unsafe(no_mangle)]
extern "C" fn guest_trap(frame: &mut GuestFrame) {
    if frame.vector == crate::process::SYSCALL_MARKER || frame.cs & 3 == 3 {
        crate::process::user_event(frame);
        return;
    }
    guest_kernel_trap(frame);
}

/// Every exception in kernel mode lands here, with the interrupted code's x87/SSE state
/// still in the registers (`arch/traps.S`): nothing this reaches may touch them, which
/// `cargo xtask test` checks on the built kernel (`xtask/src/sse_check.rs`; a panic
/// ends the kernel, and with it the check's search). What it does: a fault the harness
/// expects is recorded and resumed after, a stray breakpoint continues, anything else
/// is a kernel bug.
#[unsafe(no_mangle)]
extern "C" fn guest_kernel_trap(frame: &mut GuestFrame) {
    let expected = EXPECT_VECTOR.load(Ordering::SeqCst);
    if (frame.vector == 3 || frame.vector == u64::from(KERNEL_SOFT_VECTOR))
        && expected != frame.vector
    {
        return; // a stray breakpoint: continue after it
    }
    if frame.vector == expected {
        SEEN_ERROR.store(frame.error_code, Ordering::SeqCst);
        SEEN_CS.store(frame.cs, Ordering::SeqCst);
        SEEN_RFLAGS.store(frame.rflags, Ordering::SeqCst);
        SEEN_RIP.store(frame.rip, Ordering::SeqCst);
        SEEN_VECTOR.store(frame.vector, Ordering::SeqCst);
        EXPECT_VECTOR.store(NONE, Ordering::SeqCst);
        // A caught fault ends any single-stepping (the #DB `emulated_single_step`
        // catches; TF is clear in every other test's frame).
        frame.rflags &= !0x100;
        let recover = RECOVER_RIP.load(Ordering::SeqCst);
        if recover != 0 {
            frame.rip = recover;
        }
        return;
    }
    panic!(
        "unexpected exception {} (error {:#x}) at {:#x}, rsp {:#x}",
        frame.vector, frame.error_code, frame.rip, frame.rsp
    );
}

/// Where the harness reads the resume address from (filled in by the test's asm right
/// before the faulting instruction).
pub fn recover_slot() -> *mut u64 {
    RECOVER_RIP.as_ptr()
}

/// Runs `$insn` (asm text) expecting exception `$vector`; evaluates to what was seen.
macro_rules! expect_fault {
    ($vector:expr, $($insn:literal),+ $(; $($operands:tt)*)?) => {{
        $crate::traps::expect($vector, 0);
        // SAFETY: the instruction faults on purpose; the handler resumes at label 2,
        // right after it, with every register the asm names restored.
        unsafe {
            core::arch::asm!(
                "lea {tmp}, [rip + 2f]",
                "mov [{slot}], {tmp}",
                $($insn,)+
                "2:",
                slot = in(reg) $crate::traps::recover_slot(),
                tmp = out(reg) _,
                $($($operands)*)?
            );
        }
        $crate::traps::seen()
    }};
}
pub(crate) use expect_fault;

/// A hypercall by a bare `syscall` (what the hypercall page's stubs do) with its six
/// argument registers (rdi, rsi, rdx, r10, r8, r9) set: from this stack, or with
/// `crossing` from a stack pointer 48 bytes above a page boundary two pages down this
/// kernel stack, so that a 56-byte frame pushed below it (an upcall's) crosses the
/// boundary. Returns rax and the six registers as they came back: the tests that a
/// hypervisor gives back every register but rax (and rcx, r11, which `syscall` takes)
/// compare them with what went in.
///
/// # Safety
/// The call with these arguments must be one the caller may make; with `crossing`, the
/// 8 KiB below the stack pointer must be free (this kernel has no red zone, and its
/// stacks have the room).
pub unsafe fn bare_hypercall(nr: u64, args: [u64; 6], crossing: bool) -> (u64, [u64; 6]) {
    let (rax, rdi, rsi, rdx, r10, r8, r9): (u64, u64, u64, u64, u64, u64, u64);
    // SAFETY: the call is the caller's to make (above); when crossing, the stack pointer
    // moves into free stack below it and comes back from r12 (callee-saved, declared).
    unsafe {
        core::arch::asm!(
            "mov r12, rsp",
            "test r13, r13",
            "jz 2f",
            "lea r13, [rsp - 8192]",
            "and r13, -4096",
            "add r13, 48",
            "mov rsp, r13",
            "2:",
            "syscall",
            "mov rsp, r12",
            inlateout("rax") nr => rax,
            inlateout("rdi") args[0] => rdi,
            inlateout("rsi") args[1] => rsi,
            inlateout("rdx") args[2] => rdx,
            inlateout("r10") args[3] => r10,
            inlateout("r8") args[4] => r8,
            inlateout("r9") args[5] => r9,
            inout("r13") u64::from(crossing) => _,
            out("r12") _,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    (rax, [rdi, rsi, rdx, r10, r8, r9])
}

/// What [`iret_to_next`] came back with.
#[derive(Clone, Copy, Debug)]
pub struct IretSeen {
    /// rax after the return (the context's).
    pub rax: u64,
    /// rcx after the return.
    pub rcx: u64,
    /// r11 after the return.
    pub r11: u64,
    /// The address it was to return to.
    pub target: u64,
    /// RFLAGS after the return.
    pub rflags: u64,
}

unsafe extern "C" {
    static hypercall_page: [u8; 4096];
}

/// `HYPERVISOR_iret` within kernel mode to the next instruction, with `flags` and `rax`
/// in its `iret_context`, RFLAGS with IF and the bits of `rflags_set` set, nothing else
/// (an upcall pending and unmasked is taken on the way), and rcx and r11 set to the marks 0x1c1c
/// and 0x2b2b first (the hypercall page's stub saves them into the context). RFLAGS is
/// read right after the return, then put back to a plain value (DF clear).
pub fn iret_to_next(flags: u64, rax: u64, rflags_set: u64) -> IretSeen {
    iret_to_next_rpl(0, flags, rax, rflags_set)
}

/// [`iret_to_next`] with the context's CS at privilege level `rpl` (0 to 2: still kernel
/// mode, which only RPL 3 leaves).
pub fn iret_to_next_rpl(rpl: u64, flags: u64, rax: u64, rflags_set: u64) -> IretSeen {
    const RFLAGS_IF: u64 = 1 << 9;
    let (rax_after, rcx, r11, target, rflags): (u64, u64, u64, u64, u64);
    // SAFETY: builds an iret_context for label 2 with this kernel's own stack pointer
    // and RFLAGS (IF set), in guest kernel mode (CS with RPL `rpl`), and enters the hypercall
    // page's iret stub, which pushes rcx, r11 and rax: the hypervisor returns to label 2
    // with this stack (the guest kernel runs without a red zone: bounces and upcalls
    // push on its stack anyway). Only rax, rcx and r11 change, all three outputs; every
    // other register an upcall handler may use is saved and restored by its entry stub.
    unsafe {
        core::arch::asm!(
            "mov {tmp}, rsp",
            "push {ss}",
            "push {tmp}",
            "push {rflags_asked}",
            "push {cs}",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "push {flags}",
            "mov rcx, 0x1c1c",
            "mov r11, 0x2b2b",
            "jmp {page} + {iret}",
            "2:",
            "lea {target}, [rip + 2b]",
            "pushfq",
            "pop {tmp}",
            "cld",
            "push {plain}",
            "popfq",
            tmp = out(reg) rflags,
            target = out(reg) target,
            flags = in(reg) flags,
            rflags_asked = in(reg) RFLAGS_IF | 2 | rflags_set,
            plain = const RFLAGS_IF | 2,
            ss = const pv_abi::arch_x86_64::FLAT_KERNEL_SS64,
            cs = in(reg) u64::from(FLAT_KERNEL_CS64 & !3) | (rpl & 3),
            page = sym hypercall_page,
            iret = const pv_abi::xen::Hypercall::Iret.number() * 32,
            inout("rax") rax => rax_after,
            out("rcx") rcx,
            out("r11") r11,
        );
    }
    IretSeen {
        rax: rax_after,
        rcx,
        r11,
        target,
        rflags,
    }
}
