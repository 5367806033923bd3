//! Loading: the file, then `LOGDOG_*` variables, then the checks the types cannot make;
//! every error names the file, the line and the key.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;

use super::*;

/// Where a value came from, for error messages.
struct Source<'a> {
    file: Option<&'a Path>,
    text: &'a str,
}

impl Source<'_> {
    /// "FILE:LINE: key: " for a parse error at byte `at`: the key its line sets, under the
    /// table header above it (`[archival]`, `[[projects]]`).
    fn at(&self, at: usize) -> String {
        let before = &self.text[..at.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let text = self.text.lines().nth(line - 1).unwrap_or("");
        let table = before
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| l.starts_with('['))
            .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim());
        let key = match text.split_once('=') {
            Some((k, _)) if !text.trim_start().starts_with('[') => {
                let k = k.trim();
                table.map_or_else(|| k.to_owned(), |t| format!("{t}.{k}"))
            }
            _ => String::new(),
        };
        let file = self
            .file
            .map(|f| f.display().to_string())
            .unwrap_or_default();
        if key.is_empty() {
            format!("{file}:{line}: ")
        } else {
            format!("{file}:{line}: {key}: ")
        }
    }

    /// "FILE:LINE: key" for the first line that sets `key` (optionally the n-th).
    fn locate(&self, key: &str, nth: usize) -> String {
        let leaf = key.rsplit('.').next().unwrap_or(key);
        let line = self
            .text
            .lines()
            .enumerate()
            .filter(|(_, l)| {
                let l = l.trim_start();
                l.strip_prefix(leaf)
                    .is_some_and(|rest| rest.trim_start().starts_with('='))
            })
            .nth(nth)
            .map(|(i, _)| i + 1);
        match (self.file, line) {
            (Some(f), Some(n)) => format!("{}:{n}: {key}", f.display()),
            (Some(f), None) => format!("{}: {key}", f.display()),
            (None, _) => key.to_owned(),
        }
    }
}

impl Config {
    /// Reads the file (if any), applies `LOGDOG_*` variables from `env`, and validates.
    pub fn load(file: Option<&Path>, env: &[(String, String)]) -> Result<Self, ConfigError> {
        let text = match file {
            Some(f) => std::fs::read_to_string(f)
                .map_err(|e| ConfigError(format!("{}: cannot read config: {e}", f.display())))?,
            None => String::new(),
        };
        let src = Source { file, text: &text };
        let mut config: Config = toml::from_str(&text).map_err(|e| {
            let at = match e.span() {
                Some(span) => src.at(span.start),
                None => format!(
                    "{}: ",
                    file.map(|f| f.display().to_string()).unwrap_or_default()
                ),
            };
            ConfigError(format!("{at}{e}"))
        })?;
        config.apply_env(env)?;
        // The database may still change by flag: its backend is checked by `validate`.
        config.validate_at(&src, false)?;
        Ok(config)
    }

    /// Every key an environment variable may set, as (variable, dotted key).
    pub fn env_keys() -> Vec<(String, String)> {
        let value = toml::Value::try_from(Config::default()).expect("config serialises");
        let mut keys = Vec::new();
        for (k, v) in value.as_table().expect("a table") {
            match v {
                toml::Value::Table(t) => {
                    for (k2, v2) in t {
                        if !v2.is_array() {
                            keys.push((
                                format!("LOGDOG_{}_{}", k, k2).to_uppercase(),
                                format!("{k}.{k2}"),
                            ));
                        }
                    }
                }
                toml::Value::Array(_) => {}
                _ => keys.push((format!("LOGDOG_{k}").to_uppercase(), k.clone())),
            }
        }
        keys
    }

    fn apply_env(&mut self, env: &[(String, String)]) -> Result<(), ConfigError> {
        let mut value = toml::Value::try_from(&*self).expect("config serialises");
        for (var, key) in Self::env_keys() {
            let Some((_, raw)) = env.iter().find(|(k, _)| *k == var) else {
                continue;
            };
            let mut slot = &mut value;
            for part in key.split('.') {
                slot = slot.get_mut(part).expect("listed keys exist");
            }
            *slot = match slot {
                toml::Value::String(_) => toml::Value::String(raw.clone()),
                toml::Value::Integer(_) => {
                    toml::Value::Integer(raw.trim().parse().map_err(|_| {
                        ConfigError(format!("{var}: {raw:?} is not an integer (key {key})"))
                    })?)
                }
                toml::Value::Float(_) => toml::Value::Float(raw.trim().parse().map_err(|_| {
                    ConfigError(format!("{var}: {raw:?} is not a number (key {key})"))
                })?),
                toml::Value::Boolean(_) => {
                    toml::Value::Boolean(raw.trim().parse().map_err(|_| {
                        ConfigError(format!("{var}: {raw:?} is not true or false (key {key})"))
                    })?)
                }
                _ => continue,
            };
            // Each variable is checked as it is applied, so an error names it.
            if let Err(e) = value.clone().try_into::<Config>() {
                return Err(ConfigError(format!("{var}: {raw:?}: {e} (key {key})")));
            }
        }
        *self = value
            .try_into()
            .map_err(|e| ConfigError(format!("environment: {e}")))?;
        Ok(())
    }

    /// Checks values the types cannot; used after flags are applied too.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_at(
            &Source {
                file: None,
                text: "",
            },
            true,
        )
    }

    /// `[cluster]`, when it is on: PostgreSQL only, a URL to advertise, a real secret,
    /// and a node timeout that outlasts a few missed heartbeats.
    fn validate_cluster(
        &self,
        bad: &dyn Fn(&str, usize, String) -> Result<(), ConfigError>,
        complete: bool,
    ) -> Result<(), ConfigError> {
        let c = &self.cluster;
        let postgres = ["postgres://", "postgresql://"]
            .iter()
            .any(|p| self.database.starts_with(p));
        if complete && !postgres {
            return bad(
                "cluster.advertise",
                0,
                format!(
                    "cluster mode needs PostgreSQL (database = {:?} is SQLite, which serves one node): set database to a postgres:// URL, or remove [cluster] to run a single node",
                    self.database
                ),
            );
        }
        let url_ok = ["http://", "https://"].iter().any(|p| {
            c.advertise
                .strip_prefix(p)
                .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'))
        });
        if !url_ok {
            return bad(
                "cluster.advertise",
                0,
                format!(
                    "{:?} is not a URL like http://10.0.0.5:8080 (how the other nodes reach this one, no path)",
                    c.advertise
                ),
            );
        }
        if c.secret.len() < 16 {
            return bad(
                "cluster.secret",
                0,
                "must be at least 16 characters, the same on every node".into(),
            );
        }
        if c.heartbeat_interval.is_zero() {
            return bad(
                "cluster.heartbeat_interval",
                0,
                "must be more than 0".into(),
            );
        }
        if c.node_timeout < c.heartbeat_interval * 2 {
            return bad(
                "cluster.node_timeout",
                0,
                format!(
                    "{:?} must be at least twice heartbeat_interval ({:?})",
                    c.node_timeout, c.heartbeat_interval
                ),
            );
        }
        Ok(())
    }

    /// `complete`: the config is final (flags applied), so the database is known.
    fn validate_at(&self, src: &Source, complete: bool) -> Result<(), ConfigError> {
        let bad = |key: &str, nth: usize, why: String| {
            Err(ConfigError(format!("{}: {why}", src.locate(key, nth))))
        };
        if self.listen.parse::<SocketAddr>().is_err() {
            return bad(
                "listen",
                0,
                format!("{:?} is not an address like 127.0.0.1:8080", self.listen),
            );
        }
        if self.database.trim().is_empty() {
            return bad("database", 0, "must not be empty".into());
        }
        if let Some((scheme, rest)) = self.database.split_once("://") {
            let ok = match scheme {
                "sqlite" => !rest.is_empty(),
                "postgres" | "postgresql" => !rest.is_empty(),
                _ => false,
            };
            if !ok {
                return bad(
                    "database",
                    0,
                    format!(
                        "{:?} is not a database URL: use a SQLite path, sqlite://PATH or postgres://USER@HOST:PORT/DB",
                        self.database
                    ),
                );
            }
        }
        if self.archive.trim().is_empty() {
            return bad("archive", 0, "must not be empty".into());
        }
        if !(0.0..=1e9).contains(&self.limits.prefix_lines_per_second) {
            return bad(
                "limits.prefix_lines_per_second",
                0,
                format!(
                    "{} must be a number of lines from 0 to 1e9",
                    self.limits.prefix_lines_per_second
                ),
            );
        }
        let counts: [(&str, u64); 11] = [
            ("archival.max_attempts", self.archival.max_attempts.into()),
            (
                "archival.archivist_workers",
                self.archival.archivist_workers as u64,
            ),
            (
                "limits.max_request_bytes",
                self.limits.max_request_bytes as u64,
            ),
            ("limits.max_entry_bytes", self.limits.max_entry_bytes),
            ("limits.get_default_count", self.limits.get_default_count),
            ("limits.get_max_count", self.limits.get_max_count),
            (
                "limits.max_viewers_per_stream",
                self.limits.max_viewers_per_stream as u64,
            ),
            ("limits.max_viewers", self.limits.max_viewers as u64),
            (
                "limits.max_request_entries",
                self.limits.max_request_entries as u64,
            ),
            ("websocket.mailbox", self.websocket.mailbox as u64),
            (
                "websocket.max_frame_bytes",
                self.websocket.max_frame_bytes as u64,
            ),
        ];
        for (key, v) in counts {
            if v < 1 {
                return bad(key, 0, format!("{v} must be 1 or more"));
            }
        }
        if self.cluster.enabled() {
            self.validate_cluster(&bad, complete)?;
        }
        let mut seen = HashSet::new();
        for (index, p) in self.projects.iter().enumerate() {
            if let Err(e) = logdog_schema::names::validate_project(&p.name) {
                return bad("projects.name", index, e.to_string());
            }
            if !seen.insert(p.name.as_str()) {
                return bad(
                    "projects.name",
                    index,
                    format!("duplicate project {:?}", p.name),
                );
            }
        }
        let mut hashes = HashSet::new();
        for (index, t) in self.tokens.iter().enumerate() {
            if t.sha256.len() != 64 || !t.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
                return bad(
                    "tokens.sha256",
                    index,
                    "must be the 64 hex digits of the token's SHA-256 (see `logdog token`)".into(),
                );
            }
            if !hashes.insert(t.sha256.to_ascii_lowercase()) {
                return bad("tokens.sha256", index, "duplicate token".into());
            }
            for p in t.projects.iter().flatten() {
                if let Err(e) = logdog_schema::names::validate_project(p) {
                    return bad("tokens.projects", index, e.to_string());
                }
            }
        }
        Ok(())
    }
}
