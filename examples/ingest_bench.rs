//! Ingest benchmark: N streams × M text lines of 100 bytes, appended in batches over real
//! HTTP to a coordinator started in this process, all streams at once.
//!
//! ```sh
//! cargo run --release --example ingest_bench                       # SQLite in a temp dir
//! cargo run --release --example ingest_bench -- --format text
//! cargo run --release --example ingest_bench -- --format bundle
//! cargo run --release --example ingest_bench -- --database postgres://postgres@127.0.0.1:5432/test
//! ```
//! With a PostgreSQL URL it creates (and afterwards drops) a fresh database on that server.
//! `--format text` appends `text/plain` bodies (one entry per line, numbered by the server)
//! instead of JSON; `--format bundle` sends each batch as a bundle (`POST …/bundles`, the
//! stream's entries in JSON under its prefix), as a Butler would. Prints lines/s and MB/s of payload, and the median and p99 batch
//! latency.

use std::time::{Duration, Instant};

mod support;

struct Args {
    database: Option<String>,
    streams: usize,
    lines: usize,
    batch: usize,
    format: Format,
}

#[derive(Clone, Copy, PartialEq)]
enum Format {
    Text,
    Json,
    Bundle,
}

fn parse_args() -> Args {
    let mut a = Args {
        database: None,
        streams: 8,
        lines: 100_000,
        batch: 1_000,
        format: Format::Json,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--database" => a.database = Some(value()),
            "--streams" => a.streams = value().parse().expect("--streams N"),
            "--lines" => a.lines = value().parse().expect("--lines N"),
            "--batch" => a.batch = value().parse().expect("--batch N"),
            "--format" => a.format = match value().as_str() {
                "text" => Format::Text,
                "json" => Format::Json,
                "bundle" => Format::Bundle,
                f => panic!("--format text|json|bundle, not {f}"),
            },
            other => panic!(
                "unknown flag {other}; flags: --database URL --streams N --lines N --batch N --format text|json|bundle"
            ),
        }
    }
    a
}

fn main() {
    let args = parse_args();
    let db = support::BenchDb::new(args.database.as_deref(), "bench");
    let config = db.config();
    let server = logdog::server::Background::start(config).expect("start server");
    let addr = server.addr;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(120)).build().unwrap();
        let base = format!("http://{addr}/api/v1/projects/bench");
        let secret = support::register_prefix(&http, &base, "bench").await;
        // 99 characters + "\n" = 100 bytes of payload per line.
        let line = "x".repeat(99);
        let text_body = bytes::Bytes::from(format!("{line}\n").repeat(args.batch));
        let started = Instant::now();
        let tasks: Vec<_> = (0..args.streams)
            .map(|s| {
                let (http, base, secret, line) = (http.clone(), base.clone(), secret.clone(), line.clone());
                let (lines, batch, format) = (args.lines, args.batch, args.format);
                let text_body = text_body.clone();
                tokio::spawn(async move {
                    let path = format!("bench/+/s{s}");
                    support::register_stream(&http, &base, &path, &secret).await;
                    let mut latencies = Vec::new();
                    for first in (0..lines).step_by(batch) {
                        let range = first as u64..(first + batch).min(lines) as u64;
                        let req = match format {
                            Format::Text => support::append_text(&http, &base, &path, &secret, text_body.slice(..range.clone().count() * 100)),
                            Format::Json => support::append_lines(&http, &base, &path, &secret, range, &line),
                            Format::Bundle => bundle(&http, &base, &format!("s{s}"), &secret, range, &line),
                        };
                        let t = Instant::now();
                        let r = req.send().await.unwrap();
                        assert_eq!(r.status(), 200);
                        if format == Format::Bundle {
                            // Every stream of the bundle must have been taken whole.
                            let body: serde_json::Value = r.json().await.unwrap();
                            let stream = &body["streams"][0];
                            assert!(stream["error"].is_null(), "{body}");
                            assert_eq!(stream["accepted"], serde_json::json!(batch.min(lines - first)), "{body}");
                        }
                        latencies.push(t.elapsed());
                    }
                    latencies
                })
            })
            .collect();
        let mut latencies = Vec::new();
        for t in tasks {
            latencies.extend(t.await.unwrap());
        }
        let elapsed = started.elapsed().as_secs_f64();
        latencies.sort();
        let total = (args.streams * args.lines) as f64;
        let backend = db.backend();
        println!(
            "{backend}: {} streams x {} lines (100 B) in {} batches of {}: {:.2} s, {:.0} lines/s, {:.1} MB/s; batch latency p50 {:.1} ms, p99 {:.1} ms",
            args.streams,
            args.lines,
            match args.format {
                Format::Text => "text/plain",
                Format::Json => "JSON",
                Format::Bundle => "bundle",
            },
            args.batch,
            elapsed,
            total / elapsed,
            total * 100.0 / elapsed / 1e6,
            latencies[latencies.len() / 2].as_secs_f64() * 1e3,
            latencies[latencies.len() * 99 / 100].as_secs_f64() * 1e3,
        );
    });
    rt.block_on(server.stop());
}

/// The bundle (`POST …/bundles`) of entries `range` of stream `name` under the prefix
/// `bench`, each one text line `line` (`support::push_text_entries`).
fn bundle(
    http: &reqwest::Client,
    base: &str,
    name: &str,
    secret: &str,
    range: std::ops::Range<u64>,
    line: &str,
) -> reqwest::RequestBuilder {
    let mut body = String::with_capacity(range.clone().count() * (line.len() + 48) + 64);
    body.push_str(r#"{"prefix":"bench","streams":[{"name":""#);
    body.push_str(name);
    body.push_str(r#"","entries":"#);
    support::push_text_entries(&mut body, range, line);
    body.push_str("}]}");
    http.post(format!("{base}/bundles"))
        .header("X-Prefix-Secret", secret)
        .header("Content-Type", "application/json")
        .body(body)
}
