//! `vm_assist` and our own extension hypercall (`ext_op`, in Xen's arch-reserved slot).

use super::Context;
use crate::domain::Domain;
use crate::emulate::OperandSize;
use crate::guestmem::GuestMem;
use crate::mm::PhysMem;
use crate::traps::emulate::{Ports, port_allowed};
use pv_abi::errno::Errno;
use pv_abi::ext::{EXTOP_PORT_READ, EXTOP_PORT_WRITE, EXTOP_SET_EXIT_CODE};
use pv_abi::xen::{
    VMASST_CMD_DISABLE, VMASST_CMD_ENABLE, VMASST_TYPE_4GB_SEGMENTS,
    VMASST_TYPE_4GB_SEGMENTS_NOTIFY, VMASST_TYPE_ARCHITECTURAL_IOPL, VMASST_TYPE_M2P_STRICT,
    VMASST_TYPE_PAE_EXTENDED_CR3, VMASST_TYPE_RUNSTATE_UPDATE_FLAG,
    VMASST_TYPE_WRITABLE_PAGETABLES,
};

/// The assists a 64-bit PV guest may switch (Xen 4.17's set). They are recorded now and
/// take effect as the features behind them land: today only `writable_pagetables` does
/// (docs/abi.md says which do not).
const VALID_ASSISTS: u64 = (1 << VMASST_TYPE_4GB_SEGMENTS)
    | (1 << VMASST_TYPE_4GB_SEGMENTS_NOTIFY)
    | (1 << VMASST_TYPE_WRITABLE_PAGETABLES)
    | (1 << VMASST_TYPE_PAE_EXTENDED_CR3)
    | (1 << VMASST_TYPE_ARCHITECTURAL_IOPL)
    | (1 << VMASST_TYPE_RUNSTATE_UPDATE_FLAG)
    | (1 << VMASST_TYPE_M2P_STRICT);

pub(super) fn vm_assist<M: PhysMem>(
    ctx: &mut Context<'_, M>,
    cmd: u64,
    kind: u64,
) -> Result<u64, Errno> {
    if kind >= 64 || VALID_ASSISTS & (1 << kind) == 0 {
        return Err(Errno::EINVAL);
    }
    match u32::try_from(cmd).map_err(|_| Errno::ENOSYS)? {
        VMASST_CMD_ENABLE => ctx.domain.vm_assist |= 1 << kind,
        VMASST_CMD_DISABLE => ctx.domain.vm_assist &= !(1 << kind),
        _ => return Err(Errno::ENOSYS),
    }
    Ok(0)
}

pub(super) fn ext_op<M: PhysMem>(
    ctx: &mut Context<'_, M>,
    cmd: u64,
    arg: u64,
    value: u64,
) -> Result<u64, Errno> {
    match u32::try_from(cmd).map_err(|_| Errno::ENOSYS)? {
        EXTOP_SET_EXIT_CODE => {
            ctx.domain.exit_code = Some(arg & 0xffff_ffff);
            Ok(0)
        }
        EXTOP_PORT_WRITE | EXTOP_PORT_READ => {
            port_op(ctx.domain, &ctx.guest, ctx.ports, cmd as u32, arg, value)
        }
        _ => Err(Errno::ENOSYS),
    }
}

/// `ext_op(EXTOP_PORT_WRITE or EXTOP_PORT_READ, port | width << 16, value)` for the
/// calling `domain` (`guest`: its kernel address space, where its I/O bitmap lives). The
/// dispatcher and the machine's fast path both call this. The access is checked by the
/// same rule as a trapped `in`/`out` (`traps::emulate::port_allowed`).
#[inline]
pub fn port_op<M: PhysMem>(
    domain: &Domain,
    guest: &GuestMem<'_, M>,
    ports: &mut dyn Ports,
    cmd: u32,
    arg: u64,
    value: u64,
) -> Result<u64, Errno> {
    let port = arg as u16;
    let size = match arg >> 16 {
        1 => OperandSize::Byte,
        2 => OperandSize::Word,
        4 => OperandSize::Dword,
        _ => return Err(Errno::EINVAL),
    };
    if usize::from(port) + size.bytes() > 0x1_0000 {
        return Err(Errno::EINVAL);
    }
    let write = cmd == EXTOP_PORT_WRITE;
    if write && value & !size.mask() != 0 {
        return Err(Errno::EINVAL);
    }
    if !port_allowed(domain, guest, port, size) {
        return Err(Errno::EPERM);
    }
    if write {
        ports.port_out(port, size, value as u32);
        Ok(0)
    } else {
        Ok(u64::from(ports.port_in(port, size)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::World;

    #[test]
    fn assists_are_recorded_and_checked() {
        let mut world = World::new();
        assert_eq!(world.call(21, [0, 2, 0, 0, 0]).0, 0);
        assert_eq!(world.domain.vm_assist, 1 << 2);
        assert_eq!(world.call(21, [1, 2, 0, 0, 0]).0, 0);
        assert_eq!(world.domain.vm_assist, 0);
        assert_eq!(world.call(21, [0, 6, 0, 0, 0]).0, -22, "not a PV assist");
        assert_eq!(world.call(21, [0, 64, 0, 0, 0]).0, -22);
        assert_eq!(world.call(21, [5, 2, 0, 0, 0]).0, -38);
    }

    #[test]
    fn ports_are_reached_only_as_a_trapped_in_or_out_would() {
        use crate::emulate::OperandSize::{Byte, Dword, Word};
        let mut world = World::new();
        let arg = |port: u64, width: u64| port | width << 16;
        // An unprivileged domain, or a privileged one at IOPL 0 without an I/O bitmap:
        // refused, and no port touched.
        assert_eq!(world.call(55, [1, arg(0x80, 1), 7, 0, 0]).0, -1);
        world.domain.privileged = true;
        assert_eq!(world.call(55, [1, arg(0x80, 1), 7, 0, 0]).0, -1);
        assert_eq!(world.call(55, [2, arg(0x80, 1), 0, 0, 0]).0, -1);
        assert!(world.ports.outs.is_empty() && world.ports.ins.is_empty());
        // Virtual IOPL 1: allowed, in each width.
        world.domain.vcpu.iopl = 1;
        assert_eq!(world.call(55, [1, arg(0x80, 1), 7, 0, 0]).0, 0);
        assert_eq!(world.call(55, [1, arg(0x300, 2), 0xbeef, 0, 0]).0, 0);
        assert_eq!(world.call(55, [1, arg(0xc000, 4), 0xdead_beef, 0, 0]).0, 0);
        assert_eq!(world.call(55, [2, arg(0x301, 1), 0, 0, 0]).0, 0x302);
        assert_eq!(world.call(55, [2, arg(0xc004, 4), 0, 0, 0]).0, 0xc005);
        assert_eq!(
            world.ports.outs,
            [
                (0x80, Byte, 7),
                (0x300, Word, 0xbeef),
                (0xc000, Dword, 0xdead_beef)
            ]
        );
        assert_eq!(world.ports.ins, [(0x301, Byte), (0xc004, Dword)]);
        // Malformed: other widths, bits above the width, flags, past port 0xffff.
        world.ports.outs.clear();
        for (second, value) in [
            (arg(0x80, 3), 0),
            (arg(0x80, 8), 0),
            (arg(0x80, 0), 0),
            (arg(0x80, 1) | 1 << 32, 0),
            (arg(0x80, 1), 0x100),
            (arg(0x80, 2), 0x1_0000),
            (arg(0xfffe, 4), 0),
        ] {
            assert_eq!(
                world.call(55, [1, second, value, 0, 0]).0,
                -22,
                "{second:#x} {value:#x}"
            );
        }
        // The hypervisor's own ports, whatever the IOPL: the PIC, the PIT and its gate,
        // COM1, PCI configuration and reset control, QEMU's debug exit (which would end
        // the whole machine), the CMOS/RTC and NMI mask, the ELCR, the reset ports.
        for port in [
            0x20, 0x43, 0x61, 0x64, 0x70, 0x71, 0x92, 0x3f8, 0x4d0, 0x4d1, 0xcf8, 0xcf9, 0xf4, 0xf7,
        ] {
            assert_eq!(
                world.call(55, [1, arg(port, 1), 0, 0, 0]).0,
                -1,
                "{port:#x}"
            );
        }
        // A word access that straddles into a reserved range.
        assert_eq!(world.call(55, [1, arg(0x1f, 2), 0, 0, 0]).0, -1);
        assert!(world.ports.outs.is_empty(), "{:?}", world.ports.outs);
    }

    #[test]
    fn exit_code_is_recorded() {
        let mut world = World::new();
        assert_eq!(world.call(55, [0, 3, 0, 0, 0]).0, 0);
        assert_eq!(world.domain.exit_code, Some(3));
        assert_eq!(world.call(55, [3, 3, 0, 0, 0]).0, -38);
    }
}
