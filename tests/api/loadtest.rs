//! The `loadtest` tool against a real service: it reports, and `--verify` catches duplicates.

use std::process::{Command, Output};

use serde_json::Value;

use crate::helpers::{TestApp, spawn_app};

const LOADTEST: &str = env!("CARGO_BIN_EXE_loadtest");

async fn loadtest(app: &TestApp, args: &[&str]) -> Output {
    let mut command = Command::new(LOADTEST);
    command
        .args(["--url", &app.address, "--json", "--verify", "--seed", "7"])
        .args(args);
    tokio::task::spawn_blocking(move || command.output().expect("run loadtest"))
        .await
        .expect("loadtest thread")
}

fn report(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout)))
}

#[tokio::test]
async fn a_race_run_reports_its_statuses_and_verifies_one_row_per_key() {
    let app = spawn_app().await;

    let output = loadtest(
        &app,
        &[
            "--scenario",
            "race",
            "--requests",
            "64",
            "--dup",
            "8",
            "--concurrency",
            "16",
        ],
    )
    .await;

    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = report(&output);
    assert_eq!(report["requests"], 64);
    assert_eq!(
        report["statuses"]["201"], 8,
        "one creation per group of 8: {report}"
    );
    assert_eq!(report["statuses"]["200"], 56);
    assert_eq!(report["verify"]["keys_checked"], 8);
    assert_eq!(report["verify"]["passed"], true);
    assert!(
        report["latency_ms"]["p99"]
            .as_f64()
            .is_some_and(|ms| ms > 0.0)
    );
    assert_eq!(app.count_products("true").await, 8);
}

#[tokio::test]
async fn verify_fails_when_a_touched_key_has_two_rows() {
    let app = spawn_app().await;
    // A duplicate the service did not write, on a key the run will touch.
    app.sql(
        "INSERT INTO products (brand, serial, manufacturer, name) VALUES \
         ('lt-7-distinct', '3', 'M', 'a'), ('lt-7-distinct', '3', 'M', 'b')",
    )
    .await;

    let output = loadtest(
        &app,
        &[
            "--scenario",
            "distinct",
            "--requests",
            "10",
            "--concurrency",
            "4",
        ],
    )
    .await;

    assert_eq!(
        output.status.code(),
        Some(1),
        "verify must fail on a duplicated key"
    );
    let report = report(&output);
    assert_eq!(report["verify"]["duplicated_keys"], 1);
    assert_eq!(report["verify"]["passed"], false);
}

#[tokio::test]
async fn cleanup_deletes_the_rows_of_its_run_and_no_others() {
    let app = spawn_app().await;
    app.sql(
        "INSERT INTO products (brand, serial, manufacturer, name) VALUES \
         ('somebody else', '1', 'M', 'kept')",
    )
    .await;

    let output = loadtest(
        &app,
        &[
            "--scenario",
            "distinct",
            "--requests",
            "600",
            "--concurrency",
            "8",
            "--cleanup",
        ],
    )
    .await;

    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = report(&output);
    assert_eq!(report["statuses"]["201"], 600);
    assert_eq!(
        report["cleaned_up"], 600,
        "more rows than one page: {report}"
    );
    assert_eq!(app.count_products("brand = 'lt-7-distinct'").await, 0);
    assert_eq!(app.count_products("true").await, 1, "other rows stay");
}

#[tokio::test]
async fn a_batch_run_reports_items_per_second_and_verifies_its_overlapping_keys() {
    let app = spawn_app().await;

    let output = loadtest(
        &app,
        &[
            "--scenario",
            "batch",
            "--requests",
            "400",
            "--batch-size",
            "20",
            "--concurrency",
            "4",
            "--cleanup",
        ],
    )
    .await;

    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = report(&output);
    assert_eq!(report["requests"], 20, "400 items in batches of 20");
    assert_eq!(report["statuses"]["200"], 20, "{report}");
    assert_eq!(report["items"], 400);
    assert!(report["items_per_second"].as_f64().is_some_and(|n| n > 0.0));
    // Neighbouring batches share 2 of their 20 keys: 20 * 18 + 2 keys in all.
    assert_eq!(report["verify"]["keys_checked"], 362);
    assert_eq!(report["verify"]["passed"], true);
    assert_eq!(report["cleaned_up"], 362);
    assert_eq!(app.count_products("true").await, 0);
}
