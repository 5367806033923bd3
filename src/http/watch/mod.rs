//! Live tail over a websocket: one `WsSession` actor per viewer.
//!
//! The session sends the backlog from storage a page at a time, then forwards the frames
//! its stream actor pushes (encoded once for all viewers). Whenever a frame does not line
//! up with what the viewer was sent last (the seam after the backlog, a pointer to
//! storage, or being dropped from the live set for a full mailbox), the session reads the
//! missing entries from storage: the viewer gets strictly contiguous indices, no gap and no
//! duplicate, and nothing is buffered without bound. A viewer that makes no progress for
//! `lag_timeout` while behind is closed with 1013 and `lagged; resume from=N`.
//!
//! - `mod.rs`: the frames clients read (`WatchFrame`) and the route (origin check,
//!   limits, the upgrade);
//! - `session`: the `WsSession` actor;
//! - `context`: the context it runs in (live frames written as the stream actor encoded
//!   them, once for every viewer);
//! - `cursor`: where a viewer stands and what it gets next (pure, unit-tested);
//! - `limits`: viewer counts (429 before the upgrade);
//! - `watchdog`: the peer socket and the watchdog that disconnects a stuck session.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_http::ws;
use actix_web::{web, HttpRequest, HttpResponse};
use dashmap::DashMap;
use logdog_actors::stream::{Live, LiveFrame, Progress, Subscribe, Unsubscribe};
use logdog_actors::StreamKey;
use logdog_schema::names::StreamPath;
use logdog_schema::wire::{Entry, StreamJson};
use serde::Deserialize;

use super::{authorize, params, peek, stream_path, Authorized, Caller, State};
use crate::errors::ApiError;

mod context;
mod cursor;
mod limits;
mod session;
mod watchdog;

pub use limits::{ViewerSlot, Viewers};
pub use session::WsSession;
pub use watchdog::{keep_peer_socket, PeerSocket, PEER_CHECK};

use context::WsContext;
use cursor::Cursor;
use watchdog::*;

/// A frame the watch route sends (JSON text): what clients read. The server writes the
/// same shapes, the `entries` frame encoded once for every viewer (`entries_frame`).
#[derive(Debug, Clone, serde::Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum WatchFrame {
    /// First after the upgrade, then on every lifecycle change.
    State { stream: Box<StreamJson> },
    /// Strictly increasing, contiguous entries.
    Entries {
        entries: Vec<logdog_schema::wire::LogEntry>,
    },
    /// After the terminal entry; a normal close follows.
    End { terminal_index: i64 },
}

/// Browsers send `Origin` on websocket upgrades and let any page open one to any host:
/// an upgrade from a page of another host than the one it asks is refused, so no other
/// site can watch a stream with the user's access (cross-site websocket hijacking).
fn check_origin(req: &HttpRequest) -> Result<(), ApiError> {
    let Some(origin) = req.headers().get(actix_web::http::header::ORIGIN) else {
        return Ok(()); // not a browser
    };
    let origin = origin.to_str().unwrap_or("");
    let origin_host = origin
        .split_once("://")
        .map(|(_, rest)| rest.trim_end_matches('/'))
        .unwrap_or("");
    let host = req
        .headers()
        .get(actix_web::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if origin_host.is_empty() || !origin_host.eq_ignore_ascii_case(host) {
        return Err(ApiError::permission_denied(format!(
            "websocket from origin {origin:?} to host {host:?}: pages may only watch their own server"
        )));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WatchParams {
    from: Option<u64>,
    tail: Option<u64>,
    /// The token, for browsers (read by the auth check, accepted here).
    #[serde(rename = "access_token")]
    _access_token: Option<String>,
}

/// `GET …/watch/{prefix}/+/{name}`: upgrade to a websocket and tail the stream live.
#[utoipa::path(
    get, path = "/api/v1/projects/{project}/watch/{prefix}/+/{name}", tag = "Logs",
    description = "Upgrades to a websocket. Frames (JSON text): {\"type\": \"state\", \"stream\"} first and on every lifecycle change; {\"type\": \"entries\", \"entries\"} contiguous from `from`; {\"type\": \"end\", \"terminal_index\"} then a 1000 close. A lagging viewer is closed with 1013 and `lagged; resume from=N`.",
    params(("project" = String, Path, description = "LUCI project name", pattern = r"^[a-z][a-z0-9_-]{0,99}$"), ("prefix" = String, Path, description = "The stream's prefix: segments joined by `/`, sent unescaped (`%2F` is decoded too)", pattern = r"^[A-Za-z0-9][A-Za-z0-9:_.-]*(/[A-Za-z0-9][A-Za-z0-9:_.-]*)*$", allow_reserved), ("name" = String, Path, description = "The stream's name: segments joined by `/`, sent unescaped (`%2F` is decoded too)", pattern = r"^[A-Za-z0-9][A-Za-z0-9:_.-]*(/[A-Za-z0-9][A-Za-z0-9:_.-]*)*$", allow_reserved),
           ("from" = Option<u64>, Query, description = "First index to send (default 0)", maximum = 9007199254740991.0),
           ("tail" = Option<u64>, Query, description = "Start at the last N contiguous entries", maximum = 9007199254740991.0),
           ("access_token" = Option<String>, Query, description = "The token, for browsers (which cannot set headers on a websocket)")),
    responses((status = 101, description = "Switching protocols"), (status = 400, description = "invalid_argument", body = crate::errors::ErrorBody), (status = 401, description = "unauthenticated", body = crate::errors::ErrorBody), (status = 403, description = "permission_denied (or the project is not visible)", body = crate::errors::ErrorBody), (status = 404, description = "not_found", body = crate::errors::ErrorBody), (status = 429, description = "resource_exhausted (Retry-After)", body = crate::errors::ErrorBody)),
    security((), ("bearer" = []))
)]
pub async fn watch(
    state: State,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let Authorized {
        caller, project, ..
    } = authorize(&state, &req, None).await?;
    let path = stream_path(&req)?;
    let p: WatchParams = params(&req)?;
    for (name, v) in [("from", p.from), ("tail", p.tail)] {
        if v.is_some_and(|v| v > logdog_schema::wire::MAX_STREAM_INDEX) {
            return Err(ApiError::invalid(format!("{name} is above 2^53 - 1")));
        }
    }
    check_origin(&req)?;
    let stream = peek(&state, caller, &project, &path).await?;
    let from = match (p.from, p.tail) {
        (Some(_), Some(_)) => return Err(ApiError::invalid("give from or tail, not both")),
        (Some(f), None) => f,
        (None, Some(t)) => (stream.state.next_index as u64).saturating_sub(t),
        (None, None) => 0,
    };
    let slot = state.viewers.acquire(&project, &stream.id)?;
    let ws_config = &state.config.websocket;
    let source = crate::http::entries::EntrySource::new(&state, &project, &path, &stream);
    let liveness = Liveness::new();
    let socket = req.conn_data::<PeerSocket>().cloned();
    if let Some(socket) = &socket {
        watchdog(liveness.clone(), socket.clone(), ws_config.idle_timeout);
    }
    let session = WsSession {
        liveness,
        app: state.clone(),
        caller,
        project,
        path,
        id: state.viewers.next_id.fetch_add(1, Ordering::Relaxed),
        cursor: Cursor::new(from, stream.state.archive.is_some(), Instant::now()),
        subscribed: false,
        sent_state: false,
        reading: false,
        source,
        ended: false,
        heartbeat: Instant::now(),
        ping_interval: ws_config.ping_interval.max(Duration::from_millis(10)),
        idle_timeout: ws_config.idle_timeout,
        lag_timeout: ws_config.lag_timeout,
        mailbox: ws_config.mailbox,
        max_frame_bytes: ws_config.max_frame_bytes as u64,
        socket,
        _slot: slot,
    };
    let mut upgrade = ws::handshake(req.head())
        .map_err(|e| ApiError::invalid(format!("websocket upgrade failed: {e}")))?;
    let body = WsContext::start(session, payload, 64 << 10);
    let response = upgrade
        .message_body(actix_web::body::BoxBody::new(
            actix_web::body::BodyStream::new(body),
        ))
        .map_err(|e| ApiError::invalid(format!("websocket upgrade failed: {e}")))?;
    Ok(HttpResponse::from(response))
}
