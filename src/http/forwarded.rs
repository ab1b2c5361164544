//! The URL a client used to reach us, for links in responses (the `next` page of a list):
//! its scheme and authority, from `X-Forwarded-Proto` and `X-Forwarded-Host` when the peer is a
//! trusted proxy (`TRUSTED_PROXIES`), else from the request itself.
//!
//! Headers from any other peer are ignored: a client could otherwise make the service hand out
//! links to a host of its choosing.

use std::str::FromStr;

use actix_web::HttpRequest;
use actix_web::http::header::{self, HeaderName};
use actix_web::http::uri::Authority;

const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// `scheme://authority` of the request, e.g. `https://api.example`; `None` when the request
/// names no valid authority (an HTTP/1.0 request without `Host`), so that links stay relative.
pub fn base_url(req: &HttpRequest, trusted_proxies: &[ipnet::IpNet]) -> Option<String> {
    let trusted = req
        .peer_addr()
        .is_some_and(|peer| trusted_proxies.iter().any(|net| net.contains(&peer.ip())));
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
