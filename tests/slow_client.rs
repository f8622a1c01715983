//! A client that stops reading is dropped when its queue fills; publishers and other clients carry on.

mod common;

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::*;
use sse_handler::{Config, Event};

#[test]
fn slow_client_dropped_while_others_keep_receiving() {
    // A long send timeout, so that only the full queue can end the stalled client.
    let config = Config::default().queue_capacity(8).send_timeout(Duration::from_secs(120));
    let server = start(config);
    let stalled = subscribe(server.addr, "/events", &[]); // never read
    let mut healthy = subscribe(server.addr, "/events", &[]);
    let (received_tx, received_rx) = mpsc::channel();
    let reader = thread::spawn(move || {
        while let Some(event) = healthy.events().next_event().expect("healthy stream reads in time") {
            if received_tx.send(event.data).is_err() {
                break;
            }
        }
    });

    // 64 KiB events fill the stalled client's socket buffers quickly; its thread then blocks in a
    // write, its queue fills, and the next publish drops it. The healthy client is waited for after
    // each event, so its queue never holds more than one.
    let payload = "x".repeat(64 * 1024);
    let mut published = 0;
    while server.handler.stats().slow_client_disconnects == 0 {
        assert!(published < 2000, "the stalled client was never dropped");
        server.handler.send_all(Event::data(format!("{published} {payload}"))).unwrap();
        let got = received_rx.recv_timeout(TIMEOUT).expect("the healthy client keeps receiving");
        assert!(got.starts_with(&format!("{published} ")), "in order");
        published += 1;
    }
    wait_until("only the healthy client is left", || server.handler.connection_count() == 1);
    for n in published..published + 5 {
        server.handler.send_all(Event::data(format!("{n} after"))).unwrap();
        assert_eq!(received_rx.recv_timeout(TIMEOUT).unwrap(), format!("{n} after"));
    }
    drop(received_rx);
    drop(stalled);
    drop(server);
    reader.join().unwrap();
}

#[test]
fn send_one_to_a_full_queue_drops_that_client() {
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
