//! `loadtest`: drives a running product-service and reports throughput, latency percentiles and
//! statuses; `--verify` then reads back every key it touched and fails on any duplicate or 5xx.
//! Exit status: 0 when every request was answered 2xx (and `--verify` passed), 1 when a request
//! was not (a 4xx, a 5xx or no answer) or `--verify` failed, 2 when the run could not be made or
//! checked.
//!
//! ```sh
//! cargo run --release --bin loadtest -- --url http://127.0.0.1:8080 --scenario hot \
//!     --requests 20000 --concurrency 64 --verify
//! ```
//!
//! What it writes: real rows, with keys `(brand, serial, manufacturer)` = (`lt-<seed>-<scenario>`,
//! `<n>`, `M`), name `load <n>`, and they stay in the database; `--cleanup` deletes every row of
//! that brand afterwards (earlier runs' with the same seed and scenario too), through the API.
//!
//! Scenarios:
//! - `distinct`: every request a new key (`--keys` is ignored);
//! - `hot`: every request the same key;
//! - `zipf`: keys drawn from a Zipf distribution over `--keys` with exponent `--zipf-s`;
//! - `race`: groups of `--dup` identical requests released together, a new key per group;
//! - `mixed`: 70 % upserts and 30 % exact-key reads over `--keys` uniform keys;
//! - `batch`: `POST /products/batch` of `--batch-size` items each; `--requests` counts items
//!   (rounded up to whole batches), so a run writes as many as `distinct` with the same
//!   `--requests`. Each batch is a window of new keys that shares its first tenth with the
//!   previous batch and its last tenth with the next, and every other batch lists its keys in
//!   reverse, so that batches in flight together contend for keys in opposite orders. The
//!   report gives items/s beside requests/s.
//!
//! `--plot FILE.svg` also draws the run (`plot.rs`); `loadtest chart` draws bench/run.sh's
//! results (`chart.rs`).

mod chart;
mod plot;
mod ticks;

/// mimalloc, as the service uses: glibc's malloc and free took 6-7 % of loadtest's CPU, which
/// shares the machine with the service it measures.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use futures_util::future::join_all;
use hdrhistogram::Histogram;
use rand::{Rng as _, SeedableRng as _, rngs::StdRng};
use rand_distr::{Distribution as _, Zipf};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Scenario {
    Distinct,
    Hot,
    Zipf,
    Race,
    Mixed,
    Batch,
}

/// Load generator and race checker for product-service.
#[derive(Debug, Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: Args,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Draw bench/run.sh's results (JSON) as bar charts in one SVG file; no load is sent.
    Chart(chart::ChartArgs),
}

/// The options of a load run.
#[derive(Debug, clap::Args)]
struct Args {
    /// Base URL of the service: http or https, a path prefix allowed (a trailing slash is
    /// dropped), no query or fragment.
    #[arg(long, default_value = "http://127.0.0.1:8080", value_parser = base_url)]
    url: String,
    /// API token sent as `Authorization: Bearer <token>` on every request (a service with
    /// API_TOKENS set refuses writes without one).
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
    /// What the requests look like.
    #[arg(long, value_enum, default_value_t = Scenario::Distinct)]
    scenario: Scenario,
    /// Total requests (race: rounded up to whole groups of --dup); in the batch scenario, total
    /// items, rounded up to whole batches (ignored when --duration is given).
    #[arg(long, default_value_t = 10_000)]
    requests: u64,
    /// Run for this many seconds instead of a number of requests.
    #[arg(long)]
    duration: Option<f64>,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,
    /// Size of the key space (zipf, mixed).
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    /// Identical requests released together (race).
    #[arg(long, default_value_t = 8)]
    dup: usize,
    /// Items per batch request (batch).
    #[arg(long, default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    batch_size: u64,
    /// Zipf exponent.
    #[arg(long, default_value_t = 1.1)]
    zipf_s: f64,
    /// Seed of the key choices; also names this run's keys (`lt-<seed>`).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Read back every key touched; exit 1 on a duplicated key or any 5xx.
    #[arg(long)]
    verify: bool,
    /// At the end, delete every row this run's brand (`lt-<seed>-<scenario>`) has, through
    /// `GET /products?brand=` and `DELETE /products/{id}`.
    #[arg(long)]
    cleanup: bool,
    /// Also draw the run into this SVG file: throughput (requests answered 2xx a second; items/s
    /// in the batch scenario) and p50/p99 latency (ms) for each second of the run (a run under
    /// 20 s: each half, fifth or tenth of a second, for 20 points), and latency (ms) against
    /// percentile (50, 90, 99, 99.9, 99.99). Keeps 12 bytes per request in memory until the end.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
}

/// What one worker saw.
struct Tally {
    latency_us: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    errors: Vec<String>,
    keys: BTreeSet<u64>,
    /// Items of batch requests answered 200.
    items: u64,
    /// Every request's end and latency, with `--plot` only.
    samples: Vec<plot::Sample>,
}

impl Tally {
    fn new() -> Self {
        Self {
            latency_us: Histogram::new_with_bounds(1, 60_000_000, 3)
                .expect("valid histogram bounds"),
            statuses: BTreeMap::new(),
            errors: Vec::new(),
            keys: BTreeSet::new(),
            items: 0,
            samples: Vec::new(),
        }
    }

    fn merge(&mut self, other: Tally) {
        self.latency_us
            .add(other.latency_us)
            .expect("histograms of equal bounds");
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        self.errors.extend(
            other
                .errors
                .into_iter()
                .take(5usize.saturating_sub(self.errors.len())),
        );
        self.keys.extend(other.keys);
        self.items += other.items;
        self.samples.extend(other.samples);
    }
}

/// The shared state of a run.
struct Run {
    args: Args,
    client: reqwest::Client,
    /// `<url>/products`, parsed once (parsing it per request took 2 % of loadtest's CPU).
    products: reqwest::Url,
    brand: String,
    next: AtomicU64,
    started: Instant,
    deadline: Option<Instant>,
    progress: Option<indicatif::ProgressBar>,
}

impl Run {
    /// Claims the next request (or race group) number, or `None` when the run is over.
    fn claim(&self) -> Option<u64> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        match self.deadline {
            Some(deadline) => (Instant::now() < deadline).then_some(n),
            None => {
                let total = match self.args.scenario {
                    Scenario::Race => self.args.requests.div_ceil(self.args.dup as u64),
                    Scenario::Batch => self.args.requests.div_ceil(self.args.batch_size),
                    _ => self.args.requests,
                };
                (n < total).then_some(n)
            }
        }
    }

    fn body(&self, key: u64) -> serde_json::Value {
        serde_json::json!({
            "brand": self.brand,
            "serial": key.to_string(),
            "manufacturer": "M",
            "name": format!("load {key}"),
            "price": "9.99",
        })
    }

    async fn upsert(&self, key: u64, tally: &mut Tally) {
        let request = self
            .client
            .post(self.products.clone())
            .json(&self.body(key));
        self.send(request, tally, None).await;
        tally.keys.insert(key);
    }

    /// The keys of batch `n`, in the order it sends them: a window of `--batch-size` keys that
    /// shares a tenth with each neighbouring batch, reversed in every other batch.
    fn batch_keys(&self, n: u64) -> Vec<u64> {
        let size = self.args.batch_size;
        let overlap = size / 10;
        let first = n * (size - overlap);
        let mut keys: Vec<u64> = (first..first + size).collect();
        if n % 2 == 1 {
            keys.reverse();
        }
        keys
    }

    async fn upsert_batch(&self, n: u64, tally: &mut Tally) {
        let keys = self.batch_keys(n);
        let body: Vec<serde_json::Value> = keys.iter().map(|key| self.body(*key)).collect();
        let request = self
            .client
            .post(format!("{}/products/batch", self.args.url))
            .json(&body);
        let items = u32::try_from(keys.len()).unwrap_or(u32::MAX);
        self.send(request, tally, Some(items)).await;
        tally.keys.extend(keys);
    }

    async fn read(&self, key: u64, tally: &mut Tally) {
        let request = self.client.get(self.products.clone()).query(&[
            ("brand", self.brand.as_str()),
            ("serial", &key.to_string()),
            ("manufacturer", "M"),
        ]);
        self.send(request, tally, None).await;
    }

    /// Sends `request` and records its latency and status; returns the status (0: no answer).
    /// `batch_items`: the items of a batch request, counted as committed if it is answered 200.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        tally: &mut Tally,
        batch_items: Option<u32>,
    ) -> u16 {
        let started = Instant::now();
        let result = request.send().await;
        let status = match result {
            Ok(response) => {
                let status = response.status().as_u16();
                // Read the body so the connection can be reused.
                let body = response.bytes().await.unwrap_or_default();
                if !(200..300).contains(&status) && tally.errors.len() < 5 {
                    tally
                        .errors
                        .push(format!("{status}: {}", String::from_utf8_lossy(&body)));
                }
                status
            }
            Err(e) => {
                if tally.errors.len() < 5 {
                    tally.errors.push(format!("transport: {e}"));
                }
                0
            }
        };
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        tally.latency_us.saturating_record(micros.max(1));
        *tally.statuses.entry(status).or_default() += 1;
        // What the plot counts as throughput: requests answered 2xx (batches: their items).
        let committed = match batch_items {
            Some(items) if status == 200 => items,
            Some(_) => 0,
            None => u32::from((200..300).contains(&status)),
        };
        if batch_items.is_some() {
            tally.items += u64::from(committed);
        }
        if self.args.plot.is_some() {
            tally.samples.push(plot::Sample {
                at_ms: u32::try_from(self.started.elapsed().as_millis()).unwrap_or(u32::MAX),
                latency_us: u32::try_from(micros).unwrap_or(u32::MAX),
                weight: committed,
            });
        }
        if let Some(progress) = &self.progress {
            progress.inc(1);
        }
        status
    }
}

async fn worker(run: Arc<Run>, worker_id: u64) -> Tally {
    let mut tally = Tally::new();
    let mut rng = StdRng::seed_from_u64(
        run.args
            .seed
            .wrapping_mul(1_000_003)
            .wrapping_add(worker_id),
    );
    let zipf = Zipf::new(run.args.keys.max(1) as f64, run.args.zipf_s).ok();
    while let Some(n) = run.claim() {
        match run.args.scenario {
            Scenario::Distinct => run.upsert(n, &mut tally).await,
            Scenario::Batch => run.upsert_batch(n, &mut tally).await,
            Scenario::Hot => run.upsert(0, &mut tally).await,
            Scenario::Zipf => {
                let key = zipf.as_ref().map_or(0, |z| z.sample(&mut rng) as u64);
                run.upsert(key, &mut tally).await;
            }
            Scenario::Mixed => {
                let key = rng.random_range(0..run.args.keys.max(1));
                if rng.random_bool(0.7) {
                    run.upsert(key, &mut tally).await;
                } else {
                    run.read(key, &mut tally).await;
                }
            }
            Scenario::Race => {
                // A fresh key per group: the race is over who inserts it.
                let key = n;
                let group: Vec<Tally> = join_all((0..run.args.dup).map(|_| async {
                    let mut one = Tally::new();
                    run.upsert(key, &mut one).await;
                    one
                }))
                .await;
                for one in group {
                    tally.merge(one);
                }
            }
        }
    }
    tally
}

#[derive(Serialize)]
struct Report {
    scenario: Scenario,
    requests: u64,
    concurrency: usize,
    seconds: f64,
    requests_per_second: f64,
    /// Items of batch requests answered 200 (batch only).
    #[serde(skip_serializing_if = "Option::is_none")]
    items: Option<u64>,
    /// Those items per second (batch only).
    #[serde(skip_serializing_if = "Option::is_none")]
    items_per_second: Option<f64>,
    latency_ms: BTreeMap<&'static str, f64>,
    statuses: BTreeMap<String, u64>,
    first_errors: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    verify: Option<Verification>,
    /// Rows deleted by `--cleanup`.
    #[serde(skip_serializing_if = "Option::is_none")]
    cleaned_up: Option<u64>,
}

#[derive(Serialize, Clone, Copy)]
struct Verification {
    keys_checked: usize,
    duplicated_keys: usize,
    server_errors: u64,
    passed: bool,
}

/// Reads back every key; counts keys with more than one row.
async fn verify(
    run: &Run,
    keys: &BTreeSet<u64>,
    server_errors: u64,
) -> Result<Verification, String> {
    let duplicated = Arc::new(Mutex::new(0usize));
    let keys: Vec<u64> = keys.iter().copied().collect();
    for chunk in keys.chunks(usize::from(run.args.concurrency)) {
        let checks = chunk.iter().map(|key| {
            let duplicated = Arc::clone(&duplicated);
            async move {
                let response = run
                    .client
                    .get(format!("{}/products", run.args.url))
                    .query(&[
                        ("brand", run.brand.as_str()),
                        ("serial", &key.to_string()),
                        ("manufacturer", "M"),
                    ])
                    .send()
                    .await
                    .map_err(|e| format!("read-back of key {key}: {e}"))?;
                let page: serde_json::Value = response
                    .json()
                    .await
                    .map_err(|e| format!("read-back of key {key}: {e}"))?;
                let rows = page["items"].as_array().map_or(0, Vec::len);
                if rows > 1 {
                    *duplicated.lock().map_err(|_| "poisoned")? += 1;
                }
                Ok::<(), String>(())
            }
        });
        for result in join_all(checks).await {
            result?;
        }
    }
    let duplicated_keys = *duplicated.lock().map_err(|_| "poisoned")?;
    Ok(Verification {
        keys_checked: keys.len(),
        duplicated_keys,
        server_errors,
        passed: duplicated_keys == 0 && server_errors == 0,
    })
}

/// Deletes every row of the run's brand, page by page; the number deleted.
async fn cleanup(run: &Run) -> Result<u64, String> {
    let mut deleted = 0;
    loop {
        // Always the first page: the rows of the previous one are gone.
        let page: serde_json::Value = run
            .client
            .get(format!("{}/products", run.args.url))
            .query(&[("brand", run.brand.as_str()), ("limit", "500")])
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| format!("listing the rows to delete: {e}"))?
            .json()
            .await
            .map_err(|e| format!("listing the rows to delete: {e}"))?;
        let ids: Vec<i64> = page["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|item| item["id"].as_i64())
                    .collect()
            })
            .unwrap_or_default();
        if ids.is_empty() {
            return Ok(deleted);
        }
        for chunk in ids.chunks(usize::from(run.args.concurrency)) {
            let deletes = chunk.iter().map(|id| async move {
                let response = run
                    .client
                    .delete(format!("{}/products/{id}", run.args.url))
                    .send()
                    .await
                    .map_err(|e| format!("deleting product {id}: {e}"))?;
                match response.status().as_u16() {
                    204 => Ok(1),
                    404 => Ok(0), // deleted meanwhile by someone else
                    status => Err(format!("deleting product {id}: status {status}")),
                }
            });
            for result in join_all(deletes).await {
                deleted += result?;
            }
        }
    }
}

fn percentile_ms(histogram: &Histogram<u64>, quantile: f64) -> f64 {
    histogram.value_at_quantile(quantile) as f64 / 1000.0
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Chart(chart)) = cli.command {
        return match chart::run(&chart) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("loadtest chart: {e}");
                ExitCode::from(2)
            }
        };
    }
    let args = cli.run;
    let concurrency = usize::from(args.concurrency);
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = &args.token {
        match reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")) {
            Ok(mut value) => {
                value.set_sensitive(true);
                headers.insert(reqwest::header::AUTHORIZATION, value);
            }
            Err(_) => {
                eprintln!("loadtest: --token must be printable ASCII");
                return ExitCode::from(2);
            }
        }
    }
    let client = match reqwest::Client::builder()
        .default_headers(headers)
        .pool_max_idle_per_host(concurrency * args.dup.max(1))
        .timeout(Duration::from_secs(60))
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            eprintln!("loadtest: cannot build the HTTP client: {e}");
            return ExitCode::from(2);
        }
    };
    let workers = match args.scenario {
        Scenario::Race => (concurrency / args.dup.max(1)).max(1),
        _ => concurrency,
    };
    let progress = (std::io::stderr().is_terminal() && !args.json).then(|| {
        let bar = match args.duration {
            Some(_) => indicatif::ProgressBar::new_spinner(),
            None if args.scenario == Scenario::Batch => {
                indicatif::ProgressBar::new(args.requests.div_ceil(args.batch_size))
            }
            None => indicatif::ProgressBar::new(args.requests),
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {pos}/{len} requests {per_sec} [{elapsed}]",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    // The plot's file is opened before any load is sent: a path that cannot be written must not
    // cost a run (which writes to the service) its results.
    if let Some(path) = &args.plot
        && let Err(e) = std::fs::File::create(path)
    {
        eprintln!("loadtest: cannot write the plot to {}: {e}", path.display());
        return ExitCode::from(2);
    }
    let products = match reqwest::Url::parse(&format!("{}/products", args.url)) {
        Ok(url) => url,
        Err(e) => {
            eprintln!("loadtest: --url {} is not a URL: {e}", args.url);
            return ExitCode::from(2);
        }
    };
    let run = Arc::new(Run {
        products,
        brand: format!("lt-{}-{:?}", args.seed, args.scenario).to_lowercase(),
        deadline: args
            .duration
            .map(|s| Instant::now() + Duration::from_secs_f64(s)),
        next: AtomicU64::new(0),
        started: Instant::now(),
        client,
        progress,
        args,
    });

    let tallies =
        join_all((0..workers as u64).map(|id| tokio::spawn(worker(Arc::clone(&run), id)))).await;
    let seconds = run.started.elapsed().as_secs_f64();
    if let Some(progress) = &run.progress {
        progress.finish_and_clear();
    }
    let mut total = Tally::new();
    for tally in tallies {
        match tally {
            Ok(tally) => total.merge(tally),
            Err(e) => eprintln!("loadtest: a worker failed: {e}"),
        }
    }
    let requests = total.latency_us.len();
    let server_errors: u64 = total
        .statuses
        .iter()
        .filter(|(s, _)| **s >= 500 || **s == 0)
        .map(|(_, n)| n)
        .sum();
    let verification = if run.args.verify {
        match verify(&run, &total.keys, server_errors).await {
            Ok(v) => Some(v),
            Err(e) => {
                eprintln!("loadtest: verification failed to run: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        None
    };
    let cleaned_up = if run.args.cleanup {
        match cleanup(&run).await {
            Ok(n) => Some(n),
            Err(e) => {
                eprintln!("loadtest: cleanup failed: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        None
    };
    let report = Report {
        scenario: run.args.scenario,
        requests,
        concurrency,
        seconds,
        requests_per_second: requests as f64 / seconds,
        items: (run.args.scenario == Scenario::Batch).then_some(total.items),
        items_per_second: (run.args.scenario == Scenario::Batch)
            .then(|| total.items as f64 / seconds),
        latency_ms: BTreeMap::from([
            ("p50", percentile_ms(&total.latency_us, 0.5)),
            ("p90", percentile_ms(&total.latency_us, 0.9)),
            ("p99", percentile_ms(&total.latency_us, 0.99)),
            ("p99.9", percentile_ms(&total.latency_us, 0.999)),
            ("max", total.latency_us.max() as f64 / 1000.0),
        ]),
        statuses: total
            .statuses
            .iter()
            .map(|(s, n)| {
                (
                    if *s == 0 {
                        "error".to_owned()
                    } else {
                        s.to_string()
                    },
                    *n,
                )
            })
            .collect(),
        first_errors: total.errors,
        verify: verification,
        cleaned_up,
    };
    if let Some(path) = &run.args.plot {
        let drawing = plot::RunPlot {
            title: plot_title(&run.args, requests, seconds),
            throughput_unit: match run.args.scenario {
                Scenario::Batch => "items/s",
                _ => "requests/s",
            },
            samples: &total.samples,
            seconds,
            latency_us: &total.latency_us,
        };
        let written = plot::svg(&drawing)
            .map_err(|e| e.to_string())
            .and_then(|svg| std::fs::write(path, svg).map_err(|e| e.to_string()));
        print_report(&report, run.args.json);
        if let Err(e) = written {
            eprintln!("loadtest: cannot write the plot to {}: {e}", path.display());
            return ExitCode::from(2);
        }
    } else {
        print_report(&report, run.args.json);
    }
    let failed: u64 = total
        .statuses
        .iter()
        .filter(|(s, _)| !(200..300).contains(*s))
        .map(|(_, n)| n)
        .sum();
    if failed > 0 {
        eprintln!(
            "loadtest: {failed} of {requests} requests were not answered 2xx (see the statuses \
             and the first errors)"
        );
    }
    match report.verify {
        Some(v) if !v.passed => ExitCode::from(1),
        _ if failed > 0 => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    }
}

/// `--url`, checked: an http or https URL with no query or fragment, without its trailing
/// slash (the paths are appended to it).
fn base_url(given: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(given).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "the scheme must be http or https, not {}",
            url.scheme()
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("a base URL takes no query or fragment".to_owned());
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// The caption of `--plot`'s upper panel: what ran, how much, how long.
fn plot_title(args: &Args, requests: u64, seconds: f64) -> String {
    let scenario = format!("{:?}", args.scenario).to_lowercase();
    let what = match args.scenario {
        Scenario::Batch => format!("{requests} batches of {} items", args.batch_size),
        _ => format!("{requests} requests"),
    };
    format!(
        "loadtest {scenario}: {what}, {} clients, {seconds:.1} s",
        args.concurrency
    )
}

fn print_report(report: &Report, json: bool) {
    if json {
        println!("{}", serde_json::to_string(report).unwrap_or_default());
        return;
    }
    println!(
        "{:?}: {} requests in {:.2} s, {:.0} req/s, concurrency {}",
        report.scenario,
        report.requests,
        report.seconds,
        report.requests_per_second,
        report.concurrency
    );
    if let (Some(items), Some(per_second)) = (report.items, report.items_per_second) {
        println!("items: {items} committed, {per_second:.0} items/s");
    }
    let latency: Vec<String> = report
        .latency_ms
        .iter()
        .map(|(q, ms)| format!("{q} {ms:.2}"))
        .collect();
    println!("latency ms: {}", latency.join(", "));
    let statuses: Vec<String> = report
        .statuses
        .iter()
        .map(|(s, n)| format!("{s}: {n}"))
        .collect();
    println!("statuses: {}", statuses.join(", "));
    for error in &report.first_errors {
        println!("error: {error}");
    }
    if let Some(v) = report.verify {
        println!(
            "verify: {} keys read back, {} duplicated, {} server errors: {}",
            v.keys_checked,
            v.duplicated_keys,
            v.server_errors,
            if v.passed { "PASSED" } else { "FAILED" }
        );
    }
    if let Some(n) = report.cleaned_up {
        println!("cleanup: deleted {n} rows of this run's brand");
    }
}
