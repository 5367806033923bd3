//! Archival (the Archivist side): lease, renew and complete archive tasks.

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use logdog_actors::dispatcher::{Complete, Lease, LeasedTask, Outcome, Renew};
use logdog_actors::ActorError;
use logdog_schema::wire::{format_us, now_us, ArchiveInfo, TaskReason};
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
    pub reason: TaskReason,
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
            reason: t.reason,
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
    #[schema(minimum = 1, maximum = 100)]
    pub max_tasks: usize,
    /// 1–3600; default 600.
    #[serde(default = "default_lease")]
    #[schema(minimum = 1, maximum = 3600)]
    pub lease_seconds: f64,
    /// 0–60: how long to wait for a due task; default 0.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 60)]
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
    request_body(content = Option<LeaseRequest>, description = "May be empty: every field has a default"),
    responses((status = 200, description = "Due tasks (long poll); leasing seals their streams", body = LeaseResponse), (status = 400, description = "invalid_argument", body = crate::errors::ErrorBody), (status = 401, description = "unauthenticated", body = crate::errors::ErrorBody), (status = 403, description = "permission_denied (or the project is not visible)", body = crate::errors::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn lease(
    state: State,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (body, projects) = service_body(&state, &req, payload).await?;
    // The body is optional (every field has a default): empty or `null` means `{}`.
    let body = if body.trim_ascii() == b"null" {
        bytes::Bytes::new()
    } else {
        body
    };
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
    #[schema(minimum = 1, maximum = 3600)]
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

/// ArchiveStream's request: the archive that was written, or why none could be.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum CompleteRequest {
    Failed(CompleteFailed),
    Archived(CompleteArchived),
}

/// A failed attempt: retried with backoff, `failed` after `max_attempts`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteFailed {
    pub lease_id: String,
    /// What went wrong, kept as the stream's `archive_error` on the last attempt.
    pub error: String,
}

/// A written archive: its objects (this task's lease, in the coordinator's store), their
/// sizes and the entries it holds. Checked against the store before it is believed.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteArchived {
    pub lease_id: String,
    /// The stream's terminal index (-1 for an empty stream).
    #[schema(minimum = -1, maximum = 9007199254740991_i64)]
    pub terminal_index: i64,
    #[schema(maximum = 9007199254740992_u64)]
    pub log_entry_count: u64,
    pub stream_url: String,
    pub stream_size: u64,
    pub index_url: String,
    pub index_size: u64,
    pub data_url: String,
    pub data_size: u64,
}

impl CompleteArchived {
    /// The report of an archive this task's lease wrote.
    pub fn new(lease_id: String, terminal_index: i64, w: crate::archive::Written) -> Self {
        Self {
            lease_id,
            terminal_index,
            log_entry_count: w.log_entry_count,
            stream_url: w.stream_url,
            stream_size: w.stream_size,
            index_url: w.index_url,
            index_size: w.index_size,
            data_url: w.data_url,
            data_size: w.data_size,
        }
    }

    /// The archive the report claims was written.
    pub fn written(&self) -> crate::archive::Written {
        crate::archive::Written {
            stream_url: self.stream_url.clone(),
            stream_size: self.stream_size,
            index_url: self.index_url.clone(),
            index_size: self.index_size,
            data_url: self.data_url.clone(),
            data_size: self.data_size,
            log_entry_count: self.log_entry_count,
        }
    }
}

impl CompleteRequest {
    /// Parses the body as the failure when it carries `error`, else as the archive, so a
    /// mistake is reported by field rather than as "matches no variant".
    fn parse(req: &HttpRequest, body: &[u8]) -> Result<Self, ApiError> {
        let mut v: serde_json::Value = parse_json(req, body, false).map_err(ApiError::invalid)?;
        super::integral_floats_to_integers(&mut v);
        let invalid = |e: serde_json::Error| ApiError::invalid(format!("invalid JSON body: {e}"));
        if v.get("error").is_some() {
            serde_json::from_value(v).map(Self::Failed).map_err(invalid)
        } else {
            serde_json::from_value(v)
                .map(Self::Archived)
                .map_err(invalid)
        }
    }
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
    let task_id = req.match_info().query("task_id").to_owned();
    let (lease_id, outcome) = match CompleteRequest::parse(&req, &body)? {
        CompleteRequest::Failed(f) => (f.lease_id, Outcome::Failed { error: f.error }),
        CompleteRequest::Archived(a) => {
            if a.terminal_index < -1
                || a.terminal_index > logdog_schema::wire::MAX_STREAM_INDEX as i64
            {
                return Err(ApiError::invalid(
                    "terminal_index must be from -1 to 2^53 - 1",
                ));
            }
            if a.log_entry_count > logdog_schema::wire::MAX_STREAM_INDEX + 1 {
                return Err(ApiError::invalid("log_entry_count is above 2^53"));
            }
            let claim = a.written();
            let (terminal_index, log_entry_count) = (a.terminal_index, a.log_entry_count);
            let outcome = Outcome::Archived {
                terminal_index,
                log_entry_count,
                archive: ArchiveInfo {
                    stream_url: claim.stream_url.clone(),
                    index_url: claim.index_url.clone(),
                    data_url: claim.data_url.clone(),
                    log_entry_count,
                    complete: log_entry_count as i64 == terminal_index + 1,
                    archived_at: format_us(now_us()),
                },
                check: archive_check(&state, claim, terminal_index),
            };
            (a.lease_id, outcome)
        }
    };
    let stream = state
        .dispatcher
        .send(Complete {
            task_id,
            lease_id,
            outcome,
            projects,
        })
        .await
        .map_err(ApiError::internal)??;
    Ok(HttpResponse::Ok().json(stream))
}

/// Checks the reported archive against the store before anything is released: it must
/// be this task's stream and lease, in the configured store, with the claimed sizes
/// (409 otherwise; 503 when the store cannot be read). Run by the dispatcher once the
/// task's lease is checked: a task that is unknown, finished or leased to someone else is
/// answered before (412, or the repeat of a finished completion).
fn archive_check(
    state: &State,
    claim: crate::archive::Written,
    terminal_index: i64,
) -> logdog_actors::dispatcher::ArchiveCheck {
    let archive = state.archive.clone();
    Box::new(move |task| {
        Box::pin(async move {
            let lease_id = task.lease_id.as_deref().unwrap_or_default();
            match archive
                .for_project(&task.project)
                .verify(
                    &task.project,
                    &task.stream_id,
                    lease_id,
                    &claim,
                    terminal_index,
                )
                .await
            {
                Ok(()) => Ok(()),
                Err(crate::archive::ArchiveError::Store(e)) => {
                    tracing::warn!(error = %e, task = %task.task_id, "archive store unreachable while verifying");
                    Err(ActorError::Unavailable(
                        "the archive store is unavailable; retry later".into(),
                    ))
                }
                Err(e) => Err(ActorError::Conflict(format!("archive refused: {e}"))),
            }
        })
    })
}
