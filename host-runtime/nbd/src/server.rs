//! The server: exports, configuration, the accept loop, connection bookkeeping and
//! shutdown.

use std::collections::HashMap;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, ToSocketAddrs};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use crate::device::BlockDevice;
use crate::handshake::{self, Outcome};
use crate::net::{self, ListenAddr, Listener, Stream};
use crate::proto::*;
use crate::stats::{Counters, NbdStats};

/// Longest export name accepted (the protocol's limit for strings).
pub const MAX_EXPORT_NAME: usize = 4096;

/// One named export: a name clients ask for and the device behind it.
#[derive(Clone)]
pub struct Export {
    pub(crate) name: String,
    pub(crate) description: Option<String>,
    pub(crate) device: Arc<dyn BlockDevice>,
}

impl Export {
    /// An export called `name` serving `device`.
    pub fn new(name: impl Into<String>, device: Arc<dyn BlockDevice>) -> Self {
        Export { name: name.into(), description: None, device }
    }

    /// Adds a description, sent as `NBD_INFO_DESCRIPTION` when a client asks for it.
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// The export's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl std::fmt::Debug for Export {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Export")
            .field("name", &self.name)
            .field("description", &self.description)
            .field("size", &self.device.size())
            .field("read_only", &self.device.read_only())
            .finish()
    }
}

/// Limits and timeouts of a server. [`NbdConfig::default`] suits a local HA export.
#[derive(Debug, Clone)]
pub struct NbdConfig {
    /// Connections served at once; further connections are closed at once.
    pub max_connections: usize,
    /// Worker threads per connection: how many device calls one connection runs in parallel.
    pub workers_per_connection: usize,
    /// Requests one connection may have in flight (read or queued, not yet answered). The
    /// server stops reading the socket while this many are pending.
    pub max_requests_in_flight: usize,
    /// Buffer bytes one connection may hold for requests in flight (read data and write
    /// payloads). Must be at least `max_payload`.
    pub max_bytes_in_flight: usize,
    /// Largest read or write length accepted, advertised as the maximum payload in
    /// `NBD_INFO_BLOCK_SIZE`. Clients that do not ask assume 32 MiB, the default.
    pub max_payload: u32,
    /// Time allowed for the whole handshake.
    pub handshake_timeout: Duration,
    /// Time allowed for each read or write on the socket once a request has started, and
    /// for every reply write.
    pub io_timeout: Duration,
    /// Close a connection that sent no request for this long; `None`: never.
    pub idle_timeout: Option<Duration>,
    /// On shutdown, time given to requests in flight to finish and be answered before the
    /// connections are cut.
    pub shutdown_grace: Duration,
}

impl Default for NbdConfig {
    fn default() -> Self {
        NbdConfig {
            max_connections: 32,
            workers_per_connection: 16,
            max_requests_in_flight: 128,
            max_bytes_in_flight: 64 << 20,
            max_payload: 32 << 20,
            handshake_timeout: Duration::from_secs(10),
            io_timeout: Duration::from_secs(30),
            idle_timeout: None,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

impl NbdConfig {
    fn validate(&self) -> io::Result<()> {
        let bad = |m: &str| Err(io::Error::new(io::ErrorKind::InvalidInput, m.to_string()));
        if self.max_connections == 0 || self.workers_per_connection == 0 || self.max_requests_in_flight == 0 {
            return bad("max_connections, workers_per_connection and max_requests_in_flight must be at least 1");
        }
        if self.max_payload < 4096 {
            return bad("max_payload must be at least 4096");
        }
        if (self.max_bytes_in_flight as u64) < u64::from(self.max_payload) {
            return bad("max_bytes_in_flight must be at least max_payload");
        }
        if self.io_timeout.is_zero() || self.handshake_timeout.is_zero() {
            return bad("timeouts must not be zero");
        }
        Ok(())
    }
}

struct ConnEntry {
    control: Stream,
    abort: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// State shared by the accept loop, the connections and the handles.
pub(crate) struct Shared {
    pub(crate) exports: Vec<Export>,
    pub(crate) config: NbdConfig,
    pub(crate) counters: Counters,
    pub(crate) stopping: AtomicBool,
    conns: Mutex<HashMap<u64, ConnEntry>>,
    next_id: AtomicU64,
    listen: ListenAddr,
}

impl Shared {
    fn conns(&self) -> MutexGuard<'_, HashMap<u64, ConnEntry>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The export a client names; the empty name selects the first (default) export.
    pub(crate) fn find_export(&self, name: &[u8]) -> Option<usize> {
        if name.is_empty() {
            return (!self.exports.is_empty()).then_some(0);
        }
        self.exports.iter().position(|e| e.name.as_bytes() == name)
    }

    pub(crate) fn transmission_flags(&self, i: usize) -> u16 {
        let mut f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM;
        if self.exports[i].device.read_only() {
            f |= NBD_FLAG_READ_ONLY;
        }
        f
    }

    pub(crate) fn preferred_block_size(&self, i: usize) -> u32 {
        let p = self.exports[i].device.preferred_block_size();
        if p.is_power_of_two() && p >= 512 && p <= self.config.max_payload {
            p
        } else {
            4096
        }
    }

    /// Starts the shutdown: no new connections or requests; requests in flight finish.
    fn begin_shutdown(&self) {
        if self.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        info!(addr = %self.listen, "NBD server shutting down");
        net::wake(&self.listen);
        for e in self.conns().values() {
            // Reading stops (the reader sees end of stream); replies still go out.
            e.control.shutdown(Shutdown::Read);
        }
    }
}

/// An NBD server bound to an address, not yet serving. Start it with [`NbdServer::run`]
/// (in the calling thread) or [`NbdServer::spawn`] (in a background thread).
///
/// ```no_run
/// use std::sync::Arc;
/// use tandem_nbd::{MemDevice, NbdServer};
///
/// let server = NbdServer::bind("127.0.0.1:10809", "disk0", Arc::new(MemDevice::new(64 << 20)))?;
/// println!("nbd://{}/disk0", server.local_addr()?);
/// let handle = server.spawn()?;
/// // ... clients connect ...
/// handle.shutdown();
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct NbdServer {
    shared: Arc<Shared>,
    listener: Listener,
}

impl std::fmt::Debug for NbdServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NbdServer").field("listen", &self.shared.listen).field("exports", &self.shared.exports).finish()
    }
}

impl NbdServer {
    /// Binds a TCP address serving one export called `export_name` (clients asking for
    /// the empty name get it too), with the default configuration.
    pub fn bind(addr: impl ToSocketAddrs, export_name: &str, device: Arc<dyn BlockDevice>) -> io::Result<NbdServer> {
        Self::bind_with(addr, vec![Export::new(export_name, device)], NbdConfig::default())
    }

    /// Binds a TCP address serving `exports` (the first is the default export).
    pub fn bind_with(addr: impl ToSocketAddrs, exports: Vec<Export>, config: NbdConfig) -> io::Result<NbdServer> {
        check_exports(&exports)?;
        config.validate()?;
        let l = TcpListener::bind(addr)?;
        let listen = ListenAddr::Tcp(l.local_addr()?);
        Ok(Self::new(Listener::Tcp(l), listen, exports, config))
    }

    /// Binds a Unix-domain socket at `path` (which must not exist) serving `exports`. The
    /// socket file is removed on shutdown.
    pub fn bind_unix(path: impl AsRef<Path>, exports: Vec<Export>, config: NbdConfig) -> io::Result<NbdServer> {
        check_exports(&exports)?;
        config.validate()?;
        let path: PathBuf = path.as_ref().to_path_buf();
        let l = UnixListener::bind(&path)?;
        Ok(Self::new(Listener::Unix(l), ListenAddr::Unix(path), exports, config))
    }

    fn new(listener: Listener, listen: ListenAddr, exports: Vec<Export>, config: NbdConfig) -> NbdServer {
        let shared = Arc::new(Shared {
            exports,
            config,
            counters: Counters::default(),
            stopping: AtomicBool::new(false),
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            listen,
        });
        NbdServer { shared, listener }
    }

    /// The TCP address the server listens on (the real port when bound to port 0).
    /// An error for a Unix-domain socket.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        tcp_addr(&self.shared.listen)
    }

    /// Where the server listens.
    pub fn listen_addr(&self) -> &ListenAddr {
        &self.shared.listen
    }

    /// The counters so far.
    pub fn stats(&self) -> NbdStats {
        self.shared.counters.snapshot()
    }

    /// A handle that stops a server running in [`NbdServer::run`] from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle { shared: self.shared.clone() }
    }

    /// Serves until [`ShutdownHandle::shutdown`] is called, then finishes the shutdown
    /// (see [`NbdHandle::shutdown`]) and returns.
    pub fn run(self) -> io::Result<()> {
        info!(addr = %self.shared.listen, exports = self.shared.exports.len(), "NBD server listening");
        accept_loop(&self.shared, &self.listener);
        finish(&self.shared);
        if let ListenAddr::Unix(p) = &self.shared.listen {
            let _ = std::fs::remove_file(p);
        }
        Ok(())
    }

    /// Serves in a background thread.
    pub fn spawn(self) -> io::Result<NbdHandle> {
        let shared = self.shared.clone();
        let thread = std::thread::Builder::new().name("nbd-accept".into()).spawn(move || {
            let _ = self.run();
        })?;
        Ok(NbdHandle { shared, thread: Some(thread) })
    }
}

fn tcp_addr(l: &ListenAddr) -> io::Result<SocketAddr> {
    match l {
        ListenAddr::Tcp(a) => Ok(*a),
        ListenAddr::Unix(p) => Err(io::Error::new(io::ErrorKind::Unsupported, format!("listening on Unix socket {}", p.display()))),
    }
}

fn check_exports(exports: &[Export]) -> io::Result<()> {
    let bad = |m: String| Err(io::Error::new(io::ErrorKind::InvalidInput, m));
    if exports.is_empty() {
        return bad("at least one export is needed".into());
    }
    for (i, e) in exports.iter().enumerate() {
        if e.name.len() > MAX_EXPORT_NAME || e.name.contains('\0') {
            return bad(format!("export name {:?} is longer than {MAX_EXPORT_NAME} bytes or contains NUL", e.name));
        }
        if exports[..i].iter().any(|o| o.name == e.name) {
            return bad(format!("export name {:?} is used twice", e.name));
        }
    }
    Ok(())
}

/// A server running in a background thread ([`NbdServer::spawn`]). Dropping it shuts the
/// server down.
pub struct NbdHandle {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for NbdHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NbdHandle").field("listen", &self.shared.listen).finish()
    }
}

impl NbdHandle {
    /// The TCP address the server listens on; an error for a Unix-domain socket.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        tcp_addr(&self.shared.listen)
    }

    /// Where the server listens.
    pub fn listen_addr(&self) -> &ListenAddr {
        &self.shared.listen
    }

    /// The counters so far.
    pub fn stats(&self) -> NbdStats {
        self.shared.counters.snapshot()
    }

    /// A handle that can stop the server from elsewhere.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle { shared: self.shared.clone() }
    }

    /// Stops the server and waits for it: no new connections; every connection stops
    /// reading requests; requests already read finish on the device and are answered
    /// within [`NbdConfig::shutdown_grace`]; then every connection is closed. Requests
    /// still queued at that point are dropped without reaching the device (their clients
    /// get no reply). A device call that does not return keeps its worker thread busy;
    /// such threads are left behind after one more second, with a warning.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.shared.begin_shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for NbdHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Stops a server from any thread (see [`NbdHandle::shutdown`] for what happens to
/// connections). Returns at once; [`NbdServer::run`] returns when the shutdown is done.
#[derive(Clone)]
pub struct ShutdownHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ShutdownHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShutdownHandle").field("listen", &self.shared.listen).finish()
    }
}

impl ShutdownHandle {
    /// Starts the shutdown.
    pub fn shutdown(&self) {
        self.shared.begin_shutdown();
    }
}

fn accept_loop(shared: &Arc<Shared>, listener: &Listener) {
    let mut backoff = Duration::from_millis(10);
    while !shared.stopping.load(Ordering::SeqCst) {
        let stream = match listener.accept() {
            Ok(s) => {
                backoff = Duration::from_millis(10);
                s
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // Out of descriptors or memory, or an aborted connection: wait a little.
                warn!("accept failed: {e}");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        admit(shared, stream);
    }
}

fn admit(shared: &Arc<Shared>, stream: Stream) {
    let c = &shared.counters;
    Counters::inc(&c.connections_accepted);
    let peer = stream.peer();
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let abort = Arc::new(AtomicBool::new(false));
    let control = match stream.try_clone() {
        Ok(s) => s,
        Err(e) => {
            warn!(peer, "cannot clone an accepted socket: {e}");
            return;
        }
    };
    {
        let mut conns = shared.conns();
        if shared.stopping.load(Ordering::SeqCst) || conns.len() >= shared.config.max_connections {
            Counters::inc(&c.connections_refused);
            warn!(peer, open = conns.len(), "connection refused: server stopping or max_connections reached");
            stream.shutdown(Shutdown::Both);
            return;
        }
        conns.insert(id, ConnEntry { control, abort: abort.clone(), thread: None });
        Counters::inc(&c.connections_active);
    }
    let s2 = shared.clone();
    let spawned = std::thread::Builder::new().name(format!("nbd-c{id}")).spawn(move || {
        serve(&s2, id, peer, stream, abort);
        s2.conns().remove(&id);
        Counters::dec(&s2.counters.connections_active);
    });
    match spawned {
        Ok(h) => {
            if let Some(e) = shared.conns().get_mut(&id) {
                e.thread = Some(h);
            }
        }
        Err(e) => {
            warn!("cannot start a connection thread: {e}");
            if let Some(e) = shared.conns().remove(&id) {
                e.control.shutdown(Shutdown::Both);
            }
            Counters::dec(&c.connections_active);
        }
    }
}

fn serve(shared: &Arc<Shared>, id: u64, peer: String, mut stream: Stream, abort: Arc<AtomicBool>) {
    stream.tune();
    if let Err(e) = stream.set_write_timeout(Some(shared.config.io_timeout)) {
        warn!(conn = id, peer, "cannot set the socket timeout: {e}");
        return;
    }
    debug!(conn = id, peer, "connection accepted");
    match handshake::negotiate(shared, &mut stream, &peer) {
        Outcome::Transmission(export) => {
            Counters::inc(&shared.counters.handshakes_completed);
            info!(conn = id, peer, export = shared.exports[export].name, "client entered transmission");
            crate::conn::transmission(shared.clone(), id, peer, stream, export, abort);
        }
        Outcome::Closed => {
            Counters::inc(&shared.counters.handshakes_failed);
            stream.shutdown(Shutdown::Both);
        }
    }
}

/// After the accept loop: waits for the connections within the grace period, then cuts
/// the rest.
fn finish(shared: &Arc<Shared>) {
    shared.begin_shutdown();
    let mut threads: Vec<JoinHandle<()>> = shared.conns().values_mut().filter_map(|e| e.thread.take()).collect();
    let grace_end = Instant::now() + shared.config.shutdown_grace;
    wait_threads(&mut threads, grace_end);
    if !threads.is_empty() {
        warn!(connections = threads.len(), "connections still busy after the shutdown grace period; cutting them");
        for e in shared.conns().values() {
            e.abort.store(true, Ordering::SeqCst);
            e.control.shutdown(Shutdown::Both);
        }
        wait_threads(&mut threads, Instant::now() + Duration::from_secs(1));
        if !threads.is_empty() {
            warn!(connections = threads.len(), "connection threads stuck in device calls; leaving them behind");
        }
    }
    info!(addr = %shared.listen, "NBD server stopped");
}

fn wait_threads(threads: &mut Vec<JoinHandle<()>>, until: Instant) {
    loop {
        let mut i = 0;
        while i < threads.len() {
            if threads[i].is_finished() {
                let _ = threads.swap_remove(i).join();
            } else {
                i += 1;
            }
        }
        if threads.is_empty() || Instant::now() >= until {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
