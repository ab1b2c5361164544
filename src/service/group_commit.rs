//! Group commit: upserts that arrive while a transaction is in flight queue up, and the next
//! transaction applies them together and commits once.
//!
//! A few committer tasks (`GROUP_COMMIT_WORKERS`) each loop: wait for work, take every queued
//! upsert (up to `GROUP_COMMIT_MAX_BATCH`), and run them as one transaction
//! (`store::upsert_free`: it tries every key's advisory lock without waiting in one statement,
//! then writes the upserts whose keys were granted in one set-based statement, as if one after
//! the other in arrival order, with one commit). There is no timer: a lone request on an idle
//! service is sent at once.
//!
//! A key is in at most one batch of this instance at a time: upserts for a key whose batch is in
//! flight wait here, holding no connection, and all go in the next batch after it, in arrival
//! order. A key held by another transaction (another instance, another program) does not hold up
//! its batch either: its upserts wait here and are tried again in a later batch (after 2 ms,
//! doubling up to 50 ms), ahead of later requests for the same key. Every request is answered
//! only after its transaction committed, or with a 503 once it has waited `LOCK_TIMEOUT_MS` since
//! it was queued. A batch waits for a row lock (held by a writer outside the protocol) at most
//! 100 ms; then its upserts are retried one by one, each again for at most 100 ms, and last the
//! ones still held, each with what is left of its own `LOCK_TIMEOUT_MS`. A batch that fails
//! otherwise is retried one by one too, unless the database is away or read-only.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc, oneshot};

use crate::db::DbFault;
use crate::domain::{ProductInput, ProductKey};
use crate::service::error::{ServiceError, Unavailable};
use crate::service::upsert::{Committed, Writer, warn_if_duplicated};
use crate::store;
use crate::telemetry::request_id::{current_request_id, within_request, within_request_sync};

/// Longest wait of a batch for a row lock before its upserts are retried one by one.
const BATCH_ROW_LOCK_WAIT: Duration = Duration::from_millis(100);

/// First wait before a busy key is tried again; it doubles up to [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(2);
const MAX_RETRY_DELAY: Duration = Duration::from_millis(50);

struct Job {
    input: ProductInput,
    /// The id of the request that queued it, for the log lines written on its behalf.
    request_id: Option<String>,
    queued: Instant,
    /// When a batch first found its key busy.
    first_tried: Option<Instant>,
    /// How long it waited before its last try (zero until its key was found busy).
    retry_delay: Duration,
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

/// What the committers share.
struct Shared {
    /// New upserts; one committer collects from it at a time.
    queue: tokio::sync::Mutex<mpsc::Receiver<Job>>,
    keys: Mutex<Keys>,
    /// Woken when a batch ends: the upserts waiting for its keys may go.
    batch_ended: Notify,
    max_batch: usize,
}

impl GroupCommit {
    /// Starts `workers` committer tasks on the current runtime, applying upserts with `writer`,
    /// at most `max_batch` in one transaction.
    pub fn start(writer: Writer, workers: usize, max_batch: usize) -> Self {
        let max_batch = max_batch.max(1);
        let (queue, receiver) = mpsc::channel(max_batch * workers.max(1) * 4);
        let shared = Arc::new(Shared {
            queue: tokio::sync::Mutex::new(receiver),
            keys: Mutex::default(),
            batch_ended: Notify::new(),
            max_batch,
        });
        for _ in 0..workers.max(1) {
            tokio::spawn(committer(writer.clone(), Arc::clone(&shared)));
        }
        Self { queue }
    }

    /// Queues `input` and waits until the transaction that applied it has committed.
    ///
    /// # Errors
    /// The batch's [`ServiceError`]; a lock timeout when it waited past
    /// `LOCK_TIMEOUT_MS` since it was queued; [`ServiceError::Internal`] if the committers are
    /// gone.
    pub async fn submit(&self, input: ProductInput) -> Result<Committed, ServiceError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            input,
            request_id: current_request_id(),
            queued: Instant::now(),
            first_tried: None,
            retry_delay: Duration::ZERO,
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

/// The upserts of one key that cannot go in a batch yet, in arrival order.
struct Waiting {
    jobs: VecDeque<Job>,
    /// `None`: waiting for this instance's batch that has the key; `Some`: the key was busy
    /// elsewhere, try again then.
    retry_at: Option<Instant>,
}

/// Which keys are in a batch in flight, and the upserts waiting for their key.
#[derive(Default)]
struct Keys {
    in_flight: HashSet<ProductKey>,
    waiting: HashMap<ProductKey, Waiting>,
}

impl Keys {
    /// Moves the upserts of every waiting key that may go now into `batch`.
    fn take_due(&mut self, now: Instant, batch: &mut Vec<Job>) {
        let due: Vec<ProductKey> = self
            .waiting
            .iter()
            .filter(|(key, waiting)| {
                !self.in_flight.contains(*key) && waiting.retry_at.is_none_or(|at| at <= now)
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in due {
            if let Some(waiting) = self.waiting.remove(&key) {
                batch.extend(waiting.jobs);
                self.in_flight.insert(key);
            }
        }
    }

    /// When the next busy key is due for another try.
    fn next_retry(&self) -> Option<Instant> {
        self.waiting
            .iter()
            .filter(|(key, _)| !self.in_flight.contains(*key))
            .filter_map(|(_, waiting)| waiting.retry_at)
            .min()
    }

    /// Puts a new upsert in `batch`, or behind the upserts already waiting for its key, or to
    /// wait for the batch in flight that has its key.
    fn admit(&mut self, job: Job, batch: &mut Vec<Job>) {
        let key = &job.input.key;
        if let Some(waiting) = self.waiting.get_mut(key) {
            waiting.jobs.push_back(job);
        } else if self.in_flight.contains(key) && !batch.iter().any(|j| &j.input.key == key) {
            let key = key.clone();
            let waiting = Waiting {
                jobs: VecDeque::from([job]),
                retry_at: None,
            };
            self.waiting.insert(key, waiting);
        } else {
            self.in_flight.insert(key.clone());
            batch.push(job);
        }
    }

    /// A batch with `keys` ended; `busy` are its upserts whose key another transaction held,
    /// which wait (ahead of later arrivals) to be tried again.
    fn finish(&mut self, keys: Vec<ProductKey>, busy: Vec<Job>, lock_timeout: Duration) {
        for key in keys {
            self.in_flight.remove(&key);
        }
        let now = Instant::now();
        for mut job in busy.into_iter().rev() {
            job.first_tried.get_or_insert(now);
            job.retry_delay = (job.retry_delay * 2).clamp(FIRST_RETRY_DELAY, MAX_RETRY_DELAY);
            let retry_at = (now + job.retry_delay).min(job.queued + lock_timeout);
            let waiting = self
                .waiting
                .entry(job.input.key.clone())
                .or_insert_with(|| Waiting {
                    jobs: VecDeque::new(),
                    retry_at: None,
                });
            waiting.retry_at = Some(retry_at);
            waiting.jobs.push_front(job);
        }
    }
}

impl Shared {
    fn keys(&self) -> std::sync::MutexGuard<'_, Keys> {
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

async fn committer(writer: Writer, shared: Arc<Shared>) {
    let lock_timeout = Duration::from_millis(writer.settings.lock_timeout_ms);
    loop {
        let Some(batch) = collect(&shared).await else {
            return;
        };
        let keys: Vec<ProductKey> = batch.iter().map(|job| job.input.key.clone()).collect();
        let busy = commit(&writer, batch).await;
        shared.keys().finish(keys, busy, lock_timeout);
        shared.batch_ended.notify_waiters();
    }
}

/// Waits for the next batch: upserts whose keys are free in this instance, the waiting ones
/// first. `None` once the queue is closed.
async fn collect(shared: &Shared) -> Option<Vec<Job>> {
    // One committer collects at a time; the others are in flight or waiting here.
    let mut queue = shared.queue.lock().await;
    loop {
        // Registered before looking, so that a batch ending meanwhile still wakes us.
        let ended = shared.batch_ended.notified();
        let mut batch = Vec::new();
        let next_retry = {
            let mut keys = shared.keys();
            keys.take_due(Instant::now(), &mut batch);
            while batch.len() < shared.max_batch {
                match queue.try_recv() {
                    Ok(job) => keys.admit(job, &mut batch),
                    Err(_) => break,
                }
            }
            keys.next_retry()
        };
        if !batch.is_empty() {
            return Some(batch);
        }
        let retry = async {
            match next_retry {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            job = queue.recv() => match job {
                Some(job) => {
                    shared.keys().admit(job, &mut batch);
                    if !batch.is_empty() {
                        return Some(batch);
                    }
                }
                None => return None,
            },
            () = ended => {}
            () = retry => {}
        }
    }
}

/// Applies the upserts of `batch` whose keys are free in one transaction, or one by one if that
/// fails; returns the upserts whose key another transaction held.
async fn commit(writer: &Writer, batch: Vec<Job>) -> Vec<Job> {
    // Waiting (in the queue, or for a busy key) counts against LOCK_TIMEOUT_MS like any lock
    // wait: a request that waited that long is answered 503 and never applied.
    let lock_timeout = Duration::from_millis(writer.settings.lock_timeout_ms);
    let (batch, expired): (Vec<Job>, Vec<Job>) = batch
        .into_iter()
        .partition(|job| job.queued.elapsed() + Duration::from_millis(1) < lock_timeout);
    for job in expired {
        if let Some(first_tried) = job.first_tried {
            writer.record(None, first_tried.elapsed());
        }
        let error = writer.runner.count(ServiceError::lock_timeout());
        let _ = job.reply.send(Err(error));
    }
    let Some(oldest) = batch.iter().map(|job| job.queued).min() else {
        return Vec::new();
    };
    // A batch waits for a row lock (held by a writer outside the protocol: the service's own
    // writers hold the key's advisory lock first) only briefly, so that the other keys of the
    // batch do not wait with it; on a timeout its upserts are retried one by one, each with what
    // is left of its own LOCK_TIMEOUT_MS.
    let left = lock_timeout
        .saturating_sub(oldest.elapsed())
        .min(BATCH_ROW_LOCK_WAIT);
    let settings = writer.settings.waiting_at_most(left);
    let inputs: Vec<&ProductInput> = batch.iter().map(|job| &job.input).collect();
    let started = Instant::now();
    let result = writer
        .runner
        .run_uncounted(async |conn| store::upsert_free(conn, &settings, &inputs).await)
        .await;
    let elapsed = started.elapsed();
    let mut busy = Vec::new();
    match result {
        Ok(outcomes) => {
            for (job, outcome) in batch.into_iter().zip(outcomes) {
                let Some(upserted) = outcome else {
                    busy.push(job);
                    continue;
                };
                within_request_sync(job.request_id.clone(), || {
                    warn_if_duplicated(&job.input, &upserted);
                });
                writer.record(Some(&upserted), elapsed);
                let lock_wait = started.saturating_duration_since(job.queued);
                let _ = job.reply.send(Ok(Committed {
                    upserted,
                    lock_wait: Some(lock_wait),
                }));
            }
        }
        Err(error) if !worth_retrying(&error, batch.len()) => {
            let error = writer.runner.count(error);
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
            // First each briefly, so that a row held outside the protocol holds up only its
            // own upserts; then those, each with what is left of its own budget.
            let mut held = Vec::new();
            for job in batch {
                let retry = writer.upsert_one_briefly(&job.input, job.queued, BATCH_ROW_LOCK_WAIT);
                match within_request(job.request_id.clone(), retry).await {
                    Some(answer) => {
                        let _ = job.reply.send(answer);
                    }
                    None => held.push(job),
                }
            }
            for job in held {
                let retry = writer.upsert_one(&job.input, job.queued);
                let answer = within_request(job.request_id.clone(), retry).await;
                let _ = job.reply.send(answer);
            }
        }
    }
    busy
}

/// Whether the upserts of a failed batch of `size` may succeed one by one: not when the
/// database is away or read-only; a lone upsert only when the batch's short row-lock wait ran
/// out (alone, it may wait what is left of its own budget).
fn worth_retrying(error: &ServiceError, size: usize) -> bool {
    match error {
        ServiceError::Unavailable {
            why:
                Unavailable::Database(DbFault::Connection | DbFault::PoolTimeout | DbFault::ReadOnly),
            ..
        } => false,
        ServiceError::Unavailable {
            why: Unavailable::Database(DbFault::LockTimeout),
            ..
        } => true,
        _ => size > 1,
    }
}
