//! The guest kernel's allocator of pseudo-physical frames: a bitmap over the frames after
//! the boot region. It remembers which frames were used before, so a reused frame is
//! scrubbed (by the caller) before another process sees it.

/// Most frames the allocator manages (64 MiB of guest memory).
pub const MAX_FRAMES: usize = 16384;
const WORDS: usize = MAX_FRAMES / 64;

/// A frame handed out, and whether it may hold someone else's data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allocated {
    /// The pseudo-physical frame number.
    pub pfn: u64,
    /// Whether the frame was used (and freed) before: it must be cleared before use.
    pub dirty: bool,
}

/// Frames `[first, first + count)`.
#[derive(Debug)]
pub struct PfnAllocator {
    first: u64,
    count: usize,
    used: [u64; WORDS],
    dirty: [u64; WORDS],
    free: usize,
}

impl PfnAllocator {
    /// Manages `count` frames from `first` (at most [`MAX_FRAMES`]; more are ignored).
    pub const fn new(first: u64, count: usize) -> PfnAllocator {
        let count = if count > MAX_FRAMES {
            MAX_FRAMES
        } else {
            count
        };
        PfnAllocator {
            first,
            count,
            used: [0; WORDS],
            dirty: [0; WORDS],
            free: count,
        }
    }

    /// Frames not handed out.
    pub fn free_count(&self) -> usize {
        self.free
    }

    /// Takes a free frame.
    pub fn alloc(&mut self) -> Option<Allocated> {
        for (word_index, word) in self.used.iter_mut().enumerate() {
            if *word == u64::MAX {
                continue;
            }
            let bit = (!*word).trailing_zeros() as usize;
            let index = word_index * 64 + bit;
            if index >= self.count {
                return None;
            }
            *word |= 1 << bit;
            self.free -= 1;
            let dirty = self.dirty[word_index] & (1 << bit) != 0;
            return Some(Allocated {
                pfn: self.first + index as u64,
                dirty,
            });
        }
        None
    }

    /// Gives a frame back. Returns false (changing nothing) for a frame that is not
    /// managed here or not handed out.
    pub fn free(&mut self, pfn: u64) -> bool {
        let Some(index) = pfn.checked_sub(self.first).map(|i| i as usize) else {
            return false;
        };
        if index >= self.count || self.used[index / 64] & (1 << (index % 64)) == 0 {
            return false;
        }
        self.used[index / 64] &= !(1 << (index % 64));
        self.dirty[index / 64] |= 1 << (index % 64);
        self.free += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_each_frame_once_and_marks_reuse() {
        let mut frames = PfnAllocator::new(100, 130);
        let all: Vec<Allocated> = core::iter::from_fn(|| frames.alloc()).collect();
        assert_eq!(all.len(), 130);
        assert!(all.iter().all(|a| !a.dirty && (100..230).contains(&a.pfn)));
        assert_eq!(frames.free_count(), 0);
        assert!(frames.free(150));
        assert!(!frames.free(150), "double free");
        assert!(!frames.free(99) && !frames.free(230), "not ours");
        assert_eq!(
            frames.alloc(),
            Some(Allocated {
                pfn: 150,
                dirty: true
            })
        );
        assert_eq!(frames.alloc(), None);
    }

    #[test]
    fn caps_at_capacity() {
        let frames = PfnAllocator::new(0, MAX_FRAMES * 2);
        assert_eq!(frames.free_count(), MAX_FRAMES);
    }
}
