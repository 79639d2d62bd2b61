//! Fixed-size I/O buffers and the per-worker pool they return to.
//!
//! A connection holds a buffer only while bytes are in it: an idle
//! keep-alive connection gives its buffers back, so memory follows the
//! requests in flight, not the connections open.
#![forbid(unsafe_code)]

/// Size of every pooled buffer. A request head (at most 8 KiB) always fits.
pub const BUF_SIZE: usize = 16 * 1024;

/// A byte buffer with a read cursor: `data[start..end]` is unconsumed.
pub struct Buf {
    data: Box<[u8]>,
    pub start: usize,
    pub end: usize,
}

impl Buf {
    #[inline]
    pub fn filled(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    #[inline]
    pub fn consume(&mut self, n: usize) {
        self.start += n;
        debug_assert!(self.start <= self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Free space at the end, after moving unconsumed bytes to the front if
    /// that is the only way to make room.
    #[inline]
    pub fn spare(&mut self) -> &mut [u8] {
        if self.end == self.data.len() && self.start > 0 {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.data[self.end..]
    }

    #[inline]
    pub fn is_full(&self) -> bool {
        self.start == 0 && self.end == self.data.len()
    }

    #[inline]
    pub fn commit(&mut self, n: usize) {
        self.end += n;
        debug_assert!(self.end <= self.data.len());
    }

    /// Free space for `push`, after moving unconsumed bytes to the front.
    pub fn room(&mut self) -> usize {
        if self.start > 0 {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        self.data.len() - self.end
    }

    /// Appends `bytes`; false (and nothing written) if they do not fit.
    pub fn push(&mut self, bytes: &[u8]) -> bool {
        if self.data.len() - self.end < bytes.len() {
            return false;
        }
        self.data[self.end..self.end + bytes.len()].copy_from_slice(bytes);
        self.end += bytes.len();
        true
    }

    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }
}

/// Free buffers of one worker. Never shrinks below its high-water mark, so
/// after warm-up taking and returning buffers allocates nothing.
#[derive(Default)]
pub struct BufPool {
    free: Vec<Buf>,
    /// Buffers handed out and not yet returned.
    pub in_use: usize,
    /// Most buffers in use at once since the last [`BufPool::trim`].
    peak: usize,
}

/// Buffers a pool keeps however quiet it gets.
const KEEP_MIN: usize = 64;

impl BufPool {
    pub fn take(&mut self) -> Buf {
        self.in_use += 1;
        self.peak = self.peak.max(self.in_use);
        self.free.pop().unwrap_or_else(|| Buf {
            data: vec![0u8; BUF_SIZE].into_boxed_slice(),
            start: 0,
            end: 0,
        })
    }

    pub fn give(&mut self, mut b: Buf) {
        self.in_use -= 1;
        b.clear();
        self.free.push(b);
    }

    /// Returns `slot`'s buffer to the pool if it holds nothing.
    pub fn release_if_empty(&mut self, slot: &mut Option<Buf>) {
        if slot.as_ref().is_some_and(|b| b.is_empty()) {
            if let Some(b) = slot.take() {
                self.give(b);
            }
        }
    }

    pub fn release(&mut self, slot: &mut Option<Buf>) {
        if let Some(b) = slot.take() {
            self.give(b);
        }
    }

    pub fn free_count(&self) -> usize {
        self.free.len()
    }

    /// Gives memory back after a burst: keeps what the busiest moment since
    /// the last call needed (at least [`KEEP_MIN`]), frees the rest, and
    /// starts a new period. Steady traffic has the same peak every period,
    /// so it frees (and later allocates) nothing.
    pub fn trim(&mut self) {
        let keep = self.peak.max(KEEP_MIN).saturating_sub(self.in_use);
        if self.free.len() > keep {
            self.free.truncate(keep);
            self.free.shrink_to_fit();
        }
        self.peak = self.in_use;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compacts_only_when_full_at_the_end() {
        let mut p = BufPool::default();
        let mut b = p.take();
        let n = b.spare().len();
        b.commit(n);
        b.consume(10);
        assert_eq!(b.spare().len(), 10);
        assert_eq!(b.start, 0);
        b.consume(b.len());
        assert_eq!((b.start, b.end), (0, 0));
        p.give(b);
        assert_eq!((p.in_use, p.free_count()), (0, 1));
    }

    #[test]
    fn trim_gives_back_what_a_burst_left() {
        let mut p = BufPool::default();
        let burst: Vec<Buf> = (0..500).map(|_| p.take()).collect();
        for b in burst {
            p.give(b);
        }
        p.trim(); // the burst was this period's peak: all kept
        assert_eq!(p.free_count(), 500);
        let held = p.take();
        p.trim(); // a quiet period: back to the floor
        assert_eq!(p.free_count(), KEEP_MIN - 1);
        p.give(held);
    }
}
