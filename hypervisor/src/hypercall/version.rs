//! `xen_version`: who we are, in Xen's terms. We implement the Xen 4.17 interface, so we
//! report version 4.17 and tell ourselves apart by the extraversion.

use super::Context;
use crate::mm::PhysMem;
use pv_abi::arch_x86_64::HYPERVISOR_VIRT_START;
use pv_abi::errno::Errno;
use pv_abi::features::{XENFEAT_DOM0, XENFEAT_MMU_PT_UPDATE_PRESERVE_AD, XENFEAT_NR_SUBMAPS};
use pv_abi::version::*;
use zerocopy::FromZeros;

/// Major and minor version of the interface we implement.
pub const VERSION: (u64, u64) = (4, 17);
/// Our extraversion: the interface's ".0" plus our name.
pub const EXTRAVERSION: &[u8] = b".0-pvhv";
/// The one guest type we run.
pub const CAPABILITIES: &[u8] = b"xen-3.0-x86_64";

fn padded<const N: usize>(text: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    let n = text.len().min(N - 1);
    out[..n].copy_from_slice(&text[..n]);
    out
}

/// The XENFEAT_* bitmap word `index` for the calling domain. Features are advertised
/// only once they are implemented.
fn feature_word<M: PhysMem>(ctx: &Context<'_, M>, index: u32) -> u32 {
    let mut word = 0;
    if index == 0 {
        word |= 1 << XENFEAT_MMU_PT_UPDATE_PRESERVE_AD;
    }
    // Never XENFEAT_writable_page_tables, which says a guest need not write-protect its
    // page tables: Xen gives it only to translated guests. A PV guest must keep its
    // tables read-only even with the writable-page-table assist on (xen.h: "Guest must
    // continue to remove all writable mappings of PTEs"); the assist only emulates its
    // stores into them.
    if index == 0 && ctx.domain.privileged {
        word |= 1 << XENFEAT_DOM0;
    }
    word
}

/// The answer to the sub-commands that need nothing but the command (no guest memory,
/// no domain state): `XENVER_version`, the "null hypercall" a PV kernel issues to have a
/// pending upcall delivered after unmasking events. The hypercall fast path answers it
/// before building any context; `None` for the rest.
pub fn register_only(cmd: u64) -> Option<u64> {
    (cmd == u64::from(XENVER_VERSION)).then_some(VERSION_WORD)
}

/// `XENVER_version`'s answer: major in the upper half, minor in the lower (also the
/// express null hypercall's, `entry.S`).
pub const VERSION_WORD: u64 = (VERSION.0 << 16) | VERSION.1;

pub(super) fn xen_version<M: PhysMem>(
    ctx: &mut Context<'_, M>,
    cmd: u64,
    arg: u64,
) -> Result<u64, Errno> {
    if let Some(value) = register_only(cmd) {
        return Ok(value);
    }
    let guest = &ctx.guest;
    match u32::try_from(cmd).map_err(|_| Errno::ENOSYS)? {
        XENVER_PAGESIZE => Ok(crate::mm::PAGE_SIZE),
        XENVER_EXTRAVERSION => {
            guest.write_obj(arg, &padded::<XEN_EXTRAVERSION_LEN>(EXTRAVERSION))?;
            Ok(0)
        }
        XENVER_COMPILE_INFO => {
            let mut info = XenCompileInfo::new_zeroed();
            info.compiler = padded(b"rustc 1.95.0");
            info.compile_by = padded(b"pvhv");
            info.compile_domain = padded(b"local");
            info.compile_date = padded(b"unknown");
            guest.write_obj(arg, &info)?;
            Ok(0)
        }
        XENVER_CAPABILITIES => {
            guest.write_obj(arg, &padded::<XEN_CAPABILITIES_INFO_LEN>(CAPABILITIES))?;
            Ok(0)
        }
        XENVER_CHANGESET => {
            guest.write_obj(arg, &padded::<XEN_CHANGESET_INFO_LEN>(b"unavailable"))?;
            Ok(0)
        }
        XENVER_PLATFORM_PARAMETERS => {
            let params = XenPlatformParameters {
                virt_start: HYPERVISOR_VIRT_START,
            };
            guest.write_obj(arg, &params)?;
            Ok(0)
        }
        XENVER_GET_FEATURES => {
            let mut info: XenFeatureInfo = guest.read_obj(arg)?;
            if info.submap_idx >= XENFEAT_NR_SUBMAPS {
                return Err(Errno::EINVAL);
            }
            info.submap = feature_word(ctx, info.submap_idx);
            ctx.guest.write_obj(arg, &info)?;
            Ok(0)
        }
        XENVER_GUEST_HANDLE => {
            guest.write_obj(arg, &[0u8; 16])?;
            Ok(0)
        }
        XENVER_COMMANDLINE => {
            if !ctx.domain.privileged {
                return Err(Errno::EPERM);
            }
            let line = padded::<1024>(ctx.hypervisor_cmdline.as_bytes());
            guest.write_obj(arg, &line)?;
            Ok(0)
        }
        XENVER_BUILD_ID => Err(Errno::ENODATA),
        _ => Err(Errno::ENOSYS),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{BUF, World};
    use super::*;

    #[test]
    fn reports_the_interface_we_implement() {
        let mut world = World::new();
        assert_eq!(world.call(17, [0, 0, 0, 0, 0]).0, 0x4_0011);
        assert_eq!(world.call(17, [3, BUF, 0, 0, 0]).0, 0);
        assert_eq!(&world.get(0, 15), b"xen-3.0-x86_64\0");
        assert_eq!(world.call(17, [5, BUF, 0, 0, 0]).0, 0);
        assert_eq!(world.get(0, 8), HYPERVISOR_VIRT_START.to_le_bytes());
        assert_eq!(world.call(17, [7, 0, 0, 0, 0]).0, 4096);
        assert_eq!(world.call(17, [1, BUF, 0, 0, 0]).0, 0);
        assert_eq!(&world.get(0, 8), b".0-pvhv\0");
    }

    #[test]
    fn features_and_privilege() {
        let mut world = World::new();
        world.put(0, &[0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(world.call(17, [6, BUF, 0, 0, 0]).0, 0);
        assert_eq!(
            world.get(4, 4),
            (1u32 << XENFEAT_MMU_PT_UPDATE_PRESERVE_AD).to_le_bytes(),
            "a domU gets only what is implemented"
        );
        world.domain.vm_assist = 1 << pv_abi::xen::VMASST_TYPE_WRITABLE_PAGETABLES;
        assert_eq!(world.call(17, [6, BUF, 0, 0, 0]).0, 0);
        let word = u32::from_le_bytes(world.get(4, 4).try_into().unwrap());
        assert_eq!(
            word & 1,
            0,
            "never writable_page_tables (PV: tables stay read-only)"
        );
        world.domain.vm_assist = 0;
        world.domain.privileged = true;
        assert_eq!(world.call(17, [6, BUF, 0, 0, 0]).0, 0);
        assert_eq!(
            world.get(4, 4),
            ((1u32 << XENFEAT_DOM0) | (1 << XENFEAT_MMU_PT_UPDATE_PRESERVE_AD)).to_le_bytes()
        );
        world.put(0, &5u32.to_le_bytes());
        assert_eq!(world.call(17, [6, BUF, 0, 0, 0]).0, -22, "no such submap");
        world.domain.privileged = false;
        assert_eq!(
            world.call(17, [9, BUF, 0, 0, 0]).0,
            -1,
            "command line is privileged"
        );
    }

    #[test]
    fn bad_pointers_and_commands() {
        let mut world = World::new();
        assert_eq!(world.call(17, [3, 0, 0, 0, 0]).0, -14);
        assert_eq!(
            world.call(17, [3, BUF + 8000, 0, 0, 0]).0,
            -14,
            "crosses into unmapped"
        );
        assert_eq!(world.call(17, [99, BUF, 0, 0, 0]).0, -38);
        assert_eq!(world.call(17, [1 << 40, BUF, 0, 0, 0]).0, -38);
    }
}
