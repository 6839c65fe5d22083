//! Bad input against a running receiver: raw bytes sent straight to a soft engine's
//! listener. Each kind of bad frame must be rejected with the right counter, a stream
//! that can't be trusted (header errors) must be closed, nothing outside a valid,
//! in-window data frame may change in the mirror window, and afterwards the engine still
//! mirrors for a normal sender.

mod common;

use common::*;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use tandem_drivers::soft::{wire, SoftEngine, SoftListener};
use tandem_drivers::{CounterSnapshot, Engine};
use tandem_hsi::frame::{encode_frame, header, FrameHeader, FrameKind};
use tandem_hsi::{CompletionStatus, Counter, NackReason, Opcode, SubmissionEntry, MAX_PAYLOAD};

const PATTERN: u8 = 0x5A;
const DEADLINE: Duration = Duration::from_secs(10);

/// Engine B under test, and a bound listener for the partner A that starts later.
struct Fixture {
    b: SoftEngine,
    la: Option<SoftListener>,
    dirs: Dirs,
    /// What B's window must hold.
    shadow: Vec<u8>,
}

impl Fixture {
    fn new() -> Self {
        init_tracing();
        let dirs = Dirs::new();
        let la = listener();
        let lb = listener();
        let b = start(lb, la.local_addr(), &dirs.window("b"));
        let w = b.mirror_window();
        let shadow = vec![PATTERN; w.len() as usize];
        w.write(0, &shadow).unwrap();
        Fixture { b, la: Some(la), dirs, shadow }
    }

    fn addr(&self) -> SocketAddr {
        self.b.listen_addr()
    }

    fn counters(&self) -> CounterSnapshot {
        self.b.counters()
    }

    /// Waits (bounded) until counter `c` reaches `want`.
    fn wait_counter(&self, c: Counter, want: u64) {
        let deadline = Instant::now() + DEADLINE;
        while self.counters().get(c) < want {
            assert!(Instant::now() < deadline, "{} stayed below {want}: {}", c.name(), self.counters());
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(self.counters().get(c), want, "{} overshot", c.name());
    }

    fn assert_window(&self, what: &str) {
        let w = self.b.mirror_window();
        let got = w.read_vec(0, w.len() as usize).unwrap();
        if let Some(i) = got.iter().zip(&self.shadow).position(|(g, e)| g != e) {
            panic!("{what}: window changed at {i:#x}: {:#04x} instead of {:#04x}", got[i], self.shadow[i]);
        }
    }

    /// Starts a real partner A and checks both directions still mirror.
    fn assert_still_serves(mut self) {
        let la = self.la.take().unwrap();
        let a = start(la, self.addr(), &self.dirs.window("a"));
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        for (from, to) in [(&a, &self.b), (&self.b, &a)] {
            from.host_region().write(0, &data).unwrap();
            let e =
                SubmissionEntry { opcode: Opcode::Page, service_tag: 1, host_addr: HOST_DMA, window_offset: 9000, length: 5000, cookie: 1 };
            let mut done = Vec::new();
            from.post_all(&[e], &mut done, DEADLINE).unwrap();
            let deadline = Instant::now() + DEADLINE;
            while done.is_empty() {
                assert!(Instant::now() < deadline, "no completion; {}", from.counters());
                let _ = from.wait_completions(Duration::from_millis(100));
                from.poll_completions(&mut done, 1).unwrap();
            }
            assert_eq!(done[0].status, CompletionStatus::Ok);
            assert_eq!(to.mirror_window().read_vec(9000, 5000).unwrap(), data);
        }
        self.shadow[9000..14000].copy_from_slice(&data);
        self.assert_window("after serving a real partner");
    }
}

fn raw(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

fn frame(h: &FrameHeader, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(h, payload, &mut out);
    out
}

fn data(seq: u64, offset: u64, payload: &[u8]) -> Vec<u8> {
    frame(&FrameHeader::data(Opcode::Log, 5, seq, offset, payload.len() as u32), payload)
}

fn heartbeat(session: u64, base: u64) -> Vec<u8> {
    frame(&FrameHeader::heartbeat(session, base), &[])
}

/// Reads control frames until `n` have arrived.
fn read_control(s: &mut TcpStream, n: usize) -> Vec<FrameHeader> {
    let mut fb = wire::FrameBuf::new(0);
    let mut got = Vec::new();
    while got.len() < n {
        match fb.fill(s) {
            Ok(0) => panic!("connection closed after {} of {n} frames: {got:?}", got.len()),
            Ok(_) => {}
            Err(e) => panic!("read failed after {} of {n} frames ({got:?}): {e}", got.len()),
        }
        while let wire::Next::Frame { header, frame } = fb.next_frame() {
            tandem_hsi::frame::check_crc(frame).unwrap();
            got.push(header);
        }
    }
    got
}

/// The receiver closes the connection (EOF or reset) within the deadline.
fn assert_closed(s: &mut TcpStream) {
    let mut b = [0u8; 64];
    loop {
        match s.read(&mut b) {
            Ok(0) => return,
            Ok(_) => continue, // pending ACK/NACK bytes
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return,
            Err(e) => panic!("connection not closed: {e}"),
        }
    }
}

/// A header error: counted, the connection closed, nothing written.
fn header_error_case(fx: &Fixture, bytes: &[u8], what: &str) {
    let before = fx.counters().get(Counter::HeaderErrors);
    let mut s = raw(fx.addr());
    s.write_all(&heartbeat(0xAB, 1)).unwrap();
    let _ = s.write_all(bytes);
    assert_closed(&mut s);
    fx.wait_counter(Counter::HeaderErrors, before + 1);
    fx.assert_window(what);
}

#[test]
fn header_errors_close_the_connection() {
    let fx = Fixture::new();
    let good = data(1, 100, &[1; 16]);
    header_error_case(&fx, &[0xFF; 64], "garbage bytes");
    let mut bad = good.clone();
    bad[0] = b'X';
    header_error_case(&fx, &bad, "wrong magic");
    let mut bad = good.clone();
    bad[4] = 2;
    header_error_case(&fx, &bad, "wrong version");
    let mut bad = good.clone();
    bad[5] = 9;
    header_error_case(&fx, &bad, "unknown frame type");
    let mut bad = good.clone();
    bad[6] = 77;
    header_error_case(&fx, &bad, "unknown opcode");
    let mut bad = good.clone();
    bad[7] = 0x80;
    header_error_case(&fx, &bad, "reserved flags");
    let mut bad = good.clone();
    header::LENGTH.put(&mut bad, (MAX_PAYLOAD + 1) as u64);
    header_error_case(&fx, &bad, "length above MAX_PAYLOAD");
    let mut bad = frame(&FrameHeader::ack(1), &[]);
    header::WINDOW_OFFSET.put(&mut bad, 5);
    header_error_case(&fx, &bad, "non-zero field in an ACK");
    assert_eq!(fx.counters().get(Counter::DataRx), 0);
    fx.assert_still_serves();
}

#[test]
fn truncated_header_then_close_changes_nothing() {
    let fx = Fixture::new();
    let before = fx.counters();
    let mut s = raw(fx.addr());
    s.write_all(&data(1, 100, &[1; 16])[..20]).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    assert_closed(&mut s);
    // A new connection is served: the receiver got over the truncated one.
    let mut s = raw(fx.addr());
    s.write_all(&heartbeat(0x77, 1)).unwrap();
    assert_eq!(read_control(&mut s, 1)[0], FrameHeader::ack(0));
    let after = fx.counters();
    for c in [Counter::HeaderErrors, Counter::CrcErrors, Counter::DataRx, Counter::NacksTx] {
        assert_eq!(after.get(c), before.get(c), "{}", c.name());
    }
    fx.assert_window("truncated header");
    drop(s);
    fx.assert_still_serves();
}

#[test]
fn bad_crc_is_nacked_and_not_written() {
    let fx = Fixture::new();
    let mut s = raw(fx.addr());
    s.write_all(&heartbeat(0x11, 1)).unwrap();
    assert_eq!(read_control(&mut s, 1)[0], FrameHeader::ack(0));
    let mut bad = data(1, 100, &[9; 32]);
    bad[tandem_hsi::HEADER_LEN + 3] ^= 0x01;
    s.write_all(&bad).unwrap();
    let r = read_control(&mut s, 1);
    assert_eq!(r[0], FrameHeader::nack(NackReason::Crc, 1));
    fx.wait_counter(Counter::CrcErrors, 1);
    fx.assert_window("bad CRC");
    // The stream is still in step: the good frame is written and ACKed.
    s.write_all(&data(1, 100, &[9; 32])).unwrap();
    assert_eq!(read_control(&mut s, 1)[0], FrameHeader::ack(1));
    let mut fx = fx;
    fx.shadow[100..132].fill(9);
    fx.assert_window("good frame after a bad CRC");
    assert_eq!(fx.counters().get(Counter::DataRx), 1);
    drop(s);
    fx.assert_still_serves();
}

#[test]
fn data_before_heartbeat_is_nacked_not_synced() {
    let fx = Fixture::new();
    let mut s = raw(fx.addr());
    s.write_all(&data(1, 100, &[3; 8])).unwrap();
    s.write_all(&data(2, 200, &[3; 8])).unwrap();
    let r = read_control(&mut s, 1);
    assert_eq!(r[0], FrameHeader::nack(NackReason::NotSynced, 0));
    fx.wait_counter(Counter::NacksTx, 1);
    assert_eq!(fx.counters().get(Counter::DataRx), 0);
    fx.assert_window("data before heartbeat");
    drop(s);
    fx.assert_still_serves();
}

#[test]
fn out_of_window_and_overflowing_offsets_are_nacked_bounds() {
    let fx = Fixture::new();
    let wlen = fx.b.mirror_window().len();
    let mut s = raw(fx.addr());
    s.write_all(&heartbeat(0x22, 1)).unwrap();
    assert_eq!(read_control(&mut s, 1)[0], FrameHeader::ack(0));
    for (seq, off) in [(1u64, wlen), (2, wlen - 8), (3, u64::MAX - 3), (4, u64::MAX)] {
        s.write_all(&data(seq, off, &[0xEE; 16])).unwrap();
        let r = read_control(&mut s, 1);
        assert_eq!(r[0], FrameHeader::nack(NackReason::Bounds, seq), "offset {off:#x}");
        // Not consumed: the sequence is still expected; a barrier goes in its place.
        s.write_all(&frame(&FrameHeader::data(Opcode::Barrier, 0, seq, 0, 0), &[])).unwrap();
        assert_eq!(read_control(&mut s, 1)[0], FrameHeader::ack(seq), "the barrier in its place is consumed");
    }
    fx.wait_counter(Counter::BoundsRejects, 4);
    assert_eq!(fx.counters().get(Counter::DataRx), 4, "only the four barriers were taken");
    fx.assert_window("out-of-window frames");
    // A NACK lost with the connection only delays the answer: the frame is still expected,
    // and sent again it is rejected again; no ACK covers it meanwhile.
    s.write_all(&data(5, wlen, &[0xEE; 16])).unwrap();
    drop(s);
    let mut s = raw(fx.addr());
    s.write_all(&heartbeat(0x22, 5)).unwrap();
    assert_eq!(read_control(&mut s, 1)[0], FrameHeader::ack(4));
    s.write_all(&data(5, wlen, &[0xEE; 16])).unwrap();
    assert_eq!(read_control(&mut s, 1)[0], FrameHeader::nack(NackReason::Bounds, 5));
    fx.assert_window("out-of-window frames after a reconnect");
    drop(s);
    fx.assert_still_serves();
}

#[test]
fn duplicates_and_gaps_are_counted_and_not_written() {
    let mut fx = Fixture::new();
    let mut s = raw(fx.addr());
    s.write_all(&heartbeat(0x33, 1)).unwrap();
    assert_eq!(read_control(&mut s, 1)[0], FrameHeader::ack(0));
    s.write_all(&data(1, 300, &[4; 8])).unwrap();
    assert_eq!(read_control(&mut s, 1)[0], FrameHeader::ack(1));
    // A gap: seq 3 while 2 is expected, twice: one NACK per gap episode.
    let mut two = data(3, 400, &[5; 8]);
    two.extend(data(4, 500, &[5; 8]));
    s.write_all(&two).unwrap();
    let r = read_control(&mut s, 1);
    assert_eq!(r[0], FrameHeader::nack(NackReason::SequenceGap, 2));
    fx.wait_counter(Counter::SequenceErrors, 2);
    // A duplicate of 1 with different bytes: re-ACKed, not rewritten.
    s.write_all(&data(1, 300, &[6; 8])).unwrap();
    assert_eq!(read_control(&mut s, 1)[0].kind, FrameKind::Ack);
    fx.wait_counter(Counter::Duplicates, 1);
    fx.shadow[300..308].fill(4);
    fx.assert_window("duplicates and gaps");
    assert_eq!(fx.counters().get(Counter::NacksTx), 1);
    drop(s);
    fx.assert_still_serves();
}

#[test]
fn a_new_connection_replaces_the_old_one() {
    let fx = Fixture::new();
    let mut s1 = raw(fx.addr());
    s1.write_all(&heartbeat(0x44, 1)).unwrap();
    assert_eq!(read_control(&mut s1, 1)[0], FrameHeader::ack(0));
    let mut s2 = raw(fx.addr());
    s2.write_all(&heartbeat(0x44, 1)).unwrap();
    assert_eq!(read_control(&mut s2, 1)[0], FrameHeader::ack(0));
    assert_closed(&mut s1);
    drop(s2);
    fx.assert_still_serves();
}

#[test]
fn engine_start_rejects_bad_config() {
    let dirs = Dirs::new();
    let l = listener();
    let mut c = config(l.local_addr(), "127.0.0.1:0".parse().unwrap(), &dirs.window("x"));
    match SoftEngine::start(l, c) {
        Err(tandem_drivers::EngineError::Config { field, .. }) => assert_eq!(field, "partner"),
        other => panic!("expected a config error, got {other:?}"),
    }
    let l = listener();
    c = config(l.local_addr(), "127.0.0.1:9".parse().unwrap(), &dirs.window("x"));
    c.ring_depth = 1000;
    match SoftEngine::start(l, c) {
        Err(tandem_drivers::EngineError::Config { field, .. }) => assert_eq!(field, "ring_depth"),
        other => panic!("expected a config error, got {other:?}"),
    }
}
