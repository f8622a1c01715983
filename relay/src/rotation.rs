//! Connection rotation: each stream is ended once it is `max_age` old, with a `retry:` hint, and its
//! client reconnects and resumes from its `Last-Event-ID`. Long-lived connections are spread over
//! time, and one stuck behind a dead proxy is shed.

use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime};

use sse_handler::{Event, SseHandler};

/// The running rotation thread; [`Rotation::stop`] ends it.
#[derive(Debug)]
pub(crate) struct Rotation {
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

impl Rotation {
    /// Starts a thread that ends every stream of `handler` once it is `max_age` old, after sending it
    /// `retry` as its reconnection delay.
    pub(crate) fn start(
        handler: SseHandler,
        max_age: Duration,
        retry: Duration,
    ) -> std::io::Result<Rotation> {
        let (stop, stopped) = channel();
        let thread = thread::Builder::new()
            .name("rotation".into())
            .spawn(move || run(&handler, max_age, retry, &stopped))?;
        Ok(Rotation { stop, thread })
    }

    /// Stops the thread and waits for it.
    pub(crate) fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

fn run(handler: &SseHandler, max_age: Duration, retry: Duration, stopped: &Receiver<()>) {
    let hint = Event::retry_hint(retry);
    loop {
        let now = SystemTime::now();
        // A stream opened while we sleep is younger than `max_age` at our next wake-up, so sleeping
        // until the oldest known stream is due never misses one.
        let mut next_due = max_age;
        for id in handler.connection_ids() {
            let Some(info) = handler.connection_info(id) else { continue };
            // A clock that stepped back makes a stream look new: it is rotated a little late.
            let age = now.duration_since(info.since()).unwrap_or_default();
            if age >= max_age {
                // The hint is queued after the stream's pending events, and stop_one still writes them.
                let _ = handler.send_one(id, hint.clone());
                if handler.stop_one(id).is_ok() {
                    log::debug!("stream {id} rotated after {age:?}");
                }
            } else {
                next_due = next_due.min(max_age - age);
            }
        }
        match stopped.recv_timeout(next_due) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}
