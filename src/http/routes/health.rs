//! Probes: `/healthz` (liveness, no database) and `/readyz` (a pooled connection answers and the
//! latest migration is applied).

use actix_web::{HttpResponse, web};
use serde::Serialize;

use crate::http::problem::ApiError;
use crate::http::schemas::NotReady;
use crate::http::state::AppState;

/// The body of a probe that succeeded.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Status {
    /// `ok` (live) or `ready`.
    status: &'static str,
}

/// Liveness: 200 while the process serves HTTP. Never touches the database.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "The process is alive", body = Status))
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Status { status: "ok" })
}

/// Readiness: 200 when a pooled connection answers within 2 s and the newest embedded migration
/// is recorded as applied; else 503 with the reason.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses((status = 200, description = "Ready to serve", body = Status), NotReady)
)]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.service.ready().await?;
    Ok(HttpResponse::Ok().json(Status { status: "ready" }))
}
