//! Configuration: one TOML file (every key optional), overridden by `LOGDOG_*`
//! environment variables for the keys listed in `docs/CONFIG.md`, overridden by flags.
//! Unknown keys and invalid values are errors that name the file, the line and the key.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the HTTP server binds.
    pub listen: String,
    /// A SQLite path, `sqlite://PATH`, or a `postgres://` URL.
    pub database: String,
    /// A directory, `file://PATH`, or an object-store URL.
    pub archive: String,
    /// Default prefix lifetime (seconds in the file).
    #[serde(with = "seconds")]
    pub prefix_expiration: Duration,
    /// How long a stream actor with nothing to do lives before it stops (its state
    /// reloads from storage on the next request).
    #[serde(with = "seconds")]
    pub stream_idle_timeout: Duration,
    pub archival: ArchivalConfig,
    pub limits: Limits,
    pub websocket: WebsocketConfig,
    pub projects: Vec<ProjectConfig>,
    pub tokens: Vec<TokenConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArchivalConfig {
    #[serde(with = "seconds")]
    pub complete_delay: Duration,
    #[serde(with = "seconds")]
    pub incomplete_delay: Duration,
    #[serde(with = "seconds")]
    pub pessimistic_delay: Duration,
    pub max_attempts: u32,
    #[serde(with = "seconds")]
    pub retry_delay: Duration,
    pub embedded_archivist: bool,
    pub archivist_workers: usize,
    #[serde(with = "seconds")]
    pub archivist_lease: Duration,
    /// A sparse-index record every this many entries…
    pub index_entries: u64,
    /// …or this many bytes of the entries file, whichever comes first.
    pub index_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_request_bytes: usize,
    pub max_entry_bytes: u64,
    pub get_default_count: u64,
    pub get_max_count: u64,
    pub max_viewers_per_stream: usize,
    pub max_viewers: usize,
    /// 0: no limit.
    pub prefix_lines_per_second: f64,
    /// Most entries one request may carry (lines of a text/plain append; entries of a JSON
    /// append or of a whole bundle): what bounds a request's memory besides its bytes.
    pub max_request_entries: usize,
    /// How long a request body may take to arrive (408 after).
    #[serde(with = "seconds")]
    pub body_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebsocketConfig {
    #[serde(with = "seconds")]
    pub ping_interval: Duration,
    #[serde(with = "seconds")]
    pub idle_timeout: Duration,
    #[serde(with = "seconds")]
    pub lag_timeout: Duration,
    pub mailbox: usize,
    pub max_frame_bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectConfig {
    pub name: String,
    #[serde(default)]
    pub public: bool,
    #[serde(default, with = "seconds::option")]
    pub prefix_expiration: Option<Duration>,
    #[serde(default)]
    pub archive: Option<String>,
}

/// What a token may do, each role including the ones before it: read; write (register
/// and append); service (also archive tasks); admin (everything in its projects).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Reader,
    Writer,
    Service,
    Admin,
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "reader" => Role::Reader,
            "writer" => Role::Writer,
            "service" => Role::Service,
            "admin" => Role::Admin,
            _ => return Err(format!("{s:?} is not reader, writer, service or admin")),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub sha256: String,
    pub role: Role,
    #[serde(default)]
    pub projects: Option<Vec<String>>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            database: "logdog-data/logdog.db".into(),
            archive: "logdog-data/archive".into(),
            prefix_expiration: Duration::from_secs(86400),
            stream_idle_timeout: Duration::from_secs(60),
            archival: ArchivalConfig::default(),
            limits: Limits::default(),
            websocket: WebsocketConfig::default(),
            projects: Vec::new(),
            tokens: Vec::new(),
        }
    }
}

impl Default for ArchivalConfig {
    fn default() -> Self {
        Self {
            complete_delay: Duration::from_secs(5),
            incomplete_delay: Duration::from_secs(300),
            pessimistic_delay: Duration::from_secs(172800),
            max_attempts: 10,
            retry_delay: Duration::from_secs(30),
            embedded_archivist: true,
            archivist_workers: 2,
            archivist_lease: Duration::from_secs(600),
            index_entries: 1000,
            index_bytes: 262144,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_bytes: 16 << 20,
            max_entry_bytes: 1 << 20,
            get_default_count: 1000,
            get_max_count: 10000,
            max_viewers_per_stream: 1000,
            max_viewers: 10000,
            prefix_lines_per_second: 0.0,
            max_request_entries: 100_000,
            body_timeout: Duration::from_secs(30),
        }
    }
}

impl Default for WebsocketConfig {
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            lag_timeout: Duration::from_secs(10),
            mailbox: 16,
            max_frame_bytes: 262144,
        }
    }
}

/// A configuration error, already phrased for the operator.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Seconds as a `Duration` (negative and non-finite values are 0).
pub fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or_default()
}

/// Durations in the file (and in `LOGDOG_*` variables) are numbers of seconds, fractions
/// allowed, from 0 to 1e9; anything else is refused where it is read.
mod seconds {
    use std::time::Duration;

    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    fn check(v: f64) -> Result<Duration, String> {
        if (0.0..=1e9).contains(&v) {
            Ok(Duration::from_secs_f64(v))
        } else {
            Err(format!("{v} must be a number of seconds from 0 to 1e9"))
        }
    }

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        check(f64::deserialize(d)?).map_err(D::Error::custom)
    }

    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => super::serialize(d, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            Option::<f64>::deserialize(d)?
                .map(check)
                .transpose()
                .map_err(D::Error::custom)
        }
    }
}

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
        config.validate_at(&src)?;
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
        self.validate_at(&Source {
            file: None,
            text: "",
        })
    }

    fn validate_at(&self, src: &Source) -> Result<(), ConfigError> {
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

    /// Local mode: no tokens, every caller has every role.
    pub fn local_mode(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The project's config, if the config declares it.
    pub fn project(&self, name: &str) -> Option<&ProjectConfig> {
        self.projects.iter().find(|p| p.name == name)
    }

    /// Whether a project exists: any valid name when none are declared.
    pub fn project_exists(&self, name: &str) -> bool {
        if self.projects.is_empty() {
            logdog_schema::names::validate_project(name).is_ok()
        } else {
            self.project(name).is_some()
        }
    }

    /// The smallest positive of the request's, the project's and the server's expiration.
    pub fn prefix_expiration(&self, project: &str, requested: Option<f64>) -> Option<Duration> {
        [
            requested.map(secs),
            self.project(project).and_then(|p| p.prefix_expiration),
            Some(self.prefix_expiration),
        ]
        .into_iter()
        .flatten()
        .filter(|d| !d.is_zero())
        .min()
    }
}

#[cfg(test)]
mod tests {
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
}
