//! Archives: the format (see `docs/ARCHIVE.md`) and where they are kept.
//!
//! Per stream and attempt, three files under `{base}/{project}/{stream id}/{lease id}/`:
//! - `entries`: `LDARCH01`, then length-delimited records (u32 little-endian length, then
//!   the bytes): the descriptor as JSON, then every entry (postcard, as in log chunks);
//! - `index`: `LDINDX01`, then 16-byte records (u64 LE stream index, u64 LE byte offset of
//!   that entry's record in `entries`), every `index_entries` entries or `index_bytes`
//!   bytes, always including the first and the last entry;
//! - `data`: the text rendered (lines with their delimiters), or the raw data of binary
//!   and datagram streams.
//!
//! Files are written into a local staging folder, then published one by one through the
//! `ObjectStore` interface (atomically: a reader sees a whole file or none), and only then
//! reported to the coordinator. `LocalDir` (a directory, the default) is the one store this
//! build has; other object stores implement the same four calls.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use logdog_schema::store::ReadRange;
use logdog_schema::wire::{Content, Descriptor, Entry};

pub const ENTRIES_MAGIC: &[u8; 8] = b"LDARCH01";
pub const INDEX_MAGIC: &[u8; 8] = b"LDINDX01";

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("archive I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("archive is corrupt: {0}")]
    Corrupt(String),
    /// What an archivist reported does not match the store.
    #[error("{0}")]
    Refused(String),
    #[error("unsupported archive location {0:?}: use a directory or file://PATH")]
    Unsupported(String),
}

/// The object-store interface archives are written and read through.
pub trait ObjectStore: std::fmt::Debug + Send + Sync {
    /// Publishes a staged local file under `key` (atomically); returns its URL.
    fn publish(&self, key: &str, staged: &Path) -> Result<String, ArchiveError>;
    /// The whole object at `url`.
    fn read_all(&self, url: &str) -> Result<Vec<u8>, ArchiveError>;
    /// A reader of the object at `url` from byte `offset` on.
    fn read_from(&self, url: &str, offset: u64) -> Result<Box<dyn Read + Send>, ArchiveError>;
    /// Removes every object whose key starts with `prefix/`.
    fn delete_prefix(&self, prefix: &str) -> Result<(), ArchiveError>;
    /// The URL the object under `key` has once published.
    fn url(&self, key: &str) -> String;
    /// The size of the object at `url`; None when there is none.
    fn size(&self, url: &str) -> Result<Option<u64>, ArchiveError>;
    /// A local folder for staging files before they are published.
    fn staging(&self) -> &Path;
}

/// A local directory as an object store: keys are paths below it, URLs `file://` paths.
#[derive(Debug)]
pub struct LocalDir {
    base: PathBuf,
}

impl LocalDir {
    pub fn open(base: &Path) -> Result<Self, ArchiveError> {
        fs::create_dir_all(base)?;
        Ok(Self {
            base: fs::canonicalize(base)?,
        })
    }
}

impl ObjectStore for LocalDir {
    fn publish(&self, key: &str, staged: &Path) -> Result<String, ArchiveError> {
        let dest = self.base.join(key);
        let dir = dest.parent().expect("keys have a folder");
        fs::create_dir_all(dir)?;
        File::open(staged)?.sync_all()?;
        fs::rename(staged, &dest)?;
        File::open(dir)?.sync_all()?;
        Ok(url_of(&dest))
    }

    fn read_all(&self, url: &str) -> Result<Vec<u8>, ArchiveError> {
        Ok(fs::read(path_of(url)?)?)
    }

    fn read_from(&self, url: &str, offset: u64) -> Result<Box<dyn Read + Send>, ArchiveError> {
        let mut f = File::open(path_of(url)?)?;
        f.seek(SeekFrom::Start(offset))?;
        Ok(Box::new(f))
    }

    fn delete_prefix(&self, prefix: &str) -> Result<(), ArchiveError> {
        match fs::remove_dir_all(self.base.join(prefix)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    fn url(&self, key: &str) -> String {
        url_of(&self.base.join(key))
    }

    fn size(&self, url: &str) -> Result<Option<u64>, ArchiveError> {
        match fs::metadata(path_of(url)?) {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn staging(&self) -> &Path {
        &self.base
    }
}

/// Where archives are kept: an object store and the layout of keys in it.
#[derive(Debug, Clone)]
pub struct ArchiveStore {
    objects: std::sync::Arc<dyn ObjectStore>,
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

fn url_of(path: &Path) -> String {
    format!("file://{}", path.display())
}

/// The local path of a `file://` URL (or a plain path).
pub fn path_of(url: &str) -> Result<PathBuf, ArchiveError> {
    if let Some(p) = url.strip_prefix("file://") {
        return Ok(PathBuf::from(p));
    }
    if url.contains("://") {
        return Err(ArchiveError::Unsupported(url.to_owned()));
    }
    Ok(PathBuf::from(url))
}

impl ArchiveStore {
    /// A directory or `file://PATH` (created if missing). Other object stores are refused.
    pub fn open(location: &str) -> Result<Self, ArchiveError> {
        Ok(Self {
            objects: std::sync::Arc::new(LocalDir::open(&path_of(location)?)?),
        })
    }

    /// Archives over any object store.
    pub fn with(objects: std::sync::Arc<dyn ObjectStore>) -> Self {
        Self { objects }
    }

    /// Starts an archive for one attempt (`attempt` names its folder).
    pub fn writer(
        &self,
        project: &str,
        id: &str,
        attempt: &str,
        descriptor: &Descriptor,
        every: (u64, u64),
    ) -> Result<ArchiveWriter, ArchiveError> {
        let staging = self
            .objects
            .staging()
            .join(format!(".staging-{project}-{id}-{attempt}"));
        let _ = fs::remove_dir_all(&staging);
        fs::create_dir_all(&staging)?;
        let mut entries = BufWriter::new(File::create(staging.join("entries"))?);
        let mut index = BufWriter::new(File::create(staging.join("index"))?);
        let data = BufWriter::new(File::create(staging.join("data"))?);
        entries.write_all(ENTRIES_MAGIC)?;
        index.write_all(INDEX_MAGIC)?;
        let mut w = ArchiveWriter {
            objects: self.objects.clone(),
            staging,
            key: format!("{project}/{id}/{attempt}"),
            entries,
            index,
            data,
            offset: ENTRIES_MAGIC.len() as u64,
            count: 0,
            every,
            since_index: (0, 0),
            last: None,
        };
        let d = serde_json::to_vec(descriptor).expect("descriptor serialises");
        w.record(&d)?;
        Ok(w)
    }

    /// Checks what an archivist reports before the coordinator believes it: the three
    /// objects must be the ones of this stream and lease in this store, exist, have the
    /// claimed sizes, and their index must agree with the claimed entries. `Err(Conflict)`
    /// names what is wrong; `Err(Io)` means the store could not be asked.
    pub fn verify(
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
            let expected = self
                .objects
                .url(&format!("{project}/{id}/{lease_id}/{file}"));
            if *url != expected {
                return bad(format!(
                    "{field}_url must be this lease's archive object {expected:?}"
                ));
            }
            match self.objects.size(url)? {
                None => return bad(format!("{field}_url {url:?} does not exist")),
                Some(s) if s != size => {
                    return bad(format!(
                        "{field}_size is {size} but the object at {url:?} has {s} bytes"
                    ))
                }
                Some(_) => {}
            }
        }
        let refused = |e: ArchiveError| match e {
            ArchiveError::Corrupt(m) => ArchiveError::Refused(format!("not a valid archive: {m}")),
            ArchiveError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                ArchiveError::Refused("not a valid archive: the entries file is cut short".into())
            }
            other => other,
        };
        self.read_descriptor(&claim.stream_url).map_err(refused)?;
        let index = parse_index(&self.objects.read_all(&claim.index_url)?).map_err(refused)?;
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

    /// Removes every archive of a stream.
    pub fn delete(&self, project: &str, id: &str) -> Result<(), ArchiveError> {
        self.objects.delete_prefix(&format!("{project}/{id}"))
    }

    /// The entries `range` asks for, from an archive: seeks through the index to the last
    /// indexed entry at or before `range.from`, then reads forward.
    pub fn read_entries(
        &self,
        stream_url: &str,
        index_url: &str,
        range: ReadRange,
    ) -> Result<Vec<Entry>, ArchiveError> {
        let index = parse_index(&self.objects.read_all(index_url)?)?;
        let start = match index.partition_point(|(i, _)| *i <= range.from) {
            0 => match index.first() {
                Some(first) => first.1,
                None => return Ok(Vec::new()),
            },
            n => index[n - 1].1,
        };
        let mut r = BufReader::with_capacity(256 << 10, self.objects.read_from(stream_url, start)?);
        let (mut out, mut total, mut expected) = (Vec::new(), 0u64, range.from);
        while out.len() < range.count {
            let Some(rec) = read_record(&mut r)? else {
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
    pub fn read_descriptor(&self, stream_url: &str) -> Result<Descriptor, ArchiveError> {
        let mut r = self.objects.read_from(stream_url, 0)?;
        let mut magic = [0u8; 8];
        r.read_exact(&mut magic)?;
        if &magic != ENTRIES_MAGIC {
            return Err(ArchiveError::Corrupt("bad entries file".into()));
        }
        let rec =
            read_record(&mut r)?.ok_or_else(|| ArchiveError::Corrupt("no descriptor".into()))?;
        serde_json::from_slice(&rec).map_err(|e| ArchiveError::Corrupt(e.to_string()))
    }
}

/// Builds one archive in its staging folder.
pub struct ArchiveWriter {
    objects: std::sync::Arc<dyn ObjectStore>,
    staging: PathBuf,
    /// `project/id/attempt`: where the files are published.
    key: String,
    entries: BufWriter<File>,
    index: BufWriter<File>,
    data: BufWriter<File>,
    /// Byte offset of the next record in `entries`.
    offset: u64,
    count: u64,
    /// Index every (entries, bytes).
    every: (u64, u64),
    /// Entries and bytes since the last index record.
    since_index: (u64, u64),
    /// The last entry's (index, offset), to close the index with.
    last: Option<(u64, u64, bool)>,
}

impl ArchiveWriter {
    fn record(&mut self, bytes: &[u8]) -> Result<u64, ArchiveError> {
        let at = self.offset;
        self.entries
            .write_all(&(bytes.len() as u32).to_le_bytes())?;
        self.entries.write_all(bytes)?;
        self.offset += 4 + bytes.len() as u64;
        Ok(at)
    }

    fn index_record(&mut self, stream_index: u64, offset: u64) -> Result<(), ArchiveError> {
        self.index.write_all(&stream_index.to_le_bytes())?;
        self.index.write_all(&offset.to_le_bytes())?;
        Ok(())
    }

    /// Appends the next entry (indices must increase).
    pub fn push(&mut self, e: &Entry) -> Result<(), ArchiveError> {
        if self.last.is_some_and(|(i, _, _)| e.stream_index <= i) {
            return Err(ArchiveError::Corrupt(format!(
                "entry {} is out of order",
                e.stream_index
            )));
        }
        // The same record as Get's binary form (`wire::entry_record`).
        let rec = logdog_schema::wire::entry_record(e);
        let at = self.offset;
        self.entries.write_all(&rec)?;
        self.offset += rec.len() as u64;
        let due = self.count == 0
            || self.since_index.0 >= self.every.0
            || self.since_index.1 >= self.every.1;
        if due {
            self.index_record(e.stream_index, at)?;
            self.since_index = (0, 0);
        }
        self.since_index.0 += 1;
        self.since_index.1 += rec.len() as u64;
        self.last = Some((e.stream_index, at, due));
        self.count += 1;
        match &e.content {
            Content::Text(lines) => {
                for l in lines {
                    self.data.write_all(l.value.as_bytes())?;
                    self.data.write_all(l.delimiter.as_bytes())?;
                }
            }
            Content::Binary(d) | Content::Datagram { data: d, .. } => self.data.write_all(d)?,
        }
        Ok(())
    }

    /// Flushes the files, then publishes them; the staging folder goes away.
    pub fn finish(mut self) -> Result<Written, ArchiveError> {
        if let Some((i, at, false)) = self.last {
            self.index_record(i, at)?;
        }
        for f in [&mut self.entries, &mut self.index, &mut self.data] {
            f.flush()?;
        }
        let size = |name: &str| fs::metadata(self.staging.join(name)).map(|m| m.len());
        let (stream_size, index_size, data_size) =
            (size("entries")?, size("index")?, size("data")?);
        let publish = |name: &str| {
            self.objects
                .publish(&format!("{}/{name}", self.key), &self.staging.join(name))
        };
        let written = Written {
            stream_url: publish("entries")?,
            stream_size,
            index_url: publish("index")?,
            index_size,
            data_url: publish("data")?,
            data_size,
            log_entry_count: self.count,
        };
        let _ = fs::remove_dir_all(&self.staging);
        Ok(written)
    }
}

impl Drop for ArchiveWriter {
    fn drop(&mut self) {
        // An abandoned attempt leaves nothing behind.
        let _ = fs::remove_dir_all(&self.staging);
    }
}

/// Parses the sparse index: (stream index, byte offset) pairs.
fn parse_index(bytes: &[u8]) -> Result<Vec<(u64, u64)>, ArchiveError> {
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

fn read_record(r: &mut impl Read) -> Result<Option<Vec<u8>>, ArchiveError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let mut buf = vec![0u8; u32::from_le_bytes(len) as usize];
    r.read_exact(&mut buf)?;
    Ok(Some(buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use logdog_schema::wire::{Line, StreamType};
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

    #[test]
    fn write_then_seek_and_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArchiveStore::open(dir.path().to_str().unwrap()).unwrap();
        let mut w = store
            .writer("p", "id", "lease1", &descriptor(), (10, 1 << 20))
            .unwrap();
        // 0..100 with a gap at 50..60.
        let present: Vec<u64> = (0..100).filter(|i| !(50..60).contains(i)).collect();
        for i in &present {
            w.push(&entry(*i)).unwrap();
        }
        assert!(w.push(&entry(3)).is_err(), "out of order");
        let written = w.finish().unwrap();
        assert_eq!(written.log_entry_count, 90);
        assert!(written.stream_url.ends_with("/p/id/lease1/entries"));
        // Index: every 10 entries plus the last.
        let index = parse_index(&fs::read(path_of(&written.index_url).unwrap()).unwrap()).unwrap();
        assert_eq!(index.first().unwrap().0, 0);
        assert_eq!(index.last().unwrap().0, 99);
        assert_eq!(written.index_size, 8 + 16 * index.len() as u64);
        assert_eq!(
            store.read_descriptor(&written.stream_url).unwrap(),
            descriptor()
        );
        let got = store
            .read_entries(&written.stream_url, &written.index_url, range(45, 20, true))
            .unwrap();
        assert_eq!(
            got.iter().map(|e| e.stream_index).collect::<Vec<_>>(),
            (45..50).collect::<Vec<_>>()
        );
        let got = store
            .read_entries(&written.stream_url, &written.index_url, range(45, 8, false))
            .unwrap();
        assert_eq!(
            got.iter().map(|e| e.stream_index).collect::<Vec<_>>(),
            [45, 46, 47, 48, 49, 60, 61, 62]
        );
        assert_eq!(got[5], entry(60));
        let data = fs::read_to_string(path_of(&written.data_url).unwrap()).unwrap();
        assert!(data.starts_with("line 0\nline 1\n") && data.ends_with("line 99\n"));
        // Staging folders are gone; deleting removes everything.
        assert!(!dir.path().join(".staging-p-id-lease1").exists());
        store.delete("p", "id").unwrap();
        assert!(!dir.path().join("p/id").exists());
    }
}
