//! Helpers shared by the integration tests: a server on 127.0.0.1:0, clients over plain `TcpStream`,
//! and bounded waits.
#![allow(dead_code, unreachable_pub)] // each test file uses a different subset

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use sse_handler::client::{self, Body, EventStream, Item, ReceivedEvent};
use sse_handler::{Config, HandlerBuilder, Server, ServerConfig, ServerHandle, SseHandler};

/// The longest any test waits for something it expects.
pub const TIMEOUT: Duration = Duration::from_secs(10);

pub struct TestServer {
    pub handle: Option<ServerHandle>,
    pub handler: SseHandler,
    pub addr: SocketAddr,
}

impl TestServer {
    pub fn shutdown(&mut self) -> sse_handler::ShutdownReport {
        self.handle.take().expect("running").shutdown()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown_within(Duration::from_secs(2));
        }
    }
}

/// A server with the handler at `/events` and its publish endpoint at `/publish`.
pub fn start(config: Config) -> TestServer {
    start_with(SseHandler::builder(config), ServerConfig::default())
}

pub fn start_with(builder: HandlerBuilder, server_config: ServerConfig) -> TestServer {
    let handler = builder.build().expect("valid config");
    let handle = Server::bind("127.0.0.1:0")
        .expect("bind")
        .config(server_config)
        .stream("/events", &handler)
        .publish("/publish", &handler)
        .spawn()
        .expect("spawn");
    let addr = handle.local_addr();
    TestServer { handle: Some(handle), handler, addr }
}

/// Opens a stream and checks it was accepted. The connection is registered by the time this returns.
pub fn subscribe(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> client::ReceivedResponse {
    let mut response = connect_stream(addr, path, headers);
    expect_opening(&mut response);
    response
}

/// Opens a stream and checks the status only: what comes first is the caller's to read.
pub fn connect_stream(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> client::ReceivedResponse {
    let response = client::connect(addr, path, headers, TIMEOUT).expect("connect");
    assert_eq!(response.status(), 200, "{:?}", response.headers());
    response
}

/// Reads what every stream starts with right after its head: a `retry:` hint where one is
/// configured, else a short comment.
pub fn expect_opening(response: &mut client::ReceivedResponse) {
    let opening = next_item(response.events());
    assert!(matches!(&opening, Item::Retry(_)) || opening == Item::Comment("open".into()), "{opening:?}");
}

pub fn next_event(stream: &mut EventStream<Body>) -> ReceivedEvent {
    stream.next_event().expect("read within the timeout").expect("stream still open")
}

/// The next non-event item (comment or retry) or event, whatever comes.
pub fn next_item(stream: &mut EventStream<Body>) -> Item {
    stream.next_item().expect("read within the timeout").expect("stream still open")
}

/// Reads until the server closes the stream, returning the events seen on the way.
pub fn read_to_end(stream: &mut EventStream<Body>) -> Vec<ReceivedEvent> {
    let mut events = Vec::new();
    while let Some(event) = stream.next_event().expect("the stream ends within the timeout") {
        events.push(event);
    }
    events
}

/// Waits (bounded) until `condition` holds.
pub fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::yield_now();
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Sends raw bytes and returns everything the server answers until it closes the connection.
pub fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.write_all(request).expect("send");
    read_until_close(&mut stream)
}

pub fn read_until_close(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("the server answers and closes within the timeout");
    String::from_utf8_lossy(&answer).into_owned()
}

/// Reads from `stream` until `needle` has been seen, returning everything read.
pub fn read_until(stream: &mut TcpStream, needle: &[u8]) -> Vec<u8> {
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    while !seen.windows(needle.len()).any(|w| w == needle) {
        let n = stream.read(&mut chunk).expect("read within the timeout");
        assert!(
            n > 0,
            "closed before {:?}; got {:?}",
            String::from_utf8_lossy(needle),
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&chunk[..n]);
    }
    seen
}

/// The status code of a raw HTTP answer.
pub fn status_of(answer: &str) -> u16 {
    answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status in {answer:?}"))
}

/// POSTs to the publish endpoint and returns (status, body).
pub fn publish(
    addr: SocketAddr,
    query: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> (u16, String) {
    let target = format!("/publish{query}");
    let response = client::request(addr, "POST", &target, headers, body, TIMEOUT).expect("publish");
    let status = response.status();
    let body = response.read_body().expect("read the answer");
    (status, String::from_utf8_lossy(&body).into_owned())
}
