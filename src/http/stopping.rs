//! A graceful stop that answers everyone.
//!
//! When a stop begins, the listener stays open for a moment: every request that arrives
//! from then on — on a new connection or a kept-alive one — is answered 503 `unavailable`
//! ("shutting down") with Retry-After and `Connection: close`, and requests already in
//! flight finish, their responses closing their connections too. The listener closes once
//! requests have stopped arriving for [`QUIET`] (clients that honour Retry-After go quiet
//! at once), or after [`DRAIN_MAX`] at most; only then does the HTTP server stop, so a
//! request the server took is never dropped without an answer, and connections that come
//! later are refused (nothing was sent, nothing was stored).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse};
use actix_web::http::ConnectionType;
use actix_web::ResponseError as _;
use futures::future::LocalBoxFuture;

use crate::errors::ApiError;

/// Requests must have stopped arriving for this long before the listener closes.
pub const QUIET: Duration = Duration::from_millis(100);
/// The longest the listener stays open after a stop begins.
pub const DRAIN_MAX: Duration = Duration::from_secs(1);

/// Whether a stop has begun, and the requests in flight (see the module's doc).
#[derive(Debug)]
pub struct StopGate {
    stopping: AtomicBool,
    epoch: Instant,
    /// Milliseconds after `epoch` when the last request arrived.
    last_arrival_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Default for StopGate {
    fn default() -> Self {
        Self {
            stopping: AtomicBool::new(false),
            epoch: Instant::now(),
            last_arrival_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }
}

impl StopGate {
    /// From now on every new request is answered 503.
    pub fn begin(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    fn arrived(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.last_arrival_ms.fetch_max(now, Ordering::Relaxed);
    }

    fn since_last_arrival(&self) -> Duration {
        let last = Duration::from_millis(self.last_arrival_ms.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last)
    }

    /// Waits until no request is in flight and none arrived for `quiet`, or `max` passed.
    pub async fn drained(&self, quiet: Duration, max: Duration) {
        let deadline = Instant::now() + max;
        while Instant::now() < deadline {
            if self.in_flight.load(Ordering::SeqCst) == 0 && self.since_last_arrival() >= quiet {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Counts a request in flight until its response is ready (or the request is dropped).
struct InFlight(Arc<StopGate>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The middleware (see the module's doc): outermost, before any handler runs.
pub fn middleware<S, B>(
    req: ServiceRequest,
    srv: &S,
) -> LocalBoxFuture<'static, Result<ServiceResponse<BoxBody>, actix_web::Error>>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    S::Future: 'static,
    B: MessageBody + 'static,
{
    let Some(state) = req.app_data::<super::State>().cloned() else {
        let fut = srv.call(req);
        return Box::pin(async move { Ok(fut.await?.map_into_boxed_body()) });
    };
    let gate = state.stop_gate.clone();
    gate.arrived();
    if gate.stopping() {
        let (r, _) = req.into_parts();
        let mut res = ApiError::unavailable("server shutting down; retry").error_response();
        res.head_mut().set_connection_type(ConnectionType::Close);
        return Box::pin(async move { Ok(ServiceResponse::new(r, res)) });
    }
    gate.in_flight.fetch_add(1, Ordering::SeqCst);
    let counted = InFlight(gate);
    let fut = srv.call(req);
    Box::pin(async move {
        let mut res = fut.await?.map_into_boxed_body();
        let gate = &counted.0;
        if gate.stopping() && res.status() != actix_web::http::StatusCode::SWITCHING_PROTOCOLS {
            // Finished during the stop: the connection closes after this answer.
            res.response_mut()
                .head_mut()
                .set_connection_type(ConnectionType::Close);
        }
        Ok(res)
    })
}
