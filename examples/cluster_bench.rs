//! Cluster benchmark: real `logdog serve` processes on loopback ports over one fresh
//! PostgreSQL database (created on the server `--database` names, dropped afterwards).
//!
//! ```sh
//! cargo build --release --bin logdog --example cluster_bench
//! target/release/examples/cluster_bench --database postgres://postgres@127.0.0.1:5432/test
//! ```
//!
//! Three measurements, side by side in one run:
//! 1. durable ingest: S streams × L lines of 100 bytes, each stream's writer sending to one
//!    node (spread over the nodes), with one node alone (no `[cluster]`) and with clusters
//!    of 1, 2 and 3 nodes; then 3 nodes with every batch sent to a random node (two of
//!    three forwarded to the stream's owner);
//! 2. append → viewer latency: one stream owned by node 1, websocket viewers on node 1 (the
//!    owner) and on node 2, one line appended every 5 ms; from sending the append to the
//!    entry's arrival at each viewer;
//! 3. failover: `kill -9` of the node owning a stream that is being written through
//!    another node, 5 times (the killed node restarted on its address each time): from the
//!    kill to the next acknowledged append, and every acknowledged entry still there.
//!
//! The nodes, the load generator and PostgreSQL share this machine's cores: on a small
//! machine more nodes add coordination, not capacity.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt as _;

mod support;

const SECRET: &str = "cluster-bench-secret-0123456789";

struct Args {
    database: String,
    streams: usize,
    lines: usize,
    batch: usize,
    kills: usize,
}

fn parse_args() -> Args {
    let mut a = Args {
        database: "postgres://postgres@127.0.0.1:5432/test".into(),
        streams: 12,
        lines: 50_000,
        batch: 1_000,
        kills: 5,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--database" => a.database = value(),
            "--streams" => a.streams = value().parse().expect("--streams N"),
            "--lines" => a.lines = value().parse().expect("--lines N"),
            "--batch" => a.batch = value().parse().expect("--batch N"),
            "--kills" => a.kills = value().parse().expect("--kills N"),
            other => panic!(
                "unknown flag {other}; flags: --database URL --streams N --lines N --batch N --kills N"
            ),
        }
    }
    a
}

/// The `logdog` binary beside this example (`target/release/logdog`).
fn logdog_bin() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("logdog");
    assert!(
        bin.exists(),
        "{} is missing: cargo build --release --bin logdog",
        bin.display()
    );
    bin
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One `logdog serve` process.
struct Node {
    child: Child,
    port: u16,
}

impl Node {
    async fn start(db: &support::BenchDb, port: u16, cluster: bool) -> Node {
        let mut c = Command::new(logdog_bin());
        c.args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--database",
            &db.url,
            "--archive",
            &db.dir.path().join("archive").display().to_string(),
        ])
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        if cluster {
            c.env(
                "LOGDOG_CLUSTER_ADVERTISE",
                format!("http://127.0.0.1:{port}"),
            )
            .env("LOGDOG_CLUSTER_SECRET", SECRET);
        }
        let node = Node {
            child: c.spawn().expect("start logdog serve"),
            port,
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(r) = http.get(format!("{}/readyz", node.base())).send().await {
                if r.status() == 200 {
                    return node;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("node on {port} did not become ready");
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn api(&self) -> String {
        format!("{}/api/v1/projects/bench", self.base())
    }

    fn kill(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

/// Ingest through `nodes`; `random`: each batch to a random node, else each stream's
/// writer to node `stream % n`. Lines/s.
async fn ingest(nodes: &[Node], args: &Args, random: bool) -> f64 {
    let http = http();
    let secret = support::register_prefix(&http, &nodes[0].api(), "bench").await;
    let bases: Vec<String> = nodes.iter().map(Node::api).collect();
    let line = "x".repeat(99);
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.streams)
        .map(|s| {
            let (http, bases, secret, line) =
                (http.clone(), bases.clone(), secret.clone(), line.clone());
            let (lines, batch) = (args.lines, args.batch);
            tokio::spawn(async move {
                let path = format!("bench/+/s{s}");
                let home = &bases[s % bases.len()];
                support::register_stream(&http, home, &path, &secret).await;
                for first in (0..lines).step_by(batch) {
                    let base = if random {
                        &bases[rand::random::<usize>() % bases.len()]
                    } else {
                        home
                    };
                    let range = first as u64..(first + batch).min(lines) as u64;
                    let r = support::append_lines(&http, base, &path, &secret, range, &line)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    (args.streams * args.lines) as f64 / started.elapsed().as_secs_f64()
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn viewer(node: &Node, path: &str) -> Ws {
    let url = format!(
        "ws://127.0.0.1:{}/api/v1/projects/bench/watch/{path}",
        node.port
    );
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

/// Reads `count` entries from `ws`; when each arrived.
async fn arrivals(mut ws: Ws, count: u64) -> Vec<Instant> {
    use tokio_tungstenite::tungstenite::Message;
    let mut at = Vec::new();
    while (at.len() as u64) < count {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "entries" {
                    let now = Instant::now();
                    for e in v["entries"].as_array().unwrap() {
                        assert_eq!(e["stream_index"].as_u64().unwrap(), at.len() as u64);
                        at.push(now);
                    }
                }
            }
            Some(Ok(_)) => {}
            other => panic!("viewer ended: {other:?}"),
        }
    }
    at
}

fn summary(mut ms: Vec<f64>) -> String {
    ms.sort_by(f64::total_cmp);
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        support::percentile(&ms, 0.5),
        support::percentile(&ms, 0.99),
        ms[ms.len() - 1]
    )
}

async fn latency(nodes: &[Node]) {
    const APPENDS: u64 = 1000;
    let http = http();
    let secret = support::register_prefix(&http, &nodes[0].api(), "live").await;
    let path = "live/+/s";
    support::register_stream(&http, &nodes[0].api(), path, &secret).await;
    let owner = tokio::spawn(arrivals(viewer(&nodes[0], path).await, APPENDS));
    let other = tokio::spawn(arrivals(viewer(&nodes[1], path).await, APPENDS));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut sent = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    for i in 0..APPENDS {
        tick.tick().await;
        let req = support::append_lines(&http, &nodes[0].api(), path, &secret, i..i + 1, "x");
        sent.push(Instant::now());
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let lat = |arrived: Vec<Instant>| -> Vec<f64> {
        arrived
            .iter()
            .zip(&sent)
            .map(|(a, s)| a.duration_since(*s).as_secs_f64() * 1e3)
            .collect()
    };
    let (owner, other) = (owner.await.unwrap(), other.await.unwrap());
    println!(
        "append -> viewer, 1 line every 5 ms, {APPENDS} appends to the owner:\n  viewer on the owner node:   {}\n  viewer on another node:     {}",
        summary(lat(owner)),
        summary(lat(other))
    );
}

/// Kills the owner of a stream written through another node, `kills` times. Failover
/// times in seconds.
async fn failover(db: &support::BenchDb, nodes: &mut [Node], kills: usize) -> Vec<f64> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let secret = support::register_prefix(&http, &nodes[0].api(), "fail").await;
    let mut times = Vec::new();
    for round in 0..kills {
        let (owner, writer) = (round % nodes.len(), (round + 1) % nodes.len());
        let path = format!("fail/+/r{round}");
        support::register_stream(&http, &nodes[owner].api(), &path, &secret).await;
        let base = nodes[writer].api();
        let mut next = 0u64;
        let mut killed: Option<Instant> = None;
        let mut recovered = None;
        let started = Instant::now();
        while recovered.is_none() {
            if killed.is_none() && started.elapsed() > Duration::from_millis(500) {
                nodes[owner].kill();
                killed = Some(Instant::now());
            }
            let r = support::append_lines(&http, &base, &path, &secret, next..next + 1, "x")
                .send()
                .await;
            match r {
                Ok(r) if r.status() == 200 => {
                    next += 1;
                    if let Some(k) = killed {
                        recovered = Some(k.elapsed().as_secs_f64());
                    }
                }
                Ok(r) => {
                    let status = r.status().as_u16();
                    assert!(status == 503 || status == 502, "append answered {status}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
            assert!(started.elapsed() < Duration::from_secs(60), "no failover");
        }
        // Every acknowledged entry is there.
        let got: serde_json::Value = http
            .get(format!("{base}/logs/{path}?count={next}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            got["entries"].as_array().unwrap().len() as u64,
            next,
            "acknowledged entries lost"
        );
        times.push(recovered.unwrap());
        let port = nodes[owner].port;
        nodes[owner] = Node::start(db, port, true).await;
    }
    times
}

fn main() {
    let args = parse_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        println!(
            "ingest: {} streams x {} lines (100 B) in batches of {}, PostgreSQL",
            args.streams, args.lines, args.batch
        );
        let mut rates = Vec::new();
        for (label, n, cluster, random) in [
            ("one node, no cluster", 1, false, false),
            ("cluster of 1", 1, true, false),
            ("cluster of 2", 2, true, false),
            ("cluster of 3", 3, true, false),
            ("cluster of 3, random node per batch", 3, true, true),
        ] {
            let db = support::BenchDb::new(Some(&args.database), "cluster");
            let mut nodes = Vec::new();
            for _ in 0..n {
                nodes.push(Node::start(&db, free_port(), cluster).await);
            }
            let rate = ingest(&nodes, &args, random).await;
            let base = *rates.first().unwrap_or(&rate);
            println!(
                "  {label:<38} {rate:>9.0} lines/s  {:>5.1} MB/s  {:.2}x one node",
                rate * 100.0 / 1e6,
                rate / base
            );
            rates.push(rate);
            drop(nodes);
        }

        let db = support::BenchDb::new(Some(&args.database), "cluster");
        let mut nodes = Vec::new();
        for _ in 0..3 {
            nodes.push(Node::start(&db, free_port(), true).await);
        }
        latency(&nodes).await;
        let mut times = failover(&db, &mut nodes, args.kills).await;
        times.sort_by(f64::total_cmp);
        println!(
            "failover after kill -9 of the owner (node_timeout 3 s), {} runs: min {:.2} s, median {:.2} s, max {:.2} s",
            times.len(),
            times[0],
            support::percentile(&times, 0.5),
            times[times.len() - 1]
        );
    });
}
