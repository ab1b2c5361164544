//! Checks of the server: at start-up, that what the locking design relies on is really there;
//! for readiness, that the schema is current and the server takes writes.

use diesel_async::AsyncPgConnection;

use crate::db::connect::connect;
use crate::db::error::DbSetupError;
use crate::db::migrations::MIGRATION_LOCK_KEY;

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

/// What readiness needs to know of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, diesel::QueryableByName)]
pub struct ServingState {
    /// The migration asked about is recorded as applied.
    #[diesel(sql_type = diesel::sql_types::Bool)]
    pub migration_applied: bool,
    /// Sessions are read-only: a hot standby, or `default_transaction_read_only = on`.
    #[diesel(sql_type = diesel::sql_types::Bool)]
    pub read_only: bool,
}

/// Reads the [`ServingState`], with `version` the migration that must be applied.
///
/// # Errors
/// The database error of the query.
pub async fn serving_state(
    conn: &mut AsyncPgConnection,
    version: &str,
) -> diesel::QueryResult<ServingState> {
    use diesel_async::RunQueryDsl as _;
    diesel::sql_query(
        "SELECT EXISTS (SELECT 1 FROM __diesel_schema_migrations WHERE version = $1) \
         AS migration_applied, \
         pg_catalog.current_setting('transaction_read_only') = 'on' AS read_only",
    )
    .bind::<diesel::sql_types::Text, _>(version)
    .get_result(conn)
    .await
}
