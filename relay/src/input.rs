//! Standard input: each line becomes one event, as plain text or as a JSON object.

use std::io::BufRead;
use std::time::Duration;

use serde::Deserialize;
use sse_handler::{Error, Event, EventBuilder, SseHandler};

/// How a line of input becomes an event.
#[derive(Debug, Clone)]
pub(crate) struct LineFormat {
    /// Each line is a JSON object with `data`, `event`, `id` and `retry`, rather than the data itself.
    pub(crate) json: bool,
    /// The type of events whose line does not name one.
    pub(crate) default_type: Option<String>,
}

/// One line of JSON input. Unknown keys are refused, so a typo (`"evnet"`) is reported, not ignored.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonLine {
    data: Option<serde_json::Value>,
    event: Option<String>,
    id: Option<IdValue>,
    retry: Option<u64>,
}

/// An id may be written as a string or as a number.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum IdValue {
    Text(String),
    Number(serde_json::Number),
}

impl LineFormat {
    /// The event for one line (without its line ending), `Ok(None)` for a line to skip silently (a blank
    /// line between JSON objects), or why the line cannot be sent.
    pub(crate) fn event(&self, line: &str) -> Result<Option<Event>, String> {
        let (mut event, named_type) = match self.json {
            false => (Event::builder().data(line), None),
            true if line.trim().is_empty() => return Ok(None),
            true => json_event(line)?,
        };
        if let Some(event_type) = named_type.as_ref().or(self.default_type.as_ref()) {
            event = event.event(event_type);
        }
        event.build().map(Some).map_err(|err| err.to_string())
    }
}

/// The event a JSON line describes, and the type it names, if any.
fn json_event(line: &str) -> Result<(EventBuilder, Option<String>), String> {
    let parsed: JsonLine =
        serde_json::from_str(line).map_err(|err| format!("not a valid event object: {err}"))?;
    if parsed.data.is_none() && parsed.retry.is_none() {
        return Err("an event object needs `data` (or at least `retry`)".to_owned());
    }
    let mut event = Event::builder();
    match parsed.data {
        Some(serde_json::Value::String(text)) => event = event.data(text),
        Some(value) => event = event.data(value.to_string()),
        None => {}
    }
    match parsed.id {
        Some(IdValue::Text(id)) => event = event.id(id),
        Some(IdValue::Number(id)) => event = event.id(id.to_string()),
        None => {}
    }
    if let Some(millis) = parsed.retry {
        event = event.retry(Duration::from_millis(millis));
    }
    Ok((event, parsed.event))
}

/// Publishes every line of `input` until it ends (or the handler shuts down). Bytes that are not
/// UTF-8 are replaced rather than refused, so a stray byte in a log costs one character, not a line.
pub(crate) fn publish_lines(input: impl BufRead, format: &LineFormat, handler: &SseHandler) {
    let mut input = input;
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        line.clear();
        match input.read_until(b'\n', &mut line) {
            Ok(0) => return,
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => {
                log::error!("cannot read standard input: {err}");
                return;
            }
        }
        number += 1;
        let text = String::from_utf8_lossy(strip_line_ending(&line));
        let event = match format.event(&text) {
            Ok(Some(event)) => event,
            Ok(None) => continue,
            Err(problem) => {
                log::warn!("standard input line {number} skipped: {problem}");
                continue;
            }
        };
        if publish(handler, event, number) == Published::ShutDown {
            log::debug!("standard input line {number} not published: the relay is shutting down");
            return;
        }
    }
}

/// What became of one line's event.
#[derive(Debug, PartialEq, Eq)]
enum Published {
    Yes,
    Refused,
    ShutDown,
}

/// The first wait before a line is retried; it doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// While a line waits, one warning per this many attempts (about every 30 s).
const WARN_EVERY: u32 = 15;

/// Publishes one line's event. While the log is unavailable (its server unreachable) the line waits
/// and is retried, with a warning, so that no line is dropped silently and later lines stay behind it.
/// A retry after a timed-out append that the server had applied publishes the line twice.
fn publish(handler: &SseHandler, event: Event, number: u64) -> Published {
    let mut delay = RETRY_FIRST;
    let mut attempts = 0u32;
    loop {
        match handler.send_all(event.clone()) {
            Ok(_) if attempts > 0 => {
                log::warn!("standard input line {number} published after {attempts} retries");
                return Published::Yes;
            }
            Ok(_) => return Published::Yes,
            Err(Error::LogUnavailable(why)) => {
                if attempts % WARN_EVERY == 0 {
                    log::warn!("standard input line {number} waits ({why}); retrying until it is published");
                }
                attempts += 1;
                std::thread::sleep(delay);
                delay = (delay * 2).min(RETRY_MAX);
            }
            Err(Error::ShutDown) => return Published::ShutDown,
            Err(err) => {
                log::warn!("standard input line {number} skipped: {err}");
                return Published::Refused;
            }
        }
    }
}

fn strip_line_ending(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(format: &LineFormat, line: &str) -> String {
        let event = format.event(line).expect("valid line").expect("an event");
        String::from_utf8(event.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn text_lines_are_data_with_the_default_type() {
        let plain = LineFormat { json: false, default_type: None };
        assert_eq!(wire(&plain, "hello"), "data: hello\n\n");
        assert_eq!(wire(&plain, ""), "data: \n\n", "an empty line is an empty event, not nothing");
        let typed = LineFormat { json: false, default_type: Some("log".into()) };
        assert_eq!(wire(&typed, "a: b"), "event: log\ndata: a: b\n\n");
    }

    #[test]
    fn json_lines_carry_every_field() {
        let json = LineFormat { json: true, default_type: None };
        assert_eq!(
            wire(&json, r#"{"event":"build","data":"ok\ndone","id":"b-7","retry":2500}"#),
            "id: b-7\nevent: build\nretry: 2500\ndata: ok\ndata: done\n\n"
        );
        assert_eq!(wire(&json, r#"{"data":{"cpu":0.5},"id":12}"#), "id: 12\ndata: {\"cpu\":0.5}\n\n");
        assert_eq!(wire(&json, r#"{"retry":1000}"#), "retry: 1000\n\n");
        assert!(json.event("   ").unwrap().is_none(), "blank lines between objects are skipped");
    }

    #[test]
    fn json_lines_without_a_type_take_the_default() {
        let json = LineFormat { json: true, default_type: Some("metric".into()) };
        assert_eq!(wire(&json, r#"{"data":"1"}"#), "event: metric\ndata: 1\n\n");
        assert_eq!(wire(&json, r#"{"data":"2","event":"alert"}"#), "event: alert\ndata: 2\n\n");
    }

    #[test]
    fn invalid_json_lines_are_refused_with_a_reason() {
        let json = LineFormat { json: true, default_type: None };
        for line in [
            "not json",
            "[1, 2]",
            r#"{"data":"x","evnet":"typo"}"#,
            r#"{"event":"no data"}"#,
            r#"{"data":"x","id":"two\nlines"}"#,
            r#"{"data":"x","retry":-5}"#,
        ] {
            assert!(json.event(line).is_err(), "{line}");
        }
    }

    #[test]
    fn a_refused_line_is_skipped_and_shutdown_ends_the_input() {
        let handler = SseHandler::new(sse_handler::Config::default().event_types(["known"])).unwrap();
        let unregistered = Event::builder().event("x").data("1").build().unwrap();
        let refused = publish(&handler, unregistered, 1);
        assert_eq!(refused, Published::Refused);
        assert_eq!(publish(&handler, Event::data("2"), 2), Published::Yes);
        handler.shutdown();
        assert_eq!(publish(&handler, Event::data("3"), 3), Published::ShutDown);
    }

    #[test]
    fn line_endings_are_stripped_once() {
        assert_eq!(strip_line_ending(b"a\r\n"), b"a");
        assert_eq!(strip_line_ending(b"a\n"), b"a");
        assert_eq!(strip_line_ending(b"a"), b"a", "the last line may have no line ending");
        assert_eq!(strip_line_ending(b"a\r\r\n"), b"a\r", "an inner CR is data (it splits the data lines)");
        assert_eq!(strip_line_ending(b"\n"), b"");
    }
}
