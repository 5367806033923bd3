//! Writing one archive: three multipart uploads fed as entries arrive (no staging copy),
//! published only by `finish`; `abort` (or dropping the writer) leaves nothing visible.
//! A text stream's outline of sections is built from the same entries and written as a
//! fourth, small object (`sections`) before the three are completed.

use logdog_schema::chunk::view;
use logdog_schema::store::StoredOutline;
use logdog_schema::wire::{Content, Descriptor, Entry, StreamType};
use object_store::{ObjectStoreExt, WriteMultipart};

use super::{sections_object, ArchiveError, ArchiveStore, Written, ENTRIES_MAGIC, INDEX_MAGIC};

/// Parts each upload may have in flight before `ready` waits.
const PARTS_IN_FLIGHT: usize = 4;

/// Bytes gathered before they are handed to the upload as one piece.
const FLUSH_BYTES: usize = 1 << 20;

/// One object being uploaded: small writes gather in `buf`, handed over a mebibyte at a
/// time without another copy.
struct Upload {
    w: WriteMultipart,
    buf: Vec<u8>,
    size: u64,
}

impl Upload {
    async fn start(store: &ArchiveStore, rel: &str) -> Result<Self, ArchiveError> {
        let upload = store.inner.objects.put_multipart(&store.key(rel)).await?;
        Ok(Self {
            w: WriteMultipart::new(upload),
            buf: Vec::with_capacity(FLUSH_BYTES),
            size: 0,
        })
    }

    fn write(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
        self.size += b.len() as u64;
        if self.buf.len() >= FLUSH_BYTES {
            self.flush();
        }
    }

    /// Appends `b` as it is (after what `write` gathered); a small piece is copied.
    fn put(&mut self, b: bytes::Bytes) {
        if b.len() < FLUSH_BYTES / 16 {
            return self.write(&b);
        }
        self.flush();
        self.size += b.len() as u64;
        self.w.put(b);
    }

    fn flush(&mut self) {
        if !self.buf.is_empty() {
            let full = std::mem::replace(&mut self.buf, Vec::with_capacity(FLUSH_BYTES));
            self.w.put(full.into());
        }
    }

    async fn finish(mut self) -> Result<(), ArchiveError> {
        self.flush();
        self.w.finish().await?;
        Ok(())
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
    /// The size of the entries object once the records noted so far are in it.
    pending: u64,
    /// A text stream's outline, fed every entry (gaps skipped), and its descriptor time.
    outline: Option<StoredOutline>,
    timestamp_us: i64,
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
            pending: 0,
            outline: (descriptor.stream_type == StreamType::Text).then(StoredOutline::default),
            timestamp_us: descriptor.timestamp,
        };
        w.entries.write(ENTRIES_MAGIC);
        w.index.write(INDEX_MAGIC);
        let d = serde_json::to_vec(descriptor).expect("descriptor serialises");
        w.entries.write(&(d.len() as u32).to_le_bytes());
        w.entries.write(&d);
        w.pending = w.entries.size;
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
        let rec = logdog_schema::wire::entry_record(e);
        self.note(e.stream_index, rec.len())?;
        self.entries.write(&rec);
        if let Some(o) = &mut self.outline {
            let (view, _) = view::record(&rec)
                .map_err(ArchiveError::Corrupt)?
                .expect("a whole record");
            o.feed_entry(&view, self.timestamp_us);
        }
        match &e.content {
            Content::Text(lines) => {
                for l in lines {
                    self.data.write(l.value.as_bytes());
                    self.data.write(l.delimiter.as_bytes());
                }
            }
            Content::Binary(d) | Content::Datagram { data: d, .. } => self.data.write(d),
        }
        Ok(())
    }

    /// Appends the entries of `records` (binary records, `wire::entry_record` one after
    /// another, as a binary Get answers and chunks hold them), in order after those pushed
    /// before. Each record is read in place for its index and payload; the records go into
    /// the entries object as they are, without a copy.
    pub fn push_records(&mut self, records: bytes::Bytes) -> Result<(), ArchiveError> {
        let mut rest = &records[..];
        while !rest.is_empty() {
            let (e, used) = view::record(rest)
                .map_err(ArchiveError::Corrupt)?
                .ok_or_else(|| ArchiveError::Corrupt("a record is cut short".into()))?;
            self.note(e.stream_index, used)?;
            let data = &mut self.data;
            e.content.for_each_piece(|p| data.write(p));
            if let Some(o) = &mut self.outline {
                o.feed_entry(&e, self.timestamp_us);
            }
            rest = &rest[used..];
        }
        self.entries.put(records);
        Ok(())
    }

    /// Accounts for the next record (entry `stream_index`, `len` bytes), about to be
    /// appended to the entries object: its order, and its index record when one is due.
    fn note(&mut self, stream_index: u64, len: usize) -> Result<(), ArchiveError> {
        if self.last.is_some_and(|(i, _, _)| stream_index <= i) {
            return Err(ArchiveError::Corrupt(format!(
                "entry {stream_index} is out of order"
            )));
        }
        let at = self.pending;
        let due = self.count == 0
            || self.since_index.0 >= self.every.0
            || self.since_index.1 >= self.every.1;
        if due {
            self.index_record(stream_index, at);
            self.since_index = (0, 0);
        }
        self.since_index.0 += 1;
        self.since_index.1 += len as u64;
        self.last = Some((stream_index, at, due));
        self.count += 1;
        self.pending += len as u64;
        Ok(())
    }

    /// Waits until the uploads have few enough parts in flight (bounded memory).
    pub async fn ready(&mut self) -> Result<(), ArchiveError> {
        for u in [&mut self.entries, &mut self.data] {
            u.flush();
            u.w.wait_for_capacity(PARTS_IN_FLIGHT).await?;
        }
        Ok(())
    }

    /// Completes the three uploads: only now do the objects appear.
    pub async fn finish(mut self) -> Result<Written, ArchiveError> {
        if let Some((i, at, false)) = self.last {
            self.index_record(i, at);
        }
        if let Some(mut o) = self.outline.take() {
            o.finish();
            let key = self.store.key(&format!("{}/sections", self.rel));
            self.store
                .inner
                .objects
                .put(&key, sections_object(&o).into())
                .await?;
        }
        let (entries, index, data) = (self.entries, self.index, self.data);
        let sizes = (entries.size, index.size, data.size);
        entries.finish().await?;
        index.finish().await?;
        data.finish().await?;
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
