//! Cutting an output into lines and lines into numbered entries (by size, and by time so
//! a quiet command still shows up live), and handing them to the outbox.

use super::*;

#[derive(Clone)]
pub(super) struct Framing {
    pub(super) flush_interval: Duration,
    pub(super) entry_bytes: usize,
    pub(super) started: Instant,
}

/// One text entry as JSON: `lines` are (value, delimiter).
pub(super) fn entry_json(
    index: u64,
    sequence: u64,
    started: Instant,
    lines: &[(String, &str)],
) -> Record {
    let lines = lines.iter().map(|(v, d)| {
        let d = Delimiter::parse(d).expect("the framer only makes real delimiters");
        (v.clone(), d)
    });
    let entry = LogEntry {
        sequence: Some(sequence),
        time_offset: Some(started.elapsed().as_micros() as f64 / 1e6),
        ..LogEntry::text(index, lines)
    };
    serde_json::to_vec(&entry).expect("entries serialise")
}

/// Queues `records`, waiting for room when the outbox is full. Err(n): the spool file
/// could not be written; the first `n` records were queued.
pub(super) async fn push_all(pipe: &Pipe, records: Vec<Record>) -> Result<(), u64> {
    let mut warned = false;
    for (queued, mut r) in records.into_iter().enumerate() {
        loop {
            if pipe.failed.load(Ordering::Relaxed) {
                return Ok(());
            }
            let room = pipe.room.notified();
            let pushed = pipe.state.lock().unwrap().outbox.push(r);
            match pushed {
                Ok(()) => {
                    pipe.ready.notify_one();
                    break;
                }
                Err(PushError::Full(back)) => {
                    if !warned {
                        eprintln!(
                            "logdog: {}: the spool is full; pausing the command's output until the coordinator catches up",
                            pipe.name
                        );
                        warned = true;
                    }
                    r = back;
                    room.await;
                }
                Err(PushError::Io(e)) => {
                    eprintln!(
                        "logdog: {}: cannot write the spool file ({e}); the rest of this output is not uploaded",
                        pipe.name
                    );
                    return Err(queued as u64);
                }
            }
        }
    }
    Ok(())
}

pub(super) fn finish(pipe: &Pipe, total: u64) {
    pipe.state.lock().unwrap().total = Some(total);
    pipe.ready.notify_one();
}

/// Cuts a byte stream into lines and lines into entries.
pub(super) struct Framer {
    pub(super) framing: Framing,
    /// Bytes of a line not ended yet.
    pub(super) partial: Vec<u8>,
    /// Complete lines (or flushed parts) waiting to become an entry.
    pub(super) lines: Vec<(String, &'static str)>,
    pub(super) bytes: usize,
    /// When the oldest byte in `partial` or `lines` arrived.
    pub(super) oldest: Option<Instant>,
    pub(super) next_index: u64,
    pub(super) sequence: u64,
    pub(super) sealed: Vec<Record>,
}

impl Framer {
    fn new(framing: Framing) -> Self {
        Self {
            framing,
            partial: Vec::new(),
            lines: Vec::new(),
            bytes: 0,
            oldest: None,
            next_index: 0,
            sequence: 0,
            sealed: Vec::new(),
        }
    }

    fn feed(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.oldest.get_or_insert_with(Instant::now);
        let mut rest = data;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            self.partial.extend_from_slice(&rest[..pos]);
            rest = &rest[pos + 1..];
            let delimiter = if self.partial.last() == Some(&b'\r') {
                self.partial.pop();
                "\r\n"
            } else {
                "\n"
            };
            while self.partial.len() > self.framing.entry_bytes {
                self.split_part();
            }
            let value = String::from_utf8_lossy(&self.partial).into_owned();
            self.partial.clear();
            self.add_line(value, delimiter);
        }
        self.partial.extend_from_slice(rest);
        // A line longer than an entry goes out in parts, joined again when read.
        while self.partial.len() >= self.framing.entry_bytes {
            self.split_part();
        }
    }

    /// Sends the first `entry_bytes` of the unfinished line as a part of it.
    fn split_part(&mut self) {
        let cut = utf8_cut(&self.partial[..self.framing.entry_bytes]);
        let part: Vec<u8> = self.partial.drain(..cut).collect();
        self.add_line(String::from_utf8_lossy(&part).into_owned(), "");
    }

    fn add_line(&mut self, value: String, delimiter: &'static str) {
        let size = value.len() + delimiter.len();
        if self.bytes + size > self.framing.entry_bytes {
            self.seal();
        }
        self.bytes += size;
        self.lines.push((value, delimiter));
        if self.bytes >= self.framing.entry_bytes {
            self.seal();
        }
    }

    fn seal(&mut self) {
        if self.lines.is_empty() {
            return;
        }
        let lines = std::mem::take(&mut self.lines);
        self.sealed.push(entry_json(
            self.next_index,
            self.sequence,
            self.framing.started,
            &lines,
        ));
        self.next_index += 1;
        self.sequence += lines.len() as u64;
        self.bytes = 0;
        if self.partial.is_empty() {
            self.oldest = None;
        }
    }

    /// When what is waiting must go out.
    fn deadline(&self) -> Option<Instant> {
        self.oldest.map(|t| t + self.framing.flush_interval)
    }

    /// Sends everything waiting, an unfinished line too (with an empty delimiter: the rest
    /// of the line follows in a later entry). At the end of the output, `eof` also sends a
    /// trailing incomplete UTF-8 sequence.
    fn flush(&mut self, eof: bool) {
        if !self.partial.is_empty() {
            let cut = if eof {
                self.partial.len()
            } else {
                utf8_cut(&self.partial)
            };
            if cut > 0 {
                let part: Vec<u8> = self.partial.drain(..cut).collect();
                self.add_line(String::from_utf8_lossy(&part).into_owned(), "");
            }
        }
        self.seal();
        self.oldest = if self.partial.is_empty() {
            None
        } else {
            Some(Instant::now())
        };
    }
}

/// The longest prefix of `b` that does not end inside a UTF-8 sequence (invalid bytes are
/// replaced when converted; only a character cut short at the end is held back).
pub(super) fn utf8_cut(b: &[u8]) -> usize {
    let len = b.len();
    for back in 1..=len.min(4) {
        let byte = b[len - back];
        if byte & 0b1100_0000 == 0b1000_0000 {
            continue; // a continuation byte: its lead is further back
        }
        let want = match byte {
            0x00..=0x7f => 1,
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            _ => 4,
        };
        return if back < want { len - back } else { len };
    }
    len
}

/// Reads `src` to its end, copying it to `tee`, and queues its entries on `pipe`.
pub(super) async fn produce<R: AsyncRead + Unpin>(
    mut src: R,
    mut tee: Tee,
    pipe: Arc<Pipe>,
    framing: Framing,
) {
    let mut framer = Framer::new(framing);
    let mut buf = vec![0u8; 64 * 1024];
    // Set when the spool failed: the entries queued (the stream ends there).
    let mut queued_until: Option<u64> = None;
    loop {
        let deadline = framer.deadline();
        let read = tokio::select! {
            r = src.read(&mut buf) => Some(r),
            _ = sleep_until(deadline), if deadline.is_some() => None,
        };
        match read {
            None => framer.flush(false),
            Some(Ok(0)) => break,
            Some(Ok(n)) => {
                if let Some(t) = tee.as_mut() {
                    if t.write_all(&buf[..n]).await.is_err() || t.flush().await.is_err() {
                        tee = None;
                    }
                }
                framer.feed(&buf[..n]);
            }
            Some(Err(e)) => {
                eprintln!("logdog: {}: reading the output: {e}", pipe.name);
                break;
            }
        }
        let sealed = std::mem::take(&mut framer.sealed);
        if !sealed.is_empty() && queued_until.is_none() {
            let first = framer.next_index - sealed.len() as u64;
            if let Err(n) = push_all(&pipe, sealed).await {
                queued_until = Some(first + n);
            }
        }
    }
    framer.flush(true);
    let sealed = std::mem::take(&mut framer.sealed);
    if queued_until.is_none() {
        let first = framer.next_index - sealed.len() as u64;
        if let Err(n) = push_all(&pipe, sealed).await {
            queued_until = Some(first + n);
        }
    }
    // The stream ends after what was queued.
    finish(&pipe, queued_until.unwrap_or(framer.next_index));
}

pub(super) async fn sleep_until(deadline: Option<Instant>) {
    if let Some(d) = deadline {
        tokio::time::sleep_until(d.into()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framer(entry_bytes: usize) -> Framer {
        Framer::new(Framing {
            flush_interval: Duration::from_millis(100),
            entry_bytes,
            started: Instant::now(),
        })
    }

    type Lines = Vec<(String, String)>;

    fn lines(records: &[Record]) -> Vec<(u64, u64, Lines)> {
        records
            .iter()
            .map(|r| {
                let e = serde_json::from_slice::<LogEntry>(r)
                    .unwrap()
                    .into_entry()
                    .unwrap();
                let logdog_schema::wire::Content::Text(ls) = e.content else {
                    panic!("a text entry")
                };
                let ls = ls
                    .into_iter()
                    .map(|l| (l.value, l.delimiter.as_str().to_owned()))
                    .collect();
                (e.stream_index, e.sequence, ls)
            })
            .collect()
    }

    fn l(v: &str, d: &str) -> (String, String) {
        (v.into(), d.into())
    }

    #[test]
    fn lines_keep_their_delimiters_and_entries_number_themselves() {
        let mut f = framer(1 << 20);
        f.feed(b"one\r\ntw");
        f.feed(b"o\nthree");
        f.flush(false);
        f.feed(b" more\n");
        f.flush(true);
        assert_eq!(
            lines(&f.sealed),
            vec![
                (0, 0, vec![l("one", "\r\n"), l("two", "\n"), l("three", "")]),
                (1, 3, vec![l(" more", "\n")]),
            ]
        );
    }

    #[test]
    fn entries_are_cut_by_size_and_long_lines_split() {
        let mut f = framer(10);
        f.feed(b"aaaa\nbbbb\ncccc\n0123456789abcdefghij\n");
        f.flush(true);
        let got = lines(&f.sealed);
        assert_eq!(
            got,
            vec![
                (0, 0, vec![l("aaaa", "\n"), l("bbbb", "\n")]),
                (1, 2, vec![l("cccc", "\n")]),
                (2, 3, vec![l("0123456789", "")]),
                (3, 4, vec![l("abcdefghij", "\n")]),
            ]
        );
    }

    #[test]
    fn a_flush_never_splits_a_utf8_character() {
        let mut f = framer(1 << 20);
        let snow = "☃".as_bytes();
        f.feed(&[b'x', snow[0], snow[1]]);
        f.flush(false);
        f.feed(&[snow[2], b'\n']);
        f.flush(true);
        assert_eq!(
            lines(&f.sealed),
            vec![(0, 0, vec![l("x", "")]), (1, 1, vec![l("☃", "\n")])]
        );
    }
}
