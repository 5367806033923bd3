//! Configuration: one TOML file (every key optional), overridden by `LOGDOG_*`
//! environment variables for the keys listed in `docs/CONFIG.md`, overridden by flags.
//! Unknown keys and invalid values are errors that name the file, the line and the key.

use std::time::Duration;

use serde::{Deserialize, Serialize};

mod load;
mod seconds;
#[cfg(test)]
mod tests;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the HTTP server binds.
    pub listen: String,
    /// A SQLite path, `sqlite://PATH`, or a `postgres://` URL.
    pub database: String,
    /// A directory, `file://PATH`, or an object-store URL (`s3://`, `gs://`, `az://`).
    pub archive: String,
    /// Passed to the object store's builder (the `object_store` crate's keys, such as
    /// `aws_endpoint`), over what the environment sets.
    pub archive_options: std::collections::BTreeMap<String, String>,
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
    /// Several coordinators on one PostgreSQL (off while `advertise` is empty).
    pub cluster: ClusterConfig,
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
    /// Bytes of parsed archive indexes kept in memory for reads.
    pub index_cache_bytes: usize,
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

/// Cluster mode: on when `advertise` is set, and only on PostgreSQL.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// How the other nodes reach this one (`http://HOST:PORT`); empty: not in a cluster.
    pub advertise: String,
    /// Shared by every node: authenticates node-to-node calls (at least 16 characters).
    pub secret: String,
    /// How often this node writes its heartbeat.
    #[serde(with = "seconds")]
    pub heartbeat_interval: Duration,
    /// A node whose heartbeat is older than this is dead.
    #[serde(with = "seconds")]
    pub node_timeout: Duration,
}

impl ClusterConfig {
    pub fn enabled(&self) -> bool {
        !self.advertise.is_empty()
    }
}

/// Never prints the secret.
impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("advertise", &self.advertise)
            .field("secret", &"…")
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("node_timeout", &self.node_timeout)
            .finish()
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            advertise: String::new(),
            secret: String::new(),
            heartbeat_interval: Duration::from_secs(1),
            node_timeout: Duration::from_secs(3),
        }
    }
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
            archive_options: Default::default(),
            prefix_expiration: Duration::from_secs(86400),
            stream_idle_timeout: Duration::from_secs(60),
            archival: ArchivalConfig::default(),
            limits: Limits::default(),
            websocket: WebsocketConfig::default(),
            cluster: ClusterConfig::default(),
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
            index_cache_bytes: crate::archive::DEFAULT_INDEX_CACHE_BYTES,
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

impl Config {
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
