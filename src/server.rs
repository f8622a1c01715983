//! The built-in blocking server: one accept thread, one OS thread per connection, routes by path.

use std::cell::Cell;
use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Condvar, Mutex};

use crate::auth::{AllowAll, Authenticator};
use crate::busy::{self, TurnedAway};
use crate::deadline::DeadlineWriter;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::fd_limit;
use crate::handler::{SseHandler, answer_error};
use crate::http::RequestLimits;
use crate::http::{self, ReadHead, Request, Response};
#[cfg(feature = "websocket")]
use crate::ws::WsHandler;

type RouteFn = dyn Fn(&Request) -> Response + Send + Sync;

/// The longest a connection over the limits is given to send its request head.
const BUSY_HEAD_WAIT: Duration = Duration::from_secs(2);
/// The send timeout of refusals (a 4xx or 5xx answer).
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(5);
/// A warning repeated for every connection (a failed `accept`, a connection turned away) is logged at
/// most once per this interval, with the number held back since.
const WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// Settings of the built-in [`Server`]. Every field documents its default.
///
/// The limits that keep one client, or many, from taking the whole server:
///
/// ```
/// use std::time::Duration;
/// use sse_handler::{client, RequestLimits, Response, Server, ServerConfig};
///
/// let config = ServerConfig::default()
///     .max_connections(2_000) // streams and plain requests together
///     .max_connections_per_ip(50) // so that one address cannot take them all
///     .request_limits(
///         RequestLimits::default()
///             .max_head_bytes(8 * 1024) // request line and headers; beyond: 431
///             .max_body_bytes(64 * 1024) // what a publish endpoint reads; beyond: 413
///             .read_timeout(Duration::from_secs(5)), // for the whole request, not per read
///     )
///     .shutdown_timeout(Duration::from_secs(2));
/// let server = Server::bind("127.0.0.1:0")?.config(config).get("/", |_| Response::html("hi")).spawn()?;
///
/// let timeout = Duration::from_secs(5);
/// let huge_header = "x".repeat(10 * 1024);
/// let answer = client::request(server.local_addr(), "GET", "/", &[("X-Big", &huge_header)], None, timeout)?;
/// assert_eq!(answer.status(), 431);
/// server.shutdown();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Limits on reading each request (head size, body size, time). Default [`RequestLimits::default`].
    pub request_limits: RequestLimits,
    /// Connections served at once (streams and plain requests together). Over the limit, a request
    /// for a stream gets a `200` that only carries a `retry:` hint (any other status would make a
    /// browser's EventSource give up for good) and other requests get `503`; either way without a
    /// thread of its own. Default 10 000.
    ///
    /// Each connection holds a file descriptor: when the process's open-file limit cannot hold this
    /// many (the usual soft limit is 1024), the server serves fewer and logs a warning that says how
    /// many. [`raise_fd_limit`](crate::raise_fd_limit) raises the limit.
    pub max_connections: usize,
    /// Connections served at once for one client IP address, answered like `max_connections` beyond.
    /// Default `None`: no per-address limit.
    pub max_connections_per_ip: Option<usize>,
    /// Stack size of each connection thread. The loop itself needs little; hooks, authenticators and
    /// route handlers run on this stack too. Default 256 KiB.
    pub thread_stack_size: usize,
    /// How long [`ServerHandle::shutdown`] waits for streams to end by themselves before it closes
    /// their sockets. Default 5 s.
    pub shutdown_timeout: Duration,
    /// Send timeout for plain responses (streams use their handler's). Default 30 s.
    pub send_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            request_limits: RequestLimits::default(),
            max_connections: 10_000,
            max_connections_per_ip: None,
            thread_stack_size: 256 * 1024,
            shutdown_timeout: Duration::from_secs(5),
            send_timeout: Duration::from_secs(30),
        }
    }
}

impl ServerConfig {
    /// Sets [`ServerConfig::request_limits`].
    pub fn request_limits(mut self, limits: RequestLimits) -> ServerConfig {
        self.request_limits = limits;
        self
    }

    /// Sets [`ServerConfig::max_connections`].
    pub fn max_connections(mut self, connections: usize) -> ServerConfig {
        self.max_connections = connections;
        self
    }

    /// Sets [`ServerConfig::max_connections_per_ip`].
    pub fn max_connections_per_ip(mut self, connections: usize) -> ServerConfig {
        self.max_connections_per_ip = Some(connections);
        self
    }

    /// Sets [`ServerConfig::thread_stack_size`].
    pub fn thread_stack_size(mut self, bytes: usize) -> ServerConfig {
        self.thread_stack_size = bytes;
        self
    }

    /// Sets [`ServerConfig::shutdown_timeout`].
    pub fn shutdown_timeout(mut self, timeout: Duration) -> ServerConfig {
        self.shutdown_timeout = timeout;
        self
    }

    /// Sets [`ServerConfig::send_timeout`].
    pub fn send_timeout(mut self, timeout: Duration) -> ServerConfig {
        self.send_timeout = timeout;
        self
    }
}

enum Endpoint {
    Stream(SseHandler),
    Publish {
        handler: SseHandler,
        authenticator: Box<dyn Authenticator>,
    },
    Plain {
        method: String,
        respond: Box<RouteFn>,
    },
    #[cfg(feature = "websocket")]
    WebSocket(WsHandler),
}

impl Endpoint {
    fn methods(&self) -> &str {
        match self {
            Endpoint::Stream(_) => "GET, OPTIONS",
            Endpoint::Publish { .. } => "POST",
            Endpoint::Plain { method, .. } => method,
            #[cfg(feature = "websocket")]
            Endpoint::WebSocket(_) => "GET",
        }
    }

    fn takes(&self, method: &str) -> bool {
        match self {
            Endpoint::Plain { method: get, .. } if get == "GET" && method == "HEAD" => true,
            _ => self.methods().split(", ").any(|m| m == method),
        }
    }
}

/// A blocking HTTP/1.1 server for event streams, a publish endpoint and plain routes.
///
/// ```no_run
/// use sse_handler::{Config, Response, Server, SseHandler};
///
/// let events = SseHandler::new(Config::default())?;
/// let server = Server::bind("127.0.0.1:8080")?
///     .stream("/events", &events)
///     .publish("/publish", &events)
///     .get("/", |_request| Response::html("<script>new EventSource('/events')</script>"))
///     .spawn()?;
/// println!("listening on http://{}", server.local_addr());
/// // ... later:
/// server.shutdown();
/// # Ok::<(), sse_handler::Error>(())
/// ```
pub struct Server {
    listener: TcpListener,
    routes: Vec<(String, Endpoint)>,
    config: ServerConfig,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let paths: Vec<&str> = self.routes.iter().map(|(path, _)| path.as_str()).collect();
        f.debug_struct("Server").field("listener", &self.listener).field("paths", &paths).finish()
    }
}

impl Server {
    /// Binds a listener to `addr` (`"127.0.0.1:0"` picks a free port).
    ///
    /// # Errors
    /// [`Error::Io`] if the address cannot be bound.
    pub fn bind(addr: impl ToSocketAddrs) -> Result<Server> {
        Ok(Server::from_listener(TcpListener::bind(addr)?))
    }

    /// Serves on a listener the caller has bound.
    pub fn from_listener(listener: TcpListener) -> Server {
        Server { listener, routes: Vec::new(), config: ServerConfig::default() }
    }

    /// Uses these settings instead of the defaults.
    pub fn config(mut self, config: ServerConfig) -> Server {
        self.config = config;
        self
    }

    /// Serves event streams of `handler` at `path` (`GET`, and `OPTIONS` for CORS preflights).
    pub fn stream(mut self, path: impl Into<String>, handler: &SseHandler) -> Server {
        self.routes.push((path.into(), Endpoint::Stream(handler.clone())));
        self
    }

    /// Serves WebSocket connections of `handler` at `path` (`GET` with an upgrade handshake). Bytes
    /// the client sent right after its handshake are handed over with the socket, not lost.
    #[cfg(feature = "websocket")]
    #[cfg_attr(docsrs, doc(cfg(feature = "websocket")))]
    pub fn websocket(mut self, path: impl Into<String>, handler: &WsHandler) -> Server {
        self.routes.push((path.into(), Endpoint::WebSocket(handler.clone())));
        self
    }

    /// Publishes to `handler` from `POST path?event=..&data=..&id=..&retry=..`, open to anyone. When
    /// `data` is absent, the request body is the data (its line breaks become `data:` lines). `retry`
    /// is in milliseconds. Answers `200` with `{"id":..,"connections":N}`, or `400` for an invalid event.
    pub fn publish(self, path: impl Into<String>, handler: &SseHandler) -> Server {
        self.publish_with(path, handler, AllowAll)
    }

    /// As [`publish`](Server::publish), with its own authenticator (streams keep theirs).
    pub fn publish_with(
        mut self,
        path: impl Into<String>,
        handler: &SseHandler,
        authenticator: impl Authenticator,
    ) -> Server {
        let endpoint = Endpoint::Publish { handler: handler.clone(), authenticator: Box::new(authenticator) };
        self.routes.push((path.into(), endpoint));
        self
    }

    /// Answers `GET` (and `HEAD`) on `path` with what `respond` returns. A panic in `respond` is
    /// answered `500`.
    pub fn get(
        self,
        path: impl Into<String>,
        respond: impl Fn(&Request) -> Response + Send + Sync + 'static,
    ) -> Server {
        self.route("GET", path, respond)
    }

    /// Answers `method` on `path` with what `respond` returns.
    pub fn route(
        mut self,
        method: impl Into<String>,
        path: impl Into<String>,
        respond: impl Fn(&Request) -> Response + Send + Sync + 'static,
    ) -> Server {
        let endpoint = Endpoint::Plain { method: method.into(), respond: Box::new(respond) };
        self.routes.push((path.into(), endpoint));
        self
    }

    /// The address the listener is bound to.
    ///
    /// # Errors
    /// [`Error::Io`] if the socket cannot say.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Starts the accept thread and returns at once.
    ///
    /// # Errors
    /// [`Error::Io`] if the thread cannot be started or the listener has no address.
    pub fn spawn(self) -> Result<ServerHandle> {
        let addr = self.listener.local_addr()?;
        let shared = Arc::new(ServerShared {
            routes: self.routes,
            config: within_open_files_limit(self.config),
            stopping: AtomicBool::new(false),
            live: Mutex::new(LiveConnections::default()),
            all_done: Condvar::new(),
            next_connection: AtomicU64::new(1),
        });
        // Connections over the limits are answered by one thread, through a bounded queue and a
        // bounded waiting room: a flood costs one thread and a fixed number of sockets.
        let (busy_sender, busy_queue) = crossbeam_channel::bounded::<TurnedAway>(64);
        let busy_shared = Arc::clone(&shared);
        let accept_busy = (busy_sender, busy_queue.clone());
        let busy_thread = thread::Builder::new().name("sse-busy".into()).spawn(move || {
            let limits = &busy_shared.config.request_limits;
            let answer = |request: Option<&Request>, limit, out: &mut Vec<u8>| {
                answer_busy(&busy_shared, request, limit, out);
            };
            busy::serve(&busy_queue, limits.max_head_bytes, limits.read_timeout.min(BUSY_HEAD_WAIT), &answer);
        })?;
        let listener = self.listener;
        let accept_shared = Arc::clone(&shared);
        let accept_thread = thread::Builder::new()
            .name("sse-accept".into())
            .spawn(move || accept_loop(&listener, &accept_shared, &accept_busy))?;
        log::info!("listening on http://{addr}");
        Ok(ServerHandle { addr, shared, accept_thread, busy_thread })
    }

    /// Serves on the current thread until the process ends.
    ///
    /// # Errors
    /// As [`spawn`](Server::spawn).
    pub fn run(self) -> Result<()> {
        let handle = self.spawn()?;
        let _ = handle.accept_thread.join();
        Ok(())
    }
}

/// A running [`Server`]. Dropping it leaves the server running; call [`shutdown`](ServerHandle::shutdown)
/// to stop it.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    shared: Arc<ServerShared>,
    accept_thread: JoinHandle<()>,
    busy_thread: JoinHandle<()>,
}

/// What [`ServerHandle::shutdown`] had to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Connections whose sockets had to be closed because they did not end within the shutdown timeout
    /// (a client that stopped reading, a route handler still running).
    pub forced: usize,
    /// Threads still running when `shutdown` gave up waiting (stuck in application code); 0 normally.
    pub still_running: usize,
}

impl ServerHandle {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many connections are being served now (streams and plain requests).
    pub fn connection_count(&self) -> usize {
        self.shared.live.lock().by_number.len()
    }

    /// Stops the server within [`ServerConfig::shutdown_timeout`] (plus a short grace for forced
    /// closes): stops accepting, shuts down every handler it serves (so streams write what is queued
    /// and a final `retry:` hint, and close), waits for the connection threads, closes the sockets of
    /// any that are still there, and joins the threads.
    pub fn shutdown(self) -> ShutdownReport {
        let timeout = self.shared.config.shutdown_timeout;
        self.shutdown_within(timeout)
    }

    /// As [`shutdown`](ServerHandle::shutdown), with its own time limit.
    pub fn shutdown_within(self, timeout: Duration) -> ShutdownReport {
        let shared = &self.shared;
        shared.stopping.store(true, Ordering::SeqCst);
        wake_accept(self.addr);
        let _ = self.accept_thread.join();
        // The accept loop dropped the busy queue's sender: the busy thread answers whoever still
        // waits, without waiting for them, and ends.
        let _ = self.busy_thread.join();

        for (_, endpoint) in &shared.routes {
            if let Endpoint::Stream(handler) | Endpoint::Publish { handler, .. } = endpoint {
                handler.shutdown();
            }
            #[cfg(feature = "websocket")]
            if let Endpoint::WebSocket(handler) = endpoint {
                handler.shutdown();
            }
        }
        // Requests still being read will never be served: end their reads now.
        for live in shared.live.lock().by_number.values() {
            let _ = live.socket.shutdown(Shutdown::Read);
        }
        let mut forced = 0;
        if !shared.wait_until_idle(Instant::now() + timeout) {
            for live in shared.live.lock().by_number.values() {
                let _ = live.socket.shutdown(Shutdown::Both);
                forced += 1;
            }
            shared.wait_until_idle(Instant::now() + Duration::from_secs(1));
        }
        let stragglers: Vec<Live> = shared.live.lock().by_number.drain().map(|(_, live)| live).collect();
        let still_running =
            stragglers.iter().filter(|live| live.thread.as_ref().is_some_and(|t| !t.is_finished())).count();
        for live in stragglers {
            if let Some(thread) = live.thread.filter(JoinHandle::is_finished) {
                let _ = thread.join();
            }
        }
        if still_running > 0 {
            log::warn!("shutdown: {still_running} connection threads did not end in time");
        }
        log::info!("server on {} shut down ({forced} connections closed by force)", self.addr);
        ShutdownReport { forced, still_running }
    }
}

struct ServerShared {
    routes: Vec<(String, Endpoint)>,
    config: ServerConfig,
    stopping: AtomicBool,
    /// Every connection being served, so that shutdown can end their reads and join their threads.
    live: Mutex<LiveConnections>,
    all_done: Condvar,
    next_connection: AtomicU64,
}

impl std::fmt::Debug for ServerShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerShared").field("config", &self.config).finish_non_exhaustive()
    }
}

struct Live {
    socket: Arc<TcpStream>,
    ip: Option<IpAddr>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct LiveConnections {
    by_number: HashMap<u64, Live>,
    per_ip: HashMap<IpAddr, usize>,
}

impl LiveConnections {
    /// Admits a connection if it is within the limits; otherwise says which limit it reached.
    fn admit(&mut self, number: u64, socket: &Arc<TcpStream>, config: &ServerConfig) -> Result<(), usize> {
        let ip = socket.peer_addr().ok().map(|peer| peer.ip());
        if self.by_number.len() >= config.max_connections {
            return Err(config.max_connections);
        }
        if let (Some(ip), Some(limit)) = (ip, config.max_connections_per_ip) {
            let count = self.per_ip.entry(ip).or_default();
            if *count >= limit {
                return Err(limit);
            }
            *count += 1;
        }
        self.by_number.insert(number, Live { socket: Arc::clone(socket), ip, thread: None });
        Ok(())
    }

    fn remove(&mut self, number: u64) {
        let Some(live) = self.by_number.remove(&number) else { return };
        if let Some(ip) = live.ip {
            if let Some(count) = self.per_ip.get_mut(&ip) {
                *count -= 1;
                if *count == 0 {
                    self.per_ip.remove(&ip);
                }
            }
        }
    }
}

impl ServerShared {
    /// Waits until no connection is left; false if `deadline` came first.
    fn wait_until_idle(&self, deadline: Instant) -> bool {
        let mut live = self.live.lock();
        while !live.by_number.is_empty() {
            if self.all_done.wait_until(&mut live, deadline).timed_out() {
                return live.by_number.is_empty();
            }
        }
        true
    }

    fn connection_done(&self, number: u64) {
        let mut live = self.live.lock();
        // Dropping our own JoinHandle detaches this thread, which is about to end anyway.
        live.remove(number);
        if live.by_number.is_empty() {
            self.all_done.notify_all();
        }
    }

    fn endpoint_for(&self, request: &Request) -> Result<&Endpoint> {
        let matching: Vec<&Endpoint> =
            self.routes.iter().filter(|(path, _)| path == request.path()).map(|(_, e)| e).collect();
        if let Some(endpoint) = matching.iter().find(|e| e.takes(request.method())) {
            return Ok(endpoint);
        }
        Err(if matching.is_empty() {
            Error::NotFound(request.path().to_owned())
        } else {
            let allowed: Vec<&str> = matching.iter().map(|e| e.methods()).collect();
            Error::MethodNotAllowed { allowed: allowed.join(", ") }
        })
    }
}

/// Connects to our own listener so that a blocked `accept` returns and sees the stop flag.
fn wake_accept(addr: SocketAddr) {
    let mut target = addr;
    if addr.ip().is_unspecified() {
        target.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    let _ = TcpStream::connect_timeout(&target, Duration::from_secs(1));
}

/// `config`, with `max_connections` lowered to what the open-file limit can serve (and a warning).
fn within_open_files_limit(mut config: ServerConfig) -> ServerConfig {
    let Some(open_files) = fd_limit::open_files_limit() else { return config };
    let most = fd_limit::connections_within(open_files);
    if config.max_connections > most {
        log::warn!(
            "max_connections is {} but the open-file limit ({open_files}) allows {most}: serving at most \
             {most} connections at once (raise the limit with `ulimit -n` or sse_handler::raise_fd_limit)",
            config.max_connections
        );
        config.max_connections = most;
    }
    config
}

/// Accepts, admits and starts a thread per connection; hands those over the limits to the busy
/// room through `busy`, the room's queue (both ends: a full queue makes its oldest entry give way).
fn accept_loop(
    listener: &TcpListener,
    shared: &Arc<ServerShared>,
    busy: &(Sender<TurnedAway>, Receiver<TurnedAway>),
) {
    let mut backoff = AcceptBackoff::default();
    let mut turned_away = Throttle::default();
    for incoming in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let stream = match incoming {
            Ok(stream) => stream,
            Err(err) => {
                let (pause, warn) = backoff.failed(Instant::now());
                if let Some(held_back) = warn {
                    log_safely(|| {
                        log::warn!(
                            "accept failed: {err}{}; pausing {pause:?}",
                            since_last_warning(held_back)
                        );
                    });
                }
                thread::sleep(pause);
                continue;
            }
        };
        backoff.succeeded();
        let number = shared.next_connection.fetch_add(1, Ordering::Relaxed);
        let socket = Arc::new(stream);
        let admitted = shared.live.lock().admit(number, &socket, &shared.config);
        if let Err(limit) = admitted {
            if let Some(held_back) = turned_away.allow(Instant::now()) {
                let peer = peer_name(socket.peer_addr().ok());
                log_safely(|| {
                    log::warn!(
                        "connection limit ({limit}) reached; turning away {peer}{}",
                        since_last_warning(held_back)
                    );
                });
            }
            if let Ok(stream) = Arc::try_unwrap(socket) {
                busy::hand_over(&busy.0, &busy.1, TurnedAway { stream, limit });
            }
            continue;
        }
        let thread_shared = Arc::clone(shared);
        let thread_socket = Arc::clone(&socket);
        let spawned = thread::Builder::new()
            .name(format!("sse-conn-{number}"))
            .stack_size(shared.config.thread_stack_size)
            .spawn(move || {
                let _slot = Slot { shared: &thread_shared, number };
                serve_connection(&thread_shared, &thread_socket);
            });
        match spawned {
            Ok(thread) => {
                if let Some(live) = shared.live.lock().by_number.get_mut(&number) {
                    live.thread = Some(thread);
                }
            }
            Err(err) => {
                log_safely(|| log::warn!("cannot start a connection thread: {err}"));
                shared.connection_done(number);
            }
        }
    }
}

fn since_last_warning(held_back: u64) -> String {
    match held_back {
        0 => String::new(),
        n => format!(" ({n} more since the last such warning)"),
    }
}

/// Paces the accept loop while `accept` fails (out of file descriptors, mostly, which fails the same
/// way until a connection closes), and keeps its warnings to one per [`WARNING_INTERVAL`].
#[derive(Debug)]
struct AcceptBackoff {
    pause: Duration,
    warnings: Throttle,
}

impl AcceptBackoff {
    const FIRST_PAUSE: Duration = Duration::from_millis(10);
    /// Also the longest a shutdown can wait for the accept loop to see it.
    const LONGEST_PAUSE: Duration = Duration::from_secs(1);

    /// After a failed `accept`: how long to pause, and whether to warn (with the number of warnings
    /// held back since the last one).
    fn failed(&mut self, now: Instant) -> (Duration, Option<u64>) {
        let pause = self.pause;
        self.pause = (pause * 2).min(AcceptBackoff::LONGEST_PAUSE);
        (pause, self.warnings.allow(now))
    }

    fn succeeded(&mut self) {
        self.pause = AcceptBackoff::FIRST_PAUSE;
    }
}

impl Default for AcceptBackoff {
    fn default() -> AcceptBackoff {
        AcceptBackoff { pause: AcceptBackoff::FIRST_PAUSE, warnings: Throttle::default() }
    }
}

/// Lets a repeated warning through once per [`WARNING_INTERVAL`], counting those it holds back.
#[derive(Debug, Default)]
struct Throttle {
    last: Option<Instant>,
    held_back: u64,
}

impl Throttle {
    /// `Some(held back since the last one)` if a warning may be logged now.
    fn allow(&mut self, now: Instant) -> Option<u64> {
        if self.last.is_some_and(|last| now.saturating_duration_since(last) < WARNING_INTERVAL) {
            self.held_back += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held_back))
    }
}

/// Logs without letting a panicking logger end the thread that logs.
fn log_safely(log: impl FnOnce()) {
    let _ = catch_unwind(AssertUnwindSafe(log));
}

/// A connection's place in the server's count, given back when its thread ends, however it ends.
struct Slot<'a> {
    shared: &'a ServerShared,
    number: u64,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.shared.connection_done(self.number);
    }
}

/// The answer to a connection over the limits: a stream request gets its handler's "come back
/// later"; anything else, or a head that did not come, `503`.
fn answer_busy(shared: &ServerShared, request: Option<&Request>, limit: usize, out: &mut Vec<u8>) {
    if let Some(request) = request {
        if let Ok(Endpoint::Stream(handler)) = shared.endpoint_for(request) {
            return handler.answer_busy(out, request);
        }
    }
    answer_error(out, &Error::TooManyConnections { limit });
}

/// One connection's thread. A panic on the way (an authenticator, a route handler, a logger) costs
/// this connection only: it is answered `500` unless its answer had begun, and the caller's [`Slot`]
/// gives its place back.
fn serve_connection(shared: &ServerShared, socket: &Arc<TcpStream>) {
    let answer_begun = Cell::new(false);
    if catch_unwind(AssertUnwindSafe(|| serve_request(shared, socket, &answer_begun))).is_err() {
        if !answer_begun.get() {
            let mut out = DeadlineWriter::new(socket, REFUSAL_TIMEOUT);
            let _ = Response::new(500).with_body("internal server error\n").write_to(&mut out, false);
        }
        http::linger_close(socket);
        let answered = if answer_begun.get() { "closed" } else { "answered 500" };
        log_safely(|| log::error!("a request from {:?} panicked; {answered}", socket.peer_addr().ok()));
    }
}

/// Read the head, route it, serve it.
fn serve_request(shared: &ServerShared, socket: &Arc<TcpStream>, answer_begun: &Cell<bool>) {
    let _ = socket.set_nodelay(true);
    let limits = &shared.config.request_limits;
    let refuse_with = |err: &Error| refuse(socket, err, answer_begun);
    let head = match http::read_head(socket, limits) {
        Ok(head) => head,
        // Shutdown ended this read; say so rather than blame the request.
        Err(_) if shared.stopping.load(Ordering::SeqCst) => return refuse_with(&Error::ShutDown),
        Err(err) => return refuse_with(&err),
    };
    let request = &head.request;
    let endpoint = match shared.endpoint_for(request) {
        Ok(endpoint) => endpoint,
        Err(err) => return refuse_with(&err),
    };
    let _ = socket.set_write_timeout(Some(shared.config.send_timeout));
    match endpoint {
        Endpoint::Stream(handler) => {
            // The handler writes when and what it likes: a panic that escapes it cannot be answered.
            answer_begun.set(true);
            let peer = peer_name(request.peer());
            // The request is handed over, to be freed once the stream is open.
            match handler.accept_shared(Arc::clone(socket), head.request) {
                Ok(Some(reason)) => log::debug!("{peer}: stream ended: {reason}"),
                Ok(None) => {}
                Err(err) => {
                    log::debug!("{peer}: stream refused: {err}");
                    http::linger_close(socket);
                }
            }
        }
        Endpoint::Publish { handler, authenticator } => {
            match publish(handler, authenticator.as_ref(), socket, &head, limits) {
                Ok(response) => write_response(socket, &response, false, shared, answer_begun),
                Err(err) => refuse_with(&err),
            }
        }
        #[cfg(feature = "websocket")]
        Endpoint::WebSocket(handler) => {
            answer_begun.set(true);
            match handler.accept_shared(socket, request, &head.leftover) {
                Ok(closed) => log::debug!("{}: websocket ended: {closed}", peer_name(request.peer())),
                Err(err) => log::debug!("{}: websocket refused: {err}", peer_name(request.peer())),
            }
        }
        Endpoint::Plain { respond, .. } => {
            let response = catch_unwind(AssertUnwindSafe(|| respond(request))).unwrap_or_else(|_| {
                log::error!("the handler for {} {} panicked", request.method(), request.path());
                Response::new(500).with_body("internal server error\n")
            });
            write_response(socket, &response, request.method() == "HEAD", shared, answer_begun);
        }
    }
}

/// How logs name a client: its address, or "an unknown peer" when the socket cannot say (it has
/// already been reset, for instance).
fn peer_name(peer: Option<SocketAddr>) -> String {
    peer.map_or_else(|| "an unknown peer".to_owned(), |addr| addr.to_string())
}

/// Answers a request that failed, then closes without destroying the answer.
fn refuse(socket: &TcpStream, err: &Error, answer_begun: &Cell<bool>) {
    answer_error(&mut Answer::new(socket, REFUSAL_TIMEOUT, answer_begun), err);
    if err.http_status().is_some() {
        http::linger_close(socket);
    }
}

fn write_response(
    socket: &TcpStream,
    response: &Response,
    head_only: bool,
    shared: &ServerShared,
    answer_begun: &Cell<bool>,
) {
    let mut out = Answer::new(socket, shared.config.send_timeout, answer_begun);
    if let Err(err) = response.write_to(&mut out, head_only) {
        log::debug!("could not write a {} response: {err}", response.status());
    }
}

/// The writer of a plain answer: within one deadline, and noting that the answer has begun, after
/// which a panic can no longer be answered `500`.
struct Answer<'a> {
    out: DeadlineWriter<'a>,
    begun: &'a Cell<bool>,
}

impl<'a> Answer<'a> {
    fn new(socket: &'a TcpStream, timeout: Duration, begun: &'a Cell<bool>) -> Answer<'a> {
        Answer { out: DeadlineWriter::new(socket, timeout), begun }
    }
}

impl Write for Answer<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.begun.set(true);
        self.out.write(bytes)
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.begun.set(true);
        self.out.write_all(bytes)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Go `websse`'s publish handler: one event from the query parameters, or the body as its data.
fn publish(
    handler: &SseHandler,
    authenticator: &dyn Authenticator,
    socket: &TcpStream,
    head: &ReadHead,
    limits: &RequestLimits,
) -> Result<Response> {
    let request = &head.request;
    catch_unwind(AssertUnwindSafe(|| authenticator.authenticate(request)))
        .map_err(|_| {
            log::error!("the publish authenticator panicked on {} {}", request.method(), request.path());
            Error::Panicked("the authenticator")
        })?
        .map_err(|rejection| Error::Rejected(Box::new(rejection)))?;
    let body = http::read_body(socket, head, limits)?;
    let data = match request.query_value("data") {
        Some(data) => data,
        None => String::from_utf8(body).map_err(|_| Error::BadRequest("the body is not UTF-8 text"))?,
    };
    let mut event = Event::builder().data(data);
    if let Some(event_type) = request.query_value("event") {
        event = event.event(event_type);
    }
    if let Some(id) = request.query_value("id") {
        event = event.id(id);
    }
    if let Some(retry) = request.query_value("retry") {
        let millis: u64 = retry.parse().map_err(|_| Error::BadRequest("retry must be whole milliseconds"))?;
        event = event.retry(Duration::from_millis(millis));
    }
    let sent = handler.send_all(event.build()?)?;
    let id = sent.id.map_or_else(|| "null".to_owned(), |id| json_string(&id));
    Ok(Response::new(200)
        .with_header("Content-Type", "application/json")
        .with_body(format!("{{\"id\":{id},\"connections\":{}}}\n", sent.connections)))
}

/// A JSON string literal (the one place we write JSON without the `json` feature).
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_named_by_their_address() {
        assert_eq!(peer_name(Some(SocketAddr::from(([127, 0, 0, 1], 43918)))), "127.0.0.1:43918");
        assert_eq!(peer_name(Some("[::1]:8080".parse().unwrap())), "[::1]:8080");
        assert_eq!(peer_name(None), "an unknown peer");
    }

    #[test]
    fn accept_failures_back_off_and_warn_once_per_interval() {
        // Thirty seconds of an `accept` that always fails (out of file descriptors), in simulated time.
        let mut backoff = AcceptBackoff::default();
        let start = Instant::now();
        let (mut now, mut attempts, mut warnings, mut held_back) = (start, 0, 0, 0);
        while now < start + Duration::from_secs(30) {
            attempts += 1;
            let (pause, warn) = backoff.failed(now);
            if let Some(count) = warn {
                warnings += 1;
                held_back += count;
            }
            now += pause;
        }
        // A fixed 10 ms pause and a warning each time made 3000 of each.
        assert!(attempts <= 40, "{attempts} attempts");
        assert_eq!(warnings, 3, "at 0, 10 and 20 s");
        let not_yet_told = backoff.warnings.held_back;
        assert_eq!(warnings + held_back + not_yet_told, attempts, "every failure is counted");
        backoff.succeeded();
        assert_eq!(backoff.failed(now).0, AcceptBackoff::FIRST_PAUSE, "a success starts over");
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\u{1}é"), "\"a\\\"b\\\\c\\u0001é\"");
    }
}
