//! Scheduler operations of the `sched_op` hypercall (`xen/sched.h`).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::event_channel::EvtchnPort;

/// Give up the CPU voluntarily; no argument.
pub const SCHEDOP_YIELD: u32 = 0;
/// Block until an event is pending; unmasks event upcalls. No argument.
pub const SCHEDOP_BLOCK: u32 = 1;
/// Shut the calling domain down; argument [`SchedShutdown`].
pub const SCHEDOP_SHUTDOWN: u32 = 2;
/// Block until one of a set of ports is pending or a timeout; argument [`SchedPoll`].
pub const SCHEDOP_POLL: u32 = 3;
/// Shut another domain down (privileged); argument [`SchedRemoteShutdown`].
pub const SCHEDOP_REMOTE_SHUTDOWN: u32 = 4;
/// Record a shutdown reason without shutting down; argument [`SchedShutdown`].
pub const SCHEDOP_SHUTDOWN_CODE: u32 = 5;
/// Create, feed or destroy a watchdog; argument [`SchedWatchdog`].
pub const SCHEDOP_WATCHDOG: u32 = 6;
/// Temporarily pin the VCPU to a physical CPU (hardware domain); argument
/// [`SchedPinOverride`].
pub const SCHEDOP_PIN_OVERRIDE: u32 = 7;

/// Shutdown reason: normal exit, clean up and destroy.
pub const SHUTDOWN_POWEROFF: u32 = 0;
/// Shutdown reason: destroy and restart.
pub const SHUTDOWN_REBOOT: u32 = 1;
/// Shutdown reason: save state for a later resume; the call returns on resume.
pub const SHUTDOWN_SUSPEND: u32 = 2;
/// Shutdown reason: the guest crashed.
pub const SHUTDOWN_CRASH: u32 = 3;
/// Shutdown reason: the watchdog expired.
pub const SHUTDOWN_WATCHDOG: u32 = 4;
/// Shutdown reason: reset the domain in place, keeping its memory.
pub const SHUTDOWN_SOFT_RESET: u32 = 5;
/// The largest valid shutdown reason.
pub const SHUTDOWN_MAX: u32 = 5;

/// Argument of [`SCHEDOP_SHUTDOWN`] and [`SCHEDOP_SHUTDOWN_CODE`].
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct SchedShutdown {
    /// `SHUTDOWN_*`.
    pub reason: u32,
}
const _: () = assert!(size_of::<SchedShutdown>() == 4);

/// Argument of [`SCHEDOP_POLL`].
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct SchedPoll {
    /// Guest pointer to an array of [`EvtchnPort`].
    pub ports: u64,
    /// Number of ports in the array.
    pub nr_ports: u32,
    /// Padding.
    pub pad0: u32,
    /// Absolute system time (ns) at which to give up; 0 for none.
    pub timeout: u64,
}
const _: () = assert!(size_of::<SchedPoll>() == 24);

/// Argument of [`SCHEDOP_REMOTE_SHUTDOWN`].
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct SchedRemoteShutdown {
    /// The domain to shut down.
    pub domain_id: u16,
    /// Padding.
    pub pad0: u16,
    /// `SHUTDOWN_*`.
    pub reason: u32,
}
const _: () = assert!(size_of::<SchedRemoteShutdown>() == 8);

/// Argument of [`SCHEDOP_WATCHDOG`]: `id == 0` creates a watchdog (its id is returned),
/// a non-zero `id` with non-zero `timeout` feeds it, with zero `timeout` destroys it.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct SchedWatchdog {
    /// Watchdog id.
    pub id: u32,
    /// Timeout in seconds.
    pub timeout: u32,
}
const _: () = assert!(size_of::<SchedWatchdog>() == 8);

/// Argument of [`SCHEDOP_PIN_OVERRIDE`].
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct SchedPinOverride {
    /// Physical CPU, or negative to drop the override.
    pub pcpu: i32,
}
const _: () = assert!(size_of::<SchedPinOverride>() == 4);

/// The port type polled by [`SchedPoll`] (re-exported for convenience).
pub type PollPort = EvtchnPort;
