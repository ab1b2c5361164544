//! [`Runner`]: runs store work on a pooled connection, with every wait bounded, and turns what
//! went wrong into a [`ServiceError`], counted in the metrics.

use std::time::Duration;

use deadpool::managed::Object;
use diesel_async::AsyncPgConnection;

use crate::db::fault::{self, DbFault};
use crate::db::{DbPool, PooledConnection};
use crate::service::error::ServiceError;
use crate::store::StoreError;
use crate::telemetry::metrics::{DbErrorKind, Metrics};

/// The connection runner every database use of a request goes through.
#[derive(Clone)]
pub struct Runner {
    pool: DbPool,
    metrics: Metrics,
    /// Client-side backstop for one piece of work (`Config::db_deadline`).
    deadline: Duration,
}

impl Runner {
    /// A runner on `pool` that gives up on work after `deadline` and counts faults in `metrics`.
    pub fn new(pool: DbPool, metrics: Metrics, deadline: Duration) -> Self {
        Self {
            pool,
            metrics,
            deadline,
        }
    }

    /// The pool it draws from.
    pub fn pool(&self) -> &DbPool {
        &self.pool
    }

    /// Runs `work` on a pooled connection.
    ///
    /// The pool wait is bounded by `DB_POOL_TIMEOUT_MS`; the work by the server-side timeouts and,
    /// should the server stop answering altogether, by the client-side deadline, after which the
    /// connection is closed (never returned to the pool, as it may be inside a transaction).
    ///
    /// # Errors
    /// The store's outcome or the classified database fault, as a [`ServiceError`]; faults are
    /// counted in `db_errors_total` / `db_pool_timeouts_total`.
    pub async fn run<T>(
        &self,
        work: impl AsyncFnOnce(&mut AsyncPgConnection) -> Result<T, StoreError>,
    ) -> Result<T, ServiceError> {
        self.run_uncounted(work)
            .await
            .map_err(|error| self.count(error))
    }

    /// [`Runner::run`] without counting a fault in the metrics: for work whose failure may be
    /// retried, the caller counts the final outcome ([`Runner::count`]).
    ///
    /// # Errors
    /// As [`Runner::run`].
    pub async fn run_uncounted<T>(
        &self,
        work: impl AsyncFnOnce(&mut AsyncPgConnection) -> Result<T, StoreError>,
    ) -> Result<T, ServiceError> {
        let mut conn = match self.pool.get().await {
            Ok(conn) => conn,
            Err(e) => return Err(ServiceError::from_fault(fault::classify_pool(&e), e)),
        };
        conn.sqlstates().clear();
        match tokio::time::timeout(self.deadline, work(&mut conn)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(StoreError::Database(e))) => {
                let fault = fault::classify(&e, conn.sqlstates().first().as_ref());
                if fault.spoils_connections() {
                    // Recycling does not test connections (it would cost a round trip per
                    // request), so one that broke must not go back to the pool, nor its idle
                    // siblings, which a server restart broke too (or a failover left on a
                    // read-only standby).
                    self.discard(conn);
                }
                Err(ServiceError::from_fault(fault, e))
            }
            Ok(Err(outcome)) => Err(ServiceError::from_store(outcome, conn.sqlstates())),
            Err(_) => {
                drop(Object::take(conn));
                let cause = format!(
                    "the database did not answer within {:?}; connection closed",
                    self.deadline
                );
                Err(ServiceError::from_fault(DbFault::StatementTimeout, cause))
            }
        }
    }

    /// Closes `conn` and every idle connection of the pool: after a failure that may have broken
    /// them, none is handed out again.
    pub fn discard(&self, conn: PooledConnection) {
        drop(Object::take(conn));
        self.pool.retain(|_, _| false);
    }

    /// Counts a database fault (`error`'s, if it is one) in the metrics and hands `error` back.
    pub fn count(&self, error: ServiceError) -> ServiceError {
        if let ServiceError::PreconditionFailed(_) = error {
            self.metrics.count_precondition_failed();
        }
        match error.fault() {
            Some(DbFault::PoolTimeout) => self.metrics.count_pool_timeout(),
            Some(DbFault::LockTimeout) => self.metrics.count_db_error(DbErrorKind::LockTimeout),
            Some(DbFault::StatementTimeout) => {
                self.metrics.count_db_error(DbErrorKind::StatementTimeout);
            }
            Some(DbFault::Connection) => self.metrics.count_db_error(DbErrorKind::Connection),
            Some(DbFault::ReadOnly) => self.metrics.count_db_error(DbErrorKind::ReadOnly),
            Some(DbFault::Transient) => self.metrics.count_db_error(DbErrorKind::Transient),
            Some(DbFault::Other) => self.metrics.count_db_error(DbErrorKind::Other),
            // The request's (ServiceError::KeyTooLarge) or the stored row's
            // (ServiceError::VersionExhausted) fault, not the database's.
            Some(DbFault::LimitExceeded | DbFault::OutOfRange) | None => {}
        }
        error
    }
}
