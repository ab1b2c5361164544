//! product-service: upserts products by their natural key (brand, serial, manufacturer) without
//! ever writing a duplicate, and without a unique constraint in the database.
//!
//! Each write takes a transaction-level advisory lock on the key before it reads the row; see
//! [`store`] and the README's "How the lock works".
//!
//! The modules are layers, each importing only from the ones listed before it (an architecture
//! test in `tests/api/architecture.rs` holds this):
//! [`config`], [`telemetry`] -> [`domain`] -> [`db`] -> [`store`] -> [`service`] ->
//! [`http`] and [`dedupe`] -> [`startup`].

pub mod config;
pub mod telemetry;

pub mod domain;

pub mod db;

pub mod store;

pub mod service;

pub mod dedupe;
pub mod http;

pub mod startup;
