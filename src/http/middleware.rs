//! The one middleware every request passes: request id, access log line, HTTP metrics.
//!
//! The request id comes from `X-Request-Id` when it is printable ASCII of at most 128
//! characters, else a fresh UUID. It is echoed on the response, set for the duration of the
//! request in the task-local of `telemetry::request_id` (so every log line and problem+json body
//! of the request carries it), and written in the access-log line.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web;

use crate::http::state::AppState;
use crate::telemetry::request_id::{within_request, within_request_sync};

/// The request-id header, read and echoed.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");
/// Longest accepted incoming request id.
const MAX_REQUEST_ID_CHARS: usize = 128;
/// The `route` label of requests that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

fn acceptable(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_CHARS
        && id.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

/// Assigns the request id, logs one access line and records the HTTP metrics.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let id = req
        .headers()
        .get(&REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable(v))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    let method = req.method().to_string();
    let metrics = req
        .app_data::<web::Data<AppState>>()
        .map(|state| state.metrics.clone());

    let mut response = within_request(Some(id.clone()), next.call(req)).await?;

    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| UNMATCHED_ROUTE.to_owned());
    if let Some(metrics) = metrics {
        metrics.observe_request(&method, &route, status, elapsed);
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    let path = response.request().path().to_owned();
    within_request_sync(Some(id), || {
        log::info!(
            target: "access",
            "{method} {route} {status} {:.2}ms path={path}",
            elapsed.as_secs_f64() * 1000.0
        );
    });
    Ok(response)
}
