//! The command line: every option, its default, and its check.

use std::time::Duration;

use clap::{Parser, ValueEnum};

/// Turns standard input and HTTP POSTs into a Server-Sent Events stream.
///
/// Every line on standard input becomes one event (`data: <line>`, with an increasing id: a number,
/// or with --redis the stream's entry id), sent to every client of `GET /events`. `POST /publish` publishes one more from its query
/// (`event`, `data`, `id`, `retry`) or, without `data`, from its body. `GET /` is a live page that
/// shows the stream as it arrives.
#[derive(Debug, Parser)]
#[command(name = "sse-relay", version, about, long_about)]
#[command(after_help = "\
Endpoints:
  GET  /events   the stream; ?event=a&event=b for those types only; resumes from Last-Event-ID
  POST /publish  ?event=&data=&id=&retry= (or the body as data); with --token, needs Authorization: Bearer;
                 without it, refused (403) when sent by a web page of another origin
  GET  /         the live page
  GET  /healthz  200 `ok` while the relay can publish; 503 and the reason when it cannot (no token needed)
  GET  /metrics  with --metrics: Prometheus text format; with --token, needs Authorization: Bearer

Example:
  tail -f app.log | sse-relay --listen 127.0.0.1:8080
  curl -N http://127.0.0.1:8080/events

Several relays as one server (with --redis):
  sse-relay --listen 0.0.0.0:8080 --redis redis://10.0.0.5:6379/
  sse-relay --listen 0.0.0.0:8081 --redis redis://10.0.0.5:6379/")]
pub(crate) struct Args {
    /// The address to listen on; port 0 picks a free port. Once ready, the relay prints
    /// `listening on http://ADDR` on standard output.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub(crate) listen: String,

    /// Write a heartbeat comment on a stream idle this long, in seconds (fractions allowed).
    #[arg(long, value_name = "SECS", default_value = "20", value_parser = positive_seconds)]
    pub(crate) heartbeat: Duration,

    /// Keep the last N events in the event log: what clients that reconnect with `Last-Event-ID`
    /// resume from, and how far a client may fall behind before it is dropped (it then reconnects and
    /// is told its id is unknown). The memory is spent once, not per client. With --redis, N also
    /// bounds the shared stream (`XADD MAXLEN ~ N`: Redis may keep about a hundred more), and each
    /// relay keeps the last N in memory.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) history: u64,

    /// Keep at most this many bytes of events in the log (the oldest leave first). Without --redis
    /// only: with it, --history alone bounds the stream and each relay's memory.
    #[arg(long, value_name = "BYTES", default_value_t = 16 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) history_bytes: u64,

    /// Let pages from this origin subscribe (CORS), e.g. `https://example.com`, or `*` for any.
    #[arg(long, value_name = "ORIGIN")]
    pub(crate) allow_origin: Option<String>,

    /// Require `Authorization: Bearer TOKEN` to publish with POST (subscribing stays open). Without a
    /// token anyone who reaches the relay may publish, except web pages of other origins: a POST whose
    /// `Origin` is neither the relay's own (its page at `/`) nor --allow-origin gets 403, so that a page
    /// elsewhere cannot publish through its visitors' browsers.
    #[arg(long, value_name = "TOKEN", env = "SSE_RELAY_TOKEN", hide_env_values = true, value_parser = non_empty)]
    pub(crate) token: Option<String>,

    /// The event type of events read from standard input, unless a JSON line names its own (without
    /// it, clients see `message`).
    #[arg(long, value_name = "TYPE", value_parser = non_empty)]
    pub(crate) event: Option<String>,

    /// Read standard input as JSON lines: one object per line with `data` (text, or any JSON value,
    /// sent as JSON), and optionally `event`, `id` and `retry` (milliseconds). Invalid lines are
    /// logged and skipped.
    #[arg(long)]
    pub(crate) json: bool,

    /// What to do at the end of standard input.
    #[arg(long, value_name = "ACTION", value_enum, default_value_t = OnEof::Serve)]
    pub(crate) on_eof: OnEof,

    /// End each stream once it has been open this long, in seconds, telling the client to reconnect;
    /// it resumes from its `Last-Event-ID`. Spreads long-lived connections over time and sheds
    /// stuck ones. Default: streams stay open.
    #[arg(long, value_name = "SECS", value_parser = positive_seconds)]
    pub(crate) max_stream_secs: Option<Duration>,

    /// The reconnection delay, in milliseconds, that clients are told (`retry:`) when the relay ends
    /// their stream: at --max-stream-secs and at shutdown.
    #[arg(long, value_name = "MS", default_value_t = 3000)]
    pub(crate) retry: u64,

    /// Serve at most this many connections at once. Beyond it, a stream request gets 200 with only a
    /// `retry:` hint (--retry), then the end of the stream, so browsers come back later rather than give
    /// up; other requests get 503. The relay raises its open-file limit to the hard limit at start;
    /// when even that cannot hold N connections, it serves fewer and says so in its log.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) max_connections: u64,

    /// Serve at most this many connections at once for one client address; more are turned away as
    /// over --max-connections. Default: no limit per address.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) max_connections_per_ip: Option<u64>,

    /// Serve `GET /metrics`: connections, events, bytes, replays, slow clients and heartbeats in the
    /// Prometheus text format. With --token, it needs the same `Authorization: Bearer TOKEN` as
    /// publishing.
    #[arg(long)]
    pub(crate) metrics: bool,

    /// Share the event log with every relay started with the same URL and --redis-stream, through a
    /// Redis Stream (`redis://HOST:PORT/`, Redis 7 or Valkey): an event published on any of them
    /// reaches the clients of all, in one order, and a client resumes on any of them. Event ids are
    /// then the stream's entry ids (`1718000000000-0`, still increasing) and publishers may not set
    /// their own (400). While Redis is unreachable, POST /publish answers 503, standard input lines
    /// wait and are retried, /healthz answers 503 and streams stay open; all resume when it is back.
    /// Redis must be reachable at start.
    #[cfg(feature = "redis")]
    #[arg(long, value_name = "URL")]
    pub(crate) redis: Option<String>,

    /// The key of the Redis Stream that relays with the same --redis share (a key beside it,
    /// `KEY:epoch`, tells them when Redis was reset).
    #[cfg(feature = "redis")]
    #[arg(long, value_name = "KEY", default_value = "sse-relay", requires = "redis", value_parser = non_empty)]
    pub(crate) redis_stream: String,

    /// Log level on standard error: error, warn, info, debug or trace. `RUST_LOG`, when set, takes
    /// precedence (with env_logger's syntax, e.g. `RUST_LOG=sse_handler=debug`).
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    pub(crate) log_level: log::LevelFilter,
}

/// What the relay does when standard input ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OnEof {
    /// Keep serving: POST /publish still works, and clients keep their streams.
    Serve,
    /// Shut down gracefully, as on SIGTERM.
    Exit,
}

fn positive_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text.parse().map_err(|_| format!("{text:?} is not a number of seconds"))?;
    match Duration::try_from_secs_f64(seconds) {
        Ok(duration) if !duration.is_zero() => Ok(duration),
        _ => Err(format!("{text:?} must be more than zero seconds")),
    }
}

fn non_empty(text: &str) -> Result<String, String> {
    if text.is_empty() { Err("must not be empty".to_owned()) } else { Ok(text.to_owned()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_documented_contract() {
        let args = Args::try_parse_from(["sse-relay"]).unwrap();
        assert_eq!(args.listen, "127.0.0.1:8080");
        assert_eq!(args.heartbeat, Duration::from_secs(20));
        assert_eq!((args.history, args.history_bytes), (10_000, 16 << 20));
        assert_eq!(args.on_eof, OnEof::Serve);
        assert_eq!(args.max_connections, 10_000);
        assert!(args.token.is_none() && args.allow_origin.is_none() && args.max_stream_secs.is_none());
        assert!(!args.metrics, "metrics are off unless asked for");
        assert!(args.max_connections_per_ip.is_none());
    }

    #[cfg(feature = "redis")]
    #[test]
    fn redis_is_off_unless_asked_for_and_its_key_needs_it() {
        let args = Args::try_parse_from(["sse-relay"]).unwrap();
        assert_eq!((args.redis, args.redis_stream.as_str()), (None, "sse-relay"));
        let args =
            Args::try_parse_from(["sse-relay", "--redis", "redis://127.0.0.1:6379/", "--redis-stream", "k"])
                .unwrap();
        assert_eq!(
            (args.redis.as_deref(), args.redis_stream.as_str()),
            (Some("redis://127.0.0.1:6379/"), "k")
        );
        assert!(Args::try_parse_from(["sse-relay", "--redis-stream", "k"]).is_err(), "a key without --redis");
        assert!(Args::try_parse_from(["sse-relay", "--redis", "u", "--redis-stream", ""]).is_err());
    }

    #[test]
    fn seconds_take_fractions_but_not_zero() {
        assert_eq!(positive_seconds("0.25"), Ok(Duration::from_millis(250)));
        for bad in ["0", "-1", "soon", "NaN", "inf"] {
            assert!(positive_seconds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for args in [
            &["sse-relay", "--history", "0"][..],
            &["sse-relay", "--max-connections", "0"],
            &["sse-relay", "--max-connections-per-ip", "0"],
            &["sse-relay", "--token", ""],
            &["sse-relay", "--on-eof", "later"],
            &["sse-relay", "--log-level", "loud"],
        ] {
            assert!(Args::try_parse_from(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }
}
