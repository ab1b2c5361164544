//! [`ProductService`]: every operation on products, each one call for the HTTP layer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::db::DbPool;
use crate::domain::{
    ListPage, ListQuery, Preconditions, Product, ProductInput, ProductKey, ProductPatch,
};
use crate::service::error::ServiceError;
use crate::service::group_commit::GroupCommit;
use crate::service::key_gate::{KeyGate, KeyPass};
use crate::service::readiness::{self, NotReady};
use crate::service::runner::Runner;
use crate::service::upsert::{Committed, Writer, warn_if_duplicated};
use crate::store::idempotency::{IdempotencyKey, Idempotent, Respond, Write, Written};
use crate::store::{self, TxSettings, Upserted};
use crate::telemetry::metrics::Metrics;

/// The product operations, with the write pipeline behind them. Cheap to clone.
#[derive(Clone)]
pub struct ProductService {
    writer: Writer,
    /// One request per key at a time into the database (`GROUP_COMMIT=false`).
    key_gate: Arc<KeyGate>,
    /// The group-commit queue, when `GROUP_COMMIT` is on.
    group_commit: Option<GroupCommit>,
    /// How long an idempotency key's answer is kept (`IDEMPOTENCY_TTL_SECS`).
    idempotency_ttl: Duration,
}

impl ProductService {
    /// The service on `pool`, configured by `config`, reporting to `metrics`. With
    /// `GROUP_COMMIT` on, starts the committer tasks on the current runtime.
    pub fn start(pool: DbPool, config: &Config, metrics: Metrics) -> Self {
        let writer = Writer {
            runner: Runner::new(pool, metrics.clone(), config.db_deadline()),
            settings: TxSettings::from(config),
            metrics,
        };
        let group_commit = config.group_commit.then(|| {
            GroupCommit::start(
                writer.clone(),
                config.group_commit_workers as usize,
                config.group_commit_max_batch as usize,
            )
        });
        Self {
            writer,
            key_gate: Arc::default(),
            group_commit,
            idempotency_ttl: config.idempotency_ttl(),
        }
    }

    /// The pool's current state (for the pool gauges).
    pub fn pool_status(&self) -> deadpool::Status {
        self.writer.runner.pool().status()
    }

    /// Creates the product with `input.key`, or updates the one that has it.
    ///
    /// # Errors
    /// [`ServiceError::Unavailable`] when a lock, the pool or the database is not available in
    /// time (nothing written); [`ServiceError::Internal`] on a bug.
    pub async fn upsert(&self, input: ProductInput) -> Result<Upserted, ServiceError> {
        self.upsert_if(input, &Preconditions::NONE).await
    }

    /// [`Self::upsert`] under `preconditions` (`If-Match`, `If-None-Match`), checked against
    /// the key's row once its lock is held. A conditional upsert runs in a transaction of its
    /// own (not in a group-commit batch), behind this instance's other requests for the key.
    ///
    /// # Errors
    /// [`ServiceError::PreconditionFailed`] with the current product, nothing written; as
    /// [`Self::upsert`].
    pub async fn upsert_if(
        &self,
        input: ProductInput,
        preconditions: &Preconditions,
    ) -> Result<Upserted, ServiceError> {
        let committed = match &self.group_commit {
            Some(group) if preconditions.is_empty() => group.submit(input).await?,
            _ => self.upsert_alone(&input, preconditions).await?,
        };
        if let Some(lock_wait) = committed.lock_wait {
            self.writer.metrics.observe_lock_wait(lock_wait);
        }
        Ok(committed.upserted)
    }

    /// [`Self::upsert_if`] with an `Idempotency-Key`: the first request with `key` runs, in a
    /// transaction of its own that also stores its answer (`respond` writes it); a retry gets
    /// that answer back ([`Idempotent::Replayed`]).
    ///
    /// # Errors
    /// [`ServiceError::KeyInProgress`] while another request with the key runs (on any
    /// instance); [`ServiceError::KeyReused`] when the key was used for another request; as
    /// [`Self::upsert_if`].
    pub async fn upsert_once(
        &self,
        input: ProductInput,
        preconditions: &Preconditions,
        key: IdempotencyKey<'_>,
        respond: &Respond,
    ) -> Result<Idempotent<Upserted>, ServiceError> {
        // Behind this instance's other requests for the key, as every single upsert outside
        // group commit, so that requests on a held key cannot take the whole pool.
        let (_pass, entered) = self.queue_for(&input.key).await?;
        let settings = self
            .writer
            .settings_left(entered, None)
            .map_err(|error| self.writer.runner.count(error))?;
        let write = Write::One {
            input: &input,
            preconditions,
        };
        Ok(match self.run_once(&settings, key, write, respond).await? {
            Idempotent::Ran(Written::One(upserted, lock_wait), answer) => {
                if let Some(lock_wait) = lock_wait {
                    self.writer.metrics.observe_lock_wait(lock_wait);
                }
                warn_if_duplicated(&input, &upserted);
                Idempotent::Ran(*upserted, answer)
            }
            Idempotent::Ran(Written::Batch(_), _) => {
                return Err(ServiceError::Internal("a batch for one upsert".into()));
            }
            Idempotent::Replayed(answer) => Idempotent::Replayed(answer),
        })
    }

    /// [`Self::upsert_batch`] with an `Idempotency-Key`, as [`Self::upsert_once`].
    ///
    /// # Errors
    /// As [`Self::upsert_once`] and [`Self::upsert_batch`].
    pub async fn upsert_batch_once(
        &self,
        inputs: &[ProductInput],
        key: IdempotencyKey<'_>,
        respond: &Respond,
    ) -> Result<Idempotent<Vec<Upserted>>, ServiceError> {
        Ok(
            match self
                .run_once(&self.writer.settings, key, Write::Batch(inputs), respond)
                .await?
            {
                Idempotent::Ran(Written::Batch(upserted), answer) => {
                    for (input, upserted) in inputs.iter().zip(&upserted) {
                        warn_if_duplicated(input, upserted);
                    }
                    Idempotent::Ran(upserted, answer)
                }
                Idempotent::Ran(Written::One(..), _) => {
                    return Err(ServiceError::Internal("one upsert for a batch".into()));
                }
                Idempotent::Replayed(answer) => Idempotent::Replayed(answer),
            },
        )
    }

    /// Runs `write` once for `key` (see `store::idempotency`), counting what became of it.
    async fn run_once(
        &self,
        settings: &TxSettings,
        key: IdempotencyKey<'_>,
        write: Write<'_>,
        respond: &Respond,
    ) -> Result<Idempotent<Written>, ServiceError> {
        let ttl = self.idempotency_ttl;
        let metrics = &self.writer.metrics;
        let started = Instant::now();
        let outcome = self
            .writer
            .runner
            .run(async |conn| {
                store::idempotency::run_once(conn, settings, key, ttl, write, respond).await
            })
            .await;
        match &outcome {
            Ok(Idempotent::Ran(Written::One(upserted, _), _)) => {
                self.writer.record(Some(upserted), started.elapsed());
            }
            Ok(Idempotent::Ran(Written::Batch(upserted), _)) => metrics.observe_batch(
                upserted.iter().filter(|u| u.created).count(),
                upserted.iter().filter(|u| !u.created).count(),
                started.elapsed(),
            ),
            Ok(Idempotent::Replayed(_)) => metrics.count_idempotency_replay(),
            Err(ServiceError::KeyInProgress) => metrics.count_idempotency_conflict("in_progress"),
            Err(ServiceError::KeyReused) => metrics.count_idempotency_conflict("reused"),
            Err(_) => {}
        }
        outcome
    }

    /// The single-request path (`GROUP_COMMIT=false`): one transaction per upsert, behind this
    /// instance's other requests for the same key.
    async fn upsert_alone(
        &self,
        input: &ProductInput,
        preconditions: &Preconditions,
    ) -> Result<Committed, ServiceError> {
        let (_pass, entered) = self.queue_for(&input.key).await?;
        self.writer
            .upsert_one_if(input, preconditions, entered)
            .await
    }

    /// Waits behind this instance's other requests for `key` (the key gate), holding no
    /// connection; returns the pass and when the wait began, which counts as lock wait.
    ///
    /// # Errors
    /// A lock timeout (counted) when the queue takes all of `LOCK_TIMEOUT_MS`.
    async fn queue_for(&self, key: &ProductKey) -> Result<(KeyPass<'_>, Instant), ServiceError> {
        let entered = Instant::now();
        let lock_timeout = Duration::from_millis(self.writer.settings.lock_timeout_ms);
        let pass = tokio::time::timeout(lock_timeout, self.key_gate.enter(key))
            .await
            .map_err(|_| self.writer.runner.count(ServiceError::lock_timeout()))?;
        Ok((pass, entered))
    }

    /// Upserts every input of a batch request in one transaction, in the order given (a key
    /// given twice: created or updated by the first, updated by the second), under the advisory
    /// locks of all its keys, taken in sorted order ([`store::upsert_batch`]); either all commit
    /// or none does. Returns what each input did, in order. An empty batch does nothing.
    ///
    /// It goes straight to the pool, past the key gate and group commit (which are for single
    /// upserts): the advisory locks serialise it with them, as with any other writer. Each item
    /// is counted in `batch_items_total`.
    ///
    /// # Errors
    /// [`ServiceError::Unavailable`] when a lock (any key's, held elsewhere longer than
    /// `LOCK_TIMEOUT_MS`), the pool or the database is not available in time; nothing written.
    pub async fn upsert_batch(
        &self,
        inputs: &[ProductInput],
    ) -> Result<Vec<Upserted>, ServiceError> {
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let settings = &self.writer.settings;
        let started = Instant::now();
        let upserted = self
            .writer
            .runner
            .run(async |conn| store::upsert_batch(conn, settings, inputs).await)
            .await?;
        let metrics = &self.writer.metrics;
        metrics.observe_batch(
            upserted.iter().filter(|u| u.created).count(),
            upserted.iter().filter(|u| !u.created).count(),
            started.elapsed(),
        );
        for (input, upserted) in inputs.iter().zip(&upserted) {
            warn_if_duplicated(input, upserted);
        }
        Ok(upserted)
    }

    /// The product `id`.
    ///
    /// # Errors
    /// [`ServiceError::NotFound`], or the database fault.
    pub async fn get(&self, id: i64) -> Result<Product, ServiceError> {
        self.writer
            .runner
            .run(async |conn| Ok(store::products::find(conn, id).await?))
            .await?
            .ok_or(ServiceError::NotFound)
    }

    /// One page of products in id order, and where the next one starts.
    ///
    /// # Errors
    /// The database fault.
    pub async fn list(&self, query: &ListQuery) -> Result<ListPage, ServiceError> {
        // One row more than the page tells whether there is a next page.
        let fetch = ListQuery {
            limit: query.limit + 1,
            ..query.clone()
        };
        let mut items = self
            .writer
            .runner
            .run(async |conn| Ok(store::products::list(conn, &fetch).await?))
            .await?;
        let more = items.len() as i64 > query.limit;
        items.truncate(usize::try_from(query.limit).unwrap_or(0));
        let next_after = if more {
            items.last().map(|last| last.id)
        } else {
            None
        };
        Ok(ListPage { items, next_after })
    }

    /// Applies `patch` to the product `id` (PUT and PATCH both come here), if `preconditions`
    /// hold for it.
    ///
    /// # Errors
    /// [`ServiceError::NotFound`]; [`ServiceError::PreconditionFailed`];
    /// [`ServiceError::KeyConflict`] when another product holds the new key;
    /// [`ServiceError::Unavailable`] as for [`Self::upsert`].
    pub async fn update(
        &self,
        id: i64,
        patch: &ProductPatch,
        preconditions: &Preconditions,
    ) -> Result<Product, ServiceError> {
        let settings = &self.writer.settings;
        self.writer
            .runner
            .run(async |conn| {
                store::products::update(conn, settings, id, patch, preconditions).await
            })
            .await
    }

    /// Deletes the product `id`, if `preconditions` hold for it.
    ///
    /// # Errors
    /// [`ServiceError::NotFound`] if there was none; [`ServiceError::PreconditionFailed`]; or
    /// the database fault.
    pub async fn delete(&self, id: i64, preconditions: &Preconditions) -> Result<(), ServiceError> {
        let settings = &self.writer.settings;
        let deleted = self
            .writer
            .runner
            .run(async |conn| store::products::delete(conn, settings, id, preconditions).await)
            .await?;
        if deleted {
            Ok(())
        } else {
            Err(ServiceError::NotFound)
        }
    }

    /// Whether the service can serve: see [`readiness::check`].
    ///
    /// # Errors
    /// [`NotReady`] saying why.
    pub async fn ready(&self) -> Result<(), NotReady> {
        readiness::check(&self.writer.runner).await
    }
}
