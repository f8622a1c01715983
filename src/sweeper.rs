//! A thread that wakes connection threads for the publisher, when a publish reaches many of them.
//!
//! Waking a parked thread costs the waker a futex call and often a cross-CPU interrupt: a few
//! microseconds, so thousands of them hold the publisher up for milliseconds. When many connections
//! are open, the publisher only queues the event, without waking anyone, and asks the sweeper to
//! wake the threads that have something queued. The publisher is free again at once,
//! and if its next event follows quickly, the threads the sweeper has not reached yet take both in
//! one write.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{OnceLock, Weak};
use std::thread::{self, Thread};

/// A publish while at least this many connections are open hands its wake-ups to the sweeper;
/// below it, the publisher wakes the threads itself, which is quicker for a few.
pub(crate) const SWEEP_AT: usize = 128;

/// The sweeper of one handler: started the first time a publish needs it, and alive until the
/// handler is dropped.
#[derive(Debug, Default)]
pub(crate) struct Sweeper {
    thread: OnceLock<Option<Thread>>,
    requested: AtomicBool,
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
        self.requested.store(true, Ordering::SeqCst);
        let thread = self.thread.get_or_init(|| {
            let spawned =
                thread::Builder::new().name("sse-sweeper".into()).spawn(move || run(&owner, sweeper, sweep));
            match spawned {
                Ok(handle) => Some(handle.thread().clone()),
                Err(err) => {
                    log::warn!(
                        "cannot start the sweeper thread, so publishers wake threads themselves: {err}"
                    );
                    None
                }
            }
        });
        match thread {
            Some(thread) => {
                thread.unpark();
                true
            }
            None => false,
        }
    }

    /// Whether the sweeper's thread could not be started: publishers then wake threads themselves,
    /// as they do for a few.
    pub(crate) fn failed(&self) -> bool {
        matches!(self.thread.get(), Some(None))
    }
}

impl Drop for Sweeper {
    /// Ends the sweeper's thread: the handler is going away.
    fn drop(&mut self) {
        if let Some(Some(thread)) = self.thread.get() {
            thread.unpark();
        }
    }
}

fn run<T>(owner: &Weak<T>, sweeper: fn(&T) -> &Sweeper, sweep: fn(&T)) {
    loop {
        thread::park();
        // Holds the handler only while sweeping, so dropping the handler ends this thread.
        let Some(owner) = owner.upgrade() else { return };
        if sweeper(&owner).requested.swap(false, Ordering::SeqCst) {
            sweep(&owner);
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
}
