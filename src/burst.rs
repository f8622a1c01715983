//! Telling a burst of publishes from light load, so that connection threads batch a burst instead of
//! being woken for every event.
//!
//! Under light load every push wakes its connection's thread at once: one event, one wake-up, one
//! write, and the lowest latency. In a burst that would cost a wake-up and a write per event and per
//! connection, and with many connections the woken threads would take the cores from the publisher,
//! so each of them would find a single event whenever it looked. So while publishes come closer
//! together than [`BURST_GAP`], connection threads nap instead of parking: pushes do not wake them,
//! and each one wakes after its nap (or when its queue is half full) and writes everything that came
//! meanwhile at once. A pacer thread, alive only during bursts (and briefly after), notices when
//! publishing stops and ends the naps then (within about a millisecond of the last publish of a back-to-back burst), so
//! the last events of a burst do not wait out a nap.

use std::sync::Weak;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};
use std::thread;
use std::time::{Duration, Instant};

use crate::registry::Wake;

/// Publishes closer together than this make a burst; a burst is over once publishing has been idle
/// this long.
pub(crate) const BURST_GAP: Duration = Duration::from_millis(2);

/// How often the pacer looks whether a burst is over, and the shortest idle time that ends one. A
/// burst of back-to-back publishes is over once publishing has been idle for this long or four
/// times its last gap between publishes, whichever is longer (and never longer than
/// [`BURST_GAP`]), so that its tail is not held back for long.
const PACER_TICK: Duration = Duration::from_micros(250);

/// How long a connection thread naps during a burst, per open connection. A thread's wake-up and
/// write cost about 20 µs of CPU on a small machine, so at 40 µs per connection the threads' own
/// wake-ups take at most half a core, however many connections there are (25,000 wake-ups a second),
/// and leave the rest to the publisher. Shorter naps with many connections let the wake-ups swamp
/// the publisher, which then takes longer to publish, which makes for more wake-ups.
const NAP_PER_CONNECTION: Duration = Duration::from_micros(40);

/// Whether publishing is in a burst, and how long a connection thread naps during one.
#[derive(Debug)]
pub(crate) struct Burst {
    /// The time base of the nanosecond stamps below.
    epoch: Instant,
    /// When the last publish started and ended (0: never), and the idle time before it started.
    publish_started: AtomicU64,
    publish_ended: AtomicU64,
    last_gap: AtomicU64,
    active: AtomicBool,
    pacer_running: AtomicBool,
    /// Whether a pacer thread has failed to start (warned about once, not at every publish).
    pacer_failed: AtomicBool,
    nap_nanos: AtomicU64,
    /// The longest nap (`Config::max_burst_delay`); zero turns batching off.
    max_delay: Duration,
}

impl Burst {
    pub(crate) fn new(max_delay: Duration) -> Burst {
        Burst {
            epoch: Instant::now(),
            publish_started: AtomicU64::new(0),
            publish_ended: AtomicU64::new(0),
            last_gap: AtomicU64::new(u64::MAX),
            active: AtomicBool::new(false),
            pacer_running: AtomicBool::new(false),
            pacer_failed: AtomicBool::new(false),
            nap_nanos: AtomicU64::new(0),
            max_delay,
        }
    }

    /// Notes that a publish starts. True when it starts a burst that needs a pacer thread.
    pub(crate) fn publish_starts(&self) -> bool {
        let now = self.now();
        let ended = self.publish_ended.load(Ordering::Relaxed);
        self.publish_started.store(now, Ordering::Relaxed);
        let gap = if ended == 0 { u64::MAX } else { now.saturating_sub(ended) };
        self.last_gap.store(gap, Ordering::Relaxed);
        let close_to_the_last = gap < nanos(BURST_GAP);
        close_to_the_last
            && !self.max_delay.is_zero()
            && !self.active.swap(true, Ordering::SeqCst)
            && !self.pacer_running.swap(true, Ordering::SeqCst)
    }

    /// Notes that a publish has ended, with `connections` open.
    pub(crate) fn publish_ends(&self, connections: usize) {
        let nap = NAP_PER_CONNECTION.saturating_mul(u32::try_from(connections).unwrap_or(u32::MAX));
        self.nap_nanos.store(nanos(nap.min(self.max_delay)), Ordering::Relaxed);
        self.publish_ended.store(self.now().max(1), Ordering::Relaxed);
    }

    /// How long a connection thread should nap now: `None` outside a burst.
    pub(crate) fn nap(&self) -> Option<Duration> {
        let nap = self.nap_length();
        (self.active.load(Ordering::SeqCst) && !nap.is_zero()).then_some(nap)
    }

    /// Whether the pushes of a publish that starts now wake the threads they reach: not during a
    /// burst.
    pub(crate) fn wake(&self) -> Wake {
        if self.active.load(Ordering::SeqCst) { Wake::Held } else { Wake::Now }
    }

    /// Whether a publish that held its pushes' wake-ups for a burst (its `wake` was
    /// [`Wake::Held`]) must wake the sleeping threads itself: the burst ended while it ran, after
    /// the pacer's last look.
    pub(crate) fn ended_during(&self, wake: Wake) -> bool {
        fence(Ordering::SeqCst);
        wake == Wake::Held && !self.active.load(Ordering::SeqCst)
    }

    fn nap_length(&self) -> Duration {
        Duration::from_nanos(self.nap_nanos.load(Ordering::Relaxed))
    }

    /// Whether publishing has stopped: none in progress, and none for four times the last gap
    /// between publishes (at least [`PACER_TICK`], at most [`BURST_GAP`]).
    fn is_over(&self) -> bool {
        let started = self.publish_started.load(Ordering::Relaxed);
        let ended = self.publish_ended.load(Ordering::Relaxed);
        let idle_enough = self
            .last_gap
            .load(Ordering::Relaxed)
            .saturating_mul(4)
            .clamp(nanos(PACER_TICK), nanos(BURST_GAP));
        ended >= started && self.now().saturating_sub(ended) >= idle_enough
    }

    /// A pacer that could not be started: no burst, so threads keep being woken by every push.
    /// True the first time, to warn once.
    fn pacer_failed(&self) -> bool {
        self.active.store(false, Ordering::SeqCst);
        self.pacer_running.store(false, Ordering::SeqCst);
        !self.pacer_failed.swap(true, Ordering::Relaxed)
    }

    fn now(&self) -> u64 {
        nanos(self.epoch.elapsed())
    }
}

/// Starts the pacer of a burst that has just begun. It holds `owner` weakly (so it never keeps a
/// handler alive), finds its [`Burst`] through `burst`, and calls `wake_sleeping(owner, naps)`: with
/// `naps` set when the burst is over (every sleeping thread with a reason to wake), without it once
/// per nap length during a long burst (threads that parked before the burst, and whose wake-ups the
/// burst holds back).
pub(crate) fn start_pacer<T: Send + Sync + 'static>(
    owner: Weak<T>,
    burst: fn(&T) -> &Burst,
    wake_sleeping: fn(&T, bool),
) {
    // The default stack: the pacer may be the last holder of the handler, and drop it.
    let spawned = thread::Builder::new().name("sse-pacer".into()).spawn({
        let owner = Weak::clone(&owner);
        move || pace(&owner, burst, wake_sleeping)
    });
    if let Err(err) = spawned {
        if let Some(owner) = owner.upgrade() {
            if burst(&owner).pacer_failed() {
                log::warn!("cannot start the burst pacer thread, so bursts are not batched: {err}");
            } else {
                log::debug!("cannot start the burst pacer thread: {err}");
            }
            wake_sleeping(&owner, true);
        }
    }
}

fn pace<T>(owner: &Weak<T>, burst: fn(&T) -> &Burst, wake_sleeping: fn(&T, bool)) {
    let mut since_sweep = Duration::ZERO;
    loop {
        thread::sleep(PACER_TICK);
        let Some(owner) = owner.upgrade() else { return };
        let state = burst(&owner);
        if state.active.load(Ordering::SeqCst) {
            if !state.is_over() {
                since_sweep += PACER_TICK;
                if since_sweep >= state.nap_length() {
                    since_sweep = Duration::ZERO;
                    wake_sleeping(&owner, false);
                }
                continue;
            }
            // A thread that announces its nap after this store sees it and does not nap; one that
            // announced it before is woken by `wake_sleeping`, as is one parked with events queued.
            state.active.store(false, Ordering::SeqCst);
            wake_sleeping(&owner, true);
            since_sweep = Duration::ZERO;
        }
        // Stay a while after a burst: a publisher that pauses briefly between bursts then finds
        // this pacer still here (it serves the next burst) rather than starting a thread each time.
        let idle = state.now().saturating_sub(state.publish_ended.load(Ordering::Relaxed));
        if idle < nanos(BURST_GAP) {
            continue;
        }
        state.pacer_running.store(false, Ordering::SeqCst);
        // A burst that began after the last look found this pacer still running and started none;
        // carry on for it.
        if state.active.load(Ordering::SeqCst) && !state.pacer_running.swap(true, Ordering::SeqCst) {
            continue;
        }
        return;
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishes_close_together_make_a_burst_and_need_one_pacer() {
        let burst = Burst::new(Duration::from_millis(100));
        assert!(!burst.publish_starts(), "the first publish is not a burst");
        burst.publish_ends(10);
        assert_eq!(burst.nap(), None);
        assert!(burst.publish_starts(), "the second, at once, starts one");
        burst.publish_ends(10);
        assert_eq!(burst.nap(), Some(Duration::from_micros(400)), "40 µs per connection");
        assert!(!burst.publish_starts(), "the pacer is already running");
        assert!(!burst.is_over(), "a publish is in progress");
        burst.publish_ends(1000);
        assert_eq!(burst.nap(), Some(Duration::from_millis(40)));
        burst.publish_ends(5000);
        assert_eq!(burst.nap(), Some(Duration::from_millis(100)), "no longer than the maximum");
        burst.publish_ends(0);
        assert_eq!(burst.nap(), None, "no nap of zero, which would only spin");
    }

    #[test]
    fn no_delay_allowed_means_no_bursts() {
        let burst = Burst::new(Duration::ZERO);
        for _ in 0..3 {
            assert!(!burst.publish_starts());
            burst.publish_ends(10);
        }
        assert_eq!(burst.nap(), None);
    }

    #[test]
    fn the_pacer_ends_the_burst_once_publishing_stops() {
        let owner = std::sync::Arc::new((Burst::new(Duration::from_millis(100)), AtomicU64::new(0)));
        owner.0.publish_starts();
        owner.0.publish_ends(1);
        assert!(owner.0.publish_starts());
        owner.0.publish_ends(1);
        start_pacer(
            std::sync::Arc::downgrade(&owner),
            |owner| &owner.0,
            |owner, naps| {
                if naps {
                    owner.1.fetch_add(1, Ordering::SeqCst);
                }
            },
        );
        // Bounded wait for the pacer to see the burst end.
        let deadline = Instant::now() + Duration::from_secs(10);
        while owner.1.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(owner.1.load(Ordering::SeqCst), 1, "naps ended once");
        assert_eq!(owner.0.nap(), None, "the burst is over");
    }
}
