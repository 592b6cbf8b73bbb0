//! `sysctl`: machine-wide control for a privileged domain. Only
//! `XEN_SYSCTL_debug_keys` is offered (what `xl debug-keys` issues): the keys are
//! handed to the machine, which handles them as if typed on the hypervisor console.

use super::global::{GlobalCall, MAX_DEBUG_KEYS};
use crate::mm::PhysMem;
use pv_abi::errno::Errno;
use pv_abi::sysctl::{XEN_SYSCTL_DEBUG_KEYS, XEN_SYSCTL_INTERFACE_VERSION, XenSysctl};

pub(super) fn sysctl<M: PhysMem>(call: &mut GlobalCall<'_, M>, arg: u64) -> Result<u64, Errno> {
    if !call.domain().privileged {
        return Err(Errno::EPERM);
    }
    let guest = call.guest();
    let request: XenSysctl = guest.read_obj(arg)?;
    if request.interface_version != XEN_SYSCTL_INTERFACE_VERSION {
        return Err(Errno::EACCES);
    }
    match request.cmd {
        XEN_SYSCTL_DEBUG_KEYS => {
            let keys = request.debug_keys_arg();
            let count = keys.nr_keys as usize;
            if count > MAX_DEBUG_KEYS {
                return Err(Errno::E2BIG);
            }
            let mut buffer = [0u8; MAX_DEBUG_KEYS];
            guest.read(keys.keys, &mut buffer[..count])?;
            call.debug_keys.clear();
            // Cannot overflow: `count` is at most the capacity.
            let _ = call.debug_keys.extend_from_slice(&buffer[..count]);
            Ok(0)
        }
        _ => Err(Errno::ENOSYS),
    }
}

#[cfg(test)]
mod tests {
    use super::super::global::tests::call_keys;
    use crate::guests::tests::{BUF, Multi};
    use pv_abi::sysctl::XenSysctl;
    use zerocopy::IntoBytes;

    #[test]
    fn debug_keys_for_the_privileged_domain_only() {
        let mut w = Multi::new(2);
        let request = XenSysctl::debug_keys(BUF + 0x200, 3);
        for slot in 0..2 {
            w.put(slot, 0, request.as_bytes());
            w.put(slot, 0x200, b"qre");
        }
        assert_eq!(call_keys(&mut w, 0, BUF), (0, b"qre".to_vec()));
        assert_eq!(call_keys(&mut w, 1, BUF), (-1, Vec::new()), "EPERM");
        let mut stale = request;
        stale.interface_version = 0x14;
        w.put(0, 0, stale.as_bytes());
        assert_eq!(call_keys(&mut w, 0, BUF).0, -13, "EACCES");
        let mut other = request;
        other.cmd = 3;
        w.put(0, 0, other.as_bytes());
        assert_eq!(call_keys(&mut w, 0, BUF).0, -38);
        let many = XenSysctl::debug_keys(BUF + 0x200, 1000);
        w.put(0, 0, many.as_bytes());
        assert_eq!(call_keys(&mut w, 0, BUF).0, -7, "E2BIG");
    }
}
