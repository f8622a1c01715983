//! Each handler's log lines under its own target (`Config::log_target`), so that two handlers' lines
//! can be told apart and routed.

mod common;

use std::io::{self, Write};
use std::sync::mpsc;
use std::sync::{Mutex, Once};
use std::thread;

use common::*;
use sse_handler::{CloseReason, Config, ConnectionId, Event, Request, SseHandler};

/// Every log record of this test binary: (target, level, message).
static RECORDS: Mutex<Vec<(String, log::Level, String)>> = Mutex::new(Vec::new());

struct Recorder;

impl log::Log for Recorder {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let line = (record.target().to_owned(), record.level(), record.args().to_string());
        RECORDS.lock().unwrap().push(line);
    }

    fn flush(&self) {}
}

fn record_logs() {
    static RECORDER: Recorder = Recorder;
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        log::set_logger(&RECORDER).expect("the only logger of this test binary");
        log::set_max_level(log::LevelFilter::Trace);
    });
}

/// The targets of the records whose message holds `text`.
fn targets_of(text: &str) -> Vec<String> {
    let records = RECORDS.lock().unwrap();
    records.iter().filter(|(_, _, message)| message.contains(text)).map(|(t, _, _)| t.clone()).collect()
}

/// How many records under `target` hold `text`.
fn count(target: &str, text: &str) -> usize {
    targets_of(text).iter().filter(|t| *t == target).count()
}

/// Opens a stream, is refused a type, and has the stream stopped: the handler logs each. Returns
/// the stream's id.
fn open_refuse_and_stop(name: &str) -> ConnectionId {
    let server = start(Config::default().log_target(format!("sse-test-{name}")).event_types(["tick"]));
    let mut response = subscribe(server.addr, "/events?event=tick", &[]);
    let refused = format!("GET /events?event=nope-{name} HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status_of(&raw_exchange(server.addr, refused.as_bytes())), 404);
    let id = server.handler.connection_ids()[0];
    server.handler.stop_one(id).unwrap();
    assert!(read_to_end(response.events()).is_empty());
    id
}

#[test]
fn two_handlers_log_under_their_own_targets() {
    record_logs();
    let (a, b) = (thread::spawn(|| open_refuse_and_stop("a")), thread::spawn(|| open_refuse_and_stop("b")));
    for (name, id) in [("a", a.join().unwrap()), ("b", b.join().unwrap())] {
        let target = format!("sse-test-{name}");
        assert_eq!(count(&target, " opened on /events"), 1, "the opening");
        assert_eq!(count(&target, &format!("request refused: not found: no event type \"nope-{name}\"")), 1);
        assert_eq!(count(&target, &format!("stream {id}: stopped by the application")), 1, "the stop");
        assert_eq!(
            count(&target, &format!("stream {id} closed: stopped by the application")),
            1,
            "the close"
        );
    }
}

/// A client's writer that blocks its first write until the test lets it through.
struct HeldWriter {
    release: mpsc::Receiver<()>,
    held: bool,
}

impl Write for HeldWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.held {
            self.release.recv_timeout(TIMEOUT).map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?;
            self.held = false;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_stream_left_behind_by_the_log_is_logged_under_its_handlers_target() {
    record_logs();
    let (opened, ids) = mpsc::channel();
    let handler = SseHandler::builder(Config::default().history_capacity(2).log_target("sse-test-slow"))
        .on_connect(move |conn| {
            let _ = opened.send(conn.info().id());
        })
        .build()
        .unwrap();
    let (release, held) = mpsc::channel();
    let serving = {
        let handler = handler.clone();
        let writer = HeldWriter { release: held, held: true };
        thread::spawn(move || handler.accept_writer(writer, &Request::new("GET", "/events")))
    };
    ids.recv_timeout(TIMEOUT).expect("the stream opens");
    // While its first write is held, more events than the log keeps go by.
    for n in 0..5 {
        handler.send_all(Event::data(n.to_string())).unwrap();
    }
    release.send(()).unwrap();
    assert_eq!(serving.join().unwrap().unwrap(), Some(CloseReason::SlowClient));
    assert_eq!(targets_of("events it had not read left the log"), ["sse-test-slow"]);
}
