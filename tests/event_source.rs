//! `client::EventSource`: a browser's EventSource in blocking code. Against the library's own server
//! (streams ended by `stop_one`, by `max_lifetime`, by a restart on the same port) and against
//! scripted servers for what the standard says about statuses, types, ids and `retry:`.

mod common;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use common::*;
use sse_handler::client::{EventSource, EventSourceBuilder, ReceivedEvent, SourceError, State, Update};
use sse_handler::{BearerToken, Config, Event, MemoryLog, Server, SseHandler};

/// Settings for sources in these tests: every wait bounded, reconnections quick.
fn source(url: String) -> EventSourceBuilder {
    EventSource::builder(url)
        .retry(Duration::from_millis(20))
        .max_backoff(Duration::from_millis(200))
        .connect_timeout(TIMEOUT)
        .idle_timeout(TIMEOUT)
}

/// The next update; the source must neither fail nor close.
fn update(source: &mut EventSource) -> Update {
    source.next_update().expect("the connection does not fail").expect("the source is not closed")
}

/// Updates until the stream opens; returns how many reconnections came first.
fn until_open(source: &mut EventSource) -> usize {
    let mut reconnections = 0;
    loop {
        match update(source) {
            Update::Open => return reconnections,
            Update::Reconnecting { .. } => reconnections += 1,
            Update::Event(event) => panic!("an event before the stream opened: {event:?}"),
            _ => {}
        }
        assert!(reconnections < 20, "the stream does not open");
    }
}

/// Updates until the stream is lost; an event on the way would be a test bug.
fn until_lost(source: &mut EventSource) -> (Duration, Option<io::Error>) {
    loop {
        match update(source) {
            Update::Reconnecting { delay, error } => return (delay, error),
            Update::Event(event) => panic!("unexpected event {event:?}"),
            _ => {}
        }
    }
}

/// The next `n` events, however many reconnections it takes (at most 20).
fn take_events(source: &mut EventSource, n: usize) -> Vec<ReceivedEvent> {
    let mut events = Vec::new();
    let mut reconnections = 0;
    while events.len() < n {
        match update(source) {
            Update::Event(event) => events.push(event),
            Update::Reconnecting { .. } => reconnections += 1,
            _ => {}
        }
        assert!(reconnections < 20, "only {events:?} after {reconnections} reconnections");
    }
    events
}

/// Whether an error is the one a case expects.
type IsExpected = fn(&SourceError) -> bool;

fn data_of(events: &[ReceivedEvent]) -> Vec<&str> {
    events.iter().map(|event| event.data.as_str()).collect()
}

/// Each event's id is as published (numbers that increase, whatever they start from).
fn assert_ids_increase(events: &[ReceivedEvent]) {
    let ids: Vec<u64> =
        events.iter().map(|event| event.last_event_id.parse().expect("a numeric id")).collect();
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "ids {ids:?}");
}

fn only_connection(handler: &SseHandler) -> sse_handler::ConnectionId {
    let ids = handler.connection_ids();
    assert_eq!(ids.len(), 1, "{ids:?}");
    ids[0]
}

#[test]
fn resumes_after_stop_one_without_a_gap_or_a_duplicate() {
    let server = start(Config::default().reconnect_after(Duration::from_millis(10)));
    let mut source = source(format!("http://{}/events", server.addr)).build().unwrap();
    assert_eq!(source.state(), State::Connecting);
    until_open(&mut source);
    assert_eq!(source.state(), State::Open);
    for data in ["one", "two"] {
        server.handler.send_all(Event::data(data)).unwrap();
    }
    let before = take_events(&mut source, 2);

    server.handler.stop_one(only_connection(&server.handler)).unwrap();
    // Published while the client is away: it must come from the replay.
    server.handler.send_all(Event::data("three")).unwrap();
    let (delay, error) = until_lost(&mut source);
    assert_eq!(source.state(), State::Reconnecting);
    assert!(error.is_none(), "the server ended the stream normally: {error:?}");
    assert_eq!(delay, Duration::from_millis(10), "the server's retry: hint");
    assert_eq!(source.last_event_id(), before[1].last_event_id);

    until_open(&mut source);
    server.handler.send_all(Event::data("four")).unwrap();
    let after = take_events(&mut source, 2);
    let all = [before, after].concat();
    assert_eq!(data_of(&all), ["one", "two", "three", "four"]);
    assert_ids_increase(&all);
}

#[test]
fn resumes_across_max_lifetime_rotations() {
    let config =
        Config::default().max_lifetime(Duration::from_millis(200)).reconnect_after(Duration::from_millis(10));
    let server = start(config);
    let mut source = source(format!("http://{}/events", server.addr)).build().unwrap();
    until_open(&mut source);
    let mut events = Vec::new();
    for round in 0..3 {
        server.handler.send_all(Event::data(format!("live {round}"))).unwrap();
        events.extend(take_events(&mut source, 1));
        // The server ends the stream at its maximum lifetime ...
        until_lost(&mut source);
        // ... and what is published before the client is back comes with the replay.
        server.handler.send_all(Event::data(format!("missed {round}"))).unwrap();
        until_open(&mut source);
        events.extend(take_events(&mut source, 1));
    }
    assert_eq!(data_of(&events), ["live 0", "missed 0", "live 1", "missed 1", "live 2", "missed 2"]);
    assert_ids_increase(&events);
}

/// A log that outlives its handler, as one in a database or Redis would: what lets a restarted server
/// replay what was published before it stopped.
fn serve_on(addr: SocketAddr, log: &Arc<MemoryLog>) -> (sse_handler::ServerHandle, SseHandler) {
    let config = Config::default().reconnect_after(Duration::from_millis(10));
    let handler = SseHandler::builder(config).log(Arc::clone(log)).build().unwrap();
    let server = Server::bind(addr).unwrap().stream("/events", &handler).spawn().unwrap();
    (server, handler)
}

#[test]
fn resumes_across_a_server_restart_on_the_same_port() {
    let log = Arc::new(MemoryLog::new(100));
    let (first, handler) = serve_on("127.0.0.1:0".parse().unwrap(), &log);
    let addr = first.local_addr();
    let mut source = source(format!("http://{addr}/events")).build().unwrap();
    until_open(&mut source);
    // Explicit ids: a new handler's own numbering need not continue the old one's.
    let publish = |handler: &SseHandler, n: u32| {
        handler
            .send_all(Event::builder().id(format!("{n}")).data(format!("event {n}")).build().unwrap())
            .unwrap();
    };
    for n in 1..=3 {
        publish(&handler, n);
    }
    let mut events = take_events(&mut source, 3);

    first.shutdown();
    let (second, handler) = serve_on(addr, &log);
    // Published while no server had the client.
    for n in 4..=5 {
        publish(&handler, n);
    }
    until_lost(&mut source);
    until_open(&mut source);
    publish(&handler, 6);
    events.extend(take_events(&mut source, 3));
    assert_eq!(data_of(&events), ["event 1", "event 2", "event 3", "event 4", "event 5", "event 6"]);
    assert_ids_increase(&events);
    second.shutdown();
}

#[test]
fn sends_custom_headers_and_fails_on_a_refused_token() {
    let handler =
        SseHandler::builder(Config::default()).authenticator(BearerToken::new("s3cret")).build().unwrap();
    let server = Server::bind("127.0.0.1:0").unwrap().stream("/events", &handler).spawn().unwrap();
    let url = format!("http://{}/events", server.local_addr());

    let mut allowed = source(url.clone()).header("Authorization", "Bearer s3cret").build().unwrap();
    until_open(&mut allowed);
    handler.send_all(Event::data("for the holder")).unwrap();
    assert_eq!(data_of(&take_events(&mut allowed, 1)), ["for the holder"]);

    let mut refused = source(url).header("Authorization", "Bearer guess").build().unwrap();
    match refused.next_update() {
        Err(SourceError::Status { status: 401, .. }) => {}
        other => panic!("expected a 401 failure, got {other:?}"),
    }
    assert_eq!(refused.state(), State::Closed);
    assert!(refused.next_update().unwrap().is_none());
    server.shutdown();
}

/// A server that answers connections one at a time: `answer` gets the connection's number (from 0),
/// the request head, and the socket. Every request head is sent to the receiver. Once `count`
/// connections are served the thread hands back the listener, so a test can check nothing else came.
struct Scripted {
    url: String,
    requests: Receiver<String>,
    thread: JoinHandle<TcpListener>,
}

impl Scripted {
    fn start(count: usize, answer: impl Fn(usize, &str, &mut TcpStream) + Send + 'static) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (sender, requests) = mpsc::channel();
        let thread = thread::spawn(move || {
            for n in 0..count {
                let (mut socket, _) = listener.accept().unwrap();
                socket.set_read_timeout(Some(TIMEOUT)).unwrap();
                let head = String::from_utf8(read_until(&mut socket, b"\r\n\r\n")).unwrap();
                answer(n, &head, &mut socket);
                sender.send(head).unwrap();
            }
            listener
        });
        Scripted { url, requests, thread }
    }

    fn request(&self) -> String {
        self.requests.recv_timeout(TIMEOUT).expect("a request")
    }

    /// Waits for the script to finish and checks no further connection is waiting.
    fn assert_no_more_connections(self) {
        let listener = self.thread.join().expect("the script ran");
        listener.set_nonblocking(true).unwrap();
        let next = listener.accept();
        assert!(
            matches!(&next, Err(e) if e.kind() == io::ErrorKind::WouldBlock),
            "one more connection came: {next:?}"
        );
    }
}

fn header_of<'a>(request: &'a str, name: &str) -> Option<&'a str> {
    request.lines().find_map(|line| {
        let (n, value) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

fn stream_reply(socket: &mut TcpStream, body: &str) {
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n";
    socket.write_all(format!("{head}{body}").as_bytes()).unwrap();
}

/// WPT `eventsource/format-field-id.htm` and `format-field-id-2.htm`, with the server of
/// `resources/last-event-id.py`: the id "…" is sent back as `Last-Event-ID` (UTF-8) on every
/// reconnection, and events of the later connections, which carry no `id:`, still report it.
#[test]
fn wpt_last_event_id_carries_over_reconnections() {
    let script = Scripted::start(3, |_, request, socket| match header_of(request, "Last-Event-ID") {
        Some(id) => stream_reply(socket, &format!("data: {id}\n\n")),
        None => stream_reply(socket, "id: \u{2026}\nretry: 200\ndata: hello\n\n"),
    });
    let mut source = source(format!("{}/events", script.url)).build().unwrap();
    let events = take_events(&mut source, 3);
    let seen: Vec<(&str, &str)> =
        events.iter().map(|event| (event.data.as_str(), event.last_event_id.as_str())).collect();
    assert_eq!(seen, [("hello", "\u{2026}"), ("\u{2026}", "\u{2026}"), ("\u{2026}", "\u{2026}")]);
    assert_eq!(header_of(&script.request(), "Last-Event-ID"), None, "not on the first connection");
    for _ in 0..2 {
        assert_eq!(header_of(&script.request(), "Last-Event-ID"), Some("\u{2026}"));
    }
    assert_eq!(source.reconnection_time(), Duration::from_millis(200), "the stream's retry: 200");
    source.close();
    script.assert_no_more_connections();
}

/// The reconnection delay is the last valid `retry:` (WPT `format-field-retry.htm`); an invalid
/// one is ignored (`format-field-retry-bogus.htm`), and the delay is announced before the wait.
#[test]
fn retry_sets_the_reconnection_delay_and_a_bogus_one_is_ignored() {
    let script = Scripted::start(3, |n, _, socket| match n {
        0 => stream_reply(socket, "retry: 00035\ndata: a\n\n"),
        1 => stream_reply(socket, "retry: 1000x\ndata: b\n\n"),
        _ => stream_reply(socket, "data: c\n\n"),
    });
    let mut source = source(format!("{}/events", script.url)).build().unwrap();
    until_open(&mut source);
    let mut delays = Vec::new();
    let mut data = Vec::new();
    while data.len() < 3 {
        match update(&mut source) {
            Update::Event(event) => data.push(event.data),
            Update::Reconnecting { delay, .. } => delays.push(delay),
            _ => {}
        }
    }
    assert_eq!(data, ["a", "b", "c"]);
    assert_eq!(delays, [Duration::from_millis(35), Duration::from_millis(35)]);
    source.close();
    script.assert_no_more_connections();
}

/// WPT `format-field-id-3.htm` ("resets") and `format-field-id-null`: an empty `id:` clears the last
/// event id, so the reconnection sends none; an id holding NUL is ignored.
#[test]
fn an_empty_id_resets_and_an_id_with_nul_is_ignored() {
    let script = Scripted::start(3, |n, _, socket| match n {
        0 => stream_reply(socket, "id: 1\ndata: 1\n\nid:\ndata:2\n\ndata:3\n\n"),
        1 => stream_reply(socket, "id: 7\ndata: 4\n\nid: 8\0x\ndata: 5\n\n"),
        _ => stream_reply(socket, "data: 6\n\n"),
    });
    let mut source = source(format!("{}/events", script.url)).build().unwrap();
    let events = take_events(&mut source, 6);
    let ids: Vec<&str> = events.iter().map(|event| event.last_event_id.as_str()).collect();
    assert_eq!(ids, ["1", "", "", "7", "7", "7"]);
    let requests: Vec<String> = (0..3).map(|_| script.request()).collect();
    assert_eq!(header_of(&requests[1], "Last-Event-ID"), None, "the id was reset");
    assert_eq!(header_of(&requests[2], "Last-Event-ID"), Some("7"));
    source.close();
    script.assert_no_more_connections();
}

/// WPT `format-mime-valid-bogus.htm`, `request-status-error.htm`: the connection fails, for good.
#[test]
fn a_wrong_content_type_or_status_fails_without_reconnecting() {
    let answers: [(&str, IsExpected); 6] = [
        (
            "200 OK\r\nContent-Type: text/x-bogus",
            |e| matches!(e, SourceError::ContentType { content_type: Some(t) } if t == "text/x-bogus"),
        ),
        ("200 OK\r\nContent-Length: 0", |e| matches!(e, SourceError::ContentType { content_type: None })),
        ("404 Not Found\r\nContent-Type: text/event-stream", |e| {
            matches!(e, SourceError::Status { status: 404, .. })
        }),
        ("205 Reset Content", |e| matches!(e, SourceError::Status { status: 205, .. })),
        ("500 Internal Server Error", |e| matches!(e, SourceError::Status { status: 500, .. })),
        (
            "503 Service Unavailable",
            |e| matches!(e, SourceError::Status { status: 503, reason } if reason == "Service Unavailable"),
        ),
    ];
    for (status_and_headers, expected) in answers {
        let reply = format!("HTTP/1.1 {status_and_headers}\r\nConnection: close\r\n\r\ndata: never\n\n");
        let script = Scripted::start(1, move |_, _, socket| socket.write_all(reply.as_bytes()).unwrap());
        let mut source = source(format!("{}/events", script.url)).build().unwrap();
        let error = match source.next_update() {
            Err(error) => error,
            other => panic!("{status_and_headers}: expected a failure, got {other:?}"),
        };
        assert!(expected(&error), "{status_and_headers}: {error:?}");
        assert_eq!(source.state(), State::Closed);
        assert!(source.next_update().unwrap().is_none(), "closed for good");
        assert!(source.next().is_none());
        script.assert_no_more_connections();
    }
}

#[test]
fn a_type_with_parameters_or_another_case_is_accepted() {
    for content_type in ["text/event-stream; charset=utf-8", "Text/Event-Stream", " text/event-stream ;x=y"] {
        let reply = format!("HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n\r\ndata: ok\n\n");
        let script = Scripted::start(1, move |_, _, socket| socket.write_all(reply.as_bytes()).unwrap());
        let mut source = source(format!("{}/events", script.url)).build().unwrap();
        assert_eq!(data_of(&take_events(&mut source, 1)), ["ok"], "{content_type}");
    }
}

/// `204 No Content` tells a client to stop reconnecting: the source ends, without an error.
#[test]
fn no_content_stops_the_source() {
    let script = Scripted::start(2, |n, _, socket| match n {
        0 => stream_reply(socket, "id: 1\ndata: first\n\n"),
        _ => socket.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap(),
    });
    let mut source = source(format!("{}/events", script.url)).build().unwrap();
    assert_eq!(data_of(&take_events(&mut source, 1)), ["first"]);
    until_lost(&mut source);
    assert!(source.next_update().expect("no failure").is_none(), "the 204 ends the source");
    assert_eq!(source.state(), State::Closed);
    assert!(source.next().is_none());
    script.request();
    assert_eq!(header_of(&script.request(), "Last-Event-ID"), Some("1"));
    script.assert_no_more_connections();
}

/// Redirects are followed; reconnections start again from the URL the source was given.
#[test]
fn follows_redirects_and_reconnects_to_the_original_url() {
    let script = Scripted::start(4, |n, _, socket| match n {
        0 | 2 => {
            socket.write_all(b"HTTP/1.1 307 Temporary Redirect\r\nLocation: /moved?x=1\r\n\r\n").unwrap()
        }
        1 => stream_reply(socket, "data: via redirect\n\n"),
        _ => stream_reply(socket, "data: again\n\n"),
    });
    let mut source = source(format!("{}/events", script.url)).build().unwrap();
    assert_eq!(data_of(&take_events(&mut source, 2)), ["via redirect", "again"]);
    let targets: Vec<String> = (0..4).map(|_| script.request().lines().next().unwrap().to_owned()).collect();
    assert_eq!(
        targets,
        [
            "GET /events HTTP/1.1",
            "GET /moved?x=1 HTTP/1.1",
            "GET /events HTTP/1.1",
            "GET /moved?x=1 HTTP/1.1"
        ]
    );
    source.close();
    script.assert_no_more_connections();
}

/// A stream that goes silent past the idle timeout is dropped and reopened with `Last-Event-ID`.
#[test]
fn a_silent_stream_is_reopened_after_the_idle_timeout() {
    let script = Scripted::start(2, |n, _, socket| {
        stream_reply(socket, &format!("id: {n}\ndata: {n}\n\n"));
        if n == 0 {
            // Silence until the client gives up on this connection.
            let _ = socket.read_to_end(&mut Vec::new());
        }
    });
    let mut source =
        source(format!("{}/events", script.url)).idle_timeout(Duration::from_millis(100)).build().unwrap();
    assert_eq!(data_of(&take_events(&mut source, 1)), ["0"]);
    let (_, error) = until_lost(&mut source);
    assert_eq!(error.expect("a timeout").kind(), io::ErrorKind::TimedOut);
    assert_eq!(data_of(&take_events(&mut source, 1)), ["1"]);
    script.request();
    assert_eq!(header_of(&script.request(), "Last-Event-ID"), Some("0"));
    source.close();
    script.assert_no_more_connections();
}

/// Failed attempts are retried with a growing, jittered, bounded delay; the state says the source
/// has not connected yet.
#[test]
fn refused_connections_are_retried_with_a_bounded_backoff() {
    // A port that was just free: nothing listens there.
    let addr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut source = EventSource::builder(format!("http://{addr}/events"))
        .retry(Duration::from_millis(5))
        .max_backoff(Duration::from_millis(30))
        .connect_timeout(TIMEOUT)
        .build()
        .unwrap();
    for _ in 0..4 {
        match update(&mut source) {
            Update::Reconnecting { delay, error } => {
                assert_eq!(error.expect("an error").kind(), io::ErrorKind::ConnectionRefused);
                assert!((Duration::from_millis(5)..=Duration::from_millis(30)).contains(&delay), "{delay:?}");
            }
            other => panic!("expected a retry, got {other:?}"),
        }
        assert_eq!(source.state(), State::Connecting);
    }
}

/// Closing through a handle ends a read that is blocked on a silent stream, and nothing reconnects.
#[test]
fn a_handle_closes_the_source_from_another_thread() {
    let script = Scripted::start(1, |_, _, socket| {
        stream_reply(socket, ": hello\n\n");
        // Holds the stream open longer than the test waits for the close to take effect.
        socket.set_read_timeout(Some(3 * TIMEOUT)).unwrap();
        let _ = socket.read_to_end(&mut Vec::new());
    });
    let mut source = source(format!("{}/events", script.url)).build().unwrap();
    let handle = source.handle();
    until_open(&mut source);
    assert!(matches!(update(&mut source), Update::Comment(text) if text == "hello"));
    let (done, finished) = mpsc::channel();
    let (started, reader_task) = mpsc::channel();
    let reader = thread::spawn(move || {
        started.send(std::fs::read_link("/proc/thread-self").ok()).unwrap();
        // Blocks: the server sends nothing more and the idle timeout is long.
        let next = source.next_update();
        done.send(()).unwrap();
        (next.map(|update| update.is_none()), source)
    });
    if let Some(task) = reader_task.recv_timeout(TIMEOUT).unwrap() {
        wait_until_asleep(&Path::new("/proc").join(task));
    }
    assert_eq!(handle.state(), State::Open);
    handle.close();
    finished.recv_timeout(TIMEOUT).expect("the blocked read ends at once");
    let (next, source) = reader.join().unwrap();
    assert!(next.unwrap(), "a closed source ends");
    assert_eq!(source.state(), State::Closed);
    script.assert_no_more_connections();
}

/// Waits (bounded) until the thread with this `/proc` entry sleeps in the kernel: for a thread that
/// only reads a socket, until it is blocked in the read. (Where there is no `/proc`, callers skip it.)
fn wait_until_asleep(task: &Path) {
    wait_until("the thread blocks", || {
        let stat = std::fs::read_to_string(task.join("stat")).unwrap_or_default();
        stat.rsplit_once(')').is_some_and(|(_, fields)| fields.trim_start().starts_with('S'))
    });
}

#[test]
fn bad_settings_are_refused_when_built() {
    let cases: [(EventSourceBuilder, IsExpected); 7] = [
        (EventSource::builder("localhost:8080/events"), |e| matches!(e, SourceError::InvalidUrl { .. })),
        (EventSource::builder("https://example.com/"), |e| matches!(e, SourceError::InvalidUrl { .. })),
        (
            EventSource::builder("http://h/").header("X-A", "b\r\nX-B: c"),
            |e| matches!(e, SourceError::InvalidHeader { name, .. } if name == "X-A"),
        ),
        (EventSource::builder("http://h/").header("Bad Name", "v"), |e| {
            matches!(e, SourceError::InvalidHeader { .. })
        }),
        (EventSource::builder("http://h/").header("last-event-id", "5"), |e| {
            matches!(e, SourceError::InvalidHeader { .. })
        }),
        (EventSource::builder("http://h/").last_event_id("a\0b"), |e| {
            matches!(e, SourceError::InvalidHeader { .. })
        }),
        (EventSource::builder("http://h/").idle_timeout(Duration::ZERO), |e| {
            matches!(e, SourceError::ZeroTimeout(_))
        }),
    ];
    for (builder, expected) in cases {
        let described = format!("{builder:?}");
        let error = builder.build().expect_err(&described);
        assert!(expected(&error), "{described}: {error}");
    }
}

/// A saved id is sent on the very first request, and an `https://` URL works with a connector.
#[test]
fn a_saved_id_and_a_connector_are_used_from_the_first_request() {
    let script = Scripted::start(1, |_, _, socket| stream_reply(socket, "data: resumed\n\n"));
    let addr: SocketAddr = script.url.trim_start_matches("http://").parse().unwrap();
    let mut source = EventSource::builder("https://stream.example/events")
        .last_event_id("41")
        .connector(move |target| {
            assert_eq!((target.scheme(), target.host(), target.port()), ("https", "stream.example", 443));
            TcpStream::connect(addr)
        })
        .build()
        .unwrap();
    assert!(
        matches!(source.next(), Some(Ok(event)) if event.data == "resumed" && event.last_event_id == "41")
    );
    let request = script.request();
    assert_eq!(header_of(&request, "Last-Event-ID"), Some("41"));
    assert_eq!(header_of(&request, "Host"), Some("stream.example"));
    assert_eq!(header_of(&request, "Accept"), Some("text/event-stream"));
    source.close();
    script.assert_no_more_connections();
}
