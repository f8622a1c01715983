//! A client this project does not write, in the default test run: tungstenite's blocking client
//! against our server, for echo (text, binary, a large message, a fragmented one, a ping), a
//! broadcast to several clients, and messages from the server while the client is sending too.
//! `tests/ws_interop.rs` runs the same scenarios with Python's `websockets` where Python is present.
#![cfg(feature = "websocket")]

mod ws_support;

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sse_handler::ws::{Message, WsConfig, WsHandler};
use sse_handler::{Server, ServerHandle};
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tungstenite::{Error as WsError, Message as WsMessage, WebSocket};
use ws_support::TIMEOUT;

const CLIENTS: usize = 5;
const DUPLEX_MESSAGES: usize = 500;

type Client = WebSocket<TcpStream>;

/// Opens a WebSocket to `path` over a plain `TcpStream` whose reads and writes end within [`TIMEOUT`].
fn connect(addr: SocketAddr, path: &str) -> Client {
    let stream = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect");
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(TIMEOUT)).unwrap();
    let (client, response) =
        tungstenite::client(format!("ws://{addr}{path}"), stream).expect("the handshake succeeds");
    assert_eq!(response.status().as_u16(), 101);
    client
}

/// The next data message; tungstenite hands pings and pongs to the caller too, so those are skipped.
fn next_data(client: &mut Client) -> WsMessage {
    loop {
        match client.read().expect("a message within the timeout") {
            WsMessage::Ping(_) | WsMessage::Pong(_) => continue,
            message => return message,
        }
    }
}

fn echo_server() -> (ServerHandle, WsHandler) {
    let echo = WsHandler::builder(WsConfig::default())
        .on_message(|conn, message| {
            conn.send(message).expect("echo");
        })
        .build()
        .unwrap();
    let server = Server::bind("127.0.0.1:0").unwrap().websocket("/echo", &echo).spawn().unwrap();
    (server, echo)
}

#[test]
fn echo_of_text_binary_large_and_fragmented_messages_and_a_ping() {
    let (server, _echo) = echo_server();
    let mut client = connect(server.local_addr(), "/echo");

    client.send(WsMessage::text("hello")).unwrap();
    assert_eq!(next_data(&mut client), WsMessage::text("hello"));
    client.send(WsMessage::binary(vec![0u8, 1, 0xff])).unwrap();
    assert_eq!(next_data(&mut client), WsMessage::binary(vec![0u8, 1, 0xff]));
    let big = "κόσμε ".repeat(20_000);
    client.send(WsMessage::text(big.clone())).unwrap();
    assert_eq!(next_data(&mut client), WsMessage::text(big));

    // One text message in three frames: the server joins them.
    client.write(WsMessage::Frame(Frame::message("frag", OpCode::Data(Data::Text), false))).unwrap();
    client.write(WsMessage::Frame(Frame::message("men", OpCode::Data(Data::Continue), false))).unwrap();
    client.write(WsMessage::Frame(Frame::message("ted", OpCode::Data(Data::Continue), true))).unwrap();
    client.flush().unwrap();
    assert_eq!(next_data(&mut client), WsMessage::text("fragmented"));

    client.send(WsMessage::Ping("are you there".into())).unwrap();
    assert_eq!(client.read().unwrap(), WsMessage::Pong("are you there".into()));

    client.close(None).unwrap();
    assert_closed_after_handshake(&mut client);
    assert_eq!(server.shutdown().still_running, 0);
}

#[test]
fn a_broadcast_reaches_every_client() {
    let chat = WsHandler::builder(WsConfig::default())
        .on_message(|conn, message| {
            conn.handler().send_all(message).expect("broadcast");
        })
        .build()
        .unwrap();
    let server = Server::bind("127.0.0.1:0").unwrap().websocket("/chat", &chat).spawn().unwrap();
    let mut clients: Vec<Client> = (0..CLIENTS).map(|_| connect(server.local_addr(), "/chat")).collect();
    // Each handshake has completed, but the registration is the server's: wait until it has all.
    ws_support::wait_until("every client registered", || chat.connection_count() == CLIENTS);

    clients[0].send(WsMessage::text("hi all")).unwrap();
    for client in &mut clients {
        assert_eq!(next_data(client), WsMessage::text("hi all"));
    }
    clients[CLIENTS - 1].send(WsMessage::binary(&b"bytes too"[..])).unwrap();
    for client in &mut clients {
        assert_eq!(next_data(client), WsMessage::binary(&b"bytes too"[..]));
    }
    assert_eq!(server.shutdown().still_running, 0);
}

#[test]
fn the_server_sends_from_its_own_thread_while_the_client_keeps_sending() {
    let (got_tx, got_rx) = mpsc::channel();
    let duplex = ws_support::duplex_handler(got_tx);
    let server = Server::bind("127.0.0.1:0").unwrap().websocket("/duplex", &duplex).spawn().unwrap();
    let mut client = connect(server.local_addr(), "/duplex");

    client.send(WsMessage::text(format!("start {DUPLEX_MESSAGES}"))).unwrap();
    let received = send_while_receiving(&mut client, DUPLEX_MESSAGES);
    let mut expected: Vec<String> = (0..DUPLEX_MESSAGES).map(|n| format!("server {n}")).collect();
    expected.push("server done".to_owned());
    assert_eq!(received, expected);
    // Everything the client sent while the server was sending reached the hook, in order.
    for n in 0..DUPLEX_MESSAGES {
        assert_eq!(got_rx.recv_timeout(TIMEOUT).unwrap(), Message::Text(format!("client {n}")));
    }

    client.send(WsMessage::text("finish")).unwrap();
    let close = CloseFrame { code: CloseCode::from(4001), reason: "all done".into() };
    assert_eq!(client.read().unwrap(), WsMessage::Close(Some(close)));
    assert_closed_after_handshake(&mut client);
    assert_eq!(server.shutdown().still_running, 0);
}

/// Sends `client 0` .. `client {count-1}` one at a time and, between sends, reads whatever the
/// server has sent meanwhile (tungstenite's socket is one object, so one thread does both, with a
/// short read timeout while there is still something to send). Returns the server's `count + 1`
/// text messages.
fn send_while_receiving(client: &mut Client, count: usize) -> Vec<String> {
    let deadline = Instant::now() + TIMEOUT * 3;
    let (mut sent, mut received) = (0, Vec::new());
    while received.len() < count + 1 {
        assert!(Instant::now() < deadline, "stuck after {sent} sent and {} received", received.len());
        if sent < count {
            client.send(WsMessage::text(format!("client {sent}"))).unwrap();
            sent += 1;
        }
        let wait = if sent < count { Duration::from_millis(1) } else { TIMEOUT };
        client.get_mut().set_read_timeout(Some(wait)).unwrap();
        match client.read() {
            Ok(WsMessage::Text(text)) => received.push(text.as_str().to_owned()),
            Ok(WsMessage::Ping(_) | WsMessage::Pong(_)) => {}
            Ok(other) => panic!("unexpected {other:?}"),
            Err(WsError::Io(err)) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(err) => panic!("read failed: {err}"),
        }
    }
    assert_eq!(sent, count, "every client message was sent");
    client.get_mut().set_read_timeout(Some(TIMEOUT)).unwrap();
    received
}

/// Drives the closing handshake to its end: tungstenite reports `ConnectionClosed` once both sides
/// have sent their close frames and the server has closed the socket.
fn assert_closed_after_handshake(client: &mut Client) {
    loop {
        match client.read() {
            Ok(WsMessage::Close(_) | WsMessage::Ping(_) | WsMessage::Pong(_)) => {}
            Ok(other) => panic!("a message after the close: {other:?}"),
            Err(WsError::ConnectionClosed) => return,
            Err(err) => panic!("the close handshake failed: {err}"),
        }
    }
}
