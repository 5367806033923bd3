//! End to end archival with the real Archivist worker (embedded, or standalone over
//! HTTP): archived streams read exactly as before, partial and pessimistic archives, an
//! archivist that dies mid-task, a destination that fails.

use std::time::Duration;

use futures::StreamExt as _;
use reqwest::Method;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::both;
use crate::common::*;

pub(crate) fn archiving(db: &TestDb, embedded: bool) -> logdog::config::Config {
    let mut config = db.config();
    config.archival.embedded_archivist = embedded;
    config.archival.complete_delay = logdog::config::secs(0.1);
    config.archival.incomplete_delay = logdog::config::secs(0.3);
    config.archival.pessimistic_delay = logdog::config::secs(0.5);
    config.archival.retry_delay = logdog::config::secs(0.1);
    config.archival.max_attempts = 3;
    config.archival.index_entries = 100;
    config
}

/// Waits until the stream's archival is one of `states`; returns the stream.
pub(crate) async fn archived(c: &Client, path: &str, states: &[&str]) -> Value {
    for _ in 0..600 {
        let s = c.load(path).await.expect(200).clone();
        if states.iter().any(|st| s["state"]["archival"] == *st) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{path} never reached {states:?}: {}",
        c.load(path).await.body
    );
}

async fn text(c: &Client, url: String) -> (String, Vec<u8>) {
    let res = c.http.get(url).send().await.unwrap();
    let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
    (ct, res.bytes().await.unwrap().to_vec())
}

/// Get's binary form of `url`: the entries, as JSON values, and the next index.
async fn binary_page(c: &Client, url: String) -> (Vec<Value>, u64) {
    let mut r = c
        .http
        .get(url)
        .header("Accept", "application/x-logdog-entries");
    if let Some(t) = &c.token {
        r = r.bearer_auth(t);
    }
    let res = r.send().await.unwrap();
    assert_eq!(res.status(), 200);
    let headers = res.headers().clone();
    let body = res.bytes().await.unwrap();
    let page = logdog::client::api::EntriesPage::read(&headers, &body).unwrap();
    let entries = page
        .entries
        .iter()
        .map(|e| serde_json::to_value(logdog_schema::wire::EntryJson(e)).unwrap())
        .collect();
    (entries, page.next_index)
}

/// Everything a reader can see of a stream, from every read route. Each Get is asked in
/// JSON and in the binary form, which must hold the same entries.
async fn every_read(server: &TestServer, c: &Client, path: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for q in [
        "?count=700",
        "?index=650&count=700",
        "?index=3&count=2&state=false",
        "?non_contiguous=true&count=5000",
        "?bytes=100",
        "?index=5&bytes=1",
        "?index=40&bytes=5000",
        "?index=1290&bytes=5000",
    ] {
        let mut a = c
            .raw(
                Method::GET,
                &c.url(&format!("logs/{path}{q}")),
                None,
                None,
                vec![],
            )
            .await
            .expect(200)
            .clone();
        a.as_object_mut().unwrap().remove("state");
        if !q.contains("state") {
            let (entries, next) = binary_page(c, c.url(&format!("logs/{path}{q}"))).await;
            assert_eq!(&Value::Array(entries), &a["entries"], "binary {path}{q}");
            assert_eq!(next, a["next_index"], "binary {path}{q}");
        }
        out.push(a);
    }
    out.push(
        c.raw(
            Method::GET,
            &c.url(&format!("tail/{path}?count=7")),
            None,
            None,
            vec![],
        )
        .await
        .expect(200)
        .clone(),
    );
    let (ct, body) = text(c, c.url(&format!("logs/{path}?format=text"))).await;
    out.push(json!({"ct": ct, "text": String::from_utf8_lossy(&body)}));
    let (ct, body) = text(
        c,
        format!(
            "{}/logs/p/{path}?format=raw&index=10&count=5",
            server.base()
        ),
    )
    .await;
    out.push(json!({"ct": ct, "raw": body}));
    out
}

/// A websocket replay: (indices, last frame).
async fn replay(server: &TestServer, path: &str) -> (Vec<u64>, Value) {
    let url = format!("ws://{}/api/v1/projects/p/watch/{path}", server.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let (mut idx, mut last) = (Vec::new(), Value::Null);
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(20), ws.next()).await {
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(&t).unwrap();
            idx.extend(
                v["entries"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| e["stream_index"].as_u64().unwrap()),
            );
            last = v;
        }
    }
    (idx, last)
}

/// A 1,300-entry stream (two lines an entry) read through every route before and after
/// archival (which `server` must run about a second after termination): the same
/// answers, the same replay, the same followed text. Returns the archived stream.
pub(crate) async fn reads_the_same_after_archival(
    server: &TestServer,
    db: &TestDb,
    prefix: &str,
) -> Value {
    let c = server.client("p");
    let path = format!("{prefix}/+/s");
    let path = path.as_str();
    let secret = c.text_stream(prefix, "s").await;
    for b in 0..10u64 {
        let e: Vec<Value> = (b * 130..(b + 1) * 130)
            .map(|i| json!({"stream_index": i, "time_offset": i as f64 / 1000.0, "text": {"lines": [format!("line {i}"), {"value": "cont", "delimiter": ""}]}}))
            .collect();
        c.append(path, &secret, json!(e)).await.expect(200);
    }
    c.terminate(path, &secret, json!({})).await.expect(200);
    let before = every_read(server, &c, path).await;
    let s = archived(&c, path, &["complete"]).await;
    assert_eq!(s["state"]["status"], "archived");
    assert_eq!(s["state"]["archive"]["log_entry_count"], 1300);
    assert_eq!(s["state"]["next_sequence"], 2600, "two lines an entry");
    assert!(
        stored_entries(&db.url, "p", path).is_empty(),
        "intermediate data released"
    );
    // The stored row keeps the line count with no chunks left (Query reads rows).
    let q = c
        .raw(
            Method::GET,
            &c.url(&format!("streams?prefix={prefix}")),
            None,
            None,
            vec![],
        )
        .await;
    assert_eq!(q.expect(200)["streams"][0]["state"]["next_sequence"], 2600);
    let after = every_read(server, &c, path).await;
    assert_eq!(
        after, before,
        "every read route returns the same from the archive"
    );
    let (idx, last) = replay(server, path).await;
    assert_eq!(idx, (0..1300).collect::<Vec<_>>());
    assert_eq!(last, json!({"type": "end", "terminal_index": 1299}));
    let follow = c
        .text(format!("{}/logs/p/{path}?follow=true", server.base()))
        .await;
    assert_eq!(
        follow,
        before
            .iter()
            .find_map(|r| r["text"].as_str())
            .expect("the text form"),
        "follow returns the same text"
    );
    c.append(path, &secret, lines(1300, 1301))
        .await
        .expect_error(409, "conflict");
    s
}

async fn archived_streams_read_exactly_as_before(db: TestDb) {
    let mut config = archiving(&db, true);
    config.archival.complete_delay = logdog::config::secs(1.0);
    let server = TestServer::start(config);
    let s = reads_the_same_after_archival(&server, &db, "arc").await;
    let stream_file = s["state"]["archive"]["stream_url"]
        .as_str()
        .unwrap()
        .strip_prefix("file://")
        .unwrap()
        .to_owned();
    assert_eq!(&std::fs::read(&stream_file).unwrap()[..8], b"LDARCH01");
    // Deleting the prefix removes the archive too.
    let d = server.client("p").delete("prefixes/arc").await;
    assert_eq!(d.status.as_u16(), 204);
    server.deletions_done().await;
    assert!(!std::path::Path::new(&stream_file).exists());
    server.stop().await;
}
both!(archived_streams_read_exactly_as_before);

/// `pa/+/gap`: entries 0-2 and 5 stored, terminated at 6 (3, 4 and 6 missing); the
/// prefix's secret.
pub(crate) async fn gap_stream(c: &Client) -> String {
    let secret = c.text_stream("pa", "gap").await;
    c.append("pa/+/gap", &secret, lines(0, 3)).await.expect(200);
    c.append(
        "pa/+/gap",
        &secret,
        json!([{"stream_index": 5, "sequence": 5, "text": {"lines": ["five"]}}]),
    )
    .await
    .expect(200);
    c.terminate("pa/+/gap", &secret, json!({"terminal_index": 6}))
        .await
        .expect(200);
    secret
}

async fn gaps_and_open_streams_are_archived_partial_and_pessimistically(db: TestDb) {
    let mut config = archiving(&db, true);
    // Long enough that the gap stream is terminated (by the test) before its pessimistic
    // task is due, even on a loaded machine (at 0.5 s it was once sealed first).
    config.archival.pessimistic_delay = logdog::config::secs(2.0);
    let server = TestServer::start(config);
    let c = server.client("p");
    let secret = gap_stream(&c).await;
    c.register("pa/+/open", &secret, json!({}))
        .await
        .expect(201);
    c.append("pa/+/open", &secret, lines(0, 4))
        .await
        .expect(200);
    let gap = archived(&c, "pa/+/gap", &["partial"]).await;
    assert_eq!(gap["state"]["archive"]["log_entry_count"], 4);
    assert_eq!(gap["state"]["archive"]["complete"], false);
    let (idx, last) = replay(&server, "pa/+/gap").await;
    assert_eq!(idx, [0, 1, 2, 5], "what is stored, skipping gaps");
    assert_eq!(last, json!({"type": "end", "terminal_index": 6}));
    let a = c
        .raw(
            Method::GET,
            &c.url("logs/pa/+/gap?non_contiguous=true"),
            None,
            None,
            vec![],
        )
        .await;
    assert_eq!(a.expect(200)["entries"].as_array().unwrap().len(), 4);
    let open = archived(&c, "pa/+/open", &["complete"]).await;
    assert_eq!(
        open["state"]["terminal_index"], 3,
        "sealed at its highest stored index"
    );
    server.stop().await;
}
both!(gaps_and_open_streams_are_archived_partial_and_pessimistically);

fn standalone(
    server: &TestServer,
    archive: &std::path::Path,
    db: &TestDb,
) -> logdog::client::archivist::ArchivistHandle {
    let store = logdog::archive::Archives::single(
        logdog::archive::ArchiveStore::open(archive.to_str().unwrap()).unwrap(),
    );
    let config = archiving(db, false);
    let mut a = logdog::server::archivist_config(&config, server.base(), store);
    a.lease_seconds = 2.0;
    logdog::client::archivist::spawn(a)
}

async fn a_dead_archivists_task_is_finished_by_another(db: TestDb) {
    let server = TestServer::start(archiving(&db, false));
    let c = server.client("p");
    let secret = c.text_stream("dead", "s").await;
    c.append("dead/+/s", &secret, lines(0, 50))
        .await
        .expect(200);
    c.terminate("dead/+/s", &secret, json!({}))
        .await
        .expect(200);
    // An archivist leases the task and dies without a word.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let url = format!("{}/api/v1/archive-tasks/lease", server.base());
    let a = c
        .raw(
            Method::POST,
            &url,
            None,
            Some("application/json"),
            br#"{"lease_seconds": 1}"#.to_vec(),
        )
        .await;
    assert_eq!(a.expect(200)["tasks"].as_array().unwrap().len(), 1);
    let archive = std::path::PathBuf::from(db.config().archive);
    let worker = standalone(&server, &archive, &db);
    let s = archived(&c, "dead/+/s", &["complete"]).await;
    assert_eq!(s["state"]["archive"]["log_entry_count"], 50);
    let got = c
        .raw(
            Method::GET,
            &c.url("logs/dead/+/s?count=100"),
            None,
            None,
            vec![],
        )
        .await;
    assert_eq!(got.expect(200)["entries"].as_array().unwrap().len(), 50);
    worker.stop();
    server.stop().await;
}
both!(a_dead_archivists_task_is_finished_by_another);

async fn a_failing_destination_is_retried_then_failed(db: TestDb) {
    let server = TestServer::start(archiving(&db, false));
    let c = server.client("p");
    let secret = c.text_stream("bad", "s").await;
    c.append("bad/+/s", &secret, lines(0, 5)).await.expect(200);
    c.terminate("bad/+/s", &secret, json!({})).await.expect(200);
    let dir = tempfile::tempdir().unwrap();
    // A file where the project's folder should be: every write fails.
    std::fs::write(dir.path().join("p"), b"not a folder").unwrap();
    let worker = standalone(&server, dir.path(), &db);
    let s = archived(&c, "bad/+/s", &["failed"]).await;
    assert!(
        s["state"]["archive_error"]
            .as_str()
            .unwrap()
            .contains("after 3 attempts"),
        "{}",
        s["state"]
    );
    // Nothing was lost: the entries are still readable.
    let got = c
        .raw(Method::GET, &c.url("logs/bad/+/s"), None, None, vec![])
        .await;
    assert_eq!(got.expect(200)["entries"].as_array().unwrap().len(), 5);
    worker.stop();
    server.stop().await;
}
both!(a_failing_destination_is_retried_then_failed);

/// A local directory cannot sign: the archive's URLs are the coordinator's own route,
/// which serves each object (and one byte range of it); `logdog cat` reads Get pages.
async fn archive_objects_download_through_the_coordinator(db: TestDb) {
    let server = TestServer::start(archiving(&db, true));
    let c = server.client("p");
    let secret = c.text_stream("dl", "s").await;
    c.append("dl/+/s", &secret, lines(0, 30)).await.expect(200);
    c.register("dl/+/open", &secret, json!({}))
        .await
        .expect(201);
    c.terminate("dl/+/s", &secret, json!({})).await.expect(200);
    let s = archived(&c, "dl/+/s", &["complete"]).await;
    let a = c
        .raw(
            Method::GET,
            &c.url("archive-urls/dl/+/s"),
            None,
            None,
            vec![],
        )
        .await;
    let own = |file: &str| {
        format!(
            "{}/api/v1/projects/p/archive/dl/+/s?file={file}",
            server.base()
        )
    };
    assert_eq!(
        a.expect(200),
        &json!({"project": "p", "path": "dl/+/s", "signed": false, "expires_at": null,
                "stream_url": own("entries"), "index_url": own("index"), "data_url": own("data"),
                "log_entry_count": 30, "complete": true})
    );
    for (field, file) in [
        ("stream_url", "entries"),
        ("index_url", "index"),
        ("data_url", "data"),
    ] {
        let on_disk = std::fs::read(
            s["state"]["archive"][field]
                .as_str()
                .unwrap()
                .strip_prefix("file://")
                .unwrap(),
        )
        .unwrap();
        let res = c.http.get(own(file)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{file}");
        assert_eq!(res.headers()["accept-ranges"], "bytes");
        assert_eq!(
            res.headers()["content-length"],
            on_disk.len().to_string().as_str()
        );
        assert_eq!(res.bytes().await.unwrap(), on_disk, "{file}");
    }
    let ranged = |range: &'static str, file: &'static str| {
        let req = c.http.get(own(file)).header("range", range);
        async move {
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            let cr = res
                .headers()
                .get("content-range")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, cr, res.bytes().await.unwrap().to_vec())
        }
    };
    let (status, cr, body) = ranged("bytes=0-7", "entries").await;
    assert_eq!((status, &body[..]), (206, &b"LDARCH01"[..]));
    assert!(cr.unwrap().starts_with("bytes 0-7/"));
    let data_len = (0..30).map(|i| format!("line {i}\n").len()).sum::<usize>();
    let (status, cr, body) = ranged("bytes=-8", "data").await;
    assert_eq!((status, &body[..]), (206, &b"line 29\n"[..]));
    assert_eq!(
        cr.unwrap(),
        format!("bytes {}-{}/{data_len}", data_len - 8, data_len - 1)
    );
    let (status, cr, body) = ranged("bytes=99999-", "data").await;
    assert_eq!((status, cr, body.len()), (200, None, data_len), "ignored");
    for (q, status, code) in [
        ("archive/dl/+/s", 400, "invalid_argument"),
        ("archive/dl/+/s?file=secrets", 400, "invalid_argument"),
        ("archive/dl/+/open?file=data", 412, "failed_precondition"),
        ("archive/dl/+/nope?file=data", 404, "not_found"),
        ("archive-urls/dl/+/open", 412, "failed_precondition"),
    ] {
        c.raw(Method::GET, &c.url(q), None, None, vec![])
            .await
            .expect_error(status, code);
    }
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_logdog"))
        .args(["cat", "p/dl/+/s"])
        .env("LOGDOG_COORDINATOR", server.base())
        .env_remove("LOGDOG_TOKEN")
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        (0..30).map(|i| format!("line {i}\n")).collect::<String>()
    );
    server.stop().await;
}
both!(archive_objects_download_through_the_coordinator);
