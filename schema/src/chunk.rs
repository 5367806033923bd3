//! The compact binary form of a chunk: a run of consecutive entries of one stream.
//!
//! Layout: a zero byte, then the entries as binary records (`wire::entry_record`: a u32
//! little-endian length, then the entry's postcard encoding). Those are the bytes of a
//! binary Get's answer and of an archive's entries file, so a read or an archive that takes
//! a whole chunk copies it as it is, and compaction joins chunks without decoding them.
//!
//! Chunks written before this layout are a postcard `Vec<Entry>`; their first byte is the
//! entry count's varint, never zero (a chunk is never empty), so both read the same.

use crate::wire::Entry;

/// The first byte of a chunk in the records layout.
const RECORDS: u8 = 0;

/// Encodes a run of entries (which must be consecutive, ascending).
pub fn encode(entries: &[Entry]) -> Vec<u8> {
    // Each record is its payload and at most a few dozen bytes of lengths and numbers:
    // sized once, not grown (and copied) by doubling.
    let payload: u64 = entries.iter().map(|e| e.content.payload_bytes()).sum();
    let mut out = Vec::with_capacity(1 + payload as usize + entries.len() * 40);
    out.push(RECORDS);
    for e in entries {
        crate::wire::push_record(&mut out, e);
    }
    out
}

/// The chunk's records (`wire::entry_record` one after another), as they are stored; None
/// for a chunk in the older layout.
pub fn record_bytes(data: &[u8]) -> Option<&[u8]> {
    match data.split_first() {
        Some((&RECORDS, rest)) => Some(rest),
        _ => None,
    }
}

/// Decodes a chunk written by `encode` (or in the older layout).
pub fn decode(data: &[u8]) -> Result<Vec<Entry>, String> {
    match record_bytes(data) {
        Some(records) => crate::wire::decode_entries(records),
        None => postcard::from_bytes(data).map_err(|e| format!("a chunk is not entries: {e}")),
    }
}

/// One entry of a chunk as `records` sees it: its index, its payload size (as Get's
/// `bytes` cap counts it) and its encoded bytes inside the chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawEntry<'a> {
    pub stream_index: u64,
    pub payload_bytes: u64,
    /// The entry's postcard encoding (a record's bytes after its length).
    pub encoded: &'a [u8],
}

/// The entries of a chunk, each with its encoded bytes, read without copying any line or
/// data into owned values.
pub fn records(data: &[u8]) -> Result<Vec<RawEntry<'_>>, String> {
    let mut out = Vec::new();
    match record_bytes(data) {
        Some(mut rest) => {
            while !rest.is_empty() {
                let (body, after) = view::split_record(rest)
                    .ok_or_else(|| "a chunk's record is cut short".to_owned())?;
                out.push(raw(body)?);
                rest = after;
            }
        }
        None => {
            // A `Vec<Entry>`: the count, then each entry's encoding.
            let mut rest = data;
            let n = view::varint(&mut rest)?;
            for _ in 0..n {
                let (_, after) = view::Entry::scan(rest)?;
                out.push(raw(&rest[..rest.len() - after.len()])?);
                rest = after;
            }
        }
    }
    Ok(out)
}

fn raw(encoded: &[u8]) -> Result<RawEntry<'_>, String> {
    let (e, _) = view::Entry::scan(encoded)?;
    Ok(RawEntry {
        stream_index: e.stream_index,
        payload_bytes: e.payload_bytes,
        encoded,
    })
}

/// One chunk holding the entries of `chunks` (consecutive runs, in order).
pub fn concat(chunks: &[&[u8]]) -> Result<Vec<u8>, String> {
    let mut out = vec![RECORDS];
    for c in chunks {
        match record_bytes(c) {
            Some(records) => out.extend_from_slice(records),
            None => out.extend_from_slice(&encode(&decode(c)?)[1..]),
        }
    }
    Ok(out)
}

/// Entries read in place: the fields a reader needs, borrowed from the encoded bytes, with
/// no allocation per entry. The parser follows postcard's encoding of `wire::Entry` field
/// by field (varints, zigzag for signed integers, length-prefixed strings and bytes, enum
/// variants by index), and the tests hold it to postcard's own output.
pub mod view {
    /// A record at the front of `bytes` (`wire::entry_record`): the entry's encoding and
    /// what follows it; None while it is incomplete.
    pub fn split_record(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
        let (len, rest) = bytes.split_first_chunk::<4>()?;
        let len = u32::from_le_bytes(*len) as usize;
        (rest.len() >= len).then(|| rest.split_at(len))
    }

    /// The entry of the record at the front of `bytes`, borrowed, and the bytes the record
    /// took; None while it is incomplete.
    pub fn record(bytes: &[u8]) -> Result<Option<(Entry<'_>, usize)>, String> {
        let Some((body, _)) = split_record(bytes) else {
            return Ok(None);
        };
        let (e, rest) = Entry::parse(body)?;
        if !rest.is_empty() {
            return Err("a record holds bytes after its entry".into());
        }
        Ok(Some((e, 4 + body.len())))
    }

    #[derive(Debug, Clone, Copy)]
    pub struct Entry<'a> {
        pub stream_index: u64,
        pub prefix_index: Option<u64>,
        pub sequence: u64,
        /// Microseconds after the descriptor timestamp.
        pub time_offset_us: i64,
        pub content: Content<'a>,
        /// A datagram's piece, when it is one.
        pub partial: Option<crate::wire::Partial>,
        /// The payload's size, as Get's `bytes` cap counts it.
        pub payload_bytes: u64,
    }

    #[derive(Debug, Clone, Copy)]
    pub enum Content<'a> {
        Text(Lines<'a>),
        Binary(&'a [u8]),
        Datagram(&'a [u8]),
    }

    /// The lines of a text entry, parsed as they are iterated.
    #[derive(Debug, Clone, Copy)]
    pub struct Lines<'a> {
        count: u64,
        bytes: &'a [u8],
    }

    /// One line: its value and its delimiter (`\n`, `\r\n`, or empty), as stored.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Line<'a> {
        pub value: &'a [u8],
        pub delimiter: &'a [u8],
    }

    impl<'a> Iterator for Lines<'a> {
        type Item = Line<'a>;
        fn next(&mut self) -> Option<Line<'a>> {
            if self.count == 0 {
                return None;
            }
            self.count -= 1;
            // Checked when the entry was parsed.
            let value = take_bytes(&mut self.bytes).ok()?;
            let delimiter = take_bytes(&mut self.bytes).ok()?;
            Some(Line { value, delimiter })
        }
    }

    fn cut() -> String {
        "an entry is cut short".into()
    }

    /// A postcard varint (LEB128, at most ten bytes for a u64).
    #[inline]
    pub fn varint(b: &mut &[u8]) -> Result<u64, String> {
        // Most are one byte (small indices, lengths under 128).
        if let Some((&byte, rest)) = b.split_first() {
            if byte < 0x80 {
                *b = rest;
                return Ok(u64::from(byte));
            }
        }
        long_varint(b)
    }

    #[inline(never)]
    fn long_varint(b: &mut &[u8]) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let (&byte, rest) = b.split_first().ok_or_else(cut)?;
            *b = rest;
            if shift == 63 && byte > 1 {
                return Err("a varint overflows".into());
            }
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("a varint overflows".into())
    }

    #[inline]
    fn take_bytes<'a>(b: &mut &'a [u8]) -> Result<&'a [u8], String> {
        let n = varint(b)? as usize;
        if b.len() < n {
            return Err(cut());
        }
        let (v, rest) = b.split_at(n);
        *b = rest;
        Ok(v)
    }

    #[inline]
    fn take_option(b: &mut &[u8]) -> Result<bool, String> {
        let (&tag, rest) = b.split_first().ok_or_else(cut)?;
        *b = rest;
        match tag {
            0 => Ok(false),
            1 => Ok(true),
            t => Err(format!("an option's tag is {t}")),
        }
    }

    impl<'a> Entry<'a> {
        /// The entry encoded at the front of `b` and the bytes after it. Strings are
        /// checked to be UTF-8 and delimiters to be one of the three, as decoding them
        /// into `wire::Entry` would.
        pub fn parse(b: &'a [u8]) -> Result<(Self, &'a [u8]), String> {
            Self::read::<true>(b)
        }

        /// `parse` without the checks of the lines' contents, for readers that pass
        /// stored records on as they are and need only their index and size (the
        /// encoding's structure is still checked: nothing is misread).
        pub fn scan(b: &'a [u8]) -> Result<(Self, &'a [u8]), String> {
            Self::read::<false>(b)
        }

        fn read<const CHECK: bool>(mut b: &'a [u8]) -> Result<(Self, &'a [u8]), String> {
            let b = &mut b;
            let stream_index = varint(b)?;
            let prefix_index = if take_option(b)? {
                Some(varint(b)?)
            } else {
                None
            };
            let sequence = varint(b)?;
            let zigzag = varint(b)?;
            let time_offset_us = (zigzag >> 1) as i64 ^ -((zigzag & 1) as i64);
            let mut payload_bytes = 0;
            let mut partial = None;
            let content = match varint(b)? {
                0 => {
                    let count = varint(b)?;
                    let start = *b;
                    for _ in 0..count {
                        let value = take_bytes(b)?;
                        let d = take_bytes(b)?;
                        if CHECK {
                            std::str::from_utf8(value).map_err(|e| format!("a line: {e}"))?;
                            if !matches!(d, b"\n" | b"\r\n" | b"") {
                                return Err(format!(
                                    "invalid delimiter {:?}",
                                    String::from_utf8_lossy(d)
                                ));
                            }
                        }
                        payload_bytes += (value.len() + d.len()) as u64;
                    }
                    let used = start.len() - b.len();
                    Content::Text(Lines {
                        count,
                        bytes: &start[..used],
                    })
                }
                1 => {
                    let data = take_bytes(b)?;
                    payload_bytes = data.len() as u64;
                    Content::Binary(data)
                }
                2 => {
                    let data = take_bytes(b)?;
                    if take_option(b)? {
                        let index = u32::try_from(varint(b)?)
                            .map_err(|_| "a partial's index overflows".to_string())?;
                        let size = varint(b)?;
                        let last = take_option(b)?; // a bool: 0 or 1
                        partial = Some(crate::wire::Partial { index, size, last });
                    }
                    payload_bytes = data.len() as u64;
                    Content::Datagram(data)
                }
                v => return Err(format!("unknown content variant {v}")),
            };
            Ok((
                Self {
                    stream_index,
                    prefix_index,
                    sequence,
                    time_offset_us,
                    content,
                    partial,
                    payload_bytes,
                },
                *b,
            ))
        }
    }

    impl Entry<'_> {
        /// Appends the entry's JSON form to `out`, byte for byte what `wire::EntryJson`
        /// writes for the decoded entry, from the record in place: Get's JSON answers are
        /// written from stored records without decoding them into owned entries, and line
        /// text is checked and escaped in one pass (`json_str`), so an entry read with
        /// `scan` is checked here: a line that is not UTF-8 or an unknown delimiter is an
        /// error.
        pub fn write_json(&self, out: &mut Vec<u8>) -> Result<(), String> {
            use base64::engine::general_purpose::STANDARD as B64;
            use base64::Engine as _;
            use serde_json::ser::{CompactFormatter, Formatter as _};
            let mut f = CompactFormatter;
            out.extend_from_slice(br#"{"stream_index":"#);
            f.write_u64(out, self.stream_index)
                .map_err(|e| e.to_string())?;
            out.extend_from_slice(br#","prefix_index":"#);
            match self.prefix_index {
                Some(p) => f.write_u64(out, p).map_err(|e| e.to_string())?,
                None => out.extend_from_slice(b"null"),
            }
            out.extend_from_slice(br#","sequence":"#);
            f.write_u64(out, self.sequence).map_err(|e| e.to_string())?;
            out.extend_from_slice(br#","time_offset":"#);
            f.write_f64(out, self.time_offset_us as f64 / 1e6)
                .map_err(|e| e.to_string())?;
            match self.content {
                Content::Text(lines) => {
                    out.extend_from_slice(br#","text":{"lines":["#);
                    for (i, l) in lines.enumerate() {
                        if i > 0 {
                            out.push(b',');
                        }
                        out.extend_from_slice(br#"{"value":"#);
                        json_str(out, l.value)?;
                        out.extend_from_slice(match l.delimiter {
                            b"\n" => br#","delimiter":"\n"}"#,
                            b"\r\n" => br#","delimiter":"\r\n"}"#,
                            b"" => br#","delimiter":""}"#,
                            d => return Err(format!("invalid delimiter {d:?}")),
                        });
                    }
                    out.extend_from_slice(b"]}}");
                }
                Content::Binary(data) | Content::Datagram(data) => {
                    let datagram = matches!(self.content, Content::Datagram(_));
                    out.extend_from_slice(if datagram {
                        br#","datagram":{"data":""#
                    } else {
                        br#","binary":{"data":""#
                    });
                    let at = out.len();
                    out.resize(at + data.len().div_ceil(3) * 4, 0);
                    let n = B64
                        .encode_slice(data, &mut out[at..])
                        .map_err(|e| e.to_string())?;
                    out.truncate(at + n);
                    out.push(b'"');
                    if datagram {
                        out.extend_from_slice(br#","partial":"#);
                        serde_json::to_writer(&mut *out, &self.partial)
                            .map_err(|e| e.to_string())?;
                    }
                    out.extend_from_slice(b"}}");
                }
            }
            Ok(())
        }
    }

    /// Appends `text` to `out` as a JSON string, escaped exactly as serde_json escapes it
    /// (`\"`, `\\`, `\b \f \n \r \t`, other control characters as `\u00XX`), after
    /// checking it is UTF-8. Eight bytes are looked at a time: a run of ASCII that needs no
    /// escape (the usual line) is copied whole.
    pub fn json_str(out: &mut Vec<u8>, text: &[u8]) -> Result<(), String> {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGH: u64 = 0x8080_8080_8080_8080;
        /// Bytes of `w` that are zero have their high bit set in the result (exact when no
        /// byte of `w` is 0x80 or above, which the callers check first).
        #[inline]
        fn zero_bytes(w: u64) -> u64 {
            w.wrapping_sub(ONES) & !w & HIGH
        }
        out.reserve(text.len() + 2);
        out.push(b'"');
        let mut rest = text;
        loop {
            // The clean run at the front of `rest`.
            let mut clean = 0;
            while let Some(chunk) = rest.get(clean..clean + 8) {
                let w = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
                let special = (w & HIGH)
                    | zero_bytes(w ^ (ONES * b'"' as u64))
                    | zero_bytes(w ^ (ONES * b'\\' as u64))
                    // A byte below 0x20: (b - 0x20) borrows into its high bit.
                    | (w.wrapping_sub(ONES * 0x20) & !w & HIGH);
                if special != 0 {
                    break;
                }
                clean += 8;
            }
            out.extend_from_slice(&rest[..clean]);
            rest = &rest[clean..];
            // Byte by byte up to the next eight-byte boundary of the run (or the end).
            let mut i = 0;
            while i < rest.len() && i < 8 {
                let b = rest[i];
                if b >= 0x80 {
                    // A multi-byte character: checked (and copied) whole.
                    let width = match b {
                        0xc2..=0xdf => 2,
                        0xe0..=0xef => 3,
                        0xf0..=0xf4 => 4,
                        _ => return Err("a line is not UTF-8".into()),
                    };
                    let ch = rest.get(i..i + width).ok_or("a line is not UTF-8")?;
                    std::str::from_utf8(ch).map_err(|_| "a line is not UTF-8")?;
                    out.extend_from_slice(ch);
                    i += width;
                    continue;
                }
                match b {
                    b'"' => out.extend_from_slice(b"\\\""),
                    b'\\' => out.extend_from_slice(b"\\\\"),
                    b'\n' => out.extend_from_slice(b"\\n"),
                    b'\r' => out.extend_from_slice(b"\\r"),
                    b'\t' => out.extend_from_slice(b"\\t"),
                    0x08 => out.extend_from_slice(b"\\b"),
                    0x0c => out.extend_from_slice(b"\\f"),
                    0..=0x1f => {
                        const HEX: &[u8; 16] = b"0123456789abcdef";
                        out.extend_from_slice(b"\\u00");
                        out.push(HEX[(b >> 4) as usize]);
                        out.push(HEX[(b & 0xf) as usize]);
                    }
                    _ => out.push(b),
                }
                i += 1;
            }
            rest = &rest[i..];
            if rest.is_empty() {
                break;
            }
        }
        out.push(b'"');
        Ok(())
    }

    impl<'a> Content<'a> {
        /// The payload's pieces in order (each line's value and delimiter, or the data),
        /// as the archive's data file and the text form hold them.
        pub fn for_each_piece(&self, mut f: impl FnMut(&'a [u8])) {
            match self {
                Content::Text(lines) => {
                    for l in *lines {
                        f(l.value);
                        f(l.delimiter);
                    }
                }
                Content::Binary(d) | Content::Datagram(d) => f(d),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Content, Delimiter, Line, Partial};

    fn samples() -> Vec<Entry> {
        vec![
            Entry {
                stream_index: 7,
                prefix_index: Some(3),
                sequence: 10,
                time_offset_us: 1_250_000,
                content: Content::Text(vec![
                    Line {
                        value: "héllo".into(),
                        delimiter: Delimiter::CrLf,
                    },
                    Line {
                        value: "x".repeat(300),
                        delimiter: Delimiter::None,
                    },
                ]),
            },
            Entry {
                stream_index: 8,
                prefix_index: None,
                sequence: u64::MAX,
                time_offset_us: i64::MIN,
                content: Content::Datagram {
                    data: vec![0, 255],
                    partial: Some(Partial {
                        index: u32::MAX,
                        size: 2,
                        last: true,
                    }),
                },
            },
            Entry {
                stream_index: 9,
                prefix_index: None,
                sequence: 13,
                time_offset_us: -5,
                content: Content::Binary(vec![1, 2, 3]),
            },
            Entry {
                stream_index: 10,
                prefix_index: Some(u64::MAX),
                sequence: 14,
                time_offset_us: 0,
                content: Content::Datagram {
                    data: vec![],
                    partial: None,
                },
            },
        ]
    }

    #[test]
    fn round_trip() {
        let entries = samples();
        let bytes = encode(&entries);
        assert_eq!(bytes[0], RECORDS);
        assert_eq!(decode(&bytes).unwrap(), entries);
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        // The records are Get's binary form, byte for byte.
        assert_eq!(
            record_bytes(&bytes).unwrap(),
            crate::wire::encode_entries(&entries)
        );
    }

    /// A chunk in the layout written before records (a postcard `Vec<Entry>`) reads the
    /// same, through `decode`, `records` and `concat`.
    #[test]
    fn older_chunks_read_the_same() {
        let entries = samples();
        let old = postcard::to_stdvec(&entries).unwrap();
        assert_ne!(old[0], RECORDS);
        assert_eq!(record_bytes(&old), None);
        assert_eq!(decode(&old).unwrap(), entries);
        assert_eq!(records(&old).unwrap(), records(&encode(&entries)).unwrap());
        let (a, b) = entries.split_at(2);
        let joined = concat(&[&postcard::to_stdvec(a).unwrap(), &encode(b)]).unwrap();
        assert_eq!(joined, encode(&entries));
        assert!(records(&old[..old.len() - 1]).is_err());
    }

    /// A view writes the JSON `EntryJson` writes for the decoded entry, byte for byte
    /// (escapes, every field, both datagram forms), and reads every field postcard wrote.
    #[test]
    fn views_write_the_entries_json() {
        let mut entries = samples();
        entries.push(Entry {
            stream_index: 11,
            prefix_index: None,
            sequence: 15,
            time_offset_us: 1,
            content: Content::Text(vec![Line {
                value: "\"quoted\" \\ \u{1b}[31mred\t\u{7f} ✓".into(),
                delimiter: Delimiter::Lf,
            }]),
        });
        for e in &entries {
            let rec = crate::wire::entry_record(e);
            let (v, used) = view::record(&rec).unwrap().unwrap();
            assert_eq!(used, rec.len());
            assert_eq!(
                (v.stream_index, v.prefix_index, v.sequence, v.time_offset_us),
                (e.stream_index, e.prefix_index, e.sequence, e.time_offset_us)
            );
            if let Content::Datagram { partial, .. } = &e.content {
                assert_eq!(&v.partial, partial);
            }
            let mut json = Vec::new();
            v.write_json(&mut json).unwrap();
            assert_eq!(
                String::from_utf8(json).unwrap(),
                serde_json::to_string(&crate::wire::EntryJson(e)).unwrap()
            );
        }
    }

    /// `json_str` escapes as serde_json does, every ASCII byte at every position of an
    /// eight-byte word, and refuses what is not UTF-8.
    #[test]
    fn json_strings_match_serde_json() {
        let mut texts: Vec<String> = vec![String::new(), "plain".into(), "héllo wörld ✓ 🐕".into()];
        for b in 0u8..0x80 {
            for at in 0..10 {
                let mut t = "x".repeat(at);
                t.push(b as char);
                t.push_str("tail-of-the-line");
                texts.push(t);
            }
        }
        for t in &texts {
            let mut out = Vec::new();
            view::json_str(&mut out, t.as_bytes()).unwrap();
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(t).unwrap(),
                "{t:?}"
            );
        }
        for bad in [
            &b"abc\xc0\x80"[..],
            b"\x80",
            b"abcdefgh\xe2\x82",
            b"\xed\xa0\x80",
            b"\xf5\x80\x80\x80",
            b"ok ok ok \xff",
        ] {
            assert!(view::json_str(&mut Vec::new(), bad).is_err(), "{bad:?}");
        }
    }

    /// `records` finds each entry's own encoding and size; the view reads what postcard
    /// wrote, field for field.
    #[test]
    fn records_and_views_match_postcard() {
        let entries = samples();
        let bytes = encode(&entries);
        let raw = records(&bytes).unwrap();
        assert_eq!(raw.len(), entries.len());
        for (r, e) in raw.iter().zip(&entries) {
            assert_eq!(r.stream_index, e.stream_index);
            assert_eq!(r.payload_bytes, e.content.payload_bytes());
            assert_eq!(r.encoded, postcard::to_stdvec(e).unwrap());
            let (v, rest) = view::Entry::parse(r.encoded).unwrap();
            assert!(rest.is_empty());
            assert_eq!(v.payload_bytes, e.content.payload_bytes());
            let (scanned, rest) = view::Entry::scan(r.encoded).unwrap();
            assert!(rest.is_empty());
            assert_eq!(
                (scanned.stream_index, scanned.payload_bytes),
                (e.stream_index, e.content.payload_bytes())
            );
            let mut pieces = Vec::new();
            v.content.for_each_piece(|p| pieces.extend_from_slice(p));
            let want: Vec<u8> = match &e.content {
                Content::Text(lines) => lines
                    .iter()
                    .flat_map(|l| [l.value.as_bytes(), l.delimiter.as_bytes()].concat())
                    .collect(),
                Content::Binary(d) | Content::Datagram { data: d, .. } => d.clone(),
            };
            assert_eq!(pieces, want);
        }
        assert_eq!(raw[0].payload_bytes, ("héllo\r\n".len() + 300) as u64);
        assert!(records(&bytes[..bytes.len() - 1]).is_err());
        // Every cut of an entry's encoding is refused, never misread.
        for e in &entries {
            let enc = postcard::to_stdvec(e).unwrap();
            for n in 0..enc.len() {
                assert!(view::Entry::parse(&enc[..n]).is_err(), "{e:?} cut at {n}");
                assert!(view::Entry::scan(&enc[..n]).is_err(), "{e:?} cut at {n}");
            }
        }
    }

    /// A record read through the view: the entry's index and content as written, the
    /// record's length, None for a record cut short, an error for one that is not an
    /// entry (a bad delimiter, an unknown variant, bad UTF-8).
    #[test]
    fn a_record_through_the_view() {
        let e = &samples()[0];
        let rec = crate::wire::entry_record(e);
        let mut bytes = rec.clone();
        bytes.extend_from_slice(b"next");
        let (v, used) = view::record(&bytes).unwrap().unwrap();
        assert_eq!((v.stream_index, used), (7, rec.len()));
        match v.content {
            view::Content::Text(mut lines) => {
                let l = lines.next().unwrap();
                assert_eq!((l.value, l.delimiter), ("héllo".as_bytes(), &b"\r\n"[..]));
                assert_eq!(lines.next().unwrap().value.len(), 300);
                assert!(lines.next().is_none());
            }
            _ => panic!("not text"),
        }
        assert!(view::record(&rec[..rec.len() - 1]).unwrap().is_none());
        assert!(view::record(&[1, 0, 0, 0, 0xff]).is_err());
        // Text, one line "a" with the delimiter "x".
        let bad = [9, 0, 9, 0, 0, 1, 1, b'a', 1, b'x'];
        assert!(view::Entry::parse(&bad).unwrap_err().contains("delimiter"));
        // A scan reads its structure (and its size) all the same.
        assert_eq!(view::Entry::scan(&bad).unwrap().0.payload_bytes, 2);
        assert!(view::Entry::parse(&[9, 0, 9, 0, 3]).is_err());
        assert!(view::Entry::parse(&[9, 0, 9, 0, 0, 1, 1, 0xff, 0]).is_err());
        assert!(view::Entry::parse(&[9, 2, 9, 0, 1, 0]).is_err());
    }
}
