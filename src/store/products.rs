//! Products by id: read, update (PUT and PATCH), delete; and the filtered, paged list.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::prepared::Prepared;
use crate::db::schema::products;
use crate::domain::input::MAX_KEY_BYTES;
use crate::domain::{ListQuery, Preconditions, Product, ProductKey, ProductPatch};
use crate::store::error::StoreError;
use crate::store::locks::{TxSettings, bound_waits, lock_keys};
use crate::store::models::{ProductChanges, ProductRow};

/// How often a key-changing update re-reads a row whose key moved under it before giving up.
const MAX_KEY_CHANGE_ATTEMPTS: usize = 8;

/// The product `id`, if any.
pub async fn find(conn: &mut AsyncPgConnection, id: i64) -> QueryResult<Option<Product>> {
    let row = products::table
        .find(id)
        .select(ProductRow::as_select())
        .first(conn)
        .await
        .optional()?;
    Ok(row.map(Product::from))
}

/// Must run inside a transaction that holds the row's key lock: writes `changes`, bumps the
/// version and `updated_at`.
async fn update_row(
    conn: &mut AsyncPgConnection,
    id: i64,
    changes: ProductChanges<'_>,
) -> QueryResult<ProductRow> {
    diesel::update(products::table.find(id))
        .set((
            changes,
            products::version.eq(products::version + 1),
            products::updated_at.eq(diesel::dsl::now),
        ))
        .returning(ProductRow::as_returning())
        .get_result(conn)
        .await
}

/// Applies `patch` to the product `id` (PUT is a patch that names every field).
///
/// Takes the lock of the row's key and, when the patch changes it, of the new key too (in a fixed
/// order); answers [`StoreError::KeyConflict`] when another row already holds the new key, so no
/// update can create a duplicate.
///
/// `preconditions` are checked against the row once it is locked.
///
/// # Errors
/// [`StoreError::KeyTooLarge`] when the patched key is over `MAX_KEY_BYTES`;
/// [`StoreError::NotFound`], [`StoreError::PreconditionFailed`], [`StoreError::KeyConflict`],
/// [`StoreError::KeyKeptMoving`] after [`MAX_KEY_CHANGE_ATTEMPTS`] tries, or the database
/// error.
pub async fn update(
    conn: &mut AsyncPgConnection,
    settings: &TxSettings,
    id: i64,
    patch: &ProductPatch,
    preconditions: &Preconditions,
) -> Result<Product, StoreError> {
    for _ in 0..MAX_KEY_CHANGE_ATTEMPTS {
        let attempt = conn
            .build_transaction()
            .read_committed()
            .run(async |conn: &mut AsyncPgConnection| {
                bound_waits(conn, settings).await?;
                let current = find(conn, id)
                    .await?
                    .ok_or_else(|| missing(preconditions))?;
                let old_key = current.key();
                let new_key = patch.key_over(&old_key);
                // The patch's fields were checked alone; beside the stored ones they may pass
                // the limit every whole key is held to (the index would take up to ~2,704).
                if new_key != old_key && new_key.utf8_len() > MAX_KEY_BYTES {
                    return Err(StoreError::KeyTooLarge);
                }
                let keys = if new_key == old_key {
                    vec![&old_key]
                } else {
                    vec![&old_key, &new_key]
                };
                lock_keys(conn, &keys).await?;
                let locked = row_for_update(conn, id)
                    .await?
                    .ok_or_else(|| missing(preconditions))?;
                if locked.key() != old_key {
                    // Another writer moved the row after we read it: we hold the wrong lock.
                    return Ok(None);
                }
                preconditions
                    .check(Some(&Product::from(locked)))
                    .map_err(StoreError::PreconditionFailed)?;
                if new_key != old_key {
                    let holders = rows_with_key_for_update(conn, &new_key).await?;
                    if let Some(other) = <[ProductRow]>::first(&holders) {
                        return Err(StoreError::KeyConflict {
                            existing_id: other.id,
                        });
                    }
                }
                let mut changes = ProductChanges::from(patch);
                if new_key != old_key {
                    // The whole new key, not only the fields the patch names: `key_over` puts
                    // the fields it keeps in canonical form too, and that is the key we locked.
                    changes.brand = Some(&new_key.brand);
                    changes.serial = Some(&new_key.serial);
                    changes.manufacturer = Some(&new_key.manufacturer);
                }
                let updated = update_row(conn, id, changes).await?;
                Ok(Some(Product::from(updated)))
            })
            .await?;
        if let Some(product) = attempt {
            return Ok(product);
        }
    }
    Err(StoreError::KeyKeptMoving)
}

/// The row of product `id`, locked for update, if there is one.
async fn row_for_update(conn: &mut AsyncPgConnection, id: i64) -> QueryResult<Option<ProductRow>> {
    products::table
        .find(id)
        .for_update()
        .select(ProductRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// Why a write of a product that is not there fails: a precondition that needs it (`If-Match`,
/// a `version`) is false, 412 (RFC 9110, section 13.1.1); else it is not found, 404.
fn missing(preconditions: &Preconditions) -> StoreError {
    match preconditions.check(None) {
        Err(failed) => StoreError::PreconditionFailed(failed),
        Ok(()) => StoreError::NotFound,
    }
}

/// Deletes the product `id`; `false` if there was none. With `preconditions`, the row is
/// locked and they are checked first.
///
/// # Errors
/// [`StoreError::PreconditionFailed`], or the database error.
pub async fn delete(
    conn: &mut AsyncPgConnection,
    settings: &TxSettings,
    id: i64,
    preconditions: &Preconditions,
) -> Result<bool, StoreError> {
    conn.build_transaction()
        .read_committed()
        .run(async |conn: &mut AsyncPgConnection| {
            bound_waits(conn, settings).await?;
            if !preconditions.is_empty() {
                let Some(locked) = row_for_update(conn, id).await? else {
                    // `If-Match` or a version on a product that is not there is false (412).
                    preconditions
                        .check(None)
                        .map_err(StoreError::PreconditionFailed)?;
                    return Ok(false);
                };
                preconditions
                    .check(Some(&Product::from(locked)))
                    .map_err(StoreError::PreconditionFailed)?;
            }
            let deleted = diesel::delete(products::table.find(id))
                .execute(conn)
                .await?;
            Ok(deleted > 0)
        })
        .await
}

/// Must run inside a transaction that holds `key`'s advisory lock: the rows holding `key`,
/// oldest first, locked for update.
pub(crate) async fn rows_with_key_for_update(
    conn: &mut AsyncPgConnection,
    key: &ProductKey,
) -> QueryResult<Vec<ProductRow>> {
    products::table
        .filter(products::brand.eq(&key.brand))
        .filter(products::serial.eq(&key.serial))
        .filter(products::manufacturer.eq(&key.manufacturer))
        .order(products::id.asc())
        .for_update()
        .select(ProductRow::as_select())
        .load(conn)
        .await
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
    // One statement per combination of conditions, so that each has a plan of its own, on the
    // index made for it (migration `list_filter_indexes`).
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
    let ListSql { sql, params } = list_sql(query);
    let params = params.into_iter().map(|p| Some(p.into())).collect();
    let rows: Vec<ProductRow> = Prepared::<ListStatement<FILTERS>>::new(sql, params)
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(Product::from).collect())
}

/// The statement a list query runs: SQL with `$1`..`$n` placeholders, and their values, each
/// bound as `text` (cast in the SQL where another type is meant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListSql {
    /// The statement, `$1`..`$n` its placeholders.
    pub sql: String,
    /// `params[n - 1]` is the value of `$n`.
    pub params: Vec<String>,
}

/// The exact statement [`list`] runs for `query`: one equality per key-field filter (in the
/// "C" collation unless brand and serial are both given, to match the list's indexes), `id > $n`
/// for `after`, `ORDER BY id LIMIT $n`. Public so that a test can ask PostgreSQL for its plan
/// (every combination of filters must be an index lookup, see the migration
/// `list_filter_indexes`).
pub fn list_sql(query: &ListQuery) -> ListSql {
    // Brand and serial together: the key index (default collation) finds a handful of rows.
    // Otherwise the list's own indexes, which are in the "C" collation so that no other query
    // (a key lookup, whose `manufacturer = 'M'` a stale statistic can make look rare) can be
    // planned on them. Equality is the same in every deterministic collation: byte equality.
    let collate = if query.brand.is_some() && query.serial.is_some() {
        ""
    } else {
        " COLLATE \"C\""
    };
    let mut conditions = Vec::new();
    let mut params = Vec::new();
    let mut condition = |sql: &str, value: String| {
        params.push(value);
        conditions.push(sql.replace('?', &format!("${}", params.len())));
    };
    if let Some(brand) = &query.brand {
        condition(&format!("brand{collate} = ?"), brand.clone());
    }
    if let Some(serial) = &query.serial {
        condition(&format!("serial{collate} = ?"), serial.clone());
    }
    if let Some(manufacturer) = &query.manufacturer {
        condition(&format!("manufacturer{collate} = ?"), manufacturer.clone());
    }
    if let Some(after) = query.after {
        condition("id > ?::bigint", after.to_string());
    }
    let mut sql = String::from(
        "SELECT id, brand, serial, manufacturer, name, description, price, version, created_at, \
         updated_at FROM products",
    );
    if !conditions.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conditions.join(" AND "));
    }
    params.push(query.limit.to_string());
    sql.push_str(&format!(" ORDER BY id LIMIT ${}::bigint", params.len()));
    ListSql { sql, params }
}
