//! The outbox of one stream in `logdog stream`: entries (already JSON, indices assigned)
//! waiting to be uploaded, in order. The first `memory_bytes` of them are kept in memory;
//! past that, and for as long as anything is on disk, new entries go to a spool file, so an
//! unreachable coordinator costs disk, not memory. The spool is bounded too: when it is full
//! `push` refuses, and the caller stops reading the command's output until there is room
//! (the command then waits on its pipe rather than anything being dropped).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::PathBuf;

/// One entry, serialised: a JSON object without newlines (one spool line).
pub type Record = Vec<u8>;

pub struct Outbox {
    memory: VecDeque<Record>,
    memory_bytes: usize,
    memory_limit: usize,
    spool: Option<Spool>,
    spool_path: PathBuf,
    spool_limit: u64,
    /// Records ever spooled (for the summary).
    pub spooled: u64,
}

struct Spool {
    writer: BufWriter<File>,
    reader: BufReader<File>,
    /// Bytes written to the file since it was last emptied, and bytes read back.
    written: u64,
    read: u64,
}

/// Why a record could not be queued.
#[derive(Debug)]
pub enum PushError {
    /// The spool is at its limit: try again after some records were taken.
    Full(Record),
    Io(std::io::Error),
}

impl Outbox {
    pub fn new(memory_limit: usize, spool_path: PathBuf, spool_limit: u64) -> Self {
        Self {
            memory: VecDeque::new(),
            memory_bytes: 0,
            memory_limit,
            spool: None,
            spool_path,
            spool_limit,
            spooled: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.memory.is_empty() && self.spool.as_ref().is_none_or(|s| s.read == s.written)
    }

    /// Bytes on disk waiting to be read back.
    pub fn spooled_bytes(&self) -> u64 {
        self.spool.as_ref().map_or(0, |s| s.written - s.read)
    }

    /// Queues `record` behind everything already queued.
    pub fn push(&mut self, record: Record) -> Result<(), PushError> {
        debug_assert!(!record.contains(&b'\n'));
        let on_disk = self.spooled_bytes() > 0;
        // An empty outbox takes any record, however large: the limits bound what waits,
        // they never make a single record impossible to send.
        let fits = self.memory_bytes + record.len() <= self.memory_limit || self.memory.is_empty();
        if !on_disk && fits {
            self.memory_bytes += record.len();
            self.memory.push_back(record);
            return Ok(());
        }
        if self.spool.is_none() {
            self.spool = Some(Spool::create(&self.spool_path).map_err(PushError::Io)?);
        }
        let spool = self.spool.as_mut().expect("just created");
        // The file only shrinks when it has been read to its end; its length is the bound.
        if spool.written > 0 && spool.written + record.len() as u64 + 1 > self.spool_limit {
            return Err(PushError::Full(record));
        }
        spool.writer.write_all(&record).map_err(PushError::Io)?;
        spool.writer.write_all(b"\n").map_err(PushError::Io)?;
        spool.written += record.len() as u64 + 1;
        self.spooled += 1;
        Ok(())
    }

    /// Takes records from the front, at least one if any is queued, while their total stays
    /// within `max_bytes`.
    pub fn take(&mut self, max_bytes: usize) -> std::io::Result<Vec<Record>> {
        let mut out = Vec::new();
        let mut total = 0;
        while let Some(r) = self.memory.front() {
            if !out.is_empty() && total + r.len() > max_bytes {
                return Ok(out);
            }
            let r = self.memory.pop_front().expect("front exists");
            self.memory_bytes -= r.len();
            total += r.len();
            out.push(r);
        }
        let Some(spool) = self.spool.as_mut() else {
            return Ok(out);
        };
        if spool.read < spool.written {
            spool.writer.flush()?;
        }
        while spool.read < spool.written {
            let mut line = Vec::new();
            let n = spool.reader.read_until(b'\n', &mut line)?;
            if n == 0 {
                let len = spool
                    .writer
                    .get_ref()
                    .metadata()
                    .map(|m| m.len())
                    .unwrap_or(0);
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "spool file shorter than written ({len} bytes, {} written, {} read)",
                        spool.written, spool.read
                    ),
                ));
            }
            spool.read += n as u64;
            line.pop();
            total += line.len();
            out.push(line);
            if total >= max_bytes {
                break;
            }
        }
        if spool.read == spool.written && spool.written > 0 {
            // Read to its end: start the file over, so it never grows past the limit.
            spool.writer.flush()?;
            spool.writer.get_mut().set_len(0)?;
            spool.writer.seek(SeekFrom::Start(0))?;
            spool.reader.seek(SeekFrom::Start(0))?;
            spool.written = 0;
            spool.read = 0;
        }
        Ok(out)
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        if self.spool.is_some() {
            let _ = std::fs::remove_file(&self.spool_path);
        }
    }
}

impl Spool {
    fn create(path: &PathBuf) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(path)?;
        // A second open, not a dup: the reader needs an offset of its own.
        let reader = BufReader::new(File::open(path)?);
        Ok(Self {
            writer: BufWriter::new(file),
            reader,
            written: 0,
            read: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: u32) -> Record {
        format!("{{\"stream_index\":{i}}}").into_bytes()
    }

    #[test]
    fn overflow_goes_to_disk_in_order_and_the_file_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool");
        let mut o = Outbox::new(40, path.clone(), 1 << 20);
        for i in 0..100 {
            o.push(rec(i)).unwrap();
        }
        assert!(o.spooled_bytes() > 0);
        assert_eq!(o.spooled, 98, "two records fit in 40 bytes of memory");
        let mut seen = Vec::new();
        // Records pushed while the spool is being drained still come after it.
        for batch in 0.. {
            let got = o.take(50).unwrap();
            if got.is_empty() {
                break;
            }
            seen.extend(got);
            if batch == 3 {
                for i in 100..110 {
                    o.push(rec(i)).unwrap();
                }
            }
        }
        let want: Vec<_> = (0..110).map(rec).collect();
        assert_eq!(seen, want);
        assert!(o.is_empty());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        drop(o);
        assert!(!path.exists(), "the spool file is removed");
    }

    #[test]
    fn a_full_spool_refuses_until_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = Outbox::new(0, dir.path().join("spool"), 60);
        o.push(rec(99)).unwrap(); // an empty outbox takes one record whatever the limit
        o.push("x".repeat(100).into_bytes()).unwrap(); // and so does an empty spool
        assert_eq!(o.take(1 << 20).unwrap().len(), 2);
        let mut pushed = 0;
        let refused = loop {
            match o.push(rec(pushed)) {
                Ok(()) => pushed += 1,
                Err(PushError::Full(r)) => break r,
                Err(PushError::Io(e)) => panic!("{e}"),
            }
        };
        assert_eq!(
            pushed, 4,
            "one in memory (the outbox was empty), three 18-byte lines in 60 bytes of spool"
        );
        assert_eq!(refused, rec(4));
        let got = o.take(1 << 20).unwrap();
        assert_eq!(got, (0..4).map(rec).collect::<Vec<_>>());
        o.push(refused).unwrap();
        assert_eq!(o.take(1 << 20).unwrap(), vec![rec(4)]);
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;

    #[test]
    fn random_pushes_and_takes_keep_order() {
        let dir = tempfile::tempdir().unwrap();
        for seed in 0..200u64 {
            let mut rng = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            let mut next = || {
                rng = rng
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (rng >> 33) as usize
            };
            let mut o = Outbox::new(next() % 200, dir.path().join(format!("s{seed}")), 1 << 20);
            let (mut pushed, mut seen) = (0u32, Vec::new());
            for _ in 0..300 {
                if next() % 3 == 0 {
                    seen.extend(o.take(next() % 100).unwrap());
                } else {
                    o.push(
                        format!("{{\"i\":{pushed},\"pad\":\"{}\"}}", "x".repeat(next() % 30))
                            .into_bytes(),
                    )
                    .unwrap();
                    pushed += 1;
                }
            }
            loop {
                let got = o.take(50).unwrap();
                if got.is_empty() {
                    break;
                }
                seen.extend(got);
            }
            let idx: Vec<u32> = seen
                .iter()
                .map(|r| {
                    serde_json::from_slice::<serde_json::Value>(r).unwrap()["i"]
                        .as_u64()
                        .unwrap() as u32
                })
                .collect();
            assert_eq!(idx, (0..pushed).collect::<Vec<_>>(), "seed {seed}");
        }
    }
}
