//! The periodic duplicate scan behind `product_duplicate_key_groups`.

use std::time::Duration;

use crate::db::DbPool;
use crate::store::duplicates::duplicate_key_groups;
use crate::telemetry::metrics::Metrics;

/// Counts keys with more than one row every `interval`, for `product_duplicate_key_groups`;
/// logs a warning when there are any. Runs until its task is aborted.
pub async fn run(pool: DbPool, metrics: Metrics, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    loop {
        ticks.tick().await;
        let groups = match pool.get().await {
            Ok(mut conn) => duplicate_key_groups(&mut conn)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match groups {
            Ok(groups) => {
                if groups > 0 {
                    log::warn!(
                        "{groups} keys have more than one row; see `product-service dedupe`"
                    );
                }
                metrics.set_duplicate_groups(groups);
            }
            Err(e) => log::warn!("duplicate scan failed: {e}"),
        }
    }
}
