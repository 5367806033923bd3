//! The benchmarks' websocket viewer: just what a tailing client needs (RFC 6455 handshake,
//! unmasked server frames, pongs, the close frame), reading into spare buffer capacity.
//!
//! tokio-tungstenite zeroes its whole read buffer before every read and validates every
//! text frame's UTF-8; on a machine whose two cores also run the server, a thousand viewers
//! doing that were a large part of what the benchmarks measured. This one hands a frame's
//! payload out as `Bytes` split off the read buffer, without a copy.

use bytes::{Buf as _, Bytes, BytesMut};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// What a frame held.
pub enum Frame {
    Text(Bytes),
    /// The close frame's code and reason (none for a frame without them).
    Close(Option<(u16, String)>),
}

pub struct Viewer {
    stream: TcpStream,
    buf: BytesMut,
}

/// Read this much at least per read (frames of live entries are about 20 KB).
const READ_CHUNK: usize = 64 << 10;

impl Viewer {
    /// Opens `ws://host:port/path`.
    pub async fn connect(url: &str) -> std::io::Result<Viewer> {
        let rest = url.strip_prefix("ws://").expect("a ws:// URL");
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let path = if path.is_empty() { "/" } else { path };
        let stream = TcpStream::connect(host).await?;
        stream.set_nodelay(true)?;
        let mut v = Viewer {
            stream,
            buf: BytesMut::with_capacity(READ_CHUNK),
        };
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        v.stream.write_all(request.as_bytes()).await?;
        let head_end = loop {
            if let Some(i) = memchr::memmem::find(&v.buf, b"\r\n\r\n") {
                break i + 4;
            }
            v.fill().await?;
        };
        let head = v.buf.split_to(head_end);
        if !head.starts_with(b"HTTP/1.1 101") {
            return Err(std::io::Error::other(format!(
                "{url}: no websocket upgrade: {}",
                String::from_utf8_lossy(&head)
            )));
        }
        Ok(v)
    }

    /// Reads more; an error at the end of the connection.
    async fn fill(&mut self) -> std::io::Result<()> {
        self.buf.reserve(READ_CHUNK);
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }

    /// The next text or close frame (pings are answered on the way); None once the
    /// connection has ended.
    pub async fn next(&mut self) -> std::io::Result<Option<Frame>> {
        loop {
            while let Some((opcode, payload)) = self.take_frame()? {
                match opcode {
                    0x1 => return Ok(Some(Frame::Text(payload))),
                    0x8 => {
                        let close = (payload.len() >= 2).then(|| {
                            let code = u16::from_be_bytes([payload[0], payload[1]]);
                            (code, String::from_utf8_lossy(&payload[2..]).into_owned())
                        });
                        return Ok(Some(Frame::Close(close)));
                    }
                    0x9 => self.send(0xA, &payload).await?,
                    _ => {}
                }
            }
            match self.fill().await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    /// One whole frame off the front of the buffer, if it is all there.
    fn take_frame(&mut self) -> std::io::Result<Option<(u8, Bytes)>> {
        let b = &self.buf[..];
        if b.len() < 2 {
            return Ok(None);
        }
        let (fin, opcode, masked) = (b[0] & 0x80 != 0, b[0] & 0x0F, b[1] & 0x80 != 0);
        if !fin || opcode == 0 || masked {
            return Err(std::io::Error::other(
                "a fragmented or masked frame from the server",
            ));
        }
        let (header, len) = match b[1] & 0x7F {
            126 if b.len() >= 4 => (4, u16::from_be_bytes([b[2], b[3]]) as usize),
            127 if b.len() >= 10 => (
                10,
                u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize,
            ),
            126 | 127 => return Ok(None),
            n => (2, n as usize),
        };
        let have = b.len();
        if have < header + len {
            self.buf.reserve(header + len - have);
            return Ok(None);
        }
        self.buf.advance(header);
        Ok(Some((opcode, self.buf.split_to(len).freeze())))
    }

    /// A client frame: masked, with a zero key (which leaves the payload as it is).
    async fn send(&mut self, opcode: u8, payload: &[u8]) -> std::io::Result<()> {
        assert!(payload.len() < 126, "control frames only");
        let mut frame = vec![0x80 | opcode, 0x80 | payload.len() as u8, 0, 0, 0, 0];
        frame.extend_from_slice(payload);
        self.stream.write_all(&frame).await
    }

    /// Sends a close frame (normal closure).
    pub async fn close(&mut self) -> std::io::Result<()> {
        self.send(0x8, &1000u16.to_be_bytes()).await
    }
}

/// The `stream_index` of every entry in a frame, pushed to `out`; true for the `end`
/// frame. The frame is searched, not parsed: the server's own encoding is what is
/// measured, not this client's JSON parser.
pub fn frame_indices(frame: &[u8], out: &mut Vec<u64>) -> bool {
    static KEY: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"stream_index\":"));
    let mut at = 0;
    while let Some(i) = KEY.find(&frame[at..]) {
        at += i + KEY.needle().len();
        let mut n = 0u64;
        let start = at;
        while let Some(d) = frame.get(at).filter(|c| c.is_ascii_digit()) {
            n = n * 10 + u64::from(d - b'0');
            at += 1;
        }
        assert!(at > start, "a stream index without digits");
        out.push(n);
    }
    frame.starts_with(b"{\"type\":\"end\"")
}
