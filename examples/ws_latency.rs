//! Measures the latency from `WsHandler::send_one` to the client holding the message, on loopback.
//!
//! ```text
//! cargo run --release --example ws_latency --features websocket -- --messages 5000 --size 64
//! ```
//!
//! One message at a time: the time starts just before `send_one` and stops when the client's read
//! returns the whole message, so it holds the queue push, the writer thread's wake-up, the write, the
//! loopback and the client's read. It runs twice: with an idle client, and with the client sending
//! messages of its own all the while (full duplex). Prints p50, p90, p99 and max in microseconds. There
//! is no poll interval anywhere in the path: the writer wakes when the message is queued.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use sse_handler::Server;
use sse_handler::ws::{Message, WsConfig, WsHandler, client};

const WARM_UP: usize = 200;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let messages: usize = arg("--messages").map_or(Ok(2000), |v| v.parse())?;
    let size: usize = arg("--size").map_or(Ok(64), |v| v.parse())?;

    let received = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&received);
    let handler = WsHandler::builder(WsConfig::default())
        .on_message(move |_, _| {
            counter.fetch_add(1, Ordering::Relaxed);
        })
        .build()?;
    let server = Server::bind("127.0.0.1:0")?.websocket("/bench", &handler).spawn()?;
    let payload = "x".repeat(size);
    println!("{messages} messages of {size} bytes, one at a time, send_one -> client read returns");

    for duplex in [false, true] {
        let mut ws = client::connect(server.local_addr(), "/bench", &[], Duration::from_secs(10))?;
        let id = *handler.connection_ids().last().ok_or("the client is not registered")?;
        let stop = Arc::new(AtomicBool::new(false));
        let inbound = duplex.then(|| {
            let mut sender = ws.sender().expect("a second handle");
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                // Bounded: stops when told, or after a million messages.
                let mut sent = 0u64;
                while !stop.load(Ordering::Relaxed) && sent < 1_000_000 {
                    if sender.send("from the client").is_err() {
                        break;
                    }
                    sent += 1;
                }
                sent
            })
        });

        let mut samples = Vec::with_capacity(messages);
        for n in 0..WARM_UP + messages {
            let started = Instant::now();
            handler.send_one(id, payload.as_str())?;
            match ws.recv_message()? {
                Some(Message::Text(text)) if text.len() == size => {}
                other => return Err(format!("unexpected {other:?}").into()),
            }
            if n >= WARM_UP {
                samples.push(started.elapsed());
            }
        }
        stop.store(true, Ordering::Relaxed);
        let client_sent = inbound.map(|t| t.join().expect("the sending thread"));
        ws.close(1000, "")?;

        samples.sort_unstable();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e6;
        let mode = if duplex { "full duplex" } else { "idle client" };
        print!(
            "{mode:>12}: p50 {:7.1} us  p90 {:7.1} us  p99 {:7.1} us  max {:7.1} us",
            at(0.5),
            at(0.9),
            at(0.99),
            at(1.0)
        );
        match client_sent {
            Some(sent) => println!(
                "  (meanwhile the client sent {sent} messages; the hook has had {})",
                received.load(Ordering::Relaxed)
            ),
            None => println!(),
        }
    }
    server.shutdown();
    Ok(())
}

fn arg(name: &str) -> Option<String> {
    std::env::args().skip_while(|a| a != name).nth(1)
}
