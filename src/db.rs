//! Connections: the pool, the embedded migrations, and the start-up checks of the server.

use std::time::Duration;

use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use futures_util::FutureExt as _;

use crate::config::Config;

/// The migrations in `migrations/`, compiled into the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// The version of the newest embedded migration (what `/readyz` expects to find applied).
pub fn latest_migration_version() -> String {
    let migrations = diesel::migration::MigrationSource::<diesel::pg::Pg>::migrations(&MIGRATIONS)
        .unwrap_or_default();
    migrations
        .iter()
        .map(|m| m.name().version().to_string())
        .max()
        .unwrap_or_default()
}

/// The pool of connections every request draws from.
pub type DbPool = Pool<AsyncPgConnection>;

/// Session-level advisory lock held while migrating, so instances starting together take turns.
/// (A constant outside the range `product_lock_key` is likely to hit is not needed: a collision
/// would only make one upsert wait for a migration.)
const MIGRATION_LOCK_KEY: i64 = 0x7072_6f64_7563_7473; // "products"

/// Longest time to establish a new connection before the request gets a 503.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors of start-up.
#[derive(Debug, thiserror::Error)]
pub enum DbSetupError {
    #[error("cannot connect to the database: {0}")]
    Connect(#[from] diesel::ConnectionError),
    #[error("database query failed: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error(
        "this database does not enforce advisory locks (a second session took a lock the first \
         held); product-service relies on them to avoid duplicates and refuses to run on it"
    )]
    AdvisoryLocksNotEnforced,
    #[error("cannot build the connection pool: {0}")]
    Pool(String),
}

/// Opens one connection, asking for untranslated server messages where the role may.
///
/// `lc_messages = 'C'` keeps error texts in English so that timeouts can be told apart (diesel
/// hides the SQLSTATE; see `error::classify_database_error`). A role that may not change it keeps
/// the server's setting.
pub async fn connect(url: &str) -> Result<AsyncPgConnection, diesel::ConnectionError> {
    let mut conn = AsyncPgConnection::establish(url).await?;
    if conn.batch_execute("SET lc_messages TO 'C'").await.is_err() {
        log::debug!("could not set lc_messages; keeping the server's language for messages");
    }
    Ok(conn)
}

/// Builds the pool with bounded waits: for a free slot, and for a new connection.
pub fn build_pool(url: &str, config: &Config) -> Result<DbPool, DbSetupError> {
    let mut manager_config = ManagerConfig::default();
    manager_config.custom_setup = Box::new(|url| connect(url).boxed());
    // Only check for an open transaction on return, not a test query per checkout: callers
    // discard a connection that failed (see `AppState::with_conn`).
    manager_config.recycling_method = RecyclingMethod::Fast;
    let manager =
        AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, manager_config);
    Pool::builder(manager)
        .max_size(config.db_pool_size as usize)
        .wait_timeout(Some(config.pool_timeout()))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .recycle_timeout(Some(CONNECT_TIMEOUT))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .map_err(|e| DbSetupError::Pool(e.to_string()))
}

/// Runs every pending embedded migration, under a session advisory lock of its own.
///
/// Runs on a blocking thread through `AsyncConnectionWrapper` (diesel's migration harness is
/// synchronous), so it works from any async runtime.
pub async fn run_migrations(url: &str) -> Result<Vec<String>, DbSetupError> {
    let conn = connect(url).await?;
    tokio::task::spawn_blocking(move || {
        let mut conn: AsyncConnectionWrapper<AsyncPgConnection> =
            AsyncConnectionWrapper::from(conn);
        let lock = diesel::sql_query("SELECT pg_advisory_lock($1)")
            .bind::<diesel::sql_types::BigInt, _>(MIGRATION_LOCK_KEY);
        diesel::RunQueryDsl::execute(lock, &mut conn)?;
        let applied = conn
            .run_pending_migrations(MIGRATIONS)
            .map(|versions| versions.iter().map(ToString::to_string).collect::<Vec<_>>())
            .map_err(|e| DbSetupError::Migration(e.to_string()));
        // Closing the connection would release the lock too; unlocking says so explicitly.
        let unlock = diesel::sql_query("SELECT pg_advisory_unlock($1)")
            .bind::<diesel::sql_types::BigInt, _>(MIGRATION_LOCK_KEY);
        diesel::RunQueryDsl::execute(unlock, &mut conn)?;
        applied
    })
    .await
    .map_err(|e| DbSetupError::Migration(format!("migration thread failed: {e}")))?
}

/// Refuses servers that accept advisory-lock calls without enforcing them (some
/// PostgreSQL-compatible databases do): two sessions must not hold one lock at once.
pub async fn check_advisory_locks(url: &str) -> Result<(), DbSetupError> {
    #[derive(diesel::QueryableByName)]
    struct Granted {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        granted: bool,
    }
    // A key of this process's own, so that instances starting together do not see each other.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let key = MIGRATION_LOCK_KEY ^ (i64::from(std::process::id()) << 32) ^ i64::from(nanos);
    async fn try_lock(
        conn: &mut AsyncPgConnection,
        key: i64,
    ) -> Result<bool, diesel::result::Error> {
        use diesel_async::RunQueryDsl as _;
        let row: Granted = diesel::sql_query("SELECT pg_try_advisory_lock($1) AS granted")
            .bind::<diesel::sql_types::BigInt, _>(key)
            .get_result(conn)
            .await?;
        Ok(row.granted)
    }
    let mut first = connect(url).await?;
    let mut second = connect(url).await?;
    let first_got_it = try_lock(&mut first, key).await?;
    let second_got_it = try_lock(&mut second, key).await?;
    // Both connections close here, releasing whatever they hold.
    if first_got_it && !second_got_it {
        Ok(())
    } else {
        Err(DbSetupError::AdvisoryLocksNotEnforced)
    }
}
