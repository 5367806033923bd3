//! The test harness: real databases (a SQLite file; a fresh PostgreSQL database per test
//! when `LOGDOG_TEST_DATABASE_URL` is set), a real server on 127.0.0.1:0 in its own actix
//! System, and a small HTTP client.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures::StreamExt as _;
use logdog::config::Config;
use logdog_schema::store;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// Runs a scenario `async fn(TestDb)` once on SQLite and once on PostgreSQL.
#[macro_export]
macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::common::TestDb::sqlite()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(
                not(logdog_postgres),
                ignore = "needs LOGDOG_TEST_DATABASE_URL (PostgreSQL)"
            )]
            async fn postgres() {
                super::$name($crate::common::TestDb::postgres()).await
            }
        }
    };
}

/// A test that needs PostgreSQL (cluster mode): `postgres_only!(test_name, scenario)`
/// runs `scenario` on a fresh PostgreSQL database.
#[macro_export]
macro_rules! postgres_only {
    ($test:ident, $scenario:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[cfg_attr(
            not(logdog_postgres),
            ignore = "needs LOGDOG_TEST_DATABASE_URL (PostgreSQL)"
        )]
        async fn $test() {
            $scenario($crate::common::TestDb::postgres()).await;
        }
    };
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A database for one test, removed afterwards.
pub struct TestDb {
    pub url: String,
    postgres: Option<(String, String)>,
    pub dir: tempfile::TempDir,
}

impl TestDb {
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("logdog.db").display().to_string();
        Self {
            url,
            postgres: None,
            dir,
        }
    }

    /// A fresh database on the server `LOGDOG_TEST_DATABASE_URL` names. Tests that call
    /// this are ignored when the variable was unset at build time (build.rs); one that runs
    /// without it, or cannot reach the server, fails (tests never skip silently).
    pub fn postgres() -> Self {
        let server = std::env::var("LOGDOG_TEST_DATABASE_URL")
            .ok()
            .filter(|s| !s.is_empty())
            .expect("LOGDOG_TEST_DATABASE_URL is unset (it was set when the tests were built)");
        let name = format!(
            "logdog_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        );
        store::create_postgres_database(&server, &name).unwrap_or_else(|e| {
            panic!("LOGDOG_TEST_DATABASE_URL is set but PostgreSQL is unusable: {e}")
        });
        let url = store::postgres_url_with_database(&server, &name);
        Self {
            url,
            postgres: Some((server, name)),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn config(&self) -> Config {
        Config {
            listen: "127.0.0.1:0".into(),
            database: self.url.clone(),
            archive: self.dir.path().join("archive").display().to_string(),
            // Tests that need the archivist turn it on; the others drive archival by hand.
            archival: logdog::config::ArchivalConfig {
                embedded_archivist: false,
                ..Default::default()
            },
            ..Config::default()
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((server, name)) = &self.postgres {
            if let Err(e) = store::drop_postgres_database(server, name) {
                eprintln!("dropping test database {name}: {e}");
            }
        }
    }
}

/// A coordinator running in its own thread and actix System.
pub struct TestServer {
    pub addr: SocketAddr,
    inner: logdog::server::Background,
}

impl TestServer {
    pub fn start(config: Config) -> Self {
        Self::try_start(config).unwrap()
    }

    pub fn try_start(config: Config) -> Result<Self, String> {
        let inner = logdog::server::Background::start(config).map_err(|e| format!("{e:#}"))?;
        Ok(Self {
            addr: inner.addr,
            inner,
        })
    }

    pub fn base(&self) -> String {
        self.inner.base()
    }

    pub fn client(&self, project: &str) -> Client {
        Client::new(&self.base(), project)
    }

    /// Waits until no archive deletion is queued (purge and DeletePrefix remove archive
    /// objects in the background).
    pub async fn deletions_done(&self) {
        for _ in 0..300 {
            if self.metric("logdog_archive_deletions_pending").await == 0 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("archive deletions still pending after 30 s");
    }

    /// The current value of a Prometheus metric without labels, from `/metrics`.
    pub async fn metric(&self, name: &str) -> i64 {
        metric_at(&self.base(), name).await
    }

    /// Graceful stop: in-flight requests finish, then the actors stop.
    pub async fn stop(self) {
        self.inner.stop().await;
    }
}

/// The current value of one series (`name` or `name{labels}`) of the server at `base`,
/// from its `/metrics`.
pub async fn metric_at(base: &str, series: &str) -> i64 {
    let text = Client::new(base, "p").text(format!("{base}/metrics")).await;
    let prefix = format!("{series} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no metric {series}"))
        .trim()
        .parse()
        .unwrap()
}

/// A JSON answer: status and body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

impl Answer {
    /// Asserts an error answer's status and code.
    #[track_caller]
    pub fn expect_error(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        assert_eq!(self.body["error"]["code"], code, "body: {}", self.body);
        assert!(self.body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }

    #[track_caller]
    pub fn expect(&self, status: u16) -> &Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        &self.body
    }
}

#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
    pub project: String,
    /// Sent as `Authorization: Bearer …` when set.
    pub token: Option<String>,
}

impl Client {
    pub fn new(base: &str, project: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            // Below the server's 5 s keep-alive: a pooled connection is never reused
            // just as the server closes it.
            .pool_idle_timeout(std::time::Duration::from_secs(2))
            .build()
            .unwrap();
        Self {
            http,
            base: base.to_owned(),
            project: project.to_owned(),
            token: None,
        }
    }

    /// The same client presenting `token`.
    pub fn with_token(&self, token: Option<&str>) -> Self {
        Self {
            token: token.map(str::to_owned),
            ..self.clone()
        }
    }

    /// GET `url` and return the body as text.
    pub async fn text(&self, url: String) -> String {
        self.http
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub fn url(&self, rest: &str) -> String {
        format!("{}/api/v1/projects/{}/{rest}", self.base, self.project)
    }

    /// Sends a request with an optional secret and a raw body and content type.
    pub async fn raw(
        &self,
        method: Method,
        url: &str,
        secret: Option<&str>,
        ctype: Option<&str>,
        body: Vec<u8>,
    ) -> Answer {
        let mut req = self.http.request(method, url).body(body);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(s) = secret {
            req = req.header("X-Prefix-Secret", s);
        }
        if let Some(c) = ctype {
            req = req.header("Content-Type", c);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let bytes = res.bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Answer { status, body }
    }

    pub async fn json(
        &self,
        method: Method,
        rest: &str,
        secret: Option<&str>,
        body: &Value,
    ) -> Answer {
        self.raw(
            method,
            &self.url(rest),
            secret,
            Some("application/json"),
            serde_json::to_vec(body).unwrap(),
        )
        .await
    }

    /// Registers a prefix and returns its secret.
    pub async fn prefix(&self, prefix: &str) -> String {
        let a = self
            .json(Method::POST, "prefixes", None, &json!({"prefix": prefix}))
            .await;
        a.expect(201)["secret"].as_str().unwrap().to_owned()
    }

    pub async fn register(&self, path: &str, secret: &str, descriptor: Value) -> Answer {
        self.json(
            Method::PUT,
            &format!("streams/{path}"),
            Some(secret),
            &json!({ "descriptor": descriptor }),
        )
        .await
    }

    pub async fn append(&self, path: &str, secret: &str, entries: Value) -> Answer {
        self.json(
            Method::POST,
            &format!("logs/{path}"),
            Some(secret),
            &json!({ "entries": entries }),
        )
        .await
    }

    pub async fn terminate(&self, path: &str, secret: &str, body: Value) -> Answer {
        self.json(
            Method::PATCH,
            &format!("streams/{path}"),
            Some(secret),
            &body,
        )
        .await
    }

    pub async fn load(&self, path: &str) -> Answer {
        self.raw(
            Method::GET,
            &self.url(&format!("streams/{path}")),
            None,
            None,
            vec![],
        )
        .await
    }

    /// DELETE `…/projects/{project}/{rest}`.
    pub async fn delete(&self, rest: &str) -> Answer {
        self.raw(Method::DELETE, &self.url(rest), None, None, vec![])
            .await
    }

    /// A prefix plus a registered text stream `PREFIX/+/NAME`; returns the secret.
    pub async fn text_stream(&self, prefix: &str, name: &str) -> String {
        let secret = self.prefix(prefix).await;
        self.register(&format!("{prefix}/+/{name}"), &secret, json!({}))
            .await
            .expect(201);
        secret
    }
}

/// Text entries `from..to`, one line each: "line {i}".
pub fn lines(from: u64, to: u64) -> Value {
    Value::Array(
        (from..to)
            .map(|i| json!({"stream_index": i, "text": {"lines": [format!("line {i}")]}}))
            .collect(),
    )
}

/// Every stored entry of a stream, read straight from the database, in index order.
pub fn stored_entries(db_url: &str, project: &str, path: &str) -> Vec<logdog_schema::wire::Entry> {
    let s = logdog_schema::Store::open(db_url, 1).unwrap();
    let id = logdog_schema::names::stream_id(path);
    let chunks = s
        .read(|c| store::read_chunks(c, project, &id, 0, u64::MAX >> 2, i64::MAX))
        .unwrap();
    chunks
        .iter()
        .flat_map(|c| logdog_schema::chunk::decode(&c.data).unwrap())
        .collect()
}

/// The stored indices of a stream, checked to be strictly increasing.
pub fn stored_indices(db_url: &str, project: &str, path: &str) -> Vec<u64> {
    let idx: Vec<u64> = stored_entries(db_url, project, path)
        .iter()
        .map(|e| e.stream_index)
        .collect();
    assert!(
        idx.windows(2).all(|w| w[0] < w[1]),
        "stored indices out of order or duplicated: {idx:?}"
    );
    idx
}

/// A port nothing listens on right now (for servers that must come back on the same one).
/// Polls `{base}/readyz` until it answers 200 (true) or `within` has passed (false).
pub async fn ready(base: &str, within: std::time::Duration) -> bool {
    let http = reqwest::Client::new();
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        if http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `config` with one private project `p` and one token of `role` (its text is `token`).
pub fn private_project(mut config: Config, token: &str, role: &str) -> Config {
    config.projects = vec![logdog::config::ProjectConfig {
        name: "p".into(),
        public: false,
        prefix_expiration: None,
        archive: None,
    }];
    config.tokens = vec![logdog::config::TokenConfig {
        sha256: logdog::auth::token_hash(token),
        role: role.parse().unwrap(),
        projects: None,
    }];
    config
}

/// Writes an archive of text entries `0..count` for (project, id, lease) into the test
/// server's archive directory, as the archivist would.
pub async fn write_archive(
    db: &TestDb,
    project: &str,
    id: &str,
    lease: &str,
    count: u64,
) -> logdog::archive::Written {
    let store = logdog::archive::ArchiveStore::open(&db.config().archive).unwrap();
    write_archive_in(&store, project, id, lease, count).await
}

/// `write_archive` into `store`.
pub async fn write_archive_in(
    store: &logdog::archive::ArchiveStore,
    project: &str,
    id: &str,
    lease: &str,
    count: u64,
) -> logdog::archive::Written {
    let descriptor = logdog_schema::wire::DescriptorRequest::default()
        .resolve(0)
        .unwrap();
    let mut w = store
        .writer(project, id, lease, &descriptor, (10, 1 << 20))
        .await
        .unwrap();
    for i in 0..count {
        w.push(&logdog_schema::wire::Entry {
            stream_index: i,
            prefix_index: None,
            sequence: i,
            time_offset_us: 0,
            content: logdog_schema::wire::Content::Text(vec![logdog_schema::wire::Line {
                value: format!("line {i}"),
                delimiter: logdog_schema::wire::Delimiter::Lf,
            }]),
        })
        .unwrap();
    }
    w.finish().await.unwrap()
}

/// What a viewer saw: the indices in order, the frames, and how it was closed.
#[derive(Debug, Default)]
pub struct Seen {
    pub indices: Vec<u64>,
    pub frames: Vec<Value>,
    pub close: Option<(u16, String)>,
}

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Reads frames until the server closes (or `limit` passes).
pub async fn read_all(mut ws: Ws, limit: Duration) -> Seen {
    let mut seen = Seen::default();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let msg = match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(m))) => m,
            Ok(_) => break,
            Err(_) => panic!(
                "viewer timed out; saw {} entries, last frames {:?}",
                seen.indices.len(),
                seen.frames.iter().rev().take(2).collect::<Vec<_>>()
            ),
        };
        match msg {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "entries" {
                    seen.indices.extend(
                        v["entries"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|e| e["stream_index"].as_u64().unwrap()),
                    );
                }
                seen.frames.push(v);
            }
            Message::Close(Some(c)) => {
                seen.close = Some((u16::from(c.code), c.reason.to_string()));
                break;
            }
            Message::Close(None) => break,
            _ => {}
        }
    }
    seen
}

/// `logdog serve` on 127.0.0.1:`port` over `database`, logging warnings (`RUST_LOG` can be
/// set again), with no stdin or stdout.
pub fn serve_command(database: &str, port: u16) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_logdog"));
    c.args([
        "serve",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--database",
        database,
    ])
    .env("RUST_LOG", "warn")
    .env("NO_COLOR", "1")
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::null());
    c
}

/// A `logdog serve` process on a loopback port, killed when dropped.
pub struct Node {
    child: Option<std::process::Child>,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Node {
    /// Runs `command` (a [`serve_command`]) in a fresh working directory, its stderr
    /// written to `log` when given (inherited with `LOGDOG_TEST_NODE_LOGS`, else dropped),
    /// and waits until it is ready.
    pub async fn spawn(mut command: std::process::Command, log: Option<&std::path::Path>) -> Self {
        use std::process::Stdio;
        let dir = tempfile::tempdir().unwrap();
        let stderr = match log {
            Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
            None if std::env::var_os("LOGDOG_TEST_NODE_LOGS").is_some() => Stdio::inherit(),
            None => Stdio::null(),
        };
        let child = command
            .current_dir(dir.path())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let port = command
            .get_args()
            .skip_while(|a| *a != "--listen")
            .nth(1)
            .and_then(|a| a.to_str()?.rsplit(':').next()?.parse().ok())
            .expect("a --listen address");
        let node = Node {
            child: Some(child),
            port,
            _dir: dir,
        };
        assert!(
            ready(&node.base(), Duration::from_secs(30)).await,
            "node on {port} did not become ready"
        );
        node
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn signal(&mut self, signal: i32) {
        let child = self.child.as_mut().unwrap();
        unsafe {
            libc::kill(child.id() as i32, signal);
        }
    }

    /// Waits for the process to exit; its exit status.
    pub async fn wait(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        tokio::task::spawn_blocking(move || child.wait().unwrap())
            .await
            .unwrap()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
