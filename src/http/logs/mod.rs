//! Logs (the viewer side): Get and Tail here; the text form of a stream
//! (`format=text|raw`, `follow=true`) in `text`; Query and the prefix listing in `query`.

use actix_web::{HttpRequest, HttpResponse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use bytes::Bytes;
use logdog_actors::stream::{Follow, Progress};
use logdog_schema::chunk::view;
use logdog_schema::names::{self, NameGlob, StreamPath};
use logdog_schema::store::{self, ReadRange, StreamFilter};
use logdog_schema::wire::{
    format_us, Content, Entry, LogEntry, Status, StreamJson, StreamType, ENTRIES_CONTENT_TYPE,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::blocking;
use super::{authorize, load, params, stream_path, Authorized, Caller, State};
use crate::errors::ApiError;

mod archive;
mod query;
mod search;
mod sections;
mod text;

pub use archive::*;
pub use query::*;
pub use search::*;
pub use sections::*;
pub use text::*;

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
pub(super) fn check_index(name: &str, v: Option<u64>) -> Result<(), ApiError> {
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
/// entries straight from their stored records (`json_page`), clients read them as `LogEntry`.
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

/// Get's and Tail's JSON answer (`LogsResponse`, field for field), written from the page's
/// binary records (as `EntrySource::read_records` gives them) through borrowed views: no
/// entry is decoded into owned values on the way, and line text is checked (UTF-8, known
/// delimiters) and escaped in one pass (`view::Entry::write_json`).
fn json_page(
    project: &str,
    stream: &StreamJson,
    records: &[Bytes],
    next_index: u64,
    with_state: bool,
) -> Result<HttpResponse, ApiError> {
    let corrupt = |e: String| ApiError::internal(format!("stored entries are corrupt: {e}"));
    // About twice the records' size for text entries, in one allocation.
    let mut body = Vec::with_capacity(512 + records.iter().map(|r| r.len() * 2).sum::<usize>());
    body.extend_from_slice(br#"{"project":"#);
    serde_json::to_writer(&mut body, project).map_err(ApiError::internal)?;
    body.extend_from_slice(br#","path":"#);
    serde_json::to_writer(&mut body, &stream.path).map_err(ApiError::internal)?;
    body.extend_from_slice(br#","entries":["#);
    let mut first = true;
    for piece in records {
        let mut rest = &piece[..];
        while !rest.is_empty() {
            let (record, after) =
                view::split_record(rest).ok_or_else(|| corrupt("a record is cut short".into()))?;
            let (e, tail) = view::Entry::scan(record).map_err(corrupt)?;
            if !tail.is_empty() {
                return Err(corrupt("a record holds bytes after its entry".into()));
            }
            if !first {
                body.push(b',');
            }
            first = false;
            e.write_json(&mut body).map_err(corrupt)?;
            rest = after;
        }
    }
    body.extend_from_slice(br#"],"next_index":"#);
    body.extend_from_slice(next_index.to_string().as_bytes());
    if with_state {
        body.extend_from_slice(br#","descriptor":"#);
        serde_json::to_writer(&mut body, &stream.descriptor).map_err(ApiError::internal)?;
        body.extend_from_slice(br#","state":"#);
        serde_json::to_writer(&mut body, &stream.state).map_err(ApiError::internal)?;
    }
    body.push(b'}');
    Ok(HttpResponse::Ok()
        .content_type(actix_web::http::header::ContentType::json())
        .insert_header((NEXT_INDEX_HEADER, next_index.to_string()))
        .body(body))
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
    responses((status = 200, description = "Entries (JSON, `next_index` also in the X-Logdog-Next-Index header); with `Accept: application/x-logdog-entries` the same entries as length-delimited records (docs/API.md, \"Binary entries\"), `next_index` in the X-Logdog-Next-Index header; with format=text|raw the text (text/plain) or bytes (application/octet-stream)", content((LogsPage = "application/json"), (Vec<u8> = "application/x-logdog-entries"), (String = "text/plain"), (String = "application/octet-stream")),
                  headers(("X-Logdog-Next-Index" = u64, description = "JSON and binary answers: one past the last entry returned (or `index` when none is), as JSON's `next_index`"))),
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
    let binary = wants_binary(&req);
    if binary && p.state {
        return Err(ApiError::invalid(
            "state=true is for JSON answers; the binary form carries entries only",
        ));
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
    let range = ReadRange {
        from: index,
        end,
        count,
        bytes,
        contiguous,
    };
    if binary {
        let (records, next) = source.read_records(range).await?;
        let size = records.iter().map(|r| r.len() as u64).sum();
        let pieces =
            futures::stream::iter(records.into_iter().map(Ok::<_, std::convert::Infallible>));
        return Ok(HttpResponse::Ok()
            .content_type(ENTRIES_CONTENT_TYPE)
            .insert_header((NEXT_INDEX_HEADER, next.to_string()))
            .body(actix_web::body::SizedStream::new(size, pieces)));
    }
    let (records, next) = source.read_records(range).await?;
    json_page(&project, &stream, &records, next, p.state)
}

/// The header of a Get answer (JSON or binary) that holds what JSON's `next_index` holds,
/// so a reader can ask for the next page before the body has arrived.
pub const NEXT_INDEX_HEADER: &str = "X-Logdog-Next-Index";

/// Does the request ask for entries in their binary form (`Accept:
/// application/x-logdog-entries`)?
fn wants_binary(req: &HttpRequest) -> bool {
    req.headers()
        .get(actix_web::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| {
            a.split(',')
                .any(|t| t.split(';').next().unwrap_or("").trim() == ENTRIES_CONTENT_TYPE)
        })
}

/// `GET …/tail/{prefix}/+/{name}`: the last contiguous entry (`count=N`: the last N).
#[utoipa::path(
    get, path = "/api/v1/projects/{project}/tail/{prefix}/+/{name}", tag = "Logs",
    params(("project" = String, Path, description = "LUCI project name", pattern = r"^[a-z][a-z0-9_-]{0,99}$"), ("prefix" = String, Path, description = "The stream's prefix: segments joined by `/`, sent unescaped (`%2F` is decoded too)", pattern = r"^[A-Za-z0-9][A-Za-z0-9:_.-]*(/[A-Za-z0-9][A-Za-z0-9:_.-]*)*$", allow_reserved), ("name" = String, Path, description = "The stream's name: segments joined by `/`, sent unescaped (`%2F` is decoded too)", pattern = r"^[A-Za-z0-9][A-Za-z0-9:_.-]*(/[A-Za-z0-9][A-Za-z0-9:_.-]*)*$", allow_reserved),
           ("count" = Option<u64>, Query, description = "The last N entries (default 1)", maximum = 9007199254740991.0),
           ("state" = Option<bool>, Query, description = "Include descriptor and state"),
           ("format" = Option<ReadFormat>, Query, description = "text or raw")),
    responses((status = 200, description = "The last contiguous entries (JSON, `next_index` also in the X-Logdog-Next-Index header), or with format=text|raw their text or bytes", content((LogsPage = "application/json"), (String = "text/plain"), (String = "application/octet-stream")),
                  headers(("X-Logdog-Next-Index" = u64, description = "JSON answers: one past the last entry returned, as `next_index`"))), (status = 400, description = "invalid_argument", body = crate::errors::ErrorBody), (status = 401, description = "unauthenticated", body = crate::errors::ErrorBody), (status = 403, description = "permission_denied (or the project is not visible)", body = crate::errors::ErrorBody), (status = 404, description = "not_found", body = crate::errors::ErrorBody)),
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
    let (records, next_index) = source
        .read_records(ReadRange {
            from,
            end: next,
            count: count as usize,
            bytes,
            contiguous: true,
        })
        .await?;
    json_page(&project, &stream, &records, next_index, p.state)
}
