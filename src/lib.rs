#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
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
mod health;
mod http;
mod log;
pub mod metrics;
mod registry;
mod server;
mod stats;
mod wait;
#[cfg(feature = "websocket")]
#[cfg_attr(docsrs, doc(cfg(feature = "websocket")))]
pub mod ws;

pub use auth::{AllowAll, Authenticator, BearerToken, Rejection};
pub use config::{Config, RequestLimits, UnknownIdPolicy};
pub use error::EncodingProblem;
pub use error::{Error, Field, FieldProblem, Phase, Result};
pub use event::{Event, EventBuilder};
pub use handler::{HandlerBuilder, NewConnection, Sent, SseHandler};
pub use health::Health;
pub use http::{Request, Response};
pub use log::{EventLog, FellBehind, MemoryLog};
pub use registry::{CloseReason, ConnectionId, ConnectionInfo, ConnectionStats, OverflowPolicy, Replay};
pub use server::{Server, ServerConfig, ServerHandle, ShutdownReport};
pub use stats::Stats;
pub use wait::Waiter;
#[cfg(feature = "websocket")]
#[cfg_attr(docsrs, doc(cfg(feature = "websocket")))]
pub use ws::{WsConfig, WsHandler};
