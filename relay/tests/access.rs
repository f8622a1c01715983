//! Who may do what: `--token`, `--allow-origin`, bad requests, the operator's limits, and the page.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::*;

#[test]
fn a_token_guards_publishing_but_not_subscribing() {
    let relay = Relay::start(&["--token", "s3cret"]);
    let mut stream = relay.subscribe("/events", &[]);
    let (status, head, _) = relay.request("POST", "/publish?data=anonymous", &[], None);
    assert_eq!(status, 401);
    assert_eq!(header(&head, "WWW-Authenticate"), Some("Bearer"));
    let wrong = [("Authorization", "Bearer guess")];
    assert_eq!(relay.publish("?data=wrong", &wrong, None).0, 401);
    let right = [("Authorization", "Bearer s3cret")];
    assert_eq!(relay.publish("?data=authorized", &right, None).0, 200);
    assert_eq!(relay.take_events(stream.events(), 1), triples(&[("1", "message", "authorized")]));
}

#[test]
fn the_token_can_come_from_the_environment() {
    // Kept out of the process list: SSE_RELAY_TOKEN instead of --token.
    let relay = Relay::start_with_env(&[], &[("SSE_RELAY_TOKEN", "from-env")]);
    assert_eq!(relay.publish("?data=x", &[], None).0, 401);
    assert_eq!(relay.publish("?data=x", &[("Authorization", "Bearer from-env")], None).0, 200);
}

#[test]
fn an_allowed_origin_gets_cors_headers_and_preflights() {
    let relay = Relay::start(&["--allow-origin", "http://app.test"]);
    let from_app = [("Origin", "http://app.test")];
    let response = relay.subscribe("/events", &from_app);
    assert_eq!(response.header("Access-Control-Allow-Origin"), Some("http://app.test"));
    // The preflight a browser sends before reconnecting cross-origin with a Last-Event-ID.
    let preflight = [
        ("Origin", "http://app.test"),
        ("Access-Control-Request-Method", "GET"),
        ("Access-Control-Request-Headers", "last-event-id"),
    ];
    let (status, head, _) = relay.request("OPTIONS", "/events", &preflight, None);
    assert_eq!(status, 204);
    assert_eq!(header(&head, "Access-Control-Allow-Origin"), Some("http://app.test"));
    let allowed = header(&head, "Access-Control-Allow-Headers").unwrap_or_default().to_ascii_lowercase();
    assert!(allowed.split(", ").any(|h| h == "last-event-id"), "{allowed}");

    let elsewhere = relay.subscribe("/events", &[("Origin", "http://other.test")]);
    assert_eq!(elsewhere.header("Access-Control-Allow-Origin"), None);
}

#[test]
fn without_allow_origin_there_are_no_cors_headers() {
    let relay = Relay::start(&[]);
    let response = relay.subscribe("/events", &[("Origin", "http://app.test")]);
    assert_eq!(response.header("Access-Control-Allow-Origin"), None);
}

#[test]
fn bad_requests_get_clear_answers_and_disturb_no_one() {
    let relay = Relay::start(&[]);
    let mut stream = relay.subscribe("/events", &[]);
    assert_eq!(relay.request("GET", "/nowhere", &[], None).0, 404);
    assert_eq!(relay.request("GET", "/publish", &[], None).0, 405);
    let (status, head, _) = relay.request("DELETE", "/events", &[], None);
    assert_eq!((status, header(&head, "Allow")), (405, Some("GET, OPTIONS")));
    assert_eq!(relay.publish("?data=x&retry=soon", &[], None).0, 400);
    assert_eq!(relay.publish("?data=x&id=a%0Ab", &[], None).0, 400, "a line break in an id");

    let mut raw = TcpStream::connect(relay.addr).unwrap();
    raw.set_read_timeout(Some(TIMEOUT)).unwrap();
    raw.write_all(b"NOT AN HTTP REQUEST\r\n\r\n").unwrap();
    let mut answer = String::new();
    raw.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer:?}");

    relay.publish("?data=still%20here", &[], None);
    assert_eq!(relay.take_events(stream.events(), 1), triples(&[("1", "message", "still here")]));
}

#[test]
fn max_connections_turns_away_the_extra_client() {
    let relay = Relay::start(&["--max-connections", "1"]);
    let _only = relay.subscribe("/events", &[]);
    // A stream over the limit gets 200 (any other status makes EventSource give up for good) with
    // only a `retry:` hint, then the end; other requests get 503.
    let (status, _, body) = relay.request("GET", "/events", &[], None);
    assert_eq!(status, 200);
    assert!(body.starts_with("retry: "), "{body:?}");
    assert_eq!(relay.request("GET", "/", &[], None).0, 503);
    // The log names the client by its address.
    relay.wait_for_log("connection limit (1) reached; turning away 127.0.0.1:");
}

#[test]
fn max_connections_per_ip_turns_away_a_second_connection_from_one_address() {
    let relay = Relay::start(&["--max-connections-per-ip", "1"]);
    let _only = relay.subscribe("/events", &[]);
    let (status, _, body) = relay.request("GET", "/events", &[], None);
    assert_eq!(status, 200);
    assert!(body.starts_with("retry: "), "{body:?}");
    assert_eq!(relay.request("GET", "/", &[], None).0, 503);
}

#[test]
fn without_a_token_pages_of_other_origins_cannot_publish() {
    let relay = Relay::start(&[]);
    let mut stream = relay.subscribe("/events", &[]);
    // What a page elsewhere can make its visitor's browser send without asking first.
    let evil = [("Origin", "http://evil.test"), ("Content-Type", "text/plain")];
    let (status, answer) = relay.publish("", &evil, Some(b"forged"));
    assert_eq!(status, 403, "{answer}");
    assert_eq!(relay.publish("", &[("Origin", "null")], Some(b"sandboxed")).0, 403);
    // The relay's own page, and clients that are not pages at all, publish as before.
    let own = format!("http://{}", relay.addr);
    assert_eq!(relay.publish("", &[("Origin", own.as_str())], Some(b"from the page")).0, 200);
    assert_eq!(relay.publish("?data=from%20curl", &[], None).0, 200);
    let expected = triples(&[("1", "message", "from the page"), ("2", "message", "from curl")]);
    assert_eq!(relay.take_events(stream.events(), 2), expected, "nothing forged was published");
}

#[test]
fn allow_origin_and_a_token_let_other_origins_publish() {
    let relay = Relay::start(&["--allow-origin", "http://app.test"]);
    assert_eq!(relay.publish("?data=a", &[("Origin", "http://app.test")], None).0, 200);
    assert_eq!(relay.publish("?data=b", &[("Origin", "http://evil.test")], None).0, 403);
    let relay = Relay::start(&["--token", "s3cret"]);
    let with_token = [("Origin", "http://elsewhere.test"), ("Authorization", "Bearer s3cret")];
    assert_eq!(relay.publish("?data=c", &with_token, None).0, 200, "the token is the proof");
}

#[cfg(target_os = "linux")]
#[test]
fn the_relay_raises_its_open_file_limit_to_the_hard_one() {
    let relay = Relay::start_with_open_file_limit(256, &[]);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", relay.pid())).unwrap();
    let open_files = limits.lines().find(|line| line.starts_with("Max open files")).unwrap();
    let numbers: Vec<&str> = open_files.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers[0], numbers[1], "soft and hard: {open_files}");
    assert_ne!(numbers[0], "256", "{open_files}");
}

#[test]
fn a_client_that_falls_off_the_history_is_dropped() {
    let relay = Relay::start(&["--history", "4"]);
    let mut stalled = relay.subscribe("/events", &[]);
    // The stalled client reads nothing while far more than the log holds is published.
    let big = vec![b'x'; 1_000_000];
    for _ in 0..32 {
        let (status, answer) = relay.publish("", &[], Some(&big));
        assert_eq!(status, 200, "{answer}");
    }
    // It gets what was already under way, without a gap, then the stream ends short of the rest.
    let mut received = Vec::new();
    while let Some(event) = stalled.events().next_event().expect("the stream ends within the timeout") {
        assert_eq!(event.data.len(), big.len());
        received.push(event.last_event_id);
    }
    assert!(!received.is_empty() && received.len() < 32, "received {} of 32", received.len());
    let expected: Vec<String> = (1..=received.len() as u64).map(|n| relay.id(n)).collect();
    assert_eq!(received, expected);
    relay.wait_for_log("events it had not read left the log");
}

#[test]
fn the_live_page_is_served_at_the_root() {
    let relay = Relay::start(&["--event", "log"]);
    let (status, head, page) = relay.request("GET", "/", &[], None);
    assert_eq!(status, 200);
    assert_eq!(header(&head, "Content-Type"), Some("text/html; charset=utf-8"));
    assert!(page.contains("fetch(streamPath"), "{page}");
    assert!(page.contains(r#""stdinType":"log""#), "the page names the stdin type");
    let (status, _, body) = relay.request("HEAD", "/", &[], None);
    assert_eq!((status, body.as_str()), (200, ""));
}
