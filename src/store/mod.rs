//! Every query of the service. Functions that need atomicity open their own transaction and take
//! their own advisory locks, so no caller can forget them.
//!
//! Every write transaction follows the same protocol (README, "How the lock works"):
//! 1. `BEGIN ISOLATION LEVEL READ COMMITTED`, then bound every wait with `set_config(...)`;
//! 2. `pg_advisory_xact_lock(product_lock_key(brand, serial, manufacturer))`, alone in its
//!    statement;
//! 3. in a later statement, so that its snapshot sees the previous lock holder's commit,
//!    `SELECT ... FOR UPDATE` the row(s), then UPDATE or INSERT;
//! 4. `COMMIT`, which releases the lock.
//!
//! | file | what |
//! |---|---|
//! | [`locks`] | the wait bounds and the advisory-lock statements (steps 1 and 2) |
//! | [`upsert`] | the upsert of one product (waiting for its key), of many whose keys are free, or of a batch request's (waiting for all its keys) |
//! | [`products`] | reads, updates (PUT, PATCH) and deletes by id, the filtered list |
//! | [`idempotency`] | requests with an `Idempotency-Key`: run once, answer stored with the write |
//! | [`duplicates`] | keys with several rows, or stored in other spellings: counting, listing, merging |
//! | [`models`] | the row type and the changeset |

pub mod duplicates;
pub mod error;
pub mod idempotency;
pub mod locks;
pub mod models;
pub mod products;
pub mod upsert;
mod upsert_set;

pub use error::StoreError;
pub use locks::TxSettings;
pub use models::Upserted;
pub use upsert::{upsert, upsert_batch, upsert_free};
#[cfg(feature = "test-hooks")]
pub use upsert_set::statements_for_plan_tests;
