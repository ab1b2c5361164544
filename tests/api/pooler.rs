//! Behind PgBouncer, the pooler production puts in front of PostgreSQL: real PgBouncer processes
//! between the service and the test cluster.
//!
//! - PgBouncer 1.21+ in transaction pooling with `max_prepared_statements`: instances start
//!   together, race without duplicates, and leave no session-level lock held;
//! - Debian 12's PgBouncer 1.18 in session pooling: the same race;
//! - PgBouncer 1.18 in transaction pooling (prepared statements lost between transactions):
//!   refused at start with a message naming both fixes.
//!
//! The binaries come from `PGBOUNCER_TRANSACTION` (1.21 or later) and `PGBOUNCER_SESSION` (any
//! version, 1.18 in CI); these tests only build with `--features pooler-tests`, which `.ci/run`
//! turns on after building PgBouncer 1.24 from source.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use product_service::startup::Application;

use crate::concurrency::{INSTANCES, count, identical_posts, race_on};
use crate::helpers::{DatabaseSetup, TestDatabase, cluster_address, test_config};

// Through PgBouncer 1.21+ in transaction pooling, and through PgBouncer in session pooling.
in_both_modes!(
    a_race_through_pgbouncer_in_transaction_pooling_leaves_one_row,
    a_race_through_pgbouncer_in_session_pooling_leaves_one_row,
);

/// A PgBouncer process in front of the test cluster, stopped on drop.
struct Pooler {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

/// How the pooler hands out server connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PoolMode {
    Session,
    /// With `max_prepared_statements` (PgBouncer 1.21+) when `Some`.
    Transaction(Option<u32>),
}

impl Pooler {
    /// Starts the PgBouncer named by the environment variable `binary_var`, with server
    /// connections to spare (150 per database).
    fn start(binary_var: &str, mode: PoolMode) -> Self {
        Self::start_with_pool(binary_var, mode, 150)
    }

    /// [`Pooler::start`] with `pool_size` server connections per database
    /// (`default_pool_size`).
    fn start_with_pool(binary_var: &str, mode: PoolMode, pool_size: u32) -> Self {
        let binary = std::env::var_os(binary_var)
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                panic!(
                    "these tests need PgBouncer: set {binary_var} to its binary (.ci/run builds \
                 PgBouncer 1.24 from Debian 13's source and installs Debian's 1.18)"
                )
            });
        let dir = tempfile::Builder::new()
            .prefix("product-service-pgbouncer.")
            .tempdir()
            .expect("temporary directory");
        let port = free_port();
        let (host, cluster_port) = cluster_address();
        let (pool_mode, prepared) = match mode {
            PoolMode::Session => ("session", String::new()),
            PoolMode::Transaction(None) => ("transaction", String::new()),
            PoolMode::Transaction(Some(n)) => {
                ("transaction", format!("max_prepared_statements = {n}\n"))
            }
        };
        let config = format!(
            "[databases]\n\
             * = host={host} port={cluster_port} user=postgres\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = any\n\
             pool_mode = {pool_mode}\n\
             {prepared}\
             default_pool_size = {pool_size}\n\
             max_client_conn = 1000\n\
             logfile = {log}\n",
            log = dir.path().join("pgbouncer.log").display(),
        );
        let config_path = dir.path().join("pgbouncer.ini");
        std::fs::write(&config_path, config).expect("write the PgBouncer configuration");
        let mut command = Command::new(&binary);
        command
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // PgBouncer refuses to run as root; run it as the user the test cluster runs as.
        if nix::unistd::geteuid().is_root() {
            use std::os::unix::process::CommandExt as _;
            let user = nix::unistd::User::from_name("postgres")
                .ok()
                .flatten()
                .expect("running as root, PgBouncer needs the `postgres` system user");
            for path in [dir.path(), &config_path] {
                std::os::unix::fs::chown(path, Some(user.uid.as_raw()), Some(user.gid.as_raw()))
                    .expect("hand the PgBouncer directory to `postgres`");
            }
            command.uid(user.uid.as_raw()).gid(user.gid.as_raw());
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let pooler = Self {
            child,
            port,
            _dir: dir,
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "PgBouncer ({}) did not listen on port {port} within 10 s",
                binary.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        pooler
    }

    fn setup(&self) -> DatabaseSetup<'static> {
        DatabaseSetup {
            pooler_port: Some(self.port),
            ..DatabaseSetup::default()
        }
    }
}

impl Drop for Pooler {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// The race of `concurrency.rs` (identical POSTs over several instances, with a widened race
/// window) through `pooler`.
async fn race_through(pooler: &Pooler, group_commit: bool) {
    let race = race_on(pooler.setup(), true, group_commit).await;

    let statuses = identical_posts(&race, 64).await;

    assert_eq!(count(&statuses, 201), 1, "{statuses:?}");
    assert_eq!(count(&statuses, 200), 63, "{statuses:?}");
    assert_eq!(race.app.count_products("true").await, 1);
    eprintln!(
        "through PgBouncer, {INSTANCES} instances: rows=1, 201s=1, 200s=63 (group commit: \
         {group_commit})"
    );
}

async fn a_race_through_pgbouncer_in_transaction_pooling_leaves_one_row(group_commit: bool) {
    let pooler = Pooler::start("PGBOUNCER_TRANSACTION", PoolMode::Transaction(Some(200)));
    race_through(&pooler, group_commit).await;
}

async fn a_race_through_pgbouncer_in_session_pooling_leaves_one_row(group_commit: bool) {
    let pooler = Pooler::start("PGBOUNCER_SESSION", PoolMode::Session);
    race_through(&pooler, group_commit).await;
}

/// Three instances start at once through a pool of two server connections, where each one's
/// checks need both at once: they may hold one each and wait for another, and then let go and
/// take turns (they used to wait until the checks' time ran out, and all fail).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_starting_together_through_a_transaction_pooler_all_start_and_hold_nothing() {
    let pooler =
        Pooler::start_with_pool("PGBOUNCER_TRANSACTION", PoolMode::Transaction(Some(200)), 2);
    let database = TestDatabase::create(pooler.setup()).await;

    let started = futures::future::join_all(
        (0..3).map(|_| Application::build(test_config(&database.url, |_| {}))),
    )
    .await;

    for app in &started {
        assert!(
            app.is_ok(),
            "every instance starts: {:?}",
            app.as_ref().err()
        );
    }
    let mut direct = product_service::db::connect(&crate::helpers::direct_url(&database.name))
        .await
        .expect("a direct connection");
    #[derive(diesel::QueryableByName)]
    struct Held {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let held: Held = diesel_async::RunQueryDsl::get_result(
        diesel::sql_query(
            // pg_locks is the whole cluster's: other tests' databases hold locks of their own.
            "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        ),
        &mut direct,
    )
    .await
    .expect("count advisory locks");
    assert_eq!(
        held.n, 0,
        "no advisory lock is left held on a server connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_pooler_that_loses_prepared_statements_is_refused_at_start() {
    let pooler = Pooler::start("PGBOUNCER_SESSION", PoolMode::Transaction(None));
    let database = TestDatabase::create(pooler.setup()).await;

    let refused = Application::build(test_config(&database.url, |_| {})).await;

    let error = refused
        .err()
        .expect("a pooler that loses prepared statements must be refused")
        .to_string();
    assert!(
        error.contains("max_prepared_statements") && error.contains("pool_mode = session"),
        "the refusal names both fixes: {error}"
    );
}

/// A pool of one server connection cannot serve the start-up checks, which need two at once
/// (one transaction open while another runs): the start fails in bounded time, naming
/// `default_pool_size`, where it used to wait for PgBouncer's `query_wait_timeout` (120 s) and
/// say nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_too_small_for_the_start_up_checks_fails_the_start_in_bounded_time() {
    let pooler =
        Pooler::start_with_pool("PGBOUNCER_TRANSACTION", PoolMode::Transaction(Some(200)), 1);
    let database = TestDatabase::create(pooler.setup()).await;
    // One second a connection attempt, so the checks get 33 s in all.
    let url = format!("{} connect_timeout=1", database.url);

    let started = std::time::Instant::now();
    let refused = Application::build(test_config(&url, |_| {})).await;

    let error = refused
        .err()
        .expect("a pool of one cannot serve the checks")
        .to_string();
    assert!(
        error.contains("default_pool_size") && error.contains("33s"),
        "the refusal names the pool: {error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(45),
        "bounded: {:?}",
        started.elapsed()
    );
}

/// In session pooling every client connection holds a server connection; the start-up checks
/// open more than two clients while they look for the pooler's way of handing servers out, and
/// must give up looking rather than wait: with a pool of two the service starts (the breaker
/// saw "no answer within 5s" with pools of 2 to 4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_pooler_with_a_pool_of_two_serves_the_start_up_checks() {
    let pooler = Pooler::start_with_pool("PGBOUNCER_SESSION", PoolMode::Session, 2);
    let database = TestDatabase::create(pooler.setup()).await;

    let started = Application::build(test_config(&database.url, |c| c.db_pool_size = 2)).await;

    assert!(started.is_ok(), "it starts: {:?}", started.err());
}
