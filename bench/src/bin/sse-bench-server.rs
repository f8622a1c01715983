//! The benchmark contract served by `sse-handler`: `GET /events` is the library's `SseHandler` on its
//! built-in `Server`; `POST /publish?count=M&size=B` broadcasts M events with `send_all`.
//!
//! `sse-bench-server --port PORT [--history EVENTS] [--max-connections N]`

use std::process::ExitCode;

use sse_bench::args::Args;
use sse_bench::contract::{self, EVENTS_PATH, PUBLISH_PATH, Publish};
use sse_bench::system;
use sse_handler::{Config, Event, Request, Response, Server, ServerConfig, SseHandler};

struct Options {
    port: u16,
    history: usize,
    max_connections: usize,
}

fn options() -> Result<Options, String> {
    let mut args = Args::from_env();
    let mut options = Options { port: 0, history: 65_536, max_connections: 20_000 };
    while let Some(flag) = args.next_flag()? {
        match flag.as_str() {
            "--port" => options.port = args.parsed(&flag)?,
            "--history" => options.history = args.parsed(&flag)?,
            "--max-connections" => options.max_connections = args.parsed(&flag)?,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(options)
}

fn main() -> ExitCode {
    let options = match options() {
        Ok(options) => options,
        Err(err) => {
            eprintln!(
                "sse-bench-server: {err}\nusage: sse-bench-server --port PORT [--history EVENTS] [--max-connections N]"
            );
            return ExitCode::from(2);
        }
    };
    match serve(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("sse-bench-server: {err}");
            ExitCode::FAILURE
        }
    }
}

fn serve(options: &Options) -> Result<(), Box<dyn std::error::Error>> {
    system::raise_open_file_limit()?;
    // A log with room for a whole burst, so that no reader falls off it.
    let config = Config::default().history_capacity(options.history).history_max_bytes(usize::MAX);
    let events = SseHandler::new(config)?;
    let publisher = events.clone();
    let server = Server::bind(("127.0.0.1", options.port))?
        .config(ServerConfig::default().max_connections(options.max_connections))
        .stream(EVENTS_PATH, &events)
        .route("POST", PUBLISH_PATH, move |request| publish(&publisher, request));
    println!("listening on http://{}", server.local_addr()?);
    server.run()?;
    Ok(())
}

fn publish(events: &SseHandler, request: &Request) -> Response {
    let publish = match Publish::from_query(request.query().unwrap_or("")) {
        Ok(publish) => publish,
        Err(err) => return Response::new(400).with_body(format!("{err}\n")),
    };
    for id in 0..publish.count {
        let sent_ns = contract::now_ns();
        let event =
            Event::builder().id(id.to_string()).data(contract::event_data(sent_ns, publish.size)).build();
        let sent = event
            .map_err(|err| err.to_string())
            .and_then(|event| events.send_all(event).map_err(|err| err.to_string()));
        if let Err(err) = sent {
            return Response::new(500).with_body(format!("{err}\n"));
        }
    }
    Response::new(200)
}
