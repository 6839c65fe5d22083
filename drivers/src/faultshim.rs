//! A frame-aware TCP proxy that injects link faults, for tests.
//!
//! [`FaultShim`] listens on `127.0.0.1:0` and forwards each accepted connection to a
//! target address. In both directions it cuts the byte stream into frames with
//! [`FrameHeader::decode`] and, per frame, may drop it, corrupt it (flip one random bit,
//! in the header some of the time), duplicate it, reorder it (hold it and release it
//! after the next frame) or delay it. Bytes that don't start with a decodable header are
//! forwarded raw. [`FaultShim::cut`] closes every current connection (new ones go
//! through) and [`FaultShim::set_blocked`] refuses connections, like a partitioned link.
//!
//! Each direction has its own [`Faults`]: "forward" is client to target (on a mirror
//! link: the data direction), "backward" is target to client (ACK/NACK). Randomness comes
//! from a seeded `SmallRng` per connection and direction, so a frame stream meets the same
//! fate for the same seed. Every loop is bounded by socket timeouts and the threads exit
//! when the shim is dropped.

use crate::soft::wire::{FrameBuf, Next};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::io::{self, ErrorKind, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use tandem_hsi::frame::FrameHeader;

/// How often idle loops look at the stop flag; also how long a held (reordered) frame
/// waits for a successor before it is released anyway.
const POLL: Duration = Duration::from_millis(10);

/// Fault probabilities for one direction, each per frame, from 0.0 to 1.0.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Faults {
    /// Drop the frame.
    pub drop: f64,
    /// Flip one random bit of the frame (a quarter of the time, in the header).
    pub corrupt: f64,
    /// Send the frame twice.
    pub duplicate: f64,
    /// Hold the frame and send it after the next one.
    pub reorder: f64,
    /// Sleep before forwarding, up to [`Faults::max_delay`].
    pub delay: f64,
    /// Longest injected delay.
    pub max_delay: Duration,
}

impl Faults {
    /// No faults: a plain proxy.
    pub const NONE: Faults = Faults { drop: 0.0, corrupt: 0.0, duplicate: 0.0, reorder: 0.0, delay: 0.0, max_delay: Duration::ZERO };

    fn validate(&self) -> io::Result<()> {
        for (name, p) in [
            ("drop", self.drop),
            ("corrupt", self.corrupt),
            ("duplicate", self.duplicate),
            ("reorder", self.reorder),
            ("delay", self.delay),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(io::Error::new(ErrorKind::InvalidInput, format!("fault probability {name} = {p} is not within 0..=1")));
            }
        }
        if self.max_delay > Duration::from_secs(1) {
            return Err(io::Error::new(ErrorKind::InvalidInput, "max_delay above one second"));
        }
        Ok(())
    }
}

/// What the shim did, summed over both directions and all connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ShimStats {
    /// Connections accepted and forwarded.
    pub connections: u64,
    /// Connections refused while blocked or because the target did not answer.
    pub refused: u64,
    /// Times [`FaultShim::cut`] (or blocking) closed live connections.
    pub cuts: u64,
    /// Frames forwarded (each copy counted).
    pub frames: u64,
    /// Bytes forwarded raw because they did not parse as frames.
    pub raw_bytes: u64,
    /// Frames dropped.
    pub dropped: u64,
    /// Frames corrupted.
    pub corrupted: u64,
    /// Frames duplicated.
    pub duplicated: u64,
    /// Frames reordered.
    pub reordered: u64,
    /// Frames delayed.
    pub delayed: u64,
}

#[derive(Debug, Default)]
struct Stats {
    connections: AtomicU64,
    refused: AtomicU64,
    cuts: AtomicU64,
    frames: AtomicU64,
    raw_bytes: AtomicU64,
    dropped: AtomicU64,
    corrupted: AtomicU64,
    duplicated: AtomicU64,
    reordered: AtomicU64,
    delayed: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

#[derive(Debug)]
struct Inner {
    target: SocketAddr,
    seed: u64,
    faults: Mutex<(Faults, Faults)>,
    blocked: AtomicBool,
    stop: AtomicBool,
    stats: Stats,
    /// Live connections: both sockets of each, for cutting.
    conns: Mutex<Vec<(u64, TcpStream, TcpStream)>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Inner {
    fn cut_all(&self) -> usize {
        let conns: Vec<_> = lock(&self.conns).drain(..).collect();
        for (_, a, b) in &conns {
            let _ = a.shutdown(Shutdown::Both);
            let _ = b.shutdown(Shutdown::Both);
        }
        conns.len()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The fault-injecting proxy. See the module docs.
#[derive(Debug)]
pub struct FaultShim {
    addr: SocketAddr,
    inner: Arc<Inner>,
    acceptor: Option<JoinHandle<()>>,
}

impl FaultShim {
    /// Starts a shim on `127.0.0.1:0` forwarding to `target`.
    pub fn start(target: SocketAddr, seed: u64, forward: Faults, backward: Faults) -> io::Result<Self> {
        forward.validate()?;
        backward.validate()?;
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let inner = Arc::new(Inner {
            target,
            seed,
            faults: Mutex::new((forward, backward)),
            blocked: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            stats: Stats::default(),
            conns: Mutex::new(Vec::new()),
            threads: Mutex::new(Vec::new()),
        });
        let i2 = inner.clone();
        let acceptor = std::thread::Builder::new().name("faultshim-accept".into()).spawn(move || accept_loop(i2, listener))?;
        Ok(FaultShim { addr, inner, acceptor: Some(acceptor) })
    }

    /// A shim that only forwards (cut and block still work).
    pub fn passthrough(target: SocketAddr) -> io::Result<Self> {
        Self::start(target, 0, Faults::NONE, Faults::NONE)
    }

    /// Where clients connect.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Changes the fault probabilities (applies to frames from now on).
    pub fn set_faults(&self, forward: Faults, backward: Faults) -> io::Result<()> {
        forward.validate()?;
        backward.validate()?;
        *lock(&self.inner.faults) = (forward, backward);
        Ok(())
    }

    /// Closes every current connection, both sides, now. Later connections go through.
    pub fn cut(&self) {
        self.inner.stats.cuts.fetch_add(1, Ordering::Relaxed);
        self.inner.cut_all();
    }

    /// While blocked, live connections are closed and new ones are refused.
    pub fn set_blocked(&self, blocked: bool) {
        self.inner.blocked.store(blocked, Ordering::SeqCst);
        if blocked {
            self.cut();
        }
    }

    /// What the shim did so far.
    pub fn stats(&self) -> ShimStats {
        let s = &self.inner.stats;
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ShimStats {
            connections: g(&s.connections),
            refused: g(&s.refused),
            cuts: g(&s.cuts),
            frames: g(&s.frames),
            raw_bytes: g(&s.raw_bytes),
            dropped: g(&s.dropped),
            corrupted: g(&s.corrupted),
            duplicated: g(&s.duplicated),
            reordered: g(&s.reordered),
            delayed: g(&s.delayed),
        }
    }
}

impl Drop for FaultShim {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
        self.inner.cut_all();
        let threads: Vec<_> = lock(&self.inner.threads).drain(..).collect();
        for h in threads {
            let _ = h.join();
        }
    }
}

fn accept_loop(inner: Arc<Inner>, listener: TcpListener) {
    let mut conn_id = 0u64;
    while !inner.stop.load(Ordering::SeqCst) {
        let client = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            }
            Err(e) => {
                tracing::debug!(error = %e, "shim accept failed");
                std::thread::sleep(POLL);
                continue;
            }
        };
        if inner.blocked.load(Ordering::SeqCst) {
            bump(&inner.stats.refused);
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        let server = match TcpStream::connect_timeout(&inner.target, Duration::from_secs(1)) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "shim cannot reach its target");
                bump(&inner.stats.refused);
                let _ = client.shutdown(Shutdown::Both);
                continue;
            }
        };
        conn_id += 1;
        match start_conn(&inner, conn_id, client, server) {
            Ok(hs) => {
                bump(&inner.stats.connections);
                let mut threads = lock(&inner.threads);
                threads.retain(|h| !h.is_finished());
                threads.extend(hs);
            }
            Err(e) => tracing::debug!(error = %e, "shim connection setup failed"),
        }
    }
}

fn start_conn(inner: &Arc<Inner>, id: u64, client: TcpStream, server: TcpStream) -> io::Result<Vec<JoinHandle<()>>> {
    for s in [&client, &server] {
        s.set_nonblocking(false)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(POLL))?;
        s.set_write_timeout(Some(Duration::from_secs(2)))?;
    }
    lock(&inner.conns).push((id, client.try_clone()?, server.try_clone()?));
    let mut hs = Vec::new();
    for forward in [true, false] {
        let (src, dst) = if forward { (client.try_clone()?, server.try_clone()?) } else { (server.try_clone()?, client.try_clone()?) };
        let rng = SmallRng::seed_from_u64(inner.seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(forward));
        let i2 = inner.clone();
        let name = if forward { "faultshim-fwd" } else { "faultshim-back" };
        hs.push(std::thread::Builder::new().name(name.into()).spawn(move || {
            pump(&i2, forward, src, dst, rng);
            // One side ended: end the other too.
            let mut conns = lock(&i2.conns);
            if let Some(pos) = conns.iter().position(|c| c.0 == id) {
                let (_, a, b) = conns.swap_remove(pos);
                let _ = a.shutdown(Shutdown::Both);
                let _ = b.shutdown(Shutdown::Both);
            }
        })?);
    }
    Ok(hs)
}

/// Forwards one direction until either side fails or the shim stops.
fn pump(inner: &Inner, forward: bool, mut src: TcpStream, mut dst: TcpStream, mut rng: SmallRng) {
    let mut fb = FrameBuf::new(0);
    let mut out: Vec<u8> = Vec::new();
    let mut held: Option<Vec<u8>> = None;
    let mut raw = false;
    let st = &inner.stats;
    loop {
        if inner.stop.load(Ordering::SeqCst) {
            return;
        }
        match fb.fill(&mut src) {
            Ok(0) => {
                if let Some(h) = held.take() {
                    let _ = dst.write_all(&h);
                }
                return;
            }
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {
                // Idle: release a held frame rather than keep it forever.
                if let Some(h) = held.take() {
                    if dst.write_all(&h).is_err() {
                        return;
                    }
                    bump(&st.frames);
                }
                continue;
            }
            Err(_) => return,
        }
        let f = if forward { lock(&inner.faults).0 } else { lock(&inner.faults).1 };
        out.clear();
        loop {
            if raw {
                let b = fb.take_raw();
                st.raw_bytes.fetch_add(b.len() as u64, Ordering::Relaxed);
                out.extend_from_slice(b);
                break;
            }
            match fb.next_frame() {
                Next::NeedMore => break,
                Next::Bad(_) => raw = true,
                Next::Frame { frame, .. } => {
                    let mut frame = frame.to_vec();
                    if rng.gen_bool(f.drop) {
                        bump(&st.dropped);
                        continue;
                    }
                    if rng.gen_bool(f.corrupt) {
                        let bits = if rng.gen_bool(0.25) { tandem_hsi::HEADER_LEN * 8 } else { frame.len() * 8 };
                        let bit = rng.gen_range(0..bits);
                        frame[bit / 8] ^= 1 << (bit % 8);
                        bump(&st.corrupted);
                    }
                    if rng.gen_bool(f.delay) && !f.max_delay.is_zero() {
                        bump(&st.delayed);
                        // Flush what is ready first so the delay applies to this frame.
                        if !out.is_empty() && dst.write_all(&out).is_err() {
                            return;
                        }
                        out.clear();
                        std::thread::sleep(rng.gen_range(Duration::ZERO..=f.max_delay));
                    }
                    let copies = if rng.gen_bool(f.duplicate) {
                        bump(&st.duplicated);
                        2
                    } else {
                        1
                    };
                    if held.is_none() && rng.gen_bool(f.reorder) {
                        bump(&st.reordered);
                        if copies == 2 {
                            frame.extend_from_within(..);
                            bump(&st.frames);
                        }
                        held = Some(frame);
                        continue;
                    }
                    for _ in 0..copies {
                        out.extend_from_slice(&frame);
                        bump(&st.frames);
                    }
                    if let Some(h) = held.take() {
                        out.extend_from_slice(&h);
                        bump(&st.frames);
                    }
                }
            }
        }
        if !out.is_empty() && dst.write_all(&out).is_err() {
            return;
        }
    }
}

/// Is `buf` the start of a frame? (For tests that inspect raw captures.)
pub fn starts_with_frame(buf: &[u8]) -> bool {
    FrameHeader::decode(buf).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use tandem_hsi::frame::{decode_frame, encode_frame};
    use tandem_hsi::Opcode;

    /// An echo server for one connection: returns what it read.
    fn echo() -> (SocketAddr, JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let h = std::thread::spawn(move || {
            if let Ok((mut s, _)) = l.accept() {
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut buf = [0u8; 65536];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        });
        (addr, h)
    }

    fn frames(n: u64) -> Vec<u8> {
        let mut out = Vec::new();
        for seq in 1..=n {
            let p = vec![seq as u8; 100];
            encode_frame(&FrameHeader::data(Opcode::Log, 0, seq, 0, 100), &p, &mut out);
        }
        out
    }

    fn read_frames(s: &mut TcpStream, want: usize) -> Vec<Result<u64, ()>> {
        let mut fb = FrameBuf::new(0);
        let mut got = Vec::new();
        s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        while got.len() < want {
            match fb.fill(s) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            while let Next::Frame { frame, .. } = fb.next_frame() {
                got.push(decode_frame(frame).map(|(h, _, _)| h.sequence).map_err(|_| ()));
            }
        }
        got
    }

    #[test]
    fn passthrough_forwards_frames_in_order() {
        let (target, h) = echo();
        let shim = FaultShim::passthrough(target).unwrap();
        let mut c = TcpStream::connect(shim.local_addr()).unwrap();
        c.write_all(&frames(50)).unwrap();
        let got = read_frames(&mut c, 50);
        assert_eq!(got, (1..=50).map(Ok).collect::<Vec<_>>());
        assert_eq!(shim.stats().frames, 100, "50 each way");
        drop(c);
        drop(shim);
        h.join().unwrap();
    }

    #[test]
    fn faults_are_applied_and_counted() {
        let (target, h) = echo();
        let f = Faults { drop: 0.1, corrupt: 0.0, duplicate: 0.1, reorder: 0.1, delay: 0.0, max_delay: Duration::ZERO };
        let shim = FaultShim::start(target, 42, f, Faults::NONE).unwrap();
        let mut c = TcpStream::connect(shim.local_addr()).unwrap();
        c.write_all(&frames(300)).unwrap();
        // Read until the stream goes quiet.
        let got = read_frames(&mut c, usize::MAX);
        let s2 = shim.stats();
        assert!(s2.dropped > 0 && s2.duplicated > 0 && s2.reordered > 0, "{s2:?}");
        let seqs: Vec<u64> = got.iter().map(|r| *r.as_ref().unwrap()).collect();
        assert_eq!(seqs.len() as u64, 300 - s2.dropped + s2.duplicated);
        assert!(seqs.windows(2).any(|w| w[1] < w[0]), "some frame came out of order");
        drop(shim);
        h.join().unwrap();
    }

    #[test]
    fn corruption_breaks_the_crc_or_the_header() {
        let (target, h) = echo();
        let f = Faults { corrupt: 1.0, ..Faults::NONE };
        let shim = FaultShim::start(target, 7, f, Faults::NONE).unwrap();
        let mut c = TcpStream::connect(shim.local_addr()).unwrap();
        let one = frames(1);
        c.write_all(&one).unwrap();
        let mut back = vec![0u8; one.len()];
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.read_exact(&mut back).unwrap();
        let diff: u32 = one.iter().zip(&back).map(|(a, b)| (a ^ b).count_ones()).sum();
        assert_eq!(diff, 1, "exactly one bit flipped");
        assert!(decode_frame(&back).is_err());
        drop(shim);
        h.join().unwrap();
    }

    #[test]
    fn cut_and_block() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let shim = FaultShim::passthrough(l.local_addr().unwrap()).unwrap();
        let mut c = TcpStream::connect(shim.local_addr()).unwrap();
        let (_server, _) = l.accept().unwrap();
        shim.cut();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut b = [0u8; 1];
        assert!(matches!(c.read(&mut b), Ok(0) | Err(_)), "cut closes the client side");
        shim.set_blocked(true);
        let mut c2 = TcpStream::connect(shim.local_addr()).unwrap();
        c2.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert!(matches!(c2.read(&mut b), Ok(0) | Err(_)), "blocked shim closes new connections");
        assert!(shim.stats().refused >= 1);
        shim.set_blocked(false);
        let _c3 = TcpStream::connect(shim.local_addr()).unwrap();
        let (_s3, _) = l.accept().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while shim.stats().connections < 2 {
            assert!(std::time::Instant::now() < deadline, "an unblocked shim forwards again: {:?}", shim.stats());
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(starts_with_frame(&frames(1)));
    }
}
