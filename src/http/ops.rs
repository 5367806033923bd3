//! Operations endpoints: liveness, readiness and Prometheus metrics.

use actix_web::{web, HttpResponse};
use prometheus::Encoder as _;

use super::State;
use crate::errors::ApiError;

/// The process is up.
#[utoipa::path(
    get, path = "/healthz", tag = "Operations",
    responses((status = 200, description = "The process is up"))
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// Storage answers and every migration is applied.
#[utoipa::path(
    get, path = "/readyz", tag = "Operations",
    responses((status = 200, description = "Storage reachable, migrations applied"), (status = 503, description = "unavailable", body = crate::http::openapi::ErrorBody))
)]
pub async fn readyz(state: State) -> Result<HttpResponse, ApiError> {
    let store = state.store.clone();
    match web::block(move || store.ready()).await {
        Ok(Ok(())) => Ok(HttpResponse::Ok().json(serde_json::json!({"status": "ready"}))),
        Ok(Err(e)) => Err(ApiError::unavailable(format!("storage not ready: {e}"))),
        Err(e) => Err(ApiError::internal(e)),
    }
}

/// Prometheus text format.
#[utoipa::path(
    get, path = "/metrics", tag = "Operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain"))
)]
pub async fn metrics(state: State) -> Result<HttpResponse, ApiError> {
    let mut out = Vec::new();
    prometheus::TextEncoder::new()
        .encode(&state.prometheus.gather(), &mut out)
        .map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(out))
}

/// `GET /api/v1/config` (service): the effective public config, without tokens.
#[utoipa::path(
    get, path = "/api/v1/config", tag = "Operations",
    responses((status = 200, description = "The effective public config", body = crate::http::openapi::PublicConfig), (status = 401, description = "unauthenticated", body = crate::http::openapi::ErrorBody), (status = 403, description = "permission_denied (or the project is not visible)", body = crate::http::openapi::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn config(state: State, req: actix_web::HttpRequest) -> Result<HttpResponse, ApiError> {
    state.require_service(&req)?;
    let c = &state.config;
    let projects: Vec<_> = c
        .projects
        .iter()
        .map(|p| serde_json::json!({"name": p.name, "public": p.public, "prefix_expiration": p.prefix_expiration}))
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "prefix_expiration": c.prefix_expiration,
        "archive": c.archive,
        "archival": c.archival,
        "limits": c.limits,
        "websocket": c.websocket,
        "projects": projects,
    })))
}

/// `GET /api/v1/projects`: the projects the caller may read.
#[utoipa::path(
    get, path = "/api/v1/projects", tag = "Operations",
    responses((status = 200, description = "Projects the caller may read", body = crate::http::openapi::ProjectList)),
    security((), ("bearer" = []))
)]
pub async fn projects(state: State, req: actix_web::HttpRequest) -> Result<HttpResponse, ApiError> {
    state.auth.authenticate(&req)?;
    let visible: Vec<_> = state
        .config
        .projects
        .iter()
        .filter(|p| {
            state
                .auth
                .check(&state.config, &req, &p.name, crate::auth::Access::Read)
                .is_ok()
        })
        .map(|p| serde_json::json!({"name": p.name, "public": p.public}))
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "projects": visible })))
}
