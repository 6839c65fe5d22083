//! A first mirror through the RTL engine, and the simulation speed.

mod common;

use std::time::{Duration, Instant};
use tandem_drivers::conformance::{Pair, MIN_HOST_REGION};
use tandem_drivers::Engine;
use tandem_hsi::{CompletionStatus, LinkState, Opcode, SubmissionEntry};
use tandem_sim_engine::SimEngine;

fn one(a: &dyn Engine, b: &dyn Engine, data: &[u8], off: u64, cookie: u32) {
    a.host_region().write(4096, data).unwrap();
    let e = SubmissionEntry {
        opcode: Opcode::Log,
        service_tag: 3,
        host_addr: a.host_region().dma_base() + 4096,
        window_offset: off,
        length: data.len() as u32,
        cookie,
    };
    assert_eq!(a.post(&[e]).unwrap(), 1);
    a.ring_doorbell().unwrap();
    let mut done = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while done.is_empty() {
        assert!(Instant::now() < deadline, "no completion within 30 s; link {:?}; {}", a.link_state(), a.counters());
        a.wait_completions(Duration::from_millis(100)).unwrap();
        a.poll_completions(&mut done, 4).unwrap();
    }
    assert_eq!(done.len(), 1);
    assert_eq!((done[0].cookie, done[0].status, done[0].opcode), (cookie, CompletionStatus::Ok, Opcode::Log));
    assert!(done[0].sequence >= 1);
    assert_eq!(b.mirror_window().read_vec(off, data.len()).unwrap(), data, "bytes in the partner's window");
}

#[test]
fn sim_mirrors_into_an_in_process_sim_partner() {
    let p: Pair = common::sim_pair(0);
    assert_eq!(p.a.info().backend, "sim");
    assert_eq!(p.a.info().ring_depth, common::RING_DEPTH);
    assert!(p.a.host_region().len() >= MIN_HOST_REGION);
    let data: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 1) as u8).collect();
    one(&*p.a, &*p.b, &data, 8192, 1);
    one(&*p.b, &*p.a, &data[..100], 64, 2);
    assert_eq!(p.a.link_state(), LinkState::Up);
}

#[test]
fn sim_mirrors_into_a_soft_partner_over_tcp_and_back() {
    let p: Pair = common::mixed_pair(0);
    let data: Vec<u8> = (0..3000u32).map(|i| (i * 13 + 5) as u8).collect();
    one(&*p.a, &*p.b, &data, 4096, 1);
    one(&*p.b, &*p.a, &data[..77], 100, 2);
}

/// Simulated cycles per second of one engine clocked flat out (mirroring 4 KiB pages to
/// an in-process partner), printed.
#[test]
fn throughput() {
    let dirs = common::Dirs::new();
    let wire = tandem_sim_engine::SimWire::new();
    let a = common::sim(wire.end(0).into(), &dirs.window("a"), "tp_a").unwrap();
    let b = common::sim(wire.end(1).into(), &dirs.window("b"), "tp_b").unwrap();
    let page = vec![0x5Au8; 4096];
    for k in 0..64u64 {
        a.host_region().write(k * 4096, &page).unwrap();
    }
    let entries: Vec<SubmissionEntry> = (0..256u32)
        .map(|i| SubmissionEntry {
            opcode: Opcode::Page,
            service_tag: 0,
            host_addr: a.host_region().dma_base() + u64::from(i % 64) * 4096,
            window_offset: u64::from(i % 200) * 4096,
            length: 4096,
            cookie: i,
        })
        .collect();
    let (c0, t0) = (a.cycles(), Instant::now());
    let mut done = Vec::new();
    a.post_all(&entries, &mut done, Duration::from_secs(60)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while done.len() < entries.len() {
        assert!(Instant::now() < deadline, "{} of {} completions", done.len(), entries.len());
        a.wait_completions(Duration::from_millis(100)).unwrap();
        a.poll_completions(&mut done, usize::MAX).unwrap();
    }
    let (cycles, secs) = (a.cycles() - c0, t0.elapsed().as_secs_f64());
    assert!(done.iter().all(|c| c.status == CompletionStatus::Ok));
    assert_eq!(b.mirror_window().read_vec(199 * 4096, 4096).unwrap(), page);
    assert_eq!(a.dma_errors() + b.dma_errors(), 0);
    let bytes = (entries.len() * 4096) as f64;
    eprintln!(
        "sim (64-bit engine): {cycles} simulated cycles in {secs:.2} s = {:.0} cycles/s; {:.2} bytes/cycle; {:.1} MB/s of mirrored data in wall time",
        cycles as f64 / secs,
        bytes / cycles as f64,
        bytes / secs / 1e6
    );
    assert!(cycles > 0 && bytes / (cycles as f64) > 1.0, "at least a byte per cycle");
    drop::<SimEngine>(a);
}
