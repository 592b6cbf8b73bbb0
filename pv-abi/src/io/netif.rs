//! The network device protocol (`io/netif.h`): a transmit ring and a receive ring of
//! small descriptors naming granted pages, optional "extra info" slots for offloads and
//! multicast, and a control ring for hashing configuration.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::ring::{SharedRing, ring_entries};
use crate::grant_table::GrantRef;

/// Minimum number of slots a packet may use that a backend must accept.
pub const XEN_NETIF_NR_SLOTS_MIN: u32 = 18;

/// Hash type bit number: IPv4 addresses.
pub const XEN_NETIF_CTRL_HASH_TYPE_IPV4_BIT: u32 = 0;
/// Hash type: IPv4 addresses.
pub const XEN_NETIF_CTRL_HASH_TYPE_IPV4: u32 = 1 << XEN_NETIF_CTRL_HASH_TYPE_IPV4_BIT;
/// Hash type bit number: IPv4 addresses and TCP ports.
pub const XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP_BIT: u32 = 1;
/// Hash type: IPv4 addresses and TCP ports.
pub const XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP: u32 = 1 << XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP_BIT;
/// Hash type bit number: IPv6 addresses.
pub const XEN_NETIF_CTRL_HASH_TYPE_IPV6_BIT: u32 = 2;
/// Hash type: IPv6 addresses.
pub const XEN_NETIF_CTRL_HASH_TYPE_IPV6: u32 = 1 << XEN_NETIF_CTRL_HASH_TYPE_IPV6_BIT;
/// Hash type bit number: IPv6 addresses and TCP ports.
pub const XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP_BIT: u32 = 3;
/// Hash type: IPv6 addresses and TCP ports.
pub const XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP: u32 = 1 << XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP_BIT;
/// Hash algorithm: none.
pub const XEN_NETIF_CTRL_HASH_ALGORITHM_NONE: u32 = 0;
/// Hash algorithm: Toeplitz.
pub const XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ: u32 = 1;

/// Control message type: invalid.
pub const XEN_NETIF_CTRL_TYPE_INVALID: u16 = 0;
/// Control message type: get supported hash types.
pub const XEN_NETIF_CTRL_TYPE_GET_HASH_FLAGS: u16 = 1;
/// Control message type: set hash types.
pub const XEN_NETIF_CTRL_TYPE_SET_HASH_FLAGS: u16 = 2;
/// Control message type: set the hash key.
pub const XEN_NETIF_CTRL_TYPE_SET_HASH_KEY: u16 = 3;
/// Control message type: get the maximum mapping table size.
pub const XEN_NETIF_CTRL_TYPE_GET_HASH_MAPPING_SIZE: u16 = 4;
/// Control message type: set the mapping table size.
pub const XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING_SIZE: u16 = 5;
/// Control message type: set mapping table entries.
pub const XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING: u16 = 6;
/// Control message type: select the hash algorithm.
pub const XEN_NETIF_CTRL_TYPE_SET_HASH_ALGORITHM: u16 = 7;
/// Control message type: get the maximum number of grant mappings.
pub const XEN_NETIF_CTRL_TYPE_GET_GREF_MAPPING_SIZE: u16 = 8;
/// Control message type: add grant mappings.
pub const XEN_NETIF_CTRL_TYPE_ADD_GREF_MAPPING: u16 = 9;
/// Control message type: remove grant mappings.
pub const XEN_NETIF_CTRL_TYPE_DEL_GREF_MAPPING: u16 = 10;
/// Control status: success.
pub const XEN_NETIF_CTRL_STATUS_SUCCESS: u32 = 0;
/// Control status: not supported.
pub const XEN_NETIF_CTRL_STATUS_NOT_SUPPORTED: u32 = 1;
/// Control status: invalid parameter.
pub const XEN_NETIF_CTRL_STATUS_INVALID_PARAMETER: u32 = 2;
/// Control status: buffer overflow.
pub const XEN_NETIF_CTRL_STATUS_BUFFER_OVERFLOW: u32 = 3;
/// [`XenNetifGref::flags`]: map read-only.
pub const XEN_NETIF_CTRLF_GREF_READONLY: u16 = 1 << 0;

/// A control request (`struct xen_netif_ctrl_request`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenNetifCtrlRequest {
    /// Echoed in the response.
    pub id: u16,
    /// `XEN_NETIF_CTRL_TYPE_*`.
    pub r#type: u16,
    /// Type-specific data.
    pub data: [u32; 3],
}
const _: () = assert!(size_of::<XenNetifCtrlRequest>() == 16);

/// A control response (`struct xen_netif_ctrl_response`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenNetifCtrlResponse {
    /// The request's id.
    pub id: u16,
    /// The request's type.
    pub r#type: u16,
    /// `XEN_NETIF_CTRL_STATUS_*`.
    pub status: u32,
    /// Type-specific data.
    pub data: u32,
}
const _: () = assert!(size_of::<XenNetifCtrlResponse>() == 12);

/// A grant mapping entry of the control protocol (`struct xen_netif_gref`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenNetifGref {
    /// The grant.
    pub r#ref: GrantRef,
    /// `XEN_NETIF_CTRLF_GREF_*`.
    pub flags: u16,
    /// Out: `XEN_NETIF_CTRL_STATUS_*`.
    pub status: u16,
}
const _: () = assert!(size_of::<XenNetifGref>() == 8);

/// Transmit flag: the checksum is blank (to be computed by the backend).
pub const NETTXF_CSUM_BLANK: u16 = 1 << 0;
/// Transmit flag: the data was validated.
pub const NETTXF_DATA_VALIDATED: u16 = 1 << 1;
/// Transmit flag: the packet continues in the next request.
pub const NETTXF_MORE_DATA: u16 = 1 << 2;
/// Transmit flag: extra-info slots follow.
pub const NETTXF_EXTRA_INFO: u16 = 1 << 3;
/// Largest packet a transmit request can describe.
pub const XEN_NETIF_MAX_TX_SIZE: u32 = 0xFFFF;

/// A transmit request (`struct netif_tx_request`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct NetifTxRequest {
    /// Grant of the page holding the data.
    pub gref: GrantRef,
    /// Offset of the data in the page.
    pub offset: u16,
    /// `NETTXF_*`.
    pub flags: u16,
    /// Echoed in the response.
    pub id: u16,
    /// First slot: total packet size; following slots: this fragment's size.
    pub size: u16,
}
const _: () = assert!(size_of::<NetifTxRequest>() == 12);

/// Extra-info type: invalid.
pub const XEN_NETIF_EXTRA_TYPE_NONE: u8 = 0;
/// Extra-info type: segmentation offload.
pub const XEN_NETIF_EXTRA_TYPE_GSO: u8 = 1;
/// Extra-info type: add a multicast address.
pub const XEN_NETIF_EXTRA_TYPE_MCAST_ADD: u8 = 2;
/// Extra-info type: remove a multicast address.
pub const XEN_NETIF_EXTRA_TYPE_MCAST_DEL: u8 = 3;
/// Extra-info type: hash value.
pub const XEN_NETIF_EXTRA_TYPE_HASH: u8 = 4;
/// Number of extra-info types.
pub const XEN_NETIF_EXTRA_TYPE_MAX: u8 = 5;
/// Extra-info flag: another extra-info slot follows.
pub const XEN_NETIF_EXTRA_FLAG_MORE: u8 = 1 << 0;
/// GSO type: none.
pub const XEN_NETIF_GSO_TYPE_NONE: u8 = 0;
/// GSO type: TCP over IPv4.
pub const XEN_NETIF_GSO_TYPE_TCPV4: u8 = 1;
/// GSO type: TCP over IPv6.
pub const XEN_NETIF_GSO_TYPE_TCPV6: u8 = 2;

/// An extra-info slot (`struct netif_extra_info`); `u` is the C union of the GSO,
/// multicast and hash views, as the six bytes after `flags`.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct NetifExtraInfo {
    /// `XEN_NETIF_EXTRA_TYPE_*`.
    pub r#type: u8,
    /// `XEN_NETIF_EXTRA_FLAG_*`.
    pub flags: u8,
    /// The type-specific part, as 16-bit words.
    pub u: [u16; 3],
}
const _: () = assert!(size_of::<NetifExtraInfo>() == 8);

impl NetifExtraInfo {
    /// GSO view: `(size, type, features)`.
    pub fn gso(&self) -> (u16, u8, u16) {
        let b = self.u.as_bytes();
        (self.u[0], b[2], self.u[2])
    }
    /// A GSO slot.
    pub fn new_gso(flags: u8, size: u16, gso_type: u8, features: u16) -> Self {
        NetifExtraInfo {
            r#type: XEN_NETIF_EXTRA_TYPE_GSO,
            flags,
            u: [size, u16::from(gso_type), features],
        }
    }
    /// Multicast view: the MAC address.
    pub fn mcast_addr(&self) -> [u8; 6] {
        let mut addr = [0; 6];
        addr.copy_from_slice(self.u.as_bytes());
        addr
    }
    /// Hash view: `(type, algorithm, value)`.
    pub fn hash(&self) -> (u8, u8, [u8; 4]) {
        let b = self.u.as_bytes();
        (b[0], b[1], [b[2], b[3], b[4], b[5]])
    }
}

/// A transmit response (`struct netif_tx_response`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct NetifTxResponse {
    /// The request's id.
    pub id: u16,
    /// `NETIF_RSP_*`.
    pub status: i16,
}
const _: () = assert!(size_of::<NetifTxResponse>() == 4);

/// A receive request: a buffer page offered to the backend (`struct netif_rx_request`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct NetifRxRequest {
    /// Echoed in the response.
    pub id: u16,
    /// Padding.
    pub pad: u16,
    /// Grant of the buffer page.
    pub gref: GrantRef,
}
const _: () = assert!(size_of::<NetifRxRequest>() == 8);

/// Receive flag: the data was validated.
pub const NETRXF_DATA_VALIDATED: u16 = 1 << 0;
/// Receive flag: the checksum is blank.
pub const NETRXF_CSUM_BLANK: u16 = 1 << 1;
/// Receive flag: the packet continues in the next response.
pub const NETRXF_MORE_DATA: u16 = 1 << 2;
/// Receive flag: extra-info slots follow.
pub const NETRXF_EXTRA_INFO: u16 = 1 << 3;
/// Receive flag: GSO prefix (deprecated).
pub const NETRXF_GSO_PREFIX: u16 = 1 << 4;

/// A receive response (`struct netif_rx_response`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct NetifRxResponse {
    /// The request's id.
    pub id: u16,
    /// Offset of the data in the page.
    pub offset: u16,
    /// `NETRXF_*`.
    pub flags: u16,
    /// Negative `NETIF_RSP_*` on error, else the data size.
    pub status: i16,
}
const _: () = assert!(size_of::<NetifRxResponse>() == 8);

/// Response status: packet dropped.
pub const NETIF_RSP_DROPPED: i16 = -2;
/// Response status: error.
pub const NETIF_RSP_ERROR: i16 = -1;
/// Response status: success.
pub const NETIF_RSP_OKAY: i16 = 0;
/// Response status: no response (padding for an extra-info request).
pub const NETIF_RSP_NULL: i16 = 1;

/// The transmit ring (`netif_tx_sring`).
pub type NetifTxSharedRing<'a> = SharedRing<'a, NetifTxRequest, NetifTxResponse>;
/// The receive ring (`netif_rx_sring`).
pub type NetifRxSharedRing<'a> = SharedRing<'a, NetifRxRequest, NetifRxResponse>;
/// The control ring (`xen_netif_ctrl_sring`).
pub type NetifCtrlSharedRing<'a> = SharedRing<'a, XenNetifCtrlRequest, XenNetifCtrlResponse>;

/// Slots in a one-page transmit ring.
pub const NET_TX_RING_SIZE: u32 = ring_entries::<NetifTxRequest, NetifTxResponse>(4096);
/// Slots in a one-page receive ring.
pub const NET_RX_RING_SIZE: u32 = ring_entries::<NetifRxRequest, NetifRxResponse>(4096);
const _: () = assert!(NET_TX_RING_SIZE == 256 && NET_RX_RING_SIZE == 256);

/// The Toeplitz hash of `buf` with `key`, as the control protocol defines it.
pub fn toeplitz_hash(key: &[u8], buf: &[u8]) -> u32 {
    let key_byte = |i: usize| key.get(i).copied().unwrap_or(0);
    let mut prefix: u64 = 0;
    for i in 0..8 {
        prefix = prefix << 8 | u64::from(key_byte(i));
    }
    let mut hash: u64 = 0;
    for (next_key, &byte) in (8..).zip(buf) {
        let mut byte = byte;
        for _ in 0..8 {
            if byte & 0x80 != 0 {
                hash ^= prefix;
            }
            prefix <<= 1;
            byte <<= 1;
        }
        prefix |= u64::from(key_byte(next_key));
    }
    (hash >> 32) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_info_views() {
        let g =
            NetifExtraInfo::new_gso(XEN_NETIF_EXTRA_FLAG_MORE, 1448, XEN_NETIF_GSO_TYPE_TCPV4, 0);
        assert_eq!(g.gso(), (1448, XEN_NETIF_GSO_TYPE_TCPV4, 0));
        let m = NetifExtraInfo {
            u: [0x1100, 0x3322, 0x5544],
            ..Default::default()
        };
        assert_eq!(m.mcast_addr(), [0x00, 0x11, 0x22, 0x33, 0x44, 0x55]);
        assert_eq!(m.hash(), (0x00, 0x11, [0x22, 0x33, 0x44, 0x55]));
    }

    #[test]
    fn toeplitz_reference_vector() {
        // Microsoft's RSS verification suite: 66.9.149.187:2794 -> 161.142.100.80:1766,
        // IPv4 only (source address then destination address).
        let key = [
            0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3,
            0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3,
            0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
        ];
        let input = [66, 9, 149, 187, 161, 142, 100, 80];
        assert_eq!(toeplitz_hash(&key, &input), 0x323e_8fc2);
    }
}
