#![no_main]
//! The encoder round trip: arbitrary fields -> `Event` -> bytes -> client parser -> the same fields.
//!
//! Checked: an event is refused exactly when its id holds CR, LF or NUL or its type CR or LF; an
//! accepted one encodes without CR, ends with a blank line, has only known fields on its other lines;
//! and a sequence of them reads back as the same events (data with CRLF and CR as LF, the type or
//! `message`, the last event id carried over events without one), comments and retry hints included.

use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sse_handler::client::{EventStream, Item, ReceivedEvent};
use sse_handler::{Error, Event};

#[derive(Arbitrary, Debug)]
struct Fields {
    comment: Option<String>,
    id: Option<String>,
    event_type: Option<String>,
    retry_ms: Option<u64>,
    data: Option<String>,
}

fuzz_target!(|events: Vec<Fields>| {
    let mut wire = Vec::new();
    let mut expected = Vec::new();
    let mut last_event_id = String::new();
    for fields in events.iter().take(16) {
        let valid_id = fields.id.as_deref().is_none_or(|id| !id.contains(['\r', '\n', '\0']));
        let valid_type = fields.event_type.as_deref().is_none_or(|t| !t.contains(['\r', '\n']));
        let event = match build(fields) {
            Ok(event) => event,
            Err(Error::InvalidField { .. }) if !(valid_id && valid_type) => continue,
            other => panic!("{fields:?} built as {other:?}"),
        };
        check_well_formed(event.as_bytes());
        wire.extend_from_slice(event.as_bytes());
        expect(fields, &mut last_event_id, &mut expected);
    }

    let mut stream = EventStream::new(&wire[..]);
    let mut items = Vec::new();
    while let Some(item) = stream.next_item().expect("an in-memory read cannot fail") {
        items.push(item);
    }
    assert_eq!(items, expected);
    assert_eq!(stream.last_event_id(), last_event_id);
});

fn build(fields: &Fields) -> sse_handler::Result<Event> {
    let mut builder = Event::builder();
    if let Some(comment) = &fields.comment {
        builder = builder.comment(comment);
    }
    if let Some(id) = &fields.id {
        builder = builder.id(id);
    }
    if let Some(event_type) = &fields.event_type {
        builder = builder.event(event_type);
    }
    if let Some(ms) = fields.retry_ms {
        builder = builder.retry(Duration::from_millis(ms));
    }
    if let Some(data) = &fields.data {
        builder = builder.data(data);
    }
    builder.build()
}

fn check_well_formed(wire: &[u8]) {
    let wire = std::str::from_utf8(wire).expect("UTF-8 in, UTF-8 out");
    assert!(!wire.contains('\r'), "{wire:?}");
    assert!(wire == "\n" || wire.ends_with("\n\n"), "{wire:?}");
    for line in wire[..wire.len() - 1].lines() {
        let known = ["id: ", "event: ", "retry: ", "data: ", ": "].iter().any(|f| line.starts_with(f));
        assert!(known, "line {line:?} in {wire:?}");
    }
}

fn normalised(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\r', "\n")
}

/// What a browser must see for one event.
fn expect(fields: &Fields, last_event_id: &mut String, items: &mut Vec<Item>) {
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
