//! IP addresses and MACs through rtnetlink, and their announcement (gratuitous ARP,
//! unsolicited neighbour advertisement) on a raw AF_PACKET socket.
//!
//! Everything works in the network namespace of the calling thread: the sockets are
//! opened per call, and interfaces are looked up by name through netlink (not sysfs), so
//! a thread that entered a namespace with `setns(2)` manages that namespace.
//!
//! The netlink messages are built by hand (a few fixed headers and attributes of the
//! stable kernel ABI in `linux/rtnetlink.h`, `linux/if_link.h`, `linux/if_addr.h`).

use super::model::{IpPrefix, MacAddr};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

// linux/netlink.h
const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_DUMP: u16 = 0x300;
// linux/rtnetlink.h
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_GETADDR: u16 = 22;
// linux/if_link.h
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINK: u16 = 5;
const IFLA_OPERSTATE: u16 = 16;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const IFLA_MACVLAN_MODE: u16 = 1;
const MACVLAN_MODE_BRIDGE: u32 = 4;
const NLA_F_NESTED: u16 = 1 << 15;
const IFLA_AF_SPEC: u16 = 26;
const IFLA_INET_CONF: u16 = 1;
// linux/ip.h, enum IPV4_DEVCONF_*
const IPV4_DEVCONF_ARP_IGNORE: u16 = 19;
// linux/if_addr.h
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_F_NODAD: u8 = 0x02;
// linux/if.h
const IFF_UP: u32 = 0x1;

const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86dd;

/// A netlink or packet-socket operation that failed.
#[derive(Debug, thiserror::Error)]
#[error("{op}: {source}")]
pub struct NetError {
    /// What was being done (`adding 192.0.2.10/24 to eth0`).
    pub op: String,
    /// The kernel's error.
    #[source]
    pub source: io::Error,
}

fn ctx<T>(r: io::Result<T>, op: impl FnOnce() -> String) -> Result<T, NetError> {
    r.map_err(|source| NetError { op: op(), source })
}

/// An interface, as RTM_GETLINK reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Name.
    pub name: String,
    /// `IFF_*` flags.
    pub flags: u32,
    /// Hardware address (an Ethernet MAC for the interfaces this module manages).
    pub mac: Option<MacAddr>,
    /// Index of the lower device (a macvlan's parent).
    pub parent: Option<u32>,
    /// `IFLA_INFO_KIND` (`macvlan`, `veth`, `bridge`, ...); `None` for a physical device.
    pub kind: Option<String>,
    /// RFC 2863 operational state (`IF_OPER_*`: 0 unknown, 2 down, 6 up, 7 lower layer
    /// down).
    pub operstate: u8,
}

impl Link {
    /// Administratively up.
    pub fn is_up(&self) -> bool {
        self.flags & IFF_UP != 0
    }
}

/// A message under construction: header, fixed part, attributes.
struct Msg {
    buf: Vec<u8>,
}

impl Msg {
    fn new(kind: u16, flags: u16, fixed: &[u8]) -> Self {
        let mut buf = vec![0u8; NLMSG_HDRLEN];
        buf[4..6].copy_from_slice(&kind.to_ne_bytes());
        buf[6..8].copy_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(fixed);
        Msg { buf }
    }

    fn pad(&mut self) {
        while self.buf.len() % 4 != 0 {
            self.buf.push(0);
        }
    }

    fn attr(&mut self, kind: u16, data: &[u8]) -> &mut Self {
        self.pad();
        self.buf.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self
    }

    fn str_attr(&mut self, kind: u16, s: &str) -> &mut Self {
        let mut d = s.as_bytes().to_vec();
        d.push(0);
        self.attr(kind, &d)
    }

    fn nest(&mut self, kind: u16, f: impl FnOnce(&mut Self)) -> &mut Self {
        self.pad();
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        self.buf.extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        f(self);
        let len = (self.buf.len() - at) as u16;
        self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
        self
    }

    fn finish(mut self, seq: u32) -> Vec<u8> {
        self.pad();
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.buf
    }
}

/// Iterates the attributes in `b`: (type without flags, payload).
fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let kind = u16::from_ne_bytes([b[2], b[3]]) & !(NLA_F_NESTED | 0x4000);
        if len < 4 || len > b.len() {
            return None;
        }
        let data = &b[4..len];
        b = &b[((len + 3) & !3).min(b.len())..];
        Some((kind, data))
    })
}

fn ifinfomsg(index: u32, flags: u32, change: u32) -> [u8; 16] {
    let mut m = [0u8; 16];
    // family AF_UNSPEC, pad, type 0
    m[4..8].copy_from_slice(&(index as i32).to_ne_bytes());
    m[8..12].copy_from_slice(&flags.to_ne_bytes());
    m[12..16].copy_from_slice(&change.to_ne_bytes());
    m
}

fn ifaddrmsg(family: u8, prefix: u8, flags: u8, index: u32) -> [u8; 8] {
    let mut m = [0u8; 8];
    m[0] = family;
    m[1] = prefix;
    m[2] = flags;
    m[3] = 0; // RT_SCOPE_UNIVERSE
    m[4..8].copy_from_slice(&index.to_ne_bytes());
    m
}

/// A NETLINK_ROUTE socket of the calling thread's network namespace.
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

impl std::fmt::Debug for Netlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Netlink").field("fd", &self.fd.as_raw_fd()).finish()
    }
}

impl Netlink {
    /// Opens the socket; every reply is awaited at most 5 s.
    pub fn open() -> io::Result<Self> {
        // SAFETY: socket(2) with constant arguments; the result is checked before use.
        let raw = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a freshly created descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_nl is plain data; all-zero is a valid value (pid 0: the kernel
        // assigns one).
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `sa` is a valid sockaddr_nl and the length passed is its size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &sa as *const libc::sockaddr_nl as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        set_timeout(&fd, libc::SO_RCVTIMEO, Duration::from_secs(5))?;
        set_timeout(&fd, libc::SO_SNDTIMEO, Duration::from_secs(5))?;
        Ok(Netlink { fd, seq: 1 })
    }

    /// Sends `msg` and collects the reply messages (type, payload after the netlink
    /// header) until the ACK (or, for a dump, NLMSG_DONE). A kernel error is returned as
    /// the `io::Error` of its errno.
    fn call(&mut self, msg: Msg, dump: bool) -> io::Result<Vec<(u16, Vec<u8>)>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let bytes = msg.finish(seq);
        // SAFETY: `bytes` is a valid buffer of the given length for the whole call; the
        // socket is connected to the kernel by bind, so no address is needed.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        // Bounded: each recv waits at most the socket timeout; a reply larger than 4096
        // datagrams is an error.
        for _ in 0..4096 {
            // SAFETY: `buf` is valid for writes of its length for the whole call.
            let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let mut b = &buf[..n as usize];
            while b.len() >= NLMSG_HDRLEN {
                let len = u32::from_ne_bytes(b[0..4].try_into().expect("4 bytes")) as usize;
                let kind = u16::from_ne_bytes([b[4], b[5]]);
                let mseq = u32::from_ne_bytes(b[8..12].try_into().expect("4 bytes"));
                if len < NLMSG_HDRLEN || len > b.len() {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "truncated netlink message"));
                }
                let payload = &b[NLMSG_HDRLEN..len];
                b = &b[((len + 3) & !3).min(b.len())..];
                if mseq != seq {
                    continue;
                }
                match kind {
                    NLMSG_ERROR => {
                        let errno = i32::from_ne_bytes(
                            payload.get(0..4).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))?.try_into().expect("4"),
                        );
                        if errno == 0 {
                            return Ok(out);
                        }
                        return Err(io::Error::from_raw_os_error(-errno));
                    }
                    NLMSG_DONE if dump => return Ok(out),
                    _ => out.push((kind, payload.to_vec())),
                }
            }
        }
        Err(io::Error::other("netlink reply did not end"))
    }

    /// The interface named `name`, or `None`.
    pub fn link(&mut self, name: &str) -> io::Result<Option<Link>> {
        let mut m = Msg::new(RTM_GETLINK, NLM_F_REQUEST | NLM_F_ACK, &ifinfomsg(0, 0, 0));
        m.str_attr(IFLA_IFNAME, name);
        match self.call(m, false) {
            Ok(replies) => Ok(replies.iter().find(|(k, _)| *k == RTM_NEWLINK).and_then(|(_, p)| parse_link(p))),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sets the interface administratively up.
    pub fn set_up(&mut self, index: u32) -> io::Result<()> {
        self.call(Msg::new(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, &ifinfomsg(index, IFF_UP, IFF_UP)), false).map(drop)
    }

    /// Sets the interface's MAC.
    pub fn set_mac(&mut self, index: u32, mac: MacAddr) -> io::Result<()> {
        let mut m = Msg::new(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, &ifinfomsg(index, 0, 0));
        m.attr(IFLA_ADDRESS, &mac.0);
        self.call(m, false).map(drop)
    }

    /// Sets `net.ipv4.conf.<interface>.arp_ignore` (0: answer ARP for any local
    /// address; 1: only for addresses on the interface the request came in on).
    pub fn set_arp_ignore(&mut self, index: u32, value: u32) -> io::Result<()> {
        let mut m = Msg::new(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, &ifinfomsg(index, 0, 0));
        m.nest(IFLA_AF_SPEC, |m| {
            m.nest(libc::AF_INET as u16, |m| {
                m.nest(IFLA_INET_CONF, |m| {
                    m.attr(IPV4_DEVCONF_ARP_IGNORE, &value.to_ne_bytes());
                });
            });
        });
        self.call(m, false).map(drop)
    }

    /// Creates a macvlan interface `name` (bridge mode) on `parent` with `mac`.
    pub fn add_macvlan(&mut self, name: &str, parent: u32, mac: MacAddr) -> io::Result<()> {
        let mut m = Msg::new(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, &ifinfomsg(0, 0, 0));
        m.str_attr(IFLA_IFNAME, name).attr(IFLA_LINK, &parent.to_ne_bytes()).attr(IFLA_ADDRESS, &mac.0).nest(IFLA_LINKINFO, |m| {
            m.str_attr(IFLA_INFO_KIND, "macvlan").nest(IFLA_INFO_DATA, |m| {
                m.attr(IFLA_MACVLAN_MODE, &MACVLAN_MODE_BRIDGE.to_ne_bytes());
            });
        });
        self.call(m, false).map(drop)
    }

    /// Deletes the interface.
    pub fn del_link(&mut self, index: u32) -> io::Result<()> {
        self.call(Msg::new(RTM_DELLINK, NLM_F_REQUEST | NLM_F_ACK, &ifinfomsg(index, 0, 0)), false).map(drop)
    }

    /// Every address of the namespace: (interface index, address with prefix).
    pub fn addresses(&mut self) -> io::Result<Vec<(u32, IpPrefix)>> {
        let replies = self.call(Msg::new(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, &ifaddrmsg(0, 0, 0, 0)), true)?;
        let mut out = Vec::new();
        for (kind, p) in replies {
            if kind != RTM_NEWADDR || p.len() < 8 {
                continue;
            }
            let family = p[0] as i32;
            let prefix = p[1];
            let index = u32::from_ne_bytes(p[4..8].try_into().expect("4 bytes"));
            let mut local = None;
            let mut address = None;
            for (k, d) in attrs(&p[8..]) {
                let ip = match (family, d.len()) {
                    (libc::AF_INET, 4) => IpAddr::V4(Ipv4Addr::new(d[0], d[1], d[2], d[3])),
                    (libc::AF_INET6, 16) => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(d).expect("16 bytes"))),
                    _ => continue,
                };
                match k {
                    IFA_LOCAL => local = Some(ip),
                    IFA_ADDRESS => address = Some(ip),
                    _ => {}
                }
            }
            if let Some(addr) = local.or(address) {
                out.push((index, IpPrefix { addr, prefix }));
            }
        }
        Ok(out)
    }

    fn addr_msg(kind: u16, flags: u16, index: u32, p: &IpPrefix) -> Msg {
        match p.addr {
            IpAddr::V4(v) => {
                let mut m = Msg::new(kind, flags, &ifaddrmsg(libc::AF_INET as u8, p.prefix, 0, index));
                m.attr(IFA_LOCAL, &v.octets()).attr(IFA_ADDRESS, &v.octets());
                m
            }
            IpAddr::V6(v) => {
                // No duplicate address detection: the HA engine guarantees the partner
                // released the address, and DAD would hold it tentative for a second.
                let mut m = Msg::new(kind, flags, &ifaddrmsg(libc::AF_INET6 as u8, p.prefix, IFA_F_NODAD, index));
                m.attr(IFA_ADDRESS, &v.octets());
                m
            }
        }
    }

    /// Adds the address to the interface (`EEXIST` if it is there).
    pub fn add_address(&mut self, index: u32, p: &IpPrefix) -> io::Result<()> {
        self.call(Self::addr_msg(RTM_NEWADDR, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, index, p), false).map(drop)
    }

    /// Removes the address from the interface (`EADDRNOTAVAIL` if it is not there).
    pub fn del_address(&mut self, index: u32, p: &IpPrefix) -> io::Result<()> {
        self.call(Self::addr_msg(RTM_DELADDR, NLM_F_REQUEST | NLM_F_ACK, index, p), false).map(drop)
    }
}

fn parse_link(p: &[u8]) -> Option<Link> {
    if p.len() < 16 {
        return None;
    }
    let index = i32::from_ne_bytes(p[4..8].try_into().ok()?) as u32;
    let flags = u32::from_ne_bytes(p[8..12].try_into().ok()?);
    let mut link = Link { index, name: String::new(), flags, mac: None, parent: None, kind: None, operstate: 0 };
    for (k, d) in attrs(&p[16..]) {
        match k {
            IFLA_IFNAME => link.name = String::from_utf8_lossy(d.split(|b| *b == 0).next().unwrap_or(d)).into_owned(),
            IFLA_ADDRESS if d.len() == 6 => link.mac = Some(MacAddr(d.try_into().ok()?)),
            IFLA_LINK if d.len() == 4 => link.parent = Some(u32::from_ne_bytes(d.try_into().ok()?)),
            IFLA_OPERSTATE if d.len() == 1 => link.operstate = d[0],
            IFLA_LINKINFO => {
                for (ik, id) in attrs(d) {
                    if ik == IFLA_INFO_KIND {
                        link.kind = Some(String::from_utf8_lossy(id.split(|b| *b == 0).next().unwrap_or(id)).into_owned());
                    }
                }
            }
            _ => {}
        }
    }
    Some(link)
}

fn set_timeout(fd: &OwnedFd, opt: libc::c_int, d: Duration) -> io::Result<()> {
    let tv = libc::timeval { tv_sec: d.as_secs() as libc::time_t, tv_usec: d.subsec_micros() as libc::suseconds_t };
    // SAFETY: `tv` is a valid timeval and the length passed is its size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            &tv as *const libc::timeval as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as u32,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// What [`bring_up`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetClaim {
    /// The interface carrying the addresses (the macvlan child with a MAC).
    pub link: Link,
    /// The macvlan child was created (not already there).
    pub macvlan_created: bool,
    /// Addresses added.
    pub added: Vec<IpPrefix>,
    /// Addresses that were already on the interface.
    pub present: Vec<IpPrefix>,
}

/// Puts `ips` on `interface`, or with `mac` on the macvlan child `macvlan` of `interface`
/// (created, or given the MAC, as needed), and brings the interfaces up. With a MAC,
/// the parent's `arp_ignore` is set to 1 so that only the child answers ARP for the
/// service's addresses. Idempotent:
/// what is already there is left as it is. An address of the service found on another
/// interface is removed from there first (a crash between a move's steps).
pub fn bring_up(interface: &str, mac: Option<MacAddr>, macvlan: &str, ips: &[IpPrefix]) -> Result<NetClaim, NetError> {
    let mut nl = ctx(Netlink::open(), || "opening a netlink socket".into())?;
    let parent = ctx(nl.link(interface), || format!("looking up {interface}"))?
        .ok_or_else(|| NetError { op: format!("looking up {interface}"), source: io::Error::from_raw_os_error(libc::ENODEV) })?;
    if !parent.is_up() {
        ctx(nl.set_up(parent.index), || format!("bringing {interface} up"))?;
    }
    let mut macvlan_created = false;
    let link_name = match mac {
        None => interface,
        Some(mac) => {
            // The parent sees every broadcast the child sees; with the default
            // arp_ignore 0 it would answer ARP for the child's addresses with its own MAC
            // (ARP flux), and clients would not use the service's MAC.
            ctx(nl.set_arp_ignore(parent.index, 1), || format!("setting arp_ignore 1 on {interface}"))?;
            match ctx(nl.link(macvlan), || format!("looking up {macvlan}"))? {
                Some(l) if l.kind.as_deref() != Some("macvlan") || l.parent != Some(parent.index) => {
                    return Err(NetError {
                        op: format!("using {macvlan} as the macvlan child of {interface}"),
                        source: io::Error::new(
                            io::ErrorKind::AlreadyExists,
                            format!("{macvlan} exists and is not a macvlan on {interface}"),
                        ),
                    })
                }
                Some(l) if l.mac != Some(mac) => ctx(nl.set_mac(l.index, mac), || format!("setting {macvlan}'s MAC to {mac}"))?,
                Some(_) => {}
                None => match nl.add_macvlan(macvlan, parent.index, mac) {
                    Ok(()) => macvlan_created = true,
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                    Err(e) => return Err(NetError { op: format!("creating macvlan {macvlan} on {interface} with MAC {mac}"), source: e }),
                },
            }
            macvlan
        }
    };
    let mut link = ctx(nl.link(link_name), || format!("looking up {link_name}"))?
        .ok_or_else(|| NetError { op: format!("looking up {link_name}"), source: io::Error::from_raw_os_error(libc::ENODEV) })?;
    if !link.is_up() || macvlan_created || !parent.is_up() {
        if !link.is_up() {
            ctx(nl.set_up(link.index), || format!("bringing {link_name} up"))?;
        }
        link = wait_operational(&mut nl, link_name, Duration::from_secs(1))?;
    }
    let existing = ctx(nl.addresses(), || "listing addresses".into())?;
    let mut added = Vec::new();
    let mut present = Vec::new();
    for p in ips {
        if existing.iter().any(|(i, e)| *i == link.index && e == p) {
            present.push(*p);
            continue;
        }
        for (i, e) in existing.iter().filter(|(i, e)| e.addr == p.addr && (*i != link.index || e.prefix != p.prefix)) {
            match nl.del_address(*i, e) {
                Ok(()) => {}
                Err(err) if err.raw_os_error() == Some(libc::EADDRNOTAVAIL) => {}
                Err(err) => return Err(NetError { op: format!("removing stale {e} from interface index {i}"), source: err }),
            }
        }
        match nl.add_address(link.index, p) {
            Ok(()) => added.push(*p),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => present.push(*p),
            Err(e) => return Err(NetError { op: format!("adding {p} to {link_name}"), source: e }),
        }
    }
    Ok(NetClaim { link, macvlan_created, added, present })
}

/// Waits (at most `limit`) until the link is operational. A link just set up transmits
/// only once the kernel's link watch has seen its carrier and activated its queue; frames
/// sent before (the first announcement) are dropped. A link without carrier after the
/// limit is returned as it is: the announcements are repeated.
fn wait_operational(nl: &mut Netlink, name: &str, limit: Duration) -> Result<Link, NetError> {
    const IF_OPER_UNKNOWN: u8 = 0;
    const IF_OPER_UP: u8 = 6;
    let start = std::time::Instant::now();
    loop {
        let link = ctx(nl.link(name), || format!("looking up {name}"))?
            .ok_or_else(|| NetError { op: format!("looking up {name}"), source: io::Error::from_raw_os_error(libc::ENODEV) })?;
        let ready = link.is_up() && matches!(link.operstate, IF_OPER_UP | IF_OPER_UNKNOWN);
        if ready || start.elapsed() >= limit {
            if !ready {
                tracing::warn!("{name} is not operational after {limit:?} (operstate {}); announcing anyway", link.operstate);
            }
            return Ok(link);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// What [`tear_down`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetRelease {
    /// Addresses removed.
    pub removed: Vec<IpPrefix>,
    /// The macvlan child was deleted.
    pub macvlan_deleted: bool,
}

/// Removes `ips` from whichever interface holds them and, with `mac`, deletes the
/// macvlan child `macvlan` (only if it is a macvlan). Idempotent: what is gone is fine.
pub fn tear_down(mac: Option<MacAddr>, macvlan: &str, ips: &[IpPrefix]) -> Result<NetRelease, NetError> {
    let mut nl = ctx(Netlink::open(), || "opening a netlink socket".into())?;
    let mut out = NetRelease::default();
    let existing = ctx(nl.addresses(), || "listing addresses".into())?;
    for (i, e) in existing.iter().filter(|(_, e)| ips.iter().any(|p| p.addr == e.addr)) {
        match nl.del_address(*i, e) {
            Ok(()) => out.removed.push(*e),
            Err(err) if err.raw_os_error() == Some(libc::EADDRNOTAVAIL) => {}
            Err(err) => return Err(NetError { op: format!("removing {e} from interface index {i}"), source: err }),
        }
    }
    if mac.is_some() {
        if let Some(l) = ctx(nl.link(macvlan), || format!("looking up {macvlan}"))? {
            if l.kind.as_deref() == Some("macvlan") {
                match nl.del_link(l.index) {
                    Ok(()) => out.macvlan_deleted = true,
                    Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {}
                    Err(e) => return Err(NetError { op: format!("deleting macvlan {macvlan}"), source: e }),
                }
            }
        }
    }
    Ok(out)
}

/// An AF_PACKET socket for sending announcements on one interface.
pub struct Announcer {
    fd: OwnedFd,
    index: u32,
    mac: MacAddr,
}

impl std::fmt::Debug for Announcer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Announcer").field("index", &self.index).field("mac", &self.mac).finish()
    }
}

impl Announcer {
    /// Opens a send-only packet socket for the interface (index, MAC) in the calling
    /// thread's namespace. The socket stays bound to that namespace's interface when
    /// moved to another thread.
    pub fn open(index: u32, mac: MacAddr) -> io::Result<Self> {
        // Protocol 0: the socket receives nothing, it only sends.
        // SAFETY: socket(2) with constant arguments; the result is checked before use.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a freshly created descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(Announcer { fd, index, mac })
    }

    fn send(&self, dst: MacAddr, ethertype: u16, frame: &[u8]) -> io::Result<()> {
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
        let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sa.sll_family = libc::AF_PACKET as u16;
        sa.sll_protocol = ethertype.to_be();
        sa.sll_ifindex = self.index as i32;
        sa.sll_halen = 6;
        sa.sll_addr[..6].copy_from_slice(&dst.0);
        // SAFETY: `frame` and `sa` are valid for the call and the lengths passed are
        // theirs.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                &sa as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Sends a gratuitous ARP request and reply for `ip` (sender = target = `ip`, sender
    /// hardware address = this interface's MAC) to the broadcast address.
    pub fn gratuitous_arp(&self, ip: Ipv4Addr) -> io::Result<()> {
        for op in [1u16, 2u16] {
            self.send(MacAddr::BROADCAST, ETH_P_ARP, &garp_frame(self.mac, ip, op))?;
        }
        Ok(())
    }

    /// Sends an unsolicited neighbour advertisement for `ip` (override flag set, target
    /// link-layer address option) to all nodes, ff02::1.
    pub fn unsolicited_na(&self, ip: Ipv6Addr) -> io::Result<()> {
        self.send(MacAddr([0x33, 0x33, 0, 0, 0, 1]), ETH_P_IPV6, &na_frame(self.mac, ip))
    }

    /// Announces every address: gratuitous ARP for IPv4, unsolicited NA for IPv6.
    pub fn announce(&self, ips: &[IpPrefix]) -> io::Result<()> {
        for p in ips {
            match p.addr {
                IpAddr::V4(v) => self.gratuitous_arp(v)?,
                IpAddr::V6(v) => self.unsolicited_na(v)?,
            }
        }
        Ok(())
    }
}

/// An Ethernet frame carrying an ARP packet for `ip` with sender = target = `ip`
/// (`op` 1: request, target MAC zero; 2: reply, target MAC = sender MAC, as Linux wants
/// for a gratuitous reply), padded to the 60-byte minimum.
pub fn garp_frame(mac: MacAddr, ip: Ipv4Addr, op: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&MacAddr::BROADCAST.0);
    f.extend_from_slice(&mac.0);
    f.extend_from_slice(&ETH_P_ARP.to_be_bytes());
    f.extend_from_slice(&1u16.to_be_bytes()); // hardware type Ethernet
    f.extend_from_slice(&0x0800u16.to_be_bytes()); // protocol IPv4
    f.push(6);
    f.push(4);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&mac.0);
    f.extend_from_slice(&ip.octets());
    f.extend_from_slice(if op == 2 { &mac.0 } else { &[0u8; 6] });
    f.extend_from_slice(&ip.octets());
    f.resize(60, 0);
    f
}

/// An Ethernet frame carrying an unsolicited neighbour advertisement for `ip` from `ip`
/// to ff02::1: ICMPv6 type 136, hop limit 255, flags override, target link-layer
/// address option with `mac`.
pub fn na_frame(mac: MacAddr, ip: Ipv6Addr) -> Vec<u8> {
    let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    let mut icmp = Vec::with_capacity(32);
    icmp.push(136); // neighbour advertisement
    icmp.push(0); // code
    icmp.extend_from_slice(&[0, 0]); // checksum, below
    icmp.extend_from_slice(&[0x20, 0, 0, 0]); // R=0 S=0 O=1
    icmp.extend_from_slice(&ip.octets());
    icmp.push(2); // option: target link-layer address
    icmp.push(1); // length in units of 8 bytes
    icmp.extend_from_slice(&mac.0);
    let sum = icmpv6_checksum(&ip, &all_nodes, &icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut f = Vec::with_capacity(14 + 40 + icmp.len());
    f.extend_from_slice(&[0x33, 0x33, 0, 0, 0, 1]);
    f.extend_from_slice(&mac.0);
    f.extend_from_slice(&ETH_P_IPV6.to_be_bytes());
    f.extend_from_slice(&[0x60, 0, 0, 0]); // version 6, traffic class 0, flow 0
    f.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    f.push(58); // next header ICMPv6
    f.push(255); // hop limit: neighbour discovery requires 255
    f.extend_from_slice(&ip.octets());
    f.extend_from_slice(&all_nodes.octets());
    f.extend_from_slice(&icmp);
    f
}

/// The ICMPv6 checksum over the IPv6 pseudo-header and `msg` (with a zero checksum
/// field).
pub fn icmpv6_checksum(src: &Ipv6Addr, dst: &Ipv6Addr, msg: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |b: &[u8]| {
        for c in b.chunks(2) {
            sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&(msg.len() as u32).to_be_bytes());
    add(&[0, 0, 0, 58]);
    add(msg);
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garp_layout() {
        let mac = MacAddr([2, 0, 0, 0, 0, 1]);
        let ip = Ipv4Addr::new(192, 0, 2, 10);
        let f = garp_frame(mac, ip, 2);
        assert_eq!(f.len(), 60);
        assert_eq!(&f[0..6], &[0xff; 6]);
        assert_eq!(&f[6..12], &mac.0);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(&f[20..22], &[0, 2]);
        assert_eq!(&f[22..28], &mac.0, "sender MAC");
        assert_eq!(&f[28..32], &ip.octets(), "sender IP");
        assert_eq!(&f[32..38], &mac.0, "target MAC of a gratuitous reply");
        assert_eq!(&f[38..42], &ip.octets(), "target IP");
        let r = garp_frame(mac, ip, 1);
        assert_eq!(&r[32..38], &[0; 6]);
    }

    #[test]
    fn na_layout_and_checksum() {
        let mac = MacAddr([2, 0, 0, 0, 0, 1]);
        let ip: Ipv6Addr = "2001:db8::10".parse().unwrap();
        let f = na_frame(mac, ip);
        assert_eq!(f.len(), 14 + 40 + 32);
        assert_eq!(&f[12..14], &[0x86, 0xdd]);
        assert_eq!(f[20], 58);
        assert_eq!(f[21], 255);
        let icmp = &f[54..];
        assert_eq!(icmp[0], 136);
        assert_eq!(icmp[4], 0x20, "override set, solicited clear");
        assert_eq!(&icmp[8..24], &ip.octets());
        assert_eq!(&icmp[24..26], &[2, 1]);
        assert_eq!(&icmp[26..32], &mac.0);
        // Summing the message with its checksum in place gives 0 (one's complement).
        let dst = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
        assert_eq!(icmpv6_checksum(&ip, &dst, icmp), 0);
    }

    #[test]
    fn attributes_roundtrip() {
        let mut m = Msg::new(RTM_NEWLINK, NLM_F_REQUEST, &ifinfomsg(3, 0, 0));
        m.str_attr(IFLA_IFNAME, "tdm1").attr(IFLA_ADDRESS, &[2, 0, 0, 0, 0, 1]).nest(IFLA_LINKINFO, |m| {
            m.str_attr(IFLA_INFO_KIND, "macvlan");
        });
        let b = m.finish(9);
        assert_eq!(u32::from_ne_bytes(b[0..4].try_into().unwrap()) as usize, b.len());
        assert_eq!(b.len() % 4, 0);
        let l = parse_link(&b[NLMSG_HDRLEN..]).unwrap();
        assert_eq!(l.index, 3);
        assert_eq!(l.name, "tdm1");
        assert_eq!(l.mac, Some(MacAddr([2, 0, 0, 0, 0, 1])));
        assert_eq!(l.kind.as_deref(), Some("macvlan"));
    }
}
