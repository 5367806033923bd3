//! Starting the coordinator: storage, migrations, actors, and the HTTP server.

use std::net::SocketAddr;
use std::sync::Arc;

use actix::Actor as _;
use actix_web::{web, HttpServer};
use anyhow::Context as _;
use logdog_actors::dispatcher::{DispatchConfig, Dispatcher};
use logdog_actors::metrics::ActorMetrics;
use logdog_actors::{ArchivalTiming, Directory, Registry, StreamDeps, Writer};
use logdog_schema::Store;

use crate::config::{secs, Config};
use crate::http::{self, AppState};
use crate::metrics::HttpMetrics;

/// How often waiting lease requests look for due tasks.
const DISPATCH_POLL: std::time::Duration = std::time::Duration::from_millis(100);
/// Threads running stream actors.
const STREAM_ARBITERS: usize = 2;
/// HTTP worker threads.
const HTTP_WORKERS: usize = 2;

/// Refuses configurations this build cannot serve safely.
pub fn check_startup(config: &Config, listen: SocketAddr) -> anyhow::Result<()> {
    if !config.tokens.is_empty() {
        anyhow::bail!(
            "the config declares [[tokens]], but token authentication is not available in this version; \
             remove the tokens to run in local mode (loopback only)"
        );
    }
    if config.local_mode() && !listen.ip().is_loopback() {
        anyhow::bail!(
            "refusing to listen on {listen}: no tokens are configured (local mode gives every caller every role), \
             so the server only listens on a loopback address"
        );
    }
    Ok(())
}

/// A started coordinator.
pub struct Started {
    /// The address actually bound (port 0 resolved).
    pub addr: SocketAddr,
    pub server: actix_web::dev::Server,
    pub directory: Directory,
}

/// Opens storage, runs migrations, starts the actors and binds the HTTP server. Must run
/// inside an actix System; await `server` to serve until shutdown.
pub async fn start(config: Config) -> anyhow::Result<Started> {
    config.validate()?;
    let listen: SocketAddr = config.listen.parse().context("listen address")?;
    check_startup(&config, listen)?;
    if config.local_mode() {
        tracing::warn!("no tokens configured: local mode, every caller has every role");
    }
    let database = config.database.clone();
    let store = web::block(move || -> anyhow::Result<Store> {
        let store =
            Store::open(&database, 8).with_context(|| format!("opening database {database:?}"))?;
        let ran = store.migrate().context("applying migrations")?;
        if ran > 0 {
            tracing::info!(migrations = ran, "database migrated");
        }
        Ok(store)
    })
    .await??;
    let prometheus = prometheus::Registry::new();
    let actor_metrics = ActorMetrics::new(&prometheus);
    let writer = Writer::start(store.clone(), actor_metrics.clone());
    let deps = StreamDeps {
        store: store.clone(),
        writer,
        archival: ArchivalTiming {
            complete_delay: secs(config.archival.complete_delay),
            incomplete_delay: secs(config.archival.incomplete_delay),
            pessimistic_delay: secs(config.archival.pessimistic_delay),
        },
        idle_timeout: secs(config.stream_idle_timeout),
        metrics: actor_metrics,
    };
    let directory = Directory::new(deps, STREAM_ARBITERS);
    let registry = Registry::new(directory.clone()).start();
    let dispatcher = Dispatcher::new(
        directory.clone(),
        DispatchConfig {
            max_attempts: config.archival.max_attempts.min(i32::MAX as i64) as i32,
            retry_delay: secs(config.archival.retry_delay),
            poll_interval: DISPATCH_POLL,
        },
    )
    .start();
    let state = web::Data::new(AppState {
        config: Arc::new(config),
        store,
        directory: directory.clone(),
        registry,
        metrics: HttpMetrics::new(&prometheus),
        prometheus,
        dispatcher,
        viewers: Default::default(),
    });
    let server = HttpServer::new(move || http::app(state.clone()))
        .on_connect(http::watch::keep_peer_socket)
        .workers(HTTP_WORKERS)
        .shutdown_timeout(30)
        .disable_signals()
        .bind(listen)
        .with_context(|| format!("binding {listen}"))?;
    let addr = server
        .addrs()
        .first()
        .copied()
        .context("no bound address")?;
    tracing::info!(%addr, "logdog coordinator listening");
    Ok(Started {
        addr,
        server: server.run(),
        directory,
    })
}

/// Runs the coordinator until SIGINT or SIGTERM; either one stops accepting connections
/// and lets in-flight requests (appends included) finish before exiting.
pub fn serve(config: Config) -> anyhow::Result<()> {
    actix_rt::System::new().block_on(async move {
        let started = start(config).await?;
        let handle = started.server.handle();
        actix_rt::spawn(async move {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received; finishing in-flight requests"),
                _ = term.recv() => tracing::info!("SIGTERM received; finishing in-flight requests"),
            }
            handle.stop(true).await;
        });
        started.server.await?;
        started.directory.stop();
        tracing::info!("stopped");
        Ok(())
    })
}
