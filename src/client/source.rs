//! [`EventSource`]: a browser's `EventSource`, as a blocking iterator.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::http::{self, Body};
use super::url::Url;
use super::{EventStream, Item, ReceivedEvent};

/// The reconnection time until the server sets one with `retry:` (what WebKit and Chromium use).
const DEFAULT_RETRY: Duration = Duration::from_secs(3);
/// The longest wait between failed attempts, unless the server's `retry:` asks for more.
const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(30);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Three of the library's default 20 s heartbeats.
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The growth of the backoff starts from at least this, so that `retry: 0` cannot turn repeated
/// failures into a busy loop.
const MIN_BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Redirects followed in a row, as in the Fetch standard.
const MAX_REDIRECTS: usize = 20;

/// Opens the connection for one attempt; see [`EventSourceBuilder::connector`].
type Connector<S> = Box<dyn FnMut(&Target<'_>) -> io::Result<S> + Send>;

/// A client that does what a browser's `EventSource` does, from blocking code: it opens a stream,
/// yields its events, and when the stream ends or breaks, waits and reconnects with `Last-Event-ID`,
/// until the server says to stop or the connection fails for good.
///
/// It follows the WHATWG HTML standard's processing model ("Server-sent events"):
///
/// - Each request is a `GET` with `Accept: text/event-stream`, `Cache-Control: no-cache`, the
///   headers given to [`EventSourceBuilder::header`], and, once an event id has been seen,
///   `Last-Event-ID`. Redirects (301, 302, 303, 307, 308) are followed, at most 20 in a row and
///   only to the same scheme; reconnections go to the original URL.
/// - A `200` response with the MIME type `text/event-stream` (parameters allowed) opens the stream
///   ([`Update::Open`], [`State::Open`]).
/// - Any other status, or a `200` of another type, *fails the connection*: the iterator yields
///   [`SourceError::Status`] or [`SourceError::ContentType`], then ends; it does not reconnect.
///   `204 No Content` is the server's way of saying "stop": the iterator ends without an error.
/// - When an open stream ends, or an I/O error breaks it (including [`idle_timeout`] passing
///   without a byte), it reconnects after the *reconnection time*: 3 s until the server sends
///   `retry:`. A failed attempt (no connection, a timeout, a malformed response) is retried too,
///   after a backoff: after the n-th failure in a row, a random time between half and all of the
///   reconnection time × 2ⁿ (counted from at least 100 ms), at most [`max_backoff`], and never
///   less than the reconnection time. Every wait is announced first by [`Update::Reconnecting`],
///   so a caller can give up.
/// - The last event id is the `id:` of the latest event (an `id:` holding NUL is ignored, an empty
///   `id:` resets it to none). It carries over to the next connection: it is sent as
///   `Last-Event-ID` and events without an `id:` keep reporting it.
///
/// Iterating yields the events only. [`next_update`](EventSource::next_update) yields everything:
/// the stream opening, events, comments such as heartbeats, `retry:` changes, and reconnections.
/// [`state`](EventSource::state) (or a [`SourceHandle`] from another thread) tells where the source
/// stands. Nothing happens in the background: the source connects, waits and reads only inside
/// `next`/`next_update`.
///
/// # Example
///
/// A test that publishes two events and reads them:
///
/// ```
/// use sse_handler::client::{EventSource, State};
/// use sse_handler::{Config, Event, Server, SseHandler};
///
/// let events = SseHandler::new(Config::default())?;
/// let server = Server::bind("127.0.0.1:0")?.stream("/events", &events).spawn()?;
///
/// let mut source = EventSource::new(format!("http://{}/events", server.local_addr()))?;
/// // The first update is the stream opening: the server has registered the client by then.
/// assert!(matches!(source.next_update()?, Some(sse_handler::client::Update::Open)));
/// assert_eq!(source.state(), State::Open);
///
/// events.send_all(Event::data("first"))?;
/// events.send_all(Event::builder().event("note").data("second").build()?)?;
/// let first = source.next().expect("an event")?;
/// let second = source.next().expect("an event")?;
/// assert_eq!((first.event_type.as_str(), first.data.as_str()), ("message", "first"));
/// assert_eq!((second.event_type.as_str(), second.data.as_str()), ("note", "second"));
/// // Auto ids increase; a reconnection now would send this one as Last-Event-ID.
/// assert_eq!(source.last_event_id(), second.last_event_id);
///
/// source.close();
/// assert_eq!(source.state(), State::Closed);
/// server.shutdown();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # TLS
///
/// The built-in transport is plain TCP. For `https://` URLs, give
/// [`connector`](EventSourceBuilder::connector) a closure that opens a TLS stream: anything that is
/// `Read + Write`, such as rustls's `StreamOwned` over a `TcpStream`. Set the socket's read timeout
/// to [`Target::idle_timeout`], or a dead connection is only noticed by TCP itself:
///
/// ```ignore
/// use std::net::TcpStream;
/// use std::sync::Arc;
/// use sse_handler::client::{EventSource, Target};
///
/// let tls = Arc::new(rustls_client_config()); // your rustls::ClientConfig
/// let source = EventSource::builder("https://example.com/events")
///     .connector(move |target: &Target<'_>| {
///         let tcp = TcpStream::connect((target.host(), target.port()))?;
///         tcp.set_read_timeout(Some(target.idle_timeout()))?;
///         tcp.set_write_timeout(Some(target.idle_timeout()))?;
///         let name = target.host().to_owned().try_into().map_err(std::io::Error::other)?;
///         let session = rustls::ClientConnection::new(Arc::clone(&tls), name).map_err(std::io::Error::other)?;
///         Ok(rustls::StreamOwned::new(session, tcp))
///     })
///     .build()?;
/// ```
///
/// [`idle_timeout`]: EventSourceBuilder::idle_timeout
/// [`max_backoff`]: EventSourceBuilder::max_backoff
pub struct EventSource<S = TcpStream> {
    url: Url,
    headers: Vec<(String, String)>,
    connector: Connector<S>,
    /// For the built-in transport: a second handle on the socket, so that closing from another
    /// thread can end a blocked read.
    socket_of: Option<fn(&S) -> io::Result<TcpStream>>,
    idle_timeout: Duration,
    connect_timeout: Duration,
    max_backoff: Duration,
    /// The reconnection time: the latest valid `retry:`, or the default.
    retry: Duration,
    last_event_id: String,
    /// Failed attempts since the stream was last open.
    failures: u32,
    /// A stream has been open at least once.
    opened: bool,
    /// The wait before the next attempt, announced by the last [`Update::Reconnecting`].
    pending_delay: Option<Duration>,
    stream: Option<EventStream<Body<S>>>,
    shared: Arc<Shared>,
    random: u64,
}

/// Where an [`EventSource`] stands: the browser's `readyState`, with reconnecting told apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No stream has opened yet: the first attempt, or a retry after it failed.
    Connecting,
    /// A stream is open.
    Open,
    /// A stream was open and was lost; waiting to reconnect, or reconnecting.
    Reconnecting,
    /// Done: closed, told to stop by a `204`, or failed. It will not connect again.
    Closed,
}

/// What [`EventSource::next_update`] saw.
#[derive(Debug)]
#[non_exhaustive]
pub enum Update {
    /// A stream opened (the browser's `open` event): its events follow.
    Open,
    /// An event was dispatched.
    Event(ReceivedEvent),
    /// A comment line, such as a heartbeat: the text after the `:` and one space.
    Comment(String),
    /// The server set the reconnection time with `retry:`.
    Retry(Duration),
    /// The stream was lost, or an attempt to open one failed (the browser's `error` event while it
    /// reconnects). The next call waits `delay`, then connects again.
    Reconnecting {
        /// How long the next call waits before connecting.
        delay: Duration,
        /// What went wrong; `None` when the server ended the stream normally.
        error: Option<io::Error>,
    },
}

/// Why an [`EventSource`] stopped for good, or could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The URL is not an absolute `http://` URL (or `https://`, with a
    /// [`connector`](EventSourceBuilder::connector)) that can be used.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A request header (or the initial last event id) cannot be sent: a name that is not an
    /// HTTP token, a value holding CR, LF or NUL, or `Last-Event-ID` given as a header (use
    /// [`EventSourceBuilder::last_event_id`]).
    #[error("invalid request header {name:?}: {reason}")]
    InvalidHeader {
        /// The header's name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A timeout of zero was given; the setting is named.
    #[error("{0} must be more than zero")]
    ZeroTimeout(&'static str),
    /// The server answered with a status other than `200` (and other than `204`, which ends the
    /// stream without an error). The connection failed: no reconnection follows.
    #[error("the server answered {status} {reason}")]
    Status {
        /// The status code.
        status: u16,
        /// The reason phrase (may be empty).
        reason: String,
    },
    /// The server answered `200` with a `Content-Type` other than `text/event-stream`. The
    /// connection failed: no reconnection follows.
    #[error("the server answered 200 with Content-Type {content_type:?}, not text/event-stream")]
    ContentType {
        /// The `Content-Type` received, if there was one.
        content_type: Option<String>,
    },
    /// A redirect that is not followed: no usable `Location`, another scheme, or more than 20 in a row.
    #[error("redirect ({status}) not followed: {reason}")]
    Redirect {
        /// The redirect's status code.
        status: u16,
        /// Why it was not followed.
        reason: &'static str,
    },
}

/// Where one connection attempt goes, handed to a [`connector`](EventSourceBuilder::connector).
#[derive(Debug)]
pub struct Target<'a> {
    url: &'a Url,
    connect_timeout: Duration,
    idle_timeout: Duration,
}

impl Target<'_> {
    /// `"http"` or `"https"`.
    pub fn scheme(&self) -> &str {
        self.url.scheme
    }

    /// The host name or IP address (an IPv6 address without brackets).
    pub fn host(&self) -> &str {
        &self.url.host
    }

    /// The port, the scheme's default when the URL gives none.
    pub fn port(&self) -> u16 {
        self.url.port
    }

    /// How long connecting may take ([`EventSourceBuilder::connect_timeout`]).
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The read (and write) timeout to set on the connection ([`EventSourceBuilder::idle_timeout`]).
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }
}

/// Settings for an [`EventSource`], from [`EventSource::builder`].
pub struct EventSourceBuilder<S = TcpStream> {
    url: String,
    headers: Vec<(String, String)>,
    last_event_id: String,
    retry: Duration,
    max_backoff: Duration,
    connect_timeout: Duration,
    idle_timeout: Duration,
    connector: Connector<S>,
    socket_of: Option<fn(&S) -> io::Result<TcpStream>>,
}

impl EventSource {
    /// An event source for `url` with the default settings; see [`EventSource::builder`].
    ///
    /// # Errors
    ///
    /// [`SourceError::InvalidUrl`] if `url` is not an absolute `http://` URL.
    pub fn new(url: impl Into<String>) -> Result<EventSource, SourceError> {
        EventSource::builder(url).build()
    }

    /// Settings for an event source that reads `url`, an absolute `http://` URL such as
    /// `http://127.0.0.1:8080/events?topic=a`. Nothing is connected before the first
    /// [`next`](Iterator::next) or [`next_update`](EventSource::next_update).
    pub fn builder(url: impl Into<String>) -> EventSourceBuilder {
        EventSourceBuilder {
            url: url.into(),
            headers: Vec::new(),
            last_event_id: String::new(),
            retry: DEFAULT_RETRY,
            max_backoff: DEFAULT_MAX_BACKOFF,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            connector: Box::new(connect_tcp),
            socket_of: Some(TcpStream::try_clone),
        }
    }
}

impl<S> EventSourceBuilder<S> {
    /// Sends this header on every request, reconnections included: `Authorization` for a bearer
    /// token, a cookie, anything the server needs. One with the name of a default (`Accept`,
    /// `Cache-Control`, `Host`) replaces it.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Starts from this last event id, so the first request already sends `Last-Event-ID` (a
    /// browser cannot; a tool that saved the id can resume where it stopped). Default none.
    pub fn last_event_id(mut self, id: impl Into<String>) -> Self {
        self.last_event_id = id.into();
        self
    }

    /// The reconnection time until the server sends `retry:`. Default 3 s.
    pub fn retry(mut self, delay: Duration) -> Self {
        self.retry = delay;
        self
    }

    /// The longest wait after repeated failures, unless the reconnection time is longer. Default 30 s.
    pub fn max_backoff(mut self, limit: Duration) -> Self {
        self.max_backoff = limit;
        self
    }

    /// How long opening a connection may take. Default 10 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long the server may stay silent (not a byte, heartbeats included) before the connection
    /// counts as lost and is reopened; also the limit on sending the request and on waiting for the
    /// response head. Keep it above the server's heartbeat interval. Default 60 s.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Opens each connection with `connect` instead of a plain `TcpStream`: for TLS (see
    /// [`EventSource`]), a proxy tunnel, or a test double. It gets the host and port to reach and
    /// the timeouts to apply; it should set the read timeout to [`Target::idle_timeout`]. Its
    /// errors count as failed attempts and are retried.
    ///
    /// With a connector, [`SourceHandle::close`] ends a blocked read only when the connection
    /// next delivers bytes or times out.
    pub fn connector<T, F>(self, connect: F) -> EventSourceBuilder<T>
    where
        F: FnMut(&Target<'_>) -> io::Result<T> + Send + 'static,
    {
        EventSourceBuilder {
            url: self.url,
            headers: self.headers,
            last_event_id: self.last_event_id,
            retry: self.retry,
            max_backoff: self.max_backoff,
            connect_timeout: self.connect_timeout,
            idle_timeout: self.idle_timeout,
            connector: Box::new(connect),
            socket_of: None,
        }
    }

    /// Checks the settings and makes the event source; nothing is connected yet.
    ///
    /// # Errors
    ///
    /// [`SourceError::InvalidUrl`] for a URL that is not absolute `http://` (or `https://` with a
    /// [`connector`](EventSourceBuilder::connector)), [`SourceError::InvalidHeader`] for a header
    /// or last event id that cannot be sent, [`SourceError::ZeroTimeout`] for a zero timeout.
    pub fn build(self) -> Result<EventSource<S>, SourceError> {
        let invalid_url = |reason| SourceError::InvalidUrl { url: self.url.clone(), reason };
        let url = Url::parse(&self.url).map_err(invalid_url)?;
        if url.scheme == "https" && self.socket_of.is_some() {
            return Err(invalid_url(
                "https:// needs a connector that speaks TLS (see EventSourceBuilder::connector)",
            ));
        }
        for (name, value) in &self.headers {
            check_header(name, value)?;
            if name.eq_ignore_ascii_case("last-event-id") {
                let reason = "set it with EventSourceBuilder::last_event_id, so that it follows the stream";
                return Err(SourceError::InvalidHeader { name: name.clone(), reason });
            }
        }
        check_header("Last-Event-ID", &self.last_event_id)?;
        if self.connect_timeout.is_zero() {
            return Err(SourceError::ZeroTimeout("the connect timeout"));
        }
        if self.idle_timeout.is_zero() {
            return Err(SourceError::ZeroTimeout("the idle timeout"));
        }
        Ok(EventSource {
            url,
            headers: self.headers,
            connector: self.connector,
            socket_of: self.socket_of,
            idle_timeout: self.idle_timeout,
            connect_timeout: self.connect_timeout,
            max_backoff: self.max_backoff,
            retry: self.retry,
            last_event_id: self.last_event_id,
            failures: 0,
            opened: false,
            pending_delay: None,
            stream: None,
            shared: Arc::new(Shared::default()),
            random: RandomState::new().hash_one(Instant::now()) | 1,
        })
    }
}

impl<S> fmt::Debug for EventSourceBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventSourceBuilder")
            .field("url", &self.url)
            .field("headers", &header_names(&self.headers))
            .field("last_event_id", &self.last_event_id)
            .field("retry", &self.retry)
            .field("max_backoff", &self.max_backoff)
            .field("connect_timeout", &self.connect_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

impl<S: Read + Write> EventSource<S> {
    /// The next thing that happens: the stream opening, an event, a comment, a `retry:` change, or
    /// a lost connection ([`Update::Reconnecting`], after which the next call waits and reconnects).
    /// `Ok(None)` once the source is closed: by [`close`](EventSource::close), a
    /// [`SourceHandle`], or a `204` answer. Blocks until one of these; each call is bounded by the
    /// timeouts and the announced delay.
    ///
    /// # Errors
    ///
    /// [`SourceError::Status`], [`SourceError::ContentType`] or [`SourceError::Redirect`] when the
    /// connection fails; the source is then closed and later calls return `Ok(None)`.
    pub fn next_update(&mut self) -> Result<Option<Update>, SourceError> {
        if self.shared.is_closing() {
            self.finish();
            return Ok(None);
        }
        if self.stream.is_some() {
            return Ok(self.read_stream());
        }
        if let Some(delay) = self.pending_delay.take() {
            if !self.shared.wait_unless_closed(delay) {
                self.finish();
                return Ok(None);
            }
        }
        self.connect()
    }

    /// Reads the next item of the open stream; a lost stream becomes [`Update::Reconnecting`].
    fn read_stream(&mut self) -> Option<Update> {
        let stream = self.stream.as_mut()?;
        let item = stream.next_item();
        // The id is taken at every dispatch, also one that fires no event (`id: 7` then a blank line).
        self.last_event_id.clone_from(&stream.last_event_id);
        match item {
            Ok(Some(Item::Event(event))) => Some(Update::Event(event)),
            Ok(Some(Item::Comment(text))) => Some(Update::Comment(text)),
            Ok(Some(Item::Retry(delay))) => {
                self.retry = delay;
                Some(Update::Retry(delay))
            }
            Ok(None) => self.lost(None),
            Err(error) => self.lost(Some(self.explain_timeout(error))),
        }
    }

    /// The open stream ended: reconnect after the reconnection time.
    fn lost(&mut self, error: Option<io::Error>) -> Option<Update> {
        self.stream = None;
        self.shared.forget_socket();
        if self.shared.is_closing() {
            self.finish();
            return None;
        }
        let delay = self.retry;
        log::debug!(
            "event source {}: stream lost ({}), reconnecting in {delay:?}",
            self.url.authority,
            describe(&error)
        );
        self.shared.set_state(State::Reconnecting);
        self.pending_delay = Some(delay);
        Some(Update::Reconnecting { delay, error })
    }

    /// One attempt to open a stream, following redirects.
    fn connect(&mut self) -> Result<Option<Update>, SourceError> {
        match self.open() {
            Ok(Some(stream)) => {
                log::debug!("event source {}: open", self.url.authority);
                self.stream = Some(stream);
                self.failures = 0;
                self.opened = true;
                self.shared.set_state(State::Open);
                Ok(Some(Update::Open))
            }
            Ok(None) => {
                log::debug!("event source {}: the server answered 204, closing", self.url.authority);
                self.finish();
                Ok(None)
            }
            Err(Attempt::Failed(error)) => {
                log::debug!("event source {}: {error}", self.url.authority);
                self.finish();
                Err(error)
            }
            Err(Attempt::Retry(error)) => {
                self.shared.forget_socket();
                if self.shared.is_closing() {
                    self.finish();
                    return Ok(None);
                }
                self.failures = self.failures.saturating_add(1);
                let delay = self.backoff();
                log::debug!(
                    "event source {}: attempt {} failed ({error}), retrying in {delay:?}",
                    self.url.authority,
                    self.failures
                );
                self.shared.set_state(if self.opened { State::Reconnecting } else { State::Connecting });
                self.pending_delay = Some(delay);
                Ok(Some(Update::Reconnecting { delay, error: Some(error) }))
            }
        }
    }

    /// Opens a stream: `Some` for a `200 text/event-stream`, `None` for a `204`.
    fn open(&mut self) -> Result<Option<EventStream<Body<S>>>, Attempt> {
        let mut url = self.url.clone();
        let mut redirects = 0;
        loop {
            let response = self.request(&url).map_err(Attempt::Retry)?;
            match response.status() {
                200 => {
                    check_content_type(response.header("content-type"))?;
                    return Ok(Some(response.into_events().carry_last_event_id(&self.last_event_id)));
                }
                204 => return Ok(None),
                status @ (301 | 302 | 303 | 307 | 308) => {
                    let redirect = |reason| Attempt::Failed(SourceError::Redirect { status, reason });
                    redirects += 1;
                    if redirects > MAX_REDIRECTS {
                        return Err(redirect("more than 20 redirects in a row"));
                    }
                    let location =
                        response.header("location").ok_or_else(|| redirect("no Location header"))?;
                    url = url.join(location).map_err(redirect)?;
                }
                status => {
                    let reason = response.reason().to_owned();
                    return Err(Attempt::Failed(SourceError::Status { status, reason }));
                }
            }
        }
    }

    /// Connects to `url` and sends the request; returns once the response head has arrived.
    /// A timeout after connecting is reported as the idle timeout's.
    fn request(&mut self, url: &Url) -> io::Result<http::ReceivedResponse<S>> {
        let target = Target { url, connect_timeout: self.connect_timeout, idle_timeout: self.idle_timeout };
        let connection = (self.connector)(&target)?;
        if let Some(socket_of) = self.socket_of {
            self.shared.remember_socket(socket_of(&connection)?);
        }
        if self.shared.is_closing() {
            return Err(io::Error::new(io::ErrorKind::ConnectionAborted, "closed"));
        }
        let mut headers: Vec<(&str, &str)> =
            self.headers.iter().map(|(name, value)| (name.as_str(), value.as_str())).collect();
        if !self.last_event_id.is_empty() {
            headers.push(("Last-Event-ID", &self.last_event_id));
        }
        let headers = http::with_stream_defaults(&headers);
        http::exchange(connection, &url.authority, "GET", &url.target, &headers, None)
            .map_err(|error| self.explain_timeout(error))
    }
}

impl<S> EventSource<S> {
    /// Where the source stands now.
    pub fn state(&self) -> State {
        self.shared.state()
    }

    /// The last event id: what the next connection sends as `Last-Event-ID` ("" for none).
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// The reconnection time: the latest valid `retry:` from the server, or the configured one.
    pub fn reconnection_time(&self) -> Duration {
        self.retry
    }

    /// A handle that can watch and close this source from another thread.
    pub fn handle(&self) -> SourceHandle {
        SourceHandle { shared: Arc::clone(&self.shared) }
    }

    /// Closes the connection and stops: later calls return `None`, nothing reconnects.
    pub fn close(&mut self) {
        self.shared.close();
        self.finish();
    }

    /// Drops the connection and any planned attempt, for good.
    fn finish(&mut self) {
        self.stream = None;
        self.pending_delay = None;
        self.shared.forget_socket();
        self.shared.mark_closed();
    }

    /// The wait before the next attempt after `failures` failed ones in a row: random, between half
    /// and all of the reconnection time × 2^failures (from at least 100 ms), capped by the maximum
    /// backoff; never shorter than the reconnection time.
    fn backoff(&mut self) -> Duration {
        let base = self.retry.max(MIN_BACKOFF_BASE.min(self.max_backoff));
        let grown = base.saturating_mul(1 << self.failures.min(20));
        let upper = grown.min(self.max_backoff).max(self.retry);
        let lower = (upper / 2).max(self.retry);
        lower + (upper - lower).mul_f64(self.next_random())
    }

    /// A number in [0, 1) from a xorshift generator: jitter needs spread, not quality.
    fn next_random(&mut self) -> f64 {
        self.random ^= self.random << 13;
        self.random ^= self.random >> 7;
        self.random ^= self.random << 17;
        (self.random >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A read or head that timed out reports which limit it hit (platforms differ on the kind).
    fn explain_timeout(&self, error: io::Error) -> io::Error {
        match error.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => io::Error::new(
                io::ErrorKind::TimedOut,
                format!("nothing from the server for {:?} (the idle timeout)", self.idle_timeout),
            ),
            _ => error,
        }
    }
}

/// Yields the events; ends when the source closes. A failed connection yields one `Err`, then ends.
impl<S: Read + Write> Iterator for EventSource<S> {
    type Item = Result<ReceivedEvent, SourceError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.next_update() {
                Ok(Some(Update::Event(event))) => return Some(Ok(event)),
                Ok(Some(_)) => {}
                Ok(None) => return None,
                Err(error) => return Some(Err(error)),
            }
        }
    }
}

impl<S> fmt::Debug for EventSource<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventSource")
            .field("url", &self.url.to_string())
            .field("headers", &header_names(&self.headers))
            .field("state", &self.state())
            .field("last_event_id", &self.last_event_id)
            .field("reconnection_time", &self.retry)
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}

/// Watches or closes an [`EventSource`] from another thread.
#[derive(Debug, Clone)]
pub struct SourceHandle {
    shared: Arc<Shared>,
}

impl SourceHandle {
    /// Where the source stands now.
    pub fn state(&self) -> State {
        self.shared.state()
    }

    /// Closes the source: a wait before reconnecting ends at once, and so does a blocked read on the
    /// built-in transport (with a [`connector`](EventSourceBuilder::connector), at the next bytes or
    /// the idle timeout). The source's next call returns `None`.
    pub fn close(&self) {
        self.shared.close();
    }
}

/// What the source and its handles share.
#[derive(Debug)]
struct Shared {
    status: Mutex<Status>,
    /// Wakes a wait before reconnecting when the source is closed.
    closed: Condvar,
    /// The socket being read, for the built-in transport.
    socket: Mutex<Option<TcpStream>>,
}

#[derive(Debug)]
struct Status {
    state: State,
    closing: bool,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            status: Mutex::new(Status { state: State::Connecting, closing: false }),
            closed: Condvar::new(),
            socket: Mutex::new(None),
        }
    }
}

impl Shared {
    fn state(&self) -> State {
        self.status.lock().state
    }

    fn set_state(&self, state: State) {
        self.status.lock().state = state;
    }

    fn is_closing(&self) -> bool {
        self.status.lock().closing
    }

    fn mark_closed(&self) {
        let mut status = self.status.lock();
        status.closing = true;
        status.state = State::Closed;
    }

    fn close(&self) {
        self.status.lock().closing = true;
        self.closed.notify_all();
        if let Some(socket) = self.socket.lock().as_ref() {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }

    fn remember_socket(&self, socket: TcpStream) {
        *self.socket.lock() = Some(socket);
    }

    fn forget_socket(&self) {
        *self.socket.lock() = None;
    }

    /// Waits `delay`; false if the source was closed meanwhile.
    fn wait_unless_closed(&self, delay: Duration) -> bool {
        let deadline = Instant::now().checked_add(delay);
        let mut status = self.status.lock();
        while !status.closing {
            match deadline {
                Some(deadline) => {
                    if self.closed.wait_until(&mut status, deadline).timed_out() {
                        return !status.closing;
                    }
                }
                // A `retry:` too large for the clock: only closing ends the wait.
                None => self.closed.wait(&mut status),
            }
        }
        false
    }
}

/// How one attempt ended, when it did not open a stream.
enum Attempt {
    /// The connection failed: stop.
    Failed(SourceError),
    /// Try again later.
    Retry(io::Error),
}

impl From<SourceError> for Attempt {
    fn from(error: SourceError) -> Self {
        Attempt::Failed(error)
    }
}

/// The built-in transport: a `TcpStream` with the idle timeout on reads and writes.
fn connect_tcp(target: &Target<'_>) -> io::Result<TcpStream> {
    let (stream, _) =
        http::open((target.host(), target.port()), target.connect_timeout, target.idle_timeout)?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Checks the MIME type's essence, as a browser does: `text/event-stream`, any case, parameters allowed.
fn check_content_type(content_type: Option<&str>) -> Result<(), SourceError> {
    let essence =
        content_type.map(|value| value.split(';').next().unwrap_or_default().trim_matches([' ', '\t']));
    if essence.is_some_and(|essence| essence.eq_ignore_ascii_case("text/event-stream")) {
        return Ok(());
    }
    Err(SourceError::ContentType { content_type: content_type.map(str::to_owned) })
}

fn check_header(name: &str, value: &str) -> Result<(), SourceError> {
    let invalid = |reason| SourceError::InvalidHeader { name: name.to_owned(), reason };
    let is_token_char = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(is_token_char) {
        return Err(invalid("a name that is not an HTTP token"));
    }
    if value.contains(['\r', '\n', '\0']) {
        return Err(invalid("a value holding CR, LF or NUL"));
    }
    Ok(())
}

/// Header names only: values may hold credentials.
fn header_names(headers: &[(String, String)]) -> Vec<&str> {
    headers.iter().map(|(name, _)| name.as_str()).collect()
}

fn describe(error: &Option<io::Error>) -> String {
    error.as_ref().map_or_else(|| "ended by the server".to_owned(), ToString::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn built(retry: Duration, max_backoff: Duration) -> EventSource {
        EventSource::builder("http://127.0.0.1:1/").retry(retry).max_backoff(max_backoff).build().unwrap()
    }

    /// The delays after 1, 2, ... failures in a row, `samples` times each.
    fn delays(source: &mut EventSource, failures: u32, samples: usize) -> Vec<Duration> {
        source.failures = failures;
        (0..samples).map(|_| source.backoff()).collect()
    }

    #[test]
    fn backoff_grows_with_jitter_up_to_its_cap() {
        let ms = Duration::from_millis;
        let mut source = built(ms(10), ms(1000));
        for (failures, low, high) in
            [(1, 100, 200), (2, 200, 400), (3, 400, 800), (4, 500, 1000), (9, 500, 1000)]
        {
            let delays = delays(&mut source, failures, 500);
            assert!(delays.iter().all(|d| (ms(low)..=ms(high)).contains(d)), "{failures}: {delays:?}");
            // Spread over the range, not one value: clients that failed together come back apart.
            let (min, max) = (delays.iter().min().unwrap(), delays.iter().max().unwrap());
            assert!(*max - *min > ms(high - low) / 2, "{failures}: {min:?}..{max:?}");
        }
    }

    #[test]
    fn backoff_never_undercuts_the_servers_retry() {
        let mut source = built(Duration::from_secs(60), Duration::from_secs(30));
        assert!(delays(&mut source, 3, 50).iter().all(|d| *d == Duration::from_secs(60)));
        let mut source = built(Duration::ZERO, Duration::from_secs(30));
        let first = delays(&mut source, 1, 50);
        assert!(first.iter().all(|d| *d >= Duration::from_millis(100)), "retry: 0 must not spin: {first:?}");
    }

    #[test]
    fn a_wait_ends_when_the_source_is_closed() {
        let shared = Arc::new(Shared::default());
        let closer = Arc::clone(&shared);
        let waiter = std::thread::spawn(move || shared.wait_unless_closed(Duration::from_secs(3600)));
        closer.close();
        assert!(!waiter.join().unwrap(), "closed, not timed out");
        assert!(!closer.wait_unless_closed(Duration::ZERO));
        let fresh = Shared::default();
        assert!(fresh.wait_unless_closed(Duration::from_millis(1)));
    }

    #[test]
    fn checks_the_mime_type_essence() {
        for ok in [
            "text/event-stream",
            "TEXT/EVENT-STREAM",
            "text/event-stream;charset=utf-8",
            "\ttext/event-stream ; a=b",
        ] {
            assert!(check_content_type(Some(ok)).is_ok(), "{ok}");
        }
        for bad in
            ["text/plain", "text/event-streams", "text/event-stream, text/plain", "", "text/event stream"]
        {
            assert!(check_content_type(Some(bad)).is_err(), "{bad}");
        }
        assert!(check_content_type(None).is_err());
    }
}
