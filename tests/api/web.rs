//! The web app over plain HTTP: the same `/logs/…` URL serves the viewer page to browsers
//! and the text to everything else; the pages and assets are embedded and cacheable.

use reqwest::header;
use serde_json::json;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_assets_and_content_negotiation() {
    let db = TestDb::sqlite();
    let server = TestServer::start(db.config());
    let base = server.base();
    let c = server.client("p");
    let secret = c.prefix("n/1").await;
    c.register("n/1/+/s", &secret, json!({})).await.expect(201);
    c.append("n/1/+/s", &secret, lines(0, 2)).await.expect(200);
    let http = reqwest::Client::new();
    let get = |url: String, accept: &'static str| {
        let http = http.clone();
        async move {
            let r = http
                .get(url)
                .header(header::ACCEPT, accept)
                .send()
                .await
                .unwrap();
            let ct = r.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .to_owned();
            (r.status().as_u16(), ct, r.text().await.unwrap())
        }
    };
    let url = format!("{base}/logs/p/n/1/+/s");
    let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    let (status, ct, body) = get(url.clone(), browser).await;
    assert_eq!((status, ct.as_str()), (200, "text/html; charset=utf-8"));
    assert!(body.contains("/static/viewer.js"), "{body}");
    for (u, accept) in [
        (url.clone(), "*/*"),
        (format!("{url}?format=text"), browser),
        (format!("{url}?format=raw"), browser),
    ] {
        let (status, ct, body) = get(u.clone(), accept).await;
        assert_eq!(status, 200, "{u}");
        assert!(ct.starts_with("text/plain"), "{u}: {ct}");
        assert_eq!(body, "line 0\nline 1\n", "{u}");
    }
    let (status, ct, body) = get(format!("{base}/"), browser).await;
    assert_eq!((status, ct.as_str()), (200, "text/html; charset=utf-8"));
    assert!(body.contains("/static/index.js"));

    for (name, ct) in [
        ("viewer.js", "text/javascript; charset=utf-8"),
        ("ansi.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
    ] {
        let r = http
            .get(format!("{base}/static/{name}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()[header::CONTENT_TYPE], ct);
        let etag = r.headers()[header::ETAG].clone();
        let again = http
            .get(format!("{base}/static/{name}"))
            .header(header::IF_NONE_MATCH, etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{name}");
    }
    let r = http
        .get(format!("{base}/static/nope.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["error"]["code"],
        "not_found"
    );
    server.stop().await;
}

/// Browsers cannot set headers on a websocket: the watch route also takes the token as
/// `access_token`; other routes do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_route_takes_a_token_in_the_query() {
    let db = TestDb::sqlite();
    let server = TestServer::start(private_project(db.config(), "admin-token", "admin"));
    let base = server.base();
    let c = server.client("p").with_token(Some("admin-token"));
    let secret = c.prefix("t/1").await;
    c.register("t/1/+/s", &secret, json!({})).await.expect(201);
    let ws = base.replace("http://", "ws://");
    let watch = format!("{ws}/api/v1/projects/p/watch/t/1/+/s");
    let (mut socket, _) =
        tokio_tungstenite::connect_async(format!("{watch}?access_token=admin-token"))
            .await
            .unwrap();
    use futures::StreamExt as _;
    let first = socket.next().await.unwrap().unwrap();
    let frame: serde_json::Value = serde_json::from_str(first.to_text().unwrap()).unwrap();
    assert_eq!(frame["type"], "state");
    socket.close(None).await.unwrap();
    for (q, status) in [("?access_token=wrong", 401), ("", 401)] {
        match tokio_tungstenite::connect_async(format!("{watch}{q}")).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
                assert_eq!(r.status().as_u16(), status, "{q}")
            }
            other => panic!("{q}: {other:?}"),
        }
    }
    let r = reqwest::get(format!(
        "{base}/api/v1/projects/p/streams/t/1/+/s?access_token=admin-token"
    ))
    .await
    .unwrap();
    assert_eq!(
        r.status(),
        401,
        "only the watch route reads the query token"
    );
    server.stop().await;
}

/// Every route docs/API.md names is in the OpenAPI document with its method, and the
/// document names no route API.md does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_matches_api_md() {
    let db = TestDb::sqlite();
    let server = TestServer::start(db.config());
    let r = reqwest::get(format!("{}/api/v1/openapi.json", server.base()))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
    let doc: serde_json::Value = r.json().await.unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );
    let mut in_doc = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            in_doc.insert(format!("{} {path}", method.to_uppercase()));
            let op = &item[method];
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path}"
            );
        }
    }
    let api_md =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/API.md")).unwrap();
    let mut in_md = std::collections::BTreeSet::new();
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
        for (i, _) in api_md.match_indices(&format!("`{method} /")) {
            let rest = &api_md[i + 1 + method.len() + 1..];
            let end = rest.find(['`', '?', ' ']).unwrap();
            in_md.insert(format!("{method} {}", &rest[..end]));
        }
    }
    assert!(in_md.len() >= 20, "{in_md:?}");
    assert_eq!(in_doc, in_md, "OpenAPI paths vs API.md routes");
    // Schemas of the wire types are there, with the fields API.md lists.
    let stream = &doc["components"]["schemas"]["StreamJson"]["properties"];
    for field in [
        "project",
        "path",
        "prefix",
        "name",
        "id",
        "descriptor",
        "state",
    ] {
        assert!(stream.get(field).is_some(), "Stream.{field}");
    }
    let state = &doc["components"]["schemas"]["StreamStateJson"]["properties"];
    for field in [
        "status",
        "next_index",
        "terminal_index",
        "archival",
        "archive",
        "purged",
    ] {
        assert!(state.get(field).is_some(), "state.{field}");
    }
    let r = reqwest::get(format!("{}/explorer", server.base()))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("/static/explorer.js"));
    server.stop().await;
}
