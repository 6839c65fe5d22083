//! The HA runtime: drives the pure [`HaEngine`] with real time, heartbeats, the witness,
//! the mirror engine and the NBD exports, and executes its commands.
//!
//! Threads:
//! - the event loop owns the engine: it ticks it, feeds it events from the channel, and
//!   executes quick commands inline (heartbeats, mirror mode, fencing a device);
//! - a witness worker runs `Acquire` and `MarkCopy` (each at most the witness timeout);
//! - an I/O worker runs, in order, `Replay`, `StartServing`, `Flush`, `StopServing`,
//!   `Release` and `StartResync` (order matters: a service is stopped before its lease is
//!   released, so the partner can never serve it while this node still does);
//! - a UDP receiver turns management-network heartbeats into events;
//! - heartbeats over the mirror link travel in the window's status block: the event loop
//!   writes this node's block and reads the partner's from the mirror window.

use crate::config::{Config, ServiceSection, WitnessSpec};
use crate::device::MirroredDevice;
use crate::dirty::DirtyMap;
use crate::ha::witness::UdpWitness;
use crate::ha::{Command, Event, HaConfig, HaEngine, NodeId, Path, PeerInfo, ServiceHome, ServiceId, WitnessClient};
use crate::mirror::Span;
use crate::node::Node;
use crate::store::{locked, BackingStore};
use anyhow::Context;
use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tandem_hsi::window::{decode_status, encode_status, STATUS_OFFSET, STATUS_SIZE};
use tandem_hsi::{LinkState, Opcode};

struct Served {
    device: Arc<MirroredDevice>,
    nbd: tandem_nbd::NbdHandle,
}

/// Shared between the threads of the runtime.
struct Shared {
    node: Arc<Node>,
    me: NodeId,
    start: Instant,
    events: Sender<Event>,
    served: Mutex<BTreeMap<ServiceId, Served>>,
    /// Ranges changed while local-only, owed to the partner.
    owed: Mutex<Option<DirtyMap>>,
    /// This incarnation has not yet copied its whole region to the partner.
    full_resync_owed: AtomicBool,
    status: Mutex<serde_json::Value>,
    stop: AtomicBool,
    /// Addresses, MACs and FC ports that move with the services.
    identities: Option<crate::identity::Identities>,
    /// Lease epoch of each service, from the latest grant.
    epochs: Mutex<BTreeMap<ServiceId, u64>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn service(&self, id: ServiceId) -> Option<&ServiceSection> {
        self.node.config().service.iter().find(|s| s.id == id.0)
    }

    fn send(&self, ev: Event) {
        let _ = self.events.send(ev);
    }
}

impl crate::node::HaHooks for Shared {
    fn status(&self) -> serde_json::Value {
        lock(&self.status).clone()
    }
    fn takeover(&self) {
        self.send(Event::OperatorTakeover);
    }
    fn giveback(&self) {
        self.send(Event::OperatorGiveback);
    }
}

/// A running HA node. Dropping it does not stop it; call [`HaNode::shutdown`].
pub struct HaNode {
    shared: Arc<Shared>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for HaNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HaNode").field("node", &self.shared.me).finish()
    }
}

/// The engine configuration a node configuration describes.
pub fn ha_config(cfg: &Config) -> anyhow::Result<HaConfig> {
    let ha = cfg.ha.as_ref().context("the configuration has no [ha] section")?;
    Ok(HaConfig {
        heartbeat_interval_ms: ha.heartbeat_ms,
        misses: ha.misses,
        lease_ms: ha.lease_ms,
        boot_wait_ms: ha.boot_wait_ms,
        auto_giveback_ms: ha.auto_giveback_ms,
        services: cfg.service.iter().map(|s| ServiceHome { service: ServiceId(s.id), home: NodeId(s.home) }).collect(),
    })
}

enum Work {
    Witness(Command),
    Io(Command),
}

impl HaNode {
    /// Starts the HA runtime over a started node (whose config has `[ha]`).
    pub fn start(node: Arc<Node>) -> anyhow::Result<HaNode> {
        let cfg = node.config().clone();
        let ha = cfg.ha.clone().context("the configuration has no [ha] section")?;
        let me = NodeId(ha.node_id);
        let incarnation = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(1);
        let engine = HaEngine::new(ha_config(&cfg)?, me, incarnation).map_err(|e| anyhow::anyhow!("{}: [ha]: {e}", cfg.file.display()))?;
        let udp = UdpSocket::bind(ha.mgmt_listen).with_context(|| format!("{}: ha.mgmt_listen {}", cfg.file.display(), ha.mgmt_listen))?;
        udp.set_read_timeout(Some(Duration::from_millis(50)))?;
        let witness = make_witness(&cfg)?;
        let idents = cfg.service_identities()?;
        let identities = if idents.is_empty() {
            None
        } else {
            let ids = crate::identity::Identities::new(me, idents).map_err(|e| anyhow::anyhow!("{}: {e}", cfg.file.display()))?;
            // Nothing is served yet: whatever a previous run of this node left up goes.
            for (svc, e) in ids.release_all() {
                tracing::warn!(service = svc.0, "releasing identities left by a previous run: {e}");
            }
            Some(ids)
        };
        let (tx, rx) = channel();
        let shared = Arc::new(Shared {
            node,
            me,
            start: Instant::now(),
            events: tx,
            served: Mutex::new(BTreeMap::new()),
            owed: Mutex::new(None),
            full_resync_owed: AtomicBool::new(true),
            status: Mutex::new(serde_json::Value::Null),
            stop: AtomicBool::new(false),
            identities,
            epochs: Mutex::new(BTreeMap::new()),
        });
        let (wtx, wrx) = channel::<Command>();
        let (iotx, iorx) = channel::<Command>();
        let mut threads = Vec::new();
        {
            let sh = shared.clone();
            let rx_udp = udp.try_clone()?;
            threads.push(std::thread::Builder::new().name("ha-mgmt-rx".into()).spawn(move || mgmt_receiver(&sh, rx_udp))?);
        }
        {
            let sh = shared.clone();
            threads.push(std::thread::Builder::new().name("ha-witness".into()).spawn(move || witness_worker(&sh, witness, wrx))?);
        }
        {
            let sh = shared.clone();
            threads.push(std::thread::Builder::new().name("ha-io".into()).spawn(move || io_worker(&sh, iorx))?);
        }
        {
            let sh = shared.clone();
            let partner = ha.partner_mgmt;
            threads.push(std::thread::Builder::new().name("ha-loop".into()).spawn(move || {
                event_loop(&sh, engine, rx, udp, partner, |w| match w {
                    Work::Witness(c) => {
                        let _ = wtx.send(c);
                    }
                    Work::Io(c) => {
                        let _ = iotx.send(c);
                    }
                })
            })?);
        }
        shared.node.set_ha(shared.clone());
        Ok(HaNode { shared, threads })
    }

    /// Operator takeover of the partner's services.
    pub fn takeover(&self) {
        self.shared.send(Event::OperatorTakeover);
    }

    /// Operator giveback.
    pub fn giveback(&self) {
        self.shared.send(Event::OperatorGiveback);
    }

    /// The latest status (engine view, services served, resync progress).
    pub fn status(&self) -> serde_json::Value {
        lock(&self.shared.status).clone()
    }

    /// Stops serving and the threads (not the node itself).
    pub fn shutdown(mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let served: Vec<_> = std::mem::take(&mut *lock(&self.shared.served)).into_values().collect();
        for s in served {
            s.device.fence();
            s.nbd.shutdown();
        }
        if let Some(ids) = &self.shared.identities {
            for (svc, e) in ids.release_all() {
                tracing::error!(service = svc.0, "releasing identities at shutdown: {e}");
            }
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn mgmt_receiver(sh: &Shared, sock: UdpSocket) {
    let mut buf = vec![0u8; 65536];
    while !sh.stop.load(Ordering::Relaxed) {
        let Ok((n, _)) = sock.recv_from(&mut buf) else { continue };
        match serde_json::from_slice::<PeerInfo>(&buf[..n]) {
            Ok(info) if info.node != sh.me => sh.send(Event::Heartbeat { path: Path::Mgmt, info }),
            Ok(_) => tracing::warn!("management heartbeat claiming to come from this node; ignored"),
            Err(e) => tracing::warn!("malformed management heartbeat ({n} bytes): {e}"),
        }
    }
}

/// The witness client the configuration names.
pub fn make_witness(cfg: &Config) -> anyhow::Result<Box<dyn WitnessClient + Send>> {
    let ha = cfg.ha.as_ref().context("the configuration has no [ha] section")?;
    let timeout = Duration::from_millis(ha.witness_timeout_ms);
    Ok(match cfg.witness()? {
        WitnessSpec::Mediator(addr) => Box::new(UdpWitness::new(addr, timeout)?),
        WitnessSpec::Etcd(eps) => {
            let refs: Vec<&str> = eps.iter().map(String::as_str).collect();
            Box::new(crate::ha::etcd::EtcdWitness::new(&refs, &ha.cluster, timeout).map_err(|e| anyhow::anyhow!("{e}"))?)
        }
    })
}

fn witness_worker(sh: &Shared, mut w: Box<dyn WitnessClient + Send>, rx: Receiver<Command>) {
    while let Ok(cmd) = rx.recv() {
        if sh.stop.load(Ordering::Relaxed) {
            return;
        }
        match cmd {
            Command::Acquire { service, lease_ms } => {
                let grant = w.acquire(service, sh.me, lease_ms, sh.now());
                sh.send(Event::Acquired { service, grant });
            }
            Command::MarkCopy { service, current } => {
                let ok = w.mark_copy(service, sh.me, current).is_ok();
                sh.send(Event::CopyMarked { service, current, ok });
            }
            Command::Release { service } => {
                let ok = w.release(service, sh.me).is_ok();
                sh.send(Event::Released { service, ok });
            }
            other => tracing::error!("witness worker got {other:?}"),
        }
    }
}

/// Service tag of the tagged page that holds the virtual port database (mirrored to the
/// partner like any page, so the partner knows who holds which identity).
pub const VPORT_DB_TAG: u32 = u32::MAX;

/// Writes this node's virtual port database into its tagged page (mirrored).
fn save_vport_db(sh: &Shared) -> anyhow::Result<()> {
    let Some(ids) = &sh.identities else { return Ok(()) };
    let pages = sh.node.pages();
    let page = match pages.pages_of(VPORT_DB_TAG).first() {
        Some((id, _)) => *id,
        None => pages.alloc(VPORT_DB_TAG, 0)?,
    };
    let mut bytes = ids.db().encode().map_err(|e| anyhow::anyhow!("virtual port database: {e}"))?;
    bytes.resize(pages.page_size() as usize, 0);
    pages.write(page, 0, &bytes)?;
    Ok(())
}

/// Merges the partner's virtual port database, read from this node's mirror window.
fn merge_partner_vport_db(sh: &Shared) {
    let Some(ids) = &sh.identities else { return };
    let window = sh.node.engine().mirror_window();
    let Ok(geo) = crate::scan::geometry(window) else { return };
    let Some((slot, _)) = crate::pages::pages_in_region(window, &geo, VPORT_DB_TAG).into_iter().next() else { return };
    let Ok(bytes) = window.read_vec(geo.page_data_offset(slot.0), geo.page_size as usize) else { return };
    match crate::identity::vportdb::VportDb::decode(&bytes) {
        Ok(db) => {
            let changed = ids.merge_db(&db);
            tracing::debug!(changed, "merged the partner's virtual port database");
        }
        Err(e) => tracing::warn!("the partner's virtual port database is unreadable: {e}"),
    }
}

/// Opens one service's image for replay or ownership changes.
fn open_image(svc: &ServiceSection) -> anyhow::Result<BackingStore> {
    BackingStore::open(&svc.backing, svc.size.0).with_context(|| format!("service {}: backing image {}", svc.id, svc.backing.display()))
}

fn io_worker(sh: &Shared, rx: Receiver<Command>) {
    // Release goes through the witness, but here, after the StopServing before it.
    let mut releaser = make_witness(sh.node.config()).map_err(|e| tracing::error!("witness for releases: {e:#}")).ok();
    while let Ok(cmd) = rx.recv() {
        if sh.stop.load(Ordering::Relaxed) {
            return;
        }
        match cmd {
            Command::Replay { service } => {
                let ok = replay(sh, service).map_err(|e| tracing::error!("replay of service {}: {e:#}", service.0)).is_ok();
                sh.send(Event::Replayed { service, ok });
            }
            Command::StartServing { service } => {
                if let Err(e) = start_serving(sh, service) {
                    tracing::error!("starting service {}: {e:#}", service.0);
                }
            }
            Command::Flush { service } => {
                let ok = flush(sh).map_err(|e| tracing::error!("flush for service {}: {e:#}", service.0)).is_ok();
                sh.send(Event::Flushed { service, ok });
            }
            Command::StopServing { service } => stop_serving(sh, service),
            Command::Release { service } => {
                let ok = releaser.as_mut().is_some_and(|w| w.release(service, sh.me).is_ok());
                sh.send(Event::Released { service, ok });
            }
            Command::StartResync => {
                let ok = resync(sh).map_err(|e| tracing::warn!("resync: {e:#}")).is_ok();
                sh.send(Event::ResyncDone { ok });
            }
            other => tracing::error!("I/O worker got {other:?}"),
        }
    }
}

/// Applies the records of `service` found in this node's mirror window (the partner's
/// log) to the service's image, then makes this node's log the image's owner. Records of
/// the partner's log are not applied after that (fencing), so the partner cannot change
/// the image once this node serves it.
fn replay(sh: &Shared, service: ServiceId) -> anyhow::Result<()> {
    let svc = sh.service(service).context("unknown service")?;
    let mut image = open_image(svc)?;
    let window = sh.node.engine().mirror_window();
    match crate::scan::replay_where(window, &mut image, |t| t == service.0) {
        Ok(r) => tracing::info!(
            service = service.0,
            "replayed the partner's log: {} applied (LSN {}..{}), stop {:?}",
            r.applied,
            r.first_applied,
            r.last_applied,
            r.stop
        ),
        // A partner that never formatted its log has nothing to replay.
        Err(crate::scan::ReplayError::NoLog(e)) => tracing::info!(service = service.0, "no partner log to replay: {e}"),
        Err(e) => return Err(e.into()),
    }
    let own = sh.node.log().geometry().log_id;
    locked(&mut image, |i| i.set_owner(own))?;
    Ok(())
}

fn flush(sh: &Shared) -> anyhow::Result<u64> {
    let cp = sh.node.checkpoint()?;
    for s in lock(&sh.served).values() {
        s.device.evict(cp.cp_lsn);
    }
    Ok(cp.cp_lsn)
}

fn start_serving(sh: &Shared, service: ServiceId) -> anyhow::Result<()> {
    let svc = sh.service(service).context("unknown service")?;
    if lock(&sh.served).contains_key(&service) {
        return Ok(());
    }
    let reader = {
        let stores = lock(sh.node.stores());
        stores.get(service.0).context("no image for the service")?.reader()?
    };
    // The service's addresses (and FC ports) come here before its export listens on them.
    if let Some(ids) = sh.identities.as_ref().filter(|i| i.service(service).is_some()) {
        merge_partner_vport_db(sh);
        let epoch = lock(&sh.epochs).get(&service).copied().unwrap_or(0);
        let r = ids.claim(service, epoch).with_context(|| format!("service {}: claiming its identities", service.0))?;
        tracing::info!(service = service.0, "identities claimed: {r:?}");
        if let Err(e) = save_vport_db(sh) {
            tracing::warn!("saving the virtual port database: {e:#}");
        }
    }
    let device = Arc::new(MirroredDevice::new(sh.node.log().clone(), service.0, reader));
    // The port may still be closing on this host (a planned move): retry briefly.
    let deadline = Instant::now() + Duration::from_secs(2);
    let server = loop {
        match tandem_nbd::NbdServer::bind(svc.nbd_listen, &svc.export, device.clone()) {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                tracing::debug!("binding {}: {e}; retrying", svc.nbd_listen);
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e).with_context(|| format!("service {}: nbd_listen {}", svc.id, svc.nbd_listen)),
        }
    };
    let nbd = server.spawn()?;
    tracing::info!(service = service.0, "serving export {:?} on {}", svc.export, svc.nbd_listen);
    lock(&sh.served).insert(service, Served { device, nbd });
    Ok(())
}

fn stop_serving(sh: &Shared, service: ServiceId) {
    let Some(s) = lock(&sh.served).remove(&service) else { return };
    s.device.fence();
    s.nbd.shutdown();
    if let Some(ids) = sh.identities.as_ref().filter(|i| i.service(service).is_some()) {
        match ids.release(service) {
            Ok(r) => tracing::info!(service = service.0, "identities released: {r:?}"),
            Err(e) => tracing::error!(service = service.0, "releasing identities: {e}"),
        }
        if let Err(e) = save_vport_db(sh) {
            tracing::warn!("saving the virtual port database: {e:#}");
        }
    }
    // Write back what the clients wrote until the fence, so the image is current.
    if let Err(e) = flush(sh) {
        tracing::warn!("write-back after stopping service {}: {e:#}", service.0);
    }
    tracing::info!(service = service.0, "stopped serving");
}

fn resync(sh: &Shared) -> anyhow::Result<()> {
    let mirror = sh.node.log().mirror();
    let region_len = sh.node.engine().host_region().len();
    let dirty = if sh.full_resync_owed.load(Ordering::SeqCst) {
        DirtyMap::all(region_len)
    } else {
        lock(&sh.owed).take().unwrap_or_else(|| DirtyMap::new(region_len))
    };
    mirror.resync(&dirty, |done, total| sh.send(Event::ResyncProgress { done, total }))?;
    sh.full_resync_owed.store(false, Ordering::SeqCst);
    Ok(())
}

fn write_status_block(sh: &Shared, seq: u64, info: &PeerInfo) {
    let Ok(body) = serde_json::to_vec(info) else { return };
    let Some(block) = encode_status(seq, &body) else {
        tracing::warn!("heartbeat too large for the status block");
        return;
    };
    let node = &sh.node;
    if node.engine().link_state() != LinkState::Up {
        return;
    }
    if node.engine().host_region().write(STATUS_OFFSET, &block).is_err() {
        return;
    }
    let span = Span { opcode: Opcode::Page, service_tag: 0, offset: STATUS_OFFSET, len: block.len() as u64 };
    if let Err(e) = node.log().mirror().submit_always(&[span]) {
        tracing::debug!("status block not sent: {e}");
    }
}

fn read_partner_status(sh: &Shared, last_seq: &mut u64) -> Option<PeerInfo> {
    let b = sh.node.engine().mirror_window().read_vec(STATUS_OFFSET, STATUS_SIZE as usize).ok()?;
    let (seq, body) = decode_status(&b)?;
    if seq == *last_seq {
        return None;
    }
    *last_seq = seq;
    serde_json::from_slice::<PeerInfo>(body).ok().filter(|i| i.node != sh.me)
}

fn event_loop(
    sh: &Shared,
    mut engine: HaEngine,
    rx: Receiver<Event>,
    udp: UdpSocket,
    partner: std::net::SocketAddr,
    dispatch: impl Fn(Work),
) {
    let tick_every = Duration::from_millis((engine.config().heartbeat_interval_ms / 4).max(1));
    let mut link_up = None;
    // Sequences of status blocks: this incarnation's start from the clock, so a restarted
    // node never repeats the sequence its previous incarnation left in the partner's window.
    let mut status_seq = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_micros() as u64);
    // A block left by the partner before this process started is not a heartbeat.
    let mut partner_seq = 0u64;
    let _stale = read_partner_status(sh, &mut partner_seq);
    let mut pending = vec![Event::Tick];
    while !sh.stop.load(Ordering::Relaxed) {
        let up = sh.node.engine().link_state() == LinkState::Up;
        if link_up != Some(up) {
            link_up = Some(up);
            pending.push(Event::MirrorLink { up });
        }
        if let Some(info) = read_partner_status(sh, &mut partner_seq) {
            pending.push(Event::Heartbeat { path: Path::Mirror, info });
        }
        for ev in pending.drain(..) {
            if let Event::Acquired { service, grant: crate::ha::Grant::Granted { epoch, .. } } = &ev {
                lock(&sh.epochs).insert(*service, *epoch);
            }
            let now = sh.now();
            for cmd in engine.step(now, ev) {
                match cmd {
                    Command::SendHeartbeat { path: Path::Mgmt, info } => {
                        if let Ok(b) = serde_json::to_vec(&info) {
                            let _ = udp.send_to(&b, partner);
                        }
                    }
                    Command::SendHeartbeat { path: Path::Mirror, info } => {
                        status_seq += 1;
                        write_status_block(sh, status_seq, &info);
                    }
                    Command::SetMirrorMode { mirrored } => {
                        let mirror = sh.node.log().mirror();
                        if mirrored {
                            let d = mirror.set_mirrored();
                            let mut owed = lock(&sh.owed);
                            match owed.as_mut() {
                                Some(o) => d.ranges().iter().for_each(|(off, len)| o.mark(*off, *len)),
                                None => *owed = Some(d),
                            }
                        } else {
                            mirror.set_local_only();
                        }
                        tracing::info!(mirrored, "mirror mode");
                    }
                    Command::Note { text } => tracing::info!(node = sh.me.0, "ha: {text}"),
                    c @ (Command::Acquire { .. } | Command::MarkCopy { .. }) => dispatch(Work::Witness(c)),
                    c @ Command::StopServing { .. } => {
                        // Fence at once: no request is accepted from here on.
                        if let Command::StopServing { service } = &c {
                            if let Some(s) = lock(&sh.served).get(service) {
                                s.device.fence();
                            }
                        }
                        dispatch(Work::Io(c));
                    }
                    c => dispatch(Work::Io(c)),
                }
            }
        }
        let _ = sh.node.log().mirror().reap();
        *lock(&sh.status) = serde_json::json!({
            "ha": engine.status(),
            "serving_exports": lock(&sh.served).keys().map(|s| s.0).collect::<Vec<_>>(),
            "mirror_mode": sh.node.log().mirror().mode(),
        });
        let now = sh.now();
        let wait = Duration::from_millis(engine.next_deadline().saturating_sub(now)).min(tick_every);
        match rx.recv_timeout(wait) {
            Ok(ev) => {
                pending.push(ev);
                while let Ok(ev) = rx.try_recv() {
                    pending.push(ev);
                }
            }
            Err(RecvTimeoutError::Timeout) => pending.push(Event::Tick),
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if !pending.iter().any(|e| matches!(e, Event::Tick)) {
            pending.push(Event::Tick);
        }
    }
}
