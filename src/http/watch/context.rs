//! `WsContext`: the context a `WsSession` runs in. The actor runs inside the response
//! body's stream, so the HTTP layer polls it only while the viewer's socket takes what it
//! is sent: a viewer that stops reading stops its session, whose mailbox then fills, and
//! the stream actor drops it from the live set (the lag signal, `Live::Lagged`).
//!
//! Frames go out in the order they are queued. A live entries frame's JSON, encoded once
//! by the stream actor for every viewer, is handed to the HTTP layer as it is (a reference
//! count, not a copy per viewer) right after its websocket header, the only part written
//! per viewer; the session's own frames (state, backlog pages, control frames) are encoded
//! here whole.

use std::collections::VecDeque;
use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};

use actix::dev::{AsyncContextParts, ContextFut, ContextParts, Envelope, Mailbox, ToEnvelope};
use actix::prelude::*;
use actix_codec::{Decoder as _, Encoder as _};
use actix_http::ws::{CloseReason, Codec, Frame, Message, ProtocolError};
use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use futures::Stream;

/// What is queued for the viewer.
enum Out {
    /// Encoded when it leaves.
    Message(Message),
    /// A text frame's payload shared with other sessions: its header is written here,
    /// the payload as it is.
    Shared(Bytes),
}

pub struct WsContext<A>
where
    A: Actor<Context = WsContext<A>>,
{
    parts: ContextParts<A>,
    out: VecDeque<Out>,
}

impl<A> WsContext<A>
where
    A: Actor<Context = Self> + StreamHandler<Result<Frame, ProtocolError>>,
{
    /// Starts `actor`, reading the viewer's frames from `payload` (at most `max_frame`
    /// bytes each); the stream of bytes to send is the response body.
    pub fn start(
        actor: A,
        payload: actix_web::web::Payload,
        max_frame: usize,
    ) -> impl Stream<Item = Result<Bytes, actix_web::Error>> {
        let mailbox = Mailbox::default();
        let mut ctx = WsContext {
            parts: ContextParts::new(mailbox.sender_producer()),
            out: VecDeque::new(),
        };
        ctx.add_stream(Incoming {
            payload,
            codec: Codec::new().max_size(max_frame),
            buf: BytesMut::new(),
            ended: false,
        });
        Outgoing {
            fut: ContextFut::new(ctx, actor, mailbox),
            codec: Codec::new(),
            buf: BytesMut::new(),
            rest: Bytes::new(),
            payload: None,
            flush_first: false,
        }
    }
}

impl<A> WsContext<A>
where
    A: Actor<Context = Self>,
{
    /// A text frame.
    pub fn text(&mut self, text: impl Into<ByteString>) {
        self.out.push_back(Out::Message(Message::Text(text.into())));
    }

    /// A text frame whose payload (valid UTF-8) other sessions send too.
    pub fn shared_text(&mut self, payload: Bytes) {
        self.out.push_back(Out::Shared(payload));
    }

    pub fn ping(&mut self, payload: &[u8]) {
        self.out
            .push_back(Out::Message(Message::Ping(Bytes::copy_from_slice(payload))));
    }

    pub fn pong(&mut self, payload: &[u8]) {
        self.out
            .push_back(Out::Message(Message::Pong(Bytes::copy_from_slice(payload))));
    }

    pub fn close(&mut self, reason: Option<CloseReason>) {
        self.out.push_back(Out::Message(Message::Close(reason)));
    }

    /// How many messages the mailbox holds before a sender's `try_send` fails.
    pub fn set_mailbox_capacity(&mut self, capacity: usize) {
        self.parts.set_mailbox_capacity(capacity)
    }
}

impl<A> ActorContext for WsContext<A>
where
    A: Actor<Context = Self>,
{
    fn stop(&mut self) {
        self.parts.stop();
    }

    fn terminate(&mut self) {
        self.parts.terminate()
    }

    fn state(&self) -> ActorState {
        self.parts.state()
    }
}

impl<A> AsyncContext<A> for WsContext<A>
where
    A: Actor<Context = Self>,
{
    fn spawn<F>(&mut self, fut: F) -> SpawnHandle
    where
        F: ActorFuture<A, Output = ()> + 'static,
    {
        self.parts.spawn(fut)
    }

    fn wait<F>(&mut self, fut: F)
    where
        F: ActorFuture<A, Output = ()> + 'static,
    {
        self.parts.wait(fut)
    }

    fn waiting(&self) -> bool {
        self.parts.waiting()
            || matches!(
                self.parts.state(),
                ActorState::Stopping | ActorState::Stopped
            )
    }

    fn cancel_future(&mut self, handle: SpawnHandle) -> bool {
        self.parts.cancel_future(handle)
    }

    fn address(&self) -> Addr<A> {
        self.parts.address()
    }
}

impl<A> AsyncContextParts<A> for WsContext<A>
where
    A: Actor<Context = Self>,
{
    fn parts(&mut self) -> &mut ContextParts<A> {
        &mut self.parts
    }
}

impl<A, M> ToEnvelope<A, M> for WsContext<A>
where
    A: Actor<Context = WsContext<A>> + Handler<M>,
    M: actix::Message + Send + 'static,
    M::Result: Send,
{
    fn pack(msg: M, tx: Option<actix::dev::OneshotSender<M::Result>>) -> Envelope<A> {
        Envelope::new(msg, tx)
    }
}

/// The response body: runs the actor, then takes what it queued.
struct Outgoing<A>
where
    A: Actor<Context = WsContext<A>>,
{
    fut: ContextFut<A, WsContext<A>>,
    codec: Codec,
    /// Messages encoded since the last frame that went out as it was.
    buf: BytesMut,
    /// What is left of encoded messages going out a piece at a time.
    rest: Bytes,
    /// A shared payload whose header went out: it goes next.
    payload: Option<Bytes>,
    /// A piece went out: the next poll lets the HTTP layer write it before the next one.
    flush_first: bool,
}

/// The largest piece of the session's own frames handed to the HTTP layer at once.
///
/// actix-http copies what a response body yields into the connection's write buffer
/// (8 KiB at first) and keeps that buffer at the largest size it grew to, up to 128 KiB, for
/// as long as the connection lasts. A 20 KB backlog frame handed over whole left every
/// idle viewer holding 20 KB (`docs/PERFORMANCE.md`, "Memory"). The session's frames
/// (state, backlog pages, control frames) therefore go out in pieces that fit the buffer as
/// it starts, each written before the next is handed over. Live frames go whole: one
/// write per viewer per frame matters more on that path.
const PIECE: usize = 8 << 10;

impl<A> Outgoing<A>
where
    A: Actor<Context = WsContext<A>>,
{
    fn next_piece(&mut self) -> Bytes {
        if self.rest.len() <= PIECE {
            return std::mem::take(&mut self.rest);
        }
        self.flush_first = true;
        self.rest.split_to(PIECE)
    }
}

impl<A> Stream for Outgoing<A>
where
    A: Actor<Context = WsContext<A>>,
{
    type Item = Result<Bytes, actix_web::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.flush_first {
            // Pending with a wake-up: the HTTP layer writes what it has, then asks again.
            this.flush_first = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if let Some(payload) = this.payload.take() {
            return Poll::Ready(Some(Ok(payload)));
        }
        if this.fut.alive() {
            let _ = Pin::new(&mut this.fut).poll(cx);
        }
        if !this.rest.is_empty() {
            return Poll::Ready(Some(Ok(this.next_piece())));
        }
        let out = &mut this.fut.ctx().out;
        while let Some(next) = out.pop_front() {
            match next {
                Out::Message(m) => this.codec.encode(m, &mut this.buf)?,
                Out::Shared(payload) if this.buf.is_empty() => {
                    // The header now, the payload on the next poll (the HTTP layer asks
                    // again at once: both go out in one write).
                    let header = text_header(payload.len());
                    this.payload = Some(payload);
                    return Poll::Ready(Some(Ok(header)));
                }
                Out::Shared(payload) => {
                    // What was encoded before it goes first; this frame next time.
                    out.push_front(Out::Shared(payload));
                    break;
                }
            }
        }
        if !this.buf.is_empty() {
            this.rest = std::mem::take(&mut this.buf).freeze();
            Poll::Ready(Some(Ok(this.next_piece())))
        } else if this.fut.alive() {
            Poll::Pending
        } else {
            Poll::Ready(None)
        }
    }
}

/// The header of an unmasked (server) text frame with a payload of `len` bytes (RFC 6455).
fn text_header(len: usize) -> Bytes {
    let mut h = Vec::with_capacity(10);
    h.push(0x81); // FIN, text
    match len {
        0..=125 => h.push(len as u8),
        126..=0xFFFF => {
            h.push(126);
            h.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            h.push(127);
            h.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    Bytes::from(h)
}

/// The viewer's frames, decoded from the request body.
struct Incoming {
    payload: actix_web::web::Payload,
    codec: Codec,
    buf: BytesMut,
    ended: bool,
}

impl Stream for Incoming {
    type Item = Result<Frame, ProtocolError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        while !this.ended {
            match Pin::new(&mut this.payload).poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => this.buf.extend_from_slice(&chunk),
                Poll::Ready(Some(Err(e))) => {
                    return Poll::Ready(Some(Err(ProtocolError::Io(std::io::Error::other(
                        e.to_string(),
                    )))))
                }
                Poll::Ready(None) => this.ended = true,
                Poll::Pending => break,
            }
        }
        match this.codec.decode(&mut this.buf)? {
            Some(frame) => Poll::Ready(Some(Ok(frame))),
            None if this.ended => Poll::Ready(None),
            None => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header written before a shared payload is the one actix-http's own encoder
    /// writes for the same text frame, for each of the three length forms.
    #[test]
    fn shared_text_headers_match_the_codec() {
        for len in [0, 125, 126, 20_000, 0xFFFF, 0x10000, 300_000] {
            let text = "x".repeat(len);
            let mut whole = BytesMut::new();
            Codec::new()
                .encode(Message::Text(text.clone().into()), &mut whole)
                .unwrap();
            let header = text_header(len);
            assert_eq!(&whole[..header.len()], &header[..], "length {len}");
            assert_eq!(&whole[header.len()..], text.as_bytes(), "length {len}");
        }
    }
}
