//! The race this service exists to win: concurrent upserts and key changes never duplicate.
//!
//! The requests of a race are spread over several instances of the service sharing one
//! database, as a deployment of several processes would be: within one instance requests for a
//! key also queue in the instance (`key_gate`), so only across instances is the advisory lock
//! the sole guard. Every race test widens the window between reading and writing
//! (`race_window_ms`, a `test-hooks` switch) so that a missing lock shows up every time, and one
//! test switches the advisory lock off to prove that these tests catch the bug.

use futures::future::join_all;
use product_service::config::Config;
use serde_json::{Value, json};

use crate::helpers::{DatabaseSetup, Instance, TestApp, json, product, spawn_app_on};

// The tests of this file, each run with group commit and with one transaction per upsert.
in_both_modes!(
    sixty_four_concurrent_identical_posts_leave_one_row_and_exactly_one_201,
    without_the_advisory_lock_the_same_race_writes_duplicates,
    fifty_keys_with_sixteen_concurrent_posts_each_leave_fifty_rows,
    concurrent_patches_moving_two_rows_onto_one_key_leave_one_row_with_it,
    a_patch_and_a_post_racing_for_one_key_leave_one_row_with_it,
    the_upsert_runs_read_committed_even_where_the_database_default_is_stricter,
    look_alike_lock_functions_earlier_on_the_search_path_change_nothing,
    concurrent_posts_of_one_key_in_nfc_and_nfd_spellings_leave_one_row,
);

/// The window between `SELECT ... FOR UPDATE` and the write, in the race tests.
/// Wide enough that requests released together all fall into it even on a loaded machine.
const RACE_WINDOW_MS: u64 = 150;
/// Instances of the service in a race.
pub(crate) const INSTANCES: usize = 4;

/// Several instances of the service on one database.
pub(crate) struct Race {
    pub(crate) app: TestApp,
    others: Vec<Instance>,
}

impl Race {
    /// The instance that serves request `i` (round robin).
    fn address(&self, i: usize) -> &str {
        match i % INSTANCES {
            0 => &self.app.address,
            n => &self.others[n - 1].address,
        }
    }

    /// Sends request `i` of a race to its instance.
    async fn post(&self, i: usize, body: &Value) -> reqwest::Response {
        self.app
            .client
            .post(format!("{}/products", self.address(i)))
            .json(body)
            .send()
            .await
            .expect("POST /products failed to send")
    }
}

fn racing_config(lock: bool, group_commit: bool) -> impl Fn(&mut Config) + Copy {
    move |c: &mut Config| {
        c.group_commit = group_commit;
        // Generous bounds: these tests are about duplicates, not about waits (see unavailable.rs).
        c.db_pool_size = 24;
        c.db_pool_timeout_ms = 60_000;
        c.waits.lock_timeout_ms = 60_000;
        c.test_hooks.race_window_ms = RACE_WINDOW_MS;
        c.test_hooks.disable_advisory_lock = !lock;
    }
}

async fn race(lock: bool, group_commit: bool) -> Race {
    race_on(DatabaseSetup::default(), lock, group_commit).await
}

/// [`race`] on a database made as `setup` says.
pub(crate) async fn race_on(setup: DatabaseSetup<'_>, lock: bool, group_commit: bool) -> Race {
    let race = cold_race(setup, lock, group_commit).await;
    warm_up(&race).await;
    race
}

/// Instances whose pools have no connection yet.
async fn cold_race(setup: DatabaseSetup<'_>, lock: bool, group_commit: bool) -> Race {
    let app = spawn_app_on(setup, racing_config(lock, group_commit)).await;
    let mut others = Vec::new();
    for _ in 1..INSTANCES {
        others.push(
            app.another_instance(racing_config(lock, group_commit))
                .await,
        );
    }
    Race { app, others }
}

/// Opens connections in every instance's pool, so that opening them does not spread a race out.
async fn warm_up(race: &Race) {
    let requests = (0..INSTANCES * 8).map(|i| {
        race.app
            .client
            .get(format!("{}/products?limit=1", race.address(i)))
            .send()
    });
    for response in join_all(requests).await {
        assert_eq!(response.expect("warm-up request").status(), 200);
    }
}

/// Sends `n` identical POSTs at once, spread over the instances; returns their statuses.
pub(crate) async fn identical_posts(race: &Race, n: usize) -> Vec<u16> {
    let body = product("Race", "R-1", "M");
    let requests = (0..n).map(|i| race.post(i, &body));
    join_all(requests)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect()
}

pub(crate) fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

async fn sixty_four_concurrent_identical_posts_leave_one_row_and_exactly_one_201(
    group_commit: bool,
) {
    let race = race(true, group_commit).await;
    let app = &race.app;

    let statuses = identical_posts(&race, 64).await;

    let rows = app.count_products("true").await;
    eprintln!(
        "with the lock: rows={rows}, 201s={}, 200s={}",
        count(&statuses, 201),
        count(&statuses, 200)
    );
    assert_eq!(count(&statuses, 201), 1, "{statuses:?}");
    assert_eq!(count(&statuses, 200), 63, "{statuses:?}");
    assert_eq!(rows, 1);
    let product = json(app.get("/products?brand=Race").await).await;
    assert_eq!(
        product["items"][0]["version"], 64,
        "every update was applied in turn"
    );
}

async fn without_the_advisory_lock_the_same_race_writes_duplicates(group_commit: bool) {
    let race = race(false, group_commit).await;
    let app = &race.app;

    let statuses = identical_posts(&race, 64).await;

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

async fn fifty_keys_with_sixteen_concurrent_posts_each_leave_fifty_rows(group_commit: bool) {
    let race = race(true, group_commit).await;
    let app = &race.app;
    let bodies: Vec<_> = (0..16)
        .flat_map(|_| (0..50).map(|k| product("Many", &format!("K-{k}"), "M")))
        .collect();

    let responses = join_all(bodies.iter().enumerate().map(|(i, b)| race.post(i, b))).await;

    let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(count(&statuses, 201), 50, "one creation per key");
    assert_eq!(count(&statuses, 200), 750, "{statuses:?}");
    assert_eq!(app.count_products("true").await, 50);
    assert_eq!(app.duplicated_keys().await, 0);
}

async fn concurrent_patches_moving_two_rows_onto_one_key_leave_one_row_with_it(group_commit: bool) {
    let race = race(true, group_commit).await;
    let app = &race.app;
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

        // Each PATCH through another instance.
        let responses = join_all([&first, &second].iter().enumerate().map(|(i, row)| {
            app.client
                .patch(format!("{}/products/{}", race.address(i), row["id"]))
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

async fn a_patch_and_a_post_racing_for_one_key_leave_one_row_with_it(group_commit: bool) {
    let race = race(true, group_commit).await;
    let app = &race.app;
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
        let (patched, posted) = tokio::join!(patch, race.post(1, &new_key));
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

async fn the_upsert_runs_read_committed_even_where_the_database_default_is_stricter(
    group_commit: bool,
) {
    let race = cold_race(DatabaseSetup::default(), true, group_commit).await;
    let app = &race.app;
    // Under REPEATABLE READ the read after the lock would use a snapshot taken before the
    // previous holder committed, and insert a duplicate (or fail to serialize). The setting
    // applies to sessions opened after it: the pool is warmed only now.
    app.admin_sql(&format!(
        "ALTER DATABASE {} SET default_transaction_isolation = 'repeatable read'",
        app.db_name()
    ))
    .await;
    warm_up(&race).await;

    let statuses = identical_posts(&race, 16).await;

    assert_eq!(count(&statuses, 201), 1, "{statuses:?}");
    assert_eq!(count(&statuses, 200), 15, "{statuses:?}");
    assert_eq!(app.count_products("true").await, 1);
}

/// No-op advisory-lock functions and a random lock key in a schema of their own, for a database
/// `search_path` that puts them before `pg_catalog` and `public`: an unqualified call would take
/// no lock, or another key's.
const LOOK_ALIKE_LOCKS: &str = "\
    CREATE SCHEMA look_alike; \
    CREATE FUNCTION look_alike.pg_advisory_xact_lock(bigint) RETURNS void \
        LANGUAGE sql AS 'SELECT NULL::void'; \
    CREATE FUNCTION look_alike.pg_try_advisory_xact_lock(bigint) RETURNS boolean \
        LANGUAGE sql AS 'SELECT true'; \
    CREATE FUNCTION look_alike.hashtextextended(text, bigint) RETURNS bigint \
        LANGUAGE sql AS 'SELECT (random() * 1e15)::bigint'; \
    CREATE FUNCTION look_alike.product_lock_key(text, text, text) RETURNS bigint \
        LANGUAGE sql AS 'SELECT (random() * 1e15)::bigint'";

async fn look_alike_lock_functions_earlier_on_the_search_path_change_nothing(group_commit: bool) {
    // The service's own objects are made first (in `public`); then the look-alikes go before
    // them, for every session opened from then on (the pools have none yet).
    let race = cold_race(DatabaseSetup::default(), true, group_commit).await;
    race.app.sql(LOOK_ALIKE_LOCKS).await;
    race.app
        .admin_sql(&format!(
            "ALTER DATABASE {} SET search_path = look_alike, pg_catalog, public",
            race.app.db_name()
        ))
        .await;
    warm_up(&race).await;

    let statuses = identical_posts(&race, 32).await;

    assert_eq!(count(&statuses, 201), 1, "{statuses:?}");
    assert_eq!(count(&statuses, 200), 31, "{statuses:?}");
    assert_eq!(race.app.count_products("true").await, 1);
}

async fn concurrent_posts_of_one_key_in_nfc_and_nfd_spellings_leave_one_row(group_commit: bool) {
    let race = race(true, group_commit).await;
    let app = &race.app;
    // "Café" precomposed and decomposed (e + U+0301), alternating over the instances; the
    // serial's "Å" as U+00C5 and as U+212B ANGSTROM SIGN (NFC: U+00C5).
    let spellings = [
        product("Caf\u{e9}", "\u{c5}-1", "M"),
        product("Cafe\u{301}", "\u{212b}-1", "M"),
        product("Cafe\u{301}", "\u{c5}-1", "M"),
        product("Caf\u{e9}", "A\u{30a}-1", "M"),
    ];

    // Request i goes to instance i % INSTANCES: every instance gets every spelling.
    let requests = (0..64).map(|i| race.post(i, &spellings[(i / INSTANCES) % spellings.len()]));
    let responses = join_all(requests).await;

    let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    let rows = app.count_products("true").await;
    eprintln!(
        "spellings: rows={rows}, 201s={}, 200s={}",
        count(&statuses, 201),
        count(&statuses, 200)
    );
    assert_eq!(count(&statuses, 201), 1, "{statuses:?}");
    assert_eq!(count(&statuses, 200), 63, "{statuses:?}");
    assert_eq!(rows, 1, "one key, however it is spelled");
    assert_eq!(
        app.count_products("brand = U&'Caf\\00e9' AND serial = U&'\\00c5-1'")
            .await,
        1,
        "stored in NFC"
    );
}

/// The write path sends the key's lock statement and the write together, pipelined
/// (`store::upsert`, `store::upsert_batch`), and relies on the server running them in the order
/// the futures are joined: the write must start, and take its snapshot, after the lock is
/// granted. diesel-async documents pipelining for independent statements only; the order holds
/// because a statement not yet prepared on the connection holds its statement cache while it
/// prepares, and the later statements queue behind it in turn. This test pins that down for the
/// dangerous case, the earlier statement still to be prepared and the later one cached, so
/// that a diesel-async upgrade that reorders them fails here and not in production as
/// duplicates. (Joined the other way round, it fails: the sequence numbers swap.)
#[tokio::test]
async fn pipelined_statements_run_in_the_order_they_are_joined_when_only_the_later_is_prepared() {
    use diesel_async::{AsyncPgConnection, RunQueryDsl as _};
    use product_service::db::prepared::Prepared;

    #[derive(diesel::QueryableByName)]
    struct Drawn {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    struct Earlier;
    struct Later;

    let database = crate::helpers::TestDatabase::create(DatabaseSetup::default()).await;
    for round in 0..5 {
        let mut conn = product_service::db::connect(&database.url)
            .await
            .expect("a connection");
        let sequence = format!("pipelining_{round}");
        diesel_async::SimpleAsyncConnection::batch_execute(
            &mut conn,
            &format!("CREATE SEQUENCE {sequence}"),
        )
        .await
        .expect("a sequence");
        let draw = format!("SELECT nextval('{sequence}') AS n");
        // Later's statement is prepared and cached on this connection; Earlier's is not.
        Prepared::<Later>::new(draw.clone(), vec![])
            .get_result::<Drawn>(&mut conn)
            .await
            .expect("the later statement, once");

        let mut pipeline: &AsyncPgConnection = &conn;
        let earlier =
            Prepared::<Earlier>::new(draw.clone(), vec![]).get_result::<Drawn>(&mut pipeline);
        let later = Prepared::<Later>::new(draw, vec![]).get_result::<Drawn>(&mut pipeline);
        let (earlier, later) = futures::future::join(earlier, later).await;
        let (earlier, later) = (earlier.expect("earlier").n, later.expect("later").n);
        assert!(
            earlier < later,
            "round {round}: the statement joined first ran second ({earlier} after {later})"
        );
    }
}
