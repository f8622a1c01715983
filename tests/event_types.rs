//! The allowed event types (`Config::event_types`): what an untyped event is, and types allowed
//! while the handler runs.

mod common;

use common::*;
use sse_handler::{Config, Error, Event, SseHandler};

fn typed(event_type: &str, data: &str) -> Event {
    Event::builder().event(event_type).data(data).build().unwrap()
}

#[test]
fn an_untyped_event_is_a_message_whatever_the_allowed_types() {
    let server = start(Config::default().event_types(["news"]));
    // Untyped events may be sent, so their type may be subscribed to.
    let mut messages = subscribe(server.addr, "/events?event=message", &[]);
    server.handler.send_all(typed("news", "not for this subscriber")).unwrap();
    server.handler.send_all(Event::data("untyped")).unwrap();
    server.handler.send_all(typed("message", "typed as message")).unwrap();
    assert_eq!(next_event(messages.events()).data, "untyped");
    assert_eq!(next_event(messages.events()).data, "typed as message");

    let answer = raw_exchange(server.addr, b"GET /events?event=weather HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status_of(&answer), 404, "other types are still refused");
    assert!(server.handler.has_event_type("message"));
    assert!(!server.handler.has_event_type("weather"));
}

#[test]
fn event_types_registered_while_running_can_be_subscribed_to_and_sent() {
    let server = start(Config::default().event_types(["news"]));
    let request = b"GET /events?event=weather HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_eq!(status_of(&raw_exchange(server.addr, request)), 404);
    assert!(matches!(server.handler.send_all(typed("weather", "rain")), Err(Error::UnknownEventType(_))));

    assert!(server.handler.register_event_type("weather").unwrap(), "a new type");
    assert!(!server.handler.register_event_type("weather").unwrap(), "already there");
    assert!(!server.handler.register_event_type("message").unwrap(), "always there");
    assert!(server.handler.has_event_type("weather"));

    let mut weather = subscribe(server.addr, "/events?event=weather", &[]);
    server.handler.send_all(typed("news", "not for this subscriber")).unwrap();
    server.handler.send_all(typed("weather", "rain")).unwrap();
    assert_eq!(next_event(weather.events()).data, "rain");
    assert_eq!(server.handler.config().event_types.as_deref(), Some(&["news".to_owned()][..]));
}

#[test]
fn a_type_no_event_can_carry_is_refused() {
    let handler = SseHandler::new(Config::default().event_types(["news"])).unwrap();
    for bad in ["", "two\nlines", "cr\r"] {
        assert!(matches!(handler.register_event_type(bad), Err(Error::InvalidConfig(_))), "{bad:?}");
        assert!(!handler.has_event_type(bad));
    }
}

#[test]
fn without_a_list_every_type_is_allowed_and_registering_changes_nothing() {
    let handler = SseHandler::new(Config::default()).unwrap();
    assert!(handler.has_event_type("anything"));
    assert!(!handler.register_event_type("anything").unwrap());
    handler.send_all(typed("other", "still allowed")).unwrap();
}
