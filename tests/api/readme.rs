//! The README's examples, run for real: the `logdog` binary started as the README says
//! (on a free port), then every shell block marked `<!-- tested -->` run with bash.

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{free_port, TestDb};

/// The shell blocks that follow a `<!-- MARKER -->` line.
fn tested_blocks(readme: &str, marker: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        if line.trim() != format!("<!-- {marker} -->") {
            continue;
        }
        let fence = lines.next().unwrap_or_default();
        assert!(
            fence.starts_with("```sh"),
            "a tested block must be ```sh, found {fence:?}"
        );
        blocks.push(
            lines
                .by_ref()
                .take_while(|l| !l.starts_with("```"))
                .collect::<Vec<_>>()
                .join("\n"),
        );
    }
    blocks
}

/// Kills the server if the test fails before stopping it.
struct Guard(Option<std::process::Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

async fn run_readme_against(database: Option<&str>) {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let blocks = tested_blocks(&readme, "tested");
    assert!(blocks.len() >= 2, "README has no tested examples");
    let cwd = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_logdog"));
    cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .current_dir(cwd.path())
        .stderr(Stdio::piped());
    if let Some(db) = database {
        cmd.args(["--database", db]);
    }
    let mut child = Guard(Some(cmd.stdout(Stdio::null()).spawn().unwrap()));
    let base = format!("http://127.0.0.1:{port}");
    assert!(
        crate::common::ready(&base, Duration::from_secs(5)).await,
        "logdog serve did not become ready"
    );
    if database.is_none() {
        assert!(
            cwd.path().join("logdog-data/logdog.db").exists(),
            "the default database is ./logdog-data/logdog.db"
        );
    }
    let script = format!("set -euo pipefail\n{}", blocks.join("\n"))
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"));
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "README examples failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The last example loads the stream: terminated, with the three lines stored.
    // The write examples print JSON answers; the read examples print the text.
    let text = "compiling foo.c\nlinking\ndone\n";
    let (json_part, reads) = stdout
        .split_once(text)
        .unwrap_or_else(|| panic!("no followed text in: {stdout}"));
    assert_eq!(
        reads,
        format!("done\n{text}"),
        "tail, then the follow example's text"
    );
    let answers: Vec<serde_json::Value> = serde_json::Deserializer::from_str(json_part)
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("README printed something that is not JSON ({e}): {stdout}"));
    assert_eq!(answers.len(), 4, "register, two appends, load: {stdout}");
    assert_eq!(
        answers[1],
        serde_json::json!({"next_index": 1, "accepted": 1, "duplicates": 0})
    );
    assert_eq!(
        answers[2],
        serde_json::json!({"next_index": 3, "accepted": 2, "duplicates": 0})
    );
    let stream = &answers[3];
    assert_eq!(stream["state"]["status"], "terminated");
    assert_eq!(stream["state"]["next_index"], 3);
    assert_eq!(stream["state"]["terminal_index"], 2);
    assert_eq!(stream["descriptor"]["tags"]["step"], "compile");

    // SIGTERM: a graceful stop and a clean exit.
    let mut child = child.0.take().unwrap();
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait().map(|s| (s, child)))
        .await
        .unwrap()
        .unwrap();
    let (status, mut child) = status;
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(status.success(), "exit {status:?}\n{log}");
    assert!(log.contains("SIGTERM received"), "{log}");
}

#[tokio::test]
async fn readme_examples_work_on_sqlite() {
    run_readme_against(None).await;
}

/// The PostgreSQL section: its `createdb` (on a fresh name) and its `--database` URL.
#[tokio::test]
#[cfg_attr(
    not(logdog_postgres),
    ignore = "needs LOGDOG_TEST_DATABASE_URL (PostgreSQL)"
)]
async fn readme_examples_work_on_postgres() {
    let scratch = TestDb::postgres();
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let block = tested_blocks(&readme, "tested: postgres")
        .pop()
        .expect("README has a PostgreSQL section");
    let (createdb, serve) = block.split_once('\n').unwrap();
    let name = format!("logdog_readme_{}", std::process::id());
    let create = createdb.replace(" logdog", &format!(" {name}"));
    let out = Command::new("bash")
        .arg("-c")
        .arg(&create)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{create}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = serve
        .split_whitespace()
        .last()
        .unwrap()
        .replace("/logdog", &format!("/{name}"));
    assert!(serve.contains("serve --database postgres://"), "{serve}");
    run_readme_against(Some(&url)).await;
    let server = std::env::var("LOGDOG_TEST_DATABASE_URL").unwrap();
    logdog_schema::store::drop_postgres_database(&server, &name).unwrap();
    drop(scratch);
}

#[test]
fn migrate_command_prepares_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m.db");
    let out = Command::new(env!("CARGO_BIN_EXE_logdog"))
        .args(["migrate", "--database", db.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("4 migration(s) applied"));
    let again = Command::new(env!("CARGO_BIN_EXE_logdog"))
        .args(["migrate", "--database", db.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&again.stderr).contains("0 migration(s) applied"));
}

#[test]
fn invalid_config_is_refused_with_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        // An unknown field (a typo), named with its line.
        (
            "listen = \"127.0.0.1:0\"\n[archival]\ncomplete_dealy = 1\n",
            vec!["bad.toml", "line 3", "complete_dealy"],
        ),
        // A bad database URL.
        (
            "listen = \"127.0.0.1:0\"\ndatabase = \"mysql://h/db\"\n",
            vec!["bad.toml:2: database", "is not a database URL"],
        ),
        // An archive URL no object store answers to.
        (
            "listen = \"127.0.0.1:0\"\narchive = \"ftp://host/logs\"\n",
            vec!["unsupported archive location \"ftp://host/logs\""],
        ),
        // An object-store option its builder does not know.
        (
            "listen = \"127.0.0.1:0\"\narchive = \"s3://bucket/logs\"\n[archive_options]\naws_endpont = \"http://127.0.0.1:1\"\n",
            vec!["archive_options.aws_endpont"],
        ),
        // The same project twice.
        (
            "listen = \"127.0.0.1:0\"\n[[projects]]\nname = \"a\"\n[[projects]]\nname = \"a\"\n",
            vec!["bad.toml:5: projects.name", "duplicate project"],
        ),
    ];
    for (text, wants) in cases {
        let cfg = dir.path().join("bad.toml");
        std::fs::write(&cfg, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_logdog"))
            .current_dir(dir.path())
            .args(["--config", cfg.to_str().unwrap(), "serve"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        for want in wants {
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}

/// The archivist command of the README, run for real against a coordinator.
#[tokio::test]
async fn readme_archivist_command_archives_streams() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let block = tested_blocks(&readme, "tested: archivist")
        .pop()
        .expect("README shows the archivist");
    let db = TestDb::sqlite();
    let mut config = db.config();
    config.archival.complete_delay = logdog::config::secs(0.1);
    // The archivist writes where the coordinator keeps archives (it checks them there).
    let cwd = tempfile::tempdir().unwrap();
    config.archive = cwd.path().join("logdog-data/archive").display().to_string();
    let server = crate::common::TestServer::start(config);
    let c = server.client("p");
    let secret = c.text_stream("ra", "s").await;
    c.append("ra/+/s", &secret, crate::common::lines(0, 20))
        .await
        .expect(200);
    c.terminate("ra/+/s", &secret, serde_json::json!({}))
        .await
        .expect(200);
    let args: Vec<String> = block
        .replace("cargo run --release --", "")
        .replace("http://127.0.0.1:8080", &server.base())
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert_eq!(args[0], "archivist", "{block}");
    let child = Command::new(env!("CARGO_BIN_EXE_logdog"))
        .args(&args)
        .current_dir(cwd.path())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _guard = Guard(Some(child));
    let mut archival = serde_json::Value::Null;
    for _ in 0..200 {
        archival = c.load("ra/+/s").await.body["state"]["archival"].clone();
        if archival == "complete" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(archival, "complete");
    assert!(
        cwd.path().join("logdog-data/archive/p").exists(),
        "archives under the --archive folder"
    );
    let got = c
        .raw(
            reqwest::Method::GET,
            &c.url("logs/ra/+/s?count=100"),
            None,
            None,
            vec![],
        )
        .await;
    assert_eq!(got.expect(200)["entries"].as_array().unwrap().len(), 20);
    server.stop().await;
}

/// The command-line section, run by bash with the built `logdog` on PATH.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_cli_examples_work() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let blocks = tested_blocks(&readme, "tested: cli");
    assert_eq!(blocks.len(), 1, "README shows the clients");
    let db = TestDb::sqlite();
    let server = crate::common::TestServer::start(db.config());
    let base = server.base();
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_logdog"))
        .parent()
        .unwrap()
        .to_owned();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let script = format!("set -euo pipefail\n{}", blocks[0]);
    let out = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("PATH", path)
        .env("LOGDOG_COORDINATOR", &base)
        .env_remove("LOGDOG_TOKEN")
        .env_remove("LOGDOG_PROJECT")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[..4],
        ["compiling", "exit code 3", "compiling", "oops"],
        "{stdout}"
    );
    let cols = |l: &str| l.split_whitespace().take(6).collect::<Vec<_>>().join(" ");
    assert_eq!(cols(lines[4]), "PATH TYPE STATUS LENGTH ARCHIVAL UPDATED");
    assert_eq!(
        cols(lines[5]),
        "build/2/+/run/result text terminated 1 line none"
    );
    assert_eq!(
        cols(lines[6]),
        "build/2/+/run/stderr text terminated 1 line none"
    );
    assert_eq!(
        cols(lines[7]),
        "build/2/+/run/stdout text terminated 1 line none"
    );
    // The runs that exited 3.
    assert_eq!(cols(lines[8]), "PATH TYPE STATUS LENGTH ARCHIVAL UPDATED");
    assert_eq!(
        cols(lines[9]),
        "build/2/+/run/result text terminated 1 line none"
    );
    assert!(lines[10].starts_with("build/2/\texpires "), "{stdout}");
    assert_eq!(lines[11], format!("{base}/logs/demo/files/1/+/readme"));
    assert_eq!(lines.len(), 12, "{stdout}");
    assert!(
        stderr.contains(&format!("logdog: run: {base}/logs/demo/build/2/+/run")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "logdog: run/stdout: {base}/logs/demo/build/2/+/run/stdout"
        )),
        "{stderr}"
    );
    let c = server.client("demo");
    assert_eq!(
        c.text(format!("{base}/logs/demo/build/3/+/run/stdout"))
            .await,
        "1\n2\n3\n"
    );
    assert_eq!(
        c.text(format!("{base}/logs/demo/files/1/+/readme")).await,
        readme,
        "pipe_file streams the file exactly"
    );
    server.stop().await;
}

/// The "Archives in S3" section, run by bash as written (SeaweedFS's `weed mini` and
/// `logdog serve`, on a free S3 port): a stream written to that coordinator is archived
/// into the `logs` bucket and reads back from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(logdog_s3), ignore = "needs LOGDOG_TEST_WEED (SeaweedFS)")]
async fn readme_s3_example_archives_to_seaweedfs() {
    use std::os::unix::process::CommandExt as _;
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let block = tested_blocks(&readme, "tested: s3")
        .pop()
        .expect("README shows S3 archives");
    let weed = std::env::var("LOGDOG_TEST_WEED").expect("LOGDOG_TEST_WEED names weed");
    let (s3, port) = (free_port(), free_port());
    assert!(
        block.contains("weed mini") && block.contains("-s3.port=8333"),
        "{block}"
    );
    let script = format!(
        "set -euo pipefail\n{}",
        block
            .replace("weed mini", &format!("{weed} mini"))
            .replace("8333", &s3.to_string())
            .replace(
                "cargo run --release --",
                &format!("{} ", env!("CARGO_BIN_EXE_logdog"))
            )
    );
    let cwd = tempfile::tempdir().unwrap();
    let child = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(cwd.path())
        .env("LOGDOG_LISTEN", format!("127.0.0.1:{port}"))
        .env("LOGDOG_ARCHIVAL_COMPLETE_DELAY", "0.1")
        .env("LOGDOG_ARCHIVAL_RETRY_DELAY", "0.5")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    struct Group(u32);
    impl Drop for Group {
        fn drop(&mut self) {
            unsafe {
                libc::kill(-(self.0 as i32), libc::SIGKILL);
            }
        }
    }
    let _group = Group(child.id());
    let _child = Guard(Some(child));
    let base = format!("http://127.0.0.1:{port}");
    let c = crate::common::Client::new(&base, "p");
    assert!(
        crate::common::ready(&base, Duration::from_secs(60)).await,
        "the README's SeaweedFS and coordinator did not come up"
    );
    let secret = c.text_stream("readme", "s").await;
    c.append("readme/+/s", &secret, crate::common::lines(0, 30))
        .await
        .expect(200);
    c.terminate("readme/+/s", &secret, serde_json::json!({}))
        .await
        .expect(200);
    let s = crate::archivist::archived(&c, "readme/+/s", &["complete"]).await;
    let url = s["state"]["archive"]["stream_url"].as_str().unwrap();
    assert!(url.starts_with("s3://logs/archive/p/"), "{url}");
    assert_eq!(
        c.text(c.url("logs/readme/+/s?format=text")).await,
        (0..30).map(|i| format!("line {i}\n")).collect::<String>()
    );
}
