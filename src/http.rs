//! Just enough HTTP/1.x: a request head read under limits of size and time, a request body, and
//! plain responses. Parsing is `httparse`; everything here is bounded in bytes and in time.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::error::{Error, Phase, Result};

/// Headers beyond this count make a head "too large" (431).
pub(crate) const MAX_HEADERS: usize = 64;

/// A request head: method, target, headers and the peer's address.
///
/// The built-in server and [`SseHandler::serve`](crate::SseHandler::serve) read it from the socket; a
/// host server that has parsed the request itself builds one with [`Request::new`] and
/// [`Request::with_header`] and hands it to [`SseHandler::accept`](crate::SseHandler::accept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    peer: Option<SocketAddr>,
}

impl Request {
    /// A request with this method (`GET`, ...) and target (path plus optional `?query`).
    ///
    /// ```
    /// let request = sse_handler::Request::new("GET", "/events?event=tick")
    ///     .with_header("Last-Event-ID", "41");
    /// assert_eq!(request.path(), "/events");
    /// assert_eq!(request.query_values("event").collect::<Vec<_>>(), ["tick"]);
    /// ```
    pub fn new(method: impl Into<String>, target: impl Into<String>) -> Request {
        Request { method: method.into(), target: target.into(), headers: Vec::new(), peer: None }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Request {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the address of the client that sent the request.
    pub fn with_peer(mut self, peer: SocketAddr) -> Request {
        self.peer = Some(peer);
        self
    }

    /// The method, as sent (`GET`, `POST`, ...).
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The request target as sent: path and query.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The path part of the target, without the query.
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(&self.target, |(path, _)| path)
    }

    /// The raw query string (after `?`), if any.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, query)| query)
    }

    /// Every value of a query parameter, in order, percent-decoded (`+` is a space).
    pub fn query_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = String> + 'a {
        self.query()
            .unwrap_or("")
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
            .filter(move |(key, _)| percent_decode(key) == name)
            .map(|(_, value)| percent_decode(value))
    }

    /// The first value of a query parameter, percent-decoded.
    pub fn query_value(&self, name: &str) -> Option<String> {
        self.query_values(name).next()
    }

    /// All headers, in the order received.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The first header with this name (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The client's address, when known.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// Reads a request head from a client's socket, within `limits`, for an accept loop of your own
    /// that decides what to do with a request before handing it on: to
    /// [`SseHandler::accept`](crate::SseHandler::accept) for a stream, to an answer of its own, or
    /// to a 404 ([`Response::send_and_close`]).
    ///
    /// Returns the request and the bytes that arrived after its head (the start of a body, a
    /// WebSocket's first frames): pass them on to whatever reads the rest. The whole head must fit in
    /// [`max_head_bytes`](RequestLimits::max_head_bytes) and arrive within
    /// [`read_timeout`](RequestLimits::read_timeout) in total, however the client spreads it out; the
    /// socket keeps a read timeout of what was left of that time.
    ///
    /// ```no_run
    /// use sse_handler::{Config, Request, Response, SseHandler};
    ///
    /// let events = SseHandler::new(Config::default())?;
    /// let listener = std::net::TcpListener::bind("127.0.0.1:8080")?;
    /// for stream in listener.incoming() {
    ///     let (stream, events) = (stream?, events.clone());
    ///     std::thread::spawn(move || {
    ///         // A request that cannot be read has been answered (400, 431) and closed already.
    ///         let Ok((request, _)) = Request::read_from(&stream, &events.config().request_limits) else {
    ///             return;
    ///         };
    ///         if request.path() == "/events" {
    ///             let _ = events.accept(stream, &request);
    ///         } else {
    ///             let _ = Response::new(404).with_body("not found\n").send_and_close(&stream);
    ///         }
    ///     });
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// A request that cannot be read is answered here, as [`SseHandler::serve`](crate::SseHandler::serve)
    /// answers it, and the connection is closed before the error is returned, so the stream is only
    /// left to drop: [`Error::BadRequest`] (answered 400), [`Error::HeadTooLarge`] (431) and
    /// [`Error::Timeout`] when the head did not arrive in time (408; not answered when not a byte
    /// came, [`Phase::Idle`]); [`Error::Io`] when the client went away.
    pub fn read_from(stream: &TcpStream, limits: &RequestLimits) -> Result<(Request, Vec<u8>)> {
        match read_head(stream, limits) {
            Ok(head) => Ok((head.request, head.leftover)),
            Err(err) => {
                log::debug!("request refused: {err}");
                refuse(stream, &err);
                Err(err)
            }
        }
    }
}

/// Decodes `%XX` escapes and `+`; invalid escapes stay as they are, invalid UTF-8 becomes U+FFFD.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex_value(bytes[i + 1]), hex_value(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(byte: u8) -> Option<u8> {
    (byte as char).to_digit(16).map(|d| d as u8)
}

/// A request head read off a socket, with whatever bytes came after it.
#[derive(Debug)]
pub(crate) struct ReadHead {
    pub(crate) request: Request,
    pub(crate) leftover: Vec<u8>,
    pub(crate) deadline: Instant,
    /// An HTTP/1.1 request with `Expect: 100-continue`: the client waits for `100 Continue` before it
    /// sends its body.
    pub(crate) expects_continue: bool,
}

/// The buffer a request head is first read into; it grows (up to the head limit) when a head needs
/// more.
const HEAD_BUFFER: usize = 2048;

/// Reads one request head from `stream`, within `limits.max_head_bytes` and `limits.read_timeout` in
/// total (not per read, so a client trickling one byte at a time is cut off all the same).
///
/// # Errors
/// As [`parse_head`]; [`Error::Timeout`] at the deadline, with [`Phase::Idle`] when not a byte came
/// (a connection opened ahead of need, which gets no answer) and [`Phase::ReadRequest`] otherwise
/// (answered `408`).
pub(crate) fn read_head(stream: &TcpStream, limits: &RequestLimits) -> Result<ReadHead> {
    let deadline = Instant::now() + limits.read_timeout;
    // Read straight into the heap buffer: a stack buffer here would keep its pages resident for the
    // life of a stream's thread. It is larger than glibc's per-thread cache takes (1032 bytes), so
    // that once freed it goes back to the shared heap for the next connection, rather than staying
    // in the cache of a thread that may then wait for hours (1 KiB less per idle stream, measured).
    let mut buf = Vec::with_capacity(HEAD_BUFFER.min(limits.max_head_bytes));
    let mut scan = HeadScan::default();
    loop {
        let filled = buf.len();
        let room = (limits.max_head_bytes - filled).min(HEAD_BUFFER / 2);
        buf.resize(filled + room, 0);
        let read = read_before(stream, &mut buf[filled..], deadline);
        buf.truncate(filled + read.as_ref().map_or(0, |&n| n));
        let n = match read {
            Err(Error::Timeout(_)) if buf.is_empty() => return Err(Error::Timeout(Phase::Idle)),
            read => read?,
        };
        if n == 0 {
            return Err(if buf.is_empty() {
                Error::Io(io::ErrorKind::UnexpectedEof.into())
            } else {
                Error::BadRequest("the connection closed in the middle of the request head")
            });
        }
        if let Some(head) = scan.advance(&buf, limits.max_head_bytes)? {
            let mut request = head.request;
            request.peer = stream.peer_addr().ok();
            let expects_continue = head.http_1_1
                && request.header("expect").is_some_and(|value| value.eq_ignore_ascii_case("100-continue"));
            let leftover = buf.split_off(head.len);
            return Ok(ReadHead { request, leftover, deadline, expects_continue });
        }
    }
}

/// Decides when a head that arrives in pieces is worth parsing: on the first bytes (so that junk,
/// such as a TLS handshake, is refused at once), then only once a blank line can have ended it, or
/// when the buffer is at the limit. Parsing after every read would make a client that sends its
/// head a byte at a time cost work quadratic in the head's size.
#[derive(Debug, Default)]
pub(crate) struct HeadScan {
    /// How far the buffer has been searched for the end of a blank line.
    searched: usize,
    /// Whether a byte other than CR or LF has come: empty lines before the request line end nothing.
    started: bool,
    /// How many times the head was parsed.
    parses: usize,
}

/// A complete head: the request, the head's length, and whether it is HTTP/1.1 (rather than 1.0).
#[derive(Debug)]
pub(crate) struct ParsedHead {
    pub(crate) request: Request,
    pub(crate) len: usize,
    pub(crate) http_1_1: bool,
}

impl HeadScan {
    /// Takes the buffer read so far (the previous call's plus what came since): `Ok(None)` while
    /// the head is incomplete and under the limit, else as [`parse_head`].
    pub(crate) fn advance(&mut self, buf: &[u8], max_head_bytes: usize) -> Result<Option<ParsedHead>> {
        let mut first = self.searched == 0;
        loop {
            let end_found = self.search(buf);
            if !(first || end_found || buf.len() >= max_head_bytes) {
                return Ok(None);
            }
            self.parses += 1;
            let parsed = parse_request_head(buf, max_head_bytes)?;
            // Not complete at a blank line: search on in what has already come.
            if parsed.is_some() || !end_found {
                return Ok(parsed);
            }
            first = false;
        }
    }

    /// How many times the head was parsed so far.
    #[cfg(test)]
    pub(crate) fn parses(&self) -> usize {
        self.parses
    }

    /// Searches the bytes not searched yet for an LF that ends a blank line (after LF or LF CR).
    fn search(&mut self, buf: &[u8]) -> bool {
        while self.searched < buf.len() {
            let at = self.searched;
            self.searched += 1;
            match buf[at] {
                b'\n' if self.started && ends_blank_line(&buf[..at]) => return true,
                b'\r' | b'\n' => {}
                _ => self.started = true,
            }
        }
        false
    }
}

/// Whether an LF right after `before` would end an empty line.
fn ends_blank_line(before: &[u8]) -> bool {
    before.ends_with(b"\n") || before.ends_with(b"\n\r")
}

/// One read that gives up at `deadline`.
fn read_before(mut stream: &TcpStream, buf: &mut [u8], deadline: Instant) -> Result<usize> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Timeout(Phase::ReadRequest));
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(buf) {
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            result => return result.map_err(|err| Error::from_io(err, Phase::ReadRequest)),
        }
    }
}

/// How long writing an answer before closing may block on a client that does not read.
const ANSWER_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Answers a request that could not be served with what [`Response::for_error`] gives (nothing, for
/// a timeout or a client gone), then closes without losing the answer.
pub(crate) fn refuse(stream: &TcpStream, err: &Error) {
    if let Some(response) = Response::for_error(err) {
        if let Err(write_err) = response.write_before_close(stream) {
            log::debug!("could not write the {} answer: {write_err}", response.status());
        }
    }
    linger_close(stream);
}

/// Closes a connection whose request was not read in full (an error answer) without losing the answer:
/// closing with unread input makes the kernel send a reset, which can destroy the answer before the
/// client reads it. So: end our side, then read and discard what the client still sends, briefly.
pub(crate) fn linger_close(mut stream: &TcpStream) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let deadline = Instant::now() + Duration::from_millis(500);
    let mut sink = [0u8; 4096];
    let mut discarded = 0;
    while discarded < 256 * 1024 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => discarded += n,
        }
    }
}

/// Parses a request head from the start of `buf`: `Ok(None)` while it is incomplete (and shorter than
/// `max_head_bytes`), else the request and the head's length, which is never more than `max_head_bytes`
/// (a longer head is [`Error::HeadTooLarge`], however much of it `buf` holds).
///
/// Every line must end in CRLF: a bare LF is [`Error::BadRequest`]. HTTP allows a server to take it
/// for a line end, but a proxy in front that does not would see other header lines than we do (and so,
/// perhaps, another body), which is how requests are smuggled past it.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn parse_head(buf: &[u8], max_head_bytes: usize) -> Result<Option<(Request, usize)>> {
    Ok(parse_request_head(buf, max_head_bytes)?.map(|head| (head.request, head.len)))
}

fn parse_request_head(buf: &[u8], max_head_bytes: usize) -> Result<Option<ParsedHead>> {
    // On the heap, for the same reason as the head's buffer (this is 2 KiB).
    let mut headers = vec![httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len > max_head_bytes => {
            return Err(Error::HeadTooLarge { limit: max_head_bytes });
        }
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= max_head_bytes => {
            return Err(Error::HeadTooLarge { limit: max_head_bytes });
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Error::HeadTooLarge { limit: max_head_bytes });
        }
        Err(err) => return Err(Error::BadRequest(parse_error_text(err))),
    };
    if has_bare_lf(&buf[..len]) {
        return Err(Error::BadRequest("a line of the request head ends in a bare LF, not CRLF"));
    }
    let (Some(method), Some(target)) = (parsed.method, parsed.path) else {
        return Err(Error::BadRequest("incomplete request line"));
    };
    let mut request = Request::new(method, target);
    for header in parsed.headers.iter() {
        let Ok(value) = std::str::from_utf8(header.value) else {
            return Err(Error::BadRequest("a header value is not valid UTF-8"));
        };
        request.headers.push((header.name.to_owned(), value.trim().to_owned()));
    }
    Ok(Some(ParsedHead { request, len, http_1_1: parsed.version == Some(1) }))
}

fn has_bare_lf(bytes: &[u8]) -> bool {
    bytes.iter().enumerate().any(|(at, &byte)| byte == b'\n' && (at == 0 || bytes[at - 1] != b'\r'))
}

fn parse_error_text(err: httparse::Error) -> &'static str {
    match err {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid method",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "not an HTTP/1.x request",
    }
}

/// Reads the request body that `request`'s headers announce (`Content-Length` or chunked), starting
/// with the bytes already read past the head, within the limits and the head's deadline. A client
/// that expects `100 Continue` gets it when the body is first read from the socket: not for a body
/// refused by its announced size, nor for one that has already come.
pub(crate) fn read_body(stream: &TcpStream, head: &ReadHead, limits: &RequestLimits) -> Result<Vec<u8>> {
    let mut reader = DeadlineReader { stream, deadline: head.deadline, owes_continue: head.expects_continue };
    let mut input = io::Read::chain(&head.leftover[..], &mut reader);
    read_body_from(&mut input, &head.request, limits.max_body_bytes)
}

struct DeadlineReader<'a> {
    stream: &'a TcpStream,
    deadline: Instant,
    owes_continue: bool,
}

impl Read for DeadlineReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if std::mem::take(&mut self.owes_continue) {
            let mut stream = self.stream;
            stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        read_before(self.stream, buf, self.deadline).map_err(|err| match err {
            Error::Io(err) => err,
            _ => io::ErrorKind::TimedOut.into(),
        })
    }
}

/// The body-framing logic, over any reader (unit tests use byte slices).
pub(crate) fn read_body_from(input: &mut impl Read, request: &Request, max: usize) -> Result<Vec<u8>> {
    let mut lengths = request.headers().iter().filter(|(n, _)| n.eq_ignore_ascii_case("content-length"));
    let encodings: Vec<&str> = request
        .headers()
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"))
        .map(|(_, v)| v.as_str())
        .collect();
    let body_error = |err: io::Error| match err.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Error::Timeout(Phase::ReadRequest),
        io::ErrorKind::UnexpectedEof => Error::BadRequest("the body ended before its announced length"),
        io::ErrorKind::InvalidData => Error::BadRequest("malformed chunked body"),
        _ => Error::Io(err),
    };

    match (lengths.next(), encodings.is_empty()) {
        (Some(_), false) => Err(Error::BadRequest("both Content-Length and Transfer-Encoding")),
        (None, false) => {
            let chunked = encodings.len() == 1 && encodings[0].eq_ignore_ascii_case("chunked");
            if !chunked {
                return Err(Error::BadRequest("only the chunked transfer coding is supported"));
            }
            read_chunked(input, max, body_error)
        }
        (Some((_, value)), true) => {
            if lengths.any(|(_, other)| other != value) {
                return Err(Error::BadRequest("conflicting Content-Length headers"));
            }
            let len = parse_content_length(value)?;
            if len > max {
                return Err(Error::BodyTooLarge { limit: max });
            }
            let mut body = vec![0; len];
            input.read_exact(&mut body).map_err(body_error)?;
            Ok(body)
        }
        (None, true) => Ok(Vec::new()),
    }
}

fn parse_content_length(value: &str) -> Result<usize> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::BadRequest("invalid Content-Length"));
    }
    // Too many digits for a usize is certainly over any body limit.
    Ok(value.parse().unwrap_or(usize::MAX))
}

fn read_chunked(
    input: &mut impl Read,
    max: usize,
    body_error: impl Fn(io::Error) -> Error,
) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(input, 1024).map_err(&body_error)?;
        // 1*HEXDIG, then optional whitespace before extensions: no sign, no leading space, which a
        // stricter or laxer reader in front of us could take for a different size.
        let size_text = line.split(';').next().unwrap_or("").trim_end_matches([' ', '\t']);
        if size_text.is_empty() || size_text.len() > 16 || !size_text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::BadRequest("invalid chunk size"));
        }
        let size =
            usize::from_str_radix(size_text, 16).map_err(|_| Error::BadRequest("invalid chunk size"))?;
        if size == 0 {
            break;
        }
        if size > max - body.len() {
            return Err(Error::BodyTooLarge { limit: max });
        }
        let start = body.len();
        body.resize(start + size, 0);
        input.read_exact(&mut body[start..]).map_err(&body_error)?;
        if !read_line(input, 2).map_err(&body_error)?.is_empty() {
            return Err(Error::BadRequest("chunk data longer than its size"));
        }
    }
    // Trailer fields, up to the blank line that ends the message; their content is ignored.
    let mut trailer_bytes = 0;
    loop {
        let line = read_line(input, 1024).map_err(&body_error)?;
        if line.is_empty() {
            return Ok(body);
        }
        trailer_bytes += line.len();
        if trailer_bytes > 8 * 1024 {
            return Err(Error::BadRequest("chunked trailer too large"));
        }
    }
}

/// Reads one CRLF-terminated line of at most `max` bytes (a line in the chunked framing). A bare CR or
/// LF in it is malformed: a reader that took it for a line end would frame the body differently.
fn read_line(input: &mut impl Read, max: usize) -> io::Result<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        input.read_exact(&mut byte)?;
        match byte[0] {
            b'\n' if line.last() == Some(&b'\r') => {
                line.pop();
                return String::from_utf8(line).map_err(|_| io::ErrorKind::InvalidData.into());
            }
            _ if line.last() == Some(&b'\r') => return Err(io::ErrorKind::InvalidData.into()),
            b'\n' => return Err(io::ErrorKind::InvalidData.into()),
            b => line.push(b),
        }
        if line.len() > max + 1 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "chunk line too long"));
        }
    }
}

/// A complete, plain HTTP response: what a route handler returns.
///
/// It is sent with `Content-Length` and `Connection: close`.
///
/// ```
/// use sse_handler::Response;
///
/// let page = Response::html("<h1>hello</h1>");
/// let teapot = Response::new(418).with_header("X-Reason", "short and stout").with_body("no coffee");
/// # let _ = (page, teapot);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    /// An empty response with this status.
    pub fn new(status: u16) -> Response {
        Response { status, headers: Vec::new(), body: Vec::new() }
    }

    /// `200` with a `text/plain; charset=utf-8` body.
    pub fn text(body: impl Into<String>) -> Response {
        Response::new(200).with_header("Content-Type", "text/plain; charset=utf-8").with_body(body.into())
    }

    /// `200` with a `text/html; charset=utf-8` body.
    pub fn html(body: impl Into<String>) -> Response {
        Response::new(200).with_header("Content-Type", "text/html; charset=utf-8").with_body(body.into())
    }

    /// Adds a header. Names or values holding CR or LF are dropped when the response is written, since
    /// they would split it.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Response {
        self.body = body.into();
        self
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The headers, in order.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The answer the library gives to a request that failed with `err`: the status of
    /// [`Error::http_status`], a plain-text body saying what was wrong, and the headers the status
    /// calls for (`Allow` for a 405, an authenticator's own headers). `None` when the error has no
    /// HTTP answer (a timeout, a client gone).
    ///
    /// ```
    /// use sse_handler::{Error, Response};
    ///
    /// let answer = Response::for_error(&Error::NotFound("/favicon.ico".into())).unwrap();
    /// assert_eq!(answer.status(), 404);
    /// assert_eq!(answer.body(), b"not found: /favicon.ico\n");
    /// ```
    pub fn for_error(err: &Error) -> Option<Response> {
        let status = err.http_status()?;
        let mut response = Response::new(status)
            .with_header("Content-Type", "text/plain; charset=utf-8")
            .with_body(format!("{err}\n"));
        match err {
            Error::MethodNotAllowed { allowed } => response = response.with_header("Allow", allowed.as_str()),
            Error::Rejected(rejection) => {
                response.body = format!("{}\n", rejection.message()).into_bytes();
                response.headers.extend(rejection.headers().iter().cloned());
            }
            #[cfg(feature = "websocket")]
            Error::WebSocketVersion => {
                response =
                    response.with_header("Sec-WebSocket-Version", "13").with_header("Upgrade", "websocket");
            }
            _ => {}
        }
        Some(response)
    }

    /// Writes the whole response on a client's socket, then closes the connection so that the client
    /// reads it all: closing a socket with request bytes still unread makes the kernel reset the
    /// connection, which can destroy an answer before the client reads it, so this ends the writing
    /// side and discards what the client still sends for up to half a second. The write may block
    /// for at most 5 s on a client that does not read.
    ///
    /// For an accept loop of your own (see [`Request::read_from`]); the body is written whatever the
    /// request's method.
    ///
    /// # Errors
    /// The write's error, when the client is gone or did not read in time.
    pub fn send_and_close(&self, stream: &TcpStream) -> io::Result<()> {
        let written = self.write_before_close(stream);
        linger_close(stream);
        written
    }

    /// Writes the whole response under a short write timeout, the socket being closed right after.
    fn write_before_close(&self, stream: &TcpStream) -> io::Result<()> {
        stream.set_write_timeout(Some(ANSWER_WRITE_TIMEOUT))?;
        self.write_to(&mut &*stream, false)
    }

    /// Writes the whole response; with `head_only` (a `HEAD` request) the body is left out.
    pub(crate) fn write_to(&self, out: &mut impl Write, head_only: bool) -> io::Result<()> {
        let mut bytes = Vec::with_capacity(128 + self.body.len());
        write_status_line(&mut bytes, self.status);
        for (name, value) in &self.headers {
            push_header(&mut bytes, name, value);
        }
        push_header(&mut bytes, "Content-Length", &self.body.len().to_string());
        push_header(&mut bytes, "Connection", "close");
        bytes.extend_from_slice(b"\r\n");
        if !head_only {
            bytes.extend_from_slice(&self.body);
        }
        out.write_all(&bytes)?;
        out.flush()
    }
}

pub(crate) fn write_status_line(bytes: &mut Vec<u8>, status: u16) {
    bytes.extend_from_slice(format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status)).as_bytes());
}

/// Appends `name: value\r\n`, unless either part would break the head (then it is dropped, with a log).
pub(crate) fn push_header(bytes: &mut Vec<u8>, name: &str, value: &str) {
    if !is_valid_header(name, value) {
        log::warn!("dropping response header {name:?}: it is not a valid HTTP header");
        return;
    }
    bytes.extend_from_slice(name.as_bytes());
    bytes.extend_from_slice(b": ");
    bytes.extend_from_slice(value.as_bytes());
    bytes.extend_from_slice(b"\r\n");
}

/// A header name is an RFC 9110 token; a value has no CR, LF or NUL.
pub(crate) fn is_valid_header(name: &str, value: &str) -> bool {
    let token_byte = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    !name.is_empty() && name.bytes().all(token_byte) && !value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0))
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// Limits on reading one request, so that no client can hold a thread or memory by sending slowly
/// or sending much.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestLimits {
    /// The most bytes a request head (request line and headers) may take; more is answered 431.
    /// Default 16 KiB.
    pub max_head_bytes: usize,
    /// The most bytes a request body (to a publish endpoint) may take; more is answered 413.
    /// Default 1 MiB.
    pub max_body_bytes: usize,
    /// How long the whole request (head and body) may take to arrive; a slower client is dropped
    /// without an answer. Default 10 s.
    pub read_timeout: Duration,
}

impl Default for RequestLimits {
    fn default() -> RequestLimits {
        RequestLimits {
            max_head_bytes: 16 * 1024,
            max_body_bytes: 1024 * 1024,
            read_timeout: Duration::from_secs(10),
        }
    }
}

impl RequestLimits {
    /// Sets [`RequestLimits::max_head_bytes`].
    pub fn max_head_bytes(mut self, bytes: usize) -> RequestLimits {
        self.max_head_bytes = bytes;
        self
    }

    /// Sets [`RequestLimits::max_body_bytes`].
    pub fn max_body_bytes(mut self, bytes: usize) -> RequestLimits {
        self.max_body_bytes = bytes;
        self
    }

    /// Sets [`RequestLimits::read_timeout`].
    pub fn read_timeout(mut self, timeout: Duration) -> RequestLimits {
        self.read_timeout = timeout;
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.max_head_bytes < 64 {
            return Err(Error::InvalidConfig("max_head_bytes must be at least 64".into()));
        }
        if self.read_timeout.is_zero() {
            return Err(Error::InvalidConfig("read_timeout must be more than zero".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<Option<(Request, usize)>> {
        parse_head(bytes, 8192)
    }

    #[test]
    fn parses_a_complete_head_and_reports_its_length() {
        let bytes = b"GET /events?event=a&event=b%20c HTTP/1.1\r\nHost: x\r\nLast-Event-ID:  7 \r\n\r\nextra";
        let (request, len) = parse(bytes).unwrap().unwrap();
        assert_eq!(len, bytes.len() - b"extra".len());
        assert_eq!(request.method(), "GET");
        assert_eq!(request.path(), "/events");
        assert_eq!(request.header("last-event-id"), Some("7"));
        assert_eq!(request.query_values("event").collect::<Vec<_>>(), ["a", "b c"]);
    }

    #[test]
    fn partial_heads_wait_for_more_until_the_limit() {
        assert!(parse(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap().is_none());
        let long = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(100));
        assert!(matches!(parse_head(long.as_bytes(), 64), Err(Error::HeadTooLarge { limit: 64 })));
    }

    #[test]
    fn a_complete_head_over_the_limit_is_too_large_whatever_the_buffer_holds() {
        let head = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(100));
        assert!(matches!(parse_head(head.as_bytes(), 64), Err(Error::HeadTooLarge { limit: 64 })));
        assert!(parse_head(head.as_bytes(), head.len()).unwrap().is_some(), "exactly at the limit");
    }

    #[test]
    fn malformed_heads_are_bad_requests() {
        for bytes in [
            &b"GET / HTTP/2.0\r\n\r\n"[..],
            b"GE T / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\0b\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        ] {
            assert!(matches!(parse(bytes), Err(Error::BadRequest(_))), "{bytes:?}");
        }
    }

    #[test]
    fn a_head_sent_a_byte_at_a_time_is_parsed_a_few_times_not_once_per_byte() {
        let limit = 16 * 1024;
        let mut head = String::from("GET /events HTTP/1.1\r\n");
        while head.len() < limit - 500 {
            head.push_str(&format!("X-Filler-{}: {}\r\n", head.len(), "v".repeat(400)));
        }
        head.push_str("\r\n");
        let mut scan = HeadScan::default();
        let bytes = head.as_bytes();
        for end in 1..bytes.len() {
            assert!(scan.advance(&bytes[..end], limit).unwrap().is_none(), "complete early, at {end}");
        }
        let complete = scan.advance(bytes, limit).unwrap().expect("complete at the blank line");
        assert_eq!(complete.len, bytes.len());
        // Once on the first byte, once at the blank line: not once per byte (16 000 parses of up to
        // 16 KiB each, some 130 MB of parsing for one request).
        assert_eq!(scan.parses(), 2, "{} bytes", bytes.len());
    }

    #[test]
    fn junk_is_refused_on_the_first_read_and_a_late_head_at_its_blank_line() {
        let tls_hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";
        assert!(matches!(HeadScan::default().advance(tls_hello, 8192), Err(Error::BadRequest(_))));
        let mut scan = HeadScan::default();
        let late = b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n";
        assert!(scan.advance(&late[..3], 8192).unwrap().is_none());
        assert!(scan.advance(&late[..late.len() - 1], 8192).unwrap().is_none());
        assert!(matches!(scan.advance(late, 8192), Err(Error::BadRequest(_))));
        let leading_empty_lines = b"\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        let mut scan = HeadScan::default();
        for end in 1..leading_empty_lines.len() {
            assert!(scan.advance(&leading_empty_lines[..end], 8192).unwrap().is_none());
        }
        assert!(scan.advance(leading_empty_lines, 8192).unwrap().is_some());
        assert_eq!(scan.parses(), 2);
    }

    #[test]
    fn bare_lf_line_ends_are_refused() {
        for bytes in [
            &b"GET / HTTP/1.1\nHost: x\n\n"[..],
            b"GET / HTTP/1.1\r\nHost: x\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\n\n",
            b"GET / HTTP/1.1\nHost: x\r\n\r\n",
            b"\nGET / HTTP/1.1\r\n\r\n",
        ] {
            assert!(
                matches!(parse(bytes), Err(Error::BadRequest(_))),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
            // The head reader finds the blank line of such a head too, rather than wait for the deadline.
            let mut scan = HeadScan::default();
            let refused = (1..=bytes.len()).find_map(|end| scan.advance(&bytes[..end], 8192).err());
            assert!(matches!(refused, Some(Error::BadRequest(_))), "{:?}", String::from_utf8_lossy(bytes));
        }
        assert!(
            parse(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody\nwith LF").unwrap().is_some(),
            "after the head"
        );
    }

    #[test]
    fn too_many_headers_is_too_large() {
        let mut head = String::from("GET / HTTP/1.1\r\n");
        for i in 0..=MAX_HEADERS {
            head.push_str(&format!("X-{i}: v\r\n"));
        }
        head.push_str("\r\n");
        assert!(matches!(parse_head(head.as_bytes(), 1 << 20), Err(Error::HeadTooLarge { .. })));
    }

    #[test]
    fn query_decoding() {
        let request = Request::new("GET", "/p?a=1&b=x+y&a=%E2%9C%93&c&%61=2&bad=%zz&end=%4");
        assert_eq!(request.query_values("a").collect::<Vec<_>>(), ["1", "✓", "2"]);
        assert_eq!(request.query_value("b").as_deref(), Some("x y"));
        assert_eq!(request.query_value("c").as_deref(), Some(""));
        assert_eq!(request.query_value("bad").as_deref(), Some("%zz"));
        assert_eq!(request.query_value("end").as_deref(), Some("%4"));
        assert_eq!(request.query_value("missing"), None);
    }

    fn body(headers: &[(&str, &str)], input: &[u8], max: usize) -> Result<Vec<u8>> {
        let mut request = Request::new("POST", "/publish");
        for (name, value) in headers {
            request = request.with_header(*name, *value);
        }
        read_body_from(&mut &input[..], &request, max)
    }

    #[test]
    fn body_by_content_length() {
        assert_eq!(body(&[("Content-Length", "3")], b"abcdef", 10).unwrap(), b"abc");
        assert_eq!(body(&[], b"ignored", 10).unwrap(), b"");
        assert!(matches!(body(&[("Content-Length", "11")], b"", 10), Err(Error::BodyTooLarge { limit: 10 })));
        assert!(matches!(body(&[("Content-Length", "5")], b"abc", 10), Err(Error::BadRequest(_))));
        assert!(matches!(body(&[("Content-Length", "-1")], b"", 10), Err(Error::BadRequest(_))));
        assert!(matches!(
            body(&[("Content-Length", "99999999999999999999999")], b"", 10),
            Err(Error::BodyTooLarge { .. })
        ));
        let conflicting = [("Content-Length", "1"), ("Content-Length", "2")];
        assert!(matches!(body(&conflicting, b"ab", 10), Err(Error::BadRequest(_))));
    }

    #[test]
    fn body_by_chunks() {
        let te = [("Transfer-Encoding", "chunked")];
        assert_eq!(body(&te, b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-T: 1\r\n\r\n", 10).unwrap(), b"abcde");
        assert!(matches!(body(&te, b"b\r\nabcdefghijk\r\n0\r\n\r\n", 10), Err(Error::BodyTooLarge { .. })));
        for bad in [&b"z\r\nabc\r\n0\r\n\r\n"[..], b"3\r\nabcd\r\n0\r\n\r\n", b"\r\n", b"3\r\nab"] {
            assert!(matches!(body(&te, bad, 10), Err(Error::BadRequest(_))), "{bad:?}");
        }
        assert_eq!(body(&te, b"3 ;x\r\nabc\r\n0\r\n\r\n", 10).unwrap(), b"abc", "space before extensions");
    }

    #[test]
    fn chunked_framing_that_readers_could_disagree_on_is_refused() {
        let te = [("Transfer-Encoding", "chunked")];
        for bad in [
            &b"+3\r\nabc\r\n0\r\n\r\n"[..],
            b" 3\r\nabc\r\n0\r\n\r\n",
            b"0x3\r\nabc\r\n0\r\n\r\n",
            b"3;a\nb\r\nabc\r\n0\r\n\r\n",
            b"3;a\rb\r\nabc\r\n0\r\n\r\n",
            b"3\nabc\r\n0\r\n\r\n",
            b"3\r\nabc\n0\r\n\r\n",
            b"3\r\nabc\r\n0\r\nX: a\nb\r\n\r\n",
        ] {
            let answer = body(&te, bad, 10);
            assert!(
                matches!(answer, Err(Error::BadRequest(_))),
                "{:?}: {answer:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let both = [("Content-Length", "3"), ("Transfer-Encoding", "chunked")];
        assert!(matches!(body(&both, b"", 10), Err(Error::BadRequest(_))));
        let gzip = [("Transfer-Encoding", "gzip")];
        assert!(matches!(body(&gzip, b"", 10), Err(Error::BadRequest(_))));
    }

    #[test]
    fn responses_never_carry_broken_headers() {
        let response =
            Response::text("hi").with_header("X-Bad", "a\r\nInjected: 1").with_header("Bad Name", "v");
        let mut out = Vec::new();
        response.write_to(&mut out, false).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi"
        );
    }
}

/// Properties of the request reader on generated input: it never panics, never reports more than it
/// was given or allowed, and reads back what a well-formed request says.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    /// Bytes that are mostly request syntax, so that generated input gets past the first line.
    fn request_bytes() -> impl Strategy<Value = Vec<u8>> {
        let token = prop_oneof![
            4 => any::<u8>().prop_map(|b| vec![b]),
            2 => Just(b"\r\n".to_vec()),
            1 => Just(b"\n".to_vec()),
            1 => Just(b"\r".to_vec()),
            1 => Just(b"\r\n\r\n".to_vec()),
            1 => Just(b": ".to_vec()),
            1 => Just(b" ".to_vec()),
            1 => Just(b"\0".to_vec()),
            1 => Just(b"Last-Event-ID".to_vec()),
            1 => Just(b"Content-Length: 3".to_vec()),
            1 => Just(b"Transfer-Encoding: chunked".to_vec()),
            1 => Just(b"/events?event=a%20b".to_vec()),
            1 => Just(b" HTTP/1.1".to_vec()),
            1 => Just("é".as_bytes().to_vec()),
            1 => Just(vec![b'a'; 200]),
        ];
        let start = prop_oneof![
            Just(b"GET /events HTTP/1.1\r\n".to_vec()),
            Just(b"POST /publish HTTP/1.1\r\n".to_vec()),
            Just(Vec::new()),
        ];
        (start, prop::collection::vec(token, 0..48))
            .prop_map(|(start, tokens)| [start, tokens.concat()].concat())
    }

    /// A well-formed request head, as (bytes, method, target, headers as the reader must report them).
    fn well_formed_head() -> impl Strategy<Value = (Vec<u8>, String, String, Vec<(String, String)>)> {
        let names = ["Host", "Last-Event-ID", "accept", "X-A", "x-Long-Name-0123456789", "Cache-Control"];
        let value_chars = prop::sample::select(vec![' ', '\t', 'a', 'Z', '0', ':', '%', '"', '~', 'é', '✓']);
        let value = prop::collection::vec(value_chars, 0..24).prop_map(String::from_iter);
        let header = (prop::sample::select(names.to_vec()).prop_map(str::to_owned), value);
        ("[A-Z]{1,7}", "/[a-zA-Z0-9/?=&%._~-]{0,40}", prop::collection::vec(header, 0..MAX_HEADERS)).prop_map(
            |(method, target, headers)| {
                let mut head = format!("{method} {target} HTTP/1.1\r\n");
                for (name, value) in &headers {
                    head.push_str(&format!("{name}:{value}\r\n"));
                }
                head.push_str("\r\n");
                let expected = headers.into_iter().map(|(n, v)| (n, v.trim().to_owned())).collect();
                (head.into_bytes(), method, target, expected)
            },
        )
    }

    fn chunked_request() -> Request {
        Request::new("POST", "/publish").with_header("Transfer-Encoding", "chunked")
    }

    /// `body` in chunks of the given sizes, each size line in hex of either case (with a leading zero
    /// or an extension now and then), then the last chunk, trailer fields and the blank line.
    fn encode_chunked(body: &[u8], sizes: &[usize], flourish: &[u8], trailer: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = body;
        let mut n = 0;
        while !rest.is_empty() {
            let size = sizes[n % sizes.len()].min(rest.len());
            let style = flourish[n % flourish.len()];
            let mut line = match style % 3 {
                0 => format!("{size:x}"),
                1 => format!("{size:X}"),
                _ => format!("0{size:x}"),
            };
            if style % 4 == 3 {
                line.push_str(";name=value");
            }
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&rest[..size]);
            out.extend_from_slice(b"\r\n");
            rest = &rest[size..];
            n += 1;
        }
        out.extend_from_slice(b"0\r\n");
        if trailer {
            out.extend_from_slice(b"X-Checksum: 1\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Whatever the bytes: no panic; a head is reported only within the input and the limit (and
        /// parses the same on its own); more input is asked for only below the limit; every refusal
        /// is a 400 or a 431; and reading the input in pieces, as `read_head` does, ends the same way
        /// as reading it at once, except that junk after the first piece is refused only once a
        /// blank line or the limit comes (until then the reader waits, and the deadline ends it).
        #[test]
        fn the_head_reader_stays_within_its_input_and_its_limit(
            bytes in request_bytes(),
            limit in 64..1024usize,
            step in 1..64usize,
        ) {
            let available = bytes.len().min(limit);
            let mut seen = 0;
            let mut scan = HeadScan::default();
            let in_pieces = loop {
                seen = (seen + step).min(available);
                let outcome = scan.advance(&bytes[..seen], limit).map(|head| head.map(|h| (h.request, h.len)));
                if !matches!(outcome, Ok(None)) || seen == available {
                    break outcome;
                }
            };
            let at_once = parse_head(&bytes[..available], limit);
            match (&in_pieces, &at_once) {
                (Ok(None), Err(Error::BadRequest(_))) => {
                    prop_assert!(available < limit && !HeadScan::default().search(&bytes[..available]));
                }
                _ => prop_assert_eq!(format!("{:?}", in_pieces), format!("{:?}", at_once)),
            }
            match parse_head(&bytes, limit) {
                Ok(Some((request, len))) => {
                    prop_assert!(len <= bytes.len() && len <= limit, "len {} of {} (limit {})", len, bytes.len(), limit);
                    prop_assert!(bytes[..len].ends_with(b"\n"));
                    let alone = parse_head(&bytes[..len], limit);
                    prop_assert!(matches!(alone, Ok(Some((ref r, l))) if *r == request && l == len));
                }
                Ok(None) => prop_assert!(bytes.len() < limit),
                Err(err) => prop_assert!(
                    matches!(err, Error::BadRequest(_) | Error::HeadTooLarge { .. }),
                    "{:?}", err
                ),
            }
        }

        /// A well-formed head reads back as sent (header values trimmed), whatever follows it, or is
        /// refused as too large when it is longer than the limit.
        #[test]
        fn well_formed_heads_read_back(
            (head, method, target, headers) in well_formed_head(),
            tail in prop::collection::vec(any::<u8>(), 0..32),
            limit in 64..2048usize,
        ) {
            let bytes = [&head[..], &tail[..]].concat();
            match parse_head(&bytes, limit) {
                Ok(Some((request, len))) => {
                    prop_assert!(head.len() <= limit);
                    prop_assert_eq!(len, head.len());
                    prop_assert_eq!(request.method(), method);
                    prop_assert_eq!(request.target(), target);
                    prop_assert_eq!(request.headers(), &headers[..]);
                }
                Err(Error::HeadTooLarge { .. }) => prop_assert!(head.len() > limit),
                other => prop_assert!(false, "{:?}", other),
            }
        }

        /// Whatever the framing headers and the bytes: no panic, a body never over the limit, and every
        /// refusal a 400 or a 413.
        #[test]
        fn the_body_reader_stays_within_its_limit(
            headers in prop::collection::vec(
                prop_oneof![
                    Just(("Content-Length", "0".to_owned())),
                    (0..40usize).prop_map(|n| ("Content-Length", n.to_string())),
                    "[0-9+ -]{0,4}".prop_map(|v| ("Content-Length", v)),
                    Just(("Transfer-Encoding", "chunked".to_owned())),
                    "[a-zA-Z, ]{0,10}".prop_map(|v| ("Transfer-Encoding", v)),
                ],
                0..3,
            ),
            input in request_bytes(),
            max in 0..64usize,
        ) {
            let mut request = Request::new("POST", "/publish");
            for (name, value) in headers {
                request = request.with_header(name, value);
            }
            match read_body_from(&mut &input[..], &request, max) {
                Ok(body) => prop_assert!(body.len() <= max),
                Err(err) => prop_assert!(
                    matches!(err, Error::BadRequest(_) | Error::BodyTooLarge { .. }),
                    "{:?}", err
                ),
            }
        }

        /// A chunked body, however it is cut into chunks, reads back whole when within the limit (and
        /// is refused as too large otherwise), and not a byte past its end is read.
        #[test]
        fn chunked_bodies_read_back_and_nothing_past_them(
            body in prop::collection::vec(any::<u8>(), 0..200),
            sizes in prop::collection::vec(1..64usize, 1..6),
            flourish in prop::collection::vec(any::<u8>(), 1..6),
            trailer in any::<bool>(),
            tail in prop::collection::vec(any::<u8>(), 0..16),
            max in 0..256usize,
        ) {
            let message = [encode_chunked(&body, &sizes, &flourish, trailer), tail.clone()].concat();
            let mut input = &message[..];
            match read_body_from(&mut input, &chunked_request(), max) {
                Ok(read) => {
                    prop_assert_eq!(read, body);
                    prop_assert_eq!(input, &tail[..]);
                }
                Err(Error::BodyTooLarge { limit }) => prop_assert!(body.len() > max && limit == max),
                Err(err) => prop_assert!(false, "{:?}", err),
            }
        }

        /// A `Content-Length` body reads back exactly, and nothing past it is read.
        #[test]
        fn content_length_bodies_read_back_and_nothing_past_them(
            body in prop::collection::vec(any::<u8>(), 0..100),
            tail in prop::collection::vec(any::<u8>(), 0..16),
            max in 0..128usize,
        ) {
            let request = Request::new("POST", "/publish").with_header("Content-Length", body.len().to_string());
            let message = [&body[..], &tail[..]].concat();
            let mut input = &message[..];
            match read_body_from(&mut input, &request, max) {
                Ok(read) => {
                    prop_assert_eq!(read, body);
                    prop_assert_eq!(input, &tail[..]);
                }
                Err(Error::BodyTooLarge { .. }) => prop_assert!(body.len() > max),
                Err(err) => prop_assert!(false, "{:?}", err),
            }
        }
    }
}
