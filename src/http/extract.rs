//! Extractors: the JSON request body and the product id of `/products/{id}`.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpMessage as _, HttpRequest, web};
use futures_util::StreamExt as _;
use futures_util::future::{LocalBoxFuture, Ready, ready};

use crate::http::problem::ApiError;
use crate::http::state::AppState;

/// A request body declared as JSON (`application/json` or any `+json` type), at most
/// `MAX_BODY_BYTES` long. Its bytes are parsed by the domain, not here.
///
/// Errors: 415 unless the body is declared JSON; 413 when `Content-Length` or the bytes received
/// exceed the limit (RFC 9110, sections 15.5.16 and 15.5.14).
#[derive(Debug)]
pub struct JsonBody(pub web::BytesMut);

impl FromRequest for JsonBody {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req
            .app_data::<web::Data<AppState>>()
            .map_or(0, |state| state.max_body_bytes);
        let declared = check_headers(req, limit);
        let payload = payload.take();
        Box::pin(async move {
            declared?;
            read_body(payload, limit).await.map(JsonBody)
        })
    }
}

/// Refuses what the headers already show: a body not declared JSON, or declared too long.
fn check_headers(req: &HttpRequest, limit: u64) -> Result<(), ApiError> {
    let is_json = req.mime_type().ok().flatten().is_some_and(|mime| {
        mime.type_() == mime::APPLICATION
            && (mime.subtype() == mime::JSON || mime.suffix() == Some(mime::JSON))
    });
    if !is_json {
        return Err(ApiError::UnsupportedMediaType);
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    Ok(())
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
