//! Services (the Collector side): RegisterStream, LoadStream, append, TerminateStream,
//! purge and bundles. Each parses what it can, then lets the stream's actor decide in
//! API.md's order: prefix (412) → secret (403) → stream (404) → body (400) → state (409).

use actix_web::{web, HttpRequest, HttpResponse};
use logdog_actors::stream::{Append, AppendOk, AppendText, Handoff, Purge, Register, Terminate};
use logdog_schema::names::StreamPath;
use logdog_schema::wire::{
    now_us, object_only, Delimiter, DescriptorRequest, IncomingEntry, Line, LogEntry,
};
use serde::{Deserialize, Serialize};

use super::{
    authorize, json_response, media_type, parse_json, prefix_secret, stream_path, Authorized, State,
};
use crate::errors::ApiError;

/// RegisterStream's request (an empty body means `{}`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterStreamRequest {
    /// Omitted: `{}` (a text stream with the default content type, timestamped now).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "object_only::option"
    )]
    pub descriptor: Option<DescriptorRequest>,
    /// -1 or absent: not terminated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminal_index: Option<i64>,
}

/// append's JSON request.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppendRequest {
    #[serde(deserialize_with = "object_only::vec")]
    pub entries: Vec<LogEntry>,
}

/// append's answer, sent once the entries are durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AppendResult {
    /// Every entry below it is stored.
    pub next_index: u64,
    pub accepted: u64,
    pub duplicates: u64,
}

impl From<AppendOk> for AppendResult {
    fn from(r: AppendOk) -> Self {
        Self {
            next_index: r.next_index,
            accepted: r.accepted,
            duplicates: r.duplicates,
        }
    }
}

/// TerminateStream's request (an empty body means `{}`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TerminateRequest {
    /// Omitted: the highest stored index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminal_index: Option<i64>,
}

fn register_message(
    secret: Option<Vec<u8>>,
    body: Result<RegisterStreamRequest, String>,
) -> Register {
    let (descriptor, terminal_index) = match body {
        Ok(r) => (
            r.descriptor
                .unwrap_or_default()
                .resolve(now_us())
                .map_err(|e| format!("invalid descriptor: {e}")),
            r.terminal_index,
        ),
        Err(e) => (Err(e), None),
    };
    Register {
        secret,
        descriptor,
        terminal_index,
    }
}

/// `PUT …/streams/{prefix}/+/{name}`: 201 new, 200 identical re-registration.
#[utoipa::path(
    put, path = "/api/v1/projects/{project}/streams/{prefix}/+/{name}", tag = "Services",
    params(("project" = String, Path, description = "LUCI project name", pattern = r"^[a-z][a-z0-9_-]{0,99}$"), ("prefix" = String, Path, description = "The stream's prefix: segments joined by `/`, sent unescaped (`%2F` is decoded too)", pattern = r"^[A-Za-z0-9][A-Za-z0-9:_.-]*(/[A-Za-z0-9][A-Za-z0-9:_.-]*)*$", allow_reserved), ("name" = String, Path, description = "The stream's name: segments joined by `/`, sent unescaped (`%2F` is decoded too)", pattern = r"^[A-Za-z0-9][A-Za-z0-9:_.-]*(/[A-Za-z0-9][A-Za-z0-9:_.-]*)*$", allow_reserved), ("X-Prefix-Secret" = Option<String>, Header, description = "The prefix secret (base64); writes need it (403 when missing or wrong, after the prefix check)")), request_body = RegisterStreamRequest,
    responses((status = 201, description = "Created", body = logdog_schema::wire::StreamJson),
              (status = 200, description = "Already registered with an equal descriptor", body = logdog_schema::wire::StreamJson),
              (status = 400, description = "invalid_argument", body = crate::errors::ErrorBody), (status = 401, description = "unauthenticated", body = crate::errors::ErrorBody), (status = 403, description = "permission_denied (or the project is not visible)", body = crate::errors::ErrorBody), (status = 409, description = "already_exists or conflict", body = crate::errors::ErrorBody), (status = 412, description = "failed_precondition", body = crate::errors::ErrorBody), (status = 413, description = "payload_too_large", body = crate::errors::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn register_stream(
    state: State,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let Authorized { project, body, .. } = authorize(&state, &req, Some(payload)).await?;
    let path = stream_path(&req)?;
    let msg = register_message(prefix_secret(&req), parse_json(&req, &body, true));
    let (stream, created) = state.directory.send(&project, &path, msg).await?;
    Ok(json_response(created, &stream))
}

/// `GET …/streams/{prefix}/+/{name}`: the Stream.
#[utoipa::path(
    get, path = "/api/v1/projects/{project}/streams/{prefix}/+/{name}", tag = "Services",
    params(("project" = String, Path, description = "LUCI project name", pattern = r"^[a-z][a-z0-9_-]{0,99}$"), ("prefix" = String, Path, description = "The stream's prefix: segments joined by `/`, sent unescaped (`%2F` is decoded too)", pattern = r"^[A-Za-z0-9][A-Za-z0-9:_.-]*(/[A-Za-z0-9][A-Za-z0-9:_.-]*)*$", allow_reserved), ("name" = String, Path, description = "The stream's name: segments joined by `/`, sent unescaped (`%2F` is decoded too)", pattern = r"^[A-Za-z0-9][A-Za-z0-9:_.-]*(/[A-Za-z0-9][A-Za-z0-9:_.-]*)*$", allow_reserved)),
    responses((status = 200, description = "The stream", body = logdog_schema::wire::StreamJson), (status = 400, description = "invalid_argument", body = crate::errors::ErrorBody), (status = 401, description = "unauthenticated", body = crate::errors::ErrorBody), (status = 403, description = "permission_denied (or the project is not visible)", body = crate::errors::ErrorBody), (status = 404, description = "not_found", body = crate::errors::ErrorBody)),
    security((), ("bearer" = []))
)]
pub async fn load_stream(state: State, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let Authorized {
        caller, project, ..
    } = authorize(&state, &req, None).await?;
    let path = stream_path(&req)?;
    let stream = super::load(&state, caller, &project, &path).await?;
    Ok(HttpResponse::Ok().json(stream))
}

/// Parses `{"entries": [...]}`, checking the entry count and each entry's size against
/// the limits (413).
fn parse_entries(
    req: &HttpRequest,
    body: &[u8],
    limits: &crate::config::Limits,
) -> Result<Result<Vec<IncomingEntry>, String>, ApiError> {
    let parsed: Result<AppendRequest, String> = parse_json(req, body, false);
    if let Ok(r) = &parsed {
        check_entry_count(r.entries.len(), limits)?;
    }
    let entries = parsed.and_then(|r| {
        r.entries
            .into_iter()
            .map(IncomingEntry::from_request)
            .collect::<Result<Vec<_>, _>>()
            .map_err(String::from)
    });
    if let Ok(entries) = &entries {
        check_entry_sizes(entries, limits.max_entry_bytes)?;
    }
    Ok(entries)
}

/// 413 for a request with more entries (or raw-text lines) than `max_request_entries`.
fn check_entry_count(n: usize, limits: &crate::config::Limits) -> Result<(), ApiError> {
    let max = limits.max_request_entries;
    if n > max {
        return Err(ApiError::too_large(format!(
            "the request carries {n} entries, over the {max}-entry request limit"
        )));
    }
    Ok(())
}

/// How many lines a request carries, for the ingest rate: text lines, else entries.
fn line_count(entries: &[IncomingEntry]) -> u64 {
    entries
        .iter()
        .map(|e| match &e.content {
            logdog_schema::wire::Content::Text(lines) => lines.len() as u64,
            _ => 1,
        })
        .sum()
}

fn check_entry_sizes(entries: &[IncomingEntry], max_entry: u64) -> Result<(), ApiError> {
    if let Some(e) = entries
        .iter()
        .find(|e| e.content.payload_bytes() > max_entry)
    {
        return Err(ApiError::too_large(format!(
            "entry {} is {} bytes, over the {max_entry}-byte entry limit",
            e.stream_index,
            e.content.payload_bytes()
        )));
    }
    Ok(())
}

/// How many lines `split_lines` makes of `text`, without allocating.
pub fn count_lines(text: &[u8]) -> usize {
    let newlines = text.iter().filter(|&&b| b == b'\n').count();
    newlines + usize::from(!text.is_empty() && text.last() != Some(&b'\n'))
}

/// Splits raw text into lines, keeping `\n` and `\r\n` as delimiters; a last line
/// without a newline gets an empty delimiter.
pub fn split_lines(text: &str) -> Vec<Line> {
    let mut lines = Vec::with_capacity(count_lines(text.as_bytes()));
    let mut rest = text;
    while !rest.is_empty() {
        match rest.find('\n') {
            Some(i) => {
                let (value, delimiter) = match rest[..i].strip_suffix('\r') {
                    Some(v) => (v, Delimiter::CrLf),
                    None => (&rest[..i], Delimiter::Lf),
                };
                lines.push(Line {
                    value: value.to_owned(),
                    delimiter,
                });
                rest = &rest[i + 1..];
            }
            None => {
                lines.push(Line {
                    value: rest.to_owned(),
                    delimiter: Delimiter::None,
                });
                rest = "";
            }
        }
    }
    lines
}

/// `POST …/logs/{prefix}/+/{name}`: JSON entries, or raw text with `text/plain`.
#[utoipa::path(
    post, path = "/api/v1/projects/{project}/logs/{prefix}/+/{name}", tag = "Services",
    params(("project" = String, Path, description = "LUCI project name", pattern = r"^[a-z][a-z0-9_-]{0,99}$"), ("prefix" = String, Path, description = "The stream's prefix: segments joined by `/`, sent unescaped (`%2F` is decoded too)", pattern = r"^[A-Za-z0-9][A-Za-z0-9:_.-]*(/[A-Za-z0-9][A-Za-z0-9:_.-]*)*$", allow_reserved), ("name" = String, Path, description = "The stream's name: segments joined by `/`, sent unescaped (`%2F` is decoded too)", pattern = r"^[A-Za-z0-9][A-Za-z0-9:_.-]*(/[A-Za-z0-9][A-Za-z0-9:_.-]*)*$", allow_reserved), ("X-Prefix-Secret" = Option<String>, Header, description = "The prefix secret (base64); writes need it (403 when missing or wrong, after the prefix check)")),
    request_body(content((AppendRequest = "application/json"), (String = "text/plain")),
                 description = "JSON entries, or raw text split into one entry per line"),
    responses((status = 200, description = "Durable", body = AppendResult),
              (status = 400, description = "invalid_argument", body = crate::errors::ErrorBody), (status = 401, description = "unauthenticated", body = crate::errors::ErrorBody), (status = 403, description = "permission_denied (or the project is not visible)", body = crate::errors::ErrorBody), (status = 404, description = "not_found", body = crate::errors::ErrorBody), (status = 409, description = "already_exists or conflict", body = crate::errors::ErrorBody), (status = 412, description = "failed_precondition", body = crate::errors::ErrorBody), (status = 413, description = "payload_too_large", body = crate::errors::ErrorBody), (status = 429, description = "resource_exhausted (Retry-After)", body = crate::errors::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn append(
    state: State,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let Authorized { project, body, .. } = authorize(&state, &req, Some(payload)).await?;
    let path = stream_path(&req)?;
    let limits = &state.config.limits;
    let max_entry = limits.max_entry_bytes;
    let secret = prefix_secret(&req);
    let result = if media_type(&req).as_deref() == Some("text/plain") {
        check_entry_count(count_lines(&body), limits)?;
        let lines = std::str::from_utf8(&body)
            .map(split_lines)
            .map_err(|e| format!("body is not valid UTF-8: {e}"));
        if let Some(l) = lines.as_ref().ok().and_then(|ls| {
            ls.iter()
                .find(|l| (l.value.len() + l.delimiter.len()) as u64 > max_entry)
        }) {
            return Err(ApiError::too_large(format!(
                "a line of {} bytes is over the {max_entry}-byte entry limit",
                l.value.len()
            )));
        }
        if let Ok(ls) = &lines {
            state.rates.take(&project, &path.prefix, ls.len() as u64)?;
        }
        state
            .directory
            .send(
                &project,
                &path,
                AppendText {
                    secret,
                    lines: Handoff::new(lines),
                },
            )
            .await?
    } else {
        let entries = parse_entries(&req, &body, limits)?;
        if let Ok(es) = &entries {
            state.rates.take(&project, &path.prefix, line_count(es))?;
        }
        state
            .directory
            .send(
                &project,
                &path,
                Append {
                    secret,
                    entries: Handoff::new(entries),
                },
            )
            .await?
    };
    Ok(HttpResponse::Ok().json(AppendResult::from(result)))
}

/// Reads `{"terminal_index": N}`; absent (or an empty body) means the highest stored index.
fn parse_terminal(req: &HttpRequest, body: &[u8]) -> Result<Option<i64>, String> {
    parse_json::<TerminateRequest>(req, body, true).map(|r| r.terminal_index)
}

/// `PATCH …/streams/{prefix}/+/{name}`: terminate.
#[utoipa::path(
    patch, path = "/api/v1/projects/{project}/streams/{prefix}/+/{name}", tag = "Services",
    params(("project" = String, Path, description = "LUCI project name", pattern = r"^[a-z][a-z0-9_-]{0,99}$"), ("prefix" = String, Path, description = "The stream's prefix: segments joined by `/`, sent unescaped (`%2F` is decoded too)", pattern = r"^[A-Za-z0-9][A-Za-z0-9:_.-]*(/[A-Za-z0-9][A-Za-z0-9:_.-]*)*$", allow_reserved), ("name" = String, Path, description = "The stream's name: segments joined by `/`, sent unescaped (`%2F` is decoded too)", pattern = r"^[A-Za-z0-9][A-Za-z0-9:_.-]*(/[A-Za-z0-9][A-Za-z0-9:_.-]*)*$", allow_reserved), ("X-Prefix-Secret" = Option<String>, Header, description = "The prefix secret (base64); writes need it (403 when missing or wrong, after the prefix check)")), request_body = TerminateRequest,
    responses((status = 200, description = "Terminated (the same index again is idempotent)", body = logdog_schema::wire::StreamJson),
              (status = 400, description = "invalid_argument", body = crate::errors::ErrorBody), (status = 401, description = "unauthenticated", body = crate::errors::ErrorBody), (status = 403, description = "permission_denied (or the project is not visible)", body = crate::errors::ErrorBody), (status = 404, description = "not_found", body = crate::errors::ErrorBody), (status = 409, description = "already_exists or conflict", body = crate::errors::ErrorBody), (status = 412, description = "failed_precondition", body = crate::errors::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn terminate_stream(
    state: State,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let Authorized { project, body, .. } = authorize(&state, &req, Some(payload)).await?;
    let path = stream_path(&req)?;
    let msg = Terminate {
        secret: prefix_secret(&req),
        terminal_index: parse_terminal(&req, &body),
    };
    let stream = state.directory.send(&project, &path, msg).await?;
    Ok(HttpResponse::Ok().json(stream))
}

/// `DELETE …/streams/{prefix}/+/{name}` (admin): purge, 204.
#[utoipa::path(
    delete, path = "/api/v1/projects/{project}/streams/{prefix}/+/{name}", tag = "Services",
    params(("project" = String, Path, description = "LUCI project name", pattern = r"^[a-z][a-z0-9_-]{0,99}$"), ("prefix" = String, Path, description = "The stream's prefix: segments joined by `/`, sent unescaped (`%2F` is decoded too)", pattern = r"^[A-Za-z0-9][A-Za-z0-9:_.-]*(/[A-Za-z0-9][A-Za-z0-9:_.-]*)*$", allow_reserved), ("name" = String, Path, description = "The stream's name: segments joined by `/`, sent unescaped (`%2F` is decoded too)", pattern = r"^[A-Za-z0-9][A-Za-z0-9:_.-]*(/[A-Za-z0-9][A-Za-z0-9:_.-]*)*$", allow_reserved)),
    responses((status = 204, description = "Purged"), (status = 400, description = "invalid_argument", body = crate::errors::ErrorBody), (status = 401, description = "unauthenticated", body = crate::errors::ErrorBody), (status = 403, description = "permission_denied (or the project is not visible)", body = crate::errors::ErrorBody), (status = 404, description = "not_found", body = crate::errors::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn purge_stream(state: State, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let Authorized {
        caller, project, ..
    } = authorize(&state, &req, None).await?;
    state.require_admin(caller)?;
    let path = stream_path(&req)?;
    state.directory.send(&project, &path, Purge).await?;
    state.deleter.wake();
    Ok(HttpResponse::NoContent().finish())
}

/// One stream of a bundle: registered on first sight, appended, terminated.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BundleStream {
    pub name: String,
    /// Required the first time a stream is seen.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "object_only::option"
    )]
    pub descriptor: Option<DescriptorRequest>,
    #[serde(default, deserialize_with = "object_only::vec")]
    pub entries: Vec<LogEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminal_index: Option<i64>,
}

/// A bundle (LogDog `ButlerLogBundle`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BundleRequest {
    #[schema(
        pattern = r"^[A-Za-z0-9][A-Za-z0-9:_.-]*(/[A-Za-z0-9][A-Za-z0-9:_.-]*)*$",
        max_length = 4096
    )]
    pub prefix: String,
    #[serde(deserialize_with = "object_only::vec")]
    pub streams: Vec<BundleStream>,
}

/// One stream's outcome in a bundle.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BundleStreamResult {
    pub name: String,
    /// Null when this stream failed (see `error`).
    pub next_index: Option<u64>,
    pub accepted: u64,
    pub duplicates: u64,
    pub error: Option<crate::errors::ErrorDetail>,
}

/// The bundle's answer: one result per stream, in the request's order.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BundleResult {
    pub streams: Vec<BundleStreamResult>,
}

/// Most streams one bundle may name (they are handled concurrently).
const MAX_BUNDLE_STREAMS: usize = 1000;

/// One bundle stream with its entries checked: `Err` holds the stream's own refusal.
struct CheckedStream {
    name: String,
    descriptor: Option<DescriptorRequest>,
    entries: Result<Vec<IncomingEntry>, String>,
    terminal_index: Option<i64>,
}

impl CheckedStream {
    /// Checks every entry; one that breaks the `LogEntry` schema (ranges, delimiters,
    /// base64) makes the whole bundle malformed (400), wherever it is in the stream.
    fn check(s: BundleStream) -> Result<Self, ApiError> {
        let results: Vec<_> = s
            .entries
            .into_iter()
            .map(IncomingEntry::from_request)
            .collect();
        if let Some(e) = results
            .iter()
            .find_map(|r| r.as_ref().err().filter(|e| e.malformed))
        {
            return Err(ApiError::invalid(format!("stream {:?}: {e}", s.name)));
        }
        Ok(Self {
            name: s.name,
            descriptor: s.descriptor,
            entries: results
                .into_iter()
                .collect::<Result<_, _>>()
                .map_err(String::from),
            terminal_index: s.terminal_index,
        })
    }
}

/// Registers (on first sight), appends and terminates one stream of a bundle.
async fn ingest_one(
    state: &State,
    project: &str,
    prefix: &str,
    secret: Option<Vec<u8>>,
    s: CheckedStream,
    max_entry: u64,
) -> Result<AppendOk, ApiError> {
    let path = StreamPath::new(prefix, &s.name)?;
    let entries = s.entries;
    if let Ok(entries) = &entries {
        check_entry_sizes(entries, max_entry)?;
    }
    if let Some(d) = s.descriptor {
        let msg = register_message(
            secret.clone(),
            Ok(RegisterStreamRequest {
                descriptor: Some(d),
                terminal_index: None,
            }),
        );
        state.directory.send(project, &path, msg).await?;
    }
    let appended = state
        .directory
        .send(
            project,
            &path,
            Append {
                secret: secret.clone(),
                entries: Handoff::new(entries),
            },
        )
        .await?;
    if let Some(t) = s.terminal_index {
        state
            .directory
            .send(
                project,
                &path,
                Terminate {
                    secret,
                    terminal_index: Ok(Some(t)),
                },
            )
            .await?;
    }
    Ok(appended)
}

/// `POST /api/v1/projects/{project}/bundles`: each stream on its own; one bad stream does
/// not fail the others.
#[utoipa::path(
    post, path = "/api/v1/projects/{project}/bundles", tag = "Services",
    params(("project" = String, Path, description = "LUCI project name", pattern = r"^[a-z][a-z0-9_-]{0,99}$"), ("X-Prefix-Secret" = Option<String>, Header, description = "The prefix secret (base64). Each stream needs it: without it (or with a wrong one) every stream's `error` is permission_denied, in a 200")), request_body = BundleRequest,
    responses((status = 200, description = "Per-stream results; everything accepted is durable", body = BundleResult),
              (status = 400, description = "invalid_argument", body = crate::errors::ErrorBody), (status = 401, description = "unauthenticated", body = crate::errors::ErrorBody), (status = 403, description = "permission_denied (or the project is not visible)", body = crate::errors::ErrorBody), (status = 412, description = "failed_precondition", body = crate::errors::ErrorBody), (status = 413, description = "payload_too_large", body = crate::errors::ErrorBody), (status = 429, description = "resource_exhausted (Retry-After)", body = crate::errors::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn bundle(
    state: State,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let Authorized { project, body, .. } = authorize(&state, &req, Some(payload)).await?;
    let bundle: BundleRequest = parse_json(&req, &body, false).map_err(ApiError::invalid)?;
    logdog_schema::names::validate_prefix(&bundle.prefix)?;
    if bundle.streams.len() > MAX_BUNDLE_STREAMS {
        return Err(ApiError::too_large(format!(
            "the bundle names {} streams, over the {MAX_BUNDLE_STREAMS}-stream limit",
            bundle.streams.len()
        )));
    }
    check_entry_count(
        bundle.streams.iter().map(|s| s.entries.len()).sum(),
        &state.config.limits,
    )?;
    let lines: u64 = bundle
        .streams
        .iter()
        .flat_map(|s| &s.entries)
        .map(LogEntry::line_count)
        .sum();
    state.rates.take(&project, &bundle.prefix, lines)?;
    let secret = prefix_secret(&req);
    let max_entry = state.config.limits.max_entry_bytes;
    // An entry that breaks the LogEntry schema makes the bundle malformed: 400 as a whole.
    // Every other refusal is its stream's own `error`.
    // Cluster mode: each stream's part, kept to forward to its owner when that is another node.
    let originals: Vec<Option<BundleStream>> = match &state.cluster {
        Some(_) if !super::forward::is_forwarded(&req) => {
            bundle.streams.iter().cloned().map(Some).collect()
        }
        _ => vec![None; bundle.streams.len()],
    };
    let streams = bundle
        .streams
        .into_iter()
        .map(CheckedStream::check)
        .collect::<Result<Vec<_>, _>>()?;
    let work = streams.into_iter().zip(originals).map(|(s, original)| {
        let (state, project, prefix, secret) = (&state, &project, &bundle.prefix, secret.clone());
        let req = &req;
        async move {
            let name = s.name.clone();
            let failed = |name: String, e: ApiError| BundleStreamResult {
                name,
                next_index: None,
                accepted: 0,
                duplicates: 0,
                error: Some(e.body().error),
            };
            match ingest_one(state, project, prefix, secret, s, max_entry).await {
                Ok(r) => BundleStreamResult {
                    name,
                    next_index: Some(r.next_index),
                    accepted: r.accepted,
                    duplicates: r.duplicates,
                    error: None,
                },
                Err(ApiError {
                    owner: Some(owner), ..
                }) if original.is_some() => {
                    let part = BundleRequest {
                        prefix: prefix.clone(),
                        streams: original.into_iter().collect(),
                    };
                    match forward_part(state, req, &owner, &part).await {
                        Ok(r) => r,
                        Err(e) => failed(name, e),
                    }
                }
                Err(e) => failed(name, e),
            }
        }
    });
    let streams = futures::future::join_all(work).await;
    Ok(HttpResponse::Ok().json(BundleResult { streams }))
}

/// Cluster mode: sends one stream's part of a bundle to the node that owns the stream,
/// and takes that stream's result from its answer.
async fn forward_part(
    state: &State,
    req: &HttpRequest,
    owner: &str,
    part: &BundleRequest,
) -> Result<BundleStreamResult, ApiError> {
    let cluster = state.cluster.as_ref().expect("forwarding in cluster mode");
    let unreachable = |e: String| {
        cluster
            .forwards_failed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(%owner, error = %e, "forwarding a bundle stream to its owner failed");
        ApiError::unavailable(format!(
            "the stream's owner ({owner}) cannot be reached; retry"
        ))
    };
    let body = serde_json::to_vec(part).expect("bundles serialise");
    let answer = super::forward::send(state, cluster, req, owner, body.into())
        .await
        .map_err(unreachable)?;
    let status = answer.status();
    let bytes = answer
        .bytes()
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    cluster
        .forwards_ok
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if status.is_success() {
        let mut r: BundleResult = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::internal(format!("owner's bundle answer: {e}")))?;
        return r
            .streams
            .pop()
            .ok_or_else(|| ApiError::internal("owner's bundle answer has no stream"));
    }
    let body: crate::errors::ErrorBody = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::internal(format!("owner's error answer: {e}")))?;
    Ok(BundleStreamResult {
        name: part.streams[0].name.clone(),
        next_index: None,
        accepted: 0,
        duplicates: 0,
        error: Some(body.error),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(v: &str, d: &str) -> Line {
        Line {
            value: v.into(),
            delimiter: Delimiter::parse(d).unwrap(),
        }
    }

    #[test]
    fn text_bodies_split_into_lines() {
        assert_eq!(split_lines(""), vec![]);
        assert_eq!(
            split_lines("a\nb\r\nc"),
            vec![l("a", "\n"), l("b", "\r\n"), l("c", "")]
        );
        assert_eq!(split_lines("\n\n"), vec![l("", "\n"), l("", "\n")]);
        assert_eq!(split_lines("x\r"), vec![l("x\r", "")]);
        for t in ["", "a", "a\n", "\n\n", "a\r\nb", "a\nb\n"] {
            assert_eq!(count_lines(t.as_bytes()), split_lines(t).len(), "{t:?}");
        }
    }
}
