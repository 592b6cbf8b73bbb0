//! The byte-stream rings of the console (`io/console.h`) and xenstore
//! (`io/xs_wire.h`) pages: two fixed power-of-two character arrays, each with a free-
//! running consumer and producer index, no event-index hold-off.
//!
//! [`ByteRingProducer`] and [`ByteRingConsumer`] work on one direction of such a page.
//! As with [`crate::io::ring`], indices are accessed atomically, data with volatile
//! copies, positions are masked, and an index a well-behaved peer cannot have written
//! (more than the ring's size outstanding) is reported as [`ByteRingError`], never a
//! panic.

use core::marker::PhantomData;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, Ordering, fence};

/// The peer left the indices in a state no correct peer could produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRingError {
    /// Producer index seen.
    pub prod: u32,
    /// Consumer index seen.
    pub cons: u32,
}

impl core::fmt::Display for ByteRingError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "byte ring indices impossible: prod {} cons {}",
            self.prod, self.cons
        )
    }
}

impl core::error::Error for ByteRingError {}

/// One direction of a byte ring in shared memory: where the data array and its two
/// indices are.
#[derive(Debug, Clone, Copy)]
pub struct ByteRingLayout {
    /// Offset of the data array in the page.
    pub data: usize,
    /// Size of the data array (a power of two).
    pub size: u32,
    /// Offset of the consumer index.
    pub cons: usize,
    /// Offset of the producer index.
    pub prod: usize,
}

#[derive(Debug, Clone, Copy)]
struct Raw<'a> {
    base: NonNull<u8>,
    layout: ByteRingLayout,
    _memory: PhantomData<&'a [u8]>,
}

impl Raw<'_> {
    /// # Safety
    /// As for [`ByteRingProducer::from_raw`].
    unsafe fn new(base: *mut u8, layout: ByteRingLayout) -> Option<Self> {
        let ok = layout.size.is_power_of_two()
            && layout.cons.is_multiple_of(4)
            && layout.prod.is_multiple_of(4)
            && (base as usize).is_multiple_of(4);
        ok.then_some(Raw {
            base: NonNull::new(base)?,
            layout,
            _memory: PhantomData,
        })
    }

    fn index(&self, offset: usize) -> &AtomicU32 {
        // SAFETY: the offsets were checked 4-aligned in `new`, the base is 4-aligned and
        // the caller of `new` vouched that the indices lie in the shared memory and are
        // only accessed atomically by this program.
        unsafe { AtomicU32::from_ptr(self.base.as_ptr().add(offset).cast()) }
    }

    fn byte(&self, idx: u32) -> *mut u8 {
        let pos = (idx & (self.layout.size - 1)) as usize;
        // SAFETY: `pos < size` and the data array of `size` bytes lies in the memory
        // (contract of `new`).
        unsafe { self.base.as_ptr().add(self.layout.data + pos) }
    }

    fn snapshot(&self) -> Result<(u32, u32), ByteRingError> {
        let cons = self.index(self.layout.cons).load(Ordering::Acquire);
        let prod = self.index(self.layout.prod).load(Ordering::Acquire);
        if prod.wrapping_sub(cons) > self.layout.size {
            return Err(ByteRingError { prod, cons });
        }
        Ok((cons, prod))
    }
}

/// The writing side of one direction of a byte ring.
#[derive(Debug)]
pub struct ByteRingProducer<'a> {
    raw: Raw<'a>,
}

impl<'a> ByteRingProducer<'a> {
    /// A producer over the direction described by `layout` in the memory at `base`.
    /// Returns `None` if the layout is malformed (size not a power of two, misaligned
    /// indices).
    ///
    /// # Safety
    /// For `'a`, the memory at `base` must be valid for reads and writes over
    /// `layout.data..layout.data + size` and both 4-byte indices, and this program must
    /// access it only through byte-ring handles (the peer may write it at any time).
    pub unsafe fn from_raw(base: *mut u8, layout: ByteRingLayout) -> Option<Self> {
        // SAFETY: forwarded from the caller.
        let raw = unsafe { Raw::new(base, layout) }?;
        Some(ByteRingProducer { raw })
    }

    /// Copies as much of `data` as fits, publishes it, and returns the count written.
    pub fn write(&mut self, data: &[u8]) -> Result<usize, ByteRingError> {
        let (cons, mut prod) = self.raw.snapshot()?;
        let room = (self.raw.layout.size - prod.wrapping_sub(cons)) as usize;
        let n = room.min(data.len());
        for &b in &data[..n] {
            // SAFETY: the masked position is inside the array; the byte is free (between
            // prod and cons + size), so the peer does not read it now.
            unsafe { self.raw.byte(prod).write_volatile(b) };
            prod = prod.wrapping_add(1);
        }
        fence(Ordering::Release);
        self.raw
            .index(self.raw.layout.prod)
            .store(prod, Ordering::Release);
        Ok(n)
    }

    /// Bytes written and not yet consumed by the peer.
    pub fn pending(&self) -> Result<u32, ByteRingError> {
        let (cons, prod) = self.raw.snapshot()?;
        Ok(prod.wrapping_sub(cons))
    }
}

/// The reading side of one direction of a byte ring.
#[derive(Debug)]
pub struct ByteRingConsumer<'a> {
    raw: Raw<'a>,
}

impl<'a> ByteRingConsumer<'a> {
    /// A consumer over the direction described by `layout` in the memory at `base`.
    /// Returns `None` if the layout is malformed.
    ///
    /// # Safety
    /// As for [`ByteRingProducer::from_raw`].
    pub unsafe fn from_raw(base: *mut u8, layout: ByteRingLayout) -> Option<Self> {
        // SAFETY: forwarded from the caller.
        let raw = unsafe { Raw::new(base, layout) }?;
        Some(ByteRingConsumer { raw })
    }

    /// Copies available bytes into `buf`, releases them to the producer and returns the
    /// count read.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, ByteRingError> {
        let (mut cons, prod) = self.raw.snapshot()?;
        let n = (prod.wrapping_sub(cons) as usize).min(buf.len());
        for slot in &mut buf[..n] {
            // SAFETY: the masked position is inside the array.
            *slot = unsafe { self.raw.byte(cons).read_volatile() };
            cons = cons.wrapping_add(1);
        }
        fence(Ordering::Release);
        self.raw
            .index(self.raw.layout.cons)
            .store(cons, Ordering::Release);
        Ok(n)
    }

    /// Bytes available to read.
    pub fn available(&self) -> Result<u32, ByteRingError> {
        let (cons, prod) = self.raw.snapshot()?;
        Ok(prod.wrapping_sub(cons))
    }
}
