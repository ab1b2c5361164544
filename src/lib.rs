//! product-service: upserts products by their natural key (brand, serial, manufacturer) without
//! ever writing a duplicate, and without a unique constraint in the database.
//!
//! Each write takes a transaction-level advisory lock on the key before it reads the row; see
//! `store` and the README's "How the lock works".

pub mod config;
pub mod db;
pub mod dedupe;
pub mod domain;
pub mod embedded_pg;
pub mod error;
pub mod group_commit;
pub mod key_gate;
pub mod metrics;
pub mod middleware;
pub mod models;
pub mod openapi;
pub mod prepared;
pub mod routes;
pub mod schema;
pub mod startup;
pub mod store;
