//! The hardening suite: each test is one hole a black-box campaign found, asserting the
//! exact answer and that the server still serves others and holds nothing extra
//! afterwards. If one of these fails, a hole has come back.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::both;
use crate::common::*;

/// POSTs `body` to `/api/v1/archive-tasks/{rest}` (lease, renew, complete).
async fn task_call(c: &Client, rest: &str, body: Value) -> Answer {
    c.raw(
        Method::POST,
        &format!("{}/api/v1/archive-tasks/{rest}", c.base),
        None,
        Some("application/json"),
        serde_json::to_vec(&body).unwrap(),
    )
    .await
}

/// Two private projects and tokens limited to one of them, in every role.
fn scoped(db: &TestDb) -> logdog::config::Config {
    use logdog::config::{ProjectConfig, TokenConfig};
    let mut c = db.config();
    c.archival.complete_delay = logdog::config::secs(0.05);
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
        role: role.parse().unwrap(),
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
        let lease = task_call(
            &c,
            "lease",
            json!({"max_tasks": 10, "lease_seconds": 30, "wait_seconds": 0.2}),
        )
        .await;
        assert_eq!(lease.expect(200)["tasks"], json!([]), "{token}");
    }
    // The unscoped admin leases it; the scoped tokens cannot renew or complete it.
    let lease = task_call(&all, "lease", json!({"max_tasks": 10, "lease_seconds": 30})).await;
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
            task_call(&c, &format!("{id}/{verb}"), body)
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
    config.archival.complete_delay = logdog::config::secs(0.05);
    let server = TestServer::start(config);
    let c = server.client("p");
    let secret = c.text_stream("bad", "s").await;
    c.append("bad/+/s", &secret, lines(0, 5)).await.expect(200);
    c.terminate("bad/+/s", &secret, json!({})).await.expect(200);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let lease = task_call(
        &c,
        "lease",
        json!({"max_tasks": 1, "lease_seconds": 30, "wait_seconds": 2}),
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
    let good = write_archive(&db, project, id, lease_id, 5).await;
    let report = |w: &logdog::archive::Written| -> Value {
        json!({"lease_id": lease_id, "terminal_index": 4, "log_entry_count": w.log_entry_count,
               "stream_url": w.stream_url, "stream_size": w.stream_size, "index_url": w.index_url,
               "index_size": w.index_size, "data_url": w.data_url, "data_size": w.data_size})
    };
    let elsewhere = write_archive(&db, project, id, "another-lease", 5).await;
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

/// The real `logdog serve` in a process of its own, so its descriptors and memory can be
/// counted; killed when dropped.
struct Served {
    child: std::process::Child,
    base: String,
    port: u16,
    shell_prefix: String,
    extra: Vec<String>,
    dir: tempfile::TempDir,
}

impl Served {
    /// Starts `logdog serve` on a free port with a SQLite file in a fresh folder, through
    /// `sh -c` so `shell_prefix` (ulimits, traps) applies to it.
    async fn start(shell_prefix: &str, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Self::spawn(shell_prefix, extra, dir.path(), port);
        let served = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            port,
            shell_prefix: shell_prefix.into(),
            extra: extra.iter().map(|e| e.to_string()).collect(),
            dir,
        };
        served.wait_healthy().await;
        served
    }

    fn spawn(
        shell_prefix: &str,
        extra: &[impl AsRef<str>],
        dir: &std::path::Path,
        port: u16,
    ) -> std::process::Child {
        let extra: Vec<&str> = extra.iter().map(AsRef::as_ref).collect();
        let cmd = format!(
            "{shell_prefix} exec \"$0\" serve --listen 127.0.0.1:{port} --database \"$1/logdog.db\" --archive \"$1/archive\" {}",
            extra.join(" ")
        );
        std::process::Command::new("sh")
            .args(["-c", &cmd, env!("CARGO_BIN_EXE_logdog")])
            .arg(dir)
            .env("RUST_LOG", "error")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    }

    async fn wait_healthy(&self) {
        let c = self.client("p");
        for _ in 0..200 {
            if let Ok(r) = c.http.get(format!("{}/healthz", self.base)).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("logdog serve did not start");
    }

    /// kill -9, then the same server again on the same storage and port.
    async fn crash_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Self::spawn(&self.shell_prefix, &self.extra, self.dir.path(), self.port);
        self.wait_healthy().await;
    }

    fn client(&self, project: &str) -> Client {
        Client::new(&self.base, project)
    }

    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .unwrap()
            .count()
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `f` holds (polling), or panics with `what`.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}");
}

/// A client that reads the start of a followed text response and closes its socket
/// leaves nothing behind on the server: its descriptors come back at once, not when the
/// stream next moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_that_leave_release_their_connections() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let served = Served::start("", &[]).await;
    let c = served.client("pub");
    let secret = c.text_stream("f", "s").await;
    c.append("f/+/s", &secret, lines(0, 3)).await.expect(200);
    let before = served.fds();
    let addr = served.base.trim_start_matches("http://").to_owned();
    for _ in 0..100 {
        let mut sock = tokio::net::TcpStream::connect(&addr).await.unwrap();
        sock.write_all(
            b"GET /api/v1/projects/pub/logs/f/+/s?format=text&follow=true HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .await
        .unwrap();
        let mut buf = [0u8; 256];
        let n = sock.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
        drop(sock);
    }
    eventually("the followers' descriptors were released", || {
        served.fds() <= before + 4
    })
    .await;
    // The server still serves, and the stream still follows to its end.
    c.terminate("f/+/s", &secret, json!({})).await.expect(200);
    let text = c.text(c.url("logs/f/+/s?format=text&follow=true")).await;
    assert_eq!(text, "line 0\nline 1\nline 2\n");
}

/// Followers count as viewers: past the per-stream limit they get 429 with Retry-After.
async fn followers_are_limited_like_viewers(db: TestDb) {
    let mut config = db.config();
    config.limits.max_viewers_per_stream = 2;
    let server = TestServer::start(config);
    let c = server.client("p");
    let secret = c.text_stream("lim", "s").await;
    c.append("lim/+/s", &secret, lines(0, 1)).await.expect(200);
    let url = c.url("logs/lim/+/s?format=text&follow=true");
    let mut held = Vec::new();
    for _ in 0..2 {
        let r = c.http.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        held.push(r);
    }
    let r = c.http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "5");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "resource_exhausted");
    drop(held);
    // Their places come back once they are gone.
    let mut ok = false;
    for _ in 0..100 {
        let r = c.http.get(&url).send().await.unwrap();
        if r.status() == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "the followers' places were released");
    server.stop().await;
}
both!(followers_are_limited_like_viewers);

/// A text/plain body of nothing but newlines cannot blow memory up: past the entry cap
/// it is 413 and stores nothing; the server's memory stays bounded and it serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newline_floods_are_bounded() {
    let served = Served::start("", &[]).await;
    let c = served.client("p");
    let secret = c.text_stream("nl", "s").await;
    let before = served.rss_kib();
    let flood = vec![b'\n'; 8 << 20];
    c.raw(
        Method::POST,
        &c.url("logs/nl/+/s"),
        Some(&secret),
        Some("text/plain"),
        flood,
    )
    .await
    .expect_error(413, "payload_too_large");
    assert_eq!(c.load("nl/+/s").await.expect(200)["state"]["next_index"], 0);
    // The cap itself (100,000 lines) is accepted, and costs little.
    let a = c
        .raw(
            Method::POST,
            &c.url("logs/nl/+/s"),
            Some(&secret),
            Some("text/plain"),
            vec![b'\n'; 100_000],
        )
        .await;
    assert_eq!(a.expect(200)["next_index"], 100_000);
    let after = served.rss_kib();
    assert!(
        after < before + 200 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
}

/// Made-up methods do not become metric labels.
async fn made_up_methods_are_one_metric_label(db: TestDb) {
    let server = TestServer::start(db.config());
    let c = server.client("p");
    let weird = "X".repeat(200);
    for i in 0..20 {
        let m = Method::from_bytes(format!("{weird}{i}").as_bytes()).unwrap();
        let r = c
            .http
            .request(m, format!("{}/api/v1/projects", server.base()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405);
    }
    let metrics = c.text(format!("{}/metrics", server.base())).await;
    assert!(!metrics.contains(&weird), "a made-up method became a label");
    assert!(metrics.contains("method=\"other\""));
    server.stop().await;
}
both!(made_up_methods_are_one_metric_label);

/// A body that trickles in is cut off after `limits.body_timeout`: 408 in the error
/// shape, and the connection is closed.
async fn slow_bodies_time_out(db: TestDb) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut config = db.config();
    config.limits.body_timeout = logdog::config::secs(0.5);
    let server = TestServer::start(config);
    let c = server.client("p");
    let secret = c.text_stream("slow", "s").await;
    let mut sock = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /api/v1/projects/p/logs/slow/+/s HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nX-Prefix-Secret: {secret}\r\nContent-Length: 100\r\n\r\na"
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), sock.read_to_end(&mut got))
        .await
        .expect("the server answers and closes")
        .unwrap();
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"code\":\"request_timeout\""), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    assert_eq!(
        c.load("slow/+/s").await.expect(200)["state"]["next_index"],
        0
    );
    server.stop().await;
}
both!(slow_bodies_time_out);

/// Bodies and values the API cannot mean are refused, and nothing is stored.
async fn meaningless_values_are_refused(db: TestDb) {
    let server = TestServer::start(db.config());
    let c = server.client("p");
    let secret = c.text_stream("iv", "s").await;
    let max = (1u64 << 53) - 1;
    let bad_entries = [
        json!([{"stream_index": 0, "sequence": u64::MAX, "text": {"lines": ["x"]}}]),
        json!([{"stream_index": 0, "prefix_index": max + 1, "text": {"lines": ["x"]}}]),
        json!([{"stream_index": 0, "text": {"lines": [{"value": "x", "delimiter": "EOL"}]}}]),
        json!([{"stream_index": 0, "text": {"lines": ["two\nlines"]}}]),
    ];
    for entries in bad_entries {
        c.append("iv/+/s", &secret, entries)
            .await
            .expect_error(400, "invalid_argument");
    }
    // Gzip is not decoded: 415, nothing stored.
    let a = c
        .http
        .post(c.url("logs/iv/+/s"))
        .header("X-Prefix-Secret", &secret)
        .header("Content-Type", "text/plain")
        .header("Content-Encoding", "gzip")
        .body("x\n")
        .send()
        .await
        .unwrap();
    assert_eq!(a.status(), 415);
    let body: Value = a.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unsupported_media_type");
    // Termination beyond what JSON can carry, and a body that is not an object.
    for body in [
        json!({"terminal_index": i64::MAX}),
        json!({"terminal_index": max + 1}),
        json!([]),
    ] {
        c.terminate("iv/+/s", &secret, body)
            .await
            .expect_error(400, "invalid_argument");
    }
    // A datagram piece that cannot be part of its datagram.
    let dsecret = c.prefix("dg").await;
    c.register("dg/+/d", &dsecret, json!({"stream_type": "datagram"}))
        .await
        .expect(201);
    c.append(
        "dg/+/d",
        &dsecret,
        json!([{"stream_index": 0, "datagram": {"data": "AAAA", "partial": {"index": 9, "size": 3, "last": false}}}]),
    )
    .await
    .expect_error(400, "invalid_argument");
    // Too many tags.
    let tags: serde_json::Map<String, Value> =
        (0..1000).map(|i| (format!("k{i}"), json!("v"))).collect();
    c.register("iv/+/tagged", &secret, json!({"tags": tags}))
        .await
        .expect_error(400, "invalid_argument");
    assert_eq!(c.load("iv/+/s").await.expect(200)["state"]["next_index"], 0);
    assert_eq!(c.load("iv/+/s").await.body["state"]["terminal_index"], -1);
    c.load("iv/+/tagged").await.expect_error(404, "not_found");
    // Raw-text numbering stops at 2^53 - 1 like JSON does.
    c.append(
        "iv/+/s",
        &secret,
        json!([{"stream_index": max, "sequence": 0, "text": {"lines": ["last"]}}]),
    )
    .await
    .expect(200);
    c.raw(
        Method::POST,
        &c.url("logs/iv/+/s"),
        Some(&secret),
        Some("text/plain"),
        b"one more\n".to_vec(),
    )
    .await
    .expect_error(400, "invalid_argument");
    server.stop().await;
}
both!(meaningless_values_are_refused);

/// Reads of streams that do not exist answer 404 and start no stream actor.
async fn reads_of_unknown_streams_start_no_actor(db: TestDb) {
    let server = TestServer::start(db.config());
    let c = server.client("pub");
    for i in 0..300 {
        let a = c
            .raw(
                Method::GET,
                &c.url(&format!("logs/x/+/missing{i}")),
                None,
                None,
                vec![],
            )
            .await;
        a.expect_error(404, "not_found");
        c.load(&format!("x/+/gone{i}"))
            .await
            .expect_error(404, "not_found");
    }
    assert_eq!(server.metric("logdog_live_stream_actors").await, 0);
    server.stop().await;
}
both!(reads_of_unknown_streams_start_no_actor);

/// `access_token` works on the watch route only; `/api/v1/projects` refuses unknown
/// tokens; pages cannot be framed and JSON is not sniffed.
async fn tokens_and_headers(db: TestDb) {
    let server = TestServer::start(private_project(db.config(), "reader-token", "reader"));
    let c = server.client("p");
    let r = c
        .http
        .get(c.url("logs/watch/+/watch/x?access_token=reader-token"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        401,
        "access_token is not taken outside the watch route"
    );
    let a = c
        .with_token(Some("made-up"))
        .raw(
            Method::GET,
            &format!("{}/api/v1/projects", c.base),
            None,
            None,
            vec![],
        )
        .await;
    a.expect_error(401, "unauthenticated");
    let page = c.http.get(format!("{}/", c.base)).send().await.unwrap();
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(
        csp.contains("connect-src 'self';") && !csp.contains("ws:"),
        "{csp}"
    );
    for url in [format!("{}/healthz", c.base), c.url("streams")] {
        let r = c.http.get(url).send().await.unwrap();
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    }
    server.stop().await;
}
both!(tokens_and_headers);

/// A TCP proxy to PostgreSQL that the test can cut (every connection dropped, new ones
/// refused) and restore: a real database outage for one server, without stopping the
/// PostgreSQL other tests use.
struct CuttableProxy {
    port: u16,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    cut: std::sync::Arc<tokio::sync::Notify>,
}

impl CuttableProxy {
    async fn start(target: std::net::SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let cut = std::sync::Arc::new(tokio::sync::Notify::new());
        let (up2, cut2) = (up.clone(), cut.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !up2.load(std::sync::atomic::Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let cut = cut2.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.notified() => {}
                    }
                });
            }
        });
        Self { port, up, cut }
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, std::sync::atomic::Ordering::SeqCst);
        if !up {
            self.cut.notify_waiters();
        }
    }
}

/// PostgreSQL away: within about a second appends answer 503 with Retry-After (never a
/// 500, never a long hang) and `/readyz` is 503; once it is back, service resumes and
/// every acknowledged entry is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(logdog_postgres),
    ignore = "needs LOGDOG_TEST_DATABASE_URL (PostgreSQL)"
)]
async fn a_database_outage_is_answered_503_at_once() {
    let db = TestDb::postgres();
    let target: std::net::SocketAddr = "127.0.0.1:5432".parse().unwrap();
    let proxy = CuttableProxy::start(target).await;
    let mut config = db.config();
    config.database = db
        .url
        .replace("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port));
    assert_ne!(
        config.database, db.url,
        "the test database goes through the proxy"
    );
    let server = TestServer::start(config);
    let c = server.client("p");
    let secret = c.text_stream("out", "s").await;
    c.append("out/+/s", &secret, lines(0, 10)).await.expect(200);
    proxy.set_up(false);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let started = std::time::Instant::now();
    let a = c.append("out/+/s", &secret, lines(10, 20)).await;
    let waited = started.elapsed();
    a.expect_error(503, "unavailable");
    assert!(waited < Duration::from_secs(5), "answered after {waited:?}");
    let ready = c
        .http
        .get(format!("{}/readyz", c.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    assert!(ready.headers().contains_key("retry-after"));
    proxy.set_up(true);
    let mut back = false;
    for _ in 0..100 {
        let a = c.append("out/+/s", &secret, lines(10, 20)).await;
        if a.status == 200 {
            back = true;
            break;
        }
        assert_eq!(a.status, 503, "{}", a.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back, "service came back with the database");
    let got = c
        .raw(
            Method::GET,
            &c.url("logs/out/+/s?count=100"),
            None,
            None,
            vec![],
        )
        .await;
    assert_eq!(got.expect(200)["entries"].as_array().unwrap().len(), 20);
    server.stop().await;
}

/// A full disk (the SQLite file may not grow: `ulimit -f`) answers 503 with Retry-After
/// on writes, never 500 and never a false 200; everything acknowledged before is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_answered_503() {
    // SIGXFSZ ignored (so a write past the limit fails with EFBIG instead of killing the
    // process); files limited to 4 MiB.
    let served = Served::start("trap '' XFSZ; ulimit -f 4096;", &["--no-archivist"]).await;
    let c = served.client("p");
    let secret = c.text_stream("full", "s").await;
    let line = "x".repeat(1000);
    let mut acked = 0u64;
    let mut refused = None;
    for i in 0..200u64 {
        let body: String = (0..100).map(|_| format!("{line}\n")).collect();
        let a = c
            .raw(
                Method::POST,
                &c.url("logs/full/+/s"),
                Some(&secret),
                Some("text/plain"),
                body.into_bytes(),
            )
            .await;
        match a.status.as_u16() {
            200 => acked = a.body["next_index"].as_u64().unwrap(),
            503 => {
                refused = Some((i, a));
                break;
            }
            other => panic!("append {i}: {other} {}", a.body),
        }
    }
    let (_, a) = refused.expect("the disk filled up");
    a.expect_error(503, "unavailable");
    assert!(acked > 0);
    let got = c
        .raw(
            Method::GET,
            &c.url(&format!("logs/full/+/s?index={}&count=1", acked - 1)),
            None,
            None,
            vec![],
        )
        .await;
    assert_eq!(got.expect(200)["entries"].as_array().unwrap().len(), 1);
    let s = c.load("full/+/s").await;
    assert_eq!(s.expect(200)["state"]["next_index"], acked);
}

/// Generated clients escape path parameters: `%2F` in `{prefix}` and `{name}` means `/`.
async fn escaped_path_parameters_are_decoded(db: TestDb) {
    let server = TestServer::start(db.config());
    let c = server.client("p");
    let secret = c.prefix("a/b").await;
    let a = c
        .json(
            Method::PUT,
            "streams/a%2Fb/+/s%2Ft",
            Some(&secret),
            &json!({}),
        )
        .await;
    assert_eq!(a.expect(201)["path"], "a/b/+/s/t");
    c.load("a/b/+/s/t").await.expect(200);
    // Anything that decodes to a bad name is still a 400.
    c.load("a%2F%2Fb/+/s")
        .await
        .expect_error(400, "invalid_argument");
    c.load("a%252Fb/+/s")
        .await
        .expect_error(400, "invalid_argument");
    server.stop().await;
}
both!(escaped_path_parameters_are_decoded);

/// A page of another site cannot open a watch on this server with the user's access.
async fn cross_site_websockets_are_refused(db: TestDb) {
    let server = TestServer::start(db.config());
    let c = server.client("p");
    let secret = c.text_stream("ws", "s").await;
    c.append("ws/+/s", &secret, lines(0, 1)).await.expect(200);
    let url = format!("{}/watch/ws/+/s", c.url("").trim_end_matches('/'));
    let upgrade = |origin: Option<String>| {
        let mut r = c
            .http
            .get(&url)
            .header("Connection", "Upgrade")
            .header("Upgrade", "websocket")
            .header("Sec-WebSocket-Version", "13")
            .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
        if let Some(o) = origin {
            r = r.header("Origin", o);
        }
        r.send()
    };
    let r = upgrade(Some("http://evil.example".into())).await.unwrap();
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "permission_denied");
    let r = upgrade(Some(format!("http://{}", server.addr)))
        .await
        .unwrap();
    assert_eq!(r.status(), 101);
    let r = upgrade(None).await.unwrap();
    assert_eq!(r.status(), 101);
    server.stop().await;
}
both!(cross_site_websockets_are_refused);

/// A prefix and a name of 4096 bytes each (LogDog validates them separately, so the path
/// is longer than 4096 bytes) register, take entries and read back; where the database
/// cannot index such keys the answer is a clear 400.
async fn the_longest_names_work(db: TestDb) {
    let server = TestServer::start(db.config());
    let c = server.client("p");
    // Not compressible: an index entry of this size must not depend on compression.
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut random = |n: usize| -> String {
        (0..n)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let chars = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
                chars[(rng % chars.len() as u64) as usize] as char
            })
            .collect()
    };
    // The longest prefix and name, in a folder of prefixes; tag values of 4 KB, one ASCII,
    // one of two-byte characters (PostgreSQL indexes these by their first characters).
    let parent = random(2000);
    let prefix = format!("{parent}/{}", random(4096 - 2001));
    let name = random(4096);
    let ascii = random(4096);
    let wide = "é".repeat(2048);
    let secret = c.prefix(&prefix).await;
    let path = format!("{prefix}/+/{name}");
    c.register(&path, &secret, json!({"tags": {"a": ascii, "w": wide}}))
        .await
        .expect(201);
    c.append(&path, &secret, lines(0, 3)).await.expect(200);
    // A second stream whose path shares the first 2,000+ characters.
    let twin = format!("{prefix}/+/{}", random(4000));
    c.register(&twin, &secret, json!({"tags": {"a": "other"}}))
        .await
        .expect(201);
    let get = |rest: String| {
        let c = c.clone();
        async move {
            let a = c.raw(Method::GET, &c.url(&rest), None, None, vec![]).await;
            a.expect(200);
            a.body
        }
    };
    let got = get(format!("logs/{path}")).await;
    assert_eq!(got["entries"].as_array().unwrap().len(), 3);
    let q = get(format!("streams?prefix={prefix}")).await;
    let mut names: Vec<&str> = q["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2);
    let sorted = {
        names.sort();
        names.clone()
    };
    assert_eq!(names, sorted, "ordered by path");
    let by_tag = |k: &str, v: &str| {
        let v = percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC);
        get(format!("streams?tag={k}={v}"))
    };
    let q = by_tag("a", &ascii).await;
    assert_eq!(q["streams"].as_array().unwrap().len(), 1);
    assert_eq!(q["streams"][0]["name"], name);
    let q = by_tag("w", &wide).await;
    assert_eq!(q["streams"][0]["name"], name);
    // The same first 500 characters, another value: no match.
    let q = by_tag("w", &format!("{}x", "é".repeat(2047))).await;
    assert_eq!(q["streams"], json!([]));
    let q = get(format!("prefixes?under={parent}")).await;
    assert_eq!(q["prefixes"].as_array().unwrap().len(), 1);
    assert_eq!(q["prefixes"][0]["prefix"], prefix);
    // Paging by cursor through two stream paths alike for 2,000+ characters.
    let q = get(format!("streams?prefix={prefix}&limit=1")).await;
    assert_eq!(q["streams"][0]["name"], sorted[0]);
    let cursor = q["next_cursor"].as_str().unwrap().to_owned();
    let q = get(format!("streams?prefix={prefix}&limit=1&cursor={cursor}")).await;
    assert_eq!(q["streams"][0]["name"], sorted[1]);
    assert_eq!(
        c.delete(&format!("prefixes/{prefix}"))
            .await
            .status
            .as_u16(),
        204
    );
    let q = get(format!("streams?prefix={prefix}")).await;
    assert_eq!(q["streams"], json!([]));
    server.stop().await;
}
both!(the_longest_names_work);

/// A short long-poll is answered at its own deadline, not held behind a longer one queued
/// before it; an absurd completion is a 400, not a crash; a 405 says what is allowed.
async fn archive_task_edges(db: TestDb) {
    let server = TestServer::start(db.config());
    let c = server.client("p");
    let lease = |wait: f64| {
        let c = c.clone();
        async move {
            let started = std::time::Instant::now();
            let a = c
                .raw(
                    Method::POST,
                    &format!("{}/api/v1/archive-tasks/lease", c.base),
                    None,
                    Some("application/json"),
                    serde_json::to_vec(&json!({"wait_seconds": wait})).unwrap(),
                )
                .await;
            (a, started.elapsed())
        }
    };
    let long = tokio::spawn(lease(6.0));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (a, waited) = lease(0.3).await;
    assert_eq!(a.expect(200)["tasks"], json!([]));
    assert!(
        waited < Duration::from_secs(3),
        "the short poll waited {waited:?}"
    );
    let (a, _) = long.await.unwrap();
    assert_eq!(a.expect(200)["tasks"], json!([]));
    let a = c
        .raw(
            Method::POST,
            &format!("{}/api/v1/archive-tasks/0/complete", c.base),
            None,
            Some("application/json"),
            serde_json::to_vec(&json!({"lease_id": "", "terminal_index": i64::MAX, "log_entry_count": 0,
                "stream_url": "", "stream_size": 0, "index_url": "", "index_size": 0, "data_url": "", "data_size": 0}))
            .unwrap(),
        )
        .await;
    a.expect_error(400, "invalid_argument");
    let r = c
        .http
        .request(Method::TRACE, format!("{}/healthz", c.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET");
    let r = c
        .http
        .delete(format!("{}/api/v1/projects/p/logs/a/+/b", c.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["allow"], "POST, GET");
    server.stop().await;
}
both!(archive_task_edges);

/// `format=text&non_contiguous=true` renders what is stored, skipping gaps (the document
/// allows the combination, so the server serves it).
async fn text_skips_gaps_when_asked(db: TestDb) {
    let server = TestServer::start(db.config());
    let c = server.client("p");
    let secret = c.text_stream("gap", "s").await;
    c.append(
        "gap/+/s",
        &secret,
        json!([{"stream_index": 0, "text": {"lines": ["a"]}}, {"stream_index": 2, "sequence": 2, "text": {"lines": ["c"]}}]),
    )
    .await
    .expect(200);
    assert_eq!(c.text(c.url("logs/gap/+/s?format=text")).await, "a\n");
    assert_eq!(
        c.text(c.url("logs/gap/+/s?format=text&non_contiguous=true"))
            .await,
        "a\nc\n"
    );
    server.stop().await;
}
both!(text_skips_gaps_when_asked);

/// Requests the HTTP layer refuses before any route runs still get the JSON error shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_the_error_shape() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let db = TestDb::sqlite();
    let server = TestServer::start(db.config());
    let long_url = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(100_000));
    let big_header = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(1 << 20)
    );
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n".to_vec(), "400"),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
            "400",
        ),
        (b"GET /\xff HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), "400"),
        (long_url.into_bytes(), "400"),
        (big_header.into_bytes(), "431"),
    ];
    for (request, status) in cases {
        let mut sock = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let _ = sock.write_all(&request).await;
        let mut got = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), sock.read_to_end(&mut got)).await;
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with(&format!("HTTP/1.1 {status}")), "{text}");
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains("content-type: application/json"), "{head}");
        let v: Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "invalid_argument", "{body}");
    }
    // The server still serves.
    let c = server.client("p");
    assert_eq!(
        c.http
            .get(format!("{}/healthz", c.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    server.stop().await;
}

/// The embedded archivist's leases do not outlive its process: after a kill -9 in the
/// middle of archiving, the restarted server archives the stream within seconds, not after
/// the 600 s `archivist_lease`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_servers_archive_tasks_come_back_quickly() {
    let mut served = Served::start("LOGDOG_ARCHIVAL_COMPLETE_DELAY=0.1", &[]).await;
    let c = served.client("p");
    let secret = c.text_stream("crash", "s").await;
    let body: String = (0..100_000).map(|i| format!("line {i}\n")).collect();
    for _ in 0..3 {
        c.raw(
            Method::POST,
            &c.url("logs/crash/+/s"),
            Some(&secret),
            Some("text/plain"),
            body.clone().into_bytes(),
        )
        .await
        .expect(200);
    }
    c.terminate("crash/+/s", &secret, json!({}))
        .await
        .expect(200);
    // Wait for the embedded archivist to take the task's lease (read from the database
    // file), then kill the server while it archives.
    let db = served.dir.path().join("logdog.db").display().to_string();
    let store = logdog_schema::Store::open(&db, 1).unwrap();
    let id = logdog_schema::names::stream_id("crash/+/s");
    let mut leased = false;
    for _ in 0..500 {
        let task = store
            .read(|conn| logdog_schema::store::get_task(conn, "p", &id))
            .unwrap()
            .unwrap();
        if task.due_us == logdog_schema::store::TASK_DONE {
            break;
        }
        if task.lease_expires_us.is_some() {
            leased = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(leased, "the archivist took the lease before finishing");
    drop(store);
    served.crash_and_restart().await;
    let c = served.client("p");
    let started = std::time::Instant::now();
    let mut archival = Value::Null;
    while started.elapsed() < Duration::from_secs(60) {
        archival = c.load("crash/+/s").await.expect(200)["state"]["archival"].clone();
        if archival == "complete" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        archival, "complete",
        "archived again well before a 600 s lease ran out"
    );
    let got = c
        .raw(Method::GET, &c.url("tail/crash/+/s"), None, None, vec![])
        .await;
    assert_eq!(got.expect(200)["next_index"], 300_000);
}
