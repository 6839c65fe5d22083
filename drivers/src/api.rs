//! The engine API: one trait for every backend (soft, sim, vfio).
//!
//! The host runtime owns a [`MemRegion`] of its own data (the host region) and the engine
//! owns the mirror window the partner writes into. To mirror bytes, the runtime writes
//! them into the host region, posts a [`SubmissionEntry`] naming their DMA address and the
//! destination offset in the partner's window, and rings the doorbell. The engine sends
//! them and, once the partner's window holds them, produces one [`CompletionEntry`] per
//! submission entry, in submission order, exactly once.
//!
//! Contract for every backend (checked by [`crate::conformance`]):
//! - completions come in submission order, one per entry, never twice;
//! - an entry completes `Ok` only after the partner's window holds its bytes;
//! - invalid entries (unknown opcode, too long, host range outside the host region)
//!   complete with an error status and are never sent; an entry outside the partner's
//!   window completes `RemoteBounds` and writes nothing;
//! - a lost, corrupt or duplicated frame, or a cut link, delays completions but never
//!   loses, reorders or duplicates them;
//! - a barrier completes after every earlier entry and after the partner flushed its window.

use crate::region::MemRegion;
use std::time::Duration;
use tandem_hsi::{CompletionEntry, Counter, LinkState, SubmissionEntry};

/// What a backend is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineInfo {
    /// Backend name: `soft`, `sim` or `vfio`.
    pub backend: &'static str,
    /// HSI version the engine reports.
    pub hsi_version: u32,
    /// Largest payload per entry.
    pub max_payload: u32,
    /// Submission ring depth (entries that can be posted and not yet completed).
    pub ring_depth: u32,
}

/// Counter values, indexed by [`Counter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CounterSnapshot(pub [u64; Counter::COUNT]);

impl CounterSnapshot {
    /// One counter.
    pub fn get(&self, c: Counter) -> u64 {
        self.0[c as usize]
    }
}

impl std::fmt::Display for CounterSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for c in Counter::ALL {
            let v = self.get(*c);
            if v != 0 {
                if !first {
                    f.write_str(" ")?;
                }
                write!(f, "{}={}", c.name(), v)?;
                first = false;
            }
        }
        Ok(())
    }
}

/// Errors from the engine API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The engine was shut down.
    #[error("engine is shut down")]
    Shutdown,
    /// Bad configuration, with the field that is wrong.
    #[error("invalid engine configuration: {field}: {reason}")]
    Config {
        /// The offending field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The device reports an HSI version this driver cannot drive.
    #[error("engine reports HSI version {found:#010x}; this driver needs major {needed_major} with minor >= {needed_minor}")]
    HsiVersion {
        /// Version found.
        found: u32,
        /// Needed major.
        needed_major: u16,
        /// Needed minor.
        needed_minor: u16,
    },
    /// An operating-system call failed.
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A backend-specific failure.
    #[error("{0}")]
    Backend(String),
}

/// One engine backend. All methods take `&self`; implementations synchronise internally,
/// so one thread may post while another waits for completions.
pub trait Engine: Send + Sync {
    /// What this engine is.
    fn info(&self) -> EngineInfo;

    /// The region the engine reads payloads from (the node's own data).
    fn host_region(&self) -> &MemRegion;

    /// The local mirror window: the partner's data, written by this engine.
    fn mirror_window(&self) -> &MemRegion;

    /// Writes entries into the submission ring. Returns how many were taken: fewer than
    /// `entries.len()` when the ring is full (wait for completions, then post the rest).
    /// Entries become visible to the engine at the next [`Engine::ring_doorbell`].
    fn post(&self, entries: &[SubmissionEntry]) -> Result<usize, EngineError>;

    /// Tells the engine about every entry posted so far.
    fn ring_doorbell(&self) -> Result<(), EngineError>;

    /// Moves up to `max` completions into `out`; returns how many. Never blocks.
    fn poll_completions(&self, out: &mut Vec<CompletionEntry>, max: usize) -> Result<usize, EngineError>;

    /// Blocks until at least one completion is ready or `timeout` passes. Returns whether
    /// one is ready.
    fn wait_completions(&self, timeout: Duration) -> Result<bool, EngineError>;

    /// State of the link to the partner.
    fn link_state(&self) -> LinkState;

    /// Event counters.
    fn counters(&self) -> CounterSnapshot;

    /// Stops the engine: outstanding entries complete `Aborted`, threads exit, sockets close.
    fn shutdown(&self);

    /// Posts every entry, waiting for ring space as needed, then rings the doorbell.
    /// Completions that arrive while waiting for space are appended to `completed`.
    fn post_all(&self, entries: &[SubmissionEntry], completed: &mut Vec<CompletionEntry>, timeout: Duration) -> Result<(), EngineError> {
        let deadline = std::time::Instant::now() + timeout;
        let mut done = 0;
        while done < entries.len() {
            done += self.post(&entries[done..])?;
            if done < entries.len() {
                self.ring_doorbell()?;
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    return Err(EngineError::Backend(format!("submission ring stayed full for {timeout:?}")));
                }
                self.wait_completions(left.min(Duration::from_millis(50)))?;
                self.poll_completions(completed, usize::MAX)?;
            }
        }
        self.ring_doorbell()
    }
}

/// A shared engine is an engine (the runtime holds its engine in an `Arc`).
impl<E: Engine + ?Sized> Engine for std::sync::Arc<E> {
    fn info(&self) -> EngineInfo {
        (**self).info()
    }
    fn host_region(&self) -> &MemRegion {
        (**self).host_region()
    }
    fn mirror_window(&self) -> &MemRegion {
        (**self).mirror_window()
    }
    fn post(&self, entries: &[SubmissionEntry]) -> Result<usize, EngineError> {
        (**self).post(entries)
    }
    fn ring_doorbell(&self) -> Result<(), EngineError> {
        (**self).ring_doorbell()
    }
    fn poll_completions(&self, out: &mut Vec<CompletionEntry>, max: usize) -> Result<usize, EngineError> {
        (**self).poll_completions(out, max)
    }
    fn wait_completions(&self, timeout: Duration) -> Result<bool, EngineError> {
        (**self).wait_completions(timeout)
    }
    fn link_state(&self) -> LinkState {
        (**self).link_state()
    }
    fn counters(&self) -> CounterSnapshot {
        (**self).counters()
    }
    fn shutdown(&self) {
        (**self).shutdown()
    }
}

/// Checks an entry before it is sent, as every backend must: returns the payload's
/// offset in the host region, or the error status its completion carries.
pub fn check_entry(entry: &SubmissionEntry, host: &MemRegion, max_payload: u32) -> Result<u64, tandem_hsi::CompletionStatus> {
    use tandem_hsi::{CompletionStatus, Opcode};
    if entry.length > max_payload {
        return Err(CompletionStatus::TooLong);
    }
    if entry.opcode == Opcode::Barrier {
        return if entry.length == 0 { Ok(0) } else { Err(CompletionStatus::BadOpcode) };
    }
    host.dma_to_offset(entry.host_addr, entry.length.into()).map_err(|_| CompletionStatus::HostBounds)
}
