//! The web app: the stream browser at `/`, the viewer page that `/logs/{project}/{path}`
//! serves to browsers, and their assets under `/static/`. Everything is embedded in the
//! binary; nothing is fetched at run time. The pages use only the public API.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};

use crate::errors::ApiError;

/// (name, content type, bytes) of every asset.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../web/style.css"),
    ),
    (
        "ansi.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/ansi.js"),
    ),
    (
        "common.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/common.js"),
    ),
    (
        "index.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/index.js"),
    ),
    (
        "viewer.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/viewer.js"),
    ),
    (
        "explorer.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/explorer.js"),
    ),
];

const INDEX_HTML: &str = include_str!("../web/index.html");
const VIEWER_HTML: &str = include_str!("../web/viewer.html");
const EXPLORER_HTML: &str = include_str!("../web/explorer.html");

/// The asset's validator: a hash of its bytes.
fn etag(body: &str) -> String {
    use sha2::Digest as _;
    format!(
        "\"{}\"",
        &hex::encode(sha2::Sha256::digest(body.as_bytes()))[..20]
    )
}

fn page(html: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; connect-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
        ))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .body(html)
}

/// `GET /`: the browser.
#[utoipa::path(
    get, path = "/", tag = "Web",
    responses((status = 200, description = "The web app", content_type = "text/html"))
)]
pub async fn index() -> HttpResponse {
    page(INDEX_HTML)
}

/// The viewer page (for `/logs/…` when a browser asks for HTML).
pub fn viewer() -> HttpResponse {
    page(VIEWER_HTML)
}

/// `GET /explorer`: a page to try the API.
#[utoipa::path(
    get, path = "/explorer", tag = "Web",
    responses((status = 200, description = "A page to try the API from the browser", content_type = "text/html"))
)]
pub async fn explorer() -> HttpResponse {
    page(EXPLORER_HTML)
}

/// Does the request prefer HTML (a browser navigating), and not ask for a format?
pub fn wants_html(req: &HttpRequest) -> bool {
    let asks_format = form_urlencoded::parse(req.query_string().as_bytes())
        .any(|(k, _)| k == "format" || k == "follow");
    !asks_format
        && req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.split(',').any(|t| t.trim().starts_with("text/html")))
}

/// `GET /static/{name}`.
#[utoipa::path(
    get, path = "/static/{name}", tag = "Web",
    params(("name" = String, Path, description = "An asset of the web app (e.g. viewer.js)")),
    responses((status = 200, description = "The asset (JavaScript or CSS), with an ETag", content_type = "text/plain"),
              (status = 304, description = "Not modified (If-None-Match)"),
              (status = 404, description = "not_found", body = crate::errors::ErrorBody))
)]
pub async fn asset(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let name = req.match_info().get("name").unwrap_or_default();
    let Some((_, content_type, body)) = ASSETS.iter().find(|(n, _, _)| *n == name) else {
        return Err(ApiError::not_found(format!("no asset {name:?}")));
    };
    let tag = etag(body);
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == tag);
    let mut res = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    res.insert_header((header::ETAG, tag))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Content-Type-Options", "nosniff"));
    Ok(if fresh {
        res.finish()
    } else {
        res.content_type(*content_type).body(*body)
    })
}
