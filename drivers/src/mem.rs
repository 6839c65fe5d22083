//! `mem`: an in-process engine pair with no link, for the host runtime's property tests.
//!
//! Each doorbell copies the posted payloads straight into the partner's mirror window and
//! completes them, with the same entry checks and completion rules as every backend. A
//! test can make the pair fail after a number of entries ([`MemEngine::fail_after`]): the
//! next entries are copied, later ones are not and complete `Aborted`, which is how a
//! crash in the middle of a multi-entry write looks from the partner's side.

use crate::api::{check_entry, CounterSnapshot, Engine, EngineError, EngineInfo};
use crate::region::MemRegion;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;
use tandem_hsi::{CompletionEntry, CompletionStatus, Counter, LinkState, Opcode, SubmissionEntry, HSI_VERSION, MAX_PAYLOAD};

#[derive(Debug, Default)]
struct Inner {
    posted: VecDeque<SubmissionEntry>,
    visible: usize,
    completions: VecDeque<CompletionEntry>,
    next_seq: u64,
    budget: Option<u64>,
    shut: bool,
    counters: CounterSnapshot,
}

/// One side of an in-process pair.
#[derive(Debug)]
pub struct MemEngine {
    host: MemRegion,
    mirror: Arc<MemRegion>,
    partner: Arc<MemRegion>,
    partner_counters: Arc<Mutex<CounterSnapshot>>,
    own_rx_counters: Arc<Mutex<CounterSnapshot>>,
    depth: usize,
    inner: Mutex<Inner>,
    cv: Condvar,
}

/// Ring depth of a mem engine.
pub const MEM_RING_DEPTH: usize = 4096;

/// Makes a pair: A's payloads land in B's mirror window and the other way round.
pub fn mem_pair(host_a: MemRegion, window_a: MemRegion, host_b: MemRegion, window_b: MemRegion) -> (MemEngine, MemEngine) {
    let (wa, wb) = (Arc::new(window_a), Arc::new(window_b));
    let (ca, cb) = (Arc::new(Mutex::new(CounterSnapshot::default())), Arc::new(Mutex::new(CounterSnapshot::default())));
    let make = |host,
                mirror: &Arc<MemRegion>,
                partner: &Arc<MemRegion>,
                own: &Arc<Mutex<CounterSnapshot>>,
                other: &Arc<Mutex<CounterSnapshot>>| MemEngine {
        host,
        mirror: mirror.clone(),
        partner: partner.clone(),
        partner_counters: other.clone(),
        own_rx_counters: own.clone(),
        depth: MEM_RING_DEPTH,
        inner: Mutex::new(Inner { next_seq: 1, ..Inner::default() }),
        cv: Condvar::new(),
    };
    (make(host_a, &wa, &wb, &ca, &cb), make(host_b, &wb, &wa, &cb, &ca))
}

impl MemEngine {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// After `n` more entries, stop copying: later entries complete `Aborted`.
    /// `None` copies everything again.
    pub fn fail_after(&self, n: Option<u64>) {
        self.lock().budget = n;
    }

    fn bump(c: &mut CounterSnapshot, which: Counter) {
        c.0[which as usize] += 1;
    }

    fn process(&self, inner: &mut Inner) {
        while inner.visible > 0 {
            let Some(e) = inner.posted.pop_front() else { break };
            inner.visible -= 1;
            let mut c = CompletionEntry { cookie: e.cookie, status: CompletionStatus::Ok, opcode: e.opcode, sequence: 0 };
            match check_entry(&e, &self.host, MAX_PAYLOAD as u32) {
                Err(status) => {
                    c.status = status;
                    Self::bump(&mut inner.counters, Counter::LocalRejects);
                }
                Ok(_) if inner.budget == Some(0) || inner.shut => c.status = CompletionStatus::Aborted,
                Ok(host_off) => {
                    if let Some(b) = inner.budget.as_mut() {
                        *b -= 1;
                    }
                    c.sequence = inner.next_seq;
                    inner.next_seq += 1;
                    Self::bump(&mut inner.counters, Counter::DataTx);
                    let mut rx = self.partner_counters.lock().unwrap_or_else(|e| e.into_inner());
                    if e.opcode == Opcode::Barrier {
                        let _ = self.partner.flush();
                        Self::bump(&mut rx, Counter::DataRx);
                    } else if self.partner.check(e.window_offset, e.length.into()).is_err() {
                        c.status = CompletionStatus::RemoteBounds;
                        Self::bump(&mut rx, Counter::BoundsRejects);
                    } else {
                        let mut buf = Vec::with_capacity(e.length as usize);
                        // Both ranges were checked above.
                        let copied = self
                            .host
                            .append_to(host_off, e.length as usize, &mut buf)
                            .and_then(|_| self.partner.write(e.window_offset, &buf));
                        if copied.is_err() {
                            c.status = CompletionStatus::Aborted;
                        } else {
                            Self::bump(&mut rx, Counter::DataRx);
                        }
                    }
                }
            }
            inner.completions.push_back(c);
        }
    }
}

impl Engine for MemEngine {
    fn info(&self) -> EngineInfo {
        EngineInfo { backend: "mem", hsi_version: HSI_VERSION, max_payload: MAX_PAYLOAD as u32, ring_depth: self.depth as u32 }
    }
    fn host_region(&self) -> &MemRegion {
        &self.host
    }
    fn mirror_window(&self) -> &MemRegion {
        &self.mirror
    }
    fn post(&self, entries: &[SubmissionEntry]) -> Result<usize, EngineError> {
        let mut inner = self.lock();
        if inner.shut {
            return Err(EngineError::Shutdown);
        }
        let room = self.depth.saturating_sub(inner.posted.len() + inner.completions.len());
        let n = room.min(entries.len());
        inner.posted.extend(entries[..n].iter().copied());
        Ok(n)
    }
    fn ring_doorbell(&self) -> Result<(), EngineError> {
        let mut inner = self.lock();
        if inner.shut {
            return Err(EngineError::Shutdown);
        }
        inner.visible = inner.posted.len();
        self.process(&mut inner);
        drop(inner);
        self.cv.notify_all();
        Ok(())
    }
    fn poll_completions(&self, out: &mut Vec<CompletionEntry>, max: usize) -> Result<usize, EngineError> {
        let mut inner = self.lock();
        let n = max.min(inner.completions.len());
        out.extend(inner.completions.drain(..n));
        Ok(n)
    }
    fn wait_completions(&self, timeout: Duration) -> Result<bool, EngineError> {
        let inner = self.lock();
        let (inner, _) =
            self.cv.wait_timeout_while(inner, timeout, |i| i.completions.is_empty() && !i.shut).unwrap_or_else(|e| e.into_inner());
        Ok(!inner.completions.is_empty())
    }
    fn link_state(&self) -> LinkState {
        if self.lock().shut {
            LinkState::Down
        } else {
            LinkState::Up
        }
    }
    fn counters(&self) -> CounterSnapshot {
        let mut c = self.lock().counters;
        let rx = self.own_rx_counters.lock().unwrap_or_else(|e| e.into_inner());
        for k in [Counter::DataRx, Counter::BoundsRejects] {
            c.0[k as usize] = rx.get(k);
        }
        c
    }
    fn shutdown(&self) {
        let mut inner = self.lock();
        inner.shut = true;
        inner.visible = inner.posted.len();
        self.process(&mut inner);
        drop(inner);
        self.cv.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (MemEngine, MemEngine) {
        let r = |base| MemRegion::anonymous(1 << 16, base).unwrap();
        mem_pair(r(0x1000_0000), r(0), r(0x2000_0000), r(0))
    }

    #[test]
    fn copies_into_partner_window_and_completes_in_order() {
        let (a, b) = pair();
        a.host_region().write(0x100, b"hello").unwrap();
        let e = |cookie, off| SubmissionEntry {
            opcode: Opcode::Log,
            service_tag: 1,
            host_addr: 0x1000_0100,
            window_offset: off,
            length: 5,
            cookie,
        };
        let mut bad = e(2, 0);
        bad.host_addr = 0x10;
        a.post_all(&[e(1, 0x40), bad, e(3, 1 << 16)], &mut Vec::new(), Duration::from_secs(1)).unwrap();
        let mut out = Vec::new();
        a.poll_completions(&mut out, 10).unwrap();
        let got: Vec<_> = out.iter().map(|c| (c.cookie, c.status)).collect();
        assert_eq!(got, vec![(1, CompletionStatus::Ok), (2, CompletionStatus::HostBounds), (3, CompletionStatus::RemoteBounds)]);
        assert_eq!(b.mirror_window().read_vec(0x40, 5).unwrap(), b"hello");
        assert_eq!(b.counters().get(Counter::BoundsRejects), 1);
    }

    #[test]
    fn fail_after_stops_copying() {
        let (a, b) = pair();
        a.host_region().write(0, &[7u8; 16]).unwrap();
        a.fail_after(Some(1));
        let e = |cookie, off| SubmissionEntry {
            opcode: Opcode::Page,
            service_tag: 1,
            host_addr: 0x1000_0000,
            window_offset: off,
            length: 16,
            cookie,
        };
        a.post_all(&[e(1, 0), e(2, 64)], &mut Vec::new(), Duration::from_secs(1)).unwrap();
        let mut out = Vec::new();
        a.poll_completions(&mut out, 10).unwrap();
        assert_eq!(out[1].status, CompletionStatus::Aborted);
        assert_eq!(b.mirror_window().read_vec(0, 16).unwrap(), vec![7u8; 16]);
        assert_eq!(b.mirror_window().read_vec(64, 16).unwrap(), vec![0u8; 16]);
    }
}
