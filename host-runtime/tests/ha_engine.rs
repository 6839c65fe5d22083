//! The HA engine, one test per transition (docs/ha.md names the rule each one checks).
//! Each test feeds events and asserts the exact commands, Notes and heartbeats left
//! aside where they are not the point (`ops`); heartbeats and Notes have their own tests.

use tandem::ha::engine::{HaConfig, HaEngine, ServiceHome};
use tandem::ha::{Command, DenyReason, Event, Grant, HaState, Millis, NodeId, Path, PeerInfo, ServiceId};

const A: NodeId = NodeId(0);
const B: NodeId = NodeId(1);
/// A's home service.
const SA: ServiceId = ServiceId(1);
/// B's home service.
const SB: ServiceId = ServiceId(2);
const LEASE: Millis = 400;

fn cfg() -> HaConfig {
    HaConfig {
        heartbeat_interval_ms: 100,
        misses: 3,
        lease_ms: LEASE,
        boot_wait_ms: 1000,
        auto_giveback_ms: None,
        services: vec![ServiceHome { service: SA, home: A }, ServiceHome { service: SB, home: B }],
    }
}

/// Commands other than Notes and heartbeats.
fn ops(v: &[Command]) -> Vec<Command> {
    v.iter().filter(|c| !matches!(c, Command::Note { .. } | Command::SendHeartbeat { .. })).cloned().collect()
}

fn notes(v: &[Command]) -> Vec<String> {
    v.iter()
        .filter_map(|c| match c {
            Command::Note { text } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

fn acq(s: ServiceId) -> Command {
    Command::Acquire { service: s, lease_ms: LEASE }
}

fn peer(state: HaState, serving: Vec<ServiceId>, incarnation: u64) -> PeerInfo {
    PeerInfo { node: B, state, serving, release_requests: vec![], released: vec![], incarnation }
}

/// Drives one engine (node A unless told otherwise) with a scripted partner.
struct H {
    e: HaEngine,
    now: Millis,
    /// What the partner reports; sent every 100 ms on `paths` by `tick_to`.
    partner: Option<PeerInfo>,
    paths: Vec<Path>,
    last_partner_hb: Millis,
}

impl H {
    fn new(cfg: HaConfig) -> H {
        H { e: HaEngine::new(cfg, A, 1).expect("config"), now: 0, partner: None, paths: vec![Path::Mirror, Path::Mgmt], last_partner_hb: 0 }
    }

    /// One step at the current time. Every state change must come with a Note.
    fn step(&mut self, ev: Event) -> Vec<Command> {
        let before = self.e.state();
        let out = self.e.step(self.now, ev);
        if self.e.state() != before {
            assert!(
                notes(&out).iter().any(|n| n.starts_with("state ")),
                "state change {before:?} -> {:?} without a Note: {out:?}",
                self.e.state()
            );
        }
        out
    }

    /// Ticks every 25 ms up to `t`, delivering the scripted partner heartbeats and granting
    /// lease renewals at once; returns every other command.
    fn tick_to(&mut self, t: Millis) -> Vec<Command> {
        let mut all = Vec::new();
        while self.now < t {
            self.now = (self.now + 25).min(t);
            if let Some(info) = self.partner.clone() {
                if self.now >= self.last_partner_hb + 100 {
                    self.last_partner_hb = self.now;
                    for p in self.paths.clone() {
                        let out = self.step(Event::Heartbeat { path: p, info: info.clone() });
                        all.extend(self.answer_renewals(out));
                    }
                }
            }
            let out = self.step(Event::Tick);
            all.extend(self.answer_renewals(out));
        }
        all
    }

    fn answer_renewals(&mut self, out: Vec<Command>) -> Vec<Command> {
        let mut rest = Vec::new();
        for c in out {
            match c {
                Command::Acquire { service, lease_ms } if self.e.lease(service).is_some() => {
                    let epoch = self.e.lease(service).map(|l| l.epoch).unwrap_or(1);
                    let more = self.step(Event::Acquired { service, grant: Grant::Granted { until: self.now + lease_ms, epoch } });
                    rest.extend(more);
                }
                c => rest.push(c),
            }
        }
        rest
    }

    fn grant(&mut self, s: ServiceId, epoch: u64) -> Vec<Command> {
        self.step(Event::Acquired { service: s, grant: Grant::Granted { until: self.now + LEASE, epoch } })
    }

    fn deny(&mut self, s: ServiceId, reason: DenyReason, holder: Option<NodeId>) -> Vec<Command> {
        self.step(Event::Acquired { service: s, grant: Grant::Denied { reason, holder } })
    }
}

/// Node A booted alone and serving SA (mirror mode on, still Booting).
fn booted() -> H {
    let mut h = H::new(cfg());
    h.step(Event::Tick);
    h.grant(SA, 1);
    h.step(Event::Replayed { service: SA, ok: true });
    h
}

/// Node A Mirrored with B alive (serving SB), SA served, copies current.
fn mirrored() -> H {
    let mut h = booted();
    h.step(Event::MirrorLink { up: true });
    h.partner = Some(peer(HaState::Mirrored, vec![SB], 1));
    h.last_partner_hb = 0;
    h.step(Event::Heartbeat { path: Path::Mgmt, info: peer(HaState::Mirrored, vec![SB], 1) });
    h.step(Event::ResyncDone { ok: true });
    h.step(Event::CopyMarked { service: SA, current: true, ok: true });
    assert_eq!(h.e.state(), HaState::Mirrored);
    h
}

/// Node A after taking over SB from a dead B: ServingBoth, unmirrored.
fn serving_both() -> H {
    let mut h = mirrored();
    h.partner = None;
    h.tick_to(300);
    h.step(Event::CopyMarked { service: SA, current: false, ok: true });
    h.grant(SB, 2);
    h.step(Event::Replayed { service: SB, ok: true });
    h.step(Event::CopyMarked { service: SB, current: false, ok: true });
    assert_eq!(h.e.state(), HaState::ServingBoth);
    assert!(!h.e.mirrored());
    h
}

// ------------------------------------------------------------------ config

/// docs/ha.md "Configuration": the lease must outlast failure detection.
#[test]
fn config_lease_shorter_than_detection_is_refused() {
    let mut c = cfg();
    c.lease_ms = 300;
    let err = HaEngine::new(c, A, 1).expect_err("lease 300 = 3 x 100 must be refused");
    let text = err.to_string();
    assert!(text.contains("lease_ms = 300") && text.contains("3 x 100 = 300"), "{text}");
    let mut c = cfg();
    c.services.push(ServiceHome { service: SA, home: B });
    assert!(HaEngine::new(c, A, 1).expect_err("duplicate").to_string().contains("listed twice"));
}

// ------------------------------------------------------------------ booting

/// "Booting": the first step sets mirror mode on and asks for the home services' leases.
#[test]
fn boot_acquires_home_services_only() {
    let mut h = H::new(cfg());
    let out = h.step(Event::Tick);
    assert_eq!(ops(&out), vec![Command::SetMirrorMode { mirrored: true }, acq(SA)]);
    assert_eq!(h.e.state(), HaState::Booting);
}

/// "Booting": a granted home service is replayed, then served (mirrored mode, writes wait
/// for the mirror until boot ends).
#[test]
fn boot_grant_replays_then_serves() {
    let mut h = H::new(cfg());
    h.step(Event::Tick);
    h.now = 10;
    assert_eq!(ops(&h.grant(SA, 1)), vec![Command::Replay { service: SA }]);
    assert_eq!(ops(&h.step(Event::Replayed { service: SA, ok: true })), vec![Command::StartServing { service: SA }]);
    assert_eq!(h.e.serving(), vec![SA]);
    // Measured from the request (sent at 0), not from the answer (10).
    assert_eq!(h.e.lease(SA).map(|l| (l.until, l.epoch)), Some((400, 1)));
}

/// "Booting" -> "Resyncing" -> "Mirrored": partner heard and link up; a new incarnation
/// resyncs its own region and marks its copies current.
#[test]
fn boot_partner_heard_resyncs_then_mirrored() {
    let mut h = booted();
    h.step(Event::MirrorLink { up: true });
    let out = h.step(Event::Heartbeat { path: Path::Mirror, info: peer(HaState::Mirrored, vec![SB], 1) });
    assert_eq!(ops(&out), vec![Command::StartResync]);
    assert_eq!(h.e.state(), HaState::Resyncing);
    assert_eq!(ops(&h.step(Event::ResyncDone { ok: true })), vec![Command::MarkCopy { service: SA, current: true }]);
    let out = h.step(Event::CopyMarked { service: SA, current: true, ok: true });
    assert_eq!(ops(&out), vec![]);
    assert_eq!(h.e.state(), HaState::Mirrored);
}

/// "Booting" -> "Degraded": nobody heard within the boot wait: mark the copy stale, then
/// (only after confirmation) go unmirrored; try the partner's services too.
#[test]
fn boot_wait_expires_alone() {
    let mut h = booted();
    let out = h.tick_to(975);
    assert_eq!(ops(&out), vec![]);
    let out = h.tick_to(1000);
    assert_eq!(ops(&out), vec![Command::MarkCopy { service: SA, current: false }, acq(SB)]);
    assert!(h.e.mirrored(), "no unmirrored ack before the witness confirmed");
    let out = h.step(Event::CopyMarked { service: SA, current: false, ok: true });
    assert_eq!(ops(&out), vec![Command::SetMirrorMode { mirrored: false }]);
    // SB: never granted (B holds it): the takeover keeps retrying in the background.
    h.deny(SB, DenyReason::CopyStale, Some(B));
    assert_eq!(h.e.state(), HaState::Degraded);
}

/// "Booting": a home service the witness says the partner holds stays there (TakenOver).
#[test]
fn boot_home_service_held_by_partner_is_taken_over() {
    let mut h = H::new(cfg());
    h.step(Event::Tick);
    h.step(Event::MirrorLink { up: true });
    h.step(Event::Heartbeat { path: Path::Mgmt, info: peer(HaState::ServingBoth, vec![SA, SB], 1) });
    let out = h.deny(SA, DenyReason::HeldByOther, Some(B));
    assert!(notes(&out).iter().any(|n| n.contains("held by node 1")), "{out:?}");
    assert_eq!(ops(&h.step(Event::ResyncDone { ok: true })), vec![]);
    h.now = 50;
    h.step(Event::Tick);
    assert_eq!(h.e.state(), HaState::TakenOver);
    assert!(h.e.serving().is_empty());
}

// ------------------------------------------------------------------ heartbeats

/// "Heartbeats": both paths, every interval, carrying the report.
#[test]
fn heartbeats_on_both_paths_every_interval() {
    let mut h = mirrored();
    let out = h.tick_to(100);
    let hb: Vec<_> = out.iter().filter(|c| matches!(c, Command::SendHeartbeat { .. })).cloned().collect();
    let info =
        PeerInfo { node: A, state: HaState::Mirrored, serving: vec![SA], release_requests: vec![], released: vec![], incarnation: 1 };
    assert_eq!(
        hb,
        vec![Command::SendHeartbeat { path: Path::Mirror, info: info.clone() }, Command::SendHeartbeat { path: Path::Mgmt, info }]
    );
    let out = h.tick_to(175);
    assert!(!out.iter().any(|c| matches!(c, Command::SendHeartbeat { .. })), "no heartbeat before the interval: {out:?}");
    let out = h.tick_to(200);
    assert_eq!(out.iter().filter(|c| matches!(c, Command::SendHeartbeat { .. })).count(), 2);
}

/// "Mirror link down, partner alive": Mgmt heartbeats keep arriving: Degraded, never a
/// takeover.
#[test]
fn mirror_link_down_with_mgmt_alive_degrades_without_takeover() {
    let mut h = mirrored();
    h.paths = vec![Path::Mgmt];
    let out = h.step(Event::MirrorLink { up: false });
    assert_eq!(ops(&out), vec![Command::MarkCopy { service: SA, current: false }]);
    let out = h.step(Event::CopyMarked { service: SA, current: false, ok: true });
    assert_eq!(ops(&out), vec![Command::SetMirrorMode { mirrored: false }]);
    let out = h.tick_to(2000);
    assert_eq!(ops(&out), vec![], "a live partner is never taken over");
    assert!(h.e.partner().alive);
    assert_eq!(h.e.state(), HaState::Degraded);
    // Link back: mirror again, resync, mark current.
    let out = h.step(Event::MirrorLink { up: true });
    assert_eq!(ops(&out), vec![Command::SetMirrorMode { mirrored: true }, Command::StartResync]);
    assert_eq!(ops(&h.step(Event::ResyncDone { ok: true })), vec![Command::MarkCopy { service: SA, current: true }]);
    h.step(Event::CopyMarked { service: SA, current: true, ok: true });
    assert_eq!(h.e.state(), HaState::Mirrored);
}

// ------------------------------------------------------------------ partner lost

/// "Partner lost": silence on both paths for 3 x 100 ms. Mark stale first; mirror mode
/// goes off only once the witness confirmed; the partner's services are acquired.
#[test]
fn partner_lost_marks_stale_before_unmirrored_and_takes_over() {
    let mut h = mirrored();
    h.partner = None;
    let out = h.tick_to(275);
    assert_eq!(ops(&out), vec![]);
    assert!(h.e.partner().alive);
    let out = h.tick_to(300);
    assert_eq!(ops(&out), vec![Command::MarkCopy { service: SA, current: false }, acq(SB)]);
    assert!(h.e.mirrored());
    assert_eq!(h.e.state(), HaState::TakingOver);
    let out = h.step(Event::CopyMarked { service: SA, current: false, ok: true });
    assert_eq!(ops(&out), vec![Command::SetMirrorMode { mirrored: false }]);
}

/// "Takeover": Granted -> Replay; Replayed -> mark SB's copy stale (unmirrored) ->
/// StartServing -> ServingBoth.
#[test]
fn takeover_granted_replays_marks_and_serves() {
    let mut h = mirrored();
    h.partner = None;
    h.tick_to(300);
    h.step(Event::CopyMarked { service: SA, current: false, ok: true });
    assert_eq!(ops(&h.grant(SB, 2)), vec![Command::Replay { service: SB }]);
    assert_eq!(ops(&h.step(Event::Replayed { service: SB, ok: true })), vec![Command::MarkCopy { service: SB, current: false }]);
    assert_eq!(h.e.serving(), vec![SA], "SB not served before its copy is marked stale");
    assert_eq!(ops(&h.step(Event::CopyMarked { service: SB, current: false, ok: true })), vec![Command::StartServing { service: SB }]);
    assert_eq!(h.e.state(), HaState::ServingBoth);
    assert_eq!(h.e.serving(), vec![SA, SB]);
}

/// "Takeover refused, copy stale": stay Degraded, say why, do not retry.
#[test]
fn takeover_denied_copy_stale_stays_degraded() {
    let mut h = mirrored();
    h.partner = None;
    h.tick_to(300);
    h.step(Event::CopyMarked { service: SA, current: false, ok: true });
    let out = h.deny(SB, DenyReason::CopyStale, Some(B));
    assert!(notes(&out).iter().any(|n| n.contains("would lose acknowledged writes")), "{out:?}");
    assert_eq!(h.e.state(), HaState::Degraded);
    assert_eq!(ops(&h.tick_to(3000)), vec![]);
}

/// "Takeover refused, held": retry once the partner's lease should have run out.
#[test]
fn takeover_denied_held_retries_after_lease() {
    let mut h = mirrored();
    h.partner = None;
    h.tick_to(300);
    h.step(Event::CopyMarked { service: SA, current: false, ok: true });
    h.deny(SB, DenyReason::HeldByOther, Some(B));
    // Last heartbeat at 0: retry at 0 + 400 + 50.
    assert_eq!(ops(&h.tick_to(425)), vec![]);
    assert_eq!(ops(&h.tick_to(450)), vec![acq(SB)]);
    assert_eq!(h.e.state(), HaState::TakingOver);
}

// ------------------------------------------------------------------ leases

/// "Leases": renewed every interval / 2 while held.
#[test]
fn lease_renewed_every_half_interval() {
    let mut h = booted();
    h.now = 25;
    assert_eq!(ops(&h.step(Event::Tick)), vec![]);
    h.now = 50;
    assert_eq!(ops(&h.step(Event::Tick)), vec![acq(SA)]);
    h.now = 75;
    assert_eq!(ops(&h.step(Event::Tick)), vec![], "one renewal in flight at a time");
}

/// "Fencing": a renewal that is not granted stops the service before the lease ends (at
/// until - interval / 4, so a tick every interval / 4 always catches it).
#[test]
fn unrenewed_lease_stops_serving_before_it_ends() {
    let mut h = booted();
    // Lease until 400 (granted at 0). Renewals are denied (witness unreachable).
    for t in (25..=350).step_by(25) {
        h.now = t;
        let out = h.step(Event::Tick);
        for c in ops(&out) {
            assert_eq!(c, acq(SA), "at {t}");
            h.deny(SA, DenyReason::Unreachable, None);
        }
        assert_eq!(h.e.serving(), vec![SA], "still inside the lease at {t}");
    }
    h.now = 375;
    let out = h.step(Event::Tick);
    assert_eq!(ops(&out)[0], Command::StopServing { service: SA });
    assert!(h.e.serving().is_empty());
    assert!(notes(&out).iter().any(|n| n.contains("fencing")));
}

/// "Leases are measured from the send time": a grant that claims more is cut back.
#[test]
fn lease_end_is_counted_from_the_request() {
    let mut h = H::new(cfg());
    h.step(Event::Tick); // acquire sent at 0
    h.now = 100;
    h.step(Event::Acquired { service: SA, grant: Grant::Granted { until: 500, epoch: 1 } });
    assert_eq!(h.e.lease(SA).map(|l| l.until), Some(400));
}

// ------------------------------------------------------------------ planned takeover

/// "Planned takeover", asking side: release requested in heartbeats; acquire once the
/// partner released; replay; serve (mirrored, no stale mark).
#[test]
fn planned_takeover_requester() {
    let mut h = mirrored();
    let out = h.step(Event::OperatorTakeover);
    let hb = out.iter().find_map(|c| match c {
        Command::SendHeartbeat { info, .. } => Some(info.clone()),
        _ => None,
    });
    assert_eq!(hb.map(|i| i.release_requests), Some(vec![SB]), "{out:?}");
    assert_eq!(ops(&out), vec![]);
    assert_eq!(h.e.state(), HaState::TakingOver);
    let released = PeerInfo { released: vec![SB], ..peer(HaState::TakenOver, vec![], 1) };
    h.partner = Some(released.clone());
    let out = h.step(Event::Heartbeat { path: Path::Mirror, info: released });
    assert_eq!(ops(&out), vec![acq(SB)]);
    assert_eq!(ops(&h.grant(SB, 2)), vec![Command::Replay { service: SB }]);
    assert_eq!(ops(&h.step(Event::Replayed { service: SB, ok: true })), vec![Command::StartServing { service: SB }]);
    assert_eq!(h.e.state(), HaState::ServingBoth);
    assert!(h.e.mirrored());
}

/// "Planned takeover", releasing side: flush, stop, release; then TakenOver and the
/// service is listed as released for the partner.
#[test]
fn planned_takeover_releaser() {
    let mut h = mirrored();
    let asks = PeerInfo { release_requests: vec![SA], ..peer(HaState::TakingOver, vec![SB], 1) };
    h.partner = Some(asks.clone());
    let out = h.step(Event::Heartbeat { path: Path::Mgmt, info: asks });
    assert_eq!(ops(&out), vec![Command::Flush { service: SA }]);
    let out = h.step(Event::Flushed { service: SA, ok: true });
    assert_eq!(ops(&out), vec![Command::StopServing { service: SA }, Command::Release { service: SA }]);
    assert!(h.e.serving().is_empty());
    let out = h.step(Event::Released { service: SA, ok: true });
    let info = out.iter().find_map(|c| match c {
        Command::SendHeartbeat { info, .. } => Some(info.clone()),
        _ => None,
    });
    assert_eq!(info.map(|i| (i.state, i.released)), Some((HaState::TakenOver, vec![SA])));
    assert_eq!(ops(&h.tick_to(2000)), vec![], "a taken-over node does not grab its service back");
}

/// "Hand-over only when mirrored": a release request while the partner's copy is stale
/// is refused (with a Note) until resync.
#[test]
fn release_request_refused_while_unmirrored() {
    let mut h = mirrored();
    h.paths = vec![Path::Mgmt];
    h.step(Event::MirrorLink { up: false });
    h.step(Event::CopyMarked { service: SA, current: false, ok: true });
    let asks = PeerInfo { release_requests: vec![SA], ..peer(HaState::TakingOver, vec![SB], 1) };
    h.partner = Some(asks.clone());
    let out = h.step(Event::Heartbeat { path: Path::Mgmt, info: asks });
    assert_eq!(ops(&out), vec![]);
    assert!(notes(&out).iter().any(|n| n.contains("refused")), "{out:?}");
    assert_eq!(h.e.serving(), vec![SA]);
}

// ------------------------------------------------------------------ partner returns

/// "Partner returns": new incarnation while serving both unmirrored: mirror again, resync,
/// then mark every served copy current.
#[test]
fn partner_returns_resync_then_current() {
    let mut h = serving_both();
    h.step(Event::MirrorLink { up: true });
    let out = h.step(Event::Heartbeat { path: Path::Mgmt, info: peer(HaState::Booting, vec![], 2) });
    assert_eq!(ops(&out), vec![Command::SetMirrorMode { mirrored: true }, Command::StartResync]);
    assert_eq!(h.e.state(), HaState::Resyncing);
    let out = h.step(Event::ResyncDone { ok: true });
    assert_eq!(ops(&out), vec![Command::MarkCopy { service: SA, current: true }, Command::MarkCopy { service: SB, current: true }]);
    h.step(Event::CopyMarked { service: SA, current: true, ok: true });
    h.step(Event::CopyMarked { service: SB, current: true, ok: true });
    assert_eq!(h.e.state(), HaState::ServingBoth);
}

// ------------------------------------------------------------------ giveback

fn resynced_serving_both() -> H {
    let mut h = serving_both();
    h.step(Event::MirrorLink { up: true });
    h.partner = Some(peer(HaState::TakenOver, vec![], 2));
    h.last_partner_hb = h.now;
    h.step(Event::Heartbeat { path: Path::Mgmt, info: peer(HaState::TakenOver, vec![], 2) });
    h.step(Event::ResyncDone { ok: true });
    h.step(Event::CopyMarked { service: SA, current: true, ok: true });
    h.step(Event::CopyMarked { service: SB, current: true, ok: true });
    h
}

/// "Giveback": flush, stop, release -> GivingBack -> Mirrored; SB listed as released.
#[test]
fn operator_giveback() {
    let mut h = resynced_serving_both();
    let out = h.step(Event::OperatorGiveback);
    assert_eq!(ops(&out), vec![Command::Flush { service: SB }]);
    assert_eq!(h.e.state(), HaState::GivingBack);
    assert_eq!(
        ops(&h.step(Event::Flushed { service: SB, ok: true })),
        vec![Command::StopServing { service: SB }, Command::Release { service: SB }]
    );
    let out = h.step(Event::Released { service: SB, ok: true });
    assert_eq!(h.e.state(), HaState::Mirrored);
    let info = out.iter().find_map(|c| match c {
        Command::SendHeartbeat { info, .. } => Some(info.clone()),
        _ => None,
    });
    assert_eq!(info.map(|i| i.released), Some(vec![SB]));
}

/// "Auto-giveback": after the configured delay of being mirrored again.
#[test]
fn auto_giveback_after_delay() {
    let mut c = cfg();
    c.auto_giveback_ms = Some(1000);
    let mut h = H::new(c);
    // Same path as serving_both + resync, with auto-giveback on.
    h.step(Event::Tick);
    h.grant(SA, 1);
    h.step(Event::Replayed { service: SA, ok: true });
    h.tick_to(1000);
    h.step(Event::CopyMarked { service: SA, current: false, ok: true });
    h.grant(SB, 2);
    h.step(Event::Replayed { service: SB, ok: true });
    h.step(Event::CopyMarked { service: SB, current: false, ok: true });
    assert_eq!(h.e.state(), HaState::ServingBoth);
    h.step(Event::MirrorLink { up: true });
    h.partner = Some(peer(HaState::TakenOver, vec![], 2));
    h.last_partner_hb = h.now;
    h.step(Event::Heartbeat { path: Path::Mgmt, info: peer(HaState::TakenOver, vec![], 2) });
    h.step(Event::ResyncDone { ok: true });
    h.step(Event::CopyMarked { service: SA, current: true, ok: true });
    let start = h.now;
    let out = h.step(Event::CopyMarked { service: SB, current: true, ok: true });
    assert_eq!(ops(&out), vec![]);
    assert_eq!(ops(&h.tick_to(start + 975)), vec![]);
    let out = h.tick_to(start + 1000);
    assert_eq!(ops(&out), vec![Command::Flush { service: SB }]);
}

/// "Giveback", receiving side: the partner lists our home service as released: acquire,
/// replay, serve.
#[test]
fn giveback_receiver_acquires_released_home_service() {
    let mut h = H::new(cfg());
    h.step(Event::Tick);
    h.step(Event::MirrorLink { up: true });
    h.step(Event::Heartbeat { path: Path::Mgmt, info: peer(HaState::ServingBoth, vec![SA, SB], 1) });
    h.deny(SA, DenyReason::HeldByOther, Some(B));
    h.step(Event::ResyncDone { ok: true });
    assert_eq!(h.e.state(), HaState::TakenOver);
    let back = PeerInfo { released: vec![SA], ..peer(HaState::Mirrored, vec![SB], 1) };
    let out = h.step(Event::Heartbeat { path: Path::Mgmt, info: back });
    assert_eq!(ops(&out), vec![acq(SA)]);
    assert_eq!(ops(&h.grant(SA, 3)), vec![Command::Replay { service: SA }]);
    assert_eq!(ops(&h.step(Event::Replayed { service: SA, ok: true })), vec![Command::StartServing { service: SA }]);
    assert_eq!(h.e.state(), HaState::Mirrored);
}

// ------------------------------------------------------------------ refusals

/// "Refusals": operator commands that cannot apply are refused with a Note.
#[test]
fn operator_commands_refused_when_partner_dead() {
    let mut h = booted();
    let out = h.step(Event::OperatorTakeover);
    assert_eq!(ops(&out), vec![]);
    assert!(notes(&out).iter().any(|n| n.starts_with("takeover refused")), "{out:?}");
    let out = h.step(Event::OperatorGiveback);
    assert!(notes(&out).iter().any(|n| n.starts_with("giveback refused")), "{out:?}");
}

/// The engine is deterministic: the same inputs give the same outputs.
#[test]
fn same_inputs_same_outputs() {
    let run = || {
        let mut h = serving_both();
        let mut all = h.tick_to(2000);
        all.extend(h.step(Event::OperatorGiveback));
        all
    };
    assert_eq!(run(), run());
}
