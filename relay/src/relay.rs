//! The relay put together: a handler and a server built from the command line, the threads that
//! feed and stop it, and its graceful end.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::mpsc::{Sender, channel};
use std::thread;
use std::time::Duration;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use sse_handler::{BearerToken, Config, Event, Response, Server, ServerConfig, ServerHandle, SseHandler};

use crate::cli::{Args, OnEof};
use crate::input::{self, LineFormat};
use crate::monitoring;
use crate::origin::SameOriginOnly;
use crate::page::{self, PageSettings};

/// Why the relay stops.
#[derive(Debug)]
enum Stop {
    Signal(i32),
    EndOfInput,
}

/// Runs the relay until a signal (or the end of input, with `--on-eof exit`), then shuts it down
/// gracefully.
///
/// # Errors
/// A configuration the library refuses, an address that cannot be bound, or a thread that cannot be
/// started; all before the relay announces itself.
pub(crate) fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    raise_fd_limit();
    let handler = build_handler(args)?;
    let format = LineFormat { json: args.json, default_type: args.event.clone() };
    // Check the stdin event type once now, rather than on every line.
    if let Some(event_type) = &args.event {
        Event::builder().event(event_type).build().map_err(|err| format!("--event: {err}"))?;
    }

    let server = serve(args, &handler).map_err(|err| format!("cannot listen on {}: {err}", args.listen))?;
    let (stop, stopped) = channel();
    watch_signals(stop.clone())?;
    read_input(handler.clone(), format, args.on_eof, stop.clone())?;
    if !uses_redis(args) {
        // Ids grow from a number taken from the clock, so that a restarted relay never reuses one.
        log::info!("events are numbered from {}", handler.log().head());
    }
    announce(server.local_addr());

    // `stop` is still held here, so this wait ends only with a reason.
    match stopped.recv() {
        Ok(Stop::Signal(signal)) => log::info!("{} received: shutting down", signal_name(signal)),
        Ok(Stop::EndOfInput) | Err(_) => log::info!("end of standard input: shutting down"),
    }
    drop(stop);
    let streams = handler.connection_count();
    // Every stream gets a final `retry:` hint (`--retry`) from the library as it is closed.
    let report = server.shutdown();
    log::info!("stopped: {streams} streams told when to reconnect, {} closed by force", report.forced);
    Ok(())
}

/// The handler, on a Redis Stream with `--redis`, on a log in memory otherwise.
fn build_handler(args: &Args) -> Result<SseHandler, Box<dyn std::error::Error>> {
    #[cfg(feature = "redis")]
    if let Some(url) = &args.redis {
        let history = saturating_usize(args.history);
        return Ok(crate::shared_log::handler(handler_config(args), url, &args.redis_stream, history)?);
    }
    Ok(SseHandler::new(handler_config(args))?)
}

fn uses_redis(args: &Args) -> bool {
    #[cfg(feature = "redis")]
    return args.redis.is_some();
    #[cfg(not(feature = "redis"))]
    return {
        let _ = args;
        false
    };
}

fn handler_config(args: &Args) -> Config {
    let mut config = Config::default()
        .heartbeat(args.heartbeat)
        .history_capacity(saturating_usize(args.history))
        .history_max_bytes(saturating_usize(args.history_bytes))
        // The hint streams get when the relay ends them: rotation, shutdown, too many connections.
        .reconnect_after(Duration::from_millis(args.retry));
    if let Some(origin) = &args.allow_origin {
        config = config.allow_origin(origin);
    }
    if let Some(max_age) = args.max_stream_secs {
        config = config.max_lifetime(max_age);
    }
    config
}

fn saturating_usize(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

/// Binds and starts the server: the stream, the publish endpoint (behind the token, if any), the page
/// and the operator's endpoints.
fn serve(args: &Args, handler: &SseHandler) -> sse_handler::Result<ServerHandle> {
    let settings = PageSettings {
        stdin_type: args.event.clone().filter(|_| !args.json),
        open_publish: args.token.is_none(),
    };
    let page = page::render(&settings);
    let mut server_config = ServerConfig::default().max_connections(saturating_usize(args.max_connections));
    if let Some(per_ip) = args.max_connections_per_ip {
        server_config = server_config.max_connections_per_ip(saturating_usize(per_ip));
    }
    let server = Server::bind(&args.listen)?.config(server_config).stream("/events", handler);
    let server = match &args.token {
        Some(token) => server.publish_with("/publish", handler, BearerToken::new(token)),
        None => {
            server.publish_with("/publish", handler, SameOriginOnly { allowed: args.allow_origin.clone() })
        }
    };
    let server = server.get("/", move |_request| Response::html(page.clone()));
    monitor(server, args, handler).spawn()
}

/// Adds `GET /healthz`, and `GET /metrics` (behind the token, if any) when asked for.
fn monitor(server: Server, args: &Args, handler: &SseHandler) -> Server {
    let health = handler.clone();
    let server = server.get("/healthz", move |_request| monitoring::healthz(&health));
    if !args.metrics {
        return server;
    }
    let metrics = handler.clone();
    let guard = args.token.as_ref().map(BearerToken::new);
    server.get("/metrics", move |request| monitoring::metrics(&metrics, guard.as_ref(), request))
}

/// Each connection holds a file descriptor: the usual soft limit of 1024 would cap the relay far below
/// --max-connections, and the hard limit is usually much higher.
fn raise_fd_limit() {
    match sse_handler::raise_fd_limit() {
        Ok(Some(limit)) => log::debug!("open-file limit: {limit}"),
        Ok(None) => {}
        Err(err) => log::warn!("cannot raise the open-file limit: {err}"),
    }
}

/// The one line scripts wait for, on standard output.
fn announce(addr: SocketAddr) {
    let mut out = std::io::stdout().lock();
    if let Err(err) = writeln!(out, "listening on http://{addr}").and_then(|()| out.flush()) {
        log::warn!("cannot write to standard output: {err}");
    }
}

/// SIGINT or SIGTERM asks for a graceful stop; a second one ends the process at once.
fn watch_signals(stop: Sender<Stop>) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    thread::Builder::new().name("signals".into()).spawn(move || {
        let mut received = signals.forever();
        if let Some(signal) = received.next() {
            let _ = stop.send(Stop::Signal(signal));
        }
        if let Some(signal) = received.next() {
            log::warn!("{} received again: exiting without waiting for clients", signal_name(signal));
            std::process::exit(128 + signal);
        }
    })?;
    Ok(())
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}

/// Publishes standard input on a thread of its own. It is never joined: a read blocked on a quiet
/// input must not hold up shutdown, and the process ends without it.
fn read_input(
    handler: SseHandler,
    format: LineFormat,
    on_eof: OnEof,
    stop: Sender<Stop>,
) -> std::io::Result<()> {
    thread::Builder::new().name("stdin".into()).spawn(move || {
        input::publish_lines(std::io::stdin().lock(), &format, &handler);
        match on_eof {
            OnEof::Exit => {
                let _ = stop.send(Stop::EndOfInput);
            }
            OnEof::Serve => log::info!("end of standard input; still serving (POST /publish publishes)"),
        }
    })?;
    Ok(())
}
