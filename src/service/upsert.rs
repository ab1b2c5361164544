//! What both upsert paths (one transaction per upsert, and group commit) share: [`Writer`], which
//! applies one upsert on its own and records what every upsert did.

use std::time::{Duration, Instant};

use crate::db::DbFault;
use crate::domain::{Preconditions, ProductInput};
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
    /// A lock timeout when nothing is left of `LOCK_TIMEOUT_MS`; the [`ServiceError`] of the
    /// database fault. Nothing is written either way.
    pub async fn upsert_one(
        &self,
        input: &ProductInput,
        entered: Instant,
    ) -> Result<Committed, ServiceError> {
        let (result, transaction) = self
            .attempt(input, &Preconditions::NONE, entered, None)
            .await;
        self.finish(input, result, transaction)
    }

    /// [`Writer::upsert_one`] under `preconditions`, checked against the key's row once it is
    /// locked (`If-Match`, `If-None-Match` on a POST).
    ///
    /// # Errors
    /// [`ServiceError::PreconditionFailed`] when one is false; as [`Writer::upsert_one`].
    pub async fn upsert_one_if(
        &self,
        input: &ProductInput,
        preconditions: &Preconditions,
        entered: Instant,
    ) -> Result<Committed, ServiceError> {
        let (result, transaction) = self.attempt(input, preconditions, entered, None).await;
        self.finish(input, result, transaction)
    }

    /// [`Writer::upsert_one`], waiting for a lock at most `cap`: `None` when that wait ran out
    /// (nothing written or counted: the caller tries again with [`Writer::upsert_one`]).
    ///
    /// # Errors
    /// As [`Writer::upsert_one`].
    pub async fn upsert_one_briefly(
        &self,
        input: &ProductInput,
        entered: Instant,
        cap: Duration,
    ) -> Option<Result<Committed, ServiceError>> {
        let (result, transaction) = self
            .attempt(input, &Preconditions::NONE, entered, Some(cap))
            .await;
        let budget_left = Duration::from_millis(self.settings.lock_timeout_ms)
            .saturating_sub(entered.elapsed())
            > Duration::ZERO;
        match result {
            Err(ref error) if budget_left && error.fault() == Some(DbFault::LockTimeout) => None,
            result => Some(self.finish(input, result, transaction)),
        }
    }

    /// The bounds of a transaction for work that entered the pipeline at `entered`: lock waits
    /// of at most what is left of `LOCK_TIMEOUT_MS` since then (and at most `cap`).
    ///
    /// # Errors
    /// A lock timeout (not counted) when nothing is left.
    pub fn settings_left(
        &self,
        entered: Instant,
        cap: Option<Duration>,
    ) -> Result<TxSettings, ServiceError> {
        let mut left =
            Duration::from_millis(self.settings.lock_timeout_ms).saturating_sub(entered.elapsed());
        if let Some(cap) = cap {
            left = left.min(cap);
        }
        if left < Duration::from_millis(1) {
            return Err(ServiceError::lock_timeout());
        }
        Ok(self.settings.waiting_at_most(left))
    }

    /// One upsert in a transaction of its own, waiting for locks at most what is left of
    /// `LOCK_TIMEOUT_MS` since `entered` (and at most `cap`); nothing counted. Returns the
    /// outcome and, when it reached the database, the duration of its transaction.
    async fn attempt(
        &self,
        input: &ProductInput,
        preconditions: &Preconditions,
        entered: Instant,
        cap: Option<Duration>,
    ) -> (Result<Committed, ServiceError>, Option<Duration>) {
        let before = entered.elapsed();
        let settings = match self.settings_left(entered, cap) {
            Ok(settings) => settings,
            Err(error) => return (Err(error), None),
        };
        let mut transaction = None;
        let result = self
            .runner
            .run_uncounted(async |conn| {
                let started = Instant::now();
                let result = if preconditions.is_empty() {
                    store::upsert(conn, &settings, input).await
                } else {
                    store::upsert::upsert_if(conn, &settings, input, preconditions).await
                };
                transaction = Some(started.elapsed());
                result
            })
            .await;
        let committed = result.map(|(upserted, lock_wait)| Committed {
            upserted,
            lock_wait: lock_wait.map(|held| before + held),
        });
        (committed, transaction)
    }

    /// Counts what became of an attempt and hands its answer on.
    fn finish(
        &self,
        input: &ProductInput,
        result: Result<Committed, ServiceError>,
        transaction: Option<Duration>,
    ) -> Result<Committed, ServiceError> {
        if let Some(transaction) = transaction {
            self.record(result.as_ref().ok().map(|c| &c.upserted), transaction);
        }
        match result {
            Ok(committed) => {
                warn_if_duplicated(input, &committed.upserted);
                Ok(committed)
            }
            Err(error) => Err(self.runner.count(error)),
        }
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
            "key {} has {} rows (duplicated outside this service); updated the oldest, \
             id {}; run `product-service dedupe` to merge them",
            input.key,
            upserted.copies,
            upserted.product.id
        );
    }
}
