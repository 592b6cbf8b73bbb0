//! Event channels (`xen/event_channel.h`).

/// An event-channel port number (`evtchn_port_t`).
pub type EvtchnPort = u32;
