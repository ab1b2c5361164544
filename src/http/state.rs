//! [`AppState`]: what every handler shares, passed explicitly as actix app data (never global).

use crate::service::ProductService;
use crate::telemetry::metrics::Metrics;

/// The state every handler and the middleware read.
#[derive(Clone)]
pub struct AppState {
    /// Every product operation.
    pub service: ProductService,
    /// The Prometheus instruments (the middleware counts requests in them).
    pub metrics: Metrics,
    /// Largest accepted request body, in bytes (`MAX_BODY_BYTES`).
    pub max_body_bytes: u64,
    /// Largest accepted body of `POST /products/batch`, in bytes (`BATCH_MAX_BODY_BYTES`).
    pub batch_max_body_bytes: u64,
    /// Most products in one batch (`BATCH_MAX_ITEMS`).
    pub batch_max_items: usize,
    /// How long a request's body may take to arrive once its head has
    /// (`CLIENT_REQUEST_TIMEOUT_MS`); then 408.
    pub body_timeout: std::time::Duration,
    /// Whether PUT, PATCH and DELETE must name the version they change (`REQUIRE_IF_MATCH`).
    pub require_if_match: bool,
    /// Peers whose `X-Forwarded-Proto` and `X-Forwarded-Host` are believed (`TRUSTED_PROXIES`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
}
