//! POST /products: create, update, normalisation and legacy duplicates.

use serde_json::json;

use crate::helpers::{json, product, spawn_app, spawn_app_with};

// The tests of this file, each run with group commit and with one transaction per upsert.
in_both_modes!(a_write_to_a_product_at_the_largest_version_is_409_and_writes_nothing);

#[tokio::test]
async fn post_of_a_new_key_creates_it_with_201_location_and_the_stored_row() {
    let app = spawn_app().await;

    let response = app
        .post_product(
            &json!({"brand": "Acme", "serial": "S-1", "manufacturer": "Acme Corp",
            "name": "Widget", "description": "blue", "price": "12.34"}),
        )
        .await;

    assert_eq!(response.status(), 201);
    let location = response.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let body = json(response).await;
    assert_eq!(location, format!("/products/{}", body["id"]));
    assert_eq!(body["brand"], "Acme");
    assert_eq!(body["serial"], "S-1");
    assert_eq!(body["manufacturer"], "Acme Corp");
    assert_eq!(body["name"], "Widget");
    assert_eq!(body["description"], "blue");
    assert_eq!(body["price"], "12.34");
    assert_eq!(body["version"], 1);
    assert_eq!(body["created_at"], body["updated_at"]);
    assert_eq!(app.count_products("true").await, 1);
}

#[tokio::test]
async fn post_of_an_existing_key_updates_it_with_200_and_bumps_the_version() {
    let app = spawn_app().await;
    let created = json(app.post_product(&product("Acme", "S-1", "M")).await).await;

    let response = app
        .post_product(
            &json!({"brand": "Acme", "serial": "S-1", "manufacturer": "M",
            "name": "Renamed", "price": 5}),
        )
        .await;

    assert_eq!(response.status(), 200);
    assert!(response.headers().get("location").is_none());
    let updated = json(response).await;
    assert_eq!(updated["id"], created["id"]);
    assert_eq!(updated["name"], "Renamed");
    assert_eq!(updated["price"], "5.00");
    assert_eq!(updated["version"], 2);
    assert_eq!(updated["created_at"], created["created_at"]);
    assert_ne!(updated["updated_at"], created["updated_at"]);
    assert_eq!(app.count_products("true").await, 1);
}

#[tokio::test]
async fn an_update_by_post_keeps_omitted_optional_fields() {
    let app = spawn_app().await;
    app.post_product(
        &json!({"brand": "B", "serial": "S", "manufacturer": "M", "name": "N",
        "description": "kept", "price": "9.99"}),
    )
    .await;

    let updated = json(app.post_product(&product("B", "S", "M")).await).await;

    assert_eq!(updated["description"], "kept");
    assert_eq!(updated["price"], "9.99");
}

#[tokio::test]
async fn key_fields_are_trimmed_and_compared_case_sensitively() {
    let app = spawn_app().await;
    let first = app.post_product(&product("Acme", "S1", "M")).await;
    assert_eq!(first.status(), 201);

    let mut padded = product("  Acme\t", " S1", "M ");
    padded["name"] = json!("Padded");
    let padded = app.post_product(&padded).await;
    let other_case = app.post_product(&product("ACME", "S1", "M")).await;

    assert_eq!(
        padded.status(),
        200,
        "whitespace around a key field is not part of the key"
    );
    assert_eq!(json(padded).await["brand"], "Acme");
    assert_eq!(other_case.status(), 201, "keys compare case-sensitively");
    assert_eq!(app.count_products("true").await, 2);
}

#[tokio::test]
async fn keys_whose_concatenations_look_alike_are_two_products() {
    let app = spawn_app().await;

    let first = app.post_product(&product("ab", "c", "x")).await;
    let second = app.post_product(&product("a", "bc", "x")).await;

    assert_eq!(first.status(), 201);
    assert_eq!(second.status(), 201);
    assert_eq!(app.count_products("true").await, 2);
}

#[tokio::test]
async fn price_is_accepted_as_a_string_or_a_number_and_returned_as_a_decimal_string() {
    let app = spawn_app().await;
    let cases = [
        (json!("12.3"), "12.30"),
        (json!(7), "7.00"),
        (json!(0.5), "0.50"),
        (json!("1.500"), "1.50"),
        (json!(9_999_999_999.99_f64), "9999999999.99"),
    ];

    for (i, (price, shown)) in cases.into_iter().enumerate() {
        let mut body = product("P", &i.to_string(), "M");
        body["price"] = price.clone();
        let response = app.post_product(&body).await;
        assert_eq!(response.status(), 201, "price {price}");
        assert_eq!(json(response).await["price"], shown, "price {price}");
    }
}

#[tokio::test]
async fn the_collection_path_with_a_trailing_slash_accepts_posts() {
    let app = spawn_app().await;

    let response = app
        .client
        .post(app.url("/products/"))
        .json(&product("DRF", "1", "M"))
        .send()
        .await
        .expect("send");

    assert_eq!(response.status(), 201);
}

#[tokio::test]
async fn an_upsert_meeting_rows_duplicated_before_the_service_updates_the_oldest() {
    let app = spawn_app().await;
    app.sql(
        "INSERT INTO products (brand, serial, manufacturer, name) VALUES \
         ('Old', 'S', 'M', 'first'), ('Old', 'S', 'M', 'second'), ('Old', 'S', 'M', 'third')",
    )
    .await;

    let response = app.post_product(&product("Old", "S", "M")).await;

    assert_eq!(
        response.status(),
        200,
        "legacy duplicates must never turn into a 500"
    );
    let body = json(response).await;
    assert_eq!(
        body["id"], 1,
        "the oldest row (lowest id) is the one updated"
    );
    assert_eq!(body["name"], "Old S");
    assert_eq!(
        app.count_products("true").await,
        3,
        "nothing is deleted or added"
    );
    assert_eq!(app.count_products("name = 'Old S'").await, 1);
}

/// Group commit folds the upserts of one key in one batch into one write; each request must
/// still get the answer of its own upsert, as if they had been applied one after the other.
#[tokio::test]
async fn concurrent_posts_of_one_key_each_answer_their_own_upsert_in_one_chain_of_versions() {
    const POSTS: usize = 48;
    let app = spawn_app_with(|c| c.group_commit = true).await;
    // Every request names itself; some give a description, some a price, some neither.
    let bodies: Vec<_> = (0..POSTS)
        .map(|i| {
            let mut body = json!({"brand": "Chain", "serial": "C-1", "manufacturer": "M",
                "name": format!("post {i}")});
            if i % 2 == 0 {
                body["description"] = json!(format!("description of {i}"));
            }
            if i % 3 == 0 {
                body["price"] = json!(format!("{i}.25"));
            }
            body
        })
        .collect();

    let answers = futures::future::join_all(bodies.iter().map(|body| async {
        let response = app.post_product(body).await;
        let status = response.status().as_u16();
        (status, json(response).await)
    }))
    .await;

    let mut chain: Vec<(&serde_json::Value, u16, serde_json::Value)> = bodies
        .iter()
        .zip(answers)
        .map(|(body, (status, answer))| (body, status, answer))
        .collect();
    chain.sort_by_key(|(_, _, answer)| answer["version"].as_i64());
    let versions: Vec<i64> = chain
        .iter()
        .map(|(_, _, a)| a["version"].as_i64().expect("a version"))
        .collect();
    assert_eq!(
        versions,
        (1..=POSTS as i64).collect::<Vec<_>>(),
        "one version each"
    );
    let (mut description, mut price) = (json!(""), json!("0.00"));
    for (k, (body, status, answer)) in chain.iter().enumerate() {
        assert_eq!(*status, if k == 0 { 201 } else { 200 }, "{answer}");
        assert_eq!(answer["name"], body["name"], "each request's own answer");
        if let Some(given) = body.get("description") {
            description = given.clone();
        }
        if let Some(given) = body.get("price") {
            price = given.clone();
        }
        assert_eq!(answer["description"], description, "version {}", k + 1);
        assert_eq!(answer["price"], price, "version {}", k + 1);
        assert_eq!(answer["id"], chain[0].2["id"]);
    }
    let stored = json(app.get(&format!("/products/{}", chain[0].2["id"])).await).await;
    assert_eq!(
        stored,
        chain[POSTS - 1].2,
        "the last answer is the stored row"
    );
    assert_eq!(app.count_products("true").await, 1);
}

/// The plan a connection keeps for the set-based write, made while `products` is empty (a new
/// deployment: PostgreSQL makes a generic plan after a few executions and keeps it), must look
/// each key up through an index: a sequential scan or a hash join planned on an empty table
/// would read the whole table for every batch once it has grown.
#[tokio::test]
async fn the_set_based_write_planned_on_an_empty_table_looks_keys_up_by_index() {
    use diesel::QueryableByName;
    use diesel_async::{RunQueryDsl, SimpleAsyncConnection};

    #[derive(QueryableByName)]
    struct Line {
        #[diesel(sql_type = diesel::sql_types::Text, column_name = "QUERY PLAN")]
        line: String,
    }

    let app = spawn_app().await;
    let mut conn = app.db().await;
    let (planner, write) = product_service::store::statements_for_plan_tests();
    conn.batch_execute(&format!(
        "SET plan_cache_mode = force_generic_plan; BEGIN; {planner}; PREPARE set_write(text) AS {write}"
    ))
    .await
    .expect("prepare the set-based write");
    let keys = r#"[{"idx": 0, "brand": "b", "serial": "s", "manufacturer": "m", "name": "n",
        "description": null, "price": null, "times": 1}]"#;
    let plan: Vec<String> =
        diesel::sql_query(format!("EXPLAIN (COSTS OFF) EXECUTE set_write('{keys}')"))
            .load::<Line>(&mut conn)
            .await
            .expect("explain the set-based write")
            .into_iter()
            .map(|l| l.line)
            .collect();
    let plan = plan.join("\n");
    for whole_table in ["Seq Scan", "Hash Join", "Merge Join"] {
        assert!(!plan.contains(whole_table), "{whole_table} in\n{plan}");
    }
    assert!(
        plan.contains("Index Scan using products_natural_key_idx")
            && plan.contains("Index Scan using products_pkey"),
        "{plan}"
    );
}

/// A version at 2^63-1 (the largest `bigint`) can only be set outside the service; a write that
/// would raise it (SQLSTATE 22003, a 500 before) is a 409 of type version-exhausted on every
/// write path, and writes nothing; in a group-commit batch only that request fails.
async fn a_write_to_a_product_at_the_largest_version_is_409_and_writes_nothing(group_commit: bool) {
    use reqwest::Method;
    let app = spawn_app_with(|c| c.group_commit = group_commit).await;
    app.sql(
        "INSERT INTO products (brand, serial, manufacturer, name, version) \
         VALUES ('Acme', 'S-max', 'M', 'stored', 9223372036854775807)",
    )
    .await;
    let stored = json(
        app.get("/products?brand=Acme&serial=S-max&manufacturer=M")
            .await,
    )
    .await;
    let id = stored["items"][0]["id"].clone();
    let exhausted = json!({"brand": "Acme", "serial": "S-max", "manufacturer": "M", "name": "new"});

    // Alongside other keys, so that with group commit they likely share its batch.
    let posts = (0..8).map(|i| {
        let body = if i == 3 {
            exhausted.clone()
        } else {
            product("Acme", &format!("S-{i}"), "M")
        };
        let app = &app;
        async move { app.post_product(&body).await }
    });
    let mut posted: Vec<reqwest::Response> = futures::future::join_all(posts).await;
    let refused = posted.remove(3);
    assert!(
        posted.iter().all(|answer| answer.status() == 201),
        "the other keys are written"
    );
    let batch = app
        .send_raw(
            Method::POST,
            "/products/batch",
            "application/json",
            json!([product("Acme", "S-batch", "M"), exhausted]).to_string(),
        )
        .await;
    let patch = app
        .send_raw(
            Method::PATCH,
            &format!("/products/{id}"),
            "application/json",
            json!({"name": "patched"}).to_string(),
        )
        .await;
    for answer in [refused, batch, patch] {
        assert_eq!(answer.status(), 409, "{}", answer.url());
        assert_eq!(answer.headers()["content-type"], "application/problem+json");
        let body = json(answer).await;
        assert_eq!(
            body["type"], "urn:product-service:problem:version-exhausted",
            "{body}"
        );
        assert!(
            body["detail"].to_string().contains("9223372036854775807"),
            "{body}"
        );
    }
    let after = json(app.get(&format!("/products/{id}")).await).await;
    assert_eq!(after["name"], "stored", "nothing written");
    assert_eq!(after["version"], 9_223_372_036_854_775_807_i64);
    assert_eq!(
        app.count_products("serial = 'S-batch'").await,
        0,
        "the batch wrote nothing"
    );
    assert_eq!(app.count_products("true").await, 8);
}
