#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod auth;
pub mod client;
mod config;
mod connection;
mod error;
mod event;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod handler;
mod http;
mod log;
#[cfg(feature = "redis")]
mod redis_log;
mod registry;
mod server;
mod stats;
mod wait;
#[cfg(feature = "websocket")]
pub mod ws;

pub use auth::{AllowAll, Authenticator, BearerToken, Rejection};
pub use config::{Config, RequestLimits, UnknownIdPolicy};
pub use error::{Error, Field, FieldProblem, Phase, Result};
pub use event::{Event, EventBuilder};
pub use handler::{HandlerBuilder, NewConnection, Sent, SseHandler};
pub use http::{Request, Response};
pub use log::{EventLog, FellBehind, MemoryLog};
#[cfg(feature = "redis")]
pub use redis_log::{RedisLog, RedisOptions};
pub use registry::{CloseReason, ConnectionId, ConnectionInfo, ConnectionStats, OverflowPolicy, Replay};
pub use server::{Server, ServerConfig, ServerHandle, ShutdownReport};
pub use stats::Stats;
pub use wait::Waiter;
#[cfg(feature = "websocket")]
pub use ws::{WsConfig, WsHandler};
