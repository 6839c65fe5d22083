//! Fibre Channel NPIV virtual ports through the Linux fc_host sysfs interface
//! (`scsi_transport_fc`).
//!
//! Files used, under a sysfs root that is a parameter (`/sys` on a real host, a fake tree
//! in tests):
//!
//! - `class/fc_host/<host>/port_name`, `node_name`: the physical port's names, `0x` and
//!   16 hex digits;
//! - `class/fc_host/<host>/max_npiv_vports`, `npiv_vports_inuse`: decimal counts;
//! - `class/fc_host/<host>/vport_create`, `vport_delete`: write `WWPN:WWNN`, 16 hex
//!   digits each without `0x`;
//! - `class/fc_vports/vport-<host_no>:<channel>-<n>/port_name`, `node_name`,
//!   `vport_state`: the virtual ports that exist.
//!
//! Creating is idempotent: a virtual port with the WWPN already on the host (same WWNN)
//! counts as created. Deleting what is not there succeeds.

use super::model::{fc_host_number, FcPort, Wwn};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// An FC sysfs operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum FcError {
    /// No such fc_host.
    #[error("fc_host {host} not found at {path}")]
    NoHost {
        /// Host name.
        host: String,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The host's driver does not support NPIV.
    #[error("fc_host {host} does not support NPIV (no vport_create or max_npiv_vports is 0)")]
    NoNpiv {
        /// Host name.
        host: String,
    },
    /// Every NPIV virtual port of the host is in use.
    #[error("fc_host {host} has no NPIV capacity left: {inuse} of {max} virtual ports in use")]
    NoCapacity {
        /// Host name.
        host: String,
        /// `max_npiv_vports`.
        max: u64,
        /// `npiv_vports_inuse`.
        inuse: u64,
    },
    /// The WWPN is the physical port's own name.
    #[error("WWPN {wwpn} is the physical port name of fc_host {host}")]
    IsPhysical {
        /// Host name.
        host: String,
        /// WWPN.
        wwpn: Wwn,
    },
    /// A virtual port with this WWPN exists with another WWNN or on another host.
    #[error("WWPN {wwpn} is already virtual port {vport} (host{host_no}, WWNN {wwnn}), not on {want_host} with WWNN {want_wwnn}")]
    Conflict {
        /// WWPN.
        wwpn: Wwn,
        /// The existing vport's name.
        vport: String,
        /// Its host number.
        host_no: u32,
        /// Its WWNN.
        wwnn: Wwn,
        /// Host asked for.
        want_host: String,
        /// WWNN asked for.
        want_wwnn: Wwn,
    },
    /// Reading or writing a sysfs file failed.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Error (the kernel's: EINVAL for a bad name, EBUSY, ...).
        #[source]
        source: io::Error,
    },
    /// A sysfs file did not hold what the kernel writes there.
    #[error("{path}: unexpected content `{content}`")]
    Format {
        /// File.
        path: PathBuf,
        /// What it held.
        content: String,
    },
    /// The write was accepted but the virtual port did not appear (or disappear) in time.
    #[error("virtual port {wwpn} on {host}: {what} within {waited:?}")]
    Timeout {
        /// WWPN.
        wwpn: Wwn,
        /// Host.
        host: String,
        /// What did not happen.
        what: &'static str,
        /// How long it waited.
        waited: Duration,
    },
}

/// The NPIV state of one fc_host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FcHostInfo {
    /// Physical port name.
    pub port_name: Wwn,
    /// Physical node name.
    pub node_name: Wwn,
    /// How many virtual ports the driver allows.
    pub max_npiv_vports: u64,
    /// How many exist.
    pub npiv_vports_inuse: u64,
}

/// One existing virtual port (an entry of `class/fc_vports`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VportInfo {
    /// Its sysfs name (`vport-5:0-0`).
    pub name: String,
    /// The SCSI host number of its parent fc_host.
    pub host_no: u32,
    /// WWPN.
    pub wwpn: Wwn,
    /// WWNN.
    pub wwnn: Wwn,
    /// `vport_state` (`Active`, `Linkdown`, `Initializing`, ...), if readable.
    pub state: Option<String>,
}

/// What [`FcSysfs::create`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// Written to `vport_create`.
    New,
    /// The virtual port was already there.
    AlreadyPresent,
}

/// What [`FcSysfs::delete`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// Written to `vport_delete`.
    Deleted,
    /// There was no virtual port with the WWPN.
    Absent,
}

/// The fc_host sysfs interface under a root directory.
#[derive(Debug, Clone)]
pub struct FcSysfs {
    root: PathBuf,
    wait: Duration,
}

fn read_trim(path: &Path) -> Result<String, FcError> {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).map_err(|source| FcError::Io { path: path.to_path_buf(), source })
}

/// Parses the kernel's name format: `0x` and 16 hex digits.
fn parse_sysfs_wwn(path: &Path, s: &str) -> Result<Wwn, FcError> {
    let bad = || FcError::Format { path: path.to_path_buf(), content: s.to_string() };
    let hex = s.strip_prefix("0x").ok_or_else(bad)?;
    if hex.len() != 16 {
        return Err(bad());
    }
    u64::from_str_radix(hex, 16).map(Wwn).map_err(|_| bad())
}

fn parse_count(path: &Path, s: &str) -> Result<u64, FcError> {
    s.parse().map_err(|_| FcError::Format { path: path.to_path_buf(), content: s.to_string() })
}

/// `vport-<host_no>:<channel>-<n>` -> host_no.
fn vport_host_no(name: &str) -> Option<u32> {
    name.strip_prefix("vport-")?.split(':').next()?.parse().ok()
}

impl FcSysfs {
    /// The real interface under `/sys`.
    pub fn system() -> Self {
        Self::new("/sys")
    }

    /// The interface under `root` (the directory holding `class/`).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FcSysfs { root: root.into(), wait: Duration::from_secs(5) }
    }

    /// How long [`FcSysfs::create`] and [`FcSysfs::delete`] wait for the virtual port to
    /// appear or disappear after the write (default 5 s).
    pub fn with_wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// The sysfs root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn host_dir(&self, host: &str) -> PathBuf {
        self.root.join("class/fc_host").join(host)
    }

    /// Reads the names and NPIV counts of `host`.
    pub fn host_info(&self, host: &str) -> Result<FcHostInfo, FcError> {
        let dir = self.host_dir(host);
        if fc_host_number(host).is_none() || !dir.is_dir() {
            return Err(FcError::NoHost { host: host.to_string(), path: dir });
        }
        let name = |f: &str| {
            let p = dir.join(f);
            read_trim(&p).and_then(|s| parse_sysfs_wwn(&p, &s))
        };
        let count = |f: &str| {
            let p = dir.join(f);
            match read_trim(&p) {
                Ok(s) => parse_count(&p, &s),
                // A driver without NPIV has no such attribute.
                Err(FcError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(0),
                Err(e) => Err(e),
            }
        };
        Ok(FcHostInfo {
            port_name: name("port_name")?,
            node_name: name("node_name")?,
            max_npiv_vports: count("max_npiv_vports")?,
            npiv_vports_inuse: count("npiv_vports_inuse")?,
        })
    }

    /// Every virtual port in `class/fc_vports`, by name.
    pub fn vports(&self) -> Result<Vec<VportInfo>, FcError> {
        let dir = self.root.join("class/fc_vports");
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            // The class appears with the first FC host; no directory, no vports.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(FcError::Io { path: dir, source }),
        };
        let mut out = Vec::new();
        for ent in rd {
            let ent = ent.map_err(|source| FcError::Io { path: dir.clone(), source })?;
            let name = ent.file_name().to_string_lossy().into_owned();
            let Some(host_no) = vport_host_no(&name) else { continue };
            let d = dir.join(&name);
            let pn = d.join("port_name");
            let nn = d.join("node_name");
            // A vport being deleted may vanish between listing and reading: skip it.
            let (Ok(p), Ok(n)) = (read_trim(&pn), read_trim(&nn)) else { continue };
            out.push(VportInfo {
                name,
                host_no,
                wwpn: parse_sysfs_wwn(&pn, &p)?,
                wwnn: parse_sysfs_wwn(&nn, &n)?,
                state: read_trim(&d.join("vport_state")).ok(),
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The virtual port with `wwpn`, on any host.
    pub fn find_vport(&self, wwpn: Wwn) -> Result<Option<VportInfo>, FcError> {
        Ok(self.vports()?.into_iter().find(|v| v.wwpn == wwpn))
    }

    fn wait_for(&self, port: &FcPort, present: bool, what: &'static str) -> Result<(), FcError> {
        let start = Instant::now();
        loop {
            if self.find_vport(port.wwpn)?.is_some() == present {
                return Ok(());
            }
            if start.elapsed() >= self.wait {
                return Err(FcError::Timeout { wwpn: port.wwpn, host: port.host.clone(), what, waited: self.wait });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Creates the virtual port `port` (idempotent). Refuses when the host has no NPIV
    /// capacity left, when the WWPN is the physical port's, or when a virtual port with
    /// the WWPN exists elsewhere or with another WWNN.
    pub fn create(&self, port: &FcPort) -> Result<Created, FcError> {
        let host_no =
            fc_host_number(&port.host).ok_or_else(|| FcError::NoHost { host: port.host.clone(), path: self.host_dir(&port.host) })?;
        if let Some(v) = self.find_vport(port.wwpn)? {
            if v.host_no == host_no && v.wwnn == port.wwnn {
                return Ok(Created::AlreadyPresent);
            }
            return Err(FcError::Conflict {
                wwpn: port.wwpn,
                vport: v.name,
                host_no: v.host_no,
                wwnn: v.wwnn,
                want_host: port.host.clone(),
                want_wwnn: port.wwnn,
            });
        }
        let info = self.host_info(&port.host)?;
        if info.port_name == port.wwpn {
            return Err(FcError::IsPhysical { host: port.host.clone(), wwpn: port.wwpn });
        }
        let create = self.host_dir(&port.host).join("vport_create");
        if info.max_npiv_vports == 0 || !create.exists() {
            return Err(FcError::NoNpiv { host: port.host.clone() });
        }
        if info.npiv_vports_inuse >= info.max_npiv_vports {
            return Err(FcError::NoCapacity { host: port.host.clone(), max: info.max_npiv_vports, inuse: info.npiv_vports_inuse });
        }
        write_attr(&create, &format!("{}:{}", port.wwpn, port.wwnn))?;
        self.wait_for(port, true, "did not appear in class/fc_vports")?;
        Ok(Created::New)
    }

    /// Deletes the virtual port with `port.wwpn` from the host it is on (idempotent: no
    /// such virtual port is success).
    pub fn delete(&self, port: &FcPort) -> Result<Deleted, FcError> {
        let Some(v) = self.find_vport(port.wwpn)? else { return Ok(Deleted::Absent) };
        let path = self.host_dir(&format!("host{}", v.host_no)).join("vport_delete");
        match write_attr(&path, &format!("{}:{}", v.wwpn, v.wwnn)) {
            Ok(()) => {}
            // Deleted concurrently (ENODEV: the kernel no longer finds it).
            Err(FcError::Io { source, .. }) if source.raw_os_error() == Some(libc::ENODEV) && self.find_vport(port.wwpn)?.is_none() => {
                return Ok(Deleted::Absent)
            }
            Err(e) => return Err(e),
        }
        self.wait_for(port, false, "is still in class/fc_vports")?;
        Ok(Deleted::Deleted)
    }
}

/// Writes a sysfs attribute in one write(2), as the kernel's store handlers expect.
fn write_attr(path: &Path, value: &str) -> Result<(), FcError> {
    use std::io::Write;
    let io_err = |source| FcError::Io { path: path.to_path_buf(), source };
    let mut f = std::fs::OpenOptions::new().write(true).open(path).map_err(io_err)?;
    f.write_all(value.as_bytes()).map_err(io_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kernel_formats() {
        let p = Path::new("x");
        assert_eq!(parse_sysfs_wwn(p, "0x2100001b32a1b2c3").unwrap(), Wwn(0x2100_001b_32a1_b2c3));
        assert!(parse_sysfs_wwn(p, "2100001b32a1b2c3").is_err());
        assert!(parse_sysfs_wwn(p, "0x2100001b32a1").is_err());
        assert_eq!(parse_count(p, "254").unwrap(), 254);
        assert!(parse_count(p, "-1").is_err());
        assert_eq!(vport_host_no("vport-5:0-0"), Some(5));
        assert_eq!(vport_host_no("vport-12:0-3"), Some(12));
        assert_eq!(vport_host_no("power"), None);
    }
}
