//! The publish endpoint and `?event=` subscriptions (Go websse's model).

mod common;

use common::*;
use sse_handler::{BearerToken, Config, Error, Event, ServerConfig, SseHandler};

#[test]
fn publish_from_query_parameters() {
    let server = start(Config::default());
    let mut response = subscribe(server.addr, "/events", &[]);
    let (status, body) =
        publish(server.addr, "?event=greeting&data=hello%20there&id=g1&retry=1500", &[], None);
    assert_eq!((status, body.as_str()), (200, "{\"id\":\"g1\",\"connections\":1}\n"));
    let event = next_event(response.events());
    assert_eq!(
        (event.event_type.as_str(), event.data.as_str(), event.last_event_id.as_str()),
        ("greeting", "hello there", "g1")
    );
    assert_eq!(response.events().retry(), Some(std::time::Duration::from_millis(1500)));
}

#[test]
fn publish_body_as_data_keeps_its_lines() {
    let server = start(Config::default());
    let mut response = subscribe(server.addr, "/events", &[]);
    let (status, body) = publish(server.addr, "", &[], Some(b"line one\r\nline two\n"));
    let event = next_event(response.events());
    assert_eq!(event.data, "line one\nline two\n");
    let answer = format!("{{\"id\":\"{}\",\"connections\":1}}\n", event.last_event_id);
    assert_eq!((status, body), (200, answer));
    // A chunked body works as well.
    let request =
        b"POST /publish HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n";
    assert_eq!(status_of(&raw_exchange(server.addr, request)), 200);
    assert_eq!(next_event(response.events()).data, "abcdef");
}

#[test]
fn publish_endpoint_has_its_own_authenticator() {
    let handler = SseHandler::new(Config::default()).unwrap();
    let handle = sse_handler::Server::bind("127.0.0.1:0")
        .unwrap()
        .stream("/events", &handler)
        .publish_with("/publish", &handler, BearerToken::new("pub-token"))
        .spawn()
        .unwrap();
    let addr = handle.local_addr();
    let mut response = subscribe(addr, "/events", &[]);
    let (status, body) = publish(addr, "?data=nope", &[], None);
    assert_eq!((status, body.as_str()), (401, "a bearer token is required\n"));
    let (status, _) = publish(addr, "?data=nope", &[("Authorization", "Bearer wrong")], None);
    assert_eq!(status, 401);
    let (status, _) = publish(addr, "?data=yes", &[("Authorization", "Bearer pub-token")], None);
    assert_eq!(status, 200);
    assert_eq!(next_event(response.events()).data, "yes");
    handle.shutdown();
}

#[test]
fn event_type_filtering() {
    let server = start(Config::default());
    let mut only_a = subscribe(server.addr, "/events?event=a", &[]);
    let mut a_and_message = subscribe(server.addr, "/events?event=a&event=message", &[]);
    let mut everything = subscribe(server.addr, "/events", &[]);
    for (event_type, data) in [(Some("a"), "1"), (Some("b"), "2"), (None, "3"), (Some("a"), "4")] {
        let mut event = Event::builder().data(data);
        if let Some(t) = event_type {
            event = event.event(t);
        }
        server.handler.send_all(event.build().unwrap()).unwrap();
    }
    server.handler.send_all(Event::data("end")).unwrap();
    let collect = |response: &mut sse_handler::client::ReceivedResponse, n: usize| -> Vec<String> {
        (0..n).map(|_| next_event(response.events()).data).collect()
    };
    assert_eq!(collect(&mut only_a, 2), ["1", "4"]);
    assert_eq!(collect(&mut a_and_message, 4), ["1", "3", "4", "end"], "no type means `message`");
    assert_eq!(collect(&mut everything, 5), ["1", "2", "3", "4", "end"]);
}

#[test]
fn allowed_event_types_are_enforced() {
    let server = start(Config::default().event_types(["news", "sports"]));
    let answer = raw_exchange(server.addr, b"GET /events?event=weather HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status_of(&answer), 404);
    let _ok = subscribe(server.addr, "/events?event=news", &[]);
    let weather = Event::builder().event("weather").data("rain").build().unwrap();
    assert!(matches!(server.handler.send_all(weather), Err(Error::UnknownEventType(t)) if t == "weather"));
    let news = Event::builder().event("news").data("x").build().unwrap();
    assert_eq!(server.handler.send_all(news).unwrap().connections, 1);
}

#[test]
fn handler_assigned_ids_only_when_none_given() {
    let server = start(Config::default());
    let first: u64 = server.handler.send_all(Event::data("a")).unwrap().id.unwrap().parse().unwrap();
    let own = Event::builder().id("mine").data("b").build().unwrap();
    assert_eq!(server.handler.send_all(own).unwrap().id.as_deref(), Some("mine"));
    assert_eq!(server.handler.send_all(Event::comment("c")).unwrap().id, None, "comments get no id");
    let next = server.handler.send_all(Event::data("d")).unwrap().id.unwrap();
    assert!(next.parse::<u64>().unwrap() > first, "numbered in publish order");
    let server = start_with(SseHandler::builder(Config::default().auto_ids(false)), ServerConfig::default());
    assert_eq!(server.handler.send_all(Event::data("a")).unwrap().id, None);
}
