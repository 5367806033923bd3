//! Stored entries (postcard inside log chunks) and the JSON the server writes for them.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::StreamType;

/// One line of a text entry. An empty delimiter means the line continues in the next entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub value: String,
    pub delimiter: Delimiter,
}

/// What ends a line: `\n`, `\r\n`, or nothing (the line continues in the next entry).
/// Serialised as that string, in JSON and in stored chunks alike (so chunks written when
/// this was a plain string read the same); any other string is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Delimiter {
    #[default]
    Lf,
    CrLf,
    None,
}

impl Delimiter {
    pub fn as_str(self) -> &'static str {
        match self {
            Delimiter::Lf => "\n",
            Delimiter::CrLf => "\r\n",
            Delimiter::None => "",
        }
    }

    pub fn as_bytes(self) -> &'static [u8] {
        self.as_str().as_bytes()
    }

    pub fn len(self) -> usize {
        self.as_str().len()
    }

    pub fn is_empty(self) -> bool {
        self == Delimiter::None
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "\n" => Some(Delimiter::Lf),
            "\r\n" => Some(Delimiter::CrLf),
            "" => Some(Delimiter::None),
            _ => None,
        }
    }
}

impl std::fmt::Display for Delimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Delimiter {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Delimiter {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Delimiter;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(r#"a line delimiter: "\n", "\r\n" or """#)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Delimiter, E> {
                Delimiter::parse(v).ok_or_else(|| {
                    E::custom(format!(
                        r#"invalid delimiter {v:?}: "\n", "\r\n" or "" (the line continues)"#
                    ))
                })
            }
        }
        d.deserialize_str(V)
    }
}

impl utoipa::PartialSchema for Delimiter {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(["\n", "\r\n", ""]))
            .description(Some(
                "What ends the line; empty: the line continues in the next entry",
            ))
            .into()
    }
}

impl utoipa::ToSchema for Delimiter {}

/// A piece of a datagram too large for one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Partial {
    pub index: u32,
    pub size: u64,
    pub last: bool,
}

/// What one entry carries; its kind must match the stream type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Content {
    Text(Vec<Line>),
    Binary(Vec<u8>),
    Datagram {
        data: Vec<u8>,
        partial: Option<Partial>,
    },
}

impl Content {
    pub fn stream_type(&self) -> StreamType {
        match self {
            Content::Text(_) => StreamType::Text,
            Content::Binary(_) => StreamType::Binary,
            Content::Datagram { .. } => StreamType::Datagram,
        }
    }

    /// How far this content advances `sequence`: lines, bytes, or datagrams (a partial
    /// datagram counts once, on its last piece).
    pub fn sequence_units(&self) -> u64 {
        match self {
            Content::Text(lines) => lines.len() as u64,
            Content::Binary(data) => data.len() as u64,
            Content::Datagram {
                partial: Some(p), ..
            } if !p.last => 0,
            Content::Datagram { .. } => 1,
        }
    }

    /// Payload size as Get's `bytes` cap counts it.
    pub fn payload_bytes(&self) -> u64 {
        match self {
            Content::Text(lines) => lines
                .iter()
                .map(|l| (l.value.len() + l.delimiter.len()) as u64)
                .sum(),
            Content::Binary(data) | Content::Datagram { data, .. } => data.len() as u64,
        }
    }
}

/// A stored log entry (LogDog `LogEntry`), every field explicit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub stream_index: u64,
    pub prefix_index: Option<u64>,
    pub sequence: u64,
    /// Microseconds after the descriptor timestamp.
    pub time_offset_us: i64,
    pub content: Content,
}

impl Entry {
    /// The JSON form the server returns: every field explicit, lines as objects.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(EntryJson(self)).expect("entries serialise")
    }
}

/// An entry's JSON form, serialised straight to the output (no intermediate `Value`).
#[derive(Debug, Clone, Copy)]
pub struct EntryJson<'a>(pub &'a Entry);

impl Serialize for EntryJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        #[derive(Serialize)]
        struct Lines<'a> {
            lines: &'a [Line],
        }
        #[derive(Serialize)]
        struct Data {
            data: String,
        }
        #[derive(Serialize)]
        struct Datagram<'a> {
            data: String,
            partial: &'a Option<Partial>,
        }
        let e = self.0;
        let mut m = s.serialize_map(Some(5))?;
        m.serialize_entry("stream_index", &e.stream_index)?;
        m.serialize_entry("prefix_index", &e.prefix_index)?;
        m.serialize_entry("sequence", &e.sequence)?;
        m.serialize_entry("time_offset", &(e.time_offset_us as f64 / 1e6))?;
        match &e.content {
            Content::Text(lines) => m.serialize_entry("text", &Lines { lines })?,
            Content::Binary(data) => m.serialize_entry(
                "binary",
                &Data {
                    data: B64.encode(data),
                },
            )?,
            Content::Datagram { data, partial } => m.serialize_entry(
                "datagram",
                &Datagram {
                    data: B64.encode(data),
                    partial,
                },
            )?,
        }
        m.end()
    }
}

/// The binary form of entries for bulk readers: Get's `Accept: application/x-logdog-entries`
/// answer, and the records of an archive's entries file after its header.
pub const ENTRIES_CONTENT_TYPE: &str = "application/x-logdog-entries";

/// One entry as a record: its postcard encoding (as in log chunks) after its length, a u32
/// little-endian.
pub fn entry_record(e: &Entry) -> Vec<u8> {
    let mut rec = Vec::with_capacity(64);
    push_record(&mut rec, e);
    rec
}

/// Appends `e`'s record to `out`, encoded in place.
pub fn push_record(out: &mut Vec<u8>, e: &Entry) {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    postcard::to_io(e, &mut *out).expect("entries encode");
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

/// Appends the record of an entry already encoded (`body`, its postcard bytes) to `out`.
pub fn push_encoded(out: &mut Vec<u8>, body: &[u8]) {
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
}

/// Entries as consecutive records.
pub fn encode_entries<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        push_record(&mut out, e);
    }
    out
}

/// Reads consecutive records back; a cut or undecodable record is an error.
pub fn decode_entries(mut bytes: &[u8]) -> Result<Vec<Entry>, String> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let Some((e, used)) = decode_record(bytes)? else {
            return Err("a record is cut short".into());
        };
        out.push(e);
        bytes = &bytes[used..];
    }
    Ok(out)
}

/// The record at the front of `bytes` and the bytes it took; None while it is incomplete
/// (for readers that decode as the bytes arrive).
pub fn decode_record(bytes: &[u8]) -> Result<Option<(Entry, usize)>, String> {
    let Some((body, _)) = crate::chunk::view::split_record(bytes) else {
        return Ok(None);
    };
    let e = postcard::from_bytes(body).map_err(|e| format!("a record is not an entry: {e}"))?;
    Ok(Some((e, 4 + body.len())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn entries_render_every_field() {
        let e = Entry {
            stream_index: 2,
            prefix_index: None,
            sequence: 5,
            time_offset_us: 125_000,
            content: Content::Text(vec![Line {
                value: "a".into(),
                delimiter: Delimiter::Lf,
            }]),
        };
        assert_eq!(
            e.to_json(),
            json!({"stream_index": 2, "prefix_index": null, "sequence": 5, "time_offset": 0.125,
                   "text": {"lines": [{"value": "a", "delimiter": "\n"}]}})
        );
    }

    #[test]
    fn entries_round_trip_as_records() {
        let e = |i: u64| Entry {
            stream_index: i,
            prefix_index: Some(i + 10),
            sequence: i * 2,
            time_offset_us: 5,
            content: Content::Binary(vec![i as u8; i as usize]),
        };
        let entries = [e(0), e(1), e(7)];
        let bytes = encode_entries(&entries);
        assert_eq!(decode_entries(&bytes).unwrap(), entries);
        assert_eq!(decode_entries(&[]).unwrap(), vec![]);
        assert!(decode_entries(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode_entries(&[9, 0, 0, 0, 1]).is_err());
    }
}
