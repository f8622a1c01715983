//! The loop one connection's thread runs once its stream is open: wait for events with the heartbeat
//! interval as the timeout, write what arrived (or a heartbeat), and repeat until told to stop or the
//! client is gone.

use std::io::{self, Write};
use std::sync::atomic::Ordering;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::event::Event;
use crate::registry::{CloseReason, Connection};

/// What the loop needs from its handler, read afresh on every wait.
pub(crate) trait Pacing {
    /// The current heartbeat interval (it may change while the connection runs).
    fn heartbeat(&self) -> Duration;
    /// The heartbeat comment to write on an idle stream.
    fn heartbeat_event(&self) -> &Event;
}

/// Runs until the stream ends and says why. Every wake-up takes everything already queued and writes it
/// with one `write_all` and one `flush`, so a burst costs one system call, not one per event.
pub(crate) fn run(
    out: &mut impl Write,
    queue: &Receiver<Event>,
    connection: &Connection,
    pacing: &impl Pacing,
) -> CloseReason {
    let mut batch = Vec::new();
    loop {
        // `taken` counts queued events only, to keep the connection's pending count exact.
        let (first, mut taken) = match queue.recv_timeout(pacing.heartbeat()) {
            Ok(event) => (event, 1),
            Err(RecvTimeoutError::Timeout) => (pacing.heartbeat_event().clone(), 0),
            // The registry dropped our sender: stopped, shut down, or dropped as a slow client.
            // Everything queued before that has been written by now.
            Err(RecvTimeoutError::Disconnected) => {
                return connection.close_reason().cloned().unwrap_or(CloseReason::Stopped);
            }
        };
        if connection.close_reason() == Some(&CloseReason::SlowClient) {
            // No point writing a backlog to a client that cannot keep up; it will replay on reconnect.
            return CloseReason::SlowClient;
        }
        batch.clear();
        batch.extend_from_slice(first.as_bytes());
        while let Ok(event) = queue.try_recv() {
            batch.extend_from_slice(event.as_bytes());
            taken += 1;
        }
        connection.pending.fetch_sub(taken, Ordering::AcqRel);
        if let Err(err) = write_batch(out, &batch) {
            return close_reason_for(&err);
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

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;
    use std::sync::atomic::AtomicUsize;
    use std::time::SystemTime;

    use crossbeam_channel::unbounded;

    use super::*;
    use crate::registry::{ConnectionInfo, Replay};

    struct Fixed(Duration, Event);

    impl Pacing for Fixed {
        fn heartbeat(&self) -> Duration {
            self.0
        }
        fn heartbeat_event(&self) -> &Event {
            &self.1
        }
    }

    fn connection() -> Connection {
        Connection {
            info: ConnectionInfo {
                id: 1.into(),
                peer: None,
                path: "/events".into(),
                user: None,
                since: SystemTime::now(),
                event_types: None,
                last_event_id: None,
                replay: Replay::NotAsked,
            },
            pending: AtomicUsize::new(0),
            close_reason: OnceLock::new(),
        }
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
    fn drains_queued_events_in_order_then_stops() {
        let (tx, rx) = unbounded();
        let conn = connection();
        for text in ["a", "b", "c"] {
            tx.send(Event::data(text)).unwrap();
        }
        conn.pending.store(3, Ordering::Relaxed);
        drop(tx);
        let mut out = Vec::new();
        let pacing = Fixed(Duration::from_secs(60), Event::comment("hb"));
        assert_eq!(run(&mut out, &rx, &conn, &pacing), CloseReason::Stopped);
        assert_eq!(out, b"data: a\n\ndata: b\n\ndata: c\n\n");
        assert_eq!(conn.pending.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn writes_a_heartbeat_when_idle() {
        let (tx, rx) = unbounded::<Event>();
        let conn = connection();
        let pacing = Fixed(Duration::from_millis(1), Event::comment("hb"));
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
        assert_eq!(run(&mut out, &rx, &conn, &pacing), CloseReason::ClientGone);
        assert_eq!(out.0, b": hb\n\n: hb\n\n");
        drop(tx);
    }

    #[test]
    fn failed_writes_end_the_loop_with_the_right_reason() {
        let pacing = Fixed(Duration::from_secs(60), Event::comment("hb"));
        for (kind, reason) in [
            (io::ErrorKind::BrokenPipe, CloseReason::ClientGone),
            (io::ErrorKind::ConnectionReset, CloseReason::ClientGone),
            (io::ErrorKind::WouldBlock, CloseReason::SendTimeout),
            (io::ErrorKind::TimedOut, CloseReason::SendTimeout),
        ] {
            let (tx, rx) = unbounded();
            tx.send(Event::data("x")).unwrap();
            assert_eq!(run(&mut Failing(kind), &rx, &connection(), &pacing), reason);
        }
    }

    #[test]
    fn a_slow_client_is_not_written_its_backlog() {
        let (tx, rx) = unbounded();
        let conn = connection();
        tx.send(Event::data("late")).unwrap();
        conn.close_reason.set(CloseReason::SlowClient).unwrap();
        drop(tx);
        let mut out = Vec::new();
        let pacing = Fixed(Duration::from_secs(60), Event::comment("hb"));
        assert_eq!(run(&mut out, &rx, &conn, &pacing), CloseReason::SlowClient);
        assert!(out.is_empty());
    }
}
