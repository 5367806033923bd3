//! Archives: the format (see `docs/ARCHIVE.md`) and where they are kept.
//!
//! Per stream and attempt, three objects under `{base}/{project}/{stream id}/{lease id}/`:
//! - `entries`: `LDARCH01`, then length-delimited records (u32 little-endian length, then
//!   the bytes): the descriptor as JSON, then every entry (postcard, as in log chunks and in
//!   Get's binary form);
//! - `index`: `LDINDX01`, then 16-byte records (u64 LE stream index, u64 LE byte offset of
//!   that entry's record in `entries`), every `index_entries` entries or `index_bytes`
//!   bytes, always including the first and the last entry;
//! - `data`: the text rendered (lines with their delimiters), or the raw data of binary
//!   and datagram streams.
//!
//! Archives live in any store the `object_store` crate reaches (`store`): a local
//! directory (the default), S3 and S3-compatible stores, GCS, Azure. Each object is written
//! as a multipart upload straight from the entries (`writer`), visible only once complete;
//! the lease id in every key keeps a retried or concurrent attempt from overwriting a
//! published archive. Reads (`reader`) fetch the sparse index once (cached, bounded by
//! bytes) and then make one ranged read from the indexed offset on.

use std::sync::Arc;

use logdog_schema::wire::Descriptor;
use object_store::path::Path as ObjPath;
use object_store::signer::Signer;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};

mod archives;
pub mod deleter;
mod reader;
mod store;
mod writer;

pub use archives::Archives;
pub use reader::parse_index;
pub use writer::ArchiveWriter;

use logdog_schema::store::StoredOutline;

use reader::IndexCache;

pub const ENTRIES_MAGIC: &[u8; 8] = b"LDARCH01";
pub const INDEX_MAGIC: &[u8; 8] = b"LDINDX01";
pub const SECTIONS_MAGIC: &[u8; 8] = b"LDSECT01";

/// A finished outline as the archive's `sections` object (`docs/ARCHIVE.md`): the magic,
/// `fed_to` (u64 little-endian), then the outline's state bytes.
fn sections_object(o: &StoredOutline) -> Vec<u8> {
    let state = o.outline.state_bytes();
    let mut b = Vec::with_capacity(SECTIONS_MAGIC.len() + 8 + state.len());
    b.extend_from_slice(SECTIONS_MAGIC);
    b.extend_from_slice(&o.fed_to.to_le_bytes());
    b.extend_from_slice(&state);
    b
}

/// Reads a `sections` object: a finished outline.
fn parse_sections_object(b: &[u8]) -> Result<StoredOutline, ArchiveError> {
    let bad = || ArchiveError::Corrupt("the archive's sections object is invalid".into());
    let rest = b.strip_prefix(SECTIONS_MAGIC).ok_or_else(bad)?;
    if rest.len() < 8 {
        return Err(bad());
    }
    let (fed_to, state) = rest.split_at(8);
    Ok(StoredOutline {
        outline: logdog_schema::sections::Outline::from_state_bytes(state).ok_or_else(bad)?,
        fed_to: u64::from_le_bytes(fed_to.try_into().expect("8 bytes")),
        finished: true,
    })
}

/// The index cache's default bound (`archival.index_cache_bytes`).
pub const DEFAULT_INDEX_CACHE_BYTES: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The store could not be reached or answered an error: retried, 503 to readers.
    #[error("archive store: {0}")]
    Store(#[from] object_store::Error),
    #[error("archive is corrupt: {0}")]
    Corrupt(String),
    /// What an archivist reported does not match the store.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Unsupported(String),
}

/// A written archive: its URLs, sizes and entry count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub stream_url: String,
    pub stream_size: u64,
    pub index_url: String,
    pub index_size: u64,
    pub data_url: String,
    pub data_size: u64,
    pub log_entry_count: u64,
}

/// Where archives are kept: an object store, the key prefix archives go under, and the
/// URL that names that prefix (archive URLs are `{base}/{project}/{id}/{lease}/{file}`).
#[derive(Clone)]
pub struct ArchiveStore {
    inner: Arc<Inner>,
}

struct Inner {
    objects: Arc<dyn ObjectStore>,
    root: ObjPath,
    base: String,
    /// Where the store can sign download URLs (S3, GCS, Azure).
    signer: Option<Arc<dyn Signer>>,
    cache: IndexCache,
    /// Reads left where a Get stopped, for the Get that goes on from there.
    cursors: reader::Cursors,
    /// Bytes read from the store (`logdog_archive_read_bytes_total`).
    read_bytes: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for ArchiveStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ArchiveStore({})", self.inner.base)
    }
}

impl ArchiveStore {
    /// A directory, `file://PATH` (created if missing), or `s3://`, `gs://`, `az://` URL
    /// with credentials and endpoints from the environment.
    pub fn open(location: &str) -> Result<Self, ArchiveError> {
        Self::open_with(location, &Default::default(), DEFAULT_INDEX_CACHE_BYTES)
    }

    /// `open`, with `[archive_options]` (passed to the store's builder, overriding the
    /// environment) and the index cache's bound.
    pub fn open_with(
        location: &str,
        options: &std::collections::BTreeMap<String, String>,
        index_cache_bytes: usize,
    ) -> Result<Self, ArchiveError> {
        let store::Opened {
            objects,
            root,
            base,
            signer,
        } = store::open(location, options)?;
        Ok(Self {
            inner: Arc::new(Inner {
                objects,
                root,
                base,
                signer,
                cache: IndexCache::new(index_cache_bytes),
                cursors: Default::default(),
                read_bytes: Default::default(),
            }),
        })
    }

    /// The store's key for `rel` (a path below the archive root).
    fn key(&self, rel: &str) -> ObjPath {
        let root = self.inner.root.as_ref();
        if root.is_empty() {
            ObjPath::from(rel)
        } else {
            ObjPath::from(format!("{root}/{rel}"))
        }
    }

    /// The URL of the object under `rel`.
    fn url(&self, rel: &str) -> String {
        format!("{}/{rel}", self.inner.base)
    }

    /// Whether `url` names an object of this store.
    pub fn holds(&self, url: &str) -> bool {
        url.strip_prefix(&self.inner.base)
            .is_some_and(|r| r.starts_with('/'))
    }

    /// The key of the object at `url` (one of this store's URLs).
    fn key_of_url(&self, url: &str) -> Result<ObjPath, ArchiveError> {
        url.strip_prefix(&self.inner.base)
            .and_then(|r| r.strip_prefix('/'))
            .map(|rel| self.key(rel))
            .ok_or_else(|| {
                ArchiveError::Corrupt(format!(
                    "{url:?} is not in the archive store {}",
                    self.inner.base
                ))
            })
    }

    /// Starts an archive for one attempt (`attempt`, the lease id, names its folder).
    pub async fn writer(
        &self,
        project: &str,
        id: &str,
        attempt: &str,
        descriptor: &Descriptor,
        every: (u64, u64),
    ) -> Result<ArchiveWriter, ArchiveError> {
        ArchiveWriter::start(
            self.clone(),
            format!("{project}/{id}/{attempt}"),
            descriptor,
            every,
        )
        .await
    }

    /// Checks what an archivist reports before the coordinator believes it: the three
    /// objects must be the ones of this stream and lease in this store, exist, have the
    /// claimed sizes, and their index must agree with the claimed entries. `Err(Refused)`
    /// names what is wrong; `Err(Store)` means the store could not be asked.
    pub async fn verify(
        &self,
        project: &str,
        id: &str,
        lease_id: &str,
        claim: &Written,
        terminal_index: i64,
    ) -> Result<(), ArchiveError> {
        let bad = |m: String| Err(ArchiveError::Refused(m));
        let files = [
            ("entries", "stream", &claim.stream_url, claim.stream_size),
            ("index", "index", &claim.index_url, claim.index_size),
            ("data", "data", &claim.data_url, claim.data_size),
        ];
        for (file, field, url, size) in files {
            let expected = self.url(&format!("{project}/{id}/{lease_id}/{file}"));
            if *url != expected {
                return bad(format!(
                    "{field}_url must be this lease's archive object {expected:?}"
                ));
            }
            match self.inner.objects.head(&self.key_of_url(url)?).await {
                Err(object_store::Error::NotFound { .. }) => {
                    return bad(format!("{field}_url {url:?} does not exist"))
                }
                Err(e) => return Err(e.into()),
                Ok(m) if m.size != size => {
                    return bad(format!(
                        "{field}_size is {size} but the object at {url:?} has {} bytes",
                        m.size
                    ))
                }
                Ok(_) => {}
            }
        }
        let refused = |e: ArchiveError| match e {
            ArchiveError::Corrupt(m) => ArchiveError::Refused(format!("not a valid archive: {m}")),
            other => other,
        };
        self.read_descriptor(&claim.stream_url)
            .await
            .map_err(refused)?;
        let index = reader::parse_index(&self.fetch(&claim.index_url).await?).map_err(refused)?;
        let last = index.last().map(|(i, _)| *i as i64);
        match last {
            None if claim.log_entry_count > 0 => {
                bad("the index is empty but log_entry_count is not 0".into())
            }
            Some(_) if claim.log_entry_count == 0 => {
                bad("log_entry_count is 0 but the index lists entries".into())
            }
            Some(l) if l > terminal_index => bad(format!(
                "the archive holds entry {l}, past terminal_index {terminal_index}"
            )),
            Some(l)
                if claim.log_entry_count as i64 == terminal_index + 1 && l != terminal_index =>
            {
                bad(format!(
                    "a complete archive ends at entry {terminal_index}, this one at {l}"
                ))
            }
            Some(l) if (claim.log_entry_count as i64) > l + 1 => bad(format!(
                "log_entry_count {} is more than the entries up to {l}",
                claim.log_entry_count
            )),
            _ => Ok(()),
        }
    }

    /// An expiring download URL for the object at `url` (one of this store's), where the
    /// store can sign; None where it cannot (a local directory).
    pub async fn signed_url(
        &self,
        url: &str,
        expires_in: std::time::Duration,
    ) -> Result<Option<String>, ArchiveError> {
        let Some(signer) = &self.inner.signer else {
            return Ok(None);
        };
        let key = self.key_of_url(url)?;
        let signed = signer
            .signed_url(object_store::signer::Method::GET, &key, expires_in)
            .await?;
        Ok(Some(signed.to_string()))
    }

    /// Bytes read from the store so far, by reads of entries and indexes.
    pub fn read_bytes(&self) -> u64 {
        self.inner
            .read_bytes
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn count_read(&self, n: usize) {
        self.inner
            .read_bytes
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// The size of the object at `url`.
    pub async fn size(&self, url: &str) -> Result<u64, ArchiveError> {
        match self.inner.objects.head(&self.key_of_url(url)?).await {
            Ok(m) => Ok(m.size),
            Err(object_store::Error::NotFound { .. }) => Err(missing(url)),
            Err(e) => Err(e.into()),
        }
    }

    /// The bytes `range` of the object at `url`, as they arrive from the store.
    pub async fn object(
        &self,
        url: &str,
        range: std::ops::Range<u64>,
    ) -> Result<futures::stream::BoxStream<'static, Result<bytes::Bytes, ArchiveError>>, ArchiveError>
    {
        use futures::{StreamExt as _, TryStreamExt as _};
        let opts = GetOptions {
            range: Some(GetRange::Bounded(range)),
            ..Default::default()
        };
        match self
            .inner
            .objects
            .get_opts(&self.key_of_url(url)?, opts)
            .await
        {
            Ok(r) => {
                let body = match r.payload {
                    object_store::GetResultPayload::File(file, _) => {
                        reader::file_stream(file, r.range)
                    }
                    _ => r.into_stream(),
                };
                Ok(body.map_err(ArchiveError::from).boxed())
            }
            Err(object_store::Error::NotFound { .. }) => Err(missing(url)),
            Err(e) => Err(e.into()),
        }
    }

    /// The whole object at `url`.
    async fn fetch(&self, url: &str) -> Result<bytes::Bytes, ArchiveError> {
        let key = self.key_of_url(url)?;
        match self.inner.objects.get(&key).await {
            Ok(r) => {
                let bytes = r.bytes().await?;
                self.count_read(bytes.len());
                Ok(bytes)
            }
            Err(object_store::Error::NotFound { .. }) => Err(missing(url)),
            Err(e) => Err(e.into()),
        }
    }

    /// The outline in the `sections` object beside the archive's entries at `stream_url`;
    /// None for an archive without one (a binary stream's, or one written before archives
    /// held outlines).
    pub async fn read_sections(
        &self,
        stream_url: &str,
    ) -> Result<Option<StoredOutline>, ArchiveError> {
        let folder = stream_url.strip_suffix("/entries").ok_or_else(|| {
            ArchiveError::Corrupt(format!("{stream_url:?} is not an archive's entries object"))
        })?;
        let key = self.key_of_url(&format!("{folder}/sections"))?;
        let bytes = match self.inner.objects.get(&key).await {
            Ok(r) => r.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        self.count_read(bytes.len());
        parse_sections_object(&bytes).map(Some)
    }

    /// Removes every archive of a stream (every attempt's objects).
    pub async fn delete(&self, project: &str, id: &str) -> Result<(), ArchiveError> {
        use futures::{StreamExt as _, TryStreamExt as _};
        let prefix = self.key(&format!("{project}/{id}"));
        let objects = self.inner.objects.clone();
        let locations = objects.list(Some(&prefix)).map_ok(|m| m.location).boxed();
        objects
            .delete_stream(locations)
            .try_collect::<Vec<_>>()
            .await?;
        Ok(())
    }
}

/// An archive object the database names is not in its store.
fn missing(url: &str) -> ArchiveError {
    ArchiveError::Corrupt(format!("archive object {url:?} is missing"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use logdog_schema::store::ReadRange;
    use logdog_schema::wire::{Content, Entry, Line, StreamType};
    use std::collections::BTreeMap;

    fn entry(i: u64) -> Entry {
        Entry {
            stream_index: i,
            prefix_index: None,
            sequence: i,
            time_offset_us: i as i64 * 10,
            content: Content::Text(vec![Line {
                value: format!("line {i}"),
                delimiter: logdog_schema::wire::Delimiter::Lf,
            }]),
        }
    }

    fn descriptor() -> Descriptor {
        Descriptor {
            stream_type: StreamType::Text,
            content_type: "text/plain".into(),
            timestamp: 5,
            tags: BTreeMap::new(),
            binary_file_ext: None,
        }
    }

    fn range(from: u64, count: usize, contiguous: bool) -> ReadRange {
        ReadRange {
            from,
            end: u64::MAX >> 1,
            count,
            bytes: u64::MAX,
            contiguous,
        }
    }

    #[tokio::test]
    async fn write_then_seek_and_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArchiveStore::open(dir.path().to_str().unwrap()).unwrap();
        let mut w = store
            .writer("p", "id", "lease1", &descriptor(), (10, 1 << 20))
            .await
            .unwrap();
        // 0..100 with a gap at 50..60.
        let present: Vec<u64> = (0..100).filter(|i| !(50..60).contains(i)).collect();
        for i in &present {
            w.push(&entry(*i)).unwrap();
        }
        assert!(w.push(&entry(3)).is_err(), "out of order");
        w.ready().await.unwrap();
        // Nothing is visible before the uploads complete.
        assert!(!dir.path().join("p/id/lease1/entries").exists());
        let written = w.finish().await.unwrap();
        assert_eq!(written.log_entry_count, 90);
        assert!(written.stream_url.ends_with("/p/id/lease1/entries"));
        let canonical = std::fs::canonicalize(dir.path()).unwrap();
        assert_eq!(
            written.stream_url,
            format!("file://{}/p/id/lease1/entries", canonical.display()),
            "local archives keep their file:// URLs"
        );
        // Index: every 10 entries plus the last.
        let index =
            reader::parse_index(&std::fs::read(dir.path().join("p/id/lease1/index")).unwrap())
                .unwrap();
        assert_eq!(index.first().unwrap().0, 0);
        assert_eq!(index.last().unwrap().0, 99);
        assert_eq!(written.index_size, 8 + 16 * index.len() as u64);
        assert_eq!(
            store.read_descriptor(&written.stream_url).await.unwrap(),
            descriptor()
        );
        let got = store
            .read_entries(&written.stream_url, &written.index_url, range(45, 20, true))
            .await
            .unwrap();
        assert_eq!(
            got.iter().map(|e| e.stream_index).collect::<Vec<_>>(),
            (45..50).collect::<Vec<_>>()
        );
        let got = store
            .read_entries(&written.stream_url, &written.index_url, range(45, 8, false))
            .await
            .unwrap();
        assert_eq!(
            got.iter().map(|e| e.stream_index).collect::<Vec<_>>(),
            [45, 46, 47, 48, 49, 60, 61, 62]
        );
        assert_eq!(got[5], entry(60));
        let data = std::fs::read_to_string(dir.path().join("p/id/lease1/data")).unwrap();
        assert!(data.starts_with("line 0\nline 1\n") && data.ends_with("line 99\n"));
        store
            .verify("p", "id", "lease1", &written, 99)
            .await
            .unwrap();
        assert!(matches!(
            store.verify("p", "id", "lease2", &written, 99).await,
            Err(ArchiveError::Refused(_))
        ));
        // Deleting removes every attempt.
        store.delete("p", "id").await.unwrap();
        assert!(!dir.path().join("p/id/lease1/entries").exists());
    }

    #[tokio::test]
    async fn an_abandoned_attempt_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArchiveStore::open(dir.path().to_str().unwrap()).unwrap();
        let mut w = store
            .writer("p", "id", "l", &descriptor(), (10, 1 << 20))
            .await
            .unwrap();
        w.push(&entry(0)).unwrap();
        w.abort().await;
        let left: Vec<_> = walk(dir.path());
        assert!(left.is_empty(), "{left:?}");
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            if e.path().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path());
            }
        }
        out
    }

    #[test]
    fn the_index_cache_is_bounded_by_bytes() {
        let cache = reader::IndexCache::new(48);
        cache.insert("a", Arc::new(vec![(0, 0); 2]));
        cache.insert("b", Arc::new(vec![(0, 0); 1]));
        assert!(cache.get("a").is_some() && cache.get("b").is_some());
        cache.insert("c", Arc::new(vec![(0, 0); 2]));
        assert!(cache.get("a").is_none(), "the oldest goes first");
        assert!(cache.get("b").is_some() && cache.get("c").is_some());
        cache.insert("huge", Arc::new(vec![(0, 0); 4]));
        assert!(
            cache.get("huge").is_none(),
            "larger than the bound: not kept"
        );
    }
}
