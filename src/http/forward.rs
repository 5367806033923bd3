//! Cluster mode: requests for a stream another node owns are forwarded to that node.
//!
//! The stream's actor is where the decision is made: a node claims a stream before it
//! starts the actor, and a claim that finds a live owner answers `Elsewhere(url)`, which
//! the handler's error carries as the [`OwnerElsewhere`] response extension. This
//! middleware keeps a copy of the request body as the handler reads it (the chunks are
//! shared, not copied), and when the response names an owner it sends the same request to
//! `{owner}/internal/v1/forward{path}` with the cluster secret and the caller's verified
//! identity, then answers with the owner's response unchanged (status, headers, body,
//! streamed).
//!
//! On the receiving side, `/internal/v1/forward/…` requests are checked (the secret,
//! compared in constant time), given the forwarded identity, and routed as the path after
//! the prefix. A forwarded request is never forwarded again: if ownership moved meanwhile
//! its answer is the 503 with Retry-After, and the client retries.
//!
//! One more internal route, [`SEAL_ROUTE`]: a dispatcher that leased the archive task of a
//! stream another node owns asks the owner to seal it ([`seal_at`]) before handing the
//! task out, so every node's dispatcher serves every task.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, Service, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode, Uri};
use actix_web::{web, HttpMessage as _, HttpResponse, ResponseError as _};
use bytes::{Bytes, BytesMut};
use futures::future::LocalBoxFuture;
use futures::{Stream, StreamExt as _};
use subtle::ConstantTimeEq as _;

use crate::auth::ForwardedCaller;
use crate::cluster::Membership;
use crate::errors::{ApiError, OwnerElsewhere};

use super::AppState;

/// The internal route prefix forwarded requests arrive on.
pub const FORWARD_PREFIX: &str = "/internal/v1/forward";
/// The internal route an owner seals a stream on, for another node's dispatcher.
pub const SEAL_ROUTE: &str = "/internal/v1/seal";
/// The cluster secret, on forwarded requests.
pub const SECRET_HEADER: &str = "x-logdog-cluster-secret";
/// The caller's verified identity (JSON: the token's grant, or `null` for anonymous).
pub const CALLER_HEADER: &str = "x-logdog-caller";
/// Responses whose declared length is at most this are relayed as one body (keeping
/// their Content-Length); longer or unsized ones are streamed.
const BUFFERED_RESPONSE: u64 = 8 << 20;

/// Marks a request that arrived forwarded from another node.
#[derive(Debug, Clone, Copy)]
struct Forwarded;

/// Marks a node-to-node call whose cluster secret was checked.
#[derive(Debug, Clone, Copy)]
struct Internal;

/// The body chunks a handler read, kept for a forward.
type Tee = Arc<Mutex<Vec<Bytes>>>;

struct TeePayload {
    inner: Payload,
    seen: Tee,
}

impl Stream for TeePayload {
    type Item = Result<Bytes, actix_web::error::PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let next = Pin::new(&mut self.inner).poll_next(cx);
        if let Poll::Ready(Some(Ok(chunk))) = &next {
            self.seen
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(chunk.clone());
        }
        next
    }
}

/// The middleware (see the module's doc); a pass-through when not in cluster mode.
pub fn middleware<S, B>(
    mut req: ServiceRequest,
    srv: &S,
) -> LocalBoxFuture<'static, Result<ServiceResponse<BoxBody>, actix_web::Error>>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    S::Future: 'static,
    B: MessageBody + 'static,
{
    let cluster = req
        .app_data::<web::Data<AppState>>()
        .and_then(|s| Some((s.clone(), s.cluster.clone()?)));
    let Some((state, cluster)) = cluster else {
        let fut = srv.call(req);
        return Box::pin(async move { Ok(fut.await?.map_into_boxed_body()) });
    };
    if req.path().starts_with("/internal/") {
        if let Err(e) = accept_internal(&mut req, &cluster) {
            let (r, _) = req.into_parts();
            return Box::pin(async move { Ok(ServiceResponse::new(r, e.error_response())) });
        }
        cluster.forwarded_in.fetch_add(1, Ordering::Relaxed);
        let fut = srv.call(req);
        return Box::pin(async move { Ok(fut.await?.map_into_boxed_body()) });
    }
    let tee: Option<Tee> = match *req.method() {
        Method::GET | Method::HEAD => None,
        _ => {
            let seen = Tee::default();
            let inner = req.take_payload();
            req.set_payload(Payload::Stream {
                payload: Box::pin(TeePayload {
                    inner,
                    seen: seen.clone(),
                }),
            });
            Some(seen)
        }
    };
    let fut = srv.call(req);
    Box::pin(async move {
        let res = fut.await?;
        let Some(owner) = res.response().extensions().get::<OwnerElsewhere>().cloned() else {
            return Ok(res.map_into_boxed_body());
        };
        let (http_req, _) = res.into_parts();
        if http_req.extensions().get::<Forwarded>().is_some() || is_upgrade(&http_req) {
            // Already forwarded once (ownership moved meanwhile), or a websocket: answer
            // the 503 with Retry-After; the client retries.
            let e = ApiError::unavailable("the stream's owner changed; retry");
            return Ok(ServiceResponse::new(http_req, e.error_response()));
        }
        let body = tee
            .map(|t| {
                let chunks = std::mem::take(&mut *t.lock().unwrap_or_else(|e| e.into_inner()));
                concat(chunks)
            })
            .unwrap_or_default();
        let response = match forward(&state, &cluster, &http_req, &owner.0, body).await {
            Ok(r) => {
                cluster.forwards_ok.fetch_add(1, Ordering::Relaxed);
                r
            }
            Err(e) => {
                cluster.forwards_failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(owner = %owner.0, error = %e, "forwarding to the stream's owner failed");
                ApiError::unavailable(format!(
                    "the stream's owner ({}) cannot be reached; retry",
                    owner.0
                ))
                .error_response()
            }
        };
        Ok(ServiceResponse::new(http_req, response))
    })
}

fn concat(chunks: Vec<Bytes>) -> Bytes {
    match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.into_iter().next().expect("one chunk"),
        _ => {
            let mut all = BytesMut::with_capacity(chunks.iter().map(Bytes::len).sum());
            for c in chunks {
                all.extend_from_slice(&c);
            }
            all.freeze()
        }
    }
}

fn is_upgrade(req: &actix_web::HttpRequest) -> bool {
    req.headers().contains_key(header::UPGRADE)
}

/// Checks a request on an internal route (the cluster secret) and rewrites a forwarded
/// one to the route it forwards.
fn accept_internal(req: &mut ServiceRequest, cluster: &Membership) -> Result<(), ApiError> {
    let secret = req
        .headers()
        .get(SECRET_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if !bool::from(secret.ct_eq(cluster.config.secret.as_bytes())) {
        return Err(ApiError::permission_denied(
            "internal routes need the cluster secret",
        ));
    }
    if req.path() == SEAL_ROUTE {
        req.extensions_mut().insert(Internal);
        return Ok(());
    }
    let rest = req
        .path()
        .strip_prefix(FORWARD_PREFIX)
        .filter(|r| r.starts_with('/'))
        .ok_or_else(|| ApiError::not_found(format!("no route for {}", req.path())))?
        .to_owned();
    let caller: Option<crate::auth::Grant> = req
        .headers()
        .get(CALLER_HEADER)
        .and_then(|v| serde_json::from_slice(v.as_bytes()).ok())
        .ok_or_else(|| ApiError::invalid(format!("{CALLER_HEADER} is missing or malformed")))?;
    let path_and_query = match req.uri().query() {
        Some(q) => format!("{rest}?{q}"),
        None => rest,
    };
    let uri: Uri = path_and_query
        .parse()
        .map_err(|e| ApiError::invalid(format!("bad forwarded path: {e}")))?;
    req.match_info_mut().get_mut().update(&uri);
    req.head_mut().uri = uri;
    req.extensions_mut().insert(ForwardedCaller(caller));
    req.extensions_mut().insert(Forwarded);
    Ok(())
}

/// Headers that belong to one connection, not to the request or response.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
    )
}

/// Whether `req` arrived forwarded from another node (it is not forwarded again).
pub fn is_forwarded(req: &actix_web::HttpRequest) -> bool {
    req.extensions().get::<Forwarded>().is_some()
}

/// Sends the request to the owner and turns its answer into ours.
async fn forward(
    state: &AppState,
    cluster: &Membership,
    req: &actix_web::HttpRequest,
    owner: &str,
    body: Bytes,
) -> Result<HttpResponse, String> {
    relay(send(state, cluster, req, owner, body).await?).await
}

/// Sends `req` (its method, path, query and headers) with `body` to the owner's internal
/// route, with the cluster secret and the caller's verified identity.
pub async fn send(
    state: &AppState,
    cluster: &Membership,
    req: &actix_web::HttpRequest,
    owner: &str,
    body: Bytes,
) -> Result<reqwest::Response, String> {
    let grant = state.auth.grant(req).map_err(|e| e.message.clone())?;
    let caller = serde_json::to_string(&grant).expect("grants serialise");
    let mut url = format!(
        "{}{FORWARD_PREFIX}{}",
        owner.trim_end_matches('/'),
        req.path()
    );
    if !req.query_string().is_empty() {
        url.push('?');
        url.push_str(req.query_string());
    }
    let method =
        reqwest::Method::from_bytes(req.method().as_str().as_bytes()).map_err(|e| e.to_string())?;
    let request = || {
        let mut out = cluster.client.request(method.clone(), &url);
        for (name, value) in req.headers() {
            if hop_by_hop(name)
                || name == header::AUTHORIZATION
                || name.as_str().starts_with("x-logdog-")
            {
                continue;
            }
            out = out.header(name.as_str(), value.as_bytes());
        }
        out.header(SECRET_HEADER, cluster.config.secret.as_str())
            .header(CALLER_HEADER, caller.as_str())
            .body(body.clone())
    };
    // A connection that could not be made carried nothing: one more try.
    match request().send().await {
        Err(e) if e.is_connect() => request().send().await.map_err(|e| e.to_string()),
        r => r.map_err(|e| e.to_string()),
    }
}

/// The owner's answer as ours: status, end-to-end headers and body.
async fn relay(answer: reqwest::Response) -> Result<HttpResponse, String> {
    let status = StatusCode::from_u16(answer.status().as_u16()).map_err(|e| e.to_string())?;
    let mut res = HttpResponse::build(status);
    for (name, value) in answer.headers() {
        let Ok(name) = HeaderName::from_bytes(name.as_str().as_bytes()) else {
            continue;
        };
        if hop_by_hop(&name) {
            continue;
        }
        if let Ok(v) = HeaderValue::from_bytes(value.as_bytes()) {
            res.append_header((name, v));
        }
    }
    match answer.content_length() {
        Some(n) if n <= BUFFERED_RESPONSE => {
            let bytes = answer.bytes().await.map_err(|e| e.to_string())?;
            Ok(res.body(bytes))
        }
        _ => Ok(res.streaming(
            answer
                .bytes_stream()
                .map(|r| r.map_err(|e| actix_web::error::ErrorBadGateway(e.to_string()))),
        )),
    }
}

/// A call of [`SEAL_ROUTE`]: the stream to seal.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct SealCall {
    pub project: String,
    pub path: String,
}

/// `POST /internal/v1/seal` (node to node, with the cluster secret): seals a stream this
/// node owns and answers it (200, the stream). A stream owned elsewhere answers 503.
pub async fn seal(
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    call: web::Json<SealCall>,
) -> Result<HttpResponse, ApiError> {
    if req.extensions().get::<Internal>().is_none() {
        // Not in cluster mode, or the secret was not checked: no such route.
        return Err(ApiError::not_found(format!("no route for {}", req.path())));
    }
    let path = logdog_schema::names::StreamPath::parse(&call.path)?;
    let stream = state
        .directory
        .send(&call.project, &path, logdog_actors::stream::Seal)
        .await
        .map_err(|e| match e {
            // Changing hands again: the caller gives the task back and tries later.
            logdog_actors::ActorError::Elsewhere(_) => {
                ApiError::unavailable("the stream's owner is another node; retry")
            }
            e => e.into(),
        })?;
    Ok(HttpResponse::Ok().json(stream))
}

/// Asks `owner` to seal a stream it owns ([`seal`]). An owner that cannot be reached or
/// answers 503 is `Elsewhere` (the task is given back uncounted); its other errors are
/// passed on.
pub async fn seal_at(
    cluster: &Membership,
    owner: &str,
    project: String,
    path: String,
) -> Result<(), logdog_actors::ActorError> {
    use logdog_actors::ActorError;
    let url = format!("{}{SEAL_ROUTE}", owner.trim_end_matches('/'));
    let call = SealCall { project, path };
    let elsewhere = |e: String| {
        cluster.seals_failed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%owner, error = %e, "the stream's owner did not seal it");
        ActorError::Elsewhere(owner.to_owned())
    };
    let request = || {
        cluster
            .client
            .post(&url)
            .header(SECRET_HEADER, cluster.config.secret.as_str())
            .json(&call)
    };
    let answer = match request().send().await {
        Err(e) if e.is_connect() => request().send().await,
        r => r,
    }
    .map_err(|e| elsewhere(e.to_string()))?;
    let status = answer.status().as_u16();
    let text = answer.text().await.map_err(|e| elsewhere(e.to_string()))?;
    let message = || {
        serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| text.clone())
    };
    match status {
        200 => {
            cluster.seals_ok.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        503 => Err(elsewhere(message())),
        404 => Err(ActorError::NotFound(message())),
        409 => Err(ActorError::Conflict(message())),
        412 => Err(ActorError::FailedPrecondition(message())),
        _ => Err(ActorError::Internal(format!(
            "the owner answered {status}: {}",
            message()
        ))),
    }
}
