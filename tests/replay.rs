//! Resuming from `Last-Event-ID`: what is replayed, in what order, and under concurrent publishing.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use common::*;
use sse_handler::client::Item;
use sse_handler::{Config, Event, Replay, SseHandler, UnknownIdPolicy};

/// Publishes `event 1` ... `event N` and returns the ids the handler gave them.
fn publish_numbered(server: &TestServer, count: usize) -> Vec<String> {
    (1..=count)
        .map(|n| server.handler.send_all(Event::data(format!("event {n}"))).unwrap().id.unwrap())
        .collect()
}

fn data_of(events: &[sse_handler::client::ReceivedEvent]) -> Vec<&str> {
    events.iter().map(|e| e.data.as_str()).collect()
}

#[test]
fn last_event_id_header_replays_what_came_after() {
    let server = start(Config::default());
    let ids = publish_numbered(&server, 5);
    let mut response = subscribe(server.addr, "/events", &[("Last-Event-ID", &ids[2])]);
    let replayed = [next_event(response.events()), next_event(response.events())];
    assert_eq!(data_of(&replayed), ["event 4", "event 5"]);
    assert_eq!(replayed[1].last_event_id, ids[4]);
    server.handler.send_all(Event::data("live")).unwrap();
    assert_eq!(next_event(response.events()).data, "live");
    let info = server.handler.connection_info(server.handler.connection_ids()[0]).unwrap();
    assert_eq!(info.replay(), Replay::Resumed { events: 2 });
    assert_eq!(info.last_event_id(), Some(ids[2].as_str()));
}

#[test]
fn last_event_id_query_parameter_for_first_connections() {
    let server = start(Config::default());
    let ids = publish_numbered(&server, 3);
    let mut response = subscribe(server.addr, &format!("/events?lastEventId={}", ids[1]), &[]);
    assert_eq!(next_event(response.events()).data, "event 3");
}

#[test]
fn unknown_id_replays_everything_retained_and_says_so() {
    let server = start(Config::default().history_capacity(3));
    let ids = publish_numbered(&server, 5);
    // The first id has fallen out of a log of three.
    let mut response = subscribe(server.addr, "/events", &[("Last-Event-ID", &ids[0])]);
    let Item::Comment(note) = next_item(response.events()) else { panic!("expected the note first") };
    assert_eq!(note, "last event id not found; replaying 3 retained events");
    let replayed: Vec<String> = (0..3).map(|_| next_event(response.events()).data).collect();
    assert_eq!(replayed, ["event 3", "event 4", "event 5"]);
    let info = server.handler.connection_info(server.handler.connection_ids()[0]).unwrap();
    assert_eq!(info.replay(), Replay::UnknownId { events: 3 });
}

#[test]
fn unknown_id_can_replay_nothing() {
    let server = start(Config::default().unknown_id_policy(UnknownIdPolicy::ReplayNone));
    publish_numbered(&server, 2);
    let mut response = subscribe(server.addr, "/events", &[("Last-Event-ID", "not-an-id")]);
    let Item::Comment(note) = next_item(response.events()) else { panic!("expected the note first") };
    assert_eq!(note, "last event id not found; replaying 0 retained events");
    server.handler.send_all(Event::data("live")).unwrap();
    assert_eq!(next_event(response.events()).data, "live");
}

#[test]
fn replay_follows_the_event_filter() {
    let server = start(Config::default());
    for (n, event_type) in ["a", "b", "a", "b"].iter().enumerate() {
        let event = Event::builder().event(*event_type).data(n.to_string()).build().unwrap();
        server.handler.send_all(event).unwrap();
    }
    let mut response = subscribe(server.addr, "/events?event=b", &[("Last-Event-ID", "1")]);
    let replayed = [next_event(response.events()), next_event(response.events())];
    assert_eq!(data_of(&replayed), ["1", "3"]);
    assert!(replayed.iter().all(|e| e.event_type == "b"));
}

/// Several threads publish while clients keep disconnecting and resuming from their last id: every
/// client must see every event exactly once, in the order the history recorded them.
#[test]
fn replay_without_gap_or_duplicate_under_concurrency() {
    const PUBLISHERS: usize = 4;
    const PER_PUBLISHER: usize = 500;
    const TOTAL: usize = PUBLISHERS * PER_PUBLISHER;
    let server = start(Config::default().history_capacity(TOTAL));
    let start_flag = Arc::new(AtomicBool::new(false));

    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let handler = server.handler.clone();
            let go = Arc::clone(&start_flag);
            thread::spawn(move || {
                while !go.load(Ordering::Acquire) {
                    thread::yield_now();
                }
                for n in 0..PER_PUBLISHER {
                    handler.send_all(Event::data(format!("{p}:{n}"))).unwrap();
                }
            })
        })
        .collect();

    let addr = server.addr;
    let clients: Vec<_> = (0..3)
        .map(|c| {
            thread::spawn(move || {
                let mut seen: Vec<(String, String)> = Vec::new();
                let mut reconnects = 0;
                while seen.len() < TOTAL {
                    // "0" was never issued: the first connection gets everything retained so far.
                    let last = seen.last().map_or("0", |(id, _)| id.as_str()).to_owned();
                    let mut response = subscribe(addr, "/events", &[("Last-Event-ID", &last)]);
                    // Read a few events, then drop the connection and resume.
                    for _ in 0..(37 + c * 11) {
                        if seen.len() == TOTAL {
                            break;
                        }
                        let event = next_event(response.events());
                        seen.push((event.last_event_id, event.data));
                    }
                    reconnects += 1;
                }
                (seen, reconnects)
            })
        })
        .collect();
    start_flag.store(true, Ordering::Release);
    for publisher in publishers {
        publisher.join().unwrap();
    }
    for client in clients {
        let (seen, reconnects) = client.join().unwrap();
        assert!(reconnects > 10, "the test must actually reconnect ({reconnects})");
        // Handler-assigned ids are the order of the log: one more each time, with no gap or repeat.
        let ids: Vec<u64> = seen.iter().map(|(id, _)| id.parse().unwrap()).collect();
        assert!(ids.windows(2).all(|pair| pair[1] == pair[0] + 1), "no gap or repeat");
        let distinct: HashSet<&String> = seen.iter().map(|(_, data)| data).collect();
        assert_eq!(distinct.len(), TOTAL);
        // Each publisher's own events stay in its order.
        for p in 0..PUBLISHERS {
            let mine: Vec<&str> =
                seen.iter().map(|(_, d)| d.as_str()).filter(|d| d.starts_with(&format!("{p}:"))).collect();
            let expected: Vec<String> = (0..PER_PUBLISHER).map(|n| format!("{p}:{n}")).collect();
            assert_eq!(mine, expected);
        }
    }
}

#[test]
fn history_bounds_from_the_config_reach_the_handler() {
    // Each event encodes to the same size: ids of as many digits, and "event N" for single-digit N.
    let handler_id =
        SseHandler::new(Config::default()).unwrap().send_all(Event::data("x")).unwrap().id.unwrap();
    let one = Event::builder().id(handler_id).data("event 1").build().unwrap().as_bytes().len();
    let server = start(Config::default().history_max_bytes(2 * one));
    let ids = publish_numbered(&server, 5);
    // Only the last two events fit: an older id is unknown, and everything retained is replayed.
    let mut response = subscribe(server.addr, "/events", &[("Last-Event-ID", &ids[0])]);
    let replayed = [next_event(response.events()), next_event(response.events())];
    assert_eq!(data_of(&replayed), ["event 4", "event 5"]);
    let info = server.handler.connection_info(server.handler.connection_ids()[0]).unwrap();
    assert_eq!(info.replay(), Replay::UnknownId { events: 2 });
}

/// Ids do not repeat from one handler to the next (a restart): a client that resumes with an id from
/// an earlier handler is told it is unknown and gets what is retained, never a resume that silently
/// skips the new handler's first events.
#[test]
fn an_id_from_an_earlier_handler_is_unknown() {
    let earlier = start(Config::default());
    let old_ids = publish_numbered(&earlier, 20);
    drop(earlier);
    let server = start(Config::default());
    let new_ids = publish_numbered(&server, 3);
    let newest_old: u64 = old_ids.last().unwrap().parse().unwrap();
    let oldest_new: u64 = new_ids[0].parse().unwrap();
    assert!(oldest_new > newest_old, "a later handler's ids are all greater");
    for old in [&old_ids[0], &old_ids[2], old_ids.last().unwrap()] {
        let mut response = subscribe(server.addr, "/events", &[("Last-Event-ID", old)]);
        let Item::Comment(note) = next_item(response.events()) else { panic!("expected the note first") };
        assert_eq!(note, "last event id not found; replaying 3 retained events");
        let replayed: Vec<String> = (0..3).map(|_| next_event(response.events()).data).collect();
        assert_eq!(replayed, ["event 1", "event 2", "event 3"]);
    }
    assert_eq!(server.handler.stats().replays_missed, 3);
}
