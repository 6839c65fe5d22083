//! The conformance suite against the vfio backend over the fake device (`vfio::fake`):
//! two vfio engines (MSI-X interrupts), and a vfio engine (polling) paired with a soft
//! engine, which checks that the fake card speaks the soft engine's wire format.
//!
//! Everything runs on loopback; the vfio engines' own code (register walk, ring layout,
//! phase bits, doorbell, interrupt path, DMA mapping) is what runs, with the fake answering
//! the VFIO calls and modelling the card behind BAR0.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tandem_drivers::conformance::{Pair, MIN_HOST_REGION, MIN_WINDOW};
use tandem_drivers::soft::{SoftEngine, SoftListener};
use tandem_drivers::vfio::dma::DmaBacking;
use tandem_drivers::vfio::fake::{FakeLink, FakeVfio};
use tandem_drivers::vfio::{IrqMode, VfioConfig, VfioEngine};
use tandem_drivers::{Engine, EngineError};

/// A vfio engine over a fake card whose link listens on `l` and dials `partner`, with the
/// mirror window in the file `window` and the soft test pairs' tuning.
fn vfio_engine(l: SoftListener, partner: SocketAddr, window: &Path, irq: IrqMode) -> Result<(VfioEngine, Arc<FakeVfio>), EngineError> {
    let fake = FakeVfio::new(FakeLink::new(l, partner));
    let mut cfg = VfioConfig::new("0000:3b:00.0", MIN_HOST_REGION, MIN_WINDOW);
    cfg.mirror_window = DmaBacking::File(window.to_path_buf());
    cfg.ring_depth = common::RING_DEPTH;
    cfg.retransmit_timeout = Duration::from_millis(30);
    cfg.heartbeat_interval = Duration::from_millis(50);
    cfg.irq = irq;
    let e = VfioEngine::open_with(fake.clone(), cfg)?;
    Ok((e, fake))
}

/// Two vfio engines over fake cards, interrupts on; B restarts over its window file.
fn vfio_pair(_seed: u64) -> Pair {
    common::init_tracing();
    let dirs = common::Dirs::new();
    let (la, lb) = (common::listener(), common::listener());
    let (addr_a, addr_b) = (la.local_addr(), lb.local_addr());
    let (a, fa) = vfio_engine(la, addr_b, &dirs.window("a"), IrqMode::Msix).expect("open A");
    let (b, fb) = vfio_engine(lb, addr_a, &dirs.window("b"), IrqMode::Msix).expect("open B");
    let wb = dirs.window("b");
    let fb2 = fb.clone();
    let restart = move || -> Result<Box<dyn Engine>, EngineError> {
        let l = SoftEngine::bind(addr_b)?;
        let (e, _fake) = vfio_engine(l, addr_a, &wb, IrqMode::Msix)?;
        Ok(Box::new(e))
    };
    Pair {
        a: Box::new(a),
        b: Box::new(b),
        link: Some(Box::new(move || {
            fa.device().cut_link();
            fb2.device().cut_link();
        })),
        restart_b: Some(Box::new(restart)),
        keep: vec![Box::new(dirs), Box::new(fb)],
    }
}

/// A vfio engine over a fake card (polling) as A, a soft engine as B.
fn mixed_pair(_seed: u64) -> Pair {
    common::init_tracing();
    let dirs = common::Dirs::new();
    let (la, lb) = (common::listener(), common::listener());
    let (addr_a, addr_b) = (la.local_addr(), lb.local_addr());
    let (a, fa) = vfio_engine(la, addr_b, &dirs.window("a"), IrqMode::Poll).expect("open A");
    let b = common::start(lb, addr_a, &dirs.window("b"));
    let link_b = b.link();
    let wb = dirs.window("b");
    let restart = move || -> Result<Box<dyn Engine>, EngineError> {
        let l = SoftEngine::bind(addr_b)?;
        Ok(Box::new(common::start(l, addr_a, &wb)))
    };
    Pair {
        a: Box::new(a),
        b: Box::new(b),
        link: Some(Box::new(move || {
            fa.device().cut_link();
            link_b.cut();
        })),
        restart_b: Some(Box::new(restart)),
        keep: vec![Box::new(dirs)],
    }
}

mod vfio_vfio {
    tandem_drivers::conformance_tests!(super::vfio_pair);
}

mod vfio_soft {
    tandem_drivers::conformance_tests!(super::mixed_pair);
}
