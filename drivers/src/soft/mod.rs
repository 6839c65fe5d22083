//! The software engine: the HSI implemented in software over TCP.
//!
//! Each node runs both directions of the mirror link. Its sender dials the partner's
//! listener and sends data frames for the entries the host posts; its receiver accepts
//! the partner's sender and writes the partner's frames into the local mirror window.
//! Frames, sequence numbers, ACK/NACK and heartbeats follow `docs/hsi.md` ("Link
//! protocol") byte for byte, through `tandem_hsi::frame`.
//!
//! # Quick start: a two-node pair on loopback with ephemeral ports
//!
//! ```
//! use std::time::Duration;
//! use tandem_drivers::soft::{SoftConfig, SoftEngine};
//! use tandem_drivers::{Engine, MemRegion};
//! use tandem_hsi::{CompletionStatus, Opcode, SubmissionEntry};
//!
//! let la = SoftEngine::bind("127.0.0.1:0".parse().unwrap()).unwrap();
//! let lb = SoftEngine::bind("127.0.0.1:0".parse().unwrap()).unwrap();
//! let (addr_a, addr_b) = (la.local_addr(), lb.local_addr());
//! let region = || MemRegion::anonymous(1 << 20, 0x1000_0000).unwrap();
//! let a = SoftEngine::start(la, SoftConfig::new(addr_a, addr_b, region(), region())).unwrap();
//! let b = SoftEngine::start(lb, SoftConfig::new(addr_b, addr_a, region(), region())).unwrap();
//!
//! a.host_region().write(0, b"mirror me").unwrap();
//! let e = SubmissionEntry { opcode: Opcode::Log, service_tag: 1, host_addr: 0x1000_0000, window_offset: 64, length: 9, cookie: 7 };
//! assert_eq!(a.post(&[e]).unwrap(), 1);
//! a.ring_doorbell().unwrap();
//! let mut done = Vec::new();
//! while done.is_empty() {
//!     assert!(a.wait_completions(Duration::from_secs(5)).unwrap());
//!     a.poll_completions(&mut done, 16).unwrap();
//! }
//! assert_eq!(done[0].status, CompletionStatus::Ok);
//! assert_eq!(b.mirror_window().read_vec(64, 9).unwrap(), b"mirror me");
//! ```

mod config;
mod rx;
mod tx;
pub mod wire;

pub use config::{
    SoftConfig, DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_IN_FLIGHT_BYTES, DEFAULT_RETRANSMIT_TIMEOUT,
    DEFAULT_RING_DEPTH,
};

use crate::api::{CounterSnapshot, Engine, EngineError, EngineInfo};
use crate::region::MemRegion;
use config::Timing;
use rx::RxState;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tandem_hsi::{CompletionEntry, Counter, LinkState, SubmissionEntry, HSI_VERSION, MAX_PAYLOAD};
use tx::{TxState, Writer};

/// [`Engine::wait_completions`] spins before it sleeps when entries are outstanding and
/// recent round trips were short, so a completion about to arrive is picked up without a
/// futex wake-up. The spin lasts this long when the smoothed round trip is shorter.
const SPIN_MAX: Duration = Duration::from_micros(100);
/// The spin when nothing suggests a completion is near.
const SPIN_MIN: Duration = Duration::from_micros(5);

/// Event counters as 64-bit atomics, indexed by [`Counter`].
#[derive(Debug, Default)]
pub(crate) struct Counters([AtomicU64; Counter::COUNT]);

impl Counters {
    pub fn inc(&self, c: Counter) {
        self.add(c, 1);
    }
    pub fn add(&self, c: Counter, n: u64) {
        self.0[c as usize].fetch_add(n, Ordering::Relaxed);
    }
    pub fn snapshot(&self) -> CounterSnapshot {
        let mut s = CounterSnapshot::default();
        for (i, v) in self.0.iter().enumerate() {
            s.0[i] = v.load(Ordering::Relaxed);
        }
        s
    }
}

/// State shared by the API and the engine's threads.
#[derive(Debug)]
pub(crate) struct Shared {
    pub host: MemRegion,
    pub window: MemRegion,
    pub timing: Timing,
    pub partner: SocketAddr,
    pub session: u64,
    pub counters: Counters,
    link: AtomicU8,
    shutdown: AtomicBool,
    pub tx: Mutex<TxState>,
    comp_cv: Condvar,
    comp_ready: AtomicUsize,
    pub writer: Mutex<Writer>,
    /// A clone of the sending socket, only for shutting it down from outside.
    tx_sock: Mutex<Option<TcpStream>>,
    pub rx: Mutex<RxState>,
    /// A clone of the current receiving socket, only for shutting it down.
    rx_conn: Mutex<Option<TcpStream>>,
    idle: Mutex<()>,
    idle_cv: Condvar,
    epoch: Instant,
    last_tx_ns: AtomicU64,
    /// Smoothed time from sending a frame to its ACK, in nanoseconds.
    pub rtt_ns: AtomicU64,
    /// Entries posted and not yet completed (a hint for the spin in `wait_completions`).
    outstanding: AtomicUsize,
}

fn relock<T>(r: std::sync::LockResult<MutexGuard<'_, T>>) -> MutexGuard<'_, T> {
    r.unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub fn lock_tx(&self) -> MutexGuard<'_, TxState> {
        relock(self.tx.lock())
    }
    pub fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        relock(self.writer.lock())
    }
    pub fn lock_rx(&self) -> MutexGuard<'_, RxState> {
        relock(self.rx.lock())
    }
    pub fn lock_tx_sock(&self) -> MutexGuard<'_, Option<TcpStream>> {
        relock(self.tx_sock.lock())
    }
    pub fn lock_rx_conn(&self) -> MutexGuard<'_, Option<TcpStream>> {
        relock(self.rx_conn.lock())
    }
    pub fn is_shutdown(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }
    pub fn set_link(&self, s: LinkState) {
        self.link.store(s.code(), Ordering::Release);
    }
    pub fn note_tx(&self) {
        self.last_tx_ns.store(self.epoch.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }
    /// Feeds one round-trip sample into the smoothed estimate (weight 1/8).
    pub fn note_rtt(&self, sample: Duration) {
        let s = sample.as_nanos().min(u128::from(u32::MAX)) as u64;
        let old = self.rtt_ns.load(Ordering::Relaxed);
        let new = if old == 0 { s } else { old - old / 8 + s / 8 };
        self.rtt_ns.store(new, Ordering::Relaxed);
    }
    pub fn since_last_tx(&self, now: Instant) -> Duration {
        let last = Duration::from_nanos(self.last_tx_ns.load(Ordering::Relaxed));
        now.duration_since(self.epoch).saturating_sub(last)
    }
    /// Publishes the completion count; call with `tx` held, as the last thing before
    /// unlocking (a poller that sees the count then finds the lock free). Returns whether
    /// sleepers must be woken with [`Shared::wake_waiters`] after unlocking.
    pub fn publish_completions(&self, st: &TxState) -> bool {
        self.outstanding.store(st.outstanding(), Ordering::Relaxed);
        self.comp_ready.store(st.completions.len(), Ordering::Release);
        st.waiters > 0
    }
    /// Wakes threads sleeping in `wait_completions` (they re-check under the lock).
    pub fn wake_waiters(&self) {
        self.comp_cv.notify_all();
    }
    /// Sleeps for `d` unless shutdown starts first.
    pub fn sleep_unless_shutdown(&self, d: Duration) {
        let deadline = Instant::now() + d;
        let mut g = relock(self.idle.lock());
        while !self.is_shutdown() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            g = match self.idle_cv.wait_timeout(g, left) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }
    /// Closes the current connections in both directions (the threads redial/accept).
    fn cut_link(&self) {
        if let Some(s) = self.lock_tx_sock().as_ref() {
            let _ = s.shutdown(Shutdown::Both);
        }
        if let Some(s) = self.lock_rx_conn().as_ref() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// A bound listener for the inbound link, so callers can learn an ephemeral port before
/// starting the engine (see [`SoftEngine::bind`]).
#[derive(Debug)]
pub struct SoftListener {
    listener: TcpListener,
    addr: SocketAddr,
}

impl SoftListener {
    /// The address the listener is bound to (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

/// A handle to an engine's link for tests and operators: [`SoftLink::cut`] drops the
/// current connections; the engine reconnects by itself.
#[derive(Debug, Clone)]
pub struct SoftLink(Arc<Shared>);

impl SoftLink {
    /// Closes both directions' current connections now.
    pub fn cut(&self) {
        self.0.cut_link();
    }
}

/// The software engine. See the module docs.
#[derive(Debug)]
pub struct SoftEngine {
    sh: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    listen: SocketAddr,
}

impl SoftEngine {
    /// Binds the inbound listener (port 0 picks a free port; see
    /// [`SoftListener::local_addr`]).
    pub fn bind(listen: SocketAddr) -> Result<SoftListener, EngineError> {
        let listener = TcpListener::bind(listen).map_err(|source| EngineError::Io { op: "bind the mirror link listener", source })?;
        let addr = listener.local_addr().map_err(|source| EngineError::Io { op: "read the listener address", source })?;
        Ok(SoftListener { listener, addr })
    }

    /// Binds `config.listen` and starts the engine.
    pub fn new(config: SoftConfig) -> Result<Self, EngineError> {
        config.validate()?;
        let l = Self::bind(config.listen)?;
        Self::start(l, config)
    }

    /// Starts the engine on an already bound listener (`config.listen` is not used).
    pub fn start(listener: SoftListener, config: SoftConfig) -> Result<Self, EngineError> {
        config.validate()?;
        let timing = Timing::from_config(&config);
        let mut session = rand::random::<u64>();
        if session == 0 {
            session = 1;
        }
        let sh = Arc::new(Shared {
            host: config.host_region,
            window: config.mirror_window,
            timing,
            partner: config.partner,
            session,
            counters: Counters::default(),
            link: AtomicU8::new(LinkState::Down.code()),
            shutdown: AtomicBool::new(false),
            tx: Mutex::new(TxState::new()),
            comp_cv: Condvar::new(),
            comp_ready: AtomicUsize::new(0),
            writer: Mutex::new(Writer::default()),
            tx_sock: Mutex::new(None),
            rx: Mutex::new(RxState::default()),
            rx_conn: Mutex::new(None),
            idle: Mutex::new(()),
            idle_cv: Condvar::new(),
            epoch: Instant::now(),
            last_tx_ns: AtomicU64::new(0),
            rtt_ns: AtomicU64::new(0),
            outstanding: AtomicUsize::new(0),
        });
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .map_err(|source| EngineError::Io { op: "spawn an engine thread", source })
        };
        let engine = SoftEngine { sh: sh.clone(), threads: Mutex::new(Vec::new()), listen: listener.addr };
        let sh_rx = sh.clone();
        let l = listener.listener;
        let h = spawn("tandem-accept", Box::new(move || rx::run_acceptor(sh_rx, l)))?;
        relock(engine.threads.lock()).push(h);
        let sh_tx = sh.clone();
        let h = spawn("tandem-link", Box::new(move || tx::run_link(sh_tx)))?;
        relock(engine.threads.lock()).push(h);
        Ok(engine)
    }

    /// The address the inbound link listens on.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
    }

    /// This engine's transmit session id (random per start).
    pub fn session(&self) -> u64 {
        self.sh.session
    }

    /// A handle that can cut the link (for fault tests).
    pub fn link(&self) -> SoftLink {
        SoftLink(self.sh.clone())
    }
}

impl Engine for SoftEngine {
    fn info(&self) -> EngineInfo {
        EngineInfo {
            backend: "soft",
            hsi_version: HSI_VERSION,
            max_payload: MAX_PAYLOAD as u32,
            ring_depth: self.sh.timing.ring_depth as u32,
        }
    }

    fn host_region(&self) -> &MemRegion {
        &self.sh.host
    }

    fn mirror_window(&self) -> &MemRegion {
        &self.sh.window
    }

    fn post(&self, entries: &[SubmissionEntry]) -> Result<usize, EngineError> {
        let mut st = self.sh.lock_tx();
        // Checked under the lock: shutdown aborts the ring under it too, so no entry
        // slips in after the abort.
        if self.sh.is_shutdown() {
            return Err(EngineError::Shutdown);
        }
        let n = st.post(entries, self.sh.timing.ring_depth);
        self.sh.outstanding.store(st.outstanding(), Ordering::Relaxed);
        Ok(n)
    }

    fn ring_doorbell(&self) -> Result<(), EngineError> {
        let wake = {
            let mut st = self.sh.lock_tx();
            if self.sh.is_shutdown() {
                return Err(EngineError::Shutdown);
            }
            st.doorbell(&self.sh) > 0 && self.sh.publish_completions(&st)
        };
        if wake {
            self.sh.wake_waiters();
        }
        tx::pump(&self.sh);
        Ok(())
    }

    fn poll_completions(&self, out: &mut Vec<CompletionEntry>, max: usize) -> Result<usize, EngineError> {
        if self.sh.comp_ready.load(Ordering::Acquire) == 0 {
            return Ok(0);
        }
        let mut st = self.sh.lock_tx();
        let n = max.min(st.completions.len());
        out.extend(st.completions.drain(..n));
        self.sh.comp_ready.store(st.completions.len(), Ordering::Release);
        Ok(n)
    }

    fn wait_completions(&self, timeout: Duration) -> Result<bool, EngineError> {
        if self.sh.comp_ready.load(Ordering::Acquire) > 0 {
            return Ok(true);
        }
        let start = Instant::now();
        let deadline = start + timeout;
        let rtt = Duration::from_nanos(self.sh.rtt_ns.load(Ordering::Relaxed));
        let outstanding = self.sh.outstanding.load(Ordering::Relaxed) > 0;
        let spin = if outstanding && rtt < SPIN_MAX { SPIN_MAX } else { SPIN_MIN }.min(timeout);
        while start.elapsed() < spin {
            if self.sh.comp_ready.load(Ordering::Acquire) > 0 {
                return Ok(true);
            }
            std::hint::spin_loop();
        }
        let mut st = self.sh.lock_tx();
        loop {
            if !st.completions.is_empty() {
                return Ok(true);
            }
            if self.sh.is_shutdown() {
                return Err(EngineError::Shutdown);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            st.waiters += 1;
            st = match self.sh.comp_cv.wait_timeout(st, left) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
            st.waiters -= 1;
        }
    }

    fn link_state(&self) -> LinkState {
        LinkState::try_from(self.sh.link.load(Ordering::Acquire)).unwrap_or(LinkState::Down)
    }

    fn counters(&self) -> CounterSnapshot {
        self.sh.counters.snapshot()
    }

    fn shutdown(&self) {
        let sh = &self.sh;
        sh.shutdown.store(true, Ordering::Release);
        {
            let _g = relock(sh.idle.lock());
            sh.idle_cv.notify_all();
        }
        sh.cut_link();
        let threads: Vec<_> = relock(self.threads.lock()).drain(..).collect();
        for h in threads {
            let _ = h.join();
        }
        // The link thread has exited; close the sending socket if it left one.
        if let Some(s) = sh.lock_writer().stream.take() {
            let _ = s.shutdown(Shutdown::Both);
        }
        let mut st = sh.lock_tx();
        st.abort_all();
        sh.comp_ready.store(st.completions.len(), Ordering::Release);
        sh.comp_cv.notify_all();
        sh.set_link(LinkState::Down);
    }
}

impl Drop for SoftEngine {
    fn drop(&mut self) {
        self.shutdown();
    }
}
