//! The archive-task protocol over HTTP, with the test acting as the archivist: due times,
//! sealing on lease, leases (renew, expiry, 412), completion (complete, partial,
//! idempotent, 409), failures with backoff and the attempt cap, long polls, restarts.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::both;
use crate::common::*;

fn fast_archival(db: &TestDb) -> logdog::config::Config {
    let mut config = db.config();
    config.archival.complete_delay = logdog::config::secs(0.1);
    config.archival.incomplete_delay = logdog::config::secs(0.4);
    config.archival.pessimistic_delay = logdog::config::secs(0.6);
    config.archival.retry_delay = logdog::config::secs(0.1);
    config.archival.max_attempts = 3;
    config
}

async fn post(c: &Client, path: &str, body: Value) -> Answer {
    c.raw(
        Method::POST,
        &format!("{}/api/v1/archive-tasks/{path}", c.base),
        None,
        Some("application/json"),
        serde_json::to_vec(&body).unwrap(),
    )
    .await
}

/// Leases until `n` tasks come back (or the time runs out).
async fn lease(c: &Client, n: usize, lease_seconds: f64) -> Vec<Value> {
    let mut got = Vec::new();
    for _ in 0..100 {
        let a = post(c, "lease", json!({"max_tasks": n - got.len(), "lease_seconds": lease_seconds, "wait_seconds": 0.5})).await;
        got.extend(a.expect(200)["tasks"].as_array().unwrap().iter().cloned());
        if got.len() >= n {
            return got;
        }
    }
    panic!("no task became due; got {got:?}");
}

/// A successful completion of `task`, as an archivist reports it: a real archive of
/// entries `0..count`, written where this task's archive must be (the coordinator checks
/// the objects before it believes the report). A task without a project (a made-up lease)
/// gets placeholder URLs.
async fn success(db: &TestDb, task: &Value, terminal: i64, count: u64) -> Value {
    let (Some(project), Some(id), Some(lease)) = (
        task["project"].as_str(),
        task["id"].as_str(),
        task["lease_id"].as_str(),
    ) else {
        return json!({"lease_id": task["lease_id"], "terminal_index": terminal, "log_entry_count": count,
               "stream_url": "file:///a/entries", "stream_size": 10, "index_url": "file:///a/index", "index_size": 1,
               "data_url": "file:///a/data", "data_size": 5});
    };
    let w = write_archive(db, project, id, lease, count).await;
    json!({"lease_id": lease, "terminal_index": terminal, "log_entry_count": w.log_entry_count,
           "stream_url": w.stream_url, "stream_size": w.stream_size, "index_url": w.index_url,
           "index_size": w.index_size, "data_url": w.data_url, "data_size": w.data_size})
}

async fn terminated_streams_are_tasked_sealed_and_archived(db: TestDb) {
    let server = TestServer::start(fast_archival(&db));
    let c = server.client("p");
    let secret = c.text_stream("a", "s").await;
    c.append("a/+/s", &secret, lines(0, 5)).await.expect(200);
    c.terminate("a/+/s", &secret, json!({})).await.expect(200);
    let tasks = lease(&c, 1, 30.0).await;
    let t = &tasks[0];
    assert_eq!(
        (
            t["project"].as_str(),
            t["path"].as_str(),
            t["reason"].as_str(),
            t["attempt"].as_i64()
        ),
        (Some("p"), Some("a/+/s"), Some("terminated"), Some(1))
    );
    assert_eq!(t["id"], logdog_schema::names::stream_id("a/+/s"));
    assert!(t["lease_expires_at"].is_string());
    assert_eq!(
        c.load("a/+/s").await.expect(200)["state"]["archival"],
        "tasked"
    );
    c.append("a/+/s", &secret, lines(4, 6))
        .await
        .expect_error(409, "conflict");
    // Nothing else is due while it is leased.
    assert_eq!(
        post(&c, "lease", json!({"max_tasks": 5, "lease_seconds": 30}))
            .await
            .expect(200)["tasks"],
        json!([])
    );
    let id = t["task_id"].as_str().unwrap();
    post(
        &c,
        &format!("{id}/renew"),
        json!({"lease_id": t["lease_id"], "lease_seconds": 60}),
    )
    .await
    .expect(200);
    post(
        &c,
        &format!("{id}/renew"),
        json!({"lease_id": "nope", "lease_seconds": 60}),
    )
    .await
    .expect_error(412, "failed_precondition");
    post(
        &c,
        &format!("{id}/complete"),
        success(&db, &json!({"lease_id": "stale"}), 4, 5).await,
    )
    .await
    .expect_error(412, "failed_precondition");
    post(&c, &format!("{id}/complete"), success(&db, t, 4, 4).await)
        .await
        .expect_error(409, "conflict");
    let done = post(&c, &format!("{id}/complete"), success(&db, t, 4, 5).await).await;
    let s = done.expect(200).clone();
    assert_eq!(s["state"]["status"], "archived");
    assert_eq!(s["state"]["archival"], "complete");
    assert_eq!(s["state"]["archive"]["log_entry_count"], 5);
    assert_eq!(s["state"]["archive"]["complete"], true);
    assert!(s["state"]["archive"]["stream_url"]
        .as_str()
        .unwrap()
        .ends_with(&format!(
            "/p/{}/{}/entries",
            t["id"].as_str().unwrap(),
            t["lease_id"].as_str().unwrap()
        )));
    assert!(
        stored_entries(&db.url, "p", "a/+/s").is_empty(),
        "intermediate data is released"
    );
    // Complete again: idempotent. The stream is never handed out again.
    assert_eq!(
        post(&c, &format!("{id}/complete"), success(&db, t, 4, 5).await)
            .await
            .expect(200)["state"],
        s["state"]
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        post(&c, "lease", json!({"max_tasks": 5})).await.expect(200)["tasks"],
        json!([])
    );
    c.append("a/+/s", &secret, lines(5, 6))
        .await
        .expect_error(409, "conflict");
    for bad in [
        json!({"lease_seconds": 0}),
        json!({"lease_seconds": 3601}),
        json!({"wait_seconds": 61}),
        json!({"max_tasks": 0}),
    ] {
        post(&c, "lease", bad)
            .await
            .expect_error(400, "invalid_argument");
    }
    server.stop().await;
}
both!(terminated_streams_are_tasked_sealed_and_archived);

async fn gaps_archive_partial_and_open_streams_are_sealed(db: TestDb) {
    let server = TestServer::start(fast_archival(&db));
    let c = server.client("p");
    let secret = c.text_stream("g", "gap").await;
    c.append("g/+/gap", &secret, json!([{"stream_index": 0, "text": {"lines": ["a"]}}, {"stream_index": 2, "sequence": 2, "text": {"lines": ["c"]}}])).await.expect(200);
    c.terminate("g/+/gap", &secret, json!({"terminal_index": 3}))
        .await
        .expect(200);
    c.register("g/+/open", &secret, json!({})).await.expect(201);
    c.append("g/+/open", &secret, lines(0, 7)).await.expect(200);
    let tasks = lease(&c, 2, 30.0).await;
    let by_path = |p: &str| tasks.iter().find(|t| t["path"] == p).unwrap().clone();
    let (gap, open) = (by_path("g/+/gap"), by_path("g/+/open"));
    assert_eq!(gap["reason"], "incomplete");
    assert_eq!(open["reason"], "expired");
    // Leasing sealed the open stream at its highest stored index.
    let s = c.load("g/+/open").await;
    assert_eq!(s.expect(200)["state"]["terminal_index"], 6);
    assert_eq!(s.body["state"]["status"], "terminated");
    c.append("g/+/open", &secret, lines(7, 8))
        .await
        .expect_error(409, "conflict");
    let a = post(
        &c,
        &format!("{}/complete", gap["task_id"].as_str().unwrap()),
        success(&db, &gap, 3, 2).await,
    )
    .await;
    assert_eq!(a.expect(200)["state"]["archival"], "partial");
    assert_eq!(a.body["state"]["archive"]["complete"], false);
    // The archive must end at the stream's terminal index.
    post(
        &c,
        &format!("{}/complete", open["task_id"].as_str().unwrap()),
        success(&db, &open, 9, 10).await,
    )
    .await
    .expect_error(409, "conflict");
    post(
        &c,
        &format!("{}/complete", open["task_id"].as_str().unwrap()),
        success(&db, &open, 6, 7).await,
    )
    .await
    .expect(200);
    server.stop().await;
}
both!(gaps_archive_partial_and_open_streams_are_sealed);

async fn expired_leases_and_failures_are_retried_then_fail(db: TestDb) {
    let server = TestServer::start(fast_archival(&db));
    let c = server.client("p");
    let secret = c.text_stream("f", "s").await;
    c.append("f/+/s", &secret, lines(0, 2)).await.expect(200);
    c.terminate("f/+/s", &secret, json!({})).await.expect(200);
    let first = lease(&c, 1, 1.0).await.remove(0);
    // The lease expires: the task is handed out again, and the old lease is refused.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = lease(&c, 1, 30.0).await.remove(0);
    assert_eq!(second["task_id"], first["task_id"]);
    assert_eq!(second["attempt"], 2);
    assert_ne!(second["lease_id"], first["lease_id"]);
    let id = second["task_id"].as_str().unwrap().to_owned();
    post(
        &c,
        &format!("{id}/complete"),
        success(&db, &first, 1, 2).await,
    )
    .await
    .expect_error(412, "failed_precondition");
    // A reported failure: retried after the backoff.
    let a = post(
        &c,
        &format!("{id}/complete"),
        json!({"lease_id": second["lease_id"], "error": "disk full"}),
    )
    .await;
    assert_eq!(a.expect(200)["state"]["archival"], "tasked");
    let third = lease(&c, 1, 30.0).await.remove(0);
    assert_eq!(third["attempt"], 3);
    // The third failure reaches the cap: archival failed, with the error.
    let a = post(
        &c,
        &format!("{id}/complete"),
        json!({"lease_id": third["lease_id"], "error": "disk still full"}),
    )
    .await;
    assert_eq!(a.expect(200)["state"]["archival"], "failed");
    assert!(a.body["state"]["archive_error"]
        .as_str()
        .unwrap()
        .contains("disk still full"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        post(&c, "lease", json!({"max_tasks": 5})).await.expect(200)["tasks"],
        json!([])
    );
    // Its data stays readable.
    assert_eq!(stored_indices(&db.url, "p", "f/+/s"), [0, 1]);
    server.stop().await;
}
both!(expired_leases_and_failures_are_retried_then_fail);

async fn long_polls_wait_for_a_due_task(db: TestDb) {
    let server = TestServer::start(fast_archival(&db));
    let c = server.client("p");
    let secret = c.text_stream("lp", "s").await;
    let waiting = tokio::spawn({
        let c = c.clone();
        async move {
            post(
                &c,
                "lease",
                json!({"max_tasks": 1, "lease_seconds": 30, "wait_seconds": 10}),
            )
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    c.terminate("lp/+/s", &secret, json!({})).await.expect(200);
    let a = tokio::time::timeout(Duration::from_secs(8), waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.expect(200)["tasks"][0]["path"], "lp/+/s");
    // With nothing due, the poll answers empty after wait_seconds.
    let started = std::time::Instant::now();
    assert_eq!(
        post(&c, "lease", json!({"wait_seconds": 0.3}))
            .await
            .expect(200)["tasks"],
        json!([])
    );
    assert!(started.elapsed() >= Duration::from_millis(250));
    server.stop().await;
}
both!(long_polls_wait_for_a_due_task);

async fn tasks_survive_a_restart(db: TestDb) {
    let server = TestServer::start(fast_archival(&db));
    let c = server.client("p");
    let secret = c.text_stream("r", "pending").await;
    c.terminate("r/+/pending", &secret, json!({}))
        .await
        .expect(200);
    c.register("r/+/leased", &secret, json!({}))
        .await
        .expect(201);
    c.append("r/+/leased", &secret, lines(0, 3))
        .await
        .expect(200);
    c.terminate("r/+/leased", &secret, json!({}))
        .await
        .expect(200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let a = post(&c, "lease", json!({"max_tasks": 1, "lease_seconds": 1})).await;
    let leased = a.expect(200)["tasks"][0].clone();
    server.stop().await;

    let server = TestServer::start(fast_archival(&db));
    let c = server.client("p");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let tasks = lease(&c, 2, 30.0).await;
    let mut paths: Vec<&str> = tasks.iter().map(|t| t["path"].as_str().unwrap()).collect();
    paths.sort();
    assert_eq!(paths, ["r/+/leased", "r/+/pending"]);
    let again = tasks
        .iter()
        .find(|t| t["task_id"] == leased["task_id"])
        .unwrap();
    assert_eq!(again["attempt"], 2);
    for t in &tasks {
        let (terminal, count) = if t["path"] == "r/+/leased" {
            (2, 3)
        } else {
            (-1, 0)
        };
        post(
            &c,
            &format!("{}/complete", t["task_id"].as_str().unwrap()),
            success(&db, t, terminal, count).await,
        )
        .await
        .expect(200);
    }
    assert_eq!(
        c.load("r/+/pending").await.expect(200)["state"]["archival"],
        "complete"
    );
    server.stop().await;
}
both!(tasks_survive_a_restart);

async fn appends_racing_the_seal_are_stored_or_refused(db: TestDb) {
    let mut config = fast_archival(&db);
    config.archival.pessimistic_delay = logdog::config::secs(0.3);
    let server = TestServer::start(config);
    let c = server.client("p");
    let secret = c.text_stream("race", "s").await;
    let writer = tokio::spawn({
        let (c, secret) = (c.clone(), secret.clone());
        async move {
            let mut acked = Vec::new();
            for i in 0..400u64 {
                let a = c.append("race/+/s", &secret, lines(i, i + 1)).await;
                match a.status.as_u16() {
                    200 => acked.push(i),
                    409 => break,
                    other => panic!("unexpected {other}: {}", a.body),
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            acked
        }
    });
    let task = lease(&c, 1, 30.0).await.remove(0);
    let acked = writer.await.unwrap();
    let stream = c.load("race/+/s").await.expect(200).clone();
    let terminal = stream["state"]["terminal_index"].as_i64().unwrap();
    // Every acknowledged entry is at or below the seal, and stored.
    let stored = stored_indices(&db.url, "p", "race/+/s");
    assert!(acked
        .iter()
        .all(|i| (*i as i64) <= terminal && stored.binary_search(i).is_ok()));
    assert_eq!(stored.len() as i64, terminal + 1);
    post(
        &c,
        &format!("{}/complete", task["task_id"].as_str().unwrap()),
        success(&db, &task, terminal, stored.len() as u64).await,
    )
    .await
    .expect(200);
    server.stop().await;
}
both!(appends_racing_the_seal_are_stored_or_refused);
