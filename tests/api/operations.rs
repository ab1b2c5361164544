//! Operations: every metric moves with the event that causes it; probes; request ids.

use std::time::{Duration, Instant};

use diesel_async::SimpleAsyncConnection;

use crate::helpers::{json, product, sample, scrape, spawn_app, spawn_app_with, value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upserts_lock_waits_and_lock_timeouts_move_their_metrics() {
    let app = spawn_app_with(|c| c.waits.lock_timeout_ms = 300).await;
    let before = scrape(&app).await;
    assert_eq!(
        value(&before, "product_upserts_total", &[("outcome", "created")]),
        0.0
    );
    assert_eq!(
        value(&before, "db_errors_total", &[("kind", "lock_timeout")]),
        0.0
    );

    app.post_product(&product("M", "1", "M")).await;
    app.post_product(&product("M", "1", "M")).await;
    let mut holder = app.hold_key_lock("M", "2", "M").await;
    let refused = app.post_product(&product("M", "2", "M")).await;
    assert_eq!(refused.status(), 503);
    holder.batch_execute("ROLLBACK").await.expect("release");

    let after = scrape(&app).await;
    assert_eq!(
        value(&after, "product_upserts_total", &[("outcome", "created")]),
        1.0
    );
    assert_eq!(
        value(&after, "product_upserts_total", &[("outcome", "updated")]),
        1.0
    );
    assert_eq!(
        value(&after, "product_upserts_total", &[("outcome", "failed")]),
        1.0
    );
    assert_eq!(
        value(&after, "db_errors_total", &[("kind", "lock_timeout")]),
        1.0
    );
    assert_eq!(
        value(&after, "product_upsert_lock_wait_seconds_count", &[]),
        2.0
    );
    assert_eq!(
        value(&after, "product_upsert_transaction_seconds_count", &[]),
        3.0
    );
    assert_eq!(
        value(
            &after,
            "product_upsert_lock_wait_seconds_bucket",
            &[("le", "+Inf")]
        ),
        2.0
    );
    let posts = [("method", "POST"), ("route", "/products")];
    assert_eq!(
        value(
            &after,
            "http_requests_total",
            &[posts[0], posts[1], ("status", "201")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "http_requests_total",
            &[posts[0], posts[1], ("status", "503")]
        ),
        1.0
    );
    assert_eq!(
        value(&after, "http_request_duration_seconds_count", &posts),
        3.0
    );
}

#[tokio::test]
async fn route_labels_are_patterns_never_raw_paths() {
    let app = spawn_app().await;

    app.get("/products/987654").await;
    app.get("/products/not-an-id").await;
    app.get("/random/path-xyz").await;

    let text = scrape(&app).await;
    let item = [
        ("method", "GET"),
        ("route", "/products/{id}"),
        ("status", "404"),
    ];
    assert_eq!(value(&text, "http_requests_total", &item), 2.0);
    let unmatched = [("method", "GET"), ("route", "unmatched"), ("status", "404")];
    assert_eq!(value(&text, "http_requests_total", &unmatched), 1.0);
    for raw in ["987654", "not-an-id", "path-xyz"] {
        assert!(
            !text.contains(raw),
            "a raw path ({raw}) leaked into the metrics"
        );
    }
}

#[tokio::test]
async fn duplicates_made_with_sql_appear_in_the_duplicate_gauge() {
    let app = spawn_app_with(|c| c.duplicate_scan_interval_secs = 1).await;
    app.sql(
        "INSERT INTO products (brand, serial, manufacturer, name) VALUES \
         ('D', '1', 'M', 'a'), ('D', '1', 'M', 'b'), ('D', '2', 'M', 'c'), \
         ('D', '3', 'M', 'd'), ('D', '3', 'M', 'e')",
    )
    .await;

    let deadline = Instant::now() + Duration::from_secs(15);
    let text = loop {
        let text = scrape(&app).await;
        if sample(&text, "product_duplicate_key_groups", &[]) == Some(2.0)
            || Instant::now() > deadline
        {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(value(&text, "product_duplicate_key_groups", &[]), 2.0);
    assert!(value(&text, "product_duplicate_scan_timestamp_seconds", &[]) > 1.0e9);
}

#[tokio::test]
async fn build_info_and_process_metrics_are_exposed() {
    let app = spawn_app().await;
    app.get("/healthz").await;
    let text = scrape(&app).await;
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        value(&text, "product_service_build_info", &[("version", version)]),
        1.0
    );
    assert!(sample(&text, "process_resident_memory_bytes", &[]).is_some_and(|v| v > 0.0));
    assert!(text.contains("# TYPE http_request_duration_seconds histogram"));
}

#[tokio::test]
async fn with_metrics_addr_metrics_are_served_only_off_the_public_port() {
    let app = spawn_app_with(|c| c.metrics_addr = Some("127.0.0.1:0".parse().expect("addr"))).await;
    app.post_product(&product("Sep", "1", "M")).await;

    let public = app.get("/metrics").await;
    let text = scrape(&app).await;

    assert_eq!(public.status(), 404);
    assert_eq!(
        value(&text, "product_upserts_total", &[("outcome", "created")]),
        1.0
    );
}

#[tokio::test]
async fn readyz_follows_the_database_down_and_back_up_while_healthz_stays_up() {
    let app = spawn_app().await;
    let readyz = || async { app.get("/readyz").await };
    let healthz = || async { app.get("/healthz").await };
    assert_eq!(readyz().await.status(), 200);
    let name = app.db_name().to_owned();

    app.admin_sql(&format!(
        "ALTER DATABASE {name} ALLOW_CONNECTIONS false; \
         SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
    ))
    .await;
    let down = wait_for_status(readyz, 503).await;
    assert_eq!(down.headers()["content-type"], "application/problem+json");
    // The cause in our words; the driver's and the pool's go to the log.
    let detail = json(down).await["detail"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        detail.starts_with("the database is unreachable")
            || detail.starts_with("the database failed the readiness query"),
        "{detail}"
    );
    assert_eq!(
        healthz().await.status(),
        200,
        "liveness never asks the database"
    );

    app.admin_sql(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        .await;
    wait_for_status(readyz, 200).await;
}

/// Polls until `probe` answers `status`, for at most 10 s.
async fn wait_for_status<F, Fut>(probe: F, status: u16) -> reqwest::Response
where
    F: Fn() -> Fut,
    Fut: Future<Output = reqwest::Response>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = probe().await;
        if response.status() == status {
            return response;
        }
        assert!(
            Instant::now() < deadline,
            "still {} after 10 s",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn request_ids_are_echoed_or_replaced_and_name_the_problem() {
    let app = spawn_app().await;
    let send = |id: Option<String>| {
        let mut request = app.client.get(app.url("/products/0"));
        if let Some(id) = id {
            request = request.header("x-request-id", id);
        }
        request.send()
    };

    let echoed = send(Some("client-id-42".to_owned())).await.expect("send");
    assert_eq!(echoed.headers()["x-request-id"], "client-id-42");
    assert_eq!(
        json(echoed).await["instance"],
        "urn:product-service:request:client-id-42"
    );

    for bad in [Some("x".repeat(129)), Some("tab\tinside".to_owned()), None] {
        let response = send(bad.clone()).await.expect("send");
        let id = response.headers()["x-request-id"]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert_eq!(
            id.len(),
            36,
            "{bad:?} must be replaced by a generated id, got {id}"
        );
        assert_ne!(Some(&id), bad.as_ref());
        let instance = json(response).await["instance"]
            .as_str()
            .expect("instance")
            .to_owned();
        assert!(instance.ends_with(&id), "{instance}");
    }
}

#[tokio::test]
async fn a_statement_timeout_is_a_503_counted_as_statement_timeout() {
    // The row-lock wait is cut by the statement timeout first, which is what this test needs.
    let app = spawn_app_with(|c| {
        c.waits.statement_timeout_ms = 200;
        c.waits.lock_timeout_ms = 10_000;
    })
    .await;
    let created = json(app.post_product(&product("T", "S", "M")).await).await;
    let mut holder = app.hold_row_lock(&created["id"]).await;

    let response = app.post_product(&product("T", "S", "M")).await;

    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    holder.batch_execute("ROLLBACK").await.expect("release");
    let text = scrape(&app).await;
    assert_eq!(
        value(&text, "db_errors_total", &[("kind", "statement_timeout")]),
        1.0
    );
    assert_eq!(
        value(&text, "db_errors_total", &[("kind", "lock_timeout")]),
        0.0
    );
}
