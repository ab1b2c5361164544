//! What the OpenAPI document says of bodies and error responses, for `#[utoipa::path]`
//! annotations. The request and product types here are descriptions only (the domain parses
//! and serialises the real ones); tests keep each description equal to what the server does.

use utoipa::{IntoResponses, ToSchema};

use crate::http::problem::Problem;

/// The body of `POST /products` and `PUT /products/{id}`. Parsed by
/// `domain::ProductInput::from_json`; a test keeps this description and `domain::FIELDS` equal.
#[derive(ToSchema)]
#[expect(dead_code, reason = "describes the body for OpenAPI; never built")]
pub struct ProductRequest {
    /// Trimmed, NFC-normalised; no control or invisible format characters.
    #[schema(min_length = 1, max_length = 255)]
    brand: String,
    /// Trimmed, NFC-normalised; no control or invisible format characters.
    #[schema(min_length = 1, max_length = 255)]
    serial: String,
    /// Trimmed, NFC-normalised; no control or invisible format characters.
    #[schema(min_length = 1, max_length = 255)]
    manufacturer: String,
    /// Not blank; no control characters.
    #[schema(min_length = 1, max_length = 255)]
    name: String,
    /// Default "" (on an upsert that updates: kept).
    #[schema(max_length = 10000)]
    description: Option<String>,
    /// Decimal string or JSON number, 0 to 9999999999.99, at most two decimal places.
    /// Default 0 (on an upsert that updates: kept).
    #[schema(value_type = Option<String>, example = "12.34")]
    price: Option<String>,
}

/// The body of `PATCH /products/{id}`: any of the fields, none required.
#[derive(ToSchema)]
#[expect(dead_code, reason = "describes the body for OpenAPI; never built")]
pub struct ProductPatchRequest {
    /// Trimmed, NFC-normalised; no control or invisible format characters.
    #[schema(min_length = 1, max_length = 255)]
    brand: Option<String>,
    /// Trimmed, NFC-normalised; no control or invisible format characters.
    #[schema(min_length = 1, max_length = 255)]
    serial: Option<String>,
    /// Trimmed, NFC-normalised; no control or invisible format characters.
    #[schema(min_length = 1, max_length = 255)]
    manufacturer: Option<String>,
    #[schema(min_length = 1, max_length = 255)]
    name: Option<String>,
    #[schema(max_length = 10000)]
    description: Option<String>,
    #[schema(value_type = Option<String>, example = "12.34")]
    price: Option<String>,
}

/// A product as the API shows it (`domain::Product` serialised): `price` as a decimal string,
/// times in RFC 3339.
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
    "Another product holds the new key: `existing_id`"
);
problem_response!(TooLarge = 413, "Body over MAX_BODY_BYTES");
problem_response!(NotJson = 415, "Body not declared application/json");
problem_response!(
    Unavailable = 503,
    "Lock, pool or database not available in time; nothing written",
    retry
);
problem_response!(NotReady = 503, "Not ready; `detail` says why", retry);
