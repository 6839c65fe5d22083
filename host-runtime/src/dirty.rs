//! What changed in a region while it was not mirrored: a bitmap of fixed-size chunks.
//!
//! While a node acknowledges writes without its partner (degraded), every range it
//! changes is marked here. When the partner returns, only the marked chunks are copied
//! ([`crate::mirror::Mirror::resync`]), so a partner that kept its mirror window (it is a
//! file, like NVRAM) is brought back without a full copy.

/// Chunk size in bytes.
pub const CHUNK: u64 = 64 * 1024;

/// See the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirtyMap {
    bits: Vec<u64>,
    len: u64,
    count: u64,
}

impl DirtyMap {
    /// A clean map over a region of `len` bytes.
    pub fn new(len: u64) -> Self {
        let chunks = len.div_ceil(CHUNK);
        DirtyMap { bits: vec![0; chunks.div_ceil(64) as usize], len, count: 0 }
    }

    /// A map with every chunk marked (the partner's copy is unknown: copy everything).
    pub fn all(len: u64) -> Self {
        let mut m = DirtyMap::new(len);
        m.mark(0, len);
        m
    }

    /// Marks the chunks `[offset, offset + len)` touches (clipped to the region).
    pub fn mark(&mut self, offset: u64, len: u64) {
        if len == 0 || offset >= self.len {
            return;
        }
        let end = offset.saturating_add(len).min(self.len);
        for c in offset / CHUNK..end.div_ceil(CHUNK) {
            let (w, b) = ((c / 64) as usize, c % 64);
            if self.bits[w] & (1 << b) == 0 {
                self.bits[w] |= 1 << b;
                self.count += 1;
            }
        }
    }

    /// Marked chunks.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Marked bytes (whole chunks, the last one clipped to the region).
    pub fn bytes(&self) -> u64 {
        self.ranges().iter().map(|(_, l)| l).sum()
    }

    /// True when nothing is marked.
    pub fn is_clean(&self) -> bool {
        self.count == 0
    }

    /// The marked ranges, adjacent chunks merged, in offset order.
    pub fn ranges(&self) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for (w, word) in self.bits.iter().enumerate() {
            let mut word = *word;
            while word != 0 {
                let b = word.trailing_zeros() as u64;
                word &= word - 1;
                let start = (w as u64 * 64 + b) * CHUNK;
                let len = CHUNK.min(self.len - start);
                match out.last_mut() {
                    Some((s, l)) if *s + *l == start => *l += len,
                    _ => out.push((start, len)),
                }
            }
        }
        out
    }

    /// Takes every marked range and leaves the map clean.
    pub fn take(&mut self) -> Vec<(u64, u64)> {
        let r = self.ranges();
        self.bits.iter_mut().for_each(|w| *w = 0);
        self.count = 0;
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_merge_and_clip() {
        let mut m = DirtyMap::new(10 * CHUNK + 100);
        m.mark(10, 1);
        m.mark(CHUNK - 1, 2); // touches chunks 0 and 1
        m.mark(5 * CHUNK, CHUNK); // chunk 5 only
        m.mark(10 * CHUNK + 50, 1000); // last, short chunk
        m.mark(u64::MAX - 5, 10); // outside: ignored
        assert_eq!(m.count(), 4);
        assert_eq!(m.ranges(), vec![(0, 2 * CHUNK), (5 * CHUNK, CHUNK), (10 * CHUNK, 100)]);
        assert_eq!(m.bytes(), 3 * CHUNK + 100);
        assert_eq!(m.take().len(), 3);
        assert!(m.is_clean());
        assert_eq!(DirtyMap::all(3 * CHUNK).ranges(), vec![(0, 3 * CHUNK)]);
    }
}
