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

    pub fn backend(&self) -> &'static str {
        if self.postgres.is_some() {
            "postgres"
        } else {
            "sqlite"
        }
    }
}

impl Drop for BenchDb {
    fn drop(&mut self) {
        if let Some((server, name)) = &self.postgres {
            let _ = logdog_schema::store::drop_postgres_database(server, name);
        }
    }
}
