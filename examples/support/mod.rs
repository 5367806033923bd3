//! What the benchmarks share: a database to run on (a temporary SQLite file, or a fresh
//! PostgreSQL database created on the server a `--database postgres://…` URL names, dropped
//! afterwards).

// Each example compiles this module on its own and uses only part of it.
#![allow(dead_code)]
/// A benchmark's database.
pub struct BenchDb {
    pub url: String,
    /// A scratch folder (the SQLite file, archives).
    pub dir: tempfile::TempDir,
    postgres: Option<(String, String)>,
}

impl BenchDb {
    /// `database`: None for SQLite in a temporary folder, a `postgres://` server URL, or a
    /// SQLite path.
    pub fn new(database: Option<&str>, label: &str) -> Self {
        let dir = tempfile::tempdir().expect("temporary folder");
        match database {
            Some(server) if server.starts_with("postgres") => {
                let name = format!("logdog_{label}_{}", std::process::id());
                logdog_schema::store::create_postgres_database(server, &name)
                    .expect("create the benchmark database");
                let url = logdog_schema::store::postgres_url_with_database(server, &name);
                Self {
                    url,
                    dir,
                    postgres: Some((server.to_owned(), name)),
                }
            }
            Some(path) => Self {
                url: path.to_owned(),
                dir,
                postgres: None,
            },
            None => Self {
                url: dir.path().join("bench.db").display().to_string(),
                dir,
                postgres: None,
            },
        }
    }

    /// A server config on this database: any free port, archives in the scratch folder.
    pub fn config(&self) -> logdog::config::Config {
        logdog::config::Config {
            listen: "127.0.0.1:0".into(),
            database: self.url.clone(),
            archive: self.dir.path().join("archive").display().to_string(),
            ..logdog::config::Config::default()
        }
    }

    pub fn backend(&self) -> &'static str {
        if self.postgres.is_some() {
            "postgres"
        } else {
            "sqlite"
        }
    }
}

/// The value at fraction `p` (0 to 1) of `sorted`.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

impl Drop for BenchDb {
    fn drop(&mut self) {
        if let Some((server, name)) = &self.postgres {
            let _ = logdog_schema::store::drop_postgres_database(server, name);
        }
    }
}

/// Registers `prefix` on the project at `base` (`…/api/v1/projects/P`); returns its secret.
pub async fn register_prefix(http: &reqwest::Client, base: &str, prefix: &str) -> String {
    let p: serde_json::Value = http
        .post(format!("{base}/prefixes"))
        .json(&serde_json::json!({ "prefix": prefix }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    p["secret"].as_str().expect("a secret").to_owned()
}

/// Registers a text stream at `path`.
pub async fn register_stream(http: &reqwest::Client, base: &str, path: &str, secret: &str) {
    let r = http
        .put(format!("{base}/streams/{path}"))
        .header("X-Prefix-Secret", secret)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

/// The append request for entries `range`, each one text line `line`.
pub fn append_lines(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    secret: &str,
    range: std::ops::Range<u64>,
    line: &str,
) -> reqwest::RequestBuilder {
    let entries: Vec<serde_json::Value> = range
        .map(|i| serde_json::json!({"stream_index": i, "text": {"lines": [line]}}))
        .collect();
    let body = serde_json::to_vec(&serde_json::json!({ "entries": entries })).unwrap();
    http.post(format!("{base}/logs/{path}"))
        .header("X-Prefix-Secret", secret)
        .header("Content-Type", "application/json")
        .body(body)
}
