//! `/api/v1/openapi.json`: the API as OpenAPI 3, generated from the code — the handlers
//! carry `#[utoipa::path]` next to their code, the wire types derive `ToSchema` — and
//! `/explorer`, a page to try the calls. The bodies below that are not wire types of their
//! own (requests the handlers parse from JSON, small answers built in place) are declared
//! here with the fields API.md gives them.

#![allow(dead_code)] // the types below exist for their schemas

use std::collections::BTreeMap;

use actix_web::HttpResponse;
use logdog_schema::wire::{
    Archival, ArchiveInfo, Descriptor, DescriptorRequest, Status, StreamJson, StreamStateJson,
    StreamType,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::{archival, logs, ops, registration, services, watch, webapp};

/// Every error: `{"error": {"code", "message"}}`.
#[derive(ToSchema)]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(ToSchema)]
pub struct ErrorDetail {
    /// invalid_argument, unauthenticated, permission_denied, not_found, already_exists,
    /// conflict, failed_precondition, payload_too_large, resource_exhausted, unavailable,
    /// method_not_allowed, internal.
    code: String,
    message: String,
}

#[derive(ToSchema)]
pub struct RegisterPrefixRequest {
    /// Segments `[A-Za-z0-9][A-Za-z0-9:_.-]*` joined by `/`.
    prefix: String,
    /// Seconds; the smallest positive of this, the project's and the server's.
    expiration: Option<f64>,
    /// base64 of 32 bytes: a retry with the same nonce within 15 minutes gets the same secret.
    op_nonce: Option<String>,
    source_info: Option<Vec<String>>,
}

#[derive(ToSchema)]
pub struct PrefixRegistered {
    project: String,
    prefix: String,
    /// base64 of 36 bytes; send it as `X-Prefix-Secret` on writes.
    secret: String,
    expires_at: String,
}

#[derive(ToSchema)]
pub struct RegisterStreamRequest {
    descriptor: DescriptorRequest,
    /// -1 or absent: not terminated.
    terminal_index: Option<i64>,
}

/// A text line; a plain string is shorthand for `{"value": s, "delimiter": "\n"}`.
#[derive(ToSchema)]
pub struct Line {
    value: String,
    /// `\n`, `\r\n`, or empty: the line continues in the next entry.
    delimiter: String,
}

#[derive(ToSchema)]
pub struct TextContent {
    lines: Vec<Line>,
}

#[derive(ToSchema)]
pub struct DataContent {
    /// base64.
    data: String,
}

#[derive(ToSchema)]
pub struct Partial {
    index: u64,
    size: u64,
    last: bool,
}

#[derive(ToSchema)]
pub struct DatagramContent {
    /// base64.
    data: String,
    partial: Option<Partial>,
}

/// LogDog's LogEntry: exactly one of `text`, `binary`, `datagram`, matching the stream type.
#[derive(ToSchema)]
pub struct LogEntry {
    /// 0, 1, 2, … within the stream.
    stream_index: u64,
    prefix_index: Option<u64>,
    /// Lines (text), bytes (binary) or datagrams before this entry.
    sequence: Option<u64>,
    /// Seconds after the descriptor's timestamp.
    time_offset: Option<f64>,
    text: Option<TextContent>,
    binary: Option<DataContent>,
    datagram: Option<DatagramContent>,
}

#[derive(ToSchema)]
pub struct AppendRequest {
    entries: Vec<LogEntry>,
}

#[derive(ToSchema)]
pub struct AppendResult {
    /// Every entry below it is stored.
    next_index: u64,
    accepted: u64,
    duplicates: u64,
}

#[derive(ToSchema)]
pub struct TerminateRequest {
    /// Omitted: the highest stored index.
    terminal_index: Option<i64>,
}

#[derive(ToSchema)]
pub struct BundleStream {
    name: String,
    /// Required the first time a stream is seen.
    descriptor: Option<DescriptorRequest>,
    entries: Vec<LogEntry>,
    terminal_index: Option<i64>,
}

#[derive(ToSchema)]
pub struct BundleRequest {
    prefix: String,
    streams: Vec<BundleStream>,
}

#[derive(ToSchema)]
pub struct BundleStreamResult {
    name: String,
    /// Null when this stream failed (see `error`).
    next_index: Option<u64>,
    accepted: u64,
    duplicates: u64,
    error: Option<ErrorDetail>,
}

#[derive(ToSchema)]
pub struct BundleResult {
    streams: Vec<BundleStreamResult>,
}

/// Get and Tail.
#[derive(ToSchema)]
pub struct LogsResponse {
    project: String,
    path: String,
    entries: Vec<LogEntry>,
    /// One past the last entry returned (or `index` when none is): the index to ask next.
    next_index: u64,
    /// With `state=true`.
    descriptor: Option<Descriptor>,
    state: Option<StreamStateJson>,
}

#[derive(ToSchema)]
pub struct QueryResponse {
    streams: Vec<StreamJson>,
    /// Pass as `cursor` for the next page; null at the end.
    next_cursor: Option<String>,
}

#[derive(ToSchema)]
pub struct PrefixInfo {
    prefix: String,
    created: String,
    expires_at: String,
}

#[derive(ToSchema)]
pub struct PrefixList {
    prefixes: Vec<PrefixInfo>,
    next_cursor: Option<String>,
}

#[derive(ToSchema)]
pub struct ProjectInfo {
    name: String,
    public: bool,
}

#[derive(ToSchema)]
pub struct ProjectList {
    projects: Vec<ProjectInfo>,
}

#[derive(ToSchema)]
pub struct LeaseRequest {
    /// Default 1.
    max_tasks: Option<u32>,
    /// 1–3600.
    lease_seconds: Option<f64>,
    /// 0–60: how long to wait for a due task.
    wait_seconds: Option<f64>,
}

#[derive(ToSchema)]
pub struct ArchiveTask {
    task_id: String,
    lease_id: String,
    project: String,
    path: String,
    id: String,
    attempt: u32,
    /// terminated, incomplete or expired.
    reason: String,
    lease_expires_at: String,
}

#[derive(ToSchema)]
pub struct LeaseResponse {
    tasks: Vec<ArchiveTask>,
}

#[derive(ToSchema)]
pub struct RenewRequest {
    lease_id: String,
    lease_seconds: f64,
}

/// Success carries the archive's URLs and sizes; failure carries `error`.
#[derive(ToSchema)]
pub struct CompleteRequest {
    lease_id: String,
    terminal_index: Option<i64>,
    log_entry_count: Option<u64>,
    stream_url: Option<String>,
    stream_size: Option<u64>,
    index_url: Option<String>,
    index_size: Option<u64>,
    data_url: Option<String>,
    data_size: Option<u64>,
    error: Option<String>,
}

/// The effective public configuration (never tokens).
#[derive(ToSchema)]
pub struct PublicConfig {
    #[schema(value_type = Object)]
    archival: BTreeMap<String, serde_json::Value>,
    #[schema(value_type = Object)]
    limits: BTreeMap<String, serde_json::Value>,
    #[schema(value_type = Object)]
    websocket: BTreeMap<String, serde_json::Value>,
    prefix_expiration: f64,
    archive: String,
    /// `{"name", "public", "prefix_expiration"}` for each configured project.
    #[schema(value_type = Vec<Object>)]
    projects: Vec<serde_json::Value>,
}

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "LogDog Coordinator API",
        version = "1",
        description = "Register prefixes and streams, append log entries, read and follow them, archive them. The contract is docs/API.md; errors are always {\"error\": {\"code\", \"message\"}}."
    ),
    paths(
        registration::register_prefix,
        registration::delete_prefix,
        logs::list_prefixes,
        services::register_stream,
        services::load_stream,
        services::terminate_stream,
        services::purge_stream,
        services::append,
        logs::get,
        services::bundle,
        logs::tail,
        logs::query,
        watch::watch,
        archival::lease,
        archival::renew,
        archival::complete,
        ops::config,
        ops::projects,
        ops::healthz,
        ops::readyz,
        ops::metrics,
        openapi_json,
        logs::web_text,
        webapp::index,
        explorer,
        webapp::asset,
    ),
    components(schemas(
        ErrorBody, ErrorDetail, StreamJson, StreamStateJson, Descriptor, DescriptorRequest,
        StreamType, Status, Archival, ArchiveInfo, LogEntry, Line, TextContent, DataContent,
        DatagramContent, Partial
    )),
    modifiers(&Bearer),
    tags(
        (name = "Registration", description = "The Butler side: prefixes"),
        (name = "Services", description = "The Collector side: streams and entries"),
        (name = "Logs", description = "The viewer side: Get, Tail, Query, watch"),
        (name = "Archival", description = "The Archivist side"),
        (name = "Operations", description = "Configuration, health, metrics"),
        (name = "Web", description = "Pages for browsers"),
    )
)]
pub struct ApiDoc;

/// `GET /api/v1/openapi.json`.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "Operations",
    responses((status = 200, description = "This document", content_type = "application/json"))
)]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}

/// `GET /explorer`: a page to try the API.
#[utoipa::path(
    get, path = "/explorer", tag = "Web",
    responses((status = 200, description = "A page to try the API from the browser", content_type = "text/html"))
)]
pub async fn explorer() -> HttpResponse {
    webapp::explorer()
}
