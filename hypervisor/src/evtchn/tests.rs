use super::shared::{Raised, SharedEvents};
use super::*;
use crate::mm::Mfn;
use crate::mm::fake::FakeMem;
use crate::vcpu_info::{VcpuInfoRef, shared_slot};
use pv_abi::xen::{
    VIRQ_ARGO, VIRQ_CON_RING, VIRQ_CONSOLE, VIRQ_DEBUG, VIRQ_ENOMEM, VIRQ_MEM_EVENT,
    VIRQ_PCPU_STATE, VIRQ_TIMER,
};

fn table() -> Box<EventTable> {
    Box::new(EventTable::new(2))
}

#[test]
fn ports_are_allocated_lowest_first_and_never_zero() {
    let mut t = table();
    assert_eq!(t.alloc_unbound(3), Ok(1));
    assert_eq!(t.bind_ipi(1), Ok(2));
    assert_eq!(t.close(1), Ok(Binding::Unbound { remote: 3 }));
    assert_eq!(t.bind_virq(VIRQ_TIMER, 0), Ok(1), "freed ports are reused");
    assert_eq!(t.open(0), Err(Errno::EINVAL));
    assert_eq!(t.close(0), Err(Errno::EINVAL));
    assert_eq!(t.close(5), Err(Errno::EINVAL), "closed");
    assert_eq!(
        t.close(MAX_PORTS as u32),
        Err(Errno::EINVAL),
        "out of range"
    );
    assert_eq!(t.open_count(), 2);
}

#[test]
fn the_per_domain_limit_holds() {
    let mut t = table();
    for expected in 1..MAX_PORTS as u32 {
        assert_eq!(t.alloc_unbound(2), Ok(expected));
    }
    assert_eq!(t.alloc_unbound(2), Err(Errno::ENOSPC));
    assert_eq!(t.bind_ipi(0), Err(Errno::ENOSPC));
}

#[test]
fn virq_rules() {
    let mut t = table();
    let timer0 = t.bind_virq(VIRQ_TIMER, 0).unwrap();
    assert_eq!(t.bind_virq(VIRQ_TIMER, 0), Err(Errno::EEXIST));
    let timer1 = t.bind_virq(VIRQ_TIMER, 1).unwrap();
    assert_eq!(t.virq_port(VIRQ_TIMER, 0), Some(timer0));
    assert_eq!(t.virq_port(VIRQ_TIMER, 1), Some(timer1));
    assert_eq!(t.virq_port(VIRQ_DEBUG, 0), None);
    assert_eq!(t.bind_virq(VIRQ_TIMER, 2), Err(Errno::ENOENT), "no vCPU 2");
    assert_eq!(t.bind_virq(NR_VIRQS, 0), Err(Errno::EINVAL));
    assert_eq!(
        t.bind_virq(VIRQ_CONSOLE, 1),
        Err(Errno::EINVAL),
        "global on vCPU 0 only"
    );
    let console = t.bind_virq(VIRQ_CONSOLE, 0).unwrap();
    // A per-vCPU VIRQ cannot move, a global one can; it stays recorded on vCPU 0, so
    // it cannot be bound a second time (Xen's EEXIST).
    assert_eq!(t.bind_vcpu(timer0, 1), Err(Errno::EINVAL));
    assert_eq!(t.bind_vcpu(console, 1), Ok(()));
    assert_eq!(t.virq_port(VIRQ_CONSOLE, 0), Some(console));
    assert_eq!(t.status(console).map(|s| s.1), Ok(1), "it notifies vCPU 1");
    assert_eq!(t.bind_virq(VIRQ_CONSOLE, 0), Err(Errno::EEXIST));
    // Xen's global set: all but timer, debug, oprofile and PMU.
    for virq in [
        VIRQ_CON_RING,
        VIRQ_PCPU_STATE,
        VIRQ_MEM_EVENT,
        VIRQ_ARGO,
        VIRQ_ENOMEM,
    ] {
        assert_eq!(
            t.bind_virq(virq, 1),
            Err(Errno::EINVAL),
            "virq {virq} is global"
        );
    }
    let debug1 = t.bind_virq(VIRQ_DEBUG, 1).unwrap();
    assert_eq!(
        t.bind_vcpu(debug1, 0),
        Err(Errno::EINVAL),
        "debug is per-vCPU"
    );
    t.close(console).unwrap();
    assert_eq!(
        t.virq_port(VIRQ_CONSOLE, 0),
        None,
        "closing a moved global VIRQ unbinds"
    );
    t.close(timer0).unwrap();
    assert_eq!(t.virq_port(VIRQ_TIMER, 0), None, "closing unbinds");
    assert_eq!(t.bind_virq(VIRQ_TIMER, 0), Ok(timer0));
}

#[test]
fn interdomain_halves_and_status() {
    let mut server = table();
    let mut client = table();
    let port = server.alloc_unbound(2).unwrap();
    assert!(server.is_unbound_for(port, 2));
    assert!(!server.is_unbound_for(port, 3));
    let local = client.connect_new(1, port).unwrap();
    server.connect(port, 2, local);
    assert_eq!(
        server.status(port).unwrap(),
        (
            EVTCHNSTAT_INTERDOMAIN,
            0,
            EvtchnStatusDetail {
                word0: 2,
                word1: local
            }
        )
    );
    // The client closes: the server's port waits for domain 2 again.
    assert_eq!(
        client.close(local),
        Ok(Binding::Interdomain {
            remote: 1,
            remote_port: port
        })
    );
    server.disconnect(port);
    assert!(server.is_unbound_for(port, 2));
    assert_eq!(client.status(local).unwrap().0, EVTCHNSTAT_CLOSED);
    assert_eq!(client.status(MAX_PORTS as u32), Err(Errno::EINVAL));
    let ipi = client.bind_ipi(1).unwrap();
    assert_eq!(client.status(ipi).unwrap().0, EVTCHNSTAT_IPI);
    assert_eq!(client.status(ipi).unwrap().1, 1);
    assert_eq!(client.bind_vcpu(ipi, 0), Err(Errno::EINVAL));
    let unbound = client.alloc_unbound(7).unwrap();
    assert_eq!(client.bind_vcpu(unbound, 1), Ok(()));
    assert_eq!(client.bind_vcpu(unbound, 9), Err(Errno::ENOENT));
    client.reset(2);
    assert_eq!(client.open_count(), 0);
}

const SHARED: Mfn = Mfn(1);

#[test]
fn raising_sets_pending_selector_and_upcall_once() {
    let mem = FakeMem::new(4);
    let events = SharedEvents::new(&mem, SHARED);
    let vcpu0 = VcpuInfoRef::at(&mem, shared_slot(SHARED, 0));
    let fresh = Raised {
        newly_pending: true,
        upcall: true,
    };
    assert_eq!(events.raise(&vcpu0, 70), fresh);
    assert!(events.is_pending(70));
    assert_eq!(vcpu0.selector(), 1 << 1);
    assert!(vcpu0.upcall_pending());
    // Coalesced: already pending.
    let nothing = Raised {
        newly_pending: false,
        upcall: false,
    };
    assert_eq!(events.raise(&vcpu0, 70), nothing);
    // Another port, same word: no new upcall.
    assert_eq!(
        events.raise(&vcpu0, 71),
        Raised {
            newly_pending: true,
            upcall: false
        }
    );
    // vCPU 1's slot is untouched.
    let vcpu1 = VcpuInfoRef::at(&mem, shared_slot(SHARED, 1));
    assert!(!vcpu1.upcall_pending());
    assert_eq!(vcpu1.selector(), 0);
}

#[test]
fn masked_ports_stay_quiet_until_unmasked() {
    let mem = FakeMem::new(4);
    let events = SharedEvents::new(&mem, SHARED);
    let info = VcpuInfoRef::at(&mem, shared_slot(SHARED, 0));
    events.set_mask(5);
    let raised = events.raise(&info, 5);
    assert!(raised.newly_pending && !raised.upcall);
    assert!(!info.upcall_pending());
    assert!(events.unmask(&info, 5), "unmasking a pending port raises");
    assert!(info.upcall_pending());
    assert!(!events.is_masked(5));
    assert!(!events.unmask(&info, 5), "not masked any more");
    events.clear_pending(5);
    assert!(!events.is_pending(5));
    // The mask bit does not stop the upcall flag's byte neighbour (the mask byte).
    info.set_upcall_mask(true);
    assert!(info.upcall_pending() && info.upcall_mask());
    assert!(!info.needs_delivery());
    info.set_upcall_mask(false);
    assert!(info.needs_delivery());
}

/// The express send of `entry.S` reads a port's channel as bytes: the tag byte of its
/// binding at `CHANNELS_OFFSET + port * size_of::<Channel>() + offset_of!(Channel,
/// binding)`, equal to `Binding::IPI_TAG` for an IPI and to nothing else, and the
/// notified vCPU as a u32 beside it. Read the table that way and compare with `open`.
#[test]
fn the_express_sends_view_of_a_table_is_the_tables() {
    use core::mem::{offset_of, size_of};
    let mut t = table();
    let unbound = t.alloc_unbound(3).unwrap();
    let ipi0 = t.bind_ipi(0).unwrap();
    let ipi1 = t.bind_ipi(1).unwrap();
    let virq = t.bind_virq(VIRQ_TIMER, 1).unwrap();
    let peer = t.connect_new(2, 7).unwrap();
    let base = (&*t as *const EventTable).cast::<u8>();
    let read = |port: u32, offset: usize, len: usize| -> u32 {
        let at = EventTable::CHANNELS_OFFSET + port as usize * size_of::<Channel>() + offset;
        assert!(at + len <= size_of::<EventTable>());
        let mut bytes = [0u8; 4];
        for (i, byte) in bytes.iter_mut().take(len).enumerate() {
            // SAFETY: `at + i` is inside the table (asserted above), which is
            // initialised memory; this reads its representation as the assembly does.
            *byte = unsafe { base.add(at + i).read() };
        }
        u32::from_le_bytes(bytes)
    };
    for port in 0..MAX_PORTS as u32 {
        let tag = read(port, offset_of!(Channel, binding), 1);
        let channel = t.get(port).unwrap();
        assert_eq!(
            tag == u32::from(Binding::IPI_TAG),
            channel.binding == Binding::Ipi,
            "port {port}: {channel:?}"
        );
        if channel.binding == Binding::Ipi {
            assert_eq!(read(port, offset_of!(Channel, vcpu), 4), channel.vcpu);
        }
    }
    assert_eq!(read(ipi0, offset_of!(Channel, vcpu), 4), 0);
    assert_eq!(read(ipi1, offset_of!(Channel, vcpu), 4), 1);
    for port in [unbound, virq, peer, 0] {
        assert_ne!(
            read(port, offset_of!(Channel, binding), 1),
            u32::from(Binding::IPI_TAG)
        );
    }
    // Closing an IPI port changes its tag.
    t.close(ipi1).unwrap();
    assert_ne!(
        read(ipi1, offset_of!(Channel, binding), 1),
        u32::from(Binding::IPI_TAG)
    );
}
