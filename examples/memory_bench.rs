//! Memory benchmark: the server's resident memory (RSS) per idle websocket viewer and per
//! live stream actor.
//!
//! ```sh
//! cargo run --release --example memory_bench -- --viewers 10000 --streams 10000
//! cargo run --release --example memory_bench -- --database postgres://postgres@127.0.0.1:5432/test
//! ```
//! The server runs in this process; the viewers run in a child process (this program
//! again, with `--client`), so that the RSS read from `/proc/self/status` is the server's.
//! Viewers: N websockets on one stream, each having read its backlog and then idle; the
//! figure is the RSS they added, divided by N. Streams: M streams registered and each
//! given one entry (their actors stay live for `idle_timeout`); the RSS they added, by M.

use std::io::{BufRead as _, Write as _};
use std::time::{Duration, Instant};

use futures::StreamExt as _;

mod support;

/// Resident memory of this process, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

/// Lets this process open `n` more descriptors (the soft limit raised to the hard one).
fn raise_fd_limit(n: u64) {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut l);
        l.rlim_cur = l.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &l);
    }
    assert!(
        l.rlim_cur >= n,
        "descriptors: {} allowed, {n} needed (ulimit -Hn)",
        l.rlim_cur
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--client") {
        return client(&args[1], args[2].parse().expect("viewers"));
    }
    let (mut viewers, mut streams, mut database) = (10_000usize, 10_000usize, None);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--viewers" => viewers = value().parse().expect("--viewers N"),
            "--streams" => streams = value().parse().expect("--streams N"),
            "--database" => database = Some(value().clone()),
            other => panic!("unknown flag {other}; flags: --viewers N --streams N --database URL"),
        }
    }
    raise_fd_limit(viewers as u64 + 1000);
    let db = support::BenchDb::new(database.as_deref(), "memory");
    let mut config = db.config();
    config.limits.max_viewers_per_stream = viewers.max(1);
    config.limits.max_viewers = viewers.max(1);
    let server = logdog::server::Background::start(config).expect("start server");
    let addr = server.addr;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Short-lived pooled connections: the server closes idle ones after 5 s.
    let http = reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let base = format!("http://{addr}/api/v1/projects/bench");
    let path = rt.block_on(async {
        let secret = support::register_prefix(&http, &base, "idle").await;
        support::register_stream(&http, &base, "idle/+/s", &secret).await;
        let r = support::append_lines(&http, &base, "idle/+/s", &secret, 0..100, &"z".repeat(99))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        "idle/+/s".to_owned()
    });
    // Warm up: a few viewers come and go, so that first-use allocations are not counted.
    run_client(addr, &path, 100, Duration::from_secs(1));
    settle();
    let before = rss();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--client",
            &format!("ws://{addr}/api/v1/projects/bench/watch/{path}"),
        ])
        .arg(viewers.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the viewers' process");
    let mut ready = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready.trim(), "ready", "the viewers connected");
    settle();
    let with = rss();
    println!(
        "{viewers} idle viewers: server RSS {:.1} MB -> {:.1} MB, {:.2} KB per viewer",
        before as f64 / 1e6,
        with as f64 / 1e6,
        (with.saturating_sub(before)) as f64 / viewers as f64 / 1024.0
    );
    let _ = child.kill();
    let _ = child.wait();
    std::thread::sleep(Duration::from_secs(2));

    if streams > 0 {
        let before = rss();
        let started = Instant::now();
        rt.block_on(async {
            let secret = support::register_prefix(&http, &base, "many").await;
            let mut pending = futures::stream::iter(0..streams)
                .map(|i| {
                    let (http, base, secret) = (http.clone(), base.clone(), secret.clone());
                    async move {
                        let path = format!("many/+/s{i}");
                        support::register_stream(&http, &base, &path, &secret).await;
                        let r = support::append_lines(&http, &base, &path, &secret, 0..1, "a line")
                            .send()
                            .await
                            .unwrap();
                        assert_eq!(r.status(), 200);
                    }
                })
                .buffer_unordered(32);
            while pending.next().await.is_some() {}
        });
        settle();
        let with = rss();
        let live = rt.block_on(async {
            let text = http
                .get(format!("http://{addr}/metrics"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            text.lines()
                .find_map(|l| l.strip_prefix("logdog_live_stream_actors "))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(f64::NAN)
        });
        println!(
            "{streams} streams with one entry each ({:.1} s; {live} live actors): server RSS {:.1} MB -> {:.1} MB, {:.2} KB per stream",
            started.elapsed().as_secs_f64(),
            before as f64 / 1e6,
            with as f64 / 1e6,
            (with.saturating_sub(before)) as f64 / streams as f64 / 1024.0
        );
    }
    rt.block_on(server.stop());
}

/// Lets the server's allocator and queues settle before RSS is read: jemalloc gives
/// freed pages back to the system over 10 s (its `dirty_decay_ms`).
fn settle() {
    std::thread::sleep(Duration::from_secs(12));
}

/// `viewers` websockets on `path` in this process, held for `hold`.
fn run_client(addr: std::net::SocketAddr, path: &str, viewers: usize, hold: Duration) {
    let url = format!("ws://{addr}/api/v1/projects/bench/watch/{path}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sockets = connect(&url, viewers).await;
        tokio::time::sleep(hold).await;
        drop(sockets);
    });
}

/// `n` viewers of `url`, each having read its first frames (the state and the backlog).
async fn connect(
    url: &str,
    n: usize,
) -> Vec<tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>>
{
    let connecting = futures::stream::iter(0..n)
        .map(|_| async move {
            let (mut ws, _) = tokio_tungstenite::connect_async(url)
                .await
                .expect("connect viewer");
            // The state frame and the backlog's entries.
            let mut seen = 0;
            while seen < 2 {
                match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
                    Ok(Some(Ok(_))) => seen += 1,
                    other => panic!("a viewer's first frames: {other:?}"),
                }
            }
            ws
        })
        .buffer_unordered(64);
    connecting.collect().await
}

/// The child process: `n` idle viewers of `url`; says "ready" once all are connected and
/// then waits to be killed, answering pings.
fn client(url: &str, n: usize) {
    raise_fd_limit(n as u64 + 100);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sockets = connect(url, n).await;
        println!("ready");
        std::io::stdout().flush().unwrap();
        let readers: Vec<_> = sockets
            .into_iter()
            .map(|mut ws| tokio::spawn(async move { while let Some(Ok(_)) = ws.next().await {} }))
            .collect();
        for r in readers {
            let _ = r.await;
        }
    });
}
