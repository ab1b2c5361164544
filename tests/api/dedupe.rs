//! `product-service dedupe`: duplicates made with SQL are reported, merged and gone, and merging
//! is safe while the service takes upserts.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};

use futures::future::join_all;
use serde_json::Value;

use crate::helpers::{TestApp, json, product, spawn_app};

/// Keys duplicated (three rows each) for the live merge.
const KEYS: i64 = 100;

const BINARY: &str = env!("CARGO_BIN_EXE_product-service");

/// Runs `product-service dedupe <args>` against the test's database.
async fn dedupe(app: &TestApp, args: &[&str]) -> Output {
    let url = app.db_url.clone();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(BINARY)
            .arg("dedupe")
            .args(&args)
            .env("DATABASE_URL", url)
            .env("RUST_LOG", "warn")
            .output()
            .expect("run product-service dedupe")
    })
    .await
    .expect("dedupe thread")
}

fn json_lines(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

#[tokio::test]
async fn duplicates_made_with_sql_are_reported_merged_and_gone() {
    let app = spawn_app().await;
    app.sql(
        "INSERT INTO products (brand, serial, manufacturer, name, price, version, updated_at) VALUES \
         ('A', 'S', 'M', 'a1', 1, 3, now() - interval '2 hours'), \
         ('A', 'S', 'M', 'a2', 5, 1, now() - interval '1 hour'), \
         ('A', 'S', 'M', 'a3', 9, 7, now() - interval '3 hours'), \
         ('B', 'S', 'M', 'b1', 0, 1, now()), \
         ('B', 'S', 'M', 'b2', 0, 1, now()), \
         ('C', 'S', 'M', 'c1', 0, 1, now())",
    )
    .await;

    let report = dedupe(&app, &["--json"]).await;
    assert_eq!(
        report.status.code(),
        Some(1),
        "a dry run that finds duplicates exits 1"
    );
    let groups = json_lines(&report);
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0]["brand"], "A");
    assert_eq!(groups[0]["ids"], serde_json::json!([1, 2, 3]));
    assert_eq!(groups[0]["count"], 3);
    assert_eq!(groups[1]["ids"], serde_json::json!([4, 5]));
    let text = dedupe(&app, &[]).await;
    assert!(String::from_utf8_lossy(&text.stdout).contains("3 rows, ids 1, 2, 3"));
    assert_eq!(
        app.count_products("true").await,
        6,
        "a dry run changes nothing"
    );

    let applied = dedupe(&app, &["--apply", "--json"]).await;
    assert_eq!(
        applied.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let deleted = json_lines(&applied);
    let deleted_ids: Vec<i64> = deleted
        .iter()
        .map(|line| line["deleted"]["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(deleted_ids, [2, 3, 5]);
    assert_eq!(deleted[0]["merged_into"], 1);
    assert_eq!(
        deleted[0]["deleted"]["name"], "a2",
        "deleted rows are printed in full"
    );
    assert_eq!(deleted[1]["deleted"]["price"], "9.00");

    assert_eq!(app.duplicated_keys().await, 0);
    assert_eq!(app.count_products("true").await, 3);
    let kept = json(app.get("/products/1").await).await;
    assert_eq!(
        kept["name"], "a2",
        "the most recently updated row's values win"
    );
    assert_eq!(kept["price"], "5.00");
    assert_eq!(kept["version"], 8, "the group's highest version + 1");

    let clean = dedupe(&app, &[]).await;
    assert_eq!(clean.status.code(), Some(0), "a clean table exits 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merging_while_upserts_run_leaves_one_row_per_key_and_no_errors() {
    let app = spawn_app().await;
    let mut values = Vec::new();
    for key in 0..KEYS {
        for copy in 0..3 {
            values.push(format!("('Live', 'K{key}', 'M', 'copy {copy}')"));
        }
    }
    app.sql(&format!(
        "INSERT INTO products (brand, serial, manufacturer, name) VALUES {}",
        values.join(", ")
    ))
    .await;
    let bodies: Vec<Value> = (0..KEYS)
        .map(|key| product("Live", &format!("K{key}"), "M"))
        .collect();
    let merging = AtomicBool::new(true);

    // Rounds of upserts of every key keep coming until the merge has finished.
    let upserts = async {
        let mut statuses = Vec::new();
        let mut rounds = 0;
        while merging.load(Ordering::Acquire) || rounds < 3 {
            let responses = join_all(bodies.iter().map(|b| app.post_product(b))).await;
            statuses.extend(responses.iter().map(|r| r.status().as_u16()));
            rounds += 1;
        }
        (statuses, rounds)
    };
    let merge = async {
        let output = dedupe(&app, &["--apply"]).await;
        merging.store(false, Ordering::Release);
        output
    };
    let (merge, (statuses, rounds)) = tokio::join!(merge, upserts);

    assert_eq!(
        merge.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&merge.stderr)
    );
    eprintln!("{rounds} rounds of {KEYS} upserts ran while the merge did");
    assert!(
        statuses.iter().all(|s| *s == 200),
        "every upsert found its key: {statuses:?}"
    );
    assert_eq!(app.duplicated_keys().await, 0);
    assert_eq!(app.count_products("true").await, KEYS);
}

#[tokio::test]
async fn keys_that_differ_only_in_normalisation_are_reported_and_merged_into_the_nfc_key() {
    let app = spawn_app().await;
    // Written before keys were normalised, bypassing the service: "Café" decomposed (e + U+0301)
    // and precomposed (U+00E9); a padded ASCII key beside its trimmed twin; a lone decomposed
    // key; a key with an invisible character; and a key that is fine.
    app.sql(
        "INSERT INTO products (brand, serial, manufacturer, name, version, updated_at) VALUES \
         (U&'Cafe\\0301', 'S', 'M', 'nfd', 2, now() - interval '1 hour'), \
         (U&'Caf\\00e9', 'S', 'M', 'nfc', 1, now()), \
         (' Acme', 'S', 'M', 'padded', 1, now()), \
         ('Acme', 'S', 'M', 'trimmed', 1, now() - interval '1 hour'), \
         (U&'Cre\\0300me', 'S', 'M', 'lone', 1, now()), \
         (U&'Zero\\200Bwidth', 'S', 'M', 'invisible', 1, now()), \
         ('Fine', 'S', 'M', 'fine', 1, now()), \
         ('   ', 'S', 'M', 'blank once trimmed', 1, now())",
    )
    .await;

    let report = dedupe(&app, &["--json"]).await;
    assert_eq!(
        report.status.code(),
        Some(1),
        "a dry run that finds keys in other spellings exits 1: {}",
        String::from_utf8_lossy(&report.stderr)
    );
    let groups = json_lines(&report);
    assert_eq!(groups.len(), 3, "{groups:?}");
    assert_eq!(groups[0]["brand"], "Caf\u{e9}", "the canonical key");
    assert_eq!(groups[0]["ids"], serde_json::json!([1, 2]));
    assert_eq!(groups[0]["spellings"][0]["brand"], "Cafe\u{301}");
    assert_eq!(groups[0]["spellings"][1]["brand"], "Caf\u{e9}");
    assert_eq!(groups[1]["brand"], "Acme");
    assert_eq!(groups[1]["ids"], serde_json::json!([3, 4]));
    assert_eq!(groups[2]["brand"], "Cr\u{e8}me");
    assert_eq!(groups[2]["ids"], serde_json::json!([5]));
    let stderr = String::from_utf8_lossy(&report.stderr);
    assert!(
        stderr.contains("id 6: ") && stderr.contains("U+200B"),
        "a key with an invisible character is named: {stderr}"
    );
    assert!(
        stderr.contains("id 8: ") && stderr.contains("its brand is blank"),
        "a key that would be blank once trimmed is named: {stderr}"
    );
    let text = String::from_utf8_lossy(&dedupe(&app, &[]).await.stdout).into_owned();
    assert!(
        text.contains(concat!(
            r#"brand="Café" serial="S" manufacturer="M": 2 rows, ids 1, 2, stored as spellings "#,
            r#"that differ only in normalisation: brand="Cafe\u{301}" serial="S""#
        )),
        "the text report shows the combining mark escaped: {text}"
    );
    assert_eq!(
        app.count_products("true").await,
        8,
        "a dry run changes nothing"
    );

    let applied = dedupe(&app, &["--apply", "--json"]).await;
    assert_eq!(
        applied.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let lines = json_lines(&applied);
    assert_eq!(lines[0]["rekeyed"], 1);
    assert_eq!(lines[0]["from"]["brand"], "Cafe\u{301}");
    assert_eq!(lines[0]["to"]["brand"], "Caf\u{e9}");
    assert_eq!(lines[1]["merged_into"], 1);
    assert_eq!(
        lines[1]["deleted"]["name"], "nfc",
        "deleted rows are printed in full"
    );

    assert_eq!(app.count_products("true").await, 6);
    let cafe = json(app.get("/products/1").await).await;
    assert_eq!(cafe["brand"], "Caf\u{e9}", "the survivor has the NFC key");
    assert_eq!(
        cafe["name"], "nfc",
        "the most recently updated row's values win"
    );
    assert_eq!(cafe["version"], 3);
    let acme = json(app.get("/products/3").await).await;
    assert_eq!(acme["brand"], "Acme");
    assert_eq!(acme["name"], "padded");
    let creme = json(app.get("/products/5").await).await;
    assert_eq!(
        creme["brand"], "Cr\u{e8}me",
        "a lone spelling is rekeyed too"
    );
    let invisible = json(app.get("/products/6").await).await;
    assert_eq!(invisible["brand"], "Zero\u{200b}width", "left as it is");
    let blank = json(app.get("/products/8").await).await;
    assert_eq!(blank["brand"], "   ", "not rewritten to a blank key");

    let again = app.post_product(&product("Cafe\u{301}", "S", "M")).await;
    assert_eq!(again.status(), 200, "requests in any spelling find it");
    assert_eq!(json(again).await["id"], 1);
    let clean = dedupe(&app, &[]).await;
    assert_eq!(
        clean.status.code(),
        Some(0),
        "clean afterwards: {}",
        String::from_utf8_lossy(&clean.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merging_spellings_while_upserts_of_the_nfc_key_run_leaves_one_row_per_key() {
    let app = spawn_app().await;
    // Each key stored decomposed twice (e + U+0301), as before keys were normalised.
    let values: Vec<String> = (0..KEYS)
        .flat_map(|key| {
            (0..2).map(move |copy| format!("(U&'Liv\\0065\\0301', 'K{key}', 'M', 'copy {copy}')"))
        })
        .collect();
    app.sql(&format!(
        "INSERT INTO products (brand, serial, manufacturer, name) VALUES {}",
        values.join(", ")
    ))
    .await;
    let bodies: Vec<Value> = (0..KEYS)
        .map(|key| product("Liv\u{e9}", &format!("K{key}"), "M"))
        .collect();
    let merging = AtomicBool::new(true);

    let upserts = async {
        let mut statuses = Vec::new();
        while merging.load(Ordering::Acquire) || statuses.len() < 3 * bodies.len() {
            let responses = join_all(bodies.iter().map(|b| app.post_product(b))).await;
            statuses.extend(responses.iter().map(|r| r.status().as_u16()));
        }
        statuses
    };
    let merge = async {
        let output = dedupe(&app, &["--apply"]).await;
        merging.store(false, Ordering::Release);
        output
    };
    let (merge, statuses) = tokio::join!(merge, upserts);

    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 201),
        "every upsert succeeded: {statuses:?}"
    );
    // A POST of the NFC key before its merge creates an NFC row (201); the merge, holding the
    // locks of both spellings, reads that row too and takes it in; a POST after it finds the
    // merged row (200). So one pass leaves the table clean.
    eprintln!(
        "{} upserts ran while the merge did, {} of them created an NFC row",
        statuses.len(),
        statuses.iter().filter(|s| **s == 201).count()
    );
    assert_eq!(
        merge.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&merge.stderr)
    );
    assert_eq!(app.duplicated_keys().await, 0);
    assert_eq!(app.count_products("true").await, KEYS);
    assert_eq!(
        app.count_products("brand = U&'Liv\\00e9'").await,
        KEYS,
        "every key in NFC"
    );
}

#[test]
fn with_no_database_to_check_it_fails_instead_of_reporting_clean() {
    let empty = tempfile::tempdir().expect("temp dir");
    let output = Command::new(BINARY)
        .arg("dedupe")
        .env_remove("DATABASE_URL")
        .env("DATA_DIR", empty.path())
        .env("RUST_LOG", "warn")
        .output()
        .expect("run product-service dedupe");

    assert_eq!(output.status.code(), Some(2), "the command itself failed");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no database to check"), "{stderr}");
    assert!(
        !empty.path().join("postgres").exists(),
        "no new cluster was made"
    );
}

/// A duplicated key whose rows include a version at 2^63-1 cannot be merged (the kept row's
/// version would pass it): that group is reported and left as it is, the others are merged.
#[tokio::test]
async fn a_group_at_the_largest_version_is_reported_and_left_as_it_is() {
    let app = spawn_app().await;
    app.sql(
        "INSERT INTO products (brand, serial, manufacturer, name, version) VALUES \
         ('A', 'S', 'M', 'a1', 9223372036854775807), ('A', 'S', 'M', 'a2', 1), \
         ('B', 'S', 'M', 'b1', 1), ('B', 'S', 'M', 'b2', 1)",
    )
    .await;

    let applied = dedupe(&app, &["--apply"]).await;

    let stderr = String::from_utf8_lossy(&applied.stderr);
    assert_eq!(
        applied.status.code(),
        Some(1),
        "a key is still duplicated: {stderr}"
    );
    assert!(
        stderr.contains("could not merge") && stderr.contains("9223372036854775807"),
        "{stderr}"
    );
    assert!(stderr.contains(", 1 failed;"), "{stderr}");
    assert_eq!(
        app.count_products("brand = 'A'").await,
        2,
        "group A untouched"
    );
    assert_eq!(app.count_products("brand = 'B'").await, 1, "group B merged");
}

/// A key that normalising makes longer than a request may name (U+0958 is 3 bytes, its NFC
/// form 6) is left as it is and reported, not rewritten into a key no request could name (it
/// used to be rewritten: 2,650 bytes, then a 400 for every POST or PUT of it).
#[tokio::test]
async fn a_key_that_normalising_makes_too_long_is_reported_and_left_as_it_is() {
    let app = spawn_app().await;
    let brand = "\u{958}".repeat(300);
    let serial = "s".repeat(849);
    app.sql(&format!(
        "INSERT INTO products (brand, serial, manufacturer, name) VALUES ('{brand}', '{serial}', 'M', 'n')"
    ))
    .await;

    let applied = dedupe(&app, &["--apply"]).await;

    let stderr = String::from_utf8_lossy(&applied.stderr);
    assert!(
        stderr.contains("2650 bytes") && stderr.contains("left as it is"),
        "{stderr}"
    );
    assert_eq!(
        app.count_products(&format!("brand = '{brand}'")).await,
        1,
        "the row keeps its stored spelling"
    );
}
