//! Archival (the Archivist side): lease, renew and complete archive tasks.

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use logdog_actors::dispatcher::{Complete, Lease, LeasedTask, Outcome, Renew};
use logdog_schema::wire::{format_us, now_us, ArchiveInfo};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{parse_json, read_body, State};
use crate::errors::ApiError;

fn task_json(t: &LeasedTask) -> Value {
    json!({
        "task_id": t.task_id, "lease_id": t.lease_id, "project": t.project, "path": t.path,
        "id": t.id, "attempt": t.attempt, "reason": t.reason,
        "lease_expires_at": format_us(t.lease_expires_us),
    })
}

fn lease_duration(seconds: f64) -> Result<Duration, ApiError> {
    if !(1.0..=3600.0).contains(&seconds) {
        return Err(ApiError::invalid(format!(
            "lease_seconds must be from 1 to 3600, got {seconds}"
        )));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// The service-role check and the body (every archive-task route has one).
async fn service_body(
    state: &State,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<bytes::Bytes, ApiError> {
    state.require_service(req)?;
    read_body(req, payload, state.max_request_bytes()).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LeaseRequest {
    #[serde(default = "one")]
    max_tasks: usize,
    #[serde(default = "default_lease")]
    lease_seconds: f64,
    #[serde(default)]
    wait_seconds: f64,
}

fn one() -> usize {
    1
}

fn default_lease() -> f64 {
    600.0
}

/// `POST /api/v1/archive-tasks/lease`: due tasks, waiting up to `wait_seconds` for one.
#[utoipa::path(
    post, path = "/api/v1/archive-tasks/lease", tag = "Archival",
    request_body = crate::http::openapi::LeaseRequest,
    responses((status = 200, description = "Due tasks (long poll); leasing seals their streams", body = crate::http::openapi::LeaseResponse), (status = 400, description = "invalid_argument", body = crate::http::openapi::ErrorBody), (status = 401, description = "unauthenticated", body = crate::http::openapi::ErrorBody), (status = 403, description = "permission_denied (or the project is not visible)", body = crate::http::openapi::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn lease(
    state: State,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = service_body(&state, &req, payload).await?;
    let r: LeaseRequest = parse_json(&req, &body, true).map_err(ApiError::invalid)?;
    if !(1..=100).contains(&r.max_tasks) {
        return Err(ApiError::invalid("max_tasks must be from 1 to 100"));
    }
    if !(0.0..=60.0).contains(&r.wait_seconds) {
        return Err(ApiError::invalid("wait_seconds must be from 0 to 60"));
    }
    let msg = Lease {
        max_tasks: r.max_tasks,
        lease: lease_duration(r.lease_seconds)?,
        wait: Duration::from_secs_f64(r.wait_seconds),
    };
    let tasks = state
        .dispatcher
        .send(msg)
        .await
        .map_err(ApiError::internal)??;
    Ok(HttpResponse::Ok().json(json!({"tasks": tasks.iter().map(task_json).collect::<Vec<_>>()})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RenewRequest {
    lease_id: String,
    #[serde(default = "default_lease")]
    lease_seconds: f64,
}

/// `POST /api/v1/archive-tasks/{task_id}/renew`.
#[utoipa::path(
    post, path = "/api/v1/archive-tasks/{task_id}/renew", tag = "Archival",
    params(("task_id" = String, Path)), request_body = crate::http::openapi::RenewRequest,
    responses((status = 200, description = "The task", body = crate::http::openapi::ArchiveTask), (status = 400, description = "invalid_argument", body = crate::http::openapi::ErrorBody), (status = 401, description = "unauthenticated", body = crate::http::openapi::ErrorBody), (status = 403, description = "permission_denied (or the project is not visible)", body = crate::http::openapi::ErrorBody), (status = 404, description = "not_found", body = crate::http::openapi::ErrorBody), (status = 412, description = "failed_precondition", body = crate::http::openapi::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn renew(
    state: State,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = service_body(&state, &req, payload).await?;
    let r: RenewRequest = parse_json(&req, &body, false).map_err(ApiError::invalid)?;
    let task_id = req.match_info().query("task_id").to_owned();
    let msg = Renew {
        task_id,
        lease_id: r.lease_id,
        lease: lease_duration(r.lease_seconds)?,
    };
    let task = state
        .dispatcher
        .send(msg)
        .await
        .map_err(ApiError::internal)??;
    Ok(HttpResponse::Ok().json(task_json(&task)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CompleteRequest {
    lease_id: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    terminal_index: Option<i64>,
    #[serde(default)]
    log_entry_count: Option<u64>,
    #[serde(default)]
    stream_url: Option<String>,
    #[serde(default)]
    stream_size: Option<u64>,
    #[serde(default)]
    index_url: Option<String>,
    #[serde(default)]
    index_size: Option<u64>,
    #[serde(default)]
    data_url: Option<String>,
    #[serde(default)]
    data_size: Option<u64>,
}

/// `POST /api/v1/archive-tasks/{task_id}/complete`: ArchiveStream, success or failure.
#[utoipa::path(
    post, path = "/api/v1/archive-tasks/{task_id}/complete", tag = "Archival",
    params(("task_id" = String, Path)), request_body = crate::http::openapi::CompleteRequest,
    responses((status = 200, description = "The stream (archived), or the failure recorded", body = logdog_schema::wire::StreamJson),
              (status = 400, description = "invalid_argument", body = crate::http::openapi::ErrorBody), (status = 401, description = "unauthenticated", body = crate::http::openapi::ErrorBody), (status = 403, description = "permission_denied (or the project is not visible)", body = crate::http::openapi::ErrorBody), (status = 404, description = "not_found", body = crate::http::openapi::ErrorBody), (status = 409, description = "already_exists or conflict", body = crate::http::openapi::ErrorBody), (status = 412, description = "failed_precondition", body = crate::http::openapi::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn complete(
    state: State,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = service_body(&state, &req, payload).await?;
    let r: CompleteRequest = parse_json(&req, &body, false).map_err(ApiError::invalid)?;
    let outcome = match r.error {
        Some(error) => Outcome::Failed { error },
        None => {
            let missing = |f: &str| ApiError::invalid(format!("a successful completion needs {f}"));
            let terminal_index = r.terminal_index.ok_or_else(|| missing("terminal_index"))?;
            let log_entry_count = r
                .log_entry_count
                .ok_or_else(|| missing("log_entry_count"))?;
            let _sizes = (r.stream_size, r.index_size, r.data_size);
            Outcome::Archived {
                terminal_index,
                log_entry_count,
                archive: ArchiveInfo {
                    stream_url: r.stream_url.ok_or_else(|| missing("stream_url"))?,
                    index_url: r.index_url.ok_or_else(|| missing("index_url"))?,
                    data_url: r.data_url.ok_or_else(|| missing("data_url"))?,
                    log_entry_count,
                    complete: log_entry_count as i64 == terminal_index + 1,
                    archived_at: format_us(now_us()),
                },
            }
        }
    };
    let task_id = req.match_info().query("task_id").to_owned();
    let stream = state
        .dispatcher
        .send(Complete {
            task_id,
            lease_id: r.lease_id,
            outcome,
        })
        .await
        .map_err(ApiError::internal)??;
    Ok(HttpResponse::Ok().json(stream))
}
