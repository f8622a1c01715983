//! Helpers for the WebSocket tests: a server on 127.0.0.1:0, a raw handshake over a plain `TcpStream`,
//! hand-made frames, and a frame parser written independently of the crate's codec.
#![allow(dead_code, unreachable_pub)] // each test file uses a different subset

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use sse_handler::ws::{Closed, Message, WsConfig, WsHandler, WsHandlerBuilder};
use sse_handler::{ConnectionInfo, Server, ServerHandle};

/// The longest any test waits for something it expects.
pub const TIMEOUT: Duration = Duration::from_secs(10);

pub struct WsServer {
    pub handle: Option<ServerHandle>,
    pub handler: WsHandler,
    pub addr: SocketAddr,
    /// Every message the `on_message` hook saw, with the id of its connection.
    pub messages: Receiver<(u64, Message)>,
    /// Every `on_close` call.
    pub closes: Receiver<(ConnectionInfo, Closed)>,
}

impl WsServer {
    pub fn shutdown(&mut self) -> sse_handler::ShutdownReport {
        self.handle.take().expect("running").shutdown()
    }

    pub fn next_message(&self) -> (u64, Message) {
        self.messages.recv_timeout(TIMEOUT).expect("a message reaches the hook in time")
    }

    pub fn next_close(&self) -> Closed {
        self.closes.recv_timeout(TIMEOUT).expect("the close hook runs in time").1
    }
}

impl Drop for WsServer {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown_within(Duration::from_secs(2));
        }
    }
}

/// A server with a handler at `/ws` whose message and close hooks report to the returned receivers.
pub fn start(config: WsConfig) -> WsServer {
    start_with(|builder| builder, config)
}

/// As [`start`], with more set up on the builder (the reporting hooks are added after `customize`).
pub fn start_with(
    customize: impl FnOnce(WsHandlerBuilder) -> WsHandlerBuilder,
    config: WsConfig,
) -> WsServer {
    let (message_tx, messages) = mpsc::channel();
    let (close_tx, closes) = mpsc::channel();
    let handler = customize(WsHandler::builder(config))
        .on_message(move |conn, message| {
            let _ = message_tx.send((conn.id().as_u64(), message));
        })
        .on_close(move |info, closed| {
            let _ = close_tx.send((info.clone(), closed.clone()));
        })
        .build()
        .expect("valid config");
    let handle = Server::bind("127.0.0.1:0").unwrap().websocket("/ws", &handler).spawn().expect("spawn");
    let addr = handle.local_addr();
    WsServer { handle: Some(handle), handler, addr, messages, closes }
}

/// Waits (bounded) until `condition` holds.
pub fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// A handshake request for `path` with extra header lines (each ending in `\r\n`).
pub fn handshake_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// Connects, sends a handshake and reads the `101`; returns the socket, ready for frames.
pub fn open(addr: SocketAddr) -> TcpStream {
    open_with(addr, "/ws", "", &[])
}

/// As [`open`], with extra header lines and bytes sent in the same write right after the head.
pub fn open_with(addr: SocketAddr, path: &str, extra: &str, after_head: &[u8]) -> TcpStream {
    handshake(TcpStream::connect(addr).expect("connect"), path, extra, after_head)
}

/// As [`open`], over a socket whose receive buffer is fixed at about `bytes` before it connects (the
/// kernel does not grow it then): a client that does not read holds little in its kernel, so what the
/// server sends it piles up on the server's side.
pub fn open_with_receive_buffer(addr: SocketAddr, bytes: usize) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)
        .expect("a socket");
    socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
    socket.connect(&addr.into()).expect("connect");
    handshake(socket.into(), "/ws", "", &[])
}

/// Sends a handshake on a connected socket and reads the `101`; returns the socket, ready for frames.
pub fn handshake(mut stream: TcpStream, path: &str, extra: &str, after_head: &[u8]) -> TcpStream {
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut request = handshake_request(path, extra).into_bytes();
    request.extend_from_slice(after_head);
    stream.write_all(&request).unwrap();
    let head = read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"), "{head}");
    assert!(head.contains(&format!("Sec-WebSocket-Accept: {ACCEPT}\r\n")), "{head}");
    stream
}

/// Reads an HTTP response head byte by byte, so that nothing after it is consumed.
pub fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).expect("the head arrives in time");
        assert!(n == 1, "closed in the head: {:?}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

/// Sends raw bytes and returns everything the server answers until it closes the connection.
pub fn raw_exchange(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("the server answers and closes in time");
    String::from_utf8_lossy(&answer).into_owned()
}

pub fn status_of(answer: &str) -> u16 {
    answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status in {answer:?}"))
}

pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CONTINUATION: u8 = 0x0;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

/// A masked client frame, built by hand: `first` is the whole first byte (FIN, RSV, opcode).
pub fn raw_frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let key = [0x12, 0x34, 0x56, 0x78];
    let mask_bit = if masked { 0x80 } else { 0 };
    let mut frame = vec![first];
    match payload.len() {
        len if len < 126 => frame.push(mask_bit | len as u8),
        len if len <= 0xFFFF => {
            frame.push(mask_bit | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            frame.push(mask_bit | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    if masked {
        frame.extend_from_slice(&key);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        frame.extend_from_slice(payload);
    }
    frame
}

/// A final, masked frame.
pub fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    raw_frame(0x80 | opcode, payload, true)
}

/// A non-final, masked frame.
pub fn fragment(opcode: u8, payload: &[u8]) -> Vec<u8> {
    raw_frame(opcode, payload, true)
}

pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    payload
}

/// One frame from the server: (FIN, opcode, payload). Server frames must not be masked.
pub fn read_frame(stream: &mut impl Read) -> (bool, u8, Vec<u8>) {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).expect("a frame arrives in time");
    assert_eq!(head[0] & 0x70, 0, "no reserved bits from the server");
    assert_eq!(head[1] & 0x80, 0, "server frames are not masked");
    let len = match head[1] & 0x7F {
        126 => {
            let mut b = [0u8; 2];
            stream.read_exact(&mut b).unwrap();
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            stream.read_exact(&mut b).unwrap();
            u64::from_be_bytes(b) as usize
        }
        len => len as usize,
    };
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).unwrap();
    (head[0] & 0x80 != 0, head[0] & 0x0F, payload)
}

/// Reads frames until a close frame, returning its code (`None` for an empty close) and the data
/// frames seen on the way.
pub fn read_until_close(stream: &mut TcpStream) -> (Option<u16>, Vec<(u8, Vec<u8>)>) {
    let mut seen = Vec::new();
    loop {
        let (_, opcode, payload) = read_frame(stream);
        if opcode == CLOSE {
            let code = (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
            return (code, seen);
        }
        seen.push((opcode, payload));
    }
}

/// Asserts that the server sends a close frame with `code` and then closes the TCP connection.
pub fn expect_close(stream: &mut TcpStream, code: u16) {
    let (got, _) = read_until_close(stream);
    assert_eq!(got, Some(code), "close code");
    expect_eof(stream);
}

/// Asserts that the server closes the TCP connection (reading nothing more, or a reset).
pub fn expect_eof(stream: &mut TcpStream) {
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty(), "bytes after the close frame: {rest:?}"),
        Err(err) => assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}"),
    }
}

/// The text of the next data frame from the server.
pub fn read_text(stream: &mut TcpStream) -> String {
    let (fin, opcode, payload) = read_frame(stream);
    assert!(fin && opcode == TEXT, "expected a text frame, got opcode {opcode}");
    String::from_utf8(payload).unwrap()
}

/// The full-duplex contract both interop tests drive: `start N` makes the server send `server 0` ..
/// `server N-1`, then `server done`, from a thread of the application's own while the client keeps
/// sending; `finish` closes with 4001 "all done"; any other text is passed on to `got`.
pub fn duplex_handler(got: Sender<Message>) -> WsHandler {
    WsHandler::builder(WsConfig::default())
        .on_message(move |conn, message| {
            let text = message.as_text().expect("text").to_owned();
            if let Some(count) = text.strip_prefix("start ") {
                let count: usize = count.parse().unwrap();
                let (handler, id) = (conn.handler().clone(), conn.id());
                std::thread::spawn(move || {
                    for n in 0..count {
                        handler.send_one(id, format!("server {n}")).expect("send_one");
                    }
                    handler.send_one(id, "server done").expect("send_one");
                });
            } else if text == "finish" {
                conn.close(4001, "all done").unwrap();
            } else {
                let _ = got.send(Message::Text(text));
            }
        })
        .build()
        .unwrap()
}
