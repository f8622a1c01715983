#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod auth;
mod busy;
pub mod client;
mod config;
mod connection;
mod deadline;
mod error;
mod event;
mod fd_limit;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod handler;
mod health;
mod http;
mod id;
mod log;
pub mod metrics;
#[cfg(feature = "redis")]
mod redis_log;
mod registry;
mod server;
mod stats;
mod wait;
#[cfg(feature = "websocket")]
#[cfg_attr(docsrs, doc(cfg(feature = "websocket")))]
pub mod ws;

pub use auth::{AllowAll, Authenticator, BearerToken};
pub use config::{Config, OverflowPolicy, UnknownIdPolicy};
pub use error::EncodingProblem;
pub use error::{Error, Field, FieldProblem, Phase, Rejection, Result};
pub use event::{Event, EventBuilder};
pub use fd_limit::raise_fd_limit;
pub use handler::{HandlerBuilder, NewConnection, Sent, SseHandler};
pub use health::Health;
pub use http::{Request, RequestLimits, Response};
pub use id::ConnectionId;
pub use log::{EventLog, FellBehind, MemoryLog};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis_log::{RedisLog, RedisOptions};
pub use registry::{CloseReason, ConnectionInfo, ConnectionStats, Replay};
pub use server::{Server, ServerConfig, ServerHandle, ShutdownReport};
pub use stats::Stats;
pub use wait::Waiter;
#[cfg(feature = "websocket")]
#[cfg_attr(docsrs, doc(cfg(feature = "websocket")))]
pub use ws::{WsConfig, WsHandler};
