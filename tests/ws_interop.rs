//! A client this project does not write: Python's `websockets` (its threading client) against our
//! server, for echo, a broadcast to several clients, and messages from the server while the client is
//! sending too. It needs Python, so plain `cargo test` leaves it out (`tests/ws_tungstenite.rs` runs
//! the same scenarios with a Rust client); `.ci/run` installs `websockets` and runs it with
//! `--ignored`, where a missing Python or `websockets` fails it.
#![cfg(feature = "websocket")]

mod ws_support;

use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use sse_handler::Server;
use sse_handler::ws::{Message, WsConfig, WsHandler};
use ws_support::TIMEOUT;

const PYTHON: &str = "python3";
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/ws_client.py");
const DUPLEX_MESSAGES: usize = 500;

fn require_websockets() {
    let probe = Command::new(PYTHON).args(["-c", "import websockets.sync.client"]).output();
    match probe {
        Ok(output) if output.status.success() => {}
        Ok(output) => panic!(
            "Python's `websockets` (11 or later) is required for this test: `{PYTHON} -m pip install websockets`\n{}",
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(err) => panic!("`{PYTHON}` is required for this test: {err}"),
    }
}

#[test]
#[ignore = "needs python3 with websockets; .ci/run installs it and runs it"]
fn python_websockets_client_echo_broadcast_and_full_duplex() {
    require_websockets();
    let echo = WsHandler::builder(WsConfig::default())
        .on_message(|conn, message| {
            conn.send(message).expect("echo");
        })
        .build()
        .unwrap();
    let chat = WsHandler::builder(WsConfig::default())
        .on_message(|conn, message| {
            conn.handler().send_all(message).expect("broadcast");
        })
        .build()
        .unwrap();
    let (got_tx, got_rx) = mpsc::channel();
    let duplex = ws_support::duplex_handler(got_tx);
    let server = Server::bind("127.0.0.1:0")
        .unwrap()
        .websocket("/echo", &echo)
        .websocket("/chat", &chat)
        .websocket("/duplex", &duplex)
        .spawn()
        .unwrap();

    let mut child = Command::new(PYTHON)
        .arg(SCRIPT)
        .arg(format!("ws://{}", server.local_addr()))
        .arg(DUPLEX_MESSAGES.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the Python client");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the Python client failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let passed: Vec<&str> = stdout.lines().collect();
    assert_eq!(passed, ["echo ok", "broadcast to 5 ok", &format!("duplex {DUPLEX_MESSAGES} ok")]);

    // Everything the client sent while the server was sending reached the hook, in order.
    for n in 0..DUPLEX_MESSAGES {
        assert_eq!(got_rx.recv_timeout(TIMEOUT).unwrap(), Message::Text(format!("client {n}")));
    }
    assert_eq!(server.shutdown().still_running, 0);
}
