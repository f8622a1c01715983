//! What goes into the stream: standard input (text and JSON lines), POST /publish, ids, types and
//! `?event=` filters.

mod common;

use common::*;
use sse_handler::client::Item;

#[test]
fn every_stdin_line_is_one_event_with_an_increasing_id() {
    let mut relay = Relay::start(&[]);
    let mut stream = relay.subscribe("/events", &[]);
    for line in ["first line", "", "  spaced: out  "] {
        relay.send_line(line);
    }
    relay.send_bytes(b"crlf ending\r\nnot utf-8: \xff\n");
    assert_eq!(
        relay.take_events(stream.events(), 5),
        triples(&[
            ("1", "message", "first line"),
            ("2", "message", ""),
            ("3", "message", "  spaced: out  "),
            ("4", "message", "crlf ending"),
            ("5", "message", "not utf-8: \u{fffd}"),
        ])
    );
}

#[test]
fn stdin_lines_take_the_default_event_type() {
    let mut relay = Relay::start(&["--event", "log"]);
    let mut all = relay.subscribe("/events", &[]);
    let mut logs_only = relay.subscribe("/events?event=log", &[]);
    relay.send_line("disk 91% full");
    let expected = triples(&[("1", "log", "disk 91% full")]);
    assert_eq!(relay.take_events(all.events(), 1), expected);
    assert_eq!(relay.take_events(logs_only.events(), 1), expected);
}

#[test]
fn post_publishes_from_the_query_or_the_body() {
    let relay = Relay::start(&[]);
    let mut stream = relay.subscribe("/events", &[]);
    let (status, answer) = relay.publish("?event=chat&data=hi%20there", &[], None);
    assert_eq!((status, answer), (200, format!("{{\"id\":\"{}\",\"connections\":1}}\n", relay.id(1))));
    let (status, _) = relay.publish("?event=chat", &[], Some(b"line one\nline two"));
    assert_eq!(status, 200);
    let (status, _) = relay.publish("?id=custom-7&retry=1500&data=with%20id", &[], None);
    assert_eq!(status, 200);
    assert_eq!(
        relay.take_events(stream.events(), 2),
        triples(&[("1", "chat", "hi there"), ("2", "chat", "line one\nline two")])
    );
    assert_eq!(next_item(stream.events()), Item::Retry(std::time::Duration::from_millis(1500)));
    assert_eq!(relay.take_events(stream.events(), 1), triples(&[("custom-7", "message", "with id")]));
}

#[test]
fn stdin_and_post_share_one_sequence_of_ids() {
    let mut relay = Relay::start(&[]);
    let mut stream = relay.subscribe("/events", &[]);
    relay.send_line("from stdin");
    assert_eq!(relay.take_events(stream.events(), 1), triples(&[("1", "message", "from stdin")]));
    relay.publish("?data=from%20post", &[], None);
    assert_eq!(relay.take_events(stream.events(), 1), triples(&[("2", "message", "from post")]));
}

#[test]
fn subscriptions_receive_only_their_types() {
    let relay = Relay::start(&[]);
    let mut a_and_b = relay.subscribe("/events?event=a&event=b", &[]);
    let mut messages = relay.subscribe("/events?event=message", &[]);
    for query in ["?event=a&data=1", "?event=c&data=2", "?data=3", "?event=b&data=4"] {
        assert_eq!(relay.publish(query, &[], None).0, 200);
    }
    assert_eq!(relay.take_events(a_and_b.events(), 2), triples(&[("1", "a", "1"), ("4", "b", "4")]));
    assert_eq!(relay.take_events(messages.events(), 1), triples(&[("3", "message", "3")]));
}

#[test]
fn json_lines_set_every_field_and_bad_lines_are_skipped() {
    let mut relay = Relay::start(&["--json"]);
    let mut stream = relay.subscribe("/events", &[]);
    relay.send_line(r#"{"event":"build","data":"compiling\nlinking","id":"b-1","retry":2500}"#);
    relay.send_line("this is not json");
    relay.send_line(r#"{"data":"x","evnet":"typo"}"#);
    relay.send_line("");
    relay.send_line(r#"{"data":{"cpu":0.5}}"#);
    relay.send_line(r#"{"data":"numbered","id":42}"#);
    assert_eq!(next_item(stream.events()), Item::Retry(std::time::Duration::from_millis(2500)));
    assert_eq!(
        relay.take_events(stream.events(), 3),
        triples(&[
            ("b-1", "build", "compiling\nlinking"),
            ("2", "message", "{\"cpu\":0.5}"),
            ("42", "message", "numbered"),
        ])
    );
    relay.wait_for_log("standard input line 2 skipped");
    relay.wait_for_log("standard input line 3 skipped");
}
