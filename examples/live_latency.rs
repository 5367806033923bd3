//! Live-tail load generator: one writer appends text lines at a fixed rate while N
//! websocket viewers tail the stream; prints the latency from each append's
//! acknowledgement (and from its send) to its delivery at the viewers.
//!
//! ```sh
//! cargo run --release --example live_latency -- --viewers 1,10,100 --rate 10000 --seconds 5
//! cargo run --release --example live_latency -- --database postgres://postgres@127.0.0.1:5432/test
//! ```
//! Lines go out in batches every 10 ms (rate / 100 lines each). A latency below zero means
//! the viewer had the entries before the writer had its acknowledgement (both are sent
//! after the same commit).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt as _;

mod support;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

struct Args {
    database: Option<String>,
    viewers: Vec<usize>,
    rate: u64,
    seconds: u64,
}

fn parse_args() -> Args {
    let mut a = Args {
        database: None,
        viewers: vec![1, 10, 100],
        rate: 10_000,
        seconds: 5,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--database" => a.database = Some(value()),
            "--viewers" => a.viewers = value().split(',').map(|v| v.parse().expect("--viewers 1,10,100")).collect(),
            "--rate" => a.rate = value().parse().expect("--rate LINES_PER_SECOND"),
            "--seconds" => a.seconds = value().parse().expect("--seconds N"),
            other => panic!("unknown flag {other}; flags: --database URL --viewers 1,10,100 --rate N --seconds N"),
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
        rt.block_on(run(addr, round, viewers, args.rate, args.seconds, backend));
    }
    rt.block_on(server.stop());
}

async fn run(
    addr: std::net::SocketAddr,
    round: usize,
    viewers: usize,
    rate: u64,
    seconds: u64,
    backend: &str,
) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let base = format!("http://{addr}/api/v1/projects/bench");
    let prefix = format!("live{round}");
    let secret = support::register_prefix(&http, &base, &prefix).await;
    let path = format!("{prefix}/+/s");
    support::register_stream(&http, &base, &path, &secret).await;

    // Viewers: record when each index arrives.
    let mut tasks = Vec::new();
    for _ in 0..viewers {
        let url = format!("ws://{addr}/api/v1/projects/bench/watch/{path}");
        let (mut ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("connect viewer");
        tasks.push(tokio::spawn(async move {
            let mut arrivals: HashMap<u64, Instant> = HashMap::new();
            while let Some(Ok(msg)) = ws.next().await {
                if let Message::Text(t) = msg {
                    let now = Instant::now();
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if let Some(entries) = v["entries"].as_array() {
                        for e in entries {
                            arrivals.insert(e["stream_index"].as_u64().unwrap(), now);
                        }
                    }
                    if v["type"] == "end" {
                        break;
                    }
                }
            }
            arrivals
        }));
    }

    // Writer: rate/100 lines every 10 ms.
    let per_batch = (rate / 100).max(1);
    let batches = seconds * 100;
    let line = "z".repeat(99);
    let mut sent_ack: Vec<(u64, Instant, Instant)> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
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

    let mut from_ack = Vec::new();
    let mut from_send = Vec::new();
    for t in tasks {
        let arrivals = t.await.unwrap();
        assert_eq!(
            arrivals.len() as u64,
            batches * per_batch,
            "a viewer missed entries"
        );
        for (last, sent, ack) in &sent_ack {
            let at = arrivals[last];
            from_ack.push(
                at.saturating_duration_since(*ack).as_secs_f64() * 1e3
                    - ack.saturating_duration_since(at).as_secs_f64() * 1e3,
            );
            from_send.push(at.duration_since(*sent).as_secs_f64() * 1e3);
        }
    }
    from_ack.sort_by(f64::total_cmp);
    from_send.sort_by(f64::total_cmp);
    println!(
        "{backend}: {viewers:>3} viewer(s), {rate} lines/s for {seconds} s: ack->delivery p50 {:.2} ms, p99 {:.2} ms; send->delivery p50 {:.2} ms, p99 {:.2} ms",
        support::percentile(&from_ack, 0.5),
        support::percentile(&from_ack, 0.99),
        support::percentile(&from_send, 0.5),
        support::percentile(&from_send, 0.99),
    );
}
