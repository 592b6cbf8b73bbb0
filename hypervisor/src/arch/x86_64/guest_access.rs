//! Copies between hypervisor memory and guest virtual memory through the guest's page
//! tables loaded on this CPU, the way the hypercall paths reach guest buffers when they
//! can (`DirectMap::read_virtual`/`write_virtual`): the MMU walks the guest's tables,
//! whose every entry the hypervisor validated, so a copy reaches only what the guest
//! may map, and a page fault on a guest address becomes a failed copy, not a crash.
//!
//! A read of a small structure (a hypercall's request: the hot paths) is one block of
//! inline loads, each with an entry in the exception table: when one faults, `ring0_pf`
//! in `entry.S` finds the faulting instruction in the table and resumes at its fix-up,
//! which records the fault and goes on after the block. The frames of the lanes
//! (`machine/lanes.rs`) are blocks too: a 72-byte `iret_context` is read by one block of
//! nine loads and a bounce frame of seven or eight words written by one block of
//! stores, so that after inlining the words stay in registers on both sides. Every
//! other copy calls `hv_guest_copy` (string moves, with table entries of their own): for
//! lengths known only at run time and for the rarer frames (failsafe bounces), its
//! `rep movsq` costs fewer instructions than a load and a store per word.
//!
//! Every copy runs between `stac` and `clac`, written as the bare instructions and
//! recorded as SMAP sites (`.hv_smap_sites`): where the CPU has no SMAP the boot turns
//! them into nops (`patch.rs`), as Xen's and Linux's alternatives do, so a block costs
//! the same two instructions around its accesses either way and never tests a flag.

use core::arch::asm;

unsafe extern "C" {
    fn hv_guest_copy(dst: *mut u8, src: *const u8, len: usize) -> usize;
}

/// One block of guest loads (`$insn`, each writing its operand `$v` from `[{src} + k]`)
/// as one `asm!` ([`guarded_block`]): `(whether none faulted, [the values])`; after a
/// fault the values are meaningless.
macro_rules! guest_loads {
    ($src:expr, $($v:ident : $insn:expr),+) => {{
        let mut faulted = 0u8;
        $( let $v: u64; )+
        // SAFETY: the caller checked the guest range at `$src`; every access in the block
        // reads it, and a fault lands in a fix-up that only sets `faulted` and jumps to
        // the block's `clac`. `stac`/`clac` are nops unless the CPU has SMAP (patch.rs),
        // so they exist where they run.
        asm!(
            guarded_block!($($insn),+),
            src = in(reg) $src,
            faulted = inout(reg_byte) faulted,
            $( $v = out(reg) $v, )+
            options(nostack, readonly),
        );
        (faulted == 0, [$($v),+])
    }};
}

/// The template of a block of guest accesses (`$insn`, each with an exception-table
/// entry), shared by [`guest_loads`] and [`guest_store`]: the accesses run inline between
/// `stac` and `clac`, two SMAP sites ([`smap_site`]: nops where the CPU has no SMAP). A
/// fault resumes at an out-of-line fix-up that sets operand `{faulted}` and jumps back to
/// the `clac`, which clears the RFLAGS.AC that `ring0_pf`'s `iretq` restored. The table
/// entry is two offsets relative to themselves (the instruction's and the fix-up's), as
/// `ring0_pf` reads them. Labels avoid 0/1-only numbers, which Intel syntax could read as
/// binary literals.
macro_rules! guarded_block {
    ($($insn:expr),+) => {
        concat!(
            smap_site!("stac"), "\n",
            $( "2: ", $insn, "\n", extable_entry!("2b", "7f"), "\n", )+
            "4: ", smap_site!("clac"), "\n",
            ".pushsection .text.hv_fixup, \"ax\"\n",
            "7: mov {faulted}, 1\n",
            "jmp 4b\n",
            ".popsection"
        )
    };
}

/// `$insn` (`stac` or `clac`) as a SMAP site, as `entry.S`'s `SMAP_SITE`: its address
/// goes in `.hv_smap_sites` (an offset from the entry itself), and the boot overwrites it
/// with a three-byte nop where the CPU has no SMAP (`patch.rs`).
macro_rules! smap_site {
    ($insn:literal) => {
        concat!(
            "9: ",
            $insn,
            "\n",
            ".pushsection .hv_smap_sites, \"a\"\n",
            ".balign 4\n",
            ".long 9b - .\n",
            ".popsection"
        )
    };
}

/// The exception-table entry of the instruction at label `$at`: its fix-up is `$fixup`.
macro_rules! extable_entry {
    ($at:literal, $fixup:literal) => {
        concat!(
            ".pushsection .hv_extable, \"a\"\n",
            ".balign 4\n",
            ".long ",
            $at,
            " - .\n",
            ".long ",
            $fixup,
            " - .\n",
            ".popsection"
        )
    };
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

/// The load of a `u64` or `u32` at byte `$off` of `{src}` into operand `$v`.
macro_rules! load_insn {
    (u64, $v:ident, $off:literal) => {
        concat!("mov {", stringify!($v), "}, qword ptr [{src} + ", $off, "]")
    };
    (u32, $v:ident, $off:literal) => {
        concat!(
            "mov {",
            stringify!($v),
            ":e}, dword ptr [{src} + ",
            $off,
            "]"
        )
    };
}

/// Reads the words `$v` (each a `u64` or `u32` at byte `$off`) from guest address `$src`
/// by one [`guest_loads`] block and stores them at the same offsets of `$dst`: whether
/// none faulted.
macro_rules! read_block {
    ($src:expr, $dst:expr, $($v:ident: $ty:ident @ $off:literal),+) => {{
        let (ok, [$($v),+]) = guest_loads!($src, $($v: load_insn!($ty, $v, $off)),+);
        $( $dst.add($off).cast::<$ty>().write_unaligned($v as $ty); )+
        ok
    }};
}

/// Copies one `T` from guest virtual address `src` to `dst` (as [`read`]): a size known
/// when compiling, so up to 32 bytes in whole four-byte units it is one block
/// of inline loads (a request of 24 bytes: three), not a call; other sizes call
/// `hv_guest_copy`.
///
/// # Safety
/// As [`read`] with `len` the size of `T`.
#[inline(always)]
pub unsafe fn read_obj<T>(dst: *mut T, src: *const T) -> bool {
    let (dst, src) = (dst.cast::<u8>(), src.cast::<u8>());
    // SAFETY: in every arm, the loads cover exactly `size_of::<T>()` bytes from `src`, the
    // range the caller checked, and the stores the same bytes of `dst`; unaligned
    // accesses are fine on x86.
    unsafe {
        match size_of::<T>() {
            4 => read_block!(src, dst, a: u32 @ 0),
            8 => read_block!(src, dst, a: u64 @ 0),
            12 => read_block!(src, dst, a: u64 @ 0, b: u32 @ 8),
            16 => read_block!(src, dst, a: u64 @ 0, b: u64 @ 8),
            20 => read_block!(src, dst, a: u64 @ 0, b: u64 @ 8, c: u32 @ 16),
            24 => read_block!(src, dst, a: u64 @ 0, b: u64 @ 8, c: u64 @ 16),
            28 => read_block!(src, dst, a: u64 @ 0, b: u64 @ 8, c: u64 @ 16, d: u32 @ 24),
            32 => read_block!(src, dst, a: u64 @ 0, b: u64 @ 8, c: u64 @ 16, d: u64 @ 24),
            // An `iret_context` (the iret lane's every call): one block of loads, which
            // after inlining leaves the words in registers, not in a copy.
            72 => read_block!(
                src, dst, a: u64 @ 0, b: u64 @ 8, c: u64 @ 16, d: u64 @ 24, e: u64 @ 32,
                f: u64 @ 40, g: u64 @ 48, h: u64 @ 56, i: u64 @ 64
            ),
            len => read(dst, src, len),
        }
    }
}

/// One guest store (`$insn`, writing operand `value` to `[{dst}]`) as one `asm!`
/// ([`guarded_block`]), as [`guest_loads`] for loads: whether it did not fault. A store into a read-only guest
/// mapping faults too (CR0.WP), and fails the same way.
macro_rules! guest_store {
    ($dst:expr, $value:expr, $insn:literal) => {{
        let mut faulted = 0u8;
        // SAFETY: the caller checked the guest range at `$dst`; the store writes only
        // there, and a fault lands in a fix-up that only sets `faulted` and jumps to the
        // block's `clac`. `stac`/`clac` are nops unless the CPU has SMAP (patch.rs).
        asm!(
            guarded_block!($insn),
            dst = in(reg) $dst,
            value = in(reg) $value,
            faulted = inout(reg_byte) faulted,
            options(nostack),
        );
        faulted == 0
    }};
}

/// Copies `len` bytes from hypervisor memory `src` to guest virtual address `dst`;
/// whether every byte was written (`false`: a page fault, or a read-only mapping under
/// CR0.WP, stopped it, and some bytes may have been written): `hv_guest_copy`, whose
/// string moves cost less than a loop of inline stores for the lengths known only at
/// run time (bounce frames, buffers).
///
/// # Safety
/// As [`read`], with the guest range at `dst` and `src` valid for `len` bytes of reads.
#[inline(always)]
pub unsafe fn write(dst: *mut u8, src: *const u8, len: usize) -> bool {
    // SAFETY: as in `read`.
    unsafe { hv_guest_copy(dst, src, len) == 0 }
}

/// Stores the words `$v` (each a `u64` at byte `$off` of `$src`) to guest address
/// `$dst` as one guarded block ([`guarded_block`]): whether none faulted.
macro_rules! write_block {
    ($dst:expr, $src:expr, $($v:ident @ $off:literal),+) => {{
        let mut faulted = 0u8;
        $( let $v = $src.add($off).cast::<u64>().read_unaligned(); )+
        // SAFETY: the caller checked the guest range at `$dst`; the stores write only
        // there (the `size_of::<T>()` bytes at `$dst`), and a fault lands in a fix-up
        // that only sets `faulted` and jumps to the block's `clac`. `stac`/`clac` are
        // nops unless the CPU has SMAP (patch.rs).
        asm!(
            guarded_block!($(concat!("mov qword ptr [{dst} + ", $off, "], {", stringify!($v), "}")),+),
            dst = in(reg) $dst,
            faulted = inout(reg_byte) faulted,
            $( $v = in(reg) $v, )+
            options(nostack),
        );
        faulted == 0
    }};
}

/// Copies one `T` from `src` to guest virtual address `dst` (as [`write`]): a size known
/// when compiling, so a word (a hypercall's result or `done` count) is one inline store,
/// a bounce frame (seven or eight words) one block of them, anything else
/// `hv_guest_copy`.
///
/// # Safety
/// As [`write`] with `len` the size of `T`.
#[inline(always)]
pub unsafe fn write_obj<T>(dst: *mut T, src: *const T) -> bool {
    let (dst, src) = (dst.cast::<u8>(), src.cast::<u8>());
    // SAFETY: as in `read`; the stores write exactly the `size_of::<T>()` bytes at `dst`,
    // read from `src` (unaligned accesses are fine on x86).
    unsafe {
        match size_of::<T>() {
            8 => {
                let value = src.cast::<u64>().read_unaligned();
                guest_store!(dst, value, "mov qword ptr [{dst}], {value}")
            }
            4 => {
                let value = src.cast::<u32>().read_unaligned();
                guest_store!(dst, value, "mov dword ptr [{dst}], {value:e}")
            }
            56 => write_block!(dst, src, a @ 0, b @ 8, c @ 16, d @ 24, e @ 32, f @ 40, g @ 48),
            64 => write_block!(
                dst, src, a @ 0, b @ 8, c @ 16, d @ 24, e @ 32, f @ 40, g @ 48, h @ 56
            ),
            len => write(dst, src, len),
        }
    }
}
