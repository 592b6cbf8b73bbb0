//! `vm_assist` and our own extension hypercall (`ext_op`, in Xen's arch-reserved slot).

use super::Context;
use crate::mm::PhysMem;
use pv_abi::errno::Errno;
use pv_abi::ext::EXTOP_SET_EXIT_CODE;
use pv_abi::xen::{
    VMASST_CMD_DISABLE, VMASST_CMD_ENABLE, VMASST_TYPE_4GB_SEGMENTS,
    VMASST_TYPE_4GB_SEGMENTS_NOTIFY, VMASST_TYPE_ARCHITECTURAL_IOPL, VMASST_TYPE_M2P_STRICT,
    VMASST_TYPE_PAE_EXTENDED_CR3, VMASST_TYPE_RUNSTATE_UPDATE_FLAG,
    VMASST_TYPE_WRITABLE_PAGETABLES,
};

/// The assists a 64-bit PV guest may switch (Xen 4.17's set). They are recorded now and
/// take effect as the features behind them land.
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
) -> Result<u64, Errno> {
    match u32::try_from(cmd).map_err(|_| Errno::ENOSYS)? {
        EXTOP_SET_EXIT_CODE => {
            ctx.domain.exit_code = Some(arg & 0xffff_ffff);
            Ok(0)
        }
        _ => Err(Errno::ENOSYS),
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
    fn exit_code_is_recorded() {
        let mut world = World::new();
        assert_eq!(world.call(55, [0, 3, 0, 0, 0]).0, 0);
        assert_eq!(world.domain.exit_code, Some(3));
        assert_eq!(world.call(55, [1, 3, 0, 0, 0]).0, -38);
    }
}
