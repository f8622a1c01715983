//! A thread that wakes connection threads for the publisher, when many connections are open.
//!
//! Waking a parked thread costs the waker a futex call and often a cross-CPU interrupt: a few
//! microseconds, so thousands of them hold the publisher up for milliseconds. When many connections
//! are open, the publisher only queues the event, without waking anyone, and asks the sweeper to
//! wake the threads that have something queued. The publisher is free again at once,
//! and if its next event follows quickly, the threads the sweeper has not reached yet take both in
//! one write.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{OnceLock, Weak};
use std::thread::{self, JoinHandle};

/// A publish while at least this many connections are open hands its wake-ups to the sweeper;
/// below it, the publisher wakes the threads itself, which is quicker for a few.
pub(crate) const SWEEP_AT: usize = 128;

/// The sweeper of one handler: started the first time a publish needs it, and alive until the
/// handler shuts down or is dropped.
#[derive(Debug, Default)]
pub(crate) struct Sweeper {
    thread: OnceLock<Option<JoinHandle<()>>>,
    requested: AtomicBool,
    stopped: AtomicBool,
}

impl Sweeper {
    /// Asks for a sweep: `sweep(owner)` runs on the sweeper's thread soon. False if the thread
    /// cannot be started, and the caller must wake the threads itself.
    pub(crate) fn request<T: Send + Sync + 'static>(
        &self,
        owner: Weak<T>,
        sweeper: fn(&T) -> &Sweeper,
        sweep: fn(&T),
    ) -> bool {
        if self.stopped.load(Ordering::SeqCst) {
            return false;
        }
        self.requested.store(true, Ordering::SeqCst);
        let thread = self.thread.get_or_init(|| {
            let spawned =
                thread::Builder::new().name("sse-sweeper".into()).spawn(move || run(&owner, sweeper, sweep));
            match spawned {
                Ok(handle) => Some(handle),
                Err(err) => {
                    log::warn!(
                        "cannot start the sweeper thread, so publishers wake threads themselves: {err}"
                    );
                    None
                }
            }
        });
        match thread {
            Some(handle) => {
                handle.thread().unpark();
                true
            }
            None => false,
        }
    }

    /// Ends the sweeper's thread (the handler has shut down: nothing more to wake). A later request
    /// finds it stopped and the caller wakes the threads itself.
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        if let Some(Some(handle)) = self.thread.get() {
            handle.thread().unpark();
        }
    }

    /// Whether the sweeper's thread could not be started (or was stopped): publishers then wake
    /// threads themselves, as they do for a few.
    pub(crate) fn failed(&self) -> bool {
        matches!(self.thread.get(), Some(None)) || self.stopped.load(Ordering::SeqCst)
    }
}

impl Drop for Sweeper {
    /// Ends the sweeper's thread: the handler is going away.
    fn drop(&mut self) {
        self.stop();
    }
}

fn run<T>(owner: &Weak<T>, sweeper: fn(&T) -> &Sweeper, sweep: fn(&T)) {
    loop {
        thread::park();
        // Holds the handler only while sweeping, so dropping the handler ends this thread.
        let Some(owner) = owner.upgrade() else { return };
        let state = sweeper(&owner);
        if state.requested.swap(false, Ordering::SeqCst) {
            sweep(&owner);
        }
        if state.stopped.load(Ordering::SeqCst) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn a_request_runs_a_sweep_on_the_sweepers_thread_and_the_thread_ends_with_its_owner() {
        let owner = Arc::new((Sweeper::default(), AtomicUsize::new(0)));
        let requested = owner.0.request(
            Arc::downgrade(&owner),
            |owner| &owner.0,
            |owner| {
                owner.1.fetch_add(1, Ordering::SeqCst);
            },
        );
        assert!(requested);
        // Bounded wait for the sweep.
        let deadline = Instant::now() + Duration::from_secs(10);
        while owner.1.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(owner.1.load(Ordering::SeqCst), 1);
        let weak = Arc::downgrade(&owner);
        drop(owner);
        // Bounded wait for the sweeper to let go (it may still hold the handler for its sweep).
        let deadline = Instant::now() + Duration::from_secs(10);
        while weak.strong_count() > 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(weak.strong_count(), 0, "the sweeper keeps no handler alive");
    }

    #[test]
    fn a_stopped_sweeper_ends_its_thread_and_refuses_requests() {
        let owner = Arc::new((Sweeper::default(), AtomicUsize::new(0)));
        let request = |owner: &Arc<(Sweeper, AtomicUsize)>| {
            owner.0.request(
                Arc::downgrade(owner),
                |owner| &owner.0,
                |owner| {
                    owner.1.fetch_add(1, Ordering::SeqCst);
                },
            )
        };
        assert!(request(&owner));
        owner.0.stop();
        assert!(!request(&owner), "the caller must wake the threads itself");
        assert!(owner.0.failed());
        let Some(Some(handle)) = owner.0.thread.get() else { panic!("the thread was started") };
        // Bounded wait for the thread to end, with the owner still alive.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !handle.is_finished() {
            assert!(Instant::now() < deadline, "the sweeper's thread did not end");
            thread::sleep(Duration::from_millis(1));
        }
    }
}
