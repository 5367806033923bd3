//! The websocket watch's frames (JSON text), written here only: by the stream actor for
//! its live set (each frame encoded once for every viewer) and by a viewer's session for
//! its backlog and its end. Clients read them as `WatchFrame` (`logdog::http::watch`).

use serde::Serialize;

use super::{Entry, EntryJson, StreamJson};

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Frame<'a> {
    State { stream: Option<&'a StreamJson> },
    Entries { entries: Vec<EntryJson<'a>> },
    End { terminal_index: i64 },
}

fn encode(frame: &Frame) -> String {
    serde_json::to_string(frame).expect("frames serialise")
}

/// `{"type": "state", "stream": …}`: first after the upgrade and after every lifecycle
/// change (`null` once the stream is gone).
pub fn state_frame(stream: Option<&StreamJson>) -> String {
    encode(&Frame::State { stream })
}

/// `{"type": "entries", "entries": [...]}`: contiguous entries, every field explicit.
pub fn entries_frame<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> String {
    encode(&Frame::Entries {
        entries: entries.into_iter().map(EntryJson).collect(),
    })
}

/// `{"type": "end", "terminal_index": N}`: after the terminal entry (a normal close follows).
pub fn end_frame(terminal_index: i64) -> String {
    encode(&Frame::End { terminal_index })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Content, Delimiter, Line};
    use serde_json::{json, Value};

    #[test]
    fn frames_are_tagged_objects() {
        let e = Entry {
            stream_index: 0,
            prefix_index: None,
            sequence: 0,
            time_offset_us: 0,
            content: Content::Text(vec![Line {
                value: "a".into(),
                delimiter: Delimiter::Lf,
            }]),
        };
        let v: Value = serde_json::from_str(&entries_frame([&e])).unwrap();
        assert_eq!(v["type"], "entries");
        assert_eq!(v["entries"][0], e.to_json());
        let v: Value = serde_json::from_str(&end_frame(7)).unwrap();
        assert_eq!(v, json!({"type": "end", "terminal_index": 7}));
        let v: Value = serde_json::from_str(&state_frame(None)).unwrap();
        assert_eq!(v, json!({"type": "state", "stream": null}));
    }
}
