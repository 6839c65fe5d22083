//! Kill -9 of a separate node process mid-workload (issue: "an integration test that
//! kill -9s a separate node process mid-workload"): the partner replays, and every write
//! the primary acknowledged before it died is in the backing image; writes in flight may
//! or may not be. Runs the same flow as `tandem demo` at several kill points.

use std::path::PathBuf;
use tandem::demo::{run, DemoOptions};

fn kill_at(acks: u64, threads: u64) {
    let opts = DemoOptions {
        exe: Some(PathBuf::from(env!("CARGO_BIN_EXE_tandem"))),
        kill_after_acks: acks,
        threads,
        blocks: 256,
        ..DemoOptions::default()
    };
    let r = run(&opts, |s| eprintln!("{s}")).unwrap_or_else(|e| panic!("demo flow failed at kill point {acks}: {e:#}"));
    assert!(r.acked >= acks, "primary was killed only after {acks} acknowledgements");
    assert_eq!(r.violations, 0, "acknowledged writes missing after replay: {r:?}");
    let applied = r.replay["applied"].as_u64().unwrap();
    let skipped = r.replay["skipped"].as_u64().unwrap();
    let last = r.replay["last_applied"].as_u64().unwrap();
    let marker = r.replay["marker_lsn"].as_u64().unwrap();
    // Every acknowledged write has an LSN at or below what is now applied.
    assert!(last.max(marker) >= r.acked, "replay stopped at LSN {} but {} writes were acknowledged", last.max(marker), r.acked);
    assert!(applied + skipped > 0 || marker >= r.acked);
}

#[test]
fn kill_early_single_writer() {
    kill_at(300, 1);
}

#[test]
fn kill_mid_workload_four_writers() {
    kill_at(4000, 4);
}

#[test]
fn kill_late_after_many_consistency_points() {
    kill_at(15_000, 2);
}
