//! The `[service.identity]` section embedded in a `[[service]]` table, as the runtime's
//! configuration will carry it.

use serde::Deserialize;
use tandem::ha::ServiceId;
use tandem::identity::model::validate_distinct;
use tandem::identity::{IdentitySection, Wwn};

/// The shape of the runtime's `[[service]]` section with the identity embedded.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Service {
    id: u32,
    #[serde(default)]
    identity: IdentitySection,
}

#[derive(Debug, Deserialize)]
struct File {
    service: Vec<Service>,
}

const PAIR: &str = r#"
[[service]]
id = 1
[service.identity]
ips = ["192.0.2.10/24", "2001:db8::10/64"]
interface = "eth0"
mac = "02:00:00:00:00:01"
fc = [{ host = "host5", wwpn = "2100001b32a1b2c3", wwnn = "2000001b32a1b2c3" }]

[[service]]
id = 2
identity = { ips = ["192.0.2.11/24"], interface = "eth1" }

[[service]]
id = 3
"#;

#[test]
fn sections_parse_and_resolve() {
    let f: File = toml::from_str(PAIR).unwrap();
    let ids: Vec<_> = f.service.iter().map(|s| s.identity.resolve(ServiceId(s.id)).unwrap()).collect();
    validate_distinct(&ids).unwrap();
    assert_eq!(ids[0].address_interface(), "tdm1");
    assert_eq!(ids[0].fc[0].wwpn, Wwn(0x2100_001b_32a1_b2c3));
    assert_eq!(ids[1].address_interface(), "eth1");
    assert!(ids[2].is_empty(), "a service without a section has no identities");
}

#[test]
fn unknown_keys_and_bad_values_name_the_field() {
    let e = toml::from_str::<File>("[[service]]\nid = 1\n[service.identity]\nipz = []\n").unwrap_err().to_string();
    assert!(e.contains("unknown field `ipz`"), "{e}");
    let e =
        toml::from_str::<File>("[[service]]\nid = 1\nidentity = { fc = [{ host = \"host5\", wwpn = \"1\" }] }\n").unwrap_err().to_string();
    assert!(e.contains("missing field `wwnn`"), "{e}");

    let f: File = toml::from_str(&PAIR.replace("2100001b32a1b2c3", "2100001b32a1b2")).unwrap();
    let e = f.service[0].identity.resolve(ServiceId(1)).unwrap_err();
    assert_eq!(e.to_string(), "field `service.identity.fc.wwpn`: `2100001b32a1b2` is not a WWN: use 16 hex digits (e.g. 2100001b32a1b2c3)");

    let f: File = toml::from_str(&PAIR.replace("192.0.2.11/24", "192.0.2.10/24")).unwrap();
    let ids: Vec<_> = f.service.iter().map(|s| s.identity.resolve(ServiceId(s.id)).unwrap()).collect();
    assert_eq!(validate_distinct(&ids).unwrap_err().field, "service.identity.ips");
}
