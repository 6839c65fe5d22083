//! The etcd witness: the [`Mediator`](super::witness::Mediator)'s rules kept in etcd v3, for
//! deployments with many pairs and an etcd cluster already there.
//!
//! One key per service, `/tandem/<cluster>/service/<id>`, holds an [`EtcdRecord`] (holder,
//! epoch, copy_current, and the id of the holder's etcd lease) as JSON. The key itself is
//! never attached to the lease: the record outlives the lease, as the mediator's record
//! outlives its `expires_at`.
//!
//! - Expiry is etcd's: a lease is live while etcd says so (`/v3/lease/timetolive` gives a
//!   TTL of -1 once it expired or was revoked). etcd measures TTLs on its leader's monotonic
//!   clock and refuses to renew an expired lease, so an expired lease never comes back. The
//!   two nodes' clocks are never compared.
//! - The holder renews with `/v3/lease/keepalive` (no write to the key). A holder whose lease
//!   expired gets a new lease written into the record (mediator rule: the holder renews even
//!   after expiry, epoch unchanged).
//! - A different node gets the service only if the recorded lease is gone AND the copy is
//!   current; it writes a record with itself as holder, epoch + 1, and its own new lease.
//! - Release revokes the holder's lease: the record then names a dead lease, which is
//!   exactly "expired".
//! - Every write is a transaction comparing the key's `mod_revision` (or, for the first
//!   record, that the key does not exist): of two nodes racing, at most one succeeds; the
//!   other re-reads and is refused.
//!
//! The lease TTL is `lease_ms` rounded up to whole seconds (and etcd raises it to its own
//! minimum, 1.5 election timeouts): etcd's lease always outlasts the holder's view
//! (`sent_at + lease_ms`), so the holder stops serving before etcd lets the other node in.
//! The cost is a coarser takeover: the other node waits for the TTL, not `lease_ms`.
//!
//! Transport: etcd's v3 JSON gateway (HTTP/1.1 POST, base64 keys and values) over a small
//! blocking client on [`TcpStream`]; endpoints are tried in turn; every call is bounded by
//! the client's timeout, and a timeout or connection failure is
//! [`DenyReason::Unreachable`]. See `docs/ha.md`, "etcd witness".

use super::types::{DenyReason, Grant, Millis, NodeId, ServiceId};
use super::witness::WitnessClient;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// A service's record in etcd (the value of its key, JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcdRecord {
    /// Last node granted the service (stays the holder after its lease expired until
    /// another node is granted it).
    pub holder: NodeId,
    /// Increments when the holder changes.
    pub epoch: u64,
    /// Whether the non-holder's mirror copy holds every acknowledged write.
    pub copy_current: bool,
    /// The holder's etcd lease; the holder's lease runs while etcd keeps this lease alive.
    pub lease: i64,
}

/// A record as read, with the revision a write must compare against.
#[derive(Debug, Clone, Copy)]
struct Read0 {
    rec: EtcdRecord,
    mod_revision: i64,
}

/// How often a compare-and-swap that lost a race is retried within one call (each retry
/// re-reads; a loser sees the winner's record and is refused, so two rounds normally do).
const CAS_ROUNDS: usize = 4;

/// A [`WitnessClient`] keeping the lease table in etcd v3 (see the module docs).
#[derive(Debug)]
pub struct EtcdWitness {
    endpoints: Vec<String>,
    prefix: String,
    timeout: Duration,
    /// Index of the endpoint that answered last; tried first.
    current: usize,
}

/// A configuration [`EtcdWitness::new`] refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EtcdConfigError {
    /// No endpoint given.
    #[error("etcd witness: no endpoint given")]
    NoEndpoint,
    /// An endpoint is not `host:port` or `http://host:port`.
    #[error("etcd witness: endpoint {0:?} is not host:port or http://host:port (https is not supported)")]
    BadEndpoint(String),
    /// The cluster name would make an odd key.
    #[error("etcd witness: cluster name {0:?} must be non-empty and contain no '/'")]
    BadCluster(String),
}

impl EtcdWitness {
    /// A client of the etcd cluster at `endpoints` (`host:port` or `http://host:port`, tried
    /// in turn), keeping the records of pair `cluster` under `/tandem/<cluster>/service/`.
    /// Every call blocks at most `timeout` in all (keep it well under the lease).
    pub fn new(endpoints: &[&str], cluster: &str, timeout: Duration) -> Result<EtcdWitness, EtcdConfigError> {
        if endpoints.is_empty() {
            return Err(EtcdConfigError::NoEndpoint);
        }
        if cluster.is_empty() || cluster.contains('/') {
            return Err(EtcdConfigError::BadCluster(cluster.to_string()));
        }
        let mut eps = Vec::new();
        for e in endpoints {
            let hostport = e.strip_prefix("http://").unwrap_or(e).trim_end_matches('/');
            if hostport.is_empty() || hostport.contains('/') || hostport.contains("://") || !hostport.contains(':') {
                return Err(EtcdConfigError::BadEndpoint(e.to_string()));
            }
            eps.push(hostport.to_string());
        }
        Ok(EtcdWitness { endpoints: eps, prefix: format!("/tandem/{cluster}/service/"), timeout, current: 0 })
    }

    /// The etcd key of `service`.
    pub fn key(&self, service: ServiceId) -> String {
        format!("{}{}", self.prefix, service.0)
    }

    /// The record of `service` as etcd has it now (`None`: never granted).
    pub fn record(&mut self, service: ServiceId) -> Result<Option<EtcdRecord>, DenyReason> {
        let deadline = Instant::now() + self.timeout;
        Ok(self.read(service, deadline)?.map(|r| r.rec))
    }

    /// Whether etcd's lease `lease` is still alive (a TTL of -1: expired or revoked).
    pub fn lease_alive(&mut self, lease: i64) -> Result<bool, DenyReason> {
        let deadline = Instant::now() + self.timeout;
        self.alive(lease, deadline)
    }

    // ------------------------------------------------------------------ operations

    fn ttl_secs(lease_ms: Millis) -> i64 {
        lease_ms.div_ceil(1000).max(1) as i64
    }

    fn read(&mut self, service: ServiceId, deadline: Instant) -> Result<Option<Read0>, DenyReason> {
        let key = b64_encode(self.key(service).as_bytes());
        let v = self.post("/v3/kv/range", &json!({ "key": key }), deadline)?;
        let Some(kv) = v.get("kvs").and_then(|k| k.as_array()).and_then(|a| a.first()) else {
            return Ok(None);
        };
        let value = kv.get("value").and_then(|x| x.as_str()).unwrap_or("");
        let bytes = b64_decode(value).ok_or(DenyReason::Invalid)?;
        let rec: EtcdRecord = serde_json::from_slice(&bytes).map_err(|_| DenyReason::Invalid)?;
        Ok(Some(Read0 { rec, mod_revision: int_field(kv, "mod_revision") }))
    }

    /// Writes `rec` if the key is unchanged since `seen` (`None`: if it does not exist).
    /// `Ok(false)`: somebody else wrote first.
    fn cas(&mut self, service: ServiceId, seen: Option<i64>, rec: &EtcdRecord, deadline: Instant) -> Result<bool, DenyReason> {
        let key = b64_encode(self.key(service).as_bytes());
        let value = b64_encode(&serde_json::to_vec(rec).map_err(|_| DenyReason::Invalid)?);
        let compare = match seen {
            Some(rev) => json!({ "key": key, "target": "MOD", "result": "EQUAL", "mod_revision": rev.to_string() }),
            None => json!({ "key": key, "target": "CREATE", "result": "EQUAL", "create_revision": "0" }),
        };
        let body = json!({
            "compare": [compare],
            "success": [{ "request_put": { "key": key, "value": value } }],
            "failure": [],
        });
        let v = self.post("/v3/kv/txn", &body, deadline)?;
        Ok(v.get("succeeded").and_then(|s| s.as_bool()).unwrap_or(false))
    }

    fn grant_lease(&mut self, lease_ms: Millis, deadline: Instant) -> Result<i64, DenyReason> {
        let v = self.post("/v3/lease/grant", &json!({ "TTL": Self::ttl_secs(lease_ms) }), deadline)?;
        let id = int_field(&v, "ID");
        if id == 0 || int_field(&v, "TTL") <= 0 {
            return Err(DenyReason::Unreachable);
        }
        Ok(id)
    }

    /// Renews `lease`; `Ok(false)` if etcd says it expired (or was revoked).
    fn keepalive(&mut self, lease: i64, deadline: Instant) -> Result<bool, DenyReason> {
        let v = self.post("/v3/lease/keepalive", &json!({ "ID": lease.to_string() }), deadline)?;
        let r = v.get("result").unwrap_or(&v);
        Ok(int_field(r, "TTL") > 0)
    }

    fn alive(&mut self, lease: i64, deadline: Instant) -> Result<bool, DenyReason> {
        // A TTL of 0 is a live lease with less than a second left (etcd truncates);
        // only -1 means gone.
        let v = self.post("/v3/lease/timetolive", &json!({ "ID": lease.to_string() }), deadline)?;
        Ok(int_field(&v, "TTL") >= 0)
    }

    fn revoke(&mut self, lease: i64, deadline: Instant) -> Result<(), DenyReason> {
        match self.post("/v3/lease/revoke", &json!({ "ID": lease.to_string() }), deadline) {
            Ok(_) => Ok(()),
            // Already gone (expired, revoked): that is what was asked.
            Err(DenyReason::Invalid) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn do_acquire(&mut self, service: ServiceId, node: NodeId, lease_ms: Millis, deadline: Instant) -> Result<u64, Grant> {
        let deny = |reason, holder| Grant::Denied { reason, holder };
        let fail = |reason| Grant::Denied { reason, holder: None };
        for _ in 0..CAS_ROUNDS {
            match self.read(service, deadline).map_err(fail)? {
                None => {
                    let lease = self.grant_lease(lease_ms, deadline).map_err(fail)?;
                    let rec = EtcdRecord { holder: node, epoch: 1, copy_current: true, lease };
                    if self.cas(service, None, &rec, deadline).map_err(fail)? {
                        return Ok(1);
                    }
                    let _ = self.revoke(lease, deadline);
                }
                Some(Read0 { rec, mod_revision }) if rec.holder == node => {
                    // Renewal. A live lease stays ours (nobody else can take the service
                    // while it lives, and an expired lease cannot be renewed).
                    if rec.lease != 0 && self.keepalive(rec.lease, deadline).map_err(fail)? {
                        return Ok(rec.epoch);
                    }
                    // Expired: the holder renews anyway (epoch unchanged) with a new lease,
                    // unless somebody else got in first.
                    let lease = self.grant_lease(lease_ms, deadline).map_err(fail)?;
                    if self.cas(service, Some(mod_revision), &EtcdRecord { lease, ..rec }, deadline).map_err(fail)? {
                        return Ok(rec.epoch);
                    }
                    let _ = self.revoke(lease, deadline);
                }
                Some(Read0 { rec, mod_revision }) => {
                    if rec.lease != 0 && self.alive(rec.lease, deadline).map_err(fail)? {
                        return Err(deny(DenyReason::HeldByOther, Some(rec.holder)));
                    }
                    if !rec.copy_current {
                        return Err(deny(DenyReason::CopyStale, Some(rec.holder)));
                    }
                    let lease = self.grant_lease(lease_ms, deadline).map_err(fail)?;
                    let new = EtcdRecord { holder: node, epoch: rec.epoch + 1, copy_current: rec.copy_current, lease };
                    if self.cas(service, Some(mod_revision), &new, deadline).map_err(fail)? {
                        return Ok(new.epoch);
                    }
                    let _ = self.revoke(lease, deadline);
                }
            }
        }
        // Lost every race: somebody else keeps writing the record.
        Err(deny(DenyReason::HeldByOther, None))
    }

    fn do_release(&mut self, service: ServiceId, node: NodeId, deadline: Instant) -> Result<(), DenyReason> {
        let r = self.read(service, deadline)?.ok_or(DenyReason::Invalid)?;
        if r.rec.holder != node {
            return Err(DenyReason::HeldByOther);
        }
        // Revoking the holder's lease ends it now; the record then names a dead lease. If
        // the lease was already gone, another node may have taken over since the read:
        // then it is not ours to release.
        if r.rec.lease != 0 {
            self.revoke(r.rec.lease, deadline)?;
        }
        match self.read(service, deadline)? {
            Some(now) if now.rec.holder != node => Err(DenyReason::HeldByOther),
            _ => Ok(()),
        }
    }

    fn do_mark(&mut self, service: ServiceId, node: NodeId, current: bool, deadline: Instant) -> Result<(), DenyReason> {
        for _ in 0..CAS_ROUNDS {
            let r = self.read(service, deadline)?.ok_or(DenyReason::Invalid)?;
            if r.rec.holder != node {
                return Err(DenyReason::HeldByOther);
            }
            if r.rec.copy_current == current {
                return Ok(());
            }
            if self.cas(service, Some(r.mod_revision), &EtcdRecord { copy_current: current, ..r.rec }, deadline)? {
                return Ok(());
            }
        }
        Err(DenyReason::HeldByOther)
    }

    // ------------------------------------------------------------------ transport

    /// POSTs `body` to `path` on the endpoints in turn (starting with the last that
    /// answered) until one answers or `deadline` passes. A 4xx status is
    /// [`DenyReason::Invalid`], anything else that fails is [`DenyReason::Unreachable`].
    fn post(&mut self, path: &str, body: &Value, deadline: Instant) -> Result<Value, DenyReason> {
        let body = serde_json::to_vec(body).map_err(|_| DenyReason::Invalid)?;
        let n = self.endpoints.len();
        for i in 0..n {
            if Instant::now() >= deadline {
                break;
            }
            let idx = (self.current + i) % n;
            match http_post(&self.endpoints[idx], path, &body, deadline) {
                Ok((status, reply)) => {
                    self.current = idx;
                    if !(200..300).contains(&status) {
                        tracing::debug!(endpoint = %self.endpoints[idx], path, status, "etcd refused");
                        // 4xx: etcd understood and refused (a lease not found, say); 5xx: it
                        // could not decide (no leader, timeout), as good as unreachable.
                        return Err(if (400..500).contains(&status) { DenyReason::Invalid } else { DenyReason::Unreachable });
                    }
                    return serde_json::from_slice(&reply).map_err(|_| DenyReason::Unreachable);
                }
                Err(e) => tracing::debug!(endpoint = %self.endpoints[idx], path, error = %e, "etcd unreachable"),
            }
        }
        Err(DenyReason::Unreachable)
    }
}

impl WitnessClient for EtcdWitness {
    fn acquire(&mut self, service: ServiceId, node: NodeId, lease_ms: Millis, sent_at: Millis) -> Grant {
        if node.0 > 1 || lease_ms == 0 {
            return Grant::Denied { reason: DenyReason::Invalid, holder: None };
        }
        let deadline = Instant::now() + self.timeout;
        match self.do_acquire(service, node, lease_ms, deadline) {
            Ok(epoch) => Grant::Granted { until: sent_at + lease_ms, epoch },
            Err(denied) => denied,
        }
    }

    fn release(&mut self, service: ServiceId, node: NodeId) -> Result<(), DenyReason> {
        let deadline = Instant::now() + self.timeout;
        self.do_release(service, node, deadline)
    }

    fn mark_copy(&mut self, service: ServiceId, node: NodeId, current: bool) -> Result<(), DenyReason> {
        let deadline = Instant::now() + self.timeout;
        self.do_mark(service, node, current, deadline)
    }
}

/// An int64 field of a gateway reply: JSON strings (`"7"`), numbers, or absent (zero).
fn int_field(v: &Value, name: &str) -> i64 {
    match v.get(name) {
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

fn io_err(text: &str) -> std::io::Error {
    std::io::Error::other(text.to_string())
}

/// One HTTP/1.1 POST (`Connection: close`), bounded by `deadline`: the status and the body
/// (chunked or `Content-Length`).
fn http_post(hostport: &str, path: &str, body: &[u8], deadline: Instant) -> std::io::Result<(u16, Vec<u8>)> {
    let left = |d: Instant| {
        let l = d.saturating_duration_since(Instant::now());
        if l.is_zero() {
            Err(std::io::Error::from(std::io::ErrorKind::TimedOut))
        } else {
            Ok(l)
        }
    };
    let addrs: Vec<SocketAddr> = hostport.to_socket_addrs()?.collect();
    let addr = addrs.first().ok_or_else(|| io_err("no address"))?;
    let mut sock = TcpStream::connect_timeout(addr, left(deadline)?)?;
    sock.set_nodelay(true)?;
    sock.set_write_timeout(Some(left(deadline)?))?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {hostport}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut req = head.into_bytes();
    req.extend_from_slice(body);
    sock.write_all(&req)?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        sock.set_read_timeout(Some(left(deadline)?))?;
        let n = sock.read(&mut buf)?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        if raw.len() > 1 << 20 {
            return Err(io_err("reply too large"));
        }
        if let Some(done) = parse_reply(&raw)? {
            return Ok(done);
        }
    }
    parse_reply(&raw)?.ok_or_else(|| io_err("connection closed mid-reply"))
}

/// Parses a complete HTTP reply; `Ok(None)` if more bytes are needed.
fn parse_reply(raw: &[u8]) -> std::io::Result<Option<(u16, Vec<u8>)>> {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else { return Ok(None) };
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| io_err("bad header"))?;
    let mut lines = head.split("\r\n");
    let status: u16 =
        lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).ok_or_else(|| io_err("bad status line"))?;
    let mut length = None;
    let mut chunked = false;
    for l in lines {
        let Some((k, v)) = l.split_once(':') else { continue };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        if k == "content-length" {
            length = Some(v.parse::<usize>().map_err(|_| io_err("bad content-length"))?);
        } else if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
            chunked = true;
        }
    }
    let body = &raw[end + 4..];
    if chunked {
        let mut out = Vec::new();
        let mut rest = body;
        loop {
            let Some(le) = rest.windows(2).position(|w| w == b"\r\n") else { return Ok(None) };
            let size_text = std::str::from_utf8(&rest[..le]).map_err(|_| io_err("bad chunk"))?;
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16).map_err(|_| io_err("bad chunk"))?;
            if size == 0 {
                return Ok(Some((status, out)));
            }
            let start = le + 2;
            if rest.len() < start + size + 2 {
                return Ok(None);
            }
            out.extend_from_slice(&rest[start..start + size]);
            rest = &rest[start + size + 2..];
        }
    }
    match length {
        Some(n) if body.len() >= n => Ok(Some((status, body[..n].to_vec()))),
        Some(_) => Ok(None),
        // Neither: the body runs to the end of the connection.
        None => Ok(None),
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (how the gateway carries keys and values).
fn b64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let b = [c[0], c.get(1).copied().unwrap_or(0), c.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= c.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn b64_decode(text: &str) -> Option<Vec<u8>> {
    let t = text.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(t.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for &ch in t {
        let v = B64.iter().position(|&b| b == ch)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip() {
        assert_eq!(b64_encode(b"foo"), "Zm9v");
        assert_eq!(b64_encode(b"fo"), "Zm8=");
        assert_eq!(b64_encode(b"f"), "Zg==");
        assert_eq!(b64_encode(b""), "");
        for n in 0..40u8 {
            let data: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37).wrapping_add(n)).collect();
            assert_eq!(b64_decode(&b64_encode(&data)).as_deref(), Some(&data[..]));
        }
        assert_eq!(b64_decode("Zm9v!"), None);
    }

    #[test]
    fn http_reply_parsing() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(parse_reply(plain).expect("ok"), Some((200, b"{}".to_vec())));
        assert_eq!(parse_reply(&plain[..plain.len() - 1]).expect("ok"), None);
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n";
        assert_eq!(parse_reply(chunked).expect("ok"), Some((200, b"{\"a\":1}".to_vec())));
        assert_eq!(parse_reply(&chunked[..60]).expect("ok"), None);
        let err = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(parse_reply(err).expect("ok"), Some((404, vec![])));
    }

    #[test]
    fn int64_fields_as_strings_numbers_or_absent() {
        let v = json!({"a": "7", "b": -1, "c": "x"});
        assert_eq!((int_field(&v, "a"), int_field(&v, "b"), int_field(&v, "c"), int_field(&v, "d")), (7, -1, 0, 0));
    }

    #[test]
    fn config_checks() {
        let t = Duration::from_millis(100);
        assert_eq!(EtcdWitness::new(&[], "c", t).err(), Some(EtcdConfigError::NoEndpoint));
        assert!(matches!(EtcdWitness::new(&["https://x:1"], "c", t), Err(EtcdConfigError::BadEndpoint(_))));
        assert!(matches!(EtcdWitness::new(&["x"], "c", t), Err(EtcdConfigError::BadEndpoint(_))));
        assert!(matches!(EtcdWitness::new(&["x:1"], "a/b", t), Err(EtcdConfigError::BadCluster(_))));
        let w = EtcdWitness::new(&["http://127.0.0.1:2379/", "127.0.0.1:2380"], "pair1", t).expect("valid");
        assert_eq!(w.key(ServiceId(7)), "/tandem/pair1/service/7");
        assert_eq!(w.endpoints, vec!["127.0.0.1:2379".to_string(), "127.0.0.1:2380".to_string()]);
        assert_eq!((EtcdWitness::ttl_secs(400), EtcdWitness::ttl_secs(1000), EtcdWitness::ttl_secs(1001)), (1, 1, 2));
    }
}
