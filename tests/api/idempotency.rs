//! Retries are safe: the same entries, registration, termination and prefix (op_nonce).

use base64::Engine as _;
use reqwest::Method;
use serde_json::json;

use crate::both;
use crate::common::*;

async fn retries_are_idempotent(db: TestDb) {
    let server = TestServer::start(db.config());
    let c = server.client("p");
    let nonce = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let first = c
        .json(
            Method::POST,
            "prefixes",
            None,
            &json!({"prefix": "r/1", "op_nonce": nonce}),
        )
        .await;
    let first = first.expect(201).clone();
    let retry = c
        .json(
            Method::POST,
            "prefixes",
            None,
            &json!({"prefix": "r/1", "op_nonce": nonce}),
        )
        .await;
    assert_eq!(
        retry.expect(200),
        &first,
        "a nonce retry gets the same secret"
    );
    let other = base64::engine::general_purpose::STANDARD.encode([8u8; 32]);
    c.json(
        Method::POST,
        "prefixes",
        None,
        &json!({"prefix": "r/1", "op_nonce": other}),
    )
    .await
    .expect_error(409, "already_exists");
    c.json(Method::POST, "prefixes", None, &json!({"prefix": "r/1"}))
        .await
        .expect_error(409, "already_exists");
    let secret = first["secret"].as_str().unwrap();

    let path = "r/1/+/s";
    let reg = c
        .register(path, secret, json!({"tags": {"a": "1"}}))
        .await
        .expect(201)
        .clone();
    // Only type and content type are compared: other descriptor fields may differ.
    let again = c.register(path, secret, json!({"tags": {"b": "2"}})).await;
    assert_eq!(again.expect(200)["descriptor"], reg["descriptor"]);

    assert_eq!(
        c.append(path, secret, lines(0, 5)).await.expect(200),
        &json!({"next_index": 5, "accepted": 5, "duplicates": 0})
    );
    assert_eq!(
        c.append(path, secret, lines(0, 5)).await.expect(200),
        &json!({"next_index": 5, "accepted": 0, "duplicates": 5})
    );
    assert_eq!(
        c.append(path, secret, lines(3, 7)).await.expect(200),
        &json!({"next_index": 7, "accepted": 2, "duplicates": 2})
    );
    // A duplicate index inside one request counts once.
    let dup = json!([{"stream_index": 7, "text": {"lines": ["a"]}}, {"stream_index": 7, "text": {"lines": ["a"]}}]);
    assert_eq!(
        c.append(path, secret, dup).await.expect(200),
        &json!({"next_index": 8, "accepted": 1, "duplicates": 1})
    );

    let t1 = c
        .terminate(path, secret, json!({"terminal_index": 7}))
        .await
        .expect(200)
        .clone();
    let t2 = c
        .terminate(path, secret, json!({"terminal_index": 7}))
        .await
        .expect(200)
        .clone();
    assert_eq!(t1, t2);
    let t3 = c
        .terminate(path, secret, json!({}))
        .await
        .expect(200)
        .clone();
    assert_eq!(t1, t3);
    // Registration with the same terminal index is idempotent too.
    let r = c
        .json(
            Method::PUT,
            &format!("streams/{path}"),
            Some(secret),
            &json!({"descriptor": {}, "terminal_index": 7}),
        )
        .await;
    assert_eq!(r.expect(200)["state"]["terminal_index"], 7);
    assert_eq!(
        stored_indices(&db.url, "p", path),
        (0..8).collect::<Vec<_>>()
    );
    server.stop().await;
}
both!(retries_are_idempotent);
