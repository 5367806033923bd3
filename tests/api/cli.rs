//! The command-line clients, run as the real binary against a real server: `logdog stream`
//! (exit code, terminal indices, exact text, a coordinator restart mid-run with the spool in
//! use, stdin, refusals before the command runs) and the read clients (`cat`, `tail`,
//! `query`, `ls`, following live).

use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::process::Command;

use crate::both;
use crate::common::*;

/// What a finished `logdog` run left.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn logdog(base: &str, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_logdog"));
    c.args(args)
        .env("LOGDOG_COORDINATOR", base)
        .env_remove("LOGDOG_TOKEN")
        .env_remove("LOGDOG_PROJECT")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

async fn finish(child: tokio::process::Child) -> Run {
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("logdog finishes")
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

async fn run(base: &str, args: &[&str]) -> Run {
    finish(logdog(base, args).spawn().unwrap()).await
}

fn numbered(word: &str, n: u64) -> String {
    (1..=n).map(|i| format!("{word} {i}\n")).collect()
}

/// Asserts the stream is terminated at its last entry, every entry 0..=terminal is stored
/// exactly once, and returns how many there are.
async fn assert_terminated_whole(db: &TestDb, c: &Client, path: &str) -> u64 {
    let s = c.load(path).await;
    let state = &s.expect(200)["state"];
    assert_eq!(state["status"], "terminated", "{path}: {state}");
    let next = state["next_index"].as_u64().unwrap();
    assert!(next > 0, "{path} has entries");
    assert_eq!(state["terminal_index"].as_u64(), Some(next - 1), "{path}");
    let indices = stored_indices(&db.url, "p", path);
    assert_eq!(
        indices,
        (0..next).collect::<Vec<_>>(),
        "{path}: stored once each"
    );
    next
}

async fn stream_command_exit_code_terminal_indices_and_text(db: TestDb) {
    let server = TestServer::start(db.config());
    let base = server.base();
    let script = "for i in $(seq 1 10000); do echo out $i; echo err $i >&2; done; exit 3";
    let r = run(
        &base,
        &[
            "stream",
            "--project",
            "p",
            "--prefix",
            "cli/1",
            "--quiet",
            "--",
            "sh",
            "-c",
            script,
        ],
    )
    .await;
    assert_eq!(r.code, 3, "stderr: {}", r.stderr);
    assert_eq!(r.stdout, "", "--quiet copies nothing");
    let urls: Vec<&str> = r.stderr.lines().take(3).collect();
    assert_eq!(
        urls,
        [
            format!("logdog: run: {base}/logs/p/cli/1/+/run"),
            format!("logdog: run/stdout: {base}/logs/p/cli/1/+/run/stdout"),
            format!("logdog: run/stderr: {base}/logs/p/cli/1/+/run/stderr"),
        ],
        "the run view first, then each stream's viewer"
    );
    let c = server.client("p");
    for (name, word) in [("stdout", "out"), ("stderr", "err")] {
        let path = format!("cli/1/+/run/{name}");
        let entries = assert_terminated_whole(&db, &c, &path).await;
        assert!(entries < 10000, "lines are grouped into entries");
        assert_eq!(
            c.load(&path).await.body["state"]["next_sequence"],
            10000,
            "{path}: the line count"
        );
        assert!(
            r.stderr
                .contains(&format!("run/{name}: 10000 lines uploaded and terminated")),
            "{}",
            r.stderr
        );
        let cat = run(&base, &["cat", &format!("p/{path}")]).await;
        assert_eq!(cat.code, 0, "{}", cat.stderr);
        assert_eq!(cat.stdout, numbered(word, 10000), "{path}");
        assert_eq!(cat.stderr, "");
    }
    server.stop().await;
}
both!(stream_command_exit_code_terminal_indices_and_text);

async fn stream_survives_a_coordinator_restart(db: TestDb) {
    let port = free_port();
    let mut config = db.config();
    config.listen = format!("127.0.0.1:{port}");
    let server = TestServer::start(config.clone());
    let base = server.base();
    let spool = tempfile::tempdir().unwrap();
    // 400 lines on each output over about 4 s; a 1 kB memory buffer sends the outage's
    // output through the spool files, and 3 kB of spool fill up, so logdog stops reading
    // the command's output for a while (the pipe holds it) — still nothing is lost.
    let script = "for i in $(seq 1 400); do echo out $i; echo err $i >&2; sleep 0.01; done";
    let child = logdog(
        &base,
        &[
            "stream",
            "--project",
            "p",
            "--prefix",
            "cli/restart",
            "--quiet",
            "--buffer-bytes",
            "1000",
            "--spool-bytes",
            "3000",
            "--flush-interval",
            "0.05",
            "--spool-dir",
            spool.path().to_str().unwrap(),
            "--",
            "sh",
            "-c",
            script,
        ],
    )
    .spawn()
    .unwrap();
    let c = server.client("p");
    // Wait until some output has arrived, then take the coordinator away for 3 s.
    let mut before = 0;
    for _ in 0..200 {
        let s = c.load("cli/restart/+/run/stdout").await;
        if s.status == 200 {
            before = s.body["state"]["next_index"].as_u64().unwrap();
            if before > 0 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(before > 0, "output arrived before the stop");
    server.stop().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let server = TestServer::start(config);
    assert_eq!(server.base(), base, "back on the same port");
    let r = finish(child).await;
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    // The stop answered its appends 503 (then refused connections until the restart).
    assert!(
        r.stderr.contains("503 unavailable: server shutting down"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("went through the spool file"),
        "{}",
        r.stderr
    );
    let c = server.client("p");
    for (name, word) in [("stdout", "out"), ("stderr", "err")] {
        let path = format!("cli/restart/+/run/{name}");
        let entries = assert_terminated_whole(&db, &c, &path).await;
        assert!(entries > before, "{path}: more arrived after the restart");
        let cat = run(&base, &["cat", &format!("p/{path}")]).await;
        assert_eq!(
            cat.stdout,
            numbered(word, 400),
            "{path}: nothing lost or repeated"
        );
    }
    let left: Vec<_> = std::fs::read_dir(spool.path()).unwrap().collect();
    assert!(left.is_empty(), "spool files are removed: {left:?}");
    server.stop().await;
}
both!(stream_survives_a_coordinator_restart);

/// What `stream_reads_stdin_and_copies_the_output_through` streams from stdin: line ends of
/// both kinds, CI section markup of GitLab (with `\r` inside the line), GitHub Actions and
/// Buildkite, and a last line without a newline.
const STDIN_LOG: &str = "first\r\nsecond ☃\n\u{1b}[0Ksection_start:1700000000:build[collapsed=true]\r\u{1b}[0KBuild\ncc\n\u{1b}[0Ksection_end:1700000001:build\r\u{1b}[0K\n::group::Lint\n::endgroup::\n--- Upload\nno newline at the end";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_reads_stdin_and_copies_the_output_through() {
    let db = TestDb::sqlite();
    let server = TestServer::start(db.config());
    let base = server.base();
    let mut cmd = logdog(
        &base,
        &[
            "stream",
            "--project",
            "p",
            "--prefix",
            "cli/stdin",
            "--name",
            "log",
        ],
    );
    cmd.stdin(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    use tokio::io::AsyncWriteExt as _;
    stdin.write_all(STDIN_LOG.as_bytes()).await.unwrap();
    drop(stdin);
    let r = finish(child).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let c = server.client("p");
    let s = c.load("cli/stdin/+/log/stdout").await;
    assert_eq!(s.expect(200)["state"]["status"], "terminated");
    assert_eq!(
        c.load("cli/stdin/+/log/stderr").await.status,
        404,
        "stdin makes one stream"
    );
    let cat = run(&base, &["cat", "--project", "p", "cli/stdin/+/log/stdout"]).await;
    assert_eq!(
        cat.stdout, STDIN_LOG,
        "passed through unchanged, markers too"
    );
    // The CI markup in it is understood by the server.
    let outline = c
        .raw(
            reqwest::Method::GET,
            &c.url("sections/cli/stdin/+/log/stdout"),
            None,
            None,
            vec![],
        )
        .await;
    let sections: Vec<Value> = outline.expect(200)["sections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            json!([
                s["title"],
                s["markup"],
                s["first_line"],
                s["last_line"],
                s["collapsed"]
            ])
        })
        .collect();
    assert_eq!(
        sections,
        vec![
            json!(["Build", "gitlab", 2, 4, true]),
            json!(["Lint", "github", 5, 6, true]),
            json!(["Upload", "buildkite", 7, 8, false]),
        ]
    );

    // With a command and without --quiet, its output is copied to logdog's own.
    let r = run(
        &base,
        &[
            "stream",
            "--project",
            "p",
            "--prefix",
            "cli/tee",
            "--",
            "sh",
            "-c",
            "echo to-out; echo to-err >&2",
        ],
    )
    .await;
    assert_eq!((r.code, r.stdout.as_str()), (0, "to-out\n"));
    assert!(r.stderr.contains("to-err\n"), "{}", r.stderr);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_refusals_stop_before_the_command_runs() {
    let db = TestDb::sqlite();
    let server = TestServer::start(private_project(db.config(), "writer-token", "writer"));
    let base = server.base();
    let marker = db.dir.path().join("ran");
    let touch = format!("touch {}", marker.display());
    // Someone else's prefix.
    server
        .client("p")
        .with_token(Some("writer-token"))
        .prefix("taken")
        .await;
    let cases: [(&[&str], &str); 5] = [
        (
            &[
                "--project",
                "p",
                "--prefix",
                "taken",
                "--token",
                "writer-token",
            ],
            "409 already_exists: prefix \"taken\" is already registered",
        ),
        (&["--project", "p"], "401 unauthenticated"),
        (
            &["--project", "q", "--token", "writer-token"],
            "403 permission_denied",
        ),
        (
            &[
                "--project",
                "p",
                "--prefix",
                "bad//prefix",
                "--token",
                "writer-token",
            ],
            "invalid",
        ),
        (
            &["--project", "p", "--coordinator", "localhost:1"],
            "must be an http:// or https:// URL",
        ),
    ];
    for (flags, message) in cases {
        let mut args = vec!["stream"];
        args.extend_from_slice(flags);
        args.extend(["--", "sh", "-c", &touch]);
        let r = run(&base, &args).await;
        assert_eq!(r.code, 1, "{flags:?}: {}", r.stderr);
        assert!(r.stderr.contains(message), "{flags:?}: {}", r.stderr);
        assert!(!marker.exists(), "{flags:?}: the command did not run");
        assert!(
            !r.stderr.contains("/logs/"),
            "{flags:?}: no viewer URL for a refused registration: {}",
            r.stderr
        );
    }
    // With the token it runs, and the token reads the result back.
    let r = run(
        &base,
        &[
            "stream",
            "--project",
            "p",
            "--prefix",
            "ok",
            "--token",
            "writer-token",
            "--",
            "sh",
            "-c",
            &touch,
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(marker.exists());
    let mut q = logdog(&base, &["query", "--project", "p", "--json"]);
    q.env("LOGDOG_TOKEN", "writer-token");
    let q = finish(q.spawn().unwrap()).await;
    let streams: Value = serde_json::from_str(&q.stdout).unwrap();
    let paths: Vec<_> = streams
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["path"].clone())
        .collect();
    assert_eq!(
        paths,
        [
            json!("ok/+/run/result"),
            json!("ok/+/run/stderr"),
            json!("ok/+/run/stdout")
        ]
    );
    let anonymous = run(&base, &["query", "--project", "p"]).await;
    assert_eq!(anonymous.code, 1);
    assert!(
        anonymous.stderr.contains("401 unauthenticated"),
        "{}",
        anonymous.stderr
    );
    server.stop().await;
}

async fn read_clients(db: TestDb) {
    let server = TestServer::start(db.config());
    let base = server.base();
    let c = server.client("p");
    let secret = c.prefix("b/1").await;
    c.prefix("b/1/sub").await;
    c.register("b/1/+/log", &secret, json!({"tags": {"step": "compile"}}))
        .await
        .expect(201);
    c.append("b/1/+/log", &secret, lines(0, 50))
        .await
        .expect(200);
    c.register("b/1/+/other", &secret, json!({"stream_type": "binary"}))
        .await
        .expect(201);
    let all: String = (0..50).map(|i| format!("line {i}\n")).collect();

    // cat by path with --project, by PROJECT/path, and by the viewer URL.
    for args in [
        vec!["cat", "--project", "p", "b/1/+/log"],
        vec!["cat", "p/b/1/+/log"],
    ] {
        let r = run(&base, &args).await;
        assert_eq!(
            (r.code, r.stdout.as_str()),
            (0, all.as_str()),
            "{args:?}: {}",
            r.stderr
        );
    }
    let url = format!("{base}/logs/p/b/1/+/log");
    let r = run("http://127.0.0.1:1", &["cat", &url, "--from", "48"]).await;
    assert_eq!(
        r.stdout, "line 48\nline 49\n",
        "the URL names the coordinator: {}",
        r.stderr
    );

    // tail -n counts lines.
    let r = run(&base, &["tail", "-n", "3", "p/b/1/+/log"]).await;
    assert_eq!(r.stdout, "line 47\nline 48\nline 49\n");

    // Following: cat -f and tail -f print what arrives and end with the stream.
    let cat = logdog(&base, &["cat", "-f", "p/b/1/+/log"])
        .spawn()
        .unwrap();
    let tail = logdog(&base, &["tail", "-n", "1", "-f", "p/b/1/+/log"])
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.append("b/1/+/log", &secret, lines(50, 60))
        .await
        .expect(200);
    c.terminate("b/1/+/log", &secret, json!({"terminal_index": 59}))
        .await
        .expect(200);
    let all60: String = (0..60).map(|i| format!("line {i}\n")).collect();
    let cat = finish(cat).await;
    assert_eq!(
        (cat.code, cat.stdout.as_str()),
        (0, all60.as_str()),
        "{}",
        cat.stderr
    );
    let tail = finish(tail).await;
    let want: String = (49..60).map(|i| format!("line {i}\n")).collect();
    assert_eq!((tail.code, tail.stdout), (0, want), "{}", tail.stderr);

    // query: a table, filters, JSON.
    let r = run(&base, &["query", "--project", "p"]).await;
    let rows: Vec<Vec<&str>> = r
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        ["PATH", "TYPE", "STATUS", "LENGTH", "ARCHIVAL", "UPDATED"]
    );
    assert_eq!(
        rows[1][..6],
        ["b/1/+/log", "text", "terminated", "60", "lines", "none"]
    );
    assert_eq!(
        rows[2][..6],
        ["b/1/+/other", "binary", "streaming", "0", "bytes", "none"]
    );
    assert_eq!(rows.len(), 3);
    let r = run(
        &base,
        &["query", "--project", "p", "--tag", "step=compile", "--json"],
    )
    .await;
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["path"], "b/1/+/log");
    let r = run(
        &base,
        &["query", "--project", "p", "--limit", "1", "--json"],
    )
    .await;
    assert_eq!(
        serde_json::from_str::<Value>(&r.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let r = run(&base, &["query", "--project", "p", "--name", "a//b"]).await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("400 invalid_argument"), "{}", r.stderr);

    // ls: prefixes, then a prefix's streams.
    let r = run(&base, &["ls", "--project", "p"]).await;
    let names: Vec<&str> = r
        .stdout
        .lines()
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    assert_eq!(names, ["b/1/", "b/1/sub/"]);
    let r = run(&base, &["ls", "--project", "p", "b/1"]).await;
    assert_eq!(
        r.stdout,
        "b/1/sub/\texpires ".to_owned()
            + r.stdout
                .lines()
                .next()
                .unwrap()
                .split("expires ")
                .nth(1)
                .unwrap()
            + "\nb/1/+/log\tterminated\t60 lines\nb/1/+/other\tstreaming\t0 bytes\n"
    );
    // Nothing found: say where it looked.
    let r = run(&base, &["query", "--project", "elsewhere"]).await;
    assert_eq!((r.code, r.stdout.as_str()), (0, ""), "{}", r.stderr);
    assert_eq!(
        r.stderr,
        "logdog: no streams match in project \"elsewhere\" (--project or $LOGDOG_PROJECT chooses another)\n"
    );
    let r = run(&base, &["ls", "--project", "elsewhere", "x"]).await;
    assert_eq!((r.code, r.stdout.as_str()), (0, ""), "{}", r.stderr);
    assert_eq!(
        r.stderr,
        "logdog: nothing registered under \"x\" in project \"elsewhere\" (--project or $LOGDOG_PROJECT chooses another)\n"
    );

    // Errors: a clear message and exit code 1.
    let r = run(&base, &["cat", "p/b/1/+/missing"]).await;
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stderr,
        "logdog: 404 not_found: stream \"b/1/+/missing\" not found\n"
    );
    let r = run(&base, &["cat", "-f", "p/b/1/+/missing"]).await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("404 not_found"), "{}", r.stderr);
    let r = run(&base, &["cat", "b/1/log"]).await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("expected PREFIX/+/NAME"), "{}", r.stderr);
    server.stop().await;
}
both!(read_clients);

/// A refusal retrying cannot fix (here: the stream is purged mid-run, so appends answer
/// 409) stops that stream's upload, but the command runs to its end unhindered, even with
/// far more output than the buffer and spool could hold, and its exit code comes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_upload_never_blocks_the_command() {
    let db = TestDb::sqlite();
    let server = TestServer::start(db.config());
    let base = server.base();
    let spool = tempfile::tempdir().unwrap();
    let script = "echo first; sleep 1; seq 1 200000; echo last; exit 4";
    let child = logdog(
        &base,
        &[
            "stream",
            "--project",
            "p",
            "--prefix",
            "cli/purged",
            "--buffer-bytes",
            "1000",
            "--spool-bytes",
            "5000",
            "--spool-dir",
            spool.path().to_str().unwrap(),
            "--flush-interval",
            "0.05",
            "--",
            "sh",
            "-c",
            script,
        ],
    )
    .spawn()
    .unwrap();
    let c = server.client("p");
    let mut seen = false;
    for _ in 0..100 {
        let s = c.load("cli/purged/+/run/stdout").await;
        if s.status == 200 && s.body["state"]["next_index"].as_u64() > Some(0) {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(seen, "the first line arrived");
    c.delete("streams/cli/purged/+/run/stdout").await;
    let r = finish(child).await;
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(r.stdout.starts_with("first\n1\n2\n"), "output still copied");
    assert!(r.stdout.ends_with("199999\n200000\nlast\n"));
    assert!(
        r.stderr.contains("409 conflict")
            && r.stderr.contains("the rest of its output is not uploaded"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("run/stderr: 0 lines uploaded and terminated"),
        "{}",
        r.stderr
    );
    server.stop().await;
}

#[test]
fn every_command_has_help() {
    for cmd in [
        "serve",
        "archivist",
        "token",
        "migrate",
        "stream",
        "cat",
        "tail",
        "query",
        "ls",
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_logdog"))
            .args([cmd, "--help"])
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(out.status.success(), "{cmd}");
        assert!(
            text.contains(&format!("Usage: logdog {cmd}")),
            "{cmd}: {text}"
        );
        assert!(text.lines().count() > 5, "{cmd}: {text}");
    }
}

/// When even the spool cannot be written (here its folder cannot be created) while the
/// coordinator is away, logdog says so, keeps what it had queued, and terminates the
/// stream after it once the coordinator is back: a clean prefix of the output, no gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_spool_ends_the_stream_after_what_was_queued() {
    let db = TestDb::sqlite();
    let port = free_port();
    let mut config = db.config();
    config.listen = format!("127.0.0.1:{port}");
    let base = format!("http://127.0.0.1:{port}");
    let script = "for i in $(seq 1 300); do echo line $i; sleep 0.003; done";
    let child = logdog(
        &base,
        &[
            "stream",
            "--project",
            "p",
            "--prefix",
            "cli/nospool",
            "--quiet",
            "--buffer-bytes",
            "2000",
            "--spool-dir",
            "/proc/no-such-folder",
            "--flush-interval",
            "0.01",
            "--",
            "sh",
            "-c",
            script,
        ],
    )
    .spawn()
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let server = TestServer::start(config);
    let r = finish(child).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("cannot write the spool file") && r.stderr.contains("not uploaded"),
        "{}",
        r.stderr
    );
    let c = server.client("p");
    let entries = assert_terminated_whole(&db, &c, "cli/nospool/+/run/stdout").await;
    let cat = run(&base, &["cat", "p/cli/nospool/+/run/stdout"]).await;
    let lines: Vec<&str> = cat.stdout.lines().collect();
    assert!(
        !lines.is_empty() && lines.len() < 300,
        "{} lines in {entries} entries",
        lines.len()
    );
    let want: Vec<String> = (1..=lines.len()).map(|i| format!("line {i}")).collect();
    assert_eq!(lines, want, "a clean prefix of the output");
    server.stop().await;
}

/// `serve` on a port that is taken says so in one line and exits 1, before it creates or
/// migrates any storage.
#[test]
fn serve_on_a_taken_port_fails_cleanly() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let cwd = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_logdog"))
        .args(["serve", "--listen", &addr])
        .current_dir(cwd.path())
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim(),
        format!("logdog: binding {addr}: Address already in use (os error 98)"),
        "{stderr}"
    );
    assert!(
        !cwd.path().join("logdog-data").exists(),
        "nothing is created before the port is bound"
    );
}

/// `logdog query --json | head -1`: a reader that closes the pipe early ends the command
/// quietly, like `cat`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_ends_quietly() {
    let db = TestDb::sqlite();
    let server = TestServer::start(db.config());
    let c = server.client("p");
    let secret = c.prefix("pipe").await;
    for i in 0..300 {
        c.register(&format!("pipe/+/s{i}"), &secret, json!({}))
            .await
            .expect(201);
    }
    let script = format!(
        "\"$0\" query --coordinator {} --project p --json 2>\"$1\" | head -c 100 >/dev/null; echo ${{PIPESTATUS[0]}}",
        server.base()
    );
    let err = tempfile::NamedTempFile::new().unwrap();
    let out = std::process::Command::new("bash")
        .args(["-c", &script, env!("CARGO_BIN_EXE_logdog")])
        .arg(err.path())
        .env_remove("LOGDOG_TOKEN")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");
    assert_eq!(std::fs::read_to_string(err.path()).unwrap(), "");
    server.stop().await;
}

/// `cat`, `tail`, `query` and `ls` against a coordinator that is not there: one line that
/// says how long they retry, one that they gave up, exit 1, within `--retry-for`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_clients_give_up_on_an_absent_coordinator() {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    for (args, what) in [
        (vec!["cat", "p/a/+/b"], "reading"),
        (vec!["tail", "p/a/+/b"], "reading"),
        (vec!["cat", "--follow", "p/a/+/b"], "following"),
        (vec!["query", "--project", "p"], "querying"),
        (vec!["ls", "--project", "p"], "listing prefixes"),
    ] {
        let started = std::time::Instant::now();
        let mut a = args.clone();
        a.extend(["--retry-for", "1.5"]);
        let r = run(&base, &a).await;
        let took = started.elapsed();
        assert_eq!(r.code, 1, "{args:?}: {}", r.stderr);
        assert!(r.stdout.is_empty(), "{args:?}");
        let lines: Vec<&str> = r.stderr.lines().collect();
        let refused = format!("cannot connect to {base}: Connection refused");
        assert_eq!(lines.len(), 2, "{args:?}: {}", r.stderr);
        assert!(
            lines[0].starts_with(&format!(
                "logdog: {what}: coordinator unreachable: {refused}"
            )) && lines[0].ends_with("; retrying for up to 1.5 s (--retry-for)"),
            "{args:?}: {}",
            lines[0]
        );
        assert!(
            lines[1].ends_with("; gave up after retrying for 1.5 s (--retry-for)"),
            "{args:?}: {}",
            lines[1]
        );
        assert!(
            took >= Duration::from_millis(1400) && took < Duration::from_secs(10),
            "{args:?} took {took:?}"
        );
    }
    // 0: no retry at all.
    let r = run(&base, &["query", "--retry-for", "0"]).await;
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .trim_end()
            .ends_with("(not retried: --retry-for 0)"),
        "{}",
        r.stderr
    );
}

/// A follow that was connected once keeps retrying a coordinator that went away, saying so
/// at each attempt, and carries on where it was when the coordinator is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_outlasts_a_restart_and_says_so() {
    let db = TestDb::sqlite();
    let port = free_port();
    let mut config = db.config();
    config.listen = format!("127.0.0.1:{port}");
    let server = TestServer::start(config.clone());
    let base = server.base();
    let c = server.client("p");
    let secret = c.text_stream("fol", "s").await;
    c.append("fol/+/s", &secret, lines(0, 2)).await.expect(200);
    let child = logdog(&base, &["cat", "--follow", "--retry-for", "1", "p/fol/+/s"])
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    server.stop().await;
    // Longer than --retry-for: once connected, a follow does not give up.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let server = TestServer::start(config);
    let c = server.client("p");
    c.append("fol/+/s", &secret, lines(2, 4)).await.expect(200);
    c.terminate("fol/+/s", &secret, json!({"terminal_index": 3}))
        .await
        .expect(200);
    let r = finish(child).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "line 0\nline 1\nline 2\nline 3\n");
    let attempts = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("logdog: following: ") && l.contains("(attempt "))
        .count();
    assert!(attempts >= 3, "one line per attempt: {}", r.stderr);
    assert!(
        r.stderr.contains("logdog: following: succeeded after"),
        "{}",
        r.stderr
    );
    server.stop().await;
}

/// `logdog query --tag run.exit_code=CODE --json` in project p.
async fn runs_that_exited(base: &str, code: i32) -> Value {
    let tag = format!("run.exit_code={code}");
    let q = run(base, &["query", "--project", "p", "--tag", &tag, "--json"]).await;
    assert_eq!(q.code, 0, "{}", q.stderr);
    serde_json::from_str(&q.stdout).unwrap()
}

/// The run record: `run.command` and `run.started` on the output streams, the end on
/// `run/result` (one line, tags with the end, duration and exit code), queryable by tag,
/// and the same after archival.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_is_recorded_queryable_and_archived() {
    let db = TestDb::sqlite();
    let mut config = db.config();
    config.archival.embedded_archivist = true;
    config.archival.complete_delay = logdog::config::secs(0.1);
    config.archival.retry_delay = logdog::config::secs(0.1);
    let server = TestServer::start(config);
    let base = server.base();
    let r = run(
        &base,
        &[
            "stream",
            "--project",
            "p",
            "--prefix",
            "rec/1",
            "--quiet",
            "--tag",
            "ci=yes",
            "--",
            "sh",
            "-c",
            "echo it\\'s; sleep 0.2; exit 7",
        ],
    )
    .await;
    assert_eq!(r.code, 7, "{}", r.stderr);
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines[0], format!("logdog: run: {base}/logs/p/rec/1/+/run"));
    assert!(
        lines
            .last()
            .unwrap()
            .starts_with("logdog: run/result: exit code 7 after 0."),
        "{}",
        r.stderr
    );
    let c = server.client("p");
    let command = "sh -c 'echo it\\'\\''s; sleep 0.2; exit 7'";
    let out = c.load("rec/1/+/run/stdout").await;
    let tags = &out.expect(200)["descriptor"]["tags"];
    assert_eq!(tags["run.command"], command);
    assert_eq!(tags["ci"], "yes");
    let started = tags["run.started"].as_str().unwrap().to_owned();
    // Queryable by exit code, from the CLI.
    let found = runs_that_exited(&base, 7).await;
    assert_eq!(found.as_array().unwrap().len(), 1, "{found}");
    let result = &found[0];
    assert_eq!(result["path"], "rec/1/+/run/result");
    let rt = &result["descriptor"]["tags"];
    assert_eq!(rt["run.command"], command);
    assert_eq!(rt["run.started"], started.as_str());
    assert_eq!(rt["run.exit_code"], "7");
    let duration: f64 = rt["run.duration"].as_str().unwrap().parse().unwrap();
    assert!((0.2..10.0).contains(&duration), "{duration}");
    let ended = chrono::DateTime::parse_from_rfc3339(rt["run.ended"].as_str().unwrap()).unwrap();
    let began = chrono::DateTime::parse_from_rfc3339(&started).unwrap();
    assert!(ended > began);
    assert_eq!(runs_that_exited(&base, 0).await, json!([]));
    let cat = run(&base, &["cat", "p/rec/1/+/run/result"]).await;
    assert!(
        cat.stdout.starts_with("exit code 7 after 0."),
        "{}",
        cat.stdout
    );
    // After archival: the same record, the same query.
    for _ in 0..200 {
        let s = c.load("rec/1/+/run/result").await;
        if s.body["state"]["archival"] == "complete" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = c.load("rec/1/+/run/result").await;
    assert_eq!(s.body["state"]["status"], "archived", "{}", s.body);
    assert_eq!(&s.body["descriptor"]["tags"], rt);
    let again = runs_that_exited(&base, 7).await;
    assert_eq!(again[0]["path"], "rec/1/+/run/result");
    let cat = run(&base, &["cat", "p/rec/1/+/run/result"]).await;
    assert!(
        cat.stdout.starts_with("exit code 7 after 0."),
        "{}",
        cat.stdout
    );
    server.stop().await;
}
