//! Counters: what a handler has done since it started, readable at any time without locks.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::registry::CloseReason;

/// Every way a stream can close, in the order [`Stats`] keeps them.
const CLOSE_REASONS: [CloseReason; 7] = [
    CloseReason::ClientGone,
    CloseReason::SendTimeout,
    CloseReason::SlowClient,
    CloseReason::Stopped,
    CloseReason::ShutDown,
    CloseReason::MaxLifetime,
    CloseReason::HookPanicked,
];

/// Where `reason` is counted. Exhaustive, so a new reason cannot go uncounted.
fn close_index(reason: &CloseReason) -> usize {
    match reason {
        CloseReason::ClientGone => 0,
        CloseReason::SendTimeout => 1,
        CloseReason::SlowClient => 2,
        CloseReason::Stopped => 3,
        CloseReason::ShutDown => 4,
        CloseReason::MaxLifetime => 5,
        CloseReason::HookPanicked => 6,
    }
}

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
    /// Streams closed, for any reason ([`closed`](Stats::closed) tells them apart).
    pub connections_closed: u64,
    /// Events published with [`SseHandler::send_all`](crate::SseHandler::send_all) (each counts once,
    /// however many clients it reaches).
    pub events_published: u64,
    /// Events written to clients (each event counts once per client it reached; heartbeats not included).
    pub events_sent: u64,
    /// Bytes written to clients on open streams: the response head, events, comments, heartbeats
    /// and the final `retry:` hint.
    pub bytes_sent: u64,
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
    closed_by_reason: [u64; CLOSE_REASONS.len()],
}

impl Stats {
    /// Streams closed for this reason.
    ///
    /// ```
    /// use sse_handler::{CloseReason, Config, SseHandler};
    ///
    /// let handler = SseHandler::new(Config::default())?;
    /// assert_eq!(handler.stats().closed(&CloseReason::ClientGone), 0);
    /// # Ok::<(), sse_handler::Error>(())
    /// ```
    pub fn closed(&self, reason: &CloseReason) -> u64 {
        self.closed_by_reason[close_index(reason)]
    }

    /// Every close reason with its count, in a fixed order (zeros included).
    pub fn closed_by_reason(&self) -> impl Iterator<Item = (CloseReason, u64)> + '_ {
        CLOSE_REASONS.iter().cloned().zip(self.closed_by_reason.iter().copied())
    }
}

/// The live counters behind [`Stats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) connections_opened: AtomicU64,
    closed_by_reason: [AtomicU64; CLOSE_REASONS.len()],
    pub(crate) events_published: AtomicU64,
    pub(crate) events_sent: AtomicU64,
    pub(crate) bytes_sent: AtomicU64,
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

    /// Counts one closed stream under its reason.
    pub(crate) fn closed(&self, reason: &CloseReason) {
        Counters::add(&self.closed_by_reason[close_index(reason)], 1);
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let closed_by_reason = self.closed_by_reason.each_ref().map(read);
        Stats {
            connections_opened: read(&self.connections_opened),
            // The sum, so the total and its parts never disagree.
            connections_closed: closed_by_reason.iter().sum(),
            events_published: read(&self.events_published),
            events_sent: read(&self.events_sent),
            bytes_sent: read(&self.bytes_sent),
            events_dropped: read(&self.events_dropped),
            slow_client_disconnects: read(&self.slow_client_disconnects),
            replays_served: read(&self.replays_served),
            replays_missed: read(&self.replays_missed),
            heartbeats: read(&self.heartbeats),
            closed_by_reason,
        }
    }
}

/// A writer that adds the bytes it passes on to a counter: one add per write call, which a stream
/// makes once per batch of events, not once per event.
pub(crate) struct CountingWriter<'a, W> {
    inner: W,
    counter: &'a AtomicU64,
}

impl<'a, W: Write> CountingWriter<'a, W> {
    pub(crate) fn new(inner: W, counter: &'a AtomicU64) -> Self {
        CountingWriter { inner, counter }
    }
}

impl<W: Write> Write for CountingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        Counters::add(self.counter, written as u64);
        Ok(written)
    }

    /// Forwarded whole, so that a writer with one deadline per `write_all` keeps it. Counted when it
    /// succeeds (a write that failed part-way ends the stream anyway).
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.inner.write_all(buf)?;
        Counters::add(self.counter, buf.len() as u64);
        Ok(())
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let written = self.inner.write_vectored(bufs)?;
        Counters::add(self.counter, written as u64);
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closes_are_counted_by_reason_and_summed() {
        let counters = Counters::default();
        counters.closed(&CloseReason::ClientGone);
        counters.closed(&CloseReason::ClientGone);
        counters.closed(&CloseReason::ShutDown);
        let stats = counters.snapshot();
        assert_eq!(stats.connections_closed, 3);
        assert_eq!(stats.closed(&CloseReason::ClientGone), 2);
        assert_eq!(stats.closed(&CloseReason::ShutDown), 1);
        assert_eq!(stats.closed(&CloseReason::Stopped), 0);
        let listed: Vec<(CloseReason, u64)> = stats.closed_by_reason().collect();
        assert_eq!(listed.len(), CLOSE_REASONS.len());
        assert_eq!(listed.iter().map(|(_, n)| n).sum::<u64>(), 3);
        for (reason, count) in listed {
            assert_eq!(stats.closed(&reason), count, "{reason:?} listed where it is counted");
        }
    }

    #[test]
    fn the_counting_writer_counts_what_got_through() {
        /// Takes at most three bytes per write.
        struct Trickle(Vec<u8>);
        impl Write for Trickle {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                let n = buf.len().min(3);
                self.0.extend_from_slice(&buf[..n]);
                Ok(n)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let counter = AtomicU64::new(0);
        let mut out = CountingWriter::new(Trickle(Vec::new()), &counter);
        out.write_all(b"data: hello\n\n").unwrap();
        assert_eq!(counter.load(Ordering::Relaxed), 13);
        assert_eq!(out.inner.0, b"data: hello\n\n");
    }
}
