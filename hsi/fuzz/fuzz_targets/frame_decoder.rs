//! Fuzzes the wire frame decoder: arbitrary bytes must decode or be rejected with an
//! error, never panic; a frame that decodes must re-encode to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_hsi::frame::{decode_frame, encode_frame, FrameHeader};

fuzz_target!(|data: &[u8]| {
    let _ = FrameHeader::decode(data);
    if let Ok((header, payload, used)) = decode_frame(data) {
        assert!(used <= data.len());
        assert_eq!(payload.len(), header.length as usize);
        let mut again = Vec::new();
        encode_frame(&header, payload, &mut again);
        assert_eq!(&again[..], &data[..used], "decode then encode must give the same bytes");
    }
});
