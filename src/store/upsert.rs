//! The upsert: create the product with a key, or update the one that has it, under the key's
//! advisory lock, for one product or many in one transaction: those whose keys are free (group
//! commit), or all of a batch request's (`POST /products/batch`).

use std::time::{Duration, Instant};

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Bool};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::prepared::Prepared;
use crate::domain::{Preconditions, Product, ProductInput, ProductKey};
use crate::store::error::StoreError;
use crate::store::locks::{
    TxSettings, bound_waits_query, lock_key_query, lock_keys_query, try_lock_keys_query,
};
use crate::store::models::{ProductRow, Upserted};
use crate::store::products::rows_with_key_for_update;
use crate::store::upsert_set::{upsert_set, with_race_window, without_pause};

/// The write of an upsert, one statement run after the lock statement: finds the key's rows
/// (locking them), updates the oldest or inserts, and says which it did and how many rows the key
/// had. `{pause}` is empty except in test builds that widen the race window.
const UPSERT_SQL: &str = "\
WITH found AS (
    SELECT id FROM products
    WHERE brand = $1 AND serial = $2 AND manufacturer = $3
    ORDER BY id
    FOR UPDATE
), oldest AS (
    SELECT min(id) AS id, count(*) AS copies FROM found
){pause}, updated AS (
    UPDATE products AS p
    SET name = $4,
        description = coalesce($5, p.description),
        price = coalesce($6::numeric, p.price),
        version = p.version + 1,
        updated_at = now()
    FROM oldest
    WHERE p.id = oldest.id
    RETURNING p.*
), inserted AS (
    INSERT INTO products (brand, serial, manufacturer, name, description, price)
    SELECT $1, $2, $3, $4, coalesce($5, ''), coalesce($6::numeric, 0)
    WHERE NOT EXISTS (SELECT 1 FROM found){pause_guard}
    RETURNING *
)
SELECT updated.*, false AS created, oldest.copies FROM updated, oldest
UNION ALL
SELECT inserted.*, true AS created, 0::bigint AS copies FROM inserted";

/// A row written by [`UPSERT_SQL`].
#[derive(QueryableByName)]
struct UpsertRow {
    #[diesel(embed)]
    product: ProductRow,
    #[diesel(sql_type = Bool)]
    created: bool,
    /// How many rows the key had (0 when created).
    #[diesel(sql_type = BigInt)]
    copies: i64,
}

impl From<UpsertRow> for Upserted {
    fn from(row: UpsertRow) -> Self {
        Self {
            product: row.product.into(),
            created: row.created,
            copies: row.copies,
        }
    }
}

/// Statement name for diesel's statement cache.
struct UpsertStatement;

/// The upsert statement for `input`: production SQL, or in test builds with a race window, the
/// same with a `pg_sleep` between the read and the write.
fn upsert_query<'a>(
    settings: &TxSettings,
    input: &'a ProductInput,
) -> Prepared<'a, UpsertStatement> {
    static PRODUCTION: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| without_pause(UPSERT_SQL));
    let params = vec![
        Some(input.key.brand.as_str().into()),
        Some(input.key.serial.as_str().into()),
        Some(input.key.manufacturer.as_str().into()),
        Some(input.name.as_str().into()),
        input.description.as_deref().map(Into::into),
        input.price.as_ref().map(|p| p.to_string().into()),
    ];
    with_race_window(UPSERT_SQL, &PRODUCTION, settings, params)
}

/// Creates the product with `input.key`, or updates the one that has it, waiting for the key's
/// advisory lock (at most `lock_timeout`).
///
/// Three round trips: `BEGIN`; then, pipelined, the wait bounds, the lock and the write (the
/// server runs them in order, so the write starts, and takes its snapshot, after the lock is
/// granted; that diesel-async sends them in the order they are joined, also when the lock
/// statement still has to be prepared, is pinned down by the test
/// `concurrency::pipelined_statements_run_in_the_order_they_are_joined_when_only_the_later_is_prepared`);
/// then `COMMIT`. When the key's rows were duplicated before the service existed, the
/// oldest (lowest id) is updated and [`Upserted::copies`] says how many there were.
///
/// Returns what it did and how long the lock took (`None` in test builds without it).
///
/// # Errors
/// [`StoreError::Database`] with the first failing statement's error; nothing is written.
pub async fn upsert(
    conn: &mut AsyncPgConnection,
    settings: &TxSettings,
    input: &ProductInput,
) -> Result<(Upserted, Option<Duration>), StoreError> {
    let (row, lock_wait) = conn
        .build_transaction()
        .read_committed()
        .run(async |conn: &mut AsyncPgConnection| {
            let mut pipeline: &AsyncPgConnection = conn;
            let bounds = bound_waits_query(settings).execute(&mut pipeline);
            let lock = settings.takes_advisory_locks().then(|| {
                let asked = Instant::now();
                let granted = lock_key_query(&input.key).execute(&mut pipeline);
                async move { granted.await.map(|_| asked.elapsed()) }
            });
            let write = upsert_query(settings, input).get_result::<UpsertRow>(&mut pipeline);
            let (bounds, lock, write) =
                futures_util::future::join3(bounds, optional(lock), write).await;
            // The first statement to fail says why; the later ones only see an aborted transaction.
            bounds?;
            let waited = lock?;
            Ok::<_, StoreError>((write?, waited))
        })
        .await?;
    Ok((Upserted::from(row), lock_wait))
}

/// Awaits `future`, if there is one.
async fn optional<T, E>(
    future: Option<impl Future<Output = Result<T, E>>>,
) -> Result<Option<T>, E> {
    match future {
        Some(future) => future.await.map(Some),
        None => Ok(None),
    }
}

/// One row of [`try_lock_keys_query`].
#[derive(QueryableByName)]
struct TryLockRow {
    /// Index of the input in the batch.
    #[diesel(sql_type = diesel::sql_types::Integer)]
    input: i32,
    #[diesel(sql_type = Bool)]
    granted: bool,
}

/// Upserts, in one transaction with one commit (group commit), every input whose key is free
/// right now; an input whose key another transaction holds is left alone (`None`), for the
/// caller to try again later, so a key held elsewhere delays only its own requests.
///
/// Four round trips, whatever the number of inputs: `BEGIN`; then, pipelined, the wait bounds
/// and one statement that tries every key's advisory lock (`pg_try_advisory_xact_lock` never
/// waits, so batches cannot deadlock either); then, pipelined, the write's planner settings and
/// one set-based statement that writes every input whose key was granted (it starts, and takes
/// its snapshot, after the lock statement ended; inputs for one key apply as if one after the
/// other, in the order given, and each gets its own version and answer: see
/// `store::upsert_set`); then `COMMIT`. Either all granted inputs commit or none does.
///
/// Returns what each input did, in order (`None`: its key was busy).
///
/// # Errors
/// [`StoreError::Database`] with the first failing statement's error; nothing is written.
pub async fn upsert_free(
    conn: &mut AsyncPgConnection,
    settings: &TxSettings,
    inputs: &[&ProductInput],
) -> Result<Vec<Option<Upserted>>, StoreError> {
    let keys: Vec<&ProductKey> = inputs.iter().map(|input| &input.key).collect();
    conn.build_transaction()
        .read_committed()
        .run(async |conn: &mut AsyncPgConnection| {
            let mut pipeline: &AsyncPgConnection = conn;
            let bounds = bound_waits_query(settings).execute(&mut pipeline);
            let tried = settings
                .takes_advisory_locks()
                .then(|| try_lock_keys_query(&keys).load::<TryLockRow>(&mut pipeline));
            let (bounds, tried) = futures_util::future::join(bounds, optional(tried)).await;
            bounds?;
            // Without locks (a test build's switch), every key counts as granted.
            let tried = tried?;
            let mut granted = vec![tried.is_none(); inputs.len()];
            for row in tried.into_iter().flatten() {
                if let Some(slot) = usize::try_from(row.input)
                    .ok()
                    .and_then(|i| granted.get_mut(i))
                {
                    *slot = row.granted;
                }
            }
            let free: Vec<&ProductInput> = inputs
                .iter()
                .zip(&granted)
                .filter(|(_, granted)| **granted)
                .map(|(input, _)| *input)
                .collect();
            let mut written = upsert_set(pipeline, settings, &free).await?.into_iter();
            let outcomes = granted
                .iter()
                .map(|granted| granted.then(|| written.next()).flatten())
                .collect();
            Ok::<_, StoreError>(outcomes)
        })
        .await
}

/// [`upsert`] under preconditions (`If-Match`, `If-None-Match`): after the key's lock, the key's
/// rows are read and locked, and `preconditions` are checked against the oldest (the one the
/// upsert would update; none when it would create); only if they hold is it written.
///
/// Five round trips (`BEGIN`, the wait bounds, the lock, the read, the write; then `COMMIT`),
/// two more than [`upsert`]: only conditional requests pay them.
///
/// # Errors
/// [`StoreError::PreconditionFailed`] with the current product, nothing written; or as
/// [`upsert`].
pub async fn upsert_if(
    conn: &mut AsyncPgConnection,
    settings: &TxSettings,
    input: &ProductInput,
    preconditions: &Preconditions,
) -> Result<(Upserted, Option<Duration>), StoreError> {
    conn.build_transaction()
        .read_committed()
        .run(async |conn: &mut AsyncPgConnection| {
            bound_waits_query(settings).execute(conn).await?;
            upsert_in(conn, settings, input, preconditions).await
        })
        .await
}

/// Upserts every input of a batch request in one transaction, in the order given, waiting for
/// every key's advisory lock (at most `lock_timeout` in all); either all commit or none does.
///
/// Three round trips, whatever the number of inputs: `BEGIN`; then, pipelined, the wait bounds,
/// one statement that takes the advisory lock of every distinct key in ascending lock-key order
/// ([`lock_keys_query`]: two batches with overlapping keys, in whatever order, cannot deadlock,
/// nor can a batch and a key-changing update, which sorts its keys the same way), the write's
/// planner settings and one set-based statement that writes every input (it starts, and takes
/// its snapshot, after the lock statement ended; inputs apply as if one after the other in array
/// order: a key given twice is created by the first and updated by the second); then `COMMIT`.
/// A key with legacy duplicates updates its oldest row, as a single upsert does.
///
/// Returns what each input did, in order.
///
/// # Errors
/// [`StoreError::Database`] with the first failing statement's error (a lock not granted within
/// `lock_timeout`: SQLSTATE 55P03); nothing is written.
pub async fn upsert_batch(
    conn: &mut AsyncPgConnection,
    settings: &TxSettings,
    inputs: &[ProductInput],
) -> Result<Vec<Upserted>, StoreError> {
    conn.build_transaction()
        .read_committed()
        .run(async |conn: &mut AsyncPgConnection| {
            upsert_batch_in(conn, settings, inputs, true).await
        })
        .await
}

/// The statements of [`upsert_batch`] inside a transaction the caller opened; `bound` says
/// whether to bound its waits here (the caller may have done it already).
///
/// # Errors
/// As [`upsert_batch`].
pub(crate) async fn upsert_batch_in(
    conn: &mut AsyncPgConnection,
    settings: &TxSettings,
    inputs: &[ProductInput],
    bound: bool,
) -> Result<Vec<Upserted>, StoreError> {
    let keys: Vec<&ProductKey> = inputs.iter().map(|input| &input.key).collect();
    let mut pipeline: &AsyncPgConnection = conn;
    let bounds = bound.then(|| bound_waits_query(settings).execute(&mut pipeline));
    let locks = batch_locks(settings, &keys, pipeline);
    let all: Vec<&ProductInput> = inputs.iter().collect();
    let (bounds, locks, written) = futures_util::future::join3(
        optional(bounds),
        locks,
        upsert_set(pipeline, settings, &all),
    )
    .await;
    // The first statement to fail says why; the later ones only see an aborted transaction.
    bounds?;
    locks?;
    Ok(written?)
}

/// The upsert under `preconditions`, inside a transaction the caller opened (and whose waits it
/// bounded): the key's lock in a statement of its own, then the key's rows read and locked, the
/// preconditions checked against the oldest, and the write. Returns what it did and how long
/// the lock took.
///
/// # Errors
/// As [`upsert_if`].
pub(crate) async fn upsert_in(
    conn: &mut AsyncPgConnection,
    settings: &TxSettings,
    input: &ProductInput,
    preconditions: &Preconditions,
) -> Result<(Upserted, Option<Duration>), StoreError> {
    let waited = match settings.takes_advisory_locks() {
        true => {
            let asked = Instant::now();
            lock_key_query(&input.key).execute(conn).await?;
            Some(asked.elapsed())
        }
        false => None,
    };
    let rows = rows_with_key_for_update(conn, &input.key).await?;
    let current = rows.into_iter().next().map(Product::from);
    preconditions
        .check(current.as_ref())
        .map_err(StoreError::PreconditionFailed)?;
    let row = upsert_query(settings, input)
        .get_result::<UpsertRow>(conn)
        .await?;
    Ok((Upserted::from(row), waited))
}

/// The lock statements of a batch, sent on `pipeline`: every distinct key's lock, in ascending
/// lock-key order, in one statement. Test builds can switch the locks off, or take them one
/// statement per key in array order (the deadlock the sorted order prevents).
async fn batch_locks(
    settings: &TxSettings,
    keys: &[&ProductKey],
    mut pipeline: &AsyncPgConnection,
) -> diesel::QueryResult<()> {
    if !settings.takes_advisory_locks() || keys.is_empty() {
        return Ok(());
    }
    #[cfg(feature = "test-hooks")]
    if settings.hooks.batch_locks_in_array_order {
        let mut distinct: Vec<&ProductKey> = Vec::new();
        for key in keys {
            if !distinct.contains(key) {
                distinct.push(key);
            }
        }
        let locks: Vec<_> = distinct
            .into_iter()
            .map(|key| lock_key_query(key).execute(&mut pipeline))
            .collect();
        for lock in futures_util::future::join_all(locks).await {
            lock?;
        }
        return Ok(());
    }
    lock_keys_query(keys).execute(&mut pipeline).await?;
    Ok(())
}
