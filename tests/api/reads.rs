//! The Logs API: Get (caps, gaps, non_contiguous, state), Tail, the text form and follow,
//! Query (globs, tags, filters, paging under concurrent inserts), and the prefix listing.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{json, Value};

use crate::both;
use crate::common::*;

async fn get(c: &Client, rest: impl Into<String>) -> Answer {
    c.raw(Method::GET, &c.url(&rest.into()), None, None, vec![])
        .await
}

fn indices(body: &Value) -> Vec<u64> {
    body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["stream_index"].as_u64().unwrap())
        .collect()
}

async fn get_applies_caps_and_stops_at_gaps(db: TestDb) {
    let mut config = db.config();
    config.limits.get_default_count = 4;
    config.limits.get_max_count = 6;
    let server = TestServer::start(config);
    let c = server.client("p");
    let secret = c.text_stream("g", "s").await;
    // 0..10, then 12..14 after a gap at 10 and 11. Each line "line N\n" is 7 bytes (N < 10).
    c.append("g/+/s", &secret, lines(0, 10)).await.expect(200);
    c.append("g/+/s", &secret, json!([{"stream_index": 12, "sequence": 12, "text": {"lines": ["twelve"]}},
                                      {"stream_index": 13, "sequence": 13, "text": {"lines": ["thirteen"]}}])).await.expect(200);
    let a = get(&c, "logs/g/+/s").await;
    let b = a.expect(200);
    assert_eq!(indices(b), [0, 1, 2, 3], "default count from the config");
    assert_eq!(b["next_index"], 4);
    assert_eq!(b["project"], "p");
    assert_eq!(b["path"], "g/+/s");
    assert!(b.get("state").is_none() && b.get("descriptor").is_none());
    assert_eq!(
        b["entries"][1],
        json!({"stream_index": 1, "prefix_index": null, "sequence": 1,
        "time_offset": b["entries"][1]["time_offset"], "text": {"lines": [{"value": "line 1", "delimiter": "\n"}]}})
    );
    assert_eq!(
        indices(get(&c, "logs/g/+/s?index=2&count=100").await.expect(200)),
        [2, 3, 4, 5, 6, 7],
        "count is capped"
    );
    // Stops at the first gap (next_index 10) unless non_contiguous.
    let a = get(&c, "logs/g/+/s?index=8&count=6").await;
    assert_eq!(indices(a.expect(200)), [8, 9]);
    assert_eq!(a.body["next_index"], 10);
    let a = get(&c, "logs/g/+/s?index=8&count=6&non_contiguous=true").await;
    assert_eq!(indices(a.expect(200)), [8, 9, 12, 13]);
    assert_eq!(a.body["next_index"], 14);
    // Nothing at or after the gap: empty, next_index = index.
    let a = get(&c, "logs/g/+/s?index=10").await;
    assert_eq!(indices(a.expect(200)), Vec::<u64>::new());
    assert_eq!(a.body["next_index"], 10);
    // bytes: entries while the total stays within the cap; the first one always.
    assert_eq!(
        indices(get(&c, "logs/g/+/s?bytes=14").await.expect(200)),
        [0, 1]
    );
    assert_eq!(
        indices(get(&c, "logs/g/+/s?bytes=15").await.expect(200)),
        [0, 1]
    );
    assert_eq!(
        indices(get(&c, "logs/g/+/s?bytes=1").await.expect(200)),
        [0]
    );
    let s = get(&c, "logs/g/+/s?state=true&count=1").await;
    assert_eq!(s.expect(200)["state"]["next_index"], 10);
    assert_eq!(s.body["descriptor"]["stream_type"], "text");
    get(&c, "logs/g/+/s?count=x")
        .await
        .expect_error(400, "invalid_argument");
    get(&c, "logs/g/+/s?bogus=1")
        .await
        .expect_error(400, "invalid_argument");
    get(&c, "logs/g/+/s?format=xml")
        .await
        .expect_error(400, "invalid_argument");
    get(&c, "logs/g/+/nope")
        .await
        .expect_error(404, "not_found");

    // Tail: the last contiguous entry, or the last N.
    let t = get(&c, "tail/g/+/s").await;
    assert_eq!(indices(t.expect(200)), [9]);
    assert_eq!(t.body["next_index"], 10);
    assert_eq!(
        indices(get(&c, "tail/g/+/s?count=3").await.expect(200)),
        [7, 8, 9]
    );
    assert_eq!(
        indices(get(&c, "tail/g/+/s?count=50").await.expect(200)),
        [4, 5, 6, 7, 8, 9],
        "the last get_max_count"
    );
    assert_eq!(
        get(&c, "tail/g/+/s?count=2&format=text").await.expect(200),
        &json!("line 8\nline 9\n")
    );
    server.stop().await;
}
both!(get_applies_caps_and_stops_at_gaps);

/// Get's binary form (`Accept: application/x-logdog-entries`) answers the very entries JSON
/// does, `next_index` in a header, read here with the client's own reader; `state=true`
/// with it is refused.
async fn binary_entries_match_json(db: TestDb) {
    let server = TestServer::start(db.config());
    let c = server.client("p");
    let secret = c.text_stream("b", "s").await;
    c.append("b/+/s", &secret, lines(0, 10)).await.expect(200);
    c.append(
        "b/+/s",
        &secret,
        json!([{"stream_index": 12, "sequence": 12, "text": {"lines": ["twelve", {"value": "x", "delimiter": ""}]}}]),
    )
    .await
    .expect(200);
    let binary = |q: &str| {
        let mut r = c
            .http
            .get(c.url(&format!("logs/b/+/s?{q}")))
            .header("Accept", "text/plain;q=0.5, application/x-logdog-entries");
        if let Some(t) = &c.token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    for q in [
        "index=2&count=5",
        "index=8",
        "index=8&non_contiguous=true",
        "index=10",
        "bytes=1",
    ] {
        let json = get(&c, format!("logs/b/+/s?{q}")).await;
        let want: Vec<logdog_schema::wire::Entry> = json.expect(200)["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                serde_json::from_value::<logdog_schema::wire::LogEntry>(e.clone())
                    .unwrap()
                    .into_entry()
                    .unwrap()
            })
            .collect();
        // The JSON answer's next_index is in its X-Logdog-Next-Index header too.
        let mut r = c.http.get(c.url(&format!("logs/b/+/s?{q}")));
        if let Some(t) = &c.token {
            r = r.bearer_auth(t);
        }
        let res = r.send().await.unwrap();
        assert_eq!(res.status(), 200, "{q}");
        assert_eq!(
            res.headers()["x-logdog-next-index"].to_str().unwrap(),
            json.body["next_index"].to_string(),
            "{q}"
        );
        let res = binary(q).await.unwrap();
        assert_eq!(res.status(), 200, "{q}");
        let headers = res.headers().clone();
        assert_eq!(headers["content-type"], "application/x-logdog-entries");
        let body = res.bytes().await.unwrap();
        let page = logdog::client::api::EntriesPage::read(&headers, &body).unwrap();
        assert_eq!(page.entries, want, "{q}");
        assert_eq!(
            page.next_index,
            json.body["next_index"].as_u64().unwrap(),
            "{q}"
        );
    }
    let res = binary("state=true").await.unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_argument");
}

both!(binary_entries_match_json);

async fn text_and_raw_forms(db: TestDb) {
    let server = TestServer::start(db.config());
    let c = server.client("p");
    let secret = c.text_stream("t", "s").await;
    c.raw(
        Method::POST,
        &c.url("logs/t/+/s"),
        Some(&secret),
        Some("text/plain"),
        b"one\r\ntwo\npartial".to_vec(),
    )
    .await
    .expect(200);
    c.append(
        "t/+/s",
        &secret,
        json!([{"stream_index": 3, "text": {"lines": [{"value": " line", "delimiter": "\n"}]}}]),
    )
    .await
    .expect(200);
    let res = c
        .http
        .get(c.url("logs/t/+/s?format=text"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(res.text().await.unwrap(), "one\r\ntwo\npartial line\n");
    let res = c
        .http
        .get(c.url("logs/t/+/s?format=raw&index=1&count=2"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.text().await.unwrap(), "two\npartial");
    // The web route serves the same text to non-browsers.
    let res = c
        .http
        .get(format!("{}/logs/p/t/+/s", server.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.text().await.unwrap(), "one\r\ntwo\npartial line\n");

    c.register("t/+/bin", &secret, json!({"stream_type": "binary"}))
        .await
        .expect(201);
    c.append("t/+/bin", &secret, json!([{"stream_index": 0, "binary": {"data": "AAEC"}}, {"stream_index": 1, "binary": {"data": "/w=="}}])).await.expect(200);
    let res = c
        .http
        .get(c.url("logs/t/+/bin?format=raw"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-type"], "application/octet-stream");
    assert_eq!(res.bytes().await.unwrap().to_vec(), vec![0, 1, 2, 255]);
    server.stop().await;
}
both!(text_and_raw_forms);

async fn follow_streams_until_the_terminal_entry(db: TestDb) {
    let server = TestServer::start(db.config());
    let c = server.client("p");
    let secret = c.text_stream("f", "s").await;
    c.append("f/+/s", &secret, lines(0, 2)).await.expect(200);
    let url = format!("{}/logs/p/f/+/s?follow=true", server.base());
    let reader = tokio::spawn({
        let http = c.http.clone();
        async move { http.get(url).send().await.unwrap().text().await.unwrap() }
    });
    // Writes while the follower waits: out of order, then the gap, then termination.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    c.append(
        "f/+/s",
        &secret,
        json!([{"stream_index": 4, "sequence": 4, "text": {"lines": ["line 4"]}}]),
    )
    .await
    .expect(200);
    c.append("f/+/s", &secret, lines(2, 4)).await.expect(200);
    c.terminate("f/+/s", &secret, json!({"terminal_index": 5}))
        .await
        .expect(200);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(
        !reader.is_finished(),
        "the follow ends only after the terminal entry"
    );
    c.append("f/+/s", &secret, lines(5, 6)).await.expect(200);
    let text = tokio::time::timeout(std::time::Duration::from_secs(10), reader)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        text,
        (0..6).map(|i| format!("line {i}\n")).collect::<String>()
    );
    // Following a finished stream returns at once.
    let done = c
        .http
        .get(format!(
            "{}/logs/p/f/+/s?follow=true&index=4",
            server.base()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(done.text().await.unwrap(), "line 4\nline 5\n");
    server.stop().await;
}
both!(follow_streams_until_the_terminal_entry);

async fn query_filters_by_glob_tag_and_state(db: TestDb) {
    let server = TestServer::start(db.config());
    let c = server.client("p");
    let secret = c.prefix("q/1").await;
    for (name, tags, ty) in [
        ("stdout", json!({"step": "compile", "bot": "linux"}), "text"),
        ("stderr", json!({"step": "compile"}), "text"),
        (
            "steps/compile/stdout",
            json!({"step": "compile", "bot": ""}),
            "text",
        ),
        ("steps/test/stdout", json!({"step": "test"}), "text"),
        ("steps/test/data", json!({}), "binary"),
        ("ab", json!({}), "text"),
        ("a/b", json!({}), "text"),
    ] {
        c.register(
            &format!("q/1/+/{name}"),
            &secret,
            json!({"tags": tags, "stream_type": ty}),
        )
        .await
        .expect(201);
    }
    let other = c.prefix("q/2").await;
    c.register("q/2/+/stdout", &other, json!({}))
        .await
        .expect(201);
    c.terminate("q/1/+/stderr", &secret, json!({}))
        .await
        .expect(200);
    c.delete("streams/q/1/+/ab").await;

    let names = |a: &Answer| -> Vec<String> {
        a.expect(200)["streams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["path"].as_str().unwrap().to_owned())
            .collect()
    };
    let q = |qs: &str| get(&c, format!("streams?{qs}"));
    assert_eq!(
        names(&q("prefix=q/1").await),
        [
            "q/1/+/a/b",
            "q/1/+/stderr",
            "q/1/+/stdout",
            "q/1/+/steps/compile/stdout",
            "q/1/+/steps/test/data",
            "q/1/+/steps/test/stdout"
        ]
    );
    assert_eq!(
        names(&q("").await).len(),
        7,
        "all prefixes, purged left out"
    );
    assert_eq!(
        names(&q("prefix=q/1&name=std*").await),
        ["q/1/+/stderr", "q/1/+/stdout"]
    );
    assert_eq!(
        names(&q("prefix=q/1&name=steps/*/stdout").await),
        ["q/1/+/steps/compile/stdout", "q/1/+/steps/test/stdout"]
    );
    assert_eq!(
        names(&q("prefix=q/1&name=**/stdout").await),
        [
            "q/1/+/stdout",
            "q/1/+/steps/compile/stdout",
            "q/1/+/steps/test/stdout"
        ]
    );
    assert_eq!(names(&q("prefix=q/1&name=steps/**").await).len(), 3);
    assert_eq!(
        names(&q("prefix=q/1&name=a/**").await),
        ["q/1/+/a/b"],
        "a/** matches a and a/b but not ab"
    );
    assert_eq!(
        names(&q("name=stdout").await),
        ["q/1/+/stdout", "q/2/+/stdout"]
    );
    assert_eq!(
        names(&q("prefix=q/1&tag=step=compile").await),
        ["q/1/+/stderr", "q/1/+/stdout", "q/1/+/steps/compile/stdout"]
    );
    assert_eq!(
        names(&q("prefix=q/1&tag=step=compile&tag=bot").await),
        ["q/1/+/stdout", "q/1/+/steps/compile/stdout"],
        "tag=k: key present, even empty"
    );
    assert_eq!(
        names(&q("prefix=q/1&tag=step=compile&tag=bot=linux").await),
        ["q/1/+/stdout"]
    );
    assert_eq!(
        names(&q("prefix=q/1&status=terminated").await),
        ["q/1/+/stderr"]
    );
    assert_eq!(names(&q("prefix=q/1&status=streaming").await).len(), 5);
    assert_eq!(
        names(&q("prefix=q/1&stream_type=binary").await),
        ["q/1/+/steps/test/data"]
    );
    assert_eq!(
        names(&q("prefix=q/1&content_type=application/octet-stream").await),
        ["q/1/+/steps/test/data"]
    );
    assert_eq!(names(&q("prefix=q/1&purged=yes").await), ["q/1/+/ab"]);
    assert_eq!(names(&q("prefix=q/1&purged=both").await).len(), 7);
    for bad in [
        "name=a**",
        "name=",
        "status=done",
        "stream_type=video",
        "purged=maybe",
        "limit=0",
        "limit=501",
        "cursor=!!",
        "tag=bad key",
        "sort=path",
        "prefix=/x",
    ] {
        q(bad).await.expect_error(400, "invalid_argument");
    }
    let page = q("prefix=q/1&limit=4").await;
    assert_eq!(names(&page).len(), 4);
    let cursor = page.body["next_cursor"].as_str().unwrap().to_owned();
    let rest = q(&format!("prefix=q/1&limit=4&cursor={cursor}")).await;
    assert_eq!(
        names(&rest),
        ["q/1/+/steps/test/data", "q/1/+/steps/test/stdout"]
    );
    assert!(rest.body["next_cursor"].is_null());
    server.stop().await;
}
both!(query_filters_by_glob_tag_and_state);

async fn query_pages_are_stable_under_concurrent_inserts(db: TestDb) {
    let server = TestServer::start(db.config());
    let c = server.client("p");
    let secret = c.prefix("page").await;
    let mut expected = BTreeSet::new();
    let tasks: Vec<_> = (0..8)
        .map(|w| {
            let (c, secret) = (c.clone(), secret.clone());
            tokio::spawn(async move {
                for i in (w..1200).step_by(8) {
                    c.register(&format!("page/+/s{i:04}"), &secret, json!({}))
                        .await
                        .expect(201);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    for i in 0..1200 {
        expected.insert(format!("page/+/s{i:04}"));
    }
    // New streams keep arriving (before, between and after the existing ones) while we page.
    let inserter = tokio::spawn({
        let (c, secret) = (c.clone(), secret.clone());
        async move {
            for i in 0..300 {
                c.register(
                    &format!("page/+/s{:04}x", (i * 7) % 1200),
                    &secret,
                    json!({}),
                )
                .await
                .expect(201);
            }
        }
    });
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let qs = match &cursor {
            Some(cur) => format!("streams?prefix=page&limit=97&cursor={cur}"),
            None => "streams?prefix=page&limit=97".to_owned(),
        };
        let a = get(&c, &qs).await;
        for s in a.expect(200)["streams"].as_array().unwrap() {
            seen.push(s["path"].as_str().unwrap().to_owned());
        }
        match a.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    inserter.await.unwrap();
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "ordered by path, no repeats"
    );
    let seen: BTreeSet<String> = seen.into_iter().collect();
    assert!(
        expected.is_subset(&seen),
        "missing: {:?}",
        expected.difference(&seen).take(5).collect::<Vec<_>>()
    );
    server.stop().await;
}
both!(query_pages_are_stable_under_concurrent_inserts);

async fn prefixes_are_listed(db: TestDb) {
    let server = TestServer::start(db.config());
    let c = server.client("p");
    for p in ["bb", "bb/1", "bb/2", "bb/2/x", "bbc", "ci/9"] {
        c.prefix(p).await;
    }
    let list = |qs: &str| get(&c, format!("prefixes{qs}"));
    let names = |a: &Answer| -> Vec<String> {
        a.expect(200)["prefixes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["prefix"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        names(&list("").await),
        ["bb", "bb/1", "bb/2", "bb/2/x", "bbc", "ci/9"]
    );
    assert_eq!(
        names(&list("?under=bb").await),
        ["bb", "bb/1", "bb/2", "bb/2/x"],
        "bbc is not below bb/"
    );
    assert_eq!(names(&list("?under=bb/2").await), ["bb/2", "bb/2/x"]);
    let a = list("?limit=2").await;
    assert_eq!(names(&a), ["bb", "bb/1"]);
    assert!(
        a.body["prefixes"][0]["created"].is_string()
            && a.body["prefixes"][0]["expires_at"].is_string()
    );
    let next = a.body["next_cursor"].as_str().unwrap().to_owned();
    assert_eq!(
        names(&list(&format!("?limit=10&cursor={next}")).await),
        ["bb/2", "bb/2/x", "bbc", "ci/9"]
    );
    list("?under=/bad")
        .await
        .expect_error(400, "invalid_argument");
    list("?limit=0").await.expect_error(400, "invalid_argument");
    server.stop().await;
}
both!(prefixes_are_listed);
