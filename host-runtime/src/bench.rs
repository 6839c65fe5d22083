//! `tandem bench`: mirrored appends through the soft engine against raw TCP on loopback,
//! measured in one run so the ratios compare like with like on a shared machine.
//!
//! Baselines, same sizes, same process, loopback:
//! - raw ping-pong: the client writes S bytes, the server reads them and answers with a
//!   36-byte reply (the size of an ACK frame); the client waits for the reply.
//! - raw stream: the client writes S-byte messages back to back; the server reads them.
//!
//! Engine: one entry through the engine alone (post, doorbell, wait), no log record.
//!
//! Mirrored: a two-engine pair in this process; `MirroredLog::append` (record header,
//! CRC, local copy, frame, partner's CRC check and window write, ACK) for latency, and
//! `submit_many` in batches with a bounded number of records in flight for throughput.

use crate::log::{Change, MirroredLog};
use crate::mirror::Mirror;
use crate::store::{Store, StoreError};
use hdrhistogram::Histogram;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tandem_drivers::soft::{SoftConfig, SoftEngine};
use tandem_drivers::{Engine, MemRegion};

const SIZES: [usize; 3] = [64, 4096, 65536];
const ACK_LEN: usize = 36;

/// A store that keeps nothing: the benchmark measures mirroring, not the disk.
#[derive(Debug, Default)]
struct NullStore(u64);

impl Store for NullStore {
    fn write_at(&mut self, _: u64, _: &[u8]) -> Result<(), StoreError> {
        Ok(())
    }
    fn trim(&mut self, _: u64, _: u64) -> Result<(), StoreError> {
        Ok(())
    }
    fn sync(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
    fn applied_lsn(&self, _: u32) -> u64 {
        self.0
    }
    fn set_applied(&mut self, _: u32, lsn: u64) -> Result<(), StoreError> {
        self.0 = lsn;
        Ok(())
    }
}

/// Latency percentiles in µs.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Lat {
    /// Median.
    pub p50: f64,
    /// 99th.
    pub p99: f64,
    /// 99.9th.
    pub p999: f64,
}

fn lat(h: &Histogram<u64>) -> Lat {
    let us = |q| h.value_at_quantile(q) as f64 / 1000.0;
    Lat { p50: us(0.5), p99: us(0.99), p999: us(0.999) }
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(100, 10_000_000_000, 3).expect("valid histogram bounds")
}

fn raw_pair() -> anyhow::Result<(TcpStream, TcpStream)> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    let client = TcpStream::connect(addr)?;
    client.set_nodelay(true)?;
    let (server, _) = l.accept()?;
    server.set_nodelay(true)?;
    Ok((client, server))
}

fn raw_ping_pong(size: usize, iters: usize) -> anyhow::Result<Lat> {
    let (mut c, mut s) = raw_pair()?;
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        let mut buf = vec![0u8; size];
        let reply = [0u8; ACK_LEN];
        loop {
            if s.read_exact(&mut buf).is_err() {
                return Ok(());
            }
            s.write_all(&reply)?;
        }
    });
    let msg = vec![0x5Au8; size];
    let mut reply = [0u8; ACK_LEN];
    let mut h = hist();
    for i in 0..iters + iters / 10 {
        let t = Instant::now();
        c.write_all(&msg)?;
        c.read_exact(&mut reply)?;
        if i >= iters / 10 {
            h.record(t.elapsed().as_nanos() as u64)?;
        }
    }
    drop(c);
    let _ = server.join();
    Ok(lat(&h))
}

fn raw_stream(size: usize, total: u64) -> anyhow::Result<f64> {
    let (mut c, mut s) = raw_pair()?;
    let server = std::thread::spawn(move || -> u64 {
        let mut buf = vec![0u8; size.max(65536)];
        let mut got = 0u64;
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            got += n as u64;
        }
        got
    });
    let msg = vec![0x5Au8; size];
    let t = Instant::now();
    let mut sent = 0u64;
    while sent < total {
        c.write_all(&msg)?;
        sent += size as u64;
    }
    c.shutdown(std::net::Shutdown::Write)?;
    let got = server.join().map_err(|_| anyhow::anyhow!("stream reader panicked"))?;
    anyhow::ensure!(got == sent, "raw stream lost bytes: sent {sent}, got {got}");
    Ok(sent as f64 / t.elapsed().as_secs_f64())
}

/// A mirrored log on engine A of a two-engine pair in this process.
pub(crate) struct MirroredPair {
    pub(crate) log: MirroredLog,
    engines: [Arc<dyn Engine>; 2],
}

/// Log region of the benchmark pairs.
pub(crate) const BENCH_LOG: u64 = 64 << 20;

/// The window geometry of the benchmark pairs.
pub(crate) fn bench_geometry() -> anyhow::Result<tandem_hsi::window::Geometry> {
    Ok(tandem_hsi::window::Geometry::new(BENCH_LOG, 4096, 16, 0)?)
}

impl MirroredPair {
    /// Formats a log on `a`, mirrored to `b`.
    pub(crate) fn new(a: Arc<dyn Engine>, b: Arc<dyn Engine>) -> anyhow::Result<Self> {
        let mirror = Arc::new(Mirror::new(a.clone(), Duration::from_secs(30)));
        let log = MirroredLog::format(mirror, BENCH_LOG, 4096, 16)?;
        Ok(MirroredPair { log, engines: [a, b] })
    }
}

pub(crate) fn soft_pair() -> anyhow::Result<MirroredPair> {
    let geo = bench_geometry()?;
    let region = |base| MemRegion::anonymous(geo.window_size, base);
    let la = SoftEngine::bind("127.0.0.1:0".parse()?)?;
    let lb = SoftEngine::bind("127.0.0.1:0".parse()?)?;
    let (aa, ab) = (la.local_addr(), lb.local_addr());
    let a = SoftEngine::start(la, SoftConfig::new(aa, ab, region(0x1_0000_0000)?, region(0)?))?;
    let b = SoftEngine::start(lb, SoftConfig::new(ab, aa, region(0x2_0000_0000)?, region(0)?))?;
    MirroredPair::new(Arc::new(a), Arc::new(b))
}

impl Drop for MirroredPair {
    fn drop(&mut self) {
        for e in &self.engines {
            e.shutdown();
        }
    }
}

fn keep_room(p: &MirroredPair, store: &mut NullStore) -> anyhow::Result<()> {
    let st = p.log.stats();
    if st.used * 2 > st.size {
        p.log.checkpoint(store)?;
    }
    Ok(())
}

/// The engine alone: one entry of `size` bytes posted and waited for through the mirror
/// (no log record), to separate the engine's cost from the log's.
fn engine_latency(p: &MirroredPair, size: usize, iters: usize) -> anyhow::Result<Lat> {
    let mirror = p.log.mirror();
    let span =
        crate::mirror::Span { opcode: tandem_hsi::Opcode::Page, service_tag: 1, offset: p.log.geometry().page_offset, len: size as u64 };
    let mut h = hist();
    for i in 0..iters + iters / 10 {
        let t = Instant::now();
        mirror.mirror(&[span])?;
        if i >= iters / 10 {
            h.record(t.elapsed().as_nanos() as u64)?;
        }
    }
    Ok(lat(&h))
}

/// The engine alone, pipelined: entries of `size` bytes copying the node's own log region
/// to the partner (which already holds the same bytes), at most `depth` batches of
/// `batch` entries in flight.
fn engine_throughput(p: &MirroredPair, size: usize, total: u64, batch: usize, depth: usize) -> anyhow::Result<f64> {
    let mirror = p.log.mirror();
    let region = p.log.geometry().log_size;
    let count = (total / size as u64).max(batch as u64);
    let mut inflight = std::collections::VecDeque::new();
    let (mut done, mut submitted) = (0u64, 0u64);
    let t = Instant::now();
    while done < count {
        while submitted < count && inflight.len() < depth {
            let spans: Vec<_> = (0..batch.min((count - submitted) as usize))
                .map(|i| {
                    let off = ((submitted + i as u64) * size as u64) % (region - size as u64);
                    crate::mirror::Span {
                        opcode: tandem_hsi::Opcode::Log,
                        service_tag: 1,
                        offset: tandem_hsi::window::LOG_OFFSET + off,
                        len: size as u64,
                    }
                })
                .collect();
            submitted += spans.len() as u64;
            inflight.push_back((spans.len() as u64, mirror.submit(&spans)?));
        }
        let (n, t) = inflight.pop_front().expect("non-empty");
        mirror.wait(t)?;
        done += n;
    }
    Ok(count as f64 * size as f64 / t.elapsed().as_secs_f64())
}

pub(crate) fn mirrored_latency(p: &MirroredPair, size: usize, iters: usize) -> anyhow::Result<Lat> {
    let payload = vec![0xC3u8; size];
    let mut store = NullStore::default();
    let mut h = hist();
    for i in 0..iters + iters / 10 {
        keep_room(p, &mut store)?;
        let t = Instant::now();
        p.log.append(1, Change::Write { offset: 0 }, &payload)?;
        if i >= iters / 10 {
            h.record(t.elapsed().as_nanos() as u64)?;
        }
    }
    Ok(lat(&h))
}

/// Pipelined throughput: batches of up to `batch` records, at most `depth` records and a
/// quarter of the log region in flight.
pub(crate) fn mirrored_throughput(p: &MirroredPair, size: usize, total: u64, batch: usize, depth: usize) -> anyhow::Result<(f64, f64)> {
    let payload = vec![0x3Cu8; size];
    let mut store = NullStore::default();
    let mut inflight = std::collections::VecDeque::new();
    let count = (total / size as u64).max(batch as u64);
    let depth = depth.min((p.log.stats().size / 4 / (size as u64 + 64)).max(1) as usize);
    let recs: Vec<(u32, Change, &[u8])> = (0..batch).map(|_| (1, Change::Write { offset: 0 }, &payload[..])).collect();
    let t = Instant::now();
    let (mut done, mut submitted) = (0u64, 0u64);
    while done < count {
        while submitted < count && inflight.len() < depth {
            let n = batch.min((count - submitted) as usize).min(depth - inflight.len());
            let placed = p.log.submit_many(&recs[..n])?;
            submitted += placed.len() as u64;
            inflight.extend(placed);
        }
        // Completions come in order: wait for the oldest half of what is in flight.
        for _ in 0..inflight.len().div_ceil(2) {
            let a = inflight.pop_front().expect("non-empty");
            p.log.wait(a)?;
            done += 1;
        }
        keep_room(p, &mut store)?;
    }
    let secs = t.elapsed().as_secs_f64();
    Ok((count as f64 / secs, count as f64 * size as f64 / secs))
}

/// Runs everything and prints a table with the ratios.
pub fn run(quick: bool) -> anyhow::Result<()> {
    let scale = if quick { 10 } else { 1 };
    let iters = |size: usize| (if size >= 65536 { 5_000 } else { 20_000 }) / scale;
    let stream_total: u64 = (2u64 << 30) / scale as u64;
    println!("tandem bench: loopback, one process, {} (sizes {:?})", if quick { "quick run" } else { "full run" }, SIZES);
    println!();
    println!(
        "{:>7} | {:>29} | {:>11} | {:>29} | {:>6}",
        "size", "raw ping-pong p50/p99/p99.9 us", "engine p50", "mirrored p50/p99/p99.9 us", "p50 x"
    );
    let pair = soft_pair()?;
    let mut p50_4k = (0.0, 0.0);
    for size in SIZES {
        let raw = raw_ping_pong(size, iters(size))?;
        let e = engine_latency(&pair, size, iters(size))?;
        let m = mirrored_latency(&pair, size, iters(size))?;
        println!(
            "{:>7} | {:>9.1} {:>9.1} {:>9.1} | {:>11.1} | {:>9.1} {:>9.1} {:>9.1} | {:>6.2}",
            size,
            raw.p50,
            raw.p99,
            raw.p999,
            e.p50,
            m.p50,
            m.p99,
            m.p999,
            m.p50 / raw.p50
        );
        if size == 4096 {
            p50_4k = (raw.p50, m.p50);
        }
    }
    println!();
    println!(
        "{:>7} | {:>14} | {:>14} | {:>14} | {:>16} | {:>6}",
        "size", "raw MB/s", "engine MB/s", "mirrored MB/s", "mirrored appends/s", "ratio"
    );
    let mut tput_64k = (0.0, 0.0);
    let mut rate_64 = 0.0;
    for size in SIZES {
        let raw = raw_stream(size, stream_total.min(size as u64 * 4_000_000 / scale as u64))?;
        let total = if size == 64 { 64 * 2_000_000 / scale as u64 } else { stream_total / 2 };
        let engine = engine_throughput(&pair, size, total, 64, 16)?;
        let (rate, bytes) = mirrored_throughput(&pair, size, total, 64, 1024)?;
        println!(
            "{:>7} | {:>14.0} | {:>14.0} | {:>14.0} | {:>16.0} | {:>6.2}",
            size,
            raw / 1e6,
            engine / 1e6,
            bytes / 1e6,
            rate,
            bytes / raw
        );
        if size == 65536 {
            tput_64k = (raw, bytes);
        }
        if size == 64 {
            rate_64 = rate;
        }
    }
    println!();
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    let r1 = p50_4k.1 / p50_4k.0;
    let r2 = tput_64k.1 / tput_64k.0;
    println!("targets:");
    println!("  4 KiB mirrored append p50 <= 1.5x raw ping-pong p50:   {r1:.2}x  {}", verdict(r1 <= 1.5));
    println!("  64 KiB mirrored throughput >= 85% of raw stream:        {:.0}%  {}", r2 * 100.0, verdict(r2 >= 0.85));
    println!("  64 B pipelined appends >= 500k/s:                       {:.0}k/s  {}", rate_64 / 1e3, verdict(rate_64 >= 500e3));
    Ok(())
}
