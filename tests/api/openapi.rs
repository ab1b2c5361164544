//! The OpenAPI document: generated from the handlers, it must cover every route and hold
//! together.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::helpers::{json, spawn_app};

/// Every route with the statuses it documents.
const OPERATIONS: &[(&str, &str, &[&str])] = &[
    (
        "post",
        "/products",
        &["200", "201", "400", "413", "415", "503"],
    ),
    ("get", "/products", &["200", "400", "503"]),
    ("get", "/products/{id}", &["200", "404", "503"]),
    (
        "put",
        "/products/{id}",
        &["200", "400", "404", "409", "413", "415", "503"],
    ),
    (
        "patch",
        "/products/{id}",
        &["200", "400", "404", "409", "413", "415", "503"],
    ),
    ("delete", "/products/{id}", &["204", "404", "503"]),
    ("get", "/healthz", &["200"]),
    ("get", "/readyz", &["200", "503"]),
    ("get", "/metrics", &["200"]),
    ("get", "/openapi.json", &["200"]),
];

fn refs(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("$ref", Value::String(r)) => found.push(r.clone()),
                    _ => refs(v, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, found)),
        _ => {}
    }
}

fn property_names(schema: &Value) -> BTreeSet<String> {
    schema["properties"]
        .as_object()
        .expect("properties")
        .keys()
        .cloned()
        .collect()
}

#[tokio::test]
async fn the_openapi_document_covers_every_route_and_every_reference_resolves() {
    let app = spawn_app().await;
    let doc = json(app.get("/openapi.json").await).await;

    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().expect("paths");
    let documented: usize = paths
        .values()
        .map(|p| p.as_object().map_or(0, |o| o.len()))
        .sum();
    assert_eq!(
        documented,
        OPERATIONS.len(),
        "every operation, and no other, is documented"
    );
    for (method, path, statuses) in OPERATIONS {
        let operation = &doc["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is not documented");
        let responses: BTreeSet<&str> = operation["responses"]
            .as_object()
            .expect("responses")
            .keys()
            .map(String::as_str)
            .collect();
        let expected: BTreeSet<&str> = statuses.iter().copied().collect();
        assert_eq!(responses, expected, "{method} {path}");
    }

    let mut found = Vec::new();
    refs(&doc, &mut found);
    assert!(!found.is_empty());
    for reference in found {
        let name = reference
            .strip_prefix("#/components/schemas/")
            .expect("a schema reference");
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "{reference} does not resolve"
        );
    }
}

#[tokio::test]
async fn the_documented_bodies_match_what_the_parser_accepts() {
    use product_service::domain::{FIELDS, REQUIRED_FIELDS};
    let app = spawn_app().await;
    let doc = json(app.get("/openapi.json").await).await;
    let schemas = &doc["components"]["schemas"];
    let fields: BTreeSet<String> = FIELDS.iter().map(|f| (*f).to_owned()).collect();

    assert_eq!(property_names(&schemas["ProductRequest"]), fields);
    assert_eq!(property_names(&schemas["ProductPatchRequest"]), fields);
    let required: BTreeSet<String> = schemas["ProductRequest"]["required"]
        .as_array()
        .expect("required")
        .iter()
        .map(|v| v.as_str().expect("name").to_owned())
        .collect();
    let parser_required: BTreeSet<String> =
        REQUIRED_FIELDS.iter().map(|f| (*f).to_owned()).collect();
    assert_eq!(required, parser_required);
    assert!(schemas["ProductPatchRequest"]["required"].is_null());

    let created = json(
        app.post_product(&crate::helpers::product("O", "1", "M"))
            .await,
    )
    .await;
    let body_fields: BTreeSet<String> = created
        .as_object()
        .expect("object")
        .keys()
        .cloned()
        .collect();
    assert_eq!(property_names(&schemas["ProductBody"]), body_fields);
    let problem = json(app.get("/products/0").await).await;
    let problem_schema = property_names(&schemas["Problem"]);
    for key in problem.as_object().expect("object").keys() {
        assert!(
            problem_schema.contains(key),
            "problem field {key} is not documented"
        );
    }
}
