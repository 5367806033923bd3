//! Restart: everything acknowledged before a stop is there after a start on the same database.

use serde_json::json;

use crate::both;
use crate::common::*;

async fn acknowledged_state_survives_a_restart(db: TestDb) {
    let server = TestServer::start(db.config());
    let c = server.client("p");
    let secret = c.text_stream("rs", "done").await;
    c.append("rs/+/done", &secret, lines(0, 10))
        .await
        .expect(200);
    c.terminate("rs/+/done", &secret, json!({}))
        .await
        .expect(200);
    c.register("rs/+/open", &secret, json!({"stream_type": "binary"}))
        .await
        .expect(201);
    c.append(
        "rs/+/open",
        &secret,
        json!([{"stream_index": 0, "binary": {"data": "AAE="}}]),
    )
    .await
    .expect(200);
    // An out-of-order entry, stored but not contiguous yet.
    c.append(
        "rs/+/open",
        &secret,
        json!([{"stream_index": 2, "sequence": 9, "binary": {"data": "Ag=="}}]),
    )
    .await
    .expect(200);
    let done_before = c.load("rs/+/done").await.expect(200).clone();
    server.stop().await;

    let server = TestServer::start(db.config());
    let c = server.client("p");
    assert_eq!(c.load("rs/+/done").await.expect(200), &done_before);
    let open = c.load("rs/+/open").await;
    assert_eq!(open.expect(200)["state"]["next_index"], 1);
    assert_eq!(open.body["state"]["status"], "streaming");
    // The gap closes after the restart; the reloaded sequence continues (byte offset 2).
    let a = c
        .append(
            "rs/+/open",
            &secret,
            json!([{"stream_index": 1, "binary": {"data": "AQ=="}}]),
        )
        .await;
    assert_eq!(
        a.expect(200),
        &json!({"next_index": 3, "accepted": 1, "duplicates": 0})
    );
    let seq: Vec<u64> = stored_entries(&db.url, "p", "rs/+/open")
        .iter()
        .map(|e| e.sequence)
        .collect();
    assert_eq!(seq, [0, 2, 9]);
    // The old entries are still duplicates, the prefix and its secret still valid.
    assert_eq!(
        c.append("rs/+/done", &secret, lines(0, 10))
            .await
            .expect(200)["duplicates"],
        10
    );
    c.json(
        reqwest::Method::POST,
        "prefixes",
        None,
        &json!({"prefix": "rs"}),
    )
    .await
    .expect_error(409, "already_exists");
    server.stop().await;
}
both!(acknowledged_state_survives_a_restart);

async fn graceful_stop_finishes_inflight_appends(db: TestDb) {
    let server = TestServer::start(db.config());
    let c = server.client("p");
    let secret = c.text_stream("gs", "s").await;
    let tasks: Vec<_> = (0..8u64)
        .map(|w| {
            let (c, secret) = (c.clone(), secret.clone());
            tokio::spawn(async move {
                let e: Vec<_> = (0..500).map(|k| json!({"stream_index": w * 500 + k, "sequence": w * 500 + k, "text": {"lines": ["x"]}})).collect();
                c.append("gs/+/s", &secret, json!(e)).await
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    server.stop().await;
    let mut acknowledged = Vec::new();
    for (w, t) in tasks.into_iter().enumerate() {
        if let Ok(a) = t.await {
            if a.status == 200 {
                acknowledged.push(w as u64);
            }
        }
    }
    let stored = stored_indices(&db.url, "p", "gs/+/s");
    for w in acknowledged {
        assert!(
            (w * 500..(w + 1) * 500).all(|i| stored.binary_search(&i).is_ok()),
            "acknowledged batch {w} lost"
        );
    }
}
both!(graceful_stop_finishes_inflight_appends);

async fn idle_actors_stop_and_reload(db: TestDb) {
    let mut config = db.config();
    config.stream_idle_timeout = logdog::config::secs(0.2);
    let server = TestServer::start(config);
    let c = server.client("p");
    let secret = c.text_stream("idle", "s").await;
    c.append("idle/+/s", &secret, lines(0, 3)).await.expect(200);
    c.append(
        "idle/+/s",
        &secret,
        json!([{"stream_index": 5, "sequence": 50, "text": {"lines": ["late"]}}]),
    )
    .await
    .expect(200);
    let live = || server.metric("logdog_live_stream_actors");
    assert_eq!(live().await, 1);
    let mut stopped = false;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        if live().await == 0 {
            stopped = true;
            break;
        }
    }
    assert!(stopped, "the idle stream actor did not stop");
    // A fresh actor reloads everything: duplicates, the gap, and the sequence to continue.
    let a = c.append("idle/+/s", &secret, lines(0, 5)).await;
    assert_eq!(
        a.expect(200),
        &json!({"next_index": 6, "accepted": 2, "duplicates": 3})
    );
    let seq: Vec<u64> = stored_entries(&db.url, "p", "idle/+/s")
        .iter()
        .map(|e| e.sequence)
        .collect();
    assert_eq!(seq, [0, 1, 2, 3, 4, 50]);
    assert_eq!(
        c.load("idle/+/s").await.expect(200)["state"]["next_index"],
        6
    );
    server.stop().await;
}
both!(idle_actors_stop_and_reload);
