//! Keys with more than one row (written before the service existed, or by another writer that
//! skipped the lock): counting them, listing them, merging each into its oldest row. And keys
//! that requests name in another spelling (written before key fields were normalised, see
//! [`canonical_key_field`](crate::domain::key::canonical_key_field)): finding them, merging each
//! set of spellings into one row with the canonical key.

use std::collections::{BTreeMap, BTreeSet};

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

/// The rows of one stored spelling of a key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Spelling {
    pub brand: String,
    pub serial: String,
    pub manufacturer: String,
    /// Ascending.
    pub ids: Vec<i64>,
}

impl Spelling {
    /// The key as stored.
    pub fn key(&self) -> ProductKey {
        ProductKey::new(&self.brand, &self.serial, &self.manufacturer)
    }
}

/// The rows of one canonical key (trimmed, NFC) whose stored keys are not all that canonical
/// key: several spellings of one key, or one row that requests can only reach in another
/// spelling (they would create a second row).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SpellingGroup {
    /// The canonical key, the one a merge writes.
    pub brand: String,
    pub serial: String,
    pub manufacturer: String,
    /// Every row of every spelling, ascending; the first is the row a merge keeps.
    pub ids: Vec<i64>,
    /// The stored spellings, the canonical one among them if it has rows, in order of their
    /// oldest row.
    pub spellings: Vec<Spelling>,
}

impl SpellingGroup {
    /// The canonical key.
    pub fn key(&self) -> ProductKey {
        ProductKey::new(&self.brand, &self.serial, &self.manufacturer)
    }

    /// The stored keys, the canonical one included whether it has rows or not: the keys a merge
    /// locks.
    pub fn keys(&self) -> Vec<ProductKey> {
        let mut keys: Vec<ProductKey> = self.spellings.iter().map(Spelling::key).collect();
        let canonical = self.key();
        if !keys.contains(&canonical) {
            keys.push(canonical);
        }
        keys
    }
}

/// A row whose key holds an invisible format character (general category Cf): no request can
/// name that key any more, since key fields refuse such characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnaddressableKey {
    pub id: i64,
    pub key: ProductKey,
    /// Why no request can name it ([`ProductKey::unaddressable`]).
    pub why: String,
}

/// What [`spelling_groups`] found.
#[derive(Debug, Clone, Default)]
pub struct SpellingReport {
    /// Keys stored in a spelling other than their canonical form, oldest first.
    pub groups: Vec<SpellingGroup>,
    /// Rows whose key holds an invisible format character: left as they are (see
    /// [`spelling_groups`]).
    pub unaddressable: Vec<UnaddressableKey>,
}

/// Every key stored in a spelling other than its canonical one (trimmed, NFC), grouped by
/// canonical key with the rows that already have it; and apart, the rows whose key holds an
/// invisible format character.
///
/// Only keys with a character outside ASCII or whitespace at either end can be non-canonical
/// (ASCII text is NFC), so only those rows are read (one scan of the table); their keys are
/// canonicalised here, with the very function requests go through, not with PostgreSQL's
/// `normalize()`, which needs a UTF8 database and the server's Unicode version. Then the rows
/// of each canonical key are read by the key index.
///
/// Keys with an invisible format character are not grouped: removing the character could join
/// products that differ (a zero-width joiner or non-joiner can be part of a word), and keeping it
/// would write a key that no request can name; so they are reported for a person to decide
/// (`PUT /products/{id}` gives such a row a new key).
///
/// # Errors
/// The database error.
pub async fn spelling_groups(conn: &mut AsyncPgConnection) -> QueryResult<SpellingReport> {
    #[derive(QueryableByName)]
    struct KeyRow {
        #[diesel(sql_type = BigInt)]
        id: i64,
        #[diesel(sql_type = Text)]
        brand: String,
        #[diesel(sql_type = Text)]
        serial: String,
        #[diesel(sql_type = Text)]
        manufacturer: String,
    }
    // A byte or character beyond ASCII, or ASCII whitespace at either end. The pattern means
    // the same in a UTF8 and an SQL_ASCII database.
    let rows: Vec<KeyRow> = diesel::sql_query(
        "SELECT id, brand, serial, manufacturer FROM products \
         WHERE brand ~ $1 OR serial ~ $1 OR manufacturer ~ $1 ORDER BY id",
    )
    .bind::<Text, _>(r"[^\x01-\x7f]|^[\x09-\x0d ]|[\x09-\x0d ]$")
    .load(conn)
    .await?;

    let mut report = SpellingReport::default();
    // canonical key -> stored key -> ids
    let mut by_canonical: BTreeMap<ProductKey, BTreeMap<ProductKey, BTreeSet<i64>>> =
        BTreeMap::new();
    for row in rows {
        let key = ProductKey::new(row.brand, row.serial, row.manufacturer);
        let canonical = key.canonical();
        // Rewriting such a key would give it a key no request can name either (a blank one,
        // say): it is left as it is, and reported.
        if let Some(why) = canonical.unaddressable() {
            report.unaddressable.push(UnaddressableKey {
                id: row.id,
                key,
                why,
            });
            continue;
        }
        by_canonical
            .entry(canonical)
            .or_default()
            .entry(key)
            .or_default()
            .insert(row.id);
    }
    for (canonical, mut spellings) in by_canonical {
        if spellings.keys().all(|key| *key == canonical) {
            continue; // already canonical: exact duplicates, if any, are `duplicate_groups`'
        }
        // Rows of the canonical key itself, which may be plain ASCII and so not read above.
        let canonical_ids: Vec<i64> = products::table
            .filter(products::brand.eq(&canonical.brand))
            .filter(products::serial.eq(&canonical.serial))
            .filter(products::manufacturer.eq(&canonical.manufacturer))
            .select(products::id)
            .load(conn)
            .await?;
        if !canonical_ids.is_empty() {
            spellings
                .entry(canonical.clone())
                .or_default()
                .extend(canonical_ids);
        }
        let mut spellings: Vec<Spelling> = spellings
            .into_iter()
            .map(|(key, ids)| Spelling {
                brand: key.brand,
                serial: key.serial,
                manufacturer: key.manufacturer,
                ids: ids.into_iter().collect(),
            })
            .collect();
        spellings.sort_by_key(|spelling| <[i64]>::first(&spelling.ids).copied());
        let mut ids: Vec<i64> = spellings.iter().flat_map(|s| s.ids.clone()).collect();
        ids.sort_unstable();
        report.groups.push(SpellingGroup {
            brand: canonical.brand,
            serial: canonical.serial,
            manufacturer: canonical.manufacturer,
            ids,
            spellings,
        });
    }
    report
        .groups
        .sort_by_key(|group| <[i64]>::first(&group.ids).copied());
    Ok(report)
}

/// What merging one key's rows did.
#[derive(Debug)]
pub struct Merged {
    /// The surviving row (the oldest), as it is after the merge.
    pub kept: Product,
    /// Its key before the merge, when the merge changed it (to the canonical spelling).
    pub old_key: Option<ProductKey>,
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
    merge_into(conn, settings, std::slice::from_ref(key), key).await
}

/// Merges the rows of every spelling in `group` into the oldest one, which gets the canonical
/// key, as [`merge_duplicates`] merges one key's rows. It holds the advisory locks of every
/// stored spelling *and* of the canonical key (in ascending lock-key order, as every multi-key
/// writer), so that no upsert of any of them, the canonical one through the service included,
/// can add a row meanwhile. `None` if nothing is left to do (every row already has the
/// canonical key, and there is at most one).
///
/// # Errors
/// The database error (a lock timeout among them); nothing is changed.
pub async fn merge_spellings(
    conn: &mut AsyncPgConnection,
    settings: &TxSettings,
    group: &SpellingGroup,
) -> Result<Option<Merged>, StoreError> {
    merge_into(conn, settings, &group.keys(), &group.key()).await
}

/// Merges the rows of every key in `keys` (which must include `target`) into the oldest one,
/// which gets the key `target`; in a transaction of its own that holds the advisory locks of
/// all of `keys`.
async fn merge_into(
    conn: &mut AsyncPgConnection,
    settings: &TxSettings,
    keys: &[ProductKey],
    target: &ProductKey,
) -> Result<Option<Merged>, StoreError> {
    conn.build_transaction()
        .read_committed()
        .run(async |conn: &mut AsyncPgConnection| {
            bound_waits(conn, settings).await?;
            let locked: Vec<&ProductKey> = keys.iter().collect();
            lock_keys(conn, &locked).await?;
            let mut rows = Vec::new();
            for key in keys {
                rows.extend(rows_with_key_for_update(conn, key).await?);
            }
            rows.sort_by_key(|row| row.id);
            rows.dedup_by_key(|row| row.id);
            let (Some(oldest), Some(latest), Some(top_version)) = (
                <[ProductRow]>::first(&rows),
                rows.iter().max_by_key(|row| (row.updated_at, row.id)),
                rows.iter().map(|row| row.version).max(),
            ) else {
                return Ok(None);
            };
            let old_key = oldest.key();
            if rows.len() < 2 && old_key == *target {
                return Ok(None);
            }
            let surplus: Vec<i64> = rows.iter().skip(1).map(|row| row.id).collect();
            let kept = diesel::update(products::table.find(oldest.id))
                .set((
                    products::brand.eq(&target.brand),
                    products::serial.eq(&target.serial),
                    products::manufacturer.eq(&target.manufacturer),
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
                old_key: (old_key != *target).then_some(old_key),
                deleted: rows.into_iter().skip(1).map(Product::from).collect(),
            }))
        })
        .await
}
