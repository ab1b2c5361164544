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
//! The upsert sends steps 1's bounds, 2 and 3 pipelined (the server still runs them in order) and
//! does step 3 in one statement, so it costs three round trips.

use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::config::Config;
use crate::domain::{ProductInput, ProductKey, ProductPatch};
use crate::models::{Product, ProductChanges};
use crate::prepared::Prepared;
use crate::schema::products;

/// How often a key-changing update re-reads a row whose key moved under it before giving up.
const MAX_KEY_CHANGE_ATTEMPTS: usize = 8;

/// Errors of the store that callers act on; everything else is a database error.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no product with this id")]
    NotFound,
    #[error("product {existing_id} already has this key")]
    KeyConflict { existing_id: i64 },
    #[error("the row's key kept changing under concurrent writers")]
    KeyKeptMoving,
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
}

/// The bounds every write transaction sets for itself (`SET LOCAL`, so they are safe behind a
/// transaction-pooling PgBouncer).
#[derive(Debug, Clone, Copy)]
pub struct TxSettings {
    pub lock_timeout_ms: u64,
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

/// What an upsert did.
#[derive(Debug)]
pub enum Upserted {
    Created(Product),
    Updated(Product),
}

/// Exact-match filters and a keyset page of `GET /products`.
#[derive(Debug, Default)]
pub struct ListQuery {
    pub brand: Option<String>,
    pub serial: Option<String>,
    pub manufacturer: Option<String>,
    /// Only ids greater than this.
    pub after: Option<i64>,
    pub limit: i64,
}

/// Statement names for diesel's statement cache.
struct BoundWaitsStatement;
struct LockKeyStatement;
struct UpsertStatement;

/// The statement that bounds every lock wait and every statement of the transaction it runs in.
fn bound_waits_query(settings: &TxSettings) -> Prepared<'static, BoundWaitsStatement> {
    Prepared::new(
        "SELECT set_config('lock_timeout', $1, true), set_config('statement_timeout', $2, true)",
        vec![
            Some(settings.lock_timeout_ms.to_string().into()),
            Some(settings.statement_timeout_ms.to_string().into()),
        ],
    )
}

/// Must run inside a transaction: bounds every lock wait and every statement of it.
async fn bound_waits(conn: &mut AsyncPgConnection, settings: &TxSettings) -> QueryResult<()> {
    bound_waits_query(settings).execute(conn).await?;
    Ok(())
}

/// The statement that takes a key's advisory lock until the transaction ends.
fn lock_key_query(key: &ProductKey) -> Prepared<'_, LockKeyStatement> {
    Prepared::new(
        "SELECT pg_advisory_xact_lock(product_lock_key($1, $2, $3))",
        vec![
            Some(key.brand.as_str().into()),
            Some(key.serial.as_str().into()),
            Some(key.manufacturer.as_str().into()),
        ],
    )
}

/// Must run inside a transaction: takes the key's advisory lock until it ends.
///
/// This is a statement of its own on purpose: under READ COMMITTED the *next* statement takes a
/// fresh snapshot, which includes the commit of whoever held the lock before us.
async fn lock_key(conn: &mut AsyncPgConnection, key: &ProductKey) -> QueryResult<()> {
    lock_key_query(key).execute(conn).await?;
    Ok(())
}

/// Must run inside a transaction: takes the locks of two keys in ascending lock-key order, so
/// that two transactions needing the same pair cannot deadlock.
async fn lock_two_keys(
    conn: &mut AsyncPgConnection,
    a: &ProductKey,
    b: &ProductKey,
) -> QueryResult<()> {
    #[derive(QueryableByName)]
    struct LockKeys {
        #[diesel(sql_type = BigInt)]
        a: i64,
        #[diesel(sql_type = BigInt)]
        b: i64,
    }
    let keys: LockKeys = diesel::sql_query(
        "SELECT product_lock_key($1, $2, $3) AS a, product_lock_key($4, $5, $6) AS b",
    )
    .bind::<Text, _>(&a.brand)
    .bind::<Text, _>(&a.serial)
    .bind::<Text, _>(&a.manufacturer)
    .bind::<Text, _>(&b.brand)
    .bind::<Text, _>(&b.serial)
    .bind::<Text, _>(&b.manufacturer)
    .get_result(conn)
    .await?;
    let mut ordered = [keys.a, keys.b];
    ordered.sort_unstable();
    for (i, lock) in ordered.iter().enumerate() {
        // Two keys may share a lock key (a hash collision): take it once.
        if i == 0 || *lock != ordered[0] {
            diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
                .bind::<BigInt, _>(*lock)
                .execute(conn)
                .await?;
        }
    }
    Ok(())
}

/// The rows holding `key`, oldest first, locked for update.
async fn rows_with_key_for_update(
    conn: &mut AsyncPgConnection,
    key: &ProductKey,
) -> QueryResult<Vec<Product>> {
    products::table
        .filter(products::brand.eq(&key.brand))
        .filter(products::serial.eq(&key.serial))
        .filter(products::manufacturer.eq(&key.manufacturer))
        .order(products::id.asc())
        .for_update()
        .select(Product::as_select())
        .load(conn)
        .await
}

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
    product: Product,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    created: bool,
    /// How many rows the key had (0 when created).
    #[diesel(sql_type = BigInt)]
    copies: i64,
}

/// The upsert statement for `input`: production SQL, or in test builds with a race window, the
/// same with a `pg_sleep` between the read and the write.
fn upsert_query<'a>(
    settings: &TxSettings,
    input: &'a ProductInput,
) -> Prepared<'a, UpsertStatement> {
    static PRODUCTION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        UPSERT_SQL
            .replace("{pause}", "")
            .replace("{pause_guard}", "")
    });
    let params = vec![
        Some(input.key.brand.as_str().into()),
        Some(input.key.serial.as_str().into()),
        Some(input.key.manufacturer.as_str().into()),
        Some(input.name.as_str().into()),
        input.description.as_deref().map(Into::into),
        input.price.as_ref().map(|p| p.to_string().into()),
    ];
    #[cfg(feature = "test-hooks")]
    if settings.hooks.race_window_ms > 0 {
        let pause = format!(
            ", pause AS (SELECT pg_sleep({}) AS slept)",
            settings.hooks.race_window_ms as f64 / 1000.0
        );
        let sql = UPSERT_SQL
            .replace("{pause}", &pause)
            .replace("{pause_guard}", " AND EXISTS (SELECT 1 FROM pause)");
        let mut query = Prepared::new(sql, params);
        query.cacheable = false;
        return query;
    }
    let _ = settings;
    Prepared::new(PRODUCTION.as_str(), params)
}

/// Logs, once per request, that `key` had `copies` rows (written outside the service) and that
/// the oldest, `kept_id`, was updated.
pub fn warn_if_duplicated(key: &ProductKey, copies: i64, kept_id: i64) {
    if copies > 1 {
        log::warn!(
            "key {key:?} has {copies} rows (duplicated outside this service); updated the oldest, \
             id {kept_id}; run `product-service dedupe` to merge them"
        );
    }
}

/// Creates the product with `input.key`, or updates it if it exists.
///
/// Three round trips: `BEGIN`; then, pipelined, the bounds, the lock and the write (the server
/// runs them in order, so the write still starts, and takes its snapshot, after the lock is
/// granted); then `COMMIT`. When rows were duplicated before the service existed, the oldest
/// (lowest id) is updated and a warning names the key and the count.
/// Returns what it did and how long the advisory lock took (`None` in test builds without it).
pub async fn upsert(
    conn: &mut AsyncPgConnection,
    settings: &TxSettings,
    input: &ProductInput,
) -> Result<(Upserted, Option<Duration>), StoreError> {
    #[cfg(feature = "test-hooks")]
    let take_lock = !settings.hooks.disable_advisory_lock;
    #[cfg(not(feature = "test-hooks"))]
    let take_lock = true;
    let row = conn
        .build_transaction()
        .read_committed()
        .run(async |conn: &mut AsyncPgConnection| {
            let mut pipeline: &AsyncPgConnection = conn;
            let bounds = bound_waits_query(settings).execute(&mut pipeline);
            let lock = take_lock.then(|| {
                let asked = Instant::now();
                let granted = lock_key_query(&input.key).execute(&mut pipeline);
                async move { granted.await.map(|_| asked.elapsed()) }
            });
            let write = upsert_query(settings, input).get_result::<UpsertRow>(&mut pipeline);
            let lock = async move {
                match lock {
                    Some(lock) => lock.await.map(Some),
                    None => Ok(None),
                }
            };
            let (bounds, lock, write) = futures_util::future::join3(bounds, lock, write).await;
            // The first statement to fail says why; the later ones only see an aborted transaction.
            bounds?;
            let waited = lock?;
            Ok::<_, StoreError>((write?, waited))
        })
        .await?;
    let (row, lock_wait) = row;
    warn_if_duplicated(&input.key, row.copies, row.product.id);
    let outcome = if row.created {
        Upserted::Created(row.product)
    } else {
        Upserted::Updated(row.product)
    };
    Ok((outcome, lock_wait))
}

/// Must run inside a transaction that holds the row's key lock: writes `changes`, bumps the
/// version and `updated_at`.
async fn update_row(
    conn: &mut AsyncPgConnection,
    id: i64,
    changes: ProductChanges<'_>,
) -> QueryResult<Product> {
    diesel::update(products::table.find(id))
        .set((
            changes,
            products::version.eq(products::version + 1),
            products::updated_at.eq(diesel::dsl::now),
        ))
        .returning(Product::as_returning())
        .get_result(conn)
        .await
}

/// Applies `patch` to the product `id` (PUT is a patch that names every field).
///
/// Takes the lock of the row's key and, when the patch changes it, of the new key too (in a fixed
/// order); answers [`StoreError::KeyConflict`] when another row already holds the new key, so no
/// update can create a duplicate.
pub async fn update(
    conn: &mut AsyncPgConnection,
    settings: &TxSettings,
    id: i64,
    patch: &ProductPatch,
) -> Result<Product, StoreError> {
    for _ in 0..MAX_KEY_CHANGE_ATTEMPTS {
        let attempt = conn
            .build_transaction()
            .read_committed()
            .run(async |conn: &mut AsyncPgConnection| {
                bound_waits(conn, settings).await?;
                let current = find(conn, id).await?.ok_or(StoreError::NotFound)?;
                let old_key = current.key();
                let new_key = patch.key_over(&old_key);
                if new_key == old_key {
                    lock_key(conn, &old_key).await?;
                } else {
                    lock_two_keys(conn, &old_key, &new_key).await?;
                }
                let locked = products::table
                    .find(id)
                    .for_update()
                    .select(Product::as_select())
                    .first(conn)
                    .await
                    .optional()?
                    .ok_or(StoreError::NotFound)?;
                if locked.key() != old_key {
                    // Another writer moved the row after we read it: we hold the wrong lock.
                    return Ok(None);
                }
                if new_key != old_key {
                    let holders = rows_with_key_for_update(conn, &new_key).await?;
                    if let Some(other) = <[Product]>::first(&holders) {
                        return Err(StoreError::KeyConflict {
                            existing_id: other.id,
                        });
                    }
                }
                Ok(Some(
                    update_row(conn, id, ProductChanges::from(patch)).await?,
                ))
            })
            .await?;
        if let Some(product) = attempt {
            return Ok(product);
        }
    }
    Err(StoreError::KeyKeptMoving)
}

/// Deletes the product `id`; `false` if there was none.
pub async fn delete(
    conn: &mut AsyncPgConnection,
    settings: &TxSettings,
    id: i64,
) -> Result<bool, StoreError> {
    conn.build_transaction()
        .read_committed()
        .run(async |conn: &mut AsyncPgConnection| {
            bound_waits(conn, settings).await?;
            let deleted = diesel::delete(products::table.find(id))
                .execute(conn)
                .await?;
            Ok(deleted > 0)
        })
        .await
}

/// The product `id`, if any.
pub async fn find(conn: &mut AsyncPgConnection, id: i64) -> QueryResult<Option<Product>> {
    products::table
        .find(id)
        .select(Product::as_select())
        .first(conn)
        .await
        .optional()
}

/// Statement name of a list query; `FILTERS` says which conditions it has (bits: brand 1,
/// serial 2, manufacturer 4, after 8), so each combination is prepared once per connection.
struct ListStatement<const FILTERS: u8>;

/// One page of products in id order, filtered by exact key fields.
pub async fn list(conn: &mut AsyncPgConnection, query: &ListQuery) -> QueryResult<Vec<Product>> {
    let filters = u8::from(query.brand.is_some())
        | u8::from(query.serial.is_some()) << 1
        | u8::from(query.manufacturer.is_some()) << 2
        | u8::from(query.after.is_some()) << 3;
    // One statement per combination of conditions, so that each can use the key index.
    match filters {
        0 => list_with::<0>(conn, query).await,
        1 => list_with::<1>(conn, query).await,
        2 => list_with::<2>(conn, query).await,
        3 => list_with::<3>(conn, query).await,
        4 => list_with::<4>(conn, query).await,
        5 => list_with::<5>(conn, query).await,
        6 => list_with::<6>(conn, query).await,
        7 => list_with::<7>(conn, query).await,
        8 => list_with::<8>(conn, query).await,
        9 => list_with::<9>(conn, query).await,
        10 => list_with::<10>(conn, query).await,
        11 => list_with::<11>(conn, query).await,
        12 => list_with::<12>(conn, query).await,
        13 => list_with::<13>(conn, query).await,
        14 => list_with::<14>(conn, query).await,
        _ => list_with::<15>(conn, query).await,
    }
}

async fn list_with<const FILTERS: u8>(
    conn: &mut AsyncPgConnection,
    query: &ListQuery,
) -> QueryResult<Vec<Product>> {
    let mut conditions = Vec::new();
    let mut params: Vec<Option<std::borrow::Cow<'_, str>>> = Vec::new();
    let mut condition = |sql: &str, value: std::borrow::Cow<'static, str>| {
        params.push(Some(value));
        conditions.push(sql.replace('?', &format!("${}", params.len())));
    };
    if let Some(brand) = &query.brand {
        condition("brand = ?", brand.clone().into());
    }
    if let Some(serial) = &query.serial {
        condition("serial = ?", serial.clone().into());
    }
    if let Some(manufacturer) = &query.manufacturer {
        condition("manufacturer = ?", manufacturer.clone().into());
    }
    if let Some(after) = query.after {
        condition("id > ?::bigint", after.to_string().into());
    }
    let mut sql = String::from(
        "SELECT id, brand, serial, manufacturer, name, description, price, version, created_at, \
         updated_at FROM products",
    );
    if !conditions.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conditions.join(" AND "));
    }
    params.push(Some(query.limit.to_string().into()));
    sql.push_str(&format!(" ORDER BY id LIMIT ${}::bigint", params.len()));
    Prepared::<ListStatement<FILTERS>>::new(sql, params)
        .load(conn)
        .await
}

/// Whether the migration `version` is recorded as applied.
pub async fn migration_applied(conn: &mut AsyncPgConnection, version: &str) -> QueryResult<bool> {
    #[derive(QueryableByName)]
    struct Applied {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        applied: bool,
    }
    let row: Applied = diesel::sql_query(
        "SELECT EXISTS (SELECT 1 FROM __diesel_schema_migrations WHERE version = $1) AS applied",
    )
    .bind::<Text, _>(version)
    .get_result(conn)
    .await?;
    Ok(row.applied)
}

/// How many keys have more than one row. Groups by the natural-key index's columns, so
/// PostgreSQL can answer from the index.
pub async fn duplicate_key_groups(conn: &mut AsyncPgConnection) -> QueryResult<i64> {
    #[derive(QueryableByName)]
    struct Groups {
        #[diesel(sql_type = BigInt)]
        groups: i64,
    }
    let row: Groups = diesel::sql_query(
        "SELECT count(*) AS groups FROM (SELECT 1 FROM products \
         GROUP BY brand, serial, manufacturer HAVING count(*) > 1) AS duplicated",
    )
    .get_result(conn)
    .await?;
    Ok(row.groups)
}

/// The rows of one key that has more than one.
#[derive(Debug, Clone, QueryableByName, serde::Serialize)]
pub struct DuplicateGroup {
    #[diesel(sql_type = Text)]
    pub brand: String,
    #[diesel(sql_type = Text)]
    pub serial: String,
    #[diesel(sql_type = Text)]
    pub manufacturer: String,
    /// Ascending; the first is the row a merge keeps.
    #[diesel(sql_type = diesel::sql_types::Array<BigInt>)]
    pub ids: Vec<i64>,
}

impl DuplicateGroup {
    /// The key the rows share.
    pub fn key(&self) -> ProductKey {
        ProductKey {
            brand: self.brand.clone(),
            serial: self.serial.clone(),
            manufacturer: self.manufacturer.clone(),
        }
    }
}

/// Every key with more than one row, oldest first.
pub async fn duplicate_groups(conn: &mut AsyncPgConnection) -> QueryResult<Vec<DuplicateGroup>> {
    diesel::sql_query(
        "SELECT brand, serial, manufacturer, array_agg(id ORDER BY id) AS ids FROM products \
         GROUP BY brand, serial, manufacturer HAVING count(*) > 1 ORDER BY min(id)",
    )
    .load(conn)
    .await
}

/// What merging one key's rows did.
#[derive(Debug)]
pub struct Merged {
    /// The surviving row (the oldest), as it is after the merge.
    pub kept: Product,
    /// The rows deleted, as they were.
    pub deleted: Vec<Product>,
}

/// Merges the rows of `key` into the oldest one, under the key's advisory lock (so it is safe
/// while the service runs): the oldest row takes the field values of the most recently updated
/// row, the group's highest version + 1 and `updated_at = now()`; the others are deleted.
/// `None` if the key no longer has several rows.
pub async fn merge_duplicates(
    conn: &mut AsyncPgConnection,
    settings: &TxSettings,
    key: &ProductKey,
) -> Result<Option<Merged>, StoreError> {
    conn.build_transaction()
        .read_committed()
        .run(async |conn: &mut AsyncPgConnection| {
            bound_waits(conn, settings).await?;
            lock_key(conn, key).await?;
            let rows = rows_with_key_for_update(conn, key).await?;
            let (Some(oldest), Some(latest), Some(top_version)) = (
                <[Product]>::first(&rows),
                rows.iter().max_by_key(|row| (row.updated_at, row.id)),
                rows.iter().map(|row| row.version).max(),
            ) else {
                return Ok(None);
            };
            if rows.len() < 2 {
                return Ok(None);
            }
            let surplus: Vec<i64> = rows.iter().skip(1).map(|row| row.id).collect();
            let kept = diesel::update(products::table.find(oldest.id))
                .set((
                    products::name.eq(&latest.name),
                    products::description.eq(&latest.description),
                    products::price.eq(&latest.price),
                    products::version.eq(top_version + 1),
                    products::updated_at.eq(diesel::dsl::now),
                ))
                .returning(Product::as_returning())
                .get_result(conn)
                .await?;
            diesel::delete(products::table.filter(products::id.eq_any(&surplus)))
                .execute(conn)
                .await?;
            Ok(Some(Merged {
                kept,
                deleted: rows.into_iter().skip(1).collect(),
            }))
        })
        .await
}

/// Struct name for diesel's statement cache.
struct LockKeysStatement;

/// The statement that takes the advisory locks of several keys, in ascending lock-key order (as
/// every multi-key writer here does, so two of them cannot deadlock), each once.
fn lock_keys_query(keys: &[&ProductKey]) -> Prepared<'static, LockKeysStatement> {
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

/// Upserts several products in one transaction with one commit (group commit).
///
/// Takes every key's advisory lock first, in ascending lock-key order, then applies the upserts
/// in the order given, each as its own statement (pipelined), so that requests for one key apply
/// one after the other and each gets its own version. Either all commit or none does. Returns,
/// for each input, what it did and how many rows its key had (see [`warn_if_duplicated`]).
pub async fn upsert_batch(
    conn: &mut AsyncPgConnection,
    settings: &TxSettings,
    inputs: &[&ProductInput],
) -> Result<(Vec<(Upserted, i64)>, Option<Duration>), StoreError> {
    #[cfg(feature = "test-hooks")]
    let take_locks = !settings.hooks.disable_advisory_lock;
    #[cfg(not(feature = "test-hooks"))]
    let take_locks = true;
    let keys: Vec<&ProductKey> = inputs.iter().map(|input| &input.key).collect();
    let (rows, lock_wait) = conn
        .build_transaction()
        .read_committed()
        .run(async |conn: &mut AsyncPgConnection| {
            let mut pipeline: &AsyncPgConnection = conn;
            let bounds = bound_waits_query(settings).execute(&mut pipeline);
            let lock = take_locks.then(|| {
                let asked = Instant::now();
                let granted = lock_keys_query(&keys).execute(&mut pipeline);
                async move { granted.await.map(|_| asked.elapsed()) }
            });
            let writes: Vec<_> = inputs
                .iter()
                .map(|input| upsert_query(settings, input).get_result::<UpsertRow>(&mut pipeline))
                .collect();
            let lock = async move {
                match lock {
                    Some(lock) => lock.await.map(Some),
                    None => Ok(None),
                }
            };
            let (bounds, lock, writes) =
                futures_util::future::join3(bounds, lock, futures_util::future::join_all(writes))
                    .await;
            // The first statement to fail says why; the later ones only see an aborted transaction.
            bounds?;
            let waited = lock?;
            let rows = writes
                .into_iter()
                .collect::<QueryResult<Vec<UpsertRow>>>()?;
            Ok::<_, StoreError>((rows, waited))
        })
        .await?;
    let outcomes = rows
        .into_iter()
        .map(|row| {
            let copies = row.copies;
            let upserted = if row.created {
                Upserted::Created(row.product)
            } else {
                Upserted::Updated(row.product)
            };
            (upserted, copies)
        })
        .collect();
    Ok((outcomes, lock_wait))
}
