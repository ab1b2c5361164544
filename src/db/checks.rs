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

/// How many connections [`check_prepared_statements`] pins at most while it looks for the server
/// connection its first connection used.
const PIN_ATTEMPTS: usize = 4;

/// Longest wait of one of those connections for its transaction's server connection.
const PIN_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Refuses a connection path on which a prepared statement does not survive from one
/// transaction to the next (PgBouncer before 1.21 in transaction pooling, or with
/// `max_prepared_statements = 0`): every statement of the service is prepared once per
/// connection and reused by name, so behind such a pooler requests would fail at random.
///
/// A first connection prepares and runs a statement that reads its server process id. Further
/// connections then open transactions and read theirs, one after another, each keeping its
/// transaction open, until one of them holds the first's server process (behind a transaction
/// pooler, which hands a server connection back to whoever asks next) or 4 (`PIN_ATTEMPTS`) are
/// made. The others' transactions end, so that their server connections are free again; the
/// first then runs its statement again, by name, so on another server connection behind a
/// transaction pooler. Directly on PostgreSQL, or through a pooler that keeps prepared
/// statements (PgBouncer 1.21+ with `max_prepared_statements`, or `pool_mode = session`), that
/// works. A pooler may be slow to take a server connection back after a transaction, so the
/// second connection alone could miss it: this made the check pass now and then behind a
/// pooler that loses prepared statements, on a busy machine. Returns whether the two runs met
/// different server processes (a transaction pooler).
///
/// Behind a transaction pooler the check needs two server connections of the database's pool
/// (`default_pool_size`), and while it looks, up to 4.
///
/// # Errors
/// [`DbSetupError::PoolerLosesPreparedStatements`] naming the two fixes; the connection or
/// query error otherwise.
pub async fn check_prepared_statements(url: &str) -> Result<bool, DbSetupError> {
    let mut first = connect(url).await?;
    let before = backend_pid(&mut first).await?;
    let mut pinned = Vec::with_capacity(PIN_ATTEMPTS);
    let after = match pin_server_process(url, before, &mut pinned).await {
        Ok(on_before) => {
            // Only the connection on `before`'s server process stays in its transaction.
            let others = pinned.len() - usize::from(on_before);
            for conn in pinned.drain(..others) {
                end_transaction(conn).await?;
            }
            backend_pid(&mut first).await
        }
        Err(e) => Err(e),
    };
    // On an error, the connections still pinned are closed as they are dropped.
    let after = after?;
    for conn in pinned {
        end_transaction(conn).await?;
    }
    Ok(before != after)
}

/// Rolls back `conn`'s transaction and closes it.
async fn end_transaction(mut conn: DbConnection) -> Result<(), DbSetupError> {
    conn.batch_execute("ROLLBACK").await?;
    Ok(())
}

/// [`connect_recording`], with a pooler's refusal of a client's prepared statements (at
/// connection set-up) as [`DbSetupError::PoolerLosesPreparedStatements`].
async fn connect(url: &str) -> Result<DbConnection, DbSetupError> {
    connect_recording(url).await.map_err(|error| {
        if error
            .to_string()
            .contains(POOLER_WITHOUT_PREPARED_STATEMENTS)
        {
            DbSetupError::PoolerLosesPreparedStatements
        } else {
            DbSetupError::Connect(error)
        }
    })
}

/// Opens connections with a transaction open on each, into `pinned`, until one runs on server
/// process `pid` (then `true`: it is the last) or [`PIN_ATTEMPTS`] are open (`false`). A
/// connection that gets no server connection within [`PIN_WAIT`] (a pool that others use up,
/// such as instances starting together) ends the search (`false`): searching is for the
/// slowness of the pooler, and must not hold server connections that the others wait for.
async fn pin_server_process(
    url: &str,
    pid: i32,
    pinned: &mut Vec<DbConnection>,
) -> Result<bool, DbSetupError> {
    for _ in 0..PIN_ATTEMPTS {
        let pin = async {
            let mut conn = connect(url).await?;
            conn.batch_execute("BEGIN").await?;
            let pinned_pid = backend_pid(&mut conn).await;
            Ok::<_, DbSetupError>((conn, pinned_pid))
        };
        let Ok(pinned_now) = tokio::time::timeout(PIN_WAIT, pin).await else {
            return Ok(false);
        };
        let (conn, pinned_pid) = pinned_now?;
        pinned.push(conn);
        if pinned_pid? == pid {
            return Ok(true);
        }
    }
    Ok(false)
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
