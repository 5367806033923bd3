//! The API's error type and its one mapping to HTTP (API.md's table). Every error the
//! server produces — handlers, unknown routes, wrong methods, bad query strings, body
//! limits — goes out as `{"error": {"code", "message"}}`.
//!
//! Use the helper named for the code (`ApiError::invalid`, `::not_found`, …); actor and
//! store errors convert with `From`. Internal details are logged, never sent.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use logdog_actors::ActorError;
use serde::{Deserialize, Serialize};

/// Every error code of API.md's table, each with exactly one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidArgument,
    Unauthenticated,
    PermissionDenied,
    NotFound,
    AlreadyExists,
    Conflict,
    FailedPrecondition,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
    ResourceExhausted,
    Unavailable,
    MethodNotAllowed,
    Internal,
}

impl ErrorCode {
    /// Every code, in API.md's order.
    pub const ALL: [ErrorCode; 14] = [
        ErrorCode::InvalidArgument,
        ErrorCode::Unauthenticated,
        ErrorCode::PermissionDenied,
        ErrorCode::NotFound,
        ErrorCode::AlreadyExists,
        ErrorCode::Conflict,
        ErrorCode::FailedPrecondition,
        ErrorCode::PayloadTooLarge,
        ErrorCode::RequestTimeout,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::ResourceExhausted,
        ErrorCode::Unavailable,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Internal,
    ];

    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::InvalidArgument => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorCode::PermissionDenied => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::AlreadyExists | ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::NotFound => "not_found",
            ErrorCode::AlreadyExists => "already_exists",
            ErrorCode::Conflict => "conflict",
            ErrorCode::FailedPrecondition => "failed_precondition",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::ResourceExhausted => "resource_exhausted",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// The body of every error answer: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong: a code of API.md's table and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Seconds, for 429 and 503.
    pub retry_after: Option<u64>,
    /// Cluster mode: the advertise URL of the live node that owns the stream. The
    /// response carries it as an extension, and `http::forward` sends the request there.
    pub owner: Option<String>,
}

/// The response extension naming the node a request must be forwarded to.
#[derive(Debug, Clone)]
pub struct OwnerElsewhere(pub String);

impl ApiError {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after: None,
            owner: None,
        }
    }

    pub fn invalid(m: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgument, m)
    }
    pub fn unauthenticated(m: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthenticated, m)
    }
    pub fn permission_denied(m: impl Into<String>) -> Self {
        Self::new(ErrorCode::PermissionDenied, m)
    }
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, m)
    }
    pub fn already_exists(m: impl Into<String>) -> Self {
        Self::new(ErrorCode::AlreadyExists, m)
    }
    pub fn conflict(m: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, m)
    }
    pub fn failed_precondition(m: impl Into<String>) -> Self {
        Self::new(ErrorCode::FailedPrecondition, m)
    }
    pub fn too_large(m: impl Into<String>) -> Self {
        Self::new(ErrorCode::PayloadTooLarge, m)
    }
    /// The body did not arrive in time; the connection is closed after the answer.
    pub fn request_timeout(m: impl Into<String>) -> Self {
        Self::new(ErrorCode::RequestTimeout, m)
    }
    pub fn unsupported_media_type(m: impl Into<String>) -> Self {
        Self::new(ErrorCode::UnsupportedMediaType, m)
    }
    pub fn exhausted(m: impl Into<String>, retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(ErrorCode::ResourceExhausted, m)
        }
    }
    pub fn unavailable(m: impl Into<String>) -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(ErrorCode::Unavailable, m)
        }
    }
    pub fn method_not_allowed(m: impl Into<String>) -> Self {
        Self::new(ErrorCode::MethodNotAllowed, m)
    }
    /// Logs `detail` and answers a message that leaks nothing.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(%detail, "internal error");
        Self::new(ErrorCode::Internal, "internal error")
    }

    /// The wire body of this error.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message.clone(),
            },
        }
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
        self.code.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        if let Some(s) = self.retry_after {
            res.insert_header((header::RETRY_AFTER, s.to_string()));
        }
        res.insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
        if let Some(owner) = &self.owner {
            res.extensions_mut().insert(OwnerElsewhere(owner.clone()));
        }
        if self.code == ErrorCode::RequestTimeout {
            // The rest of a late body may still come: this connection is done.
            res.force_close();
        }
        res.json(self.body())
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
            ActorError::Deposed(m) => {
                tracing::info!(%m, "stream taken over by another node");
                Self::unavailable("the stream's owner changed; retry")
            }
            ActorError::Elsewhere(owner) => Self {
                owner: Some(owner),
                ..Self::unavailable("the stream's owner is another node; retry")
            },
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

/// The archive store away is a fault (503, retried); a refused report a conflict.
impl From<crate::archive::ArchiveError> for ApiError {
    fn from(e: crate::archive::ArchiveError) -> Self {
        use crate::archive::ArchiveError as E;
        match e {
            E::Store(err) => {
                tracing::warn!(error = %err, "archive store unavailable");
                Self::unavailable("the archive store is unavailable; retry later")
            }
            E::Refused(m) => Self::conflict(format!("archive refused: {m}")),
            E::Corrupt(_) | E::Unsupported(_) => Self::internal(e),
        }
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
            (ApiError::request_timeout("m"), 408),
            (ApiError::unsupported_media_type("m"), 415),
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
            assert_eq!(body(&e)["error"]["code"], e.code.as_str());
        }
    }

    /// Every code has one status, its wire name is its serde name, and the statuses are
    /// the ones API.md's table gives.
    #[test]
    fn every_code_has_its_status_and_name() {
        let table = [
            ("invalid_argument", 400),
            ("unauthenticated", 401),
            ("permission_denied", 403),
            ("not_found", 404),
            ("already_exists", 409),
            ("conflict", 409),
            ("failed_precondition", 412),
            ("payload_too_large", 413),
            ("request_timeout", 408),
            ("unsupported_media_type", 415),
            ("resource_exhausted", 429),
            ("unavailable", 503),
            ("method_not_allowed", 405),
            ("internal", 500),
        ];
        assert_eq!(ErrorCode::ALL.len(), table.len());
        for (code, (name, status)) in ErrorCode::ALL.into_iter().zip(table) {
            assert_eq!(code.as_str(), name);
            assert_eq!(code.status().as_u16(), status, "{name}");
            assert_eq!(serde_json::to_value(code).unwrap(), name);
            assert_eq!(
                serde_json::from_value::<ErrorCode>(name.into()).unwrap(),
                code
            );
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
