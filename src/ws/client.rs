//! A small blocking WebSocket client over `TcpStream`, for tests and tools (the crate's own tests and
//! latency benchmark use it). It masks its frames as a client must and checks the server's frames with
//! the same rules the server applies to clients. Its masking keys come from the standard library's
//! randomly seeded hasher: fine for tests, not meant to face hostile intermediaries.
//!
//! ```no_run
//! use std::time::Duration;
//! use sse_handler::ws::client;
//!
//! let mut ws = client::connect("127.0.0.1:8080", "/echo", &[], Duration::from_secs(5))?;
//! ws.send("hello")?;
//! let reply = ws.recv_message()?; // answers pings on the way
//! assert_eq!(reply.and_then(|m| m.as_text().map(str::to_owned)).as_deref(), Some("hello"));
//! ws.close(1000, "done")?;
//! # Ok::<(), std::io::Error>(())
//! ```

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, BufReader, Chain, Cursor, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::frame::{self, OpCode, ReadError, Role};
use super::handshake;
use super::message::{CloseFrame, Incoming, Limits, Message, MessageReader, close_payload};

/// The largest message the client takes from a server.
const MAX_MESSAGE: usize = 64 << 20;
/// The longest response head the client reads.
const MAX_HEAD: usize = 16 * 1024;

type Input = BufReader<Chain<Cursor<Vec<u8>>, TcpStream>>;

/// What the server sent.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Received {
    /// A text or binary message.
    Message(Message),
    /// A ping, with its payload (the client does not answer it by itself: see
    /// [`WsClient::recv_message`]).
    Ping(Vec<u8>),
    /// A pong, with its payload.
    Pong(Vec<u8>),
    /// A close frame: its code and reason, or `None` when it had no code.
    Close(Option<(u16, String)>),
}

/// Opens a WebSocket connection to `path` on `addr`, with extra handshake headers (an `Authorization`,
/// a `Sec-WebSocket-Protocol`, ...). Every read and write on it has `timeout`.
///
/// # Errors
/// Any I/O error; `InvalidData` when the answer is not a valid `101` for this handshake (its text then
/// holds the status line, so a refusal shows as, say, `handshake refused: HTTP/1.1 403 Forbidden`).
pub fn connect(
    addr: impl ToSocketAddrs,
    path: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> io::Result<WsClient> {
    let stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    let host = stream.peer_addr()?;
    let key = handshake::new_key(random_bytes());
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    (&stream).write_all(request.as_bytes())?;

    let (head, leftover) = read_response_head(&stream)?;
    let protocol = check_response(&head, &key)?;
    let input = BufReader::new(Cursor::new(leftover).chain(stream.try_clone()?));
    let limits = Limits { max_frame: MAX_MESSAGE, max_message: MAX_MESSAGE };
    Ok(WsClient {
        sender: WsSender { stream },
        reader: MessageReader::new(input, Role::Client, limits),
        protocol,
    })
}

/// An open client connection. Reading and sending may happen on different threads: take a second
/// sending handle with [`sender`](WsClient::sender).
#[derive(Debug)]
pub struct WsClient {
    sender: WsSender,
    reader: MessageReader<Input>,
    protocol: Option<String>,
}

impl WsClient {
    /// The subprotocol the server chose, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The socket (to change its timeouts, or to write raw bytes in a test).
    pub fn stream(&self) -> &TcpStream {
        &self.sender.stream
    }

    /// Another handle that sends on this connection, for a second thread. Frames from two handles
    /// may interleave if both send at once: send from one at a time.
    ///
    /// # Errors
    /// When the socket cannot be cloned.
    pub fn sender(&self) -> io::Result<WsSender> {
        Ok(WsSender { stream: self.sender.stream.try_clone()? })
    }

    /// Sends a message (one masked frame).
    ///
    /// # Errors
    /// When the write fails.
    pub fn send(&mut self, message: impl Into<Message>) -> io::Result<()> {
        self.sender.send(message)
    }

    /// Sends a ping.
    ///
    /// # Errors
    /// When the write fails.
    pub fn ping(&mut self, payload: &[u8]) -> io::Result<()> {
        self.sender.ping(payload)
    }

    /// Sends a close frame with this code and reason.
    ///
    /// # Errors
    /// When the write fails.
    pub fn close(&mut self, code: u16, reason: &str) -> io::Result<()> {
        self.sender.close(code, reason)
    }

    /// The next frame or message from the server, as it comes.
    ///
    /// # Errors
    /// Timeouts and other I/O errors (`UnexpectedEof` when the server closed the TCP connection);
    /// `InvalidData` when the server broke the protocol.
    pub fn recv(&mut self) -> io::Result<Received> {
        match self.reader.next() {
            Ok(Incoming::Message(message)) => Ok(Received::Message(message)),
            Ok(Incoming::Ping(payload)) => Ok(Received::Ping(payload)),
            Ok(Incoming::Pong(payload)) => Ok(Received::Pong(payload)),
            Ok(Incoming::Close(frame)) => Ok(Received::Close(frame.map(|f| (f.code, f.reason)))),
            Err(ReadError::Io(err)) => Err(err),
            Err(ReadError::Violation(v)) => {
                Err(io::Error::new(io::ErrorKind::InvalidData, format!("{} ({})", v.reason, v.code)))
            }
        }
    }

    /// The next message, answering pings and skipping pongs on the way, as a browser does. `None` when
    /// the server closed the connection (its close frame is answered).
    ///
    /// # Errors
    /// As [`recv`](WsClient::recv).
    pub fn recv_message(&mut self) -> io::Result<Option<Message>> {
        loop {
            match self.recv()? {
                Received::Message(message) => return Ok(Some(message)),
                Received::Ping(payload) => self.sender.send_frame(OpCode::Pong, &payload)?,
                Received::Pong(_) => {}
                Received::Close(frame) => {
                    let echo = frame.map(|(code, _)| CloseFrame { code, reason: String::new() });
                    // The server may have closed the TCP connection already.
                    let _ = self.sender.send_frame(OpCode::Close, &close_payload(echo.as_ref()));
                    return Ok(None);
                }
            }
        }
    }
}

/// A handle that sends on a client connection (see [`WsClient::sender`]).
#[derive(Debug)]
pub struct WsSender {
    stream: TcpStream,
}

impl WsSender {
    /// Sends a message (one masked frame).
    ///
    /// # Errors
    /// When the write fails.
    pub fn send(&mut self, message: impl Into<Message>) -> io::Result<()> {
        let message = message.into();
        let opcode = if message.is_text() { OpCode::Text } else { OpCode::Binary };
        self.send_frame(opcode, message.as_bytes())
    }

    /// Sends a ping.
    ///
    /// # Errors
    /// When the write fails.
    pub fn ping(&mut self, payload: &[u8]) -> io::Result<()> {
        self.send_frame(OpCode::Ping, payload)
    }

    /// Sends a close frame with this code and reason.
    ///
    /// # Errors
    /// When the write fails.
    pub fn close(&mut self, code: u16, reason: &str) -> io::Result<()> {
        let frame = CloseFrame { code, reason: reason.to_owned() };
        self.send_frame(OpCode::Close, &close_payload(Some(&frame)))
    }

    fn send_frame(&mut self, opcode: OpCode, payload: &[u8]) -> io::Result<()> {
        self.stream.write_all(&frame::encode(true, opcode, payload, Some(random_bytes())))
    }
}

/// Reads up to the end of the response head; returns the head and whatever came after it.
fn read_response_head(mut stream: &TcpStream) -> io::Result<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let leftover = buf.split_off(end + 4);
            return Ok((buf, leftover));
        }
        if buf.len() > MAX_HEAD {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "response head too large"));
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Checks that the head is a `101` that accepts our key; returns the chosen subprotocol.
fn check_response(head: &[u8], key: &str) -> io::Result<Option<String>> {
    let invalid = |text: String| io::Error::new(io::ErrorKind::InvalidData, text);
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    if !matches!(response.parse(head), Ok(httparse::Status::Complete(_))) {
        return Err(invalid("malformed response head".into()));
    }
    if response.code != Some(101) {
        let status_line = String::from_utf8_lossy(head.split(|&b| b == b'\r').next().unwrap_or_default());
        return Err(invalid(format!("handshake refused: {status_line}")));
    }
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
    };
    if header("sec-websocket-accept") != Some(handshake::accept_key(key).as_str()) {
        return Err(invalid("wrong Sec-WebSocket-Accept".into()));
    }
    Ok(header("sec-websocket-protocol").map(str::to_owned))
}

/// Random bytes from the standard library's randomly seeded hasher (each `RandomState` has new keys).
fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    for chunk in out.chunks_mut(8) {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_usize(chunk.as_ptr() as usize);
        chunk.copy_from_slice(&hasher.finish().to_le_bytes()[..chunk.len()]);
    }
    out
}
