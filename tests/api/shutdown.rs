//! A graceful stop (SIGTERM to a real `logdog serve`) answers everyone: each request the
//! server took is completed or answered 503 with Retry-After, a long-polling archivist
//! does not hold the stop up, and a storm of websocket upgrades is answered at once.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::both;
use crate::common::*;

/// `logdog serve` over `db` with its archive in the database's directory.
fn serve(db: &TestDb, port: u16, embedded_archivist: bool) -> std::process::Command {
    let mut c = serve_command(&db.url, port);
    c.env(
        "LOGDOG_ARCHIVE",
        db.dir.path().join("archive").display().to_string(),
    )
    .env(
        "LOGDOG_ARCHIVAL_EMBEDDED_ARCHIVIST",
        embedded_archivist.to_string(),
    )
    .env("LOGDOG_ARCHIVAL_COMPLETE_DELAY", "0.1");
    c
}

/// What one request of a writer got.
#[derive(Debug)]
enum Answer {
    Stored(u64),
    Refused(u64),
}

/// SIGTERM under load: 32 writers append batches of 50 (each batch its own index range)
/// over their own connections as fast as they are answered, backing off as Retry-After
/// says. Every request gets an answer — 200 and stored, or 503 with Retry-After and not
/// stored — until connections are refused; the process exits cleanly within 5 s.
async fn every_request_is_answered(db: TestDb) {
    const WRITERS: u64 = 32;
    const BATCH: u64 = 50;
    let port = free_port();
    let mut node = Node::spawn(serve(&db, port, false), None).await;
    let c = Client::new(&node.base(), "p");
    let secret = c.text_stream("sd", "s").await;
    let url = c.url("logs/sd/+/s");
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (url, secret) = (url.clone(), secret.clone());
        writers.push(tokio::spawn(async move {
            // One connection per writer (kept alive while the server allows it).
            let http = reqwest::Client::new();
            let mut answers = Vec::new();
            for k in 0.. {
                let first = (w * 1_000_000 + k) * BATCH;
                let entries: Vec<_> = (first..first + BATCH)
                    .map(|i| json!({"stream_index": i, "sequence": i, "text": {"lines": ["x"]}}))
                    .collect();
                let r = http
                    .post(&url)
                    .header("x-prefix-secret", &secret)
                    .json(&json!({ "entries": entries }))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 200 => answers.push(Answer::Stored(first)),
                    Ok(r) if r.status() == 503 => {
                        let wait: u64 = r
                            .headers()
                            .get("retry-after")
                            .expect("503 with Retry-After")
                            .to_str()
                            .unwrap()
                            .parse()
                            .unwrap();
                        let body: serde_json::Value = r.json().await.unwrap();
                        assert_eq!(body["error"]["code"], "unavailable", "{body}");
                        answers.push(Answer::Refused(first));
                        tokio::time::sleep(Duration::from_secs(wait)).await;
                    }
                    Ok(r) => panic!("writer {w}: {} {:?}", r.status(), r.text().await),
                    // The server is gone: it took nothing more.
                    Err(e) if e.is_connect() => break,
                    Err(e) => panic!("writer {w}: a request got no answer: {e:?}"),
                }
            }
            answers
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    node.signal(libc::SIGTERM);
    let stopping = Instant::now();
    let status = node.wait().await;
    let took = stopping.elapsed();
    assert!(status.success(), "exit {status:?}");
    assert!(took < Duration::from_secs(5), "the stop took {took:?}");
    let (mut stored, mut refused) = (Vec::new(), Vec::new());
    for w in writers {
        for a in w.await.unwrap() {
            match a {
                Answer::Stored(first) => stored.push(first),
                Answer::Refused(first) => refused.push(first),
            }
        }
    }
    assert!(!stored.is_empty(), "no append was acknowledged");
    assert!(
        !refused.is_empty(),
        "no request arrived during the stop (the test did not test it)"
    );
    let indices = stored_indices(&db.url, "p", "sd/+/s");
    let present = |first: u64| indices.binary_search(&first).is_ok();
    for &first in &stored {
        assert!(
            (first..first + BATCH).all(|i| indices.binary_search(&i).is_ok()),
            "acknowledged batch at {first} lost"
        );
    }
    for &first in &refused {
        assert!(
            !present(first),
            "the batch at {first} answered 503 was stored"
        );
    }
    assert_eq!(indices.len() as u64, stored.len() as u64 * BATCH);
    eprintln!(
        "SIGTERM under load: {} batches stored, {} answered 503, exit after {took:?}",
        stored.len(),
        refused.len()
    );
}
both!(every_request_is_answered);

/// SIGTERM while the embedded archivist long-polls for work (it has just archived a
/// stream and asked again): the process exits within 2 s, five times over.
async fn the_archivist_does_not_hold_up_a_stop(db: TestDb) {
    for round in 0..5 {
        let port = free_port();
        let mut node = Node::spawn(serve(&db, port, true), None).await;
        let c = Client::new(&node.base(), "p");
        let prefix = format!("ar{round}");
        let secret = c.text_stream(&prefix, "s").await;
        let path = format!("{prefix}/+/s");
        c.append(&path, &secret, lines(0, 10)).await.expect(200);
        c.terminate(&path, &secret, json!({})).await.expect(200);
        let deadline = Instant::now() + Duration::from_secs(30);
        while c.load(&path).await.expect(200)["state"]["archival"] != "complete" {
            assert!(Instant::now() < deadline, "round {round}: not archived");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Right after its completion, the archivist asks for the next task.
        tokio::time::sleep(Duration::from_millis(round * 30)).await;
        node.signal(libc::SIGTERM);
        let stopping = Instant::now();
        let status = node.wait().await;
        let took = stopping.elapsed();
        assert!(status.success(), "round {round}: exit {status:?}");
        assert!(
            took < Duration::from_secs(2),
            "round {round}: the stop took {took:?}"
        );
    }
}
both!(the_archivist_does_not_hold_up_a_stop);

/// A reconnect storm: 500 viewers of a stream whose server restarts all reconnect at
/// once to the new server. Each upgrade is answered within a second — 101 (and the
/// viewer then gets every entry from where it was), or 429/503 with Retry-After — never
/// left to time out.
async fn a_reconnect_storm_is_answered(db: TestDb) {
    use futures::StreamExt as _;
    // LOGDOG_TEST_STORM=N tries a bigger storm.
    let n: usize = std::env::var("LOGDOG_TEST_STORM").map_or(500, |v| v.parse().unwrap());
    let port = free_port();
    let mut node = Node::spawn(serve(&db, port, false), None).await;
    let c = Client::new(&node.base(), "p");
    // 500 viewers per stream (LOGDOG_TEST_STORM spreads a bigger storm over more).
    let streams = n.div_ceil(500);
    let secret = c.prefix("storm").await;
    for k in 0..streams {
        let path = format!("storm/+/s{k}");
        c.register(&path, &secret, json!({})).await.expect(201);
        c.append(&path, &secret, lines(0, 100)).await.expect(200);
    }
    node.signal(libc::SIGTERM);
    assert!(node.wait().await.success());
    let node = Node::spawn(serve(&db, port, false), None).await;
    let base = format!(
        "ws://127.0.0.1:{}/api/v1/projects/p/watch/storm/+",
        node.port
    );
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(n));
    let mut viewers = Vec::new();
    for i in 0..n {
        let (url, start) = (format!("{base}/s{}?from=50", i % streams), start.clone());
        viewers.push(tokio::spawn(async move {
            start.wait().await;
            let asked = Instant::now();
            match tokio_tungstenite::connect_async(&url).await {
                Ok((mut ws, _)) => {
                    let answered = asked.elapsed();
                    // Upgraded: the backlog from 50 arrives (the first frame is the state).
                    let mut indices = Vec::new();
                    while indices.len() < 50 {
                        let Some(Ok(m)) = ws.next().await else {
                            panic!("closed after {indices:?}");
                        };
                        if let tokio_tungstenite::tungstenite::Message::Text(t) = m {
                            let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                            if v["type"] == "entries" {
                                indices.extend(
                                    v["entries"]
                                        .as_array()
                                        .unwrap()
                                        .iter()
                                        .map(|e| e["stream_index"].as_u64().unwrap()),
                                );
                            }
                        }
                    }
                    assert_eq!(indices, (50..100).collect::<Vec<u64>>());
                    (101, answered, Some(ws))
                }
                Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
                    let status = r.status().as_u16();
                    assert!(
                        matches!(status, 429 | 503) && r.headers().contains_key("retry-after"),
                        "{status} {:?}",
                        r.headers()
                    );
                    (status, asked.elapsed(), None)
                }
                Err(e) => panic!("no answer: {e}"),
            }
        }));
    }
    let mut times = Vec::new();
    let mut open = Vec::new();
    let mut refused = 0;
    for v in viewers {
        let (_, answered, ws) = v.await.unwrap();
        times.push(answered);
        match ws {
            Some(ws) => open.push(ws),
            None => refused += 1, // 429 or 503, with Retry-After
        }
    }
    times.sort();
    eprintln!(
        "reconnect storm of {n}: {} upgraded, {refused} told to retry; answered in p50 {:?}, p99 {:?}, max {:?}",
        open.len(),
        times[n / 2],
        times[n * 99 / 100],
        times[n - 1]
    );
    assert!(
        times[n - 1] < Duration::from_secs(1),
        "slowest upgrade answered after {:?}",
        times[n - 1]
    );
    // Within the viewer limits, every one of them is let in.
    if n <= 10_000 {
        assert_eq!(open.len(), n);
    }
}
both!(a_reconnect_storm_is_answered);
