//! Entries as clients send them (LogDog's `LogEntry` in JSON) and the checks that turn
//! them into stored entries.

use serde::{Deserialize, Serialize};

use super::{object_only, Content, Delimiter, Entry, Line, Partial, MAX_STREAM_INDEX};

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
/// Read by a visitor of its own (`Deserialize` below), not serde's untagged form, which
/// buffers every line before trying each variant.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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

impl<'de> Deserialize<'de> for LineJson {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{Error, IgnoredAny, MapAccess, Visitor};

        #[derive(Deserialize)]
        #[serde(field_identifier, rename_all = "lowercase")]
        enum Field {
            Value,
            Delimiter,
            #[serde(other)]
            Other,
        }

        struct Line;
        impl<'de> Visitor<'de> for Line {
            type Value = LineJson;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(r#"a line: a string, or {"value": string, "delimiter": string}"#)
            }

            fn visit_str<E: Error>(self, v: &str) -> Result<LineJson, E> {
                Ok(LineJson::Short(v.to_owned()))
            }

            fn visit_string<E: Error>(self, v: String) -> Result<LineJson, E> {
                Ok(LineJson::Short(v))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LineJson, A::Error> {
                let (mut value, mut delimiter) = (None, None);
                while let Some(field) = map.next_key()? {
                    match field {
                        Field::Value if value.is_some() => {
                            return Err(A::Error::duplicate_field("value"))
                        }
                        Field::Value => value = Some(map.next_value()?),
                        Field::Delimiter if delimiter.is_some() => {
                            return Err(A::Error::duplicate_field("delimiter"))
                        }
                        Field::Delimiter => delimiter = Some(map.next_value()?),
                        Field::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(LineJson::Full {
                    value: value.ok_or_else(|| A::Error::missing_field("value"))?,
                    delimiter: delimiter.ok_or_else(|| A::Error::missing_field("delimiter"))?,
                })
            }
        }

        d.deserialize_any(Line)
    }
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
    pub fn into_entry(self) -> Result<Entry, EntryError> {
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

/// Why an entry was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryError {
    /// The entry breaks `LogEntry`'s documented schema (number ranges, delimiter values,
    /// base64): the request carrying it is malformed as a whole. Otherwise the entry is
    /// well-formed but not acceptable (no content or two, a line value holding "\n", a
    /// partial datagram out of range), which a bundle reports as its stream's own error.
    pub malformed: bool,
    pub message: String,
}

impl EntryError {
    fn malformed(message: String) -> Self {
        Self {
            malformed: true,
            message,
        }
    }

    fn refused(message: String) -> Self {
        Self {
            malformed: false,
            message,
        }
    }
}

impl std::fmt::Display for EntryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for EntryError {}

impl From<EntryError> for String {
    fn from(e: EntryError) -> Self {
        e.message
    }
}

/// Standard base64 with padding; stray bits after the last byte are ignored.
fn decode_b64(index: u64, field: &str, s: &str) -> Result<Vec<u8>, EntryError> {
    use base64::engine::{GeneralPurpose, GeneralPurposeConfig};
    use base64::Engine as _;
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
    );
    LENIENT.decode(s).map_err(|e| {
        EntryError::malformed(format!(
            "entry {index}: {field}.data is not valid base64: {e}"
        ))
    })
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
    pub fn from_json(value: serde_json::Value) -> Result<Self, EntryError> {
        let e: LogEntry = serde_json::from_value(value)
            .map_err(|e| EntryError::malformed(format!("invalid entry: {e}")))?;
        Self::from_request(e)
    }

    /// Checks a parsed entry: everything that does not depend on the stream. The schema's
    /// own rules (ranges, delimiters, base64) are checked before the others, so an entry
    /// that breaks both is reported as malformed.
    pub fn from_request(e: LogEntry) -> Result<Self, EntryError> {
        let index = e.stream_index.unwrap_or(0);
        for (field, v) in [
            ("stream_index", e.stream_index),
            ("sequence", e.sequence),
            ("prefix_index", e.prefix_index),
        ] {
            if v.is_some_and(|v| v > MAX_STREAM_INDEX) {
                return Err(EntryError::malformed(format!(
                    "entry {index}: {field} is above 2^53 - 1"
                )));
            }
        }
        let time_offset_us = match e.time_offset {
            None => None,
            Some(t) if (0.0..1e12).contains(&t) => Some((t * 1e6).round() as i64),
            Some(t) => {
                return Err(EntryError::malformed(format!(
                    "entry {index}: invalid time_offset {t}"
                )))
            }
        };
        // One pass over the lines: a bad delimiter is malformed at once; a value holding
        // "\n" is refused, but only once nothing malformed follows.
        let mut refusal = None;
        let lines = match e.text {
            None => None,
            // Collected in place: the lines reuse the request's allocation.
            Some(t) => Some(
                t.lines
                    .into_iter()
                    .map(|l| {
                        let (value, delimiter) = match l {
                            LineJson::Short(value) => (value, Delimiter::Lf),
                            LineJson::Full { value, delimiter } => {
                                let d = Delimiter::parse(&delimiter).ok_or_else(|| {
                                    EntryError::malformed(format!(
                                        "entry {index}: invalid delimiter {delimiter:?}: \"\\n\", \"\\r\\n\" or \"\" (the line continues)"
                                    ))
                                })?;
                                (value, d)
                            }
                        };
                        if refusal.is_none() && value.contains('\n') {
                            refusal = Some(format!(
                                "entry {index}: a line value must not contain \"\\n\" (that ends a line: send two lines)"
                            ));
                        }
                        Ok(Line { value, delimiter })
                    })
                    .collect::<Result<Vec<_>, EntryError>>()?,
            ),
        };
        let binary = e
            .binary
            .as_ref()
            .map(|b| decode_b64(index, "binary", &b.data))
            .transpose()?;
        let datagram = e
            .datagram
            .as_ref()
            .map(|d| decode_b64(index, "datagram", &d.data).map(|data| (data, d.partial)))
            .transpose()?;
        let stream_index = e
            .stream_index
            .ok_or_else(|| EntryError::refused("entry without stream_index".into()))?;
        if let Some(r) = refusal {
            return Err(EntryError::refused(r));
        }
        let content = match (lines, binary, datagram) {
            (Some(lines), None, None) => Content::Text(lines),
            (None, Some(data), None) => Content::Binary(data),
            (None, None, Some((data, partial))) => {
                if let Some(p) = partial {
                    if u64::from(p.index) >= p.size || data.len() as u64 > p.size {
                        return Err(EntryError::refused(format!(
                            "entry {stream_index}: a partial datagram needs index < size and at most size bytes (index {}, size {}, {} bytes)",
                            p.index, p.size, data.len()
                        )));
                    }
                }
                Content::Datagram { data, partial }
            }
            _ => {
                return Err(EntryError::refused(format!(
                    "entry {stream_index}: exactly one of text, binary or datagram is required"
                )))
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

    /// A line is a string or `{"value", "delimiter"}` (other keys ignored, as before the
    /// visitor of its own); anything else is refused with what a line may be.
    #[test]
    fn lines_read_from_json_bytes() {
        let text: TextJson = serde_json::from_slice(
            br#"{"lines": ["a\tb", {"value": "x", "delimiter": "\r\n", "note": 1}, {"delimiter": "", "value": "y"}]}"#,
        )
        .unwrap();
        let lines: Vec<_> = text
            .lines
            .into_iter()
            .map(|l| match l {
                LineJson::Short(v) => (v, None),
                LineJson::Full { value, delimiter } => (value, Some(delimiter)),
            })
            .collect();
        assert_eq!(
            lines,
            [
                ("a\tb".to_owned(), None),
                ("x".to_owned(), Some("\r\n".to_owned())),
                ("y".to_owned(), Some(String::new())),
            ]
        );
        for (bad, says) in [
            (r#"{"lines": [1]}"#, "a line: a string, or"),
            (r#"{"lines": [null]}"#, "a line: a string, or"),
            (
                r#"{"lines": [{"value": "x"}]}"#,
                "missing field `delimiter`",
            ),
            (r#"{"lines": [{"delimiter": ""}]}"#, "missing field `value`"),
            (
                r#"{"lines": [{"value": "x", "value": "y", "delimiter": ""}]}"#,
                "duplicate field `value`",
            ),
            (
                r#"{"lines": [{"value": 1, "delimiter": ""}]}"#,
                "invalid type",
            ),
        ] {
            let e = serde_json::from_str::<TextJson>(bad)
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
