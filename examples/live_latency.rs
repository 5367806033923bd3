//! Live-tail load generator: a writer appends text lines at a fixed rate to each of S
//! streams while N websocket viewers tail each one; prints the latency from each append's
//! acknowledgement (and from its send) to its delivery at the viewers.
//!
//! ```sh
//! cargo run --release --example live_latency -- --viewers 1,10,100 --rate 10000 --seconds 5
//! cargo run --release --example live_latency -- --database postgres://postgres@127.0.0.1:5432/test
//! cargo run --release --example live_latency -- --streams 10 --viewers 1,10
//! ```
//! Lines go out in batches every 10 ms (rate / 100 lines each). A latency below zero means
//! the viewer had the entries before the writer had its acknowledgement (both are sent
//! after the same commit).

use std::time::{Duration, Instant};

mod support;
use serde_json::json;

struct Args {
    database: Option<String>,
    viewers: Vec<usize>,
    streams: usize,
    rate: u64,
    seconds: u64,
}

fn parse_args() -> Args {
    let mut a = Args {
        database: None,
        viewers: vec![1, 10, 100],
        streams: 1,
        rate: 10_000,
        seconds: 5,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--database" => a.database = Some(value()),
            "--viewers" => a.viewers = value().split(',').map(|v| v.parse().expect("--viewers 1,10,100")).collect(),
            "--streams" => a.streams = value().parse().expect("--streams N"),
            "--rate" => a.rate = value().parse().expect("--rate LINES_PER_SECOND"),
            "--seconds" => a.seconds = value().parse().expect("--seconds N"),
            other => panic!("unknown flag {other}; flags: --database URL --viewers 1,10,100 --streams N --rate N --seconds N"),
        }
    }
    a
}

fn main() {
    let args = parse_args();
    let db = support::BenchDb::new(args.database.as_deref(), "latency");
    let mut config = db.config();
    config.limits.max_viewers_per_stream = 10_000;
    let server = logdog::server::Background::start(config).expect("start server");
    let addr = server.addr;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let backend = db.backend();
    for (round, &viewers) in args.viewers.iter().enumerate() {
        rt.block_on(run(addr, round, viewers, &args, backend));
    }
    rt.block_on(server.stop());
}

/// One stream's writer: `per_batch` lines every 10 ms; (last index, sent, acknowledged)
/// of each batch.
async fn write(
    http: reqwest::Client,
    base: String,
    path: String,
    secret: String,
    per_batch: u64,
    batches: u64,
) -> Vec<(u64, Instant, Instant)> {
    let line = "z".repeat(99);
    let mut sent_ack = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for b in 0..batches {
        tick.tick().await;
        let first = b * per_batch;
        let req = support::append_lines(
            &http,
            &base,
            &path,
            &secret,
            first..first + per_batch,
            &line,
        );
        let sent = Instant::now();
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 200);
        sent_ack.push((first + per_batch - 1, sent, Instant::now()));
    }
    let r = http
        .patch(format!("{base}/streams/{path}"))
        .header("X-Prefix-Secret", &secret)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    sent_ack
}

async fn run(addr: std::net::SocketAddr, round: usize, viewers: usize, args: &Args, backend: &str) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let base = format!("http://{addr}/api/v1/projects/bench");
    let per_batch = (args.rate / 100).max(1);
    let batches = args.seconds * 100;
    let mut streams = Vec::new();
    for s in 0..args.streams {
        let prefix = format!("live{round}x{s}");
        let secret = support::register_prefix(&http, &base, &prefix).await;
        let path = format!("{prefix}/+/s");
        support::register_stream(&http, &base, &path, &secret).await;

        // Viewers: record when each index arrives.
        let mut tasks = Vec::new();
        for _ in 0..viewers {
            let url = format!("ws://{addr}/api/v1/projects/bench/watch/{path}");
            let mut ws = support::ws::Viewer::connect(&url)
                .await
                .expect("connect viewer");
            tasks.push(tokio::spawn(async move {
                let mut arrivals: Vec<Option<Instant>> = vec![None; (per_batch * batches) as usize];
                let mut indices = Vec::new();
                let mut expected = 0;
                while let Some(frame) = ws.next().await.expect("a viewer's connection") {
                    let support::ws::Frame::Text(t) = frame else {
                        break;
                    };
                    let now = Instant::now();
                    indices.clear();
                    let end = support::ws::frame_indices(&t, &mut indices);
                    for &i in &indices {
                        assert_eq!(i, expected, "a viewer's entries out of order");
                        arrivals[i as usize] = Some(now);
                        expected += 1;
                    }
                    if end {
                        break;
                    }
                }
                arrivals
            }));
        }
        streams.push((path, secret, tasks));
    }

    let writers: Vec<_> = streams
        .iter()
        .map(|(path, secret, _)| {
            tokio::spawn(write(
                http.clone(),
                base.clone(),
                path.clone(),
                secret.clone(),
                per_batch,
                batches,
            ))
        })
        .collect();
    let mut from_ack = Vec::new();
    let mut from_send = Vec::new();
    for ((_, _, tasks), writer) in streams.into_iter().zip(writers) {
        let sent_ack = writer.await.unwrap();
        for t in tasks {
            let arrivals = t.await.unwrap();
            assert!(
                arrivals.iter().all(Option::is_some),
                "a viewer missed entries"
            );
            for (last, sent, ack) in &sent_ack {
                let at = arrivals[*last as usize].unwrap();
                from_ack.push(
                    at.saturating_duration_since(*ack).as_secs_f64() * 1e3
                        - ack.saturating_duration_since(at).as_secs_f64() * 1e3,
                );
                from_send.push(at.duration_since(*sent).as_secs_f64() * 1e3);
            }
        }
    }
    from_ack.sort_by(f64::total_cmp);
    from_send.sort_by(f64::total_cmp);
    let pct = |v: &[f64], p| support::percentile(v, p);
    println!(
        "{backend}: {} stream(s) x {viewers:>3} viewer(s), {} lines/s each for {} s: ack->delivery p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms; send->delivery p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms",
        args.streams,
        args.rate,
        args.seconds,
        pct(&from_ack, 0.5),
        pct(&from_ack, 0.99),
        pct(&from_ack, 0.999),
        from_ack.last().copied().unwrap_or(0.0),
        pct(&from_send, 0.5),
        pct(&from_send, 0.99),
        pct(&from_send, 0.999),
    );
}
