//! Links for the model's stream ports: an in-process wire to a second sim engine, and a
//! TCP bridge to a soft engine (or anything speaking its connection protocol).

use crate::core::{relock, FrameLink, Wake};
use std::collections::VecDeque;
use std::io::{ErrorKind, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use tandem_drivers::soft::wire::{FrameBuf, Next};
use tandem_hsi::codes::FrameType;
use tandem_hsi::frame::{FrameHeader, HEADER_LEN};

/// Frames queued towards an engine that is not taking them, at most (more are dropped,
/// as a link drops what it cannot carry).
const MAX_QUEUED: usize = 4096;

#[derive(Debug, Default)]
struct Side {
    queue: VecDeque<Vec<u8>>,
    wake: Option<Arc<Wake>>,
}

/// An in-process link between two sim engines: whole frames, in order, no loss unless
/// [`SimWire::cut`]. Clone it to keep a handle; [`SimWire::end`] gives each engine its
/// side. An engine that stops detaches; frames sent to a detached side are dropped, and
/// a new engine may attach to it (a restarted partner).
#[derive(Debug, Clone, Default)]
pub struct SimWire(Arc<Wire>);

#[derive(Debug, Default)]
struct Wire {
    sides: [Mutex<Side>; 2],
    /// Loss of signal: every frame sent is lost.
    down: AtomicBool,
}

impl SimWire {
    /// A new wire with nothing attached.
    pub fn new() -> Self {
        SimWire::default()
    }

    /// Side `0` or `1`, for one engine.
    ///
    /// # Panics
    /// On another side number.
    pub fn end(&self, side: usize) -> WireEnd {
        assert!(side < 2, "a wire has sides 0 and 1");
        WireEnd { wire: self.clone(), side }
    }

    /// Drops every frame in flight in both directions (the engines recover by
    /// retransmission; a cut this short is not seen as the link going down).
    pub fn cut(&self) {
        for s in self.0.sides.iter() {
            relock(s).queue.clear();
        }
    }

    /// Loss of signal (a pulled cable) while `down`: every frame sent either way is lost,
    /// so after `HEARTBEAT_US` intervals without a frame each engine reports its link
    /// Down, and Up again (a link reset) once frames flow after `set_down(false)`.
    pub fn set_down(&self, down: bool) {
        self.0.down.store(down, Ordering::Release);
        if down {
            self.cut();
        }
    }
}

/// One side of a [`SimWire`].
#[derive(Debug)]
pub struct WireEnd {
    wire: SimWire,
    side: usize,
}

impl WireEnd {
    pub(crate) fn attach(self, wake: Arc<Wake>) -> Box<dyn FrameLink> {
        let mut s = relock(&self.wire.0.sides[self.side]);
        s.queue.clear();
        s.wake = Some(wake);
        drop(s);
        Box::new(self)
    }
}

impl FrameLink for WireEnd {
    fn send(&mut self, frame: Vec<u8>) {
        if self.wire.0.down.load(Ordering::Acquire) {
            return;
        }
        let mut other = relock(&self.wire.0.sides[1 - self.side]);
        if let Some(w) = other.wake.clone() {
            if other.queue.len() < MAX_QUEUED {
                other.queue.push_back(frame);
            }
            drop(other);
            w.wake();
        }
    }

    fn recv(&mut self) -> Option<Vec<u8>> {
        relock(&self.wire.0.sides[self.side]).queue.pop_front()
    }
}

impl Drop for WireEnd {
    fn drop(&mut self) {
        let mut s = relock(&self.wire.0.sides[self.side]);
        s.wake = None;
        s.queue.clear();
    }
}

/// TCP bridge state shared by its threads and the simulation loop.
#[derive(Debug)]
struct Bridge {
    partner: SocketAddr,
    /// The connection this node dialed: data frames and heartbeats out, ACK/NACK in.
    out_conn: Mutex<Option<TcpStream>>,
    /// The connection the partner dialed: its data frames in, this node's ACK/NACK out.
    in_conn: Mutex<Option<TcpStream>>,
    inbound: Mutex<VecDeque<Vec<u8>>>,
    stop: AtomicBool,
    /// Loss of signal: frames are lost both ways (the connections stay).
    down: AtomicBool,
    wake: Arc<Wake>,
}

/// The model's link port bridged to TCP with the soft engine's connection protocol: the
/// node listens for its partner's sender and dials its partner's listener, like a soft
/// node; frames the engine sends go out whole on the matching connection (data and
/// heartbeats on the dialed one, ACK/NACK on the accepted one), and whole frames read
/// from either connection go into the engine. Frames with no connection to go to are
/// dropped (the engine retransmits).
#[derive(Debug)]
pub struct TcpBridge {
    b: Arc<Bridge>,
    threads: Vec<JoinHandle<()>>,
}

/// A cloneable handle that cuts a bridge's connections (they are re-established).
#[derive(Debug, Clone)]
pub struct BridgeCut(Arc<Bridge>);

impl BridgeCut {
    /// Closes both connections now.
    pub fn cut(&self) {
        self.0.cut();
    }

    /// Loss of signal while `down`: every frame is lost both ways (see
    /// [`SimWire::set_down`]).
    pub fn set_down(&self, down: bool) {
        self.0.down.store(down, Ordering::Release);
    }
}

impl Bridge {
    fn cut(&self) {
        for c in [&self.out_conn, &self.in_conn] {
            if let Some(s) = relock(c).take() {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }

    fn push(&self, frame: &[u8]) {
        if self.down.load(Ordering::Acquire) {
            return;
        }
        let mut q = relock(&self.inbound);
        if q.len() < MAX_QUEUED {
            q.push_back(frame.to_vec());
        }
        drop(q);
        self.wake.wake();
    }

    /// Reads whole frames from `s` into the engine until the connection ends.
    fn read_frames(&self, mut s: TcpStream) {
        let mut fb = FrameBuf::new(0);
        while !self.stop.load(Ordering::Acquire) {
            match fb.fill(&mut s) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => continue,
                Err(_) => break,
            }
            loop {
                match fb.next_frame() {
                    Next::NeedMore => break,
                    Next::Frame { frame, .. } => self.push(frame),
                    Next::Bad(e) => {
                        tracing::warn!(error = %e, "sim bridge: bad frame header; closing the connection");
                        let _ = s.shutdown(Shutdown::Both);
                        return;
                    }
                }
            }
        }
        let _ = s.shutdown(Shutdown::Both);
    }

    fn dial_loop(&self) {
        let mut backoff = Duration::from_millis(2);
        while !self.stop.load(Ordering::Acquire) {
            let s = match TcpStream::connect_timeout(&self.partner, Duration::from_millis(200)) {
                Ok(s) => s,
                Err(_) => {
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_millis(50));
                    continue;
                }
            };
            backoff = Duration::from_millis(2);
            let reader = s
                .set_nodelay(true)
                .and_then(|_| s.set_read_timeout(Some(Duration::from_millis(20))))
                .and_then(|_| s.set_write_timeout(Some(Duration::from_secs(1))))
                .and_then(|_| s.try_clone());
            let Ok(reader) = reader else { continue };
            *relock(&self.out_conn) = Some(s);
            self.read_frames(reader);
            if let Some(s) = relock(&self.out_conn).take() {
                let _ = s.shutdown(Shutdown::Both);
            }
            std::thread::sleep(backoff);
        }
    }

    fn accept_loop(self: &Arc<Self>, listener: TcpListener) {
        if listener.set_nonblocking(true).is_err() {
            tracing::error!("sim bridge: cannot make the listener non-blocking; not accepting");
            return;
        }
        let mut reader: Option<JoinHandle<()>> = None;
        while !self.stop.load(Ordering::Acquire) {
            let s = match listener.accept() {
                Ok((s, _)) => s,
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                }
            };
            let setup = s
                .set_nonblocking(false)
                .and_then(|_| s.set_nodelay(true))
                .and_then(|_| s.set_read_timeout(Some(Duration::from_millis(20))))
                .and_then(|_| s.set_write_timeout(Some(Duration::from_secs(1))))
                .and_then(|_| s.try_clone());
            let Ok(r) = setup else { continue };
            if let Some(old) = relock(&self.in_conn).replace(s) {
                let _ = old.shutdown(Shutdown::Both);
            }
            if let Some(h) = reader.take() {
                let _ = h.join();
            }
            let me = self.clone();
            reader = std::thread::Builder::new().name("tandem-sim-rx".into()).spawn(move || me.read_frames(r)).ok();
        }
        self.cut();
        if let Some(h) = reader {
            let _ = h.join();
        }
    }
}

impl TcpBridge {
    /// Starts accepting on `listener` and dialing `partner`.
    pub(crate) fn start(listener: TcpListener, partner: SocketAddr, wake: Arc<Wake>) -> std::io::Result<Self> {
        let b = Arc::new(Bridge {
            partner,
            out_conn: Mutex::new(None),
            in_conn: Mutex::new(None),
            inbound: Mutex::new(VecDeque::new()),
            stop: AtomicBool::new(false),
            down: AtomicBool::new(false),
            wake,
        });
        let (b1, b2) = (b.clone(), b.clone());
        let t1 = std::thread::Builder::new().name("tandem-sim-accept".into()).spawn(move || b1.accept_loop(listener))?;
        let t2 = std::thread::Builder::new().name("tandem-sim-dial".into()).spawn(move || b2.dial_loop())?;
        Ok(TcpBridge { b, threads: vec![t1, t2] })
    }

    /// A handle that cuts the connections.
    pub(crate) fn cutter(&self) -> BridgeCut {
        BridgeCut(self.b.clone())
    }

    /// The simulation loop's side.
    pub(crate) fn port(&self) -> Box<dyn FrameLink> {
        Box::new(BridgePort(self.b.clone()))
    }

    /// Stops the threads and closes the connections.
    pub(crate) fn stop(&mut self) {
        self.b.stop.store(true, Ordering::Release);
        self.b.cut();
        for h in self.threads.drain(..) {
            let _ = h.join();
        }
        self.b.cut();
    }
}

impl Drop for TcpBridge {
    fn drop(&mut self) {
        self.stop();
    }
}

struct BridgePort(Arc<Bridge>);

impl FrameLink for BridgePort {
    fn send(&mut self, frame: Vec<u8>) {
        if self.0.down.load(Ordering::Acquire) {
            return;
        }
        let to = match frame.get(..HEADER_LEN).map(FrameHeader::decode) {
            Some(Ok(h)) if matches!(h.frame_type(), FrameType::Ack | FrameType::Nack) => &self.0.in_conn,
            Some(Ok(_)) => &self.0.out_conn,
            _ => {
                tracing::warn!(len = frame.len(), "sim bridge: the engine sent a frame that does not decode; dropped");
                return;
            }
        };
        let mut c = relock(to);
        if let Some(s) = c.as_mut() {
            if s.write_all(&frame).is_err() {
                let _ = s.shutdown(Shutdown::Both);
                *c = None;
            }
        }
    }

    fn recv(&mut self) -> Option<Vec<u8>> {
        relock(&self.0.inbound).pop_front()
    }
}
