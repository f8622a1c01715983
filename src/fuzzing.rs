//! Ways in for the fuzz targets in `fuzz/`, compiled only with the `fuzzing` feature (and, for the
//! WebSocket reader, the `websocket` feature).
//!
//! Not part of the public API: hidden from the docs, with no stability promise. It re-exports the
//! crate-private parsers that face the network, unchanged, so that the fuzzers run exactly the code
//! the server runs.

use std::io::Read;

use crate::error::Result;
use crate::http::{self, Request};

/// The most header fields a request head may have (more is answered 431).
pub const MAX_HEADERS: usize = http::MAX_HEADERS;

/// The request-head parser the server runs on what it has read so far: `Ok(None)` while the head
/// is incomplete and shorter than `max_head_bytes`, else the request and the head's length.
///
/// # Errors
/// As the server answers: a malformed head, or one over the limit.
pub fn parse_head(buf: &[u8], max_head_bytes: usize) -> Result<Option<(Request, usize)>> {
    http::parse_head(buf, max_head_bytes)
}

/// The body reader of the publish endpoint: the body that `request`'s headers announce
/// (`Content-Length` or chunked), read from `input`, at most `max_body_bytes` of it.
///
/// # Errors
/// As the server answers: bad framing, or a body over the limit.
pub fn read_body_from(input: &mut impl Read, request: &Request, max_body_bytes: usize) -> Result<Vec<u8>> {
    http::read_body_from(input, request, max_body_bytes)
}

/// One thing the WebSocket reader of a server connection got from its client, or how it stopped.
#[cfg(feature = "websocket")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsItem {
    /// A whole data message (its fragments joined, text checked as UTF-8).
    Message(crate::ws::Message),
    /// A ping, with its payload.
    Ping(Vec<u8>),
    /// A pong, with its payload.
    Pong(Vec<u8>),
    /// A close frame, with its code and reason when it had them. The reader stops here.
    Close(Option<(u16, String)>),
    /// The client broke the protocol: the close code the server answers with, and why. The reader
    /// stops here.
    Violation(u16, &'static str),
    /// The input ended, or a read failed, before a whole frame. The reader stops here.
    End,
}

/// Everything the WebSocket reader of a server connection reads from `input`, with these limits on
/// frame and message payloads, up to what stops it (a close frame, a violation, the end of the input).
#[cfg(feature = "websocket")]
pub fn ws_read_all(input: impl Read, max_frame: usize, max_message: usize) -> Vec<WsItem> {
    use crate::ws::{Incoming, Limits, MessageReader, ReadError, Role};

    let mut reader = MessageReader::new(input, Role::Server, Limits { max_frame, max_message });
    let mut items = Vec::new();
    loop {
        let item = match reader.next() {
            Ok(Incoming::Message(message)) => WsItem::Message(message),
            Ok(Incoming::Ping(payload)) => WsItem::Ping(payload),
            Ok(Incoming::Pong(payload)) => WsItem::Pong(payload),
            Ok(Incoming::Close(frame)) => WsItem::Close(frame.map(|frame| (frame.code, frame.reason))),
            Err(ReadError::Violation(violation)) => WsItem::Violation(violation.code, violation.reason),
            Err(ReadError::Io(_)) => WsItem::End,
        };
        let last = matches!(item, WsItem::Close(_) | WsItem::Violation(..) | WsItem::End);
        items.push(item);
        if last {
            return items;
        }
    }
}
