//! The database: which one (`DATABASE_URL` or the embedded cluster), connections and the pool,
//! migrations, start-up checks of the server, the generated schema, and the one classification
//! of database failures ([`fault`]).

pub mod checks;
pub mod connect;
pub mod embedded;
pub mod error;
pub mod fault;
pub mod migrations;
pub mod pool;
pub mod prepared;
/// The `products` table, as `diesel print-schema` writes it (generated: do not edit).
pub mod schema;
pub mod sqlstate;

pub use connect::connect;
pub use error::DbSetupError;
pub use fault::DbFault;
pub use pool::{DbPool, PooledConnection};

use crate::config::Config;
use embedded::{DATABASE_NAME, Durability, EmbeddedPostgres};

/// The database URL: `DATABASE_URL`, or the embedded cluster, started (or reused) here; the
/// cluster, if any, runs until passed to [`close`].
///
/// # Errors
/// [`DbSetupError::Embedded`] when the embedded cluster cannot start or its database cannot be
/// created.
pub async fn open(config: &Config) -> Result<(String, Option<EmbeddedPostgres>), DbSetupError> {
    // An empty DATABASE_URL (`DATABASE_URL= cargo run`) means unset, as in most tools.
    if let Some(url) = config
        .common
        .database_url
        .as_deref()
        .filter(|url| !url.trim().is_empty())
    {
        return Ok((url.to_owned(), None));
    }
    let data_dir = config.common.data_dir.clone();
    let embedded = tokio::task::spawn_blocking(move || {
        EmbeddedPostgres::start(&data_dir, Durability::Durable)
    })
    .await
    .map_err(|e| DbSetupError::Task(e.to_string()))??;
    embedded.ensure_database(DATABASE_NAME).await?;
    log::info!(
        "embedded PostgreSQL: data in {}; connect with: {}",
        embedded.data_dir().display(),
        embedded.psql_command(DATABASE_NAME)
    );
    Ok((embedded.url(DATABASE_NAME), Some(embedded)))
}

/// Stops the embedded cluster, if [`open`] started one.
pub async fn close(embedded: Option<EmbeddedPostgres>) {
    if let Some(mut embedded) = embedded {
        tokio::task::spawn_blocking(move || embedded.stop())
            .await
            .ok();
    }
}
