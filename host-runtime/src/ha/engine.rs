//! The HA engine: a pure state machine. Events in, commands out, no I/O.
//!
//! The runtime calls [`HaEngine::step`] with the time and one [`Event`], executes the
//! returned [`Command`]s in order and feeds their outcomes back as events. The engine
//! reads no clock, draws no random number and performs no I/O, so the same inputs always
//! give the same commands. The rules, one section per transition with the reason each
//! exists, are in `docs/ha.md`.
//!
//! Internally the engine keeps facts (partner liveness, mirror link, per-service lease,
//! phase and copy mark) and after every event *reconciles*: it compares what it wants with
//! what it has and emits the commands that close the gap. The [`HaState`] shown by
//! `tandem status` is derived from those facts after every step.

use super::types::{Command, DenyReason, Event, Grant, HaState, Millis, NodeId, Path, PeerInfo, ServiceId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A service and the node it belongs to when both nodes are healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceHome {
    /// The service.
    pub service: ServiceId,
    /// Its home node.
    pub home: NodeId,
}

/// Timing and service placement of the HA engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaConfig {
    /// Heartbeats are sent on both paths this often. The runtime must tick the engine at
    /// least every `heartbeat_interval_ms / 4`.
    pub heartbeat_interval_ms: Millis,
    /// The partner is lost after this many intervals without a heartbeat on either path.
    pub misses: u32,
    /// Witness lease length. Must exceed `misses * heartbeat_interval_ms`.
    pub lease_ms: Millis,
    /// How long a booting node waits for the partner before serving alone.
    pub boot_wait_ms: Millis,
    /// Give the partner's services back automatically this long after it returned and the
    /// copies are current again; `None`: only on operator command.
    pub auto_giveback_ms: Option<Millis>,
    /// The services of the pair with their home nodes.
    pub services: Vec<ServiceHome>,
}

impl HaConfig {
    /// Time without any heartbeat after which the partner is lost.
    pub fn detect_ms(&self) -> Millis {
        self.heartbeat_interval_ms.saturating_mul(Millis::from(self.misses))
    }

    /// Checks the constraints between the fields.
    pub fn validate(&self) -> Result<(), HaConfigError> {
        if self.heartbeat_interval_ms < 4 {
            return Err(HaConfigError::IntervalTooShort { interval_ms: self.heartbeat_interval_ms });
        }
        if self.misses == 0 {
            return Err(HaConfigError::NoMisses);
        }
        if self.lease_ms <= self.detect_ms() {
            return Err(HaConfigError::LeaseTooShort {
                lease_ms: self.lease_ms,
                misses: self.misses,
                interval_ms: self.heartbeat_interval_ms,
            });
        }
        let mut seen = std::collections::BTreeSet::new();
        for s in &self.services {
            if s.home.0 > 1 {
                return Err(HaConfigError::BadHome { service: s.service.0, home: s.home.0 });
            }
            if !seen.insert(s.service) {
                return Err(HaConfigError::DuplicateService { service: s.service.0 });
            }
        }
        Ok(())
    }
}

/// A configuration the engine refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HaConfigError {
    /// The interval is too short to tick at a quarter of it.
    #[error("ha: heartbeat_interval_ms = {interval_ms}: must be at least 4 (the engine is ticked every interval / 4)")]
    IntervalTooShort {
        /// Given interval.
        interval_ms: Millis,
    },
    /// `misses` is zero.
    #[error("ha: misses = 0: at least one missed heartbeat interval must pass before the partner is lost")]
    NoMisses,
    /// The lease does not outlast failure detection.
    #[error(
        "ha: lease_ms = {lease_ms} must exceed misses x heartbeat_interval_ms = {misses} x {interval_ms} = {} \
         (a node renews every interval / 2; a lease shorter than failure detection would stop service on a \
         witness hiccup the partner cannot even notice)",
        *misses as u64 * *interval_ms
    )]
    LeaseTooShort {
        /// Given lease.
        lease_ms: Millis,
        /// Given misses.
        misses: u32,
        /// Given interval.
        interval_ms: Millis,
    },
    /// A service is listed twice.
    #[error("ha: service {service} is listed twice")]
    DuplicateService {
        /// The service.
        service: u32,
    },
    /// A home node other than 0 or 1.
    #[error("ha: service {service}: home node {home} is not 0 or 1")]
    BadHome {
        /// The service.
        service: u32,
        /// The given home.
        home: u8,
    },
}

/// Where a service is on its way from "not held" to "served" and back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Not held, nothing in flight (an acquire may be in flight; see `acquire_sent`).
    Idle,
    /// First acquire in flight.
    Acquiring,
    /// Lease granted; replay in flight.
    Replaying,
    /// Replayed; waiting for the copy to be marked stale before serving unmirrored.
    Ready,
    /// Serving.
    Serving,
    /// Serving; consistency point in flight before handing the service over.
    Flushing,
    /// Stopped; release in flight.
    Releasing,
}

/// What the engine knows the witness has recorded about the partner's copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CopyMark {
    /// Not recorded by this incarnation.
    Unknown,
    /// Confirmed current.
    Current,
    /// Confirmed stale: unmirrored writes may be acknowledged.
    Stale,
}

/// A lease as the holder sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// End, on the runtime's clock (measured from when the request was sent).
    pub until: Millis,
    /// Ownership epoch.
    pub epoch: u64,
}

#[derive(Debug, Clone)]
struct Svc {
    home: NodeId,
    /// This node wants to hold the service.
    want: bool,
    /// The wish needs the partner's cooperation (planned takeover, giveback request):
    /// the service is listed in `release_requests`.
    requested: bool,
    phase: Phase,
    lease: Option<Lease>,
    /// Send time of the acquire (or renewal) in flight.
    acquire_sent: Option<Millis>,
    last_renew_sent: Millis,
    mark: CopyMark,
    mark_in_flight: Option<bool>,
    mark_retry_at: Millis,
    retry_at: Millis,
    flush_retry_at: Millis,
    /// Released at the witness for the partner to acquire.
    released_for_partner: bool,
    /// Last refusal noted for this service (to note each refusal once, not every tick).
    refusal: Option<&'static str>,
    /// A home service left to the partner because it served it or asked for it. Wanted
    /// again when the partner, alive, no longer serves it and is not taking anything over.
    yielded: bool,
    /// Since when the partner has been seen neither serving a yielded service nor taking
    /// anything over (a single late heartbeat must not be enough to try for it again).
    yield_idle_since: Option<Millis>,
}

/// The partner as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartnerView {
    /// A heartbeat arrived on some path within `misses x interval`.
    pub alive: bool,
    /// Last heartbeat on any path.
    pub last_heard: Option<Millis>,
    /// Last heartbeat on the mirror path.
    pub last_heard_mirror: Option<Millis>,
    /// Last heartbeat on the management path.
    pub last_heard_mgmt: Option<Millis>,
    /// Its latest report.
    pub info: Option<PeerInfo>,
}

/// One service as `tandem status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceView {
    /// The service.
    pub service: ServiceId,
    /// Its home node.
    pub home: NodeId,
    /// Phase.
    pub phase: Phase,
    /// Lease held, if any.
    pub lease: Option<Lease>,
    /// Witness record of the partner's copy as known here.
    pub copy: CopyMark,
    /// This node wants to hold it.
    pub wanted: bool,
}

/// A snapshot for `tandem status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaStatus {
    /// This node.
    pub node: NodeId,
    /// Its incarnation.
    pub incarnation: u64,
    /// HA state.
    pub state: HaState,
    /// Mirror link as last reported.
    pub mirror_link_up: bool,
    /// Mirror mode last commanded.
    pub mirrored: bool,
    /// A resync is owed to the partner.
    pub needs_resync: bool,
    /// Resync progress (done, total) while one runs.
    pub resync_progress: Option<(u64, u64)>,
    /// The partner.
    pub partner: PartnerView,
    /// Services.
    pub services: Vec<ServiceView>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resync {
    Idle,
    Running,
}

/// The HA engine of one node. See the module docs and `docs/ha.md`.
#[derive(Debug, Clone)]
pub struct HaEngine {
    cfg: HaConfig,
    me: NodeId,
    incarnation: u64,
    started: bool,
    booting: bool,
    boot_started: Millis,
    state: HaState,
    partner: PartnerView,
    mirror_link_up: bool,
    mirror_mode: bool,
    needs_resync: bool,
    resync: Resync,
    resync_retry_at: Millis,
    resync_progress: Option<(u64, u64)>,
    services: BTreeMap<ServiceId, Svc>,
    next_heartbeat: Millis,
    last_sent: Option<PeerInfo>,
    stable_since: Option<Millis>,
}

impl HaEngine {
    /// A new engine for node `me` in its `incarnation` (incremented by the runtime on every
    /// process start). Nothing is emitted until the first [`HaEngine::step`], which starts
    /// the boot (whatever its event).
    pub fn new(cfg: HaConfig, me: NodeId, incarnation: u64) -> Result<HaEngine, HaConfigError> {
        cfg.validate()?;
        if me.0 > 1 {
            return Err(HaConfigError::BadHome { service: u32::MAX, home: me.0 });
        }
        let services = cfg
            .services
            .iter()
            .map(|s| {
                let svc = Svc {
                    home: s.home,
                    want: s.home == me,
                    requested: false,
                    phase: Phase::Idle,
                    lease: None,
                    acquire_sent: None,
                    last_renew_sent: 0,
                    mark: CopyMark::Unknown,
                    mark_in_flight: None,
                    mark_retry_at: 0,
                    retry_at: 0,
                    flush_retry_at: 0,
                    released_for_partner: false,
                    refusal: None,
                    yielded: false,
                    yield_idle_since: None,
                };
                (s.service, svc)
            })
            .collect();
        Ok(HaEngine {
            cfg,
            me,
            incarnation,
            started: false,
            booting: true,
            boot_started: 0,
            state: HaState::Booting,
            partner: PartnerView { alive: false, last_heard: None, last_heard_mirror: None, last_heard_mgmt: None, info: None },
            mirror_link_up: false,
            mirror_mode: true,
            needs_resync: true,
            resync: Resync::Idle,
            resync_retry_at: 0,
            resync_progress: None,
            services,
            next_heartbeat: 0,
            last_sent: None,
            stable_since: None,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &HaConfig {
        &self.cfg
    }

    /// This node.
    pub fn node(&self) -> NodeId {
        self.me
    }

    /// Current HA state.
    pub fn state(&self) -> HaState {
        self.state
    }

    /// The partner as this node sees it.
    pub fn partner(&self) -> &PartnerView {
        &self.partner
    }

    /// Services this node serves now (it holds an unexpired lease for each).
    pub fn serving(&self) -> Vec<ServiceId> {
        self.services.iter().filter(|(_, s)| matches!(s.phase, Phase::Serving | Phase::Flushing)).map(|(id, _)| *id).collect()
    }

    /// Whether this node serves `service` now.
    pub fn is_serving(&self, service: ServiceId) -> bool {
        self.services.get(&service).is_some_and(|s| matches!(s.phase, Phase::Serving | Phase::Flushing))
    }

    /// The lease this node holds for `service` (end and epoch), if any.
    pub fn lease(&self, service: ServiceId) -> Option<Lease> {
        self.services.get(&service).and_then(|s| s.lease)
    }

    /// Mirror mode last commanded (`true`: writes are acknowledged only once mirrored).
    pub fn mirrored(&self) -> bool {
        self.mirror_mode
    }

    /// A snapshot for `tandem status`.
    pub fn status(&self) -> HaStatus {
        HaStatus {
            node: self.me,
            incarnation: self.incarnation,
            state: self.state,
            mirror_link_up: self.mirror_link_up,
            mirrored: self.mirror_mode,
            needs_resync: self.needs_resync,
            resync_progress: self.resync_progress,
            partner: self.partner.clone(),
            services: self
                .services
                .iter()
                .map(|(id, s)| ServiceView { service: *id, home: s.home, phase: s.phase, lease: s.lease, copy: s.mark, wanted: s.want })
                .collect(),
        }
    }

    /// The latest time by which the engine wants its next [`Event::Tick`] (heartbeat due,
    /// lease about to end, renewal due, partner about to be declared lost, a retry). The
    /// runtime may tick more often; it must tick at least every interval / 4.
    pub fn next_deadline(&self) -> Millis {
        let half = self.cfg.heartbeat_interval_ms / 2;
        let mut d = self.next_heartbeat;
        if self.booting {
            d = d.min(self.boot_started + self.cfg.boot_wait_ms);
        }
        if let Some(t) = self.partner.last_heard {
            if self.partner.alive {
                d = d.min(t + self.cfg.detect_ms());
            }
        }
        for s in self.services.values() {
            if let Some(l) = s.lease {
                d = d.min(l.until.saturating_sub(self.margin()));
                if s.acquire_sent.is_none() {
                    d = d.min(s.last_renew_sent + half);
                }
            }
            if s.want && s.phase == Phase::Idle && s.acquire_sent.is_none() {
                d = d.min(s.retry_at);
            }
            if let Some(t) = s.yield_idle_since {
                d = d.min(t + 2 * self.cfg.heartbeat_interval_ms);
            }
        }
        d
    }

    /// Feeds one event that happened at `now`; returns what the runtime must do, in order.
    pub fn step(&mut self, now: Millis, ev: Event) -> Vec<Command> {
        let mut out = Vec::new();
        if !self.started {
            self.boot(now, &mut out);
        }
        self.handle(now, ev, &mut out);
        self.reconcile(now, &mut out);
        out
    }

    fn margin(&self) -> Millis {
        self.cfg.heartbeat_interval_ms / 4
    }

    fn note(out: &mut Vec<Command>, text: String) {
        out.push(Command::Note { text });
    }

    fn boot(&mut self, now: Millis, out: &mut Vec<Command>) {
        self.started = true;
        self.boot_started = now;
        self.next_heartbeat = now;
        Self::note(out, format!("booting: node {} incarnation {}; acquiring home services", self.me.0, self.incarnation));
        out.push(Command::SetMirrorMode { mirrored: true });
    }

    // ---------------------------------------------------------------- events

    fn handle(&mut self, now: Millis, ev: Event, out: &mut Vec<Command>) {
        match ev {
            Event::Tick => {}
            Event::Heartbeat { path, info } => self.on_heartbeat(now, path, info, out),
            Event::MirrorLink { up } => {
                if up != self.mirror_link_up {
                    Self::note(out, format!("mirror link {}", if up { "up" } else { "down" }));
                }
                self.mirror_link_up = up;
            }
            Event::Acquired { service, grant } => self.on_acquired(now, service, grant, out),
            Event::Released { service, ok } => {
                let Some(s) = self.services.get_mut(&service) else { return };
                if s.phase != Phase::Releasing {
                    return;
                }
                s.phase = Phase::Idle;
                s.lease = None;
                // A renewal still in flight stays in flight: its answer may be a grant the
                // witness gave before this release, and must not be taken for the answer to
                // a new acquire (it is dropped when it comes, see `on_acquired`).
                s.released_for_partner = true;
                if ok {
                    Self::note(out, format!("service {}: released at the witness for the partner", service.0));
                } else {
                    Self::note(out, format!("service {}: release not confirmed; the lease lapses on its own", service.0));
                }
            }
            Event::CopyMarked { service, current, ok } => {
                let Some(s) = self.services.get_mut(&service) else { return };
                if s.mark_in_flight != Some(current) {
                    return;
                }
                s.mark_in_flight = None;
                if ok {
                    s.mark = if current { CopyMark::Current } else { CopyMark::Stale };
                    Self::note(
                        out,
                        format!("service {}: witness records the partner's copy {}", service.0, if current { "current" } else { "stale" }),
                    );
                } else {
                    // Unconfirmed is not "unchanged": the request may have reached the
                    // witness and only the answer got lost. Assume nothing.
                    s.mark = CopyMark::Unknown;
                    s.mark_retry_at = now + self.cfg.heartbeat_interval_ms / 2;
                    Self::note(
                        out,
                        format!(
                            "service {}: witness did not confirm copy {}; retrying",
                            service.0,
                            if current { "current" } else { "stale" }
                        ),
                    );
                }
            }
            Event::Replayed { service, ok } => {
                let Some(s) = self.services.get_mut(&service) else { return };
                if s.phase != Phase::Replaying {
                    return;
                }
                if ok {
                    s.phase = Phase::Ready;
                } else {
                    s.phase = Phase::Releasing;
                    s.want = false;
                    out.push(Command::Release { service });
                    Self::note(out, format!("service {}: replay failed; releasing it, not serving", service.0));
                }
            }
            Event::Flushed { service, ok } => {
                let Some(s) = self.services.get_mut(&service) else { return };
                if s.phase != Phase::Flushing {
                    return;
                }
                if ok {
                    s.phase = Phase::Releasing;
                    out.push(Command::StopServing { service });
                    out.push(Command::Release { service });
                    Self::note(out, format!("service {}: flushed; stopped serving, releasing", service.0));
                } else {
                    s.phase = Phase::Serving;
                    s.flush_retry_at = now + self.cfg.heartbeat_interval_ms;
                    Self::note(out, format!("service {}: flush failed; keeps serving, retrying", service.0));
                }
            }
            Event::ResyncProgress { done, total } => self.resync_progress = Some((done, total)),
            Event::ResyncDone { ok } => {
                if self.resync != Resync::Running {
                    return;
                }
                self.resync = Resync::Idle;
                self.resync_progress = None;
                if ok {
                    Self::note(out, "resync done; marking copies current".to_string());
                } else {
                    self.needs_resync = true;
                    self.resync_retry_at = now + self.cfg.heartbeat_interval_ms;
                    Self::note(out, "resync failed; retrying".to_string());
                }
            }
            Event::OperatorTakeover => self.on_operator_takeover(out),
            Event::OperatorGiveback => self.on_operator_giveback(out),
        }
    }

    fn on_heartbeat(&mut self, now: Millis, path: Path, info: PeerInfo, out: &mut Vec<Command>) {
        if info.node != self.me.partner() || info.node == self.me {
            Self::note(out, format!("heartbeat from node {} ignored: not the partner", info.node.0));
            return;
        }
        self.partner.last_heard = Some(now);
        match path {
            Path::Mirror => self.partner.last_heard_mirror = Some(now),
            Path::Mgmt => self.partner.last_heard_mgmt = Some(now),
        }
        let prev = self.partner.info.as_ref().map(|i| i.incarnation);
        if let Some(p) = prev {
            if info.incarnation < p {
                // A late heartbeat of an earlier incarnation: ignore it.
                return;
            }
            if info.incarnation > p {
                Self::note(out, format!("partner restarted (incarnation {p} -> {}); resync owed", info.incarnation));
                self.needs_resync = true;
                self.rewant_home(out);
            }
        }
        for (id, s) in self.services.iter_mut() {
            if info.serving.contains(id) {
                s.released_for_partner = false;
            }
        }
        self.partner.info = Some(info);
    }

    fn on_acquired(&mut self, now: Millis, service: ServiceId, grant: Grant, out: &mut Vec<Command>) {
        let margin = self.margin();
        let lease_ms = self.cfg.lease_ms;
        let half = self.cfg.heartbeat_interval_ms / 2;
        let partner_alive = self.partner.alive;
        let partner_released = self.partner_lists(service, |i| &i.released);
        let partner_serves = self.partner_lists(service, |i| &i.serving);
        let last_heard = self.partner.last_heard;
        let Some(s) = self.services.get_mut(&service) else {
            Self::note(out, format!("witness answered about unknown service {}", service.0));
            return;
        };
        let Some(sent) = s.acquire_sent.take() else {
            Self::note(out, format!("service {}: late witness answer ignored", service.0));
            return;
        };
        match grant {
            Grant::Granted { until, epoch } => {
                let until = until.min(sent + lease_ms);
                if until <= now + margin {
                    Self::note(out, format!("service {}: grant arrived too late to use", service.0));
                    if s.phase == Phase::Acquiring {
                        s.phase = Phase::Idle;
                    }
                    return;
                }
                if let Some(l) = s.lease {
                    if l.epoch != epoch {
                        Self::note(out, format!("service {}: epoch changed {} -> {epoch} on renewal", service.0, l.epoch));
                    }
                }
                if s.phase == Phase::Idle {
                    // The answer to a renewal sent before the lease ended or was released:
                    // the witness may have applied the release after this grant. Not a
                    // lease; a new acquire (if wanted) follows.
                    Self::note(out, format!("service {}: renewal answered after the lease ended; ignored", service.0));
                    return;
                }
                s.lease = Some(Lease { until, epoch });
                if s.phase == Phase::Acquiring {
                    s.phase = Phase::Replaying;
                    // Between two of our leases the other node may have held it and
                    // changed the copy record: what we knew no longer holds.
                    s.mark = CopyMark::Unknown;
                    s.refusal = None;
                    out.push(Command::Replay { service });
                    Self::note(out, format!("service {}: lease granted (epoch {epoch}); replaying", service.0));
                }
            }
            Grant::Denied { reason, holder } => {
                if s.phase != Phase::Acquiring {
                    // A renewal was refused: keep serving until the lease ends (the expiry
                    // check stops the service in time); the next renewal is due soon.
                    Self::note(out, format!("service {}: renewal denied ({reason:?})", service.0));
                    return;
                }
                s.phase = Phase::Idle;
                let who = holder.map(|h| h.0.to_string()).unwrap_or_else(|| "-".into());
                match reason {
                    DenyReason::HeldByOther => {
                        if partner_alive && !s.requested && !partner_released && partner_serves {
                            s.want = false;
                            s.yielded = true;
                            Self::note(out, format!("service {}: held by node {who}; leaving it there until giveback", service.0));
                        } else {
                            let expiry = last_heard.map(|t| t + lease_ms + half).unwrap_or(0);
                            s.retry_at = (now + half).max(if partner_alive { 0 } else { expiry });
                            if s.refusal != Some("held") {
                                s.refusal = Some("held");
                                Self::note(out, format!("service {}: held by node {who}; retrying at {}", service.0, s.retry_at));
                            }
                        }
                    }
                    DenyReason::CopyStale => {
                        if partner_alive {
                            // The partner holds the only current copy: ask it to serve the
                            // service (it is the holder, the witness will grant it).
                            s.requested = true;
                            s.retry_at = now + half;
                            if s.refusal != Some("stale") {
                                s.refusal = Some("stale");
                                Self::note(
                                    out,
                                    format!(
                                        "service {}: copy stale at the witness (holder {who}); asking the partner to serve it",
                                        service.0
                                    ),
                                );
                            }
                        } else {
                            s.want = false;
                            Self::note(
                                out,
                                format!(
                                    "service {}: not taking over: the holder {who} marked this node's copy stale; taking over would lose acknowledged writes",
                                    service.0
                                ),
                            );
                        }
                    }
                    DenyReason::Unreachable => {
                        s.retry_at = now + half;
                        Self::note(out, format!("service {}: witness unreachable; retrying", service.0));
                    }
                    DenyReason::Invalid => {
                        s.want = false;
                        Self::note(out, format!("service {}: witness does not know this service or node", service.0));
                    }
                }
            }
        }
    }

    fn on_operator_takeover(&mut self, out: &mut Vec<Command>) {
        if !self.partner.alive {
            Self::note(out, "takeover refused: the partner is not alive (an unplanned takeover runs on its own)".to_string());
            return;
        }
        let mut any = false;
        for (id, s) in self.services.iter_mut() {
            if s.home != self.me && !s.want {
                s.want = true;
                s.requested = true;
                s.retry_at = 0;
                any = true;
                Self::note(out, format!("operator takeover: asking the partner to release service {}", id.0));
            }
        }
        if !any {
            Self::note(out, "takeover refused: nothing of the partner's left to take over".to_string());
        }
    }

    fn on_operator_giveback(&mut self, out: &mut Vec<Command>) {
        if !self.partner.alive {
            Self::note(out, "giveback refused: the partner is not alive".to_string());
            return;
        }
        let mut any = false;
        for (id, s) in self.services.iter_mut() {
            if s.home != self.me && s.want {
                s.want = false;
                s.requested = false;
                // Not held at all (lease lapsed): tell the partner to take it.
                s.released_for_partner = matches!(s.phase, Phase::Idle | Phase::Acquiring);
                any = true;
                Self::note(out, format!("operator giveback: handing service {} back", id.0));
            } else if s.home == self.me && !s.want {
                s.want = true;
                s.requested = true;
                s.retry_at = 0;
                any = true;
                Self::note(out, format!("operator giveback: asking the partner to give service {} back", id.0));
            }
        }
        if !any {
            Self::note(out, "giveback refused: nothing to give back".to_string());
        }
    }

    // ---------------------------------------------------------------- reconcile

    fn partner_lists(&self, service: ServiceId, f: impl Fn(&PeerInfo) -> &Vec<ServiceId>) -> bool {
        self.partner.info.as_ref().is_some_and(|i| f(i).contains(&service))
    }

    /// Copies are current and mirroring works: the only condition under which a service is
    /// handed to the partner (its copy must hold every acknowledged write).
    fn fully_mirrored(&self) -> bool {
        self.partner.alive
            && self.mirror_link_up
            && self.mirror_mode
            && !self.needs_resync
            && self.resync == Resync::Idle
            && self.services.values().all(|s| !matches!(s.phase, Phase::Serving | Phase::Flushing) || s.mark == CopyMark::Current)
            && self.services.values().all(|s| s.mark_in_flight.is_none())
    }

    fn reconcile(&mut self, now: Millis, out: &mut Vec<Command>) {
        self.update_partner(now, out);
        self.update_boot(now, out);
        self.expire_leases(now, out);
        self.adjust_wants(now, out);
        self.mirror_goal(now, out);
        self.drive_services(now, out);
        self.derive_state(out);
        self.heartbeats(now, out);
    }

    fn update_partner(&mut self, now: Millis, out: &mut Vec<Command>) {
        let alive = self.partner.last_heard.is_some_and(|t| now < t + self.cfg.detect_ms());
        if alive == self.partner.alive {
            return;
        }
        self.partner.alive = alive;
        if alive {
            Self::note(out, "partner alive".to_string());
            // Partner back: stop trying to take over what is not already in hand.
            for (id, s) in self.services.iter_mut() {
                if s.home != self.me && s.want && s.phase == Phase::Idle && s.acquire_sent.is_none() {
                    s.want = false;
                    Self::note(out, format!("service {}: partner back; not taking it over", id.0));
                }
            }
            if !self.booting {
                self.needs_resync = true;
            }
            self.rewant_home(out);
        } else {
            Self::note(out, format!("partner lost: no heartbeat on either path for {} ms", self.cfg.detect_ms()));
            if !self.booting {
                self.take_over_all(out);
            }
        }
    }

    /// The partner is back (or restarted): try again for home services given up while it
    /// was away (a takeover refused for a stale copy, say). If the partner serves one, the
    /// next reconcile leaves it there; if the witness says only the partner's copy is
    /// current, the partner is asked to serve it first.
    fn rewant_home(&mut self, out: &mut Vec<Command>) {
        let me = self.me;
        for (id, s) in self.services.iter_mut() {
            if s.home == me && !s.want && s.phase == Phase::Idle && s.acquire_sent.is_none() {
                s.want = true;
                s.yielded = false;
                s.requested = false;
                s.retry_at = 0;
                Self::note(out, format!("service {}: partner back; trying for this home service again", id.0));
            }
        }
    }

    fn take_over_all(&mut self, out: &mut Vec<Command>) {
        for (id, s) in self.services.iter_mut() {
            s.requested = false;
            s.released_for_partner = false;
            if !s.want {
                s.want = true;
                s.retry_at = 0;
                Self::note(out, format!("service {}: partner lost; taking it over", id.0));
            }
        }
    }

    fn update_boot(&mut self, now: Millis, out: &mut Vec<Command>) {
        if !self.booting {
            return;
        }
        if self.partner.alive && self.mirror_link_up {
            self.booting = false;
            Self::note(out, "boot: partner heard and mirror link up".to_string());
        } else if now >= self.boot_started + self.cfg.boot_wait_ms {
            self.booting = false;
            Self::note(out, format!("boot: waited {} ms; serving without the partner's mirror", self.cfg.boot_wait_ms));
            if !self.partner.alive {
                self.take_over_all(out);
            }
        }
    }

    fn expire_leases(&mut self, now: Millis, out: &mut Vec<Command>) {
        let margin = self.margin();
        let lease_ms = self.cfg.lease_ms;
        for (id, s) in self.services.iter_mut() {
            if let Some(sent) = s.acquire_sent {
                if now >= sent + lease_ms {
                    s.acquire_sent = None;
                    if s.phase == Phase::Acquiring {
                        s.phase = Phase::Idle;
                    }
                    Self::note(out, format!("service {}: no witness answer in {lease_ms} ms", id.0));
                }
            }
            let Some(l) = s.lease else { continue };
            if now + margin < l.until {
                continue;
            }
            s.lease = None;
            match s.phase {
                Phase::Serving | Phase::Flushing => {
                    out.push(Command::StopServing { service: *id });
                    Self::note(out, format!("service {}: lease not renewed in time; stopped serving (fencing)", id.0));
                }
                _ => Self::note(out, format!("service {}: lease ended", id.0)),
            }
            if s.phase == Phase::Releasing {
                s.released_for_partner = true;
            }
            s.phase = Phase::Idle;
        }
    }

    fn adjust_wants(&mut self, now: Millis, out: &mut Vec<Command>) {
        let me = self.me;
        let alive = self.partner.alive;
        let info = self.partner.info.clone();
        let fully = self.fully_mirrored();
        // Two heartbeat intervals: a fresh report arrives in between and outdates a late one.
        let hold = 2 * self.cfg.heartbeat_interval_ms;
        for (id, s) in self.services.iter_mut() {
            let Some(info) = info.as_ref().filter(|_| alive) else {
                s.yield_idle_since = None;
                continue;
            };
            let asked = info.release_requests.contains(id);
            if asked && s.want && s.phase == Phase::Serving && !s.requested {
                if fully {
                    s.want = false;
                    s.yielded = true;
                    s.refusal = None;
                    Self::note(out, format!("service {}: partner asks for it; handing it over", id.0));
                } else if s.refusal != Some("unmirrored") {
                    s.refusal = Some("unmirrored");
                    Self::note(out, format!("service {}: partner asks for it; refused until the copies are current again", id.0));
                }
            }
            // Released for the partner, it still asks: normal while its acquire is on the way,
            // but if this node last knew the record as "copy stale" (a lease that lapsed
            // unmirrored, then given back), the partner is refused and must be served first.
            let stuck = !s.released_for_partner || s.mark != CopyMark::Current;
            if asked && !s.want && s.phase == Phase::Idle && s.acquire_sent.is_none() && stuck && s.home != me {
                // The partner cannot get its own service (the witness says only this node's
                // copy is current): serve it here first, then hand it back.
                s.want = true;
                s.retry_at = 0;
                Self::note(
                    out,
                    format!("service {}: partner asks for it but this node holds its only current copy; serving it first", id.0),
                );
            }
            if info.released.contains(id) && !s.want && s.phase == Phase::Idle {
                s.want = true;
                s.yielded = false;
                s.retry_at = 0;
                Self::note(out, format!("service {}: released by the partner; acquiring", id.0));
            }
            // A home service left to the partner that the partner dropped (its lease lapsed
            // while it was cut off, and on coming back it let go of what it no longer held):
            // nobody else will pick it up, so try for it again. The witness decides; if only
            // the partner's copy is current, the partner is asked to serve it first.
            let partner_busy = matches!(info.state, HaState::TakingOver | HaState::GivingBack);
            let dropped = s.yielded
                && s.home == me
                && !s.want
                && s.phase == Phase::Idle
                && s.acquire_sent.is_none()
                && !info.serving.contains(id)
                && !partner_busy;
            if !dropped {
                s.yield_idle_since = None;
            } else if now >= *s.yield_idle_since.get_or_insert(now) + hold {
                s.yield_idle_since = None;
                s.want = true;
                s.yielded = false;
                s.requested = false;
                s.retry_at = 0;
                Self::note(out, format!("service {}: the partner no longer serves it; trying for this home service again", id.0));
            }
        }
        // Auto-giveback once everything is mirrored again.
        if let Some(delay) = self.cfg.auto_giveback_ms {
            let holds_partners = self.services.values().any(|s| s.home != me && s.want && s.phase == Phase::Serving);
            if alive && fully && holds_partners {
                let since = *self.stable_since.get_or_insert(now);
                if now >= since + delay {
                    self.stable_since = None;
                    for (id, s) in self.services.iter_mut() {
                        if s.home != me && s.want && s.phase == Phase::Serving {
                            s.want = false;
                            Self::note(out, format!("service {}: auto-giveback after {delay} ms mirrored", id.0));
                        }
                    }
                }
            } else {
                self.stable_since = None;
            }
        }
    }

    fn want_mirrored(&self) -> bool {
        self.booting || (self.partner.alive && self.mirror_link_up)
    }

    fn mirror_goal(&mut self, now: Millis, out: &mut Vec<Command>) {
        let want = self.want_mirrored();
        if want {
            if !self.mirror_mode {
                self.mirror_mode = true;
                out.push(Command::SetMirrorMode { mirrored: true });
                Self::note(out, "partner reachable over the mirror link: mirroring new writes again".to_string());
            }
            if !self.booting && self.needs_resync && self.resync == Resync::Idle && now >= self.resync_retry_at {
                self.resync = Resync::Running;
                // Consumed now: anything that needs a resync while this one runs (a service
                // started meanwhile) sets it again and gets another.
                self.needs_resync = false;
                self.resync_progress = None;
                out.push(Command::StartResync);
                Self::note(out, "resync: copying what changed meanwhile to the partner".to_string());
            }
            if !self.needs_resync && self.resync == Resync::Idle {
                for (id, s) in self.services.iter_mut() {
                    let held = matches!(s.phase, Phase::Serving | Phase::Flushing);
                    if held && s.mark != CopyMark::Current && s.mark_in_flight.is_none() && now >= s.mark_retry_at {
                        s.mark_in_flight = Some(true);
                        out.push(Command::MarkCopy { service: *id, current: true });
                    }
                }
            }
        } else {
            // Going unmirrored: the witness must know the partner's copy is stale before a
            // single write is acknowledged without it.
            for (id, s) in self.services.iter_mut() {
                let held = matches!(s.phase, Phase::Serving | Phase::Flushing | Phase::Ready);
                if held && s.mark != CopyMark::Stale && s.mark_in_flight.is_none() && now >= s.mark_retry_at {
                    s.mark_in_flight = Some(false);
                    out.push(Command::MarkCopy { service: *id, current: false });
                }
            }
            // A "current" mark still in flight could land after this and undo the stale
            // mark: wait for it (then mark stale again) before going unmirrored.
            let all_stale = self
                .services
                .values()
                .all(|s| !matches!(s.phase, Phase::Serving | Phase::Flushing) || (s.mark == CopyMark::Stale && s.mark_in_flight.is_none()));
            if self.mirror_mode && all_stale {
                self.mirror_mode = false;
                self.needs_resync = true;
                out.push(Command::SetMirrorMode { mirrored: false });
                Self::note(out, "witness records the partner's copies stale: acknowledging writes unmirrored".to_string());
            }
        }
    }

    fn drive_services(&mut self, now: Millis, out: &mut Vec<Command>) {
        let half = self.cfg.heartbeat_interval_ms / 2;
        let lease_ms = self.cfg.lease_ms;
        let alive = self.partner.alive;
        let booting = self.booting;
        let mirrored_ok = self.mirror_mode && self.want_mirrored();
        let fully = self.fully_mirrored();
        let info = self.partner.info.clone().filter(|_| alive);
        let needs_resync = &mut self.needs_resync;
        for (id, s) in self.services.iter_mut() {
            // Acquire what is wanted and not held.
            if s.want && s.phase == Phase::Idle && s.acquire_sent.is_none() && now >= s.retry_at {
                let partner_serves = info.as_ref().is_some_and(|i| i.serving.contains(id));
                let partner_released = info.as_ref().is_some_and(|i| i.released.contains(id));
                let partner_booting = info.as_ref().is_some_and(|i| i.state == HaState::Booting);
                let go = if !alive {
                    // Alone: a booting node only takes its home services; later everything.
                    !booting || s.home == self.me
                } else if s.requested {
                    partner_released || (!partner_serves && !partner_booting)
                } else if partner_serves && !partner_released {
                    s.want = false;
                    s.yielded = true;
                    Self::note(out, format!("service {}: the partner serves it; leaving it there until giveback", id.0));
                    false
                } else {
                    true
                };
                if go {
                    s.phase = Phase::Acquiring;
                    s.acquire_sent = Some(now);
                    s.last_renew_sent = now;
                    out.push(Command::Acquire { service: *id, lease_ms });
                }
            }
            // Renew every half interval while the lease is held.
            if s.lease.is_some()
                && matches!(s.phase, Phase::Replaying | Phase::Ready | Phase::Serving | Phase::Flushing)
                && s.acquire_sent.is_none()
                && now >= s.last_renew_sent + half
            {
                s.acquire_sent = Some(now);
                s.last_renew_sent = now;
                out.push(Command::Acquire { service: *id, lease_ms });
            }
            // Start serving once replayed, mirrored or with the copy marked stale.
            if s.phase == Phase::Ready && (mirrored_ok || s.mark == CopyMark::Stale) {
                s.phase = Phase::Serving;
                if s.mark != CopyMark::Current {
                    // This incarnation does not know the partner's copy of it to be
                    // current: resync before marking it current or handing it over.
                    *needs_resync = true;
                }
                out.push(Command::StartServing { service: *id });
                Self::note(out, format!("service {}: serving", id.0));
            }
            if s.phase == Phase::Serving && s.want {
                s.requested = false;
            }
            // Hand over what is no longer wanted: flush first so the image holds every
            // acknowledged write, and only while the partner's copy is current.
            if s.phase == Phase::Serving && !s.want && now >= s.flush_retry_at {
                if fully {
                    s.phase = Phase::Flushing;
                    s.refusal = None;
                    out.push(Command::Flush { service: *id });
                    Self::note(out, format!("service {}: handing over: flushing", id.0));
                } else if s.refusal != Some("handover") {
                    s.refusal = Some("handover");
                    Self::note(out, format!("service {}: hand-over waits until the partner's copy is current", id.0));
                }
            }
        }
    }

    fn derive_state(&mut self, out: &mut Vec<Command>) {
        let me = self.me;
        let svcs = || self.services.values();
        let st = if self.booting {
            HaState::Booting
        } else if svcs().any(|s| s.home != me && !s.want && matches!(s.phase, Phase::Flushing | Phase::Releasing)) {
            HaState::GivingBack
        } else if svcs().any(|s| s.home != me && s.want && s.phase != Phase::Serving) {
            HaState::TakingOver
        } else if self.resync == Resync::Running
            || (self.want_mirrored() && svcs().any(|s| matches!(s.phase, Phase::Serving | Phase::Flushing) && s.mark == CopyMark::Stale))
        {
            HaState::Resyncing
        } else if svcs().any(|s| s.home == me && !s.want && s.phase == Phase::Idle) {
            HaState::TakenOver
        } else if svcs().any(|s| s.home != me && matches!(s.phase, Phase::Serving | Phase::Flushing)) {
            HaState::ServingBoth
        } else if !self.mirror_mode || !self.want_mirrored() {
            HaState::Degraded
        } else {
            HaState::Mirrored
        };
        if st != self.state {
            Self::note(out, format!("state {:?} -> {:?}", self.state, st));
            self.state = st;
        }
    }

    fn info(&self) -> PeerInfo {
        let held = |s: &Svc| matches!(s.phase, Phase::Serving | Phase::Flushing | Phase::Replaying | Phase::Ready | Phase::Releasing);
        PeerInfo {
            node: self.me,
            state: self.state,
            serving: self.serving(),
            release_requests: self.services.iter().filter(|(_, s)| s.want && s.requested && !held(s)).map(|(id, _)| *id).collect(),
            released: self.services.iter().filter(|(_, s)| s.released_for_partner && !s.want).map(|(id, _)| *id).collect(),
            incarnation: self.incarnation,
        }
    }

    fn heartbeats(&mut self, now: Millis, out: &mut Vec<Command>) {
        let info = self.info();
        let changed = self.last_sent.as_ref() != Some(&info);
        if now >= self.next_heartbeat || changed {
            self.next_heartbeat = now + self.cfg.heartbeat_interval_ms;
            out.push(Command::SendHeartbeat { path: Path::Mirror, info: info.clone() });
            out.push(Command::SendHeartbeat { path: Path::Mgmt, info: info.clone() });
            self.last_sent = Some(info);
        }
    }
}
