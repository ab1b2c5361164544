//! POST /products/batch: many upserts in one transaction, in array order, all or nothing; and
//! the races it must win: overlapping batches in opposite orders never deadlock, and batches
//! mixed with single upserts of the same keys never duplicate.

use futures::future::join_all;
use product_service::config::Config;
use serde_json::{Value, json};

use crate::helpers::{Instance, TestApp, json, product, scrape, spawn_app, spawn_app_with, value};

in_both_modes!(batches_and_single_posts_of_the_same_keys_over_two_instances_leave_one_row_each,);

/// `POST /products/batch` with a JSON body, to the service at `address`.
async fn post_batch_to(app: &TestApp, address: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(format!("{address}/products/batch"))
        .json(body)
        .send()
        .await
        .expect("POST /products/batch failed to send")
}

/// `POST /products/batch` to `app`.
async fn post_batch(app: &TestApp, body: &Value) -> reqwest::Response {
    post_batch_to(app, &app.address, body).await
}

#[tokio::test]
async fn a_batch_applies_its_items_in_array_order_and_answers_one_result_per_item() {
    let app = spawn_app().await;
    let existing = json(app.post_product(&product("Acme", "OLD", "M")).await).await;
    let before = scrape(&app).await;

    let response = post_batch(
        &app,
        &json!([
            {"brand": "Acme", "serial": "S-1", "manufacturer": "M", "name": "First",
             "price": "1.00", "description": "kept"},
            product("Acme", "OLD", "M"),
            {"brand": " Acme ", "serial": "S-1", "manufacturer": "M", "name": "Second",
             "price": 2},
        ]),
    )
    .await;

    assert_eq!(response.status(), 200);
    let results = json(response).await;
    let results = results.as_array().expect("an array");
    assert_eq!(results.len(), 3, "one result per item");
    for (i, result) in results.iter().enumerate() {
        assert_eq!(result["index"], i);
    }
    assert_eq!(results[0]["outcome"], "created");
    assert_eq!(results[0]["product"]["version"], 1);
    assert_eq!(results[1]["outcome"], "updated");
    assert_eq!(results[1]["product"]["id"], existing["id"]);
    assert_eq!(
        results[2]["outcome"], "updated",
        "the same key again (in another spelling) updates what the first item created"
    );
    assert_eq!(results[2]["product"]["id"], results[0]["product"]["id"]);
    assert_eq!(results[2]["product"]["version"], 2);
    let stored = json(app.get("/products?serial=S-1").await).await;
    assert_eq!(stored["items"].as_array().expect("items").len(), 1);
    assert_eq!(stored["items"][0]["name"], "Second", "the later item wins");
    assert_eq!(stored["items"][0]["price"], "2.00");
    assert_eq!(stored["items"][0]["description"], "kept");
    assert_eq!(app.count_products("true").await, 2);

    let after = scrape(&app).await;
    let moved = |outcome: &str| {
        let labels = [("outcome", outcome)];
        value(&after, "batch_items_total", &labels) - value(&before, "batch_items_total", &labels)
    };
    assert_eq!(moved("created"), 1.0);
    assert_eq!(moved("updated"), 2.0);
}

#[tokio::test]
async fn an_invalid_item_refuses_the_whole_batch_naming_each_bad_item_by_index() {
    let app = spawn_app().await;

    let response = post_batch(
        &app,
        &json!([
            product("A", "1", "M"),
            {"brand": "", "serial": "2", "manufacturer": "M", "name": "N"},
            product("A", "3", "M"),
            {"brand": "A", "serial": "4", "manufacturer": "M", "name": "N", "price": "-1"},
            "not a product",
        ]),
    )
    .await;

    assert_eq!(response.status(), 400);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem = json(response).await;
    assert_eq!(problem["type"], "urn:product-service:problem:validation");
    assert_eq!(problem["invalid_items"], json!([1, 3, 4]));
    let errors: Vec<&String> = problem["errors"]
        .as_object()
        .expect("errors")
        .keys()
        .collect();
    assert_eq!(errors, ["1.brand", "3.price", "4"]);
    assert_eq!(app.count_products("true").await, 0, "nothing written");
}

#[tokio::test]
async fn a_batch_of_many_bad_items_lists_them_all_and_the_errors_of_the_first_fifty() {
    let app = spawn_app().await;
    let items: Vec<Value> = (0..120)
        .map(|i| json!({"brand": "A", "serial": format!("{i}"), "manufacturer": "M"}))
        .collect();

    let response = post_batch(&app, &Value::Array(items)).await;

    assert_eq!(response.status(), 400);
    let problem = json(response).await;
    let listed = problem["invalid_items"].as_array().expect("invalid_items");
    assert_eq!(listed.len(), 120, "every bad item");
    let errors = problem["errors"].as_object().expect("errors");
    let expected: std::collections::BTreeSet<String> =
        (0..50).map(|i| format!("{i}.name")).collect();
    let named: std::collections::BTreeSet<String> = errors.keys().cloned().collect();
    assert_eq!(named, expected, "the lowest indexes, not the first by name");
}

#[tokio::test]
async fn bodies_that_are_no_batch_are_refused_and_an_empty_one_does_nothing() {
    let app = spawn_app_with(|c| c.batch_max_items = 3).await;
    let send = |content_type: &'static str, body: &'static str| {
        app.send_raw(reqwest::Method::POST, "/products/batch", content_type, body)
    };
    let cases: [(&str, &str, u16, &str); 5] = [
        (
            "application/json",
            r#"{"brand":"A","serial":"1","manufacturer":"M","name":"N"}"#,
            400,
            "an object, not an array",
        ),
        ("application/json", "[1,2,3,4]", 400, "over BATCH_MAX_ITEMS"),
        ("application/json", "[{", 400, "malformed JSON"),
        (
            "application/x-www-form-urlencoded",
            "brand=A&serial=1&manufacturer=M&name=N",
            415,
            "a form cannot carry a batch",
        ),
        ("text/plain", "[]", 415, "not JSON"),
    ];
    for (content_type, body, status, why) in cases {
        let response = send(content_type, body).await;
        assert_eq!(response.status(), status, "{why}");
        let problem = json(response).await;
        if why == "over BATCH_MAX_ITEMS" {
            let detail = problem["detail"].as_str().expect("detail");
            assert!(
                detail.contains("at most 3") && detail.contains("has 4"),
                "{detail}"
            );
        }
    }

    let empty = send("application/json", "[]").await;
    assert_eq!(empty.status(), 200);
    assert_eq!(json(empty).await, json!([]));
    assert_eq!(app.count_products("true").await, 0);
}

#[tokio::test]
async fn the_batch_route_answers_post_only_with_or_without_a_trailing_slash() {
    let app = spawn_app().await;

    let get = app.get("/products/batch").await;
    let slash = app
        .client
        .post(app.url("/products/batch/"))
        .json(&json!([product("A", "1", "M")]))
        .send()
        .await
        .expect("POST");

    assert_eq!(get.status(), 405, "not a product id");
    assert_eq!(get.headers()["allow"], "POST, OPTIONS");
    assert_eq!(slash.status(), 200);
}

#[tokio::test]
async fn a_batch_of_a_thousand_products_over_max_body_bytes_is_one_transaction() {
    let app = spawn_app().await;
    let items: Vec<Value> = (0..1000)
        .map(|i| {
            json!({"brand": "Bulk", "serial": format!("S-{i:04}"), "manufacturer": "M",
                   "name": format!("Bulk product number {i}"), "price": "9.99"})
        })
        .collect();
    let body = Value::Array(items);
    assert!(
        serde_json::to_vec(&body).expect("json").len() > 65_536,
        "over MAX_BODY_BYTES, which is not this route's limit"
    );

    let response = post_batch(&app, &body).await;

    assert_eq!(response.status(), 200);
    let results = json(response).await;
    assert_eq!(results.as_array().expect("array").len(), 1000);
    assert_eq!(results[999]["index"], 999);
    assert_eq!(results[999]["product"]["serial"], "S-0999");
    assert_eq!(app.count_products("brand = 'Bulk'").await, 1000);
    let again = post_batch(&app, &body).await;
    assert_eq!(again.status(), 200);
    let again = json(again).await;
    assert!(
        again
            .as_array()
            .expect("array")
            .iter()
            .all(|r| r["outcome"] == "updated")
    );
}

#[tokio::test]
async fn a_body_over_batch_max_body_bytes_is_a_413() {
    let app = spawn_app_with(|c| c.batch_max_body_bytes = 1000).await;
    let items: Vec<Value> = (0..50)
        .map(|i| product("Big", &format!("{i}"), "M"))
        .collect();

    let response = post_batch(&app, &Value::Array(items)).await;

    assert_eq!(response.status(), 413);
    assert_eq!(app.count_products("true").await, 0);
}

#[tokio::test]
async fn a_key_held_elsewhere_makes_the_batch_a_503_and_nothing_is_written() {
    let app = spawn_app_with(|c| c.waits.lock_timeout_ms = 300).await;
    let _holder = app.hold_key_lock("H", "2", "M").await;

    let response = post_batch(
        &app,
        &json!([
            product("H", "1", "M"),
            product("H", "2", "M"),
            product("H", "3", "M")
        ]),
    )
    .await;

    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(app.count_products("true").await, 0, "nothing written");
}

#[tokio::test]
async fn a_key_with_legacy_duplicates_updates_the_oldest_row_as_a_single_post_does() {
    let app = spawn_app().await;
    app.sql(
        "INSERT INTO products (brand, serial, manufacturer, name) VALUES \
         ('D', '1', 'M', 'oldest'), ('D', '1', 'M', 'newer')",
    )
    .await;

    let response = post_batch(&app, &json!([product("D", "1", "M")])).await;

    assert_eq!(response.status(), 200);
    let results = json(response).await;
    assert_eq!(results[0]["outcome"], "updated");
    assert_eq!(results[0]["product"]["version"], 2);
    assert_eq!(app.count_products("name = 'oldest'").await, 0);
    assert_eq!(app.count_products("name = 'newer'").await, 1);
}

/// Keys shared by the batches of the deadlock tests (many, so that the two batches are taking
/// their locks at the same time, and a wrong order meets its deadlock, within a few rounds).
const OVERLAPPING_KEYS: usize = 100;
/// Rounds of the deadlock test.
const ROUNDS: usize = 30;
/// Most rounds of its control, which stops at the first deadlock (within 1 to 24 rounds of 20
/// keys in the runs seen; more keys make it sooner).
const CONTROL_ROUNDS: usize = 100;

/// Two instances of the service on one database, configured by `configure`.
async fn two_instances(configure: impl Fn(&mut Config) + Copy) -> (TestApp, Instance) {
    let app = spawn_app_with(configure).await;
    let other = app.another_instance(configure).await;
    (app, other)
}

/// The same keys in ascending and in descending order, as two batch bodies.
fn opposite_batches(round: usize) -> (Value, Value) {
    let items: Vec<Value> = (0..OVERLAPPING_KEYS)
        .map(|k| {
            json!({"brand": "DL", "serial": format!("K-{k:02}"), "manufacturer": "M",
                   "name": format!("round {round}")})
        })
        .collect();
    let descending: Vec<Value> = items.iter().rev().cloned().collect();
    (Value::Array(items), Value::Array(descending))
}

/// Runs `rounds` rounds of two batches of the same keys in opposite orders, sent at once to
/// two instances; returns every status, stopping after the first round with a failure.
async fn opposite_order_rounds(app: &TestApp, other: &Instance, rounds: usize) -> Vec<u16> {
    let mut statuses = Vec::new();
    for round in 0..rounds {
        let (ascending, descending) = opposite_batches(round);
        let (a, b) = futures::join!(
            post_batch_to(app, &app.address, &ascending),
            post_batch_to(app, &other.address, &descending),
        );
        let round_statuses = [a.status().as_u16(), b.status().as_u16()];
        statuses.extend(round_statuses);
        if round_statuses.iter().any(|s| *s != 200) {
            break;
        }
    }
    statuses
}

fn deadlock_config(array_order: bool) -> impl Fn(&mut Config) + Copy {
    move |c: &mut Config| {
        // Long enough that only PostgreSQL's deadlock detector (after deadlock_timeout, 1 s)
        // can end a wait: a 503 then means a deadlock, not a slow lock.
        c.waits.lock_timeout_ms = 30_000;
        c.test_hooks.batch_locks_in_array_order = array_order;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_of_the_same_keys_in_opposite_orders_over_two_instances_never_deadlock() {
    let (app, other) = two_instances(deadlock_config(false)).await;

    let statuses = opposite_order_rounds(&app, &other, ROUNDS).await;

    assert_eq!(statuses.len(), 2 * ROUNDS, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(
        app.count_products("true").await,
        OVERLAPPING_KEYS as i64,
        "one row per key"
    );
    assert_eq!(app.duplicated_keys().await, 0);
    assert_eq!(
        app.count_products(&format!("version = {}", 2 * ROUNDS))
            .await,
        OVERLAPPING_KEYS as i64,
        "every item of every batch was applied"
    );
}

/// The control: with the locks taken in array order (a test-hooks switch), the same rounds
/// deadlock, which PostgreSQL breaks by failing one of the batches (503, nothing written).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_locks_in_array_order_the_same_batches_deadlock() {
    let (app, other) = two_instances(deadlock_config(true)).await;

    let statuses = opposite_order_rounds(&app, &other, CONTROL_ROUNDS).await;

    eprintln!(
        "locks in array order: {} rounds, statuses {statuses:?}",
        statuses.len() / 2
    );
    assert!(
        statuses.contains(&503),
        "the deadlock test must catch locks taken in array order: {statuses:?}"
    );
    assert_eq!(app.duplicated_keys().await, 0);
}

async fn batches_and_single_posts_of_the_same_keys_over_two_instances_leave_one_row_each(
    group_commit: bool,
) {
    let configure = move |c: &mut Config| {
        c.group_commit = group_commit;
        c.db_pool_size = 24;
        c.db_pool_timeout_ms = 60_000;
        c.waits.lock_timeout_ms = 60_000;
        // Widens the window between reading a key's rows and writing them.
        c.test_hooks.race_window_ms = 20;
    };
    let (app, other) = two_instances(configure).await;
    let addresses = [app.address.clone(), other.address.clone()];
    let keys = 8;
    let batches: Vec<Value> = (0..4)
        .map(|b| {
            let mut items: Vec<Value> = (0..keys)
                .map(|k| product("Mix", &format!("K-{k}"), "M"))
                .collect();
            items.rotate_left(b * 2);
            if b % 2 == 1 {
                items.reverse();
            }
            Value::Array(items)
        })
        .collect();
    let singles: Vec<Value> = (0..4)
        .flat_map(|_| (0..keys).map(|k| product("Mix", &format!("K-{k}"), "M")))
        .collect();

    let batch_requests = batches
        .iter()
        .enumerate()
        .map(|(i, body)| post_batch_to(&app, &addresses[i % 2], body));
    let single_requests = singles.iter().enumerate().map(|(i, body)| {
        app.client
            .post(format!("{}/products", addresses[(i + 1) % 2]))
            .json(body)
            .send()
    });
    let (batch_responses, single_responses) =
        futures::join!(join_all(batch_requests), join_all(single_requests));

    let mut created = 0;
    for response in batch_responses {
        assert_eq!(response.status(), 200);
        let results = json(response).await;
        created += results
            .as_array()
            .expect("array")
            .iter()
            .filter(|r| r["outcome"] == "created")
            .count();
    }
    for response in single_responses {
        let status = response.expect("POST /products").status().as_u16();
        assert!(status == 200 || status == 201, "{status}");
        created += usize::from(status == 201);
    }
    assert_eq!(created, keys, "one creation per key");
    assert_eq!(app.count_products("true").await, keys as i64);
    assert_eq!(app.duplicated_keys().await, 0);
    assert_eq!(
        app.count_products("version = 8").await,
        keys as i64,
        "every write of every key was applied: 4 batches and 4 single posts"
    );
}
