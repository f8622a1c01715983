//! A small blocking client for `text/event-stream` responses, for tests and tools.
//!
//! [`EventStream`] parses the event stream format exactly as the WHATWG HTML
//! standard ("Server-sent events": parsing and interpreting an event stream)
//! describes it, over any [`Read`]er, and yields what a browser's
//! `EventSource` would see, plus comments and `retry:` changes.
//!
//! [`connect`] and [`request`] speak just enough HTTP/1.1 over a plain
//! [`TcpStream`] to open a stream (or send any other request) and return a
//! [`Response`] whose body is decoded according to its framing.
//!
//! ```no_run
//! use std::time::Duration;
//! use sse_handler::client;
//!
//! let mut response = client::connect("127.0.0.1:8080", "/events", &[], Duration::from_secs(5))?;
//! assert_eq!(response.status(), 200);
//! while let Some(event) = response.events().next_event()? {
//!     println!("{}: {}", event.event_type, event.data);
//! }
//! # Ok::<(), std::io::Error>(())
//! ```

use std::fmt;
use std::io::{self, Read, Write};
use std::mem;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// How many bytes each read from an underlying reader asks for.
const READ_CHUNK: usize = 8 * 1024;
/// The longest event-stream line accepted, in bytes, not counting its line ending.
const MAX_LINE: usize = 16 * 1024 * 1024;
/// The largest response head accepted, in bytes.
const MAX_HEAD: usize = 64 * 1024;
/// The most header fields accepted in a response head.
const MAX_HEADERS: usize = 64;
/// The longest chunk-size or trailer line accepted in a chunked body.
const MAX_FRAMING_LINE: usize = 8 * 1024;
/// The UTF-8 byte order mark, stripped once from the start of a stream.
const BOM: &[u8; 3] = b"\xEF\xBB\xBF";

/// One dispatched event, as the browser's EventSource would deliver it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedEvent {
    /// The event type: the last `event:` field, or "message" when none was given.
    pub event_type: String,
    /// The data buffer with its final LF removed (lines joined with "\n").
    pub data: String,
    /// The stream's last event id at dispatch time (persists across events, as in the spec).
    pub last_event_id: String,
}

/// Anything the stream said, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A dispatched event.
    Event(ReceivedEvent),
    /// A comment line (text after the ':' with ONE leading space removed if present;
    /// e.g. ": hb" -> "hb", ":hb" -> "hb", ":" -> "").
    Comment(String),
    /// A valid `retry:` field (all ASCII digits) set the reconnection time.
    ///
    /// A value too large for `u64` milliseconds saturates at `u64::MAX` ms.
    Retry(Duration),
}

/// A parser of the `text/event-stream` format over a byte reader.
///
/// It reads in chunks, splits lines at CRLF, LF or CR, decodes each complete
/// line as UTF-8 (invalid bytes become U+FFFD) and interprets the fields as
/// the WHATWG standard says. Errors from the reader are returned as they are
/// (apart from [`io::ErrorKind::Interrupted`], which is retried) and leave the
/// parser's state intact, so after a read timeout (`WouldBlock` or `TimedOut`)
/// the next call carries on where the stream left off.
///
/// A line longer than 16 MiB is an error of kind [`io::ErrorKind::InvalidData`];
/// the stream then counts as ended and later calls return `Ok(None)`.
pub struct EventStream<R> {
    reader: R,
    /// Bytes read but not yet split into lines: `buf[pos..]` is unconsumed.
    buf: Vec<u8>,
    pos: usize,
    /// How many bytes at the start of `buf[pos..]` are known to hold no line ending.
    scanned: usize,
    /// Whether the start of the stream has been checked for a byte order mark.
    bom_checked: bool,
    /// The last line ended with CR, so an LF arriving next is part of that line ending.
    after_cr: bool,
    /// The stream ended (or hit a fatal error); nothing more will be read.
    finished: bool,
    event_type: String,
    data: String,
    id_buffer: String,
    last_event_id: String,
    retry: Option<Duration>,
}

impl<R> EventStream<R> {
    /// Wraps `reader`, which should yield the body of a `text/event-stream` response.
    pub fn new(reader: R) -> Self {
        EventStream {
            reader,
            buf: Vec::new(),
            pos: 0,
            scanned: 0,
            bom_checked: false,
            after_cr: false,
            finished: false,
            event_type: String::new(),
            data: String::new(),
            id_buffer: String::new(),
            last_event_id: String::new(),
            retry: None,
        }
    }

    /// The stream's last event id: the id buffer as of the latest dispatch ("" at first).
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// The reconnection time from the last valid `retry:` field, if any was seen.
    pub fn retry(&self) -> Option<Duration> {
        self.retry
    }

    /// The underlying reader.
    pub fn get_ref(&self) -> &R {
        &self.reader
    }

    /// Returns the underlying reader; bytes already read from it but not yet parsed are dropped.
    pub fn into_inner(self) -> R {
        self.reader
    }

    /// Returns the reader and the bytes read from it that were not yet parsed.
    fn into_parts(self) -> (R, Vec<u8>) {
        let mut unparsed = self.buf;
        unparsed.drain(..self.pos);
        (self.reader, unparsed)
    }

    /// Applies one complete line; returns what it produced, if anything.
    fn interpret(&mut self, line: &str) -> Option<Item> {
        if line.is_empty() {
            return self.dispatch().map(Item::Event);
        }
        if let Some(comment) = line.strip_prefix(':') {
            return Some(Item::Comment(strip_one_space(comment).to_owned()));
        }
        match line.split_once(':') {
            Some((field, value)) => self.apply_field(field, strip_one_space(value)),
            None => self.apply_field(line, ""),
        }
    }

    /// Processes one field; field names are case-sensitive and unknown ones are ignored.
    fn apply_field(&mut self, field: &str, value: &str) -> Option<Item> {
        match field {
            "event" => value.clone_into(&mut self.event_type),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            "id" if !value.contains('\0') => value.clone_into(&mut self.id_buffer),
            "retry" => {
                let retry = parse_retry(value)?;
                self.retry = Some(retry);
                return Some(Item::Retry(retry));
            }
            _ => {}
        }
        None
    }

    /// Ends the current event at a blank line, returning it unless its data is empty.
    fn dispatch(&mut self) -> Option<ReceivedEvent> {
        // The id buffer is not reset, so the id carries over to later events.
        self.last_event_id.clone_from(&self.id_buffer);
        if self.data.is_empty() {
            self.event_type.clear();
            return None;
        }
        let mut data = mem::take(&mut self.data);
        if data.ends_with('\n') {
            data.pop();
        }
        let mut event_type = mem::take(&mut self.event_type);
        if event_type.is_empty() {
            event_type.push_str("message");
        }
        Some(ReceivedEvent { event_type, data, last_event_id: self.last_event_id.clone() })
    }

    /// Strips one byte order mark at the very start; false until enough bytes have arrived to tell.
    fn skip_bom(&mut self) -> bool {
        if !self.bom_checked {
            let start = &self.buf[self.pos..];
            let n = start.len().min(BOM.len());
            if start[..n] != BOM[..n] {
                self.bom_checked = true;
            } else if n == BOM.len() {
                self.pos += n;
                self.bom_checked = true;
            }
        }
        self.bom_checked
    }

    /// Takes the next complete line out of the buffer, if there is one.
    fn take_line(&mut self) -> io::Result<Option<String>> {
        if self.after_cr && self.pos < self.buf.len() {
            // A CRLF that was split between two reads is one line ending, not two.
            self.after_cr = false;
            if self.buf[self.pos] == b'\n' {
                self.pos += 1;
            }
        }
        let rest = &self.buf[self.pos..];
        let Some(offset) = rest[self.scanned..].iter().position(|&b| b == b'\n' || b == b'\r') else {
            // Remember how far we looked so a long line is scanned only once.
            self.scanned = rest.len();
            return check_line_len(rest.len()).map(|()| None);
        };
        let len = self.scanned + offset;
        check_line_len(len)?;
        let line = String::from_utf8_lossy(&rest[..len]).into_owned();
        self.after_cr = rest[len] == b'\r';
        self.pos += len + 1;
        self.scanned = 0;
        Ok(Some(line))
    }

    /// Drops everything pending: an event without its blank line is never dispatched.
    fn finish(&mut self) {
        self.finished = true;
        self.buf = Vec::new();
        self.pos = 0;
        self.scanned = 0;
        self.data.clear();
        self.event_type.clear();
    }
}

impl<R: Read> EventStream<R> {
    /// Next item; `Ok(None)` at a clean end of stream (a pending event without its
    /// blank line is discarded, per spec).
    ///
    /// # Errors
    ///
    /// Any error of the reader except `Interrupted`; the parser state is kept, so
    /// calling again continues the stream. A line longer than 16 MiB gives
    /// [`io::ErrorKind::InvalidData`] and ends the stream.
    pub fn next_item(&mut self) -> io::Result<Option<Item>> {
        while let Some(line) = self.next_line()? {
            if let Some(item) = self.interpret(&line) {
                return Ok(Some(item));
            }
        }
        Ok(None)
    }

    /// Next dispatched event, skipping comments and retry items. `Ok(None)` at end of stream.
    ///
    /// # Errors
    ///
    /// As for [`EventStream::next_item`].
    pub fn next_event(&mut self) -> io::Result<Option<ReceivedEvent>> {
        while let Some(item) = self.next_item()? {
            if let Item::Event(event) = item {
                return Ok(Some(event));
            }
        }
        Ok(None)
    }

    /// The next complete line, reading more as needed; `Ok(None)` once the stream has ended.
    fn next_line(&mut self) -> io::Result<Option<String>> {
        while !self.finished {
            if self.skip_bom() {
                match self.take_line() {
                    Ok(Some(line)) => return Ok(Some(line)),
                    Ok(None) => {}
                    Err(e) => {
                        self.finish();
                        return Err(e);
                    }
                }
            }
            if !self.fill()? {
                self.finish();
            }
        }
        Ok(None)
    }

    /// Reads one more chunk into the buffer; `Ok(false)` at end of stream.
    fn fill(&mut self) -> io::Result<bool> {
        // Everything before `pos` is consumed and at most one partial line follows it,
        // so compacting here moves few bytes.
        self.buf.drain(..self.pos);
        self.pos = 0;
        read_into(&mut self.reader, &mut self.buf, READ_CHUNK).map(|n| n > 0)
    }
}

impl<R: fmt::Debug> fmt::Debug for EventStream<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream")
            .field("reader", &self.reader)
            .field("buffered", &(self.buf.len() - self.pos))
            .field("last_event_id", &self.last_event_id)
            .field("retry", &self.retry)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

/// Iterates over dispatched events only (comments/retry skipped); yields `Err` on an I/O error.
///
/// An error does not end the iteration: after a read timeout the next call continues the stream.
impl<R: Read> Iterator for EventStream<R> {
    type Item = io::Result<ReceivedEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_event().transpose()
    }
}

/// Removes one leading U+0020, as the spec does for field values and comments.
fn strip_one_space(text: &str) -> &str {
    text.strip_prefix(' ').unwrap_or(text)
}

/// A `retry:` value is valid only if it is one or more ASCII digits.
fn parse_retry(value: &str) -> Option<Duration> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // All digits, so parsing can only fail by overflowing: saturate.
    Some(Duration::from_millis(value.parse().unwrap_or(u64::MAX)))
}

fn check_line_len(len: usize) -> io::Result<()> {
    if len > MAX_LINE {
        return Err(invalid_data("event stream line longer than 16 MiB"));
    }
    Ok(())
}

/// Appends what one read of at most `max` bytes returns to `buf`, retrying `Interrupted`.
fn read_into(reader: &mut impl Read, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    let start = buf.len();
    buf.resize(start + max, 0);
    let result = read_retrying(reader, &mut buf[start..]);
    buf.truncate(start + result.as_ref().map_or(0, |&n| n));
    result
}

fn read_retrying(reader: &mut impl Read, out: &mut [u8]) -> io::Result<usize> {
    loop {
        match reader.read(out) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            result => return result,
        }
    }
}

fn invalid_data(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

fn truncated(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, message.to_owned())
}

/// A response to [`connect`] or [`request`]: the status, headers, and the event stream of its body.
#[derive(Debug)]
pub struct Response {
    status: u16,
    reason: String,
    headers: Vec<(String, String)>,
    events: EventStream<Body>,
}

impl Response {
    /// The status code, e.g. 200.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The reason phrase, e.g. "OK" (may be empty).
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// All header fields in the order received; values are decoded as UTF-8, lossily.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// First header with that name, ASCII case-insensitive.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body, parsed as an event stream.
    pub fn events(&mut self) -> &mut EventStream<Body> {
        &mut self.events
    }

    /// The body, parsed as an event stream, taking the response apart.
    pub fn into_events(self) -> EventStream<Body> {
        self.events
    }

    /// Reads the rest of the body as bytes until EOF (for non-stream responses such
    /// as a 404 page). Bytes already buffered but not yet parsed by [`Response::events`]
    /// are included.
    ///
    /// # Errors
    ///
    /// Any read error, including a timeout, or `UnexpectedEof` if a `Content-Length`
    /// or chunked body is cut short.
    pub fn read_body(self) -> io::Result<Vec<u8>> {
        let (mut body, mut bytes) = self.events.into_parts();
        body.read_to_end(&mut bytes)?;
        Ok(bytes)
    }
}

/// The response body reader: handles a close-delimited body, `Content-Length`, and
/// `Transfer-Encoding: chunked`.
///
/// A `Content-Length` or chunked body reads as ended once complete, even if the
/// connection stays open; one cut short by the connection closing is an error of
/// kind [`io::ErrorKind::UnexpectedEof`].
pub struct Body {
    decoder: Decoder<TcpStream>,
}

impl Body {
    /// The socket under it, for tests that want to shut it down or inspect it.
    pub fn stream(&self) -> &TcpStream {
        &self.decoder.src
    }
}

impl Read for Body {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.decoder.read(out)
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Body")
            .field("stream", &self.decoder.src)
            .field("framing", &self.decoder.framing)
            .finish_non_exhaustive()
    }
}

/// How the end of a response body is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// The body runs until the server closes the connection.
    UntilClose,
    /// This many bytes of the body are left.
    Length(u64),
    /// A chunked body, at this point of its grammar.
    Chunked(ChunkState),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk with this many data bytes left.
    Data(u64),
    /// Expecting the line ending after a chunk's data.
    DataEnd,
    /// After the last chunk, expecting trailer fields or the final blank line.
    Trailers,
    /// The body is complete.
    Done,
}

/// Removes a body's HTTP/1.1 framing from a byte source.
struct Decoder<R> {
    src: R,
    /// Bytes read from `src` but not yet used: `buf[pos..]` is unused.
    buf: Vec<u8>,
    pos: usize,
    framing: Framing,
    /// A partial chunk-size or trailer line, kept across failed reads.
    line: Vec<u8>,
}

impl<R: Read> Decoder<R> {
    /// `buffered` holds body bytes that were read together with the response head.
    fn new(src: R, buffered: Vec<u8>, framing: Framing) -> Self {
        Decoder { src, buf: buffered, pos: 0, framing, line: Vec::new() }
    }

    /// Reads bytes as they come, buffered ones first.
    fn read_raw(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.buf.len() {
            return read_retrying(&mut self.src, out);
        }
        let rest = &self.buf[self.pos..];
        let n = rest.len().min(out.len());
        out[..n].copy_from_slice(&rest[..n]);
        self.pos += n;
        Ok(n)
    }

    /// Reads at most `left` bytes; the source ending first is an error.
    fn read_limited(&mut self, out: &mut [u8], left: u64) -> io::Result<usize> {
        if left == 0 {
            return Ok(0);
        }
        let max = usize::try_from(left).map_or(out.len(), |left| left.min(out.len()));
        match self.read_raw(&mut out[..max])? {
            0 => Err(truncated("connection closed inside the response body")),
            n => Ok(n),
        }
    }

    fn read_chunked(&mut self, mut state: ChunkState, out: &mut [u8]) -> io::Result<usize> {
        loop {
            state = match state {
                ChunkState::Size => match parse_chunk_size(&self.framing_line()?)? {
                    0 => ChunkState::Trailers,
                    size => ChunkState::Data(size),
                },
                ChunkState::Data(left) => {
                    let n = self.read_limited(out, left)?;
                    let left = left - n as u64;
                    let next = if left == 0 { ChunkState::DataEnd } else { ChunkState::Data(left) };
                    self.framing = Framing::Chunked(next);
                    return Ok(n);
                }
                ChunkState::DataEnd => {
                    if !self.framing_line()?.is_empty() {
                        return Err(invalid_data("chunk data not followed by a line ending"));
                    }
                    ChunkState::Size
                }
                ChunkState::Trailers => {
                    if self.framing_line()?.is_empty() {
                        ChunkState::Done
                    } else {
                        ChunkState::Trailers
                    }
                }
                ChunkState::Done => return Ok(0),
            };
            // Save progress at each step so a timed-out read resumes here.
            self.framing = Framing::Chunked(state);
        }
    }

    /// Reads one line of chunked framing, without its CRLF (or bare LF).
    fn framing_line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if self.pos == self.buf.len() {
                self.buf.clear();
                self.pos = 0;
                if read_into(&mut self.src, &mut self.buf, READ_CHUNK)? == 0 {
                    return Err(truncated("connection closed inside the chunked framing"));
                }
            }
            let rest = &self.buf[self.pos..];
            if let Some(i) = rest.iter().position(|&b| b == b'\n') {
                self.line.extend_from_slice(&rest[..i]);
                self.pos += i + 1;
                let mut line = mem::take(&mut self.line);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            self.line.extend_from_slice(rest);
            self.pos = self.buf.len();
            if self.line.len() > MAX_FRAMING_LINE {
                return Err(invalid_data("chunk-size or trailer line too long"));
            }
        }
    }
}

impl<R: Read> Read for Decoder<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        match self.framing {
            Framing::UntilClose => self.read_raw(out),
            Framing::Length(left) => {
                let n = self.read_limited(out, left)?;
                self.framing = Framing::Length(left - n as u64);
                Ok(n)
            }
            Framing::Chunked(state) => self.read_chunked(state, out),
        }
    }
}

/// Parses a chunk-size line: hex digits, optionally followed by `;` and extensions.
fn parse_chunk_size(line: &[u8]) -> io::Result<u64> {
    let end = line.iter().position(|&b| b == b';').unwrap_or(line.len());
    let digits = line[..end].trim_ascii();
    let malformed = || invalid_data(format!("malformed chunk size {:?}", String::from_utf8_lossy(line)));
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_hexdigit) {
        return Err(malformed());
    }
    let digits = std::str::from_utf8(digits).map_err(|_| malformed())?;
    u64::from_str_radix(digits, 16).map_err(|_| malformed())
}

/// A parsed response head.
#[derive(Debug)]
struct Head {
    status: u16,
    reason: String,
    headers: Vec<(String, String)>,
}

/// Opens a TCP connection, sends `GET {path_and_query} HTTP/1.1` with `Host`,
/// `Accept: text/event-stream`, `Cache-Control: no-cache` and the extra headers,
/// and returns the response once its head has arrived.
///
/// An extra header with the same name (ASCII case-insensitive) as one of those
/// defaults replaces it. The socket's read and write timeouts, and the connect
/// timeout, are set to `timeout`, so every blocking read ends within it with an
/// error of kind `WouldBlock` or `TimedOut`; it must not be zero. The head is
/// parsed with `httparse` (at most 64 KiB, at most 64 headers); bytes read past
/// it stay available to the body. Interim `1xx` responses (other than `101`)
/// are skipped.
///
/// # Errors
///
/// Connection and I/O errors; `InvalidInput` for a zero timeout or a CR or LF
/// in the request text; `InvalidData` for a malformed or oversized head or an
/// invalid `Content-Length`; `UnexpectedEof` if the connection closes before
/// the head is complete.
pub fn connect(
    addr: impl ToSocketAddrs,
    path_and_query: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> io::Result<Response> {
    let defaults = [("Accept", "text/event-stream"), ("Cache-Control", "no-cache")];
    let mut all: Vec<(&str, &str)> =
        defaults.into_iter().filter(|(name, _)| !has_header(headers, name)).collect();
    all.extend_from_slice(headers);
    request(addr, "GET", path_and_query, &all, None, timeout)
}

/// Same as [`connect`], with any method and an optional body, and without the
/// `Accept` and `Cache-Control` defaults.
///
/// Sends `Host` (the connected address, unless given in `headers`) and, when a
/// body is given, `Content-Length` (unless `headers` has `Content-Length` or
/// `Transfer-Encoding`). No `Connection` header is sent. The response body is
/// framed as HTTP/1.1 says, so a `HEAD` request or a `204`/`304` response has
/// an empty body.
///
/// # Errors
///
/// As for [`connect`].
pub fn request(
    addr: impl ToSocketAddrs,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout: Duration,
) -> io::Result<Response> {
    let (mut stream, peer) = open(addr, timeout)?;
    let message = encode_request(method, path_and_query, &peer.to_string(), headers, body)?;
    stream.write_all(&message)?;
    stream.flush()?;

    let mut buf = Vec::new();
    let head = loop {
        let head = read_head(&mut stream, &mut buf)?;
        // Interim responses come before the real one; 101 is final (the protocol switches).
        if !(100..200).contains(&head.status) || head.status == 101 {
            break head;
        }
    };
    let framing = body_framing(method, &head)?;
    let decoder = Decoder::new(stream, buf, framing);
    Ok(Response {
        status: head.status,
        reason: head.reason,
        headers: head.headers,
        events: EventStream::new(Body { decoder }),
    })
}

/// Connects to the first address that accepts within `timeout`, with that timeout on reads and writes.
fn open(addr: impl ToSocketAddrs, timeout: Duration) -> io::Result<(TcpStream, SocketAddr)> {
    let mut last_error = None;
    for peer in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&peer, timeout) {
            Ok(stream) => {
                stream.set_read_timeout(Some(timeout))?;
                stream.set_write_timeout(Some(timeout))?;
                return Ok((stream, peer));
            }
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error
        .unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "address resolved to nothing")))
}

fn has_header(headers: &[(&str, &str)], name: &str) -> bool {
    headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
}

/// Serialises the request line, headers and body.
fn encode_request(
    method: &str,
    path_and_query: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> io::Result<Vec<u8>> {
    let mut texts =
        [method, path_and_query].into_iter().chain(headers.iter().flat_map(|&(name, value)| [name, value]));
    if let Some(bad) = texts.find(|text| text.contains(['\r', '\n'])) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("line break in request text {bad:?}"),
        ));
    }

    let mut head = format!("{method} {path_and_query} HTTP/1.1\r\n");
    if !has_header(headers, "host") {
        push_header(&mut head, "Host", host);
    }
    for (name, value) in headers {
        push_header(&mut head, name, value);
    }
    if let Some(body) = body {
        if !has_header(headers, "content-length") && !has_header(headers, "transfer-encoding") {
            push_header(&mut head, "Content-Length", &body.len().to_string());
        }
    }
    head.push_str("\r\n");

    let mut message = head.into_bytes();
    message.extend_from_slice(body.unwrap_or_default());
    Ok(message)
}

fn push_header(head: &mut String, name: &str, value: &str) {
    head.push_str(name);
    head.push_str(": ");
    head.push_str(value);
    head.push_str("\r\n");
}

/// Reads until `buf` starts with a complete response head, which is removed from `buf` and returned.
fn read_head(reader: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<Head> {
    loop {
        if let Some((head, len)) = parse_head(buf)? {
            buf.drain(..len);
            return Ok(head);
        }
        if buf.len() >= MAX_HEAD {
            return Err(invalid_data("response head larger than 64 KiB"));
        }
        let room = (MAX_HEAD - buf.len()).min(READ_CHUNK);
        if read_into(reader, buf, room)? == 0 {
            return Err(truncated("connection closed before the end of the response head"));
        }
    }
}

/// Parses a response head at the start of `bytes`; `Ok(None)` if it is not complete yet.
fn parse_head(bytes: &[u8]) -> io::Result<Option<(Head, usize)>> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut fields);
    let len = match response.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(invalid_data(format!("malformed response head: {e}"))),
    };
    let status = response.code.ok_or_else(|| invalid_data("response head without a status code"))?;
    let headers = response
        .headers
        .iter()
        .map(|h| (h.name.to_owned(), String::from_utf8_lossy(h.value).into_owned()))
        .collect();
    let head = Head { status, reason: response.reason.unwrap_or_default().to_owned(), headers };
    Ok(Some((head, len)))
}

/// Decides how the body ends (RFC 9112, section 6.3).
fn body_framing(method: &str, head: &Head) -> io::Result<Framing> {
    if method == "HEAD" || head.status == 204 || head.status == 304 {
        return Ok(Framing::Length(0));
    }
    if let Some(coding) = final_transfer_coding(&head.headers) {
        // Only a final `chunked` coding frames the body; with any other the close does.
        return Ok(if coding.eq_ignore_ascii_case("chunked") {
            Framing::Chunked(ChunkState::Size)
        } else {
            Framing::UntilClose
        });
    }
    Ok(content_length(&head.headers)?.map_or(Framing::UntilClose, Framing::Length))
}

fn final_transfer_coding(headers: &[(String, String)]) -> Option<&str> {
    headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("transfer-encoding"))
        .flat_map(|(_, value)| value.split(','))
        .map(str::trim)
        .rfind(|coding| !coding.is_empty())
}

/// The length given by the `Content-Length` fields, if any; malformed or conflicting values are an error.
fn content_length(headers: &[(String, String)]) -> io::Result<Option<u64>> {
    let values = headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .flat_map(|(_, value)| value.split(','))
        .map(str::trim);
    let mut length = None;
    for value in values {
        let invalid = || invalid_data(format!("invalid Content-Length {value:?}"));
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        let value = value.parse::<u64>().map_err(|_| invalid())?;
        if length.is_some_and(|length| length != value) {
            return Err(invalid_data("conflicting Content-Length values"));
        }
        length = Some(value);
    }
    Ok(length)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use std::net::TcpListener;
    use std::sync::mpsc;
    use std::thread;

    /// An upper bound for anything in these tests that waits on a socket.
    const BOUND: Duration = Duration::from_secs(5);

    /// Hands out its input `step` bytes per read; with `stall` set, every read
    /// that would return data first fails once with that error kind.
    struct Trickle {
        input: Vec<u8>,
        pos: usize,
        step: usize,
        stall: Option<io::ErrorKind>,
        stalled: bool,
    }

    impl Trickle {
        fn new(input: &[u8], step: usize, stall: Option<io::ErrorKind>) -> Self {
            Trickle { input: input.to_vec(), pos: 0, step, stall, stalled: false }
        }
    }

    impl Read for Trickle {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if let Some(kind) = self.stall {
                if !self.stalled && self.pos < self.input.len() {
                    self.stalled = true;
                    return Err(io::Error::new(kind, "stalled"));
                }
            }
            self.stalled = false;
            let n = self.step.min(out.len()).min(self.input.len() - self.pos);
            out[..n].copy_from_slice(&self.input[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    fn event(event_type: &str, data: &str, last_event_id: &str) -> Item {
        Item::Event(ReceivedEvent {
            event_type: event_type.to_owned(),
            data: data.to_owned(),
            last_event_id: last_event_id.to_owned(),
        })
    }

    fn message(data: &str, last_event_id: &str) -> Item {
        event("message", data, last_event_id)
    }

    fn comment(text: &str) -> Item {
        Item::Comment(text.to_owned())
    }

    fn retry(ms: u64) -> Item {
        Item::Retry(Duration::from_millis(ms))
    }

    /// Reads every item, retrying `WouldBlock`; returns them and how many errors were seen.
    fn drain_items<R: Read>(stream: &mut EventStream<R>) -> (Vec<Item>, usize) {
        let mut items = Vec::new();
        let mut errors = 0;
        loop {
            match stream.next_item() {
                Ok(Some(item)) => items.push(item),
                Ok(None) => return (items, errors),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    errors += 1;
                    assert!(errors < 1_000_000, "no progress");
                }
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
    }

    /// Parses `input` whole, in small pieces, and with a WouldBlock before every
    /// piece, and checks each way gives `expected`.
    fn check(name: &str, input: &[u8], expected: &[Item]) {
        for step in [usize::MAX, 1, 2, 3, 7] {
            for stall in [None, Some(io::ErrorKind::WouldBlock)] {
                let mut stream = EventStream::new(Trickle::new(input, step, stall));
                let (items, errors) = drain_items(&mut stream);
                assert_eq!(items, expected, "{name}: step {step}, stall {stall:?}");
                if stall.is_some() && !input.is_empty() {
                    assert!(errors > 0, "{name}: stalls must reach the caller");
                }
            }
        }
    }

    #[test]
    fn parses_the_event_stream_format() {
        let cases: Vec<(&str, &[u8], Vec<Item>)> = vec![
            ("empty stream", b"", vec![]),
            ("CRLF endings", b"data: a\r\ndata: b\r\n\r\n", vec![message("a\nb", "")]),
            ("CR endings", b"data: a\rdata: b\r\r", vec![message("a\nb", "")]),
            ("LF endings", b"data: a\ndata: b\n\n", vec![message("a\nb", "")]),
            ("mixed endings", b"data: a\r\n\rdata: b\n\r\n", vec![message("a", ""), message("b", "")]),
            (
                "CR then CRLF is two line endings",
                b"data: a\r\r\ndata: b\n\n",
                vec![message("a", ""), message("b", "")],
            ),
            (
                "only one space is stripped",
                b"data:x\n\ndata:  y\n\n",
                vec![message("x", ""), message(" y", "")],
            ),
            ("a tab is not stripped", b"data:\tx\n\n", vec![message("\tx", "")]),
            (
                "empty data still dispatches; an id alone does not",
                b"data\n\ndata:\n\nid: 5\n\ndata: after\n\n",
                vec![message("", ""), message("", ""), message("after", "5")],
            ),
            ("an id with NUL is ignored", b"id: 1\0x\ndata: y\n\n", vec![message("y", "")]),
            ("NUL in data is kept", b"data: a\0b\n\n", vec![message("a\0b", "")]),
            ("one BOM is stripped", b"\xEF\xBB\xBFdata: one\n\n", vec![message("one", "")]),
            (
                "a second BOM is content",
                "\u{FEFF}\u{FEFF}data: two\n\ndata: next\n\n".as_bytes(),
                vec![message("next", "")],
            ),
            ("a lone BOM prefix is not a BOM", b"\xEF\xBBdata: x\n\ndata: y\n\n", vec![message("y", "")]),
            ("a BOM prefix then EOF", b"\xEF\xBB", vec![]),
            ("a pending event is discarded at EOF", b"data: one\n\ndata: tail", vec![message("one", "")]),
            (
                "an event without its blank line is discarded at EOF",
                b"data: one\n\ndata: tail\n",
                vec![message("one", "")],
            ),
            ("an unterminated comment at EOF is discarded", b": partial", vec![]),
            (
                "a space before the colon is part of the name",
                b"data : ignored\ndata: kept\n\n",
                vec![message("kept", "")],
            ),
            (
                "field names are case-sensitive",
                b"Data: x\n\nDATA: y\n\nEvent: e\ndata: z\n\n",
                vec![message("z", "")],
            ),
            ("unknown fields are ignored", b"foo: bar\ndata: x\n\n", vec![message("x", "")]),
            ("only the first colon splits", b"data: a:b: c\n\n", vec![message("a:b: c", "")]),
            ("an invalid retry is ignored", b"retry: 1000x\n", vec![]),
            ("a valid retry", b"retry: 250\n", vec![retry(250)]),
            ("retry without a space", b"retry:7\n", vec![retry(7)]),
            (
                "retry values that are not all digits",
                b"retry:\nretry\nretry:  250\nretry: -1\nretry: 1 0\nretry: +5\nretry: 1.5\n",
                vec![],
            ),
            (
                "a huge retry saturates",
                b"retry: 99999999999999999999999\n",
                vec![Item::Retry(Duration::from_millis(u64::MAX))],
            ),
            (
                "an id without a colon resets the id",
                b"id: 7\ndata: a\n\nid\ndata: b\n\n",
                vec![message("a", "7"), message("b", "")],
            ),
            (
                "an empty id value resets the id",
                b"id: 5\ndata: a\n\nid:\ndata: b\n\n",
                vec![message("a", "5"), message("b", "")],
            ),
            (
                "the id persists across events",
                b"id: 1\ndata: a\n\ndata: b\n\n",
                vec![message("a", "1"), message("b", "1")],
            ),
            ("an id later in the event applies to it", b"data: a\nid: 2\n\n", vec![message("a", "2")]),
            ("only the final LF is removed", b"data: a\ndata: \n\n", vec![message("a\n", "")]),
            (
                "event types",
                b"event: add\ndata: 1\n\ndata: 2\n\nevent: x\nevent: y\ndata: 3\n\n",
                vec![event("add", "1", ""), message("2", ""), event("y", "3", "")],
            ),
            (
                "an empty event type means message",
                b"event:\ndata: 1\n\nevent\ndata: 2\n\n",
                vec![message("1", ""), message("2", "")],
            ),
            ("the type is reset even when nothing fires", b"event: x\n\ndata: y\n\n", vec![message("y", "")]),
            (
                "comments",
                b": hb\n:hb\n:\n:  two\n::x\n",
                vec![comment("hb"), comment("hb"), comment(""), comment(" two"), comment(":x")],
            ),
            (
                "a comment inside an event",
                b"data: a\n: c\ndata: b\n\n",
                vec![comment("c"), message("a\nb", "")],
            ),
            ("extra blank lines fire nothing", b"data: a\n\n\n\r\n\r", vec![message("a", "")]),
            (
                "invalid UTF-8 becomes U+FFFD",
                b"data: \xFF\xFEok\n\n",
                vec![message("\u{FFFD}\u{FFFD}ok", "")],
            ),
            ("multi-byte characters", "data: é€😀\n\n".as_bytes(), vec![message("é€😀", "")]),
            (
                "the spec's stock example",
                b"data: YHOO\ndata: +2\ndata: 10\n\n",
                vec![message("YHOO\n+2\n10", "")],
            ),
            (
                "the spec's id example",
                b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n",
                vec![comment("test stream"), message("first event", "1"), message("second event", "")],
            ),
        ];
        for (name, input, expected) in cases {
            check(name, input, &expected);
        }
    }

    #[test]
    fn tracks_last_event_id_and_retry() {
        let input = b"retry: 10\nid: a\ndata: 1\n\nretry: x\nid: b\n\nid: c\ndata: pending";
        let mut stream = EventStream::new(Cursor::new(input.to_vec()));
        assert_eq!(stream.last_event_id(), "");
        assert_eq!(stream.retry(), None);
        assert_eq!(stream.next_item().unwrap(), Some(retry(10)));
        assert_eq!(stream.next_item().unwrap(), Some(message("1", "a")));
        assert_eq!(stream.next_item().unwrap(), None);
        // "id: b" took effect at its blank line; "id: c" never reached one.
        assert_eq!(stream.last_event_id(), "b");
        assert_eq!(stream.retry(), Some(Duration::from_millis(10)));
    }

    #[test]
    fn next_event_and_iterator_skip_comments_and_retry() {
        let input = b": hi\nretry: 5\ndata: 1\n\n: again\nevent: e\ndata: 2\n\n";
        let mut stream = EventStream::new(Cursor::new(input.to_vec()));
        assert_eq!(
            stream.next_event().unwrap(),
            Some(ReceivedEvent {
                event_type: "message".into(),
                data: "1".into(),
                last_event_id: String::new(),
            })
        );
        let rest: Vec<_> = stream.collect::<io::Result<_>>().unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].event_type, "e");
        assert_eq!(rest[0].data, "2");
    }

    #[test]
    fn stays_ended_after_eof() {
        let mut stream = EventStream::new(Cursor::new(b"data: a\n\n".to_vec()));
        assert_eq!(stream.next_item().unwrap(), Some(message("a", "")));
        for _ in 0..3 {
            assert_eq!(stream.next_item().unwrap(), None);
        }
        assert!(stream.next().is_none());
    }

    #[test]
    fn would_block_is_returned_and_parsing_resumes() {
        let input = b"data: a\r\ndata: b\r\n\r\n";
        let mut stream = EventStream::new(Trickle::new(input, 4, Some(io::ErrorKind::WouldBlock)));
        let mut errors = 0;
        let event = loop {
            match stream.next_event() {
                Ok(event) => break event,
                Err(e) => {
                    assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
                    errors += 1;
                }
            }
        };
        assert_eq!(event.unwrap().data, "a\nb");
        assert_eq!(errors, input.len().div_ceil(4));
        assert!(stream.next_event().unwrap().is_none());
    }

    #[test]
    fn interrupted_reads_are_retried() {
        let input = b"data: a\n\ndata: b\n\n";
        let stream = EventStream::new(Trickle::new(input, 3, Some(io::ErrorKind::Interrupted)));
        let data: Vec<String> = stream.map(|event| event.unwrap().data).collect();
        assert_eq!(data, ["a", "b"]);
    }

    #[test]
    fn a_line_longer_than_the_limit_is_invalid_data() {
        let mut stream = EventStream::new(io::repeat(b'a'));
        let error = stream.next_item().unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        // The stream is over; the buffer has been released.
        assert_eq!(stream.next_item().unwrap(), None);
        assert_eq!(stream.buf.capacity(), 0);

        let mut long = vec![b'x'; MAX_LINE + 1];
        long.extend_from_slice(b"\n\n");
        let mut stream = EventStream::new(Cursor::new(long));
        let error = stream.next_item().unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn a_line_at_the_limit_is_accepted() {
        let mut input = b"data:".to_vec();
        input.resize(MAX_LINE, b'x');
        input.extend_from_slice(b"\n\n");
        let mut stream = EventStream::new(Cursor::new(input));
        let event = stream.next_event().unwrap().unwrap();
        assert_eq!(event.data.len(), MAX_LINE - 5);
    }

    #[test]
    fn accessors_and_debug() {
        let mut stream = EventStream::new(Cursor::new(b"data: a\n\ndata: b\n\n".to_vec()));
        stream.next_event().unwrap();
        assert_eq!(stream.get_ref().position(), 18);
        let debug = format!("{stream:?}");
        assert!(debug.contains("buffered: 9"), "{debug}");
        let (_, unparsed) = stream.into_parts();
        assert_eq!(unparsed, b"data: b\n\n");
        let stream = EventStream::new(Cursor::new(vec![1, 2]));
        assert_eq!(stream.into_inner().into_inner(), [1, 2]);
    }

    /// Reads a decoder to the end, retrying `WouldBlock`.
    fn decode_all<R: Read>(decoder: &mut Decoder<R>) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut chunk = [0; 16];
        loop {
            match decoder.read(&mut chunk) {
                Ok(0) => return Ok(out),
                Ok(n) => out.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }

    const CHUNKED: &[u8] = b"7\r\ndata: h\r\n6;ext=\"v\"\r\n\xC3\xA9llo\n\r\nA \r\n\ndata: 2\n\n\r\n0\r\nX-Trailer: t\r\n\r\nafter";

    #[test]
    fn decodes_chunked_bodies_in_any_pieces() {
        for step in [usize::MAX, 1, 2, 5] {
            for stall in [None, Some(io::ErrorKind::WouldBlock)] {
                let src = Trickle::new(CHUNKED, step, stall);
                let mut decoder = Decoder::new(src, Vec::new(), Framing::Chunked(ChunkState::Size));
                let body = decode_all(&mut decoder).unwrap();
                assert_eq!(body, "data: héllo\n\ndata: 2\n\n".as_bytes(), "step {step}");
                assert_eq!(decoder.framing, Framing::Chunked(ChunkState::Done));
            }
        }
    }

    #[test]
    fn events_come_through_a_chunked_body() {
        let src = Trickle::new(&CHUNKED[3..], 1, Some(io::ErrorKind::WouldBlock));
        let decoder = Decoder::new(src, CHUNKED[..3].to_vec(), Framing::Chunked(ChunkState::Size));
        let (items, _) = drain_items(&mut EventStream::new(decoder));
        assert_eq!(items, [message("héllo", ""), message("2", "")]);
    }

    #[test]
    fn decodes_length_and_close_delimited_bodies() {
        let src = Trickle::new(b"llo world", 2, Some(io::ErrorKind::WouldBlock));
        let mut decoder = Decoder::new(src, b"he".to_vec(), Framing::Length(5));
        assert_eq!(decode_all(&mut decoder).unwrap(), b"hello");

        let src = Trickle::new(b"llo world", 3, None);
        let mut decoder = Decoder::new(src, b"he".to_vec(), Framing::UntilClose);
        assert_eq!(decode_all(&mut decoder).unwrap(), b"hello world");

        let mut decoder = Decoder::new(io::empty(), Vec::new(), Framing::Length(0));
        assert_eq!(decode_all(&mut decoder).unwrap(), b"");
    }

    #[test]
    fn rejects_broken_bodies() {
        let cases: &[(&[u8], Framing, io::ErrorKind)] = &[
            (b"hel", Framing::Length(5), io::ErrorKind::UnexpectedEof),
            (b"5\r\nhel", Framing::Chunked(ChunkState::Size), io::ErrorKind::UnexpectedEof),
            (b"5\r\nhello\r\n", Framing::Chunked(ChunkState::Size), io::ErrorKind::UnexpectedEof),
            (b"5\r\nhello\r\n0\r\n", Framing::Chunked(ChunkState::Size), io::ErrorKind::UnexpectedEof),
            (b"zz\r\n", Framing::Chunked(ChunkState::Size), io::ErrorKind::InvalidData),
            (b"\r\n", Framing::Chunked(ChunkState::Size), io::ErrorKind::InvalidData),
            (b"-1\r\n", Framing::Chunked(ChunkState::Size), io::ErrorKind::InvalidData),
            (b"+1\r\nx\r\n", Framing::Chunked(ChunkState::Size), io::ErrorKind::InvalidData),
            (b"11111111111111111\r\n", Framing::Chunked(ChunkState::Size), io::ErrorKind::InvalidData),
            (b"2\r\nabc\r\n", Framing::Chunked(ChunkState::Size), io::ErrorKind::InvalidData),
        ];
        for &(input, framing, kind) in cases {
            let mut decoder = Decoder::new(Cursor::new(input), Vec::new(), framing);
            let error = decode_all(&mut decoder).unwrap_err();
            assert_eq!(error.kind(), kind, "{:?}", String::from_utf8_lossy(input));
        }

        let endless = io::repeat(b'1');
        let mut decoder = Decoder::new(endless, Vec::new(), Framing::Chunked(ChunkState::Size));
        let error = decode_all(&mut decoder).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }

    fn head_with(status: u16, headers: &[(&str, &str)]) -> Head {
        Head {
            status,
            reason: String::new(),
            headers: headers.iter().map(|&(n, v)| (n.to_owned(), v.to_owned())).collect(),
        }
    }

    #[test]
    fn chooses_body_framing() {
        use Framing::{Chunked, Length, UntilClose};
        let chunked = Chunked(ChunkState::Size);
        type Headers = &'static [(&'static str, &'static str)];
        let cases: &[(&str, u16, Headers, Framing)] = &[
            ("GET", 200, &[], UntilClose),
            ("GET", 200, &[("Content-Length", "12")], Length(12)),
            ("GET", 200, &[("content-length", "3, 3"), ("Content-Length", "3")], Length(3)),
            ("GET", 200, &[("Transfer-Encoding", "chunked")], chunked),
            ("GET", 200, &[("transfer-encoding", "Chunked")], chunked),
            ("GET", 200, &[("Transfer-Encoding", "gzip, chunked")], chunked),
            ("GET", 200, &[("Transfer-Encoding", "gzip"), ("Transfer-Encoding", "chunked")], chunked),
            ("GET", 200, &[("Transfer-Encoding", "chunked, gzip")], UntilClose),
            ("GET", 200, &[("Transfer-Encoding", "chunked"), ("Content-Length", "5")], chunked),
            ("HEAD", 200, &[("Content-Length", "12")], Length(0)),
            ("GET", 204, &[], Length(0)),
            ("GET", 304, &[("Content-Length", "12")], Length(0)),
            ("GET", 101, &[], UntilClose),
        ];
        for &(method, status, headers, expected) in cases {
            let framing = body_framing(method, &head_with(status, headers)).unwrap();
            assert_eq!(framing, expected, "{method} {status} {headers:?}");
        }
    }

    #[test]
    fn rejects_invalid_content_length() {
        for value in ["", "-1", "+5", "0x5", "5 5", "5, 6", "99999999999999999999999"] {
            let head = head_with(200, &[("Content-Length", value)]);
            let error = body_framing("GET", &head).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{value:?}");
        }
        let head = head_with(200, &[("Content-Length", "5"), ("Content-Length", "6")]);
        assert!(body_framing("GET", &head).is_err());
    }

    #[test]
    fn reads_a_response_head_and_keeps_what_follows() {
        let input = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-Bytes: \xFF\r\n\r\ndata: a\n\n";
        for step in [usize::MAX, 1, 10] {
            let mut buf = Vec::new();
            let mut src = Trickle::new(input, step, None);
            let head = read_head(&mut src, &mut buf).unwrap();
            assert_eq!(head.status, 200);
            assert_eq!(head.reason, "OK");
            assert_eq!(
                head.headers,
                [
                    ("Content-Type".to_owned(), "text/event-stream".to_owned()),
                    ("X-Bytes".to_owned(), "\u{FFFD}".to_owned()),
                ]
            );
            // Whatever was read past the head is handed back, so nothing is lost.
            src.read_to_end(&mut buf).unwrap();
            assert_eq!(buf, b"data: a\n\n", "step {step}");
        }
    }

    #[test]
    fn rejects_bad_response_heads() {
        let many_headers = format!("HTTP/1.1 200 OK\r\n{}\r\n", "A: b\r\n".repeat(MAX_HEADERS + 1));
        let huge_head = format!("HTTP/1.1 200 OK\r\nA: {}\r\n\r\n", "b".repeat(MAX_HEAD));
        let cases: &[(&[u8], io::ErrorKind)] = &[
            (b"", io::ErrorKind::UnexpectedEof),
            (b"HTTP/1.1 200 OK\r\nA: b\r\n", io::ErrorKind::UnexpectedEof),
            (b"HTTP/1.1 20 OK\r\n\r\n", io::ErrorKind::InvalidData),
            (b"SSH-2.0-OpenSSH\r\n\r\n", io::ErrorKind::InvalidData),
            (many_headers.as_bytes(), io::ErrorKind::InvalidData),
            (huge_head.as_bytes(), io::ErrorKind::InvalidData),
        ];
        for &(input, kind) in cases {
            let error = read_head(&mut Cursor::new(input), &mut Vec::new()).unwrap_err();
            assert_eq!(error.kind(), kind, "{:?}", String::from_utf8_lossy(&input[..input.len().min(40)]));
        }
        let mut exactly_max = b"HTTP/1.1 200 OK\r\n".to_vec();
        exactly_max.extend_from_slice(b"A: ");
        exactly_max.resize(MAX_HEAD - 4, b'b');
        exactly_max.extend_from_slice(b"\r\n\r\n");
        assert!(read_head(&mut Cursor::new(exactly_max), &mut Vec::new()).is_ok());
    }

    #[test]
    fn encodes_requests() {
        let get = encode_request("GET", "/s?a=1", "127.0.0.1:80", &[("X-A", "1")], None).unwrap();
        assert_eq!(get, b"GET /s?a=1 HTTP/1.1\r\nHost: 127.0.0.1:80\r\nX-A: 1\r\n\r\n");

        let post = encode_request("POST", "/p", "h:1", &[("host", "example")], Some(b"hi")).unwrap();
        assert_eq!(post, b"POST /p HTTP/1.1\r\nhost: example\r\nContent-Length: 2\r\n\r\nhi");

        let given = encode_request("PUT", "/", "h", &[("content-length", "2")], Some(b"hi")).unwrap();
        assert_eq!(given, b"PUT / HTTP/1.1\r\nHost: h\r\ncontent-length: 2\r\n\r\nhi");

        for (path, header) in [("/a\r\nX: y", ("A", "b")), ("/", ("A", "b\nc")), ("/", ("A\r", "b"))] {
            let error = encode_request("GET", path, "h", &[header], None).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        }
    }

    /// Serves one connection on a fresh loopback port: reads the request, then
    /// lets `reply` answer. The thread returns the raw request.
    fn serve_one(
        reply: impl FnOnce(&mut TcpStream) + Send + 'static,
    ) -> (SocketAddr, thread::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = thread::spawn(move || {
            let (mut socket, _) = listener.accept().unwrap();
            socket.set_read_timeout(Some(BOUND)).unwrap();
            let request = read_request(&mut socket);
            reply(&mut socket);
            request
        });
        (addr, server)
    }

    /// Reads a request head and as many body bytes as its Content-Length says.
    fn read_request(socket: &mut TcpStream) -> Vec<u8> {
        let mut request = Vec::new();
        let head_len = loop {
            if let Some(i) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            assert!(read_into(socket, &mut request, 1024).unwrap() > 0);
        };
        let head = String::from_utf8(request[..head_len].to_vec()).unwrap();
        let body_len = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                let is_length = name.eq_ignore_ascii_case("content-length");
                is_length.then(|| value.trim().parse::<usize>().unwrap())
            })
            .unwrap_or(0);
        while request.len() < head_len + body_len {
            assert!(read_into(socket, &mut request, 1024).unwrap() > 0);
        }
        request
    }

    /// Waits until the client closes its end, so a body can't be delimited by the close.
    fn wait_for_close(socket: &mut TcpStream) {
        let mut sink = [0; 64];
        while matches!(socket.read(&mut sink), Ok(n) if n > 0) {}
    }

    #[test]
    fn connect_sends_sse_headers_and_streams_events() {
        let (addr, server) = serve_one(|socket| {
            let reply = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-Custom: 1\r\n\r\n\
                         : hi\n\nretry: 500\nid: 1\ndata: one\n\ndata: two\n\n";
            socket.write_all(reply.as_bytes()).unwrap();
        });
        let mut response = connect(addr, "/events?topic=a", &[("Last-Event-ID", "0")], BOUND).unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.reason(), "OK");
        assert_eq!(response.header("content-type"), Some("text/event-stream"));
        assert_eq!(response.header("X-CUSTOM"), Some("1"));
        assert_eq!(response.header("missing"), None);
        assert_eq!(response.headers().len(), 2);
        assert!(response.events().get_ref().stream().peer_addr().is_ok());

        let (items, _) = drain_items(response.events());
        assert_eq!(items, [comment("hi"), retry(500), message("one", "1"), message("two", "1")]);

        let request = String::from_utf8(server.join().unwrap()).unwrap();
        assert!(request.starts_with("GET /events?topic=a HTTP/1.1\r\n"), "{request}");
        for line in [
            format!("Host: {addr}"),
            "Accept: text/event-stream".to_owned(),
            "Cache-Control: no-cache".to_owned(),
            "Last-Event-ID: 0".to_owned(),
        ] {
            assert!(request.contains(&format!("\r\n{line}\r\n")), "{line} in {request}");
        }
        assert!(!request.contains("Connection"), "{request}");
        assert!(!request.contains("Content-Length"), "{request}");
    }

    #[test]
    fn connect_lets_headers_replace_defaults() {
        let (addr, server) = serve_one(|socket| {
            socket.write_all(b"HTTP/1.1 406 Not Acceptable\r\nContent-Length: 0\r\n\r\n").unwrap();
        });
        let response = connect(addr, "/", &[("accept", "text/html")], BOUND).unwrap();
        assert_eq!(response.status(), 406);
        assert!(response.read_body().unwrap().is_empty());
        let request = String::from_utf8(server.join().unwrap()).unwrap();
        assert!(request.contains("\r\naccept: text/html\r\n"), "{request}");
        assert!(!request.contains("text/event-stream"), "{request}");
    }

    #[test]
    fn connect_decodes_a_chunked_stream_that_stays_open() {
        let (addr, server) = serve_one(|socket| {
            socket.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
            socket.write_all(CHUNKED).unwrap();
            wait_for_close(socket);
        });
        let response = connect(addr, "/events", &[], BOUND).unwrap();
        let events: Vec<_> = response.into_events().collect::<io::Result<_>>().unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].data, "héllo");
        assert_eq!(events[1].data, "2");
        server.join().unwrap();
    }

    #[test]
    fn request_posts_a_body_and_reads_a_content_length_reply() {
        let (addr, server) = serve_one(|socket| {
            let reply = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok";
            socket.write_all(reply).unwrap();
            wait_for_close(socket);
        });
        let headers = [("Content-Type", "text/plain")];
        let response = request(addr, "POST", "/publish", &headers, Some(b"hello"), BOUND).unwrap();
        assert_eq!((response.status(), response.reason()), (202, "Accepted"));
        assert_eq!(response.read_body().unwrap(), b"ok");

        let request = String::from_utf8(server.join().unwrap()).unwrap();
        assert!(request.starts_with("POST /publish HTTP/1.1\r\n"), "{request}");
        assert!(request.contains("\r\nContent-Length: 5\r\n"), "{request}");
        assert!(request.ends_with("\r\n\r\nhello"), "{request}");
        assert!(!request.contains("Accept"), "{request}");
    }

    #[test]
    fn read_body_reads_a_close_delimited_page() {
        let (addr, server) = serve_one(|socket| {
            let reply = b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n\r\nno such stream";
            socket.write_all(reply).unwrap();
        });
        let response = connect(addr, "/nope", &[], BOUND).unwrap();
        assert_eq!((response.status(), response.reason()), (404, "Not Found"));
        assert_eq!(response.read_body().unwrap(), b"no such stream");
        server.join().unwrap();
    }

    #[test]
    fn a_read_timeout_is_an_error_and_the_stream_resumes() {
        let (go_tx, go_rx) = mpsc::channel();
        let (addr, server) = serve_one(move |socket| {
            let reply = "HTTP/1.1 200 OK\r\n\r\ndata: one\n\ndata: tw";
            socket.write_all(reply.as_bytes()).unwrap();
            go_rx.recv_timeout(BOUND).unwrap();
            socket.write_all("o\n\n".as_bytes()).unwrap();
            wait_for_close(socket);
        });
        let mut response = connect(addr, "/events", &[], BOUND).unwrap();
        let events = response.events();
        assert_eq!(events.next_event().unwrap().unwrap().data, "one");

        // The server is waiting for our signal, so this read must time out.
        let socket = events.get_ref().stream();
        socket.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let error = events.next_event().unwrap_err();
        assert!(matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut), "{error}");

        events.get_ref().stream().set_read_timeout(Some(BOUND)).unwrap();
        go_tx.send(()).unwrap();
        let event = events.next_event().unwrap();
        assert_eq!(event.unwrap().data, "two");
        drop(response);
        server.join().unwrap();
    }

    #[test]
    fn connect_reports_a_closed_connection() {
        let (addr, server) = serve_one(|socket| {
            socket.write_all(b"HTTP/1.1 200 OK\r\n").unwrap();
        });
        let error = connect(addr, "/", &[], BOUND).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
        server.join().unwrap();
    }
}
