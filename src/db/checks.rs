//! Checks of the server: at start-up, that prepared statements survive between transactions
//! (they do not behind some poolers); for readiness, that the schema is current and the server
//! takes writes. (The start-up check of the advisory locks runs the write path's own statements:
//! `store::locks::check_enforced`.)

use diesel_async::{AsyncPgConnection, RunQueryDsl as _, SimpleAsyncConnection as _};

use crate::db::connect::{
    DbConnection, POOLER_WITHOUT_PREPARED_STATEMENTS, connect_recording, loses_prepared_statements,
};
use crate::db::error::DbSetupError;
use crate::db::prepared::Prepared;

/// Statement name for diesel's statement cache.
struct BackendPidStatement;

#[derive(diesel::QueryableByName)]
struct BackendPid {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pid: i32,
}

/// Refuses a connection path on which a prepared statement does not survive from one
/// transaction to the next (PgBouncer before 1.21 in transaction pooling, or with
/// `max_prepared_statements = 0`): every statement of the service is prepared once per
/// connection and reused by name, so behind such a pooler requests would fail at random.
///
/// Two connections: the first prepares and runs a statement; the second opens a transaction
/// (behind a transaction pooler, that pins a server connection, most likely the one the first
/// just used); the first runs its statement again, by name, now on whatever server connection
/// it is given. Directly on PostgreSQL, or through a pooler that keeps prepared statements
/// (PgBouncer 1.21+ with `max_prepared_statements`, or `pool_mode = session`), both runs work.
/// Returns whether the two runs met different server processes (a transaction pooler).
///
/// # Errors
/// [`DbSetupError::PoolerLosesPreparedStatements`] naming the two fixes; the connection or
/// query error otherwise.
pub async fn check_prepared_statements(url: &str) -> Result<bool, DbSetupError> {
    let pooler = |error: diesel::ConnectionError| {
        if error
            .to_string()
            .contains(POOLER_WITHOUT_PREPARED_STATEMENTS)
        {
            DbSetupError::PoolerLosesPreparedStatements
        } else {
            DbSetupError::Connect(error)
        }
    };
    let mut first = connect_recording(url).await.map_err(pooler)?;
    let mut second = connect_recording(url).await.map_err(pooler)?;
    let before = backend_pid(&mut first).await?;
    second.batch_execute("BEGIN").await?;
    let pinned = backend_pid(&mut second).await;
    let after = backend_pid(&mut first).await;
    second.batch_execute("ROLLBACK").await?;
    pinned?;
    Ok(before != after?)
}

/// The server process of this connection's current transaction, by a prepared statement.
async fn backend_pid(conn: &mut DbConnection) -> Result<i32, DbSetupError> {
    conn.sqlstates().clear();
    let row: Result<BackendPid, _> =
        Prepared::<BackendPidStatement>::new("SELECT pg_catalog.pg_backend_pid() AS pid", vec![])
            .get_result(&mut **conn)
            .await;
    match row {
        Ok(row) => Ok(row.pid),
        Err(_)
            if conn
                .sqlstates()
                .first()
                .is_some_and(|c| loses_prepared_statements(&c)) =>
        {
            Err(DbSetupError::PoolerLosesPreparedStatements)
        }
        Err(e) => Err(e.into()),
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
    diesel::sql_query(
        "SELECT EXISTS (SELECT 1 FROM __diesel_schema_migrations WHERE version = $1) \
         AS migration_applied, \
         pg_catalog.current_setting('transaction_read_only') = 'on' AS read_only",
    )
    .bind::<diesel::sql_types::Text, _>(version)
    .get_result(conn)
    .await
}
