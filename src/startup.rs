//! Building and running the application: the composition root, and the one way both the binary
//! and the tests do it.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::http::KeepAlive;
use actix_web::{App, HttpServer, middleware, web};

use crate::config::Config;
use crate::db::embedded::EmbeddedPostgres;
use crate::db::{self, DbSetupError};
use crate::http::rate_limit::{self, ClientLimiter, MAX_CLIENTS};
use crate::http::{self, AppState};
use crate::service::{ProductService, duplicate_scan, idempotency_cleanup};
use crate::store::{self, locks::LockCheckError};
use crate::telemetry::metrics::Metrics;

/// Longest time the checks of the server at start may take in all (prepared statements,
/// advisory locks), beyond three connection attempts ([`db::connect::connect_budget`]: the
/// checks open three connections that must succeed); they take well under a second when the
/// server has connections to spare.
pub const STARTUP_CHECKS_SLACK: Duration = Duration::from_secs(30);

/// Longest time one round of those checks may take beyond one connection attempt, before it
/// lets go of its connections and tries again (after a random pause): instances starting
/// together behind a small pool could otherwise each hold one server connection and wait for
/// another.
pub const STARTUP_CHECK_ROUND_SLACK: Duration = Duration::from_secs(3);

/// The checks of the server that must pass before anything is migrated: prepared statements
/// survive between transactions, advisory locks are enforced. Each round is bounded; a round
/// that runs out, or whose connection attempt times out (a pooler's pool used up, by instances
/// starting together say), is tried again after a random pause of up to 1, 2, then 4 s, until
/// [`STARTUP_CHECKS_SLACK`] beyond three connection attempts has passed: behind a pooler whose
/// pool is used up for good, a check would otherwise wait as long as the pooler lets it
/// (PgBouncer: `query_wait_timeout`, 120 s).
///
/// # Errors
/// As [`db::checks::check_prepared_statements`] and [`store::locks::check_enforced`];
/// [`StartupError::ChecksTimedOut`] when no round ended in time.
async fn run_startup_checks(url: &str) -> Result<(), StartupError> {
    let budget = db::connect::connect_budget(url);
    let limit = STARTUP_CHECKS_SLACK + budget * 3;
    let round_limit = STARTUP_CHECK_ROUND_SLACK + budget;
    let rounds = async {
        let mut pause_ms: u64 = 1_000;
        loop {
            let round = async {
                if db::checks::check_prepared_statements(url).await? {
                    log::info!("transaction pooling detected; prepared statements survive it");
                }
                store::locks::check_enforced(url).await?;
                Ok::<_, StartupError>(())
            };
            match tokio::time::timeout(round_limit, round).await {
                // A connection that found no free server connection behind a pooler: as above.
                Ok(Err(
                    StartupError::Database(DbSetupError::Connect(e))
                    | StartupError::Locks(LockCheckError::Connect(e)),
                )) if db::connect::timed_out(&e) => {}
                Ok(checked) => return checked,
                Err(_) => {}
            }
            let pause = Duration::from_millis(rand::random_range(0..pause_ms));
            log::warn!(
                "the start-up checks got no server connection in time (a pooler's pool used \
                 up, by instances starting together?); trying again in {pause:?}"
            );
            tokio::time::sleep(pause).await;
            pause_ms = (pause_ms * 2).min(4_000);
        }
    };
    tokio::time::timeout(limit, rounds)
        .await
        .map_err(|_| StartupError::ChecksTimedOut(limit))?
}

/// Errors of start-up.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Database(#[from] DbSetupError),
    #[error(transparent)]
    Locks(#[from] LockCheckError),
    /// The checks of the server at start did not end within the time given
    /// ([`STARTUP_CHECKS_SLACK`] beyond three connection attempts), in any round.
    #[error(
        "the start-up checks of the database did not end within {0:?}: behind PgBouncer, this \
         database's pool (default_pool_size) is too small or used up by other clients; the \
         checks need 2 server connections at once"
    )]
    ChecksTimedOut(std::time::Duration),
    #[error("cannot watch for SIGHUP (to re-read API_TOKENS_FILE): {0}")]
    Signal(std::io::Error),
    #[error("cannot watch for SIGUSR1 (a full duplicate scan on demand): {0}")]
    ScanSignal(std::io::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// A built application: listening, migrated, ready to run.
pub struct Application {
    port: u16,
    server: Server,
    metrics_port: Option<u16>,
    metrics_server: Option<Server>,
    duplicate_scan: Option<tokio::task::JoinHandle<()>>,
    idempotency_cleanup: tokio::task::JoinHandle<()>,
    /// The rate limiter's clean-up and the SIGHUP watch, when on.
    background: Vec<tokio::task::JoinHandle<()>>,
    embedded: Option<EmbeddedPostgres>,
}

impl Application {
    /// Starts the embedded database if no `DATABASE_URL` is set, runs the migrations, checks that
    /// the server enforces advisory locks, builds the pool and binds the listener (port 0 picks
    /// a free port).
    ///
    /// # Errors
    /// [`StartupError::Config`] when settings contradict each other, or `API_TOKENS_FILE`
    /// cannot be read or holds no token;
    /// [`StartupError::Signal`] when SIGHUP cannot be watched for, [`StartupError::ScanSignal`]
    /// when SIGUSR1 cannot (with the duplicate scan on);
    /// [`StartupError::Database`] when the database cannot be opened or migrated;
    /// [`StartupError::Locks`] when its advisory locks cannot be trusted;
    /// [`StartupError::ChecksTimedOut`] when those checks do not end in time (30 s beyond three
    /// connection attempts: 45 s with one host and the default 5-s connect timeout);
    /// [`StartupError::Bind`] when an address cannot be listened on.
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        config.check().map_err(StartupError::Config)?;
        // Before the database, so that a wrong tokens file stops the start at once.
        let api_tokens = http::auth::ApiTokens::from_config(&config)
            .map_err(StartupError::Config)?
            .map(Arc::new);
        let (url, embedded) = db::open(&config).await?;
        // Before the migrations, so that a server that cannot be trusted is left untouched.
        run_startup_checks(&url).await?;
        let applied = db::migrations::run_migrations(&url).await?;
        if !applied.is_empty() {
            log::info!("applied migrations: {}", applied.join(", "));
        }
        let pool = db::pool::build_pool(&url, &config)?;

        let metrics = Metrics::new();
        let data = web::Data::new(AppState {
            service: ProductService::start(pool.clone(), &config, metrics.clone()),
            metrics: metrics.clone(),
            max_body_bytes: config.max_body_bytes,
            batch_max_body_bytes: config.batch_max_body_bytes,
            batch_max_items: config.batch_max_items as usize,
            body_timeout: config.client_request_timeout(),
            trusted_proxies: config.trusted_proxies.clone(),
            require_if_match: config.require_if_match,
        });

        let mut background = Vec::new();
        // SIGHUP re-reads API_TOKENS_FILE, and is ignored without one (never the default: exit).
        let reload =
            http::auth::reload_on_hangup(api_tokens.clone()).map_err(StartupError::Signal)?;
        background.push(tokio::spawn(reload));
        let token_check = api_tokens
            .map(|tokens| -> Result<_, StartupError> {
                if let Some(file) = tokens.file() {
                    log::info!(
                        "API tokens: {} from {} (re-read on SIGHUP)",
                        tokens.len(),
                        file.display()
                    );
                } else {
                    log::info!("API tokens: {} from API_TOKENS", tokens.len());
                }
                Ok(web::Data::new(http::auth::TokenCheck {
                    tokens,
                    reads: config.api_tokens_read,
                    metrics: metrics.clone(),
                }))
            })
            .transpose()?;
        let rate_limit = config.rate_limit().map(|(per_second, burst)| {
            let limiter = Arc::new(ClientLimiter::new(per_second, burst, MAX_CLIENTS));
            background.push(tokio::spawn(rate_limit::clean_up_periodically(
                Arc::clone(&limiter),
                metrics.clone(),
            )));
            log::info!("rate limit: {per_second} requests a second per client, bursts of {burst}");
            web::Data::new(rate_limit::RateLimit {
                limiter,
                trusted_proxies: config.trusted_proxies.clone(),
                metrics: metrics.clone(),
            })
        });

        let (listener, port) = bind(config.bind_addr)?;
        let metrics_on_public_port = config.metrics_addr.is_none();
        let app_data = data.clone();
        let cors_origins = config.cors_allowed_origins.clone();
        let request_metrics = metrics.clone();
        let mut server = HttpServer::new(move || {
            // The last wrapped runs first: observe (request id, access log, metrics), CORS
            // (preflights answered here, without a token or a limit), the chunked-body guard
            // (so that early 401s and 429s close as other early answers do), the rate limit
            // (by token when valid, so before the token check, which it also limits), the
            // token check, then the routes. A layer that is off is left out (`Condition`), so
            // requests do not pay for it.
            let mut app = App::new()
                .wrap(middleware::Condition::new(
                    token_check.is_some(),
                    middleware::from_fn(http::auth::require_token),
                ))
                .wrap(middleware::Condition::new(
                    rate_limit.is_some(),
                    middleware::from_fn(rate_limit::limit),
                ))
                .wrap(middleware::from_fn(
                    http::middleware::close_after_unread_chunked_body,
                ))
                .wrap(http::cors::middleware(&cors_origins))
                .wrap(middleware::from_fn(http::middleware::observe))
                .app_data(app_data.clone())
                // One per worker, as this closure runs once per worker.
                .app_data(request_metrics.request_counter());
            if let Some(check) = &token_check {
                app = app.app_data(check.clone());
            }
            if let Some(limit) = &rate_limit {
                app = app.app_data(limit.clone());
            }
            let app = app.configure(http::routes::configure);
            if metrics_on_public_port {
                app.configure(http::routes::configure_metrics)
            } else {
                app
            }
        })
        .client_request_timeout(config.client_request_timeout())
        .keep_alive(match config.keep_alive_secs {
            0 => KeepAlive::Disabled,
            secs => KeepAlive::Timeout(Duration::from_secs(secs)),
        })
        .listen(listener)
        .map_err(|source| StartupError::Bind {
            addr: config.bind_addr,
            source,
        })?;
        // actix-web counts connections per worker: share MAX_CONNECTIONS out over them.
        let workers = config
            .http_workers
            .map_or_else(default_http_workers, |n| n as usize);
        server = server
            .workers(workers)
            .max_connections((config.max_connections as usize).div_ceil(workers));
        log::info!("listening on http://{}:{port}", config.bind_addr.ip());

        let (metrics_server, metrics_port) = match config.metrics_addr {
            None => (None, None),
            Some(addr) => {
                let (listener, metrics_port) = bind(addr)?;
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(data.clone())
                        .configure(http::routes::configure_metrics_listener)
                })
                .workers(1)
                .disable_signals()
                .listen(listener)
                .map_err(|source| StartupError::Bind { addr, source })?
                .run();
                log::info!("serving /metrics on http://{}:{metrics_port}", addr.ip());
                (Some(server), Some(metrics_port))
            }
        };
        // Expired idempotency keys go within a minute (sooner when they live less).
        let idempotency_cleanup = tokio::spawn(idempotency_cleanup::run(
            pool.clone(),
            config.idempotency_ttl().min(Duration::from_secs(60)),
        ));
        let duplicate_scan = if config.duplicate_scan_interval_secs > 0 {
            let schedule = duplicate_scan::ScanSchedule {
                interval: Duration::from_secs(config.duplicate_scan_interval_secs),
                full_interval: (config.duplicate_full_scan_interval_secs > 0)
                    .then(|| Duration::from_secs(config.duplicate_full_scan_interval_secs)),
            };
            // SIGUSR1 asks for a full scan (its default action would end the process).
            let full_requests =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
                    .map_err(StartupError::ScanSignal)?;
            Some(tokio::spawn(duplicate_scan::run(
                pool,
                metrics,
                schedule,
                full_requests,
            )))
        } else {
            None
        };
        Ok(Self {
            port,
            server: server.run(),
            metrics_port,
            metrics_server,
            duplicate_scan,
            idempotency_cleanup,
            background,
            embedded,
        })
    }

    /// A handle that stops the server.
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of the separate metrics listener, when `METRICS_ADDR` is set.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_port
    }

    /// Serves until SIGINT or SIGTERM, then stops the embedded database, if any, cleanly.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let metrics_handle = self.metrics_server.as_ref().map(Server::handle);
        if let Some(metrics_server) = self.metrics_server {
            tokio::spawn(metrics_server);
        }
        let result = self.server.await;
        if let Some(handle) = metrics_handle {
            handle.stop(true).await;
        }
        if let Some(scan) = self.duplicate_scan {
            scan.abort();
        }
        self.idempotency_cleanup.abort();
        for task in self.background {
            task.abort();
        }
        db::close(self.embedded).await;
        result
    }
}

/// The HTTP workers when `HTTP_WORKERS` is unset: one per core but one, at least one. The main
/// thread is busy too (the group-commit committers and the database connections they open
/// run there), so one worker per core would keep one more thread busy than there are cores:
/// on 2 cores, 2 workers cost 10-20 % more CPU per request than 1 (more threads going to sleep
/// and being woken), for no more throughput (BENCHMARKS.md, "Service CPU per request").
fn default_http_workers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, usize::from)
        .saturating_sub(1)
        .max(1)
}

fn bind(addr: std::net::SocketAddr) -> Result<(TcpListener, u16), StartupError> {
    let listener = TcpListener::bind(addr).map_err(|source| StartupError::Bind { addr, source })?;
    let port = listener
        .local_addr()
        .map_err(|source| StartupError::Bind { addr, source })?
        .port();
    Ok((listener, port))
}

/// `product-service migrate`: applies pending migrations (starting and stopping the embedded
/// database if no `DATABASE_URL` is set) and returns the versions applied.
///
/// # Errors
/// [`StartupError::Database`] when the database cannot be opened or a migration fails.
pub async fn migrate_only(config: &Config) -> Result<Vec<String>, StartupError> {
    let (url, embedded) = db::open(config).await?;
    let applied = db::migrations::run_migrations(&url).await;
    db::close(embedded).await;
    Ok(applied?)
}
