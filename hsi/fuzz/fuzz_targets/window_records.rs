//! Fuzzes the mirror window decoders (window header, CP marker, log record header, page
//! table entry): arbitrary bytes are accepted or rejected, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_hsi::window::{Geometry, Marker, PageEntry, RecordHeader};

fuzz_target!(|data: &[u8]| {
    if let Ok(g) = Geometry::decode_header(data) {
        assert_eq!(Geometry::decode_header(&g.encode_header()), Ok(g));
    }
    if let Some(m) = Marker::decode(data) {
        assert_eq!(Marker::decode(&m.encode()), Some(m));
    }
    if let Some(h) = RecordHeader::decode(data) {
        let _ = h.footprint();
        let _ = RecordHeader::crc_ok(data, data.get(48..).unwrap_or_default());
    }
    let _ = PageEntry::decode(data);
});
