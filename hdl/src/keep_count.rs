//! Number of valid byte lanes of an AXI4-Stream beat.

use crate::crc32c_accum::Count;
use rust_hdl::prelude::*;

/// `count` is the number of set bits of `keep` (for the contiguous, low-aligned `tkeep`
/// this engine uses and accepts, that is the number of valid bytes).
#[derive(LogicBlock)]
pub struct KeepCount<const K: usize> {
    /// `tkeep` of the beat.
    pub keep: Signal<In, Bits<K>>,
    /// Valid bytes.
    pub count: Signal<Out, Count>,
    sum: Vec<Signal<Local, Count>>,
}

impl<const K: usize> Default for KeepCount<K> {
    fn default() -> Self {
        assert!((1..=128).contains(&K), "KeepCount: K = {K} lanes must be 1 to 128");
        Self { keep: Default::default(), count: Default::default(), sum: (0..=K).map(|_| Signal::default()).collect() }
    }
}

impl<const K: usize> Logic for KeepCount<K> {
    #[hdl_gen]
    fn update(&mut self) {
        self.sum[0].next = 0.into();
        for i in 0..K {
            self.sum[i + 1].next = self.sum[i].val() + self.keep.val().get_bit(i);
            // The last iteration's assignment stands (array indices cannot be generic).
            self.count.next = self.sum[i + 1].val();
        }
    }
}
