//! Handlers of `/products`: each parses the request completely (before any database work), makes
//! one service call and renders its answer.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, web};
use serde::Serialize;

use crate::domain::{
    BodyFormat, InputError, ListParams, Preconditions, Product, ProductInput, ProductPatch,
    entity_tag,
};
use crate::http::conditional::Conditions;
use crate::http::extract::{BatchBody, ProductId, RequestBody};
use crate::http::forwarded::base_url;
use crate::http::idempotency::{IdempotencyKeyHeader, KeyedRequest, render};
use crate::http::problem::ApiError;
use crate::http::schemas::{
    BatchRequest, BatchResult, BatchTooLarge, InvalidBatch, InvalidBody, InvalidQuery, KeyConflict,
    NotFound, NotJson, NotJsonOnly, Page, ProductBody, ProductPatchRequest, ProductRequest,
    TooLarge, Unavailable,
};
use crate::http::state::AppState;
use crate::store::Upserted;
use crate::store::idempotency::{Idempotent, StoredResponse, Written};

/// `POST /products`: create (201, `Location`) or update (200) the product with this key.
#[utoipa::path(
    post,
    path = "/products",
    tag = "products",
    request_body(content = ProductRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = ProductBody,
            headers(("Location" = String, description = "/products/{id} of the new product"))),
        (status = 200, description = "Updated the product that has this key", body = ProductBody),
        InvalidBody, TooLarge, NotJson, Unavailable,
    )
)]
pub async fn upsert(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: RequestBody,
    conditions: Conditions,
    idempotency_key: IdempotencyKeyHeader,
) -> Result<HttpResponse, ApiError> {
    let input = ProductInput::parse(&body.bytes, body.format)?;
    // A POST's `version` member is read-only data sent back, not a precondition.
    let Some(key) = idempotency_key.0 else {
        let upserted = state.service.upsert_if(input, &conditions.0).await?;
        return Ok(upsert_response(&upserted));
    };
    let keyed = KeyedRequest::new(&req, key, "/products", &body.bytes);
    let outcome = state
        .service
        .upsert_once(input, &conditions.0, keyed.key(), &written_answer)
        .await?;
    Ok(keyed_answer(outcome))
}

/// The answer to a request with an idempotency key: the one it wrote, or the first one's again.
fn keyed_answer<T>(outcome: Idempotent<T>) -> HttpResponse {
    match outcome {
        Idempotent::Ran(_, answer) => render(answer, false),
        Idempotent::Replayed(answer) => render(answer, true),
    }
}

/// The answer to an upsert: 201 with `Location` or 200, the product and its `ETag`; as it is
/// sent, and stored for an idempotency key's replays.
fn upsert_answer(upserted: &Upserted) -> StoredResponse {
    let product = &upserted.product;
    let mut headers = vec![
        ("content-type".to_owned(), "application/json".to_owned()),
        ("etag".to_owned(), entity_tag(product)),
    ];
    if upserted.created {
        headers.push(("location".to_owned(), format!("/products/{}", product.id)));
    }
    StoredResponse {
        status: if upserted.created { 201 } else { 200 },
        headers,
        body: serde_json::to_vec(product).unwrap_or_default(),
    }
}

/// [`upsert_answer`] built directly as the response, for a request without an idempotency key
/// (nothing stored): typed headers, the body serialised once, no list of header strings to
/// parse back.
fn upsert_response(upserted: &Upserted) -> HttpResponse {
    let product = &upserted.product;
    let mut answer = if upserted.created {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    };
    answer
        .insert_header((header::CONTENT_TYPE, mime::APPLICATION_JSON))
        .insert_header((header::ETAG, entity_tag(product)));
    if upserted.created {
        answer.insert_header((header::LOCATION, format!("/products/{}", product.id)));
    }
    answer.body(serde_json::to_vec(product).unwrap_or_default())
}

/// `builder`'s answer with `product` as its body and its `ETag` (RFC 9110, section 8.8.3).
fn with_etag(mut builder: HttpResponseBuilder, product: &Product) -> HttpResponse {
    builder
        .insert_header((header::ETAG, entity_tag(product)))
        .json(product)
}

/// The preconditions of a PUT, PATCH or DELETE: the headers' and the body's `version`;
/// `REQUIRE_IF_MATCH` demands that one of them names the version the write changes.
fn write_preconditions(
    state: &AppState,
    conditions: Conditions,
    version: Option<i64>,
) -> Result<Preconditions, ApiError> {
    let preconditions = Preconditions {
        version,
        ..conditions.0
    };
    if state.require_if_match && !preconditions.names_a_version() {
        return Err(ApiError::PreconditionRequired);
    }
    Ok(preconditions)
}

/// One item of the answer of `POST /products/batch` (described by [`BatchResult`]).
#[derive(Serialize)]
struct BatchItem<'a> {
    index: usize,
    outcome: &'static str,
    product: &'a Product,
}

/// `POST /products/batch`: upsert every product of a JSON array in one transaction, in array
/// order; 200 with one result per item, in the same order.
#[utoipa::path(
    post,
    path = "/products/batch",
    tag = "products",
    request_body(content = BatchRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Every item applied, in array order, in one transaction: \
            one result per item, in the same order (an empty array answers [])",
            body = Vec<BatchResult>),
        InvalidBatch, BatchTooLarge, NotJsonOnly, Unavailable,
    )
)]
pub async fn upsert_batch(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: BatchBody,
    idempotency_key: IdempotencyKeyHeader,
) -> Result<HttpResponse, ApiError> {
    let inputs = ProductInput::parse_batch(&body.bytes, state.batch_max_items)?;
    let Some(key) = idempotency_key.0 else {
        let upserted = state.service.upsert_batch(&inputs).await?;
        return Ok(render(batch_answer(&upserted), false));
    };
    let keyed = KeyedRequest::new(&req, key, "/products/batch", &body.bytes);
    let outcome = state
        .service
        .upsert_batch_once(&inputs, keyed.key(), &written_answer)
        .await?;
    Ok(keyed_answer(outcome))
}

/// The answer to a batch: 200 with one result per item, in order.
fn batch_answer(upserted: &[Upserted]) -> StoredResponse {
    let results: Vec<BatchItem<'_>> = upserted
        .iter()
        .enumerate()
        .map(|(index, upserted)| BatchItem {
            index,
            outcome: if upserted.created {
                "created"
            } else {
                "updated"
            },
            product: &upserted.product,
        })
        .collect();
    StoredResponse {
        status: 200,
        headers: vec![("content-type".to_owned(), "application/json".to_owned())],
        body: serde_json::to_vec(&results).unwrap_or_default(),
    }
}

/// The answer to what a request with an idempotency key wrote, as it is stored.
fn written_answer(written: &Written) -> StoredResponse {
    match written {
        Written::One(upserted, _) => upsert_answer(upserted),
        Written::Batch(upserted) => batch_answer(upserted),
    }
}

/// `GET /products/{id}`.
#[utoipa::path(
    get,
    path = "/products/{id}",
    tag = "products",
    params(("id" = i64, Path, description = "Product id")),
    responses(
        (status = 200, description = "The product", body = ProductBody),
        NotFound, Unavailable,
    )
)]
pub async fn get(
    state: web::Data<AppState>,
    id: ProductId,
    conditions: Conditions,
) -> Result<HttpResponse, ApiError> {
    let product = state.service.get(id.0).await?;
    if conditions.0.not_modified(&product) {
        return Ok(HttpResponse::NotModified()
            .insert_header((header::ETAG, entity_tag(&product)))
            .finish());
    }
    Ok(with_etag(HttpResponse::Ok(), &product))
}

/// `PUT /products/{id}`: replaces every writable field; omitted optional ones return to their
/// defaults.
#[utoipa::path(
    put,
    path = "/products/{id}",
    tag = "products",
    params(("id" = i64, Path, description = "Product id")),
    request_body(content = ProductRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The replaced product", body = ProductBody),
        InvalidBody, NotFound, KeyConflict, TooLarge, NotJson, Unavailable,
    )
)]
pub async fn replace(
    state: web::Data<AppState>,
    body: RequestBody,
    id: Result<ProductId, ApiError>,
    conditions: Conditions,
) -> Result<HttpResponse, ApiError> {
    update(&state, &body, id, conditions, ProductPatch::replacing).await
}

/// `PATCH /products/{id}`: changes only the fields it names.
#[utoipa::path(
    patch,
    path = "/products/{id}",
    tag = "products",
    params(("id" = i64, Path, description = "Product id")),
    request_body(content = ProductPatchRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The changed product", body = ProductBody),
        InvalidBody, NotFound, KeyConflict, TooLarge, NotJson, Unavailable,
    )
)]
pub async fn patch(
    state: web::Data<AppState>,
    body: RequestBody,
    id: Result<ProductId, ApiError>,
    conditions: Conditions,
) -> Result<HttpResponse, ApiError> {
    update(&state, &body, id, conditions, ProductPatch::parse).await
}

/// PUT and PATCH: the body parsed by `parse` into a patch, applied to product `id`. The body is
/// read and checked before the id, so a bad body is a 4xx of its own whatever the id.
async fn update(
    state: &AppState,
    body: &RequestBody,
    id: Result<ProductId, ApiError>,
    conditions: Conditions,
    parse: fn(&[u8], BodyFormat) -> Result<ProductPatch, InputError>,
) -> Result<HttpResponse, ApiError> {
    let patch = parse(&body.bytes, body.format)?;
    let id = id?;
    let preconditions = write_preconditions(state, conditions, patch.version)?;
    let product = state.service.update(id.0, &patch, &preconditions).await?;
    Ok(with_etag(HttpResponse::Ok(), &product))
}

/// `DELETE /products/{id}`: 204, or 404 if there was none.
#[utoipa::path(
    delete,
    path = "/products/{id}",
    tag = "products",
    params(("id" = i64, Path, description = "Product id")),
    responses((status = 204, description = "Deleted"), NotFound, Unavailable)
)]
pub async fn delete(
    state: web::Data<AppState>,
    id: ProductId,
    conditions: Conditions,
) -> Result<HttpResponse, ApiError> {
    let preconditions = write_preconditions(&state, conditions, None)?;
    state.service.delete(id.0, &preconditions).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The body of `GET /products` (described by [`Page`]).
#[derive(Serialize)]
struct PageBody {
    items: Vec<Product>,
    next: Option<String>,
}

/// `GET /products?brand=&serial=&manufacturer=&limit=&after=`: one page in id order, with the
/// URL of the next page (or `null` on the last).
#[utoipa::path(
    get,
    path = "/products",
    tag = "products",
    params(
        ("brand" = Option<String>, Query, description = "Exact brand (trimmed, NFC-normalised, as keys are)"),
        ("serial" = Option<String>, Query, description = "Exact serial (trimmed, NFC-normalised, as keys are)"),
        ("manufacturer" = Option<String>, Query, description = "Exact manufacturer (trimmed, NFC-normalised, as keys are)"),
        ("limit" = Option<i64>, Query, description = "Page size, 1 to 500, default 50"),
        ("after" = Option<i64>, Query, description = "Only products with a greater id"),
    ),
    responses(
        (status = 200, description = "One page, in id order", body = Page),
        InvalidQuery, Unavailable,
    )
)]
pub async fn list(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let (params, query) = ListParams::from_query(req.query_string())?;
    let page = state.service.list(&query).await?;
    let next = page.next_after.map(|after| {
        let next = params.next_page(query.limit, after);
        let query_string = serde_urlencoded::to_string(&next).unwrap_or_default();
        let base = base_url(&req, &state.trusted_proxies).unwrap_or_default();
        format!("{base}/products?{query_string}")
    });
    Ok(HttpResponse::Ok().json(PageBody {
        items: page.items,
        next,
    }))
}

#[cfg(test)]
mod tests {
    use actix_web::body::MessageBody as _;
    use chrono::Utc;

    use super::*;
    use crate::domain::Price;

    /// What a request without an idempotency key gets is what a keyed one stores and replays.
    #[test]
    fn the_direct_upsert_answer_is_the_stored_one() {
        for created in [true, false] {
            let upserted = Upserted {
                product: Product {
                    id: 7,
                    brand: "Acme".into(),
                    serial: "SN-1".into(),
                    manufacturer: "Acme Corp".into(),
                    name: "Widget".into(),
                    description: String::new(),
                    price: Price::parse("12.50").expect("price"),
                    version: 3,
                    created_at: Utc::now(),
                    updated_at: Utc::now(),
                },
                created,
                copies: 1,
            };
            let direct = upsert_response(&upserted);
            let stored = render(upsert_answer(&upserted), false);
            assert_eq!(direct.status(), stored.status(), "created: {created}");
            assert_eq!(direct.headers().len(), stored.headers().len());
            for (name, value) in stored.headers() {
                assert_eq!(direct.headers().get(name), Some(value), "{name}");
            }
            let bytes = |r: HttpResponse| r.into_body().try_into_bytes().expect("in memory");
            assert_eq!(bytes(direct), bytes(stored));
        }
    }
}
