//! The duplicate scan: a full one at start and on SIGUSR1, incremental ones between that find
//! duplicates made by inserts and by key-changing updates, and let merged keys go.

use std::time::{Duration, Instant};

use crate::helpers::{TestApp, sample, scrape, spawn_app_with};

/// Scrapes until `done` holds for the exposition (or 15 s pass), and returns the last one.
async fn scrape_until(app: &TestApp, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = scrape(app).await;
        if done(&text) || Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn groups(text: &str) -> Option<f64> {
    sample(text, "product_duplicate_key_groups", &[])
}

fn last_full_scan(text: &str) -> f64 {
    sample(text, "product_duplicate_full_scan_timestamp_seconds", &[]).unwrap_or(0.0)
}

fn checked_keys(text: &str) -> f64 {
    sample(text, "product_duplicate_scan_checked_keys", &[]).unwrap_or(f64::MAX)
}

fn incremental_scan_ran(text: &str) -> bool {
    sample(
        text,
        "product_duplicate_scan_duration_seconds",
        &[("kind", "incremental")],
    )
    .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_scans_find_duplicates_made_by_inserts_and_key_changes_and_drop_merged_ones() {
    // Arrange: rows before the first (full) scan, and scans every second after it.
    let app = spawn_app_with(|c| c.duplicate_scan_interval_secs = 1).await;
    app.sql(
        "INSERT INTO products (brand, serial, manufacturer, name) \
         SELECT 'old', 'SN-' || i, 'M', 'before' FROM generate_series(1, 100) AS i",
    )
    .await;
    // Until the incremental scans' bound has moved past those rows (a scan checks the rows of
    // the scan before it again, until every transaction open then has ended).
    let settled = scrape_until(&app, |text| {
        incremental_scan_ran(text) && checked_keys(text) < 10.0
    })
    .await;
    assert!(incremental_scan_ran(&settled), "no incremental scan ran");
    assert!(checked_keys(&settled) < 10.0, "the bound never moved up");
    let full_scan = last_full_scan(&settled);
    assert!(full_scan > 1.0e9, "no full scan at start");

    // Act: another program, without the lock, inserts a second row of an old key, and moves an
    // old row (a low id, below every scan's bound) onto another old key.
    app.sql(
        "INSERT INTO products (brand, serial, manufacturer, name) VALUES ('old', 'SN-1', 'M', 'dup'); \
         UPDATE products SET serial = 'SN-2' WHERE brand = 'old' AND serial = 'SN-3'",
    )
    .await;
    let found = scrape_until(&app, |text| groups(text) == Some(2.0)).await;

    // Assert: found by incremental scans alone.
    assert_eq!(groups(&found), Some(2.0), "both duplicates found");
    assert_eq!(
        last_full_scan(&found),
        full_scan,
        "no full scan ran meanwhile"
    );
    let checked = checked_keys(&found);
    assert!(
        checked < 10.0,
        "an incremental scan looks up the keys written since, not all 100 ({checked})"
    );

    // Act: the duplicates are merged away (here: the extra rows deleted).
    app.sql(
        "DELETE FROM products WHERE name = 'dup'; \
         DELETE FROM products WHERE brand = 'old' AND serial = 'SN-2' AND name = 'before' \
         AND id <> (SELECT min(id) FROM products WHERE brand = 'old' AND serial = 'SN-2')",
    )
    .await;
    let merged = scrape_until(&app, |text| groups(text) == Some(0.0)).await;

    // Assert
    assert_eq!(groups(&merged), Some(0.0), "merged keys leave the gauge");
    assert_eq!(last_full_scan(&merged), full_scan, "still no full scan");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr1_runs_a_full_scan_at_once() {
    // Arrange: one scan at start, the next an hour away; a duplicate with an id the bound of
    // the incremental scans will never reach again (written with an explicit, low id).
    let app = spawn_app_with(|c| c.duplicate_scan_interval_secs = 3600).await;
    let started = scrape_until(&app, |text| last_full_scan(text) > 0.0).await;
    let first = last_full_scan(&started);
    assert!(first > 0.0, "no full scan at start");
    app.sql(
        "INSERT INTO products (id, brand, serial, manufacturer, name) VALUES \
         (-2, 'S', '1', 'M', 'a'), (-1, 'S', '1', 'M', 'b')",
    )
    .await;

    // Act
    nix::sys::signal::raise(nix::sys::signal::Signal::SIGUSR1).expect("raise SIGUSR1");
    let after = scrape_until(&app, |text| groups(text) == Some(1.0)).await;

    // Assert
    assert_eq!(groups(&after), Some(1.0));
    assert!(last_full_scan(&after) > first, "a second full scan ran");
}
