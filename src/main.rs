//! The `logdog` binary: `serve` runs the coordinator, `migrate` prepares a database.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
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
        /// Where archives go: a directory or file://PATH.
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
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("logdog: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    let mut config = Config::load(cli.config.as_deref(), &env)?;
    match cli.command {
        Command::Serve {
            listen,
            database,
            archive,
            no_archivist,
        } => {
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
            logdog::server::serve(config)
        }
        Command::Archivist {
            coordinator,
            token,
            workers,
            lease_seconds,
            archive,
        } => {
            if let Some(a) = archive {
                config.archive = a;
            }
            let store = logdog::archive::ArchiveStore::open(&config.archive)?;
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
            Ok(())
        }
        Command::Token { role, projects } => {
            if logdog::auth::Role::parse(&role).is_none() {
                anyhow::bail!("--role must be reader, writer, service or admin, not {role:?}");
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
            Ok(())
        }
        Command::Migrate { database } => {
            let url = database.unwrap_or(config.database);
            let store = logdog_schema::Store::open(&url, 1)?;
            let ran = store.migrate()?;
            eprintln!("logdog: {ran} migration(s) applied to {url}");
            Ok(())
        }
    }
}
