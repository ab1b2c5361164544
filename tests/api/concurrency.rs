//! The race this service exists to win: concurrent upserts and key changes never duplicate.
//!
//! Every race test widens the window between reading and writing (`race_window_ms`, a
//! `test-hooks` switch) so that a missing lock shows up every time, and one test switches the
//! advisory lock off to prove that these tests catch the bug.

use futures::future::join_all;
use serde_json::json;

use crate::helpers::{TestApp, json, product, spawn_app_with};

/// The window between `SELECT ... FOR UPDATE` and the write, in the race tests.
/// Wide enough that requests released together all fall into it even on a loaded machine.
const RACE_WINDOW_MS: u64 = 150;
/// Connections opened before a race, so that opening them does not spread the requests out.
const WARM_CONNECTIONS: usize = 64;

async fn racing_app(lock: bool) -> TestApp {
    let app = cold_racing_app(lock).await;
    warm_up(&app).await;
    app
}

/// A racing app whose pool has no connection yet.
async fn cold_racing_app(lock: bool) -> TestApp {
    spawn_app_with(|c| {
        // Generous bounds: these tests are about duplicates, not about waits (see unavailable.rs).
        c.db_pool_size = 80;
        c.db_pool_timeout_ms = 60_000;
        c.lock_timeout_ms = 60_000;
        c.test_hooks.race_window_ms = RACE_WINDOW_MS;
        c.test_hooks.disable_advisory_lock = !lock;
    })
    .await
}

/// Opens the pool's connections, so that opening them does not spread a race out.
async fn warm_up(app: &TestApp) {
    let requests =
        (0..WARM_CONNECTIONS).map(|_| app.client.get(app.url("/products?limit=1")).send());
    for response in join_all(requests).await {
        assert_eq!(response.expect("warm-up request").status(), 200);
    }
}

/// Sends `n` identical POSTs at once; returns their statuses.
async fn identical_posts(app: &TestApp, n: usize) -> Vec<u16> {
    let body = product("Race", "R-1", "M");
    let requests = (0..n).map(|_| app.post_product(&body));
    join_all(requests)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect()
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_identical_posts_leave_one_row_and_exactly_one_201() {
    let app = racing_app(true).await;

    let statuses = identical_posts(&app, 64).await;

    let rows = app.count_products("true").await;
    eprintln!(
        "with the lock: rows={rows}, 201s={}, 200s={}",
        count(&statuses, 201),
        count(&statuses, 200)
    );
    assert_eq!(count(&statuses, 201), 1, "{statuses:?}");
    assert_eq!(count(&statuses, 200), 63, "{statuses:?}");
    assert_eq!(rows, 1);
    let product = json(
        app.client
            .get(app.url("/products?brand=Race"))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(
        product["items"][0]["version"], 64,
        "every update was applied in turn"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_advisory_lock_the_same_race_writes_duplicates() {
    let app = racing_app(false).await;

    let statuses = identical_posts(&app, 64).await;

    let rows = app.count_products("true").await;
    eprintln!(
        "without the lock: rows={rows}, 201s={}, 200s={}",
        count(&statuses, 201),
        count(&statuses, 200)
    );
    assert!(
        rows > 1,
        "the race test must catch a missing lock, yet found {rows} row"
    );
    assert!(count(&statuses, 201) > 1, "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_keys_with_sixteen_concurrent_posts_each_leave_fifty_rows() {
    let app = racing_app(true).await;
    let bodies: Vec<_> = (0..16)
        .flat_map(|_| (0..50).map(|k| product("Many", &format!("K-{k}"), "M")))
        .collect();

    let responses = join_all(bodies.iter().map(|b| app.post_product(b))).await;

    let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(count(&statuses, 201), 50, "one creation per key");
    assert_eq!(count(&statuses, 200), 750, "{statuses:?}");
    assert_eq!(app.count_products("true").await, 50);
    assert_eq!(app.duplicated_keys().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_patches_moving_two_rows_onto_one_key_leave_one_row_with_it() {
    let app = racing_app(true).await;
    for round in 0..10 {
        let first = json(
            app.post_product(&product("Move", &format!("{round}-a"), "M"))
                .await,
        )
        .await;
        let second = json(
            app.post_product(&product("Move", &format!("{round}-b"), "M"))
                .await,
        )
        .await;
        let target = json!({"serial": format!("{round}-target")});

        let responses = join_all([&first, &second].map(|row| {
            app.client
                .patch(app.url(&format!("/products/{}", row["id"])))
                .json(&target)
                .send()
        }))
        .await;

        let mut statuses: Vec<u16> = responses
            .into_iter()
            .map(|r| r.expect("send").status().as_u16())
            .collect();
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 409], "round {round}");
        assert_eq!(
            app.count_products(&format!("serial = '{round}-target'"))
                .await,
            1,
            "round {round}"
        );
    }
    assert_eq!(app.duplicated_keys().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_and_a_post_racing_for_one_key_leave_one_row_with_it() {
    let app = racing_app(true).await;
    for round in 0..10 {
        let row = json(
            app.post_product(&product("Mix", &format!("{round}-old"), "M"))
                .await,
        )
        .await;
        let new_key = product("Mix", &format!("{round}-new"), "M");
        let patch = app
            .client
            .patch(app.url(&format!("/products/{}", row["id"])))
            .json(&json!({"serial": format!("{round}-new")}))
            .send();
        let (patched, posted) = tokio::join!(patch, app.post_product(&new_key));
        let statuses = [
            patched.expect("send").status().as_u16(),
            posted.status().as_u16(),
        ];
        assert!(
            matches!(statuses, [409, 201] | [200, 200]),
            "round {round}: {statuses:?}"
        );
        assert_eq!(
            app.count_products(&format!("serial = '{round}-new'")).await,
            1,
            "round {round}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upsert_runs_read_committed_even_where_the_database_default_is_stricter() {
    let app = cold_racing_app(true).await;
    // Under REPEATABLE READ the read after the lock would use a snapshot taken before the
    // previous holder committed, and insert a duplicate (or fail to serialize). The setting
    // applies to sessions opened after it: the pool is warmed only now.
    app.admin_sql(&format!(
        "ALTER DATABASE {} SET default_transaction_isolation = 'repeatable read'",
        app.db_name()
    ))
    .await;
    warm_up(&app).await;

    let statuses = identical_posts(&app, 16).await;

    assert_eq!(count(&statuses, 201), 1, "{statuses:?}");
    assert_eq!(count(&statuses, 200), 15, "{statuses:?}");
    assert_eq!(app.count_products("true").await, 1);
}
