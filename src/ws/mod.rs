//! WebSocket endpoints (RFC 6455) in the same model as the event streams: a [`WsHandler`] with the
//! registry, authenticator and hooks of [`SseHandler`](crate::SseHandler), full duplex, a thread per
//! connection and no async runtime. Needs the `websocket` feature.
//!
//! ```no_run
//! use sse_handler::{Config, Server, SseHandler};
//! use sse_handler::ws::{WsConfig, WsHandler};
//!
//! let events = SseHandler::new(Config::default())?;
//! let chat = WsHandler::builder(WsConfig::default())
//!     .on_message(|conn, message| {
//!         let _ = conn.handler().send_all(message); // everyone in the chat gets it
//!     })
//!     .build()?;
//! let server = Server::bind("127.0.0.1:8080")?
//!     .stream("/events", &events)    // Server-Sent Events here
//!     .websocket("/chat", &chat)     // WebSocket there
//!     .spawn()?;
//! chat.send_all("the server says hello")?;
//! server.shutdown(); // every WebSocket client gets close 1001
//! # Ok::<(), sse_handler::Error>(())
//! ```
//!
//! # One connection
//!
//! The handshake is checked by our own HTTP layer, so a refused one gets an HTTP answer: `400` for a
//! malformed request, `426` with `Sec-WebSocket-Version: 13` for another version, `401`/`403` from the
//! authenticator, `403` for an origin the [`OriginPolicy`] does not allow, `503` after shutdown.
//!
//! Then two threads share the socket (`TcpStream::try_clone`):
//!
//! - the **reader** (the connection's own thread) blocks in `read`, joins fragments, checks every rule
//!   of RFC 6455 §5 (masking, reserved bits, opcodes, control frames, UTF-8, size limits) and hands each
//!   message to the `on_message` hook. It never writes: a ping, a close frame or a broken rule goes to
//!   the writer as a control message;
//! - the **writer** (a small thread of its own) writes every byte that goes out, so frames never
//!   interleave: pongs and close frames, the broadcasts it reads from the handler's broadcast log at
//!   its own position, and the messages of the connection's own queue. When it has nothing to write it
//!   parks, and whatever gives it something unparks it: a broadcast appended to the log, a message
//!   queued by `send_one`, a ping to answer. Its park has a deadline, which is the only timer: the
//!   heartbeat (a ping when the client has been silent for [`WsConfig::heartbeat`]), the pong timeout,
//!   or the close timeout.
//!
//! The writer owns the closing handshake and decides how the connection ended ([`Closed`]); then it
//! shuts the socket down, which ends the reader's blocking read, and the close hook runs.
//!
//! # Sending
//!
//! [`WsHandler::send_all`] encodes the message once and appends it to the handler's **broadcast
//! log**, whatever the number of connections: nothing is pushed to them. Each writer keeps a cursor in
//! the log, from the log's head when its connection registered (no replay), and writes everything from
//! there to the head, at most 64 KiB of small frames per write (a larger frame from the bytes the log
//! shares, never a copy). [`WsHandler::send_one`], and a close by [`WsHandler::stop_one`] or
//! [`WsHandler::shutdown`], go into the connection's own queue instead, each written after the
//! broadcasts sent before it. Control frames go first: a pong or a close answer waits at most for the
//! write in progress.
//!
//! **Pings** are answered as soon as the writer can, but only the latest of those that arrive before
//! it can (RFC 6455 §5.5.3): a client that sends pings and reads none of the pongs holds one ping's
//! payload on the server, not a queue of pongs, until its blocked write meets the send timeout.
//!
//! **Slow clients** get the SSE side's policy, without ever missing a message silently: every write
//! has the send timeout; a connection whose unwritten broadcasts leave the log (bounded by
//! [`WsConfig::broadcast_capacity`] and [`WsConfig::broadcast_max_bytes`], the memory of one handler,
//! not of each connection) is closed with 1008 ([`CloseCause::SlowClient`]); and its own queue is
//! bounded by count ([`WsConfig::queue_capacity`]) and by bytes ([`WsConfig::queue_max_bytes`]), a
//! `send_one` that finds it full dropping the client the same way instead of waiting or buffering
//! without end.
//!
//! # Why our own framing
//!
//! The frame codec (`frame.rs`, `message.rs`) is a few hundred lines written for this crate rather than
//! tungstenite's. tungstenite's `WebSocket` owns the stream for both directions and writes pongs and
//! close replies from inside `read`, so a reader and a writer thread would both write to the socket
//! through it; the ways around that are a lock held across a blocking read, or a polling tick, which
//! is the latency this design exists to avoid. Split in two, the codec's read side is a plain function
//! of the bytes that never writes, and its write side is a frame encoder; both are tested on byte
//! slices, and the behaviour on real sockets is covered by the tests in `tests/ws_*.rs` (see
//! `WEBSOCKET.md` for the case list). Only SHA-1 and base64, for the handshake, come from crates.
//! permessage-deflate is not offered.

pub mod client;
mod close;
mod config;
mod connection;
mod frame;
mod handler;
mod handshake;
mod message;
mod outbound;

#[cfg(feature = "fuzzing")]
pub(crate) use frame::{ReadError, Role};
#[cfg(feature = "fuzzing")]
pub(crate) use message::{Incoming, Limits, MessageReader};

pub use close::{CloseCause, Closed};
pub use config::{OriginPolicy, WsConfig};
pub use handler::{WsConnection, WsHandler, WsHandlerBuilder};
pub use message::Message;
