//! Metrics in the Prometheus text format (version 0.0.4), for a `/metrics` route of your own.
//!
//! [`SseHandler::metrics_response`] is the whole page for one handler; mount it on the built-in
//! [`Server`](crate::Server) or answer it from your own server with [`CONTENT_TYPE`]:
//!
//! ```no_run
//! use sse_handler::{Config, Server, SseHandler};
//!
//! let events = SseHandler::new(Config::default())?;
//! let metrics = events.clone();
//! let server = Server::bind("127.0.0.1:8080")?
//!     .stream("/events", &events)
//!     .get("/metrics", move |_request| metrics.metrics_response())
//!     .spawn()?;
//! # Ok::<(), sse_handler::Error>(())
//! ```
//!
//! [`MetricsWriter`] writes the format itself, so an application can put its own metrics on the
//! same page:
//!
//! ```
//! use sse_handler::metrics::MetricsWriter;
//! use sse_handler::{Config, SseHandler};
//!
//! let handler = SseHandler::new(Config::default())?;
//! let mut page = MetricsWriter::new();
//! handler.write_metrics(&mut page);
//! page.counter("app_logins", "Users who logged in.").sample(&[("method", "password")], 3.0);
//! assert!(page.as_str().contains("\napp_logins_total{method=\"password\"} 3\n"));
//! # Ok::<(), sse_handler::Error>(())
//! ```
//!
//! The handler's metrics are counts since it was built (`sse_..._total`) and gauges of now. A
//! connection's own counters ([`SseHandler::connection_stats`]) are not on the page: one series per
//! connection would grow without bound.

use std::collections::HashSet;
use std::fmt::Write as _;

use crate::handler::SseHandler;
use crate::health::Health;
use crate::http::Response;
use crate::registry::CloseReason;

/// The `Content-Type` of the text format, version 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Writes metrics in the Prometheus text format, one family at a time: its `# HELP` and `# TYPE`
/// lines, then its samples.
///
/// A [`Family`] borrows the writer, so the samples of one family cannot be split by another. Names
/// are checked as they are given, since a page with one bad line is refused whole by the scraper.
#[derive(Debug, Default)]
pub struct MetricsWriter {
    text: String,
    families: HashSet<String>,
}

/// The family being written: add its samples with [`sample`](Family::sample).
#[derive(Debug)]
pub struct Family<'a> {
    text: &'a mut String,
    name: String,
    series: HashSet<Vec<(String, String)>>,
}

impl MetricsWriter {
    /// An empty page.
    pub fn new() -> MetricsWriter {
        MetricsWriter::default()
    }

    /// Starts a counter: a count that only grows (it restarts from zero with the process). Its name
    /// gets the `_total` suffix, unless it has it already.
    ///
    /// # Panics
    /// If `name` is not a valid metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`) or this page already has a
    /// family of that name.
    pub fn counter(&mut self, name: &str, help: &str) -> Family<'_> {
        let name = if name.ends_with("_total") { name.to_owned() } else { format!("{name}_total") };
        self.family(name, help, "counter")
    }

    /// Starts a gauge: a value that goes up and down.
    ///
    /// # Panics
    /// As [`counter`](MetricsWriter::counter).
    pub fn gauge(&mut self, name: &str, help: &str) -> Family<'_> {
        self.family(name.to_owned(), help, "gauge")
    }

    fn family(&mut self, name: String, help: &str, kind: &str) -> Family<'_> {
        assert!(is_metric_name(&name), "{name:?} is not a valid metric name");
        assert!(self.families.insert(name.clone()), "the metric {name:?} is already on the page");
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
        Family { text: &mut self.text, name, series: HashSet::new() }
    }

    /// The page so far.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The page.
    pub fn into_string(self) -> String {
        self.text
    }
}

impl Family<'_> {
    /// Adds one sample: its labels (none for `&[]`) and its value. Label values may hold any text;
    /// backslashes, double quotes and line breaks are escaped.
    ///
    /// # Panics
    /// If a label name is not valid (`[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__`, which is
    /// reserved), appears twice, or this family already has a sample with the same labels.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: f64) -> &mut Self {
        let mut key: Vec<(String, String)> = Vec::with_capacity(labels.len());
        for &(name, value) in labels {
            assert!(is_label_name(name), "{name:?} is not a valid label name");
            assert!(key.iter().all(|(seen, _)| seen != name), "the label {name:?} appears twice");
            key.push((name.to_owned(), value.to_owned()));
        }
        key.sort();
        assert!(self.series.insert(key), "{} already has a sample labelled {labels:?}", self.name);

        self.text.push_str(&self.name);
        if !labels.is_empty() {
            self.text.push('{');
            for (n, (name, value)) in labels.iter().enumerate() {
                if n > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{name}=\"{}\"", escape_label_value(value));
            }
            self.text.push('}');
        }
        self.text.push(' ');
        push_value(self.text, value);
        self.text.push('\n');
        self
    }
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    !name.starts_with("__")
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// In `# HELP` text, backslash and line feed are escaped.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// In label values, backslash, double quote and line feed are escaped.
fn escape_label_value(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Whole numbers as integers; others in Rust's shortest round-trip form, which Prometheus parses;
/// the special values as the format spells them.
fn push_value(text: &mut String, value: f64) {
    if value.is_nan() {
        text.push_str("NaN");
    } else if value.is_infinite() {
        text.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        let _ = write!(text, "{}", value as i64);
    } else {
        let _ = write!(text, "{value:?}");
    }
}

/// The `reason` label of `sse_connections_closed_total`.
fn reason_label(reason: &CloseReason) -> &'static str {
    match reason {
        CloseReason::ClientGone => "client_gone",
        CloseReason::SendTimeout => "send_timeout",
        CloseReason::SlowClient => "slow_client",
        CloseReason::Stopped => "stopped",
        CloseReason::ShutDown => "shut_down",
        CloseReason::MaxLifetime => "max_lifetime",
        CloseReason::HookPanicked => "hook_panicked",
    }
}

impl SseHandler {
    /// Whether this handler can publish now: [`Health::Unavailable`] once it is shut down, or while
    /// its event log says it cannot store events ([`EventLog::health`](crate::EventLog::health)).
    /// For a health check route that a load balancer polls.
    pub fn health(&self) -> Health {
        if self.is_shut_down() {
            return Health::Unavailable("shutting down".to_owned());
        }
        self.log().health()
    }

    /// Writes this handler's metrics, every family named `sse_...`. One handler per page: a second
    /// one would repeat the names (and the writer panics).
    pub fn write_metrics(&self, out: &mut MetricsWriter) {
        let stats = self.stats();
        let log = self.log();
        let count = |n: u64| n as f64;
        out.gauge(
            "sse_ready",
            "1 when the handler can publish (not shut down, its event log available), else 0.",
        )
        .sample(&[], if self.health().is_ready() { 1.0 } else { 0.0 });
        out.gauge("sse_connections_open", "Streams open now.").sample(&[], self.connection_count() as f64);
        out.counter("sse_connections_opened", "Streams opened.").sample(&[], count(stats.connections_opened));
        let mut closed = out.counter("sse_connections_closed", "Streams closed, by reason.");
        for (reason, n) in stats.closed_by_reason() {
            closed.sample(&[("reason", reason_label(&reason))], count(n));
        }
        out.counter("sse_events_published", "Events published to all streams (once each).")
            .sample(&[], count(stats.events_published));
        out.counter("sse_events_delivered", "Events written to clients (once per client reached).")
            .sample(&[], count(stats.events_sent));
        out.counter("sse_bytes_sent", "Bytes written to clients on open streams, heartbeats included.")
            .sample(&[], count(stats.bytes_sent));
        out.counter("sse_heartbeats", "Heartbeat comments written.").sample(&[], count(stats.heartbeats));
        out.counter("sse_replays_served", "Streams resumed from a Last-Event-ID the log held.")
            .sample(&[], count(stats.replays_served));
        out.counter("sse_replays_unknown_id", "Streams whose Last-Event-ID the log did not hold.")
            .sample(&[], count(stats.replays_missed));
        out.counter("sse_slow_client_disconnects", "Streams closed because the client fell too far behind.")
            .sample(&[], count(stats.slow_client_disconnects));
        out.counter(
            "sse_events_dropped",
            "Events skipped for clients that fell behind (overflow policy DropOldest).",
        )
        .sample(&[], count(stats.events_dropped));
        out.gauge("sse_log_events", "Events in the event log now (what a resuming client can get).")
            .sample(&[], log.head().saturating_sub(log.oldest()) as f64);
    }

    /// This handler's metrics page in the Prometheus text format: the body of a `/metrics` route.
    pub fn metrics_text(&self) -> String {
        let mut out = MetricsWriter::new();
        self.write_metrics(&mut out);
        out.into_string()
    }

    /// [`metrics_text`](SseHandler::metrics_text) as a `200` response with the format's
    /// [`CONTENT_TYPE`], for a route of the built-in [`Server`](crate::Server).
    pub fn metrics_response(&self) -> Response {
        Response::new(200)
            .with_header("Content-Type", CONTENT_TYPE)
            .with_header("Cache-Control", "no-store")
            .with_body(self.metrics_text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(write: impl FnOnce(&mut MetricsWriter)) -> String {
        let mut out = MetricsWriter::new();
        write(&mut out);
        out.into_string()
    }

    #[test]
    fn a_family_is_its_help_its_type_then_its_samples() {
        let text = page(|out| {
            out.counter("jobs", "Jobs done.").sample(&[("queue", "a")], 2.0).sample(&[("queue", "b")], 0.0);
            out.gauge("temperature", "Now.").sample(&[], -3.5);
        });
        assert_eq!(
            text,
            "# HELP jobs_total Jobs done.\n# TYPE jobs_total counter\n\
             jobs_total{queue=\"a\"} 2\njobs_total{queue=\"b\"} 0\n\
             # HELP temperature Now.\n# TYPE temperature gauge\ntemperature -3.5\n"
        );
    }

    #[test]
    fn a_counter_named_with_its_suffix_keeps_one() {
        let text = page(|out| {
            out.counter("requests_total", "Requests.");
        });
        assert_eq!(text, "# HELP requests_total Requests.\n# TYPE requests_total counter\n");
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let text = page(|out| {
            out.gauge("g", "a \\ b\nc \"quoted\"").sample(&[("path", "C:\\x \"y\"\nz")], 1.0);
        });
        assert_eq!(
            text,
            "# HELP g a \\\\ b\\nc \"quoted\"\n# TYPE g gauge\ng{path=\"C:\\\\x \\\"y\\\"\\nz\"} 1\n"
        );
    }

    #[test]
    fn values_are_written_as_the_format_parses_them() {
        let cases: [(f64, &str); 8] = [
            (0.0, "0"),
            (42.0, "42"),
            (-7.0, "-7"),
            (0.25, "0.25"),
            (1e20, "1e20"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
        ];
        for (value, written) in cases {
            let mut text = String::new();
            push_value(&mut text, value);
            assert_eq!(text, written);
            let parsed: f64 = written.replace("Inf", "inf").parse().unwrap();
            assert!(parsed == value || (parsed.is_nan() && value.is_nan()), "{written} reads back");
        }
    }

    #[test]
    fn names_follow_the_format() {
        for good in ["a", "_a", "a:b_c9", "sse:rate5m"] {
            assert!(is_metric_name(good), "{good}");
        }
        for bad in ["", "9a", "a-b", "a b", "é", "a.b"] {
            assert!(!is_metric_name(bad), "{bad}");
        }
        for good in ["a", "_a", "reason", "a9"] {
            assert!(is_label_name(good), "{good}");
        }
        for bad in ["", "__name__", "a:b", "9a", "a-b"] {
            assert!(!is_label_name(bad), "{bad}");
        }
    }

    #[test]
    #[should_panic(expected = "not a valid metric name")]
    fn a_bad_metric_name_is_refused() {
        MetricsWriter::new().gauge("bad-name", "x");
    }

    #[test]
    #[should_panic(expected = "already on the page")]
    fn a_family_cannot_appear_twice() {
        let mut out = MetricsWriter::new();
        out.gauge("g", "x");
        out.gauge("g", "x");
    }

    #[test]
    #[should_panic(expected = "already has a sample")]
    fn a_series_cannot_appear_twice_whatever_the_label_order() {
        MetricsWriter::new()
            .gauge("g", "x")
            .sample(&[("a", "1"), ("b", "2")], 1.0)
            .sample(&[("b", "2"), ("a", "1")], 2.0);
    }

    #[test]
    #[should_panic(expected = "appears twice")]
    fn a_label_cannot_appear_twice_in_a_sample() {
        MetricsWriter::new().gauge("g", "x").sample(&[("a", "1"), ("a", "2")], 1.0);
    }

    #[test]
    fn every_close_reason_has_its_own_label() {
        let handler = SseHandler::new(crate::Config::default()).unwrap();
        let labels: HashSet<&str> =
            handler.stats().closed_by_reason().map(|(reason, _)| reason_label(&reason)).collect();
        assert_eq!(labels.len(), handler.stats().closed_by_reason().count());
    }

    #[test]
    fn health_turns_unavailable_at_shutdown() {
        let handler = SseHandler::new(crate::Config::default()).unwrap();
        assert_eq!(handler.health(), Health::Ready);
        assert!(handler.metrics_text().contains("\nsse_ready 1\n"));
        handler.shutdown();
        assert_eq!(handler.health(), Health::Unavailable("shutting down".into()));
        assert!(handler.metrics_text().contains("\nsse_ready 0\n"));
    }

    #[test]
    fn a_log_that_cannot_publish_makes_the_handler_unavailable() {
        struct Unreachable(crate::MemoryLog);
        impl crate::EventLog for Unreachable {
            fn append(&self, event: crate::Event, number: bool) -> crate::Result<crate::Event> {
                self.0.append(event, number)
            }
            fn head(&self) -> u64 {
                self.0.head()
            }
            fn oldest(&self) -> u64 {
                self.0.oldest()
            }
            fn count_from(&self, from: u64) -> usize {
                self.0.count_from(from)
            }
            fn position_after(&self, last_event_id: &str) -> Option<u64> {
                self.0.position_after(last_event_id)
            }
            fn read(
                &self,
                from: u64,
                visit: &mut dyn FnMut(&crate::Event) -> bool,
            ) -> std::result::Result<u64, crate::FellBehind> {
                self.0.read(from, visit)
            }
            fn wait(&self, seen: u64, waiter: &std::sync::Arc<crate::Waiter>, timeout: std::time::Duration) {
                self.0.wait(seen, waiter, timeout);
            }
            fn health(&self) -> Health {
                Health::Unavailable("log server unreachable".into())
            }
        }
        let log = std::sync::Arc::new(Unreachable(crate::MemoryLog::new(10)));
        let handler = SseHandler::builder(crate::Config::default()).log(log).build().unwrap();
        assert_eq!(handler.health(), Health::Unavailable("log server unreachable".into()), "through the Arc");
    }
}
