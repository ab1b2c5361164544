//! The OpenAPI document: generated from the handlers, it must cover every route and hold
//! together.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::helpers::{json, spawn_app};

/// Every operation with the statuses it documents (HEAD: as GET, without bodies). 401: only
/// with API tokens configured; 429: only with rate limiting on.
const OPERATIONS: &[(&str, &str, &[&str])] = &[
    (
        "post",
        "/products",
        &[
            "200", "201", "400", "401", "405", "408", "409", "412", "413", "415", "422", "429",
            "503",
        ],
    ),
    (
        "get",
        "/products",
        &["200", "400", "401", "405", "429", "503"],
    ),
    (
        "head",
        "/products",
        &["200", "400", "401", "405", "429", "503"],
    ),
    (
        "get",
        "/products/{id}",
        &["200", "304", "400", "401", "404", "405", "429", "503"],
    ),
    (
        "head",
        "/products/{id}",
        &["200", "304", "400", "401", "404", "405", "429", "503"],
    ),
    (
        "post",
        "/products/batch",
        &[
            "200", "400", "401", "405", "408", "409", "413", "415", "422", "429", "503",
        ],
    ),
    (
        "put",
        "/products/{id}",
        &[
            "200", "400", "401", "404", "405", "408", "409", "412", "413", "415", "428", "429",
            "503",
        ],
    ),
    (
        "patch",
        "/products/{id}",
        &[
            "200", "400", "401", "404", "405", "408", "409", "412", "413", "415", "428", "429",
            "503",
        ],
    ),
    (
        "delete",
        "/products/{id}",
        &[
            "204", "400", "401", "404", "405", "412", "428", "429", "503",
        ],
    ),
    ("get", "/healthz", &["200", "405"]),
    ("head", "/healthz", &["200", "405"]),
    ("get", "/readyz", &["200", "405", "503"]),
    ("head", "/readyz", &["200", "405", "503"]),
    ("get", "/metrics", &["200", "405"]),
    ("head", "/metrics", &["200", "405"]),
    ("get", "/openapi.json", &["200", "405", "429"]),
    ("head", "/openapi.json", &["200", "405", "429"]),
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
        for (status, response) in operation["responses"].as_object().expect("responses") {
            assert!(
                response["headers"]["X-Request-Id"].is_object(),
                "{method} {path} {status}: X-Request-Id"
            );
        }
        // API tokens: the 401 says how to authenticate, and the token is optional (`{}`).
        if expected.contains("401") {
            let unauthorized = &operation["responses"]["401"];
            assert!(
                unauthorized["headers"]["WWW-Authenticate"].is_object(),
                "{method} {path}"
            );
            assert_eq!(
                operation["security"],
                serde_json::json!([{}, {"bearerAuth": []}]),
                "{method} {path}"
            );
        }
        // Rate limits: the 429 carries Retry-After, and every answer the RateLimit fields.
        if expected.contains("429") {
            for header in ["Retry-After", "RateLimit", "RateLimit-Policy"] {
                assert!(
                    operation["responses"]["429"]["headers"][header].is_object(),
                    "{method} {path} 429: {header}"
                );
            }
            for (status, response) in operation["responses"].as_object().expect("responses") {
                assert!(
                    response["headers"]["RateLimit"].is_object(),
                    "{method} {path} {status}: RateLimit"
                );
            }
        }
        // The 405 names the methods the server's own 405 and OPTIONS name.
        let allow = operation["responses"]["405"]["headers"]["Allow"]["schema"]["enum"][0]
            .as_str()
            .expect("Allow");
        let concrete = path.replace("{id}", "1");
        let options = app
            .client
            .request(reqwest::Method::OPTIONS, app.url(&concrete))
            .send()
            .await
            .expect("OPTIONS");
        assert_eq!(options.headers()["allow"], allow, "{path}");
    }

    assert_eq!(
        doc["components"]["securitySchemes"]["bearerAuth"],
        serde_json::json!({
            "type": "http",
            "scheme": "bearer",
            "description": doc["components"]["securitySchemes"]["bearerAuth"]["description"],
        })
    );

    // Every schema is named for what it is, not after a Rust type.
    for name in doc["components"]["schemas"]
        .as_object()
        .expect("schemas")
        .keys()
    {
        assert!(
            !["BTreeMap", "HashMap", "Vec", "Option", "String"].contains(&name.as_str()),
            "{name}"
        );
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
    use product_service::domain::{FIELDS, READ_ONLY_FIELDS, REQUIRED_FIELDS};
    let app = spawn_app().await;
    let doc = json(app.get("/openapi.json").await).await;
    let schemas = &doc["components"]["schemas"];
    // Every writable field, and the read-only ones a body may carry back (ignored); nothing else.
    let fields: BTreeSet<String> = FIELDS
        .iter()
        .chain(READ_ONLY_FIELDS.iter())
        .map(|f| (*f).to_owned())
        .collect();
    for request in ["ProductRequest", "ProductPatchRequest"] {
        assert_eq!(property_names(&schemas[request]), fields, "{request}");
        assert_eq!(schemas[request]["additionalProperties"], false, "{request}");
    }
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
    let problem_schema = property_names(&schemas["Problem"]);
    let not_found = json(app.get("/products/0").await).await;
    let bad_batch = app
        .client
        .post(app.url("/products/batch"))
        .json(&serde_json::json!([{"brand": "B"}]))
        .send()
        .await
        .expect("POST /products/batch");
    assert_eq!(bad_batch.status(), 400);
    for problem in [not_found, json(bad_batch).await] {
        for key in problem.as_object().expect("object").keys() {
            assert!(
                problem_schema.contains(key),
                "problem field {key} is not documented"
            );
        }
    }

    // The batch: an array of product requests; each result names the documented members.
    let batch = &schemas["BatchRequest"];
    assert_eq!(batch["type"], "array");
    assert_eq!(
        batch["items"]["$ref"],
        "#/components/schemas/ProductRequest"
    );
    assert_eq!(batch["maxItems"], 1000, "the default BATCH_MAX_ITEMS");
    let results = json(
        app.client
            .post(app.url("/products/batch"))
            .json(&serde_json::json!([crate::helpers::product("O", "2", "M")]))
            .send()
            .await
            .expect("POST /products/batch"),
    )
    .await;
    let result_fields: BTreeSet<String> = results[0]
        .as_object()
        .expect("object")
        .keys()
        .cloned()
        .collect();
    assert_eq!(property_names(&schemas["BatchResult"]), result_fields);
    assert_eq!(
        schemas["BatchOutcome"]["enum"],
        serde_json::json!(["created", "updated"])
    );
}

/// The regular expression of a documented `pattern` (Rust's `regex` reads the `\\uXXXX`
/// escapes and the literal characters the document uses).
fn pattern(schema: &Value) -> regex::Regex {
    regex::Regex::new(schema["pattern"].as_str().expect("a pattern")).expect("a valid regex")
}

/// Whether the parser accepts `value` as `field` of an otherwise valid POST body.
fn parser_accepts(field: &str, value: Value) -> bool {
    use product_service::domain::{BodyFormat, ProductInput};
    let mut body = crate::helpers::product("B", "S", "M");
    body[field] = value;
    match ProductInput::parse(body.to_string().as_bytes(), BodyFormat::Json) {
        Ok(_) => true,
        Err(product_service::domain::InputError::Invalid(errors)) => {
            assert_eq!(errors.keys().collect::<Vec<_>>(), [field], "{body}");
            false
        }
        Err(other) => panic!("{body}: {other}"),
    }
}

/// Texts at the edges of the rules: blank, padded, control, format and combining characters,
/// long ones, decimal-looking ones.
fn edge_texts() -> Vec<String> {
    let mut texts: Vec<String> = [
        "",
        " ",
        "a",
        " a ",
        "\ta\n",
        "a b",
        "a\tb",
        "a\u{0}b",
        "\u{7f}",
        "\u{85}a",
        "a\u{85}",
        "\u{a0}a\u{a0}",
        "\u{3000}",
        "a\u{200b}",
        "\u{feff}a",
        "a\u{202e}b",
        "\u{ad}",
        "a\u{e0001}",
        "Cafe\u{301}",
        "Caf\u{e9}",
        "\u{2028}",
        "1",
        "0.5",
        "1.505",
        "-0",
        "-0.00",
        "-1",
        "1.",
        ".5",
        "1e3",
        "12.34",
        "1.500",
        "0001234567890",
        "12345678901",
        "9999999999.99",
        "+1",
        "1,5",
        " 1",
        "\u{1F600}",
    ]
    .iter()
    .map(|t| (*t).to_owned())
    .collect();
    // What NFC shortens or lengthens: the limit counts what was sent.
    texts.push("e\u{301}".repeat(200));
    texts.push(format!("{}e\u{301}", "a".repeat(254)));
    texts.push("\u{958}".repeat(128));
    texts.push("\u{958}".repeat(255));
    texts.push("\u{1100}\u{1161}".repeat(128));
    for n in [253, 254, 255, 256, 300] {
        texts.push("x".repeat(n));
        texts.push(format!("  {}  ", "x".repeat(n)));
        texts.push(format!("{}\u{200b}", "x".repeat(n)));
    }
    texts
}

#[test]
fn the_documented_field_patterns_accept_exactly_what_the_parser_accepts() {
    let doc = product_service::http::routes::openapi::document();
    let properties = &doc["components"]["schemas"]["ProductRequest"]["properties"];
    for field in ["brand", "serial", "manufacturer", "name"] {
        let schema = &properties[field];
        let regex = pattern(schema);
        let max = schema["maxLength"].as_u64().unwrap_or(u64::MAX);
        let min = schema["minLength"].as_u64().unwrap_or(0);
        for text in edge_texts() {
            let chars = text.chars().count() as u64;
            let documented = regex.is_match(&text) && (min..=max).contains(&chars);
            assert_eq!(
                documented,
                parser_accepts(field, Value::String(text.clone())),
                "{field} = {text:?}"
            );
        }
    }
    let price = &properties["price"]["oneOf"];
    let (as_string, as_number) = (pattern(&price[0]), &price[1]);
    for text in edge_texts() {
        assert_eq!(
            as_string.is_match(&text),
            parser_accepts("price", Value::String(text.clone())),
            "price = {text:?}"
        );
        // The same text as a JSON number, where it is one.
        if let Ok(number) = serde_json::from_str::<serde_json::Number>(&text) {
            let value = number.as_f64().expect("finite");
            let cents = value * 100.0;
            let documented = value >= as_number["minimum"].as_f64().expect("minimum")
                && value <= as_number["maximum"].as_f64().expect("maximum")
                && (cents - cents.round()).abs() < 1e-6;
            assert_eq!(
                documented,
                parser_accepts("price", Value::Number(number)),
                "price = {text} (a number)"
            );
        }
    }
    let description = &properties["description"];
    for text in [
        "",
        "a\nb",
        "\u{0}",
        &"d".repeat(10_000),
        &"d".repeat(10_001),
    ] {
        let documented = pattern(description).is_match(text)
            && text.chars().count() as u64 <= description["maxLength"].as_u64().expect("max");
        assert_eq!(
            documented,
            parser_accepts("description", Value::String(text.to_owned())),
            "description = {text:?}"
        );
    }
}

#[test]
fn the_documented_list_parameters_accept_exactly_what_the_server_accepts() {
    use product_service::domain::ListParams;
    let doc = product_service::http::routes::openapi::document();
    let parameters = doc["paths"]["/products"]["get"]["parameters"]
        .as_array()
        .expect("parameters");
    let schema = |name: &str| {
        parameters
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| p["schema"].clone())
            .expect("documented")
    };
    let accepted = |name: &str, value: &str| {
        let query: String = url_encoded(name, value);
        ListParams::from_query(&query).is_ok()
    };
    let filter = pattern(&schema("brand"));
    for text in edge_texts() {
        assert_eq!(
            filter.is_match(&text),
            accepted("brand", &text),
            "brand = {text:?}"
        );
    }
    let limit = schema("limit");
    for text in ["", "0", "1", "50", "500", "501", "-1", "x", "1.0", " 5"] {
        let documented = text.parse::<i64>().is_ok_and(|n| {
            n >= limit["minimum"].as_i64().expect("minimum")
                && n <= limit["maximum"].as_i64().expect("maximum")
        });
        assert_eq!(documented, accepted("limit", text), "limit = {text:?}");
    }
}

/// `name=value`, percent-encoded.
fn url_encoded(name: &str, value: &str) -> String {
    let mut query = String::from(name);
    query.push('=');
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() {
            query.push(char::from(byte));
        } else {
            query.push_str(&format!("%{byte:02X}"));
        }
    }
    query
}
