//! The load generator: N clients on loopback, spread over a few threads that each drive their share
//! with their own epoll instance (mio), so that reading is never what limits a run. The coordinating
//! thread (the caller) connects them, publishes, and waits for the deliveries to add up.

mod client;
mod stream;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};

use crate::contract::Publish;
use client::{Client, Deliveries};

/// Connections a worker keeps in their handshake at once, so that no server's accept queue overflows.
const HANDSHAKES_IN_FLIGHT: usize = 64;
/// How long a worker's `poll` may sleep before it looks at the stop flag.
const POLL_TICK: Duration = Duration::from_millis(5);
/// Errors kept for the report (the first ones; the rest are only counted).
const ERRORS_KEPT: usize = 4;

/// How to load a server.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// The server.
    pub addr: SocketAddr,
    /// How many `GET /events` clients to hold.
    pub clients: usize,
    /// Worker threads sharing the clients.
    pub threads: usize,
    /// The publishes that will follow, as the event count of each: every client expects ids
    /// `0..count` of each in turn (`[M]` for a burst, `[1; M]` for single-event publishes).
    pub plan: Vec<u32>,
}

/// State the workers and the coordinator share.
#[derive(Debug, Default)]
struct Shared {
    registered: AtomicUsize,
    failed: AtomicUsize,
    closed: AtomicUsize,
    delivered: AtomicU64,
    stop: AtomicBool,
    errors: Mutex<Vec<String>>,
    /// Kernel ids of the worker threads, for their CPU time.
    thread_ids: Mutex<Vec<u32>>,
}

impl Shared {
    fn note_error(&self, error: String) {
        let mut errors = self.errors.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if errors.len() < ERRORS_KEPT {
            errors.push(error);
        }
    }
}

/// A running set of clients.
#[derive(Debug)]
pub struct Fleet {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<WorkerReport>>,
    clients: usize,
    expected_per_client: u64,
}

/// What the clients saw, once stopped.
#[derive(Debug, Clone, Default)]
pub struct FleetReport {
    /// Clients asked for.
    pub clients: usize,
    /// Clients whose response head arrived.
    pub registered: usize,
    /// Registered clients whose stream closed before the end.
    pub closed: usize,
    /// Events received, all clients together.
    pub received: u64,
    /// Events registered clients should have received and did not.
    pub lost: u64,
    /// Events that came out of order (gaps, duplicates, extras).
    pub out_of_order: u64,
    /// Receive minus send time of every event, in ns, sorted.
    pub latencies_ns: Vec<u64>,
    /// Receive time of the last event, ns since the epoch (0 if none came).
    pub last_ns: u64,
    /// The first errors met (connects, reads).
    pub errors: Vec<String>,
}

#[derive(Debug, Default)]
struct WorkerReport {
    deliveries: Deliveries,
    out_of_order: u64,
    lost: u64,
}

impl Fleet {
    /// Starts the workers, which begin connecting at once.
    ///
    /// # Errors
    /// When a worker thread cannot be started.
    pub fn start(config: &FleetConfig) -> io::Result<Fleet> {
        let shared = Arc::new(Shared::default());
        let plan: Arc<[u32]> = config.plan.iter().copied().collect();
        let threads = config.threads.clamp(1, config.clients.max(1));
        let mut workers = Vec::with_capacity(threads);
        for index in 0..threads {
            // Spread the remainder over the first workers.
            let clients = config.clients / threads + usize::from(index < config.clients % threads);
            let (worker_shared, plan, addr) = (Arc::clone(&shared), Arc::clone(&plan), config.addr);
            let worker = thread::Builder::new()
                .name(format!("loadgen-{index}"))
                .spawn(move || run_worker(addr, clients, &plan, &worker_shared));
            match worker {
                Ok(worker) => workers.push(worker),
                Err(err) => {
                    shared.stop.store(true, Ordering::SeqCst);
                    return Err(err);
                }
            }
        }
        let expected_per_client = config.plan.iter().map(|&count| u64::from(count)).sum();
        Ok(Fleet { shared, workers, clients: config.clients, expected_per_client })
    }

    /// Waits until every client is registered or has failed, or `deadline` passes; returns how many
    /// are registered.
    pub fn wait_registered(&self, deadline: Instant) -> usize {
        wait_until(deadline, || {
            let settled = self.registered() + self.shared.failed.load(Ordering::SeqCst);
            settled >= self.clients
        });
        self.registered()
    }

    /// Clients registered so far.
    pub fn registered(&self) -> usize {
        self.shared.registered.load(Ordering::SeqCst)
    }

    /// Events received so far, all clients together.
    pub fn delivered(&self) -> u64 {
        self.shared.delivered.load(Ordering::SeqCst)
    }

    /// Waits until the registered clients have every event of the plan, or `deadline` passes; true
    /// if they have.
    pub fn wait_delivered(&self, deadline: Instant) -> bool {
        let expected = self.registered() as u64 * self.expected_per_client;
        wait_until(deadline, || self.delivered() >= expected)
    }

    /// CPU time each worker thread has used so far, in ns: a worker near one full core during a run
    /// would mean the load generator, not the server, set the pace.
    pub fn worker_cpu_ns(&self) -> Vec<u64> {
        let ids = self.shared.thread_ids.lock().unwrap_or_else(|p| p.into_inner()).clone();
        ids.into_iter().filter_map(|id| crate::system::thread_cpu_ns(id).ok()).collect()
    }

    /// Stops the workers, closes every client and returns what they saw.
    pub fn finish(self) -> FleetReport {
        self.shared.stop.store(true, Ordering::SeqCst);
        let mut report = FleetReport { clients: self.clients, ..FleetReport::default() };
        for worker in self.workers {
            let Ok(worker) = worker.join() else {
                report.errors.push("a load generator thread panicked".into());
                continue;
            };
            report.received += worker.deliveries.latencies_ns.len() as u64;
            report.latencies_ns.extend(worker.deliveries.latencies_ns);
            report.last_ns = report.last_ns.max(worker.deliveries.last_ns);
            report.out_of_order += worker.out_of_order;
            report.lost += worker.lost;
        }
        report.latencies_ns.sort_unstable();
        report.registered = self.shared.registered.load(Ordering::SeqCst);
        report.closed = self.shared.closed.load(Ordering::SeqCst);
        report.errors.extend(self.shared.errors.lock().unwrap_or_else(|p| p.into_inner()).drain(..));
        report
    }
}

/// Polls `done` every millisecond until it holds or `deadline` passes.
fn wait_until(deadline: Instant, mut done: impl FnMut() -> bool) -> bool {
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// One worker: connects its share of clients (a bounded number of handshakes at a time), then reads
/// until told to stop.
fn run_worker(addr: SocketAddr, count: usize, plan: &Arc<[u32]>, shared: &Shared) -> WorkerReport {
    let mut report = WorkerReport::default();
    if let Some(id) = crate::system::current_thread_id() {
        shared.thread_ids.lock().unwrap_or_else(|p| p.into_inner()).push(id);
    }
    let mut poll = match Poll::new() {
        Ok(poll) => poll,
        Err(err) => {
            shared.note_error(format!("epoll: {err}"));
            shared.failed.fetch_add(count, Ordering::SeqCst);
            return report;
        }
    };
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 256 * 1024];
    let mut clients: Vec<Option<Client>> = Vec::with_capacity(count);
    let mut handshaking = 0;
    let expected: u64 = plan.iter().map(|&c| u64::from(c)).sum();
    report.deliveries.latencies_ns.reserve(usize::try_from(expected).unwrap_or(0).saturating_mul(count));

    while !shared.stop.load(Ordering::Relaxed) {
        while clients.len() < count && handshaking < HANDSHAKES_IN_FLIGHT {
            match Client::connect(addr, Token(clients.len()), poll.registry(), Arc::clone(plan)) {
                Ok(client) => {
                    clients.push(Some(client));
                    handshaking += 1;
                }
                Err(err) => {
                    clients.push(None);
                    shared.failed.fetch_add(1, Ordering::SeqCst);
                    shared.note_error(format!("connect: {err}"));
                }
            }
        }
        if let Err(err) = poll.poll(&mut events, Some(POLL_TICK)) {
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            shared.note_error(format!("epoll wait: {err}"));
            break;
        }
        for event in &events {
            let Some(Some(client)) = clients.get_mut(event.token().0) else { continue };
            let mut delivered = 0;
            let change = client.on_ready(&mut buf, &mut report.deliveries, &mut delivered);
            if delivered > 0 {
                shared.delivered.fetch_add(delivered, Ordering::SeqCst);
            }
            if change.registered {
                handshaking -= 1;
                shared.registered.fetch_add(1, Ordering::SeqCst);
            }
            if let Some(why) = change.ended {
                if client.was_registered() {
                    shared.closed.fetch_add(1, Ordering::SeqCst);
                } else {
                    handshaking -= 1;
                    shared.failed.fetch_add(1, Ordering::SeqCst);
                }
                shared.note_error(why);
            }
        }
    }
    for client in clients.iter().flatten() {
        report.out_of_order += client.sequence.out_of_order;
        if client.was_registered() {
            report.lost += expected.saturating_sub(client.sequence.received);
        }
    }
    report
}

/// Sends `POST /publish?count=..&size=..` on a connection of its own and waits for the `200`.
///
/// # Errors
/// When the server cannot be reached, does not answer within `timeout`, or answers another status.
pub fn publish(addr: SocketAddr, publish: Publish, timeout: Duration) -> io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let request = format!(
        "POST {} HTTP/1.1\r\nHost: bench\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        publish.target()
    );
    stream.write_all(request.as_bytes())?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while memchr::memmem::find(&head, b"\r\n\r\n").is_none() {
        let read = stream.read(&mut buf)?;
        if read == 0 || head.len() > 16 * 1024 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "no complete answer to the publish"));
        }
        head.extend_from_slice(&buf[..read]);
    }
    let status_line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let status = String::from_utf8_lossy(status_line);
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(io::Error::other(format!("publish answered {status:?}")));
    }
    Ok(())
}
