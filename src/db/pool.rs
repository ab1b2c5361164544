//! The pool every request draws from: deadpool, managing [`DbConnection`]s (connections that keep
//! the SQLSTATEs of their errors; diesel-async's own manager cannot hand those out).

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use diesel::ConnectionError;
use diesel_async::pooled_connection::PoolableConnection as _;

use crate::config::Config;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::db::connect::{CONNECT_TIMEOUT, DbConnection, connect_budget, connect_preferring};
use crate::db::error::DbSetupError;

/// Opens and recycles the pool's connections.
#[derive(Debug)]
pub struct Manager {
    url: String,
    /// The host (index in the URL's list) that took the last new connection: the next one
    /// starts there, so a dead host listed first costs its timeout once, not per connection.
    preferred: AtomicUsize,
}

impl managed::Manager for Manager {
    type Type = DbConnection;
    type Error = ConnectionError;

    async fn create(&self) -> Result<DbConnection, ConnectionError> {
        let first = self.preferred.load(Ordering::Relaxed);
        let (conn, host) = connect_preferring(&self.url, first).await?;
        self.preferred.store(host, Ordering::Relaxed);
        Ok(conn)
    }

    /// Only checks that no transaction was left open (no test query per checkout: it would cost
    /// a round trip per request); callers discard a connection that failed (see
    /// `service::runner`).
    async fn recycle(
        &self,
        conn: &mut DbConnection,
        _: &Metrics,
    ) -> RecycleResult<ConnectionError> {
        if conn.is_broken() {
            return Err(RecycleError::message(
                "the connection was left in a transaction",
            ));
        }
        Ok(())
    }
}

/// The pool of connections every request draws from.
pub type DbPool = managed::Pool<Manager>;
/// A connection checked out of the pool; back in the pool when dropped.
pub type PooledConnection = managed::Object<Manager>;
/// What checking a connection out can fail with.
pub type PoolError = managed::PoolError<ConnectionError>;

/// Builds the pool with bounded waits: for a free slot (`DB_POOL_TIMEOUT_MS`), and for a new
/// connection.
///
/// # Errors
/// [`DbSetupError::Pool`] when deadpool refuses the settings.
pub fn build_pool(url: &str, config: &Config) -> Result<DbPool, DbSetupError> {
    let manager = Manager {
        url: url.to_owned(),
        preferred: AtomicUsize::new(0),
    };
    // A new connection may try every host in turn.
    let create_timeout = connect_budget(url) + Duration::from_secs(1);
    managed::Pool::builder(manager)
        .max_size(config.db_pool_size as usize)
        .wait_timeout(Some(config.pool_timeout()))
        .create_timeout(Some(create_timeout))
        .recycle_timeout(Some(CONNECT_TIMEOUT))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .map_err(|e| DbSetupError::Pool(e.to_string()))
}
