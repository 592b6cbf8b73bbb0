//! The PV console page (`io/console.h`): input and output byte rings shared by a guest
//! and its console backend, announced by `start_info.console` (domU) and signalled on
//! the console event channel.

use core::mem::offset_of;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::byte_ring::ByteRingLayout;

/// A console ring index (`XENCONS_RING_IDX`).
pub type XenconsRingIdx = u32;

/// Size of the input (backend to guest) array.
pub const XENCONS_IN_SIZE: usize = 1024;
/// Size of the output (guest to backend) array.
pub const XENCONS_OUT_SIZE: usize = 2048;

/// The console page (`struct xencons_interface`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct XenconsInterface {
    /// Input bytes (backend produces, guest consumes).
    pub r#in: [u8; XENCONS_IN_SIZE],
    /// Output bytes (guest produces, backend consumes).
    pub out: [u8; XENCONS_OUT_SIZE],
    /// Input consumer index.
    pub in_cons: XenconsRingIdx,
    /// Input producer index.
    pub in_prod: XenconsRingIdx,
    /// Output consumer index.
    pub out_cons: XenconsRingIdx,
    /// Output producer index.
    pub out_prod: XenconsRingIdx,
}
const _: () = assert!(size_of::<XenconsInterface>() == 3088);

/// The output direction (guest writes) of a console page.
pub const XENCONS_OUT_LAYOUT: ByteRingLayout = ByteRingLayout {
    data: offset_of!(XenconsInterface, out),
    size: XENCONS_OUT_SIZE as u32,
    cons: offset_of!(XenconsInterface, out_cons),
    prod: offset_of!(XenconsInterface, out_prod),
};

/// The input direction (guest reads) of a console page.
pub const XENCONS_IN_LAYOUT: ByteRingLayout = ByteRingLayout {
    data: offset_of!(XenconsInterface, r#in),
    size: XENCONS_IN_SIZE as u32,
    cons: offset_of!(XenconsInterface, in_cons),
    prod: offset_of!(XenconsInterface, in_prod),
};

/// `idx` reduced to a position in an array of `size` bytes (`MASK_XENCONS_IDX`).
pub const fn mask_xencons_idx(idx: XenconsRingIdx, size: usize) -> usize {
    idx as usize & (size - 1)
}

#[cfg(test)]
mod tests {
    use super::super::byte_ring::{ByteRingConsumer, ByteRingError, ByteRingProducer};
    use super::*;
    use crate::page::Page;

    #[test]
    fn output_round_trip_and_hostile_index() {
        let mut page = Page::zeroed();
        let base = page.0.as_mut_ptr();
        // SAFETY: `page` outlives both handles and is used only through them here.
        let (mut tx, mut rx) = unsafe {
            (
                ByteRingProducer::from_raw(base, XENCONS_OUT_LAYOUT).unwrap(),
                ByteRingConsumer::from_raw(base, XENCONS_OUT_LAYOUT).unwrap(),
            )
        };
        let msg = [b'x'; 3000];
        assert_eq!(tx.write(&msg), Ok(2048));
        assert_eq!(tx.write(b"more"), Ok(0));
        let mut buf = [0u8; 100];
        assert_eq!(rx.read(&mut buf), Ok(100));
        assert_eq!(tx.write(b"hello"), Ok(5));
        assert_eq!(rx.available(), Ok(2048 - 100 + 5));
        let mut all = [0u8; 4096];
        assert_eq!(rx.read(&mut all), Ok(1953));
        assert_eq!(&all[1948..1953], b"hello");
        // A peer claiming more than a ring's worth is refused.
        let prod = offset_of!(XenconsInterface, out_prod);
        // SAFETY: in bounds and aligned; the handles access the index atomically too.
        unsafe { base.add(prod).cast::<u32>().write_volatile(5000) };
        assert!(matches!(
            rx.read(&mut all),
            Err(ByteRingError { prod: 5000, .. })
        ));
        assert!(tx.write(b"x").is_err());
        assert_eq!(mask_xencons_idx(2049, XENCONS_OUT_SIZE), 1);
    }
}
