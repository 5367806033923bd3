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
//! Isolation: a writer appends `--rate` lines/s (0: 100-line batches as fast as they are
//! acknowledged) for `--seconds`, alone, then watched by `--isolation` viewers of which `--stalled-percent`
//! stop reading after their first frames; prints both rates, the server's RSS at most,
//! and what the healthy viewers received (each checks every index in order).

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

/// This process's resident memory backed by files and shared memory (SQLite's memory-mapped
/// database file and its `-shm` index), bytes: part of `rss`, not the heap.
fn rss_file() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("RssFile:") + field("RssShmem:")) * 1024
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
    if args.first().map(String::as_str) == Some("--mixed-client") {
        return mixed_client(
            &args[1],
            args[2].parse().expect("healthy"),
            args[3].parse().expect("stalled"),
        );
    }
    let (mut viewers, mut streams, mut database) = (10_000usize, 10_000usize, None);
    let (mut isolation, mut stalled_percent, mut seconds, mut rate) =
        (1_000usize, 10usize, 10u64, 1_000u64);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--viewers" => viewers = value().parse().expect("--viewers N"),
            "--streams" => streams = value().parse().expect("--streams N"),
            "--database" => database = Some(value().clone()),
            "--isolation" => isolation = value().parse().expect("--isolation VIEWERS"),
            "--stalled-percent" => stalled_percent = value().parse().expect("--stalled-percent P"),
            "--seconds" => seconds = value().parse().expect("--seconds N"),
            "--rate" => rate = value().parse().expect("--rate LINES_PER_SECOND (0: as fast as acknowledged)"),
            other => panic!("unknown flag {other}; flags: --viewers N --streams N --isolation VIEWERS --stalled-percent P --seconds N --rate N --database URL"),
        }
    }
    raise_fd_limit(viewers.max(isolation) as u64 + 1000);
    let db = support::BenchDb::new(database.as_deref(), "memory");
    let mut config = db.config();
    config.limits.max_viewers_per_stream = viewers.max(isolation).max(1);
    config.limits.max_viewers = viewers.max(isolation).max(1);
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
    if viewers > 0 {
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
    }

    if streams > 0 {
        let before = rss();
        let file_before = rss_file();
        // SAFETY: reads a counter SQLite keeps; callable from any thread.
        let sqlite_before = unsafe { libsqlite3_sys::sqlite3_memory_used() }.max(0) as u64;
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
        let file_with = rss_file();
        // SAFETY: as above.
        let sqlite_with = unsafe { libsqlite3_sys::sqlite3_memory_used() }.max(0) as u64;
        let live = rt.block_on(support::metric(
            &http,
            &format!("http://{addr}"),
            "logdog_live_stream_actors",
        ));
        println!(
            "{streams} streams with one entry each ({:.1} s; {live} live actors): server RSS {:.1} MB -> {:.1} MB, {:.2} KB per stream, of which {:.2} KB file-backed (SQLite's mapped database and -shm) and {:.2} KB SQLite's heap (its page caches)",
            started.elapsed().as_secs_f64(),
            before as f64 / 1e6,
            with as f64 / 1e6,
            (with.saturating_sub(before)) as f64 / streams as f64 / 1024.0,
            (file_with.saturating_sub(file_before)) as f64 / streams as f64 / 1024.0,
            (sqlite_with.saturating_sub(sqlite_before)) as f64 / streams as f64 / 1024.0
        );
    }
    if isolation > 0 {
        let stalled = isolation * stalled_percent / 100;
        let healthy = isolation - stalled;
        let alone = rt.block_on(write_for(
            &http,
            &base,
            "alone",
            Duration::from_secs(seconds),
            rate,
            |_| {},
        ));
        let before = rss();
        let (secret, path) = rt.block_on(async {
            let secret = support::register_prefix(&http, &base, "watched").await;
            support::register_stream(&http, &base, "watched/+/s", &secret).await;
            (secret, "watched/+/s".to_owned())
        });
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--mixed-client",
                &format!("ws://{addr}/api/v1/projects/bench/watch/{path}"),
            ])
            .args([healthy.to_string(), stalled.to_string()])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("the viewers' process");
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut ready = String::new();
        out.read_line(&mut ready).unwrap();
        assert_eq!(ready.trim(), "ready", "the viewers connected");
        let mut peak = rss();
        let watched = rt.block_on(write_to(
            &http,
            &base,
            &path,
            &secret,
            Duration::from_secs(seconds),
            rate,
            |_| {
                peak = peak.max(rss());
            },
        ));
        let mut report = String::new();
        out.read_line(&mut report).unwrap();
        let _ = child.kill();
        let _ = child.wait();
        println!(
            "writer alone: {:.0} lines/s (append acknowledged in p50 {:.2} ms, p99 {:.2} ms); with {healthy} viewers reading and {stalled} that stopped reading: {:.0} lines/s ({:+.1} %; p50 {:.2} ms, p99 {:.2} ms); server RSS {:.1} MB before, {:.1} MB at most; {}",
            alone.rate,
            alone.ack_p50_ms,
            alone.ack_p99_ms,
            watched.rate,
            (watched.rate / alone.rate - 1.0) * 100.0,
            watched.ack_p50_ms,
            watched.ack_p99_ms,
            before as f64 / 1e6,
            peak as f64 / 1e6,
            report.trim()
        );
    }
    rt.block_on(server.stop());
}

/// Text appends to a new stream under `prefix` for `run`: `rate` lines/s in batches
/// every 10 ms, or (`rate` 0) 100-line batches one after another as fast as they are
/// acknowledged; lines per second acknowledged.
async fn write_for(
    http: &reqwest::Client,
    base: &str,
    prefix: &str,
    run: Duration,
    rate: u64,
    each: impl FnMut(u64),
) -> Writer {
    let secret = support::register_prefix(http, base, prefix).await;
    let path = format!("{prefix}/+/s");
    support::register_stream(http, base, &path, &secret).await;
    write_to(http, base, &path, &secret, run, rate, each).await
}

/// The appends of `write_for` to `path`, then its termination; `each` is called after
/// every batch with the lines written so far.
async fn write_to(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    secret: &str,
    run: Duration,
    rate: u64,
    mut each: impl FnMut(u64),
) -> Writer {
    let per_batch = if rate == 0 { 100 } else { (rate / 100).max(1) };
    let body = bytes::Bytes::from(format!("{}\n", "z".repeat(99)).repeat(per_batch as usize));
    // An absolute schedule: a batch that is acknowledged late is followed at once by the
    // ones that fell due meanwhile, so the writer offers `rate` over the run, and what it
    // achieves shows whether the server kept up.
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut lines = 0u64;
    let mut acks = Vec::new();
    while started.elapsed() < run {
        if rate > 0 {
            tick.tick().await;
        }
        let sent = Instant::now();
        let r = support::append_text(http, base, path, secret, body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        acks.push(sent.elapsed().as_secs_f64() * 1e3);
        lines += per_batch;
        each(lines);
    }
    let rate = lines as f64 / started.elapsed().as_secs_f64();
    acks.sort_by(f64::total_cmp);
    let r = http
        .patch(format!("{base}/streams/{path}"))
        .header("X-Prefix-Secret", secret)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    Writer {
        rate,
        ack_p50_ms: support::percentile(&acks, 0.5),
        ack_p99_ms: support::percentile(&acks, 0.99),
    }
}

/// What a writer of `write_to` achieved: lines/s acknowledged, and each append's time from
/// its send to its acknowledgement.
struct Writer {
    rate: f64,
    ack_p50_ms: f64,
    ack_p99_ms: f64,
}

/// The child process of the isolation run: `healthy` viewers that read everything, each
/// checking it gets every index once and in order up to the end frame, and `stalled`
/// ones that read their first frames and then nothing. Prints "ready", then one line on
/// what the healthy viewers received.
fn mixed_client(url: &str, healthy: usize, stalled: usize) {
    raise_fd_limit((healthy + stalled) as u64 + 100);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let t = Instant::now();
        // The stream is empty yet: the state frame only.
        let held = connect(url, stalled, 1).await;
        let sockets = connect(url, healthy, 1).await;
        eprintln!(
            "{} viewers connected in {:.1} s",
            stalled + healthy,
            t.elapsed().as_secs_f64()
        );
        println!("ready");
        std::io::stdout().flush().unwrap();
        let readers: Vec<_> = sockets
            .into_iter()
            .map(|mut ws| {
                tokio::spawn(async move {
                    let (mut next, mut indices) = (0u64, Vec::new());
                    let mut why = "the connection ended".to_owned();
                    loop {
                        let t = match ws.next().await {
                            Ok(Some(support::ws::Frame::Text(t))) => t,
                            Ok(Some(support::ws::Frame::Close(c))) => {
                                why = format!("closed: {c:?}");
                                break;
                            }
                            Ok(None) => break,
                            Err(e) => {
                                why = format!("error: {e}");
                                break;
                            }
                        };
                        indices.clear();
                        let end = support::ws::frame_indices(&t, &mut indices);
                        for &index in &indices {
                            assert_eq!(index, next, "a healthy viewer's entries out of order");
                            next += 1;
                        }
                        if end {
                            return (next, None);
                        }
                    }
                    (next, Some(why))
                })
            })
            .collect();
        let mut counts = Vec::new();
        let mut ended = 0;
        let mut failures = std::collections::BTreeMap::<String, usize>::new();
        for r in readers {
            let (n, why) = r.await.unwrap();
            counts.push(n);
            match why {
                None => ended += 1,
                Some(why) => *failures.entry(why).or_default() += 1,
            }
        }
        for (why, n) in &failures {
            eprintln!("{n} healthy viewers stopped early: {why}");
        }
        counts.sort();
        println!(
            "{ended} of {healthy} healthy viewers got the end frame, each {}..{} entries",
            counts.first().unwrap_or(&0),
            counts.last().unwrap_or(&0)
        );
        std::io::stdout().flush().unwrap();
        drop(held);
    });
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
        let sockets = connect(&url, viewers, 2).await;
        tokio::time::sleep(hold).await;
        drop(sockets);
    });
}

/// `n` viewers of `url`, each having read its first `frames` frames (the state, then the
/// backlog's entries when there are any).
async fn connect(url: &str, n: usize, frames: usize) -> Vec<support::ws::Viewer> {
    let connecting = futures::stream::iter(0..n)
        .map(|_| async move {
            let mut ws = support::ws::Viewer::connect(url)
                .await
                .expect("connect viewer");
            let mut seen = 0;
            while seen < frames {
                match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
                    Ok(Ok(Some(support::ws::Frame::Text(_)))) => seen += 1,
                    Ok(Ok(Some(support::ws::Frame::Close(c)))) => {
                        panic!("a viewer closed during its first frames: {c:?}")
                    }
                    Ok(other) => panic!("a viewer's first frames: {:?}", other.err()),
                    Err(_) => panic!("a viewer's first frames: none within 30 s"),
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
        let sockets = connect(url, n, 2).await;
        println!("ready");
        std::io::stdout().flush().unwrap();
        let readers: Vec<_> = sockets
            .into_iter()
            .map(|mut ws| tokio::spawn(async move { while let Ok(Some(_)) = ws.next().await {} }))
            .collect();
        for r in readers {
            let _ = r.await;
        }
    });
}
