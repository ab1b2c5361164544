//! [`ServiceError`]: why a service call did not succeed, decided once from store outcomes and
//! database faults.

use crate::db::fault::{self, DbFault};
use crate::db::sqlstate::SqlStates;
use crate::domain::PreconditionFailed;
use crate::store::StoreError;

/// Why a request could not be served right now (the HTTP layer answers 503 with
/// `Retry-After`). Nothing was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// A database or pool fault of a passing kind (never [`DbFault::Other`], which is a 500);
    /// a lock wait counts the time queued in the service too.
    Database(DbFault),
    /// A key change kept racing with other writers; retrying later will succeed.
    Contention,
}

/// Every way a service call can fail. `Clone`, so that group commit can give each request of a
/// failed batch the same answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    #[error("product not found")]
    NotFound,
    #[error("another product (id {existing_id}) already has this brand, serial and manufacturer")]
    KeyConflict { existing_id: i64 },
    /// Another request with this `Idempotency-Key` is running now.
    #[error("another request with this idempotency key is running")]
    KeyInProgress,
    /// This `Idempotency-Key` was used for another request.
    #[error("this idempotency key was used for another request")]
    KeyReused,
    /// A precondition (`If-Match`, `If-None-Match`, a `version` member) was false; nothing was
    /// written.
    #[error("a precondition of the request is false")]
    PreconditionFailed(PreconditionFailed),
    #[error("service unavailable ({why:?})")]
    Unavailable {
        why: Unavailable,
        /// What the database or pool said, for the log line (never sent to the client).
        cause: Option<String>,
    },
    /// The key is too large for the key index (SQLSTATE 54000): a PATCH that made one field
    /// large beside large stored ones; input checks refuse the other cases first.
    #[error("brand, serial and manufacturer are too large together for the key index")]
    KeyTooLarge,
    /// The product's version is at 2^63-1 and cannot be raised (SQLSTATE 22003): set so by a
    /// writer outside this service. Nothing was written.
    #[error(
        "the product's version is at its largest value (9223372036854775807) and cannot be \
         raised by this write; it was set outside this service"
    )]
    VersionExhausted,
    /// A bug or an unexpected database error; the message is for the log only.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    /// Unavailable for `why`, with no more to say.
    pub fn unavailable(why: Unavailable) -> Self {
        Self::Unavailable { why, cause: None }
    }

    /// A lock (or the queue in front of it) not granted within `LOCK_TIMEOUT_MS`.
    pub fn lock_timeout() -> Self {
        Self::unavailable(Unavailable::Database(DbFault::LockTimeout))
    }

    /// What a database or pool fault of kind `fault`, described by `cause`, means for the caller.
    pub fn from_fault(fault: DbFault, cause: impl std::fmt::Display) -> Self {
        match fault {
            DbFault::Other => Self::Internal(format!("database error: {cause}")),
            DbFault::LimitExceeded => Self::KeyTooLarge,
            DbFault::OutOfRange => Self::VersionExhausted,
            fault => Self::Unavailable {
                why: Unavailable::Database(fault),
                cause: Some(cause.to_string()),
            },
        }
    }

    /// The database fault behind this error, if it is one.
    pub fn fault(&self) -> Option<DbFault> {
        match self {
            Self::Unavailable {
                why: Unavailable::Database(fault),
                ..
            } => Some(*fault),
            Self::Internal(_) => Some(DbFault::Other),
            Self::Unavailable { .. }
            | Self::NotFound
            | Self::KeyConflict { .. }
            | Self::PreconditionFailed(_)
            | Self::KeyInProgress
            | Self::KeyReused
            | Self::KeyTooLarge
            | Self::VersionExhausted => None,
        }
    }
}

impl ServiceError {
    /// What a store call's failure means, given the server errors (`sqlstates`) its connection
    /// received while doing it: the one mapping of store outcomes and database errors.
    pub fn from_store(error: StoreError, sqlstates: &SqlStates) -> Self {
        match error {
            StoreError::NotFound => Self::NotFound,
            StoreError::KeyConflict { existing_id } => Self::KeyConflict { existing_id },
            StoreError::KeyKeptMoving => Self::unavailable(Unavailable::Contention),
            StoreError::PreconditionFailed(failed) => Self::PreconditionFailed(failed),
            StoreError::KeyInProgress => Self::KeyInProgress,
            StoreError::KeyReused => Self::KeyReused,
            StoreError::VersionExhausted => Self::VersionExhausted,
            StoreError::KeyTooLarge => Self::KeyTooLarge,
            StoreError::Database(e) => {
                Self::from_fault(fault::classify(&e, sqlstates.first().as_ref()), e)
            }
        }
    }
}
