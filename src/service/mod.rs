//! The write pipeline and every use of the database a request makes, without actix: the
//! connection runner (deadline, pool flush, fault counting), the key gate, group commit, the
//! duplicate scan, readiness, and [`ProductService`], the one entry the HTTP layer calls.
//!
//! Its failures are [`ServiceError`]s: store outcomes and database faults are mapped to them once,
//! in [`error`].

pub mod duplicate_scan;
pub mod error;
pub mod group_commit;
pub mod idempotency_cleanup;
pub mod key_gate;
pub mod products;
pub mod readiness;
pub mod runner;
pub mod upsert;

pub use error::{ServiceError, Unavailable};
pub use products::ProductService;
