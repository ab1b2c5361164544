//! Group commit: upserts that arrive while a transaction is in flight queue up, and the next
//! transaction applies them together and commits once.
//!
//! A few committer tasks (`GROUP_COMMIT_WORKERS`) each loop: wait for one queued upsert, take
//! every other one queued by then (up to `GROUP_COMMIT_MAX_BATCH`), and run them as one
//! transaction (`store::upsert_batch`: all their advisory locks in ascending order, then the
//! upserts in arrival order, one commit). There is no timer: a lone request on an idle service
//! is sent at once. Every request is answered only after its transaction committed. When a batch
//! of several fails, its upserts are retried one by one through the single-request path, so one
//! held key or bad row cannot fail the others. A request that waited in the queue longer than
//! `LOCK_TIMEOUT_MS` is answered 503 without being applied.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, mpsc, oneshot};

use crate::domain::ProductInput;
use crate::service::error::{ServiceError, Unavailable};
use crate::service::upsert::{Committed, Writer, warn_if_duplicated};
use crate::store;
use crate::telemetry::request_id::{current_request_id, within_request, within_request_sync};

struct Job {
    input: ProductInput,
    /// The id of the request that queued it, for the log lines written on its behalf.
    request_id: Option<String>,
    queued: Instant,
    reply: oneshot::Sender<Result<Committed, ServiceError>>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("key", &self.input.key)
            .finish_non_exhaustive()
    }
}

/// The queue in front of the committer tasks.
#[derive(Debug, Clone)]
pub struct GroupCommit {
    queue: mpsc::Sender<Job>,
}

impl GroupCommit {
    /// Starts `workers` committer tasks on the current runtime, applying upserts with `writer`,
    /// at most `max_batch` in one transaction.
    pub fn start(writer: Writer, workers: usize, max_batch: usize) -> Self {
        let (queue, receiver) = mpsc::channel(max_batch.max(1) * workers.max(1) * 4);
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..workers.max(1) {
            tokio::spawn(committer(
                writer.clone(),
                Arc::clone(&receiver),
                max_batch.max(1),
            ));
        }
        Self { queue }
    }

    /// Queues `input` and waits until the transaction that applied it has committed.
    ///
    /// # Errors
    /// The batch's [`ServiceError`]; [`Unavailable::LockTimeout`] when it waited in the queue
    /// past `LOCK_TIMEOUT_MS`; [`ServiceError::Internal`] if the committers are gone.
    pub async fn submit(&self, input: ProductInput) -> Result<Committed, ServiceError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            input,
            request_id: current_request_id(),
            queued: Instant::now(),
            reply,
        };
        self.queue
            .send(job)
            .await
            .map_err(|_| ServiceError::Internal("the group-commit queue is closed".to_owned()))?;
        answer.await.map_err(|_| {
            ServiceError::Internal("a group-commit task ended without answering".to_owned())
        })?
    }
}

async fn committer(writer: Writer, receiver: Arc<Mutex<mpsc::Receiver<Job>>>, max_batch: usize) {
    loop {
        let mut batch = Vec::new();
        {
            // One committer collects at a time; the others are in flight or waiting here.
            let mut receiver = receiver.lock().await;
            match receiver.recv().await {
                Some(job) => batch.push(job),
                None => return,
            }
            while batch.len() < max_batch {
                match receiver.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
        }
        commit(&writer, batch).await;
    }
}

/// Applies `batch` in one transaction, or one by one if that fails.
async fn commit(writer: &Writer, batch: Vec<Job>) {
    // Waiting in the queue counts against LOCK_TIMEOUT_MS like any lock wait: a request that
    // waited that long is answered 503 and never started, so no wait is unbounded.
    let lock_timeout = Duration::from_millis(writer.settings.lock_timeout_ms);
    let (batch, expired): (Vec<Job>, Vec<Job>) = batch
        .into_iter()
        .partition(|job| job.queued.elapsed() < lock_timeout);
    for job in expired {
        let error = writer
            .runner
            .count(ServiceError::unavailable(Unavailable::LockTimeout));
        let _ = job.reply.send(Err(error));
    }
    if batch.is_empty() {
        return;
    }
    let inputs: Vec<&ProductInput> = batch.iter().map(|job| &job.input).collect();
    let started = Instant::now();
    let result = writer
        .runner
        .run(async |conn| store::upsert_batch(conn, &writer.settings, &inputs).await)
        .await;
    let elapsed = started.elapsed();
    match result {
        Ok((outcomes, lock_wait)) => {
            for (job, upserted) in batch.into_iter().zip(outcomes) {
                within_request_sync(job.request_id.clone(), || {
                    warn_if_duplicated(&job.input, &upserted);
                });
                writer.record(Some(&upserted), elapsed);
                let lock_wait =
                    lock_wait.map(|held| started.saturating_duration_since(job.queued) + held);
                let _ = job.reply.send(Ok(Committed {
                    upserted,
                    lock_wait,
                }));
            }
        }
        Err(error) if batch.len() == 1 || !worth_retrying(&error) => {
            for job in batch {
                writer.record(None, elapsed);
                let _ = job.reply.send(Err(error.clone()));
            }
        }
        Err(error) => {
            log::warn!(
                "a batch of {} upserts failed ({error}); retrying them one by one",
                batch.len()
            );
            for job in batch {
                let retry = writer.upsert_one(&job.input, job.queued);
                let answer = within_request(job.request_id.clone(), retry).await;
                let _ = job.reply.send(answer);
            }
        }
    }
}

/// Whether the upserts of a failed batch may succeed alone: not when the database is away or
/// read-only.
fn worth_retrying(error: &ServiceError) -> bool {
    !matches!(
        error,
        ServiceError::Unavailable {
            why: Unavailable::Connection | Unavailable::PoolTimeout | Unavailable::ReadOnly,
            ..
        }
    )
}
