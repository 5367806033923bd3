//! The hardening suite: each test is one hole a black-box campaign found, asserting the
//! exact answer and that the server still serves others and holds nothing extra
//! afterwards. If one of these fails, a hole has come back.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::both;
use crate::common::*;

/// Two private projects and tokens limited to one of them, in every role.
fn scoped(db: &TestDb) -> logdog::config::Config {
    use logdog::config::{ProjectConfig, TokenConfig};
    let mut c = db.config();
    c.archival.complete_delay = 0.05;
    c.projects = ["priv", "other"]
        .map(|name| ProjectConfig {
            name: name.into(),
            public: false,
            prefix_expiration: None,
            archive: None,
        })
        .to_vec();
    let grant = |token: &str, role: &str, projects: Option<&[&str]>| TokenConfig {
        sha256: logdog::auth::token_hash(token),
        role: role.into(),
        projects: projects.map(|ps| ps.iter().map(|p| p.to_string()).collect()),
    };
    c.tokens = vec![
        grant("admin-priv", "admin", Some(&["priv"])),
        grant("service-priv", "service", Some(&["priv"])),
        grant("admin-all", "admin", None),
    ];
    c
}

/// A glob that makes a backtracking matcher run for minutes is answered at once, with
/// the right streams; invalid globs are 400.
async fn hostile_globs_are_linear_and_invalid_ones_refused(db: TestDb) {
    let server = TestServer::start(db.config());
    let c = server.client("pub");
    let secret = c.text_stream("gl/1", "a/b/c/d/e").await;
    c.register("gl/1/+/a/b/zz", &secret, json!({}))
        .await
        .expect(201);
    let query = |name: String| {
        let c = c.clone();
        async move {
            c.raw(
                Method::GET,
                &c.url(&format!("streams?prefix=gl/1&name={name}")),
                None,
                None,
                vec![],
            )
            .await
        }
    };
    let names = |a: &Answer| -> Vec<String> {
        a.expect(200)["streams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let a = query(format!("{}zz", "**/".repeat(100))).await;
    assert_eq!(names(&a), ["a/b/zz"]);
    let a = query(format!("{}b", "*a".repeat(40))).await;
    assert_eq!(names(&a), Vec::<String>::new());
    let a = query("a/**/e".into()).await;
    assert_eq!(names(&a), ["a/b/c/d/e"]);
    for bad in ["_x", "a//b", "a/**b", "a/.b"] {
        query(bad.into())
            .await
            .expect_error(400, "invalid_argument");
    }
    // Too many tag filters is a 400, not a database error.
    let tags = (0..1000).map(|i| format!("tag=k{i}")).collect::<Vec<_>>();
    c.raw(
        Method::GET,
        &c.url(&format!("streams?{}", tags.join("&"))),
        None,
        None,
        vec![],
    )
    .await
    .expect_error(400, "invalid_argument");
    server.stop().await;
}
both!(hostile_globs_are_linear_and_invalid_ones_refused);

/// A token limited to `priv` neither reads `other` (whatever its role) nor sees, leases,
/// renews or completes `other`'s archive tasks.
async fn scoped_tokens_stay_in_their_projects(db: TestDb) {
    let server = TestServer::start(scoped(&db));
    let all = server.client("other").with_token(Some("admin-all"));
    let secret = all.text_stream("o", "s").await;
    all.append("o/+/s", &secret, lines(0, 3)).await.expect(200);
    all.terminate("o/+/s", &secret, json!({})).await.expect(200);
    for token in ["admin-priv", "service-priv"] {
        let c = server.client("other").with_token(Some(token));
        c.load("o/+/s").await.expect_error(403, "permission_denied");
        c.raw(Method::GET, &c.url("logs/o/+/s"), None, None, vec![])
            .await
            .expect_error(403, "permission_denied");
        c.raw(Method::GET, &c.url("streams"), None, None, vec![])
            .await
            .expect_error(403, "permission_denied");
        c.delete("streams/o/+/s")
            .await
            .expect_error(403, "permission_denied");
        // Its own project is fine.
        let own = server.client("priv").with_token(Some(token));
        own.raw(Method::GET, &own.url("streams"), None, None, vec![])
            .await
            .expect(200);
        // The task of `other` is due, but invisible to this token.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let lease = c
            .raw(
                Method::POST,
                &format!("{}/api/v1/archive-tasks/lease", c.base),
                None,
                Some("application/json"),
                br#"{"max_tasks": 10, "lease_seconds": 30, "wait_seconds": 0.2}"#.to_vec(),
            )
            .await;
        assert_eq!(lease.expect(200)["tasks"], json!([]), "{token}");
    }
    // The unscoped admin leases it; the scoped tokens cannot renew or complete it.
    let lease = all
        .raw(
            Method::POST,
            &format!("{}/api/v1/archive-tasks/lease", all.base),
            None,
            Some("application/json"),
            br#"{"max_tasks": 10, "lease_seconds": 30}"#.to_vec(),
        )
        .await;
    let task = lease.expect(200)["tasks"][0].clone();
    assert_eq!(task["project"], "other");
    let id = task["task_id"].as_str().unwrap();
    for token in ["admin-priv", "service-priv"] {
        let c = server.client("other").with_token(Some(token));
        for (verb, body) in [
            ("renew", json!({"lease_id": task["lease_id"]})),
            (
                "complete",
                json!({"lease_id": task["lease_id"], "error": "x"}),
            ),
        ] {
            c.raw(
                Method::POST,
                &format!("{}/api/v1/archive-tasks/{id}/{verb}", c.base),
                None,
                Some("application/json"),
                serde_json::to_vec(&body).unwrap(),
            )
            .await
            .expect_error(412, "failed_precondition");
        }
    }
    assert_eq!(
        all.load("o/+/s").await.expect(200)["state"]["archival"],
        "tasked"
    );
    server.stop().await;
}
both!(scoped_tokens_stay_in_their_projects);

/// An archive report that points anywhere but this task's objects, or lies about their
/// sizes, is 409 and changes nothing: the entries stay readable from intermediate storage.
async fn bad_archive_reports_change_nothing(db: TestDb) {
    let mut config = db.config();
    config.archival.complete_delay = 0.05;
    let server = TestServer::start(config);
    let c = server.client("p");
    let secret = c.text_stream("bad", "s").await;
    c.append("bad/+/s", &secret, lines(0, 5)).await.expect(200);
    c.terminate("bad/+/s", &secret, json!({})).await.expect(200);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let lease = c
        .raw(
            Method::POST,
            &format!("{}/api/v1/archive-tasks/lease", c.base),
            None,
            Some("application/json"),
            br#"{"max_tasks": 1, "lease_seconds": 30, "wait_seconds": 2}"#.to_vec(),
        )
        .await;
    let task = lease.expect(200)["tasks"][0].clone();
    let (project, id, lease_id) = (
        task["project"].as_str().unwrap(),
        task["id"].as_str().unwrap(),
        task["lease_id"].as_str().unwrap(),
    );
    let before = stored_entries(&db.url, "p", "bad/+/s");
    assert_eq!(before.len(), 5);
    let good = write_archive(&db, project, id, lease_id, 5);
    let report = |w: &logdog::archive::Written| -> Value {
        json!({"lease_id": lease_id, "terminal_index": 4, "log_entry_count": w.log_entry_count,
               "stream_url": w.stream_url, "stream_size": w.stream_size, "index_url": w.index_url,
               "index_size": w.index_size, "data_url": w.data_url, "data_size": w.data_size})
    };
    let elsewhere = write_archive(&db, project, id, "another-lease", 5);
    let passwd = logdog::archive::Written {
        stream_url: "file:///etc/passwd".into(),
        ..good.clone()
    };
    let wrong_size = logdog::archive::Written {
        data_size: good.data_size + 1,
        ..good.clone()
    };
    let missing_dir = tempfile::tempdir().unwrap();
    let missing = logdog::archive::Written {
        index_url: format!("file://{}/index", missing_dir.path().display()),
        ..good.clone()
    };
    let complete = format!(
        "{}/api/v1/archive-tasks/{}/complete",
        c.base,
        task["task_id"].as_str().unwrap()
    );
    for bad in [passwd, elsewhere, wrong_size, missing] {
        c.raw(
            Method::POST,
            &complete,
            None,
            Some("application/json"),
            serde_json::to_vec(&report(&bad)).unwrap(),
        )
        .await
        .expect_error(409, "conflict");
        assert_eq!(stored_entries(&db.url, "p", "bad/+/s"), before);
        let s = c.load("bad/+/s").await.expect(200).clone();
        assert_eq!(s["state"]["archival"], "tasked");
        let got = c
            .raw(Method::GET, &c.url("logs/bad/+/s"), None, None, vec![])
            .await;
        assert_eq!(got.expect(200)["entries"].as_array().unwrap().len(), 5);
    }
    // The true report is believed.
    let a = c
        .raw(
            Method::POST,
            &complete,
            None,
            Some("application/json"),
            serde_json::to_vec(&report(&good)).unwrap(),
        )
        .await;
    assert_eq!(a.expect(200)["state"]["archival"], "complete");
    let got = c
        .raw(Method::GET, &c.url("logs/bad/+/s"), None, None, vec![])
        .await;
    assert_eq!(got.expect(200)["entries"].as_array().unwrap().len(), 5);
    server.stop().await;
}
both!(bad_archive_reports_change_nothing);
