//! Every error the write routes produce: status, code, API.md's precedence, and that the
//! refused request leaves stored data unchanged.

use reqwest::Method;
use serde_json::json;

use crate::both;
use crate::common::*;

async fn bad_input_is_refused_and_changes_nothing(db: TestDb) {
    let mut config = db.config();
    config.limits.max_request_bytes = 64 * 1024;
    config.limits.max_entry_bytes = 1024;
    let server = TestServer::start(config);
    let c = server.client("p");
    let secret = c.text_stream("bb/1", "out").await;
    let path = "bb/1/+/out";
    c.append(path, &secret, lines(0, 3)).await.expect(200);
    let logs = c.url(&format!("logs/{path}"));
    let before = stored_entries(&db.url, "p", path);

    // 400: malformed JSON, wrong shape, wrong entry kind, a gap without sequence, bad UTF-8.
    c.raw(
        Method::POST,
        &logs,
        Some(&secret),
        Some("application/json"),
        b"{\"entries\": [".to_vec(),
    )
    .await
    .expect_error(400, "invalid_argument");
    c.raw(
        Method::POST,
        &logs,
        Some(&secret),
        Some("application/json"),
        b"{\"lines\": []}".to_vec(),
    )
    .await
    .expect_error(400, "invalid_argument");
    c.append(
        path,
        &secret,
        json!([{"stream_index": 3, "binary": {"data": "AA=="}}]),
    )
    .await
    .expect_error(400, "invalid_argument");
    c.append(path, &secret, json!([{"stream_index": 3, "text": {"lines": ["ok"]}}, {"stream_index": 4, "datagram": {"data": ""}}])).await.expect_error(400, "invalid_argument");
    c.append(
        path,
        &secret,
        json!([{"stream_index": 7, "text": {"lines": ["gap"]}}]),
    )
    .await
    .expect_error(400, "invalid_argument");
    c.append(
        path,
        &secret,
        json!([{"stream_index": -1, "text": {"lines": ["x"]}}]),
    )
    .await
    .expect_error(400, "invalid_argument");
    c.raw(
        Method::POST,
        &logs,
        Some(&secret),
        Some("text/plain"),
        vec![0xff, 0xfe, b'\n'],
    )
    .await
    .expect_error(400, "invalid_argument");
    c.raw(
        Method::POST,
        &logs,
        Some(&secret),
        Some("application/x-www-form-urlencoded"),
        b"a=b".to_vec(),
    )
    .await
    .expect_error(400, "invalid_argument");
    // 400: invalid names in the URL and in bodies.
    c.append("bb/1/+/bad name", &secret, lines(0, 1))
        .await
        .expect_error(400, "invalid_argument");
    c.append("bb//1/+/out", &secret, lines(0, 1))
        .await
        .expect_error(400, "invalid_argument");
    c.append("bb/1/out", &secret, lines(0, 1))
        .await
        .expect_error(400, "invalid_argument");
    Client::new(&server.base(), "Bad")
        .append(path, &secret, lines(0, 1))
        .await
        .expect_error(400, "invalid_argument");
    c.json(Method::POST, "prefixes", None, &json!({"prefix": "/abs"}))
        .await
        .expect_error(400, "invalid_argument");
    c.json(
        Method::POST,
        "prefixes",
        None,
        &json!({"prefix": "ok", "op_nonce": "c2hvcnQ="}),
    )
    .await
    .expect_error(400, "invalid_argument");
    c.json(
        Method::POST,
        "prefixes",
        None,
        &json!({"prefix": "ok", "bogus": 1}),
    )
    .await
    .expect_error(400, "invalid_argument");
    c.register("bb/1/+/new", &secret, json!({"stream_type": "video"}))
        .await
        .expect_error(400, "invalid_argument");
    c.register("bb/1/+/new", &secret, json!({"tags": {"bad key": "v"}}))
        .await
        .expect_error(400, "invalid_argument");
    c.terminate(path, &secret, json!({"terminal_index": -1}))
        .await
        .expect_error(400, "invalid_argument");
    c.terminate(path, &secret, json!({"terminal_index": "two"}))
        .await
        .expect_error(400, "invalid_argument");

    // 403: wrong, missing and non-base64 secrets.
    c.append(path, "d3Jvbmc=", lines(3, 4))
        .await
        .expect_error(403, "permission_denied");
    c.raw(
        Method::POST,
        &logs,
        None,
        Some("application/json"),
        br#"{"entries": []}"#.to_vec(),
    )
    .await
    .expect_error(403, "permission_denied");
    c.append(path, "not base64!!", lines(3, 4))
        .await
        .expect_error(403, "permission_denied");
    c.terminate(path, "d3Jvbmc=", json!({}))
        .await
        .expect_error(403, "permission_denied");
    c.register("bb/1/+/other", "d3Jvbmc=", json!({}))
        .await
        .expect_error(403, "permission_denied");

    // 404: unknown streams and routes; 405: known routes, other methods.
    c.append("bb/1/+/nope", &secret, lines(0, 1))
        .await
        .expect_error(404, "not_found");
    c.terminate("bb/1/+/nope", &secret, json!({}))
        .await
        .expect_error(404, "not_found");
    c.load("bb/1/+/nope").await.expect_error(404, "not_found");
    c.delete("streams/bb/1/+/nope")
        .await
        .expect_error(404, "not_found");
    c.raw(
        Method::GET,
        &format!("{}/api/v2/nothing", server.base()),
        None,
        None,
        vec![],
    )
    .await
    .expect_error(404, "not_found");
    c.raw(Method::PUT, &logs, Some(&secret), None, vec![])
        .await
        .expect_error(405, "method_not_allowed");
    c.raw(Method::GET, &c.url("bundles"), None, None, vec![])
        .await
        .expect_error(405, "method_not_allowed");

    // 409: duplicate prefix, a different descriptor, entries beyond the terminal index,
    // terminating below a stored entry, a different terminal index.
    c.json(Method::POST, "prefixes", None, &json!({"prefix": "bb/1"}))
        .await
        .expect_error(409, "already_exists");
    c.register(path, &secret, json!({"content_type": "text/html"}))
        .await
        .expect_error(409, "already_exists");
    c.register(path, &secret, json!({"stream_type": "binary"}))
        .await
        .expect_error(409, "already_exists");
    c.terminate(path, &secret, json!({"terminal_index": 1}))
        .await
        .expect_error(409, "conflict");
    c.terminate(path, &secret, json!({"terminal_index": 4}))
        .await
        .expect(200);
    c.append(path, &secret, json!([{"stream_index": 3, "text": {"lines": ["ok"]}}, {"stream_index": 5, "sequence": 5, "text": {"lines": ["beyond"]}}]))
        .await
        .expect_error(409, "conflict");
    c.terminate(path, &secret, json!({"terminal_index": 5}))
        .await
        .expect_error(409, "conflict");

    // 412: no such prefix.
    c.register("zz/+/s", &secret, json!({}))
        .await
        .expect_error(412, "failed_precondition");
    c.append("zz/+/s", &secret, lines(0, 1))
        .await
        .expect_error(412, "failed_precondition");

    // 413: a body over the limit (declared or streamed), an entry over the entry limit.
    let big = vec![b'x'; 65 * 1024];
    c.raw(
        Method::POST,
        &logs,
        Some(&secret),
        Some("text/plain"),
        big.clone(),
    )
    .await
    .expect_error(413, "payload_too_large");
    let stream_body = reqwest::Body::wrap_stream(futures::stream::iter(vec![Ok::<
        _,
        std::io::Error,
    >(big.clone())]));
    let res = c
        .http
        .post(&logs)
        .header("X-Prefix-Secret", &secret)
        .header("Content-Type", "text/plain")
        .body(stream_body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 413);
    let long_line = "y".repeat(2000);
    c.append(
        path,
        &secret,
        json!([{"stream_index": 3, "text": {"lines": [long_line]}}]),
    )
    .await
    .expect_error(413, "payload_too_large");
    c.json(Method::POST, "bundles", Some(&secret), &json!({"prefix": "bb/1", "streams": [{"name": "out", "entries": [{"stream_index": 3, "text": {"lines": ["z".repeat(70_000)]}}]}]}))
        .await
        .expect_error(413, "payload_too_large");
    // Objects given as arrays (serde would read them by position): 400, the body is
    // malformed.
    for (verb, rest, body) in [
        (
            Method::POST,
            "bundles",
            json!({"prefix": "bb/1", "streams": [{"name": "new", "descriptor": [null, null], "entries": []}]}),
        ),
        (
            Method::POST,
            "bundles",
            json!({"prefix": "bb/1", "streams": [["out", null, [], null]]}),
        ),
        (
            Method::POST,
            &format!("logs/{path}") as &str,
            json!({"entries": [[3, null, null, null, {"lines": ["x"]}]]}),
        ),
        (
            Method::POST,
            &format!("logs/{path}") as &str,
            json!({"entries": [{"stream_index": 3, "text": [["x"]]}]}),
        ),
        (
            Method::PUT,
            "streams/bb/1/+/arrayed",
            json!({"descriptor": ["text"]}),
        ),
    ] {
        let a = c.json(verb, rest, Some(&secret), &body).await;
        a.expect_error(400, "invalid_argument");
        let message = a.body["error"]["message"].as_str().unwrap();
        assert!(message.contains("expected an object"), "{rest}: {message}");
    }

    assert_eq!(
        stored_entries(&db.url, "p", path),
        before,
        "refused requests stored nothing"
    );
    assert_eq!(c.load(path).await.expect(200)["state"]["next_index"], 3);
    server.stop().await;
}
both!(bad_input_is_refused_and_changes_nothing);

async fn errors_follow_the_documented_precedence(db: TestDb) {
    let mut config = db.config();
    config.limits.max_request_bytes = 1024;
    let server = TestServer::start(config);
    let c = server.client("p");
    let secret = c.text_stream("pre", "s").await;
    let big = vec![b' '; 2048];
    // 413 before a malformed name.
    c.raw(
        Method::POST,
        &c.url("logs/bad name/+/x"),
        Some(&secret),
        Some("application/json"),
        big,
    )
    .await
    .expect_error(413, "payload_too_large");
    // 400 (name) before 412 (prefix).
    c.append("nopre/+/bad name", &secret, lines(0, 1))
        .await
        .expect_error(400, "invalid_argument");
    // 412 (prefix) before 403 (secret).
    c.append("nopre/+/s", "d3Jvbmc=", lines(0, 1))
        .await
        .expect_error(412, "failed_precondition");
    // 403 (secret) before 404 (stream).
    c.append("pre/+/nope", "d3Jvbmc=", lines(0, 1))
        .await
        .expect_error(403, "permission_denied");
    // 404 (stream) before 400 (body).
    c.raw(
        Method::POST,
        &c.url("logs/pre/+/nope"),
        Some(&secret),
        Some("application/json"),
        b"{oops".to_vec(),
    )
    .await
    .expect_error(404, "not_found");
    // 400 (body) before 409 (state).
    c.terminate("pre/+/s", &secret, json!({"terminal_index": 0}))
        .await
        .expect(200);
    c.raw(
        Method::POST,
        &c.url("logs/pre/+/s"),
        Some(&secret),
        Some("application/json"),
        b"{oops".to_vec(),
    )
    .await
    .expect_error(400, "invalid_argument");
    server.stop().await;
}
both!(errors_follow_the_documented_precedence);

async fn expired_prefix_stops_new_streams_only(db: TestDb) {
    let server = TestServer::start(db.config());
    let c = server.client("p");
    let a = c
        .json(
            Method::POST,
            "prefixes",
            None,
            &json!({"prefix": "short", "expiration": 0.3}),
        )
        .await;
    let secret = a.expect(201)["secret"].as_str().unwrap().to_owned();
    c.register("short/+/early", &secret, json!({}))
        .await
        .expect(201);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    c.register("short/+/late", &secret, json!({}))
        .await
        .expect_error(412, "failed_precondition");
    // The existing stream keeps accepting appends and termination.
    c.append("short/+/early", &secret, lines(0, 2))
        .await
        .expect(200);
    c.register("short/+/early", &secret, json!({}))
        .await
        .expect(200);
    c.terminate("short/+/early", &secret, json!({}))
        .await
        .expect(200);
    assert_eq!(stored_indices(&db.url, "p", "short/+/early"), [0, 1]);
    server.stop().await;
}
both!(expired_prefix_stops_new_streams_only);

async fn declared_projects_hide_the_others(db: TestDb) {
    let mut config = db.config();
    config.projects = vec![logdog::config::ProjectConfig {
        name: "chromium".into(),
        public: false,
        prefix_expiration: Some(logdog::config::secs(60.0)),
        archive: None,
    }];
    let server = TestServer::start(config);
    let known = server.client("chromium");
    let a = known
        .json(
            Method::POST,
            "prefixes",
            None,
            &json!({"prefix": "x", "expiration": 3600}),
        )
        .await;
    // The project's expiration is smaller than the request's, so it wins.
    let expires =
        chrono::DateTime::parse_from_rfc3339(a.expect(201)["expires_at"].as_str().unwrap())
            .unwrap();
    let left = expires.timestamp() - chrono::Utc::now().timestamp();
    assert!((55..=60).contains(&left), "{left}");
    let unknown = server.client("other");
    unknown
        .json(Method::POST, "prefixes", None, &json!({"prefix": "x"}))
        .await
        .expect_error(403, "permission_denied");
    unknown
        .load("x/+/y")
        .await
        .expect_error(403, "permission_denied");
    server.stop().await;
}
both!(declared_projects_hide_the_others);

#[tokio::test]
async fn no_positive_expiration_is_refused() {
    let db = TestDb::sqlite();
    let mut config = db.config();
    config.prefix_expiration = logdog::config::secs(0.0);
    let server = TestServer::start(config);
    let c = server.client("p");
    c.json(Method::POST, "prefixes", None, &json!({"prefix": "x"}))
        .await
        .expect_error(400, "invalid_argument");
    c.json(
        Method::POST,
        "prefixes",
        None,
        &json!({"prefix": "x", "expiration": 10}),
    )
    .await
    .expect(201);
    server.stop().await;
}

#[tokio::test]
async fn local_mode_refuses_non_loopback_addresses() {
    let db = TestDb::sqlite();
    let mut config = db.config();
    config.listen = "0.0.0.0:0".into();
    let e = TestServer::try_start(config).err().unwrap();
    assert!(e.contains("0.0.0.0:0") && e.contains("loopback"), "{e}");
    let mut config = db.config();
    config.tokens = vec![logdog::config::TokenConfig {
        sha256: "00".into(),
        role: "admin".parse().unwrap(),
        projects: None,
    }];
    let e = TestServer::try_start(config).err().unwrap();
    assert!(e.contains("tokens.sha256"), "{e}");
}

async fn prefix_ingest_rate_answers_429_and_stores_nothing(db: TestDb) {
    let mut config = db.config();
    config.limits.prefix_lines_per_second = 10.0;
    let server = TestServer::start(config);
    let c = server.client("p");
    let secret = c.text_stream("rate", "s").await;
    c.append("rate/+/s", &secret, lines(0, 5)).await.expect(200);
    // A positive bucket lets one more batch through, into debt…
    c.append("rate/+/s", &secret, lines(5, 20))
        .await
        .expect(200);
    // …and the next is refused until the debt is repaid.
    let url = c.url("logs/rate/+/s");
    let res = c
        .http
        .post(&url)
        .header("X-Prefix-Secret", &secret)
        .header("Content-Type", "text/plain")
        .body("x\n")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 429);
    assert!(
        res.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    let bundle = json!({"prefix": "rate", "streams": [{"name": "s", "entries": lines(105, 106)}]});
    c.json(Method::POST, "bundles", Some(&secret), &bundle)
        .await
        .expect_error(429, "resource_exhausted");
    assert_eq!(
        stored_indices(&db.url, "p", "rate/+/s"),
        (0..20).collect::<Vec<_>>(),
        "refused requests store nothing"
    );
    // Other prefixes have their own budget.
    let other = c.text_stream("rate2", "s").await;
    c.append("rate2/+/s", &other, lines(0, 3)).await.expect(200);
    server.stop().await;
}
both!(prefix_ingest_rate_answers_429_and_stores_nothing);
