//! The committed `docs/hsi.md` and `hsi/vectors/frames.json` must equal what this crate
//! generates. Run with `TANDEM_BLESS=1` to rewrite them after changing the HSI.

use std::path::PathBuf;
use tandem_hsi::{doc, frame, vectors};

fn check_or_bless(path: PathBuf, generated: &str) {
    if std::env::var_os("TANDEM_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is stale: regenerate it with `TANDEM_BLESS=1 cargo test -p tandem-hsi --test generated_files`",
        path.display()
    );
}

#[test]
fn docs_hsi_md_is_current() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/hsi.md");
    check_or_bless(path, &doc::render());
}

#[test]
fn vector_file_is_current() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("vectors/frames.json");
    check_or_bless(path, &vectors::render(&vectors::generate()));
}

#[test]
fn committed_vectors_decode_to_their_stated_meaning() {
    let file = vectors::generate();
    assert!(file.vectors.len() >= 10);
    for v in &file.vectors {
        let bytes = vectors::from_hex(&v.hex).expect("hex");
        match (&v.header, &v.error) {
            (Some(h), None) => {
                let (d, payload, used) = frame::decode_frame(&bytes).unwrap_or_else(|e| panic!("{}: {e}", v.name));
                assert_eq!(&d, h, "{}", v.name);
                assert_eq!(vectors::to_hex(payload), v.payload_hex.clone().unwrap(), "{}", v.name);
                assert_eq!(used, bytes.len(), "{}", v.name);
            }
            (None, Some(reason)) => {
                let e = frame::decode_frame(&bytes).expect_err(&v.name);
                assert_eq!(e.reason(), reason, "{}", v.name);
            }
            _ => panic!("{}: a vector is either valid or invalid", v.name),
        }
    }
}
