//! The operator's endpoints: `GET /healthz` always, `GET /metrics` with `--metrics` (behind the
//! token when there is one).

mod common;

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// The value of one series on a metrics page (`name` or `name{labels}`, exactly as written).
fn metric(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in:\n{page}"))
        .parse()
        .unwrap_or_else(|_| panic!("{series} is not a number in:\n{page}"))
}

/// Reads the metrics page (bounded) until `ready` holds for it, and returns it.
fn metrics_once(relay: &Relay, ready: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let (status, _, page) = relay.request("GET", "/metrics", &[], None);
        assert_eq!(status, 200, "{page}");
        if ready(&page) {
            return page;
        }
        assert!(Instant::now() < deadline, "the page never got there; last:\n{page}");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn healthz_is_always_there_and_needs_no_token() {
    let relay = Relay::start(&["--token", "s3cret"]);
    let (status, head, body) = relay.request("GET", "/healthz", &[], None);
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    assert_eq!(header(&head, "Content-Type"), Some("text/plain; charset=utf-8"));
    let (status, _, body) = relay.request("HEAD", "/healthz", &[], None);
    assert_eq!((status, body.as_str()), (200, ""), "load balancers may ask with HEAD");
    assert_eq!(relay.request("POST", "/healthz", &[], None).0, 405);
}

#[test]
fn metrics_are_off_unless_asked_for() {
    let relay = Relay::start(&[]);
    assert_eq!(relay.request("GET", "/metrics", &[], None).0, 404);
}

#[test]
fn metrics_count_what_the_relay_did() {
    // A short heartbeat, so an idle stream whose client has gone is noticed without publishing.
    let relay = Relay::start(&["--metrics", "--heartbeat", "0.05"]);
    let (status, head, page) = relay.request("GET", "/metrics", &[], None);
    assert_eq!(status, 200);
    assert_eq!(header(&head, "Content-Type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    assert_eq!(metric(&page, "sse_connections_open"), 0.0);
    assert_eq!(metric(&page, "sse_ready"), 1.0);

    let mut leaving = relay.subscribe("/events", &[]);
    let mut staying = relay.subscribe("/events", &[]);
    for data in ["one", "two", "three"] {
        assert_eq!(relay.publish(&format!("?data={data}"), &[], None).0, 200);
    }
    let expected = triples(&[("1", "message", "one"), ("2", "message", "two"), ("3", "message", "three")]);
    assert_eq!(relay.take_events(leaving.events(), 3), expected);
    assert_eq!(relay.take_events(staying.events(), 3), expected);
    drop(leaving);

    let gone = "sse_connections_closed_total{reason=\"client_gone\"}";
    let page = metrics_once(&relay, |page| metric(page, gone) == 1.0);
    assert_eq!(metric(&page, "sse_connections_opened_total"), 2.0);
    assert_eq!(metric(&page, "sse_connections_open"), 1.0);
    assert_eq!(metric(&page, "sse_connections_closed_total{reason=\"shut_down\"}"), 0.0);
    assert_eq!(metric(&page, "sse_events_published_total"), 3.0);
    assert_eq!(metric(&page, "sse_events_delivered_total"), 6.0);
    assert!(metric(&page, "sse_bytes_sent_total") > 0.0);
    assert_eq!(metric(&page, "sse_log_events"), 3.0);
    drop(staying);
}

#[test]
fn metrics_need_the_publishing_token_when_there_is_one() {
    let relay = Relay::start(&["--metrics", "--token", "s3cret"]);
    let (status, head, _) = relay.request("GET", "/metrics", &[], None);
    assert_eq!((status, header(&head, "WWW-Authenticate")), (401, Some("Bearer")));
    assert_eq!(relay.request("GET", "/metrics", &[("Authorization", "Bearer guess")], None).0, 401);
    let (status, _, page) = relay.request("GET", "/metrics", &[("Authorization", "Bearer s3cret")], None);
    assert_eq!(status, 200);
    assert_eq!(metric(&page, "sse_events_published_total"), 0.0);
}

#[test]
fn help_describes_both_endpoints() {
    let output = Command::new(env!("CARGO_BIN_EXE_sse-relay")).arg("--help").output().expect("run sse-relay");
    let help = String::from_utf8(output.stdout).unwrap();
    for text in ["--metrics", "GET  /metrics", "GET  /healthz"] {
        assert!(help.contains(text), "{text} missing from:\n{help}");
    }
}
