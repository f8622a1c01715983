//! The HTTP/1.1 side of the client: sending a request, reading the response head and
//! decoding the body's framing.

use std::fmt;
use std::io::{self, Read, Write};
use std::mem;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::{EventStream, READ_CHUNK, invalid_data, read_into, read_retrying};

/// The largest response head accepted, in bytes.
const MAX_HEAD: usize = 64 * 1024;
/// The most header fields accepted in a response head.
const MAX_HEADERS: usize = 64;
/// The longest chunk-size or trailer line accepted in a chunked body.
const MAX_FRAMING_LINE: usize = 8 * 1024;

/// A response to [`connect`] or [`request`]: the status, headers, and the event stream of its body.
///
/// `S` is the connection it came over: a [`TcpStream`] for [`connect`] and [`request`].
#[derive(Debug)]
pub struct ReceivedResponse<S = TcpStream> {
    status: u16,
    reason: String,
    headers: Vec<(String, String)>,
    events: EventStream<Body<S>>,
}

impl<S: Read> ReceivedResponse<S> {
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
    pub fn events(&mut self) -> &mut EventStream<Body<S>> {
        &mut self.events
    }

    /// The body, parsed as an event stream, taking the response apart.
    pub fn into_events(self) -> EventStream<Body<S>> {
        self.events
    }

    /// Reads the rest of the body as bytes until EOF (for non-stream responses such
    /// as a 404 page). Bytes already buffered but not yet parsed by [`ReceivedResponse::events`]
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
pub struct Body<S = TcpStream> {
    decoder: Decoder<S>,
}

impl<S> Body<S> {
    /// The connection under it, for tests that want to shut it down or inspect it.
    pub fn stream(&self) -> &S {
        &self.decoder.src
    }
}

impl<S: Read> Read for Body<S> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.decoder.read(out)
    }
}

impl<S: fmt::Debug> fmt::Debug for Body<S> {
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
            if !matches!(self.framing, Framing::Chunked(_)) && self.buf.capacity() > 0 {
                // The buffer the head was read into: unless chunked framing needs it again, nothing
                // more goes through it, so a stream held for hours does not keep it.
                self.buf = Vec::new();
                self.pos = 0;
            }
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
) -> io::Result<ReceivedResponse> {
    request(addr, "GET", path_and_query, &with_stream_defaults(headers), None, timeout)
}

/// `headers` after the defaults of a stream request that they do not replace.
pub(super) fn with_stream_defaults<'a>(headers: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let defaults = [("Accept", "text/event-stream"), ("Cache-Control", "no-cache")];
    let mut all: Vec<(&str, &str)> =
        defaults.into_iter().filter(|(name, _)| !has_header(headers, name)).collect();
    all.extend_from_slice(headers);
    all
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
/// ```
/// use std::time::Duration;
/// use sse_handler::{client, Config, Server, SseHandler};
///
/// let events = SseHandler::new(Config::default())?;
/// let server = Server::bind("127.0.0.1:0")?.publish("/publish", &events).spawn()?;
///
/// // What `curl -d deployed 'http://ADDR/publish?event=deploy'` sends: the body is the data.
/// let timeout = Duration::from_secs(5);
/// let addr = server.local_addr();
/// let response = client::request(addr, "POST", "/publish?event=deploy", &[], Some(b"deployed"), timeout)?;
/// assert_eq!(response.status(), 200);
/// // The id the event was given, and how many open streams it reached.
/// let body = String::from_utf8(response.read_body()?)?;
/// assert!(body.starts_with("{\"id\":") && body.ends_with(",\"connections\":0}\n"), "{body}");
/// server.shutdown();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
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
) -> io::Result<ReceivedResponse> {
    let (stream, peer) = open(addr, timeout, timeout)?;
    exchange(stream, &peer.to_string(), method, path_and_query, headers, body)
}

/// Sends a request over a connection that is already open and reads the response head, as
/// [`request`] does; `host` is the `Host` header's value unless `headers` has one.
pub(super) fn exchange<S: Read + Write>(
    mut stream: S,
    host: &str,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> io::Result<ReceivedResponse<S>> {
    let message = encode_request(method, path_and_query, host, headers, body)?;
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
    Ok(ReceivedResponse {
        status: head.status,
        reason: head.reason,
        headers: head.headers,
        events: EventStream::new(Body { decoder }),
    })
}

/// Connects to the first address that accepts within `connect_timeout`, with `io_timeout` on reads
/// and writes.
pub(super) fn open(
    addr: impl ToSocketAddrs,
    connect_timeout: Duration,
    io_timeout: Duration,
) -> io::Result<(TcpStream, SocketAddr)> {
    let mut last_error = None;
    for peer in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&peer, connect_timeout) {
            Ok(stream) => {
                stream.set_read_timeout(Some(io_timeout))?;
                stream.set_write_timeout(Some(io_timeout))?;
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

fn truncated(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, message.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::tests::{Trickle, comment, drain_items, message, retry};
    use std::io::Cursor;
    use std::net::TcpListener;
    use std::sync::mpsc;
    use std::thread;

    /// An upper bound for anything in these tests that waits on a socket.
    const BOUND: Duration = Duration::from_secs(5);

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
    fn the_head_buffer_is_let_go_once_its_body_bytes_are_read() {
        let mut head_buffer = Vec::with_capacity(READ_CHUNK);
        head_buffer.extend_from_slice(b"data: 1\n\n");
        let mut decoder = Decoder::new(&b"data: 2\n\n"[..], head_buffer, Framing::UntilClose);
        assert_eq!(decode_all(&mut decoder).unwrap(), b"data: 1\n\ndata: 2\n\n");
        assert_eq!(decoder.buf.capacity(), 0, "an open stream would keep {} bytes", decoder.buf.capacity());
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
