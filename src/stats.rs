//! Counters: what a handler has done since it started, readable at any time without locks.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a handler's counters since it was built. Every count only grows.
///
/// ```
/// use std::sync::mpsc;
/// use std::time::Duration;
/// use sse_handler::{Config, Event, Request, SseHandler};
///
/// let (opened, ids) = mpsc::channel();
/// let handler = SseHandler::builder(Config::default())
///     .on_connect(move |conn| {
///         let _ = opened.send(conn.info().id());
///     })
///     .build()?;
/// let serving = {
///     let handler = handler.clone();
///     std::thread::spawn(move || handler.accept_writer(Vec::new(), &Request::new("GET", "/events")))
/// };
/// let id = ids.recv_timeout(Duration::from_secs(10))?;
/// handler.send_all(Event::data("hello"))?;
/// handler.stop_one(id)?; // written first: what was published before the stop
/// serving.join().unwrap()?;
///
/// let stats = handler.stats();
/// assert_eq!((stats.connections_opened, stats.connections_closed), (1, 1));
/// assert_eq!(stats.events_sent, 1);
/// assert_eq!(stats.slow_client_disconnects, 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Streams opened.
    pub connections_opened: u64,
    /// Streams closed, for any reason.
    pub connections_closed: u64,
    /// Events written to clients (each event counts once per client it reached; heartbeats not included).
    pub events_sent: u64,
    /// Queued events dropped to make room under [`OverflowPolicy::DropOldest`](crate::OverflowPolicy).
    pub events_dropped: u64,
    /// Connections dropped because their queue was full under [`OverflowPolicy::Disconnect`](crate::OverflowPolicy).
    pub slow_client_disconnects: u64,
    /// Streams that resumed from a `Last-Event-ID` the history held.
    pub replays_served: u64,
    /// Streams whose `Last-Event-ID` the history did not hold.
    pub replays_missed: u64,
    /// Heartbeat comments written.
    pub heartbeats: u64,
}

/// The live counters behind [`Stats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) connections_opened: AtomicU64,
    pub(crate) connections_closed: AtomicU64,
    pub(crate) events_sent: AtomicU64,
    pub(crate) events_dropped: AtomicU64,
    pub(crate) slow_client_disconnects: AtomicU64,
    pub(crate) replays_served: AtomicU64,
    pub(crate) replays_missed: AtomicU64,
    pub(crate) heartbeats: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Stats {
            connections_opened: read(&self.connections_opened),
            connections_closed: read(&self.connections_closed),
            events_sent: read(&self.events_sent),
            events_dropped: read(&self.events_dropped),
            slow_client_disconnects: read(&self.slow_client_disconnects),
            replays_served: read(&self.replays_served),
            replays_missed: read(&self.replays_missed),
            heartbeats: read(&self.heartbeats),
        }
    }
}
