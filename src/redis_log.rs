//! An event log on a Redis Stream, shared by every instance that connects to the same stream.
//!
//! Publishing is an `XADD`; one tail thread per instance follows the stream with `XREAD BLOCK` and
//! copies what it reads into a window of recent events in memory, from which the instance's
//! connections read as from a [`MemoryLog`](crate::MemoryLog). Every instance thus delivers one
//! order, the stream's, its own publishes included. Older events are read from Redis with `XRANGE`,
//! a page at a time.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::{Condvar, Mutex, RwLock};
use redis::Value;

use crate::error::{Error, Result};
use crate::event::Event;
use crate::health::Health;
use crate::log::{EventLog, FellBehind};
use crate::wait::{WaitList, Waiter};

/// Bits of a position that hold an entry id's sequence number; the milliseconds take the rest.
const SEQ_BITS: u32 = 20;
/// The largest millisecond part a position can hold (the year 2248), so that positions stay below
/// `2^63`.
const MAX_MS: u64 = (1 << (63 - SEQ_BITS)) - 1;

/// How a [`RedisLog`] bounds the stream and its own memory, and how long it waits for Redis.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    max_len: usize,
    local_capacity: usize,
    connect_timeout: Duration,
    io_timeout: Duration,
    block: Duration,
    page: usize,
    pool_size: usize,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            max_len: 10_000,
            local_capacity: 10_000,
            connect_timeout: Duration::from_secs(2),
            io_timeout: Duration::from_secs(2),
            block: Duration::from_secs(1),
            page: 256,
            pool_size: 4,
        }
    }
}

impl RedisOptions {
    /// About how many entries the stream keeps (`XADD MAXLEN ~`): Redis trims whole nodes, so it
    /// may keep up to about a hundred more. Default 10,000; at least 1.
    pub fn max_len(mut self, entries: usize) -> Self {
        self.max_len = entries.max(1);
        self
    }

    /// How many recent events each instance keeps in memory (older ones are read from Redis).
    /// Default 10,000; at least 1.
    pub fn local_capacity(mut self, events: usize) -> Self {
        self.local_capacity = events.max(1);
        self
    }

    /// How long opening a connection to Redis may take. Default 2 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// How long one command's reply (or one write) may take before the connection is given up.
    /// Default 2 s.
    pub fn io_timeout(mut self, timeout: Duration) -> Self {
        self.io_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// How long the tail's `XREAD BLOCK` waits for new entries before it asks again (its socket
    /// waits this plus the I/O timeout). Default 1 s.
    pub fn block(mut self, block: Duration) -> Self {
        self.block = block.max(Duration::from_millis(1));
        self
    }

    /// How many entries one `XRANGE` fetches when older events are read from Redis. Default 256.
    pub fn page(mut self, entries: usize) -> Self {
        self.page = entries.max(1);
        self
    }

    /// How many idle connections are kept for appends and reads from Redis (the tail has its own).
    /// Default 4.
    pub fn pool_size(mut self, connections: usize) -> Self {
        self.pool_size = connections.max(1);
        self
    }
}

/// An [`EventLog`] on a Redis Stream: every instance connected to the same stream delivers the same
/// events, in the same order, with the same ids, and resumes a client from any of them.
///
/// - **Ids.** An event's id is its stream entry id (`1718000000000-0`: digits and `-`, CORS-safe),
///   given whatever [`Config::auto_ids`](crate::Config::auto_ids) says, since a client resumes by
///   it. An event that already has an id is refused ([`Error::BadRequest`]).
/// - **Positions** are `ms << 20 | seq` of the entry id: they grow with the stream but not by one.
///   This holds while the sequence part stays below 2^20 (Redis gives more than a million entries in
///   one millisecond to no one) and the milliseconds below 2^43 (the year 2248); an entry beyond
///   either, written by another producer, is skipped with an error logged.
/// - **Delivery.** [`append`](EventLog::append) is an `XADD` that returns once this instance's tail
///   has read the entry back (or after the I/O timeout), so what the handler publishes next, to all
///   or to one, comes after it. Other instances get it through their own tails.
/// - **Resume.** An id in the local window is found there; an older one is looked up in Redis
///   (`XRANGE id id`) and its successors read from there. An id the stream no longer holds, or one
///   from before a reset, is unknown.
/// - **Reset.** A key beside the stream (`<key>:epoch`) holds a random value set by the first
///   instance to find it missing. When the tail finds it changed (Redis restarted empty, a failover
///   to a replica without it, the keys deleted), or its last entry gone from the stream, it drops
///   its window and reads the new stream from its start: old ids are then unknown, delivery goes on.
/// - **Faults.** While Redis is unreachable, `append` fails with [`Error::LogUnavailable`] (nothing
///   is published locally: that would fork the order); the tail reconnects with backoff (50 ms
///   doubling to 2 s) and resumes from its last entry; streams stay open with their heartbeats.
///   [`health`](EventLog::health) answers [`Health::Unavailable`] while the tail is cut off, so
///   that a health check takes the instance out of a load balancer.
///   An append whose reply timed out after Redis applied it is in the stream: retrying it publishes
///   it twice. A pooled connection that Redis closed while it was idle (a restart, an idle timeout)
///   is replaced, and the command sent again on the new one.
/// - **Connections** to Redis per instance: one for the tail and at most
///   [`pool_size`](RedisOptions::pool_size) for appends and reads, whatever the number of clients.
///
/// A reader that falls below the stream's oldest entry is told [`FellBehind`] with `missed` at
/// least 1: Redis does not say how many entries it trimmed. One whose last event was itself the
/// last one trimmed is told so too, though it lost nothing.
pub struct RedisLog {
    shared: Arc<Shared>,
    tail: Option<JoinHandle<()>>,
}

struct Shared {
    client: redis::Client,
    key: String,
    epoch_key: String,
    options: RedisOptions,
    window: RwLock<Window>,
    /// The window's head, readable without its lock.
    head: AtomicU64,
    waiters: WaitList,
    pool: Mutex<Vec<redis::Connection>>,
    stop: AtomicBool,
    commits: GroupCommit,
    /// Why the tail has no connection to Redis now; `None` while it follows the stream.
    tail_failure: Mutex<Option<String>>,
}

/// Appends waiting to be sent. Whoever finds no append in flight sends all that wait, in one
/// pipeline, and hands each caller its answer: concurrent publishers share round trips.
#[derive(Default)]
struct GroupCommit {
    state: Mutex<CommitState>,
    answered: Condvar,
    round_trips: AtomicU64,
}

#[derive(Default)]
struct CommitState {
    waiting: Vec<(u64, Fields)>,
    answers: HashMap<u64, std::result::Result<String, String>>,
    next_ticket: u64,
    sending: bool,
}

/// The recent part of the stream, as the tail read it: a contiguous run of entries.
struct Window {
    entries: VecDeque<(u64, Event)>,
    /// Every entry of the stream at or above this position is in `entries` (or still to come).
    covered_from: u64,
    /// The entry id the tail reads after.
    last_id: StreamId,
    /// The epoch the tail last saw.
    epoch: Option<String>,
}

impl Window {
    fn head(&self) -> u64 {
        self.entries.back().map_or(self.covered_from, |(position, _)| position + 1).max(self.covered_from)
    }

    fn index_of(&self, position: u64) -> usize {
        self.entries.partition_point(|(p, _)| *p < position)
    }
}

/// A stream entry id, `ms-seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct StreamId {
    ms: u64,
    seq: u64,
}

impl StreamId {
    const ZERO: StreamId = StreamId { ms: 0, seq: 0 };

    /// Parses `digits-digits` strictly.
    fn parse(text: &str) -> Option<StreamId> {
        let (ms, seq) = text.split_once('-')?;
        let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(ms) || !digits(seq) {
            return None;
        }
        Some(StreamId { ms: ms.parse().ok()?, seq: seq.parse().ok()? })
    }

    /// Its log position, when it has one.
    fn position(self) -> Option<u64> {
        (self.ms <= MAX_MS && self.seq < 1 << SEQ_BITS).then_some(self.ms << SEQ_BITS | self.seq)
    }

    /// The id of a position.
    fn at(position: u64) -> StreamId {
        StreamId { ms: position >> SEQ_BITS, seq: position & ((1 << SEQ_BITS) - 1) }
    }

    fn text(self) -> String {
        format!("{}-{}", self.ms, self.seq)
    }
}

impl RedisLog {
    /// Connects to Redis at `url` (`redis://host:port/db`) and follows the stream `stream_key`
    /// from its newest entry on. A handler takes it with
    /// [`HandlerBuilder::log`](crate::HandlerBuilder::log).
    ///
    /// # Errors
    /// [`Error::LogUnavailable`] when the URL is not valid or Redis cannot be reached.
    pub fn connect(url: &str, stream_key: &str, options: RedisOptions) -> Result<RedisLog> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        let shared = Arc::new(Shared {
            client,
            key: stream_key.to_owned(),
            epoch_key: format!("{stream_key}:epoch"),
            options,
            window: RwLock::new(Window {
                entries: VecDeque::new(),
                covered_from: 1,
                last_id: StreamId::ZERO,
                epoch: None,
            }),
            head: AtomicU64::new(1),
            waiters: WaitList::default(),
            pool: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            commits: GroupCommit::default(),
            tail_failure: Mutex::new(None),
        });
        let mut connection = shared.open(shared.options.io_timeout)?;
        let epoch = shared.current_epoch(&mut connection).map_err(unavailable)?;
        let last = last_entry(&mut connection, &shared.key).map_err(unavailable)?.unwrap_or(StreamId::ZERO);
        {
            let mut window = shared.window.write();
            window.last_id = last;
            window.covered_from = last.position().unwrap_or(0) + 1;
            window.epoch = Some(epoch);
            shared.head.store(window.head(), Ordering::SeqCst);
        }
        shared.give_back(connection);
        let tail = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new().name("sse-redis-tail".into()).spawn(move || shared.follow())?
        };
        Ok(RedisLog { shared, tail: Some(tail) })
    }

    /// The stream's key.
    pub fn stream_key(&self) -> &str {
        &self.shared.key
    }

    /// How many round trips its appends took so far: concurrent appends share one pipeline (group
    /// commit), so under load this stays well below the number of appends.
    pub fn append_round_trips(&self) -> u64 {
        self.shared.commits.round_trips.load(Ordering::Relaxed)
    }
}

impl Drop for RedisLog {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(tail) = self.tail.take() {
            // It notices within one XREAD block (or one backoff step).
            let _ = tail.join();
        }
    }
}

impl std::fmt::Debug for RedisLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let window = self.shared.window.read();
        f.debug_struct("RedisLog")
            .field("stream_key", &self.shared.key)
            .field("local_events", &window.entries.len())
            .field("head", &window.head())
            .field("options", &self.shared.options)
            .finish_non_exhaustive()
    }
}

fn unavailable(err: impl std::fmt::Display) -> Error {
    Error::LogUnavailable(err.to_string())
}

impl Shared {
    fn open(&self, read_timeout: Duration) -> Result<redis::Connection> {
        let connection =
            self.client.get_connection_with_timeout(self.options.connect_timeout).map_err(unavailable)?;
        connection.set_read_timeout(Some(read_timeout)).map_err(unavailable)?;
        connection.set_write_timeout(Some(self.options.io_timeout)).map_err(unavailable)?;
        Ok(connection)
    }

    /// Runs `command` on a pooled connection; a connection that failed is dropped, not pooled.
    fn with_connection<T>(
        &self,
        command: impl Fn(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T> {
        let pooled = self.pool.lock().pop();
        if let Some(mut connection) = pooled {
            match command(&mut connection) {
                Ok(answer) => {
                    self.give_back(connection);
                    return Ok(answer);
                }
                // Closed while it sat in the pool (Redis restarted, or its idle timeout): Redis
                // closed it before the command came, so a fresh connection takes the command.
                Err(err) if err.is_connection_dropped() && !err.is_timeout() => {
                    log::debug!(
                        "redis log `{}`: a pooled connection was closed ({err}); reconnecting",
                        self.key
                    );
                }
                Err(err) => return Err(unavailable(err)),
            }
        }
        let mut connection = self.open(self.options.io_timeout)?;
        let answer = command(&mut connection).map_err(unavailable)?;
        self.give_back(connection);
        Ok(answer)
    }

    fn give_back(&self, connection: redis::Connection) {
        let mut pool = self.pool.lock();
        if pool.len() < self.options.pool_size {
            pool.push(connection);
        }
    }

    /// The stream's epoch, set to a new random value when missing.
    fn current_epoch(&self, connection: &mut redis::Connection) -> redis::RedisResult<String> {
        let (_, epoch): (Value, String) = redis::pipe()
            .cmd("SET")
            .arg(&self.epoch_key)
            .arg(new_epoch())
            .arg("NX")
            .cmd("GET")
            .arg(&self.epoch_key)
            .query(connection)?;
        Ok(epoch)
    }

    fn head(&self) -> u64 {
        self.head.load(Ordering::SeqCst)
    }

    /// The tail thread: follows the stream until the log is dropped, reconnecting with backoff.
    fn follow(&self) {
        let mut backoff = Duration::from_millis(50);
        while !self.stop.load(Ordering::SeqCst) {
            let failure = match self.open(self.options.block + self.options.io_timeout) {
                Ok(mut connection) => {
                    let result = self.follow_on(&mut connection, &mut backoff);
                    match result {
                        Ok(()) => return,
                        Err(err) => err,
                    }
                }
                Err(err) => err.to_string(),
            };
            log::warn!("redis log `{}`: tail lost Redis ({failure}); retrying in {backoff:?}", self.key);
            *self.tail_failure.lock() = Some(failure);
            // The pooled connections went to the same server: most likely closed too.
            self.pool.lock().clear();
            self.sleep_unless_stopped(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    fn sleep_unless_stopped(&self, total: Duration) {
        let end = Instant::now() + total;
        while !self.stop.load(Ordering::SeqCst) && Instant::now() < end {
            std::thread::sleep(end.saturating_duration_since(Instant::now()).min(Duration::from_millis(50)));
        }
    }

    /// Follows the stream on one connection; returns `Ok` when stopped, the failure otherwise.
    fn follow_on(
        &self,
        connection: &mut redis::Connection,
        backoff: &mut Duration,
    ) -> std::result::Result<(), String> {
        let epoch = self.current_epoch(connection).map_err(|e| e.to_string())?;
        self.check_continuity(connection, &epoch).map_err(|e| e.to_string())?;
        *backoff = Duration::from_millis(50);
        if self.tail_failure.lock().take().is_some() {
            log::info!("redis log `{}`: tail following the stream again", self.key);
        }
        let block_ms = self.options.block.as_millis().max(1).to_string();
        let count = self.options.page.max(100);
        // The id after which a gap was found and the window restarted: reading on after it is right.
        let mut gap_handled_after = None;
        while !self.stop.load(Ordering::SeqCst) {
            let last = self.window.read().last_id;
            let after = last.text();
            // Then whether the entry read last is still there: trimming removes the oldest first, so
            // if it is, nothing between it and what XREAD returned was trimmed; if it is not, this
            // tail fell behind the stream's bound, and XREAD skipped what was trimmed.
            let (epoch_now, entries, still_there): (Option<String>, Value, Value) = redis::pipe()
                .cmd("GET")
                .arg(&self.epoch_key)
                .cmd("XREAD")
                .arg("COUNT")
                .arg(count)
                .arg("BLOCK")
                .arg(&block_ms)
                .arg("STREAMS")
                .arg(&self.key)
                .arg(&after)
                .cmd("XRANGE")
                .arg(&self.key)
                .arg(&after)
                .arg(&after)
                .arg("COUNT")
                .arg(1)
                .query(connection)
                .map_err(|e| e.to_string())?;
            if epoch_now.as_deref() != Some(epoch.as_str()) {
                // Reset under us (keys deleted, or evicted): start over on a fresh epoch.
                return Err("the stream's epoch changed".into());
            }
            if last != StreamId::ZERO && gap_handled_after != Some(last) && ids(still_there).is_empty() {
                // A lagging tail: drop what XREAD returned (it may follow a gap) and go on as after
                // a reconnection, so that readers learn from Redis what they missed. The window
                // then starts afresh at the stream's first entry, read after the same id.
                self.check_continuity(connection, &epoch).map_err(|e| e.to_string())?;
                gap_handled_after = Some(self.window.read().last_id);
                continue;
            }
            let entries = match entries {
                Value::Array(streams) => streams.into_iter().next().map(stream_entries).unwrap_or_default(),
                _ => Vec::new(),
            };
            self.take_in(entries);
        }
        Ok(())
    }

    /// After a (re)connection: a changed epoch, or a last entry the stream no longer holds, means
    /// the stream is not the one the window continues.
    fn check_continuity(&self, connection: &mut redis::Connection, epoch: &str) -> redis::RedisResult<()> {
        let (known, last_id) = {
            let window = self.window.read();
            (window.epoch.clone(), window.last_id)
        };
        if known.as_deref() != Some(epoch) {
            log::warn!("redis log `{}`: the stream was reset (new epoch); old ids are now unknown", self.key);
            self.restart_window(StreamId::ZERO, Some(epoch.to_owned()), None);
            return Ok(());
        }
        if last_id == StreamId::ZERO || !range(connection, &self.key, last_id, last_id, 1)?.is_empty() {
            return Ok(());
        }
        // The entry we read last was trimmed (this tail fell behind the stream's bound) or lost (a
        // failover to a replica that lacks it): what follows is read afresh, and readers that had
        // not read up to it go to Redis, which tells them what they missed.
        let first = first_entry(connection, &self.key)?;
        log::warn!(
            "redis log `{}`: the tail's last entry {} left the stream; local events dropped",
            self.key,
            last_id.text()
        );
        let resume = if first.is_some_and(|first| first > last_id) { last_id } else { StreamId::ZERO };
        self.restart_window(resume, Some(epoch.to_owned()), first.and_then(StreamId::position));
        Ok(())
    }

    /// Drops the window; the tail goes on after `resume`. Readers below `covered_from` (the old head
    /// at least) read from Redis.
    fn restart_window(&self, resume: StreamId, epoch: Option<String>, covered_from: Option<u64>) {
        let mut window = self.window.write();
        let head = window.head();
        window.entries.clear();
        window.covered_from = covered_from.unwrap_or(head).max(head);
        window.last_id = resume;
        window.epoch = epoch;
        self.head.store(window.head(), Ordering::SeqCst);
    }

    /// Appends what the tail read to the window and wakes the readers.
    fn take_in(&self, entries: Vec<(StreamId, Event)>) {
        if entries.is_empty() {
            return;
        }
        let head = {
            let mut window = self.window.write();
            for (id, event) in entries {
                window.last_id = id;
                let Some(position) = id.position() else {
                    log::error!("redis log `{}`: entry {} has no log position; skipped", self.key, id.text());
                    continue;
                };
                if position < window.head() {
                    log::error!(
                        "redis log `{}`: entry {} is older than events already delivered; skipped",
                        self.key,
                        id.text()
                    );
                    continue;
                }
                while window.entries.len() >= self.options.local_capacity {
                    if let Some((oldest, _)) = window.entries.pop_front() {
                        window.covered_from = oldest + 1;
                    }
                }
                window.entries.push_back((position, event));
            }
            let head = window.head();
            self.head.store(head, Ordering::SeqCst);
            head
        };
        self.waiters.wake_behind(head);
    }

    /// Reads from Redis the entries from `from` up to (not including) `until`, handing them to
    /// `visit`. Returns the next position, and whether `visit` stopped.
    fn read_from_redis(
        &self,
        from: u64,
        until: u64,
        visit: &mut dyn FnMut(&Event) -> bool,
    ) -> std::result::Result<(u64, bool), ReadFailure> {
        let mut next = from;
        while next < until {
            let start = StreamId::at(next);
            let end = StreamId::at(until - 1);
            let before = next.checked_sub(1).map(StreamId::at);
            let (page, predecessor) = self
                .with_connection(|connection| {
                    let page = range(connection, &self.key, start, end, self.options.page)?;
                    let predecessor = match before {
                        Some(before) => !reverse_range(connection, &self.key, before, 1)?.is_empty(),
                        None => true,
                    };
                    Ok((page, predecessor))
                })
                .map_err(ReadFailure::Unavailable)?;
            let first = page.first().and_then(|(id, _)| id.position()).unwrap_or(until);
            if first > next && !predecessor && self.anything_trimmed() {
                return Err(ReadFailure::Behind(FellBehind { oldest: first, missed: 1 }));
            }
            let full = page.len() >= self.options.page;
            for (id, event) in &page {
                let Some(position) = id.position() else { continue };
                if !visit(event) {
                    return Ok((position, true));
                }
                next = position + 1;
            }
            if !full {
                return Ok((until, false));
            }
        }
        Ok((next, false))
    }

    /// Whether the stream has lost entries to trimming (or never existed). Called for a reader with
    /// no entry before it in the stream: if none was ever removed, it missed nothing.
    fn anything_trimmed(&self) -> bool {
        let counts = self.with_connection(|connection| {
            let (length, info): (u64, Value) = redis::pipe()
                .cmd("XLEN")
                .arg(&self.key)
                .cmd("XINFO")
                .arg("STREAM")
                .arg(&self.key)
                .query(connection)?;
            Ok((length, entries_added(&info)))
        });
        match counts {
            Ok((length, Some(added))) => added > length,
            // No stream (a reset) or no count (Redis before 7): take the reader to have missed some.
            _ => true,
        }
    }

    /// How many entries Redis holds from `from` up to (not including) `until`, counted a page at a time.
    fn count_in_redis(&self, from: u64, until: u64) -> Result<usize> {
        let mut count = 0;
        let mut next = from;
        while next < until {
            let page = self.with_connection(|connection| {
                range_ids(connection, &self.key, StreamId::at(next), StreamId::at(until - 1), 1000)
            })?;
            count += page.len();
            match page.last().and_then(|id| id.position()) {
                Some(last) if page.len() >= 1000 => next = last + 1,
                _ => break,
            }
        }
        Ok(count)
    }

    fn exists_in_redis(&self, id: StreamId) -> Result<bool> {
        self.with_connection(|connection| Ok(!range_ids(connection, &self.key, id, id, 1)?.is_empty()))
    }

    /// Appends one entry, in a pipeline with the appends of other threads that wait meanwhile;
    /// returns its entry id.
    fn commit(&self, fields: Fields) -> std::result::Result<String, String> {
        let commits = &self.commits;
        let mut state = commits.state.lock();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.waiting.push((ticket, fields));
        loop {
            if let Some(answer) = state.answers.remove(&ticket) {
                return answer;
            }
            if state.sending {
                // Answered when the pipeline in flight ends (within the I/O timeouts).
                commits.answered.wait(&mut state);
                continue;
            }
            state.sending = true;
            let batch = std::mem::take(&mut state.waiting);
            drop(state);
            let answers = self.send_batch(&batch);
            state = commits.state.lock();
            state.sending = false;
            for ((ticket, _), answer) in batch.iter().zip(answers) {
                state.answers.insert(*ticket, answer);
            }
            commits.answered.notify_all();
        }
    }

    /// One round trip: an `XADD` for each entry.
    fn send_batch(&self, batch: &[(u64, Fields)]) -> Vec<std::result::Result<String, String>> {
        self.commits.round_trips.fetch_add(1, Ordering::Relaxed);
        let mut pipe = redis::pipe();
        for (_, fields) in batch {
            let xadd =
                pipe.cmd("XADD").arg(&self.key).arg("MAXLEN").arg("~").arg(self.options.max_len).arg("*");
            for (name, value) in fields.pairs() {
                xadd.arg(name).arg(value);
            }
        }
        match self.with_connection(|connection| pipe.query::<Vec<String>>(connection)) {
            Ok(ids) if ids.len() == batch.len() => ids.into_iter().map(Ok).collect(),
            Ok(ids) => vec![Err(format!("{} answers to {} appends", ids.len(), batch.len())); batch.len()],
            Err(Error::LogUnavailable(why)) => vec![Err(why); batch.len()],
            Err(err) => vec![Err(err.to_string()); batch.len()],
        }
    }

    /// Waits until the tail has read up to `position`, or `timeout` passes.
    fn wait_for_tail(&self, position: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let waiter = Waiter::current();
        while self.head() <= position {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                log::warn!(
                    "redis log `{}`: the tail has not read back an append within {timeout:?}",
                    self.key
                );
                return;
            }
            let seen = self.head();
            self.waiters.wait(seen, || self.head(), &waiter, left);
        }
    }
}

enum ReadFailure {
    Unavailable(Error),
    Behind(FellBehind),
}

impl EventLog for RedisLog {
    fn append(&self, event: Event, _number: bool) -> Result<Event> {
        if event.id().is_some() {
            return Err(Error::BadRequest(
                "a RedisLog gives each event its stream entry id: publish events without one",
            ));
        }
        let shared = &*self.shared;
        let id = shared.commit(Fields::of(&event)).map_err(Error::LogUnavailable)?;
        let parsed = StreamId::parse(&id).ok_or_else(|| unavailable(format!("XADD answered `{id}`")))?;
        if let Some(position) = parsed.position() {
            shared.wait_for_tail(position, shared.options.io_timeout);
        }
        Ok(event.with_id(id))
    }

    fn head(&self) -> u64 {
        self.shared.head()
    }

    fn oldest(&self) -> u64 {
        let shared = &*self.shared;
        match shared.with_connection(|connection| first_entry(connection, &shared.key)) {
            Ok(Some(first)) => first.position().unwrap_or_else(|| shared.head()).min(shared.head()),
            Ok(None) => shared.head(),
            Err(err) => {
                log::warn!(
                    "redis log `{}`: oldest entry unknown ({err}); using the local window",
                    shared.key
                );
                let window = shared.window.read();
                window.entries.front().map_or(window.head(), |(position, _)| *position)
            }
        }
    }

    fn count_from(&self, from: u64) -> usize {
        let shared = &*self.shared;
        let (local, covered_from) = {
            let window = shared.window.read();
            let start = window.index_of(from.max(window.covered_from));
            (window.entries.len() - start, window.covered_from)
        };
        if from >= covered_from {
            return local;
        }
        match shared.count_in_redis(from, covered_from) {
            Ok(older) => local + older,
            Err(err) => {
                log::warn!("redis log `{}`: cannot count older entries ({err})", shared.key);
                local
            }
        }
    }

    fn position_after(&self, last_event_id: &str) -> Option<u64> {
        let shared = &*self.shared;
        let id = StreamId::parse(last_event_id)?;
        let position = id.position()?;
        {
            let window = shared.window.read();
            if position >= window.covered_from && position < window.head() {
                let index = window.index_of(position);
                return window.entries.get(index).filter(|(p, _)| *p == position).map(|_| position + 1);
            }
        }
        // Older than the window, or newer (from an instance whose tail is ahead): Redis decides.
        match shared.exists_in_redis(id) {
            Ok(true) => Some(position + 1),
            Ok(false) => None,
            Err(err) => {
                log::warn!("redis log `{}`: cannot look up id {last_event_id} ({err})", shared.key);
                None
            }
        }
    }

    fn read(&self, from: u64, visit: &mut dyn FnMut(&Event) -> bool) -> std::result::Result<u64, FellBehind> {
        let shared = &*self.shared;
        let mut from = from;
        loop {
            {
                let window = shared.window.read();
                if from >= window.covered_from {
                    let mut next = from;
                    for (position, event) in window.entries.range(window.index_of(from)..) {
                        if !visit(event) {
                            return Ok(next);
                        }
                        next = position + 1;
                    }
                    return Ok(next.max(window.head()));
                }
            }
            let until = shared.window.read().covered_from;
            match shared.read_from_redis(from, until, visit) {
                Ok((next, true)) => return Ok(next),
                Ok((next, false)) => from = next,
                Err(ReadFailure::Behind(behind)) => {
                    return Err(FellBehind { oldest: behind.oldest, missed: behind.missed.max(1) });
                }
                Err(ReadFailure::Unavailable(err)) => {
                    log::warn!("redis log `{}`: cannot read older entries ({err}); retrying", shared.key);
                    // The reader asks again; this keeps it from spinning while Redis is away.
                    std::thread::sleep(Duration::from_millis(100));
                    return Ok(from);
                }
            }
        }
    }

    /// Unavailable while the tail has no connection to Redis: it notices at once when Redis closes
    /// the connection, and within its block and I/O timeouts when Redis stops answering.
    fn health(&self) -> Health {
        match &*self.shared.tail_failure.lock() {
            None => Health::Ready,
            Some(failure) => Health::Unavailable(format!("redis unreachable: {failure}")),
        }
    }

    /// The stream time between the newest entry in Redis and the newest the tail has read: one
    /// round trip (`XREVRANGE + - COUNT 1`), so ask it at a scrape, not per event.
    fn lag(&self) -> Option<Duration> {
        let shared = &self.shared;
        let newest = shared.with_connection(|connection| last_entry(connection, &shared.key)).ok()?;
        let read = shared.window.read().last_id;
        Some(newest.map_or(Duration::ZERO, |newest| Duration::from_millis(newest.ms.saturating_sub(read.ms))))
    }

    fn wait(&self, seen: u64, waiter: &Arc<Waiter>, timeout: Duration) {
        // A reader ahead of the tail (resumed from a faster instance) waits for the tail to pass it.
        self.shared.waiters.wait(seen, || self.shared.head().max(seen), waiter, timeout);
    }
}

/// An event's fields as stored in a stream entry: `e` type, `d` data, `r` retry (ms), `c` comment.
struct Fields {
    event_type: Option<String>,
    data: Option<String>,
    retry: Option<u128>,
    comment: Option<String>,
}

impl Fields {
    /// Reads the fields back from the event's encoding (which holds no id: ids are refused).
    fn of(event: &Event) -> Fields {
        let mut fields = Fields {
            event_type: event.event_type().map(str::to_owned),
            data: None,
            retry: event.retry().map(|retry| retry.as_millis()),
            comment: None,
        };
        let wire = String::from_utf8_lossy(event.as_bytes());
        for line in wire.split('\n').filter(|line| !line.is_empty()) {
            let (name, value) = line.split_once(": ").unwrap_or((line, ""));
            let target = match name {
                "data" => &mut fields.data,
                "" => &mut fields.comment,
                _ => continue,
            };
            match target {
                Some(text) => {
                    text.push('\n');
                    text.push_str(value);
                }
                None => *target = Some(value.to_owned()),
            }
        }
        fields
    }

    /// The entry's field-value pairs (at least one: an entry needs a field).
    fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs: Vec<(&'static str, String)> =
            [("e", &self.event_type), ("d", &self.data), ("c", &self.comment)]
                .into_iter()
                .filter_map(|(name, value)| Some((name, value.clone()?)))
                .collect();
        pairs.extend(self.retry.map(|retry| ("r", retry.to_string())));
        if pairs.is_empty() {
            pairs.push(("_", String::new()));
        }
        pairs
    }

    /// The event an entry stands for, with the entry's id.
    fn event(id: StreamId, pairs: &[Value]) -> Event {
        let mut builder = Event::builder().id(id.text());
        for pair in pairs.chunks_exact(2) {
            let (Some(name), Some(value)) = (text_of(&pair[0]), text_of(&pair[1])) else { continue };
            builder = match name.as_str() {
                "e" => builder.event(value),
                "d" => builder.data(value),
                "c" => builder.comment(value),
                "r" => match value.parse() {
                    Ok(ms) => builder.retry(Duration::from_millis(ms)),
                    Err(_) => builder,
                },
                _ => builder,
            };
        }
        builder.build().unwrap_or_else(|_| {
            // A type with a line break, written by another producer: the id alone still moves clients on.
            Event::builder().id(id.text()).build().expect("a stream id is a valid id")
        })
    }
}

fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(text) => Some(text.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Entries of one stream in an `XREAD` answer (`[key, entries]`).
fn stream_entries(stream: Value) -> Vec<(StreamId, Event)> {
    match stream {
        Value::Array(mut parts) if parts.len() == 2 => entries(parts.pop().expect("two parts")),
        _ => Vec::new(),
    }
}

/// Entries of an `XRANGE` answer.
fn entries(answer: Value) -> Vec<(StreamId, Event)> {
    let Value::Array(items) = answer else { return Vec::new() };
    items
        .iter()
        .filter_map(|item| {
            let Value::Array(parts) = item else { return None };
            let id = StreamId::parse(&text_of(parts.first()?)?)?;
            let pairs = match parts.get(1) {
                Some(Value::Array(pairs)) => pairs.as_slice(),
                _ => &[],
            };
            Some((id, Fields::event(id, pairs)))
        })
        .collect()
}

fn ids(answer: Value) -> Vec<StreamId> {
    let Value::Array(items) = answer else { return Vec::new() };
    items
        .iter()
        .filter_map(|item| match item {
            Value::Array(parts) => StreamId::parse(&text_of(parts.first()?)?),
            _ => None,
        })
        .collect()
}

fn range(
    connection: &mut redis::Connection,
    key: &str,
    start: StreamId,
    end: StreamId,
    count: usize,
) -> redis::RedisResult<Vec<(StreamId, Event)>> {
    let answer: Value = redis::cmd("XRANGE")
        .arg(key)
        .arg(start.text())
        .arg(end.text())
        .arg("COUNT")
        .arg(count)
        .query(connection)?;
    Ok(entries(answer))
}

fn range_ids(
    connection: &mut redis::Connection,
    key: &str,
    start: StreamId,
    end: StreamId,
    count: usize,
) -> redis::RedisResult<Vec<StreamId>> {
    let answer: Value = redis::cmd("XRANGE")
        .arg(key)
        .arg(start.text())
        .arg(end.text())
        .arg("COUNT")
        .arg(count)
        .query(connection)?;
    Ok(ids(answer))
}

/// Ids at or before `end`, newest first.
fn reverse_range(
    connection: &mut redis::Connection,
    key: &str,
    end: StreamId,
    count: usize,
) -> redis::RedisResult<Vec<StreamId>> {
    let answer: Value = redis::cmd("XREVRANGE")
        .arg(key)
        .arg(end.text())
        .arg("-")
        .arg("COUNT")
        .arg(count)
        .query(connection)?;
    Ok(ids(answer))
}

fn first_entry(connection: &mut redis::Connection, key: &str) -> redis::RedisResult<Option<StreamId>> {
    let answer: Value =
        redis::cmd("XRANGE").arg(key).arg("-").arg("+").arg("COUNT").arg(1).query(connection)?;
    Ok(ids(answer).first().copied())
}

fn last_entry(connection: &mut redis::Connection, key: &str) -> redis::RedisResult<Option<StreamId>> {
    let answer: Value =
        redis::cmd("XREVRANGE").arg(key).arg("+").arg("-").arg("COUNT").arg(1).query(connection)?;
    Ok(ids(answer).first().copied())
}

/// `entries-added` of an `XINFO STREAM` answer (Redis 7+).
fn entries_added(info: &Value) -> Option<u64> {
    let pairs: Vec<&Value> = match info {
        Value::Array(items) => items.iter().collect(),
        Value::Map(pairs) => pairs.iter().flat_map(|(k, v)| [k, v]).collect(),
        _ => return None,
    };
    pairs.chunks_exact(2).find(|pair| text_of(pair[0]).as_deref() == Some("entries-added")).and_then(|pair| {
        match pair[1] {
            Value::Int(n) => u64::try_from(*n).ok(),
            other => text_of(other)?.parse().ok(),
        }
    })
}

/// A value no other epoch of this stream had: the clock in nanoseconds and this process.
fn new_epoch() -> String {
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |t| t.as_nanos());
    format!("{nanos:x}-{:x}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_parse_strictly_and_map_to_growing_positions() {
        assert_eq!(StreamId::parse("1718000000000-3"), Some(StreamId { ms: 1_718_000_000_000, seq: 3 }));
        for bad in ["", "-", "1-", "-1", "1-2-3", "a-1", "1-+", " 1-2", "1_2", "123"] {
            assert_eq!(StreamId::parse(bad), None, "{bad:?}");
        }
        let ids = ["0-1", "5-0", "5-1", "5-1048575", "6-0", "1718000000000-0"];
        let positions: Vec<u64> =
            ids.iter().map(|id| StreamId::parse(id).unwrap().position().unwrap()).collect();
        assert!(positions.windows(2).all(|pair| pair[0] < pair[1]), "{positions:?}");
        for id in ids {
            let parsed = StreamId::parse(id).unwrap();
            assert_eq!(StreamId::at(parsed.position().unwrap()), parsed);
        }
        assert_eq!(StreamId::parse("5-1048576").unwrap().position(), None, "sequence past 2^20");
    }

    #[test]
    fn fields_round_trip_through_an_entry() {
        let event = Event::builder()
            .event("price")
            .data("a\nb: c\n")
            .retry(Duration::from_millis(1500))
            .comment("note")
            .build()
            .unwrap();
        let fields = Fields::of(&event);
        assert_eq!(fields.data.as_deref(), Some("a\nb: c\n"));
        let mut pairs = Vec::new();
        for (name, value) in [("e", "price"), ("d", "a\nb: c\n"), ("c", "note"), ("r", "1500")] {
            pairs.push(Value::BulkString(name.into()));
            pairs.push(Value::BulkString(value.into()));
        }
        let stored = Fields::event(StreamId { ms: 9, seq: 1 }, &pairs);
        let expected = Event::builder()
            .id("9-1")
            .event("price")
            .data("a\nb: c\n")
            .retry(Duration::from_millis(1500))
            .comment("note")
            .build()
            .unwrap();
        assert_eq!(stored.as_bytes(), expected.as_bytes());
        assert_eq!(Fields::of(&Event::comment("x")).data, None);
        assert_eq!(Fields::of(&Event::data("")).data.as_deref(), Some(""));
    }
}
