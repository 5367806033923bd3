//! Search on the server: `GET …/search/{prefix}/+/{name}?q=…` over one stream, and
//! `GET …/search?prefix=P&q=…` over every text stream of a prefix. Matches are lines
//! (pieces continued over several entries joined, ANSI codes removed, as the viewer shows
//! them), read from intermediate storage or the archive a page at a time; the matching
//! runs on a blocking thread, page by page. Every request is bounded by a number of
//! matches and a time budget, and says where to resume.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;
use logdog_schema::chunk::view;
use logdog_schema::names::StreamPath;
use logdog_schema::sections::strip_ansi;
use logdog_schema::store::{self, ReadRange, StreamFilter};
use logdog_schema::wire::{StreamJson, StreamType};
use serde::{Deserialize, Serialize};

use super::super::blocking;
use super::{authorize, decode_cursor, encode_cursor, load, params, stream_path};
use super::{Authorized, State};
use crate::errors::ApiError;

/// Matches per request: default and cap.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 10_000;
/// Time per request: default and cap.
const DEFAULT_MAX_MS: u64 = 1_000;
const MAX_MAX_MS: u64 = 10_000;
/// Longest query.
const MAX_QUERY_BYTES: usize = 1024;
/// A matching line's text is cut to this many bytes (at a character boundary).
const MAX_TEXT_BYTES: usize = 1000;
/// Entries read per page: the first page is small (a small time budget is not spent on
/// reading what it cannot search), then each is twice the last, up to the most.
const FIRST_PAGE_ENTRIES: usize = 256;
const PAGE_ENTRIES: usize = 10_000;
const PAGE_BYTES: u64 = 16 << 20;
/// Streams a prefix search looks at per request.
const PREFIX_STREAMS: i64 = 1000;

/// One matching line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SearchMatch {
    /// The entry where the line starts.
    pub stream_index: u64,
    /// The line's number, from 0, as the sections outline numbers lines (the entry's
    /// `sequence` plus the line's position in it); shown as `line + 1`.
    pub line: u64,
    /// The line with ANSI codes removed, cut to 1000 bytes.
    pub text: String,
}

/// `GET …/search/{prefix}/+/{name}`'s answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SearchResponse {
    pub project: String,
    pub path: String,
    /// In stream order.
    pub matches: Vec<SearchMatch>,
    /// Where the search stopped: ask again with `from=next_index` to go on (also later,
    /// for entries a live stream has gained since).
    pub next_index: u64,
    /// True when the search stopped on `limit` or its time budget before the end of the
    /// stream's contiguous entries.
    pub more: bool,
}

/// The matches of one stream in a prefix search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StreamMatches {
    pub path: String,
    pub matches: Vec<SearchMatch>,
}

/// `GET …/search?prefix=P`'s answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PrefixSearchResponse {
    pub project: String,
    pub prefix: String,
    /// Streams with matches, ordered by path.
    pub streams: Vec<StreamMatches>,
    /// Text streams looked at by this request.
    pub streams_searched: u64,
    /// Pass as `cursor` to go on; absent when every stream was searched to its end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchParams {
    q: String,
    #[serde(default)]
    regex: bool,
    case: Option<bool>,
    from: Option<u64>,
    limit: Option<usize>,
    max_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrefixSearchParams {
    prefix: String,
    q: String,
    #[serde(default)]
    regex: bool,
    case: Option<bool>,
    cursor: Option<String>,
    limit: Option<usize>,
    max_ms: Option<u64>,
}

/// What a line is matched with.
enum Matcher {
    Literal(Box<memchr::memmem::Finder<'static>>),
    Regex(regex::bytes::Regex),
}

impl Matcher {
    /// 400 for an empty or too long query, or an invalid regex.
    fn new(q: &str, regex: bool, case: bool) -> Result<Self, ApiError> {
        if q.is_empty() {
            return Err(ApiError::invalid("q is empty"));
        }
        if q.len() > MAX_QUERY_BYTES {
            return Err(ApiError::invalid(format!(
                "q is longer than {MAX_QUERY_BYTES} bytes"
            )));
        }
        if !regex && case {
            return Ok(Matcher::Literal(Box::new(
                memchr::memmem::Finder::new(q.as_bytes()).into_owned(),
            )));
        }
        let pattern = if regex {
            q.to_owned()
        } else {
            regex::escape(q)
        };
        regex::bytes::RegexBuilder::new(&pattern)
            .case_insensitive(!case)
            .size_limit(1 << 20)
            .dfa_size_limit(4 << 20)
            .build()
            .map(Matcher::Regex)
            .map_err(|e| ApiError::invalid(format!("invalid regex: {e}")))
    }

    fn is_match(&self, line: &[u8]) -> bool {
        match self {
            Matcher::Literal(f) => f.find(line).is_some(),
            Matcher::Regex(r) => r.is_match(line),
        }
    }
}

/// A line continued over several entries, waiting for its end.
struct Pending {
    line: u64,
    index: u64,
    text: Vec<u8>,
}

/// One stream's search as it goes.
struct Scan {
    matcher: Arc<Matcher>,
    pending: Option<Pending>,
    /// Entries before this were searched (a pending line's entries included).
    next: u64,
    matches: Vec<SearchMatch>,
    limit: usize,
    deadline: Instant,
}

/// Why a scan of a page stopped.
#[derive(Debug, PartialEq, Eq)]
enum Stopped {
    /// The page was searched to its end.
    PageDone,
    /// On the limit or the deadline, at an entry boundary outside any line.
    Budget,
}

impl Scan {
    fn check(&mut self, line: u64, index: u64, text: &[u8]) {
        let cleaned;
        let text: &[u8] = if memchr::memchr2(0x1b, 0xc2, text).is_some() {
            cleaned = strip_ansi(&String::from_utf8_lossy(text)).into_owned();
            cleaned.as_bytes()
        } else {
            text
        };
        if self.matcher.is_match(text) {
            let mut text = String::from_utf8_lossy(text).into_owned();
            if text.len() > MAX_TEXT_BYTES {
                let mut cut = MAX_TEXT_BYTES;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.truncate(cut);
            }
            self.matches.push(SearchMatch {
                stream_index: index,
                line,
                text,
            });
        }
    }

    /// Searches the entries of `records` from `next` on (gaps skipped).
    fn page(&mut self, records: &[Bytes]) -> Result<Stopped, String> {
        for piece in records {
            let mut rest: &[u8] = piece;
            while let Some((body, after)) = view::split_record(rest) {
                rest = after;
                let (e, _) = view::Entry::scan(body)?;
                if e.stream_index < self.next {
                    continue;
                }
                if let view::Content::Text(lines) = e.content {
                    for (k, l) in lines.enumerate() {
                        let ends = !l.delimiter.is_empty();
                        match self.pending.take() {
                            Some(mut p) => {
                                p.text.extend_from_slice(l.value);
                                if ends {
                                    self.check(p.line, p.index, &p.text);
                                } else {
                                    self.pending = Some(p);
                                }
                            }
                            None if ends => {
                                self.check(e.sequence + k as u64, e.stream_index, l.value)
                            }
                            None => {
                                self.pending = Some(Pending {
                                    line: e.sequence + k as u64,
                                    index: e.stream_index,
                                    text: l.value.to_vec(),
                                })
                            }
                        }
                    }
                }
                self.next = e.stream_index + 1;
                if self.pending.is_none()
                    && (self.matches.len() >= self.limit || Instant::now() >= self.deadline)
                {
                    return Ok(Stopped::Budget);
                }
            }
        }
        Ok(Stopped::PageDone)
    }

    /// The stream ended: a last line without a delimiter is a line.
    fn finish(&mut self) {
        if let Some(p) = self.pending.take() {
            self.check(p.line, p.index, &p.text);
        }
    }

    /// Where to resume: before a line still waiting for its end.
    fn resume_at(&self) -> u64 {
        self.pending.as_ref().map_or(self.next, |p| p.index)
    }
}

/// Searches one stream from `from` until its contiguous end (an archived stream: its
/// whole archive, gaps skipped), the scan's limit or its deadline. Returns the scan and
/// whether it stopped on the budget.
async fn search_stream(
    state: &State,
    project: &str,
    path: &StreamPath,
    stream: &StreamJson,
    mut scan: Scan,
    from: u64,
) -> Result<(Scan, bool), ApiError> {
    scan.next = from;
    if stream.descriptor.stream_type != StreamType::Text {
        scan.next = from.max(stream.state.next_index.max(0) as u64);
        return Ok((scan, false));
    }
    let archived = stream.state.archive.is_some();
    let ended = archived || stream.state.terminal_index >= 0;
    let end = if archived {
        i64::MAX as u64
    } else {
        stream.state.next_index.max(0) as u64
    };
    let mut source = crate::http::entries::EntrySource::new(state, project, path, stream);
    let mut count = FIRST_PAGE_ENTRIES;
    loop {
        if scan.next >= end {
            break;
        }
        let range = ReadRange {
            from: scan.next,
            end,
            count,
            bytes: PAGE_BYTES,
            contiguous: !archived,
        };
        let (records, next) = source.read_records(range).await?;
        if records.is_empty() || next <= scan.next {
            break;
        }
        let (s, stopped) = blocking(move || {
            let mut scan = scan;
            let stopped = scan
                .page(&records)
                .map_err(logdog_schema::StoreError::Corrupt)?;
            Ok::<_, logdog_schema::StoreError>((scan, stopped))
        })
        .await?;
        scan = s;
        if stopped == Stopped::Budget {
            let more = scan.next < end;
            return Ok((scan, more));
        }
        scan.next = scan.next.max(next);
        count = (count * 2).min(PAGE_ENTRIES);
    }
    if ended {
        scan.finish();
    }
    Ok((scan, false))
}

fn budget(limit: Option<usize>, max_ms: Option<u64>) -> Result<(usize, Instant), ApiError> {
    let limit = match limit {
        None => DEFAULT_LIMIT,
        Some(n) if (1..=MAX_LIMIT).contains(&n) => n,
        Some(n) => {
            return Err(ApiError::invalid(format!(
                "limit {n} is outside 1..={MAX_LIMIT}"
            )))
        }
    };
    let ms = match max_ms {
        None => DEFAULT_MAX_MS,
        Some(n) if (1..=MAX_MAX_MS).contains(&n) => n,
        Some(n) => {
            return Err(ApiError::invalid(format!(
                "max_ms {n} is outside 1..={MAX_MAX_MS}"
            )))
        }
    };
    Ok((limit, Instant::now() + Duration::from_millis(ms)))
}

/// `GET …/search/{prefix}/+/{name}?q=…`.
#[utoipa::path(
    get, path = "/api/v1/projects/{project}/search/{prefix}/+/{name}", tag = "Logs",
    params(("project" = String, Path, description = "LUCI project name", pattern = r"^[a-z][a-z0-9_-]{0,99}$"), ("prefix" = String, Path, description = "The stream's prefix: segments joined by `/`, sent unescaped (`%2F` is decoded too)", pattern = r"^[A-Za-z0-9][A-Za-z0-9:_.-]*(/[A-Za-z0-9][A-Za-z0-9:_.-]*)*$", allow_reserved), ("name" = String, Path, description = "The stream's name: segments joined by `/`, sent unescaped (`%2F` is decoded too)", pattern = r"^[A-Za-z0-9][A-Za-z0-9:_.-]*(/[A-Za-z0-9][A-Za-z0-9:_.-]*)*$", allow_reserved),
           ("q" = String, Query, description = "What to find: a literal (default) or, with regex=true, a regular expression (Rust `regex` syntax, linear time)", min_length = 1, max_length = 1024),
           ("regex" = Option<bool>, Query, description = "q is a regular expression"),
           ("case" = Option<bool>, Query, description = "false: ignore case (default true)"),
           ("from" = Option<u64>, Query, description = "First entry to search (a previous answer's next_index)", maximum = 9007199254740991.0),
           ("limit" = Option<u32>, Query, description = "Matches at most (default 100, max 10000)", minimum = 1, maximum = 10000),
           ("max_ms" = Option<u32>, Query, description = "Time budget in milliseconds (default 1000, max 10000)", minimum = 1, maximum = 10000)),
    responses((status = 200, description = "Matching lines in stream order, and where to resume", body = SearchResponse),
              (status = 400, description = "invalid_argument (an invalid regex among them)", body = crate::errors::ErrorBody), (status = 401, description = "unauthenticated", body = crate::errors::ErrorBody), (status = 403, description = "permission_denied (or the project is not visible)", body = crate::errors::ErrorBody), (status = 404, description = "not_found", body = crate::errors::ErrorBody), (status = 503, description = "unavailable: storage or the archive store cannot be reached", body = crate::errors::ErrorBody)),
    security((), ("bearer" = []))
)]
pub async fn search(state: State, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let Authorized {
        caller, project, ..
    } = authorize(&state, &req, None).await?;
    let path = stream_path(&req)?;
    let p: SearchParams = params(&req)?;
    let matcher = Matcher::new(&p.q, p.regex, p.case.unwrap_or(true))?;
    let (limit, deadline) = budget(p.limit, p.max_ms)?;
    super::check_index("from", p.from)?;
    let stream = load(&state, caller, &project, &path).await?;
    let scan = Scan {
        matcher: Arc::new(matcher),
        pending: None,
        next: 0,
        matches: Vec::new(),
        limit,
        deadline,
    };
    let (scan, more) =
        search_stream(&state, &project, &path, &stream, scan, p.from.unwrap_or(0)).await?;
    let next_index = scan.resume_at();
    Ok(HttpResponse::Ok().json(SearchResponse {
        project,
        path: stream.path,
        matches: scan.matches,
        next_index,
        more,
    }))
}

/// `GET …/search?prefix=P&q=…`.
#[utoipa::path(
    get, path = "/api/v1/projects/{project}/search", tag = "Logs",
    params(("project" = String, Path, description = "LUCI project name", pattern = r"^[a-z][a-z0-9_-]{0,99}$"),
           ("prefix" = String, Query, description = "The prefix whose text streams are searched", pattern = r"^[A-Za-z0-9][A-Za-z0-9:_.-]*(/[A-Za-z0-9][A-Za-z0-9:_.-]*)*$"),
           ("q" = String, Query, description = "What to find (as for one stream)", min_length = 1, max_length = 1024),
           ("regex" = Option<bool>, Query, description = "q is a regular expression"),
           ("case" = Option<bool>, Query, description = "false: ignore case (default true)"),
           ("cursor" = Option<String>, Query, description = "From next_cursor (opaque, URL-safe base64)", pattern = r"^([A-Za-z0-9_-]{4})*([A-Za-z0-9_-]{2,3})?$"),
           ("limit" = Option<u32>, Query, description = "Matches at most, over all streams (default 100, max 10000)", minimum = 1, maximum = 10000),
           ("max_ms" = Option<u32>, Query, description = "Time budget in milliseconds (default 1000, max 10000)", minimum = 1, maximum = 10000)),
    responses((status = 200, description = "Matching lines grouped by stream, and where to resume", body = PrefixSearchResponse),
              (status = 400, description = "invalid_argument", body = crate::errors::ErrorBody), (status = 401, description = "unauthenticated", body = crate::errors::ErrorBody), (status = 403, description = "permission_denied (or the project is not visible)", body = crate::errors::ErrorBody), (status = 503, description = "unavailable", body = crate::errors::ErrorBody)),
    security((), ("bearer" = []))
)]
pub async fn search_prefix(state: State, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let Authorized {
        caller, project, ..
    } = authorize(&state, &req, None).await?;
    let p: PrefixSearchParams = params(&req)?;
    logdog_schema::names::validate_prefix(&p.prefix)?;
    let matcher = Arc::new(Matcher::new(&p.q, p.regex, p.case.unwrap_or(true))?);
    let (limit, deadline) = budget(p.limit, p.max_ms)?;
    let cursor = p.cursor.as_deref().map(Cursor::decode).transpose()?;
    let mut out = PrefixSearchResponse {
        project: project.clone(),
        prefix: p.prefix.clone(),
        streams: Vec::new(),
        streams_searched: 0,
        next_cursor: None,
    };
    // Searches one stream with what is left of the budget; Some(cursor) when the budget
    // ran out (inside the stream, or right after it).
    let one = async |out: &mut PrefixSearchResponse, stream: StreamJson, from: u64| {
        let path = StreamPath::parse(&stream.path)?;
        let used: usize = out.streams.iter().map(|s| s.matches.len()).sum();
        let scan = Scan {
            matcher: matcher.clone(),
            pending: None,
            next: 0,
            matches: Vec::new(),
            limit: limit - used,
            deadline,
        };
        let (scan, more) = search_stream(&state, &project, &path, &stream, scan, from).await?;
        out.streams_searched += 1;
        let next = scan.resume_at();
        let found = scan.matches.len();
        if found > 0 {
            out.streams.push(StreamMatches {
                path: stream.path.clone(),
                matches: scan.matches,
            });
        }
        Ok::<_, ApiError>(if more {
            Some(Cursor::In(next, stream.path))
        } else if used + found >= limit || Instant::now() >= deadline {
            Some(Cursor::After(stream.path))
        } else {
            None
        })
    };
    let mut after = None;
    match cursor {
        Some(Cursor::In(from, path)) => {
            let inside = StreamPath::parse(&path)?;
            if inside.prefix != p.prefix {
                return Err(ApiError::invalid("the cursor is for another prefix"));
            }
            // The stream may be gone since: then go on after it.
            match load(&state, caller, &project, &inside).await {
                Ok(stream) => {
                    if let Some(c) = one(&mut out, stream, from).await? {
                        out.next_cursor = Some(c.encode());
                        return Ok(HttpResponse::Ok().json(out));
                    }
                }
                Err(e) if e.code == crate::errors::ErrorCode::NotFound => {}
                Err(e) => return Err(e),
            }
            after = Some(path);
        }
        Some(Cursor::After(path)) => after = Some(path),
        None => {}
    }
    let filter = StreamFilter {
        project: project.clone(),
        prefix: Some(p.prefix.clone()),
        stream_type: Some(StreamType::Text),
        purged: Some(false),
        after,
        ..StreamFilter::default()
    };
    let db = state.store.clone();
    let rows =
        blocking(move || db.read(|c| store::query_streams(c, &filter, PREFIX_STREAMS))).await?;
    let exhausted = (rows.len() as i64) < PREFIX_STREAMS;
    let last = rows.last().map(|r| r.path.clone());
    for row in rows {
        let stream = row
            .descriptor()
            .map(|d| row.to_json(d))
            .map_err(ApiError::internal)?;
        if let Some(c) = one(&mut out, stream, 0).await? {
            out.next_cursor = Some(c.encode());
            return Ok(HttpResponse::Ok().json(out));
        }
    }
    if !exhausted {
        out.next_cursor = last.map(|l| Cursor::After(l).encode());
    }
    Ok(HttpResponse::Ok().json(out))
}

/// Where a prefix search goes on: inside a stream at an entry, or after a stream.
enum Cursor {
    In(u64, String),
    After(String),
}

impl Cursor {
    fn encode(&self) -> String {
        match self {
            Cursor::In(from, path) => encode_cursor(&format!("{from}:{path}")),
            Cursor::After(path) => encode_cursor(&format!("after:{path}")),
        }
    }

    fn decode(c: &str) -> Result<Self, ApiError> {
        let c = decode_cursor(c)?;
        let bad = || ApiError::invalid("invalid cursor");
        let (head, path) = c.split_once(':').ok_or_else(bad)?;
        if head == "after" {
            return Ok(Cursor::After(path.to_owned()));
        }
        Ok(Cursor::In(
            head.parse().map_err(|_| bad())?,
            path.to_owned(),
        ))
    }
}
