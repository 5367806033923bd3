//! Live tail over a websocket: one `WsSession` actor per viewer.
//!
//! The session sends the backlog from storage a page at a time, then forwards the frames
//! its stream actor pushes (encoded once for all viewers). Whenever a frame does not line
//! up with what the viewer was sent last (the seam after the backlog, a pointer to
//! storage, or being dropped from the live set for a full mailbox), the session reads the
//! missing entries from storage: the viewer gets strictly contiguous indices, no gap and no
//! duplicate, and nothing is buffered without bound. A viewer that makes no progress for
//! `lag_timeout` while behind is closed with 1013 and `lagged; resume from=N`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws;
use bytestring::ByteString;
use dashmap::DashMap;
use logdog_actors::stream::{Live, LiveFrame, Progress, Subscribe, Unsubscribe};
use logdog_actors::StreamKey;
use logdog_schema::names::StreamPath;
use logdog_schema::store::ReadRange;
use logdog_schema::wire::{Entry, StreamJson};
use serde::Deserialize;
use serde_json::json;

use super::{authorize, load, params, stream_path, Authorized, Caller, State};
use crate::config::secs;
use crate::errors::ApiError;

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

/// Entries per backlog page (each page is one frame, also capped by `max_frame_bytes`).
const PAGE_ENTRIES: usize = 1000;

/// Counts of live viewers, in total and per stream (limits answer 429 before the upgrade).
#[derive(Default)]
pub struct Viewers {
    total: AtomicUsize,
    per_stream: DashMap<StreamKey, usize>,
    next_id: AtomicU64,
}

/// One viewer's place in the counts; released when the session ends.
pub struct ViewerSlot {
    viewers: Arc<Viewers>,
    key: StreamKey,
}

impl Viewers {
    /// A place for one more viewer (or follower) of `key`; 429 past either limit.
    pub fn acquire(
        self: &Arc<Self>,
        key: StreamKey,
        per_stream: usize,
        total: usize,
    ) -> Result<ViewerSlot, ApiError> {
        if self.total.fetch_add(1, Ordering::SeqCst) >= total {
            self.total.fetch_sub(1, Ordering::SeqCst);
            return Err(ApiError::exhausted(
                format!("too many viewers (limit {total})"),
                5,
            ));
        }
        let mut n = self.per_stream.entry(key.clone()).or_insert(0);
        if *n >= per_stream {
            drop(n);
            self.total.fetch_sub(1, Ordering::SeqCst);
            return Err(ApiError::exhausted(
                format!("too many viewers of this stream (limit {per_stream})"),
                5,
            ));
        }
        *n += 1;
        Ok(ViewerSlot {
            viewers: self.clone(),
            key,
        })
    }
}

impl Drop for ViewerSlot {
    fn drop(&mut self) {
        self.viewers.total.fetch_sub(1, Ordering::SeqCst);
        self.viewers.per_stream.remove_if_mut(&self.key, |_, n| {
            *n -= 1;
            *n == 0
        });
    }
}

/// A duplicate of a connection's socket, kept so a watchdog outside the session can
/// disconnect a peer whose session cannot run (it only runs while the peer drains).
#[derive(Clone)]
pub struct PeerSocket(Arc<std::net::TcpStream>);

impl PeerSocket {
    /// Whether the peer has closed its side or the connection broke. Peeks without
    /// consuming (the socket is non-blocking, shared with the connection): end of file or
    /// an error means gone; pending bytes or nothing to read yet mean still there.
    pub fn peer_gone(&self) -> bool {
        let mut byte = [0u8; 1];
        match self.0.peek(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
            ),
        }
    }

    /// Resolves once the peer has gone (checked every `PEER_CHECK`), after ending the
    /// connection: what a response waiting for entries selects on.
    pub async fn closed(&self) {
        loop {
            tokio::time::sleep(PEER_CHECK).await;
            if self.peer_gone() {
                self.disconnect();
                return;
            }
        }
    }

    /// Ends the connection at once, whatever its session or response is doing.
    pub fn disconnect(&self) {
        let _ = self.0.shutdown(std::net::Shutdown::Both);
    }
}

/// `HttpServer::on_connect` hook: remembers each connection's socket.
pub fn keep_peer_socket(conn: &dyn std::any::Any, ext: &mut actix_web::dev::Extensions) {
    use std::os::fd::AsFd as _;
    if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
        if let Ok(fd) = tcp.as_fd().try_clone_to_owned() {
            ext.insert(PeerSocket(Arc::new(std::net::TcpStream::from(fd))));
        }
    }
}

/// Milliseconds since the session started, updated whenever the session runs. A session
/// that can run ticks at least every ping interval; one that has not run for
/// `idle_timeout` is stuck behind a peer that accepts nothing.
#[derive(Clone)]
struct Liveness {
    started: Instant,
    last_run_ms: Arc<AtomicU64>,
    alive: Arc<std::sync::atomic::AtomicBool>,
}

impl Liveness {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            last_run_ms: Arc::default(),
            alive: Arc::new(true.into()),
        }
    }

    fn ran(&self) {
        self.last_run_ms
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        self.started.elapsed().saturating_sub(Duration::from_millis(
            self.last_run_ms.load(Ordering::Relaxed),
        ))
    }
}

/// How often a watchdog looks at its peer: a peer that went away is noticed within this.
pub const PEER_CHECK: Duration = Duration::from_millis(500);

/// Disconnects the peer when its session has not run for `idle_timeout`, and ends the
/// connection as soon as the peer has gone (so nothing is held for a closed socket).
fn watchdog(live: Liveness, socket: PeerSocket, idle_timeout: Duration) {
    actix::spawn(async move {
        let tick = (idle_timeout / 4).clamp(Duration::from_millis(10), PEER_CHECK);
        while live.alive.load(Ordering::Relaxed) {
            tokio::time::sleep(tick).await;
            if !live.alive.load(Ordering::Relaxed) {
                break;
            }
            if socket.peer_gone() {
                tracing::debug!("watch: peer closed its connection");
                socket.disconnect();
                break;
            }
            if live.idle_for() > idle_timeout {
                tracing::info!("watch: peer accepted nothing for {idle_timeout:?}; disconnecting");
                socket.disconnect();
                break;
            }
        }
    });
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
    let stream = load(&state, caller, &project, &path).await?;
    let from = match (p.from, p.tail) {
        (Some(_), Some(_)) => return Err(ApiError::invalid("give from or tail, not both")),
        (Some(f), None) => f,
        (None, Some(t)) => (stream.state.next_index as u64).saturating_sub(t),
        (None, None) => 0,
    };
    let limits = &state.config.limits;
    let key = StreamKey {
        project: project.clone(),
        id: stream.id.clone(),
    };
    let slot = state.viewers.acquire(
        key,
        limits.max_viewers_per_stream as usize,
        limits.max_viewers as usize,
    )?;
    let ws_config = &state.config.websocket;
    let source = super::logs::EntrySource::new(&state, &project, &path, &stream);
    let liveness = Liveness::new();
    if let Some(socket) = req.conn_data::<PeerSocket>() {
        watchdog(
            liveness.clone(),
            socket.clone(),
            secs(ws_config.idle_timeout),
        );
    }
    let session = WsSession {
        liveness,
        app: state.clone(),
        caller,
        project,
        path,
        id: state.viewers.next_id.fetch_add(1, Ordering::Relaxed),
        next: from,
        known_end: 0,
        terminal: None,
        subscribed: false,
        sent_state: false,
        reading: false,
        archived: stream.state.archive.is_some(),
        source,
        ended: false,
        last_progress: Instant::now(),
        behind_since: None,
        heartbeat: Instant::now(),
        ping_interval: secs(ws_config.ping_interval).max(Duration::from_millis(10)),
        idle_timeout: secs(ws_config.idle_timeout),
        lag_timeout: secs(ws_config.lag_timeout),
        mailbox: ws_config.mailbox as usize,
        max_frame_bytes: ws_config.max_frame_bytes as u64,
        _slot: slot,
    };
    ws::WsResponseBuilder::new(session, &req, payload)
        .frame_size(64 << 10)
        .start()
        .map_err(|e| ApiError::invalid(format!("websocket upgrade failed: {e}")))
}

pub struct WsSession {
    /// Read by the watchdog.
    liveness: Liveness,
    app: State,
    caller: Caller,
    project: String,
    path: StreamPath,
    /// Subscription id at the stream actor.
    id: u64,
    /// The first index this viewer has not been sent.
    next: u64,
    /// The highest contiguous end the session has heard of.
    known_end: u64,
    terminal: Option<i64>,
    /// In the stream actor's live set.
    subscribed: bool,
    /// The first state frame went out.
    sent_state: bool,
    /// A storage read is under way.
    reading: bool,
    /// The stream is archived: replay what is stored, then end.
    archived: bool,
    /// Where entries are read from (intermediate storage or the archive).
    source: super::logs::EntrySource,
    ended: bool,
    /// Last time the viewer was sent entries.
    last_progress: Instant,
    /// Since when the viewer has been behind (None while caught up).
    behind_since: Option<Instant>,
    /// Last time the peer answered (pong or any frame).
    heartbeat: Instant,
    ping_interval: Duration,
    idle_timeout: Duration,
    lag_timeout: Duration,
    mailbox: usize,
    max_frame_bytes: u64,
    _slot: ViewerSlot,
}

type Ctx = ws::WebsocketContext<WsSession>;

impl WsSession {
    fn subscribe(&mut self, ctx: &mut Ctx) {
        let msg = Subscribe {
            id: self.id,
            recipient: ctx.address().recipient(),
            see_purged: self.caller.admin,
        };
        let (dir, project, path) = (
            self.app.directory.clone(),
            self.project.clone(),
            self.path.clone(),
        );
        ctx.wait(
            async move { dir.send(&project, &path, msg).await }
                .into_actor(self)
                .map(|r, act, ctx| match r {
                    Ok((stream, progress)) => {
                        act.subscribed = true;
                        // The first frame is always the state; after a lag, a missed change is resent.
                        if !act.sent_state || act.terminal != progress.terminal_index {
                            act.sent_state = true;
                            act.send_state(&stream, ctx);
                        }
                        act.on_progress(progress, Instant::now(), ctx);
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "watch: subscription failed");
                        ctx.close(Some(ws::CloseReason {
                            code: ws::CloseCode::Away,
                            description: Some("stream went away".into()),
                        }));
                        ctx.stop();
                    }
                }),
        );
    }

    fn send_state(&mut self, stream: &StreamJson, ctx: &mut Ctx) {
        ctx.text(json!({"type": "state", "stream": stream}).to_string());
    }

    /// Records where the stream stands and sends what the viewer is missing.
    fn on_progress(&mut self, p: Progress, at: Instant, ctx: &mut Ctx) {
        self.note_end(p.next_index, at);
        self.archived |= p.archived;
        if p.terminal_index.is_some() {
            self.terminal = p.terminal_index;
        }
        if p.gone {
            ctx.close(Some(ws::CloseReason {
                code: ws::CloseCode::Away,
                description: Some("stream purged".into()),
            }));
            ctx.stop();
            return;
        }
        self.catch_up(ctx);
    }

    /// Reads the next page from storage if the viewer is behind; otherwise checks the end.
    fn catch_up(&mut self, ctx: &mut Ctx) {
        if self.ended || self.reading {
            return;
        }
        if !self.archived && self.next >= self.known_end {
            if self.subscribed {
                self.behind_since = None;
                self.check_end(ctx);
            } else if !self.ended {
                // Caught up with what we knew; the subscription tells the true end.
                self.subscribe(ctx);
            }
            return;
        }
        if self.lagging(ctx) {
            return;
        }
        self.reading = true;
        // An archived stream is replayed from its archive, skipping gaps, then ends.
        let range = if self.archived {
            ReadRange {
                from: self.next,
                end: u64::MAX >> 1,
                count: PAGE_ENTRIES,
                bytes: self.max_frame_bytes,
                contiguous: false,
            }
        } else {
            ReadRange {
                from: self.next,
                end: self.known_end,
                count: PAGE_ENTRIES,
                bytes: self.max_frame_bytes,
                contiguous: true,
            }
        };
        let mut source = self.source.clone();
        let read = async move {
            let r = source.read(range).await;
            (source, r)
        };
        ctx.spawn(read.into_actor(self).map(|(source, r), act, ctx| {
            act.reading = false;
            act.source = source;
            match r {
                Ok(page) if !page.is_empty() => {
                    act.send_entries(&page, ctx);
                    act.catch_up(ctx);
                }
                Ok(_) if act.archived || act.source.archive.is_some() => {
                    // Everything stored has been sent.
                    act.ended = true;
                    let t = act.terminal.unwrap_or(act.next as i64 - 1);
                    ctx.text(json!({"type": "end", "terminal_index": t}).to_string());
                    ctx.close(Some(ws::CloseReason {
                        code: ws::CloseCode::Normal,
                        description: None,
                    }));
                    ctx.stop();
                }
                Ok(_) => {
                    // Nothing readable below known_end: the data went away (purged).
                    ctx.close(Some(ws::CloseReason {
                        code: ws::CloseCode::Away,
                        description: Some("stream data is gone".into()),
                    }));
                    ctx.stop();
                }
                Err(e) => act.read_failed(e.to_string(), ctx),
            }
        }));
    }

    fn read_failed(&mut self, e: String, ctx: &mut Ctx) {
        tracing::warn!(error = %e, "watch: storage read failed");
        let reason = format!("storage unavailable; resume from={}", self.next);
        ctx.close(Some(ws::CloseReason {
            code: ws::CloseCode::Again,
            description: Some(reason),
        }));
        ctx.stop();
    }

    fn send_entries(&mut self, entries: &[Entry], ctx: &mut Ctx) {
        ctx.text(logdog_schema::wire::entries_frame(entries));
        self.next = entries.last().map_or(self.next, |e| e.stream_index + 1);
        self.sent(ctx);
    }

    /// After sending entries: note the progress and whether the viewer is caught up.
    fn sent(&mut self, ctx: &mut Ctx) {
        self.last_progress = Instant::now();
        if self.next >= self.known_end {
            self.behind_since = None;
        }
        self.check_end(ctx);
    }

    /// After the terminal entry: `end`, then a normal close.
    fn check_end(&mut self, ctx: &mut Ctx) {
        if let Some(t) = self.terminal {
            if !self.ended && self.next as i64 > t {
                self.ended = true;
                ctx.text(json!({"type": "end", "terminal_index": t}).to_string());
                ctx.close(Some(ws::CloseReason {
                    code: ws::CloseCode::Normal,
                    description: None,
                }));
                ctx.stop();
            }
        }
    }

    /// Learns of a contiguous end `end` from a frame sent at `at`.
    fn note_end(&mut self, end: u64, at: Instant) {
        if end > self.next && self.behind_since.is_none() {
            self.behind_since = Some(at);
        }
        self.known_end = self.known_end.max(end);
    }

    /// Closes a viewer that is behind and has made no progress for `lag_timeout`: since
    /// the later of its last send and the moment it fell behind.
    fn lagging(&mut self, ctx: &mut Ctx) -> bool {
        let Some(behind) = self.behind_since else {
            return false;
        };
        if self.ended {
            return true;
        }
        if self.last_progress.max(behind).elapsed() > self.lag_timeout {
            let reason = format!("lagged; resume from={}", self.next);
            ctx.close(Some(ws::CloseReason {
                code: ws::CloseCode::Again,
                description: Some(reason),
            }));
            ctx.stop();
            self.ended = true;
            return true;
        }
        false
    }
}

impl Actor for WsSession {
    type Context = Ctx;

    fn started(&mut self, ctx: &mut Ctx) {
        ctx.set_mailbox_capacity(self.mailbox);
        // A graceful stop closes the viewer with 1001 and where to resume.
        let mut shutdown = self.app.shutdown.subscribe();
        ctx.spawn(
            actix::fut::wrap_future::<_, Self>(async move {
                let _ = shutdown.wait_for(|stopping| *stopping).await;
            })
            .map(|_, act, ctx| {
                ctx.close(Some(ws::CloseReason {
                    code: ws::CloseCode::Away,
                    description: Some(format!("server shutting down; resume from={}", act.next)),
                }));
                ctx.stop();
            }),
        );
        self.last_progress = Instant::now();
        self.subscribe(ctx);
        self.app.metrics.viewers.inc();
        self.liveness.ran();
        ctx.run_interval(self.ping_interval, |act, ctx| {
            act.liveness.ran();
            if act.heartbeat.elapsed() > act.idle_timeout {
                ctx.close(Some(ws::CloseReason {
                    code: ws::CloseCode::Away,
                    description: Some("idle".into()),
                }));
                ctx.stop();
                return;
            }
            ctx.ping(b"");
        });
    }

    fn stopped(&mut self, _: &mut Ctx) {
        self.liveness.alive.store(false, Ordering::Relaxed);
        self.app.metrics.viewers.dec();
        if self.subscribed {
            let (dir, project, path, id) = (
                self.app.directory.clone(),
                self.project.clone(),
                self.path.clone(),
                self.id,
            );
            actix::spawn(async move {
                let _ = dir.send(&project, &path, Unsubscribe { id }).await;
            });
        }
    }
}

impl Handler<LiveFrame> for WsSession {
    type Result = ();

    fn handle(&mut self, LiveFrame(live, at): LiveFrame, ctx: &mut Ctx) {
        self.liveness.ran();
        if self.ended {
            return;
        }
        match live {
            Live::Entries { first, end, frame } => {
                self.note_end(end, at);
                if self.lagging(ctx) {
                    return;
                }
                if !self.reading && first == self.next {
                    ctx.text(ByteString::clone(&frame));
                    self.next = end;
                    self.sent(ctx);
                } else if end > self.next {
                    self.catch_up(ctx);
                }
            }
            Live::Advanced { end } => {
                self.note_end(end, at);
                self.catch_up(ctx);
            }
            Live::State { frame, progress } => {
                ctx.text(frame);
                self.on_progress(progress, at, ctx);
            }
            Live::Lagged => {
                self.subscribed = false;
                self.behind_since.get_or_insert(at);
                if !self.lagging(ctx) {
                    self.catch_up(ctx);
                }
            }
        }
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for WsSession {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Ctx) {
        self.heartbeat = Instant::now();
        self.liveness.ran();
        match msg {
            Ok(ws::Message::Ping(p)) => ctx.pong(&p),
            Ok(ws::Message::Close(reason)) => {
                ctx.close(reason);
                ctx.stop();
            }
            Ok(_) => {}
            Err(_) => ctx.stop(),
        }
    }
}
