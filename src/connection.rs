//! The loop one connection's thread runs once its stream is open: read the log from the
//! connection's cursor (and its own queue, for what is addressed to it alone), write what it found in
//! one go, and when there is nothing, park until the log moves, a message comes or a heartbeat is
//! due. It ends when the client is gone or the stream is stopped.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError};

use crate::config::OverflowPolicy;
use crate::event::Event;
use crate::log::{EventLog, FellBehind};
use crate::registry::{CloseReason, Connection, Queued};
use crate::stats::Counters;
use crate::wait::Waiter;

/// The most bytes of events gathered into one write. A backlog (a slow reader's, a replay) is
/// written in pieces of about this size, so no connection holds a copy of it all at once; an event
/// this large or larger is written from its shared bytes, not copied.
pub(crate) const MAX_BATCH: usize = 64 * 1024;

/// The most buffer a waiting stream keeps for its next write.
const BUFFER_KEPT: usize = 8 * 1024;

/// A message for one connection alone ([`SseHandler::send_one`](crate::SseHandler::send_one), a
/// connect hook's greeting), written once the connection has read the log up to `after`: the head
/// when it was sent, so it comes after every event published before it.
#[derive(Debug, Clone)]
pub(crate) struct Private {
    pub(crate) after: u64,
    pub(crate) event: Event,
}

impl Queued for Private {
    fn queued_size(&self) -> usize {
        self.event.as_bytes().len()
    }
}

/// What the loop needs from its handler, read afresh on every wait.
pub(crate) trait Pacing {
    /// The current heartbeat interval (it may change while the connection runs).
    fn heartbeat(&self) -> Duration;
    /// The heartbeat comment to write on an idle stream.
    fn heartbeat_event(&self) -> &Event;
    /// How long a stream may live before it is closed (with a `retry:` hint), if limited.
    fn max_lifetime(&self) -> Option<Duration>;
    /// The `retry:` hint written when the server ends a stream.
    fn farewell(&self) -> Event;
    /// What to do when the events a reader has not read yet leave the log.
    fn overflow(&self) -> OverflowPolicy;
    /// How long to let events gather after a small batch written while more came (a burst).
    fn linger(&self) -> Duration;
    /// The handler's counters.
    fn counters(&self) -> &Counters;
    /// The target of the stream's log lines, when the handler has its own.
    fn log_target(&self) -> Option<&str> {
        None
    }
}

/// One open stream: where it reads from, and who it is.
pub(crate) struct Stream<'a> {
    pub(crate) log: &'a dyn EventLog,
    /// The connection's own queue; the registry drops its sending end to stop the stream.
    pub(crate) queue: &'a Receiver<Private>,
    pub(crate) connection: &'a Connection,
    /// When given, checked at each heartbeat for a client that has closed its end, so an idle stream
    /// to a vanished client is released within one heartbeat interval.
    pub(crate) socket: Option<&'a TcpStream>,
}

/// Runs until the stream ends and says why. `cursor` is the log position to read from (right after
/// the client's `Last-Event-ID`, or the head); `opening` is written first, with the first events.
pub(crate) fn run(
    out: &mut impl Write,
    stream: &Stream<'_>,
    cursor: u64,
    opening: Vec<u8>,
    pacing: &impl Pacing,
) -> CloseReason {
    let connection = stream.connection;
    let end_of_life = pacing.max_lifetime().map(|lifetime| Instant::now() + lifetime);
    let waiter = Waiter::current();
    let mut reader = Reader { stream, cursor, next_private: None, stop_at: None };
    let mut batch = Batch { bytes: opening, large: None, count: 0 };
    let mut last_write = Instant::now();
    loop {
        if end_of_life.is_some_and(|end| Instant::now() >= end) {
            let _ = write_all(out, pacing.farewell().as_bytes());
            return CloseReason::MaxLifetime;
        }
        if connection.close_reason() == Some(&CloseReason::SlowClient) {
            // Its own queue overflowed: no point writing it a backlog; it will resume.
            return CloseReason::SlowClient;
        }

        // Everything ready, in order, up to one batch.
        if let Err(FellBehind { oldest, missed }) = reader.gather(&mut batch) {
            match pacing.overflow() {
                OverflowPolicy::Disconnect if batch.is_empty() => {
                    Counters::add(&pacing.counters().slow_client_disconnects, 1);
                    log::warn!(
                        target: pacing.log_target().unwrap_or(module_path!()),
                        "stream {} ({:?}) closed: {missed} events it had not read left the log",
                        connection.info.id,
                        connection.info.peer
                    );
                    let _ = write_all(out, pacing.farewell().as_bytes());
                    return CloseReason::SlowClient;
                }
                // Write what came before the gap first.
                OverflowPolicy::Disconnect => {}
                OverflowPolicy::DropOldest => {
                    reader.cursor = oldest;
                    connection.counters.dropped.fetch_add(missed, Ordering::Relaxed);
                    Counters::add(&pacing.counters().events_dropped, missed);
                    batch.note(&Event::comment(format!(
                        "{missed} events dropped: this connection fell behind"
                    )));
                    continue;
                }
            }
        }
        if !batch.is_empty() {
            if let Err(err) = batch.write_to(out) {
                return close_reason_for(&err);
            }
            last_write = Instant::now();
            connection.counters.sent.fetch_add(batch.count, Ordering::Relaxed);
            Counters::add(&pacing.counters().events_sent, batch.count);
            let small = !batch.is_full();
            batch.clear();
            // After a small batch, let the next events gather for a moment before reading again:
            // in a burst that makes one write of many events instead of one per event, and keeps
            // this thread off the wait list, so the publisher has no one to wake.
            let linger = pacing.linger();
            if small && !linger.is_zero() && stream.log.head() > reader.cursor {
                std::thread::park_timeout(linger);
            }
            continue;
        }
        if reader.is_done() {
            // Stopped, and everything published before the stop is written.
            let reason = connection.close_reason().cloned().unwrap_or(CloseReason::Stopped);
            let _ = write_all(out, pacing.farewell().as_bytes());
            return reason;
        }

        // Nothing to write: wait for the log to move, a message, or the next heartbeat.
        let mut wait = pacing.heartbeat().saturating_sub(last_write.elapsed());
        if let Some(end) = end_of_life {
            wait = wait.min(end.saturating_duration_since(Instant::now()));
        }
        if !wait.is_zero() {
            // A buffer grown by a replay or a burst is not kept while the stream waits: with
            // thousands of streams it would add up, and freed late it fragments the heap.
            batch.shrink_to(BUFFER_KEPT);
            stream.log.wait(reader.cursor, &waiter, wait);
            continue;
        }
        if end_of_life.is_some_and(|end| Instant::now() >= end) {
            continue; // the check at the top closes it
        }
        if stream.socket.is_some_and(peer_has_closed) {
            return CloseReason::ClientGone;
        }
        if let Err(err) = write_all(out, pacing.heartbeat_event().as_bytes()) {
            return close_reason_for(&err);
        }
        last_write = Instant::now();
        // An idle stream keeps no buffer at all.
        batch.shrink_to(0);
        connection.counters.heartbeats.fetch_add(1, Ordering::Relaxed);
        Counters::add(&pacing.counters().heartbeats, 1);
    }
}

/// A connection's place in the log and in its own queue.
struct Reader<'a> {
    stream: &'a Stream<'a>,
    /// The next log position to read.
    cursor: u64,
    /// A message taken off the queue, waiting for the log to be read up to its position.
    next_private: Option<Private>,
    /// Once the stream is stopped: the log's head then. What was published before it is still written.
    stop_at: Option<u64>,
}

impl Reader<'_> {
    /// Adds to `batch` what is ready, in order: log events (those the client subscribed to) and the
    /// connection's own messages, each after the log events published before it.
    fn gather(&mut self, batch: &mut Batch) -> Result<(), FellBehind> {
        let info = &self.stream.connection.info;
        loop {
            // The head before the queue: a message not in the queue yet was sent after this look, or
            // while what the look saw was being published, so reading up to this head never passes
            // a message that was sent before an event.
            let head = self.stream.log.head();
            self.take_private();
            let until = match (&self.next_private, self.stop_at) {
                (Some(private), _) => private.after,
                (None, Some(stop)) => stop,
                (None, None) => head,
            };
            if self.cursor < until {
                let mut position = self.cursor;
                // Each read copies a little while the log is locked; more reads follow unlocked.
                let copy_until = batch.bytes.len() + MAX_COPY_PER_LOCK;
                self.cursor = self.stream.log.read(self.cursor, &mut |event| {
                    let wanted = info.wants(event);
                    if position >= until || batch.bytes.len() >= copy_until || (wanted && !batch.add(event)) {
                        return false;
                    }
                    position += 1;
                    true
                })?;
                if batch.bytes.len() >= copy_until && !batch.is_full() && self.cursor < until {
                    continue; // there may be more
                }
            }
            if batch.is_full() || self.cursor < until {
                return Ok(()); // full, or caught up with the log's head
            }
            let Some(private) = self.next_private.take() else { return Ok(()) };
            if !batch.add(&private.event) {
                self.next_private = Some(private);
                return Ok(());
            }
            self.stream.connection.taken(private.queued_size());
        }
    }

    fn take_private(&mut self) {
        if self.next_private.is_some() || self.stop_at.is_some() {
            return;
        }
        match self.stream.queue.try_recv() {
            Ok(private) => self.next_private = Some(private),
            Err(TryRecvError::Disconnected) => {
                // What was published before the stop is still written; nothing after it.
                let stopped = self.stream.connection.stop_position.get().copied().unwrap_or(u64::MAX);
                self.stop_at = Some(stopped.min(self.stream.log.head()));
            }
            Err(TryRecvError::Empty) => {}
        }
    }

    /// Stopped, with nothing left to write.
    fn is_done(&self) -> bool {
        self.next_private.is_none() && self.stop_at.is_some_and(|stop| self.cursor >= stop)
    }
}

/// The most bytes copied out of the log while it is locked for one read: the publisher waits for
/// readers to let go before it appends, so each holds it only for a short copy.
const MAX_COPY_PER_LOCK: usize = 16 * 1024;

/// Events gathered for one write: copied into one buffer, except an event of [`MAX_BATCH`] bytes or
/// more, which ends the batch and is written from its own shared bytes. Copying (rather than taking
/// shared handles) keeps readers from touching the events' shared counters, which on many cores
/// would bounce between them.
struct Batch {
    bytes: Vec<u8>,
    large: Option<Event>,
    /// Events that count as sent (a note to the client does not).
    count: u64,
}

impl Batch {
    /// Takes `event` unless the batch is full.
    fn add(&mut self, event: &Event) -> bool {
        if self.is_full() {
            return false;
        }
        if event.as_bytes().len() >= MAX_BATCH {
            self.large = Some(event.clone());
        } else {
            self.bytes.extend_from_slice(event.as_bytes());
        }
        self.count += 1;
        true
    }

    /// Adds a note for the client, such as a comment; it is not counted as an event sent.
    fn note(&mut self, note: &Event) {
        self.bytes.extend_from_slice(note.as_bytes());
    }

    fn is_full(&self) -> bool {
        self.large.is_some() || self.bytes.len() >= MAX_BATCH
    }

    fn is_empty(&self) -> bool {
        self.bytes.is_empty() && self.large.is_none()
    }

    fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
        out.write_all(&self.bytes)?;
        if let Some(large) = &self.large {
            out.write_all(large.as_bytes())?;
        }
        out.flush()
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.large = None;
        self.count = 0;
    }

    /// Lets go of a large buffer on an idle stream.
    /// Lets go of the buffer if it holds more than `bytes`.
    fn shrink_to(&mut self, bytes: usize) {
        if self.bytes.capacity() > bytes {
            self.bytes = Vec::new();
        }
    }
}

fn write_all(out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    out.write_all(bytes)?;
    out.flush()
}

/// A write that timed out means the client stopped reading; anything else means it is gone.
pub(crate) fn close_reason_for(err: &io::Error) -> CloseReason {
    match err.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => CloseReason::SendTimeout,
        _ => CloseReason::ClientGone,
    }
}

/// Whether the client has closed its end (or reset the connection), without blocking. Anything it
/// sent meanwhile means nothing on an event stream and is discarded, up to a bound.
fn peer_has_closed(socket: &TcpStream) -> bool {
    if socket.set_nonblocking(true).is_err() {
        return false;
    }
    // Small: this frame's stack pages stay resident for the life of the thread.
    let mut sink = [0u8; 64];
    let mut closed = false;
    for _ in 0..64 {
        match (&*socket).read(&mut sink) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(_) => continue,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    // Writes must block again (up to the send timeout); if that fails, the socket is unusable anyway.
    closed || socket.set_nonblocking(false).is_err()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::log::MemoryLog;
    use crate::registry::{ConnectionInfo, Queue, QueueLimits, Registry};

    struct Fixed {
        heartbeat_event: Event,
        lifetime: Option<Duration>,
        overflow: OverflowPolicy,
        counters: Counters,
    }

    fn pacing() -> Fixed {
        Fixed {
            heartbeat_event: Event::comment("hb"),
            lifetime: None,
            overflow: OverflowPolicy::Disconnect,
            counters: Counters::default(),
        }
    }

    impl Pacing for Fixed {
        fn heartbeat(&self) -> Duration {
            Duration::from_secs(3600)
        }
        fn heartbeat_event(&self) -> &Event {
            &self.heartbeat_event
        }
        fn max_lifetime(&self) -> Option<Duration> {
            self.lifetime
        }
        fn farewell(&self) -> Event {
            Event::retry_hint(Duration::from_secs(3))
        }
        fn overflow(&self) -> OverflowPolicy {
            self.overflow
        }
        fn linger(&self) -> Duration {
            Duration::ZERO
        }
        fn counters(&self) -> &Counters {
            &self.counters
        }
    }

    fn info(event_types: Option<Vec<String>>) -> ConnectionInfo {
        ConnectionInfo { event_types, ..ConnectionInfo::for_test(1, "/events") }
    }

    /// A registered connection on this thread, with its queue.
    fn connection(
        event_types: Option<Vec<String>>,
    ) -> (Registry<Private>, Arc<Connection>, crossbeam_channel::Receiver<Private>) {
        let registry = Registry::default();
        let connection = Arc::new(Connection::new(info(event_types), None));
        let queue = registry.insert(Arc::clone(&connection), Queue::new());
        (registry, connection, queue)
    }

    fn send_one(registry: &Registry<Private>, log: &MemoryLog, text: &str) {
        let private = Private { after: log.head(), event: Event::data(text) };
        registry.push_one(1.into(), &private, &QueueLimits::UNBOUNDED);
    }

    /// Runs the loop over `log` from `cursor` until it ends; returns what it wrote and why it ended.
    fn run_to_end(
        log: &MemoryLog,
        cursor: u64,
        parts: &(Registry<Private>, Arc<Connection>, crossbeam_channel::Receiver<Private>),
        pacing: &Fixed,
        out: &mut impl Write,
    ) -> CloseReason {
        let stream = Stream { log, queue: &parts.2, connection: &parts.1, socket: None };
        run(out, &stream, cursor, b"OPEN\n".to_vec(), pacing)
    }

    #[test]
    fn writes_the_log_and_its_own_messages_in_order_then_says_when_to_come_back() {
        let log = MemoryLog::new(100);
        let parts = connection(None);
        let start = log.head();
        log.append(Event::data("a"), false).unwrap();
        send_one(&parts.0, &log, "for you");
        log.append(Event::data("b"), false).unwrap();
        parts.0.remove_at(1.into(), CloseReason::Stopped, log.head());
        log.append(Event::data("published after the stop"), false).unwrap();
        let mut out = Vec::new();
        let pacing = pacing();
        assert_eq!(run_to_end(&log, start, &parts, &pacing, &mut out), CloseReason::Stopped);
        assert_eq!(out, b"OPEN\ndata: a\n\ndata: for you\n\ndata: b\n\nretry: 3000\n\n");
        assert_eq!(parts.1.stats().sent, 3);
        assert_eq!(parts.1.stats().queued, 0);
        assert_eq!(pacing.counters.snapshot().events_sent, 3);
    }

    #[test]
    fn the_subscription_filters_the_log_but_not_messages_sent_to_it() {
        let log = MemoryLog::new(100);
        let parts = connection(Some(vec!["news".into()]));
        let start = log.head();
        log.append(Event::builder().event("sport").data("no").build().unwrap(), false).unwrap();
        log.append(Event::builder().event("news").data("yes").build().unwrap(), false).unwrap();
        send_one(&parts.0, &log, "direct");
        parts.0.remove(1.into(), CloseReason::Stopped);
        let mut out = Vec::new();
        run_to_end(&log, start, &parts, &pacing(), &mut out);
        assert_eq!(out, b"OPEN\nevent: news\ndata: yes\n\ndata: direct\n\nretry: 3000\n\n");
    }

    #[test]
    fn a_backlog_is_written_in_bounded_pieces_and_a_large_event_is_not_copied() {
        struct Writes(Vec<usize>);
        impl Write for Writes {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.push(buf.len());
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let log = MemoryLog::new(1000);
        let parts = connection(None);
        let start = log.head();
        let small = Event::data("s".repeat(1000));
        for _ in 0..200 {
            log.append(small.clone(), false).unwrap();
        }
        let large = Event::data("L".repeat(MAX_BATCH * 2));
        log.append(large.clone(), false).unwrap();
        parts.0.remove(1.into(), CloseReason::Stopped);
        let mut writes = Writes(Vec::new());
        run_to_end(&log, start, &parts, &pacing(), &mut writes);
        let (pieces, farewell) = writes.0.split_at(writes.0.len() - 1);
        assert!(pieces.len() >= 4, "{pieces:?}");
        let large_len = large.as_bytes().len();
        assert!(pieces.iter().all(|&len| len <= MAX_BATCH + 1008 || len == large_len), "bounded: {pieces:?}");
        assert!(pieces.contains(&large_len), "the large event in one write of its own bytes");
        assert_eq!(farewell, [b"retry: 3000\n\n".len()]);
        assert_eq!(parts.1.stats().sent, 201);
    }

    #[test]
    fn a_reader_that_fell_off_the_log_is_closed_or_jumps_ahead_as_the_policy_says() {
        let log = MemoryLog::new(3);
        let start = log.head();
        for n in 0..10 {
            log.append(Event::data(n.to_string()), false).unwrap();
        }
        let mut out = Vec::new();
        let pacing = pacing();
        assert_eq!(run_to_end(&log, start, &connection(None), &pacing, &mut out), CloseReason::SlowClient);
        assert_eq!(out, b"OPEN\nretry: 3000\n\n", "the opening, then when to come back");
        assert_eq!(pacing.counters.snapshot().slow_client_disconnects, 1);

        let parts = connection(None);
        parts.0.remove(1.into(), CloseReason::Stopped);
        let pacing = Fixed { overflow: OverflowPolicy::DropOldest, ..self::pacing() };
        let mut out = Vec::new();
        assert_eq!(run_to_end(&log, start, &parts, &pacing, &mut out), CloseReason::Stopped);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "OPEN\n: 7 events dropped: this connection fell behind\n\ndata: 7\n\ndata: 8\n\ndata: 9\n\nretry: 3000\n\n"
        );
        assert_eq!(parts.1.stats().dropped, 7);
        assert_eq!(pacing.counters.snapshot().events_dropped, 7);
    }

    #[test]
    fn failed_writes_end_the_loop_with_the_right_reason() {
        struct Failing(io::ErrorKind);
        impl Write for Failing {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(self.0.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let log = MemoryLog::new(10);
        for (kind, reason) in [
            (io::ErrorKind::BrokenPipe, CloseReason::ClientGone),
            (io::ErrorKind::WouldBlock, CloseReason::SendTimeout),
            (io::ErrorKind::TimedOut, CloseReason::SendTimeout),
        ] {
            assert_eq!(
                run_to_end(&log, log.head(), &connection(None), &pacing(), &mut Failing(kind)),
                reason
            );
        }
    }

    #[test]
    fn lifetime_ends_the_stream_with_a_retry_hint() {
        let log = MemoryLog::new(10);
        let pacing = Fixed { lifetime: Some(Duration::from_millis(20)), ..pacing() };
        let mut out = Vec::new();
        assert_eq!(
            run_to_end(&log, log.head(), &connection(None), &pacing, &mut out),
            CloseReason::MaxLifetime
        );
        assert_eq!(out, b"OPEN\nretry: 3000\n\n");
    }

    /// A writer that hands each write to the test thread.
    struct Channel(std::sync::mpsc::Sender<Vec<u8>>);

    impl Write for Channel {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.send(buf.to_vec()).map_err(|_| io::ErrorKind::BrokenPipe)?;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_waiting_loop_wakes_for_the_log_and_for_its_own_messages() {
        let log = Arc::new(MemoryLog::new(100));
        let (written, writes) = std::sync::mpsc::channel();
        let (registered, registry) = std::sync::mpsc::channel();
        let looping = {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                let parts = connection(None);
                let start = log.head();
                let stream = Stream { log: &*log, queue: &parts.2, connection: &parts.1, socket: None };
                registered.send((parts.0, Arc::clone(&parts.1))).unwrap();
                run(&mut Channel(written), &stream, start, Vec::new(), &pacing())
            })
        };
        let (registry, connection) = registry.recv().unwrap();
        let next = || writes.recv_timeout(Duration::from_secs(10)).expect("written within the timeout");
        // The heartbeat is an hour away: only a wake-up can make these come.
        log.append(Event::data("published"), false).unwrap();
        assert_eq!(next(), b"data: published\n\n");
        send_one(&registry, &log, "direct");
        assert_eq!(next(), b"data: direct\n\n");
        log.append(Event::data("again"), false).unwrap();
        assert_eq!(next(), b"data: again\n\n");
        registry.remove(connection.info.id, CloseReason::Stopped);
        assert_eq!(next(), b"retry: 3000\n\n");
        assert_eq!(looping.join().unwrap(), CloseReason::Stopped);
    }
}
