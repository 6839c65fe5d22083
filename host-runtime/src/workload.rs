//! The verification workload shared by `tandem demo` and the kill tests: block writes
//! whose contents are a function of (block, version), so a verifier can tell from the
//! store which write a block holds.

use serde::{Deserialize, Serialize};

/// Block size of the workload.
pub const BLOCK_SIZE: usize = 4096;
/// Service tag the workload writes under.
pub const SERVICE_TAG: u32 = 1;

/// One line of the writer's output: each write is announced before it is submitted and
/// reported after the partner acknowledged it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// About to write `version` of `block`.
    Issued {
        /// Block.
        block: u64,
        /// Version (from 1).
        version: u64,
    },
    /// The write is acknowledged (in both windows).
    Acked {
        /// Block.
        block: u64,
        /// Version.
        version: u64,
        /// LSN.
        lsn: u64,
        /// Append latency, ns.
        ns: u64,
    },
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Contents of `version` of `block`: never all zeros, different for every pair.
pub fn block_contents(block: u64, version: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(BLOCK_SIZE);
    let mut s = splitmix(block << 32 ^ version);
    while out.len() < BLOCK_SIZE {
        s = splitmix(s);
        out.extend_from_slice(&s.to_le_bytes());
    }
    out.truncate(BLOCK_SIZE);
    out[..8].copy_from_slice(&block.to_le_bytes());
    out[8..16].copy_from_slice(&version.to_le_bytes());
    out
}

/// Which version a block's bytes are, if any (0 for never written).
pub fn identify(block: u64, bytes: &[u8]) -> Option<u64> {
    if bytes.iter().all(|b| *b == 0) {
        return Some(0);
    }
    let v = u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
    (bytes == block_contents(block, v).as_slice()).then_some(v)
}

/// Tracks what a writer reported and checks a store image against it.
#[derive(Debug, Default, Clone)]
pub struct Ledger {
    /// Per block: (highest acknowledged version, highest issued version).
    pub blocks: std::collections::BTreeMap<u64, (u64, u64)>,
    /// Acknowledged writes.
    pub acked: u64,
    /// Latencies, ns.
    pub latencies: Vec<u64>,
}

/// A block whose contents break the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Block.
    pub block: u64,
    /// Version found (None: not any version of this block).
    pub found: Option<u64>,
    /// Highest acknowledged version.
    pub acked: u64,
    /// Highest issued version.
    pub issued: u64,
}

impl Ledger {
    /// Records one event.
    pub fn record(&mut self, e: Event) {
        match e {
            Event::Issued { block, version } => {
                let b = self.blocks.entry(block).or_default();
                b.1 = b.1.max(version);
            }
            Event::Acked { block, version, ns, .. } => {
                let b = self.blocks.entry(block).or_default();
                b.0 = b.0.max(version);
                b.1 = b.1.max(version);
                self.acked += 1;
                self.latencies.push(ns);
            }
        }
    }

    /// Checks every block: it must hold its last acknowledged version or a later issued
    /// one (a write in flight at the crash may or may not have landed).
    pub fn verify(&self, mut read_block: impl FnMut(u64) -> Vec<u8>) -> Vec<Violation> {
        let mut bad = Vec::new();
        for (&block, &(acked, issued)) in &self.blocks {
            let found = identify(block, &read_block(block));
            if !found.is_some_and(|v| v >= acked && v <= issued) {
                bad.push(Violation { block, found, acked, issued });
            }
        }
        bad
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contents_identify_their_version() {
        let c = block_contents(5, 9);
        assert_eq!(identify(5, &c), Some(9));
        assert_eq!(identify(6, &c), None);
        assert_eq!(identify(5, &[0; BLOCK_SIZE]), Some(0));
        assert_ne!(block_contents(5, 9), block_contents(5, 10));
    }

    #[test]
    fn ledger_accepts_acked_or_later_issued_only() {
        let mut l = Ledger::default();
        l.record(Event::Issued { block: 1, version: 1 });
        l.record(Event::Acked { block: 1, version: 1, lsn: 1, ns: 5 });
        l.record(Event::Issued { block: 1, version: 2 });
        assert!(l.verify(|_| block_contents(1, 1)).is_empty());
        assert!(l.verify(|_| block_contents(1, 2)).is_empty());
        assert_eq!(l.verify(|_| vec![0; BLOCK_SIZE]).len(), 1);
        assert_eq!(l.verify(|_| block_contents(1, 3)).len(), 1);
    }
}
