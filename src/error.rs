//! The crate's one error type.

use std::io;

use crate::id::ConnectionId;

/// A `Result` whose error defaults to this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `sse-handler`.
///
/// Request errors ([`Error::BadRequest`], [`Error::HeadTooLarge`], ...) are answered on the wire with the
/// status that [`Error::http_status`] gives, then returned to whoever called `serve`/`accept`, so an
/// embedding server can log them; they are the client's fault and are logged at `debug`, never `error`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A socket read or write failed (the peer went away, the connection was reset, ...).
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),

    /// A socket operation did not finish in time: the request (head or body) did not arrive within the
    /// request timeout (answered `408`; a connection that sent nothing at all is closed without an
    /// answer, [`Phase::Idle`]), or a write blocked past the send timeout (a client that stopped
    /// reading).
    #[error("timed out while {0}")]
    Timeout(Phase),

    /// The request was not valid HTTP/1.x, or not something this endpoint can take. The text says what.
    #[error("bad request: {0}")]
    BadRequest(&'static str),

    /// The request head (request line plus headers) was longer than the configured limit, or had more
    /// headers than the parser takes.
    #[error("request head larger than {limit} bytes or with too many headers")]
    HeadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },

    /// The request body was longer than the endpoint's limit.
    #[error("request body larger than {limit} bytes")]
    BodyTooLarge {
        /// The limit in bytes.
        limit: usize,
    },

    /// The path exists but does not take this method.
    #[error("method not allowed (allowed: {allowed})")]
    MethodNotAllowed {
        /// The methods the path takes, as for the `Allow` header.
        allowed: String,
    },

    /// No endpoint has this path, or the client subscribed to an event type the handler does not have.
    #[error("not found: {0}")]
    NotFound(String),

    /// The authenticator refused the request; the rejection carries the status sent to the client.
    #[error("refused by the authenticator: {} {}", .0.status(), .0.message())]
    Rejected(Box<Rejection>),

    /// An event field holds a value that cannot be sent without changing the stream's meaning (a line
    /// break in an `id` or `event`, for instance). The event was not built, so nothing was sent.
    #[error("invalid event field `{field}`: {problem}")]
    InvalidField {
        /// The field at fault.
        field: Field,
        /// What is wrong with its value.
        problem: FieldProblem,
    },

    /// The bytes given to [`Event::from_encoded`](crate::Event::from_encoded) are not exactly one
    /// well-formed event of the event stream format. No event was made, so nothing was sent.
    #[error("not one well-formed event: {problem} (at byte {at})")]
    MalformedEvent {
        /// The offset of the first byte at fault (the length of the bytes when something is missing at
        /// their end).
        at: usize,
        /// What is wrong with the bytes.
        problem: EncodingProblem,
    },

    /// The event's type is not among the handler's allowed event types.
    #[error("event type `{0}` is not one of the handler's event types")]
    UnknownEventType(String),

    /// No live connection has this id (it never existed, or it has already closed).
    #[error("no connection with id {0}")]
    UnknownConnection(ConnectionId),

    /// The connection's queue was full, so the connection was dropped as a slow client.
    #[error("connection {0} was dropped: its queue is full")]
    QueueFull(ConnectionId),

    /// A configuration value is out of range, or a configured header is not a valid HTTP header.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),

    /// The handler or server has been shut down and takes no more connections or events.
    #[error("the handler has been shut down")]
    ShutDown,

    /// The too-many-connections limit was reached (the client was told to come back later).
    #[error("too many connections (limit {limit})")]
    TooManyConnections {
        /// The limit that was reached.
        limit: usize,
    },

    /// Application code (an authenticator, a hook) panicked while handling the request; the client got
    /// `500` and only its connection was affected. The text names the code that panicked.
    #[error("{0} panicked")]
    Panicked(&'static str),

    /// A WebSocket handshake asked for a protocol version other than 13; answered `426` with
    /// `Sec-WebSocket-Version: 13`.
    #[cfg(feature = "websocket")]
    #[cfg_attr(docsrs, doc(cfg(feature = "websocket")))]
    #[error("unsupported WebSocket version (only 13 is supported)")]
    WebSocketVersion,

    /// A close code that may not be sent in a close frame (valid: 1000–1003, 1007–1014, 3000–4999).
    #[cfg(feature = "websocket")]
    #[cfg_attr(docsrs, doc(cfg(feature = "websocket")))]
    #[error("close code {0} may not be sent")]
    InvalidCloseCode(u16),

    /// The event log's server (Redis, for a `RedisLog`) could not be reached or
    /// did not answer in time; nothing was appended. The text says what failed. Answered `503`.
    #[error("event log unavailable: {0}")]
    LogUnavailable(String),

    /// Serializing event data to JSON failed.
    #[cfg(feature = "json")]
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
    #[error("cannot serialize event data to JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl Error {
    /// The HTTP status this error is answered with when it comes from a request, or `None` for errors
    /// that happen after the response has started (or that are not about a request at all).
    pub fn http_status(&self) -> Option<u16> {
        Some(match self {
            Error::BadRequest(_)
            | Error::InvalidField { .. }
            | Error::MalformedEvent { .. }
            | Error::UnknownEventType(_) => 400,
            Error::Rejected(rejection) => rejection.status(),
            Error::NotFound(_) => 404,
            Error::MethodNotAllowed { .. } => 405,
            Error::Timeout(Phase::ReadRequest) => 408,
            Error::BodyTooLarge { .. } => 413,
            Error::HeadTooLarge { .. } => 431,
            Error::Panicked(_) => 500,
            Error::ShutDown | Error::TooManyConnections { .. } | Error::LogUnavailable(_) => 503,
            #[cfg(feature = "websocket")]
            Error::WebSocketVersion => 426,
            #[cfg(feature = "json")]
            Error::Json(_) => 400,
            _ => return None,
        })
    }

    /// Turns `WouldBlock`/`TimedOut` (platforms differ in which one a socket timeout gives) into
    /// [`Error::Timeout`], and any other I/O error into [`Error::Io`].
    pub(crate) fn from_io(err: io::Error, phase: Phase) -> Error {
        match err.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Error::Timeout(phase),
            _ => Error::Io(err),
        }
    }
}

/// What the connection was doing when a [`Error::Timeout`] struck.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Phase {
    /// Reading the request head (or body) from the client.
    ReadRequest,
    /// Waiting for a request on a connection that has sent nothing yet. Browsers open such
    /// connections ahead of need; one that times out is closed without an answer, since a `408` on it
    /// would be read as the answer to the request the browser sends on it next.
    Idle,
    /// Writing to the client.
    Write,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::ReadRequest => "reading the request",
            Phase::Idle => "waiting for a request",
            Phase::Write => "writing to the client",
        })
    }
}

/// An event field, as named in [`Error::InvalidField`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Field {
    /// The `id` field.
    Id,
    /// The `event` (type) field.
    Event,
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Field::Id => "id",
            Field::Event => "event",
        })
    }
}

/// Why an event field was refused, as named in [`Error::InvalidField`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FieldProblem {
    /// The value holds a CR or LF, which would end the field and inject the rest as new fields.
    LineBreak,
    /// The value holds a NUL, which makes browsers ignore an `id` field entirely.
    Nul,
    /// The id is over 128 bytes or holds a byte that makes browsers send a CORS preflight before a
    /// cross-origin reconnection (see [`Config::cors_safe_ids`](crate::Config::cors_safe_ids)).
    NotCorsSafe,
}

impl std::fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FieldProblem::LineBreak => "contains a line break (CR or LF)",
            FieldProblem::Nul => "contains a NUL character",
            FieldProblem::NotCorsSafe => {
                "would make browsers send a CORS preflight (over 128 bytes or an unsafe byte)"
            }
        })
    }
}

/// Why bytes are not exactly one well-formed event, as named in [`Error::MalformedEvent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodingProblem {
    /// The bytes are not valid UTF-8: a client would decode them with replacement characters, so it
    /// would read something other than what was meant.
    NotUtf8,
    /// The bytes start with a byte order mark, which a client strips at the start of a stream and
    /// takes as part of a field name anywhere else.
    ByteOrderMark,
    /// The event has no field or comment line before its blank line (or no bytes at all).
    Empty,
    /// The bytes do not end with a blank line, so the event would only end with whatever is sent next.
    Unterminated,
    /// A blank line ends an event before the end of the bytes: what follows it would be a second event.
    SecondEvent,
}

impl std::fmt::Display for EncodingProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EncodingProblem::NotUtf8 => "not valid UTF-8",
            EncodingProblem::ByteOrderMark => "starts with a byte order mark",
            EncodingProblem::Empty => "no field or comment before the blank line",
            EncodingProblem::Unterminated => "does not end with a blank line",
            EncodingProblem::SecondEvent => "bytes after the blank line that ends the event",
        })
    }
}

/// An authenticator's refusal: the status and message the client gets, and any extra headers
/// (such as `WWW-Authenticate`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    status: u16,
    message: String,
    headers: Vec<(String, String)>,
}

impl Rejection {
    /// A refusal with any status (it should be a 4xx or 5xx) and a short message for the response body.
    pub fn new(status: u16, message: impl Into<String>) -> Rejection {
        Rejection { status, message: message.into(), headers: Vec::new() }
    }

    /// `401 Unauthorized` with `WWW-Authenticate: Bearer`.
    pub fn unauthorized(message: impl Into<String>) -> Rejection {
        Rejection::new(401, message).with_header("WWW-Authenticate", "Bearer")
    }

    /// `403 Forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Rejection {
        Rejection::new(403, message)
    }

    /// Adds a response header. Header names and values with CR or LF are dropped when the answer is
    /// written, since they would split the response.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Rejection {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The status the client gets.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The message the client gets in the response body.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The extra response headers.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_stays_small() {
        // Errors travel through every connection's return path; keep them a few words wide.
        assert!(std::mem::size_of::<Error>() <= 40, "{}", std::mem::size_of::<Error>());
    }

    #[test]
    fn timeouts_map_to_their_phase() {
        let err = Error::from_io(io::ErrorKind::WouldBlock.into(), Phase::Write);
        assert!(matches!(err, Error::Timeout(Phase::Write)));
        let err = Error::from_io(io::ErrorKind::TimedOut.into(), Phase::ReadRequest);
        assert!(matches!(err, Error::Timeout(Phase::ReadRequest)));
        let err = Error::from_io(io::ErrorKind::ConnectionReset.into(), Phase::Write);
        assert!(matches!(err, Error::Io(_)));
    }
}
