//! `physdev_op`: the guest's I/O privilege. Only the port-access sub-ops exist here;
//! interrupt routing belongs to the driver-domain work.
//!
//! `set_iopl` sets the vCPU's virtual IOPL and `set_iobitmap` registers a guest-memory
//! bitmap of ports; either lets a trapped `in`/`out` through (see `traps::emulate`), and
//! then only for an I/O-capable (privileged) domain and never for the hypervisor's ports.

use super::Context;
use crate::mm::PhysMem;
use pv_abi::errno::Errno;
use pv_abi::physdev::{
    PHYSDEVOP_SET_IOBITMAP, PHYSDEVOP_SET_IOPL, PhysdevSetIobitmap, PhysdevSetIopl,
};

/// Most ports a bitmap can cover (all of them).
const MAX_PORTS: u32 = 65536;

pub(super) fn physdev_op<M: PhysMem>(
    ctx: &mut Context<'_, M>,
    cmd: u64,
    arg: u64,
) -> Result<u64, Errno> {
    match u32::try_from(cmd).map_err(|_| Errno::ENOSYS)? {
        PHYSDEVOP_SET_IOPL => {
            let request: PhysdevSetIopl = ctx.guest.read_obj(arg)?;
            if request.iopl > 3 {
                return Err(Errno::EINVAL);
            }
            ctx.domain.vcpu.iopl = request.iopl as u8;
            Ok(0)
        }
        PHYSDEVOP_SET_IOBITMAP => {
            let request: PhysdevSetIobitmap = ctx.guest.read_obj(arg)?;
            if request.nr_ports > MAX_PORTS {
                return Err(Errno::EINVAL);
            }
            ctx.domain.vcpu.io_bitmap = (request.bitmap, request.nr_ports);
            Ok(0)
        }
        _ => Err(Errno::ENOSYS),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{BUF, World};
    use super::*;
    use zerocopy::IntoBytes;

    #[test]
    fn iopl_and_bitmap_are_recorded_and_checked() {
        let mut world = World::new();
        world.put(0, PhysdevSetIopl { iopl: 1 }.as_bytes());
        assert_eq!(
            world
                .call(33, [u64::from(PHYSDEVOP_SET_IOPL), BUF, 0, 0, 0])
                .0,
            0
        );
        assert_eq!(world.domain.vcpu.iopl, 1);
        world.put(0, PhysdevSetIopl { iopl: 4 }.as_bytes());
        assert_eq!(
            world
                .call(33, [u64::from(PHYSDEVOP_SET_IOPL), BUF, 0, 0, 0])
                .0,
            -22
        );
        let bitmap = PhysdevSetIobitmap {
            bitmap: BUF + 64,
            nr_ports: 1024,
            ..Default::default()
        };
        world.put(0, bitmap.as_bytes());
        assert_eq!(
            world
                .call(33, [u64::from(PHYSDEVOP_SET_IOBITMAP), BUF, 0, 0, 0])
                .0,
            0
        );
        assert_eq!(world.domain.vcpu.io_bitmap, (BUF + 64, 1024));
        assert_eq!(
            world
                .call(33, [u64::from(PHYSDEVOP_SET_IOPL), 0x10, 0, 0, 0])
                .0,
            -14
        );
        assert_eq!(world.call(33, [99, BUF, 0, 0, 0]).0, -38);
    }
}
