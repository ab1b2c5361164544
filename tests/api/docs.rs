//! The pages for people: `/` links to everything, and `/docs` is Swagger UI on `/openapi.json`,
//! served from files compiled into the binary (nothing fetched from elsewhere).

use crate::helpers::spawn_app;

/// The `content-type` of a response, or "" when it has none.
fn content_type(response: &reqwest::Response) -> String {
    let value = response.headers().get("content-type");
    value.map_or("", |v| v.to_str().expect("ASCII")).to_owned()
}

#[tokio::test]
async fn the_home_page_is_html_that_links_to_the_docs_the_document_and_the_probes() {
    let app = spawn_app().await;

    let response = app.get("/").await;

    assert_eq!(response.status(), 200);
    assert_eq!(content_type(&response), "text/html; charset=utf-8");
    let page = response.text().await.expect("body");
    assert!(
        page.contains("product-service"),
        "names the service: {page}"
    );
    for target in ["/docs", "/openapi.json", "/healthz", "/readyz", "/metrics"] {
        let link = format!("href=\"{target}\"");
        assert!(page.contains(&link), "no link to {target}: {page}");
    }
}

#[tokio::test]
async fn docs_redirects_to_docs_slash_where_swagger_ui_is_served() {
    let app = spawn_app().await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client");

    let redirect = no_redirects
        .get(app.url("/docs"))
        .send()
        .await
        .expect("send");
    let page = app.get("/docs").await;

    assert_eq!(redirect.status(), 308);
    assert_eq!(redirect.headers()["location"], "/docs/");
    assert_eq!(page.url().path(), "/docs/", "followed the redirect");
    assert_eq!(page.status(), 200);
    assert!(content_type(&page).starts_with("text/html"), "{page:?}");
    let html = page.text().await.expect("body");
    for part in [
        "swagger-ui",
        "swagger-ui-bundle.js",
        "swagger-initializer.js",
    ] {
        assert!(html.contains(part), "the page has no {part}: {html}");
    }
}

#[tokio::test]
async fn swagger_ui_reads_the_one_document_at_openapi_json() {
    let app = spawn_app().await;

    let response = app.get("/docs/swagger-initializer.js").await;

    assert_eq!(response.status(), 200);
    assert!(content_type(&response).contains("javascript"));
    let script = response.text().await.expect("body");
    assert!(
        script.contains(r#""url": "/openapi.json""#),
        "the initializer does not point at /openapi.json: {script}"
    );
    assert!(
        !script.contains("petstore"),
        "the demo document is gone: {script}"
    );
    assert!(
        script.contains(r#""validatorUrl": "none""#),
        "the online validator's badge would be fetched from another host: {script}"
    );
}

#[tokio::test]
async fn swagger_ui_files_are_served_from_the_binary_and_unknown_ones_are_a_problem_404() {
    let app = spawn_app().await;

    let bundle = app.get("/docs/swagger-ui-bundle.js").await;
    let css = app.get("/docs/swagger-ui.css").await;
    let missing = app.get("/docs/no-such-file.js").await;

    assert_eq!(bundle.status(), 200);
    assert!(
        content_type(&bundle).contains("javascript"),
        "{}",
        content_type(&bundle)
    );
    let script = bundle.bytes().await.expect("body");
    assert!(
        script.len() > 100_000,
        "the whole bundle: {} bytes",
        script.len()
    );
    assert_eq!(css.status(), 200);
    assert!(content_type(&css).starts_with("text/css"), "{css:?}");
    assert_eq!(missing.status(), 404);
    assert_eq!(content_type(&missing), "application/problem+json");
}
