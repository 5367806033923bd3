//! `WsSession`: one actor per viewer — the backlog a page at a time, then the stream
//! actor's live frames, reading from storage whatever does not line up.

use super::*;

/// Entries per backlog page (each page is one frame, also capped by `max_frame_bytes`).
const PAGE_ENTRIES: usize = 1000;

pub struct WsSession {
    /// Read by the watchdog.
    pub(super) liveness: Liveness,
    pub(super) app: State,
    pub(super) caller: Caller,
    pub(super) project: String,
    pub(super) path: StreamPath,
    /// Subscription id at the stream actor.
    pub(super) id: u64,
    /// The first index this viewer has not been sent.
    pub(super) next: u64,
    /// The highest contiguous end the session has heard of.
    pub(super) known_end: u64,
    pub(super) terminal: Option<i64>,
    /// In the stream actor's live set.
    pub(super) subscribed: bool,
    /// The first state frame went out.
    pub(super) sent_state: bool,
    /// A storage read is under way.
    pub(super) reading: bool,
    /// The stream is archived: replay what is stored, then end.
    pub(super) archived: bool,
    /// Where entries are read from (intermediate storage or the archive).
    pub(super) source: crate::http::entries::EntrySource,
    pub(super) ended: bool,
    /// Last time the viewer was sent entries.
    pub(super) last_progress: Instant,
    /// Since when the viewer has been behind (None while caught up).
    pub(super) behind_since: Option<Instant>,
    /// Last time the peer answered (pong or any frame).
    pub(super) heartbeat: Instant,
    pub(super) ping_interval: Duration,
    pub(super) idle_timeout: Duration,
    pub(super) lag_timeout: Duration,
    pub(super) mailbox: usize,
    pub(super) max_frame_bytes: u64,
    pub(super) _slot: ViewerSlot,
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
