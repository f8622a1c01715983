//! An accept loop of the user's own that reads each request head with the library's limits and
//! routes it: the stream's path to the handler, anything else to a 404 of its own.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::*;
use sse_handler::{CloseReason, Config, Error, Event, Phase, Request, RequestLimits, Response, SseHandler};

/// What the user's loop did with one connection.
#[derive(Debug)]
enum Routed {
    Streamed(sse_handler::Result<Option<CloseReason>>),
    NotFound { path: String, leftover: Vec<u8> },
    Unread(Error),
}

/// Starts the user's accept loop: `/events` goes to the handler, any other path gets a 404, and
/// each connection's outcome comes back on the channel.
fn start_routing_loop(handler: &SseHandler) -> (SocketAddr, mpsc::Receiver<Routed>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (outcomes, outcome) = mpsc::channel();
    let handler = handler.clone();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let (stream, handler, outcomes) = (stream.unwrap(), handler.clone(), outcomes.clone());
            thread::spawn(move || {
                let _ = outcomes.send(route(&handler, stream));
            });
        }
    });
    (addr, outcome)
}

fn route(handler: &SseHandler, stream: TcpStream) -> Routed {
    match Request::read_from(&stream, &handler.config().request_limits) {
        Ok((request, _)) if request.path() == "/events" => Routed::Streamed(handler.accept(stream, &request)),
        Ok((request, leftover)) => {
            Response::new(404).with_body("not found\n").send_and_close(&stream).expect("answer the 404");
            Routed::NotFound { path: request.path().to_owned(), leftover }
        }
        Err(err) => Routed::Unread(err),
    }
}

fn next_outcome(outcome: &mpsc::Receiver<Routed>) -> Routed {
    outcome.recv_timeout(TIMEOUT).expect("the loop finishes with the connection within the timeout")
}

fn small_limits() -> Config {
    Config::default()
        .request_limits(RequestLimits::default().max_head_bytes(256).read_timeout(Duration::from_millis(300)))
}

#[test]
fn the_stream_path_streams_and_the_favicon_gets_a_404() {
    let handler = SseHandler::new(Config::default()).unwrap();
    let (addr, outcome) = start_routing_loop(&handler);

    let answer = raw_exchange(addr, b"GET /favicon.ico HTTP/1.1\r\nHost: test\r\n\r\n");
    assert_eq!(
        answer,
        "HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\nConnection: close\r\n\r\nnot found\n"
    );
    assert!(matches!(next_outcome(&outcome), Routed::NotFound { path, .. } if path == "/favicon.ico"));
    assert_eq!(handler.connection_count(), 0, "no stream was opened for the favicon");

    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(b"GET /events HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let head = String::from_utf8(read_until(&mut stream, b"\r\n\r\n: open\n\n")).unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"), "{head}");
    let id = handler.send_all(Event::data("routed")).unwrap().id.unwrap();
    read_until(&mut stream, format!("id: {id}\ndata: routed\n\n").as_bytes());

    handler.stop_one(handler.connection_ids()[0]).unwrap();
    assert!(matches!(next_outcome(&outcome), Routed::Streamed(Ok(Some(CloseReason::Stopped)))));
}

#[test]
fn bytes_past_the_head_come_back_with_the_request() {
    let handler = SseHandler::new(Config::default()).unwrap();
    let (addr, outcome) = start_routing_loop(&handler);
    // One write: the head and the body arrive together, and the head reader reads both.
    let answer = raw_exchange(addr, b"POST /upload HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(status_of(&answer), 404);
    match next_outcome(&outcome) {
        Routed::NotFound { path, leftover } => {
            assert_eq!(path, "/upload");
            assert_eq!(leftover, b"hello");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_head_that_cannot_be_read_is_answered_as_serve_answers_it() {
    let handler = SseHandler::new(small_limits()).unwrap();
    let (addr, outcome) = start_routing_loop(&handler);

    let answer = raw_exchange(addr, b"GE T / HTTP/1.1\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{answer}");
    assert!(matches!(next_outcome(&outcome), Routed::Unread(Error::BadRequest(_))));

    let long = format!("GET /events HTTP/1.1\r\nX-Long: {}\r\n\r\n", "a".repeat(300));
    let answer = raw_exchange(addr, long.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"), "{answer}");
    assert!(matches!(next_outcome(&outcome), Routed::Unread(Error::HeadTooLarge { limit: 256 })));

    // A head that never completes: answered 408 at the read timeout.
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.write_all(b"GET /events HTTP/1.1\r\n").unwrap();
    slow.set_read_timeout(Some(TIMEOUT)).unwrap();
    let answer = read_until_close(&mut slow);
    assert!(answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{answer}");
    assert!(matches!(next_outcome(&outcome), Routed::Unread(Error::Timeout(Phase::ReadRequest))));
    assert_eq!(handler.connection_count(), 0);
}
