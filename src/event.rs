//! Events and their exact wire form (WHATWG HTML, "Server-sent events", the event stream format).
//!
//! An [`Event`] is validated and encoded once, when it is built; after that it is an immutable,
//! reference-counted blob of bytes, so sending it to ten thousand connections copies a pointer ten
//! thousand times, never the text.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{EncodingProblem, Error, Field, FieldProblem, Result};

/// One server-sent event, encoded and ready to send.
///
/// Build one with [`Event::data`] for the common case, or with [`Event::builder`] for the other fields.
/// Cloning is cheap (a reference count).
///
/// ```
/// use sse_handler::Event;
///
/// let event = Event::builder().id("7").event("price").data("a\nb").build()?;
/// assert_eq!(event.as_bytes(), b"id: 7\nevent: price\ndata: a\ndata: b\n\n");
/// # Ok::<(), sse_handler::Error>(())
/// ```
#[derive(Clone)]
pub struct Event(Arc<Inner>);

struct Inner {
    id: Option<Box<str>>,
    event_type: Option<Box<str>>,
    retry: Option<Duration>,
    has_data: bool,
    wire: Box<[u8]>,
}

impl Event {
    /// An event with only a `data` field. Any text is valid data: line breaks (CR, LF or CRLF) become
    /// one `data:` line each, and the client reads them back as LF.
    ///
    /// ```
    /// assert_eq!(sse_handler::Event::data("hello").as_bytes(), b"data: hello\n\n");
    /// ```
    pub fn data(data: impl AsRef<str>) -> Event {
        let mut wire = Vec::with_capacity(data.as_ref().len() + 8);
        push_lines(&mut wire, "data", data.as_ref());
        wire.push(b'\n');
        Event::from_parts(None, None, None, true, wire)
    }

    /// A comment: the client sees nothing, but the bytes keep proxies and idle timers from closing
    /// the connection.
    ///
    /// ```
    /// assert_eq!(sse_handler::Event::comment("hb").as_bytes(), b": hb\n\n");
    /// ```
    pub fn comment(text: impl AsRef<str>) -> Event {
        let mut wire = Vec::new();
        push_comment(&mut wire, text.as_ref());
        wire.push(b'\n');
        Event::from_parts(None, None, None, false, wire)
    }

    /// A bare `retry:` field, telling the client how long to wait before it reconnects. Sub-millisecond
    /// parts are dropped: the field is in whole milliseconds.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let hint = sse_handler::Event::retry_hint(Duration::from_secs(3));
    /// assert_eq!(hint.as_bytes(), b"retry: 3000\n\n");
    /// ```
    pub fn retry_hint(after: Duration) -> Event {
        let mut wire = Vec::new();
        push_retry(&mut wire, after);
        wire.push(b'\n');
        Event::from_parts(None, None, Some(after), false, wire)
    }

    /// An event whose data is `value` serialized as JSON (one line, so one `data:` field).
    ///
    /// ```
    /// let event = sse_handler::Event::json(&serde_json::json!({"n": 1}))?;
    /// assert_eq!(event.as_bytes(), b"data: {\"n\":1}\n\n");
    /// # Ok::<(), sse_handler::Error>(())
    /// ```
    #[cfg(feature = "json")]
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
    pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Event> {
        Ok(Event::data(serde_json::to_string(value)?))
    }

    /// An event from bytes already in the event stream format, sent exactly as they are: for events
    /// encoded elsewhere (another server, a cache, a message queue).
    ///
    /// The bytes must be exactly one well-formed event as the WHATWG standard's grammar defines it:
    /// UTF-8 without a byte order mark; one or more lines, each a field (`name: value`) or a comment
    /// (`: text`), each ending in CRLF, LF or a lone CR; then a blank line, and nothing after it. The
    /// event's id, type and retry time are read from its fields as a client reads them (the last `id`
    /// without a NUL, the last `event`, the last `retry` of digits only), so the handler records,
    /// numbers, filters and replays it like any other event.
    ///
    /// ```
    /// use sse_handler::{EncodingProblem, Error, Event};
    ///
    /// let event = Event::from_encoded("id: 7\r\nevent: price\r\ndata: 42\r\n\r\n")?;
    /// assert_eq!((event.id(), event.event_type()), (Some("7"), Some("price")));
    /// assert_eq!(event.as_bytes(), b"id: 7\r\nevent: price\r\ndata: 42\r\n\r\n");
    ///
    /// // Two events in one: refused, with where and why.
    /// let two = Event::from_encoded("data: a\n\ndata: b\n\n").unwrap_err();
    /// assert!(matches!(two, Error::MalformedEvent { at: 9, problem: EncodingProblem::SecondEvent }));
    /// # Ok::<(), sse_handler::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::MalformedEvent`] with the offset of the first byte at fault and the
    /// [`EncodingProblem`]: bytes that are not UTF-8, a leading byte order mark, no line before the
    /// blank line, no blank line at the end, or bytes after it.
    pub fn from_encoded(bytes: impl Into<Vec<u8>>) -> Result<Event> {
        let wire = bytes.into();
        let text = std::str::from_utf8(&wire)
            .map_err(|err| malformed(err.valid_up_to(), EncodingProblem::NotUtf8))?;
        if text.starts_with('\u{feff}') {
            return Err(malformed(0, EncodingProblem::ByteOrderMark));
        }
        let fields = EncodedFields::read(text)?;
        Ok(Event::from_parts(fields.id, fields.event_type, fields.retry, fields.has_data, wire))
    }

    /// Starts an event with any of the fields.
    pub fn builder() -> EventBuilder {
        EventBuilder::default()
    }

    /// The event's `id`, if it has one. `Some("")` is an explicit reset of the client's last event id.
    pub fn id(&self) -> Option<&str> {
        self.0.id.as_deref()
    }

    /// The event's type (`event` field), if it has one; clients see `message` when it has none.
    pub fn event_type(&self) -> Option<&str> {
        self.0.event_type.as_deref()
    }

    /// The type a client dispatches this event as: the `event` field, or `message` when there is none.
    pub fn effective_type(&self) -> &str {
        self.event_type().unwrap_or("message")
    }

    /// The reconnection time this event sets on the client, if any.
    pub fn retry(&self) -> Option<Duration> {
        self.0.retry
    }

    /// Whether the event has a `data` field, so that a client dispatches it (comments, bare ids and
    /// retry hints fire nothing).
    pub fn has_data(&self) -> bool {
        self.0.has_data
    }

    /// The exact bytes this event puts on the wire, blank line included.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0.wire
    }

    /// How many handles share this event (for tests that check nothing holds on to it).
    #[cfg(test)]
    pub(crate) fn share_count(&self) -> usize {
        Arc::strong_count(&self.0)
    }

    /// The same event with an `id` put in front; used when the handler numbers events itself.
    /// The id is one the handler made (digits only), so it needs no validation.
    pub(crate) fn with_id(&self, id: String) -> Event {
        let mut wire = Vec::with_capacity(self.0.wire.len() + id.len() + 5);
        push_field(&mut wire, "id", &id);
        wire.extend_from_slice(&self.0.wire);
        Event(Arc::new(Inner {
            id: Some(id.into_boxed_str()),
            event_type: self.0.event_type.clone(),
            retry: self.0.retry,
            has_data: self.0.has_data,
            wire: wire.into_boxed_slice(),
        }))
    }

    fn from_parts(
        id: Option<String>,
        event_type: Option<String>,
        retry: Option<Duration>,
        has_data: bool,
        wire: Vec<u8>,
    ) -> Event {
        Event(Arc::new(Inner {
            id: id.map(String::into_boxed_str),
            event_type: event_type.map(String::into_boxed_str),
            retry,
            has_data,
            wire: wire.into_boxed_slice(),
        }))
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("id", &self.id())
            .field("event_type", &self.event_type())
            .field("wire", &String::from_utf8_lossy(self.as_bytes()))
            .finish()
    }
}

impl PartialEq for Event {
    fn eq(&self, other: &Event) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Event {}

/// Builds an [`Event`] field by field; [`EventBuilder::build`] validates and encodes it.
///
/// Fields are written in the order `id`, `event`, `retry`, `data`, whatever order they were set in;
/// comments come first. Setting a field twice keeps the last value.
#[derive(Debug, Default)]
#[must_use = "an EventBuilder does nothing until `build` is called"]
pub struct EventBuilder {
    id: Option<String>,
    event_type: Option<String>,
    data: Option<String>,
    retry: Option<Duration>,
    comment: Option<String>,
    cors_safe_id: bool,
    #[cfg(feature = "json")]
    json_error: Option<Box<serde_json::Error>>,
}

impl EventBuilder {
    /// Sets the `id` field. It must not contain CR, LF or NUL. An empty id is sent as `id: ` and resets
    /// the client's last event id, so it sends no `Last-Event-ID` when it reconnects.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Sets the event type (`event` field). It must not contain CR or LF. An empty type is the same as
    /// none: the client sees `message`.
    pub fn event(mut self, event_type: impl Into<String>) -> Self {
        self.event_type = Some(event_type.into());
        self
    }

    /// Sets the data. Any text is valid: it is split on CRLF, LF and CR into one `data:` line each, so the
    /// client reads it back with LF line breaks; an empty string still fires an event (with `""`).
    pub fn data(mut self, data: impl Into<String>) -> Self {
        self.data = Some(data.into());
        self
    }

    /// Sets the data to `value` serialized as JSON. A serialization error is reported by `build`.
    #[cfg(feature = "json")]
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
    pub fn json_data<T: serde::Serialize + ?Sized>(mut self, value: &T) -> Self {
        match serde_json::to_string(value) {
            Ok(json) => self.data = Some(json),
            Err(err) => self.json_error = Some(Box::new(err)),
        }
        self
    }

    /// Sets the `retry` field: how long the client waits before reconnecting, in whole milliseconds.
    pub fn retry(mut self, after: Duration) -> Self {
        self.retry = Some(after);
        self
    }

    /// Adds a comment, which clients ignore. Line breaks become one comment line each.
    pub fn comment(mut self, text: impl Into<String>) -> Self {
        self.comment = Some(text.into());
        self
    }

    /// Makes [`build`](EventBuilder::build) refuse an id that would make browsers send a CORS preflight
    /// when they reconnect cross-origin (see [`Config::cors_safe_ids`](crate::Config::cors_safe_ids)).
    pub fn require_cors_safe_id(mut self) -> Self {
        self.cors_safe_id = true;
        self
    }

    /// Validates the fields and encodes the event.
    ///
    /// # Errors
    /// [`Error::InvalidField`] when the `id` holds CR, LF or NUL, or the type holds CR or LF: such an
    /// event is refused rather than altered, since any silent change would send something else. Also
    /// when [`require_cors_safe_id`](EventBuilder::require_cors_safe_id) was asked for and the id is not.
    pub fn build(self) -> Result<Event> {
        #[cfg(feature = "json")]
        if let Some(err) = self.json_error {
            return Err(Error::Json(*err));
        }
        if let Some(id) = &self.id {
            check_field(Field::Id, id, true)?;
            if self.cors_safe_id {
                check_cors_safe_id(id)?;
            }
        }
        let event_type = self.event_type.filter(|t| !t.is_empty());
        if let Some(event_type) = &event_type {
            check_field(Field::Event, event_type, false)?;
        }

        let mut wire = Vec::with_capacity(32 + self.data.as_ref().map_or(0, String::len));
        if let Some(comment) = &self.comment {
            push_comment(&mut wire, comment);
        }
        if let Some(id) = &self.id {
            push_field(&mut wire, "id", id);
        }
        if let Some(event_type) = &event_type {
            push_field(&mut wire, "event", event_type);
        }
        if let Some(retry) = self.retry {
            push_retry(&mut wire, retry);
        }
        if let Some(data) = &self.data {
            push_lines(&mut wire, "data", data);
        }
        wire.push(b'\n');
        let has_data = self.data.is_some();
        Ok(Event::from_parts(self.id, event_type, self.retry, has_data, wire))
    }
}

fn malformed(at: usize, problem: EncodingProblem) -> Error {
    Error::MalformedEvent { at, problem }
}

/// What a client learns from the fields of one encoded event.
#[derive(Debug, Default, PartialEq)]
struct EncodedFields {
    id: Option<String>,
    event_type: Option<String>,
    retry: Option<Duration>,
    has_data: bool,
}

impl EncodedFields {
    /// Reads the lines of `text`, checking that it is one event: lines, then a blank line at the end.
    fn read(text: &str) -> Result<EncodedFields> {
        let mut fields = EncodedFields::default();
        let mut start = 0;
        while let Some((line, next)) = next_line(text, start) {
            if line.is_empty() {
                if start == 0 {
                    return Err(malformed(0, EncodingProblem::Empty));
                }
                if next < text.len() {
                    return Err(malformed(next, EncodingProblem::SecondEvent));
                }
                return Ok(fields);
            }
            fields.apply(line);
            start = next;
        }
        let problem = if text.is_empty() { EncodingProblem::Empty } else { EncodingProblem::Unterminated };
        Err(malformed(text.len(), problem))
    }

    /// One field line, as a client interprets it; comments and unknown fields change nothing.
    fn apply(&mut self, line: &str) {
        let (name, value) = match line.split_once(':') {
            Some((name, value)) => (name, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match name {
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            "event" => self.event_type = Some(value.to_owned()).filter(|t| !t.is_empty()),
            "data" => self.has_data = true,
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                // Digits too many for u64 milliseconds saturate, as in the client parser.
                self.retry = Some(Duration::from_millis(value.parse().unwrap_or(u64::MAX)));
            }
            _ => {}
        }
    }
}

/// The line of `text` that starts at `start`, without its line ending, and where the next one
/// starts; `None` when no line ending follows.
fn next_line(text: &str, start: usize) -> Option<(&str, usize)> {
    let rest = &text.as_bytes()[start..];
    let end = rest.iter().position(|&b| b == b'\r' || b == b'\n')?;
    let ending = if rest[end..].starts_with(b"\r\n") { 2 } else { 1 };
    Some((&text[start..start + end], start + end + ending))
}

/// Whether a browser sends `Last-Event-ID: id` cross-origin without a preflight: the Fetch standard's
/// CORS-safelisted header value rules (at most 128 bytes, none of the unsafe bytes).
pub(crate) fn check_cors_safe_id(id: &str) -> Result<()> {
    let unsafe_byte = |b: u8| (b < 0x20 && b != b'\t') || b == 0x7f || b"\"():<>?@[\\]{}".contains(&b);
    if id.len() > 128 || id.bytes().any(unsafe_byte) {
        return Err(Error::InvalidField { field: Field::Id, problem: FieldProblem::NotCorsSafe });
    }
    Ok(())
}

fn check_field(field: Field, value: &str, nul_forbidden: bool) -> Result<()> {
    let problem = if value.contains(['\r', '\n']) {
        FieldProblem::LineBreak
    } else if nul_forbidden && value.contains('\0') {
        FieldProblem::Nul
    } else {
        return Ok(());
    };
    Err(Error::InvalidField { field, problem })
}

/// `name: value\n`, for a value already known to hold no line break.
fn push_field(wire: &mut Vec<u8>, name: &str, value: &str) {
    wire.extend_from_slice(name.as_bytes());
    wire.extend_from_slice(b": ");
    wire.extend_from_slice(value.as_bytes());
    wire.push(b'\n');
}

/// One `name: line\n` per line of `text`, splitting on CRLF, LF and lone CR as the client does.
fn push_lines(wire: &mut Vec<u8>, name: &str, text: &str) {
    for line in split_lines(text) {
        push_field(wire, name, line);
    }
}

fn push_comment(wire: &mut Vec<u8>, text: &str) {
    // A comment line is a field with an empty name: `: text`.
    push_lines(wire, "", text);
}

fn push_retry(wire: &mut Vec<u8>, after: Duration) {
    push_field(wire, "retry", &after.as_millis().to_string());
}

/// Splits on CRLF, LF and lone CR. Unlike `str::lines`, a trailing line break yields a last empty
/// line, and a lone CR is a break, because that is how the client will read it.
fn split_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let current = rest?;
        // CR and LF are ASCII, so a byte search finds them and the slices stay on char boundaries.
        let bytes = current.as_bytes();
        match bytes.iter().position(|&b| b == b'\r' || b == b'\n') {
            None => {
                rest = None;
                Some(current)
            }
            Some(at) => {
                let after = if bytes[at..].starts_with(b"\r\n") { at + 2 } else { at + 1 };
                rest = Some(&current[after..]);
                Some(&current[..at])
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{EventStream, ReceivedEvent};

    /// `wire!(event_expr => "exact bytes")`: checks the encoding byte for byte.
    macro_rules! wire {
        ($($name:ident: $event:expr => $bytes:expr;)*) => {$(
            #[test]
            fn $name() {
                let event: Event = $event;
                assert_eq!(
                    String::from_utf8_lossy(event.as_bytes()),
                    String::from_utf8_lossy($bytes),
                );
            }
        )*};
    }

    fn build(builder: EventBuilder) -> Event {
        builder.build().expect("valid event")
    }

    wire! {
        plain_data: Event::data("hello") => b"data: hello\n\n";
        lf_splits_data: Event::data("a\nb") => b"data: a\ndata: b\n\n";
        crlf_splits_data_once: Event::data("a\r\nb") => b"data: a\ndata: b\n\n";
        lone_cr_splits_data: Event::data("a\rb") => b"data: a\ndata: b\n\n";
        cr_cr_lf_is_two_breaks: Event::data("a\r\r\nb") => b"data: a\ndata: \ndata: b\n\n";
        trailing_newline_survives: Event::data("a\n") => b"data: a\ndata: \n\n";
        empty_data_is_expressible: Event::data("") => b"data: \n\n";
        lone_newline_is_two_empty_lines: Event::data("\n") => b"data: \ndata: \n\n";
        leading_space_survives: Event::data(" x") => b"data:  x\n\n";
        nul_in_data_is_allowed: Event::data("a\0b") => b"data: a\0b\n\n";
        utf8_passes_through: Event::data("héllo ✓") => "data: héllo ✓\n\n".as_bytes();
        no_bom_ever: Event::data("\u{feff}x") => "data: \u{feff}x\n\n".as_bytes();
        comment_line: Event::comment("hb") => b": hb\n\n";
        multi_line_comment: Event::comment("a\r\nb") => b": a\n: b\n\n";
        empty_comment: Event::comment("") => b": \n\n";
        retry_alone: Event::retry_hint(Duration::from_millis(5000)) => b"retry: 5000\n\n";
        retry_in_whole_ms: Event::retry_hint(Duration::from_micros(1500)) => b"retry: 1\n\n";
        id_only: build(Event::builder().id("7")) => b"id: 7\n\n";
        empty_id_resets: build(Event::builder().id("").data("x")) => b"id: \ndata: x\n\n";
        all_fields_in_order: build(
            Event::builder().data("d").retry(Duration::from_secs(1)).event("t").id("1").comment("c")
        ) => b": c\nid: 1\nevent: t\nretry: 1000\ndata: d\n\n";
        empty_type_is_omitted: build(Event::builder().event("").data("x")) => b"data: x\n\n";
        colon_in_values_is_fine: build(Event::builder().id("a:b").event("x:y").data("k: v"))
            => b"id: a:b\nevent: x:y\ndata: k: v\n\n";
    }

    #[test]
    fn line_breaks_in_id_and_type_are_refused() {
        let cases = [
            (Event::builder().id("1\nevent: x"), Field::Id, FieldProblem::LineBreak),
            (Event::builder().id("1\r"), Field::Id, FieldProblem::LineBreak),
            (Event::builder().id("a\0b"), Field::Id, FieldProblem::Nul),
            (Event::builder().event("x\ny"), Field::Event, FieldProblem::LineBreak),
            (Event::builder().event("x\r"), Field::Event, FieldProblem::LineBreak),
        ];
        for (builder, field, problem) in cases {
            match builder.build() {
                Err(Error::InvalidField { field: f, problem: p }) => {
                    assert_eq!((f, p), (field, problem));
                }
                other => panic!("expected InvalidField, got {other:?}"),
            }
        }
        let unsafe_id = Event::builder().id("urn:uuid:1").data("x").require_cors_safe_id().build();
        assert!(matches!(unsafe_id, Err(Error::InvalidField { problem: FieldProblem::NotCorsSafe, .. })));
        // NUL is only a problem for ids; a type may carry one.
        assert!(Event::builder().event("a\0b").build().is_ok());
    }

    #[test]
    fn cors_safe_ids() {
        for id in ["1", "abc-DEF_0.9~", "2024-01-01T00/00", "a b", "é", "x".repeat(128).as_str()] {
            assert!(check_cors_safe_id(id).is_ok(), "{id:?}");
        }
        for id in ["urn:uuid:1", "a\"b", "{x}", "a@b", "q?", "x".repeat(129).as_str(), "a\u{7f}"] {
            let err = check_cors_safe_id(id).expect_err(id);
            assert!(matches!(
                err,
                Error::InvalidField { field: Field::Id, problem: FieldProblem::NotCorsSafe }
            ));
        }
    }

    #[test]
    fn handler_assigned_id_goes_first() {
        let event = build(Event::builder().event("t").data("x")).with_id("42".into());
        assert_eq!(event.as_bytes(), b"id: 42\nevent: t\ndata: x\n\n");
        assert_eq!(event.id(), Some("42"));
        assert_eq!(event.event_type(), Some("t"));
    }

    #[test]
    fn clones_share_one_encoding() {
        let event = Event::data("shared");
        let copy = event.clone();
        assert!(std::ptr::eq(event.as_bytes(), copy.as_bytes()));
    }

    fn read_back(event: &Event) -> Vec<ReceivedEvent> {
        EventStream::new(event.as_bytes()).map(|e| e.expect("in-memory read")).collect()
    }

    #[test]
    fn round_trip_through_the_client_parser() {
        let texts = ["", "a", "a\nb", "a\r\nb", "a\rb", "a\n", "\n\n", " x", "  two", "x ", "é\0"];
        for text in texts {
            let expected = text.replace("\r\n", "\n").replace('\r', "\n");
            let received = read_back(&build(Event::builder().id("9").event("t").data(text)));
            assert_eq!(received.len(), 1, "{text:?}");
            assert_eq!(received[0].data, expected, "{text:?}");
            assert_eq!(received[0].event_type, "t");
            assert_eq!(received[0].last_event_id, "9");
        }
        // Without a type the client dispatches `message`; an id-only event fires nothing.
        assert_eq!(read_back(&Event::data("x"))[0].event_type, "message");
        assert!(read_back(&build(Event::builder().id("3"))).is_empty());
        assert!(read_back(&Event::comment("c")).is_empty());
    }

    /// The bytes of an encoded event, then what is read from them: id, type, retry in ms, has data.
    type Encoded = (&'static [u8], Option<&'static str>, Option<&'static str>, Option<u64>, bool);

    /// Events `from_encoded` takes.
    const WELL_FORMED: &[Encoded] = &[
        (b"data: x\n\n", None, None, None, true),
        (b"data: x\r\n\r\n", None, None, None, true),
        (b"data: x\r\r", None, None, None, true),
        // Line endings mixed; CR CR LF is a line and a blank line.
        (b"id: 1\r\nevent: t\rdata: x\n\r\n", Some("1"), Some("t"), None, true),
        (b"data: x\r\r\n", None, None, None, true),
        (b"data: x\n\r", None, None, None, true),
        (b": only a comment\n\n", None, None, None, false),
        (b"retry: 2500\n\n", None, None, Some(2500), false),
        (b"id: 1\n\n", Some("1"), None, None, false),
        // As a client reads them: the last id without a NUL, the last type, digits-only retry.
        (
            b"id: 1\nid: 2\nid: 3\0\nevent: a\nevent: b\nretry: 5\nretry: 6x\ndata\n\n",
            Some("2"),
            Some("b"),
            Some(5),
            true,
        ),
        (b"id\nevent:\ndata:x\n\n", Some(""), None, None, true),
        (b"event:  two spaces\ndata: x\n\n", None, Some(" two spaces"), None, true),
        (b"unknown: field\nDATA: x\n\n", None, None, None, false),
        ("data: héllo \u{feff}\0\n\n".as_bytes(), None, None, None, true),
        (b"retry: 99999999999999999999999\n\n", None, None, Some(u64::MAX), false),
    ];

    #[test]
    fn encoded_events_are_taken_as_they_are() {
        for &(bytes, id, event_type, retry, has_data) in WELL_FORMED {
            let event = Event::from_encoded(bytes).unwrap_or_else(|err| panic!("{bytes:?}: {err}"));
            assert_eq!(event.as_bytes(), bytes);
            assert_eq!(event.id(), id, "{bytes:?}");
            assert_eq!(event.event_type(), event_type, "{bytes:?}");
            assert_eq!(event.retry(), retry.map(Duration::from_millis), "{bytes:?}");
            assert_eq!(event.has_data(), has_data, "{bytes:?}");
        }
    }

    #[test]
    fn what_is_read_from_an_encoded_event_is_what_a_client_reads() {
        for &(bytes, id, event_type, _, has_data) in WELL_FORMED {
            let event = Event::from_encoded(bytes).unwrap();
            let received = read_back(&event);
            assert_eq!(received.len(), usize::from(has_data), "{bytes:?}");
            if let Some(received) = received.first() {
                assert_eq!(received.event_type, event.effective_type(), "{bytes:?}");
                assert_eq!(received.last_event_id, id.unwrap_or_default(), "{bytes:?}");
                assert_eq!(event_type.unwrap_or("message"), received.event_type);
            }
        }
    }

    #[test]
    fn malformed_encodings_are_refused_with_where_and_why() {
        use EncodingProblem::*;
        let cases: &[(&[u8], usize, EncodingProblem)] = &[
            (b"", 0, Empty),
            (b"\n", 0, Empty),
            (b"\r\n", 0, Empty),
            (b"\ndata: x\n\n", 0, Empty),
            (b"data: x", 7, Unterminated),
            (b"data: x\n", 8, Unterminated),
            (b"data: x\r\n", 9, Unterminated),
            (b"data: x\r", 8, Unterminated),
            (b"data: a\n\ndata: b\n\n", 9, SecondEvent),
            (b"data: a\r\n\r\ndata: b\r\n\r\n", 11, SecondEvent),
            (b"data: a\r\rdata: b\r\r", 9, SecondEvent),
            (b"data: a\n\n\n", 9, SecondEvent),
            (b"data: a\n\r\r", 9, SecondEvent),
            (b"data: \xff\n\n", 6, NotUtf8),
            (b"data: \xe2\x82\n\n", 6, NotUtf8),
            (b"\xef\xbb\xbfdata: x\n\n", 0, ByteOrderMark),
        ];
        for &(bytes, at, problem) in cases {
            match Event::from_encoded(bytes) {
                Err(Error::MalformedEvent { at: a, problem: p }) => {
                    assert_eq!((a, p), (at, problem), "{bytes:?}");
                }
                other => panic!("{bytes:?}: expected MalformedEvent, got {other:?}"),
            }
        }
    }

    #[test]
    fn encoded_events_take_strings_and_byte_vectors() {
        let from_str = Event::from_encoded("data: x\n\n").unwrap();
        let from_vec = Event::from_encoded(b"data: x\n\n".to_vec()).unwrap();
        assert_eq!(from_str, from_vec);
        assert_eq!(from_str, Event::data("x"));
    }

    #[cfg(feature = "json")]
    #[test]
    fn json_data_is_one_line() {
        let event = build(Event::builder().event("j").json_data(&serde_json::json!({"a": "x\ny"})));
        assert_eq!(event.as_bytes(), b"event: j\ndata: {\"a\":\"x\\ny\"}\n\n");
    }
}
