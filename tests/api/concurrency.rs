//! Concurrency: many appenders on one stream, appenders on many streams, racing
//! registrations. Nothing lost, nothing duplicated, next_index exact.

use serde_json::json;

use crate::both;
use crate::common::*;

async fn concurrent_appenders_on_one_stream(db: TestDb) {
    let server = TestServer::start(db.config());
    let c = server.client("p");
    let secret = c.text_stream("c", "one").await;
    const WRITERS: u64 = 32;
    const PER_WRITER: u64 = 50;
    // Writer w owns indices w, w+32, w+64, …; each sends them one request at a time,
    // and re-sends its first few (a retry) to exercise duplicates under contention.
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (c, secret) = (c.clone(), secret.clone());
            tokio::spawn(async move {
                let mut accepted = 0;
                for k in 0..PER_WRITER {
                    let i = w + k * WRITERS;
                    let e = json!([{"stream_index": i, "sequence": i, "text": {"lines": [format!("w{w} k{k}")]}}]);
                    let a = c.append("c/+/one", &secret, e).await;
                    accepted += a.expect(200)["accepted"].as_u64().unwrap();
                }
                let retry = json!([{"stream_index": w, "sequence": w, "text": {"lines": ["retry"]}}]);
                assert_eq!(c.append("c/+/one", &secret, retry).await.expect(200)["duplicates"], 1);
                accepted
            })
        })
        .collect();
    let mut accepted = 0;
    for t in tasks {
        accepted += t.await.unwrap();
    }
    let total = WRITERS * PER_WRITER;
    assert_eq!(accepted, total);
    assert_eq!(
        c.load("c/+/one").await.expect(200)["state"]["next_index"],
        total
    );
    assert_eq!(
        stored_indices(&db.url, "p", "c/+/one"),
        (0..total).collect::<Vec<_>>()
    );
    server.stop().await;
}
both!(concurrent_appenders_on_one_stream);

async fn concurrent_appenders_on_many_streams(db: TestDb) {
    let server = TestServer::start(db.config());
    let c = server.client("p");
    let secret = c.prefix("many").await;
    const STREAMS: usize = 1000;
    const WORKERS: usize = 32;
    let tasks: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (c, secret) = (c.clone(), secret.clone());
            tokio::spawn(async move {
                for s in (w..STREAMS).step_by(WORKERS) {
                    let path = format!("many/+/s{s}");
                    c.register(&path, &secret, json!({})).await.expect(201);
                    c.append(&path, &secret, lines(0, 3)).await.expect(200);
                    c.append(&path, &secret, lines(2, 5)).await.expect(200);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let store = logdog_schema::Store::open(&db.url, 1).unwrap();
    for s in 0..STREAMS {
        let path = format!("many/+/s{s}");
        let row = store
            .read(|conn| {
                logdog_schema::store::get_stream(conn, "p", &logdog_schema::names::stream_id(&path))
            })
            .unwrap()
            .unwrap();
        assert_eq!(row.next_index, 5, "{path}");
        assert_eq!(
            stored_indices(&db.url, "p", &path),
            [0, 1, 2, 3, 4],
            "{path}"
        );
    }
    server.stop().await;
}
both!(concurrent_appenders_on_many_streams);

async fn concurrent_registrations_create_one_stream(db: TestDb) {
    let server = TestServer::start(db.config());
    let c = server.client("p");
    let secret = c.prefix("reg").await;
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (c, secret) = (c.clone(), secret.clone());
            tokio::spawn(async move {
                c.register("reg/+/same", &secret, json!({"tags": {"k": "v"}}))
                    .await
            })
        })
        .collect();
    let mut statuses = Vec::new();
    let mut ids = Vec::new();
    for t in tasks {
        let a = t.await.unwrap();
        statuses.push(a.status.as_u16());
        ids.push(a.body["id"].as_str().unwrap().to_owned());
    }
    statuses.sort();
    assert_eq!(statuses[0], 200);
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        15,
        "{statuses:?}"
    );
    assert!(ids.iter().all(|i| *i == ids[0]));
    let store = logdog_schema::Store::open(&db.url, 1).unwrap();
    let tags = store
        .read(|conn| logdog_schema::store::stream_tags(conn, "p", &ids[0]))
        .unwrap();
    assert_eq!(tags.len(), 1);
    server.stop().await;
}
both!(concurrent_registrations_create_one_stream);

async fn one_entry_appends_are_compacted(db: TestDb) {
    let server = TestServer::start(db.config());
    let c = server.client("p");
    let secret = c.text_stream("cmp", "s").await;
    for i in 0..100 {
        c.append("cmp/+/s", &secret, lines(i, i + 1))
            .await
            .expect(200);
    }
    // Compaction runs in the writer after the commits it merges; poll briefly.
    let store = logdog_schema::Store::open(&db.url, 1).unwrap();
    let id = logdog_schema::names::stream_id("cmp/+/s");
    let mut rows = usize::MAX;
    for _ in 0..50 {
        rows = store
            .read(|conn| logdog_schema::store::chunk_spans(conn, "p", &id, 0))
            .unwrap()
            .len();
        if rows <= 40 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        rows <= 40,
        "100 single-entry appends left {rows} chunk rows"
    );
    assert_eq!(
        stored_indices(&db.url, "p", "cmp/+/s"),
        (0..100).collect::<Vec<_>>()
    );
    server.stop().await;
}
both!(one_entry_appends_are_compacted);
