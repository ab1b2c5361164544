//! `GET /metrics`: the Prometheus text exposition of the app's own registry.

use actix_web::{HttpResponse, web};

use crate::http::problem::ApiError;
use crate::http::state::AppState;

/// Prometheus metrics (text format 0.0.4). Served here unless `METRICS_ADDR` is set, which
/// moves it to that address (then this path is a 404).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text exposition", body = String,
        content_type = "text/plain; version=0.0.4"))
)]
pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let text = state
        .metrics
        .render(state.service.pool_status())
        .map_err(|e| ApiError::Internal(format!("metrics encoding: {e}")))?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text))
}
