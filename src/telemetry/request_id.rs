//! The id of the request being served, as a task-local: set by the HTTP middleware for the whole
//! request, read by the log format and by problem+json bodies, and carried by group commit to
//! the committer task that does a request's work.

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being served on this task, if any.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// Runs `work` as part of request `id` (`None`: as no request), so that its log lines carry
/// the id.
pub async fn within_request<F: Future>(id: Option<String>, work: F) -> F::Output {
    match id {
        Some(id) => REQUEST_ID.scope(id, work).await,
        None => work.await,
    }
}

/// [`within_request`] for synchronous work.
pub fn within_request_sync<R>(id: Option<String>, work: impl FnOnce() -> R) -> R {
    match id {
        Some(id) => REQUEST_ID.sync_scope(id, work),
        None => work(),
    }
}
