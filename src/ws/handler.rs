//! [`WsHandler`]: the connections of one WebSocket endpoint, sending to them, and the life of one
//! connection from its handshake to its close hook.

use std::io::{BufReader, Cursor, Read};
use std::net::TcpStream;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::SystemTime;

use parking_lot::Mutex;

use super::close::{CloseCause, Closed};
use super::config::WsConfig;
use super::connection::{self, CONTROL_CAPACITY, Control, ControlSender, Liveness, Timing, Writer};
use super::frame::Role;
use super::handshake::{self, Upgrade};
use super::message::{self, CloseFrame, Limits, Message, MessageReader};
use super::outbound::{Broadcasts, Outbound, Outbox, Private};
use crate::auth::{AllowAll, Authenticator};
use crate::config::OverflowPolicy;
use crate::error::{Error, Result};
use crate::handler::answer_error;
use crate::http::{self, Request, Response};
use crate::registry::{
    CloseReason, Connection, ConnectionId, ConnectionInfo, Push, Queue, QueueLimits, Registry, Replay,
};

type ConnectHook = Box<dyn Fn(&WsConnection<'_>) + Send + Sync>;
type MessageHook = Box<dyn Fn(&WsConnection<'_>, Message) + Send + Sync>;
type CloseHook = Box<dyn Fn(&ConnectionInfo, &Closed) + Send + Sync>;
type ProtocolChoice = Box<dyn Fn(&Request, &[String]) -> Option<String> + Send + Sync>;

/// Stack of each connection's writer thread: it runs no application code.
const WRITER_STACK: usize = 128 * 1024;
/// Read buffer of each connection.
const READ_BUFFER: usize = 8 * 1024;

/// Serves WebSocket connections and sends messages to them: the sibling of
/// [`SseHandler`](crate::SseHandler), with the same registry, authenticator and conventions, plus
/// messages from the clients.
///
/// A cheap handle: clones share the same connections and settings. Each connection runs on two
/// threads, one reading (the built-in server's connection thread, or the one that called
/// [`serve`](WsHandler::serve)) and one writing. Sending returns at once: a broadcast is appended to
/// the handler's broadcast log, which every connection's writer reads from its own position; a message
/// to one connection goes into that connection's own queue. A writer wakes as soon as either has
/// something for it.
///
/// ```no_run
/// use sse_handler::Server;
/// use sse_handler::ws::{WsConfig, WsHandler};
///
/// let echo = WsHandler::builder(WsConfig::default())
///     .on_message(|conn, message| {
///         let _ = conn.send(message); // back to the sender
///     })
///     .build()?;
/// let server = Server::bind("127.0.0.1:8080")?.websocket("/echo", &echo).spawn()?;
/// # server.shutdown();
/// # Ok::<(), sse_handler::Error>(())
/// ```
#[derive(Clone)]
pub struct WsHandler {
    shared: Arc<Shared>,
}

struct Shared {
    config: WsConfig,
    /// Every broadcast, once; each connection's writer reads it from its own position.
    broadcasts: Arc<Broadcasts>,
    /// The connections, each with its own queue (messages to it alone, and close requests).
    registry: Registry<Private>,
    /// Held while a connection registers and while the handler shuts down, so that no connection
    /// registers after the shutdown has sent everyone its close frame.
    lifecycle: Mutex<()>,
    shut_down: AtomicBool,
    next_connection: AtomicU64,
    authenticator: Box<dyn Authenticator>,
    choose_protocol: Option<ProtocolChoice>,
    on_connect: Option<ConnectHook>,
    on_message: Option<MessageHook>,
    on_close: Option<CloseHook>,
}

/// One open connection, as the connect and message hooks see it.
#[derive(Debug)]
pub struct WsConnection<'a> {
    handler: &'a WsHandler,
    info: &'a ConnectionInfo,
    protocol: Option<&'a str>,
}

impl WsConnection<'_> {
    /// Who connected, from where, on which path.
    pub fn info(&self) -> &ConnectionInfo {
        self.info
    }

    /// The connection's id, for [`WsHandler::send_one`] and [`WsHandler::stop_one`].
    pub fn id(&self) -> ConnectionId {
        self.info.id()
    }

    /// The subprotocol chosen in the handshake, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol
    }

    /// Queues a message for this client (as [`WsHandler::send_one`]).
    ///
    /// # Errors
    /// As [`WsHandler::send_one`].
    pub fn send(&self, message: impl Into<Message>) -> Result<()> {
        self.handler.send_one(self.id(), message)
    }

    /// Closes this connection with `code` and `reason` (as [`WsHandler::stop_one_with_reason`]).
    ///
    /// # Errors
    /// As [`WsHandler::stop_one`].
    pub fn close(&self, code: u16, reason: &str) -> Result<()> {
        self.handler.stop_one_with_reason(self.id(), code, reason)
    }

    /// The handler, to reach the other connections (a broadcast, a count, ...).
    pub fn handler(&self) -> &WsHandler {
        self.handler
    }
}

/// Sets up a [`WsHandler`] with an authenticator, a subprotocol choice and hooks.
#[must_use = "a WsHandlerBuilder does nothing until `build` is called"]
pub struct WsHandlerBuilder {
    config: WsConfig,
    authenticator: Box<dyn Authenticator>,
    choose_protocol: Option<ProtocolChoice>,
    on_connect: Option<ConnectHook>,
    on_message: Option<MessageHook>,
    on_close: Option<CloseHook>,
}

impl WsHandlerBuilder {
    /// Who may connect (default [`AllowAll`]). It sees the handshake request; its refusal is the HTTP
    /// answer (401, 403, ...), so the connection is never upgraded.
    pub fn authenticator(mut self, authenticator: impl Authenticator) -> Self {
        self.authenticator = Box::new(authenticator);
        self
    }

    /// Picks the subprotocol from those the client offered (`Sec-WebSocket-Protocol`, in the client's
    /// order of preference). Returning `None`, or a name the client did not offer, picks none. Without
    /// this, no subprotocol is ever picked.
    pub fn choose_protocol(
        mut self,
        choose: impl Fn(&Request, &[String]) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.choose_protocol = Some(Box::new(choose));
        self
    }

    /// Called on the connection's reading thread once the handshake is answered, before any message from
    /// the client is read. Messages it sends are queued like any other.
    pub fn on_connect(mut self, hook: impl Fn(&WsConnection<'_>) + Send + Sync + 'static) -> Self {
        self.on_connect = Some(Box::new(hook));
        self
    }

    /// Called on the connection's reading thread with every text or binary message the client sends,
    /// in order, while outbound messages keep flowing on the writing thread. A slow hook delays only
    /// this client's next message; a hook that panics closes the connection with 1011.
    pub fn on_message(mut self, hook: impl Fn(&WsConnection<'_>, Message) + Send + Sync + 'static) -> Self {
        self.on_message = Some(Box::new(hook));
        self
    }

    /// Called on the connection's reading thread when the connection has closed, with how it closed.
    pub fn on_close(mut self, hook: impl Fn(&ConnectionInfo, &Closed) + Send + Sync + 'static) -> Self {
        self.on_close = Some(Box::new(hook));
        self
    }

    /// Checks the config and makes the handler.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when a config value is out of range (see [`WsConfig::validate`]).
    pub fn build(self) -> Result<WsHandler> {
        self.config.validate()?;
        Ok(WsHandler {
            shared: Arc::new(Shared {
                broadcasts: Arc::new(Broadcasts::new(
                    self.config.broadcast_capacity,
                    self.config.broadcast_max_bytes,
                )),
                config: self.config,
                registry: Registry::default(),
                lifecycle: Mutex::new(()),
                shut_down: AtomicBool::new(false),
                next_connection: AtomicU64::new(1),
                authenticator: self.authenticator,
                choose_protocol: self.choose_protocol,
                on_connect: self.on_connect,
                on_message: self.on_message,
                on_close: self.on_close,
            }),
        })
    }
}

impl std::fmt::Debug for WsHandlerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsHandlerBuilder").field("config", &self.config).finish_non_exhaustive()
    }
}

impl std::fmt::Debug for WsHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsHandler")
            .field("connections", &self.connection_count())
            .field("shut_down", &self.is_shut_down())
            .finish_non_exhaustive()
    }
}

impl WsHandler {
    /// A handler with this config, no authentication and no hooks (it can still send).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when a config value is out of range (see [`WsConfig::validate`]).
    pub fn new(config: WsConfig) -> Result<WsHandler> {
        WsHandler::builder(config).build()
    }

    /// Starts a handler with an authenticator, a subprotocol choice or hooks.
    ///
    /// ```
    /// use sse_handler::BearerToken;
    /// use sse_handler::ws::{WsConfig, WsHandler};
    ///
    /// let chat = WsHandler::builder(WsConfig::default())
    ///     .authenticator(BearerToken::new("s3cret").with_token("alice-token", "alice"))
    ///     .choose_protocol(|_request, offered| offered.iter().find(|p| *p == "chat.v1").cloned())
    ///     .on_connect(|conn| {
    ///         let who = conn.info().user().unwrap_or("guest").to_owned();
    ///         let _ = conn.send(format!("welcome, {who}"));
    ///     })
    ///     .on_message(|conn, message| {
    ///         let _ = conn.handler().send_all(message); // to everyone in the chat
    ///     })
    ///     .on_close(|info, closed| log::info!("websocket {} closed: {closed}", info.id()))
    ///     .build()?;
    /// # Ok::<(), sse_handler::Error>(())
    /// ```
    pub fn builder(config: WsConfig) -> WsHandlerBuilder {
        WsHandlerBuilder {
            config,
            authenticator: Box::new(AllowAll),
            choose_protocol: None,
            on_connect: None,
            on_message: None,
            on_close: None,
        }
    }

    /// The handler's config.
    pub fn config(&self) -> &WsConfig {
        &self.shared.config
    }

    /// Sends a message to every open connection; returns how many connections were open.
    ///
    /// Returns at once, and costs the same however many connections there are: the message is encoded
    /// once and appended to the handler's broadcast log, and each connection's writer thread, woken
    /// by the append, reads the log from its own position and writes what it has not written yet.
    /// Nothing is pushed to the connections. A connection that falls so far behind that broadcasts it
    /// has not written leave the log ([`WsConfig::broadcast_capacity`],
    /// [`WsConfig::broadcast_max_bytes`]) is closed as a slow client (close code 1008,
    /// [`CloseCause::SlowClient`], a `warn` log, counted by
    /// [`slow_client_drops`](WsHandler::slow_client_drops)): it never misses a message silently.
    ///
    /// # Errors
    /// [`Error::ShutDown`] after [`shutdown`](WsHandler::shutdown).
    pub fn send_all(&self, message: impl Into<Message>) -> Result<usize> {
        self.check_open()?;
        self.shared.broadcasts.publish(message.into().encode());
        Ok(self.shared.registry.len())
    }

    /// Sends a message to one connection: it goes into the connection's own queue, and is written
    /// after the broadcasts sent before it.
    ///
    /// # Errors
    /// [`Error::UnknownConnection`] if no open connection has this id; [`Error::QueueFull`] if its queue
    /// was full (the connection is then dropped as a slow client); [`Error::ShutDown`] after
    /// [`shutdown`](WsHandler::shutdown).
    pub fn send_one(&self, id: ConnectionId, message: impl Into<Message>) -> Result<()> {
        self.check_open()?;
        let frame = self.private(Outbound::Frame(message.into().encode()));
        match self.shared.registry.push_one(id, &frame, &self.queue_limits()) {
            Some(Push::Queued { .. }) => Ok(()),
            Some(Push::Full) => {
                self.drop_slow_client(id);
                Err(Error::QueueFull(id))
            }
            Some(Push::Gone) | None => Err(Error::UnknownConnection(id)),
        }
    }

    /// Closes one connection with a close code: messages sent to it before (broadcasts included) are
    /// still written, then the close frame; the connection ends when the client answers, or after the close timeout.
    ///
    /// # Errors
    /// [`Error::InvalidCloseCode`] for a code that may not be sent (valid: 1000–1003, 1007–1014 and
    /// 3000–4999); [`Error::UnknownConnection`] if no open connection has this id.
    pub fn stop_one(&self, id: ConnectionId, code: u16) -> Result<()> {
        self.stop_one_with_reason(id, code, "")
    }

    /// As [`stop_one`](WsHandler::stop_one), with a reason text for the close frame (cut to 123 bytes at
    /// a character boundary, the most a close frame holds).
    ///
    /// # Errors
    /// As [`stop_one`](WsHandler::stop_one).
    pub fn stop_one_with_reason(&self, id: ConnectionId, code: u16, reason: &str) -> Result<()> {
        if !message::is_valid_close_code(code) {
            return Err(Error::InvalidCloseCode(code));
        }
        let reason = message::truncate_utf8(reason, message::MAX_CLOSE_REASON).to_owned();
        let close =
            self.private(Outbound::Close { frame: CloseFrame { code, reason }, cause: CloseCause::Stopped });
        // The close frame is queued whatever the queue holds: it must not be lost to the capacity.
        match self.shared.registry.push_one(id, &close, &QueueLimits::UNBOUNDED) {
            Some(Push::Queued { .. }) => {}
            _ => return Err(Error::UnknownConnection(id)),
        }
        self.shared.registry.remove(id, CloseReason::Stopped);
        log::debug!("websocket {id}: stopped by the application with code {code}");
        Ok(())
    }

    /// The ids of the open connections, in ascending order.
    pub fn connection_ids(&self) -> Vec<ConnectionId> {
        self.shared.registry.ids()
    }

    /// How many connections are open.
    pub fn connection_count(&self) -> usize {
        self.shared.registry.len()
    }

    /// What is known about one open connection.
    pub fn connection_info(&self, id: ConnectionId) -> Option<ConnectionInfo> {
        self.shared.registry.get(id).map(|connection| connection.info.clone())
    }

    /// How many connections have been dropped as slow clients: because broadcasts they had not written
    /// left the broadcast log, or because their own queue was full.
    pub fn slow_client_drops(&self) -> usize {
        self.shared.broadcasts.slow_client_drops()
    }

    /// Sends every open connection a close frame with code 1001 (going away) after what was sent to it
    /// before (broadcasts included), and refuses new connections (`503`) and new messages ([`Error::ShutDown`]).
    /// Connections end when their clients answer, or after the close timeout. Returns how many were
    /// closed. (The built-in server's [`ServerHandle::shutdown`](crate::ServerHandle::shutdown) also
    /// waits for their threads.)
    pub fn shutdown(&self) -> usize {
        let ended = {
            let _lifecycle = self.shared.lifecycle.lock();
            self.shared.shut_down.store(true, Ordering::SeqCst);
            let frame = CloseFrame { code: 1001, reason: "server shutting down".into() };
            let close = self.private(Outbound::Close { frame, cause: CloseCause::ShutDown });
            self.shared.registry.broadcast(&close, &QueueLimits::UNBOUNDED);
            self.shared.registry.remove_all(CloseReason::ShutDown, u64::MAX)
        };
        log::debug!("websocket handler shut down, closing {} connections", ended.len());
        ended.len()
    }

    /// Whether [`shutdown`](WsHandler::shutdown) was called.
    pub fn is_shut_down(&self) -> bool {
        self.shared.shut_down.load(Ordering::SeqCst)
    }

    /// Serves one client on a socket whose request has not been read yet: reads the head (within
    /// [`WsConfig::request_limits`]), then does what [`accept`](WsHandler::accept) does. Call it on a
    /// thread of its own: it returns when the connection ends.
    ///
    /// # Errors
    /// As [`accept`](WsHandler::accept), plus [`Error::HeadTooLarge`], [`Error::Timeout`] or
    /// [`Error::Io`] when the head cannot be read.
    pub fn serve(&self, stream: TcpStream) -> Result<Closed> {
        let head = match http::read_head(&stream, &self.shared.config.request_limits) {
            Ok(head) => head,
            Err(err) => {
                refuse(&stream, &err);
                return Err(err);
            }
        };
        self.accept_shared(&stream, &head.request, &head.leftover)
    }

    /// Serves a handshake request that the host server has already read, on its socket. `leftover` is
    /// whatever the host read past the end of the request head (frames a client sent right after its
    /// handshake); it is read before the socket. Answers `101`, runs the connection until it ends and
    /// returns how it ended.
    ///
    /// # Errors
    /// A request that is refused is answered first, then returned: [`Error::BadRequest`] for a malformed
    /// handshake (400), [`Error::WebSocketVersion`] (426), [`Error::MethodNotAllowed`] (405),
    /// [`Error::Rejected`] from the authenticator or for an origin that is not allowed (401, 403, ...),
    /// [`Error::ShutDown`] (503). [`Error::Io`] when the socket cannot be set up.
    pub fn accept(&self, stream: TcpStream, request: &Request, leftover: &[u8]) -> Result<Closed> {
        self.accept_shared(&stream, request, leftover)
    }

    /// The life of one connection, top to bottom: check the handshake, start the writer's thread,
    /// register the connection as served by it, hand the writer its part (it answers `101`), run the
    /// connect hook, read until the end, join the writer, run the close hook.
    pub(crate) fn accept_shared(
        &self,
        stream: &TcpStream,
        request: &Request,
        leftover: &[u8],
    ) -> Result<Closed> {
        let shared = &*self.shared;
        let checked = self.check(request).and_then(|checked| {
            let writer_socket = stream.try_clone()?;
            let reader_socket = stream.try_clone()?;
            let _ = stream.set_nodelay(true);
            stream.set_write_timeout(Some(shared.config.send_timeout))?;
            // The heartbeat finds dead clients; the reader blocks until the writer ends it.
            stream.set_read_timeout(None)?;
            Ok((checked, writer_socket, reader_socket))
        });
        let ((upgrade, user, protocol), writer_socket, reader_socket) = match checked {
            Ok(checked) => checked,
            Err(err) => {
                refuse(stream, &err);
                return Err(err);
            }
        };
        // The writer's thread comes first: the connection registers as served by it, so that what is
        // sent to the connection wakes that thread. It waits for its part until then.
        let id = ConnectionId::from(shared.next_connection.fetch_add(1, Ordering::Relaxed));
        let (start, started) = crossbeam_channel::bounded::<Writer>(1);
        let writer = match thread::Builder::new()
            .name(format!("ws-write-{id}"))
            .stack_size(WRITER_STACK)
            .spawn(move || started.recv().ok().map(Writer::run))
        {
            Ok(writer) => writer,
            Err(err) => {
                log::warn!("cannot start a websocket writer thread: {err}");
                let _ = Response::new(503)
                    .with_body("cannot start a connection thread\n")
                    .write_to(&mut &*stream, false);
                return Err(Error::Io(err));
            }
        };
        let (connection, queue, cursor) = match self.register(id, request, user, writer.thread().clone()) {
            Ok(registered) => registered,
            Err(err) => {
                drop(start);
                let _ = writer.join();
                refuse(stream, &err);
                return Err(err);
            }
        };
        let mut registration = Registration { shared, connection: &connection, closed: None };
        let info = &connection.info;

        let (control, control_receiver) = crossbeam_channel::bounded(CONTROL_CAPACITY);
        let control = ControlSender::new(control, writer.thread().clone());
        let liveness = Arc::new(Liveness::new());
        let config = &shared.config;
        let part = Writer {
            socket: writer_socket,
            opening: handshake::accept_head(&upgrade, protocol.as_deref(), &config.headers),
            outbox: Outbox::new(Arc::clone(&shared.broadcasts), queue, Arc::clone(&connection), cursor),
            control: control_receiver,
            connection: Arc::clone(&connection),
            liveness: Arc::clone(&liveness),
            timing: Timing {
                heartbeat: config.heartbeat,
                pong_timeout: config.pong_timeout,
                close_timeout: config.close_timeout,
            },
        };
        // The thread is waiting on the other end, which is only dropped once it has received this.
        let _ = start.send(part);
        log::debug!(
            "websocket {} opened on {} for {:?} (user {:?}, protocol {:?})",
            info.id,
            info.path,
            info.peer,
            info.user,
            protocol
        );

        let conn = WsConnection { handler: self, info, protocol: protocol.as_deref() };
        if run_hook("connect", || shared.on_connect.as_ref().map_or((), |hook| hook(&conn))) {
            let input =
                BufReader::with_capacity(READ_BUFFER, Cursor::new(leftover.to_vec()).chain(reader_socket));
            let limits = Limits { max_frame: config.max_frame_size, max_message: config.max_message_size };
            let reader = MessageReader::new(input, Role::Server, limits);
            connection::read_loop(reader, &control, &liveness, |message| {
                run_hook("message", || shared.on_message.as_ref().map_or((), |hook| hook(&conn, message)))
            });
        } else {
            let _ = control.send(Control::HookPanicked);
        }
        drop(control);
        let closed = writer.join().ok().flatten().unwrap_or_else(|| Closed::abnormal(CloseCause::ClientGone));
        registration.closed = Some(closed.clone());
        Ok(closed)
    }

    /// The handshake checks, in order: shut down, a valid upgrade, an allowed origin, the
    /// authenticator; then the subprotocol choice.
    fn check(&self, request: &Request) -> Result<(Upgrade, Option<String>, Option<String>)> {
        let shared = &*self.shared;
        self.check_open()?;
        let upgrade = handshake::check(request)?;
        handshake::check_origin(request, &shared.config.origins)?;
        let user = shared
            .authenticator
            .authenticate(request)
            .map_err(|rejection| Error::Rejected(Box::new(rejection)))?;
        let protocol = match (&shared.choose_protocol, upgrade.protocols.is_empty()) {
            (Some(choose), false) => choose(request, &upgrade.protocols).filter(|chosen| {
                let offered = upgrade.protocols.contains(chosen);
                if !offered {
                    log::warn!(
                        "websocket: the protocol choice {chosen:?} is not among those offered; using none"
                    );
                }
                offered
            }),
            _ => None,
        };
        Ok((upgrade, user, protocol))
    }

    /// Registers connection `id`, whose messages `writer` writes; returns it, the receiving end of
    /// its queue, and the broadcast log's position it starts reading from: the head just before it is
    /// counted among the open connections, so that it gets every broadcast sent from then on (those
    /// sent while it registers included, once each), and none sent before.
    fn register(
        &self,
        id: ConnectionId,
        request: &Request,
        user: Option<String>,
        writer: thread::Thread,
    ) -> Result<(Arc<Connection>, crossbeam_channel::Receiver<Private>, u64)> {
        let shared = &*self.shared;
        let info = ConnectionInfo {
            id,
            peer: request.peer(),
            path: request.path().to_owned(),
            user,
            since: SystemTime::now(),
            event_types: None,
            last_event_id: None,
            replay: Replay::NotAsked,
        };
        let connection = Arc::new(Connection::served_by(info, None, writer));
        let _lifecycle = shared.lifecycle.lock();
        self.check_open()?;
        // Taken before the connection is counted: a broadcast in between is written to it, not missed.
        let cursor = shared.broadcasts.head();
        let queue = shared.registry.insert(Arc::clone(&connection), Queue::new());
        Ok((connection, queue, cursor))
    }

    /// `item` for one connection, to be written after the broadcasts sent before now.
    fn private(&self, item: Outbound) -> Private {
        Private { after: self.shared.broadcasts.head(), item }
    }

    fn queue_limits(&self) -> QueueLimits {
        QueueLimits {
            messages: self.shared.config.queue_capacity,
            bytes: self.shared.config.queue_max_bytes,
            overflow: OverflowPolicy::Disconnect,
        }
    }

    fn check_open(&self) -> Result<()> {
        if self.is_shut_down() { Err(Error::ShutDown) } else { Ok(()) }
    }

    fn drop_slow_client(&self, id: ConnectionId) {
        // Counted by whoever records it as slow first: its writer may have closed it as slow already
        // (broadcasts it had not written left the log), and it stays registered until the client
        // answers, or the close timeout.
        let Some(connection) = self.shared.registry.get(id) else { return };
        let first = connection.close_reason.set(CloseReason::SlowClient).is_ok();
        self.shared.registry.remove(id, CloseReason::SlowClient);
        if first {
            self.shared.broadcasts.count_slow_client();
            let config = &self.shared.config;
            log::warn!(
                "websocket {id} ({:?}) dropped: its queue is full (at most {} messages, {} bytes)",
                connection.info.peer,
                config.queue_capacity,
                config.queue_max_bytes
            );
        }
    }
}

/// Runs an application hook; a panic is logged and reported as `false`, so that it ends this
/// connection (with 1011) rather than its thread.
fn run_hook(what: &str, hook: impl FnOnce()) -> bool {
    let ok = catch_unwind(AssertUnwindSafe(hook)).is_ok();
    if !ok {
        log::error!("the websocket {what} hook panicked");
    }
    ok
}

/// Answers a refused handshake, then closes without destroying the answer.
fn refuse(stream: &TcpStream, err: &Error) {
    answer_error(&mut &*stream, err);
    http::linger_close(stream);
}

/// Unregisters the connection on every way out of [`WsHandler::accept_shared`], panics included, and
/// runs the close hook.
struct Registration<'a> {
    shared: &'a Shared,
    connection: &'a Arc<Connection>,
    closed: Option<Closed>,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let info = &self.connection.info;
        let closed = self.closed.take().unwrap_or_else(|| Closed::abnormal(CloseCause::ClientGone));
        self.shared.registry.remove(info.id, CloseReason::ClientGone);
        log::debug!("websocket {} closed: {closed}", info.id);
        if let (Some(hook), false) = (&self.shared.on_close, thread::panicking()) {
            run_hook("close", || hook(info, &closed));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Registers a connection the way `register` does, without a socket or threads.
    fn register(handler: &WsHandler, id: u64) -> (Arc<Connection>, crossbeam_channel::Receiver<Private>) {
        let connection = Arc::new(Connection::new(ConnectionInfo::for_test(id, "/ws"), None));
        let queue = handler.shared.registry.insert(Arc::clone(&connection), Queue::new());
        (connection, queue)
    }

    #[test]
    fn a_broadcast_is_one_append_to_the_log_and_touches_no_connection() {
        let handler = WsHandler::new(WsConfig::default()).unwrap();
        let connections: Vec<_> = (1..=100).map(|id| register(&handler, id)).collect();
        let broadcasts = &handler.shared.broadcasts;
        let head = broadcasts.head();
        for n in 1..=3 {
            assert_eq!(handler.send_all(format!("to all {n}")).unwrap(), 100);
            assert_eq!((broadcasts.head(), broadcasts.len()), (head + n, n as usize), "one entry each");
        }
        for (connection, queue) in &connections {
            assert!(queue.is_empty(), "nothing pushed to connection {}", connection.info.id);
            assert_eq!(connection.stats().queued, 0);
        }
        // A message to one goes to its queue alone, marked with the log's head.
        handler.send_one(2.into(), "to one").unwrap();
        let lengths: Vec<usize> = connections.iter().map(|(_, queue)| queue.len()).collect();
        assert_eq!(lengths.iter().sum::<usize>(), 1);
        assert_eq!(lengths[1], 1);
        assert_eq!(connections[1].1.try_recv().unwrap().after, head + 3);
        assert_eq!(broadcasts.len(), 3, "the log is for broadcasts only");
    }
}
