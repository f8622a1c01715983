//! The loop one connection's thread runs once its stream is open: wait for events with the heartbeat
//! interval as the timeout, write what arrived (or a heartbeat), and repeat until told to stop or the
//! client is gone.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError};

use crate::event::Event;
use crate::registry::{CloseReason, Connection, Queued};
use crate::stats::Counters;

/// The most bytes of events gathered into one write. A backlog (a slow client's, megabytes perhaps) is
/// written in pieces of about this size, so no connection holds a copy of it all at once; an event
/// this large or larger is written from its shared bytes, not copied.
const MAX_BATCH: usize = 64 * 1024;

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
    /// The handler's counters.
    fn counters(&self) -> &Counters;
    /// How to wait for the next event just now.
    fn wait_mode(&self) -> WaitMode;
}

/// How a connection's thread waits for its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitMode {
    /// Park, and be woken by the next push.
    Park,
    /// A burst: nap this long (or until the burst ends) without being woken by pushes, then take
    /// everything that came meanwhile.
    Nap(Duration),
}

/// Runs until the stream ends and says why. Every wake-up takes what is already queued, up to
/// [`MAX_BATCH`] bytes, and writes it with one `write_all` and one `flush`, so a burst costs one system
/// call per piece, not one per event. Under light load it waits by parking the thread (woken by the
/// publisher's push), not in the channel's own blocking receive, which spins before it sleeps: with
/// thousands of connection threads the spinning would cost more than the writing. During a burst it
/// naps instead, unwoken by pushes, so that it takes many events per wake-up (see `burst`).
///
/// `socket`, when given, is checked at each heartbeat for a client that has closed its end, so an
/// idle stream to a vanished client is released within one heartbeat interval.
pub(crate) fn run(
    out: &mut impl Write,
    queue: &Receiver<Event>,
    connection: &Connection,
    pacing: &impl Pacing,
    socket: Option<&TcpStream>,
) -> CloseReason {
    let counters = pacing.counters();
    let end_of_life = pacing.max_lifetime().map(|lifetime| Instant::now() + lifetime);
    let mut batch = Vec::new();
    let mut last_write = Instant::now();
    // Whether the last batch stopped at its size bound, so more may be queued already.
    let mut cut_short = false;
    loop {
        let mut wait = pacing.heartbeat().saturating_sub(last_write.elapsed());
        if let Some(end) = end_of_life {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let _ = write_batch(out, pacing.farewell().as_bytes());
                return CloseReason::MaxLifetime;
            }
            wait = wait.min(left);
        }

        batch.clear();
        let mut large = None;
        let mut events = 0u64;
        let take = || match queue.try_recv() {
            Ok(event) => Some(Ok(event)),
            Err(TryRecvError::Disconnected) => Some(Err(())),
            Err(TryRecvError::Empty) => None,
        };
        let next = match pacing.wait_mode() {
            // Light load: park at once, to be woken by the next push. No CPU spent while idle.
            WaitMode::Park => connection.park_until(wait, take),
            // A burst: let events gather, then write them together. Not with a backlog still queued,
            // nor once the queue is closed: nothing would end such a nap early.
            WaitMode::Nap(nap) => {
                if !std::mem::take(&mut cut_short) && connection.close_reason().is_none() {
                    connection.nap(nap.min(wait), || matches!(pacing.wait_mode(), WaitMode::Nap(_)));
                }
                match take() {
                    // Nothing yet, and no heartbeat due: wait again (in a nap or parked).
                    None if last_write.elapsed() < pacing.heartbeat() => continue,
                    next => next,
                }
            }
        };
        match next {
            Some(Ok(first)) => {
                if connection.close_reason() == Some(&CloseReason::SlowClient) {
                    // No point writing a backlog to a client that cannot keep up; it will replay.
                    return CloseReason::SlowClient;
                }
                let dropped = connection.counters.dropped_unreported.swap(0, Ordering::Relaxed);
                if dropped > 0 {
                    let note = format!("{dropped} events dropped: this connection fell behind");
                    batch.extend_from_slice(Event::comment(note).as_bytes());
                }
                let mut next = Some(first);
                let mut taken_bytes = 0;
                while let Some(event) = next.take() {
                    taken_bytes += event.queued_size();
                    events += 1;
                    if event.as_bytes().len() >= MAX_BATCH {
                        // Written after what is gathered so far, straight from its shared bytes.
                        large = Some(event);
                        break;
                    }
                    batch.extend_from_slice(event.as_bytes());
                    if batch.len() < MAX_BATCH {
                        next = queue.try_recv().ok();
                    }
                }
                // Once per batch, not per event: these counters are shared with the publisher.
                connection.taken_many(events as usize, taken_bytes);
                cut_short = large.is_some() || batch.len() >= MAX_BATCH;
            }
            None => {
                if end_of_life.is_some_and(|end| Instant::now() >= end) {
                    continue; // the check at the top closes it
                }
                if socket.is_some_and(peer_has_closed) {
                    return CloseReason::ClientGone;
                }
                batch.extend_from_slice(pacing.heartbeat_event().as_bytes());
            }
            // The registry dropped our sender: stopped, shut down, or dropped as a slow client.
            // Everything queued before that has been written by now.
            Some(Err(_)) => {
                let reason = connection.close_reason().cloned().unwrap_or(CloseReason::Stopped);
                if reason != CloseReason::SlowClient {
                    // Tell the client when to come back; it may be gone already, which is fine.
                    let _ = write_batch(out, pacing.farewell().as_bytes());
                }
                return reason;
            }
        }
        let written = match &large {
            Some(large) => write_batch(out, &batch).and_then(|()| write_batch(out, large.as_bytes())),
            None => write_batch(out, &batch),
        };
        if let Err(err) = written {
            return close_reason_for(&err);
        }
        last_write = Instant::now();
        if events == 0 {
            connection.counters.heartbeats.fetch_add(1, Ordering::Relaxed);
            Counters::add(&counters.heartbeats, 1);
        } else {
            connection.counters.sent.fetch_add(events, Ordering::Relaxed);
            Counters::add(&counters.events_sent, events);
        }
    }
}

fn write_batch(out: &mut impl Write, batch: &[u8]) -> io::Result<()> {
    out.write_all(batch)?;
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
    use std::time::SystemTime;

    use super::*;
    use crate::registry::{ConnectionInfo, Queue, Registry, Replay, Wake};

    struct Fixed {
        heartbeat: Duration,
        heartbeat_event: Event,
        lifetime: Option<Duration>,
        counters: Counters,
        /// When set, a burst is on and the loop naps this long.
        nap: parking_lot::Mutex<Option<Duration>>,
    }

    fn pacing(heartbeat: Duration) -> Fixed {
        Fixed {
            heartbeat,
            heartbeat_event: Event::comment("hb"),
            lifetime: None,
            counters: Counters::default(),
            nap: parking_lot::Mutex::new(None),
        }
    }

    impl Pacing for Fixed {
        fn heartbeat(&self) -> Duration {
            self.heartbeat
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
        fn counters(&self) -> &Counters {
            &self.counters
        }
        fn wait_mode(&self) -> WaitMode {
            self.nap.lock().map_or(WaitMode::Park, WaitMode::Nap)
        }
    }

    fn info() -> ConnectionInfo {
        ConnectionInfo {
            id: 1.into(),
            peer: None,
            path: "/events".into(),
            user: None,
            since: SystemTime::now(),
            event_types: None,
            last_event_id: None,
            replay: Replay::NotAsked,
        }
    }

    fn limits(messages: usize) -> crate::registry::QueueLimits {
        crate::registry::QueueLimits {
            messages,
            bytes: usize::MAX,
            overflow: crate::registry::OverflowPolicy::Disconnect,
        }
    }

    /// A registered connection with `events` queued.
    fn queued(events: &[&str]) -> (Registry<Event>, std::sync::Arc<Connection>, Receiver<Event>) {
        let registry = Registry::default();
        let connection = std::sync::Arc::new(Connection::new(info(), None));
        let queue = registry.insert(std::sync::Arc::clone(&connection), Queue::new());
        let limits = limits(1000);
        for text in events {
            registry.push_one(1.into(), &Event::data(text), &limits);
        }
        (registry, connection, queue)
    }

    /// A writer that fails every write the way a socket does.
    struct Failing(io::ErrorKind);

    impl Write for Failing {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(self.0.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn drains_queued_events_in_order_then_says_when_to_come_back() {
        let (registry, connection, queue) = queued(&["a", "b", "c"]);
        registry.remove(1.into(), CloseReason::Stopped);
        let mut out = Vec::new();
        let pacing = pacing(Duration::from_secs(60));
        assert_eq!(run(&mut out, &queue, &connection, &pacing, None), CloseReason::Stopped);
        assert_eq!(out, b"data: a\n\ndata: b\n\ndata: c\n\nretry: 3000\n\n");
        assert_eq!(connection.stats().queued, 0);
        assert_eq!(connection.stats().sent, 3);
        assert_eq!(pacing.counters.snapshot().events_sent, 3);
    }

    #[test]
    fn writes_a_heartbeat_when_idle() {
        let (_registry, connection, queue) = queued(&[]);
        // The writer stops the loop once it has seen two heartbeats.
        struct UntilTwo(Vec<u8>);
        impl Write for UntilTwo {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                if self.0.len() >= 2 * b": hb\n\n".len() {
                    return Err(io::ErrorKind::BrokenPipe.into());
                }
                self.0.extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut out = UntilTwo(Vec::new());
        let pacing = pacing(Duration::from_millis(1));
        assert_eq!(run(&mut out, &queue, &connection, &pacing, None), CloseReason::ClientGone);
        assert_eq!(out.0, b": hb\n\n: hb\n\n");
        assert_eq!(connection.stats().heartbeats, 2);
    }

    #[test]
    fn failed_writes_end_the_loop_with_the_right_reason() {
        for (kind, reason) in [
            (io::ErrorKind::BrokenPipe, CloseReason::ClientGone),
            (io::ErrorKind::ConnectionReset, CloseReason::ClientGone),
            (io::ErrorKind::WouldBlock, CloseReason::SendTimeout),
            (io::ErrorKind::TimedOut, CloseReason::SendTimeout),
        ] {
            let (_registry, connection, queue) = queued(&["x"]);
            let pacing = pacing(Duration::from_secs(60));
            assert_eq!(run(&mut Failing(kind), &queue, &connection, &pacing, None), reason);
        }
    }

    #[test]
    fn a_backlog_is_written_in_bounded_pieces_and_a_large_event_is_not_copied() {
        let small = "s".repeat(1000);
        let large = "L".repeat(3 * MAX_BATCH);
        let mut texts: Vec<&str> = vec![small.as_str(); 200];
        texts.push(large.as_str());
        texts.extend([small.as_str(); 10]);
        let (registry, connection, queue) = queued(&texts);
        registry.remove(1.into(), CloseReason::Stopped);
        // Records the size of every write, so that no piece can be bigger than the bound.
        struct Pieces(Vec<u8>, Vec<usize>);
        impl Write for Pieces {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.extend_from_slice(buf);
                self.1.push(buf.len());
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut out = Pieces(Vec::new(), Vec::new());
        run(&mut out, &queue, &connection, &pacing(Duration::from_secs(60)), None);
        let expected: Vec<u8> = texts.iter().flat_map(|t| Event::data(t).as_bytes().to_vec()).collect();
        assert_eq!(out.0[..expected.len()], expected[..], "everything, in order");
        let large_len = Event::data(&large).as_bytes().len();
        for &size in &out.1 {
            assert!(size < MAX_BATCH + 1100 || size == large_len, "a write of {size} bytes");
        }
        assert!(out.1.len() > 3, "the backlog took several writes: {:?}", out.1);
        assert_eq!(connection.stats().sent, 211);
    }

    #[test]
    fn a_slow_client_is_not_written_its_backlog() {
        let (registry, connection, queue) = queued(&["late"]);
        registry.remove(1.into(), CloseReason::SlowClient);
        let mut out = Vec::new();
        let pacing = pacing(Duration::from_secs(60));
        assert_eq!(run(&mut out, &queue, &connection, &pacing, None), CloseReason::SlowClient);
        assert!(out.is_empty());
    }

    #[test]
    fn lifetime_ends_the_stream_with_a_retry_hint() {
        let (_registry, connection, queue) = queued(&[]);
        let mut pacing = pacing(Duration::from_secs(60));
        pacing.lifetime = Some(Duration::from_millis(5));
        let mut out = Vec::new();
        assert_eq!(run(&mut out, &queue, &connection, &pacing, None), CloseReason::MaxLifetime);
        assert_eq!(out, b"retry: 3000\n\n");
    }

    #[test]
    fn dropped_events_are_reported_to_the_client() {
        let (registry, connection, queue) = queued(&[]);
        let limits = crate::registry::QueueLimits {
            messages: 2,
            bytes: usize::MAX,
            overflow: crate::registry::OverflowPolicy::DropOldest,
        };
        for text in ["1", "2", "3", "4"] {
            registry.push_one(1.into(), &Event::data(text), &limits);
        }
        registry.remove(1.into(), CloseReason::Stopped);
        let mut out = Vec::new();
        run(&mut out, &queue, &connection, &pacing(Duration::from_secs(60)), None);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            ": 2 events dropped: this connection fell behind\n\ndata: 3\n\ndata: 4\n\nretry: 3000\n\n"
        );
    }

    /// Hands every write to a channel, so a test can wait for it with a bound.
    struct Forward(crossbeam_channel::Sender<Vec<u8>>);

    impl Write for Forward {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.send(buf.to_vec()).map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Runs the loop for a connection created on its own thread (the thread a nap or park puts to
    /// sleep), with `pacing`; returns the registry, the pacing and where the writes arrive.
    fn spawn_loop(
        pacing: Fixed,
    ) -> (std::sync::Arc<Registry<Event>>, std::sync::Arc<Fixed>, crossbeam_channel::Receiver<Vec<u8>>) {
        let registry = std::sync::Arc::new(Registry::default());
        let pacing = std::sync::Arc::new(pacing);
        let (writes, written) = crossbeam_channel::unbounded();
        let (ready, registered) = crossbeam_channel::bounded(0);
        let (thread_registry, thread_pacing) =
            (std::sync::Arc::clone(&registry), std::sync::Arc::clone(&pacing));
        std::thread::spawn(move || {
            let connection = std::sync::Arc::new(Connection::new(info(), None));
            let queue = thread_registry.insert(std::sync::Arc::clone(&connection), Queue::new());
            ready.send(()).unwrap();
            run(&mut Forward(writes), &queue, &connection, &*thread_pacing, None)
        });
        registered.recv().unwrap();
        (registry, pacing, written)
    }

    /// Everything written until `expected` bytes have arrived, or what came by the deadline.
    fn written_until(
        written: &crossbeam_channel::Receiver<Vec<u8>>,
        expected: usize,
        within: Duration,
    ) -> Vec<u8> {
        let deadline = Instant::now() + within;
        let mut out = Vec::new();
        while out.len() < expected {
            match written.recv_deadline(deadline) {
                Ok(bytes) => out.extend(bytes),
                Err(_) => break,
            }
        }
        out
    }

    #[test]
    fn under_light_load_a_push_wakes_the_thread_at_once() {
        let (registry, _pacing, written) = spawn_loop(pacing(Duration::from_secs(60)));
        registry.broadcast(&Event::data("now"), &limits(1000), |_| Wake::Now, |_| true);
        assert_eq!(written_until(&written, 11, Duration::from_secs(10)), b"data: now\n\n");
        registry.remove_all(CloseReason::Stopped);
    }

    #[test]
    fn a_burst_is_held_back_and_written_at_once_when_the_burst_ends() {
        let p = pacing(Duration::from_secs(60));
        *p.nap.lock() = Some(Duration::from_secs(60));
        let (registry, pacing, written) = spawn_loop(p);
        // The thread naps as soon as it looks at its queue, whether these come before or after.
        for text in ["1", "2", "3"] {
            registry.broadcast(&Event::data(text), &limits(1000), |_| Wake::Now, |_| true);
        }
        let expected = b"data: 1\n\ndata: 2\n\ndata: 3\n\n";
        // A nap of 60 s would outlast this bound; the burst's end must cut it short.
        *pacing.nap.lock() = None;
        registry.wake_sleeping(true);
        assert_eq!(written_until(&written, expected.len(), Duration::from_secs(10)), expected);
        registry.remove_all(CloseReason::Stopped);
    }

    #[test]
    fn a_nap_ends_when_the_queue_is_half_full() {
        let p = pacing(Duration::from_secs(60));
        *p.nap.lock() = Some(Duration::from_secs(60));
        let (registry, _pacing, written) = spawn_loop(p);
        // The burst stays on, so only the filling queue can wake the thread before the bound.
        let mut expected = Vec::new();
        for i in 0..5 {
            let event = Event::data(i.to_string());
            expected.extend_from_slice(event.as_bytes());
            registry.broadcast(&event, &limits(10), |_| Wake::Now, |_| true);
        }
        let out = written_until(&written, expected.len(), Duration::from_secs(10));
        assert_eq!(out, expected, "all five, in order, well before the nap would end");
        registry.remove_all(CloseReason::Stopped);
    }

    #[test]
    fn a_closed_queue_is_written_out_without_napping_between_pieces() {
        let p = pacing(Duration::from_secs(60));
        *p.nap.lock() = Some(Duration::from_secs(60));
        let (registry, _pacing, written) = spawn_loop(p);
        // A backlog of several pieces, then the queue is closed while the burst is still on: the
        // close ends the first nap, and nothing would end a second one before the bound.
        let text = "x".repeat(1000);
        let mut expected = Vec::new();
        for _ in 0..200 {
            let event = Event::data(&text);
            expected.extend_from_slice(event.as_bytes());
            registry.broadcast(&event, &limits(1000), |_| Wake::Now, |_| true);
        }
        registry.remove_all(CloseReason::Stopped);
        expected.extend_from_slice(b"retry: 3000\n\n");
        assert_eq!(written_until(&written, expected.len(), Duration::from_secs(10)), expected);
    }

    #[test]
    fn a_thread_parked_before_a_burst_gets_the_events_whose_wake_ups_it_held() {
        // Parked under light load (the heartbeat is a minute away); then a burst's pushes hold back
        // the wake-up, and only the pacer's sweep at the burst's end can wake it before the bound.
        let (registry, _pacing, written) = spawn_loop(pacing(Duration::from_secs(60)));
        let mut expected = Vec::new();
        for text in ["1", "2", "3"] {
            let event = Event::data(text);
            expected.extend_from_slice(event.as_bytes());
            registry.broadcast(&event, &limits(1000), |_| Wake::Held, |_| true);
        }
        registry.wake_sleeping(false);
        assert_eq!(written_until(&written, expected.len(), Duration::from_secs(10)), expected);
        registry.remove_all(CloseReason::Stopped);
    }

    #[test]
    fn after_a_large_event_in_a_burst_the_thread_naps_rather_than_spins() {
        // A batch cut short by a large event skips one nap (more may be queued); with nothing
        // queued after it, the thread must go back to napping, not loop without sleeping.
        let p = pacing(Duration::from_secs(60));
        *p.nap.lock() = Some(Duration::from_secs(60));
        let (registry, _pacing, written) = spawn_loop(p);
        let large = Event::data("L".repeat(MAX_BATCH));
        registry.broadcast(&large, &limits(1), |_| Wake::Held, |_| true);
        let out = written_until(&written, large.as_bytes().len(), Duration::from_secs(10));
        assert_eq!(out.len(), large.as_bytes().len());
        let connection = registry.get(1.into()).expect("registered");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !connection.is_napping() {
            assert!(Instant::now() < deadline, "the thread never went back to its nap");
            std::thread::yield_now();
        }
        registry.remove_all(CloseReason::Stopped);
    }
}
