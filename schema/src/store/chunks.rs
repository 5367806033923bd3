//! Log chunks: intermediate log data, one row per committed run of consecutive entries;
//! reads, compaction, and release after archival.

use diesel::prelude::*;

use super::{AnyConnection, StoreError};
use crate::models::*;
use crate::schema::log_chunks;

/// Releases a stream's intermediate data (after its archive is written).
pub fn delete_chunks(conn: &mut AnyConnection, project: &str, id: &str) -> Result<(), StoreError> {
    diesel::delete(
        log_chunks::table
            .filter(log_chunks::project.eq(project))
            .filter(log_chunks::stream_id.eq(id)),
    )
    .execute(conn)?;
    Ok(())
}

/// A stored run of entries, without its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkSpan {
    pub first_index: u64,
    pub count: u64,
    pub bytes: u64,
    pub end_sequence: u64,
}

/// The spans of the chunks that end above `from_index`, in index order.
pub fn chunk_spans(
    conn: &mut AnyConnection,
    project: &str,
    id: &str,
    from_index: u64,
) -> Result<Vec<ChunkSpan>, StoreError> {
    let rows: Vec<(i64, i64, i64, i64)> = log_chunks::table
        .filter(log_chunks::project.eq(project))
        .filter(log_chunks::stream_id.eq(id))
        .filter((log_chunks::first_index + log_chunks::count).gt(from_index as i64))
        .order(log_chunks::first_index.asc())
        .select((
            log_chunks::first_index,
            log_chunks::count,
            log_chunks::bytes,
            log_chunks::end_sequence,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(f, c, b, s)| ChunkSpan {
            first_index: f as u64,
            count: c as u64,
            bytes: b as u64,
            end_sequence: s as u64,
        })
        .collect())
}

/// The chunks holding entries in `[from_index, to_index)`, in index order, payload included.
pub fn read_chunks(
    conn: &mut AnyConnection,
    project: &str,
    id: &str,
    from_index: u64,
    to_index: u64,
    max_rows: i64,
) -> Result<Vec<ChunkRow>, StoreError> {
    Ok(log_chunks::table
        .filter(log_chunks::project.eq(project))
        .filter(log_chunks::stream_id.eq(id))
        .filter((log_chunks::first_index + log_chunks::count).gt(from_index as i64))
        .filter(log_chunks::first_index.lt(to_index as i64))
        .order(log_chunks::first_index.asc())
        .limit(max_rows)
        .select(ChunkRow::as_select())
        .load(conn)?)
}

pub fn insert_chunk(conn: &mut AnyConnection, row: &ChunkRow) -> Result<(), StoreError> {
    diesel::insert_into(log_chunks::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

/// Replaces the chunks of `[first, end)` by one chunk holding all their entries. Only
/// the owner of the stream calls it, so nothing is inserted in that range meanwhile.
pub fn compact_chunks(
    conn: &mut AnyConnection,
    project: &str,
    id: &str,
    first: u64,
    end: u64,
) -> Result<usize, StoreError> {
    let rows = read_chunks(conn, project, id, first, end, i64::MAX)?;
    let rows: Vec<_> = rows
        .into_iter()
        .filter(|r| r.first_index as u64 >= first && (r.first_index + r.count) as u64 <= end)
        .collect();
    if rows.len() < 2 {
        return Ok(0);
    }
    // The merged run must be contiguous, or it is not one chunk.
    if rows
        .windows(2)
        .any(|w| w[1].first_index != w[0].first_index + w[0].count)
    {
        return Ok(0);
    }
    let data = crate::chunk::concat(&rows.iter().map(|r| &r.data[..]).collect::<Vec<_>>())
        .map_err(StoreError::Corrupt)?;
    let count: i64 = rows.iter().map(|r| r.count).sum();
    let bytes: i64 = rows.iter().map(|r| r.bytes).sum();
    let end_sequence = rows.last().map_or(0, |r| r.end_sequence);
    let first_index = rows[0].first_index;
    diesel::delete(
        log_chunks::table
            .filter(log_chunks::project.eq(project))
            .filter(log_chunks::stream_id.eq(id))
            .filter(
                log_chunks::first_index
                    .eq_any(rows.iter().map(|r| r.first_index).collect::<Vec<_>>()),
            ),
    )
    .execute(conn)?;
    insert_chunk(
        conn,
        &ChunkRow {
            project: project.to_owned(),
            stream_id: id.to_owned(),
            first_index,
            count,
            bytes,
            end_sequence,
            data,
        },
    )?;
    Ok(rows.len())
}

/// Which entries a read wants.
#[derive(Debug, Clone, Copy)]
pub struct ReadRange {
    pub from: u64,
    /// Exclusive upper bound.
    pub end: u64,
    pub count: usize,
    /// Entries are added while their payload total stays within it (the first always).
    pub bytes: u64,
    /// Stop at the first missing index; otherwise skip gaps.
    pub contiguous: bool,
}

/// Where a read is: which entries it has taken, and what `range` still allows.
struct Pager {
    range: ReadRange,
    cur: u64,
    total: u64,
    taken: usize,
}

/// What a read does with the next stored entry.
enum Admit {
    /// Before where the read is (an earlier chunk's overlap).
    Skip,
    Take,
    /// Past the end, a gap of a contiguous read, or over the count or byte cap.
    Stop,
}

impl Pager {
    fn admit(&mut self, stream_index: u64, size: u64) -> Admit {
        let r = &self.range;
        if stream_index < self.cur {
            return Admit::Skip;
        }
        if stream_index >= r.end
            || (r.contiguous && stream_index != self.cur)
            || self.taken >= r.count
            || (self.taken > 0 && self.total + size > r.bytes)
        {
            return Admit::Stop;
        }
        self.total += size;
        self.cur = stream_index + 1;
        self.taken += 1;
        Admit::Take
    }

    /// Takes a whole chunk (`count` consecutive entries from `first`, `bytes` of payload)
    /// when every one of its entries would be taken; false (nothing taken) otherwise.
    fn admit_whole(&mut self, first: u64, count: u64, bytes: u64) -> bool {
        let r = &self.range;
        let fits = first >= self.cur
            && (!r.contiguous || first == self.cur)
            && first + count <= r.end
            && self.taken as u64 + count <= r.count as u64
            && self.total + bytes <= r.bytes;
        if fits {
            self.total += bytes;
            self.cur = first + count;
            self.taken += count as usize;
        }
        fits
    }
}

/// Walks the chunks `range` covers, a page of rows at a time, handing each chunk's data to
/// `each` until it answers false or the range is done.
fn walk_chunks(
    conn: &mut AnyConnection,
    project: &str,
    id: &str,
    range: ReadRange,
    mut each: impl FnMut(&mut ChunkRow, &mut Pager) -> Result<bool, StoreError>,
) -> Result<(), StoreError> {
    const PAGE_ROWS: i64 = 16;
    let mut pager = Pager {
        range,
        cur: range.from,
        total: 0,
        taken: 0,
    };
    while pager.taken < range.count && pager.cur < range.end {
        let rows = read_chunks(conn, project, id, pager.cur, range.end, PAGE_ROWS)?;
        if rows.is_empty() {
            break;
        }
        for mut row in rows {
            if !each(&mut row, &mut pager)? {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Reads the entries `range` asks for, a page of chunks at a time.
pub fn read_entries(
    conn: &mut AnyConnection,
    project: &str,
    id: &str,
    range: ReadRange,
) -> Result<Vec<crate::wire::Entry>, StoreError> {
    let mut out = Vec::new();
    walk_chunks(conn, project, id, range, |row, pager| {
        let entries = crate::chunk::decode(&row.data).map_err(StoreError::Corrupt)?;
        for e in entries {
            match pager.admit(e.stream_index, e.content.payload_bytes()) {
                Admit::Skip => {}
                Admit::Take => out.push(e),
                Admit::Stop => return Ok(false),
            }
        }
        Ok(true)
    })?;
    Ok(out)
}

/// The same entries as `read_entries`, as Get's binary records (u32 LE length, then the
/// entry's postcard encoding) in pieces to send one after another, with the last index
/// taken. A chunk the read takes whole is one piece, its stored bytes as they came from the
/// database (not copied); only chunks cut by the range or a cap are walked entry by entry
/// (without decoding them) and their records copied.
pub fn read_records(
    conn: &mut AnyConnection,
    project: &str,
    id: &str,
    range: ReadRange,
) -> Result<(Vec<bytes::Bytes>, Option<u64>), StoreError> {
    let (mut out, mut last) = (Vec::new(), None);
    walk_chunks(conn, project, id, range, |row, pager| {
        let (first, count) = (row.first_index as u64, row.count as u64);
        if crate::chunk::record_bytes(&row.data).is_some()
            && count > 0
            && pager.admit_whole(first, count, row.bytes as u64)
        {
            out.push(bytes::Bytes::from(std::mem::take(&mut row.data)).slice(1..));
            last = Some(first + count - 1);
            return Ok(true);
        }
        let mut copied = Vec::new();
        let mut more = true;
        for r in crate::chunk::records(&row.data).map_err(StoreError::Corrupt)? {
            match pager.admit(r.stream_index, r.payload_bytes) {
                Admit::Skip => {}
                Admit::Take => {
                    crate::wire::push_encoded(&mut copied, r.encoded);
                    last = Some(r.stream_index);
                }
                Admit::Stop => {
                    more = false;
                    break;
                }
            }
        }
        if !copied.is_empty() {
            out.push(copied.into());
        }
        Ok(more)
    })?;
    Ok((out, last))
}
