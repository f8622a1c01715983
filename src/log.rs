//! The event log: the one place broadcast events live. Publishing appends to it; every connection
//! is a cursor into it that reads from its position to the head, at its own pace.
//!
//! A reader that falls behind costs its cursor, not a queue of what it lacks. It loses events only
//! if they leave the log (the log is bounded by count, bytes and age) before it reads them; it then
//! learns so from [`EventLog::read`] and the handler applies its
//! [`OverflowPolicy`](crate::OverflowPolicy). A client resuming with `Last-Event-ID` is a cursor
//! placed right after that event, so replay and live delivery are one path, without a gap or a
//! duplicate.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::error::Result;
use crate::event::Event;
use crate::health::Health;
use crate::wait::{WaitList, Waiter};

/// Where broadcast events live, in publish order, and how readers follow them.
///
/// Positions are numbers that grow with every appended event and never repeat within a log
/// ([`MemoryLog`]'s grow by one; a log fed from elsewhere may derive them from that source's ids). A
/// reader keeps the position of the next event it wants and calls [`read`](EventLog::read) from it;
/// when it has caught up with the [`head`](EventLog::head), it [`wait`](EventLog::wait)s for the head
/// to move.
///
/// [`MemoryLog`] is the implementation every handler uses unless given another. An implementation
/// shared by several server instances keeps its own order and ids (a log server's) and feeds a
/// `MemoryLog` of each instance from it, whose reading and waking it passes through.
///
/// ```
/// use sse_handler::{Event, EventLog, MemoryLog};
///
/// let log = MemoryLog::new(100);
/// let start = log.head();
/// let first = log.append(Event::data("one"), true)?;
/// log.append(Event::data("two"), true)?;
///
/// // A client that saw the first event resumes right after it.
/// let mut cursor = log.position_after(first.id().unwrap()).expect("still in the log");
/// let mut read = Vec::new();
/// cursor = log
///     .read(cursor, &mut |event| {
///         read.push(event.clone());
///         true
///     })
///     .expect("nothing fell off the log");
/// assert_eq!(read.len(), 1);
/// assert!(read[0].as_bytes().ends_with(b"data: two\n\n"));
/// assert_eq!((cursor, log.head()), (start + 2, start + 2));
/// # Ok::<(), sse_handler::Error>(())
/// ```
pub trait EventLog: Send + Sync + 'static {
    /// Appends a broadcast event and returns it as stored. When `number` is set and the event has
    /// data but no id, the log gives it one, greater than every id it gave before (and than those an
    /// earlier log, in an earlier process, gave).
    ///
    /// # Errors
    /// The log could not store the event; nothing was appended. [`MemoryLog`] never fails.
    fn append(&self, event: Event, number: bool) -> Result<Event>;

    /// The position the next appended event will take: a reader at this position has read all.
    fn head(&self) -> u64;

    /// The position of the oldest event a reader can still get (the head, when the log is empty).
    fn oldest(&self) -> u64;

    /// How many events the log holds from position `from` to its head.
    fn count_from(&self, from: u64) -> usize;

    /// Where a client that last saw the event with this id resumes: the position right after it.
    /// `None` when the log does not hold such an event (too old, from another log, never issued).
    /// If several events share the id, the latest counts.
    fn position_after(&self, last_event_id: &str) -> Option<u64>;

    /// Hands the events from position `from` on to `visit`, oldest first, until `visit` returns
    /// `false` (that event is not consumed) or the head is reached, and returns the position to read
    /// from next. `visit` runs while the log is locked for reading: it should only copy.
    ///
    /// # Errors
    /// [`FellBehind`] when events from `from` on have already left the log.
    fn read(&self, from: u64, visit: &mut dyn FnMut(&Event) -> bool) -> std::result::Result<u64, FellBehind>;

    /// Blocks the calling thread, whose `waiter` this is, until the head is past `seen`, `timeout`
    /// passes, or another thread unparks it ([`Thread::unpark`](std::thread::Thread::unpark)); it may
    /// also return for no reason, so callers look at what they wait for again.
    fn wait(&self, seen: u64, waiter: &Arc<Waiter>, timeout: Duration);

    /// Whether [`append`](EventLog::append) can store events now. A log kept elsewhere (a server
    /// that several instances share) answers [`Health::Unavailable`] while it cannot reach it, so
    /// that a health check takes the instance out of a load balancer. The default answers
    /// [`Health::Ready`]: right for a log, such as [`MemoryLog`], whose appends cannot fail.
    fn health(&self) -> Health {
        Health::Ready
    }

    /// How far behind the log it copies this instance's reading is, for a log kept elsewhere: the
    /// time between the newest event there and the newest this instance has read. `None` for a log
    /// that copies nothing (the default), or when it cannot tell just now.
    fn lag(&self) -> Option<Duration> {
        None
    }
}

/// A log shared by several handlers (one after another, say, across a restart of the server) is an
/// `Arc` of one.
impl<L: EventLog + ?Sized> EventLog for Arc<L> {
    fn append(&self, event: Event, number: bool) -> Result<Event> {
        (**self).append(event, number)
    }

    fn head(&self) -> u64 {
        (**self).head()
    }

    fn oldest(&self) -> u64 {
        (**self).oldest()
    }

    fn count_from(&self, from: u64) -> usize {
        (**self).count_from(from)
    }

    fn position_after(&self, last_event_id: &str) -> Option<u64> {
        (**self).position_after(last_event_id)
    }

    fn read(&self, from: u64, visit: &mut dyn FnMut(&Event) -> bool) -> std::result::Result<u64, FellBehind> {
        (**self).read(from, visit)
    }

    fn wait(&self, seen: u64, waiter: &Arc<Waiter>, timeout: Duration) {
        (**self).wait(seen, waiter, timeout);
    }

    fn health(&self) -> Health {
        (**self).health()
    }

    fn lag(&self) -> Option<Duration> {
        (**self).lag()
    }
}

/// The answer of [`EventLog::read`] to a reader whose next events have left the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FellBehind {
    /// The position of the oldest event still in the log, where the reader may go on.
    pub oldest: u64,
    /// How many events it missed: those from its position to `oldest`.
    pub missed: u64,
}

/// Recent events in memory, bounded by count and optionally by bytes and by age.
///
/// Events are shared, not copied: each is encoded once when published. Readers copy from it under
/// a read lock; an append takes the write lock for a push and the evictions it causes.
///
/// Ids it gives ([`EventLog::append`] with `number`) are positions, and positions start at the
/// clock's count of nanoseconds since 1970 when the log is made: they only grow, within a process
/// and from one process to the next, so an id a client kept from an earlier process is never taken
/// for an event of this one.
pub struct MemoryLog {
    ring: Ring<Stored>,
    /// Events whose id the log did not give (the publisher's own): only then must a resume search.
    /// Changed only under the ring's write lock (as events come and go), so a reader holding its read
    /// lock sees the count of what it reads.
    foreign_ids: AtomicUsize,
    max_age: Option<Duration>,
    clock: Box<dyn Fn() -> Instant + Send + Sync>,
}

struct Stored {
    event: Event,
    /// When it was appended, where the log has an age bound.
    at: Option<Instant>,
    numbered: bool,
}

impl Stored {
    fn is_foreign(&self) -> bool {
        !self.numbered && self.event.id().is_some()
    }
}

impl RingItem for Stored {
    fn size(&self) -> usize {
        self.event.as_bytes().len()
    }
}

impl MemoryLog {
    /// A log that keeps the last `capacity` events (at least one).
    pub fn new(capacity: usize) -> MemoryLog {
        let first =
            SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(1, |t| t.as_nanos() as u64);
        MemoryLog {
            ring: Ring::new(first, capacity),
            foreign_ids: AtomicUsize::new(0),
            max_age: None,
            clock: Box::new(Instant::now),
        }
    }

    /// Also keeps at most `bytes` bytes of encoded events, dropping the oldest first. The newest
    /// event is always kept, however large, or readers could not get it at all.
    pub fn max_bytes(mut self, bytes: usize) -> MemoryLog {
        self.ring = self.ring.max_bytes(bytes);
        self
    }

    /// Also drops events older than `age` (as they are appended after), and never resumes a client
    /// from one.
    pub fn max_age(mut self, age: Duration) -> MemoryLog {
        self.max_age = Some(age);
        self
    }

    /// Reads the time from `clock` instead of [`Instant::now`] (for tests of the age bound).
    pub fn with_clock(mut self, clock: impl Fn() -> Instant + Send + Sync + 'static) -> MemoryLog {
        self.clock = Box::new(clock);
        self
    }

    /// The most events it keeps.
    pub fn capacity(&self) -> usize {
        self.ring.capacity()
    }

    /// How many events it holds now.
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// Whether it holds no event.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of encoded events it holds now.
    pub fn bytes(&self) -> usize {
        self.ring.bytes()
    }

    /// Whether `stored` is past the age bound.
    fn expired(&self, stored: &Stored, now: Instant) -> bool {
        match (self.max_age, stored.at) {
            (Some(age), Some(at)) => now.saturating_duration_since(at) > age,
            _ => false,
        }
    }

    /// The position of the oldest event that is not past the age bound.
    fn first_live(&self, items: &Items<Stored>) -> u64 {
        if self.max_age.is_none() {
            return items.tail();
        }
        let now = (self.clock)();
        items.tail() + items.entries.partition_point(|stored| self.expired(stored, now)) as u64
    }
}

impl std::fmt::Debug for MemoryLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let items = self.ring.lock_read();
        f.debug_struct("MemoryLog")
            .field("tail", &items.tail())
            .field("head", &items.head())
            .field("bytes", &items.bytes())
            .field("capacity", &self.ring.capacity())
            .field("max_bytes", &self.ring.max_bytes_bound())
            .field("max_age", &self.max_age)
            .finish_non_exhaustive()
    }
}

impl EventLog for MemoryLog {
    fn append(&self, event: Event, number: bool) -> Result<Event> {
        // The clock is read only for an age bound, and before the lock.
        let now = self.max_age.map(|_| (self.clock)());
        let mut appended = None;
        self.ring.append(
            |position| {
                let numbered = number && event.id().is_none() && event.has_data();
                let event = if numbered { event.with_id(position.to_string()) } else { event };
                appended = Some(event.clone());
                let stored = Stored { event, at: now, numbered };
                self.foreign_ids.fetch_add(usize::from(stored.is_foreign()), Ordering::Relaxed);
                stored
            },
            |oldest| now.is_some_and(|now| self.expired(oldest, now)),
            |dropped| {
                self.foreign_ids.fetch_sub(usize::from(dropped.is_foreign()), Ordering::Relaxed);
            },
        );
        Ok(appended.expect("the ring builds the event it appends"))
    }

    fn head(&self) -> u64 {
        self.ring.head()
    }

    fn oldest(&self) -> u64 {
        self.first_live(&self.ring.lock_read())
    }

    fn count_from(&self, from: u64) -> usize {
        usize::try_from(self.head().saturating_sub(from)).unwrap_or(usize::MAX)
    }

    fn position_after(&self, last_event_id: &str) -> Option<u64> {
        let items = self.ring.lock_read();
        let foreign_ids = self.foreign_ids.load(Ordering::Relaxed);
        let first_live = self.first_live(&items);
        // Ids the log gave are positions: found at once.
        if let Some(position) = last_event_id.parse::<u64>().ok().filter(|p| *p >= first_live) {
            if let Some(stored) = items.get(position) {
                if stored.event.id() == Some(last_event_id) && foreign_ids == 0 {
                    return Some(position + 1);
                }
            }
        }
        if foreign_ids == 0 {
            return None;
        }
        // Publishers' own ids: search from the newest end, where a reconnecting client usually is.
        let live = usize::try_from(first_live - items.tail()).unwrap_or(usize::MAX);
        let found =
            items.entries.range(live..).rposition(|stored| stored.event.id() == Some(last_event_id))?;
        Some(first_live + found as u64 + 1)
    }

    fn read(&self, from: u64, visit: &mut dyn FnMut(&Event) -> bool) -> std::result::Result<u64, FellBehind> {
        let items = self.ring.lock_read();
        items.read(from, |stored| visit(&stored.event)).ok_or_else(|| {
            let oldest = self.first_live(&items);
            FellBehind { oldest, missed: oldest - from }
        })
    }

    fn wait(&self, seen: u64, waiter: &Arc<Waiter>, timeout: Duration) {
        self.ring.wait(seen, waiter, timeout);
    }
}

/// What a [`Ring`] holds: anything that knows its size in bytes, for the ring's byte bound.
pub(crate) trait RingItem {
    /// Its size in bytes.
    fn size(&self) -> usize;
}

impl RingItem for Arc<[u8]> {
    fn size(&self) -> usize {
        self.len()
    }
}

/// Items in the order they were appended, each at a position one greater than the one before, bounded
/// by count and optionally by bytes (the oldest leave first; the newest is always kept), with the
/// readers that wait for the head to move. The in-memory part of [`MemoryLog`] (which holds events
/// and adds ids and an age bound), and the broadcast log of a WebSocket handler (which holds encoded
/// frames).
///
/// Readers read under a read lock, from a position of their own, and copy or share what they read; an
/// append takes the write lock for a push and the evictions it causes, then wakes the readers that
/// wait ([`WaitList`]).
pub(crate) struct Ring<T> {
    /// The standard library's lock, not `parking_lot`'s: under a burst the publisher and the readers
    /// meet on it all the time, and `parking_lot` spins with `sched_yield` before it sleeps, which
    /// with more threads than cores hands the core to another reader that must wait too (2,700
    /// yields in a burst of 60,000 events to 10 readers, and half the delivery rate); the standard
    /// lock spins briefly, then sleeps on a futex until the holder lets go.
    items: RwLock<Items<T>>,
    /// The head, readable without the lock.
    head: AtomicU64,
    waiters: WaitList,
    capacity: usize,
    max_bytes: Option<usize>,
}

/// A [`Ring`]'s items, as its lock guards them.
pub(crate) struct Items<T> {
    entries: VecDeque<T>,
    /// The position of `entries[0]`.
    tail: u64,
    bytes: usize,
}

impl<T> Items<T> {
    /// The position of the oldest item (the head, when there is none).
    pub(crate) fn tail(&self) -> u64 {
        self.tail
    }

    /// The position the next item will take.
    pub(crate) fn head(&self) -> u64 {
        self.tail + self.entries.len() as u64
    }

    /// Bytes of the items held.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The item at `position`, if held.
    pub(crate) fn get(&self, position: u64) -> Option<&T> {
        self.entries.get(usize::try_from(position.checked_sub(self.tail)?).ok()?)
    }

    /// Hands the items from position `from` on to `visit`, oldest first, until `visit` returns `false`
    /// (that item is not consumed) or the head is reached; returns the position to read from next.
    /// `None` when items from `from` on have already left.
    pub(crate) fn read(&self, from: u64, mut visit: impl FnMut(&T) -> bool) -> Option<u64> {
        if from < self.tail {
            return None;
        }
        let mut next = from;
        let start = usize::try_from(from - self.tail).unwrap_or(usize::MAX);
        for item in self.entries.range(start.min(self.entries.len())..) {
            if !visit(item) {
                break;
            }
            next += 1;
        }
        Some(next)
    }

    fn pop_oldest(&mut self) -> Option<T>
    where
        T: RingItem,
    {
        let item = self.entries.pop_front()?;
        self.bytes -= item.size();
        self.tail += 1;
        Some(item)
    }
}

impl<T: RingItem> Ring<T> {
    /// An empty ring whose first item will be at position `first`, keeping the last `capacity` items
    /// (at least one).
    pub(crate) fn new(first: u64, capacity: usize) -> Ring<T> {
        Ring {
            items: RwLock::new(Items {
                entries: VecDeque::with_capacity(capacity.clamp(1, 4096)),
                tail: first,
                bytes: 0,
            }),
            head: AtomicU64::new(first),
            waiters: WaitList::default(),
            capacity: capacity.max(1),
            max_bytes: None,
        }
    }

    /// Also keeps at most `bytes` bytes of items, dropping the oldest first; the newest is always
    /// kept, however large.
    pub(crate) fn max_bytes(mut self, bytes: usize) -> Ring<T> {
        self.max_bytes = Some(bytes);
        self
    }

    /// The most items it keeps.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// The most bytes it keeps, if bounded by bytes.
    pub(crate) fn max_bytes_bound(&self) -> Option<usize> {
        self.max_bytes
    }

    /// How many items it holds now.
    pub(crate) fn len(&self) -> usize {
        self.read_items().entries.len()
    }

    /// Bytes of the items it holds now.
    pub(crate) fn bytes(&self) -> usize {
        self.read_items().bytes
    }

    /// The position the next item will take: a reader there has read all.
    pub(crate) fn head(&self) -> u64 {
        self.head.load(Ordering::SeqCst)
    }

    /// Appends `item` and wakes the readers waiting for it; returns its position.
    #[cfg_attr(not(feature = "websocket"), allow(dead_code))] // the WebSocket broadcast log's
    pub(crate) fn push(&self, item: T) -> u64 {
        self.append(|_| item, |_| false, |_| {})
    }

    /// Appends the item that `make` builds for its position, and wakes the readers waiting for it;
    /// returns that position. Before the push, the oldest items leave while `expired` says so, then
    /// while the ring would be over its bounds with the new item; `dropped` sees each that leaves.
    /// All three run under the write lock.
    pub(crate) fn append(
        &self,
        make: impl FnOnce(u64) -> T,
        expired: impl Fn(&T) -> bool,
        mut dropped: impl FnMut(&T),
    ) -> u64 {
        let position = {
            let mut items = self.write_items();
            // Evictions move the tail, not the head: the position is known before them.
            let position = items.head();
            let item = make(position);
            let size = item.size();
            while items.entries.front().is_some_and(&expired) {
                if let Some(oldest) = items.pop_oldest() {
                    dropped(&oldest);
                }
            }
            while items.entries.len() >= self.capacity
                || self.max_bytes.is_some_and(|max| !items.entries.is_empty() && items.bytes + size > max)
            {
                if let Some(oldest) = items.pop_oldest() {
                    dropped(&oldest);
                }
            }
            items.bytes += size;
            items.entries.push_back(item);
            self.head.store(position + 1, Ordering::SeqCst);
            position
        };
        self.waiters.wake_behind(position + 1);
        position
    }

    /// The items, locked for reading: hold the guard only to copy.
    pub(crate) fn lock_read(&self) -> RwLockReadGuard<'_, Items<T>> {
        self.read_items()
    }

    /// The items for reading. No code panics while holding the lock, and what it guards is
    /// consistent between statements, so a poisoned lock is used as it is.
    fn read_items(&self) -> RwLockReadGuard<'_, Items<T>> {
        self.items.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_items(&self) -> RwLockWriteGuard<'_, Items<T>> {
        self.items.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Blocks the calling thread, whose `waiter` this is, until the head is past `seen`, `timeout`
    /// passes, or the thread is unparked; it may also return for no reason.
    pub(crate) fn wait(&self, seen: u64, waiter: &Arc<Waiter>, timeout: Duration) {
        self.waiters.wait(seen, || self.head(), waiter, timeout);
    }

    /// How many readers are on the wait list.
    #[cfg(test)]
    pub(crate) fn waiting(&self) -> usize {
        self.waiters.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    fn read_all(log: &MemoryLog, from: u64) -> (Vec<Event>, u64) {
        let mut events = Vec::new();
        let next = log.read(from, &mut |event| {
            events.push(event.clone());
            true
        });
        (events, next.expect("not behind"))
    }

    fn data(text: &str) -> Event {
        Event::data(text)
    }

    #[test]
    fn numbered_ids_are_positions_that_start_from_the_clock() {
        let before = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos() as u64;
        let log = MemoryLog::new(10);
        let head = log.head();
        assert!(head >= before, "a later log numbers from later");
        let first = log.append(data("a"), true).unwrap();
        let own = log.append(Event::builder().id("mine").data("b").build().unwrap(), true).unwrap();
        let comment = log.append(Event::comment("c"), true).unwrap();
        let plain = log.append(data("d"), false).unwrap();
        let last = log.append(data("e"), true).unwrap();
        assert_eq!(first.id(), Some(head.to_string().as_str()));
        assert_eq!((own.id(), comment.id(), plain.id()), (Some("mine"), None, None));
        assert_eq!(last.id(), Some((head + 4).to_string().as_str()), "each event takes a position");
        assert_eq!(log.head(), head + 5);
    }

    #[test]
    fn a_client_resumes_right_after_its_id_and_the_latest_duplicate_counts() {
        let log = MemoryLog::new(10);
        let a = log.append(data("a"), true).unwrap();
        log.append(Event::builder().id("x").data("first x").build().unwrap(), true).unwrap();
        log.append(data("b"), true).unwrap();
        log.append(Event::builder().id("x").data("second x").build().unwrap(), true).unwrap();
        log.append(data("c"), true).unwrap();
        let after_a = log.position_after(a.id().unwrap()).unwrap();
        assert_eq!(read_all(&log, after_a).0.len(), 4);
        let after_x = log.position_after("x").unwrap();
        assert_eq!(read_all(&log, after_x).0, [log_event(&log, after_x)]);
        assert_eq!(log.position_after("unknown"), None);
        assert_eq!(log.position_after("1"), None, "a number this log never gave");
    }

    /// The event at `position`.
    fn log_event(log: &MemoryLog, position: u64) -> Event {
        let mut found = None;
        log.read(position, &mut |event| {
            found = Some(event.clone());
            false
        })
        .unwrap();
        found.unwrap()
    }

    #[test]
    fn reading_stops_where_the_reader_says_and_a_reader_left_behind_is_told() {
        let log = MemoryLog::new(3);
        let start = log.head();
        for n in 0..3 {
            log.append(data(&n.to_string()), true).unwrap();
        }
        let mut taken = 0;
        let next = log.read(start, &mut |_| {
            taken += 1;
            taken < 2
        });
        assert_eq!(next, Ok(start + 1), "the refused event is not consumed");
        log.append(data("3"), true).unwrap();
        assert_eq!(log.read(start, &mut |_| true), Err(FellBehind { oldest: start + 1, missed: 1 }));
        let (events, next) = read_all(&log, start + 1);
        let ids: Vec<_> = events.iter().map(|e| e.id().unwrap().to_owned()).collect();
        assert_eq!(ids, [start + 1, start + 2, start + 3].map(|p| p.to_string()));
        assert_eq!(next, start + 4);
    }

    #[test]
    fn the_byte_bound_keeps_the_newest_event_however_large() {
        let log = MemoryLog::new(100).max_bytes(64);
        for n in 0..10 {
            log.append(data(&n.to_string()), false).unwrap();
            assert!(log.bytes() <= 64);
        }
        log.append(data(&"x".repeat(100)), false).unwrap();
        assert_eq!(log.len(), 1, "alone, over the bound");
        log.append(data("y"), false).unwrap();
        assert_eq!(read_all(&log, log.oldest()).0, [data("y")]);
    }

    /// Waits on `log` from a thread of its own; returns when the wait ends.
    fn waiting(log: &Arc<MemoryLog>, seen: u64) -> std::thread::JoinHandle<()> {
        let log = Arc::clone(log);
        std::thread::spawn(move || log.wait(seen, &Waiter::current(), Duration::from_secs(3600)))
    }

    /// Waits (bounded) until `n` readers are on the wait list.
    fn until_listed(log: &MemoryLog, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while log.ring.waiting() < n {
            assert!(Instant::now() < deadline, "{} of {n} waiting", log.ring.waiting());
            std::thread::yield_now();
        }
    }

    #[test]
    fn a_wait_ends_at_once_if_the_head_has_moved_and_at_its_timeout_otherwise() {
        let log = MemoryLog::new(10);
        let seen = log.head();
        log.append(data("a"), true).unwrap();
        log.wait(seen, &Waiter::current(), Duration::from_secs(3600));
        let started = Instant::now();
        log.wait(log.head(), &Waiter::current(), Duration::from_millis(20));
        assert!(started.elapsed() >= Duration::from_millis(20));
    }

    #[test]
    fn one_publish_wakes_every_waiting_reader_however_many() {
        let log = Arc::new(MemoryLog::new(10));
        let seen = log.head();
        // More than the publisher wakes itself: the rest are woken by the readers it woke.
        let readers: Vec<_> =
            (0..3 * crate::wait::FANOUT * crate::wait::FANOUT).map(|_| waiting(&log, seen)).collect();
        until_listed(&log, readers.len());
        log.append(data("a"), true).unwrap();
        assert_eq!(log.ring.waiting(), 0, "all taken off the list at once");
        for reader in readers {
            reader.join().unwrap();
        }
    }

    #[test]
    fn waiters_that_are_gone_are_swept_out() {
        let log = MemoryLog::new(10);
        let head = log.head();
        for _ in 0..1000 {
            // Connections that waited, then closed without the log ever moving.
            log.wait(head, &Waiter::current(), Duration::from_micros(1));
        }
        assert!(log.ring.waiting() < 200, "{} entries kept", log.ring.waiting());
    }

    #[test]
    fn a_ring_of_other_items_has_the_same_bounds_and_tells_a_reader_left_behind() {
        let ring: Ring<Arc<[u8]>> = Ring::new(0, 3).max_bytes(10);
        let frame = |len: usize| -> Arc<[u8]> { vec![b'f'; len].into() };
        assert_eq!((ring.push(frame(2)), ring.push(frame(2)), ring.push(frame(2))), (0, 1, 2));
        ring.push(frame(2));
        assert_eq!((ring.len(), ring.bytes()), (3, 6), "by count");
        assert_eq!(ring.lock_read().read(0, |_| true), None, "position 0 has left");
        ring.push(frame(7));
        assert_eq!((ring.len(), ring.bytes()), (2, 9), "by bytes");
        let mut sizes = Vec::new();
        let next = ring.lock_read().read(3, |item| {
            sizes.push(item.len());
            true
        });
        assert_eq!((next, sizes), (Some(5), vec![2, 7]));
        ring.push(frame(40));
        assert_eq!((ring.len(), ring.head()), (1, 6), "the newest is kept, however large");
    }

    #[test]
    fn a_reader_is_listed_once_per_head_however_often_it_waits() {
        let log = MemoryLog::new(10);
        let waiter = Waiter::current();
        for _ in 0..10 {
            log.wait(log.head(), &waiter, Duration::from_micros(1));
        }
        assert_eq!(log.ring.waiting(), 1);
    }
}
