//! The conformance suite against two soft engines whose links both run through a
//! [`FaultShim`]: frames are dropped, corrupted, duplicated, reordered and delayed, and
//! the links are cut at random moments. Every check must still hold: faults delay
//! completions but never lose, reorder or duplicate them.
//!
//! The seed comes from `TANDEM_SEED` when set; a failing check prints the command that
//! reruns it with the same seed.
//!
//! Both directions get every fault: a NACK(Bounds) that is lost or overtaken only delays
//! the answer, because the receiver keeps expecting a rejected sequence until the sender
//! puts a barrier in its place (see docs/hsi.md, "Link protocol").

mod common;

use common::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tandem_drivers::conformance::{self, Pair};
use tandem_drivers::faultshim::{FaultShim, Faults};
use tandem_drivers::soft::SoftEngine;
use tandem_drivers::Engine;

/// Faults on data frames (and heartbeats) from sender to receiver.
const DATA: Faults = Faults { drop: 0.01, corrupt: 0.01, duplicate: 0.01, reorder: 0.01, delay: 0.01, max_delay: Duration::from_millis(2) };
/// Every fault in the ACK direction.
const ACK_FULL: Faults =
    Faults { drop: 0.02, corrupt: 0.01, duplicate: 0.02, reorder: 0.02, delay: 0.02, max_delay: Duration::from_millis(2) };

/// Cuts both links at random moments until dropped.
struct Chaos {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Chaos {
    fn start(seed: u64, shims: [Arc<FaultShim>; 2]) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut rng = SmallRng::seed_from_u64(seed ^ 0xC4A0);
            let mut next = std::time::Instant::now() + Duration::from_millis(rng.gen_range(100..400));
            while !s2.load(Ordering::SeqCst) {
                // Short sleeps so drop never waits long.
                std::thread::sleep(Duration::from_millis(5));
                if std::time::Instant::now() >= next {
                    shims[rng.gen_range(0..2)].cut();
                    next = std::time::Instant::now() + Duration::from_millis(rng.gen_range(100..400));
                }
            }
        });
        Chaos { stop, thread: Some(thread) }
    }
}

impl Drop for Chaos {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn faulty_pair(seed: u64, ack: Faults, chaos: bool) -> Pair {
    init_tracing();
    let dirs = Dirs::new();
    let (la, lb) = (listener(), listener());
    let (addr_a, addr_b) = (la.local_addr(), lb.local_addr());
    // A dials B through `ab`, B dials A through `ba`; "forward" is the data direction.
    let ab = Arc::new(FaultShim::start(addr_b, seed, DATA, ack).expect("shim"));
    let ba = Arc::new(FaultShim::start(addr_a, seed.rotate_left(17), DATA, ack).expect("shim"));
    let (via_ab, via_ba) = (ab.local_addr(), ba.local_addr());
    let a = start(la, via_ab, &dirs.window("a"));
    let b = start(lb, via_ba, &dirs.window("b"));
    let wb = dirs.window("b");
    let restart = move || -> Result<Box<dyn Engine>, tandem_drivers::EngineError> {
        let l = SoftEngine::bind(addr_b)?;
        Ok(Box::new(start(l, via_ba, &wb)))
    };
    let (c1, c2) = (ab.clone(), ba.clone());
    let mut keep: Vec<Box<dyn std::any::Any + Send>> = Vec::new();
    if chaos {
        keep.push(Box::new(Chaos::start(seed, [ab.clone(), ba.clone()])));
    }
    keep.push(Box::new(ab));
    keep.push(Box::new(ba));
    keep.push(Box::new(dirs));
    Pair {
        a: Box::new(a),
        b: Box::new(b),
        link: Some(Box::new(move || {
            c1.cut();
            c2.cut();
        })),
        restart_b: Some(Box::new(restart)),
        keep,
    }
}

fn suite_pair(seed: u64) -> Pair {
    faulty_pair(seed, ACK_FULL, true)
}

fn full_ack_faults_pair(seed: u64) -> Pair {
    faulty_pair(seed, ACK_FULL, true)
}

tandem_drivers::conformance_tests!(suite_pair);

/// Random entries with every fault in both directions and random cuts.
#[test]
fn many_entries_with_ack_direction_faults() {
    conformance::run(
        "many_entries_with_ack_direction_faults",
        env!("CARGO_PKG_NAME"),
        env!("CARGO_CRATE_NAME"),
        &full_ack_faults_pair,
        conformance::many_entries,
    );
}

/// Pipelined small entries with every fault in both directions.
#[test]
fn pipelined_with_ack_direction_faults() {
    conformance::run(
        "pipelined_with_ack_direction_faults",
        env!("CARGO_PKG_NAME"),
        env!("CARGO_CRATE_NAME"),
        &full_ack_faults_pair,
        conformance::pipelined,
    );
}

/// The faults really happen: after a run the shims report drops, corruptions,
/// duplicates, reorders and delays, and the engines report the matching recoveries.
#[test]
fn faults_are_injected_and_recovered_from() {
    let check = |factory: &dyn conformance::PairFactory, seed: u64| {
        let pair = factory.pair(seed);
        run_traffic(&pair, seed);
        // A's link (through the first shim) carried the traffic, both ways.
        let s = pair.keep[0].downcast_ref::<Arc<FaultShim>>().expect("shim").stats();
        assert!(s.dropped > 0 && s.corrupted > 0 && s.duplicated > 0 && s.reordered > 0 && s.delayed > 0, "{s:?}");
        let (ca, cb) = (pair.a.counters(), pair.b.counters());
        use tandem_hsi::Counter::*;
        assert!(ca.get(Retransmits) > 0, "A retransmitted: {ca}");
        assert!(cb.get(CrcErrors) + cb.get(HeaderErrors) > 0, "B saw corrupt frames: {cb}");
        assert!(cb.get(Duplicates) > 0 && cb.get(SequenceErrors) > 0, "B saw duplicates and gaps: {cb}");
        assert!(cb.get(NacksTx) > 0 && ca.get(NacksRx) > 0, "NACKs flowed: {ca} / {cb}");
    };
    conformance::run(
        "faults_are_injected_and_recovered_from",
        env!("CARGO_PKG_NAME"),
        env!("CARGO_CRATE_NAME"),
        &|s| faulty_pair(s, ACK_FULL, false),
        check,
    );
}

/// Enough traffic for every fault to show up.
fn run_traffic(pair: &Pair, seed: u64) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let a = &*pair.a;
    let mut entries = Vec::new();
    let mut datas = Vec::new();
    for k in 0..3000u64 {
        let len = rng.gen_range(1..=512usize);
        let data: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        let off = k * 512;
        a.host_region().write(off, &data).expect("host write");
        entries.push(tandem_hsi::SubmissionEntry {
            opcode: tandem_hsi::Opcode::Log,
            service_tag: 3,
            host_addr: HOST_DMA + off,
            window_offset: (k * 512) % (conformance::MIN_WINDOW - 512),
            length: len as u32,
            cookie: k as u32,
        });
        datas.push(data);
    }
    let mut done = Vec::new();
    a.post_all(&entries, &mut done, conformance::WAIT).expect("post_all");
    let deadline = std::time::Instant::now() + conformance::WAIT;
    while done.len() < entries.len() {
        assert!(std::time::Instant::now() < deadline, "{} of {} completions; {}", done.len(), entries.len(), a.counters());
        let _ = a.wait_completions(Duration::from_millis(100));
        a.poll_completions(&mut done, usize::MAX).expect("poll");
    }
    for (i, (e, c)) in entries.iter().zip(&done).enumerate() {
        assert_eq!((c.cookie, c.status), (e.cookie, tandem_hsi::CompletionStatus::Ok), "completion {i}");
    }
    // The last write to each offset wins.
    let mut last = std::collections::HashMap::new();
    for (e, d) in entries.iter().zip(&datas) {
        last.insert(e.window_offset, d);
    }
    for (off, d) in last {
        assert_eq!(&pair.b.mirror_window().read_vec(off, d.len()).expect("read"), d, "window at {off:#x}");
    }
}
