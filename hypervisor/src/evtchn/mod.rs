//! Event channels: each domain's table of ports and what each port is bound to.
//!
//! This is the hypervisor-private half of Xen's 2-level event-channel ABI. A port is a
//! number in one domain; binding connects it to a port of another domain
//! (interdomain), to a virtual IRQ of one of the domain's vCPUs, or to an IPI. The
//! guest-visible half (pending and mask bits, per-vCPU selectors) lives in the
//! domain's shared-info page and is handled by [`shared`].
//!
//! A table holds at most [`MAX_PORTS`] ports: the per-domain limit that keeps a domain
//! from consuming unbounded hypervisor state (Xen's default for a guest is 1023 usable
//! ports; port 0 is never allocated). Operations that involve two domains
//! (bind_interdomain, send, close) are composed from the per-table steps here by
//! [`crate::guests`], which holds every domain at once.

pub mod shared;

use crate::frames::DomId;
use crate::sched::MAX_VCPUS;
use pv_abi::errno::Errno;
use pv_abi::event_channel::{
    EVTCHNSTAT_CLOSED, EVTCHNSTAT_INTERDOMAIN, EVTCHNSTAT_IPI, EVTCHNSTAT_UNBOUND, EVTCHNSTAT_VIRQ,
    EvtchnPort, EvtchnStatusDetail,
};
use pv_abi::xen::{NR_VIRQS, VIRQ_DEBUG, VIRQ_TIMER, VIRQ_XENOPROF, VIRQ_XENPMU};

/// Ports per domain (port 0 included, never allocated).
pub const MAX_PORTS: usize = 1024;

/// What a port is bound to.
///
/// `repr(u8)`: a tag byte first, with the discriminants given here, so that the express
/// send of `entry.S` can tell an IPI by one compare ([`Binding::IPI_TAG`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Binding {
    /// Free.
    Closed = 0,
    /// Allocated for `remote` to bind to.
    Unbound {
        /// The only domain that may bind.
        remote: DomId,
    } = 1,
    /// Connected to `remote_port` of domain `remote`.
    Interdomain {
        /// The peer domain.
        remote: DomId,
        /// The peer's port.
        remote_port: EvtchnPort,
    } = 2,
    /// Raised by the hypervisor for virtual IRQ `virq`.
    Virq {
        /// `VIRQ_*`.
        virq: u32,
    } = 3,
    /// Raised by the domain itself (EVTCHNOP_send), an inter-processor interrupt.
    Ipi = IPI_TAG,
}

/// [`Binding::Ipi`]'s discriminant.
const IPI_TAG: u8 = 4;

impl Binding {
    /// The tag byte of [`Binding::Ipi`] (the first byte of a `Binding`, `repr(u8)`).
    pub const IPI_TAG: u8 = IPI_TAG;
}

/// One port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Channel {
    /// Its binding.
    pub binding: Binding,
    /// The vCPU that is notified (gets the selector bit and the upcall).
    pub vcpu: u32,
}

impl Channel {
    const CLOSED: Channel = Channel {
        binding: Binding::Closed,
        vcpu: 0,
    };
}

/// Whether `virq` is global (bound on vCPU 0, raised for the domain) rather than
/// per-vCPU: all are but the timer, debug, oprofile and PMU ones, as in Xen's
/// `virq_is_global` (on x86 the arch VIRQs are global too).
pub fn virq_is_global(virq: u32) -> bool {
    !matches!(virq, VIRQ_TIMER | VIRQ_DEBUG | VIRQ_XENOPROF | VIRQ_XENPMU)
}

/// One domain's ports.
#[derive(Clone, Debug)]
pub struct EventTable {
    channels: [Channel; MAX_PORTS],
    /// Port bound to each VIRQ on each vCPU (0: none).
    virqs: [[EvtchnPort; NR_VIRQS as usize]; MAX_VCPUS],
    /// vCPUs the domain has (ports can be bound only to these).
    nr_vcpus: u32,
}

impl EventTable {
    /// Where the channels (`[Channel; MAX_PORTS]`, indexed by port) start in a table,
    /// for the express send of `entry.S`.
    pub const CHANNELS_OFFSET: usize = core::mem::offset_of!(EventTable, channels);

    /// An empty table for a domain of `nr_vcpus` vCPUs.
    pub const fn new(nr_vcpus: u32) -> EventTable {
        EventTable {
            channels: [Channel::CLOSED; MAX_PORTS],
            virqs: [[0; NR_VIRQS as usize]; MAX_VCPUS],
            nr_vcpus,
        }
    }

    /// Empties the table in place (a domain slot is reused, or EVTCHNOP_reset after
    /// every port was closed).
    pub fn reset(&mut self, nr_vcpus: u32) {
        self.channels.fill(Channel::CLOSED);
        self.virqs = [[0; NR_VIRQS as usize]; MAX_VCPUS];
        self.nr_vcpus = nr_vcpus;
    }

    fn check_vcpu(&self, vcpu: u32) -> Result<(), Errno> {
        if vcpu < self.nr_vcpus && (vcpu as usize) < MAX_VCPUS {
            Ok(())
        } else {
            Err(Errno::ENOENT)
        }
    }

    /// The port's channel, if the port number is in range.
    #[inline]
    pub fn get(&self, port: EvtchnPort) -> Option<&Channel> {
        self.channels.get(port as usize)
    }

    /// The port's channel if it is open (not closed, not port 0).
    ///
    /// Port 0 needs no test of its own: it is never bound (`allocate` starts at 1, and
    /// every other write goes to a port `open` returned), so its channel stays closed.
    #[inline]
    pub fn open(&self, port: EvtchnPort) -> Result<&Channel, Errno> {
        debug_assert_eq!(
            self.channels[0].binding,
            Binding::Closed,
            "port 0 is never bound"
        );
        match self.get(port) {
            Some(channel) if channel.binding != Binding::Closed => Ok(channel),
            _ => Err(Errno::EINVAL),
        }
    }

    /// Every open port, lowest first.
    pub fn open_ports(&self) -> impl Iterator<Item = (EvtchnPort, &Channel)> {
        self.channels
            .iter()
            .enumerate()
            .skip(1)
            .filter(|(_, c)| c.binding != Binding::Closed)
            .map(|(port, c)| (port as EvtchnPort, c))
    }

    /// The lowest free port, bound to `binding` on `vcpu`.
    fn allocate(&mut self, binding: Binding, vcpu: u32) -> Result<EvtchnPort, Errno> {
        let port = (1..MAX_PORTS)
            .find(|&p| self.channels[p].binding == Binding::Closed)
            .ok_or(Errno::ENOSPC)?;
        self.channels[port] = Channel { binding, vcpu };
        Ok(port as EvtchnPort)
    }

    /// EVTCHNOP_alloc_unbound: a port that domain `remote` may bind to.
    pub fn alloc_unbound(&mut self, remote: DomId) -> Result<EvtchnPort, Errno> {
        self.allocate(Binding::Unbound { remote }, 0)
    }

    /// The local half of EVTCHNOP_bind_interdomain: a new port connected to
    /// `remote_port` of `remote` (the caller has checked and updates the remote half).
    pub fn connect_new(
        &mut self,
        remote: DomId,
        remote_port: EvtchnPort,
    ) -> Result<EvtchnPort, Errno> {
        self.allocate(
            Binding::Interdomain {
                remote,
                remote_port,
            },
            0,
        )
    }

    /// Whether `port` is unbound and waiting for `binder`.
    pub fn is_unbound_for(&self, port: EvtchnPort, binder: DomId) -> bool {
        matches!(self.open(port), Ok(c) if c.binding == Binding::Unbound { remote: binder })
    }

    /// Turns an unbound (or interdomain) port into one connected to `remote_port` of
    /// `remote`, keeping its vCPU.
    pub fn connect(&mut self, port: EvtchnPort, remote: DomId, remote_port: EvtchnPort) {
        if let Some(channel) = self.channels.get_mut(port as usize) {
            channel.binding = Binding::Interdomain {
                remote,
                remote_port,
            };
        }
    }

    /// The remote end of an interdomain port went away: the port waits, unbound, for
    /// the same remote domain to bind again (Xen's rule).
    pub fn disconnect(&mut self, port: EvtchnPort) {
        if let Some(channel) = self.channels.get_mut(port as usize)
            && let Binding::Interdomain { remote, .. } = channel.binding
        {
            channel.binding = Binding::Unbound { remote };
        }
    }

    /// EVTCHNOP_bind_virq.
    pub fn bind_virq(&mut self, virq: u32, vcpu: u32) -> Result<EvtchnPort, Errno> {
        if virq >= NR_VIRQS {
            return Err(Errno::EINVAL);
        }
        if virq_is_global(virq) && vcpu != 0 {
            return Err(Errno::EINVAL);
        }
        self.check_vcpu(vcpu)?;
        if self.virqs[vcpu as usize][virq as usize] != 0 {
            return Err(Errno::EEXIST);
        }
        let port = self.allocate(Binding::Virq { virq }, vcpu)?;
        self.virqs[vcpu as usize][virq as usize] = port;
        Ok(port)
    }

    /// The port bound to `virq` on `vcpu`, if any.
    pub fn virq_port(&self, virq: u32, vcpu: u32) -> Option<EvtchnPort> {
        let port = *self.virqs.get(vcpu as usize)?.get(virq as usize)?;
        (port != 0).then_some(port)
    }

    /// EVTCHNOP_bind_ipi.
    pub fn bind_ipi(&mut self, vcpu: u32) -> Result<EvtchnPort, Errno> {
        self.check_vcpu(vcpu)?;
        self.allocate(Binding::Ipi, vcpu)
    }

    /// EVTCHNOP_bind_vcpu: deliver the port's events to `vcpu` from now on. Only
    /// interdomain, unbound and global-VIRQ ports can move (as in Xen).
    pub fn bind_vcpu(&mut self, port: EvtchnPort, vcpu: u32) -> Result<(), Errno> {
        self.check_vcpu(vcpu)?;
        let channel = *self.open(port)?;
        match channel.binding {
            Binding::Unbound { .. } | Binding::Interdomain { .. } => {}
            // A global VIRQ stays recorded on vCPU 0 (so it cannot be bound twice), as
            // in Xen; only the vCPU it notifies changes.
            Binding::Virq { virq } if virq_is_global(virq) => {}
            _ => return Err(Errno::EINVAL),
        }
        self.channels[port as usize].vcpu = vcpu;
        Ok(())
    }

    /// EVTCHNOP_close, local half: frees the port and returns what it was bound to (the
    /// caller disconnects an interdomain peer).
    pub fn close(&mut self, port: EvtchnPort) -> Result<Binding, Errno> {
        let channel = *self.open(port)?;
        if let Binding::Virq { virq } = channel.binding {
            let bound_on = if virq_is_global(virq) {
                0
            } else {
                channel.vcpu
            };
            self.virqs[bound_on as usize][virq as usize] = 0;
        }
        self.channels[port as usize] = Channel::CLOSED;
        Ok(channel.binding)
    }

    /// EVTCHNOP_status: `EVTCHNSTAT_*`, the notified vCPU and the detail words.
    pub fn status(&self, port: EvtchnPort) -> Result<(u32, u32, EvtchnStatusDetail), Errno> {
        let channel = self.get(port).ok_or(Errno::EINVAL)?;
        let (status, word0, word1) = match channel.binding {
            Binding::Closed => (EVTCHNSTAT_CLOSED, 0, 0),
            Binding::Unbound { remote } => (EVTCHNSTAT_UNBOUND, u32::from(remote), 0),
            Binding::Interdomain {
                remote,
                remote_port,
            } => (EVTCHNSTAT_INTERDOMAIN, u32::from(remote), remote_port),
            Binding::Virq { virq } => (EVTCHNSTAT_VIRQ, virq, 0),
            Binding::Ipi => (EVTCHNSTAT_IPI, 0, 0),
        };
        Ok((status, channel.vcpu, EvtchnStatusDetail { word0, word1 }))
    }

    /// Number of open ports.
    pub fn open_count(&self) -> usize {
        self.open_ports().count()
    }
}

#[cfg(test)]
mod tests;
