//! Wire types: descriptors, log entries and streams, in their JSON form (API.md "Objects")
//! and their compact stored form (postcard inside log chunks).
//!
//! - `descriptor`: stream types and descriptors, as sent and as resolved.
//! - `entry`: stored entries and the JSON the server writes for them.
//! - `frames`: the websocket watch's frames, written in one place.
//! - `request`: entries as clients send them, and the checks that turn them into entries.
//! - `stream`: the Stream object: status, archival state, archive locations.

use chrono::{SecondsFormat, TimeZone, Utc};

/// A stored enum column: written as its `as_str` text, read back through `parse`. A value
/// that is none of the enum's is a deserialisation error (the store reports stored data as
/// corrupt), never a default: an unknown archival state must not reopen a stream.
macro_rules! text_column {
    ($t:ty, $what:literal) => {
        impl<DB: diesel::backend::Backend> diesel::deserialize::FromSql<diesel::sql_types::Text, DB>
            for $t
        where
            String: diesel::deserialize::FromSql<diesel::sql_types::Text, DB>,
        {
            fn from_sql(bytes: DB::RawValue<'_>) -> diesel::deserialize::Result<Self> {
                let s = String::from_sql(bytes)?;
                Self::parse(&s).ok_or_else(|| format!("unknown {} {s:?}", $what).into())
            }
        }

        impl<DB: diesel::backend::Backend> diesel::serialize::ToSql<diesel::sql_types::Text, DB>
            for $t
        where
            str: diesel::serialize::ToSql<diesel::sql_types::Text, DB>,
        {
            fn to_sql<'b>(
                &'b self,
                out: &mut diesel::serialize::Output<'b, '_, DB>,
            ) -> diesel::serialize::Result {
                self.as_str().to_sql(out)
            }
        }
    };
}

mod descriptor;
mod entry;
mod frames;
mod request;
mod stream;

pub use descriptor::{Descriptor, DescriptorRequest, StreamType};
pub use entry::{
    decode_entries, decode_record, encode_entries, entry_record, push_encoded, push_record,
    Content, Delimiter, Entry, EntryJson, Line, Partial, ENTRIES_CONTENT_TYPE,
};
pub use frames::{end_frame, entries_frame, state_frame};
pub use request::{
    DataJson, DatagramJson, EntryError, IncomingEntry, LineJson, LogEntry, TextJson,
};
pub use stream::{Archival, ArchiveInfo, Status, StreamJson, StreamStateJson, TaskReason};

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
