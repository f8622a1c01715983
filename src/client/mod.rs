//! A small blocking client for `text/event-stream` responses, for tests, tools and services.
//!
//! [`EventSource`] is what a browser's `EventSource` does, as a blocking iterator: it checks the
//! response, reconnects when the stream ends or breaks (honouring `retry:`, backing off when
//! attempts fail), and resumes with `Last-Event-ID`. Start there to consume a stream.
//!
//! [`EventStream`] parses the event stream format exactly as the WHATWG HTML
//! standard ("Server-sent events": parsing and interpreting an event stream)
//! describes it, over any [`Read`]er, and yields what a browser's
//! `EventSource` would see, plus comments and `retry:` changes.
//!
//! [`connect`] and [`request`] speak just enough HTTP/1.1 over a plain
//! [`TcpStream`] to open one stream (or send any other request), without
//! reconnecting or checking the response, and return a
//! [`ReceivedResponse`] whose body is decoded according to its framing.
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
//!
//! [`TcpStream`]: std::net::TcpStream

use std::fmt;
use std::io::{self, Read};
use std::mem;
use std::time::Duration;

mod http;
mod source;
mod url;

pub use http::{Body, ReceivedResponse, connect, request};
pub use source::{EventSource, EventSourceBuilder, SourceError, SourceHandle, State, Target, Update};

/// The old name of [`ReceivedResponse`], which clashed with the server's [`crate::Response`].
#[deprecated(since = "0.1.0", note = "renamed to `client::ReceivedResponse`")]
pub type Response<S = std::net::TcpStream> = ReceivedResponse<S>;

/// How many bytes each read from an underlying reader asks for.
const READ_CHUNK: usize = 8 * 1024;
/// The longest event-stream line accepted, in bytes, not counting its line ending.
const MAX_LINE: usize = 16 * 1024 * 1024;
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
///
/// Any [`Read`] will do, a byte slice included, which makes it a quick way to
/// see what a client makes of some bytes:
///
/// ```
/// use std::time::Duration;
/// use sse_handler::client::{EventStream, Item, ReceivedEvent};
///
/// let wire = b"retry: 3000\n: hello\nid: 7\nevent: price\ndata: 42\n\ndata: a\r\ndata: b\r\n\r\n";
/// let mut stream = EventStream::new(&wire[..]);
/// assert_eq!(stream.next_item()?, Some(Item::Retry(Duration::from_millis(3000))));
/// assert_eq!(stream.next_item()?, Some(Item::Comment("hello".into())));
///
/// // `next_event` skips comments and retry fields; the id carries over to later events.
/// let event = |event_type: &str, data: &str, id: &str| ReceivedEvent {
///     event_type: event_type.into(),
///     data: data.into(),
///     last_event_id: id.into(),
/// };
/// assert_eq!(stream.next_event()?, Some(event("price", "42", "7")));
/// assert_eq!(stream.next_event()?, Some(event("message", "a\nb", "7")));
/// assert_eq!(stream.next_event()?, None, "the end of the bytes ends the stream");
/// # Ok::<(), std::io::Error>(())
/// ```
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

    /// Starts the stream with this last event id, carried over from an earlier connection: events
    /// without an `id:` field report it, as a browser's `EventSource` does after reconnecting.
    fn carry_last_event_id(mut self, last_event_id: &str) -> Self {
        last_event_id.clone_into(&mut self.id_buffer);
        last_event_id.clone_into(&mut self.last_event_id);
        self
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
        // Everything before `pos` is consumed and at most one partial line follows it, so
        // compacting here moves few bytes. A buffer with nothing left in it is let go before the
        // read, which may wait for hours: an idle stream keeps no buffer, and a client holding
        // thousands of them holds no chunk for each.
        let unconsumed = self.buf.len() - self.pos;
        if unconsumed == 0 {
            self.buf = Vec::new();
        } else if unconsumed < READ_CHUNK {
            self.buf = self.buf[self.pos..].to_vec();
        } else {
            // A long line keeps its buffer, which grows by doubling: reading it stays linear.
            self.buf.drain(..self.pos);
        }
        self.pos = 0;
        let mut chunk = [0; READ_CHUNK];
        let n = read_retrying(&mut self.reader, &mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// Hands out its input `step` bytes per read; with `stall` set, every read
    /// that would return data first fails once with that error kind.
    pub(super) struct Trickle {
        input: Vec<u8>,
        pos: usize,
        step: usize,
        stall: Option<io::ErrorKind>,
        stalled: bool,
    }

    impl Trickle {
        pub(super) fn new(input: &[u8], step: usize, stall: Option<io::ErrorKind>) -> Self {
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

    pub(super) fn message(data: &str, last_event_id: &str) -> Item {
        event("message", data, last_event_id)
    }

    pub(super) fn comment(text: &str) -> Item {
        Item::Comment(text.to_owned())
    }

    pub(super) fn retry(ms: u64) -> Item {
        Item::Retry(Duration::from_millis(ms))
    }

    /// Reads every item, retrying `WouldBlock`; returns them and how many errors were seen.
    pub(super) fn drain_items<R: Read>(stream: &mut EventStream<R>) -> (Vec<Item>, usize) {
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
    fn an_idle_stream_keeps_no_buffer_and_a_long_line_is_read_in_few_reads() {
        // Events of 100 bytes, each read whole, with nothing to read between them: a stream that
        // waits keeps no buffer. Then reads that split events anywhere: it keeps what it has of a
        // partial line, and a chunk.
        let event = |n: usize, size: usize| {
            let head = format!("id: {n}\ndata: ");
            format!("{head}{}\n\n", "x".repeat(size - head.len() - 2)).into_bytes()
        };
        for (step, size) in [(100, 100), (5000, 300), (777, 1000)] {
            let events: Vec<u8> = (0..2000).flat_map(|n| event(n, size)).collect();
            let mut stream = EventStream::new(Trickle::new(&events, step, Some(io::ErrorKind::WouldBlock)));
            let mut seen = 0;
            loop {
                match stream.next_event() {
                    Ok(Some(event)) => {
                        assert_eq!(event.last_event_id, seen.to_string());
                        seen += 1;
                    }
                    Ok(None) => break,
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                        let unconsumed = stream.buf.len() - stream.pos;
                        let kept = stream.buf.capacity();
                        assert!(kept <= unconsumed + READ_CHUNK, "{kept} bytes kept for {unconsumed}");
                        if step == size {
                            assert_eq!(kept, 0, "a stream waiting between events keeps its buffer");
                        }
                    }
                    Err(err) => panic!("{err}"),
                }
            }
            assert_eq!(seen, 2000);
        }

        // A line of 4 MiB: the buffer grows with it, so the reads stay few.
        let long = format!("data: {}\n\n", "y".repeat(4 << 20));
        let mut reads = 0;
        let counted = CountReads { inner: long.as_bytes(), reads: &mut reads };
        let mut stream = EventStream::new(counted);
        assert_eq!(stream.next_event().unwrap().map(|event| event.data.len()), Some(4 << 20));
        drop(stream);
        assert!(reads < 600, "{reads} reads for 4 MiB");
    }

    struct CountReads<'a> {
        inner: &'a [u8],
        reads: &'a mut usize,
    }

    impl Read for CountReads<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            *self.reads += 1;
            self.inner.read(out)
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
}
