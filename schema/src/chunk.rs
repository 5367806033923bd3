//! The compact binary form of a chunk: a run of consecutive entries of one stream.
//!
//! Layout: postcard-encoded `Vec<Entry>` (varint lengths and integers). A chunk is
//! written once per commit and decoded whole when read; chunks stay small because a
//! commit carries at most one request's worth of entries per stream.

use crate::wire::Entry;

/// Encodes a run of entries (which must be consecutive, ascending).
pub fn encode(entries: &[Entry]) -> Vec<u8> {
    postcard::to_stdvec(entries).expect("entries always encode")
}

/// Decodes a chunk written by `encode`.
pub fn decode(data: &[u8]) -> Result<Vec<Entry>, postcard::Error> {
    postcard::from_bytes(data)
}

/// One entry of a chunk as `records` sees it: its index, its payload size (as Get's
/// `bytes` cap counts it) and its encoded bytes inside the chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawEntry<'a> {
    pub stream_index: u64,
    pub payload_bytes: u64,
    pub encoded: &'a [u8],
}

/// The entries of a chunk written by `encode`, each with its encoded bytes, which are
/// exactly the postcard encoding of the `Entry` (what a binary record holds), read without
/// copying any line or data into owned values.
pub fn records(data: &[u8]) -> Result<Vec<RawEntry<'_>>, postcard::Error> {
    // A `Vec<Entry>`: the count (a varint, as for u64), then each entry's encoding.
    let (n, mut rest) = postcard::take_from_bytes::<u64>(data)?;
    let mut out = Vec::with_capacity(n.min(1 << 16) as usize);
    for _ in 0..n {
        let (view, after) = postcard::take_from_bytes::<view::Entry>(rest)?;
        out.push(RawEntry {
            stream_index: view.stream_index,
            payload_bytes: view.content.payload_bytes(),
            encoded: &rest[..rest.len() - after.len()],
        });
        rest = after;
    }
    Ok(out)
}

/// Borrowed mirrors of the wire types, field for field and variant for variant in the
/// same order (postcard is positional), so they read the same bytes.
pub mod view {
    use serde::Deserialize;

    #[derive(Deserialize)]
    pub struct Entry<'a> {
        pub stream_index: u64,
        pub _prefix_index: Option<u64>,
        pub _sequence: u64,
        pub _time_offset_us: i64,
        #[serde(borrow)]
        pub content: Content<'a>,
    }

    #[derive(Deserialize)]
    pub enum Content<'a> {
        Text(#[serde(borrow)] Vec<Line<'a>>),
        Binary(&'a [u8]),
        Datagram {
            data: &'a [u8],
            _partial: Option<crate::wire::Partial>,
        },
    }

    #[derive(Deserialize)]
    pub struct Line<'a> {
        pub value: &'a str,
        pub delimiter: &'a str,
    }

    /// The entry of one binary record (`wire::entry_record`) at the front of `bytes`,
    /// borrowed, and the bytes the record took; None while it is incomplete.
    pub fn record(bytes: &[u8]) -> Result<Option<(Entry<'_>, usize)>, String> {
        crate::wire::decode_record_as(bytes)
    }

    impl Content<'_> {
        pub fn payload_bytes(&self) -> u64 {
            match self {
                Content::Text(lines) => lines
                    .iter()
                    .map(|l| (l.value.len() + l.delimiter.len()) as u64)
                    .sum(),
                Content::Binary(d) | Content::Datagram { data: d, .. } => d.len() as u64,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Content, Line, Partial};

    #[test]
    fn round_trip() {
        let entries = vec![
            Entry {
                stream_index: 7,
                prefix_index: Some(3),
                sequence: 10,
                time_offset_us: 1_250_000,
                content: Content::Text(vec![Line {
                    value: "héllo".into(),
                    delimiter: crate::wire::Delimiter::CrLf,
                }]),
            },
            Entry {
                stream_index: 8,
                prefix_index: None,
                sequence: 11,
                time_offset_us: 0,
                content: Content::Datagram {
                    data: vec![0, 255],
                    partial: Some(Partial {
                        index: 1,
                        size: 2,
                        last: true,
                    }),
                },
            },
        ];
        let bytes = encode(&entries);
        assert_eq!(decode(&bytes).unwrap(), entries);
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        // `records` finds each entry's own encoding and size without decoding it.
        let mut with_binary = entries.clone();
        with_binary.push(Entry {
            stream_index: 9,
            prefix_index: None,
            sequence: 13,
            time_offset_us: -5,
            content: Content::Binary(vec![1, 2, 3]),
        });
        let bytes = encode(&with_binary);
        let raw = records(&bytes).unwrap();
        assert_eq!(raw.len(), 3);
        for (r, e) in raw.iter().zip(&with_binary) {
            assert_eq!(r.stream_index, e.stream_index);
            assert_eq!(r.payload_bytes, e.content.payload_bytes());
            assert_eq!(r.encoded, postcard::to_stdvec(e).unwrap());
        }
        assert_eq!(raw[0].payload_bytes, "héllo\r\n".len() as u64);
        assert!(records(&bytes[..bytes.len() - 1]).is_err());
    }

    /// A binary record read through the borrowed view: the entry's index and content as
    /// written, the record's length, and None for a record cut short.
    #[test]
    fn a_record_through_the_view() {
        let e = Entry {
            stream_index: 42,
            prefix_index: None,
            sequence: 42,
            time_offset_us: 5,
            content: Content::Text(vec![Line {
                value: "héllo".into(),
                delimiter: crate::wire::Delimiter::CrLf,
            }]),
        };
        let rec = crate::wire::entry_record(&e);
        let mut bytes = rec.clone();
        bytes.extend_from_slice(b"next");
        let (v, used) = view::record(&bytes).unwrap().unwrap();
        assert_eq!((v.stream_index, used), (42, rec.len()));
        match v.content {
            view::Content::Text(lines) => {
                assert_eq!((lines[0].value, lines[0].delimiter), ("héllo", "\r\n"))
            }
            _ => panic!("not text"),
        }
        assert!(view::record(&rec[..rec.len() - 1]).unwrap().is_none());
        assert!(view::record(&[1, 0, 0, 0, 0xff]).is_err());
    }
}
