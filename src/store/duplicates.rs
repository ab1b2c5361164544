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

/// Where a duplicate scan stood: the highest ids it could see, of products and of recorded key
/// changes (`product_key_changes`, written by a trigger on every UPDATE that changes a key), and
/// its snapshot's transaction bounds (PostgreSQL docs, section 9.27.4 "Transaction ID and
/// Snapshot Information Functions").
#[derive(Debug, Clone, Copy, PartialEq, Eq, QueryableByName)]
pub struct ScanMark {
    /// The highest product id visible to the scan (0: none).
    #[diesel(sql_type = BigInt)]
    pub product_id: i64,
    /// The highest `product_key_changes` id visible to the scan (0: none).
    #[diesel(sql_type = BigInt)]
    pub change_id: i64,
    /// The oldest transaction still running when the scan's snapshot was taken.
    #[diesel(sql_type = BigInt)]
    pub xmin: i64,
    /// The first transaction id not yet assigned then: every transaction running at the time
    /// has a lower id (or gets its id later, between drawing a row's id and writing the row,
    /// within one statement).
    #[diesel(sql_type = BigInt)]
    pub xmax: i64,
}

impl ScanMark {
    /// Whether every transaction that was running at `earlier`'s snapshot had ended by this
    /// one's: then each row with an id up to `earlier`'s was visible to this scan, if it
    /// committed at all.
    pub fn settles(&self, earlier: &Self) -> bool {
        self.xmin >= earlier.xmax
    }
}

/// What one duplicate scan found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyScan {
    /// The keys that have more than one row, in key order.
    pub duplicated: Vec<ProductKey>,
    /// How many distinct keys the scan looked up (an incremental scan), or `None` (a full scan
    /// groups the whole table).
    pub checked: Option<i64>,
    /// Where the scan stood, for the next incremental scan.
    pub mark: ScanMark,
}

/// The [`ScanMark`] of the transaction's snapshot. Must run inside a REPEATABLE READ
/// transaction, so that the scan that follows sees the same rows.
async fn scan_mark(conn: &mut AsyncPgConnection) -> QueryResult<ScanMark> {
    // txid_* rather than pg_snapshot_* (PostgreSQL 13+): the service supports 12.
    diesel::sql_query(
        "SELECT coalesce((SELECT max(id) FROM products), 0) AS product_id, \
         coalesce((SELECT max(id) FROM product_key_changes), 0) AS change_id, \
         pg_catalog.txid_snapshot_xmin(pg_catalog.txid_current_snapshot()) AS xmin, \
         pg_catalog.txid_snapshot_xmax(pg_catalog.txid_current_snapshot()) AS xmax",
    )
    .get_result(conn)
    .await
}

#[derive(QueryableByName)]
struct KeyRow {
    #[diesel(sql_type = Text)]
    brand: String,
    #[diesel(sql_type = Text)]
    serial: String,
    #[diesel(sql_type = Text)]
    manufacturer: String,
}

impl From<KeyRow> for ProductKey {
    fn from(row: KeyRow) -> Self {
        ProductKey::new(row.brand, row.serial, row.manufacturer)
    }
}

/// The full duplicate scan: every key with more than one row, one `GROUP BY` over the whole
/// table (its cost grows with the table: about 2 s of database time at 2,000,000 rows), in one
/// read-only REPEATABLE READ transaction with its [`ScanMark`].
///
/// # Errors
/// The database error.
pub async fn scan_all_keys(conn: &mut AsyncPgConnection) -> QueryResult<KeyScan> {
    conn.build_transaction()
        .repeatable_read()
        .read_only()
        .run(async |conn: &mut AsyncPgConnection| {
            let mark = scan_mark(conn).await?;
            let rows: Vec<KeyRow> = diesel::sql_query(
                "SELECT brand, serial, manufacturer FROM products \
                 GROUP BY brand, serial, manufacturer HAVING count(*) > 1 \
                 ORDER BY brand, serial, manufacturer",
            )
            .load(conn)
            .await?;
            Ok(KeyScan {
                duplicated: rows.into_iter().map(ProductKey::from).collect(),
                checked: None,
                mark,
            })
        })
        .await
}

/// The incremental duplicate scan: looks up, by the key index, only the keys of rows inserted
/// with an id above `since.product_id`, the keys UPDATEs moved rows onto since
/// `since.change_id`, and the keys in `known` (so that a key merged meanwhile drops out). Its
/// cost grows with the writes since `since` and with `known`, not with the table. In one
/// read-only REPEATABLE READ transaction with its [`ScanMark`].
///
/// # Errors
/// The database error.
pub async fn scan_keys_since(
    conn: &mut AsyncPgConnection,
    since: &ScanMark,
    known: &[ProductKey],
) -> QueryResult<KeyScan> {
    #[derive(QueryableByName)]
    struct Checked {
        #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
        brand: Option<String>,
        #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
        serial: Option<String>,
        #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
        manufacturer: Option<String>,
        #[diesel(sql_type = BigInt)]
        checked: i64,
    }
    let column = |field: fn(&ProductKey) -> &String| -> Vec<&str> {
        known.iter().map(|key| field(key).as_str()).collect()
    };
    let (brands, serials, manufacturers) = (
        column(|k| &k.brand),
        column(|k| &k.serial),
        column(|k| &k.manufacturer),
    );
    conn.build_transaction()
        .repeatable_read()
        .read_only()
        .run(async |conn: &mut AsyncPgConnection| {
            let mark = scan_mark(conn).await?;
            // One row per duplicated key, each with the number of keys checked; a single row of
            // NULLs with that number when none is duplicated. `LIMIT 2`: whether a key has a
            // second row, not how many.
            let rows: Vec<Checked> = diesel::sql_query(
                "WITH candidates AS ( \
                     SELECT brand, serial, manufacturer FROM products WHERE id > $1 \
                     UNION \
                     SELECT brand, serial, manufacturer FROM product_key_changes WHERE id > $2 \
                     UNION \
                     SELECT * FROM unnest($3::text[], $4::text[], $5::text[]) \
                 ), checked AS MATERIALIZED ( \
                     SELECT c.brand, c.serial, c.manufacturer, \
                         (SELECT count(*) FROM (SELECT 1 FROM products AS p \
                          WHERE p.brand = c.brand AND p.serial = c.serial \
                          AND p.manufacturer = c.manufacturer LIMIT 2) AS two) AS copies \
                     FROM candidates AS c \
                 ) \
                 SELECT d.brand, d.serial, d.manufacturer, n.checked \
                 FROM (SELECT count(*) AS checked FROM checked) AS n \
                 LEFT JOIN checked AS d ON d.copies > 1 \
                 ORDER BY d.brand, d.serial, d.manufacturer",
            )
            .bind::<BigInt, _>(since.product_id)
            .bind::<BigInt, _>(since.change_id)
            .bind::<diesel::sql_types::Array<Text>, _>(&brands)
            .bind::<diesel::sql_types::Array<Text>, _>(&serials)
            .bind::<diesel::sql_types::Array<Text>, _>(&manufacturers)
            .load(conn)
            .await?;
            let checked = <[Checked]>::first(&rows).map_or(0, |row| row.checked);
            let duplicated = rows
                .into_iter()
                .filter_map(|row| Some(ProductKey::new(row.brand?, row.serial?, row.manufacturer?)))
                .collect();
            Ok(KeyScan {
                duplicated,
                checked: Some(checked),
                mark,
            })
        })
        .await
}

/// Deletes the recorded key changes older than `age` (the incremental scans of every instance
/// have read them by then, or that instance runs a full scan); how many.
///
/// # Errors
/// The database error.
pub async fn prune_key_changes(
    conn: &mut AsyncPgConnection,
    age: std::time::Duration,
) -> QueryResult<usize> {
    diesel::sql_query(
        "DELETE FROM product_key_changes \
         WHERE changed_at < now() - $1 * interval '1 millisecond'",
    )
    .bind::<BigInt, _>(i64::try_from(age.as_millis()).unwrap_or(i64::MAX))
    .execute(conn)
    .await
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
            // A version at 2^63-1 (set outside the service) cannot be raised: the group fails.
            let next_version = top_version
                .checked_add(1)
                .ok_or(StoreError::VersionExhausted)?;
            let surplus: Vec<i64> = rows.iter().skip(1).map(|row| row.id).collect();
            let kept = diesel::update(products::table.find(oldest.id))
                .set((
                    products::brand.eq(&target.brand),
                    products::serial.eq(&target.serial),
                    products::manufacturer.eq(&target.manufacturer),
                    products::name.eq(&latest.name),
                    products::description.eq(&latest.description),
                    products::price.eq(&latest.price),
                    products::version.eq(next_version),
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
