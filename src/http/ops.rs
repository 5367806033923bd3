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

/// How long `/metrics` waits for the database for its stored figures; without an answer
/// by then they are left out, and the in-memory ones still answer at once.
const METRICS_DB_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

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
    let deletions = web::block(move || store.read(logdog_schema::store::count_deletions));
    if let Ok(Ok(Ok(n))) = tokio::time::timeout(METRICS_DB_WAIT, deletions).await {
        out.extend_from_slice(
            format!(
                "# HELP logdog_archive_deletions_pending Purged or deleted streams whose archive objects are still to be removed\n# TYPE logdog_archive_deletions_pending gauge\nlogdog_archive_deletions_pending {n}\n"
            )
            .as_bytes(),
        );
    }
    if let Some(m) = state.cluster.clone() {
        use std::fmt::Write as _;
        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        let mut text = format!(
            "# HELP logdog_cluster_heartbeat_failures_total Heartbeats of this node that did not commit\n# TYPE logdog_cluster_heartbeat_failures_total counter\nlogdog_cluster_heartbeat_failures_total {}\n\
             # HELP logdog_cluster_forwards_total Requests this node forwarded to a stream's owner, by outcome (ok: the owner answered)\n# TYPE logdog_cluster_forwards_total counter\n\
             logdog_cluster_forwards_total{{outcome=\"ok\"}} {}\nlogdog_cluster_forwards_total{{outcome=\"failed\"}} {}\n\
             # HELP logdog_cluster_forwarded_in_total Requests other nodes forwarded to this one\n# TYPE logdog_cluster_forwarded_in_total counter\nlogdog_cluster_forwarded_in_total {}\n\
             # HELP logdog_cluster_remote_seals_total Archive tasks' streams this node asked their owner to seal, by outcome (ok: sealed)\n# TYPE logdog_cluster_remote_seals_total counter\n\
             logdog_cluster_remote_seals_total{{outcome=\"ok\"}} {}\nlogdog_cluster_remote_seals_total{{outcome=\"failed\"}} {}\n\
             # HELP logdog_cluster_wakeups_total Notifications of other nodes' commits this node received (live tail)\n# TYPE logdog_cluster_wakeups_total counter\nlogdog_cluster_wakeups_total {}\n\
             # HELP logdog_cluster_listens_total Times this node's notification listener connected\n# TYPE logdog_cluster_listens_total counter\nlogdog_cluster_listens_total {}\n",
            load(&m.heartbeat_failures),
            load(&m.forwards_ok),
            load(&m.forwards_failed),
            load(&m.forwarded_in),
            load(&m.seals_ok),
            load(&m.seals_failed),
            load(&m.wakeups),
            load(&m.listens),
        );
        let timeout = m.config.node_timeout.as_micros() as i64;
        let nodes = web::block(move || m.nodes());
        if let Ok(Ok(Ok(rows))) = tokio::time::timeout(METRICS_DB_WAIT, nodes).await {
            text.push_str("# HELP logdog_cluster_nodes Nodes of the cluster by state\n# TYPE logdog_cluster_nodes gauge\n");
            for st in ["live", "dead", "stopped"] {
                let n = rows
                    .iter()
                    .filter(|(r, _)| r.state(timeout).as_str() == st)
                    .count();
                let _ = writeln!(text, "logdog_cluster_nodes{{state=\"{st}\"}} {n}");
            }
            text.push_str("# HELP logdog_cluster_owned_streams Streams each node owns (claims not released)\n# TYPE logdog_cluster_owned_streams gauge\n");
            for (r, owned) in &rows {
                let _ = writeln!(
                    text,
                    "logdog_cluster_owned_streams{{node=\"{}\",advertise=\"{}\"}} {owned}",
                    r.node_id, r.advertise
                );
            }
        }
        out.extend_from_slice(text.as_bytes());
    }
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(out))
}

/// `GET /api/v1/cluster`: the coordinators sharing this database.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClusterJson {
    /// The node that answered.
    pub node_id: String,
    pub heartbeat_interval: f64,
    pub node_timeout: f64,
    /// Every node row, oldest start first (dead and stopped nodes are kept for a day).
    pub nodes: Vec<NodeJson>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeJson {
    pub node_id: String,
    /// How the other nodes reach it.
    pub advertise: String,
    /// `live`, `dead` (no heartbeat for `node_timeout`) or `stopped` (left gracefully).
    #[schema(pattern = "^(live|dead|stopped)$")]
    pub state: String,
    pub started: String,
    pub heartbeat: String,
    /// Milliseconds since its last heartbeat, by the database's clock.
    pub heartbeat_age_ms: i64,
    /// How many streams it owns (claims it has not released; a dead node's are taken
    /// over one by one as requests for them arrive).
    pub streams: i64,
}

/// `GET /api/v1/cluster` (service): the cluster's nodes; 412 when not in cluster mode.
#[utoipa::path(
    get, path = "/api/v1/cluster", tag = "Operations",
    responses((status = 200, description = "The cluster's nodes", body = ClusterJson), (status = 401, description = "unauthenticated", body = crate::errors::ErrorBody), (status = 403, description = "permission_denied", body = crate::errors::ErrorBody), (status = 412, description = "failed_precondition: not in cluster mode", body = crate::errors::ErrorBody), (status = 503, description = "unavailable", body = crate::errors::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn cluster(state: State, req: actix_web::HttpRequest) -> Result<HttpResponse, ApiError> {
    state.require_service(&req)?;
    let Some(m) = state.cluster.clone() else {
        return Err(ApiError::failed_precondition(
            "this coordinator is not in cluster mode ([cluster] advertise is not set)",
        ));
    };
    let timeout = m.config.node_timeout.as_micros() as i64;
    let rows = {
        let m = m.clone();
        web::block(move || m.nodes())
            .await
            .map_err(ApiError::internal)??
    };
    let nodes = rows
        .into_iter()
        .map(|(r, streams)| NodeJson {
            streams,
            state: r.state(timeout).as_str().to_owned(),
            started: logdog_schema::wire::format_us(r.started_us),
            heartbeat: logdog_schema::wire::format_us(r.heartbeat_us),
            heartbeat_age_ms: (r.now_us - r.heartbeat_us) / 1000,
            node_id: r.node_id,
            advertise: r.advertise,
        })
        .collect();
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(ClusterJson {
            node_id: m.node_id.clone(),
            heartbeat_interval: m.config.heartbeat_interval.as_secs_f64(),
            node_timeout: m.config.node_timeout.as_secs_f64(),
            nodes,
        }))
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
