//! The text form of a stream (`format=text|raw`, `follow=true`), which `/logs/…` also
//! serves: rendered a page at a time, streamed as entries arrive when followed.

use super::*;

/// Renders entries as the text form: lines (value + delimiter) or raw data.
pub(super) fn render(entries: &[Entry]) -> Bytes {
    let mut out = Vec::new();
    for e in entries {
        match &e.content {
            Content::Text(lines) => {
                for l in lines {
                    out.extend_from_slice(l.value.as_bytes());
                    out.extend_from_slice(l.delimiter.as_bytes());
                }
            }
            Content::Binary(data) | Content::Datagram { data, .. } => out.extend_from_slice(data),
        }
    }
    Bytes::from(out)
}

/// Where a text response is in its stream.
pub(super) struct TextCursor {
    pub(super) source: crate::http::entries::EntrySource,
    pub(super) next: u64,
    /// Without follow: the contiguous end when the request came (or no end, skipping
    /// gaps, with non_contiguous).
    pub(super) end: u64,
    /// Stop at the first missing entry (the default), or skip gaps.
    pub(super) contiguous: bool,
    pub(super) count_left: Option<usize>,
    pub(super) bytes_left: Option<u64>,
    /// With follow: the stream's progress.
    pub(super) follow: Option<watch::Receiver<Progress>>,
    /// A graceful stop ends a followed response (the client resumes with `index`).
    pub(super) shutdown: watch::Receiver<bool>,
    /// With follow: the connection, watched so a peer that left releases everything at
    /// once instead of when the stream next moves.
    pub(super) peer: Option<crate::http::watch::PeerSocket>,
    /// With follow: this follower's place in the viewer counts.
    pub(super) _slot: Option<crate::http::watch::ViewerSlot>,
    /// With follow: the caller may see purged streams (an admin).
    pub(super) see_purged: bool,
}

impl TextCursor {
    /// The stream's actor stopped under a follower (in a cluster: it was deposed, or its
    /// node's replica changed): follow the stream's new actor. False when it is gone.
    async fn follow_again(&mut self) -> bool {
        let msg = Follow {
            see_purged: self.see_purged,
        };
        let s = &self.source;
        match s.directory.send(&s.project, &s.path, msg).await {
            Ok((_, rx)) => {
                self.follow = Some(rx);
                true
            }
            Err(_) => false,
        }
    }

    /// The next piece of text, waiting for entries when following; None at the end.
    async fn next_piece(&mut self) -> Option<Result<Bytes, ApiError>> {
        loop {
            if self.count_left == Some(0) || self.bytes_left == Some(0) {
                return None;
            }
            let end = match &mut self.follow {
                None if self.next >= self.end => return None,
                None => self.end,
                Some(rx) => {
                    let progress = *rx.borrow_and_update();
                    if progress.finished_at(self.next) {
                        return None;
                    }
                    if self.next >= progress.next_index {
                        // Wait for more; a closed channel means the stream went away.
                        let peer = self.peer.clone();
                        let peer_gone = async move {
                            match peer {
                                Some(peer) => peer.closed().await,
                                None => futures::future::pending().await,
                            }
                        };
                        let closed = tokio::select! {
                            changed = rx.changed() => changed.is_err(),
                            _ = self.shutdown.wait_for(|stopping| *stopping) => return None,
                            _ = peer_gone => return None,
                        };
                        if closed && !self.follow_again().await {
                            return None;
                        }
                        continue;
                    }
                    progress.next_index
                }
            };
            let count = self.count_left.unwrap_or(usize::MAX).min(TEXT_PAGE_ENTRIES);
            let bytes = self.bytes_left.unwrap_or(u64::MAX).min(TEXT_PAGE_BYTES);
            let range = ReadRange {
                from: self.next,
                end,
                count,
                bytes,
                contiguous: self.contiguous,
            };
            let page = match self.source.read(range).await {
                Ok(p) => p,
                Err(e) => return Some(Err(e)),
            };
            let Some(last) = page.last() else {
                // Indices below `end` are stored, so an empty page means the data went away.
                return None;
            };
            self.next = last.stream_index + 1;
            let text = render(&page);
            if let Some(c) = &mut self.count_left {
                *c -= page.len();
            }
            if let Some(b) = &mut self.bytes_left {
                *b = b.saturating_sub(text.len() as u64);
            }
            return Some(Ok(text));
        }
    }
}

/// The text form of a stream from `index` (`count`/`bytes` only when given); with
/// `follow=true`, streamed (chunked) as entries arrive, ending after the terminal entry.
pub async fn text(
    state: &State,
    req: &HttpRequest,
    caller: Caller,
    project: &str,
    path: &StreamPath,
    p: &ReadParams,
) -> Result<HttpResponse, ApiError> {
    let (stream, follow) = if p.follow {
        let (s, rx) = state
            .directory
            .send_existing(
                project,
                path,
                Follow {
                    see_purged: caller.admin,
                },
            )
            .await?;
        (s, Some(rx))
    } else {
        (load(state, caller, project, path).await?, None)
    };
    // A follower counts as a viewer: the same limits, the same 429.
    let slot = match follow {
        Some(_) => Some(state.viewers.acquire(project, &stream.id)?),
        None => None,
    };
    let cursor = TextCursor {
        peer: req.conn_data::<crate::http::watch::PeerSocket>().cloned(),
        _slot: slot,
        source: crate::http::entries::EntrySource::new(state, project, path, &stream),
        next: p.index.unwrap_or(0),
        // With non_contiguous, what is stored is rendered, skipping gaps.
        end: if p.non_contiguous {
            i64::MAX as u64
        } else {
            stream.state.next_index as u64
        },
        contiguous: !p.non_contiguous,
        count_left: p.count.filter(|c| *c > 0).map(|c| c as usize),
        bytes_left: p.bytes.filter(|b| *b > 0),
        follow,
        shutdown: state.shutdown.subscribe(),
        see_purged: caller.admin,
    };
    let body = futures::stream::unfold(cursor, |mut c| async move {
        c.next_piece().await.map(|piece| (piece, c))
    });
    let content_type = match stream.descriptor.stream_type {
        StreamType::Text => "text/plain; charset=utf-8",
        StreamType::Binary | StreamType::Datagram => "application/octet-stream",
    };
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .streaming(body))
}

/// `GET /logs/{project}/{prefix}/+/{name}`: the viewer page for a browser (`Accept:
/// text/html`, no `format`), the stream's text for everything else.
#[utoipa::path(
    get, path = "/logs/{project}/{prefix}/+/{name}", tag = "Web",
    params(("project" = String, Path, description = "LUCI project name", pattern = r"^[a-z][a-z0-9_-]{0,99}$"), ("prefix" = String, Path, description = "The stream's prefix: segments joined by `/`, sent unescaped (`%2F` is decoded too)", pattern = r"^[A-Za-z0-9][A-Za-z0-9:_.-]*(/[A-Za-z0-9][A-Za-z0-9:_.-]*)*$", allow_reserved), ("name" = String, Path, description = "The stream's name: segments joined by `/`, sent unescaped (`%2F` is decoded too)", pattern = r"^[A-Za-z0-9][A-Za-z0-9:_.-]*(/[A-Za-z0-9][A-Za-z0-9:_.-]*)*$", allow_reserved),
           ("format" = Option<ReadFormat>, Query, description = "text or raw: always the text"),
           ("follow" = Option<bool>, Query, description = "Stream the text until the terminal entry")),
    responses((status = 200, description = "The viewer page for Accept: text/html, else the stream's text", content_type = "text/plain"),
              (status = 400, description = "invalid_argument", body = crate::errors::ErrorBody), (status = 401, description = "unauthenticated", body = crate::errors::ErrorBody), (status = 403, description = "permission_denied (or the project is not visible)", body = crate::errors::ErrorBody), (status = 404, description = "not_found", body = crate::errors::ErrorBody)),
    security((), ("bearer" = []))
)]
pub async fn web_text(state: State, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    if crate::http::webapp::wants_html(&req) {
        return Ok(crate::http::webapp::viewer());
    }
    let Authorized {
        caller, project, ..
    } = authorize(&state, &req, None).await?;
    let path = stream_path(&req)?;
    let p = read_params(&req)?;
    text(&state, &req, caller, &project, &path, &p).await
}
