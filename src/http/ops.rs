//! Operations endpoints: liveness, readiness and Prometheus metrics.

use actix_web::{web, HttpResponse};
use prometheus::Encoder as _;

use super::State;
use crate::errors::ApiError;

/// The process is up.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// Storage answers and every migration is applied.
pub async fn readyz(state: State) -> Result<HttpResponse, ApiError> {
    let store = state.store.clone();
    match web::block(move || store.ready()).await {
        Ok(Ok(())) => Ok(HttpResponse::Ok().json(serde_json::json!({"status": "ready"}))),
        Ok(Err(e)) => Err(ApiError::unavailable(format!("storage not ready: {e}"))),
        Err(e) => Err(ApiError::internal(e)),
    }
}

/// Prometheus text format.
pub async fn metrics(state: State) -> Result<HttpResponse, ApiError> {
    let mut out = Vec::new();
    prometheus::TextEncoder::new()
        .encode(&state.prometheus.gather(), &mut out)
        .map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(out))
}
