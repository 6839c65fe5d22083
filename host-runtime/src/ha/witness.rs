//! The witness: a lease table per service that decides which node may serve it.
//!
//! - [`Mediator`]: the pure table (no clock, no I/O; the caller passes the time).
//! - [`MediatorServer`] / [`run_mediator`]: the table behind a UDP request/response
//!   protocol, one JSON object per datagram (`tandem mediator`).
//! - [`WitnessClient`]: what the runtime calls to execute [`super::Command::Acquire`],
//!   [`super::Command::Release`] and [`super::Command::MarkCopy`]; [`UdpWitness`] talks to
//!   a mediator, [`super::etcd::EtcdWitness`] to etcd.
//!
//! Rules (`docs/ha.md`, "Witness"): a lease is granted to its holder (renewal), to anybody
//! when the service has no record, and to a different node only when the holder's lease has
//! expired AND the holder has not marked the other node's copy stale. The epoch increments
//! whenever the holder changes. Only the holder may mark the copy or release.

use super::types::{DenyReason, Grant, Millis, NodeId, ServiceId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// One service's record at the witness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// Last node granted the lease (it stays the holder after its lease expires until
    /// another node is granted it).
    pub holder: NodeId,
    /// Lease end on the witness's clock. A release sets it to the release time.
    pub expires_at: Millis,
    /// Increments when the holder changes.
    pub epoch: u64,
    /// Whether the non-holder's mirror copy holds every acknowledged write.
    pub copy_current: bool,
}

/// The pure lease table.
#[derive(Debug, Clone, Default)]
pub struct Mediator {
    table: BTreeMap<ServiceId, LeaseRecord>,
}

impl Mediator {
    /// An empty table: every service is free.
    pub fn new() -> Mediator {
        Mediator::default()
    }

    /// The record of `service`, if it was ever granted.
    pub fn record(&self, service: ServiceId) -> Option<LeaseRecord> {
        self.table.get(&service).copied()
    }

    fn valid_node(node: NodeId) -> bool {
        node.0 <= 1
    }

    /// Grants (or renews) `service` to `node` for `lease` ms from `now`, or says why not.
    /// `until` of a grant is on the witness's clock; clients convert it to the caller's.
    pub fn acquire(&mut self, service: ServiceId, node: NodeId, now: Millis, lease: Millis) -> Grant {
        if !Self::valid_node(node) || lease == 0 {
            return Grant::Denied { reason: DenyReason::Invalid, holder: None };
        }
        let until = now.saturating_add(lease);
        match self.table.get_mut(&service) {
            None => {
                self.table.insert(service, LeaseRecord { holder: node, expires_at: until, epoch: 1, copy_current: true });
                Grant::Granted { until, epoch: 1 }
            }
            Some(r) if r.holder == node => {
                r.expires_at = r.expires_at.max(until);
                Grant::Granted { until: r.expires_at, epoch: r.epoch }
            }
            Some(r) if now < r.expires_at => Grant::Denied { reason: DenyReason::HeldByOther, holder: Some(r.holder) },
            Some(r) if !r.copy_current => Grant::Denied { reason: DenyReason::CopyStale, holder: Some(r.holder) },
            Some(r) => {
                r.holder = node;
                r.expires_at = until;
                r.epoch += 1;
                Grant::Granted { until, epoch: r.epoch }
            }
        }
    }

    /// Ends `node`'s lease of `service` now. Only the holder may release.
    pub fn release(&mut self, service: ServiceId, node: NodeId, now: Millis) -> Result<(), DenyReason> {
        let r = self.table.get_mut(&service).ok_or(DenyReason::Invalid)?;
        if r.holder != node {
            return Err(DenyReason::HeldByOther);
        }
        r.expires_at = r.expires_at.min(now);
        Ok(())
    }

    /// Records whether the non-holder's copy of `service` is current. Only the holder may.
    pub fn mark_copy(&mut self, service: ServiceId, node: NodeId, current: bool) -> Result<(), DenyReason> {
        let r = self.table.get_mut(&service).ok_or(DenyReason::Invalid)?;
        if r.holder != node {
            return Err(DenyReason::HeldByOther);
        }
        r.copy_current = current;
        Ok(())
    }

    /// Applies one protocol request at `now`.
    pub fn handle(&mut self, req: &WitnessRequest, now: Millis) -> WitnessReply {
        match req.op {
            WitnessOp::Acquire { service, node, lease_ms } => {
                WitnessReply::Grant { id: req.id, grant: self.acquire(service, node, now, lease_ms) }
            }
            WitnessOp::Release { service, node } => WitnessReply::Done { id: req.id, result: self.release(service, node, now).err() },
            WitnessOp::MarkCopy { service, node, current } => {
                WitnessReply::Done { id: req.id, result: self.mark_copy(service, node, current).err() }
            }
        }
    }
}

/// What the runtime asks of the witness; the same three operations for every backend.
/// Every method blocks at most the client's timeout; a timeout or a connection failure
/// is [`DenyReason::Unreachable`].
pub trait WitnessClient {
    /// Asks for (or renews) `service` for `node`. `sent_at` is the caller's clock when
    /// the request is sent; a grant's `until` is `sent_at + lease_ms`, never later, so the
    /// caller's lease always ends before the witness's.
    fn acquire(&mut self, service: ServiceId, node: NodeId, lease_ms: Millis, sent_at: Millis) -> Grant;
    /// Releases `node`'s lease of `service`.
    fn release(&mut self, service: ServiceId, node: NodeId) -> Result<(), DenyReason>;
    /// Records whether the non-holder's copy of `service` is current.
    fn mark_copy(&mut self, service: ServiceId, node: NodeId, current: bool) -> Result<(), DenyReason>;
}

/// One request datagram.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WitnessRequest {
    /// Echoed in the reply so a late reply to an earlier request is never taken for this one.
    pub id: u64,
    /// The operation.
    #[serde(flatten)]
    pub op: WitnessOp,
}

/// The operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum WitnessOp {
    /// [`Mediator::acquire`].
    Acquire {
        /// Service.
        service: ServiceId,
        /// Node.
        node: NodeId,
        /// Lease length.
        lease_ms: Millis,
    },
    /// [`Mediator::release`].
    Release {
        /// Service.
        service: ServiceId,
        /// Node.
        node: NodeId,
    },
    /// [`Mediator::mark_copy`].
    MarkCopy {
        /// Service.
        service: ServiceId,
        /// Node.
        node: NodeId,
        /// Current?
        current: bool,
    },
}

/// One reply datagram.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum WitnessReply {
    /// Answer to an acquire.
    Grant {
        /// Request id.
        id: u64,
        /// Answer (lease end on the witness's clock).
        grant: Grant,
    },
    /// Answer to a release or mark: `result` is `None` on success.
    Done {
        /// Request id.
        id: u64,
        /// Refusal, if refused.
        result: Option<DenyReason>,
    },
    /// The request could not be parsed.
    Error {
        /// What was wrong.
        error: String,
    },
}

impl WitnessReply {
    fn id(&self) -> Option<u64> {
        match self {
            WitnessReply::Grant { id, .. } | WitnessReply::Done { id, .. } => Some(*id),
            WitnessReply::Error { .. } => None,
        }
    }
}

/// The mediator behind a UDP socket: one JSON request per datagram, one JSON reply back
/// to the sender. Its clock is the time since it started; leases are stored in it.
#[derive(Debug)]
pub struct MediatorServer {
    sock: UdpSocket,
    mediator: Mediator,
    start: Instant,
}

impl MediatorServer {
    /// Binds `addr` (port 0 picks a free port).
    pub fn bind(addr: impl ToSocketAddrs) -> std::io::Result<MediatorServer> {
        let sock = UdpSocket::bind(addr)?;
        Ok(MediatorServer { sock, mediator: Mediator::new(), start: Instant::now() })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.sock.local_addr()
    }

    /// Serves requests until `stop` is set (checked at least every 50 ms).
    pub fn serve(&mut self, stop: &AtomicBool) -> std::io::Result<()> {
        self.sock.set_read_timeout(Some(Duration::from_millis(50)))?;
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            let (n, from) = match self.sock.recv_from(&mut buf) {
                Ok(x) => x,
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
                Err(e) => return Err(e),
            };
            let now = self.start.elapsed().as_millis() as Millis;
            let reply = match serde_json::from_slice::<WitnessRequest>(&buf[..n]) {
                Ok(req) => {
                    let r = self.mediator.handle(&req, now);
                    tracing::debug!(?req, ?r, "mediator");
                    r
                }
                Err(e) => WitnessReply::Error { error: format!("bad request: {e}") },
            };
            let bytes = serde_json::to_vec(&reply).map_err(std::io::Error::other)?;
            // A reply that cannot be sent is a lost datagram; the client times out.
            let _ = self.sock.send_to(&bytes, from);
        }
        Ok(())
    }
}

/// `tandem mediator --listen ADDR`: serves the witness protocol on UDP `addr` until the
/// process is stopped.
pub fn run_mediator(addr: &str) -> anyhow::Result<()> {
    let mut server = MediatorServer::bind(addr).map_err(|e| anyhow::anyhow!("mediator: cannot bind udp {addr}: {e}"))?;
    println!("mediator: listening on udp {}", server.local_addr()?);
    let stop = AtomicBool::new(false);
    server.serve(&stop)?;
    Ok(())
}

/// A [`WitnessClient`] talking to a [`MediatorServer`] over UDP.
#[derive(Debug)]
pub struct UdpWitness {
    sock: UdpSocket,
    server: SocketAddr,
    timeout: Duration,
    next_id: u64,
}

impl UdpWitness {
    /// A client of the mediator at `server`; each request waits at most `timeout`.
    pub fn new(server: SocketAddr, timeout: Duration) -> std::io::Result<UdpWitness> {
        let local: SocketAddr = if server.is_ipv4() { "0.0.0.0:0".parse().expect("addr") } else { "[::]:0".parse().expect("addr") };
        let sock = UdpSocket::bind(local)?;
        // Request ids start from a per-process value so replies to an earlier client on a
        // reused port are not mistaken for ours.
        let next_id = (std::process::id() as u64) << 32;
        Ok(UdpWitness { sock, server, timeout, next_id })
    }

    fn call(&mut self, op: WitnessOp) -> Result<WitnessReply, DenyReason> {
        self.next_id += 1;
        let id = self.next_id;
        let bytes = serde_json::to_vec(&WitnessRequest { id, op }).map_err(|_| DenyReason::Invalid)?;
        self.sock.send_to(&bytes, self.server).map_err(|_| DenyReason::Unreachable)?;
        let deadline = Instant::now() + self.timeout;
        let mut buf = [0u8; 2048];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(DenyReason::Unreachable);
            }
            self.sock.set_read_timeout(Some(left)).map_err(|_| DenyReason::Unreachable)?;
            let (n, from) = match self.sock.recv_from(&mut buf) {
                Ok(x) => x,
                Err(_) => return Err(DenyReason::Unreachable),
            };
            if from != self.server {
                continue;
            }
            let Ok(reply) = serde_json::from_slice::<WitnessReply>(&buf[..n]) else { continue };
            match reply {
                WitnessReply::Error { .. } => return Err(DenyReason::Invalid),
                r if r.id() == Some(id) => return Ok(r),
                _ => continue,
            }
        }
    }
}

impl WitnessClient for UdpWitness {
    fn acquire(&mut self, service: ServiceId, node: NodeId, lease_ms: Millis, sent_at: Millis) -> Grant {
        match self.call(WitnessOp::Acquire { service, node, lease_ms }) {
            Ok(WitnessReply::Grant { grant: Grant::Granted { epoch, .. }, .. }) => Grant::Granted { until: sent_at + lease_ms, epoch },
            Ok(WitnessReply::Grant { grant, .. }) => grant,
            Ok(_) => Grant::Denied { reason: DenyReason::Invalid, holder: None },
            Err(reason) => Grant::Denied { reason, holder: None },
        }
    }

    fn release(&mut self, service: ServiceId, node: NodeId) -> Result<(), DenyReason> {
        match self.call(WitnessOp::Release { service, node })? {
            WitnessReply::Done { result: None, .. } => Ok(()),
            WitnessReply::Done { result: Some(r), .. } => Err(r),
            _ => Err(DenyReason::Invalid),
        }
    }

    fn mark_copy(&mut self, service: ServiceId, node: NodeId, current: bool) -> Result<(), DenyReason> {
        match self.call(WitnessOp::MarkCopy { service, node, current })? {
            WitnessReply::Done { result: None, .. } => Ok(()),
            WitnessReply::Done { result: Some(r), .. } => Err(r),
            _ => Err(DenyReason::Invalid),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: ServiceId = ServiceId(7);
    const A: NodeId = NodeId(0);
    const B: NodeId = NodeId(1);

    fn granted(g: Grant) -> (Millis, u64) {
        match g {
            Grant::Granted { until, epoch } => (until, epoch),
            other => panic!("expected a grant, got {other:?}"),
        }
    }

    // Rule: a service without a record goes to the first asker, epoch 1, copy current.
    #[test]
    fn free_service_is_granted_to_first_asker() {
        let mut m = Mediator::new();
        assert_eq!(granted(m.acquire(S, A, 100, 400)), (500, 1));
        assert_eq!(m.record(S), Some(LeaseRecord { holder: A, expires_at: 500, epoch: 1, copy_current: true }));
    }

    // Rule: the holder renews at any time (also after expiry), epoch unchanged.
    #[test]
    fn holder_renews_even_after_expiry() {
        let mut m = Mediator::new();
        m.acquire(S, A, 0, 400);
        assert_eq!(granted(m.acquire(S, A, 200, 400)), (600, 1));
        assert_eq!(granted(m.acquire(S, A, 5000, 400)), (5400, 1));
    }

    // Rule: another node is refused while the lease runs (two servers would split the
    // service's writes).
    #[test]
    fn other_node_refused_while_lease_runs() {
        let mut m = Mediator::new();
        m.acquire(S, A, 0, 400);
        assert_eq!(m.acquire(S, B, 399, 400), Grant::Denied { reason: DenyReason::HeldByOther, holder: Some(A) });
    }

    // Rule: after expiry with the copy current, another node gets it and the epoch moves.
    #[test]
    fn other_node_granted_after_expiry_with_new_epoch() {
        let mut m = Mediator::new();
        m.acquire(S, A, 0, 400);
        assert_eq!(granted(m.acquire(S, B, 400, 400)), (800, 2));
        assert_eq!(m.record(S).map(|r| r.holder), Some(B));
        // The old holder is now the other node.
        assert_eq!(m.acquire(S, A, 401, 400), Grant::Denied { reason: DenyReason::HeldByOther, holder: Some(B) });
    }

    // Rule: a stale copy blocks takeover even after expiry (it would lose acknowledged
    // writes), but not the holder itself.
    #[test]
    fn stale_copy_blocks_takeover_not_holder() {
        let mut m = Mediator::new();
        m.acquire(S, A, 0, 400);
        assert_eq!(m.mark_copy(S, A, false), Ok(()));
        assert_eq!(m.acquire(S, B, 10_000, 400), Grant::Denied { reason: DenyReason::CopyStale, holder: Some(A) });
        assert_eq!(granted(m.acquire(S, A, 10_000, 400)), (10_400, 1));
        assert_eq!(m.mark_copy(S, A, true), Ok(()));
        assert_eq!(granted(m.acquire(S, B, 20_000, 400)), (20_400, 2));
    }

    // Rule: only the holder may mark or release.
    #[test]
    fn only_holder_marks_or_releases() {
        let mut m = Mediator::new();
        assert_eq!(m.mark_copy(S, A, false), Err(DenyReason::Invalid));
        assert_eq!(m.release(S, A, 0), Err(DenyReason::Invalid));
        m.acquire(S, A, 0, 400);
        assert_eq!(m.mark_copy(S, B, false), Err(DenyReason::HeldByOther));
        assert_eq!(m.release(S, B, 10), Err(DenyReason::HeldByOther));
        assert!(m.record(S).is_some_and(|r| r.copy_current && r.expires_at == 400));
    }

    // Rule: a release ends the lease at once, so the partner need not wait it out.
    #[test]
    fn release_frees_at_once() {
        let mut m = Mediator::new();
        m.acquire(S, A, 0, 400);
        assert_eq!(m.release(S, A, 50), Ok(()));
        assert_eq!(granted(m.acquire(S, B, 50, 400)), (450, 2));
    }

    // Rule: unknown nodes and zero leases are invalid.
    #[test]
    fn invalid_requests() {
        let mut m = Mediator::new();
        assert_eq!(m.acquire(S, NodeId(2), 0, 400), Grant::Denied { reason: DenyReason::Invalid, holder: None });
        assert_eq!(m.acquire(S, A, 0, 0), Grant::Denied { reason: DenyReason::Invalid, holder: None });
    }

    // The protocol is one JSON object per datagram; this pins its shape.
    #[test]
    fn wire_format() {
        let req = WitnessRequest { id: 3, op: WitnessOp::Acquire { service: S, node: B, lease_ms: 400 } };
        let text = serde_json::to_string(&req).expect("json");
        assert_eq!(text, r#"{"id":3,"op":"acquire","service":7,"node":1,"lease_ms":400}"#);
        assert_eq!(serde_json::from_str::<WitnessRequest>(&text).expect("parse"), req);
        let rep = WitnessReply::Done { id: 3, result: Some(DenyReason::CopyStale) };
        assert_eq!(serde_json::to_string(&rep).expect("json"), r#"{"reply":"done","id":3,"result":"copy_stale"}"#);
    }
}
