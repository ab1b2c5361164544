//! Building and running the application: the one way both the binary and the tests do it.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, middleware, web};
use deadpool::managed::Object;
use diesel_async::AsyncPgConnection;

use crate::config::Config;
use crate::db::{self, DbPool, DbSetupError};
use crate::embedded_pg::{self, Durability, EmbeddedPgError, EmbeddedPostgres};
use crate::error::{ApiError, Unavailable, classify_database_error};
use crate::group_commit::GroupCommit;
use crate::key_gate::KeyGate;
use crate::metrics::{DbErrorKind, Metrics};
use crate::routes;
use crate::store::{self, StoreError, TxSettings};

/// Errors of start-up.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    EmbeddedPostgres(#[from] EmbeddedPgError),
    #[error(transparent)]
    Database(#[from] DbSetupError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("embedded database start-up task failed: {0}")]
    Task(String),
}

/// What every handler shares: the pool and the settings. Passed explicitly, never global.
#[derive(Clone)]
pub struct AppState {
    pub pool: DbPool,
    pub settings: TxSettings,
    pub metrics: Metrics,
    pub key_gate: Arc<KeyGate>,
    /// The group-commit queue, when `GROUP_COMMIT` is on.
    pub group_commit: Option<GroupCommit>,
    pub max_body_bytes: u64,
    db_deadline: Duration,
}

impl AppState {
    /// Runs `work` on a pooled connection, mapping every database fault to an [`ApiError`].
    ///
    /// The pool wait is bounded by `DB_POOL_TIMEOUT_MS`; the work by the server-side timeouts and,
    /// should the server stop answering altogether, by a client-side deadline after which the
    /// connection is closed (never returned to the pool, as it may be inside a transaction).
    pub async fn with_conn<T>(
        &self,
        work: impl AsyncFnOnce(&mut AsyncPgConnection) -> Result<T, StoreError>,
    ) -> Result<T, ApiError> {
        let mut conn = match self.pool.get().await {
            Ok(conn) => conn,
            Err(e) => return Err(self.count_db_error(pool_error(e))),
        };
        match tokio::time::timeout(self.db_deadline, work(&mut conn)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e @ StoreError::Database(_))) => {
                let error = ApiError::from(e);
                if matches!(
                    error,
                    ApiError::Unavailable(Unavailable::Connection | Unavailable::Transient)
                ) {
                    // Recycling does not test connections (it would cost a round trip per
                    // request), so one that broke must not go back to the pool, nor its idle
                    // siblings, which a server restart broke too.
                    drop(Object::take(conn));
                    self.pool.retain(|_, _| false);
                }
                Err(self.count_db_error(error))
            }
            Ok(Err(e)) => Err(ApiError::from(e)),
            Err(_) => {
                drop(Object::take(conn));
                log::error!(
                    "database did not answer within {:?}; connection closed",
                    self.db_deadline
                );
                Err(self.count_db_error(ApiError::Unavailable(Unavailable::StatementTimeout)))
            }
        }
    }

    /// Counts a database fault in the metrics and hands it back.
    pub fn count_db_error(&self, error: ApiError) -> ApiError {
        match &error {
            ApiError::Unavailable(Unavailable::PoolTimeout) => self.metrics.count_pool_timeout(),
            ApiError::Unavailable(why) => self.metrics.count_db_error(DbErrorKind::from(*why)),
            ApiError::Internal(_) => self.metrics.count_db_error(DbErrorKind::Other),
            _ => {}
        }
        error
    }
}

fn pool_error(
    error: deadpool::managed::PoolError<diesel_async::pooled_connection::PoolError>,
) -> ApiError {
    use deadpool::managed::{PoolError, TimeoutType};
    use diesel_async::pooled_connection::PoolError as Backend;
    match error {
        PoolError::Timeout(TimeoutType::Wait) => ApiError::Unavailable(Unavailable::PoolTimeout),
        PoolError::Timeout(_) => ApiError::Unavailable(Unavailable::Connection),
        PoolError::Backend(Backend::ConnectionError(e)) => {
            log::warn!("cannot connect to the database: {e}");
            ApiError::Unavailable(Unavailable::Connection)
        }
        PoolError::Backend(Backend::QueryError(e)) => {
            ApiError::Unavailable(classify_database_error(&e).unwrap_or(Unavailable::Connection))
        }
        other => ApiError::Internal(format!("connection pool: {other}")),
    }
}

/// A built application: listening, migrated, ready to run.
pub struct Application {
    port: u16,
    server: Server,
    metrics_port: Option<u16>,
    metrics_server: Option<Server>,
    duplicate_scan: Option<tokio::task::JoinHandle<()>>,
    embedded: Option<EmbeddedPostgres>,
}

impl Application {
    /// Starts the embedded database if no `DATABASE_URL` is set, runs the migrations, checks that
    /// the server enforces advisory locks, builds the pool and binds the listener (port 0 picks
    /// a free port).
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        let (url, embedded) = open_database(&config).await?;
        let applied = db::run_migrations(&url).await?;
        if !applied.is_empty() {
            log::info!("applied migrations: {}", applied.join(", "));
        }
        db::check_advisory_locks(&url).await?;
        let pool = db::build_pool(&url, &config)?;

        let metrics = Metrics::new();
        let mut state = AppState {
            pool: pool.clone(),
            settings: TxSettings::from(&config),
            metrics: metrics.clone(),
            key_gate: Arc::default(),
            group_commit: None,
            max_body_bytes: config.max_body_bytes,
            db_deadline: config.db_deadline(),
        };
        if config.group_commit {
            state.group_commit = Some(GroupCommit::start(
                state.clone(),
                config.group_commit_workers as usize,
                config.group_commit_max_batch as usize,
            ));
        }
        let data = web::Data::new(state);

        let (listener, port) = bind(config.bind_addr)?;
        let metrics_on_public_port = config.metrics_addr.is_none();
        let app_data = data.clone();
        let mut server = HttpServer::new(move || {
            let app = App::new()
                .wrap(middleware::from_fn(crate::middleware::observe))
                .app_data(app_data.clone())
                .configure(routes::configure);
            if metrics_on_public_port {
                app.configure(routes::configure_metrics)
            } else {
                app
            }
        })
        .listen(listener)
        .map_err(|source| StartupError::Bind {
            addr: config.bind_addr,
            source,
        })?;
        if let Some(workers) = config.http_workers {
            server = server.workers(workers as usize);
        }
        log::info!("listening on http://{}:{port}", config.bind_addr.ip());

        let (metrics_server, metrics_port) = match config.metrics_addr {
            None => (None, None),
            Some(addr) => {
                let (listener, metrics_port) = bind(addr)?;
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(data.clone())
                        .configure(routes::configure_metrics)
                        .default_service(web::to(|| async {
                            Err::<actix_web::HttpResponse, _>(ApiError::RouteNotFound)
                        }))
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
        let duplicate_scan = (config.duplicate_scan_interval_secs > 0).then(|| {
            let interval = Duration::from_secs(config.duplicate_scan_interval_secs);
            tokio::spawn(scan_for_duplicates(pool, metrics, interval))
        });
        Ok(Self {
            port,
            server: server.run(),
            metrics_port,
            metrics_server,
            duplicate_scan,
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
        close_database(self.embedded).await;
        result
    }
}

fn bind(addr: std::net::SocketAddr) -> Result<(TcpListener, u16), StartupError> {
    let listener = TcpListener::bind(addr).map_err(|source| StartupError::Bind { addr, source })?;
    let port = listener
        .local_addr()
        .map_err(|source| StartupError::Bind { addr, source })?
        .port();
    Ok((listener, port))
}

/// Counts keys with more than one row every `interval`, for `product_duplicate_key_groups`.
async fn scan_for_duplicates(pool: DbPool, metrics: Metrics, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    loop {
        ticks.tick().await;
        let groups = match pool.get().await {
            Ok(mut conn) => store::duplicate_key_groups(&mut conn)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match groups {
            Ok(groups) => {
                if groups > 0 {
                    log::warn!(
                        "{groups} keys have more than one row; see `product-service dedupe`"
                    );
                }
                metrics.set_duplicate_groups(groups);
            }
            Err(e) => log::warn!("duplicate scan failed: {e}"),
        }
    }
}

/// `product-service migrate`: applies pending migrations (starting and stopping the embedded
/// database if no `DATABASE_URL` is set) and returns the versions applied.
pub async fn migrate_only(config: &Config) -> Result<Vec<String>, StartupError> {
    let (url, embedded) = open_database(config).await?;
    let applied = db::run_migrations(&url).await;
    close_database(embedded).await;
    Ok(applied?)
}

/// Stops the embedded cluster, if this command started one.
pub async fn close_database(embedded: Option<EmbeddedPostgres>) {
    if let Some(mut embedded) = embedded {
        tokio::task::spawn_blocking(move || embedded.stop())
            .await
            .ok();
    }
}

/// The database URL: `DATABASE_URL`, or the embedded cluster, started (or reused) here.
pub async fn open_database(
    config: &Config,
) -> Result<(String, Option<EmbeddedPostgres>), StartupError> {
    // An empty DATABASE_URL (`DATABASE_URL= cargo run`) means unset, as in most tools.
    if let Some(url) = config
        .database_url
        .as_deref()
        .filter(|url| !url.trim().is_empty())
    {
        return Ok((url.to_owned(), None));
    }
    let data_dir = config.data_dir.clone();
    let embedded = tokio::task::spawn_blocking(move || {
        EmbeddedPostgres::start(&data_dir, Durability::Durable)
    })
    .await
    .map_err(|e| StartupError::Task(e.to_string()))??;
    embedded.ensure_database(embedded_pg::DATABASE_NAME).await?;
    log::info!(
        "embedded PostgreSQL: data in {}; connect with: {}",
        embedded.data_dir().display(),
        embedded.psql_command(embedded_pg::DATABASE_NAME)
    );
    Ok((embedded.url(embedded_pg::DATABASE_NAME), Some(embedded)))
}
