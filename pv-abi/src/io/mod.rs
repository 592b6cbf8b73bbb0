//! Split-driver protocols (`xen/io/`): the shared ring and the wire formats of the
//! console, xenstore, xenbus, block and network devices.

pub mod ring;
