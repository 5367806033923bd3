//! Gives actix-http's own error responses a JSON body. actix-http 3.20's h1 dispatcher
//! answers requests it cannot parse without ever calling the app, with an empty body, and
//! has no hook to change that. `JsonErrors` wraps each accepted socket and replaces exactly
//! those responses, matched byte for byte as actix-http writes them, with a JSON response.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpStream;

pub struct JsonErrors {
    /// `None` only once `drop` has taken it.
    sock: Option<TcpStream>,
    /// A replacement response not yet fully written to `sock`.
    pending: Option<Pending>,
    /// An error was rewritten; the dispatcher is about to drop the connection.
    rewrote: bool,
}

struct Pending {
    bytes: Vec<u8>,
    written: usize,
    /// Length of the caller's buffer it replaces (reported once `bytes` is all written).
    replaces: usize,
}

impl JsonErrors {
    pub fn new(sock: TcpStream) -> Self {
        Self {
            sock: Some(sock),
            pending: None,
            rewrote: false,
        }
    }

    pub fn get_ref(&self) -> &TcpStream {
        self.sock.as_ref().expect("socket is taken only on drop")
    }

    fn sock(&mut self) -> Pin<&mut TcpStream> {
        Pin::new(self.sock.as_mut().expect("socket is taken only on drop"))
    }

    /// Writes what is left of a replacement. The dispatcher drops the socket as soon as
    /// `poll_write` has accepted its last bytes (it does not wait for flush or shutdown), so
    /// the replacement must be in the kernel before `poll_write` reports them accepted.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Self { sock, pending, .. } = self;
        if let Some(p) = pending {
            let sock = sock.as_mut().expect("socket is taken only on drop");
            while p.written < p.bytes.len() {
                let n = ready!(Pin::new(&mut *sock).poll_write(cx, &p.bytes[p.written..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                p.written += n;
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for JsonErrors {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut().sock().poll_read(cx, buf)
    }
}

impl AsyncWrite for JsonErrors {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.pending.is_none() {
            match rewrite(buf) {
                None => return this.sock().poll_write(cx, buf),
                Some(bytes) => {
                    this.rewrote = true;
                    this.pending = Some(Pending {
                        bytes,
                        written: 0,
                        replaces: buf.len(),
                    });
                }
            }
        }
        // On Pending the dispatcher retries with the same buffer (h1/dispatcher.rs poll_flush).
        ready!(this.drain(cx))?;
        let replaces = this.pending.take().map_or(0, |p| p.replaces);
        Poll::Ready(Ok(replaces))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.drain(cx))?;
        this.sock().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.drain(cx))?;
        this.sock().poll_shutdown(cx)
    }
}

impl Drop for JsonErrors {
    /// After an error actix-http drops the socket with the rest of the request unread
    /// (e.g. most of a 1 MB header); a plain close then sends RST, which can destroy the
    /// response before the client reads it. Close gently: FIN, then discard input briefly.
    fn drop(&mut self) {
        let (Some(mut sock), true) = (self.sock.take(), self.rewrote) else {
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            let _ = sock.shutdown().await;
            let mut sink = [0u8; 16 << 10];
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                let mut left: usize = 4 << 20;
                while left > 0 {
                    match sock.read(&mut sink).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => left = left.saturating_sub(n),
                    }
                }
            })
            .await;
        });
    }
}

/// actix-http 3.20's own error heads: status line as `write_status_line` + canonical reason,
/// then (h1/encoder.rs encode_headers) `content-length: 0`, an optional connection header,
/// the date (config.rs write_date_header, 29-byte IMF-fixdate), CRLF. No other header: the
/// response comes from `Response::new` with a cleared pooled head (lowercase, no camel case).
const ERRORS: [(&[u8], &str, &str); 4] = [
    (
        b"400 Bad Request\r\n",
        "invalid_argument",
        "malformed HTTP request: the request line, target or headers could not be parsed",
    ),
    (
        b"431 Request Header Fields Too Large\r\n",
        "invalid_argument",
        "request head too large (limit 128 KiB, 96 headers)",
    ),
    (
        b"408 Request Timeout\r\n",
        "request_timeout",
        "timed out waiting for the request head",
    ),
    (
        b"500 Internal Server Error\r\n",
        "internal",
        "internal error",
    ),
];

/// The replacement for `buf` if `buf` is exactly one such head and nothing else.
fn rewrite(buf: &[u8]) -> Option<Vec<u8>> {
    let version = buf.get(..9)?;
    if version != b"HTTP/1.1 " && version != b"HTTP/1.0 " {
        return None;
    }
    let rest = &buf[9..];
    let &(line, code, message) = ERRORS.iter().find(|(line, _, _)| rest.starts_with(line))?;
    let rest = rest[line.len()..].strip_prefix(b"content-length: 0\r\n")?;
    let rest = [
        &b"connection: close\r\n"[..],
        &b"connection: keep-alive\r\n"[..],
    ]
    .iter()
    .find_map(|c| rest.strip_prefix(*c))
    .unwrap_or(rest);
    let date = rest.strip_prefix(b"date: ")?.strip_suffix(b"\r\n\r\n")?;
    if date.len() != 29 || !date.ends_with(b" GMT") {
        return None;
    }
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    let mut out = Vec::with_capacity(160 + body.len());
    out.extend_from_slice(version);
    out.extend_from_slice(line);
    out.extend_from_slice(b"content-type: application/json\r\n");
    out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    // The dispatcher closes the connection after these, whatever it wrote.
    out.extend_from_slice(b"connection: close\r\ndate: ");
    out.extend_from_slice(date);
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body.as_bytes());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::rewrite;

    const DATE: &str = "Sun, 06 Nov 1994 08:49:37 GMT";

    #[test]
    fn rewrites_actix_heads_only() {
        for head in [
            format!("HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\ndate: {DATE}\r\n\r\n"),
            format!("HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: {DATE}\r\n\r\n"),
            format!("HTTP/1.0 400 Bad Request\r\ncontent-length: 0\r\nconnection: keep-alive\r\ndate: {DATE}\r\n\r\n"),
            format!("HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\ndate: {DATE}\r\n\r\n"),
            format!("HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\ndate: {DATE}\r\n\r\n"),
        ] {
            let out = String::from_utf8(rewrite(head.as_bytes()).expect(&head)).unwrap();
            let (h, body) = out.split_once("\r\n\r\n").unwrap();
            assert!(h.contains(&format!("content-length: {}", body.len())), "{out}");
            let v: serde_json::Value = serde_json::from_str(body).unwrap();
            assert!(v["error"]["code"].is_string());
        }
        for not in [
            // app responses always carry other headers / a body
            format!("HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ncontent-type: text/plain\r\ndate: {DATE}\r\n\r\n"),
            format!("HTTP/1.1 400 No WebSocket Upgrade header found\r\ncontent-length: 0\r\ndate: {DATE}\r\n\r\n"),
            format!("HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: {DATE}\r\n\r\nX"),
            format!("HTTP/1.1 200 OK\r\ncontent-length: 0\r\ndate: {DATE}\r\n\r\n"),
        ] {
            assert!(rewrite(not.as_bytes()).is_none(), "{not}");
        }
    }
}
