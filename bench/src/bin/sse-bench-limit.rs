//! The benchmark contract served about as fast as this machine allows, as a yardstick: one thread,
//! epoll (mio), every event encoded once and appended to each subscriber's output buffer, which is
//! written whenever its socket can take more. No threads to wake, no queues, no per-event syscalls.
//!
//! `sse-bench-limit --port PORT`

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::process::ExitCode;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token};
use sse_bench::args::Args;
use sse_bench::contract::{self, EVENTS_PATH, PUBLISH_PATH, Publish};
use sse_bench::system;

const LISTENER: Token = Token(usize::MAX);
/// A subscriber's buffer is written out as soon as it holds this much, so a long burst does not pile
/// up in memory before the first write.
const FLUSH_AT: usize = 64 * 1024;
const MAX_HEAD: usize = 16 * 1024;
const STREAM_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: keep-alive\r\n\r\n";

/// What a connection is for, once its request head is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Still reading the request head.
    Request,
    /// An event stream.
    Subscriber,
    /// Answered: close once the answer is written.
    Closing,
}

struct Connection {
    stream: TcpStream,
    role: Role,
    input: Vec<u8>,
    output: Vec<u8>,
    written: usize,
}

impl Connection {
    /// Writes as much of the output as the socket takes. Err means the connection is done for.
    fn flush(&mut self) -> io::Result<()> {
        while self.written < self.output.len() {
            match self.stream.write(&self.output[self.written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.written += n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        // All written: give back a large buffer, so idle connections cost next to nothing.
        if self.output.capacity() > FLUSH_AT {
            self.output = Vec::new();
        } else {
            self.output.clear();
        }
        self.written = 0;
        Ok(())
    }

    fn pending(&self) -> usize {
        self.output.len() - self.written
    }
}

/// Every connection, by token, with a free list.
#[derive(Default)]
struct Connections {
    slots: Vec<Option<Connection>>,
    free: Vec<usize>,
    subscribers: Vec<usize>,
}

impl Connections {
    fn insert(&mut self, registry: &Registry, mut stream: TcpStream) -> io::Result<()> {
        let index = self.free.pop().unwrap_or(self.slots.len());
        registry.register(&mut stream, Token(index), Interest::READABLE | Interest::WRITABLE)?;
        let connection =
            Connection { stream, role: Role::Request, input: Vec::new(), output: Vec::new(), written: 0 };
        if index == self.slots.len() {
            self.slots.push(Some(connection));
        } else {
            self.slots[index] = Some(connection);
        }
        Ok(())
    }

    fn close(&mut self, registry: &Registry, index: usize) {
        if let Some(mut connection) = self.slots.get_mut(index).and_then(Option::take) {
            let _ = registry.deregister(&mut connection.stream);
            if connection.role == Role::Subscriber {
                self.subscribers.retain(|&s| s != index);
            }
            self.free.push(index);
        }
    }
}

fn main() -> ExitCode {
    let mut args = Args::from_env();
    let mut port = 0u16;
    let parsed = (|| {
        while let Some(flag) = args.next_flag()? {
            match flag.as_str() {
                "--port" => port = args.parsed(&flag)?,
                _ => return Err(format!("unknown option {flag}")),
            }
        }
        Ok::<(), String>(())
    })();
    if let Err(err) = parsed {
        eprintln!("sse-bench-limit: {err}\nusage: sse-bench-limit --port PORT");
        return ExitCode::from(2);
    }
    if let Err(err) = serve(port) {
        eprintln!("sse-bench-limit: {err}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn serve(port: u16) -> io::Result<()> {
    system::raise_open_file_limit()?;
    let mut listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))?;
    println!("listening on http://{}", listener.local_addr()?);
    let mut poll = Poll::new()?;
    poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut events = Events::with_capacity(1024);
    let mut connections = Connections::default();
    loop {
        if let Err(err) = poll.poll(&mut events, None) {
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        for event in &events {
            if event.token() == LISTENER {
                accept_all(&listener, poll.registry(), &mut connections);
            } else {
                let index = event.token().0;
                if event.is_readable() {
                    on_readable(poll.registry(), &mut connections, index);
                }
                if event.is_writable() {
                    flush_or_close(poll.registry(), &mut connections, index);
                }
            }
        }
    }
}

fn accept_all(listener: &TcpListener, registry: &Registry, connections: &mut Connections) {
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                if let Err(err) = connections.insert(registry, stream) {
                    eprintln!("sse-bench-limit: register: {err}");
                }
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => {
                // Out of file descriptors, mostly; the next readiness event tries again.
                eprintln!("sse-bench-limit: accept: {err}");
                return;
            }
        }
    }
}

fn flush_or_close(registry: &Registry, connections: &mut Connections, index: usize) {
    let Some(Some(connection)) = connections.slots.get_mut(index) else { return };
    let flushed = connection.flush();
    if flushed.is_err() || (connection.role == Role::Closing && connection.pending() == 0) {
        connections.close(registry, index);
    }
}

/// Reads what arrived: a request head to route, or (from a subscriber) nothing we need.
fn on_readable(registry: &Registry, connections: &mut Connections, index: usize) {
    let Some(Some(connection)) = connections.slots.get_mut(index) else { return };
    let mut buf = [0u8; 4096];
    loop {
        match connection.stream.read(&mut buf) {
            Ok(0) => return connections.close(registry, index),
            Ok(n) if connection.role == Role::Request => connection.input.extend_from_slice(&buf[..n]),
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return connections.close(registry, index),
        }
    }
    if connection.role != Role::Request {
        return;
    }
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    let (method, target) = match request.parse(&connection.input) {
        Ok(httparse::Status::Complete(_)) => {
            (request.method.unwrap_or("").to_owned(), request.path.unwrap_or("").to_owned())
        }
        Ok(httparse::Status::Partial) if connection.input.len() <= MAX_HEAD => return,
        _ => {
            answer(connection, "400 Bad Request", "bad request\n");
            return flush_or_close(registry, connections, index);
        }
    };
    connection.input = Vec::new();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    match (method.as_str(), path) {
        ("GET", EVENTS_PATH) => {
            connection.role = Role::Subscriber;
            connection.output.extend_from_slice(STREAM_HEAD);
            connections.subscribers.push(index);
            flush_or_close(registry, connections, index);
        }
        ("POST", PUBLISH_PATH) => {
            let status = match Publish::from_query(query) {
                Ok(publish) => {
                    broadcast(registry, connections, publish);
                    "200 OK"
                }
                Err(_) => "400 Bad Request",
            };
            if let Some(Some(connection)) = connections.slots.get_mut(index) {
                answer(connection, status, "");
            }
            flush_or_close(registry, connections, index);
        }
        _ => {
            answer(connection, "404 Not Found", "not found\n");
            flush_or_close(registry, connections, index);
        }
    }
}

fn answer(connection: &mut Connection, status: &str, body: &str) {
    connection.role = Role::Closing;
    let head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    connection.output.extend_from_slice(head.as_bytes());
    connection.output.extend_from_slice(body.as_bytes());
}

/// Encodes each event once and appends it to every subscriber's buffer, writing a buffer out once it
/// is large; at the end, writes out what every buffer holds.
fn broadcast(registry: &Registry, connections: &mut Connections, publish: Publish) {
    let mut event = Vec::with_capacity(publish.size + 64);
    let mut failed = Vec::new();
    for id in 0..publish.count {
        let sent_ns = contract::now_ns();
        event.clear();
        contract::encode_event(&mut event, id, &contract::event_data(sent_ns, publish.size));
        for &index in &connections.subscribers {
            let Some(Some(connection)) = connections.slots.get_mut(index) else { continue };
            connection.output.extend_from_slice(&event);
            if connection.pending() >= FLUSH_AT && connection.flush().is_err() {
                failed.push(index);
            }
        }
    }
    for index in connections.subscribers.clone() {
        let Some(Some(connection)) = connections.slots.get_mut(index) else { continue };
        if connection.flush().is_err() {
            failed.push(index);
        }
    }
    failed.sort_unstable();
    failed.dedup();
    for index in failed {
        connections.close(registry, index);
    }
}
