//! [`DbFault`]: the one place where a database or pool failure is classified.
//!
//! Every caller that meets a diesel or pool error asks [`classify`] or [`classify_pool`] what
//! kind of failure it is; what the kind then means (a 503, a retry, a flushed pool) is decided by
//! the layers above.

use diesel::result::{DatabaseErrorKind, Error};
use diesel_async::pooled_connection::PoolError as BackendError;

/// A pool checkout error of the service's pool.
pub type PoolError = deadpool::managed::PoolError<BackendError>;

/// What kind of failure a database or pool error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbFault {
    /// A lock (advisory or row) was not granted within `lock_timeout` (SQLSTATE 55P03).
    LockTimeout,
    /// A statement ran past `statement_timeout` (SQLSTATE 57014), or the server stopped
    /// answering within the client-side deadline.
    StatementTimeout,
    /// No pooled connection became free within the pool's wait timeout.
    PoolTimeout,
    /// The server could not be reached, the connection broke, or the server ended the session
    /// (shutdown, restart, `pg_terminate_backend`: SQLSTATE 57P01 and class 08).
    Connection,
    /// A conflict that a later retry resolves: deadlock (40P01), serialization failure (40001),
    /// conflict with recovery on a standby.
    Transient,
    /// Anything else: a bug, or a server error this service does not expect.
    Other,
}

impl DbFault {
    /// Whether the connection that met this fault may be broken, and its idle siblings with it
    /// (a server restart breaks them all), so that none of them should be reused.
    pub fn spoils_connections(self) -> bool {
        matches!(self, Self::Connection | Self::Transient)
    }
}

/// Classifies a diesel error.
///
/// diesel-async 0.9 hides the SQLSTATE of most errors (it keeps only a few kinds), so timeouts
/// and server-ended sessions are recognised by PostgreSQL's message text. Every connection asks
/// for untranslated messages (`lc_messages = 'C'`, see [`crate::db::connect::connect`]) so that
/// the text does not depend on the server's language.
pub fn classify(error: &Error) -> DbFault {
    match error {
        Error::DatabaseError(kind, info) => match kind {
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand => {
                DbFault::Connection
            }
            DatabaseErrorKind::SerializationFailure => DbFault::Transient,
            _ => classify_message(info.message()),
        },
        Error::BrokenTransactionManager => DbFault::Connection,
        _ => DbFault::Other,
    }
}

/// Classifies a server error by its (untranslated) message text.
fn classify_message(message: &str) -> DbFault {
    if message.contains("lock timeout") {
        DbFault::LockTimeout
    } else if message.contains("statement timeout") {
        DbFault::StatementTimeout
    } else if message.contains("terminating connection")
        || message.contains("the database system is")
    {
        DbFault::Connection
    } else if message.contains("deadlock detected")
        || message.contains("due to conflict with recovery")
    {
        DbFault::Transient
    } else {
        DbFault::Other
    }
}

/// Classifies a failure to check a connection out of the pool: waiting past the wait timeout is
/// [`DbFault::PoolTimeout`]; failing to open a new connection is a [`DbFault::Connection`] (or
/// what its query error says).
pub fn classify_pool(error: &PoolError) -> DbFault {
    use deadpool::managed::{PoolError, TimeoutType};
    match error {
        PoolError::Timeout(TimeoutType::Wait) => DbFault::PoolTimeout,
        PoolError::Timeout(_) | PoolError::Backend(BackendError::ConnectionError(_)) => {
            DbFault::Connection
        }
        PoolError::Backend(BackendError::QueryError(e)) => match classify(e) {
            DbFault::Other => DbFault::Connection,
            fault => fault,
        },
        _ => DbFault::Other,
    }
}
