//! Running one case against one server process and recording what it showed.

use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::cases::{Case, CaseKind};
use crate::contract::{self, Publish};
use crate::loadgen::{self, Fleet, FleetConfig, FleetReport};
use crate::stats::percentile;
use crate::system::{self, MachineCpu};

/// How every case of a run is driven.
#[derive(Debug, Clone)]
pub struct Settings {
    /// B: bytes of data per event.
    pub size: usize,
    /// Load generator threads.
    pub threads: usize,
    /// Pause between the last client registering and the measurement (lets the server go quiet).
    pub settle: Duration,
    /// Bound on connecting, and again on the deliveries, of one case.
    pub timeout: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            size: 64,
            threads: 2,
            settle: Duration::from_millis(500),
            timeout: Duration::from_secs(60),
        }
    }
}

/// The server under load: its process (for `/proc` readings) and address.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// The server's PID.
    pub pid: u32,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// What one run of one case against one server showed. Fields that do not apply to the case are
/// `None`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Measurement {
    /// The server's name.
    pub server: String,
    /// The case.
    pub case: Option<Case>,
    /// Which repetition (from 0).
    pub rep: usize,
    /// `ok`, or what went wrong (`timeout`, `lost events`, `skipped: ...`, `failed: ...`).
    pub status: String,
    /// Clients registered (response head received).
    pub registered: usize,
    /// Seconds to connect and register every client.
    pub connect_s: Option<f64>,
    /// Events the registered clients should have received, all together.
    pub expected: u64,
    /// Events received.
    pub received: u64,
    /// Events missing at the end.
    pub lost: u64,
    /// Events out of order (gaps, duplicates, extras).
    pub out_of_order: u64,
    /// Registered clients whose stream closed early.
    pub closed: usize,
    /// Burst: events delivered per second, from the publish request to the last event received.
    pub events_per_s: Option<f64>,
    /// Latency percentiles (receive minus send time), in ms.
    pub p50_ms: Option<f64>,
    /// 99th percentile latency, in ms.
    pub p99_ms: Option<f64>,
    /// Largest latency, in ms.
    pub max_ms: Option<f64>,
    /// Seconds from the first publish to the last event (or the deadline).
    pub window_s: Option<f64>,
    /// Server CPU over the window, in cores (10 ms tick resolution: rough for windows under 1 s).
    pub server_cpu_cores: Option<f64>,
    /// The load generator's own CPU over the window, in cores.
    pub loadgen_cpu_cores: Option<f64>,
    /// CPU share of the busiest load generator thread over the window (near 1.0 would mean the load
    /// generator set the pace).
    pub loadgen_busiest_thread: Option<f64>,
    /// CPU used by anything else on the machine over the window, in cores: noise from other work.
    pub other_cpu_cores: Option<f64>,
    /// Server RSS before any client, in KiB.
    pub rss_base_kib: Option<u64>,
    /// Server RSS with every client connected and idle, in KiB.
    pub rss_idle_kib: Option<u64>,
    /// (idle - base) / N, in KiB.
    pub rss_per_conn_kib: Option<f64>,
    /// Machine-wide kernel-stack growth per connection, in KiB (threads' kernel stacks; not in RSS).
    pub kernel_stack_per_conn_kib: Option<f64>,
    /// The first errors the load generator met.
    pub errors: Vec<String>,
}

impl Measurement {
    /// A run that did not take place, and why.
    pub fn skipped(server: &str, case: Case, rep: usize, why: String) -> Measurement {
        Measurement {
            server: server.into(),
            case: Some(case),
            rep,
            status: format!("skipped: {why}"),
            ..Measurement::default()
        }
    }

    /// Whether the run went as planned: every client registered and got every event in order.
    pub fn is_ok(&self) -> bool {
        self.status == "ok"
    }
}

/// CPU counters read at one instant.
#[derive(Debug, Clone)]
struct CpuSample {
    at: Instant,
    server: u64,
    own: u64,
    machine: MachineCpu,
    workers_ns: Vec<u64>,
}

impl CpuSample {
    fn now(pid: u32, fleet: &Fleet) -> CpuSample {
        CpuSample {
            workers_ns: fleet.worker_cpu_ns(),
            at: Instant::now(),
            server: system::process_cpu_ticks(pid).unwrap_or(0),
            own: system::own_cpu_ticks().unwrap_or(0),
            machine: MachineCpu::now().unwrap_or_default(),
        }
    }
}

/// Runs `case` against the server at `target` (which must be fresh and idle) and measures it.
pub fn run_case(server: &str, case: Case, rep: usize, target: Target, settings: &Settings) -> Measurement {
    let mut m = Measurement { server: server.into(), case: Some(case), rep, ..Measurement::default() };
    let rss_base = system::rss_kib(target.pid).ok();
    let kernel_stack_base = system::kernel_stack_kib().ok();
    m.rss_base_kib = rss_base;

    let config = FleetConfig {
        addr: target.addr,
        clients: case.clients,
        threads: settings.threads,
        plan: case.plan(),
    };
    let connect_start = Instant::now();
    let fleet = match Fleet::start(&config) {
        Ok(fleet) => fleet,
        Err(err) => {
            m.status = format!("failed: load generator: {err}");
            return m;
        }
    };
    m.registered = fleet.wait_registered(connect_start + settings.timeout);
    m.connect_s = Some(connect_start.elapsed().as_secs_f64());
    if m.registered < case.clients {
        let report = fleet.finish();
        m.status = format!("failed: {} of {} clients registered", m.registered, case.clients);
        m.errors = report.errors;
        return m;
    }

    thread::sleep(settings.settle);
    m.rss_idle_kib = system::rss_kib(target.pid).ok();
    if let (Some(base), Some(idle)) = (rss_base, m.rss_idle_kib) {
        m.rss_per_conn_kib = Some((idle as f64 - base as f64) / case.clients as f64);
    }
    if let (Some(base), Ok(idle)) = (kernel_stack_base, system::kernel_stack_kib()) {
        m.kernel_stack_per_conn_kib = Some((idle as f64 - base as f64) / case.clients as f64);
    }
    if case.kind == CaseKind::Idle {
        let report = fleet.finish();
        m.closed = report.closed;
        m.errors = report.errors;
        m.status = if report.closed == 0 { "ok".into() } else { format!("{} streams closed", report.closed) };
        return m;
    }

    let before = CpuSample::now(target.pid, &fleet);
    let start_ns = contract::now_ns();
    let deadline = Instant::now() + settings.timeout;
    let published = publish_all(case, target.addr, settings, deadline);
    let complete = published.is_ok() && fleet.wait_delivered(deadline);
    let after = CpuSample::now(target.pid, &fleet);
    let report = fleet.finish();
    record_deliveries(&mut m, case, &report, start_ns);
    record_cpu(&mut m, &before, &after);
    m.status = match published {
        Err(err) => format!("failed: publish: {err}"),
        Ok(()) if !complete => "timeout".into(),
        Ok(()) if m.lost > 0 || m.out_of_order > 0 || m.closed > 0 => "lost or unordered events".into(),
        Ok(()) => "ok".into(),
    };
    m
}

/// Makes the case's publishes: one of M events (burst), or M of one event, one every I ms (light).
fn publish_all(case: Case, addr: SocketAddr, settings: &Settings, deadline: Instant) -> std::io::Result<()> {
    let timeout = deadline.saturating_duration_since(Instant::now());
    match case.kind {
        CaseKind::Burst => {
            loadgen::publish(addr, Publish { count: case.events, size: settings.size }, timeout)
        }
        CaseKind::Light => {
            let start = Instant::now();
            let interval = Duration::from_millis(case.interval_ms);
            for k in 0..case.events {
                let due = start + interval * u32::try_from(k).unwrap_or(u32::MAX);
                if due >= deadline {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "publishes ran past the deadline",
                    ));
                }
                thread::sleep(due.saturating_duration_since(Instant::now()));
                let timeout = deadline.saturating_duration_since(Instant::now());
                loadgen::publish(addr, Publish { count: 1, size: settings.size }, timeout)?;
            }
            Ok(())
        }
        CaseKind::Idle => Ok(()),
    }
}

fn record_deliveries(m: &mut Measurement, case: Case, report: &FleetReport, start_ns: u64) {
    m.expected = report.registered as u64 * case.events_per_client();
    m.received = report.received;
    m.lost = report.lost;
    m.out_of_order = report.out_of_order;
    m.closed = report.closed;
    m.errors.clone_from(&report.errors);
    let ms = |ns: Option<u64>| ns.map(|ns| ns as f64 / 1e6);
    m.p50_ms = ms(percentile(&report.latencies_ns, 50.0));
    m.p99_ms = ms(percentile(&report.latencies_ns, 99.0));
    m.max_ms = ms(report.latencies_ns.last().copied());
    if report.last_ns > start_ns {
        let window_s = (report.last_ns - start_ns) as f64 / 1e9;
        m.window_s = Some(window_s);
        if case.kind == CaseKind::Burst {
            m.events_per_s = Some(report.received as f64 / window_s);
        }
    }
}

fn record_cpu(m: &mut Measurement, before: &CpuSample, after: &CpuSample) {
    let seconds = after.at.duration_since(before.at).as_secs_f64();
    if seconds <= 0.0 {
        return;
    }
    let ticks = system::clock_ticks_per_second() as f64;
    let cores = |delta: u64| delta as f64 / ticks / seconds;
    let server = after.server.saturating_sub(before.server);
    let own = after.own.saturating_sub(before.own);
    let machine = after.machine.busy.saturating_sub(before.machine.busy);
    m.server_cpu_cores = Some(cores(server));
    m.loadgen_cpu_cores = Some(cores(own));
    m.other_cpu_cores = Some(cores(machine.saturating_sub(server + own)));
    if before.workers_ns.len() == after.workers_ns.len() {
        let busiest =
            before.workers_ns.iter().zip(&after.workers_ns).map(|(b, a)| a.saturating_sub(*b)).max();
        m.loadgen_busiest_thread = busiest.map(|ns| ns as f64 / 1e9 / seconds);
    }
}
