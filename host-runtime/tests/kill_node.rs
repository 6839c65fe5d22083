//! Kill -9 of a separate node process mid-workload (issue: "an integration test that
//! kill -9s a separate node process mid-workload"): the partner replays, and every write
//! the primary acknowledged before it died is in the backing image; writes in flight may
//! or may not be. Runs the same flow as `tandem demo` at several kill points.

use std::path::PathBuf;
use tandem::demo::{run, DemoOptions};

fn kill_at(acks: u64, threads: u64) {
    kill_with("soft", acks, threads);
}

fn kill_with(engine: &str, acks: u64, threads: u64) {
    kill_mixed(engine, engine, acks, threads);
}

fn kill_mixed(engine: &str, partner_engine: &str, acks: u64, threads: u64) {
    let opts = DemoOptions {
        engine: engine.into(),
        partner_engine: Some(partner_engine.into()),
        exe: Some(PathBuf::from(env!("CARGO_BIN_EXE_tandem"))),
        kill_after_acks: Some(acks),
        threads,
        blocks: 256,
        ..DemoOptions::default()
    };
    let r = run(&opts, |s| eprintln!("{s}"))
        .unwrap_or_else(|e| panic!("demo flow ({engine} primary, {partner_engine} partner) failed at kill point {acks}: {e:#}"));
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

/// The same flow with the Verilated RTL engine on both nodes (`tandem demo --engine sim`).
#[cfg(feature = "sim")]
#[test]
fn kill_with_the_rtl_engine_on_both_nodes() {
    kill_with("sim", 150, 2);
}

/// A mixed pair: the RTL engine on the primary, the soft engine on the partner (one wire
/// format), and the other way round.
#[cfg(feature = "sim")]
#[test]
fn kill_with_a_mixed_sim_and_soft_pair() {
    kill_mixed("sim", "soft", 150, 2);
    kill_mixed("soft", "sim", 150, 2);
}

/// Without the sim backend built in, `--engine sim` is refused before any node starts,
/// with the way to get it.
#[cfg(not(feature = "sim"))]
#[test]
fn sim_engine_refused_with_rebuild_hint() {
    let opts = DemoOptions { engine: "sim".into(), exe: Some(PathBuf::from(env!("CARGO_BIN_EXE_tandem"))), ..DemoOptions::default() };
    let e = run(&opts, |_| {}).expect_err("a tandem without the sim backend cannot run the sim demo");
    assert!(e.to_string().contains("--features sim"), "{e}");
}
