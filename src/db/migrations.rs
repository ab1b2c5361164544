//! The embedded migrations, and running them.

use diesel::sql_types::BigInt;
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::db::connect::connect;
use crate::db::error::DbSetupError;

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

/// Advisory lock held by the migrating transaction, so instances starting together take turns.
/// (A constant outside the range `product_lock_key` is likely to hit is not needed: a collision
/// would only make one upsert wait for a migration.)
const MIGRATION_LOCK_KEY: i64 = 0x7072_6f64_7563_7473; // "products"

/// Runs every pending embedded migration, all in one transaction that first takes a
/// transaction-level advisory lock of its own: instances starting together take turns, the lock
/// ends with the transaction (nothing session-scoped is left held, even behind a
/// transaction-pooling PgBouncer), and a failed migration leaves nothing half done. (So a
/// migration must be transactional: no `CREATE INDEX CONCURRENTLY`.)
///
/// Runs on a blocking thread through `AsyncConnectionWrapper` (diesel's migration harness is
/// synchronous), so it works from any async runtime.
///
/// # Errors
/// [`DbSetupError::Connect`], [`DbSetupError::Query`] or [`DbSetupError::Migration`]; nothing
/// is applied then.
pub async fn run_migrations(url: &str) -> Result<Vec<String>, DbSetupError> {
    use diesel::Connection as _;
    let conn = connect(url).await?;
    tokio::task::spawn_blocking(move || {
        let mut conn: AsyncConnectionWrapper<AsyncPgConnection> =
            AsyncConnectionWrapper::from(conn);
        conn.transaction(|conn| {
            let lock = diesel::sql_query("SELECT pg_catalog.pg_advisory_xact_lock($1)")
                .bind::<BigInt, _>(MIGRATION_LOCK_KEY);
            diesel::RunQueryDsl::execute(lock, conn)?;
            conn.run_pending_migrations(MIGRATIONS)
                .map(|versions| versions.iter().map(ToString::to_string).collect::<Vec<_>>())
                .map_err(|e| DbSetupError::Migration(e.to_string()))
        })
    })
    .await
    .map_err(|e| DbSetupError::Migration(format!("migration thread failed: {e}")))?
}
