//! Reading archives through ranged reads: the sparse index fetched once and cached (bounded
//! by bytes), then one read of the entries object from the indexed offset at or before the
//! first entry asked for, consumed only as far as the page needs.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::{Buf, BytesMut};
use futures::StreamExt as _;
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

/// Records read from a ranged GET, pulled from the body only as far as needed.
struct Records {
    store: ArchiveStore,
    body: futures::stream::BoxStream<'static, object_store::Result<bytes::Bytes>>,
    buf: BytesMut,
}

impl Records {
    async fn open(store: &ArchiveStore, url: &str, offset: u64) -> Result<Self, ArchiveError> {
        let key = store.key_of_url(url)?;
        let opts = GetOptions {
            range: Some(GetRange::Offset(offset)),
            ..Default::default()
        };
        let r = match store.inner.objects.get_opts(&key, opts).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Err(super::missing(url)),
            Err(e) => return Err(e.into()),
        };
        Ok(Self {
            store: store.clone(),
            body: r.into_stream(),
            buf: BytesMut::new(),
        })
    }

    /// At least `n` bytes buffered; false at the end of the object.
    async fn fill(&mut self, n: usize) -> Result<bool, ArchiveError> {
        while self.buf.len() < n {
            match self.body.next().await {
                Some(chunk) => {
                    let chunk = chunk?;
                    self.store.count_read(chunk.len());
                    self.buf.extend_from_slice(&chunk);
                }
                None => return Ok(false),
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

    /// The next record, or None at the end.
    async fn next(&mut self) -> Result<Option<bytes::Bytes>, ArchiveError> {
        if !self.fill(4).await? {
            if self.buf.is_empty() {
                return Ok(None);
            }
            return Err(ArchiveError::Corrupt(
                "the entries file is cut short".into(),
            ));
        }
        let len = (&self.buf[..4]).get_u32_le() as usize;
        self.buf.advance(4);
        self.exact(len).await.map(Some)
    }
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
        let index = self.index(index_url).await?;
        let start = match index.partition_point(|(i, _)| *i <= range.from) {
            0 => match index.first() {
                Some(first) => first.1,
                None => return Ok(Vec::new()),
            },
            n => index[n - 1].1,
        };
        let mut records = Records::open(self, stream_url, start).await?;
        let (mut out, mut total, mut expected) = (Vec::new(), 0u64, range.from);
        while out.len() < range.count {
            let Some(rec) = records.next().await? else {
                break;
            };
            let e: Entry =
                postcard::from_bytes(&rec).map_err(|e| ArchiveError::Corrupt(e.to_string()))?;
            if e.stream_index < range.from {
                continue;
            }
            if e.stream_index >= range.end || (range.contiguous && e.stream_index != expected) {
                break;
            }
            let size = e.content.payload_bytes();
            if !out.is_empty() && total + size > range.bytes {
                break;
            }
            total += size;
            expected = e.stream_index + 1;
            out.push(e);
        }
        Ok(out)
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
