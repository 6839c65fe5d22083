//! The transmission phase of one connection: a reader thread that decodes and checks
//! requests, a bounded pool of worker threads that call the device, and replies written
//! under one lock, in completion order.

use std::io::{self, BufReader, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use crate::device::BlockDevice;
use crate::net::Stream;
use crate::proto::*;
use crate::server::Shared;
use crate::stats::Counters;

/// How long blocked waits sleep before they look at the abort flag again.
const POLL: Duration = Duration::from_millis(100);

/// What to do with one request, decided from its header alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// `NBD_CMD_DISC`: finish what is in flight, then close.
    Disconnect,
    /// Answer at once without touching the device (`errno` 0 for a zero-length request).
    /// A write's payload is read and discarded first.
    Reply { errno: u32, reason: &'static str },
    /// Answer with an error and close the connection without reading the payload: a
    /// write longer than the maximum payload, whose bytes cannot be skipped safely.
    RefuseAndClose { errno: u32, reason: &'static str },
    /// Run on the device.
    Run(Op),
}

/// A device operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Read { offset: u64, len: u32 },
    Write { offset: u64, len: u32, fua: bool },
    Flush,
    Trim { offset: u64, len: u32, fua: bool },
}

impl Op {
    /// The byte range and whether the operation changes it (for ordering).
    fn range(&self) -> Option<(u64, u64, bool)> {
        match *self {
            Op::Read { offset, len } => Some((offset, offset + u64::from(len), false)),
            Op::Write { offset, len, .. } | Op::Trim { offset, len, .. } => Some((offset, offset + u64::from(len), true)),
            Op::Flush => None,
        }
    }

    /// Bytes of buffer the operation holds while in flight.
    fn buffer_bytes(&self) -> u64 {
        match *self {
            Op::Read { len, .. } | Op::Write { len, .. } => u64::from(len),
            Op::Flush | Op::Trim { .. } => 0,
        }
    }
}

/// Checks a request header against the export. Pure: no I/O.
pub(crate) fn decide(req: &Request, size: u64, read_only: bool, max_payload: u32) -> Decision {
    let kind = req.kind;
    if kind == NBD_CMD_DISC {
        return Decision::Disconnect;
    }
    if !matches!(kind, NBD_CMD_READ | NBD_CMD_WRITE | NBD_CMD_FLUSH | NBD_CMD_TRIM) {
        return Decision::Reply { errno: EINVAL, reason: "unsupported command" };
    }
    if kind == NBD_CMD_WRITE && req.len > max_payload {
        return Decision::RefuseAndClose { errno: EINVAL, reason: "write payload larger than the maximum payload" };
    }
    if kind == NBD_CMD_READ && req.len > max_payload {
        return Decision::Reply { errno: EINVAL, reason: "read length larger than the maximum payload" };
    }
    if req.flags & !NBD_CMD_FLAG_FUA != 0 {
        return Decision::Reply { errno: EINVAL, reason: "unknown or unnegotiated command flags" };
    }
    let fua = req.flags & NBD_CMD_FLAG_FUA != 0;
    if read_only && matches!(kind, NBD_CMD_WRITE | NBD_CMD_TRIM) {
        return Decision::Reply { errno: EPERM, reason: "export is read-only" };
    }
    if kind == NBD_CMD_FLUSH {
        // Offset and length are reserved for flush; they are ignored.
        return Decision::Run(Op::Flush);
    }
    let in_range = req.offset.checked_add(u64::from(req.len)).is_some_and(|end| end <= size);
    if !in_range {
        // The protocol asks for ENOSPC on writes beyond the end, EINVAL otherwise.
        return if kind == NBD_CMD_WRITE {
            Decision::Reply { errno: ENOSPC, reason: "write beyond the end of the export" }
        } else {
            Decision::Reply { errno: EINVAL, reason: "request beyond the end of the export" }
        };
    }
    if req.len == 0 {
        return Decision::Reply { errno: 0, reason: "zero-length request" };
    }
    let (offset, len) = (req.offset, req.len);
    Decision::Run(match kind {
        NBD_CMD_READ => Op::Read { offset, len },
        NBD_CMD_WRITE => Op::Write { offset, len, fua },
        _ => Op::Trim { offset, len, fua },
    })
}

/// Limits what one connection holds in flight: a number of requests and a number of
/// buffer bytes. The reader takes a share before it allocates a buffer or queues a
/// request; the worker gives it back after the reply is sent.
#[derive(Debug)]
struct Budget {
    used: Mutex<(usize, u64)>,
    freed: Condvar,
    max_requests: usize,
    max_bytes: u64,
}

impl Budget {
    fn lock(&self) -> MutexGuard<'_, (usize, u64)> {
        self.used.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for room; `false` if the connection is aborted meanwhile.
    fn acquire(&self, bytes: u64, abort: &AtomicBool) -> bool {
        let mut used = self.lock();
        while used.0 >= self.max_requests || used.1 + bytes > self.max_bytes {
            if abort.load(Ordering::SeqCst) {
                return false;
            }
            used = self.freed.wait_timeout(used, POLL).unwrap_or_else(|e| e.into_inner()).0;
        }
        used.0 += 1;
        used.1 += bytes;
        true
    }

    fn release(&self, bytes: u64) {
        let mut used = self.lock();
        used.0 -= 1;
        used.1 -= bytes;
        self.freed.notify_all();
    }
}

/// Orders conflicting requests of one connection: a request waits for every earlier
/// request whose range overlaps its own when either of them changes data. Reads run in
/// parallel; non-overlapping writes run in parallel; overlapping writes apply in the order
/// the client sent them, one after the other, so their bytes never mix.
#[derive(Debug, Default)]
struct Conflicts {
    in_flight: Mutex<Vec<(u64, u64, u64, bool)>>,
    done: Condvar,
}

impl Conflicts {
    fn lock(&self) -> MutexGuard<'_, Vec<(u64, u64, u64, bool)>> {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn register(&self, seq: u64, range: (u64, u64, bool)) {
        self.lock().push((seq, range.0, range.1, range.2));
    }

    /// Waits until no earlier conflicting request is in flight; `false` on abort.
    fn wait_turn(&self, seq: u64, range: (u64, u64, bool), abort: &AtomicBool) -> bool {
        let (start, end, writes) = range;
        let mut list = self.lock();
        loop {
            let blocked = list.iter().any(|&(s, a, b, w)| s < seq && a < end && start < b && (w || writes));
            if !blocked {
                return true;
            }
            if abort.load(Ordering::SeqCst) {
                return false;
            }
            list = self.done.wait_timeout(list, POLL).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    fn complete(&self, seq: u64) {
        let mut list = self.lock();
        if let Some(i) = list.iter().position(|e| e.0 == seq) {
            list.swap_remove(i);
        }
        self.done.notify_all();
    }
}

struct Job {
    seq: u64,
    handle: u64,
    op: Op,
    /// The write payload, or empty.
    payload: Vec<u8>,
}

/// State shared by the reader and the workers of one connection.
pub(crate) struct Conn {
    pub(crate) id: u64,
    pub(crate) peer: String,
    shared: Arc<Shared>,
    device: Arc<dyn BlockDevice>,
    writer: Mutex<Stream>,
    control: Stream,
    /// Set on a hard close: queued requests are dropped, waits give up.
    pub(crate) abort: Arc<AtomicBool>,
    budget: Budget,
    conflicts: Conflicts,
}

impl Conn {
    /// Sends a simple reply. `buf` holds the 16 header bytes followed by any read data.
    /// On failure the connection is torn down.
    fn send(&self, handle: u64, errno: u32, buf: &mut [u8]) -> bool {
        encode_simple_reply(&mut buf[..SIMPLE_REPLY_LEN], errno, handle);
        if errno != 0 {
            Counters::inc(&self.shared.counters.error_replies);
        }
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if self.abort.load(Ordering::SeqCst) {
            return false;
        }
        match w.write_all(buf) {
            Ok(()) => true,
            Err(e) => {
                drop(w);
                debug!(conn = self.id, peer = %self.peer, "reply not delivered: {e}");
                self.hard_close();
                false
            }
        }
    }

    fn send_status(&self, handle: u64, errno: u32) -> bool {
        let mut b = [0u8; SIMPLE_REPLY_LEN];
        self.send(handle, errno, &mut b)
    }

    /// Stops everything: queued requests are dropped, the socket is closed both ways.
    pub(crate) fn hard_close(&self) {
        self.abort.store(true, Ordering::SeqCst);
        self.control.shutdown(Shutdown::Both);
    }

    fn execute(&self, job: &mut Job) {
        let dev = &*self.device;
        let c = &self.shared.counters;
        let (result, mut reply) = match job.op {
            Op::Read { offset, len } => {
                let mut buf = vec![0u8; SIMPLE_REPLY_LEN + len as usize];
                let r = dev.read(offset, &mut buf[SIMPLE_REPLY_LEN..]);
                if r.is_ok() {
                    Counters::add(&c.bytes_read, u64::from(len));
                } else {
                    buf.truncate(SIMPLE_REPLY_LEN);
                }
                (r, buf)
            }
            Op::Write { offset, len, fua } => {
                let r = dev.write(offset, &job.payload).and_then(|()| if fua { dev.flush() } else { Ok(()) });
                if r.is_ok() {
                    Counters::add(&c.bytes_written, u64::from(len));
                }
                job.payload = Vec::new();
                (r, vec![0u8; SIMPLE_REPLY_LEN])
            }
            Op::Flush => (dev.flush(), vec![0u8; SIMPLE_REPLY_LEN]),
            Op::Trim { offset, len, fua } => {
                (dev.trim(offset, u64::from(len)).and_then(|()| if fua { dev.flush() } else { Ok(()) }), vec![0u8; SIMPLE_REPLY_LEN])
            }
        };
        if job.op.range().is_some() {
            self.conflicts.complete(job.seq);
        }
        let errno = match &result {
            Ok(()) => 0,
            Err(e) => {
                Counters::inc(&c.device_errors);
                warn!(conn = self.id, peer = %self.peer, op = ?job.op, errno = e.errno(), "device error: {e}");
                e.errno()
            }
        };
        self.send(job.handle, errno, &mut reply);
    }
}

fn worker(conn: Arc<Conn>, queue: Arc<Mutex<mpsc::Receiver<Job>>>) {
    loop {
        let next = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok(mut job) = next else { return };
        let bytes = job.op.buffer_bytes();
        let range = job.op.range();
        let go = !conn.abort.load(Ordering::SeqCst) && range.is_none_or(|r| conn.conflicts.wait_turn(job.seq, r, &conn.abort));
        if go {
            conn.execute(&mut job);
        } else if range.is_some() {
            conn.conflicts.complete(job.seq);
        }
        drop(job);
        conn.budget.release(bytes);
    }
}

/// Why the reader stopped.
#[derive(Debug)]
enum End {
    /// `NBD_CMD_DISC`, or the client or the server closed the reading side.
    Clean(&'static str),
    /// A protocol violation or an I/O failure: logged as a warning and counted.
    Violation(String),
    /// The connection was already torn down (a reply failed, or a hard close).
    Aborted,
}

/// Serves the transmission phase until the connection ends.
pub(crate) fn transmission(shared: Arc<Shared>, id: u64, peer: String, stream: Stream, export: usize, abort: Arc<AtomicBool>) {
    let cfg = shared.config.clone();
    let device = shared.exports[export].device.clone();
    let (writer, control) = match (stream.try_clone(), stream.try_clone()) {
        (Ok(w), Ok(c)) => (w, c),
        (Err(e), _) | (_, Err(e)) => {
            warn!(conn = id, peer, "cannot clone the socket: {e}");
            return;
        }
    };
    if let Err(e) = stream.set_read_timeout(Some(cfg.io_timeout)) {
        warn!(conn = id, peer, "cannot set the socket timeout: {e}");
        return;
    }
    let conn = Arc::new(Conn {
        id,
        peer,
        shared: shared.clone(),
        device,
        writer: Mutex::new(writer),
        control,
        abort,
        budget: Budget {
            used: Mutex::new((0, 0)),
            freed: Condvar::new(),
            max_requests: cfg.max_requests_in_flight,
            max_bytes: cfg.max_bytes_in_flight as u64,
        },
        conflicts: Conflicts::default(),
    });

    let (tx, rx) = mpsc::channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    let mut workers = Vec::new();
    for w in 0..cfg.workers_per_connection.min(cfg.max_requests_in_flight) {
        let (c, q) = (conn.clone(), rx.clone());
        match std::thread::Builder::new().name(format!("nbd-c{id}-w{w}")).spawn(move || worker(c, q)) {
            Ok(h) => workers.push(h),
            Err(e) => warn!(conn = id, "cannot start worker thread {w}: {e}"),
        }
    }
    if workers.is_empty() {
        warn!(conn = id, "no worker thread could be started; closing");
        conn.hard_close();
        return;
    }

    let end = read_requests(&conn, BufReader::with_capacity(256 * 1024, stream), &tx);
    match &end {
        End::Clean(why) => debug!(conn = id, peer = %conn.peer, "transmission ends: {why}"),
        End::Violation(why) => {
            Counters::inc(&shared.counters.protocol_errors);
            warn!(conn = id, peer = %conn.peer, "closing connection: {why}");
        }
        End::Aborted => debug!(conn = id, peer = %conn.peer, "connection torn down"),
    }
    // Let the workers finish what is queued (or drop it after a hard close), then close.
    drop(tx);
    for h in workers {
        let _ = h.join();
    }
    conn.control.shutdown(Shutdown::Both);
}

fn read_requests(conn: &Conn, mut rd: BufReader<Stream>, tx: &mpsc::Sender<Job>) -> End {
    let shared = &conn.shared;
    let c = &shared.counters;
    let cfg = &shared.config;
    let size = conn.device.size();
    let read_only = conn.device.read_only();
    let mut seq: u64 = 0;
    loop {
        let mut hdr = [0u8; REQUEST_LEN];
        if let Err(end) = read_header(conn, &mut rd, &mut hdr) {
            return end;
        }
        let Some(req) = Request::decode(&hdr) else {
            return End::Violation(format!("bad request magic {:#010x}", be32(&hdr[0..4])));
        };
        seq += 1;
        match req.kind {
            NBD_CMD_READ => Counters::inc(&c.reads),
            NBD_CMD_WRITE => Counters::inc(&c.writes),
            NBD_CMD_FLUSH => Counters::inc(&c.flushes),
            NBD_CMD_TRIM => Counters::inc(&c.trims),
            NBD_CMD_DISC => Counters::inc(&c.disconnects),
            _ => Counters::inc(&c.unsupported_commands),
        }
        match decide(&req, size, read_only, cfg.max_payload) {
            Decision::Disconnect => return End::Clean("NBD_CMD_DISC"),
            Decision::Reply { errno, reason } => {
                if req.kind == NBD_CMD_WRITE && req.len > 0 {
                    // Skip the payload so that the stream stays in step.
                    if let Err(e) = io::copy(&mut (&mut rd).take(u64::from(req.len)), &mut io::sink()).and_then(|n| {
                        if n == u64::from(req.len) {
                            Ok(())
                        } else {
                            Err(io::Error::new(io::ErrorKind::UnexpectedEof, "truncated write payload"))
                        }
                    }) {
                        return End::Violation(format!("write payload of {} bytes not received: {e}", req.len));
                    }
                }
                if errno != 0 {
                    Counters::inc(&c.requests_refused);
                    info!(
                        conn = conn.id, peer = %conn.peer, cmd = command_name(req.kind), kind = req.kind, flags = req.flags,
                        offset = req.offset, len = req.len, errno, "request refused: {reason}"
                    );
                }
                if !conn.send_status(req.handle, errno) {
                    return End::Aborted;
                }
            }
            Decision::RefuseAndClose { errno, reason } => {
                Counters::inc(&c.requests_refused);
                conn.send_status(req.handle, errno);
                return End::Violation(format!(
                    "{} of {} bytes at {} refused ({reason}); its payload cannot be skipped safely",
                    command_name(req.kind),
                    req.len,
                    req.offset
                ));
            }
            Decision::Run(op) => {
                let bytes = op.buffer_bytes();
                if !conn.budget.acquire(bytes, &conn.abort) {
                    return End::Aborted;
                }
                let mut payload = Vec::new();
                if let Op::Write { len, .. } = op {
                    payload = vec![0u8; len as usize];
                    if let Err(e) = rd.read_exact(&mut payload) {
                        conn.budget.release(bytes);
                        return End::Violation(format!("write payload of {len} bytes not received: {e}"));
                    }
                }
                if let Some(r) = op.range() {
                    conn.conflicts.register(seq, r);
                }
                if tx.send(Job { seq, handle: req.handle, op, payload }).is_err() {
                    conn.budget.release(bytes);
                    return End::Aborted;
                }
            }
        }
    }
}

/// Reads one request header. Waiting for its first byte is idle time (bounded by
/// `idle_timeout` if set); once it has started, every read must make progress within
/// `io_timeout`.
fn read_header(conn: &Conn, rd: &mut BufReader<Stream>, hdr: &mut [u8; REQUEST_LEN]) -> Result<(), End> {
    let cfg = &conn.shared.config;
    let idle_since = Instant::now();
    let mut filled = 0;
    while filled < REQUEST_LEN {
        match rd.read(&mut hdr[filled..]) {
            Ok(0) if filled == 0 => {
                return Err(if conn.abort.load(Ordering::SeqCst) { End::Aborted } else { End::Clean("connection closed") })
            }
            Ok(0) => return Err(End::Violation(format!("truncated request header ({filled} of {REQUEST_LEN} bytes)"))),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                if filled > 0 {
                    return Err(End::Violation(format!("request header incomplete after {:?}", cfg.io_timeout)));
                }
                if conn.abort.load(Ordering::SeqCst) {
                    return Err(End::Aborted);
                }
                if cfg.idle_timeout.is_some_and(|t| idle_since.elapsed() >= t) {
                    return Err(End::Clean("idle timeout"));
                }
            }
            Err(e) if conn.abort.load(Ordering::SeqCst) => {
                debug!(conn = conn.id, "read after teardown: {e}");
                return Err(End::Aborted);
            }
            Err(e) => return Err(End::Violation(format!("read failed: {e}"))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(kind: u16, flags: u16, offset: u64, len: u32) -> Request {
        Request { flags, kind, handle: 1, offset, len }
    }

    const MAX: u32 = 32 << 20;

    #[test]
    fn decisions() {
        let d = |r: Request| decide(&r, 1 << 20, false, MAX);
        assert_eq!(d(req(NBD_CMD_READ, 0, 0, 4096)), Decision::Run(Op::Read { offset: 0, len: 4096 }));
        assert_eq!(d(req(NBD_CMD_WRITE, NBD_CMD_FLAG_FUA, 4096, 512)), Decision::Run(Op::Write { offset: 4096, len: 512, fua: true }));
        assert_eq!(d(req(NBD_CMD_FLUSH, 0, 99, 99)), Decision::Run(Op::Flush));
        assert_eq!(d(req(NBD_CMD_TRIM, 0, 0, 1 << 20)), Decision::Run(Op::Trim { offset: 0, len: 1 << 20, fua: false }));
        assert_eq!(d(req(NBD_CMD_DISC, 0, 0, 0)), Decision::Disconnect);
        // Ranges: exactly at the end is fine, one past is not, and overflow is caught.
        assert!(matches!(d(req(NBD_CMD_READ, 0, (1 << 20) - 1, 1)), Decision::Run(_)));
        assert!(matches!(d(req(NBD_CMD_READ, 0, (1 << 20) - 1, 2)), Decision::Reply { errno: EINVAL, .. }));
        assert!(matches!(d(req(NBD_CMD_READ, 0, u64::MAX, 1)), Decision::Reply { errno: EINVAL, .. }));
        assert!(matches!(d(req(NBD_CMD_TRIM, 0, 1 << 20, 1)), Decision::Reply { errno: EINVAL, .. }));
        assert!(matches!(d(req(NBD_CMD_WRITE, 0, 1 << 20, 1)), Decision::Reply { errno: ENOSPC, .. }));
        assert!(matches!(d(req(NBD_CMD_WRITE, 0, u64::MAX - 1, 4)), Decision::Reply { errno: ENOSPC, .. }));
        // Zero length: success without the device, unless the offset is beyond the end.
        assert_eq!(d(req(NBD_CMD_READ, 0, 1 << 20, 0)), Decision::Reply { errno: 0, reason: "zero-length request" });
        assert!(matches!(d(req(NBD_CMD_WRITE, 0, 5, 0)), Decision::Reply { errno: 0, .. }));
        assert!(matches!(d(req(NBD_CMD_READ, 0, (1 << 20) + 1, 0)), Decision::Reply { errno: EINVAL, .. }));
        // Lengths over the maximum payload.
        assert!(matches!(d(req(NBD_CMD_READ, 0, 0, MAX + 1)), Decision::Reply { errno: EINVAL, .. }));
        assert!(matches!(d(req(NBD_CMD_WRITE, 0, 0, MAX + 1)), Decision::RefuseAndClose { errno: EINVAL, .. }));
        assert!(matches!(d(req(NBD_CMD_WRITE, 0, 0, u32::MAX)), Decision::RefuseAndClose { .. }));
        // Flags and commands.
        assert!(matches!(d(req(NBD_CMD_READ, 1 << 2, 0, 1)), Decision::Reply { errno: EINVAL, .. }));
        assert!(matches!(d(req(NBD_CMD_WRITE, 1 << 15, 0, 1)), Decision::Reply { errno: EINVAL, .. }));
        for kind in [5u16, 6, 7, 8, 9, 0xffff] {
            assert!(matches!(d(req(kind, 0, 0, 0)), Decision::Reply { errno: EINVAL, .. }), "command {kind}");
        }
        // Read-only export.
        let ro = |r: Request| decide(&r, 1 << 20, true, MAX);
        assert!(matches!(ro(req(NBD_CMD_WRITE, 0, 0, 1)), Decision::Reply { errno: EPERM, .. }));
        assert!(matches!(ro(req(NBD_CMD_TRIM, 0, 0, 1)), Decision::Reply { errno: EPERM, .. }));
        assert!(matches!(ro(req(NBD_CMD_READ, 0, 0, 1)), Decision::Run(_)));
        assert!(matches!(ro(req(NBD_CMD_FLUSH, 0, 0, 0)), Decision::Run(_)));
    }

    #[test]
    fn conflicts_order_overlapping_writes_only() {
        let abort = AtomicBool::new(false);
        let c = Conflicts::default();
        c.register(1, (0, 100, true));
        c.register(2, (200, 300, true));
        c.register(3, (50, 60, false));
        c.register(4, (250, 260, false));
        // Disjoint from everything earlier: goes at once.
        assert!(c.wait_turn(2, (200, 300, true), &abort));
        // Overlaps write 1: waits until it completes (give up through abort here).
        abort.store(true, Ordering::SeqCst);
        assert!(!c.wait_turn(3, (50, 60, false), &abort));
        abort.store(false, Ordering::SeqCst);
        c.complete(1);
        assert!(c.wait_turn(3, (50, 60, false), &abort));
        // Reads never wait for reads.
        c.complete(2);
        c.register(5, (0, 1000, false));
        assert!(c.wait_turn(5, (0, 1000, false), &abort));
    }

    #[test]
    fn budget_bounds_requests_and_bytes() {
        let abort = AtomicBool::new(false);
        let b = Budget { used: Mutex::new((0, 0)), freed: Condvar::new(), max_requests: 2, max_bytes: 100 };
        assert!(b.acquire(60, &abort));
        abort.store(true, Ordering::SeqCst);
        assert!(!b.acquire(60, &abort), "bytes over the limit must wait");
        assert!(b.acquire(40, &abort));
        assert!(!b.acquire(0, &abort), "requests over the limit must wait");
        b.release(60);
        assert!(b.acquire(0, &abort));
    }
}
