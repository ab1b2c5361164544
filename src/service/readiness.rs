//! Readiness: a pooled connection answers, the newest embedded migration is applied, and the
//! database takes writes.

use std::time::Duration;

use deadpool::managed::Timeouts;

use crate::db::checks::serving_state;
use crate::db::fault::{DbFault, classify_pool};
use crate::db::migrations::latest_migration_version;
use crate::service::runner::Runner;

/// How long readiness may take to find out (each of: a connection, the query).
pub const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the service is not ready (the HTTP layer answers 503 with it as the detail).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotReady(pub String);

/// Checks readiness within [`READY_TIMEOUT`] per step.
///
/// # Errors
/// [`NotReady`] saying which step failed. A failed query also closes the pool's connections, as
/// they may be broken.
pub async fn check(runner: &Runner) -> Result<(), NotReady> {
    let timeouts = Timeouts {
        wait: Some(READY_TIMEOUT),
        create: Some(READY_TIMEOUT),
        recycle: Some(READY_TIMEOUT),
    };
    let mut conn = runner.pool().timeout_get(&timeouts).await.map_err(|e| {
        // The library's wording goes to the log; the probe's answer names the cause.
        log::warn!("not ready: {e}");
        NotReady(match classify_pool(&e) {
            DbFault::PoolTimeout => {
                "every database connection stayed busy for 2 s (DB_POOL_SIZE)".to_owned()
            }
            _ => "the database is unreachable (no new connection within 2 s)".to_owned(),
        })
    })?;
    let latest = latest_migration_version();
    let answer = tokio::time::timeout(READY_TIMEOUT, serving_state(&mut conn, &latest))
        .await
        .map_err(|_| "the database did not answer the readiness query within 2 s".to_owned())
        .and_then(|r| {
            r.map_err(|e| {
                log::warn!("not ready: {e}");
                "the database failed the readiness query (see the log)".to_owned()
            })
        });
    match answer {
        Ok(state) if !state.migration_applied => {
            Err(NotReady(format!("migration {latest} is not applied")))
        }
        Ok(state) if state.read_only => {
            // Connections to a read-only server are no use for writes: let the next ones find a
            // writable primary (a multi-host DATABASE_URL with target_session_attrs=read-write).
            runner.discard(conn);
            Err(NotReady(
                "the database is read-only (a hot standby, or default_transaction_read_only is \
                 on): writes would fail"
                    .to_owned(),
            ))
        }
        Ok(_) => Ok(()),
        Err(reason) => {
            runner.discard(conn);
            Err(NotReady(reason))
        }
    }
}
