//! Several relays on one Redis Stream (`--redis`), against a real `redis-server` each test starts
//! on a free loopback port. Ignored in a plain `cargo test`; `.ci/run` installs Redis and runs them
//! with `--ignored`.
#![cfg(feature = "redis")]

mod common;
#[path = "../../tests/redis_server/mod.rs"]
mod redis_server;

use std::time::{Duration, Instant};

use common::*;
use redis_server::Redis;
use sse_handler::client::{Body, EventStream, Item, ReceivedEvent};

/// A relay on `redis`, sharing the stream of this test's own key.
fn relay_on(redis: &Redis, key: &str, extra: &[&str]) -> Relay {
    let url = redis.url();
    let mut args = vec!["--redis", url.as_str(), "--redis-stream", key];
    args.extend_from_slice(extra);
    Relay::start(&args)
}

fn key(test: &str) -> String {
    format!("sse-relay:test:{}:{test}", std::process::id())
}

/// The next event, past heartbeats and other comments.
fn next_event_past_comments(stream: &mut EventStream<Body>) -> ReceivedEvent {
    loop {
        match next_item(stream) {
            Item::Event(event) => return event,
            Item::Comment(_) | Item::Retry(_) => {}
        }
    }
}

fn read_events(stream: &mut EventStream<Body>, count: usize) -> Vec<ReceivedEvent> {
    (0..count).map(|_| next_event_past_comments(stream)).collect()
}

/// Whether every id is a stream entry id (`ms-seq`), each greater than the one before.
fn stream_ids_increase(events: &[ReceivedEvent]) -> bool {
    let parsed: Option<Vec<(u64, u64)>> = events
        .iter()
        .map(|e| {
            let (ms, seq) = e.last_event_id.split_once('-')?;
            Some((ms.parse().ok()?, seq.parse().ok()?))
        })
        .collect();
    parsed.is_some_and(|ids| ids.windows(2).all(|pair| pair[0] < pair[1]))
}

/// Waits (bounded) until `GET /healthz` answers `status`.
fn wait_for_health(relay: &Relay, status: u16) -> String {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let (now, _, body) = relay.request("GET", "/healthz", &[], None);
        if now == status {
            return body;
        }
        assert!(Instant::now() < deadline, "/healthz still answers {now} ({body:?}), not {status}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
#[ignore = "needs redis-server; .ci/run installs it and runs it"]
fn two_relays_deliver_stdin_and_posted_events_in_one_order_with_the_same_ids() {
    let redis = Redis::start();
    let key = key("one-order");
    let mut relays = [relay_on(&redis, &key, &[]), relay_on(&redis, &key, &[])];
    let mut subscribers: Vec<_> = relays.iter().map(|relay| relay.subscribe("/events", &[])).collect();

    const EACH: usize = 25;
    // The stdin threads of both relays publish while the POSTs below go to both.
    for (r, relay) in relays.iter_mut().enumerate() {
        for n in 0..EACH {
            relay.send_line(&format!("stdin {r}.{n}"));
        }
    }
    for n in 0..EACH {
        for (r, relay) in relays.iter().enumerate() {
            let (status, body) = relay.publish(&format!("?data=post+{r}.{n}"), &[], None);
            assert_eq!(status, 200, "{body}");
        }
    }

    let total = 4 * EACH;
    let seen: Vec<Vec<ReceivedEvent>> =
        subscribers.iter_mut().map(|s| read_events(s.events(), total)).collect();
    assert_eq!(seen[0], seen[1], "both relays deliver one order, with the same ids");
    assert!(stream_ids_increase(&seen[0]), "ids are increasing stream entry ids");
    let mut data: Vec<String> = seen[0].iter().map(|e| e.data.clone()).collect();
    data.sort_unstable();
    let mut expected: Vec<String> = (0..2)
        .flat_map(|r| (0..EACH).flat_map(move |n| [format!("stdin {r}.{n}"), format!("post {r}.{n}")]))
        .collect();
    expected.sort_unstable();
    assert_eq!(data, expected, "every event once");
}

#[test]
#[ignore = "needs redis-server; .ci/run installs it and runs it"]
fn a_client_resuming_on_the_other_relay_gets_exactly_the_rest() {
    let redis = Redis::start();
    let key = key("resume");
    let (a, b) = (relay_on(&redis, &key, &[]), relay_on(&redis, &key, &[]));
    let mut on_a = a.subscribe("/events", &[]);
    for n in 1..=30 {
        let (status, body) = a.publish(&format!("?data={n}"), &[], None);
        assert_eq!(status, 200, "{body}");
    }
    let first = read_events(on_a.events(), 30);

    let mut on_b = b.subscribe("/events", &[("Last-Event-ID", &first[9].last_event_id)]);
    let (status, body) = a.publish("?data=31", &[], None);
    assert_eq!(status, 200, "{body}");
    let rest = read_events(on_b.events(), 21);
    assert_eq!(&rest[..20], &first[10..], "events 11 to 30, as A delivered them");
    assert_eq!(rest[20].data, "31", "then the live one, without a gap or a duplicate");
    assert_eq!(rest[20], next_event_past_comments(on_a.events()), "with the id A gave it");
}

#[test]
#[ignore = "needs redis-server; .ci/run installs it and runs it"]
fn while_redis_is_down_posts_get_503_stdin_waits_and_health_follows() {
    let mut redis = Redis::start();
    let key = key("outage");
    let fast_heartbeat = ["--heartbeat", "0.2"];
    let (mut a, b) = (relay_on(&redis, &key, &fast_heartbeat), relay_on(&redis, &key, &fast_heartbeat));
    let mut on_a = a.subscribe("/events", &[]);
    let mut on_b = b.subscribe("/events", &[]);
    assert_eq!(wait_for_health(&a, 200), "ok\n");

    redis.kill();
    let reason = wait_for_health(&a, 503);
    assert!(reason.starts_with("redis unreachable"), "{reason:?}");
    let (status, body) = a.publish("?data=lost", &[], None);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("unavailable"), "a short reason: {body:?}");
    a.send_line("waited");
    a.wait_for_log("standard input line 1 waits");
    // Streams stay open while Redis is away: heartbeats keep coming.
    for stream in [&mut on_a, &mut on_b] {
        assert_eq!(next_item(stream.events()), Item::Comment("heartbeat".into()));
    }

    redis.restart();
    assert_eq!(wait_for_health(&a, 200), "ok\n");
    wait_for_health(&b, 200);
    let waited_on_a = next_event_past_comments(on_a.events());
    assert_eq!(waited_on_a.data, "waited", "the line that waited is published once Redis is back");
    let (status, body) = b.publish("?data=after", &[], None);
    assert_eq!(status, 200, "{body}");
    let after_on_a = next_event_past_comments(on_a.events());
    assert_eq!(after_on_a.data, "after", "once: no second copy of the line");
    let on_b_events = read_events(on_b.events(), 2);
    assert_eq!(on_b_events, [waited_on_a, after_on_a], "B delivers them too, with the same ids");
    a.wait_for_log("standard input line 1 published after");
}
