//! The benchmark runner: starts each server (a binary built beside this one) on a free loopback port,
//! runs every case against it with the load generator, kills it by its PID, and prints a markdown
//! report with the ratios between servers; optionally writes the report, the raw runs and an SVG
//! chart. It builds nothing: `cargo build --release -p sse-bench` first.

use std::fs;
use std::path::PathBuf;
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sse_bench::args::Args;
use sse_bench::cases::{self, Case, CaseKind};
use sse_bench::chart;
use sse_bench::measure::{self, Measurement, Settings, Target};
use sse_bench::report::{self, Results, RunInfo};
use sse_bench::servers::{self, RunningServer, ServerKind};
use sse_bench::system;

const USAGE: &str = "\
usage: sse-bench [options]

  --quick               a short run at N = 10 and 100 (instead of the full default run)
  --cases LIST          kinds to run: burst,light,idle (default all)
  --servers LIST        sse-handler,axum,limit (default all)
  --burst N:M,...       burst cases (default 10:10000,100:2000,1000:200,5000:20,10000:10)
  --light N:M:I,...     light-load cases (default 10:200:5,100:200:5,1000:50:50,5000:20:200,10000:10:400)
  --idle N,...          idle-memory cases (default 10000)
  --size B              bytes of data per event (default 64)
  --reps R              runs per case and server; cells are medians (default 1)
  --threads T           load generator threads (default 2)
  --settle-ms MS        pause before measuring, once clients are connected (default 500)
  --timeout S           bound on connecting, and on the deliveries, per run (default 60)
  --out PATH            also write the markdown report to PATH
  --raw PATH            write every run as one JSON line to PATH
  --chart PATH          write an SVG chart (events/s and p99 latency against N) to PATH
  --strict              exit with status 1 if any run was not clean (lost, unordered, failed)
";

#[derive(Debug)]
struct Options {
    cases: Vec<Case>,
    servers: Vec<ServerKind>,
    settings: Settings,
    reps: usize,
    out: Option<PathBuf>,
    raw: Option<PathBuf>,
    chart: Option<PathBuf>,
    strict: bool,
}

fn parse_list<T>(flag: &str, list: &str, parse: impl Fn(&str) -> Option<T>) -> Result<Vec<T>, String> {
    list.split(',').map(|name| parse(name).ok_or_else(|| format!("{flag}: unknown {name:?}"))).collect()
}

fn options() -> Result<Options, String> {
    let mut args = Args::from_env();
    let mut quick = false;
    let mut kinds = CaseKind::ALL.to_vec();
    let mut custom: Vec<(CaseKind, Vec<Case>)> = Vec::new();
    let mut options = Options {
        cases: Vec::new(),
        servers: ServerKind::ALL.to_vec(),
        settings: Settings::default(),
        reps: 1,
        out: None,
        raw: None,
        chart: None,
        strict: false,
    };
    while let Some(flag) = args.next_flag()? {
        match flag.as_str() {
            "--quick" => quick = true,
            "--cases" => kinds = parse_list(&flag, &args.value(&flag)?, CaseKind::parse)?,
            "--servers" => options.servers = parse_list(&flag, &args.value(&flag)?, ServerKind::parse)?,
            "--burst" => {
                custom.push((CaseKind::Burst, Case::parse_list(CaseKind::Burst, &args.value(&flag)?)?))
            }
            "--light" => {
                custom.push((CaseKind::Light, Case::parse_list(CaseKind::Light, &args.value(&flag)?)?))
            }
            "--idle" => custom.push((CaseKind::Idle, Case::parse_list(CaseKind::Idle, &args.value(&flag)?)?)),
            "--size" => options.settings.size = args.parsed(&flag)?,
            "--reps" => options.reps = args.parsed::<usize>(&flag)?.max(1),
            "--threads" => options.settings.threads = args.parsed::<usize>(&flag)?.max(1),
            "--settle-ms" => options.settings.settle = Duration::from_millis(args.parsed(&flag)?),
            "--timeout" => options.settings.timeout = Duration::from_secs(args.parsed::<u64>(&flag)?.max(1)),
            "--out" => options.out = Some(args.value(&flag)?.into()),
            "--raw" => options.raw = Some(args.value(&flag)?.into()),
            "--chart" => options.chart = Some(args.value(&flag)?.into()),
            "--strict" => options.strict = true,
            "--help" | "-h" => return Err(String::new()),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    let defaults = if quick { cases::quick_cases() } else { cases::default_cases() };
    for kind in kinds {
        // A kind given on the command line replaces its defaults.
        let given: Vec<Case> =
            custom.iter().filter(|(k, _)| *k == kind).flat_map(|(_, c)| c.clone()).collect();
        if given.is_empty() {
            options.cases.extend(defaults.iter().filter(|case| case.kind == kind));
        } else {
            options.cases.extend(given);
        }
    }
    Ok(options)
}

fn main() -> ExitCode {
    let options = match options() {
        Ok(options) => options,
        Err(err) => {
            if !err.is_empty() {
                eprintln!("sse-bench: {err}");
            }
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(clean) if clean || !options.strict => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("sse-bench: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Runs everything; true when every run was clean.
fn run(options: &Options) -> Result<bool, String> {
    let open_files = system::raise_open_file_limit().map_err(|err| format!("open-file limit: {err}"))?;
    let bin_dir = servers::binary_dir().map_err(|err| err.to_string())?;
    for server in &options.servers {
        let binary = bin_dir.join(server.binary());
        if !binary.is_file() {
            return Err(format!(
                "{} not found beside the runner: build with `cargo build --release -p sse-bench`",
                binary.display()
            ));
        }
    }
    let max_events = options.cases.iter().map(|case| case.events).max().unwrap_or(0);
    let total = options.cases.len() * options.reps * options.servers.len();
    let mut info = RunInfo {
        command: std::iter::once("sse-bench".to_owned())
            .chain(std::env::args().skip(1))
            .collect::<Vec<_>>()
            .join(" "),
        date: utc_now(),
        machine: machine(),
        reps: options.reps,
        size: options.settings.size,
        threads: options.settings.threads,
        load: (load_average(), String::new()),
    };
    eprintln!("sse-bench: {total} runs; open-file limit {open_files}; servers from {}", bin_dir.display());

    let mut measurements = Vec::with_capacity(total);
    // Servers take turns on each case, so that noise on the machine falls on all of them alike.
    for &case in &options.cases {
        for rep in 0..options.reps {
            for &server in &options.servers {
                let m = run_one(server, case, rep, options, &bin_dir, open_files, max_events);
                eprintln!("[{}/{total}] {}", measurements.len() + 1, progress(&m));
                measurements.push(m);
            }
        }
    }

    info.load.1 = load_average();
    let results = Results { servers: options.servers.clone(), cases: options.cases.clone(), measurements };
    let text = report::markdown(&results, &info);
    print!("{text}");
    if let Some(path) = &options.out {
        fs::write(path, &text).map_err(|err| format!("{}: {err}", path.display()))?;
    }
    if let Some(path) = &options.raw {
        let lines: Vec<String> =
            results.measurements.iter().filter_map(|m| serde_json::to_string(m).ok()).collect();
        fs::write(path, lines.join("\n") + "\n").map_err(|err| format!("{}: {err}", path.display()))?;
    }
    if let Some(path) = &options.chart {
        let caption = vec![format!("{} ({})", info.command, info.date), info.machine.clone()];
        fs::write(path, chart::svg(&results, &caption))
            .map_err(|err| format!("{}: {err}", path.display()))?;
    }
    Ok(results.measurements.iter().all(Measurement::is_ok))
}

fn run_one(
    server: ServerKind,
    case: Case,
    rep: usize,
    options: &Options,
    bin_dir: &std::path::Path,
    open_files: u64,
    max_events: usize,
) -> Measurement {
    let needed = system::files_needed(case.clients);
    if needed > open_files {
        let why = format!(
            "{} clients need {needed} open files per process; the limit here is {open_files}",
            case.clients
        );
        return Measurement::skipped(server.name(), case, rep, why);
    }
    let binary = bin_dir.join(server.binary());
    let mut running =
        match RunningServer::start(&binary, &server.burst_args(max_events), Duration::from_secs(30)) {
            Ok(running) => running,
            Err(err) => {
                return Measurement::skipped(
                    server.name(),
                    case,
                    rep,
                    format!("server did not start: {err}"),
                );
            }
        };
    // Let the start-up (and the probe connection) settle before the baseline readings.
    thread::sleep(options.settings.settle.min(Duration::from_millis(300)));
    let target = Target { pid: running.pid(), addr: running.addr() };
    let mut m = measure::run_case(server.name(), case, rep, target, &options.settings);
    if !running.is_running() {
        m.status = format!("failed: the server exited ({})", m.status);
    }
    running.stop();
    m
}

fn progress(m: &Measurement) -> String {
    let case = m.case.map_or_else(String::new, |c| c.to_string());
    let mut line = format!("{case} {}: {}", m.server, m.status);
    if m.events_per_s.is_some() {
        line += &format!(", {} events/s", report::rate(m.events_per_s));
    }
    if m.p99_ms.is_some() {
        line += &format!(", p50/p99 {}/{} ms", report::millis(m.p50_ms), report::millis(m.p99_ms));
    }
    if let Some(cpu) = m.server_cpu_cores {
        line += &format!(", server CPU {cpu:.2}");
    }
    if let Some(busiest) = m.loadgen_busiest_thread {
        line += &format!(", loadgen busiest thread {busiest:.2}");
    }
    if let Some(rss) = m.rss_per_conn_kib {
        line += &format!(", RSS {rss:.1} KiB/conn");
    }
    if let Some(first) = m.errors.first() {
        line += &format!(" [{first}]");
    }
    line
}

/// `2025-01-31 14:05 UTC`.
fn utc_now() -> String {
    let seconds = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(i64::try_from(days).unwrap_or(0));
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02} UTC", rest / 3600, rest % 3600 / 60)
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The first three fields of `/proc/loadavg`.
fn load_average() -> String {
    let text = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// `2 cores, <CPU model>, Linux <release>`.
fn machine() -> String {
    let cores = thread::available_parallelism().map_or(0, usize::from);
    let model = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                line.strip_prefix("model name")
                    .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel =
        fs::read_to_string("/proc/sys/kernel/osrelease").map_or_else(|_| "?".into(), |r| r.trim().to_owned());
    format!("{cores} cores, {model}, Linux {kernel}")
}

#[cfg(test)]
mod tests {
    use super::civil_from_days;

    #[test]
    fn dates_from_day_numbers() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }
}
