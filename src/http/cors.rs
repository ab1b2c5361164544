//! CORS for browser front ends (the Fetch standard, "CORS protocol"), with `actix-cors`: off
//! unless `CORS_ALLOWED_ORIGINS` names origins.
//!
//! A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) from an allowed
//! origin is answered 200 by the middleware, before the routes. Other requests from an allowed
//! origin get `Access-Control-Allow-Origin` and the exposed headers below; a request from any
//! other origin is served as if CORS were off (no CORS headers, so the browser withholds the
//! answer from the page).

use actix_cors::Cors;
use actix_web::http::{Method, header};
use actix_web::middleware::Condition;

/// Methods a cross-origin page may use.
const METHODS: [Method; 6] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
];

/// Request headers a cross-origin page may send (beyond the CORS-safelisted ones).
const REQUEST_HEADERS: [&str; 6] = [
    "content-type",
    "authorization",
    "if-match",
    "if-none-match",
    "idempotency-key",
    "x-request-id",
];

/// Response headers a cross-origin page may read: the ones this API sends or will send
/// (`ETag`; the rate-limit fields of draft-ietf-httpapi-ratelimit-headers; a 401's
/// `WWW-Authenticate`), beyond the CORS-safelisted ones.
const EXPOSED_HEADERS: [&str; 10] = [
    "etag",
    "location",
    "retry-after",
    "x-request-id",
    "ratelimit",
    "ratelimit-policy",
    "ratelimit-limit",
    "ratelimit-remaining",
    "www-authenticate",
    "idempotent-replayed",
];

/// How long a browser may cache a preflight's answer, in seconds.
const PREFLIGHT_MAX_AGE_SECS: usize = 3600;

/// The CORS middleware for `origins` (each `scheme://host[:port]`, or `*` alone for any
/// origin: `Config::check` refuses `*` beside others); it does nothing when `origins` is empty. `config` checked the origins' form, so none makes
/// `actix-cors` panic.
pub fn middleware(origins: &[String]) -> Condition<Cors> {
    let mut cors = Cors::default()
        .allowed_methods(METHODS)
        .allowed_headers(REQUEST_HEADERS)
        .expose_headers(
            EXPOSED_HEADERS
                .iter()
                .copied()
                .chain([header::ALLOW.as_str()]),
        )
        .max_age(PREFLIGHT_MAX_AGE_SECS);
    if origins.iter().any(|origin| origin == "*") {
        cors = cors.allow_any_origin().send_wildcard();
    } else {
        for origin in origins {
            cors = cors.allowed_origin(origin);
        }
    }
    Condition::new(!origins.is_empty(), cors)
}
