//! Batching helpers: fill a fixed-size buffer of requests, then flush it with one
//! hypercall (`mmu_update`, `mmuext_op`, `multicall`).
//!
//! `push` never issues a hypercall: when the batch is full it hands the request back
//! (`Err(request)`) so the caller decides when to flush. Flushing is `unsafe` for the
//! same reasons as the underlying hypercall.

use super::calls::{addr_of_mut, ret};
use super::mm::{PartialError, mmu_update, mmuext_op};
use super::raw::hypercall2;
use crate::errno::Errno;
use crate::xen::{DomId, Hypercall, MmuUpdate, MmuextOp, MulticallEntry};

/// A fixed-capacity list of requests.
#[derive(Debug, Clone)]
struct Buffer<T, const N: usize> {
    items: [T; N],
    len: usize,
}

impl<T: Copy + Default, const N: usize> Buffer<T, N> {
    fn new() -> Self {
        Buffer {
            items: [T::default(); N],
            len: 0,
        }
    }
    fn push(&mut self, item: T) -> Result<(), T> {
        match self.items.get_mut(self.len) {
            Some(slot) => {
                *slot = item;
                self.len += 1;
                Ok(())
            }
            None => Err(item),
        }
    }
    fn as_slice(&self) -> &[T] {
        &self.items[..self.len]
    }
}

/// A batch of [`MmuUpdate`] requests for one foreign domain.
#[derive(Debug, Clone)]
pub struct MmuUpdateBatch<const N: usize> {
    buf: Buffer<MmuUpdate, N>,
    foreigndom: DomId,
}

impl<const N: usize> MmuUpdateBatch<N> {
    /// An empty batch; `foreigndom` is normally `DOMID_SELF`.
    pub fn new(foreigndom: DomId) -> Self {
        MmuUpdateBatch {
            buf: Buffer::new(),
            foreigndom,
        }
    }
    /// Adds a request; gives it back if the batch is full.
    pub fn push(&mut self, req: MmuUpdate) -> Result<(), MmuUpdate> {
        self.buf.push(req)
    }
    /// Requests waiting.
    pub fn len(&self) -> usize {
        self.buf.len
    }
    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.buf.len == 0
    }
    /// The requests waiting.
    pub fn pending(&self) -> &[MmuUpdate] {
        self.buf.as_slice()
    }
    /// Issues the waiting requests and empties the batch; on failure, the requests after
    /// the failed one are dropped and `done` says how many took effect.
    ///
    /// # Safety
    /// As [`mmu_update`].
    pub unsafe fn flush(&mut self) -> Result<u32, PartialError> {
        if self.is_empty() {
            return Ok(0);
        }
        // SAFETY: forwarded from the caller.
        let r = unsafe { mmu_update(self.buf.as_slice(), self.foreigndom) };
        self.buf.len = 0;
        r
    }
}

/// A batch of [`MmuextOp`] requests for one foreign domain.
#[derive(Debug, Clone)]
pub struct MmuextBatch<const N: usize> {
    buf: Buffer<MmuextOp, N>,
    foreigndom: DomId,
}

impl<const N: usize> MmuextBatch<N> {
    /// An empty batch; `foreigndom` is normally `DOMID_SELF`.
    pub fn new(foreigndom: DomId) -> Self {
        MmuextBatch {
            buf: Buffer::new(),
            foreigndom,
        }
    }
    /// Adds a request; gives it back if the batch is full.
    pub fn push(&mut self, op: MmuextOp) -> Result<(), MmuextOp> {
        self.buf.push(op)
    }
    /// Requests waiting.
    pub fn len(&self) -> usize {
        self.buf.len
    }
    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.buf.len == 0
    }
    /// The requests waiting.
    pub fn pending(&self) -> &[MmuextOp] {
        self.buf.as_slice()
    }
    /// Issues the waiting requests and empties the batch (see
    /// [`MmuUpdateBatch::flush`]).
    ///
    /// # Safety
    /// As [`mmuext_op`].
    pub unsafe fn flush(&mut self) -> Result<u32, PartialError> {
        if self.is_empty() {
            return Ok(0);
        }
        // SAFETY: forwarded from the caller.
        let r = unsafe { mmuext_op(self.buf.as_slice(), self.foreigndom) };
        self.buf.len = 0;
        r
    }
}

/// A batch of hypercalls run by one `multicall`.
#[derive(Debug, Clone)]
pub struct MulticallBatch<const N: usize> {
    buf: Buffer<MulticallEntry, N>,
}

impl<const N: usize> Default for MulticallBatch<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> MulticallBatch<N> {
    /// An empty batch.
    pub fn new() -> Self {
        MulticallBatch { buf: Buffer::new() }
    }
    /// Adds a call of `op` with up to six arguments; gives it back if the batch is full.
    pub fn push(&mut self, op: Hypercall, args: &[u64]) -> Result<(), MulticallEntry> {
        let mut entry = MulticallEntry::new(op, [0; 6]);
        let n = args.len().min(6);
        entry.args[..n].copy_from_slice(&args[..n]);
        if args.len() > 6 {
            return Err(entry);
        }
        self.buf.push(entry)
    }
    /// Calls waiting.
    pub fn len(&self) -> usize {
        self.buf.len
    }
    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.buf.len == 0
    }
    /// Runs the waiting calls (`multicall`), empties the batch and returns each call's
    /// result, decoded, in order.
    ///
    /// The outer error is the multicall's own failure (bad list); individual calls fail
    /// independently.
    ///
    /// # Safety
    /// Every call in the batch must be sound to make, as for its own wrapper; pointer
    /// arguments must stay valid until this returns.
    pub unsafe fn flush(&mut self) -> Result<MulticallResults<N>, Errno> {
        let n = self.buf.len;
        self.buf.len = 0;
        let entries = &mut self.buf.items[..n];
        // SAFETY: the entries are a live exclusive borrow the hypervisor reads and writes
        // (`result`); the calls' own effects are the caller's responsibility.
        ret(unsafe { hypercall2(Hypercall::Multicall, addr_of_mut(entries), n as u64) })?;
        let mut results = [0i64; N];
        for (r, e) in results.iter_mut().zip(entries.iter()) {
            *r = e.result as i64;
        }
        Ok(MulticallResults { results, len: n })
    }
}

/// The per-call results of a flushed [`MulticallBatch`].
#[derive(Debug, Clone, Copy)]
pub struct MulticallResults<const N: usize> {
    results: [i64; N],
    len: usize,
}

impl<const N: usize> MulticallResults<N> {
    /// Number of calls made.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether no call was made.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Result of call `i`, decoded.
    pub fn get(&self, i: usize) -> Option<Result<u64, Errno>> {
        self.results[..self.len].get(i).map(|&r| Errno::from_ret(r))
    }
    /// Whether every call succeeded.
    pub fn all_ok(&self) -> bool {
        self.results[..self.len]
            .iter()
            .all(|&r| Errno::from_ret(r).is_ok())
    }
}

/// Issues `multicall` on `entries` directly; each entry's `result` is filled in.
///
/// # Safety
/// As [`MulticallBatch::flush`].
pub unsafe fn multicall(entries: &mut [MulticallEntry]) -> Result<u64, Errno> {
    // SAFETY: forwarded from the caller.
    ret(unsafe {
        hypercall2(
            Hypercall::Multicall,
            addr_of_mut(entries),
            entries.len() as u64,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::super::raw::mock;
    use super::*;
    use crate::xen::DOMID_SELF;

    #[test]
    fn mmu_batch_fills_and_flushes() {
        mock::install(|nr, args| {
            assert_eq!(nr, Hypercall::MmuUpdate.number());
            // SAFETY: the wrapper passed a live `u32` for `done`.
            unsafe { *(args[2] as *mut u32) = args[1] as u32 };
            0
        });
        let mut batch = MmuUpdateBatch::<2>::new(DOMID_SELF);
        // SAFETY: the mock applies nothing.
        assert_eq!(unsafe { batch.flush() }, Ok(0));
        assert!(
            mock::calls().is_empty(),
            "an empty flush makes no hypercall"
        );
        batch.push(MmuUpdate::normal(0x1000, 1)).unwrap();
        batch.push(MmuUpdate::normal(0x1008, 2)).unwrap();
        let back = batch.push(MmuUpdate::normal(0x1010, 3));
        assert_eq!(back, Err(MmuUpdate::normal(0x1010, 3)));
        assert_eq!(batch.pending().len(), 2);
        // SAFETY: as above.
        assert_eq!(unsafe { batch.flush() }, Ok(2));
        assert!(batch.is_empty());
        assert_eq!(mock::calls()[0].1[3], u64::from(DOMID_SELF));
    }

    #[test]
    fn mmuext_partial_failure_reports_done() {
        mock::install(|_, args| {
            // SAFETY: the wrapper passed a live `u32` for `done`.
            unsafe { *(args[2] as *mut u32) = 1 };
            -22
        });
        let mut batch = MmuextBatch::<4>::new(DOMID_SELF);
        batch.push(MmuextOp::tlb_flush_local()).unwrap();
        batch.push(MmuextOp::pin_table(4, 7).unwrap()).unwrap();
        // SAFETY: the mock applies nothing.
        let r = unsafe { batch.flush() };
        assert_eq!(
            r,
            Err(PartialError {
                done: 1,
                errno: Errno::EINVAL
            })
        );
    }

    #[test]
    fn multicall_results() {
        mock::install(|nr, args| {
            assert_eq!(nr, Hypercall::Multicall.number());
            let n = args[1] as usize;
            // SAFETY: the wrapper passed `n` live entries.
            let entries =
                unsafe { core::slice::from_raw_parts_mut(args[0] as *mut MulticallEntry, n) };
            for e in entries {
                e.result = if e.op == Hypercall::SchedOp.number() {
                    0
                } else {
                    (-38i64) as u64
                };
            }
            0
        });
        let mut batch = MulticallBatch::<4>::new();
        batch.push(Hypercall::SchedOp, &[0, 0]).unwrap();
        batch.push(Hypercall::HvmOp, &[1]).unwrap();
        assert!(batch.push(Hypercall::HvmOp, &[0; 7]).is_err());
        // SAFETY: the mock runs nothing.
        let results = unsafe { batch.flush() }.unwrap();
        assert_eq!(results.len(), 2);
        assert_eq!(results.get(0), Some(Ok(0)));
        assert_eq!(results.get(1), Some(Err(Errno::ENOSYS)));
        assert_eq!(results.get(2), None);
        assert!(!results.all_ok());
        assert!(batch.is_empty());
    }
}
