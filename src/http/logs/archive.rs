//! An archived stream's three objects (`entries`, `index`, `data`; `docs/ARCHIVE.md`):
//! `GET …/archive-urls/{prefix}/+/{name}` says where to download them — expiring URLs
//! signed by the store where it can sign (S3, GCS, Azure; LogDog's `GetSignedUrls`), so big
//! downloads do not pass through a coordinator, else this coordinator's own route — and
//! `GET …/archive/{prefix}/+/{name}?file=…` serves them (one byte range on request).

use std::time::Duration;

use actix_web::http::header;

use logdog_schema::wire::ArchiveInfo;

use super::*;
use crate::archive::ArchiveStore;

/// How long signed URLs last by default, and at most (the stores' own limit: 7 days).
const DEFAULT_EXPIRES: u64 = 3600;
const MAX_EXPIRES: u64 = 604_800;

/// One of an archive's three objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ArchiveFile {
    /// The header, the descriptor and every entry, length-delimited (`docs/ARCHIVE.md`).
    Entries,
    /// The sparse index: (stream index, byte offset in `entries`) records.
    Index,
    /// The text rendered (text streams) or the raw data (binary and datagram streams).
    Data,
}

impl ArchiveFile {
    const ALL: [ArchiveFile; 3] = [Self::Entries, Self::Index, Self::Data];

    fn name(self) -> &'static str {
        match self {
            Self::Entries => "entries",
            Self::Index => "index",
            Self::Data => "data",
        }
    }

    /// The stored URL of this object of `archive`.
    fn stored_url(self, archive: &ArchiveInfo) -> &str {
        match self {
            Self::Entries => &archive.stream_url,
            Self::Index => &archive.index_url,
            Self::Data => &archive.data_url,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct UrlParams {
    expires: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileParams {
    file: ArchiveFile,
}

/// Where an archived stream's objects can be downloaded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ArchiveUrls {
    pub project: String,
    pub path: String,
    /// True: the URLs are the store's own, signed, fetched with no token until
    /// `expires_at`. False: they are this coordinator's `archive` route, fetched as any read
    /// (with the token the project needs).
    pub signed: bool,
    /// When signed URLs stop working (RFC 3339); null for the coordinator's route.
    pub expires_at: Option<String>,
    pub stream_url: String,
    pub index_url: String,
    pub data_url: String,
    pub log_entry_count: u64,
    pub complete: bool,
}

/// The stream's archive (412 while it has none) and the store that holds it.
async fn archived(
    state: &State,
    req: &HttpRequest,
) -> Result<(String, StreamJson, ArchiveInfo, ArchiveStore), ApiError> {
    let Authorized {
        caller, project, ..
    } = authorize(state, req, None).await?;
    let path = stream_path(req)?;
    let stream = load(state, caller, &project, &path).await?;
    let Some(archive) = stream.state.archive.clone() else {
        return Err(ApiError::failed_precondition(format!(
            "stream {:?} is not archived (yet)",
            stream.path
        )));
    };
    let store = state.archive.for_url(&project, &archive.stream_url).clone();
    Ok((project, stream, archive, store))
}

/// `GET …/archive-urls/{prefix}/+/{name}`: download URLs for the archive's objects.
#[utoipa::path(
    get, path = "/api/v1/projects/{project}/archive-urls/{prefix}/+/{name}", tag = "Logs",
    params(("project" = String, Path, description = "LUCI project name", pattern = r"^[a-z][a-z0-9_-]{0,99}$"), ("prefix" = String, Path, description = "The stream's prefix: segments joined by `/`, sent unescaped (`%2F` is decoded too)", pattern = r"^[A-Za-z0-9][A-Za-z0-9:_.-]*(/[A-Za-z0-9][A-Za-z0-9:_.-]*)*$", allow_reserved), ("name" = String, Path, description = "The stream's name: segments joined by `/`, sent unescaped (`%2F` is decoded too)", pattern = r"^[A-Za-z0-9][A-Za-z0-9:_.-]*(/[A-Za-z0-9][A-Za-z0-9:_.-]*)*$", allow_reserved),
           ("expires" = Option<u64>, Query, description = "Seconds signed URLs last (default 3600, at most 604800)", minimum = 1, maximum = 604800)),
    responses((status = 200, description = "The URLs of the archive's entries, index and data", body = ArchiveUrls),
              (status = 400, description = "invalid_argument", body = crate::errors::ErrorBody), (status = 401, description = "unauthenticated", body = crate::errors::ErrorBody), (status = 403, description = "permission_denied (or the project is not visible)", body = crate::errors::ErrorBody), (status = 404, description = "not_found", body = crate::errors::ErrorBody), (status = 412, description = "failed_precondition: the stream is not archived", body = crate::errors::ErrorBody), (status = 503, description = "unavailable: the archive store cannot be reached", body = crate::errors::ErrorBody)),
    security((), ("bearer" = []))
)]
pub async fn archive_urls(state: State, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let p: UrlParams = params(&req)?;
    let expires = p.expires.unwrap_or(DEFAULT_EXPIRES);
    if !(1..=MAX_EXPIRES).contains(&expires) {
        return Err(ApiError::invalid(format!(
            "expires {expires}: from 1 to {MAX_EXPIRES} seconds"
        )));
    }
    let (project, stream, archive, store) = archived(&state, &req).await?;
    let until = logdog_schema::wire::now_us() + (expires * 1_000_000) as i64;
    let (urls, expires_at) = match sign(&store, &archive, Duration::from_secs(expires)).await {
        Some(urls) => (urls, Some(format_us(until))),
        None => (
            ArchiveFile::ALL.map(|f| own_url(&req, &project, &stream.path, f)),
            None,
        ),
    };
    let [stream_url, index_url, data_url] = urls;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(ArchiveUrls {
            project,
            path: stream.path,
            signed: expires_at.is_some(),
            expires_at,
            stream_url,
            index_url,
            data_url,
            log_entry_count: archive.log_entry_count,
            complete: archive.complete,
        }))
}

/// The three objects' signed URLs, where the store signs.
async fn sign(
    store: &ArchiveStore,
    archive: &ArchiveInfo,
    expires: Duration,
) -> Option<[String; 3]> {
    let mut urls = Vec::with_capacity(3);
    for file in ArchiveFile::ALL {
        match store.signed_url(file.stored_url(archive), expires).await {
            Ok(Some(url)) => urls.push(url),
            Ok(None) => return None,
            // The store signs in principle but not with these credentials (a GCS token
            // without a key, say): the coordinator's route still works.
            Err(e) => {
                tracing::warn!(error = %e, "cannot sign archive URLs; handing out the coordinator's");
                return None;
            }
        }
    }
    urls.try_into().ok()
}

/// This coordinator's URL of one of the stream's archive objects, as the caller reached it.
fn own_url(req: &HttpRequest, project: &str, path: &str, file: ArchiveFile) -> String {
    let info = req.connection_info();
    format!(
        "{}://{}/api/v1/projects/{project}/archive/{path}?file={}",
        info.scheme(),
        info.host(),
        file.name()
    )
}

/// `GET …/archive/{prefix}/+/{name}?file=entries|index|data`: the object's bytes, read
/// through from the store; `Range: bytes=A-B`, `A-` or `-N` answers 206 with that part.
/// Any other Range (several ranges, or none satisfiable) is ignored: 200 and the whole
/// object, as HTTP allows.
#[utoipa::path(
    get, path = "/api/v1/projects/{project}/archive/{prefix}/+/{name}", tag = "Logs",
    params(("project" = String, Path, description = "LUCI project name", pattern = r"^[a-z][a-z0-9_-]{0,99}$"), ("prefix" = String, Path, description = "The stream's prefix: segments joined by `/`, sent unescaped (`%2F` is decoded too)", pattern = r"^[A-Za-z0-9][A-Za-z0-9:_.-]*(/[A-Za-z0-9][A-Za-z0-9:_.-]*)*$", allow_reserved), ("name" = String, Path, description = "The stream's name: segments joined by `/`, sent unescaped (`%2F` is decoded too)", pattern = r"^[A-Za-z0-9][A-Za-z0-9:_.-]*(/[A-Za-z0-9][A-Za-z0-9:_.-]*)*$", allow_reserved),
           ("file" = ArchiveFile, Query, description = "Which object: entries, index or data")),
    responses((status = 200, description = "The whole object", content((Vec<u8> = "application/octet-stream"), (String = "text/plain"))),
              (status = 206, description = "The byte range asked for (Content-Range)", content((Vec<u8> = "application/octet-stream"), (String = "text/plain"))),
              (status = 400, description = "invalid_argument", body = crate::errors::ErrorBody), (status = 401, description = "unauthenticated", body = crate::errors::ErrorBody), (status = 403, description = "permission_denied (or the project is not visible)", body = crate::errors::ErrorBody), (status = 404, description = "not_found", body = crate::errors::ErrorBody), (status = 412, description = "failed_precondition: the stream is not archived", body = crate::errors::ErrorBody), (status = 503, description = "unavailable: the archive store cannot be reached", body = crate::errors::ErrorBody)),
    security((), ("bearer" = []))
)]
pub async fn archive_file(state: State, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let p: FileParams = params(&req)?;
    let (_, stream, archive, store) = archived(&state, &req).await?;
    let url = p.file.stored_url(&archive);
    let size = store.size(url).await?;
    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| byte_range(v, size));
    let body = store.object(url, range.clone().unwrap_or(0..size)).await?;
    let content_type = match (p.file, stream.descriptor.stream_type) {
        (ArchiveFile::Data, StreamType::Text) => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    };
    let mut res = match &range {
        Some(r) => {
            let mut res = HttpResponse::PartialContent();
            res.insert_header((
                header::CONTENT_RANGE,
                format!("bytes {}-{}/{size}", r.start, r.end - 1),
            ));
            res
        }
        None => HttpResponse::Ok(),
    };
    let len = range.map_or(size, |r| r.end - r.start);
    Ok(res
        .content_type(content_type)
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .no_chunking(len)
        .streaming(futures::StreamExt::map(body, |b| b.map_err(ApiError::from))))
}

/// One satisfiable range of a `Range: bytes=…` header over an object of `size` bytes.
fn byte_range(v: &str, size: u64) -> Option<std::ops::Range<u64>> {
    let spec = v.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.trim().split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        size.saturating_sub(n)..size
    } else {
        let start: u64 = a.parse().ok()?;
        let end = if b.is_empty() {
            size
        } else {
            b.parse::<u64>().ok()?.saturating_add(1).min(size)
        };
        start..end
    };
    (range.start < range.end).then_some(range)
}

#[cfg(test)]
mod tests {
    use super::byte_range;

    #[test]
    fn byte_ranges() {
        assert_eq!(byte_range("bytes=0-9", 100), Some(0..10));
        assert_eq!(byte_range("bytes=90-", 100), Some(90..100));
        assert_eq!(byte_range("bytes=90-500", 100), Some(90..100));
        assert_eq!(byte_range("bytes=-10", 100), Some(90..100));
        assert_eq!(byte_range("bytes=-500", 100), Some(0..100));
        assert_eq!(byte_range("bytes=100-", 100), None, "unsatisfiable");
        assert_eq!(byte_range("bytes=5-2", 100), None);
        assert_eq!(byte_range("bytes=0-1,5-6", 100), None, "several");
        assert_eq!(byte_range("items=0-1", 100), None);
        assert_eq!(byte_range("bytes=-0", 100), None);
    }
}
