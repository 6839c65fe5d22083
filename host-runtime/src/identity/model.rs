//! The identities of a service, their configuration section and its validation.
//!
//! A service's identities are what clients address it by: IPv4/IPv6 addresses (on an
//! interface, or on a macvlan child with a fixed MAC so the MAC moves with the service)
//! and Fibre Channel virtual ports (NPIV: a WWPN and WWNN created on a physical fc_host).
//! Everything here is pure: parsing, formatting and validation.

use crate::ha::ServiceId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// A Fibre Channel World Wide Name (port or node name): 64 bits.
///
/// Parsed from 16 hex digits, optionally with a `0x` prefix (the kernel's sysfs format)
/// or as 8 colon-separated bytes (`20:00:00:25:b5:00:00:01`, the format switch zoning
/// tools print). [`Display`](fmt::Display) gives the 16 bare hex digits that
/// `vport_create` expects; [`Wwn::sysfs`] gives the kernel's `0x` form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Wwn(pub u64);

impl Wwn {
    /// The kernel's sysfs format: `0x` and 16 lowercase hex digits.
    pub fn sysfs(&self) -> String {
        format!("0x{:016x}", self.0)
    }
}

impl fmt::Display for Wwn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl FromStr for Wwn {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let bare = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")).unwrap_or(t);
        let digits: String = if bare.contains(':') {
            let parts: Vec<&str> = bare.split(':').collect();
            if parts.len() != 8 || parts.iter().any(|p| p.len() != 2) {
                return Err(format!("`{s}` is not a WWN: use 16 hex digits or 8 colon-separated bytes"));
            }
            parts.concat()
        } else {
            bare.to_string()
        };
        if digits.len() != 16 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("`{s}` is not a WWN: use 16 hex digits (e.g. 2100001b32a1b2c3)"));
        }
        let v = u64::from_str_radix(&digits, 16).map_err(|e| format!("`{s}`: {e}"))?;
        if v == 0 {
            return Err(format!("`{s}` is the all-zero WWN"));
        }
        Ok(Wwn(v))
    }
}

impl Serialize for Wwn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Wwn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// An Ethernet MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The broadcast address `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    /// A unicast address (the group bit of the first byte is clear) other than all-zero.
    pub fn is_unicast(&self) -> bool {
        self.0[0] & 1 == 0 && self.0 != [0; 6]
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
    }
}

impl FromStr for MacAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.trim().split([':', '-']).collect();
        if parts.len() != 6 || parts.iter().any(|p| p.len() != 2) {
            return Err(format!("`{s}` is not a MAC address (e.g. 02:00:00:00:00:01)"));
        }
        let mut m = [0u8; 6];
        for (i, p) in parts.iter().enumerate() {
            m[i] = u8::from_str_radix(p, 16).map_err(|_| format!("`{s}` is not a MAC address (e.g. 02:00:00:00:00:01)"))?;
        }
        Ok(MacAddr(m))
    }
}

/// An IP address with its prefix length (`192.0.2.10/24`, `2001:db8::10/64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpPrefix {
    /// The address.
    pub addr: IpAddr,
    /// Prefix length: up to 32 for IPv4, 128 for IPv6.
    pub prefix: u8,
}

impl fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for IpPrefix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = s.trim().split_once('/').ok_or_else(|| format!("`{s}` has no prefix length (e.g. 192.0.2.10/24)"))?;
        let addr: IpAddr = a.parse().map_err(|_| format!("`{a}` is not an IP address"))?;
        let prefix: u8 = p.parse().map_err(|_| format!("`{p}` is not a prefix length"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix == 0 || prefix > max {
            return Err(format!("prefix length {prefix} is not from 1 to {max}"));
        }
        let bad = match addr {
            IpAddr::V4(v) => v.is_unspecified() || v.is_multicast() || v.is_broadcast() || v.is_loopback(),
            IpAddr::V6(v) => v.is_unspecified() || v.is_multicast() || v.is_loopback(),
        };
        if bad {
            return Err(format!("`{addr}` is not a unicast address a service can own"));
        }
        Ok(IpPrefix { addr, prefix })
    }
}

/// One Fibre Channel NPIV virtual port of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FcPort {
    /// The physical fc_host the virtual port is created on (`host5`), on the node that
    /// claims it.
    pub host: String,
    /// World Wide Port Name: the identity initiators log in to.
    pub wwpn: Wwn,
    /// World Wide Node Name.
    pub wwnn: Wwn,
}

/// A service's identities, validated: what [`super::Identities`] claims and releases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceIdentity {
    /// The service.
    pub service: ServiceId,
    /// The interface the addresses go on; with `mac`, the parent of the macvlan child.
    pub interface: String,
    /// A MAC of the service's own: the addresses then go on a macvlan child interface
    /// named `macvlan` with this MAC, created on `interface`.
    pub mac: Option<MacAddr>,
    /// Name of the macvlan child (used only with `mac`).
    pub macvlan: String,
    /// Addresses.
    pub ips: Vec<IpPrefix>,
    /// Fibre Channel virtual ports.
    pub fc: Vec<FcPort>,
}

impl ServiceIdentity {
    /// The interface the addresses are put on: the macvlan child with a MAC, else
    /// `interface`.
    pub fn address_interface(&self) -> &str {
        if self.mac.is_some() {
            &self.macvlan
        } else {
            &self.interface
        }
    }

    /// No addresses, no MAC and no FC ports: claiming does nothing.
    pub fn is_empty(&self) -> bool {
        self.ips.is_empty() && self.mac.is_none() && self.fc.is_empty()
    }
}

/// The default name of a service's macvlan child: `tdm<service id>`.
pub fn default_macvlan_name(service: ServiceId) -> String {
    format!("tdm{}", service.0)
}

/// One `fc` entry of an [`IdentitySection`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FcSection {
    /// fc_host name (`host5`).
    pub host: String,
    /// WWPN, 16 hex digits.
    pub wwpn: String,
    /// WWNN, 16 hex digits.
    pub wwnn: String,
}

/// The identity part of a `[[service]]` section, as the runtime embeds it:
///
/// ```toml
/// [[service]]
/// id = 1
/// # ...
/// [service.identity]
/// ips = ["192.0.2.10/24", "2001:db8::10/64"]
/// interface = "eth0"
/// mac = "02:00:00:00:00:01"        # optional: addresses then go on a macvlan child
/// macvlan = "tdm1"                 # optional child name (default tdm<id>)
/// fc = [{ host = "host5", wwpn = "2100001b32a1b2c3", wwnn = "2000001b32a1b2c3" }]
/// ```
///
/// Every field is optional (an empty section claims nothing). Values stay strings until
/// [`IdentitySection::resolve`], so that every error names its field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySection {
    /// Addresses with prefix length.
    #[serde(default)]
    pub ips: Vec<String>,
    /// Interface for the addresses (the macvlan parent with `mac`).
    #[serde(default)]
    pub interface: Option<String>,
    /// The service's own MAC.
    #[serde(default)]
    pub mac: Option<String>,
    /// Name of the macvlan child.
    #[serde(default)]
    pub macvlan: Option<String>,
    /// Fibre Channel virtual ports.
    #[serde(default)]
    pub fc: Vec<FcSection>,
}

/// A problem in an [`IdentitySection`] (or between the sections of several services),
/// naming the field (`service.identity.ips`, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {reason}")]
pub struct IdentityConfigError {
    /// Dotted field name.
    pub field: &'static str,
    /// Why the value cannot work.
    pub reason: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> IdentityConfigError {
    IdentityConfigError { field, reason: reason.into() }
}

/// A Linux interface name: 1 to 15 bytes, no `/`, `:` or whitespace, not `.` or `..`.
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name.bytes().any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0)
}

/// An fc_host name: `host` followed by the SCSI host number.
pub fn fc_host_number(host: &str) -> Option<u32> {
    host.strip_prefix("host").filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())).and_then(|n| n.parse().ok())
}

impl IdentitySection {
    /// Checks every field and turns the section into the [`ServiceIdentity`] of `service`.
    pub fn resolve(&self, service: ServiceId) -> Result<ServiceIdentity, IdentityConfigError> {
        let mut ips = Vec::new();
        let mut seen = BTreeSet::new();
        for s in &self.ips {
            let p: IpPrefix = s.parse().map_err(|e| invalid("service.identity.ips", e))?;
            if !seen.insert(p.addr) {
                return Err(invalid("service.identity.ips", format!("`{}` is listed twice", p.addr)));
            }
            ips.push(p);
        }
        let mac = match &self.mac {
            Some(m) => {
                let m: MacAddr = m.parse().map_err(|e| invalid("service.identity.mac", e))?;
                if !m.is_unicast() {
                    return Err(invalid("service.identity.mac", format!("{m} is not a unicast address")));
                }
                Some(m)
            }
            None => None,
        };
        let interface = match &self.interface {
            Some(i) if !valid_ifname(i) => {
                return Err(invalid(
                    "service.identity.interface",
                    format!("`{i}` is not an interface name (1 to 15 bytes, no / : or spaces)"),
                ))
            }
            Some(i) => i.clone(),
            None if !ips.is_empty() || mac.is_some() => {
                return Err(invalid("service.identity.interface", "missing: addresses and a MAC need the interface to go on"))
            }
            None => String::new(),
        };
        if mac.is_some() && ips.is_empty() {
            return Err(invalid("service.identity.mac", "a MAC without addresses has nothing to carry; list `ips`"));
        }
        let macvlan = match &self.macvlan {
            Some(_) if mac.is_none() => return Err(invalid("service.identity.macvlan", "only used with `mac`")),
            Some(n) if !valid_ifname(n) => {
                return Err(invalid(
                    "service.identity.macvlan",
                    format!("`{n}` is not an interface name (1 to 15 bytes, no / : or spaces)"),
                ))
            }
            Some(n) if *n == interface => return Err(invalid("service.identity.macvlan", "is the same as `interface`")),
            Some(n) => n.clone(),
            None => default_macvlan_name(service),
        };
        let mut fc = Vec::new();
        let mut wwpns = BTreeSet::new();
        for f in &self.fc {
            if fc_host_number(&f.host).is_none() {
                return Err(invalid("service.identity.fc.host", format!("`{}` is not an fc_host name (e.g. host5)", f.host)));
            }
            let wwpn: Wwn = f.wwpn.parse().map_err(|e| invalid("service.identity.fc.wwpn", e))?;
            let wwnn: Wwn = f.wwnn.parse().map_err(|e| invalid("service.identity.fc.wwnn", e))?;
            if !wwpns.insert(wwpn) {
                return Err(invalid("service.identity.fc.wwpn", format!("{wwpn} is listed twice")));
            }
            fc.push(FcPort { host: f.host.clone(), wwpn, wwnn });
        }
        Ok(ServiceIdentity { service, interface, mac, macvlan, ips, fc })
    }
}

/// Checks that no two services share an address, a MAC, a macvlan name or a WWPN: one
/// identity belongs to one service, so it moves with that service alone.
pub fn validate_distinct(services: &[ServiceIdentity]) -> Result<(), IdentityConfigError> {
    let mut ips = BTreeSet::new();
    let mut macs = BTreeSet::new();
    let mut children = BTreeSet::new();
    let mut wwpns = BTreeSet::new();
    for s in services {
        for p in &s.ips {
            if !ips.insert(p.addr) {
                return Err(invalid("service.identity.ips", format!("service {}: `{}` belongs to another service", s.service.0, p.addr)));
            }
        }
        if let Some(m) = s.mac {
            if !macs.insert(m) {
                return Err(invalid("service.identity.mac", format!("service {}: {m} belongs to another service", s.service.0)));
            }
            if !children.insert(s.macvlan.clone()) {
                return Err(invalid(
                    "service.identity.macvlan",
                    format!("service {}: `{}` is used by another service", s.service.0, s.macvlan),
                ));
            }
        }
        for f in &s.fc {
            if !wwpns.insert(f.wwpn) {
                return Err(invalid("service.identity.fc.wwpn", format!("service {}: {} belongs to another service", s.service.0, f.wwpn)));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wwn_formats() {
        let w: Wwn = "2100001b32a1b2c3".parse().unwrap();
        assert_eq!(w.0, 0x2100_001b_32a1_b2c3);
        assert_eq!(w.to_string(), "2100001b32a1b2c3");
        assert_eq!(w.sysfs(), "0x2100001b32a1b2c3");
        assert_eq!("0x2100001B32A1B2C3".parse::<Wwn>().unwrap(), w);
        assert_eq!("21:00:00:1b:32:a1:b2:c3".parse::<Wwn>().unwrap(), w);
        assert!("2100001b32a1b2c".parse::<Wwn>().is_err());
        assert!("2100001b32a1b2c3f".parse::<Wwn>().is_err());
        assert!("2100001b32a1b2cg".parse::<Wwn>().is_err());
        assert!("0000000000000000".parse::<Wwn>().is_err());
        assert!("21:00:00:1b:32:a1:b2".parse::<Wwn>().is_err());
    }

    #[test]
    fn mac_and_prefix() {
        let m: MacAddr = "02:00:00:00:00:01".parse().unwrap();
        assert_eq!(m.to_string(), "02:00:00:00:00:01");
        assert!(m.is_unicast());
        assert!(!"01:00:5e:00:00:01".parse::<MacAddr>().unwrap().is_unicast());
        assert!("02:00:00:00:00".parse::<MacAddr>().is_err());
        let p: IpPrefix = "192.0.2.10/24".parse().unwrap();
        assert_eq!(p.to_string(), "192.0.2.10/24");
        assert_eq!("2001:db8::10/64".parse::<IpPrefix>().unwrap().prefix, 64);
        assert!("192.0.2.10".parse::<IpPrefix>().is_err());
        assert!("192.0.2.10/33".parse::<IpPrefix>().is_err());
        assert!("224.0.0.1/24".parse::<IpPrefix>().is_err());
        assert!("ff02::1/64".parse::<IpPrefix>().is_err());
    }

    fn section() -> IdentitySection {
        IdentitySection {
            ips: vec!["192.0.2.10/24".into(), "2001:db8::10/64".into()],
            interface: Some("eth0".into()),
            mac: Some("02:00:00:00:00:01".into()),
            macvlan: None,
            fc: vec![FcSection { host: "host5".into(), wwpn: "2100001b32a1b2c3".into(), wwnn: "2000001b32a1b2c3".into() }],
        }
    }

    #[test]
    fn resolve_good_section() {
        let id = section().resolve(ServiceId(7)).unwrap();
        assert_eq!(id.macvlan, "tdm7");
        assert_eq!(id.address_interface(), "tdm7");
        assert_eq!(id.ips.len(), 2);
        assert_eq!(id.fc[0].wwnn, Wwn(0x2000_001b_32a1_b2c3));
        let plain = IdentitySection { mac: None, ..section() }.resolve(ServiceId(7)).unwrap();
        assert_eq!(plain.address_interface(), "eth0");
        assert!(IdentitySection::default().resolve(ServiceId(1)).unwrap().is_empty());
    }

    #[test]
    fn errors_name_the_field() {
        let cases: Vec<(IdentitySection, &str)> = vec![
            (IdentitySection { ips: vec!["192.0.2.300/24".into()], ..section() }, "service.identity.ips"),
            (IdentitySection { ips: vec!["192.0.2.10/24".into(), "192.0.2.10/25".into()], ..section() }, "service.identity.ips"),
            (IdentitySection { interface: None, ..section() }, "service.identity.interface"),
            (IdentitySection { interface: Some("a-very-long-interface".into()), ..section() }, "service.identity.interface"),
            (IdentitySection { mac: Some("03:00:00:00:00:01".into()), ..section() }, "service.identity.mac"),
            (IdentitySection { mac: Some("zz".into()), ..section() }, "service.identity.mac"),
            (IdentitySection { ips: vec![], ..section() }, "service.identity.mac"),
            (IdentitySection { macvlan: Some("eth0".into()), ..section() }, "service.identity.macvlan"),
            (IdentitySection { mac: None, macvlan: Some("x".into()), ..section() }, "service.identity.macvlan"),
            (
                IdentitySection {
                    fc: vec![FcSection { host: "fc5".into(), wwpn: "2100001b32a1b2c3".into(), wwnn: "2000001b32a1b2c3".into() }],
                    ..section()
                },
                "service.identity.fc.host",
            ),
            (
                IdentitySection {
                    fc: vec![FcSection { host: "host5".into(), wwpn: "21".into(), wwnn: "2000001b32a1b2c3".into() }],
                    ..section()
                },
                "service.identity.fc.wwpn",
            ),
            (
                IdentitySection {
                    fc: vec![FcSection { host: "host5".into(), wwpn: "2100001b32a1b2c3".into(), wwnn: "x".into() }],
                    ..section()
                },
                "service.identity.fc.wwnn",
            ),
        ];
        for (s, field) in cases {
            let e = s.resolve(ServiceId(1)).expect_err(field);
            assert_eq!(e.field, field, "{e}");
            assert!(e.to_string().starts_with(&format!("field `{field}`: ")), "{e}");
        }
    }

    #[test]
    fn distinct_across_services() {
        let a = section().resolve(ServiceId(1)).unwrap();
        let mut b = IdentitySection { ips: vec!["192.0.2.11/24".into()], mac: Some("02:00:00:00:00:02".into()), fc: vec![], ..section() }
            .resolve(ServiceId(2))
            .unwrap();
        validate_distinct(&[a.clone(), b.clone()]).unwrap();
        b.ips[0].addr = "192.0.2.10".parse().unwrap();
        assert_eq!(validate_distinct(&[a.clone(), b.clone()]).unwrap_err().field, "service.identity.ips");
        b.ips[0].addr = "192.0.2.11".parse().unwrap();
        b.fc = a.fc.clone();
        assert_eq!(validate_distinct(&[a.clone(), b.clone()]).unwrap_err().field, "service.identity.fc.wwpn");
        b.fc.clear();
        b.mac = a.mac;
        assert_eq!(validate_distinct(&[a, b]).unwrap_err().field, "service.identity.mac");
    }
}
