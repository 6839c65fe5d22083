//! Node configuration: one TOML file per node. See `examples/` for documented files.
//!
//! Every error names the file and the field: parse errors carry toml's line and key,
//! validation errors name the field (`engine.partner`, `mirror.log_size`, ...).

use serde::{Deserialize, Deserializer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tandem_hsi::window::Geometry;

/// A configuration problem, naming the file and the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// File.
        file: PathBuf,
        /// Error.
        #[source]
        source: std::io::Error,
    },
    /// TOML syntax, an unknown or missing field, or a value of the wrong type.
    #[error("{file}: {message}")]
    Parse {
        /// File.
        file: PathBuf,
        /// toml's message (with line, column and key).
        message: String,
    },
    /// A field's value cannot work.
    #[error("{file}: field `{field}`: {reason}")]
    Invalid {
        /// File.
        file: PathBuf,
        /// Dotted field name.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

/// A byte size: an integer, or a string with a unit (`"64MiB"`, `"4 KiB"`, `"1GiB"`, `"512"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parses `"<number>[ ]<unit>"` with units B, KiB, MiB, GiB, TiB (also K, M, G, T).
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num.parse().map_err(|_| format!("`{s}` is not a size (examples: 4096, \"64MiB\", \"1GiB\")"))?;
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "K" | "KiB" => 1 << 10,
            "M" | "MiB" => 1 << 20,
            "G" | "GiB" => 1 << 30,
            "T" | "TiB" => 1 << 40,
            other => return Err(format!("unknown size unit `{other}` (use B, KiB, MiB, GiB or TiB)")),
        };
        n.checked_mul(mult).map(ByteSize).ok_or_else(|| format!("`{s}` overflows 64 bits"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(ByteSize(n)),
            Raw::Str(s) => ByteSize::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

/// Which engine backend a node uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineKind {
    /// The software engine over TCP.
    Soft,
    /// The Verilated RTL engine in this process.
    Sim,
    /// A card through VFIO, at this PCI address.
    Vfio(String),
}

impl EngineKind {
    /// Parses `soft`, `sim` or `vfio:<PCI address>`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "soft" => Ok(EngineKind::Soft),
            "sim" => Ok(EngineKind::Sim),
            _ => match s.strip_prefix("vfio:") {
                Some(addr) if !addr.is_empty() => Ok(EngineKind::Vfio(addr.to_string())),
                _ => Err(format!("`{s}` is not an engine: use \"soft\", \"sim\" or \"vfio:<PCI address>\"")),
            },
        }
    }
}

/// `[node]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// Node name, used in logs and status.
    pub name: String,
    /// Unix socket for `tandem status` and the other operator commands.
    pub control_socket: PathBuf,
}

fn d_heartbeat() -> u64 {
    100
}
fn d_retransmit() -> u64 {
    50
}
fn d_ack_timeout() -> u64 {
    5000
}
fn d_startup() -> u64 {
    30_000
}
fn d_ring() -> u32 {
    1024
}
fn d_in_flight() -> u32 {
    256
}

/// `[engine]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSection {
    /// `soft`, `sim` or `vfio:<PCI address>`.
    pub kind: String,
    /// Where this node's inbound mirror link listens.
    pub listen: SocketAddr,
    /// The partner's inbound mirror link.
    pub partner: SocketAddr,
    /// Heartbeat interval on an idle link, ms.
    #[serde(default = "d_heartbeat")]
    pub heartbeat_ms: u64,
    /// Retransmission timeout, ms.
    #[serde(default = "d_retransmit")]
    pub retransmit_ms: u64,
    /// How long an append waits for the partner's acknowledgement, ms.
    #[serde(default = "d_ack_timeout")]
    pub ack_timeout_ms: u64,
    /// How long start-up waits for the partner, ms.
    #[serde(default = "d_startup")]
    pub startup_timeout_ms: u64,
    /// Submission ring depth (power of two).
    #[serde(default = "d_ring")]
    pub ring_depth: u32,
    /// Flow-control window, frames.
    #[serde(default = "d_in_flight")]
    pub max_in_flight: u32,
    /// `[engine.sim]`: settings of the sim backend only.
    #[serde(default)]
    pub sim: Option<SimSection>,
}

fn d_sim_width() -> u32 {
    512
}
fn d_sim_heartbeat_us() -> u32 {
    20
}
fn d_sim_retransmit_us() -> u32 {
    40
}

/// `[engine.sim]`: the Verilated RTL engine. Its timers count simulated time, which runs
/// thousands of times slower than wall-clock time, so they are set here in simulated
/// microseconds instead of through `heartbeat_ms`/`retransmit_ms`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimSection {
    /// Datapath width in bits: 64 or 512 (512 simulates far fewer cycles per byte).
    #[serde(default = "d_sim_width")]
    pub width: u32,
    /// `HEARTBEAT_US`, simulated microseconds.
    #[serde(default = "d_sim_heartbeat_us")]
    pub heartbeat_us: u32,
    /// `RETRANSMIT_US`, simulated microseconds.
    #[serde(default = "d_sim_retransmit_us")]
    pub retransmit_us: u32,
}

impl Default for SimSection {
    fn default() -> Self {
        SimSection { width: d_sim_width(), heartbeat_us: d_sim_heartbeat_us(), retransmit_us: d_sim_retransmit_us() }
    }
}

fn d_page_size() -> u32 {
    4096
}
fn d_page_count() -> u32 {
    256
}

/// `[mirror]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorSection {
    /// This node's own region (log and pages), a file mapped shared.
    pub local_region: PathBuf,
    /// The partner's copy of its region, written by the engine.
    pub mirror_window: PathBuf,
    /// Log region size.
    pub log_size: ByteSize,
    /// Page size of the tagged page pool.
    #[serde(default = "d_page_size")]
    pub page_size: u32,
    /// Pages in the pool.
    #[serde(default = "d_page_count")]
    pub page_count: u32,
}

fn d_cp_interval() -> u64 {
    1000
}
fn d_cp_percent() -> u8 {
    50
}

/// `[store]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// This node's backing image.
    pub backing: PathBuf,
    /// The partner's backing image (shared storage), taken over with its log.
    pub partner_backing: PathBuf,
    /// Data area size of each image.
    pub size: ByteSize,
    /// Consistency point at least this often, ms.
    #[serde(default = "d_cp_interval")]
    pub checkpoint_interval_ms: u64,
    /// Consistency point when the log is this full, percent.
    #[serde(default = "d_cp_percent")]
    pub checkpoint_log_percent: u8,
}

fn d_misses() -> u32 {
    3
}
fn d_lease() -> u64 {
    400
}
fn d_boot_wait() -> u64 {
    1000
}
fn d_cluster() -> String {
    "tandem".into()
}
fn d_witness_timeout() -> u64 {
    50
}

/// `[ha]`: run the node as one half of an HA pair (failure detection, witness, takeover,
/// giveback, NBD exports). Without it the node only mirrors its log.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaSection {
    /// 0 or 1: this node's id in the pair (the other node has the other one).
    pub node_id: u8,
    /// UDP address for heartbeats on the management network.
    pub mgmt_listen: SocketAddr,
    /// The partner's `mgmt_listen`.
    pub partner_mgmt: SocketAddr,
    /// The witness: `mediator:<host:port>` (a `tandem mediator`), or
    /// `etcd:<endpoint>[,<endpoint>...]` (etcd v3, e.g. `etcd:http://10.0.0.5:2379`).
    pub witness: String,
    /// Name of the pair in the etcd key space (`/tandem/<cluster>/service/<id>`).
    #[serde(default = "d_cluster")]
    pub cluster: String,
    /// Heartbeat interval, ms (both paths).
    #[serde(default = "d_heartbeat")]
    pub heartbeat_ms: u64,
    /// Missed heartbeats (on both paths) before the partner is declared lost.
    #[serde(default = "d_misses")]
    pub misses: u32,
    /// Witness lease length, ms; must exceed `heartbeat_ms * misses`.
    #[serde(default = "d_lease")]
    pub lease_ms: u64,
    /// How long a booting node waits for its partner before serving alone, ms.
    #[serde(default = "d_boot_wait")]
    pub boot_wait_ms: u64,
    /// Give the partner's services back this long after it returned (ms); absent: only
    /// on `tandem giveback`.
    pub auto_giveback_ms: Option<u64>,
    /// How long one witness request may take, ms.
    #[serde(default = "d_witness_timeout")]
    pub witness_timeout_ms: u64,
}

/// Where the witness is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WitnessSpec {
    /// A `tandem mediator` (UDP).
    Mediator(SocketAddr),
    /// etcd v3 endpoints.
    Etcd(Vec<String>),
}

/// `[[service]]`: a storage service of the pair (an NBD export), with its home node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSection {
    /// Service id (the service tag of its log records and pages), from 1.
    pub id: u32,
    /// Node id (0 or 1) that serves it when both nodes are healthy.
    pub home: u8,
    /// NBD export name.
    pub export: String,
    /// Address the export listens on, on whichever node serves it.
    pub nbd_listen: SocketAddr,
    /// The service's backing image (shared storage: the same path on both nodes).
    pub backing: PathBuf,
    /// Data area size of the image (the export's size).
    pub size: ByteSize,
    /// Addresses, MAC and FC virtual ports that move with the service (`[service.identity]`).
    #[serde(default)]
    pub identity: Option<crate::identity::model::IdentitySection>,
}

/// A node's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[node]`.
    pub node: NodeSection,
    /// `[engine]`.
    pub engine: EngineSection,
    /// `[mirror]`.
    pub mirror: MirrorSection,
    /// `[store]`.
    pub store: StoreSection,
    /// `[ha]`, for a node of an HA pair.
    #[serde(default)]
    pub ha: Option<HaSection>,
    /// `[[service]]`, the pair's services (with `[ha]`).
    #[serde(default)]
    pub service: Vec<ServiceSection>,
    /// Where it was read from.
    #[serde(skip)]
    pub file: PathBuf,
}

impl Config {
    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { file: path.to_path_buf(), source })?;
        Self::parse(&text, path)
    }

    /// Parses and validates text that came from `file`.
    pub fn parse(text: &str, file: &Path) -> Result<Self, ConfigError> {
        let mut c: Config = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { file: file.to_path_buf(), message: e.to_string().trim_end().to_string() })?;
        c.file = file.to_path_buf();
        c.validate()?;
        Ok(c)
    }

    fn invalid(&self, field: &'static str, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid { file: self.file.clone(), field, reason: reason.into() }
    }

    /// The engine kind.
    pub fn engine_kind(&self) -> Result<EngineKind, ConfigError> {
        EngineKind::parse(&self.engine.kind).map_err(|r| self.invalid("engine.kind", r))
    }

    /// The window geometry (log id 0: the real id is chosen when the log is formatted).
    pub fn geometry(&self) -> Result<Geometry, ConfigError> {
        Geometry::new(self.mirror.log_size.0, self.mirror.page_size, self.mirror.page_count, 0).map_err(|e| match e {
            tandem_hsi::window::GeometryError::Invalid(r) if r.starts_with("page size") => self.invalid("mirror.page_size", r),
            other => self.invalid("mirror.log_size", other.to_string()),
        })
    }

    /// Acknowledgement timeout.
    pub fn ack_timeout(&self) -> Duration {
        Duration::from_millis(self.engine.ack_timeout_ms)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.node.name.trim().is_empty() {
            return Err(self.invalid("node.name", "must not be empty"));
        }
        let kind = self.engine_kind()?;
        self.validate_sim(&kind)?;
        if self.engine.partner.port() == 0 || self.engine.partner.ip().is_unspecified() {
            return Err(self.invalid("engine.partner", format!("{} is not an address to dial", self.engine.partner)));
        }
        if self.engine.listen == self.engine.partner {
            return Err(self.invalid("engine.partner", "is the same address as engine.listen"));
        }
        for (field, v) in [
            ("engine.heartbeat_ms", self.engine.heartbeat_ms),
            ("engine.retransmit_ms", self.engine.retransmit_ms),
            ("engine.ack_timeout_ms", self.engine.ack_timeout_ms),
            ("engine.startup_timeout_ms", self.engine.startup_timeout_ms),
            ("store.checkpoint_interval_ms", self.store.checkpoint_interval_ms),
        ] {
            if v == 0 || v > 3_600_000 {
                return Err(self.invalid(field, format!("{v} must be from 1 to 3600000 ms")));
            }
        }
        if !self.engine.ring_depth.is_power_of_two() || self.engine.ring_depth > 65536 {
            return Err(self.invalid("engine.ring_depth", format!("{} is not a power of two up to 65536", self.engine.ring_depth)));
        }
        if self.engine.max_in_flight == 0 {
            return Err(self.invalid("engine.max_in_flight", "must be at least 1"));
        }
        self.geometry()?;
        if self.mirror.local_region == self.mirror.mirror_window {
            return Err(self.invalid("mirror.mirror_window", "is the same file as mirror.local_region"));
        }
        if self.store.size.0 == 0 {
            return Err(self.invalid("store.size", "must be above 0"));
        }
        if self.store.backing == self.store.partner_backing {
            return Err(self.invalid("store.partner_backing", "is the same file as store.backing"));
        }
        if !(1..=95).contains(&self.store.checkpoint_log_percent) {
            return Err(self.invalid("store.checkpoint_log_percent", format!("{} is not from 1 to 95", self.store.checkpoint_log_percent)));
        }
        self.validate_ha()
    }

    fn validate_sim(&self, kind: &EngineKind) -> Result<(), ConfigError> {
        if *kind == EngineKind::Sim && self.engine.ring_depth > 16384 {
            return Err(
                self.invalid("engine.ring_depth", format!("{} is above 16384, the sim backend's largest ring", self.engine.ring_depth))
            );
        }
        let Some(sim) = &self.engine.sim else { return Ok(()) };
        if *kind != EngineKind::Sim {
            return Err(self
                .invalid("engine.sim", format!("is set but engine.kind is \"{}\": it applies to the sim backend only", self.engine.kind)));
        }
        if sim.width != 64 && sim.width != 512 {
            return Err(self.invalid("engine.sim.width", format!("{} is not 64 or 512", sim.width)));
        }
        for (field, v) in [("engine.sim.heartbeat_us", sim.heartbeat_us), ("engine.sim.retransmit_us", sim.retransmit_us)] {
            if !(1..=1_000_000).contains(&v) {
                return Err(self.invalid(field, format!("{v} must be from 1 to 1000000 simulated us")));
            }
        }
        Ok(())
    }

    /// The witness `ha.witness` names.
    pub fn witness(&self) -> Result<WitnessSpec, ConfigError> {
        let ha = self.ha.as_ref().ok_or_else(|| self.invalid("ha", "missing"))?;
        if let Some(a) = ha.witness.strip_prefix("mediator:") {
            return a.parse().map(WitnessSpec::Mediator).map_err(|e| self.invalid("ha.witness", format!("`{a}` is not host:port: {e}")));
        }
        if let Some(list) = ha.witness.strip_prefix("etcd:") {
            let eps: Vec<String> = list.split(',').map(|e| e.trim().to_string()).filter(|e| !e.is_empty()).collect();
            if eps.is_empty() {
                return Err(self.invalid("ha.witness", "etcd: needs at least one endpoint"));
            }
            let refs: Vec<&str> = eps.iter().map(String::as_str).collect();
            crate::ha::etcd::EtcdWitness::new(&refs, &ha.cluster, Duration::from_millis(ha.witness_timeout_ms))
                .map_err(|e| self.invalid("ha.witness", e.to_string()))?;
            return Ok(WitnessSpec::Etcd(eps));
        }
        Err(self.invalid("ha.witness", format!("`{}` is not a witness: use \"mediator:<host:port>\" or \"etcd:<endpoint>\"", ha.witness)))
    }

    fn validate_ha(&self) -> Result<(), ConfigError> {
        let Some(ha) = &self.ha else {
            if !self.service.is_empty() {
                return Err(self.invalid("service", "services need an [ha] section"));
            }
            return Ok(());
        };
        if ha.node_id > 1 {
            return Err(self.invalid("ha.node_id", format!("{} is not 0 or 1", ha.node_id)));
        }
        if ha.mgmt_listen == ha.partner_mgmt {
            return Err(self.invalid("ha.partner_mgmt", "is the same address as ha.mgmt_listen"));
        }
        self.witness()?;
        if ha.misses == 0 {
            return Err(self.invalid("ha.misses", "must be at least 1"));
        }
        if ha.heartbeat_ms < 4 || ha.heartbeat_ms > 60_000 {
            return Err(self.invalid("ha.heartbeat_ms", format!("{} is not from 4 to 60000", ha.heartbeat_ms)));
        }
        if ha.lease_ms <= ha.heartbeat_ms * ha.misses as u64 {
            return Err(self.invalid(
                "ha.lease_ms",
                format!("{} must exceed heartbeat_ms x misses = {}", ha.lease_ms, ha.heartbeat_ms * ha.misses as u64),
            ));
        }
        if ha.witness_timeout_ms == 0 || ha.witness_timeout_ms * 2 >= ha.lease_ms {
            return Err(
                self.invalid("ha.witness_timeout_ms", format!("{} must be above 0 and below half of ha.lease_ms", ha.witness_timeout_ms))
            );
        }
        if self.service.is_empty() {
            return Err(self.invalid("service", "an HA node needs at least one [[service]]"));
        }
        let mut ids = std::collections::BTreeSet::new();
        for s in &self.service {
            if s.id == 0 || !ids.insert(s.id) {
                return Err(self.invalid("service.id", format!("{} is 0 or used twice", s.id)));
            }
            if s.home > 1 {
                return Err(self.invalid("service.home", format!("service {}: {} is not 0 or 1", s.id, s.home)));
            }
            if s.size.0 == 0 || s.size.0 % 4096 != 0 {
                return Err(self.invalid("service.size", format!("service {}: {} is not a positive multiple of 4096", s.id, s.size.0)));
            }
        }
        let idents = self.service_identities()?;
        crate::identity::model::validate_distinct(&idents).map_err(|e| self.invalid(e.field, e.reason))?;
        Ok(())
    }

    /// The resolved identities of the services that have a `[service.identity]` section.
    pub fn service_identities(&self) -> Result<Vec<crate::identity::model::ServiceIdentity>, ConfigError> {
        self.service
            .iter()
            .filter_map(|s| s.identity.as_ref().map(|i| (s.id, i)))
            .map(|(id, i)| i.resolve(crate::ha::ServiceId(id)).map_err(|e| self.invalid(e.field, format!("service {id}: {}", e.reason))))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[node]
name = "a"
control_socket = "/tmp/a.sock"
[engine]
kind = "soft"
listen = "127.0.0.1:7101"
partner = "127.0.0.1:7102"
[mirror]
local_region = "/tmp/a.local"
mirror_window = "/tmp/a.mirror"
log_size = "1MiB"
[store]
backing = "/tmp/a.img"
partner_backing = "/tmp/b.img"
size = "16MiB"
"#;

    fn err(text: &str) -> String {
        Config::parse(text, Path::new("node.toml")).unwrap_err().to_string()
    }

    #[test]
    fn good_config_parses_with_defaults() {
        let c = Config::parse(GOOD, Path::new("node.toml")).unwrap();
        assert_eq!(c.mirror.log_size, ByteSize(1 << 20));
        assert_eq!(c.engine.heartbeat_ms, 100);
        assert_eq!(c.engine_kind().unwrap(), EngineKind::Soft);
    }

    #[test]
    fn errors_name_file_and_field() {
        let e = err(&GOOD.replace("kind = \"soft\"", "kind = \"fpga\""));
        assert!(e.starts_with("node.toml: field `engine.kind`"), "{e}");
        let e = err(&GOOD.replace("log_size = \"1MiB\"", "log_size = \"1KiB\""));
        assert!(e.contains("`mirror.log_size`"), "{e}");
        let e = err(&GOOD.replace("log_size = \"1MiB\"", "log_size = \"1 parsec\""));
        assert!(e.contains("node.toml") && e.contains("log_size") && e.contains("unknown size unit"), "{e}");
        let e = err(&GOOD.replace("[store]", "[store]\nbogus = 1"));
        assert!(e.contains("node.toml") && e.contains("bogus"), "{e}");
        let e = err(&GOOD.replace("partner = \"127.0.0.1:7102\"", "partner = \"0.0.0.0:7102\""));
        assert!(e.contains("`engine.partner`"), "{e}");
        let e = err(&GOOD.replace("[mirror]", "[mirror]\npage_size = 3000"));
        assert!(e.contains("`mirror.page_size`"), "{e}");
        let e = err(&GOOD.replace("name = \"a\"\n", ""));
        assert!(e.contains("node.toml") && e.contains("name"), "{e}");
    }

    #[test]
    fn sim_section_is_checked() {
        let sim = GOOD.replace("kind = \"soft\"", "kind = \"sim\"");
        let c = Config::parse(&sim, Path::new("node.toml")).unwrap();
        assert_eq!(c.engine_kind().unwrap(), EngineKind::Sim);
        assert!(c.engine.sim.is_none(), "defaults apply when [engine.sim] is absent");
        let with = |extra: &str| sim.replace("[mirror]", &format!("[engine.sim]\n{extra}\n[mirror]"));
        let c = Config::parse(&with("width = 64\nheartbeat_us = 5"), Path::new("node.toml")).unwrap();
        let s = c.engine.sim.unwrap();
        assert_eq!((s.width, s.heartbeat_us, s.retransmit_us), (64, 5, SimSection::default().retransmit_us));
        let e = err(&with("width = 128"));
        assert!(e.contains("`engine.sim.width`") && e.contains("128 is not 64 or 512"), "{e}");
        let e = err(&with("retransmit_us = 0"));
        assert!(e.contains("`engine.sim.retransmit_us`"), "{e}");
        let e = err(&with("clock_mhz = 300"));
        assert!(e.contains("clock_mhz"), "{e}");
        let e = err(&GOOD.replace("[mirror]", "[engine.sim]\nwidth = 64\n[mirror]"));
        assert!(e.contains("`engine.sim`") && e.contains("sim backend only"), "{e}");
        let e = err(&sim.replace("[mirror]", "ring_depth = 32768\n[mirror]"));
        assert!(e.contains("`engine.ring_depth`") && e.contains("16384"), "{e}");
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(ByteSize::parse("4 KiB"), Ok(ByteSize(4096)));
        assert_eq!(ByteSize::parse("2G"), Ok(ByteSize(2 << 30)));
        assert!(ByteSize::parse("99999999999TiB").is_err());
        assert!(ByteSize::parse("MiB").is_err());
        assert_eq!(EngineKind::parse("vfio:0000:3b:00.0"), Ok(EngineKind::Vfio("0000:3b:00.0".into())));
        assert!(EngineKind::parse("vfio:").is_err());
    }
}
