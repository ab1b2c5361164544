//! The `loadtest` tool against a real service: it reports, and `--verify` catches duplicates;
//! `--plot` draws a run and `loadtest chart` draws bench/run.sh's results, both as SVG.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use product_service::config::ApiToken;

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

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

/// The SVG at `path`, which must be well-formed: the texts it shows, and for each stroke
/// colour the number of points of each line drawn in it.
fn read_svg(path: &Path) -> (Vec<String>, Vec<(String, usize)>) {
    let text = std::fs::read_to_string(path).expect("the SVG was written");
    let document = roxmltree::Document::parse(&text).expect("well-formed SVG");
    assert_eq!(document.root_element().tag_name().name(), "svg");
    let texts = document
        .descendants()
        .filter(|node| node.has_tag_name("text"))
        .map(|node| node.text().unwrap_or_default().trim().to_owned())
        .collect();
    let lines = document
        .descendants()
        .filter(|node| node.has_tag_name("polyline"))
        .map(|node| {
            let points = node.attribute("points").unwrap_or_default();
            let stroke = node.attribute("stroke").unwrap_or_default();
            (stroke.to_owned(), points.split_whitespace().count())
        })
        .collect();
    (texts, lines)
}

fn assert_texts(texts: &[String], expected: &[&str]) {
    for expected in expected {
        assert!(
            texts.iter().any(|t| t == expected),
            "no text {expected:?} in the SVG: {texts:?}"
        );
    }
}

/// The colour of `--plot`'s throughput line.
const THROUGHPUT_STROKE: &str = "#1F77B4";

#[tokio::test]
async fn plot_draws_each_tenth_of_a_second_of_a_short_run_and_its_percentile_curve() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let svg = dir.path().join("run.svg");

    let output = loadtest(
        &app,
        &[
            "--scenario",
            "distinct",
            "--duration",
            "1.6",
            "--concurrency",
            "4",
            "--plot",
            svg.to_str().expect("a UTF-8 path"),
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
    let requests = report["requests"].as_u64().expect("a count");
    let seconds = report["seconds"].as_f64().expect("a length");
    let (texts, lines) = read_svg(&svg);
    assert_texts(
        &texts,
        &[
            "requests/s, each 0.1 s",
            "latency of the requests that ended in each 0.1 s",
            "seconds from the start of the run",
            "p50",
            "p99",
            &format!("latency by percentile: {requests} requests"),
            "percentile (0: the fastest request)",
            "90",
        ],
    );
    assert!(
        texts.iter().any(|t| t.starts_with("loadtest distinct: ")),
        "a title naming the scenario: {texts:?}"
    );
    // About 1.6 s, under 20 s: a point each tenth of a second, a short remainder joining the
    // last (16 points, or 17 if the last requests ended more than 50 ms after the deadline).
    let points = (seconds / 0.1).round() as usize;
    assert!(
        lines.contains(&(THROUGHPUT_STROKE.to_owned(), points)),
        "a throughput line of {points} points for {seconds} s: {lines:?}"
    );
    assert!(
        lines.len() >= 4,
        "throughput, p50, p99 and the percentile curve: {lines:?}"
    );
}

#[tokio::test]
async fn plot_of_a_batch_run_counts_items_per_second() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let svg = dir.path().join("batch.svg");

    let output = loadtest(
        &app,
        &[
            "--scenario",
            "batch",
            "--requests",
            "200",
            "--batch-size",
            "20",
            "--concurrency",
            "4",
            "--plot",
            svg.to_str().expect("a UTF-8 path"),
        ],
    )
    .await;

    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (texts, _) = read_svg(&svg);
    assert_texts(
        &texts,
        &["items/s, each 0.1 s", "latency by percentile: 10 requests"],
    );
    assert!(
        texts
            .iter()
            .any(|t| t.starts_with("loadtest batch: 10 batches of 20 items, 4 clients")),
        "{texts:?}"
    );
}

#[test]
fn chart_draws_bench_results_from_json_and_refuses_a_bad_file() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let input = dir.path().join("results.json");
    let svg = dir.path().join("chart.svg");
    std::fs::write(
        &input,
        r#"{"title": "a fixed run", "scenarios": [
            {"name": "distinct",
             "service": {"ops_per_second": 1000, "server_cpu_us": 50, "service_cpu_us": 70},
             "pgbench": {"ops_per_second": 600, "server_cpu_us": 300},
             "on_conflict": {"ops_per_second": 1800, "server_cpu_us": 150}},
            {"name": "hot",
             "service": {"ops_per_second": 900}, "pgbench": {"ops_per_second": 250}}]}"#,
    )
    .expect("write the input");
    let chart = |input: &Path| {
        Command::new(LOADTEST)
            .arg("chart")
            .arg("--input")
            .arg(input)
            .arg("--output")
            .arg(&svg)
            .output()
            .expect("run loadtest chart")
    };

    let output = chart(&input);

    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (texts, _) = read_svg(&svg);
    assert_texts(
        &texts,
        &[
            "a fixed run",
            "distinct",
            "hot",
            "1000",
            "600",
            "1800",
            "900",
            "250",
            "50.0+70.0",
            "300.0",
            "150.0",
            "pgbench: INSERT ... ON CONFLICT (unique constraint)",
        ],
    );

    std::fs::write(&input, r#"{"scenarios": [{"name": "x", "servce": {}}]}"#)
        .expect("write the input");
    let output = chart(&input);

    assert_eq!(
        output.status.code(),
        Some(2),
        "a misspelt member is refused"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("results.json is not a results file") && stderr.contains("servce"),
        "{stderr}"
    );
}

/// A plot file that cannot be written stops loadtest before it sends any request, so a run
/// (which writes to the service) is never spent for nothing.
#[tokio::test]
async fn a_plot_path_that_cannot_be_written_stops_the_run_before_any_request() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let svg = dir.path().join("no such directory").join("run.svg");

    let output = loadtest(
        &app,
        &[
            "--scenario",
            "distinct",
            "--requests",
            "50",
            "--plot",
            svg.to_str().expect("a UTF-8 path"),
        ],
    )
    .await;

    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot write the plot"));
    assert_eq!(app.count_products("true").await, 0, "no request was sent");
}

/// A run whose requests the service refuses (here: every one, for want of an API token) exits 1,
/// shows the refusal among its first errors, and plots no throughput (a flat line at zero), where
/// it used to exit 0 and plot its refusals as requests/s.
#[tokio::test]
async fn a_run_the_service_refuses_exits_1_and_plots_no_throughput() {
    let app =
        spawn_app_with(|c| c.api_tokens = vec![ApiToken::from("a-token-loadtest-lacks")]).await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let svg = dir.path().join("refused.svg");

    let output = loadtest(
        &app,
        &[
            "--scenario",
            "distinct",
            "--duration",
            "1",
            "--concurrency",
            "4",
            "--plot",
            svg.to_str().expect("a UTF-8 path"),
        ],
    )
    .await;

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "every request was refused: {stderr}"
    );
    let report = report(&output);
    let requests = report["requests"].as_u64().expect("a count");
    assert!(requests > 0, "{report}");
    assert_eq!(
        report["statuses"]["401"].as_u64(),
        Some(requests),
        "{report}"
    );
    assert!(
        stderr.contains(&format!(
            "{requests} of {requests} requests were not answered 2xx"
        )),
        "{stderr}"
    );
    assert!(
        report["first_errors"][0]
            .as_str()
            .is_some_and(|e| e.starts_with("401:")),
        "the refusal is shown: {report}"
    );
    let text = std::fs::read_to_string(&svg).expect("the plot is written");
    let document = roxmltree::Document::parse(&text).expect("well-formed SVG");
    let throughput = document
        .descendants()
        .find(|node| {
            node.has_tag_name("polyline") && node.attribute("stroke") == Some(THROUGHPUT_STROKE)
        })
        .and_then(|node| node.attribute("points"))
        .expect("a throughput line");
    let heights: std::collections::BTreeSet<&str> = throughput
        .split_whitespace()
        .filter_map(|point| point.split(',').nth(1))
        .collect();
    assert_eq!(heights.len(), 1, "a flat throughput line: {throughput}");
}

/// `--url` may end in a slash (paths are appended to it; it used to make `//products`, a 404
/// for every request), `--token` is sent as a bearer token, and a URL or a concurrency that no
/// run can use stops loadtest at once with exit 2.
#[tokio::test]
async fn the_base_url_may_end_in_a_slash_and_the_token_is_sent() {
    let app = spawn_app_with(|c| c.api_tokens = vec![ApiToken::from("lt-token")]).await;
    let run = |args: Vec<String>| async move {
        tokio::task::spawn_blocking(move || {
            Command::new(LOADTEST)
                .args(args)
                .output()
                .expect("run loadtest")
        })
        .await
        .expect("loadtest thread")
    };
    let args = |url: &str, more: &[&str]| -> Vec<String> {
        ["--url", url, "--json", "--seed", "8", "--requests", "20"]
            .iter()
            .chain(more)
            .map(|a| (*a).to_owned())
            .collect()
    };

    let slash = format!("{}/", app.address);
    let output = run(args(&slash, &["--token", "lt-token"])).await;
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(report(&output)["statuses"]["201"], 20);

    for (url, more, says) in [
        ("ftp://127.0.0.1", &[][..], "http or https"),
        (&*format!("{}?x=1", app.address), &[][..], "no query"),
        (&*app.address, &["--concurrency", "0"][..], "--concurrency"),
    ] {
        let output = run(args(url, more)).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{url} {more:?}: {stderr}");
        assert!(stderr.contains(says), "{url} {more:?}: {stderr}");
    }
    assert_eq!(
        app.count_products("true").await,
        20,
        "only the first run wrote"
    );
}
