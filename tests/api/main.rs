//! Black-box tests: the real HTTP server on a random port, over a socket, against a real
//! PostgreSQL (a private cluster per test binary, or `TEST_DATABASE_URL`), one database per test.

mod binary;
mod concurrency;
mod dedupe;
mod helpers;
mod openapi;
mod operations;
mod resource;
mod unavailable;
mod upsert;
mod validation;
