//! Opening streams, what goes over them, and the per-connection operations.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use sse_handler::client::{self, Item};
use sse_handler::{CloseReason, Config, Event, Server, ServerConfig, SseHandler};

#[test]
fn response_head_and_event_bytes_are_exact() {
    let server = start(Config::default());
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.write_all(b"GET /events HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    // The head, and at once a comment, so that the stream shows as open before any event.
    let head = read_until(&mut stream, b"\r\n\r\n: open\n\n");
    assert_eq!(
        String::from_utf8(head).unwrap(),
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache, no-transform\r\n\
         X-Accel-Buffering: no\r\nConnection: keep-alive\r\n\r\n: open\n\n"
    );
    let id = server.handler.send_all(Event::data("hello\nworld")).unwrap().id.unwrap();
    let typed = Event::builder().event("tick").id("abc").data("").build().unwrap();
    server.handler.send_all(typed).unwrap();
    let body = read_until(&mut stream, b"id: abc\nevent: tick\ndata: \n\n");
    let expected = format!("id: {id}\ndata: hello\ndata: world\n\nid: abc\nevent: tick\ndata: \n\n");
    assert_eq!(String::from_utf8(body).unwrap(), expected);
}

#[test]
fn a_configured_header_replaces_the_handlers_own_of_the_same_name() {
    let config = Config::default()
        .allow_origin("*")
        .header("cache-control", "no-store, no-transform")
        .header("Access-Control-Allow-Origin", "https://app.example")
        .header("Link", "<a>")
        .header("Link", "<b>");
    let server = start(config);
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.write_all(b"GET /events HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let head = read_until(&mut stream, b"\r\n\r\n: open\n\n");
    assert_eq!(
        String::from_utf8(head).unwrap(),
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\ncache-control: no-store, no-transform\r\n\
         X-Accel-Buffering: no\r\nConnection: keep-alive\r\nAccess-Control-Allow-Origin: https://app.example\r\n\
         Link: <a>\r\nLink: <b>\r\n\r\n: open\n\n"
    );
}

#[test]
fn events_arrive_in_publish_order() {
    let server = start(Config::default());
    let mut response = subscribe(server.addr, "/events", &[]);
    let ids: Vec<u64> = (0..100)
        .map(|n| server.handler.send_all(Event::data(n.to_string())).unwrap().id.unwrap().parse().unwrap())
        .collect();
    assert!(ids.windows(2).all(|pair| pair[1] == pair[0] + 1), "handler-assigned ids count up by one");
    for (n, id) in ids.iter().enumerate() {
        let event = next_event(response.events());
        assert_eq!(event.data, n.to_string());
        assert_eq!(event.last_event_id, id.to_string());
    }
}

#[test]
fn heartbeat_on_idle() {
    let server = start(Config::default().heartbeat(Duration::from_millis(50)).heartbeat_comment("hb"));
    let mut response = subscribe(server.addr, "/events", &[]);
    assert_eq!(next_item(response.events()), Item::Comment("hb".into()));
    assert_eq!(next_item(response.events()), Item::Comment("hb".into()));
}

#[test]
fn heartbeat_change_applies_to_open_streams() {
    // Starts with a heartbeat far longer than the test's timeout; only the change can make one come.
    let server = start(Config::default().heartbeat(Duration::from_secs(3600)));
    let mut response = subscribe(server.addr, "/events", &[]);
    // The stream is waiting with the old interval; an event wakes it, and its next wait uses the new one.
    server.handler.set_heartbeat(Duration::from_millis(20)).unwrap();
    server.handler.send_all(Event::data("wake")).unwrap();
    assert_eq!(next_event(response.events()).data, "wake");
    assert_eq!(next_item(response.events()), Item::Comment("heartbeat".into()));
    assert!(server.handler.set_heartbeat(Duration::ZERO).is_err());
}

#[test]
fn retry_hint_and_custom_headers_when_a_stream_opens() {
    let config = Config::default().retry(Duration::from_millis(2500)).header("X-Stream", "yes");
    let server = start(config);
    let mut response = client::connect(server.addr, "/events", &[], TIMEOUT).unwrap();
    assert_eq!(response.header("x-stream"), Some("yes"));
    // The hint is what opens the stream: no comment before it.
    assert_eq!(next_item(response.events()), Item::Retry(Duration::from_millis(2500)));
}

#[test]
fn send_one_reaches_only_its_target() {
    let server = start(Config::default());
    let mut first = subscribe(server.addr, "/events", &[]);
    let mut second = subscribe(server.addr, "/events", &[]);
    let ids = server.handler.connection_ids();
    assert_eq!(ids.len(), 2);
    server.handler.send_one(ids[1], Event::data("only for the second")).unwrap();
    server.handler.send_all(Event::data("for everyone")).unwrap();
    assert_eq!(next_event(second.events()).data, "only for the second");
    assert_eq!(next_event(second.events()).data, "for everyone");
    assert_eq!(next_event(first.events()).data, "for everyone", "the first got nothing before it");
}

#[test]
fn a_message_to_one_comes_after_the_events_published_before_it_and_before_those_published_next() {
    const ROUNDS: usize = 2000;
    // Room for every message to one, however far the reader is behind: this is about their order.
    let server = start(Config::default().queue_capacity(ROUNDS));
    let mut target = subscribe(server.addr, "/events", &[]);
    let target_id = server.handler.connection_ids()[0];
    let mut other = subscribe(server.addr, "/events", &[]);
    // Read while publishing, so that the stream's thread is busy reading the log when messages come.
    let reader = std::thread::spawn(move || {
        (0..2 * ROUNDS).map(|_| next_event(target.events()).data).collect::<Vec<_>>()
    });
    for round in 0..ROUNDS {
        server.handler.send_one(target_id, Event::data(format!("one {round}"))).unwrap();
        server.handler.send_all(Event::data(format!("all {round}"))).unwrap();
    }
    let got = reader.join().unwrap();
    let expected: Vec<String> =
        (0..ROUNDS).flat_map(|round| [format!("one {round}"), format!("all {round}")]).collect();
    if let Some(at) = got.iter().zip(&expected).position(|(got, expected)| got != expected) {
        panic!("at {at}: got {:?}, expected {:?}", &got[at..(at + 4).min(got.len())], &expected[at..at + 2]);
    }
    let others: Vec<String> = (0..ROUNDS).map(|_| next_event(other.events()).data).collect();
    assert!(
        others.iter().enumerate().all(|(round, data)| *data == format!("all {round}")),
        "the other got only broadcasts"
    );
}

#[test]
fn send_one_to_an_unknown_connection_is_an_error() {
    let server = start(Config::default());
    let err = server.handler.send_one(12345.into(), Event::data("x")).unwrap_err();
    assert!(matches!(err, sse_handler::Error::UnknownConnection(id) if id.as_u64() == 12345));
    assert!(matches!(server.handler.stop_one(12345.into()), Err(sse_handler::Error::UnknownConnection(_))));
}

#[test]
fn stop_one_closes_just_that_stream() {
    let server = start(Config::default());
    let mut first = subscribe(server.addr, "/events", &[]);
    let mut second = subscribe(server.addr, "/events", &[]);
    let ids = server.handler.connection_ids();
    server.handler.send_all(Event::data("before")).unwrap();
    server.handler.stop_one(ids[0]).unwrap();
    // What was queued before the stop is still delivered, then the stream ends.
    assert_eq!(read_to_end(first.events()).iter().map(|e| e.data.as_str()).collect::<Vec<_>>(), ["before"]);
    wait_until("the stopped stream is unregistered", || server.handler.connection_count() == 1);
    assert_eq!(server.handler.connection_ids(), [ids[1]]);
    server.handler.send_all(Event::data("after")).unwrap();
    assert_eq!(next_event(second.events()).data, "before");
    assert_eq!(next_event(second.events()).data, "after");
}

#[test]
fn connection_info_describes_the_stream() {
    let server = start(Config::default());
    let _response = subscribe(server.addr, "/events?event=a&event=b", &[]);
    let id = server.handler.connection_ids()[0];
    let info = server.handler.connection_info(id).unwrap();
    assert_eq!(info.id(), id);
    assert_eq!(info.path(), "/events");
    assert_eq!(info.event_types(), Some(&["a".to_owned(), "b".to_owned()][..]));
    assert!(info.peer().unwrap().ip().is_loopback());
    assert_eq!(info.user(), None);
}

#[test]
fn hooks_see_open_and_close_with_the_reason() {
    let closed = Arc::new(Mutex::new(Vec::new()));
    let closed_log = Arc::clone(&closed);
    // A short heartbeat, so that a client that goes away is noticed at the next one.
    let builder = SseHandler::builder(Config::default().heartbeat(Duration::from_millis(50)))
        .on_connect(|conn| conn.send(Event::data(format!("welcome {}", conn.info().id()))))
        .on_close(move |info, reason| closed_log.lock().unwrap().push((info.id(), reason.clone())));
    let server = start_with(builder, ServerConfig::default());
    server.handler.send_all(Event::data("old")).unwrap();
    let mut response = subscribe(server.addr, "/events", &[("Last-Event-ID", "0")]);
    let id = server.handler.connection_ids()[0];
    server.handler.send_all(Event::data("live")).unwrap();
    // Replay first (id 0 is unknown, so everything retained), then the welcome, then live events.
    let seen: Vec<String> = (0..3).map(|_| next_event(response.events()).data).collect();
    assert_eq!(seen, ["old", format!("welcome {id}").as_str(), "live"]);

    server.handler.stop_one(id).unwrap();
    wait_until("the close hook ran", || !closed.lock().unwrap().is_empty());
    assert_eq!(closed.lock().unwrap()[0], (id, CloseReason::Stopped));

    drop(subscribe(server.addr, "/events", &[]));
    wait_until("the vanished client is noticed", || closed.lock().unwrap().len() == 2);
    assert_eq!(closed.lock().unwrap()[1].1, CloseReason::ClientGone);
}

#[test]
fn send_timeout_ends_a_client_that_stops_reading() {
    let reasons = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&reasons);
    // A log that holds all that is published, so the client is not behind it but stalled.
    let config = Config::default().send_timeout(Duration::from_millis(200)).history_max_bytes(usize::MAX);
    let builder =
        SseHandler::builder(config).on_close(move |_, reason| log.lock().unwrap().push(reason.clone()));
    let server = start_with(builder, ServerConfig::default());
    // Never reads: once the socket buffers fill, a write blocks, and the send timeout ends it.
    let _stalled = subscribe(server.addr, "/events", &[]);
    // More than the loopback socket buffers hold, so the stream's thread blocks in a write.
    let big = "x".repeat(1024 * 1024);
    for _ in 0..24 {
        server.handler.send_all(Event::data(&big)).unwrap();
    }
    wait_until("the stalled stream times out", || !reasons.lock().unwrap().is_empty());
    assert_eq!(reasons.lock().unwrap()[0], CloseReason::SendTimeout);
}

#[cfg(feature = "json")]
#[test]
fn json_data() {
    #[derive(serde::Serialize)]
    struct Price {
        symbol: &'static str,
        cents: u64,
    }
    let server = start(Config::default());
    let mut response = subscribe(server.addr, "/events", &[]);
    server.handler.send_all(Event::json(&Price { symbol: "ABC", cents: 1234 }).unwrap()).unwrap();
    let event = next_event(response.events());
    let value: serde_json::Value = serde_json::from_str(&event.data).unwrap();
    assert_eq!(value, serde_json::json!({"symbol": "ABC", "cents": 1234}));
}

#[test]
fn server_routes_plain_pages_too() {
    let handler = SseHandler::new(Config::default()).unwrap();
    let handle = Server::bind("127.0.0.1:0")
        .unwrap()
        .stream("/events", &handler)
        .get("/", |_| sse_handler::Response::html("<p>hi</p>"))
        .get("/panics", |_| panic!("a bug in a route handler"))
        .spawn()
        .unwrap();
    let page = raw_exchange(handle.local_addr(), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    assert!(page.ends_with("\r\n\r\n<p>hi</p>"), "{page}");
    let head = raw_exchange(handle.local_addr(), b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(head.contains("Content-Length: 9\r\n") && head.ends_with("\r\n\r\n"), "{head}");
    let panicked = raw_exchange(handle.local_addr(), b"GET /panics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status_of(&panicked), 500);
    // The server keeps serving after a handler panicked.
    assert_eq!(status_of(&raw_exchange(handle.local_addr(), b"GET / HTTP/1.1\r\n\r\n")), 200);
    handle.shutdown();
}

#[test]
fn a_burst_reaches_every_client_complete_and_in_order_without_dropping_any() {
    // The connection threads read the log in batches (they are not woken for every event): what they
    // write must still be every event, in order, to every client, the last ones included.
    const EVENTS: usize = 20_000;
    let server = start(Config::default().history_capacity(EVENTS));
    let readers: Vec<_> = (0..10)
        .map(|_| {
            let mut events = subscribe(server.addr, "/events", &[]).into_events();
            std::thread::spawn(move || (0..EVENTS).map(|_| next_event(&mut events).data).collect::<Vec<_>>())
        })
        .collect();
    for n in 0..EVENTS {
        assert_eq!(server.handler.send_all(Event::data(n.to_string())).unwrap().connections, 10);
    }
    for reader in readers {
        let received = reader.join().expect("every event within the timeout");
        assert!(
            received.iter().enumerate().all(|(n, data)| *data == n.to_string()),
            "in order, none missing"
        );
    }
    let stats = server.handler.stats();
    assert_eq!((stats.slow_client_disconnects, stats.events_dropped), (0, 0));
    assert_eq!(server.handler.connection_count(), 10);
}

#[test]
fn an_event_to_many_clients_reaches_every_one_of_them() {
    // Far more streams than the publisher wakes itself: the woken threads pass the wake-up on, and
    // every parked thread must still be woken and write the event. The heartbeat is far away, so
    // nothing else wakes them before the read timeout; the publishes come one at a time (every thread
    // waiting each time) and then back to back.
    const CLIENTS: usize = 150;
    let config = Config::default().heartbeat(Duration::from_secs(3600));
    let server = start(config);
    let mut clients: Vec<_> =
        (0..CLIENTS).map(|_| subscribe(server.addr, "/events", &[]).into_events()).collect();
    for round in 0..3 {
        let sent = server.handler.send_all(Event::data(format!("round {round}"))).unwrap();
        assert_eq!(sent.connections, CLIENTS);
        for client in &mut clients {
            assert_eq!(next_event(client).data, format!("round {round}"));
        }
    }
    for n in 0..50 {
        server.handler.send_all(Event::data(format!("quick {n}"))).unwrap();
    }
    for client in &mut clients {
        for n in 0..50 {
            assert_eq!(next_event(client).data, format!("quick {n}"));
        }
    }
}
