//! How a WebSocket connection ended: [`Closed`], as the close hook sees it and `serve`/`accept` return
//! it, and its [`CloseCause`].

use std::io;

/// What ended a WebSocket connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseCause {
    /// The client started the closing handshake; its code and reason are in [`Closed`].
    ClientClosed,
    /// The client broke the protocol (an unmasked frame, bad UTF-8, a frame over the size limit, ...)
    /// and was sent the close code that says so: 1002, 1007 or 1009.
    ProtocolError,
    /// The client answered no ping within the pong timeout; it was sent 1011.
    PingTimeout,
    /// The TCP connection ended, or a read or write failed, with no closing handshake.
    ClientGone,
    /// A write blocked longer than the send timeout: the client stopped reading.
    SendTimeout,
    /// The client fell too far behind and was dropped: broadcasts it had not been sent left the
    /// handler's broadcast log ([`WsConfig::broadcast_capacity`](super::WsConfig::broadcast_capacity),
    /// [`broadcast_max_bytes`](super::WsConfig::broadcast_max_bytes)), or messages sent to it alone
    /// piled up past [`queue_capacity`](super::WsConfig::queue_capacity) or
    /// [`queue_max_bytes`](super::WsConfig::queue_max_bytes). It is sent close code 1008 once its
    /// writer can write again (code 1006 in [`Closed`] when it never could).
    SlowClient,
    /// [`WsHandler::stop_one`](super::WsHandler::stop_one) closed it, with the code in [`Closed`].
    Stopped,
    /// The handler or its server was shut down; the client was sent 1001.
    ShutDown,
    /// An application hook panicked while handling this connection; the client was sent 1011.
    HookPanicked,
}

impl std::fmt::Display for CloseCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CloseCause::ClientClosed => "the client closed the connection",
            CloseCause::ProtocolError => "the client broke the protocol",
            CloseCause::PingTimeout => "the client did not answer a ping",
            CloseCause::ClientGone => "the client went away",
            CloseCause::SendTimeout => "a write timed out",
            CloseCause::SlowClient => "the client fell too far behind",
            CloseCause::Stopped => "stopped by the application",
            CloseCause::ShutDown => "the handler shut down",
            CloseCause::HookPanicked => "an application hook panicked",
        })
    }
}

/// How a WebSocket connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Closed {
    /// What ended it.
    pub cause: CloseCause,
    /// The close code of the closing handshake: the client's when it closed first, ours when we did.
    /// As in a browser's `CloseEvent`, 1005 means the client's close frame had no code, and 1006 that
    /// the connection ended with no close frame at all.
    pub code: u16,
    /// The reason text of that close frame (often empty).
    pub reason: String,
}

/// Close code for "no code in the close frame" (RFC 6455 §7.1.5); never sent.
pub(crate) const NO_STATUS: u16 = 1005;
/// Close code for "no close frame at all" (RFC 6455 §7.1.5); never sent.
pub(crate) const ABNORMAL: u16 = 1006;

impl Closed {
    pub(crate) fn new(cause: CloseCause, code: u16, reason: impl Into<String>) -> Closed {
        Closed { cause, code, reason: reason.into() }
    }

    /// An end with no closing handshake.
    pub(crate) fn abnormal(cause: CloseCause) -> Closed {
        Closed::new(cause, ABNORMAL, "")
    }

    /// The end a failed write means: a timeout is a client that stopped reading, anything else a
    /// client that is gone.
    pub(crate) fn write_failed(err: &io::Error) -> Closed {
        Closed::abnormal(match err.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => CloseCause::SendTimeout,
            _ => CloseCause::ClientGone,
        })
    }
}

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (code {}", self.cause, self.code)?;
        if !self.reason.is_empty() {
            write!(f, ", {:?}", self.reason)?;
        }
        f.write_str(")")
    }
}
