//! The route table.
//!
//! | method | path | handler |
//! |---|---|---|
//! | POST | `/products` | upsert by (brand, serial, manufacturer): 201 or 200 |
//! | GET | `/products` | list, exact-match filters, keyset pages |
//! | POST | `/products/batch` | upsert up to `BATCH_MAX_ITEMS` products in one transaction: 200 |
//! | GET | `/products/{id}` | one product |
//! | PUT | `/products/{id}` | replace every writable field |
//! | PATCH | `/products/{id}` | change the fields it names |
//! | DELETE | `/products/{id}` | delete: 204 |
//! | GET | `/healthz` | liveness |
//! | GET | `/readyz` | readiness |
//! | GET | `/openapi.json` | the OpenAPI 3.1 document |
//! | GET | `/metrics` | Prometheus metrics (on `METRICS_ADDR` instead, when set) |
//! | GET | `/` | an HTML page naming the service, with links to the routes below and above |
//! | GET | `/docs` | 308 to `/docs/` |
//! | GET | `/docs/`, `/docs/{file}` | Swagger UI on `/openapi.json`, and its (vendored) files |
//!
//! Every API path also answers with a trailing slash (`/products/7/`), as Django REST framework's
//! URLs end, and is counted in the metrics under the path without it. Every GET route answers
//! HEAD too, and every route OPTIONS (204 with `Allow`). Anything else is a problem+json 404 (no
//! such route, or no such file under `/docs/`) or 405 (no such method, with `Allow`). `/` and
//! `/docs` are pages for people, not API operations: the OpenAPI document leaves them out, and
//! they have no trailing-slash twin (`/docs/` is where Swagger UI lives).

use actix_web::http::{Method, header};
use actix_web::{FromRequest, Handler, HttpResponse, Resource, Responder, web};

use crate::http::problem::ApiError;

pub mod docs;
pub mod health;
pub mod home;
pub mod metrics;
pub mod openapi;
pub mod products;

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    api(cfg, "/products", "GET, HEAD, POST, OPTIONS", |r| {
        readable(r.route(web::post().to(products::upsert)), products::list)
    });
    // Before `/products/{id}`, whose `{id}` would match `batch` too.
    api(cfg, "/products/batch", "POST, OPTIONS", |r| {
        r.route(web::post().to(products::upsert_batch))
    });
    api(
        cfg,
        "/products/{id}",
        "GET, HEAD, PUT, PATCH, DELETE, OPTIONS",
        |r| {
            let r = r
                .route(web::put().to(products::replace))
                .route(web::patch().to(products::patch))
                .route(web::delete().to(products::delete));
            readable(r, products::get)
        },
    );
    api(cfg, "/healthz", READ_ONLY, |r| readable(r, health::healthz));
    api(cfg, "/readyz", READ_ONLY, |r| readable(r, health::readyz));
    api(cfg, openapi::URL, READ_ONLY, |r| {
        readable(r, openapi::openapi_json)
    });
    cfg.service(readable(page("/"), home::home));
    cfg.service(readable(page("/docs"), docs::docs_redirect));
    cfg.service(readable(page("/docs/{file:.*}"), docs::docs_file));
    cfg.default_service(web::to(route_not_found));
}

/// Registers `GET /metrics` on the public app (when no `METRICS_ADDR` is set).
pub fn configure_metrics(cfg: &mut web::ServiceConfig) {
    api(cfg, "/metrics", READ_ONLY, |r| {
        readable(r, metrics::metrics)
    });
}

/// The routes of the separate `METRICS_ADDR` listener: `GET /metrics`, and a problem+json 404
/// for anything else.
pub fn configure_metrics_listener(cfg: &mut web::ServiceConfig) {
    configure_metrics(cfg);
    cfg.default_service(web::to(route_not_found));
}

/// The `Allow` of a resource that is only read.
const READ_ONLY: &str = "GET, HEAD, OPTIONS";

/// Registers the resource at `path` and its twin at `path` with a trailing slash, both named
/// `path` (the metrics' `route` label: the middleware reads the matched resource's name, which
/// costs no allocation per request), with the routes `routes` adds, and whose methods are
/// `allow`: `OPTIONS` answers 204 with `Allow`, and a method it has no route for (`TRACE`
/// included) 405 with `Allow` (RFC 9110, sections 9.3.7 and 15.5.6). Two resources of one
/// pattern each, not one of two patterns, which actix-router would match with a regex set on
/// every request (1.4 % of the service's CPU on upserts).
fn api(
    cfg: &mut web::ServiceConfig,
    path: &str,
    allow: &'static str,
    routes: impl Fn(Resource) -> Resource,
) {
    for pattern in [path.to_owned(), format!("{path}/")] {
        cfg.service(routes(with_methods(
            web::resource(pattern).name(path),
            allow,
        )));
    }
}

/// A page for people at exactly `path` (no trailing-slash twin), named `path`, only read.
fn page(path: &str) -> Resource {
    with_methods(web::resource(path).name(path), READ_ONLY)
}

/// `resource` answering `OPTIONS` with `allow`, and any method it has no route for with 405.
fn with_methods(resource: Resource, allow: &'static str) -> Resource {
    resource
        .route(web::method(Method::OPTIONS).to(move || async move {
            HttpResponse::NoContent()
                .insert_header((header::ALLOW, allow))
                .finish()
        }))
        .default_service(web::to(move || not_allowed(allow)))
}

/// `resource` with `handler` for `GET`, and for `HEAD` (the same answer; actix-web sends no
/// body for a HEAD request).
fn readable<F, Args>(resource: Resource, handler: F) -> Resource
where
    F: Handler<Args> + Clone,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    resource
        .route(web::get().to(handler.clone()))
        .route(web::head().to(handler))
}

async fn route_not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::RouteNotFound)
}

async fn not_allowed(allow: &'static str) -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed { allow })
}
