//! Serving streams from servers the user already runs: a hand-written accept loop, a request the host
//! parsed itself, and tiny_http's raw response writer.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::thread;

use common::*;
use sse_handler::{CloseReason, Config, Event, Request, SseHandler};

#[test]
fn serve_a_socket_from_a_hand_written_accept_loop() {
    let handler = SseHandler::new(Config::default()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = {
        let handler = handler.clone();
        thread::spawn(move || {
            let mut served = Vec::new();
            for stream in listener.incoming().take(2) {
                let handler = handler.clone();
                served.push(thread::spawn(move || handler.serve(stream.unwrap())));
            }
            served.into_iter().map(|t| t.join().unwrap()).collect::<Vec<_>>()
        })
    };
    let mut client = subscribe(addr, "/anything", &[]);
    handler.send_all(Event::data("from the embedding")).unwrap();
    assert_eq!(next_event(client.events()).data, "from the embedding");
    // A bad request on the same loop is answered by the handler.
    assert_eq!(status_of(&raw_exchange(addr, b"POST /x HTTP/1.1\r\n\r\n")), 405);
    handler.stop_one(handler.connection_ids()[0]).unwrap();
    let results = acceptor.join().unwrap();
    assert!(matches!(results[0], Ok(Some(CloseReason::Stopped))), "{results:?}");
    assert!(matches!(results[1], Err(sse_handler::Error::MethodNotAllowed { .. })), "{results:?}");
}

#[test]
fn accept_a_request_the_host_already_parsed() {
    let handler = SseHandler::new(Config::default()).unwrap();
    let one = handler.send_all(Event::data("one")).unwrap().id.unwrap();
    handler.send_all(Event::data("two")).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let host = {
        let handler = handler.clone();
        thread::spawn(move || {
            let (stream, peer) = listener.accept().unwrap();
            // The host reads the head its own way...
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let target = request_line.split(' ').nth(1).unwrap().to_owned();
            let mut request = Request::new("GET", target).with_peer(peer);
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                let (name, value) = line.split_once(':').unwrap();
                request = request.with_header(name, value.trim());
            }
            // ...and hands over the request and its socket.
            handler.accept(stream, &request)
        })
    };
    let mut client = subscribe(addr, "/stream", &[("Last-Event-ID", &one)]);
    assert_eq!(next_event(client.events()).data, "two");
    let info = handler.connection_info(handler.connection_ids()[0]).unwrap();
    assert_eq!(info.path(), "/stream");
    assert!(info.peer().is_some());
    handler.stop_one(info.id()).unwrap();
    assert!(matches!(host.join().unwrap(), Ok(Some(CloseReason::Stopped))));
}

#[test]
fn tiny_http_raw_writer_streams_events_as_they_are_published() {
    let handler = SseHandler::new(Config::default()).unwrap();
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let addr = server.server_addr().to_ip().unwrap();
    let host = {
        let handler = handler.clone();
        thread::spawn(move || {
            let request = server.recv().unwrap();
            let mut ours = Request::new(request.method().as_str(), request.url());
            for header in request.headers() {
                ours = ours.with_header(header.field.as_str().as_str(), header.value.as_str());
            }
            let writer = request.into_writer();
            handler.accept_writer(writer, &ours)
        })
    };
    let mut client = subscribe(addr, "/events", &[]);
    // Each event arrives on its own, right after it is published: nothing waits for a buffer to fill.
    for n in 0..3 {
        handler.send_all(Event::data(format!("tiny {n}"))).unwrap();
        assert_eq!(next_event(client.events()).data, format!("tiny {n}"));
    }
    handler.stop_one(handler.connection_ids()[0]).unwrap();
    assert!(matches!(host.join().unwrap(), Ok(Some(CloseReason::Stopped))));
}
