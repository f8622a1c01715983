//! The library's `client::EventSource` against the relay: it follows `--max-stream-secs` rotations
//! and resumes from `Last-Event-ID` without losing or repeating an event.
//!
//! (A restart of the relay is not tested: its history lives in memory, so events published before
//! a restart cannot be replayed after it.)

mod common;

use std::time::Duration;

use common::*;
use sse_handler::client::{EventSource, ReceivedEvent, State, Update};

fn update(source: &mut EventSource) -> Update {
    source.next_update().expect("the connection does not fail").expect("the source is not closed")
}

/// The next event, however many reconnections it takes (at most 20).
fn next_event(source: &mut EventSource) -> ReceivedEvent {
    let mut reconnections = 0;
    loop {
        match update(source) {
            Update::Event(event) => return event,
            Update::Reconnecting { .. } => reconnections += 1,
            _ => {}
        }
        assert!(reconnections < 20, "no event after {reconnections} reconnections");
    }
}

/// Updates until the relay ends the stream; returns the delay the source announced.
fn until_lost(source: &mut EventSource) -> Duration {
    loop {
        match update(source) {
            Update::Reconnecting { delay, error: None } => return delay,
            Update::Reconnecting { error: Some(error), .. } => panic!("the stream broke: {error}"),
            Update::Event(event) => panic!("unexpected event {event:?}"),
            _ => {}
        }
    }
}

#[test]
fn event_source_resumes_across_stream_rotations() {
    let relay = Relay::start(&["--max-stream-secs", "0.3", "--retry", "20"]);
    let mut source = EventSource::builder(format!("http://{}/events", relay.addr))
        .connect_timeout(TIMEOUT)
        .idle_timeout(TIMEOUT)
        .build()
        .unwrap();
    assert!(matches!(update(&mut source), Update::Open));
    let mut events = Vec::new();
    for round in 0..3 {
        assert_eq!(relay.publish(&format!("?data=live%20{round}"), &[], None).0, 200);
        events.push(next_event(&mut source));
        assert_eq!(until_lost(&mut source), Duration::from_millis(20), "the relay's --retry");
        assert_eq!(source.state(), State::Reconnecting);
        // Recorded before the client is back (the POST answers once it is): it comes with the replay.
        assert_eq!(relay.publish(&format!("?data=missed%20{round}"), &[], None).0, 200);
        events.push(next_event(&mut source));
    }
    let data: Vec<&str> = events.iter().map(|event| event.data.as_str()).collect();
    assert_eq!(data, ["live 0", "missed 0", "live 1", "missed 1", "live 2", "missed 2"]);
    let ids: Vec<u64> =
        events.iter().map(|event| event.last_event_id.parse().expect("numeric ids")).collect();
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "ids {ids:?}");
}
