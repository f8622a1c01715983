#![no_main]
//! The client parser on arbitrary bytes, cut into arbitrary reads with read timeouts in between.
//!
//! Checked: no panic; the items do not depend on how the reads cut the stream; and they are what a
//! plain transcription of the WHATWG parsing rules, run on the whole input, yields.

use std::io::{self, Read};
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sse_handler::client::{EventStream, Item, ReceivedEvent};

#[derive(Arbitrary, Debug)]
struct Input {
    /// Sizes of the reads, cycled (0 is taken as 1).
    sizes: Vec<u8>,
    /// Whether every read is preceded by a `WouldBlock`, as a socket with a read timeout gives.
    stall: bool,
    bytes: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let at_once = read_all(EventStream::new(&input.bytes[..]));
    let sizes = if input.sizes.is_empty() { vec![1] } else { input.sizes.clone() };
    let pieces = Pieces { bytes: &input.bytes, sizes, next: 0, stall: input.stall, stalled: false };
    let in_pieces = read_all(EventStream::new(pieces));
    assert_eq!(in_pieces, at_once, "reads cut the stream differently");
    assert_eq!(at_once, reference(&input.bytes), "differs from the standard's rules");
});

/// Every item and the last event id at the end, carrying on after `WouldBlock`.
fn read_all(mut stream: EventStream<impl Read>) -> (Vec<Item>, String) {
    let mut items = Vec::new();
    loop {
        match stream.next_item() {
            Ok(Some(item)) => items.push(item),
            Ok(None) => return (items, stream.last_event_id().to_owned()),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
            Err(err) => panic!("unexpected error {err}"),
        }
    }
}

struct Pieces<'a> {
    bytes: &'a [u8],
    sizes: Vec<u8>,
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
        let size = usize::from(self.sizes[self.next % self.sizes.len()].max(1));
        let size = size.min(out.len()).min(self.bytes.len());
        self.next += 1;
        out[..size].copy_from_slice(&self.bytes[..size]);
        self.bytes = &self.bytes[size..];
        Ok(size)
    }
}

/// The standard's "interpret an event stream", transcribed as plainly as possible over the whole
/// input: decode as UTF-8 (dropping one leading BOM), split into lines at CRLF, LF or CR (what follows
/// the last line ending is not a line), then apply each line.
fn reference(bytes: &[u8]) -> (Vec<Item>, String) {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = String::from_utf8_lossy(bytes);
    let (mut data, mut event_type, mut id_buffer, mut last_event_id) =
        (String::new(), String::new(), String::new(), String::new());
    let mut items = Vec::new();
    let mut rest = &*text;
    while let Some(at) = rest.find(['\r', '\n']) {
        let line = &rest[..at];
        rest = &rest[if rest[at..].starts_with("\r\n") { at + 2 } else { at + 1 }..];
        if line.is_empty() {
            last_event_id.clone_from(&id_buffer);
            if !data.is_empty() {
                data.pop();
                let event_type =
                    if event_type.is_empty() { "message".to_owned() } else { event_type.clone() };
                let event =
                    ReceivedEvent { event_type, data: data.clone(), last_event_id: last_event_id.clone() };
                items.push(Item::Event(event));
            }
            data.clear();
            event_type.clear();
            continue;
        }
        if let Some(comment) = line.strip_prefix(':') {
            items.push(Item::Comment(comment.strip_prefix(' ').unwrap_or(comment).to_owned()));
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => event_type = value.to_owned(),
            "data" => {
                data.push_str(value);
                data.push('\n');
            }
            "id" if !value.contains('\0') => id_buffer = value.to_owned(),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                // Too large for u64 milliseconds saturates, as the client documents.
                items.push(Item::Retry(Duration::from_millis(value.parse().unwrap_or(u64::MAX))));
            }
            _ => {}
        }
    }
    (items, last_event_id)
}
