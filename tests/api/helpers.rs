//! `spawn_app()`: a fresh database and a running server per test.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU32, Ordering};

use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use product_service::config::{CommonArgs, Config};
use product_service::db;
use product_service::db::embedded::{Durability, EmbeddedPostgres};
use product_service::startup::Application;
use serde_json::Value;

/// Where test databases are created: `TEST_DATABASE_URL`, or one private cluster per test
/// binary, started with the service's own embedded-database code and removed at exit.
enum Cluster {
    External(String),
    Embedded(EmbeddedPostgres),
}

static CLUSTER: LazyLock<Cluster> = LazyLock::new(|| {
    let _ = env_logger::builder().is_test(true).try_init();
    if let Ok(url) = std::env::var("TEST_DATABASE_URL") {
        return Cluster::External(url);
    }
    let root = tempfile::Builder::new()
        .prefix("product-service-test.")
        .tempdir()
        .expect("cannot create a temporary directory for the test cluster")
        .keep();
    match EmbeddedPostgres::start(&root, Durability::Ephemeral) {
        Ok(cluster) => Cluster::Embedded(cluster),
        Err(e) => panic!(
            "these tests need PostgreSQL and could not start it: {e}\n\
             (or set TEST_DATABASE_URL to a server where the test may create databases)"
        ),
    }
});

static NEXT_DATABASE: AtomicU32 = AtomicU32::new(0);

/// The connection string of database `name` in the test cluster.
fn database_url(name: &str) -> String {
    match &*CLUSTER {
        Cluster::Embedded(cluster) => cluster.url(name),
        Cluster::External(url) if url.contains("://") => {
            let (base, query) = url
                .split_once('?')
                .map_or((url.as_str(), None), |(b, q)| (b, Some(q)));
            let (scheme, rest) = base.split_once("://").expect("checked above");
            let authority = rest.split('/').next().unwrap_or_default();
            let query = query.map(|q| format!("?{q}")).unwrap_or_default();
            format!("{scheme}://{authority}/{name}{query}")
        }
        Cluster::External(url) => format!("{url} dbname={name}"),
    }
}

fn admin_url() -> String {
    database_url("postgres")
}

/// A running service with a database of its own, dropped with it.
pub struct TestApp {
    pub address: String,
    /// The separate metrics listener, when `METRICS_ADDR` was set.
    pub metrics_address: Option<String>,
    pub client: reqwest::Client,
    pub db_url: String,
    /// Stops the server when the test ends (declared before the database, so it goes first).
    _instance: Instance,
    database: TestDatabase,
}

/// Starts the service on a random port with a fresh database and the default test settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Like [`spawn_app`], with settings changed by `configure`.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_on(DatabaseSetup::default(), configure).await
}

/// Like [`spawn_app_with`], on a database made as `setup` says.
pub async fn spawn_app_on(
    setup: DatabaseSetup<'_>,
    configure: impl FnOnce(&mut Config),
) -> TestApp {
    let database = TestDatabase::create(setup).await;
    let (instance, metrics_address) = start_instance(&database.url, configure).await;
    TestApp {
        address: instance.address.clone(),
        metrics_address,
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("http client"),
        db_url: database.url.clone(),
        _instance: instance,
        database,
    }
}

/// How a test's database is made.
#[derive(Debug, Default)]
pub struct DatabaseSetup<'a> {
    /// The database is owned by a role of its own, without superuser, and the service connects
    /// as that role (as on managed PostgreSQL); else as the cluster's superuser.
    pub own_role: bool,
    /// `ALTER DATABASE ... SET name = value` (the value as SQL: quote a string), applied before
    /// the service starts.
    pub settings: &'a [(&'a str, &'a str)],
    /// SQL run in the new database, as the cluster's superuser, before the service starts.
    pub sql: &'a str,
    /// The service connects through a pooler listening on this port of 127.0.0.1 (as the
    /// cluster's superuser), not directly.
    pub pooler_port: Option<u16>,
}

/// A database of its own for one test, dropped (with its role) when the test ends.
pub struct TestDatabase {
    pub name: String,
    /// How the service connects to it.
    pub url: String,
    /// The role that owns it, when it is not the cluster's superuser.
    owner: Option<String>,
}

impl TestDatabase {
    /// Creates a database as `setup` says.
    pub async fn create(setup: DatabaseSetup<'_>) -> Self {
        let name = format!(
            "test_{}_{}",
            std::process::id(),
            NEXT_DATABASE.fetch_add(1, Ordering::Relaxed)
        );
        let owner = setup.own_role.then(|| format!("{name}_owner"));
        // One statement at a time: CREATE DATABASE cannot run in a transaction.
        let mut statements = Vec::new();
        if let Some(owner) = &owner {
            statements.push(format!("CREATE ROLE {owner} LOGIN NOSUPERUSER"));
            statements.push(format!("CREATE DATABASE {name} OWNER {owner}"));
        } else {
            statements.push(format!("CREATE DATABASE {name}"));
        }
        for (setting, value) in setup.settings {
            statements.push(format!("ALTER DATABASE {name} SET {setting} = {value}"));
        }
        let mut admin = db::connect(&admin_url())
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the test PostgreSQL: {e}"));
        for sql in statements {
            admin
                .batch_execute(&sql)
                .await
                .unwrap_or_else(|e| panic!("cannot set the test database up ({sql}): {e}"));
        }
        if !setup.sql.is_empty() {
            let mut inside = db::connect(&database_url(&name))
                .await
                .expect("cannot connect to the new test database");
            inside
                .batch_execute(setup.sql)
                .await
                .unwrap_or_else(|e| panic!("test database set-up SQL failed: {e}"));
        }
        let url = match (&owner, setup.pooler_port) {
            (_, Some(port)) => format!("host=127.0.0.1 port={port} user=postgres dbname={name}"),
            (Some(owner), None) => as_user(&database_url(&name), owner),
            (None, None) => database_url(&name),
        };
        Self { name, url, owner }
    }
}

/// The direct connection string of database `name` in the test cluster (never through a
/// pooler).
#[cfg_attr(
    not(feature = "pooler-tests"),
    expect(dead_code, reason = "used by the pooler tests")
)]
pub fn direct_url(name: &str) -> String {
    database_url(name)
}

/// Where the test cluster listens: (unix socket directory or host name, port).
#[cfg_attr(
    not(feature = "pooler-tests"),
    expect(dead_code, reason = "used by the pooler tests")
)]
pub fn cluster_address() -> (String, u16) {
    let config: tokio_postgres::Config = admin_url()
        .parse()
        .expect("the test cluster's URL is readable");
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Unix(dir)) => dir.display().to_string(),
        Some(tokio_postgres::config::Host::Tcp(name)) => name.clone(),
        None => panic!("the test cluster's URL names no host"),
    };
    (host, config.get_ports().first().copied().unwrap_or(5432))
}

/// `url` connecting as `user` instead.
fn as_user(url: &str, user: &str) -> String {
    if url.contains("://") {
        let separator = if url.contains('?') { '&' } else { '?' };
        format!("{url}{separator}user={user}")
    } else {
        format!("{url} user={user}")
    }
}

/// The service's settings in tests: `db_url`, a random port, two workers, then `configure`.
pub fn test_config(db_url: &str, configure: impl FnOnce(&mut Config)) -> Config {
    let mut config = Config {
        common: CommonArgs {
            database_url: Some(db_url.to_owned()),
            ..CommonArgs::default()
        },
        bind_addr: "127.0.0.1:0".parse().expect("valid address"),
        http_workers: Some(2),
        ..Config::default()
    };
    configure(&mut config);
    config
}

/// Builds and starts the service on `db_url` with the test settings changed by `configure`;
/// returns it and the address of its separate metrics listener, if any.
async fn start_instance(
    db_url: &str,
    configure: impl FnOnce(&mut Config),
) -> (Instance, Option<String>) {
    let app = Application::build(test_config(db_url, configure))
        .await
        .expect("the application failed to start");
    let address = format!("http://127.0.0.1:{}", app.port());
    let metrics_address = app
        .metrics_port()
        .map(|port| format!("http://127.0.0.1:{port}"));
    let server = app.handle();
    tokio::spawn(app.run_until_stopped());
    (Instance { address, server }, metrics_address)
}

/// Another instance of the service on a test's database, as a second process would be.
pub struct Instance {
    pub address: String,
    server: actix_web::dev::ServerHandle,
}

impl Drop for Instance {
    fn drop(&mut self) {
        drop(self.server.stop(false));
    }
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path} failed to send: {e}"))
    }

    /// `POST /products` with a JSON body.
    pub async fn post_product(&self, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url("/products"))
            .json(body)
            .send()
            .await
            .expect("POST /products failed to send")
    }

    /// Sends `body` as raw bytes with the given content type.
    pub async fn send_raw(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.client
            .request(method, self.url(path))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request failed to send")
    }

    /// Starts another instance of the service on this test's database.
    pub async fn another_instance(&self, configure: impl FnOnce(&mut Config)) -> Instance {
        start_instance(&self.db_url, configure).await.0
    }

    /// This test's database name.
    pub fn db_name(&self) -> &str {
        &self.database.name
    }

    /// Runs SQL on the cluster's `postgres` database (to act on this test's database as a whole).
    pub async fn admin_sql(&self, sql: &str) {
        let mut admin = db::connect(&admin_url())
            .await
            .expect("cannot connect as admin");
        admin.batch_execute(sql).await.expect("admin SQL failed");
    }

    /// A direct connection to this test's database.
    pub async fn db(&self) -> AsyncPgConnection {
        db::connect(&self.db_url)
            .await
            .expect("cannot connect to the test database")
    }

    /// Opens a transaction elsewhere that holds the advisory lock of the key, as another writer
    /// would; the lock lasts until the returned connection rolls back or closes.
    pub async fn hold_key_lock(
        &self,
        brand: &str,
        serial: &str,
        manufacturer: &str,
    ) -> AsyncPgConnection {
        let mut holder = self.db().await;
        holder
            .batch_execute(&format!(
                "BEGIN; SELECT pg_advisory_xact_lock(product_lock_key('{brand}', '{serial}', '{manufacturer}'))"
            ))
            .await
            .expect("take the lock");
        holder
    }

    /// Opens a transaction elsewhere that holds the row lock (`FOR UPDATE`) of product `id`, so
    /// that a write of it waits inside the database; the lock lasts until the returned
    /// connection rolls back or closes.
    pub async fn hold_row_lock(&self, id: &serde_json::Value) -> AsyncPgConnection {
        let mut holder = self.db().await;
        holder
            .batch_execute(&format!(
                "BEGIN; SELECT 1 FROM products WHERE id = {id} FOR UPDATE"
            ))
            .await
            .expect("lock the row");
        holder
    }

    /// Runs SQL directly against this test's database.
    pub async fn sql(&self, sql: &str) {
        self.db()
            .await
            .batch_execute(sql)
            .await
            .expect("SQL failed");
    }

    /// `SELECT count(*)` of a query's rows: `where` is a condition on `products`.
    pub async fn count_products(&self, condition: &str) -> i64 {
        let count: Count = diesel::sql_query(format!(
            "SELECT count(*) AS n FROM products WHERE {condition}"
        ))
        .get_result(&mut self.db().await)
        .await
        .expect("count failed");
        count.n
    }

    /// Keys with more than one row.
    pub async fn duplicated_keys(&self) -> i64 {
        let count: Count = diesel::sql_query(
            "SELECT count(*) AS n FROM (SELECT 1 FROM products \
             GROUP BY brand, serial, manufacturer HAVING count(*) > 1) d",
        )
        .get_result(&mut self.db().await)
        .await
        .expect("count failed");
        count.n
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        let drop_owner = self
            .owner
            .as_ref()
            .map(|owner| format!("; DROP ROLE IF EXISTS {owner}"))
            .unwrap_or_default();
        // Drop has no runtime to await on: drop the database from a thread of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut admin = db::connect(&admin_url())
                    .await
                    .map_err(std::io::Error::other)?;
                admin
                    .batch_execute(&format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE){drop_owner}"
                    ))
                    .await
                    .map_err(std::io::Error::other)
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

/// The value of one sample in a Prometheus text exposition; labels compare as a set.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if series_name != name {
                return None;
            }
            let mut found: Vec<(String, String)> = series_labels
                .split(',')
                .filter(|pair| !pair.is_empty())
                .filter_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    Some((k.to_owned(), v.trim_matches('"').to_owned()))
                })
                .collect();
            let mut wanted: Vec<(String, String)> = labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            found.sort();
            wanted.sort();
            (found == wanted).then(|| value.parse().ok()).flatten()
        })
}

pub async fn scrape(app: &TestApp) -> String {
    let base = app.metrics_address.as_deref().unwrap_or(&app.address);
    let response = app
        .client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    response.text().await.expect("metrics text")
}

pub fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    sample(text, name, labels).unwrap_or_else(|| panic!("no sample {name}{labels:?} in:\n{text}"))
}

/// A valid product body for `key`.
pub fn product(brand: &str, serial: &str, manufacturer: &str) -> Value {
    serde_json::json!({
        "brand": brand,
        "serial": serial,
        "manufacturer": manufacturer,
        "name": format!("{brand} {serial}"),
    })
}

/// Reads a response's JSON body.
pub async fn json(response: reqwest::Response) -> Value {
    response.json().await.expect("response body is not JSON")
}
