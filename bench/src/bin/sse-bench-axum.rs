//! The benchmark contract served the way an async user would: axum + tokio, `axum::response::sse`
//! over a `tokio::sync::broadcast` channel, each subscriber encoding its own copy of every event.
//!
//! `sse-bench-axum --port PORT [--capacity EVENTS]` (the broadcast ring: a subscriber more than this
//! many events behind loses events, so it must hold the largest burst).

use std::convert::Infallible;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::sse::{Event, Sse};
use axum::routing::{get, post};
use futures_util::Stream;
use sse_bench::args::Args;
use sse_bench::contract::{self, EVENTS_PATH, PUBLISH_PATH, Publish};
use sse_bench::system;
use tokio::sync::broadcast::{self, error::RecvError};

/// One published event, shared by every subscriber.
#[derive(Debug)]
struct Message {
    id: usize,
    data: String,
}

#[derive(Clone)]
struct App {
    events: broadcast::Sender<Arc<Message>>,
    lagged: Arc<AtomicU64>,
}

fn options() -> Result<(u16, usize), String> {
    let mut args = Args::from_env();
    let (mut port, mut capacity) = (0, 65_536);
    while let Some(flag) = args.next_flag()? {
        match flag.as_str() {
            "--port" => port = args.parsed(&flag)?,
            "--capacity" => capacity = args.parsed(&flag)?,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if capacity == 0 {
        return Err("--capacity must be at least 1".into());
    }
    Ok((port, capacity))
}

fn main() -> ExitCode {
    let (port, capacity) = match options() {
        Ok(options) => options,
        Err(err) => {
            eprintln!("sse-bench-axum: {err}\nusage: sse-bench-axum --port PORT [--capacity EVENTS]");
            return ExitCode::from(2);
        }
    };
    if let Err(err) = serve(port, capacity) {
        eprintln!("sse-bench-axum: {err}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

#[tokio::main]
async fn serve(port: u16, capacity: usize) -> std::io::Result<()> {
    system::raise_open_file_limit()?;
    let (events, _) = broadcast::channel(capacity);
    let app = App { events, lagged: Arc::new(AtomicU64::new(0)) };
    let router =
        Router::new().route(EVENTS_PATH, get(stream)).route(PUBLISH_PATH, post(publish)).with_state(app);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, router).await
}

/// Subscribes before answering, so that a client holding the response head gets every later event.
async fn stream(State(app): State<App>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let receiver = app.events.subscribe();
    let lagged = app.lagged;
    Sse::new(futures_util::stream::unfold(receiver, move |mut receiver| {
        let lagged = Arc::clone(&lagged);
        async move {
            loop {
                match receiver.recv().await {
                    Ok(message) => {
                        let event = Event::default().id(message.id.to_string()).data(&message.data);
                        return Some((Ok(event), receiver));
                    }
                    Err(RecvError::Lagged(missed)) => {
                        // Too far behind the ring: these events are gone for this client.
                        if lagged.fetch_add(missed, Ordering::Relaxed) == 0 {
                            eprintln!("sse-bench-axum: a subscriber lagged and lost {missed} events");
                        }
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        }
    }))
}

async fn publish(State(app): State<App>, uri: Uri) -> (StatusCode, String) {
    let publish = match Publish::from_query(uri.query().unwrap_or("")) {
        Ok(publish) => publish,
        Err(err) => return (StatusCode::BAD_REQUEST, format!("{err}\n")),
    };
    for id in 0..publish.count {
        let sent_ns = contract::now_ns();
        let message = Arc::new(Message { id, data: contract::event_data(sent_ns, publish.size) });
        // An error only means nobody is subscribed.
        let _ = app.events.send(message);
    }
    (StatusCode::OK, String::new())
}
