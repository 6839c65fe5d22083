//! The mirror window: the partner's NVRAM-like copy of a node's log and pages.
//!
//! A node keeps its own log and tagged pages in a local region with exactly this layout,
//! and the engine copies every change to the same offset of the partner's mirror window.
//! So the partner's window is a replica of the node's region, and replay after takeover
//! reads it with the same code that formats it.
//!
//! ```text
//! 0x0000  window header   (geometry, written once at format time)
//! 0x1000  CP marker slot 0 \ the newest valid slot says "applied to the backing store
//! 0x1040  CP marker slot 1 / up to LSN N; the next record starts at log offset X"
//! 0x1100  status block     (the node's latest HA heartbeat, JSON)
//! 0x2000  log region       (ring of records, LOG_SIZE bytes)
//!         page table       (PAGE_COUNT entries of 32 bytes)
//!         pages            (PAGE_COUNT pages of PAGE_SIZE bytes, 4 KiB aligned)
//! ```

use crate::frame::MAX_PAYLOAD;

/// Window header magic: `TWIN`.
pub const WINDOW_MAGIC: u32 = u32::from_le_bytes(*b"TWIN");
/// CP marker magic: `TCPM`.
pub const MARKER_MAGIC: u32 = u32::from_le_bytes(*b"TCPM");
/// Log record magic: `TLOG`.
pub const RECORD_MAGIC: u32 = u32::from_le_bytes(*b"TLOG");
/// Page table entry magic: `TPGE`.
pub const PAGE_ENTRY_MAGIC: u32 = u32::from_le_bytes(*b"TPGE");
/// Layout version written in the header.
pub const LAYOUT_VERSION: u16 = 1;
/// Offset of the window header.
pub const HEADER_OFFSET: u64 = 0;
/// Offsets of the two CP marker slots.
pub const MARKER_OFFSETS: [u64; 2] = [0x1000, 0x1040];
/// Offset of the status block: the node's latest HA heartbeat, mirrored like any change,
/// so the partner can read it from its mirror window (heartbeats over the mirror link).
pub const STATUS_OFFSET: u64 = 0x1100;
/// Size of the status block (header and body).
pub const STATUS_SIZE: u64 = 0xF00;
/// Status block magic: `TPST`.
pub const STATUS_MAGIC: u32 = u32::from_le_bytes(*b"TPST");
/// Start of the log region.
pub const LOG_OFFSET: u64 = 0x2000;
/// Records start on this alignment.
pub const RECORD_ALIGN: u64 = 8;
/// Pages and the page region start on this alignment.
pub const PAGE_ALIGN: u64 = 4096;

crate::layout! {
    /// Window header fields.
    pub mod header ("Window header (offset 0x0000)", size = 64) {
        MAGIC @ 0, 4 => "0x4E495754, the ASCII bytes `TWIN`";
        LAYOUT_VERSION @ 4, 2 => "layout version, 1";
        RESERVED @ 6, 2 => "reserved, 0";
        WINDOW_SIZE @ 8, 8 => "size of the whole window in bytes";
        LOG_OFFSET @ 16, 8 => "start of the log region (0x2000)";
        LOG_SIZE @ 24, 8 => "size of the log region in bytes, a multiple of 8";
        PAGE_TABLE_OFFSET @ 32, 8 => "start of the page table";
        PAGE_OFFSET @ 40, 8 => "start of the pages, 4 KiB aligned";
        PAGE_SIZE @ 48, 4 => "page size in bytes (4096 to MAX_PAYLOAD, a power of two)";
        PAGE_COUNT @ 52, 4 => "number of pages";
        LOG_ID @ 56, 4 => "random id chosen when the window was formatted; markers and records carry it, so records of an earlier log are never replayed";
        CRC @ 60, 4 => "CRC32C of bytes 0..60";
    }
}

crate::layout! {
    /// Consistency-point marker fields (two slots; the valid one with the highest generation wins).
    pub mod marker ("Consistency-point marker (slots at 0x1000 and 0x1040)", size = 64) {
        MAGIC @ 0, 4 => "0x4D504354, the ASCII bytes `TCPM`";
        LOG_ID @ 4, 4 => "the window header's LOG_ID";
        GENERATION @ 8, 8 => "incremented by each consistency point; slot = GENERATION mod 2";
        CP_LSN @ 16, 8 => "every record with LSN <= CP_LSN is in the backing store";
        NEXT_RECORD @ 24, 8 => "log-region offset (from LOG_OFFSET) where the record CP_LSN + 1 starts";
        RESERVED2 @ 32, 8 => "reserved, 0";
        RESERVED3 @ 40, 8 => "reserved, 0";
        RESERVED4 @ 48, 8 => "reserved, 0";
        RESERVED5 @ 56, 4 => "reserved, 0";
        CRC @ 60, 4 => "CRC32C of bytes 0..60";
    }
}

crate::layout! {
    /// Status block header fields; the body (UTF-8 JSON, `LENGTH` bytes) follows.
    pub mod status ("Status block header (offset 0x1100; body follows, at most 0xF00 - 24 bytes)", size = 24) {
        MAGIC @ 0, 4 => "0x54535054, the ASCII bytes `TPST`";
        LENGTH @ 4, 4 => "body length in bytes";
        SEQUENCE @ 8, 8 => "incremented by every heartbeat the node writes";
        RESERVED @ 16, 4 => "reserved, 0";
        CRC @ 20, 4 => "CRC32C of bytes 0..20 and the body";
    }
}

/// Encodes a status block (header and body); `None` if the body does not fit.
pub fn encode_status(sequence: u64, body: &[u8]) -> Option<Vec<u8>> {
    if body.len() as u64 > STATUS_SIZE - status::SIZE as u64 {
        return None;
    }
    let mut b = vec![0u8; status::SIZE + body.len()];
    status::MAGIC.put(&mut b, STATUS_MAGIC.into());
    status::LENGTH.put(&mut b, body.len() as u64);
    status::SEQUENCE.put(&mut b, sequence);
    b[status::SIZE..].copy_from_slice(body);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&b[..status::CRC.offset]), body);
    status::CRC.put(&mut b, crc.into());
    Some(b)
}

/// Decodes a status block: `(sequence, body)`, or `None` when empty, torn or corrupt.
pub fn decode_status(b: &[u8]) -> Option<(u64, &[u8])> {
    if b.len() < status::SIZE || status::MAGIC.get(b) != STATUS_MAGIC as u64 {
        return None;
    }
    let len = status::LENGTH.get(b) as usize;
    let body = b.get(status::SIZE..status::SIZE.checked_add(len)?)?;
    let crc = crc32c::crc32c_append(crc32c::crc32c(&b[..status::CRC.offset]), body);
    (status::CRC.get(b) == crc as u64).then(|| (status::SEQUENCE.get(b), body))
}

crate::layout! {
    /// Log record header fields; the payload follows, then padding to 8 bytes.
    pub mod record ("Log record header", size = 48) {
        MAGIC @ 0, 4 => "0x474F4C54, the ASCII bytes `TLOG`";
        OP @ 4, 2 => "1 write (payload to TARGET_OFFSET), 2 trim (TARGET_LEN bytes at TARGET_OFFSET), 3 wrap (the next record is at the region start)";
        FLAGS @ 6, 2 => "reserved, 0";
        SERVICE_TAG @ 8, 4 => "file-service ID the change belongs to";
        PAYLOAD_LEN @ 12, 4 => "payload bytes after the header";
        LSN @ 16, 8 => "log sequence number: consecutive from 1";
        TARGET_OFFSET @ 24, 8 => "byte offset in the service's backing store";
        TARGET_LEN @ 32, 8 => "trim: bytes affected; write: equals PAYLOAD_LEN";
        CRC @ 40, 4 => "CRC32C of the header (this field 0) and the payload";
        LOG_ID @ 44, 4 => "the window header's LOG_ID";
    }
}

crate::layout! {
    /// Page table entry fields.
    pub mod page_entry ("Page table entry", size = 32) {
        MAGIC @ 0, 4 => "0x45475054 (`TPGE`) when the page is allocated; 0 when free";
        SERVICE_TAG @ 4, 4 => "file-service ID that owns the page";
        PAGE_INDEX @ 8, 8 => "the page's index within its service";
        GENERATION @ 16, 8 => "incremented on each allocation of the slot";
        RESERVED @ 24, 4 => "reserved, 0";
        CRC @ 28, 4 => "CRC32C of bytes 0..28";
    }
}

/// Log record operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[repr(u16)]
pub enum RecordOp {
    /// Write the payload at the target offset.
    Write = 1,
    /// Discard a range.
    Trim = 2,
    /// Padding: the next record is at the start of the log region.
    Wrap = 3,
}

impl TryFrom<u16> for RecordOp {
    type Error = u16;
    fn try_from(v: u16) -> Result<Self, u16> {
        match v {
            1 => Ok(RecordOp::Write),
            2 => Ok(RecordOp::Trim),
            3 => Ok(RecordOp::Wrap),
            other => Err(other),
        }
    }
}

/// The window's geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Geometry {
    /// Whole window size.
    pub window_size: u64,
    /// Log region size.
    pub log_size: u64,
    /// Page table start.
    pub page_table_offset: u64,
    /// Pages start.
    pub page_offset: u64,
    /// Page size.
    pub page_size: u32,
    /// Page count.
    pub page_count: u32,
    /// Random id of this formatting of the window.
    pub log_id: u32,
}

/// A geometry that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GeometryError {
    /// Explained in the message.
    #[error("invalid window geometry: {0}")]
    Invalid(String),
    /// Header bytes not a valid header.
    #[error("window header is not valid: {0}")]
    BadHeader(&'static str),
}

const fn align_up(v: u64, a: u64) -> u64 {
    v.div_ceil(a) * a
}

impl Geometry {
    /// Lays out a window: log first, then the page table, then pages.
    pub fn new(log_size: u64, page_size: u32, page_count: u32, log_id: u32) -> Result<Self, GeometryError> {
        if log_size % RECORD_ALIGN != 0 || log_size < (record::SIZE as u64 + MAX_PAYLOAD as u64) * 2 {
            return Err(GeometryError::Invalid(format!(
                "log size {log_size} must be a multiple of {RECORD_ALIGN} and at least {} (two largest records)",
                (record::SIZE + MAX_PAYLOAD) * 2
            )));
        }
        if !page_size.is_power_of_two() || !(4096..=MAX_PAYLOAD as u32).contains(&page_size) {
            return Err(GeometryError::Invalid(format!("page size {page_size} must be a power of two from 4096 to {MAX_PAYLOAD}")));
        }
        let page_table_offset = LOG_OFFSET + log_size;
        let page_offset = align_up(page_table_offset + page_count as u64 * page_entry::SIZE as u64, PAGE_ALIGN);
        let window_size = page_offset + page_count as u64 * page_size as u64;
        Ok(Geometry { window_size, log_size, page_table_offset, page_offset, page_size, page_count, log_id })
    }

    /// Offset of page table entry `slot`.
    pub fn page_entry_offset(&self, slot: u32) -> u64 {
        self.page_table_offset + slot as u64 * page_entry::SIZE as u64
    }

    /// Offset of page `slot`.
    pub fn page_data_offset(&self, slot: u32) -> u64 {
        self.page_offset + slot as u64 * self.page_size as u64
    }

    /// Encodes the window header.
    pub fn encode_header(&self) -> [u8; header::SIZE] {
        let mut b = [0u8; header::SIZE];
        header::MAGIC.put(&mut b, WINDOW_MAGIC.into());
        header::LAYOUT_VERSION.put(&mut b, LAYOUT_VERSION.into());
        header::WINDOW_SIZE.put(&mut b, self.window_size);
        header::LOG_OFFSET.put(&mut b, LOG_OFFSET);
        header::LOG_SIZE.put(&mut b, self.log_size);
        header::PAGE_TABLE_OFFSET.put(&mut b, self.page_table_offset);
        header::PAGE_OFFSET.put(&mut b, self.page_offset);
        header::PAGE_SIZE.put(&mut b, self.page_size.into());
        header::PAGE_COUNT.put(&mut b, self.page_count.into());
        header::LOG_ID.put(&mut b, self.log_id.into());
        let crc = crc32c::crc32c(&b[..header::CRC.offset]);
        header::CRC.put(&mut b, crc.into());
        b
    }

    /// Decodes and checks a window header.
    pub fn decode_header(b: &[u8]) -> Result<Self, GeometryError> {
        if b.len() < header::SIZE {
            return Err(GeometryError::BadHeader("truncated"));
        }
        if header::MAGIC.get(b) != WINDOW_MAGIC as u64 {
            return Err(GeometryError::BadHeader("bad magic (window never formatted?)"));
        }
        if header::CRC.get(b) != crc32c::crc32c(&b[..header::CRC.offset]) as u64 {
            return Err(GeometryError::BadHeader("CRC mismatch"));
        }
        if header::LAYOUT_VERSION.get(b) != LAYOUT_VERSION as u64 {
            return Err(GeometryError::BadHeader("unsupported layout version"));
        }
        if header::LOG_OFFSET.get(b) != LOG_OFFSET {
            return Err(GeometryError::BadHeader("unexpected log offset"));
        }
        let g = Geometry::new(
            header::LOG_SIZE.get(b),
            header::PAGE_SIZE.get(b) as u32,
            header::PAGE_COUNT.get(b) as u32,
            header::LOG_ID.get(b) as u32,
        )?;
        if g.window_size != header::WINDOW_SIZE.get(b)
            || g.page_offset != header::PAGE_OFFSET.get(b)
            || g.page_table_offset != header::PAGE_TABLE_OFFSET.get(b)
        {
            return Err(GeometryError::BadHeader("sizes do not agree with each other"));
        }
        Ok(g)
    }
}

/// A consistency-point marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Marker {
    /// The log this marker belongs to.
    pub log_id: u32,
    /// Generation (slot = generation % 2).
    pub generation: u64,
    /// Applied up to this LSN.
    pub cp_lsn: u64,
    /// Log-region offset of the next record.
    pub next_record: u64,
}

impl Marker {
    /// Window offset of the slot this marker is written to.
    pub fn slot_offset(&self) -> u64 {
        MARKER_OFFSETS[(self.generation % 2) as usize]
    }

    /// Encodes the marker.
    pub fn encode(&self) -> [u8; marker::SIZE] {
        let mut b = [0u8; marker::SIZE];
        marker::MAGIC.put(&mut b, MARKER_MAGIC.into());
        marker::LOG_ID.put(&mut b, self.log_id.into());
        marker::GENERATION.put(&mut b, self.generation);
        marker::CP_LSN.put(&mut b, self.cp_lsn);
        marker::NEXT_RECORD.put(&mut b, self.next_record);
        let crc = crc32c::crc32c(&b[..marker::CRC.offset]);
        marker::CRC.put(&mut b, crc.into());
        b
    }

    /// Decodes one slot; `None` if it is empty, torn or corrupt.
    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() < marker::SIZE
            || marker::MAGIC.get(b) != MARKER_MAGIC as u64
            || marker::CRC.get(b) != crc32c::crc32c(&b[..marker::CRC.offset]) as u64
        {
            return None;
        }
        Some(Marker {
            log_id: marker::LOG_ID.get(b) as u32,
            generation: marker::GENERATION.get(b),
            cp_lsn: marker::CP_LSN.get(b),
            next_record: marker::NEXT_RECORD.get(b),
        })
    }

    /// The newest valid marker of log `log_id` in the two slots, or the initial marker
    /// (nothing applied, log starts at 0) when neither slot holds one.
    pub fn newest(log_id: u32, slot0: &[u8], slot1: &[u8]) -> Marker {
        let of_log = |m: Option<Marker>| m.filter(|m| m.log_id == log_id);
        match (of_log(Marker::decode(slot0)), of_log(Marker::decode(slot1))) {
            (Some(a), Some(b)) => {
                if a.generation >= b.generation {
                    a
                } else {
                    b
                }
            }
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => Marker { log_id, ..Marker::default() },
        }
    }
}

/// A log record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecordHeader {
    /// Operation.
    pub op: RecordOp,
    /// Service.
    pub service_tag: u32,
    /// Payload length.
    pub payload_len: u32,
    /// LSN.
    pub lsn: u64,
    /// Target offset in the backing store.
    pub target_offset: u64,
    /// Target length.
    pub target_len: u64,
    /// The log this record belongs to.
    pub log_id: u32,
}

impl RecordHeader {
    /// Bytes the record occupies in the log region (header, payload, padding).
    pub fn footprint(&self) -> u64 {
        align_up(record::SIZE as u64 + self.payload_len as u64, RECORD_ALIGN)
    }

    /// Encodes the header with the CRC over header and `payload`.
    pub fn encode(&self, payload: &[u8]) -> [u8; record::SIZE] {
        let mut b = [0u8; record::SIZE];
        record::MAGIC.put(&mut b, RECORD_MAGIC.into());
        record::OP.put(&mut b, self.op as u64);
        record::SERVICE_TAG.put(&mut b, self.service_tag.into());
        record::PAYLOAD_LEN.put(&mut b, self.payload_len.into());
        record::LSN.put(&mut b, self.lsn);
        record::TARGET_OFFSET.put(&mut b, self.target_offset);
        record::TARGET_LEN.put(&mut b, self.target_len);
        record::LOG_ID.put(&mut b, self.log_id.into());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&b), payload);
        record::CRC.put(&mut b, crc.into());
        b
    }

    /// Decodes a header without checking the CRC (the payload is needed for that).
    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() < record::SIZE || record::MAGIC.get(b) != RECORD_MAGIC as u64 || record::FLAGS.get(b) != 0 {
            return None;
        }
        Some(RecordHeader {
            op: RecordOp::try_from(record::OP.get(b) as u16).ok()?,
            service_tag: record::SERVICE_TAG.get(b) as u32,
            payload_len: record::PAYLOAD_LEN.get(b) as u32,
            lsn: record::LSN.get(b),
            target_offset: record::TARGET_OFFSET.get(b),
            target_len: record::TARGET_LEN.get(b),
            log_id: record::LOG_ID.get(b) as u32,
        })
    }

    /// True when the header bytes `b` carry the CRC of header and `payload`.
    pub fn crc_ok(b: &[u8], payload: &[u8]) -> bool {
        if b.len() < record::SIZE {
            return false;
        }
        let mut h = [0u8; record::SIZE];
        h.copy_from_slice(&b[..record::SIZE]);
        let carried = record::CRC.get(&h);
        record::CRC.put(&mut h, 0);
        crc32c::crc32c_append(crc32c::crc32c(&h), payload) as u64 == carried
    }
}

/// A page table entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PageEntry {
    /// Owner.
    pub service_tag: u32,
    /// Index within the service.
    pub page_index: u64,
    /// Allocation generation.
    pub generation: u64,
}

impl PageEntry {
    /// Encodes an allocated entry.
    pub fn encode(&self) -> [u8; page_entry::SIZE] {
        let mut b = [0u8; page_entry::SIZE];
        page_entry::MAGIC.put(&mut b, PAGE_ENTRY_MAGIC.into());
        page_entry::SERVICE_TAG.put(&mut b, self.service_tag.into());
        page_entry::PAGE_INDEX.put(&mut b, self.page_index);
        page_entry::GENERATION.put(&mut b, self.generation);
        let crc = crc32c::crc32c(&b[..page_entry::CRC.offset]);
        page_entry::CRC.put(&mut b, crc.into());
        b
    }

    /// The bytes of a free entry.
    pub const FREE: [u8; page_entry::SIZE] = [0u8; page_entry::SIZE];

    /// Decodes an entry: `None` when free, torn or corrupt.
    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() < page_entry::SIZE
            || page_entry::MAGIC.get(b) != PAGE_ENTRY_MAGIC as u64
            || page_entry::CRC.get(b) != crc32c::crc32c(&b[..page_entry::CRC.offset]) as u64
        {
            return None;
        }
        Some(PageEntry {
            service_tag: page_entry::SERVICE_TAG.get(b) as u32,
            page_index: page_entry::PAGE_INDEX.get(b),
            generation: page_entry::GENERATION.get(b),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_round_trips_and_validates() {
        let g = Geometry::new(1 << 20, 4096, 64, 0xabcd).unwrap();
        assert_eq!(g.page_table_offset, LOG_OFFSET + (1 << 20));
        assert_eq!(g.page_offset % PAGE_ALIGN, 0);
        assert_eq!(g.window_size, g.page_offset + 64 * 4096);
        assert_eq!(Geometry::decode_header(&g.encode_header()), Ok(g));
        let mut bad = g.encode_header();
        bad[9] ^= 1;
        assert!(Geometry::decode_header(&bad).is_err());
        assert!(Geometry::new(1000, 4096, 1, 1).is_err());
        assert!(Geometry::new(1 << 20, 3000, 1, 1).is_err());
    }

    #[test]
    fn newest_marker_wins_and_torn_slot_is_ignored() {
        let a = Marker { log_id: 9, generation: 4, cp_lsn: 10, next_record: 800 };
        let b = Marker { log_id: 9, generation: 5, cp_lsn: 12, next_record: 960 };
        assert_eq!(Marker::newest(9, &a.encode(), &b.encode()), b);
        let mut torn = b.encode();
        torn[20] ^= 0xff;
        assert_eq!(Marker::newest(9, &a.encode(), &torn), a);
        assert_eq!(Marker::newest(9, &[0; 64], &[0; 64]), Marker { log_id: 9, ..Marker::default() });
        let other_log = Marker { log_id: 8, generation: 7, cp_lsn: 99, next_record: 0 };
        assert_eq!(Marker::newest(9, &a.encode(), &other_log.encode()), a);
        assert_eq!(a.slot_offset(), MARKER_OFFSETS[0]);
        assert_eq!(b.slot_offset(), MARKER_OFFSETS[1]);
    }

    #[test]
    fn record_crc_covers_payload() {
        let h =
            RecordHeader { op: RecordOp::Write, service_tag: 3, payload_len: 5, lsn: 1, target_offset: 4096, target_len: 5, log_id: 77 };
        let b = h.encode(b"hello");
        assert_eq!(RecordHeader::decode(&b), Some(h));
        assert!(RecordHeader::crc_ok(&b, b"hello"));
        assert!(!RecordHeader::crc_ok(&b, b"hellp"));
        assert_eq!(h.footprint(), 56);
    }

    #[test]
    fn status_block_round_trip_and_rejects() {
        let b = encode_status(7, b"{\"state\":\"mirrored\"}").unwrap();
        assert_eq!(decode_status(&b), Some((7, &b"{\"state\":\"mirrored\"}"[..])));
        let mut torn = b.clone();
        torn[30] ^= 1;
        assert_eq!(decode_status(&torn), None);
        assert_eq!(decode_status(&b[..10]), None);
        assert!(encode_status(1, &vec![0; STATUS_SIZE as usize]).is_none());
        const _: () = assert!(STATUS_OFFSET >= MARKER_OFFSETS[1] + marker::SIZE as u64 && STATUS_OFFSET + STATUS_SIZE <= LOG_OFFSET);
    }

    #[test]
    fn page_entry_round_trip() {
        let e = PageEntry { service_tag: 7, page_index: 3, generation: 1 };
        assert_eq!(PageEntry::decode(&e.encode()), Some(e));
        assert_eq!(PageEntry::decode(&PageEntry::FREE), None);
    }
}
