//! Reading archives through ranged reads: the sparse index fetched once and cached (bounded
//! by bytes), then one read of the entries object from the indexed offset at or before the
//! first entry asked for, consumed only as far as the page needs.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::{Buf, BytesMut};
use futures::StreamExt as _;
use logdog_schema::chunk::view;
use logdog_schema::store::ReadRange;
use logdog_schema::wire::{Descriptor, Entry};
use object_store::{GetOptions, GetRange, ObjectStore as _};

use super::{ArchiveError, ArchiveStore, ENTRIES_MAGIC, INDEX_MAGIC};

/// (stream index, byte offset) pairs.
type Index = Arc<Vec<(u64, u64)>>;

/// Parsed indexes by URL, the oldest dropped once their bytes pass the bound.
pub(super) struct IndexCache {
    max_bytes: usize,
    inner: Mutex<CacheInner>,
}

#[derive(Default)]
struct CacheInner {
    by_url: HashMap<String, Index>,
    order: VecDeque<String>,
    bytes: usize,
}

impl IndexCache {
    pub(super) fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            inner: Mutex::default(),
        }
    }

    pub(super) fn get(&self, url: &str) -> Option<Index> {
        let c = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        c.by_url.get(url).cloned()
    }

    pub(super) fn insert(&self, url: &str, index: Index) {
        let size = index.len() * 16;
        if size > self.max_bytes {
            return;
        }
        let mut c = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if c.by_url.insert(url.to_owned(), index).is_none() {
            c.order.push_back(url.to_owned());
            c.bytes += size;
        }
        while c.bytes > self.max_bytes {
            let Some(old) = c.order.pop_front() else {
                break;
            };
            if let Some(i) = c.by_url.remove(&old) {
                c.bytes -= i.len() * 16;
            }
        }
    }
}

/// Parses the sparse index: (stream index, byte offset) pairs.
pub fn parse_index(bytes: &[u8]) -> Result<Vec<(u64, u64)>, ArchiveError> {
    if bytes.len() < 8 || &bytes[..8] != INDEX_MAGIC || !(bytes.len() - 8).is_multiple_of(16) {
        return Err(ArchiveError::Corrupt("bad index file".into()));
    }
    Ok(bytes[8..]
        .chunks_exact(16)
        .map(|r| {
            (
                u64::from_le_bytes(r[..8].try_into().unwrap()),
                u64::from_le_bytes(r[8..].try_into().unwrap()),
            )
        })
        .collect())
}

/// How much of the entries object one ranged GET asks for. A reader that goes on past it
/// asks for the next window; one that stops early leaves the rest unread.
const WINDOW: u64 = 64 << 20;

/// Records read through ranged GETs of the entries object, a window at a time, pulled
/// from the body only as far as needed. Once a reader is halfway through a window the
/// next one is asked for, so a reader going on finds it under way.
pub(super) struct Records {
    store: ArchiveStore,
    key: object_store::path::Path,
    url: String,
    /// The object's size, from the first answer.
    size: u64,
    /// Where the next window starts.
    next_window: u64,
    /// Bytes of the current window still to come.
    window_left: u64,
    body: futures::stream::BoxStream<'static, object_store::Result<bytes::Bytes>>,
    /// The next window, asked for ahead.
    ahead: Option<tokio::task::JoinHandle<object_store::Result<object_store::GetResult>>>,
    buf: BytesMut,
}

impl Drop for Records {
    fn drop(&mut self) {
        if let Some(a) = self.ahead.take() {
            a.abort();
        }
    }
}

impl Records {
    /// Reads the object at `url` from byte `offset`.
    async fn open(store: &ArchiveStore, url: &str, offset: u64) -> Result<Self, ArchiveError> {
        let key = store.key_of_url(url)?;
        let mut r = Self {
            store: store.clone(),
            key,
            url: url.to_owned(),
            size: u64::MAX,
            next_window: offset,
            window_left: 0,
            body: futures::stream::empty().boxed(),
            ahead: None,
            buf: BytesMut::new(),
        };
        r.open_window().await?;
        Ok(r)
    }

    /// The ranged GET of the window from `next_window`.
    fn get_window(
        &self,
    ) -> impl std::future::Future<Output = object_store::Result<object_store::GetResult>> + Send + 'static
    {
        let end = self.next_window.saturating_add(WINDOW).min(self.size);
        let opts = GetOptions {
            range: Some(match end {
                u64::MAX => GetRange::Offset(self.next_window),
                end => GetRange::Bounded(self.next_window..end),
            }),
            ..Default::default()
        };
        let (objects, key) = (self.store.inner.objects.clone(), self.key.clone());
        async move { objects.get_opts(&key, opts).await }
    }

    /// Moves on to the next window (asked for ahead, or now); false when the object has
    /// no more.
    async fn open_window(&mut self) -> Result<bool, ArchiveError> {
        if self.next_window >= self.size {
            return Ok(false);
        }
        let answer = match self.ahead.take() {
            // A read ahead that did not finish (its runtime stopped) is the store not
            // answering: 503, as any other.
            Some(ahead) => ahead.await.unwrap_or_else(|e| {
                Err(object_store::Error::Generic {
                    store: "archive",
                    source: Box::new(e),
                })
            }),
            None => self.get_window().await,
        };
        let r = match answer {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Err(super::missing(&self.url)),
            Err(e) => return Err(e.into()),
        };
        self.size = r.meta.size;
        self.window_left = r.range.end - r.range.start;
        self.next_window = r.range.end;
        self.body = match r.payload {
            object_store::GetResultPayload::File(file, _) => file_stream(file, r.range),
            _ => r.into_stream(),
        };
        Ok(true)
    }

    /// At least `n` bytes buffered; false at the end of the object.
    async fn fill(&mut self, n: usize) -> Result<bool, ArchiveError> {
        while self.buf.len() < n {
            match self.body.next().await {
                Some(chunk) => {
                    let chunk = chunk?;
                    self.store.count_read(chunk.len());
                    self.buf.extend_from_slice(&chunk);
                    self.window_left = self.window_left.saturating_sub(chunk.len() as u64);
                    if self.ahead.is_none()
                        && self.window_left < WINDOW / 2
                        && self.next_window < self.size
                    {
                        self.ahead = Some(tokio::spawn(self.get_window()));
                    }
                }
                None => {
                    if !self.open_window().await? {
                        return Ok(false);
                    }
                }
            }
        }
        Ok(true)
    }

    async fn exact(&mut self, n: usize) -> Result<bytes::Bytes, ArchiveError> {
        if !self.fill(n).await? {
            return Err(ArchiveError::Corrupt(
                "the entries file is cut short".into(),
            ));
        }
        Ok(self.buf.split_to(n).freeze())
    }

    /// The length of the next record, buffered whole but not consumed; None at the end.
    async fn peek(&mut self) -> Result<Option<usize>, ArchiveError> {
        if let Some(len) = self.buffered() {
            return Ok(Some(len));
        }
        if !self.fill(4).await? {
            if self.buf.is_empty() {
                return Ok(None);
            }
            return Err(ArchiveError::Corrupt(
                "the entries file is cut short".into(),
            ));
        }
        let len = (&self.buf[..4]).get_u32_le() as usize;
        if !self.fill(4 + len).await? {
            return Err(ArchiveError::Corrupt(
                "the entries file is cut short".into(),
            ));
        }
        Ok(Some(len))
    }

    /// The length of the next record when it is buffered whole.
    fn buffered(&self) -> Option<usize> {
        self.buffered_after(0)
    }

    /// The length of the record `at` bytes into the buffer when it is buffered whole.
    fn buffered_after(&self, at: usize) -> Option<usize> {
        view::split_record(self.buf.get(at..)?).map(|(body, _)| body.len())
    }

    /// The next record, or None at the end.
    async fn next(&mut self) -> Result<Option<bytes::Bytes>, ArchiveError> {
        let Some(len) = self.peek().await? else {
            return Ok(None);
        };
        self.buf.advance(4);
        Ok(Some(self.buf.split_to(len).freeze()))
    }
}

/// The bytes `range` of a local file, a mebibyte per read on the blocking pool (the
/// crate's own stream reads 8 KiB per call, a thread hop for every 8 KiB).
pub(super) fn file_stream(
    file: std::fs::File,
    range: std::ops::Range<u64>,
) -> futures::stream::BoxStream<'static, object_store::Result<bytes::Bytes>> {
    use std::io::{Read as _, Seek as _};
    const READ: u64 = 1 << 20;
    let failed = |e: std::io::Error| object_store::Error::Generic {
        store: "LocalFileSystem",
        source: Box::new(e),
    };
    futures::stream::try_unfold(
        (file, range.start, range.end),
        move |(mut file, at, end)| async move {
            if at >= end {
                return Ok(None);
            }
            tokio::task::spawn_blocking(move || {
                file.seek(std::io::SeekFrom::Start(at)).map_err(failed)?;
                let mut buf = Vec::with_capacity((end - at).min(READ) as usize);
                let n = (&mut file)
                    .take((end - at).min(READ))
                    .read_to_end(&mut buf)
                    .map_err(failed)?;
                if n == 0 {
                    return Err(failed(std::io::ErrorKind::UnexpectedEof.into()));
                }
                Ok(Some((bytes::Bytes::from(buf), (file, at + n as u64, end))))
            })
            .await
            .map_err(|e| failed(std::io::Error::other(e)))?
        },
    )
    .boxed()
}

/// How many readers may wait, and for how long, for the Get that continues them.
const CURSORS: usize = 32;
const CURSOR_IDLE: std::time::Duration = std::time::Duration::from_secs(10);

/// Readers left where a read stopped, by (entries URL, the index a Get goes on from), so
/// the next page of a reader going through an archive continues the same ranged read
/// instead of starting another. Bounded by count and idle time.
#[derive(Default)]
pub(super) struct Cursors {
    inner: Mutex<Vec<(String, u64, std::time::Instant, Records)>>,
}

impl Cursors {
    fn take(&self, url: &str, from: u64) -> Option<Records> {
        let mut c = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let at = c.iter().position(|(u, i, ..)| u == url && *i == from)?;
        Some(c.swap_remove(at).3)
    }

    fn put(&self, url: &str, from: u64, records: Records) {
        let now = std::time::Instant::now();
        let mut c = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        c.retain(|(.., at, _)| now.duration_since(*at) < CURSOR_IDLE);
        if c.len() >= CURSORS {
            let oldest = (0..c.len()).min_by_key(|&i| c[i].2).expect("not empty");
            c.swap_remove(oldest);
        }
        c.push((url.to_owned(), from, now, records));
    }
}

/// The payload bytes of the whole records in `pieces`.
fn payload_bytes(pieces: &[bytes::Bytes]) -> Result<u64, ArchiveError> {
    let mut total = 0;
    for piece in pieces {
        let mut b = &piece[..];
        while let Some((body, rest)) = view::split_record(b) {
            let (e, _) = view::Entry::scan(body).map_err(ArchiveError::Corrupt)?;
            total += e.payload_bytes;
            b = rest;
        }
    }
    Ok(total)
}

impl ArchiveStore {
    /// The parsed index at `url`, from the cache when it is there.
    async fn index(&self, url: &str) -> Result<Index, ArchiveError> {
        if let Some(i) = self.inner.cache.get(url) {
            return Ok(i);
        }
        let index: Index = Arc::new(parse_index(&self.fetch(url).await?)?);
        self.inner.cache.insert(url, index.clone());
        Ok(index)
    }

    /// The entries `range` asks for, from an archive: the last indexed entry at or before
    /// `range.from` tells where to start one ranged read, which goes forward from there.
    pub async fn read_entries(
        &self,
        stream_url: &str,
        index_url: &str,
        range: ReadRange,
    ) -> Result<Vec<Entry>, ArchiveError> {
        let mut out = Vec::new();
        self.walk(stream_url, index_url, range, |body| {
            out.push(postcard::from_bytes(body).map_err(|e| ArchiveError::Corrupt(e.to_string()))?);
            Ok(())
        })
        .await?;
        Ok(out)
    }

    /// The same entries as `read_entries`, as Get's binary records: the archive's own
    /// bytes, neither decoded nor copied again (runs of whole records cut from the read
    /// buffer), with the last index taken. Each record is looked at only for its index
    /// (its first field); its payload size is bounded by its length, so entries are
    /// scanned for their exact size only once a page nears its bytes cap.
    pub async fn read_records(
        &self,
        stream_url: &str,
        index_url: &str,
        range: ReadRange,
    ) -> Result<(Vec<bytes::Bytes>, Option<u64>), ArchiveError> {
        let mut out: Vec<bytes::Bytes> = Vec::new();
        let Some(mut records) = self.open_at(stream_url, index_url, range.from).await? else {
            return Ok((out, None));
        };
        let (mut taken, mut last) = (0, None::<u64>);
        // `total`: the exact payload bytes of the records taken up to `out[exact..]`;
        // `upper`: the lengths of those taken after, a bound on their payload bytes.
        let (mut total, mut upper, mut exact) = (0u64, 0u64, 0usize);
        // Bytes at the front of the buffer taken but not yet cut off.
        let mut run = 0usize;
        let mut at_end = false;
        let cut = |records: &mut Records, run: &mut usize, out: &mut Vec<bytes::Bytes>| {
            if *run > 0 {
                out.push(records.buf.split_to(*run).freeze());
                *run = 0;
            }
        };
        while taken < range.count {
            let len = match records.buffered_after(run) {
                Some(len) => len,
                None => {
                    // Cut what is taken before reading on: the buffer is not moved with it.
                    cut(&mut records, &mut run, &mut out);
                    match records.peek().await? {
                        Some(len) => len,
                        None => {
                            at_end = true;
                            break;
                        }
                    }
                }
            };
            let mut b = &records.buf[run + 4..run + 4 + len];
            let index = view::varint(&mut b).map_err(ArchiveError::Corrupt)?;
            if index < range.from {
                cut(&mut records, &mut run, &mut out);
                records.buf.advance(4 + len);
                continue;
            }
            let expected = last.map_or(range.from, |l| l + 1);
            if index >= range.end || (range.contiguous && index != expected) {
                break;
            }
            if taken > 0 && total + upper + len as u64 > range.bytes {
                // Near the cap: the exact sizes of what is taken so far, then of this one.
                cut(&mut records, &mut run, &mut out);
                total += payload_bytes(&out[exact..])?;
                upper = 0;
                let rec = &records.buf[4..4 + len];
                let (e, _) = view::Entry::scan(rec).map_err(ArchiveError::Corrupt)?;
                if total + e.payload_bytes > range.bytes {
                    break;
                }
                total += e.payload_bytes;
                run = 4 + len;
                cut(&mut records, &mut run, &mut out);
                exact = out.len();
            } else {
                // Passed on as the archive holds it, as chunks taken whole from
                // intermediate storage are: the reader that decodes it checks it.
                upper += len as u64;
                run += 4 + len;
            }
            taken += 1;
            last = Some(index);
        }
        cut(&mut records, &mut run, &mut out);
        if let (Some(l), false) = (last, at_end) {
            self.inner.cursors.put(stream_url, l + 1, records);
        }
        Ok((out, last))
    }

    /// A reader of the entries object at the last indexed entry at or before `from`
    /// (or the one a previous page left there); None for an empty archive.
    async fn open_at(
        &self,
        stream_url: &str,
        index_url: &str,
        from: u64,
    ) -> Result<Option<Records>, ArchiveError> {
        if let Some(r) = self.inner.cursors.take(stream_url, from) {
            return Ok(Some(r));
        }
        let index = self.index(index_url).await?;
        let start = match index.partition_point(|(i, _)| *i <= from) {
            0 => match index.first() {
                Some(first) => first.1,
                None => return Ok(None),
            },
            n => index[n - 1].1,
        };
        Ok(Some(Records::open(self, stream_url, start).await?))
    }

    /// Hands the encoding of each entry `range` takes to `each`, in order; returns the
    /// last index taken.
    async fn walk(
        &self,
        stream_url: &str,
        index_url: &str,
        range: ReadRange,
        mut each: impl FnMut(&[u8]) -> Result<(), ArchiveError>,
    ) -> Result<Option<u64>, ArchiveError> {
        let Some(mut records) = self.open_at(stream_url, index_url, range.from).await? else {
            return Ok(None);
        };
        let (mut taken, mut total, mut last) = (0, 0u64, None::<u64>);
        let mut at_end = false;
        while taken < range.count {
            // Looked at before it is taken: a record the read stops at stays for the next.
            let Some(len) = records.peek().await? else {
                at_end = true;
                break;
            };
            let rec = &records.buf[4..4 + len];
            let (e, _) = view::Entry::scan(rec).map_err(ArchiveError::Corrupt)?;
            if e.stream_index >= range.from {
                let expected = last.map_or(range.from, |l| l + 1);
                if e.stream_index >= range.end || (range.contiguous && e.stream_index != expected) {
                    break;
                }
                let size = e.payload_bytes;
                if taken > 0 && total + size > range.bytes {
                    break;
                }
                each(rec)?;
                total += size;
                taken += 1;
                last = Some(e.stream_index);
            }
            records.buf.advance(4 + len);
        }
        if let (Some(l), false) = (last, at_end) {
            self.inner.cursors.put(stream_url, l + 1, records);
        }
        Ok(last)
    }

    /// Checks an archive's header and returns its descriptor.
    pub async fn read_descriptor(&self, stream_url: &str) -> Result<Descriptor, ArchiveError> {
        let mut records = Records::open(self, stream_url, 0).await?;
        if &records.exact(8).await?[..] != ENTRIES_MAGIC {
            return Err(ArchiveError::Corrupt("bad entries file".into()));
        }
        let rec = records
            .next()
            .await?
            .ok_or_else(|| ArchiveError::Corrupt("no descriptor".into()))?;
        serde_json::from_slice(&rec).map_err(|e| ArchiveError::Corrupt(e.to_string()))
    }
}
