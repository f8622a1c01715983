//! WebSocket echo and chat, and a page that uses both.
//!
//! ```text
//! cargo run --example ws_echo --features websocket -- --listen 127.0.0.1:8080   # then open it
//! ```
//!
//! - `/echo` sends every text and binary message back to its sender;
//! - `/chat` sends every message it receives to every `/chat` client;
//! - `/` is a page that talks to both.
//!
//! It prints `listening on http://ADDR` once it accepts connections (`--listen 127.0.0.1:0` picks a
//! free port), so outside test tools can start it and read the address.

use std::io::Write;

use sse_handler::Response;
use sse_handler::Server;
use sse_handler::ws::{WsConfig, WsHandler};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listen = std::env::args()
        .skip_while(|arg| arg != "--listen")
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".to_owned());

    let echo = WsHandler::builder(WsConfig::default())
        .on_message(|conn, message| {
            // Fails only if the client is already gone or too slow; nothing to do then.
            let _ = conn.send(message);
        })
        .build()?;
    let chat = WsHandler::builder(WsConfig::default())
        .on_message(|conn, message| {
            let _ = conn.handler().send_all(message);
        })
        .build()?;

    let server = Server::bind(&listen)?
        .websocket("/echo", &echo)
        .websocket("/chat", &chat)
        .get("/", |_| Response::html(PAGE))
        .spawn()?;
    println!("listening on http://{}", server.local_addr());
    std::io::stdout().flush()?;
    loop {
        std::thread::park();
    }
}

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>sse-handler WebSocket demo</title>
<style>
  body { font: 15px/1.4 system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; }
  main { display: grid; grid-template-columns: 1fr 1fr; gap: 2rem; }
  h2 small { font-weight: normal; font-size: .8rem; color: #666; }
  .state { font-weight: bold; }
  ol { list-style: none; padding: 0; font-family: ui-monospace, monospace; min-height: 10rem; }
  ol li { padding: .2rem .4rem; border-bottom: 1px solid #eee; overflow-wrap: anywhere; }
  .out { color: #555; } .in { background: #eef6ff; } .note { color: #a60; }
  form { display: flex; gap: .5rem; } input { flex: 1; }
</style>
<h1>WebSocket: echo and chat</h1>
<main>
  <section>
    <h2>Echo <small>/echo</small></h2>
    <p>State: <span class="state" id="echo-state">connecting</span></p>
    <form id="echo-form">
      <input id="echo-text" value="hello" autocomplete="off">
      <button>Send text</button>
      <button type="button" id="echo-binary">Send as binary</button>
    </form>
    <ol id="echo-log"></ol>
  </section>
  <section>
    <h2>Chat <small>/chat, to every open page</small></h2>
    <p>State: <span class="state" id="chat-state">connecting</span></p>
    <form id="chat-form">
      <input id="chat-text" placeholder="say something" autocomplete="off">
      <button>Send</button>
    </form>
    <ol id="chat-log"></ol>
  </section>
</main>
<script>
const base = (location.protocol === "https:" ? "wss://" : "ws://") + location.host;

function log(list, text, kind) {
  const item = document.createElement("li");
  item.textContent = text;
  item.className = kind;
  document.getElementById(list).prepend(item);
}

function open(path, name, onMessage) {
  const ws = new WebSocket(base + path);
  ws.binaryType = "arraybuffer";
  const state = document.getElementById(name + "-state");
  ws.onopen = () => { state.textContent = "open"; };
  ws.onclose = (e) => {
    state.textContent = "closed (" + e.code + (e.reason ? ", " + e.reason : "") + ")";
    log(name + "-log", "closed with code " + e.code, "note");
  };
  ws.onmessage = onMessage;
  return ws;
}

const echo = open("/echo", "echo", (e) => {
  if (typeof e.data === "string") {
    log("echo-log", "← text: " + e.data, "in");
  } else {
    const bytes = Array.from(new Uint8Array(e.data));
    log("echo-log", "← binary: [" + bytes.join(", ") + "] = " + new TextDecoder().decode(new Uint8Array(e.data)), "in");
  }
});
document.getElementById("echo-form").onsubmit = (e) => {
  e.preventDefault();
  const text = document.getElementById("echo-text").value;
  echo.send(text);
  log("echo-log", "→ text: " + text, "out");
};
document.getElementById("echo-binary").onclick = () => {
  const bytes = new TextEncoder().encode(document.getElementById("echo-text").value);
  echo.send(bytes);
  log("echo-log", "→ binary: [" + Array.from(bytes).join(", ") + "]", "out");
};

const chat = open("/chat", "chat", (e) => log("chat-log", String(e.data), "in"));
document.getElementById("chat-form").onsubmit = (e) => {
  e.preventDefault();
  const input = document.getElementById("chat-text");
  if (input.value) { chat.send(input.value); input.value = ""; }
};
</script>
</html>
"#;
