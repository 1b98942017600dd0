//! The client's address: the TCP peer, or — behind trusted reverse proxies — the address they
//! report in `X-Forwarded-For`.
//!
//! `X-Forwarded-For` is a list that every proxy appends the address it saw to, so only its
//! rightmost entries were written by proxies we trust; everything to their left came from the
//! client and may be forged. Starting from the TCP peer, the gateway steps one entry to the
//! left while the current address is a trusted proxy, at most `hops` times. A header from an
//! untrusted peer is ignored entirely. (The same rule as nginx's `real_ip_recursive` and
//! Rails' `ActionDispatch::RemoteIp`.)

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

/// Parses a trusted proxy: a CIDR (`10.0.0.0/8`) or a single address (`10.1.2.3`).
pub fn parse_proxy(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("`{s}` is neither an IP address nor a CIDR block"))
}

/// The trusted proxies of `GATEWAY_TRUSTED_PROXIES`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyList(pub Vec<IpNet>);

/// Parses a comma-separated list of proxies; empty entries are skipped, so an empty value (an
/// empty environment variable) means no proxy.
pub fn parse_proxy_list(s: &str) -> Result<ProxyList, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(parse_proxy)
        .collect::<Result<_, _>>()
        .map(ProxyList)
}

/// Which peers may tell the gateway the client's address.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
    hops: u8,
}

/// IPv4 clients of a dual-stack listener appear as `::ffff:a.b.c.d`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .map(canonical)
}

impl TrustedProxies {
    /// Trusts `nets`, reading at most `hops` entries.
    pub fn new(nets: Vec<IpNet>, hops: u8) -> Self {
        TrustedProxies { nets, hops }
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// The client's address for a request from `peer` with `headers`.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut addr = canonical(peer);
        if !self.trusts(addr) {
            return addr;
        }
        // Every X-Forwarded-For header, in order, as one list read from the right.
        let entries: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect();
        let mut from_right = entries.into_iter().rev();
        for _ in 0..self.hops {
            if !self.trusts(addr) {
                break;
            }
            match from_right.next().and_then(parse_entry) {
                Some(ip) => addr = ip,
                None => break,
            }
        }
        addr
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn proxies(nets: &[&str], hops: u8) -> TrustedProxies {
        TrustedProxies::new(nets.iter().map(|n| parse_proxy(n).unwrap()).collect(), hops)
    }

    #[test]
    fn the_header_of_an_untrusted_peer_is_ignored() {
        let p = proxies(&["10.0.0.0/8"], 1);
        let h = headers(&["1.2.3.4"]);
        assert_eq!(p.client_ip(ip("203.0.113.9"), &h), ip("203.0.113.9"));
        assert_eq!(
            TrustedProxies::default().client_ip(ip("10.0.0.1"), &h),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn a_trusted_proxy_reports_the_client_and_forged_entries_to_its_left_are_ignored() {
        let p = proxies(&["10.0.0.0/8"], 1);
        let h = headers(&["6.6.6.6, 198.51.100.7"]);
        assert_eq!(p.client_ip(ip("10.1.2.3"), &h), ip("198.51.100.7"));
    }

    #[test]
    fn hops_walk_through_a_chain_of_trusted_proxies() {
        // client -> cloud LB (10.9.9.9) -> ingress (10.1.1.1) -> gateway
        let p = proxies(&["10.0.0.0/8"], 2);
        let h = headers(&["6.6.6.6", "198.51.100.7, 10.9.9.9"]);
        assert_eq!(p.client_ip(ip("10.1.1.1"), &h), ip("198.51.100.7"));
        // With one hop the gateway stops at the load balancer's address.
        let one = proxies(&["10.0.0.0/8"], 1);
        assert_eq!(one.client_ip(ip("10.1.1.1"), &h), ip("10.9.9.9"));
        // An untrusted address stops the walk even with hops left.
        let h = headers(&["6.6.6.6, 198.51.100.7"]);
        assert_eq!(p.client_ip(ip("10.1.1.1"), &h), ip("198.51.100.7"));
    }

    #[test]
    fn garbage_ports_and_mapped_addresses() {
        let p = proxies(&["10.0.0.0/8", "::1"], 1);
        assert_eq!(
            p.client_ip(ip("10.0.0.1"), &headers(&["not-an-ip"])),
            ip("10.0.0.1")
        );
        assert_eq!(p.client_ip(ip("10.0.0.1"), &headers(&[])), ip("10.0.0.1"));
        assert_eq!(
            p.client_ip(ip("10.0.0.1"), &headers(&["[2001:db8::1]:443"])),
            ip("2001:db8::1")
        );
        assert_eq!(
            p.client_ip(ip("::ffff:10.0.0.1"), &headers(&["1.2.3.4:80"])),
            ip("1.2.3.4")
        );
        assert_eq!(
            p.client_ip(ip("::1"), &headers(&["1.2.3.4"])),
            ip("1.2.3.4")
        );
        assert!(parse_proxy("10.0.0.0/33").is_err());
        assert!(parse_proxy("proxy").is_err());
    }
}
