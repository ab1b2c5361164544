//! [`ServiceError`]: why a service call did not succeed, decided once from store outcomes and
//! database faults.

use crate::db::fault::{self, DbFault};
use crate::db::sqlstate::SqlStates;
use crate::store::StoreError;

/// Why the database could not serve a request right now (the HTTP layer answers 503 with
/// `Retry-After`). Nothing was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// A lock was not granted within `LOCK_TIMEOUT_MS` (queueing in the service included).
    LockTimeout,
    /// A statement ran longer than `STATEMENT_TIMEOUT_MS`, or the server stopped answering.
    StatementTimeout,
    /// No pooled connection was free within `DB_POOL_TIMEOUT_MS`.
    PoolTimeout,
    /// The database could not be reached or the connection broke.
    Connection,
    /// The database only serves reads (a hot standby, or a database in maintenance).
    ReadOnly,
    /// The database reported a transient conflict (deadlock, serialization failure, shutdown).
    Transient,
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
    #[error("service unavailable ({why:?})")]
    Unavailable {
        why: Unavailable,
        /// What the database or pool said, for the log line (never sent to the client).
        cause: Option<String>,
    },
    /// A bug or an unexpected database error; the message is for the log only.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    /// Unavailable for `why`, with no more to say.
    pub fn unavailable(why: Unavailable) -> Self {
        Self::Unavailable { why, cause: None }
    }

    /// What a database or pool fault of kind `fault`, described by `cause`, means for the caller.
    pub fn from_fault(fault: DbFault, cause: impl std::fmt::Display) -> Self {
        let why = match fault {
            DbFault::LockTimeout => Unavailable::LockTimeout,
            DbFault::StatementTimeout => Unavailable::StatementTimeout,
            DbFault::PoolTimeout => Unavailable::PoolTimeout,
            DbFault::Connection => Unavailable::Connection,
            DbFault::ReadOnly => Unavailable::ReadOnly,
            DbFault::Transient => Unavailable::Transient,
            DbFault::Other => return Self::Internal(format!("database error: {cause}")),
        };
        Self::Unavailable {
            why,
            cause: Some(cause.to_string()),
        }
    }

    /// The database fault behind this error, if it is one.
    pub fn fault(&self) -> Option<DbFault> {
        match self {
            Self::Unavailable { why, .. } => match why {
                Unavailable::LockTimeout => Some(DbFault::LockTimeout),
                Unavailable::StatementTimeout => Some(DbFault::StatementTimeout),
                Unavailable::PoolTimeout => Some(DbFault::PoolTimeout),
                Unavailable::Connection => Some(DbFault::Connection),
                Unavailable::ReadOnly => Some(DbFault::ReadOnly),
                Unavailable::Transient => Some(DbFault::Transient),
                Unavailable::Contention => None,
            },
            Self::Internal(_) => Some(DbFault::Other),
            Self::NotFound | Self::KeyConflict { .. } => None,
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
            StoreError::Database(e) => {
                Self::from_fault(fault::classify(&e, sqlstates.first().as_ref()), e)
            }
        }
    }
}
