//! A running node: engine, mirrored log, page pool, backing store, consistency points and
//! the control socket, started from a [`Config`].

use crate::config::Config;
use crate::control::Request;
use crate::log::{Change, LogError, MirroredLog};
use crate::mirror::Mirror;
use crate::pages::PagePool;
use crate::scan::{self, ReplayReport};
use crate::store::{BackingStore, StoreSet};
use crate::workload::{self, Event};
use anyhow::Context;
use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tandem_drivers::{Engine, MemRegion};
use tandem_hsi::LinkState;

/// What the control socket needs of an HA runtime running on the node.
pub trait HaHooks: Send + Sync {
    /// HA status as JSON.
    fn status(&self) -> serde_json::Value;
    /// Operator takeover of the partner's services.
    fn takeover(&self);
    /// Operator giveback.
    fn giveback(&self);
}

/// A running node.
pub struct Node {
    ha: std::sync::OnceLock<Arc<dyn HaHooks>>,
    cfg: Config,
    engine: Arc<dyn Engine>,
    log: Arc<MirroredLog>,
    pages: PagePool,
    store: Mutex<StoreSet>,
    stop: AtomicBool,
    started: Instant,
    recovered: Option<ReplayReport>,
    replays: Mutex<Vec<ReplayReport>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("name", &self.cfg.node.name).finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The stores of a node: without `[ha]`, its own backing image under the workload's
/// service tag; with `[ha]`, every service's image (owner fencing and the image lock keep
/// each image to the log of the node that serves it).
fn node_stores(cfg: &Config) -> anyhow::Result<StoreSet> {
    let mut set = StoreSet::new();
    if cfg.ha.is_some() {
        for s in &cfg.service {
            if let Some(dir) = s.backing.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).with_context(|| format!("{}: creating {}", cfg.file.display(), dir.display()))?;
            }
            set.insert(s.id, BackingStore::open(&s.backing, s.size.0)?);
        }
    } else {
        set.insert(workload::SERVICE_TAG, BackingStore::open(&cfg.store.backing, cfg.store.size.0)?);
    }
    Ok(set)
}

impl Node {
    /// Opens the regions and the store, starts the engine, formats or recovers the log
    /// (waiting up to `engine.startup_timeout_ms` for the partner), and starts the
    /// consistency-point and control threads.
    pub fn start(cfg: Config) -> anyhow::Result<Arc<Node>> {
        let geo = cfg.geometry()?;
        for p in [&cfg.mirror.local_region, &cfg.mirror.mirror_window, &cfg.store.backing, &cfg.node.control_socket] {
            if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).with_context(|| format!("{}: creating {}", cfg.file.display(), dir.display()))?;
            }
        }
        let host = MemRegion::file_backed(&cfg.mirror.local_region, geo.window_size, 0x1_0000_0000)
            .with_context(|| format!("{}: mirror.local_region {}", cfg.file.display(), cfg.mirror.local_region.display()))?;
        let window = MemRegion::file_backed(&cfg.mirror.mirror_window, geo.window_size, 0)
            .with_context(|| format!("{}: mirror.mirror_window {}", cfg.file.display(), cfg.mirror.mirror_window.display()))?;
        let existing = scan::geometry(&host).ok();
        if let Some(g) = existing {
            if (g.log_size, g.page_size, g.page_count) != (geo.log_size, geo.page_size, geo.page_count) {
                anyhow::bail!(
                    "{}: mirror.local_region {} holds a log formatted with log_size {}, page_size {}, page_count {}, but the config says {}, {}, {}; \
                     keep the old values, or move the file away to format a new log (its unapplied records would be lost)",
                    cfg.file.display(),
                    cfg.mirror.local_region.display(),
                    g.log_size,
                    g.page_size,
                    g.page_count,
                    geo.log_size,
                    geo.page_size,
                    geo.page_count
                );
            }
        }
        let mut store = node_stores(&cfg)?;
        let engine = crate::engines::build(&cfg, host, window)?;
        let deadline = Instant::now() + Duration::from_millis(cfg.engine.startup_timeout_ms);
        // Start-up waits for the partner in short rounds; appends use the configured timeout.
        let mirror = Arc::new(Mirror::new(engine.clone(), cfg.ack_timeout().min(Duration::from_secs(2))));
        let (log, recovered) = loop {
            let mirror = mirror.clone();
            let attempt = match existing {
                Some(_) => MirroredLog::recover(mirror, &mut store).map(|(l, r)| (l, Some(r))),
                None => MirroredLog::format(mirror, geo.log_size, geo.page_size, geo.page_count).map(|l| (l, None)),
            };
            match attempt {
                Ok(x) => break x,
                Err(LogError::Mirror(e)) if Instant::now() < deadline => {
                    tracing::info!(node = %cfg.node.name, "waiting for the partner at {}: {e}", cfg.engine.partner);
                }
                Err(e) => return Err(e).with_context(|| format!("{}: starting the log (partner {})", cfg.node.name, cfg.engine.partner)),
            }
        };
        mirror.set_ack_timeout(cfg.ack_timeout());
        let log = Arc::new(log);
        let pages = PagePool::open(log.mirror().clone(), *log.geometry());
        let node = Arc::new(Node {
            ha: std::sync::OnceLock::new(),
            cfg,
            engine,
            log,
            pages,
            store: Mutex::new(store),
            stop: AtomicBool::new(false),
            started: Instant::now(),
            recovered,
            replays: Mutex::new(Vec::new()),
            threads: Mutex::new(Vec::new()),
        });
        let cp = {
            let n = node.clone();
            std::thread::Builder::new().name("checkpoint".into()).spawn(move || n.checkpoint_loop())?
        };
        let ctl = node.clone().start_control()?;
        lock(&node.threads).extend([cp, ctl]);
        tracing::info!(node = %node.cfg.node.name, "started; log id {:#010x}", node.log.geometry().log_id);
        Ok(node)
    }

    /// The mirrored log.
    pub fn log(&self) -> &Arc<MirroredLog> {
        &self.log
    }

    /// The tagged page pool.
    pub fn pages(&self) -> &PagePool {
        &self.pages
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<dyn Engine> {
        &self.engine
    }

    /// True once a shutdown was requested.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn checkpoint_loop(&self) {
        let interval = Duration::from_millis(self.cfg.store.checkpoint_interval_ms);
        let mut last = Instant::now();
        while !self.stopping() {
            std::thread::sleep(Duration::from_millis(10));
            let st = self.log.stats();
            let full = st.used * 100 >= st.size * self.cfg.store.checkpoint_log_percent as u64;
            if st.pending > 0 && (full || last.elapsed() >= interval) {
                if let Err(e) = self.checkpoint() {
                    tracing::warn!(node = %self.cfg.node.name, "consistency point failed: {e}");
                }
                last = Instant::now();
            }
        }
    }

    /// Runs a consistency point now.
    pub fn checkpoint(&self) -> Result<crate::log::CheckpointReport, LogError> {
        let mut store = lock(&self.store);
        self.log.checkpoint(&mut *store)
    }

    /// Attaches the HA runtime (once).
    pub fn set_ha(&self, hooks: Arc<dyn HaHooks>) {
        let _ = self.ha.set(hooks);
    }

    /// The stores consistency points apply to (every service's image in an HA pair).
    pub fn stores(&self) -> &Mutex<StoreSet> {
        &self.store
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Replays the partner's log from this node's mirror window onto the partner's image.
    pub fn replay_partner(&self, force: bool) -> anyhow::Result<ReplayReport> {
        if self.engine.link_state() == LinkState::Up && !force {
            anyhow::bail!("the mirror link to the partner is up: it looks alive; refusing to replay its log (use force to override)");
        }
        let mut store = StoreSet::new();
        store.insert(workload::SERVICE_TAG, BackingStore::open(&self.cfg.store.partner_backing, self.cfg.store.size.0)?);
        let report = scan::replay(self.engine.mirror_window(), &mut store)?;
        lock(&self.replays).push(report.clone());
        Ok(report)
    }

    /// Status as JSON.
    pub fn status(&self) -> serde_json::Value {
        let stats = self.log.stats();
        let info = self.engine.info();
        json!({
            "ok": true,
            "name": self.cfg.node.name,
            "uptime_ms": self.started.elapsed().as_millis() as u64,
            "engine": info.backend,
            "link": self.engine.link_state().name(),
            "counters": self.engine.counters().to_string(),
            "log": stats,
            "last_consistency_point_lsn": stats.cp_lsn,
            "mirror": { "mode": self.log.mirror().mode(), "lag_entries": self.log.mirror().lag() },
            "log_id": format!("{:#010x}", self.log.geometry().log_id),
            "pages_free": self.pages.free_count(),
            "recovered_at_start": self.recovered,
            "partner_replays": *lock(&self.replays),
            "ha": self.ha.get().map(|h| h.status()),
        })
    }

    fn handle(&self, req: Request) -> serde_json::Value {
        let res: anyhow::Result<serde_json::Value> = match req.clone() {
            Request::Status => Ok(self.status()),
            Request::Checkpoint => self.checkpoint().map(|r| json!({"ok": true, "checkpoint": r})).map_err(Into::into),
            Request::ReplayPartner { force } => self.replay_partner(force).map(|r| json!({"ok": true, "replay": r})),
            Request::Takeover | Request::Giveback => match self.ha.get() {
                Some(h) => {
                    if req == Request::Takeover {
                        h.takeover()
                    } else {
                        h.giveback()
                    }
                    Ok(json!({"ok": true, "requested": format!("{req:?}").to_lowercase()}))
                }
                None => Err(anyhow::anyhow!("this node runs without [ha]: no takeover or giveback")),
            },
            Request::Shutdown => {
                self.stop.store(true, Ordering::Relaxed);
                Ok(json!({"ok": true}))
            }
        };
        res.unwrap_or_else(|e| json!({"ok": false, "error": format!("{e:#}")}))
    }

    fn start_control(self: Arc<Self>) -> anyhow::Result<JoinHandle<()>> {
        let path = self.cfg.node.control_socket.clone();
        if path.exists() {
            // A socket left by a previous run: only remove it if nobody answers on it.
            if UnixStream::connect(&path).is_ok() {
                anyhow::bail!("{}: node.control_socket {} is in use by a running node", self.cfg.file.display(), path.display());
            }
            std::fs::remove_file(&path).with_context(|| format!("removing stale control socket {}", path.display()))?;
        }
        let listener =
            UnixListener::bind(&path).with_context(|| format!("{}: node.control_socket {}", self.cfg.file.display(), path.display()))?;
        listener.set_nonblocking(true)?;
        Ok(std::thread::Builder::new().name("control".into()).spawn(move || {
            while !self.stopping() {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let n = self.clone();
                        let _ = std::thread::Builder::new().name("control-conn".into()).spawn(move || n.serve(conn));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(10)),
                    Err(e) => {
                        tracing::warn!("control socket: {e}");
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
            let _ = std::fs::remove_file(&path);
        })?)
    }

    fn serve(&self, conn: UnixStream) {
        let _ = conn.set_nonblocking(false);
        let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
        let mut w = match conn.try_clone() {
            Ok(w) => w,
            Err(_) => return,
        };
        for line in BufReader::new(conn).lines().take(1000) {
            let Ok(line) = line else { break };
            let resp = match serde_json::from_str::<Request>(&line) {
                Ok(req) => self.handle(req),
                Err(e) => json!({"ok": false, "error": format!("bad request: {e}")}),
            };
            if writeln!(w, "{resp}").is_err() {
                break;
            }
        }
    }

    /// Waits until a shutdown is requested, then stops the threads and the engine.
    pub fn run_until_stopped(&self) {
        while !self.stopping() {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.shutdown();
    }

    /// Stops the node: threads, then the engine.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in lock(&self.threads).drain(..) {
            let _ = t.join();
        }
        self.engine.shutdown();
    }

    /// Runs the verification workload: `writes` block writes from `threads` threads over
    /// `blocks` blocks, printing [`Event`]s as JSON lines to `out`.
    pub fn run_workload(&self, writes: u64, threads: u64, blocks: u64, out: &Mutex<Box<dyn Write + Send>>) -> anyhow::Result<u64> {
        let threads = threads.clamp(1, 64);
        let per = writes.div_ceil(threads);
        let emit = |e: Event| -> std::io::Result<()> {
            let mut o = lock(out);
            writeln!(o, "{}", serde_json::to_string(&e).expect("events serialize"))?;
            o.flush()
        };
        let failures = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|s| {
            for t in 0..threads {
                let emit = &emit;
                let failures = &failures;
                s.spawn(move || {
                    let mine: Vec<u64> = (0..blocks).filter(|b| b % threads == t).collect();
                    if mine.is_empty() {
                        return;
                    }
                    let mut versions = vec![0u64; mine.len()];
                    let mut rng = t.wrapping_mul(0x9E37_79B9) | 1;
                    for _ in 0..per {
                        if self.stopping() {
                            break;
                        }
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        let i = (rng % mine.len() as u64) as usize;
                        let block = mine[i];
                        versions[i] += 1;
                        let version = versions[i];
                        if emit(Event::Issued { block, version }).is_err() {
                            break;
                        }
                        let t0 = Instant::now();
                        let data = workload::block_contents(block, version);
                        match self.log.append(workload::SERVICE_TAG, Change::Write { offset: block * workload::BLOCK_SIZE as u64 }, &data) {
                            Ok(lsn) => {
                                let ns = t0.elapsed().as_nanos() as u64;
                                if emit(Event::Acked { block, version, lsn, ns }).is_err() {
                                    break;
                                }
                            }
                            Err(e) => {
                                tracing::warn!("workload write failed (not acknowledged): {e}");
                                failures.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                });
            }
        });
        Ok(failures.into_inner())
    }
}
