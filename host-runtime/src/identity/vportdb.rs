//! The virtual port database: which node holds which service's identities.
//!
//! One entry per service records the holder, the stage of the holder's claim or release,
//! the ownership epoch of the lease it acted under, and the identities themselves (FC
//! port and node names, MAC, addresses), so a node that restarts after a crash knows
//! what it had claimed even if its configuration changed since. The database is pure
//! data: [`super::Identities`] updates it around each claim and release, and the runtime
//! mirrors its [`VportDb::encode`]d form (at most [`VportDb::MAX_ENCODED`] bytes, one
//! tagged page) to the partner.
//!
//! Rules: an update under a lower epoch than the recorded one is refused (a stale
//! holder), and so is a claim under the same epoch while the other node holds the entry;
//! a higher epoch (the witness granted the lease anew) takes the entry over. Two copies
//! (this node's and the partner's mirrored one) are combined with [`VportDb::merge`],
//! which keeps the newer entry of each service by (epoch, seq).

use super::model::{IpPrefix, MacAddr, ServiceIdentity, Wwn};
use crate::ha::{NodeId, ServiceId};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Where the holder of an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HoldState {
    /// No node holds the identities.
    Free,
    /// The holder started claiming; some identities may already be up.
    Claiming,
    /// The holder has every identity up.
    Held,
    /// The holder started releasing; some identities may still be up.
    Releasing,
}

impl HoldState {
    fn code(self) -> u8 {
        match self {
            HoldState::Free => 0,
            HoldState::Claiming => 1,
            HoldState::Held => 2,
            HoldState::Releasing => 3,
        }
    }

    fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            0 => HoldState::Free,
            1 => HoldState::Claiming,
            2 => HoldState::Held,
            3 => HoldState::Releasing,
            _ => return None,
        })
    }
}

/// The port and node name of one virtual port (a virtual port database entry's name
/// fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VportNames {
    /// World Wide Port Name.
    pub wwpn: Wwn,
    /// World Wide Node Name.
    pub wwnn: Wwn,
}

/// One service's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VportEntry {
    /// The node that holds (or is claiming or releasing) the identities; `None` when free.
    pub holder: Option<NodeId>,
    /// The stage.
    pub state: HoldState,
    /// Ownership epoch of the lease the holder acted under.
    pub epoch: u64,
    /// Bumped on every change of the entry, so copies can be ordered within an epoch.
    pub seq: u64,
    /// The service's MAC, if it has its own.
    pub mac: Option<MacAddr>,
    /// Addresses.
    pub ips: Vec<IpPrefix>,
    /// FC virtual ports.
    pub ports: Vec<VportNames>,
}

/// Why the database refused an update.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VportDbError {
    /// The update's epoch is older than the recorded one.
    #[error("service {service}: epoch {given} is older than the recorded epoch {recorded}")]
    Stale {
        /// Service.
        service: u32,
        /// Epoch of the update.
        given: u64,
        /// Epoch recorded.
        recorded: u64,
    },
    /// The other node holds the service under the same epoch.
    #[error("service {service}: held by node {holder} under epoch {epoch}")]
    HeldByOther {
        /// Service.
        service: u32,
        /// Holder.
        holder: u8,
        /// Epoch.
        epoch: u64,
    },
    /// A claim or release was finished by a node that did not start it.
    #[error("service {service}: node {node} is not claiming or releasing it")]
    NotHolder {
        /// Service.
        service: u32,
        /// Node.
        node: u8,
    },
    /// More than one page, or more than 255 addresses or ports in one entry.
    #[error("the database does not fit: {0}")]
    TooLarge(String),
    /// The bytes are not a database.
    #[error("not a virtual port database: {0}")]
    Corrupt(String),
}

/// The virtual port database. See the module documentation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VportDb {
    entries: BTreeMap<ServiceId, VportEntry>,
}

const MAGIC: &[u8; 4] = b"TVPD";
const VERSION: u16 = 1;
const HEADER: usize = 4 + 2 + 2 + 4 + 4;
const NO_HOLDER: u8 = 0xff;

impl VportDb {
    /// The largest encoding: one 4 KiB page.
    pub const MAX_ENCODED: usize = 4096;

    /// An empty database.
    pub fn new() -> Self {
        Self::default()
    }

    /// The entry of `service`.
    pub fn entry(&self, service: ServiceId) -> Option<&VportEntry> {
        self.entries.get(&service)
    }

    /// Every entry, by service.
    pub fn entries(&self) -> impl Iterator<Item = (ServiceId, &VportEntry)> {
        self.entries.iter().map(|(s, e)| (*s, e))
    }

    /// The node holding `service`'s identities (claiming, holding or releasing them).
    pub fn holder(&self, service: ServiceId) -> Option<NodeId> {
        self.entries.get(&service).and_then(|e| e.holder)
    }

    /// Services whose claim or release `node` started and did not finish (it crashed or
    /// the step failed): the work to retry, with the recorded identities.
    pub fn unfinished(&self, node: NodeId) -> Vec<(ServiceId, HoldState)> {
        self.entries
            .iter()
            .filter(|(_, e)| e.holder == Some(node) && matches!(e.state, HoldState::Claiming | HoldState::Releasing))
            .map(|(s, e)| (*s, e.state))
            .collect()
    }

    /// Records that `node` starts claiming `id` under `epoch`. Refused under an older
    /// epoch, or under the same epoch while the other node holds the entry.
    pub fn begin_claim(&mut self, id: &ServiceIdentity, node: NodeId, epoch: u64) -> Result<(), VportDbError> {
        let service = id.service;
        if id.ips.len() > 255 || id.fc.len() > 255 {
            return Err(VportDbError::TooLarge(format!("service {}: more than 255 addresses or ports", service.0)));
        }
        let seq = match self.entries.get(&service) {
            Some(e) => {
                if epoch < e.epoch {
                    return Err(VportDbError::Stale { service: service.0, given: epoch, recorded: e.epoch });
                }
                if let Some(h) = e.holder {
                    if h != node && e.state != HoldState::Free && epoch == e.epoch {
                        return Err(VportDbError::HeldByOther { service: service.0, holder: h.0, epoch });
                    }
                }
                e.seq + 1
            }
            None => 1,
        };
        let state = match self.entries.get(&service) {
            // Claiming again what this node already holds under this epoch stays Held.
            Some(e) if e.holder == Some(node) && e.epoch == epoch && e.state == HoldState::Held => HoldState::Held,
            _ => HoldState::Claiming,
        };
        let entry = VportEntry {
            holder: Some(node),
            state,
            epoch,
            seq,
            mac: id.mac,
            ips: id.ips.clone(),
            ports: id.fc.iter().map(|f| VportNames { wwpn: f.wwpn, wwnn: f.wwnn }).collect(),
        };
        self.entries.insert(service, entry);
        Ok(())
    }

    /// Records that `node` has every identity of `service` up.
    pub fn finish_claim(&mut self, service: ServiceId, node: NodeId) -> Result<(), VportDbError> {
        match self.entries.get_mut(&service) {
            Some(e) if e.holder == Some(node) && matches!(e.state, HoldState::Claiming | HoldState::Held) => {
                if e.state != HoldState::Held {
                    e.state = HoldState::Held;
                    e.seq += 1;
                }
                Ok(())
            }
            _ => Err(VportDbError::NotHolder { service: service.0, node: node.0 }),
        }
    }

    /// Records that `node` starts releasing `service`. Returns `false` (and changes
    /// nothing) when `node` does not hold it: there is nothing of this node's to release
    /// according to the database.
    pub fn begin_release(&mut self, service: ServiceId, node: NodeId) -> bool {
        match self.entries.get_mut(&service) {
            Some(e) if e.holder == Some(node) && e.state != HoldState::Free => {
                if e.state != HoldState::Releasing {
                    e.state = HoldState::Releasing;
                    e.seq += 1;
                }
                true
            }
            _ => false,
        }
    }

    /// Records that `node` released every identity of `service`; the entry is free (its
    /// epoch stays, so an older holder still cannot claim it).
    pub fn finish_release(&mut self, service: ServiceId, node: NodeId) -> Result<(), VportDbError> {
        match self.entries.get_mut(&service) {
            Some(e) if e.holder == Some(node) && e.state == HoldState::Releasing => {
                e.state = HoldState::Free;
                e.holder = None;
                e.seq += 1;
                Ok(())
            }
            Some(e) if e.state == HoldState::Free => Ok(()),
            _ => Err(VportDbError::NotHolder { service: service.0, node: node.0 }),
        }
    }

    /// Combines another copy into this one: per service, the entry with the larger
    /// (epoch, seq) wins. Returns how many entries changed here.
    pub fn merge(&mut self, other: &VportDb) -> usize {
        let mut changed = 0;
        for (s, theirs) in &other.entries {
            let take = match self.entries.get(s) {
                Some(mine) => (theirs.epoch, theirs.seq) > (mine.epoch, mine.seq),
                None => true,
            };
            if take {
                self.entries.insert(*s, theirs.clone());
                changed += 1;
            }
        }
        changed
    }

    /// The encoded length.
    pub fn encoded_len(&self) -> usize {
        HEADER + self.entries.values().map(|e| 4 + 1 + 1 + 8 + 8 + 7 + 1 + e.ips.len() * 18 + 1 + e.ports.len() * 16).sum::<usize>()
    }

    /// Encodes the database (little-endian, CRC32C over everything after the header).
    ///
    /// Layout: magic `TVPD`, version u16, entry count u16, body length u32, CRC32C u32;
    /// then per entry: service u32, holder u8 (0xff: none), state u8, epoch u64, seq
    /// u64, MAC flag u8 + 6 bytes, address count u8 and per address family u8 (4 or 6),
    /// prefix u8, 16 address bytes; port count u8 and per port WWPN u64, WWNN u64.
    pub fn encode(&self) -> Result<Vec<u8>, VportDbError> {
        let len = self.encoded_len();
        if len > Self::MAX_ENCODED {
            return Err(VportDbError::TooLarge(format!("{len} bytes, more than {}", Self::MAX_ENCODED)));
        }
        let count = u16::try_from(self.entries.len()).map_err(|_| VportDbError::TooLarge("too many entries".into()))?;
        let mut body = Vec::with_capacity(len - HEADER);
        for (s, e) in &self.entries {
            if e.ips.len() > 255 || e.ports.len() > 255 {
                return Err(VportDbError::TooLarge(format!("service {}: more than 255 addresses or ports", s.0)));
            }
            body.extend_from_slice(&s.0.to_le_bytes());
            body.push(e.holder.map_or(NO_HOLDER, |n| n.0));
            body.push(e.state.code());
            body.extend_from_slice(&e.epoch.to_le_bytes());
            body.extend_from_slice(&e.seq.to_le_bytes());
            body.push(e.mac.is_some() as u8);
            body.extend_from_slice(&e.mac.map_or([0; 6], |m| m.0));
            body.push(e.ips.len() as u8);
            for p in &e.ips {
                let (fam, bytes) = match p.addr {
                    IpAddr::V4(v) => {
                        let mut b = [0u8; 16];
                        b[..4].copy_from_slice(&v.octets());
                        (4u8, b)
                    }
                    IpAddr::V6(v) => (6u8, v.octets()),
                };
                body.push(fam);
                body.push(p.prefix);
                body.extend_from_slice(&bytes);
            }
            body.push(e.ports.len() as u8);
            for p in &e.ports {
                body.extend_from_slice(&p.wwpn.0.to_le_bytes());
                body.extend_from_slice(&p.wwnn.0.to_le_bytes());
            }
        }
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
        out.extend_from_slice(&body);
        debug_assert_eq!(out.len(), len);
        Ok(out)
    }

    /// Decodes [`VportDb::encode`]'s output; trailing bytes (the rest of a page) are
    /// ignored. Checks magic, version, length, CRC and every field.
    pub fn decode(buf: &[u8]) -> Result<Self, VportDbError> {
        let bad = |m: &str| VportDbError::Corrupt(m.to_string());
        if buf.len() < HEADER {
            return Err(bad("shorter than the header"));
        }
        if &buf[..4] != MAGIC {
            return Err(bad("bad magic"));
        }
        let version = u16::from_le_bytes([buf[4], buf[5]]);
        if version != VERSION {
            return Err(VportDbError::Corrupt(format!("version {version}, expected {VERSION}")));
        }
        let count = u16::from_le_bytes([buf[6], buf[7]]) as usize;
        let body_len = u32::from_le_bytes(buf[8..12].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(buf[12..16].try_into().expect("4 bytes"));
        let body = buf.get(HEADER..HEADER + body_len).ok_or_else(|| bad("body runs past the buffer"))?;
        if crc32c::crc32c(body) != crc {
            return Err(bad("CRC mismatch"));
        }
        let mut r = Reader { b: body, at: 0 };
        let mut entries = BTreeMap::new();
        for _ in 0..count {
            let service = ServiceId(r.u32()?);
            let holder = match r.u8()? {
                NO_HOLDER => None,
                n => Some(NodeId(n)),
            };
            let state = HoldState::from_code(r.u8()?).ok_or_else(|| bad("unknown state"))?;
            if (state == HoldState::Free) != holder.is_none() {
                return Err(bad("holder and state disagree"));
            }
            let epoch = r.u64()?;
            let seq = r.u64()?;
            let has_mac = r.u8()?;
            let mac_bytes: [u8; 6] = r.take(6)?.try_into().expect("6 bytes");
            let mac = match has_mac {
                0 => None,
                1 => Some(MacAddr(mac_bytes)),
                _ => return Err(bad("bad MAC flag")),
            };
            let n_ips = r.u8()? as usize;
            let mut ips = Vec::with_capacity(n_ips);
            for _ in 0..n_ips {
                let fam = r.u8()?;
                let prefix = r.u8()?;
                let a: [u8; 16] = r.take(16)?.try_into().expect("16 bytes");
                let addr = match fam {
                    4 if prefix <= 32 => IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])),
                    6 if prefix <= 128 => IpAddr::V6(Ipv6Addr::from(a)),
                    _ => return Err(bad("bad address family or prefix")),
                };
                ips.push(IpPrefix { addr, prefix });
            }
            let n_ports = r.u8()? as usize;
            let mut ports = Vec::with_capacity(n_ports);
            for _ in 0..n_ports {
                ports.push(VportNames { wwpn: Wwn(r.u64()?), wwnn: Wwn(r.u64()?) });
            }
            if entries.insert(service, VportEntry { holder, state, epoch, seq, mac, ips, ports }).is_some() {
                return Err(bad("a service appears twice"));
            }
        }
        if r.at != body.len() {
            return Err(bad("bytes left after the last entry"));
        }
        Ok(VportDb { entries })
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], VportDbError> {
        let s = self.b.get(self.at..self.at + n).ok_or_else(|| VportDbError::Corrupt("entry runs past the body".into()))?;
        self.at += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, VportDbError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, VportDbError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64, VportDbError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::model::{FcSection, IdentitySection};

    const A: NodeId = NodeId(0);
    const B: NodeId = NodeId(1);

    fn ident(service: u32) -> ServiceIdentity {
        IdentitySection {
            ips: vec![format!("192.0.2.{}/24", 10 + service), format!("2001:db8::{service:x}/64")],
            interface: Some("eth0".into()),
            mac: Some(format!("02:00:00:00:00:{service:02x}")),
            macvlan: None,
            fc: vec![FcSection {
                host: "host5".into(),
                wwpn: format!("21000000000000{service:02x}"),
                wwnn: format!("20000000000000{service:02x}"),
            }],
        }
        .resolve(ServiceId(service))
        .unwrap()
    }

    #[test]
    fn claim_release_cycle() {
        let mut db = VportDb::new();
        let s = ServiceId(3);
        db.begin_claim(&ident(3), A, 1).unwrap();
        assert_eq!(db.entry(s).unwrap().state, HoldState::Claiming);
        assert_eq!(db.unfinished(A), vec![(s, HoldState::Claiming)]);
        db.finish_claim(s, A).unwrap();
        assert_eq!(db.holder(s), Some(A));
        assert!(db.unfinished(A).is_empty());
        // Claiming again while held stays held (idempotent).
        db.begin_claim(&ident(3), A, 1).unwrap();
        assert_eq!(db.entry(s).unwrap().state, HoldState::Held);
        // B cannot claim under the same epoch, nor under an older one.
        assert!(matches!(db.begin_claim(&ident(3), B, 1), Err(VportDbError::HeldByOther { holder: 0, .. })));
        assert!(matches!(db.begin_claim(&ident(3), B, 0), Err(VportDbError::Stale { .. })));
        assert!(!db.begin_release(s, B));
        assert!(db.begin_release(s, A));
        assert!(db.begin_release(s, A), "releasing twice is fine");
        assert_eq!(db.unfinished(A), vec![(s, HoldState::Releasing)]);
        db.finish_release(s, A).unwrap();
        db.finish_release(s, A).unwrap();
        assert_eq!(db.holder(s), None);
        assert!(!db.begin_release(s, A), "nothing held, nothing to release");
        // A takeover under a new epoch.
        db.begin_claim(&ident(3), B, 2).unwrap();
        db.finish_claim(s, B).unwrap();
        assert_eq!(db.holder(s), Some(B));
        assert!(matches!(db.finish_claim(s, A), Err(VportDbError::NotHolder { .. })));
    }

    #[test]
    fn takeover_under_newer_epoch_while_other_holds() {
        // The partner crashed holding the service; the witness granted a new epoch.
        let mut db = VportDb::new();
        db.begin_claim(&ident(1), A, 4).unwrap();
        db.finish_claim(ServiceId(1), A).unwrap();
        db.begin_claim(&ident(1), B, 5).unwrap();
        assert_eq!(db.holder(ServiceId(1)), Some(B));
        // The old holder, back, cannot finish or re-claim under its old epoch.
        assert!(db.finish_claim(ServiceId(1), A).is_err());
        assert!(matches!(db.begin_claim(&ident(1), A, 4), Err(VportDbError::Stale { .. })));
    }

    #[test]
    fn encode_decode_roundtrip_and_page_fit() {
        let mut db = VportDb::new();
        for s in 1..=20 {
            db.begin_claim(&ident(s), if s % 2 == 0 { A } else { B }, s as u64).unwrap();
            if s % 3 == 0 {
                db.finish_claim(ServiceId(s), if s % 2 == 0 { A } else { B }).unwrap();
            }
        }
        assert!(db.begin_release(ServiceId(4), A));
        db.finish_release(ServiceId(4), A).unwrap();
        let bytes = db.encode().unwrap();
        assert_eq!(bytes.len(), db.encoded_len());
        assert!(bytes.len() <= VportDb::MAX_ENCODED, "{} bytes", bytes.len());
        let mut page = bytes.clone();
        page.resize(4096, 0);
        assert_eq!(VportDb::decode(&page).unwrap(), db);
        // Every single-byte corruption inside the encoding is caught.
        for i in 0..bytes.len() {
            let mut c = bytes.clone();
            c[i] ^= 0x40;
            assert!(VportDb::decode(&c).is_err(), "flip at {i} not detected");
        }
        assert!(VportDb::decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(VportDb::decode(&[0u8; 4096]).is_err());
    }

    #[test]
    fn too_large_is_refused() {
        let mut db = VportDb::new();
        for s in 1..=200 {
            db.begin_claim(&ident(s % 250 + 1), A, 1).ok();
            let mut id = ident(1);
            id.service = ServiceId(1000 + s);
            db.begin_claim(&id, A, 1).unwrap();
        }
        assert!(matches!(db.encode(), Err(VportDbError::TooLarge(_))));
    }

    #[test]
    fn merge_keeps_newer_entries() {
        let mut a = VportDb::new();
        let mut b = VportDb::new();
        a.begin_claim(&ident(1), A, 1).unwrap();
        a.finish_claim(ServiceId(1), A).unwrap();
        b.merge(&a);
        assert_eq!(a, b);
        // B takes over service 1 under epoch 2 in its copy; A's copy is older.
        b.begin_claim(&ident(1), B, 2).unwrap();
        b.begin_claim(&ident(2), B, 1).unwrap();
        assert_eq!(a.merge(&b), 2);
        assert_eq!(a.holder(ServiceId(1)), Some(B));
        assert_eq!(b.merge(&a), 0, "nothing newer in a");
        // Within an epoch the later step wins.
        let before = a.clone();
        a.finish_claim(ServiceId(2), B).unwrap();
        let mut c = before;
        assert_eq!(c.merge(&a), 1);
        assert_eq!(c.entry(ServiceId(2)).unwrap().state, HoldState::Held);
    }
}
