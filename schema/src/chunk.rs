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
    }
}
