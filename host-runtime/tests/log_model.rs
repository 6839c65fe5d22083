//! Property test of the mirrored log against a reference model (issue: "random operation
//! sequences with random crash points"): whatever the operations and wherever the
//! primary crashes, the partner's replay leaves the store equal to the model of
//! acknowledged changes (an unacknowledged change in flight at the crash may or may not
//! be there), and no record's application is recorded twice.
//!
//! Reproduce a failure with the seed proptest prints, e.g.
//! `PROPTEST_CASES=1000 cargo test -p tandem --test log_model`.

mod support;

use proptest::prelude::*;
use support::*;
use tandem::log::Change;
use tandem::scan;
use tandem::store::Store;
use tandem_drivers::Engine;

const BLOCK: u64 = 80 * 1024;
const BLOCKS: u64 = 6;
const SIZE: usize = (BLOCK * BLOCKS) as usize;

#[derive(Debug, Clone)]
enum Op {
    Write { block: u64, at: u64, len: usize, fill: u8 },
    Trim { block: u64, len: u64 },
    Checkpoint,
}

#[derive(Debug, Clone)]
enum Crash {
    /// Between operations.
    Clean,
    /// During an append, after `delivered` of its entries reached the partner.
    MidAppend { block: u64, len: usize, fill: u8, delivered: u64 },
    /// During a consistency point, after `writes` store writes.
    MidCheckpoint { writes: u64 },
    /// After a consistency point recorded its LSN in the store, before its marker reached the partner.
    BeforeMarker,
}

fn write_len() -> impl Strategy<Value = usize> {
    prop_oneof![1usize..200, Just(4096usize), 60_000usize..70_000]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..BLOCKS, 0u64..64, write_len(), any::<u8>()).prop_map(|(block, at, len, fill)| Op::Write { block, at, len, fill }),
        1 => (0..BLOCKS, 1u64..5000).prop_map(|(block, len)| Op::Trim { block, len }),
        1 => Just(Op::Checkpoint),
    ]
}

fn crash() -> impl Strategy<Value = Crash> {
    prop_oneof![
        Just(Crash::Clean),
        (0..BLOCKS, write_len(), any::<u8>(), 0u64..3).prop_map(|(block, len, fill, delivered)| Crash::MidAppend {
            block,
            len,
            fill,
            delivered
        }),
        (0u64..8).prop_map(|writes| Crash::MidCheckpoint { writes }),
        Just(Crash::BeforeMarker),
    ]
}

fn payload(len: usize, fill: u8) -> Vec<u8> {
    (0..len).map(|i| fill.wrapping_add((i % 251) as u8)).collect()
}

fn apply_model(model: &mut [u8], off: u64, data: Option<&[u8]>, len: u64) {
    let r = off as usize..(off + len) as usize;
    match data {
        Some(d) => model[r].copy_from_slice(d),
        None => model[r].fill(0),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn replay_after_any_crash_matches_acknowledged_writes(ops in prop::collection::vec(op(), 1..30), crash in crash()) {
        let p = pair();
        let mut store = ModelStore::new(SIZE);
        let mut model = vec![0u8; SIZE];
        let mut last_acked = 0;
        for op in &ops {
            if p.log.stats().used > LOG_SIZE / 2 {
                p.log.checkpoint(&mut store).unwrap();
            }
            match *op {
                Op::Write { block, at, len, fill } => {
                    let off = block * BLOCK + at;
                    let data = payload(len, fill);
                    last_acked = p.log.append(1, Change::Write { offset: off }, &data).unwrap();
                    apply_model(&mut model, off, Some(&data), len as u64);
                }
                Op::Trim { block, len } => {
                    last_acked = p.log.append(1, Change::Trim { offset: block * BLOCK, len }, &[]).unwrap();
                    apply_model(&mut model, block * BLOCK, None, len);
                }
                Op::Checkpoint => {
                    p.log.checkpoint(&mut store).unwrap();
                }
            }
        }
        let mut in_flight = None;
        match crash {
            Crash::Clean => {}
            Crash::MidAppend { block, len, fill, delivered } => {
                if p.log.stats().used > LOG_SIZE / 2 {
                    p.log.checkpoint(&mut store).unwrap();
                }
                p.a.fail_after(Some(delivered));
                let data = payload(len, fill);
                let off = block * BLOCK;
                match p.log.append(1, Change::Write { offset: off }, &data) {
                    Ok(lsn) => {
                        last_acked = lsn;
                        apply_model(&mut model, off, Some(&data), len as u64);
                    }
                    Err(_) => in_flight = Some((off, data)),
                }
            }
            Crash::MidCheckpoint { writes } => {
                store.writes_left = Some(writes);
                let _ = p.log.checkpoint(&mut store);
                store.writes_left = None;
            }
            Crash::BeforeMarker => {
                p.a.fail_after(Some(0));
                prop_assert!(p.log.checkpoint(&mut store).is_err() || p.log.stats().pending == 0);
            }
        }
        // The primary is gone; the partner replays from its mirror window.
        let report = scan::replay(p.b.mirror_window(), &mut store).unwrap();
        let log_id = p.log.geometry().log_id;
        prop_assert!(store.applied_lsn(log_id) >= last_acked, "acknowledged LSN {} not applied (report {:?})", last_acked, report);
        if report.applied > 0 {
            prop_assert!(report.first_applied > report.store_applied_before.max(report.marker_lsn));
        }
        store.applied_at_most_once().map_err(TestCaseError::fail)?;
        if store.data != model {
            let (off, data) = in_flight.clone().ok_or_else(|| TestCaseError::fail(format!("store differs from the model of acknowledged writes (report {report:?})")))?;
            let mut with = model.clone();
            apply_model(&mut with, off, Some(&data), data.len() as u64);
            prop_assert!(store.data == with, "store matches neither the acknowledged model nor it plus the in-flight write (report {:?})", report);
        }
    }
}
