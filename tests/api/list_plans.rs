//! Reads that do not grow with the table: every combination of the list filters is an index
//! lookup, asked of PostgreSQL's planner for the exact statement `GET /products` runs.

use diesel::QueryableByName;
use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use product_service::domain::ListQuery;
use product_service::store::products::list_sql;
use serde_json::Value;

use crate::helpers::spawn_app;

/// Rows preloaded: enough that, with no index for a filter, the planner reads the whole table
/// (a Seq Scan, or the primary key in id order with the filter applied to every row).
const ROWS: i64 = 60_000;

/// Brands of 500 rows, 600 manufacturers of 100 rows, one serial per row: as in `bench/run.sh
/// --rows`, a brand or a manufacturer is a large group and a serial a small one. With few
/// manufacturers the planner may read the primary key in id order and filter, which finds a page
/// of a common one quickly and reads the whole table for a rare one; with 600 (a catalogue has
/// thousands), it costs that plan as what it is.
const PRELOAD: &str = "INSERT INTO products (brand, serial, manufacturer, name) \
     SELECT 'b-' || (i / 500), 'SN-' || i, 'M-' || (i % 600), 'preloaded' \
     FROM generate_series(1, 60000) AS i; ANALYZE products";

/// Which filters a combination has.
#[derive(Debug, Clone, Copy)]
struct Filters {
    brand: bool,
    serial: bool,
    manufacturer: bool,
}

impl Filters {
    /// All eight combinations of the three key-field filters.
    fn all() -> impl Iterator<Item = Self> {
        (0..8u8).map(|bits| Self {
            brand: bits & 1 != 0,
            serial: bits & 2 != 0,
            manufacturer: bits & 4 != 0,
        })
    }

    /// The columns filtered on.
    fn columns(self) -> Vec<&'static str> {
        [
            (self.brand, "brand"),
            (self.serial, "serial"),
            (self.manufacturer, "manufacturer"),
        ]
        .into_iter()
        .filter_map(|(on, column)| on.then_some(column))
        .collect()
    }

    /// Without serial, a filter can match any number of rows (a whole brand or manufacturer):
    /// its page must come from an index in id order, LIMIT rows read and no sort.
    fn is_large_group(self) -> bool {
        !self.serial
    }

    /// A query of a row in the middle of the preloaded table (row 30,250: brand b-60,
    /// manufacturer M-250), with or without `after`.
    fn query(self, after: Option<i64>) -> ListQuery {
        ListQuery {
            brand: self.brand.then(|| "b-60".to_owned()),
            serial: self.serial.then(|| "SN-30250".to_owned()),
            manufacturer: self.manufacturer.then(|| "M-250".to_owned()),
            after,
            limit: 50,
        }
    }
}

#[derive(QueryableByName)]
struct Plan {
    #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
    plan: String,
}

/// The plan PostgreSQL makes for `query`'s statement, as the service sends it (every parameter
/// `text`), with `plan_cache_mode` set to `mode`: `force_custom_plan` (the values known, as for a
/// statement's first executions) or `force_generic_plan` (what a cached prepared statement may
/// switch to after five executions, planned without the values).
async fn plan(conn: &mut AsyncPgConnection, query: &ListQuery, mode: &str) -> Value {
    let statement = list_sql(query);
    let types = vec!["text"; statement.params.len()].join(", ");
    let values: Vec<String> = statement
        .params
        .iter()
        .map(|value| format!("'{}'", value.replace('\'', "''")))
        .collect();
    conn.batch_execute(&format!(
        "SET plan_cache_mode = {mode}; PREPARE list_page ({types}) AS {}",
        statement.sql
    ))
    .await
    .expect("prepare the list statement");
    let explained: Plan = diesel::sql_query(format!(
        "EXPLAIN (FORMAT JSON) EXECUTE list_page ({})",
        values.join(", ")
    ))
    .get_result(conn)
    .await
    .expect("explain the list statement");
    conn.batch_execute("DEALLOCATE list_page; RESET plan_cache_mode")
        .await
        .expect("deallocate");
    let document: Value = serde_json::from_str(&explained.plan).expect("EXPLAIN gives JSON");
    document[0]["Plan"].clone()
}

/// Every node of a plan tree, the root first.
fn nodes(plan: &Value) -> Vec<&Value> {
    let mut all = vec![plan];
    if let Some(children) = plan["Plans"].as_array() {
        for child in children {
            all.extend(nodes(child));
        }
    }
    all
}

/// What is wrong with `plan` for `filters`, if anything.
fn faults(plan: &Value, filters: Filters) -> Vec<String> {
    let all = nodes(plan);
    let mut faults = Vec::new();
    for node in &all {
        if node["Node Type"] == "Seq Scan" {
            faults.push("a Seq Scan of products".to_owned());
        }
    }
    let columns = filters.columns();
    // The index conditions of the scans of products (Index Scan, Index Only Scan, Bitmap Index
    // Scan): the filters in them bound the rows read; filters elsewhere only discard rows read.
    let index_conditions: Vec<&str> = all
        .iter()
        .filter_map(|node| node["Index Cond"].as_str())
        .collect();
    // `(brand = ...)`, or `((brand)::text = ...)` when the comparison is in another collation
    // than the column's.
    let in_index = |column: &str| {
        let plain = format!("({column} = ");
        let collated = format!("(({column})::text = ");
        index_conditions
            .iter()
            .any(|cond| cond.contains(&plain) || cond.contains(&collated))
    };
    if !columns.is_empty() && !columns.iter().any(|column| in_index(column)) {
        faults.push(format!(
            "no filter ({}) is an index condition: every row is read",
            columns.join(", ")
        ));
    }
    if filters.is_large_group() {
        for column in &columns {
            if !in_index(column) {
                faults.push(format!("{column} is not an index condition"));
            }
        }
        if all.iter().any(|node| node["Node Type"] == "Sort") {
            faults.push("a Sort: the page reads the whole group, not LIMIT rows".to_owned());
        }
    }
    faults
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_combination_of_list_filters_is_an_index_lookup_in_both_plan_modes() {
    // Arrange
    let app = spawn_app().await;
    let mut conn = app.db().await;
    conn.batch_execute(PRELOAD).await.expect("preload");

    // Act
    let mut failures = Vec::new();
    for filters in Filters::all() {
        for after in [None, Some(ROWS / 3)] {
            for mode in ["force_custom_plan", "force_generic_plan"] {
                let query = filters.query(after);
                let plan = plan(&mut conn, &query, mode).await;
                let faults = faults(&plan, filters);
                if !faults.is_empty() {
                    failures.push(format!(
                        "{:?}, after {after:?}, {mode}: {}\n  {}\n  plan: {plan}",
                        filters.columns(),
                        faults.join("; "),
                        list_sql(&query).sql
                    ));
                }
            }
        }
    }

    // Assert
    assert!(
        failures.is_empty(),
        "{} plan(s) of 32 are not index lookups:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[derive(QueryableByName)]
struct IndexColumns {
    #[diesel(sql_type = Text)]
    name: String,
    /// The key columns, comma-separated, in index order.
    #[diesel(sql_type = Text)]
    columns: String,
}

#[tokio::test]
async fn each_combination_of_filters_has_an_index_that_begins_with_exactly_its_columns() {
    // Arrange
    let app = spawn_app().await;

    // Act
    // Each column as `name`, or `name C` when the index orders it in the "C" collation.
    let indexes: Vec<IndexColumns> = diesel::sql_query(
        "SELECT c.relname AS name, string_agg(a.attname \
             || CASE WHEN co.collname = 'C' THEN ' C' ELSE '' END, ',' ORDER BY k.n) AS columns \
         FROM pg_index i \
         JOIN pg_class c ON c.oid = i.indexrelid \
         CROSS JOIN LATERAL unnest(i.indkey::int2[], i.indcollation::oid[]) \
             WITH ORDINALITY AS k(attnum, coll, n) \
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
         LEFT JOIN pg_collation co ON co.oid = k.coll \
         WHERE i.indrelid = 'products'::regclass AND i.indisvalid AND i.indpred IS NULL \
         GROUP BY c.relname",
    )
    .load(&mut app.db().await)
    .await
    .expect("read the indexes of products");

    // Assert
    for filters in Filters::all() {
        // In the collation the list's statement compares in: an index serves only that one.
        let in_c = list_sql(&filters.query(None)).sql.contains("COLLATE \"C\"");
        let mut wanted: Vec<String> = filters
            .columns()
            .into_iter()
            .map(|column| {
                if in_c {
                    format!("{column} C")
                } else {
                    column.to_owned()
                }
            })
            .collect();
        wanted.sort_unstable();
        let serving: Vec<&str> = indexes
            .iter()
            .filter(|index| {
                let columns: Vec<String> = index.columns.split(',').map(str::to_owned).collect();
                let mut leading = columns[..wanted.len().min(columns.len())].to_vec();
                leading.sort_unstable();
                let in_id_order = columns.get(wanted.len()).is_some_and(|c| c == "id");
                leading == wanted && (in_id_order || !filters.is_large_group())
            })
            .map(|index| index.name.as_str())
            .collect();
        assert!(
            !serving.is_empty(),
            "no index of products begins with exactly ({}){}; indexes: {}",
            wanted.join(", "),
            if filters.is_large_group() {
                " followed by id"
            } else {
                ""
            },
            indexes
                .iter()
                .map(|index| format!("{} ({})", index.name, index.columns))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}

#[tokio::test]
async fn a_key_lookup_uses_the_key_index_even_for_a_brand_and_manufacturer_new_since_analyze() {
    // Arrange: 5,000 rows of a brand and a manufacturer the statistics have never seen (fewer
    // than autovacuum's 10 % before it analyzes again), the shape of an import, or of a
    // benchmark's keys.
    let app = spawn_app().await;
    let mut conn = app.db().await;
    conn.batch_execute(PRELOAD).await.expect("preload");
    conn.batch_execute(
        "INSERT INTO products (brand, serial, manufacturer, name) \
         SELECT 'new', 'N-' || i, 'M', 'since analyze' FROM generate_series(1, 5000) AS i",
    )
    .await
    .expect("rows since ANALYZE");

    // Act: the key lookup of every write (the upsert's, and `rows_with_key_for_update`'s).
    let mut indexes = Vec::new();
    for mode in ["force_custom_plan", "force_generic_plan"] {
        conn.batch_execute(&format!(
            "SET plan_cache_mode = {mode}; PREPARE key_rows (text, text, text) AS \
             SELECT id FROM products WHERE brand = $1 AND serial = $2 AND manufacturer = $3 \
             ORDER BY id FOR UPDATE"
        ))
        .await
        .expect("prepare the key lookup");
        let explained: Plan =
            diesel::sql_query("EXPLAIN (FORMAT JSON) EXECUTE key_rows ('new', 'N-77', 'M')")
                .get_result(&mut conn)
                .await
                .expect("explain the key lookup");
        conn.batch_execute("DEALLOCATE key_rows; RESET plan_cache_mode")
            .await
            .expect("deallocate");
        let document: Value = serde_json::from_str(&explained.plan).expect("EXPLAIN gives JSON");
        for node in nodes(&document[0]["Plan"]) {
            if let Some(relation) = node["Relation Name"].as_str() {
                indexes.push(format!(
                    "{mode}: {relation} by {}",
                    node["Index Name"].as_str().unwrap_or("no index")
                ));
            }
        }
    }

    // Assert: only the key index, never a list index that finds the brand's 5,000 rows.
    assert_eq!(
        indexes,
        [
            "force_custom_plan: products by products_natural_key_idx",
            "force_generic_plan: products by products_natural_key_idx"
        ]
    );
}
