//! Vanished and slow clients, limits, lifetimes, retry hints, bounded stops, and application code that
//! panics or blocks.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use sse_handler::client::Item;
use sse_handler::{CloseReason, Config, Event, Rejection, Request, ServerConfig, SseHandler};

fn close_log(config: Config) -> (TestServer, Arc<Mutex<Vec<CloseReason>>>) {
    let reasons = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&reasons);
    let builder =
        SseHandler::builder(config).on_close(move |_, reason| log.lock().unwrap().push(reason.clone()));
    (start_with(builder, ServerConfig::default()), reasons)
}

#[test]
fn an_idle_client_that_closed_is_released_at_the_next_heartbeat() {
    let (server, reasons) = close_log(Config::default().heartbeat(Duration::from_millis(100)));
    drop(subscribe(server.addr, "/events", &[]));
    // The close hook runs last, once the stream is unregistered.
    wait_until("the closed client is released", || !reasons.lock().unwrap().is_empty());
    assert_eq!(server.handler.connection_count(), 0);
    assert_eq!(*reasons.lock().unwrap(), [CloseReason::ClientGone]);
    // Found from the read side: no heartbeat had to be written (and fail) to notice it.
    assert_eq!(server.handler.stats().heartbeats, 0);
}

#[test]
fn tcp_keepalive_can_be_turned_on() {
    let server = start(Config::default().tcp_keepalive(Duration::from_secs(30)));
    let mut response = subscribe(server.addr, "/events", &[]);
    server.handler.send_all(Event::data("kept alive")).unwrap();
    assert_eq!(next_event(response.events()).data, "kept alive");
}

#[test]
fn connection_limit_tells_stream_clients_to_come_back_and_others_503() {
    let config = Config::default().reconnect_after(Duration::from_millis(1500));
    let handler = SseHandler::new(config).unwrap();
    let handle = sse_handler::Server::bind("127.0.0.1:0")
        .unwrap()
        .config(ServerConfig::default().max_connections(2))
        .stream("/events", &handler)
        .get("/page", |_| sse_handler::Response::text("page"))
        .spawn()
        .unwrap();
    let addr = handle.local_addr();
    let _first = subscribe(addr, "/events", &[]);
    let _second = subscribe(addr, "/events", &[]);
    // A third stream gets 200 (so EventSource retries rather than giving up), a retry hint, and the end.
    let mut third = connect_stream(addr, "/events", &[]);
    assert_eq!(next_item(third.events()), Item::Retry(Duration::from_millis(1500)));
    assert!(third.events().next_item().unwrap().is_none(), "closed after the hint");
    let page = raw_exchange(addr, b"GET /page HTTP/1.1\r\n\r\n");
    assert_eq!(status_of(&page), 503);
    assert_eq!(handler.connection_count(), 2);
    handle.shutdown();
}

#[test]
fn per_ip_limit() {
    let handler = SseHandler::new(Config::default().heartbeat(Duration::from_millis(50))).unwrap();
    let handle = sse_handler::Server::bind("127.0.0.1:0")
        .unwrap()
        .config(ServerConfig::default().max_connections_per_ip(1))
        .stream("/events", &handler)
        .spawn()
        .unwrap();
    let first = subscribe(handle.local_addr(), "/events", &[]);
    let mut second = connect_stream(handle.local_addr(), "/events", &[]);
    assert!(matches!(next_item(second.events()), Item::Retry(_)));
    assert!(second.events().next_item().unwrap().is_none());
    // Once the first leaves, the address has room again.
    drop(first);
    wait_until("the first connection is released", || handle.connection_count() == 0);
    let mut third = subscribe(handle.local_addr(), "/events", &[]);
    handler.send_all(Event::data("welcome back")).unwrap();
    assert_eq!(next_event(third.events()).data, "welcome back");
    handle.shutdown();
}

#[test]
fn max_lifetime_closes_with_a_hint_and_the_client_resumes() {
    let config =
        Config::default().max_lifetime(Duration::from_millis(200)).reconnect_after(Duration::from_millis(10));
    let (server, reasons) = close_log(config);
    let mut response = subscribe(server.addr, "/events", &[]);
    let before = server.handler.send_all(Event::data("before")).unwrap().id.unwrap();
    let mut items = Vec::new();
    while let Some(item) = response.events().next_item().unwrap() {
        items.push(item);
    }
    assert_eq!(items.len(), 2, "{items:?}");
    assert!(matches!(&items[0], Item::Event(e) if e.data == "before"));
    assert_eq!(items[1], Item::Retry(Duration::from_millis(10)));
    wait_until("the close is recorded", || !reasons.lock().unwrap().is_empty());
    assert_eq!(reasons.lock().unwrap()[0], CloseReason::MaxLifetime);
    server.handler.send_all(Event::data("meanwhile")).unwrap();
    let mut resumed = subscribe(server.addr, "/events", &[("Last-Event-ID", &before)]);
    assert_eq!(next_event(resumed.events()).data, "meanwhile");
}

#[test]
fn retry_hints_are_spread_by_jitter() {
    let config =
        Config::default().retry(Duration::from_millis(1000)).retry_jitter(Duration::from_millis(500));
    let server = start(config);
    let hints: Vec<Duration> = (0..8)
        .map(|_| match next_item(connect_stream(server.addr, "/events", &[]).events()) {
            Item::Retry(after) => after,
            other => panic!("expected a retry hint, got {other:?}"),
        })
        .collect();
    assert!(
        hints.iter().all(|h| *h >= Duration::from_millis(1000) && *h < Duration::from_millis(1500)),
        "{hints:?}"
    );
    let first = hints[0];
    assert!(hints.iter().any(|h| *h != first), "all the same: {hints:?}");
}

#[test]
fn shutdown_sends_a_final_retry_hint() {
    let mut server = start(Config::default().reconnect_after(Duration::from_millis(2500)));
    let mut response = subscribe(server.addr, "/events", &[]);
    server.shutdown();
    assert_eq!(next_item(response.events()), Item::Retry(Duration::from_millis(2500)));
    assert!(response.events().next_item().unwrap().is_none());
}

#[test]
fn stop_one_within_ends_even_a_stalled_stream() {
    let config = Config::default().send_timeout(Duration::from_secs(300)).queue_max_bytes(usize::MAX);
    let (server, reasons) = close_log(config);
    let _stalled = subscribe(server.addr, "/events", &[]);
    let id = server.handler.connection_ids()[0];
    let big = "s".repeat(1024 * 1024);
    for _ in 0..24 {
        server.handler.send_all(Event::data(&big)).unwrap();
    }
    assert!(server.handler.stop_one_within(id, Duration::from_millis(200)).unwrap());
    assert_eq!(reasons.lock().unwrap().len(), 1);
    assert!(server.handler.stop_one_within(id, Duration::from_millis(200)).is_err(), "already gone");
}

#[test]
fn a_panicking_authenticator_costs_only_its_request() {
    let auth = |request: &Request| {
        if request.header("x-boom").is_some() {
            panic!("authenticator bug");
        }
        Ok(None)
    };
    let server =
        start_with(SseHandler::builder(Config::default()).authenticator(auth), ServerConfig::default());
    let mut healthy = subscribe(server.addr, "/events", &[]);
    let answer = raw_exchange(server.addr, b"GET /events HTTP/1.1\r\nX-Boom: 1\r\n\r\n");
    assert_eq!(status_of(&answer), 500);
    server.handler.send_all(Event::data("still serving")).unwrap();
    assert_eq!(next_event(healthy.events()).data, "still serving");
    let _another = subscribe(server.addr, "/events", &[]);
}

#[test]
fn panicking_hooks_cost_only_their_connection() {
    let builder = SseHandler::builder(Config::default())
        .on_connect(|conn| {
            if conn.info().path() == "/events" && conn.info().event_types().is_some() {
                panic!("connect hook bug");
            }
        })
        .on_close(|_, _| panic!("close hook bug"));
    let server = start_with(builder, ServerConfig::default());
    let doomed = raw_exchange(server.addr, b"GET /events?event=x HTTP/1.1\r\n\r\n");
    assert_eq!(status_of(&doomed), 500, "nothing was written yet, so the client is told");
    assert_eq!(server.handler.connection_count(), 0);
    let mut healthy = subscribe(server.addr, "/events", &[]);
    server.handler.send_all(Event::data("fine")).unwrap();
    assert_eq!(next_event(healthy.events()).data, "fine");
}

#[test]
fn a_blocking_authenticator_holds_only_its_own_connection() {
    let (release, gate) = mpsc::channel::<()>();
    let gate = Mutex::new(gate);
    let auth = move |request: &Request| {
        if request.header("x-slow").is_some() {
            let _ = gate.lock().unwrap().recv_timeout(TIMEOUT);
            return Err(Rejection::forbidden("slow"));
        }
        Ok(None)
    };
    let server =
        start_with(SseHandler::builder(Config::default()).authenticator(auth), ServerConfig::default());
    let mut slow = TcpStream::connect(server.addr).unwrap();
    slow.write_all(b"GET /events HTTP/1.1\r\nX-Slow: 1\r\n\r\n").unwrap();
    // While that authentication blocks, others come and go.
    let mut healthy = subscribe(server.addr, "/events", &[]);
    server.handler.send_all(Event::data("not blocked")).unwrap();
    assert_eq!(next_event(healthy.events()).data, "not blocked");
    release.send(()).unwrap();
    assert_eq!(status_of(&read_until_close(&mut slow)), 403);
}

#[test]
fn counters_follow_what_happened() {
    let server = start(Config::default().heartbeat(Duration::from_millis(30)).history_capacity(2));
    let ids: Vec<String> =
        (1..=3).map(|n| server.handler.send_all(Event::data(n.to_string())).unwrap().id.unwrap()).collect();
    let mut resumed = subscribe(server.addr, "/events", &[("Last-Event-ID", &ids[1])]);
    assert_eq!(next_event(resumed.events()).data, "3");
    let mut missed = subscribe(server.addr, "/events", &[("Last-Event-ID", &ids[0])]);
    assert_eq!(next_event(missed.events()).data, "2");
    assert!(matches!(next_item(resumed.events()), Item::Comment(_)), "a heartbeat");
    // Counted once its write has returned, which may be just after the client read it.
    wait_until("the heartbeat and the replays are counted", || {
        let stats = server.handler.stats();
        stats.heartbeats >= 1 && stats.events_sent >= 3
    });
    let stats = server.handler.stats();
    assert_eq!((stats.connections_opened, stats.replays_served, stats.replays_missed), (2, 1, 1));
    assert_eq!(stats.events_sent, 3, "one replayed to the first, two to the second");
    let id = server.handler.connection_ids()[0];
    assert_eq!(server.handler.connection_stats(id).unwrap().sent, 1);
}
