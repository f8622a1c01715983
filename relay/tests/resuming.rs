//! Clients that come back: replay from `Last-Event-ID` within `--history`, heartbeats on quiet
//! streams, and `--max-stream-secs` rotation.

mod common;

use std::time::Duration;

use common::*;
use sse_handler::client::Item;

#[test]
fn last_event_id_replays_what_came_after_it_then_live_events() {
    let mut relay = Relay::start(&[]);
    let mut watcher = relay.subscribe("/events", &[]);
    for n in 1..=5 {
        relay.send_line(&format!("event {n}"));
    }
    // Once the watcher has all five, they are all in the history.
    relay.take_events(watcher.events(), 5);
    let mut resumed = relay.subscribe("/events", &[("Last-Event-ID", &relay.id(2))]);
    relay.send_line("event 6");
    assert_eq!(
        relay.take_events(resumed.events(), 4),
        triples(&[
            ("3", "message", "event 3"),
            ("4", "message", "event 4"),
            ("5", "message", "event 5"),
            ("6", "message", "event 6"),
        ])
    );
}

#[test]
fn replay_respects_the_subscription() {
    let relay = Relay::start(&[]);
    let mut watcher = relay.subscribe("/events", &[]);
    for query in ["?event=a&data=1", "?event=b&data=2", "?event=a&data=3"] {
        relay.publish(query, &[], None);
    }
    relay.take_events(watcher.events(), 3);
    let mut only_a = relay.subscribe("/events?event=a", &[("Last-Event-ID", &relay.id(1))]);
    assert_eq!(relay.take_events(only_a.events(), 1), triples(&[("3", "a", "3")]));
}

#[test]
fn an_id_older_than_the_history_gets_everything_retained_and_a_note() {
    let mut relay = Relay::start(&["--history", "3"]);
    let mut watcher = relay.subscribe("/events", &[]);
    for n in 1..=6 {
        // One at a time: a watcher more than three events behind would fall off the log.
        relay.send_line(&format!("event {n}"));
        relay.take_events(watcher.events(), 1);
    }
    let mut late = relay.subscribe("/events", &[("Last-Event-ID", &relay.id(1))]);
    assert_eq!(
        next_item(late.events()),
        Item::Comment("last event id not found; replaying 3 retained events".into())
    );
    assert_eq!(
        relay.take_events(late.events(), 3),
        triples(&[("4", "message", "event 4"), ("5", "message", "event 5"), ("6", "message", "event 6")])
    );
}

#[test]
fn quiet_streams_get_heartbeats() {
    let relay = Relay::start(&["--heartbeat", "0.2"]);
    let mut stream = relay.subscribe("/events", &[]);
    assert_eq!(next_item(stream.events()), Item::Comment("heartbeat".into()));
    assert_eq!(next_item(stream.events()), Item::Comment("heartbeat".into()));
}

#[test]
fn old_streams_are_rotated_with_a_retry_hint_and_resume() {
    let mut relay = Relay::start(&["--max-stream-secs", "0.5", "--retry", "250"]);
    let mut stream = relay.subscribe("/events", &[]);
    relay.send_line("before rotation");
    // Everything published before the rotation arrives, then the hint, then the end of the stream.
    let items = items_to_end(stream.events());
    let Some((Item::Retry(retry), events)) = items.split_last() else { panic!("no retry hint: {items:?}") };
    assert_eq!(*retry, Duration::from_millis(250));
    assert!(matches!(events, [Item::Event(e)] if e.data == "before rotation"), "{events:?}");

    // Published (POST answers after it is recorded) before the client comes back: it must be replayed.
    assert_eq!(relay.publish("?data=while%20away", &[], None).0, 200);
    let mut back = relay.subscribe("/events", &[("Last-Event-ID", &relay.id(1))]);
    assert_eq!(relay.take_events(back.events(), 1), triples(&[("2", "message", "while away")]));
}
