//! Rate limits and API tokens (both off by default): every status they add (401, 429) arising
//! from real requests, who counts as a client, what is never limited or protected, bounded
//! memory, the tokens file re-read, and the settings that contradict each other.

use std::time::Duration;

use futures::StreamExt as _;
use product_service::config::{ApiToken, Config};
use product_service::http::auth::ApiTokens;
use reqwest::Method;
use reqwest::header::HeaderMap;

use crate::helpers::{TestApp, json, product, scrape, spawn_app_with, test_config, value};

/// The test client's own address, as a trusted proxy.
const PROXY: &str = "127.0.0.1/32";
const TOKEN: &str = "s3cret-token-a";
const OTHER_TOKEN: &str = "s3cret-token-b";

/// Rate limiting at `per_second` a second, bursts of `burst`.
fn limit(config: &mut Config, per_second: f64, burst: u32) {
    config.rate_limit_per_second = per_second;
    config.rate_limit_burst = Some(burst);
}

fn trust_local_proxy(config: &mut Config) {
    config.trusted_proxies = vec![PROXY.parse().expect("a CIDR block")];
}

fn with_tokens(config: &mut Config) {
    config.api_tokens = vec![ApiToken::from(TOKEN), ApiToken::from(OTHER_TOKEN)];
}

/// Sends `method path`, from `forwarded_for` (as `X-Forwarded-For`) and with `token` (as a
/// bearer token) when given, with a product body for writes.
async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    forwarded_for: Option<&str>,
    token: Option<&str>,
) -> reqwest::Response {
    let mut request = app.client.request(method.clone(), app.url(path));
    if let Some(address) = forwarded_for {
        request = request.header("x-forwarded-for", address);
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if [Method::POST, Method::PUT, Method::PATCH].contains(&method) {
        request = request.json(&product("Lim", "1", "M"));
    }
    request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {path} failed to send: {e}"))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} in {headers:?}"))
        .to_str()
        .expect("ASCII")
}

#[tokio::test]
async fn a_client_over_its_burst_gets_429_with_retry_after_and_the_ratelimit_fields() {
    // One request every 10 s after a burst of 3: nothing is regained during the test.
    let app = spawn_app_with(|c| limit(c, 0.1, 3)).await;

    for left in [2, 1, 0] {
        let response = send(&app, Method::GET, "/products", None, None).await;
        assert_eq!(response.status(), 200, "within the burst ({left} left)");
        let headers = response.headers();
        assert_eq!(header(headers, "ratelimit-policy"), "\"default\";q=3;w=30");
        let refill = (3 - left) * 10;
        assert_eq!(
            header(headers, "ratelimit"),
            format!("\"default\";r={left};t={refill}")
        );
    }
    let limited = send(&app, Method::GET, "/products", None, None).await;
    let posted = send(&app, Method::POST, "/products", None, None).await;

    assert_eq!(limited.status(), 429);
    let headers = limited.headers().clone();
    assert_eq!(header(&headers, "content-type"), "application/problem+json");
    let retry_after: u64 = header(&headers, "retry-after").parse().expect("seconds");
    assert!((1..=10).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(header(&headers, "ratelimit-policy"), "\"default\";q=3;w=30");
    assert!(
        header(&headers, "ratelimit").starts_with("\"default\";r=0;t="),
        "{headers:?}"
    );
    let problem = json(limited).await;
    assert_eq!(problem["status"], 429);
    assert_eq!(problem["title"], "Too Many Requests");
    assert!(
        problem["instance"]
            .as_str()
            .is_some_and(|i| i.starts_with("urn:product-service:request:")),
        "{problem}"
    );
    assert_eq!(posted.status(), 429, "writes count against the same limit");
    assert_eq!(
        app.count_products("true").await,
        0,
        "a limited write writes nothing"
    );
    let metrics = scrape(&app).await;
    assert_eq!(value(&metrics, "rate_limited_total", &[]), 2.0);
    assert_eq!(
        value(
            &metrics,
            "http_requests_total",
            &[("method", "GET"), ("route", "/products"), ("status", "429")]
        ),
        1.0
    );
}

#[tokio::test]
async fn clients_are_told_apart_by_their_token_and_by_the_address_a_trusted_proxy_forwards() {
    let app = spawn_app_with(|c| {
        limit(c, 0.1, 2);
        trust_local_proxy(c);
        with_tokens(c);
    })
    .await;
    let get = |from: &'static str| send(&app, Method::GET, "/products", Some(from), None);

    // By address: the right-most X-Forwarded-For entry that is not a trusted proxy.
    assert_eq!(get("203.0.113.1").await.status(), 200);
    assert_eq!(get("203.0.113.1").await.status(), 200);
    assert_eq!(get("203.0.113.1").await.status(), 429);
    assert_eq!(
        get("198.51.100.9, 203.0.113.1").await.status(),
        429,
        "an entry the client added on the left changes nothing"
    );
    assert_eq!(get("203.0.113.1, 127.0.0.1").await.status(), 429);
    assert_eq!(get("203.0.113.2").await.status(), 200, "another client");

    // By token: each valid token is a client of its own, wherever it comes from.
    let post = |from: &'static str, token: &'static str| {
        send(&app, Method::POST, "/products", Some(from), Some(token))
    };
    assert_eq!(post("203.0.113.10", TOKEN).await.status(), 201);
    assert_eq!(post("203.0.113.11", TOKEN).await.status(), 200);
    assert_eq!(post("203.0.113.12", TOKEN).await.status(), 429);
    assert_eq!(post("203.0.113.12", OTHER_TOKEN).await.status(), 200);

    // A wrong token is no client of its own: guesses count against the address.
    assert_eq!(post("203.0.113.20", "guess-1").await.status(), 401);
    assert_eq!(post("203.0.113.20", "guess-2").await.status(), 401);
    assert_eq!(post("203.0.113.20", "guess-3").await.status(), 429);
}

#[tokio::test]
async fn forwarded_addresses_from_a_peer_that_is_no_trusted_proxy_are_ignored() {
    // No TRUSTED_PROXIES: every request here comes from the test's own address.
    let app = spawn_app_with(|c| limit(c, 0.1, 2)).await;

    let mut statuses = Vec::new();
    for from in ["203.0.113.1", "203.0.113.2", "203.0.113.3"] {
        statuses.push(
            send(&app, Method::GET, "/products", Some(from), None)
                .await
                .status()
                .as_u16(),
        );
    }

    assert_eq!(statuses, [200, 200, 429], "one bucket: the peer's");
}

#[tokio::test]
async fn probes_and_scrapes_are_never_limited() {
    let app = spawn_app_with(|c| limit(c, 0.1, 1)).await;
    assert_eq!(app.get("/products").await.status(), 200);
    assert_eq!(app.get("/products").await.status(), 429);

    for path in ["/healthz", "/readyz", "/metrics", "/healthz/", "/readyz/"] {
        for _ in 0..20 {
            let response = app.get(path).await;
            assert_eq!(response.status(), 200, "{path}");
            assert!(response.headers().get("ratelimit").is_none(), "{path}");
        }
    }
    assert_eq!(app.get("/openapi.json").await.status(), 429, "not a probe");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_distinct_clients_leave_bounded_state_that_the_clean_up_drops() {
    let app = spawn_app_with(|c| {
        limit(c, 1000.0, 1);
        trust_local_proxy(c);
    })
    .await;
    let client = reqwest::Client::new();
    const CLIENTS: u32 = 20_000;

    let statuses: Vec<u16> = futures::stream::iter(0..CLIENTS)
        .map(|n| {
            let request = client
                .get(app.url("/nowhere"))
                .header(
                    "x-forwarded-for",
                    format!("10.{}.{}.{}", n >> 16, (n >> 8) & 255, n & 255),
                )
                .send();
            async move { request.await.expect("send").status().as_u16() }
        })
        .buffer_unordered(16)
        .collect()
        .await;

    assert!(
        statuses.iter().all(|s| *s == 404),
        "each client made one request, within its burst"
    );
    // Every client is idle a millisecond later: the next clean-up (every 2 s) drops them all.
    let mut clients = f64::MAX;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        clients = value(&scrape(&app).await, "rate_limiter_clients", &[]);
        if clients <= 10.0 {
            break;
        }
    }
    assert!(clients <= 10.0, "{clients} client states left");
}

#[tokio::test]
async fn writes_need_a_valid_bearer_token_once_tokens_are_configured() {
    let app = spawn_app_with(with_tokens).await;
    let realm = "Bearer realm=\"product-service\"";

    let missing = send(&app, Method::POST, "/products", None, None).await;
    assert_eq!(missing.status(), 401);
    assert_eq!(header(missing.headers(), "www-authenticate"), realm);
    assert_eq!(
        header(missing.headers(), "content-type"),
        "application/problem+json"
    );
    assert_eq!(json(missing).await["status"], 401);
    let invalid = send(&app, Method::POST, "/products", None, Some("wrong")).await;
    assert_eq!(invalid.status(), 401);
    assert_eq!(
        header(invalid.headers(), "www-authenticate"),
        format!("{realm}, error=\"invalid_token\"")
    );
    let basic = app
        .client
        .post(app.url("/products"))
        .basic_auth("user", Some(TOKEN))
        .json(&product("Lim", "1", "M"))
        .send()
        .await
        .expect("send");
    assert_eq!(basic.status(), 401, "only a bearer token counts");
    let encoded = send(&app, Method::POST, "/product%73", None, None).await;
    assert_eq!(encoded.status(), 401, "the path as the router reads it");
    let created = send(&app, Method::POST, "/products", None, Some(TOKEN)).await;
    assert_eq!(created.status(), 201);
    let id = json(created).await["id"].clone();
    let item = format!("/products/{id}");

    for method in [Method::PUT, Method::PATCH, Method::DELETE] {
        let without = send(&app, method.clone(), &item, None, None).await;
        assert_eq!(without.status(), 401, "{method} without a token");
        assert_eq!(header(without.headers(), "www-authenticate"), realm);
        let wrong = send(&app, method.clone(), &item, None, Some("wrong")).await;
        assert_eq!(wrong.status(), 401, "{method} with a wrong token");
    }
    let lowercase = app
        .client
        .put(app.url(&item))
        .header("authorization", format!("bearer {OTHER_TOKEN}"))
        .json(&product("Lim", "1", "M"))
        .send()
        .await
        .expect("send");
    assert_eq!(lowercase.status(), 200, "the scheme in any case");
    assert_eq!(
        send(&app, Method::PATCH, &item, None, Some(TOKEN))
            .await
            .status(),
        200
    );
    // Reads stay open, and so does OPTIONS.
    assert_eq!(app.get("/products").await.status(), 200);
    assert_eq!(app.get(&item).await.status(), 200);
    let options = send(&app, Method::OPTIONS, "/products", None, None).await;
    assert_eq!(options.status(), 204);
    assert_eq!(
        send(&app, Method::DELETE, &item, None, Some(TOKEN))
            .await
            .status(),
        204
    );
    assert_eq!(app.count_products("true").await, 0);

    let metrics = scrape(&app).await;
    // Missing: the POST, the Basic POST, the encoded POST, PUT, PATCH, DELETE.
    assert_eq!(
        value(&metrics, "unauthorized_total", &[("reason", "missing")]),
        6.0
    );
    assert_eq!(
        value(&metrics, "unauthorized_total", &[("reason", "invalid")]),
        4.0
    );
}

#[tokio::test]
async fn a_cors_preflight_needs_no_token() {
    let app = spawn_app_with(|c| {
        with_tokens(c);
        c.cors_allowed_origins = vec!["https://shop.example".to_owned()];
    })
    .await;

    let preflight = app
        .client
        .request(Method::OPTIONS, app.url("/products"))
        .header("origin", "https://shop.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .expect("send");
    let refused = app
        .client
        .post(app.url("/products"))
        .header("origin", "https://shop.example")
        .json(&product("Lim", "1", "M"))
        .send()
        .await
        .expect("send");

    assert_eq!(preflight.status(), 200);
    assert_eq!(refused.status(), 401);
    assert_eq!(
        header(refused.headers(), "access-control-allow-origin"),
        "https://shop.example",
        "the page may read the 401"
    );
}

#[tokio::test]
async fn reads_need_a_token_only_with_api_tokens_read() {
    let app = spawn_app_with(|c| {
        with_tokens(c);
        c.api_tokens_read = true;
    })
    .await;

    assert_eq!(app.get("/products").await.status(), 401);
    assert_eq!(app.get("/products/1").await.status(), 401);
    let head = send(&app, Method::HEAD, "/products", None, None).await;
    assert_eq!(head.status(), 401);
    let read = send(&app, Method::GET, "/products", None, Some(TOKEN)).await;
    assert_eq!(read.status(), 200);
    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json", "/"] {
        assert_eq!(app.get(path).await.status(), 200, "{path} stays open");
    }
}

#[test]
fn the_tokens_file_is_reread_and_a_file_that_fails_keeps_the_previous_tokens() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("tokens");
    std::fs::write(&path, "# the shop\nfirst-token\n\n  second-token  \n").expect("write");
    let tokens = ApiTokens::from_file(&path).expect("a good file");
    assert_eq!(tokens.len(), 2);
    assert!(tokens.verify("first-token").is_some());
    assert!(tokens.verify("second-token").is_some());
    assert!(
        tokens.verify("# the shop").is_none(),
        "a comment is no token"
    );

    std::fs::write(&path, "third-token\n").expect("write");
    assert_eq!(tokens.reload(), Ok(1));
    assert!(tokens.verify("third-token").is_some());
    assert!(tokens.verify("first-token").is_none(), "revoked");

    for (bad, says) in [
        ("# nothing left\n", "holds no token"),
        ("a token with spaces\n", "line 1"),
    ] {
        std::fs::write(&path, bad).expect("write");
        let error = tokens.reload().expect_err(bad);
        assert!(error.contains(says), "{error}");
        assert!(
            !error.contains("token with"),
            "the message repeats no token"
        );
        assert!(tokens.verify("third-token").is_some(), "kept after {bad:?}");
    }
    std::fs::remove_file(&path).expect("remove");
    assert!(tokens.reload().is_err());
    assert!(
        tokens.verify("third-token").is_some(),
        "kept when unreadable"
    );
}

/// A change to the test settings.
type Configure = Box<dyn FnOnce(&mut Config)>;

#[tokio::test]
async fn a_tokens_file_that_cannot_be_used_or_contradicting_settings_stop_the_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "# no tokens yet\n").expect("write");
    let cases: Vec<(Configure, &str)> = vec![
        (
            Box::new(|c| c.api_tokens_file = Some("/nonexistent/tokens".into())),
            "API_TOKENS_FILE /nonexistent/tokens",
        ),
        (
            Box::new(move |c| c.api_tokens_file = Some(empty)),
            "holds no token",
        ),
        (
            Box::new(|c| c.api_tokens_read = true),
            "API_TOKENS_READ=true protects nothing",
        ),
        (
            Box::new(|c| c.rate_limit_burst = Some(5)),
            "RATE_LIMIT_BURST limits nothing",
        ),
        (
            Box::new(|c| {
                with_tokens(c);
                c.api_tokens_file = Some("/etc/hostname".into());
            }),
            "give one of them",
        ),
    ];
    for (configure, says) in cases {
        // The database is never reached: the settings are checked first.
        let config = test_config("postgres://nowhere.invalid/none", configure);
        let error = product_service::startup::Application::build(config)
            .await
            .err()
            .unwrap_or_else(|| panic!("started despite: {says}"))
            .to_string();
        assert!(error.contains(says), "{error}");
    }
}
