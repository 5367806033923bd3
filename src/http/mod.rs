//! The HTTP surface: shared state, the route table, and the helpers every handler uses
//! to apply API.md's error precedence (project → body size → names → the actor's checks).

pub mod archival;
pub mod entries;
pub mod forward;
pub mod logs;
pub mod openapi;
pub mod ops;
pub mod protocol_errors;
pub mod ratelimit;
pub mod registration;
pub mod services;
pub mod stopping;
pub mod watch;
pub mod webapp;

use std::sync::Arc;
use std::time::Instant;

use actix::Addr;
use actix_web::dev::Service as _;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError as _};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use futures::StreamExt as _;
use logdog_actors::stream::Load;
use logdog_actors::{Directory, Registry};
use logdog_schema::names::{self, StreamPath};
use logdog_schema::wire::StreamJson;
use logdog_schema::Store;
use serde::de::DeserializeOwned;

use crate::config::Config;
use crate::errors::ApiError;
use crate::metrics::HttpMetrics;

/// What every handler shares.
pub struct AppState {
    /// Where archives are kept (read for archived streams, deleted with their prefix).
    pub archive: crate::archive::Archives,
    /// Woken when purge or DeletePrefix queued archives for deletion.
    pub deleter: crate::archive::deleter::DeleterHandle,
    /// This node's membership, in cluster mode.
    pub cluster: Option<Arc<crate::cluster::Membership>>,
    pub config: Arc<Config>,
    pub store: Store,
    pub directory: Directory,
    pub registry: Addr<Registry>,
    pub metrics: HttpMetrics,
    pub prometheus: prometheus::Registry,
    pub dispatcher: Addr<logdog_actors::dispatcher::Dispatcher>,
    /// Tokens and roles.
    pub auth: crate::auth::Auth,
    /// Per-prefix ingest rate.
    pub rates: ratelimit::PrefixRates,
    /// Live websocket viewers, for the viewer limits.
    pub viewers: Arc<watch::Viewers>,
    /// Turns true when a graceful stop begins: websocket viewers and followed text
    /// responses end then, so they do not hold the stop up.
    pub shutdown: Arc<tokio::sync::watch::Sender<bool>>,
    /// A graceful stop: new requests answered 503, those in flight counted.
    pub stop_gate: Arc<stopping::StopGate>,
}

pub type State = web::Data<AppState>;

pub use crate::auth::Caller;

impl AppState {
    /// Authenticates the caller and checks its access to the project (by the request's
    /// method). An unknown project answers exactly like a forbidden one.
    pub fn caller_for(&self, req: &HttpRequest, project: &str) -> Result<Caller, ApiError> {
        self.auth.check(
            &self.config,
            req,
            project,
            crate::auth::Access::of(req.method()),
        )
    }

    /// Archive-task routes need the `service` role; the answer is the token's projects.
    pub fn require_service(&self, req: &HttpRequest) -> Result<crate::auth::Scope, ApiError> {
        self.auth.check_service(req)
    }

    /// Admin-only routes.
    pub fn require_admin(&self, caller: Caller) -> Result<(), ApiError> {
        if caller.admin {
            Ok(())
        } else {
            Err(ApiError::permission_denied(
                "this call needs the admin role",
            ))
        }
    }

    pub fn max_request_bytes(&self) -> usize {
        self.config.limits.max_request_bytes
    }
}

/// A request authorised for its `{project}`, with its body read and the project name
/// checked — the first three steps of API.md's error order (403 → 413 → 400).
pub struct Authorized {
    pub caller: Caller,
    pub project: String,
    pub body: Bytes,
}

/// Authorises the caller for the URL's project, reads the body (routes without one pass
/// `None`), then checks the project name.
pub async fn authorize(
    state: &State,
    req: &HttpRequest,
    payload: Option<web::Payload>,
) -> Result<Authorized, ApiError> {
    let project = req.match_info().query("project").to_owned();
    let caller = state.caller_for(req, &project)?;
    let body = match payload {
        Some(p) => read_body(state, req, p).await?,
        None => Bytes::new(),
    };
    names::validate_project(&project)?;
    Ok(Authorized {
        caller,
        project,
        body,
    })
}

/// Blocking work (store or archive calls) off the HTTP worker; its error becomes the
/// API's (a storage fault 503, never 500).
pub(crate) async fn blocking<T, E>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, ApiError>
where
    T: Send + 'static,
    E: Into<ApiError> + Send + 'static,
{
    web::block(f)
        .await
        .map_err(ApiError::internal)?
        .map_err(Into::into)
}

/// The `{path}` of a stream route (400 when malformed). Slashes may come verbatim or as
/// `%2F` (as generated clients send a path parameter), and `+` as `%2B`: names hold no
/// `%`, so decoding first is safe, and the result is checked by the naming rules.
pub fn stream_path(req: &HttpRequest) -> Result<StreamPath, ApiError> {
    Ok(StreamPath::parse(&path_param(req, "path"))?)
}

/// A path parameter, percent-decoded (see `stream_path`); invalid UTF-8 stays encoded,
/// for the naming rules to refuse.
pub fn path_param(req: &HttpRequest, name: &str) -> String {
    let raw = req.match_info().query(name);
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .unwrap_or_else(|_| raw.to_owned())
}

/// Parses the query string (400 when it does not fit `T`).
pub fn params<T: serde::de::DeserializeOwned>(req: &HttpRequest) -> Result<T, ApiError> {
    web::Query::<T>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .map_err(|e| ApiError::invalid(format!("invalid query string: {e}")))
}

/// The stream's state for `caller` (admins see purged streams; others get 404).
pub async fn load(
    state: &State,
    caller: Caller,
    project: &str,
    path: &StreamPath,
) -> Result<StreamJson, ApiError> {
    Ok(state
        .directory
        .send_existing(
            project,
            path,
            Load {
                see_purged: caller.admin,
            },
        )
        .await?)
}

/// The stream's state as this node's actor knows it, for a reader that will follow it
/// (in a cluster, a replica's copy of a stream owned elsewhere: never forwarded).
pub async fn peek(
    state: &State,
    caller: Caller,
    project: &str,
    path: &StreamPath,
) -> Result<StreamJson, ApiError> {
    Ok(state
        .directory
        .send_existing(
            project,
            path,
            logdog_actors::stream::Peek {
                see_purged: caller.admin,
            },
        )
        .await?)
}

/// Reads the whole body: 413 as soon as it exceeds the request limit, 415 for a
/// `Content-Encoding` other than `identity` (none is decoded), 408 when it has not all
/// arrived within `limits.body_timeout` (and the connection is closed).
pub async fn read_body(
    state: &State,
    req: &HttpRequest,
    mut payload: web::Payload,
) -> Result<Bytes, ApiError> {
    let limit = state.max_request_bytes();
    let too_large = || ApiError::too_large(format!("request body is over the {limit}-byte limit"));
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(too_large());
    }
    if let Some(enc) = req.headers().get(header::CONTENT_ENCODING) {
        let enc = enc.to_str().unwrap_or("?").trim();
        if !enc.eq_ignore_ascii_case("identity") {
            return Err(ApiError::unsupported_media_type(format!(
                "Content-Encoding {enc:?} is not supported: send the body uncompressed"
            )));
        }
    }
    let timeout = state.config.limits.body_timeout;
    let read = async {
        // A body that arrives as one chunk is kept as it is; one in several is gathered
        // into a buffer of the declared length, so it is copied once.
        let mut first: Option<Bytes> = None;
        let mut body = BytesMut::new();
        let mut len = 0;
        while let Some(chunk) = payload.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::invalid(format!("cannot read request body: {e}")))?;
            len += chunk.len();
            if len > limit {
                return Err(too_large());
            }
            if len == chunk.len() {
                first = Some(chunk);
                continue;
            }
            if let Some(first) = first.take() {
                body.reserve(declared.unwrap_or(0).max(len));
                body.extend_from_slice(&first);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(first.unwrap_or_else(|| body.freeze()))
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(body) => body,
        Err(_) => Err(ApiError::request_timeout(format!(
            "the request body did not arrive within {}s (limits.body_timeout)",
            timeout.as_secs_f64()
        ))),
    }
}

/// The media type of the request, lowercased, without parameters; None when absent.
pub fn media_type(req: &HttpRequest) -> Option<String> {
    let v = req.headers().get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(
        v.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase(),
    )
}

/// Parses a JSON body. An empty body reads as `{}` where `empty_ok`. Errors are the
/// message of a 400, left for the caller to report in API.md's order.
pub fn parse_json<T: DeserializeOwned>(
    req: &HttpRequest,
    body: &[u8],
    empty_ok: bool,
) -> Result<T, String> {
    match media_type(req).as_deref() {
        None | Some("application/json") => {}
        Some(other) => {
            return Err(format!(
                "unsupported content type {other:?}; send application/json"
            ))
        }
    }
    let body = if empty_ok && body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    // serde would read a struct from a JSON array too; every request body is an object.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err("invalid JSON body: expected a JSON object".into());
    }
    match serde_json::from_slice(body) {
        Ok(v) => Ok(v),
        // A JSON Schema integer may be written `3.0`: read integral floats as integers
        // (the slow path, taken only when the fast one met such a number).
        Err(e) if e.to_string().contains("invalid type: floating point") => {
            let mut v: serde_json::Value =
                serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))?;
            integral_floats_to_integers(&mut v);
            serde_json::from_value(v).map_err(|e| format!("invalid JSON body: {e}"))
        }
        Err(e) => Err(format!("invalid JSON body: {e}")),
    }
}

/// Rewrites every number with no fractional part (and within i64/u64) as an integer.
pub fn integral_floats_to_integers(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            if f.fract() == 0.0 && f >= i64::MIN as f64 && f < u64::MAX as f64 {
                *v = if f < 0.0 {
                    Value::from(f as i64)
                } else {
                    Value::from(f as u64)
                };
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_floats_to_integers),
        Value::Object(map) => map.values_mut().for_each(integral_floats_to_integers),
        _ => {}
    }
}

/// The prefix secret from `X-Prefix-Secret`; None when missing or not base64 (a 403 later).
pub fn prefix_secret(req: &HttpRequest) -> Option<Vec<u8>> {
    let v = req.headers().get("x-prefix-secret")?.to_str().ok()?;
    B64.decode(v.trim()).ok()
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    ApiError::not_found(format!("no route for {} {}", req.method(), req.path())).error_response()
}

/// A resource whose other methods answer 405 in the API's error shape, with `Allow`
/// naming the methods it has.
fn resource(path: &str, allow: &'static str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move |req: HttpRequest| async move {
        let mut res = ApiError::method_not_allowed(format!(
            "{} is not allowed on {}; use {allow}",
            req.method(),
            req.path()
        ))
        .error_response();
        res.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static(allow));
        res
    }))
}

/// The whole route table.
pub fn configure(cfg: &mut web::ServiceConfig) {
    let query_error =
        |e: actix_web::error::QueryPayloadError, _: &HttpRequest| -> actix_web::Error {
            ApiError::invalid(format!("invalid query string: {e}")).into()
        };
    cfg.app_data(web::QueryConfig::default().error_handler(query_error))
        .service(resource("/healthz", "GET").route(web::get().to(ops::healthz)))
        .service(resource("/readyz", "GET").route(web::get().to(ops::readyz)))
        .service(resource("/metrics", "GET").route(web::get().to(ops::metrics)))
        .service(resource("/api/v1/config", "GET").route(web::get().to(ops::config)))
        .service(resource("/api/v1/projects", "GET").route(web::get().to(ops::projects)))
        .service(resource("/api/v1/cluster", "GET").route(web::get().to(ops::cluster)))
        .service(resource(forward::SEAL_ROUTE, "POST").route(web::post().to(forward::seal)))
        .service(
            resource("/api/v1/projects/{project}/prefixes", "POST, GET")
                .route(web::post().to(registration::register_prefix))
                .route(web::get().to(logs::list_prefixes)),
        )
        .service(
            resource("/api/v1/archive-tasks/lease", "POST").route(web::post().to(archival::lease)),
        )
        .service(
            resource("/api/v1/archive-tasks/{task_id}/renew", "POST")
                .route(web::post().to(archival::renew)),
        )
        .service(
            resource("/api/v1/archive-tasks/{task_id}/complete", "POST")
                .route(web::post().to(archival::complete)),
        )
        .service(
            resource("/api/v1/projects/{project}/streams", "GET").route(web::get().to(logs::query)),
        )
        .service(
            resource("/api/v1/projects/{project}/prefixes/{prefix:.+}", "DELETE")
                .route(web::delete().to(registration::delete_prefix)),
        )
        .service(
            resource(
                "/api/v1/projects/{project}/streams/{path:.+}",
                "PUT, GET, PATCH, DELETE",
            )
            .route(web::put().to(services::register_stream))
            .route(web::get().to(services::load_stream))
            .route(web::patch().to(services::terminate_stream))
            .route(web::delete().to(services::purge_stream)),
        )
        .service(
            resource("/api/v1/projects/{project}/logs/{path:.+}", "POST, GET")
                .route(web::post().to(services::append))
                .route(web::get().to(logs::get)),
        )
        .service(
            resource("/api/v1/projects/{project}/tail/{path:.+}", "GET")
                .route(web::get().to(logs::tail)),
        )
        .service(
            resource("/api/v1/projects/{project}/search", "GET")
                .route(web::get().to(logs::search_prefix)),
        )
        .service(
            resource("/api/v1/projects/{project}/search/{path:.+}", "GET")
                .route(web::get().to(logs::search)),
        )
        .service(
            resource("/api/v1/projects/{project}/sections/{path:.+}", "GET")
                .route(web::get().to(logs::sections)),
        )
        .service(
            resource("/api/v1/projects/{project}/archive-urls/{path:.+}", "GET")
                .route(web::get().to(logs::archive_urls)),
        )
        .service(
            resource("/api/v1/projects/{project}/archive/{path:.+}", "GET")
                .route(web::get().to(logs::archive_file)),
        )
        .service(
            resource("/api/v1/projects/{project}/watch/{path:.+}", "GET")
                .route(web::get().to(watch::watch)),
        )
        .service(resource("/logs/{project}/{path:.+}", "GET").route(web::get().to(logs::web_text)))
        .service(resource("/", "GET").route(web::get().to(webapp::index)))
        .service(
            resource("/api/v1/openapi.json", "GET").route(web::get().to(openapi::openapi_json)),
        )
        .service(resource("/explorer", "GET").route(web::get().to(webapp::explorer)))
        .service(resource("/static/{name}", "GET").route(web::get().to(webapp::asset)))
        .service(
            resource("/api/v1/projects/{project}/bundles", "POST")
                .route(web::post().to(services::bundle)),
        )
        .default_service(web::to(not_found));
}

/// Builds the app with its state and request metrics.
pub fn app(
    state: State,
) -> actix_web::App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let metrics = state.metrics.clone();
    actix_web::App::new()
        .app_data(state)
        .configure(configure)
        // Cluster mode: requests for streams another node owns go to that node.
        .wrap_fn(forward::middleware)
        // Every answer, JSON included, is to be taken as the type it says it is.
        .wrap(
            actix_web::middleware::DefaultHeaders::new()
                .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff")),
        )
        .wrap_fn(move |req, srv| {
            let started = Instant::now();
            let metrics = metrics.clone();
            let method = crate::metrics::method_label(req.method().as_str());
            let fut = srv.call(req);
            async move {
                let res = fut.await?;
                let route = res
                    .request()
                    .match_pattern()
                    .unwrap_or_else(|| "unmatched".into());
                let (status, elapsed) = (res.status().as_u16(), started.elapsed());
            metrics.observe(&route, method, status, elapsed);
            tracing::debug!(%method, %route, status, elapsed_ms = elapsed.as_secs_f64() * 1e3, "request");
                Ok(res)
            }
        })
        // Outermost: during a graceful stop every new request is answered here.
        .wrap_fn(stopping::middleware)
}

/// 200 or 201 with a JSON body.
pub fn json_response(created: bool, body: &impl serde::Serialize) -> HttpResponse {
    if created {
        HttpResponse::Created().json(body)
    } else {
        HttpResponse::Ok().json(body)
    }
}
