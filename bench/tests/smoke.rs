//! The whole harness in a tiny mode: the runner starts each of the three servers, runs a burst, a
//! light load and an idle case against it, and every client must get every event, in order. Proves
//! the servers keep the contract and the load generator counts right; asserts nothing about speed.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use sse_bench::cases::{Case, CaseKind};
use sse_bench::measure::Measurement;
use sse_bench::servers::ServerKind;

/// A scratch directory of this test run, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let dir = std::env::temp_dir().join(format!("sse-bench-smoke-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn every_server_delivers_every_event_in_order_through_the_runner() {
    let scratch = Scratch::new();
    let (raw, out, chart) =
        (scratch.0.join("raw.jsonl"), scratch.0.join("report.md"), scratch.0.join("chart.svg"));
    let mut runner = Command::new(env!("CARGO_BIN_EXE_sse-bench"))
        .args(["--burst", "2:5", "--light", "2:3:5", "--idle", "2", "--settle-ms", "50", "--timeout", "20"])
        .arg("--raw")
        .arg(&raw)
        .arg("--out")
        .arg(&out)
        .arg("--chart")
        .arg(&chart)
        .arg("--strict")
        .stdout(Stdio::null())
        .spawn()
        .expect("the runner starts");
    // The runner bounds every run itself; this only keeps a hung runner from hanging the test.
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(status) = runner.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = runner.kill();
            let _ = runner.wait();
            panic!("the runner did not finish within 180 s");
        }
        thread::sleep(Duration::from_millis(50));
    };

    let lines = fs::read_to_string(&raw).expect("the raw runs were written");
    let runs: Vec<Measurement> = lines.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    let cases = [Case::burst(2, 5), Case::light(2, 3, 5), Case::idle(2)];
    assert_eq!(runs.len(), cases.len() * ServerKind::ALL.len(), "one run per case and server");
    for case in cases {
        for server in ServerKind::ALL {
            let run = runs
                .iter()
                .find(|m| m.case == Some(case) && m.server == server.name())
                .unwrap_or_else(|| panic!("no run of {case} against {}", server.name()));
            let what = format!("{case} against {}: {run:?}", server.name());
            assert_eq!(run.status, "ok", "{what}");
            assert_eq!(run.registered, 2, "{what}");
            assert_eq!((run.lost, run.out_of_order, run.closed), (0, 0, 0), "{what}");
            let expected = 2 * case.events as u64;
            assert_eq!((run.expected, run.received), (expected, expected), "{what}");
            if case.kind == CaseKind::Idle {
                assert!(run.rss_per_conn_kib.is_some(), "{what}");
            } else {
                assert!(run.p99_ms.is_some(), "{what}");
            }
        }
    }
    assert!(status.success(), "the runner failed: {status}");

    let report = fs::read_to_string(&out).unwrap();
    for part in ["| sse-handler / limit |", "| sse-handler / axum |", "## Light load", "## Idle memory"] {
        assert!(report.contains(part), "the report lacks {part:?}:\n{report}");
    }
    let svg = fs::read_to_string(&chart).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("<polyline"), "{svg}");
}
