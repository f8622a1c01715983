//! The map of live connections, and what each entry knows about its connection.
//!
//! One `parking_lot::RwLock<HashMap>`: publishers take the read lock to push into queues, a
//! connection opening or closing takes the write lock for one insert or remove. Nothing does I/O while
//! holding it.

use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::{Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Condvar, Mutex, RwLock};

use crate::config::OverflowPolicy;
use crate::event::Event;
pub(crate) use crate::id::ConnectionId;

/// What happened when a client asked to resume from a `Last-Event-ID`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Replay {
    /// The client sent no `Last-Event-ID` (and no `lastEventId` query parameter).
    NotAsked,
    /// The id was in the history; the events after it were replayed (`events` of them, after the
    /// `?event=` filter).
    Resumed {
        /// How many events were replayed.
        events: usize,
    },
    /// The id was not in the history (too old, or never issued here). What was replayed follows the
    /// handler's [`UnknownIdPolicy`](crate::UnknownIdPolicy); the stream also starts with a comment
    /// saying so.
    UnknownId {
        /// How many events were replayed.
        events: usize,
    },
}

/// What is known about one connection: who, where from, since when, what it asked for.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    pub(crate) id: ConnectionId,
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) path: String,
    pub(crate) user: Option<String>,
    pub(crate) since: SystemTime,
    pub(crate) event_types: Option<Vec<String>>,
    pub(crate) last_event_id: Option<String>,
    pub(crate) replay: Replay,
}

#[cfg(test)]
impl ConnectionInfo {
    /// A connection with id `id` on `path`, from nowhere, with no user, subscription or resume: what
    /// unit tests register.
    pub(crate) fn for_test(id: u64, path: &str) -> ConnectionInfo {
        ConnectionInfo {
            id: id.into(),
            peer: None,
            path: path.into(),
            user: None,
            since: SystemTime::now(),
            event_types: None,
            last_event_id: None,
            replay: Replay::NotAsked,
        }
    }
}

impl ConnectionInfo {
    /// The connection's id, for [`SseHandler::send_one`](crate::SseHandler::send_one) and
    /// [`SseHandler::stop_one`](crate::SseHandler::stop_one).
    pub fn id(&self) -> ConnectionId {
        self.id
    }

    /// The client's address, when known.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// The request path the stream was opened on.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The user the authenticator named, if any.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// When the stream was opened.
    pub fn since(&self) -> SystemTime {
        self.since
    }

    /// The event types the client subscribed to with `?event=` (each once, sorted), or `None` for all.
    pub fn event_types(&self) -> Option<&[String]> {
        self.event_types.as_deref()
    }

    /// The `Last-Event-ID` the client resumed from, if any.
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_event_id.as_deref()
    }

    /// What the resume from `Last-Event-ID` found.
    pub fn replay(&self) -> Replay {
        self.replay
    }

    /// Whether an event of this type goes to this connection.
    pub(crate) fn wants(&self, event: &Event) -> bool {
        match &self.event_types {
            None => true,
            // Sorted and without repeats when the handler made them (see `subscription`).
            Some(types) => types.binary_search_by(|t| t.as_str().cmp(event.effective_type())).is_ok(),
        }
    }
}

/// Why a stream ended, as passed to the close hook and returned by `serve`/`accept`.
///
/// ```
/// use std::sync::mpsc;
/// use std::time::Duration;
/// use sse_handler::{CloseReason, Config, Request, SseHandler};
///
/// let (opened, ids) = mpsc::channel();
/// let handler = SseHandler::builder(Config::default())
///     .on_connect(move |conn| {
///         let _ = opened.send(conn.info().id());
///     })
///     .on_close(|info, reason| match reason {
///         CloseReason::SlowClient | CloseReason::SendTimeout => {
///             log::warn!("stream {} could not keep up: {reason}", info.id())
///         }
///         other => log::debug!("stream {} ended: {other}", info.id()),
///     })
///     .build()?;
///
/// // A stream (into a Vec here; a client's socket in real life), ended by the application.
/// let serving = {
///     let handler = handler.clone();
///     std::thread::spawn(move || handler.accept_writer(Vec::new(), &Request::new("GET", "/events")))
/// };
/// let id = ids.recv_timeout(Duration::from_secs(10))?;
/// handler.stop_one(id)?;
/// assert_eq!(serving.join().unwrap()?, Some(CloseReason::Stopped));
/// assert_eq!(CloseReason::Stopped.to_string(), "stopped by the application");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The client closed the connection, or a write to it failed.
    ClientGone,
    /// A write blocked longer than the send timeout: the client stopped reading.
    SendTimeout,
    /// The client fell `queue_capacity` events behind and was dropped.
    SlowClient,
    /// [`SseHandler::stop_one`](crate::SseHandler::stop_one) ended it.
    Stopped,
    /// The handler or its server was shut down.
    ShutDown,
    /// The stream reached the handler's maximum lifetime; the client resumes by `Last-Event-ID`.
    MaxLifetime,
    /// The connect hook panicked.
    HookPanicked,
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CloseReason::ClientGone => "the client went away",
            CloseReason::SendTimeout => "a write timed out",
            CloseReason::SlowClient => "the client fell too far behind",
            CloseReason::Stopped => "stopped by the application",
            CloseReason::ShutDown => "the handler shut down",
            CloseReason::MaxLifetime => "the stream reached its maximum lifetime",
            CloseReason::HookPanicked => "the connect hook panicked",
        })
    }
}

/// How much may wait in one connection's queue.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QueueLimits {
    pub(crate) messages: usize,
    pub(crate) bytes: usize,
    pub(crate) overflow: OverflowPolicy,
}

impl QueueLimits {
    /// No bound: for messages that must never be refused (a close frame, a connect hook's greeting).
    pub(crate) const UNBOUNDED: QueueLimits =
        QueueLimits { messages: usize::MAX, bytes: usize::MAX, overflow: OverflowPolicy::Disconnect };
}

/// Something that can wait in a connection's queue: its size counts against the byte bound.
pub(crate) trait Queued: Clone {
    fn queued_size(&self) -> usize;
}

impl Queued for Event {
    fn queued_size(&self) -> usize {
        self.as_bytes().len()
    }
}

/// Counters of one connection.
#[derive(Debug, Default)]
pub(crate) struct ConnectionCounters {
    pub(crate) sent: AtomicU64,
    pub(crate) dropped: AtomicU64,
    /// Dropped since the connection thread last looked, so it can tell the client.
    pub(crate) dropped_unreported: AtomicU64,
    pub(crate) heartbeats: AtomicU64,
}

/// A snapshot of one connection's counters, from
/// [`SseHandler::connection_stats`](crate::SseHandler::connection_stats).
///
/// ```
/// use sse_handler::{Config, SseHandler};
///
/// let handler = SseHandler::new(Config::default())?;
/// // Which clients lag behind, and by how much.
/// for id in handler.connection_ids() {
///     let Some(stats) = handler.connection_stats(id) else { continue }; // closed meanwhile
///     if stats.queued > 100 {
///         println!("{id}: {} sent, {} waiting ({} bytes)", stats.sent, stats.queued, stats.queued_bytes);
///     }
/// }
/// # Ok::<(), sse_handler::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ConnectionStats {
    /// Messages written to the client (replay and live; heartbeats not included).
    pub sent: u64,
    /// Messages dropped from its queue under [`OverflowPolicy::DropOldest`].
    pub dropped: u64,
    /// Heartbeats written.
    pub heartbeats: u64,
    /// Messages waiting in its queue now.
    pub queued: usize,
    /// Bytes waiting in its queue now.
    pub queued_bytes: usize,
}

/// The part of a connection that publishers, the registry and the connection thread share.
#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) info: ConnectionInfo,
    /// Messages pushed but not yet taken by the connection thread, and their bytes.
    pub(crate) pending: AtomicUsize,
    pub(crate) pending_bytes: AtomicUsize,
    /// Set once, by whoever ends the connection first.
    pub(crate) close_reason: OnceLock<CloseReason>,
    /// Where an event stream stops reading the log once it is stopped: the log's head when the
    /// application stopped it, so that what is published afterwards is not written to it.
    pub(crate) stop_position: OnceLock<u64>,
    pub(crate) counters: ConnectionCounters,
    /// The socket, when the handler owns it, so a stop or shutdown can end a write that is stuck.
    pub(crate) socket: Option<Arc<TcpStream>>,
    finished: Mutex<bool>,
    finished_signal: Condvar,
    /// The thread that serves the connection. Waking it with `unpark` costs one futex call, and
    /// nothing when it is not parked.
    thread: Thread,
}

impl Connection {
    /// A connection served by the calling thread.
    pub(crate) fn new(info: ConnectionInfo, socket: Option<Arc<TcpStream>>) -> Connection {
        Connection::served_by(info, socket, std::thread::current())
    }

    /// A connection whose messages `thread` writes: the one [`wake_now`](Connection::wake_now)
    /// unparks.
    #[cfg_attr(not(feature = "websocket"), allow(dead_code))] // a WebSocket connection's writer thread
    pub(crate) fn served_by(
        info: ConnectionInfo,
        socket: Option<Arc<TcpStream>>,
        thread: Thread,
    ) -> Connection {
        Connection {
            info,
            pending: AtomicUsize::new(0),
            pending_bytes: AtomicUsize::new(0),
            close_reason: OnceLock::new(),
            stop_position: OnceLock::new(),
            counters: ConnectionCounters::default(),
            socket,
            finished: Mutex::new(false),
            finished_signal: Condvar::new(),
            thread,
        }
    }

    /// Wakes the connection's thread whatever it is doing: its queue has something, or is closed.
    pub(crate) fn wake_now(&self) {
        self.thread.unpark();
    }

    pub(crate) fn close_reason(&self) -> Option<&CloseReason> {
        self.close_reason.get()
    }

    /// The connection thread took a message of `size` bytes off its queue.
    pub(crate) fn taken(&self, size: usize) {
        self.taken_many(1, size);
    }

    /// The connection thread took `messages` messages of `bytes` bytes in all off its queue.
    pub(crate) fn taken_many(&self, messages: usize, bytes: usize) {
        self.pending.fetch_sub(messages, Ordering::AcqRel);
        self.pending_bytes.fetch_sub(bytes, Ordering::AcqRel);
    }

    pub(crate) fn stats(&self) -> ConnectionStats {
        ConnectionStats {
            sent: self.counters.sent.load(Ordering::Relaxed),
            dropped: self.counters.dropped.load(Ordering::Relaxed),
            heartbeats: self.counters.heartbeats.load(Ordering::Relaxed),
            queued: self.pending.load(Ordering::Relaxed),
            queued_bytes: self.pending_bytes.load(Ordering::Relaxed),
        }
    }

    /// Marks the connection's thread as done with it (called once, on the way out).
    pub(crate) fn mark_finished(&self) {
        *self.finished.lock() = true;
        self.finished_signal.notify_all();
    }

    /// Waits until the connection's thread is done with it; false if `deadline` came first.
    pub(crate) fn wait_finished(&self, deadline: Instant) -> bool {
        let mut finished = self.finished.lock();
        while !*finished {
            if self.finished_signal.wait_until(&mut finished, deadline).timed_out() {
                return *finished;
            }
        }
        true
    }

    /// Ends a stuck write (or read) on the socket, if the handler owns one.
    pub(crate) fn force_close(&self) -> bool {
        self.socket.as_ref().is_some_and(|socket| socket.shutdown(Shutdown::Both).is_ok())
    }

    fn is_over(&self, limits: &QueueLimits, size: usize) -> bool {
        let pending = self.pending.load(Ordering::Acquire);
        // One message is always let in, however large, or a big event could never be sent at all.
        pending >= limits.messages
            || (pending > 0 && self.pending_bytes.load(Ordering::Acquire) + size > limits.bytes)
    }
}

struct Entry<M> {
    connection: Arc<Connection>,
    sender: Sender<M>,
    /// A second receiving end, so that the publisher can drop the oldest message under
    /// [`OverflowPolicy::DropOldest`].
    receiver: Receiver<M>,
}

impl<M> Entry<M> {
    /// Drops the queue's sending end (so the thread sees it disconnected once drained) and wakes the
    /// thread to notice.
    fn close(self) -> Arc<Connection> {
        let Entry { connection, sender, receiver } = self;
        drop(sender);
        drop(receiver);
        connection.wake_now();
        connection
    }
}

/// Result of pushing a message into one connection's queue.
pub(crate) enum Push {
    /// Queued, after dropping this many older messages to make room.
    Queued { dropped: usize },
    /// The queue is full and the policy is to disconnect.
    Full,
    /// The connection is closing.
    Gone,
}

/// The live connections of one handler, each with the sending end of its queue of `M` (events for
/// SSE, messages for WebSocket).
pub(crate) struct Registry<M> {
    entries: RwLock<HashMap<ConnectionId, Entry<M>>>,
}

impl<M> Default for Registry<M> {
    fn default() -> Self {
        Registry { entries: RwLock::new(HashMap::new()) }
    }
}

impl<M> std::fmt::Debug for Registry<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("connections", &self.entries.read().len()).finish()
    }
}

impl<M: Queued> Registry<M> {
    /// Registers a connection with its queue (made beforehand: see [`Queue`]) and returns the queue's
    /// receiving end.
    pub(crate) fn insert(&self, connection: Arc<Connection>, queue: Queue<M>) -> Receiver<M> {
        let Queue(sender, receiver) = queue;
        let id = connection.info.id;
        let entry = Entry { connection, sender, receiver: receiver.clone() };
        self.entries.write().insert(id, entry);
        receiver
    }

    /// Removes a connection, recording why (unless a reason was already recorded). Dropping its
    /// sender disconnects the queue, which is what tells the connection thread to finish.
    pub(crate) fn remove(&self, id: ConnectionId, reason: CloseReason) -> Option<Arc<Connection>> {
        self.remove_at(id, reason, u64::MAX)
    }

    /// As [`remove`](Registry::remove), recording the log position where the stream stops.
    pub(crate) fn remove_at(
        &self,
        id: ConnectionId,
        reason: CloseReason,
        position: u64,
    ) -> Option<Arc<Connection>> {
        let entry = self.entries.write().remove(&id)?;
        let _ = entry.connection.stop_position.set(position);
        let _ = entry.connection.close_reason.set(reason);
        Some(entry.close())
    }

    /// Removes every connection, recording why and the log position where the streams stop.
    pub(crate) fn remove_all(&self, reason: CloseReason, position: u64) -> Vec<Arc<Connection>> {
        let entries: Vec<Entry<M>> = self.entries.write().drain().map(|(_, entry)| entry).collect();
        entries
            .into_iter()
            .map(|entry| {
                let _ = entry.connection.stop_position.set(position);
                let _ = entry.connection.close_reason.set(reason.clone());
                entry.close()
            })
            .collect()
    }

    #[cfg(feature = "websocket")]
    /// Pushes `message` to every connection and wakes their threads; returns how many got it, how
    /// many older messages were dropped to make room, and the ids whose queues were full.
    pub(crate) fn broadcast(&self, message: &M, limits: &QueueLimits) -> Broadcast {
        let entries = self.entries.read();
        let mut result = Broadcast::default();
        for (id, entry) in entries.iter() {
            match push(entry, message, limits) {
                Push::Queued { dropped } => {
                    result.queued += 1;
                    result.dropped += dropped;
                }
                Push::Full => result.full.push(*id),
                Push::Gone => {}
            }
        }
        result
    }

    pub(crate) fn push_one(&self, id: ConnectionId, message: &M, limits: &QueueLimits) -> Option<Push> {
        self.entries.read().get(&id).map(|entry| push(entry, message, limits))
    }

    /// Wakes every connection's thread, to look at its settings again.
    pub(crate) fn wake_all(&self) {
        for entry in self.entries.read().values() {
            entry.connection.wake_now();
        }
    }

    pub(crate) fn ids(&self) -> Vec<ConnectionId> {
        let mut ids: Vec<ConnectionId> = self.entries.read().keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    pub(crate) fn get(&self, id: ConnectionId) -> Option<Arc<Connection>> {
        self.entries.read().get(&id).map(|entry| Arc::clone(&entry.connection))
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.read().len()
    }
}

/// A connection's queue, made before the connection registers. Making it takes some 700 bytes of
/// stack (the channel is built there, then moved to the heap); made near the top of a connection
/// thread's stack rather than at the bottom of its setup, it keeps that setup within two pages, the
/// pages that stay resident for the life of the thread.
pub(crate) struct Queue<M>(Sender<M>, Receiver<M>);

impl<M> Queue<M> {
    #[inline(never)]
    pub(crate) fn new() -> Queue<M> {
        let (sender, receiver) = crossbeam_channel::unbounded();
        Queue(sender, receiver)
    }
}

/// What one broadcast did.
#[cfg(feature = "websocket")]
#[derive(Debug, Default)]
pub(crate) struct Broadcast {
    pub(crate) queued: usize,
    pub(crate) dropped: usize,
    pub(crate) full: Vec<ConnectionId>,
}

fn push<M: Queued>(entry: &Entry<M>, message: &M, limits: &QueueLimits) -> Push {
    let connection = &entry.connection;
    let size = message.queued_size();
    let mut dropped = 0;
    while connection.is_over(limits, size) {
        if limits.overflow == OverflowPolicy::Disconnect {
            return Push::Full;
        }
        match entry.receiver.try_recv() {
            Ok(oldest) => {
                connection.taken(oldest.queued_size());
                dropped += 1;
            }
            // The connection thread has just taken them; the counters will catch up.
            Err(_) => break,
        }
    }
    connection.pending.fetch_add(1, Ordering::AcqRel);
    connection.pending_bytes.fetch_add(size, Ordering::AcqRel);
    if entry.sender.send(message.clone()).is_err() {
        connection.taken(size);
        return Push::Gone;
    }
    connection.wake_now();
    if dropped > 0 {
        let dropped_u64 = dropped as u64;
        connection.counters.dropped.fetch_add(dropped_u64, Ordering::Relaxed);
        connection.counters.dropped_unreported.fetch_add(dropped_u64, Ordering::Relaxed);
    }
    Push::Queued { dropped }
}

#[cfg(test)]
mod tests {

    use super::*;

    fn info(id: u64) -> ConnectionInfo {
        ConnectionInfo::for_test(id, "/")
    }

    fn limits(messages: usize, bytes: usize, overflow: OverflowPolicy) -> QueueLimits {
        QueueLimits { messages, bytes, overflow }
    }

    #[test]
    fn disconnect_policy_reports_a_full_queue_by_count_and_by_bytes() {
        let registry = Registry::<Event>::default();
        let connection = Arc::new(Connection::new(info(1), None));
        let _queue = registry.insert(Arc::clone(&connection), Queue::new());
        let by_count = limits(2, usize::MAX, OverflowPolicy::Disconnect);
        assert!(matches!(
            registry.push_one(1.into(), &Event::data("a"), &by_count),
            Some(Push::Queued { dropped: 0 })
        ));
        assert!(matches!(
            registry.push_one(1.into(), &Event::data("b"), &by_count),
            Some(Push::Queued { dropped: 0 })
        ));
        assert!(matches!(registry.push_one(1.into(), &Event::data("c"), &by_count), Some(Push::Full)));

        let by_bytes = limits(100, 20, OverflowPolicy::Disconnect);
        let other = Arc::new(Connection::new(info(2), None));
        let _other_queue = registry.insert(Arc::clone(&other), Queue::new());
        let big = Event::data("x".repeat(64));
        // A single large message is let in when the queue is empty; a second is not.
        assert!(matches!(registry.push_one(2.into(), &big, &by_bytes), Some(Push::Queued { .. })));
        assert!(matches!(registry.push_one(2.into(), &Event::data("y"), &by_bytes), Some(Push::Full)));
        assert_eq!(other.stats().queued_bytes, big.as_bytes().len());
    }

    #[test]
    fn drop_oldest_policy_keeps_the_newest() {
        let registry = Registry::<Event>::default();
        let connection = Arc::new(Connection::new(info(1), None));
        let queue = registry.insert(Arc::clone(&connection), Queue::new());
        let limits = limits(3, usize::MAX, OverflowPolicy::DropOldest);
        for n in 0..10 {
            registry.push_one(1.into(), &Event::data(n.to_string()), &limits);
        }
        let kept: Vec<Event> = queue.try_iter().collect();
        assert_eq!(kept, [Event::data("7"), Event::data("8"), Event::data("9")]);
        assert_eq!(connection.stats().dropped, 7);
        assert_eq!(connection.counters.dropped_unreported.load(Ordering::Relaxed), 7);
    }

    #[test]
    fn removal_disconnects_the_queue_after_what_was_queued() {
        let registry = Registry::<Event>::default();
        let queue = registry.insert(Arc::new(Connection::new(info(1), None)), Queue::new());
        let limits = limits(10, usize::MAX, OverflowPolicy::Disconnect);
        registry.push_one(1.into(), &Event::data("last"), &limits);
        let removed = registry.remove(1.into(), CloseReason::Stopped).unwrap();
        assert_eq!(removed.close_reason(), Some(&CloseReason::Stopped));
        assert_eq!(queue.recv().unwrap(), Event::data("last"));
        assert!(queue.recv().is_err(), "disconnected once drained");
        assert!(registry.push_one(1.into(), &Event::data("x"), &limits).is_none());
    }
}
