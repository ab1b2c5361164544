//! The conditions production brings: a server that answers in another language to a role that
//! cannot change it, a database that turns read-only (a standby after a failover, or
//! maintenance), and a server whose advisory locks are stubs. Every fault is a 503 with
//! Retry-After, never a 500, and service resumes by itself; a server that cannot keep the
//! guarantee is refused at start.

use diesel_async::SimpleAsyncConnection;
use serde_json::json;

use product_service::startup::Application;

use crate::helpers::{
    DatabaseSetup, TestApp, TestDatabase, json, product, scrape, spawn_app_on, spawn_app_with,
    test_config, value,
};

// The tests of this file, each run with group commit and with one transaction per upsert.
in_both_modes!(
    lock_and_statement_timeouts_are_503_on_a_server_speaking_german_to_a_role_without_superuser,
    a_read_only_database_refuses_writes_with_503_is_not_ready_serves_reads_and_recovers,
);

/// The locale the non-English test asks the server to speak (`localedef -i de_DE -f UTF-8
/// de_DE.UTF-8` makes it; `.ci/run` does).
const GERMAN: &str = "'de_DE.UTF-8'";

fn assert_503(response: &reqwest::Response, case: &str) {
    assert_eq!(response.status(), 503, "{case}");
    assert_eq!(response.headers()["retry-after"], "1", "{case}");
}

async fn detail(response: reqwest::Response) -> String {
    json(response).await["detail"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn german_app(
    group_commit: bool,
    lock_timeout_ms: u64,
    statement_timeout_ms: u64,
) -> TestApp {
    let setup = DatabaseSetup {
        own_role: true,
        settings: &[("lc_messages", GERMAN)],
        ..DatabaseSetup::default()
    };
    spawn_app_on(setup, |c| {
        c.group_commit = group_commit;
        c.waits.lock_timeout_ms = lock_timeout_ms;
        c.waits.statement_timeout_ms = statement_timeout_ms;
    })
    .await
}

async fn lock_and_statement_timeouts_are_503_on_a_server_speaking_german_to_a_role_without_superuser(
    group_commit: bool,
) {
    // A lock timeout first (lock_timeout below statement_timeout)...
    let app = german_app(group_commit, 300, 10_000).await;
    // The premise: this role cannot switch messages to English, and the server speaks German.
    let mut conn = app.db().await;
    let refused = conn.batch_execute("SET lc_messages TO 'C'").await;
    assert!(
        refused.is_err(),
        "a role without superuser may not set lc_messages"
    );
    let error = conn
        .batch_execute("SELECT 1/0")
        .await
        .expect_err("division by zero fails");
    assert!(
        error.to_string().contains("Division durch Null"),
        "the server must answer in German for this test to mean anything: {error}"
    );

    let mut holder = app.hold_key_lock("Held", "S", "M").await;
    let held = app.post_product(&product("Held", "S", "M")).await;
    assert_503(&held, "a key held past LOCK_TIMEOUT_MS");
    assert!(detail(held).await.contains("LOCK_TIMEOUT_MS"));
    let metrics = scrape(&app).await;
    assert_eq!(
        value(&metrics, "db_errors_total", &[("kind", "lock_timeout")]),
        1.0
    );
    holder.batch_execute("ROLLBACK").await.expect("release");

    // ... then a statement timeout (statement_timeout below lock_timeout), on a row lock.
    let app = german_app(group_commit, 10_000, 300).await;
    let created = json(app.post_product(&product("Slow", "S", "M")).await).await;
    let mut holder = app.hold_row_lock(&created["id"]).await;
    let slow = app.post_product(&product("Slow", "S", "M")).await;
    assert_503(&slow, "a statement past STATEMENT_TIMEOUT_MS");
    assert!(detail(slow).await.contains("STATEMENT_TIMEOUT_MS"));
    let metrics = scrape(&app).await;
    let counted = value(
        &metrics,
        "db_errors_total",
        &[("kind", "statement_timeout")],
    );
    assert_eq!(counted, 1.0);
    holder.batch_execute("ROLLBACK").await.expect("release");
    assert_eq!(
        app.post_product(&product("Slow", "S", "M")).await.status(),
        200
    );
}

/// Ends the service's sessions, so that its next connections get the database's new settings.
async fn end_sessions(app: &TestApp) {
    app.admin_sql(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}'",
        app.db_name()
    ))
    .await;
}

async fn a_read_only_database_refuses_writes_with_503_is_not_ready_serves_reads_and_recovers(
    group_commit: bool,
) {
    let app = spawn_app_with(|c| c.group_commit = group_commit).await;
    let created = json(app.post_product(&product("Ro", "1", "M")).await).await;
    let path = format!("/products/{}", created["id"]);
    app.admin_sql(&format!(
        "ALTER DATABASE {} SET default_transaction_read_only = on",
        app.db_name()
    ))
    .await;
    end_sessions(&app).await;

    // The first request may meet a connection the server ended (a 503 too); then read-only.
    let mut details = Vec::new();
    for attempt in 0..3 {
        let post = app
            .post_product(&product("Ro", &format!("new-{attempt}"), "M"))
            .await;
        assert_503(&post, "POST on a read-only database");
        details.push(detail(post).await);
    }
    assert!(
        details.iter().any(|d| d.contains("read-only")),
        "the 503 says the database is read-only: {details:?}"
    );
    let patch = app
        .client
        .patch(app.url(&path))
        .json(&json!({"name": "renamed"}))
        .send()
        .await
        .expect("send");
    assert_503(&patch, "PATCH on a read-only database");
    let delete = app
        .client
        .delete(app.url(&path))
        .send()
        .await
        .expect("send");
    assert_503(&delete, "DELETE on a read-only database");
    assert_eq!(app.get(&path).await.status(), 200, "reads keep working");
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 503);
    assert!(detail(ready).await.contains("read-only"));
    let metrics = scrape(&app).await;
    assert!(value(&metrics, "db_errors_total", &[("kind", "read_only")]) >= 3.0);
    assert_eq!(
        app.count_products("brand = 'Ro'").await,
        1,
        "nothing was written, nothing lost"
    );

    app.admin_sql(&format!(
        "ALTER DATABASE {} RESET default_transaction_read_only",
        app.db_name()
    ))
    .await;
    // Connections opened while read-only leave the pool at their first refused write.
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let status = app
            .post_product(&product("Ro", "after", "M"))
            .await
            .status();
        statuses.push(status.as_u16());
        if status == 201 {
            break;
        }
    }
    assert_eq!(
        statuses.last(),
        Some(&201),
        "writes resume without a restart: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 503),
        "{statuses:?}"
    );
    assert_eq!(app.get("/readyz").await.status(), 200);
}

/// Makes `pg_catalog`'s advisory-lock functions no-ops in this database, as a
/// PostgreSQL-compatible server that accepts the calls and enforces nothing would.
const STUB_CATALOG_LOCKS: &str = "\
    SET allow_system_table_mods = on; \
    CREATE OR REPLACE FUNCTION pg_catalog.pg_advisory_xact_lock(bigint) RETURNS void \
        LANGUAGE sql AS 'SELECT NULL::void'; \
    CREATE OR REPLACE FUNCTION pg_catalog.pg_try_advisory_xact_lock(bigint) RETURNS boolean \
        LANGUAGE sql AS 'SELECT true'";

#[tokio::test]
async fn a_server_whose_advisory_locks_are_stubs_is_refused_at_start() {
    let database = TestDatabase::create(DatabaseSetup {
        sql: STUB_CATALOG_LOCKS,
        ..DatabaseSetup::default()
    })
    .await;

    let refused = Application::build(test_config(&database.url, |_| {})).await;

    let error = refused
        .err()
        .expect("a server with stub locks must be refused")
        .to_string();
    assert!(
        error.contains("does not enforce transaction-level advisory locks"),
        "the refusal says why: {error}"
    );
    let mut conn = product_service::db::connect(&database.url)
        .await
        .expect("connect");
    let untouched = conn.batch_execute("SELECT 1 FROM products").await.is_err();
    assert!(
        untouched,
        "a refused server is left untouched (no migration ran)"
    );
}
