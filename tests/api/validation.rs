//! Bad input: always a problem+json 4xx naming the field, never a 500, never a write.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{json, product, spawn_app};

/// A valid body with `field` replaced by `value` (or removed when `value` is `None`).
fn with(field: &str, value: Option<Value>) -> String {
    let mut body = product("B", "S", "M");
    match value {
        Some(v) => body[field] = v,
        None => {
            body.as_object_mut().expect("object").remove(field);
        }
    }
    body.to_string()
}

#[tokio::test]
async fn every_bad_body_is_a_problem_json_400_naming_the_field_and_writes_nothing() {
    let app = spawn_app().await;
    let long = "x".repeat(256);
    let cases: Vec<(&str, String, &str)> = vec![
        ("missing brand", with("brand", None), "brand"),
        ("missing serial", with("serial", None), "serial"),
        (
            "missing manufacturer",
            with("manufacturer", None),
            "manufacturer",
        ),
        ("missing name", with("name", None), "name"),
        ("null brand", with("brand", Some(Value::Null)), "brand"),
        (
            "null description",
            with("description", Some(Value::Null)),
            "description",
        ),
        ("null price", with("price", Some(Value::Null)), "price"),
        ("number as brand", with("brand", Some(json!(12))), "brand"),
        ("array as name", with("name", Some(json!(["a"]))), "name"),
        (
            "object as description",
            with("description", Some(json!({}))),
            "description",
        ),
        (
            "boolean as price",
            with("price", Some(json!(true))),
            "price",
        ),
        ("blank brand", with("brand", Some(json!("   "))), "brand"),
        ("empty serial", with("serial", Some(json!(""))), "serial"),
        ("blank name", with("name", Some(json!(" \t "))), "name"),
        ("brand over 255", with("brand", Some(json!(long))), "brand"),
        (
            "manufacturer over 255",
            with("manufacturer", Some(json!(long))),
            "manufacturer",
        ),
        ("name over 255", with("name", Some(json!(long))), "name"),
        (
            "description over 10000",
            with("description", Some(json!("d".repeat(10_001)))),
            "description",
        ),
        (
            "NUL inside brand",
            with("brand", Some(json!("a\u{0}b"))),
            "brand",
        ),
        (
            "trailing NUL in serial",
            with("serial", Some(json!("s\u{0}"))),
            "serial",
        ),
        (
            "tab inside manufacturer",
            with("manufacturer", Some(json!("a\tb"))),
            "manufacturer",
        ),
        (
            "DEL inside brand",
            with("brand", Some(json!("a\u{7f}b"))),
            "brand",
        ),
        (
            "C1 control in serial",
            with("serial", Some(json!("a\u{85}b"))),
            "serial",
        ),
        (
            "NUL in description",
            with("description", Some(json!("a\u{0}b"))),
            "description",
        ),
        (
            "negative price",
            with("price", Some(json!("-1.00"))),
            "price",
        ),
        (
            "negative number price",
            with("price", Some(json!(-0.01))),
            "price",
        ),
        (
            "three decimals",
            with("price", Some(json!("1.234"))),
            "price",
        ),
        (
            "three decimals as a number",
            with("price", Some(json!(1.234))),
            "price",
        ),
        (
            "price too large",
            with("price", Some(json!("10000000000"))),
            "price",
        ),
        (
            "price with exponent",
            with("price", Some(json!("1e3"))),
            "price",
        ),
        (
            "price not a number",
            with("price", Some(json!("cheap"))),
            "price",
        ),
        (
            "unknown field",
            with("colour", Some(json!("red"))),
            "colour",
        ),
    ];

    for (case, body, field) in cases {
        let response = app
            .send_raw(Method::POST, "/products", "application/json", body)
            .await;
        assert_eq!(response.status(), 400, "{case}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{case}"
        );
        let problem = json(response).await;
        assert_eq!(problem["status"], 400, "{case}");
        assert!(
            problem["type"].is_string() && problem["title"].is_string(),
            "{case}: {problem}"
        );
        let messages = &problem["errors"][field];
        assert!(
            messages.as_array().is_some_and(|m| !m.is_empty()),
            "{case}: expected errors.{field}, got {problem}"
        );
    }
    assert_eq!(
        app.count_products("true").await,
        0,
        "bad input must write nothing"
    );
}

#[tokio::test]
async fn bodies_that_are_not_json_objects_are_400() {
    let app = spawn_app().await;
    for (case, body) in [
        ("malformed", "{\"brand\": "),
        ("array", "[1, 2]"),
        ("string", "\"x\""),
        ("null", "null"),
        ("empty", ""),
        ("lone surrogate", r#"{"brand": "\ud800"}"#),
    ] {
        let response = app
            .send_raw(Method::POST, "/products", "application/json", body)
            .await;
        assert_eq!(response.status(), 400, "{case}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{case}"
        );
        assert!(json(response).await["detail"].is_string(), "{case}");
    }
    assert_eq!(app.count_products("true").await, 0);
}

#[tokio::test]
async fn a_body_that_is_not_declared_json_or_a_form_is_415() {
    let app = spawn_app().await;
    let body = product("B", "S", "M").to_string();
    for content_type in ["text/plain", "multipart/form-data", "application/xml"] {
        let response = app
            .send_raw(Method::POST, "/products", content_type, body.clone())
            .await;
        assert_eq!(response.status(), 415, "{content_type}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
    }
    let accepted = app
        .send_raw(
            Method::POST,
            "/products",
            "application/json; charset=utf-8",
            body,
        )
        .await;
    assert_eq!(accepted.status(), 201);
}

#[tokio::test]
async fn a_body_over_max_body_bytes_is_413() {
    let app = crate::helpers::spawn_app_with(|c| c.max_body_bytes = 1024).await;
    let body = with("description", Some(json!("d".repeat(2000))));

    let response = app
        .send_raw(Method::POST, "/products", "application/json", body)
        .await;

    assert_eq!(response.status(), 413);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    assert_eq!(app.count_products("true").await, 0);
}

#[tokio::test]
async fn a_bad_body_to_an_unknown_id_is_400_because_the_body_is_checked_first() {
    let app = spawn_app().await;
    let ids = ["4242", "abc", "99999999999999999999"];
    for (method, id) in [Method::PUT, Method::PATCH]
        .into_iter()
        .flat_map(|method| ids.map(|id| (method.clone(), id)))
    {
        let body = with("price", Some(json!("-5")));
        let path = format!("/products/{id}");
        let response = app
            .send_raw(method.clone(), &path, "application/json", body)
            .await;
        assert_eq!(response.status(), 400, "{method} {path}");
    }
}

#[tokio::test]
async fn a_member_sent_twice_is_a_400_naming_it_and_writes_nothing() {
    let app = spawn_app().await;
    let created = json(app.post_product(&product("Twice", "1", "M")).await).await;
    let path = format!("/products/{}", created["id"]);
    let cases = [
        (
            Method::POST,
            "/products",
            r#"{"brand":"Twice","serial":"2","manufacturer":"M","name":"n","brand":"Other"}"#,
            "brand",
        ),
        (
            Method::PUT,
            path.as_str(),
            r#"{"brand":"Twice","serial":"1","manufacturer":"M","name":"n","name":"m"}"#,
            "name",
        ),
        (
            Method::PATCH,
            path.as_str(),
            r#"{"price":"1.00","price":"2.00"}"#,
            "price",
        ),
    ];
    for (method, path, body, member) in cases {
        let response = app
            .send_raw(method.clone(), path, "application/json", body)
            .await;

        assert_eq!(response.status(), 400, "{method} {body}");
        let problem = json(response).await;
        assert_eq!(
            problem["errors"][member][0], "appears more than once",
            "{method}: {problem}"
        );
    }
    assert_eq!(app.count_products("true").await, 1, "nothing was written");
    let unchanged = json(app.get(&path).await).await;
    assert_eq!(unchanged["version"], 1);
    assert_eq!(unchanged["price"], "0.00");
}

#[tokio::test]
async fn patch_validates_the_fields_it_names_and_refuses_null() {
    let app = spawn_app().await;
    let created = json(app.post_product(&product("B", "S", "M")).await).await;
    let path = format!("/products/{}", created["id"]);
    for (case, body, field) in [
        ("null name", json!({"name": null}), "name"),
        ("blank brand", json!({"brand": " "}), "brand"),
        ("unknown", json!({"size": 1}), "size"),
    ] {
        let response = app
            .send_raw(Method::PATCH, &path, "application/json", body.to_string())
            .await;
        assert_eq!(response.status(), 400, "{case}");
        assert!(json(response).await["errors"][field].is_array(), "{case}");
    }
    let unchanged = json(app.get(&path).await).await;
    assert_eq!(unchanged, created);
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405_as_problem_json() {
    let app = spawn_app().await;
    let not_found = app.get("/nothing/here").await;
    let wrong_method = app
        .client
        .put(app.url("/products"))
        .send()
        .await
        .expect("send");
    let wrong_method_on_item = app
        .client
        .post(app.url("/products/1"))
        .send()
        .await
        .expect("send");

    assert_eq!(not_found.status(), 404);
    assert_eq!(
        not_found.headers()["content-type"],
        "application/problem+json"
    );
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(wrong_method.headers()["allow"], "GET, HEAD, POST, OPTIONS");
    assert_eq!(
        wrong_method.headers()["content-type"],
        "application/problem+json"
    );
    assert_eq!(wrong_method_on_item.status(), 405);
}

#[tokio::test]
async fn every_get_route_answers_head_every_route_options_and_other_methods_405() {
    let app = spawn_app().await;
    let created = json(app.post_product(&product("Head", "1", "M")).await).await;
    let item = format!("/products/{}", created["id"]);
    let routes = [
        ("/products", "GET, HEAD, POST, OPTIONS"),
        ("/products/", "GET, HEAD, POST, OPTIONS"),
        (item.as_str(), "GET, HEAD, PUT, PATCH, DELETE, OPTIONS"),
        ("/healthz", "GET, HEAD, OPTIONS"),
        ("/readyz", "GET, HEAD, OPTIONS"),
        ("/metrics", "GET, HEAD, OPTIONS"),
        ("/openapi.json", "GET, HEAD, OPTIONS"),
        ("/", "GET, HEAD, OPTIONS"),
        ("/docs", "GET, HEAD, OPTIONS"),
        ("/docs/", "GET, HEAD, OPTIONS"),
        ("/docs/swagger-ui-bundle.js", "GET, HEAD, OPTIONS"),
    ];
    for (path, allow) in routes {
        let get = app.get(path).await;
        let head = app.client.head(app.url(path)).send().await.expect("send");
        assert_eq!(head.status(), get.status(), "HEAD {path}");
        assert_eq!(
            head.headers().get("content-type"),
            get.headers().get("content-type"),
            "HEAD {path}"
        );
        assert!(
            head.bytes().await.expect("body").is_empty(),
            "HEAD {path} has no body"
        );

        let options = app
            .client
            .request(Method::OPTIONS, app.url(path))
            .send()
            .await
            .expect("send");
        assert_eq!(options.status(), 204, "OPTIONS {path}");
        assert_eq!(options.headers()["allow"], allow, "OPTIONS {path}");

        let trace = app
            .client
            .request(Method::TRACE, app.url(path))
            .send()
            .await
            .expect("send");
        assert_eq!(trace.status(), 405, "TRACE {path}");
        assert_eq!(trace.headers()["allow"], allow, "TRACE {path}");
        assert_eq!(trace.headers()["content-type"], "application/problem+json");
    }
}

#[tokio::test]
async fn a_lone_surrogate_is_malformed_json_and_many_bad_members_make_a_bounded_answer() {
    let app = spawn_app().await;
    let lone = app
        .send_raw(
            Method::POST,
            "/products",
            "application/json",
            r#"{"brand": "\ud800", "serial": "S", "manufacturer": "M", "name": "N"}"#,
        )
        .await;
    assert_eq!(lone.status(), 400);
    assert_eq!(
        json(lone).await["type"],
        "urn:product-service:problem:malformed-json"
    );

    let mut body = product("B", "S", "M");
    for i in 0..2000 {
        body[format!("m{i:04}")] = json!(1);
    }
    let body = body.to_string();
    let sent = body.len();
    let response = app
        .send_raw(Method::POST, "/products", "application/json", body)
        .await;
    assert_eq!(response.status(), 400);
    let answer = response.bytes().await.expect("body");
    assert!(answer.len() < sent * 2, "{} bytes for {sent}", answer.len());
    let problem: Value = serde_json::from_slice(&answer).expect("json");
    assert_eq!(problem["errors"].as_object().map(|e| e.len()), Some(50));
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.ends_with("and 1990 more")),
        "{problem}"
    );
    assert_eq!(app.count_products("true").await, 0);
}

/// Three key fields of 255 characters each fit the key index when every character takes up to 3
/// bytes; 4-byte characters would not (a B-tree entry holds at most 2,704 bytes: SQLSTATE 54000,
/// a 500 before this check). Key fields over 2,600 bytes together are a 400 naming them, on every
/// write path, and nothing is written.
#[tokio::test]
async fn key_fields_over_the_key_index_limit_are_400_on_every_write_path() {
    let app = spawn_app().await;
    let wide = "中".repeat(255); // 765 bytes
    let fits = json!({"brand": wide, "serial": wide, "manufacturer": wide, "name": "n"});
    assert_eq!(app.post_product(&fits).await.status(), 201);

    // 1,020 bytes of characters that do not repeat (a repeated one would compress to fit).
    let huge: String = (0..255u32)
        .map(|i| char::from_u32(0x20000 + (i * 7919) % 0xA6DF).expect("CJK Extension B"))
        .collect();
    let too_big = json!({"brand": huge, "serial": huge, "manufacturer": huge, "name": "n"});
    let answers = [
        app.post_product(&too_big).await,
        app.send_raw(
            Method::POST,
            "/products/batch",
            "application/json",
            json!([too_big]).to_string(),
        )
        .await,
        app.send_raw(
            Method::PUT,
            "/products/1",
            "application/json",
            too_big.to_string(),
        )
        .await,
        app.send_raw(
            Method::PATCH,
            "/products/1",
            "application/json",
            json!({"brand": huge, "serial": huge, "manufacturer": huge}).to_string(),
        )
        .await,
    ];
    for answer in answers {
        assert_eq!(answer.status(), 400);
        let body = json(answer).await;
        let errors = body["errors"].to_string();
        assert!(
            errors.contains("serial") && errors.contains("2600 bytes"),
            "{body}"
        );
    }
    assert_eq!(app.count_products("true").await, 1, "nothing written");

    // A PATCH of one field is checked alone; beside large stored fields it passes the index's
    // limit in the database (SQLSTATE 54000), which is a 400 naming the key fields too.
    let other: String = (0..255u32)
        .map(|i| char::from_u32(0x20001 + (i * 6007) % 0xA6DF).expect("CJK Extension B"))
        .collect();
    let large = json!({"brand": huge, "serial": "S", "manufacturer": other, "name": "n"});
    let created = json(app.post_product(&large).await).await;
    let patched = app
        .send_raw(
            Method::PATCH,
            &format!("/products/{}", created["id"]),
            "application/json",
            json!({ "serial": huge }).to_string(),
        )
        .await;
    assert_eq!(patched.status(), 400);
    let body = json(patched).await;
    assert!(
        body["errors"]["serial"].to_string().contains("2600 bytes"),
        "{body}"
    );
    let stored = json(app.get(&format!("/products/{}", created["id"])).await).await;
    assert_eq!(stored["serial"], "S", "nothing written");

    // Between the service's limit and the index's (2,620 bytes here): the database would take
    // it (a 200 before), and then no POST could name the key; it is a 400 too.
    let clef = "\u{1D11E}"; // 4 bytes in UTF-8
    let beside = json!({"brand": clef.repeat(200), "serial": clef.repeat(200),
        "manufacturer": "z", "name": "n"});
    let created = json(app.post_product(&beside).await).await;
    let patched = app
        .send_raw(
            Method::PATCH,
            &format!("/products/{}", created["id"]),
            "application/json",
            json!({ "manufacturer": clef.repeat(255) }).to_string(),
        )
        .await;
    assert_eq!(patched.status(), 400);
    let body = json(patched).await;
    assert!(
        body["errors"]["manufacturer"]
            .to_string()
            .contains("2600 bytes"),
        "{body}"
    );
    let stored = json(app.get(&format!("/products/{}", created["id"])).await).await;
    assert_eq!(stored["manufacturer"], "z", "nothing written");
}
