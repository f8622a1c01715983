//! The metrics page: it follows the Prometheus text format (read back line by line), and its counts
//! are exactly what happened.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use sse_handler::metrics::{CONTENT_TYPE, MetricsWriter};
use sse_handler::{CloseReason, Config, Event, Server, ServerHandle, SseHandler};

/// A series: its metric name and its labels, sorted.
type Series = (String, Vec<(String, String)>);

/// Reads a page back by the text format's rules and returns each series' value. Panics, saying
/// which line and why, on anything the format does not allow.
fn parse_exposition(text: &str) -> HashMap<Series, f64> {
    let mut help: HashSet<String> = HashSet::new();
    let mut types: HashMap<String, String> = HashMap::new();
    let mut finished: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    let mut values = HashMap::new();
    assert!(text.ends_with('\n'), "the page ends with a line feed");
    for (number, line) in text.lines().enumerate() {
        let at = format!("line {}: {line:?}", number + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut words = rest.splitn(3, ' ');
            let (keyword, name) = (words.next().unwrap(), words.next().unwrap_or_default());
            match keyword {
                "HELP" => {
                    assert!(is_metric_name(name), "{at}: name");
                    assert!(help.insert(name.to_owned()), "{at}: a second HELP");
                    assert!(!types.contains_key(name), "{at}: HELP after TYPE (ours come first)");
                    check_help_escapes(words.next().unwrap_or_default(), &at);
                }
                "TYPE" => {
                    assert!(is_metric_name(name), "{at}: name");
                    let kind = words.next().unwrap_or_default();
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                        "{at}: type"
                    );
                    assert!(types.insert(name.to_owned(), kind.to_owned()).is_none(), "{at}: a second TYPE");
                }
                _ => {}
            }
            if ["HELP", "TYPE"].contains(&keyword) {
                assert!(!finished.contains(name), "{at}: the family {name} was already written");
                if current.as_deref() != Some(name) {
                    finished.extend(current.replace(name.to_owned()));
                }
            }
            continue;
        }
        let (name, labels, value) = parse_sample(line, &at);
        assert_eq!(current.as_deref(), Some(name.as_str()), "{at}: a sample outside its family");
        assert!(help.contains(&name), "{at}: no HELP before the samples");
        let kind = types.get(&name).unwrap_or_else(|| panic!("{at}: no TYPE before the samples"));
        if kind == "counter" {
            assert!(name.ends_with("_total"), "{at}: a counter's name ends with _total");
            assert!(value >= 0.0, "{at}: a counter is not negative");
        }
        let mut sorted = labels.clone();
        sorted.sort();
        let label_names: HashSet<&String> = sorted.iter().map(|(n, _)| n).collect();
        assert_eq!(label_names.len(), sorted.len(), "{at}: a label twice");
        assert!(values.insert((name, sorted), value).is_none(), "{at}: a duplicate series");
    }
    values
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// In HELP text a backslash starts `\\` or `\n`, nothing else.
fn check_help_escapes(text: &str, at: &str) {
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            assert!(matches!(chars.next(), Some('\\' | 'n')), "{at}: a bad escape in HELP");
        }
    }
}

/// `name{label="value",...} value`: the name, the labels (unescaped) and the value.
fn parse_sample(line: &str, at: &str) -> (String, Vec<(String, String)>, f64) {
    let name_end = line.find(['{', ' ']).unwrap_or_else(|| panic!("{at}: no value"));
    let name = &line[..name_end];
    assert!(is_metric_name(name), "{at}: name");
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        rest = after_brace;
        while !rest.starts_with('}') {
            let eq = rest.find("=\"").unwrap_or_else(|| panic!("{at}: label without a value"));
            let label = &rest[..eq];
            assert!(is_label_name(label), "{at}: label name {label:?}");
            let (value, after) = unescape_label_value(&rest[eq + 2..], at);
            labels.push((label.to_owned(), value));
            rest = after.strip_prefix(',').unwrap_or(after);
        }
        rest = &rest[1..];
    }
    let mut fields =
        rest.strip_prefix(' ').unwrap_or_else(|| panic!("{at}: one space before the value")).split(' ');
    let value = fields.next().unwrap_or_default();
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        text => text.parse().unwrap_or_else(|_| panic!("{at}: the value is not a float")),
    };
    if let Some(timestamp) = fields.next() {
        timestamp.parse::<i64>().unwrap_or_else(|_| panic!("{at}: timestamp"));
    }
    assert!(fields.next().is_none(), "{at}: more after the value");
    (name.to_owned(), labels, value)
}

/// A label value up to its closing quote, unescaped, and what follows the quote.
fn unescape_label_value<'a>(text: &'a str, at: &str) -> (String, &'a str) {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return (value, &text[i + 1..]),
            '\\' => match chars.next() {
                Some((_, '\\')) => value.push('\\'),
                Some((_, '"')) => value.push('"'),
                Some((_, 'n')) => value.push('\n'),
                other => panic!("{at}: a bad escape {other:?} in a label value"),
            },
            c => value.push(c),
        }
    }
    panic!("{at}: an unterminated label value")
}

fn value(page: &HashMap<Series, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut key: Vec<(String, String)> = labels.iter().map(|&(n, v)| (n.to_owned(), v.to_owned())).collect();
    key.sort();
    *page.get(&(name.to_owned(), key)).unwrap_or_else(|| panic!("no series {name}{labels:?}"))
}

/// A stream opened with a raw request; returns the socket and the bytes read up to the opening.
fn open_raw_stream(addr: SocketAddr) -> (TcpStream, Vec<u8>) {
    let mut socket = TcpStream::connect(addr).expect("connect");
    socket.write_all(b"GET /events HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    // The opening comment comes after the connection is registered.
    let received = read_until(&mut socket, b"\r\n\r\n: open\n\n");
    (socket, received)
}

fn serve_with_metrics(handler: &SseHandler) -> ServerHandle {
    let metrics = handler.clone();
    Server::bind("127.0.0.1:0")
        .expect("bind")
        .stream("/events", handler)
        .get("/metrics", move |_request| metrics.metrics_response())
        .spawn()
        .expect("spawn")
}

#[test]
fn counts_are_exact_after_a_known_sequence() {
    let handler = SseHandler::new(Config::default().heartbeat(Duration::from_secs(3600))).unwrap();
    let server = serve_with_metrics(&handler);
    let addr = server.local_addr();

    let (mut first, mut first_bytes) = open_raw_stream(addr);
    let (mut second, mut second_bytes) = open_raw_stream(addr);
    for data in ["one", "two", "three"] {
        handler.send_all(Event::data(data)).unwrap();
    }
    first_bytes.extend(read_until(&mut first, b"data: three\n\n"));
    second_bytes.extend(read_until(&mut second, b"data: three\n\n"));
    let first_id = handler.connection_ids()[0];
    assert!(handler.stop_one_within(first_id, TIMEOUT).unwrap(), "the stopped stream finished");
    first_bytes.extend(read_until_close(&mut first).into_bytes());
    // The second stream's thread counts its events just after writing them.
    wait_until("six events are counted", || handler.stats().events_sent == 6);

    let answer = raw_exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n");
    assert_eq!(status_of(&answer), 200, "{answer}");
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    assert!(head.contains(&format!("\r\nContent-Type: {CONTENT_TYPE}\r\n")), "{head}");
    let page = parse_exposition(body);
    let metric = |name: &str| value(&page, name, &[]);
    assert_eq!(metric("sse_ready"), 1.0);
    assert_eq!(metric("sse_connections_open"), 1.0);
    assert_eq!(metric("sse_connections_opened_total"), 2.0);
    for (reason, expected) in
        [("stopped", 1.0), ("client_gone", 0.0), ("shut_down", 0.0), ("slow_client", 0.0)]
    {
        assert_eq!(value(&page, "sse_connections_closed_total", &[("reason", reason)]), expected, "{reason}");
    }
    assert_eq!(metric("sse_events_published_total"), 3.0);
    assert_eq!(metric("sse_events_delivered_total"), 6.0);
    assert_eq!(metric("sse_bytes_sent_total"), (first_bytes.len() + second_bytes.len()) as f64);
    assert_eq!(metric("sse_heartbeats_total"), 0.0);
    assert_eq!(metric("sse_replays_served_total"), 0.0);
    assert_eq!(metric("sse_replays_unknown_id_total"), 0.0);
    assert_eq!(metric("sse_slow_client_disconnects_total"), 0.0);
    assert_eq!(metric("sse_events_dropped_total"), 0.0);
    assert_eq!(metric("sse_log_events"), 3.0);
    drop(second);
    server.shutdown();
}

#[test]
fn closes_are_counted_by_reason() {
    let (closed, closes) = mpsc::channel();
    let handler = SseHandler::builder(Config::default().heartbeat(Duration::from_secs(3600)))
        .on_close(move |_, reason| {
            let _ = closed.send(reason.clone());
        })
        .build()
        .unwrap();
    let server = serve_with_metrics(&handler);
    let (gone, _) = open_raw_stream(server.local_addr());
    let (_staying, _) = open_raw_stream(server.local_addr());
    drop(gone);
    // The server learns that a client has gone when writing to it fails: publish until it does.
    let mut reason = None;
    for _ in 0..100 {
        handler.send_all(Event::data("anyone there?")).unwrap();
        if let Ok(closed) = closes.recv_timeout(Duration::from_millis(100)) {
            reason = Some(closed);
            break;
        }
    }
    assert_eq!(reason, Some(CloseReason::ClientGone));
    server.shutdown();
    assert_eq!(closes.recv_timeout(TIMEOUT), Ok(CloseReason::ShutDown));

    let stats = handler.stats();
    assert_eq!(stats.closed(&CloseReason::ClientGone), 1);
    assert_eq!(stats.closed(&CloseReason::ShutDown), 1);
    assert_eq!(stats.connections_closed, 2);
    let page = parse_exposition(&handler.metrics_text());
    assert_eq!(value(&page, "sse_connections_closed_total", &[("reason", "client_gone")]), 1.0);
    assert_eq!(value(&page, "sse_connections_closed_total", &[("reason", "shut_down")]), 1.0);
    assert_eq!(value(&page, "sse_connections_open", &[]), 0.0);
    assert_eq!(value(&page, "sse_ready", &[]), 0.0, "a shut-down handler cannot publish");
}

#[test]
fn replays_are_counted_and_the_page_stays_well_formed() {
    let handler = SseHandler::new(Config::default().heartbeat(Duration::from_secs(3600))).unwrap();
    let server = serve_with_metrics(&handler);
    let sent = handler.send_all(Event::builder().id("a-1").data("kept").build().unwrap()).unwrap();
    let resumed =
        subscribe(server.local_addr(), "/events", &[("Last-Event-ID", sent.id.as_deref().unwrap())]);
    let unknown = subscribe(server.local_addr(), "/events", &[("Last-Event-ID", "never-issued")]);
    let page = parse_exposition(&handler.metrics_text());
    assert_eq!(value(&page, "sse_replays_served_total", &[]), 1.0);
    assert_eq!(value(&page, "sse_replays_unknown_id_total", &[]), 1.0);
    assert_eq!(value(&page, "sse_events_published_total", &[]), 1.0);
    let families: HashSet<&str> = page.keys().map(|(name, _)| name.as_str()).collect();
    let expected = HashSet::from([
        "sse_ready",
        "sse_connections_open",
        "sse_connections_opened_total",
        "sse_connections_closed_total",
        "sse_events_published_total",
        "sse_events_delivered_total",
        "sse_bytes_sent_total",
        "sse_heartbeats_total",
        "sse_replays_served_total",
        "sse_replays_unknown_id_total",
        "sse_slow_client_disconnects_total",
        "sse_events_dropped_total",
        "sse_log_events",
    ]);
    assert_eq!(families, expected);
    drop((resumed, unknown));
    server.shutdown();
}

#[test]
fn an_application_page_reads_back_with_its_escapes() {
    let handler = SseHandler::new(Config::default()).unwrap();
    let mut out = MetricsWriter::new();
    handler.write_metrics(&mut out);
    let awkward = "C:\\temp \"quoted\"\nsecond line";
    out.counter("app_uploads", "Uploads, by path (a \\ and a\nline break in help).")
        .sample(&[("path", awkward)], 2.0)
        .sample(&[("path", "plain")], 0.5);
    out.gauge("app_temperature", "Special values.")
        .sample(&[("probe", "a")], f64::NAN)
        .sample(&[("probe", "b")], f64::NEG_INFINITY);
    let page = parse_exposition(out.as_str());
    assert_eq!(value(&page, "app_uploads_total", &[("path", awkward)]), 2.0);
    assert!(value(&page, "app_temperature", &[("probe", "a")]).is_nan());
    assert_eq!(value(&page, "app_temperature", &[("probe", "b")]), f64::NEG_INFINITY);
    assert_eq!(value(&page, "sse_events_published_total", &[]), 0.0);
}

#[test]
fn the_parser_refuses_what_the_format_does_not_allow() {
    let bad_pages = [
        "sse_x 1\n",                                                     // no HELP, no TYPE
        "# HELP x a\n# TYPE x gauge\nx 1\nx 2\n",                        // a duplicate series
        "# HELP x a\n# TYPE x gauge\nx one\n",                           // not a float
        "# HELP x a\n# TYPE x gauge\nx{a=\"\\t\"} 1\n",                  // a bad escape
        "# HELP x-y a\n# TYPE x-y gauge\nx-y 1\n",                       // a bad name
        "# HELP x a\n# TYPE x counter\nx 1\n",                           // a counter without _total
        "# HELP x a\n# TYPE x gauge\n# HELP y b\n# TYPE y gauge\nx 1\n", // a family split
    ];
    for page in bad_pages {
        let refused = std::panic::catch_unwind(|| parse_exposition(page)).is_err();
        assert!(refused, "accepted: {page:?}");
    }
}
