//! Authenticators on streams, and cross-origin subscription (CORS, including the preflight).

mod common;

use common::*;
use sse_handler::{BearerToken, Config, Event, Rejection, Request, ServerConfig, SseHandler};

#[test]
fn authenticator_refusal_gets_its_status() {
    let builder = SseHandler::builder(Config::default()).authenticator(BearerToken::new("t0ken"));
    let server = start_with(builder, ServerConfig::default());
    let answer = raw_exchange(server.addr, b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status_of(&answer), 401);
    assert!(answer.contains("\r\nWWW-Authenticate: Bearer\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\na bearer token is required\n"), "{answer}");
    assert_eq!(server.handler.connection_count(), 0);

    let custom = |request: &Request| {
        if request.header("x-team") == Some("blue") {
            Ok(Some("blue-team".into()))
        } else {
            Err(Rejection::forbidden("blue team only"))
        }
    };
    let server =
        start_with(SseHandler::builder(Config::default()).authenticator(custom), ServerConfig::default());
    let answer = raw_exchange(server.addr, b"GET /events HTTP/1.1\r\nX-Team: red\r\n\r\n");
    assert_eq!(status_of(&answer), 403);
}

#[test]
fn authenticator_names_the_user_for_hooks_and_info() {
    let builder = SseHandler::builder(Config::default())
        .authenticator(BearerToken::new("anonymous-token").with_token("alice-token", "alice"))
        .on_connect(|conn| {
            let who = conn.info().user().unwrap_or("guest").to_owned();
            conn.send(Event::data(format!("hello {who}")));
        });
    let server = start_with(builder, ServerConfig::default());
    let mut alice = subscribe(server.addr, "/events", &[("Authorization", "Bearer alice-token")]);
    assert_eq!(next_event(alice.events()).data, "hello alice");
    let mut guest = subscribe(server.addr, "/events", &[("Authorization", "Bearer anonymous-token")]);
    assert_eq!(next_event(guest.events()).data, "hello guest");
    let users: Vec<Option<String>> = server
        .handler
        .connection_ids()
        .into_iter()
        .map(|id| server.handler.connection_info(id).unwrap().user().map(str::to_owned))
        .collect();
    assert_eq!(users, [Some("alice".to_owned()), None]);
}

#[test]
fn cors_preflight_allows_last_event_id() {
    let server = start(Config::default().allow_origin("https://app.example"));
    let preflight = b"OPTIONS /events HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example\r\n\
        Access-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: last-event-id\r\n\r\n";
    let answer = raw_exchange(server.addr, preflight);
    assert_eq!(status_of(&answer), 204, "{answer}");
    for header in [
        "Access-Control-Allow-Origin: https://app.example",
        "Vary: Origin",
        "Access-Control-Allow-Methods: GET, OPTIONS",
        "Access-Control-Allow-Headers: Last-Event-ID, Cache-Control, Authorization",
    ] {
        assert!(answer.contains(&format!("\r\n{header}\r\n")), "missing {header}: {answer}");
    }
    // Another origin gets no CORS headers, so its browser refuses.
    let other = b"OPTIONS /events HTTP/1.1\r\nOrigin: https://evil.example\r\n\r\n";
    let answer = raw_exchange(server.addr, other);
    assert!(!answer.contains("Access-Control-Allow-Origin"), "{answer}");
}

#[test]
fn cors_headers_on_the_stream() {
    let server = start(Config::default().allow_origin("https://app.example"));
    let allowed = subscribe(server.addr, "/events", &[("Origin", "https://app.example")]);
    assert_eq!(allowed.header("access-control-allow-origin"), Some("https://app.example"));
    let other = subscribe(server.addr, "/events", &[("Origin", "https://other.example")]);
    assert_eq!(other.header("access-control-allow-origin"), None);

    let server = start(Config::default().allow_origin("*"));
    let any = subscribe(server.addr, "/events", &[("Origin", "https://any.example")]);
    assert_eq!(any.header("access-control-allow-origin"), Some("*"));
}
