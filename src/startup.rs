//! Building and running the application: the one way both the binary and the tests do it.

use std::net::TcpListener;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, middleware, web};
use deadpool::managed::Object;
use diesel_async::AsyncPgConnection;

use crate::config::Config;
use crate::db::{self, DbPool, DbSetupError};
use crate::embedded_pg::{self, Durability, EmbeddedPgError, EmbeddedPostgres};
use crate::error::{ApiError, Unavailable, classify_database_error};
use crate::routes;
use crate::store::{StoreError, TxSettings};

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
        let mut conn = self.pool.get().await.map_err(pool_error)?;
        match tokio::time::timeout(self.db_deadline, work(&mut conn)).await {
            Ok(result) => result.map_err(ApiError::from),
            Err(_) => {
                drop(Object::take(conn));
                log::error!(
                    "database did not answer within {:?}; connection closed",
                    self.db_deadline
                );
                Err(ApiError::Unavailable(Unavailable::StatementTimeout))
            }
        }
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
    embedded: Option<EmbeddedPostgres>,
}

impl Application {
    /// Starts the embedded database if no `DATABASE_URL` is set, runs the migrations, checks that
    /// the server enforces advisory locks, builds the pool and binds the listener (port 0 picks
    /// a free port).
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        let (url, embedded) = database(&config).await?;
        let applied = db::run_migrations(&url).await?;
        if !applied.is_empty() {
            log::info!("applied migrations: {}", applied.join(", "));
        }
        db::check_advisory_locks(&url).await?;
        let pool = db::build_pool(&url, &config)?;

        let listener =
            TcpListener::bind(config.bind_addr).map_err(|source| StartupError::Bind {
                addr: config.bind_addr,
                source,
            })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartupError::Bind {
                addr: config.bind_addr,
                source,
            })?
            .port();
        let state = AppState {
            pool,
            settings: TxSettings::from(&config),
            max_body_bytes: config.max_body_bytes,
            db_deadline: config.db_deadline(),
        };
        let data = web::Data::new(state);
        let mut server = HttpServer::new(move || {
            App::new()
                .wrap(middleware::Logger::new(r#"%a "%r" %s %b %Dms"#))
                .app_data(data.clone())
                .configure(routes::configure)
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
        Ok(Self {
            port,
            server: server.run(),
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

    /// Serves until SIGINT or SIGTERM, then stops the embedded database, if any, cleanly.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        if let Some(mut embedded) = self.embedded {
            tokio::task::spawn_blocking(move || embedded.stop())
                .await
                .ok();
        }
        result
    }
}

/// `product-service migrate`: applies pending migrations (starting and stopping the embedded
/// database if no `DATABASE_URL` is set) and returns the versions applied.
pub async fn migrate_only(config: &Config) -> Result<Vec<String>, StartupError> {
    let (url, embedded) = database(config).await?;
    let applied = db::run_migrations(&url).await;
    if let Some(mut embedded) = embedded {
        tokio::task::spawn_blocking(move || embedded.stop())
            .await
            .ok();
    }
    Ok(applied?)
}

/// The database URL: `DATABASE_URL`, or the embedded cluster, started here.
async fn database(config: &Config) -> Result<(String, Option<EmbeddedPostgres>), StartupError> {
    if let Some(url) = &config.database_url {
        return Ok((url.clone(), None));
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
