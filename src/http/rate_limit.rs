//! Rate limiting per client (off by default; on with `RATE_LIMIT_PER_SECOND` above 0), with
//! `governor`'s GCRA: each client may make `RATE_LIMIT_BURST` requests at once, and regains one
//! every 1/`RATE_LIMIT_PER_SECOND` seconds.
//!
//! **Who is a client.** A request with a valid API token (`http::auth`) is its token (keyed on
//! the token's SHA-256 digest, never the token); any other request is its address: the peer's,
//! or, when the peer is one of `TRUSTED_PROXIES`, the right-most `X-Forwarded-For` entry that is
//! not a trusted proxy (`forwarded::client_address`). An IPv6 address counts by its /64 prefix
//! (what one host is usually given), so a host cannot dodge the limit by changing addresses
//! within it.
//!
//! **What is limited.** Every request but `/healthz`, `/readyz` and `/metrics` (probes and
//! scrapes must never be turned away), OPTIONS and 401s included (so token guessing is limited
//! by address). CORS preflights are answered before this, by the CORS middleware.
//!
//! **The answers.** Over the limit: 429 Too Many Requests (RFC 6585, section 4) as
//! problem+json, with `Retry-After` in whole seconds, rounded up, at least 1 (RFC 9110, section
//! 10.2.3). Every limited answer, 429 or not, carries the fields of
//! draft-ietf-httpapi-ratelimit-headers (revision 10, structured fields, RFC 9651):
//! `RateLimit-Policy: "default";q=<burst>;w=<seconds to regain the whole burst>` and
//! `RateLimit: "default";r=<requests left now>;t=<seconds until the whole burst is back>`,
//! seconds rounded up.
//!
//! **Memory.** One small state per client seen recently. A clean-up task drops, every
//! [`CLEANUP_EVERY`], the states of clients whose burst is whole again (they are
//! indistinguishable from new ones) and sets the `rate_limiter_clients` gauge. Between clean-ups
//! at most [`MAX_CLIENTS`] states are held: at that many, a clean-up runs at once (at most every
//! 100 ms), and when every state is still recent, all requests share one bucket (as one client)
//! until room is freed. So a flood of distinct addresses costs bounded memory and is limited as
//! one client.

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;
use governor::clock::{Clock as _, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};

use crate::http::auth::{Credentials, TokenCheck, TokenDigest, credentials};
use crate::http::forwarded::request_client_address;
use crate::http::problem::{ApiError, RateLimitFields};
use crate::telemetry::metrics::Metrics;

/// Most client states held at once (about 100 bytes each).
pub const MAX_CLIENTS: usize = 100_000;
/// How often the clean-up task drops the states of idle clients.
pub const CLEANUP_EVERY: Duration = Duration::from_secs(2);
/// Least time between two clean-ups forced by a full table.
const FORCED_CLEANUP_GAP: Duration = Duration::from_millis(100);
/// Paths never limited (with and without the trailing slash every route also answers).
const EXEMPT: [&str; 6] = [
    "/healthz",
    "/healthz/",
    "/readyz",
    "/readyz/",
    "/metrics",
    "/metrics/",
];

/// Who a request counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKey {
    /// A valid API token, by its digest.
    Token(TokenDigest),
    /// An address (an IPv6 one by its /64 prefix).
    Address(IpAddr),
    /// A connection with no address (not TCP).
    Unknown,
    /// Every request while the table is full of recent clients.
    Overflow,
}

impl ClientKey {
    /// The key of an address: IPv4 as it is (an IPv4-mapped IPv6 address as its IPv4), IPv6
    /// by its /64 prefix.
    pub fn address(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::Address(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::Address(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    Self::Address(IpAddr::V6(Ipv6Addr::from(prefix)))
                }
            },
        }
    }
}

type Limiter =
    RateLimiter<ClientKey, HashMapStateStore<ClientKey>, DefaultClock, StateInformationMiddleware>;

/// What the limiter decided for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Let it through, with these fields on the answer.
    Allowed(RateLimitFields),
    /// Answer 429.
    Limited {
        /// Seconds until the client may send again (at least 1).
        retry_after_secs: u64,
        /// The fields on the 429.
        fields: RateLimitFields,
    },
}

/// The per-client limiter: `governor`'s keyed GCRA, with its memory bounded.
#[derive(Debug)]
pub struct ClientLimiter {
    limiter: Limiter,
    burst: u32,
    /// Time to regain one request.
    interval: Duration,
    policy: String,
    max_clients: usize,
    last_forced_cleanup: Mutex<Option<Instant>>,
}

/// Whole seconds, rounded up.
fn ceil_secs(duration: Duration) -> u64 {
    let secs = duration.as_secs();
    if duration.subsec_nanos() > 0 {
        secs + 1
    } else {
        secs
    }
}

impl ClientLimiter {
    /// `per_second` requests a second on average (above 0), `burst` at once (at least 1),
    /// holding at most `max_clients` states.
    pub fn new(per_second: f64, burst: u32, max_clients: usize) -> Self {
        // At most 1,000,000 a second (the setting's bound): at least a microsecond per request.
        let interval = Duration::from_secs_f64(1.0 / per_second.max(1e-9))
            .max(Duration::from_micros(1))
            .min(Duration::from_secs(86_400 * 365));
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(interval)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        let window = ceil_secs(interval * burst.get()).max(1);
        Self {
            limiter: RateLimiter::hashmap(quota).with_middleware::<StateInformationMiddleware>(),
            burst: burst.get(),
            interval,
            policy: format!("\"default\";q={};w={window}", burst.get()),
            max_clients: max_clients.max(1),
            last_forced_cleanup: Mutex::new(None),
        }
    }

    /// Counts one request of `key` and decides.
    pub fn check(&self, key: ClientKey) -> Decision {
        let key = if self.limiter.len() >= self.max_clients && self.full_after_forced_cleanup() {
            ClientKey::Overflow
        } else {
            key
        };
        match self.limiter.check_key(&key) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let refill = self.interval * self.burst.saturating_sub(remaining);
                Decision::Allowed(self.fields(remaining, ceil_secs(refill)))
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.limiter.clock().now());
                let refill = wait + self.interval * self.burst.saturating_sub(1);
                Decision::Limited {
                    retry_after_secs: ceil_secs(wait).max(1),
                    fields: self.fields(0, ceil_secs(refill).max(1)),
                }
            }
        }
    }

    fn fields(&self, remaining: u32, reset_secs: u64) -> RateLimitFields {
        RateLimitFields {
            policy: self.policy.clone(),
            state: format!("\"default\";r={remaining};t={reset_secs}"),
        }
    }

    /// Runs a clean-up now unless one was forced less than 100 ms ago; whether the table is
    /// still full.
    fn full_after_forced_cleanup(&self) -> bool {
        if let Ok(mut last) = self.last_forced_cleanup.try_lock()
            && last.is_none_or(|at| at.elapsed() >= FORCED_CLEANUP_GAP)
        {
            *last = Some(Instant::now());
            self.limiter.retain_recent();
        }
        self.limiter.len() >= self.max_clients
    }

    /// Drops the states of clients whose burst is whole again, frees the memory they held, and
    /// returns how many states are left.
    pub fn clean_up(&self) -> usize {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        self.limiter.len()
    }

    /// How many client states are held.
    pub fn clients(&self) -> usize {
        self.limiter.len()
    }
}

/// Cleans `limiter` up every [`CLEANUP_EVERY`], for ever, and sets the `rate_limiter_clients`
/// gauge.
pub async fn clean_up_periodically(limiter: Arc<ClientLimiter>, metrics: Metrics) {
    let mut ticks = tokio::time::interval(CLEANUP_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        metrics.set_rate_limiter_clients(limiter.clean_up());
    }
}

/// The rate limit's settings, as actix app data; absent when rate limiting is off.
#[derive(Debug, Clone)]
pub struct RateLimit {
    /// The limiter.
    pub limiter: Arc<ClientLimiter>,
    /// `TRUSTED_PROXIES`, whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Where 429s are counted (`rate_limited_total`).
    pub metrics: Metrics,
}

/// Who `req` counts against: its valid token, else its address.
fn client_key(req: &ServiceRequest, settings: &RateLimit) -> ClientKey {
    if let Some(check) = req.app_data::<web::Data<TokenCheck>>()
        && let Credentials::Valid(digest) = credentials(req, &check.tokens)
    {
        return ClientKey::Token(digest);
    }
    request_client_address(req, &settings.trusted_proxies)
        .map_or(ClientKey::Unknown, ClientKey::address)
}

/// Answers 429 to a client over its limit, and adds the `RateLimit` fields to every other
/// limited answer (see the module documentation).
pub async fn limit(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let settings = req.app_data::<web::Data<RateLimit>>().cloned();
    let Some(settings) = settings.filter(|_| !EXEMPT.contains(&req.match_info().as_str())) else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    match settings.limiter.check(client_key(&req, &settings)) {
        Decision::Allowed(fields) => {
            let mut response = next.call(req).await?;
            fields.insert_into(response.headers_mut());
            Ok(response.map_into_left_body())
        }
        Decision::Limited {
            retry_after_secs,
            fields,
        } => {
            settings.metrics.count_rate_limited();
            Ok(req
                .error_response(ApiError::RateLimited {
                    retry_after_secs,
                    fields,
                })
                .map_into_right_body())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn key(n: u32) -> ClientKey {
        ClientKey::Address(IpAddr::V4(Ipv4Addr::from(n)))
    }

    #[test]
    fn a_client_gets_its_burst_then_429_with_the_fields() {
        let limiter = ClientLimiter::new(0.5, 2, 10);
        let first = limiter.check(key(1));
        assert_eq!(
            first,
            Decision::Allowed(RateLimitFields {
                policy: "\"default\";q=2;w=4".to_owned(),
                state: "\"default\";r=1;t=2".to_owned(),
            })
        );
        assert!(matches!(limiter.check(key(1)), Decision::Allowed(_)));
        let Decision::Limited {
            retry_after_secs,
            fields,
        } = limiter.check(key(1))
        else {
            panic!("the third request in a burst of 2 passed");
        };
        assert_eq!(retry_after_secs, 2);
        assert_eq!(fields.state, "\"default\";r=0;t=4");
        assert!(matches!(limiter.check(key(2)), Decision::Allowed(_)));
    }

    #[test]
    fn the_table_never_holds_more_than_its_bound_of_clients() {
        // One request an hour: no state becomes idle during the test.
        let limiter = ClientLimiter::new(1.0 / 3600.0, 1, 100);
        for n in 0..1000 {
            limiter.check(key(n));
            assert!(limiter.clients() <= 101, "{} states", limiter.clients());
        }
        // Full of recent clients: everyone shares the overflow bucket, which is spent.
        assert!(matches!(limiter.check(key(5000)), Decision::Limited { .. }));
    }

    #[test]
    fn idle_clients_are_dropped_by_the_clean_up() {
        let limiter = ClientLimiter::new(1000.0, 1, 100_000);
        for n in 0..20_000 {
            limiter.check(key(n));
        }
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(limiter.clean_up(), 0);
    }

    #[test]
    fn an_ipv6_host_counts_by_its_64_prefix() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("v6");
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().expect("v6");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("v6");
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().expect("v6");
        assert_eq!(ClientKey::address(a), ClientKey::address(b));
        assert_ne!(ClientKey::address(a), ClientKey::address(c));
        assert_eq!(
            ClientKey::address(mapped),
            ClientKey::Address("192.0.2.1".parse().expect("v4"))
        );
    }
}
