//! Identity takeover: the addresses, MACs and Fibre Channel virtual ports of a service
//! move with the service.
//!
//! - [`model`]: the identities, the `[service.identity]` configuration section and its
//!   validation;
//! - [`vportdb`]: the virtual port database (which node holds which service's
//!   identities), small enough to mirror in one page;
//! - [`net`]: addresses and macvlan children through rtnetlink, gratuitous ARP and
//!   unsolicited neighbour advertisements;
//! - [`fc`]: NPIV virtual ports through the fc_host sysfs interface.
//!
//! [`Identities::claim`] and [`Identities::release`] are idempotent and safe to retry
//! after a crash halfway: claiming what is already there succeeds, releasing what is gone
//! succeeds.
//!
//! # The contract with the HA engine
//!
//! These calls do not decide who may hold an identity; the HA engine does, through the
//! witness lease. The runtime must:
//!
//! - call [`Identities::claim`] only while it holds the service's lease, after the
//!   partner's log was replayed, when it executes `StartServing` (before it opens the
//!   service's listeners, which may bind to the service's address);
//! - call [`Identities::release`] when it executes `StopServing` (after closing the
//!   listeners), which the engine always orders before `Release` of the lease; a node
//!   therefore drops an identity before the partner can be granted the lease and claim
//!   it, and two nodes never hold one identity at once;
//! - call [`Identities::release_all`] when it starts, before the engine runs: a process
//!   that crashed left its addresses and virtual ports in the kernel, and it holds no
//!   lease now.
//!
//! The [`VportDb`] adds a check of its own: a claim under an older lease epoch than the
//! one recorded, or under the same epoch while the other node is recorded as holder, is
//! refused.

pub mod fc;
pub mod model;
pub mod net;
pub mod vportdb;

pub use model::{FcPort, IdentityConfigError, IdentitySection, IpPrefix, MacAddr, ServiceIdentity, Wwn};
pub use vportdb::{HoldState, VportDb, VportDbError};

use crate::ha::{NodeId, ServiceId};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A claim or release that failed.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The service has no identity section.
    #[error("service {0}: no identities configured")]
    UnknownService(u32),
    /// The virtual port database refused the claim.
    #[error(transparent)]
    Db(#[from] VportDbError),
    /// An address or macvlan step failed.
    #[error("service {service}: {source}")]
    Net {
        /// Service.
        service: u32,
        /// What failed.
        #[source]
        source: net::NetError,
    },
    /// Announcing the addresses failed.
    #[error("service {service}: announcing on {interface}: {source}")]
    Announce {
        /// Service.
        service: u32,
        /// Interface.
        interface: String,
        /// Error.
        #[source]
        source: std::io::Error,
    },
    /// A virtual port step failed.
    #[error("service {service}: {source}")]
    Fc {
        /// Service.
        service: u32,
        /// What failed.
        #[source]
        source: fc::FcError,
    },
    /// Some steps of a release failed (every step was tried); retry the release.
    #[error("service {service}: release incomplete: {}", errors.join("; "))]
    Release {
        /// Service.
        service: u32,
        /// The failures.
        errors: Vec<String>,
    },
}

/// How often addresses are announced after a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnnouncePolicy {
    /// Rounds in all (at least 1): the first is sent before `claim` returns, the rest
    /// by a background thread that `release` stops first.
    pub rounds: u32,
    /// Time between rounds.
    pub interval: Duration,
}

impl Default for AnnouncePolicy {
    /// Three rounds, 200 ms apart (switches and clients that missed the first frame).
    fn default() -> Self {
        AnnouncePolicy { rounds: 3, interval: Duration::from_millis(200) }
    }
}

/// What a claim did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimReport {
    /// Addresses added.
    pub addresses_added: Vec<IpPrefix>,
    /// Addresses that were already there.
    pub addresses_present: Vec<IpPrefix>,
    /// The macvlan child was created.
    pub macvlan_created: bool,
    /// Virtual ports created (WWPNs).
    pub vports_created: Vec<Wwn>,
    /// Virtual ports that were already there.
    pub vports_present: Vec<Wwn>,
    /// How long the claim took.
    pub elapsed: Duration,
}

/// What a release did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReleaseReport {
    /// Addresses removed.
    pub addresses_removed: Vec<IpPrefix>,
    /// The macvlan child was deleted.
    pub macvlan_deleted: bool,
    /// Virtual ports deleted.
    pub vports_deleted: Vec<Wwn>,
}

struct Repeats {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

/// The identities of this node's pair's services, claimed and released on this node.
pub struct Identities {
    node: NodeId,
    services: BTreeMap<ServiceId, ServiceIdentity>,
    fc: fc::FcSysfs,
    announce: AnnouncePolicy,
    db: Mutex<VportDb>,
    repeats: Mutex<BTreeMap<ServiceId, Repeats>>,
}

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identities").field("node", &self.node).field("services", &self.services).field("fc", &self.fc).finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Identities {
    /// The identities of `services` on node `node`, with FC under `/sys`. Refused when
    /// two services share an identity or a service appears twice.
    pub fn new(node: NodeId, services: Vec<ServiceIdentity>) -> Result<Self, IdentityConfigError> {
        model::validate_distinct(&services)?;
        let mut map = BTreeMap::new();
        for s in services {
            let id = s.service;
            if map.insert(id, s).is_some() {
                return Err(IdentityConfigError { field: "service.id", reason: format!("service {} has two identity sections", id.0) });
            }
        }
        Ok(Identities {
            node,
            services: map,
            fc: fc::FcSysfs::system(),
            announce: AnnouncePolicy::default(),
            db: Mutex::new(VportDb::new()),
            repeats: Mutex::new(BTreeMap::new()),
        })
    }

    /// Uses `fc` (another sysfs root, another wait) for virtual ports.
    pub fn with_fc(mut self, fc: fc::FcSysfs) -> Self {
        self.fc = fc;
        self
    }

    /// Announces with `policy`.
    pub fn with_announce(mut self, policy: AnnouncePolicy) -> Self {
        self.announce = policy;
        self
    }

    /// Starts from `db` (this node's copy read back from its mirrored page, merged with
    /// the partner's).
    pub fn with_db(self, db: VportDb) -> Self {
        *lock(&self.db) = db;
        self
    }

    /// This node.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// The identities of `service`.
    pub fn service(&self, service: ServiceId) -> Option<&ServiceIdentity> {
        self.services.get(&service)
    }

    /// A copy of the virtual port database, to mirror (see [`VportDb::encode`]).
    pub fn db(&self) -> VportDb {
        lock(&self.db).clone()
    }

    /// Merges the partner's copy of the database (read from the mirror window) into this
    /// node's. Returns how many entries changed.
    pub fn merge_db(&self, partner: &VportDb) -> usize {
        lock(&self.db).merge(partner)
    }

    /// Claims every identity of `service` under lease epoch `epoch`: the macvlan child
    /// (created or fixed up), the addresses, the links up, the announcements, the FC
    /// virtual ports. Idempotent; on an error, what was done stays done and the claim can
    /// be retried (or the service released). See the module documentation for when the
    /// runtime may call it.
    pub fn claim(&self, service: ServiceId, epoch: u64) -> Result<ClaimReport, IdentityError> {
        let start = Instant::now();
        let id = self.services.get(&service).ok_or(IdentityError::UnknownService(service.0))?;
        lock(&self.db).begin_claim(id, self.node, epoch)?;
        let mut report = ClaimReport::default();
        if !id.ips.is_empty() {
            let up = net::bring_up(&id.interface, id.mac, &id.macvlan, &id.ips)
                .map_err(|source| IdentityError::Net { service: service.0, source })?;
            report.addresses_added = up.added;
            report.addresses_present = up.present;
            report.macvlan_created = up.macvlan_created;
            let mac = up.link.mac.ok_or_else(|| IdentityError::Announce {
                service: service.0,
                interface: up.link.name.clone(),
                source: std::io::Error::other("the interface has no MAC address"),
            })?;
            let ann_err = |source| IdentityError::Announce { service: service.0, interface: up.link.name.clone(), source };
            let announcer = net::Announcer::open(up.link.index, mac).map_err(ann_err)?;
            announcer.announce(&id.ips).map_err(ann_err)?;
            self.start_repeats(service, announcer, id.ips.clone());
        }
        for port in &id.fc {
            match self.fc.create(port).map_err(|source| IdentityError::Fc { service: service.0, source })? {
                fc::Created::New => report.vports_created.push(port.wwpn),
                fc::Created::AlreadyPresent => report.vports_present.push(port.wwpn),
            }
        }
        lock(&self.db).finish_claim(service, self.node)?;
        report.elapsed = start.elapsed();
        tracing::info!(
            service = service.0,
            epoch,
            "identities claimed: {} addresses added, {} present, {} vports created, {} present, in {:?}",
            report.addresses_added.len(),
            report.addresses_present.len(),
            report.vports_created.len(),
            report.vports_present.len(),
            report.elapsed
        );
        Ok(report)
    }

    fn start_repeats(&self, service: ServiceId, announcer: net::Announcer, ips: Vec<IpPrefix>) {
        self.stop_repeats(service);
        if self.announce.rounds <= 1 {
            return;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let policy = self.announce;
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            for _ in 1..policy.rounds {
                let until = Instant::now() + policy.interval;
                while Instant::now() < until {
                    if flag.load(Ordering::SeqCst) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(5).min(policy.interval));
                }
                if flag.load(Ordering::SeqCst) {
                    return;
                }
                if let Err(e) = announcer.announce(&ips) {
                    tracing::warn!(service = service.0, "repeating announcements: {e}");
                    return;
                }
            }
        });
        lock(&self.repeats).insert(service, Repeats { stop, handle });
    }

    fn stop_repeats(&self, service: ServiceId) {
        if let Some(r) = lock(&self.repeats).remove(&service) {
            r.stop.store(true, Ordering::SeqCst);
            let _ = r.handle.join();
        }
    }

    /// Releases every identity of `service`: stops announcing, deletes the FC virtual
    /// ports, removes the addresses (from whichever interface holds them) and the macvlan
    /// child. Idempotent; every step is tried even when one fails, and the error lists
    /// the failures (retry the release).
    pub fn release(&self, service: ServiceId) -> Result<ReleaseReport, IdentityError> {
        let id = self.services.get(&service).ok_or(IdentityError::UnknownService(service.0))?;
        self.stop_repeats(service);
        let recorded = lock(&self.db).begin_release(service, self.node);
        let mut report = ReleaseReport::default();
        let mut errors = Vec::new();
        for port in &id.fc {
            match self.fc.delete(port) {
                Ok(fc::Deleted::Deleted) => report.vports_deleted.push(port.wwpn),
                Ok(fc::Deleted::Absent) => {}
                Err(e) => errors.push(e.to_string()),
            }
        }
        if !id.ips.is_empty() {
            match net::tear_down(id.mac, &id.macvlan, &id.ips) {
                Ok(r) => {
                    report.addresses_removed = r.removed;
                    report.macvlan_deleted = r.macvlan_deleted;
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        if !errors.is_empty() {
            return Err(IdentityError::Release { service: service.0, errors });
        }
        if recorded {
            lock(&self.db).finish_release(service, self.node)?;
        }
        tracing::info!(
            service = service.0,
            "identities released: {} addresses removed, {} vports deleted",
            report.addresses_removed.len(),
            report.vports_deleted.len()
        );
        Ok(report)
    }

    /// Releases the identities of every configured service (at startup, before the HA
    /// engine runs: nothing is held without a lease). Returns the failures.
    pub fn release_all(&self) -> Vec<(ServiceId, IdentityError)> {
        self.services.keys().filter_map(|s| self.release(*s).err().map(|e| (*s, e))).collect()
    }

    /// Whether every address of `service` is on this node (any interface).
    pub fn addresses_present(&self, service: ServiceId) -> Result<bool, IdentityError> {
        let id = self.services.get(&service).ok_or(IdentityError::UnknownService(service.0))?;
        let have = net::Netlink::open().and_then(|mut nl| nl.addresses()).map_err(|source| IdentityError::Net {
            service: service.0,
            source: net::NetError { op: "listing addresses".into(), source },
        })?;
        let addrs: Vec<IpAddr> = have.iter().map(|(_, p)| p.addr).collect();
        Ok(id.ips.iter().all(|p| addrs.contains(&p.addr)))
    }
}

impl Drop for Identities {
    fn drop(&mut self) {
        let services: Vec<ServiceId> = lock(&self.repeats).keys().copied().collect();
        for s in services {
            self.stop_repeats(s);
        }
    }
}
