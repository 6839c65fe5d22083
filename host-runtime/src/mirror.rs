//! Ticketed submission over an [`Engine`]: the one place the runtime posts entries and
//! waits for their completions.
//!
//! Every entry gets a ticket (a 64-bit count of entries submitted through this mirror; its
//! low 32 bits are the entry's cookie). Backends complete entries in submission order,
//! exactly once, so the mirror keeps just "completed up to ticket N" plus the tickets
//! that completed with an error. A waiting thread polls the engine itself when no other
//! thread is polling (leader/follower), so an acknowledgement reaches the waiter without
//! an extra thread hop.

use crate::dirty::DirtyMap;
use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tandem_drivers::{Engine, EngineError};
use tandem_hsi::{CompletionEntry, CompletionStatus, Opcode, SubmissionEntry};

/// Why mirrored bytes are not acknowledged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MirrorError {
    /// The partner did not acknowledge in time.
    #[error("partner did not acknowledge within {0:?} (link down or partner stopped)")]
    Timeout(Duration),
    /// An entry completed with an error.
    #[error("mirror entry (ticket {ticket}) completed with status {status}")]
    Failed {
        /// Ticket.
        ticket: u64,
        /// Status.
        status: CompletionStatus,
    },
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A backend broke the completion contract.
    #[error("engine completed cookie {got:#x} where {expected:#x} was next: completions out of order")]
    OutOfOrder {
        /// Expected cookie.
        expected: u32,
        /// Received cookie.
        got: u32,
    },
}

/// How many tickets back a failure stays visible.
const FAILED_HISTORY: u64 = 1 << 20;

#[derive(Debug, Default)]
struct State {
    submitted: u64,
    completed: u64,
    failed: BTreeMap<u64, CompletionStatus>,
    broken: Option<(u32, u32)>,
}

/// A byte range of the host region to copy to the same offset of the partner's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// What it is.
    pub opcode: Opcode,
    /// Service tag carried with it.
    pub service_tag: u32,
    /// Offset in the host region (and in the partner's window).
    pub offset: u64,
    /// Length (split into entries of at most the engine's max payload).
    pub len: u64,
}

/// The tickets of one submission: `first..=last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tickets {
    /// First ticket.
    pub first: u64,
    /// Last ticket.
    pub last: u64,
}

impl Tickets {
    /// A submission that needed no engine entries (local-only mode): already complete.
    pub const NONE: Tickets = Tickets { first: 0, last: 0 };
}

/// See the module docs.
pub struct Mirror {
    engine: Arc<dyn Engine>,
    state: Mutex<State>,
    cv: Condvar,
    poller: Mutex<()>,
    post: Mutex<()>,
    max_payload: u64,
    ack_timeout_ns: std::sync::atomic::AtomicU64,
    /// `Some` while acknowledging without the partner: what changed meanwhile.
    local_only: Mutex<Option<DirtyMap>>,
}

/// Whether writes wait for the partner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MirrorMode {
    /// Acknowledged once the partner's window holds them.
    Mirrored,
    /// Acknowledged once in the local region; changed ranges are tracked for resync.
    LocalOnly,
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirror").field("backend", &self.engine.info().backend).field("state", &*self.lock()).finish()
    }
}

impl Mirror {
    /// Wraps an engine.
    pub fn new(engine: Arc<dyn Engine>, ack_timeout: Duration) -> Self {
        let max_payload = engine.info().max_payload.into();
        Mirror {
            engine,
            state: Mutex::default(),
            cv: Condvar::new(),
            poller: Mutex::new(()),
            post: Mutex::new(()),
            max_payload,
            ack_timeout_ns: std::sync::atomic::AtomicU64::new(ack_timeout.as_nanos() as u64),
            local_only: Mutex::new(None),
        }
    }

    /// Current mode.
    pub fn mode(&self) -> MirrorMode {
        match *self.local_only.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(_) => MirrorMode::LocalOnly,
            None => MirrorMode::Mirrored,
        }
    }

    /// Stops waiting for the partner: later submissions are acknowledged at once and their
    /// ranges marked for resync. The HA engine calls this only after the witness recorded
    /// that the partner's copy is stale.
    pub fn set_local_only(&self) {
        let _order = self.post.lock().unwrap_or_else(|e| e.into_inner());
        let mut lo = self.local_only.lock().unwrap_or_else(|e| e.into_inner());
        if lo.is_none() {
            *lo = Some(DirtyMap::new(self.engine.host_region().len()));
        }
    }

    /// Waits for the partner again: later submissions are mirrored. Returns what changed
    /// while local-only, for [`Mirror::resync`].
    pub fn set_mirrored(&self) -> DirtyMap {
        let _order = self.post.lock().unwrap_or_else(|e| e.into_inner());
        let taken = self.local_only.lock().unwrap_or_else(|e| e.into_inner()).take();
        taken.unwrap_or_else(|| DirtyMap::new(self.engine.host_region().len()))
    }

    /// Copies the marked ranges of the host region to the partner's window, in batches,
    /// reporting `(bytes done, bytes total)`, then a barrier. Call it in mirrored mode:
    /// writes made meanwhile are mirrored themselves, and each range is read from the host
    /// region when it is sent, so the partner ends with the current bytes.
    pub fn resync(&self, dirty: &DirtyMap, mut progress: impl FnMut(u64, u64)) -> Result<(), MirrorError> {
        let total = dirty.bytes();
        let mut done = 0;
        progress(0, total);
        for batch in dirty.ranges().chunks(64) {
            let spans: Vec<Span> = batch.iter().map(|&(offset, len)| Span { opcode: Opcode::Page, service_tag: 0, offset, len }).collect();
            self.mirror(&spans)?;
            done += batch.iter().map(|(_, l)| l).sum::<u64>();
            progress(done, total);
        }
        self.mirror(&[Span { opcode: Opcode::Barrier, service_tag: 0, offset: 0, len: 0 }])?;
        Ok(())
    }

    /// How long a waiter waits for the partner before giving up.
    pub fn ack_timeout(&self) -> Duration {
        Duration::from_nanos(self.ack_timeout_ns.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Changes the acknowledgement timeout.
    pub fn set_ack_timeout(&self, d: Duration) {
        self.ack_timeout_ns.store(d.as_nanos() as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// Largest payload of one entry; longer spans are split.
    pub fn max_payload(&self) -> u64 {
        self.max_payload
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<dyn Engine> {
        &self.engine
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Splits spans into entries and submits them; returns their tickets.
    /// Entries are posted in call order across threads.
    pub fn submit(&self, spans: &[Span]) -> Result<Tickets, MirrorError> {
        self.submit_inner(spans, false)
    }

    /// Submits spans to the engine even in local-only mode, without marking them for
    /// resync: for the status block (heartbeats over the mirror link), which is rewritten
    /// every interval anyway.
    pub fn submit_always(&self, spans: &[Span]) -> Result<Tickets, MirrorError> {
        self.submit_inner(spans, true)
    }

    /// Takes whatever completions are ready without waiting (when no other thread is
    /// polling), so entries nobody waits for do not hold ring slots.
    pub fn reap(&self) -> Result<(), MirrorError> {
        if let Ok(p) = self.poller.try_lock() {
            let mut buf = Vec::new();
            self.engine.poll_completions(&mut buf, usize::MAX)?;
            self.absorb(&buf);
            drop(p);
        }
        Ok(())
    }

    fn submit_inner(&self, spans: &[Span], always: bool) -> Result<Tickets, MirrorError> {
        let _order = self.post.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(dirty) = self.local_only.lock().unwrap_or_else(|e| e.into_inner()).as_mut().filter(|_| !always) {
            for s in spans {
                dirty.mark(s.offset, s.len);
            }
            return Ok(Tickets::NONE);
        }
        let base = self.engine.host_region().dma_base();
        let mut ticket = self.lock().submitted;
        let first = ticket + 1;
        let mut entries = Vec::new();
        for s in spans {
            let mut done = 0;
            loop {
                let len = (s.len - done).min(self.max_payload);
                ticket += 1;
                entries.push(SubmissionEntry {
                    opcode: s.opcode,
                    service_tag: s.service_tag,
                    host_addr: base + s.offset + done,
                    window_offset: s.offset + done,
                    length: len as u32,
                    cookie: ticket as u32,
                });
                done += len;
                if done >= s.len {
                    break;
                }
            }
        }
        let deadline = Instant::now() + self.ack_timeout();
        let mut posted = 0;
        let res = loop {
            match self.engine.post(&entries[posted..]) {
                Ok(n) => posted += n,
                Err(e) => break Err(MirrorError::Engine(e)),
            }
            if let Err(e) = self.engine.ring_doorbell() {
                break Err(MirrorError::Engine(e));
            }
            if posted == entries.len() {
                break Ok(());
            }
            // Ring full: take completions to make room.
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break Err(MirrorError::Timeout(self.ack_timeout()));
            }
            if let Err(e) = self.poll_once(left) {
                break Err(e);
            }
        };
        self.lock().submitted = first - 1 + posted as u64;
        res?;
        Ok(Tickets { first, last: ticket })
    }

    /// Submits a barrier; returns its ticket.
    pub fn submit_barrier(&self) -> Result<Tickets, MirrorError> {
        self.submit(&[Span { opcode: Opcode::Barrier, service_tag: 0, offset: 0, len: 0 }])
    }

    fn absorb(&self, done: &[CompletionEntry]) {
        if done.is_empty() {
            return;
        }
        let mut st = self.lock();
        for c in done {
            let expected = (st.completed + 1) as u32;
            if c.cookie != expected && st.broken.is_none() {
                tracing::error!(expected, got = c.cookie, "engine completed out of order");
                st.broken = Some((expected, c.cookie));
            }
            st.completed += 1;
            if c.status != CompletionStatus::Ok {
                let t = st.completed;
                st.failed.insert(t, c.status);
            }
        }
        // Failures stay visible to their waiters (several may look) for a long while, then go.
        let keep_from = st.completed.saturating_sub(FAILED_HISTORY);
        while st.failed.first_key_value().is_some_and(|(t, _)| *t < keep_from) {
            st.failed.pop_first();
        }
        drop(st);
        self.cv.notify_all();
    }

    /// Highest ticket completed so far.
    pub fn completed(&self) -> u64 {
        self.lock().completed
    }

    /// Entries submitted and not yet completed: how far the partner's copy lags behind.
    pub fn lag(&self) -> u64 {
        let st = self.lock();
        st.submitted.saturating_sub(st.completed)
    }

    /// Waits until every ticket up to `tickets.last` completed; errors if any of
    /// `tickets` failed (reporting the first).
    pub fn wait(&self, tickets: Tickets) -> Result<(), MirrorError> {
        let Tickets { first, last: ticket } = tickets;
        let deadline = Instant::now() + self.ack_timeout();
        let mut buf = Vec::with_capacity(64);
        loop {
            {
                let st = self.lock();
                if let Some((expected, got)) = st.broken {
                    return Err(MirrorError::OutOfOrder { expected, got });
                }
                if st.completed >= ticket {
                    return match st.failed.range(first..=ticket).next() {
                        Some((&ticket, &status)) => Err(MirrorError::Failed { ticket, status }),
                        None => Ok(()),
                    };
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(MirrorError::Timeout(self.ack_timeout()));
                }
                if self.poller.try_lock().is_err() {
                    // Another thread is polling; it notifies when completions arrive.
                    let _ = self.cv.wait_timeout(st, left.min(Duration::from_millis(5)));
                    continue;
                }
            }
            if let Ok(poller) = self.poller.try_lock() {
                let left = deadline.saturating_duration_since(Instant::now());
                self.poll_locked(&poller, &mut buf, left)?;
            }
        }
    }

    /// Waits until every ticket up to `ticket` completed, whatever their status.
    pub fn wait_completed(&self, ticket: u64) -> Result<(), MirrorError> {
        let deadline = Instant::now() + self.ack_timeout();
        let mut buf = Vec::new();
        while self.completed() < ticket {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(MirrorError::Timeout(self.ack_timeout()));
            }
            match self.poller.try_lock() {
                Ok(p) => self.poll_locked(&p, &mut buf, left)?,
                Err(_) => {
                    let st = self.lock();
                    if st.completed < ticket {
                        let _ = self.cv.wait_timeout(st, left.min(Duration::from_millis(5)));
                    }
                }
            }
        }
        Ok(())
    }

    /// Polls once as the poller (blocking for the poller role).
    fn poll_once(&self, wait: Duration) -> Result<(), MirrorError> {
        let poller = self.poller.lock().unwrap_or_else(|e| e.into_inner());
        self.poll_locked(&poller, &mut Vec::new(), wait)
    }

    /// Takes completions from the engine (waiting up to `wait` for the first) and records
    /// them. The poller guard makes polling exclusive, so batches are recorded in order.
    fn poll_locked(
        &self,
        _poller: &std::sync::MutexGuard<'_, ()>,
        buf: &mut Vec<CompletionEntry>,
        wait: Duration,
    ) -> Result<(), MirrorError> {
        buf.clear();
        if self.engine.poll_completions(buf, usize::MAX)? == 0 {
            self.engine.wait_completions(wait.min(Duration::from_millis(20)))?;
            self.engine.poll_completions(buf, usize::MAX)?;
        }
        self.absorb(buf);
        Ok(())
    }

    /// Submits spans and waits for all of them.
    pub fn mirror(&self, spans: &[Span]) -> Result<Tickets, MirrorError> {
        let t = self.submit(spans)?;
        self.wait(t)?;
        Ok(t)
    }
}
