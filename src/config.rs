//! Settings of a handler ([`Config`]) and of request reading ([`RequestLimits`]).

use std::time::Duration;

use crate::error::{Error, Result};
use crate::http::{RequestLimits, is_valid_header};

/// What to replay when a client's `Last-Event-ID` is not in the history (it is older than everything
/// retained, came from another server, or was never issued).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum UnknownIdPolicy {
    /// Replay every event the history still holds. The client may see events it already had, but
    /// loses none that are retained. The default.
    #[default]
    ReplayAll,
    /// Replay nothing; the client continues with live events only.
    ReplayNone,
}

/// Settings of an [`SseHandler`](crate::SseHandler). Every field documents its default.
///
/// Fields are public; the chainable setters of the same names read better in a builder chain:
///
/// ```
/// use std::time::Duration;
/// use sse_handler::Config;
///
/// let config = Config::default()
///     .heartbeat(Duration::from_secs(15))
///     .history_capacity(500)
///     .allow_origin("https://example.com")
///     .header("X-Served-By", "edge-1");
/// assert_eq!(config.heartbeat, Duration::from_secs(15));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// How long a stream may stay silent before a heartbeat comment is written. Default 20 s (as in
    /// Qore's `ServerSentEventHandler`, which this library is modeled on; proxies commonly drop
    /// connections idle for 30-60 s). Must be more than zero. Can be
    /// changed later with [`SseHandler::set_heartbeat`](crate::SseHandler::set_heartbeat).
    pub heartbeat: Duration,
    /// The text of the heartbeat comment (`: heartbeat`). Default `"heartbeat"`.
    pub heartbeat_comment: String,
    /// How long one write to a client may block before the client counts as gone. Default 30 s.
    pub send_timeout: Duration,
    /// Events sent to one connection alone ([`send_one`](crate::SseHandler::send_one)) that may wait
    /// for it unwritten; a client that lets more pile up is dropped. Broadcasts do not count: they
    /// live in the event log. Default 1024.
    pub queue_capacity: usize,
    /// Bytes of such events that may wait for one connection (one is always let in, however large).
    /// Default 4 MiB.
    pub queue_max_bytes: usize,
    /// What happens to a client that falls so far behind that events it has not read yet leave the
    /// event log (see [`history_capacity`](Config::history_capacity)). Default
    /// [`OverflowPolicy::Disconnect`]: it is closed, and resumes by `Last-Event-ID`.
    pub overflow: OverflowPolicy,
    /// Events the event log keeps. Every broadcast is appended to the log once, and each stream reads
    /// it from its own position; so this is both how many events a reconnecting client can resume
    /// from (`Last-Event-ID`) and how far a client may fall behind before the
    /// [`overflow`](Config::overflow) policy applies. Memory is spent once per handler, not per
    /// client. Default 10,000; at least 1.
    pub history_capacity: usize,
    /// Events older than this leave the log, and are not resumed from. Default `None`: no age limit.
    pub history_max_age: Option<Duration>,
    /// The most bytes of encoded events the log keeps (oldest dropped first; the newest is always
    /// kept). Default 16 MiB.
    pub history_max_bytes: usize,
    /// How long a stream lets events gather before its next write, after it wrote a small batch while
    /// more events came in (a burst). It then writes many events at once instead of one write (and
    /// one system call) per event or two, which in a burst is what sets the pace. It never delays an
    /// event published after a quiet moment: those are written as soon as they come. Default 400 µs;
    /// zero writes every batch at once (lowest latency in a burst, at a CPU cost).
    pub linger: Duration,
    /// The kernel's send buffer for each stream's socket (`SO_SNDBUF`), which bounds what a client
    /// that stopped reading holds in the kernel. Default `None`: the system's default (which grows
    /// up to a few MiB).
    pub send_buffer: Option<usize>,
    /// What to replay for a `Last-Event-ID` the history does not hold. Default
    /// [`UnknownIdPolicy::ReplayAll`].
    pub unknown_id_policy: UnknownIdPolicy,
    /// Number events that the publisher sent with data but without an id, so that clients can resume
    /// after them. The numbers grow by one per event published, and start from the clock (the
    /// nanoseconds since 1970 when the handler was made), so a later process's ids are greater than
    /// an earlier one's and an id kept from an earlier process is never taken for a new event.
    /// Default `true`.
    pub auto_ids: bool,
    /// Extra headers on every stream response. Default none. Checked by `SseHandler::new`.
    ///
    /// A header named like one the handler writes itself (`Content-Type: text/event-stream`,
    /// `Cache-Control: no-cache, no-transform`, `X-Accel-Buffering: no`, `Connection: keep-alive`,
    /// and the CORS headers of [`allow_origin`](Config::allow_origin)) replaces it, in its place;
    /// names compare without regard to case. Others are written after them, in order, each one
    /// (so two `Link` headers stay two).
    pub headers: Vec<(String, String)>,
    /// The origin allowed to subscribe from a page elsewhere (CORS): `"*"` or an exact origin such as
    /// `"https://example.com"`. Default `None`: no CORS headers, so only same-origin pages can subscribe.
    pub allow_origin: Option<String>,
    /// A `retry:` hint written when a stream opens, telling the client how long to wait before
    /// reconnecting. Default `None` (browsers then wait about 3 s).
    pub retry: Option<Duration>,
    /// The `retry:` hint written when the server ends a stream (shutdown, `stop_one`, maximum lifetime,
    /// too many connections), so the client comes back after this long. Default 3 s.
    pub reconnect_after: Duration,
    /// A random extra of up to this much on every `retry:` hint, so that clients dropped together do
    /// not all come back at the same instant. Default zero.
    pub retry_jitter: Duration,
    /// Streams older than this are closed with a `retry:` hint; the client resumes by `Last-Event-ID`.
    /// Sheds stuck connections and spreads load after a restart. Default `None`: no limit.
    pub max_lifetime: Option<Duration>,
    /// Turns on TCP keepalive with this idle time, to find peers that vanished without closing (a
    /// cable pulled, a laptop asleep) even on streams with nothing to send. Default `None`.
    pub tcp_keepalive: Option<Duration>,
    /// Refuse (with [`Error::InvalidField`]) events whose id would make browsers send a CORS preflight
    /// when they reconnect cross-origin: ids over 128 bytes, or holding a control character or one of
    /// `"():<>?@[\]{}` (the Fetch standard's CORS-unsafe bytes). Default `false`.
    pub cors_safe_ids: bool,
    /// The event types clients may subscribe to and publishers may send. Default `None`: any type.
    ///
    /// When set, `?event=other` is answered 404 and `send_all` of another type is an error. An event
    /// without a type is of type `message` (that is how clients see it): it may always be sent, so
    /// `?event=message` is always taken, and so is an event typed `message` explicitly. More types
    /// can be allowed while the handler runs, with
    /// [`SseHandler::register_event_type`](crate::SseHandler::register_event_type); this field stays
    /// the set the handler started with.
    pub event_types: Option<Vec<String>>,
    /// Limits on reading a request head, used by [`SseHandler::serve`](crate::SseHandler::serve).
    pub request_limits: RequestLimits,
    /// The target of the handler's log lines (the `log` crate's `target:`), so that the lines of two
    /// handlers can be told apart and routed, by a logger's filter for instance
    /// (`RUST_LOG=chat=debug` with `env_logger`). Default `None`: the lines' module paths
    /// (`sse_handler::handler`, `sse_handler::connection`). Must not be empty.
    pub log_target: Option<String>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            heartbeat: Duration::from_secs(20),
            heartbeat_comment: "heartbeat".to_owned(),
            send_timeout: Duration::from_secs(30),
            queue_capacity: 1024,
            queue_max_bytes: 4 * 1024 * 1024,
            overflow: OverflowPolicy::Disconnect,
            history_capacity: 10_000,
            history_max_age: None,
            history_max_bytes: 16 * 1024 * 1024,
            linger: Duration::from_micros(400),
            send_buffer: None,
            unknown_id_policy: UnknownIdPolicy::ReplayAll,
            auto_ids: true,
            headers: Vec::new(),
            allow_origin: None,
            retry: None,
            reconnect_after: Duration::from_secs(3),
            retry_jitter: Duration::ZERO,
            max_lifetime: None,
            tcp_keepalive: None,
            cors_safe_ids: false,
            event_types: None,
            request_limits: RequestLimits::default(),
            log_target: None,
        }
    }
}

impl Config {
    /// Sets [`Config::heartbeat`].
    pub fn heartbeat(mut self, interval: Duration) -> Config {
        self.heartbeat = interval;
        self
    }

    /// Sets [`Config::heartbeat_comment`].
    pub fn heartbeat_comment(mut self, text: impl Into<String>) -> Config {
        self.heartbeat_comment = text.into();
        self
    }

    /// Sets [`Config::send_timeout`].
    pub fn send_timeout(mut self, timeout: Duration) -> Config {
        self.send_timeout = timeout;
        self
    }

    /// Sets [`Config::queue_capacity`].
    pub fn queue_capacity(mut self, events: usize) -> Config {
        self.queue_capacity = events;
        self
    }

    /// Sets [`Config::queue_max_bytes`].
    pub fn queue_max_bytes(mut self, bytes: usize) -> Config {
        self.queue_max_bytes = bytes;
        self
    }

    /// Sets [`Config::overflow`].
    pub fn overflow(mut self, policy: OverflowPolicy) -> Config {
        self.overflow = policy;
        self
    }

    /// Sets [`Config::history_max_age`].
    pub fn history_max_age(mut self, age: Duration) -> Config {
        self.history_max_age = Some(age);
        self
    }

    /// Sets [`Config::history_max_bytes`].
    pub fn history_max_bytes(mut self, bytes: usize) -> Config {
        self.history_max_bytes = bytes;
        self
    }

    /// Sets [`Config::linger`].
    pub fn linger(mut self, linger: Duration) -> Config {
        self.linger = linger;
        self
    }

    /// Sets [`Config::send_buffer`].
    pub fn send_buffer(mut self, bytes: usize) -> Config {
        self.send_buffer = Some(bytes);
        self
    }

    /// Sets [`Config::reconnect_after`].
    pub fn reconnect_after(mut self, after: Duration) -> Config {
        self.reconnect_after = after;
        self
    }

    /// Sets [`Config::retry_jitter`].
    pub fn retry_jitter(mut self, jitter: Duration) -> Config {
        self.retry_jitter = jitter;
        self
    }

    /// Sets [`Config::max_lifetime`].
    pub fn max_lifetime(mut self, lifetime: Duration) -> Config {
        self.max_lifetime = Some(lifetime);
        self
    }

    /// Sets [`Config::tcp_keepalive`].
    pub fn tcp_keepalive(mut self, idle: Duration) -> Config {
        self.tcp_keepalive = Some(idle);
        self
    }

    /// Sets [`Config::cors_safe_ids`].
    pub fn cors_safe_ids(mut self, on: bool) -> Config {
        self.cors_safe_ids = on;
        self
    }

    /// Sets [`Config::history_capacity`].
    pub fn history_capacity(mut self, events: usize) -> Config {
        self.history_capacity = events;
        self
    }

    /// Sets [`Config::unknown_id_policy`].
    pub fn unknown_id_policy(mut self, policy: UnknownIdPolicy) -> Config {
        self.unknown_id_policy = policy;
        self
    }

    /// Sets [`Config::auto_ids`].
    pub fn auto_ids(mut self, on: bool) -> Config {
        self.auto_ids = on;
        self
    }

    /// Adds a header to [`Config::headers`].
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Config {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets [`Config::allow_origin`].
    pub fn allow_origin(mut self, origin: impl Into<String>) -> Config {
        self.allow_origin = Some(origin.into());
        self
    }

    /// Sets [`Config::retry`].
    pub fn retry(mut self, after: Duration) -> Config {
        self.retry = Some(after);
        self
    }

    /// Sets [`Config::event_types`].
    pub fn event_types<S: Into<String>>(mut self, types: impl IntoIterator<Item = S>) -> Config {
        self.event_types = Some(types.into_iter().map(Into::into).collect());
        self
    }

    /// Sets [`Config::request_limits`].
    pub fn request_limits(mut self, limits: RequestLimits) -> Config {
        self.request_limits = limits;
        self
    }

    /// Sets [`Config::log_target`].
    ///
    /// ```
    /// use sse_handler::{Config, SseHandler};
    ///
    /// let chat = SseHandler::new(Config::default().log_target("chat"))?;
    /// let prices = SseHandler::new(Config::default().log_target("prices"))?;
    /// # let _ = (chat, prices);
    /// # Ok::<(), sse_handler::Error>(())
    /// ```
    pub fn log_target(mut self, target: impl Into<String>) -> Config {
        self.log_target = Some(target.into());
        self
    }

    /// Checks every value; `SseHandler::new` calls it, so a bad config fails at start, not mid-stream.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the first field at fault.
    pub fn validate(&self) -> Result<()> {
        let invalid = |what: String| Err(Error::InvalidConfig(what));
        if self.heartbeat.is_zero() {
            return invalid("heartbeat must be more than zero".into());
        }
        if self.send_timeout.is_zero() {
            return invalid("send_timeout must be more than zero".into());
        }
        if self.queue_capacity == 0 {
            return invalid("queue_capacity must be at least 1".into());
        }
        if self.history_capacity == 0 {
            return invalid(
                "history_capacity must be at least 1: the log holds every event until streams read it".into(),
            );
        }
        if self.max_lifetime.is_some_and(|lifetime| lifetime.is_zero()) {
            return invalid("max_lifetime must be more than zero".into());
        }
        if self.tcp_keepalive.is_some_and(|idle| idle.as_secs() == 0) {
            return invalid("tcp_keepalive must be at least one second".into());
        }
        for (name, value) in &self.headers {
            if !is_valid_header(name, value) {
                return invalid(format!("header {name:?} is not a valid HTTP header"));
            }
        }
        if let Some(origin) = &self.allow_origin {
            if origin.is_empty() || !is_valid_header("Access-Control-Allow-Origin", origin) {
                return invalid(format!("allow_origin {origin:?} is not a valid origin"));
            }
        }
        if let Some(types) = &self.event_types {
            if let Some(bad) = types.iter().find(|t| !is_valid_event_type(t)) {
                return invalid(format!("event type {bad:?} is empty or holds a line break"));
            }
        }
        if self.log_target.as_ref().is_some_and(String::is_empty) {
            return invalid("log_target must not be empty".into());
        }
        self.request_limits.validate()
    }
}

/// Whether an event type can be allowed: one that an event can carry.
pub(crate) fn is_valid_event_type(event_type: &str) -> bool {
    !event_type.is_empty() && !event_type.contains(['\r', '\n'])
}

/// What happens to a client that falls so far behind that events it has not read leave the event
/// log (for a WebSocket client: whose own queue is full).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OverflowPolicy {
    /// Close the connection (the default). An SSE client reconnects with `Last-Event-ID` and is told
    /// its id is unknown, so it knows it missed events.
    #[default]
    Disconnect,
    /// Keep the client: an SSE stream moves on to the oldest event the log still holds and is told
    /// how many it missed with a comment (a WebSocket queue drops its oldest messages).
    DropOldest,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn bad_values_are_refused_at_configuration_time() {
        let bad = [
            Config::default().heartbeat(Duration::ZERO),
            Config::default().send_timeout(Duration::ZERO),
            Config::default().queue_capacity(0),
            Config::default().header("X-Split", "a\r\nSet-Cookie: x=1"),
            Config::default().header("Bad Name", "v"),
            Config::default().allow_origin("https://a.example\n"),
            Config::default().event_types(["ok", "two\nlines"]),
            Config::default().log_target(""),
            Config::default().request_limits(RequestLimits::default().max_head_bytes(10)),
        ];
        for config in bad {
            assert!(matches!(config.validate(), Err(Error::InvalidConfig(_))), "{config:?}");
        }
    }
}
