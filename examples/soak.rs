//! A bounded soak on loopback: thousands of event streams held open while clients churn, stall and
//! die mid-stream and a publisher publishes; then the checks that matter for a server nobody watches.
//!
//! ```text
//! cargo run --release --example soak -- --connections 2000 --seconds 60
//! ```
//!
//! Options (defaults in brackets): `--connections N` streams held at once, healthy and stalled [2000];
//! `--seconds S` of churn in all [60], split into `--rounds N` measured rounds [2]; `--rate R` events
//! published per second [20]; `--event-bytes B` of data per event [1024]; `--stalled N` clients per
//! round that never read [10 % of the connections]; `--readers N` threads reading the healthy streams
//! [4]; `--churners N` threads that connect, read a little and die [2]; `--rate-events N` events per
//! run of the rate measurement, 0 to skip it [20000].
//!
//! What it does, all in this process, on 127.0.0.1:
//! 1. Raises `RLIMIT_NOFILE` to its hard limit, starts a server, runs a 10 s warm-up round (so that
//!    the allocator, the thread-stack cache and the log, which holds what this round publishes, are
//!    at their working size) and records the baseline:
//!    open file descriptors (`/proc/self/fd`), threads and RSS (`/proc/self/status`).
//! 2. Each round: healthy clients read every event and check that ids are consecutive (no gap, no
//!    duplicate, data matching its id); every so often one of them drops its connection and resumes
//!    with `Last-Event-ID`, and must get exactly the events it missed. Stalled clients connect, never
//!    read, and are each sent 6 MiB on their own (more than the loopback socket buffers hold, so
//!    their connection threads block in writes at once). Churners connect and are killed (a reset)
//!    before sending their head, right after the response head, or after reading a few events (some
//!    resuming by `Last-Event-ID` and checking the replay), or close cleanly. When the publisher
//!    stops, every healthy client must reach the last event; then every client leaves, and file
//!    descriptors and threads must be back at the baseline exactly, RSS within a tolerance.
//! 3. After shutdown the handler holds no connection, and descriptors and threads are back at what
//!    they were before the server started.
//! 4. The rate measurement: one publisher broadcasting to 100 healthy clients, as fast as they read
//!    (at most 128 events ahead of the slowest), with and without 100 more clients that stopped
//!    reading entirely (6 MiB queued for each, their threads blocked in writes), five runs each,
//!    alternating; under the default overflow policy (a stalled client is closed once the events it has
//!    not read leave the log) and under `DropOldest` (it is moved ahead instead; the two differ only
//!    once its write returns). Formerly each connection had a queue of its own that the publisher
//!    filled: a stalled client then cost the publisher a push per event; now it costs nothing.
//!
//! It prints a summary table and exits with status 1 if any check failed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use sse_handler::client::{self, Body, EventStream, Item, ReceivedEvent};
use sse_handler::{Config, Event, OverflowPolicy, Server, ServerConfig, ServerHandle, SseHandler};

/// The longest any client waits for a connection or a read.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Stack of every connection thread and client thread: the loops need little.
const STACK: usize = 128 * 1024;
/// How long the healthy clients get to catch up with the last event once publishing stops.
const DRAIN: Duration = Duration::from_secs(60);
/// How much RSS may stay above the warm baseline once every client has left (the allocator keeps some
/// of what a peak freed).
const RSS_TOLERANCE_KIB: u64 = 32 * 1024;
/// How much RSS may grow from the first measured round to the last.
const RSS_GROWTH_KIB: u64 = 16 * 1024;
/// Length of the warm-up round.
const WARM_UP: Duration = Duration::from_secs(10);

fn main() {
    let options = match Options::parse() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("soak: {message}");
            std::process::exit(2);
        }
    };
    let nofile = raise_nofile_limit(&options);
    println!(
        "soak: {} streams held, {} s of churn, {} events/s of {} bytes, {} stalled, {} reader and {} churn threads",
        options.connections,
        options.seconds,
        options.rate,
        options.event_bytes,
        options.stalled,
        options.readers,
        options.churners
    );
    println!("RLIMIT_NOFILE: {nofile}; thread stacks: {} KiB", STACK / 1024);

    let mut report = Report::default();
    report.row("RLIMIT_NOFILE (soft)", nofile);
    soak(&options, &mut report);
    if options.rate_events > 0 {
        measure_rate(&options, &mut report);
    }
    report.print();
    if !report.all_passed() {
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------------------
// The soak

/// What the threads of one round share.
struct Shared {
    addr: SocketAddr,
    /// Churners stop at this.
    stop_churn: AtomicBool,
    /// The first id this round publishes; `final_id` is the last one published so far.
    first_id: u64,
    final_id: AtomicU64,
    /// The publisher has published its last event.
    published_all: AtomicBool,
    /// The drain took too long: readers stop where they are.
    give_up: AtomicBool,
}

fn soak(options: &Options, report: &mut Report) {
    let before_server = Resources::wait_settled(None);
    let close_reasons = Arc::new(Mutex::new(BTreeMap::<String, u64>::new()));
    let reasons = Arc::clone(&close_reasons);
    let config = Config::default()
        .heartbeat(Duration::from_secs(1))
        .send_timeout(Duration::from_secs(5))
        .queue_capacity(64)
        .queue_max_bytes(16 << 20)
        // The log holds what the warm-up round publishes, so that it is at its working size when the
        // baseline is taken, as the allocator is: a log still filling grows RSS with every event (by
        // up to a page for each small one, published amid the churn), which is its bound, not a leak.
        // Ten seconds of events is still far more than any resume needs.
        .history_capacity(history_capacity(options))
        .history_max_bytes(256 << 20)
        .reconnect_after(Duration::from_millis(100));
    let handler = SseHandler::builder(config)
        .on_close(move |_, reason| *reasons.lock().unwrap().entry(format!("{reason:?}")).or_default() += 1)
        .build()
        .expect("valid config");
    let server_config = ServerConfig::default()
        .max_connections(options.connections * 2 + 1000)
        .thread_stack_size(STACK)
        .shutdown_timeout(Duration::from_secs(5));
    let server = Server::bind("127.0.0.1:0")
        .expect("bind")
        .config(server_config)
        .stream("/events", &handler)
        .spawn()
        .expect("spawn");

    // A short round first, so that the baseline is taken with the allocator and the thread-stack cache
    // already at their working size; what the measured rounds leave behind is compared with it.
    let warm_up = run_round(options, &handler, &server, WARM_UP, 1);
    let baseline = Resources::wait_settled(None);
    println!("baseline after a {} s warm-up round: {baseline}", WARM_UP.as_secs());

    let per_round = Duration::from_secs(options.seconds) / options.rounds as u32;
    let mut rounds = Vec::new();
    let mut after_rounds = Vec::new();
    let mut next_id = warm_up.final_id + 1;
    for _ in 0..options.rounds {
        let round = run_round(options, &handler, &server, per_round, next_id);
        next_id = round.final_id + 1;
        rounds.push(round);
        let after = Resources::wait_settled(Some(baseline));
        println!("after round {} (every client gone): {after}", rounds.len());
        after_rounds.push(after);
    }
    let stats = handler.stats();
    let shutdown = server.shutdown_within(Duration::from_secs(5));
    let after_shutdown = Resources::wait_settled(Some(before_server));
    println!("after shutdown: {after_shutdown} (before the server started: {before_server})");

    let sum = |field: fn(&Round) -> u64| rounds.iter().map(field).sum::<u64>();
    let read = rounds.iter().fold(Tally::default(), |all, round| all.merge(round.read.clone()));
    let churned = rounds.iter().fold(Tally::default(), |all, round| all.merge(round.churned.clone()));
    let all = read.clone().merge(churned.clone());
    let mut latencies: Vec<Duration> =
        rounds.iter().flat_map(|round| round.publish_latencies.clone()).collect();
    latencies.sort();
    let percentile = |p: usize| latencies.get(latencies.len() * p / 100).copied().unwrap_or_default();
    let peak = rounds.iter().fold(Peak::default(), |peak, round| peak.max(&round.peak));
    let healthy = options.connections - options.stalled;

    report.row(
        "measured rounds",
        format!(
            "{} of {} s each, after a {} s warm-up round",
            options.rounds,
            per_round.as_secs(),
            WARM_UP.as_secs()
        ),
    );
    report.row("streams held at once (peak, handler)", peak.streams);
    report.row("connections served at once (peak, server)", peak.connections);
    report.row("peak open file descriptors / threads / RSS", peak.resources);
    report.row("healthy clients per round (reading, checking every id)", healthy);
    report.row("stalled clients (never read; 6 MiB queued for each)", sum(|r| r.stalled));
    report.row(
        "  dropped by the server before they left (the latest may not have stalled yet)",
        sum(|r| r.stalled_dropped),
    );
    report.row("healthy resumes by Last-Event-ID (planned)", read.resumes);
    report.row("healthy reconnects after the server ended a stream", read.unplanned_reconnects);
    report.row("churn cycles (connect, then die or leave)", churned.churn_cycles);
    report.row("  killed before sending a head", churned.killed_before_head);
    report.row("  killed (reset) mid-stream", churned.killed);
    report.row("  closed cleanly", churned.clean_closes);
    report.row("events published (send_all)", sum(|r| r.final_id + 1 - r.first_id));
    report.row(
        "publisher: send_all latency p50 / p99 / max",
        format!(
            "{:?} / {:?} / {:?}",
            percentile(50),
            percentile(99),
            latencies.last().copied().unwrap_or_default()
        ),
    );
    report.row("events checked by clients", all.events_checked);
    report
        .row("close reasons (server side, warm-up included)", format_reasons(&close_reasons.lock().unwrap()));
    report.row(
        "handler stats (warm-up included)",
        format!(
            "opened {}, closed {}, sent {}, slow-client disconnects {}, replays served {}, missed {}, heartbeats {}",
            stats.connections_opened,
            stats.connections_closed,
            stats.events_sent,
            stats.slow_client_disconnects,
            stats.replays_served,
            stats.replays_missed,
            stats.heartbeats
        ),
    );
    report.row("resources: warm baseline", baseline);
    for (n, after) in after_rounds.iter().enumerate() {
        report.row(&format!("resources: after round {} (every client gone)", n + 1), after);
    }
    report
        .row("resources: before the server / after shutdown", format!("{before_server} / {after_shutdown}"));

    report.check(
        "no healthy client missed, repeated or garbled an event",
        all.gaps == 0 && all.duplicates == 0 && all.corrupt == 0,
        format!(
            "{} gaps ({} events missed), {} duplicates, {} garbled",
            all.gaps, all.missed, all.duplicates, all.corrupt
        ),
    );
    report.check(
        "every healthy client reached the last event of its round",
        read.short_at_end == 0,
        format!("{} short", read.short_at_end),
    );
    report.check(
        "every resume found its Last-Event-ID in the history",
        stats.replays_missed == 0,
        format!("{} missed", stats.replays_missed),
    );
    let fds: Vec<usize> = after_rounds.iter().map(|r| r.fds).collect();
    report.check(
        "file descriptors back to the baseline",
        fds.iter().all(|&fds| fds == baseline.fds) && after_shutdown.fds == before_server.fds,
        format!(
            "{} -> {fds:?} after each round; {} -> {} after shutdown",
            baseline.fds, before_server.fds, after_shutdown.fds
        ),
    );
    let threads: Vec<usize> = after_rounds.iter().map(|r| r.threads).collect();
    report.check(
        "threads back to the baseline",
        threads.iter().all(|&threads| threads == baseline.threads)
            && after_shutdown.threads == before_server.threads,
        format!(
            "{} -> {threads:?} after each round; {} -> {} after shutdown",
            baseline.threads, before_server.threads, after_shutdown.threads
        ),
    );
    let rss: Vec<String> =
        after_rounds.iter().map(|r| format!("{:+}", r.rss_kib as i64 - baseline.rss_kib as i64)).collect();
    report.check(
        &format!("RSS back to the baseline (within {} MiB)", RSS_TOLERANCE_KIB / 1024),
        after_rounds.iter().all(|r| r.rss_kib <= baseline.rss_kib + RSS_TOLERANCE_KIB),
        format!("{} KiB, then {} KiB after each round", baseline.rss_kib, rss.join(", ")),
    );
    // A leak grows with every round; what the allocator keeps after a peak does not.
    let (first, last) = (after_rounds[0].rss_kib, after_rounds[after_rounds.len() - 1].rss_kib);
    report.check(
        &format!("RSS does not grow from round to round (within {} MiB)", RSS_GROWTH_KIB / 1024),
        last <= first + RSS_GROWTH_KIB,
        format!("{first} KiB after the first round, {last} KiB after the last"),
    );
    report.check(
        "no connection left after shutdown",
        handler.connection_count() == 0 && shutdown.still_running == 0,
        format!(
            "handler count {}, threads still running {}, forced {}",
            handler.connection_count(),
            shutdown.still_running,
            shutdown.forced
        ),
    );
}

/// Events the warm-up round publishes: the log's size.
fn history_capacity(options: &Options) -> usize {
    (u64::from(options.rate) * WARM_UP.as_secs()).max(100) as usize
}

/// What one round did.
struct Round {
    first_id: u64,
    final_id: u64,
    read: Tally,
    churned: Tally,
    publish_latencies: Vec<Duration>,
    stalled: u64,
    stalled_dropped: u64,
    peak: Peak,
}

/// One round: the healthy clients connect and read, the publisher publishes (ids from `first_id`)
/// for `length`, churners churn, stalled clients come in; then publishing stops, the healthy
/// clients catch up, and every client leaves. Returns once the server holds no connection.
fn run_round(
    options: &Options,
    handler: &SseHandler,
    server: &ServerHandle,
    length: Duration,
    first_id: u64,
) -> Round {
    let addr = server.local_addr();
    let shared = Arc::new(Shared {
        addr,
        stop_churn: AtomicBool::new(false),
        first_id,
        final_id: AtomicU64::new(first_id - 1),
        published_all: AtomicBool::new(false),
        give_up: AtomicBool::new(false),
    });
    let healthy = options.connections - options.stalled;
    let readers: Vec<JoinHandle<Tally>> = (0..options.readers)
        .map(|n| {
            let count = healthy / options.readers + usize::from(n < healthy % options.readers);
            let shared = Arc::clone(&shared);
            spawn(&format!("reader-{n}"), move || run_reader(&shared, count))
        })
        .collect();
    let started = Instant::now();
    wait_for("the healthy clients to connect", Duration::from_secs(120), || {
        handler.connection_count() >= healthy
    });
    println!("{healthy} healthy clients connected in {:.1} s", started.elapsed().as_secs_f64());

    let round_end = Instant::now() + length;
    let publisher = {
        let (handler, shared) = (handler.clone(), Arc::clone(&shared));
        let (rate, bytes) = (options.rate, options.event_bytes);
        spawn("publisher", move || run_publisher(&handler, &shared, rate, bytes, round_end))
    };
    let churners: Vec<JoinHandle<Tally>> = (0..options.churners)
        .map(|n| {
            let shared = Arc::clone(&shared);
            spawn(&format!("churner-{n}"), move || run_churner(&shared, 0x9E37_79B9 + first_id + n as u64))
        })
        .collect();

    // Watch the peaks, and bring stalled clients in over the first 80 % of the round: half at once,
    // the rest a batch a second.
    let mut stalled = Vec::with_capacity(options.stalled);
    let mut peak = Peak::default();
    let stall_for = length * 4 / 5;
    let per_second = (options.stalled / 2).div_ceil(stall_for.as_secs().max(1) as usize);
    let mut next_batch = Instant::now();
    let mut batch = options.stalled / 2;
    while Instant::now() < round_end {
        if Instant::now() >= next_batch && stalled.len() < options.stalled {
            let count = batch.min(options.stalled - stalled.len());
            stalled.extend(stall_clients(addr, handler, count));
            batch = per_second;
            next_batch += Duration::from_secs(1);
            if next_batch > started + stall_for {
                batch = options.stalled - stalled.len();
            }
        }
        peak.sample(handler, server);
        thread::sleep(Duration::from_millis(100));
    }

    shared.stop_churn.store(true, Ordering::SeqCst);
    let churned = churners.into_iter().map(join).fold(Tally::default(), Tally::merge);
    let publish_latencies = join(publisher);
    let final_id = shared.final_id.load(Ordering::SeqCst);
    let drain_started = Instant::now();
    while readers.iter().any(|reader| !reader.is_finished()) {
        if drain_started.elapsed() > DRAIN {
            shared.give_up.store(true, Ordering::SeqCst);
        }
        peak.sample(handler, server);
        thread::sleep(Duration::from_millis(50));
    }
    let read = readers.into_iter().map(join).fold(Tally::default(), Tally::merge);
    let stalled_addrs: Vec<Option<SocketAddr>> = stalled.iter().map(|s| s.local_addr().ok()).collect();
    let stalled_still_served = handler
        .connection_ids()
        .into_iter()
        .filter_map(|id| handler.connection_info(id))
        .filter(|info| stalled_addrs.contains(&info.peer()))
        .count();
    let stalled_count = stalled.len();
    drop(stalled);
    println!(
        "published events {first_id}..={final_id}; healthy clients caught up in {:.1} s",
        drain_started.elapsed().as_secs_f64()
    );
    wait_for("every stream to be released", Duration::from_secs(30), || {
        handler.connection_count() == 0 && server.connection_count() == 0
    });
    Round {
        first_id,
        final_id,
        read,
        churned,
        publish_latencies,
        stalled: stalled_count as u64,
        stalled_dropped: (stalled_count - stalled_still_served) as u64,
        peak,
    }
}

/// Publishes events with ids from the round's first one at `rate` a second until `until`; returns how
/// long each `send_all` took.
fn run_publisher(
    handler: &SseHandler,
    shared: &Shared,
    rate: u32,
    bytes: usize,
    until: Instant,
) -> Vec<Duration> {
    let period = Duration::from_secs(1) / rate;
    let padding = "p".repeat(bytes);
    let mut latencies = Vec::new();
    let mut next = Instant::now();
    let mut id = shared.first_id;
    while Instant::now() < until {
        let event =
            Event::builder().id(id.to_string()).data(format!("{id} {padding}")).build().expect("valid");
        let started = Instant::now();
        handler.send_all(event).expect("publish");
        latencies.push(started.elapsed());
        shared.final_id.store(id, Ordering::SeqCst);
        id += 1;
        next += period;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
    }
    shared.published_all.store(true, Ordering::SeqCst);
    latencies
}

/// Reads `count` healthy streams without blocking, checking every event, and now and then makes one
/// of them leave and resume by `Last-Event-ID`. Ends when every stream has the last event.
fn run_reader(shared: &Shared, count: usize) -> Tally {
    const RESUME_EVERY: Duration = Duration::from_millis(100);
    let mut tally = Tally::default();
    let mut streams: Vec<Tracked> = (0..count).map(|_| reopen(shared.addr, 0, &mut tally)).collect();
    for stream in &streams {
        stream.events.get_ref().stream().set_nonblocking(true).expect("non-blocking");
    }
    let mut next_resume = Instant::now() + RESUME_EVERY;
    let mut resume_next = 0;
    loop {
        let mut progress = false;
        for stream in &mut streams {
            loop {
                match stream.events.next_item() {
                    Ok(Some(Item::Event(event))) => stream.check(&event, &mut tally),
                    Ok(Some(_)) => {} // heartbeats and retry hints
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                    Ok(None) | Err(_) => {
                        // The server ended this stream (or it broke): resume where it left off.
                        tally.unplanned_reconnects += 1;
                        *stream = reopen(shared.addr, stream.last, &mut tally);
                        stream.events.get_ref().stream().set_nonblocking(true).expect("non-blocking");
                        break;
                    }
                }
                progress = true;
            }
        }
        let published_all = shared.published_all.load(Ordering::SeqCst);
        let final_id = shared.final_id.load(Ordering::SeqCst);
        if published_all && streams.iter().all(|stream| stream.last >= final_id) {
            break;
        }
        if shared.give_up.load(Ordering::SeqCst) {
            break;
        }
        if !published_all && Instant::now() >= next_resume && !streams.is_empty() {
            let index = resume_next % streams.len();
            resume_next += 1;
            let last = streams[index].last;
            // Leave mid-stream, losing whatever the old connection still had in flight.
            streams[index] = reopen(shared.addr, last, &mut tally);
            streams[index].events.get_ref().stream().set_nonblocking(true).expect("non-blocking");
            tally.resumes += 1;
            next_resume += RESUME_EVERY;
        }
        if !progress {
            thread::sleep(Duration::from_millis(2));
        }
    }
    let final_id = shared.final_id.load(Ordering::SeqCst);
    tally.short_at_end = streams.iter().filter(|stream| stream.last != final_id).count() as u64;
    tally
}

/// Connects and dies, over and over, in every way a client can: before its head, right after the
/// response head, or after reading a few events (resuming by `Last-Event-ID` where it left off, and
/// checking the replay), by a reset or a clean close.
fn run_churner(shared: &Shared, seed: u64) -> Tally {
    let mut tally = Tally::default();
    let mut rng = Rng(seed);
    let mut last = 0;
    while !shared.stop_churn.load(Ordering::SeqCst) {
        tally.churn_cycles += 1;
        match rng.below(4) {
            0 => {
                if let Ok(mut socket) = TcpStream::connect(shared.addr) {
                    let _ = socket.write_all(b"GET /events HTTP/1.1\r\nLast-Event-");
                    kill(&socket);
                    tally.killed_before_head += 1;
                }
            }
            1 => {
                let stream = reopen(shared.addr, last, &mut tally);
                kill(stream.events.get_ref().stream());
                tally.killed += 1;
            }
            _ => {
                let mut stream = reopen(shared.addr, last, &mut tally);
                let mut wanted = 1 + rng.below(6);
                // Heartbeats keep coming after the publisher stops: look at the stop flag on each.
                while wanted > 0 && !shared.stop_churn.load(Ordering::SeqCst) {
                    match stream.events.next_item() {
                        Ok(Some(Item::Event(event))) => {
                            stream.check(&event, &mut tally);
                            wanted -= 1;
                        }
                        Ok(Some(_)) => {}
                        Ok(None) | Err(_) => break,
                    }
                }
                last = stream.last;
                if rng.below(2) == 0 {
                    kill(stream.events.get_ref().stream());
                    tally.killed += 1;
                } else {
                    let _ = stream.events.get_ref().stream().shutdown(std::net::Shutdown::Both);
                    tally.clean_closes += 1;
                }
            }
        }
    }
    tally
}

/// Makes the coming close a reset (RST), as when a process dies with data still in flight.
fn kill(socket: &TcpStream) {
    let _ = socket2::SockRef::from(socket).set_linger(Some(Duration::ZERO));
}

/// A stream whose events are checked: ids consecutive, data starting with its id.
struct Tracked {
    events: EventStream<Body>,
    /// The last id seen (0: none yet).
    last: u64,
}

impl Tracked {
    fn check(&mut self, event: &ReceivedEvent, tally: &mut Tally) {
        tally.events_checked += 1;
        let Ok(id) = event.last_event_id.parse::<u64>() else {
            tally.corrupt += 1;
            return;
        };
        if !event.data.starts_with(&format!("{id} ")) {
            tally.corrupt += 1;
        }
        if self.last != 0 && id <= self.last {
            tally.duplicates += 1;
        } else if self.last != 0 && id > self.last + 1 {
            tally.gaps += 1;
            tally.missed += id - self.last - 1;
        }
        self.last = self.last.max(id);
    }
}

/// Opens a stream, resuming after `last` when it is not 0.
fn open_stream(addr: SocketAddr, last: u64) -> io::Result<Tracked> {
    let last_text = last.to_string();
    let headers: &[(&str, &str)] = if last == 0 { &[] } else { &[("Last-Event-ID", &last_text)] };
    let response = client::connect(addr, "/events", headers, TIMEOUT)?;
    if response.status() != 200 {
        return Err(io::Error::other(format!("status {}", response.status())));
    }
    Ok(Tracked { events: response.into_events(), last })
}

/// A client that asks for the stream and never reads a byte of it. Its receive buffer is small (as a
/// slow phone's effective one is), so the server's writes to it block within seconds rather than
/// after the kernel has buffered megabytes.
fn open_stalled(addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
    socket.set_recv_buffer_size(4096)?;
    socket.connect_timeout(&addr.into(), TIMEOUT)?;
    let mut stream = TcpStream::from(socket);
    stream.write_all(
        format!("GET /events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n").as_bytes(),
    )?;
    Ok(stream)
}

/// As [`open_stream`], trying again for a while if the connection fails.
fn reopen(addr: SocketAddr, last: u64, tally: &mut Tally) -> Tracked {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match open_stream(addr, last) {
            Ok(stream) => return stream,
            Err(err) if Instant::now() < deadline => {
                tally.connect_failures += 1;
                eprintln!("connect failed, trying again: {err}");
                thread::sleep(Duration::from_millis(20));
            }
            Err(err) => panic!("cannot connect for {TIMEOUT:?}: {err}"),
        }
    }
}

/// What the client threads counted.
#[derive(Debug, Default, Clone)]
struct Tally {
    events_checked: u64,
    gaps: u64,
    missed: u64,
    duplicates: u64,
    corrupt: u64,
    resumes: u64,
    unplanned_reconnects: u64,
    connect_failures: u64,
    churn_cycles: u64,
    killed_before_head: u64,
    killed: u64,
    clean_closes: u64,
    short_at_end: u64,
}

impl Tally {
    fn merge(self, other: Tally) -> Tally {
        Tally {
            events_checked: self.events_checked + other.events_checked,
            gaps: self.gaps + other.gaps,
            missed: self.missed + other.missed,
            duplicates: self.duplicates + other.duplicates,
            corrupt: self.corrupt + other.corrupt,
            resumes: self.resumes + other.resumes,
            unplanned_reconnects: self.unplanned_reconnects + other.unplanned_reconnects,
            connect_failures: self.connect_failures + other.connect_failures,
            churn_cycles: self.churn_cycles + other.churn_cycles,
            killed_before_head: self.killed_before_head + other.killed_before_head,
            killed: self.killed + other.killed,
            clean_closes: self.clean_closes + other.clean_closes,
            short_at_end: self.short_at_end + other.short_at_end,
        }
    }
}

#[derive(Default)]
struct Peak {
    streams: usize,
    connections: usize,
    resources: Resources,
}

impl Peak {
    fn max(self, other: &Peak) -> Peak {
        let resources = Resources {
            fds: self.resources.fds.max(other.resources.fds),
            threads: self.resources.threads.max(other.resources.threads),
            rss_kib: self.resources.rss_kib.max(other.resources.rss_kib),
        };
        Peak {
            streams: self.streams.max(other.streams),
            connections: self.connections.max(other.connections),
            resources,
        }
    }

    fn sample(&mut self, handler: &SseHandler, server: &ServerHandle) {
        self.streams = self.streams.max(handler.connection_count());
        self.connections = self.connections.max(server.connection_count());
        let now = Resources::now();
        self.resources.fds = self.resources.fds.max(now.fds);
        self.resources.threads = self.resources.threads.max(now.threads);
        self.resources.rss_kib = self.resources.rss_kib.max(now.rss_kib);
    }
}

fn format_reasons(reasons: &BTreeMap<String, u64>) -> String {
    reasons.iter().map(|(reason, n)| format!("{reason} {n}")).collect::<Vec<_>>().join(", ")
}

// ---------------------------------------------------------------------------------------------------
// The rate measurement

/// Healthy clients in the rate measurement, and as many stalled ones.
const RATE_CLIENTS: usize = 100;
/// How far the publisher may run ahead of the slowest healthy client.
const WINDOW: u64 = 128;
/// Runs with and without stalled clients, alternating, per overflow policy.
const RATE_RUNS: usize = 5;

fn measure_rate(options: &Options, report: &mut Report) {
    for policy in [OverflowPolicy::Disconnect, OverflowPolicy::DropOldest] {
        measure_rate_under(policy, options, report);
    }
}

/// One publisher, `RATE_CLIENTS` healthy clients, and in every other run as many clients that stopped
/// reading entirely, their connection threads blocked in writes from the start. Broadcasts go to the
/// log, which the stalled ones do not read: they cost the publisher nothing under either policy.
fn measure_rate_under(policy: OverflowPolicy, options: &Options, report: &mut Report) {
    let config = Config::default()
        .heartbeat(Duration::from_secs(1))
        .overflow(policy)
        .queue_max_bytes(64 << 20)
        .send_timeout(Duration::from_secs(120))
        .history_capacity(4 * WINDOW as usize);
    let handler = SseHandler::new(config).expect("valid config");
    let server = Server::bind("127.0.0.1:0")
        .expect("bind")
        .config(ServerConfig::default().thread_stack_size(STACK))
        .stream("/events", &handler)
        .spawn()
        .expect("spawn");
    let addr = server.local_addr();

    let acked: Arc<Vec<AtomicU64>> = Arc::new((0..RATE_CLIENTS).map(|_| AtomicU64::new(0)).collect());
    let anomalies = Arc::new(AtomicU64::new(0));
    let readers: Vec<JoinHandle<()>> = (0..RATE_CLIENTS)
        .map(|n| {
            let mut stream = open_stream(addr, 0).expect("connect");
            let (acked, anomalies) = (Arc::clone(&acked), Arc::clone(&anomalies));
            spawn(&format!("rate-reader-{n}"), move || {
                let mut tally = Tally::default();
                loop {
                    match stream.events.next_event() {
                        Ok(Some(event)) => {
                            stream.check(&event, &mut tally);
                            acked[n].store(stream.last, Ordering::Release);
                        }
                        Err(err)
                            if matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
                        Ok(None) | Err(_) => break,
                    }
                }
                anomalies.fetch_add(tally.gaps + tally.duplicates + tally.corrupt, Ordering::Relaxed);
            })
        })
        .collect();

    let mut without = Vec::new();
    let mut with = Vec::new();
    let mut next_id = 0;
    for run in 0..2 * RATE_RUNS {
        let stalled_run = run % 2 == 1;
        let stalled = if stalled_run { stall_clients(addr, &handler, RATE_CLIENTS) } else { Vec::new() };
        let not_stuck = not_stalled(&handler, &stalled);
        if not_stuck > 0 {
            eprintln!("soak: {not_stuck} of {RATE_CLIENTS} clients that never read were not stalled");
            std::process::exit(1);
        }
        let dropped_before = handler.stats().slow_client_disconnects;
        let run = publish_run(&handler, &acked, &mut next_id, options.rate_events);
        let dropped = handler.stats().slow_client_disconnects - dropped_before;
        println!(
            "{policy:?} run: {} events to {RATE_CLIENTS} healthy clients and {} stalled ones ({dropped} dropped \
             during the run): {:.0} events/s, {:.1} us in send_all per event",
            options.rate_events,
            stalled.len(),
            run.rate,
            run.publish_micros
        );
        drop(stalled);
        if stalled_run { &mut with } else { &mut without }.push(run);
        wait_for("the stalled clients to be released", Duration::from_secs(30), || {
            handler.connection_count() == RATE_CLIENTS
        });
    }
    server.shutdown_within(Duration::from_secs(5));
    readers.into_iter().for_each(join);

    let rate = |runs: &[Run]| median(&runs.iter().map(|run| run.rate).collect::<Vec<_>>());
    let cost = |runs: &[Run]| median(&runs.iter().map(|run| run.publish_micros).collect::<Vec<_>>());
    let ratio = rate(&with) / rate(&without);
    report.row(
        &format!("{policy:?}: broadcast to {RATE_CLIENTS} healthy clients, alone / with {RATE_CLIENTS} stalled"),
        format!(
            "{:.0} / {:.0} events/s (ratio {ratio:.3}); send_all {:.1} / {:.1} us per event (medians of {RATE_RUNS})",
            rate(&without),
            rate(&with),
            cost(&without),
            cost(&with)
        ),
    );
    let name = format!("{policy:?}: {RATE_CLIENTS} stalled clients cost the broadcast under 10 %");
    report.check(&name, ratio >= 0.9, format!("ratio {ratio:.3}"));
    report.check(
        &format!("{policy:?} rate runs: no healthy client missed, repeated or garbled an event"),
        anomalies.load(Ordering::Relaxed) == 0,
        format!("{} anomalies", anomalies.load(Ordering::Relaxed)),
    );
}

/// Events of 1 MiB sent to each client that never reads.
const FILLERS: u64 = 6;

/// Connects `count` clients that never read, and sends each of them (alone) more than the kernel buffers
/// between them and the server hold, so that their connection threads are blocked in writes from the
/// start: loopback send buffers grow to 4 MiB, so a client that merely stops reading can take
/// megabytes before it stalls anything.
fn stall_clients(addr: SocketAddr, handler: &SseHandler, count: usize) -> Vec<TcpStream> {
    let sockets: Vec<TcpStream> = (0..count).map(|_| open_stalled(addr).expect("connect")).collect();
    let addrs: Vec<Option<SocketAddr>> = sockets.iter().map(|socket| socket.local_addr().ok()).collect();
    let find_ids = || {
        let ids = handler.connection_ids().into_iter();
        ids.filter(|id| handler.connection_info(*id).is_some_and(|info| addrs.contains(&info.peer())))
            .collect::<Vec<_>>()
    };
    wait_for("the stalled clients to be served", TIMEOUT, || find_ids().len() == count);
    let ids = find_ids();
    let filler = Event::data("f".repeat(1 << 20));
    for _ in 0..FILLERS {
        for id in &ids {
            let _ = handler.send_one(*id, filler.clone());
        }
    }
    sockets
}

/// How many of these connections wrote out everything they were sent: with more queued for them than
/// the kernel buffers hold, a connection whose client never reads cannot have.
fn not_stalled(handler: &SseHandler, sockets: &[TcpStream]) -> usize {
    // A write that is not stuck ends within milliseconds; give every thread time to get there.
    thread::sleep(Duration::from_secs(1));
    let addrs: Vec<Option<SocketAddr>> = sockets.iter().map(|socket| socket.local_addr().ok()).collect();
    let ids = handler.connection_ids().into_iter();
    ids.filter_map(|id| handler.connection_info(id).zip(handler.connection_stats(id)))
        .filter(|(info, stats)| addrs.contains(&info.peer()) && stats.sent >= FILLERS)
        .count()
}

struct Run {
    rate: f64,
    publish_micros: f64,
}

/// Publishes `count` events as fast as the healthy clients read them.
fn publish_run(handler: &SseHandler, acked: &[AtomicU64], next_id: &mut u64, count: usize) -> Run {
    let slowest = || acked.iter().map(|a| a.load(Ordering::Acquire)).min().unwrap_or(0);
    let mut publishing = Duration::ZERO;
    let started = Instant::now();
    for _ in 0..count {
        *next_id += 1;
        while *next_id - slowest() > WINDOW {
            thread::sleep(Duration::from_micros(50));
        }
        let event = Event::builder().id(next_id.to_string()).data(format!("{next_id} {}", "r".repeat(100)));
        let event = event.build().expect("valid");
        let publish_started = Instant::now();
        handler.send_all(event).expect("publish");
        publishing += publish_started.elapsed();
    }
    wait_for("every healthy client to read the run", TIMEOUT, || slowest() == *next_id);
    Run {
        rate: count as f64 / started.elapsed().as_secs_f64(),
        publish_micros: publishing.as_secs_f64() * 1e6 / count as f64,
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

// ---------------------------------------------------------------------------------------------------
// Resources, options, the report, small helpers

/// Open file descriptors, threads and resident memory of this process.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Resources {
    fds: usize,
    threads: usize,
    rss_kib: u64,
}

impl Resources {
    fn now() -> Resources {
        let fds = std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count);
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|value| value.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Resources { fds, threads: field("Threads:") as usize, rss_kib: field("VmRSS:") }
    }

    /// The resources once ending threads have gone: waits (up to 10 s) until the thread and
    /// descriptor counts reach `target`'s, or else stop changing.
    fn wait_settled(target: Option<Resources>) -> Resources {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut previous = Resources::now();
        let mut steady_since = Instant::now();
        loop {
            thread::sleep(Duration::from_millis(50));
            let now = Resources::now();
            let reached = target.is_some_and(|t| now.threads <= t.threads && now.fds <= t.fds);
            if (now.threads, now.fds) != (previous.threads, previous.fds) {
                steady_since = Instant::now();
            }
            let steady = steady_since.elapsed() >= Duration::from_millis(500);
            if reached || (target.is_none() && steady) || Instant::now() > deadline {
                return now;
            }
            previous = now;
        }
    }
}

impl std::fmt::Display for Resources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} fds, {} threads, {} MiB RSS", self.fds, self.threads, self.rss_kib / 1024)
    }
}

struct Options {
    connections: usize,
    seconds: u64,
    rate: u32,
    event_bytes: usize,
    stalled: usize,
    readers: usize,
    churners: usize,
    rate_events: usize,
    rounds: usize,
}

impl Options {
    fn parse() -> Result<Options, String> {
        let mut values = BTreeMap::new();
        let mut args = std::env::args().skip(1);
        while let Some(name) = args.next() {
            let value = args.next().ok_or(format!("{name} needs a value"))?;
            let number: u64 = value.parse().map_err(|_| format!("{name}: {value:?} is not a number"))?;
            values.insert(name, number);
        }
        let mut take = |name: &str, default: u64| values.remove(name).unwrap_or(default);
        let connections = take("--connections", 2000) as usize;
        let options = Options {
            connections,
            seconds: take("--seconds", 60),
            rate: take("--rate", 20) as u32,
            event_bytes: take("--event-bytes", 1024) as usize,
            stalled: take("--stalled", connections as u64 / 10) as usize,
            readers: take("--readers", 4).max(1) as usize,
            churners: take("--churners", 2) as usize,
            rate_events: take("--rate-events", 20_000) as usize,
            rounds: take("--rounds", 2).max(1) as usize,
        };
        if let Some(unknown) = values.keys().next() {
            return Err(format!("unknown option {unknown}"));
        }
        if options.stalled > options.connections || options.rate == 0 || options.seconds == 0 {
            return Err("need --stalled <= --connections, and --rate and --seconds above 0".into());
        }
        Ok(options)
    }
}

/// Raises the soft limit on open files to the hard limit; exits if that is still too few.
fn raise_nofile_limit(options: &Options) -> u64 {
    // Both ends of every connection are in this process, plus churn, the rate measurement and slack.
    let needed = (2 * options.connections + 2 * (2 * RATE_CLIENTS) + 8 * options.churners + 256) as u64;
    let got = rlimit::increase_nofile_limit(u64::MAX).unwrap_or_else(|err| {
        eprintln!("soak: cannot raise RLIMIT_NOFILE: {err}");
        rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(0, |(soft, _)| soft)
    });
    if got < needed {
        eprintln!("soak: RLIMIT_NOFILE is {got}, {needed} needed for {} connections", options.connections);
        std::process::exit(2);
    }
    got
}

#[derive(Default)]
struct Report {
    rows: Vec<(String, String)>,
    checks: Vec<(String, bool, String)>,
}

impl Report {
    fn row(&mut self, name: &str, value: impl std::fmt::Display) {
        self.rows.push((name.to_owned(), value.to_string()));
    }

    fn check(&mut self, name: &str, passed: bool, detail: String) {
        self.checks.push((name.to_owned(), passed, detail));
    }

    fn all_passed(&self) -> bool {
        self.checks.iter().all(|(_, passed, _)| *passed)
    }

    fn print(&self) {
        let mut out = String::from("\n| measure | value |\n|---|---|\n");
        for (name, value) in &self.rows {
            let _ = writeln!(out, "| {name} | {value} |");
        }
        out.push_str("\n| check | result | detail |\n|---|---|---|\n");
        for (name, passed, detail) in &self.checks {
            let _ = writeln!(out, "| {name} | {} | {detail} |", if *passed { "pass" } else { "FAIL" });
        }
        let failed = self.checks.iter().filter(|(_, passed, _)| !passed).count();
        let _ = writeln!(out, "\n{} passed, {failed} failed", self.checks.len() - failed);
        print!("{out}");
    }
}

/// Waits (bounded) until `condition` holds; exits the soak if it never does.
fn wait_for(what: &str, limit: Duration, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        if Instant::now() > deadline {
            eprintln!("soak: gave up waiting for {what} after {limit:?}");
            std::process::exit(1);
        }
        thread::sleep(Duration::from_millis(10));
    }
}

fn spawn<T: Send + 'static>(name: &str, work: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    thread::Builder::new().name(name.to_owned()).stack_size(STACK).spawn(work).expect("spawn a thread")
}

fn join<T>(thread: JoinHandle<T>) -> T {
    thread.join().unwrap_or_else(|_| {
        eprintln!("soak: a client thread panicked");
        std::process::exit(1);
    })
}

/// xorshift64: enough to vary what the churners do.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}
