//! Requests built to hurt: each gets a defined answer, and nothing else is disturbed.

mod common;

use std::io::Write;
use std::net::TcpStream;

use common::*;
use sse_handler::{Config, Error, Event, FieldProblem, SseHandler};

#[test]
fn a_thousand_headers_is_431() {
    let server = start(Config::default());
    let mut request = String::from("GET /events HTTP/1.1\r\n");
    for i in 0..1000 {
        request.push_str(&format!("X-H{i}: v\r\n"));
    }
    request.push_str("\r\n");
    assert_eq!(status_of(&raw_exchange(server.addr, request.as_bytes())), 431);
}

#[test]
fn a_one_mebibyte_header_line_is_431() {
    let server = start(Config::default());
    let request = format!("GET /events HTTP/1.1\r\nX-Big: {}\r\n\r\n", "b".repeat(1 << 20));
    assert_eq!(status_of(&raw_exchange(server.addr, request.as_bytes())), 431);
}

#[test]
fn a_request_line_that_never_ends_is_431() {
    let server = start(Config::default());
    let mut stream = TcpStream::connect(server.addr).unwrap();
    // No line break, ever: the head limit, not the memory, decides.
    let chunk = vec![b'A'; 64 * 1024];
    for _ in 0..16 {
        if stream.write_all(&chunk).is_err() {
            break;
        }
    }
    assert_eq!(status_of(&read_until_close(&mut stream)), 431);
}

#[test]
fn a_huge_last_event_id_is_431_and_control_bytes_are_400() {
    let server = start(Config::default());
    let huge = format!("GET /events HTTP/1.1\r\nLast-Event-ID: {}\r\n\r\n", "7".repeat(1 << 20));
    assert_eq!(status_of(&raw_exchange(server.addr, huge.as_bytes())), 431);
    let control = b"GET /events HTTP/1.1\r\nLast-Event-ID: 1\x01\x02\r\n\r\n";
    assert_eq!(status_of(&raw_exchange(server.addr, control)), 400);
    let nul = b"GET /events HTTP/1.1\r\nLast-Event-ID: 1\x002\r\n\r\n";
    assert_eq!(status_of(&raw_exchange(server.addr, nul)), 400);
}

#[test]
fn header_injection_through_configured_headers_is_refused_at_configuration() {
    for (name, value) in [("X-Ok", "a\r\nSet-Cookie: s=1"), ("X-Ok", "a\nb"), ("X\rBad", "v")] {
        let err = SseHandler::new(Config::default().header(name, value)).unwrap_err();
        assert!(matches!(err, Error::InvalidConfig(_)), "{err}");
    }
}

#[test]
fn ids_that_force_a_cors_preflight_can_be_refused() {
    let server = start(Config::default().cors_safe_ids(true));
    let preflighting = Event::builder().id("urn:uuid:42").data("x").build().unwrap();
    assert!(matches!(
        server.handler.send_all(preflighting),
        Err(Error::InvalidField { problem: FieldProblem::NotCorsSafe, .. })
    ));
    let (status, _) = publish(server.addr, &format!("?data=x&id={}", "9".repeat(129)), &[], None);
    assert_eq!(status, 400);
    assert!(server.handler.send_all(Event::builder().id("evt-42").data("x").build().unwrap()).is_ok());
}

#[test]
fn injection_through_event_fields_is_impossible() {
    let server = start(Config::default());
    let mut response = subscribe(server.addr, "/events", &[]);
    // Data holding field syntax stays data; the id and type cannot hold a line break at all.
    let id =
        server.handler.send_all(Event::data("x\nid: forged\nevent: admin\r\rdata: y")).unwrap().id.unwrap();
    let event = next_event(response.events());
    assert_eq!(event.data, "x\nid: forged\nevent: admin\n\ndata: y");
    assert_eq!((event.event_type.as_str(), event.last_event_id.as_str()), ("message", id.as_str()));
    let (status, _) = publish(server.addr, "?data=x&event=a%0Aid%3A%20forged", &[], None);
    assert_eq!(status, 400);
}

#[test]
fn a_subscription_names_each_type_once_and_at_most_64_of_them() {
    let server = start(Config::default());
    let many: String = (0..65).map(|n| format!("event=t{n}&")).collect();
    let answer = raw_exchange(server.addr, format!("GET /events?{many} HTTP/1.1\r\n\r\n").as_bytes());
    assert_eq!(status_of(&answer), 400, "{answer}");
    // Repeats count once: 64 types named ten times each is a subscription of 64.
    let repeated: String = (0..640).map(|n| format!("event=t{}&", n % 64)).collect();
    let mut stream = subscribe(server.addr, &format!("/events?{repeated}"), &[]);
    let info = server.handler.connection_info(server.handler.connection_ids()[0]).unwrap();
    let types = info.event_types().unwrap();
    assert_eq!(types.len(), 64);
    assert!(types.windows(2).all(|pair| pair[0] < pair[1]), "sorted, each once");
    server.handler.send_all(Event::builder().event("t63").data("wanted").build().unwrap()).unwrap();
    server.handler.send_all(Event::builder().event("t64").data("not").build().unwrap()).unwrap();
    server.handler.send_all(Event::builder().event("t0").data("wanted too").build().unwrap()).unwrap();
    assert_eq!(next_event(stream.events()).data, "wanted");
    assert_eq!(next_event(stream.events()).data, "wanted too");
}
