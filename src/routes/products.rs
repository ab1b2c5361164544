//! Handlers of `/products`. They parse and validate the request completely before taking a
//! database connection, then make one store call.

use std::time::{Duration, Instant};

use actix_web::http::header;
use actix_web::{HttpMessage as _, HttpRequest, HttpResponse, web};
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};

use crate::domain::{ProductInput, ProductPatch};
use crate::domain::{ProductPatchRequest, ProductRequest};
use crate::error::{ApiError, Problem, Unavailable};
use crate::metrics::UpsertOutcome;
use crate::models::ProductBody;
use crate::startup::AppState;
use crate::store::{self, ListQuery, Upserted};

/// Default and largest page size of `GET /products`.
const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 500;

/// Reads a JSON request body: 415 unless it is declared JSON, 413 past `MAX_BODY_BYTES`.
async fn json_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: u64,
) -> Result<web::BytesMut, ApiError> {
    let is_json = req.mime_type().ok().flatten().is_some_and(|mime| {
        mime.type_() == mime::APPLICATION
            && (mime.subtype() == mime::JSON || mime.suffix() == Some(mime::JSON))
    });
    if !is_json {
        return Err(ApiError::UnsupportedMediaType);
    }
    let too_large = ApiError::PayloadTooLarge { limit };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large);
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::MalformedJson(format!("cannot read body: {e}")))?;
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(too_large);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The id of `/products/{id}`; anything that is not an id names no product.
fn product_id(path: &web::Path<String>) -> Result<i64, ApiError> {
    path.parse::<i64>().map_err(|_| ApiError::ProductNotFound)
}

/// `POST /products`: create (201, `Location`) or update (200) the product with this key.
#[utoipa::path(post, path = "/products", tag = "products",
    request_body(content = ProductRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = ProductBody,
            headers(("Location" = String, description = "/products/{id} of the new product"))),
        (status = 200, description = "Updated the product that has this key", body = ProductBody),
        (status = 400, description = "Invalid body: `errors` names each field", body = Problem, content_type = "application/problem+json"), (status = 413, description = "Body over MAX_BODY_BYTES", body = Problem, content_type = "application/problem+json"), (status = 415, description = "Body not declared application/json", body = Problem, content_type = "application/problem+json"), (status = 503, description = "Lock, pool or database not available in time; nothing written", body = Problem, content_type = "application/problem+json", headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
    ))]
pub async fn upsert(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = json_body(&req, payload, state.max_body_bytes).await?;
    let input = ProductInput::from_json(&body)?;
    let (outcome, lock_wait) = match &state.group_commit {
        Some(group) => {
            let committed = group.submit(input).await?;
            (committed.upserted, committed.lock_wait)
        }
        None => upsert_alone(&state, &input).await?,
    };
    if let Some(lock_wait) = lock_wait {
        state.metrics.observe_lock_wait(lock_wait);
    }
    Ok(match outcome {
        Upserted::Created(product) => HttpResponse::Created()
            .insert_header((header::LOCATION, format!("/products/{}", product.id)))
            .json(ProductBody::from(product)),
        Upserted::Updated(product) => HttpResponse::Ok().json(ProductBody::from(product)),
    })
}

/// The single-request path (`GROUP_COMMIT=false`): one transaction per upsert.
async fn upsert_alone(
    state: &AppState,
    input: &ProductInput,
) -> Result<(Upserted, Option<Duration>), ApiError> {
    // Queue behind this instance's request for the same key without holding a connection; the
    // wait counts as lock wait and is bounded by the same LOCK_TIMEOUT_MS.
    let asked = Instant::now();
    let lock_timeout = Duration::from_millis(state.settings.lock_timeout_ms);
    let _pass = tokio::time::timeout(lock_timeout, state.key_gate.enter(&input.key))
        .await
        .map_err(|_| state.count_db_error(ApiError::Unavailable(Unavailable::LockTimeout)))?;
    let queued = asked.elapsed();
    let (outcome, lock_wait) = state
        .with_conn(async |conn| {
            let started = Instant::now();
            let result = store::upsert(conn, &state.settings, input).await;
            let outcome = match &result {
                Ok((Upserted::Created(_), _)) => UpsertOutcome::Created,
                Ok((Upserted::Updated(_), _)) => UpsertOutcome::Updated,
                Err(_) => UpsertOutcome::Failed,
            };
            state.metrics.observe_upsert(outcome, started.elapsed());
            result
        })
        .await?;
    Ok((outcome, lock_wait.map(|held| queued + held)))
}

/// `GET /products/{id}`.
#[utoipa::path(get, path = "/products/{id}", tag = "products", params(("id" = i64, Path, description = "Product id")),
    responses((status = 200, description = "The product", body = ProductBody), (status = 404, description = "No product with this id", body = Problem, content_type = "application/problem+json"), (status = 503, description = "Lock, pool or database not available in time; nothing written", body = Problem, content_type = "application/problem+json", headers(("Retry-After" = u32, description = "Seconds to wait before retrying")))))]
pub async fn get(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = product_id(&path)?;
    let product = state
        .with_conn(async |conn| Ok(store::find(conn, id).await?))
        .await?
        .ok_or(ApiError::ProductNotFound)?;
    Ok(HttpResponse::Ok().json(ProductBody::from(product)))
}

/// `PUT /products/{id}`: replaces every writable field; omitted optional ones return to their
/// defaults.
#[utoipa::path(put, path = "/products/{id}", tag = "products", params(("id" = i64, Path, description = "Product id")),
    request_body(content = ProductRequest, content_type = "application/json"),
    responses((status = 200, description = "The replaced product", body = ProductBody),
        (status = 400, description = "Invalid body: `errors` names each field", body = Problem, content_type = "application/problem+json"), (status = 404, description = "No product with this id", body = Problem, content_type = "application/problem+json"), (status = 409, description = "Another product holds the new key: `existing_id`", body = Problem, content_type = "application/problem+json"), (status = 413, description = "Body over MAX_BODY_BYTES", body = Problem, content_type = "application/problem+json"), (status = 415, description = "Body not declared application/json", body = Problem, content_type = "application/problem+json"), (status = 503, description = "Lock, pool or database not available in time; nothing written", body = Problem, content_type = "application/problem+json", headers(("Retry-After" = u32, description = "Seconds to wait before retrying")))))]
pub async fn replace(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = json_body(&req, payload, state.max_body_bytes).await?;
    let patch = ProductPatch::from(ProductInput::from_json(&body)?);
    let id = product_id(&path)?;
    update(&state, id, &patch).await
}

/// `PATCH /products/{id}`: changes only the fields it names.
#[utoipa::path(patch, path = "/products/{id}", tag = "products", params(("id" = i64, Path, description = "Product id")),
    request_body(content = ProductPatchRequest, content_type = "application/json"),
    responses((status = 200, description = "The changed product", body = ProductBody),
        (status = 400, description = "Invalid body: `errors` names each field", body = Problem, content_type = "application/problem+json"), (status = 404, description = "No product with this id", body = Problem, content_type = "application/problem+json"), (status = 409, description = "Another product holds the new key: `existing_id`", body = Problem, content_type = "application/problem+json"), (status = 413, description = "Body over MAX_BODY_BYTES", body = Problem, content_type = "application/problem+json"), (status = 415, description = "Body not declared application/json", body = Problem, content_type = "application/problem+json"), (status = 503, description = "Lock, pool or database not available in time; nothing written", body = Problem, content_type = "application/problem+json", headers(("Retry-After" = u32, description = "Seconds to wait before retrying")))))]
pub async fn patch(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = json_body(&req, payload, state.max_body_bytes).await?;
    let patch = ProductPatch::from_json(&body)?;
    let id = product_id(&path)?;
    update(&state, id, &patch).await
}

async fn update(state: &AppState, id: i64, patch: &ProductPatch) -> Result<HttpResponse, ApiError> {
    let product = state
        .with_conn(async |conn| store::update(conn, &state.settings, id, patch).await)
        .await?;
    Ok(HttpResponse::Ok().json(ProductBody::from(product)))
}

/// `DELETE /products/{id}`: 204, or 404 if there was none.
#[utoipa::path(delete, path = "/products/{id}", tag = "products", params(("id" = i64, Path, description = "Product id")),
    responses((status = 204, description = "Deleted"), (status = 404, description = "No product with this id", body = Problem, content_type = "application/problem+json"), (status = 503, description = "Lock, pool or database not available in time; nothing written", body = Problem, content_type = "application/problem+json", headers(("Retry-After" = u32, description = "Seconds to wait before retrying")))))]
pub async fn delete(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = product_id(&path)?;
    let deleted = state
        .with_conn(async |conn| store::delete(conn, &state.settings, id).await)
        .await?;
    if deleted {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::ProductNotFound)
    }
}

/// Query string of `GET /products`: everything arrives as text so that errors name the field.
#[derive(Debug, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    #[serde(skip_serializing_if = "Option::is_none")]
    brand: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    serial: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    manufacturer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    limit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    after: Option<String>,
}

/// One page of `GET /products`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Page {
    items: Vec<ProductBody>,
    /// The URL of the next page, `null` on the last.
    next: Option<String>,
}

fn parse_list_params(params: &ListParams) -> Result<ListQuery, ApiError> {
    let limit = match &params.limit {
        None => DEFAULT_LIMIT,
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::field("limit", format!("must be an integer from 1 to {MAX_LIMIT}"))
            })?,
    };
    let after = match &params.after {
        None => None,
        Some(text) => Some(
            text.parse::<i64>()
                .map_err(|_| ApiError::field("after", "must be a product id (an integer)"))?,
        ),
    };
    let key_filter = |value: &Option<String>| value.as_deref().map(|v| v.trim().to_owned());
    Ok(ListQuery {
        brand: key_filter(&params.brand),
        serial: key_filter(&params.serial),
        manufacturer: key_filter(&params.manufacturer),
        after,
        limit,
    })
}

/// `GET /products?brand=&serial=&manufacturer=&limit=&after=`: one page in id order, with the
/// URL of the next page (or `null` on the last).
#[utoipa::path(get, path = "/products", tag = "products",
    params(
        ("brand" = Option<String>, Query, description = "Exact brand (trimmed)"),
        ("serial" = Option<String>, Query, description = "Exact serial (trimmed)"),
        ("manufacturer" = Option<String>, Query, description = "Exact manufacturer (trimmed)"),
        ("limit" = Option<i64>, Query, description = "Page size, 1 to 500, default 50"),
        ("after" = Option<i64>, Query, description = "Only products with a greater id"),
    ),
    responses((status = 200, description = "One page, in id order", body = Page),
        (status = 400, description = "Bad query parameter", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Lock, pool or database not available in time; nothing written", body = Problem, content_type = "application/problem+json", headers(("Retry-After" = u32, description = "Seconds to wait before retrying")))))]
pub async fn list(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let params: ListParams = serde_urlencoded::from_str(req.query_string())
        .map_err(|e| ApiError::InvalidQuery(e.to_string()))?;
    let query = parse_list_params(&params)?;
    let page_size = query.limit;
    // One row more than the page tells whether there is a next page.
    let fetch = ListQuery {
        limit: page_size + 1,
        ..query
    };
    let mut rows = state
        .with_conn(async |conn| Ok(store::list(conn, &fetch).await?))
        .await?;
    let next = if rows.len() as i64 > page_size {
        rows.truncate(page_size as usize);
        rows.last().map(|last| {
            let next_params = ListParams {
                limit: Some(page_size.to_string()),
                after: Some(last.id.to_string()),
                ..params
            };
            format!(
                "/products?{}",
                serde_urlencoded::to_string(&next_params).unwrap_or_default()
            )
        })
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(Page {
        items: rows.into_iter().map(ProductBody::from).collect(),
        next,
    }))
}
