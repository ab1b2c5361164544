//! The route table.
//!
//! | method | path | handler |
//! |---|---|---|
//! | POST | `/products`, `/products/` | upsert by (brand, serial, manufacturer): 201 or 200 |
//! | GET | `/products`, `/products/` | list, exact-match filters, keyset pages |
//! | GET | `/products/{id}` | one product |
//! | PUT | `/products/{id}` | replace every writable field |
//! | PATCH | `/products/{id}` | change the fields it names |
//! | DELETE | `/products/{id}` | delete: 204 |
//! | GET | `/healthz` | liveness |
//! | GET | `/readyz` | readiness |
//! | GET | `/openapi.json` | the OpenAPI 3.1 document |
//! | GET | `/metrics` | Prometheus metrics (on `METRICS_ADDR` instead, when set) |
//!
//! Anything else is a problem+json 404 (no such route) or 405 (no such method, with `Allow`).

use actix_web::{HttpResponse, web};

use crate::http::problem::ApiError;

pub mod health;
pub mod metrics;
pub mod openapi;
pub mod products;

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    for collection in ["/products", "/products/"] {
        cfg.service(
            web::resource(collection)
                .route(web::post().to(products::upsert))
                .route(web::get().to(products::list))
                .default_service(web::to(|| not_allowed("GET, POST"))),
        );
    }
    cfg.service(
        web::resource("/products/{id}")
            .route(web::get().to(products::get))
            .route(web::put().to(products::replace))
            .route(web::patch().to(products::patch))
            .route(web::delete().to(products::delete))
            .default_service(web::to(|| not_allowed("GET, PUT, PATCH, DELETE"))),
    );
    cfg.route("/healthz", web::get().to(health::healthz));
    cfg.route("/readyz", web::get().to(health::readyz));
    cfg.route("/openapi.json", web::get().to(openapi::openapi_json));
    cfg.default_service(web::to(route_not_found));
}

/// Registers `GET /metrics` on the public app (when no `METRICS_ADDR` is set).
pub fn configure_metrics(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(metrics::metrics));
}

/// The routes of the separate `METRICS_ADDR` listener: `GET /metrics`, and a problem+json 404
/// for anything else.
pub fn configure_metrics_listener(cfg: &mut web::ServiceConfig) {
    configure_metrics(cfg);
    cfg.default_service(web::to(route_not_found));
}

async fn route_not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::RouteNotFound)
}

async fn not_allowed(allow: &'static str) -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed { allow })
}
