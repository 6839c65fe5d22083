//! The mediator server and its UDP client over loopback (docs/ha.md, "Witness").

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tandem::ha::witness::{MediatorServer, UdpWitness, WitnessClient};
use tandem::ha::{DenyReason, Grant, NodeId, ServiceId};

const S: ServiceId = ServiceId(9);

/// Two clients contend for one service through a real server; the copy record blocks the
/// takeover; a stopped server maps to Unreachable.
#[test]
fn udp_mediator_round_trip() {
    let mut server = MediatorServer::bind("127.0.0.1:0").expect("bind");
    let addr = server.local_addr().expect("addr");
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let t = std::thread::spawn(move || server.serve(&stop2));
    let mut a = UdpWitness::new(addr, Duration::from_millis(500)).expect("client a");
    let mut b = UdpWitness::new(addr, Duration::from_millis(500)).expect("client b");

    // The grant's end is counted from the caller's send time, not the witness's clock.
    assert_eq!(a.acquire(S, NodeId(0), 300, 1_000), Grant::Granted { until: 1_300, epoch: 1 });
    assert_eq!(b.acquire(S, NodeId(1), 300, 5), Grant::Denied { reason: DenyReason::HeldByOther, holder: Some(NodeId(0)) });
    assert_eq!(b.mark_copy(S, NodeId(1), false), Err(DenyReason::HeldByOther));
    assert_eq!(a.mark_copy(S, NodeId(0), false), Ok(()));
    std::thread::sleep(Duration::from_millis(350));
    assert_eq!(b.acquire(S, NodeId(1), 300, 10), Grant::Denied { reason: DenyReason::CopyStale, holder: Some(NodeId(0)) });
    assert_eq!(a.mark_copy(S, NodeId(0), true), Ok(()));
    assert_eq!(a.release(S, NodeId(0)), Ok(()));
    assert_eq!(b.acquire(S, NodeId(1), 300, 20), Grant::Granted { until: 320, epoch: 2 });

    stop.store(true, Ordering::Relaxed);
    t.join().expect("server thread").expect("serve");
    let mut c = UdpWitness::new(addr, Duration::from_millis(100)).expect("client c");
    assert_eq!(c.acquire(S, NodeId(0), 300, 0), Grant::Denied { reason: DenyReason::Unreachable, holder: None });
    assert_eq!(c.release(S, NodeId(0)), Err(DenyReason::Unreachable));
}
