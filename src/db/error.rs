//! [`DbSetupError`]: what can stop the service from setting its database up.

use crate::db::embedded::EmbeddedPgError;

/// Errors of setting the database up: starting the embedded cluster, connecting, migrating,
/// checking the server.
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
    #[error(transparent)]
    Embedded(#[from] EmbeddedPgError),
    #[error("embedded database start-up task failed: {0}")]
    Task(String),
}
