//! Archive benchmark: a 1,000,000-line stream (100-byte lines) per archive store is
//! written, read back from intermediate storage, archived by an archivist (timed), and read
//! back from the archive in JSON and in the binary entries form, beside `curl -o /dev/null`
//! of the archive's entries object and `dd … conv=fdatasync` on the scratch disk, all in
//! one run.
//!
//! ```sh
//! cargo run --release --example archive_bench
//! cargo run --release --example archive_bench -- --lines 1000000 --database postgres://postgres@127.0.0.1:5432/test
//! # and an S3 store beside the local directory (credentials and endpoint from AWS_*, as
//! # in the README's "Archives in S3"):
//! cargo run --release --example archive_bench -- --s3 s3://logs/archive
//! # archived by an archivist that reads through binary Gets, as `logdog archivist` does,
//! # instead of the embedded one, which reads the database:
//! cargo run --release --example archive_bench -- --archivist remote
//! ```
//! Prints, per store: archive throughput (payload MB/s, from termination to the archived
//! state), Get throughput (pages of 10,000 entries) from intermediate storage and from the
//! archive in both forms, curl of the entries object (signed URL where the store signs,
//! else the coordinator's archive route), and the bytes a Get from the middle read.

use std::time::{Duration, Instant};

mod support;
use serde_json::{json, Value};

fn main() {
    // RUST_LOG=info shows the archivist's own timings ("archived": written_ms, reported_ms).
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .init();
    }
    let mut lines: u64 = 1_000_000;
    let mut database = None;
    let mut s3 = None;
    let mut remote = false;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--lines" => lines = it.next().and_then(|v| v.parse().ok()).expect("--lines N"),
            "--database" => database = it.next(),
            "--s3" => s3 = Some(it.next().expect("--s3 s3://BUCKET/PATH")),
            "--archivist" => {
                remote = match it.next().as_deref() {
                    Some("embedded") => false,
                    Some("remote") => true,
                    _ => panic!("--archivist embedded|remote"),
                }
            }
            other => panic!(
                "unknown flag {other}; flags: --lines N --database URL --s3 URL --archivist embedded|remote"
            ),
        }
    }
    let db = support::BenchDb::new(database.as_deref(), "archbench");
    let dd = dd(db.dir.path());
    let mut config = db.config();
    // The embedded archivist (what `logdog serve` runs, reading the database directly), or
    // one like `logdog archivist` that reads through binary Gets.
    config.archival.embedded_archivist = !remote;
    config.archival.complete_delay = logdog::config::secs(0.0);
    let project = |name: &str, archive: Option<String>| logdog::config::ProjectConfig {
        name: name.into(),
        public: false,
        prefix_expiration: None,
        archive,
    };
    config.projects = vec![project("local", None)];
    if let Some(url) = &s3 {
        config.projects.push(project("s3", Some(url.clone())));
    }
    let stores: Vec<String> = config.projects.iter().map(|p| p.name.clone()).collect();
    let archivist_config = config.clone();
    let server = logdog::server::Background::start(config).expect("start server");
    let addr = server.addr;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(300)).build().unwrap();
        let root = format!("http://{addr}");
        let path = "arch/+/big";
        let line = "a".repeat(99);
        let mb = lines as f64 * 100.0 / 1e6;
        let worker = remote.then(|| {
            let archive = logdog::server::open_archive(&archivist_config).unwrap();
            let mut a = logdog::server::archivist_config(&archivist_config, root.clone(), archive);
            a.workers = 1;
            logdog::client::archivist::spawn(a)
        });
        println!(
            "{}: {lines} lines ({mb:.0} MB of payload) per store; the {} archivist",
            db.backend(),
            if remote { "remote (binary Gets)" } else { "embedded (database reads)" }
        );
        println!("  dd if=/dev/zero bs=1M count=1000 conv=fdatasync (scratch disk): {dd:.1} MB/s");
        for store in &stores {
            let base = format!("{root}/api/v1/projects/{store}");
            let secret = support::register_prefix(&http, &base, "arch").await;
            support::register_stream(&http, &base, path, &secret).await;
            for first in (0..lines).step_by(5000) {
                let r = support::append_lines(&http, &base, path, &secret, first..(first + 5000).min(lines), &line).send().await.unwrap();
                assert_eq!(r.status(), 200);
            }
            let intermediate = read_all(&http, &base, path, lines, false).await;
            let intermediate_binary = read_all(&http, &base, path, lines, true).await;
            let started = Instant::now();
            let r = http.patch(format!("{base}/streams/{path}")).header("X-Prefix-Secret", &secret).json(&json!({})).send().await.unwrap();
            assert_eq!(r.status(), 200);
            let stream = loop {
                let s: Value = http.get(format!("{base}/streams/{path}")).send().await.unwrap().json().await.unwrap();
                if s["state"]["archival"] == "complete" {
                    break s;
                }
                assert_ne!(s["state"]["archival"], "failed", "{s}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            let archive_secs = started.elapsed().as_secs_f64();
            let json = read_all(&http, &base, path, lines, false).await;
            let binary = read_all(&http, &base, path, lines, true).await;
            let urls: Value = http.get(format!("{base}/archive-urls/{path}")).send().await.unwrap().json().await.unwrap();
            let (curl, size) = curl(urls["stream_url"].as_str().unwrap());
            let before = support::metric(&http, &root, "logdog_archive_read_bytes_total").await as i64;
            let middle: Value = http.get(format!("{base}/logs/{path}?index={}&count=100", lines / 2)).send().await.unwrap().json().await.unwrap();
            assert_eq!(middle["entries"].as_array().unwrap().len(), 100);
            let read = support::metric(&http, &root, "logdog_archive_read_bytes_total").await as i64 - before;
            let url = stream["state"]["archive"]["stream_url"].as_str().unwrap();
            let entries_mb = size as f64 / 1e6;
            println!("  {store} ({}):", url.split("/arch").next().unwrap_or(url));
            println!("    archive: {archive_secs:.2} s, {:.1} MB/s of payload ({:.2}x dd)", mb / archive_secs, mb / archive_secs / dd);
            println!("    Get JSON from intermediate storage:  {intermediate:.2} s, {:.1} MB/s", mb / intermediate);
            println!("    Get binary from intermediate storage: {intermediate_binary:.2} s, {:.1} MB/s (what the archivist reads)", mb / intermediate_binary);
            println!("    Get JSON from the archive:           {json:.2} s, {:.1} MB/s", mb / json);
            println!("    Get binary from the archive:         {binary:.2} s, {:.1} MB/s ({:.1} MB/s of records)", mb / binary, entries_mb / binary);
            println!(
                "    curl -o /dev/null of the entries object ({}, {entries_mb:.0} MB): {curl:.2} s, {:.1} MB/s; binary Get {:.2}x, JSON Get {:.2}x of curl",
                if urls["signed"] == true { "signed URL" } else { "coordinator route" },
                entries_mb / curl,
                curl / binary,
                curl / json
            );
            println!("    Get of 100 entries at index {}: {read} bytes read from the store (of {size})", lines / 2);
            if url.starts_with("s3://") {
                // The store's own rate for the same bytes: the archive's entries object
                // and its data object (the payload), uploaded as two multipart uploads
                // side by side.
                let sizes = [size, lines * 100];
                let secs = s3_upload(s3.as_deref().unwrap(), sizes).await;
                let total = (sizes[0] + sizes[1]) as f64 / 1e6;
                println!(
                    "    the store's own multipart upload of the same {total:.0} MB (object_store, two objects at once): {secs:.2} s, {:.1} MB/s; archival took {:.2}x its time",
                    total / secs,
                    archive_secs / secs
                );
            }
        }
        if let Some(w) = worker {
            w.stop();
        }
    });
    rt.block_on(server.stop());
}

/// Reads the whole stream in pages of 10,000 (JSON, or the binary entries form); seconds.
/// A page's `X-Logdog-Next-Index` (JSON and binary alike) arrives in its headers, so the
/// next page is asked for as soon as they do, and the coordinator reads it while this
/// page's body arrives (as a bulk reader would page).
async fn read_all(http: &reqwest::Client, base: &str, path: &str, lines: u64, binary: bool) -> f64 {
    let page = |index: u64| {
        let mut req = http.get(format!("{base}/logs/{path}?index={index}&count=10000"));
        if binary {
            req = req.header("Accept", "application/x-logdog-entries");
        }
        tokio::spawn(req.send())
    };
    let started = Instant::now();
    let mut n = 0u64;
    let mut pending = page(0);
    loop {
        let r = pending.await.unwrap().unwrap();
        assert_eq!(r.status(), 200);
        let next: u64 = r.headers()["x-logdog-next-index"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        pending = page(next);
        let got = if binary {
            let body = r.bytes().await.unwrap();
            let mut records = 0u64;
            let mut at = 0;
            while at < body.len() {
                let len = u32::from_le_bytes(body[at..at + 4].try_into().unwrap()) as usize;
                at += 4 + len;
                records += 1;
            }
            records
        } else {
            // Received whole, the entries counted by their first key and the header's
            // `next_index` checked against the body's: what the server answers is
            // measured (as curl's figure is), not how fast this client parses JSON.
            let body = r.bytes().await.unwrap();
            let records = memchr::memmem::find_iter(&body, br#"{"stream_index":"#).count() as u64;
            let at = memchr::memmem::rfind(&body, br#""next_index":"#).expect("next_index") + 13;
            let digits = body[at..].iter().take_while(|b| b.is_ascii_digit()).count();
            assert_eq!(&body[at..at + digits], next.to_string().as_bytes());
            records
        };
        if got == 0 {
            pending.abort();
            break;
        }
        n += got;
    }
    assert_eq!(n, lines, "read everything");
    started.elapsed().as_secs_f64()
}

/// `curl -s -o /dev/null URL`: seconds and bytes.
fn curl(url: &str) -> (f64, u64) {
    let started = Instant::now();
    let out = std::process::Command::new("curl")
        .args(["-sSf", "-o", "/dev/null", "-w", "%{size_download}", url])
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        started.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap(),
    )
}

/// Uploads objects of `sizes` bytes to the S3 store at `url` (credentials from AWS_*) at
/// once, each a multipart upload as the archivist makes them; the seconds it took.
async fn s3_upload(url: &str, sizes: [u64; 2]) -> f64 {
    use object_store::ObjectStoreExt as _;
    let store = object_store::aws::AmazonS3Builder::from_env()
        .with_url(url)
        .build()
        .unwrap();
    let store: std::sync::Arc<dyn object_store::ObjectStore> = std::sync::Arc::new(store);
    let started = Instant::now();
    let uploads = sizes.map(|size| {
        let store = store.clone();
        tokio::spawn(async move {
            let key = object_store::path::Path::from(format!(
                "archive-bench-upload/{}",
                rand::random::<u64>()
            ));
            let mut w = object_store::WriteMultipart::new(store.put_multipart(&key).await.unwrap());
            let piece = bytes::Bytes::from(vec![b'a'; 1 << 20]);
            let mut left = size;
            while left > 0 {
                let n = left.min(piece.len() as u64) as usize;
                w.put(piece.slice(..n));
                left -= n as u64;
                w.wait_for_capacity(4).await.unwrap();
            }
            w.finish().await.unwrap();
            key
        })
    });
    let mut keys = Vec::new();
    for u in uploads {
        keys.push(u.await.unwrap());
    }
    let secs = started.elapsed().as_secs_f64();
    for key in keys {
        store.delete(&key).await.unwrap();
    }
    secs
}

/// `dd if=/dev/zero of=DIR/dd bs=1M count=1000 conv=fdatasync`: MB/s.
fn dd(dir: &std::path::Path) -> f64 {
    let file = dir.join("dd");
    let started = Instant::now();
    let status = std::process::Command::new("dd")
        .args([
            "if=/dev/zero",
            &format!("of={}", file.display()),
            "bs=1M",
            "count=1000",
            "conv=fdatasync",
        ])
        .stderr(std::process::Stdio::null())
        .status()
        .expect("dd");
    assert!(status.success());
    let secs = started.elapsed().as_secs_f64();
    std::fs::remove_file(file).unwrap();
    1000.0 * 1024.0 * 1024.0 / 1e6 / secs
}
