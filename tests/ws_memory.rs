//! Memory one hostile WebSocket client can make the server hold: a flood of pings it never reads the
//! answers to, an echo of large messages it never reads, frame headers that announce payloads it never
//! sends. The server runs in this process, so what it holds shows in this process's resident set
//! (`VmRSS` in `/proc/self/status`), measured before the client starts and while it holds on. The
//! tests take turns, so that one test's memory is never counted in another's.
#![cfg(all(feature = "websocket", target_os = "linux"))]

mod ws_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::sync::{Mutex, PoisonError};

use sse_handler::Server;
use sse_handler::ws::{CloseCause, Message, WsConfig, WsHandler};
use ws_support::*;

const MIB: usize = 1024 * 1024;

/// One test at a time in this file: each measures the whole process.
static TURN: Mutex<()> = Mutex::new(());

/// The resident set of this process, in bytes.
fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status.lines().find(|line| line.starts_with("VmRSS:")).expect("a VmRSS line");
    let kib: usize = line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("VmRSS in kB");
    kib * 1024
}

/// How much the resident set grew since `before`, in MiB (for messages).
fn grown_mib(before: usize) -> f64 {
    rss().saturating_sub(before) as f64 / MIB as f64
}

#[test]
fn a_ping_flood_from_a_client_that_never_reads_holds_no_queue_of_pongs() {
    let _turn = TURN.lock().unwrap_or_else(PoisonError::into_inner);
    let server = start(WsConfig::default());
    let mut stream = open(server.addr);
    // 300 000 pings with the largest payload a ping may carry: 39 MB on the wire. A server that
    // queues one pong per ping holds more than 50 MiB of them once its writes are blocked.
    let pings = frame(PING, &[b'p'; 125]).repeat(1000);
    let before = rss();
    for _ in 0..300 {
        stream.write_all(&pings).expect("the server reads the pings");
    }
    // Frames are read in order: once this message reaches the hook, every ping has been handled.
    stream.write_all(&frame(TEXT, b"done")).unwrap();
    assert_eq!(server.next_message().1, Message::Text("done".into()));
    let grown = grown_mib(before);
    assert!(grown < 8.0, "the ping flood grew the process by {grown:.1} MiB");
}

#[test]
fn an_echo_client_that_never_reads_is_bounded_by_the_queue_bytes() {
    let _turn = TURN.lock().unwrap_or_else(PoisonError::into_inner);
    let (message_tx, messages) = mpsc::channel();
    let (close_tx, closes) = mpsc::channel();
    let handler = WsHandler::builder(WsConfig::default())
        .on_message(move |conn, message| {
            if message.is_text() {
                let _ = message_tx.send(message);
            } else {
                let _ = conn.send(message);
            }
        })
        .on_close(move |_, closed| {
            let _ = close_tx.send(closed.clone());
        })
        .build()
        .unwrap();
    let handle = Server::bind("127.0.0.1:0").unwrap().websocket("/ws", &handler).spawn().unwrap();
    let mut stream = open(handle.local_addr());
    // 64 messages of 1 MiB, each echoed to a client that reads nothing: a queue bounded by count
    // alone (1024) holds all 64 MiB.
    let message = frame(BINARY, &vec![b'e'; MIB]);
    let before = rss();
    for _ in 0..64 {
        // The server may drop this client as slow, and close, before it has sent everything.
        if stream.write_all(&message).is_err() {
            break;
        }
    }
    if stream.write_all(&frame(TEXT, b"done")).is_ok() {
        let done = messages.recv_timeout(TIMEOUT);
        assert!(
            done.is_ok() || handler.slow_client_drops() == 1,
            "the server neither read on nor dropped us"
        );
    }
    let grown = grown_mib(before);
    drop(stream);
    let closed = closes.recv_timeout(TIMEOUT).expect("the connection ends once the client is gone");
    assert!(grown < 16.0, "an echo nobody reads grew the process by {grown:.1} MiB");
    assert_eq!(closed.cause, CloseCause::SlowClient, "{closed:?}");
    assert_eq!(handler.slow_client_drops(), 1);
    handle.shutdown();
}

#[test]
fn frame_headers_announcing_large_payloads_cost_nothing_until_the_payload_comes() {
    let _turn = TURN.lock().unwrap_or_else(PoisonError::into_inner);
    let server = start(WsConfig::default());
    let mut clients: Vec<TcpStream> = (0..100).map(|_| open(server.addr)).collect();
    wait_until("every client is registered", || server.handler.connection_count() == clients.len());
    // Each header announces the largest frame allowed (1 MiB); 16 bytes of it follow, no more.
    let mut header = frame(BINARY, &[0; 16]);
    header[1] = 0x80 | 127;
    header.splice(2..2, [0u8; 8]);
    header[2..10].copy_from_slice(&(MIB as u64).to_be_bytes());
    let before = rss();
    for (i, client) in clients.iter_mut().enumerate() {
        // The pong proves the reader is running; the header follows the ping in the same write.
        let ping = frame(PING, format!("{i}").as_bytes());
        client.write_all(&[ping, header.clone()].concat()).unwrap();
        let (_, opcode, payload) = read_frame(client);
        assert_eq!((opcode, payload), (PONG, format!("{i}").into_bytes()));
    }
    let grown = grown_mib(before);
    assert!(grown < 8.0, "100 frame headers grew the process by {grown:.1} MiB");
    for mut client in clients {
        let _ = client.shutdown(std::net::Shutdown::Write);
        let mut rest = Vec::new();
        let _ = client.read_to_end(&mut rest);
    }
}
