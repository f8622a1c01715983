//! What the application sends to a connection, and how its writer reads it in order.
//!
//! A broadcast ([`WsHandler::send_all`](super::WsHandler::send_all)) is encoded once and appended to
//! the handler's [`Broadcasts`] log, whatever the number of connections: nothing is pushed to them.
//! A message for one connection alone, and a request to close it, wait in that connection's own queue
//! as a [`Private`], marked with the log's head when it was sent. Each writer keeps an [`Outbox`]: its
//! cursor in the log and its queue, read together so that a message of its own comes after every
//! broadcast published before it, one bounded [`Batch`] at a time.

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, TryRecvError};

use super::close::CloseCause;
use super::message::CloseFrame;
use crate::log::{FellBehind, Ring};
use crate::registry::{Connection, Queued};
use crate::wait::Waiter;

/// The most bytes of small frames gathered into one write. A backlog is written in pieces of at most
/// this size, so a writer never holds a copy of more; a frame this large or larger is written from the
/// bytes the log or the queue shares, never copied.
pub(crate) const MAX_GATHER: usize = 64 * 1024;

/// The most bytes copied out of the log while it is locked for one read: a publisher waits for readers
/// to let go before it appends, so each holds the lock only for a short copy.
const MAX_COPY_PER_LOCK: usize = 16 * 1024;

/// A buffer this large or smaller is kept by a writer that waits; a larger one is let go.
const BUFFER_KEPT: usize = 8 * 1024;

/// The broadcast log of one handler: every frame `send_all` sent, once, in order, bounded by count
/// and bytes. Its bounds are how far behind a connection may fall: one whose unwritten broadcasts
/// leave the log is closed as a slow client. Also counts the slow clients dropped, whichever way.
pub(crate) struct Broadcasts {
    log: Ring<Arc<[u8]>>,
    slow_client_drops: AtomicUsize,
}

impl std::fmt::Debug for Broadcasts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broadcasts")
            .field("head", &self.log.head())
            .field("capacity", &self.log.capacity())
            .field("max_bytes", &self.log.max_bytes_bound())
            .field("slow_client_drops", &self.slow_client_drops())
            .finish_non_exhaustive()
    }
}

impl Broadcasts {
    /// A log that keeps the last `capacity` frames and at most `max_bytes` bytes of them (the newest
    /// always, however large).
    pub(crate) fn new(capacity: usize, max_bytes: usize) -> Broadcasts {
        Broadcasts {
            log: Ring::new(0, capacity).max_bytes(max_bytes),
            slow_client_drops: AtomicUsize::new(0),
        }
    }

    /// Appends a frame, and wakes the writers waiting for one: the whole cost of a broadcast.
    pub(crate) fn publish(&self, frame: Arc<[u8]>) {
        self.log.push(frame);
    }

    /// The position the next broadcast will take. A connection that registers starts reading here (no
    /// replay); a message sent to one connection is written once it has read up to here.
    pub(crate) fn head(&self) -> u64 {
        self.log.head()
    }

    /// How many slow clients have been dropped.
    pub(crate) fn slow_client_drops(&self) -> usize {
        self.slow_client_drops.load(Ordering::Relaxed)
    }

    /// Counts a slow client dropped.
    pub(crate) fn count_slow_client(&self) {
        self.slow_client_drops.fetch_add(1, Ordering::Relaxed);
    }

    /// The most frames the log keeps.
    pub(crate) fn capacity(&self) -> usize {
        self.log.capacity()
    }

    /// The most bytes of frames the log keeps.
    pub(crate) fn max_bytes(&self) -> usize {
        self.log.max_bytes_bound().unwrap_or(usize::MAX)
    }

    /// How many frames it holds now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.log.len()
    }
}

/// What the application sends to one connection alone (the registry's message type), to be written
/// once the connection has written the broadcasts before position `after`: the log's head when it was
/// sent, so it comes after every broadcast published before it.
#[derive(Debug, Clone)]
pub(crate) struct Private {
    pub(crate) after: u64,
    pub(crate) item: Outbound,
}

/// A message for one connection, or a request to close it.
#[derive(Debug, Clone)]
pub(crate) enum Outbound {
    /// A data message, already encoded as a frame.
    Frame(Arc<[u8]>),
    /// Start the closing handshake.
    Close { frame: CloseFrame, cause: CloseCause },
}

impl Queued for Private {
    fn queued_size(&self) -> usize {
        match &self.item {
            Outbound::Frame(bytes) => bytes.len(),
            Outbound::Close { .. } => 0,
        }
    }
}

/// How far a writer may read: everything that comes ([`Bound::all`]), or, while a connection ends,
/// only what had been sent when it began to end ([`Outbox::sent_so_far`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bound {
    /// The log position not to read past.
    head: u64,
    /// How many more messages may be taken from the connection's queue.
    messages: usize,
}

impl Bound {
    /// No bound: everything that comes.
    pub(crate) fn all() -> Bound {
        Bound { head: u64::MAX, messages: usize::MAX }
    }
}

/// One writer's place in what is sent to it: its cursor in the broadcast log, and its own queue.
pub(crate) struct Outbox {
    broadcasts: Arc<Broadcasts>,
    queue: Receiver<Private>,
    connection: Arc<Connection>,
    /// The next log position to write.
    cursor: u64,
    /// A message taken off the queue, waiting for the log to be written up to its position.
    next_private: Option<Private>,
    /// Whether the queue may still bring something (the registry has not let go of it).
    queue_open: bool,
}

impl Outbox {
    /// The outbox of a connection whose registration took the log's head `cursor` and gave `queue`.
    pub(crate) fn new(
        broadcasts: Arc<Broadcasts>,
        queue: Receiver<Private>,
        connection: Arc<Connection>,
        cursor: u64,
    ) -> Outbox {
        Outbox { broadcasts, queue, connection, cursor, next_private: None, queue_open: true }
    }

    /// The handler's broadcast log.
    pub(crate) fn broadcasts(&self) -> &Broadcasts {
        &self.broadcasts
    }

    /// What has been sent to this connection until now: the log up to its head, and the messages in
    /// its queue.
    pub(crate) fn sent_so_far(&self) -> Bound {
        Bound { head: self.broadcasts.head(), messages: self.queue.len() }
    }

    /// Adds to `batch` what is ready, in order, within `bound`: broadcasts from the cursor on, and this
    /// connection's own messages, each after the broadcasts published before it. Stops when the batch
    /// is full, when everything ready is in it, or at a close request, which it returns: the batch is
    /// to be written before the close frame.
    ///
    /// # Errors
    /// [`FellBehind`] when broadcasts this connection has not written have left the log.
    pub(crate) fn gather(
        &mut self,
        batch: &mut Batch,
        bound: &mut Bound,
    ) -> Result<Option<(CloseFrame, CloseCause)>, FellBehind> {
        loop {
            // The head is taken before the queue is looked at, and nothing past it is read until the
            // queue is looked at again: a message this look misses was sent after it, hence before any
            // broadcast past this head that its sender sent next, and is written before those.
            let head = self.broadcasts.head();
            self.take_private(bound);
            let until = self.next_private.as_ref().map_or(head, |private| private.after).min(bound.head);
            if self.cursor < until {
                let mut position = self.cursor;
                let mut copied = 0;
                let mut paused = false;
                let read = {
                    let log = self.broadcasts.log.lock_read();
                    log.read(self.cursor, |frame| {
                        if position >= until {
                            return false;
                        }
                        if copied >= MAX_COPY_PER_LOCK {
                            paused = true;
                            return false;
                        }
                        if !batch.add(frame) {
                            return false;
                        }
                        copied += frame.len().min(MAX_GATHER);
                        position += 1;
                        true
                    })
                    .ok_or_else(|| FellBehind { oldest: log.tail(), missed: log.tail() - self.cursor })
                };
                self.cursor = read?;
                if paused {
                    continue; // there may be more: read on, with the lock let go in between
                }
                if self.cursor < until {
                    return Ok(None); // full
                }
            }
            // Everything up to `until` is in the batch: the message of its own comes next, if any.
            let Some(private) = self.next_private.as_ref() else { return Ok(None) };
            if let Outbound::Frame(frame) = &private.item {
                if !batch.add(frame) {
                    return Ok(None); // full: it goes first in the next batch
                }
            }
            let private = self.next_private.take().expect("looked at above");
            self.connection.taken(private.queued_size());
            if let Outbound::Close { frame, cause } = private.item {
                return Ok(Some((frame, cause)));
            }
        }
    }

    fn take_private(&mut self, bound: &mut Bound) {
        if self.next_private.is_some() || !self.queue_open || bound.messages == 0 {
            return;
        }
        match self.queue.try_recv() {
            Ok(private) => {
                bound.messages -= 1;
                self.next_private = Some(private);
            }
            // The registry let go of the connection; a close request, if any, came before.
            Err(TryRecvError::Disconnected) => self.queue_open = false,
            Err(TryRecvError::Empty) => {}
        }
    }

    /// Blocks the writer's thread (whose `waiter` this is) until the log moves past what it has
    /// written, `timeout` passes, or the thread is unparked: whoever puts something in the
    /// connection's queue or in the reader's control queue unparks it after doing so, so a wake-up
    /// that comes between the writer's last look and this wait is not lost (it leaves `park`'s token).
    /// It may also return for no reason.
    pub(crate) fn wait(&self, waiter: &Arc<Waiter>, timeout: Duration) {
        self.broadcasts.log.wait(self.cursor, waiter, timeout);
    }
}

/// Frames gathered for one write: small ones copied into one buffer of at most [`MAX_GATHER`] bytes,
/// and at most one larger frame, written after them from its own shared bytes.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    bytes: Vec<u8>,
    large: Option<Arc<[u8]>>,
}

impl Batch {
    /// Takes `frame` unless the batch is full.
    fn add(&mut self, frame: &Arc<[u8]>) -> bool {
        if self.large.is_some() {
            return false;
        }
        if frame.len() >= MAX_GATHER {
            self.large = Some(Arc::clone(frame));
        } else if self.bytes.is_empty() || self.bytes.len() + frame.len() <= MAX_GATHER {
            self.bytes.extend_from_slice(frame);
        } else {
            return false;
        }
        true
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.bytes.is_empty() && self.large.is_none()
    }

    /// Writes the batch, small frames first, and empties it.
    pub(crate) fn write_to(&mut self, out: &mut impl Write) -> io::Result<()> {
        let written = out.write_all(&self.bytes).and_then(|()| match &self.large {
            Some(large) => out.write_all(large),
            None => Ok(()),
        });
        self.bytes.clear();
        self.large = None;
        written
    }

    /// Forgets what it gathered (the connection is ending).
    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
        self.large = None;
    }

    /// Lets go of a buffer grown by a burst, before the writer waits: with thousands of connections
    /// those would add up.
    pub(crate) fn shrink(&mut self) {
        if self.bytes.capacity() > BUFFER_KEPT {
            self.bytes = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::registry::{CloseReason, ConnectionInfo, Queue, QueueLimits, Registry};

    fn info() -> ConnectionInfo {
        ConnectionInfo::for_test(1, "/ws")
    }

    /// A log, a registered connection, and its outbox from the log's head.
    fn outbox(capacity: usize) -> (Arc<Broadcasts>, Registry<Private>, Outbox) {
        let broadcasts = Arc::new(Broadcasts::new(capacity, usize::MAX));
        let registry = Registry::default();
        let connection = Arc::new(Connection::new(info(), None));
        let queue = registry.insert(Arc::clone(&connection), Queue::new());
        let cursor = broadcasts.head();
        let outbox = Outbox::new(Arc::clone(&broadcasts), queue, connection, cursor);
        (broadcasts, registry, outbox)
    }

    fn frame(text: &str) -> Arc<[u8]> {
        text.as_bytes().into()
    }

    fn send_one(broadcasts: &Broadcasts, registry: &Registry<Private>, text: &str) {
        let private = Private { after: broadcasts.head(), item: Outbound::Frame(frame(text)) };
        registry.push_one(1.into(), &private, &QueueLimits::UNBOUNDED);
    }

    /// Gathers and writes until nothing is ready; returns what was written and the close request met.
    fn drain(outbox: &mut Outbox, bound: &mut Bound) -> (Vec<u8>, Option<u16>) {
        let mut batch = Batch::default();
        let mut out = Vec::new();
        loop {
            let close = outbox.gather(&mut batch, bound).expect("not behind");
            let empty = batch.is_empty();
            batch.write_to(&mut out).unwrap();
            if let Some((frame, _)) = close {
                return (out, Some(frame.code));
            }
            if empty {
                return (out, None);
            }
        }
    }

    #[test]
    fn a_message_to_one_comes_after_the_broadcasts_sent_before_it_and_a_close_after_both() {
        let (broadcasts, registry, mut outbox) = outbox(100);
        broadcasts.publish(frame("a,"));
        send_one(&broadcasts, &registry, "mine,");
        broadcasts.publish(frame("b,"));
        send_one(&broadcasts, &registry, "mine again,");
        let close = CloseFrame { code: 4000, reason: String::new() };
        let stop = Private {
            after: broadcasts.head(),
            item: Outbound::Close { frame: close, cause: CloseCause::Stopped },
        };
        registry.push_one(1.into(), &stop, &QueueLimits::UNBOUNDED);
        broadcasts.publish(frame("after the close"));
        let (written, close) = drain(&mut outbox, &mut Bound::all());
        assert_eq!(String::from_utf8(written).unwrap(), "a,mine,b,mine again,");
        assert_eq!(close, Some(4000));
        assert_eq!(outbox.connection.stats().queued, 0, "taken off the queue");
    }

    #[test]
    fn a_connection_reads_from_where_it_registered_and_a_bound_stops_at_what_was_sent_then() {
        let (broadcasts, registry, _) = outbox(100);
        broadcasts.publish(frame("before it registered,"));
        let connection = Arc::new(Connection::new(ConnectionInfo { id: 2.into(), ..info() }, None));
        let queue = registry.insert(Arc::clone(&connection), Queue::new());
        let mut outbox = Outbox::new(Arc::clone(&broadcasts), queue, connection, broadcasts.head());
        broadcasts.publish(frame("one,"));
        let private = Private { after: broadcasts.head(), item: Outbound::Frame(frame("own,")) };
        registry.push_one(2.into(), &private, &QueueLimits::UNBOUNDED);
        let mut bound = outbox.sent_so_far();
        broadcasts.publish(frame("later,"));
        let private = Private { after: broadcasts.head(), ..private };
        registry.push_one(2.into(), &private, &QueueLimits::UNBOUNDED);
        assert_eq!(drain(&mut outbox, &mut bound).0, b"one,own,");
        assert_eq!(drain(&mut outbox, &mut Bound::all()).0, b"later,own,");
    }

    #[test]
    fn a_writer_whose_broadcasts_left_the_log_is_told_how_many_it_missed() {
        let (broadcasts, _registry, mut outbox) = outbox(3);
        for n in 0..10 {
            broadcasts.publish(frame(&n.to_string()));
        }
        let behind = outbox.gather(&mut Batch::default(), &mut Bound::all()).unwrap_err();
        assert_eq!(behind.missed, 7);
    }

    #[test]
    fn a_backlog_is_written_in_bounded_pieces_and_a_large_frame_is_not_copied() {
        #[derive(Default)]
        struct Recorder {
            writes: Vec<(*const u8, usize)>,
            bytes: Vec<u8>,
        }
        impl Write for Recorder {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.writes.push((buf.as_ptr(), buf.len()));
                self.bytes.extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let (broadcasts, registry, mut outbox) = outbox(1000);
        let small: Vec<Arc<[u8]>> = (0..60u8).map(|i| vec![i; 3000].into()).collect();
        let large: Arc<[u8]> = vec![0xAB; 200_000].into();
        for frame in &small[..30] {
            broadcasts.publish(Arc::clone(frame));
        }
        broadcasts.publish(Arc::clone(&large));
        for frame in &small[30..50] {
            broadcasts.publish(Arc::clone(frame));
        }
        // A large message to this connection alone is not copied either.
        let own: Arc<[u8]> = vec![0xCD; 100_000].into();
        let private = Private { after: broadcasts.head(), item: Outbound::Frame(Arc::clone(&own)) };
        registry.push_one(1.into(), &private, &QueueLimits::UNBOUNDED);
        for frame in &small[50..] {
            broadcasts.publish(Arc::clone(frame));
        }
        let mut out = Recorder::default();
        let mut batch = Batch::default();
        while {
            outbox.gather(&mut batch, &mut Bound::all()).unwrap();
            !batch.is_empty()
        } {
            batch.write_to(&mut out).unwrap();
        }
        let expected =
            [&small[..30], &[Arc::clone(&large)], &small[30..50], &[Arc::clone(&own)], &small[50..]].concat();
        assert_eq!(out.bytes, expected.concat());
        assert!(
            out.writes.contains(&(large.as_ptr(), large.len())),
            "the large broadcast from its own bytes"
        );
        assert!(out.writes.contains(&(own.as_ptr(), own.len())), "the large message from its own bytes");
        let gathered: Vec<usize> =
            out.writes.iter().map(|w| w.1).filter(|&len| len != large.len() && len != own.len()).collect();
        assert!(gathered.iter().all(|&len| len <= MAX_GATHER), "{gathered:?}");
        assert!(gathered.len() <= 6, "small frames are gathered: {gathered:?}");
    }

    #[test]
    fn a_queue_the_registry_let_go_of_ends_after_what_it_held() {
        let (broadcasts, registry, mut outbox) = outbox(10);
        send_one(&broadcasts, &registry, "last");
        registry.remove(1.into(), CloseReason::Stopped);
        assert_eq!(drain(&mut outbox, &mut Bound::all()).0, b"last");
        assert!(!outbox.queue_open);
    }
}
