//! What the benchmarks share: a database to run on (a temporary SQLite file, or a fresh
//! PostgreSQL database created on the server a `--database postgres://…` URL names, dropped
//! afterwards).

// Each example compiles this module on its own and uses only part of it.
#![allow(dead_code)]

pub mod ws;
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

/// The append request for entries `range`, each one text line `line` (a line without
/// quotes or backslashes). The JSON is written directly, not built from `serde_json`
/// values, so that the client's own cost stays small beside the server's.
pub fn append_lines(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    secret: &str,
    range: std::ops::Range<u64>,
    line: &str,
) -> reqwest::RequestBuilder {
    let mut body = String::with_capacity(range.clone().count() * (line.len() + 48) + 16);
    body.push_str("{\"entries\":");
    push_text_entries(&mut body, range, line);
    body.push('}');
    http.post(format!("{base}/logs/{path}"))
        .header("X-Prefix-Secret", secret)
        .header("Content-Type", "application/json")
        .body(body)
}

/// Appends the JSON array of entries `range`, each one text line `line` (a line without
/// quotes or backslashes), written directly.
pub fn push_text_entries(body: &mut String, range: std::ops::Range<u64>, line: &str) {
    use std::fmt::Write as _;
    body.push('[');
    for (k, i) in range.enumerate() {
        if k > 0 {
            body.push(',');
        }
        write!(
            body,
            "{{\"stream_index\":{i},\"text\":{{\"lines\":[\"{line}\"]}}}}"
        )
        .unwrap();
    }
    body.push(']');
}

/// The `text/plain` append of `body`: one entry per line, numbered by the server.
pub fn append_text(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    secret: &str,
    body: bytes::Bytes,
) -> reqwest::RequestBuilder {
    http.post(format!("{base}/logs/{path}"))
        .header("X-Prefix-Secret", secret)
        .header("Content-Type", "text/plain")
        .body(body)
}

/// A metric without labels from `{root}/metrics`.
pub async fn metric(http: &reqwest::Client, root: &str, name: &str) -> f64 {
    let text = http
        .get(format!("{root}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let prefix = format!("{name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .expect("metric")
        .trim()
        .parse()
        .unwrap()
}
