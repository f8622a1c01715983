//! Streams from a tiny_http server: tiny_http parses the request, the handler writes the stream into
//! the raw writer tiny_http hands out.
//!
//! ```text
//! cargo run --example tiny_http        # then: curl -N http://127.0.0.1:8081/events
//! ```

use std::thread;
use std::time::Duration;

use sse_handler::{Config, Event, Request, SseHandler};

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let listen = std::env::args().skip_while(|arg| arg != "--listen").nth(1);
    let server = tiny_http::Server::http(listen.as_deref().unwrap_or("127.0.0.1:8081"))?;
    println!("listening on http://{}", server.server_addr());
    let events = SseHandler::new(Config::default())?;

    let publisher = events.clone();
    thread::spawn(move || {
        for n in 1u64.. {
            let _ = publisher.send_all(Event::data(format!("tick {n}")));
            thread::sleep(Duration::from_secs(1));
        }
    });

    for request in server.incoming_requests() {
        if request.url().split('?').next() != Some("/events") {
            let _ = request.respond(tiny_http::Response::from_string("try /events\n").with_status_code(404));
            continue;
        }
        // Carry tiny_http's view of the request over, then let the handler own the connection.
        let mut ours = Request::new(request.method().as_str(), request.url());
        for header in request.headers() {
            ours = ours.with_header(header.field.as_str().as_str(), header.value.as_str());
        }
        if let Some(peer) = request.remote_addr() {
            ours = ours.with_peer(*peer);
        }
        let events = events.clone();
        thread::spawn(move || events.accept_writer(request.into_writer(), &ours));
    }
    Ok(())
}
