//! The writes of many upserts in one set-based statement: the write half of group commit and of
//! batch requests, run after (in a later statement than) the one that took their keys' advisory
//! locks.
//!
//! Upserts of one key are folded before the statement: it writes each distinct key once, with
//! the net effect of applying that key's upserts one after the other in the order given (the last
//! name, the last description and price given, the version raised once per upsert). Each upsert's
//! own answer (its version, the fields as it left them, whether it created the product) is then
//! rebuilt from the row as it was before the statement, which the statement returns beside the
//! row as it is after. So a batch costs one statement whatever its size, and its answers are
//! exactly those of the one-statement-per-upsert path it replaces.

use std::collections::HashMap;

use bigdecimal::BigDecimal;
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Nullable, Numeric, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::prepared::Prepared;
use crate::domain::{Price, Product, ProductInput, ProductKey};
use crate::store::locks::TxSettings;
use crate::store::models::{ProductRow, Upserted};

/// One statement that upserts every key of its JSON parameter (an array of
/// `{idx, brand, serial, manufacturer, name, description, price, times}`, keys distinct): it finds
/// and locks each key's rows (one index lookup per key: `LATERAL`), updates the oldest row of
/// each key that has one (raising its version by `times`), inserts the others (with version
/// `times`), and returns each key's row with how many rows the key had and the oldest row's
/// description, price and version before the update (`NULL` when inserted). `{pause}` and
/// `{pause_guard}` are empty except in test builds that widen the race window between the read
/// and the write.
///
/// Per-key semantics are those of the single upsert's statement: `description` and `price`
/// `NULL` keep the stored value (or take the column default on insert), and a key with legacy
/// duplicates updates its oldest row (lowest id).
const UPSERT_SET_SQL: &str = "\
WITH input AS (
    SELECT * FROM pg_catalog.json_to_recordset($1::pg_catalog.json) AS t(
        idx pg_catalog.int4, brand text, serial text, manufacturer text, name text,
        description text, price pg_catalog.numeric, times pg_catalog.int8)
), found AS (
    SELECT input.*, p.id, p.description AS was_description, p.price AS was_price,
        p.version AS was_version
    FROM input LEFT JOIN LATERAL (
        SELECT id, description, price, version FROM products
        WHERE brand = input.brand AND serial = input.serial AND manufacturer = input.manufacturer
        ORDER BY id
        FOR UPDATE
    ) AS p ON true
), oldest AS (
    SELECT DISTINCT ON (idx) *, pg_catalog.count(id) OVER (PARTITION BY idx) AS copies
    FROM found
    ORDER BY idx, id
){pause}, updated AS (
    UPDATE products AS p
    SET name = oldest.name,
        description = coalesce(oldest.description, p.description),
        price = coalesce(oldest.price, p.price),
        version = p.version + oldest.times,
        updated_at = pg_catalog.now()
    FROM oldest
    WHERE p.id = oldest.id
    RETURNING p.*, oldest.copies, oldest.was_description, oldest.was_price, oldest.was_version
), inserted AS (
    INSERT INTO products (brand, serial, manufacturer, name, description, price, version)
    SELECT brand, serial, manufacturer, name, coalesce(description, ''), coalesce(price, 0), times
    FROM oldest
    WHERE id IS NULL{pause_guard}
    ORDER BY idx
    RETURNING *
)
SELECT * FROM updated
UNION ALL
SELECT inserted.*, 0::pg_catalog.int8, NULL::text, NULL::pg_catalog.numeric, NULL::pg_catalog.int8
FROM inserted";

/// The planner settings of the transactions that run [`UPSERT_SET_SQL`] (`SET LOCAL`
/// semantics, through `set_config(..., true)`): no sequential scan, hash join or merge join.
///
/// A connection plans the statement once (a generic plan, PostgreSQL docs, "PREPARE") and keeps
/// that plan; planned while the table is small (a new deployment), it would scan and hash the
/// whole table for every batch once the table has grown, until an `ANALYZE` replans it
/// (measured: 148 us of server CPU per upsert at 20,000 rows, against 12 us with index
/// lookups). Under these settings its one join, the update's, is an index lookup per key
/// whatever the statistics said, as its key lookups are (`LATERAL`).
const INDEX_LOOKUPS_ONLY_SQL: &str = "\
SELECT pg_catalog.set_config('enable_seqscan', 'off', true),
    pg_catalog.set_config('enable_hashjoin', 'off', true),
    pg_catalog.set_config('enable_mergejoin', 'off', true)";

/// Statement names for diesel's statement cache.
struct UpsertSetStatement;
struct IndexLookupsOnlyStatement;

/// One key of the statement's parameter: the fold of that key's upserts.
#[derive(serde::Serialize)]
struct FoldedKey<'a> {
    idx: usize,
    brand: &'a str,
    serial: &'a str,
    manufacturer: &'a str,
    /// The last upsert's name.
    name: &'a str,
    /// The last description given, if any upsert gave one.
    description: Option<&'a str>,
    /// The last price given, as a decimal string, if any upsert gave one.
    price: Option<String>,
    /// How many upserts the key had.
    times: usize,
}

/// A row written by [`UPSERT_SET_SQL`]: a key's row after the statement, and what it was before.
#[derive(QueryableByName)]
struct SetRow {
    #[diesel(embed)]
    product: ProductRow,
    /// How many rows the key had (0 when inserted).
    #[diesel(sql_type = BigInt)]
    copies: i64,
    #[diesel(sql_type = Nullable<Text>)]
    was_description: Option<String>,
    #[diesel(sql_type = Nullable<Numeric>)]
    was_price: Option<BigDecimal>,
    /// `None`: the statement inserted the row.
    #[diesel(sql_type = Nullable<BigInt>)]
    was_version: Option<i64>,
}

/// The inputs grouped by key: each group holds the indexes (into the inputs) of one key's
/// upserts, in the order given; groups in the order of their keys' first upsert.
fn group_by_key(inputs: &[&ProductInput]) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut group_of: HashMap<&ProductKey, usize> = HashMap::with_capacity(inputs.len());
    for (i, input) in inputs.iter().enumerate() {
        let next = groups.len();
        let group = *group_of.entry(&input.key).or_insert(next);
        if group == next {
            groups.push(Vec::with_capacity(1));
        }
        groups[group].push(i);
    }
    groups
}

/// The statement's JSON parameter: each group folded into the key's net write.
fn folded_keys(inputs: &[&ProductInput], groups: &[Vec<usize>]) -> String {
    let keys: Vec<FoldedKey<'_>> = groups
        .iter()
        .enumerate()
        .map(|(idx, group)| {
            let upserts = || group.iter().map(|&i| inputs[i]);
            let first = &inputs[group[0]].key;
            FoldedKey {
                idx,
                brand: &first.brand,
                serial: &first.serial,
                manufacturer: &first.manufacturer,
                name: &inputs[group[group.len() - 1]].name,
                description: upserts().rev().find_map(|u| u.description.as_deref()),
                price: upserts()
                    .rev()
                    .find_map(|u| u.price.as_ref())
                    .map(Price::to_string),
                times: group.len(),
            }
        })
        .collect();
    // Strings and numbers only: serialising cannot fail.
    serde_json::to_string(&keys).unwrap_or_default()
}

/// The statement for `param`: production SQL, or in test builds with a race window, the same
/// with a `pg_sleep` between the read and the write.
fn upsert_set_query(settings: &TxSettings, param: String) -> Prepared<'static, UpsertSetStatement> {
    static PRODUCTION: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| without_pause(UPSERT_SET_SQL));
    with_race_window(
        UPSERT_SET_SQL,
        &PRODUCTION,
        settings,
        vec![Some(param.into())],
    )
}

/// A write statement's `template` with its `{pause}` and `{pause_guard}` removed: what
/// production runs.
pub(crate) fn without_pause(template: &str) -> String {
    template.replace("{pause}", "").replace("{pause_guard}", "")
}

/// The write statement of `template` with `params`: `production` (the template
/// [`without_pause`], made once by the caller), or in test builds with a race window, the
/// template with a `pause` CTE (`pg_sleep`) between the read and the write, which the insert
/// waits for; that one is not cached, as its SQL varies with the setting.
pub(crate) fn with_race_window<'a, Id>(
    template: &str,
    production: &'static str,
    settings: &TxSettings,
    params: Vec<Option<std::borrow::Cow<'a, str>>>,
) -> Prepared<'a, Id> {
    #[cfg(feature = "test-hooks")]
    if settings.hooks.race_window_ms > 0 {
        let pause = format!(
            ", pause AS (SELECT pg_sleep({}) AS slept)",
            settings.hooks.race_window_ms as f64 / 1000.0
        );
        let sql = template
            .replace("{pause}", &pause)
            .replace("{pause_guard}", " AND EXISTS (SELECT 1 FROM pause)");
        let mut query = Prepared::new(sql, params);
        query.cacheable = false;
        return query;
    }
    let _ = (template, settings);
    Prepared::new(production, params)
}

/// The planner settings and the production SQL of the set-based write, for the test that
/// checks the plan a connection keeps for it.
#[cfg(feature = "test-hooks")]
pub fn statements_for_plan_tests() -> (&'static str, String) {
    (INDEX_LOOKUPS_ONLY_SQL, without_pause(UPSERT_SET_SQL))
}

/// Writes `inputs` in one statement and returns what each did, in order: as if each were the
/// single upsert's statement, run one after the other in the order given (an input whose key
/// came earlier in `inputs` sees the earlier one's write: the first creates, the next updates
/// and gets the next version).
///
/// Must run in a transaction that holds the advisory lock of every key in `inputs`, taken in an
/// earlier statement (under READ COMMITTED this statement's snapshot then includes the commit
/// of every earlier holder).
///
/// # Errors
/// The statement's error (a row lock not granted within `lock_timeout`: SQLSTATE 55P03); then
/// nothing of it is written.
pub(crate) async fn upsert_set(
    mut conn: &AsyncPgConnection,
    settings: &TxSettings,
    inputs: &[&ProductInput],
) -> diesel::QueryResult<Vec<Upserted>> {
    if inputs.is_empty() {
        return Ok(Vec::new());
    }
    let groups = group_by_key(inputs);
    let planner = Prepared::<IndexLookupsOnlyStatement>::new(INDEX_LOOKUPS_ONLY_SQL, Vec::new())
        .execute(&mut conn);
    let write = upsert_set_query(settings, folded_keys(inputs, &groups)).load::<SetRow>(&mut conn);
    let (planner, rows) = futures_util::future::join(planner, write).await;
    planner?;
    answers(inputs, &groups, rows?)
}

/// Each input's answer, rebuilt from its key's row before and after the statement.
fn answers(
    inputs: &[&ProductInput],
    groups: &[Vec<usize>],
    rows: Vec<SetRow>,
) -> diesel::QueryResult<Vec<Upserted>> {
    let mut answers: Vec<Option<Upserted>> = vec![None; inputs.len()];
    let mut answered_groups = 0;
    let group_of: HashMap<(&str, &str, &str), &Vec<usize>> = groups
        .iter()
        .map(|group| {
            let key = &inputs[group[0]].key;
            ((&*key.brand, &*key.serial, &*key.manufacturer), group)
        })
        .collect();
    for row in rows {
        let key = (
            row.product.brand.as_str(),
            row.product.serial.as_str(),
            row.product.manufacturer.as_str(),
        );
        let group = *group_of
            .get(&key)
            .ok_or_else(|| unexpected("a row for a key it was not given"))?;
        answered_groups += 1;
        let created = row.was_version.is_none();
        let mut description = row.was_description.unwrap_or_default();
        let mut price = row.was_price.map_or_else(Price::zero, Price::from_decimal);
        let base_version = row.was_version.unwrap_or(0);
        let after = Product::from(row.product);
        for (k, &i) in group.iter().enumerate() {
            let input = inputs[i];
            if let Some(given) = &input.description {
                description.clone_from(given);
            }
            if let Some(given) = &input.price {
                price = given.clone();
            }
            let first = k == 0;
            answers[i] = Some(Upserted {
                product: Product {
                    name: input.name.clone(),
                    description: description.clone(),
                    price: price.clone(),
                    version: base_version + i64::try_from(k + 1).unwrap_or(i64::MAX),
                    ..after.clone()
                },
                created: created && first,
                copies: match (created, first) {
                    (true, true) => 0,
                    (true, false) => 1,
                    (false, _) => row.copies,
                },
            });
        }
    }
    if answered_groups != groups.len() {
        return Err(unexpected("no row for some of its keys"));
    }
    Ok(answers.into_iter().flatten().collect())
}

/// The error for a statement that returned what it cannot have.
fn unexpected(what: &str) -> diesel::result::Error {
    diesel::result::Error::DeserializationError(
        format!("the set-based upsert returned {what}").into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(
        key: &str,
        name: &str,
        description: Option<&str>,
        price: Option<&str>,
    ) -> ProductInput {
        ProductInput {
            key: ProductKey::new(key, "s", "m"),
            name: name.to_owned(),
            description: description.map(str::to_owned),
            price: price.map(|p| Price::parse(p).expect("a valid price")),
            version: None,
        }
    }

    #[test]
    fn groups_keep_the_order_given_within_a_key_and_of_first_appearance_across_keys() {
        let inputs = [
            input("a", "1", None, None),
            input("b", "2", None, None),
            input("a", "3", None, None),
            input("c", "4", None, None),
            input("a", "5", None, None),
        ];
        let refs: Vec<&ProductInput> = inputs.iter().collect();
        assert_eq!(group_by_key(&refs), vec![vec![0, 2, 4], vec![1], vec![3]]);
    }

    #[test]
    fn a_key_folds_to_its_last_name_and_its_last_given_description_and_price() {
        let inputs = [
            input("a", "first", Some("d1"), Some("1.00")),
            input("a", "second", None, Some("2.50")),
            input("a", "third", None, None),
            input("b", "only", None, None),
        ];
        let refs: Vec<&ProductInput> = inputs.iter().collect();
        let param: serde_json::Value =
            serde_json::from_str(&folded_keys(&refs, &group_by_key(&refs))).expect("JSON");
        assert_eq!(
            param,
            serde_json::json!([
                {"idx": 0, "brand": "a", "serial": "s", "manufacturer": "m", "name": "third",
                 "description": "d1", "price": "2.50", "times": 3},
                {"idx": 1, "brand": "b", "serial": "s", "manufacturer": "m", "name": "only",
                 "description": null, "price": null, "times": 1},
            ])
        );
    }
}
