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
    #[error("{}", crate::db::connect::POOLER_WITHOUT_PREPARED_STATEMENTS)]
    PoolerLosesPreparedStatements,
    #[error("cannot build the connection pool: {0}")]
    Pool(String),
    #[error(transparent)]
    Embedded(#[from] EmbeddedPgError),
    #[error("embedded database start-up task failed: {0}")]
    Task(String),
}
