//! Builds the engine backend a configuration names.

use crate::config::{Config, EngineKind};
use std::sync::Arc;
use std::time::Duration;
use tandem_drivers::soft::{SoftConfig, SoftEngine};
use tandem_drivers::{Engine, MemRegion};

/// Starts the configured engine over the node's region and mirror window.
pub fn build(cfg: &Config, host: MemRegion, window: MemRegion) -> anyhow::Result<Arc<dyn Engine>> {
    match cfg.engine_kind()? {
        EngineKind::Soft => {
            let mut sc = SoftConfig::new(cfg.engine.listen, cfg.engine.partner, host, window);
            sc.heartbeat_interval = Duration::from_millis(cfg.engine.heartbeat_ms);
            sc.retransmit_timeout = Duration::from_millis(cfg.engine.retransmit_ms);
            sc.ring_depth = cfg.engine.ring_depth;
            sc.max_in_flight = cfg.engine.max_in_flight;
            sc.io_timeout = sc.io_timeout.max(sc.heartbeat_interval * 4);
            let e = SoftEngine::new(sc).map_err(|e| anyhow::anyhow!("{}: engine: {e}", cfg.file.display()))?;
            Ok(Arc::new(e))
        }
        EngineKind::Vfio(addr) => {
            // The card's engine owns its DMA memory: it maps the same files itself.
            let (host_len, window_len) = (host.len(), window.len());
            drop((host, window));
            let mut vc = tandem_drivers::vfio::VfioConfig::new(&addr, host_len, window_len);
            vc.host_region = tandem_drivers::vfio::dma::DmaBacking::File(cfg.mirror.local_region.clone());
            vc.mirror_window = tandem_drivers::vfio::dma::DmaBacking::File(cfg.mirror.mirror_window.clone());
            vc.ring_depth = cfg.engine.ring_depth.min(65535);
            vc.max_in_flight = cfg.engine.max_in_flight;
            vc.retransmit_timeout = Duration::from_millis(cfg.engine.retransmit_ms);
            vc.heartbeat_interval = Duration::from_millis(cfg.engine.heartbeat_ms);
            let e = tandem_drivers::vfio::VfioEngine::open(vc)
                .map_err(|e| anyhow::anyhow!("{}: engine.kind = \"vfio:{addr}\": {e}", cfg.file.display()))?;
            Ok(Arc::new(e))
        }
        EngineKind::Sim => sim(cfg, host, window),
    }
}

/// The Verilated RTL engine in this process, linked to the partner over TCP with the soft
/// engine's connection protocol (so the partner may run either backend).
#[cfg(feature = "sim")]
fn sim(cfg: &Config, host: MemRegion, window: MemRegion) -> anyhow::Result<Arc<dyn Engine>> {
    use tandem_sim_engine::{SimConfig, SimEngine, SimLink};
    let s = cfg.engine.sim.clone().unwrap_or_default();
    let listener = std::net::TcpListener::bind(cfg.engine.listen)
        .map_err(|e| anyhow::anyhow!("{}: engine.listen = {}: {e}", cfg.file.display(), cfg.engine.listen))?;
    let mut sc = SimConfig::new(host, window, SimLink::Tcp { listener, partner: cfg.engine.partner });
    sc.width = s.width as usize;
    sc.ring_depth = cfg.engine.ring_depth;
    sc.max_in_flight = cfg.engine.max_in_flight;
    sc.heartbeat_us = s.heartbeat_us;
    sc.retransmit_us = s.retransmit_us;
    sc.name = format!("sim-{}", cfg.node.name);
    let e = SimEngine::start(sc).map_err(|e| anyhow::anyhow!("{}: engine.kind = \"sim\": {e}", cfg.file.display()))?;
    Ok(Arc::new(e))
}

#[cfg(not(feature = "sim"))]
fn sim(cfg: &Config, _host: MemRegion, _window: MemRegion) -> anyhow::Result<Arc<dyn Engine>> {
    Err(crate::config::ConfigError::Invalid {
        file: cfg.file.clone(),
        field: "engine.kind",
        reason: format!("\"sim\" needs the sim backend, and this tandem was built without it: {SIM_REBUILD}"),
    }
    .into())
}

/// How to get a `tandem` with the sim backend.
pub const SIM_REBUILD: &str =
    "rebuild with `cargo build --release -p tandem --features sim` (needs verilator, g++ and make: `apt-get install verilator g++ make`)";
