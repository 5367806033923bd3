//! The socket watchdog: a duplicate of each connection's socket, so a peer that is gone
//! (or a session stuck behind a peer that accepts nothing) is noticed and disconnected
//! from outside the session.

use super::*;

/// A duplicate of a connection's socket, kept so a watchdog outside the session can
/// disconnect a peer whose session cannot run (it only runs while the peer drains).
#[derive(Clone)]
pub struct PeerSocket(Arc<std::net::TcpStream>);

impl PeerSocket {
    /// Whether the peer has closed its side or the connection broke. Peeks without
    /// consuming (the socket is non-blocking, shared with the connection): end of file or
    /// an error means gone; pending bytes or nothing to read yet mean still there.
    pub fn peer_gone(&self) -> bool {
        let mut byte = [0u8; 1];
        match self.0.peek(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
            ),
        }
    }

    /// Resolves once the peer has gone (checked every `PEER_CHECK`), after ending the
    /// connection: what a response waiting for entries selects on.
    pub async fn closed(&self) {
        loop {
            tokio::time::sleep(PEER_CHECK).await;
            if self.peer_gone() {
                self.disconnect();
                return;
            }
        }
    }

    /// Ends the connection at once, whatever its session or response is doing.
    pub fn disconnect(&self) {
        let _ = self.0.shutdown(std::net::Shutdown::Both);
    }

    /// Whether the socket's send buffer has room: the bytes it holds (sent but not yet
    /// acknowledged, or not sent yet: `SIOCOUTQ`) fill less than half of it. None when
    /// the kernel cannot say.
    fn has_room(&self) -> Option<bool> {
        use std::os::fd::AsRawFd as _;
        let fd = self.0.as_raw_fd();
        let (mut queued, mut size): (libc::c_int, libc::c_int) = (0, 0);
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: TIOCOUTQ (SIOCOUTQ) writes one int to the pointer it is given, and
        // SO_SNDBUF one int of the length given.
        let ok = unsafe {
            libc::ioctl(fd, libc::TIOCOUTQ, &mut queued) == 0
                && libc::getsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_SNDBUF,
                    (&mut size as *mut libc::c_int).cast(),
                    &mut len,
                ) == 0
        };
        ok.then_some(queued < size / 2)
    }

    /// Ends our side of the connection (FIN, queued after what was already written) once
    /// the session's last frames are surely written: they are written in the same poll
    /// that stops the session, unless the socket is backed up; so a socket with room on
    /// two looks 1 ms apart has them. A peer that takes nothing within `END_WAIT` is left
    /// to the HTTP layer (and the watchdog). The read side stays open, so the HTTP layer
    /// sees the peer's own close and finishes the connection then.
    pub async fn end_after_flush(self) {
        let deadline = Instant::now() + END_WAIT;
        let mut with_room = 0;
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
            match self.has_room() {
                Some(true) => with_room += 1,
                Some(false) => with_room = 0,
                None => return,
            }
            if with_room == 2 {
                let _ = self.0.shutdown(std::net::Shutdown::Write);
                return;
            }
        }
    }
}

/// `HttpServer::on_connect` hook: remembers each connection's socket.
pub fn keep_peer_socket(conn: &dyn std::any::Any, ext: &mut actix_web::dev::Extensions) {
    use std::os::fd::AsFd as _;
    if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
        if let Ok(fd) = tcp.as_fd().try_clone_to_owned() {
            ext.insert(PeerSocket(Arc::new(std::net::TcpStream::from(fd))));
        }
    }
}

/// Milliseconds since the session started, updated whenever the session runs. A session
/// that can run ticks at least every ping interval; one that has not run for
/// `idle_timeout` is stuck behind a peer that accepts nothing.
#[derive(Clone)]
pub(super) struct Liveness {
    started: Instant,
    last_run_ms: Arc<AtomicU64>,
    pub(super) alive: Arc<std::sync::atomic::AtomicBool>,
}

impl Liveness {
    pub(super) fn new() -> Self {
        Self {
            started: Instant::now(),
            last_run_ms: Arc::default(),
            alive: Arc::new(true.into()),
        }
    }

    pub(super) fn ran(&self) {
        self.last_run_ms
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    pub(super) fn idle_for(&self) -> Duration {
        self.started.elapsed().saturating_sub(Duration::from_millis(
            self.last_run_ms.load(Ordering::Relaxed),
        ))
    }
}

/// How long a session that stopped waits for its last frames to be taken before it
/// ends its side of the connection.
const END_WAIT: Duration = Duration::from_secs(1);

/// How often a watchdog looks at its peer: a peer that went away is noticed within this.
pub const PEER_CHECK: Duration = Duration::from_millis(500);

/// Disconnects the peer when its session has not run for `idle_timeout`, and ends the
/// connection as soon as the peer has gone (so nothing is held for a closed socket).
pub(super) fn watchdog(live: Liveness, socket: PeerSocket, idle_timeout: Duration) {
    actix::spawn(async move {
        let tick = (idle_timeout / 4).clamp(Duration::from_millis(10), PEER_CHECK);
        while live.alive.load(Ordering::Relaxed) {
            tokio::time::sleep(tick).await;
            if !live.alive.load(Ordering::Relaxed) {
                break;
            }
            if socket.peer_gone() {
                tracing::debug!("watch: peer closed its connection");
                socket.disconnect();
                break;
            }
            if live.idle_for() > idle_timeout {
                tracing::info!("watch: peer accepted nothing for {idle_timeout:?}; disconnecting");
                socket.disconnect();
                break;
            }
        }
    });
}
