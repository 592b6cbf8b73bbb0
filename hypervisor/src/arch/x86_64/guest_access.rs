//! Copies between hypervisor memory and guest virtual memory through the guest's page
//! tables loaded on this CPU, the way the hypercall paths reach guest buffers when they
//! can (`DirectMap::read_virtual`/`write_virtual`): the MMU walks the guest's tables,
//! whose every entry the hypervisor validated, so a copy reaches only what the guest
//! may map, and a page fault on a guest address becomes a failed copy, not a crash.
//!
//! A read of a small structure (a hypercall's request: the hot paths) is a few inline
//! loads, each with an entry in the exception table: when one faults, `ring0_pf` in
//! `entry.S` finds the faulting instruction in the table and resumes at its fix-up,
//! which records the fault and goes on after the load. Every other copy calls
//! `hv_guest_copy` (string moves, with table entries of their own): for lengths known
//! only at run time and for larger frames (the 72-byte iret frame, bounce frames), its
//! `rep movsq` costs fewer instructions than a load and a store per word.
//!
//! With SMAP on, every copy runs between `stac` and `clac` ([`UserAccess`]).

use super::cpu::HV_SMAP;
use core::arch::asm;
use core::sync::atomic::Ordering;

/// Reads of a structure of at most this many bytes are inline loads (eight bytes each,
/// then the tail); longer ones call `hv_guest_copy`. Every request of the fast paths
/// fits (`mmuext_op` 24 bytes, `mmu_update` 16, `EVTCHNOP_send` 4); at 80, the iret
/// frame's nine loads and nine stores cost more than its string move.
const INLINE_MAX: usize = 32;

unsafe extern "C" {
    fn hv_guest_copy(dst: *mut u8, src: *const u8, len: usize) -> usize;
}

/// Copies `len` bytes from guest virtual address `src` to hypervisor memory `dst`;
/// whether every byte arrived (`false`: a page fault stopped the copy, and `dst` holds
/// some bytes or none). For a length known only at run time (instruction bytes, buffers):
/// `hv_guest_copy`'s string moves.
///
/// # Safety
/// The guest range must lie wholly in the guest's slots of the loaded tables
/// (`hypervisor::guestmem::mmu_may_copy`), so that the only fault it can take is a #PF
/// on a guest mapping; `dst` must be valid for `len` bytes of writes.
#[inline(always)]
pub unsafe fn read(dst: *mut u8, src: *const u8, len: usize) -> bool {
    // SAFETY: forwarded to the caller; `hv_guest_copy` touches nothing but the two ranges
    // and faults only into its own fix-ups.
    unsafe { hv_guest_copy(dst, src, len) == 0 }
}

/// Copies one `T` from guest virtual address `src` to `dst` (as [`read`]): a size known
/// when compiling, so up to [`INLINE_MAX`] bytes it is a few inline loads (a request of
/// 24 bytes: three), not a call.
///
/// # Safety
/// As [`read`] with `len` the size of `T`.
#[inline(always)]
pub unsafe fn read_obj<T>(dst: *mut T, src: *const T) -> bool {
    let (dst, src, len) = (dst.cast::<u8>(), src.cast::<u8>(), size_of::<T>());
    if len > INLINE_MAX {
        // SAFETY: forwarded to the caller.
        return unsafe { read(dst, src, len) };
    }
    let _open = UserAccess::open();
    let mut faulted = 0u8;
    let mut at = 0;
    // SAFETY: every step has `at + width <= len`, so its guest side lies in the caller's
    // checked range and its hypervisor side in `dst`; unaligned accesses are fine on x86.
    unsafe {
        while at + 8 <= len {
            let value = load_u64(src.add(at), &mut faulted);
            dst.add(at).cast::<u64>().write_unaligned(value);
            at += 8;
        }
        if at + 4 <= len {
            let value = load_u32(src.add(at), &mut faulted);
            dst.add(at).cast::<u32>().write_unaligned(value);
            at += 4;
        }
        if at + 2 <= len {
            let value = load_u16(src.add(at), &mut faulted);
            dst.add(at).cast::<u16>().write_unaligned(value);
            at += 2;
        }
        if at < len {
            let value = load_u8(src.add(at), &mut faulted);
            dst.add(at).write(value);
        }
    }
    faulted == 0
}

/// Copies `len` bytes from hypervisor memory `src` to guest virtual address `dst`;
/// whether every byte was written (`false`: a page fault, or a read-only mapping under
/// CR0.WP, stopped it, and some bytes may have been written). Always `hv_guest_copy`:
/// writes come with lengths known only at run time (bounce frames, buffers), for which
/// its string moves are cheaper than a loop of inline stores.
///
/// # Safety
/// As [`read`], with the guest range at `dst` and `src` valid for `len` bytes of reads.
#[inline(always)]
pub unsafe fn write(dst: *mut u8, src: *const u8, len: usize) -> bool {
    // SAFETY: as in `read`.
    unsafe { hv_guest_copy(dst, src, len) == 0 }
}

/// Guest pages are user pages: with SMAP on, the hypervisor may touch them only while
/// RFLAGS.AC is set. Open from [`open`](Self::open) until dropped; the flag is read once.
struct UserAccess {
    smap: bool,
}

impl UserAccess {
    #[inline(always)]
    fn open() -> UserAccess {
        let smap = HV_SMAP.load(Ordering::Relaxed) != 0;
        if smap {
            // SAFETY: SMAP is on, so `stac` exists; it only sets RFLAGS.AC. Not `nomem`:
            // the guest accesses must stay after it.
            unsafe { asm!("stac", options(nostack)) };
        }
        UserAccess { smap }
    }
}

impl Drop for UserAccess {
    #[inline(always)]
    fn drop(&mut self) {
        if self.smap {
            // SAFETY: as in `open`; `clac` only clears RFLAGS.AC.
            unsafe { asm!("clac", options(nostack)) };
        }
    }
}

/// One guest access (the instruction at local label 2) with its exception-table entry
/// and fix-up: a fault on it resumes at label 4, which sets `faulted` and continues at
/// label 3, after the access. The entry is two offsets relative to themselves (the
/// instruction's and the fix-up's), as `ring0_pf` reads them.
macro_rules! guest_access {
    ($access:literal) => {
        concat!(
            "2: ",
            $access,
            "\n3:\n",
            ".pushsection .hv_extable, \"a\"\n",
            ".balign 4\n",
            ".long 2b - .\n",
            ".long 4f - .\n",
            ".popsection\n",
            ".pushsection .text.hv_fixup, \"ax\"\n",
            "4: mov {faulted}, 1\n",
            "jmp 3b\n",
            ".popsection"
        )
    };
}

/// Loads from guest memory, one function a width: on a fault, `faulted` becomes 1 and
/// the value is meaningless.
macro_rules! load {
    ($name:ident, $ty:ty, $access:literal) => {
        /// # Safety
        /// `src` is a guest address checked as [`read_obj`] requires.
        #[inline(always)]
        unsafe fn $name(src: *const u8, faulted: &mut u8) -> $ty {
            let value: u64;
            // SAFETY: the caller checked `src`; a fault lands in the fix-up, which only
            // sets `faulted` and jumps back (neither touches the flags).
            unsafe {
                asm!(
                    guest_access!($access),
                    src = in(reg) src,
                    value = out(reg) value,
                    faulted = inout(reg_byte) *faulted,
                    options(nostack, readonly, preserves_flags),
                );
            }
            value as $ty
        }
    };
}

load!(load_u64, u64, "mov {value}, qword ptr [{src}]");
load!(load_u32, u32, "mov {value:e}, dword ptr [{src}]");
load!(load_u16, u16, "movzx {value:e}, word ptr [{src}]");
load!(load_u8, u8, "movzx {value:e}, byte ptr [{src}]");
