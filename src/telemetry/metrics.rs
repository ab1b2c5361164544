//! The application's own Prometheus registry and instruments.
//!
//! Built on the `prometheus` crate: its registries are plain values (each `Application` owns one,
//! so many apps in one test process never clash), its histograms render real `_bucket` series,
//! and on Linux it ships the standard `process_*` collector.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use prometheus::{
    Encoder as _, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter,
    IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use deadpool::Status as PoolStatus;

/// Request latency buckets, in seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Batch size buckets, in items.
const BATCH_SIZE_BUCKETS: &[f64] = &[1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 5000.0];

/// Every instrument of the service.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    upserts: IntCounterVec,
    batch_items: IntCounterVec,
    batch_size: Histogram,
    batch_transaction: Histogram,
    lock_wait: Histogram,
    upsert_transaction: Histogram,
    pool_connections: IntGaugeVec,
    pool_max: IntGauge,
    pool_waiting: IntGauge,
    pool_timeouts: IntCounter,
    precondition_failed: IntCounter,
    idempotency_replays: IntCounter,
    idempotency_conflicts: IntCounterVec,
    db_errors: IntCounterVec,
    duplicate_groups: IntGauge,
    duplicate_scan_timestamp: Gauge,
    duplicate_scan_duration: GaugeVec,
    duplicate_scan_checked_keys: IntGauge,
    duplicate_full_scan_timestamp: Gauge,
    rate_limited: IntCounter,
    rate_limiter_clients: IntGauge,
    unauthorized: IntCounterVec,
}

/// What became of an upsert that reached the database.
#[derive(Debug, Clone, Copy)]
pub enum UpsertOutcome {
    Created,
    Updated,
    /// Reached the database and did not commit.
    Failed,
}

/// The `kind` label of `db_errors_total`.
#[derive(Debug, Clone, Copy)]
pub enum DbErrorKind {
    LockTimeout,
    StatementTimeout,
    Connection,
    ReadOnly,
    Transient,
    Other,
}

impl DbErrorKind {
    /// Every kind, in the order the exposition lists them.
    pub const ALL: [Self; 6] = [
        Self::LockTimeout,
        Self::StatementTimeout,
        Self::Connection,
        Self::ReadOnly,
        Self::Transient,
        Self::Other,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::LockTimeout => "lock_timeout",
            Self::StatementTimeout => "statement_timeout",
            Self::Connection => "connection",
            Self::ReadOnly => "read_only",
            Self::Transient => "transient",
            Self::Other => "other",
        }
    }
}

/// Why a request was answered 401: the `reason` label of `unauthorized_total`.
#[derive(Debug, Clone, Copy)]
pub enum UnauthorizedReason {
    /// No `Authorization: Bearer` token.
    Missing,
    /// A token that is not one of the configured ones.
    Invalid,
}

impl UnauthorizedReason {
    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Invalid => "invalid",
        }
    }
}

/// The `kind` label of the duplicate scan's metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DuplicateScanKind {
    /// The keys written since the last scan, and the known duplicated ones.
    Incremental,
    /// Every key of the table.
    Full,
}

impl DuplicateScanKind {
    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::Incremental => "incremental",
            Self::Full => "full",
        }
    }
}

/// Registers a freshly defined metric and hands it back (definitions are static: a failure is a
/// bug, found by every test).
fn register<C>(registry: &Registry, metric: Result<C, prometheus::Error>) -> C
where
    C: prometheus::core::Collector + Clone + 'static,
{
    let metric = metric.expect("valid metric definition");
    registry
        .register(Box::new(metric.clone()))
        .expect("metric registered once");
    metric
}

fn latency(name: &str, help: &str) -> HistogramOpts {
    HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec())
}

impl Metrics {
    /// A fresh registry with every instrument registered.
    pub fn new() -> Self {
        let metrics = Self::register_all(Registry::new());
        // Fixed label sets start at zero, so dashboards and alerts see them before the first event.
        for outcome in ["created", "updated", "failed"] {
            metrics.upserts.with_label_values(&[outcome]);
        }
        for outcome in ["created", "updated"] {
            metrics.batch_items.with_label_values(&[outcome]);
        }
        for kind in DbErrorKind::ALL {
            metrics.db_errors.with_label_values(&[kind.label()]);
        }
        for reason in [UnauthorizedReason::Missing, UnauthorizedReason::Invalid] {
            metrics.unauthorized.with_label_values(&[reason.label()]);
        }
        metrics
    }

    fn register_all(registry: Registry) -> Self {
        let r = &registry;
        let build_info = register(
            r,
            IntGaugeVec::new(
                Opts::new(
                    "product_service_build_info",
                    "Build of the running service (always 1)",
                ),
                &["version"],
            ),
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        #[cfg(target_os = "linux")]
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .expect("process collector registered once");
        Self {
            http_requests: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "http_requests_total",
                        "HTTP requests by method, matched route and status",
                    ),
                    &["method", "route", "status"],
                ),
            ),
            http_duration: register(
                r,
                HistogramVec::new(
                    latency("http_request_duration_seconds", "HTTP request latency"),
                    &["method", "route"],
                ),
            ),
            upserts: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "product_upserts_total",
                        "Upserts that reached the database, by outcome (created, updated, failed)",
                    ),
                    &["outcome"],
                ),
            ),
            batch_items: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "batch_items_total",
                        "Items of committed POST /products/batch requests, by outcome (created, \
                         updated)",
                    ),
                    &["outcome"],
                ),
            ),
            batch_size: register(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "product_batch_size_items",
                        "Items per committed POST /products/batch request",
                    )
                    .buckets(BATCH_SIZE_BUCKETS.to_vec()),
                ),
            ),
            batch_transaction: register(
                r,
                Histogram::with_opts(latency(
                    "product_batch_transaction_seconds",
                    "Duration of a committed batch's transaction (pool wait, locks, writes, commit)",
                )),
            ),
            lock_wait: register(
                r,
                Histogram::with_opts(latency(
                    "product_upsert_lock_wait_seconds",
                    "Time from asking for a key's advisory lock to getting it",
                )),
            ),
            upsert_transaction: register(
                r,
                Histogram::with_opts(latency(
                    "product_upsert_transaction_seconds",
                    "Duration of the whole locked upsert transaction, commit included",
                )),
            ),
            pool_connections: register(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "db_pool_connections",
                        "Pooled database connections by state",
                    ),
                    &["state"],
                ),
            ),
            pool_max: register(
                r,
                IntGauge::new("db_pool_max_connections", "Size limit of the pool"),
            ),
            pool_waiting: register(
                r,
                IntGauge::new(
                    "db_pool_waiting_requests",
                    "Requests waiting for a pooled connection",
                ),
            ),
            pool_timeouts: register(
                r,
                IntCounter::new(
                    "db_pool_timeouts_total",
                    "Requests that got no pooled connection within DB_POOL_TIMEOUT_MS",
                ),
            ),
            precondition_failed: register(
                r,
                IntCounter::new(
                    "precondition_failed_total",
                    "Writes refused with 412: If-Match, If-None-Match or a version member was false",
                ),
            ),
            idempotency_replays: register(
                r,
                IntCounter::new(
                    "idempotency_replays_total",
                    "Requests answered with the stored answer of their Idempotency-Key",
                ),
            ),
            idempotency_conflicts: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "idempotency_conflicts_total",
                        "Requests refused for their Idempotency-Key, by kind: in_progress (409), \
                         reused for another request (422)",
                    ),
                    &["kind"],
                ),
            ),
            db_errors: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "db_errors_total",
                        "Database errors by kind (lock_timeout, statement_timeout, connection, read_only, \
                         transient, other)",
                    ),
                    &["kind"],
                ),
            ),
            duplicate_groups: register(
                r,
                IntGauge::new(
                    "product_duplicate_key_groups",
                    "Keys that have more than one row, as of the last scan",
                ),
            ),
            duplicate_scan_timestamp: register(
                r,
                Gauge::new(
                    "product_duplicate_scan_timestamp_seconds",
                    "Unix time of the last completed duplicate scan",
                ),
            ),
            duplicate_scan_duration: register(
                r,
                GaugeVec::new(
                    Opts::new(
                        "product_duplicate_scan_duration_seconds",
                        "Wall time of the last duplicate scan of each kind (incremental, full), \
                         pool wait included",
                    ),
                    &["kind"],
                ),
            ),
            duplicate_scan_checked_keys: register(
                r,
                IntGauge::new(
                    "product_duplicate_scan_checked_keys",
                    "Distinct keys the last incremental duplicate scan looked up: keys written \
                     since the previous scans, and the known duplicated ones",
                ),
            ),
            duplicate_full_scan_timestamp: register(
                r,
                Gauge::new(
                    "product_duplicate_full_scan_timestamp_seconds",
                    "Unix time of the last completed full duplicate scan",
                ),
            ),
            rate_limited: register(
                r,
                IntCounter::new(
                    "rate_limited_total",
                    "Requests answered 429 because their client was over RATE_LIMIT_PER_SECOND",
                ),
            ),
            rate_limiter_clients: register(
                r,
                IntGauge::new(
                    "rate_limiter_clients",
                    "Clients the rate limiter holds a state for, as of its last clean-up",
                ),
            ),
            unauthorized: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "unauthorized_total",
                        "Requests answered 401, by reason (missing or invalid bearer token)",
                    ),
                    &["reason"],
                ),
            ),
            registry,
        }
    }

    /// A counter of HTTP requests for one thread (each actix-web worker builds its own).
    pub fn request_counter(&self) -> RequestCounter {
        RequestCounter {
            metrics: self.clone(),
            routes: RefCell::default(),
        }
    }

    /// Counts one request answered from its idempotency key's stored answer.
    pub fn count_idempotency_replay(&self) {
        self.idempotency_replays.inc();
    }

    /// Counts one request refused for its idempotency key: `kind` is `in_progress` or `reused`.
    pub fn count_idempotency_conflict(&self, kind: &str) {
        self.idempotency_conflicts.with_label_values(&[kind]).inc();
    }

    /// Counts one write refused because a precondition was false (412).
    pub fn count_precondition_failed(&self) {
        self.precondition_failed.inc();
    }

    /// Counts one upsert that reached the database, with the duration of its transaction.
    pub fn observe_upsert(&self, outcome: UpsertOutcome, transaction: Duration) {
        let label = match outcome {
            UpsertOutcome::Created => "created",
            UpsertOutcome::Updated => "updated",
            UpsertOutcome::Failed => "failed",
        };
        self.upserts.with_label_values(&[label]).inc();
        self.upsert_transaction.observe(transaction.as_secs_f64());
    }

    /// Counts the items of one committed batch request by outcome, its size and how long it
    /// took (from asking for a connection to the commit).
    pub fn observe_batch(&self, created: usize, updated: usize, elapsed: Duration) {
        self.batch_items
            .with_label_values(&["created"])
            .inc_by(created as u64);
        self.batch_items
            .with_label_values(&["updated"])
            .inc_by(updated as u64);
        self.batch_size.observe((created + updated) as f64);
        self.batch_transaction.observe(elapsed.as_secs_f64());
    }

    /// Records how long an upsert waited for its advisory lock.
    pub fn observe_lock_wait(&self, waited: Duration) {
        self.lock_wait.observe(waited.as_secs_f64());
    }

    /// Counts a request that timed out waiting for a pooled connection.
    pub fn count_pool_timeout(&self) {
        self.pool_timeouts.inc();
    }

    /// Counts a database error.
    pub fn count_db_error(&self, kind: DbErrorKind) {
        self.db_errors.with_label_values(&[kind.label()]).inc();
    }

    /// Counts a request answered 429.
    pub fn count_rate_limited(&self) {
        self.rate_limited.inc();
    }

    /// Records how many clients the rate limiter holds a state for.
    pub fn set_rate_limiter_clients(&self, clients: usize) {
        self.rate_limiter_clients
            .set(i64::try_from(clients).unwrap_or(i64::MAX));
    }

    /// Counts a request answered 401.
    pub fn count_unauthorized(&self, reason: UnauthorizedReason) {
        self.unauthorized.with_label_values(&[reason.label()]).inc();
    }

    /// Records the result of a duplicate scan.
    pub fn set_duplicate_groups(&self, groups: i64) {
        self.duplicate_groups.set(groups);
        self.duplicate_scan_timestamp.set(unix_now());
    }

    /// Records the cost of one completed duplicate scan: its wall time, and for an incremental
    /// scan how many keys it looked up (`checked`).
    pub fn observe_duplicate_scan(
        &self,
        kind: DuplicateScanKind,
        elapsed: Duration,
        checked: Option<i64>,
    ) {
        self.duplicate_scan_duration
            .with_label_values(&[kind.label()])
            .set(elapsed.as_secs_f64());
        if let Some(checked) = checked {
            self.duplicate_scan_checked_keys.set(checked);
        }
        if kind == DuplicateScanKind::Full {
            self.duplicate_full_scan_timestamp.set(unix_now());
        }
    }

    /// The exposition text (Prometheus text format 0.0.4), with the pool gauges set from
    /// `status`, read by the caller just before.
    pub fn render(&self, status: PoolStatus) -> Result<String, prometheus::Error> {
        let in_use = status.size.saturating_sub(status.available);
        self.pool_connections
            .with_label_values(&["idle"])
            .set(status.available as i64);
        self.pool_connections
            .with_label_values(&["in_use"])
            .set(in_use as i64);
        self.pool_max.set(status.max_size as i64);
        self.pool_waiting.set(status.waiting as i64);
        let mut buffer = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buffer)?;
        String::from_utf8(buffer).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }
}

/// Seconds since the Unix epoch, now.
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Counts the HTTP requests of one thread in `http_requests_total` and
/// `http_request_duration_seconds`, keeping the label children it has used: a request it has
/// seen the like of (method, route, status) is counted without formatting its status or
/// looking its labels up in the shared registry. Not `Sync`: one per actix-web worker
/// ([`Metrics::request_counter`]).
#[derive(Debug)]
pub struct RequestCounter {
    metrics: Metrics,
    /// By route: the children of each method seen on it.
    routes: RefCell<HashMap<Box<str>, Vec<MethodChildren>>>,
}

/// The children of one route and method.
#[derive(Debug)]
struct MethodChildren {
    method: Box<str>,
    duration: Histogram,
    /// By status, in the order first seen (a route answers a handful).
    requests: Vec<(u16, IntCounter)>,
}

impl RequestCounter {
    /// Counts one HTTP request; `route` is the matched pattern or `unmatched`.
    pub fn observe(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let mut routes = self.routes.borrow_mut();
        if !routes.contains_key(route) {
            routes.insert(route.into(), Vec::new());
        }
        let Some(methods) = routes.get_mut(route) else {
            return;
        };
        let children = match methods.iter().position(|c| &*c.method == method) {
            Some(at) => &mut methods[at],
            None => {
                methods.push(MethodChildren {
                    method: method.into(),
                    duration: self
                        .metrics
                        .http_duration
                        .with_label_values(&[method, route]),
                    requests: Vec::new(),
                });
                let last = methods.len() - 1;
                &mut methods[last]
            }
        };
        children.duration.observe(elapsed.as_secs_f64());
        match children.requests.iter().find(|(s, _)| *s == status) {
            Some((_, counter)) => counter.inc(),
            None => {
                let counter = self.metrics.http_requests.with_label_values(&[
                    method,
                    route,
                    &status.to_string(),
                ]);
                counter.inc();
                children.requests.push((status, counter));
            }
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
