//! The read clients: `logdog cat`, `tail`, `query` and `ls`. Data goes to stdout, progress
//! and errors to stderr. Reads page through Get (resumable by index, retried on network
//! errors and 5xx); following uses the websocket watch and reconnects with `from=N`, so a
//! dropped connection or a lagging close neither skips nor repeats a line.

use std::io::Write;
use std::time::Duration;

use futures::StreamExt as _;
use logdog_schema::wire::{Content, Entry, LogEntry, StreamJson};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::Message;

use super::api::{retry, Api, ClientError, Patience, Retrier};
use crate::http::logs::{ArchiveUrls, LogsPage, PrefixList, QueryResponse};
use crate::http::watch::WatchFrame;

/// One stream: where it lives and its path.
pub struct Target {
    pub api: Api,
    pub project: String,
    pub path: String,
    /// How long a coordinator that cannot be reached (or fails) is retried.
    pub patience: Patience,
}

impl Target {
    /// Reads a stream argument: a URL the coordinator gave out (the viewer's
    /// `http://HOST/logs/PROJECT/PREFIX/+/NAME`, or any `/api/v1/projects/PROJECT/{logs,
    /// streams,tail,watch}/…` URL) — which also names the coordinator — or a path:
    /// `PREFIX/+/NAME` with `project` given, else `PROJECT/PREFIX/+/NAME`.
    pub fn parse(
        arg: &str,
        coordinator: &str,
        token: Option<String>,
        project: Option<&str>,
        retry_for: Duration,
    ) -> anyhow::Result<Self> {
        let (base, project, path) = if let Some((scheme, rest)) = arg.split_once("://") {
            let scheme = match scheme {
                "http" | "ws" => "http",
                "https" | "wss" => "https",
                _ => anyhow::bail!("{arg:?}: not an http(s) URL"),
            };
            let rest = rest.split(['?', '#']).next().unwrap_or_default();
            let (host, url_path) = rest.split_once('/').unwrap_or((rest, ""));
            let (project, path) = if let Some(r) = url_path.strip_prefix("logs/") {
                r.split_once('/').unwrap_or((r, ""))
            } else if let Some(r) = url_path.strip_prefix("api/v1/projects/") {
                let (project, r) = r.split_once('/').unwrap_or((r, ""));
                let (verb, path) = r.split_once('/').unwrap_or((r, ""));
                if !matches!(verb, "logs" | "streams" | "tail" | "watch") {
                    anyhow::bail!("{arg:?}: not a stream URL");
                }
                (project, path)
            } else {
                anyhow::bail!("{arg:?}: not a stream URL (expected …/logs/PROJECT/PREFIX/+/NAME)");
            };
            (
                format!("{scheme}://{host}"),
                project.to_owned(),
                path.to_owned(),
            )
        } else {
            match project {
                Some(p) => (coordinator.to_owned(), p.to_owned(), arg.to_owned()),
                None => {
                    let (p, path) = arg.split_once('/').ok_or_else(|| {
                        anyhow::anyhow!(
                            "{arg:?}: expected PROJECT/PREFIX/+/NAME (or --project and PREFIX/+/NAME)"
                        )
                    })?;
                    (coordinator.to_owned(), p.to_owned(), path.to_owned())
                }
            }
        };
        logdog_schema::names::validate_project(&project).map_err(|e| anyhow::anyhow!("{e}"))?;
        logdog_schema::names::StreamPath::parse(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Self {
            api: Api::new(&base, token)?,
            project,
            path,
            patience: Patience::bounded(MAX_BACKOFF, retry_for),
        })
    }

    fn url(&self, verb: &str, query: &str) -> String {
        self.api
            .project_url(&self.project, &format!("{verb}/{}?{query}", self.path))
    }
}

/// The longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Text per Get page for `cat`: enough to be fast, small enough to keep memory low.
const PAGE_BYTES: u64 = 2 << 20;

/// Writes an entry's content: text lines with their delimiters, binary and datagram data
/// as is.
pub fn write_entry(out: &mut impl Write, e: &Entry) -> std::io::Result<()> {
    match &e.content {
        Content::Text(lines) => {
            for l in lines {
                out.write_all(l.value.as_bytes())?;
                out.write_all(l.delimiter.as_bytes())?;
            }
        }
        Content::Binary(data) | Content::Datagram { data, .. } => out.write_all(data)?,
    }
    Ok(())
}

/// The stored form of the entries of a page or frame (what the server sends is checked
/// as any entry is: a malformed one is an error, not a silent skip).
pub fn entries_of(entries: Vec<LogEntry>) -> anyhow::Result<Vec<Entry>> {
    entries
        .into_iter()
        .map(|e| {
            e.into_entry()
                .map_err(|e| anyhow::anyhow!("the coordinator sent a bad entry: {e}"))
        })
        .collect()
}

/// `logdog cat`: the stream's contiguous entries from `from`, then, with `follow`, live
/// ones until the stream ends.
pub async fn cat(t: &Target, from: u64, follow: bool, out: &mut impl Write) -> anyhow::Result<()> {
    if follow {
        return watch(t, from, out).await;
    }
    let mut index = from;
    match cat_direct(t, from, out).await? {
        Direct::Done => return Ok(()),
        Direct::NoUrls => {}
        Direct::Failed { next, error } => {
            eprintln!(
                "logdog: reading the archive from its store failed ({error}); reading through the coordinator from {next}"
            );
            index = next;
        }
    }
    loop {
        let url = t.url(
            "logs",
            &format!("index={index}&count=10000&bytes={PAGE_BYTES}"),
        );
        // The binary form: the entries as stored, no JSON to parse.
        let page = retry("reading", t.patience, || t.api.get_entries(&url)).await?;
        if page.entries.is_empty() {
            return Ok(());
        }
        for e in &page.entries {
            write_entry(out, e)?;
        }
        out.flush()?;
        index = page.next_index;
    }
}

/// How reading an archive straight from its store went.
enum Direct {
    /// Every entry from `from` was written.
    Done,
    /// The stream is not archived, or its store does not sign URLs.
    NoUrls,
    /// The store failed after the entries before `next` were written.
    Failed { next: u64, error: String },
}

/// `cat` of an archived stream whose store signs URLs: the entries straight from the
/// store, not through a coordinator — the sparse index once, then one ranged GET of the
/// entries object from the indexed entry at or before `from`, decoded as it arrives.
async fn cat_direct(t: &Target, from: u64, out: &mut impl Write) -> anyhow::Result<Direct> {
    let Ok(urls) = t.api.get::<ArchiveUrls>(&t.url("archive-urls", "")).await else {
        // Not archived (412), or anything else: Get pages say what is wrong, with retries.
        return Ok(Direct::NoUrls);
    };
    if !urls.signed {
        return Ok(Direct::NoUrls);
    }
    let failed = |next: u64, e: &dyn std::fmt::Display| Direct::Failed {
        next,
        error: e.to_string(),
    };
    let http = match reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .read_timeout(Duration::from_secs(30))
        .build()
    {
        Ok(h) => h,
        Err(e) => return Ok(failed(from, &e)),
    };
    let get = |url: &str, range: Option<u64>| {
        let r = http.get(url);
        let r = match range {
            Some(start) => r.header(reqwest::header::RANGE, format!("bytes={start}-")),
            None => r,
        };
        async move {
            let res = r.send().await.map_err(|e| e.to_string())?;
            if !res.status().is_success() {
                return Err(format!("{} from the archive store", res.status()));
            }
            Ok(res)
        }
    };
    let index = match get(&urls.index_url, None).await {
        Ok(res) => match res.bytes().await {
            Ok(b) => b,
            Err(e) => return Ok(failed(from, &e)),
        },
        Err(e) => return Ok(failed(from, &e)),
    };
    let index = match crate::archive::parse_index(&index) {
        Ok(i) => i,
        Err(e) => return Ok(failed(from, &e)),
    };
    let start = match index.partition_point(|(i, _)| *i <= from) {
        0 => match index.first() {
            Some(first) => first.1,
            None => return Ok(Direct::Done),
        },
        n => index[n - 1].1,
    };
    let mut res = match get(&urls.stream_url, Some(start)).await {
        Ok(res) => res,
        Err(e) => return Ok(failed(from, &e)),
    };
    let mut next = from;
    let mut buf = Vec::new();
    loop {
        let chunk = match res.chunk().await {
            Ok(Some(c)) => c,
            Ok(None) if buf.is_empty() => return Ok(Direct::Done),
            Ok(None) => return Ok(failed(next, &"the entries object is cut short")),
            Err(e) => return Ok(failed(next, &e)),
        };
        buf.extend_from_slice(&chunk);
        let mut used = 0;
        loop {
            let e = match logdog_schema::wire::decode_record(&buf[used..]) {
                Ok(Some((e, n))) => {
                    used += n;
                    e
                }
                Ok(None) => break,
                Err(e) => return Ok(failed(next, &e)),
            };
            if e.stream_index < next {
                continue;
            }
            if e.stream_index != next {
                // A gap: cat stops at the first missing entry, as Get does.
                out.flush()?;
                return Ok(Direct::Done);
            }
            write_entry(out, &e)?;
            next += 1;
        }
        buf.drain(..used);
        out.flush()?;
    }
}

/// `logdog tail`: the last `lines` lines (of the last `lines` entries), then, with
/// `follow`, what comes after them.
pub async fn tail(
    t: &Target,
    lines: usize,
    follow: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let url = t.url("tail", &format!("count={}", lines.max(1)));
    let page: LogsPage = retry("reading", t.patience, || t.api.get(&url)).await?;
    let next = page.next_index;
    let entries = entries_of(page.entries)?;
    let mut text = Vec::new();
    for e in &entries {
        write_entry(&mut text, e)?;
    }
    if lines > 0 {
        // Keep the last `lines` lines (a final line without a newline counts as one).
        let body = text.strip_suffix(b"\n").unwrap_or(&text);
        let start = body
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, b)| **b == b'\n')
            .nth(lines - 1)
            .map_or(0, |(i, _)| i + 1);
        out.write_all(&text[start..])?;
    }
    out.flush()?;
    if follow {
        watch(t, next, out).await?;
    }
    Ok(())
}

/// Follows the stream over the websocket from `from` until its `end` frame. Until the
/// first connection the coordinator is retried for `--retry-for`; once it was reachable,
/// for as long as it takes, saying so at every attempt.
async fn watch(t: &Target, mut from: u64, out: &mut impl Write) -> anyhow::Result<()> {
    let mut retrier = Retrier::new("following", t.patience);
    let mut connected = false;
    loop {
        let mut req = t
            .api
            .ws_url(&t.project, &format!("watch/{}?from={from}", t.path))
            .into_client_request()?;
        if let Some(token) = t.api.token() {
            req.headers_mut()
                .insert("authorization", format!("Bearer {token}").parse()?);
        }
        let mut ws = match tokio_tungstenite::connect_async(req).await {
            Ok((ws, _)) => ws,
            Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
                let status = reqwest::StatusCode::from_u16(res.status().as_u16())?;
                let err =
                    ClientError::from_answer(status, res.body().as_deref().unwrap_or(&[]), None);
                if !err.retryable() {
                    return Err(err.into());
                }
                retrier.wait(err).await?;
                continue;
            }
            Err(tokio_tungstenite::tungstenite::Error::Io(e)) => {
                let base = &t.api.base;
                let err = ClientError::Network(format!("cannot connect to {base}: {e}"));
                retrier.wait(err).await?;
                continue;
            }
            Err(e) => {
                retrier.wait(ClientError::Network(e.to_string())).await?;
                continue;
            }
        };
        if connected {
            retrier.succeeded();
        } else {
            connected = true;
            retrier = Retrier::new(
                "following",
                Patience {
                    give_up_after: None,
                    each_attempt: true,
                    ..t.patience
                },
            );
        }
        while let Some(msg) = ws.next().await {
            match msg {
                Ok(Message::Text(text)) => match serde_json::from_str::<WatchFrame>(&text)? {
                    WatchFrame::Entries { entries } => {
                        for e in entries_of(entries)? {
                            // Frames start exactly at `from`; never print twice.
                            if e.stream_index >= from {
                                write_entry(out, &e)?;
                                from = e.stream_index + 1;
                            }
                        }
                        out.flush()?;
                    }
                    WatchFrame::End { .. } => return Ok(()),
                    WatchFrame::State { .. } => {}
                },
                Ok(Message::Close(frame)) => {
                    if let Some(n) = frame.as_ref().and_then(|c| {
                        c.reason
                            .strip_prefix("lagged; resume from=")
                            .and_then(|n| n.parse::<u64>().ok())
                    }) {
                        from = from.max(n);
                    }
                    break;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        // Closed without `end`: the server restarted or the network dropped; resume.
        let err = ClientError::Network(format!("the watch connection closed (at index {from})"));
        retrier.wait(err).await?;
    }
}

/// What `logdog query` filters by.
#[derive(Default)]
pub struct QueryOptions {
    pub prefix: Option<String>,
    pub name: Option<String>,
    pub tags: Vec<String>,
    pub status: Option<String>,
    pub stream_type: Option<String>,
    pub purged: Option<String>,
    /// Streams at most (0: all).
    pub limit: usize,
}

/// `logdog query`: the matching streams, every page of them up to `limit`.
pub async fn query(
    api: &Api,
    project: &str,
    q: &QueryOptions,
    patience: Patience,
) -> anyhow::Result<Vec<StreamJson>> {
    let mut params = form_urlencoded::Serializer::new(String::new());
    for (k, v) in [
        ("prefix", &q.prefix),
        ("name", &q.name),
        ("status", &q.status),
        ("stream_type", &q.stream_type),
        ("purged", &q.purged),
    ] {
        if let Some(v) = v {
            params.append_pair(k, v);
        }
    }
    for t in &q.tags {
        params.append_pair("tag", t);
    }
    let base = params.finish();
    let mut streams = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let want = if q.limit == 0 {
            500
        } else {
            (q.limit - streams.len()).min(500)
        };
        let mut url = api.project_url(project, &format!("streams?{base}&limit={want}"));
        if let Some(c) = &cursor {
            url.push_str("&cursor=");
            url.push_str(&form_urlencoded::byte_serialize(c.as_bytes()).collect::<String>());
        }
        let page: QueryResponse = retry("querying", patience, || api.get(&url)).await?;
        streams.extend(page.streams);
        cursor = page.next_cursor;
        if cursor.is_none() || (q.limit > 0 && streams.len() >= q.limit) {
            return Ok(streams);
        }
    }
}

/// How long a stream is, in the unit its readers think in: lines (text), bytes (binary)
/// or datagrams; entries only where that is not known.
pub fn length(s: &StreamJson) -> String {
    use logdog_schema::wire::StreamType;
    let count = super::stream::count;
    match (s.state.next_sequence, s.descriptor.stream_type) {
        (Some(n), StreamType::Text) => count(n as u64, "line", "lines"),
        (Some(n), StreamType::Binary) => count(n as u64, "byte", "bytes"),
        (Some(n), StreamType::Datagram) => count(n as u64, "datagram", "datagrams"),
        (None, _) => count(s.state.next_index as u64, "entry", "entries"),
    }
}

/// Streams as a table: path, type, status, length, archival, last update.
pub fn write_table(out: &mut impl Write, streams: &[StreamJson]) -> std::io::Result<()> {
    let rows: Vec<[String; 6]> = streams
        .iter()
        .map(|s| {
            let st = &s.state;
            [
                s.path.clone(),
                s.descriptor.stream_type.as_str().to_owned(),
                st.status.as_str().to_owned(),
                length(s),
                st.archival.as_str().to_owned(),
                st.updated.clone(),
            ]
        })
        .collect();
    let header = ["PATH", "TYPE", "STATUS", "LENGTH", "ARCHIVAL", "UPDATED"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    for r in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, (c, w)) in r.iter().zip(widths).enumerate() {
            if i == 5 {
                line.push_str(c);
            } else {
                line.push_str(&format!("{c:<w$}  "));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// `logdog ls [PREFIX]`: the prefixes registered under PREFIX (all, without one), then the
/// streams of PREFIX itself. Returns how many lines it printed.
pub async fn ls(
    api: &Api,
    project: &str,
    prefix: Option<&str>,
    patience: Patience,
    out: &mut impl Write,
) -> anyhow::Result<usize> {
    let prefix = prefix.map(|p| p.trim_end_matches('/'));
    let mut printed = 0;
    let mut cursor: Option<String> = None;
    loop {
        let mut url = api.project_url(project, "prefixes?limit=500");
        if let Some(p) = prefix {
            url.push_str("&under=");
            url.extend(form_urlencoded::byte_serialize(p.as_bytes()));
        }
        if let Some(c) = &cursor {
            url.push_str("&cursor=");
            url.extend(form_urlencoded::byte_serialize(c.as_bytes()));
        }
        let page: PrefixList = retry("listing prefixes", patience, || api.get(&url)).await?;
        for p in &page.prefixes {
            if Some(p.prefix.as_str()) != prefix {
                writeln!(out, "{}/\texpires {}", p.prefix, p.expires_at)?;
                printed += 1;
            }
        }
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    if let Some(p) = prefix {
        let q = QueryOptions {
            prefix: Some(p.to_owned()),
            ..Default::default()
        };
        for s in query(api, project, &q, patience).await? {
            writeln!(
                out,
                "{}\t{}\t{}",
                s.path,
                s.state.status.as_str(),
                length(&s)
            )?;
            printed += 1;
        }
    }
    out.flush()?;
    Ok(printed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(arg: &str, project: Option<&str>) -> (String, String, String) {
        let t = Target::parse(arg, "http://127.0.0.1:8080", None, project, Duration::ZERO).unwrap();
        (t.api.base, t.project, t.path)
    }

    #[test]
    fn stream_arguments_name_project_path_and_coordinator() {
        let want = |base: &str| (base.to_owned(), "demo".to_owned(), "b/1/+/out".to_owned());
        assert_eq!(
            parse("http://h:9/logs/demo/b/1/+/out", None),
            want("http://h:9")
        );
        assert_eq!(
            parse(
                "https://h/api/v1/projects/demo/watch/b/1/+/out?from=3",
                None
            ),
            want("https://h")
        );
        assert_eq!(
            parse("ws://h:9/api/v1/projects/demo/logs/b/1/+/out", None),
            want("http://h:9")
        );
        assert_eq!(parse("demo/b/1/+/out", None), want("http://127.0.0.1:8080"));
        assert_eq!(
            parse("b/1/+/out", Some("demo")),
            want("http://127.0.0.1:8080")
        );
        for bad in [
            "b/1/out",
            "http://h/api/v1/projects/demo/prefixes/b",
            "ftp://h/logs/demo/b/+/c",
            "Demo/b/+/c",
        ] {
            assert!(
                Target::parse(bad, "http://127.0.0.1:8080", None, None, Duration::ZERO).is_err(),
                "{bad}"
            );
        }
    }
}
