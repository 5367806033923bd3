//! `GET …/sections/{prefix}/+/{name}`: a text stream's outline of collapsible sections,
//! recognised from GitLab, GitHub Actions and Buildkite markup (`logdog_schema::sections`).
//! The outline is stored with the stream (`stream_sections`, kept close behind the
//! contiguous end by the stream actor and finished when the stream is archived); a read
//! catches up what the stored outline has not seen yet, so it never reads the log from
//! its start. An archive holds the outline too (its `sections` object), read when the
//! database has none; only an archive written before archives held outlines is read from
//! its start, once.

use actix_web::{HttpRequest, HttpResponse};
use logdog_schema::sections::{Markup, Section};
use logdog_schema::store::{self, ReadRange, StoredOutline};
use logdog_schema::wire::{format_us, now_us, StreamJson, StreamType};
use serde::{Deserialize, Serialize};

use super::super::blocking;
use super::{authorize, load, params, stream_path, Authorized, State};
use crate::errors::ApiError;

/// Which markup declared a section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SectionMarkup {
    Gitlab,
    Github,
    Buildkite,
}

impl From<Markup> for SectionMarkup {
    fn from(m: Markup) -> Self {
        match m {
            Markup::GitLab => SectionMarkup::Gitlab,
            Markup::GitHub => SectionMarkup::Github,
            Markup::Buildkite => SectionMarkup::Buildkite,
        }
    }
}

/// One collapsible section. Lines are numbered from 0 the way the stream's entries number
/// them (an entry's `sequence` is the number of lines before it; a line continued over
/// several entries has the number of its first piece), so line N is shown as N + 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SectionJson {
    /// GitLab: the section's name as written. GitHub Actions and Buildkite have none:
    /// `github:N` / `buildkite:N`, N being the section's position in `sections`.
    pub name: String,
    /// The header, ANSI codes removed (GitLab: the text after the marker, or the name).
    pub title: String,
    pub markup: SectionMarkup,
    /// 0 for a top-level section.
    pub depth: u32,
    /// Position of the enclosing section in `sections`.
    pub parent: Option<usize>,
    /// The line that opens the section (the marker line).
    pub first_line: u64,
    /// The section's last line: its end marker, the line before the marker that closed
    /// it implicitly, or the stream's last line. Null while the section is open.
    pub last_line: Option<u64>,
    /// The entry holding `first_line` (where it starts).
    pub first_index: u64,
    /// The entry holding `last_line` (where it ends); null while open.
    pub last_index: Option<u64>,
    /// GitLab: the marker's timestamp; GitHub Actions and Buildkite: the entry's time.
    #[schema(format = DateTime)]
    pub start_time: Option<String>,
    #[schema(format = DateTime)]
    pub end_time: Option<String>,
    /// `end_time − start_time` in milliseconds, when both are known.
    pub duration_ms: Option<f64>,
    /// Folded by default: GitLab `collapsed=true`, every GitHub group, Buildkite `---` and
    /// `~~~` (`+++`, `^^^ +++` and Buildkite's last-group rule open one).
    pub collapsed: bool,
    /// Buildkite `~~~`: a de-emphasised header.
    pub deemphasized: bool,
    /// GitLab `hide_duration=true`.
    pub hide_duration: bool,
    /// Closed by the end of the stream rather than by its markup.
    pub closed_at_end: bool,
}

impl From<&Section> for SectionJson {
    fn from(s: &Section) -> Self {
        Self {
            name: s.name.clone(),
            title: s.title.clone(),
            markup: s.markup.into(),
            depth: s.depth,
            parent: s.parent,
            first_line: s.first_line,
            last_line: s.last_line,
            first_index: s.first_index,
            last_index: s.last_index,
            start_time: s.start_us.map(format_us),
            end_time: s.end_us.map(format_us),
            duration_ms: match (s.start_us, s.end_us) {
                (Some(a), Some(b)) => Some((b - a) as f64 / 1000.0),
                _ => None,
            },
            collapsed: s.collapsed,
            deemphasized: s.deemphasized,
            hide_duration: s.hide_duration,
            closed_at_end: s.closed_at_eof,
        }
    }
}

/// The outline `GET …/sections/…` answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SectionsResponse {
    pub project: String,
    pub path: String,
    /// In the order of their first line; nested sections follow their parent.
    pub sections: Vec<SectionJson>,
    /// The outline covers the entries before this index (the stream's contiguous end
    /// when the answer was made; for an archived stream, its whole archive).
    pub next_index: u64,
    /// Final: the stream is terminated and complete, or archived; open sections were
    /// closed at its last line.
    pub complete: bool,
    /// Sections not listed because the stream declared more than 10,000.
    pub dropped: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SectionsParams {}

/// Entries read per page when an outline is built from an archive.
const ARCHIVE_PAGE: usize = 10_000;

/// `GET …/sections/{prefix}/+/{name}`.
#[utoipa::path(
    get, path = "/api/v1/projects/{project}/sections/{prefix}/+/{name}", tag = "Logs",
    params(("project" = String, Path, description = "LUCI project name", pattern = r"^[a-z][a-z0-9_-]{0,99}$"), ("prefix" = String, Path, description = "The stream's prefix: segments joined by `/`, sent unescaped (`%2F` is decoded too)", pattern = r"^[A-Za-z0-9][A-Za-z0-9:_.-]*(/[A-Za-z0-9][A-Za-z0-9:_.-]*)*$", allow_reserved), ("name" = String, Path, description = "The stream's name: segments joined by `/`, sent unescaped (`%2F` is decoded too)", pattern = r"^[A-Za-z0-9][A-Za-z0-9:_.-]*(/[A-Za-z0-9][A-Za-z0-9:_.-]*)*$", allow_reserved)),
    responses((status = 200, description = "The stream's sections (none for binary and datagram streams)", body = SectionsResponse),
              (status = 400, description = "invalid_argument", body = crate::errors::ErrorBody), (status = 401, description = "unauthenticated", body = crate::errors::ErrorBody), (status = 403, description = "permission_denied (or the project is not visible)", body = crate::errors::ErrorBody), (status = 404, description = "not_found", body = crate::errors::ErrorBody), (status = 503, description = "unavailable: storage or the archive store cannot be reached", body = crate::errors::ErrorBody)),
    security((), ("bearer" = []))
)]
pub async fn sections(state: State, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let Authorized {
        caller, project, ..
    } = authorize(&state, &req, None).await?;
    let path = stream_path(&req)?;
    let _: SectionsParams = params(&req)?;
    let stream = load(&state, caller, &project, &path).await?;
    let o = outline(&state, &project, &path, &stream).await?;
    let body = SectionsResponse {
        project,
        path: stream.path.clone(),
        sections: o.outline.sections.iter().map(SectionJson::from).collect(),
        next_index: o.fed_to,
        complete: o.finished,
        dropped: o.outline.dropped,
    };
    Ok(HttpResponse::Ok().json(body))
}

/// The stream's outline, brought up to its contiguous end (finished when the stream is
/// complete or archived) and saved forward when it moved.
pub async fn outline(
    state: &State,
    project: &str,
    path: &logdog_schema::names::StreamPath,
    stream: &StreamJson,
) -> Result<StoredOutline, ApiError> {
    let s = &stream.state;
    if stream.descriptor.stream_type != StreamType::Text {
        let mut o = StoredOutline {
            fed_to: s.next_index.max(0) as u64,
            ..StoredOutline::default()
        };
        o.finished = s.archive.is_some() || s.terminal_index >= 0;
        return Ok(o);
    }
    let (db, p, id) = (state.store.clone(), project.to_owned(), stream.id.clone());
    let stored = blocking(move || db.read(|c| store::get_outline(c, &p, &id))).await?;
    let mut o = stored.clone().unwrap_or_default();
    if o.finished {
        return Ok(o);
    }
    let timestamp = stream.descriptor.timestamp;
    match &s.archive {
        None => {
            let end = s.next_index.max(0) as u64;
            let (db, p, id) = (state.store.clone(), project.to_owned(), stream.id.clone());
            o = blocking(move || {
                db.read(|c| {
                    store::catch_up_outline(c, &p, &id, &mut o, end, timestamp, true)?;
                    Ok(o)
                })
            })
            .await?;
            if s.terminal_index >= 0 && o.fed_to == s.terminal_index as u64 + 1 {
                o.finish();
            }
        }
        // Archived with no finished outline stored: the archive's own `sections` object,
        // else (an archive written before archives held outlines) the outline is built
        // from the archive's entries once, gaps skipped.
        Some(a) => match state
            .archive
            .for_url(project, &a.stream_url)
            .read_sections(&a.stream_url)
            .await?
        {
            Some(archived) => o = archived,
            None => {
                let mut source =
                    crate::http::entries::EntrySource::new(state, project, path, stream);
                loop {
                    let range = ReadRange {
                        from: o.fed_to,
                        end: i64::MAX as u64,
                        count: ARCHIVE_PAGE,
                        bytes: 16 << 20,
                        contiguous: false,
                    };
                    let (records, next) = source.read_records(range).await?;
                    if records.is_empty() || next <= o.fed_to {
                        break;
                    }
                    o.feed_records(&records, timestamp, false)?;
                    o.fed_to = o.fed_to.max(next);
                }
                o.finish();
            }
        },
    }
    if stored.as_ref() != Some(&o) {
        let (db, p, id, saved) = (
            state.store.clone(),
            project.to_owned(),
            stream.id.clone(),
            o.clone(),
        );
        // The outline is derived data: a reader that cannot save it still answers.
        if let Err(e) =
            blocking(move || db.write(|c| store::save_outline(c, &p, &id, &saved, now_us()))).await
        {
            tracing::debug!(error = ?e, "saving a section outline failed");
        }
    }
    Ok(o)
}
