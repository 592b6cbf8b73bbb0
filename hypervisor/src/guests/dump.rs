//! The debug keys' dumps: domains and their vCPUs, and every event channel.

use super::Guests;
use crate::evtchn::shared::SharedEvents;
use crate::mm::PhysMem;
use crate::sched::VcpuRef;
use crate::vcpu_info::VcpuInfoRef;

impl<M: PhysMem> Guests<'_, M> {
    /// Writes every domain and its vCPUs (debug key `q`).
    pub fn dump_domains(&self, out: &mut dyn core::fmt::Write) -> core::fmt::Result {
        self.dump(out, true, false)
    }

    /// Writes every domain's event channels (debug key `e`).
    pub fn dump_events(&self, out: &mut dyn core::fmt::Write) -> core::fmt::Result {
        self.dump(out, false, true)
    }

    fn dump(&self, out: &mut dyn core::fmt::Write, vcpus: bool, ports: bool) -> core::fmt::Result {
        for (slot, domain) in self
            .domains
            .iter()
            .enumerate()
            .filter_map(|(s, d)| d.as_ref().map(|d| (s, d)))
        {
            writeln!(
                out,
                "domain {} ({}): {:?}, {} pages, {} vCPU(s), cpu {} us",
                domain.id,
                domain.name,
                domain.state,
                domain.nr_pages,
                self.vcpu_count(slot),
                self.sched.cpu_time(slot) / 1000
            )?;
            if !domain.is_running() {
                continue;
            }
            for vcpu in 0..self.vcpu_count(slot) * u32::from(vcpus) {
                let v = VcpuRef {
                    slot,
                    vcpu: vcpu as usize,
                };
                let info = self
                    .vcpu_info_addr(slot, vcpu)
                    .map(|a| VcpuInfoRef::at(self.mem, a));
                let (pending, masked, sel) = info.map_or((false, false, 0), |i| {
                    (i.upcall_pending(), i.upcall_mask(), i.selector())
                });
                let runtime = &self.runtime[slot].vcpus[vcpu as usize];
                writeln!(
                    out,
                    "  vcpu {vcpu}: {:?}, upcall pending {} mask {} sel {sel:#x}, timers {:?}{}",
                    self.sched.state(v),
                    u8::from(pending),
                    u8::from(masked),
                    runtime.timers,
                    if runtime.polling.is_empty() {
                        ""
                    } else {
                        " (polling)"
                    }
                )?;
            }
            let events = SharedEvents::new(self.mem, domain.shared_info);
            for (port, channel) in self.runtime[slot].events.open_ports().filter(|_| ports) {
                writeln!(
                    out,
                    "  port {port}: {:?} vcpu {} pending {} masked {}",
                    channel.binding,
                    channel.vcpu,
                    u8::from(events.is_pending(port)),
                    u8::from(events.is_masked(port))
                )?;
            }
        }
        Ok(())
    }
}
