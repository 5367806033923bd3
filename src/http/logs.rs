//! Logs (the viewer side): Get, Tail, Query, the prefix listing, and the text form of a
//! stream (`format=text|raw`, `follow=true`) that `/logs/…` also serves.

use actix_web::{HttpRequest, HttpResponse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use bytes::Bytes;
use logdog_actors::stream::{Follow, Progress};
use logdog_schema::names::{self, NameGlob, StreamPath};
use logdog_schema::store::{self, ReadRange, StreamFilter};
use logdog_schema::wire::{
    format_us, Content, Entry, EntryJson, LogEntry, Status, StreamJson, StreamType,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::blocking;
use super::{authorize, load, params, stream_path, Authorized, Caller, State};
use crate::errors::ApiError;

/// The most streams one Query request looks at (a glob may match few of them).
const QUERY_SCAN_BUDGET: usize = 10_000;
/// Get's byte cap, default and maximum (16 MiB).
const MAX_GET_BYTES: u64 = 16 << 20;
/// Entries and bytes read per page while rendering text.
const TEXT_PAGE_ENTRIES: usize = 1000;
const TEXT_PAGE_BYTES: u64 = 1 << 20;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadParams {
    index: Option<u64>,
    count: Option<u64>,
    bytes: Option<u64>,
    #[serde(default)]
    state: bool,
    #[serde(default)]
    non_contiguous: bool,
    format: Option<ReadFormat>,
    #[serde(default)]
    follow: bool,
}

/// How Get, Tail and `/logs/…` answer: JSON entries (the default), or the rendered text
/// (`text` and `raw` are the same, for every stream type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReadFormat {
    Json,
    Text,
    Raw,
}

/// 400 for an index or count above what JSON carries exactly (2^53 − 1).
fn check_index(name: &str, v: Option<u64>) -> Result<(), ApiError> {
    match v {
        Some(v) if v > logdog_schema::wire::MAX_STREAM_INDEX => {
            Err(ApiError::invalid(format!("{name} {v} is above 2^53 - 1")))
        }
        _ => Ok(()),
    }
}

/// `params` for Get and Tail, with the numbers checked.
fn read_params(req: &HttpRequest) -> Result<ReadParams, ApiError> {
    let p: ReadParams = params(req)?;
    check_index("index", p.index)?;
    check_index("count", p.count)?;
    check_index("bytes", p.bytes)?;
    Ok(p)
}

/// Is `format` a text rendering? `text` and `raw` both work for every stream type.
fn text_format(p: &ReadParams) -> bool {
    matches!(p.format, Some(ReadFormat::Text | ReadFormat::Raw))
}

/// The caps Get applies: `count` (default and cap from the config) and `bytes`.
fn caps(state: &State, p: &ReadParams) -> (usize, u64) {
    let limits = &state.config.limits;
    let count = match p.count {
        None | Some(0) => limits.get_default_count,
        Some(c) => c.min(limits.get_max_count),
    };
    let bytes = match p.bytes {
        None | Some(0) => MAX_GET_BYTES,
        Some(b) => b.min(MAX_GET_BYTES),
    };
    (count.max(1) as usize, bytes)
}

/// Get's and Tail's answer. `E` is how its entries are written: the server writes stored
/// entries straight through `EntryJson` (no copies), clients read them as `LogEntry`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogsResponse<E> {
    pub project: String,
    pub path: String,
    pub entries: Vec<E>,
    /// One past the last entry returned (or `index` when none is): the index to ask next.
    pub next_index: u64,
    /// With `state=true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub descriptor: Option<logdog_schema::wire::Descriptor>,
    /// With `state=true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<logdog_schema::wire::StreamStateJson>,
}

/// The page of entries as clients read it.
pub type LogsPage = LogsResponse<LogEntry>;

fn entries_body<'a>(
    project: &str,
    stream: &StreamJson,
    entries: &'a [Entry],
    next_index: u64,
    with_state: bool,
) -> LogsResponse<EntryJson<'a>> {
    LogsResponse {
        project: project.to_owned(),
        path: stream.path.clone(),
        entries: entries.iter().map(EntryJson).collect(),
        next_index,
        descriptor: with_state.then(|| stream.descriptor.clone()),
        state: with_state.then(|| stream.state.clone()),
    }
}

/// Query's answer.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QueryResponse {
    pub streams: Vec<StreamJson>,
    /// Pass as `cursor` for the next page; null at the end.
    pub next_cursor: Option<String>,
}

/// A registered prefix, as the prefix listing shows it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PrefixListing {
    pub prefix: String,
    pub created: String,
    pub expires_at: String,
}

/// The prefix listing's answer.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PrefixList {
    pub prefixes: Vec<PrefixListing>,
    /// Pass as `cursor` for the next page; null at the end.
    pub next_cursor: Option<String>,
}

/// `GET …/logs/{prefix}/+/{name}`: entries from `index`.
#[utoipa::path(
    get, path = "/api/v1/projects/{project}/logs/{prefix}/+/{name}", tag = "Logs",
    params(("project" = String, Path, description = "LUCI project name", pattern = r"^[a-z][a-z0-9_-]{0,99}$"), ("prefix" = String, Path, description = "The stream's prefix: segments joined by `/`, sent unescaped (`%2F` is decoded too)", pattern = r"^[A-Za-z0-9][A-Za-z0-9:_.-]*(/[A-Za-z0-9][A-Za-z0-9:_.-]*)*$", allow_reserved), ("name" = String, Path, description = "The stream's name: segments joined by `/`, sent unescaped (`%2F` is decoded too)", pattern = r"^[A-Za-z0-9][A-Za-z0-9:_.-]*(/[A-Za-z0-9][A-Za-z0-9:_.-]*)*$", allow_reserved),
           ("index" = Option<u64>, Query, description = "First entry (default 0)", maximum = 9007199254740991.0),
           ("count" = Option<u64>, Query, description = "Entries at most", maximum = 9007199254740991.0),
           ("bytes" = Option<u64>, Query, description = "Payload bytes at most (default and cap 16 MiB)", maximum = 9007199254740991.0),
           ("state" = Option<bool>, Query, description = "Include descriptor and state"),
           ("non_contiguous" = Option<bool>, Query, description = "Skip gaps (JSON and text alike)"),
           ("format" = Option<ReadFormat>, Query, description = "text or raw: the rendered text"),
           ("follow" = Option<bool>, Query, description = "With format: stream until the terminal entry")),
    responses((status = 200, description = "Entries (JSON), or with format=text|raw the text (text/plain) or bytes (application/octet-stream)", content((LogsPage = "application/json"), (String = "text/plain"), (String = "application/octet-stream"))),
              (status = 400, description = "invalid_argument", body = crate::errors::ErrorBody), (status = 401, description = "unauthenticated", body = crate::errors::ErrorBody), (status = 403, description = "permission_denied (or the project is not visible)", body = crate::errors::ErrorBody), (status = 404, description = "not_found", body = crate::errors::ErrorBody)),
    security((), ("bearer" = []))
)]
pub async fn get(state: State, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let Authorized {
        caller, project, ..
    } = authorize(&state, &req, None).await?;
    let path = stream_path(&req)?;
    let p = read_params(&req)?;
    if text_format(&p) {
        return text(&state, &req, caller, &project, &path, &p).await;
    }
    let stream = load(&state, caller, &project, &path).await?;
    let index = p.index.unwrap_or(0);
    let (count, bytes) = caps(&state, &p);
    let contiguous = !p.non_contiguous;
    let end = if contiguous {
        stream.state.next_index as u64
    } else {
        i64::MAX as u64
    };
    let mut source = crate::http::entries::EntrySource::new(&state, &project, &path, &stream);
    let entries = source
        .read(ReadRange {
            from: index,
            end,
            count,
            bytes,
            contiguous,
        })
        .await?;
    let next = entries.last().map_or(index, |e| e.stream_index + 1);
    Ok(HttpResponse::Ok().json(entries_body(&project, &stream, &entries, next, p.state)))
}

/// `GET …/tail/{prefix}/+/{name}`: the last contiguous entry (`count=N`: the last N).
#[utoipa::path(
    get, path = "/api/v1/projects/{project}/tail/{prefix}/+/{name}", tag = "Logs",
    params(("project" = String, Path, description = "LUCI project name", pattern = r"^[a-z][a-z0-9_-]{0,99}$"), ("prefix" = String, Path, description = "The stream's prefix: segments joined by `/`, sent unescaped (`%2F` is decoded too)", pattern = r"^[A-Za-z0-9][A-Za-z0-9:_.-]*(/[A-Za-z0-9][A-Za-z0-9:_.-]*)*$", allow_reserved), ("name" = String, Path, description = "The stream's name: segments joined by `/`, sent unescaped (`%2F` is decoded too)", pattern = r"^[A-Za-z0-9][A-Za-z0-9:_.-]*(/[A-Za-z0-9][A-Za-z0-9:_.-]*)*$", allow_reserved),
           ("count" = Option<u64>, Query, description = "The last N entries (default 1)", maximum = 9007199254740991.0),
           ("state" = Option<bool>, Query, description = "Include descriptor and state"),
           ("format" = Option<ReadFormat>, Query, description = "text or raw")),
    responses((status = 200, description = "The last contiguous entries (JSON), or with format=text|raw their text or bytes", content((LogsPage = "application/json"), (String = "text/plain"), (String = "application/octet-stream"))), (status = 400, description = "invalid_argument", body = crate::errors::ErrorBody), (status = 401, description = "unauthenticated", body = crate::errors::ErrorBody), (status = 403, description = "permission_denied (or the project is not visible)", body = crate::errors::ErrorBody), (status = 404, description = "not_found", body = crate::errors::ErrorBody)),
    security((), ("bearer" = []))
)]
pub async fn tail(state: State, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let Authorized {
        caller, project, ..
    } = authorize(&state, &req, None).await?;
    let path = stream_path(&req)?;
    let p = read_params(&req)?;
    if p.index.is_some() || p.non_contiguous || p.follow {
        return Err(ApiError::invalid(
            "Tail takes count, bytes, state and format only",
        ));
    }
    let stream = load(&state, caller, &project, &path).await?;
    let next = stream.state.next_index as u64;
    let count = match p.count {
        None | Some(0) => 1,
        Some(c) => c.min(state.config.limits.get_max_count),
    };
    let from = next.saturating_sub(count);
    if text_format(&p) {
        let p = ReadParams {
            index: Some(from),
            count: Some(count),
            ..p
        };
        return text(&state, &req, caller, &project, &path, &p).await;
    }
    let bytes = p
        .bytes
        .filter(|b| *b > 0)
        .unwrap_or(MAX_GET_BYTES)
        .min(MAX_GET_BYTES);
    let mut source = crate::http::entries::EntrySource::new(&state, &project, &path, &stream);
    let entries = source
        .read(ReadRange {
            from,
            end: next,
            count: count as usize,
            bytes,
            contiguous: true,
        })
        .await?;
    let next_index = entries.last().map_or(from, |e| e.stream_index + 1);
    Ok(HttpResponse::Ok().json(entries_body(
        &project, &stream, &entries, next_index, p.state,
    )))
}

/// Renders entries as the text form: lines (value + delimiter) or raw data.
fn render(entries: &[Entry]) -> Bytes {
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
struct TextCursor {
    source: crate::http::entries::EntrySource,
    next: u64,
    /// Without follow: the contiguous end when the request came (or no end, skipping
    /// gaps, with non_contiguous).
    end: u64,
    /// Stop at the first missing entry (the default), or skip gaps.
    contiguous: bool,
    count_left: Option<usize>,
    bytes_left: Option<u64>,
    /// With follow: the stream's progress.
    follow: Option<watch::Receiver<Progress>>,
    /// A graceful stop ends a followed response (the client resumes with `index`).
    shutdown: watch::Receiver<bool>,
    /// With follow: the connection, watched so a peer that left releases everything at
    /// once instead of when the stream next moves.
    peer: Option<super::watch::PeerSocket>,
    /// With follow: this follower's place in the viewer counts.
    _slot: Option<super::watch::ViewerSlot>,
}

impl TextCursor {
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
                        tokio::select! {
                            changed = rx.changed() => if changed.is_err() {
                                return None;
                            },
                            _ = self.shutdown.wait_for(|stopping| *stopping) => return None,
                            _ = peer_gone => return None,
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
        peer: req.conn_data::<super::watch::PeerSocket>().cloned(),
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
    if super::webapp::wants_html(&req) {
        return Ok(super::webapp::viewer());
    }
    let Authorized {
        caller, project, ..
    } = authorize(&state, &req, None).await?;
    let path = stream_path(&req)?;
    let p = read_params(&req)?;
    text(&state, &req, caller, &project, &path, &p).await
}

/// Query's `purged` filter (for the document; parsed with the other parameters).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PurgedFilter {
    No,
    Yes,
    Both,
}

/// A Query or listing cursor: the last path (or prefix) returned, opaque to clients.
/// Any decodable cursor is a place to continue from (paths after it), so bytes that are
/// not UTF-8 are read leniently rather than refused.
fn decode_cursor(c: &str) -> Result<String, ApiError> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    LENIENT
        .decode(c)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .map_err(|_| ApiError::invalid("invalid cursor"))
}

fn encode_cursor(last: &str) -> String {
    B64URL.encode(last.as_bytes())
}

/// What Query was asked, parsed and checked.
struct QueryRequest {
    filter: StreamFilter,
    glob: Option<NameGlob>,
    limit: usize,
}

fn parse_query(req: &HttpRequest, project: &str, caller: Caller) -> Result<QueryRequest, ApiError> {
    let mut filter = StreamFilter {
        project: project.to_owned(),
        purged: Some(false),
        ..StreamFilter::default()
    };
    let (mut glob, mut limit) = (None, 100usize);
    for (k, v) in form_urlencoded::parse(req.query_string().as_bytes()) {
        let v = v.into_owned();
        match &*k {
            "prefix" => {
                names::validate_prefix(&v)?;
                filter.prefix = Some(v);
            }
            "name" => glob = Some(NameGlob::parse(&v)?),
            "tag" => {
                let (key, value) = match v.split_once('=') {
                    Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                    None => (v.clone(), None),
                };
                names::validate_tag(&key, value.as_deref().unwrap_or(""))?;
                if filter.tags.len() == names::MAX_TAG_FILTERS {
                    return Err(ApiError::invalid(format!(
                        "at most {} tag filters",
                        names::MAX_TAG_FILTERS
                    )));
                }
                filter.tags.push((key, value));
            }
            "status" => {
                filter.status = Some(Status::parse(&v).ok_or_else(|| {
                    ApiError::invalid(format!(
                        "invalid status {v:?}: streaming, terminated or archived"
                    ))
                })?);
            }
            "stream_type" => {
                filter.stream_type = Some(
                    StreamType::parse(&v)
                        .ok_or_else(|| ApiError::invalid(format!("invalid stream_type {v:?}")))?,
                );
            }
            "content_type" => filter.content_type = Some(v),
            "purged" => {
                filter.purged = match v.as_str() {
                    "no" => Some(false),
                    "yes" => Some(true),
                    "both" => None,
                    _ => {
                        return Err(ApiError::invalid(format!(
                            "invalid purged {v:?}: no, yes or both"
                        )))
                    }
                };
                if filter.purged != Some(false) && !caller.admin {
                    return Err(ApiError::permission_denied(
                        "purged=yes|both needs the admin role",
                    ));
                }
            }
            "limit" => {
                limit = v
                    .parse()
                    .ok()
                    .filter(|l| (1..=500).contains(l))
                    .ok_or_else(|| ApiError::invalid(format!("invalid limit {v:?}: 1 to 500")))?;
            }
            "cursor" => filter.after = Some(decode_cursor(&v)?),
            other => {
                return Err(ApiError::invalid(format!(
                    "unknown query parameter {other:?}"
                )))
            }
        }
    }
    if let (Some(prefix), Some(g)) = (&filter.prefix, &glob) {
        let lit = g.literal_prefix();
        filter.path_starts_with = Some(format!("{prefix}{}{lit}", names::PATH_SEP));
    }
    Ok(QueryRequest {
        filter,
        glob,
        limit,
    })
}

/// `GET /api/v1/projects/{project}/streams`: Query, ordered by path, a page at a time.
#[utoipa::path(
    get, path = "/api/v1/projects/{project}/streams", tag = "Logs",
    params(("project" = String, Path, description = "LUCI project name", pattern = r"^[a-z][a-z0-9_-]{0,99}$"),
           ("prefix" = Option<String>, Query, description = "Exact prefix", pattern = r"^[A-Za-z0-9][A-Za-z0-9:_.-]*(/[A-Za-z0-9][A-Za-z0-9:_.-]*)*$"),
           ("name" = Option<String>, Query, description = "Glob: * within a segment, ** whole segments", pattern = r"^(\*\*|\*|([A-Za-z0-9]|\*[A-Za-z0-9:_.-])([A-Za-z0-9:_.-]|\*[A-Za-z0-9:_.-])*\*?)(/(\*\*|\*|([A-Za-z0-9]|\*[A-Za-z0-9:_.-])([A-Za-z0-9:_.-]|\*[A-Za-z0-9:_.-])*\*?))*$"),
           ("tag" = Option<Vec<String>>, Query, description = "k=v or k (repeatable, all must match; at most 16); keys follow the name rules", pattern = r"^(?=[^=]{1,64}(=|$))[A-Za-z0-9][A-Za-z0-9:_.-]*(/[A-Za-z0-9][A-Za-z0-9:_.-]*)*(=.{0,4096})?$"),
           ("status" = Option<logdog_schema::wire::Status>, Query, description = "streaming, terminated or archived"),
           ("stream_type" = Option<StreamType>, Query, description = "text, binary or datagram"),
           ("content_type" = Option<String>, Query, description = "Exact content type"),
           ("purged" = Option<PurgedFilter>, Query, description = "no (default), yes or both (admin)"),
           ("limit" = Option<u32>, Query, description = "Default 100, max 500", minimum = 1, maximum = 500),
           ("cursor" = Option<String>, Query, description = "From next_cursor (opaque, URL-safe base64)", pattern = r"^([A-Za-z0-9_-]{4})*([A-Za-z0-9_-]{2,3})?$")),
    responses((status = 200, description = "Streams ordered by path", body = QueryResponse), (status = 400, description = "invalid_argument", body = crate::errors::ErrorBody), (status = 401, description = "unauthenticated", body = crate::errors::ErrorBody), (status = 403, description = "permission_denied (or the project is not visible)", body = crate::errors::ErrorBody)),
    security((), ("bearer" = []))
)]
pub async fn query(state: State, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let Authorized {
        caller, project, ..
    } = authorize(&state, &req, None).await?;
    let QueryRequest {
        mut filter,
        glob,
        limit,
    } = parse_query(&req, &project, caller)?;
    let store = state.store.clone();
    let (rows, resume) = blocking(move || {
        // Fetch in batches; the name glob is checked here, everything else in SQL. At
        // most QUERY_SCAN_BUDGET rows are looked at; past it the page goes out short,
        // with a cursor after the last row looked at.
        let batch = (limit as i64 * 2).max(64);
        let (mut out, mut scanned) = (Vec::new(), 0usize);
        loop {
            let rows = store.read(|c| store::query_streams(c, &filter, batch))?;
            let exhausted = (rows.len() as i64) < batch;
            for row in rows {
                scanned += 1;
                filter.after = Some(row.path.clone());
                if glob.as_ref().is_none_or(|g| g.matches(&row.name)) {
                    out.push(row);
                    if out.len() == limit {
                        return Ok::<_, logdog_schema::StoreError>((out, filter.after));
                    }
                }
            }
            if exhausted {
                return Ok((out, None));
            }
            if scanned >= QUERY_SCAN_BUDGET {
                return Ok((out, filter.after));
            }
        }
    })
    .await?;
    let next_cursor = resume.as_deref().map(encode_cursor);
    let streams = rows
        .iter()
        .map(|r| {
            r.descriptor()
                .map(|d| r.to_json(d))
                .map_err(ApiError::internal)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(HttpResponse::Ok().json(QueryResponse {
        streams,
        next_cursor,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrefixParams {
    under: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

/// `GET /api/v1/projects/{project}/prefixes`: registered prefixes, ordered.
#[utoipa::path(
    get, path = "/api/v1/projects/{project}/prefixes", tag = "Registration",
    params(("project" = String, Path, description = "LUCI project name", pattern = r"^[a-z][a-z0-9_-]{0,99}$"), ("under" = Option<String>, Query, description = "Only this prefix and those below it", pattern = r"^[A-Za-z0-9][A-Za-z0-9:_.-]*(/[A-Za-z0-9][A-Za-z0-9:_.-]*)*$"),
           ("limit" = Option<u32>, Query, description = "Default 100, max 500", minimum = 1, maximum = 500),
           ("cursor" = Option<String>, Query, description = "From next_cursor (opaque, URL-safe base64)", pattern = r"^([A-Za-z0-9_-]{4})*([A-Za-z0-9_-]{2,3})?$")),
    responses((status = 200, description = "Registered prefixes, ordered", body = PrefixList), (status = 400, description = "invalid_argument", body = crate::errors::ErrorBody), (status = 401, description = "unauthenticated", body = crate::errors::ErrorBody), (status = 403, description = "permission_denied (or the project is not visible)", body = crate::errors::ErrorBody)),
    security((), ("bearer" = []))
)]
pub async fn list_prefixes(state: State, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let Authorized { project, .. } = authorize(&state, &req, None).await?;
    let p: PrefixParams = params(&req)?;
    if let Some(u) = &p.under {
        names::validate_prefix(u)?;
    }
    let limit = p.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid("limit must be from 1 to 500"));
    }
    let after = p.cursor.as_deref().map(decode_cursor).transpose()?;
    let store = state.store.clone();
    let rows = blocking(move || {
        store.read(|c| {
            store::list_prefixes(c, &project, p.under.as_deref(), after.as_deref(), limit + 1)
        })
    })
    .await?;
    let more = rows.len() as i64 > limit;
    let rows = &rows[..rows.len().min(limit as usize)];
    let next_cursor = if more {
        rows.last().map(|r| encode_cursor(&r.prefix))
    } else {
        None
    };
    let prefixes = rows
        .iter()
        .map(|r| PrefixListing {
            prefix: r.prefix.clone(),
            created: format_us(r.created_us),
            expires_at: format_us(r.expires_us),
        })
        .collect();
    Ok(HttpResponse::Ok().json(PrefixList {
        prefixes,
        next_cursor,
    }))
}
