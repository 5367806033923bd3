//! The whole write lifecycle: prefix → stream → append → terminate → load → purge.

use reqwest::Method;
use serde_json::json;

use crate::both;
use crate::common::*;

async fn write_lifecycle(db: TestDb) {
    let server = TestServer::start(db.config());
    let c = server.client("chromium");
    let secret = c.prefix("bb/123").await;
    let path = "bb/123/+/steps/compile/stdout";

    let created = c
        .register(
            path,
            &secret,
            json!({"tags": {"step": "compile"}, "timestamp": "2026-11-27T23:00:00Z"}),
        )
        .await;
    let s = created.expect(201);
    assert_eq!(s["project"], "chromium");
    assert_eq!(s["path"], path);
    assert_eq!(s["prefix"], "bb/123");
    assert_eq!(s["name"], "steps/compile/stdout");
    assert_eq!(s["id"], logdog_schema::names::stream_id(path));
    assert_eq!(s["descriptor"]["stream_type"], "text");
    assert_eq!(s["descriptor"]["content_type"], "text/plain; charset=utf-8");
    assert_eq!(s["descriptor"]["timestamp"], "2026-11-27T23:00:00Z");
    assert_eq!(s["descriptor"]["tags"], json!({"step": "compile"}));
    assert_eq!(s["state"]["status"], "streaming");
    assert_eq!(s["state"]["next_index"], 0);
    assert_eq!(s["state"]["terminal_index"], -1);
    assert_eq!(s["state"]["archival"], "none");
    assert!(s.get("secret").is_none() && !s.to_string().contains(&secret));

    let a = c.append(path, &secret, lines(0, 3)).await;
    assert_eq!(
        a.expect(200),
        &json!({"next_index": 3, "accepted": 3, "duplicates": 0})
    );
    // Out of order with a gap: stored, but next_index waits for 3.
    let a = c
        .append(
            path,
            &secret,
            json!([{"stream_index": 5, "sequence": 5, "text": {"lines": ["five"]}}]),
        )
        .await;
    assert_eq!(
        a.expect(200),
        &json!({"next_index": 3, "accepted": 1, "duplicates": 0})
    );
    let a = c.append(path, &secret, lines(3, 5)).await;
    assert_eq!(
        a.expect(200),
        &json!({"next_index": 6, "accepted": 2, "duplicates": 0})
    );

    // Raw text: numbered from one past the highest stored index.
    let a = c
        .raw(
            Method::POST,
            &c.url(&format!("logs/{path}")),
            Some(&secret),
            Some("text/plain"),
            b"six\r\nseven\neight".to_vec(),
        )
        .await;
    assert_eq!(
        a.expect(200),
        &json!({"next_index": 9, "accepted": 3, "duplicates": 0})
    );

    let t = c.terminate(path, &secret, json!({})).await;
    let t = t.expect(200);
    assert_eq!(t["state"]["status"], "terminated");
    assert_eq!(t["state"]["terminal_index"], 8);
    assert!(t["state"]["terminated_at"].is_string());

    let l = c.load(path).await;
    assert_eq!(l.expect(200)["state"]["next_index"], 9);

    let entries = stored_entries(&db.url, "chromium", path);
    assert_eq!(entries.len(), 9);
    let texts: Vec<String> = entries
        .iter()
        .map(|e| match &e.content {
            logdog_schema::wire::Content::Text(l) => l
                .iter()
                .map(|l| format!("{}{}", l.value, l.delimiter))
                .collect(),
            other => panic!("not text: {other:?}"),
        })
        .collect();
    assert_eq!(
        texts,
        [
            "line 0\n", "line 1\n", "line 2\n", "line 3\n", "line 4\n", "five\n", "six\r\n",
            "seven\n", "eight"
        ]
    );
    // Default sequences count lines over the entries before.
    assert_eq!(
        entries.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        (0..9).collect::<Vec<_>>()
    );

    // The archive task was written with the termination.
    let store = logdog_schema::Store::open(&db.url, 1).unwrap();
    let task = store
        .read(|c| {
            logdog_schema::store::get_task(c, "chromium", &logdog_schema::names::stream_id(path))
        })
        .unwrap()
        .unwrap();
    assert_eq!(task.reason.as_str(), "terminated");

    // Purge: 204, data released, the stream marked purged (admins still see it).
    let p = c.delete(&format!("streams/{path}")).await;
    assert_eq!(p.status.as_u16(), 204);
    assert_eq!(c.load(path).await.expect(200)["state"]["purged"], true);
    assert!(stored_entries(&db.url, "chromium", path).is_empty());
    c.append(path, &secret, lines(9, 10))
        .await
        .expect_error(409, "conflict");
    server.stop().await;
}
both!(write_lifecycle);

async fn binary_and_datagram_streams(db: TestDb) {
    let server = TestServer::start(db.config());
    let c = server.client("p");
    let secret = c.prefix("x").await;
    let b = c
        .register("x/+/bin", &secret, json!({"stream_type": "binary"}))
        .await;
    assert_eq!(
        b.expect(201)["descriptor"]["content_type"],
        "application/octet-stream"
    );
    let a = c.append("x/+/bin", &secret, json!([{"stream_index": 0, "binary": {"data": "AAEC"}}, {"stream_index": 1, "binary": {"data": "AwQ="}}])).await;
    assert_eq!(a.expect(200)["next_index"], 2);
    let e = stored_entries(&db.url, "p", "x/+/bin");
    assert_eq!(e[1].sequence, 3, "binary sequence is the byte offset");
    assert_eq!(
        e[1].content,
        logdog_schema::wire::Content::Binary(vec![3, 4])
    );

    c.register("x/+/dg", &secret, json!({"stream_type": "datagram"}))
        .await
        .expect(201);
    let a = c
        .append("x/+/dg", &secret, json!([
            {"stream_index": 0, "datagram": {"data": "AQ==", "partial": {"index": 0, "size": 2, "last": false}}},
            {"stream_index": 1, "datagram": {"data": "Ag==", "partial": {"index": 1, "size": 2, "last": true}}},
            {"stream_index": 2, "datagram": {"data": "Aw=="}}
        ]))
        .await;
    assert_eq!(a.expect(200)["next_index"], 3);
    let seqs: Vec<u64> = stored_entries(&db.url, "p", "x/+/dg")
        .iter()
        .map(|e| e.sequence)
        .collect();
    assert_eq!(seqs, [0, 0, 1], "partials of one datagram share its number");
    server.stop().await;
}
both!(binary_and_datagram_streams);

async fn bundles_register_append_and_terminate(db: TestDb) {
    let server = TestServer::start(db.config());
    let c = server.client("p");
    let secret = c.prefix("b/1").await;
    let bundle = json!({"prefix": "b/1", "streams": [
        {"name": "stdout", "descriptor": {}, "entries": lines(0, 3), "terminal_index": 2},
        {"name": "stderr", "descriptor": {"stream_type": "text"}, "entries": lines(0, 1)},
        {"name": "missing", "entries": lines(0, 1)},
        {"name": "bad name!", "descriptor": {}, "entries": []}
    ]});
    let a = c
        .json(Method::POST, "bundles", Some(&secret), &bundle)
        .await;
    let streams = &a.expect(200)["streams"];
    assert_eq!(
        streams[0],
        json!({"name": "stdout", "next_index": 3, "accepted": 3, "duplicates": 0, "error": null})
    );
    assert_eq!(
        streams[1],
        json!({"name": "stderr", "next_index": 1, "accepted": 1, "duplicates": 0, "error": null})
    );
    assert_eq!(streams[2]["error"]["code"], "not_found");
    assert_eq!(streams[3]["error"]["code"], "invalid_argument");
    let s = c.load("b/1/+/stdout").await;
    assert_eq!(s.expect(200)["state"]["terminal_index"], 2);
    // The same bundle again: duplicates only, nothing changes.
    let a = c
        .json(Method::POST, "bundles", Some(&secret), &bundle)
        .await;
    assert_eq!(a.expect(200)["streams"][0]["duplicates"], 3);
    assert_eq!(stored_indices(&db.url, "p", "b/1/+/stdout"), [0, 1, 2]);
    // A wrong secret fails each stream, not the request.
    let a = c
        .json(Method::POST, "bundles", Some("d3Jvbmc="), &bundle)
        .await;
    assert_eq!(
        a.expect(200)["streams"][0]["error"]["code"],
        "permission_denied"
    );
    server.stop().await;
}
both!(bundles_register_append_and_terminate);

async fn delete_prefix_removes_its_streams(db: TestDb) {
    let server = TestServer::start(db.config());
    let c = server.client("p");
    let secret = c.text_stream("gone", "a").await;
    c.append("gone/+/a", &secret, lines(0, 4)).await.expect(200);
    let d = c.delete("prefixes/gone").await;
    assert_eq!(d.status.as_u16(), 204);
    c.load("gone/+/a").await.expect_error(404, "not_found");
    assert!(stored_entries(&db.url, "p", "gone/+/a").is_empty());
    // The prefix is expired: no new streams, and it cannot be registered again.
    c.register("gone/+/b", &secret, json!({}))
        .await
        .expect_error(412, "failed_precondition");
    c.json(Method::POST, "prefixes", None, &json!({"prefix": "gone"}))
        .await
        .expect_error(409, "already_exists");
    c.delete("prefixes/never")
        .await
        .expect_error(404, "not_found");
    server.stop().await;
}
both!(delete_prefix_removes_its_streams);

async fn operations_endpoints(db: TestDb) {
    let server = TestServer::start(db.config());
    let c = server.client("p");
    let secret = c.text_stream("m", "s").await;
    c.append("m/+/s", &secret, lines(0, 10)).await.expect(200);
    let get = |p: &str| c.http.get(format!("{}{p}", server.base())).send();
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    let ready = get("/readyz").await.unwrap();
    assert_eq!(ready.status(), 200);
    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("logdog_entries_ingested_total 10"),
        "{metrics}"
    );
    assert!(metrics.contains("logdog_commits_total"));
    assert!(metrics.contains("logdog_commit_batch_ops_bucket"));
    assert!(metrics.contains("logdog_live_stream_actors 1"));
    assert!(metrics.contains(r#"logdog_http_requests_total{method="POST",route="/api/v1/projects/{project}/logs/{path:.+}",status="200"} 1"#), "{metrics}");
    assert!(metrics.contains("logdog_http_request_seconds_bucket"));
    server.stop().await;
}
both!(operations_endpoints);
