//! Shutting down ends every stream, joins every thread, and refuses what comes after.

mod common;

use std::time::{Duration, Instant};

use common::*;
use sse_handler::{Config, Error, Event, SseHandler};

#[test]
fn shutdown_ends_streams_and_joins_threads() {
    let mut server = start(Config::default());
    let mut clients: Vec<_> = (0..5).map(|_| subscribe(server.addr, "/events", &[])).collect();
    server.handler.send_all(Event::data("last words")).unwrap();
    let started = Instant::now();
    let report = server.shutdown();
    assert_eq!((report.forced, report.still_running), (0, 0));
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    for client in &mut clients {
        // Queued events are still delivered, then the stream ends.
        let events = read_to_end(client.events());
        assert_eq!(events.iter().map(|e| e.data.as_str()).collect::<Vec<_>>(), ["last words"]);
    }
    assert_eq!(server.handler.connection_count(), 0);
    assert!(matches!(server.handler.send_all(Event::data("late")), Err(Error::ShutDown)));
    assert!(std::net::TcpStream::connect(server.addr).is_err(), "the listener is closed");
}

#[test]
fn shutdown_is_bounded_even_with_a_stalled_client_and_a_slow_request() {
    // A log that holds all that is published, so the client stays stalled, not behind it.
    let config = Config::default().send_timeout(Duration::from_secs(300)).history_max_bytes(usize::MAX);
    let mut server = start(config);
    let _stalled = subscribe(server.addr, "/events", &[]);
    // A request that never finishes its head.
    let mut half = std::net::TcpStream::connect(server.addr).unwrap();
    std::io::Write::write_all(&mut half, b"GET /events HTTP/1.1\r\n").unwrap();
    // Fill the stalled client's socket so its thread is stuck in a write.
    let big = "z".repeat(1024 * 1024);
    for _ in 0..24 {
        server.handler.send_all(Event::data(&big)).unwrap();
    }
    let handle = server.handle.take().unwrap();
    let started = Instant::now();
    let report = handle.shutdown_within(Duration::from_millis(300));
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    assert_eq!(report.still_running, 0);
    assert_eq!(report.forced, 1, "only the stalled stream needed force");
    assert_eq!(status_of(&read_until_close(&mut half)), 503, "the unfinished request is told");
}

#[test]
fn a_shut_down_handler_refuses_new_streams_with_503() {
    let server = start(Config::default());
    server.handler.shutdown();
    let answer = raw_exchange(server.addr, b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status_of(&answer), 503);
}

#[test]
fn handler_shutdown_ends_streams_served_by_hand() {
    let handler = SseHandler::new(Config::default()).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = {
        let handler = handler.clone();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            handler.serve(stream)
        })
    };
    let mut client = subscribe(addr, "/events", &[]);
    assert_eq!(handler.shutdown(), 1);
    assert!(read_to_end(client.events()).is_empty());
    assert_eq!(serving.join().unwrap().unwrap(), Some(sse_handler::CloseReason::ShutDown));
}
