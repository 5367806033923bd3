//! The section outline (`GET …/sections/…`): GitLab, GitHub Actions and Buildkite markup
//! recognised by the server as entries arrive, kept with the stream, the same before and
//! after archival, and rebuilt from the archive when it was never stored.

use std::time::Duration;

use serde_json::{json, Value};

use crate::archivist::{archived, archiving};
use crate::both;
use crate::common::*;

const GL_START: &str = "\u{1b}[0Ksection_start:";
const GL_END: &str = "\u{1b}[0Ksection_end:";

/// A GitLab job log: `build` (collapsed) holds `compile` (whose start marker is split over
/// two entries and wrapped in colour codes), then `test` is opened and never closed.
fn gitlab_entries() -> Value {
    json!([
        {"stream_index": 0, "time_offset": 0.0, "text": {"lines": [
            "Running with gitlab-runner",
            format!("{GL_START}1700000000:build[collapsed=true]\r\u{1b}[0K\u{1b}[36;1mBuild step\u{1b}[0;m"),
            "building…",
        ]}},
        {"stream_index": 1, "time_offset": 1.0, "text": {"lines": [
            {"value": format!("\u{1b}[32m{GL_START}1700000001:comp"), "delimiter": ""},
        ]}},
        {"stream_index": 2, "time_offset": 1.5, "text": {"lines": [
            "ile\r\u{1b}[0KCompile\u{1b}[0m",
            "cc -c a.c",
            format!("{GL_END}1700000003:compile\r\u{1b}[0K"),
            format!("{GL_END}1700000004:build\r\u{1b}[0K"),
        ]}},
        {"stream_index": 3, "time_offset": 5.0, "text": {"lines": [
            format!("{GL_START}1700000005:test\r\u{1b}[0KTests"),
            "ok 1",
            "a line that mentions section_start:1:x but is no marker",
        ]}},
    ])
}

async fn get(c: &Client, rest: &str) -> Answer {
    c.raw(reqwest::Method::GET, &c.url(rest), None, None, vec![])
        .await
}

async fn sections(c: &Client, path: &str) -> Value {
    get(c, &format!("sections/{path}"))
        .await
        .expect(200)
        .clone()
}

/// The fields of each section that do not depend on when the outline was read.
fn shape(s: &Value) -> Vec<Value> {
    s["sections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            json!([
                x["name"],
                x["title"],
                x["markup"],
                x["depth"],
                x["parent"],
                x["first_line"],
                x["last_line"],
                x["first_index"],
                x["last_index"],
                x["collapsed"],
                x["closed_at_end"]
            ])
        })
        .collect()
}

async fn gitlab_sections_live_terminated_and_archived(db: TestDb) {
    let server = TestServer::start(archiving(&db, true));
    let c = server.client("p");
    let secret = c.prefix("gl").await;
    c.register(
        "gl/+/job",
        &secret,
        json!({"timestamp": "2026-12-06T10:00:00Z"}),
    )
    .await
    .expect(201);
    c.append("gl/+/job", &secret, gitlab_entries())
        .await
        .expect(200);

    // Live: the outline reaches the contiguous end; `test` is still open.
    let live = sections(&c, "gl/+/job").await;
    assert_eq!(live["project"], "p");
    assert_eq!(live["path"], "gl/+/job");
    assert_eq!(live["next_index"], 4);
    assert_eq!(live["complete"], false);
    assert_eq!(live["dropped"], 0);
    assert_eq!(
        shape(&live),
        vec![
            json!([
                "build",
                "Build step",
                "gitlab",
                0,
                null,
                1,
                7,
                0,
                2,
                true,
                false
            ]),
            json!(["compile", "Compile", "gitlab", 1, 0, 3, 6, 1, 2, false, false]),
            json!(["test", "Tests", "gitlab", 0, null, 8, null, 3, null, false, false]),
        ]
    );
    let build = &live["sections"][0];
    assert_eq!(build["start_time"], "2023-11-14T22:13:20Z");
    assert_eq!(build["end_time"], "2023-11-14T22:13:24Z");
    assert_eq!(build["duration_ms"], 4000.0);
    assert_eq!(live["sections"][2]["end_time"], Value::Null);
    assert_eq!(live["sections"][2]["duration_ms"], Value::Null);

    // The markers reach readers unchanged.
    let got = get(&c, "logs/gl/+/job?index=2&count=1")
        .await
        .expect(200)
        .clone();
    assert_eq!(
        got["entries"][0]["text"]["lines"][2]["value"],
        format!("{GL_END}1700000003:compile\r\u{1b}[0K")
    );

    // Terminated and complete: final, `test` closed at the last line.
    c.terminate("gl/+/job", &secret, json!({}))
        .await
        .expect(200);
    let done = sections(&c, "gl/+/job").await;
    assert_eq!(done["complete"], true);
    assert_eq!(
        shape(&done)[2],
        json!(["test", "Tests", "gitlab", 0, null, 8, 10, 3, 3, false, true])
    );
    assert_eq!(done["sections"][2]["end_time"], "2026-12-06T10:00:05Z");

    // Archived: the intermediate data is gone, the outline is the same.
    archived(&c, "gl/+/job", &["complete"]).await;
    assert!(stored_entries(&db.url, "p", "gl/+/job").is_empty());
    let after = sections(&c, "gl/+/job").await;
    assert_eq!(after, done);

    // The archive holds the outline too: a `sections` object beside its entries, read
    // when the database has none.
    let loaded = c.load("gl/+/job").await.expect(200).clone();
    let entries_url = loaded["state"]["archive"]["stream_url"].as_str().unwrap();
    let folder = std::path::PathBuf::from(
        entries_url
            .strip_prefix("file://")
            .and_then(|u| u.strip_suffix("/entries"))
            .unwrap(),
    );
    let object = std::fs::read(folder.join("sections")).unwrap();
    assert!(object.starts_with(b"LDSECT01"), "{object:?}");
    let id = logdog_schema::names::stream_id("gl/+/job");
    let store = logdog_schema::Store::open(&db.url, 1).unwrap();
    let forget = || {
        store
            .write(|c| logdog_schema::store::delete_outlines(c, "p", std::slice::from_ref(&id)))
            .unwrap()
    };
    forget();
    assert_eq!(sections(&c, "gl/+/job").await, done);
    assert!(store
        .read(|c| logdog_schema::store::get_outline(c, "p", &id))
        .unwrap()
        .is_some_and(|o| o.finished && o.fed_to == 4));
    // An archive without one (written before archives held outlines): the outline is
    // built from the archive's entries, once.
    forget();
    std::fs::remove_file(folder.join("sections")).unwrap();
    assert_eq!(sections(&c, "gl/+/job").await, done);
    assert!(store
        .read(|c| logdog_schema::store::get_outline(c, "p", &id))
        .unwrap()
        .is_some_and(|o| o.finished && o.fed_to == 4));

    // Deleting the prefix removes it.
    assert_eq!(c.delete("prefixes/gl").await.status.as_u16(), 204);
    assert_eq!(
        store
            .read(|c| logdog_schema::store::get_outline(c, "p", &id))
            .unwrap(),
        None
    );
    server.stop().await;
}
both!(gitlab_sections_live_terminated_and_archived);

async fn github_and_buildkite_sections(db: TestDb) {
    let server = TestServer::start(db.config());
    let c = server.client("p");
    let secret = c.prefix("ci").await;
    for name in ["gh", "bk", "bin"] {
        let descriptor = if name == "bin" {
            json!({"stream_type": "binary"})
        } else {
            json!({})
        };
        c.register(&format!("ci/+/{name}"), &secret, descriptor)
            .await
            .expect(201);
    }
    c.append(
        "ci/+/gh",
        &secret,
        json!([{"stream_index": 0, "text": {"lines": [
            "::group::Install %25 deps",
            "npm ci",
            "::endgroup::",
            "  ::group::Test",
            "##[group]Lint",
            "eslint",
        ]}}]),
    )
    .await
    .expect(200);
    c.append(
        "ci/+/bk",
        &secret,
        json!([{"stream_index": 0, "text": {"lines": [
            "--- \u{1b}[33mSetup\u{1b}[0m",
            "setting up",
            "+++ Run tests",
            "FAIL: test_x",
            "~~~ Cleanup",
            "rm -rf tmp",
        ]}}]),
    )
    .await
    .expect(200);
    c.append(
        "ci/+/bin",
        &secret,
        json!([{"stream_index": 0, "binary": {"data": "LS0tIHgK"}}]),
    )
    .await
    .expect(200);

    let gh = sections(&c, "ci/+/gh").await;
    assert_eq!(
        shape(&gh),
        vec![
            json!([
                "github:0",
                "Install % deps",
                "github",
                0,
                null,
                0,
                2,
                0,
                0,
                true,
                false
            ]),
            // Groups do not nest: `Lint` closes `Test` at the line before it.
            json!(["github:1", "Test", "github", 0, null, 3, 3, 0, 0, true, false]),
            json!(["github:2", "Lint", "github", 0, null, 4, null, 0, null, true, false]),
        ]
    );
    let bk = sections(&c, "ci/+/bk").await;
    assert_eq!(
        shape(&bk),
        vec![
            json!([
                "buildkite:0",
                "Setup",
                "buildkite",
                0,
                null,
                0,
                1,
                0,
                0,
                true,
                false
            ]),
            json!([
                "buildkite:1",
                "Run tests",
                "buildkite",
                0,
                null,
                2,
                3,
                0,
                0,
                false,
                false
            ]),
            json!([
                "buildkite:2",
                "Cleanup",
                "buildkite",
                0,
                null,
                4,
                null,
                0,
                null,
                true,
                false
            ]),
        ]
    );
    assert_eq!(bk["sections"][2]["deemphasized"], true);
    let bin = sections(&c, "ci/+/bin").await;
    assert_eq!(bin["sections"], json!([]));
    assert_eq!(bin["next_index"], 1);

    // Errors: unknown stream, unknown parameter.
    get(&c, "sections/ci/+/nope")
        .await
        .expect_error(404, "not_found");
    get(&c, "sections/ci/+/gh?q=x")
        .await
        .expect_error(400, "invalid_argument");
    server.stop().await;
}
both!(github_and_buildkite_sections);

/// The stream actor keeps the stored outline close behind the stream while it is written:
/// a reader finds it saved without asking for it first. The appends come in four batches
/// a save apart: the first caught up from storage, the second fed in memory, then a batch
/// past a gap and the one that fills it (a commit the outline in memory cannot follow, so
/// it is caught up from storage again).
async fn the_outline_is_kept_as_entries_arrive(db: TestDb) {
    let server = TestServer::start(db.config());
    let c = server.client("p");
    let secret = c.text_stream("k", "s").await;
    let entry = |i: u64| {
        let line = if i.is_multiple_of(50) {
            format!("--- step {}", i / 50)
        } else {
            format!("line {i}")
        };
        json!({"stream_index": i, "sequence": i, "text": {"lines": [line]}})
    };
    let id = logdog_schema::names::stream_id("k/+/s");
    let store = logdog_schema::Store::open(&db.url, 1).unwrap();
    let mut stored = None;
    for (range, saved_to) in [
        (0..100, 100),
        (100..150, 150),
        (170..200, 150),
        (150..170, 200),
    ] {
        let batch: Vec<Value> = range.map(entry).collect();
        c.append("k/+/s", &secret, Value::Array(batch))
            .await
            .expect(200);
        for _ in 0..100 {
            stored = store
                .read(|c| logdog_schema::store::get_outline(c, "p", &id))
                .unwrap();
            if stored.as_ref().is_some_and(|o| o.fed_to == saved_to) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let o = stored.as_ref().expect("the actor saved the outline");
        assert_eq!(o.fed_to, saved_to);
        assert_eq!(o.outline.sections.len() as u64, saved_to.div_ceil(50));
    }
    let stored = stored.expect("the actor saved the outline");
    assert!(!stored.finished);
    let s = sections(&c, "k/+/s").await;
    assert_eq!(s["sections"].as_array().unwrap().len(), 4);
    for k in 0..4 {
        assert_eq!(s["sections"][k]["title"], format!("step {k}"));
        assert_eq!(s["sections"][k]["first_line"], 50 * k);
    }
    assert_eq!(s["sections"][2]["last_line"], 149);
    server.stop().await;
}
both!(the_outline_is_kept_as_entries_arrive);
