//! Black-box tests: the real HTTP server on a random port, over a socket, against a real
//! PostgreSQL (a private cluster per test binary, or `TEST_DATABASE_URL`), one database per test.

/// Runs each named test twice: with group commit (the default) and with one transaction per
/// upsert. For every `name`, `async fn name(group_commit: bool)` in the same file becomes the tests
/// `name::with_group_commit` and `name::one_transaction_per_upsert`. (The bodies stay plain
/// functions, so rustfmt formats them.)
macro_rules! in_both_modes {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn with_group_commit() {
                super::$name(true).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn one_transaction_per_upsert() {
                super::$name(false).await;
            }
        }
    )*};
}

mod architecture;
mod batch;
mod binary;
mod clients;
mod concurrency;
mod conditions;
mod dedupe;
mod docs;
mod duplicate_scan;
mod helpers;
mod idempotency;
mod limits;
mod list_plans;
mod loadtest;
mod normalisation;
mod openapi;
mod operations;
#[cfg(feature = "pooler-tests")]
mod pooler;
mod preconditions;
mod resource;
mod unavailable;
mod upsert;
mod validation;
