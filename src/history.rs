//! The replay history: recent events kept so that a client reconnecting with `Last-Event-ID` gets
//! what it missed.

use std::collections::VecDeque;

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

/// The last `capacity` events, in memory.
#[derive(Debug)]
pub struct MemoryHistory {
    events: VecDeque<Event>,
    capacity: usize,
}

impl MemoryHistory {
    /// A history that keeps the last `capacity` events (none when `capacity` is 0).
    pub fn new(capacity: usize) -> MemoryHistory {
        MemoryHistory { events: VecDeque::with_capacity(capacity.min(4096)), capacity }
    }

    /// The most events it keeps.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

impl History for MemoryHistory {
    fn append(&mut self, event: Event) {
        if self.capacity == 0 {
            return;
        }
        if self.events.len() == self.capacity {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    fn events_after(&self, last_event_id: &str) -> Option<Vec<Event>> {
        // Search from the newest end: a reconnecting client is usually only a few events behind.
        let at = self.events.iter().rposition(|event| event.id() == Some(last_event_id))?;
        Some(self.events.range(at + 1..).cloned().collect())
    }

    fn all(&self) -> Vec<Event> {
        self.events.iter().cloned().collect()
    }

    fn len(&self) -> usize {
        self.events.len()
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
}
