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

mod framing;
mod record;
mod upload;

use framing::*;
use record::*;
pub use record::{
    count, shell_line, RUN_COMMAND, RUN_DURATION, RUN_ENDED, RUN_EXIT_CODE, RUN_STARTED,
};
use upload::*;

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
