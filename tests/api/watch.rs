//! Websocket live tail: contiguous delivery across the backlog/live seam, many viewers,
//! slow viewers, out-of-order appends, state frames, `end`, and refusals before upgrade.

use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

use crate::both;
use crate::common::*;

async fn connect(server: &TestServer, path: &str, query: &str) -> Ws {
    let url = format!("ws://{}/api/v1/projects/p/watch/{path}{query}", server.addr);
    tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket upgrade")
        .0
}

fn assert_complete(seen: &Seen, terminal: u64) {
    assert_eq!(
        seen.indices,
        (0..=terminal).collect::<Vec<_>>(),
        "exactly 0..={terminal} in order"
    );
    assert_eq!(
        seen.frames[0]["type"], "state",
        "the first frame is the state"
    );
    assert_eq!(
        seen.frames.last().unwrap(),
        &json!({"type": "end", "terminal_index": terminal})
    );
    assert_eq!(seen.close.as_ref().map(|c| c.0), Some(1000));
}

async fn viewers_before_during_and_after_writes(db: TestDb) {
    let server = TestServer::start(db.config());
    let c = server.client("p");
    let secret = c.text_stream("w", "s").await;
    let early = connect(&server, "w/+/s", "").await;
    let early = tokio::spawn(read_all(early, Duration::from_secs(30)));
    // Appends race the viewers that join while they run.
    let writer = tokio::spawn({
        let (c, secret) = (c.clone(), secret.clone());
        async move {
            for i in 0..100u64 {
                c.append("w/+/s", &secret, lines(i * 10, i * 10 + 10))
                    .await
                    .expect(200);
            }
        }
    });
    let mut during = Vec::new();
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        during.push(tokio::spawn(read_all(
            connect(&server, "w/+/s", "").await,
            Duration::from_secs(30),
        )));
    }
    writer.await.unwrap();
    let t = c.terminate("w/+/s", &secret, json!({})).await;
    assert_eq!(t.expect(200)["state"]["terminal_index"], 999);
    let after = read_all(connect(&server, "w/+/s", "").await, Duration::from_secs(30)).await;
    assert_complete(&after, 999);
    let early = early.await.unwrap();
    assert_complete(&early, 999);
    assert!(
        early.frames.iter().filter(|f| f["type"] == "state").count() >= 2,
        "a state frame on termination"
    );
    for d in during {
        assert_complete(&d.await.unwrap(), 999);
    }
    // from= and tail=
    let from = read_all(
        connect(&server, "w/+/s", "?from=990").await,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(from.indices, (990..1000).collect::<Vec<_>>());
    let tail = read_all(
        connect(&server, "w/+/s", "?tail=3").await,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(tail.indices, [997, 998, 999]);
    server.stop().await;
}
both!(viewers_before_during_and_after_writes);

async fn two_hundred_viewers_see_the_same_sequence(db: TestDb) {
    let server = TestServer::start(db.config());
    let c = server.client("p");
    let secret = c.text_stream("many", "s").await;
    let mut viewers = Vec::new();
    for _ in 0..200 {
        viewers.push(tokio::spawn(read_all(
            connect(&server, "many/+/s", "").await,
            Duration::from_secs(60),
        )));
    }
    for i in 0..50u64 {
        c.append("many/+/s", &secret, lines(i * 4, i * 4 + 4))
            .await
            .expect(200);
    }
    c.terminate("many/+/s", &secret, json!({}))
        .await
        .expect(200);
    for v in viewers {
        assert_complete(&v.await.unwrap(), 199);
    }
    server.stop().await;
}
both!(two_hundred_viewers_see_the_same_sequence);

async fn out_of_order_appends_reach_viewers_in_order(db: TestDb) {
    let server = TestServer::start(db.config());
    let c = server.client("p");
    let secret = c.text_stream("ooo", "s").await;
    let viewer = tokio::spawn(read_all(
        connect(&server, "ooo/+/s", "").await,
        Duration::from_secs(20),
    ));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let later: Vec<Value> = (5..10)
        .map(
            |i| json!({"stream_index": i, "sequence": i, "text": {"lines": [format!("line {i}")]}}),
        )
        .collect();
    c.append("ooo/+/s", &secret, json!(later)).await.expect(200);
    c.append("ooo/+/s", &secret, lines(0, 5)).await.expect(200);
    c.terminate("ooo/+/s", &secret, json!({})).await.expect(200);
    let seen = viewer.await.unwrap();
    assert_complete(&seen, 9);
    let texts: Vec<String> = seen
        .frames
        .iter()
        .filter(|f| f["type"] == "entries")
        .flat_map(|f| f["entries"].as_array().unwrap().clone())
        .map(|e| e["text"]["lines"][0]["value"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        texts,
        (0..10).map(|i| format!("line {i}")).collect::<Vec<_>>()
    );
    server.stop().await;
}
both!(out_of_order_appends_reach_viewers_in_order);

async fn a_slow_viewer_catches_up_or_is_told_where_to_resume(db: TestDb) {
    let mut config = db.config();
    config.websocket.mailbox = 2;
    config.websocket.lag_timeout = logdog::config::secs(0.5);
    let server = TestServer::start(config);
    let c = server.client("p");
    let secret = c.text_stream("slow", "s").await;
    let fast = tokio::spawn(read_all(
        connect(&server, "slow/+/s", "").await,
        Duration::from_secs(60),
    ));
    let mut slow = connect(&server, "slow/+/s", "").await;
    // Lines of ~1 KB so that socket buffers fill while the slow viewer does not read.
    let big = "x".repeat(1000);
    let started = std::time::Instant::now();
    for i in 0..400u64 {
        let e: Vec<Value> = (0..40)
            .map(|k| json!({"stream_index": i * 40 + k, "text": {"lines": [big]}}))
            .collect();
        c.append("slow/+/s", &secret, json!(e)).await.expect(200);
    }
    let write_time = started.elapsed();
    c.terminate("slow/+/s", &secret, json!({}))
        .await
        .expect(200);
    let fast = fast.await.unwrap();
    assert_complete(&fast, 15999);
    // The slow viewer wakes up after a while.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _ = slow.send(Message::Ping(vec![].into())).await;
    let seen = read_all(slow, Duration::from_secs(30)).await;
    let n = seen.indices.len() as u64;
    assert_eq!(
        seen.indices,
        (0..n).collect::<Vec<_>>(),
        "never a gap or a duplicate"
    );
    if n < 16000 {
        let (code, reason) = seen.close.clone().expect("closed");
        assert_eq!(code, 1013, "{reason}");
        assert_eq!(reason, format!("lagged; resume from={n}"));
        // Resuming from N continues exactly there. A resumed viewer that stalls again
        // (this machine is shared with the other tests, and `lag_timeout` is short) is
        // told where to resume again, until the stream ends.
        let mut next = n;
        for _ in 0..20 {
            let rest = read_all(
                connect(&server, "slow/+/s", &format!("?from={next}")).await,
                Duration::from_secs(30),
            )
            .await;
            let got = rest.indices.len() as u64;
            assert_eq!(
                rest.indices,
                (next..next + got).collect::<Vec<_>>(),
                "a resumed viewer continues exactly at from={next}"
            );
            next += got;
            if next == 16000 {
                assert_eq!(
                    rest.frames.last().unwrap(),
                    &json!({"type": "end", "terminal_index": 15999})
                );
                assert_eq!(rest.close.as_ref().map(|c| c.0), Some(1000));
                break;
            }
            assert_eq!(
                rest.close,
                Some((1013, format!("lagged; resume from={next}"))),
                "a resume that stops short says where to resume"
            );
        }
        assert_eq!(next, 16000, "twenty resumes did not finish");
    } else {
        assert_complete(&seen, 15999);
    }
    eprintln!("slow viewer: got {n} before closing; 16000 appends took {write_time:?}");
    server.stop().await;
}
both!(a_slow_viewer_catches_up_or_is_told_where_to_resume);

async fn unknown_streams_and_bad_queries_are_refused_before_the_upgrade(db: TestDb) {
    let mut config = db.config();
    config.limits.max_viewers_per_stream = 1;
    let server = TestServer::start(config);
    let c = server.client("p");
    let secret = c.text_stream("lim", "s").await;
    let err = tokio_tungstenite::connect_async(format!(
        "ws://{}/api/v1/projects/p/watch/lim/+/nope",
        server.addr
    ))
    .await
    .unwrap_err();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(res) => {
            assert_eq!(res.status().as_u16(), 404);
            let body: Value = serde_json::from_slice(res.body().as_deref().unwrap()).unwrap();
            assert_eq!(body["error"]["code"], "not_found");
        }
        other => panic!("expected an HTTP refusal, got {other:?}"),
    }
    let first = connect(&server, "lim/+/s", "").await;
    match tokio_tungstenite::connect_async(format!(
        "ws://{}/api/v1/projects/p/watch/lim/+/s",
        server.addr
    ))
    .await
    .unwrap_err()
    {
        tokio_tungstenite::tungstenite::Error::Http(res) => {
            assert_eq!(res.status().as_u16(), 429);
            assert!(res.headers().contains_key("retry-after"));
        }
        other => panic!("expected 429, got {other:?}"),
    }
    let a = c
        .raw(
            reqwest::Method::GET,
            &c.url("watch/lim/+/s?from=1&tail=2"),
            None,
            None,
            vec![],
        )
        .await;
    a.expect_error(400, "invalid_argument");
    drop(first);
    // The slot is released when the viewer leaves.
    let mut ok = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if tokio_tungstenite::connect_async(format!(
            "ws://{}/api/v1/projects/p/watch/lim/+/s",
            server.addr
        ))
        .await
        .is_ok()
        {
            ok = true;
            break;
        }
    }
    assert!(ok, "the viewer slot was not released");
    let _ = secret;
    let _ = CloseCode::Normal;
    server.stop().await;
}
both!(unknown_streams_and_bad_queries_are_refused_before_the_upgrade);

async fn a_peer_that_accepts_nothing_is_disconnected(db: TestDb) {
    let mut config = db.config();
    config.websocket.mailbox = 2;
    config.websocket.idle_timeout = logdog::config::secs(1.0);
    config.websocket.ping_interval = logdog::config::secs(0.2);
    config.websocket.lag_timeout = logdog::config::secs(60.0);
    let server = TestServer::start(config);
    let c = server.client("p");
    let secret = c.text_stream("stuck", "s").await;
    let stuck = connect(&server, "stuck/+/s", "").await;
    let viewers = || server.metric("logdog_websocket_viewers");
    assert_eq!(viewers().await, 1);
    let big = "y".repeat(1000);
    for i in 0..400u64 {
        let e: Vec<Value> = (0..40)
            .map(|k| json!({"stream_index": i * 40 + k, "text": {"lines": [big]}}))
            .collect();
        c.append("stuck/+/s", &secret, json!(e)).await.expect(200);
    }
    // The peer never reads: its session cannot run, so the watchdog disconnects it.
    let mut gone = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if viewers().await == 0 {
            gone = true;
            break;
        }
    }
    assert!(gone, "a peer that accepts nothing was not disconnected");
    let seen_before_cut = {
        let mut ws = stuck;
        let mut n = 0u64;
        while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            if let Message::Text(t) = m {
                let v: Value = serde_json::from_str(&t).unwrap();
                n += v["entries"].as_array().map_or(0, |a| a.len() as u64);
            }
        }
        n
    };
    assert!(
        seen_before_cut < 16000,
        "the connection was cut before the end"
    );
    server.stop().await;
}
both!(a_peer_that_accepts_nothing_is_disconnected);

/// A graceful stop does not wait for live readers: a websocket viewer is closed with 1001
/// and the index to resume from, and a followed text response ends after what it sent.
async fn graceful_stop_ends_viewers_and_followers(db: TestDb) {
    let server = TestServer::start(db.config());
    let c = server.client("p");
    let secret = c.prefix("g").await;
    c.register("g/+/s", &secret, json!({})).await.expect(201);
    c.append("g/+/s", &secret, lines(0, 3)).await.expect(200);
    let mut ws = connect(&server, "g/+/s", "").await;
    // Wait until the backlog arrived, so the viewer is live.
    let mut got = 0;
    while got < 3 {
        if let Some(Ok(Message::Text(t))) = ws.next().await {
            let v: Value = serde_json::from_str(&t).unwrap();
            got += v["entries"].as_array().map_or(0, |e| e.len());
        }
    }
    let follow = reqwest::get(format!(
        "{}/api/v1/projects/p/logs/g/+/s?format=text&follow=true",
        server.base()
    ))
    .await
    .unwrap();
    assert_eq!(follow.status(), 200);
    let stopping = tokio::spawn(server.stop());
    let seen = read_all(ws, Duration::from_secs(20)).await;
    assert_eq!(
        seen.close,
        Some((1001, "server shutting down; resume from=3".to_owned()))
    );
    let text = tokio::time::timeout(Duration::from_secs(20), follow.text())
        .await
        .expect("the followed response ends")
        .unwrap();
    assert_eq!(text, "line 0\nline 1\nline 2\n");
    stopping.await.unwrap();
}
both!(graceful_stop_ends_viewers_and_followers);

/// The close handshake: a viewer's close frame is answered with the server's close frame
/// (echoing its code), and the server then ends the TCP connection, long before the HTTP
/// layer's 1 s disconnect timeout would.
async fn a_close_frame_is_answered_at_once(db: TestDb) {
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    let server = TestServer::start(db.config());
    let c = server.client("p");
    let secret = c.prefix("cl").await;
    c.register("cl/+/s", &secret, json!({})).await.expect(201);
    let mut times = Vec::new();
    for _ in 0..5 {
        let mut ws = connect(&server, "cl/+/s", "").await;
        // The state frame: the session is running.
        assert!(matches!(ws.next().await, Some(Ok(Message::Text(_)))));
        let sent = std::time::Instant::now();
        ws.send(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        })))
        .await
        .unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a close frame");
        match answer {
            Some(Ok(Message::Close(Some(f)))) => assert_eq!(f.code, CloseCode::Normal),
            other => panic!("{other:?}"),
        }
        let framed = sent.elapsed();
        // Then the end of the connection.
        let end = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("the connection ends");
        assert!(
            matches!(end, None | Some(Err(_))),
            "after the close: {end:?}"
        );
        times.push(sent.elapsed());
        eprintln!(
            "close frame after {framed:?}, connection end after {:?}",
            sent.elapsed()
        );
    }
    times.sort();
    assert!(
        times[4] < Duration::from_millis(500),
        "the server ended the connection after {:?}",
        times[4]
    );
}
both!(a_close_frame_is_answered_at_once);
