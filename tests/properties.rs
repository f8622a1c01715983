//! Properties checked on generated inputs: whatever an event holds, the client parser reads back
//! exactly what was encoded; the encoding is always well formed; the parser's output does not depend
//! on how the bytes are cut into reads; and the event log never grows past its bounds.

use std::io::{self, Read};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use sse_handler::client::{EventStream, Item, ReceivedEvent};
use sse_handler::{Event, EventLog, MemoryLog};

/// Pieces that strings are built from: the bytes the format cares about, text that looks like fields,
/// and any character at all.
fn piece(line_breaks: bool, nul: bool) -> BoxedStrategy<String> {
    let mut pieces: Vec<BoxedStrategy<String>> = vec![
        any::<char>()
            .prop_filter("a character this field may not hold", move |&c| {
                (line_breaks || !matches!(c, '\r' | '\n')) && (nul || c != '\0')
            })
            .prop_map(String::from)
            .boxed(),
        "[a-z0-9]{1,4}".boxed(),
        Just(" ".to_owned()).boxed(),
        Just(":".to_owned()).boxed(),
        Just("\u{feff}".to_owned()).boxed(),
        Just("é✓🎉".to_owned()).boxed(),
        Just("data: forged".to_owned()).boxed(),
        Just("id: forged".to_owned()).boxed(),
        Just("\u{2028}\u{85}".to_owned()).boxed(),
    ];
    if line_breaks {
        pieces.extend([Just("\r".to_owned()).boxed(), Just("\n".to_owned()).boxed()]);
        pieces.push(Just("\r\n".to_owned()).boxed());
    }
    if nul {
        pieces.push(Just("\0".to_owned()).boxed());
    }
    proptest::strategy::Union::new(pieces).boxed()
}

fn text(line_breaks: bool, nul: bool) -> impl Strategy<Value = String> {
    prop::collection::vec(piece(line_breaks, nul), 0..10).prop_map(|pieces| pieces.concat())
}

/// What an application may put in an event. The id may not hold CR, LF or NUL, the type not CR or LF
/// (the builder refuses those); data and comments may hold anything.
#[derive(Debug, Clone)]
struct Fields {
    id: Option<String>,
    event_type: Option<String>,
    data: Option<String>,
    retry_ms: Option<u64>,
    comment: Option<String>,
}

fn fields() -> impl Strategy<Value = Fields> {
    (
        prop::option::of(text(false, false)),
        prop::option::of(text(false, true)),
        prop::option::of(text(true, true)),
        prop::option::of(0..=u64::MAX / 2),
        prop::option::weighted(0.2, text(true, true)),
    )
        .prop_map(|(id, event_type, data, retry_ms, comment)| Fields {
            id,
            event_type,
            data,
            retry_ms,
            comment,
        })
}

fn build(fields: &Fields) -> Event {
    let mut builder = Event::builder();
    if let Some(id) = &fields.id {
        builder = builder.id(id);
    }
    if let Some(event_type) = &fields.event_type {
        builder = builder.event(event_type);
    }
    if let Some(data) = &fields.data {
        builder = builder.data(data);
    }
    if let Some(ms) = fields.retry_ms {
        builder = builder.retry(Duration::from_millis(ms));
    }
    if let Some(comment) = &fields.comment {
        builder = builder.comment(comment);
    }
    builder.build().expect("these fields are all valid")
}

/// How the client must see text sent as data or comment: CRLF and lone CR read back as LF.
fn normalised(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\r', "\n")
}

/// What a browser must see for this sequence of events, given the stream's last event id before it.
fn expected_items(events: &[Fields]) -> Vec<Item> {
    let mut items = Vec::new();
    let mut last_event_id = String::new();
    for fields in events {
        if let Some(comment) = &fields.comment {
            items.extend(normalised(comment).split('\n').map(|line| Item::Comment(line.to_owned())));
        }
        if let Some(id) = &fields.id {
            last_event_id.clone_from(id);
        }
        if let Some(ms) = fields.retry_ms {
            items.push(Item::Retry(Duration::from_millis(ms)));
        }
        if let Some(data) = &fields.data {
            let event_type = fields.event_type.clone().filter(|t| !t.is_empty());
            items.push(Item::Event(ReceivedEvent {
                event_type: event_type.unwrap_or_else(|| "message".to_owned()),
                data: normalised(data),
                last_event_id: last_event_id.clone(),
            }));
        }
    }
    items
}

fn read_all_items(reader: impl Read) -> (Vec<Item>, Option<io::ErrorKind>) {
    let mut stream = EventStream::new(reader);
    let mut items = Vec::new();
    loop {
        match stream.next_item() {
            Ok(Some(item)) => items.push(item),
            Ok(None) => return (items, None),
            Err(err) => return (items, Some(err.kind())),
        }
    }
}

/// A reader that hands out its bytes in the given piece sizes (cycled), and reports `WouldBlock` (a
/// read timeout on a socket) before every piece when asked to.
struct Pieces<'a> {
    bytes: &'a [u8],
    sizes: Vec<usize>,
    next: usize,
    stall: bool,
    stalled: bool,
}

impl Read for Pieces<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.stall && !self.stalled && !self.bytes.is_empty() {
            self.stalled = true;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.stalled = false;
        let size = self.sizes[self.next % self.sizes.len()].min(out.len()).min(self.bytes.len());
        self.next += 1;
        out[..size].copy_from_slice(&self.bytes[..size]);
        self.bytes = &self.bytes[size..];
        Ok(size)
    }
}

/// Reads every item, carrying on after `WouldBlock` as a caller with a read timeout does.
fn read_items_resuming(reader: Pieces<'_>) -> (Vec<Item>, Option<io::ErrorKind>) {
    let mut stream = EventStream::new(reader);
    let mut items = Vec::new();
    loop {
        match stream.next_item() {
            Ok(Some(item)) => items.push(item),
            Ok(None) => return (items, None),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
            Err(err) => return (items, Some(err.kind())),
        }
    }
}

/// Bytes that are mostly event-stream lines (known and unknown fields, every kind of line ending,
/// blank lines that dispatch), with a byte order mark now and then and arbitrary bytes mixed in.
fn stream_bytes() -> impl Strategy<Value = Vec<u8>> {
    let name = prop_oneof![
        Just("data"),
        Just("id"),
        Just("event"),
        Just("retry"),
        Just(""),
        Just("dat"),
        Just("Data"),
    ];
    let colon = prop_oneof![Just(": "), Just(":"), Just(""), Just(":  ")];
    let value = prop_oneof![
        Just(&b""[..]),
        Just(&b"x"[..]),
        Just(&b"123"[..]),
        Just(&b"1a"[..]),
        Just(&b"\0"[..]),
        Just("é✓".as_bytes()),
        Just(&b"\xEF\xBB\xBF"[..]),
        Just(&b"\xFF\xC3"[..]),
        Just(&b"a: b"[..]),
    ];
    let ending = prop_oneof![Just(&b"\n"[..]), Just(&b"\r"[..]), Just(&b"\r\n"[..]), Just(&b""[..])];
    let line = (name, colon, value, ending)
        .prop_map(|(name, colon, value, ending)| [name.as_bytes(), colon.as_bytes(), value, ending].concat());
    let piece = prop_oneof![
        6 => line,
        2 => prop_oneof![Just(b"\n".to_vec()), Just(b"\r\n".to_vec()), Just(b"\r".to_vec())],
        1 => prop::collection::vec(any::<u8>(), 1..4),
    ];
    let bom = prop_oneof![Just(&b""[..]), Just(&b"\xEF\xBB\xBF"[..]), Just(&b"\xEF\xBB"[..])];
    (bom, prop::collection::vec(piece, 0..24))
        .prop_map(|(bom, pieces)| [bom.to_vec(), pieces.concat()].concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// A stream of events reads back as exactly those events: data (with CR and CRLF as LF), type, and
    /// the last event id, which carries over events that set none.
    #[test]
    fn any_events_read_back_as_encoded(events in prop::collection::vec(fields(), 1..5)) {
        let wire: Vec<u8> = events.iter().flat_map(|fields| build(fields).as_bytes().to_vec()).collect();
        let (items, error) = read_all_items(&wire[..]);
        prop_assert_eq!(error, None);
        prop_assert_eq!(items, expected_items(&events));
    }

    /// The same holds for the shortcuts the handler and applications use most.
    #[test]
    fn data_comments_and_retry_hints_read_back(data in text(true, true), comment in text(true, true), ms in 0..u64::MAX / 2) {
        let (items, _) = read_all_items(Event::data(&data).as_bytes());
        let expected = Item::Event(ReceivedEvent {
            event_type: "message".into(),
            data: normalised(&data),
            last_event_id: String::new(),
        });
        prop_assert_eq!(items, vec![expected]);

        let (items, _) = read_all_items(Event::comment(&comment).as_bytes());
        let lines: Vec<Item> = normalised(&comment).split('\n').map(|l| Item::Comment(l.to_owned())).collect();
        prop_assert_eq!(items, lines);

        let (items, _) = read_all_items(Event::retry_hint(Duration::from_millis(ms)).as_bytes());
        prop_assert_eq!(items, vec![Item::Retry(Duration::from_millis(ms))]);
    }

    /// The encoding never holds a CR, ends with the blank line that dispatches it, and every line before
    /// that starts with a known field name (so no other line is blank: nothing in a value can end the
    /// event early or start a field of its own).
    #[test]
    fn encodings_are_well_formed(fields in fields()) {
        let event = build(&fields);
        let wire = std::str::from_utf8(event.as_bytes()).expect("valid UTF-8 in, valid UTF-8 out");
        prop_assert!(!wire.contains('\r'), "{:?}", wire);
        prop_assert!(wire == "\n" || wire.ends_with("\n\n"), "{:?}", wire);
        let body = &wire[..wire.len() - 1];
        for line in body.lines() {
            let known = ["id: ", "event: ", "retry: ", "data: ", ": "].iter().any(|f| line.starts_with(f));
            prop_assert!(known, "line {:?} in {:?}", line, wire);
        }
    }

    /// Cutting the bytes into any reads, with read timeouts in between, yields the same items as
    /// reading them all at once.
    #[test]
    fn parsing_does_not_depend_on_how_reads_cut_the_stream(
        bytes in stream_bytes(),
        sizes in prop::collection::vec(prop_oneof![3 => 1..4usize, 1 => 4..32usize], 1..8),
        stall in any::<bool>(),
    ) {
        let whole = read_all_items(&bytes[..]);
        let pieces = Pieces { bytes: &bytes, sizes, next: 0, stall, stalled: false };
        prop_assert_eq!(read_items_resuming(pieces), whole);
    }

    /// Whatever events come (of any size, with or without ids of their own, with time moving on), the
    /// log never holds more events, bytes or age than its bounds allow (bar the newest event, always
    /// kept); what it holds is the newest events, in order; each held id is a resume point for
    /// exactly the events after it; and a reader left behind is told so, never handed a gap.
    #[test]
    fn the_log_never_grows_past_its_bounds(
        capacity in 1..12usize,
        max_bytes in prop::option::of(20..400usize),
        max_age_ms in prop::option::of(1..60u64),
        steps in prop::collection::vec((0..120usize, 0..25u64, any::<bool>()), 0..40),
    ) {
        let start = Instant::now();
        let now = Arc::new(Mutex::new(start));
        let clock = Arc::clone(&now);
        let mut log = MemoryLog::new(capacity).with_clock(move || *clock.lock().unwrap());
        if let Some(bytes) = max_bytes {
            log = log.max_bytes(bytes);
        }
        if let Some(ms) = max_age_ms {
            log = log.max_age(Duration::from_millis(ms));
        }
        let first = log.head();
        let mut appended: Vec<(Instant, Event)> = Vec::new();
        for (n, (len, advance_ms, own_id)) in steps.into_iter().enumerate() {
            let at = {
                let mut now = now.lock().unwrap();
                *now += Duration::from_millis(advance_ms);
                *now
            };
            let mut builder = Event::builder().data("d".repeat(len));
            if own_id {
                builder = builder.id(format!("own-{n}"));
            }
            let stored = log.append(builder.build().unwrap(), true).unwrap();
            prop_assert_eq!(log.head(), first + n as u64 + 1);
            appended.push((at, stored));

            let oldest = log.oldest();
            let mut kept = Vec::new();
            let next = log.read(oldest, &mut |event| { kept.push(event.clone()); true }).unwrap();
            prop_assert_eq!(next, log.head());
            prop_assert!(kept.len() <= capacity);
            let kept_bytes: usize = kept.iter().map(|e| e.as_bytes().len()).sum();
            if let Some(max) = max_bytes {
                prop_assert!(kept.len() == 1 || kept_bytes <= max, "{} > {}", kept_bytes, max);
            }
            // The newest events, in order: a suffix of what was appended, none past its age.
            let suffix: Vec<&Event> = appended[appended.len() - kept.len()..].iter().map(|(_, e)| e).collect();
            prop_assert_eq!(kept.iter().collect::<Vec<_>>(), suffix);
            if let Some(ms) = max_age_ms {
                let oldest_allowed = at.checked_sub(Duration::from_millis(ms)).unwrap_or(start);
                let times = &appended[appended.len() - kept.len()..];
                prop_assert!(times.iter().all(|(t, _)| *t >= oldest_allowed));
            }
            prop_assert_eq!(kept.last(), Some(&appended[n].1), "the newest event is always kept");
            for (i, event) in kept.iter().enumerate() {
                let after = log.position_after(event.id().unwrap()).expect("a kept id is a resume point");
                let mut replay = Vec::new();
                log.read(after, &mut |event| { replay.push(event.clone()); true }).unwrap();
                prop_assert_eq!(&replay[..], &kept[i + 1..]);
            }
            // Ids that left the log are not resume points, and a reader still there is told it fell behind.
            for (_, gone) in &appended[..appended.len() - kept.len()] {
                prop_assert_eq!(log.position_after(gone.id().unwrap()), None);
            }
            if oldest > first {
                let fell = log.read(oldest - 1, &mut |_| true);
                prop_assert!(fell.is_err());
            }
        }
    }
}
