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

/// A stream whose actor stopped (idle) and is loaded again for a viewer: the websocket
/// viewer gets the whole backlog and `end`, and `follow=true` the whole text, at once —
/// the fresh actor tells them where the stream stands without waiting for a write.
async fn a_reloaded_stream_serves_its_viewers(db: TestDb) {
    use futures::StreamExt as _;
    use tokio_tungstenite::tungstenite::Message;
    let mut config = db.config();
    config.stream_idle_timeout = logdog::config::secs(0.2);
    let server = TestServer::start(config);
    let c = server.client("p");
    let secret = c.text_stream("reload", "s").await;
    c.append("reload/+/s", &secret, lines(0, 3))
        .await
        .expect(200);
    c.terminate("reload/+/s", &secret, json!({}))
        .await
        .expect(200);
    let mut stopped = false;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        if server.metric("logdog_live_stream_actors").await == 0 {
            stopped = true;
            break;
        }
    }
    assert!(stopped, "the idle stream actor did not stop");
    let url = format!("ws://{}/api/v1/projects/p/watch/reload/+/s", server.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut types = Vec::new();
    let mut indices = Vec::new();
    let close = loop {
        let m = tokio::time::timeout(std::time::Duration::from_secs(5), ws.next())
            .await
            .expect("the viewer was left waiting")
            .unwrap()
            .unwrap();
        match m {
            Message::Text(t) => {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                types.push(v["type"].as_str().unwrap().to_owned());
                if v["type"] == "entries" {
                    for e in v["entries"].as_array().unwrap() {
                        indices.push(e["stream_index"].as_u64().unwrap());
                    }
                }
            }
            Message::Close(c) => break c.map(|c| u16::from(c.code)),
            _ => {}
        }
    };
    assert_eq!(indices, [0, 1, 2]);
    assert_eq!(
        (
            types.first().map(String::as_str),
            types.last().map(String::as_str)
        ),
        (Some("state"), Some("end"))
    );
    assert_eq!(close, Some(1000));
    // The same for a followed text response, on a fresh actor again.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let text = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        c.text(c.url("logs/reload/+/s?format=text&follow=true")),
    )
    .await
    .expect("the follower was left waiting");
    assert_eq!(text, "line 0\nline 1\nline 2\n");
    server.stop().await;
}
both!(a_reloaded_stream_serves_its_viewers);
