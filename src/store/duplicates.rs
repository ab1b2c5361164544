//! Keys with more than one row (written before the service existed, or by another writer that
//! skipped the lock): counting them, listing them, merging each into its oldest row.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::schema::products;
use crate::domain::{Product, ProductKey};
use crate::store::error::StoreError;
use crate::store::locks::{TxSettings, bound_waits, lock_keys};
use crate::store::models::ProductRow;
use crate::store::products::rows_with_key_for_update;

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
        ProductKey::new(&self.brand, &self.serial, &self.manufacturer)
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
///
/// # Errors
/// The database error (a lock timeout among them); nothing is changed.
pub async fn merge_duplicates(
    conn: &mut AsyncPgConnection,
    settings: &TxSettings,
    key: &ProductKey,
) -> Result<Option<Merged>, StoreError> {
    conn.build_transaction()
        .read_committed()
        .run(async |conn: &mut AsyncPgConnection| {
            bound_waits(conn, settings).await?;
            lock_keys(conn, &[key]).await?;
            let rows = rows_with_key_for_update(conn, key).await?;
            let (Some(oldest), Some(latest), Some(top_version)) = (
                <[ProductRow]>::first(&rows),
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
                .returning(ProductRow::as_returning())
                .get_result(conn)
                .await?;
            diesel::delete(products::table.filter(products::id.eq_any(&surplus)))
                .execute(conn)
                .await?;
            Ok(Some(Merged {
                kept: kept.into(),
                deleted: rows.into_iter().skip(1).map(Product::from).collect(),
            }))
        })
        .await
}
