//! Split-driver protocols (`xen/io/`): the shared ring and the wire formats of the
//! console, xenstore, xenbus, block and network devices.

pub mod blkif;
pub mod byte_ring;
pub mod console;
pub mod netif;
pub mod ring;
pub mod xenbus;
pub mod xs_wire;
