//! Archival (the Archivist side): lease, renew and complete archive tasks.

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use logdog_actors::dispatcher::{Complete, Lease, LeasedTask, Outcome, Renew};
use logdog_schema::wire::{format_us, now_us, ArchiveInfo};
use serde::{Deserialize, Serialize};

use super::{parse_json, read_body, State};
use crate::errors::ApiError;

/// A leased archive task, as lease and renew answer it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ArchiveTask {
    pub task_id: String,
    /// Renew and complete must carry it.
    pub lease_id: String,
    pub project: String,
    pub path: String,
    /// The stream's id (hex SHA-256 of its path).
    pub id: String,
    /// 1 on the first hand-out, one more on each later one.
    pub attempt: u32,
    /// terminated, incomplete or expired.
    pub reason: String,
    pub lease_expires_at: String,
}

impl From<&LeasedTask> for ArchiveTask {
    fn from(t: &LeasedTask) -> Self {
        Self {
            task_id: t.task_id.clone(),
            lease_id: t.lease_id.clone(),
            project: t.project.clone(),
            path: t.path.clone(),
            id: t.id.clone(),
            attempt: t.attempt.max(0) as u32,
            reason: t.reason.clone(),
            lease_expires_at: format_us(t.lease_expires_us),
        }
    }
}

/// lease's answer.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LeaseResponse {
    pub tasks: Vec<ArchiveTask>,
}

fn lease_duration(seconds: f64) -> Result<Duration, ApiError> {
    if !(1.0..=3600.0).contains(&seconds) {
        return Err(ApiError::invalid(format!(
            "lease_seconds must be from 1 to 3600, got {seconds}"
        )));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// The service-role check and the body (every archive-task route has one); the token's
/// project scope, as a list for the dispatcher (None: every project).
async fn service_body(
    state: &State,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<(bytes::Bytes, Option<Vec<String>>), ApiError> {
    let scope = state.require_service(req)?;
    let body = read_body(state, req, payload).await?;
    Ok((body, scope.projects().map(<[String]>::to_vec)))
}

/// lease's request (an empty body takes every default).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaseRequest {
    /// 1–100; default 1.
    #[serde(default = "one")]
    pub max_tasks: usize,
    /// 1–3600; default 600.
    #[serde(default = "default_lease")]
    pub lease_seconds: f64,
    /// 0–60: how long to wait for a due task; default 0.
    #[serde(default)]
    pub wait_seconds: f64,
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
    request_body = LeaseRequest,
    responses((status = 200, description = "Due tasks (long poll); leasing seals their streams", body = LeaseResponse), (status = 400, description = "invalid_argument", body = crate::errors::ErrorBody), (status = 401, description = "unauthenticated", body = crate::errors::ErrorBody), (status = 403, description = "permission_denied (or the project is not visible)", body = crate::errors::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn lease(
    state: State,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (body, projects) = service_body(&state, &req, payload).await?;
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
        projects,
    };
    let tasks = state
        .dispatcher
        .send(msg)
        .await
        .map_err(ApiError::internal)??;
    Ok(HttpResponse::Ok().json(LeaseResponse {
        tasks: tasks.iter().map(ArchiveTask::from).collect(),
    }))
}

/// renew's request.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenewRequest {
    pub lease_id: String,
    /// 1–3600; default 600.
    #[serde(default = "default_lease")]
    pub lease_seconds: f64,
}

/// `POST /api/v1/archive-tasks/{task_id}/renew`.
#[utoipa::path(
    post, path = "/api/v1/archive-tasks/{task_id}/renew", tag = "Archival",
    params(("task_id" = String, Path)), request_body = RenewRequest,
    responses((status = 200, description = "The task", body = ArchiveTask), (status = 400, description = "invalid_argument", body = crate::errors::ErrorBody), (status = 401, description = "unauthenticated", body = crate::errors::ErrorBody), (status = 403, description = "permission_denied (or the project is not visible)", body = crate::errors::ErrorBody), (status = 404, description = "not_found", body = crate::errors::ErrorBody), (status = 412, description = "failed_precondition", body = crate::errors::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn renew(
    state: State,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (body, projects) = service_body(&state, &req, payload).await?;
    let r: RenewRequest = parse_json(&req, &body, false).map_err(ApiError::invalid)?;
    let task_id = req.match_info().query("task_id").to_owned();
    let msg = Renew {
        task_id,
        lease_id: r.lease_id,
        lease: lease_duration(r.lease_seconds)?,
        projects,
    };
    let task = state
        .dispatcher
        .send(msg)
        .await
        .map_err(ApiError::internal)??;
    Ok(HttpResponse::Ok().json(ArchiveTask::from(&task)))
}

/// ArchiveStream: a success carries the archive's URLs, sizes and entry count; a failure
/// carries `error`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    pub lease_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminal_index: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_entry_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_size: Option<u64>,
}

/// `POST /api/v1/archive-tasks/{task_id}/complete`: ArchiveStream, success or failure.
#[utoipa::path(
    post, path = "/api/v1/archive-tasks/{task_id}/complete", tag = "Archival",
    params(("task_id" = String, Path)), request_body = CompleteRequest,
    responses((status = 200, description = "The stream (archived), or the failure recorded", body = logdog_schema::wire::StreamJson),
              (status = 400, description = "invalid_argument", body = crate::errors::ErrorBody), (status = 401, description = "unauthenticated", body = crate::errors::ErrorBody), (status = 403, description = "permission_denied (or the project is not visible)", body = crate::errors::ErrorBody), (status = 404, description = "not_found", body = crate::errors::ErrorBody), (status = 409, description = "already_exists or conflict", body = crate::errors::ErrorBody), (status = 412, description = "failed_precondition", body = crate::errors::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn complete(
    state: State,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (body, projects) = service_body(&state, &req, payload).await?;
    let r: CompleteRequest = parse_json(&req, &body, false).map_err(ApiError::invalid)?;
    let task_id = req.match_info().query("task_id").to_owned();
    let outcome = match r.error {
        Some(error) => Outcome::Failed { error },
        None => {
            let missing = |f: &str| ApiError::invalid(format!("a successful completion needs {f}"));
            let terminal_index = r.terminal_index.ok_or_else(|| missing("terminal_index"))?;
            if terminal_index < -1 {
                return Err(ApiError::invalid("terminal_index must be -1 or more"));
            }
            let claim = crate::archive::Written {
                stream_url: r.stream_url.ok_or_else(|| missing("stream_url"))?,
                stream_size: r.stream_size.ok_or_else(|| missing("stream_size"))?,
                index_url: r.index_url.ok_or_else(|| missing("index_url"))?,
                index_size: r.index_size.ok_or_else(|| missing("index_size"))?,
                data_url: r.data_url.ok_or_else(|| missing("data_url"))?,
                data_size: r.data_size.ok_or_else(|| missing("data_size"))?,
                log_entry_count: r
                    .log_entry_count
                    .ok_or_else(|| missing("log_entry_count"))?,
            };
            verify_archive(&state, &task_id, &r.lease_id, &claim, terminal_index).await?;
            let log_entry_count = claim.log_entry_count;
            Outcome::Archived {
                terminal_index,
                log_entry_count,
                archive: ArchiveInfo {
                    stream_url: claim.stream_url,
                    index_url: claim.index_url,
                    data_url: claim.data_url,
                    log_entry_count,
                    complete: log_entry_count as i64 == terminal_index + 1,
                    archived_at: format_us(now_us()),
                },
            }
        }
    };
    let stream = state
        .dispatcher
        .send(Complete {
            task_id,
            lease_id: r.lease_id,
            outcome,
            projects,
        })
        .await
        .map_err(ApiError::internal)??;
    Ok(HttpResponse::Ok().json(stream))
}

/// Checks the reported archive against the store before anything is released: it must
/// be this task's stream and lease, in the configured store, with the claimed sizes
/// (409 otherwise). A task that is unknown, finished or leased to someone else is left
/// for the dispatcher to answer (412, or the repeat of a finished completion).
async fn verify_archive(
    state: &State,
    task_id: &str,
    lease_id: &str,
    claim: &crate::archive::Written,
    terminal_index: i64,
) -> Result<(), ApiError> {
    let (store, archive) = (state.store.clone(), state.archive.clone());
    let (task_id, lease_id, claim) = (task_id.to_owned(), lease_id.to_owned(), claim.clone());
    web::block(move || {
        let row = store.read(|c| logdog_schema::store::get_task_by_id(c, &task_id))?;
        let Some(row) = row else { return Ok(()) };
        if row.lease_id.as_deref() != Some(lease_id.as_str())
            || row.due_us == logdog_schema::store::TASK_DONE
        {
            return Ok(());
        }
        match archive.verify(&row.project, &row.stream_id, &lease_id, &claim, terminal_index) {
            Ok(()) => Ok(()),
            Err(crate::archive::ArchiveError::Io(e)) => {
                tracing::warn!(error = %e, task = %task_id, "archive store unreachable while verifying");
                Err(ApiError::unavailable("the archive store is unavailable; retry later"))
            }
            Err(e) => Err(ApiError::conflict(format!("archive refused: {e}"))),
        }
    })
    .await
    .map_err(ApiError::internal)?
}
