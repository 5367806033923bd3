//! Registration (the Butler side): RegisterPrefix and DeletePrefix.

use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use logdog_actors::registry::{DeletePrefix, RegisterPrefix};
use logdog_schema::names;
use logdog_schema::wire::format_us;
use serde::{Deserialize, Serialize};

use super::{authorize, json_response, parse_json, Authorized, State};
use crate::errors::ApiError;

/// RegisterPrefix's request.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterPrefixRequest {
    /// Segments `[A-Za-z0-9][A-Za-z0-9:_.-]*` joined by `/`.
    #[schema(
        pattern = r"^[A-Za-z0-9][A-Za-z0-9:_.-]*(/[A-Za-z0-9][A-Za-z0-9:_.-]*)*$",
        max_length = 4096
    )]
    pub prefix: String,
    /// Seconds; the smallest positive of this, the project's and the server's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0.0, maximum = 1e12)]
    pub expiration: Option<f64>,
    /// base64 of 32 bytes: a retry with the same nonce within 15 minutes gets the same secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$")]
    pub op_nonce: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_info: Vec<String>,
}

/// RegisterPrefix's answer: the secret, once.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PrefixRegistered {
    pub project: String,
    pub prefix: String,
    /// base64 of 36 bytes; send it as `X-Prefix-Secret` on writes.
    pub secret: String,
    pub expires_at: String,
}

/// `POST /api/v1/projects/{project}/prefixes`: 201 with the secret; 200 for a nonce retry.
#[utoipa::path(
    post, path = "/api/v1/projects/{project}/prefixes", tag = "Registration",
    params(("project" = String, Path, description = "LUCI project name", pattern = r"^[a-z][a-z0-9_-]{0,99}$")), request_body = RegisterPrefixRequest,
    responses((status = 201, description = "Registered", body = PrefixRegistered),
              (status = 200, description = "A retry with the same op_nonce", body = PrefixRegistered),
              (status = 400, description = "invalid_argument", body = crate::errors::ErrorBody), (status = 401, description = "unauthenticated", body = crate::errors::ErrorBody), (status = 403, description = "permission_denied (or the project is not visible)", body = crate::errors::ErrorBody), (status = 409, description = "already_exists or conflict", body = crate::errors::ErrorBody), (status = 413, description = "payload_too_large", body = crate::errors::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn register_prefix(
    state: State,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let Authorized { project, body, .. } = authorize(&state, &req, Some(payload)).await?;
    let r: RegisterPrefixRequest = parse_json(&req, &body, false).map_err(ApiError::invalid)?;
    names::validate_prefix(&r.prefix)?;
    let op_nonce = match r.op_nonce {
        None => None,
        Some(n) => match B64.decode(&n) {
            Ok(bytes) if bytes.len() == 32 => Some(bytes),
            _ => {
                return Err(ApiError::invalid(
                    "op_nonce must be 32 bytes, base64-encoded",
                ))
            }
        },
    };
    if r.expiration.is_some_and(|e| !(0.0..=1e12).contains(&e)) {
        return Err(ApiError::invalid(
            "expiration must be a number of seconds from 0 to 10^12",
        ));
    }
    let expiration = state
        .config
        .prefix_expiration(&project, r.expiration)
        .ok_or_else(|| {
            ApiError::invalid(
                "no positive expiration in the request, the project or the server config",
            )
        })?;
    let grant = state
        .registry
        .send(RegisterPrefix {
            project,
            prefix: r.prefix,
            expiration,
            op_nonce,
            source_info: r.source_info,
        })
        .await
        .map_err(ApiError::internal)??;
    Ok(json_response(
        grant.created,
        &PrefixRegistered {
            project: grant.project,
            prefix: grant.prefix,
            secret: B64.encode(&grant.secret),
            expires_at: format_us(grant.expires_us),
        },
    ))
}

/// `DELETE /api/v1/projects/{project}/prefixes/{prefix}` (admin): 204.
#[utoipa::path(
    delete, path = "/api/v1/projects/{project}/prefixes/{prefix}", tag = "Registration",
    params(("project" = String, Path, description = "LUCI project name", pattern = r"^[a-z][a-z0-9_-]{0,99}$"), ("prefix" = String, Path, description = "The prefix: segments joined by `/`, sent unescaped (`%2F` is decoded too)", pattern = r"^[A-Za-z0-9][A-Za-z0-9:_.-]*(/[A-Za-z0-9][A-Za-z0-9:_.-]*)*$", allow_reserved)),
    responses((status = 204, description = "Expired; its streams, data and archives removed"), (status = 400, description = "invalid_argument", body = crate::errors::ErrorBody), (status = 401, description = "unauthenticated", body = crate::errors::ErrorBody), (status = 403, description = "permission_denied (or the project is not visible)", body = crate::errors::ErrorBody), (status = 404, description = "not_found", body = crate::errors::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn delete_prefix(state: State, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let Authorized {
        caller, project, ..
    } = authorize(&state, &req, None).await?;
    state.require_admin(caller)?;
    let prefix = super::path_param(&req, "prefix");
    names::validate_prefix(&prefix)?;
    state
        .registry
        .send(DeletePrefix {
            project: project.clone(),
            prefix,
        })
        .await
        .map_err(ApiError::internal)??;
    // The streams are gone; their archives were queued for deletion with them.
    state.deleter.wake();
    Ok(HttpResponse::NoContent().finish())
}
