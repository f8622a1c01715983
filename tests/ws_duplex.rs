//! The handler API on real sockets: sending to one and to all while clients send too, stopping with a
//! close code, shutdown, heartbeats, slow clients and panicking hooks.
#![cfg(feature = "websocket")]

mod ws_support;

use std::io::Write;
use std::thread;
use std::time::Duration;

use sse_handler::Error;
use sse_handler::ws::{CloseCause, Message, WsConfig, client};
use ws_support::*;

#[test]
fn send_one_and_send_all_reach_the_right_clients() {
    let server = start(WsConfig::default());
    let mut a = open(server.addr);
    let mut b = open(server.addr);
    wait_until("both registered", || server.handler.connection_count() == 2);
    let ids = server.handler.connection_ids();
    assert_eq!(ids.len(), 2);
    assert!(ids[0] < ids[1]);

    server.handler.send_one(ids[1], "for b").unwrap();
    assert_eq!(server.handler.send_all("for all").unwrap(), 2);
    server.handler.send_one(ids[0], vec![0u8, 1, 2]).unwrap();
    assert_eq!(read_text(&mut b), "for b");
    assert_eq!(read_text(&mut b), "for all");
    assert_eq!(read_text(&mut a), "for all");
    assert_eq!(read_frame(&mut a), (true, BINARY, vec![0, 1, 2]));
    // A large message goes out with a 64-bit length.
    let big = "z".repeat(70_000);
    server.handler.send_one(ids[0], big.as_str()).unwrap();
    assert_eq!(read_text(&mut a), big);

    let unknown = sse_handler::ConnectionId::from(999);
    assert!(matches!(server.handler.send_one(unknown, "x"), Err(Error::UnknownConnection(_))));
}

#[test]
fn messages_flow_both_ways_at_once() {
    const EACH_WAY: usize = 2000;
    let server = start(WsConfig::default().queue_capacity(EACH_WAY + 1));
    let ws = client::connect(server.addr, "/ws", &[], TIMEOUT).unwrap();
    wait_until("registered", || server.handler.connection_count() == 1);
    let id = server.handler.connection_ids()[0];
    let mut sender = ws.sender().unwrap();
    let mut ws = ws;

    // The client sends while the server sends; neither waits for the other.
    let client_sends = thread::spawn(move || {
        for n in 0..EACH_WAY {
            sender.send(format!("up {n}")).unwrap();
        }
    });
    let handler = server.handler.clone();
    let server_sends = thread::spawn(move || {
        for n in 0..EACH_WAY {
            handler.send_one(id, format!("down {n}")).unwrap();
        }
    });
    for n in 0..EACH_WAY {
        assert_eq!(ws.recv_message().unwrap(), Some(Message::Text(format!("down {n}"))));
    }
    for n in 0..EACH_WAY {
        assert_eq!(server.next_message(), (id.as_u64(), Message::Text(format!("up {n}"))));
    }
    client_sends.join().unwrap();
    server_sends.join().unwrap();
}

#[test]
fn a_reply_from_the_message_hook_goes_out_while_the_hook_is_still_busy() {
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = std::sync::Mutex::new(release_rx);
    let server = start_with(
        move |builder| {
            builder.on_connect(move |conn| {
                let _ = conn.send("hello");
                // Hold the reading thread: outbound traffic must not depend on it.
                let _ = release_rx.lock().unwrap().recv_timeout(TIMEOUT);
            })
        },
        WsConfig::default(),
    );
    let mut stream = open(server.addr);
    assert_eq!(read_text(&mut stream), "hello");
    wait_until("registered", || server.handler.connection_count() == 1);
    server.handler.send_all("while the hook runs").unwrap();
    assert_eq!(read_text(&mut stream), "while the hook runs");
    release_tx.send(()).unwrap();
}

#[test]
fn stop_one_sends_its_close_code_after_what_was_queued() {
    let server = start(WsConfig::default());
    let mut stream = open(server.addr);
    wait_until("registered", || server.handler.connection_count() == 1);
    let id = server.handler.connection_ids()[0];
    assert!(matches!(server.handler.stop_one(id, 1005), Err(Error::InvalidCloseCode(1005))));
    server.handler.send_one(id, "last words").unwrap();
    server.handler.stop_one_with_reason(id, 4000, "kicked").unwrap();
    assert_eq!(server.handler.connection_count(), 0);
    assert!(matches!(server.handler.stop_one(id, 1000), Err(Error::UnknownConnection(_))));

    let (code, seen) = read_until_close(&mut stream);
    assert_eq!(code, Some(4000));
    assert_eq!(seen, [(TEXT, b"last words".to_vec())]);
    // We answer the close; the server then closes the TCP connection.
    stream.write_all(&frame(CLOSE, &close_payload(4000, ""))).unwrap();
    expect_eof(&mut stream);
    let closed = server.next_close();
    assert_eq!((closed.cause, closed.code, closed.reason.as_str()), (CloseCause::Stopped, 4000, "kicked"));
}

#[test]
fn a_client_that_never_answers_our_close_is_cut_after_the_close_timeout() {
    let server = start(WsConfig::default().close_timeout(Duration::from_millis(100)));
    let mut stream = open(server.addr);
    wait_until("registered", || server.handler.connection_count() == 1);
    server.handler.stop_one(server.handler.connection_ids()[0], 1000).unwrap();
    let (code, _) = read_until_close(&mut stream);
    assert_eq!(code, Some(1000));
    expect_eof(&mut stream); // without our answer
    assert_eq!(server.next_close().cause, CloseCause::Stopped);
}

#[test]
fn shutdown_sends_1001_to_every_client() {
    let mut server = start(WsConfig::default());
    let mut clients: Vec<_> = (0..3).map(|_| open(server.addr)).collect();
    wait_until("all registered", || server.handler.connection_count() == 3);
    server.handler.send_all("before the end").unwrap();
    let report = server.shutdown();
    assert_eq!(report.still_running, 0);
    for stream in &mut clients {
        let (code, seen) = read_until_close(stream);
        assert_eq!(code, Some(1001));
        assert_eq!(seen, [(TEXT, b"before the end".to_vec())]);
        expect_eof(stream);
    }
    for _ in 0..3 {
        let closed = server.next_close();
        assert_eq!((closed.cause, closed.code), (CloseCause::ShutDown, 1001));
    }
    assert!(matches!(server.handler.send_all("late"), Err(Error::ShutDown)));
}

#[test]
fn an_idle_client_is_pinged_and_closed_when_it_does_not_answer() {
    let config =
        WsConfig::default().heartbeat(Duration::from_millis(50)).pong_timeout(Duration::from_millis(100));
    let server = start(config);
    let mut stream = open(server.addr);
    let (_, opcode, _) = read_frame(&mut stream);
    assert_eq!(opcode, PING);
    // No pong: the server gives up with 1011.
    expect_close(&mut stream, 1011);
    let closed = server.next_close();
    assert_eq!((closed.cause, closed.code), (CloseCause::PingTimeout, 1011));
}

#[test]
fn a_client_that_answers_pings_stays_connected() {
    let config = WsConfig::default().heartbeat(Duration::from_millis(20)).pong_timeout(TIMEOUT);
    let server = start(config);
    let mut stream = open(server.addr);
    for _ in 0..5 {
        let (_, opcode, payload) = read_frame(&mut stream);
        assert_eq!(opcode, PING);
        stream.write_all(&frame(PONG, &payload)).unwrap();
    }
    assert_eq!(server.handler.connection_count(), 1);
    server.handler.send_all("still here").unwrap();
    loop {
        match read_frame(&mut stream) {
            (_, PING, payload) => stream.write_all(&frame(PONG, &payload)).unwrap(),
            (_, opcode, payload) => {
                assert_eq!((opcode, payload), (TEXT, b"still here".to_vec()));
                break;
            }
        }
    }
}

#[test]
fn a_slow_client_is_dropped_when_its_queue_is_full() {
    // A long send timeout, so that only the full queue can end the stalled client. (Broadcasts do not
    // go through this queue: see tests/ws_broadcast.rs for a client that falls behind them.)
    let server = start(WsConfig::default().queue_capacity(4).send_timeout(Duration::from_secs(120)));
    let stalled = open(server.addr); // never read
    let mut healthy = client::connect(server.addr, "/ws", &[], TIMEOUT).unwrap();
    wait_until("both registered", || server.handler.connection_count() == 2);
    let ids = server.handler.connection_ids();
    let payload = "x".repeat(256 * 1024);
    let mut sent = 0;
    let refused = loop {
        assert!(sent < 1000, "the stalled client was never dropped");
        server.handler.send_one(ids[1], format!("{sent} {payload}")).unwrap();
        let got = healthy.recv_message().unwrap().unwrap();
        assert!(got.as_text().unwrap().starts_with(&format!("{sent} ")), "in order");
        match server.handler.send_one(ids[0], payload.as_str()) {
            Ok(()) => sent += 1,
            Err(err) => break err,
        }
    };
    assert!(matches!(refused, Error::QueueFull(_)), "{refused:?}");
    assert_eq!(server.handler.slow_client_drops(), 1);
    assert_eq!(server.handler.connection_count(), 1);
    server.handler.send_all("after").unwrap();
    assert_eq!(healthy.recv_message().unwrap(), Some(Message::Text("after".into())));
    drop(stalled);
    assert_eq!(server.next_close().cause, CloseCause::SlowClient);
}

#[test]
fn a_slow_client_is_dropped_when_its_queue_holds_too_many_bytes() {
    // The count bound (1024) would let all of it in; the byte bound (1 MiB) does not.
    let server = start(WsConfig::default().queue_max_bytes(1 << 20).send_timeout(Duration::from_secs(120)));
    let stalled = open(server.addr); // never read
    wait_until("registered", || server.handler.connection_count() == 1);
    let id = server.handler.connection_ids()[0];
    let payload = vec![7u8; 256 * 1024];
    let mut sent = 0;
    // Loopback socket buffers take a few MiB before the queue begins to fill; 50 MiB is far more.
    let refused = loop {
        assert!(sent < 200, "the stalled client was never dropped");
        match server.handler.send_one(id, payload.clone()) {
            Ok(()) => sent += 1,
            Err(err) => break err,
        }
    };
    assert!(matches!(refused, sse_handler::Error::QueueFull(_)), "{refused:?}");
    assert_eq!(server.handler.slow_client_drops(), 1);
    drop(stalled);
    assert_eq!(server.next_close().cause, CloseCause::SlowClient);
}

#[test]
fn a_client_that_stops_reading_hits_the_send_timeout() {
    // A queue large enough for everything sent, so that only the send timeout can end the client.
    let config = WsConfig::default().queue_capacity(100_000).queue_max_bytes(64 << 20);
    let server = start(config.send_timeout(Duration::from_millis(200)));
    let _stalled = open(server.addr);
    wait_until("registered", || server.handler.connection_count() == 1);
    let id = server.handler.connection_ids()[0];
    // 32 MiB is more than loopback socket buffers hold: the writer's write blocks, times out, and the
    // connection ends.
    let payload = vec![7u8; 256 * 1024];
    for _ in 0..128 {
        if server.handler.send_one(id, payload.clone()).is_err() {
            break; // already ended
        }
    }
    let closed = server.next_close();
    assert_eq!((closed.cause, closed.code), (CloseCause::SendTimeout, 1006));
}

#[test]
fn a_panicking_message_hook_closes_with_1011() {
    // A handler of its own: the test server's message hook only reports.
    let (close_tx, close_rx) = std::sync::mpsc::channel();
    let handler = sse_handler::ws::WsHandler::builder(WsConfig::default())
        .on_message(|_, message| {
            if message.as_text() == Some("boom") {
                panic!("the application has a bug");
            }
        })
        .on_close(move |_, closed| {
            let _ = close_tx.send(closed.clone());
        })
        .build()
        .unwrap();
    let handle =
        sse_handler::Server::bind("127.0.0.1:0").unwrap().websocket("/ws", &handler).spawn().unwrap();
    let mut stream = open(handle.local_addr());
    stream.write_all(&frame(TEXT, b"fine")).unwrap();
    stream.write_all(&frame(TEXT, b"boom")).unwrap();
    expect_close(&mut stream, 1011);
    let closed = close_rx.recv_timeout(TIMEOUT).unwrap();
    assert_eq!((closed.cause, closed.code), (CloseCause::HookPanicked, 1011));
    assert_eq!(handle.shutdown().still_running, 0);
}

#[test]
fn the_connection_hook_can_greet_and_count() {
    let server = start_with(
        |builder| {
            builder.on_connect(|conn| {
                let count = conn.handler().connection_count();
                let _ = conn.send(format!("you are #{} of {count}", conn.id()));
            })
        },
        WsConfig::default(),
    );
    let mut first = open(server.addr);
    let text = read_text(&mut first);
    assert!(text.ends_with(" of 1"), "{text}");
    let mut second = open(server.addr);
    assert!(read_text(&mut second).ends_with(" of 2"));
}
