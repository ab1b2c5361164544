//! GET, PUT, PATCH, DELETE and the list.

use serde_json::{Value, json};

use crate::helpers::{TestApp, json, product, spawn_app};

async fn create(app: &TestApp, body: &Value) -> Value {
    let response = app.post_product(body).await;
    assert_eq!(response.status(), 201);
    json(response).await
}

#[tokio::test]
async fn get_returns_the_stored_product_and_404_for_an_unknown_or_malformed_id() {
    let app = spawn_app().await;
    let created = create(&app, &product("B", "S", "M")).await;

    let found = app.get(&format!("/products/{}", created["id"])).await;
    let missing = app.get("/products/999999").await;
    let malformed = app.get("/products/abc").await;

    assert_eq!(found.status(), 200);
    assert_eq!(json(found).await, created);
    for response in [missing, malformed] {
        assert_eq!(response.status(), 404);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
    }
}

#[tokio::test]
async fn list_filters_by_exact_key_fields_and_pages_by_id() {
    let app = spawn_app().await;
    for serial in ["1", "2", "3", "4", "5"] {
        create(&app, &product("Acme", serial, "M")).await;
    }
    create(&app, &product("Other", "1", "M")).await;
    create(&app, &product("acme", "1", "M")).await;

    // `next` is absolute, built from the request's Host, so a client can follow it as it is.
    let mut next = Some(app.url("/products?brand=Acme&limit=2"));
    let mut serials = Vec::new();
    while let Some(url) = next {
        assert!(url.starts_with(&app.url("/products?")), "{url}");
        let page = json(app.client.get(&url).send().await.expect("send")).await;
        for item in page["items"].as_array().expect("items") {
            assert_eq!(item["brand"], "Acme");
            serials.push(item["serial"].as_str().expect("serial").to_owned());
        }
        next = page["next"].as_str().map(str::to_owned);
    }
    assert_eq!(serials, ["1", "2", "3", "4", "5"]);

    let exact = json(
        app.get("/products?brand=Acme&serial=3&manufacturer=M")
            .await,
    )
    .await;
    assert_eq!(exact["items"].as_array().expect("items").len(), 1);
    assert_eq!(exact["next"], Value::Null);
}

#[tokio::test]
async fn list_rejects_bad_paging_and_unknown_parameters() {
    let app = spawn_app().await;
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=x", "limit"),
        ("after=x", "after"),
        ("brand=%00", "brand"),
        ("serial=A%00B", "serial"),
        ("manufacturer=a%0Ab", "manufacturer"),
    ] {
        let response = app.get(&format!("/products?{query}")).await;
        assert_eq!(response.status(), 400, "{query}");
        assert!(json(response).await["errors"][field].is_array(), "{query}");
    }
    // Unknown, repeated or undecodable parameters: the same problem type and `errors` map as a
    // bad body, every bad parameter named at once.
    let body_problem = json(app.post_product(&json!({})).await).await;
    let unknown = app
        .get("/products?page=2&limit=2&limit=3&serial=%FF&after=x")
        .await;
    assert_eq!(unknown.status(), 400);
    let problem = json(unknown).await;
    assert_eq!(problem["type"], body_problem["type"], "{problem}");
    assert_eq!(problem["title"], body_problem["title"], "{problem}");
    for name in ["page", "limit", "serial", "after"] {
        assert!(problem["errors"][name].is_array(), "{name}: {problem}");
    }
    let long = format!("/products?brand={}", "b".repeat(256));
    assert_eq!(
        app.get(&long).await.status(),
        400,
        "a filter no key can match"
    );
}

#[tokio::test]
async fn put_replaces_every_writable_field_and_resets_omitted_optional_ones() {
    let app = spawn_app().await;
    let created = create(
        &app,
        &json!({"brand": "B", "serial": "S", "manufacturer": "M",
        "name": "N", "description": "d", "price": "3.00"}),
    )
    .await;

    let response = app
        .client
        .put(app.url(&format!("/products/{}", created["id"])))
        .json(&json!({"brand": "B2", "serial": "S", "manufacturer": "M", "name": "N2"}))
        .send()
        .await
        .expect("send");

    assert_eq!(response.status(), 200);
    let body = json(response).await;
    assert_eq!(body["brand"], "B2");
    assert_eq!(body["name"], "N2");
    assert_eq!(body["description"], "");
    assert_eq!(body["price"], "0.00");
    assert_eq!(body["version"], 2);
}

#[tokio::test]
async fn patch_changes_only_the_fields_it_names() {
    let app = spawn_app().await;
    let created = create(
        &app,
        &json!({"brand": "B", "serial": "S", "manufacturer": "M",
        "name": "N", "description": "d", "price": "3.00"}),
    )
    .await;

    let response = app
        .client
        .patch(app.url(&format!("/products/{}", created["id"])))
        .json(&json!({"price": "4.50"}))
        .send()
        .await
        .expect("send");

    assert_eq!(response.status(), 200);
    let body = json(response).await;
    assert_eq!(body["price"], "4.50");
    assert_eq!(body["description"], "d");
    assert_eq!(body["name"], "N");
    assert_eq!(body["version"], 2);
}

#[tokio::test]
async fn moving_a_product_onto_another_products_key_is_a_409_naming_it() {
    let app = spawn_app().await;
    let first = create(&app, &product("B", "1", "M")).await;
    let second = create(&app, &product("B", "2", "M")).await;

    for (method, body) in [
        (reqwest::Method::PATCH, json!({"serial": " 1 "})),
        (reqwest::Method::PUT, product("B", "1", "M")),
    ] {
        let response = app
            .client
            .request(
                method.clone(),
                app.url(&format!("/products/{}", second["id"])),
            )
            .json(&body)
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 409, "{method}");
        let problem = json(response).await;
        assert_eq!(problem["existing_id"], first["id"], "{method}");
    }
    assert_eq!(app.duplicated_keys().await, 0);
    assert_eq!(
        app.count_products("serial = '2'").await,
        1,
        "the refused move changed nothing"
    );
}

#[tokio::test]
async fn a_put_or_patch_to_an_unknown_id_is_404() {
    let app = spawn_app().await;
    for method in [reqwest::Method::PUT, reqwest::Method::PATCH] {
        let response = app
            .client
            .request(method.clone(), app.url("/products/424242"))
            .json(&product("B", "S", "M"))
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 404, "{method}");
    }
    assert_eq!(app.count_products("true").await, 0);
}

#[tokio::test]
async fn delete_removes_the_product_and_a_second_delete_is_404() {
    let app = spawn_app().await;
    let created = create(&app, &product("B", "S", "M")).await;
    let path = format!("/products/{}", created["id"]);

    let first = app
        .client
        .delete(app.url(&path))
        .send()
        .await
        .expect("send");
    let second = app
        .client
        .delete(app.url(&path))
        .send()
        .await
        .expect("send");
    let get = app.get(&path).await;

    assert_eq!(first.status(), 204);
    assert_eq!(second.status(), 404);
    assert_eq!(get.status(), 404);
    assert_eq!(app.count_products("true").await, 0);
}
