//! What the OpenAPI document says of bodies and error responses: the types `#[utoipa::path]`
//! annotations name, and [`complete`], which writes into the generated document what the
//! annotations cannot say: the request bodies' and the list parameters' exact JSON Schemas,
//! generated from the domain's own rules (its character predicates and limits), the HEAD
//! operations, the 405 and 408 answers, `X-Request-Id` on every answer, the 401 and optional
//! `bearerAuth` of the operations on `/products` (API tokens), the 429 and the `RateLimit`
//! fields of every rate-limited operation, and the links between operations (OpenAPI 3.1,
//! section 4.8.20). OPTIONS, which every path answers (204 with
//! `Allow`, the same list as a 405's), is HTTP's, not the API's, and is left out as an operation:
//! it answers for the path whatever the id, which a client reading it as an operation on the
//! product would misread. The product and page types are descriptions only
//! (the domain serialises the real ones); tests keep each equal to what the server does.

use serde_json::{Map, Value, json};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{Object, Schema};
use utoipa::{IntoResponses, PartialSchema, ToSchema};

use crate::domain::input::{
    FIELDS, MAX_DESCRIPTION_CHARS, MAX_KEY_BYTES, MAX_KEY_CHARS, READ_ONLY_FIELDS, REQUIRED_FIELDS,
    VERSION_FIELD,
};
use crate::domain::key::refused_in_key;
use crate::domain::list::{DEFAULT_LIMIT, MAX_LIMIT};
use crate::http::problem::{MAX_ERRORS, Problem};

/// The body of `POST /products` and `PUT /products/{id}`. Its schema is written by
/// [`complete`] from the domain's rules ([`request_schema`]); this type only names it.
pub struct ProductRequest;

/// The body of `PATCH /products/{id}`: any of the fields, none required. Its schema is written
/// by [`complete`], as [`ProductRequest`]'s.
pub struct ProductPatchRequest;

impl PartialSchema for ProductRequest {
    fn schema() -> RefOr<Schema> {
        RefOr::T(Schema::Object(Object::new()))
    }
}

impl ToSchema for ProductRequest {}

impl PartialSchema for ProductPatchRequest {
    fn schema() -> RefOr<Schema> {
        RefOr::T(Schema::Object(Object::new()))
    }
}

impl ToSchema for ProductPatchRequest {}

/// The body of `POST /products/batch`: an array of [`ProductRequest`]s, at most
/// `BATCH_MAX_ITEMS` (its default in the document). Its schema is written by [`complete`].
pub struct BatchRequest;

impl PartialSchema for BatchRequest {
    fn schema() -> RefOr<Schema> {
        RefOr::T(Schema::Object(Object::new()))
    }
}

impl ToSchema for BatchRequest {}

/// The default of `BATCH_MAX_ITEMS`, the `maxItems` of [`BatchRequest`] in the document.
pub const DEFAULT_BATCH_MAX_ITEMS: u64 = 1000;

/// What a batch did to one of its items.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum BatchOutcome {
    /// The item's key had no product: it was created.
    Created,
    /// The item's key had a product (or an earlier item of the batch created it): it was
    /// updated.
    Updated,
}

/// One item's result in the answer of `POST /products/batch`.
#[derive(ToSchema)]
#[expect(dead_code, reason = "describes the body for OpenAPI; never built")]
pub struct BatchResult {
    /// The item's index in the request's array (0-based).
    #[schema(minimum = 0)]
    index: u32,
    outcome: BatchOutcome,
    /// The product as stored after this item was applied.
    product: ProductBody,
}

/// A product: `price` as a decimal string, times in RFC 3339.
#[derive(ToSchema)]
#[expect(dead_code, reason = "describes the body for OpenAPI; never built")]
pub struct ProductBody {
    id: i64,
    brand: String,
    serial: String,
    manufacturer: String,
    name: String,
    description: String,
    /// Decimal string with two places.
    #[schema(example = "12.34")]
    price: String,
    /// 1 on creation, +1 on every update.
    version: i64,
    created_at: chrono::DateTime<chrono::Utc>,
    updated_at: chrono::DateTime<chrono::Utc>,
}

/// One page of `GET /products`.
#[derive(ToSchema)]
#[expect(dead_code, reason = "describes the body for OpenAPI; never built")]
pub struct Page {
    items: Vec<ProductBody>,
    /// The URL of the next page, `null` on the last.
    next: Option<String>,
}

/// Declares a problem+json error response for `responses(...)` of `#[utoipa::path]`:
/// `Name = status, "description"`, with `retry` for a 503 that sends `Retry-After`.
macro_rules! problem_response {
    ($name:ident = $status:literal, $description:literal) => {
        #[doc = $description]
        #[derive(IntoResponses)]
        #[response(status = $status, content_type = "application/problem+json")]
        pub struct $name(pub Problem);
    };
    ($name:ident = $status:literal, $description:literal, retry) => {
        #[doc = $description]
        #[derive(IntoResponses)]
        #[response(
                    status = $status,
                    content_type = "application/problem+json",
                    headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))
                )]
        pub struct $name(pub Problem);
    };
}

problem_response!(InvalidBody = 400, "Invalid body: `errors` names each field");
problem_response!(InvalidQuery = 400, "Bad query parameter: `errors` names it");
problem_response!(NotFound = 404, "No product with this id");
problem_response!(
    KeyConflict = 409,
    "Another product holds the new key: `existing_id`; or (type \
     urn:product-service:problem:version-exhausted) the product's version is at 2^63-1, set \
     outside the service, and cannot be raised; nothing written"
);
problem_response!(
    InvalidBatch = 400,
    "Invalid batch, nothing written: `invalid_items` lists the bad items by index and `errors` \
     names each problem as `<index>.<field>` (`<index>` alone: not a JSON object); or the body \
     is not a JSON array (or not JSON), or has more than BATCH_MAX_ITEMS items (`detail` says)"
);
problem_response!(TooLarge = 413, "Body over MAX_BODY_BYTES");
problem_response!(BatchTooLarge = 413, "Body over BATCH_MAX_BODY_BYTES");
problem_response!(NotJson = 415, "Body not declared application/json");
problem_response!(
    NotJsonOnly = 415,
    "Body not declared application/json (a form cannot carry a batch)"
);
problem_response!(
    Unavailable = 503,
    "Lock, pool or database not available in time; nothing written",
    retry
);
problem_response!(NotReady = 503, "Not ready; `detail` says why", retry);

/// A regular-expression character class body (without the brackets) of every character for
/// which `matches` holds, as ranges: BMP characters as `\uXXXX` escapes, others as themselves
/// (Python's `re`, which schemathesis uses, and ECMA-262 with the `u` flag read both).
fn character_class(matches: impl Fn(char) -> bool) -> String {
    let escape = |c: char| match u32::from(c) {
        code @ 0..=0xFFFF => format!("\\u{code:04X}"),
        _ => c.to_string(),
    };
    let mut class = String::new();
    let mut chars = (0..=u32::from(char::MAX))
        .filter_map(char::from_u32)
        .peekable();
    while let Some(first) = chars.next() {
        if !matches(first) {
            continue;
        }
        let mut last = first;
        while let Some(&next) = chars.peek() {
            if u32::from(next) != u32::from(last) + 1 || !matches(next) {
                break;
            }
            last = next;
            chars.next();
        }
        class.push_str(&escape(first));
        if last != first {
            class.push('-');
            class.push_str(&escape(last));
        }
    }
    class
}

/// The character classes the patterns are made of.
struct Classes {
    /// White space, as `str::trim` removes it (Unicode `White_Space`).
    space: String,
    /// What a key field refuses: control (Cc) and invisible format (Cf) characters.
    refused_in_key: String,
    /// What a name refuses: control characters.
    control: String,
}

impl Classes {
    fn new() -> Self {
        Self {
            space: character_class(char::is_whitespace),
            refused_in_key: character_class(refused_in_key),
            control: character_class(char::is_control),
        }
    }

    /// A key field: trimmed, then 1 to 255 characters (as sent) with no refused character.
    fn key_field(&self) -> String {
        let (w, x, inner) = (&self.space, &self.refused_in_key, MAX_KEY_CHARS - 2);
        format!("^[{w}]*[^{x}{w}](?:[^{x}]{{0,{inner}}}[^{x}{w}])?[{w}]*$")
    }

    /// A key filter: as a key field, or blank (then ignored).
    fn key_filter(&self) -> String {
        let (w, x, inner) = (&self.space, &self.refused_in_key, MAX_KEY_CHARS - 2);
        format!("^[{w}]*(?:[^{x}{w}](?:[^{x}]{{0,{inner}}}[^{x}{w}])?)?[{w}]*$")
    }

    /// A name: not blank, no control character (stored as sent).
    fn name(&self) -> String {
        let (w, c) = (&self.space, &self.control);
        format!("^[^{c}]*[^{c}{w}][^{c}]*$")
    }
}

/// A price as a string: digits without exponent, at most 10 significant before the point and 2
/// after it (zeros beyond are allowed, never rounded), not negative (a negative zero is zero).
const PRICE_PATTERN: &str = r"^(?:-0+(?:\.0+)?|0*[0-9]{1,10}(?:\.[0-9]{1,2}0*)?)$";
/// The largest price.
const MAX_PRICE: f64 = 9_999_999_999.99;

/// The JSON Schema (draft 2020-12, as OpenAPI 3.1 uses) of a product request body: every member
/// `domain::FIELDS` names, `required` ones as `domain::REQUIRED_FIELDS` says when `full` (POST,
/// PUT; none for PATCH), the read-only members accepted and ignored, nothing else.
pub fn request_schema(full: bool) -> Value {
    let classes = Classes::new();
    let key = |what: &str| {
        json!({
            "type": "string",
            "pattern": classes.key_field(),
            "description": format!("The {what}: 1 to {MAX_KEY_CHARS} characters once trimmed; \
                no control or invisible format (Cf) characters. Stored trimmed and NFC-normalised \
                (UAX #15). Part of the key: brand, serial and manufacturer together take at most \
                {MAX_KEY_BYTES} bytes in UTF-8 once normalised (the key index's limit; three \
                fields of 255 characters of the Basic Multilingual Plane always fit)."),
        })
    };
    let mut properties = Map::new();
    for field in FIELDS {
        let schema = match field {
            "brand" | "serial" | "manufacturer" => key(field),
            "name" => json!({
                "type": "string", "minLength": 1, "maxLength": MAX_KEY_CHARS,
                "pattern": classes.name(),
                "description": "Not blank, no control characters; stored as sent.",
            }),
            "description" => json!({
                "type": "string", "maxLength": MAX_DESCRIPTION_CHARS,
                "pattern": "^[^\\u0000]*$",
                "description": "No NUL. Default \"\" (an upsert that updates keeps it).",
            }),
            "price" => json!({
                "oneOf": [
                    {"type": "string", "pattern": PRICE_PATTERN},
                    {"type": "number", "minimum": 0, "maximum": MAX_PRICE, "multipleOf": 0.01},
                ],
                "description": "0 to 9999999999.99, at most two decimal places (never \
                    rounded): a decimal string or a JSON number. Default 0 (an upsert that \
                    updates keeps it).",
                "examples": ["12.34"],
            }),
            other => unreachable!("domain::FIELDS has {other}, which has no schema here"),
        };
        properties.insert(field.to_owned(), schema);
    }
    for field in READ_ONLY_FIELDS {
        properties.insert(
            field.to_owned(),
            json!({"description": "Read-only: accepted and ignored, so that what a GET \
                returned can be sent back."}),
        );
    }
    properties.insert(
        VERSION_FIELD.to_owned(),
        json!({
            "type": "integer", "minimum": 1, "maximum": i64::MAX,
            "description": "The version the client read (what a GET returned). PUT and PATCH \
                take it as a precondition, as If-Match: a mismatch is a 412 and nothing is \
                written. POST ignores it.",
        }),
    );
    let mut schema = json!({
        "type": "object",
        "properties": properties,
        "additionalProperties": false,
    });
    if full {
        schema["required"] = json!(REQUIRED_FIELDS);
    }
    schema
}

/// The `GET /products` parameters' schemas, by name.
fn list_parameter_schema(name: &str, classes: &Classes) -> Option<Value> {
    Some(match name {
        "brand" | "serial" | "manufacturer" => json!({
            "type": "string",
            "pattern": classes.key_filter(),
        }),
        "limit" => json!({
            "type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT,
        }),
        "after" => json!({
            "type": "integer", "format": "int64", "minimum": i64::MIN, "maximum": i64::MAX,
        }),
        _ => return None,
    })
}

/// The response header every answer carries.
fn request_id_header() -> Value {
    json!({
        "description": "This request's id: the X-Request-Id sent, when printable ASCII of at \
            most 128 characters, else a new UUID. Also in every log line of the request.",
        "schema": {"type": "string"},
    })
}

/// A problem+json response.
fn problem(description: &str, headers: Value) -> Value {
    json!({
        "description": description,
        "headers": headers,
        "content": {"application/problem+json": {
            "schema": {"$ref": "#/components/schemas/Problem"}
        }},
    })
}

/// Links from an answer that holds a product's id at `id_pointer` to the operations on it.
fn product_links(id_pointer: &str) -> Value {
    let id = format!("$response.body#{id_pointer}");
    let mut links = Map::new();
    for (name, operation) in [
        ("GetProduct", "get"),
        ("ReplaceProduct", "replace"),
        ("PatchProduct", "patch"),
        ("DeleteProduct", "delete"),
    ] {
        links.insert(
            name.to_owned(),
            json!({"operationId": operation, "parameters": {"id": id}}),
        );
    }
    Value::Object(links)
}

/// Writes into `doc`, the document utoipa generated, what its annotations cannot say (see the
/// module documentation).
pub fn complete(doc: &mut Value) {
    let classes = Classes::new();
    let schemas = &mut doc["components"]["schemas"];
    schemas["ProductRequest"] = request_schema(true);
    schemas["ProductPatchRequest"] = request_schema(false);
    schemas["BatchRequest"] = json!({
        "type": "array",
        "items": {"$ref": "#/components/schemas/ProductRequest"},
        "maxItems": DEFAULT_BATCH_MAX_ITEMS,
        "description": "Products to upsert in one transaction, in array order (a key given \
            twice: the second updates what the first wrote). At most BATCH_MAX_ITEMS (default \
            1000) items and BATCH_MAX_BODY_BYTES (default 4 MiB).",
    });
    // The messages by field, an object (utoipa would name it after the Rust map type).
    if let Some(schemas) = schemas.as_object_mut() {
        schemas.remove("BTreeMap");
    }
    schemas["Problem"]["properties"]["errors"] = json!({
        "type": "object",
        "maxProperties": MAX_ERRORS,
        "additionalProperties": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "description": "Validation messages by field or query parameter name (400 only): the \
            first 50 by name; `detail` counts any others. For a batch, by `<index>.<field>` \
            (`<index>` alone: the item is not a JSON object): those of the 50 lowest indexes; \
            `invalid_items` lists every bad item.",
    });
    for answer in ["ProductBody", "Page", "Problem", "Status", "BatchResult"] {
        schemas[answer]["additionalProperties"] = json!(false);
    }
    schemas["ProductBody"]["properties"]["price"]["pattern"] = json!(r"^[0-9]{1,10}\.[0-9]{2}$");

    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        let path_id: String = path.chars().filter(char::is_ascii_alphanumeric).collect();
        let mut methods: Vec<String> = item.keys().map(|m| m.to_uppercase()).collect();
        if path == "/products"
            && let Some(parameters) = item
                .get_mut("get")
                .and_then(|get| get["parameters"].as_array_mut())
        {
            for parameter in parameters.iter_mut() {
                let name = parameter["name"].as_str().unwrap_or_default().to_owned();
                if parameter["in"] == "query"
                    && let Some(schema) = list_parameter_schema(&name, &classes)
                {
                    parameter["schema"] = schema;
                    parameter["required"] = json!(false);
                }
            }
        }
        if let Some(get) = item.get("get").cloned() {
            let mut head = get;
            head["operationId"] = json!(format!("head_{path_id}"));
            head["summary"] = json!("The same answer as GET, without its body");
            head["description"] =
                json!("The same status and headers as GET (RFC 9110, section 9.3.2).");
            if let Some(responses) = head["responses"].as_object_mut() {
                for response in responses.values_mut() {
                    if let Some(response) = response.as_object_mut() {
                        response.remove("content");
                        response.remove("links");
                    }
                }
            }
            item.insert("head".to_owned(), head);
            methods.push("HEAD".to_owned());
        }
        methods.push("OPTIONS".to_owned());
        let order = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
        methods.sort_by_key(|m| order.iter().position(|o| o == m));
        let allow = methods.join(", ");
        let allow_header = json!({"Allow": {
            "description": "The methods of this path",
            "schema": {"type": "string", "enum": [allow]},
        }});
        let limited = !UNLIMITED_PATHS.contains(&path.as_str());
        let products = path == "/products" || path.starts_with("/products/");
        for (method, operation) in item.iter_mut() {
            if products {
                let write = !matches!(method.as_str(), "get" | "head");
                add_token_answers(operation, write);
            }
            if limited {
                operation["responses"]["429"] = problem(
                    "Too many requests from this client; `Retry-After` says when to retry (RFC \
                     6585, section 4). Only when rate limiting is on (RATE_LIMIT_PER_SECOND).",
                    json!({
                        "Retry-After": {
                            "description": "Seconds to wait before retrying (at least 1)",
                            "schema": {"type": "integer", "minimum": 1},
                        },
                        "RateLimit": ratelimit_header(),
                        "RateLimit-Policy": ratelimit_policy_header(),
                    }),
                );
            }
            let has_body = operation.get("requestBody").is_some();
            if has_body {
                operation["requestBody"]["required"] = json!(true);
            }
            let responses = &mut operation["responses"];
            responses["405"] = problem(
                "A method this path does not have, with `Allow` (RFC 9110, section 15.5.6)",
                allow_header.clone(),
            );
            if has_body {
                responses["408"] = problem(
                    "The body did not arrive within CLIENT_REQUEST_TIMEOUT_MS; the connection \
                     closes",
                    json!({}),
                );
            }
        }
    }
    doc["components"]["securitySchemes"]["bearerAuth"] = json!({
        "type": "http",
        "scheme": "bearer",
        "description": "An API token (API_TOKENS or API_TOKENS_FILE) as `Authorization: Bearer \
            <token>` (RFC 6750). Needed only when tokens are configured: then for every write \
            to /products, and for reads of /products too with API_TOKENS_READ=true.",
    });
    add_links(doc);
    add_preconditions(doc);
    add_idempotency(doc);
    add_headers_of_every_answer(doc);
}

/// `X-Request-Id` on every answer, and the `RateLimit` fields on every answer of a limited
/// path: the last pass, so that it covers the answers every earlier one added.
fn add_headers_of_every_answer(doc: &mut Value) {
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let limited = !UNLIMITED_PATHS.contains(&path.as_str());
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for operation in item.values_mut() {
            let Some(responses) = operation["responses"].as_object_mut() else {
                continue;
            };
            for response in responses.values_mut() {
                response["headers"]["X-Request-Id"] = request_id_header();
                if limited {
                    response["headers"]["RateLimit"] = ratelimit_header();
                    response["headers"]["RateLimit-Policy"] = ratelimit_policy_header();
                }
            }
        }
    }
}

/// An `Idempotency-Key`: 1 to 255 printable ASCII characters, bare (not starting with a quote
/// or ending with a space) or as a structured-field string (`"..."`, `\"` and `\\` escaped).
pub(crate) const IDEMPOTENCY_KEY_PATTERN: &str =
    r#"^([!#-~]([ -~]{0,253}[!-~])?|"([ !#-\[\]-~]|\\["\\]){1,255}")$"#;

/// `Idempotency-Key` on `POST /products` (IETF draft-ietf-httpapi-idempotency-key-header): the
/// header, the replay marker, 409 while the first runs, 422 for another request.
fn add_idempotency(doc: &mut Value) {
    for (path, statuses) in [
        ("/products", &["200", "201"][..]),
        ("/products/batch", &["200"][..]),
    ] {
        let operation = &mut doc["paths"][path]["post"];
        if operation.is_object() {
            add_idempotency_to(operation, statuses);
        }
    }
}

/// The `Idempotency-Key` of one operation whose successes are `statuses`.
fn add_idempotency_to(operation: &mut Value, statuses: &[&str]) {
    let parameter = json!({
        "name": "Idempotency-Key", "in": "header", "required": false,
        "description": "Run this request once: a retry with the same key gets the first answer \
            back (Idempotent-Replayed: true), for IDEMPOTENCY_TTL_SECS; only answers of writes \
            that succeeded are kept",
        "schema": {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN},
    });
    match operation["parameters"].as_array_mut() {
        Some(list) => list.push(parameter),
        None => operation["parameters"] = json!([parameter]),
    }
    let responses = &mut operation["responses"];
    for status in statuses {
        responses[*status]["headers"]["Idempotent-Replayed"] = json!({
            "description": "true: this is the stored answer of the first request with this \
                Idempotency-Key",
            "schema": {"type": "string", "enum": ["true"]},
        });
    }
    responses["409"] = problem(
        "Another request with this Idempotency-Key is still running; retry later (with \
         Retry-After); or (type urn:product-service:problem:version-exhausted) a product's \
         version is at 2^63-1, set outside the service, and cannot be raised; nothing written",
        json!({
            "Retry-After": {"description": "Seconds to wait before retrying",
                "schema": {"type": "integer"}},
            "X-Request-Id": request_id_header(),
        }),
    );
    responses["422"] = problem(
        "This Idempotency-Key was used for another request (body or route)",
        json!({"X-Request-Id": request_id_header()}),
    );
}

/// `If-Match` and `If-None-Match` (RFC 9110, section 13.1): `*`, or entity-tags (ASCII
/// `etagc`, commas included), or empty (as if absent).
pub(crate) const TAG_LIST_PATTERN: &str =
    r#"^(|\*|(W/)?"[\x21\x23-\x7E]*"([ \t]*,[ \t]*(W/)?"[\x21\x23-\x7E]*")*)$"#;

/// A conditional-request header parameter.
fn tag_list_parameter(name: &str, description: &str) -> Value {
    json!({
        "name": name, "in": "header", "required": false, "description": description,
        "schema": {"type": "string", "pattern": TAG_LIST_PATTERN},
    })
}

/// The `ETag` of a product answer.
fn etag_header() -> Value {
    json!({
        "description": "The product's strong entity tag, \"<id>.<version>\" (RFC 9110, \
            section 8.8.3), for If-Match and If-None-Match",
        "schema": {"type": "string"},
    })
}

/// Optimistic concurrency (RFC 9110, section 13; RFC 6585, section 3): `ETag` on every product
/// answer, the conditional headers each operation reads, 304, 412 and 428.
fn add_preconditions(doc: &mut Value) {
    let paths = &mut doc["paths"];
    let if_match = tag_list_parameter(
        "If-Match",
        "Write only if the product's current ETag is listed (or, with *, if it exists); \
         else 412 with its ETag, nothing written",
    );
    let create_only = tag_list_parameter(
        "If-None-Match",
        "* : create only; 412 if a product with this key exists. A list of tags: write only \
         if the product's ETag is not listed",
    );
    let cached = tag_list_parameter(
        "If-None-Match",
        "The ETag of the copy the client holds: 304 Not Modified if it is still current",
    );
    for (path, method, parameters, product_statuses) in [
        (
            "/products",
            "post",
            vec![&if_match, &create_only],
            &["200", "201"][..],
        ),
        ("/products/{id}", "get", vec![&cached], &["200"][..]),
        ("/products/{id}", "head", vec![&cached], &["200"][..]),
        ("/products/{id}", "put", vec![&if_match], &["200"][..]),
        ("/products/{id}", "patch", vec![&if_match], &["200"][..]),
        ("/products/{id}", "delete", vec![&if_match], &[][..]),
    ] {
        let operation = &mut paths[path][method];
        if !operation.is_object() {
            continue;
        }
        if let Some(list) = operation["parameters"].as_array_mut() {
            list.extend(parameters.into_iter().cloned());
        } else {
            operation["parameters"] = Value::Array(parameters.into_iter().cloned().collect());
        }
        let responses = &mut operation["responses"];
        for status in product_statuses {
            responses[*status]["headers"]["ETag"] = etag_header();
        }
        let request_id = json!({"X-Request-Id": request_id_header()});
        if responses["400"].is_null() {
            responses["400"] = problem(
                "A malformed If-Match or If-None-Match: `errors` names it",
                request_id.clone(),
            );
        }
        if method == "get" || method == "head" {
            responses["304"] = json!({
                "description": "Not Modified: the If-None-Match tag is still current",
                "headers": {"ETag": etag_header(), "X-Request-Id": request_id_header()},
            });
        } else {
            responses["412"] = problem(
                "A precondition is false (If-Match, If-None-Match or a version member); nothing \
                 written. ETag: the product's current tag, when it exists",
                json!({"ETag": etag_header(), "X-Request-Id": request_id_header()}),
            );
        }
        if matches!(method, "put" | "patch" | "delete") {
            responses["428"] = problem(
                "REQUIRE_IF_MATCH is on and the request names no version (If-Match or a \
                 version member)",
                request_id,
            );
        }
    }
}

/// The paths never rate limited (`http::rate_limit`).
const UNLIMITED_PATHS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// The `RateLimit` response field (draft-ietf-httpapi-ratelimit-headers).
fn ratelimit_header() -> Value {
    json!({
        "description": "Only when rate limiting is on: this client's quota now, as a structured \
            field (draft-ietf-httpapi-ratelimit-headers): `\"default\";r=<requests left>;\
            t=<seconds until the whole burst is back>`.",
        "schema": {"type": "string"},
    })
}

/// The `RateLimit-Policy` response field (draft-ietf-httpapi-ratelimit-headers).
fn ratelimit_policy_header() -> Value {
    json!({
        "description": "Only when rate limiting is on: the quota policy, as a structured field \
            (draft-ietf-httpapi-ratelimit-headers): `\"default\";q=<RATE_LIMIT_BURST>;\
            w=<seconds to regain it>`.",
        "schema": {"type": "string"},
    })
}

/// The 401 of an operation on `/products` and its optional `bearerAuth` security (optional:
/// the empty alternative `{}` says that without configured tokens none is needed).
fn add_token_answers(operation: &mut Value, write: bool) {
    let when = if write {
        "Only when API tokens are configured (API_TOKENS or API_TOKENS_FILE)"
    } else {
        "Only when API tokens are configured and API_TOKENS_READ=true"
    };
    operation["responses"]["401"] = problem(
        &format!(
            "No valid API token: `Authorization: Bearer <token>` is missing, or names no \
             configured token (RFC 6750, section 3). {when}."
        ),
        json!({"WWW-Authenticate": {
            "description": "`Bearer realm=\"product-service\"`, with `, \
                error=\"invalid_token\"` when the token sent is not a configured one",
            "schema": {"type": "string"},
        }}),
    );
    operation["security"] = json!([{}, {"bearerAuth": []}]);
}

/// The links of the answers that hold a product (OpenAPI 3.1, section 4.8.20): from it to
/// reading, replacing, changing and deleting it. (Not from a page: its first item may not be
/// there.)
fn add_links(doc: &mut Value) {
    let paths = &mut doc["paths"];
    for (path, method, status, id) in [
        ("/products", "post", "201", "/id"),
        ("/products", "post", "200", "/id"),
        ("/products/{id}", "get", "200", "/id"),
        ("/products/{id}", "put", "200", "/id"),
        ("/products/{id}", "patch", "200", "/id"),
    ] {
        let response = &mut paths[path][method]["responses"][status];
        if response.is_object() {
            response["links"] = product_links(id);
        }
    }
}
