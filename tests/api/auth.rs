//! Access control: every route with every role (anonymous and an unknown token included),
//! on a private and a public project, and on a project that does not exist.

use reqwest::Method;
use serde_json::json;

use crate::common::*;

const ROLES: [&str; 7] = [
    "anonymous",
    "unknown",
    "reader",
    "writer",
    "writer-elsewhere",
    "service",
    "admin",
];

fn token(role: &str) -> Option<String> {
    match role {
        "anonymous" => None,
        other => Some(format!("{other}-token")),
    }
}

fn config(db: &TestDb) -> logdog::config::Config {
    use logdog::config::{ProjectConfig, TokenConfig};
    let mut c = db.config();
    let project = |name: &str, public| ProjectConfig {
        name: name.into(),
        public,
        prefix_expiration: None,
        archive: None,
    };
    c.projects = vec![
        project("priv", false),
        project("pub", true),
        project("other", false),
    ];
    let grant = |role: &str, as_role: &str, projects: Option<Vec<&str>>| TokenConfig {
        sha256: logdog::auth::token_hash(&format!("{role}-token")),
        role: as_role.parse().unwrap(),
        projects: projects.map(|ps| ps.into_iter().map(str::to_owned).collect()),
    };
    c.tokens = vec![
        grant("reader", "reader", Some(vec!["priv", "pub"])),
        grant("writer", "writer", Some(vec!["priv", "pub"])),
        grant("writer-elsewhere", "writer", Some(vec!["other"])),
        grant("service", "service", None),
        grant("admin", "admin", None),
    ];
    c
}

/// The status each role gets, in ROLES order, for a route: `ok` for the allowed ones.
fn expect(ok: u16, allowed: &[&str], denied_anonymous: u16) -> Vec<u16> {
    ROLES
        .iter()
        .map(|r| match *r {
            _ if allowed.contains(r) => ok,
            "anonymous" => denied_anonymous,
            "unknown" => 401,
            _ => 403,
        })
        .collect()
}

#[tokio::test]
async fn every_route_checks_every_role() {
    let db = TestDb::sqlite();
    let server = TestServer::start(config(&db));
    let mut failures = Vec::new();
    let mut checked = 0;
    for project in ["priv", "pub", "nope"] {
        let admin = server.client(project).with_token(token("admin").as_deref());
        let public = project == "pub";
        // Set-up, as admin: a prefix and streams for each call that needs one.
        let mut secret = String::new();
        if project != "nope" {
            secret = admin.prefix("set").await;
            for i in 0..ROLES.len() {
                for name in ["t", "p", "a", "r"] {
                    admin
                        .register(&format!("set/+/{name}{i}"), &secret, json!({}))
                        .await
                        .expect(201);
                }
                admin.prefix(&format!("del{i}")).await;
            }
        }
        let read_ok: Vec<&str> = if public {
            vec![
                "anonymous",
                "reader",
                "writer",
                "writer-elsewhere",
                "service",
                "admin",
            ]
        } else {
            vec!["reader", "writer", "service", "admin"]
        };
        let write_ok = ["writer", "service", "admin"];
        let anon_read = if public { 200 } else { 401 };
        for (i, role) in ROLES.iter().enumerate() {
            let c = admin.with_token(token(role).as_deref());
            let get = |rest: String| {
                let c = c.clone();
                async move { c.raw(Method::GET, &c.url(&rest), None, None, vec![]).await }
            };
            let mut calls: Vec<(&str, u16, Vec<u16>)> = Vec::new();
            let mut record = |name: &'static str, status: u16, expected: Vec<u16>| {
                calls.push((name, status, expected))
            };
            let exists = project != "nope";
            // For a project that does not exist, every token answers 403 and anonymous 401.
            let table = |ok: u16, allowed: &[&str], anon: u16| {
                if exists {
                    expect(ok, allowed, anon)
                } else {
                    expect(ok, &[], 401)
                }
            };
            let s = c
                .json(
                    Method::POST,
                    "prefixes",
                    None,
                    &json!({"prefix": format!("new{i}")}),
                )
                .await
                .status
                .as_u16();
            record("RegisterPrefix", s, table(201, &write_ok, 401));
            record(
                "ListPrefixes",
                get("prefixes".into()).await.status.as_u16(),
                table(200, &read_ok, anon_read),
            );
            let s = c.delete(&format!("prefixes/del{i}")).await.status.as_u16();
            record("DeletePrefix", s, table(204, &["admin"], 401));
            let s = c
                .register(&format!("set/+/new{i}"), &secret, json!({}))
                .await
                .status
                .as_u16();
            record("RegisterStream", s, table(201, &write_ok, 401));
            record(
                "LoadStream",
                get(format!("streams/set/+/t{i}")).await.status.as_u16(),
                table(200, &read_ok, anon_read),
            );
            let s = c
                .append(&format!("set/+/a{i}"), &secret, lines(0, 1))
                .await
                .status
                .as_u16();
            record("Append", s, table(200, &write_ok, 401));
            let s = c
                .terminate(&format!("set/+/t{i}"), &secret, json!({}))
                .await
                .status
                .as_u16();
            record("Terminate", s, table(200, &write_ok, 401));
            let s = c
                .delete(&format!("streams/set/+/p{i}"))
                .await
                .status
                .as_u16();
            record("Purge", s, table(204, &["admin"], 401));
            let s = c
                .json(
                    Method::POST,
                    "bundles",
                    Some(&secret),
                    &json!({"prefix": "set", "streams": []}),
                )
                .await
                .status
                .as_u16();
            record("Bundle", s, table(200, &write_ok, 401));
            record(
                "Get",
                get(format!("logs/set/+/r{i}")).await.status.as_u16(),
                table(200, &read_ok, anon_read),
            );
            record(
                "Tail",
                get(format!("tail/set/+/r{i}")).await.status.as_u16(),
                table(200, &read_ok, anon_read),
            );
            record(
                "Query",
                get("streams".into()).await.status.as_u16(),
                table(200, &read_ok, anon_read),
            );
            // A plain GET of the watch route: allowed callers reach the upgrade (400 here).
            record(
                "Watch",
                get(format!("watch/set/+/r{i}")).await.status.as_u16(),
                table(
                    400,
                    &read_ok,
                    anon_read.min(400).max(if public { 400 } else { 401 }),
                ),
            );
            let web = c
                .raw(
                    Method::GET,
                    &format!("{}/logs/{project}/set/+/r{i}", server.base()),
                    None,
                    None,
                    vec![],
                )
                .await
                .status
                .as_u16();
            record("WebText", web, table(200, &read_ok, anon_read));
            for (name, status, expected) in calls {
                let want = expected[i];
                checked += 1;
                if status != want {
                    failures.push(format!(
                        "{project} {name} as {role}: got {status}, want {want}"
                    ));
                }
            }
        }
    }
    // Routes outside projects: archive tasks need service or admin.
    for role in ROLES {
        let c = server.client("priv").with_token(token(role).as_deref());
        let url = format!("{}/api/v1/archive-tasks/lease", server.base());
        let s = c
            .raw(
                Method::POST,
                &url,
                None,
                Some("application/json"),
                b"{}".to_vec(),
            )
            .await
            .status
            .as_u16();
        let want = match role {
            "service" | "admin" => 200,
            "anonymous" | "unknown" => 401,
            _ => 403,
        };
        if s != want {
            failures.push(format!("lease as {role}: got {s}, want {want}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(
        checked,
        3 * ROLES.len() * 14,
        "every route, role and project was checked"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_embedded_archivist_has_its_own_service_token() {
    let db = TestDb::sqlite();
    let mut config = config(&db);
    config.archival.embedded_archivist = true;
    config.archival.complete_delay = logdog::config::secs(0.1);
    let server = TestServer::start(config);
    let c = server.client("priv").with_token(Some("writer-token"));
    let secret = c.text_stream("emb", "s").await;
    c.append("emb/+/s", &secret, lines(0, 3)).await.expect(200);
    c.terminate("emb/+/s", &secret, json!({})).await.expect(200);
    let mut archival = serde_json::Value::Null;
    for _ in 0..100 {
        archival = c.load("emb/+/s").await.body["state"]["archival"].clone();
        if archival == "complete" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(archival, "complete");
    server.stop().await;
}

#[tokio::test]
async fn config_and_projects_show_what_the_caller_may_see() {
    let db = TestDb::sqlite();
    let server = TestServer::start(config(&db));
    let get = |role: &str, path: &str| {
        let c = server.client("priv").with_token(token(role).as_deref());
        let url = format!("{}{path}", server.base());
        async move { c.raw(Method::GET, &url, None, None, vec![]).await }
    };
    let cfg = get("service", "/api/v1/config").await;
    let body = cfg.expect(200);
    assert_eq!(body["archival"]["complete_delay"], 5.0);
    assert!(body.get("tokens").is_none() && !body.to_string().contains("-token"));
    get("reader", "/api/v1/config")
        .await
        .expect_error(403, "permission_denied");
    get("anonymous", "/api/v1/config")
        .await
        .expect_error(401, "unauthenticated");
    let names = |a: Answer| -> Vec<String> {
        a.expect(200)["projects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(get("anonymous", "/api/v1/projects").await), ["pub"]);
    assert_eq!(
        names(get("reader", "/api/v1/projects").await),
        ["priv", "pub"]
    );
    assert_eq!(
        names(get("writer-elsewhere", "/api/v1/projects").await),
        ["pub", "other"]
    );
    assert_eq!(
        names(get("admin", "/api/v1/projects").await),
        ["priv", "pub", "other"]
    );
    server.stop().await;
}

#[test]
fn the_token_command_prints_a_token_and_its_config_lines() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_logdog"))
        .args(["token", "--role", "writer", "--project", "chromium"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(token.len(), 64);
    let lines = String::from_utf8(out.stderr).unwrap();
    assert!(
        lines.contains(&format!(
            "sha256 = \"{}\"",
            logdog::auth::token_hash(&token)
        )),
        "{lines}"
    );
    assert!(
        lines.contains("role = \"writer\"") && lines.contains("projects = [\"chromium\"]"),
        "{lines}"
    );
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_logdog"))
        .args(["token", "--role", "boss"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}
