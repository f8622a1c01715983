//! The replay history: recent events kept so that a client reconnecting with `Last-Event-ID` gets
//! what it missed.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::event::Event;

/// A store of recently published events, for replay.
///
/// The handler calls it under its publish lock, so calls never overlap and the order of `append`
/// calls is the order clients see. The default is [`MemoryHistory`], a ring of the last N events;
/// implement this trait to keep the history somewhere several server instances share.
pub trait History: Send + 'static {
    /// Records a published event, dropping the oldest ones if the store is over its bounds.
    fn append(&mut self, event: Event);

    /// The events published after the one whose id is `last_event_id`, oldest first, or `None` when
    /// no retained event has that id. Ids are compared as opaque strings; if several events share an
    /// id, the latest one counts.
    fn events_after(&self, last_event_id: &str) -> Option<Vec<Event>>;

    /// Every retained event, oldest first.
    fn all(&self) -> Vec<Event>;

    /// How many events are retained.
    fn len(&self) -> usize;

    /// Whether no event is retained.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Recent events in memory, bounded by count and optionally by age and by bytes.
///
/// No path grows it past its bounds: every append first makes room, and expired events are never
/// replayed even before the next append removes them.
pub struct MemoryHistory {
    events: VecDeque<(Instant, Event)>,
    bytes: usize,
    capacity: usize,
    max_age: Option<Duration>,
    max_bytes: Option<usize>,
    clock: Box<dyn Fn() -> Instant + Send>,
}

impl MemoryHistory {
    /// A history that keeps the last `capacity` events (none when `capacity` is 0).
    pub fn new(capacity: usize) -> MemoryHistory {
        MemoryHistory {
            events: VecDeque::with_capacity(capacity.min(4096)),
            bytes: 0,
            capacity,
            max_age: None,
            max_bytes: None,
            clock: Box::new(Instant::now),
        }
    }

    /// Also drops events older than `age`.
    pub fn max_age(mut self, age: Duration) -> MemoryHistory {
        self.max_age = Some(age);
        self
    }

    /// Also keeps at most `bytes` bytes of encoded events, dropping the oldest first.
    pub fn max_bytes(mut self, bytes: usize) -> MemoryHistory {
        self.max_bytes = Some(bytes);
        self
    }

    /// Reads the time from `clock` instead of [`Instant::now`] (for tests of the age bound).
    pub fn with_clock(mut self, clock: impl Fn() -> Instant + Send + 'static) -> MemoryHistory {
        self.clock = Box::new(clock);
        self
    }

    /// The most events it keeps.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes of encoded events it holds now.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Index of the first event that has not expired.
    fn first_live(&self) -> usize {
        match self.max_age {
            None => 0,
            Some(age) => {
                let now = (self.clock)();
                self.events.partition_point(|(at, _)| now.saturating_duration_since(*at) > age)
            }
        }
    }

    fn pop_oldest(&mut self) {
        if let Some((_, event)) = self.events.pop_front() {
            self.bytes -= event.as_bytes().len();
        }
    }
}

impl std::fmt::Debug for MemoryHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryHistory")
            .field("len", &self.events.len())
            .field("bytes", &self.bytes)
            .field("capacity", &self.capacity)
            .field("max_age", &self.max_age)
            .field("max_bytes", &self.max_bytes)
            .finish()
    }
}

impl History for MemoryHistory {
    fn append(&mut self, event: Event) {
        let size = event.as_bytes().len();
        if self.capacity == 0 || self.max_bytes.is_some_and(|max| size > max) {
            // It could never be kept; keeping nothing newer than it is not an option either.
            self.events.clear();
            self.bytes = 0;
            return;
        }
        for _ in 0..self.first_live() {
            self.pop_oldest();
        }
        while self.events.len() >= self.capacity || self.max_bytes.is_some_and(|max| self.bytes + size > max)
        {
            self.pop_oldest();
        }
        self.bytes += size;
        self.events.push_back(((self.clock)(), event));
    }

    fn events_after(&self, last_event_id: &str) -> Option<Vec<Event>> {
        // Search from the newest end: a reconnecting client is usually only a few events behind.
        let live = self.events.range(self.first_live()..);
        let after = live.clone().rposition(|(_, event)| event.id() == Some(last_event_id))?;
        Some(live.skip(after + 1).map(|(_, event)| event.clone()).collect())
    }

    fn all(&self) -> Vec<Event> {
        self.events.range(self.first_live()..).map(|(_, event)| event.clone()).collect()
    }

    fn len(&self) -> usize {
        self.events.len() - self.first_live()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str) -> Event {
        Event::builder().id(id).data(format!("event {id}")).build().unwrap()
    }

    fn ids(events: &[Event]) -> Vec<&str> {
        events.iter().map(|e| e.id().unwrap_or("-")).collect()
    }

    #[test]
    fn replays_what_came_after_an_id() {
        let mut history = MemoryHistory::new(10);
        for id in ["1", "2", "3", "4"] {
            history.append(event(id));
        }
        assert_eq!(ids(&history.events_after("2").unwrap()), ["3", "4"]);
        assert_eq!(ids(&history.events_after("4").unwrap()), Vec::<&str>::new());
        assert!(history.events_after("9").is_none());
    }

    #[test]
    fn wraps_around_at_capacity() {
        let mut history = MemoryHistory::new(3);
        for i in 1..=5 {
            history.append(event(&i.to_string()));
        }
        assert_eq!(history.len(), 3);
        assert_eq!(ids(&history.all()), ["3", "4", "5"]);
        assert!(history.events_after("2").is_none(), "2 fell out of the ring");
        assert_eq!(ids(&history.events_after("3").unwrap()), ["4", "5"]);
    }

    #[test]
    fn latest_duplicate_id_counts_and_id_less_events_replay() {
        let mut history = MemoryHistory::new(10);
        history.append(event("a"));
        history.append(Event::data("no id"));
        history.append(event("a"));
        history.append(Event::data("after"));
        assert_eq!(history.events_after("a").unwrap(), [Event::data("after")]);
    }

    #[test]
    fn zero_capacity_keeps_nothing() {
        let mut history = MemoryHistory::new(0);
        history.append(event("1"));
        assert!(history.is_empty());
        assert!(history.events_after("1").is_none());
    }

    #[test]
    fn age_bound_with_an_injected_clock() {
        use std::sync::{Arc, Mutex};
        let start = Instant::now();
        let now = Arc::new(Mutex::new(start));
        let clock = Arc::clone(&now);
        let mut history = MemoryHistory::new(100)
            .max_age(Duration::from_secs(10))
            .with_clock(move || *clock.lock().unwrap());
        history.append(event("1"));
        *now.lock().unwrap() = start + Duration::from_secs(6);
        history.append(event("2"));
        assert_eq!(ids(&history.all()), ["1", "2"]);
        *now.lock().unwrap() = start + Duration::from_secs(11);
        // "1" is past its age: not replayed, and unknown as a resume point.
        assert_eq!(ids(&history.all()), ["2"]);
        assert_eq!(history.len(), 1);
        assert!(history.events_after("1").is_none());
        assert_eq!(ids(&history.events_after("2").unwrap()), Vec::<&str>::new());
        history.append(event("3"));
        assert_eq!(history.events.len(), 2, "the append removed the expired event");
    }

    #[test]
    fn byte_bound_drops_the_oldest() {
        let size = event("1").as_bytes().len();
        let mut history = MemoryHistory::new(100).max_bytes(3 * size);
        for i in 1..=5 {
            history.append(event(&i.to_string()));
            assert!(history.bytes() <= 3 * size);
        }
        assert_eq!(ids(&history.all()), ["3", "4", "5"]);
        // An event larger than the whole bound cannot be kept, and nothing older stays behind it.
        history.append(Event::data("x".repeat(10 * size)));
        assert!(history.is_empty());
        assert_eq!(history.bytes(), 0);
    }
}
