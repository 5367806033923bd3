//! The `logdog` binary: `serve` runs the coordinator, `archivist` an archive worker,
//! `migrate` prepares a database, `token` makes a token; `stream`, `cat`, `tail`, `query`
//! and `ls` are the clients.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use logdog::client::api::Api;
use logdog::client::read::{QueryOptions, Target};
use logdog::config::Config;

#[derive(Parser)]
#[command(
    name = "logdog",
    version,
    about = "LogDog coordinator: stream, store and serve live logs"
)]
struct Cli {
    /// Config file (TOML). Every key is optional; see docs/CONFIG.md.
    #[arg(long, global = true, env = "LOGDOG_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the coordinator (SQLite in ./logdog-data by default, on 127.0.0.1:8080).
    Serve {
        /// Address to listen on, e.g. 127.0.0.1:8080.
        #[arg(long)]
        listen: Option<String>,
        /// A SQLite path, sqlite://PATH, or a postgres:// URL.
        #[arg(long)]
        database: Option<String>,
        /// Archive location: a directory or file://PATH.
        #[arg(long)]
        archive: Option<String>,
        /// Do not run the embedded archivist.
        #[arg(long)]
        no_archivist: bool,
    },
    /// Run an archivist against a coordinator: lease archive tasks, write archives, report.
    Archivist {
        /// The coordinator's base URL, e.g. http://127.0.0.1:8080.
        #[arg(long, env = "LOGDOG_COORDINATOR")]
        coordinator: String,
        /// A `service` token (sent as a Bearer token).
        #[arg(long, env = "LOGDOG_TOKEN")]
        token: Option<String>,
        /// Tasks archived at once.
        #[arg(long)]
        workers: Option<usize>,
        /// Lease to ask for, in seconds (1 to 3600).
        #[arg(long)]
        lease_seconds: Option<f64>,
        /// Where archives go: a directory or file://PATH. It must be the coordinator's own
        /// archive location: the coordinator checks each archive there before it believes it.
        #[arg(long)]
        archive: Option<String>,
    },
    /// Print a new random token and the [[tokens]] lines to paste into the config.
    Token {
        /// reader, writer, service or admin.
        #[arg(long, default_value = "reader")]
        role: String,
        /// Projects the token may use (repeat); all when omitted.
        #[arg(long = "project")]
        projects: Vec<String>,
    },
    /// Apply pending database migrations and exit.
    Migrate {
        /// A SQLite path, sqlite://PATH, or a postgres:// URL.
        #[arg(long)]
        database: Option<String>,
    },
    /// Run a command (or read stdin) and stream its output live to the coordinator.
    ///
    /// Registers a prefix, then uploads the command's stdout and stderr as the text streams
    /// NAME/stdout and NAME/stderr (stdin alone: NAME/stdout), copying them to this terminal
    /// too. Both streams are terminated when the command ends, and logdog exits with the
    /// command's exit code. The viewer URLs are printed (to stderr) once the registration
    /// succeeded. Uploads are retried with backoff until they succeed; while the
    /// coordinator is unreachable the command keeps running and its output waits in
    /// memory, then in a spool file on disk.
    #[command(
        after_help = "Examples:\n  logdog stream --project demo -- make -j8\n  \
        ./test.sh 2>&1 | logdog stream --project demo --name tests"
    )]
    Stream {
        #[command(flatten)]
        conn: Conn,
        /// The project (default: $LOGDOG_PROJECT, else "default").
        #[arg(long, env = "LOGDOG_PROJECT", default_value = "default")]
        project: String,
        /// The prefix to register (default: cli/HOST/TIME-RANDOM).
        #[arg(long)]
        prefix: Option<String>,
        /// Streams are NAME/stdout and NAME/stderr.
        #[arg(long, default_value = "run")]
        name: String,
        /// A tag for both streams, KEY=VALUE (repeatable).
        #[arg(long = "tag", value_parser = parse_tag)]
        tags: Vec<(String, String)>,
        /// Prefix expiration in seconds (the server's default when omitted).
        #[arg(long)]
        expiration: Option<f64>,
        /// Output is sent at most this many seconds after it was written.
        #[arg(long, default_value_t = 0.2)]
        flush_interval: f64,
        /// Output kept in memory per stream while the coordinator cannot take it, in bytes;
        /// beyond it output goes to the spool file.
        #[arg(long, default_value_t = 16 << 20)]
        buffer_bytes: usize,
        /// Where spool files go (default: the system's temporary directory).
        #[arg(long)]
        spool_dir: Option<PathBuf>,
        /// Spool file size limit per stream, in bytes; when full, the command's output is
        /// not read (the command waits) until the coordinator catches up.
        #[arg(long, default_value_t = 1 << 30)]
        spool_bytes: u64,
        /// After the command ends, keep retrying the upload for this many seconds.
        #[arg(long, default_value_t = 600.0)]
        drain_timeout: f64,
        /// Do not copy the command's output to this terminal.
        #[arg(long, short)]
        quiet: bool,
        /// The command and its arguments, after `--`. Without one, stdin is streamed.
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Print a stream's text (its contiguous entries) to stdout.
    ///
    /// STREAM is a URL the coordinator gave out (http://HOST/logs/PROJECT/PREFIX/+/NAME,
    /// which also names the coordinator), PROJECT/PREFIX/+/NAME, or PREFIX/+/NAME with
    /// --project.
    Cat {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        retrying: Retrying,
        /// The project; then STREAM is PREFIX/+/NAME.
        #[arg(long, env = "LOGDOG_PROJECT")]
        project: Option<String>,
        /// Keep following live entries until the stream ends.
        #[arg(long, short)]
        follow: bool,
        /// Start at this entry index.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// A viewer URL, PROJECT/PREFIX/+/NAME, or PREFIX/+/NAME with --project.
        stream: String,
    },
    /// Print the end of a stream (with -f, then follow it until it ends).
    Tail {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        retrying: Retrying,
        /// The project; then STREAM is PREFIX/+/NAME.
        #[arg(long, env = "LOGDOG_PROJECT")]
        project: Option<String>,
        /// Lines to print.
        #[arg(short = 'n', long = "lines", default_value_t = 10)]
        lines: usize,
        /// Keep following live entries until the stream ends.
        #[arg(long, short)]
        follow: bool,
        /// A viewer URL, PROJECT/PREFIX/+/NAME, or PREFIX/+/NAME with --project.
        stream: String,
    },
    /// List streams matching filters, as a table (or JSON).
    Query {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        retrying: Retrying,
        /// The project to search (default: $LOGDOG_PROJECT, else "default").
        #[arg(long, env = "LOGDOG_PROJECT", default_value = "default")]
        project: String,
        /// Streams of this prefix only (exact).
        #[arg(long)]
        prefix: Option<String>,
        /// Glob on the stream name: `*` within a segment, `**` whole segments.
        #[arg(long)]
        name: Option<String>,
        /// KEY=VALUE, or KEY for "has the tag" (repeatable; all must match).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// streaming, terminated or archived.
        #[arg(long)]
        status: Option<String>,
        /// text, binary or datagram.
        #[arg(long = "type")]
        stream_type: Option<String>,
        /// no (default), yes or both (yes and both need admin).
        #[arg(long)]
        purged: Option<String>,
        /// Streams at most; 0 lists them all.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print the streams as a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List the prefixes under PREFIX (or all), then PREFIX's own streams.
    Ls {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        retrying: Retrying,
        /// The project to list (default: $LOGDOG_PROJECT, else "default").
        #[arg(long, env = "LOGDOG_PROJECT", default_value = "default")]
        project: String,
        /// A prefix, e.g. build/1 (lists everything when omitted).
        prefix: Option<String>,
    },
}

/// Where the coordinator is and who is calling.
#[derive(Args)]
struct Conn {
    /// The coordinator's base URL.
    #[arg(
        long,
        env = "LOGDOG_COORDINATOR",
        default_value = "http://127.0.0.1:8080"
    )]
    coordinator: String,
    /// A token (sent as a Bearer token); none in local mode.
    #[arg(long, env = "LOGDOG_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// How long a read command waits for a coordinator that cannot be reached.
#[derive(Args)]
struct Retrying {
    /// Retry an unreachable or failing coordinator for this many seconds, then fail with
    /// exit code 1 (0: do not retry). A follow that was connected once keeps retrying.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    retry_for: f64,
}

impl Retrying {
    fn limit(&self) -> anyhow::Result<Duration> {
        secs("--retry-for", self.retry_for)
    }

    fn patience(&self) -> anyhow::Result<logdog::client::api::Patience> {
        Ok(logdog::client::api::Patience::bounded(
            logdog::client::read::MAX_BACKOFF,
            self.limit()?,
        ))
    }
}

impl Conn {
    /// The stream argument of `cat` and `tail`, on this coordinator.
    fn target(
        self,
        stream: &str,
        project: Option<&str>,
        retrying: &Retrying,
    ) -> anyhow::Result<Target> {
        Target::parse(
            stream,
            &self.coordinator,
            self.token,
            project,
            retrying.limit()?,
        )
    }
}

fn parse_tag(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected KEY=VALUE"))?;
    logdog_schema::names::validate_tag(k, v).map_err(|e| e.to_string())?;
    Ok((k.to_owned(), v.to_owned()))
}

fn secs(what: &str, s: f64) -> anyhow::Result<Duration> {
    if !s.is_finite() || s < 0.0 {
        anyhow::bail!("{what} must be a number of seconds, 0 or more");
    }
    Ok(Duration::from_secs_f64(s))
}

fn client_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            // `logdog cat … | head` closing the pipe early is not an error.
            let broken_pipe = e.chain().any(|c| {
                let pipe = std::io::ErrorKind::BrokenPipe;
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == pipe)
                    || c.downcast_ref::<serde_json::Error>()
                        .is_some_and(|j| j.io_error_kind() == Some(pipe))
            });
            if broken_pipe {
                return ExitCode::SUCCESS;
            }
            eprintln!("logdog: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    let config = || {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Config::load(cli.config.as_deref(), &env)
    };
    match cli.command {
        Command::Serve {
            listen,
            database,
            archive,
            no_archivist,
        } => {
            let mut config = config()?;
            if let Some(l) = listen {
                config.listen = l;
            }
            if let Some(d) = database {
                config.database = d;
            }
            if let Some(a) = archive {
                config.archive = a;
            }
            if no_archivist {
                config.archival.embedded_archivist = false;
            }
            config.validate()?;
            logdog::server::serve(config)?;
            Ok(0)
        }
        Command::Archivist {
            coordinator,
            token,
            workers,
            lease_seconds,
            archive,
        } => {
            let mut config = config()?;
            if let Some(a) = archive {
                config.archive = a;
            }
            let store = logdog::server::open_archive(&config)?;
            let mut a = logdog::server::archivist_config(
                &config,
                coordinator.trim_end_matches('/').to_owned(),
                store,
            );
            a.token = token;
            if let Some(w) = workers {
                a.workers = w;
            }
            if let Some(l) = lease_seconds {
                a.lease_seconds = l;
            }
            eprintln!(
                "logdog: archivist for {} with {} worker(s), archives in {}",
                a.coordinator, a.workers, config.archive
            );
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(async move {
                let (tx, rx) = tokio::sync::watch::channel(false);
                tokio::spawn(async move {
                    let _ = tokio::signal::ctrl_c().await;
                    let _ = tx.send(true);
                });
                logdog::client::archivist::run(a, rx).await;
            });
            Ok(0)
        }
        Command::Token { role, projects } => {
            if let Err(e) = role.parse::<logdog::auth::Role>() {
                anyhow::bail!("--role: {e}");
            }
            let token = logdog::auth::new_token();
            println!("{token}");
            eprintln!("logdog: paste into the config (the token itself is not stored):");
            eprintln!(
                "[[tokens]]\nsha256 = \"{}\"\nrole = \"{role}\"",
                logdog::auth::token_hash(&token)
            );
            if !projects.is_empty() {
                eprintln!("projects = {projects:?}");
            }
            Ok(0)
        }
        Command::Migrate { database } => {
            let url = database.unwrap_or(config()?.database);
            let store = logdog_schema::Store::open(&url, 1)?;
            let ran = store.migrate()?;
            eprintln!("logdog: {ran} migration(s) applied to {url}");
            Ok(0)
        }
        Command::Stream {
            conn,
            project,
            prefix,
            name,
            tags,
            expiration,
            flush_interval,
            buffer_bytes,
            spool_dir,
            spool_bytes,
            drain_timeout,
            quiet,
            command,
        } => {
            logdog_schema::names::validate_project(&project)?;
            let opts = logdog::client::stream::StreamOptions {
                api: Api::new(&conn.coordinator, conn.token)?,
                project,
                prefix,
                name,
                command,
                tags,
                expiration,
                flush_interval: secs("--flush-interval", flush_interval)?,
                entry_bytes: 64 << 10,
                batch_bytes: 1 << 20,
                buffer_bytes,
                spool_dir: spool_dir.unwrap_or_else(std::env::temp_dir),
                spool_bytes,
                drain_timeout: secs("--drain-timeout", drain_timeout)?,
                quiet,
                max_backoff: Duration::from_secs(5),
            };
            client_runtime()?.block_on(logdog::client::stream::run(opts))
        }
        Command::Cat {
            conn,
            retrying,
            project,
            follow,
            from,
            stream,
        } => {
            let t = conn.target(&stream, project.as_deref(), &retrying)?;
            let mut out = std::io::stdout().lock();
            client_runtime()?.block_on(logdog::client::read::cat(&t, from, follow, &mut out))?;
            Ok(0)
        }
        Command::Tail {
            conn,
            retrying,
            project,
            lines,
            follow,
            stream,
        } => {
            let t = conn.target(&stream, project.as_deref(), &retrying)?;
            let mut out = std::io::stdout().lock();
            client_runtime()?.block_on(logdog::client::read::tail(&t, lines, follow, &mut out))?;
            Ok(0)
        }
        Command::Query {
            conn,
            retrying,
            project,
            prefix,
            name,
            tags,
            status,
            stream_type,
            purged,
            limit,
            json,
        } => {
            logdog_schema::names::validate_project(&project)?;
            let api = Api::new(&conn.coordinator, conn.token)?;
            let q = QueryOptions {
                prefix,
                name,
                tags,
                status,
                stream_type,
                purged,
                limit,
            };
            let streams = client_runtime()?.block_on(logdog::client::read::query(
                &api,
                &project,
                &q,
                retrying.patience()?,
            ))?;
            if streams.is_empty() {
                eprintln!(
                    "logdog: no streams match in project {project:?} (--project or \
                     $LOGDOG_PROJECT chooses another)"
                );
            }
            let mut out = std::io::stdout().lock();
            if json {
                serde_json::to_writer_pretty(&mut out, &streams)?;
                writeln!(out)?;
            } else if !streams.is_empty() {
                logdog::client::read::write_table(&mut out, &streams)?;
            }
            Ok(0)
        }
        Command::Ls {
            conn,
            retrying,
            project,
            prefix,
        } => {
            logdog_schema::names::validate_project(&project)?;
            let api = Api::new(&conn.coordinator, conn.token)?;
            let mut out = std::io::stdout().lock();
            let printed = client_runtime()?.block_on(logdog::client::read::ls(
                &api,
                &project,
                prefix.as_deref(),
                retrying.patience()?,
                &mut out,
            ))?;
            if printed == 0 {
                let under = prefix.map_or(String::new(), |p| format!(" under {p:?}"));
                eprintln!(
                    "logdog: nothing registered{under} in project {project:?} (--project or \
                     $LOGDOG_PROJECT chooses another)"
                );
            }
            Ok(0)
        }
    }
}
