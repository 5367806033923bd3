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

/// `entries_frame` as a whole websocket text frame (RFC 6455, unmasked as a server
/// sends it), for the stream actor's live set: encoded once and written as it is to every
/// viewer's connection.
pub fn live_entries_frame<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> bytes::Bytes {
    // Room for the longest header in front; the JSON is written after it, the header
    // then put right before the JSON.
    const ROOM: usize = 10;
    let mut buf = vec![0u8; ROOM];
    let frame = Frame::Entries {
        entries: entries.into_iter().map(EntryJson).collect(),
    };
    serde_json::to_writer(&mut buf, &frame).expect("frames serialise");
    let len = buf.len() - ROOM;
    let mut header = [0u8; ROOM];
    header[0] = 0x81; // FIN, text
    let header = match len {
        0..=125 => {
            header[1] = len as u8;
            &header[..2]
        }
        126..=0xFFFF => {
            header[1] = 126;
            header[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            &header[..4]
        }
        _ => {
            header[1] = 127;
            header[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            &header[..10]
        }
    };
    let start = ROOM - header.len();
    buf[start..ROOM].copy_from_slice(header);
    bytes::Bytes::from(buf).slice(start..)
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
    fn live_frames_are_whole_websocket_text_frames() {
        // No entries (a short frame), 200 (a 16-bit length), 2000 (a 64-bit length).
        for (lines, header) in [(0, 2), (200, 4), (2000, 10)] {
            let entries: Vec<Entry> = (0..lines)
                .map(|i| Entry {
                    stream_index: i,
                    prefix_index: None,
                    sequence: i,
                    time_offset_us: 0,
                    content: Content::Text(vec![Line {
                        value: "x".repeat(40),
                        delimiter: Delimiter::Lf,
                    }]),
                })
                .collect();
            let json = entries_frame(&entries);
            let frame = live_entries_frame(&entries);
            assert_eq!(frame[0], 0x81);
            let len = match header {
                2 => frame[1] as usize,
                4 => {
                    (
                        assert_eq!(frame[1], 126),
                        u16::from_be_bytes([frame[2], frame[3]]) as usize,
                    )
                        .1
                }
                _ => {
                    (
                        assert_eq!(frame[1], 127),
                        u64::from_be_bytes(frame[2..10].try_into().unwrap()) as usize,
                    )
                        .1
                }
            };
            assert_eq!(len, json.len());
            assert_eq!(&frame[header..], json.as_bytes());
        }
    }

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
