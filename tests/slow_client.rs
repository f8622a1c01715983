//! Clients slower than the publisher: a reader that lags is behind in the log, not dropped, and only
//! one whose unread events leave the log meets the overflow policy. Memory does not grow with how far
//! readers lag.

mod common;

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::*;
use sse_handler::client::Item;
use sse_handler::{CloseReason, Config, Event, OverflowPolicy, ServerConfig, SseHandler};

/// The tests here measure the process's memory, or move enough of it to disturb a measurement: they
/// take turns.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Reads `count` events, pausing now and then as a client that does work per event would, so that
/// it is far slower than the publisher. Returns the (id, data) pairs.
fn read_slowly(response: &mut sse_handler::client::ReceivedResponse, count: usize) -> Vec<(String, String)> {
    (0..count)
        .map(|n| {
            if n % 50 == 0 {
                thread::sleep(Duration::from_millis(1));
            }
            let event = next_event(response.events());
            (event.last_event_id, event.data)
        })
        .collect()
}

#[test]
fn readers_slower_than_the_publisher_get_every_event_in_order_without_reconnecting() {
    let _turn = one_at_a_time();
    // Default sizes: 8,000 events of 1 KiB fit the log, so no reader may lose any, however slow.
    const EVENTS: usize = 8_000;
    let server = start(Config::default());
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let mut response = subscribe(server.addr, "/events", &[]);
            thread::spawn(move || read_slowly(&mut response, EVENTS))
        })
        .collect();
    let line = "l".repeat(1000);
    let ids: Vec<String> = (0..EVENTS)
        .map(|n| server.handler.send_all(Event::data(format!("{n} {line}"))).unwrap().id.unwrap())
        .collect();
    for reader in readers {
        let got = reader.join().expect("every event within the timeout");
        for (n, (id, data)) in got.iter().enumerate() {
            assert_eq!(id, &ids[n]);
            assert!(data.starts_with(&format!("{n} ")), "in order, none missing");
        }
    }
    let stats = server.handler.stats();
    assert_eq!((stats.slow_client_disconnects, stats.events_dropped), (0, 0));
    assert_eq!((stats.connections_opened, server.handler.connection_count()), (4, 4), "none reconnected");
}

/// Starts a server whose log holds `capacity` events, with a client that reads nothing until the
/// log has moved far past it; returns the server, the client, the ids published and the close log.
fn fall_off_the_log(
    policy: OverflowPolicy,
    capacity: usize,
) -> (TestServer, sse_handler::client::ReceivedResponse, Vec<String>, Arc<Mutex<Vec<CloseReason>>>) {
    let reasons = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&reasons);
    let config =
        Config::default().history_capacity(capacity).overflow(policy).send_timeout(Duration::from_secs(120));
    let builder =
        SseHandler::builder(config).on_close(move |_, reason| log.lock().unwrap().push(reason.clone()));
    let server = start_with(builder, ServerConfig::default());
    let client = subscribe(server.addr, "/events", &[]);
    // 64 KiB events: the socket buffers hold a few dozen, the log a hundred; twenty times as many go by.
    let payload = "p".repeat(64 * 1024);
    let ids = (0..20 * capacity)
        .map(|n| server.handler.send_all(Event::data(format!("{n} {payload}"))).unwrap().id.unwrap())
        .collect();
    (server, client, ids, reasons)
}

#[test]
fn a_reader_that_falls_off_the_log_is_closed_and_resumes_with_the_unknown_id_answer() {
    let _turn = one_at_a_time();
    let (server, mut client, ids, reasons) = fall_off_the_log(OverflowPolicy::Disconnect, 100);
    // What it gets is a gap-free start of the stream, then the end of it.
    let got = read_to_end(client.events());
    assert!(!got.is_empty() && got.len() < ids.len() - 100, "{} events", got.len());
    for (n, event) in got.iter().enumerate() {
        assert_eq!(event.last_event_id, ids[n], "no gap before the close");
    }
    wait_until("the stream is closed", || !reasons.lock().unwrap().is_empty());
    assert_eq!(*reasons.lock().unwrap(), [CloseReason::SlowClient]);
    assert_eq!(server.handler.stats().slow_client_disconnects, 1);
    // Resuming, it is told its id is unknown and gets what the log still holds.
    let last = &got.last().unwrap().last_event_id;
    let mut resumed = subscribe(server.addr, "/events", &[("Last-Event-ID", last)]);
    let Item::Comment(note) = next_item(resumed.events()) else { panic!("expected the note first") };
    assert_eq!(note, "last event id not found; replaying 100 retained events");
    assert_eq!(next_event(resumed.events()).last_event_id, ids[ids.len() - 100]);
}

#[test]
fn under_drop_oldest_a_reader_that_falls_off_the_log_jumps_to_its_oldest_event_and_is_told() {
    let _turn = one_at_a_time();
    let (server, mut client, ids, reasons) = fall_off_the_log(OverflowPolicy::DropOldest, 100);
    let mut position = 0;
    let mut dropped = 0;
    while position < ids.len() {
        match next_item(client.events()) {
            Item::Event(event) => {
                assert_eq!(event.last_event_id, ids[position], "in order, and no gap but the announced one");
                position += 1;
            }
            Item::Comment(note) => {
                let missed: usize = note
                    .strip_suffix(" events dropped: this connection fell behind")
                    .unwrap()
                    .parse()
                    .unwrap();
                position += missed;
                dropped += missed;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(dropped > 0, "the reader fell off the log");
    assert_eq!(server.handler.stats().events_dropped, dropped as u64);
    assert_eq!(server.handler.connection_count(), 1, "still connected");
    assert!(reasons.lock().unwrap().is_empty());
}

/// The resident memory of this process, in bytes.
fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<usize>().unwrap() * 1024
}

#[test]
fn memory_does_not_grow_with_how_far_readers_lag() {
    let _turn = one_at_a_time();
    // 50 clients that never read and 20 that read slowly, while 64 MiB of events go through a log of
    // 8 MiB: what the server holds is the log and a fixed amount per connection, not what each lags by.
    const LOG_BYTES: usize = 8 << 20;
    let config = Config::default()
        .history_capacity(100_000)
        .history_max_bytes(LOG_BYTES)
        .overflow(OverflowPolicy::DropOldest)
        .send_timeout(Duration::from_secs(120));
    let server = start(config);
    let stalled: Vec<_> = (0..50).map(|_| subscribe(server.addr, "/events", &[])).collect();
    let lagging: Vec<_> = (0..20)
        .map(|_| {
            let mut response = subscribe(server.addr, "/events", &[]);
            thread::spawn(move || {
                let mut got = 0;
                while let Ok(Some(_)) = response.events().next_event() {
                    got += 1;
                    if got % 20 == 0 {
                        thread::sleep(Duration::from_millis(1));
                    }
                }
            })
        })
        .collect();
    let before = rss();
    let payload = "m".repeat(16 * 1024);
    for n in 0..4096 {
        server.handler.send_all(Event::data(format!("{n} {payload}"))).unwrap();
    }
    let grown = rss().saturating_sub(before);
    // The log, plus 256 KiB per connection (a write buffer, stack pages), plus slack for the allocator.
    let bound = LOG_BYTES + 70 * 256 * 1024 + (16 << 20);
    assert!(grown < bound, "RSS grew by {} MiB (bound {} MiB)", grown >> 20, bound >> 20);
    drop(stalled);
    drop(server);
    for reader in lagging {
        reader.join().unwrap();
    }
}

#[test]
fn send_one_to_a_full_queue_drops_that_client() {
    let _turn = one_at_a_time();
    let server = start(Config::default().queue_capacity(2).send_timeout(Duration::from_secs(120)));
    let _stalled = subscribe(server.addr, "/events", &[]);
    let id = server.handler.connection_ids()[0];
    let payload = "y".repeat(256 * 1024);
    let mut result = Ok(());
    for _ in 0..2000 {
        result = server.handler.send_one(id, Event::data(&payload));
        if result.is_err() {
            break;
        }
    }
    assert!(matches!(result, Err(sse_handler::Error::QueueFull(full)) if full == id), "{result:?}");
    assert_eq!(server.handler.connection_count(), 0);
    assert!(matches!(
        server.handler.send_one(id, Event::data("x")),
        Err(sse_handler::Error::UnknownConnection(_))
    ));
}

#[test]
fn a_replay_is_written_from_the_log_in_pieces_not_copied_per_subscriber() {
    let _turn = one_at_a_time();
    // 1,000 events of 64 KiB in the log, and 40 clients that resume with an unknown id (so each is to
    // be sent all 64 MiB) and never read: each stream holds at most one event's handle and a small
    // buffer, not a copy of its replay (which took 2.6 GiB when each opening copied its whole replay).
    let config = Config::default()
        .history_capacity(1000)
        .history_max_bytes(80 << 20)
        .send_timeout(Duration::from_secs(120));
    let server = start(config);
    let payload = "r".repeat(64 * 1024);
    for n in 0..1000 {
        server.handler.send_all(Event::data(format!("{n} {payload}"))).unwrap();
    }
    let before = rss();
    let clients: Vec<_> =
        (0..40).map(|_| subscribe(server.addr, "/events", &[("Last-Event-ID", "unknown")])).collect();
    wait_until("every replay is under way", || server.handler.connection_count() == 40);
    let ids = server.handler.connection_ids();
    wait_until("every stream has written part of its replay", || {
        ids.iter().all(|id| server.handler.connection_stats(*id).is_some_and(|stats| stats.sent > 0))
    });
    let grown = rss().saturating_sub(before);
    let bound = 40 * 512 * 1024 + (16 << 20);
    assert!(grown < bound, "RSS grew by {} MiB (bound {} MiB)", grown >> 20, bound >> 20);
    drop(clients);
}
