//! Load generator: ingest, live viewers and archival together against a coordinator
//! started in this process, then the same workload against Redis Streams in the same run;
//! prints throughput and latency percentiles of both and their ratio.
//!
//! ```sh
//! cargo run --release --example loadgen                                  # the defaults below
//! cargo run --release --example loadgen -- --streams 8 --viewers 10 --batch 1000 --seconds 5
//! cargo run --release --example loadgen -- --rate 10000 --batch 100      # paced: 10,000 lines/s per stream
//! cargo run --release --example loadgen -- --format text --runs 3        # each run, then the medians
//! cargo run --release --example loadgen -- --database postgres://postgres@127.0.0.1:5432/test
//! cargo run --release --example loadgen -- --redis off                   # logdog only
//! ```
//! Flags (defaults): `--streams 8`, `--rate 0` (lines/s per stream; 0: each batch as soon
//! as the previous one is acknowledged, otherwise on an absolute schedule that does not
//! drift), `--batch 1000` (lines per append), `--seconds 5`, `--viewers 10` (per stream),
//! `--line-bytes 100` (with the newline), `--database URL` (SQLite in a temporary folder
//! by default; a `postgres://` server gets a fresh database, dropped afterwards),
//! `--format json|text` (JSON bodies or `text/plain`; default json), `--redis URL|off`
//! (default `redis://127.0.0.1:6379`), `--runs 1`.
//!
//! logdog: one writer per stream appends over HTTP; `--viewers` websockets per stream
//! (`…/watch/…`) each check that they receive every index in order with no gap (a viewer
//! closed for lagging resumes with `from=N`, as `follow` does). When the time is up every
//! stream is terminated at once and its archival (the embedded archivist,
//! `complete_delay` 0) is timed until every stream's `state.archival` is `complete`.
//!
//! Redis: the same shape on Redis Streams, with AOF on and `appendfsync always` for the
//! run (the previous values are put back afterwards, also when the run fails or is
//! interrupted with Ctrl-C): one writer per stream sends each batch as one pipeline of
//! XADDs (one entry per line, field `l`, the line numbered in its first 12 bytes) and
//! reads the replies; `--viewers` readers per stream, each on its own
//! connection, loop on `XREAD BLOCK 0 STREAMS key last-id` and check the numbering. The
//! keys are deleted at the end. The client is a minimal RESP2 one written here.
//!
//! Measured the same way for both: acknowledged lines/s (all writers, from the start to
//! the last acknowledgement), delivered lines/s (all viewers, from the start to the last
//! delivery), and the latency from each batch's acknowledgement (the HTTP answer, or the
//! pipeline's last reply) to each viewer's receipt of the batch's last line, both stamped
//! in this process. A negative latency means the viewer had the line before the writer had
//! its acknowledgement. The server, Redis and these clients share the machine's cores.

use std::io::Write as _;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;

mod support;

#[derive(Clone)]
struct Args {
    streams: usize,
    rate: f64,
    batch: u64,
    seconds: f64,
    viewers: usize,
    line_bytes: usize,
    database: Option<String>,
    text: bool,
    redis: Option<String>,
    runs: usize,
}

fn parse_args() -> Args {
    let mut a = Args {
        streams: 8,
        rate: 0.0,
        batch: 1000,
        seconds: 5.0,
        viewers: 10,
        line_bytes: 100,
        database: None,
        text: false,
        redis: Some("redis://127.0.0.1:6379".into()),
        runs: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--streams" => a.streams = value().parse().expect("--streams N"),
            "--rate" => a.rate = value().parse().expect("--rate LINES_PER_SECOND_PER_STREAM"),
            "--batch" => a.batch = value().parse().expect("--batch LINES"),
            "--seconds" => a.seconds = value().parse().expect("--seconds T"),
            "--viewers" => a.viewers = value().parse().expect("--viewers N"),
            "--line-bytes" => a.line_bytes = value().parse().expect("--line-bytes N"),
            "--database" => a.database = Some(value()),
            "--format" => {
                a.text = match value().as_str() {
                    "text" => true,
                    "json" => false,
                    f => panic!("--format text|json, not {f}"),
                }
            }
            "--redis" => a.redis = Some(value()).filter(|v| v != "off"),
            "--runs" => a.runs = value().parse().expect("--runs K"),
            other => panic!(
                "unknown flag {other}; flags: --streams S --rate R --batch B --seconds T --viewers V \
                 --line-bytes N --database URL --format text|json --redis URL|off --runs K"
            ),
        }
    }
    assert!(a.streams >= 1, "--streams must be at least 1");
    assert!(a.batch >= 1, "--batch must be at least 1");
    assert!(a.runs >= 1, "--runs must be at least 1");
    assert!(a.seconds > 0.0, "--seconds must be above 0");
    assert!(a.rate >= 0.0, "--rate must be 0 or more");
    // Redis lines carry their number in their first 12 bytes, then at least one byte and the
    // newline.
    assert!(a.line_bytes >= 14, "--line-bytes must be at least 14");
    a
}

/// What one system did in one run.
#[derive(Clone, Default)]
struct Measured {
    acked: u64,
    ingest: f64,
    delivered: u64,
    delivery: f64,
    /// ack→delivery p50, p99, p99.9, max (ms); NaN without viewers.
    latency: [f64; 4],
    viewers: usize,
    /// logdog viewers closed for lagging and resumed.
    resumes: u64,
    /// Seconds from termination until every stream was archived (logdog).
    archival: f64,
    /// AOF rewrites Redis started during the run.
    aof_rewrites: u64,
}

fn main() {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .init();
    }
    let args = parse_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Ctrl-C during a Redis run puts Redis's settings back before exiting.
    rt.spawn(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            if let Some(pending) = take_pending() {
                eprintln!("loadgen: interrupted; putting Redis's settings back");
                pending.restore_connecting().await;
            }
            std::process::exit(130);
        }
    });
    let redis = args.redis.as_deref().map(redis_addr);
    let redis_version = redis
        .as_deref()
        .map(|addr| rt.block_on(redis_version(addr)));
    let backend = match &args.database {
        Some(url) if url.starts_with("postgres") => "postgres",
        _ => "sqlite",
    };
    println!(
        "loadgen: {} stream(s) x {} viewer(s), batches of {} lines of {} B, {}, {} s per run, {} run(s)",
        args.streams,
        args.viewers,
        args.batch,
        args.line_bytes,
        if args.rate > 0.0 {
            format!("{} lines/s per stream", group(args.rate))
        } else {
            "as fast as acknowledged".into()
        },
        args.seconds,
        args.runs,
    );
    println!(
        "  logdog: {backend}, {} appends, embedded archivist (complete_delay 0)",
        if args.text { "text/plain" } else { "JSON" }
    );
    if let (Some(addr), Some(v)) = (&redis, &redis_version) {
        println!(
            "  Redis {v} at {addr}: XADD pipelines / XREAD BLOCK, AOF with appendfsync always"
        );
    }
    let redis_label = redis_version.map(|v| format!("Redis {v}"));
    let logdog_label = format!("logdog ({backend})");
    let mut results = Vec::new();
    for run in 0..args.runs {
        let logdog = run_logdog(&args, &rt);
        let redis = redis
            .as_deref()
            .map(|addr| rt.block_on(redis_workload(addr, &args, run)));
        println!();
        print_table(
            &format!("run {} of {}", run + 1, args.runs),
            &args,
            &logdog_label,
            &logdog,
            redis_label.as_deref().zip(redis.as_ref()),
        );
        results.push((logdog, redis));
    }
    if args.runs > 1 {
        let logdog: Vec<_> = results.iter().map(|r| r.0.clone()).collect();
        let redis: Vec<_> = results.iter().filter_map(|r| r.1.clone()).collect();
        println!();
        print_table(
            &format!("medians of {} runs (each column on its own)", args.runs),
            &args,
            &logdog_label,
            &median(&logdog),
            redis_label
                .as_deref()
                .zip((!redis.is_empty()).then(|| median(&redis)).as_ref()),
        );
    }
}

fn print_table(
    title: &str,
    args: &Args,
    logdog_label: &str,
    logdog: &Measured,
    redis: Option<(&str, &Measured)>,
) {
    println!("{title}:");
    println!(
        "  {:<26} {:>12} {:>14} {:>8} {:>17} | ack->delivery ms: {:>7} {:>7} {:>7} {:>7}",
        "",
        "lines acked",
        "ingest lines/s",
        "MB/s",
        "delivered lines/s",
        "p50",
        "p99",
        "p99.9",
        "max"
    );
    let row = |label: &str, m: &Measured| {
        let ms = |v: f64| {
            if v.is_nan() {
                "-".to_owned()
            } else {
                format!("{v:.2}")
            }
        };
        println!(
            "  {label:<26} {:>12} {:>14} {:>8.1} {:>17} | {:>17} {:>7} {:>7} {:>7} {:>7}",
            group(m.acked as f64),
            group(m.ingest),
            m.ingest * args.line_bytes as f64 / 1e6,
            group(m.delivery),
            "",
            ms(m.latency[0]),
            ms(m.latency[1]),
            ms(m.latency[2]),
            ms(m.latency[3]),
        );
    };
    row(logdog_label, logdog);
    if let Some((label, r)) = redis {
        row(&format!("{label} (AOF always)"), r);
        // No viewers, nothing delivered: no delivery ratio.
        let delivery = if r.delivery > 0.0 {
            format!("{:.2}x", logdog.delivery / r.delivery)
        } else {
            "-".into()
        };
        println!(
            "  {:<26} {:>12} {:>13.2}x {:>8} {:>17}",
            "logdog / Redis",
            "",
            logdog.ingest / r.ingest,
            "",
            delivery
        );
    }
    let mb = logdog.acked as f64 * args.line_bytes as f64 / 1e6;
    println!(
        "  logdog archival: {} stream(s), {mb:.1} MB of payload, all archived {:.2} s after termination: {:.1} MB/s",
        args.streams,
        logdog.archival,
        mb / logdog.archival
    );
    print!(
        "  checked: each of {} logdog viewer(s) got every index in order, gapless ({} resumed after lagging)",
        logdog.viewers, logdog.resumes
    );
    match redis {
        Some((_, r)) => println!(
            "; each of {} Redis reader(s) got every line in order, gapless; AOF rewrites during the run: {}",
            r.viewers, r.aof_rewrites
        ),
        None => println!(),
    }
}

/// Each field's median over `runs`, on its own.
fn median(runs: &[Measured]) -> Measured {
    let med = |f: &dyn Fn(&Measured) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        (v[(n - 1) / 2] + v[n / 2]) / 2.0
    };
    Measured {
        acked: med(&|m| m.acked as f64) as u64,
        ingest: med(&|m| m.ingest),
        delivered: med(&|m| m.delivered as f64) as u64,
        delivery: med(&|m| m.delivery),
        latency: [0, 1, 2, 3].map(|i| med(&|m| m.latency[i])),
        viewers: runs[0].viewers,
        resumes: med(&|m| m.resumes as f64) as u64,
        archival: med(&|m| m.archival),
        aof_rewrites: med(&|m| m.aof_rewrites as f64) as u64,
    }
}

/// `n` rounded, with thousands separators.
fn group(n: f64) -> String {
    let digits = format!("{:.0}", n.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `later − earlier` in ms, negative when `later` came first.
fn signed_ms(later: Instant, earlier: Instant) -> f64 {
    match later.checked_duration_since(earlier) {
        Some(d) => d.as_secs_f64() * 1e3,
        None => -(earlier - later).as_secs_f64() * 1e3,
    }
}

/// Waits until batch `k` is due; false when it would be due after `deadline`. Unpaced
/// (`rate` 0), a batch is due at once until the deadline; paced, at `start + k·batch/rate`,
/// so that a late batch does not delay the ones after it.
async fn due(k: u64, batch: u64, rate: f64, start: Instant, deadline: Instant) -> bool {
    if rate <= 0.0 {
        return Instant::now() < deadline;
    }
    let at = start + Duration::from_secs_f64((k * batch) as f64 / rate);
    if at >= deadline {
        return false;
    }
    tokio::time::sleep_until(at.into()).await;
    true
}

/// What one viewer (or Redis reader) received.
#[derive(Default)]
struct Viewed {
    lines: u64,
    /// When each batch's last line arrived, batch by batch.
    arrivals: Vec<Instant>,
    /// When the last line arrived.
    last: Option<Instant>,
    resumes: u64,
}

/// Each stream's acknowledgements beside what its viewers (`who`: logdog viewers or Redis
/// readers) received, once every viewer has seen the end (300 s at most).
async fn joined(
    acks: Vec<Vec<Instant>>,
    viewers: Vec<Vec<tokio::task::JoinHandle<Viewed>>>,
    who: &str,
) -> Vec<(Vec<Instant>, Vec<Viewed>)> {
    let mut streams = Vec::new();
    for (acks, tasks) in acks.into_iter().zip(viewers) {
        let mut views = Vec::new();
        for t in tasks {
            let v = tokio::time::timeout(Duration::from_secs(300), t)
                .await
                .unwrap_or_else(|_| panic!("{who} had not seen the end 300 s after the writers"));
            views.push(v.unwrap_or_else(|e| panic!("{who} failed: {e}")));
        }
        streams.push((acks, views));
    }
    streams
}

/// Checks that every viewer of every stream got all its writer's lines, and measures.
/// `streams`: each stream's acknowledgements (one per batch) and viewers.
fn measure(
    system: &str,
    start: Instant,
    batch: u64,
    streams: &[(Vec<Instant>, Vec<Viewed>)],
) -> Measured {
    let mut m = Measured::default();
    let (mut last_ack, mut last_delivery) = (start, start);
    let mut latencies = Vec::new();
    for (s, (acks, views)) in streams.iter().enumerate() {
        let lines = acks.len() as u64 * batch;
        m.acked += lines;
        last_ack = last_ack.max(acks.last().copied().unwrap_or(start));
        for v in views {
            assert_eq!(
                v.lines, lines,
                "{system}: a viewer of stream {s} got {} of its {lines} lines",
                v.lines
            );
            assert_eq!(v.arrivals.len(), acks.len());
            m.delivered += v.lines;
            m.resumes += v.resumes;
            m.viewers += 1;
            last_delivery = last_delivery.max(v.last.unwrap_or(start));
            latencies.extend(acks.iter().zip(&v.arrivals).map(|(a, d)| signed_ms(*d, *a)));
        }
    }
    m.ingest = m.acked as f64 / (last_ack - start).as_secs_f64().max(1e-9);
    m.delivery = m.delivered as f64 / (last_delivery - start).as_secs_f64().max(1e-9);
    latencies.sort_by(f64::total_cmp);
    m.latency = if latencies.is_empty() {
        [f64::NAN; 4]
    } else {
        [
            support::percentile(&latencies, 0.5),
            support::percentile(&latencies, 0.99),
            support::percentile(&latencies, 0.999),
            *latencies.last().unwrap(),
        ]
    };
    m
}

// ---------------------------------------------------------------------------------------
// logdog

fn run_logdog(args: &Args, rt: &tokio::runtime::Runtime) -> Measured {
    let db = support::BenchDb::new(args.database.as_deref(), "loadgen");
    let mut config = db.config();
    config.archival.embedded_archivist = true;
    config.archival.complete_delay = logdog::config::secs(0.0);
    let limits = &mut config.limits;
    limits.max_viewers_per_stream = limits.max_viewers_per_stream.max(args.viewers);
    limits.max_viewers = limits.max_viewers.max(args.streams * args.viewers);
    limits.max_request_entries = limits.max_request_entries.max(args.batch as usize);
    limits.max_request_bytes = limits
        .max_request_bytes
        .max(args.batch as usize * (args.line_bytes + 64) + 1024);
    let server = logdog::server::Background::start(config).expect("start server");
    let m = rt.block_on(logdog_workload(server.addr, args));
    rt.block_on(server.stop());
    m
}

type Ws = support::ws::Viewer;

async fn connect_viewer(url: &str) -> Ws {
    support::ws::Viewer::connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect a viewer to {url}: {e}"))
}

async fn logdog_workload(addr: SocketAddr, args: &Args) -> Measured {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let base = format!("http://{addr}/api/v1/projects/load");
    let secret = support::register_prefix(&http, &base, "load").await;
    let mut paths = Vec::new();
    let mut viewers = Vec::new();
    for s in 0..args.streams {
        let path = format!("load/+/s{s}");
        support::register_stream(&http, &base, &path, &secret).await;
        let url = format!("ws://{addr}/api/v1/projects/load/watch/{path}");
        let mut tasks = Vec::new();
        for _ in 0..args.viewers {
            let ws = connect_viewer(&url).await;
            tasks.push(tokio::spawn(view(ws, url.clone(), args.batch)));
        }
        paths.push(path);
        viewers.push(tasks);
    }

    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.seconds);
    let writers: Vec<_> = paths
        .iter()
        .map(|path| {
            let w = LogdogWriter {
                http: http.clone(),
                base: base.clone(),
                path: path.clone(),
                secret: secret.clone(),
            };
            tokio::spawn(w.run(args.clone(), start, deadline))
        })
        .collect();
    let mut acks = Vec::new();
    for w in writers {
        acks.push(w.await.expect("a logdog writer failed"));
    }

    // Every stream terminated at once; archival timed from there.
    let terminated = Instant::now();
    futures::future::join_all(paths.iter().map(|path| {
        let req = http
            .patch(format!("{base}/streams/{path}"))
            .header("X-Prefix-Secret", &secret)
            .json(&json!({}));
        async move {
            let r = req.send().await.expect("terminate");
            assert_eq!(
                r.status(),
                200,
                "terminate {path}: {}",
                r.text().await.unwrap()
            );
        }
    }))
    .await;
    let archival = tokio::spawn(wait_archived(
        http.clone(),
        base.clone(),
        paths.clone(),
        terminated,
    ));

    let streams = joined(acks, viewers, "a logdog viewer").await;
    let archival = archival.await.expect("archival");
    Measured {
        archival,
        ..measure("logdog", start, args.batch, &streams)
    }
}

struct LogdogWriter {
    http: reqwest::Client,
    base: String,
    path: String,
    secret: String,
}

impl LogdogWriter {
    /// Appends batches until `deadline`; when each batch's acknowledgement arrived.
    async fn run(self, args: Args, start: Instant, deadline: Instant) -> Vec<Instant> {
        #[derive(serde::Deserialize)]
        struct Appended {
            next_index: u64,
            accepted: u64,
        }
        let line = "x".repeat(args.line_bytes - 1);
        let text = bytes::Bytes::from(format!("{line}\n").repeat(args.batch as usize));
        let mut acks = Vec::new();
        for k in 0.. {
            if !due(k, args.batch, args.rate, start, deadline).await {
                break;
            }
            let first = k * args.batch;
            let (http, base, path, secret) = (&self.http, &self.base, &self.path, &self.secret);
            let req = if args.text {
                support::append_text(http, base, path, secret, text.clone())
            } else {
                support::append_lines(http, base, path, secret, first..first + args.batch, &line)
            };
            let r = req.send().await.expect("append");
            let ack = Instant::now();
            let status = r.status();
            let body = r.bytes().await.expect("the append's answer");
            assert_eq!(
                status,
                200,
                "append to {path}: {}",
                String::from_utf8_lossy(&body)
            );
            let a: Appended = serde_json::from_slice(&body).expect("an append answer");
            assert_eq!(
                (a.accepted, a.next_index),
                (args.batch, first + args.batch),
                "append to {path}: {}",
                String::from_utf8_lossy(&body)
            );
            acks.push(ack);
        }
        acks
    }
}

/// One websocket viewer: every index in order from 0 to the end frame; resumes with
/// `from=N` when the server closes it for lagging.
async fn view(mut ws: Ws, url: String, batch: u64) -> Viewed {
    let mut v = Viewed::default();
    let mut indices = Vec::new();
    loop {
        let mut resume = None;
        loop {
            let frame = ws
                .next()
                .await
                .unwrap_or_else(|e| panic!("a viewer of {url}: {e}"));
            match frame {
                Some(support::ws::Frame::Text(t)) => {
                    let now = Instant::now();
                    indices.clear();
                    let end = support::ws::frame_indices(&t, &mut indices);
                    for &i in &indices {
                        assert_eq!(
                            i, v.lines,
                            "a viewer of {url} got index {i} where {} was due",
                            v.lines
                        );
                        v.lines += 1;
                        if v.lines % batch == 0 {
                            v.arrivals.push(now);
                        }
                    }
                    if !indices.is_empty() {
                        v.last = Some(now);
                    }
                    if end {
                        return v;
                    }
                }
                Some(support::ws::Frame::Close(close)) => {
                    let reason = close.map(|(_, reason)| reason).unwrap_or_default();
                    resume = reason
                        .strip_prefix("lagged; resume from=")
                        .and_then(|n| n.parse::<u64>().ok());
                    assert!(
                        resume.is_some(),
                        "a viewer of {url} was closed before the end: {reason:?}"
                    );
                    break;
                }
                None => break,
            }
        }
        let from = resume.unwrap_or_else(|| panic!("a viewer of {url} ended before the end frame"));
        assert_eq!(
            from, v.lines,
            "a viewer of {url} was told to resume from {from}"
        );
        v.resumes += 1;
        ws = connect_viewer(&format!("{url}?from={from}")).await;
    }
}

/// Polls every stream until its archival is complete; seconds since `terminated`.
async fn wait_archived(
    http: reqwest::Client,
    base: String,
    mut pending: Vec<String>,
    terminated: Instant,
) -> f64 {
    while !pending.is_empty() {
        assert!(
            terminated.elapsed() < Duration::from_secs(600),
            "not archived 600 s after termination: {pending:?}"
        );
        let mut left = Vec::new();
        for path in pending {
            let s: Value = http
                .get(format!("{base}/streams/{path}"))
                .send()
                .await
                .expect("load a stream")
                .json()
                .await
                .expect("a stream");
            match s["state"]["archival"].as_str() {
                Some("complete") => {}
                Some("failed" | "partial") => panic!("archival of {path} went wrong: {s}"),
                _ => left.push(path),
            }
        }
        pending = left;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    terminated.elapsed().as_secs_f64()
}

// ---------------------------------------------------------------------------------------
// Redis

/// `host:port` of a `redis://host[:port][/db]` URL (no password or TLS).
fn redis_addr(url: &str) -> String {
    let rest = url
        .strip_prefix("redis://")
        .unwrap_or_else(|| panic!("--redis redis://HOST:PORT or off, not {url}"));
    let hostport = rest.split('/').next().unwrap_or(rest);
    assert!(
        !hostport.contains('@'),
        "--redis: passwords are not supported ({url})"
    );
    if hostport.contains(':') {
        hostport.to_owned()
    } else {
        format!("{hostport}:6379")
    }
}

async fn redis_version(addr: &str) -> String {
    let mut c = Resp::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect to Redis at {addr}: {e} (--redis off skips Redis)"));
    let info = c.info("server").await;
    info_field(&info, "redis_version").unwrap_or("?").to_owned()
}

/// The value of `field` in an INFO answer.
fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines().find_map(|l| {
        l.strip_prefix(field)
            .and_then(|r| r.strip_prefix(':'))
            .map(str::trim)
    })
}

async fn redis_workload(addr: &str, args: &Args, run: usize) -> Measured {
    let mut ctl = Resp::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect to Redis at {addr}: {e}"));
    let keys: Vec<String> = (0..args.streams)
        .map(|s| format!("loadgen:{}:{run}:s{s}", std::process::id()))
        .collect();
    let restore = RedisRestore {
        addr: addr.to_owned(),
        appendonly: ctl.config_get("appendonly").await,
        appendfsync: ctl.config_get("appendfsync").await,
        keys: keys.clone(),
    };
    *PENDING.lock().unwrap() = Some(restore);
    let _guard = PendingGuard;
    ctl.ok(&[b"CONFIG", b"SET", b"appendonly", b"yes"])
        .await
        .unwrap();
    ctl.ok(&[b"CONFIG", b"SET", b"appendfsync", b"always"])
        .await
        .unwrap();
    // Turning AOF on rewrites the file in the background: wait for that to end.
    let waited = Instant::now();
    loop {
        let info = ctl.info("persistence").await;
        let busy = ["aof_rewrite_in_progress", "aof_rewrite_scheduled"]
            .iter()
            .any(|f| info_field(&info, f) != Some("0"));
        if !busy && info_field(&info, "aof_enabled") == Some("1") {
            break;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(120),
            "Redis's AOF rewrite is still running after 120 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rewrites = |info: &str| -> u64 {
        info_field(info, "aof_rewrites")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let rewrites_before = rewrites(&ctl.info("persistence").await);

    let mut readers = Vec::new();
    let mut writers = Vec::new();
    for key in &keys {
        let mut tasks = Vec::new();
        for _ in 0..args.viewers {
            let c = Resp::connect(addr).await.expect("connect a Redis reader");
            tasks.push(tokio::spawn(read_redis(c, key.clone(), args.batch)));
        }
        readers.push(tasks);
        writers.push(Resp::connect(addr).await.expect("connect a Redis writer"));
    }
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.seconds);
    let writers: Vec<_> = writers
        .into_iter()
        .zip(&keys)
        .map(|(c, key)| tokio::spawn(write_redis(c, key.clone(), args.clone(), start, deadline)))
        .collect();
    let mut acks = Vec::new();
    for w in writers {
        acks.push(w.await.expect("a Redis writer failed"));
    }
    let streams = joined(acks, readers, "a Redis reader").await;
    let aof_rewrites = rewrites(&ctl.info("persistence").await) - rewrites_before;
    if let Some(restore) = take_pending() {
        restore.restore(&mut ctl).await;
    }
    Measured {
        aof_rewrites,
        ..measure("Redis", start, args.batch, &streams)
    }
}

/// What to put back in Redis (the AOF settings) and delete (the run's keys) while a run
/// has changed it: put back at the end of the run, by [`PendingGuard`] on a failure path,
/// or by the Ctrl-C handler `main` installs; whichever takes it first.
static PENDING: std::sync::Mutex<Option<RedisRestore>> = std::sync::Mutex::new(None);

fn take_pending() -> Option<RedisRestore> {
    PENDING.lock().unwrap_or_else(|e| e.into_inner()).take()
}

struct RedisRestore {
    addr: String,
    appendonly: String,
    appendfsync: String,
    keys: Vec<String>,
}

impl RedisRestore {
    async fn restore(&self, c: &mut Resp) {
        let mut del: Vec<&[u8]> = vec![b"DEL"];
        del.extend(self.keys.iter().map(|k| k.as_bytes()));
        match c.command(&del).await {
            RespValue::Int(n) if n >= 0 => {}
            other => eprintln!("loadgen: DEL of the run's Redis keys answered {other:?}"),
        }
        for (name, value) in [
            ("appendfsync", &self.appendfsync),
            ("appendonly", &self.appendonly),
        ] {
            if let Err(e) = c
                .ok(&[b"CONFIG", b"SET", name.as_bytes(), value.as_bytes()])
                .await
            {
                eprintln!("loadgen: could not put Redis's {name} back to {value}: {e}");
            }
        }
    }

    /// On a connection of its own.
    async fn restore_connecting(&self) {
        match Resp::connect(&self.addr).await {
            Ok(mut c) => self.restore(&mut c).await,
            Err(e) => eprintln!(
                "loadgen: could not reach Redis to put appendonly={} appendfsync={} back: {e}",
                self.appendonly, self.appendfsync
            ),
        }
    }
}

/// Puts back what is still pending when dropped (a failure path, unwinding).
struct PendingGuard;

impl Drop for PendingGuard {
    fn drop(&mut self) {
        let Some(pending) = take_pending() else {
            return;
        };
        eprintln!("loadgen: the Redis run failed; putting Redis's settings back");
        // Possibly inside the client runtime: a thread with a runtime of its own.
        let done = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(pending.restore_connecting())
        })
        .join();
        if done.is_err() {
            eprintln!("loadgen: putting Redis's settings back failed");
        }
    }
}

/// The 12-digit number at the start of a Redis line.
const SEQ_DIGITS: usize = 12;

fn put_seq(line: &mut [u8], mut n: u64) {
    for d in line[..SEQ_DIGITS].iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

fn get_seq(line: &[u8]) -> Option<u64> {
    let digits = line.get(..SEQ_DIGITS)?;
    digits.iter().try_fold(0u64, |n, d| {
        d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0'))
    })
}

/// One stream's writer: a pipeline of `batch` XADDs per batch until `deadline`, then an
/// end entry (field `e`); when each pipeline's last reply arrived.
async fn write_redis(
    mut c: Resp,
    key: String,
    args: Args,
    start: Instant,
    deadline: Instant,
) -> Vec<Instant> {
    let mut line = vec![b'x'; args.line_bytes];
    *line.last_mut().unwrap() = b'\n';
    let mut acks = Vec::new();
    for k in 0.. {
        if !due(k, args.batch, args.rate, start, deadline).await {
            break;
        }
        for i in k * args.batch..(k + 1) * args.batch {
            put_seq(&mut line, i);
            c.push(&[b"XADD", key.as_bytes(), b"*", b"l", &line]);
        }
        c.send().await.expect("send XADDs");
        for _ in 0..args.batch {
            c.read().await.expect("an XADD reply");
            // The entry's ID.
            c.reply().bulk("an XADD reply");
        }
        acks.push(Instant::now());
    }
    c.push(&[b"XADD", key.as_bytes(), b"*", b"e", b"1"]);
    c.send().await.expect("send the end entry");
    c.read().await.expect("an XADD reply");
    c.reply().bulk("an XADD reply");
    acks
}

/// One reader: `XREAD BLOCK 0 STREAMS key last-id` until the end entry; checks the lines'
/// numbers run 0, 1, 2, … with no gap.
async fn read_redis(mut c: Resp, key: String, batch: u64) -> Viewed {
    let mut v = Viewed::default();
    let mut last_id = b"0-0".to_vec();
    loop {
        c.push(&[
            b"XREAD",
            b"BLOCK",
            b"0",
            b"STREAMS",
            key.as_bytes(),
            &last_id,
        ]);
        c.send().await.expect("send XREAD");
        c.read().await.expect("an XREAD reply");
        let now = Instant::now();
        let mut r = c.reply();
        if r.peek_nil() {
            continue; // a timeout, which BLOCK 0 never has
        }
        let mut end = false;
        let before = v.lines;
        for _ in 0..r.array("the XREAD reply") {
            assert_eq!(r.array("a stream of the XREAD reply"), 2);
            assert_eq!(r.bulk("the key"), key.as_bytes());
            for _ in 0..r.array("the entries") {
                assert_eq!(r.array("an entry"), 2);
                let id = r.bulk("an entry ID");
                let fields = r.array("an entry's fields");
                for _ in 0..fields / 2 {
                    match r.bulk("a field name") {
                        b"l" => {
                            let line = r.bulk("a line");
                            let seq = get_seq(line).expect("a numbered line");
                            assert_eq!(
                                seq, v.lines,
                                "a Redis reader of {key} got line {seq} where {} was due",
                                v.lines
                            );
                            v.lines += 1;
                            if v.lines % batch == 0 {
                                v.arrivals.push(now);
                            }
                        }
                        b"e" => {
                            r.bulk("the end value");
                            end = true;
                        }
                        f => panic!("unexpected field {:?}", String::from_utf8_lossy(f)),
                    }
                }
                last_id.clear();
                last_id.extend_from_slice(id);
            }
        }
        if v.lines > before {
            v.last = Some(now);
        }
        if end {
            return v;
        }
    }
}

/// One RESP2 reply element, as parsed: ranges are into `Resp::buf`.
#[derive(Clone, Debug)]
enum Tok {
    Simple(Range<usize>),
    Error(Range<usize>),
    Int(i64),
    Bulk(Range<usize>),
    /// A nil bulk string or nil array.
    Nil,
    /// An array of this many elements; they follow.
    Array(usize),
}

/// A reply as a tree, for the few control commands.
#[derive(Debug)]
enum RespValue {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Nil,
    Array(Vec<RespValue>),
}

/// A minimal RESP2 client: commands are buffered in `out` and sent together (pipelining);
/// a reply is parsed into a flat list of tokens in prefix order (an array token, then its
/// elements), with the strings' bytes in one reused buffer, so that a large XREAD reply
/// costs no allocation per entry.
struct Resp {
    io: BufReader<TcpStream>,
    out: Vec<u8>,
    buf: Vec<u8>,
    toks: Vec<Tok>,
}

impl Resp {
    async fn connect(addr: &str) -> std::io::Result<Self> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(Self {
            io: BufReader::with_capacity(64 << 10, s),
            out: Vec::new(),
            buf: Vec::new(),
            toks: Vec::new(),
        })
    }

    /// Buffers one command (an array of bulk strings).
    fn push(&mut self, args: &[&[u8]]) {
        write!(self.out, "*{}\r\n", args.len()).unwrap();
        for a in args {
            write!(self.out, "${}\r\n", a.len()).unwrap();
            self.out.extend_from_slice(a);
            self.out.extend_from_slice(b"\r\n");
        }
    }

    /// Sends the buffered commands.
    async fn send(&mut self) -> std::io::Result<()> {
        self.io.get_mut().write_all(&self.out).await?;
        self.out.clear();
        Ok(())
    }

    /// Reads one whole reply (however deeply nested) into `toks` and `buf`.
    async fn read(&mut self) -> std::io::Result<()> {
        use std::io::{Error, ErrorKind};
        let bad = |what: String| Error::new(ErrorKind::InvalidData, what);
        self.buf.clear();
        self.toks.clear();
        // Elements still to read: the reply itself, then each array's elements.
        let mut pending = 1usize;
        while pending > 0 {
            pending -= 1;
            let at = self.buf.len();
            if self.io.read_until(b'\n', &mut self.buf).await? == 0 {
                return Err(ErrorKind::UnexpectedEof.into());
            }
            let end = self.buf.len();
            if end - at < 3 || self.buf[end - 2] != b'\r' {
                return Err(bad(format!(
                    "a malformed RESP line {:?}",
                    String::from_utf8_lossy(&self.buf[at..])
                )));
            }
            let line = at + 1..end - 2;
            let int = |buf: &[u8]| -> std::io::Result<i64> {
                std::str::from_utf8(&buf[line.clone()])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| {
                        bad(format!(
                            "a RESP number {:?}",
                            String::from_utf8_lossy(&buf[line.clone()])
                        ))
                    })
            };
            let tok = match self.buf[at] {
                b'+' => Tok::Simple(line.clone()),
                b'-' => Tok::Error(line.clone()),
                b':' => {
                    let n = int(&self.buf)?;
                    self.buf.truncate(at);
                    Tok::Int(n)
                }
                b'$' => {
                    let n = int(&self.buf)?;
                    self.buf.truncate(at);
                    if n < 0 {
                        Tok::Nil
                    } else {
                        let n = n as usize;
                        self.buf.resize(at + n + 2, 0);
                        self.io.read_exact(&mut self.buf[at..]).await?;
                        if &self.buf[at + n..] != b"\r\n" {
                            return Err(bad("a bulk string without its CRLF".into()));
                        }
                        self.buf.truncate(at + n);
                        Tok::Bulk(at..at + n)
                    }
                }
                b'*' => {
                    let n = int(&self.buf)?;
                    self.buf.truncate(at);
                    if n < 0 {
                        Tok::Nil
                    } else {
                        pending += n as usize;
                        Tok::Array(n as usize)
                    }
                }
                t => return Err(bad(format!("an unknown RESP type {:?}", t as char))),
            };
            self.toks.push(tok);
        }
        Ok(())
    }

    /// The last reply read, to walk through.
    fn reply(&self) -> Reply<'_> {
        Reply {
            toks: &self.toks,
            buf: &self.buf,
            at: 0,
        }
    }

    /// Sends one command and reads its reply as a tree.
    async fn command(&mut self, args: &[&[u8]]) -> RespValue {
        self.push(args);
        self.send().await.expect("send a command to Redis");
        self.read().await.expect("a reply from Redis");
        self.reply().value()
    }

    /// A command whose reply is `+OK`; Err with the error or whatever else came.
    async fn ok(&mut self, args: &[&[u8]]) -> Result<(), String> {
        match self.command(args).await {
            RespValue::Simple(s) if s == "OK" => Ok(()),
            RespValue::Error(e) => Err(e),
            other => Err(format!("{other:?}")),
        }
    }

    async fn config_get(&mut self, name: &str) -> String {
        match self.command(&[b"CONFIG", b"GET", name.as_bytes()]).await {
            RespValue::Array(v) => match v.as_slice() {
                [_, RespValue::Bulk(value)] => String::from_utf8_lossy(value).into_owned(),
                _ => panic!("Redis has no setting {name}: {v:?}"),
            },
            other => panic!("CONFIG GET {name}: {other:?}"),
        }
    }

    async fn info(&mut self, section: &str) -> String {
        match self.command(&[b"INFO", section.as_bytes()]).await {
            RespValue::Bulk(b) => String::from_utf8_lossy(&b).into_owned(),
            other => panic!("INFO {section}: {other:?}"),
        }
    }
}

/// A walk through a parsed reply, token by token.
struct Reply<'a> {
    toks: &'a [Tok],
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reply<'a> {
    fn next(&mut self) -> Tok {
        let t = self.toks.get(self.at).cloned().expect("more of the reply");
        self.at += 1;
        t
    }

    fn peek_nil(&self) -> bool {
        matches!(self.toks.get(self.at), Some(Tok::Nil))
    }

    fn unexpected(&self, t: Tok, what: &str) -> ! {
        match t {
            Tok::Error(r) => panic!(
                "Redis answered an error for {what}: {}",
                String::from_utf8_lossy(&self.buf[r])
            ),
            t => panic!("Redis answered {t:?} for {what}"),
        }
    }

    /// An array's length.
    fn array(&mut self, what: &str) -> usize {
        match self.next() {
            Tok::Array(n) => n,
            t => self.unexpected(t, what),
        }
    }

    fn bulk(&mut self, what: &str) -> &'a [u8] {
        match self.next() {
            Tok::Bulk(r) => &self.buf[r],
            t => self.unexpected(t, what),
        }
    }

    /// The next element, arrays with all their elements, as a tree.
    fn value(&mut self) -> RespValue {
        let buf = self.buf;
        let text = |r: Range<usize>| String::from_utf8_lossy(&buf[r]).into_owned();
        match self.next() {
            Tok::Simple(r) => RespValue::Simple(text(r)),
            Tok::Error(r) => RespValue::Error(text(r)),
            Tok::Int(n) => RespValue::Int(n),
            Tok::Bulk(r) => RespValue::Bulk(buf[r].to_vec()),
            Tok::Nil => RespValue::Nil,
            Tok::Array(n) => RespValue::Array((0..n).map(|_| self.value()).collect()),
        }
    }
}
