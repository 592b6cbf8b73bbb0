//! The xenstore wire protocol (`io/xs_wire.h`): message header and types, the error
//! names, and the shared ring page between a guest and the xenstore daemon.
//!
//! Every message is an [`XsdSockmsg`] header followed by `len` bytes of payload
//! (usually NUL-separated strings); errors come back as [`XS_ERROR`] with the error's
//! name (`"EINVAL"`) as payload.

use core::mem::offset_of;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::byte_ring::ByteRingLayout;
use crate::errno::Errno;

/// Daemon control; also `XS_DEBUG`.
pub const XS_CONTROL: u32 = 0;
/// Alias of [`XS_CONTROL`].
pub const XS_DEBUG: u32 = XS_CONTROL;
/// List a directory.
pub const XS_DIRECTORY: u32 = 1;
/// Read a node.
pub const XS_READ: u32 = 2;
/// Read a node's permissions.
pub const XS_GET_PERMS: u32 = 3;
/// Watch a path.
pub const XS_WATCH: u32 = 4;
/// Stop watching.
pub const XS_UNWATCH: u32 = 5;
/// Start a transaction.
pub const XS_TRANSACTION_START: u32 = 6;
/// Commit or abort a transaction.
pub const XS_TRANSACTION_END: u32 = 7;
/// Introduce a domain (privileged).
pub const XS_INTRODUCE: u32 = 8;
/// Release a domain (privileged).
pub const XS_RELEASE: u32 = 9;
/// Get a domain's home path.
pub const XS_GET_DOMAIN_PATH: u32 = 10;
/// Write a node.
pub const XS_WRITE: u32 = 11;
/// Create a directory node.
pub const XS_MKDIR: u32 = 12;
/// Remove a node.
pub const XS_RM: u32 = 13;
/// Set a node's permissions.
pub const XS_SET_PERMS: u32 = 14;
/// Asynchronous watch event (daemon to client).
pub const XS_WATCH_EVENT: u32 = 15;
/// Error reply; payload is the error name.
pub const XS_ERROR: u32 = 16;
/// Is a domain introduced? (privileged)
pub const XS_IS_DOMAIN_INTRODUCED: u32 = 17;
/// Resume a domain (privileged).
pub const XS_RESUME: u32 = 18;
/// Set a domain's target (privileged).
pub const XS_SET_TARGET: u32 = 19;
/// Reset all of the caller's watches (20 was `XS_RESTRICT`, removed).
pub const XS_RESET_WATCHES: u32 = XS_SET_TARGET + 2;
/// List part of a large directory.
pub const XS_DIRECTORY_PART: u32 = 22;
/// Number of message types.
pub const XS_TYPE_COUNT: u32 = 23;
/// A type guaranteed never to be valid.
pub const XS_INVALID: u32 = 0xffff;

/// `XS_WRITE` mode string: no creation flags.
pub const XS_WRITE_NONE: &str = "NONE";
/// `XS_WRITE` mode string: create.
pub const XS_WRITE_CREATE: &str = "CREATE";
/// `XS_WRITE` mode string: create, failing if it exists.
pub const XS_WRITE_CREATE_EXCL: &str = "CREATE|EXCL";

/// Errors the daemon reports, in Xen's table order (new ones are only appended).
pub const XSD_ERRORS: [(Errno, &str); 16] = [
    (Errno::EINVAL, "EINVAL"),
    (Errno::EACCES, "EACCES"),
    (Errno::EEXIST, "EEXIST"),
    (Errno::EISDIR, "EISDIR"),
    (Errno::ENOENT, "ENOENT"),
    (Errno::ENOMEM, "ENOMEM"),
    (Errno::ENOSPC, "ENOSPC"),
    (Errno::EIO, "EIO"),
    (Errno::ENOTEMPTY, "ENOTEMPTY"),
    (Errno::ENOSYS, "ENOSYS"),
    (Errno::EROFS, "EROFS"),
    (Errno::EBUSY, "EBUSY"),
    (Errno::EAGAIN, "EAGAIN"),
    (Errno::EISCONN, "EISCONN"),
    (Errno::E2BIG, "E2BIG"),
    (Errno::EPERM, "EPERM"),
];

/// The error named by an `XS_ERROR` payload (a trailing NUL is ignored).
pub fn xsd_error(name: &[u8]) -> Option<Errno> {
    let name = name.strip_suffix(b"\0").unwrap_or(name);
    XSD_ERRORS
        .iter()
        .find(|(_, n)| n.as_bytes() == name)
        .map(|(e, _)| *e)
}

/// Message header (`struct xsd_sockmsg`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XsdSockmsg {
    /// `XS_*`.
    pub r#type: u32,
    /// Request id, echoed in the reply.
    pub req_id: u32,
    /// Transaction id, 0 outside transactions.
    pub tx_id: u32,
    /// Payload length.
    pub len: u32,
}
const _: () = assert!(size_of::<XsdSockmsg>() == 16);

/// Index of the path in an `XS_WATCH_EVENT` payload.
pub const XS_WATCH_PATH: u32 = 0;
/// Index of the token in an `XS_WATCH_EVENT` payload.
pub const XS_WATCH_TOKEN: u32 = 1;

/// Size of each direction of the xenstore ring.
pub const XENSTORE_RING_SIZE: usize = 1024;
/// A xenstore ring index (`XENSTORE_RING_IDX`).
pub type XenstoreRingIdx = u32;

/// `idx` reduced to a position in a xenstore ring array (`MASK_XENSTORE_IDX`).
pub const fn mask_xenstore_idx(idx: XenstoreRingIdx) -> usize {
    idx as usize & (XENSTORE_RING_SIZE - 1)
}

/// The xenstore page (`struct xenstore_domain_interface`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct XenstoreDomainInterface {
    /// Requests to the daemon.
    pub req: [u8; XENSTORE_RING_SIZE],
    /// Replies and watch events.
    pub rsp: [u8; XENSTORE_RING_SIZE],
    /// Request consumer index (daemon).
    pub req_cons: XenstoreRingIdx,
    /// Request producer index (guest).
    pub req_prod: XenstoreRingIdx,
    /// Reply consumer index (guest).
    pub rsp_cons: XenstoreRingIdx,
    /// Reply producer index (daemon).
    pub rsp_prod: XenstoreRingIdx,
    /// `XENSTORE_SERVER_FEATURE_*` supported by the daemon.
    pub server_features: u32,
    /// `XENSTORE_CONNECTED` or `XENSTORE_RECONNECT`.
    pub connection: u32,
    /// `XENSTORE_ERROR_*`.
    pub error: u32,
}
const _: () = assert!(size_of::<XenstoreDomainInterface>() == 2076);

/// The request direction (guest writes) of a xenstore page.
pub const XENSTORE_REQ_LAYOUT: ByteRingLayout = ByteRingLayout {
    data: offset_of!(XenstoreDomainInterface, req),
    size: XENSTORE_RING_SIZE as u32,
    cons: offset_of!(XenstoreDomainInterface, req_cons),
    prod: offset_of!(XenstoreDomainInterface, req_prod),
};

/// The reply direction (guest reads) of a xenstore page.
pub const XENSTORE_RSP_LAYOUT: ByteRingLayout = ByteRingLayout {
    data: offset_of!(XenstoreDomainInterface, rsp),
    size: XENSTORE_RING_SIZE as u32,
    cons: offset_of!(XenstoreDomainInterface, rsp_cons),
    prod: offset_of!(XenstoreDomainInterface, rsp_prod),
};

/// Largest payload of one message.
pub const XENSTORE_PAYLOAD_MAX: u32 = 4096;
/// Longest absolute path.
pub const XENSTORE_ABS_PATH_MAX: u32 = 3072;
/// Longest relative path.
pub const XENSTORE_REL_PATH_MAX: u32 = 2048;
/// Server feature: the ring can be reconnected.
pub const XENSTORE_SERVER_FEATURE_RECONNECTION: u32 = 1;
/// Server feature: the `error` field is used.
pub const XENSTORE_SERVER_FEATURE_ERROR: u32 = 2;
/// `connection`: steady state.
pub const XENSTORE_CONNECTED: u32 = 0;
/// `connection`: reconnect in progress.
pub const XENSTORE_RECONNECT: u32 = 1;
/// `error`: none.
pub const XENSTORE_ERROR_NONE: u32 = 0;
/// `error`: communication problem.
pub const XENSTORE_ERROR_COMM: u32 = 1;
/// `error`: invalid ring index.
pub const XENSTORE_ERROR_RINGIDX: u32 = 2;
/// `error`: protocol violation (payload too long).
pub const XENSTORE_ERROR_PROTO: u32 = 3;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names() {
        assert_eq!(xsd_error(b"ENOENT\0"), Some(Errno::ENOENT));
        assert_eq!(xsd_error(b"EWHAT"), None);
        for (e, n) in XSD_ERRORS {
            assert_eq!(e.name(), n);
        }
        assert_eq!(mask_xenstore_idx(1025), 1);
    }
}
