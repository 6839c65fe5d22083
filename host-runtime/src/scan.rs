//! Reading a log out of a region (the node's own region or the partner's mirror window),
//! and replaying it onto a store.
//!
//! Replay is the takeover path: it reads the newest consistency-point marker, walks the
//! records after it in LSN order, applies each one whose LSN is above what the store has
//! recorded as applied, and stops at the first record that is missing, torn or corrupt.

use crate::store::{Store, StoreError};
use tandem_drivers::MemRegion;
use tandem_hsi::window::{self, Geometry, GeometryError, Marker, RecordHeader, RecordOp, LOG_OFFSET, MARKER_OFFSETS};

/// A record found by [`scan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// Its header.
    pub header: RecordHeader,
    /// Log-region offset of its header.
    pub pos: u64,
    /// Log-region offset just after it (where the next record starts, before wrapping).
    pub end: u64,
}

/// Why a scan stopped.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Stop {
    /// No record with the next LSN: the normal end of the log.
    End {
        /// LSN that was looked for.
        next_lsn: u64,
    },
    /// A record with the next LSN is there but damaged; nothing from it on is used.
    Torn {
        /// Its LSN.
        lsn: u64,
        /// Log-region offset.
        pos: u64,
        /// What is wrong.
        why: &'static str,
    },
}

/// The result of a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Geometry from the window header.
    pub geometry: Geometry,
    /// The marker the scan started from.
    pub marker: Marker,
    /// Records after the marker, in LSN order.
    pub records: Vec<Found>,
    /// Log-region offset where the next record would be written.
    pub head: u64,
    /// Why it stopped.
    pub stop: Stop,
}

/// Reads the window header of a region.
pub fn geometry(region: &MemRegion) -> Result<Geometry, GeometryError> {
    let b = region
        .read_vec(window::HEADER_OFFSET, window::header::SIZE)
        .map_err(|_| GeometryError::BadHeader("region smaller than a window header"))?;
    let g = Geometry::decode_header(&b)?;
    if g.window_size > region.len() {
        return Err(GeometryError::Invalid(format!("window header says {} bytes but the region has {}", g.window_size, region.len())));
    }
    Ok(g)
}

/// Reads the newest valid marker of the region's log.
pub fn marker(region: &MemRegion, log_id: u32) -> Marker {
    let slot = |i: usize| region.read_vec(MARKER_OFFSETS[i], window::marker::SIZE).unwrap_or_default();
    Marker::newest(log_id, &slot(0), &slot(1))
}

/// Walks the records after the newest marker. Never reads outside the region and never
/// loops: it covers at most one log region's worth of bytes.
pub fn scan(region: &MemRegion) -> Result<Scan, GeometryError> {
    let geometry = geometry(region)?;
    let marker = marker(region, geometry.log_id);
    let log_size = geometry.log_size;
    let hdr = window::record::SIZE as u64;
    let mut pos = marker.next_record;
    if pos >= log_size || pos % window::RECORD_ALIGN != 0 {
        let stop = Stop::Torn { lsn: marker.cp_lsn + 1, pos, why: "marker points outside the log region" };
        return Ok(Scan { geometry, marker, records: Vec::new(), head: 0, stop });
    }
    let mut expected = marker.cp_lsn + 1;
    let mut walked = 0u64;
    let mut records = Vec::new();
    let stop = loop {
        if log_size - pos < hdr {
            walked += log_size - pos;
            pos = 0;
        }
        if walked >= log_size {
            break Stop::End { next_lsn: expected };
        }
        let at = LOG_OFFSET + pos;
        let hb = region.read_vec(at, hdr as usize).unwrap_or_default();
        let Some(h) = RecordHeader::decode(&hb) else { break Stop::End { next_lsn: expected } };
        if h.log_id != geometry.log_id || h.lsn != expected {
            break Stop::End { next_lsn: expected };
        }
        let fp = h.footprint();
        if pos + fp > log_size || (h.op == RecordOp::Wrap && h.payload_len != 0) {
            break Stop::Torn { lsn: h.lsn, pos, why: "length runs past the end of the log region" };
        }
        let payload = region.read_vec(at + hdr, h.payload_len as usize).unwrap_or_default();
        if !RecordHeader::crc_ok(&hb, &payload) {
            break Stop::Torn { lsn: h.lsn, pos, why: "CRC mismatch" };
        }
        if h.op == RecordOp::Wrap {
            walked += log_size - pos;
            pos = 0;
            continue;
        }
        if h.op == RecordOp::Write && h.target_len != h.payload_len as u64 {
            break Stop::Torn { lsn: h.lsn, pos, why: "write record's target length differs from its payload" };
        }
        records.push(Found { header: h, pos, end: pos + fp });
        expected += 1;
        walked += fp;
        pos += fp;
        if pos == log_size {
            pos = 0;
        }
    };
    Ok(Scan { geometry, marker, records, head: pos, stop })
}

/// Errors of replay.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// The region holds no log.
    #[error("no formatted log in this region: {0}")]
    NoLog(#[from] GeometryError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What replay did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReplayReport {
    /// Log id.
    pub log_id: u32,
    /// LSN of the marker replay started from.
    pub marker_lsn: u64,
    /// LSN the store had recorded as applied before replay.
    pub store_applied_before: u64,
    /// Records found after the marker.
    pub found: u64,
    /// Records skipped because the store already had them.
    pub skipped: u64,
    /// Records applied now.
    pub applied: u64,
    /// First LSN applied (0 if none).
    pub first_applied: u64,
    /// Last LSN applied (0 if none).
    pub last_applied: u64,
    /// Why the scan stopped.
    pub stop: Stop,
}

/// Replays a region's log onto a store: each record after the marker whose LSN the store
/// has not recorded is applied once, in order; then the store records the last LSN. The
/// store is locked for the whole replay ([`Store::lock`]).
pub fn replay(region: &MemRegion, store: &mut dyn Store) -> Result<ReplayReport, ReplayError> {
    replay_where(region, store, |_| true)
}

/// [`replay`] of only the records whose service tag `want` accepts (the others are left for
/// whoever serves their service).
pub fn replay_where(region: &MemRegion, store: &mut dyn Store, want: impl Fn(u32) -> bool) -> Result<ReplayReport, ReplayError> {
    let scan = scan(region)?;
    crate::store::locked(store, |store| {
        let log_id = scan.geometry.log_id;
        let before = store.applied_lsn(log_id);
        let mut report = ReplayReport {
            log_id,
            marker_lsn: scan.marker.cp_lsn,
            store_applied_before: before,
            found: scan.records.len() as u64,
            skipped: 0,
            applied: 0,
            first_applied: 0,
            last_applied: 0,
            stop: scan.stop.clone(),
        };
        for f in scan.records.iter().filter(|f| want(f.header.service_tag)) {
            if f.header.lsn <= before {
                report.skipped += 1;
                continue;
            }
            let payload =
                region.read_vec(LOG_OFFSET + f.pos + window::record::SIZE as u64, f.header.payload_len as usize).unwrap_or_default();
            store.apply(&f.header, &payload)?;
            if report.first_applied == 0 {
                report.first_applied = f.header.lsn;
            }
            report.last_applied = f.header.lsn;
            report.applied += 1;
        }
        if report.applied > 0 {
            store.sync()?;
            store.set_applied(log_id, report.last_applied)?;
        }
        Ok(report)
    })
}
