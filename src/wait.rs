//! Readers that wait for a log to move, and how they are woken: all at once per publish, but by a
//! tree, so that the publisher wakes one reader and each woken reader wakes a few more.
//!
//! Waking a parked thread is a system call and a context switch, microseconds each. A publisher that
//! woke thousands of readers itself would spend milliseconds per event, and in a burst every event
//! would find readers waiting again. So the publisher takes every reader left behind off the list in
//! one go and wakes one, handing it the rest; a woken reader wakes [`FANOUT`] of its share, handing
//! each a part of the rest, before it reads. The publisher makes one system call per publish at
//! most, and waking thousands of readers takes a few rounds spread over every core.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::Thread;
use std::time::Duration;

use parking_lot::Mutex;

/// How many readers one thread wakes itself, handing each a share of the rest.
pub(crate) const FANOUT: usize = 8;

/// A thread that waits for a log to move (see [`EventLog::wait`](crate::EventLog::wait)).
#[derive(Debug)]
pub struct Waiter {
    thread: Thread,
    state: Mutex<WaiterState>,
    /// The head it is on the wait list for (`u64::MAX`: none), so that it is listed once per head.
    listed: AtomicU64,
}

#[derive(Debug, Default)]
struct WaiterState {
    /// Parked in [`WaitList::wait`], and not woken yet.
    asleep: bool,
    /// Readers this one is to wake once it is awake.
    share: Vec<Arc<Waiter>>,
}

impl Waiter {
    /// A waiter for the calling thread, which is the one that must wait with it.
    pub fn current() -> Arc<Waiter> {
        Arc::new(Waiter {
            thread: std::thread::current(),
            state: Mutex::default(),
            listed: AtomicU64::new(u64::MAX),
        })
    }

    /// Wakes it if it sleeps in a wait, handing it `share` to wake in turn; otherwise gives the share
    /// back.
    fn wake_with(&self, share: Vec<Arc<Waiter>>) -> Option<Vec<Arc<Waiter>>> {
        let mut state = self.state.lock();
        if !state.asleep {
            return Some(share);
        }
        state.asleep = false;
        state.share = share;
        drop(state);
        self.thread.unpark();
        None
    }
}

/// Wakes every one of `waiters`: `fanout` directly, each with an equal share of the rest.
fn wake_all(mut waiters: Vec<Arc<Waiter>>, fanout: usize) {
    while !waiters.is_empty() {
        let direct: Vec<Arc<Waiter>> = waiters.drain(..fanout.min(waiters.len())).collect();
        let share = waiters.len().div_ceil(direct.len());
        let mut returned = Vec::new();
        for waiter in direct {
            let mine: Vec<Arc<Waiter>> = waiters.drain(..share.min(waiters.len())).collect();
            // One that is not asleep (it woke on its own meanwhile) cannot pass a share on.
            if let Some(mine) = waiter.wake_with(mine) {
                returned.extend(mine);
            }
        }
        waiters.extend(returned);
    }
}

/// Readers waiting for the head to move, in the order they asked, each with the head it saw.
pub(crate) struct WaitList {
    queue: Mutex<Queue>,
    /// The head the longest-waiting reader saw (`u64::MAX` when none waits), so that a publisher can
    /// tell without the lock whether anyone is left behind.
    oldest_seen: AtomicU64,
}

#[derive(Default)]
struct Queue {
    entries: VecDeque<(u64, Weak<Waiter>)>,
    /// Length past which entries of readers that are gone are swept out.
    sweep_at: usize,
}

impl Default for WaitList {
    fn default() -> Self {
        WaitList { queue: Mutex::default(), oldest_seen: AtomicU64::new(u64::MAX) }
    }
}

impl WaitList {
    /// Parks the calling thread, `waiter`'s, until `head()` is past `seen`, `timeout` passes or the
    /// thread is unparked; it may also return for no reason. A reader woken by a publish wakes its
    /// share of the others before it returns.
    pub(crate) fn wait(&self, seen: u64, head: impl Fn() -> u64, waiter: &Arc<Waiter>, timeout: Duration) {
        self.add(seen, waiter);
        waiter.state.lock().asleep = true;
        if head() == seen {
            std::thread::park_timeout(timeout);
        }
        let share = {
            let mut state = waiter.state.lock();
            // Still asleep: not woken by a publish (a timeout, an unpark of the application's).
            state.asleep = false;
            std::mem::take(&mut state.share)
        };
        wake_all(share, FANOUT);
    }

    fn add(&self, seen: u64, waiter: &Arc<Waiter>) {
        if waiter.listed.swap(seen, Ordering::SeqCst) == seen {
            return; // listed for this head already, and the head has not moved since
        }
        let mut queue = self.queue.lock();
        if queue.entries.len() >= queue.sweep_at.max(64) {
            // Readers that closed while the head stood still left their entries; keep their number in
            // proportion to the live ones.
            queue.entries.retain(|(_, waiter)| waiter.strong_count() > 0);
            queue.sweep_at = 2 * queue.entries.len();
        }
        if queue.entries.is_empty() {
            self.oldest_seen.store(seen, Ordering::SeqCst);
        }
        queue.entries.push_back((seen, Arc::downgrade(waiter)));
    }

    /// Wakes every reader that saw a head older than `head`.
    pub(crate) fn wake_behind(&self, head: u64) {
        if self.oldest_seen.load(Ordering::SeqCst) >= head {
            return;
        }
        let mut behind = Vec::new();
        {
            let mut queue = self.queue.lock();
            while let Some(&(seen, _)) = queue.entries.front().filter(|(seen, _)| *seen < head) {
                let (_, waiter) = queue.entries.pop_front().expect("front exists");
                // A reader that has closed meanwhile is not woken.
                if let Some(waiter) = waiter.upgrade() {
                    let _ =
                        waiter.listed.compare_exchange(seen, u64::MAX, Ordering::SeqCst, Ordering::SeqCst);
                    behind.push(waiter);
                }
            }
            let oldest = queue.entries.front().map_or(u64::MAX, |(seen, _)| *seen);
            self.oldest_seen.store(oldest, Ordering::SeqCst);
        }
        // The publisher wakes one, which wakes the others: a system call per publish at most.
        wake_all(behind, 1);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.queue.lock().entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_readers_that_saw_an_older_head_are_taken_off_the_list() {
        let list = WaitList::default();
        let (early, late) = (Waiter::current(), Waiter::current());
        list.add(5, &early);
        list.add(6, &late);
        list.wake_behind(6);
        assert_eq!(list.len(), 1, "the one that saw head 6 waits on");
        assert_eq!(early.listed.load(Ordering::SeqCst), u64::MAX);
        assert_eq!(late.listed.load(Ordering::SeqCst), 6);
        list.wake_behind(7);
        assert_eq!(list.len(), 0);
    }

    #[test]
    fn a_reader_that_is_not_asleep_hands_its_share_back_to_the_waker() {
        // None of these sleeps: each is offered a share, gives it back, and the waker wakes the rest.
        let waiters: Vec<_> = (0..100).map(|_| Waiter::current()).collect();
        wake_all(waiters.clone(), 1);
        assert!(waiters.iter().all(|waiter| waiter.state.lock().share.is_empty()));
    }

    #[test]
    fn a_sleeping_reader_is_woken_with_its_share() {
        let sleeper = Waiter::current();
        sleeper.state.lock().asleep = true;
        let share: Vec<_> = (0..3).map(|_| Waiter::current()).collect();
        assert!(sleeper.wake_with(share).is_none());
        let state = sleeper.state.lock();
        assert!(!state.asleep);
        assert_eq!(state.share.len(), 3);
    }
}
