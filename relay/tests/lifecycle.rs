//! Starting and stopping: the ready line, `--help`, the end of standard input, and the graceful
//! shutdown on SIGTERM and SIGINT.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;
use sse_handler::client::Item;

fn run_to_end(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sse-relay")).args(args).output().expect("run sse-relay")
}

#[test]
fn help_lists_every_option() {
    let output = run_to_end(&["--help"]);
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for option in [
        "--listen",
        "--heartbeat",
        "--history",
        "--allow-origin",
        "--token",
        "--event",
        "--json",
        "--on-eof",
        "--max-stream-secs",
        "--retry",
        "--max-connections",
        "--history-bytes",
        "--log-level",
        "GET  /events",
    ] {
        assert!(help.contains(option), "{option} missing from:\n{help}");
    }
}

#[test]
fn bad_arguments_are_usage_errors() {
    for args in [&["--heartbeat", "0"][..], &["--no-such-option"], &["--history", "many"]] {
        let output = run_to_end(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(output.stdout.is_empty());
        assert!(String::from_utf8_lossy(&output.stderr).contains("error:"), "{args:?}");
    }
}

#[test]
fn an_address_in_use_is_reported_and_fails() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let output = run_to_end(&["--listen", &addr]);
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty(), "no ready line");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains(&format!("cannot listen on {addr}")), "{log}");
}

#[test]
fn sigterm_tells_every_stream_to_retry_then_ends_it_and_exits_zero() {
    let mut relay = Relay::start(&[]);
    let mut everything = relay.subscribe("/events", &[]);
    let mut other_type = relay.subscribe("/events?event=alerts", &[]);
    relay.send_line("last words");
    assert_eq!(relay.take_events(everything.events(), 1), triples(&[("1", "message", "last words")]));
    // Standard input stays open: a blocked read must not hold up the shutdown.
    relay.signal(Signal::SIGTERM);
    let hint = [Item::Retry(Duration::from_millis(3000))];
    assert_eq!(items_to_end(everything.events()), hint);
    assert_eq!(items_to_end(other_type.events()), hint, "streams of other types are told too");
    assert_eq!(relay.wait_exit().code(), Some(0));
    assert!(relay.remaining_stdout().is_empty(), "one line on standard output, no more");
}

#[test]
fn sigint_shuts_down_the_same_way_with_the_chosen_retry() {
    let mut relay = Relay::start(&["--retry", "7000"]);
    let mut stream = relay.subscribe("/events", &[]);
    relay.signal(Signal::SIGINT);
    assert_eq!(items_to_end(stream.events()), [Item::Retry(Duration::from_millis(7000))]);
    assert_eq!(relay.wait_exit().code(), Some(0));
    assert!(std::net::TcpStream::connect(relay.addr).is_err(), "no longer listening");
}

#[test]
fn by_default_the_relay_keeps_serving_after_its_input_ends() {
    let mut relay = Relay::start(&[]);
    let mut stream = relay.subscribe("/events", &[]);
    relay.send_line("the only line");
    relay.close_stdin();
    relay.wait_for_log("end of standard input; still serving");
    assert_eq!(relay.publish("?data=posted%20later", &[], None).0, 200);
    assert_eq!(
        relay.take_events(stream.events(), 2),
        triples(&[("1", "message", "the only line"), ("2", "message", "posted later")])
    );
    assert!(relay.is_running());
}

#[test]
fn on_eof_exit_delivers_the_input_then_shuts_down_gracefully() {
    let mut relay = Relay::start(&["--on-eof", "exit", "--retry", "1000"]);
    let mut stream = relay.subscribe("/events", &[]);
    relay.send_line("one");
    relay.send_line("two");
    relay.close_stdin();
    let items = items_to_end(stream.events());
    let data: Vec<&str> = items
        .iter()
        .filter_map(|item| if let Item::Event(event) = item { Some(event.data.as_str()) } else { None })
        .collect();
    assert_eq!(data, ["one", "two"]);
    assert_eq!(items.last(), Some(&Item::Retry(Duration::from_millis(1000))));
    assert_eq!(relay.wait_exit().code(), Some(0));
}

#[test]
fn at_the_default_log_level_a_terminal_sees_each_start_and_stop_line_once() {
    let mut relay = Relay::start(&["--log-level", "info"]);
    relay.signal(Signal::SIGTERM);
    assert_eq!(relay.wait_exit().code(), Some(0));
    relay.wait_for_log("stopped: 0 streams told when to reconnect");
    let log = relay.stderr();
    // Standard output said `listening on` (Relay::start read it); the log must not say it again.
    assert!(!log.contains("listening on"), "{log}");
    assert!(!log.contains("shut down ("), "{log}");
}
