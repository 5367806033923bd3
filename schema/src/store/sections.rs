//! Section outlines: each text stream's outline of collapsible sections
//! ([`crate::sections::Outline`]), kept in `stream_sections` as derived data. A row holds
//! the outline of the entries `[0, fed_to)`; whoever finds it behind (the stream actor
//! after commits, a reader of the outline, the archival transaction) feeds it the entries
//! after `fed_to` from storage and saves it forward. A save never moves a row back, so
//! racing writers are harmless.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Binary, Bool, Text};

use super::{AnyConnection, ReadRange, StoreError};
use crate::chunk::view;
use crate::schema::stream_sections;
use crate::sections::Outline;

/// Entries read per page while catching an outline up.
const PAGE_ENTRIES: usize = 10_000;
const PAGE_BYTES: u64 = 16 << 20;

/// An outline and how far into its stream it has been fed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredOutline {
    pub outline: Outline,
    /// The entries `[0, fed_to)` are in the outline (a gap skipped at archival included).
    pub fed_to: u64,
    /// Final: the stream's last entry is in it and open sections were closed at its end.
    pub finished: bool,
}

impl StoredOutline {
    /// Feeds the entries of `records` (Get's binary records, in index order) that start at
    /// `fed_to`; with `contiguous` it stops at the first missing index, else it skips
    /// gaps. `timestamp_us` is the stream's descriptor time (entry times are offsets from
    /// it). Returns false when it stopped at a gap.
    pub fn feed_records(
        &mut self,
        records: &[bytes::Bytes],
        timestamp_us: i64,
        contiguous: bool,
    ) -> Result<bool, StoreError> {
        for piece in records {
            let mut rest: &[u8] = piece;
            while let Some((body, after)) = view::split_record(rest) {
                rest = after;
                let (e, _) = view::Entry::scan(body).map_err(StoreError::Corrupt)?;
                if e.stream_index < self.fed_to {
                    continue;
                }
                if e.stream_index > self.fed_to && contiguous {
                    return Ok(false);
                }
                self.feed_entry(&e, timestamp_us);
            }
        }
        Ok(true)
    }

    /// Feeds one entry read in place (one after `fed_to`; those before it are ignored,
    /// a gap before it is skipped).
    pub fn feed_entry(&mut self, e: &view::Entry<'_>, timestamp_us: i64) {
        if e.stream_index < self.fed_to {
            return;
        }
        if let view::Content::Text(lines) = e.content {
            let time = timestamp_us.saturating_add(e.time_offset_us);
            let lines = lines.map(|l| {
                (
                    std::str::from_utf8(l.value).unwrap_or(""),
                    std::str::from_utf8(l.delimiter).unwrap_or("\n"),
                )
            });
            self.outline
                .push_entry_numbered(e.stream_index, e.sequence, time, lines);
        }
        self.fed_to = e.stream_index + 1;
    }

    /// Feeds one entry held in memory, as [`Self::feed_entry`] does one read in place.
    pub fn feed_wire_entry(&mut self, e: &crate::wire::Entry, timestamp_us: i64) {
        if e.stream_index < self.fed_to {
            return;
        }
        if let crate::wire::Content::Text(lines) = &e.content {
            let time = timestamp_us.saturating_add(e.time_offset_us);
            let lines = lines
                .iter()
                .map(|l| (l.value.as_str(), l.delimiter.as_str()));
            self.outline
                .push_entry_numbered(e.stream_index, e.sequence, time, lines);
        }
        self.fed_to = e.stream_index + 1;
    }

    /// Closes the outline at the stream's end (see [`Outline::finish`]).
    pub fn finish(&mut self) {
        self.outline.finish();
        self.finished = true;
    }
}

/// The stored outline of a stream, if one was saved.
pub fn get_outline(
    conn: &mut AnyConnection,
    project: &str,
    id: &str,
) -> Result<Option<StoredOutline>, StoreError> {
    let row: Option<(i64, bool, Vec<u8>)> = stream_sections::table
        .find((project, id))
        .select((
            stream_sections::fed_to,
            stream_sections::finished,
            stream_sections::state,
        ))
        .first(conn)
        .optional()?;
    let Some((fed_to, finished, state)) = row else {
        return Ok(None);
    };
    let outline = Outline::from_state_bytes(&state)
        .ok_or_else(|| StoreError::Corrupt(format!("the section outline of {id} is invalid")))?;
    Ok(Some(StoredOutline {
        outline,
        fed_to: fed_to as u64,
        finished,
    }))
}

/// Saves `o` unless the stored row is as far or further (a finished row is never
/// replaced). Returns whether it was written.
pub fn save_outline(
    conn: &mut AnyConnection,
    project: &str,
    id: &str,
    o: &StoredOutline,
    now_us: i64,
) -> Result<bool, StoreError> {
    let state = o.outline.state_bytes();
    let fed_to = o.fed_to as i64;
    // INSERT … ON CONFLICT DO NOTHING is the same on both databases but not in diesel's
    // portable builder; only the placeholders differ.
    const INSERT: &str = "INSERT INTO stream_sections \
        (project, stream_id, fed_to, finished, state, updated_us) \
        VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING";
    const INSERT_PG: &str = "INSERT INTO stream_sections \
        (project, stream_id, fed_to, finished, state, updated_us) \
        VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING";
    macro_rules! insert {
        ($c:expr, $sql:expr) => {
            diesel::sql_query($sql)
                .bind::<Text, _>(project)
                .bind::<Text, _>(id)
                .bind::<BigInt, _>(fed_to)
                .bind::<Bool, _>(o.finished)
                .bind::<Binary, _>(&state)
                .bind::<BigInt, _>(now_us)
                .execute($c)?
        };
    }
    let inserted = match conn {
        AnyConnection::Sqlite(c) => insert!(c, INSERT),
        AnyConnection::Postgresql(c) => insert!(c, INSERT_PG),
    };
    if inserted > 0 {
        return Ok(true);
    }
    let set = (
        stream_sections::fed_to.eq(fed_to),
        stream_sections::finished.eq(o.finished),
        stream_sections::state.eq(&state),
        stream_sections::updated_us.eq(now_us),
    );
    let row = stream_sections::table
        .find((project, id))
        .filter(stream_sections::finished.eq(false));
    // Forward only: further along, or as far and now finished.
    let updated = if o.finished {
        diesel::update(row.filter(stream_sections::fed_to.le(fed_to)))
            .set(set)
            .execute(conn)?
    } else {
        diesel::update(row.filter(stream_sections::fed_to.lt(fed_to)))
            .set(set)
            .execute(conn)?
    };
    Ok(updated > 0)
}

/// Removes the outlines of `ids` (their streams are gone).
pub fn delete_outlines(
    conn: &mut AnyConnection,
    project: &str,
    ids: &[String],
) -> Result<(), StoreError> {
    for chunk in ids.chunks(500) {
        diesel::delete(
            stream_sections::table
                .filter(stream_sections::project.eq(project))
                .filter(stream_sections::stream_id.eq_any(chunk)),
        )
        .execute(conn)?;
    }
    Ok(())
}

/// Feeds `o` the entries `[o.fed_to, end)` held in intermediate storage, a page at a time;
/// with `contiguous` it stops at the first missing entry. Returns whether it advanced.
pub fn catch_up_outline(
    conn: &mut AnyConnection,
    project: &str,
    id: &str,
    o: &mut StoredOutline,
    end: u64,
    timestamp_us: i64,
    contiguous: bool,
) -> Result<bool, StoreError> {
    let start = o.fed_to;
    while o.fed_to < end && !o.finished {
        let range = ReadRange {
            from: o.fed_to,
            end,
            count: PAGE_ENTRIES,
            bytes: PAGE_BYTES,
            contiguous,
        };
        let (records, last) = super::read_records(conn, project, id, range)?;
        let Some(last) = last else { break };
        if !o.feed_records(&records, timestamp_us, contiguous)? {
            break;
        }
        o.fed_to = o.fed_to.max(last + 1);
    }
    Ok(o.fed_to > start)
}

/// Brings a text stream's outline to its end and finishes it, gaps skipped: run in the
/// transaction that records the stream's archive and releases its intermediate data, so
/// the outline stays with the stream once the chunks are gone.
pub fn finish_outline(
    conn: &mut AnyConnection,
    project: &str,
    id: &str,
    timestamp_us: i64,
    now_us: i64,
) -> Result<(), StoreError> {
    let mut o = get_outline(conn, project, id)?.unwrap_or_default();
    if o.finished {
        return Ok(());
    }
    catch_up_outline(
        conn,
        project,
        id,
        &mut o,
        i64::MAX as u64,
        timestamp_us,
        false,
    )?;
    o.finish();
    save_outline(conn, project, id, &o, now_us)?;
    Ok(())
}
