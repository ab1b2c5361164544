//! Optimistic concurrency (RFC 9110, section 13): `ETag`, `If-Match`, `If-None-Match`, a
//! `version` member, 304, 412 and 428, against real PostgreSQL.

use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::helpers::{TestApp, json, product, scrape, spawn_app, spawn_app_with, value};

/// Sends `method path` with `body` (if any) and `headers`.
async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> Response {
    let mut request = app.client.request(method, app.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    request.send().await.expect("send")
}

fn etag(response: &Response) -> String {
    response.headers()["etag"]
        .to_str()
        .expect("ascii")
        .to_owned()
}

/// Creates a product; its path, ETag and body.
async fn create(app: &TestApp, serial: &str) -> (String, String, Value) {
    let response = app.post_product(&product("Pre", serial, "M")).await;
    assert_eq!(response.status(), 201);
    let tag = etag(&response);
    let body = json(response).await;
    (format!("/products/{}", body["id"]), tag, body)
}

#[tokio::test]
async fn every_product_answer_carries_its_etag_and_a_current_one_gets_304() {
    let app = spawn_app().await;
    let (path, tag, body) = create(&app, "1").await;
    assert_eq!(tag, format!("\"{}.1\"", body["id"]));

    let read = app.get(&path).await;
    assert_eq!(etag(&read), tag);
    let cached = send(&app, Method::GET, &path, &[("if-none-match", &tag)], None).await;
    assert_eq!(cached.status(), 304);
    assert_eq!(etag(&cached), tag);
    let weak = format!("W/{tag}");
    let weakly = send(&app, Method::GET, &path, &[("if-none-match", &weak)], None).await;
    assert_eq!(weakly.status(), 304, "If-None-Match compares weakly");

    let patched = send(
        &app,
        Method::PATCH,
        &path,
        &[],
        Some(&json!({"name": "changed"})),
    )
    .await;
    let new_tag = etag(&patched);
    assert_ne!(new_tag, tag);
    let stale = send(&app, Method::GET, &path, &[("if-none-match", &tag)], None).await;
    assert_eq!(stale.status(), 200, "a stale copy gets the product again");
    assert_eq!(etag(&stale), new_tag);
}

#[tokio::test]
async fn a_stale_if_match_is_a_412_with_the_current_etag_and_nothing_written() {
    let app = spawn_app().await;
    let (path, first, _) = create(&app, "1").await;
    let current = etag(
        &send(
            &app,
            Method::PATCH,
            &path,
            &[],
            Some(&json!({"name": "v2"})),
        )
        .await,
    );

    for (method, body) in [
        (Method::PUT, Some(product("Pre", "1", "M"))),
        (Method::PATCH, Some(json!({"name": "lost update"}))),
        (Method::DELETE, None),
    ] {
        let refused = send(
            &app,
            method.clone(),
            &path,
            &[("if-match", &first)],
            body.as_ref(),
        )
        .await;
        assert_eq!(refused.status(), 412, "{method}");
        assert_eq!(etag(&refused), current, "{method}: the current tag");
        assert_eq!(
            refused.headers()["content-type"],
            "application/problem+json"
        );
    }
    let unchanged = json(app.get(&path).await).await;
    assert_eq!(unchanged["name"], "v2");
    assert_eq!(unchanged["version"], 2);

    let weak = format!("W/{current}");
    let weakly = send(
        &app,
        Method::PATCH,
        &path,
        &[("if-match", &weak)],
        Some(&json!({})),
    )
    .await;
    assert_eq!(
        weakly.status(),
        412,
        "If-Match compares strongly: a weak tag never matches"
    );

    let listed = format!("\"0.0\", {current}");
    let applied = send(
        &app,
        Method::PATCH,
        &path,
        &[("if-match", &listed)],
        Some(&json!({"name": "v3"})),
    )
    .await;
    assert_eq!(applied.status(), 200);
    let deleted = send(
        &app,
        Method::DELETE,
        &path,
        &[("if-match", &etag(&applied))],
        None,
    )
    .await;
    assert_eq!(deleted.status(), 204);
    assert!(value(&scrape(&app).await, "precondition_failed_total", &[]) >= 4.0);
}

#[tokio::test]
async fn a_version_member_in_a_put_or_patch_is_the_same_precondition() {
    let app = spawn_app().await;
    let (path, _, created) = create(&app, "1").await;

    let mut stale = created.clone();
    stale["name"] = json!("from an old copy");
    let patched = send(
        &app,
        Method::PATCH,
        &path,
        &[],
        Some(&json!({"price": "1.00"})),
    )
    .await;
    assert_eq!(patched.status(), 200);

    let refused = send(&app, Method::PUT, &path, &[], Some(&stale)).await;
    assert_eq!(refused.status(), 412, "version 1 is not the current 2");
    let refused = send(
        &app,
        Method::PATCH,
        &path,
        &[],
        Some(&json!({"name": "x", "version": 1})),
    )
    .await;
    assert_eq!(refused.status(), 412);
    assert_eq!(json(app.get(&path).await).await["price"], "1.00");

    let current = send(
        &app,
        Method::PATCH,
        &path,
        &[],
        Some(&json!({"name": "x", "version": 2})),
    )
    .await;
    assert_eq!(current.status(), 200);
    assert_eq!(json(current).await["version"], 3);

    let mut posted_back = created;
    posted_back["version"] = json!(99);
    let upserted = app.post_product(&posted_back).await;
    assert_eq!(
        upserted.status(),
        200,
        "a POST takes version as read-only data"
    );

    let bad = send(
        &app,
        Method::PATCH,
        &path,
        &[],
        Some(&json!({"version": "two"})),
    )
    .await;
    assert_eq!(bad.status(), 400);
    assert!(json(bad).await["errors"]["version"].is_array());
}

#[tokio::test]
async fn if_none_match_star_on_a_post_creates_only_and_if_match_updates_only() {
    let app = spawn_app().await;
    let body = product("Pre", "only", "M");
    let create_only = [("if-none-match", "*")];

    let created = send(&app, Method::POST, "/products", &create_only, Some(&body)).await;
    assert_eq!(created.status(), 201);
    let tag = etag(&created);
    let again = send(&app, Method::POST, "/products", &create_only, Some(&body)).await;
    assert_eq!(again.status(), 412, "the key exists");
    assert_eq!(etag(&again), tag);

    let matching = send(
        &app,
        Method::POST,
        "/products",
        &[("if-match", &tag)],
        Some(&body),
    )
    .await;
    assert_eq!(matching.status(), 200);
    let stale = send(
        &app,
        Method::POST,
        "/products",
        &[("if-match", &tag)],
        Some(&body),
    )
    .await;
    assert_eq!(stale.status(), 412);

    let absent = product("Pre", "absent", "M");
    let update_only = send(
        &app,
        Method::POST,
        "/products",
        &[("if-match", "*")],
        Some(&absent),
    )
    .await;
    assert_eq!(update_only.status(), 412, "If-Match with no product fails");
    assert_eq!(app.count_products("serial = 'absent'").await, 0);
    assert_eq!(app.count_products("true").await, 1);
}

#[tokio::test]
async fn require_if_match_makes_unconditional_writes_a_428() {
    let app = spawn_app_with(|c| c.require_if_match = true).await;
    let (path, tag, _) = create(&app, "1").await;

    for (method, body) in [
        (Method::PUT, Some(product("Pre", "1", "M"))),
        (Method::PATCH, Some(json!({"name": "n"}))),
        (Method::DELETE, None),
    ] {
        let refused = send(&app, method.clone(), &path, &[], body.as_ref()).await;
        assert_eq!(refused.status(), 428, "{method}");
    }
    let by_version = send(
        &app,
        Method::PATCH,
        &path,
        &[],
        Some(&json!({"name": "n", "version": 1})),
    )
    .await;
    assert_eq!(
        by_version.status(),
        200,
        "a version member names the version"
    );
    let by_header = send(
        &app,
        Method::DELETE,
        &path,
        &[("if-match", &etag(&by_version))],
        None,
    )
    .await;
    assert_eq!(by_header.status(), 204);
    assert_ne!(tag, "");
}

#[tokio::test]
async fn a_malformed_conditional_header_is_a_400_naming_it() {
    let app = spawn_app().await;
    let (path, _, _) = create(&app, "1").await;
    let response = send(
        &app,
        Method::PATCH,
        &path,
        &[("if-match", "not a tag")],
        Some(&json!({"name": "x"})),
    )
    .await;
    assert_eq!(response.status(), 400);
    assert!(json(response).await["errors"]["If-Match"].is_array());
}

#[tokio::test]
async fn concurrent_writers_with_one_if_match_make_exactly_one_change() {
    let app = spawn_app().await;
    let other = app.another_instance(|_| {}).await;
    let (path, tag, _) = create(&app, "race").await;

    let writers = (0..16).map(|i| {
        let url = if i % 2 == 0 {
            app.url(&path)
        } else {
            format!("{}{path}", other.address)
        };
        let client = app.client.clone();
        let tag = tag.clone();
        async move {
            client
                .patch(url)
                .header("if-match", tag)
                .json(&json!({"name": format!("writer {i}")}))
                .send()
                .await
                .expect("send")
                .status()
                .as_u16()
        }
    });
    let statuses = futures::future::join_all(writers).await;

    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 412).count(),
        15,
        "{statuses:?}"
    );
    assert_eq!(json(app.get(&path).await).await["version"], 2);
}

#[tokio::test]
async fn edges_a_star_names_no_version_a_missing_product_fails_if_match_and_json_versions_are_numbers()
 {
    let strict = spawn_app_with(|c| c.require_if_match = true).await;
    let (path, _, _) = create(&strict, "1").await;
    let star = send(
        &strict,
        Method::PATCH,
        &path,
        &[("if-match", "*")],
        Some(&json!({"name": "n"})),
    )
    .await;
    assert_eq!(star.status(), 428, "* says only that the product exists");

    let app = spawn_app().await;
    for method in [Method::PATCH, Method::DELETE] {
        let missing = send(
            &app,
            method.clone(),
            "/products/999999",
            &[("if-match", "*")],
            Some(&json!({"name": "n"})),
        )
        .await;
        assert_eq!(
            missing.status(),
            412,
            "{method}: If-Match on nothing is false"
        );
    }
    let plain = send(&app, Method::DELETE, "/products/999999", &[], None).await;
    assert_eq!(plain.status(), 404);

    let (path, _, _) = create(&app, "2").await;
    let text = send(
        &app,
        Method::PATCH,
        &path,
        &[],
        Some(&json!({"version": "1"})),
    )
    .await;
    assert_eq!(text.status(), 400, "in JSON a version is a number");
}
