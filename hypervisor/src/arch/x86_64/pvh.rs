//! Reads the PVH boot information (`hvm_start_info`) through the direct map.

use super::DIRECTMAP_BASE;

/// Longest hypervisor command line read.
const MAX_CMDLINE: usize = 1024;
const HVM_START_MAGIC: u32 = 0x336e_c578;
/// `XEN_HVM_MEMMAP_TYPE_RAM`.
pub const MEMMAP_TYPE_RAM: u32 = 1;

#[repr(C)]
#[derive(Clone, Copy)]
struct HvmStartInfo {
    magic: u32,
    version: u32,
    flags: u32,
    nr_modules: u32,
    modlist_paddr: u64,
    cmdline_paddr: u64,
    rsdp_paddr: u64,
    memmap_paddr: u64,
    memmap_entries: u32,
    reserved: u32,
}

/// One module handed over by the loader.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Module {
    /// Physical address.
    pub paddr: u64,
    /// Size in bytes.
    pub size: u64,
    cmdline_paddr: u64,
    reserved: u64,
}

/// One entry of the physical memory map.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MemmapEntry {
    /// Start address.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// `XEN_HVM_MEMMAP_TYPE_*`.
    pub kind: u32,
    reserved: u32,
}

/// What the loader told us, checked.
#[derive(Debug)]
pub struct BootInfo {
    /// The command line, if any.
    pub cmdline: &'static str,
    /// The modules (the boot image is the first).
    pub modules: &'static [Module],
    /// The physical memory map.
    pub memmap: &'static [MemmapEntry],
}

fn phys<T>(paddr: u64) -> *const T {
    (DIRECTMAP_BASE + paddr) as *const T
}

/// Parses `hvm_start_info` at `paddr`.
pub fn parse(paddr: u64) -> Result<BootInfo, &'static str> {
    if paddr == 0 || paddr >= super::DIRECTMAP_SIZE {
        return Err("no hvm_start_info");
    }
    // SAFETY: the loader placed the structure in RAM below 4 GiB, which the direct map
    // covers; it is read-only from here on.
    let info = unsafe { phys::<HvmStartInfo>(paddr).read_unaligned() };
    if info.magic != HVM_START_MAGIC {
        return Err("bad hvm_start_info magic");
    }
    if info.version < 1 || info.memmap_entries == 0 {
        return Err("loader passed no memory map (hvm_start_info version < 1)");
    }
    // SAFETY: the loader's tables live in RAM below 4 GiB (direct-mapped) and are never
    // written again; counts come from the same loader.
    let (modules, memmap) = unsafe {
        (
            core::slice::from_raw_parts(
                phys::<Module>(info.modlist_paddr),
                info.nr_modules as usize,
            ),
            core::slice::from_raw_parts(
                phys::<MemmapEntry>(info.memmap_paddr),
                info.memmap_entries as usize,
            ),
        )
    };
    let cmdline = if info.cmdline_paddr == 0 {
        ""
    } else {
        // SAFETY: the loader's command line, in direct-mapped RAM, read up to its NUL or
        // MAX_CMDLINE bytes, whichever comes first.
        let bytes =
            unsafe { core::slice::from_raw_parts(phys::<u8>(info.cmdline_paddr), MAX_CMDLINE) };
        let len = bytes.iter().position(|&b| b == 0).unwrap_or(MAX_CMDLINE);
        core::str::from_utf8(&bytes[..len]).unwrap_or("")
    };
    Ok(BootInfo {
        cmdline,
        modules,
        memmap,
    })
}

/// The bytes of a module.
pub fn module_bytes(module: &Module) -> &'static [u8] {
    // SAFETY: the module lies in RAM the frame allocator never hands out (it is reserved
    // before allocation starts) and below 4 GiB.
    unsafe { core::slice::from_raw_parts(phys::<u8>(module.paddr), module.size as usize) }
}
