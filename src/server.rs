//! Starting the coordinator: storage, migrations, actors, and the HTTP server.

use std::net::SocketAddr;
use std::sync::Arc;

use actix::Actor as _;
use actix_web::web;
use anyhow::Context as _;
use logdog_actors::dispatcher::{DispatchConfig, Dispatcher, Drain};
use logdog_actors::metrics::ActorMetrics;
use logdog_actors::{ArchivalTiming, Directory, Registry, StreamDeps, Writer};
use logdog_schema::Store;

use crate::archive::Archives;
use crate::client::archivist::{self, ArchivistConfig, ArchivistHandle};
use crate::config::Config;
use crate::http::stopping::StopGate;
use crate::http::{self, AppState};
use crate::metrics::HttpMetrics;

/// How often the database is pinged: an outage is answered with 503 within about this.
const DB_HEALTH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);
/// The longest lease the embedded archivist takes (it renews a third of the way in).
const EMBEDDED_LEASE_SECONDS: f64 = 10.0;
/// How often waiting lease requests look for due tasks.
const DISPATCH_POLL: std::time::Duration = std::time::Duration::from_millis(100);
/// Threads running stream actors.
const STREAM_ARBITERS: usize = 2;
/// HTTP worker threads.
const HTTP_WORKERS: usize = 2;
/// Connections the kernel may hold before they are accepted (capped by
/// `net.core.somaxconn`): a storm of reconnecting viewers queues rather than has its
/// handshakes dropped and retried seconds later.
const LISTEN_BACKLOG: u32 = 4096;

/// Refuses configurations this build cannot serve safely.
pub fn check_startup(config: &Config, listen: SocketAddr) -> anyhow::Result<()> {
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
    /// This node's cluster membership, in cluster mode.
    pub cluster: Option<Arc<crate::cluster::Membership>>,
    pub directory: Directory,
    /// The embedded archivist, when configured.
    pub archivist: Option<ArchivistHandle>,
    /// Told to answer waiting leases before a graceful stop, so no long poll holds it up.
    pub dispatcher: actix::Addr<Dispatcher>,
    /// Set to true to end websocket viewers and followed responses before a graceful stop.
    pub shutdown: Arc<tokio::sync::watch::Sender<bool>>,
    /// Answers new requests 503 once a graceful stop begins.
    pub gate: Arc<StopGate>,
}

/// What stops a coordinator gracefully, in the one order that lets nothing hang: waiting
/// leases are answered, viewers and followers are told to end, then the HTTP server stops
/// accepting and lets in-flight requests (appends included) finish.
#[derive(Clone)]
pub struct StopHandle {
    handle: actix_web::dev::ServerHandle,
    dispatcher: actix::Addr<Dispatcher>,
    shutdown: Arc<tokio::sync::watch::Sender<bool>>,
    gate: Arc<StopGate>,
}

impl StopHandle {
    /// New requests are answered 503 (so is a lease asked for from now on), waiting
    /// leases are answered, viewers and followers told to end; once requests stop
    /// arriving the listener closes and in-flight requests finish.
    pub async fn stop(&self) {
        self.gate.begin();
        self.dispatcher.do_send(Drain);
        self.shutdown.send_replace(true);
        self.gate
            .drained(http::stopping::QUIET, http::stopping::DRAIN_MAX)
            .await;
        self.handle.stop(true).await;
    }
}

impl Started {
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            handle: self.server.handle(),
            dispatcher: self.dispatcher.clone(),
            shutdown: self.shutdown.clone(),
            gate: self.gate.clone(),
        }
    }

    /// Serves until the HTTP server stops, then stops the archivist and the stream actors
    /// (the writer commits what was queued and exits).
    pub async fn run(self) -> std::io::Result<()> {
        let Started {
            server,
            directory,
            archivist,
            cluster,
            ..
        } = self;
        let result = server.await;
        if let Some(m) = cluster {
            m.leave().await;
        }
        if let Some(a) = archivist {
            a.stop();
        }
        directory.stop();
        result
    }
}

/// The embedded archivist's view of the coordinator: the bound address, on loopback when
/// bound to every interface.
fn loopback_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => {
            std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
        }
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => {
            std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
        }
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

/// The archive store the config names, with its options.
pub fn open_archive(config: &Config) -> Result<Archives, crate::archive::ArchiveError> {
    Archives::open(config)
}

/// The archivist settings from the config, for `coordinator`.
pub fn archivist_config(
    config: &Config,
    coordinator: String,
    archive: Archives,
) -> ArchivistConfig {
    ArchivistConfig {
        coordinator,
        token: None,
        workers: config.archival.archivist_workers,
        lease_seconds: config
            .archival
            .archivist_lease
            .as_secs_f64()
            .clamp(1.0, 3600.0),
        archive,
        index_every: (config.archival.index_entries, config.archival.index_bytes),
        page: config.limits.get_max_count,
        store: None,
    }
}

/// Opens storage, runs migrations, starts the actors and binds the HTTP server. Must run
/// inside an actix System; await `server` to serve until shutdown.
pub async fn start(config: Config) -> anyhow::Result<Started> {
    config.validate()?;
    let listen: SocketAddr = config.listen.parse().context("listen address")?;
    check_startup(&config, listen)?;
    let listener = bind(listen)?;
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
        store.watch_health(DB_HEALTH_INTERVAL);
        store.checkpoint_in_background();
        Ok(store)
    })
    .await??;
    let archive =
        open_archive(&config).with_context(|| format!("opening archive {:?}", config.archive))?;
    let cluster = match config.cluster.enabled() {
        true => Some(crate::cluster::Membership::join(store.clone(), &config.cluster).await?),
        false => None,
    };
    let prometheus = prometheus::Registry::new();
    let actor_metrics = ActorMetrics::new(&prometheus);
    let writer = Writer::start(store.clone(), actor_metrics.clone());
    let deps = StreamDeps {
        store: store.clone(),
        writer,
        archival: ArchivalTiming {
            complete_delay: config.archival.complete_delay,
            incomplete_delay: config.archival.incomplete_delay,
            pessimistic_delay: config.archival.pessimistic_delay,
        },
        idle_timeout: config.stream_idle_timeout,
        metrics: actor_metrics,
        cluster: cluster
            .as_ref()
            .map(|m| logdog_actors::stream::ClusterNode {
                node_id: m.node_id.clone(),
                node_timeout: m.config.node_timeout,
            }),
        task_bell: Default::default(),
    };
    let directory = Directory::new(deps, STREAM_ARBITERS);
    let registry = Registry::new(directory.clone()).start();
    let mut dispatcher = Dispatcher::new(
        directory.clone(),
        DispatchConfig {
            max_attempts: config.archival.max_attempts.min(i32::MAX as u32) as i32,
            retry_delay: config.archival.retry_delay,
            poll_interval: DISPATCH_POLL,
        },
    );
    if let Some(m) = &cluster {
        // A task whose stream another node owns is sealed by that node, on request.
        let m = m.clone();
        dispatcher = dispatcher.with_remote_seal(Arc::new(move |owner, project, path| {
            let m = m.clone();
            Box::pin(async move { http::forward::seal_at(&m, &owner, project, path).await })
        }));
    }
    let dispatcher = dispatcher.start();
    let mut auth = crate::auth::Auth::new(&config.tokens);
    let embedded = config.archival.embedded_archivist.then(|| {
        let mut a = archivist_config(&config, String::new(), archive.clone());
        // It reads the entries straight from this node's database.
        a.store = Some(store.clone());
        // Short leases, renewed while it works: after a crash (kill -9) its tasks are due
        // again within seconds, not after a whole `archivist_lease`.
        a.lease_seconds = a.lease_seconds.min(EMBEDDED_LEASE_SECONDS);
        if !auth.local_mode() {
            // The embedded archivist gets a random service token that lives only in memory.
            let token = crate::auth::new_token();
            auth.add(&token, crate::auth::Role::Service);
            a.token = Some(token);
        }
        a
    });
    let rates = http::ratelimit::PrefixRates::new(config.limits.prefix_lines_per_second);
    let shutdown = Arc::new(tokio::sync::watch::channel(false).0);
    let viewers = Arc::new(crate::http::watch::Viewers::new(&config.limits));
    let deleter = crate::archive::deleter::spawn(
        store.clone(),
        archive.clone(),
        config.archival.retry_delay,
        shutdown.subscribe(),
    );
    if let Some(m) = &cluster {
        m.spawn_heartbeat(shutdown.subscribe(), directory.clone());
        m.spawn_listener(
            config.database.clone(),
            shutdown.subscribe(),
            directory.clone(),
        );
    }
    let gate = Arc::new(StopGate::default());
    let state = web::Data::new(AppState {
        cluster: cluster.clone(),
        auth,
        rates,
        archive,
        deleter,
        config: Arc::new(config),
        store,
        directory: directory.clone(),
        registry,
        metrics: HttpMetrics::new(&prometheus),
        prometheus,
        dispatcher: dispatcher.clone(),
        viewers,
        shutdown: shutdown.clone(),
        stop_gate: gate.clone(),
    });
    let server = http_server(state, listener)?;
    let addr = server.0;
    tracing::info!(%addr, "logdog coordinator listening");
    let server = server.1.run();
    let archivist = embedded.map(|mut a| {
        a.coordinator = loopback_url(addr);
        archivist::spawn(a)
    });
    Ok(Started {
        addr,
        server,
        cluster,
        directory,
        archivist,
        dispatcher,
        shutdown,
        gate,
    })
}

/// Binds the listening socket: first thing at start-up, so a taken port is one clear
/// error before any storage or actor exists.
fn bind(listen: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    let socket = match listen {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    }
    .context("creating the listening socket")?;
    socket.set_reuseaddr(true)?;
    socket
        .bind(listen)
        .with_context(|| format!("binding {listen}"))?;
    Ok(socket
        .listen(LISTEN_BACKLOG)
        .with_context(|| format!("binding {listen}"))?
        .into_std()?)
}

/// The HTTP server: actix-web's app behind actix-http's HTTP/1 service, built by hand (as
/// `HttpServer` does) so each accepted socket can be wrapped in `JsonErrors`, which gives
/// the errors actix-http answers by itself (malformed or oversized request heads) the API's
/// JSON error body.
fn http_server(
    state: web::Data<AppState>,
    listener: std::net::TcpListener,
) -> anyhow::Result<(SocketAddr, actix_server::ServerBuilder)> {
    use actix_http::{error::DispatchError, HttpService, Protocol};
    use actix_service::{fn_service, map_config, IntoServiceFactory as _, ServiceFactoryExt as _};
    use actix_web::dev::AppConfig;

    let addr = listener.local_addr().context("no bound address")?;
    let builder = actix_server::Server::build();
    // What HttpServer wires into every connection, so a graceful stop drains keep-alive ones.
    let drain = builder.graceful_shutdown_signal();
    let builder = builder
        .workers(HTTP_WORKERS)
        .shutdown_timeout(30)
        .disable_signals()
        .listen("logdog-http", listener, move || {
            let drain = drain.clone();
            let app = http::app(state.clone())
                .into_factory()
                .map_err(|e: actix_web::Error| e.error_response());
            let service = HttpService::build()
                // HttpServer's own values.
                .client_request_timeout(std::time::Duration::from_secs(5))
                .client_disconnect_timeout(std::time::Duration::from_secs(1))
                .local_addr(addr)
                .graceful_shutdown_signal(move || {
                    let drain = drain.clone();
                    async move { drain.notified().await }
                })
                .on_connect_ext(
                    |io: &http::protocol_errors::JsonErrors, ext: &mut actix_http::Extensions| {
                        http::watch::keep_peer_socket(io.get_ref(), ext)
                    },
                )
                .finish(map_config(app, |_: ()| AppConfig::default()));
            fn_service(|io: actix_web::rt::net::TcpStream| async move {
                // Small writes (a websocket frame, a followed line) go out at once: with
                // Nagle's algorithm one would wait for the peer's delayed ACK (up to 40 ms)
                // while an earlier segment is unacknowledged. This service stands in for
                // `HttpService::tcp()`, which is where actix would set it.
                let _ = io.set_nodelay(true);
                let peer = io.peer_addr().ok();
                Ok::<_, DispatchError>((
                    http::protocol_errors::JsonErrors::new(io),
                    Protocol::Http1,
                    peer,
                ))
            })
            .and_then(service)
        })
        .with_context(|| format!("serving {addr}"))?;
    Ok((addr, builder))
}

/// A coordinator running on a thread of its own, with its own actix System: for
/// embedding, tests and benchmarks.
pub struct Background {
    /// The address actually bound.
    pub addr: SocketAddr,
    stopper: StopHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Background {
    pub fn start(config: Config) -> anyhow::Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("logdog-server".into())
            .spawn(move || {
                actix_rt::System::new().block_on(async move {
                    match start(config).await {
                        Ok(s) => {
                            let _ = tx.send(Ok((s.addr, s.stop_handle())));
                            let _ = s.run().await;
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e));
                        }
                    }
                })
            })?;
        let (addr, stopper) = rx.recv().context("the server thread ended")??;
        Ok(Self {
            addr,
            stopper,
            thread: Some(thread),
        })
    }

    /// `http://ADDR`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Graceful stop: waiting leases are answered, in-flight requests finish, then the
    /// archivist and the actors stop.
    pub async fn stop(mut self) {
        self.stopper.stop().await;
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

/// Runs the coordinator until SIGINT or SIGTERM; either one stops accepting connections
/// and lets in-flight requests (appends included) finish before exiting.
pub fn serve(config: Config) -> anyhow::Result<()> {
    actix_rt::System::new().block_on(async move {
        let started = start(config).await?;
        let stopper = started.stop_handle();
        actix_rt::spawn(async move {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received; finishing in-flight requests"),
                _ = term.recv() => tracing::info!("SIGTERM received; finishing in-flight requests"),
            }
            stopper.stop().await;
        });
        started.run().await?;
        tracing::info!("stopped");
        Ok(())
    })
}
