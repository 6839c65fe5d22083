//! The mirrored log: write-ahead records of changes acknowledged before they reach disk.
//!
//! [`MirroredLog::append`] writes a record into the node's own region and returns only
//! when the engine reports the partner's mirror window holds it too. A consistency point
//! ([`MirroredLog::checkpoint`]) applies every mirrored record to the backing store,
//! syncs it, records the applied LSN in the store, then writes and mirrors a new marker
//! ("applied up to LSN N; the next record starts at X") and frees the log space before X.
//! Replay after takeover ([`crate::scan::replay`]) applies exactly the records after that.

use crate::mirror::{Mirror, MirrorError, Span, Tickets};
use crate::scan::{self, ReplayError, ReplayReport};
use crate::store::{Store, StoreError};
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tandem_drivers::MemRegion;
use tandem_hsi::window::{self, Geometry, GeometryError, Marker, PageEntry, RecordHeader, RecordOp, LOG_OFFSET};
use tandem_hsi::Opcode;

/// Log sequence number.
pub type Lsn = u64;

/// A change to a service's backing store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Write the payload at `offset`.
    Write {
        /// Byte offset in the store.
        offset: u64,
    },
    /// Zero `len` bytes at `offset` (no payload).
    Trim {
        /// Byte offset.
        offset: u64,
        /// Length.
        len: u64,
    },
}

/// Log errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// Mirroring failed: the change is NOT acknowledged.
    #[error("change not acknowledged: {0}")]
    Mirror(#[from] MirrorError),
    /// No log space freed in time.
    #[error("log region full: {needed} bytes needed, {free} free after waiting {waited:?} for a consistency point")]
    Full {
        /// Bytes needed.
        needed: u64,
        /// Bytes free.
        free: u64,
        /// How long it waited.
        waited: Duration,
    },
    /// The record is larger than a quarter of the log region.
    #[error("record of {len} bytes is larger than the limit {max} (a quarter of the log region)")]
    TooLarge {
        /// Payload length.
        len: u64,
        /// Limit.
        max: u64,
    },
    /// Trim with a payload, or similar misuse.
    #[error("invalid change: {0}")]
    Invalid(&'static str),
    /// Store failure during a consistency point.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Region layout problem.
    #[error(transparent)]
    Geometry(#[from] GeometryError),
    /// Local recovery failed.
    #[error(transparent)]
    Replay(#[from] ReplayError),
    /// The region is smaller than the geometry.
    #[error("region of {have} bytes is smaller than the {need}-byte window layout")]
    RegionTooSmall {
        /// Needed.
        need: u64,
        /// Available.
        have: u64,
    },
}

/// A submitted record, not yet known to be mirrored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Its LSN.
    pub lsn: Lsn,
    /// Its mirror tickets.
    pub tickets: Tickets,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    lsn: Lsn,
    pos: u64,
    /// Log bytes this record holds until a consistency point frees them (wrap waste included).
    bytes: u64,
    end: u64,
    last_ticket: u64,
}

#[derive(Debug)]
struct State {
    next_lsn: Lsn,
    head: u64,
    used: u64,
    marker: Marker,
    pending: VecDeque<Pending>,
}

/// What a consistency point did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CheckpointReport {
    /// Records applied to the store.
    pub applied: u64,
    /// The new marker's LSN.
    pub cp_lsn: Lsn,
    /// Log bytes freed.
    pub freed: u64,
}

/// Log statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LogStats {
    /// Next LSN to assign.
    pub next_lsn: Lsn,
    /// LSN of the newest marker.
    pub cp_lsn: Lsn,
    /// Log bytes in use.
    pub used: u64,
    /// Log region size.
    pub size: u64,
    /// Records after the marker.
    pub pending: u64,
}

/// See the module docs.
pub struct MirroredLog {
    mirror: Arc<Mirror>,
    geo: Geometry,
    st: Mutex<State>,
    space: Condvar,
    cp: Mutex<()>,
}

impl std::fmt::Debug for MirroredLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MirroredLog").field("geometry", &self.geo).field("stats", &self.stats()).finish()
    }
}

const HDR: u64 = window::record::SIZE as u64;

fn region(mirror: &Mirror) -> &MemRegion {
    mirror.engine().host_region()
}

impl MirroredLog {
    /// Formats the node's region with a new log (random log id) and mirrors the header,
    /// markers and an empty page table to the partner.
    pub fn format(mirror: Arc<Mirror>, log_size: u64, page_size: u32, page_count: u32) -> Result<Self, LogError> {
        let log_id = loop {
            let id = rand::random::<u32>();
            if id != 0 {
                break id;
            }
        };
        let geo = Geometry::new(log_size, page_size, page_count, log_id)?;
        let r = region(&mirror);
        if r.len() < geo.window_size {
            return Err(LogError::RegionTooSmall { need: geo.window_size, have: r.len() });
        }
        let oob = |e: tandem_drivers::OutOfBounds| LogError::RegionTooSmall { need: e.offset + e.len, have: e.size };
        r.write(window::HEADER_OFFSET, &geo.encode_header()).map_err(oob)?;
        let marker = Marker { log_id, generation: 1, cp_lsn: 0, next_record: 0 };
        r.zero(window::MARKER_OFFSETS[0], 2 * window::marker::SIZE as u64).map_err(oob)?;
        r.write(marker.slot_offset(), &marker.encode()).map_err(oob)?;
        let table_len = page_count as u64 * window::page_entry::SIZE as u64;
        r.zero(geo.page_table_offset, table_len).map_err(oob)?;
        let span = |offset, len| Span { opcode: Opcode::Log, service_tag: 0, offset, len };
        mirror.mirror(&[
            span(window::HEADER_OFFSET, window::header::SIZE as u64),
            span(window::MARKER_OFFSETS[0], 2 * window::marker::SIZE as u64),
            Span { opcode: Opcode::Page, ..span(geo.page_table_offset, table_len) },
        ])?;
        let t = mirror.submit_barrier()?;
        mirror.wait(t)?;
        let st = State { next_lsn: 1, head: 0, used: 0, marker, pending: VecDeque::new() };
        Ok(MirroredLog { mirror, geo, st: Mutex::new(st), space: Condvar::new(), cp: Mutex::new(()) })
    }

    /// Opens the log already in the node's region (after a restart): records after the
    /// marker that the store has not applied are applied now (local recovery), then a
    /// consistency point makes the log empty and mirrors the region's header and marker.
    pub fn recover(mirror: Arc<Mirror>, store: &mut dyn Store) -> Result<(Self, ReplayReport), LogError> {
        let r = region(&mirror);
        let report = scan::replay(r, store)?;
        let scanned = scan::scan(r)?;
        let geo = scanned.geometry;
        let last = scanned.records.last().map_or(scanned.marker.cp_lsn, |f| f.header.lsn);
        // Everything found is applied now: the new marker points past it.
        let marker = Marker { log_id: geo.log_id, generation: scanned.marker.generation + 1, cp_lsn: last, next_record: scanned.head };
        r.write(marker.slot_offset(), &marker.encode()).map_err(|e| LogError::RegionTooSmall { need: e.offset + e.len, have: e.size })?;
        let span = |offset, len| Span { opcode: Opcode::Log, service_tag: 0, offset, len };
        mirror
            .mirror(&[span(window::HEADER_OFFSET, window::header::SIZE as u64), span(marker.slot_offset(), window::marker::SIZE as u64)])?;
        let t = mirror.submit_barrier()?;
        mirror.wait(t)?;
        let st = State { next_lsn: last + 1, head: scanned.head, used: 0, marker, pending: VecDeque::new() };
        Ok((MirroredLog { mirror, geo, st: Mutex::new(st), space: Condvar::new(), cp: Mutex::new(()) }, report))
    }

    /// The region geometry.
    pub fn geometry(&self) -> &Geometry {
        &self.geo
    }

    /// The mirror this log submits through.
    pub fn mirror(&self) -> &Arc<Mirror> {
        &self.mirror
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Largest payload of one record.
    pub fn max_record_payload(&self) -> u64 {
        self.geo.log_size / 4 - HDR
    }

    /// Appends a change and waits until the partner's window holds it.
    pub fn append(&self, service_tag: u32, change: Change, payload: &[u8]) -> Result<Lsn, LogError> {
        let a = self.submit(service_tag, change, payload)?;
        self.mirror.wait(a.tickets)?;
        Ok(a.lsn)
    }

    /// Waits for a submitted record to be mirrored.
    pub fn wait(&self, a: Appended) -> Result<Lsn, LogError> {
        self.mirror.wait(a.tickets)?;
        Ok(a.lsn)
    }

    /// Writes a record locally and submits it to the mirror without waiting (pipelining).
    /// The change is acknowledged only once [`MirroredLog::wait`] returns `Ok`.
    pub fn submit(&self, service_tag: u32, change: Change, payload: &[u8]) -> Result<Appended, LogError> {
        let mut v = self.submit_many(&[(service_tag, change, payload)])?;
        Ok(v.pop().expect("one record submitted"))
    }

    /// Writes several records locally and submits them with one doorbell (batched sends).
    /// Each is acknowledged only once [`MirroredLog::wait`] returns `Ok` for it.
    ///
    /// Returns the records placed, in order: all of them, or a prefix when the log had room
    /// for only some (submit the rest after waiting for earlier ones or a consistency
    /// point). It waits for log space only when not even the first record fits.
    pub fn submit_many(&self, records: &[(u32, Change, &[u8])]) -> Result<Vec<Appended>, LogError> {
        let mut headers = Vec::with_capacity(records.len());
        for &(service_tag, change, payload) in records {
            let (op, target_offset, target_len) = match change {
                Change::Write { offset } => (RecordOp::Write, offset, payload.len() as u64),
                Change::Trim { offset, len } => {
                    if !payload.is_empty() {
                        return Err(LogError::Invalid("a trim carries no payload"));
                    }
                    (RecordOp::Trim, offset, len)
                }
            };
            if payload.len() as u64 > self.max_record_payload() {
                return Err(LogError::TooLarge { len: payload.len() as u64, max: self.max_record_payload() });
            }
            headers.push(RecordHeader {
                op,
                service_tag,
                payload_len: payload.len() as u32,
                lsn: 0,
                target_offset,
                target_len,
                log_id: self.geo.log_id,
            });
        }
        let log_size = self.geo.log_size;
        let deadline = Instant::now() + self.mirror.ack_timeout();
        let mut st = self.lock();
        let (start_head, start_used) = (st.head, st.used);
        let r = region(&self.mirror);
        let mut spans = Vec::with_capacity(records.len() * 2);
        let mut placed = Vec::with_capacity(records.len());
        'place: for (h, &(service_tag, _, payload)) in headers.iter_mut().zip(records) {
            let fp = h.footprint();
            // Room: the record itself, plus the bytes skipped at the end when it must wrap.
            let (waste, needed) = loop {
                let waste = if st.head + fp > log_size { log_size - st.head } else { 0 };
                let needed = waste + fp;
                // One alignment unit stays free so a full ring never looks empty.
                if st.used + needed + window::RECORD_ALIGN <= log_size {
                    break (waste, needed);
                }
                if !placed.is_empty() {
                    // The records placed so far go now; the caller submits the rest.
                    break 'place;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(LogError::Full { needed, free: log_size - st.used, waited: self.mirror.ack_timeout() });
                }
                st = self.space.wait_timeout(st, left).unwrap_or_else(|e| e.into_inner()).0;
            };
            h.lsn = st.next_lsn + placed.len() as u64;
            if waste > 0 {
                if waste >= HDR {
                    let wrap = RecordHeader {
                        op: RecordOp::Wrap,
                        service_tag: 0,
                        payload_len: 0,
                        lsn: h.lsn,
                        target_offset: 0,
                        target_len: 0,
                        log_id: self.geo.log_id,
                    };
                    let at = LOG_OFFSET + st.head;
                    r.write(at, &wrap.encode(&[])).expect("log region lies inside the checked window");
                    spans.push(Span { opcode: Opcode::Log, service_tag, offset: at, len: HDR });
                }
                st.head = 0;
            }
            let pos = st.head;
            let at = LOG_OFFSET + pos;
            r.write(at, &h.encode(payload)).expect("log region lies inside the checked window");
            r.write(at + HDR, payload).expect("log region lies inside the checked window");
            spans.push(Span { opcode: Opcode::Log, service_tag, offset: at, len: HDR + payload.len() as u64 });
            st.head = if pos + fp == log_size { 0 } else { pos + fp };
            st.used += needed;
            placed.push((h.lsn, pos, needed, pos + fp, spans.len()));
        }
        let tickets = match self.mirror.submit(&spans) {
            Ok(t) => t,
            Err(e) => {
                // Nothing was consumed: the next records reuse these LSNs and positions.
                st.head = start_head;
                st.used = start_used;
                return Err(e.into());
            }
        };
        // Map each record to its tickets: entries were numbered in span order.
        let mut out = Vec::with_capacity(placed.len());
        let mut first = tickets.first;
        let mut span_tickets = Vec::with_capacity(spans.len());
        for s in &spans {
            let n = (s.len.max(1)).div_ceil(self.mirror.max_payload());
            span_tickets.push((first, first + n - 1));
            first += n;
        }
        let mut prev_span = 0;
        for (lsn, pos, bytes, end, span_end) in placed {
            let t = Tickets { first: span_tickets[prev_span].0, last: span_tickets[span_end - 1].1 };
            prev_span = span_end;
            st.pending.push_back(Pending { lsn, pos, bytes, end, last_ticket: t.last });
            out.push(Appended { lsn, tickets: t });
        }
        st.next_lsn += out.len() as u64;
        Ok(out)
    }

    /// Statistics.
    pub fn stats(&self) -> LogStats {
        let st = self.lock();
        LogStats {
            next_lsn: st.next_lsn,
            cp_lsn: st.marker.cp_lsn,
            used: st.used,
            size: self.geo.log_size,
            pending: st.pending.len() as u64,
        }
    }

    /// Runs a consistency point: applies every record submitted so far to `store` and
    /// moves the marker past them. See the module docs for the order of steps.
    pub fn checkpoint(&self, store: &mut dyn Store) -> Result<CheckpointReport, LogError> {
        let _one_at_a_time = self.cp.lock().unwrap_or_else(|e| e.into_inner());
        let (batch, marker) = {
            let st = self.lock();
            (st.pending.iter().copied().collect::<Vec<_>>(), st.marker)
        };
        let Some(last) = batch.last().copied() else {
            return Ok(CheckpointReport { applied: 0, cp_lsn: marker.cp_lsn, freed: 0 });
        };
        // Wait until every record in the batch completed (any status: a record whose
        // mirroring failed was not acknowledged, but it is in the local log and is applied
        // like the others, in order).
        self.mirror.wait_completed(last.last_ticket)?;
        let r = region(&self.mirror);
        let log_id = self.geo.log_id;
        let applied = crate::store::locked(store, |store| -> Result<u64, LogError> {
            let already = store.applied_lsn(log_id);
            let mut applied = 0;
            for p in &batch {
                if p.lsn <= already {
                    continue;
                }
                let hb = r.read_vec(LOG_OFFSET + p.pos, HDR as usize).expect("inside the log region");
                let h = RecordHeader::decode(&hb).expect("this node wrote the record");
                let payload = r.read_vec(LOG_OFFSET + p.pos + HDR, h.payload_len as usize).expect("inside the log region");
                store.apply(&h, &payload)?;
                applied += 1;
            }
            store.sync()?;
            store.set_applied(log_id, last.lsn)?;
            Ok(applied)
        })?;
        let next_record = if last.end == self.geo.log_size { 0 } else { last.end };
        let new_marker = Marker { log_id: self.geo.log_id, generation: marker.generation + 1, cp_lsn: last.lsn, next_record };
        r.write(new_marker.slot_offset(), &new_marker.encode()).expect("marker slots lie inside the window");
        self.mirror.mirror(&[Span {
            opcode: Opcode::Log,
            service_tag: 0,
            offset: new_marker.slot_offset(),
            len: window::marker::SIZE as u64,
        }])?;
        let t = self.mirror.submit_barrier()?;
        self.mirror.wait(t)?;
        let mut st = self.lock();
        let mut freed = 0;
        while st.pending.front().is_some_and(|p| p.lsn <= last.lsn) {
            let p = st.pending.pop_front().expect("checked non-empty");
            freed += p.bytes;
        }
        st.used -= freed;
        st.marker = new_marker;
        drop(st);
        self.space.notify_all();
        Ok(CheckpointReport { applied, cp_lsn: last.lsn, freed })
    }
}

/// Entries of a page table read from a region: `(slot, entry)` for allocated slots.
pub fn page_table(region: &MemRegion, geo: &Geometry) -> Vec<(u32, PageEntry)> {
    (0..geo.page_count)
        .filter_map(|slot| {
            let b = region.read_vec(geo.page_entry_offset(slot), window::page_entry::SIZE).ok()?;
            PageEntry::decode(&b).map(|e| (slot, e))
        })
        .collect()
}
