//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` annotations and the
//! types they answer with, served at `GET /openapi.json` (and read from there by Swagger UI at
//! `/docs`, see `docs.rs`).

use std::sync::OnceLock;

use actix_web::HttpResponse;
use serde_json::{Value, json};
use utoipa::OpenApi;

use crate::http::problem::Problem;
use crate::http::routes::{health, metrics, products};
use crate::http::schemas::complete;

/// Where the document is served: the route table registers it here, and Swagger UI reads it from
/// here.
pub const URL: &str = "/openapi.json";

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "product-service",
        description = "Race-free upserts of products by (brand, serial, manufacturer). Every \
            error is application/problem+json (RFC 9457). Every path also answers with a trailing \
            slash (`/products/7/`, as DRF clients send it), as the same operation."
    ),
    paths(
        products::upsert,
        products::list,
        products::upsert_batch,
        products::get,
        products::replace,
        products::patch,
        products::delete,
        health::healthz,
        health::readyz,
        metrics::metrics,
        openapi_json,
    ),
    components(schemas(Problem)),
    tags(
        (name = "products", description = "The product resource"),
        (name = "operations", description = "Probes, metrics and this document"),
    )
)]
pub struct ApiDoc;

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json")
    )
)]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(document())
}

/// The document as served: what utoipa generates from the annotations, completed by
/// `schemas::complete` with what they cannot say. Built once.
pub fn document() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_else(|_| json!({}));
        complete(&mut doc);
        doc
    })
}
