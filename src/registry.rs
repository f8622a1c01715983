//! The map of live connections, and what each entry knows about its connection.
//!
//! One `parking_lot::RwLock<HashMap>`: publishers take the read lock to push into queues, a
//! connection opening or closing takes the write lock for one insert or remove. Nothing does I/O while
//! holding it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use crossbeam_channel::Sender;
use parking_lot::RwLock;

use crate::event::Event;

/// A connection's id: unique within its handler for the life of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(u64);

impl ConnectionId {
    /// The id as a number.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl From<u64> for ConnectionId {
    fn from(id: u64) -> ConnectionId {
        ConnectionId(id)
    }
}

impl std::fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

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

    /// The event types the client subscribed to with `?event=`, or `None` for all.
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
            Some(types) => {
                let wanted = event.effective_type();
                types.iter().any(|t| t == wanted)
            }
        }
    }
}

/// Why a stream ended, as passed to the close hook and returned by `serve`/`accept`.
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
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CloseReason::ClientGone => "the client went away",
            CloseReason::SendTimeout => "a write timed out",
            CloseReason::SlowClient => "the client fell too far behind",
            CloseReason::Stopped => "stopped by the application",
            CloseReason::ShutDown => "the handler shut down",
        })
    }
}

/// The part of a connection that publishers and the connection thread share.
#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) info: ConnectionInfo,
    /// Events pushed but not yet taken by the connection thread; bounded by `queue_capacity`.
    pub(crate) pending: AtomicUsize,
    /// Set once, by whoever ends the connection first.
    pub(crate) close_reason: OnceLock<CloseReason>,
}

impl Connection {
    pub(crate) fn close_reason(&self) -> Option<&CloseReason> {
        self.close_reason.get()
    }
}

struct Entry<M> {
    connection: Arc<Connection>,
    sender: Sender<M>,
}

/// Result of pushing an event into one connection's queue.
pub(crate) enum Push {
    Queued,
    Full,
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

impl<M: Clone> Registry<M> {
    pub(crate) fn insert(&self, connection: Arc<Connection>, sender: Sender<M>) {
        let id = connection.info.id;
        self.entries.write().insert(id, Entry { connection, sender });
    }

    /// Removes a connection, recording why (unless a reason was already recorded). Dropping its
    /// sender disconnects the queue, which is what tells the connection thread to finish.
    pub(crate) fn remove(&self, id: ConnectionId, reason: CloseReason) -> Option<Arc<Connection>> {
        let entry = self.entries.write().remove(&id)?;
        let _ = entry.connection.close_reason.set(reason);
        Some(entry.connection)
    }

    pub(crate) fn remove_all(&self, reason: CloseReason) -> Vec<Arc<Connection>> {
        let entries: Vec<Entry<M>> = self.entries.write().drain().map(|(_, entry)| entry).collect();
        entries
            .into_iter()
            .map(|entry| {
                let _ = entry.connection.close_reason.set(reason.clone());
                entry.connection
            })
            .collect()
    }

    /// Pushes `message` to every connection for which `wanted` holds; returns how many got it, and
    /// the ids whose queues were full.
    pub(crate) fn broadcast(
        &self,
        message: &M,
        capacity: usize,
        wanted: impl Fn(&ConnectionInfo) -> bool,
    ) -> (usize, Vec<ConnectionId>) {
        let mut queued = 0;
        let mut full = Vec::new();
        for (id, entry) in self.entries.read().iter() {
            if !wanted(&entry.connection.info) {
                continue;
            }
            match push(entry, message, capacity) {
                Push::Queued => queued += 1,
                Push::Full => full.push(*id),
                Push::Gone => {}
            }
        }
        (queued, full)
    }

    pub(crate) fn push_one(&self, id: ConnectionId, message: &M, capacity: usize) -> Option<Push> {
        self.entries.read().get(&id).map(|entry| push(entry, message, capacity))
    }

    pub(crate) fn ids(&self) -> Vec<ConnectionId> {
        let mut ids: Vec<ConnectionId> = self.entries.read().keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    pub(crate) fn info(&self, id: ConnectionId) -> Option<ConnectionInfo> {
        self.entries.read().get(&id).map(|entry| entry.connection.info.clone())
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.read().len()
    }
}

fn push<M: Clone>(entry: &Entry<M>, message: &M, capacity: usize) -> Push {
    let pending = &entry.connection.pending;
    if pending.fetch_add(1, Ordering::AcqRel) >= capacity {
        pending.fetch_sub(1, Ordering::AcqRel);
        return Push::Full;
    }
    match entry.sender.send(message.clone()) {
        Ok(()) => Push::Queued,
        Err(_) => {
            pending.fetch_sub(1, Ordering::AcqRel);
            Push::Gone
        }
    }
}
