//! Writing one archive: three multipart uploads fed as entries arrive (no staging copy),
//! published only by `finish`; `abort` (or dropping the writer) leaves nothing visible.

use logdog_schema::chunk::view;
use logdog_schema::wire::{Content, Descriptor, Entry};
use object_store::{ObjectStoreExt, WriteMultipart};

use super::{ArchiveError, ArchiveStore, Written, ENTRIES_MAGIC, INDEX_MAGIC};

/// Parts each upload may have in flight before `ready` waits.
const PARTS_IN_FLIGHT: usize = 4;

/// One object being uploaded.
struct Upload {
    w: WriteMultipart,
    size: u64,
}

impl Upload {
    async fn start(store: &ArchiveStore, rel: &str) -> Result<Self, ArchiveError> {
        let upload = store.inner.objects.put_multipart(&store.key(rel)).await?;
        Ok(Self {
            w: WriteMultipart::new(upload),
            size: 0,
        })
    }

    fn write(&mut self, b: &[u8]) {
        self.w.write(b);
        self.size += b.len() as u64;
    }
}

/// Builds one archive, streaming its objects to the store.
pub struct ArchiveWriter {
    store: ArchiveStore,
    /// `project/id/attempt`: where the objects go.
    rel: String,
    entries: Upload,
    index: Upload,
    data: Upload,
    count: u64,
    /// Index every (entries, bytes).
    every: (u64, u64),
    /// Entries and bytes since the last index record.
    since_index: (u64, u64),
    /// The last entry's (index, offset, indexed), to close the index with.
    last: Option<(u64, u64, bool)>,
}

impl ArchiveWriter {
    pub(super) async fn start(
        store: ArchiveStore,
        rel: String,
        descriptor: &Descriptor,
        every: (u64, u64),
    ) -> Result<Self, ArchiveError> {
        let entries = Upload::start(&store, &format!("{rel}/entries")).await?;
        let index = Upload::start(&store, &format!("{rel}/index")).await?;
        let data = Upload::start(&store, &format!("{rel}/data")).await?;
        let mut w = Self {
            store,
            rel,
            entries,
            index,
            data,
            count: 0,
            every,
            since_index: (0, 0),
            last: None,
        };
        w.entries.write(ENTRIES_MAGIC);
        w.index.write(INDEX_MAGIC);
        let d = serde_json::to_vec(descriptor).expect("descriptor serialises");
        w.entries.write(&(d.len() as u32).to_le_bytes());
        w.entries.write(&d);
        Ok(w)
    }

    fn index_record(&mut self, stream_index: u64, offset: u64) {
        self.index.write(&stream_index.to_le_bytes());
        self.index.write(&offset.to_le_bytes());
    }

    /// Appends the next entry (indices must increase). Buffers; `ready` waits for the
    /// uploads to catch up.
    pub fn push(&mut self, e: &Entry) -> Result<(), ArchiveError> {
        // The same record as Get's binary form (`wire::entry_record`).
        self.push_record(e, &logdog_schema::wire::entry_record(e))
    }

    /// `push` for an entry whose record (`wire::entry_record`) the caller already holds,
    /// as a binary Get answered it: the bytes are copied, not encoded again.
    pub fn push_record(&mut self, e: &Entry, rec: &[u8]) -> Result<(), ArchiveError> {
        self.push_parts(e.stream_index, rec, |data| match &e.content {
            Content::Text(lines) => {
                for l in lines {
                    data.write(l.value.as_bytes());
                    data.write(l.delimiter.as_bytes());
                }
            }
            Content::Binary(d) | Content::Datagram { data: d, .. } => data.write(d),
        })
    }

    /// `push_record` from a borrowed view of the record (nothing decoded into owned
    /// values): what the archivist does with the records a binary Get answered.
    pub fn push_view(&mut self, e: &view::Entry<'_>, rec: &[u8]) -> Result<(), ArchiveError> {
        if let view::Content::Text(lines) = &e.content {
            if let Some(l) = lines
                .iter()
                .find(|l| !matches!(l.delimiter, "\n" | "\r\n" | ""))
            {
                return Err(ArchiveError::Corrupt(format!(
                    "entry {} has the line delimiter {:?}",
                    e.stream_index, l.delimiter
                )));
            }
        }
        self.push_parts(e.stream_index, rec, |data| match &e.content {
            view::Content::Text(lines) => {
                for l in lines {
                    data.write(l.value.as_bytes());
                    data.write(l.delimiter.as_bytes());
                }
            }
            view::Content::Binary(d) | view::Content::Datagram { data: d, .. } => data.write(d),
        })
    }

    /// The record of entry `stream_index` into the entries object (and the index when
    /// due); its payload into the data object by `data`.
    fn push_parts(
        &mut self,
        stream_index: u64,
        rec: &[u8],
        data: impl FnOnce(&mut Upload),
    ) -> Result<(), ArchiveError> {
        if self.last.is_some_and(|(i, _, _)| stream_index <= i) {
            return Err(ArchiveError::Corrupt(format!(
                "entry {stream_index} is out of order"
            )));
        }
        let at = self.entries.size;
        self.entries.write(rec);
        let due = self.count == 0
            || self.since_index.0 >= self.every.0
            || self.since_index.1 >= self.every.1;
        if due {
            self.index_record(stream_index, at);
            self.since_index = (0, 0);
        }
        self.since_index.0 += 1;
        self.since_index.1 += rec.len() as u64;
        self.last = Some((stream_index, at, due));
        self.count += 1;
        data(&mut self.data);
        Ok(())
    }

    /// Waits until the uploads have few enough parts in flight (bounded memory).
    pub async fn ready(&mut self) -> Result<(), ArchiveError> {
        for u in [&mut self.entries, &mut self.data] {
            u.w.wait_for_capacity(PARTS_IN_FLIGHT).await?;
        }
        Ok(())
    }

    /// Completes the three uploads: only now do the objects appear.
    pub async fn finish(mut self) -> Result<Written, ArchiveError> {
        if let Some((i, at, false)) = self.last {
            self.index_record(i, at);
        }
        let (entries, index, data) = (self.entries, self.index, self.data);
        let sizes = (entries.size, index.size, data.size);
        entries.w.finish().await?;
        index.w.finish().await?;
        data.w.finish().await?;
        let url = |f: &str| self.store.url(&format!("{}/{f}", self.rel));
        Ok(Written {
            stream_url: url("entries"),
            stream_size: sizes.0,
            index_url: url("index"),
            index_size: sizes.1,
            data_url: url("data"),
            data_size: sizes.2,
            log_entry_count: self.count,
        })
    }

    /// Gives the attempt up: the uploads are aborted, nothing becomes visible.
    pub async fn abort(self) {
        for u in [self.entries, self.index, self.data] {
            let _ = u.w.abort().await;
        }
    }
}
