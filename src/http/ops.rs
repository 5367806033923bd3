//! Operations endpoints: liveness, readiness and Prometheus metrics.

use actix_web::{web, HttpResponse};
use prometheus::Encoder as _;
use serde::{Deserialize, Serialize};

use super::State;
use crate::errors::ApiError;

/// `/healthz`'s and `/readyz`'s answer.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok` (healthz) or `ready` (readyz).
    pub status: String,
}

/// A project as `GET /api/v1/projects` and the config list it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProjectInfo {
    pub name: String,
    pub public: bool,
    /// Its own prefix lifetime, when it has one (the config route only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_expiration: Option<f64>,
}

/// `GET /api/v1/projects`'s answer.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProjectList {
    pub projects: Vec<ProjectInfo>,
}

/// The effective public configuration (never tokens).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PublicConfig {
    pub prefix_expiration: f64,
    /// Where archives are kept.
    pub archive: String,
    #[schema(value_type = Object)]
    pub archival: crate::config::ArchivalConfig,
    #[schema(value_type = Object)]
    pub limits: crate::config::Limits,
    #[schema(value_type = Object)]
    pub websocket: crate::config::WebsocketConfig,
    pub projects: Vec<ProjectInfo>,
}

/// The process is up.
#[utoipa::path(
    get, path = "/healthz", tag = "Operations",
    responses((status = 200, description = "The process is up", body = Health))
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: "ok".into(),
    })
}

/// Storage answers and every migration is applied.
#[utoipa::path(
    get, path = "/readyz", tag = "Operations",
    responses((status = 200, description = "Storage reachable, migrations applied", body = Health), (status = 503, description = "unavailable", body = crate::errors::ErrorBody))
)]
pub async fn readyz(state: State) -> Result<HttpResponse, ApiError> {
    let store = state.store.clone();
    super::blocking(move || {
        store
            .ready()
            .map_err(|e| ApiError::unavailable(format!("storage not ready: {e}")))
    })
    .await?;
    Ok(HttpResponse::Ok().json(Health {
        status: "ready".into(),
    }))
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
    // Kept by the archive stores themselves (they are opened before the registry).
    out.extend_from_slice(
        format!(
            "# HELP logdog_archive_read_bytes_total Bytes read from archive stores by reads of entries and indexes\n# TYPE logdog_archive_read_bytes_total counter\nlogdog_archive_read_bytes_total {}\n",
            state.archive.read_bytes()
        )
        .as_bytes(),
    );
    // Read from the queue itself, so it is right after a restart too; left out while the
    // database is away (the rest of the page still answers).
    let store = state.store.clone();
    if let Ok(Ok(n)) = web::block(move || store.read(logdog_schema::store::count_deletions)).await {
        out.extend_from_slice(
            format!(
                "# HELP logdog_archive_deletions_pending Purged or deleted streams whose archive objects are still to be removed\n# TYPE logdog_archive_deletions_pending gauge\nlogdog_archive_deletions_pending {n}\n"
            )
            .as_bytes(),
        );
    }
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(out))
}

/// `GET /api/v1/config` (service): the effective public config, without tokens.
#[utoipa::path(
    get, path = "/api/v1/config", tag = "Operations",
    responses((status = 200, description = "The effective public config", body = PublicConfig), (status = 401, description = "unauthenticated", body = crate::errors::ErrorBody), (status = 403, description = "permission_denied (or the project is not visible)", body = crate::errors::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn config(state: State, req: actix_web::HttpRequest) -> Result<HttpResponse, ApiError> {
    state.require_service(&req)?;
    let c = &state.config;
    let projects = c
        .projects
        .iter()
        .map(|p| ProjectInfo {
            name: p.name.clone(),
            public: p.public,
            prefix_expiration: p.prefix_expiration.map(|d| d.as_secs_f64()),
        })
        .collect();
    Ok(HttpResponse::Ok().json(PublicConfig {
        prefix_expiration: c.prefix_expiration.as_secs_f64(),
        archive: c.archive.clone(),
        archival: c.archival.clone(),
        limits: c.limits.clone(),
        websocket: c.websocket.clone(),
        projects,
    }))
}

/// `GET /api/v1/projects`: the projects the caller may read.
#[utoipa::path(
    get, path = "/api/v1/projects", tag = "Operations",
    responses((status = 200, description = "Projects the caller may read", body = ProjectList)),
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
        .map(|p| ProjectInfo {
            name: p.name.clone(),
            public: p.public,
            prefix_expiration: None,
        })
        .collect();
    Ok(HttpResponse::Ok().json(ProjectList { projects: visible }))
}
