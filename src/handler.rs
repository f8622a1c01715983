//! [`SseHandler`]: the connection registry, publishing, replay, and the opening of one stream.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::io::Write;
use std::net::TcpStream;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::RwLock;

use crate::auth::{AllowAll, Authenticator};
use crate::config::{Config, OverflowPolicy, UnknownIdPolicy, is_valid_event_type};
use crate::connection::{self, Pacing, Private, Stream};
use crate::deadline::DeadlineWriter;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::http::{self, Request, Response};
use crate::log::{EventLog, MemoryLog};
use crate::registry::{
    CloseReason, Connection, ConnectionId, ConnectionInfo, ConnectionStats, Push, Queue, QueueLimits,
    Registry, Replay,
};
use crate::stats::{Counters, CountingWriter, Stats};

/// Written right after a stream's head when no `retry:` hint is configured.
const OPENING_COMMENT: &[u8] = b": open\n\n";

/// The type of events published without one, always allowed: clients see them as `message`.
const UNTYPED: &str = "message";

type ConnectHook = Box<dyn Fn(&mut NewConnection<'_>) + Send + Sync>;
type CloseHook = Box<dyn Fn(&ConnectionInfo, &CloseReason) + Send + Sync>;

/// Serves Server-Sent Event streams and publishes events to them.
///
/// A cheap handle: clones share the same connections, event log and settings, so hand one to every
/// thread that publishes. Publishing appends the event to the log and returns at once, whatever the
/// clients are doing. Each open stream runs on its own thread (the built-in [`Server`](crate::Server)'s
/// or the one that called [`accept`](SseHandler::accept)), which reads the log from its own position
/// and writes what it finds, so a client that reads slowly only falls behind in the log.
///
/// ```no_run
/// use sse_handler::{Event, SseHandler, Config, Request, Response};
///
/// let handler = SseHandler::new(Config::default())?;
/// let listener = std::net::TcpListener::bind("127.0.0.1:8080")?;
/// let publisher = handler.clone();
/// std::thread::spawn(move || {
///     for n in 0.. {
///         let _ = publisher.send_all(Event::data(format!("tick {n}")));
///         std::thread::sleep(std::time::Duration::from_secs(1));
///     }
/// });
/// for stream in listener.incoming() {
///     let (stream, handler) = (stream?, handler.clone());
///     std::thread::spawn(move || {
///         let Ok((request, _)) = Request::read_from(&stream, &handler.config().request_limits) else {
///             return; // answered (400, 431) and closed already
///         };
///         if request.path() == "/events" {
///             let _ = handler.accept(stream, &request);
///         } else {
///             let _ = Response::new(404).send_and_close(&stream);
///         }
///     });
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct SseHandler {
    shared: Arc<Shared>,
}

struct Shared {
    config: Config,
    heartbeat_nanos: AtomicU64,
    heartbeat_event: Event,
    /// The event types allowed, when limited: [`Config::event_types`], and those registered since.
    event_types: Option<RwLock<HashSet<String>>>,
    registry: Registry<Private>,
    /// Where broadcast events live; every stream reads it from its own position.
    log: Box<dyn EventLog>,
    next_connection: AtomicU64,
    authenticator: Box<dyn Authenticator>,
    on_connect: Option<ConnectHook>,
    on_close: Option<CloseHook>,
    shut_down: AtomicBool,
    queue_limits: QueueLimits,
    counters: Counters,
    /// State of the small generator behind `retry:` jitter (not for anything secret).
    jitter_state: AtomicU64,
}

/// What [`SseHandler::send_all`] did with an event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Sent {
    /// The event's id: the publisher's, or the one the handler gave it.
    pub id: Option<String>,
    /// How many streams were open when it was published: each writes it, unless its `?event=`
    /// subscription leaves it out.
    pub connections: usize,
}

/// A connection about to start streaming, as the connect hook sees it.
///
/// Events sent here are written right after the replay and before any live event. They are for this
/// client only, whatever its `?event=` subscription (as with [`SseHandler::send_one`]), so they are
/// not recorded in the log.
#[derive(Debug)]
pub struct NewConnection<'a> {
    info: &'a ConnectionInfo,
    welcome: Vec<Event>,
}

impl NewConnection<'_> {
    /// Who connected, from where, asking for what.
    pub fn info(&self) -> &ConnectionInfo {
        self.info
    }

    /// Queues an event for this client alone (a welcome, the current state, ...). It is written
    /// whatever the client's `?event=` subscription, since it is addressed to this client, as with
    /// [`SseHandler::send_one`]; give it a type the client listens to, or none (`message`).
    pub fn send(&mut self, event: Event) {
        self.welcome.push(event);
    }
}

/// Sets up an [`SseHandler`] with an authenticator, hooks or another event log.
#[must_use = "a HandlerBuilder does nothing until `build` is called"]
pub struct HandlerBuilder {
    config: Config,
    authenticator: Box<dyn Authenticator>,
    log: Option<Box<dyn EventLog>>,
    on_connect: Option<ConnectHook>,
    on_close: Option<CloseHook>,
}

impl HandlerBuilder {
    /// Who may open a stream (default [`AllowAll`]).
    pub fn authenticator(mut self, authenticator: impl Authenticator) -> Self {
        self.authenticator = Box::new(authenticator);
        self
    }

    /// Where broadcast events live (default: a [`MemoryLog`] bounded by the config's `history_*`
    /// settings).
    pub fn log(mut self, log: impl EventLog) -> Self {
        self.log = Some(Box::new(log));
        self
    }

    /// Called on the connection's thread when a stream opens, before anything is written; it may
    /// [`send`](NewConnection::send) events to that client alone, which it gets whatever its
    /// `?event=` subscription.
    pub fn on_connect(mut self, hook: impl Fn(&mut NewConnection<'_>) + Send + Sync + 'static) -> Self {
        self.on_connect = Some(Box::new(hook));
        self
    }

    /// Called on the connection's thread when a stream has closed, with the reason.
    pub fn on_close(mut self, hook: impl Fn(&ConnectionInfo, &CloseReason) + Send + Sync + 'static) -> Self {
        self.on_close = Some(Box::new(hook));
        self
    }

    /// Checks the config and makes the handler.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when a config value is out of range (see [`Config::validate`]).
    pub fn build(self) -> Result<SseHandler> {
        self.config.validate()?;
        let config = &self.config;
        let log = self.log.unwrap_or_else(|| {
            let mut log = MemoryLog::new(config.history_capacity).max_bytes(config.history_max_bytes);
            if let Some(age) = config.history_max_age {
                log = log.max_age(age);
            }
            Box::new(log)
        });
        // A connection's own queue holds what `send_one` and the connect hook address to it alone.
        let queue_limits = QueueLimits {
            messages: config.queue_capacity,
            bytes: config.queue_max_bytes,
            overflow: OverflowPolicy::Disconnect,
        };
        let seed =
            SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(1, |t| t.as_nanos() as u64);
        let heartbeat_event = Event::comment(&self.config.heartbeat_comment);
        let event_types =
            config.event_types.as_ref().map(|types| RwLock::new(types.iter().cloned().collect()));
        Ok(SseHandler {
            shared: Arc::new(Shared {
                heartbeat_nanos: AtomicU64::new(duration_nanos(self.config.heartbeat)),
                heartbeat_event,
                event_types,
                registry: Registry::default(),
                log,
                next_connection: AtomicU64::new(1),
                authenticator: self.authenticator,
                on_connect: self.on_connect,
                on_close: self.on_close,
                shut_down: AtomicBool::new(false),
                queue_limits,
                counters: Counters::default(),
                jitter_state: AtomicU64::new(seed | 1),
                config: self.config,
            }),
        })
    }
}

impl std::fmt::Debug for HandlerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandlerBuilder").field("config", &self.config).finish_non_exhaustive()
    }
}

impl std::fmt::Debug for SseHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseHandler")
            .field("connections", &self.connection_count())
            .field("heartbeat", &self.heartbeat())
            .field("shut_down", &self.is_shut_down())
            .finish_non_exhaustive()
    }
}

fn duration_nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

impl Pacing for Shared {
    fn heartbeat(&self) -> Duration {
        Duration::from_nanos(self.heartbeat_nanos.load(Ordering::Relaxed))
    }

    fn heartbeat_event(&self) -> &Event {
        &self.heartbeat_event
    }

    fn max_lifetime(&self) -> Option<Duration> {
        self.config.max_lifetime
    }

    fn farewell(&self) -> Event {
        Event::retry_hint(self.jittered(self.config.reconnect_after))
    }

    fn overflow(&self) -> OverflowPolicy {
        self.config.overflow
    }

    fn linger(&self) -> Duration {
        self.config.linger
    }

    fn counters(&self) -> &Counters {
        &self.counters
    }

    fn log_target(&self) -> Option<&str> {
        self.config.log_target.as_deref()
    }
}

impl Shared {
    /// The target of this handler's log lines: [`Config::log_target`], or this module's path.
    fn log_target(&self) -> &str {
        self.config.log_target.as_deref().unwrap_or(module_path!())
    }

    /// `base` plus a random part of up to `retry_jitter`.
    fn jittered(&self, base: Duration) -> Duration {
        let jitter = self.config.retry_jitter;
        if jitter.is_zero() {
            return base;
        }
        // xorshift64: cheap, lock-free, and spread enough to keep reconnections apart.
        let mut x = self.jitter_state.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.jitter_state.store(x, Ordering::Relaxed);
        base + Duration::from_nanos(x % (jitter.as_nanos().max(1) as u64))
    }
}

impl SseHandler {
    /// A handler with this config, no authentication and no hooks.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when a config value is out of range (see [`Config::validate`]).
    pub fn new(config: Config) -> Result<SseHandler> {
        SseHandler::builder(config).build()
    }

    /// Starts a handler with an authenticator, hooks or an event log of its own.
    ///
    /// ```
    /// use sse_handler::{BearerToken, Config, Event, SseHandler};
    ///
    /// let handler = SseHandler::builder(Config::default())
    ///     .authenticator(BearerToken::new("s3cret").with_token("alice-token", "alice"))
    ///     .on_connect(|conn| {
    ///         let who = conn.info().user().unwrap_or("guest").to_owned();
    ///         conn.send(Event::data(format!("welcome, {who}")));
    ///     })
    ///     .on_close(|info, reason| log::info!("stream {} closed: {reason}", info.id()))
    ///     .build()?;
    /// # Ok::<(), sse_handler::Error>(())
    /// ```
    pub fn builder(config: Config) -> HandlerBuilder {
        HandlerBuilder {
            config,
            authenticator: Box::new(AllowAll),
            log: None,
            on_connect: None,
            on_close: None,
        }
    }

    /// The handler's config.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// The event log every stream reads from: its [`head`](EventLog::head) is the id the next
    /// numbered event will get, when the default [`MemoryLog`] numbers them.
    pub fn log(&self) -> &dyn EventLog {
        &*self.shared.log
    }

    /// Publishes an event to every open stream that subscribed to its type, and keeps it for replay.
    ///
    /// Returns at once: the event is encoded once and appended to the log, and the streams' own
    /// threads write it, each when it gets there. A stream that reads slowly falls behind in the log
    /// and catches up; only one whose unread events leave the log meets the
    /// [`overflow`](Config::overflow) policy. When [`Config::auto_ids`] is on and the event has data
    /// but no id, the log gives it one (a number greater than any it gave before, in this process or
    /// an earlier one).
    ///
    /// # Errors
    /// [`Error::UnknownEventType`] when the event's type is not allowed (see
    /// [`has_event_type`](SseHandler::has_event_type));
    /// [`Error::ShutDown`] after [`shutdown`](SseHandler::shutdown); what the log's
    /// [`append`](EventLog::append) returns when it cannot store the event.
    pub fn send_all(&self, event: Event) -> Result<Sent> {
        self.check_can_send(&event)?;
        let shared = &*self.shared;
        let event = shared.log.append(event, shared.config.auto_ids)?;
        Counters::add(&shared.counters.events_published, 1);
        Ok(Sent { id: event.id().map(str::to_owned), connections: shared.registry.len() })
    }

    /// Sends an event to one connection only, after every event published before it. It is not kept
    /// in the log (it is not for the others), and it goes to the connection whatever its `?event=`
    /// subscription.
    ///
    /// # Errors
    /// [`Error::UnknownConnection`] if no open stream has this id; [`Error::QueueFull`] if its queue was
    /// full (the connection is then dropped as a slow client); [`Error::UnknownEventType`],
    /// [`Error::ShutDown`] as for [`send_all`](SseHandler::send_all).
    pub fn send_one(&self, id: ConnectionId, event: Event) -> Result<()> {
        self.check_can_send(&event)?;
        let private = Private { after: self.shared.log.head(), event };
        match self.shared.registry.push_one(id, &private, &self.shared.queue_limits) {
            Some(Push::Queued { dropped }) => {
                Counters::add(&self.shared.counters.events_dropped, dropped as u64);
                Ok(())
            }
            Some(Push::Full) => {
                self.drop_slow_client(id);
                Err(Error::QueueFull(id))
            }
            Some(Push::Gone) | None => Err(Error::UnknownConnection(id)),
        }
    }

    /// Ends one stream: events published and sent to it before are still written, then a `retry:` hint
    /// ([`Config::reconnect_after`]), then the connection closes. Returns at once; the stream's thread
    /// finishes on its own, within the send timeout at worst.
    ///
    /// # Errors
    /// [`Error::UnknownConnection`] if no open stream has this id.
    pub fn stop_one(&self, id: ConnectionId) -> Result<()> {
        let head = self.shared.log.head();
        self.shared.registry.remove_at(id, CloseReason::Stopped, head).ok_or(Error::UnknownConnection(id))?;
        log::debug!(target: self.shared.log_target(), "stream {id}: stopped by the application");
        Ok(())
    }

    /// As [`stop_one`](SseHandler::stop_one), and waits until the stream's thread has finished with it.
    /// If it has not within `timeout` (a client that stopped reading, with a write blocked), its socket
    /// is closed to end the write; then it waits up to `timeout` once more. Returns whether the stream
    /// has finished.
    ///
    /// # Errors
    /// [`Error::UnknownConnection`] if no open stream has this id.
    pub fn stop_one_within(&self, id: ConnectionId, timeout: Duration) -> Result<bool> {
        let head = self.shared.log.head();
        let connection = self
            .shared
            .registry
            .remove_at(id, CloseReason::Stopped, head)
            .ok_or(Error::UnknownConnection(id))?;
        log::debug!(target: self.shared.log_target(), "stream {id}: stopped by the application");
        Ok(finish_within(&[connection], timeout) == 0)
    }

    /// The ids of the open streams, in ascending order.
    pub fn connection_ids(&self) -> Vec<ConnectionId> {
        self.shared.registry.ids()
    }

    /// How many streams are open.
    pub fn connection_count(&self) -> usize {
        self.shared.registry.len()
    }

    /// What is known about one open stream.
    pub fn connection_info(&self, id: ConnectionId) -> Option<ConnectionInfo> {
        self.shared.registry.get(id).map(|connection| connection.info.clone())
    }

    /// The counters of one open stream.
    pub fn connection_stats(&self, id: ConnectionId) -> Option<ConnectionStats> {
        self.shared.registry.get(id).map(|connection| connection.stats())
    }

    /// The handler's counters since it was built.
    pub fn stats(&self) -> Stats {
        self.shared.counters.snapshot()
    }

    /// Whether events of this type may be published and subscribed to: always when
    /// [`Config::event_types`] is `None`; else when it is `message` (the type of events without one),
    /// one of `Config::event_types`, or registered since with
    /// [`register_event_type`](SseHandler::register_event_type).
    pub fn has_event_type(&self, event_type: &str) -> bool {
        match &self.shared.event_types {
            None => true,
            Some(allowed) => event_type == UNTYPED || allowed.read().contains(event_type),
        }
    }

    /// Allows one more event type, from now on, where [`Config::event_types`] limits them: clients
    /// may subscribe to it (`?event=`), and [`send_all`](SseHandler::send_all) takes events of it.
    /// Returns whether the type is new, so `false` when it was allowed already (every type is, when
    /// `Config::event_types` is `None`).
    ///
    /// ```
    /// use sse_handler::{Config, Event, SseHandler};
    ///
    /// let handler = SseHandler::new(Config::default().event_types(["news"]))?;
    /// let scores = Event::builder().event("scores").data("2-1").build()?;
    /// assert!(!handler.has_event_type("scores"));
    /// assert!(handler.send_all(scores.clone()).is_err());
    ///
    /// assert!(handler.register_event_type("scores")?);
    /// assert!(handler.has_event_type("scores"));
    /// handler.send_all(scores)?;
    /// # Ok::<(), sse_handler::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when `event_type` is empty or holds a line break (no event can carry
    /// it).
    pub fn register_event_type(&self, event_type: &str) -> Result<bool> {
        if !is_valid_event_type(event_type) {
            return Err(Error::InvalidConfig(format!(
                "event type {event_type:?} is empty or holds a line break"
            )));
        }
        match &self.shared.event_types {
            None => Ok(false),
            Some(_) if self.has_event_type(event_type) => Ok(false),
            Some(allowed) => Ok(allowed.write().insert(event_type.to_owned())),
        }
    }

    /// The current heartbeat interval.
    pub fn heartbeat(&self) -> Duration {
        self.shared.heartbeat()
    }

    /// Changes the heartbeat interval, for open streams too: each is woken to wait anew.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if `interval` is zero.
    pub fn set_heartbeat(&self, interval: Duration) -> Result<()> {
        if interval.is_zero() {
            return Err(Error::InvalidConfig("heartbeat must be more than zero".into()));
        }
        self.shared.heartbeat_nanos.store(duration_nanos(interval), Ordering::Relaxed);
        self.shared.registry.wake_all();
        Ok(())
    }

    /// Ends every stream and refuses new ones (`503`) and new events ([`Error::ShutDown`]). Streams
    /// write what was published before, then close; their threads end on their own, each within the send
    /// timeout. Returns how many streams were ended. (The built-in server's
    /// [`ServerHandle::shutdown`](crate::ServerHandle::shutdown) also waits for the threads.)
    pub fn shutdown(&self) -> usize {
        self.end_all().len()
    }

    /// As [`shutdown`](SseHandler::shutdown), and waits for every stream's thread to finish with it.
    /// Streams that have not finished within `timeout` (a write blocked on a client that stopped reading)
    /// get their sockets closed, then are waited for up to `timeout` once more. Returns how many
    /// streams had still not finished then: 0 unless a hook or a writer without a socket blocks.
    pub fn shutdown_within(&self, timeout: Duration) -> usize {
        finish_within(&self.end_all(), timeout)
    }

    fn end_all(&self) -> Vec<Arc<Connection>> {
        // A connection registering meanwhile sees the flag after it registers, and leaves.
        self.shared.shut_down.store(true, Ordering::SeqCst);
        let ended = self.shared.registry.remove_all(CloseReason::ShutDown, self.shared.log.head());
        if !ended.is_empty() {
            log::debug!(target: self.shared.log_target(), "handler shut down, ending {} streams", ended.len());
        }
        ended
    }

    /// Whether [`shutdown`](SseHandler::shutdown) was called.
    pub fn is_shut_down(&self) -> bool {
        self.shared.shut_down.load(Ordering::SeqCst)
    }

    /// Serves one client on a socket whose request has not been read yet: reads the head (within
    /// [`Config::request_limits`]), then does what [`accept`](SseHandler::accept) does. For a
    /// hand-written accept loop; call it on a thread of its own, since it returns only when the
    /// stream ends.
    ///
    /// **It streams on any path.** A `GET /favicon.ico` gets `200 text/event-stream` like any other:
    /// the handler does not know which paths are its own, since routing belongs to whoever owns the
    /// accept loop (the built-in [`Server`](crate::Server) routes by path). To route in a loop of
    /// your own, read the head with [`Request::read_from`] and pass the requests for the stream to
    /// [`accept`](SseHandler::accept), answering the others yourself
    /// ([`Response::send_and_close`]):
    ///
    /// ```no_run
    /// use sse_handler::{Config, Request, Response, SseHandler};
    ///
    /// let events = SseHandler::new(Config::default())?;
    /// let listener = std::net::TcpListener::bind("127.0.0.1:8080")?;
    /// for stream in listener.incoming() {
    ///     let (stream, events) = (stream?, events.clone());
    ///     std::thread::spawn(move || match Request::read_from(&stream, &events.config().request_limits) {
    ///         Ok((request, _)) if request.path() == "/events" => drop(events.accept(stream, &request)),
    ///         Ok(_) => drop(Response::new(404).with_body("not found\n").send_and_close(&stream)),
    ///         Err(_) => {} // answered (400, 431) and closed already
    ///     });
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// Returns why the stream ended, or `None` when the request was answered without opening one (a
    /// CORS preflight).
    ///
    /// # Errors
    /// A request the handler cannot take ([`Error::BadRequest`], [`Error::HeadTooLarge`],
    /// [`Error::MethodNotAllowed`], [`Error::NotFound`], [`Error::Rejected`], [`Error::ShutDown`], and
    /// [`Error::Panicked`] when the authenticator or the connect hook panicked) is answered with its
    /// status first; [`Error::Timeout`] or [`Error::Io`] when the head does not
    /// arrive.
    pub fn serve(&self, stream: TcpStream) -> Result<Option<CloseReason>> {
        let head = match http::read_head(&stream, &self.shared.config.request_limits) {
            Ok(head) => head,
            Err(err) => {
                answer_error_logged(&mut &stream, &err, self.shared.log_target());
                http::linger_close(&stream);
                return Err(err);
            }
        };
        self.accept(stream, &head.request)
    }

    /// Serves a request that the host server has already read, on its socket: checks it, answers
    /// `200` and streams until the client goes or the stream is stopped. Sets `TCP_NODELAY` and the
    /// send timeout on the socket. Returns as [`serve`](SseHandler::serve) does.
    ///
    /// # Errors
    /// As [`serve`](SseHandler::serve), minus the head-reading ones.
    pub fn accept(&self, stream: TcpStream, request: &Request) -> Result<Option<CloseReason>> {
        self.accept_shared(Arc::new(stream), request)
    }

    /// Serves a request over any writer that reaches the client (a host server's raw response writer,
    /// for example). The handler writes the whole response, status line included. It cannot set a send
    /// timeout on a writer it knows nothing about: give the socket under it one, or a client that stops
    /// reading holds this thread until the host's own timeout. Returns as [`serve`](SseHandler::serve) does.
    ///
    /// # Errors
    /// As [`accept`](SseHandler::accept).
    pub fn accept_writer<W: Write>(&self, writer: W, request: &Request) -> Result<Option<CloseReason>> {
        self.open(writer, request, None)
    }

    pub(crate) fn accept_shared(
        &self,
        stream: Arc<TcpStream>,
        request: impl Borrow<Request>,
    ) -> Result<Option<CloseReason>> {
        let _ = stream.set_nodelay(true);
        stream.set_write_timeout(Some(self.shared.config.send_timeout))?;
        if let Some(idle) = self.shared.config.tcp_keepalive {
            let keepalive = socket2::TcpKeepalive::new().with_time(idle).with_interval(idle);
            socket2::SockRef::from(&*stream).set_tcp_keepalive(&keepalive)?;
        }
        if let Some(bytes) = self.shared.config.send_buffer {
            socket2::SockRef::from(&*stream).set_send_buffer_size(bytes)?;
        }
        // One deadline per write, not a send timeout per system call that a trickling reader restarts.
        let out = DeadlineWriter::new(&stream, self.shared.config.send_timeout);
        self.open(out, request, Some(&stream))
    }

    /// The answer to a stream request over the server's connection limit: a `200` stream that only
    /// says when to come back, then closes. (Any other status would make a browser give up for good.)
    pub(crate) fn answer_busy(&self, out: &mut impl Write, request: &Request) {
        let mut answer = self.stream_head(request);
        answer.extend_from_slice(self.shared.farewell().as_bytes());
        let _ = out.write_all(&answer).and_then(|()| out.flush());
    }

    /// The path of one stream, top to bottom: check the request, place the connection's cursor in the
    /// log and register it, run the connect hook, then let the connection loop write the head, the
    /// replay (the log from the cursor on), the hook's greeting and live events.
    ///
    /// The request may be owned (the built-in server's), so that it is freed once the stream is open
    /// rather than held for the stream's whole life.
    fn open<W: Write>(
        &self,
        mut out: W,
        owned_request: impl Borrow<Request>,
        socket: Option<&Arc<TcpStream>>,
    ) -> Result<Option<CloseReason>> {
        let shared = &*self.shared;
        let request = owned_request.borrow();
        let user = match self.check_request(request) {
            Ok(Checked::Preflight) => {
                self.preflight_response(request).write_to(&mut out, false)?;
                return Ok(None);
            }
            Ok(Checked::Stream(user)) => user,
            Err(err) => {
                answer_error_logged(&mut out, &err, shared.log_target());
                return Err(err);
            }
        };
        // Made here, high on the stack, not at the bottom of `register` (see `Queue`).
        let queue = Queue::new();
        let (receiver, connection, cursor, replay_end) =
            match self.register(request, user, socket.cloned(), queue) {
                Ok(registered) => registered,
                Err(err) => {
                    answer_error_logged(&mut out, &err, shared.log_target());
                    return Err(err);
                }
            };
        let registration = Registration { shared, connection: &connection };
        let info = &connection.info;

        let mut welcome = NewConnection { info, welcome: Vec::new() };
        if let Some(hook) = &shared.on_connect {
            if catch_unwind(AssertUnwindSafe(|| hook(&mut welcome))).is_err() {
                log::error!(target: shared.log_target(), "stream {}: the connect hook panicked; answering 500", info.id);
                registration.finish(CloseReason::HookPanicked);
                let err = Error::Panicked("the connect hook");
                answer_error_logged(&mut out, &err, shared.log_target());
                return Err(err);
            }
        }
        // Right after the replay, before live events.
        for event in welcome.welcome {
            let private = Private { after: replay_end, event };
            let _ = shared.registry.push_one(info.id, &private, &QueueLimits::UNBOUNDED);
        }

        let mut opening = self.stream_head(request);
        // Bytes right after the head, so that clients and proxies that hand on a response only with
        // its first body bytes show the stream as open at once.
        match shared.config.retry {
            Some(retry) => opening.extend_from_slice(Event::retry_hint(shared.jittered(retry)).as_bytes()),
            None => opening.extend_from_slice(OPENING_COMMENT),
        }
        if let Replay::UnknownId { events } = info.replay {
            let note = format!("last event id not found; replaying {events} retained events");
            opening.extend_from_slice(Event::comment(note).as_bytes());
        }
        drop(owned_request);
        log::debug!(
            target: shared.log_target(),
            "stream {} opened on {} for {:?} (user {:?}, replay {:?})",
            info.id,
            info.path,
            info.peer,
            info.user,
            info.replay
        );
        let stream = Stream {
            log: &*shared.log,
            queue: &receiver,
            connection: &connection,
            socket: socket.map(|s| &**s),
        };
        let mut out = CountingWriter::new(out, &shared.counters.bytes_sent);
        let reason = connection::run(&mut out, &stream, cursor, opening, shared);
        Ok(Some(registration.finish(reason)))
    }

    fn check_request(&self, request: &Request) -> Result<Checked> {
        if self.is_shut_down() {
            return Err(Error::ShutDown);
        }
        match request.method() {
            "GET" => {}
            "OPTIONS" => return Ok(Checked::Preflight),
            _ => return Err(Error::MethodNotAllowed { allowed: "GET, OPTIONS".into() }),
        }
        let event_types = subscription(request)?;
        if self.shared.event_types.is_some() {
            if let Some(unknown) = event_types.iter().find(|t| !self.has_event_type(t)) {
                return Err(Error::NotFound(format!("no event type {unknown:?}")));
            }
        }
        let authenticator = &self.shared.authenticator;
        let user = catch_unwind(AssertUnwindSafe(|| authenticator.authenticate(request)))
            .map_err(|_| {
                log::error!(
                    target: self.shared.log_target(),
                    "the authenticator panicked on {} {}",
                    request.method(),
                    request.path()
                );
                Error::Panicked("the authenticator")
            })?
            .map_err(|rejection| Error::Rejected(Box::new(rejection)))?;
        Ok(Checked::Stream(user))
    }

    /// Places the connection's cursor in the log (right after its `Last-Event-ID`, or at the head)
    /// and registers it; returns the cursor and the end of the replay. No lock is needed to keep replay and live events apart: they are one read
    /// of the log, from the cursor on.
    fn register(
        &self,
        request: &Request,
        user: Option<String>,
        socket: Option<Arc<TcpStream>>,
        queue: Queue<Private>,
    ) -> Result<(crossbeam_channel::Receiver<Private>, Arc<Connection>, u64, u64)> {
        let shared = &*self.shared;
        let last_event_id = request
            .header("last-event-id")
            .map(str::to_owned)
            .or_else(|| request.query_value("lastEventId"))
            .filter(|id| !id.is_empty());
        let event_types = subscription(request)?;
        let log = &shared.log;
        let head = log.head();
        let (cursor, replay) = match &last_event_id {
            None => (head, Replay::NotAsked),
            Some(last_id) => match log.position_after(last_id) {
                Some(cursor) => {
                    Counters::add(&shared.counters.replays_served, 1);
                    (cursor, Replay::Resumed { events: log.count_from(cursor) })
                }
                None => {
                    Counters::add(&shared.counters.replays_missed, 1);
                    let cursor = match shared.config.unknown_id_policy {
                        UnknownIdPolicy::ReplayAll => log.oldest(),
                        UnknownIdPolicy::ReplayNone => head,
                    };
                    (cursor, Replay::UnknownId { events: log.count_from(cursor) })
                }
            },
        };
        let info = ConnectionInfo {
            id: ConnectionId::from(shared.next_connection.fetch_add(1, Ordering::Relaxed)),
            peer: request.peer(),
            path: request.path().to_owned(),
            user,
            since: SystemTime::now(),
            event_types: (!event_types.is_empty()).then_some(event_types),
            last_event_id,
            replay,
        };
        let connection = Arc::new(Connection::new(info, socket));
        let receiver = shared.registry.insert(Arc::clone(&connection), queue);
        if self.is_shut_down() {
            shared.registry.remove(connection.info.id, CloseReason::ShutDown);
            return Err(Error::ShutDown);
        }
        Counters::add(&shared.counters.connections_opened, 1);
        Ok((receiver, connection, cursor, head))
    }

    /// The stream's response head: the handler's own headers, each replaced by any configured
    /// header of the same name, then the other configured headers.
    fn stream_head(&self, request: &Request) -> Vec<u8> {
        let configured = &self.shared.config.headers;
        let mut own = vec![
            ("Content-Type", "text/event-stream"),
            // `no-transform`: a proxy that compresses may hold a stream back to fill its buffers.
            ("Cache-Control", "no-cache, no-transform"),
            ("X-Accel-Buffering", "no"),
            ("Connection", "keep-alive"),
        ];
        own.extend(self.cors_headers(request));

        let mut head = Vec::with_capacity(256);
        http::write_status_line(&mut head, 200);
        for (own_name, own_value) in &own {
            let mut replaced = false;
            for (name, value) in configured.iter().filter(|(name, _)| name.eq_ignore_ascii_case(own_name)) {
                http::push_header(&mut head, name, value);
                replaced = true;
            }
            if !replaced {
                http::push_header(&mut head, own_name, own_value);
            }
        }
        for (name, value) in configured {
            if !own.iter().any(|(own_name, _)| own_name.eq_ignore_ascii_case(name)) {
                http::push_header(&mut head, name, value);
            }
        }
        head.extend_from_slice(b"\r\n");
        head
    }

    /// `Access-Control-Allow-Origin` (and `Vary`) when the request's origin is allowed.
    fn cors_headers<'a>(&'a self, request: &'a Request) -> Vec<(&'static str, &'a str)> {
        match self.shared.config.allow_origin.as_deref() {
            Some("*") => vec![("Access-Control-Allow-Origin", "*")],
            Some(allowed) if request.header("origin") == Some(allowed) => {
                vec![("Access-Control-Allow-Origin", allowed), ("Vary", "Origin")]
            }
            _ => Vec::new(),
        }
    }

    /// The answer to a CORS preflight: browsers send one before reconnecting cross-origin with a
    /// `Last-Event-ID` that is not a "safe" header value.
    fn preflight_response(&self, request: &Request) -> Response {
        let mut response = Response::new(204).with_header("Allow", "GET, OPTIONS");
        let cors = self.cors_headers(request);
        if !cors.is_empty() {
            for (name, value) in cors {
                response = response.with_header(name, value);
            }
            response = response
                .with_header("Access-Control-Allow-Methods", "GET, OPTIONS")
                .with_header("Access-Control-Allow-Headers", "Last-Event-ID, Cache-Control, Authorization")
                .with_header("Access-Control-Max-Age", "600");
        }
        response
    }

    fn check_can_send(&self, event: &Event) -> Result<()> {
        if self.is_shut_down() {
            return Err(Error::ShutDown);
        }
        if self.shared.config.cors_safe_ids {
            if let Some(id) = event.id() {
                crate::event::check_cors_safe_id(id)?;
            }
        }
        if let Some(event_type) = event.event_type() {
            if !self.has_event_type(event_type) {
                return Err(Error::UnknownEventType(event_type.to_owned()));
            }
        }
        Ok(())
    }

    fn drop_slow_client(&self, id: ConnectionId) {
        if let Some(connection) = self.shared.registry.remove(id, CloseReason::SlowClient) {
            Counters::add(&self.shared.counters.slow_client_disconnects, 1);
            log::warn!(
                target: self.shared.log_target(),
                "stream {id} ({:?}) dropped: {} messages sent to it alone were queued and unread",
                connection.info.peer,
                self.shared.config.queue_capacity
            );
        }
    }
}

/// The most event types one subscription may name (`?event=a&event=b...`): each event a stream reads
/// is looked up among them, so a client could otherwise make every delivery cost what it likes.
pub(crate) const MAX_EVENT_TYPES: usize = 64;

/// The event types a request subscribes to, each once and sorted (so that a stream finds an event's
/// type by binary search); refused with 400 past [`MAX_EVENT_TYPES`].
fn subscription(request: &Request) -> Result<Vec<String>> {
    let mut types: Vec<String> = request.query_values("event").collect();
    types.sort_unstable();
    types.dedup();
    if types.len() > MAX_EVENT_TYPES {
        return Err(Error::BadRequest("more than 64 event types in one subscription"));
    }
    Ok(types)
}

enum Checked {
    Preflight,
    Stream(Option<String>),
}

/// Unregisters the connection on every way out of [`SseHandler::open`], panics included, and runs the
/// close hook.
struct Registration<'a> {
    shared: &'a Shared,
    connection: &'a Arc<Connection>,
}

impl Registration<'_> {
    /// Records `reason` (unless something ended the stream first) and returns the reason that stands.
    fn finish(self, reason: CloseReason) -> CloseReason {
        let _ = self.connection.close_reason.set(reason);
        self.connection.close_reason().cloned().unwrap_or(CloseReason::ClientGone)
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let info = &self.connection.info;
        let reason = self.connection.close_reason().cloned().unwrap_or(CloseReason::ClientGone);
        self.shared.registry.remove(info.id, reason.clone());
        self.shared.counters.closed(&reason);
        log::debug!(target: self.shared.log_target(), "stream {} closed: {reason}", info.id);
        // A hook that panicked while we unwind would abort the process; skip it then.
        if let (Some(hook), false) = (&self.shared.on_close, std::thread::panicking()) {
            if catch_unwind(AssertUnwindSafe(|| hook(info, &reason))).is_err() {
                log::error!(target: self.shared.log_target(), "stream {}: the close hook panicked", info.id);
            }
        }
        self.connection.mark_finished();
    }
}

/// Waits for ended connections' threads to finish; forces the sockets of those that have not within
/// `timeout`, then waits once more. Returns how many are still not finished.
fn finish_within(connections: &[Arc<Connection>], timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    let mut stuck: Vec<&Arc<Connection>> =
        connections.iter().filter(|connection| !connection.wait_finished(deadline)).collect();
    if stuck.is_empty() {
        return 0;
    }
    for connection in &stuck {
        connection.force_close();
    }
    let deadline = Instant::now() + timeout;
    stuck.retain(|connection| !connection.wait_finished(deadline));
    stuck.len()
}

/// Writes the HTTP answer for a refused request, if it has one. The client may already be gone;
/// that is not worth more than a debug line.
pub(crate) fn answer_error(out: &mut impl Write, err: &Error) {
    answer_error_logged(out, err, module_path!());
}

/// As [`answer_error`], logging under `target`.
fn answer_error_logged(out: &mut impl Write, err: &Error, target: &str) {
    log::debug!(target: target, "request refused: {err}");
    if let Some(response) = Response::for_error(err) {
        if let Err(write_err) = response.write_to(out, false) {
            log::debug!(target: target, "could not write the {} answer: {write_err}", response.status());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::time::Duration;

    use super::*;
    use crate::client;

    #[test]
    fn an_open_stream_does_not_hold_on_to_its_replay() {
        let handler = SseHandler::new(Config::default().history_capacity(1)).unwrap();
        let old = Event::builder().id("old").data("replayed").build().unwrap();
        handler.send_all(old.clone()).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let serving = {
            let handler = handler.clone();
            std::thread::spawn(move || handler.serve(listener.accept().unwrap().0))
        };
        let timeout = Duration::from_secs(10);
        let mut response =
            client::connect(addr, "/events", &[("Last-Event-ID", "unknown")], timeout).unwrap();
        assert_eq!(response.events().next_event().unwrap().unwrap().data, "replayed");
        // The next event pushes the replayed one out of the one-event history.
        handler.send_all(Event::data("live")).unwrap();
        assert_eq!(response.events().next_event().unwrap().unwrap().data, "live");
        assert_eq!(old.share_count(), 1, "only this test still holds the replayed event");
        handler.shutdown();
        assert_eq!(serving.join().unwrap().unwrap(), Some(CloseReason::ShutDown));
    }
}
