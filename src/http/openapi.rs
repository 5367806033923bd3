//! `/api/v1/openapi.json`: the API as OpenAPI 3, assembled here from the code and nothing
//! else: the handlers carry `#[utoipa::path]` next to their code, and every body is the
//! very type its handler reads or writes (and the clients use), deriving `ToSchema`
//! beside its handler, in `crate::errors`, or in `logdog_schema::wire`.

use actix_web::HttpResponse;
use logdog_schema::wire::{
    Archival, ArchiveInfo, DataJson, DatagramJson, Delimiter, Descriptor, DescriptorRequest,
    LineJson, LogEntry, Partial, Status, StreamJson, StreamStateJson, StreamType, TextJson,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{archival, logs, ops, registration, services, watch, webapp};
use crate::errors::{ErrorBody, ErrorCode, ErrorDetail};

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
        logs::sections,
        logs::search,
        logs::search_prefix,
        logs::archive_urls,
        logs::archive_file,
        logs::query,
        watch::watch,
        archival::lease,
        archival::renew,
        archival::complete,
        ops::config,
        ops::cluster,
        ops::projects,
        ops::healthz,
        ops::readyz,
        ops::metrics,
        openapi_json,
        logs::web_text,
        webapp::index,
        webapp::explorer,
        webapp::asset,
    ),
    components(schemas(
        ops::ClusterJson, ops::NodeJson,
        ErrorBody, ErrorDetail, ErrorCode, StreamJson, StreamStateJson, Descriptor,
        DescriptorRequest, StreamType, Status, Archival, ArchiveInfo, LogEntry, LineJson,
        TextJson, DataJson, DatagramJson, Partial, Delimiter, logs::LogsPage, logs::ReadFormat,
        logs::PurgedFilter, logs::ArchiveUrls, logs::ArchiveFile, logs::SectionsResponse,
        logs::SectionJson, logs::SectionMarkup, logs::SearchResponse, logs::SearchMatch,
        logs::PrefixSearchResponse, logs::StreamMatches
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
