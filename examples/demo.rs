//! A live demo: a page whose EventSource shows events as they arrive, a ticker, and a publish endpoint.
//!
//! ```text
//! cargo run --example demo                       # then open http://127.0.0.1:8080
//! curl -N http://127.0.0.1:8080/events           # the raw stream
//! curl -N 'http://127.0.0.1:8080/events?event=chat'   # only chat: quiet, so heartbeats show
//! curl -d 'hello from curl' 'http://127.0.0.1:8080/publish?event=chat'
//! ```
//!
//! `--listen ADDR` picks another address (`127.0.0.1:0` for any free port).

use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sse_handler::{Config, Event, Response, Server, SseHandler};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listen = std::env::args()
        .skip_while(|arg| arg != "--listen")
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".to_owned());

    let events = SseHandler::builder(
        Config::default().heartbeat(Duration::from_secs(5)).retry(Duration::from_secs(2)),
    )
    .on_connect(|conn| {
        let note = format!("you are connection {}", conn.info().id());
        conn.send(Event::builder().event("welcome").data(note).build().expect("valid event"));
    })
    .build()?;

    let server = Server::bind(&listen)?
        .stream("/events", &events)
        .publish("/publish", &events)
        .get("/", |_| Response::html(PAGE))
        .spawn()?;
    println!("listening on http://{}", server.local_addr());

    // The ticker: one `tick` event a second, numbered by the handler.
    for n in 1u64.. {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let tick = Event::builder().event("tick").data(format!("tick {n} at unix time {now}")).build()?;
        events.send_all(tick)?;
        thread::sleep(Duration::from_secs(1));
    }
    Ok(())
}

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>sse-handler demo</title>
<style>
  body { font: 15px/1.4 system-ui, sans-serif; margin: 2rem auto; max-width: 46rem; }
  #state { font-weight: bold; }
  #log { list-style: none; padding: 0; font-family: ui-monospace, monospace; }
  #log li { padding: .2rem .4rem; border-bottom: 1px solid #eee; }
  .chat { background: #eef6ff; } .welcome { background: #f2fff0; }
  form { display: flex; gap: .5rem; } input { flex: 1; }
</style>
<h1>sse-handler demo</h1>
<p>Stream: <span id="state">connecting…</span></p>
<form id="say"><input id="text" placeholder="say something (published as a chat event)"><button>Publish</button></form>
<ul id="log"></ul>
<script>
  const log = document.getElementById('log');
  const state = document.getElementById('state');
  function show(e) {
    const li = document.createElement('li');
    li.className = e.type;
    li.textContent = `[${e.type}] id=${e.lastEventId || '-'}  ${e.data}`;
    log.prepend(li);
    while (log.children.length > 50) log.lastChild.remove();
  }
  const source = new EventSource('/events');
  source.onopen = () => state.textContent = 'open';
  source.onerror = () => state.textContent = source.readyState === 2 ? 'closed' : 'reconnecting…';
  for (const type of ['message', 'tick', 'chat', 'welcome']) source.addEventListener(type, show);
  document.getElementById('say').onsubmit = (ev) => {
    ev.preventDefault();
    const text = document.getElementById('text');
    fetch('/publish?event=chat', { method: 'POST', body: text.value });
    text.value = '';
  };
</script>
</html>
"#;
