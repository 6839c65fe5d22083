//! The host's side of a register-programmed engine (the card through VFIO, or the
//! Verilated RTL in the sim backend): the submission and completion rings in host memory
//! (see docs/hsi.md, Rings), the counter registers extended to 64 bits, and STATUS polls.
//!
//! Both rings have `slots` entries (a power of two above the ring depth); at most `depth`
//! entries are outstanding (posted, their completion not yet consumed), so neither ring
//! can overflow. Completions are recognised by the phase bit: the engine writes 1 on its
//! first pass over the ring, 0 on the second and so on; the host returns consumed slots
//! by writing the completion ring `TAIL`.

use super::regs::{Block, RegError, Registers};
use crate::api::{CounterSnapshot, EngineError};
use crate::region::MemRegion;
use std::collections::VecDeque;
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tandem_hsi::entry::{completion, submission};
use tandem_hsi::regs::{self as hr, Status};
use tandem_hsi::{CompletionEntry, CompletionStatus, Counter, SubmissionEntry};

fn relock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Debug)]
struct State {
    /// Next submission slot to write.
    sq_head: u32,
    /// Entries posted, doorbelled and whose completion slot was consumed, since start.
    posted: u64,
    doorbelled: u64,
    consumed: u64,
    /// Next completion slot to look at, and the phase that marks it new.
    cq_tail: u32,
    phase: bool,
    /// Completions taken off the ring and not handed out yet (shutdown).
    done: VecDeque<CompletionEntry>,
}

/// The host's view of both rings. Every method that touches a register goes through the
/// [`Registers`] given to it.
#[derive(Debug)]
pub struct HostRings {
    state: Mutex<State>,
    shut: AtomicBool,
    sq: Arc<MemRegion>,
    cq: Arc<MemRegion>,
    slots: u32,
    depth: u32,
    /// Names the backend in messages (`vfio: 0000:3b:00.0`, `sim`).
    who: String,
}

impl HostRings {
    /// Rings of `slots` entries each (a power of two above `depth`) in `sq` and `cq`.
    pub fn new(sq: Arc<MemRegion>, cq: Arc<MemRegion>, slots: u32, depth: u32, who: impl Into<String>) -> Self {
        debug_assert!(slots.is_power_of_two() && depth < slots);
        HostRings {
            state: Mutex::new(State { sq_head: 0, posted: 0, doorbelled: 0, consumed: 0, cq_tail: 0, phase: true, done: VecDeque::new() }),
            shut: AtomicBool::new(false),
            sq,
            cq,
            slots,
            depth,
            who: who.into(),
        }
    }

    fn reg_err(&self) -> impl Fn(RegError) -> EngineError + '_ {
        move |e| EngineError::Backend(format!("{}: registers: {e}", self.who))
    }

    fn ring_err<'a>(&'a self, ring: &'a str) -> impl Fn(crate::OutOfBounds) -> EngineError + 'a {
        move |e| EngineError::Backend(format!("{}: {ring}: {e}", self.who))
    }

    /// True once [`HostRings::mark_shut`] ran.
    pub fn is_shut(&self) -> bool {
        self.shut.load(Ordering::Acquire)
    }

    /// Refuses new work from now on; false when the rings were already shut.
    pub fn mark_shut(&self) -> bool {
        let _h = relock(&self.state);
        !self.shut.swap(true, Ordering::AcqRel)
    }

    /// Writes as many of `entries` as there is room for into the submission ring.
    pub fn post(&self, entries: &[SubmissionEntry]) -> Result<usize, EngineError> {
        let mut h = relock(&self.state);
        if self.is_shut() {
            return Err(EngineError::Shutdown);
        }
        let room = u64::from(self.depth) - (h.posted - h.consumed);
        let n = entries.len().min(room as usize);
        for e in &entries[..n] {
            let off = u64::from(h.sq_head) * submission::SIZE as u64;
            self.sq.write(off, &e.encode()).map_err(self.ring_err("submission ring"))?;
            h.sq_head = (h.sq_head + 1) % self.slots;
            h.posted += 1;
        }
        Ok(n)
    }

    /// Hands the engine every posted entry: writes the submission ring `HEAD`.
    pub fn ring_doorbell(&self, regs: &Registers) -> Result<(), EngineError> {
        let mut h = relock(&self.state);
        if self.is_shut() {
            return Err(EngineError::Shutdown);
        }
        if h.doorbelled == h.posted {
            return Ok(());
        }
        // Entries are in ring memory before the engine can see the new HEAD.
        fence(Ordering::SeqCst);
        regs.write(Block::Sq, hr::sq::HEAD, h.sq_head).map_err(self.reg_err())?;
        h.doorbelled = h.posted;
        Ok(())
    }

    /// Takes new completions off the ring into `out` (at most `max`); returns how many
    /// and writes the completion ring `TAIL` when it took any.
    fn reap(&self, regs: &Registers, h: &mut State, out: &mut VecDeque<CompletionEntry>, max: usize) -> Result<usize, EngineError> {
        let mut n = 0;
        while n < max {
            let off = u64::from(h.cq_tail) * completion::SIZE as u64;
            let mut ph = [0u8; 1];
            self.cq.read(off + completion::PHASE.offset as u64, &mut ph).map_err(self.ring_err("completion ring"))?;
            if (ph[0] & 1 == 1) != h.phase {
                break;
            }
            // The engine writes the bytes holding the phase bit last: the rest is there.
            fence(Ordering::Acquire);
            let mut raw = [0u8; completion::SIZE];
            self.cq.read(off, &mut raw).map_err(self.ring_err("completion ring"))?;
            let (c, _) = CompletionEntry::decode(&raw)
                .map_err(|e| EngineError::Backend(format!("{}: completion ring slot {}: {e}", self.who, h.cq_tail)))?;
            out.push_back(c);
            h.cq_tail = (h.cq_tail + 1) % self.slots;
            if h.cq_tail == 0 {
                h.phase = !h.phase;
            }
            h.consumed += 1;
            n += 1;
        }
        if n > 0 {
            regs.write(Block::Cq, hr::cq::TAIL, h.cq_tail).map_err(self.reg_err())?;
        }
        Ok(n)
    }

    /// Appends up to `max` completions to `out`: those kept at shutdown first, then new
    /// ones from the ring (not after shutdown).
    pub fn poll(&self, regs: &Registers, out: &mut Vec<CompletionEntry>, max: usize) -> Result<usize, EngineError> {
        let mut h = relock(&self.state);
        let take = max.min(h.done.len());
        out.extend(h.done.drain(..take));
        let mut n = take;
        if n < max && !self.is_shut() {
            let mut q = VecDeque::new();
            n += self.reap(regs, &mut h, &mut q, max - n)?;
            out.extend(q);
        }
        Ok(n)
    }

    /// True when a completion is waiting (on the ring or kept at shutdown).
    pub fn ready(&self) -> bool {
        let h = relock(&self.state);
        if !h.done.is_empty() {
            return true;
        }
        let off = u64::from(h.cq_tail) * completion::SIZE as u64 + completion::PHASE.offset as u64;
        let mut ph = [0u8; 1];
        self.cq.read(off, &mut ph).is_ok() && (ph[0] & 1 == 1) == h.phase
    }

    /// The submission entry in slot `k % slots`.
    fn posted_entry(&self, k: u64) -> Option<SubmissionEntry> {
        let slot = k % u64::from(self.slots);
        let mut raw = [0u8; submission::SIZE];
        self.sq.read(slot * submission::SIZE as u64, &mut raw).ok()?;
        SubmissionEntry::decode(&raw).ok()
    }

    /// After CONTROL.ABORT: takes the engine's completions until every doorbelled entry
    /// has one or `timeout` passes (`idle` waits between empty looks), then completes
    /// every entry still without one (never doorbelled, or lost) `Aborted`. Everything is
    /// kept for [`HostRings::poll`], in submission order, each entry once.
    pub fn drain_after_abort(&self, regs: &Registers, timeout: Duration, mut idle: impl FnMut()) {
        let mut h = relock(&self.state);
        let deadline = Instant::now() + timeout;
        let mut q = VecDeque::new();
        while h.consumed < h.doorbelled && Instant::now() < deadline {
            match self.reap(regs, &mut h, &mut q, usize::MAX) {
                Ok(0) => {
                    drop(h);
                    idle();
                    h = relock(&self.state);
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!("{}: reading completions at shutdown: {e}", self.who);
                    break;
                }
            }
        }
        if h.consumed < h.doorbelled {
            tracing::error!("{}: the engine completed {} of {} entries after ABORT", self.who, h.consumed, h.doorbelled);
        }
        for k in h.consumed..h.posted {
            if let Some(e) = self.posted_entry(k) {
                q.push_back(CompletionEntry { cookie: e.cookie, status: CompletionStatus::Aborted, opcode: e.opcode, sequence: 0 });
            }
        }
        h.consumed = h.posted;
        h.done.extend(q);
    }
}

/// The 32-bit wrapping counter registers, extended to 64 bits by reading them often
/// enough (at least once per 2^32 events of any counter).
#[derive(Debug, Default)]
pub struct CounterTotals {
    last: [u32; Counter::COUNT],
    total: CounterSnapshot,
}

impl CounterTotals {
    /// Reads every counter register and returns the totals; a register that cannot be
    /// read keeps its last total.
    pub fn update(&mut self, regs: &Registers) -> CounterSnapshot {
        for c in Counter::ALL {
            if let Ok(v) = regs.counter(*c) {
                let i = *c as usize;
                self.total.0[i] += u64::from(v.wrapping_sub(self.last[i]));
                self.last[i] = v;
            }
        }
        self.total
    }

    /// The totals as last read.
    pub fn last(&self) -> CounterSnapshot {
        self.total
    }
}

/// Polls STATUS until `pred` holds (Some(true)), `timeout` passes (Some(false)) or the
/// register cannot be read (None).
pub fn wait_status(regs: &Registers, pred: impl Fn(Status) -> bool, timeout: Duration) -> Option<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        let s = regs.status().ok()?;
        if pred(s) {
            return Some(true);
        }
        if Instant::now() >= deadline {
            return Some(false);
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}
