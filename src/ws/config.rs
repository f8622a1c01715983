//! Settings of a [`WsHandler`](super::WsHandler): [`WsConfig`] and the [`OriginPolicy`].

use std::time::Duration;

use super::handshake::Origin;
use crate::error::{Error, Result};
use crate::http::RequestLimits;
use crate::http::is_valid_header;

/// Which browser pages may open a connection, judged by the `Origin` header they send.
///
/// Browsers apply no CORS to WebSocket: any page the user visits may try to connect with the user's
/// cookies. Clients that are not browsers send no `Origin` and are not judged by this (the
/// authenticator is there for them). A refused origin is answered `403`.
///
/// The default, [`SameHost`](OriginPolicy::SameHost), needs no configuration and refuses the pages of
/// every other site, but it trusts the `Host` header, and under DNS rebinding that header is the
/// attacker's: a page on the attacker's name, which the attacker then points at this server, sends
/// that name as `Host` and as `Origin` alike. A server that browsers reach by name, or one on a
/// private network or on localhost, should list its origins with [`Only`](OriginPolicy::Only).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OriginPolicy {
    /// Only web pages served from the host the client asked for: an `http` or `https` origin whose
    /// host and port are the `Host` header's (a port left out is the scheme's default). The default,
    /// because it works out of the box for pages the server itself serves, under whatever name it is
    /// reached by. It cannot tell DNS rebinding (see above).
    #[default]
    SameHost,
    /// Any page.
    Any,
    /// Only these origins, each exactly `scheme://host[:port]` as browsers send them
    /// (`"https://app.example.com"`, `"http://localhost:8080"`): no path, no trailing slash. Scheme
    /// and host are compared ASCII case-insensitively, and a scheme's default port written out is the
    /// same origin as none. Refuses DNS rebinding. Each entry is checked by
    /// [`WsConfig::validate`].
    Only(Vec<String>),
}

/// Settings of a [`WsHandler`](super::WsHandler). Every field documents its default.
///
/// ```
/// use std::time::Duration;
/// use sse_handler::ws::{OriginPolicy, WsConfig};
///
/// let config = WsConfig::default()
///     .heartbeat(Duration::from_secs(15))
///     .max_message_size(64 * 1024)
///     .origins(OriginPolicy::Only(vec!["https://app.example.com".into()]));
/// assert_eq!(config.pong_timeout, Duration::from_secs(10));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WsConfig {
    /// How long the client may stay silent before it is sent a ping. Default 20 s. Must be more than
    /// zero.
    pub heartbeat: Duration,
    /// How long after a ping the client has to answer (a pong, or any frame) before the connection is
    /// closed (code 1011). Default 10 s. Must be more than zero.
    pub pong_timeout: Duration,
    /// How long one write to a client may block before the client counts as gone. Default 30 s.
    pub send_timeout: Duration,
    /// How long to wait for the client's close frame after sending ours, before closing the TCP
    /// connection anyway. Default 3 s.
    pub close_timeout: Duration,
    /// Broadcasts ([`send_all`](super::WsHandler::send_all)) the handler's broadcast log keeps: how
    /// far behind, in messages, a connection may fall. Every broadcast is appended to the log once,
    /// and each connection's writer reads it from its own position; a connection whose unwritten
    /// broadcasts leave the log is closed as a slow client (close code 1008,
    /// [`CloseCause::SlowClient`](super::CloseCause::SlowClient)). Memory is spent once per handler,
    /// not per connection (as the SSE side's `history_capacity`). Default 10,000; at least 1.
    pub broadcast_capacity: usize,
    /// The most bytes of broadcasts (as frames) the broadcast log keeps, oldest dropped first (the
    /// newest is always kept, however large): how far behind, in bytes, a connection may fall, as for
    /// [`broadcast_capacity`](WsConfig::broadcast_capacity). Default 16 MiB; at least 1.
    pub broadcast_max_bytes: usize,
    /// Messages sent to one connection alone ([`send_one`](super::WsHandler::send_one),
    /// [`WsConnection::send`](super::WsConnection::send)) that may wait for it unwritten; a client
    /// that lets more pile up is dropped as a slow client, as on the SSE side. Broadcasts do not
    /// count: they live in the broadcast log. Default 1024.
    pub queue_capacity: usize,
    /// Bytes of such messages (as frames) that may wait for one connection; one message is always let
    /// in, however large. A client that lets more pile up is dropped, as for
    /// [`queue_capacity`](WsConfig::queue_capacity): without it, an echo of large messages to a
    /// client that reads none of them would hold `queue_capacity` of them. Default 4 MiB.
    pub queue_max_bytes: usize,
    /// The largest frame payload a client may send; a larger one closes the connection with 1009.
    /// Default 1 MiB.
    pub max_frame_size: usize,
    /// The largest message (all fragments together) a client may send; a larger one closes the
    /// connection with 1009. Default 1 MiB.
    pub max_message_size: usize,
    /// Which browser pages may connect. Default [`OriginPolicy::SameHost`].
    pub origins: OriginPolicy,
    /// Extra headers on every `101 Switching Protocols`. Default none. Checked by `WsHandler::new`.
    pub headers: Vec<(String, String)>,
    /// Limits on reading a request head, used by [`WsHandler::serve`](super::WsHandler::serve).
    pub request_limits: RequestLimits,
}

impl Default for WsConfig {
    fn default() -> WsConfig {
        WsConfig {
            heartbeat: Duration::from_secs(20),
            pong_timeout: Duration::from_secs(10),
            send_timeout: Duration::from_secs(30),
            close_timeout: Duration::from_secs(3),
            broadcast_capacity: 10_000,
            broadcast_max_bytes: 16 * 1024 * 1024,
            queue_capacity: 1024,
            queue_max_bytes: 4 * 1024 * 1024,
            max_frame_size: 1 << 20,
            max_message_size: 1 << 20,
            origins: OriginPolicy::SameHost,
            headers: Vec::new(),
            request_limits: RequestLimits::default(),
        }
    }
}

impl WsConfig {
    /// Sets [`WsConfig::heartbeat`].
    pub fn heartbeat(mut self, interval: Duration) -> WsConfig {
        self.heartbeat = interval;
        self
    }

    /// Sets [`WsConfig::pong_timeout`].
    pub fn pong_timeout(mut self, timeout: Duration) -> WsConfig {
        self.pong_timeout = timeout;
        self
    }

    /// Sets [`WsConfig::send_timeout`].
    pub fn send_timeout(mut self, timeout: Duration) -> WsConfig {
        self.send_timeout = timeout;
        self
    }

    /// Sets [`WsConfig::close_timeout`].
    pub fn close_timeout(mut self, timeout: Duration) -> WsConfig {
        self.close_timeout = timeout;
        self
    }

    /// Sets [`WsConfig::broadcast_capacity`].
    pub fn broadcast_capacity(mut self, messages: usize) -> WsConfig {
        self.broadcast_capacity = messages;
        self
    }

    /// Sets [`WsConfig::broadcast_max_bytes`].
    pub fn broadcast_max_bytes(mut self, bytes: usize) -> WsConfig {
        self.broadcast_max_bytes = bytes;
        self
    }

    /// Sets [`WsConfig::queue_capacity`].
    pub fn queue_capacity(mut self, messages: usize) -> WsConfig {
        self.queue_capacity = messages;
        self
    }

    /// Sets [`WsConfig::queue_max_bytes`].
    pub fn queue_max_bytes(mut self, bytes: usize) -> WsConfig {
        self.queue_max_bytes = bytes;
        self
    }

    /// Sets [`WsConfig::max_frame_size`].
    pub fn max_frame_size(mut self, bytes: usize) -> WsConfig {
        self.max_frame_size = bytes;
        self
    }

    /// Sets [`WsConfig::max_message_size`].
    pub fn max_message_size(mut self, bytes: usize) -> WsConfig {
        self.max_message_size = bytes;
        self
    }

    /// Sets [`WsConfig::origins`].
    pub fn origins(mut self, policy: OriginPolicy) -> WsConfig {
        self.origins = policy;
        self
    }

    /// Adds a header to [`WsConfig::headers`].
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> WsConfig {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets [`WsConfig::request_limits`].
    pub fn request_limits(mut self, limits: RequestLimits) -> WsConfig {
        self.request_limits = limits;
        self
    }

    /// Checks that every value is in range.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a zero duration, capacity or size, an allowed origin that is not
    /// `scheme://host[:port]`, or an invalid extra header.
    pub fn validate(&self) -> Result<()> {
        let durations = [
            ("heartbeat", self.heartbeat),
            ("pong_timeout", self.pong_timeout),
            ("send_timeout", self.send_timeout),
            ("close_timeout", self.close_timeout),
        ];
        if let Some((name, _)) = durations.iter().find(|(_, d)| d.is_zero()) {
            return Err(Error::InvalidConfig(format!("{name} must be more than zero")));
        }
        if self.broadcast_capacity == 0 || self.broadcast_max_bytes == 0 {
            return Err(Error::InvalidConfig(
                "broadcast_capacity and broadcast_max_bytes must be at least 1".into(),
            ));
        }
        if self.queue_capacity == 0 || self.queue_max_bytes == 0 {
            return Err(Error::InvalidConfig("queue_capacity and queue_max_bytes must be at least 1".into()));
        }
        if self.max_frame_size == 0 || self.max_message_size == 0 {
            return Err(Error::InvalidConfig(
                "max_frame_size and max_message_size must be at least 1".into(),
            ));
        }
        if let OriginPolicy::Only(origins) = &self.origins {
            if let Some(bad) = origins.iter().find(|origin| Origin::parse(origin).is_none()) {
                return Err(Error::InvalidConfig(format!(
                    "allowed origin {bad:?} is not scheme://host[:port] as browsers send it \
                     (no path, no trailing slash)"
                )));
            }
        }
        if let Some((name, _)) = self.headers.iter().find(|(name, value)| !is_valid_header(name, value)) {
            return Err(Error::InvalidConfig(format!("header {name:?} is not a valid HTTP header")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_zeroes_are_not() {
        assert!(WsConfig::default().validate().is_ok());
        assert!(WsConfig::default().heartbeat(Duration::ZERO).validate().is_err());
        assert!(WsConfig::default().pong_timeout(Duration::ZERO).validate().is_err());
        assert!(WsConfig::default().broadcast_capacity(0).validate().is_err());
        assert!(WsConfig::default().broadcast_max_bytes(0).validate().is_err());
        assert!(WsConfig::default().queue_capacity(0).validate().is_err());
        assert!(WsConfig::default().queue_max_bytes(0).validate().is_err());
        assert!(WsConfig::default().max_message_size(0).validate().is_err());
        assert!(WsConfig::default().header("Bad Name", "v").validate().is_err());
        let listing = |origin: &str| WsConfig::default().origins(OriginPolicy::Only(vec![origin.into()]));
        assert!(listing("https://app.example:8443").validate().is_ok());
        assert!(listing("https://app.example/").validate().is_err());
    }
}
