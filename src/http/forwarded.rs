//! The URL a client used to reach us, for links in responses (the `next` page of a list):
//! its scheme and authority, from `X-Forwarded-Proto` and `X-Forwarded-Host` when the peer is a
//! trusted proxy (`TRUSTED_PROXIES`), else from the request itself.
//!
//! Headers from any other peer are ignored: a client could otherwise make the service hand out
//! links to a host of its choosing.
//!
//! [`client_address`] reads `X-Forwarded-For` under the same trust, for the rate limit.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use actix_web::HttpRequest;
use actix_web::http::header::{self, HeaderName};
use actix_web::http::uri::Authority;

const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Whether `ip` is one of `trusted_proxies` (`TRUSTED_PROXIES`).
pub fn is_trusted(ip: IpAddr, trusted_proxies: &[ipnet::IpNet]) -> bool {
    trusted_proxies.iter().any(|net| net.contains(&ip))
}

/// The address of the client behind the connection from `peer`.
///
/// When `peer` is a trusted proxy, `X-Forwarded-For` (every field line, in order, as one list)
/// is read from the right, the standard way: each proxy appends the address it received the
/// request from, so the right-most entry that is *not* a trusted proxy is the first address no
/// trusted party vouches against, the client; entries to its left are whatever that client sent
/// and are never believed. When every entry is a trusted proxy, the left-most is the client.
/// An entry that is no IP address (nor `address:port`, `[v6]:port`) ends the walk at the last
/// trusted hop, which then stands for the client. From any other peer the header is ignored:
/// the client is `peer`.
pub fn client_address<'a>(
    peer: IpAddr,
    forwarded_for: impl Iterator<Item = &'a str>,
    trusted_proxies: &[ipnet::IpNet],
) -> IpAddr {
    if !is_trusted(peer, trusted_proxies) {
        return peer;
    }
    let entries: Vec<&str> = forwarded_for
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for entry in entries.iter().rev() {
        let Some(address) = parse_forwarded_address(entry) else {
            break;
        };
        client = address;
        if !is_trusted(address, trusted_proxies) {
            break;
        }
    }
    client
}

/// An `X-Forwarded-For` entry: an IP address, with or without a port.
fn parse_forwarded_address(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

/// The client address of `req`: see [`client_address`]; `None` when the connection has no peer
/// address (not a TCP connection).
pub fn request_client_address(
    req: &actix_web::dev::ServiceRequest,
    trusted_proxies: &[ipnet::IpNet],
) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    let values = req
        .headers()
        .get_all(X_FORWARDED_FOR)
        .filter_map(|value| value.to_str().ok());
    Some(client_address(peer, values, trusted_proxies))
}

/// `scheme://authority` of the request, e.g. `https://api.example`; `None` when the request
/// names no valid authority (an HTTP/1.0 request without `Host`), so that links stay relative.
pub fn base_url(req: &HttpRequest, trusted_proxies: &[ipnet::IpNet]) -> Option<String> {
    let trusted = req
        .peer_addr()
        .is_some_and(|peer| is_trusted(peer.ip(), trusted_proxies));
    // The first entry of a list is what the client sent to the first proxy.
    let forwarded = |name: &HeaderName| {
        trusted
            .then(|| req.headers().get(name)?.to_str().ok())
            .flatten()
            .and_then(|value| value.split(',').next())
            .map(str::trim)
            .filter(|value| !value.is_empty())
    };
    let scheme = match forwarded(&X_FORWARDED_PROTO).map(str::to_ascii_lowercase) {
        Some(proto) if proto == "https" => "https",
        _ => "http",
    };
    let host_header = req
        .headers()
        .get(header::HOST)
        .and_then(|value| value.to_str().ok());
    // The first that is a valid authority; one with user information (`a@b`) is no host.
    let authority = [
        forwarded(&X_FORWARDED_HOST),
        host_header,
        req.uri().authority().map(Authority::as_str),
    ]
    .into_iter()
    .flatten()
    .filter_map(|host| Authority::from_str(host).ok())
    .find(|authority| !authority.as_str().contains('@'))?;
    Some(format!("{scheme}://{authority}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<ipnet::IpNet> {
        list.iter()
            .map(|n| n.parse().expect("a CIDR block"))
            .collect()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn the_client_is_the_right_most_forwarded_address_that_is_not_a_trusted_proxy() {
        let trusted = nets(&["10.0.0.0/8", "127.0.0.1/32"]);
        // (X-Forwarded-For field lines, separated by `|`; the client; why), from a trusted peer.
        let cases = [
            ("203.0.113.7", "203.0.113.7", "one proxy"),
            (
                "198.51.100.1, 203.0.113.7",
                "203.0.113.7",
                "a spoofed left entry",
            ),
            ("203.0.113.7, 10.1.2.3", "203.0.113.7", "two proxies"),
            ("203.0.113.7|10.1.2.3", "203.0.113.7", "two field lines"),
            (
                "10.9.9.9, 10.1.2.3",
                "10.9.9.9",
                "only proxies: the left-most",
            ),
            (
                "garbage, 10.1.2.3",
                "10.1.2.3",
                "garbage: the last trusted hop",
            ),
            ("203.0.113.7:4711", "203.0.113.7", "with a port"),
            ("[2001:db8::1]:4711", "2001:db8::1", "v6 with a port"),
            ("", "127.0.0.1", "an empty header: the peer"),
        ];
        for (header, client, why) in cases {
            let lines = header.split('|');
            assert_eq!(
                client_address(ip("127.0.0.1"), lines, &trusted),
                ip(client),
                "{why}"
            );
        }
        let none = std::iter::empty();
        assert_eq!(
            client_address(ip("127.0.0.1"), none, &trusted),
            ip("127.0.0.1")
        );
        let untrusted = client_address(ip("192.0.2.9"), ["203.0.113.7"].into_iter(), &trusted);
        assert_eq!(
            untrusted,
            ip("192.0.2.9"),
            "from an untrusted peer: ignored"
        );
    }
}
