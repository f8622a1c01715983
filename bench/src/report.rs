//! The markdown report of a run: one table per kind of case with the ratios between servers, the
//! targets the library aims for, and every run that was not clean.

use std::fmt::Write as _;

use crate::cases::{Case, CaseKind};
use crate::measure::Measurement;
use crate::servers::ServerKind;
use crate::stats::median;

/// Everything a run measured, and what it set out to measure.
#[derive(Debug, Clone)]
pub struct Results {
    /// The servers, in report order.
    pub servers: Vec<ServerKind>,
    /// The cases, in run order.
    pub cases: Vec<Case>,
    /// One per server, case and repetition.
    pub measurements: Vec<Measurement>,
}

impl Results {
    fn runs(&self, server: ServerKind, case: Case) -> impl Iterator<Item = &Measurement> {
        self.measurements.iter().filter(move |m| m.server == server.name() && m.case == Some(case))
    }

    /// The median of `metric` over the clean runs of `server` on `case`.
    pub fn median(
        &self,
        server: ServerKind,
        case: Case,
        metric: impl Fn(&Measurement) -> Option<f64>,
    ) -> Option<f64> {
        median(self.runs(server, case).filter(|m| m.is_ok()).filter_map(metric))
    }

    /// `server`'s median over `other`'s, when both exist.
    pub fn ratio(
        &self,
        server: ServerKind,
        other: ServerKind,
        case: Case,
        metric: impl Fn(&Measurement) -> Option<f64> + Copy,
    ) -> Option<f64> {
        let ours = self.median(server, case, metric)?;
        let theirs = self.median(other, case, metric)?;
        (theirs > 0.0).then(|| ours / theirs)
    }

    /// A note for the cell when some runs were not clean (`2/3 ok: timeout`) or other work took
    /// much of the machine meanwhile (`noisy: 1.2 cores of other work`), else `None`.
    fn note(&self, server: ServerKind, case: Case) -> Option<String> {
        let runs: Vec<&Measurement> = self.runs(server, case).collect();
        let ok = runs.iter().filter(|m| m.is_ok()).count();
        let mut notes = Vec::new();
        if ok < runs.len() {
            let first_bad = runs.iter().find(|m| !m.is_ok()).map_or("", |m| m.status.as_str());
            notes.push(format!("{ok}/{} ok: {first_bad}", runs.len()));
        }
        // CPU readings come in 10 ms ticks: only windows of half a second or more say anything.
        let window = self.median(server, case, |m| m.window_s);
        let other = self.median(server, case, |m| m.other_cpu_cores);
        if let (Some(window), Some(other)) = (window, other) {
            if window >= NOISE_WINDOW_S && other >= NOISY_CORES {
                notes.push(format!("noisy: {other:.1} cores of other work"));
            }
        }
        (!notes.is_empty()).then(|| notes.join("; "))
    }

    fn cases_of(&self, kind: CaseKind) -> Vec<Case> {
        self.cases.iter().copied().filter(|case| case.kind == kind).collect()
    }
}

/// Metric accessors, shared with the chart.
pub mod metric {
    use crate::measure::Measurement;

    /// Burst events/s.
    pub fn events_per_s(m: &Measurement) -> Option<f64> {
        m.events_per_s
    }
    /// Median latency, ms.
    pub fn p50(m: &Measurement) -> Option<f64> {
        m.p50_ms
    }
    /// 99th percentile latency, ms.
    pub fn p99(m: &Measurement) -> Option<f64> {
        m.p99_ms
    }
    /// Server CPU in cores.
    pub fn cpu(m: &Measurement) -> Option<f64> {
        m.server_cpu_cores
    }
    /// RSS per connection, KiB.
    pub fn rss_per_conn(m: &Measurement) -> Option<f64> {
        m.rss_per_conn_kib
    }
    /// Kernel stack per connection, KiB.
    pub fn kernel_stack_per_conn(m: &Measurement) -> Option<f64> {
        m.kernel_stack_per_conn_kib
    }
    /// Clients registered.
    pub fn registered(m: &Measurement) -> Option<f64> {
        Some(m.registered as f64)
    }
}

/// Where the run took place and how it was asked for, for the report's header.
#[derive(Debug, Clone, Default)]
pub struct RunInfo {
    /// The command line.
    pub command: String,
    /// When it started (UTC).
    pub date: String,
    /// Cores, CPU model, kernel.
    pub machine: String,
    /// Repetitions per case and server.
    pub reps: usize,
    /// Bytes of data per event.
    pub size: usize,
    /// Load generator threads.
    pub threads: usize,
    /// The machine's load averages (`/proc/loadavg`) at the start and the end of the run.
    pub load: (String, String),
}

/// The whole markdown report.
pub fn markdown(results: &Results, info: &RunInfo) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# sse-bench results\n");
    let _ = writeln!(out, "- command: `{}`", info.command);
    let _ = writeln!(out, "- date: {}", info.date);
    let _ = writeln!(out, "- machine: {}", info.machine);
    let _ = writeln!(
        out,
        "- load average (1, 5, 15 min): {} at the start, {} at the end",
        info.load.0, info.load.1
    );
    let _ = writeln!(
        out,
        "- {} run(s) per case and server, each against a fresh server process; cells are medians of the \
         clean runs; B = {} bytes of data per event; load generator: {} threads",
        info.reps, info.size, info.threads
    );
    out.push('\n');
    burst_tables(&mut out, results);
    light_table(&mut out, results);
    idle_table(&mut out, results);
    targets_table(&mut out, results);
    unclean_runs(&mut out, results);
    all_runs(&mut out, results);
    out
}

fn header(out: &mut String, first: &str, cases: &[Case]) {
    let _ = write!(out, "| {first} |");
    for case in cases {
        let _ = write!(out, " {} |", case.heading());
    }
    let _ = write!(out, "\n|---|");
    for _ in cases {
        out.push_str("---:|");
    }
    out.push('\n');
}

fn row(out: &mut String, name: &str, cells: impl IntoIterator<Item = String>) {
    let _ = write!(out, "| {name} |");
    for cell in cells {
        let _ = write!(out, " {cell} |");
    }
    out.push('\n');
}

fn with_note(results: &Results, server: ServerKind, case: Case, cell: String) -> String {
    match results.note(server, case) {
        Some(note) => format!("{cell} ({note})"),
        None => cell,
    }
}

/// Other work on the machine, in cores, above which a cell is marked noisy.
const NOISY_CORES: f64 = 0.5;
/// The shortest window whose CPU readings are worth judging noise by, in seconds.
const NOISE_WINDOW_S: f64 = 0.5;

const SSE: ServerKind = ServerKind::SseHandler;
const AXUM: ServerKind = ServerKind::Axum;
const LIMIT: ServerKind = ServerKind::Limit;

fn ratio_rows(
    out: &mut String,
    results: &Results,
    cases: &[Case],
    metric: impl Fn(&Measurement) -> Option<f64> + Copy,
) {
    for other in [LIMIT, AXUM] {
        if results.servers.contains(&SSE) && results.servers.contains(&other) {
            let cells = cases.iter().map(|&case| times(results.ratio(SSE, other, case, metric)));
            row(out, &format!("sse-handler / {}", other.name()), cells);
        }
    }
}

fn burst_tables(out: &mut String, results: &Results) {
    let cases = results.cases_of(CaseKind::Burst);
    if cases.is_empty() {
        return;
    }
    out.push_str("## Burst: delivered events/s\n\n");
    out.push_str(
        "N clients, one `POST /publish?count=M`; events/s = N*M / (time from the publish request to the \
         last event received).\n\n",
    );
    header(out, "server", &cases);
    for &server in &results.servers {
        let cells = cases.iter().map(|&case| {
            with_note(results, server, case, rate(results.median(server, case, metric::events_per_s)))
        });
        row(out, server.name(), cells);
    }
    ratio_rows(out, results, &cases, metric::events_per_s);

    out.push_str("\n## Burst: latency p50 / p99, ms\n\n");
    out.push_str(
        "Mostly the time an event waits in the backlog while the burst drains, not per-event cost.\n\n",
    );
    header(out, "server", &cases);
    for &server in &results.servers {
        let cells = cases.iter().map(|&case| {
            let p50 = results.median(server, case, metric::p50);
            let p99 = results.median(server, case, metric::p99);
            format!("{} / {}", millis(p50), millis(p99))
        });
        row(out, server.name(), cells);
    }
    out.push('\n');
}

fn light_table(out: &mut String, results: &Results) {
    let cases = results.cases_of(CaseKind::Light);
    if cases.is_empty() {
        return;
    }
    out.push_str("## Light load: fan-out latency p50 / p99 ms, server CPU in cores\n\n");
    out.push_str(
        "N clients, M publishes of one event each, one every I ms: the latency of one event fanned out to N \
         clients with no backlog, and what the server spends on it.\n\n",
    );
    header(out, "server", &cases);
    for &server in &results.servers {
        let cells = cases.iter().map(|&case| {
            let p50 = results.median(server, case, metric::p50);
            let p99 = results.median(server, case, metric::p99);
            let cpu = results.median(server, case, metric::cpu);
            with_note(
                results,
                server,
                case,
                format!("{} / {} ms, {} cores", millis(p50), millis(p99), cores(cpu)),
            )
        });
        row(out, server.name(), cells);
    }
    for other in [LIMIT, AXUM] {
        if results.servers.contains(&SSE) && results.servers.contains(&other) {
            let cells = cases.iter().map(|&case| {
                let p99 = results.ratio(SSE, other, case, metric::p99);
                let cpu = results.ratio(SSE, other, case, metric::cpu);
                format!("p99 {}, CPU {}", times(p99), times(cpu))
            });
            row(out, &format!("sse-handler / {}", other.name()), cells);
        }
    }
    out.push('\n');
}

fn idle_table(out: &mut String, results: &Results) {
    let cases = results.cases_of(CaseKind::Idle);
    if cases.is_empty() {
        return;
    }
    out.push_str("## Idle memory per connection, KiB\n\n");
    out.push_str(
        "N clients connected, no events: (server RSS with N idle clients - RSS before any) / N, then the \
         machine-wide kernel-stack growth per connection (a thread's kernel stack, not in RSS), then how many \
         clients were held.\n\n",
    );
    header(out, "server", &cases);
    for &server in &results.servers {
        let cells = cases.iter().map(|&case| {
            let rss = results.median(server, case, metric::rss_per_conn);
            let stack = results.median(server, case, metric::kernel_stack_per_conn);
            let held = results.median(server, case, metric::registered);
            let held = held.map_or_else(|| "-".to_owned(), |h| format!("{h:.0}"));
            with_note(results, server, case, format!("{} + {} kernel, {held} held", kib(rss), kib(stack)))
        });
        row(out, server.name(), cells);
    }
    out.push('\n');
}

/// The idle memory a stream may take: 1 KiB above what a bare parked thread takes on the machine the
/// targets were set on (9.7 KiB, measured by `sse-bench-thread-floor`).
const IDLE_BOUND_KIB: f64 = 10.7;

/// One target: what is compared, the value measured (as shown), and whether the bound is met.
struct Target {
    what: String,
    shown: String,
    met: Option<bool>,
}

fn targets(results: &Results) -> Vec<Target> {
    let mut list = Vec::new();
    let at_least = |what: String, value: Option<f64>, bound: f64| Target {
        shown: times(value),
        met: value.map(|v| v >= bound),
        what,
    };
    for case in results.cases_of(CaseKind::Burst) {
        let (other, bound) = match case.clients {
            10 | 100 => (LIMIT, 0.65),
            1000 => (AXUM, 3.0),
            5000 => (AXUM, 1.5),
            10_000 => (AXUM, 1.0),
            _ => continue,
        };
        let ratio = results.ratio(SSE, other, case, metric::events_per_s);
        list.push(at_least(
            format!("burst {}: events/s >= {bound}x {}", case.heading(), other.name()),
            ratio,
            bound,
        ));
    }
    for case in results.cases_of(CaseKind::Light).into_iter().filter(|case| case.clients <= 1000) {
        for (name, metric) in
            [("p99 latency", metric::p99 as fn(&Measurement) -> Option<f64>), ("CPU", metric::cpu)]
        {
            let ratio = results.ratio(SSE, AXUM, case, metric);
            list.push(Target {
                what: format!("light {}: {name} <= axum", case.heading()),
                shown: times(ratio),
                met: ratio.map(|r| r <= 1.0),
            });
        }
    }
    for case in results.cases_of(CaseKind::Idle) {
        let rss = results.median(SSE, case, metric::rss_per_conn);
        list.push(Target {
            what: format!("idle {}: RSS <= {IDLE_BOUND_KIB} KiB per connection", case.heading()),
            shown: kib(rss),
            met: rss.map(|r| r <= IDLE_BOUND_KIB),
        });
        if case.clients >= 10_000 {
            let held = results.runs(SSE, case).map(|m| m.registered).max();
            list.push(Target {
                what: format!("idle {}: 10,000 connections held", case.heading()),
                shown: held.map_or_else(|| "-".into(), |h| h.to_string()),
                met: held.map(|h| h >= 10_000),
            });
        }
    }
    list
}

fn targets_table(out: &mut String, results: &Results) {
    if !results.servers.contains(&SSE) {
        return;
    }
    let list = targets(results);
    if list.is_empty() {
        return;
    }
    out.push_str("## Targets for sse-handler\n\n| target | measured | met |\n|---|---:|---|\n");
    for target in list {
        let met = match target.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "not measured",
        };
        let _ = writeln!(out, "| {} | {} | {met} |", target.what, target.shown);
    }
    out.push('\n');
}

fn unclean_runs(out: &mut String, results: &Results) {
    let bad: Vec<&Measurement> = results.measurements.iter().filter(|m| !m.is_ok()).collect();
    if bad.is_empty() {
        out.push_str("Every run was clean: every client registered and received every event, in order.\n\n");
        return;
    }
    out.push_str("## Runs that were not clean (left out of the medians)\n\n");
    out.push_str(
        "| server | case | rep | status | received / expected | lost | out of order | first error |\n",
    );
    out.push_str("|---|---|---:|---|---:|---:|---:|---|\n");
    for m in bad {
        let case = m.case.map_or_else(String::new, |c| c.to_string());
        let error = m.errors.first().map_or("", String::as_str);
        let _ = writeln!(
            out,
            "| {} | {case} | {} | {} | {} / {} | {} | {} | {error} |",
            m.server, m.rep, m.status, m.received, m.expected, m.lost, m.out_of_order
        );
    }
    out.push('\n');
}

fn all_runs(out: &mut String, results: &Results) {
    out.push_str("## Every run\n\n");
    out.push_str(
        "CPU in cores over the measured window (10 ms ticks: rough under 1 s); \"other\" is CPU used by \
         anything else on the machine meanwhile (noise); \"busiest\" is the load generator's busiest thread \
         (near 1.0 would mean the load generator set the pace).\n\n",
    );
    out.push_str("| case | server | rep | status | events/s | p50 ms | p99 ms | max ms | window s | server CPU | loadgen CPU (busiest) | other CPU | connect s |\n");
    out.push_str("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for m in &results.measurements {
        let case = m.case.map_or_else(String::new, |c| c.to_string());
        let seconds = |s: Option<f64>| s.map_or_else(|| "-".into(), |s| format!("{s:.3}"));
        let _ = writeln!(
            out,
            "| {case} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} ({}) | {} | {} |",
            m.server,
            m.rep,
            m.status,
            rate(m.events_per_s),
            millis(m.p50_ms),
            millis(m.p99_ms),
            millis(m.max_ms),
            seconds(m.window_s),
            cores(m.server_cpu_cores),
            cores(m.loadgen_cpu_cores),
            cores(m.loadgen_busiest_thread),
            cores(m.other_cpu_cores),
            seconds(m.connect_s),
        );
    }
    out.push('\n');
}

/// `12.3 M`, `456 k`.
pub fn rate(value: Option<f64>) -> String {
    match value {
        None => "-".into(),
        Some(v) if v >= 1e6 => format!("{:.2} M", v / 1e6),
        Some(v) if v >= 1e3 => format!("{:.0} k", v / 1e3),
        Some(v) => format!("{v:.0}"),
    }
}

/// Milliseconds with about three significant digits.
pub fn millis(value: Option<f64>) -> String {
    match value {
        None => "-".into(),
        Some(v) if v < 10.0 => format!("{v:.2}"),
        Some(v) if v < 100.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.0}"),
    }
}

fn cores(value: Option<f64>) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{v:.2}"))
}

fn kib(value: Option<f64>) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{v:.1}"))
}

/// `0.41x`.
pub fn times(value: Option<f64>) -> String {
    match value {
        None => "-".into(),
        Some(v) if v < 0.1 => format!("{v:.3}x"),
        Some(v) => format!("{v:.2}x"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(server: ServerKind, case: Case, events_per_s: f64, p99: f64, status: &str) -> Measurement {
        Measurement {
            server: server.name().into(),
            case: Some(case),
            status: status.into(),
            events_per_s: Some(events_per_s),
            p99_ms: Some(p99),
            server_cpu_cores: Some(0.5),
            ..Measurement::default()
        }
    }

    fn results() -> Results {
        let burst = Case::burst(10, 100);
        let light = Case::light(1000, 5, 50);
        Results {
            servers: ServerKind::ALL.to_vec(),
            cases: vec![burst, light],
            measurements: vec![
                run(SSE, burst, 4e6, 1.0, "ok"),
                run(SSE, burst, 6e6, 1.0, "ok"),
                run(SSE, burst, 1.0, 1.0, "timeout"),
                run(LIMIT, burst, 10e6, 1.0, "ok"),
                run(AXUM, burst, 1e6, 1.0, "ok"),
                run(SSE, light, 0.0, 3.0, "ok"),
                run(AXUM, light, 0.0, 2.0, "ok"),
            ],
        }
    }

    #[test]
    fn medians_leave_out_unclean_runs_and_ratios_compare_medians() {
        let results = results();
        let burst = results.cases[0];
        assert_eq!(results.median(SSE, burst, metric::events_per_s), Some(5e6));
        assert_eq!(results.ratio(SSE, LIMIT, burst, metric::events_per_s), Some(0.5));
        assert_eq!(results.note(SSE, burst).as_deref(), Some("2/3 ok: timeout"));
        assert_eq!(results.note(LIMIT, burst), None);
    }

    #[test]
    fn cells_measured_beside_much_other_work_are_marked_noisy() {
        let case = Case::light(10, 5, 5);
        let run = |other: f64, window: f64| Measurement {
            server: SSE.name().into(),
            case: Some(case),
            status: "ok".into(),
            other_cpu_cores: Some(other),
            window_s: Some(window),
            ..Measurement::default()
        };
        let results = |runs| Results { servers: vec![SSE], cases: vec![case], measurements: runs };
        let noisy = results(vec![run(1.2, 1.0), run(0.9, 1.0), run(0.1, 1.0)]);
        assert_eq!(noisy.note(SSE, case).as_deref(), Some("noisy: 0.9 cores of other work"));
        assert_eq!(results(vec![run(0.1, 1.0)]).note(SSE, case), None);
        assert_eq!(results(vec![run(1.5, 0.02)]).note(SSE, case), None, "too short a window to tell");
    }

    #[test]
    fn targets_say_which_are_met() {
        let list = targets(&results());
        let burst = list.iter().find(|t| t.what.starts_with("burst N=10 ")).unwrap();
        assert_eq!((burst.met, burst.shown.as_str()), (Some(false), "0.50x"));
        let p99 = list.iter().find(|t| t.what.contains("p99")).unwrap();
        assert_eq!(p99.met, Some(false));
        let cpu = list.iter().find(|t| t.what.contains("CPU")).unwrap();
        assert_eq!(cpu.met, Some(true));
    }

    #[test]
    fn the_report_has_every_section_for_the_cases_run() {
        let text =
            markdown(&results(), &RunInfo { command: "sse-bench".into(), reps: 3, ..RunInfo::default() });
        for part in
            ["## Burst: delivered events/s", "| sse-handler / limit | 0.50x |", "## Light load", "## Targets"]
        {
            assert!(text.contains(part), "missing {part:?} in\n{text}");
        }
        assert!(text.contains("| sse-handler | 5.00 M (2/3 ok: timeout) |"), "{text}");
        assert!(!text.contains("## Idle memory"));
    }

    #[test]
    fn numbers_are_formatted_for_reading() {
        assert_eq!(rate(Some(12_345_678.0)), "12.35 M");
        assert_eq!(rate(Some(45_600.0)), "46 k");
        assert_eq!(millis(Some(0.256)), "0.26");
        assert_eq!(millis(Some(264.4)), "264");
        assert_eq!(times(Some(0.0512)), "0.051x");
        assert_eq!(times(None), "-");
    }
}
