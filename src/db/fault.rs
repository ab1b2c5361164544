//! [`DbFault`]: the one place where a database or pool failure is classified.
//!
//! Server errors are classified by their SQLSTATE (PostgreSQL docs, appendix A), read off the
//! wire by [`crate::db::sqlstate`], never by their message text, which follows the server's
//! language. What a kind then means (a 503, a retry, a flushed pool) is decided by the layers
//! above.

use diesel::result::{DatabaseErrorKind, Error};

use crate::db::pool::PoolError;
use crate::db::sqlstate::SqlState;

/// What kind of failure a database or pool error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbFault {
    /// A lock (advisory or row) was not granted within `lock_timeout` (55P03 lock_not_available).
    LockTimeout,
    /// A statement ran past `statement_timeout` or was cancelled (57014 query_canceled), or the
    /// server stopped answering within the client-side deadline.
    StatementTimeout,
    /// No pooled connection became free within the pool's wait timeout.
    PoolTimeout,
    /// The server could not be reached, the connection broke, or the server ended the session or
    /// refused new ones (class 08, 57P01 admin_shutdown, 57P02, 57P03, 53300).
    Connection,
    /// The server only serves reads: a hot standby, or `default_transaction_read_only`
    /// (25006 read_only_sql_transaction).
    ReadOnly,
    /// A conflict that a later retry resolves: deadlock (40P01), serialization failure (40001),
    /// conflict with recovery on a standby (40001 too).
    Transient,
    /// A value over one of the server's own limits (54000 program_limit_exceeded): on a write, a
    /// key whose index entry would pass the 2,704 bytes a B-tree entry holds. The request's
    /// fault, not the server's: a retry fails the same way.
    LimitExceeded,
    /// A number out of its column's range (22003 numeric_value_out_of_range): on a write, a
    /// version at 2^63-1 (a `bigint`'s largest) that the write would raise; only a writer
    /// outside this service can have set it so high (the service starts at 1 and adds 1 per
    /// write), and prices are checked before they reach the database. The stored row's fault,
    /// not the server's: a retry fails the same way.
    OutOfRange,
    /// Anything else: a bug, or a server error this service does not expect.
    Other,
}

impl DbFault {
    /// Whether the connection that met this fault may be unusable, and its idle siblings with it
    /// (a server restart breaks them all; a failover leaves them on the old primary), so that
    /// none of them should be reused.
    pub fn spoils_connections(self) -> bool {
        matches!(self, Self::Connection | Self::Transient | Self::ReadOnly)
    }

    /// The kind of a server error's SQLSTATE.
    pub fn of_sqlstate(code: &SqlState) -> Self {
        match code.code() {
            "55P03" => Self::LockTimeout,
            "57014" => Self::StatementTimeout,
            "40P01" | "40001" => Self::Transient,
            "25006" => Self::ReadOnly,
            "54000" => Self::LimitExceeded,
            "22003" => Self::OutOfRange,
            "57P01" | "57P02" | "57P03" | "53300" => Self::Connection,
            class_08 if class_08.starts_with("08") => Self::Connection,
            _ => Self::Other,
        }
    }
}

/// Classifies a diesel error; `sqlstate` is the first server error the connection received
/// while doing the failed work, if any.
pub fn classify(error: &Error, sqlstate: Option<&SqlState>) -> DbFault {
    match (error, sqlstate) {
        (Error::DatabaseError(..), Some(code)) => DbFault::of_sqlstate(code),
        // No server error: the client side failed (the connection closed, a send failed).
        (Error::DatabaseError(kind, _), None) => match kind {
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand => {
                DbFault::Connection
            }
            DatabaseErrorKind::SerializationFailure => DbFault::Transient,
            DatabaseErrorKind::ReadOnlyTransaction => DbFault::ReadOnly,
            _ => DbFault::Other,
        },
        (Error::BrokenTransactionManager, _) => DbFault::Connection,
        _ => DbFault::Other,
    }
}

/// Classifies a failure to check a connection out of the pool: waiting past the wait timeout is
/// [`DbFault::PoolTimeout`]; failing to open a new connection is a [`DbFault::Connection`].
pub fn classify_pool(error: &PoolError) -> DbFault {
    use deadpool::managed::{PoolError, TimeoutType};
    match error {
        PoolError::Timeout(TimeoutType::Wait) => DbFault::PoolTimeout,
        PoolError::Timeout(_) | PoolError::Backend(_) => DbFault::Connection,
        _ => DbFault::Other,
    }
}
