//! Domains and their virtual CPUs: what the hypervisor remembers about each guest.

use crate::frames::DomId;
use crate::mm::{Mfn, PAGE_SHIFT};
use crate::regs::TrapFrame;
use pv_abi::arch_x86_64::TrapInfo;

/// Longest domain name (bytes), as in the boot image.
pub const MAX_NAME: usize = 31;
/// Longest console line the hypervisor buffers before forcing it out.
pub const CONSOLE_LINE: usize = 160;

/// The FXSAVE image of a vCPU's x87/SSE state (512 bytes, 16-byte aligned).
#[repr(C, align(16))]
#[derive(Clone, Copy)]
pub struct FpuState(pub [u8; 512]);

impl FpuState {
    /// The state a CPU has after `fninit` with SSE defaults: FCW 0x37f, MXCSR 0x1f80.
    pub fn initial() -> FpuState {
        let mut area = [0u8; 512];
        area[0..2].copy_from_slice(&0x037fu16.to_le_bytes());
        area[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
        FpuState(area)
    }
}

impl core::fmt::Debug for FpuState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("FpuState { .. }")
    }
}

/// The guest entry points registered by set_callbacks / callback_op.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Callbacks {
    // Every address here, and in `Vcpu::trap_table`, is 0 (none) or a valid guest entry
    // point (canonical, outside the hypervisor's range): the hypercalls that set them
    // (`set_trap_table`, `set_callbacks`, `callback_op`, `VCPUOP_initialise`) refuse
    // anything else, and nothing else writes them. The express paths of `entry.S` rely
    // on it (they test only for 0).
    /// Event upcall.
    pub event: u64,
    /// Failsafe callback (a fault while loading guest state).
    pub failsafe: u64,
    /// `syscall` from guest user mode.
    pub syscall: u64,
    /// Whether events are masked on entry to the syscall callback.
    pub syscall_masks_events: bool,
}

/// The guest's segment bases (FS, and GS for each of its two modes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SegmentBases {
    /// FS base (shared by both modes, as in Xen).
    pub fs: u64,
    /// GS base while in guest kernel mode.
    pub gs_kernel: u64,
    /// GS base while in guest user mode.
    pub gs_user: u64,
}

/// One virtual CPU.
#[derive(Clone, Debug)]
pub struct Vcpu {
    /// Registers while the vCPU is not running.
    pub regs: TrapFrame,
    /// x87/SSE state while the vCPU is not running (saved on every entry).
    pub fpu: FpuState,
    /// The guest kernel's top-level page table (its CR3 in kernel mode).
    pub kernel_root: Mfn,
    /// The guest user top-level page table (NEW_USER_BASEPTR), used in user mode, as the
    /// CR3 value that loads it (0: none): one word, which the express paths of `entry.S`
    /// read. Reached through [`user_root`](Self::user_root) and
    /// [`set_user_root`](Self::set_user_root).
    user_root_cr3: u64,
    /// Whether the vCPU is in (virtual) guest kernel mode; both modes run in ring 3.
    pub kernel_mode: bool,
    /// Guest kernel stack for entries from user mode (stack_switch). Reached through
    /// [`kernel_sp`](Self::kernel_sp) and [`set_kernel_sp`](Self::set_kernel_sp).
    kernel_sp: u64,
    /// [`kernel_frame_top`] of `kernel_sp`, kept with it for the express paths of
    /// `entry.S`, which then need no range test of their own.
    kernel_frame_top: u64,
    /// Guest kernel stack segment (stack_switch).
    pub kernel_ss: u64,
    /// Segment bases.
    pub segments: SegmentBases,
    /// Virtual IOPL (physdev set_iopl): port I/O is allowed when >= 1 in kernel mode.
    pub iopl: u8,
    /// The guest's I/O permission bitmap (physdev set_iobitmap): its guest address and
    /// the number of ports it covers (0: none). A clear bit allows the port, as in a TSS.
    pub io_bitmap: (u64, u32),
    /// Virtual CR0.TS (fpu_taskswitch): the next FPU use raises #NM in the guest.
    pub virtual_ts: bool,
    /// Virtual CR4.PGE cleared by a trapped `mov` to CR4 (a kernel's way to flush
    /// global TLB entries is to clear it and set it again): reads of CR4 show it clear
    /// until it is set again. The real PGE does not change (the write flushes).
    pub virtual_pge_off: bool,
    /// Its data segment selectors `[ds, es, fs, gs]` while it is off the CPU: saved when
    /// it goes off, loaded when it comes back, so that no selector a guest loaded is
    /// seen by another (as Xen's `save_segments`/`load_segments`; found by review). Only
    /// ever values the CPU loaded for it (null at first).
    pub selectors: [u16; 4],
    /// The virtual trap table from set_trap_table, indexed by vector (every address 0 or
    /// a valid entry point: see [`Callbacks`]).
    pub trap_table: [TrapInfo; 256],
    /// Registered callbacks.
    pub callbacks: Callbacks,
    /// Its number within the domain (0 for the boot vCPU).
    pub id: u32,
    /// Machine address of its `vcpu_info` if the guest moved it there
    /// (VCPUOP_register_vcpu_info); otherwise slot `id` of the shared-info page.
    pub vcpu_info: Option<u64>,
    /// Always [`Present::Yes`]: see [`Present`].
    #[expect(dead_code, reason = "never read: it is there for its niche")]
    present: Present,
}

/// A word that is 1 in every [`Vcpu`], so that `None` of an `Option<Vcpu>` (and of an
/// `Option<Domain>`, which holds one) is this word 0 and the rest of it may be anything.
///
/// Without it the compiler puts `None` in the tag of `vcpu_info` (an `Option<u64>`,
/// whose tag it widens to a word) as the value 2, and a single non-zero byte puts a
/// whole `static` in the image's `.data`: the machine's state, 16 empty domain slots
/// and the parked vCPUs of 16 event runtimes (648 KB of zeros), would be loaded from
/// the file instead of zeroed at boot as `.bss`. The compiler gives an `Option` the
/// largest niche of its payload, and this field's (2^64 - 1 invalid values) is larger
/// than any other (that tag's is 2^64 - 2, a `bool`'s 254); it takes the invalid value
/// nearest to zero, so `None` is 0. xtask's image check (`image_check.rs`) fails if the
/// machine state leaves `.bss`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
enum Present {
    /// The only value.
    Yes = 1,
}

impl Vcpu {
    /// Where [`user_root`](Self::user_root) keeps its CR3 value (0: none), for the express
    /// paths of `entry.S`.
    pub const USER_ROOT_CR3_OFFSET: usize = core::mem::offset_of!(Vcpu, user_root_cr3);

    /// A vCPU that has not run yet: its registers and kernel page table, in guest kernel
    /// mode, with reset values everywhere else (initial FPU state, empty trap table, no
    /// callbacks).
    pub fn new(regs: TrapFrame, kernel_root: Mfn) -> Vcpu {
        Vcpu {
            regs,
            fpu: FpuState::initial(),
            kernel_root,
            user_root_cr3: 0,
            kernel_mode: true,
            kernel_sp: 0,
            kernel_frame_top: 0,
            kernel_ss: 0,
            segments: SegmentBases::default(),
            iopl: 0,
            io_bitmap: (0, 0),
            virtual_ts: false,
            virtual_pge_off: false,
            selectors: [0; 4],
            trap_table: [TrapInfo::default(); 256],
            callbacks: Callbacks::default(),
            id: 0,
            vcpu_info: None,
            present: Present::Yes,
        }
    }

    /// Where [`kernel_frame_top`] keeps its value, for `entry.S`.
    pub const KERNEL_FRAME_TOP_OFFSET: usize = core::mem::offset_of!(Vcpu, kernel_frame_top);

    /// The guest kernel's stack for entries from user mode.
    #[inline(always)]
    pub fn kernel_sp(&self) -> u64 {
        self.kernel_sp
    }

    /// Sets the guest kernel's stack for entries from user mode (`stack_switch`, a new
    /// context), and with it whether bounce frames fit below it.
    pub fn set_kernel_sp(&mut self, sp: u64) {
        self.kernel_sp = sp;
        self.kernel_frame_top = kernel_frame_top(sp);
    }

    /// The guest user top-level page table, if it has one.
    #[inline(always)]
    pub fn user_root(&self) -> Option<Mfn> {
        (self.user_root_cr3 != 0).then_some(Mfn(self.user_root_cr3 >> PAGE_SHIFT))
    }

    /// Sets the guest user top-level page table; returns the one it replaces. Frame 0 is
    /// never a guest's (the frame table keeps low memory), so its CR3 value 0 can mean
    /// "none".
    pub fn set_user_root(&mut self, root: Option<Mfn>) -> Option<Mfn> {
        let old = self.user_root();
        self.user_root_cr3 = match root {
            Some(mfn) => {
                assert!(mfn.0 != 0, "frame 0 as a user page table");
                mfn.0 << PAGE_SHIFT
            }
            None => 0,
        };
        old
    }

    /// Machine address of this vCPU's `vcpu_info`, given its domain's shared-info page.
    pub fn vcpu_info_addr(&self, shared_info: Mfn) -> u64 {
        self.vcpu_info
            .unwrap_or_else(|| crate::vcpu_info::shared_slot(shared_info, self.id))
    }
}

/// Why a domain stopped running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainState {
    /// Runnable.
    Running,
    /// It asked to shut down (SCHEDOP_shutdown) with this `SHUTDOWN_*` reason.
    ShutDown {
        /// The `SHUTDOWN_*` reason.
        reason: u32,
    },
    /// The hypervisor stopped it (a fault it could not handle).
    Crashed,
}

/// A guest domain.
#[derive(Clone, Debug)]
pub struct Domain {
    /// Its identifier (1.. for guests built from the boot image).
    pub id: DomId,
    /// Its name, from the manifest.
    pub name: heapless::String<MAX_NAME>,
    /// Running or why not.
    pub state: DomainState,
    /// May use privileged operations (like Xen's dom0).
    pub privileged: bool,
    /// Pages it holds.
    pub nr_pages: u64,
    /// Pages it may hold.
    pub max_pages: u64,
    /// Its shared-info page.
    pub shared_info: Mfn,
    /// Bitmap of enabled `VMASST_TYPE_*` assists.
    pub vm_assist: u64,
    /// The exit code it reported (our extension; see `docs/abi.md`).
    pub exit_code: Option<u64>,
    /// Console output not yet ended by a newline.
    pub console_line: heapless::Vec<u8, CONSOLE_LINE>,
    /// Its one vCPU (more come with the scheduling work).
    pub vcpu: Vcpu,
}

impl Domain {
    /// Whether it can still run.
    pub fn is_running(&self) -> bool {
        self.state == DomainState::Running
    }

    /// Whether it ended the way a clean run ends: poweroff with exit code 0 (or none).
    pub fn ended_cleanly(&self) -> bool {
        self.state
            == DomainState::ShutDown {
                reason: pv_abi::sched::SHUTDOWN_POWEROFF,
            }
            && self.exit_code.unwrap_or(0) == 0
    }
}

/// The largest bounce frame the express paths write below a guest kernel stack: eight
/// words (an exception with an error code; a system call's has seven).
pub const MAX_EXPRESS_FRAME: u64 = 64;

/// Where a bounce frame of seven or eight words goes below the guest kernel stack
/// pointer `sp`: `sp` rounded down to 16 bytes (as `push_frame` aligns it), if a frame
/// of either size right below it lies inside one page of the guest's part of the
/// address space (`guestmem::mmu_may_copy`), and 0 if not. One answer serves both
/// sizes: the top is 16-byte aligned, so 56 bytes fit below it in its page exactly when
/// 64 do, and wrap exactly when 64 do.
pub fn kernel_frame_top(sp: u64) -> u64 {
    let top = sp & !15;
    match top.checked_sub(MAX_EXPRESS_FRAME) {
        Some(frame)
            if frame >> PAGE_SHIFT == (top - 1) >> PAGE_SHIFT
                && crate::guestmem::mmu_may_copy(frame, MAX_EXPRESS_FRAME as usize) =>
        {
            top
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guestmem::{GUEST_UPPER_START, LOWER_HALF_END, mmu_may_copy};
    use proptest::prelude::*;

    /// What the express paths used to test for each frame, as `entry.S`'s
    /// `BOUNCE_FRAME` did: the frame of `size` bytes below `sp` rounded down to 16, with
    /// no wrap, inside one page, in the guest's part.
    fn frame_fits(sp: u64, size: u64) -> bool {
        let top = sp & !15;
        top.checked_sub(size).is_some_and(|frame| {
            (frame & 0xfff) <= 4096 - size && mmu_may_copy(frame, size as usize)
        })
    }

    fn agrees(sp: u64) {
        let top = kernel_frame_top(sp);
        for size in [56, 64] {
            assert_eq!(top != 0, frame_fits(sp, size), "sp {sp:#x}, {size} bytes");
        }
        if top != 0 {
            assert_eq!(top, sp & !15);
        }
    }

    #[test]
    fn the_kernel_frame_top_says_what_both_frame_tests_say_at_the_edges() {
        let edges = [
            0,
            LOWER_HALF_END,
            GUEST_UPPER_START,
            GUEST_UPPER_START - 4096,
            0x40_0000,
            !0xfff,
        ];
        for edge in edges {
            for delta in (0..=160u64).step_by(8) {
                agrees(edge.wrapping_add(delta));
                agrees(edge.wrapping_sub(delta));
            }
        }
        assert_eq!(
            kernel_frame_top(0xffff_ffff_8010_0008),
            0xffff_ffff_8010_0000
        );
        assert_eq!(
            kernel_frame_top(0xffff_ffff_8010_0030),
            0,
            "48 bytes into a page"
        );
        assert_eq!(
            kernel_frame_top(0xffff_8300_0010_0000),
            0,
            "the hypervisor's"
        );
    }

    proptest! {
        #[test]
        fn the_kernel_frame_top_says_what_both_frame_tests_say(sp: u64, page_offset in 0u64..4096) {
            agrees(sp);
            agrees((sp & !0xfff) | page_offset);
        }
    }

    #[test]
    fn setting_the_kernel_stack_sets_its_frame_top() {
        let mut vcpu = Vcpu::new(TrapFrame::default(), Mfn(1));
        vcpu.set_kernel_sp(0xffff_ffff_8010_0008);
        assert_eq!(vcpu.kernel_sp(), 0xffff_ffff_8010_0008);
        assert_eq!(vcpu.kernel_frame_top, 0xffff_ffff_8010_0000);
        vcpu.set_kernel_sp(0x10);
        assert_eq!(vcpu.kernel_frame_top, 0, "a frame would wrap");
    }
}
