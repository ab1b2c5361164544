//! The first statements of every write transaction: the bounds on its waits, then the advisory
//! locks of its keys, each in a statement of its own; and the start-up check that the server
//! really enforces those very statements.
//!
//! Every PostgreSQL function the guarantee rests on is called as `pg_catalog.<name>`, so that no
//! `search_path` (of a database, a role or a session) can put a look-alike in its place;
//! The lock key is computed by [`lock_key_sql`], `product_lock_key`'s formula in `pg_catalog`
//! names, so the write path does not call `product_lock_key` (which other writers use; its
//! migration pins its own names to `pg_catalog`).

use std::sync::LazyLock;
use std::time::Duration;

use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::config::Config;
use crate::db::connect::{
    DbConnection, POOLER_WITHOUT_PREPARED_STATEMENTS, connect_recording, loses_prepared_statements,
};
use crate::db::prepared::Prepared;
use crate::db::sqlstate::SqlState;
use crate::domain::ProductKey;

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
            lock_timeout_ms: config.waits.lock_timeout_ms,
            statement_timeout_ms: config.waits.statement_timeout_ms,
            #[cfg(feature = "test-hooks")]
            hooks: config.test_hooks,
        }
    }
}

impl TxSettings {
    /// These bounds with lock waits of at most `wait` (at least 1 ms: 0 would mean none).
    pub fn waiting_at_most(&self, wait: Duration) -> Self {
        Self {
            lock_timeout_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1),
            ..*self
        }
    }

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
pub(crate) struct TryLockKeysStatement;

/// The statement that bounds every lock wait and every statement of the transaction it runs in.
pub(crate) fn bound_waits_query(settings: &TxSettings) -> Prepared<'static, BoundWaitsStatement> {
    Prepared::new(
        "SELECT pg_catalog.set_config('lock_timeout', $1, true), \
         pg_catalog.set_config('statement_timeout', $2, true)",
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

/// The lock key of (`brand`, `serial`, `manufacturer`), three SQL text expressions: the formula
/// of the `product_lock_key` function that other writers call (migrations), written out with
/// `pg_catalog` names only, so that no `search_path` can change it, not even a look-alike
/// `product_lock_key` earlier on it. `concat` writes the lengths as `||` does, so the keys are
/// the same; the tests hold keys through `product_lock_key` and meet the service's locks.
fn lock_key_sql(brand: &str, serial: &str, manufacturer: &str) -> String {
    format!(
        "pg_catalog.hashtextextended(pg_catalog.concat(\
         pg_catalog.length({brand}), ':'::pg_catalog.text, {brand}, \
         pg_catalog.length({serial}), ':'::pg_catalog.text, {serial}, {manufacturer}), 0)"
    )
}

/// The statement that takes one key's advisory lock until the transaction ends.
///
/// It is a statement of its own on purpose: under READ COMMITTED the *next* statement takes a
/// fresh snapshot, which includes the commit of whoever held the lock before us.
pub(crate) fn lock_key_query(key: &ProductKey) -> Prepared<'_, LockKeyStatement> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT pg_catalog.pg_advisory_xact_lock({})",
            lock_key_sql("$1", "$2", "$3")
        )
    });
    Prepared::new(
        SQL.as_str(),
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
    // `OFFSET 0` keeps the sorted subquery from being merged into the outer one, so the locks
    // are taken in its order.
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT pg_catalog.pg_advisory_xact_lock(k) FROM (SELECT DISTINCT {} AS k \
             FROM pg_catalog.jsonb_array_elements($1::pg_catalog.jsonb) AS t \
             ORDER BY k OFFSET 0) AS keys",
            lock_key_sql(
                "pg_catalog.jsonb_array_element_text(t, 0)",
                "pg_catalog.jsonb_array_element_text(t, 1)",
                "pg_catalog.jsonb_array_element_text(t, 2)"
            )
        )
    });
    Prepared::new(SQL.as_str(), vec![Some(keys_json(keys).into())])
}

/// The statement that tries to take the advisory lock of every key, without waiting, until the
/// transaction ends, and says for each key (by its index in `keys`) whether it was granted. A key
/// that appears twice is granted twice or refused twice (advisory locks are re-entrant).
pub(crate) fn try_lock_keys_query(keys: &[&ProductKey]) -> Prepared<'static, TryLockKeysStatement> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT (e.i - 1)::pg_catalog.int4 AS input, \
             pg_catalog.pg_try_advisory_xact_lock({}) AS granted \
             FROM pg_catalog.jsonb_array_elements($1::pg_catalog.jsonb) WITH ORDINALITY AS e(t, i)",
            lock_key_sql(
                "pg_catalog.jsonb_array_element_text(e.t, 0)",
                "pg_catalog.jsonb_array_element_text(e.t, 1)",
                "pg_catalog.jsonb_array_element_text(e.t, 2)"
            )
        )
    });
    Prepared::new(SQL.as_str(), vec![Some(keys_json(keys).into())])
}

/// The keys as one JSON parameter (`[["brand","serial","manufacturer"], ...]`), which serde
/// escapes.
fn keys_json(keys: &[&ProductKey]) -> String {
    let rows: Vec<[&str; 3]> = keys
        .iter()
        .map(|k| [k.brand.as_str(), k.serial.as_str(), k.manufacturer.as_str()])
        .collect();
    serde_json::to_string(&rows).unwrap_or_default()
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

/// Why the server cannot be trusted with the locking protocol, or could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum LockCheckError {
    #[error(
        "this database does not enforce transaction-level advisory locks ({0}); product-service \
         relies on them to avoid duplicates and refuses to run on it"
    )]
    NotEnforced(String),
    /// A statement prepared on one transaction's server connection was gone in the next: the
    /// start-up check of prepared statements (`db::checks::check_prepared_statements`) did not
    /// meet the pooler's other server connections, this check did.
    #[error("{}", POOLER_WITHOUT_PREPARED_STATEMENTS)]
    PoolerLosesPreparedStatements,
    #[error("cannot connect for the advisory-lock check: {0}")]
    Connect(#[from] diesel::ConnectionError),
    #[error("the advisory-lock check failed: {0}")]
    Database(#[from] diesel::result::Error),
}

/// How long the check lets its second transaction wait for a lock that must stay held.
const CHECK_WAIT_MS: u64 = 50;

/// Refuses a server whose advisory locks the write path could not rely on (some
/// PostgreSQL-compatible servers accept the calls and enforce nothing).
///
/// Runs the write path's own lock statements ([`lock_key_query`], [`lock_keys_query`] and
/// [`try_lock_keys_query`]) in two concurrent transactions on two connections to `url`: while the
/// first holds a key, the second must time out on it (SQLSTATE 55P03) with the waiting
/// statements and be refused it (while granted another key) by the trying one; once the first
/// ends, the second must get it. Transaction-scoped only, so it means the same behind a
/// transaction-pooling PgBouncer, and nothing is left held. The key is this process's own, so
/// instances starting together do not meet.
///
/// # Errors
/// [`LockCheckError::NotEnforced`] saying what the server got wrong;
/// [`LockCheckError::PoolerLosesPreparedStatements`] when a statement prepared in one of its
/// transactions was gone in the next (SQLSTATE 26000 or 42P05); the others when it could not
/// be asked.
pub async fn check_enforced(url: &str) -> Result<(), LockCheckError> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let key = ProductKey::new(
        "product-service start-up check",
        format!("{}-{nanos}", std::process::id()),
        "",
    );
    let other = ProductKey::new(&key.brand, format!("{}+", key.serial), "");
    let mut holder = connect_recording(url).await?;
    let mut contender = connect_recording(url).await?;
    let checked = check_on(&mut holder, &mut contender, &key, &other).await;
    let lost_statement = [&holder, &contender]
        .iter()
        .any(|conn| conn.sqlstates().any(loses_prepared_statements));
    match checked {
        Err(LockCheckError::Database(_)) if lost_statement => {
            Err(LockCheckError::PoolerLosesPreparedStatements)
        }
        checked => checked,
    }
}

/// [`check_enforced`]'s transactions on its two connections, for `key` and another key `other`.
async fn check_on(
    holder: &mut DbConnection,
    contender: &mut DbConnection,
    key: &ProductKey,
    other: &ProductKey,
) -> Result<(), LockCheckError> {
    use diesel_async::SimpleAsyncConnection as _;
    holder.batch_execute("BEGIN").await?;
    lock_key_query(key).execute(&mut **holder).await?;
    let single = contend(contender, lock_key_query(key)).await?;
    let pair = contend(contender, lock_keys_query(&[other, key])).await?;
    let tried = try_in_transaction(contender, &[other, key]).await?;
    holder.batch_execute("ROLLBACK").await?;
    let after = contend(contender, lock_key_query(key)).await?;

    let held_is_refused =
        single == Contended::TimedOut && pair == Contended::TimedOut && tried == [true, false];
    if !held_is_refused {
        Err(LockCheckError::NotEnforced(
            "a second transaction was granted a key that a first one held".to_owned(),
        ))
    } else if after != Contended::Granted {
        Err(LockCheckError::NotEnforced(
            "a key stayed held after the transaction that took it ended".to_owned(),
        ))
    } else {
        Ok(())
    }
}

/// Runs [`try_lock_keys_query`] for `keys` in a transaction of its own, then ends it; says which
/// keys were granted.
async fn try_in_transaction(
    conn: &mut DbConnection,
    keys: &[&ProductKey],
) -> Result<Vec<bool>, LockCheckError> {
    use diesel_async::SimpleAsyncConnection as _;
    #[derive(diesel::QueryableByName)]
    struct Tried {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        input: i32,
        #[diesel(sql_type = diesel::sql_types::Bool)]
        granted: bool,
    }
    conn.batch_execute("BEGIN").await?;
    let tried: diesel::QueryResult<Vec<Tried>> = try_lock_keys_query(keys).load(&mut **conn).await;
    conn.batch_execute("ROLLBACK").await?;
    let mut tried = tried?;
    tried.sort_by_key(|row| row.input);
    Ok(tried.into_iter().map(|row| row.granted).collect())
}

/// What a lock statement met in a transaction of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Contended {
    Granted,
    /// Not granted within [`CHECK_WAIT_MS`] (SQLSTATE 55P03).
    TimedOut,
}

/// Runs `lock` in a transaction of its own that waits at most [`CHECK_WAIT_MS`], then ends it.
async fn contend<Id: 'static + Send>(
    conn: &mut DbConnection,
    lock: Prepared<'_, Id>,
) -> Result<Contended, LockCheckError> {
    use diesel_async::SimpleAsyncConnection as _;
    conn.batch_execute(&format!(
        "BEGIN; SELECT pg_catalog.set_config('lock_timeout', '{CHECK_WAIT_MS}', true)"
    ))
    .await?;
    conn.sqlstates().clear();
    let result = lock.execute(&mut **conn).await;
    let timed_out = conn.sqlstates().first() == Some(SqlState::LOCK_NOT_AVAILABLE);
    conn.batch_execute("ROLLBACK").await?;
    match result {
        Ok(_) => Ok(Contended::Granted),
        Err(_) if timed_out => Ok(Contended::TimedOut),
        Err(e) => Err(e.into()),
    }
}
