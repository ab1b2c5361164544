//! The first statements of every write transaction: the bounds on its waits, then the advisory
//! locks of its keys, each in a statement of its own.

use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::config::Config;
use crate::domain::ProductKey;
use crate::store::prepared::Prepared;

/// The bounds every write transaction sets for itself (`SET LOCAL` semantics through
/// `set_config(..., true)`, so they are safe behind a transaction-pooling PgBouncer).
#[derive(Debug, Clone, Copy)]
pub struct TxSettings {
    /// Longest wait for any lock, advisory or row, in milliseconds (`lock_timeout`).
    pub lock_timeout_ms: u64,
    /// Longest run of one statement, in milliseconds (`statement_timeout`).
    pub statement_timeout_ms: u64,
    #[cfg(feature = "test-hooks")]
    pub hooks: crate::config::TestHooks,
}

impl From<&Config> for TxSettings {
    fn from(config: &Config) -> Self {
        Self {
            lock_timeout_ms: config.lock_timeout_ms,
            statement_timeout_ms: config.statement_timeout_ms,
            #[cfg(feature = "test-hooks")]
            hooks: config.test_hooks,
        }
    }
}

impl TxSettings {
    /// Whether write transactions take their advisory locks: always, except in test builds that
    /// switch them off to show that the race tests catch the missing lock.
    #[cfg(feature = "test-hooks")]
    pub fn takes_advisory_locks(&self) -> bool {
        !self.hooks.disable_advisory_lock
    }

    /// Whether write transactions take their advisory locks: always, in this build.
    #[cfg(not(feature = "test-hooks"))]
    pub fn takes_advisory_locks(&self) -> bool {
        true
    }
}

/// Statement names for diesel's statement cache.
pub(crate) struct BoundWaitsStatement;
pub(crate) struct LockKeyStatement;
pub(crate) struct LockKeysStatement;

/// The statement that bounds every lock wait and every statement of the transaction it runs in.
pub(crate) fn bound_waits_query(settings: &TxSettings) -> Prepared<'static, BoundWaitsStatement> {
    Prepared::new(
        "SELECT set_config('lock_timeout', $1, true), set_config('statement_timeout', $2, true)",
        vec![
            Some(settings.lock_timeout_ms.to_string().into()),
            Some(settings.statement_timeout_ms.to_string().into()),
        ],
    )
}

/// Must run inside a transaction: bounds every lock wait and every statement of it.
pub(crate) async fn bound_waits(
    conn: &mut AsyncPgConnection,
    settings: &TxSettings,
) -> diesel::QueryResult<()> {
    bound_waits_query(settings).execute(conn).await?;
    Ok(())
}

/// The statement that takes one key's advisory lock until the transaction ends.
///
/// It is a statement of its own on purpose: under READ COMMITTED the *next* statement takes a
/// fresh snapshot, which includes the commit of whoever held the lock before us.
pub(crate) fn lock_key_query(key: &ProductKey) -> Prepared<'_, LockKeyStatement> {
    Prepared::new(
        "SELECT pg_advisory_xact_lock(product_lock_key($1, $2, $3))",
        vec![
            Some(key.brand.as_str().into()),
            Some(key.serial.as_str().into()),
            Some(key.manufacturer.as_str().into()),
        ],
    )
}

/// The statement that takes the advisory locks of several keys, in ascending lock-key order (as
/// every multi-key writer here does, so two of them cannot deadlock), each once (two keys may
/// share a lock key: a hash collision).
pub(crate) fn lock_keys_query(keys: &[&ProductKey]) -> Prepared<'static, LockKeysStatement> {
    let rows: Vec<[&str; 3]> = keys
        .iter()
        .map(|k| [k.brand.as_str(), k.serial.as_str(), k.manufacturer.as_str()])
        .collect();
    // The keys travel as one JSON parameter, which serde escapes; `OFFSET 0` keeps the sorted
    // subquery from being merged into the outer one, so the locks are taken in its order.
    Prepared::new(
        "SELECT pg_advisory_xact_lock(k) FROM (\
             SELECT DISTINCT product_lock_key(t->>0, t->>1, t->>2) AS k \
             FROM jsonb_array_elements($1::jsonb) AS t ORDER BY k OFFSET 0) AS keys",
        vec![Some(
            serde_json::to_string(&rows).unwrap_or_default().into(),
        )],
    )
}

/// Must run inside a transaction: takes the advisory locks of `keys` until it ends (one key:
/// [`lock_key_query`]; several: [`lock_keys_query`]).
pub(crate) async fn lock_keys(
    conn: &mut AsyncPgConnection,
    keys: &[&ProductKey],
) -> diesel::QueryResult<()> {
    match keys {
        [key] => lock_key_query(key).execute(conn).await?,
        keys => lock_keys_query(keys).execute(conn).await?,
    };
    Ok(())
}
