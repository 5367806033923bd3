use super::*;

fn load_str(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logdog.toml");
    std::fs::write(&path, text).unwrap();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::load(Some(&path), &env)
}

#[test]
fn defaults_match_the_design() {
    let c = Config::load(None, &[]).unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(c.listen, "127.0.0.1:8080");
    assert_eq!(c.archival.complete_delay, secs(5.0));
    assert_eq!(c.limits.max_request_bytes, 16 << 20);
    assert!(c.local_mode());
}

#[test]
fn the_documented_example_parses() {
    let c = load_str(
        r#"
listen = "0.0.0.0:9000"
prefix_expiration = 3600
[archival]
complete_delay = 0.5
[limits]
max_entry_bytes = 100
[[projects]]
name = "chromium"
public = true
prefix_expiration = 60
"#,
        &[],
    )
    .unwrap();
    assert_eq!(c.listen, "0.0.0.0:9000");
    assert_eq!(c.archival.complete_delay, secs(0.5));
    assert_eq!(c.limits.max_entry_bytes, 100);
    assert!(c.project("chromium").unwrap().public);
    assert_eq!(
        c.prefix_expiration("chromium", Some(600.0)),
        Some(secs(60.0))
    );
    assert_eq!(
        c.prefix_expiration("chromium", Some(10.0)),
        Some(secs(10.0))
    );
    assert_eq!(c.prefix_expiration("other", None), Some(secs(3600.0)));
    assert!(c.project_exists("chromium") && !c.project_exists("other"));
}

#[test]
fn environment_overrides_the_file() {
    let c = load_str(
        "[archival]\ncomplete_delay = 5\n",
        &[
            ("LOGDOG_ARCHIVAL_COMPLETE_DELAY", "0.25"),
            ("LOGDOG_LISTEN", "127.0.0.1:1"),
            ("LOGDOG_OTHER", "x"),
        ],
    )
    .unwrap();
    assert_eq!(c.archival.complete_delay, secs(0.25));
    assert_eq!(c.listen, "127.0.0.1:1");
    let e = load_str("", &[("LOGDOG_LIMITS_MAX_VIEWERS", "many")]).unwrap_err();
    assert!(
        e.0.contains("LOGDOG_LIMITS_MAX_VIEWERS") && e.0.contains("not an integer"),
        "{e}"
    );
    assert!(Config::env_keys()
        .iter()
        .any(|(v, k)| v == "LOGDOG_WEBSOCKET_LAG_TIMEOUT" && k == "websocket.lag_timeout"));
    assert!(!Config::env_keys()
        .iter()
        .any(|(v, _)| v.starts_with("LOGDOG_PROJECTS")));
}

#[test]
fn errors_name_file_line_and_key() {
    let e = load_str("listen = \"127.0.0.1:1\"\nbogus = 1\n", &[]).unwrap_err();
    assert!(
        e.0.contains("logdog.toml") && e.0.contains("line 2") && e.0.contains("bogus"),
        "{e}"
    );
    let e = load_str("\n[archival]\ncomplete_delay = -1\n", &[]).unwrap_err();
    assert!(
        e.0.contains("logdog.toml:3: archival.complete_delay"),
        "{e}"
    );
    for url in ["mysql://h/db", "postgres://", "sqlite://"] {
        let e = load_str(&format!("database = \"{url}\"\n"), &[]).unwrap_err();
        assert!(
            e.0.contains("logdog.toml:1: database") && e.0.contains("is not a database URL"),
            "{e}"
        );
    }
    let e = load_str("listen = \"nowhere\"\n", &[]).unwrap_err();
    assert!(e.0.contains("logdog.toml:1: listen"), "{e}");
    let e = load_str(
        "[[projects]]\nname = \"a\"\n[[projects]]\nname = \"a\"\n",
        &[],
    )
    .unwrap_err();
    assert!(
        e.0.contains("logdog.toml:4: projects.name") && e.0.contains("duplicate project"),
        "{e}"
    );
    let e = load_str("[limits]\nmax_viewers = \"ten\"\n", &[]).unwrap_err();
    assert!(e.0.contains("line 2") && e.0.contains("max_viewers"), "{e}");
}

#[test]
fn cluster_settings_are_checked() {
    let pg = "database = \"postgres://postgres@127.0.0.1/x\"\n";
    let ok = load_str(
        &format!(
            "{pg}[cluster]\nadvertise = \"http://10.0.0.5:8080\"\nsecret = \"0123456789abcdef\"\n"
        ),
        &[("LOGDOG_CLUSTER_NODE_TIMEOUT", "5")],
    )
    .unwrap();
    assert!(ok.cluster.enabled());
    assert_eq!(ok.cluster.node_timeout, secs(5.0));
    assert_eq!(ok.cluster.heartbeat_interval, secs(1.0));
    ok.validate().unwrap();
    assert!(
        !format!("{:?}", ok.cluster).contains("0123456789abcdef"),
        "Debug hides the secret"
    );
    let err = |text: &str| {
        load_str(&format!("{pg}[cluster]\n{text}"), &[])
            .unwrap_err()
            .0
    };
    let e = err("advertise = \"10.0.0.5:8080\"\nsecret = \"0123456789abcdef\"\n");
    assert!(
        e.contains(":3: cluster.advertise") && e.contains("not a URL"),
        "{e}"
    );
    let e = err("advertise = \"http://a:1\"\nsecret = \"short\"\n");
    assert!(
        e.contains(":4: cluster.secret") && e.contains("16 characters"),
        "{e}"
    );
    let e =
        err("advertise = \"http://a:1\"\nsecret = \"0123456789abcdef\"\nheartbeat_interval = 2\n");
    assert!(
        e.contains("cluster.node_timeout") && e.contains("twice"),
        "{e}"
    );
    // On SQLite: refused once the database is final (flags applied).
    let sqlite = load_str(
        "[cluster]\nadvertise = \"http://a:1\"\nsecret = \"0123456789abcdef\"\n",
        &[],
    )
    .unwrap();
    let e = sqlite.validate().unwrap_err().0;
    assert!(e.contains("cluster mode needs PostgreSQL"), "{e}");
    // Without advertise, nothing is checked and nothing changes.
    Config::load(None, &[("LOGDOG_CLUSTER_SECRET".into(), "x".into())])
        .unwrap()
        .validate()
        .unwrap();
}
