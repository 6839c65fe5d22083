//! Bench helpers shared by the testbenches: per-cycle drivers and monitors of the
//! link datapath's ports, a seeded RNG with the reproduce line, and frame helpers.

#![allow(dead_code)] // Each test file uses a subset.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::VecDeque;
use tandem_hsi::frame::{header, HEADER_LEN};
use tandem_sim_tb::{keep_count, keep_words, lanes, Model};

/// The seed from `TANDEM_SEED` or a fresh one; prints how to reproduce a failure.
pub fn seed(test: &str) -> u64 {
    let seed = std::env::var("TANDEM_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    eprintln!("{test}: seed {seed}; reproduce with: TANDEM_SEED={seed} cargo test -p tandem-sim-tb --test link {test}");
    seed
}

/// A seeded RNG.
pub fn rng(seed: u64) -> SmallRng {
    SmallRng::seed_from_u64(seed)
}

/// Drives header requests and payloads into `tx_hdr_*` / `s_axis_tx_*`.
#[derive(Debug, Default)]
pub struct TxDriver {
    queue: VecDeque<([u8; HEADER_LEN], Vec<u8>)>,
    hdr_sent: bool,
    pos: usize,
    offer_hdr: bool,
    offer_beat: bool,
    /// Percent of cycles with nothing offered.
    pub idle_pct: u32,
}

impl TxDriver {
    /// A driver idle on `idle_pct` percent of cycles.
    pub fn with_idle(idle_pct: u32) -> Self {
        TxDriver { idle_pct, ..Default::default() }
    }

    /// Queues a frame: header bytes (fields are read from them) and payload.
    pub fn push(&mut self, hdr: [u8; HEADER_LEN], payload: Vec<u8>) {
        self.queue.push_back((hdr, payload));
    }

    /// Frames not yet fully handed over.
    pub fn pending(&self) -> usize {
        self.queue.len()
    }

    /// Sets inputs for this cycle.
    pub fn drive(&mut self, m: &mut Model, rng: &mut SmallRng) {
        let k = lanes(m.width());
        self.offer_hdr = false;
        self.offer_beat = false;
        if let Some((h, p)) = self.queue.front() {
            m.set("tx_hdr_frame_type", header::FRAME_TYPE.get(h));
            m.set("tx_hdr_kind", header::KIND.get(h));
            m.set("tx_hdr_service_tag", header::SERVICE_TAG.get(h));
            m.set("tx_hdr_length", header::LENGTH.get(h));
            m.set("tx_hdr_sequence", header::SEQUENCE.get(h));
            m.set("tx_hdr_window_offset", header::WINDOW_OFFSET.get(h));
            let busy = rng.gen_range(0..100) < self.idle_pct;
            self.offer_hdr = !self.hdr_sent && !busy;
            if self.hdr_sent && self.pos < p.len() && !busy {
                let end = (self.pos + k).min(p.len());
                m.set_bytes("s_axis_tx_tdata", &p[self.pos..end]);
                m.set_words("s_axis_tx_tkeep", &keep_words(end - self.pos, k));
                m.set("s_axis_tx_tlast", u64::from(end == p.len()));
                self.offer_beat = true;
            }
        }
        m.set("tx_hdr_valid", u64::from(self.offer_hdr));
        m.set("s_axis_tx_tvalid", u64::from(self.offer_beat));
    }

    /// Samples handshakes (after `eval`, before `tick`).
    pub fn sample(&mut self, m: &Model) {
        let k = lanes(m.width());
        if self.offer_hdr && m.get("tx_hdr_ready") == 1 {
            self.hdr_sent = true;
        }
        if self.offer_beat && m.get("s_axis_tx_tready") == 1 {
            self.pos += k;
        }
        if let Some((_, p)) = self.queue.front() {
            let done = if self.offer_hdr { m.get("tx_hdr_ready") == 1 && p.is_empty() } else { self.hdr_sent && self.pos >= p.len() };
            if done {
                self.queue.pop_front();
                self.hdr_sent = false;
                self.pos = 0;
            }
        }
    }
}

/// Collects frames from an AXI4-Stream source `<prefix>_t*` with random back-pressure.
#[derive(Debug)]
pub struct StreamMonitor {
    prefix: &'static str,
    cur: Vec<u8>,
    /// Whole frames seen, with the cycle their last beat left.
    pub frames: Vec<(Vec<u8>, u64)>,
    ready: bool,
    /// Percent of cycles with ready low.
    pub stall_pct: u32,
    /// Cycle of the first beat of the frame in progress.
    pub first_beat: Option<u64>,
    /// Per frame: cycle of its first beat.
    pub starts: Vec<u64>,
}

impl StreamMonitor {
    /// A monitor of `<prefix>_tdata` etc.
    pub fn new(prefix: &'static str) -> Self {
        StreamMonitor { prefix, cur: vec![], frames: vec![], ready: false, stall_pct: 0, first_beat: None, starts: vec![] }
    }

    fn port(&self, s: &str) -> String {
        format!("{}_{s}", self.prefix)
    }

    /// Sets ready for this cycle.
    pub fn drive(&mut self, m: &mut Model, rng: &mut SmallRng) {
        self.ready = rng.gen_range(0..100) >= self.stall_pct;
        m.set(&self.port("tready"), u64::from(self.ready));
    }

    /// Samples a beat (after `eval`, before `tick`).
    pub fn sample(&mut self, m: &Model) {
        if self.ready && m.get(&self.port("tvalid")) == 1 {
            let k = lanes(m.width());
            let n = keep_count(&m.get_words(&self.port("tkeep")), k);
            if self.first_beat.is_none() {
                self.first_beat = Some(m.cycles());
            }
            self.cur.extend_from_slice(&m.get_bytes(&self.port("tdata"))[..n]);
            if m.get(&self.port("tlast")) == 1 {
                self.frames.push((std::mem::take(&mut self.cur), m.cycles()));
                self.starts.push(self.first_beat.take().unwrap_or(m.cycles()));
            }
        }
    }
}

/// Drives whole frames into an AXI4-Stream sink `<prefix>_t*`.
#[derive(Debug)]
pub struct StreamDriver {
    prefix: &'static str,
    queue: VecDeque<Vec<u8>>,
    pos: usize,
    offer: bool,
    /// Percent of cycles with nothing offered.
    pub idle_pct: u32,
}

impl StreamDriver {
    /// A driver of `<prefix>_tdata` etc.
    pub fn new(prefix: &'static str) -> Self {
        StreamDriver { prefix, queue: VecDeque::new(), pos: 0, offer: false, idle_pct: 0 }
    }

    /// Queues a frame's bytes.
    pub fn push(&mut self, f: Vec<u8>) {
        self.queue.push_back(f);
    }

    /// Frames not yet fully sent.
    pub fn pending(&self) -> usize {
        self.queue.len()
    }

    /// Sets inputs for this cycle.
    pub fn drive(&mut self, m: &mut Model, rng: &mut SmallRng) {
        let k = lanes(m.width());
        self.offer = false;
        if let Some(f) = self.queue.front() {
            if rng.gen_range(0..100) >= self.idle_pct {
                let end = (self.pos + k).min(f.len());
                m.set_bytes(&format!("{}_tdata", self.prefix), &f[self.pos..end]);
                m.set_words(&format!("{}_tkeep", self.prefix), &keep_words(end - self.pos, k));
                m.set(&format!("{}_tlast", self.prefix), u64::from(end == f.len()));
                self.offer = true;
            }
        }
        m.set(&format!("{}_tvalid", self.prefix), u64::from(self.offer));
    }

    /// Samples the handshake.
    pub fn sample(&mut self, m: &Model) {
        if self.offer && m.get(&format!("{}_tready", self.prefix)) == 1 {
            let k = lanes(m.width());
            self.pos += k;
            if self.pos >= self.queue.front().map_or(0, Vec::len) {
                self.queue.pop_front();
                self.pos = 0;
            }
        }
    }
}

/// One received frame's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Header checks passed.
    pub header_ok: bool,
    /// Byte count matched.
    pub length_ok: bool,
    /// CRC matched.
    pub crc_ok: bool,
    /// `SEQUENCE`.
    pub sequence: u64,
    /// `LENGTH`.
    pub length: u64,
    /// `WINDOW_OFFSET`.
    pub window_offset: u64,
    /// Cycle the status was taken.
    pub cycle: u64,
}

/// Takes `rx_status_*` with random stalls.
#[derive(Debug, Default)]
pub struct StatusMonitor {
    ready: bool,
    /// Statuses taken.
    pub seen: Vec<Status>,
    /// Percent of cycles with ready low.
    pub stall_pct: u32,
}

impl StatusMonitor {
    /// A monitor stalling on `stall_pct` percent of cycles.
    pub fn with_stall(stall_pct: u32) -> Self {
        StatusMonitor { stall_pct, ..Default::default() }
    }

    /// Sets ready.
    pub fn drive(&mut self, m: &mut Model, rng: &mut SmallRng) {
        self.ready = rng.gen_range(0..100) >= self.stall_pct;
        m.set("rx_status_ready", u64::from(self.ready));
    }

    /// Samples a status.
    pub fn sample(&mut self, m: &Model) {
        if self.ready && m.get("rx_status_valid") == 1 {
            self.seen.push(Status {
                header_ok: m.get("rx_status_header_ok") == 1,
                length_ok: m.get("rx_status_length_ok") == 1,
                crc_ok: m.get("rx_status_crc_ok") == 1,
                sequence: m.get("rx_status_sequence"),
                length: m.get("rx_status_length"),
                window_offset: m.get("rx_status_window_offset"),
                cycle: m.cycles(),
            });
        }
    }
}
