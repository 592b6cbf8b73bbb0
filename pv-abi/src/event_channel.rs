//! Event channels (`xen/event_channel.h`): the `event_channel_op` sub-operations with
//! their argument structures, the 2-level and FIFO ABIs' constants.
//!
//! An event channel is a port number in a domain. Binding connects it to a peer port,
//! a VIRQ, a physical IRQ or an IPI; sending sets the peer's pending bit and, unless
//! masked, raises an upcall. Every sub-operation takes a pointer to its own structure
//! (fields marked "out" are written by the hypervisor).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::xen::DomId;

/// An event-channel port number (`evtchn_port_t`).
pub type EvtchnPort = u32;

/// Connect to a port another domain allocated; [`EvtchnBindInterdomain`].
pub const EVTCHNOP_BIND_INTERDOMAIN: u32 = 0;
/// Bind a VIRQ on a VCPU; [`EvtchnBindVirq`].
pub const EVTCHNOP_BIND_VIRQ: u32 = 1;
/// Bind a physical IRQ (privileged); [`EvtchnBindPirq`].
pub const EVTCHNOP_BIND_PIRQ: u32 = 2;
/// Close a port; [`EvtchnClose`].
pub const EVTCHNOP_CLOSE: u32 = 3;
/// Notify the other end of a port; [`EvtchnSend`].
pub const EVTCHNOP_SEND: u32 = 4;
/// Query a port's state; [`EvtchnStatus`].
pub const EVTCHNOP_STATUS: u32 = 5;
/// Allocate a port for a remote domain to bind to; [`EvtchnAllocUnbound`].
pub const EVTCHNOP_ALLOC_UNBOUND: u32 = 6;
/// Allocate a port for IPIs to a VCPU; [`EvtchnBindIpi`].
pub const EVTCHNOP_BIND_IPI: u32 = 7;
/// Deliver a port's events to another VCPU; [`EvtchnBindVcpu`].
pub const EVTCHNOP_BIND_VCPU: u32 = 8;
/// Unmask a port and redeliver if pending; [`EvtchnUnmask`].
pub const EVTCHNOP_UNMASK: u32 = 9;
/// Close all of a domain's ports; [`EvtchnReset`].
pub const EVTCHNOP_RESET: u32 = 10;
/// Switch to the FIFO ABI with a control block; [`EvtchnInitControl`].
pub const EVTCHNOP_INIT_CONTROL: u32 = 11;
/// Add a page to the FIFO event array; [`EvtchnExpandArray`].
pub const EVTCHNOP_EXPAND_ARRAY: u32 = 12;
/// Set a port's FIFO priority; [`EvtchnSetPriority`].
pub const EVTCHNOP_SET_PRIORITY: u32 = 13;

/// Argument of [`EVTCHNOP_ALLOC_UNBOUND`] (`struct evtchn_alloc_unbound`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnAllocUnbound {
    /// In: the domain that gets the port (`DOMID_SELF` for the caller).
    pub dom: DomId,
    /// In: the domain allowed to bind to it.
    pub remote_dom: DomId,
    /// Out: the new port.
    pub port: EvtchnPort,
}
const _: () = assert!(size_of::<EvtchnAllocUnbound>() == 8);

/// Argument of [`EVTCHNOP_BIND_INTERDOMAIN`] (`struct evtchn_bind_interdomain`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnBindInterdomain {
    /// In: the domain that allocated the unbound port.
    pub remote_dom: DomId,
    /// Padding.
    pub pad0: u16,
    /// In: that port.
    pub remote_port: EvtchnPort,
    /// Out: the caller's new local port.
    pub local_port: EvtchnPort,
}
const _: () = assert!(size_of::<EvtchnBindInterdomain>() == 12);

/// Argument of [`EVTCHNOP_BIND_VIRQ`] (`struct evtchn_bind_virq`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnBindVirq {
    /// In: `VIRQ_*`.
    pub virq: u32,
    /// In: the VCPU to deliver on.
    pub vcpu: u32,
    /// Out: the new port.
    pub port: EvtchnPort,
}
const _: () = assert!(size_of::<EvtchnBindVirq>() == 12);

/// [`EvtchnBindPirq::flags`]: the IRQ may be shared with other domains.
pub const BIND_PIRQ_WILL_SHARE: u32 = 1;

/// Argument of [`EVTCHNOP_BIND_PIRQ`] (`struct evtchn_bind_pirq`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnBindPirq {
    /// In: physical IRQ.
    pub pirq: u32,
    /// In: `BIND_PIRQ_*`.
    pub flags: u32,
    /// Out: the new port.
    pub port: EvtchnPort,
}
const _: () = assert!(size_of::<EvtchnBindPirq>() == 12);

/// Argument of [`EVTCHNOP_BIND_IPI`] (`struct evtchn_bind_ipi`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnBindIpi {
    /// In: the VCPU to deliver on.
    pub vcpu: u32,
    /// Out: the new port.
    pub port: EvtchnPort,
}
const _: () = assert!(size_of::<EvtchnBindIpi>() == 8);

/// Argument of [`EVTCHNOP_CLOSE`] (`struct evtchn_close`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnClose {
    /// In: the port to close.
    pub port: EvtchnPort,
}
const _: () = assert!(size_of::<EvtchnClose>() == 4);

/// Argument of [`EVTCHNOP_SEND`] (`struct evtchn_send`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnSend {
    /// In: the local port whose peer is notified.
    pub port: EvtchnPort,
}
const _: () = assert!(size_of::<EvtchnSend>() == 4);

/// [`EvtchnStatus::status`]: the port is free.
pub const EVTCHNSTAT_CLOSED: u32 = 0;
/// [`EvtchnStatus::status`]: allocated, waiting for a remote domain to bind.
pub const EVTCHNSTAT_UNBOUND: u32 = 1;
/// [`EvtchnStatus::status`]: connected to a remote port.
pub const EVTCHNSTAT_INTERDOMAIN: u32 = 2;
/// [`EvtchnStatus::status`]: bound to a physical IRQ.
pub const EVTCHNSTAT_PIRQ: u32 = 3;
/// [`EvtchnStatus::status`]: bound to a VIRQ.
pub const EVTCHNSTAT_VIRQ: u32 = 4;
/// [`EvtchnStatus::status`]: bound to an IPI.
pub const EVTCHNSTAT_IPI: u32 = 5;

/// The status-dependent part of [`EvtchnStatus`] (a C union):
/// - unbound: `word0` low 16 bits = the domain allowed to bind;
/// - interdomain: `word0` low 16 bits = remote domain, `word1` = remote port;
/// - pirq / virq: `word0` = the IRQ number.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnStatusDetail {
    /// Domain id or IRQ number, by status.
    pub word0: u32,
    /// Remote port (interdomain only).
    pub word1: u32,
}

/// Argument of [`EVTCHNOP_STATUS`] (`struct evtchn_status`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnStatus {
    /// In: the domain owning the port.
    pub dom: DomId,
    /// Padding.
    pub pad0: u16,
    /// In: the port.
    pub port: EvtchnPort,
    /// Out: `EVTCHNSTAT_*`.
    pub status: u32,
    /// Out: the VCPU the port delivers to.
    pub vcpu: u32,
    /// Out: status-dependent detail.
    pub u: EvtchnStatusDetail,
}
const _: () = assert!(size_of::<EvtchnStatus>() == 24);

impl EvtchnStatus {
    /// Unbound view: the domain allowed to bind.
    pub const fn unbound_dom(&self) -> DomId {
        self.u.word0 as DomId
    }
    /// Interdomain view: `(remote domain, remote port)`.
    pub const fn interdomain(&self) -> (DomId, EvtchnPort) {
        (self.u.word0 as DomId, self.u.word1)
    }
    /// Pirq or virq view: the IRQ number.
    pub const fn irq(&self) -> u32 {
        self.u.word0
    }
}

/// Argument of [`EVTCHNOP_BIND_VCPU`] (`struct evtchn_bind_vcpu`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnBindVcpu {
    /// In: the port.
    pub port: EvtchnPort,
    /// In: the VCPU to deliver on from now on.
    pub vcpu: u32,
}
const _: () = assert!(size_of::<EvtchnBindVcpu>() == 8);

/// Argument of [`EVTCHNOP_UNMASK`] (`struct evtchn_unmask`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnUnmask {
    /// In: the port.
    pub port: EvtchnPort,
}
const _: () = assert!(size_of::<EvtchnUnmask>() == 4);

/// Argument of [`EVTCHNOP_RESET`] (`struct evtchn_reset`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnReset {
    /// In: the domain (`DOMID_SELF` for the caller).
    pub dom: DomId,
}
const _: () = assert!(size_of::<EvtchnReset>() == 2);

/// Argument of [`EVTCHNOP_INIT_CONTROL`] (`struct evtchn_init_control`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnInitControl {
    /// In: frame holding the control block.
    pub control_gfn: u64,
    /// In: offset of the control block in that frame.
    pub offset: u32,
    /// In: the VCPU the block belongs to.
    pub vcpu: u32,
    /// Out: number of link bits in an event word.
    pub link_bits: u8,
    /// Padding.
    pub pad: [u8; 7],
}
const _: () = assert!(size_of::<EvtchnInitControl>() == 24);

/// Argument of [`EVTCHNOP_EXPAND_ARRAY`] (`struct evtchn_expand_array`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnExpandArray {
    /// In: frame to add to the event array.
    pub array_gfn: u64,
}
const _: () = assert!(size_of::<EvtchnExpandArray>() == 8);

/// Argument of [`EVTCHNOP_SET_PRIORITY`] (`struct evtchn_set_priority`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnSetPriority {
    /// In: the port.
    pub port: EvtchnPort,
    /// In: 0 (highest) to 15 (lowest).
    pub priority: u32,
}
const _: () = assert!(size_of::<EvtchnSetPriority>() == 8);

/// The argument of the old `event_channel_op_compat` hypercall (`struct evtchn_op`):
/// a command followed by the union of the argument structures of commands 0..=9,
/// kept as raw words (the largest member, [`EvtchnStatus`], is 24 bytes).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnOp {
    /// `EVTCHNOP_*`.
    pub cmd: u32,
    /// The command's argument structure, as bytes.
    pub u: [u32; 6],
}
const _: () = assert!(size_of::<EvtchnOp>() == 28);

impl EvtchnOp {
    /// A compat request for `cmd` with argument `arg` (at most 24 bytes; longer
    /// arguments give `None`).
    pub fn new<T: IntoBytes + Immutable>(cmd: u32, arg: &T) -> Option<Self> {
        let mut op = EvtchnOp { cmd, u: [0; 6] };
        op.u.as_mut_bytes()
            .get_mut(..size_of::<T>())?
            .copy_from_slice(arg.as_bytes());
        Some(op)
    }
    /// Reads the argument back as `T` (for instance to fetch an "out" field).
    pub fn arg<T: FromBytes>(&self) -> Option<T> {
        T::read_from_prefix(self.u.as_bytes()).ok().map(|(v, _)| v)
    }
}

/// Number of ports of the 2-level ABI on a 64-bit guest (64 * 64).
pub const EVTCHN_2L_NR_CHANNELS: u32 = 4096;

/// FIFO ABI: highest priority.
pub const EVTCHN_FIFO_PRIORITY_MAX: u32 = 0;
/// FIFO ABI: default priority.
pub const EVTCHN_FIFO_PRIORITY_DEFAULT: u32 = 7;
/// FIFO ABI: lowest priority.
pub const EVTCHN_FIFO_PRIORITY_MIN: u32 = 15;
/// FIFO ABI: number of queues (one per priority).
pub const EVTCHN_FIFO_MAX_QUEUES: usize = 16;
/// FIFO event word bit: pending.
pub const EVTCHN_FIFO_PENDING: u32 = 31;
/// FIFO event word bit: masked.
pub const EVTCHN_FIFO_MASKED: u32 = 30;
/// FIFO event word bit: linked into a queue.
pub const EVTCHN_FIFO_LINKED: u32 = 29;
/// FIFO event word bit: busy (being unlinked).
pub const EVTCHN_FIFO_BUSY: u32 = 28;
/// FIFO event word: number of link bits.
pub const EVTCHN_FIFO_LINK_BITS: u32 = 17;
/// FIFO event word: mask of the link field.
pub const EVTCHN_FIFO_LINK_MASK: u32 = (1 << EVTCHN_FIFO_LINK_BITS) - 1;
/// FIFO ABI: number of ports.
pub const EVTCHN_FIFO_NR_CHANNELS: u32 = 1 << EVTCHN_FIFO_LINK_BITS;

/// One FIFO event word (`event_word_t`).
pub type EventWord = u32;

/// Per-VCPU FIFO control block (`struct evtchn_fifo_control_block`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnFifoControlBlock {
    /// Bit per queue: the queue has events.
    pub ready: u32,
    /// Reserved.
    pub rsvd: u32,
    /// Head port of each queue.
    pub head: [u32; EVTCHN_FIFO_MAX_QUEUES],
}
const _: () = assert!(size_of::<EvtchnFifoControlBlock>() == 72);

/// The word index and bit of `port` in the 2-level pending and mask bitmaps of
/// [`crate::xen::SharedInfo`].
pub const fn port_word_and_bit(port: EvtchnPort) -> (usize, u32) {
    ((port / 64) as usize, port % 64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compat_op_packs_arguments() {
        let send = EvtchnSend { port: 7 };
        let op = EvtchnOp::new(EVTCHNOP_SEND, &send).unwrap();
        assert_eq!(op.u[0], 7);
        assert_eq!(op.arg::<EvtchnSend>(), Some(send));
        let st = EvtchnStatus {
            port: 3,
            u: EvtchnStatusDetail { word0: 5, word1: 9 },
            ..Default::default()
        };
        let op = EvtchnOp::new(EVTCHNOP_STATUS, &st).unwrap();
        assert_eq!(op.arg::<EvtchnStatus>().unwrap().interdomain(), (5, 9));
        assert!(EvtchnOp::new(0, &[0u8; 25]).is_none());
    }

    #[test]
    fn bitmap_position() {
        assert_eq!(port_word_and_bit(0), (0, 0));
        assert_eq!(port_word_and_bit(65), (1, 1));
        assert_eq!(port_word_and_bit(EVTCHN_2L_NR_CHANNELS - 1), (63, 63));
    }
}
