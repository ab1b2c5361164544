//! Extractors: the request body (JSON, or a form as DRF clients send it), the batch body (JSON
//! only, with a limit of its own) and the product id of `/products/{id}`.

use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpMessage as _, HttpRequest, web};
use futures_util::StreamExt as _;
use futures_util::future::{LocalBoxFuture, Ready, ready};

use crate::domain::BodyFormat;
use crate::http::problem::ApiError;
use crate::http::state::AppState;

/// A request body declared as JSON (`application/json` or any `+json` type) or as a form
/// (`application/x-www-form-urlencoded`), at most `MAX_BODY_BYTES` long, received within
/// `CLIENT_REQUEST_TIMEOUT_MS` of the request's head. Its bytes are parsed by the domain, not
/// here.
///
/// Errors: 415 for any other content type; 413 when `Content-Length` or the bytes received
/// exceed the limit; 408 (and the connection closes) when the body is late (RFC 9110, sections
/// 15.5.16, 15.5.14 and 15.5.9).
#[derive(Debug)]
pub struct RequestBody {
    /// The bytes, as received.
    pub bytes: web::BytesMut,
    /// What the `Content-Type` declared.
    pub format: BodyFormat,
}

impl FromRequest for RequestBody {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        receive(
            req,
            payload,
            |state| state.max_body_bytes,
            Accept::JsonOrForm,
        )
    }
}

/// The body of `POST /products/batch`: declared as JSON (a form cannot carry an array of
/// products), at most `BATCH_MAX_BODY_BYTES` long, received within `CLIENT_REQUEST_TIMEOUT_MS` of
/// the request's head.
///
/// Errors: as [`RequestBody`]'s (415 for a form too).
#[derive(Debug)]
pub struct BatchBody {
    /// The bytes, as received.
    pub bytes: web::BytesMut,
}

impl FromRequest for BatchBody {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = receive(
            req,
            payload,
            |state| state.batch_max_body_bytes,
            Accept::Json,
        );
        Box::pin(async move { body.await.map(|body| Self { bytes: body.bytes }) })
    }
}

/// The content types a route reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Accept {
    Json,
    JsonOrForm,
}

/// Receives a body of a type `accept` names, at most `limit(state)` bytes long.
fn receive(
    req: &HttpRequest,
    payload: &mut Payload,
    limit: fn(&AppState) -> u64,
    accept: Accept,
) -> LocalBoxFuture<'static, Result<RequestBody, ApiError>> {
    let (limit, timeout) = req
        .app_data::<web::Data<AppState>>()
        .map_or((0, Duration::ZERO), |state| {
            (limit(state), state.body_timeout)
        });
    let declared = check_headers(req, limit, accept);
    let payload = payload.take();
    Box::pin(async move {
        let format = declared?;
        let bytes = tokio::time::timeout(timeout, read_body(payload, limit))
            .await
            .map_err(|_| ApiError::RequestTimeout)??;
        Ok(RequestBody { bytes, format })
    })
}

/// Refuses what the headers already show: a body of a type we do not read (as `accept` says),
/// or declared too long. Else the body's format.
fn check_headers(req: &HttpRequest, limit: u64, accept: Accept) -> Result<BodyFormat, ApiError> {
    let unsupported = ApiError::UnsupportedMediaType {
        forms: accept == Accept::JsonOrForm,
    };
    let format = match req.mime_type().ok().flatten() {
        Some(mime)
            if mime.type_() == mime::APPLICATION
                && (mime.subtype() == mime::JSON || mime.suffix() == Some(mime::JSON)) =>
        {
            BodyFormat::Json
        }
        Some(mime)
            if accept == Accept::JsonOrForm
                && mime.essence_str() == mime::APPLICATION_WWW_FORM_URLENCODED.essence_str() =>
        {
            BodyFormat::Form
        }
        _ => return Err(unsupported),
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    Ok(format)
}

/// Reads the body, refusing it as soon as it grows past `limit` bytes.
async fn read_body(mut payload: Payload, limit: u64) -> Result<web::BytesMut, ApiError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::MalformedJson(format!("cannot read body: {e}")))?;
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The `{id}` of `/products/{id}`; anything that is not an id names no product (404).
#[derive(Debug, Clone, Copy)]
pub struct ProductId(pub i64);

impl FromRequest for ProductId {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let id = req
            .match_info()
            .get("id")
            .and_then(|id| id.parse::<i64>().ok());
        ready(id.map(Self).ok_or(ApiError::ProductNotFound))
    }
}
