//! Typed configuration, read from environment variables and command-line flags.
//!
//! Every setting is an environment variable and a flag of the same name (`BIND_ADDR` and
//! `--bind-addr`); a flag wins over the variable.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `DATABASE_URL` | unset | PostgreSQL to use; unset starts the embedded cluster in `$DATA_DIR/postgres` |
//! | `BIND_ADDR` | `127.0.0.1:8080` | HTTP listen address (port 0 picks a free port) |
//! | `DB_POOL_SIZE` | `16` | most database connections the service holds |
//! | `DB_POOL_TIMEOUT_MS` | `2000` | longest wait for a free pooled connection before a 503 |
//! | `LOCK_TIMEOUT_MS` | `5000` | longest wait for any lock (advisory or row) before a 503 |
//! | `STATEMENT_TIMEOUT_MS` | `10000` | longest run of one SQL statement before a 503 |
//! | `MAX_BODY_BYTES` | `65536` | largest request body; larger is a 413 |
//! | `BATCH_MAX_ITEMS` | `1000` | most products in one `POST /products/batch`; more is a 400 |
//! | `BATCH_MAX_BODY_BYTES` | `4194304` | largest body of `POST /products/batch` (it alone); larger is a 413 |
//! | `CLIENT_REQUEST_TIMEOUT_MS` | `5000` | longest wait for a request's head, then for its body; else 408 and the connection closes |
//! | `KEEP_ALIVE_SECS` | `5` | how long an idle keep-alive connection stays open (0: close after each response) |
//! | `MAX_CONNECTIONS` | `10000` | most open client connections; more wait in the listen backlog |
//! | `CORS_ALLOWED_ORIGINS` | unset | origins browsers may call the API from (comma-separated, or `*`); unset: no CORS |
//! | `IDEMPOTENCY_TTL_SECS` | `86400` | how long the answer of a request with an `Idempotency-Key` is kept for retries |
//! | `REQUIRE_IF_MATCH` | `false` | PUT, PATCH and DELETE without `If-Match` (or a `version` member) are a 428 |
//! | `TRUSTED_PROXIES` | unset | addresses or CIDR blocks whose `X-Forwarded-Proto`/`-Host`/`-For` are believed |
//! | `RATE_LIMIT_PER_SECOND` | `0` (off) | requests each client may make per second, on average (a fraction too: `0.5`) |
//! | `RATE_LIMIT_BURST` | the rate, rounded up | requests a client may make at once before the rate applies |
//! | `API_TOKENS` | unset | bearer tokens that may write (comma-separated); unset with no file: no tokens needed |
//! | `API_TOKENS_FILE` | unset | a file of bearer tokens, one a line (`#` comments); re-read on SIGHUP |
//! | `API_TOKENS_READ` | `false` | reads of `/products` need a token too |
//! | `DATA_DIR` | `.data` | where the embedded PostgreSQL keeps its data |
//! | `HTTP_WORKERS` | cores less one (at least 1) | actix-web worker threads |
//! | `METRICS_ADDR` | unset | serve `/metrics` only on this separate address, off the public port |
//! | `DUPLICATE_SCAN_INTERVAL_SECS` | `60` | how often to check the keys written since the last check for several rows (0: never scan) |
//! | `DUPLICATE_FULL_SCAN_INTERVAL_SECS` | `86400` | how often to count every key's rows instead (also at start and on SIGUSR1; 0: only then) |
//! | `GROUP_COMMIT` | `true` | apply upserts that queue up together, one commit per batch |
//! | `GROUP_COMMIT_WORKERS` | `4` | batches in flight at once |
//! | `GROUP_COMMIT_MAX_BATCH` | `128` | most upserts in one batch |
//! | `RUST_LOG` | `info` | log filter (env_logger syntax) |

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Settings every command has (`serve`, `migrate`, `dedupe`): where the database is, and the
/// log filter.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// PostgreSQL connection string; unset: the embedded database in `$DATA_DIR/postgres`.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Directory of the embedded PostgreSQL's data (used when no DATABASE_URL is set).
    #[arg(long, env = "DATA_DIR", default_value = ".data")]
    pub data_dir: PathBuf,

    /// Log filter, in env_logger syntax.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub rust_log: String,
}

/// Bounds on waiting inside the database (`serve` and `dedupe`).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct WaitArgs {
    /// Longest wait for any lock inside a transaction, in milliseconds, before answering 503.
    #[arg(long, env = "LOCK_TIMEOUT_MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(1..=2_147_483_647))]
    pub lock_timeout_ms: u64,

    /// Longest run of one SQL statement, in milliseconds, before answering 503.
    #[arg(long, env = "STATEMENT_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=2_147_483_647))]
    pub statement_timeout_ms: u64,
}

/// The service's settings (`serve`). `Default` gives the documented defaults with no database
/// URL.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub common: CommonArgs,

    #[command(flatten)]
    pub waits: WaitArgs,

    /// Address the HTTP server listens on.
    #[arg(long, env = "BIND_ADDR", default_value = "127.0.0.1:8080")]
    pub bind_addr: SocketAddr,

    /// Maximum number of pooled database connections.
    #[arg(long, env = "DB_POOL_SIZE", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub db_pool_size: u32,

    /// Longest wait for a pooled connection, in milliseconds, before answering 503.
    #[arg(long, env = "DB_POOL_TIMEOUT_MS", default_value_t = 2000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub db_pool_timeout_ms: u64,

    /// Largest accepted request body in bytes; a larger one is answered 413.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 65_536,
          value_parser = clap::value_parser!(u64).range(1..=1_073_741_824))]
    pub max_body_bytes: u64,

    /// Most products in one `POST /products/batch` (one transaction); more is answered 400.
    #[arg(long, env = "BATCH_MAX_ITEMS", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch_max_items: u32,

    /// Largest accepted body of `POST /products/batch`, in bytes (`MAX_BODY_BYTES` is for the
    /// other routes); a larger one is answered 413.
    #[arg(long, env = "BATCH_MAX_BODY_BYTES", default_value_t = 4_194_304,
          value_parser = clap::value_parser!(u64).range(1..=1_073_741_824))]
    pub batch_max_body_bytes: u64,

    /// Longest wait, in milliseconds, for a request's head after the connection is accepted (or
    /// the previous response sent), and again for its body after the head; else 408 Request
    /// Timeout and the connection is closed (RFC 9110, section 15.5.9).
    #[arg(long, env = "CLIENT_REQUEST_TIMEOUT_MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub client_request_timeout_ms: u64,

    /// Seconds an idle keep-alive connection stays open; 0 closes every connection after its
    /// response.
    #[arg(long, env = "KEEP_ALIVE_SECS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub keep_alive_secs: u64,

    /// Most client connections open at once (shared out evenly over the HTTP workers); further
    /// connections wait in the kernel's listen backlog until one closes.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,

    /// Origins (`scheme://host[:port]`) whose browser pages may call the API, comma-separated, or
    /// `*` for any origin; empty: no CORS headers (browsers then refuse cross-origin calls).
    /// See the Fetch standard, "CORS protocol".
    #[arg(long, env = "CORS_ALLOWED_ORIGINS", value_delimiter = ',',
          value_parser = parse_origin)]
    pub cors_allowed_origins: Vec<String>,

    /// Seconds the answer of a request sent with an `Idempotency-Key` is kept, for its retries;
    /// expired keys are deleted in the background.
    #[arg(long, env = "IDEMPOTENCY_TTL_SECS", default_value_t = 86_400,
          value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
    pub idempotency_ttl_secs: u64,

    /// Whether PUT, PATCH and DELETE must name the version they change, with `If-Match` or a
    /// `version` member: without, 428 Precondition Required (RFC 6585, section 3).
    #[arg(long, env = "REQUIRE_IF_MATCH", default_value_t = false,
          action = clap::ArgAction::Set)]
    pub require_if_match: bool,

    /// Proxies (IP addresses or CIDR blocks, comma-separated) whose `X-Forwarded-Proto` and
    /// `X-Forwarded-Host` headers are believed when building absolute URLs, and whose
    /// `X-Forwarded-For` names the client the rate limit counts; other clients' are ignored.
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',',
          value_parser = parse_proxy)]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// Requests each client may make per second, on average (fractions too: `0.5` is one every
    /// 2 s); 0 turns rate limiting off. A client is its API token when it sends a valid one,
    /// else its address (see `http::rate_limit`).
    #[arg(long, env = "RATE_LIMIT_PER_SECOND", default_value_t = 0.0,
          value_parser = parse_rate)]
    pub rate_limit_per_second: f64,

    /// Requests a client may make at once, before the rate applies; unset: the rate rounded up
    /// (at least 1).
    #[arg(long, env = "RATE_LIMIT_BURST",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate_limit_burst: Option<u32>,

    /// Bearer tokens that may write, comma-separated (`Authorization: Bearer <token>`, RFC
    /// 6750); unset, with no `API_TOKENS_FILE` either: no token is needed.
    #[arg(long, env = "API_TOKENS", value_delimiter = ',', hide_env_values = true,
          value_parser = parse_token)]
    pub api_tokens: Vec<ApiToken>,

    /// A file of bearer tokens, one a line (blank lines and lines starting with `#` are
    /// skipped), read at start and again on SIGHUP.
    #[arg(long, env = "API_TOKENS_FILE")]
    pub api_tokens_file: Option<PathBuf>,

    /// Reads of `/products` need a token too (writes always do, once tokens are configured).
    #[arg(long, env = "API_TOKENS_READ", default_value_t = false,
          action = clap::ArgAction::Set)]
    pub api_tokens_read: bool,

    /// Number of HTTP worker threads; unset: one per core but one (the main thread runs the
    /// group commit), at least one.
    #[arg(long, env = "HTTP_WORKERS",
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub http_workers: Option<u32>,

    /// Serve `/metrics` only on this separate address (unset: on the public port).
    #[arg(long, env = "METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// Seconds between scans for keys with more than one row; 0 turns the scan off.
    #[arg(long, env = "DUPLICATE_SCAN_INTERVAL_SECS", default_value_t = 60)]
    pub duplicate_scan_interval_secs: u64,

    /// Seconds between full duplicate scans (every key of the table; also at start and on
    /// SIGUSR1); 0: only at start and on SIGUSR1. The scans between check only the keys written
    /// since.
    #[arg(
        long,
        env = "DUPLICATE_FULL_SCAN_INTERVAL_SECS",
        default_value_t = 86_400
    )]
    pub duplicate_full_scan_interval_secs: u64,

    /// Group commit: upserts that queue up while a transaction is in flight are applied together,
    /// with one commit; `false` runs every upsert in a transaction of its own.
    #[arg(long, env = "GROUP_COMMIT", default_value_t = true,
          action = clap::ArgAction::Set)]
    pub group_commit: bool,

    /// Group-commit transactions in flight at once.
    #[arg(long, env = "GROUP_COMMIT_WORKERS", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub group_commit_workers: u32,

    /// Most upserts applied in one group-commit transaction.
    #[arg(long, env = "GROUP_COMMIT_MAX_BATCH", default_value_t = 128,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub group_commit_max_batch: u32,

    /// Test-only switches; they exist only in builds with the `test-hooks` feature.
    #[cfg(feature = "test-hooks")]
    #[arg(skip)]
    pub test_hooks: TestHooks,
}

/// Switches that let the test suite prove its race tests can fail. Never in a release build.
#[cfg(feature = "test-hooks")]
#[derive(Debug, Clone, Copy, Default)]
pub struct TestHooks {
    /// Skip `pg_advisory_xact_lock` in the upsert: the bug this service exists to prevent.
    pub disable_advisory_lock: bool,
    /// Sleep this long between reading the row and writing it, widening the race window.
    pub race_window_ms: u64,
    /// Take a batch's advisory locks one statement per key in array order, not sorted: the
    /// deadlock between batches that the sorted order prevents.
    pub batch_locks_in_array_order: bool,
}

impl Default for CommonArgs {
    fn default() -> Self {
        Self {
            database_url: None,
            data_dir: PathBuf::from(".data"),
            rust_log: "info".to_owned(),
        }
    }
}

impl Default for WaitArgs {
    fn default() -> Self {
        Self {
            lock_timeout_ms: 5000,
            statement_timeout_ms: 10_000,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            common: CommonArgs::default(),
            waits: WaitArgs::default(),
            bind_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            db_pool_size: 16,
            db_pool_timeout_ms: 2000,
            max_body_bytes: 65_536,
            batch_max_items: 1000,
            batch_max_body_bytes: 4_194_304,
            client_request_timeout_ms: 5000,
            keep_alive_secs: 5,
            max_connections: 10_000,
            cors_allowed_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            require_if_match: false,
            idempotency_ttl_secs: 86_400,
            rate_limit_per_second: 0.0,
            rate_limit_burst: None,
            api_tokens: Vec::new(),
            api_tokens_file: None,
            api_tokens_read: false,
            http_workers: None,
            metrics_addr: None,
            duplicate_scan_interval_secs: 60,
            duplicate_full_scan_interval_secs: 86_400,
            group_commit: true,
            group_commit_workers: 4,
            group_commit_max_batch: 128,
            #[cfg(feature = "test-hooks")]
            test_hooks: TestHooks::default(),
        }
    }
}

/// A `CORS_ALLOWED_ORIGINS` entry: `*`, or an origin exactly as browsers send it in `Origin`
/// (`scheme://host[:port]`, no path, no trailing slash; RFC 6454, section 6.2).
fn parse_origin(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text == "*" {
        return Ok(text.to_owned());
    }
    if text.contains('*') {
        return Err(format!(
            "{text:?}: wildcard patterns are not supported; list each origin, or * alone for any"
        ));
    }
    let serialised = url::Url::parse(text)
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https"))
        .map(|url| url.origin().ascii_serialization());
    match serialised {
        Some(origin) if origin == text => Ok(origin),
        Some(origin) => Err(format!(
            "{text:?} is not an origin as browsers send it; did you mean {origin:?}?"
        )),
        None => Err(format!(
            "{text:?} is not an http(s) origin such as https://shop.example"
        )),
    }
}

/// An API token as configured: its `Debug` never shows it, so that no log of the settings
/// can leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken(String);

impl ApiToken {
    /// The token, to hash it; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken(<hidden>)")
    }
}

impl From<&str> for ApiToken {
    fn from(token: &str) -> Self {
        Self(token.to_owned())
    }
}

/// An `API_TOKENS` entry: not blank once trimmed, and no white space inside (a bearer token is
/// a `token68`, RFC 6750 section 2.1). The message never repeats the token.
pub fn parse_token(text: &str) -> Result<ApiToken, String> {
    let token = text.trim();
    if token.is_empty() {
        return Err("an API token is empty".to_owned());
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("an API token holds white space or a control character".to_owned());
    }
    Ok(ApiToken(token.to_owned()))
}

/// A `RATE_LIMIT_PER_SECOND`: a finite number from 0 (off) to 1,000,000.
fn parse_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(rate) if rate.is_finite() && (0.0..=1_000_000.0).contains(&rate) => Ok(rate),
        _ => Err(format!(
            "{text:?} is not a number of requests per second from 0 (off) to 1000000"
        )),
    }
}

/// A `TRUSTED_PROXIES` entry: a CIDR block (`10.0.0.0/8`) or one address (`127.0.0.1`, `::1`).
fn parse_proxy(text: &str) -> Result<ipnet::IpNet, String> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{text:?} is neither an IP address nor a CIDR block"))
}

impl Config {
    /// Checks what no single setting shows.
    ///
    /// # Errors
    /// A message naming the setting: `CORS_ALLOWED_ORIGINS` with `*` beside other origins
    /// (which would silently allow every origin); `RATE_LIMIT_BURST` without a rate (it would
    /// limit nothing); both `API_TOKENS` and `API_TOKENS_FILE` (only one is read);
    /// `API_TOKENS_READ=true` without tokens (reads would stay open).
    pub fn check(&self) -> Result<(), String> {
        let origins = &self.cors_allowed_origins;
        if origins.len() > 1 && origins.iter().any(|origin| origin == "*") {
            return Err(
                "CORS_ALLOWED_ORIGINS: * allows every origin; give it alone, or list the origins"
                    .to_owned(),
            );
        }
        if self.rate_limit_burst.is_some() && self.rate_limit().is_none() {
            return Err(
                "RATE_LIMIT_BURST limits nothing without RATE_LIMIT_PER_SECOND above 0".to_owned(),
            );
        }
        if !self.api_tokens.is_empty() && self.api_tokens_file.is_some() {
            return Err("API_TOKENS and API_TOKENS_FILE: give one of them".to_owned());
        }
        if self.api_tokens_read && self.api_tokens.is_empty() && self.api_tokens_file.is_none() {
            return Err(
                "API_TOKENS_READ=true protects nothing without API_TOKENS or API_TOKENS_FILE"
                    .to_owned(),
            );
        }
        Ok(())
    }

    /// The rate limit, when on: (requests per second, burst). The burst defaults to the rate
    /// rounded up, at least 1.
    pub fn rate_limit(&self) -> Option<(f64, u32)> {
        let rate = self.rate_limit_per_second;
        (rate > 0.0).then(|| {
            let burst = self
                .rate_limit_burst
                .unwrap_or_else(|| (rate.ceil() as u32).max(1));
            (rate, burst)
        })
    }

    /// How long a request may wait for a pooled connection.
    pub fn pool_timeout(&self) -> Duration {
        Duration::from_millis(self.db_pool_timeout_ms)
    }

    /// How long an idempotency key's answer is kept.
    pub fn idempotency_ttl(&self) -> Duration {
        Duration::from_secs(self.idempotency_ttl_secs)
    }

    /// How long a client may take to send a request's head, and then its body.
    pub fn client_request_timeout(&self) -> Duration {
        Duration::from_millis(self.client_request_timeout_ms)
    }

    /// A client-side backstop for one database exchange, in time: a lock wait and two
    /// statements' worth, plus 2 s (27 s with the defaults, under the usual 30 s of load
    /// balancers). It only fires when the server stops answering (a network partition, a pooler
    /// waiting for a server that is down); then the request gets a 503 and the connection is
    /// closed.
    pub fn db_deadline(&self) -> Duration {
        Duration::from_millis(
            self.waits.lock_timeout_ms + self.waits.statement_timeout_ms * 2 + 2000,
        )
    }
}
