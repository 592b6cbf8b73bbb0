//! The kernel's privileged operations, each in two flavours chosen at boot
//! (`mode=pv`, the default, or `mode=trap` on the command line):
//!
//! | operation | paravirtual | trap-and-emulate |
//! | --- | --- | --- |
//! | mask / unmask events | write `vcpu_info.evtchn_upcall_mask` | `cli` / `sti` |
//! | switch address space | `mmuext_op(NEW_BASEPTR, NEW_USER_BASEPTR)` | `mov cr3` (+ the user root by hypercall: no instruction names it) |
//! | write an L1 entry | `mmu_update` | a plain store into the (read-only) table |
//!
//! Higher-level entries always go through `mmu_update`: the writable-page-table assist
//! emulates stores into L1 tables only (as on Xen). On Xen, `cli`/`sti` need virtual
//! IOPL >= 1 and are then no-ops (Xen does not map them to the event mask); ours maps
//! them to the mask, as an unmodified kernel means them.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use pv_abi::guest;
use pv_abi::xen::{
    DOMID_SELF, MmuUpdate, MmuextOp, SharedInfo, UVMF_INVLPG, UVMF_LOCAL, VMASST_CMD_ENABLE,
    VMASST_TYPE_WRITABLE_PAGETABLES, VcpuInfo,
};

/// Which flavour the kernel uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Hypercalls and shared memory.
    Paravirt,
    /// The instructions an unmodified kernel would use, trapped and emulated.
    Trap,
}

static TRAP_MODE: AtomicBool = AtomicBool::new(false);
static SHARED_INFO: AtomicU64 = AtomicU64::new(0);
static WINDOW: AtomicU64 = AtomicU64::new(0);
static WINDOW_MFN: AtomicU64 = AtomicU64::new(0);

/// The mode in force.
pub fn mode() -> Mode {
    if TRAP_MODE.load(Ordering::Relaxed) {
        Mode::Trap
    } else {
        Mode::Paravirt
    }
}

/// Chooses the mode. `shared_info` is where the shared-info page is mapped; `window` a
/// free kernel page used to map one page table read-only for trap-mode stores.
pub fn init(mode: Mode, shared_info: u64, window: u64) -> Result<(), &'static str> {
    SHARED_INFO.store(shared_info, Ordering::Relaxed);
    WINDOW.store(window, Ordering::Relaxed);
    if mode == Mode::Trap {
        guest::vm_assist(VMASST_CMD_ENABLE, VMASST_TYPE_WRITABLE_PAGETABLES)
            .map_err(|_| "writable page tables refused")?;
        // Xen reflects cli/sti as #GP below virtual IOPL 1; ours ignores the IOPL for them.
        let _ = guest::physdev_set_iopl(1);
    }
    TRAP_MODE.store(mode == Mode::Trap, Ordering::Relaxed);
    Ok(())
}

fn upcall_mask_ptr() -> *mut u8 {
    use core::mem::offset_of;
    let at = offset_of!(SharedInfo, vcpu_info) + offset_of!(VcpuInfo, evtchn_upcall_mask);
    (SHARED_INFO.load(Ordering::Relaxed) + at as u64) as *mut u8
}

fn upcall_pending_ptr() -> *mut u8 {
    use core::mem::offset_of;
    let at = offset_of!(SharedInfo, vcpu_info) + offset_of!(VcpuInfo, evtchn_upcall_pending);
    (SHARED_INFO.load(Ordering::Relaxed) + at as u64) as *mut u8
}

/// Masks event delivery (the kernel's "interrupts off").
pub fn irq_disable() {
    match mode() {
        // SAFETY: shared_info is mapped writable for the kernel's life (process::init).
        Mode::Paravirt => unsafe { upcall_mask_ptr().write_volatile(1) },
        // SAFETY: cli is emulated by the hypervisor (no-op on Xen at IOPL 1).
        Mode::Trap => unsafe { core::arch::asm!("cli") },
    }
}

/// Unmasks event delivery. An upcall that became pending while events were masked is
/// delivered at once: the hypervisor checks on every return to the guest, so any cheap
/// hypercall will do (Linux uses xen_version too).
pub fn irq_enable() {
    match mode() {
        // SAFETY: as in irq_disable.
        Mode::Paravirt => unsafe {
            upcall_mask_ptr().write_volatile(0);
            core::sync::atomic::fence(Ordering::SeqCst);
            if upcall_pending_ptr().read_volatile() != 0 {
                let _ = guest::version();
            }
        },
        // SAFETY: sti is emulated by the hypervisor, which delivers a pending upcall on
        // the way back.
        Mode::Trap => unsafe { core::arch::asm!("sti") },
    }
}

/// Where the shared-info page is mapped (0 before `init`).
pub fn shared_info() -> u64 {
    SHARED_INFO.load(Ordering::Relaxed)
}

/// Whether events are masked, as vcpu_info says.
pub fn irqs_masked() -> bool {
    // SAFETY: as in irq_disable.
    unsafe { upcall_mask_ptr().read_volatile() != 0 }
}

/// Makes `kernel` the kernel page table and `user` (0 for none) the user page table.
pub fn set_roots(kernel: u64, user: u64) -> Result<(), &'static str> {
    match mode() {
        Mode::Paravirt => {
            let ops = [
                MmuextOp::new_baseptr(kernel),
                MmuextOp::new_user_baseptr(user),
            ];
            // SAFETY: callers pass roots that map the kernel like the boot root.
            unsafe { guest::mmuext_op(&ops, DOMID_SELF) }
                .map(|_| ())
                .map_err(|_| "base pointers refused")
        }
        Mode::Trap => {
            // SAFETY: as above; `mov cr3` is emulated as NEW_BASEPTR.
            unsafe { core::arch::asm!("mov cr3, {}", in(reg) kernel << 12) };
            let ops = [MmuextOp::new_user_baseptr(user)];
            // SAFETY: as above.
            unsafe { guest::mmuext_op(&ops, DOMID_SELF) }
                .map(|_| ())
                .map_err(|_| "user base pointer refused")
        }
    }
}

/// Writes entry `index` of L1 table `table` (a machine frame).
pub fn write_l1(table: u64, index: u64, value: u64) -> Result<(), &'static str> {
    match mode() {
        Mode::Paravirt => {
            let req = [MmuUpdate::normal((table << 12) + index * 8, value)];
            // SAFETY: the table belongs to a process being built by the caller.
            unsafe { guest::mmu_update(&req, DOMID_SELF) }
                .map(|_| ())
                .map_err(|_| "mmu_update refused")
        }
        Mode::Trap => {
            let window = WINDOW.load(Ordering::Relaxed);
            if WINDOW_MFN.load(Ordering::Relaxed) != table {
                // SAFETY: the window is a padding page reserved for this; a page table may
                // be mapped read-only.
                unsafe {
                    guest::update_va_mapping(window, (table << 12) | 5, UVMF_INVLPG | UVMF_LOCAL)
                }
                .map_err(|_| "cannot map the table read-only")?;
                WINDOW_MFN.store(table, Ordering::Relaxed);
            }
            // SAFETY: the store faults (the table is read-only) and the hypervisor
            // validates and applies it as mmu_update would.
            unsafe { ((window + index * 8) as *mut u64).write_volatile(value) };
            Ok(())
        }
    }
}

/// Forgets the read-only window onto `table` (before the table's frame is reused).
pub fn forget_table(table: u64) {
    if WINDOW_MFN.load(Ordering::Relaxed) == table {
        // SAFETY: unmapping the reserved window page.
        let _ = unsafe {
            guest::update_va_mapping(WINDOW.load(Ordering::Relaxed), 0, UVMF_INVLPG | UVMF_LOCAL)
        };
        WINDOW_MFN.store(0, Ordering::Relaxed);
    }
}
