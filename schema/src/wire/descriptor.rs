//! Stream types and descriptors: what a client sends and the resolved form every stream keeps.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::names::{self, NameError};

/// What a stream carries (stored in `streams.stream_type`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    Default,
    utoipa::ToSchema,
    diesel::expression::AsExpression,
    diesel::deserialize::FromSqlRow,
)]
#[diesel(sql_type = diesel::sql_types::Text)]
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

text_column!(StreamType, "stream type");

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
        s.serialize_str(&crate::wire::format_us(*us))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        Ok(DateTime::<Utc>::deserialize(d)?.timestamp_micros())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
