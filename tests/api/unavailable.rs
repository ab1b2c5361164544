//! Bounded waits: a held lock, a full pool or a missing database is a 503 with Retry-After,
//! never a hang, and never holds up other keys.

use std::time::{Duration, Instant};

use futures::future::join_all;
use futures::stream::{self, StreamExt as _};

use diesel_async::SimpleAsyncConnection;

use crate::helpers::{json, product, sample, scrape, spawn_app_with, value};

// The tests of this file, each run with group commit and with one transaction per upsert.
in_both_modes!(
    a_key_locked_elsewhere_is_503_within_the_lock_timeout_while_other_keys_are_served,
    a_row_locked_elsewhere_is_503_within_the_lock_timeout,
    an_exhausted_pool_is_503_after_the_pool_timeout,
    an_unreachable_database_is_503_and_service_resumes_when_it_returns,
    keys_whose_concatenations_look_alike_never_wait_for_each_other,
    a_key_held_elsewhere_delays_only_its_own_requests,
    a_row_held_elsewhere_delays_only_its_own_key,
);

/// Far above every bound configured here: "never a hang", not a speed claim.
const HANG: Duration = Duration::from_secs(15);

fn assert_unavailable(response: &reqwest::Response, case: &str) {
    assert_eq!(response.status(), 503, "{case}");
    assert_eq!(response.headers()["retry-after"], "1", "{case}");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json",
        "{case}"
    );
}

async fn a_key_locked_elsewhere_is_503_within_the_lock_timeout_while_other_keys_are_served(
    group_commit: bool,
) {
    let app = spawn_app_with(|c| {
        c.waits.lock_timeout_ms = 500;
        c.group_commit = group_commit;
    })
    .await;
    let mut holder = app.hold_key_lock("Held", "S", "M").await;

    let (held_key, free_key) = (product("Held", "S", "M"), product("Free", "S", "M"));
    let started = Instant::now();
    let (held, other) = tokio::join!(app.post_product(&held_key), app.post_product(&free_key));
    let waited = started.elapsed();

    assert_unavailable(&held, "held key");
    assert!(waited < HANG, "waited {waited:?}");
    assert_eq!(
        other.status(),
        201,
        "another key is served while one is held"
    );
    assert_eq!(
        app.count_products("brand = 'Held'").await,
        0,
        "a 503 writes nothing"
    );

    holder.batch_execute("ROLLBACK").await.expect("release");
    assert_eq!(
        app.post_product(&product("Held", "S", "M")).await.status(),
        201
    );
}

async fn a_row_locked_elsewhere_is_503_within_the_lock_timeout(group_commit: bool) {
    let app = spawn_app_with(|c| {
        c.waits.lock_timeout_ms = 300;
        c.group_commit = group_commit;
    })
    .await;
    let created = json(app.post_product(&product("Row", "S", "M")).await).await;
    let mut holder = app.hold_row_lock(&created["id"]).await;

    let started = Instant::now();
    let upsert = app.post_product(&product("Row", "S", "M")).await;
    let patch = app
        .client
        .patch(app.url(&format!("/products/{}", created["id"])))
        .json(&serde_json::json!({"name": "x"}))
        .send()
        .await
        .expect("send");

    assert_unavailable(&upsert, "upsert of a row locked elsewhere");
    assert_unavailable(&patch, "patch of a row locked elsewhere");
    assert!(started.elapsed() < HANG);
    holder.batch_execute("ROLLBACK").await.expect("release");
    assert_eq!(
        app.post_product(&product("Row", "S", "M")).await.status(),
        200
    );
}

async fn an_exhausted_pool_is_503_after_the_pool_timeout(group_commit: bool) {
    let app = spawn_app_with(|c| {
        c.group_commit = group_commit;
        c.db_pool_size = 1;
        c.db_pool_timeout_ms = 200;
        c.waits.lock_timeout_ms = 3000;
    })
    .await;
    let busy_key = product("Busy", "S", "M");
    let created = json(app.post_product(&busy_key).await).await;
    let mut holder = app.hold_row_lock(&created["id"]).await;

    // The first request takes the only connection and waits for the row's lock.
    let waiting = app.post_product(&busy_key);
    let starved = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let starved = app.post_product(&product("Other", "S", "M")).await;
        let metrics = scrape(&app).await;
        holder.batch_execute("ROLLBACK").await.expect("release");
        (starved, metrics)
    };
    let (waiting, (starved, metrics)) = tokio::join!(waiting, starved);

    assert_unavailable(&starved, "no free connection");
    assert_eq!(
        waiting.status(),
        200,
        "the waiting request completes once the lock is released"
    );
    assert_eq!(value(&metrics, "db_pool_timeouts_total", &[]), 1.0);
    assert_eq!(value(&metrics, "db_pool_max_connections", &[]), 1.0);
    let in_use = value(&metrics, "db_pool_connections", &[("state", "in_use")]);
    assert_eq!(in_use, 1.0, "the waiting request holds the only connection");
    assert_eq!(
        value(&metrics, "db_pool_connections", &[("state", "idle")]),
        0.0
    );
    assert!(sample(&metrics, "db_pool_waiting_requests", &[]).is_some());
}

async fn an_unreachable_database_is_503_and_service_resumes_when_it_returns(group_commit: bool) {
    let app = spawn_app_with(|c| c.group_commit = group_commit).await;
    assert_eq!(
        app.post_product(&product("Up", "1", "M")).await.status(),
        201
    );
    let name = app.db_name().to_owned();
    app.admin_sql(&format!(
        "ALTER DATABASE {name} ALLOW_CONNECTIONS false; \
         SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
    ))
    .await;

    let started = Instant::now();
    let post = app.post_product(&product("Up", "2", "M")).await;
    let get = app.get("/products").await;

    assert_unavailable(&post, "POST with the database gone");
    assert_unavailable(&get, "GET with the database gone");
    assert!(started.elapsed() < HANG);
    let metrics = scrape(&app).await;
    let refused = value(&metrics, "db_errors_total", &[("kind", "connection")]);
    assert!(refused >= 2.0, "refused connections are counted: {refused}");

    app.admin_sql(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        .await;
    assert_eq!(
        app.post_product(&product("Up", "2", "M")).await.status(),
        201,
        "no restart needed"
    );
}

async fn keys_whose_concatenations_look_alike_never_wait_for_each_other(group_commit: bool) {
    let app = spawn_app_with(|c| {
        c.waits.lock_timeout_ms = 2000;
        c.group_commit = group_commit;
    })
    .await;
    let mut holder = app.hold_key_lock("ab", "c", "x").await;

    let response = app.post_product(&product("a", "bc", "x")).await;

    assert_eq!(
        response.status(),
        201,
        "('a','bc','x') must not share ('ab','c','x')'s lock"
    );
    holder.batch_execute("ROLLBACK").await.expect("release");
}

/// Sends `request` and times it.
async fn timed(request: impl Future<Output = reqwest::Response>) -> (u16, Duration) {
    let started = Instant::now();
    let response = request.await;
    if response.status() == 503 {
        assert_unavailable(&response, "a held key");
    }
    (response.status().as_u16(), started.elapsed())
}

async fn a_key_held_elsewhere_delays_only_its_own_requests(group_commit: bool) {
    let lock_timeout = Duration::from_millis(2000);
    let app = spawn_app_with(|c| {
        c.waits.lock_timeout_ms = 2000;
        c.group_commit = group_commit;
    })
    .await;
    let mut holder = app.hold_key_lock("Held", "S", "M").await;

    // Requests for the held key keep coming (every 50 ms) while other keys take load.
    let held_key = product("Held", "S", "M");
    let held = join_all((0..20).map(|i| {
        let app = &app;
        let body = &held_key;
        async move {
            tokio::time::sleep(Duration::from_millis(50 * i)).await;
            timed(app.post_product(body)).await
        }
    }));
    let bodies: Vec<_> = (0..400)
        .map(|i| product("Free", &i.to_string(), "M"))
        .collect();
    let others = stream::iter(bodies.iter().map(|body| timed(app.post_product(body))))
        .buffer_unordered(16)
        .collect::<Vec<_>>();
    let (held, others) = tokio::join!(held, others);
    holder.batch_execute("ROLLBACK").await.expect("release");

    let margin = Duration::from_millis(500);
    for (status, waited) in &held {
        assert_eq!(*status, 503, "the held key's requests are refused");
        assert!(
            *waited <= lock_timeout + margin,
            "a held key's request waited {waited:?}, past LOCK_TIMEOUT_MS and queueing"
        );
    }
    let slowest = others.iter().map(|(_, waited)| *waited).max();
    assert!(
        others.iter().all(|(status, _)| *status == 201),
        "{others:?}"
    );
    assert!(
        slowest < Some(lock_timeout / 2),
        "other keys never wait for the held one; the slowest took {slowest:?}"
    );
    assert_eq!(app.count_products("brand = 'Free'").await, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_of_any_characters_held_through_product_lock_key_is_held_for_the_service() {
    // Other writers lock with the `product_lock_key` function; the service computes the same
    // formula itself, so both must meet on keys of any characters.
    let app = spawn_app_with(|c| c.waits.lock_timeout_ms = 300).await;
    let key = ("Ünï cödé 😀", "ß∑ \\ x", "Мир");
    let mut holder = app.hold_key_lock(key.0, key.1, key.2).await;

    let held = app.post_product(&product(key.0, key.1, key.2)).await;

    assert_unavailable(&held, "a key held through product_lock_key");
    holder.batch_execute("ROLLBACK").await.expect("release");
    assert_eq!(
        app.post_product(&product(key.0, key.1, key.2))
            .await
            .status(),
        201
    );
}

async fn a_row_held_elsewhere_delays_only_its_own_key(group_commit: bool) {
    // A writer outside the protocol holds a product's row lock (no advisory lock): only that
    // key's requests wait for it, and get a 503 within LOCK_TIMEOUT_MS.
    let lock_timeout = Duration::from_millis(1000);
    let app = spawn_app_with(|c| {
        c.waits.lock_timeout_ms = 1000;
        c.group_commit = group_commit;
    })
    .await;
    let created = json(app.post_product(&product("Row", "S", "M")).await).await;
    let mut holder = app.hold_row_lock(&created["id"]).await;

    let held_key = product("Row", "S", "M");
    let held = join_all((0..4).map(|_| timed(app.post_product(&held_key))));
    let bodies: Vec<_> = (0..200)
        .map(|i| product("Free", &i.to_string(), "M"))
        .collect();
    let others = stream::iter(bodies.iter().map(|body| timed(app.post_product(body))))
        .buffer_unordered(16)
        .collect::<Vec<_>>();
    let (held, others) = tokio::join!(held, others);
    holder.batch_execute("ROLLBACK").await.expect("release");

    for (status, waited) in &held {
        assert_eq!(*status, 503, "the held row's requests are refused");
        assert!(
            *waited <= lock_timeout + Duration::from_millis(500),
            "{waited:?}"
        );
    }
    assert!(
        others.iter().all(|(status, _)| *status == 201),
        "other keys are never refused for a row they do not touch: {others:?}"
    );
}
