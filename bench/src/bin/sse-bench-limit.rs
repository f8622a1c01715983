//! The benchmark contract served about as fast as this machine allows, as a yardstick: one thread,
//! epoll (mio), events encoded once into batches of about 16 KiB, each batch appended to every
//! subscriber's output buffer and written at once if the socket can take it, else as soon as it
//! says it can. No threads to wake, no queues, no system call per event. A publish is produced
//! a batch per turn of the event loop, so writes keep flowing while it runs.
//!
//! `sse-bench-limit --port PORT`

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token};
use sse_bench::args::Args;
use sse_bench::contract::{self, EVENTS_PATH, PUBLISH_PATH, Publish};
use sse_bench::system;

const LISTENER: Token = Token(usize::MAX);
/// Bytes of events encoded per turn of the event loop while a publish runs.
const BATCH_BYTES: usize = 16 * 1024;
/// An output buffer that grew past this is given back once written out, so idle connections cost
/// next to nothing.
const KEEP_BUFFER: usize = 64 * 1024;
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
    /// A publish request being carried out: answered when its last batch is out.
    Publisher,
    /// Answered: close once the answer is written.
    Closing,
}

struct Connection {
    stream: TcpStream,
    role: Role,
    input: Vec<u8>,
    output: Vec<u8>,
    written: usize,
    /// False from a short write until the socket reports it can take more.
    writable: bool,
}

impl Connection {
    /// Writes as much of the output as the socket takes. Err means the connection is done for.
    fn flush(&mut self) -> io::Result<()> {
        while self.writable && self.written < self.output.len() {
            match self.stream.write(&self.output[self.written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    // A short write means the send buffer is full; epoll says when it is not.
                    self.writable = self.written + n == self.output.len();
                    self.written += n;
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        if self.written == self.output.len() {
            if self.output.capacity() > KEEP_BUFFER {
                self.output = Vec::new();
            } else {
                self.output.clear();
            }
            self.written = 0;
        }
        Ok(())
    }

    fn pending(&self) -> usize {
        self.output.len() - self.written
    }
}

/// A publish in progress: the next event id, and who asked.
struct Publishing {
    request: Publish,
    next: usize,
    publisher: usize,
}

/// Every connection, by token, with a free list.
#[derive(Default)]
struct Server {
    slots: Vec<Option<Connection>>,
    free: Vec<usize>,
    subscribers: Vec<usize>,
    publishing: VecDeque<Publishing>,
    batch: Vec<u8>,
}

impl Server {
    fn insert(&mut self, registry: &Registry, mut stream: TcpStream) -> io::Result<()> {
        let index = self.free.pop().unwrap_or(self.slots.len());
        registry.register(&mut stream, Token(index), Interest::READABLE | Interest::WRITABLE)?;
        let connection = Connection {
            stream,
            role: Role::Request,
            input: Vec::new(),
            output: Vec::new(),
            written: 0,
            writable: true,
        };
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
            match connection.role {
                Role::Subscriber => self.subscribers.retain(|&s| s != index),
                // The publish goes on; there is just nobody left to answer.
                Role::Publisher => {
                    for publishing in self.publishing.iter_mut().filter(|p| p.publisher == index) {
                        publishing.publisher = usize::MAX;
                    }
                }
                Role::Request | Role::Closing => {}
            }
            self.free.push(index);
        }
    }

    fn flush_or_close(&mut self, registry: &Registry, index: usize) {
        let Some(Some(connection)) = self.slots.get_mut(index) else { return };
        let flushed = connection.flush();
        if flushed.is_err() || (connection.role == Role::Closing && connection.pending() == 0) {
            self.close(registry, index);
        }
    }

    /// Reads what arrived: a request head to route, or (from a subscriber) nothing we need.
    fn on_readable(&mut self, registry: &Registry, index: usize) {
        let Some(Some(connection)) = self.slots.get_mut(index) else { return };
        let mut buf = [0u8; 4096];
        loop {
            match connection.stream.read(&mut buf) {
                Ok(0) => return self.close(registry, index),
                Ok(n) if connection.role == Role::Request => connection.input.extend_from_slice(&buf[..n]),
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.close(registry, index),
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
                return self.flush_or_close(registry, index);
            }
        };
        connection.input = Vec::new();
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        match (method.as_str(), path, Publish::from_query(query)) {
            ("GET", EVENTS_PATH, _) => {
                connection.role = Role::Subscriber;
                connection.output.extend_from_slice(STREAM_HEAD);
                self.subscribers.push(index);
            }
            ("POST", PUBLISH_PATH, Ok(request)) => {
                connection.role = Role::Publisher;
                self.publishing.push_back(Publishing { request, next: 0, publisher: index });
            }
            ("POST", PUBLISH_PATH, Err(err)) => answer(connection, "400 Bad Request", &format!("{err}\n")),
            _ => answer(connection, "404 Not Found", "not found\n"),
        }
        self.flush_or_close(registry, index);
    }

    /// Encodes the next batch of the current publish (each event stamped as it is encoded), hands it
    /// to every subscriber, and answers the publisher once its last batch is out.
    fn publish_batch(&mut self, registry: &Registry) {
        let Some(publishing) = self.publishing.front_mut() else { return };
        self.batch.clear();
        let request = publishing.request;
        while publishing.next < request.count && self.batch.len() < BATCH_BYTES {
            let sent_ns = contract::now_ns();
            contract::encode_event(
                &mut self.batch,
                publishing.next,
                &contract::event_data(sent_ns, request.size),
            );
            publishing.next += 1;
        }
        let finished = (publishing.next >= request.count).then_some(publishing.publisher);
        let mut failed = Vec::new();
        for &index in &self.subscribers {
            let Some(Some(connection)) = self.slots.get_mut(index) else { continue };
            connection.output.extend_from_slice(&self.batch);
            if connection.flush().is_err() {
                failed.push(index);
            }
        }
        for index in failed {
            self.close(registry, index);
        }
        if let Some(publisher) = finished {
            self.publishing.pop_front();
            if let Some(Some(connection)) = self.slots.get_mut(publisher) {
                answer(connection, "200 OK", "");
                self.flush_or_close(registry, publisher);
            }
        }
    }
}

fn answer(connection: &mut Connection, status: &str, body: &str) {
    connection.role = Role::Closing;
    let head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    connection.output.extend_from_slice(head.as_bytes());
    connection.output.extend_from_slice(body.as_bytes());
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
    let mut server = Server::default();
    loop {
        // While a publish runs, only look for readiness between batches; otherwise sleep.
        let timeout = (!server.publishing.is_empty()).then_some(Duration::ZERO);
        if let Err(err) = poll.poll(&mut events, timeout) {
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        for event in &events {
            if event.token() == LISTENER {
                accept_all(&listener, poll.registry(), &mut server);
                continue;
            }
            let index = event.token().0;
            if event.is_readable() || event.is_read_closed() {
                server.on_readable(poll.registry(), index);
            }
            if event.is_writable() {
                if let Some(Some(connection)) = server.slots.get_mut(index) {
                    connection.writable = true;
                }
                server.flush_or_close(poll.registry(), index);
            }
        }
        server.publish_batch(poll.registry());
    }
}

fn accept_all(listener: &TcpListener, registry: &Registry, server: &mut Server) {
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                if let Err(err) = server.insert(registry, stream) {
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
