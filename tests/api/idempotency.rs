//! `Idempotency-Key` on `POST /products` (IETF draft-ietf-httpapi-idempotency-key-header):
//! replays, 409 while running, 422 for another request, 400 for a bad key, expiry; against real
//! PostgreSQL, across two instances.

use std::time::Duration;

use reqwest::Response;
use serde_json::{Value, json};

use crate::helpers::{TestApp, json, product, scrape, spawn_app, spawn_app_with, value};

in_both_modes!(concurrent_requests_with_one_key_run_the_upsert_once);

async fn post(app: &TestApp, address: &str, key: &str, body: &Value) -> Response {
    app.client
        .post(format!("{address}/products"))
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .expect("send")
}

fn replayed(response: &Response) -> bool {
    response
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true")
}

async fn stored_keys(app: &TestApp) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    use diesel_async::RunQueryDsl as _;
    let count: Count = diesel::sql_query("SELECT count(*) AS n FROM idempotency_keys")
        .get_result(&mut app.db().await)
        .await
        .expect("count");
    count.n
}

#[tokio::test]
async fn a_retry_gets_the_first_answer_replayed_and_writes_nothing() {
    let app = spawn_app().await;
    let body = product("Idem", "1", "M");

    let first = post(&app, &app.address, "order-1", &body).await;
    assert_eq!(first.status(), 201);
    assert!(!replayed(&first));
    let (location, etag) = (
        first.headers()["location"].clone(),
        first.headers()["etag"].clone(),
    );
    let first_body = json(first).await;

    for key in ["order-1", "\"order-1\""] {
        let retry = post(&app, &app.address, key, &body).await;
        assert_eq!(retry.status(), 201, "the first answer, status included");
        assert!(replayed(&retry), "{key}");
        assert_eq!(retry.headers()["location"], location);
        assert_eq!(retry.headers()["etag"], etag);
        assert_eq!(json(retry).await, first_body);
    }
    assert_eq!(app.count_products("true").await, 1);
    assert_eq!(
        json(app.get(&format!("/products/{}", first_body["id"])).await).await["version"],
        1,
        "a replay writes nothing"
    );
    let metrics = scrape(&app).await;
    assert_eq!(value(&metrics, "idempotency_replays_total", &[]), 2.0);

    // Another key is another request: it runs (an update of the same product).
    let other = post(&app, &app.address, "order-2", &body).await;
    assert_eq!(other.status(), 200);
    assert!(!replayed(&other));
}

#[tokio::test]
async fn the_same_key_with_another_request_is_a_422_and_a_bad_key_a_400() {
    let app = spawn_app().await;
    let created = post(&app, &app.address, "k", &product("Idem", "1", "M")).await;
    assert_eq!(created.status(), 201);

    let reused = post(&app, &app.address, "k", &product("Idem", "2", "M")).await;
    assert_eq!(reused.status(), 422);
    assert_eq!(
        json(reused).await["type"],
        "urn:product-service:problem:idempotency-key-reused"
    );
    assert_eq!(app.count_products("true").await, 1, "nothing written");
    let metrics = scrape(&app).await;
    assert_eq!(
        value(
            &metrics,
            "idempotency_conflicts_total",
            &[("kind", "reused")]
        ),
        1.0
    );

    let long = "k".repeat(256);
    for key in ["", "\"unclosed", long.as_str(), "caf\u{e9}"] {
        let request = app
            .client
            .post(app.url("/products"))
            .header(
                "idempotency-key",
                reqwest::header::HeaderValue::from_bytes(key.as_bytes()).expect("bytes"),
            )
            .json(&product("Idem", "3", "M"));
        let response = request.send().await.expect("send");
        assert_eq!(response.status(), 400, "{key:?}");
        assert!(json(response).await["errors"]["Idempotency-Key"].is_array());
    }
    let twice = app
        .client
        .post(app.url("/products"))
        .header("idempotency-key", "a")
        .header("idempotency-key", "b")
        .json(&product("Idem", "3", "M"))
        .send()
        .await
        .expect("send");
    assert_eq!(twice.status(), 400);
    assert_eq!(app.count_products("true").await, 1);
}

#[tokio::test]
async fn a_failed_write_is_not_stored_so_its_retry_runs() {
    let app = spawn_app().await;
    let body = product("Idem", "1", "M");
    let refused = app
        .client
        .post(app.url("/products"))
        .header("idempotency-key", "try")
        .header("if-match", "*")
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(refused.status(), 412, "no product to match");
    assert_eq!(stored_keys(&app).await, 0);

    let retry = post(&app, &app.address, "try", &body).await;
    assert_eq!(retry.status(), 201);
    assert!(!replayed(&retry));
}

#[tokio::test]
async fn an_expired_key_runs_again_and_is_cleaned_up() {
    let app = spawn_app_with(|c| c.idempotency_ttl_secs = 1).await;
    let body = product("Idem", "1", "M");
    assert_eq!(post(&app, &app.address, "k", &body).await.status(), 201);
    assert_eq!(stored_keys(&app).await, 1);

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let again = post(&app, &app.address, "k", &body).await;
    assert_eq!(again.status(), 200, "expired: it ran again (an update)");
    assert!(!replayed(&again));

    // The cleanup runs every TTL (here 1 s): the key goes once it expires again.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while stored_keys(&app).await > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "an expired key stayed past the cleanup"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn concurrent_requests_with_one_key_run_the_upsert_once(group_commit: bool) {
    let app = spawn_app_with(|c| c.group_commit = group_commit).await;
    let other = app
        .another_instance(|c| c.group_commit = group_commit)
        .await;
    let body = json!({"brand": "Idem", "serial": "race", "manufacturer": "M", "name": "n"});

    let requests = (0..16).map(|i| {
        let address = if i % 2 == 0 {
            app.address.clone()
        } else {
            other.address.clone()
        };
        let body = body.clone();
        let app = &app;
        async move {
            let response = post(app, &address, "one-key", &body).await;
            let status = response.status().as_u16();
            let retry_after = response.headers().contains_key("retry-after");
            (status, replayed(&response), retry_after)
        }
    });
    let answers = futures::future::join_all(requests).await;

    let ran: Vec<_> = answers
        .iter()
        .filter(|(status, replayed, _)| (200..300).contains(status) && !replayed)
        .collect();
    assert_eq!(ran.len(), 1, "the upsert ran once: {answers:?}");
    assert_eq!(ran[0].0, 201);
    for (status, replayed, retry_after) in &answers {
        assert!(
            (*status == 201) || (*status == 409 && *retry_after && !replayed),
            "only the first answer, replays of it, or 409 with Retry-After: {answers:?}"
        );
    }
    assert_eq!(app.count_products("serial = 'race'").await, 1);
    assert_eq!(
        json(app.get("/products?serial=race").await).await["items"][0]["version"],
        1,
        "written once"
    );
}

#[tokio::test]
async fn keys_are_scoped_to_the_callers_api_token() {
    use product_service::config::ApiToken;
    let app = spawn_app_with(|c| {
        c.api_tokens = vec![ApiToken::from("token-a"), ApiToken::from("token-b")];
    })
    .await;
    let body = product("Idem", "scoped", "M");
    let send = |token: &'static str| {
        app.client
            .post(app.url("/products"))
            .bearer_auth(token)
            .header("idempotency-key", "shared-key")
            .json(&body)
            .send()
    };

    let first = send("token-a").await.expect("send");
    assert_eq!(first.status(), 201);
    let other_caller = send("token-b").await.expect("send");
    assert_eq!(other_caller.status(), 200, "another caller's key: it runs");
    assert!(!replayed(&other_caller));
    let retry = send("token-a").await.expect("send");
    assert_eq!(retry.status(), 201);
    assert!(replayed(&retry), "the caller's own retry is a replay");
}

#[tokio::test]
async fn a_batch_with_a_key_runs_once_and_its_retry_is_replayed() {
    let app = spawn_app().await;
    let batch = json!([product("Idem", "b1", "M"), product("Idem", "b2", "M")]);
    let send = |body: &Value| {
        app.client
            .post(app.url("/products/batch"))
            .header("idempotency-key", "batch-1")
            .json(body)
            .send()
    };

    let first = send(&batch).await.expect("send");
    assert_eq!(first.status(), 200);
    assert!(!replayed(&first));
    let first_body = json(first).await;
    assert_eq!(first_body[0]["outcome"], "created");

    let retry = send(&batch).await.expect("send");
    assert_eq!(retry.status(), 200);
    assert!(replayed(&retry));
    assert_eq!(
        json(retry).await,
        first_body,
        "the first answer, created and all"
    );
    assert_eq!(app.count_products("version = 1").await, 2, "written once");

    let other = send(&json!([product("Idem", "b3", "M")]))
        .await
        .expect("send");
    assert_eq!(other.status(), 422);
    assert_eq!(app.count_products("true").await, 2);
}

#[tokio::test]
async fn keyed_requests_on_a_held_key_do_not_take_the_pool_from_other_keys() {
    let app = spawn_app_with(|c| {
        c.db_pool_size = 4;
        c.db_pool_timeout_ms = 500;
        c.waits.lock_timeout_ms = 3000;
    })
    .await;
    let other = json(app.post_product(&product("Idem", "free", "M")).await).await;
    let _holder = app.hold_key_lock("Idem", "held", "M").await;

    let held = product("Idem", "held", "M");
    let waiting = (0..12).map(|i| {
        let body = held.clone();
        let app = &app;
        async move {
            post(app, &app.address, &format!("held-{i}"), &body)
                .await
                .status()
                .as_u16()
        }
    });
    let others = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let read = app
            .get(&format!("/products/{}", other["id"]))
            .await
            .status();
        let write = app
            .post_product(&product("Idem", "free", "M"))
            .await
            .status();
        (read, write)
    };
    let (statuses, (read, write)) = tokio::join!(futures::future::join_all(waiting), others);

    assert_eq!(read, 200, "a read of another product is not starved");
    assert_eq!(write, 200, "a write of another key is not starved");
    assert!(
        statuses.iter().all(|s| *s == 503),
        "the held key's requests time out: {statuses:?}"
    );
}
