//! Every kind of bad request gets a defined answer, and costs only its own connection.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use sse_handler::{Config, Event, RequestLimits, ServerConfig, SseHandler};

fn small_limits() -> ServerConfig {
    ServerConfig::default().request_limits(
        RequestLimits::default()
            .max_head_bytes(1024)
            .max_body_bytes(100)
            .read_timeout(Duration::from_millis(300)),
    )
}

fn server() -> TestServer {
    start_with(SseHandler::builder(Config::default()), small_limits())
}

#[test]
fn malformed_http_is_400() {
    let server = server();
    for request in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET /events HTTP/9.9\r\n\r\n",
        b"GET /events HTTP/1.1\r\nNo colon here\r\n\r\n",
        b"GET /events HTTP/1.1\r\nX: a\0b\r\n\r\n",
        b"GET /events HTTP/1.1\r\nX: a\rb\r\n\r\n",
    ] {
        let answer = raw_exchange(server.addr, request);
        assert_eq!(status_of(&answer), 400, "{:?} -> {answer}", String::from_utf8_lossy(request));
    }
}

#[test]
fn unknown_path_is_404() {
    let server = server();
    let answer = raw_exchange(server.addr, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status_of(&answer), 404);
}

#[test]
fn wrong_method_is_405_with_allow() {
    let server = server();
    let answer = raw_exchange(server.addr, b"DELETE /events HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status_of(&answer), 405);
    assert!(answer.contains("\r\nAllow: GET, OPTIONS\r\n"), "{answer}");
    let answer = raw_exchange(server.addr, b"GET /publish HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status_of(&answer), 405);
    assert!(answer.contains("\r\nAllow: POST\r\n"), "{answer}");
}

#[test]
fn head_over_the_limit_is_431() {
    let server = server();
    let long_header = format!("GET /events HTTP/1.1\r\nX-Long: {}\r\n\r\n", "a".repeat(2000));
    assert_eq!(status_of(&raw_exchange(server.addr, long_header.as_bytes())), 431);
}

#[test]
fn body_over_the_limit_is_413() {
    let server = server();
    let (status, _) = publish(server.addr, "", &[], Some(&[b'x'; 101]));
    assert_eq!(status, 413);
    let chunked = b"POST /publish HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n65\r\n";
    let mut request = chunked.to_vec();
    request.extend_from_slice(&[b'x'; 0x65]);
    request.extend_from_slice(b"\r\n0\r\n\r\n");
    assert_eq!(status_of(&raw_exchange(server.addr, &request)), 413);
}

#[test]
fn ambiguous_bodies_are_400() {
    let server = server();
    let both = b"POST /publish HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc";
    assert_eq!(status_of(&raw_exchange(server.addr, both)), 400);
    let bad_chunk = b"POST /publish HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n";
    assert_eq!(status_of(&raw_exchange(server.addr, bad_chunk)), 400);
}

#[test]
fn a_client_that_sends_its_head_too_slowly_is_dropped() {
    let server = server();
    let mut slow = TcpStream::connect(server.addr).unwrap();
    slow.write_all(b"GET /events HTTP/1.1\r\n").unwrap();
    // The head never completes; after its read timeout the server answers 408 and closes.
    slow.set_read_timeout(Some(TIMEOUT)).unwrap();
    let answer = read_until_close(&mut slow);
    assert_eq!(status_of(&answer), 408, "{answer}");
    wait_until("the slow connection's thread ends", || {
        server.handle.as_ref().unwrap().connection_count() == 0
    });
}

#[test]
fn a_body_that_comes_too_slowly_gets_408() {
    let server = server();
    let mut slow = TcpStream::connect(server.addr).unwrap();
    slow.set_read_timeout(Some(TIMEOUT)).unwrap();
    slow.write_all(b"POST /publish HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc").unwrap();
    let answer = read_until_close(&mut slow);
    assert_eq!(status_of(&answer), 408, "{answer}");
}

#[test]
fn a_connection_that_sends_nothing_is_closed_without_an_answer() {
    // Browsers open connections ahead of need: a 408 there would be taken for the answer to the
    // request they send on it later.
    let server = server();
    let mut idle = TcpStream::connect(server.addr).unwrap();
    idle.set_read_timeout(Some(TIMEOUT)).unwrap();
    assert_eq!(read_until_close(&mut idle), "");
}

#[test]
fn bare_lf_line_ends_are_400() {
    let server = server();
    for request in [&b"GET /events HTTP/1.1\nHost: x\n\n"[..], b"GET /events HTTP/1.1\r\nX: a\n\r\n"] {
        let answer = raw_exchange(server.addr, request);
        assert_eq!(status_of(&answer), 400, "{:?} -> {answer}", String::from_utf8_lossy(request));
    }
    // The same head with CRLF is served.
    let answer = raw_exchange(server.addr, b"POST /publish?data=x HTTP/1.1\r\nX: a\r\n\r\n");
    assert_eq!(status_of(&answer), 200, "{answer}");
}

#[test]
fn a_trickling_client_is_cut_off_at_the_deadline_too() {
    let server = server();
    let mut slow = TcpStream::connect(server.addr).unwrap();
    slow.set_read_timeout(Some(TIMEOUT)).unwrap();
    // One byte at a time keeps every single read short; the deadline covers the whole head.
    let started = std::time::Instant::now();
    for byte in b"GET /events HTTP/1.1\r\nX-Slow: ".iter().cycle() {
        if slow.write_all(&[*byte]).is_err() || started.elapsed() > TIMEOUT {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(started.elapsed() < TIMEOUT, "the server must hang up on a trickling client");
}

#[test]
fn bad_requests_do_not_disturb_open_streams() {
    let server = server();
    let mut response = subscribe(server.addr, "/events", &[]);
    for request in [&b"GARBAGE\r\n\r\n"[..], b"GET /nope HTTP/1.1\r\n\r\n", b"PUT /events HTTP/1.1\r\n\r\n"] {
        raw_exchange(server.addr, request);
    }
    server.handler.send_all(Event::data("still here")).unwrap();
    assert_eq!(next_event(response.events()).data, "still here");
}

#[test]
fn invalid_events_are_refused_by_the_publish_endpoint() {
    let server = start(Config::default().event_types(["news"]));
    let (status, body) = publish(server.addr, "?data=x&id=a%0Ab", &[], None);
    assert_eq!(
        (status, body.as_str()),
        (400, "invalid event field `id`: contains a line break (CR or LF)\n")
    );
    let (status, _) = publish(server.addr, "?data=x&event=sports", &[], None);
    assert_eq!(status, 400);
    let (status, _) = publish(server.addr, "?data=x&retry=soon", &[], None);
    assert_eq!(status, 400);
    let (status, _) = publish(server.addr, "", &[("Content-Length", "2")], Some(&[0xff, 0xfe]));
    assert_eq!(status, 400, "a body that is not UTF-8");
}
