//! The actors' error type: one variant per API error code the actors can produce.

use logdog_schema::StoreError;

use crate::lifecycle::LifecycleError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActorError {
    /// 400 `invalid_argument`
    #[error("{0}")]
    Invalid(String),
    /// 403 `permission_denied`
    #[error("{0}")]
    PermissionDenied(String),
    /// 404 `not_found`
    #[error("{0}")]
    NotFound(String),
    /// 409 `already_exists`
    #[error("{0}")]
    AlreadyExists(String),
    /// 409 `conflict`
    #[error("{0}")]
    Conflict(String),
    /// 412 `failed_precondition`
    #[error("{0}")]
    FailedPrecondition(String),
    /// 503 `unavailable`
    #[error("{0}")]
    Unavailable(String),
    /// The actor was stopping; the `Directory` retries with a fresh one.
    #[error("stream owner stopped")]
    Retired,
    /// Cluster mode: a live node owns the stream (its advertise URL); the HTTP layer
    /// forwards the request there.
    #[error("stream is owned by {0}")]
    Elsewhere(String),
    /// Cluster mode: the actor's write was fenced (another node took the stream over);
    /// the `Directory` drops the actor and retries with a fresh claim.
    #[error("{0}")]
    Deposed(String),
    /// 500 `internal`; the message is logged, not shown.
    #[error("{0}")]
    Internal(String),
}

impl ActorError {
    /// The one "no such stream" answer.
    pub fn stream_not_found(path: &logdog_schema::names::StreamPath) -> Self {
        ActorError::NotFound(format!("stream {:?} not found", path.to_string()))
    }
}

impl From<StoreError> for ActorError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::KeyTooLong(m) => return ActorError::Invalid(m),
            StoreError::Fenced(m) => return ActorError::Deposed(m),
            _ => {}
        }
        if e.is_unavailable() {
            ActorError::Unavailable(e.to_string())
        } else {
            ActorError::Internal(e.to_string())
        }
    }
}

impl From<LifecycleError> for ActorError {
    fn from(e: LifecycleError) -> Self {
        match e {
            LifecycleError::Invalid(m) => ActorError::Invalid(m),
            LifecycleError::Conflict(m) => ActorError::Conflict(m),
        }
    }
}

impl From<actix::MailboxError> for ActorError {
    fn from(e: actix::MailboxError) -> Self {
        ActorError::Unavailable(format!("stream owner unavailable: {e}"))
    }
}

/// Runs a blocking store call off the actor's thread.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ActorError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(ActorError::from),
        Err(e) => Err(ActorError::Internal(format!("storage task failed: {e}"))),
    }
}
