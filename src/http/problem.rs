//! One error type for every HTTP answer that is not a success, rendered as
//! `application/problem+json` (RFC 9457).
//!
//! The mapping from cause to status lives here and nowhere else: input errors and service errors
//! become [`ApiError`]s by `From`, and [`ApiError`]'s `status_code` is the one `match`. A 500 says
//! nothing of its cause to the client; the cause of a 500 or a 503 is logged once, here, when the
//! response is built.

use std::time::Duration;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::db::DbFault;
use crate::domain::input::MAX_KEY_BYTES;
use crate::domain::{FieldErrors, InputError, entity_tag};
use crate::service::readiness::NotReady;
use crate::service::{ServiceError, Unavailable};
use crate::telemetry::request_id::current_request_id;

/// How long a client should wait before retrying after a 503 (the `Retry-After` header, in
/// seconds; RFC 9110, section 10.2.3).
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Most fields or parameters an answer's `errors` map names (the first, by name); the `detail`
/// counts the rest.
pub const MAX_ERRORS: usize = 50;
/// Most names the `detail` of an invalid input lists.
const MAX_NAMED_IN_DETAIL: usize = 10;

/// The `detail` of a 503 for `why`.
fn unavailable_detail(why: Unavailable) -> &'static str {
    match why {
        Unavailable::Database(DbFault::LockTimeout) => {
            "another request holds this product's lock; it was not released within LOCK_TIMEOUT_MS"
        }
        Unavailable::Database(DbFault::StatementTimeout) => {
            "the database did not finish within STATEMENT_TIMEOUT_MS"
        }
        Unavailable::Database(DbFault::PoolTimeout) => {
            "no database connection became free within DB_POOL_TIMEOUT_MS"
        }
        Unavailable::Database(DbFault::Connection) => "the database is unreachable",
        Unavailable::Database(DbFault::ReadOnly) => {
            "the database is read-only (a standby, or in maintenance); writes resume once a \
             writable primary is reachable"
        }
        Unavailable::Database(
            DbFault::Transient | DbFault::Other | DbFault::LimitExceeded | DbFault::OutOfRange,
        ) => "the database reported a transient failure",
        Unavailable::Contention => "the product kept changing under concurrent writers",
    }
}

/// Every error the API answers with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("request body is not a valid form: {0}")]
    MalformedForm(String),
    #[error("request body must be a JSON object")]
    NotAnObject,
    #[error("invalid input")]
    Validation(FieldErrors),
    #[error("request body must be a JSON array of products")]
    NotAnArray,
    #[error("a batch holds at most {limit} items (BATCH_MAX_ITEMS); this one has {got}")]
    TooManyItems { limit: usize, got: usize },
    /// Bad items of a batch: messages by `<index>.<field>`, and the items' indexes.
    #[error("invalid items")]
    InvalidItems {
        errors: FieldErrors,
        items: Vec<usize>,
    },
    /// `forms`: whether the route reads forms too.
    #[error("unsupported content type")]
    UnsupportedMediaType { forms: bool },
    #[error("the request body did not arrive within CLIENT_REQUEST_TIMEOUT_MS")]
    RequestTimeout,
    #[error("request body larger than {limit} bytes")]
    PayloadTooLarge { limit: u64 },
    #[error("product not found")]
    ProductNotFound,
    #[error("no such route")]
    RouteNotFound,
    #[error("method not allowed")]
    MethodNotAllowed { allow: &'static str },
    #[error("another product (id {existing_id}) already has this brand, serial and manufacturer")]
    KeyConflict { existing_id: i64 },
    /// The product's version cannot be raised (409): see [`ServiceError::VersionExhausted`].
    #[error(
        "the product's version is at its largest value (9223372036854775807) and cannot be \
         raised; it was set outside this service; nothing was written"
    )]
    VersionExhausted,
    #[error(
        "a precondition is false (If-Match, If-None-Match or the version member): the product \
         is not in the state the request expects; nothing was written"
    )]
    PreconditionFailed {
        /// The product's current `ETag`, if it exists.
        etag: Option<String>,
    },
    #[error(
        "another request with this Idempotency-Key is still running; retry after it has \
         finished to get its answer"
    )]
    IdempotencyKeyInProgress,
    #[error(
        "this Idempotency-Key was used for another request (another body or route); use a new \
         key for a new request"
    )]
    IdempotencyKeyReused,
    #[error(
        "this write must say which version it changes: send If-Match with the product's ETag \
         (or a version member in the body); REQUIRE_IF_MATCH is on"
    )]
    PreconditionRequired,
    #[error("service unavailable: {why:?}")]
    Unavailable {
        why: Unavailable,
        /// What the database or pool said: logged, never sent.
        cause: Option<String>,
    },
    #[error("not ready: {0}")]
    NotReady(String),
    /// No valid bearer token where one is needed (RFC 6750, section 3; RFC 9110, section
    /// 15.5.2): `invalid` when one was sent but is not a configured token.
    #[error("{}", if *invalid {
        "the bearer token is not one of the configured API tokens"
    } else {
        "this request needs an API token: Authorization: Bearer <token>"
    })]
    Unauthorized { invalid: bool },
    /// The client is over its rate limit (RFC 6585, section 4).
    #[error("too many requests: over RATE_LIMIT_PER_SECOND; retry after {retry_after_secs} s")]
    RateLimited {
        /// Seconds until a request would be accepted (`Retry-After`, at least 1).
        retry_after_secs: u64,
        /// The `RateLimit-Policy` and `RateLimit` fields (draft-ietf-httpapi-ratelimit-headers).
        fields: RateLimitFields,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

/// The values of the `RateLimit-Policy` and `RateLimit` response fields
/// (draft-ietf-httpapi-ratelimit-headers), as structured-field text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitFields {
    /// `RateLimit-Policy`, e.g. `"default";q=20;w=2`.
    pub policy: String,
    /// `RateLimit`, e.g. `"default";r=0;t=2`.
    pub state: String,
}

/// The `RateLimit-Policy` field name.
pub const RATELIMIT_POLICY: header::HeaderName =
    header::HeaderName::from_static("ratelimit-policy");
/// The `RateLimit` field name.
pub const RATELIMIT: header::HeaderName = header::HeaderName::from_static("ratelimit");
/// The realm of `WWW-Authenticate` (RFC 6750, section 3).
pub const REALM: &str = "product-service";

impl RateLimitFields {
    /// Adds both fields to `headers` (values that are not valid field text are left out; they
    /// are built from numbers, so there are none).
    pub fn insert_into(&self, headers: &mut header::HeaderMap) {
        for (name, value) in [(RATELIMIT_POLICY, &self.policy), (RATELIMIT, &self.state)] {
            if let Ok(value) = header::HeaderValue::from_str(value) {
                headers.insert(name, value);
            }
        }
    }
}

/// The problem+json body (RFC 9457).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem (`about:blank` for plain HTTP statuses).
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong with this request.
    pub detail: String,
    /// Validation messages by field name (400 only); for a batch, by `<index>.<field>`
    /// (`<index>` alone: the item is not a JSON object).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<FieldErrors>,
    /// The indexes (0-based, ascending) of every invalid item of a batch (400 of
    /// `POST /products/batch` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invalid_items: Option<Vec<usize>>,
    /// The id of the product that already holds the key (409 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub existing_id: Option<i64>,
    /// Identifies this occurrence: the request id, as a URN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
}

/// `urn:product-service:request:<id>`, the id percent-encoded where a URN needs it.
fn instance_urn(request_id: &str) -> String {
    let mut urn = String::from("urn:product-service:request:");
    for byte in request_id.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            urn.push(char::from(byte));
        } else {
            urn.push_str(&format!("%{byte:02X}"));
        }
    }
    urn
}

impl ApiError {
    /// The problem type URI and title.
    fn kind(&self) -> (&'static str, &'static str) {
        match self {
            Self::MalformedJson(_) => (
                "urn:product-service:problem:malformed-json",
                "Malformed JSON",
            ),
            Self::MalformedForm(_) => (
                "urn:product-service:problem:malformed-form",
                "Malformed form",
            ),
            Self::NotAnObject
            | Self::Validation(_)
            | Self::NotAnArray
            | Self::TooManyItems { .. }
            | Self::InvalidItems { .. } => {
                ("urn:product-service:problem:validation", "Invalid input")
            }
            Self::UnsupportedMediaType { .. } => ("about:blank", "Unsupported Media Type"),
            Self::RequestTimeout => ("about:blank", "Request Timeout"),
            Self::PayloadTooLarge { .. } => ("about:blank", "Payload Too Large"),
            Self::ProductNotFound => ("urn:product-service:problem:not-found", "Product not found"),
            Self::RouteNotFound => ("about:blank", "Not Found"),
            Self::MethodNotAllowed { .. } => ("about:blank", "Method Not Allowed"),
            Self::KeyConflict { .. } => {
                ("urn:product-service:problem:key-conflict", "Key conflict")
            }
            Self::VersionExhausted => (
                "urn:product-service:problem:version-exhausted",
                "Version exhausted",
            ),
            Self::PreconditionFailed { .. } => (
                "urn:product-service:problem:precondition-failed",
                "Precondition Failed",
            ),
            Self::IdempotencyKeyInProgress => (
                "urn:product-service:problem:idempotency-key-in-progress",
                "Request In Progress",
            ),
            Self::IdempotencyKeyReused => (
                "urn:product-service:problem:idempotency-key-reused",
                "Idempotency Key Reused",
            ),
            Self::PreconditionRequired => (
                "urn:product-service:problem:precondition-required",
                "Precondition Required",
            ),
            Self::Unavailable { .. } => (
                "urn:product-service:problem:unavailable",
                "Service Unavailable",
            ),
            Self::NotReady(_) => ("urn:product-service:problem:not-ready", "Not Ready"),
            Self::Unauthorized { .. } => ("about:blank", "Unauthorized"),
            Self::RateLimited { .. } => ("about:blank", "Too Many Requests"),
            Self::Internal(_) => ("about:blank", "Internal Server Error"),
        }
    }

    fn detail(&self) -> String {
        match self {
            Self::InvalidItems { items, .. } => {
                let named: Vec<String> = items
                    .iter()
                    .take(MAX_NAMED_IN_DETAIL)
                    .map(ToString::to_string)
                    .collect();
                let more = items.len().saturating_sub(MAX_NAMED_IN_DETAIL);
                let list = match more {
                    0 => named.join(", "),
                    n => format!("{} and {n} more", named.join(", ")),
                };
                format!("invalid items (by index): {list}; nothing was written")
            }
            Self::Validation(errors) => {
                let fields: Vec<&str> = errors
                    .keys()
                    .take(MAX_NAMED_IN_DETAIL)
                    .map(String::as_str)
                    .collect();
                let more = errors.len().saturating_sub(MAX_NAMED_IN_DETAIL);
                match more {
                    0 => format!("invalid: {}", fields.join(", ")),
                    n => format!("invalid: {} and {n} more", fields.join(", ")),
                }
            }
            Self::UnsupportedMediaType { forms: true } => "the request body must be sent as \
                 Content-Type: application/json (or application/x-www-form-urlencoded)"
                .to_owned(),
            Self::UnsupportedMediaType { forms: false } => {
                "the request body must be sent as Content-Type: application/json".to_owned()
            }
            Self::Unavailable { why, .. } => unavailable_detail(*why).to_owned(),
            Self::NotReady(why) => why.clone(),
            Self::Internal(_) => "the server failed to handle this request".to_owned(),
            other => other.to_string(),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::MalformedJson(_)
            | Self::MalformedForm(_)
            | Self::NotAnObject
            | Self::Validation(_)
            | Self::NotAnArray
            | Self::TooManyItems { .. }
            | Self::InvalidItems { .. } => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::ProductNotFound | Self::RouteNotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::KeyConflict { .. } | Self::VersionExhausted => StatusCode::CONFLICT,
            Self::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            Self::PreconditionRequired => StatusCode::PRECONDITION_REQUIRED,
            Self::IdempotencyKeyInProgress => StatusCode::CONFLICT,
            Self::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unavailable { .. } | Self::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        match self {
            Self::Internal(cause) => log::error!("internal error: {cause}"),
            Self::Unavailable { why, cause } => match cause {
                Some(cause) => log::warn!("answering 503 ({why:?}): {cause}"),
                None => log::warn!("answering 503 ({why:?})"),
            },
            _ => {}
        }
        let (kind, title) = self.kind();
        let problem = Problem {
            kind: kind.to_owned(),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: self.detail(),
            errors: match self {
                // Bounded, so that a request of many bad members cannot make a far larger answer.
                Self::Validation(errors) => Some(
                    errors
                        .iter()
                        .take(MAX_ERRORS)
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                ),
                // Those of the lowest indexes (by name, `10.brand` would come before `2.brand`).
                Self::InvalidItems { errors, items } => Some(
                    items
                        .iter()
                        .flat_map(|index| {
                            let whole = index.to_string();
                            let prefix = format!("{index}.");
                            errors
                                .range(whole.clone()..)
                                .take_while(move |(k, _)| *k == &whole || k.starts_with(&prefix))
                        })
                        .take(MAX_ERRORS)
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                ),
                _ => None,
            },
            invalid_items: match self {
                Self::InvalidItems { items, .. } => Some(items.clone()),
                _ => None,
            },
            existing_id: match self {
                Self::KeyConflict { existing_id } => Some(*existing_id),
                _ => None,
            },
            instance: current_request_id().as_deref().map(instance_urn),
        };
        let mut response = HttpResponse::build(status);
        response.content_type("application/problem+json");
        match self {
            Self::Unavailable { .. } | Self::NotReady(_) | Self::IdempotencyKeyInProgress => {
                response.insert_header((header::RETRY_AFTER, RETRY_AFTER.as_secs().to_string()));
            }
            Self::MethodNotAllowed { allow } => {
                response.insert_header((header::ALLOW, *allow));
            }
            Self::PreconditionFailed { etag: Some(etag) } => {
                response.insert_header((header::ETAG, etag.as_str()));
            }
            Self::Unauthorized { invalid } => {
                let error = if *invalid {
                    ", error=\"invalid_token\""
                } else {
                    ""
                };
                response.insert_header((
                    header::WWW_AUTHENTICATE,
                    format!("Bearer realm=\"{REALM}\"{error}"),
                ));
            }
            Self::RateLimited {
                retry_after_secs,
                fields,
            } => {
                response.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
                response.insert_header((RATELIMIT_POLICY, fields.policy.as_str()));
                response.insert_header((RATELIMIT, fields.state.as_str()));
            }
            // The rest of a late body may still be on its way: the connection cannot be reused.
            Self::RequestTimeout => {
                response.force_close();
            }
            _ => {}
        }
        response.json(problem)
    }
}

impl From<InputError> for ApiError {
    fn from(error: InputError) -> Self {
        match error {
            InputError::MalformedJson(message) => Self::MalformedJson(message),
            InputError::MalformedForm(message) => Self::MalformedForm(message),
            InputError::NotAnObject => Self::NotAnObject,
            InputError::Invalid(errors) => Self::Validation(errors),
            InputError::NotAnArray => Self::NotAnArray,
            InputError::TooManyItems { limit, got } => Self::TooManyItems { limit, got },
            InputError::InvalidItems { errors, items } => Self::InvalidItems { errors, items },
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::NotFound => Self::ProductNotFound,
            ServiceError::KeyConflict { existing_id } => Self::KeyConflict { existing_id },
            ServiceError::VersionExhausted => Self::VersionExhausted,
            ServiceError::KeyInProgress => Self::IdempotencyKeyInProgress,
            ServiceError::KeyReused => Self::IdempotencyKeyReused,
            ServiceError::PreconditionFailed(failed) => Self::PreconditionFailed {
                etag: failed.current.as_deref().map(entity_tag),
            },
            ServiceError::Unavailable { why, cause } => Self::Unavailable { why, cause },
            ServiceError::KeyTooLarge => Self::Validation(
                ["brand", "serial", "manufacturer"]
                    .into_iter()
                    .map(|field| {
                        let message = format!(
                            "brand, serial and manufacturer together must be at most \
                             {MAX_KEY_BYTES} bytes in UTF-8: the key index's limit"
                        );
                        (field.to_owned(), vec![message])
                    })
                    .collect(),
            ),
            ServiceError::Internal(cause) => Self::Internal(cause),
        }
    }
}

impl From<NotReady> for ApiError {
    fn from(error: NotReady) -> Self {
        Self::NotReady(error.0)
    }
}
