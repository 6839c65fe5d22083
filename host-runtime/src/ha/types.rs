//! The HA engine's vocabulary: node and service ids, states, events in, commands out.
//!
//! The engine ([`super::engine`]) is pure: the runtime feeds it [`Event`]s (with the time
//! they happened) and executes the [`Command`]s it returns, then feeds back the outcome
//! as further events. Nothing here does I/O, reads a clock or draws a random number, so
//! the same inputs always give the same outputs and tests can assert exact command lists.

use serde::{Deserialize, Serialize};

/// One of the two nodes of a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub u8);

impl NodeId {
    /// The other node of the pair.
    pub fn partner(self) -> NodeId {
        NodeId(1 - self.0.min(1))
    }
}

/// A storage service (an NBD export, a file service): the unit that is owned, mirrored,
/// taken over and given back, with its identities (addresses, FC ports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ServiceId(pub u32);

/// Milliseconds on the runtime's monotonic clock.
pub type Millis = u64;

/// A node's HA state, as `tandem status` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HaState {
    /// Started; has not yet heard from the partner or given up waiting for it.
    Booting,
    /// Partner alive, mirror link up, each node serves its own services mirrored.
    Mirrored,
    /// Partner lost (or the mirror link is down): serving own services unmirrored.
    Degraded,
    /// Acquiring the partner's services and replaying its log.
    TakingOver,
    /// Serving its own and the partner's services.
    ServingBoth,
    /// Handing the partner's services back: flush, stop, release.
    GivingBack,
    /// Copying what changed while the partner was away back to the partner.
    Resyncing,
    /// Alive, but its own services are served by the partner (after a takeover, until
    /// giveback).
    TakenOver,
}

/// Which path a heartbeat came over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Path {
    /// The mirror link (engine heartbeats / link state).
    Mirror,
    /// The management network (UDP).
    Mgmt,
}

/// What a node tells its partner in every heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// Sender.
    pub node: NodeId,
    /// Sender's state.
    pub state: HaState,
    /// Services the sender is serving now.
    pub serving: Vec<ServiceId>,
    /// The sender asks the receiver to release these services (planned takeover by the
    /// sender, or giveback of the sender's own services).
    pub release_requests: Vec<ServiceId>,
    /// The sender has flushed, stopped and released these services at the witness so that
    /// the receiver can acquire them (giveback of the receiver's services, or the sender's
    /// own services after the receiver asked for them). Cleared once the receiver is seen
    /// serving them. Older senders omit it.
    #[serde(default)]
    pub released: Vec<ServiceId>,
    /// Incremented every time the sender process starts.
    pub incarnation: u64,
}

/// Why the witness refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DenyReason {
    /// Another node holds an unexpired lease.
    HeldByOther,
    /// The holder marked the partner's mirror copy stale: taking over would lose
    /// acknowledged writes. Wait for the holder to return.
    CopyStale,
    /// The witness could not be reached (timeout, connection refused).
    Unreachable,
    /// The request named a node or service the witness does not know.
    Invalid,
}

/// A witness answer about one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Grant {
    /// The caller holds the lease until `until` (caller's clock, measured from when the
    /// request was sent). `epoch` increments whenever the holder changes.
    Granted {
        /// Lease end.
        until: Millis,
        /// Ownership epoch.
        epoch: u64,
    },
    /// Refused.
    Denied {
        /// Why.
        reason: DenyReason,
        /// Current holder, if known.
        holder: Option<NodeId>,
    },
}

/// Inputs to the engine. Each carries nothing but facts; the time is passed beside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// Time passed (the runtime ticks at least every heartbeat interval / 4).
    Tick,
    /// A heartbeat arrived on a path.
    Heartbeat {
        /// Path.
        path: Path,
        /// Partner's report.
        info: PeerInfo,
    },
    /// The mirror engine's link went up or down.
    MirrorLink {
        /// Up?
        up: bool,
    },
    /// Answer to [`Command::Acquire`] (also for renewals).
    Acquired {
        /// Service.
        service: ServiceId,
        /// Answer.
        grant: Grant,
    },
    /// Answer to [`Command::Release`].
    Released {
        /// Service.
        service: ServiceId,
        /// Whether the witness confirmed.
        ok: bool,
    },
    /// Answer to [`Command::MarkCopy`].
    CopyMarked {
        /// Service.
        service: ServiceId,
        /// The state recorded.
        current: bool,
        /// Whether the witness confirmed.
        ok: bool,
    },
    /// [`Command::Replay`] finished.
    Replayed {
        /// Service.
        service: ServiceId,
        /// Whether it succeeded.
        ok: bool,
    },
    /// [`Command::Flush`] finished (consistency point for the service).
    Flushed {
        /// Service.
        service: ServiceId,
        /// Whether it succeeded.
        ok: bool,
    },
    /// Resync progress (bytes).
    ResyncProgress {
        /// Done.
        done: u64,
        /// Total.
        total: u64,
    },
    /// [`Command::StartResync`] finished.
    ResyncDone {
        /// Whether it succeeded.
        ok: bool,
    },
    /// Operator: take over the partner's services (planned, the partner is alive).
    OperatorTakeover,
    /// Operator: give the partner's services back.
    OperatorGiveback,
}

/// Outputs of the engine: what the runtime must do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Send a heartbeat with this report on a path.
    SendHeartbeat {
        /// Path.
        path: Path,
        /// Report.
        info: PeerInfo,
    },
    /// Ask the witness for (or to renew) a service's lease.
    Acquire {
        /// Service.
        service: ServiceId,
        /// Lease length.
        lease_ms: Millis,
    },
    /// Tell the witness this node no longer holds the service.
    Release {
        /// Service.
        service: ServiceId,
    },
    /// Record at the witness whether the partner's mirror copy of the service is current.
    /// The runtime must not acknowledge an unmirrored write before `current = false` is
    /// confirmed.
    MarkCopy {
        /// Service.
        service: ServiceId,
        /// Current?
        current: bool,
    },
    /// Acknowledge writes after the local copy only (`false`), or only after the partner's
    /// window has them (`true`).
    SetMirrorMode {
        /// Mirrored?
        mirrored: bool,
    },
    /// Replay the partner's log for the service from this node's mirror window.
    Replay {
        /// Service.
        service: ServiceId,
    },
    /// Start serving: claim identities, open the export.
    StartServing {
        /// Service.
        service: ServiceId,
    },
    /// Stop serving: close the export, release identities. Writes in flight finish first.
    StopServing {
        /// Service.
        service: ServiceId,
    },
    /// Run a consistency point for the service so its image holds every acknowledged write.
    Flush {
        /// Service.
        service: ServiceId,
    },
    /// Copy what changed in this node's region since the partner left to the partner's
    /// window.
    StartResync,
    /// Nothing to do but worth a log line (state changes and refusals).
    Note {
        /// Text.
        text: String,
    },
}
