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
    /// What was sent and what is known: every rule about what to send next.
    pub(super) cursor: Cursor,
    /// In the stream actor's live set.
    pub(super) subscribed: bool,
    /// The first state frame went out.
    pub(super) sent_state: bool,
    /// A storage read is under way.
    pub(super) reading: bool,
    /// Where entries are read from (intermediate storage or the archive).
    pub(super) source: crate::http::entries::EntrySource,
    pub(super) ended: bool,
    /// Last time the peer answered (pong or any frame).
    pub(super) heartbeat: Instant,
    pub(super) ping_interval: Duration,
    pub(super) idle_timeout: Duration,
    pub(super) lag_timeout: Duration,
    pub(super) mailbox: usize,
    pub(super) max_frame_bytes: u64,
    /// The connection's socket: ended by the session once its close frame is out.
    pub(super) socket: Option<PeerSocket>,
    pub(super) _slot: ViewerSlot,
}

type Ctx = WsContext<WsSession>;

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
                    Ok((state, progress)) => {
                        act.subscribed = true;
                        // The first frame is always the state; after a lag, a missed change is resent.
                        if !act.sent_state || act.cursor.terminal() != progress.terminal_index {
                            act.sent_state = true;
                            ctx.text(state);
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

    /// Records where the stream stands and sends what the viewer is missing.
    fn on_progress(&mut self, p: Progress, at: Instant, ctx: &mut Ctx) {
        self.cursor.note_progress(&p, at);
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
        if self.cursor.caught_up() {
            if self.subscribed {
                self.cursor.settle();
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
        let range = self.cursor.next_read(PAGE_ENTRIES, self.max_frame_bytes);
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
                Ok(_) if act.cursor.archived() || act.source.archive.is_some() => {
                    // Everything stored has been sent.
                    act.end(act.cursor.replay_end(), ctx);
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
        let reason = format!("storage unavailable; resume from={}", self.cursor.next());
        ctx.close(Some(ws::CloseReason {
            code: ws::CloseCode::Again,
            description: Some(reason),
        }));
        ctx.stop();
    }

    fn send_entries(&mut self, entries: &[Entry], ctx: &mut Ctx) {
        ctx.text(logdog_schema::wire::entries_frame(entries));
        if let Some(last) = entries.last() {
            self.cursor.sent(last.stream_index + 1, Instant::now());
        }
        self.check_end(ctx);
    }

    /// After the terminal entry: `end`, then a normal close.
    fn check_end(&mut self, ctx: &mut Ctx) {
        if let Some(t) = self.cursor.finished() {
            if !self.ended {
                self.end(t, ctx);
            }
        }
    }

    /// `end`, then a normal close.
    fn end(&mut self, terminal_index: i64, ctx: &mut Ctx) {
        self.ended = true;
        ctx.text(logdog_schema::wire::end_frame(terminal_index));
        ctx.close(Some(ws::CloseReason {
            code: ws::CloseCode::Normal,
            description: None,
        }));
        ctx.stop();
    }

    /// Closes a viewer that is behind and has made no progress for `lag_timeout` (see
    /// `Cursor::lagged`); true when the viewer is behind and done for.
    fn lagging(&mut self, ctx: &mut Ctx) -> bool {
        if self.cursor.behind_since().is_none() {
            return false;
        }
        if self.ended {
            return true;
        }
        if self.cursor.lagged(Instant::now(), self.lag_timeout) {
            let reason = format!("lagged; resume from={}", self.cursor.next());
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
                    description: Some(format!(
                        "server shutting down; resume from={}",
                        act.cursor.next()
                    )),
                }));
                ctx.stop();
            }),
        );
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
        // The close handshake is done on our side (the close frame is queued, and goes
        // out in this same poll): end the connection once it has left, as the server
        // should, rather than leave the peer waiting for the HTTP layer's linger.
        if let Some(socket) = self.socket.take() {
            actix::spawn(socket.end_after_flush());
        }
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
                self.cursor.note_end(end, at);
                if self.lagging(ctx) {
                    return;
                }
                if !self.reading && self.cursor.continues(first) {
                    ctx.shared_text(frame);
                    self.cursor.sent(end, Instant::now());
                    self.check_end(ctx);
                } else if end > self.cursor.next() {
                    self.catch_up(ctx);
                }
            }
            Live::Advanced { end } => {
                self.cursor.note_end(end, at);
                self.catch_up(ctx);
            }
            Live::State { frame, progress } => {
                ctx.text(frame);
                self.on_progress(progress, at, ctx);
            }
            Live::Lagged => {
                self.subscribed = false;
                self.cursor.dropped(at);
                if !self.lagging(ctx) {
                    self.catch_up(ctx);
                }
            }
        }
    }
}

impl StreamHandler<Result<ws::Frame, ws::ProtocolError>> for WsSession {
    fn handle(&mut self, msg: Result<ws::Frame, ws::ProtocolError>, ctx: &mut Ctx) {
        self.heartbeat = Instant::now();
        self.liveness.ran();
        match msg {
            Ok(ws::Frame::Ping(p)) => ctx.pong(&p),
            Ok(ws::Frame::Close(reason)) => {
                ctx.close(reason);
                ctx.stop();
            }
            Ok(_) => {}
            Err(_) => ctx.stop(),
        }
    }
}
