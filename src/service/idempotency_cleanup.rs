//! The periodic deletion of expired idempotency keys (`IDEMPOTENCY_TTL_SECS`).

use std::time::Duration;

use crate::db::DbPool;
use crate::store::idempotency::delete_expired;

/// Most keys one statement deletes, so that a backlog never makes one long transaction.
const BATCH: i64 = 10_000;

/// Deletes expired idempotency keys every `interval`, in batches, until none is left; logs a
/// warning when it fails. Runs until its task is aborted.
pub async fn run(pool: DbPool, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    loop {
        ticks.tick().await;
        let mut conn = match pool.get().await {
            Ok(conn) => conn,
            Err(e) => {
                log::warn!("idempotency key cleanup: no connection: {e}");
                continue;
            }
        };
        loop {
            match delete_expired(&mut conn, BATCH).await {
                Ok(deleted) if deleted as i64 == BATCH => continue,
                Ok(deleted) => {
                    if deleted > 0 {
                        log::debug!("deleted {deleted} expired idempotency keys");
                    }
                    break;
                }
                Err(e) => {
                    log::warn!("idempotency key cleanup failed: {e}");
                    break;
                }
            }
        }
    }
}
