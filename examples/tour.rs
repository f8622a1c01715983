//! The README's tour: a stream, a publish endpoint and a page, and a loop that keeps publishing.
//!
//! `cargo run --example tour`, then open http://127.0.0.1:8080; Ctrl-C stops it.

use std::thread;
use std::time::Duration;

use sse_handler::{Config, Event, Response, Server, SseHandler};

// An EventSource hands an event only to listeners of its type: `onmessage` hears events without
// a type, and the `tick` events need a listener of their own.
const PAGE: &str = r#"<!doctype html>
<meta charset="utf-8">
<title>tour</title>
<ul id="events"></ul>
<script>
  const source = new EventSource('/events');
  const show = (event) => {
    const item = document.createElement('li');
    item.textContent = `${event.type} #${event.lastEventId}: ${event.data}`;
    document.getElementById('events').prepend(item);
  };
  source.onmessage = show;
  source.addEventListener('tick', show);
</script>"#;

fn main() -> Result<(), sse_handler::Error> {
    let events = SseHandler::new(Config::default().heartbeat(Duration::from_secs(15)))?;
    let server = Server::bind("127.0.0.1:8080")?
        .stream("/events", &events) // GET: the event stream
        .publish("/publish", &events) // POST ?event=&data=&id=&retry= (or the body as data)
        .get("/", |_request| Response::html(PAGE))
        .spawn()?;
    println!("listening on http://{}", server.local_addr());

    let mut n = 0;
    loop {
        n += 1;
        let tick = Event::builder().event("tick").id(format!("t-{n}")).data(format!("tick {n}\nline two"));
        events.send_all(tick.build()?)?; // to every stream open now
        if n % 5 == 0 {
            for id in events.connection_ids() {
                // To one stream; an event without a type is a `message`.
                events.send_one(id, Event::data(format!("just for you, connection {id}")))?;
            }
        }
        thread::sleep(Duration::from_secs(1));
    }
}
