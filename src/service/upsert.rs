//! What both upsert paths (one transaction per upsert, and group commit) share: [`Writer`], which
//! applies one upsert on its own and records what every upsert did.

use std::time::{Duration, Instant};

use crate::domain::ProductInput;
use crate::service::error::ServiceError;
use crate::service::runner::Runner;
use crate::store::{self, TxSettings, Upserted};
use crate::telemetry::metrics::{Metrics, UpsertOutcome};

/// A committed upsert.
#[derive(Debug, Clone)]
pub struct Committed {
    pub upserted: Upserted,
    /// From the request entering the pipeline (key gate or group-commit queue) to holding its
    /// key's lock (`None` in test builds without the lock).
    pub lock_wait: Option<Duration>,
}

/// Applies upserts: the runner, the transaction bounds and the metrics they report to.
#[derive(Clone)]
pub struct Writer {
    pub runner: Runner,
    pub settings: TxSettings,
    pub metrics: Metrics,
}

impl Writer {
    /// Applies `input` in a transaction of its own. `entered` is when the request entered the
    /// pipeline: the time since then counts as lock wait, so the lock is waited for at most what
    /// is left of `LOCK_TIMEOUT_MS`.
    ///
    /// # Errors
    /// a lock timeout when nothing is left of `LOCK_TIMEOUT_MS`; the
    /// [`ServiceError`] of the database fault. Nothing is written either way.
    pub async fn upsert_one(
        &self,
        input: &ProductInput,
        entered: Instant,
    ) -> Result<Committed, ServiceError> {
        let before = entered.elapsed();
        let left = Duration::from_millis(self.settings.lock_timeout_ms).saturating_sub(before);
        let left_ms = u64::try_from(left.as_millis()).unwrap_or(u64::MAX);
        if left_ms == 0 {
            let error = ServiceError::lock_timeout();
            return Err(self.runner.count(error));
        }
        let settings = TxSettings {
            lock_timeout_ms: left_ms,
            ..self.settings
        };
        let (upserted, lock_wait) = self
            .runner
            .run(async |conn| {
                let started = Instant::now();
                let result = store::upsert(conn, &settings, input).await;
                let outcome = result.as_ref().ok().map(|(upserted, _)| upserted);
                self.record(outcome, started.elapsed());
                result
            })
            .await?;
        warn_if_duplicated(input, &upserted);
        Ok(Committed {
            upserted,
            lock_wait: lock_wait.map(|held| before + held),
        })
    }

    /// Counts one upsert that reached the database (`None`: it failed) and the duration of its
    /// transaction.
    pub fn record(&self, upserted: Option<&Upserted>, transaction: Duration) {
        let outcome = match upserted {
            Some(Upserted { created: true, .. }) => UpsertOutcome::Created,
            Some(Upserted { created: false, .. }) => UpsertOutcome::Updated,
            None => UpsertOutcome::Failed,
        };
        self.metrics.observe_upsert(outcome, transaction);
    }
}

/// Logs, once per request, that the key of `input` had several rows (duplicated outside the
/// service) and that the oldest was updated.
pub fn warn_if_duplicated(input: &ProductInput, upserted: &Upserted) {
    if upserted.copies > 1 {
        log::warn!(
            "key {:?} has {} rows (duplicated outside this service); updated the oldest, \
             id {}; run `product-service dedupe` to merge them",
            input.key,
            upserted.copies,
            upserted.product.id
        );
    }
}
