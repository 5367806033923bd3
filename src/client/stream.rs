//! `logdog stream`: the Butler side in one command. It registers a prefix, runs a command
//! (or reads stdin), uploads its stdout and stderr as the text streams `{name}/stdout` and
//! `{name}/stderr`, terminates both at the right index when the command ends, and exits with
//! the command's exit code.
//!
//! Each output is cut into lines, lines are grouped into entries (by size, and by time so a
//! quiet command still shows up live), and entries get their `stream_index` here, so every
//! upload is idempotent: a request that failed or whose answer was lost is sent again as is
//! and the coordinator drops what it already has. Entries wait in an [`Outbox`]: in memory up
//! to `buffer_bytes`, then in a spool file up to `spool_bytes`; when even that is full the
//! command's output is not read until there is room, so nothing is ever dropped.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use logdog_schema::wire::{Delimiter, DescriptorRequest, LogEntry, StreamJson, StreamType};
use reqwest::Method;

use crate::http::registration::{PrefixRegistered, RegisterPrefixRequest};
use crate::http::services::{AppendRequest, AppendResult, RegisterStreamRequest, TerminateRequest};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, OnceCell};

use super::api::{retry, Api, ClientError, Patience};
use super::outbox::{Outbox, PushError, Record};

/// What `logdog stream` was asked to do.
pub struct StreamOptions {
    pub api: Api,
    pub project: String,
    /// The prefix to register; generated (`cli/{host}/{time}-{random}`) when absent.
    pub prefix: Option<String>,
    /// Streams are `{name}/stdout` and `{name}/stderr`.
    pub name: String,
    /// The command and its arguments; empty: read stdin into `{name}/stdout`.
    pub command: Vec<String>,
    pub tags: Vec<(String, String)>,
    pub expiration: Option<f64>,
    /// An entry is sent at most this long after its first line was read.
    pub flush_interval: Duration,
    /// Text per entry, at most (a longer line is split; the parts join up when read).
    pub entry_bytes: usize,
    /// Entries per request, at most this many bytes of JSON.
    pub batch_bytes: usize,
    /// Entries waiting in memory per stream before they go to the spool file.
    pub buffer_bytes: usize,
    pub spool_dir: PathBuf,
    /// The spool file's size limit per stream.
    pub spool_bytes: u64,
    /// How long to keep trying to upload after the command has ended.
    pub drain_timeout: Duration,
    /// Do not copy the command's output to this terminal.
    pub quiet: bool,
    /// The longest wait between retries.
    pub max_backoff: Duration,
}

/// Where a copy of the command's output goes (this process's stdout or stderr).
type Tee = Option<Box<dyn AsyncWrite + Unpin + Send>>;

/// State the two uploads share: the prefix and its secret (registered once).
struct Shared {
    api: Api,
    project: String,
    prefix: String,
    nonce: String,
    expiration: Option<f64>,
    secret: OnceCell<String>,
    /// The descriptor timestamp: entries' `time_offset`s count from here.
    started: Instant,
    started_at: chrono::DateTime<chrono::Utc>,
    tags: std::collections::BTreeMap<String, String>,
    max_backoff: Duration,
    /// The streams' names, and whether their viewer URLs were printed.
    names: Vec<String>,
    announced: std::sync::Once,
    /// The run's folder (`{name}`) when a command runs: its run view is printed first, and
    /// `{name}/result` records how it ended.
    run: Option<String>,
}

impl Shared {
    async fn register_prefix_once(&self) -> Result<String, ClientError> {
        let body = RegisterPrefixRequest {
            prefix: self.prefix.clone(),
            expiration: self.expiration,
            op_nonce: Some(self.nonce.clone()),
            source_info: vec!["logdog stream".into()],
        };
        let url = self.api.project_url(&self.project, "prefixes");
        let registered: PrefixRegistered = self
            .api
            .call(self.api.request(Method::POST, &url).json(&body))
            .await?;
        Ok(registered.secret)
    }

    /// The prefix secret, registering the prefix first (retried: the op_nonce makes a
    /// repeated registration answer with the same secret).
    async fn secret(&self) -> Result<&str, ClientError> {
        let secret = self
            .secret
            .get_or_try_init(|| {
                retry(
                    "registering the prefix",
                    Patience::forever(self.max_backoff),
                    || self.register_prefix_once(),
                )
            })
            .await?;
        self.announce();
        Ok(secret)
    }

    /// Prints the viewer URLs, once the prefix is ours (never links to a refused
    /// registration, or to someone else's streams under a taken prefix).
    fn announce(&self) {
        self.announced.call_once(|| {
            if let Some(run) = &self.run {
                eprintln!(
                    "logdog: run: {}/logs/{}/{}",
                    self.api.base,
                    self.project,
                    self.path(run)
                );
            }
            for n in &self.names {
                eprintln!(
                    "logdog: {n}: {}/logs/{}/{}",
                    self.api.base,
                    self.project,
                    self.path(n)
                );
            }
        });
    }

    fn path(&self, stream: &str) -> String {
        format!("{}/+/{stream}", self.prefix)
    }

    async fn register_stream_once(&self, secret: &str, stream: &str) -> Result<(), ClientError> {
        let url = self
            .api
            .project_url(&self.project, &format!("streams/{}", self.path(stream)));
        let body = RegisterStreamRequest {
            descriptor: Some(DescriptorRequest {
                stream_type: Some(StreamType::Text),
                timestamp: Some(self.started_at),
                tags: Some(self.tags.clone()),
                ..DescriptorRequest::default()
            }),
            terminal_index: None,
        };
        self.api
            .call::<StreamJson>(
                self.api
                    .request(Method::PUT, &url)
                    .header("X-Prefix-Secret", secret)
                    .json(&body),
            )
            .await
            .map(|_| ())
    }
}

/// One output stream: the producer (reading the pipe) and the uploader share it.
struct Pipe {
    name: String,
    state: Mutex<PipeState>,
    /// Entries were queued, or the output ended.
    ready: Notify,
    /// Entries were taken: a full outbox has room again.
    room: Notify,
    uploaded: AtomicU64,
    /// The upload stopped for good: later output is only copied to the terminal.
    failed: AtomicBool,
}

struct PipeState {
    outbox: Outbox,
    /// Set when the output has ended: the number of entries it made.
    total: Option<u64>,
}

/// Runs the whole thing; returns the exit code to exit with.
pub async fn run(opts: StreamOptions) -> anyhow::Result<i32> {
    let prefix = match &opts.prefix {
        Some(p) => p.clone(),
        None => default_prefix(),
    };
    logdog_schema::names::StreamPath::new(&prefix, &format!("{}/stdout", opts.name))
        .map_err(|e| anyhow::anyhow!("--prefix/--name: {e}"))?;
    let mut tags: std::collections::BTreeMap<String, String> = opts.tags.iter().cloned().collect();
    let started_at = chrono::Utc::now();
    if !opts.command.is_empty() {
        tags.insert(RUN_COMMAND.into(), tag_value(&shell_line(&opts.command)));
        tags.insert(RUN_STARTED.into(), rfc3339(started_at));
    }
    let names: Vec<String> = if opts.command.is_empty() {
        vec![format!("{}/stdout", opts.name)]
    } else {
        vec![
            format!("{}/stdout", opts.name),
            format!("{}/stderr", opts.name),
        ]
    };
    let nonce: [u8; 32] = rand::random();
    let shared = Arc::new(Shared {
        api: opts.api.clone(),
        project: opts.project.clone(),
        prefix: prefix.clone(),
        nonce: base64::engine::general_purpose::STANDARD.encode(nonce),
        expiration: opts.expiration,
        secret: OnceCell::new(),
        started: Instant::now(),
        started_at,
        tags,
        max_backoff: opts.max_backoff,
        names: names.clone(),
        announced: std::sync::Once::new(),
        run: (!opts.command.is_empty()).then(|| opts.name.clone()),
    });

    // Register before the command starts when the coordinator is there; a refusal (bad
    // token, unknown project, prefix taken) stops here. If it cannot be reached, the
    // command runs anyway and its output waits in the outbox.
    let mut registered = vec![false; names.len()];
    match shared.register_prefix_once().await {
        Ok(secret) => {
            let _ = shared.secret.set(secret.clone());
            for (i, n) in names.iter().enumerate() {
                match shared.register_stream_once(&secret, n).await {
                    Ok(()) => registered[i] = true,
                    Err(e) if e.retryable() => {}
                    Err(e) => anyhow::bail!("registering {}: {e}", shared.path(n)),
                }
            }
            shared.announce();
        }
        Err(e) if e.retryable() => eprintln!(
            "logdog: {e}; running the command anyway, its output is kept until the coordinator answers"
        ),
        Err(e) => anyhow::bail!("registering prefix {prefix:?} in project {:?}: {e}", opts.project),
    }

    let pipes: Vec<Arc<Pipe>> = names
        .iter()
        .map(|n| {
            let spool = opts.spool_dir.join(format!(
                "logdog-{}-{}.spool",
                std::process::id(),
                shared.path(n).replace(['/', '+'], "_")
            ));
            Arc::new(Pipe {
                name: n.clone(),
                state: Mutex::new(PipeState {
                    outbox: Outbox::new(opts.buffer_bytes, spool, opts.spool_bytes),
                    total: None,
                }),
                ready: Notify::new(),
                room: Notify::new(),
                uploaded: AtomicU64::new(0),
                failed: AtomicBool::new(false),
            })
        })
        .collect();
    let uploads: Vec<_> = pipes
        .iter()
        .zip(registered)
        .map(|(p, reg)| {
            tokio::spawn(upload(
                shared.clone(),
                p.clone(),
                reg,
                opts.batch_bytes,
                opts.max_backoff,
            ))
        })
        .collect();

    tokio::spawn(async {
        let mut count = 0;
        while tokio::signal::ctrl_c().await.is_ok() {
            count += 1;
            if count > 1 {
                std::process::exit(130);
            }
            eprintln!("logdog: interrupted: finishing the upload (interrupt again to quit now)");
        }
    });

    let framing = Framing {
        flush_interval: opts.flush_interval,
        entry_bytes: opts.entry_bytes.max(16),
        started: shared.started,
    };
    let mut command_code = 0;
    let mut producers = Vec::new();
    if opts.command.is_empty() {
        let tee: Tee = None;
        producers.push(tokio::spawn(produce(
            tokio::io::stdin(),
            tee,
            pipes[0].clone(),
            framing,
        )));
        for p in producers.drain(..) {
            let _ = p.await;
        }
    } else {
        let spawned = tokio::process::Command::new(&opts.command[0])
            .args(&opts.command[1..])
            .stdin(std::process::Stdio::inherit())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                eprintln!("logdog: cannot run {:?}: {e}", opts.command[0]);
                let line = format!("logdog: cannot run {:?}: {e}\n", opts.command[0]);
                let _ = push_all(
                    &pipes[1],
                    vec![entry_json(0, 0, shared.started, &[(line, "")])],
                )
                .await;
                finish(&pipes[0], 0);
                finish(&pipes[1], 1);
                command_code = if e.kind() == std::io::ErrorKind::NotFound {
                    127
                } else {
                    126
                };
                let ended_at = chrono::Utc::now();
                let code = drain(uploads, &pipes, opts.drain_timeout, command_code, false).await?;
                record_result(&shared, &opts.name, command_code, ended_at).await;
                return Ok(code);
            }
        };
        let out = child.stdout.take().expect("piped");
        let err = child.stderr.take().expect("piped");
        let (tee_out, tee_err): (Tee, Tee) = if opts.quiet {
            (None, None)
        } else {
            (
                Some(Box::new(tokio::io::stdout())),
                Some(Box::new(tokio::io::stderr())),
            )
        };
        producers.push(tokio::spawn(produce(
            out,
            tee_out,
            pipes[0].clone(),
            framing.clone(),
        )));
        producers.push(tokio::spawn(produce(
            err,
            tee_err,
            pipes[1].clone(),
            framing,
        )));
        let status = child.wait().await?;
        let ended_at = chrono::Utc::now();
        command_code = exit_code(status);
        for p in producers.drain(..) {
            let _ = p.await;
        }
        let code = drain(uploads, &pipes, opts.drain_timeout, command_code, false).await?;
        record_result(&shared, &opts.name, command_code, ended_at).await;
        return Ok(code);
    }
    drain(uploads, &pipes, opts.drain_timeout, command_code, true).await
}

/// The run record's tags (docs/CLI.md, "The run record"): on `{name}/stdout` and
/// `{name}/stderr` from the start, and with the end on `{name}/result`.
pub const RUN_COMMAND: &str = "run.command";
pub const RUN_STARTED: &str = "run.started";
pub const RUN_ENDED: &str = "run.ended";
pub const RUN_DURATION: &str = "run.duration";
pub const RUN_EXIT_CODE: &str = "run.exit_code";

/// How long recording the result may take when the coordinator is away.
const RESULT_PATIENCE: Duration = Duration::from_secs(30);

fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The command line as a shell would take it back (arguments quoted where needed).
pub fn shell_line(args: &[String]) -> String {
    let plain = |a: &str| {
        !a.is_empty()
            && a.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_./:=,+@%".contains(&b))
    };
    args.iter()
        .map(|a| {
            if plain(a) {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A tag value within the server's limit (4096 bytes), cut with "…" when longer.
fn tag_value(s: &str) -> String {
    const MAX: usize = logdog_schema::names::MAX_TAG_VALUE_BYTES;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX - '…'.len_utf8();
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// `12.4 s`, `3 min 05 s`.
fn duration_text(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1} s")
    } else {
        let whole = d.as_secs();
        format!("{} min {:02} s", whole / 60, whole % 60)
    }
}

/// Records how the run ended as the one-line stream `{name}/result`, whose tags hold the
/// command, start, end, duration (seconds) and exit code. Best effort: a failure is
/// reported and does not change the exit code.
async fn record_result(
    shared: &Shared,
    name: &str,
    code: i32,
    ended_at: chrono::DateTime<chrono::Utc>,
) {
    let duration = (ended_at - shared.started_at).to_std().unwrap_or_default();
    let mut tags = shared.tags.clone();
    tags.insert(RUN_ENDED.into(), rfc3339(ended_at));
    tags.insert(
        RUN_DURATION.into(),
        format!("{:.3}", duration.as_secs_f64()),
    );
    tags.insert(RUN_EXIT_CODE.into(), code.to_string());
    let line = format!("exit code {code} after {}", duration_text(duration));
    let stream = format!("{name}/result");
    let path = shared.path(&stream);
    let patience = Patience::bounded(shared.max_backoff, RESULT_PATIENCE);
    let recorded = async {
        let secret = shared.secret().await?.to_owned();
        let url = shared
            .api
            .project_url(&shared.project, &format!("streams/{path}"));
        let register = RegisterStreamRequest {
            descriptor: Some(DescriptorRequest {
                stream_type: Some(StreamType::Text),
                timestamp: Some(shared.started_at),
                tags: Some(tags),
                ..DescriptorRequest::default()
            }),
            terminal_index: Some(0),
        };
        let what = format!("recording {path}");
        let send = |method: Method, url: &str| {
            shared
                .api
                .request(method, url)
                .header("X-Prefix-Secret", &secret)
        };
        retry(&what, patience, || {
            shared
                .api
                .call::<StreamJson>(send(Method::PUT, &url).json(&register))
        })
        .await?;
        let entry = LogEntry {
            time_offset: Some(duration.as_secs_f64()),
            ..LogEntry::text(0, [(line.clone(), Delimiter::Lf)])
        };
        let append = AppendRequest {
            entries: vec![entry],
        };
        let logs = shared
            .api
            .project_url(&shared.project, &format!("logs/{path}"));
        retry(&what, patience, || {
            shared
                .api
                .call::<AppendResult>(send(Method::POST, &logs).json(&append))
        })
        .await?;
        Ok::<(), ClientError>(())
    };
    match recorded.await {
        Ok(()) => eprintln!("logdog: {stream}: {line}"),
        Err(e) => eprintln!("logdog: {stream}: the run's result was not recorded: {e}"),
    }
}

/// `1 line`, `3 lines`.
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Waits for the uploads (at most `timeout`) and reports what could not be sent.
async fn drain(
    uploads: Vec<tokio::task::JoinHandle<Result<StreamJson, String>>>,
    pipes: &[Arc<Pipe>],
    timeout: Duration,
    command_code: i32,
    stdin_mode: bool,
) -> anyhow::Result<i32> {
    let all = futures::future::join_all(uploads);
    let results = match tokio::time::timeout(timeout, all).await {
        Ok(r) => r,
        Err(_) => {
            for p in pipes {
                let total = p.state.lock().unwrap().total.unwrap_or(0);
                let sent = p.uploaded.load(Ordering::Relaxed);
                eprintln!(
                    "logdog: {}: gave up after {timeout:?}: {} of {total} not uploaded",
                    p.name,
                    count(total.saturating_sub(sent), "entry", "entries")
                );
            }
            return Ok(if command_code != 0 { command_code } else { 1 });
        }
    };
    let mut failed = false;
    for (p, r) in pipes.iter().zip(results) {
        match r {
            Ok(Ok(stream)) => {
                let state = p.state.lock().unwrap();
                let spooled = state.outbox.spooled;
                let lines = stream.state.next_sequence.unwrap_or(0) as u64;
                eprintln!(
                    "logdog: {}: {} uploaded and terminated{}",
                    p.name,
                    count(lines, "line", "lines"),
                    if spooled > 0 {
                        format!(" ({spooled} went through the spool file)")
                    } else {
                        String::new()
                    }
                );
            }
            Ok(Err(e)) => {
                failed = true;
                eprintln!("logdog: {}: {e}", p.name);
            }
            Err(e) => {
                failed = true;
                eprintln!("logdog: {}: upload task failed: {e}", p.name);
            }
        }
    }
    Ok(if stdin_mode && failed {
        1
    } else {
        command_code
    })
}

#[cfg(unix)]
fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt as _;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

#[cfg(not(unix))]
fn exit_code(status: std::process::ExitStatus) -> i32 {
    status.code().unwrap_or(1)
}

/// `cli/{host}/{UTC time}-{random}`: unique enough and sorts by time per host.
fn default_prefix() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let mut host: String = host
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    if !host.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        host = format!("h{host}");
    }
    let now = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    format!("cli/{host}/{now}-{:08x}", rand::random::<u32>())
}

#[derive(Clone)]
struct Framing {
    flush_interval: Duration,
    entry_bytes: usize,
    started: Instant,
}

/// One text entry as JSON: `lines` are (value, delimiter).
fn entry_json(index: u64, sequence: u64, started: Instant, lines: &[(String, &str)]) -> Record {
    let lines = lines.iter().map(|(v, d)| {
        let d = Delimiter::parse(d).expect("the framer only makes real delimiters");
        (v.clone(), d)
    });
    let entry = LogEntry {
        sequence: Some(sequence),
        time_offset: Some(started.elapsed().as_micros() as f64 / 1e6),
        ..LogEntry::text(index, lines)
    };
    serde_json::to_vec(&entry).expect("entries serialise")
}

/// Queues `records`, waiting for room when the outbox is full. Err(n): the spool file
/// could not be written; the first `n` records were queued.
async fn push_all(pipe: &Pipe, records: Vec<Record>) -> Result<(), u64> {
    let mut warned = false;
    for (queued, mut r) in records.into_iter().enumerate() {
        loop {
            if pipe.failed.load(Ordering::Relaxed) {
                return Ok(());
            }
            let room = pipe.room.notified();
            let pushed = pipe.state.lock().unwrap().outbox.push(r);
            match pushed {
                Ok(()) => {
                    pipe.ready.notify_one();
                    break;
                }
                Err(PushError::Full(back)) => {
                    if !warned {
                        eprintln!(
                            "logdog: {}: the spool is full; pausing the command's output until the coordinator catches up",
                            pipe.name
                        );
                        warned = true;
                    }
                    r = back;
                    room.await;
                }
                Err(PushError::Io(e)) => {
                    eprintln!(
                        "logdog: {}: cannot write the spool file ({e}); the rest of this output is not uploaded",
                        pipe.name
                    );
                    return Err(queued as u64);
                }
            }
        }
    }
    Ok(())
}

fn finish(pipe: &Pipe, total: u64) {
    pipe.state.lock().unwrap().total = Some(total);
    pipe.ready.notify_one();
}

/// Cuts a byte stream into lines and lines into entries.
struct Framer {
    framing: Framing,
    /// Bytes of a line not ended yet.
    partial: Vec<u8>,
    /// Complete lines (or flushed parts) waiting to become an entry.
    lines: Vec<(String, &'static str)>,
    bytes: usize,
    /// When the oldest byte in `partial` or `lines` arrived.
    oldest: Option<Instant>,
    next_index: u64,
    sequence: u64,
    sealed: Vec<Record>,
}

impl Framer {
    fn new(framing: Framing) -> Self {
        Self {
            framing,
            partial: Vec::new(),
            lines: Vec::new(),
            bytes: 0,
            oldest: None,
            next_index: 0,
            sequence: 0,
            sealed: Vec::new(),
        }
    }

    fn feed(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.oldest.get_or_insert_with(Instant::now);
        let mut rest = data;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            self.partial.extend_from_slice(&rest[..pos]);
            rest = &rest[pos + 1..];
            let delimiter = if self.partial.last() == Some(&b'\r') {
                self.partial.pop();
                "\r\n"
            } else {
                "\n"
            };
            while self.partial.len() > self.framing.entry_bytes {
                self.split_part();
            }
            let value = String::from_utf8_lossy(&self.partial).into_owned();
            self.partial.clear();
            self.add_line(value, delimiter);
        }
        self.partial.extend_from_slice(rest);
        // A line longer than an entry goes out in parts, joined again when read.
        while self.partial.len() >= self.framing.entry_bytes {
            self.split_part();
        }
    }

    /// Sends the first `entry_bytes` of the unfinished line as a part of it.
    fn split_part(&mut self) {
        let cut = utf8_cut(&self.partial[..self.framing.entry_bytes]);
        let part: Vec<u8> = self.partial.drain(..cut).collect();
        self.add_line(String::from_utf8_lossy(&part).into_owned(), "");
    }

    fn add_line(&mut self, value: String, delimiter: &'static str) {
        let size = value.len() + delimiter.len();
        if self.bytes + size > self.framing.entry_bytes {
            self.seal();
        }
        self.bytes += size;
        self.lines.push((value, delimiter));
        if self.bytes >= self.framing.entry_bytes {
            self.seal();
        }
    }

    fn seal(&mut self) {
        if self.lines.is_empty() {
            return;
        }
        let lines = std::mem::take(&mut self.lines);
        self.sealed.push(entry_json(
            self.next_index,
            self.sequence,
            self.framing.started,
            &lines,
        ));
        self.next_index += 1;
        self.sequence += lines.len() as u64;
        self.bytes = 0;
        if self.partial.is_empty() {
            self.oldest = None;
        }
    }

    /// When what is waiting must go out.
    fn deadline(&self) -> Option<Instant> {
        self.oldest.map(|t| t + self.framing.flush_interval)
    }

    /// Sends everything waiting, an unfinished line too (with an empty delimiter: the rest
    /// of the line follows in a later entry). At the end of the output, `eof` also sends a
    /// trailing incomplete UTF-8 sequence.
    fn flush(&mut self, eof: bool) {
        if !self.partial.is_empty() {
            let cut = if eof {
                self.partial.len()
            } else {
                utf8_cut(&self.partial)
            };
            if cut > 0 {
                let part: Vec<u8> = self.partial.drain(..cut).collect();
                self.add_line(String::from_utf8_lossy(&part).into_owned(), "");
            }
        }
        self.seal();
        self.oldest = if self.partial.is_empty() {
            None
        } else {
            Some(Instant::now())
        };
    }
}

/// The longest prefix of `b` that does not end inside a UTF-8 sequence (invalid bytes are
/// replaced when converted; only a character cut short at the end is held back).
fn utf8_cut(b: &[u8]) -> usize {
    let len = b.len();
    for back in 1..=len.min(4) {
        let byte = b[len - back];
        if byte & 0b1100_0000 == 0b1000_0000 {
            continue; // a continuation byte: its lead is further back
        }
        let want = match byte {
            0x00..=0x7f => 1,
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            _ => 4,
        };
        return if back < want { len - back } else { len };
    }
    len
}

/// Reads `src` to its end, copying it to `tee`, and queues its entries on `pipe`.
async fn produce<R: AsyncRead + Unpin>(
    mut src: R,
    mut tee: Tee,
    pipe: Arc<Pipe>,
    framing: Framing,
) {
    let mut framer = Framer::new(framing);
    let mut buf = vec![0u8; 64 * 1024];
    // Set when the spool failed: the entries queued (the stream ends there).
    let mut queued_until: Option<u64> = None;
    loop {
        let deadline = framer.deadline();
        let read = tokio::select! {
            r = src.read(&mut buf) => Some(r),
            _ = sleep_until(deadline), if deadline.is_some() => None,
        };
        match read {
            None => framer.flush(false),
            Some(Ok(0)) => break,
            Some(Ok(n)) => {
                if let Some(t) = tee.as_mut() {
                    if t.write_all(&buf[..n]).await.is_err() || t.flush().await.is_err() {
                        tee = None;
                    }
                }
                framer.feed(&buf[..n]);
            }
            Some(Err(e)) => {
                eprintln!("logdog: {}: reading the output: {e}", pipe.name);
                break;
            }
        }
        let sealed = std::mem::take(&mut framer.sealed);
        if !sealed.is_empty() && queued_until.is_none() {
            let first = framer.next_index - sealed.len() as u64;
            if let Err(n) = push_all(&pipe, sealed).await {
                queued_until = Some(first + n);
            }
        }
    }
    framer.flush(true);
    let sealed = std::mem::take(&mut framer.sealed);
    if queued_until.is_none() {
        let first = framer.next_index - sealed.len() as u64;
        if let Err(n) = push_all(&pipe, sealed).await {
            queued_until = Some(first + n);
        }
    }
    // The stream ends after what was queued.
    finish(&pipe, queued_until.unwrap_or(framer.next_index));
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(d) = deadline {
        tokio::time::sleep_until(d.into()).await;
    }
}

/// Uploads `pipe`'s entries as they come, then terminates the stream. After a failure
/// that retrying cannot fix, the producer drops what it reads (the command carries on).
async fn upload(
    shared: Arc<Shared>,
    pipe: Arc<Pipe>,
    registered: bool,
    batch_bytes: usize,
    max_backoff: Duration,
) -> Result<StreamJson, String> {
    let r = upload_all(&shared, &pipe, registered, batch_bytes, max_backoff).await;
    if let Err(e) = &r {
        eprintln!(
            "logdog: {}: {e}; the rest of its output is not uploaded",
            pipe.name
        );
        pipe.failed.store(true, Ordering::Relaxed);
        pipe.room.notify_one();
    }
    r
}

async fn upload_all(
    shared: &Shared,
    pipe: &Pipe,
    registered: bool,
    batch_bytes: usize,
    max_backoff: Duration,
) -> Result<StreamJson, String> {
    let path = shared.path(&pipe.name);
    let secret = shared
        .secret()
        .await
        .map_err(|e| format!("registering prefix {:?}: {e}", shared.prefix))?
        .to_owned();
    if !registered {
        retry(
            &format!("registering {path}"),
            Patience::forever(max_backoff),
            || shared.register_stream_once(&secret, &pipe.name),
        )
        .await
        .map_err(|e| format!("registering {path}: {e}"))?;
    }
    let api = &shared.api;
    let logs = api.project_url(&shared.project, &format!("logs/{path}"));
    loop {
        let ready = pipe.ready.notified();
        let (batch, total) = {
            let mut s = pipe.state.lock().unwrap();
            let batch = s
                .outbox
                .take(batch_bytes)
                .map_err(|e| format!("reading the spool file: {e}"))?;
            (batch, s.total)
        };
        if batch.is_empty() {
            if total.is_some() {
                break;
            }
            ready.await;
            continue;
        }
        pipe.room.notify_one();
        let n = batch.len() as u64;
        let mut body = Vec::with_capacity(batch.iter().map(|r| r.len() + 1).sum::<usize>() + 16);
        body.extend_from_slice(b"{\"entries\":[");
        for (i, r) in batch.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(r);
        }
        body.extend_from_slice(b"]}");
        let body = bytes::Bytes::from(body);
        // The records are serialised LogEntries: this is an AppendRequest, written in place.
        retry(
            &format!("appending to {path}"),
            Patience::forever(max_backoff),
            || {
                api.call::<AppendResult>(
                    api.request(Method::POST, &logs)
                        .header("X-Prefix-Secret", &secret)
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(body.clone()),
                )
            },
        )
        .await
        .map_err(|e| format!("appending to {path}: {e}"))?;
        pipe.uploaded.fetch_add(n, Ordering::Relaxed);
    }
    let total = pipe.state.lock().unwrap().total.unwrap_or(0);
    let body = TerminateRequest {
        terminal_index: total.checked_sub(1).map(|t| t as i64),
    };
    let url = api.project_url(&shared.project, &format!("streams/{path}"));
    retry(
        &format!("terminating {path}"),
        Patience::forever(max_backoff),
        || {
            api.call::<StreamJson>(
                api.request(Method::PATCH, &url)
                    .header("X-Prefix-Secret", &secret)
                    .json(&body),
            )
        },
    )
    .await
    .map_err(|e| format!("terminating {path}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framer(entry_bytes: usize) -> Framer {
        Framer::new(Framing {
            flush_interval: Duration::from_millis(100),
            entry_bytes,
            started: Instant::now(),
        })
    }

    type Lines = Vec<(String, String)>;

    fn lines(records: &[Record]) -> Vec<(u64, u64, Lines)> {
        records
            .iter()
            .map(|r| {
                let e = serde_json::from_slice::<LogEntry>(r)
                    .unwrap()
                    .into_entry()
                    .unwrap();
                let logdog_schema::wire::Content::Text(ls) = e.content else {
                    panic!("a text entry")
                };
                let ls = ls
                    .into_iter()
                    .map(|l| (l.value, l.delimiter.as_str().to_owned()))
                    .collect();
                (e.stream_index, e.sequence, ls)
            })
            .collect()
    }

    fn l(v: &str, d: &str) -> (String, String) {
        (v.into(), d.into())
    }

    #[test]
    fn lines_keep_their_delimiters_and_entries_number_themselves() {
        let mut f = framer(1 << 20);
        f.feed(b"one\r\ntw");
        f.feed(b"o\nthree");
        f.flush(false);
        f.feed(b" more\n");
        f.flush(true);
        assert_eq!(
            lines(&f.sealed),
            vec![
                (0, 0, vec![l("one", "\r\n"), l("two", "\n"), l("three", "")]),
                (1, 3, vec![l(" more", "\n")]),
            ]
        );
    }

    #[test]
    fn entries_are_cut_by_size_and_long_lines_split() {
        let mut f = framer(10);
        f.feed(b"aaaa\nbbbb\ncccc\n0123456789abcdefghij\n");
        f.flush(true);
        let got = lines(&f.sealed);
        assert_eq!(
            got,
            vec![
                (0, 0, vec![l("aaaa", "\n"), l("bbbb", "\n")]),
                (1, 2, vec![l("cccc", "\n")]),
                (2, 3, vec![l("0123456789", "")]),
                (3, 4, vec![l("abcdefghij", "\n")]),
            ]
        );
    }

    #[test]
    fn a_flush_never_splits_a_utf8_character() {
        let mut f = framer(1 << 20);
        let snow = "☃".as_bytes();
        f.feed(&[b'x', snow[0], snow[1]]);
        f.flush(false);
        f.feed(&[snow[2], b'\n']);
        f.flush(true);
        assert_eq!(
            lines(&f.sealed),
            vec![(0, 0, vec![l("x", "")]), (1, 1, vec![l("☃", "\n")])]
        );
    }
}
