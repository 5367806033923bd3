//! Archive benchmark: a 1,000,000-line stream (100-byte lines) is written, read back from
//! intermediate storage, archived by an archivist (timed), and read back from the archive.
//!
//! ```sh
//! cargo run --release --example archive_bench
//! cargo run --release --example archive_bench -- --lines 1000000 --database postgres://postgres@127.0.0.1:5432/test
//! ```
//! Prints archive throughput (payload MB/s, from the lease to the archived state) and Get
//! throughput (pages of 10,000 entries) from each store, measured in the same run.

use std::time::{Duration, Instant};

mod support;
use serde_json::{json, Value};

fn main() {
    let mut lines: u64 = 1_000_000;
    let mut database = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--lines" => lines = it.next().and_then(|v| v.parse().ok()).expect("--lines N"),
            "--database" => database = it.next(),
            other => panic!("unknown flag {other}; flags: --lines N --database URL"),
        }
    }
    let db = support::BenchDb::new(database.as_deref(), "archbench");
    let mut config = db.config();
    config.archival.embedded_archivist = false;
    config.archival.complete_delay = logdog::config::secs(0.0);
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
        let base = format!("http://{addr}/api/v1/projects/bench");
        let secret = support::register_prefix(&http, &base, "arch").await;
        let path = "arch/+/big";
        support::register_stream(&http, &base, path, &secret).await;
        let line = "a".repeat(99);
        for first in (0..lines).step_by(5000) {
            let r = support::append_lines(&http, &base, path, &secret, first..(first + 5000).min(lines), &line).send().await.unwrap();
            assert_eq!(r.status(), 200);
        }
        http.patch(format!("{base}/streams/{path}")).header("X-Prefix-Secret", &secret).json(&json!({})).send().await.unwrap();
        let mb = lines as f64 * 100.0 / 1e6;

        let read_all = |label: &'static str| {
            let (http, base) = (http.clone(), base.clone());
            async move {
                let started = Instant::now();
                let (mut index, mut n) = (0u64, 0u64);
                loop {
                    let v: Value = http.get(format!("{base}/logs/{path}?index={index}&count=10000")).send().await.unwrap().json().await.unwrap();
                    let got = v["entries"].as_array().unwrap().len() as u64;
                    if got == 0 {
                        break;
                    }
                    n += got;
                    index = v["next_index"].as_u64().unwrap();
                }
                assert_eq!(n, lines, "{label}: read everything");
                started.elapsed().as_secs_f64()
            }
        };
        let intermediate = read_all("intermediate").await;

        let store = logdog::server::open_archive(&archivist_config).unwrap();
        let mut a = logdog::server::archivist_config(&archivist_config, format!("http://{addr}"), store);
        a.workers = 1;
        let started = Instant::now();
        let worker = logdog::client::archivist::spawn(a);
        loop {
            let s: Value = http.get(format!("{base}/streams/{path}")).send().await.unwrap().json().await.unwrap();
            if s["state"]["archival"] == "complete" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let archive_secs = started.elapsed().as_secs_f64();
        worker.stop();
        let archived = read_all("archive").await;
        let backend = db.backend();
        println!("{backend}: {lines} lines ({mb:.0} MB of payload)");
        println!("  archive: {archive_secs:.2} s, {:.1} MB/s", mb / archive_secs);
        println!("  Get (10,000 per page) from intermediate storage: {intermediate:.2} s, {:.1} MB/s", mb / intermediate);
        println!("  Get (10,000 per page) from the archive:          {archived:.2} s, {:.1} MB/s ({:.2}x)", mb / archived, intermediate / archived);
    });
    rt.block_on(server.stop());
}
