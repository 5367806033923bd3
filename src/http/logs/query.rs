//! Query (streams by prefix, name glob, tags and state) and the prefix listing, each a
//! page at a time behind an opaque cursor.

use super::*;

/// Query's `purged` filter (for the document; parsed with the other parameters).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PurgedFilter {
    No,
    Yes,
    Both,
}

/// A Query or listing cursor: the last path (or prefix) returned, opaque to clients.
/// Any decodable cursor is a place to continue from (paths after it), so bytes that are
/// not UTF-8 are read leniently rather than refused.
pub(crate) fn decode_cursor(c: &str) -> Result<String, ApiError> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    LENIENT
        .decode(c)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .map_err(|_| ApiError::invalid("invalid cursor"))
}

pub(crate) fn encode_cursor(last: &str) -> String {
    B64URL.encode(last.as_bytes())
}

/// What Query was asked, parsed and checked.
pub(super) struct QueryRequest {
    pub(super) filter: StreamFilter,
    pub(super) glob: Option<NameGlob>,
    pub(super) limit: usize,
}

pub(super) fn parse_query(
    req: &HttpRequest,
    project: &str,
    caller: Caller,
) -> Result<QueryRequest, ApiError> {
    let mut filter = StreamFilter {
        project: project.to_owned(),
        purged: Some(false),
        ..StreamFilter::default()
    };
    let (mut glob, mut limit) = (None, 100usize);
    for (k, v) in form_urlencoded::parse(req.query_string().as_bytes()) {
        let v = v.into_owned();
        match &*k {
            "prefix" => {
                names::validate_prefix(&v)?;
                filter.prefix = Some(v);
            }
            "name" => glob = Some(NameGlob::parse(&v)?),
            "tag" => {
                let (key, value) = match v.split_once('=') {
                    Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                    None => (v.clone(), None),
                };
                names::validate_tag(&key, value.as_deref().unwrap_or(""))?;
                if filter.tags.len() == names::MAX_TAG_FILTERS {
                    return Err(ApiError::invalid(format!(
                        "at most {} tag filters",
                        names::MAX_TAG_FILTERS
                    )));
                }
                filter.tags.push((key, value));
            }
            "status" => {
                filter.status = Some(Status::parse(&v).ok_or_else(|| {
                    ApiError::invalid(format!(
                        "invalid status {v:?}: streaming, terminated or archived"
                    ))
                })?);
            }
            "stream_type" => {
                filter.stream_type = Some(
                    StreamType::parse(&v)
                        .ok_or_else(|| ApiError::invalid(format!("invalid stream_type {v:?}")))?,
                );
            }
            "content_type" => filter.content_type = Some(v),
            "purged" => {
                filter.purged = match v.as_str() {
                    "no" => Some(false),
                    "yes" => Some(true),
                    "both" => None,
                    _ => {
                        return Err(ApiError::invalid(format!(
                            "invalid purged {v:?}: no, yes or both"
                        )))
                    }
                };
                if filter.purged != Some(false) && !caller.admin {
                    return Err(ApiError::permission_denied(
                        "purged=yes|both needs the admin role",
                    ));
                }
            }
            "limit" => {
                limit = v
                    .parse()
                    .ok()
                    .filter(|l| (1..=500).contains(l))
                    .ok_or_else(|| ApiError::invalid(format!("invalid limit {v:?}: 1 to 500")))?;
            }
            "cursor" => filter.after = Some(decode_cursor(&v)?),
            other => {
                return Err(ApiError::invalid(format!(
                    "unknown query parameter {other:?}"
                )))
            }
        }
    }
    if let (Some(prefix), Some(g)) = (&filter.prefix, &glob) {
        let lit = g.literal_prefix();
        filter.path_starts_with = Some(format!("{prefix}{}{lit}", names::PATH_SEP));
    }
    Ok(QueryRequest {
        filter,
        glob,
        limit,
    })
}

/// `GET /api/v1/projects/{project}/streams`: Query, ordered by path, a page at a time.
#[utoipa::path(
    get, path = "/api/v1/projects/{project}/streams", tag = "Logs",
    params(("project" = String, Path, description = "LUCI project name", pattern = r"^[a-z][a-z0-9_-]{0,99}$"),
           ("prefix" = Option<String>, Query, description = "Exact prefix", pattern = r"^[A-Za-z0-9][A-Za-z0-9:_.-]*(/[A-Za-z0-9][A-Za-z0-9:_.-]*)*$"),
           ("name" = Option<String>, Query, description = "Glob: * within a segment, ** whole segments", pattern = r"^(\*\*|\*|([A-Za-z0-9]|\*[A-Za-z0-9:_.-])([A-Za-z0-9:_.-]|\*[A-Za-z0-9:_.-])*\*?)(/(\*\*|\*|([A-Za-z0-9]|\*[A-Za-z0-9:_.-])([A-Za-z0-9:_.-]|\*[A-Za-z0-9:_.-])*\*?))*$"),
           ("tag" = Option<Vec<String>>, Query, description = "k=v or k (repeatable, all must match; at most 16); keys follow the name rules", pattern = r"^(?=[^=]{1,64}(=|$))[A-Za-z0-9][A-Za-z0-9:_.-]*(/[A-Za-z0-9][A-Za-z0-9:_.-]*)*(=.{0,4096})?$"),
           ("status" = Option<logdog_schema::wire::Status>, Query, description = "streaming, terminated or archived"),
           ("stream_type" = Option<StreamType>, Query, description = "text, binary or datagram"),
           ("content_type" = Option<String>, Query, description = "Exact content type"),
           ("purged" = Option<PurgedFilter>, Query, description = "no (default), yes or both (admin)"),
           ("limit" = Option<u32>, Query, description = "Default 100, max 500", minimum = 1, maximum = 500),
           ("cursor" = Option<String>, Query, description = "From next_cursor (opaque, URL-safe base64)", pattern = r"^([A-Za-z0-9_-]{4})*([A-Za-z0-9_-]{2,3})?$")),
    responses((status = 200, description = "Streams ordered by path", body = QueryResponse), (status = 400, description = "invalid_argument", body = crate::errors::ErrorBody), (status = 401, description = "unauthenticated", body = crate::errors::ErrorBody), (status = 403, description = "permission_denied (or the project is not visible)", body = crate::errors::ErrorBody)),
    security((), ("bearer" = []))
)]
pub async fn query(state: State, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let Authorized {
        caller, project, ..
    } = authorize(&state, &req, None).await?;
    let QueryRequest {
        mut filter,
        glob,
        limit,
    } = parse_query(&req, &project, caller)?;
    let store = state.store.clone();
    let (rows, resume) = blocking(move || {
        // Fetch in batches; the name glob is checked here, everything else in SQL. At
        // most QUERY_SCAN_BUDGET rows are looked at; past it the page goes out short,
        // with a cursor after the last row looked at.
        let batch = (limit as i64 * 2).max(64);
        let (mut out, mut scanned) = (Vec::new(), 0usize);
        loop {
            let rows = store.read(|c| store::query_streams(c, &filter, batch))?;
            let exhausted = (rows.len() as i64) < batch;
            for row in rows {
                scanned += 1;
                filter.after = Some(row.path.clone());
                if glob.as_ref().is_none_or(|g| g.matches(&row.name)) {
                    out.push(row);
                    if out.len() == limit {
                        return Ok::<_, logdog_schema::StoreError>((out, filter.after));
                    }
                }
            }
            if exhausted {
                return Ok((out, None));
            }
            if scanned >= QUERY_SCAN_BUDGET {
                return Ok((out, filter.after));
            }
        }
    })
    .await?;
    let next_cursor = resume.as_deref().map(encode_cursor);
    let streams = rows
        .iter()
        .map(|r| {
            r.descriptor()
                .map(|d| r.to_json(d))
                .map_err(ApiError::internal)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(HttpResponse::Ok().json(QueryResponse {
        streams,
        next_cursor,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PrefixParams {
    pub(super) under: Option<String>,
    pub(super) limit: Option<i64>,
    pub(super) cursor: Option<String>,
}

/// `GET /api/v1/projects/{project}/prefixes`: registered prefixes, ordered.
#[utoipa::path(
    get, path = "/api/v1/projects/{project}/prefixes", tag = "Registration",
    params(("project" = String, Path, description = "LUCI project name", pattern = r"^[a-z][a-z0-9_-]{0,99}$"), ("under" = Option<String>, Query, description = "Only this prefix and those below it", pattern = r"^[A-Za-z0-9][A-Za-z0-9:_.-]*(/[A-Za-z0-9][A-Za-z0-9:_.-]*)*$"),
           ("limit" = Option<u32>, Query, description = "Default 100, max 500", minimum = 1, maximum = 500),
           ("cursor" = Option<String>, Query, description = "From next_cursor (opaque, URL-safe base64)", pattern = r"^([A-Za-z0-9_-]{4})*([A-Za-z0-9_-]{2,3})?$")),
    responses((status = 200, description = "Registered prefixes, ordered", body = PrefixList), (status = 400, description = "invalid_argument", body = crate::errors::ErrorBody), (status = 401, description = "unauthenticated", body = crate::errors::ErrorBody), (status = 403, description = "permission_denied (or the project is not visible)", body = crate::errors::ErrorBody)),
    security((), ("bearer" = []))
)]
pub async fn list_prefixes(state: State, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let Authorized { project, .. } = authorize(&state, &req, None).await?;
    let p: PrefixParams = params(&req)?;
    if let Some(u) = &p.under {
        names::validate_prefix(u)?;
    }
    let limit = p.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid("limit must be from 1 to 500"));
    }
    let after = p.cursor.as_deref().map(decode_cursor).transpose()?;
    let store = state.store.clone();
    let rows = blocking(move || {
        store.read(|c| {
            store::list_prefixes(c, &project, p.under.as_deref(), after.as_deref(), limit + 1)
        })
    })
    .await?;
    let more = rows.len() as i64 > limit;
    let rows = &rows[..rows.len().min(limit as usize)];
    let next_cursor = if more {
        rows.last().map(|r| encode_cursor(&r.prefix))
    } else {
        None
    };
    let prefixes = rows
        .iter()
        .map(|r| PrefixListing {
            prefix: r.prefix.clone(),
            created: format_us(r.created_us),
            expires_at: format_us(r.expires_us),
        })
        .collect();
    Ok(HttpResponse::Ok().json(PrefixList {
        prefixes,
        next_cursor,
    }))
}
