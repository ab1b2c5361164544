//! `/docs`: Swagger UI, an interactive page of the API built in the browser from the one document
//! at `/openapi.json`.
//!
//! The page's files (HTML, CSS, JavaScript) are compiled into the binary: `utoipa-swagger-ui`
//! with its `vendored` feature takes them from the `utoipa-swagger-ui-vendored` crate, so neither
//! the build nor the page fetches anything from the network. Only `swagger-initializer.js` is
//! written per request, to point the page at `/openapi.json`; the document is not served twice.
//! Swagger UI's badge from the online validator (validator.swagger.io) is switched off, so the
//! page asks no other host for anything.

use std::borrow::Cow;
use std::sync::Arc;

use actix_web::HttpResponse;
use actix_web::http::header;
use actix_web::web::{self, Bytes};
use utoipa_swagger_ui::Config;

use crate::http::problem::ApiError;
use crate::http::routes::openapi;

/// `GET /docs`: a permanent redirect to `/docs/`, where the page's relative links to its files
/// (`./swagger-ui.css`, ...) resolve under `/docs/`.
pub async fn docs_redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/docs/"))
        .finish()
}

/// `GET /docs/{file}`: the Swagger UI page (`/docs/`) or one of its files, with the content type
/// of its extension; a problem+json 404 for a file it does not have.
pub async fn docs_file(file: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let config = Arc::new(Config::from(openapi::URL).validator_url("none"));
    match utoipa_swagger_ui::serve(&file, config) {
        Ok(Some(found)) => {
            // The files are static, but for the initializer, which is written per request.
            let body = match found.bytes {
                Cow::Borrowed(bytes) => Bytes::from_static(bytes),
                Cow::Owned(bytes) => Bytes::from(bytes),
            };
            Ok(HttpResponse::Ok()
                .content_type(found.content_type)
                .body(body))
        }
        Ok(None) => Err(ApiError::RouteNotFound),
        Err(e) => Err(ApiError::Internal(format!("Swagger UI file {file}: {e}"))),
    }
}
