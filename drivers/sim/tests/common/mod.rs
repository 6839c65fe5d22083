//! Pair factories for the sim backend's tests.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tandem_drivers::conformance::{Pair, MIN_HOST_REGION, MIN_WINDOW};
use tandem_drivers::soft::{SoftConfig, SoftEngine, SoftListener};
use tandem_drivers::{Engine, EngineError, MemRegion};
use tandem_hsi::LinkState;
use tandem_sim_engine::{SimConfig, SimEngine, SimLink, SimWire};

/// DMA base of host regions in the tests (windows sit at 0).
pub const HOST_DMA: u64 = 0x4000_0000;
/// Ring depth of the test engines.
pub const RING_DEPTH: u32 = 256;

/// Where the windows live.
pub struct Dirs {
    pub dir: tempfile::TempDir,
}

impl Dirs {
    pub fn new() -> Self {
        Dirs { dir: tempfile::tempdir().expect("tempdir") }
    }
    pub fn window(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.nvram"))
    }
}

/// A sim engine with the suite's region sizes, its window in the file `window`.
pub fn sim(link: SimLink, window: &Path, name: &str) -> Result<SimEngine, EngineError> {
    let host = MemRegion::anonymous(MIN_HOST_REGION, HOST_DMA).expect("host region");
    let window = MemRegion::file_backed(window, MIN_WINDOW, 0).expect("window");
    let mut c = SimConfig::new(host, window, link);
    c.ring_depth = RING_DEPTH;
    c.name = name.into();
    SimEngine::start(c)
}

/// A cut the engine must notice: loss of signal until `a` reports its link Down
/// (bounded), then frames flow again, so that `a` counts a link reset when it is back Up.
pub fn cut_until_down(a: &dyn Engine, set_down: impl Fn(bool)) {
    set_down(true);
    let deadline = Instant::now() + Duration::from_secs(30);
    while a.link_state() == LinkState::Up && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    set_down(false);
}

/// Two sim engines on an in-process wire; B restarts over its window file on the same
/// side of the wire; the link control drops every frame until A sees the link down.
pub fn sim_pair(_seed: u64) -> Pair {
    let dirs = Dirs::new();
    let wire = SimWire::new();
    let a = Arc::new(sim(wire.end(0).into(), &dirs.window("a"), "a").expect("start A"));
    let b = sim(wire.end(1).into(), &dirs.window("b"), "b").expect("start B");
    let (w2, wb) = (wire.clone(), dirs.window("b"));
    let restart = move || -> Result<Box<dyn Engine>, EngineError> { Ok(Box::new(sim(w2.end(1).into(), &wb, "b2")?)) };
    let a_link = a.clone();
    Pair {
        a: Box::new(a),
        b: Box::new(b),
        link: Some(Box::new(move || cut_until_down(&*a_link, |down| wire.set_down(down)))),
        restart_b: Some(Box::new(restart)),
        keep: vec![Box::new(dirs)],
    }
}

pub fn tcp_listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").expect("bind")
}

pub fn soft_listener() -> SoftListener {
    SoftEngine::bind("127.0.0.1:0".parse().unwrap()).expect("bind")
}

/// A soft engine with the soft tests' tuning.
pub fn soft(l: SoftListener, partner: SocketAddr, window: &Path) -> SoftEngine {
    let listen = l.local_addr();
    let host = MemRegion::anonymous(MIN_HOST_REGION, HOST_DMA).expect("host region");
    let window = MemRegion::file_backed(window, MIN_WINDOW, 0).expect("window");
    let mut c = SoftConfig::new(listen, partner, host, window);
    c.ring_depth = RING_DEPTH;
    c.retransmit_timeout = Duration::from_millis(30);
    c.heartbeat_interval = Duration::from_millis(50);
    c.reconnect_backoff_min = Duration::from_millis(2);
    c.reconnect_backoff_max = Duration::from_millis(50);
    c.io_timeout = Duration::from_secs(1);
    SoftEngine::start(l, c).expect("start soft engine")
}

/// A sim engine (A) bridged over TCP to a soft engine (B); B restarts as a soft engine.
pub fn mixed_pair(_seed: u64) -> Pair {
    let dirs = Dirs::new();
    let la = tcp_listener();
    let lb = soft_listener();
    let (addr_a, addr_b) = (la.local_addr().expect("addr"), lb.local_addr());
    let a = Arc::new(sim(SimLink::Tcp { listener: la, partner: addr_b }, &dirs.window("a"), "mixed_a").expect("start A"));
    let b = soft(lb, addr_a, &dirs.window("b"));
    let (cut_a, cut_b) = (a.bridge_cut().expect("a TCP engine has a bridge"), b.link());
    let wb = dirs.window("b");
    let restart = move || -> Result<Box<dyn Engine>, EngineError> {
        let l = SoftEngine::bind(addr_b)?;
        Ok(Box::new(soft(l, addr_a, &wb)))
    };
    let a_link = a.clone();
    Pair {
        a: Box::new(a),
        b: Box::new(b),
        link: Some(Box::new(move || {
            cut_until_down(&*a_link, |down| cut_a.set_down(down));
            cut_a.cut();
            cut_b.cut();
        })),
        restart_b: Some(Box::new(restart)),
        keep: vec![Box::new(dirs)],
    }
}
