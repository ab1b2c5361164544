//! The pool every request draws from.

use std::time::Duration;

use diesel_async::AsyncPgConnection;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use futures_util::FutureExt as _;

use crate::config::Config;
use crate::db::connect::connect;
use crate::db::error::DbSetupError;

/// The pool of connections every request draws from.
pub type DbPool = Pool<AsyncPgConnection>;

/// Longest time to establish a new connection before the request gets a 503.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Builds the pool with bounded waits: for a free slot, and for a new connection.
pub fn build_pool(url: &str, config: &Config) -> Result<DbPool, DbSetupError> {
    let mut manager_config = ManagerConfig::default();
    manager_config.custom_setup = Box::new(|url| connect(url).boxed());
    // Only check for an open transaction on return, not a test query per checkout: callers
    // discard a connection that failed (see `service::runner`).
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
