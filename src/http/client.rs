//! Who sent a request: the connection's peer, or behind the site's own proxies the
//! address in `--client-ip-header` — the rightmost one not in `--trusted-proxies`, since
//! every address left of the nearest untrusted hop is the client's own claim. The rate
//! limit and the visitor hash use it.

use std::net::IpAddr;
use std::str::FromStr;

use http::{HeaderMap, HeaderName};

/// One CIDR block of `--trusted-proxies` (`10.0.0.0/8`, `2001:db8::/32`, or a bare address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let bad = || format!("{s:?} is not an address or CIDR block");
        let (addr, bits) = match s.trim().split_once('/') {
            Some((a, b)) => (a, Some(b.parse::<u8>().map_err(|_| bad())?)),
            None => (s.trim(), None),
        };
        let net: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = bits.unwrap_or(max);
        if bits > max {
            return Err(bad());
        }
        Ok(Cidr { net, bits })
    }
}

fn as_u128(ip: IpAddr) -> (u128, u8) {
    match ip {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
        IpAddr::V6(v6) => (u128::from(v6), 128),
    }
}

impl Cidr {
    /// True when `ip` lies in the block (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let ((net, width), (addr, addr_width)) = (as_u128(self.net), as_u128(ip));
        if width != addr_width {
            return false;
        }
        let shift = u32::from(width - self.bits);
        shift >= 128 || (net >> shift) == (addr >> shift)
    }
}

/// Parses `--trusted-proxies`: comma-separated CIDR blocks.
pub fn parse_cidrs(s: &str) -> Result<Vec<Cidr>, String> {
    s.split(',').filter(|c| !c.trim().is_empty()).map(str::parse).collect()
}

/// Finds a request's client address.
#[derive(Debug, Clone, Default)]
pub struct ClientAddr {
    header: Option<HeaderName>,
    trusted: Vec<Cidr>,
}

impl ClientAddr {
    /// From `--client-ip-header` and `--trusted-proxies`.
    pub fn new(header: Option<HeaderName>, trusted: Vec<Cidr>) -> Self {
        ClientAddr { header, trusted }
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|c| c.contains(ip))
    }

    /// The client of a request from `peer`: without a header configured, the peer.
    /// With one: the rightmost address in it that is not a trusted proxy (the leftmost
    /// when all are). The header is ignored when proxies are listed and the peer is not
    /// one of them (anyone could send it), or when it holds no address.
    pub fn of(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let Some(name) = &self.header else { return peer };
        if !self.trusted.is_empty() && !self.is_trusted(peer) {
            return peer;
        }
        let mut last = None;
        for value in headers.get_all(name).iter().rev() {
            let Ok(value) = value.to_str() else { return peer };
            for part in value.rsplit(',') {
                let part = part.trim().trim_start_matches('[');
                let part = part.split(']').next().unwrap_or(part);
                let Ok(ip) = part.parse::<IpAddr>() else {
                    return last.unwrap_or(peer);
                };
                if !self.is_trusted(ip) {
                    return ip;
                }
                last = Some(ip);
            }
        }
        last.unwrap_or(peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", value.parse().unwrap());
        h
    }

    #[test]
    fn cidr_blocks_contain_their_addresses() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains(ip("10.1.2.3")) && !c.contains(ip("11.0.0.1")));
        assert!(c.contains(ip("::ffff:10.0.0.1")));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8::1")) && !v6.contains(ip("2001:db9::1")));
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().contains(ip("1.2.3.4")));
        assert!("127.0.0.1".parse::<Cidr>().unwrap().contains(ip("127.0.0.1")));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!(parse_cidrs("10.0.0.0/8, nonsense").is_err());
    }

    #[test]
    fn the_client_is_the_rightmost_address_not_a_trusted_proxy() {
        let peer = ip("127.0.0.1");
        let trusted = parse_cidrs("127.0.0.1,10.0.0.0/8").unwrap();
        let c = ClientAddr::new(Some(HeaderName::from_static("x-forwarded-for")), trusted);
        assert_eq!(c.of(peer, &xff("6.6.6.6, 203.0.113.7, 10.0.0.2")), ip("203.0.113.7"));
        assert_eq!(c.of(peer, &xff("10.0.0.9, 10.0.0.2")), ip("10.0.0.9"));
        assert_eq!(c.of(peer, &xff("garbage")), peer);
        assert_eq!(c.of(peer, &HeaderMap::new()), peer);
        assert_eq!(
            c.of(ip("192.0.2.1"), &xff("203.0.113.7")),
            ip("192.0.2.1"),
            "a peer that is not a trusted proxy cannot name a client"
        );
    }

    #[test]
    fn without_trusted_proxies_the_last_address_is_the_client() {
        let peer = ip("127.0.0.1");
        let c = ClientAddr::new(Some(HeaderName::from_static("x-forwarded-for")), Vec::new());
        assert_eq!(c.of(peer, &xff("6.6.6.6, 203.0.113.7")), ip("203.0.113.7"));
        assert_eq!(ClientAddr::default().of(peer, &xff("203.0.113.7")), peer);
    }
}
