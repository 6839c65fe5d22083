//! Builds the engine backend a configuration names.

use crate::config::{Config, ConfigError, EngineKind};
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
        kind @ (EngineKind::Sim | EngineKind::Vfio(_)) => Err(ConfigError::Invalid {
            file: cfg.file.clone(),
            field: "engine.kind",
            reason: format!("the {kind:?} backend is not built yet; only \"soft\" works in this version (see README, Status)"),
        }
        .into()),
    }
}
