//! Black-box tests: the real HTTP server on a random port, over a socket, against a real
//! PostgreSQL (a private cluster per test binary, or `TEST_DATABASE_URL`), one database per test.

/// Runs a test twice: with group commit (the default) and with one transaction per upsert.
/// `async fn name(group_commit: bool) { ... }` becomes `name::with_group_commit` and
/// `name::one_transaction_per_upsert`.
macro_rules! in_both_modes {
    ($(async fn $name:ident($mode:ident: bool) $body:block)*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($mode: bool) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn with_group_commit() {
                run(true).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn one_transaction_per_upsert() {
                run(false).await;
            }
        }
    )*};
}

mod architecture;
mod binary;
mod concurrency;
mod dedupe;
mod helpers;
mod loadtest;
mod openapi;
mod operations;
mod resource;
mod unavailable;
mod upsert;
mod validation;
