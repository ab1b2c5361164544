//! Probes: `/healthz` (liveness, no database) and `/readyz` (a pooled connection answers and the
//! latest migration is applied).

use std::time::Duration;

use actix_web::{HttpResponse, web};
use deadpool::managed::{Object, Timeouts};
use serde::Serialize;

use crate::db;
use crate::error::ApiError;
use crate::startup::AppState;
use crate::store;

/// How long readiness may take to find out.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Serialize, utoipa::ToSchema)]
pub struct Status {
    /// `ok` (live) or `ready`.
    status: &'static str,
}

/// Liveness: 200 while the process serves HTTP. Never touches the database.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is alive", body = Status)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Status { status: "ok" })
}

/// Readiness: 200 when a pooled connection answers within 2 s and the newest embedded migration
/// is recorded as applied; else 503 with the reason.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready to serve", body = Status),
        (status = 503, description = "Not ready; `detail` says why", body = crate::error::Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let timeouts = Timeouts {
        wait: Some(READY_TIMEOUT),
        create: Some(READY_TIMEOUT),
        recycle: Some(READY_TIMEOUT),
    };
    let mut conn = state
        .pool
        .timeout_get(&timeouts)
        .await
        .map_err(|e| ApiError::NotReady(format!("no database connection: {e}")))?;
    let latest = db::latest_migration_version();
    let answer = tokio::time::timeout(READY_TIMEOUT, store::migration_applied(&mut conn, &latest))
        .await
        .map_err(|_| "the database did not answer in time".to_owned())
        .and_then(|r| r.map_err(|e| format!("the database failed a query: {e}")));
    let applied = match answer {
        Ok(applied) => applied,
        Err(reason) => {
            // The connection may be broken, and its idle siblings with it: never hand them out.
            drop(Object::take(conn));
            state.pool.retain(|_, _| false);
            return Err(ApiError::NotReady(reason));
        }
    };
    if applied {
        Ok(HttpResponse::Ok().json(Status { status: "ready" }))
    } else {
        Err(ApiError::NotReady(format!(
            "migration {latest} is not applied"
        )))
    }
}
