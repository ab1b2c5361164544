//! What readiness checks of the server: the schema is current and the server takes writes.
//! (The start-up check of the advisory locks runs the write path's own statements:
//! `store::locks::check_enforced`.)

use diesel_async::AsyncPgConnection;

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
