//! Configuration of the software engine.

use crate::api::EngineError;
use crate::region::MemRegion;
use std::net::SocketAddr;
use std::time::Duration;

/// Default submission ring depth.
pub const DEFAULT_RING_DEPTH: u32 = 1024;
/// Default flow-control window in frames.
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 256;
/// Default flow-control window in bytes.
pub const DEFAULT_MAX_IN_FLIGHT_BYTES: u64 = 16 << 20;
/// Default retransmission timeout.
pub const DEFAULT_RETRANSMIT_TIMEOUT: Duration = Duration::from_millis(50);
/// Default heartbeat interval on an idle link.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(100);

/// Everything a [`super::SoftEngine`] needs.
///
/// Build it with [`SoftConfig::new`] and adjust the public fields; the engine validates
/// it when it starts and reports the first bad field as [`EngineError::Config`].
#[derive(Debug)]
pub struct SoftConfig {
    /// Where the inbound link listens: the partner's sender dials this address and its
    /// frames are written into [`SoftConfig::mirror_window`]. Ignored by
    /// [`super::SoftEngine::start`], which takes an already bound listener.
    pub listen: SocketAddr,
    /// The partner's listener: our sender dials it and sends our entries there.
    pub partner: SocketAddr,
    /// Our own data: payloads are read from it, addressed by DMA address.
    pub host_region: MemRegion,
    /// Where the partner's data lands (usually a file-backed mapping).
    pub mirror_window: MemRegion,
    /// Submission ring depth: entries posted and not yet completed (and polled), at most.
    /// A power of two from 1 to 65536.
    pub ring_depth: u32,
    /// Flow control: data frames sent and not yet acknowledged, at most.
    pub max_in_flight: u32,
    /// Flow control: payload bytes sent and not yet acknowledged, at most (one frame is
    /// always allowed, so this may be below `MAX_PAYLOAD`).
    pub max_in_flight_bytes: u64,
    /// Go back to the oldest unacknowledged frame after this long without progress.
    pub retransmit_timeout: Duration,
    /// Send a heartbeat after this long without sending anything.
    pub heartbeat_interval: Duration,
    /// First wait before redialling the partner after a failed attempt.
    pub reconnect_backoff_min: Duration,
    /// Longest wait between redial attempts (the wait doubles up to this).
    pub reconnect_backoff_max: Duration,
    /// Limit for one connection attempt.
    pub connect_timeout: Duration,
    /// A socket write that makes no progress for this long resets the link; a link that
    /// receives nothing for this long (while heartbeats are sent) is reset too.
    pub io_timeout: Duration,
}

impl SoftConfig {
    /// A configuration with default tuning.
    pub fn new(listen: SocketAddr, partner: SocketAddr, host_region: MemRegion, mirror_window: MemRegion) -> Self {
        SoftConfig {
            listen,
            partner,
            host_region,
            mirror_window,
            ring_depth: DEFAULT_RING_DEPTH,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_in_flight_bytes: DEFAULT_MAX_IN_FLIGHT_BYTES,
            retransmit_timeout: DEFAULT_RETRANSMIT_TIMEOUT,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            reconnect_backoff_min: Duration::from_millis(5),
            reconnect_backoff_max: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(1),
            io_timeout: Duration::from_secs(2),
        }
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), EngineError> {
        fn bad(field: &'static str, reason: impl Into<String>) -> Result<(), EngineError> {
            Err(EngineError::Config { field, reason: reason.into() })
        }
        if self.partner.port() == 0 {
            return bad("partner", "port 0 cannot be dialled");
        }
        if self.partner.ip().is_unspecified() {
            return bad("partner", format!("{} is not an address to dial", self.partner.ip()));
        }
        if !self.ring_depth.is_power_of_two() || self.ring_depth > 1 << 16 {
            return bad("ring_depth", format!("{} is not a power of two from 1 to 65536", self.ring_depth));
        }
        if self.max_in_flight == 0 {
            return bad("max_in_flight", "must be at least 1");
        }
        if self.max_in_flight_bytes == 0 {
            return bad("max_in_flight_bytes", "must be at least 1");
        }
        for (field, d) in [
            ("retransmit_timeout", self.retransmit_timeout),
            ("heartbeat_interval", self.heartbeat_interval),
            ("reconnect_backoff_min", self.reconnect_backoff_min),
            ("connect_timeout", self.connect_timeout),
            ("io_timeout", self.io_timeout),
        ] {
            if d.is_zero() {
                return bad(field, "must be non-zero");
            }
            if d > Duration::from_secs(3600) {
                return bad(field, format!("{d:?} is longer than an hour"));
            }
        }
        if self.reconnect_backoff_max < self.reconnect_backoff_min {
            return bad("reconnect_backoff_max", "must be at least reconnect_backoff_min");
        }
        if self.io_timeout <= self.heartbeat_interval {
            return bad("io_timeout", "must be longer than heartbeat_interval (an idle link would be reset)");
        }
        Ok(())
    }
}

/// The tuning the threads use, copied out of [`SoftConfig`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub ring_depth: usize,
    pub max_in_flight: usize,
    pub max_in_flight_bytes: u64,
    pub rto: Duration,
    pub heartbeat: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub connect_timeout: Duration,
    pub io_timeout: Duration,
}

impl Timing {
    pub fn from_config(c: &SoftConfig) -> Self {
        Timing {
            ring_depth: c.ring_depth as usize,
            max_in_flight: c.max_in_flight as usize,
            max_in_flight_bytes: c.max_in_flight_bytes,
            rto: c.retransmit_timeout,
            heartbeat: c.heartbeat_interval,
            backoff_min: c.reconnect_backoff_min,
            backoff_max: c.reconnect_backoff_max,
            connect_timeout: c.connect_timeout,
            io_timeout: c.io_timeout,
        }
    }

    /// How often the link thread wakes to check its timers while frames are in flight.
    pub fn tick(&self) -> Duration {
        (self.rto.min(self.heartbeat) / 4).clamp(Duration::from_millis(1), Duration::from_millis(20))
    }

    /// How often it wakes on an idle link (heartbeats are due every `heartbeat`).
    pub fn idle_tick(&self) -> Duration {
        (self.heartbeat / 2).max(self.tick())
    }
}
