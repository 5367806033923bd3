//! Wire types: descriptors, log entries and streams, in their JSON form (API.md "Objects")
//! and their compact stored form (postcard inside log chunks).

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::names::{self, NameError};

/// serde reads a struct from a JSON array as well as from an object (fields by position);
/// the API's bodies hold objects only. Fields of struct type use these (`deserialize_with`),
/// so `"descriptor": [null, null]` is a 400, not a descriptor.
pub mod object_only {
    use std::marker::PhantomData;

    use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};

    struct Object<T>(T);

    impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V<T>(PhantomData<T>);
            impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
                type Value = T;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                    T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                }
            }
            d.deserialize_map(V(PhantomData)).map(Object)
        }
    }

    /// An optional object (null or absent: None).
    pub fn option<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Option<T>, D::Error> {
        Ok(Option::<Object<T>>::deserialize(d)?.map(|o| o.0))
    }

    /// An array of objects.
    pub fn vec<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
        Ok(Vec::<Object<T>>::deserialize(d)?
            .into_iter()
            .map(|o| o.0)
            .collect())
    }
}

/// The largest `stream_index` JSON clients can carry exactly (2^53 − 1).
pub const MAX_STREAM_INDEX: u64 = (1 << 53) - 1;

/// Microseconds since the Unix epoch: how every time is stored.
pub fn now_us() -> i64 {
    Utc::now().timestamp_micros()
}

/// RFC 3339 in UTC with as many fractional digits as needed.
pub fn format_us(us: i64) -> String {
    Utc.timestamp_micros(us)
        .single()
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StreamType {
    #[default]
    Text,
    Binary,
    Datagram,
}

impl StreamType {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamType::Text => "text",
            StreamType::Binary => "binary",
            StreamType::Datagram => "datagram",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "text" => Some(Self::Text),
            "binary" => Some(Self::Binary),
            "datagram" => Some(Self::Datagram),
            _ => None,
        }
    }

    /// The content type a descriptor gets when it names none.
    pub fn default_content_type(self) -> &'static str {
        match self {
            StreamType::Text => "text/plain; charset=utf-8",
            StreamType::Binary => "application/octet-stream",
            StreamType::Datagram => "application/x-logdog-datagram",
        }
    }
}

/// A descriptor as a client sends it: everything but the type may be left out.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DescriptorRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_type: Option<StreamType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub timestamp: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary_file_ext: Option<String>,
}

/// A stream's descriptor with every default filled in (LogDog `LogStreamDescriptor`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Descriptor {
    pub stream_type: StreamType,
    pub content_type: String,
    #[serde(with = "rfc3339_us")]
    #[schema(value_type = String, format = DateTime)]
    pub timestamp: i64,
    pub tags: BTreeMap<String, String>,
    pub binary_file_ext: Option<String>,
}

impl DescriptorRequest {
    /// Validates the request and fills in defaults; `now_us` stands in for a missing timestamp.
    pub fn resolve(self, now_us: i64) -> Result<Descriptor, NameError> {
        let stream_type = self.stream_type.unwrap_or_default();
        let content_type = match self.content_type {
            Some(ct) if ct.trim().is_empty() => {
                return Err(NameError("content_type must not be empty".into()))
            }
            Some(ct) if ct.len() > 1024 => {
                return Err(NameError("content_type longer than 1024 bytes".into()))
            }
            Some(ct) => ct,
            None => stream_type.default_content_type().to_owned(),
        };
        let tags = self.tags.unwrap_or_default();
        if tags.len() > names::MAX_TAGS {
            return Err(NameError(format!(
                "{} tags: a stream has at most {}",
                tags.len(),
                names::MAX_TAGS
            )));
        }
        for (k, v) in &tags {
            names::validate_tag(k, v)?;
        }
        if let Some(ext) = &self.binary_file_ext {
            if ext.len() > 64 || !ext.chars().all(|c| c.is_ascii_alphanumeric() || c == '.') {
                return Err(NameError(format!(
                    "invalid binary_file_ext {ext:?}: at most 64 letters, digits and dots"
                )));
            }
        }
        Ok(Descriptor {
            stream_type,
            content_type,
            timestamp: self
                .timestamp
                .map(|t| t.timestamp_micros())
                .unwrap_or(now_us),
            tags,
            binary_file_ext: self.binary_file_ext,
        })
    }
}

mod rfc3339_us {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(us: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_us(*us))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        Ok(DateTime::<Utc>::deserialize(d)?.timestamp_micros())
    }
}

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

/// An entry as a client sent it: `sequence` and `time_offset` still to be defaulted.
#[derive(Debug, Clone, PartialEq)]
pub struct IncomingEntry {
    pub stream_index: u64,
    pub prefix_index: Option<u64>,
    pub sequence: Option<u64>,
    pub time_offset_us: Option<i64>,
    pub content: Content,
}

/// A text line in JSON: a plain string is shorthand for `{"value": s, "delimiter": "\n"}`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum LineJson {
    Short(String),
    Full {
        value: String,
        /// `"\n"`, `"\r\n"`, or `""`: the line continues in the next entry.
        #[schema(value_type = Delimiter)]
        delimiter: String,
    },
}

/// A text entry's content.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TextJson {
    pub lines: Vec<LineJson>,
}

/// A binary entry's content.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DataJson {
    /// base64.
    #[schema(pattern = r"^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$")]
    pub data: String,
}

/// A datagram entry's content.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DatagramJson {
    /// base64.
    #[schema(pattern = r"^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$")]
    pub data: String,
    #[serde(default, deserialize_with = "object_only::option")]
    pub partial: Option<Partial>,
}

/// LogDog's `LogEntry` in JSON, as clients send it and read it back (`Get` answers carry
/// every field explicitly, lines as objects: see `EntryJson`, which writes stored entries
/// in this form). Exactly one of `text`, `binary`, `datagram`, matching the stream type;
/// checked by `IncomingEntry::from_request`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogEntry {
    /// 0, 1, 2, … within the stream (at most 2^53 − 1). Required.
    #[schema(value_type = u64, maximum = 9007199254740991_u64)]
    pub stream_index: Option<u64>,
    #[serde(default)]
    #[schema(maximum = 9007199254740991_u64)]
    pub prefix_index: Option<u64>,
    /// Defaults to the lines (text), bytes (binary) or datagrams before this entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 9007199254740991_u64)]
    pub sequence: Option<u64>,
    /// Seconds after the descriptor's timestamp (0 to 10^12); defaults to the arrival time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0.0, exclusive_maximum = 1e12)]
    pub time_offset: Option<f64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "object_only::option"
    )]
    pub text: Option<TextJson>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "object_only::option"
    )]
    pub binary: Option<DataJson>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "object_only::option"
    )]
    pub datagram: Option<DatagramJson>,
}

impl LogEntry {
    /// The first way this entry breaks its documented schema (number ranges, delimiter
    /// values, base64), if any: what makes a request malformed as a whole. The other checks
    /// of `IncomingEntry::from_request` (exactly one content, line values) are the entry's
    /// own.
    pub fn schema_violation(&self) -> Option<String> {
        let index = self.stream_index.unwrap_or(0);
        for (field, v) in [
            ("stream_index", self.stream_index),
            ("sequence", self.sequence),
            ("prefix_index", self.prefix_index),
        ] {
            if v.is_some_and(|v| v > MAX_STREAM_INDEX) {
                return Some(format!("entry {index}: {field} is above 2^53 - 1"));
            }
        }
        if self.time_offset.is_some_and(|t| !(0.0..1e12).contains(&t)) {
            return Some(format!("entry {index}: invalid time_offset"));
        }
        if let Some(t) = &self.text {
            for l in &t.lines {
                if let LineJson::Full { delimiter, .. } = l {
                    if Delimiter::parse(delimiter).is_none() {
                        return Some(format!("entry {index}: invalid delimiter {delimiter:?}"));
                    }
                }
            }
        }
        let data = [
            self.binary.as_ref().map(|b| ("binary", &b.data)),
            self.datagram.as_ref().map(|d| ("datagram", &d.data)),
        ];
        for (field, d) in data.into_iter().flatten() {
            if let Err(e) = decode_b64(field, d) {
                return Some(format!("entry {index}: {e}"));
            }
        }
        None
    }

    /// A text entry of `(value, delimiter)` lines.
    pub fn text(stream_index: u64, lines: impl IntoIterator<Item = (String, Delimiter)>) -> Self {
        Self {
            stream_index: Some(stream_index),
            text: Some(TextJson {
                lines: lines
                    .into_iter()
                    .map(|(value, d)| LineJson::Full {
                        value,
                        delimiter: d.as_str().to_owned(),
                    })
                    .collect(),
            }),
            ..Self::default()
        }
    }

    /// The stored form of an entry the server sent (every field explicit).
    pub fn into_entry(self) -> Result<Entry, String> {
        let e = IncomingEntry::from_request(self)?;
        Ok(Entry {
            stream_index: e.stream_index,
            prefix_index: e.prefix_index,
            sequence: e.sequence.unwrap_or(0),
            time_offset_us: e.time_offset_us.unwrap_or(0),
            content: e.content,
        })
    }
}

/// Standard base64 with padding; stray bits after the last byte are ignored.
fn decode_b64(field: &str, s: &str) -> Result<Vec<u8>, String> {
    use base64::engine::{GeneralPurpose, GeneralPurposeConfig};
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
    );
    LENIENT
        .decode(s)
        .map_err(|e| format!("{field}.data is not valid base64: {e}"))
}

impl LogEntry {
    /// How many lines the entry carries (1 for binary and datagram entries): what the
    /// ingest rate counts.
    pub fn line_count(&self) -> u64 {
        self.text.as_ref().map_or(1, |t| t.lines.len() as u64)
    }
}

impl IncomingEntry {
    /// Parses one JSON entry, checking everything that does not depend on the stream.
    pub fn from_json(value: serde_json::Value) -> Result<Self, String> {
        let e: LogEntry =
            serde_json::from_value(value).map_err(|e| format!("invalid entry: {e}"))?;
        Self::from_request(e)
    }

    /// Checks a parsed entry: everything that does not depend on the stream.
    pub fn from_request(e: LogEntry) -> Result<Self, String> {
        let stream_index = e.stream_index.ok_or("entry without stream_index")?;
        if stream_index > MAX_STREAM_INDEX {
            return Err(format!("stream_index {stream_index} is above 2^53 - 1"));
        }
        for (field, v) in [("sequence", e.sequence), ("prefix_index", e.prefix_index)] {
            if v.is_some_and(|v| v > MAX_STREAM_INDEX) {
                return Err(format!("entry {stream_index}: {field} is above 2^53 - 1"));
            }
        }
        let time_offset_us = match e.time_offset {
            None => None,
            Some(t) if (0.0..1e12).contains(&t) => Some((t * 1e6).round() as i64),
            Some(t) => return Err(format!("entry {stream_index}: invalid time_offset {t}")),
        };
        let content = match (e.text, e.binary, e.datagram) {
            (Some(t), None, None) => Content::Text(
                t.lines
                    .into_iter()
                    .map(|l| {
                        let (value, delimiter) = match l {
                            LineJson::Short(value) => (value, Delimiter::Lf),
                            LineJson::Full { value, delimiter } => {
                                let d = Delimiter::parse(&delimiter).ok_or_else(|| {
                                    format!(
                                        "entry {stream_index}: invalid delimiter {delimiter:?}: \"\\n\", \"\\r\\n\" or \"\" (the line continues)"
                                    )
                                })?;
                                (value, d)
                            }
                        };
                        if value.contains('\n') {
                            return Err(format!(
                                "entry {stream_index}: a line value must not contain \"\\n\" (that ends a line: send two lines)"
                            ));
                        }
                        Ok(Line { value, delimiter })
                    })
                    .collect::<Result<_, String>>()?,
            ),
            (None, Some(b), None) => Content::Binary(decode_b64("binary", &b.data)?),
            (None, None, Some(d)) => {
                let data = decode_b64("datagram", &d.data)?;
                if let Some(p) = d.partial {
                    if u64::from(p.index) >= p.size || data.len() as u64 > p.size {
                        return Err(format!(
                            "entry {stream_index}: a partial datagram needs index < size and at most size bytes (index {}, size {}, {} bytes)",
                            p.index, p.size, data.len()
                        ));
                    }
                }
                Content::Datagram {
                    data,
                    partial: d.partial,
                }
            }
            _ => {
                return Err(format!(
                    "entry {stream_index}: exactly one of text, binary or datagram is required"
                ))
            }
        };
        Ok(Self {
            stream_index,
            prefix_index: e.prefix_index,
            sequence: e.sequence,
            time_offset_us,
            content,
        })
    }
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

/// A websocket frame carrying entries: `{"type": "entries", "entries": [...]}`.
pub fn entries_frame<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> String {
    #[derive(Serialize)]
    struct Frame<'a> {
        r#type: &'static str,
        entries: Vec<EntryJson<'a>>,
    }
    let frame = Frame {
        r#type: "entries",
        entries: entries.into_iter().map(EntryJson).collect(),
    };
    serde_json::to_string(&frame).expect("frames serialise")
}

/// Where a stream is in its life, as the API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Streaming,
    Terminated,
    Archived,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Streaming => "streaming",
            Status::Terminated => "terminated",
            Status::Archived => "archived",
        }
    }
}

/// Archival progress of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Archival {
    None,
    Tasked,
    Partial,
    Complete,
    Failed,
}

impl Archival {
    pub fn as_str(self) -> &'static str {
        match self {
            Archival::None => "none",
            Archival::Tasked => "tasked",
            Archival::Partial => "partial",
            Archival::Complete => "complete",
            Archival::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "none" => Self::None,
            "tasked" => Self::Tasked,
            "partial" => Self::Partial,
            "complete" => Self::Complete,
            "failed" => Self::Failed,
            _ => return None,
        })
    }
}

/// Where an archived stream's files are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ArchiveInfo {
    pub stream_url: String,
    pub index_url: String,
    pub data_url: String,
    pub log_entry_count: u64,
    pub complete: bool,
    pub archived_at: String,
}

/// The `state` object of a Stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StreamStateJson {
    pub status: Status,
    pub created: String,
    pub updated: String,
    pub next_index: i64,
    /// The sequence the entry at `next_index` gets: the lines (text), bytes (binary) or
    /// datagrams of the contiguous entries. Null when not known (streams archived by an
    /// older version).
    pub next_sequence: Option<i64>,
    pub terminal_index: i64,
    pub terminated_at: Option<String>,
    pub archival: Archival,
    pub archive: Option<ArchiveInfo>,
    pub archive_error: Option<String>,
    pub purged: bool,
}

/// The Stream object of API.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StreamJson {
    pub project: String,
    pub path: String,
    pub prefix: String,
    pub name: String,
    pub id: String,
    pub descriptor: Descriptor,
    pub state: StreamStateJson,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_entry_with_shorthand_lines() {
        let e = IncomingEntry::from_json(json!({
            "stream_index": 3, "text": {"lines": ["short", {"value": "x", "delimiter": ""}]}
        }))
        .unwrap();
        assert_eq!(e.stream_index, 3);
        assert_eq!(e.sequence, None);
        assert_eq!(
            e.content,
            Content::Text(vec![
                Line {
                    value: "short".into(),
                    delimiter: Delimiter::Lf
                },
                Line {
                    value: "x".into(),
                    delimiter: Delimiter::None
                },
            ])
        );
        assert_eq!(e.content.sequence_units(), 2);
        assert_eq!(e.content.payload_bytes(), 7);
    }

    #[test]
    fn binary_and_datagram_entries() {
        let b = IncomingEntry::from_json(json!({"stream_index": 0, "binary": {"data": "AAEC"}}))
            .unwrap();
        assert_eq!(b.content, Content::Binary(vec![0, 1, 2]));
        let d = IncomingEntry::from_json(json!({
            "stream_index": 1, "sequence": 9, "time_offset": 1.5,
            "datagram": {"data": "", "partial": {"index": 0, "size": 3, "last": false}}
        }))
        .unwrap();
        assert_eq!(d.sequence, Some(9));
        assert_eq!(d.time_offset_us, Some(1_500_000));
        assert_eq!(d.content.sequence_units(), 0);
    }

    #[test]
    fn invalid_entries() {
        for bad in [
            json!({"text": {"lines": []}}),
            json!({"stream_index": -1, "text": {"lines": []}}),
            json!({"stream_index": 9007199254740992u64, "text": {"lines": []}}),
            json!({"stream_index": 0}),
            json!({"stream_index": 0, "text": {"lines": []}, "binary": {"data": ""}}),
            json!({"stream_index": 0, "binary": {"data": "not base64!"}}),
            json!({"stream_index": 0, "time_offset": -1, "text": {"lines": []}}),
            json!({"stream_index": 0, "text": {"lines": [1]}}),
            json!("entry"),
        ] {
            assert!(IncomingEntry::from_json(bad.clone()).is_err(), "{bad}");
        }
    }

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
    fn descriptor_defaults_and_validation() {
        let d = DescriptorRequest::default().resolve(1_000_000).unwrap();
        assert_eq!(d.stream_type, StreamType::Text);
        assert_eq!(d.content_type, "text/plain; charset=utf-8");
        assert_eq!(d.timestamp, 1_000_000);
        let b: DescriptorRequest =
            serde_json::from_value(json!({"stream_type": "binary"})).unwrap();
        assert_eq!(
            b.resolve(0).unwrap().content_type,
            "application/octet-stream"
        );
        let g: DescriptorRequest =
            serde_json::from_value(json!({"stream_type": "datagram"})).unwrap();
        assert_eq!(
            g.resolve(0).unwrap().content_type,
            "application/x-logdog-datagram"
        );
        let bad_tag: DescriptorRequest =
            serde_json::from_value(json!({"tags": {"bad key": "v"}})).unwrap();
        assert!(bad_tag.resolve(0).is_err());
        let empty_ct: DescriptorRequest =
            serde_json::from_value(json!({"content_type": ""})).unwrap();
        assert!(empty_ct.resolve(0).is_err());
        assert!(
            serde_json::from_value::<DescriptorRequest>(json!({"stream_type": "video"})).is_err()
        );
        let ts: DescriptorRequest =
            serde_json::from_value(json!({"timestamp": "2026-11-27T23:00:00.5Z"})).unwrap();
        let d = ts.resolve(0).unwrap();
        assert_eq!(
            serde_json::to_value(&d).unwrap()["timestamp"],
            "2026-11-27T23:00:00.500Z"
        );
    }
}
