//! The API's error type and its one mapping to HTTP (API.md's table). Every error the
//! server produces — handlers, unknown routes, wrong methods, bad query strings, body
//! limits — goes out as `{"error": {"code", "message"}}`.
//!
//! Use the helper named for the code (`ApiError::invalid`, `::not_found`, …); actor and
//! store errors convert with `From`. Internal details are logged, never sent.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use logdog_actors::ActorError;
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: &'static str,
    pub message: String,
    /// Seconds, for 429 and 503.
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn invalid(m: impl Into<String>) -> Self {
        Self::new("invalid_argument", m)
    }
    pub fn unauthenticated(m: impl Into<String>) -> Self {
        Self::new("unauthenticated", m)
    }
    pub fn permission_denied(m: impl Into<String>) -> Self {
        Self::new("permission_denied", m)
    }
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new("not_found", m)
    }
    pub fn already_exists(m: impl Into<String>) -> Self {
        Self::new("already_exists", m)
    }
    pub fn conflict(m: impl Into<String>) -> Self {
        Self::new("conflict", m)
    }
    pub fn failed_precondition(m: impl Into<String>) -> Self {
        Self::new("failed_precondition", m)
    }
    pub fn too_large(m: impl Into<String>) -> Self {
        Self::new("payload_too_large", m)
    }
    pub fn exhausted(m: impl Into<String>, retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new("resource_exhausted", m)
        }
    }
    pub fn unavailable(m: impl Into<String>) -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new("unavailable", m)
        }
    }
    pub fn method_not_allowed(m: impl Into<String>) -> Self {
        Self::new("method_not_allowed", m)
    }
    /// Logs `detail` and answers a message that leaks nothing.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(%detail, "internal error");
        Self::new("internal", "internal error")
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self.code {
            "invalid_argument" => StatusCode::BAD_REQUEST,
            "unauthenticated" => StatusCode::UNAUTHORIZED,
            "permission_denied" => StatusCode::FORBIDDEN,
            "not_found" => StatusCode::NOT_FOUND,
            "already_exists" | "conflict" => StatusCode::CONFLICT,
            "failed_precondition" => StatusCode::PRECONDITION_FAILED,
            "payload_too_large" => StatusCode::PAYLOAD_TOO_LARGE,
            "resource_exhausted" => StatusCode::TOO_MANY_REQUESTS,
            "unavailable" => StatusCode::SERVICE_UNAVAILABLE,
            "method_not_allowed" => StatusCode::METHOD_NOT_ALLOWED,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        if let Some(s) = self.retry_after {
            res.insert_header((header::RETRY_AFTER, s.to_string()));
        }
        res.json(json!({"error": {"code": self.code, "message": self.message}}))
    }
}

impl From<ActorError> for ApiError {
    fn from(e: ActorError) -> Self {
        match e {
            ActorError::Invalid(m) => Self::invalid(m),
            ActorError::PermissionDenied(m) => Self::permission_denied(m),
            ActorError::NotFound(m) => Self::not_found(m),
            ActorError::AlreadyExists(m) => Self::already_exists(m),
            ActorError::Conflict(m) => Self::conflict(m),
            ActorError::FailedPrecondition(m) => Self::failed_precondition(m),
            ActorError::Unavailable(m) => {
                tracing::warn!(%m, "unavailable");
                Self::unavailable("storage is unavailable; retry later")
            }
            ActorError::Retired => Self::unavailable("stream owner restarting; retry"),
            ActorError::Internal(m) => Self::internal(m),
        }
    }
}

impl From<logdog_schema::names::NameError> for ApiError {
    fn from(e: logdog_schema::names::NameError) -> Self {
        Self::invalid(e.0)
    }
}

impl From<logdog_schema::StoreError> for ApiError {
    fn from(e: logdog_schema::StoreError) -> Self {
        ActorError::from(e).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody;

    fn body(e: &ApiError) -> serde_json::Value {
        let bytes = e.error_response().into_body().try_into_bytes().unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn every_code_maps_to_its_status() {
        let cases = [
            (ApiError::invalid("m"), 400),
            (ApiError::unauthenticated("m"), 401),
            (ApiError::permission_denied("m"), 403),
            (ApiError::not_found("m"), 404),
            (ApiError::already_exists("m"), 409),
            (ApiError::conflict("m"), 409),
            (ApiError::failed_precondition("m"), 412),
            (ApiError::too_large("m"), 413),
            (ApiError::exhausted("m", 3), 429),
            (ApiError::unavailable("m"), 503),
            (ApiError::method_not_allowed("m"), 405),
            (ApiError::internal("secret detail"), 500),
        ];
        for (e, status) in cases {
            assert_eq!(e.status_code().as_u16(), status, "{e}");
            assert_eq!(body(&e)["error"]["code"], e.code);
        }
    }

    #[test]
    fn internal_errors_leak_nothing() {
        let e = ApiError::internal("password=hunter2");
        assert_eq!(body(&e)["error"]["message"], "internal error");
    }

    #[test]
    fn retry_after_is_sent() {
        let r = ApiError::exhausted("slow down", 7).error_response();
        assert_eq!(r.headers().get("retry-after").unwrap(), "7");
    }
}
