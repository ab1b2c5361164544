//! Clients the other tests do not send: slow and stalled ones, browsers on another origin
//! (CORS), and clients written for the Django REST framework endpoint.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::helpers::{TestApp, json, product, spawn_app, spawn_app_with};

/// A connection that sent `head` (and what follows it) and then nothing more.
async fn stalled(app: &TestApp, sent: &str) -> TcpStream {
    let address = app.address.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).await.expect("connect");
    stream.write_all(sent.as_bytes()).await.expect("send");
    stream
}

/// What the server sends on `stream` until it closes it, or `None` if it is still open after
/// `within`.
async fn until_closed(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut received = Vec::new();
    tokio::time::timeout(within, stream.read_to_end(&mut received))
        .await
        .ok()
        .map(|_| String::from_utf8_lossy(&received).into_owned())
}

/// Half a POST: its head promises 200 bytes, 20 arrive.
const HALF_A_BODY: &str = "POST /products HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                           Content-Length: 200\r\n\r\n{\"brand\": \"stalled\",";
/// A POST whose chunked body never ends.
const HALF_A_CHUNKED_BODY: &str = "POST /products HTTP/1.1\r\nHost: x\r\n\
                                   Content-Type: application/json\r\n\
                                   Transfer-Encoding: chunked\r\n\r\n5\r\n{\"bra\r\n";
/// Half a head.
const HALF_A_HEAD: &str = "POST /products HTTP/1.1\r\nHost: x\r\nContent-Le";

#[tokio::test]
async fn a_late_body_is_a_408_problem_and_the_connection_closes() {
    let app = spawn_app_with(|c| c.client_request_timeout_ms = 1000).await;
    let mut stream = stalled(&app, HALF_A_BODY).await;

    let answer = until_closed(&mut stream, Duration::from_secs(5))
        .await
        .expect("the server must close a connection whose body never finishes");

    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(answer.contains("CLIENT_REQUEST_TIMEOUT_MS"), "{answer}");
    assert_eq!(app.count_products("true").await, 0);
}

#[tokio::test]
async fn a_late_chunked_body_is_a_408_and_the_connection_closes() {
    let app = spawn_app_with(|c| c.client_request_timeout_ms = 1000).await;
    let mut stream = stalled(&app, HALF_A_CHUNKED_BODY).await;

    let answer = until_closed(&mut stream, Duration::from_secs(5))
        .await
        .expect("the server must close a connection whose chunked body never finishes");

    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(app.count_products("true").await, 0);
}

#[tokio::test]
async fn an_early_answer_to_an_unfinished_chunked_body_closes_the_connection() {
    let app = spawn_app().await;
    for (case, sent) in [
        (
            "415",
            HALF_A_CHUNKED_BODY.replace("application/json", "text/plain"),
        ),
        ("404", HALF_A_CHUNKED_BODY.replace("/products", "/nowhere")),
        ("405", HALF_A_CHUNKED_BODY.replace("/products", "/healthz")),
    ] {
        let mut stream = stalled(&app, &sent).await;
        let answer = until_closed(&mut stream, Duration::from_secs(4))
            .await
            .unwrap_or_else(|| panic!("{case}: the connection stayed open after the answer"));
        assert!(answer.starts_with(&format!("HTTP/1.1 {case}")), "{answer}");
    }
}

#[tokio::test]
async fn a_late_head_is_a_408_and_the_connection_closes() {
    let app = spawn_app_with(|c| c.client_request_timeout_ms = 1000).await;
    let mut stream = stalled(&app, HALF_A_HEAD).await;

    let answer = until_closed(&mut stream, Duration::from_secs(5))
        .await
        .expect("the server must close a connection whose head never finishes");

    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

#[tokio::test]
async fn a_flood_of_stalled_connections_does_not_delay_well_behaved_requests() {
    let timeout = Duration::from_secs(4);
    let app = spawn_app_with(|c| c.client_request_timeout_ms = 4000).await;
    let flood_started = Instant::now();
    let mut flood = Vec::new();
    for i in 0..200 {
        let sent = [HALF_A_BODY, HALF_A_HEAD, HALF_A_CHUNKED_BODY][i % 3];
        flood.push(stalled(&app, sent).await);
    }

    // Forty ordinary requests, eight at a time, while all 200 are stalled.
    let app = &app;
    for round in 0..5 {
        let requests = (0..8).map(|i| {
            let body = product("Flood", &format!("{round}-{i}"), "M");
            async move { app.post_product(&body).await.status() }
        });
        for status in futures::future::join_all(requests).await {
            assert_eq!(status, 201);
        }
    }
    let served_within = flood_started.elapsed();
    assert!(
        served_within < timeout,
        "the requests waited for the stalled connections' timeout ({served_within:?})"
    );
    // The stalled connections were still open the whole time: nothing was freed for them.
    for stream in &mut flood {
        assert!(until_closed(stream, Duration::ZERO).await.is_none());
    }
    // ...and each is cut off after the timeout.
    for stream in &mut flood {
        let answer = until_closed(stream, timeout + Duration::from_secs(3)).await;
        assert!(answer.is_some_and(|a| a.starts_with("HTTP/1.1 408")));
    }
    assert_eq!(app.count_products("true").await, 40);
}

#[tokio::test]
async fn max_connections_caps_the_connections_served_at_once() {
    let app = spawn_app_with(|c| {
        c.max_connections = 4;
        c.http_workers = Some(1);
        c.client_request_timeout_ms = 2000;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(stalled(&app, HALF_A_HEAD).await);
    }
    // Let the single worker accept all four before the fifth arrives.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();

    let fifth = app.get("/healthz").await;

    assert_eq!(fifth.status(), 200);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1500),
        "the fifth connection was served at once ({waited:?}), over the cap of 4"
    );
}

#[tokio::test]
async fn cors_is_off_unless_origins_are_configured() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/healthz"))
        .header("origin", "https://shop.example")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    assert!(
        !response
            .headers()
            .contains_key("access-control-allow-origin")
    );
}

async fn preflight(app: &TestApp, origin: &str, method: &str) -> reqwest::Response {
    app.client
        .request(Method::OPTIONS, app.url("/products/1"))
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", "content-type, if-match")
        .send()
        .await
        .expect("send")
}

#[tokio::test]
async fn cors_answers_preflights_and_exposes_the_headers_of_the_api_to_allowed_origins() {
    let app = spawn_app_with(|c| {
        c.cors_allowed_origins = vec!["https://shop.example".to_owned()];
    })
    .await;

    let allowed = preflight(&app, "https://shop.example", "PATCH").await;
    assert!(allowed.status().is_success(), "{}", allowed.status());
    let headers = allowed.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://shop.example"
    );
    let methods = headers["access-control-allow-methods"]
        .to_str()
        .expect("ascii");
    assert!(methods.contains("PATCH") && methods.contains("DELETE"));
    let request_headers = headers["access-control-allow-headers"]
        .to_str()
        .expect("ascii")
        .to_lowercase();
    assert!(request_headers.contains("content-type") && request_headers.contains("if-match"));
    assert!(headers.contains_key("access-control-max-age"));

    let created = app
        .client
        .post(app.url("/products"))
        .header("origin", "https://shop.example")
        .json(&product("Cors", "1", "M"))
        .send()
        .await
        .expect("send");
    assert_eq!(created.status(), 201);
    assert_eq!(
        created.headers()["access-control-allow-origin"],
        "https://shop.example"
    );
    let exposed = created.headers()["access-control-expose-headers"]
        .to_str()
        .expect("ascii")
        .to_lowercase();
    for header in [
        "etag",
        "location",
        "retry-after",
        "x-request-id",
        "ratelimit",
        "ratelimit-policy",
        "www-authenticate",
        "idempotent-replayed",
    ] {
        assert!(exposed.contains(header), "{header} not in {exposed}");
    }

    // Another origin: served as if CORS were off, so the browser withholds the answer.
    let other = app
        .client
        .get(app.url("/healthz"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .expect("send");
    assert_eq!(other.status(), 200);
    assert!(!other.headers().contains_key("access-control-allow-origin"));
    let refused = preflight(&app, "https://evil.example", "DELETE").await;
    assert!(
        !refused
            .headers()
            .contains_key("access-control-allow-origin")
    );
}

#[tokio::test]
async fn every_route_answers_with_a_trailing_slash_as_drf_urls_end() {
    let app = spawn_app().await;
    let created = json(app.post_product(&product("Slash", "1", "M")).await).await;
    let item = format!("/products/{}/", created["id"]);

    for path in [
        "/healthz/",
        "/readyz/",
        "/metrics/",
        "/openapi.json/",
        "/products/",
    ] {
        assert_eq!(app.get(path).await.status(), 200, "{path}");
    }
    assert_eq!(app.get(&item).await.status(), 200);
    let patched = app
        .client
        .patch(app.url(&item))
        .json(&json!({"name": "patched"}))
        .send()
        .await
        .expect("send");
    assert_eq!(patched.status(), 200);
    let replaced = app
        .client
        .put(app.url(&item))
        .json(&product("Slash", "1", "M"))
        .send()
        .await
        .expect("send");
    assert_eq!(replaced.status(), 200);
    let deleted = app
        .client
        .delete(app.url(&item))
        .send()
        .await
        .expect("send");
    assert_eq!(deleted.status(), 204);
    assert_eq!(app.count_products("true").await, 0, "the row is gone");
}

#[tokio::test]
async fn form_bodies_are_read_with_the_same_fields_and_checks_as_json() {
    let app = spawn_app().await;
    let form = "application/x-www-form-urlencoded";

    // What `requests.post(url, data={...})` sends.
    let created = app
        .send_raw(
            Method::POST,
            "/products",
            form,
            "brand=Caf%C3%A9&serial=S+1&manufacturer=M&name=N&price=12.50",
        )
        .await;
    assert_eq!(created.status(), 201);
    let created = json(created).await;
    assert_eq!(created["brand"], "Café");
    assert_eq!(created["serial"], "S 1");
    assert_eq!(created["price"], "12.50");

    // What `curl -d '{...}'` sends: JSON, declared as a form.
    let again = app
        .send_raw(
            Method::POST,
            "/products",
            form,
            json!({"brand": "Café", "serial": "S 1", "manufacturer": "M", "name": "N2"})
                .to_string(),
        )
        .await;
    assert_eq!(again.status(), 200, "the same key: an update");
    assert_eq!(json(again).await["name"], "N2");

    let patched = app
        .send_raw(
            Method::PATCH,
            &format!("/products/{}", created["id"]),
            form,
            "description=from+a+form",
        )
        .await;
    assert_eq!(patched.status(), 200);
    assert_eq!(json(patched).await["description"], "from a form");

    for (case, body, field) in [
        ("missing name", "brand=B&serial=S&manufacturer=M", "name"),
        (
            "bad price",
            "brand=B&serial=S&manufacturer=M&name=N&price=x",
            "price",
        ),
        (
            "twice",
            "brand=B&brand=C&serial=S&manufacturer=M&name=N",
            "brand",
        ),
        (
            "unknown",
            "brand=B&serial=S&manufacturer=M&name=N&colour=red",
            "colour",
        ),
        ("NUL", "brand=B%00&serial=S&manufacturer=M&name=N", "brand"),
    ] {
        let response = app.send_raw(Method::POST, "/products", form, body).await;
        assert_eq!(response.status(), 400, "{case}");
        let problem = json(response).await;
        assert!(problem["errors"][field].is_array(), "{case}: {problem}");
    }
    let not_utf8 = app
        .send_raw(
            Method::POST,
            "/products",
            form,
            "brand=%FF&serial=S&manufacturer=M&name=N",
        )
        .await;
    assert_eq!(not_utf8.status(), 400);
    assert_eq!(
        json(not_utf8).await["type"],
        "urn:product-service:problem:malformed-form"
    );
    assert_eq!(app.count_products("true").await, 1, "nothing else written");
}

#[tokio::test]
async fn what_a_get_returned_can_be_sent_back_its_read_only_members_ignored_and_version_checked() {
    let app = spawn_app().await;
    let created = json(app.post_product(&product("Back", "1", "M")).await).await;
    let path = format!("/products/{}", created["id"]);

    let mut changed = created.clone();
    changed["name"] = json!("renamed");
    changed["id"] = json!(999_999);
    changed["created_at"] = json!("not even a time");
    let replaced = app
        .client
        .put(app.url(&path))
        .json(&changed)
        .send()
        .await
        .expect("send");
    assert_eq!(replaced.status(), 200);
    let replaced = json(replaced).await;
    assert_eq!(replaced["name"], "renamed");
    assert_eq!(
        replaced["id"], created["id"],
        "the id in a body changes nothing"
    );
    assert_eq!(replaced["version"], 2);
    assert_eq!(replaced["created_at"], created["created_at"]);

    // Sent back once more, the copy is stale now (version 1): a PUT refuses it, a POST (an
    // upsert by key, where version is read-only) takes it.
    let stale = app
        .client
        .put(app.url(&path))
        .json(&changed)
        .send()
        .await
        .expect("send");
    assert_eq!(stale.status(), 412);
    let upserted = app.post_product(&changed).await;
    assert_eq!(upserted.status(), 200, "POSTing it back is an upsert");
    assert_eq!(app.count_products("true").await, 1);
}

#[tokio::test]
async fn an_empty_filter_is_ignored_as_django_filter_does() {
    let app = spawn_app().await;
    app.post_product(&product("A", "1", "M")).await;
    app.post_product(&product("B", "1", "M")).await;

    let page = json(app.get("/products?brand=&serial=1&manufacturer=%20").await).await;

    assert_eq!(page["items"].as_array().map(Vec::len), Some(2), "{page}");
    // A page size is no filter: an empty one is an error, as the document says it is.
    assert_eq!(app.get("/products?limit=").await.status(), 400);
}

/// The `next` link of a list answered to a request with these headers, from a client that
/// sends them itself.
async fn next_link(app: &TestApp, headers: &[(&str, &str)]) -> String {
    let mut request = app.client.get(app.url("/products?limit=1"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let page: Value = json(request.send().await.expect("send")).await;
    page["next"].as_str().expect("a next page").to_owned()
}

#[tokio::test]
async fn next_is_absolute_and_believes_forwarded_headers_only_from_trusted_proxies() {
    let forwarded = [
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "api.example, internal:8080"),
    ];
    let untrusted = spawn_app().await;
    untrusted.post_product(&product("N", "1", "M")).await;
    untrusted.post_product(&product("N", "2", "M")).await;
    let own = untrusted.url("/products?");
    assert!(next_link(&untrusted, &[]).await.starts_with(&own));
    assert!(
        next_link(&untrusted, &forwarded).await.starts_with(&own),
        "a client that is not a trusted proxy cannot choose the links' host"
    );

    let behind_proxy = spawn_app_with(|c| {
        c.trusted_proxies = vec!["127.0.0.0/8".parse().expect("cidr")];
    })
    .await;
    behind_proxy.post_product(&product("N", "1", "M")).await;
    behind_proxy.post_product(&product("N", "2", "M")).await;
    let next = next_link(&behind_proxy, &forwarded).await;
    assert!(next.starts_with("https://api.example/products?"), "{next}");
    let hostile = next_link(&behind_proxy, &[("x-forwarded-host", "evil.example/x?")]).await;
    assert!(
        hostile.starts_with(&behind_proxy.url("/products?")),
        "{hostile}"
    );
}
