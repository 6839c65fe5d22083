//! The sending side: the submission ring, sequence numbers, go-back-N retransmission,
//! flow control, and the link thread that dials the partner and reads its ACKs/NACKs.
//!
//! Locking: [`Shared::writer`] (the socket and the batch buffer) is always taken before
//! [`Shared::tx`] (the ring state), never the other way round. The link thread processes
//! ACKs holding only `tx`, so a writer blocked on a full socket never stops ACKs from
//! being read.

use super::wire::{self, FrameBuf, Next};
use super::Shared;
use std::collections::VecDeque;
use std::io::{ErrorKind, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::Instant;
use tandem_hsi::frame::{check_crc, FrameHeader, FrameKind};
use tandem_hsi::{CompletionEntry, CompletionStatus, Counter, LinkState, NackReason, SubmissionEntry, MAX_PAYLOAD};

/// Largest batch handed to one `write_all`.
const BATCH_BYTES: usize = 256 * 1024;

/// One posted entry, until its completion is queued.
#[derive(Debug)]
struct Slot {
    entry: SubmissionEntry,
    /// Sequence it was sent with (0 until first sent).
    seq: u64,
    status: Option<CompletionStatus>,
}

/// A data frame with a sequence number, not yet acknowledged.
#[derive(Debug)]
struct FrameRec {
    seq: u64,
    /// When it was last put on the wire.
    sent_at: Option<Instant>,
    /// Absolute ring index of its entry.
    slot: u64,
    host_offset: u64,
    sent: bool,
    /// The partner rejected it for bounds: a barrier goes under its sequence instead and
    /// its entry completes `RemoteBounds` once that is acknowledged.
    replaced: bool,
}

/// Sender state, under [`Shared::tx`].
#[derive(Debug)]
pub(crate) struct TxState {
    ring: VecDeque<Slot>,
    /// Absolute index of `ring[0]`.
    ring_base: u64,
    /// Absolute index one past the last entry the doorbell made visible.
    rung: u64,
    /// Frames with sequence numbers, oldest (`frames[0].seq` = acked + 1) first.
    frames: VecDeque<FrameRec>,
    /// `frames[..send_pos]` are on the wire in the current pass.
    send_pos: usize,
    inflight_bytes: u64,
    next_seq: u64,
    highest_sent: u64,
    /// Send a heartbeat before the next data frame.
    pub need_heartbeat: bool,
    /// An ACK arrived on the current connection.
    pub synced: bool,
    last_progress: Instant,
    pub completions: VecDeque<CompletionEntry>,
    pub waiters: usize,
    /// The latest send-to-ACK time, for [`Shared::note_rtt`].
    pub rtt_sample: Option<std::time::Duration>,
}

impl TxState {
    pub fn new() -> Self {
        TxState {
            ring: VecDeque::new(),
            ring_base: 0,
            rung: 0,
            frames: VecDeque::new(),
            send_pos: 0,
            inflight_bytes: 0,
            next_seq: 1,
            highest_sent: 0,
            need_heartbeat: false,
            synced: false,
            last_progress: Instant::now(),
            completions: VecDeque::new(),
            waiters: 0,
            rtt_sample: None,
        }
    }

    /// Ring slots in use: posted and not completed, plus completions not yet polled.
    pub fn occupancy(&self) -> usize {
        self.ring.len() + self.completions.len()
    }

    /// True when a heartbeat or an unsent frame is waiting (window permitting).
    pub fn has_work(&self, max_in_flight: usize) -> bool {
        self.need_heartbeat || (self.send_pos < self.frames.len() && self.send_pos < max_in_flight)
    }

    /// Entries posted and not yet completed.
    pub fn outstanding(&self) -> usize {
        self.ring.len()
    }

    /// Oldest unacknowledged sequence, or the next one to assign.
    fn base(&self) -> u64 {
        self.frames.front().map_or(self.next_seq, |f| f.seq)
    }

    pub fn post(&mut self, entries: &[SubmissionEntry], depth: usize) -> usize {
        let n = entries.len().min(depth.saturating_sub(self.occupancy()));
        self.ring.extend(entries[..n].iter().map(|e| Slot { entry: *e, seq: 0, status: None }));
        n
    }

    /// Makes posted entries visible: validates them and gives the valid ones sequence
    /// numbers. Returns how many completions became ready.
    pub fn doorbell(&mut self, sh: &Shared) -> usize {
        let end = self.ring_base + self.ring.len() as u64;
        while self.rung < end {
            let idx = self.rung;
            let slot = &mut self.ring[(idx - self.ring_base) as usize];
            self.rung += 1;
            let e = slot.entry;
            let host_offset = match validate(&e, sh) {
                Ok(off) => off,
                Err(status) => {
                    slot.status = Some(status);
                    sh.counters.inc(Counter::LocalRejects);
                    continue;
                }
            };
            self.frames.push_back(FrameRec { seq: self.next_seq, sent_at: None, slot: idx, host_offset, sent: false, replaced: false });
            self.next_seq += 1;
        }
        self.deliver()
    }

    fn slot_mut(&mut self, abs: u64) -> &mut Slot {
        let i = (abs - self.ring_base) as usize;
        &mut self.ring[i]
    }

    /// Moves resolved entries at the front of the ring to the completion queue.
    fn deliver(&mut self) -> usize {
        let mut n = 0;
        while let Some(s) = self.ring.front() {
            let Some(status) = s.status else { break };
            let c = CompletionEntry { cookie: s.entry.cookie, status, opcode: s.entry.opcode, sequence: s.seq };
            self.completions.push_back(c);
            self.ring.pop_front();
            self.ring_base += 1;
            n += 1;
        }
        n
    }

    /// Pops the oldest frame as resolved with `status`.
    fn resolve_front(&mut self, status: CompletionStatus) {
        let Some(f) = self.frames.pop_front() else { return };
        let len = if f.replaced { 0 } else { u64::from(self.slot_mut(f.slot).entry.length) };
        if self.send_pos > 0 {
            self.send_pos -= 1;
            self.inflight_bytes = self.inflight_bytes.saturating_sub(len);
        }
        self.slot_mut(f.slot).status = Some(status);
    }

    /// Cumulative ACK: everything up to `seq` is in the partner's window.
    /// Returns completions made ready, or `None` for an ACK beyond anything sent.
    pub fn on_ack(&mut self, seq: u64) -> Option<usize> {
        if seq > self.highest_sent {
            return None;
        }
        let mut newest_sent = None;
        while let Some(f) = self.frames.front() {
            if f.seq > seq {
                break;
            }
            newest_sent = f.sent_at.or(newest_sent);
            let status = if f.replaced { CompletionStatus::RemoteBounds } else { CompletionStatus::Ok };
            self.resolve_front(status);
        }
        if let Some(t) = newest_sent {
            let now = Instant::now();
            self.last_progress = now;
            self.rtt_sample = Some(now.duration_since(t));
        }
        Some(self.deliver())
    }

    /// NACK handling. Returns completions made ready.
    pub fn on_nack(&mut self, reason: NackReason, seq: u64) -> usize {
        match reason {
            NackReason::Bounds => {
                if seq == 0 || seq > self.highest_sent {
                    return 0;
                }
                // The receiver holds every frame before `seq` and did not consume `seq`:
                // send a barrier under that sequence instead, then go on from there.
                let n = self.on_ack(seq - 1).unwrap_or(0);
                if let Some(f) = self.frames.front_mut().filter(|f| f.seq == seq && !f.replaced) {
                    f.replaced = true;
                    self.last_progress = Instant::now();
                    self.go_back();
                }
                n
            }
            NackReason::Crc | NackReason::SequenceGap => {
                let n = if seq > 0 && seq <= self.highest_sent + 1 { self.on_ack(seq - 1).unwrap_or(0) } else { 0 };
                self.go_back();
                n
            }
            NackReason::NotSynced => {
                self.need_heartbeat = true;
                self.go_back();
                0
            }
        }
    }

    /// Go-back-N: the next pass starts at the oldest unacknowledged frame.
    pub fn go_back(&mut self) {
        self.send_pos = 0;
        self.inflight_bytes = 0;
    }

    /// True when data frames are on the wire.
    pub fn in_flight(&self) -> bool {
        self.send_pos > 0
    }

    /// True when frames are on the wire and nothing was acknowledged for `rto`.
    pub fn rto_expired(&self, now: Instant, rto: std::time::Duration) -> bool {
        self.send_pos > 0 && now.duration_since(self.last_progress) > rto
    }

    /// Retransmission timeout: go back and resync first.
    pub fn on_rto(&mut self, now: Instant) {
        self.go_back();
        self.need_heartbeat = true;
        self.last_progress = now;
    }

    /// Appends the next frames the window allows to `out`; returns how many frames.
    fn build(&mut self, out: &mut Vec<u8>, sh: &Shared) -> u64 {
        let mut n = 0;
        if self.need_heartbeat {
            wire::push_control(out, &FrameHeader::heartbeat(sh.session, self.base()));
            self.need_heartbeat = false;
            n += 1;
        }
        let t = &sh.timing;
        while self.send_pos < self.frames.len() && self.send_pos < t.max_in_flight && out.len() < BATCH_BYTES {
            let f = &self.frames[self.send_pos];
            let (seq, slot_idx, host_offset, was_sent) = (f.seq, f.slot, f.host_offset, f.sent);
            let replaced = f.replaced;
            let e = self.slot_mut(slot_idx).entry;
            let len = if replaced { 0 } else { u64::from(e.length) };
            if self.send_pos > 0 && self.inflight_bytes + len > t.max_in_flight_bytes {
                break;
            }
            if replaced {
                wire::push_control(out, &FrameHeader::data(tandem_hsi::Opcode::Barrier, 0, seq, 0, 0));
            } else if let Err(err) = wire::push_data_from_region(
                out,
                &FrameHeader::data(e.opcode, e.service_tag, seq, e.window_offset, e.length),
                &sh.host,
                host_offset,
            ) {
                // Validated at the doorbell and the region never shrinks: cannot happen.
                tracing::error!(%err, seq, "payload outside the host region after validation");
                break;
            }
            let now = Instant::now();
            self.frames[self.send_pos].sent_at = Some(now);
            if was_sent {
                sh.counters.inc(Counter::Retransmits);
            } else {
                sh.counters.inc(Counter::DataTx);
                self.frames[self.send_pos].sent = true;
                self.slot_mut(slot_idx).seq = seq;
            }
            if self.send_pos == 0 {
                self.last_progress = now;
            }
            self.send_pos += 1;
            self.inflight_bytes += len;
            self.highest_sent = self.highest_sent.max(seq);
            n += 1;
        }
        n
    }

    /// Completes everything outstanding with `Aborted` (shutdown).
    pub fn abort_all(&mut self) -> usize {
        self.frames.clear();
        self.go_back();
        for s in self.ring.iter_mut() {
            if s.status.is_none() {
                s.status = Some(CompletionStatus::Aborted);
            }
        }
        self.rung = self.ring_base + self.ring.len() as u64;
        self.deliver()
    }
}

/// Checks an entry before it is sent (the checks every backend shares); returns its
/// host-region offset.
fn validate(e: &SubmissionEntry, sh: &Shared) -> Result<u64, CompletionStatus> {
    crate::api::check_entry(e, &sh.host, MAX_PAYLOAD as u32)
}

/// The socket our sender writes to, with its batch buffer. Under [`Shared::writer`].
#[derive(Debug, Default)]
pub(crate) struct Writer {
    pub stream: Option<TcpStream>,
    pub buf: Vec<u8>,
}

/// Sends whatever the window allows, in batches. Returns false when the connection is
/// gone (or failed while writing).
pub(crate) fn pump(sh: &Shared) -> bool {
    let mut w = sh.lock_writer();
    pump_locked(sh, &mut w);
    w.stream.is_some()
}

/// [`pump`] with the writer already held.
pub(crate) fn pump_locked(sh: &Shared, w: &mut Writer) {
    let Writer { stream, buf } = w;
    let Some(s) = stream.as_mut() else { return };
    loop {
        buf.clear();
        let frames = sh.lock_tx().build(buf, sh);
        if frames == 0 {
            return;
        }
        if let Err(e) = s.write_all(buf) {
            tracing::debug!(error = %e, "link write failed; resetting the connection");
            let _ = s.shutdown(Shutdown::Both);
            *stream = None;
            return;
        }
        sh.counters.add(Counter::FramesTx, frames);
        sh.note_tx();
    }
}

/// The link thread: dial, sync, read ACK/NACK, run the timers, redial on any error.
pub(crate) fn run_link(sh: Arc<Shared>) {
    let t = sh.timing;
    let mut backoff = t.backoff_min;
    let mut had_link = false;
    while !sh.is_shutdown() {
        sh.set_link(LinkState::Connecting);
        let stream = match TcpStream::connect_timeout(&sh.partner, t.connect_timeout) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(partner = %sh.partner, error = %e, "dial failed");
                sh.set_link(LinkState::Down);
                sh.sleep_unless_shutdown(backoff);
                backoff = (backoff * 2).min(t.backoff_max);
                continue;
            }
        };
        let setup = stream
            .set_nodelay(true)
            .and_then(|_| stream.set_read_timeout(Some(t.tick())))
            .and_then(|_| stream.set_write_timeout(Some(t.io_timeout)))
            .and_then(|_| Ok((stream.try_clone()?, stream.try_clone()?)));
        let (reader, killer) = match setup {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "socket setup failed");
                sh.sleep_unless_shutdown(backoff);
                continue;
            }
        };
        if had_link {
            sh.counters.inc(Counter::LinkResets);
        }
        had_link = true;
        {
            let mut w = sh.lock_writer();
            if sh.is_shutdown() {
                let _ = stream.shutdown(Shutdown::Both);
                break;
            }
            *sh.lock_tx_sock() = Some(killer);
            w.stream = Some(stream);
            {
                let mut st = sh.lock_tx();
                st.go_back();
                st.need_heartbeat = true;
                st.synced = false;
            }
            pump_locked(&sh, &mut w);
        }
        let was_up = read_loop(&sh, reader);
        {
            let mut w = sh.lock_writer();
            if let Some(s) = w.stream.take() {
                let _ = s.shutdown(Shutdown::Both);
            }
            *sh.lock_tx_sock() = None;
            sh.lock_tx().synced = false;
        }
        if sh.is_shutdown() {
            break;
        }
        sh.set_link(LinkState::Down);
        if was_up {
            backoff = t.backoff_min;
        }
        sh.sleep_unless_shutdown(backoff);
        backoff = (backoff * 2).min(t.backoff_max);
    }
    sh.set_link(LinkState::Down);
}

/// Reads ACK/NACK frames until the connection fails. Returns whether the link was Up.
fn read_loop(sh: &Shared, mut reader: TcpStream) -> bool {
    let t = sh.timing;
    let mut fb = FrameBuf::new(0);
    let mut last_rx = Instant::now();
    let mut was_up = false;
    // Wake often while frames are in flight (the retransmission timer), rarely when idle.
    let mut timeout = t.tick();
    loop {
        if sh.is_shutdown() {
            return was_up;
        }
        match fb.fill(&mut reader) {
            Ok(0) => {
                tracing::debug!("partner closed the link");
                return was_up;
            }
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
            Err(e) => {
                tracing::debug!(error = %e, "link read failed");
                return was_up;
            }
        }
        let mut ready = 0;
        let mut send = false;
        let mut got_ack = false;
        let wake = {
            let mut st = sh.lock_tx();
            loop {
                match fb.next_frame() {
                    Next::NeedMore => break,
                    Next::Bad(e) => {
                        sh.counters.inc(Counter::HeaderErrors);
                        tracing::warn!(reason = e.reason(), error = %e, "bad frame header from the partner; resetting the link");
                        return was_up;
                    }
                    Next::Frame { header, frame } => {
                        if let Err(e) = check_crc(frame) {
                            sh.counters.inc(Counter::CrcErrors);
                            tracing::debug!(error = %e, "dropping a control frame with a bad CRC");
                            continue;
                        }
                        sh.counters.inc(Counter::FramesRx);
                        last_rx = Instant::now();
                        match header.kind {
                            FrameKind::Ack => {
                                sh.counters.inc(Counter::AcksRx);
                                match st.on_ack(header.sequence) {
                                    Some(n) => ready += n,
                                    None => tracing::warn!(seq = header.sequence, "ACK beyond anything sent; ignored"),
                                }
                                got_ack = true;
                            }
                            FrameKind::Nack { reason } => {
                                sh.counters.inc(Counter::NacksRx);
                                ready += st.on_nack(reason, header.sequence);
                            }
                            FrameKind::Heartbeat { .. } | FrameKind::Data { .. } => {
                                tracing::debug!(kind = ?header.frame_type(), "unexpected frame on the sending link; ignored");
                            }
                        }
                    }
                }
            }
            if got_ack && !st.synced {
                st.synced = true;
                was_up = true;
                sh.set_link(LinkState::Up);
            }
            let now = Instant::now();
            if st.rto_expired(now, t.rto) {
                st.on_rto(now);
                send = true;
            }
            if sh.since_last_tx(now) > t.heartbeat {
                st.need_heartbeat = true;
                send = true;
            }
            if let Some(rtt) = st.rtt_sample.take() {
                sh.note_rtt(rtt);
            }
            // ACKs open the window and NACKs rewind it: send only if that left work.
            send |= st.has_work(t.max_in_flight);
            let want = if st.in_flight() || send { t.tick() } else { t.idle_tick() };
            if want != timeout && reader.set_read_timeout(Some(want)).is_ok() {
                timeout = want;
            }
            ready > 0 && sh.publish_completions(&st)
        };
        if wake {
            sh.wake_waiters();
        }
        if send && !pump(sh) {
            return was_up;
        }
        if last_rx.elapsed() > t.io_timeout {
            tracing::debug!("nothing heard from the partner; resetting the link");
            return was_up;
        }
    }
}
