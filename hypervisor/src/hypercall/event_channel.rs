//! `event_channel_op` (and its compat form): Xen's 2-level event channels.
//!
//! Every sub-operation reads its argument structure from the guest, acts through the
//! caller's [`crate::evtchn::EventTable`] (or, across domains, through
//! [`crate::guests::Guests`]), and writes the structure back with its "out" fields.
//! A domain may act on another domain's ports (alloc_unbound, status, reset for a
//! given `dom`) only if it is privileged. The FIFO ABI and physical IRQs are not
//! offered (`ENOSYS`): a guest falls back to the 2-level ABI.

use super::global::{GlobalCall, command};
use crate::evtchn::MAX_PORTS;
use crate::evtchn::shared::SharedEvents;
use crate::mm::PhysMem;
use crate::sched::VcpuRef;
use crate::vcpu_info::VcpuInfoRef;
use pv_abi::errno::Errno;
use pv_abi::event_channel::{
    EVTCHNOP_ALLOC_UNBOUND, EVTCHNOP_BIND_INTERDOMAIN, EVTCHNOP_BIND_IPI, EVTCHNOP_BIND_VCPU,
    EVTCHNOP_BIND_VIRQ, EVTCHNOP_CLOSE, EVTCHNOP_RESET, EVTCHNOP_SEND, EVTCHNOP_STATUS,
    EVTCHNOP_UNMASK, EvtchnAllocUnbound, EvtchnBindInterdomain, EvtchnBindIpi, EvtchnBindVcpu,
    EvtchnBindVirq, EvtchnClose, EvtchnPort, EvtchnReset, EvtchnSend, EvtchnStatus, EvtchnUnmask,
};
use pv_abi::xen::DomId;

pub(super) fn event_channel_op<M: PhysMem>(
    call: &mut GlobalCall<'_, M>,
    cmd: u64,
    arg: u64,
) -> Result<u64, Errno> {
    let guest = call.guest();
    let slot = call.slot;
    match command(cmd)? {
        EVTCHNOP_ALLOC_UNBOUND => {
            let mut op: EvtchnAllocUnbound = guest.read_obj(arg)?;
            let target = target_slot(call, op.dom)?;
            let remote = call
                .guests
                .resolve(slot, op.remote_dom)
                .ok_or(Errno::ESRCH)?;
            op.port = call.guests.runtime[target].events.alloc_unbound(remote)?;
            guest.write_obj(arg, &op)?;
        }
        EVTCHNOP_BIND_INTERDOMAIN => {
            let mut op: EvtchnBindInterdomain = guest.read_obj(arg)?;
            op.local_port = call
                .guests
                .bind_interdomain(slot, op.remote_dom, op.remote_port)?;
            guest.write_obj(arg, &op)?;
        }
        EVTCHNOP_BIND_VIRQ => {
            let mut op: EvtchnBindVirq = guest.read_obj(arg)?;
            op.port = call.guests.runtime[slot]
                .events
                .bind_virq(op.virq, op.vcpu)?;
            guest.write_obj(arg, &op)?;
        }
        EVTCHNOP_BIND_IPI => {
            let mut op: EvtchnBindIpi = guest.read_obj(arg)?;
            op.port = call.guests.runtime[slot].events.bind_ipi(op.vcpu)?;
            guest.write_obj(arg, &op)?;
        }
        EVTCHNOP_CLOSE => {
            let op: EvtchnClose = guest.read_obj(arg)?;
            call.guests.close(slot, op.port)?;
        }
        EVTCHNOP_SEND => {
            let op: EvtchnSend = guest.read_obj(arg)?;
            call.guests.send(slot, op.port)?;
        }
        EVTCHNOP_STATUS => {
            let mut op: EvtchnStatus = guest.read_obj(arg)?;
            let target = target_slot(call, op.dom)?;
            let (status, vcpu, detail) = call.guests.runtime[target].events.status(op.port)?;
            op.status = status;
            op.vcpu = vcpu;
            op.u = detail;
            guest.write_obj(arg, &op)?;
        }
        EVTCHNOP_BIND_VCPU => {
            let op: EvtchnBindVcpu = guest.read_obj(arg)?;
            call.guests.runtime[slot]
                .events
                .bind_vcpu(op.port, op.vcpu)?;
        }
        EVTCHNOP_UNMASK => {
            let op: EvtchnUnmask = guest.read_obj(arg)?;
            unmask(call, op.port)?;
        }
        EVTCHNOP_RESET => {
            let op: EvtchnReset = guest.read_obj(arg)?;
            let target = target_slot(call, op.dom)?;
            let ports: heapless::Vec<EvtchnPort, MAX_PORTS> = call.guests.runtime[target]
                .events
                .open_ports()
                .map(|(port, _)| port)
                .collect();
            for port in ports {
                call.guests.close(target, port)?;
            }
        }
        _ => return Err(Errno::ENOSYS),
    }
    Ok(0)
}

/// The compat hypercall: an `evtchn_op` structure, `cmd` followed by the argument.
pub(super) fn compat<M: PhysMem>(call: &mut GlobalCall<'_, M>, op: u64) -> Result<u64, Errno> {
    let cmd: u32 = call.guest().read_obj(op)?;
    event_channel_op(call, u64::from(cmd), op.wrapping_add(4))
}

/// The slot of domain `dom` (`DOMID_SELF` allowed), which the caller may act on.
fn target_slot<M: PhysMem>(call: &GlobalCall<'_, M>, dom: DomId) -> Result<usize, Errno> {
    let id = call.guests.resolve(call.slot, dom).ok_or(Errno::ESRCH)?;
    if id != call.domain().id && !call.domain().privileged {
        return Err(Errno::EPERM);
    }
    call.guests.slot_of(id).ok_or(Errno::ESRCH)
}

fn unmask<M: PhysMem>(call: &mut GlobalCall<'_, M>, port: EvtchnPort) -> Result<(), Errno> {
    if port as usize >= MAX_PORTS {
        return Err(Errno::EINVAL);
    }
    let slot = call.slot;
    let vcpu = call.guests.runtime[slot]
        .events
        .get(port)
        .map_or(0, |c| c.vcpu);
    let shared = call.domain().shared_info;
    let mem = call.guests.mem;
    let info = call
        .guests
        .vcpu_info_addr(slot, vcpu)
        .ok_or(Errno::EINVAL)?;
    if SharedEvents::new(mem, shared).unmask(&VcpuInfoRef::at(mem, info), port) {
        call.guests.unblock(VcpuRef {
            slot,
            vcpu: vcpu as usize,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::After;
    use super::super::global::tests::call;
    use crate::guests::tests::{BUF, Multi};
    use pv_abi::event_channel::{
        EVTCHNSTAT_CLOSED, EVTCHNSTAT_INTERDOMAIN, EVTCHNSTAT_UNBOUND, EVTCHNSTAT_VIRQ,
        EvtchnAllocUnbound, EvtchnBindInterdomain, EvtchnStatus,
    };
    use pv_abi::xen::{DOMID_SELF, Hypercall, VIRQ_TIMER};
    use zerocopy::{FromBytes, IntoBytes};

    const OP: Hypercall = Hypercall::EventChannelOp;

    fn op(world: &mut Multi, slot: usize, cmd: u32, arg: &[u8]) -> (i64, Vec<u8>) {
        world.put(slot, 0, arg);
        let (ret, after) = call(world, slot, OP, [u64::from(cmd), BUF, 0, 0, 0]).unwrap();
        assert_eq!(after, After::Resume);
        (ret, world.get(slot, 0, arg.len()))
    }

    #[test]
    fn ping_between_two_domains() {
        let mut w = Multi::new(2);
        let alloc = EvtchnAllocUnbound {
            dom: DOMID_SELF,
            remote_dom: 2,
            port: 0,
        };
        let (ret, out) = op(&mut w, 0, 6, alloc.as_bytes());
        assert_eq!(ret, 0);
        let server_port = EvtchnAllocUnbound::read_from_bytes(&out).unwrap().port;
        assert_eq!(server_port, 1);
        let bind = EvtchnBindInterdomain {
            remote_dom: 1,
            pad0: 0,
            remote_port: server_port,
            local_port: 0,
        };
        let (ret, out) = op(&mut w, 1, 0, bind.as_bytes());
        assert_eq!(ret, 0);
        let client_port = EvtchnBindInterdomain::read_from_bytes(&out)
            .unwrap()
            .local_port;
        // Status as seen from both sides (domain 1 is privileged and may look at 2).
        let status = EvtchnStatus {
            dom: 2,
            port: client_port,
            ..Default::default()
        };
        let (ret, out) = op(&mut w, 0, 5, status.as_bytes());
        assert_eq!(ret, 0);
        let status = EvtchnStatus::read_from_bytes(&out).unwrap();
        assert_eq!(status.status, EVTCHNSTAT_INTERDOMAIN);
        assert_eq!(status.interdomain(), (1, server_port));
        let peek = EvtchnStatus {
            dom: 1,
            port: server_port,
            ..Default::default()
        };
        assert_eq!(op(&mut w, 1, 5, peek.as_bytes()).0, -1, "EPERM");
        // Send from the client.
        let (ret, _) = op(&mut w, 1, 4, &client_port.to_le_bytes());
        assert_eq!(ret, 0);
        assert!(w.events(0).is_pending(server_port));
        // Close on the server: the client's port goes back to unbound.
        assert_eq!(op(&mut w, 0, 3, &server_port.to_le_bytes()).0, 0);
        let status = EvtchnStatus {
            dom: DOMID_SELF,
            port: client_port,
            ..Default::default()
        };
        let (_, out) = op(&mut w, 1, 5, status.as_bytes());
        let status = EvtchnStatus::read_from_bytes(&out).unwrap();
        assert_eq!(status.status, EVTCHNSTAT_UNBOUND);
        assert_eq!(status.unbound_dom(), 1);
        let gone = EvtchnStatus {
            dom: 1,
            port: server_port,
            ..Default::default()
        };
        let (_, out) = op(&mut w, 0, 5, gone.as_bytes());
        assert_eq!(
            EvtchnStatus::read_from_bytes(&out).unwrap().status,
            EVTCHNSTAT_CLOSED
        );
    }

    #[test]
    fn virq_ipi_vcpu_unmask_reset() {
        let mut w = Multi::new(1);
        let mut bind = [0u8; 12];
        bind[..4].copy_from_slice(&VIRQ_TIMER.to_le_bytes());
        let (ret, out) = op(&mut w, 0, 1, &bind);
        assert_eq!(ret, 0);
        let port = u32::from_le_bytes(out[8..12].try_into().unwrap());
        assert_eq!(op(&mut w, 0, 1, &bind).0, -17, "EEXIST");
        let status = EvtchnStatus {
            dom: DOMID_SELF,
            port,
            ..Default::default()
        };
        let (_, out) = op(&mut w, 0, 5, status.as_bytes());
        let status = EvtchnStatus::read_from_bytes(&out).unwrap();
        assert_eq!((status.status, status.irq()), (EVTCHNSTAT_VIRQ, VIRQ_TIMER));
        let (ret, out) = op(&mut w, 0, 7, &[0u8; 8]);
        assert_eq!(ret, 0);
        let ipi = u32::from_le_bytes(out[4..8].try_into().unwrap());
        // Masked IPI: send sets pending only; unmask raises the upcall.
        w.events(0).set_mask(ipi);
        assert_eq!(op(&mut w, 0, 4, &ipi.to_le_bytes()).0, 0);
        assert!(!w.info(0, 0).upcall_pending());
        assert_eq!(op(&mut w, 0, 9, &ipi.to_le_bytes()).0, 0);
        assert!(w.info(0, 0).upcall_pending());
        assert_eq!(op(&mut w, 0, 9, &5000u32.to_le_bytes()).0, -22);
        // bind_vcpu: no vCPU 1 here.
        let mut rebind = [0u8; 8];
        rebind[..4].copy_from_slice(&ipi.to_le_bytes());
        rebind[4..].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(op(&mut w, 0, 8, &rebind).0, -2);
        // Reset closes everything.
        assert_eq!(op(&mut w, 0, 10, &DOMID_SELF.to_le_bytes()).0, 0);
        assert_eq!(w.runtime[0].events.open_count(), 0);
        // Sending on a closed port, FIFO operations.
        assert_eq!(op(&mut w, 0, 4, &ipi.to_le_bytes()).0, -22);
        assert_eq!(op(&mut w, 0, 11, &[0u8; 16]).0, -38);
    }

    #[test]
    fn the_compat_form_and_bad_pointers() {
        let mut w = Multi::new(1);
        // evtchn_op { cmd = bind_ipi, u.bind_ipi = { vcpu 0, port } }
        let mut raw = [0u8; 28];
        raw[..4].copy_from_slice(&7u32.to_le_bytes());
        w.put(0, 0, &raw);
        let (ret, _) = call(
            &mut w,
            0,
            Hypercall::EventChannelOpCompat,
            [BUF, 0, 0, 0, 0],
        )
        .unwrap();
        assert_eq!(ret, 0);
        assert_eq!(w.get(0, 8, 4), 1u32.to_le_bytes());
        let (ret, _) = call(&mut w, 0, OP, [6, 0x1000, 0, 0, 0]).unwrap();
        assert_eq!(ret, -14);
    }

    #[test]
    fn a_flood_of_allocations_stops_at_the_limit() {
        let mut w = Multi::new(2);
        let alloc = EvtchnAllocUnbound {
            dom: DOMID_SELF,
            remote_dom: 1,
            port: 0,
        };
        let mut last = 0;
        while last == 0 {
            let (ret, _) = op(&mut w, 1, 6, alloc.as_bytes());
            if ret < 0 {
                last = ret;
            }
        }
        assert_eq!(last, -28, "ENOSPC");
        assert_eq!(
            w.runtime[1].events.open_count(),
            crate::evtchn::MAX_PORTS - 1
        );
        // The other domain is unaffected.
        assert_eq!(op(&mut w, 0, 6, alloc.as_bytes()).0, 0);
        // An unprivileged domain cannot allocate in another.
        let foreign = EvtchnAllocUnbound {
            dom: 1,
            remote_dom: 2,
            port: 0,
        };
        assert_eq!(op(&mut w, 1, 6, foreign.as_bytes()).0, -1);
    }
}
