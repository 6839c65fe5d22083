//! Pair factories for the soft engine, shared by the integration tests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tandem_drivers::conformance::{Pair, MIN_HOST_REGION, MIN_WINDOW};
use tandem_drivers::soft::{SoftConfig, SoftEngine, SoftListener};
use tandem_drivers::{Engine, MemRegion};

/// DMA base of host regions in the tests.
pub const HOST_DMA: u64 = 0x4000_0000;
/// Ring depth used by the test pairs (small enough that back-pressure is exercised).
pub const RING_DEPTH: u32 = 256;

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).with_test_writer().try_init();
}

pub fn listener() -> SoftListener {
    SoftEngine::bind("127.0.0.1:0".parse().unwrap()).expect("bind")
}

/// A config with test tuning: a short retransmit timeout keeps fault tests quick.
pub fn config(listen: SocketAddr, partner: SocketAddr, window: &Path) -> SoftConfig {
    let host = MemRegion::anonymous(MIN_HOST_REGION, HOST_DMA).expect("host region");
    let window = MemRegion::file_backed(window, MIN_WINDOW, 0).expect("window");
    let mut c = SoftConfig::new(listen, partner, host, window);
    c.ring_depth = RING_DEPTH;
    c.retransmit_timeout = Duration::from_millis(30);
    c.heartbeat_interval = Duration::from_millis(50);
    c.reconnect_backoff_min = Duration::from_millis(2);
    c.reconnect_backoff_max = Duration::from_millis(50);
    c.io_timeout = Duration::from_secs(1);
    c
}

/// Where the two windows live.
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

/// Starts an engine on `l` that dials `partner`, mirroring into the file `window`.
pub fn start(l: SoftListener, partner: SocketAddr, window: &Path) -> SoftEngine {
    let listen = l.local_addr();
    SoftEngine::start(l, config(listen, partner, window)).expect("start engine")
}

/// A pair on plain loopback; the link control cuts both engines' connections.
pub fn loopback_pair(_seed: u64) -> Pair {
    init_tracing();
    let dirs = Dirs::new();
    let (la, lb) = (listener(), listener());
    let (addr_a, addr_b) = (la.local_addr(), lb.local_addr());
    let a = start(la, addr_b, &dirs.window("a"));
    let b = start(lb, addr_a, &dirs.window("b"));
    let (link_a, link_b) = (a.link(), b.link());
    let wb = dirs.window("b");
    let restart = move || -> Result<Box<dyn Engine>, tandem_drivers::EngineError> {
        let l = SoftEngine::bind(addr_b)?;
        Ok(Box::new(start(l, addr_a, &wb)))
    };
    Pair {
        a: Box::new(a),
        b: Box::new(b),
        link: Some(Box::new(move || {
            link_a.cut();
            link_b.cut();
        })),
        restart_b: Some(Box::new(restart)),
        keep: vec![Box::new(dirs)],
    }
}
